/*
 * test_hist.c — the benchmarks' log-linear histogram (tests/support/ts_hist.h):
 * bucket edges (exact below 32, 32 buckets per power of two above, the whole
 * uint64_t range), and percentiles on data whose true percentiles are known.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "../support/ts_hist.h"

Test(hist, small_values_are_exact)
{
    for (uint64_t v = 0; v < 32; v++) {
        cr_assert_eq(ts_hist_index(v), v);
        cr_assert_eq(ts_hist_lowest(v), v);
        cr_assert_eq(ts_hist_highest(v), v);
    }
    /* 32..63: still one value per bucket (width 2^0). */
    cr_assert_eq(ts_hist_index(32), 32);
    cr_assert_eq(ts_hist_index(63), 63);
    cr_assert_eq(ts_hist_highest(63), 63);
    /* 64..127: width 2. */
    cr_assert_eq(ts_hist_index(64), 64);
    cr_assert_eq(ts_hist_index(65), 64);
    cr_assert_eq(ts_hist_index(66), 65);
    cr_assert_eq(ts_hist_lowest(64), 64);
    cr_assert_eq(ts_hist_highest(64), 65);
}

Test(hist, edges_are_contiguous_over_the_whole_range)
{
    cr_assert_eq(ts_hist_lowest(0), 0);
    for (size_t i = 1; i < TS_HIST_BUCKETS; i++) {
        cr_assert_eq(ts_hist_lowest(i), ts_hist_highest(i - 1) + 1, "bucket %zu", i);
        cr_assert_eq(ts_hist_index(ts_hist_lowest(i)), i, "bucket %zu", i);
        cr_assert_eq(ts_hist_index(ts_hist_highest(i)), i, "bucket %zu", i);
        cr_assert_eq(ts_hist_index(ts_hist_lowest(i) - 1), i - 1, "bucket %zu", i);
        /* width at most 1/32 of the lowest value it holds */
        uint64_t w = ts_hist_highest(i) - ts_hist_lowest(i) + 1;
        cr_assert(i < 32 || w <= ts_hist_lowest(i) / 32, "bucket %zu width %llu", i,
                  (unsigned long long)w);
    }
    cr_assert_eq(ts_hist_highest(TS_HIST_BUCKETS - 1), UINT64_MAX);
    cr_assert_eq(ts_hist_index(UINT64_MAX), TS_HIST_BUCKETS - 1);
    /* 1 ms = 1,000,000 ns: 2^19 <= v < 2^20, width 2^14 = 16384 */
    size_t i = ts_hist_index(1000000);
    cr_assert_eq(ts_hist_lowest(i), 999424);
    cr_assert_eq(ts_hist_highest(i), 1015807);
}

Test(hist, empty)
{
    ts_hist_t h;
    ts_hist_init(&h);
    cr_assert_eq(h.count, 0);
    cr_assert_eq(ts_hist_percentile(&h, 50), 0);
    cr_assert_eq(ts_hist_mean(&h), 0.0);
}

Test(hist, percentiles_of_1_to_1000)
{
    static ts_hist_t h;
    ts_hist_init(&h);
    for (uint64_t v = 1000; v >= 1; v--)   /* order does not matter */
        ts_hist_add(&h, v);
    cr_assert_eq(h.count, 1000);
    cr_assert_eq(h.min, 1);
    cr_assert_eq(h.max, 1000);
    cr_assert_float_eq(ts_hist_mean(&h), 500.5, 1e-9);
    /* rank 500 is the value 500, in [496, 503] (width 8 between 256 and 511) */
    cr_assert_eq(ts_hist_percentile(&h, 50), 503);
    /* rank 900 = 900, in [896, 911] */
    cr_assert_eq(ts_hist_percentile(&h, 90), 911);
    /* rank 990 = 990, in [976, 991] */
    cr_assert_eq(ts_hist_percentile(&h, 99), 991);
    /* rank 999 = 999, in [992, 1007]: clamped to max */
    cr_assert_eq(ts_hist_percentile(&h, 99.9), 1000);
    cr_assert_eq(ts_hist_percentile(&h, 100), 1000);
    /* rank 1 = 1, exact */
    cr_assert_eq(ts_hist_percentile(&h, 0.1), 1);
    cr_assert_eq(ts_hist_percentile(&h, 0), 0);
    cr_assert_eq(ts_hist_percentile(&h, 101), 0);
}

Test(hist, percentile_bounds_hold_for_every_rank)
{
    /* A spread of magnitudes: v = 37 * k^2 ns for k = 1..2000 (37 ns .. 148 ms),
     * already sorted, so the true p-th percentile is v[rank - 1]. */
    static ts_hist_t h;
    ts_hist_init(&h);
    for (uint64_t k = 1; k <= 2000; k++)
        ts_hist_add(&h, 37 * k * k);
    for (int pm = 1; pm <= 1000; pm++) {
        double p = pm / 10.0;
        uint64_t rank = ((uint64_t)pm * 2000 + 999) / 1000;
        uint64_t truth = 37 * rank * rank;
        uint64_t got = ts_hist_percentile(&h, p);
        cr_assert_geq(got, truth, "p%.1f", p);
        cr_assert_leq(got - truth, truth / 32, "p%.1f: %llu vs %llu", p,
                      (unsigned long long)got, (unsigned long long)truth);
    }
}

Test(hist, merge_equals_adding_to_one)
{
    static ts_hist_t a, b, both;
    ts_hist_init(&a);
    ts_hist_init(&b);
    ts_hist_init(&both);
    for (uint64_t v = 0; v < 5000; v += 7) {
        ts_hist_add(v % 2 ? &a : &b, v * 1009);
        ts_hist_add(&both, v * 1009);
    }
    ts_hist_merge(&a, &b);
    cr_assert_eq(a.count, both.count);
    cr_assert_eq(a.min, both.min);
    cr_assert_eq(a.max, both.max);
    cr_assert_arr_eq(a.bucket, both.bucket, sizeof a.bucket);
    cr_assert_eq(ts_hist_percentile(&a, 99), ts_hist_percentile(&both, 99));
}
