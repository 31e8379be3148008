/*
 * ts_hist.c — log-linear histogram (ts_hist.h).
 */
#include "ts_hist.h"

#include <math.h>
#include <string.h>

void ts_hist_init(ts_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

/* v < SUB: bucket v. Otherwise, with e = floor(log2 v) >= SUB_BITS, the top
 * SUB_BITS + 1 bits of v are 1 followed by the sub-bucket s; the group
 * g = e - SUB_BITS + 1 (>= 1) holds SUB buckets: index g * SUB + s. */
size_t ts_hist_index(uint64_t v)
{
    if (v < TS_HIST_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned g = e - TS_HIST_SUB_BITS + 1u;
    uint64_t s = (v >> (e - TS_HIST_SUB_BITS)) - TS_HIST_SUB;
    return (size_t)g * TS_HIST_SUB + (size_t)s;
}

uint64_t ts_hist_lowest(size_t i)
{
    if (i < TS_HIST_SUB)
        return i;
    size_t g = i / TS_HIST_SUB, s = i % TS_HIST_SUB;
    return ((uint64_t)TS_HIST_SUB + s) << (g - 1);
}

uint64_t ts_hist_highest(size_t i)
{
    if (i < TS_HIST_SUB)
        return i;
    size_t g = i / TS_HIST_SUB;
    return ts_hist_lowest(i) + ((UINT64_C(1) << (g - 1)) - 1);
}

void ts_hist_add(ts_hist_t *h, uint64_t v)
{
    h->bucket[ts_hist_index(v)]++;
    h->count++;
    h->sum += (long double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void ts_hist_merge(ts_hist_t *dst, const ts_hist_t *src)
{
    for (size_t i = 0; i < TS_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t ts_hist_percentile(const ts_hist_t *h, double p)
{
    if (h->count == 0 || !(p > 0.0 && p <= 100.0))
        return 0;
    /* p * count first: 99.9 / 100 * 1000 rounds up to 999.0000000000001.
     * The epsilon absorbs what is left of p's binary representation. */
    uint64_t rank = (uint64_t)ceil(p * (double)h->count / 100.0 - 1e-9);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < TS_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = ts_hist_highest(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double ts_hist_mean(const ts_hist_t *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}
