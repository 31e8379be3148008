/*
 * test_ring.c — client-shim/lib/ring.c: the bounded packet FIFO, checked
 * against a simple model under random pushes and pops, plus the edges
 * (exact fit, wrap, eviction, refusal, age).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../client-shim/lib/shim_ring.h"

static void fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 31 + i);
}

static void expect_head(shim_ring_t *r, size_t len, unsigned seed)
{
    const uint8_t *p;
    size_t n;
    uint8_t want[4096];

    cr_assert_eq(shim_ring_peek(r, &p, &n, NULL), 1);
    cr_assert_eq(n, len, "head length %zu, expected %zu", n, len);
    fill(want, len, seed);
    cr_assert_eq(memcmp(p, want, len), 0, "head payload differs (seed %u)", seed);
}

Test(ring, empty_ring_peeks_nothing_and_pop_is_a_noop)
{
    shim_ring_t r;
    shim_ring_init(&r, 1024, SHIM_RING_DROP_OLDEST);
    cr_expect_eq(shim_ring_peek(&r, NULL, NULL, NULL), 0);
    shim_ring_pop(&r);
    cr_expect_eq(r.count, 0);
    cr_expect_null(r._buf, "storage is allocated on the first push only");
    shim_ring_dispose(&r);
    shim_ring_dispose(&r); /* idempotent */
}

Test(ring, fifo_order_and_byte_count)
{
    shim_ring_t r;
    uint8_t p[100];
    shim_ring_init(&r, 4096, SHIM_RING_REJECT_NEW);
    for (unsigned i = 0; i < 10; i++) {
        fill(p, 10 + i, i);
        cr_assert_eq(shim_ring_push(&r, p, 10 + i, i, NULL), SHIM_RING_OK);
    }
    cr_expect_eq(r.count, 10);
    cr_expect_eq(r.bytes, 10 * 10 + 45);
    for (unsigned i = 0; i < 10; i++) {
        uint32_t ts;
        expect_head(&r, 10 + i, i);
        shim_ring_peek(&r, NULL, NULL, &ts);
        cr_expect_eq(ts, i);
        shim_ring_pop(&r);
    }
    cr_expect_eq(r.count, 0);
    cr_expect_eq(r.bytes, 0);
    shim_ring_dispose(&r);
}

Test(ring, zero_length_packets_are_records_too)
{
    shim_ring_t r;
    size_t n = 99;
    shim_ring_init(&r, 64, SHIM_RING_REJECT_NEW);
    cr_assert_eq(shim_ring_push(&r, NULL, 0, 0, NULL), SHIM_RING_OK);
    cr_assert_eq(shim_ring_peek(&r, NULL, &n, NULL), 1);
    cr_expect_eq(n, 0);
    shim_ring_dispose(&r);
}

Test(ring, record_larger_than_ring_is_too_big_and_changes_nothing)
{
    shim_ring_t r;
    uint8_t p[64] = {0};
    shim_ring_init(&r, 64, SHIM_RING_DROP_OLDEST);
    cr_assert_eq(shim_ring_push(&r, p, 8, 0, NULL), SHIM_RING_OK);
    cr_expect_eq(shim_ring_push(&r, p, 64 - SHIM_RING_HDR + 1, 0, NULL), SHIM_RING_TOO_BIG);
    cr_expect_eq(r.count, 1, "a too-big push must not evict anything");
    /* Exactly the whole ring fits (after evicting the one record). */
    size_t dropped = 0;
    cr_expect_eq(shim_ring_push(&r, p, 64 - SHIM_RING_HDR, 0, &dropped), SHIM_RING_OK);
    cr_expect_eq(dropped, 1);
    cr_expect_eq(r.count, 1);
    shim_ring_dispose(&r);
}

Test(ring, reject_new_keeps_what_is_queued)
{
    shim_ring_t r;
    uint8_t p[40];
    shim_ring_init(&r, 128, SHIM_RING_REJECT_NEW); /* 48-byte records: two fit */
    fill(p, 40, 1);
    cr_assert_eq(shim_ring_push(&r, p, 40, 0, NULL), SHIM_RING_OK);
    fill(p, 40, 2);
    cr_assert_eq(shim_ring_push(&r, p, 40, 0, NULL), SHIM_RING_OK);
    fill(p, 40, 3);
    cr_expect_eq(shim_ring_push(&r, p, 40, 0, NULL), SHIM_RING_FULL);
    cr_expect_eq(r.count, 2);
    expect_head(&r, 40, 1);
    shim_ring_dispose(&r);
}

Test(ring, drop_oldest_evicts_from_the_head_until_it_fits)
{
    shim_ring_t r;
    uint8_t p[120];
    size_t dropped;
    shim_ring_init(&r, 128, SHIM_RING_DROP_OLDEST);
    for (unsigned i = 0; i < 4; i++) { /* 4 x 32-byte records fill it */
        fill(p, 24, i);
        cr_assert_eq(shim_ring_push(&r, p, 24, 0, &dropped), SHIM_RING_OK);
        cr_expect_eq(dropped, 0);
    }
    fill(p, 56, 9); /* 64 bytes: evicts two */
    cr_assert_eq(shim_ring_push(&r, p, 56, 0, &dropped), SHIM_RING_OK);
    cr_expect_eq(dropped, 2);
    expect_head(&r, 24, 2);
    shim_ring_pop(&r);
    expect_head(&r, 24, 3);
    shim_ring_pop(&r);
    expect_head(&r, 56, 9);
    shim_ring_dispose(&r);
}

Test(ring, wraps_without_splitting_a_record)
{
    shim_ring_t r;
    uint8_t p[64];
    shim_ring_init(&r, 128, SHIM_RING_REJECT_NEW);
    /* [A 48][B 48][free 32] -> pop A -> C (48) does not fit at the end but
     * does before B: it wraps to offset 0. */
    fill(p, 40, 1);
    shim_ring_push(&r, p, 40, 0, NULL);
    fill(p, 40, 2);
    shim_ring_push(&r, p, 40, 0, NULL);
    shim_ring_pop(&r);
    fill(p, 40, 3);
    cr_assert_eq(shim_ring_push(&r, p, 40, 0, NULL), SHIM_RING_OK);
    cr_expect_neq(r._wrap, 0, "the ring should have wrapped");
    /* No room for another 48 between the wrapped tail (48) and head (48). */
    cr_expect_eq(shim_ring_push(&r, p, 40, 0, NULL), SHIM_RING_FULL);
    expect_head(&r, 40, 2);
    shim_ring_pop(&r);
    expect_head(&r, 40, 3);
    cr_expect_eq(r._wrap, 0, "reading past the wrap point unwraps");
    shim_ring_pop(&r);
    cr_expect_eq(r.count, 0);
    shim_ring_dispose(&r);
}

Test(ring, expire_drops_only_records_older_than_the_limit)
{
    shim_ring_t r;
    uint8_t p[8] = {0};
    shim_ring_init(&r, 1024, SHIM_RING_DROP_OLDEST);
    shim_ring_push(&r, p, 8, 100, NULL);
    shim_ring_push(&r, p, 8, 150, NULL);
    shim_ring_push(&r, p, 8, 250, NULL);
    cr_expect_eq(shim_ring_expire(&r, 300, 100), 2); /* ages 200, 150 > 100; 50 stays */
    cr_expect_eq(r.count, 1);
    cr_expect_eq(shim_ring_expire(&r, 300, 100), 0);
    shim_ring_dispose(&r);
}

Test(ring, expire_survives_the_32_bit_clock_wrapping)
{
    shim_ring_t r;
    uint8_t p[8] = {0};
    shim_ring_init(&r, 1024, SHIM_RING_DROP_OLDEST);
    shim_ring_push(&r, p, 8, UINT32_MAX - 10, NULL);
    cr_expect_eq(shim_ring_expire(&r, 20, 100), 0, "31 ms old across the wrap");
    cr_expect_eq(shim_ring_expire(&r, 200, 100), 1);
    shim_ring_dispose(&r);
}

/* Random pushes and pops under both policies, checked against a model FIFO
 * that applies the same policy. */
static void model_run(enum shim_ring_policy pol, unsigned seed)
{
    enum { CAP = 1000, MAXLEN = 300, OPS = 20000, MODEL = 4096 };
    shim_ring_t r;
    struct { size_t len; unsigned tag; } model[MODEL];
    size_t mhead = 0, mcount = 0, mbytes = 0;
    uint8_t p[MAXLEN];
    unsigned tag = 0;

    srand(seed);
    shim_ring_init(&r, CAP, pol);
    for (int op = 0; op < OPS; op++) {
        if (rand() % 3 != 0) {
            size_t len = (size_t)(rand() % MAXLEN);
            size_t need = SHIM_RING_RECORD(len), dropped = 0;
            fill(p, len, ++tag);
            int rc = shim_ring_push(&r, p, len, 0, &dropped);
            cr_assert(rc == SHIM_RING_OK || rc == SHIM_RING_FULL, "push rc %d", rc);
            if (rc == SHIM_RING_FULL) {
                cr_assert_eq(pol, SHIM_RING_REJECT_NEW);
                continue;
            }
            for (size_t d = 0; d < dropped; d++) {
                cr_assert_gt(mcount, 0);
                mbytes -= model[mhead % MODEL].len;
                mhead++;
                mcount--;
            }
            model[(mhead + mcount) % MODEL].len = len;
            model[(mhead + mcount) % MODEL].tag = tag;
            mcount++;
            mbytes += len;
            cr_assert_leq(need, CAP);
        } else if (mcount) {
            expect_head(&r, model[mhead % MODEL].len, model[mhead % MODEL].tag);
            shim_ring_pop(&r);
            mbytes -= model[mhead % MODEL].len;
            mhead++;
            mcount--;
        }
        cr_assert_eq(r.count, mcount, "op %d: count %zu, model %zu", op, r.count, mcount);
        cr_assert_eq(r.bytes, mbytes);
    }
    shim_ring_dispose(&r);
}

Test(ring, random_ops_match_a_model_drop_oldest)
{
    model_run(SHIM_RING_DROP_OLDEST, 1);
    model_run(SHIM_RING_DROP_OLDEST, 2);
}

Test(ring, random_ops_match_a_model_reject_new)
{
    model_run(SHIM_RING_REJECT_NEW, 3);
    model_run(SHIM_RING_REJECT_NEW, 4);
}
