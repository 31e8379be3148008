/*
 * metrics.h — the gateway's /metrics page (Prometheus text 0.0.4, prom.h).
 *
 * Everything is read at scrape time from counters the loop keeps anyway
 * (server_counters_t, the per-tenant entries of stats.h, the backend
 * table): the hot path only adds to integers it owns, and a scrape is a walk
 * over tables bounded by the config. Label values come from the config
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
    uint64_t reloads_ok, reloads_failed;
    double reload_last_ok_s;    /* unix seconds; 0: never */
} metrics_info_t;

/* Writes the page into b. Returns 0, or -1 when b ran out of room or
 * memory (b->oom). */
int metrics_render(const server_t *s, const metrics_info_t *info, prom_buf_t *b);

#endif
