/*
 * shim_uplink.h — a tunnel's uplink: the queues of UDP payloads waiting to
 * go to the gateway and the packer that turns them into the capsule byte
 * stream of the request body (RFC 9297 §3.2).
 *
 * Order on the wire: the rest of a capsule already started, then PONGs, then
 * signaling (STUN, DTLS), then media (RFC 7983 classes, proto/classify.h),
 * then, once everything queued is out, the final CLOSE. Capsules are packed
 * whole into a DATA frame when they fit; one that does not (small frame or
 * flow-control window) is copied to a staging buffer and continued in the
 * next frames, so a queue's eviction can never tear a capsule. The staging
 * buffer is allocated once, on first need.
 *
 * Pure: no I/O. Time comes in as a millisecond clock for the media age limit.
 */
#ifndef SHIM_UPLINK_H
#define SHIM_UPLINK_H

#include <stddef.h>
#include <stdint.h>

#include "shim_ring.h"

/* PONGs waiting at most; more PINGs than this before we can answer are not
 * answered (a PING flood must not grow memory). */
#define SHIM_UPLINK_MAX_PONGS 8u
#define SHIM_UPLINK_REASON_MAX 128u

enum shim_uplink_rc {
    SHIM_UPLINK_OK = 0,
    SHIM_UPLINK_TOO_BIG = -1, /* payload longer than SLUICE_MAX_PAYLOAD */
    SHIM_UPLINK_FULL = -2,    /* signaling queue full; the packet is dropped */
    SHIM_UPLINK_NOMEM = -3,
    SHIM_UPLINK_ENDED = -4,   /* shim_uplink_finish was called */
};

typedef struct shim_uplink {
    shim_ring_t media;
    shim_ring_t signal;
    uint8_t _pongs[SHIM_UPLINK_MAX_PONGS][8];
    size_t _npongs;
    uint8_t *_stage;      /* one capsule being written across frames */
    size_t _stage_len, _stage_off;
    uint32_t media_max_age_ms; /* 0: no age limit */
    /* Ending: after the queues drain, an optional CLOSE, then end of body. */
    int _finishing;
    int _send_close;
    int _close_written;
    int _eof;
    uint64_t _close_code;
    char _close_reason[SHIM_UPLINK_REASON_MAX];
    size_t _close_reason_len;
    /* Counters. */
    uint64_t tx_packets, tx_bytes;
    uint64_t dropped_media, dropped_signal, dropped_pongs;
} shim_uplink_t;

/* Initialises empty queues; ring storage comes on the first packet. Each queue
 * is made large enough for one SLUICE_MAX_PAYLOAD packet whatever the bound. */
void shim_uplink_init(shim_uplink_t *u, size_t media_bytes, size_t signal_bytes,
                      uint32_t media_max_age_ms);

/* Frees queues and the staging buffer; idempotent. */
void shim_uplink_dispose(shim_uplink_t *u);

/* Queues a payload in the class classify_packet() gives it. Returns
 * SHIM_UPLINK_OK (older media may have been evicted: dropped_media counts
 * it), SHIM_UPLINK_FULL (signaling, counted in dropped_signal),
 * SHIM_UPLINK_TOO_BIG, SHIM_UPLINK_NOMEM or SHIM_UPLINK_ENDED. */
int shim_uplink_push(shim_uplink_t *u, const uint8_t *p, size_t len, uint32_t now_ms);

/* Queues a PONG echoing an 8-byte PING value. Returns SHIM_UPLINK_OK or
 * SHIM_UPLINK_FULL (too many unanswered PINGs; counted in dropped_pongs). */
int shim_uplink_push_pong(shim_uplink_t *u, const uint8_t value[8]);

/* Ends the body after what is queued: with send_close, a CLOSE(code, reason)
 * capsule goes last (reason truncated to SHIM_UPLINK_REASON_MAX bytes).
 * Further pushes return SHIM_UPLINK_ENDED. Idempotent: the first call wins. */
void shim_uplink_finish(shim_uplink_t *u, int send_close, uint64_t code, const char *reason);

/* Drops every queued packet and PONG (counted as dropped). A capsule already
 * partly written is kept so the stream stays well formed. */
void shim_uplink_discard(shim_uplink_t *u);

/* 1 when shim_uplink_fill would produce bytes or the end of the body. */
int shim_uplink_ready(shim_uplink_t *u, uint32_t now_ms);

/* Writes up to cap bytes of capsule stream into dst. Returns the byte count
 * (0 when there is nothing to send) and sets *eof to 1 once the body is
 * complete (everything written, shim_uplink_finish called); afterwards it
 * returns 0 with *eof = 1. */
size_t shim_uplink_fill(shim_uplink_t *u, uint8_t *dst, size_t cap, uint32_t now_ms, int *eof);

/* 1 once shim_uplink_finish was called. */
int shim_uplink_finishing(const shim_uplink_t *u);

/* 1 once fill has reported the end of the body. */
int shim_uplink_eof(const shim_uplink_t *u);

/* Payload bytes queued (both classes). */
size_t shim_uplink_queued(const shim_uplink_t *u);

#endif
