/*
 * stats.c — traffic totals per tenant and kind (see stats.h).
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

static int entry_cmp(const stats_entry_t *e, const char *tenant, enum tunnel_kind kind)
{
    int r = strcmp(e->tenant, tenant);
    return r ? r : (int)e->kind - (int)kind;
}

/* Index of (tenant, kind), or where it would go, with *found. */
static size_t find(const stats_table_t *t, const char *tenant, enum tunnel_kind kind, int *found)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = entry_cmp(t->v[mid], tenant, kind);
        if (r == 0) {
            *found = 1;
            return mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

stats_entry_t *stats_hold(stats_table_t *t, const char *tenant, enum tunnel_kind kind)
{
    if (!t)
        return NULL;
    int found;
    size_t at = find(t, tenant, kind, &found);
    if (found) {
        t->v[at]->refs++;
        return t->v[at];
    }
    size_t len = strlen(tenant);
    stats_entry_t *e = len < sizeof e->tenant ? calloc(1, sizeof *e) : NULL;
    stats_entry_t **grown = e ? realloc(t->v, (t->n + 1) * sizeof *t->v) : NULL;
    if (!grown) {
        free(e);
        return NULL;
    }
    memcpy(e->tenant, tenant, len + 1);
    e->kind = kind;
    e->refs = 1;
    t->v = grown;
    memmove(&t->v[at + 1], &t->v[at], (t->n - at) * sizeof *t->v);
    t->v[at] = e;
    t->n++;
    return e;
}

void stats_release(stats_entry_t *e)
{
    if (e && e->refs)
        e->refs--;
}

size_t stats_close_slot(uint64_t code)
{
    return code < STATS_CLOSE_KNOWN ? (size_t)code : STATS_CLOSE_OTHER;
}

void stats_prune(stats_table_t *t, const config_t *cfg)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->n; i++) {
        stats_entry_t *e = t->v[i];
        if (e->refs || config_tenant(cfg, e->tenant, strlen(e->tenant)))
            t->v[keep++] = e;
        else
            free(e);
    }
    t->n = keep;
}

void stats_dispose(stats_table_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

void stats_traffic_add(tunnel_counters_t *dst, const tunnel_counters_t *src)
{
    uint64_t last = src->rtt_last_us ? src->rtt_last_us : dst->rtt_last_us;
    uint64_t min = dst->rtt_min_us;
    if (src->rtt_min_us && (!min || src->rtt_min_us < min))
        min = src->rtt_min_us;
    /* Every field is a uint64_t (counters.h): add them all, then fix the
     * two that are not sums. */
    _Static_assert(sizeof(tunnel_counters_t) % sizeof(uint64_t) == 0,
                   "tunnel_counters_t: uint64_t fields only");
    uint64_t *d = (uint64_t *)dst;
    const uint64_t *s = (const uint64_t *)src;
    for (size_t i = 0; i < sizeof *dst / sizeof(uint64_t); i++)
        d[i] += s[i];
    dst->rtt_last_us = last;
    dst->rtt_min_us = min;
}

void stats_entry_add(stats_entry_t *dst, const stats_entry_t *src)
{
    dst->refs += src->refs;
    dst->opened += src->opened;
    for (size_t i = 0; i < STATS_CLOSE_SLOTS; i++)
        dst->closed[i] += src->closed[i];
    for (size_t i = 0; i < FALLBACK_COUNT; i++)
        dst->by_fallback[i] += src->by_fallback[i];
    for (size_t i = 0; i < ROUTE_COUNT; i++)
        dst->by_route[i] += src->by_route[i];
    stats_traffic_add(&dst->traffic, &src->traffic);
}

static int merge_cmp(const void *a, const void *b)
{
    const stats_entry_t *x = a, *y = b;
    return entry_cmp(x, y->tenant, y->kind);
}

size_t stats_merge(stats_entry_t *v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, merge_cmp);
    size_t out = 0;
    for (size_t i = 1; i < n; i++) {
        if (merge_cmp(&v[out], &v[i]) == 0)
            stats_entry_add(&v[out], &v[i]);
        else if (++out != i)
            v[out] = v[i];
    }
    return out + 1;
}
