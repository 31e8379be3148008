/* test_bucket.c — proto/bucket.c: exact refill arithmetic, burst, the
 * unlimited bucket, clock steps backwards, long gaps, reconfiguration, and a
 * long run whose passed count matches rate x time + burst exactly. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "../../proto/bucket.h"

#define MS 1000000ull
#define S 1000000000ull

Test(bucket, starts_full_and_burst_is_exact)
{
    bucket_t b;
    bucket_init(&b, 100, 10, 5 * S);
    for (int i = 0; i < 10; i++)
        cr_assert(bucket_take(&b, 1, 5 * S), "take %d of the burst", i);
    cr_assert_not(bucket_take(&b, 1, 5 * S), "the 11th at the same instant is over the burst");
}

Test(bucket, refill_is_rate_times_elapsed)
{
    bucket_t b;
    bucket_init(&b, 100, 10, 0); /* one token every 10 ms */
    cr_assert(bucket_take(&b, 10, 0));
    cr_assert_eq(bucket_tokens(&b, 9 * MS), 0);
    cr_assert_not(bucket_take(&b, 1, 9 * MS));
    cr_assert(bucket_take(&b, 1, 10 * MS), "exactly one token after 10 ms");
    cr_assert_not(bucket_take(&b, 1, 10 * MS));
    /* fractions accumulate: 3 x 3.4 ms = 10.2 ms -> one more token */
    cr_assert_not(bucket_take(&b, 1, 10 * MS + 3400000));
    cr_assert_not(bucket_take(&b, 1, 10 * MS + 6800000));
    cr_assert(bucket_take(&b, 1, 20 * MS + 200000));
}

Test(bucket, refill_caps_at_burst)
{
    bucket_t b;
    bucket_init(&b, 1000, 50, 0);
    cr_assert(bucket_take(&b, 50, 0));
    cr_assert_eq(bucket_tokens(&b, 3600 * S), 50, "an hour idle fills to the burst, no more");
    cr_assert_not(bucket_take(&b, 51, 3600 * S));
    cr_assert(bucket_take(&b, 50, 3600 * S));
}

Test(bucket, n_over_burst_never_passes)
{
    bucket_t b;
    bucket_init(&b, 8000, 12000, 0); /* 8 kbit/s, 12 kbit burst */
    cr_assert_not(bucket_take(&b, 12001, 100 * S));
    cr_assert_eq(bucket_wait_ns(&b, 12001, 100 * S), UINT64_MAX);
    cr_assert(bucket_take(&b, 12000, 100 * S));
}

Test(bucket, bits_per_second)
{
    bucket_t b;
    bucket_init(&b, 1000000, 9600, 0); /* 1 Mbit/s, one 1,200 B packet of burst */
    cr_assert(bucket_take(&b, 9600, 0));
    cr_assert_not(bucket_take(&b, 9600, 0));
    cr_assert_eq(bucket_wait_ns(&b, 9600, 0), 9600000, "9,600 bits at 1 Mbit/s is 9.6 ms");
    cr_assert_not(bucket_take(&b, 9600, 9599999));
    cr_assert(bucket_take(&b, 9600, 9600000));
}

Test(bucket, zero_rate_is_unlimited)
{
    bucket_t b;
    bucket_init(&b, 0, 0, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert(bucket_take(&b, UINT32_MAX, 0));
    cr_assert_eq(bucket_wait_ns(&b, 1, 0), 0);
}

Test(bucket, zero_burst_with_rate_means_one)
{
    bucket_t b;
    bucket_init(&b, 10, 0, 0);
    cr_assert_eq(b.burst, 1);
    cr_assert(bucket_take(&b, 1, 0));
    cr_assert_not(bucket_take(&b, 1, 0));
    cr_assert(bucket_take(&b, 1, 100 * MS));
}

Test(bucket, clock_going_back_refills_nothing)
{
    bucket_t b;
    bucket_init(&b, 10, 1, 10 * S);
    cr_assert(bucket_take(&b, 1, 10 * S));
    cr_assert_not(bucket_take(&b, 1, 1 * S), "earlier time: no refill, no underflow");
    cr_assert_not(bucket_take(&b, 1, 10 * S + 99 * MS));
    cr_assert(bucket_take(&b, 1, 10 * S + 100 * MS));
}

Test(bucket, extremes_do_not_overflow)
{
    bucket_t b;
    bucket_init(&b, UINT64_MAX, UINT64_MAX, 0);
    cr_assert_eq(b.rate, BUCKET_RATE_MAX);
    cr_assert_eq(b.burst, BUCKET_BURST_MAX);
    cr_assert(bucket_take(&b, BUCKET_BURST_MAX, 0));
    cr_assert_eq(bucket_tokens(&b, UINT64_MAX), BUCKET_BURST_MAX);
    bucket_init(&b, 1, BUCKET_BURST_MAX, 0);
    cr_assert(bucket_take(&b, BUCKET_BURST_MAX, 0));
    cr_assert_eq(bucket_tokens(&b, UINT64_MAX - 1), BUCKET_BURST_MAX, "a huge gap at rate 1");
}

Test(bucket, set_keeps_tokens_up_to_new_burst)
{
    bucket_t b;
    bucket_init(&b, 100, 100, 0);
    cr_assert(bucket_take(&b, 40, 0));
    bucket_set(&b, 10, 20, 0); /* 60 held, new burst 20 */
    cr_assert_eq(bucket_tokens(&b, 0), 20);
    bucket_set(&b, 10, 200, 0);
    cr_assert_eq(bucket_tokens(&b, 0), 20, "a larger burst does not create tokens");
    cr_assert_eq(bucket_tokens(&b, 1 * S), 30);
    bucket_t u;
    bucket_init(&u, 0, 0, 0);
    bucket_set(&u, 5, 7, 0);
    cr_assert_eq(bucket_tokens(&u, 0), 7, "unlimited to limited starts full");
}

/* 50 packets/s, burst 5, offered 1,000 packets/s for 10 s in 1 ms steps:
 * exactly 5 + 50 x 10 pass (the last refill lands at t = 10 s - 1 ms, so 499
 * refilled tokens plus the burst: 504). */
Test(bucket, long_run_matches_rate_exactly)
{
    bucket_t b;
    bucket_init(&b, 50, 5, 0);
    uint64_t passed = 0;
    for (uint64_t t = 0; t < 10 * S; t += MS)
        passed += (uint64_t)bucket_take(&b, 1, t);
    cr_assert_eq(passed, 504, "passed %llu", (unsigned long long)passed);
}
