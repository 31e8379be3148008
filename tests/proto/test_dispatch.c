/*
 * test_dispatch.c — proto/dispatch.c: dispatch of a tunnel body's capsule
 * stream, fed whole and split at every byte position.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "../../proto/dispatch.h"
#include "../../proto/proto.h"
#include "../../proto/varint.h"

typedef struct rec {
    int packets, signals, pings, pongs, closes;
    size_t bytes;
    uint8_t last_ping[8];
    uint64_t close_code;
    char close_reason[64];
    uint8_t first_packet[16];
    int stop_after; /* on_packet abandons the stream after this many (0: never) */
    int mute_after; /* on_packet mutes after this many (0: never) */
    int muting;     /* set once mute_after is reached: every later call mutes */
    int muted_calls; /* calls made while muting (at most one per dispatch_feed) */
    int skipped_context_id, skipped_unknown, skipped_muted;
    int stamped;
    uint32_t last_stamp;
    size_t stamped_bytes;
} rec_t;

static int on_packet(void *ud, const uint8_t *p, size_t len, int is_signal)
{
    rec_t *r = ud;
    if (r->muting) {
        r->muted_calls++;
        return DISPATCH_MUTE;
    }
    if (r->packets + r->signals == 0)
        memcpy(r->first_packet, p, len < 16 ? len : 16);
    if (is_signal)
        r->signals++;
    else
        r->packets++;
    r->bytes += len;
    if (r->mute_after && r->packets + r->signals >= r->mute_after) {
        r->muting = 1;
        return DISPATCH_MUTE;
    }
    return r->stop_after && r->packets + r->signals >= r->stop_after;
}

static void on_ping(void *ud, const uint8_t *v)
{
    rec_t *r = ud;
    r->pings++;
    memcpy(r->last_ping, v, 8);
}

static void on_pong(void *ud, const uint8_t *v)
{
    rec_t *r = ud;
    r->pongs += v[0] == 9;
}

static void on_close(void *ud, uint64_t code, const char *reason, size_t len)
{
    rec_t *r = ud;
    r->closes++;
    r->close_code = code;
    snprintf(r->close_reason, sizeof(r->close_reason), "%.*s", (int)len, reason);
}

static void on_skip(void *ud, enum dispatch_skip why)
{
    rec_t *r = ud;
    if (why == DISPATCH_SKIP_CONTEXT_ID)
        r->skipped_context_id++;
    else if (why == DISPATCH_SKIP_MUTED)
        r->skipped_muted++;
    else
        r->skipped_unknown++;
}

static int on_stamped(void *ud, const uint8_t *p, size_t len, uint32_t sent_us)
{
    rec_t *r = ud;
    r->stamped++;
    r->last_stamp = sent_us;
    r->stamped_bytes += len;
    return DISPATCH_CONTINUE;
}

static const dispatch_ops_t ops = {.on_packet = on_packet, .on_ping = on_ping, .on_close = on_close,
                                   .on_skip = on_skip, .on_pong = on_pong};
static const dispatch_ops_t stamp_ops = {.on_packet = on_packet, .on_ping = on_ping,
                                         .on_close = on_close,   .on_skip = on_skip,
                                         .on_pong = on_pong,     .on_stamped = on_stamped};

static uint8_t rbuf[CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER];

/* Feeds wire in two pieces split at `at`; returns the last rc. */
static int feed_split(const uint8_t *wire, size_t len, size_t at, rec_t *rec)
{
    capsule_reader_t r;
    int rc;

    memset(rec, 0, sizeof(*rec));
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    rc = dispatch_feed(&r, wire, at, &ops, rec, NULL);
    if (rc != DISPATCH_OK)
        return rc;
    return dispatch_feed(&r, wire + at, len - at, &ops, rec, NULL);
}

static size_t build_stream(uint8_t *w, size_t cap)
{
    static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t stun[] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
    static const uint8_t ping[8] = {9, 8, 7, 6, 5, 4, 3, 2};
    uint8_t ctx7[] = {0x07, 0xaa, 0xbb}; /* DATAGRAM with context id 7 */
    size_t n = 0;

    n += (size_t)capsule_encode_datagram(w + n, cap - n, rtp, sizeof(rtp));
    n += (size_t)capsule_encode(w + n, cap - n, CAPSULE_SIGNAL, stun, sizeof(stun));
    n += (size_t)capsule_encode(w + n, cap - n, CAPSULE_PING, ping, sizeof(ping));
    n += (size_t)capsule_encode(w + n, cap - n, CAPSULE_PONG, ping, sizeof(ping));
    n += (size_t)capsule_encode(w + n, cap - n, 0x2a2a, (const uint8_t *)"grease", 6);
    n += (size_t)capsule_encode(w + n, cap - n, CAPSULE_DATAGRAM, ctx7, sizeof(ctx7));
    n += (size_t)capsule_encode_datagram(w + n, cap - n, NULL, 0);
    n += (size_t)capsule_encode_close(w + n, cap - n, CLOSE_SHUTTING_DOWN, "bye", 3);
    n += (size_t)capsule_encode_datagram(w + n, cap - n, rtp, sizeof(rtp)); /* after CLOSE */
    return n;
}

Test(dispatch, every_split_point_gives_the_same_events)
{
    uint8_t w[512];
    size_t n = build_stream(w, sizeof(w));
    rec_t rec;

    for (size_t at = 0; at <= n; at++) {
        int rc = feed_split(w, n, at, &rec);
        cr_assert_eq(rc, DISPATCH_CLOSED, "split at %zu: rc %d", at, rc);
        cr_assert_eq(rec.packets, 2, "split at %zu: %d datagrams (ctx 7 dropped, empty kept)",
                     at, rec.packets);
        cr_assert_eq(rec.signals, 1);
        cr_assert_eq(rec.bytes, 12 + 8 + 0);
        cr_assert_eq(rec.first_packet[0], 0x80);
        cr_assert_eq(rec.pings, 1);
        cr_assert_eq(rec.last_ping[0], 9);
        cr_assert_eq(rec.pongs, 1, "split at %zu: the PONG is delivered", at);
        cr_assert_eq(rec.closes, 1);
        cr_assert_eq(rec.close_code, CLOSE_SHUTTING_DOWN);
        cr_assert_str_eq(rec.close_reason, "bye");
        cr_assert_eq(rec.skipped_context_id, 1, "the context-id drop is reported");
        cr_assert_eq(rec.skipped_unknown, 1, "the grease capsule is reported");
    }
}

Test(dispatch, byte_at_a_time)
{
    uint8_t w[512];
    size_t n = build_stream(w, sizeof(w));
    capsule_reader_t r;
    rec_t rec;
    int rc = DISPATCH_OK;

    memset(&rec, 0, sizeof(rec));
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    for (size_t i = 0; i < n && rc == DISPATCH_OK; i++)
        rc = dispatch_feed(&r, w + i, 1, &ops, &rec, NULL);
    cr_expect_eq(rc, DISPATCH_CLOSED);
    cr_expect_eq(rec.packets + rec.signals, 3);
}

Test(dispatch, oversized_capsule_is_an_error_as_soon_as_its_length_is_known)
{
    uint8_t w[16];
    ssize_t h = capsule_encode_header(w, sizeof(w), CAPSULE_DATAGRAM,
                                      CAPSULE_DEFAULT_MAX_VALUE + 1);
    capsule_reader_t r;
    rec_t rec = {0};
    const char *err = NULL;

    cr_assert_gt(h, 0);
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    cr_expect_eq(dispatch_feed(&r, w, (size_t)h, &ops, &rec, &err), PROTO_ERR_TOO_LARGE);
    cr_expect_not_null(err);
}

Test(dispatch, malformed_values_are_protocol_errors)
{
    uint8_t w[64];
    static const uint8_t short_ping[4] = {1, 2, 3, 4};
    static const uint8_t bad_utf8[] = {0x00, 0xff, 0xfe};
    struct { uint64_t type; const uint8_t *v; size_t len; } cases[] = {
        {CAPSULE_DATAGRAM, NULL, 0},         /* no context id */
        {CAPSULE_PING, short_ping, 4},       /* PING must be 8 bytes */
        {CAPSULE_CLOSE, NULL, 0},            /* no code */
        {CAPSULE_CLOSE, bad_utf8, 3},        /* reason not UTF-8 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ssize_t n = capsule_encode(w, sizeof(w), cases[i].type, cases[i].v, cases[i].len);
        capsule_reader_t r;
        rec_t rec = {0};
        const char *err = NULL;
        cr_assert_gt(n, 0);
        capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
        cr_expect_eq(dispatch_feed(&r, w, (size_t)n, &ops, &rec, &err), PROTO_ERR_MALFORMED,
                     "case %zu", i);
        cr_expect_not_null(err, "case %zu has no description", i);
        cr_expect_eq(rec.closes + rec.pings + rec.packets, 0, "case %zu", i);
    }
}

Test(dispatch, on_packet_can_abandon_the_stream)
{
    uint8_t w[512];
    size_t n = build_stream(w, sizeof(w));
    capsule_reader_t r;
    rec_t rec = {0};

    rec.stop_after = 1; /* on_packet returns 1, a boolean "stop": DISPATCH_ABANDON */
    cr_assert_eq(DISPATCH_ABANDON, 1);
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    cr_expect_eq(dispatch_feed(&r, w, n, &ops, &rec, NULL), DISPATCH_STOPPED);
    cr_expect_eq(rec.packets + rec.signals, 1);
    cr_expect_eq(rec.pings + rec.closes, 0, "nothing after the abandoning packet is read");
}

/* Many DATAGRAMs, a PING among them, then CLOSE: the stream a tunnel that is
 * closing keeps receiving until the peer's CLOSE. */
static size_t build_long_stream(uint8_t *w, size_t cap)
{
    static const uint8_t ping[8] = {1, 1, 2, 3, 5, 8, 13, 21};
    uint8_t payload[300];
    size_t n = 0;

    /* A payload of 0xff bytes read as a capsule header is an oversized
     * capsule, so a reader that loses its place fails loudly. */
    memset(payload, 0xff, sizeof(payload));
    payload[0] = 0x80;
    for (int i = 0; i < 12; i++) {
        n += (size_t)capsule_encode_datagram(w + n, cap - n, payload, sizeof(payload));
        if (i == 6)
            n += (size_t)capsule_encode(w + n, cap - n, CAPSULE_PING, ping, sizeof(ping));
    }
    n += (size_t)capsule_encode_close(w + n, cap - n, CLOSE_NORMAL, "done", 4);
    return n;
}

/* DISPATCH_MUTE: the handler stops taking packets (its tunnel is closing) but
 * the stream is read on, in chunks of every size, to the peer's CLOSE; every
 * packet it did not take is reported, once. */
Test(dispatch, mute_keeps_the_reader_in_step_to_the_close)
{
    static uint8_t w[8192];
    size_t n = build_long_stream(w, sizeof(w));

    for (size_t chunk = 1; chunk <= 701; chunk += (chunk < 16 ? 1 : 97)) {
        capsule_reader_t r;
        rec_t rec = {0};
        const char *err = NULL;
        int rc = DISPATCH_OK;
        size_t calls = 0;

        rec.mute_after = 2;
        capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
        for (size_t off = 0; off < n && rc == DISPATCH_OK; off += chunk, calls++)
            rc = dispatch_feed(&r, w + off, n - off < chunk ? n - off : chunk, &ops, &rec, &err);
        cr_assert_eq(rc, DISPATCH_CLOSED, "chunks of %zu: rc %d (%s)", chunk, rc,
                     err ? err : "-");
        cr_expect_eq(rec.packets, 2, "chunks of %zu: delivered until muted", chunk);
        cr_expect_eq(rec.pings, 1, "chunks of %zu: PING still reported", chunk);
        cr_expect_eq(rec.closes, 1, "chunks of %zu", chunk);
        cr_expect_str_eq(rec.close_reason, "done");
        cr_expect_leq((size_t)rec.muted_calls, calls,
                      "chunks of %zu: at most one muted call per feed", chunk);
        cr_expect_eq(rec.muted_calls + rec.skipped_muted, 10,
                     "chunks of %zu: %d muted calls and %d muted skips for 10 packets", chunk,
                     rec.muted_calls, rec.skipped_muted);
        cr_expect_eq(rec.skipped_unknown + rec.skipped_context_id, 0);
    }
}

Test(dispatch, mute_applies_to_the_rest_of_one_feed_only)
{
    static uint8_t w[8192];
    size_t n = build_long_stream(w, sizeof(w));
    capsule_reader_t r;
    rec_t rec = {0};

    rec.mute_after = 1;
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    cr_expect_eq(dispatch_feed(&r, w, n, &ops, &rec, NULL), DISPATCH_CLOSED);
    cr_expect_eq(rec.packets, 1);
    cr_expect_eq(rec.muted_calls, 0, "no packet is offered again in the same feed");
    cr_expect_eq(rec.skipped_muted, 11, "each packet not offered is reported");
    cr_expect_eq(rec.closes, 1);
}

/* Stamped media after the mute is not offered either, and is reported. */
Test(dispatch, mute_covers_stamped_media_too)
{
    uint8_t w[512], payload[40];
    size_t n = 0;
    capsule_reader_t r;
    rec_t rec = {0};

    memset(payload, 0, sizeof(payload));
    payload[0] = 0x80;
    n += (size_t)capsule_encode_datagram(w + n, sizeof(w) - n, payload, sizeof(payload));
    for (int i = 0; i < 3; i++)
        n += (size_t)capsule_encode_stamped(w + n, sizeof(w) - n, 7u, payload, sizeof(payload));
    rec.mute_after = 1;
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    cr_assert_eq(dispatch_feed(&r, w, n, &stamp_ops, &rec, NULL), DISPATCH_OK);
    cr_expect_eq(rec.packets, 1);
    cr_expect_eq(rec.stamped, 0, "stamped media was offered to a muted handler");
    cr_expect_eq(rec.skipped_muted, 3);
}

Test(dispatch, largest_payload_arrives_whole_across_chunks)
{
    static uint8_t payload[CAPSULE_DEFAULT_MAX_VALUE - 1], w[CAPSULE_DEFAULT_MAX_VALUE + 32];
    ssize_t n;
    capsule_reader_t r;
    rec_t rec = {0};
    int rc = DISPATCH_OK;

    memset(payload, 0x90, sizeof(payload));
    n = capsule_encode_datagram(w, sizeof(w), payload, sizeof(payload));
    cr_assert_gt(n, 0);
    capsule_reader_init(&r, rbuf, sizeof(rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    for (size_t off = 0; off < (size_t)n && rc == DISPATCH_OK; off += 1000) {
        size_t k = (size_t)n - off < 1000 ? (size_t)n - off : 1000;
        rc = dispatch_feed(&r, w + off, k, &ops, &rec, NULL);
    }
    cr_expect_eq(rc, DISPATCH_OK);
    cr_expect_eq(rec.packets, 1);
    cr_expect_eq(rec.bytes, sizeof(payload));
}

/* proto/README.md §5.1.1: a context-2 DATAGRAM reaches on_stamped with its
 * stamp; a receiver without on_stamped skips it as any unknown context id. */
Test(dispatch, stamped_datagrams_reach_on_stamped_or_are_skipped)
{
    uint8_t buf[256], rb[256];
    size_t n = 0;
    ssize_t k = capsule_encode_stamped(buf, sizeof buf, 0x80a0b0c1u, (const uint8_t *)"hello", 5);
    cr_assert_gt(k, 0);
    n += (size_t)k;
    k = capsule_encode_datagram(buf + n, sizeof buf - n, (const uint8_t *)"xy", 2);
    n += (size_t)k;
    /* A stamp alone: an empty payload, which is allowed. */
    k = capsule_encode_stamped(buf + n, sizeof buf - n, 7, NULL, 0);
    n += (size_t)k;

    for (int with = 0; with < 2; with++) {
        capsule_reader_t r;
        rec_t rec = {0};
        const char *err = NULL;
        capsule_reader_init(&r, rb, sizeof rb, 64);
        cr_assert_eq(dispatch_feed(&r, buf, n, with ? &stamp_ops : &ops, &rec, &err), DISPATCH_OK);
        cr_assert_eq(rec.packets, 1, "the context-0 DATAGRAM in either case");
        if (with) {
            cr_assert_eq(rec.stamped, 2);
            cr_assert_eq(rec.last_stamp, 7u);
            cr_assert_eq(rec.stamped_bytes, 5u);
            cr_assert_eq(rec.skipped_context_id, 0);
        } else {
            cr_assert_eq(rec.stamped, 0);
            cr_assert_eq(rec.skipped_context_id, 2);
        }
    }
}

Test(dispatch, a_stamped_datagram_shorter_than_its_stamp_is_malformed)
{
    /* DATAGRAM, length 4: context id 2 and three bytes of a stamp. */
    const uint8_t bad[] = {0x00, 0x04, 0x02, 0x01, 0x02, 0x03};
    uint8_t rb[64];
    capsule_reader_t r;
    rec_t rec = {0};
    const char *err = NULL;
    capsule_reader_init(&r, rb, sizeof rb, 32);
    cr_assert_eq(dispatch_feed(&r, bad, sizeof bad, &stamp_ops, &rec, &err), PROTO_ERR_MALFORMED);
    cr_assert_str_eq(err, "stamped DATAGRAM shorter than its stamp");
    /* Without stamps it is only an unknown context id. */
    capsule_reader_init(&r, rb, sizeof rb, 32);
    cr_assert_eq(dispatch_feed(&r, bad, sizeof bad, &ops, &rec, &err), DISPATCH_OK);
    cr_assert_eq(rec.skipped_context_id, 1);
}
