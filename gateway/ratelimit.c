/* ratelimit.c — see ratelimit.h. */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

struct ratelimit_user {
    ratelimit_user_t *next;
    uint64_t tunnels;
    size_t len;
    char name[]; /* the user part, len bytes (not NUL-terminated) */
};

/* A worker's lease on its tenant's aggregate bucket (several slots only):
 * tokens moved out of the shared bucket under the lock, spent by that
 * worker's flows without it. Tokens are moved, never made, so the slots and
 * the bucket together never pass more than the bucket alone would; what a
 * lease holds (at most LEASE_CHUNK's bound) is the only slack. */
struct ratelimit_lease {
    uint64_t tokens;
    uint64_t retry_at; /* after a refused refill: no lock until then (monotonic ns) */
};

/* How much a refill moves: 10 ms of the rate, at most burst / (2 x slots) so
 * that the leases together hold at most half the burst, and at least what
 * the packet needs; only what it needs while the bucket holds less than two
 * such chunks (the tenant at its limit: the lock is then taken once per
 * passing packet, and not for dropped ones, see retry_at). An unlimited aggregate (rate 0) grants this many at a
 * time, so that a reload that sets a limit is felt within it. */
#define LEASE_MS 10u
#define LEASE_UNLIMITED 10000000ull /* bits */
#define LEASE_RETRY_MAX_NS 10000000ull

struct ratelimit_tenant {
    ratelimit_tenant_t *next;
    uint64_t tunnels;
    ratelimit_user_t *users; /* users with at least one tunnel */
    char id[65];
    bucket_t bits;           /* aggregate media, both directions (under the owner's lock
                              * when the table has several slots) */
    ratelimit_lease_t lease[]; /* per slot: tokens taken from bits for its flows alone */
};

static ratelimit_tenant_t *tenant_find(const ratelimit_table_t *tb, const char *id)
{
    for (ratelimit_tenant_t *e = tb->_tenants; e; e = e->next)
        if (!strcmp(e->id, id))
            return e;
    return NULL;
}

static ratelimit_user_t *user_find(ratelimit_tenant_t *e, const char *name, size_t len)
{
    for (ratelimit_user_t *u = e->users; u; u = u->next)
        if (u->len == len && !memcmp(u->name, name, len))
            return u;
    return NULL;
}

/* Frees entries nobody holds: a tenant's with no tunnels, a user's likewise. */
static void tenant_drop_if_unused(ratelimit_table_t *tb, ratelimit_tenant_t *e)
{
    if (e->tunnels)
        return;
    for (ratelimit_tenant_t **pp = &tb->_tenants; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    free(e);
}

static void user_drop_if_unused(ratelimit_tenant_t *e, ratelimit_user_t *u)
{
    if (u->tunnels)
        return;
    for (ratelimit_user_t **pp = &e->users; *pp; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    }
    free(u);
}

static int dir_limited(const cfg_rate_t *r, const cfg_tenant_limits_t *l)
{
    return r->packets_s || r->bits_s || l->bits_s;
}

/* A divided aggregate: 0 (no limit) stays 0; a limit stays at least floor. */
static uint64_t share_div(uint64_t v, uint32_t n, uint64_t floor)
{
    if (!v)
        return 0;
    uint64_t q = v / n;
    if (floor > v)
        floor = v;
    return q < floor ? floor : q;
}

void ratelimit_share(const cfg_tenant_limits_t *l, uint32_t n, cfg_tenant_limits_t *out)
{
    *out = *l;
    if (n <= 1)
        return;
    out->bits_s = share_div(l->bits_s, n, 1);
    out->bits_burst = share_div(l->bits_burst, n, RATELIMIT_SHARE_BURST_MIN);
    /* ceil: N gateways admit at least the configured figure in all, and at
     * most N - 1 more, rather than fewer than configured. */
    if (l->max_tunnels)
        out->max_tunnels = l->max_tunnels / n + (l->max_tunnels % n != 0);
}

static ratelimit_table_t *owner_of(const ratelimit_table_t *tb)
{
    return tb->_owner ? tb->_owner : (ratelimit_table_t *)tb;
}

static uint32_t slots_of(const ratelimit_table_t *tb)
{
    uint32_t n = owner_of(tb)->_slots;
    return n ? n : 1;
}

static void lock(const ratelimit_table_t *o)
{
    if (o->_lock)
        pthread_mutex_lock(o->_lock);
}

static void unlock(const ratelimit_table_t *o)
{
    if (o->_lock)
        pthread_mutex_unlock(o->_lock);
}

int ratelimit_table_lock_init(ratelimit_table_t *tb, uint32_t slots)
{
    if (tb->_lock)
        return 0;
    pthread_mutex_t *m = malloc(sizeof *m);
    if (!m || pthread_mutex_init(m, NULL) != 0) {
        free(m);
        return -1;
    }
    tb->_lock = m;
    tb->_slots = slots ? slots : 1;
    return 0;
}

void ratelimit_table_view(ratelimit_table_t *v, ratelimit_table_t *owner, uint32_t slot)
{
    memset(v, 0, sizeof *v);
    v->_owner = owner;
    v->_slot = slot;
}

void ratelimit_table_dispose(ratelimit_table_t *tb)
{
    if (!tb->_owner && tb->_lock) {
        pthread_mutex_destroy(tb->_lock);
        free(tb->_lock);
    }
    tb->_lock = NULL;
}

void ratelimit_set_share(ratelimit_table_t *tb, uint32_t n)
{
    __atomic_store_n(&owner_of(tb)->_share, n ? n : 1, __ATOMIC_RELAXED);
}

uint32_t ratelimit_get_share(const ratelimit_table_t *tb)
{
    uint32_t n = __atomic_load_n(&owner_of(tb)->_share, __ATOMIC_RELAXED);
    return n ? n : 1;
}

/* Refills f's lease from its tenant's bucket so that it holds need tokens,
 * under the owner's lock. Returns 1, or 0 when the bucket has not enough
 * (the lease then waits until the bucket could have them). */
static int lease_refill(ratelimit_flow_t *f, uint64_t need, uint64_t now)
{
    ratelimit_table_t *o = owner_of(f->_table);
    ratelimit_tenant_t *e = f->_tenant;
    ratelimit_lease_t *ls = f->_lease;
    uint64_t missing = need - ls->tokens;
    int ok;
    lock(o);
    bucket_t *b = &e->bits;
    if (!b->rate) {
        ls->tokens += missing > LEASE_UNLIMITED ? missing : LEASE_UNLIMITED;
        ok = 1;
    } else {
        uint64_t chunk = b->rate * LEASE_MS / 1000u, cap = b->burst / (2u * slots_of(o));
        if (chunk > cap)
            chunk = cap;
        if (chunk < missing)
            chunk = missing;
        uint64_t have = bucket_tokens(b, now);
        if (have < missing) {
            uint64_t wait = bucket_wait_ns(b, missing, now);
            ls->retry_at = now + (wait < LEASE_RETRY_MAX_NS ? wait : LEASE_RETRY_MAX_NS);
            ok = 0;
        } else {
            /* Scarce (the tenant at its limit): only what this packet
             * needs, so that a worker that asks first does not take what
             * the others' next packets need. */
            if (have < 2 * chunk)
                chunk = missing;
            bucket_take(b, chunk, now);
            ls->tokens += chunk;
            ok = 1;
        }
    }
    unlock(o);
    return ok;
}

/* Takes bits from the tenant's aggregate for f: straight from the bucket
 * with one slot (one thread), from the worker's lease with several. */
static int tenant_take(ratelimit_flow_t *f, uint64_t bits, uint64_t now)
{
    if (!f->_lease)
        return bucket_take(&f->_tenant->bits, bits, now);
    ratelimit_lease_t *ls = f->_lease;
    if (ls->tokens < bits && (now < ls->retry_at || !lease_refill(f, bits, now)))
        return 0;
    ls->tokens -= bits;
    return 1;
}

void ratelimit_apply(ratelimit_flow_t *f, const cfg_tenant_limits_t *cl, uint64_t now)
{
    cfg_tenant_limits_t shared;
    ratelimit_share(cl, f->_table ? ratelimit_get_share(f->_table) : 1, &shared);
    const cfg_tenant_limits_t *l = &shared;
    const cfg_rate_t *r[2] = {&l->up, &l->down};
    for (int d = 0; d < 2; d++) {
        bucket_set(&f->_packets[d], r[d]->packets_s, r[d]->packets_burst, now);
        bucket_set(&f->_bits[d], r[d]->bits_s, r[d]->bits_burst, now);
        bucket_set(&f->_signal[d], l->signal_packets_s, l->signal_packets_burst, now);
        f->_limited[d] = (unsigned)dir_limited(r[d], l);
    }
    if (f->_tenant) { /* the tenant's aggregate: shared, so under the lock */
        ratelimit_table_t *o = owner_of(f->_table);
        lock(o);
        if (f->_tenant->bits.rate != l->bits_s || f->_tenant->bits.burst != l->bits_burst)
            bucket_set(&f->_tenant->bits, l->bits_s, l->bits_burst, now);
        unlock(o);
    }
}

/* The counting part of ratelimit_admit, under the owner's mutex: caps, then
 * the entries (a new tenant entry gets every slot's bucket). */
static int admit_locked(ratelimit_table_t *tb, const cfg_tenant_t *t, const char *user,
                        size_t user_len, const cfg_tenant_limits_t *l, uint32_t slots,
                        uint64_t now, const char **reason, ratelimit_flow_t *f)
{
    ratelimit_tenant_t *e = tenant_find(tb, t->id);
    ratelimit_user_t *u = e ? user_find(e, user, user_len) : NULL;
    /* Issue 7 §3: over a cap the new tunnel is refused; the open ones stay. */
    if (l->max_tunnels && e && e->tunnels >= l->max_tunnels) {
        *reason = "tenant at its concurrent tunnel limit";
        return RATELIMIT_ERR_CAP;
    }
    if (l->max_tunnels_per_user && u && u->tunnels >= l->max_tunnels_per_user) {
        *reason = "user at its concurrent tunnel limit";
        return RATELIMIT_ERR_CAP;
    }
    int new_e = 0;
    if (!e) {
        e = calloc(1, sizeof *e + (slots > 1 ? slots : 0) * sizeof e->lease[0]);
        if (!e)
            return RATELIMIT_ERR_NOMEM;
        memcpy(e->id, t->id, strnlen(t->id, sizeof e->id - 1));
        bucket_init(&e->bits, l->bits_s, l->bits_burst, now);
        e->next = tb->_tenants;
        tb->_tenants = e;
        new_e = 1;
    }
    if (!u) {
        u = calloc(1, sizeof *u + user_len);
        if (!u) {
            if (new_e)
                tenant_drop_if_unused(tb, e);
            return RATELIMIT_ERR_NOMEM;
        }
        memcpy(u->name, user, user_len);
        u->len = user_len;
        u->next = e->users;
        e->users = u;
    }
    e->tunnels++;
    u->tunnels++;
    memset(f, 0, sizeof *f);
    f->_tenant = e;
    f->_user = u;
    return RATELIMIT_OK;
}

int ratelimit_admit(ratelimit_table_t *tb, const cfg_tenant_t *t, const char *user,
                    size_t user_len, ratelimit_flow_t *f, uint64_t now, const char **reason)
{
    cfg_tenant_limits_t shared;
    ratelimit_share(&t->limits, ratelimit_get_share(tb), &shared);
    const cfg_tenant_limits_t *l = &shared;
    ratelimit_table_t *o = owner_of(tb);
    uint32_t slots = slots_of(tb);
    lock(o);
    int rc = admit_locked(o, t, user, user_len, l, slots, now, reason, f);
    if (rc == RATELIMIT_OK) {
        f->_table = tb;
        /* With several workers, this worker's lease on the aggregate. */
        f->_lease = slots > 1 ? &f->_tenant->lease[tb->_slot] : NULL;
        ratelimit_tenant_t *e = f->_tenant;
        if (e->bits.rate != l->bits_s || e->bits.burst != l->bits_burst)
            bucket_set(&e->bits, l->bits_s, l->bits_burst, now); /* a newer snapshot's */
    }
    unlock(o);
    if (rc != RATELIMIT_OK)
        return rc;
    const cfg_rate_t *r[2] = {&l->up, &l->down};
    for (int d = 0; d < 2; d++) {
        bucket_init(&f->_packets[d], r[d]->packets_s, r[d]->packets_burst, now);
        bucket_init(&f->_bits[d], r[d]->bits_s, r[d]->bits_burst, now);
        bucket_init(&f->_signal[d], l->signal_packets_s, l->signal_packets_burst, now);
        f->_limited[d] = (unsigned)dir_limited(r[d], l);
    }
    return RATELIMIT_OK;
}

enum ratelimit_verdict ratelimit_pass(ratelimit_flow_t *f, enum ratelimit_dir dir, size_t len,
                                      int is_signal, uint64_t now)
{
    if (!f->_table || !f->_limited[dir])
        return RATELIMIT_PASS;
    if (is_signal)
        return bucket_take(&f->_signal[dir], 1, now) ? RATELIMIT_PASS : RATELIMIT_DROP_SIGNAL;
    uint64_t bits = (uint64_t)len * 8u;
    /* Check every bucket before taking from any: a packet dropped by one
     * limit costs the others nothing. */
    if (bucket_wait_ns(&f->_packets[dir], 1, now) || bucket_wait_ns(&f->_bits[dir], bits, now))
        return RATELIMIT_DROP_TUNNEL;
    if (!tenant_take(f, bits, now))
        return RATELIMIT_DROP_TENANT;
    bucket_take(&f->_packets[dir], 1, now);
    bucket_take(&f->_bits[dir], bits, now);
    return RATELIMIT_PASS;
}

void ratelimit_release(ratelimit_flow_t *f)
{
    if (!f->_table)
        return;
    ratelimit_table_t *o = owner_of(f->_table);
    ratelimit_tenant_t *e = f->_tenant;
    lock(o);
    e->tunnels--;
    f->_user->tunnels--;
    user_drop_if_unused(e, f->_user);
    tenant_drop_if_unused(o, e);
    unlock(o);
    f->_table = NULL;
    f->_tenant = NULL;
    f->_user = NULL;
    f->_lease = NULL;
}

void ratelimit_move(ratelimit_flow_t *to, ratelimit_flow_t *from)
{
    *to = *from;
    memset(from, 0, sizeof *from);
}

void ratelimit_rehome(ratelimit_flow_t *f, ratelimit_table_t *tb)
{
    if (!f->_table)
        return;
    f->_table = tb;
    f->_lease = slots_of(tb) > 1 ? &f->_tenant->lease[tb->_slot] : NULL;
}

uint64_t ratelimit_tenant_tunnels(const ratelimit_table_t *tb, const char *id)
{
    const ratelimit_table_t *o = owner_of(tb);
    lock(o);
    const ratelimit_tenant_t *e = tenant_find(o, id);
    uint64_t n = e ? e->tunnels : 0;
    unlock(o);
    return n;
}
