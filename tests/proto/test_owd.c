/* test_owd.c — proto/owd.c: waiting time above the path's base from sender
 * stamps, with an arbitrary clock offset, stamps that wrap at 2^32 us, the
 * one-minute buckets that let the base follow a slower path, and a silence
 * longer than the window. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "../../proto/owd.h"

#define US 1000ull
#define MS 1000000ull
#define S 1000000000ull

/* A packet sent at sender time sent_ns (sender's clock) that arrived at
 * arrival_ns (receiver's clock). */
static uint64_t sample(owd_t *o, uint64_t sent_ns, uint64_t arrival_ns)
{
    return owd_sample(o, (uint32_t)(sent_ns / 1000u), arrival_ns);
}

Test(owd, the_first_packet_is_the_base_and_later_delay_is_measured_above_it)
{
    owd_t o;
    owd_init(&o);
    /* Clocks 1234.5 s apart; the path takes 2 ms unqueued. */
    const uint64_t off = 1234500 * MS, path = 2 * MS;
    cr_assert_eq(sample(&o, 10 * S, 10 * S + off + path), 0);
    cr_assert_eq(sample(&o, 10 * S + 20 * MS, 10 * S + 20 * MS + off + path), 0);
    cr_assert_eq(sample(&o, 10 * S + 40 * MS, 10 * S + 40 * MS + off + path + 150 * MS), 150 * MS,
                 "waited 150 ms above the base");
    cr_assert_eq(sample(&o, 10 * S + 60 * MS, 10 * S + 60 * MS + off + path + 7 * US), 7 * US);
}

Test(owd, a_faster_packet_lowers_the_base)
{
    owd_t o;
    owd_init(&o);
    /* The first packet had already waited 80 ms: it is the base until a
     * faster one shows the path's real delay. */
    cr_assert_eq(sample(&o, 0, 100 * MS), 0);
    cr_assert_eq(sample(&o, 10 * MS, 30 * MS), 0, "20 ms: below the base, now the base");
    cr_assert_eq(sample(&o, 20 * MS, 140 * MS), 100 * MS);
}

Test(owd, stamps_wrap_at_2_to_the_32_microseconds)
{
    owd_t o;
    owd_init(&o);
    const uint64_t wrap = (1ull << 32) * US;
    uint64_t t = wrap - 30 * MS; /* the sender's clock wraps 30 ms in */
    uint64_t arr = 5 * S;
    for (int i = 0; i < 10; i++, t += 10 * MS, arr += 10 * MS)
        cr_assert_eq(sample(&o, t, arr), 0, "packet %d, across the wrap", i);
    cr_assert_eq(sample(&o, t, arr + 250 * MS), 250 * MS, "after the wrap");
}

Test(owd, the_base_follows_a_slower_path_within_the_window)
{
    owd_t o;
    owd_init(&o);
    uint64_t t = 0;
    cr_assert_eq(sample(&o, t, t + 1 * MS), 0);
    /* From now on the path takes 41 ms (a new route, or the clocks drifting
     * apart): first counted as waiting, then the new base. */
    for (t = 1 * S; t < (OWD_BUCKETS - 1) * OWD_BUCKET_NS; t += 10 * S)
        cr_assert_eq(sample(&o, t, t + 41 * MS), 40 * MS, "at %llu s", (unsigned long long)(t / S));
    /* Once the bucket with the 1 ms packet is older than the window. */
    t = (OWD_BUCKETS + 1) * OWD_BUCKET_NS;
    cr_assert_eq(sample(&o, t, t + 41 * MS), 0, "the window forgot the faster path");
    cr_assert_eq(sample(&o, t + 20 * MS, t + 20 * MS + 61 * MS), 20 * MS);
}

Test(owd, a_silence_longer_than_the_window_starts_afresh)
{
    owd_t o;
    owd_init(&o);
    cr_assert_eq(sample(&o, 0, 1 * MS), 0);
    uint64_t t = (OWD_BUCKETS + 3) * OWD_BUCKET_NS;
    cr_assert_eq(sample(&o, t, t + 90 * MS), 0, "the old base is stale");
    cr_assert_eq(sample(&o, t + 10 * MS, t + 10 * MS + 95 * MS), 5 * MS);
}

Test(owd, a_gap_of_a_few_buckets_keeps_the_older_minimum)
{
    owd_t o;
    owd_init(&o);
    cr_assert_eq(sample(&o, 0, 1 * MS), 0);
    uint64_t t = 3 * OWD_BUCKET_NS + 5 * S; /* buckets 1 and 2 saw nothing */
    cr_assert_eq(sample(&o, t, t + 31 * MS), 30 * MS, "the minute-0 base still holds");
}
