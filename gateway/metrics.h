/*
 * metrics.h — the gateway's /metrics page (Prometheus text 0.0.4, prom.h).
 *
 * Everything is read at scrape time from counters the loop keeps anyway
 * (server_counters_t, the per-tenant entries of stats.h, the backend
 * table): the hot path only adds to integers it owns. A scrape copies them
 * (a memcpy bounded by the config) and the admin listener streams the page
 * out a slice per write (metrics_scrape_next), so even a page of many
 * tenants never holds the loop for more than a slice. Label values come from the config
 * (tenants, kinds, backends) or from fixed lists in the code (reasons,
 * directions, CLOSE names); never from a client.
 *
 * Every metric, its labels and what to alert on: docs/operations.md,
 * "Metrics".
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdint.h>

#include "prom.h"
#include "server.h"

/* What the server does not know about itself: the process and the tenant
 * store, filled in by main.c. */
typedef struct metrics_info {
    const char *version;
    double start_time_s;        /* unix seconds */
    const char *store_type;     /* "inline", "file", "etcd" */
    int store_up;               /* etcd: the watch is running; else 1 */
    int64_t store_revision;     /* the tenant table's revision */
} metrics_info_t;

/* Fills info when a scrape asks (main.c). */
typedef void (*metrics_info_fn)(void *ud, metrics_info_t *info);

/* A scrape in progress: a copy of every counter the page shows, taken at
 * once (so the page is one consistent moment, and tunnels and reloads may
 * come and go while it is written), rendered a slice at a time. The copy is
 * O(tenants with traffic + backends): a memcpy, not a render. */
typedef struct metrics_scrape metrics_scrape_t;

/* NULL when out of memory. */
metrics_scrape_t *metrics_scrape_new(const server_t *s, const metrics_info_t *info);

/* Appends the next part of the page to b, stopping at the first row boundary
 * after budget bytes. Returns 1 when more follows, 0 when the page is
 * complete, -1 when b ran out of room or memory. */
int metrics_scrape_next(metrics_scrape_t *m, prom_buf_t *b, size_t budget);

/* NULL is a no-op. */
void metrics_scrape_free(metrics_scrape_t *m);

/* The whole page into b at once (tests, benchmarks). Returns 0, or -1 when b
 * ran out of room or memory (b->oom). */
int metrics_render(const server_t *s, const metrics_info_t *info, prom_buf_t *b);

#endif
