/*
 * test_backoff.c — the reconnect back-off (shim_backoff_ms in
 * client-shim/lib/client.c): doubles from min to max, jitter of +-25 %
 * around that, never outside [min, max].
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "../../client-shim/lib/shim_internal.h"

Test(backoff, doubles_from_min_up_to_max)
{
    /* rnd = 2^31: no jitter (the middle of the range). */
    const uint32_t mid = 1u << 31;
    cr_expect_eq(shim_backoff_ms(250, 30000, 0, mid), 250);
    cr_expect_eq(shim_backoff_ms(250, 30000, 1, mid), 500);
    cr_expect_eq(shim_backoff_ms(250, 30000, 2, mid), 1000);
    cr_expect_eq(shim_backoff_ms(250, 30000, 6, mid), 16000);
    cr_expect_eq(shim_backoff_ms(250, 30000, 7, mid), 30000, "capped at max");
    cr_expect_eq(shim_backoff_ms(250, 30000, 1000, mid), 30000, "no overflow for many attempts");
}

Test(backoff, jitter_is_25_percent_and_stays_within_bounds)
{
    /* 1000 ms nominal (attempt 2 from 250): 750 .. 1250. */
    cr_expect_eq(shim_backoff_ms(250, 30000, 2, 0), 750);
    cr_expect_eq(shim_backoff_ms(250, 30000, 2, UINT32_MAX), 1249);
    /* At the bounds the jitter is cut, never exceeded. */
    cr_expect_eq(shim_backoff_ms(250, 30000, 0, 0), 250, "never below min");
    cr_expect_eq(shim_backoff_ms(250, 30000, 20, UINT32_MAX), 30000, "never above max");
    cr_expect_eq(shim_backoff_ms(500, 100, 0, 0), 500, "max below min: min");
}

Test(backoff, successive_waits_grow_and_spread)
{
    uint32_t x = 12345, prev_hi = 0;
    uint32_t seen_lo = UINT32_MAX, seen_hi = 0;

    for (unsigned a = 0; a < 8; a++) {
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int i = 0; i < 200; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            uint32_t d = shim_backoff_ms(100, 100000, a, x);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            if (a == 3) {
                seen_lo = lo;
                seen_hi = hi;
            }
        }
        cr_expect_gt(hi, prev_hi, "attempt %u: waits grow (%u after %u)", a, hi, prev_hi);
        /* (Attempt 0 sits on min, which cuts the lower half.) */
        cr_expect_gt(hi - lo, (100u << a) / (a ? 4 : 8), "attempt %u: waits are jittered (%u..%u)", a, lo,
                     hi);
        prev_hi = hi;
    }
    cr_expect(seen_lo >= 600 && seen_hi <= 1000, "attempt 3 within 800 +-25 %%: %u..%u", seen_lo,
              seen_hi);
}
