/*
 * prom.h — the Prometheus text exposition format, version 0.0.4, written
 * into a growing buffer; and the fixed-bucket histogram the gateway keeps on
 * its hot path.
 *
 * Pure: no I/O, no clock. The scrape handler (a later file) walks the
 * server's counters and calls these; the result is served as
 * "text/plain; version=0.0.4; charset=utf-8".
 *
 * Format rules followed (prometheus/docs, "Exposition formats"): one
 * "# HELP" and one "# TYPE" line before a family's samples, all samples of a
 * family together; label values escape backslash, double quote and newline;
 * HELP text escapes backslash and newline; a histogram writes cumulative
 * name_bucket{le="..."} samples ending with le="+Inf", then name_sum and
 * name_count.
 *
 * A write that runs out of memory marks the buffer (oom) and later writes do
 * nothing, so a scrape checks once at the end.
 */
#ifndef SLUICE_PROM_H
#define SLUICE_PROM_H

#include <stddef.h>
#include <stdint.h>

typedef struct prom_buf {
    char *p; /* malloc'd, NUL-terminated while len > 0; the caller frees */
    size_t len, cap;
    size_t max; /* 0: no limit; else a write that would pass it sets oom */
    int oom;
} prom_buf_t;

typedef struct prom_label {
    const char *name; /* [a-zA-Z_][a-zA-Z0-9_]*, a constant */
    const char *value; /* any bytes but NUL: escaped here */
} prom_label_t;

enum prom_type { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM };

/* Starts a family: "# HELP name help" and "# TYPE name type". */
void prom_family(prom_buf_t *b, const char *name, enum prom_type type, const char *help);

/* One sample: name{labels} value. n may be 0 (labels NULL). */
void prom_u64(prom_buf_t *b, const char *name, const prom_label_t *labels, size_t n,
              uint64_t value);
void prom_double(prom_buf_t *b, const char *name, const prom_label_t *labels, size_t n,
                 double value);

/* A histogram: the upper bounds of its buckets, ascending, in nanoseconds
 * (exposed in seconds, as Prometheus wants); a shared constant. */
typedef struct prom_bounds {
    const uint64_t *le_ns;
    size_t n; /* at most PROM_BUCKETS_MAX */
} prom_bounds_t;

#define PROM_BUCKETS_MAX 24u

/* Counts per bucket (not cumulative; the last slot is +Inf) and the sum.
 * Embedded in its owner and updated on the hot path: no allocation, a few
 * compares. */
typedef struct prom_hist {
    uint64_t count[PROM_BUCKETS_MAX + 1];
    uint64_t sum_ns;
} prom_hist_t;

/* Adds one observation of v nanoseconds. */
void prom_hist_observe(prom_hist_t *h, const prom_bounds_t *bounds, uint64_t v_ns);

/* Adds src's counts into dst (per-worker histograms summed at scrape time). */
void prom_hist_add(prom_hist_t *dst, const prom_hist_t *src);

/* Writes the histogram's samples (name_bucket, name_sum, name_count) with
 * labels; prom_family(name, PROM_HISTOGRAM, ...) goes first. */
void prom_hist_write(prom_buf_t *b, const char *name, const prom_label_t *labels, size_t n,
                     const prom_hist_t *h, const prom_bounds_t *bounds);

/* Frees the text; the buffer may be used again. */
void prom_buf_free(prom_buf_t *b);

#endif
