/*
 * server.h — one event loop's worth of gateway: listeners, connections,
 * the built-in echo backend, backend health, counters and the shutdown sequence.
 *
 * All state lives here or below (no globals). The server lends its tunnels a
 * tunnel_env_t (loop, counters, receive buffer, backend choice) and nothing
 * else; connections hold their own reference to the config snapshot they
 * started with, so swapping s->cfg (server_reload) changes the limits only of
 * new connections. Tenants are different: new requests are routed with the
 * newest snapshot (tunnel_env_t.cfg), and a reload closes live tunnels their
 * tenant may no longer have.
 *
 * Once per loop iteration, just before the loop blocks, the server's prepare
 * watcher flushes every connection that asked to write and frees every
 * connection that was closed during the iteration.
 *
 * Workers (worker.h, docs/architecture.md "Workers"): with $.workers > 1 the
 * process runs one server_t per event loop. The first, the lead, runs on the
 * main loop beside signals, the admin API and the tenant store, and is the
 * one main.c and admin.c talk to: server_reload, server_share_set and
 * server_drain on the lead reach every worker (s->group), and the lead's
 * srclimit and ratelimit tables are the process's (the others use views of
 * them). Each follower (server_init_follower) runs on its own thread and
 * loop with its own listeners bound to the lead's addresses (SO_REUSEPORT:
 * the kernel spreads connections over the group), connections, tunnels,
 * counters, stats, sessions and backend probes; nothing of it is touched
 * by another thread except through worker.h's messages.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "config.h"
#include "counters.h"
#include "echo.h"
#include "linger.h"
#include "session.h"
#include "srclimit.h"
#include "tunnel.h"

struct conn;
struct workers;

typedef struct listener {
    int fd;
    ev_io io;
    struct server *srv;
    struct sockaddr_storage addr; /* bound address, port filled in */
    socklen_t addrlen;
    int proxy_protocol;           /* $.listen[i].proxy_protocol: a PROXY header first */
} listener_t;

/* Where a graceful shutdown is (server_drain). Ordered: later phases are
 * larger. */
enum drain_phase {
    DRAIN_NONE = 0,     /* serving */
    DRAIN_DEREGISTER,   /* /readyz 503; still accepting for limits.deregister_ms */
    DRAIN_GOAWAY,       /* listeners closed, GOAWAY sent; tunnels relay for limits.drain_ms */
    DRAIN_CLOSE,        /* CLOSE(shutting down) sent; flushing for limits.drain_timeout_ms */
};

typedef struct server {
    struct ev_loop *loop;
    config_t *cfg;
    SSL_CTX *ssl_ctx;
    nghttp2_session_callbacks *h2_cbs;
    nghttp2_option *h2_opt;
    listener_t *listeners;
    size_t nlisteners;
    ev_timer accept_pause;  /* listeners paused after EMFILE/ENFILE */
    echo_t echo;
    backend_table_t backends; /* health of every backend, probes (backend.h) */
    list_t conns;           /* live connections (conn_t._link) */
    struct conn *flush;     /* connections with output to write this iteration */
    struct conn *dead;      /* connections closed this iteration, to free */
    ev_prepare prepare;     /* flush, then free, once per loop iteration */
    uint64_t hs_ns;         /* time in TLS handshake steps this loop iteration (conn.c) */
    linger_set_t linger;    /* sockets of connections we ended, closing (conn_free) */
    uint64_t next_conn_id;
    server_counters_t counters;
    stats_table_t stats;    /* traffic per tenant and kind (stats.h) */
    tunnel_env_t env;       /* what tunnels see of the server */
    session_table_t sessions; /* resumable tunnels, parked ones included */
    srclimit_t sources;     /* per-source pending connections and handshake rate */
    log_limits_t logs;      /* rate limits for lines peers can cause */
    ev_timer log_flush;     /* reports suppressed lines once their window has ended */
    unsigned draining : 1;  /* a stop was asked for (drain_phase > DRAIN_NONE) */
    enum drain_phase drain_phase;
    ev_timer drain_timer;   /* ends the current drain phase */
    ev_timer trim;          /* every TRIM_CHECK_S: gives freed heap back (server.c) */
    uint64_t trim_peak;     /* the highest load (connections + tunnels) since the last trim */
    uint32_t trim_released; /* idle connections' buffer releases since the last trim */
    uint64_t trim_last;     /* monotonic ns of the last trim; 0: none yet */
    struct workers *group;  /* the process's workers (worker.h); NULL: this loop alone */
    const struct server *lead; /* a follower's lead (read only while the lead waits on
                                * a call to it, or at init); NULL: this is the lead */
    unsigned worker;        /* index in group: 0 for the lead */
    unsigned reuseport : 1; /* listeners bound with SO_REUSEPORT ($.workers > 1) */
    unsigned idle_told : 1; /* a draining follower told the lead it has no connection */
} server_t;

/* Builds the TLS context, binds listeners and the echo backend. Takes a
 * reference on cfg. Returns 0, or -1 with err filled (nothing left open). */
int server_init(server_t *s, struct ev_loop *loop, config_t *cfg, char *err, size_t errlen);

/* A follower for worker index (1..) of lead's group, on loop (not running
 * yet): listeners on the lead's bound addresses (SO_REUSEPORT), the lead's
 * TLS context (a reference), views of the lead's per-source and tenant
 * tables, the lead's built-in echo address, and backend probes of its own.
 * Takes a reference on cfg. Returns 0, or -1 with err filled (nothing left
 * open). Call on the main thread before the follower's thread starts. */
int server_init_follower(server_t *s, struct ev_loop *loop, config_t *cfg, server_t *lead,
                         unsigned index, char *err, size_t errlen);

/* On a follower's thread, after its lead's reload_swap succeeded with cfg:
 * the same swap with the lead's new TLS context and bound addresses. Returns
 * 0 with *closed the tunnels server_tenants_apply closed here, or -1 with
 * err filled (a listener that could not join its group). */
int server_reload_follow(server_t *s, config_t *cfg, size_t *closed, char *err,
                         size_t errlen);

/* On a follower's thread: the lead entered drain phase (worker.h posts it):
 * the same step without timers of its own (the lead's decide). */
void server_drain_follow(server_t *s, enum drain_phase phase);

/* On the lead: a follower reported it has no connection left while draining. */
void server_followers_idle(server_t *s);

/* Applies a new snapshot: the one entry point for SIGHUP (main.c) and, later,
 * the admin API and an etcd watch. Everything that can fail comes first: a
 * TLS context from cfg's certificate and key (tls_server_ctx), the echo
 * backend if cfg needs it and it is not running, and a socket bound for each
 * listen address that is new. If any of it fails, nothing has changed and -1
 * returns with err filled. Otherwise, all at once: listeners whose configured
 * address is unchanged keep their socket, removed ones close, new ones
 * accept; new connections get the new TLS context and snapshot (a reference
 * is taken on cfg); and server_tenants_apply runs. Returns 0 and logs
 * "config reloaded" with a summary. On a lead with followers, each follower
 * first applies the same snapshot on its own thread (server_reload_follow),
 * the lead waiting, and the line counts every loop's closed tunnels; a
 * follower that fails is logged and makes the call return -1 (the lead and
 * the others run the new snapshot).
 * Refused (-1) while draining. Counted in
 * reloads_ok / reloads_failed (a caller that fails before it counts its own). The echo
 * backend's address is not changed by a reload (a change is logged). */
int server_reload(server_t *s, config_t *cfg, char *err, size_t errlen);

/* Whether the gateway should be sent new tunnels (GET /readyz): not while
 * draining, nor while no backend of its region is in selection. Returns 1,
 * or 0 with a static reason in *why. */
int server_ready(const server_t *s, const char **why);

/* Holds every live tunnel to the tenant table of s->cfg: an open tunnel (on
 * a stream or parked) whose tenant is gone, no longer enabled in this
 * gateway's region or no longer allowed its kind gets CLOSE(tenant disabled)
 * (proto/README.md §4) and is not parked; everything else runs on. Returns
 * the number of tunnels closed. */
size_t server_tenants_apply(server_t *s);

/* The fleet (fleet.h) counts n live gateways in this region: from now on
 * this gateway admits and meters its share of every tenant's limits
 * (ratelimit_share), and every live tunnel takes the new share at once
 * through server_tenants_apply, the reload path: no tunnel is cut, and one
 * over a smaller cap runs on (issue 7 §3). Logs the change. */
void server_share_set(server_t *s, uint32_t n);

/* Writes "sluiced ready listen=ADDR ... [echo=ADDR]\n" and flushes. */
void server_print_ready(const server_t *s, FILE *out);

/* Starts a graceful shutdown (docs/operations.md, "Drain and rolling
 * restarts"), phase by phase, each logged and told to the service manager
 * (STATUS=):
 *  1. DRAIN_DEREGISTER: /readyz answers 503 at once (server_ready), and for
 *     limits.deregister_ms everything else goes on: connections and tunnels
 *     are accepted, so a load balancer has time to notice;
 *  2. DRAIN_GOAWAY: the listeners close, every connection gets GOAWAY
 *     (conn_refuse_new) and refuses new streams, nothing parks any more; open
 *     tunnels relay both ways for limits.drain_ms, or until none is left;
 *  3. DRAIN_CLOSE: CLOSE(shutting down) on every tunnel left (conn_drain); the
 *     loop stops when the last connection is gone or limits.drain_timeout_ms
 *     passes. Parked tunnels close when the server is disposed.
 * A phase of 0 ms is skipped. A second call stops the loop at once. */
void server_drain(server_t *s);

/* A connection was freed (called by conn_free). */
void server_conn_gone(server_t *s, struct conn *c);

/* An idle connection gave its TLS and output buffers back to malloc (called
 * by conn.c's idle release); counted towards the next heap trim. */
void server_memory_released(server_t *s);

/* Releases everything; idempotent. */
void server_dispose(server_t *s);

#endif
