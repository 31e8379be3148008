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
