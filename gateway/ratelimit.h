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
 *
 * In a fleet (gateway/fleet.h) the table knows how many gateways of its
 * region are live (ratelimit_set_share) and admits and applies this gateway's
 * share of each tenant's figures (ratelimit_share): the fleet as a whole
 * enforces about the configured figure, not N times it.
 *
 * Within one process the tenants are counted once for all workers
 * (worker.h): the first worker's table is the owner, made lockable with
 * ratelimit_table_lock_init(slots), and every other worker's table is a view
 * of it (ratelimit_table_view, with its own slot). Admit and release (a
 * tunnel opening and closing) take the owner's mutex, so max_tunnels and
 * max_tunnels_per_user hold for the process as a whole. A tenant's aggregate
 * bits/s bucket is one for the process too, but a packet does not take the
 * lock: each worker holds a lease of tokens moved out of the bucket under
 * the lock (about 10 ms of the rate at a time, the leases together at most
 * half the burst), spends it alone, and refills it when it runs out. Tokens
 * are moved, not made, so the process never passes more than the bucket
 * allows, however the tenant's media spreads over the workers; a lease
 * left in an idle worker is the only slack (docs/architecture.md,
 * "Workers").
 */
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/bucket.h"
#include "config.h"

typedef struct ratelimit_user ratelimit_user_t;
typedef struct ratelimit_lease ratelimit_lease_t;
typedef struct ratelimit_tenant ratelimit_tenant_t;

typedef struct ratelimit_table {
    ratelimit_tenant_t *_tenants; /* entries with at least one tunnel */
    uint32_t _share;              /* live gateways sharing the tenants' limits (0: 1);
                                   * atomic: set by the main thread */
    struct ratelimit_table *_owner; /* a view: entries and counts live in the owner */
    pthread_mutex_t *_lock;       /* the owner's, once ratelimit_table_lock_init ran */
    uint32_t _slot;               /* this table's aggregate bucket in each entry */
    uint32_t _slots;              /* the owner's: aggregate buckets per entry (0: 1) */
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
    struct ratelimit_lease *_lease; /* several workers: this worker's lease on the
                                    * tenant's aggregate bucket; NULL: the bucket itself */
    bucket_t _packets[2], _bits[2], _signal[2]; /* per enum ratelimit_dir */
    unsigned _limited[2];          /* direction has a media limit: signaling budgeted */
} ratelimit_flow_t;

/* The smallest aggregate burst a share keeps (bits): one 1,500-byte packet,
 * so that dividing a burst never leaves a bucket no media packet can pass
 * (unless the configured burst itself is smaller). */
#define RATELIMIT_SHARE_BURST_MIN 12000u

/* Makes an empty owner table lockable for slots workers (1..1024), slot 0
 * its own, each with a lease on every tenant's aggregate. Call before any
 * admit.
 * Returns 0 or -1 (out of memory). */
int ratelimit_table_lock_init(ratelimit_table_t *tb, uint32_t slots);

/* Makes v (zeroed) a view of owner using aggregate slot (1..slots-1); owner
 * must outlive v and its flows. */
void ratelimit_table_view(ratelimit_table_t *v, ratelimit_table_t *owner, uint32_t slot);

/* Frees the owner's mutex (every flow released first); a no-op on a view. */
void ratelimit_table_dispose(ratelimit_table_t *tb);

/* One gateway's share of l when n gateways share it (n 0 counts as 1), into
 * *out: the tenant's aggregate bits_s and bits_burst divided by n (a limit
 * stays a limit: at least 1 bit/s, and a burst of at least
 * RATELIMIT_SHARE_BURST_MIN or the configured one if smaller); max_tunnels
 * becomes ceil(max_tunnels / n), at least 1. 0 (no limit) stays 0. Per
 * tunnel figures and max_tunnels_per_user are per gateway and unchanged: a
 * user's tunnels are few, and one user's client is guarded where its tunnels
 * land (docs/configuration.md, "Tenant limits"). Pure. */
void ratelimit_share(const cfg_tenant_limits_t *l, uint32_t n, cfg_tenant_limits_t *out);

/* Sets how many live gateways share the tenants' limits (0 counts as 1);
 * flows admitted from now on use the new share at once; live flows take it
 * at their next ratelimit_apply (server_share_set runs it for all). */
void ratelimit_set_share(ratelimit_table_t *tb, uint32_t n);

/* The current share divisor (at least 1). */
uint32_t ratelimit_get_share(const ratelimit_table_t *tb);

/* Admits a new tunnel of tenant t for user (the username's user part, may be
 * empty) into f (zeroed by the caller). Returns RATELIMIT_OK with the counts
 * taken and f's buckets set from t->limits; RATELIMIT_ERR_CAP with *reason a
 * static sentence naming the cap; or RATELIMIT_ERR_NOMEM. f holds nothing
 * after an error. Caps and the aggregate bucket are tb's share of
 * t->limits. */
int ratelimit_admit(ratelimit_table_t *tb, const cfg_tenant_t *t, const char *user,
                    size_t user_len, ratelimit_flow_t *f, uint64_t now, const char **reason);

/* New figures for an admitted flow (and its tenant's aggregate bucket, as
 * the flow's table's share of l). */
void ratelimit_apply(ratelimit_flow_t *f, const cfg_tenant_limits_t *l, uint64_t now);

/* Decides one packet of len UDP payload bytes in direction dir; takes tokens
 * only when it passes. A flow never admitted passes everything. */
enum ratelimit_verdict ratelimit_pass(ratelimit_flow_t *f, enum ratelimit_dir dir, size_t len,
                                      int is_signal, uint64_t now);

/* Gives back the flow's counts (idempotent). */
void ratelimit_release(ratelimit_flow_t *f);

/* Moves an admitted flow from one tunnel to another of the same worker;
 * from holds nothing after. */
void ratelimit_move(ratelimit_flow_t *to, ratelimit_flow_t *from);

/* An admitted flow moved to another worker (a session handed off between
 * loops, session.h): it now spends tb's lease. Call on tb's
 * worker; tb must be a view of (or be) the owner f was admitted in. */
void ratelimit_rehome(ratelimit_flow_t *f, ratelimit_table_t *tb);

/* This gateway's open tunnels of a tenant (0 when none). */
uint64_t ratelimit_tenant_tunnels(const ratelimit_table_t *tb, const char *id);

#endif
