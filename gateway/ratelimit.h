/*
 * ratelimit.h — a tenant's rate limits and caps applied to its tunnels
 * (issue 7 §3; the figures: cfg_tenant_limits_t, docs/configuration.md).
 *
 * Two parts, no I/O and no clock reads (time is passed in, monotonic ns):
 *  - ratelimit_table_t: what this gateway's tunnels use per tenant: how many
 *    are open (in all and per user) and the tenant's aggregate bits/s bucket.
 *    Owned by the server (tunnel_env_t), keyed by tenant id so that counts
 *    outlive a config snapshot. An entry exists while a tunnel of its tenant
 *    holds it: the table is bounded by the open tunnels. A zeroed table is
 *    valid and empty.
 *  - ratelimit_flow_t: one tunnel's buckets (packets/s and bits/s of media,
 *    and a signaling budget, each direction) and its hold on the table. It
 *    moves with the backend flow when a session resumes (tunnel_take_flow).
 *
 * Caps are checked only when a tunnel opens: a tunnel already open is never
 * closed because another would exceed them. ratelimit_apply takes new figures
 * for a live flow (a reload or the admin API: the buckets keep their tokens up
 * to the new bursts).
 */
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "../proto/bucket.h"
#include "config.h"

typedef struct ratelimit_user ratelimit_user_t;
typedef struct ratelimit_tenant ratelimit_tenant_t;

typedef struct ratelimit_table {
    ratelimit_tenant_t *_tenants; /* entries with at least one tunnel */
} ratelimit_table_t;

enum ratelimit_dir { RATELIMIT_UP = 0, RATELIMIT_DOWN = 1 };

/* What ratelimit_pass decides for one packet. */
enum ratelimit_verdict {
    RATELIMIT_PASS = 0,
    RATELIMIT_DROP_TUNNEL, /* over the tunnel's media packets/s or bits/s */
    RATELIMIT_DROP_TENANT, /* over the tenant's aggregate bits/s */
    RATELIMIT_DROP_SIGNAL, /* signaling over its own budget */
};

/* ratelimit_admit's results. */
enum ratelimit_rc {
    RATELIMIT_OK = 0,
    RATELIMIT_ERR_CAP = -1,   /* a cap is reached: 429 */
    RATELIMIT_ERR_NOMEM = -2, /* no memory for the table entry: 503 */
};

typedef struct ratelimit_flow {
    ratelimit_table_t *_table;     /* NULL: not admitted (or released) */
    ratelimit_tenant_t *_tenant;
    ratelimit_user_t *_user;
    bucket_t _packets[2], _bits[2], _signal[2]; /* per enum ratelimit_dir */
    unsigned _limited[2];          /* direction has a media limit: signaling budgeted */
} ratelimit_flow_t;

/* Admits a new tunnel of tenant t for user (the username's user part, may be
 * empty) into f (zeroed by the caller). Returns RATELIMIT_OK with the counts
 * taken and f's buckets set from t->limits; RATELIMIT_ERR_CAP with *reason a
 * static sentence naming the cap; or RATELIMIT_ERR_NOMEM. f holds nothing
 * after an error. */
int ratelimit_admit(ratelimit_table_t *tb, const cfg_tenant_t *t, const char *user,
                    size_t user_len, ratelimit_flow_t *f, uint64_t now, const char **reason);

/* New figures for an admitted flow (and its tenant's aggregate bucket). */
void ratelimit_apply(ratelimit_flow_t *f, const cfg_tenant_limits_t *l, uint64_t now);

/* Decides one packet of len UDP payload bytes in direction dir; takes tokens
 * only when it passes. A flow never admitted passes everything. */
enum ratelimit_verdict ratelimit_pass(ratelimit_flow_t *f, enum ratelimit_dir dir, size_t len,
                                      int is_signal, uint64_t now);

/* Gives back the flow's counts (idempotent). */
void ratelimit_release(ratelimit_flow_t *f);

/* Moves an admitted flow from one tunnel to another; from holds nothing after. */
void ratelimit_move(ratelimit_flow_t *to, ratelimit_flow_t *from);

/* This gateway's open tunnels of a tenant (0 when none). */
uint64_t ratelimit_tenant_tunnels(const ratelimit_table_t *tb, const char *id);

#endif
