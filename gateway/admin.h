/*
 * admin.h — the admin API: HTTP/1.1 + JSON on its own listener (docs/admin.md).
 *
 * The same listener answers the operators' endpoints without a token:
 * GET /metrics (Prometheus text, metrics.h), /healthz (the process runs) and
 * /readyz (it wants new tunnels: server_ready).
 *
 * libmicrohttpd parses HTTP; it runs on the gateway's libev loop in its
 * epoll mode (no thread of its own): an ev_io on MHD's epoll descriptor and
 * an ev_timer for MHD_get_timeout call MHD_run, so every handler runs on the
 * loop and may touch the server. Tokens and tenants are read from the
 * server's current snapshot on every request, so a reload changes them.
 *
 * Writes go to the tenant store (store.h); once the store says they are
 * durable, the new tenants document is turned into a snapshot
 * (config_retenant) and applied with server_reload, and only then is the
 * request answered. The etcd store (etcd.h) answers only once its own watch
 * has applied the write, so nothing is applied twice.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <ev.h>
#include <sys/socket.h>

#include "metrics.h"
#include "server.h"
#include "store.h"

#define ADMIN_BODY_MAX (64u * 1024u) /* bytes of a request body */
#define ADMIN_CONNS_MAX 64u          /* concurrent admin connections */
#define ADMIN_CONN_TIMEOUT_S 10u     /* an idle admin connection is closed */
#define ADMIN_SCRAPES_MAX 4u         /* /metrics pages being written at once */

/* Re-reads the config file and applies it as SIGHUP does (main.c). Returns
 * 0, or -1 with err: the old config is kept. */
typedef int (*admin_reload_fn)(void *ud, char *err, size_t errlen);

typedef struct admin {
    struct MHD_Daemon *_mhd;
    struct ev_loop *_loop;
    server_t *_srv;
    store_t *_store;      /* NULL: tenants inline, read-only */
    ev_io _io;            /* MHD's epoll descriptor */
    ev_timer _timer;      /* MHD_get_timeout, and runs after a resume */
    metrics_info_fn _info; /* what /metrics shows of the process and the store */
    void *_info_ud;
    unsigned _scrapes;    /* /metrics pages being written (each holds a copy) */
    admin_reload_fn _reload; /* POST /v1/reload: re-read the config file */
    void *_reload_ud;
    struct sockaddr_storage addr; /* bound address, port filled in */
    socklen_t addrlen;
} admin_t;

/* Binds s->cfg->admin.listen and starts serving. store may be NULL; it is
 * borrowed (the caller frees it after admin_dispose). Returns 0, or -1 with
 * err filled and nothing left open. */
int admin_init(admin_t *a, struct ev_loop *loop, server_t *s, store_t *store, char *err,
               size_t errlen);

/* /metrics asks fn(ud, ...) for what the server does not know (main.c). */
void admin_set_info(admin_t *a, metrics_info_fn fn, void *ud);

/* POST /v1/reload calls fn(ud, ...); without one it answers 404. */
void admin_set_reload(admin_t *a, admin_reload_fn fn, void *ud);

/* Stops serving and closes every admin connection; idempotent. */
void admin_dispose(admin_t *a);

#endif
