/*
 * test_uplink.c — client-shim/lib/uplink.c: queue classes, order on the
 * wire, capsules split across DATA frames of every size, the end of the
 * body, and the bounds (queue, PONGs, payload size, media age).
 *
 * The packer's output is decoded with proto's capsule_reader, the same code
 * the gateway uses, so these tests check wire format, not our own opinion.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../client-shim/lib/shim_uplink.h"
#include "../../proto/capsule.h"
#include "../../proto/proto.h"
#include "sluice_shim.h"

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
static int drain(shim_uplink_t *u, size_t chunk, uint32_t now, decoded_t *d)
{
    static uint8_t rbuf[CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER];
    uint8_t *frame = malloc(chunk);
    capsule_reader_t r;
    int eof = 0;

    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    memset(d, 0, sizeof(*d));
    for (int guard = 0; guard < 1000000; guard++) {
        size_t n = shim_uplink_fill(u, frame, chunk, now, &eof);
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

Test(uplink, signaling_goes_ahead_of_media)
{
    shim_uplink_t u;
    uint8_t m1[100], s1[20], m2[50], s2[30];
    decoded_t d;

    shim_uplink_init(&u, 65536, 65536, 0);
    cr_assert_eq(shim_uplink_push(&u, m1, mk(m1, sizeof(m1), 0x80, 1), 0), SHIM_UPLINK_OK);
    cr_assert_eq(shim_uplink_push(&u, s1, mk(s1, sizeof(s1), 0x00, 2), 0), SHIM_UPLINK_OK);
    cr_assert_eq(shim_uplink_push(&u, m2, mk(m2, sizeof(m2), 0x90, 3), 0), SHIM_UPLINK_OK);
    cr_assert_eq(shim_uplink_push(&u, s2, mk(s2, sizeof(s2), 0x17, 4), 0), SHIM_UPLINK_OK);
    cr_expect_eq(shim_uplink_queued(&u), 200);
    cr_expect_eq(drain(&u, 16384, 0, &d), 0, "no end of body without finish");
    cr_assert_eq(d.n, 4);
    expect_packet(&d, 0, CAPSULE_SIGNAL, s1, sizeof(s1));
    expect_packet(&d, 1, CAPSULE_SIGNAL, s2, sizeof(s2));
    expect_packet(&d, 2, CAPSULE_DATAGRAM, m1, sizeof(m1));
    expect_packet(&d, 3, CAPSULE_DATAGRAM, m2, sizeof(m2));
    cr_expect_eq(u.tx_packets, 4);
    cr_expect_eq(u.tx_bytes, 200);
    cr_expect_eq(shim_uplink_queued(&u), 0);
    decoded_free(&d);
    shim_uplink_dispose(&u);
}

Test(uplink, pong_goes_first_and_echoes_the_ping_value)
{
    shim_uplink_t u;
    uint8_t s1[20], v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    decoded_t d;

    shim_uplink_init(&u, 65536, 65536, 0);
    shim_uplink_push(&u, s1, mk(s1, sizeof(s1), 0x01, 1), 0);
    cr_assert_eq(shim_uplink_push_pong(&u, v), SHIM_UPLINK_OK);
    cr_expect(shim_uplink_ready(&u, 0));
    drain(&u, 1000, 0, &d);
    cr_assert_eq(d.n, 2);
    expect_packet(&d, 0, CAPSULE_PONG, v, 8);
    expect_packet(&d, 1, CAPSULE_SIGNAL, s1, sizeof(s1));
    decoded_free(&d);
    shim_uplink_dispose(&u);
}

Test(uplink, pongs_are_bounded)
{
    shim_uplink_t u;
    uint8_t v[8] = {0};

    shim_uplink_init(&u, 0, 0, 0);
    for (unsigned i = 0; i < SHIM_UPLINK_MAX_PONGS; i++)
        cr_assert_eq(shim_uplink_push_pong(&u, v), SHIM_UPLINK_OK);
    cr_expect_eq(shim_uplink_push_pong(&u, v), SHIM_UPLINK_FULL);
    cr_expect_eq(u.dropped_pongs, 1);
    shim_uplink_dispose(&u);
}

/* Every frame size from 1 byte up: capsules (one of them the largest legal
 * payload) cross frame boundaries and come out whole and in order. */
Test(uplink, capsules_split_across_frames_of_every_small_size)
{
    static uint8_t big[SLUICE_MAX_PAYLOAD];
    uint8_t a[300], b[5], c[70];

    mk(big, sizeof(big), 0x80, 9);
    for (size_t chunk = 1; chunk <= 40; chunk++) {
        shim_uplink_t u;
        decoded_t d;
        shim_uplink_init(&u, 200000, 0, 0); /* room for all: this is not about drops */
        cr_assert_eq(shim_uplink_push(&u, a, mk(a, sizeof(a), 0x80, 1), 0), SHIM_UPLINK_OK);
        cr_assert_eq(shim_uplink_push(&u, b, mk(b, sizeof(b), 0x14, 2), 0), SHIM_UPLINK_OK);
        cr_assert_eq(shim_uplink_push(&u, big, sizeof(big), 0), SHIM_UPLINK_OK);
        cr_assert_eq(shim_uplink_push(&u, c, mk(c, sizeof(c), 0x81, 3), 0), SHIM_UPLINK_OK);
        cr_assert_eq(shim_uplink_push(&u, NULL, 0, 0), SHIM_UPLINK_OK); /* empty: media */
        shim_uplink_finish(&u, 1, SLUICE_CLOSE_NORMAL, "bye");
        cr_expect_eq(drain(&u, chunk, 0, &d), 1, "chunk %zu: no end of body", chunk);
        cr_assert_eq(d.n, 6, "chunk %zu: %zu capsules", chunk, d.n);
        expect_packet(&d, 0, CAPSULE_SIGNAL, b, sizeof(b));
        expect_packet(&d, 1, CAPSULE_DATAGRAM, a, sizeof(a));
        expect_packet(&d, 2, CAPSULE_DATAGRAM, big, sizeof(big));
        expect_packet(&d, 3, CAPSULE_DATAGRAM, c, sizeof(c));
        expect_packet(&d, 4, CAPSULE_DATAGRAM, NULL, 0);
        cr_assert_eq(d.type[5], CAPSULE_CLOSE);
        decoded_free(&d);
        shim_uplink_dispose(&u);
    }
}

/* A media capsule half written when the queue evicts must still be finished
 * intact: it lives in the staging buffer, not the ring. */
Test(uplink, eviction_never_tears_a_capsule_in_flight)
{
    shim_uplink_t u;
    uint8_t p[1000], frame[100], rbuf[70000];
    capsule_reader_t r;
    capsule_t c;
    int eof, rc;
    size_t got = 0;

    shim_uplink_init(&u, 4096, 0, 0); /* ring_cap raises it to one max packet */
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    for (unsigned i = 0; i < 70; i++)
        shim_uplink_push(&u, p, mk(p, sizeof(p), 0x80, i), 0);
    for (int round = 0; round < 2000; round++) {
        size_t n = shim_uplink_fill(&u, frame, sizeof(frame), 0, &eof);
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
        shim_uplink_push(&u, p, mk(p, sizeof(p), 0x80, (unsigned)round), 0);
    }
    cr_expect_gt(got, 100);
    cr_expect_gt(u.dropped_media, 0, "the test should have caused evictions");
    shim_uplink_dispose(&u);
}

Test(uplink, media_is_dropped_oldest_first_and_counted)
{
    shim_uplink_t u;
    uint8_t p[1000];
    decoded_t d;

    shim_uplink_init(&u, 1, 0, 0); /* the minimum: one largest packet */
    for (unsigned i = 0; i < 100; i++)
        cr_assert_eq(shim_uplink_push(&u, p, mk(p, sizeof(p), 0x80, i), 0), SHIM_UPLINK_OK);
    cr_expect_gt(u.dropped_media, 0);
    cr_expect_eq(u.dropped_media + u.media.count, 100);
    drain(&u, 16384, 0, &d);
    /* The newest packet survives. */
    mk(p, sizeof(p), 0x80, 99);
    expect_packet(&d, d.n - 1, CAPSULE_DATAGRAM, p, sizeof(p));
    decoded_free(&d);
    shim_uplink_dispose(&u);
}

Test(uplink, signaling_is_refused_not_evicted_when_full)
{
    shim_uplink_t u;
    uint8_t p[1000];
    unsigned ok = 0, full = 0;

    shim_uplink_init(&u, 0, 1, 0);
    for (unsigned i = 0; i < 100; i++) {
        int rc = shim_uplink_push(&u, p, mk(p, sizeof(p), 0x00, i), 0);
        ok += rc == SHIM_UPLINK_OK;
        full += rc == SHIM_UPLINK_FULL;
    }
    cr_expect_eq(ok + full, 100);
    cr_expect_gt(full, 0);
    cr_expect_eq(u.dropped_signal, full);
    cr_expect_eq(u.signal.count, ok, "nothing queued was evicted");
    shim_uplink_dispose(&u);
}

Test(uplink, payload_size_limit)
{
    shim_uplink_t u;
    static uint8_t p[SLUICE_MAX_PAYLOAD + 1];

    shim_uplink_init(&u, 0, 0, 0);
    cr_expect_eq(shim_uplink_push(&u, p, sizeof(p), 0), SHIM_UPLINK_TOO_BIG);
    cr_expect_eq(shim_uplink_push(&u, p, SLUICE_MAX_PAYLOAD, 0), SHIM_UPLINK_OK);
    shim_uplink_dispose(&u);
}

Test(uplink, old_media_expires_but_signaling_does_not)
{
    shim_uplink_t u;
    uint8_t m[10], s[10];
    decoded_t d;

    shim_uplink_init(&u, 0, 0, 500);
    shim_uplink_push(&u, m, mk(m, sizeof(m), 0x80, 1), 1000);
    shim_uplink_push(&u, s, mk(s, sizeof(s), 0x00, 2), 1000);
    drain(&u, 16384, 1600, &d);
    cr_assert_eq(d.n, 1);
    expect_packet(&d, 0, CAPSULE_SIGNAL, s, sizeof(s));
    cr_expect_eq(u.dropped_media, 1);
    decoded_free(&d);
    shim_uplink_dispose(&u);
}

Test(uplink, finish_without_close_ends_the_body_after_the_queue)
{
    shim_uplink_t u;
    uint8_t m[10];
    decoded_t d;
    int eof = 0;

    shim_uplink_init(&u, 0, 0, 0);
    shim_uplink_push(&u, m, mk(m, sizeof(m), 0x80, 1), 0);
    shim_uplink_finish(&u, 0, 0, NULL);
    cr_expect(shim_uplink_finishing(&u));
    cr_expect_eq(shim_uplink_push(&u, m, sizeof(m), 0), SHIM_UPLINK_ENDED);
    cr_expect_eq(drain(&u, 16384, 0, &d), 1);
    cr_assert_eq(d.n, 1);
    expect_packet(&d, 0, CAPSULE_DATAGRAM, m, sizeof(m));
    cr_expect_eq(shim_uplink_fill(&u, m, sizeof(m), 0, &eof), 0);
    cr_expect_eq(eof, 1, "the end is reported again, with no bytes");
    cr_expect(shim_uplink_eof(&u));
    cr_expect_not(shim_uplink_ready(&u, 0));
    decoded_free(&d);
    shim_uplink_dispose(&u);
}

Test(uplink, close_capsule_carries_code_and_reason_and_first_finish_wins)
{
    shim_uplink_t u;
    decoded_t d;
    capsule_t c;
    uint64_t code;
    const char *reason;
    size_t rlen;

    shim_uplink_init(&u, 0, 0, 0);
    shim_uplink_finish(&u, 1, SLUICE_CLOSE_PROTOCOL_ERROR, "bad capsule");
    shim_uplink_finish(&u, 1, SLUICE_CLOSE_NORMAL, "ignored");
    cr_expect_eq(drain(&u, 7, 0, &d), 1);
    cr_assert_eq(d.n, 1);
    c.type = d.type[0];
    c.value = d.val[0];
    c.len = d.len[0];
    cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
    cr_expect_eq(code, SLUICE_CLOSE_PROTOCOL_ERROR);
    cr_expect_eq(rlen, strlen("bad capsule"));
    cr_expect_eq(memcmp(reason, "bad capsule", rlen), 0);
    decoded_free(&d);
    shim_uplink_dispose(&u);
}

Test(uplink, long_close_reason_is_cut_on_a_utf8_boundary)
{
    shim_uplink_t u;
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
    shim_uplink_init(&u, 0, 0, 0);
    shim_uplink_finish(&u, 1, SLUICE_CLOSE_NORMAL, reason);
    drain(&u, 16384, 0, &d);
    cr_assert_eq(d.n, 1);
    c.type = d.type[0];
    c.value = d.val[0];
    c.len = d.len[0];
    cr_assert_eq(capsule_parse_close(&c, &code, &r, &rlen), PROTO_OK,
                 "the reason must still be valid UTF-8");
    cr_expect_leq(rlen, SHIM_UPLINK_REASON_MAX);
    decoded_free(&d);
    shim_uplink_dispose(&u);
}

Test(uplink, discard_keeps_a_partly_written_capsule_whole)
{
    shim_uplink_t u;
    uint8_t p[500], frame[100], rbuf[70000];
    capsule_reader_t r;
    capsule_t c;
    const uint8_t *src;
    size_t len, n;
    int eof = 0, rc, closes = 0, datagrams = 0;

    shim_uplink_init(&u, 0, 0, 0);
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    shim_uplink_push(&u, p, mk(p, sizeof(p), 0x80, 1), 0);
    shim_uplink_push(&u, p, mk(p, sizeof(p), 0x80, 2), 0);
    n = shim_uplink_fill(&u, frame, sizeof(frame), 0, &eof); /* first capsule started */
    src = frame;
    len = n;
    cr_assert_eq(capsule_reader_next(&r, &src, &len, &c, NULL), 0);
    shim_uplink_discard(&u);
    shim_uplink_finish(&u, 1, SLUICE_CLOSE_PROTOCOL_ERROR, "x");
    while (!eof) {
        n = shim_uplink_fill(&u, frame, sizeof(frame), 0, &eof);
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
    cr_expect_eq(u.dropped_media, 1);
    shim_uplink_dispose(&u);
}
