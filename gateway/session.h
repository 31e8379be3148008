/*
 * session.h — resumable tunnels (proto/README.md §8.1): a session token names
 * one backend flow (its connected UDP socket and downlink queues) that can
 * move from stream to stream, and outlive the connection that carried it.
 *
 * The server owns one session_table_t. When resume is on
 * (limits.resume_grace_ms > 0) every tunnel that opens gets a session: an
 * unguessable token (RAND_bytes; with $.node.id its first 4 bytes are the
 * node's tag, token.h, and 12 stay random), bound to the tenant, kind, backend region
 * and the credential's user part. A session exists exactly as long as its
 * flow's socket is open; session->t is always the one tunnel that holds that
 * socket, either
 *  - attached: a tunnel on a client's stream, or
 *  - parked: a tunnel on the session's own parking host (park), kept for
 *    limits.resume_grace_ms after its stream went away without CLOSE or
 *    END_STREAM. A parked tunnel has no stream: its host's operations do
 *    nothing but free it (on the grace timer, or when it fails), and backend
 *    packets keep queueing in its sendq within the usual bounds.
 * Moving the flow between tunnels is tunnel_take_flow (tunnel.h); this module
 * only decides where it goes and keeps the table.
 *
 * Several workers (worker.h): a client's resume may reach a loop other than
 * the one holding its flow. Each worker's table then has a router
 * (session_router_t, set by worker.c): a process-wide directory of which
 * worker holds each token, and a way to run a function on another worker's
 * loop. A resume that misses here but is held by another worker is handed
 * off (session_fetch): the owner detaches the flow (parked, or taken over
 * from its stream, which gets CLOSE(taken over)), stops its watchers and
 * posts it back; this worker adopts it (tunnel_resume_adopt: watchers on
 * this loop, this worker's stats and rate-limit slot) and only then
 * answers the stream. If the stream is gone meanwhile, the flow is parked
 * here instead.
 *
 * Sessions are bounded by limits.max_tunnels: each holds a socket, and a
 * parked tunnel counts as an open one. Lookups hash the random token; the
 * comparison is constant-time.
 */
#ifndef SLUICE_SESSION_H
#define SLUICE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "../common/list.h"
#include "../proto/name.h"
#include "../proto/token.h"
#include "config.h"
#include "request.h"
#include "tunnel.h"

#define SESSION_BUCKETS 1024u  /* power of two */

/* The advertised address of the fleet's node whose id has this tag
 * (token.h), or NULL when no live node or more than one has it (fleet.h:
 * fleet_peer_address). Valid until the loop runs again. */
typedef const char *(*session_peer_fn)(void *ud, uint32_t tag);

struct session_table;
struct session_handoff;

/* How a worker's table reaches the others (worker.c fills it in). */
typedef struct session_router {
    void *ud;
    unsigned worker;  /* this table's worker */
    /* The worker holding token, or -1. */
    int (*owner)(void *ud, const uint8_t *token);
    /* Records (worker >= 0) or forgets (-1, only if held by expect) token. */
    void (*set_owner)(void *ud, const uint8_t *token, int worker, int expect);
    /* Runs fn(table of worker, arg) on worker's loop, later. Returns 0, or
     * -1 (out of memory: fn will not run). */
    int (*post)(void *ud, unsigned worker, void (*fn)(struct session_table *, void *),
                void *arg);
} session_router_t;

typedef struct session_table {
    tunnel_env_t *env;
    const session_router_t *router; /* NULL: this table is the process's */
    session_peer_fn peer;     /* NULL: no fleet, every miss is a 410 (set by main.c on
                               * the lead's table: only the main thread reads the fleet) */
    void *peer_ud;
    unsigned peer_fleet : 1;  /* a follower's: the lead's table has peer (a miss is asked
                               * of the lead, which may answer 421) */
    list_t buckets[SESSION_BUCKETS];
    size_t count;             /* sessions with a flow (resumable) */
    unsigned closed : 1;      /* shutting down: nothing parks any more */
} session_table_t;

typedef struct session {
    uint8_t token[TOKEN_BYTES];
    char text[TOKEN_TEXT_LEN + 1];   /* the token as the tunnel-session header carries it */
    list_t _link;                    /* its bucket; self-linked once ended */
    session_table_t *_table;
    tunnel_t *t;                     /* the tunnel holding the flow; NULL once ended */
    tunnel_host_t park;              /* host of the parked tunnel (park.tunnels) */
    config_t *_cfg;                  /* park.cfg: a reference to the parked tunnel's snapshot */
    enum tunnel_kind kind;
    char tenant[NAME_LEN_MAX + 1];
    char region[NAME_LEN_MAX + 1];
    char user[CRED_USERNAME_MAX + 1];
    unsigned _ended : 1;             /* the flow is gone; freed once park is empty */
} session_t;

/* An empty table for the tunnels of env; env->sessions is set to it. */
void session_table_init(session_table_t *st, tunnel_env_t *env);

/* Closes every parked tunnel (their sockets close) and stops parking. Call
 * after every connection is gone. Idempotent. */
void session_table_dispose(session_table_t *st);

/* A new session for t, which has just opened on target, with a fresh token.
 * Returns it (t->session set), or NULL when out of memory or randomness (the
 * tunnel then opens without resume). */
session_t *session_new(session_table_t *st, tunnel_t *t, const req_target_t *target);

/* The resumable session with this token, if it is bound to exactly this
 * target's tenant, kind, region and user; NULL otherwise (one answer for all
 * misses: no oracle). */
session_t *session_find(session_table_t *st, const req_target_t *target);

/* A resume this table has no session for (session_find gave NULL): the
 * advertised address of the node its token names, when that is another live
 * node of the fleet with an address (the 421 of proto/README.md §8.1); NULL
 * for a 410 (no fleet, this node's own tag, an unknown or ambiguous tag).
 * cfg is the snapshot the request was checked with (its $.node.id). */
const char *session_redirect(const session_table_t *st, const config_t *cfg,
                             const req_target_t *target);

/* A resume that session_find missed: when another worker holds the token,
 * asks it for the flow and returns 0; t waits (t->handoff set, no answer
 * yet) until tunnel_resume_adopt answers it on this loop. expiry: the
 * resume credential's (unix seconds). -1: no other worker has it (410). */
int session_fetch(session_table_t *st, tunnel_t *t, const req_target_t *target,
                  uint64_t expiry);

/* t is freed while its fetch is out: the flow, when it comes, parks here. */
void session_fetch_cancel(tunnel_t *t);

/* Moves s's flow off its attached tunnel into a parked one, for
 * limits.resume_grace_ms. Returns 0, or -1 (table closed, out of memory: the
 * flow stays where it was). */
int session_park(session_t *s);

/* 1 when s's flow is parked (not on a client's stream). */
int session_parked(const session_t *s);

/* s's flow has closed (its tunnel's socket): s is no longer resumable and is
 * freed as soon as its parking host is empty. Called by tunnel.c only. */
void session_end(session_t *s);

#endif
