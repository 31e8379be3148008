/*
 * uplink.c — uplink queues and capsule packer (see shim_uplink.h).
 */
#include "shim_uplink.h"

#include <stdlib.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "../../proto/classify.h"
#include "sluice_shim.h"

#define STAGE_CAP (CAPSULE_MAX_OVERHEAD + CAPSULE_DEFAULT_MAX_VALUE)
#define EMIT_NOMEM ((size_t)-1)

/* A queue must hold at least one largest packet, or such a packet could
 * never be sent whatever the configured bound. */
static size_t ring_cap(size_t bytes)
{
    size_t min = SHIM_RING_RECORD(SLUICE_MAX_PAYLOAD);
    return bytes < min ? min : bytes;
}

void shim_uplink_init(shim_uplink_t *u, size_t media_bytes, size_t signal_bytes,
                      uint32_t media_max_age_ms)
{
    memset(u, 0, sizeof(*u));
    shim_ring_init(&u->media, ring_cap(media_bytes), SHIM_RING_DROP_OLDEST);
    shim_ring_init(&u->signal, ring_cap(signal_bytes), SHIM_RING_REJECT_NEW);
    u->media_max_age_ms = media_max_age_ms;
}

void shim_uplink_dispose(shim_uplink_t *u)
{
    shim_ring_dispose(&u->media);
    shim_ring_dispose(&u->signal);
    free(u->_stage);
    u->_stage = NULL;
    u->_stage_len = u->_stage_off = 0;
    u->_npongs = 0;
}

int shim_uplink_push(shim_uplink_t *u, const uint8_t *p, size_t len, uint32_t now_ms)
{
    size_t evicted = 0;
    int rc;

    if (u->_finishing)
        return SHIM_UPLINK_ENDED;
    if (len > SLUICE_MAX_PAYLOAD)
        return SHIM_UPLINK_TOO_BIG;
    if (classify_packet(p, len) == PKT_SIGNAL) {
        rc = shim_ring_push(&u->signal, p, len, now_ms, NULL);
        if (rc == SHIM_RING_FULL) {
            u->dropped_signal++;
            return SHIM_UPLINK_FULL;
        }
    } else {
        rc = shim_ring_push(&u->media, p, len, now_ms, &evicted);
        u->dropped_media += evicted;
    }
    if (rc == SHIM_RING_NOMEM)
        return SHIM_UPLINK_NOMEM;
    if (rc == SHIM_RING_TOO_BIG) /* unreachable: ring_cap() makes room */
        return SHIM_UPLINK_TOO_BIG;
    return SHIM_UPLINK_OK;
}

int shim_uplink_push_pong(shim_uplink_t *u, const uint8_t value[8])
{
    if (u->_finishing || u->_npongs == SHIM_UPLINK_MAX_PONGS) {
        u->dropped_pongs++;
        return SHIM_UPLINK_FULL;
    }
    memcpy(u->_pongs[u->_npongs++], value, 8);
    return SHIM_UPLINK_OK;
}

void shim_uplink_finish(shim_uplink_t *u, int send_close, uint64_t code, const char *reason)
{
    if (u->_finishing)
        return;
    u->_finishing = 1;
    u->_send_close = send_close;
    u->_close_code = code;
    u->_close_reason_len = 0;
    if (reason) {
        size_t n = strlen(reason);
        if (n > sizeof(u->_close_reason))
            n = sizeof(u->_close_reason);
        /* Do not cut a UTF-8 sequence: back up over continuation bytes. */
        if (n == sizeof(u->_close_reason))
            while (n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80)
                n--;
        memcpy(u->_close_reason, reason, n);
        u->_close_reason_len = n;
    }
}

void shim_uplink_discard(shim_uplink_t *u)
{
    u->dropped_media += u->media.count;
    u->dropped_signal += u->signal.count;
    u->dropped_pongs += u->_npongs;
    while (u->media.count)
        shim_ring_pop(&u->media);
    while (u->signal.count)
        shim_ring_pop(&u->signal);
    u->_npongs = 0;
}

int shim_uplink_ready(shim_uplink_t *u, uint32_t now_ms)
{
    if (u->_eof)
        return 0;
    if (u->media_max_age_ms)
        u->dropped_media += shim_ring_expire(&u->media, now_ms, u->media_max_age_ms);
    return u->_stage_off < u->_stage_len || u->_npongs || u->signal.count || u->media.count ||
           u->_finishing;
}

int shim_uplink_finishing(const shim_uplink_t *u)
{
    return u->_finishing;
}

int shim_uplink_eof(const shim_uplink_t *u)
{
    return u->_eof;
}

size_t shim_uplink_queued(const shim_uplink_t *u)
{
    return u->media.bytes + u->signal.bytes;
}

/* Writes the capsule head[0..hlen) + body[0..blen) to dst when it fits in
 * room (> 0); otherwise stages it whole and writes its first room bytes.
 * Returns the bytes written to dst, or EMIT_NOMEM (nothing written). */
static size_t emit(shim_uplink_t *u, uint8_t *dst, size_t room, const uint8_t *head,
                   size_t hlen, const uint8_t *body, size_t blen)
{
    size_t total = hlen + blen;

    if (total <= room) {
        memcpy(dst, head, hlen);
        if (blen)
            memcpy(dst + hlen, body, blen);
        return total;
    }
    if (!u->_stage && !(u->_stage = malloc(STAGE_CAP)))
        return EMIT_NOMEM;
    memcpy(u->_stage, head, hlen);
    if (blen)
        memcpy(u->_stage + hlen, body, blen);
    u->_stage_len = total;
    u->_stage_off = room;
    memcpy(dst, u->_stage, room);
    return room;
}

/* Packs the oldest packet of ring q as a capsule of this type. Returns bytes
 * written to dst (0 when q is empty). A packet that cannot be staged for lack
 * of memory is dropped, never half sent. */
static size_t pack_packet(shim_uplink_t *u, shim_ring_t *q, uint64_t type, uint8_t *dst,
                          size_t room, uint64_t *dropped)
{
    uint8_t head[CAPSULE_MAX_OVERHEAD];
    const uint8_t *p;
    size_t len, k;
    ssize_t h;

    if (!shim_ring_peek(q, &p, &len, NULL))
        return 0;
    if (type == CAPSULE_DATAGRAM) {
        /* RFC 9297 §2.1: a DATAGRAM value is a context id then the payload. */
        h = capsule_encode_header(head, sizeof(head) - 1, type, (uint64_t)len + 1);
        if (h > 0)
            head[h++] = 0;
    } else {
        h = capsule_encode_header(head, sizeof(head), type, len);
    }
    k = h > 0 ? emit(u, dst, room, head, (size_t)h, p, len) : EMIT_NOMEM;
    shim_ring_pop(q);
    if (k == EMIT_NOMEM) {
        (*dropped)++;
        return 0;
    }
    u->tx_packets++;
    u->tx_bytes += len;
    return k;
}

size_t shim_uplink_fill(shim_uplink_t *u, uint8_t *dst, size_t cap, uint32_t now_ms, int *eof)
{
    uint8_t head[CAPSULE_MAX_HEADER + 8 + SHIM_UPLINK_REASON_MAX];
    size_t n = 0, k;
    ssize_t h;

    if (u->media_max_age_ms)
        u->dropped_media += shim_ring_expire(&u->media, now_ms, u->media_max_age_ms);
    while (!u->_eof && n < cap) {
        size_t room = cap - n;

        if (u->_stage_off < u->_stage_len) {
            k = u->_stage_len - u->_stage_off;
            if (k > room)
                k = room;
            memcpy(dst + n, u->_stage + u->_stage_off, k);
            u->_stage_off += k;
            n += k;
            if (u->_stage_off == u->_stage_len)
                u->_stage_off = u->_stage_len = 0;
            continue;
        }
        if (u->_npongs) {
            h = capsule_encode(head, sizeof(head), CAPSULE_PONG, u->_pongs[0], 8);
            k = h > 0 ? emit(u, dst + n, room, head, (size_t)h, NULL, 0) : EMIT_NOMEM;
            memmove(u->_pongs[0], u->_pongs[1], --u->_npongs * 8);
            if (k == EMIT_NOMEM)
                u->dropped_pongs++;
            else
                n += k;
            continue;
        }
        if (u->signal.count) {
            n += pack_packet(u, &u->signal, CAPSULE_SIGNAL, dst + n, room, &u->dropped_signal);
            continue;
        }
        if (u->media.count) {
            n += pack_packet(u, &u->media, CAPSULE_DATAGRAM, dst + n, room, &u->dropped_media);
            continue;
        }
        if (!u->_finishing)
            break;
        if (u->_send_close && !u->_close_written) {
            u->_close_written = 1;
            h = capsule_encode_close(head, sizeof(head), u->_close_code, u->_close_reason,
                                     u->_close_reason_len);
            k = h > 0 ? emit(u, dst + n, room, head, (size_t)h, NULL, 0) : EMIT_NOMEM;
            if (k != EMIT_NOMEM)
                n += k;
            continue;
        }
        u->_eof = 1;
    }
    *eof = u->_eof;
    return n;
}
