/*
 * etcd.h — the tenant table from etcd v3 (docs/configuration.md, "Tenant
 * store"), for a fleet of gateways that must obey one switch.
 *
 * Each key under $.tenant_store.prefix holds one tenant, the same JSON object
 * as an element of a config file's "tenants". At start the gateway reads them
 * all (a blocking range read: it never starts without a valid table), then
 * watches the prefix from the next revision with libcurl's multi interface on
 * the gateway's libev loop, through etcd's v3 JSON gateway (POST /v3/kv/range,
 * POST /v3/watch: a streaming response, one JSON object a line). Every event
 * batch becomes a new immutable snapshot: the config file's text plus the
 * current tenant documents, validated by config_parse_tenants and handed to
 * the apply callback (main.c: server_reload, which runs
 * server_tenants_apply). A table that does not validate is logged with its key
 * and JSON path, and the last snapshot stays.
 *
 * A lost watch (etcd down, a compacted revision, an error message) re-reads
 * the prefix and watches again from the revision read, with back-off (100 ms
 * doubling to 5 s) across the configured endpoints. Meanwhile the gateway
 * serves with its last snapshot; the change of state is logged once each way.
 */
#ifndef SLUICE_ETCD_H
#define SLUICE_ETCD_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

typedef struct etcd_store etcd_store_t;

/* Applies a new snapshot; returns 0, or -1 with err filled (nothing changed).
 * The callee takes its own reference on cfg. */
typedef int (*etcd_apply_fn)(void *ud, config_t *cfg, char *err, size_t errlen);

/* Reads config_path (whose $.tenant_store is etcd, as base says), then the
 * tenants under the prefix, trying each endpoint once (2 s to connect, 5 s in
 * all). Returns the store and, in *out, the first snapshot (one reference);
 * or NULL with err naming the endpoint or the bad key and its JSON path, and
 * *code 2 for an invalid tenant table or config, 1 for etcd unreachable. */
etcd_store_t *etcd_store_open(const char *config_path, const config_t *base, config_t **out,
                              int *code, char *err, size_t errlen);

/* Starts the watch on loop; every later snapshot goes to apply(ud, ...).
 * Returns 0 or -1 with err filled. */
int etcd_store_start(etcd_store_t *s, struct ev_loop *loop, etcd_apply_fn apply, void *ud,
                     char *err, size_t errlen);

/* SIGHUP: re-reads config_path and applies it with the current tenants. A
 * changed $.tenant_store (a new prefix or endpoints) needs a restart and is
 * refused. Returns 0, or -1 with err filled (nothing changed). */
int etcd_store_reload(etcd_store_t *s, const char *config_path, char *err, size_t errlen);

/* The admin API's store (store.h) over the same table, owned by s (valid
 * until etcd_store_free; store_free on it does nothing); writes need
 * etcd_store_start first.
 *   read: {"revision": R, "tenants": [...]}, R the etcd revision of the
 *     snapshot last applied (the snapshot's tenants_revision), the tenants
 *     in key order.
 *   write: one transaction (POST /v3/kv/txn) that puts the tenant's document
 *     if its key's mod_revision < expected + 1 (unchanged since the revision
 *     the admin read; a missing key has 0), else STORE_CONFLICT with R. The
 *     key: the one whose document has that "id", else prefix + id. Once
 *     committed, the callback waits until the watch has applied that
 *     revision (at most 2 s: then STORE_OK all the same, the snapshot still
 *     older, and the watch applies it when it arrives). etcd unreachable:
 *     STORE_ERROR with the endpoint and curl's reason, nothing written. At
 *     most 64 writes in flight; etcd_store_free drops them without calling
 *     their callbacks. */
store_t *etcd_store_admin(etcd_store_t *s);

/* The etcd store behind st, or NULL when st is another store. */
etcd_store_t *etcd_store_of(store_t *st);

/* config_retenant for tenants in etcd: the snapshot the config file would
 * give with tenants_doc ({"revision": N, "tenants": [...]}) as the table,
 * validated as a watch's would be; an error names "tenant I: $.path". Returns
 * a new snapshot (one reference), or NULL with err. */
config_t *etcd_store_retenant(const etcd_store_t *s, const char *tenants_doc, size_t len,
                              char *err, size_t errlen);

/* The revision of the last table read (0 before the first). */
int64_t etcd_store_revision(const etcd_store_t *s);

/* Stops the watch and frees everything; NULL is a no-op. */
void etcd_store_free(etcd_store_t *s);

#endif
