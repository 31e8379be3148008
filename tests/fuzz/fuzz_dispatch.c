/*
 * fuzz_dispatch.c — proto/dispatch.c and proto/sendq.c together, the way a
 * tunnel uses them: a peer's capsule stream goes through dispatch_feed, whose
 * handlers push the packets back into a sendq (an echo, as the built-in echo
 * backend does), answer PINGs with PONGs and finish on CLOSE; the sendq's
 * body comes out through sendq_fill in frames of random sizes and is read
 * again by a second reader, as the peer would.
 *
 * Input: a program. Each step takes an opcode byte and its arguments from the
 * input: feed n bytes of the rest to the dispatcher (its handlers choose their
 * verdicts from the input too), push a raw packet, fill a frame of n bytes,
 * advance the clock, queue a PING, finish (with or without CLOSE), discard,
 * restart the body, move the queues to a second sendq and back.
 *
 * Asserts: the sendq's body is always a well-formed capsule stream (the
 * second reader never fails, and sees no CLOSE before the end); every packet in
 * it is no longer than max_payload and sits in the capsule its class calls for
 * (SIGNAL for STUN/DTLS, DATAGRAM with context id 0 for media, or 2 with a
 * stamp while the sendq stamps media, which a restart toggles); whenever
 * nothing is staged, the peer has read exactly tx_packets packets of this body;
 * after eof, sendq_fill writes nothing; the queued byte counts never pass the
 * bounds; no leak (sendq_dispose).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "../../proto/classify.h"
#include "../../proto/dispatch.h"
#include "../../proto/proto.h"
#include "../../proto/sendq.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEDIA_BYTES 2048u
#define SIGNAL_BYTES 1024u
#define MAX_PAYLOAD 600u
#define MAX_AGE_NS 50000000u /* 50 ms */

typedef struct ctx {
    fuzz_in_t *in;
    sendq_t *q;
    uint64_t now;
    int closed; /* the peer's CLOSE was read */
} ctx_t;

/* The gateway's side: echo what the peer sends. */
static int up_packet(void *ud, const uint8_t *p, size_t len, int is_signal)
{
    ctx_t *c = ud;
    FUZZ_ASSERT(len <= CAPSULE_DEFAULT_MAX_VALUE);
    sendq_push(c->q, p, len, c->now);
    uint8_t v = fuzz_u8(c->in);
    return v < 200 ? DISPATCH_CONTINUE : v < 230 ? DISPATCH_MUTE : DISPATCH_ABANDON;
}

/* A stamped DATAGRAM (context id 2): echoed as any media. */
static int up_stamped(void *ud, const uint8_t *p, size_t len, uint32_t sent_us)
{
    return up_packet(ud, p, len, 0);
}

static void up_ping(void *ud, const uint8_t *value)
{
    ctx_t *c = ud;
    sendq_push_pong(c->q, value);
}

static void up_close(void *ud, uint64_t code, const char *reason, size_t reason_len)
{
    ctx_t *c = ud;
    char r[SENDQ_REASON_MAX * 2 + 1];
    if (reason_len > sizeof r - 1)
        reason_len = sizeof r - 1;
    memcpy(r, reason, reason_len);
    r[reason_len] = '\0';
    c->closed = 1;
    sendq_finish(c->q, 1, code, r);
}

/* The peer's side: read our body back. */
typedef struct down {
    uint64_t packets; /* packets read from this body */
    int closed;
    int stamped;      /* the sendq stamps media on this body */
} down_t;

static int down_packet(void *ud, const uint8_t *p, size_t len, int is_signal)
{
    down_t *d = ud;
    FUZZ_ASSERT(len <= MAX_PAYLOAD);
    FUZZ_ASSERT((classify_packet(p, len) == PKT_SIGNAL) == (is_signal != 0));
    d->packets++;
    return DISPATCH_CONTINUE;
}

static int down_stamped(void *ud, const uint8_t *p, size_t len, uint32_t sent_us)
{
    down_t *d = ud;
    FUZZ_ASSERT(d->stamped);
    FUZZ_ASSERT(classify_packet(p, len) != PKT_SIGNAL);
    return down_packet(ud, p, len, 0);
}

static void down_ping(void *ud, const uint8_t *value)
{
}

static void down_close(void *ud, uint64_t code, const char *reason, size_t reason_len)
{
    down_t *d = ud;
    FUZZ_ASSERT(reason_len <= SENDQ_REASON_MAX);
    d->closed = 1;
}

static void down_skip(void *ud, enum dispatch_skip why)
{
    FUZZ_ASSERT(!"sendq wrote a capsule its peer skips");
}

static const dispatch_ops_t UP = {.on_packet = up_packet, .on_ping = up_ping,
                                   .on_close = up_close, .on_stamped = up_stamped};
static const dispatch_ops_t DOWN = {.on_packet = down_packet, .on_ping = down_ping,
                                     .on_close = down_close, .on_skip = down_skip,
                                     .on_stamped = down_stamped};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    sendq_t q, q2;
    sendq_init(&q, MEDIA_BYTES, SIGNAL_BYTES, MAX_PAYLOAD, MAX_AGE_NS, NULL, NULL);
    sendq_init(&q2, MEDIA_BYTES, SIGNAL_BYTES, MAX_PAYLOAD, MAX_AGE_NS, NULL, NULL);
    ctx_t c = {&in, &q, 1000000000u, 0};

    static uint8_t ubuf[CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER];
    static uint8_t dbuf[MAX_PAYLOAD + CAPSULE_MAX_OVERHEAD + 8 + SENDQ_REASON_MAX];
    capsule_reader_t up, dn;
    capsule_reader_init(&up, ubuf, sizeof ubuf, CAPSULE_DEFAULT_MAX_VALUE);
    capsule_reader_init(&dn, dbuf, sizeof dbuf, sizeof dbuf - CAPSULE_MAX_HEADER);
    down_t d = {0, 0, 0};
    uint64_t base = 0; /* tx_packets when this body started */
    int up_dead = 0;   /* the uplink reader failed or was abandoned */
    uint8_t frame[4096];

    for (int steps = 0; in.len > 0 && steps < 4096; steps++) {
        uint8_t op = fuzz_u8(&in);
        switch (op % 11) {
        case 0:
        case 1:
        case 2: { /* feed the dispatcher */
            size_t n;
            const uint8_t *p = fuzz_bytes(&in, fuzz_u8(&in), &n);
            if (up_dead || c.closed)
                break;
            const char *err = NULL;
            int rc = dispatch_feed(&up, p, n, &UP, &c, &err);
            if (rc < 0)
                FUZZ_ASSERT(err != NULL);
            if (rc < 0 || rc == DISPATCH_STOPPED)
                up_dead = 1;
            break;
        }
        case 3: { /* push a raw packet */
            size_t n;
            const uint8_t *p = fuzz_bytes(&in, fuzz_u16(&in) % (MAX_PAYLOAD + 64), &n);
            int rc = sendq_push(&q, p, n, c.now);
            FUZZ_ASSERT(rc == SENDQ_OK || rc == SENDQ_TOO_BIG || rc == SENDQ_FULL ||
                        rc == SENDQ_ENDED);
            break;
        }
        case 4:
        case 5: { /* fill a frame and read it as the peer */
            size_t cap = fuzz_u16(&in) % sizeof frame;
            int eof = 0, was_eof = sendq_eof(&q);
            size_t n = sendq_fill(&q, frame, cap, c.now, &eof);
            FUZZ_ASSERT(n <= cap);
            if (was_eof)
                FUZZ_ASSERT(n == 0 && eof);
            FUZZ_ASSERT(!d.closed || n == 0);
            const char *err = NULL;
            int rc = dispatch_feed(&dn, frame, n, &DOWN, &d, &err);
            FUZZ_ASSERT(rc == DISPATCH_OK || rc == DISPATCH_CLOSED);
            if (q._stage_off == q._stage_len && !d.closed)
                FUZZ_ASSERT(capsule_reader_pending(&dn) == 0 && d.packets == q.tx_packets - base);
            break;
        }
        case 6: /* the clock moves, by up to 65 ms */
            c.now += (uint64_t)fuzz_u16(&in) * 1000u;
            break;
        case 7: {
            uint8_t v[8] = {0};
            size_t n;
            memcpy(v, fuzz_bytes(&in, 8, &n), n);
            sendq_push_ping(&q, v);
            break;
        }
        case 8: { /* finish, with or without a CLOSE */
            uint8_t how = fuzz_u8(&in);
            size_t n;
            const uint8_t *p = fuzz_bytes(&in, fuzz_u8(&in), &n);
            char r[256];
            memcpy(r, p, n);
            r[n] = '\0';
            sendq_finish(&q, how & 1, how >> 1, r);
            break;
        }
        case 9: /* closing: discard what waits */
            sendq_discard(&q);
            break;
        case 10: { /* resume on a new stream: the queues move, the body restarts,
                      and the new peer may take stamps or not */
            uint8_t how = fuzz_u8(&in);
            if (how & 1) {
                sendq_take_queues(&q2, &q);
                sendq_take_queues(&q, &q2);
            }
            sendq_restart(&q);
            q.stamp_media = (how >> 1) & 1;
            capsule_reader_init(&dn, dbuf, sizeof dbuf, sizeof dbuf - CAPSULE_MAX_HEADER);
            d = (down_t){0, 0, q.stamp_media};
            base = q.tx_packets;
            break;
        }
        }
        FUZZ_ASSERT(q.media.bytes <= MEDIA_BYTES && q.signal.bytes <= SIGNAL_BYTES);
        FUZZ_ASSERT(sendq_queued(&q) <= MEDIA_BYTES + SIGNAL_BYTES);
    }
    sendq_dispose(&q);
    sendq_dispose(&q2);
    sendq_dispose(&q); /* idempotent */
    return 0;
}
