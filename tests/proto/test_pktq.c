/* test_pktq.c — gateway/pktq.c: FIFO order, byte/count accounting, both
 * policies, age expiry, and a model-based run across the wrap point. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/pktq.h"

#define HDR 16u /* the record header, as documented in pktq.c */

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Payload byte j of packet id: distinct per packet and per position. */
static uint8_t pat(uint32_t id, size_t j)
{
    return (uint8_t)(id * 131u ^ (uint32_t)j * 7u ^ (uint32_t)(j >> 8));
}

static void fill(uint8_t *buf, uint32_t id, size_t len)
{
    for (size_t j = 0; j < len; j++)
        buf[j] = pat(id, j);
}

static void expect_head(const pktq_t *q, uint32_t id, size_t len)
{
    const uint8_t *p;
    size_t n;
    cr_assert_eq(pktq_peek(q, &p, &n), 1, "queue empty, expected packet %u", id);
    cr_assert_eq(n, len, "packet %u: length %zu, expected %zu", id, n, len);
    for (size_t j = 0; j < len; j++)
        cr_assert_eq(p[j], pat(id, j), "packet %u: byte %zu differs", id, j);
}

static int push_id(pktq_t *q, uint32_t id, size_t len, uint64_t ns, size_t *dropped)
{
    uint8_t buf[70000];
    cr_assert_leq(len, sizeof buf);
    fill(buf, id, len);
    return pktq_push(q, buf, len, ns, dropped);
}

Test(pktq, empty_queue)
{
    pktq_t q;
    pktq_init(&q, 1024, PKTQ_DROP_OLDEST);
    const uint8_t *p = (const uint8_t *)"x";
    size_t n = 99;
    cr_assert_eq(pktq_peek(&q, &p, &n), 0);
    cr_assert_eq(n, 99, "peek on empty must not touch its outputs");
    pktq_pop(&q);
    cr_assert_eq(pktq_expire(&q, UINT64_MAX), 0);
    cr_assert_eq(q.count, 0);
    cr_assert_eq(q.bytes, 0);
    cr_assert_null(q._ring, "the ring is allocated on the first push, not at init");
    pktq_dispose(&q);
}

Test(pktq, fifo_order_and_accounting)
{
    pktq_t q;
    pktq_init(&q, 4096, PKTQ_REJECT_NEW);
    size_t total = 0;
    for (uint32_t i = 0; i < 20; i++) {
        size_t dropped = 7;
        cr_assert_eq(push_id(&q, i, i * 10, i, &dropped), PKTQ_OK);
        cr_assert_eq(dropped, 0);
        total += i * 10;
        cr_assert_eq(q.count, i + 1);
        cr_assert_eq(q.bytes, total);
    }
    for (uint32_t i = 0; i < 20; i++) {
        expect_head(&q, i, i * 10);
        cr_assert_eq(pktq_peek_time(&q), i, "the oldest packet's enqueue time");
        pktq_pop(&q);
        total -= i * 10;
        cr_assert_eq(q.count, 19 - i);
        cr_assert_eq(q.bytes, total);
    }
    const uint8_t *p;
    size_t n;
    cr_assert_eq(pktq_peek(&q, &p, &n), 0);
    cr_assert_eq(pktq_peek_time(&q), 0u, "empty");
    pktq_dispose(&q);
}

Test(pktq, peek_points_into_the_ring_at_8_byte_alignment)
{
    pktq_t q;
    pktq_init(&q, 1000, PKTQ_DROP_OLDEST);
    for (uint32_t i = 0; i < 500; i++) {
        cr_assert_eq(push_id(&q, i, (i * 37) % 200, i, NULL), PKTQ_OK);
        const uint8_t *p;
        size_t n;
        cr_assert_eq(pktq_peek(&q, &p, &n), 1);
        cr_assert(p >= q._ring && p + n <= q._ring + 1000);
        cr_assert_eq((uintptr_t)(p - q._ring) % 8, 0);
        if (i % 3 == 0)
            pktq_pop(&q);
    }
    pktq_dispose(&q);
}

Test(pktq, zero_length_packets)
{
    pktq_t q;
    pktq_init(&q, 64, PKTQ_REJECT_NEW);
    /* 64 bytes hold four bare 16-byte headers. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pktq_push(&q, NULL, 0, (uint64_t)i, NULL), PKTQ_OK);
    cr_assert_eq(pktq_push(&q, NULL, 0, 9, NULL), PKTQ_ERR_FULL);
    cr_assert_eq(q.count, 4);
    cr_assert_eq(q.bytes, 0);
    const uint8_t *p;
    size_t n = 1;
    cr_assert_eq(pktq_peek(&q, &p, &n), 1);
    cr_assert_eq(n, 0);
    pktq_pop(&q);
    cr_assert_eq(q.count, 3);
    cr_assert_eq(pktq_push(&q, NULL, 0, 9, NULL), PKTQ_OK);
    cr_assert_eq(q.count, 4);
    pktq_dispose(&q);
}

Test(pktq, too_big)
{
    pktq_t q;
    pktq_init(&q, 100, PKTQ_DROP_OLDEST);
    size_t dropped = 5;
    cr_assert_eq(push_id(&q, 1, 85, 0, &dropped), PKTQ_ERR_TOO_BIG);
    cr_assert_eq(dropped, 0);
    cr_assert_null(q._ring, "a packet that can never fit must not allocate");
    cr_assert_eq(push_id(&q, 2, 10, 0, NULL), PKTQ_OK);
    uint8_t one = 0;
    cr_assert_eq(pktq_push(&q, &one, SIZE_MAX - 8, 0, &dropped), PKTQ_ERR_TOO_BIG,
                 "huge lengths must not overflow the size check");
    cr_assert_eq(push_id(&q, 3, 1000, 0, &dropped), PKTQ_ERR_TOO_BIG);
    cr_assert_eq(q.count, 1, "TOO_BIG leaves the queue as it was");
    cr_assert_eq(q.bytes, 10);
    /* Exactly header + len == cap fits (cap not a multiple of 8), evicting the rest. */
    cr_assert_eq(push_id(&q, 4, 84, 1, &dropped), PKTQ_OK);
    cr_assert_eq(dropped, 1);
    expect_head(&q, 4, 84);
    pktq_dispose(&q);

    pktq_init(&q, HDR - 1, PKTQ_REJECT_NEW);
    cr_assert_eq(pktq_push(&q, NULL, 0, 0, NULL), PKTQ_ERR_TOO_BIG);
    pktq_init(&q, 0, PKTQ_REJECT_NEW);
    cr_assert_eq(pktq_push(&q, NULL, 0, 0, NULL), PKTQ_ERR_TOO_BIG);
    pktq_dispose(&q);
}

Test(pktq, reject_new_keeps_what_is_queued)
{
    pktq_t q;
    pktq_init(&q, 256, PKTQ_REJECT_NEW);
    /* 100-byte packets take 120 bytes each: two fit in 256. */
    cr_assert_eq(push_id(&q, 1, 100, 1, NULL), PKTQ_OK);
    cr_assert_eq(push_id(&q, 2, 100, 2, NULL), PKTQ_OK);
    size_t dropped = 5;
    cr_assert_eq(push_id(&q, 3, 100, 3, &dropped), PKTQ_ERR_FULL);
    cr_assert_eq(dropped, 0);
    cr_assert_eq(push_id(&q, 3, 1, 3, &dropped), PKTQ_ERR_FULL, "16 free bytes hold no header + 1");
    cr_assert_eq(pktq_push(&q, NULL, 0, 3, NULL), PKTQ_OK, "but they do hold an empty packet");
    cr_assert_eq(q.count, 3);
    cr_assert_eq(q.bytes, 200);
    expect_head(&q, 1, 100);
    pktq_pop(&q);
    /* The head left 120 bytes at offset 0: packet 3 wraps there. */
    cr_assert_eq(push_id(&q, 3, 100, 4, NULL), PKTQ_OK);
    cr_assert_eq(q._wrap, 256);
    expect_head(&q, 2, 100);
    pktq_pop(&q);
    const uint8_t *p;
    size_t n;
    cr_assert_eq(pktq_peek(&q, &p, &n), 1);
    cr_assert_eq(n, 0);
    pktq_pop(&q);
    cr_assert_eq(q._wrap, 0, "passing the wrap point unwraps");
    expect_head(&q, 3, 100);
    pktq_dispose(&q);
}

Test(pktq, drop_oldest_accounting)
{
    pktq_t q;
    pktq_init(&q, 256, PKTQ_DROP_OLDEST);
    size_t dropped = 9;
    cr_assert_eq(push_id(&q, 1, 100, 1, &dropped), PKTQ_OK);
    cr_assert_eq(dropped, 0);
    cr_assert_eq(push_id(&q, 2, 100, 2, &dropped), PKTQ_OK);
    cr_assert_eq(dropped, 0);
    /* Tail at 240: the third record wraps to 0 once packet 1 is gone. */
    cr_assert_eq(push_id(&q, 3, 100, 3, &dropped), PKTQ_OK);
    cr_assert_eq(dropped, 1);
    cr_assert_eq(q.count, 2);
    cr_assert_eq(q.bytes, 200);
    expect_head(&q, 2, 100);

    /* A 230-byte packet needs the whole ring: everything goes. */
    cr_assert_eq(push_id(&q, 4, 230, 4, &dropped), PKTQ_OK);
    cr_assert_eq(dropped, 2);
    cr_assert_eq(q.count, 1);
    cr_assert_eq(q.bytes, 230);
    expect_head(&q, 4, 230);

    /* Many small packets, then one that needs room for three of them. */
    pktq_pop(&q);
    for (uint32_t i = 10; i < 18; i++)
        cr_assert_eq(push_id(&q, i, 16, i, NULL), PKTQ_OK); /* 32 bytes each: full */
    cr_assert_eq(q.count, 8);
    cr_assert_eq(push_id(&q, 99, 70, 99, &dropped), PKTQ_OK); /* 86 -> needs 3 slots */
    cr_assert_eq(dropped, 3);
    cr_assert_eq(q.count, 6);
    cr_assert_eq(q.bytes, 16 * 5 + 70);
    expect_head(&q, 13, 16);
    pktq_dispose(&q);
}

Test(pktq, dropped_may_be_null)
{
    pktq_t q;
    pktq_init(&q, 64, PKTQ_DROP_OLDEST);
    for (uint32_t i = 0; i < 100; i++)
        cr_assert_eq(push_id(&q, i, 20, i, NULL), PKTQ_OK);
    cr_assert_eq(q.count, 1);
    expect_head(&q, 99, 20);
    pktq_dispose(&q);
}

Test(pktq, age_expiry)
{
    pktq_t q;
    pktq_init(&q, 4096, PKTQ_DROP_OLDEST);
    for (uint32_t i = 0; i < 10; i++)
        cr_assert_eq(push_id(&q, i, 50, 1000 + i * 10, NULL), PKTQ_OK);
    cr_assert_eq(pktq_expire(&q, 1000), 0, "nothing is older than the oldest");
    cr_assert_eq(pktq_expire(&q, 1010), 1, "strictly older only");
    expect_head(&q, 1, 50);
    cr_assert_eq(pktq_expire(&q, 1055), 5);
    cr_assert_eq(q.count, 4);
    cr_assert_eq(q.bytes, 200);
    expect_head(&q, 6, 50);
    /* Expiry looks at the head only: it stops at the first young packet even
     * when an older stamp sits behind it. */
    cr_assert_eq(push_id(&q, 50, 5, 1, NULL), PKTQ_OK);
    cr_assert_eq(pktq_expire(&q, 1075), 2);
    expect_head(&q, 8, 50);
    cr_assert_eq(q.count, 3);
    cr_assert_eq(pktq_expire(&q, UINT64_MAX), 3);
    cr_assert_eq(q.count, 0);
    cr_assert_eq(q.bytes, 0);
    cr_assert_eq(pktq_expire(&q, UINT64_MAX), 0);
    pktq_dispose(&q);
}

Test(pktq, dispose_is_idempotent)
{
    pktq_t q;
    pktq_init(&q, 128, PKTQ_DROP_OLDEST);
    pktq_dispose(&q);
    pktq_dispose(&q);
    cr_assert_eq(push_id(&q, 1, 10, 0, NULL), PKTQ_OK);
    pktq_dispose(&q);
    cr_assert_null(q._ring);
    cr_assert_eq(q.count, 0);
    cr_assert_eq(q.bytes, 0);
    pktq_dispose(&q);
    /* Still usable: the ring comes back on the next push. */
    cr_assert_eq(push_id(&q, 2, 10, 0, NULL), PKTQ_OK);
    expect_head(&q, 2, 10);
    pktq_dispose(&q);
}

/* A new ring, or a burst that ran it deep: once the queue is empty again,
 * what lies beyond keep is named once, and the queue works on from offset 0
 * even when those bytes were overwritten (as pages given back read as
 * zeros). */
Test(pktq, idle_span_names_a_new_ring_and_what_a_burst_reached_once_the_queue_is_empty)
{
    pktq_t q;
    uint8_t *p;
    size_t len;
    pktq_init(&q, 4096, PKTQ_DROP_OLDEST);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 0, "no ring yet");
    cr_assert_eq(push_id(&q, 1, 100, 0, NULL), PKTQ_OK);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 0, "a packet is queued");
    pktq_pop(&q);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 1,
                 "a new ring's memory, perhaps resident from an earlier owner, not named");
    cr_assert_eq(p, q._ring + 256);
    cr_assert_eq(len, 4096u - 256);
    memset(p, 0, len);
    cr_assert_eq(push_id(&q, 2, 100, 0, NULL), PKTQ_OK);
    pktq_pop(&q);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 0, "one record stays within keep");

    for (uint32_t id = 0; id < 20; id++)
        cr_assert_eq(push_id(&q, id, 100, 0, NULL), PKTQ_OK);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 0, "packets are queued");
    while (q.count)
        pktq_pop(&q);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 1);
    cr_assert_eq(p, q._ring + 256);
    cr_assert_eq(len, 4096u - 256, "not the ring's rest");
    memset(p, 0, len);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 0, "the span was named twice");

    for (uint32_t id = 100; id < 130; id++) /* 30 records of 120 B of the 4 KiB */
        cr_assert_eq(push_id(&q, id, 100, 0, NULL), PKTQ_OK);
    for (uint32_t id = 130; id < 140; id++) { /* one out, one in: the tail wraps */
        expect_head(&q, id - 30, 100);
        pktq_pop(&q);
        cr_assert_eq(push_id(&q, id, 100, 0, NULL), PKTQ_OK);
    }
    while (q.count)
        pktq_pop(&q);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 1);
    cr_assert_eq(len, 4096u - 256);
    pktq_dispose(&q);
    cr_assert_eq(pktq_idle_span(&q, 256, &p, &len), 0, "disposed");
}

/* ---- model-based run ------------------------------------------------------ */

typedef struct model_pkt {
    uint32_t id;
    size_t len;
    uint64_t ns;
} model_pkt_t;

typedef struct model {
    model_pkt_t *v;
    size_t head, n, cap;
    size_t bytes;
} model_t;

static void model_push(model_t *m, model_pkt_t p)
{
    if (m->head && m->head + m->n == m->cap) {
        memmove(m->v, m->v + m->head, m->n * sizeof *m->v);
        m->head = 0;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->v = realloc(m->v, m->cap * sizeof *m->v);
        cr_assert_not_null(m->v);
    }
    m->v[m->head + m->n++] = p;
    m->bytes += p.len;
}

static model_pkt_t *model_front(model_t *m)
{
    return m->n ? &m->v[m->head] : NULL;
}

static void model_pop(model_t *m)
{
    m->bytes -= m->v[m->head].len;
    m->head++;
    m->n--;
}

/* Ring bytes the model's records take, padding included. */
static size_t model_footprint(const model_t *m, size_t skip)
{
    size_t sum = 0;
    for (size_t i = skip; i < m->n; i++)
        sum += align8(HDR + m->v[m->head + i].len);
    return sum;
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*, fixed seed per run: failures reproduce. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static size_t rand_len(size_t cap)
{
    size_t max = cap - HDR;
    switch (rng() % 8) {
    case 0:
        return 0;
    case 1:
        return max - rng() % (max < 8 ? max + 1 : 8); /* close to the whole ring */
    case 2:
    case 3:
        return rng() % (max + 1);
    default:
        return rng() % (max / 4 + 1);
    }
}

static void check_same(pktq_t *q, model_t *m)
{
    cr_assert_eq(q->count, m->n);
    cr_assert_eq(q->bytes, m->bytes);
    model_pkt_t *f = model_front(m);
    if (f)
        expect_head(q, f->id, f->len);
}

/* Runs ops random operations against a plain FIFO model. Contents, count and
 * bytes must match exactly after every step. A refused or evicting push must
 * also have had a reason: a ring that never splits a record can strand less
 * than one record at its end plus less than the new record between tail and
 * head, so the free space it declined is below need + the largest need seen. */
static void model_run(size_t cap, enum pktq_policy policy, uint64_t seed, int ops)
{
    pktq_t q;
    model_t m = {0};
    uint64_t now = 0;
    uint32_t next_id = 0;
    size_t max_need = 0, wraps = 0, drops = 0, rejects = 0;
    rng_state = seed;
    pktq_init(&q, cap, policy);
    for (int op = 0; op < ops; op++) {
        now += rng() % 1000;
        unsigned r = (unsigned)(rng() % 16);
        if (r < 9) {
            size_t len = rand_len(cap);
            size_t need = HDR + len;
            if (need > max_need)
                max_need = need;
            uint32_t id = next_id++;
            size_t dropped = 12345, was_wrapped = q._wrap != 0;
            size_t used = model_footprint(&m, 0);
            int rc = push_id(&q, id, len, now, &dropped);
            if (policy == PKTQ_REJECT_NEW) {
                cr_assert_eq(dropped, 0);
                if (rc == PKTQ_ERR_FULL) {
                    rejects++;
                    cr_assert_gt(used + need + max_need, cap,
                                 "op %d: refused %zu bytes with %zu of %zu in use", op, need,
                                 used, cap);
                } else {
                    cr_assert_eq(rc, PKTQ_OK, "op %d", op);
                    model_push(&m, (model_pkt_t){id, len, now});
                }
            } else {
                cr_assert_eq(rc, PKTQ_OK, "op %d", op);
                cr_assert_leq(dropped, m.n, "op %d", op);
                if (dropped) {
                    /* Before the last eviction it still did not fit. */
                    size_t left = model_footprint(&m, dropped - 1);
                    cr_assert_gt(left + need + max_need, cap,
                                 "op %d: evicted %zu packets for %zu bytes", op, dropped, need);
                }
                drops += dropped;
                for (size_t i = 0; i < dropped; i++)
                    model_pop(&m);
                model_push(&m, (model_pkt_t){id, len, now});
            }
            if (!was_wrapped && q._wrap)
                wraps++;
        } else if (r < 14) {
            if (m.n)
                model_pop(&m);
            pktq_pop(&q);
        } else if (r < 15) {
            uint64_t min_ns = now - (rng() % 4000 < now ? rng() % 4000 : now);
            size_t expect = 0;
            while (model_front(&m) && model_front(&m)->ns < min_ns) {
                model_pop(&m);
                expect++;
            }
            cr_assert_eq(pktq_expire(&q, min_ns), expect, "op %d", op);
        } else {
            /* Drain completely, checking every packet. */
            while (m.n) {
                check_same(&q, &m);
                model_pop(&m);
                pktq_pop(&q);
            }
        }
        check_same(&q, &m);
        cr_assert_leq(model_footprint(&m, 0), cap + 8);
    }
    cr_assert_gt(wraps, (size_t)ops / 200, "cap %zu: only %zu wraps in %d ops", cap, wraps, ops);
    if (policy == PKTQ_DROP_OLDEST)
        cr_assert_gt(drops, 0);
    else
        cr_assert_gt(rejects, 0);
    pktq_dispose(&q);
    free(m.v);
}

Test(pktq, model_drop_oldest)
{
    static const size_t caps[] = {64, 100, 257, 1024, 4096, 65536};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        model_run(caps[i], PKTQ_DROP_OLDEST, 0x5eed0000u + i, 20000);
}

Test(pktq, model_reject_new)
{
    static const size_t caps[] = {64, 100, 257, 1024, 4096, 65536};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        model_run(caps[i], PKTQ_REJECT_NEW, 0xfeed0000u + i, 20000);
}

/* Fill and drain repeatedly with sizes that do not divide the ring, so the
 * tail lands at a different spot before the end every round. */
Test(pktq, fill_drain_cycles_across_the_wrap)
{
    pktq_t q;
    pktq_init(&q, 1000, PKTQ_REJECT_NEW);
    uint32_t id = 0, front = 0;
    size_t wraps = 0;
    for (int round = 0; round < 2000; round++) {
        size_t len = 1 + (size_t)(round * 53) % 300;
        while (push_id(&q, id, len, 0, NULL) == PKTQ_OK)
            id++;
        if (q._wrap)
            wraps++;
        /* Drain about half, checking each packet is the next one pushed. */
        size_t keep = q.count / 2;
        while (q.count > keep) {
            const uint8_t *p;
            size_t n;
            cr_assert_eq(pktq_peek(&q, &p, &n), 1);
            for (size_t j = 0; j < n; j++)
                cr_assert_eq(p[j], pat(front, j), "packet %u byte %zu", front, j);
            pktq_pop(&q);
            front++;
        }
    }
    cr_assert_gt(wraps, 500);
    while (q.count) {
        pktq_pop(&q);
        front++;
    }
    cr_assert_eq(front, id);
    cr_assert_eq(q.bytes, 0);
    pktq_dispose(&q);
}
