/*
 * sendq.h — the send side of a tunnel: bounded queues of UDP payloads and the
 * packer that turns them into the capsule byte stream of an HTTP/2 body
 * (RFC 9297 §3.2). The gateway uses one per tunnel for the downlink (response
 * body), the shim one per tunnel for the uplink (request body).
 *
 * Classes (RFC 7983 via classify.h): signaling (STUN, DTLS) waits in a queue
 * that never evicts — a packet over its bound is refused and counted; media
 * waits in a queue that evicts the oldest packet to make room and drops what
 * is older than the age limit, because a late packet is worse than a lost one.
 *
 * Order on the wire: the rest of a capsule already started, PONGs, a PING,
 * signaling, media, then — once sendq_finish was called and everything queued is out —
 * an optional CLOSE and the end of the body. A capsule that does not fit the
 * DATA frame being filled is staged whole and continued in the next frames, so
 * eviction can never tear a capsule. The staging buffer is allocated once, on
 * first need; the queue rings once, on their first packet.
 *
 * Pure: no I/O; time comes in as nanoseconds from the caller's clock.
 */
#ifndef SLUICE_SENDQ_H
#define SLUICE_SENDQ_H

#include <stddef.h>
#include <stdint.h>

#include "pktq.h"

/* PONGs waiting at most: a PING flood must not grow memory. */
#define SENDQ_MAX_PONGS 8u
#define SENDQ_REASON_MAX 128u

enum sendq_rc {
    SENDQ_OK = 0,
    SENDQ_TOO_BIG = -1, /* payload over max_payload, or over a whole queue */
    SENDQ_FULL = -2,    /* signaling queue (or PONG slots) full; dropped */
    SENDQ_NOMEM = -3,   /* storage could not be allocated; dropped */
    SENDQ_ENDED = -4,   /* sendq_finish was called; dropped */
};

/* Why packets were not sent; counted in sendq_t.drops and reported to on_drop. */
enum sendq_drop {
    SENDQ_DROP_MEDIA_EVICTED = 0, /* oldest media evicted for a newer packet */
    SENDQ_DROP_MEDIA_EXPIRED,     /* media older than the age limit */
    SENDQ_DROP_SIGNAL_FULL,       /* signaling over its queue's bound */
    SENDQ_DROP_PONG_FULL,         /* more unanswered PINGs than PONG slots */
    SENDQ_DROP_TOO_BIG,           /* payload that can never be queued */
    SENDQ_DROP_DISCARDED,         /* thrown away by sendq_discard (closing) */
    SENDQ_DROP_NOMEM,             /* no memory for the ring or the staging buffer */
    SENDQ_DROP_COUNT
};

typedef void (*sendq_drop_cb)(void *ctx, enum sendq_drop why, uint64_t n);
/* A queued packet was written into the body after waiting waited_ns. */
typedef void (*sendq_sent_cb)(void *ctx, uint64_t waited_ns);

typedef struct sendq {
    pktq_t media, signal;
    size_t max_payload;        /* largest UDP payload accepted */
    uint64_t media_max_age_ns; /* 0: no age limit */
    /* 1: media goes out as stamped DATAGRAMs (context id 2, proto/README.md
     * §5.1.1) carrying the time it was queued, in microseconds of the
     * caller's clock; set once the peer accepted stamps. */
    unsigned stamp_media : 1;
    sendq_drop_cb on_drop;     /* may be NULL */
    sendq_sent_cb on_sent;     /* may be NULL; set after sendq_init (same ctx) */
    void *ctx;
    uint64_t tx_packets, tx_bytes;  /* payloads written into the body */
    uint64_t drops[SENDQ_DROP_COUNT];

    uint8_t _pongs[SENDQ_MAX_PONGS][8];
    size_t _npongs;
    uint8_t _ping[8];              /* the PING to send, when _has_ping */
    uint8_t *_stage;               /* one capsule being written across frames */
    size_t _stage_len, _stage_off;
    unsigned _finishing : 1, _send_close : 1, _close_written : 1, _eof : 1, _has_ping : 1;
    uint64_t _close_code;
    char _close_reason[SENDQ_REASON_MAX];
    size_t _close_reason_len;
} sendq_t;

/* Initialises empty queues of the given byte bounds. on_drop (may be NULL) is
 * told about every drop as it happens, with ctx. */
void sendq_init(sendq_t *q, size_t media_bytes, size_t signal_bytes, size_t max_payload,
                uint64_t media_max_age_ns, sendq_drop_cb on_drop, void *ctx);

/* Frees the rings and the staging buffer; idempotent. */
void sendq_dispose(sendq_t *q);

/* Queues a payload in the class classify_packet() gives it. Returns SENDQ_OK
 * (older media may have been evicted, and counted) or a negative sendq_rc (the
 * packet was dropped and counted). */
int sendq_push(sendq_t *q, const uint8_t *p, size_t len, uint64_t now_ns);

/* Queues a PONG echoing an 8-byte PING value. Returns SENDQ_OK or SENDQ_FULL. */
int sendq_push_pong(sendq_t *q, const uint8_t value[8]);

/* Queues a PING capsule with this 8-byte value (one slot: a PING not yet
 * written is replaced by the newer one, whose answer is the one awaited).
 * Returns SENDQ_OK or SENDQ_ENDED (sendq_finish was called). */
int sendq_push_ping(sendq_t *q, const uint8_t value[8]);

/* Moves every queued packet (both classes, with their queue bounds and
 * enqueue times) from src to dst, whose own queues are emptied first (not
 * counted: they are expected empty). What belongs to src's byte stream stays
 * with src: a capsule partly written, PONGs, the PING, the end. src is left
 * with empty queues of the same bounds. Used when a flow moves to another
 * stream (session resume) so that dst's body starts on a capsule boundary. */
void sendq_take_queues(sendq_t *dst, sendq_t *src);

/* Starts a new body (the same session on a new stream): a capsule partly
 * written and the PONGs and PING (which answered the old stream) are
 * dropped, the finish is undone; queued packets and counters stay. */
void sendq_restart(sendq_t *q);

/* Ends the body after what is queued: with send_close, a CLOSE(code, reason)
 * capsule goes last (reason cut to SENDQ_REASON_MAX bytes on a UTF-8
 * boundary). Later pushes return SENDQ_ENDED. The first call wins. */
void sendq_finish(sendq_t *q, int send_close, uint64_t code, const char *reason);

/* Drops every queued packet and PONG (counted as SENDQ_DROP_DISCARDED). A
 * capsule already partly written is kept, so the stream stays well formed. */
void sendq_discard(sendq_t *q);

/* 1 when sendq_fill would produce bytes or the end of the body. */
int sendq_ready(sendq_t *q, uint64_t now_ns);

/* Writes up to cap bytes of capsule stream into dst. Returns the byte count
 * (0 when there is nothing to send) and sets *eof to 1 once the body is
 * complete (everything written, sendq_finish called); afterwards it returns 0
 * with *eof = 1. */
size_t sendq_fill(sendq_t *q, uint8_t *dst, size_t cap, uint64_t now_ns, int *eof);

static inline int sendq_finishing(const sendq_t *q)
{
    return q->_finishing;
}

static inline int sendq_eof(const sendq_t *q)
{
    return q->_eof;
}

/* Payload bytes queued (both classes). */
static inline size_t sendq_queued(const sendq_t *q)
{
    return q->media.bytes + q->signal.bytes;
}

#endif
