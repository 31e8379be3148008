/*
 * test_sendq.c — proto/sendq.c: queue classes, order on the wire, capsules
 * split across DATA frames of every size, the end of the body, and the bounds
 * (queue, PONGs, payload size, media age), with every drop counted by reason.
 *
 * The packer's output is decoded with capsule_reader, the code both peers use
 * to read it, so these tests check the wire format, not our own opinion.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "../../proto/proto.h"
#include "../../proto/sendq.h"

/* The shim's payload bound: a DATAGRAM value of at most 65,535 bytes. */
#define MAXP 65534u
#define MS(x) ((uint64_t)(x) * 1000000u)

/* Queues of at least one largest record, as the shim sizes them. */
static size_t qcap(size_t bytes)
{
    return bytes < PKTQ_RECORD_SIZE(MAXP) ? PKTQ_RECORD_SIZE(MAXP) : bytes;
}

static void q_init(sendq_t *q, size_t media, size_t signal, uint32_t age_ms)
{
    sendq_init(q, qcap(media), qcap(signal), MAXP, MS(age_ms), NULL, NULL);
}

/* RFC 7983 first bytes: 0x00 STUN (signal), 0x80 RTP (media), 0x17 DTLS
 * application data (signal). */
static size_t mk(uint8_t *p, size_t len, uint8_t first, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 13 + i * 7);
    if (len)
        p[0] = first;
    return len;
}

typedef struct decoded {
    uint64_t type[256];
    size_t len[256];
    uint8_t *val[256];
    size_t n;
} decoded_t;

static void decoded_free(decoded_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->val[i]);
    d->n = 0;
}

/* Drains the uplink in chunks of `chunk` bytes (the DATA frame room) and
 * decodes the stream. Returns the eof flag of the last fill. */
static int drain(sendq_t *u, size_t chunk, uint64_t now, decoded_t *d)
{
    static uint8_t rbuf[CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER];
    uint8_t *frame = malloc(chunk);
    capsule_reader_t r;
    int eof = 0;

    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    memset(d, 0, sizeof(*d));
    for (int guard = 0; guard < 1000000; guard++) {
        size_t n = sendq_fill(u, frame, chunk, now, &eof);
        const uint8_t *src = frame;
        size_t len = n;
        capsule_t c;
        int rc;
        cr_assert_leq(n, chunk);
        while ((rc = capsule_reader_next(&r, &src, &len, &c, NULL)) > 0) {
            cr_assert_lt(d->n, 256);
            d->type[d->n] = c.type;
            d->len[d->n] = c.len;
            d->val[d->n] = malloc(c.len ? c.len : 1);
            memcpy(d->val[d->n], c.value, c.len);
            d->n++;
        }
        cr_assert_geq(rc, 0, "the packer produced a malformed stream");
        if (n == 0)
            break;
    }
    cr_expect_eq(capsule_reader_pending(&r), 0, "a capsule was left unfinished");
    free(frame);
    return eof;
}

static void expect_packet(const decoded_t *d, size_t i, uint64_t type, const uint8_t *p,
                          size_t len)
{
    cr_assert_gt(d->n, i, "capsule %zu missing", i);
    cr_assert_eq(d->type[i], type, "capsule %zu type 0x%llx, expected 0x%llx", i,
                 (unsigned long long)d->type[i], (unsigned long long)type);
    if (type == CAPSULE_DATAGRAM) {
        cr_assert_eq(d->len[i], len + 1);
        cr_assert_eq(d->val[i][0], 0, "context id must be 0");
        cr_assert(len == 0 || memcmp(d->val[i] + 1, p, len) == 0);
    } else {
        cr_assert_eq(d->len[i], len);
        cr_assert(len == 0 || memcmp(d->val[i], p, len) == 0);
    }
}

Test(sendq, signaling_goes_ahead_of_media)
{
    sendq_t u;
    uint8_t m1[100], s1[20], m2[50], s2[30];
    decoded_t d;

    q_init(&u, 65536, 65536, 0);
    cr_assert_eq(sendq_push(&u, m1, mk(m1, sizeof(m1), 0x80, 1), 0), SENDQ_OK);
    cr_assert_eq(sendq_push(&u, s1, mk(s1, sizeof(s1), 0x00, 2), 0), SENDQ_OK);
    cr_assert_eq(sendq_push(&u, m2, mk(m2, sizeof(m2), 0x90, 3), 0), SENDQ_OK);
    cr_assert_eq(sendq_push(&u, s2, mk(s2, sizeof(s2), 0x17, 4), 0), SENDQ_OK);
    cr_expect_eq(sendq_queued(&u), 200);
    cr_expect_eq(drain(&u, 16384, 0, &d), 0, "no end of body without finish");
    cr_assert_eq(d.n, 4);
    expect_packet(&d, 0, CAPSULE_SIGNAL, s1, sizeof(s1));
    expect_packet(&d, 1, CAPSULE_SIGNAL, s2, sizeof(s2));
    expect_packet(&d, 2, CAPSULE_DATAGRAM, m1, sizeof(m1));
    expect_packet(&d, 3, CAPSULE_DATAGRAM, m2, sizeof(m2));
    cr_expect_eq(u.tx_packets, 4);
    cr_expect_eq(u.tx_bytes, 200);
    cr_expect_eq(sendq_queued(&u), 0);
    decoded_free(&d);
    sendq_dispose(&u);
}

Test(sendq, pong_goes_first_and_echoes_the_ping_value)
{
    sendq_t u;
    uint8_t s1[20], v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    decoded_t d;

    q_init(&u, 65536, 65536, 0);
    sendq_push(&u, s1, mk(s1, sizeof(s1), 0x01, 1), 0);
    cr_assert_eq(sendq_push_pong(&u, v), SENDQ_OK);
    cr_expect(sendq_ready(&u, 0));
    drain(&u, 1000, 0, &d);
    cr_assert_eq(d.n, 2);
    expect_packet(&d, 0, CAPSULE_PONG, v, 8);
    expect_packet(&d, 1, CAPSULE_SIGNAL, s1, sizeof(s1));
    decoded_free(&d);
    sendq_dispose(&u);
}

Test(sendq, pongs_are_bounded)
{
    sendq_t u;
    uint8_t v[8] = {0};

    q_init(&u, 0, 0, 0);
    for (unsigned i = 0; i < SENDQ_MAX_PONGS; i++)
        cr_assert_eq(sendq_push_pong(&u, v), SENDQ_OK);
    cr_expect_eq(sendq_push_pong(&u, v), SENDQ_FULL);
    cr_expect_eq(u.drops[SENDQ_DROP_PONG_FULL], 1);
    sendq_dispose(&u);
}

Test(sendq, ping_goes_after_pongs_and_a_newer_one_replaces_it)
{
    sendq_t u;
    uint8_t s1[20], pong[8] = {1}, old[8] = {2}, ping[8] = {3, 4, 5, 6, 7, 8, 9, 10};
    decoded_t d;

    q_init(&u, 65536, 65536, 0);
    sendq_push(&u, s1, mk(s1, sizeof(s1), 0x01, 1), 0);
    cr_assert_eq(sendq_push_ping(&u, old), SENDQ_OK);
    cr_assert_eq(sendq_push_ping(&u, ping), SENDQ_OK);
    cr_assert_eq(sendq_push_pong(&u, pong), SENDQ_OK);
    drain(&u, 1000, 0, &d);
    cr_assert_eq(d.n, 3);
    expect_packet(&d, 0, CAPSULE_PONG, pong, 8);
    expect_packet(&d, 1, CAPSULE_PING, ping, 8);
    expect_packet(&d, 2, CAPSULE_SIGNAL, s1, sizeof(s1));
    decoded_free(&d);
    cr_assert_eq(sendq_push_ping(&u, ping), SENDQ_OK);
    sendq_discard(&u);
    cr_expect_not(sendq_ready(&u, 0), "discard drops the PING too");
    sendq_finish(&u, 0, 0, NULL);
    cr_expect_eq(sendq_push_ping(&u, ping), SENDQ_ENDED);
    sendq_dispose(&u);
}

/* A flow moving to another stream: the queued packets go, the capsule
 * already started (and the PONGs) stay with the stream they belong to. */
Test(sendq, take_queues_moves_packets_and_leaves_the_started_capsule)
{
    sendq_t a, b;
    uint8_t m[500], s1[20], frame[100], rbuf[70000], pong[8] = {7};
    capsule_reader_t r;
    capsule_t c;
    const uint8_t *src;
    size_t len, n;
    int eof = 0, rc, datagrams = 0, pongs = 0, closes = 0;
    decoded_t d;

    q_init(&a, 65536, 65536, 0);
    sendq_init(&b, 0, 0, MAXP, 0, NULL, NULL);
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    sendq_push(&a, m, mk(m, sizeof(m), 0x80, 1), 0);
    sendq_push(&a, m, mk(m, sizeof(m), 0x80, 2), 0);
    n = sendq_fill(&a, frame, sizeof(frame), 0, &eof); /* first DATAGRAM started */
    sendq_push(&a, s1, mk(s1, sizeof(s1), 0x00, 3), 0);
    sendq_push_pong(&a, pong);
    sendq_take_queues(&b, &a);
    cr_expect_eq(sendq_queued(&a), 0);
    cr_expect_eq(sendq_queued(&b), 520);

    /* a finishes its started capsule, its PONG and its CLOSE: well formed. */
    sendq_finish(&a, 1, CLOSE_TAKEN_OVER, "taken over");
    src = frame;
    len = n;
    for (;;) {
        while ((rc = capsule_reader_next(&r, &src, &len, &c, NULL)) > 0) {
            datagrams += c.type == CAPSULE_DATAGRAM;
            pongs += c.type == CAPSULE_PONG;
            closes += c.type == CAPSULE_CLOSE;
        }
        cr_assert_geq(rc, 0);
        if (eof)
            break;
        n = sendq_fill(&a, frame, sizeof(frame), 0, &eof);
        src = frame;
        len = n;
    }
    cr_expect_eq(datagrams, 1);
    cr_expect_eq(pongs, 1);
    cr_expect_eq(closes, 1);

    /* b starts on a capsule boundary with the rest, signaling first. */
    cr_expect_eq(drain(&b, 100, 0, &d), 0);
    cr_assert_eq(d.n, 2);
    mk(m, sizeof(m), 0x80, 2);
    expect_packet(&d, 0, CAPSULE_SIGNAL, s1, sizeof(s1));
    expect_packet(&d, 1, CAPSULE_DATAGRAM, m, sizeof(m));
    decoded_free(&d);
    /* The moved queues keep their bounds. */
    cr_expect_eq(b.media._cap, a.media._cap);
    sendq_dispose(&a);
    sendq_dispose(&b);
}

/* Every frame size from 1 byte up: capsules (one of them the largest legal
 * payload) cross frame boundaries and come out whole and in order. */
Test(sendq, capsules_split_across_frames_of_every_small_size)
{
    static uint8_t big[MAXP];
    uint8_t a[300], b[5], c[70];

    mk(big, sizeof(big), 0x80, 9);
    for (size_t chunk = 1; chunk <= 40; chunk++) {
        sendq_t u;
        decoded_t d;
        q_init(&u, 200000, 0, 0); /* room for all: this is not about drops */
        cr_assert_eq(sendq_push(&u, a, mk(a, sizeof(a), 0x80, 1), 0), SENDQ_OK);
        cr_assert_eq(sendq_push(&u, b, mk(b, sizeof(b), 0x14, 2), 0), SENDQ_OK);
        cr_assert_eq(sendq_push(&u, big, sizeof(big), 0), SENDQ_OK);
        cr_assert_eq(sendq_push(&u, c, mk(c, sizeof(c), 0x81, 3), 0), SENDQ_OK);
        cr_assert_eq(sendq_push(&u, NULL, 0, 0), SENDQ_OK); /* empty: media */
        sendq_finish(&u, 1, CLOSE_NORMAL, "bye");
        cr_expect_eq(drain(&u, chunk, 0, &d), 1, "chunk %zu: no end of body", chunk);
        cr_assert_eq(d.n, 6, "chunk %zu: %zu capsules", chunk, d.n);
        expect_packet(&d, 0, CAPSULE_SIGNAL, b, sizeof(b));
        expect_packet(&d, 1, CAPSULE_DATAGRAM, a, sizeof(a));
        expect_packet(&d, 2, CAPSULE_DATAGRAM, big, sizeof(big));
        expect_packet(&d, 3, CAPSULE_DATAGRAM, c, sizeof(c));
        expect_packet(&d, 4, CAPSULE_DATAGRAM, NULL, 0);
        cr_assert_eq(d.type[5], CAPSULE_CLOSE);
        decoded_free(&d);
        sendq_dispose(&u);
    }
}

/* A media capsule half written when the queue evicts must still be finished
 * intact: it lives in the staging buffer, not the ring. */
Test(sendq, eviction_never_tears_a_capsule_in_flight)
{
    sendq_t u;
    uint8_t p[1000], frame[100], rbuf[70000];
    capsule_reader_t r;
    capsule_t c;
    int eof, rc;
    size_t got = 0;

    q_init(&u, 4096, 0, 0); /* qcap raises it to one max packet */
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    for (unsigned i = 0; i < 70; i++)
        sendq_push(&u, p, mk(p, sizeof(p), 0x80, i), 0);
    for (int round = 0; round < 2000; round++) {
        size_t n = sendq_fill(&u, frame, sizeof(frame), 0, &eof);
        const uint8_t *src = frame;
        size_t len = n;
        while ((rc = capsule_reader_next(&r, &src, &len, &c, NULL)) > 0) {
            cr_assert_eq(c.type, CAPSULE_DATAGRAM);
            cr_assert_eq(c.len, sizeof(p) + 1);
            cr_assert_eq(c.value[1], 0x80);
            got++;
        }
        cr_assert_geq(rc, 0);
        /* Keep the ring full so every push evicts. */
        sendq_push(&u, p, mk(p, sizeof(p), 0x80, (unsigned)round), 0);
    }
    cr_expect_gt(got, 100);
    cr_expect_gt(u.drops[SENDQ_DROP_MEDIA_EVICTED], 0, "the test should have caused evictions");
    sendq_dispose(&u);
}

Test(sendq, media_is_dropped_oldest_first_and_counted)
{
    sendq_t u;
    uint8_t p[1000];
    decoded_t d;

    q_init(&u, 1, 0, 0); /* the minimum: one largest packet */
    for (unsigned i = 0; i < 100; i++)
        cr_assert_eq(sendq_push(&u, p, mk(p, sizeof(p), 0x80, i), 0), SENDQ_OK);
    cr_expect_gt(u.drops[SENDQ_DROP_MEDIA_EVICTED], 0);
    cr_expect_eq(u.drops[SENDQ_DROP_MEDIA_EVICTED] + u.media.count, 100);
    drain(&u, 16384, 0, &d);
    /* The newest packet survives. */
    mk(p, sizeof(p), 0x80, 99);
    expect_packet(&d, d.n - 1, CAPSULE_DATAGRAM, p, sizeof(p));
    decoded_free(&d);
    sendq_dispose(&u);
}

Test(sendq, signaling_is_refused_not_evicted_when_full)
{
    sendq_t u;
    uint8_t p[1000];
    unsigned ok = 0, full = 0;

    q_init(&u, 0, 1, 0);
    for (unsigned i = 0; i < 100; i++) {
        int rc = sendq_push(&u, p, mk(p, sizeof(p), 0x00, i), 0);
        ok += rc == SENDQ_OK;
        full += rc == SENDQ_FULL;
    }
    cr_expect_eq(ok + full, 100);
    cr_expect_gt(full, 0);
    cr_expect_eq(u.drops[SENDQ_DROP_SIGNAL_FULL], full);
    cr_expect_eq(u.signal.count, ok, "nothing queued was evicted");
    sendq_dispose(&u);
}

Test(sendq, payload_size_limit)
{
    sendq_t u;
    static uint8_t p[MAXP + 1];

    q_init(&u, 0, 0, 0);
    cr_expect_eq(sendq_push(&u, p, sizeof(p), 0), SENDQ_TOO_BIG);
    cr_expect_eq(sendq_push(&u, p, MAXP, 0), SENDQ_OK);
    sendq_dispose(&u);
}

Test(sendq, old_media_expires_but_signaling_does_not)
{
    sendq_t u;
    uint8_t m[10], s[10];
    decoded_t d;

    q_init(&u, 0, 0, 500);
    sendq_push(&u, m, mk(m, sizeof(m), 0x80, 1), MS(1000));
    sendq_push(&u, s, mk(s, sizeof(s), 0x00, 2), MS(1000));
    drain(&u, 16384, MS(1600), &d);
    cr_assert_eq(d.n, 1);
    expect_packet(&d, 0, CAPSULE_SIGNAL, s, sizeof(s));
    cr_expect_eq(u.drops[SENDQ_DROP_MEDIA_EXPIRED], 1);
    decoded_free(&d);
    sendq_dispose(&u);
}

Test(sendq, finish_without_close_ends_the_body_after_the_queue)
{
    sendq_t u;
    uint8_t m[10];
    decoded_t d;
    int eof = 0;

    q_init(&u, 0, 0, 0);
    sendq_push(&u, m, mk(m, sizeof(m), 0x80, 1), 0);
    sendq_finish(&u, 0, 0, NULL);
    cr_expect(sendq_finishing(&u));
    cr_expect_eq(sendq_push(&u, m, sizeof(m), 0), SENDQ_ENDED);
    cr_expect_eq(drain(&u, 16384, 0, &d), 1);
    cr_assert_eq(d.n, 1);
    expect_packet(&d, 0, CAPSULE_DATAGRAM, m, sizeof(m));
    cr_expect_eq(sendq_fill(&u, m, sizeof(m), 0, &eof), 0);
    cr_expect_eq(eof, 1, "the end is reported again, with no bytes");
    cr_expect(sendq_eof(&u));
    cr_expect_not(sendq_ready(&u, 0));
    decoded_free(&d);
    sendq_dispose(&u);
}

Test(sendq, close_capsule_carries_code_and_reason_and_first_finish_wins)
{
    sendq_t u;
    decoded_t d;
    capsule_t c;
    uint64_t code;
    const char *reason;
    size_t rlen;

    q_init(&u, 0, 0, 0);
    sendq_finish(&u, 1, CLOSE_PROTOCOL_ERROR, "bad capsule");
    sendq_finish(&u, 1, CLOSE_NORMAL, "ignored");
    cr_expect_eq(drain(&u, 7, 0, &d), 1);
    cr_assert_eq(d.n, 1);
    c.type = d.type[0];
    c.value = d.val[0];
    c.len = d.len[0];
    cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
    cr_expect_eq(code, CLOSE_PROTOCOL_ERROR);
    cr_expect_eq(rlen, strlen("bad capsule"));
    cr_expect_eq(memcmp(reason, "bad capsule", rlen), 0);
    decoded_free(&d);
    sendq_dispose(&u);
}

Test(sendq, long_close_reason_is_cut_on_a_utf8_boundary)
{
    sendq_t u;
    char reason[400];
    decoded_t d;
    capsule_t c;
    uint64_t code;
    const char *r;
    size_t rlen, i = 0;

    /* "é" (2 bytes) repeated, offset by one so a naive cut would split one. */
    reason[i++] = 'x';
    while (i + 2 < sizeof(reason)) {
        reason[i++] = (char)0xc3;
        reason[i++] = (char)0xa9;
    }
    reason[i] = '\0';
    q_init(&u, 0, 0, 0);
    sendq_finish(&u, 1, CLOSE_NORMAL, reason);
    drain(&u, 16384, 0, &d);
    cr_assert_eq(d.n, 1);
    c.type = d.type[0];
    c.value = d.val[0];
    c.len = d.len[0];
    cr_assert_eq(capsule_parse_close(&c, &code, &r, &rlen), PROTO_OK,
                 "the reason must still be valid UTF-8");
    cr_expect_leq(rlen, SENDQ_REASON_MAX);
    decoded_free(&d);
    sendq_dispose(&u);
}

Test(sendq, discard_keeps_a_partly_written_capsule_whole)
{
    sendq_t u;
    uint8_t p[500], frame[100], rbuf[70000];
    capsule_reader_t r;
    capsule_t c;
    const uint8_t *src;
    size_t len, n;
    int eof = 0, rc, closes = 0, datagrams = 0;

    q_init(&u, 0, 0, 0);
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    sendq_push(&u, p, mk(p, sizeof(p), 0x80, 1), 0);
    sendq_push(&u, p, mk(p, sizeof(p), 0x80, 2), 0);
    n = sendq_fill(&u, frame, sizeof(frame), 0, &eof); /* first capsule started */
    src = frame;
    len = n;
    cr_assert_eq(capsule_reader_next(&r, &src, &len, &c, NULL), 0);
    sendq_discard(&u);
    sendq_finish(&u, 1, CLOSE_PROTOCOL_ERROR, "x");
    while (!eof) {
        n = sendq_fill(&u, frame, sizeof(frame), 0, &eof);
        src = frame;
        len = n;
        while ((rc = capsule_reader_next(&r, &src, &len, &c, NULL)) > 0) {
            datagrams += c.type == CAPSULE_DATAGRAM;
            closes += c.type == CAPSULE_CLOSE;
        }
        cr_assert_geq(rc, 0);
    }
    cr_expect_eq(datagrams, 1, "the started capsule is finished, the queued one dropped");
    cr_expect_eq(closes, 1);
    cr_expect_eq(u.drops[SENDQ_DROP_DISCARDED], 1);
    sendq_dispose(&u);
}

static uint64_t hook_counts[SENDQ_DROP_COUNT];

static void hook(void *ctx, enum sendq_drop why, uint64_t n)
{
    cr_assert_eq(ctx, (void *)hook_counts);
    hook_counts[why] += n;
}

/* The gateway keeps server-wide totals through the hook: it must see every
 * drop the queue counts, by the same reason. */
Test(sendq, drop_hook_sees_every_drop)
{
    sendq_t u;
    uint8_t p[600], v[8] = {0};
    memset(hook_counts, 0, sizeof hook_counts);
    sendq_init(&u, 2048, 2048, 1000, MS(100), hook, hook_counts);
    for (unsigned i = 0; i < 10; i++) {
        sendq_push(&u, p, mk(p, sizeof p, 0x80, i), MS(1)); /* media: evicts */
        sendq_push(&u, p, mk(p, sizeof p, 0x00, i), MS(1)); /* signaling: refused */
    }
    sendq_push(&u, p, 1001, MS(1)); /* over max_payload */
    for (unsigned i = 0; i <= SENDQ_MAX_PONGS; i++)
        sendq_push_pong(&u, v);
    cr_assert(sendq_ready(&u, MS(500))); /* expires the queued media */
    sendq_discard(&u);
    for (int r = 0; r < SENDQ_DROP_COUNT; r++)
        cr_expect_eq(hook_counts[r], u.drops[r], "reason %d: hook %llu, queue %llu", r,
                     (unsigned long long)hook_counts[r], (unsigned long long)u.drops[r]);
    cr_expect_gt(u.drops[SENDQ_DROP_MEDIA_EVICTED], 0);
    cr_expect_gt(u.drops[SENDQ_DROP_MEDIA_EXPIRED], 0);
    cr_expect_gt(u.drops[SENDQ_DROP_SIGNAL_FULL], 0);
    cr_expect_eq(u.drops[SENDQ_DROP_TOO_BIG], 1);
    cr_expect_eq(u.drops[SENDQ_DROP_PONG_FULL], 1);
    cr_expect_gt(u.drops[SENDQ_DROP_DISCARDED], 0, "signaling and PONGs were discarded");
    sendq_dispose(&u);
}

/* A resumed session starts a new body: the capsule cut by the old stream is
 * not continued, the finish is undone, and queued packets go out whole. */
Test(sendq, restart_begins_a_clean_body_and_keeps_the_queue)
{
    sendq_t u;
    uint8_t big[3000], m1[100], frame[100];
    decoded_t d;
    int eof;

    q_init(&u, 65536, 65536, 0);
    sendq_push(&u, big, mk(big, sizeof(big), 0x80, 1), 0);
    cr_assert_eq(sendq_fill(&u, frame, sizeof(frame), 0, &eof), sizeof(frame));
    sendq_push(&u, m1, mk(m1, sizeof(m1), 0x80, 2), 0);
    sendq_finish(&u, 1, 7, "bye");
    sendq_restart(&u);
    cr_expect_eq(sendq_push(&u, m1, sizeof(m1), 0), SENDQ_OK, "pushes work again");
    cr_expect_eq(drain(&u, 16384, 0, &d), 0, "the new body is not ended");
    cr_assert_eq(d.n, 2, "%zu capsules: the torn one must not be continued", d.n);
    expect_packet(&d, 0, CAPSULE_DATAGRAM, m1, sizeof(m1));
    expect_packet(&d, 1, CAPSULE_DATAGRAM, m1, sizeof(m1));
    decoded_free(&d);
    sendq_dispose(&u);
}

static uint64_t waited_sum, waited_n;

static void on_sent(void *ctx, uint64_t waited_ns)
{
    waited_sum += waited_ns;
    waited_n++;
}

/* on_sent tells how long each packet waited: fill time minus push time. */
Test(sendq, each_sent_packet_reports_its_wait)
{
    sendq_t u;
    uint8_t m[10], s[10];
    decoded_t d;

    q_init(&u, 0, 0, 0);
    u.on_sent = on_sent;
    sendq_push(&u, m, mk(m, sizeof(m), 0x80, 1), MS(1000));
    sendq_push(&u, s, mk(s, sizeof(s), 0x00, 2), MS(1100));
    sendq_push_pong(&u, (const uint8_t *)"12345678"); /* not a queued packet: not timed */
    waited_sum = waited_n = 0;
    drain(&u, 16384, MS(1250), &d);
    cr_assert_eq(d.n, 3);
    cr_assert_eq(waited_n, 2u);
    cr_assert_eq(waited_sum, MS(250) + MS(150));
    decoded_free(&d);
    sendq_dispose(&u);
}

/* proto/README.md §5.1.1: with stamp_media, media goes as context-2 DATAGRAMs
 * carrying the time it was queued (microseconds, modulo 2^32); signaling is
 * never stamped; without the flag media stays context 0. */
Test(sendq, stamped_media_carries_the_time_it_was_queued)
{
    sendq_t u;
    uint8_t m[10], m3[3], s[10];
    decoded_t d;

    q_init(&u, 0, 0, 0);
    u.stamp_media = 1;
    const uint64_t t0 = (5ull << 32) * 1000u + MS(1); /* past a wrap of the stamp */
    sendq_push(&u, m, mk(m, sizeof(m), 0x80, 1), t0);
    sendq_push(&u, s, mk(s, sizeof(s), 0x00, 2), t0 + MS(5));
    sendq_push(&u, m3, mk(m3, sizeof(m3), 0x80, 3), t0 + 7777);
    drain(&u, 5, t0 + MS(20), &d); /* in 5-byte frames: the stamp is split too */
    cr_assert_eq(d.n, 3);
    expect_packet(&d, 0, CAPSULE_SIGNAL, s, sizeof(s));
    for (size_t i = 1; i < 3; i++) {
        cr_assert_eq(d.type[i], CAPSULE_DATAGRAM);
        cr_assert_eq(d.val[i][0], CAPSULE_CONTEXT_STAMPED);
    }
    cr_assert_eq(d.len[1], 1 + CAPSULE_STAMP_LEN + sizeof(m));
    cr_assert_eq(capsule_get_stamp(d.val[1] + 1), (uint32_t)(t0 / 1000u));
    cr_assert_eq(capsule_get_stamp(d.val[1] + 1), 1000u, "1 ms past the wrap");
    cr_assert(memcmp(d.val[1] + 1 + CAPSULE_STAMP_LEN, m, sizeof(m)) == 0);
    cr_assert_eq(d.len[2], 1 + CAPSULE_STAMP_LEN + sizeof(m3));
    cr_assert_eq(capsule_get_stamp(d.val[2] + 1), 1007u);
    cr_assert(memcmp(d.val[2] + 1 + CAPSULE_STAMP_LEN, m3, sizeof(m3)) == 0);
    decoded_free(&d);

    u.stamp_media = 0;
    sendq_push(&u, m, mk(m, sizeof(m), 0x80, 4), t0 + MS(30));
    drain(&u, 16384, t0 + MS(30), &d);
    expect_packet(&d, 0, CAPSULE_DATAGRAM, m, sizeof(m));
    decoded_free(&d);
    sendq_dispose(&u);
}
