/*
 * ts_hist.h — a log-linear histogram of non-negative integers (round-trip
 * times in nanoseconds, for the benchmarks), in the manner of HdrHistogram.
 *
 * Values below 2^TS_HIST_SUB_BITS each have their own bucket (exact). Above,
 * every power of two [2^e, 2^(e+1)) is cut into 2^TS_HIST_SUB_BITS equal
 * buckets, so a bucket is at most 1/32 (3.1 %) of the values it holds wide,
 * whatever their magnitude: 1 ns resolution at 20 ns, 64 ns at 2 ms. The
 * whole uint64_t range fits in TS_HIST_BUCKETS fixed buckets (15 KiB): no
 * allocation, no overflow bucket.
 *
 * Pure: no I/O, no clock, no allocation. The caller owns the struct.
 */
#ifndef SLUICE_TS_HIST_H
#define SLUICE_TS_HIST_H

#include <stddef.h>
#include <stdint.h>

#define TS_HIST_SUB_BITS 5u
#define TS_HIST_SUB (1u << TS_HIST_SUB_BITS)
/* Exact buckets for 0..SUB-1, then SUB buckets for each e in SUB_BITS..63. */
#define TS_HIST_BUCKETS ((64u - TS_HIST_SUB_BITS + 1u) * TS_HIST_SUB)

typedef struct ts_hist {
    uint64_t count;
    uint64_t min, max;    /* exact; min is UINT64_MAX while empty */
    long double sum;      /* for the mean; exact below 2^64 */
    uint64_t bucket[TS_HIST_BUCKETS];
} ts_hist_t;

/* Empties h. */
void ts_hist_init(ts_hist_t *h);

/* Records one value. */
void ts_hist_add(ts_hist_t *h, uint64_t v);

/* Adds every value of src to dst. */
void ts_hist_merge(ts_hist_t *dst, const ts_hist_t *src);

/* The bucket v falls in (< TS_HIST_BUCKETS). */
size_t ts_hist_index(uint64_t v);

/* The smallest and the largest value bucket i holds (i < TS_HIST_BUCKETS):
 * ts_hist_index(v) == i exactly when lowest(i) <= v <= highest(i). */
uint64_t ts_hist_lowest(size_t i);
uint64_t ts_hist_highest(size_t i);

/* The p-th percentile, 0 < p <= 100: the highest value of the bucket that
 * holds the value of rank ceil(p/100 * count) (1-based, in ascending order),
 * clamped to [min, max], so it is never below the true percentile and at
 * most one bucket width (3.1 %) above it. p = 100 gives max exactly.
 * Returns 0 for an empty histogram or p outside (0, 100]. */
uint64_t ts_hist_percentile(const ts_hist_t *h, double p);

/* The mean, or 0 when empty. */
double ts_hist_mean(const ts_hist_t *h);

#endif
