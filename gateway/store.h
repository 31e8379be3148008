/*
 * store.h — where the tenant table lives, behind one small interface.
 *
 * The tenant table is a document {"revision": N, "tenants": [tenant, ...]}
 * (tenant objects as in docs/configuration.md). A store keeps it durably and
 * hands out revisions so that two admins cannot overwrite each other
 * silently: a write names the revision its author read, and a store whose
 * revision has moved on refuses it (STORE_CONFLICT, the admin API's 409).
 *
 * Two stores sit behind these calls: the file store here (store_file_new,
 * docs/admin.md) and the etcd store (etcd_store_admin in etcd.h: one key per
 * tenant, a transaction on its mod_revision, the document's revision the
 * etcd revision applied). The admin API (gateway/admin.c) only calls
 * store_read and store_write; after a file store write it builds the new
 * snapshot with config_retenant and server_reload, while the etcd store
 * calls back only once its watch has applied the write.
 *
 * Writes are asynchronous: the callback runs exactly once, possibly before
 * store_write returns (the file store does its fsyncs in the call; the etcd
 * store calls back from the loop, or at once when it cannot start the
 * call), unless the store is freed first.
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stddef.h>
#include <stdint.h>

enum store_status {
    STORE_OK = 0,
    STORE_CONFLICT = -1, /* the store's revision is not the expected one */
    STORE_ERROR = -2,    /* I/O or a document that cannot be read; nothing written */
};

typedef struct store store_t;

/* status, the store's revision after the write (STORE_OK) or now
 * (STORE_CONFLICT), and a reason for STORE_ERROR (else NULL). */
typedef void (*store_write_cb)(void *arg, int status, uint64_t revision, const char *err);

typedef struct store_ops {
    const char *type; /* "file", "etcd" */
    /* The document as stored now (malloc'd, NUL-terminated, the caller frees)
     * and its revision. Returns STORE_OK or STORE_ERROR with err. */
    int (*read)(store_t *st, char **doc, size_t *len, uint64_t *revision, char *err,
                size_t errlen);
    /* Stores one tenant object (tenant_json, its "id" is id; it replaces the
     * tenant with that id or is added) if the revision is still expected, and
     * calls cb once it is durable (or refused). */
    void (*write)(store_t *st, const char *id, const char *tenant_json, size_t len,
                  uint64_t expected, store_write_cb cb, void *arg);
    void (*free)(store_t *st);
} store_ops_t;

struct store {
    const store_ops_t *ops;
};

static inline int store_read(store_t *st, char **doc, size_t *len, uint64_t *revision,
                             char *err, size_t errlen)
{
    return st->ops->read(st, doc, len, revision, err, errlen);
}

static inline void store_write(store_t *st, const char *id, const char *tenant_json, size_t len,
                               uint64_t expected, store_write_cb cb, void *arg)
{
    st->ops->write(st, id, tenant_json, len, expected, cb, arg);
}

/* NULL is a no-op. */
static inline void store_free(store_t *st)
{
    if (st)
        st->ops->free(st);
}

/* The file store: the document is the file at path. A write reads the file,
 * checks its "revision", replaces the tenant, adds one to the revision and
 * writes a temporary file in the same directory, fsyncs it, renames it over
 * the file and fsyncs the directory, so that after a crash the file is the
 * old or the new document, never a mix. Returns NULL when out of memory. */
store_t *store_file_new(const char *path);

#endif
