/*
 * config_internal.h — what the files of the config parser share: the
 * validation context and its helpers (config.c), and the tenant-side parsers
 * the root parser calls (config_tenant.c). Included only by gateway/config*.c;
 * everything else uses config.h.
 *
 * Every helper reports at the context's current JSON path and returns -1
 * (or NULL) after writing "<path>: <message>" into the context's error
 * buffer, 0 when it succeeds. What a helper allocates belongs to the
 * snapshot it writes into, which config_free releases (see config.c).
 */
#ifndef SLUICE_CONFIG_INTERNAL_H
#define SLUICE_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "json.h"

#define QUOTE_MAX 64u                    /* bytes of a value echoed in a message */
#define QBUF (QUOTE_MAX * 6 + 8)         /* worst case: every byte escaped as \u00XX */

/* Validation context: the JSON path being looked at and the error buffer. */
typedef struct vctx {
    char path[256];
    size_t plen;
    const char *tenants_doc; /* config_retenant: the tenant store's document */
    size_t tenants_len;
    int store_doc; /* validating the tenant store's document: a tenant may have no region */
    char *err;
    size_t errlen;
    const char *base_dir;
    const char *label; /* non-NULL: errors start with it (a tenant from a store: its key) */
} vctx_t;

enum addr_use { ADDR_LISTEN, ADDR_ECHO, ADDR_BACKEND };

/* ---- context helpers (config.c) ----------------------------------------- */

/* Writes "<path>: <message>" into the error buffer; returns -1. */
int config__fail(vctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* config__fail(c, "out of memory"). */
int config__nomem(vctx_t *c);
/* s[0..len) as a quoted, escaped string cut at QUOTE_MAX bytes, into buf
 * (cap >= QBUF); returns buf. */
const char *config__quote(const char *s, size_t len, char *buf, size_t cap);
/* "got ..." text for a value of the wrong type or range; buf as for quote. */
const char *config__describe(const json_t *v, char *buf, size_t cap);

/* Path pushes return the old length, for config__path_pop. */
size_t config__path_push_key(vctx_t *c, const char *key, size_t klen);
size_t config__path_push_index(vctx_t *c, size_t i);
void config__path_pop(vctx_t *c, size_t mark);

/* Typed accessors. get_string: a non-empty string without NUL bytes, pointing
 * into v (what: the expectation, for messages). get_uint: a JSON integer
 * literal in [min, max]. get_fields: an object's members matched against
 * names (vals[i] NULL when absent; unknown or repeated keys are errors).
 * require: fails with "required key is missing" when v is NULL. */
int config__get_string(vctx_t *c, const json_t *v, const char *what, const char **s,
                       size_t *len);
int config__get_uint(vctx_t *c, const json_t *v, uint64_t min, uint64_t max, uint64_t *out);
int config__get_fields(vctx_t *c, const json_t *obj, const char *what,
                       const char *const *names, size_t nnames, const json_t **vals);
int config__require(vctx_t *c, const json_t *v, const char *name);
/* A "host:port" string, resolved now, for the given use. */
int config__get_addr(vctx_t *c, const json_t *v, enum addr_use use, cfg_addr_t *out);
/* A file path, relative ones taken from c->base_dir; *out is malloc'd. */
int config__file_parse(vctx_t *c, const json_t *v, char **out);

/* Binary search of n elements of size bytes, sorted by the char * name at
 * name_off in each. */
const void *config__find_by_name(const void *base, size_t n, size_t size, size_t name_off,
                                 const char *key, size_t len);

/* ---- the tenant model, its store and admin access (config_tenant.c) ----- */

/* $.tenant_store into st. */
int config__store_parse(vctx_t *c, const json_t *v, cfg_store_t *st);
/* $.node (the fleet's node id; config_tenant.c). */
int config__node_parse(vctx_t *c, const json_t *v, cfg_node_t *node);
/* $.tenants (an array of tenant objects) into cfg->tenants, sorted by id. */
int config__tenants_parse(vctx_t *c, const json_t *v, config_t *cfg);
/* n tenant documents from a store, labels[i] naming each in errors. */
int config__tenants_build(vctx_t *c, const json_t *const *items, size_t n,
                          const char *const *labels, config_t *cfg);
/* The store file's document (or c->tenants_doc in its place). */
int config__store_tenants_parse(vctx_t *c, config_t *cfg);
/* $.admin; needs cfg->listen parsed already. */
int config__admin_parse(vctx_t *c, const json_t *v, config_t *cfg);
/* Sets cfg->max_secrets and cfg->decoy_hash from the parsed tenants. */
void config__credential_work(config_t *cfg);
/* Frees what the functions above allocated into cfg (not cfg itself). */
void config__tenants_free(config_t *cfg);

#endif
