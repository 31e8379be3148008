/*
 * backend.h — the health of every backend the config names, and the choice
 * of one for a new tunnel.
 *
 * The server owns one backend_table_t, built from its config snapshot: one
 * entry per distinct backend address (a backend in two pools is one entry,
 * checked with the settings of the first pool that names it). Each entry is
 * up or down:
 *  - active probes (cfg_health_t, probe "stun"): every interval_ms a STUN
 *    Binding request (RFC 8489 §6, proto/stun.h) from a connected UDP socket
 *    of its own; a Binding success or error response with the transaction id
 *    is an answer (an SFU that refuses unauthenticated Bindings still
 *    answers). down_after unanswered probes in a row take the backend out,
 *    up_after answered ones bring it back;
 *  - ICMP errors (port or host unreachable, seen by a probe socket or reported
 *    by a tunnel with backend_report_error) take it out at once: nothing
 *    listens there. With probe "none" it comes back after interval_ms, to be
 *    tried again by the next tunnels.
 * Every entry starts up, and its first probe goes out at once.
 * "builtin:echo" is the gateway's own socket: always up, never probed.
 *
 * Selection (backend_select) is rendezvous hashing (hrw.h) over the pool's up
 * members, keyed by the caller's key: the session token when the tunnel has
 * one, so the same key keeps its backend while that backend stays up, and a
 * backend going down moves only its own keys.
 *
 * A later config snapshot (reload, admin API) goes through
 * backend_table_apply, which keeps the state of the addresses it still names.
 * backend_select's results are only used at once (the tunnel copies the
 * address), so replacing the table under live tunnels is safe.
 */
#ifndef SLUICE_BACKEND_H
#define SLUICE_BACKEND_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../proto/stun.h"
#include "config.h"
#include "log.h"

typedef struct backend {
    struct sockaddr_storage sa;  /* where tunnels send (the echo's bound address for builtin) */
    socklen_t len;
    int builtin;                 /* "builtin:echo": always up, no probe */
    uint64_t id;                 /* hrw node id: hash of the address text */
    char name[64];               /* the address text, for logs */
    cfg_health_t health;         /* settings of the first pool naming it */
    int up;
    uint32_t fails, oks;         /* consecutive unanswered / answered probes */
    uint64_t probes_sent, probes_answered; /* since start */
    int fd;                      /* probe socket, or -1 */
    ev_io io;
    ev_timer timer;              /* probe timeout, next probe, or (probe none) the hold-down */
    int waiting;                 /* a probe is out: txid is its transaction id */
    int _deadline;               /* the timer is the probe's deadline, not the next probe */
    uint8_t txid[STUN_TXID_LEN];
    struct backend_table *_table;
} backend_t;

typedef struct backend_table {
    struct ev_loop *loop;
    backend_t *items;            /* fixed once built: pointers stay valid */
    size_t n;
} backend_table_t;

/* Builds the table for every pool of cfg and starts probing. echo/echo_len:
 * where "builtin:echo" is bound (NULL when cfg has none). Returns 0, or -1
 * with err filled (nothing left open). */
int backend_table_init(backend_table_t *bt, struct ev_loop *loop, const config_t *cfg,
                       const struct sockaddr *echo, socklen_t echo_len, char *err,
                       size_t errlen);

/* Applies a new config snapshot (reload, admin API, etcd watch): a new table
 * for cfg's pools, in which every address the old table had keeps its state
 * (up or down, consecutive counts; a probe "none" hold-down starts again);
 * new addresses start up. Probes restart under the new settings, the first
 * at once. Returns 0, or -1 with err filled and bt unchanged. Open tunnels
 * are not touched: they keep the backend they have. */
int backend_table_apply(backend_table_t *bt, const config_t *cfg, const struct sockaddr *echo,
                        socklen_t echo_len, char *err, size_t errlen);

/* Stops every probe and frees the table; idempotent. */
void backend_table_dispose(backend_table_t *bt);

/* The backend for a new tunnel on pool, keyed by key (hrw_hash of the session
 * token, or of anything that spreads tunnels when there is none). NULL when no
 * member of the pool is up (or the pool is empty). The result stays valid
 * until backend_table_dispose. */
const backend_t *backend_select(const backend_table_t *bt, const cfg_pool_t *pool, uint64_t key);

/* A tunnel's send or receive to sa failed with an ICMP error err
 * (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH): the backend is taken out. Unknown
 * addresses and the built-in echo are ignored. */
void backend_report_error(backend_table_t *bt, const struct sockaddr *sa, socklen_t len,
                          int err);

/* The entry for an address, or NULL. */
backend_t *backend_find(const backend_table_t *bt, const struct sockaddr *sa, socklen_t len);

#endif
