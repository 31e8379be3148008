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

struct ratelimit_tenant {
    ratelimit_tenant_t *next;
    uint64_t tunnels;
    ratelimit_user_t *users; /* users with at least one tunnel */
    bucket_t bits;           /* aggregate media, both directions */
    char id[65];
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

void ratelimit_set_share(ratelimit_table_t *tb, uint32_t n)
{
    tb->_share = n ? n : 1;
}

uint32_t ratelimit_get_share(const ratelimit_table_t *tb)
{
    return tb->_share ? tb->_share : 1;
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
    if (f->_tenant && (f->_tenant->bits.rate != l->bits_s || f->_tenant->bits.burst != l->bits_burst))
        bucket_set(&f->_tenant->bits, l->bits_s, l->bits_burst, now);
}

int ratelimit_admit(ratelimit_table_t *tb, const cfg_tenant_t *t, const char *user,
                    size_t user_len, ratelimit_flow_t *f, uint64_t now, const char **reason)
{
    cfg_tenant_limits_t shared;
    ratelimit_share(&t->limits, ratelimit_get_share(tb), &shared);
    const cfg_tenant_limits_t *l = &shared;
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
        e = calloc(1, sizeof *e);
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
    f->_table = tb;
    f->_tenant = e;
    f->_user = u;
    const cfg_rate_t *r[2] = {&l->up, &l->down};
    for (int d = 0; d < 2; d++) {
        bucket_init(&f->_packets[d], r[d]->packets_s, r[d]->packets_burst, now);
        bucket_init(&f->_bits[d], r[d]->bits_s, r[d]->bits_burst, now);
        bucket_init(&f->_signal[d], l->signal_packets_s, l->signal_packets_burst, now);
        f->_limited[d] = (unsigned)dir_limited(r[d], l);
    }
    if (e->bits.rate != l->bits_s || e->bits.burst != l->bits_burst)
        bucket_set(&e->bits, l->bits_s, l->bits_burst, now); /* a newer snapshot's figures */
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
    if (!bucket_take(&f->_tenant->bits, bits, now))
        return RATELIMIT_DROP_TENANT;
    bucket_take(&f->_packets[dir], 1, now);
    bucket_take(&f->_bits[dir], bits, now);
    return RATELIMIT_PASS;
}

void ratelimit_release(ratelimit_flow_t *f)
{
    if (!f->_table)
        return;
    ratelimit_tenant_t *e = f->_tenant;
    e->tunnels--;
    f->_user->tunnels--;
    user_drop_if_unused(e, f->_user);
    tenant_drop_if_unused(f->_table, e);
    f->_table = NULL;
    f->_tenant = NULL;
    f->_user = NULL;
}

void ratelimit_move(ratelimit_flow_t *to, ratelimit_flow_t *from)
{
    *to = *from;
    memset(from, 0, sizeof *from);
}

uint64_t ratelimit_tenant_tunnels(const ratelimit_table_t *tb, const char *id)
{
    const ratelimit_tenant_t *e = tenant_find(tb, id);
    return e ? e->tunnels : 0;
}
