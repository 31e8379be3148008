/*
 * stats.h — traffic totals per tenant and kind, for /metrics.
 *
 * Every open tunnel holds a reference on the entry of its tenant and kind
 * and adds its packets, bytes and drops there as they happen, beside its own
 * counters: a plain add on the loop that owns both, no lock, no lookup. The
 * scrape reads the entries (and, with several workers, sums each worker's
 * table). An entry outlives its tunnels so that its counters only grow; it
 * goes when its tenant has left the config and no tunnel holds it
 * (stats_prune), so label values are always configured tenants: the table
 * is bounded by the config, never by clients.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "counters.h"

/* CLOSE codes 0x00..0x0a (proto/README.md §4) have their own slot; then one
 * for any other code and one for a tunnel that ended without CLOSE (reset,
 * connection lost). */
#define STATS_CLOSE_KNOWN 11u
#define STATS_CLOSE_OTHER STATS_CLOSE_KNOWN
#define STATS_CLOSE_RESET (STATS_CLOSE_KNOWN + 1u)
#define STATS_CLOSE_SLOTS (STATS_CLOSE_KNOWN + 2u)

typedef struct stats_entry {
    char tenant[65];
    enum tunnel_kind kind;
    unsigned refs;              /* open tunnels holding it */
    uint64_t opened;            /* tunnels opened (200), resumes not counted */
    uint64_t closed[STATS_CLOSE_SLOTS];
    uint64_t by_fallback[FALLBACK_COUNT]; /* of opened: the client's tunnel-fallback */
    uint64_t by_route[ROUTE_COUNT];       /* of opened: the client's tunnel-route */
    tunnel_counters_t traffic;  /* packets, bytes, drops of its tunnels */
} stats_entry_t;

typedef struct stats_table {
    stats_entry_t **v; /* sorted by (tenant, kind) */
    size_t n;
} stats_table_t;

/* The entry for tenant and kind, created if needed, with one more
 * reference. NULL when out of memory or t is NULL (the tunnel then counts
 * nowhere but in its own and the server's counters). */
stats_entry_t *stats_hold(stats_table_t *t, const char *tenant, enum tunnel_kind kind);

/* Drops a reference (NULL is a no-op). The entry stays until stats_prune. */
void stats_release(stats_entry_t *e);

/* The slot of a CLOSE code in stats_entry_t.closed. */
size_t stats_close_slot(uint64_t code);

/* Frees every entry whose tenant is not in cfg and that no tunnel holds. */
void stats_prune(stats_table_t *t, const config_t *cfg);

/* Frees everything; idempotent. */
void stats_dispose(stats_table_t *t);

/* dst += src, counter by counter (per-worker totals summed at scrape time,
 * worker.h); rtt_last_us takes src's when set, rtt_min_us the smaller. */
void stats_traffic_add(tunnel_counters_t *dst, const tunnel_counters_t *src);

/* dst += src for two entries of the same tenant and kind (refs included). */
void stats_entry_add(stats_entry_t *dst, const stats_entry_t *src);

/* Sorts n entry copies by (tenant, kind) and folds those of the same tenant
 * and kind into one (stats_entry_add): several workers' tables into one.
 * Returns the new count. */
size_t stats_merge(stats_entry_t *v, size_t n);

#endif
