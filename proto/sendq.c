/* sendq.c — see sendq.h. */
#include "sendq.h"

#include <stdlib.h>
#include <string.h>

#include "capsule.h"
#include "classify.h"

#define EMIT_NOMEM ((size_t)-1)

static void drop(sendq_t *q, enum sendq_drop why, uint64_t n)
{
    if (!n)
        return;
    q->drops[why] += n;
    if (q->on_drop)
        q->on_drop(q->ctx, why, n);
}

void sendq_init(sendq_t *q, size_t media_bytes, size_t signal_bytes, size_t max_payload,
                uint64_t media_max_age_ns, sendq_drop_cb on_drop, void *ctx)
{
    memset(q, 0, sizeof *q);
    pktq_init(&q->media, media_bytes, PKTQ_DROP_OLDEST);
    pktq_init(&q->signal, signal_bytes, PKTQ_REJECT_NEW);
    q->max_payload = max_payload;
    q->media_max_age_ns = media_max_age_ns;
    q->on_drop = on_drop;
    q->ctx = ctx;
}

void sendq_dispose(sendq_t *q)
{
    pktq_dispose(&q->media);
    pktq_dispose(&q->signal);
    free(q->_stage);
    q->_stage = NULL;
    q->_stage_len = q->_stage_off = 0;
    q->_npongs = 0;
}

int sendq_push(sendq_t *q, const uint8_t *p, size_t len, uint64_t now_ns)
{
    if (q->_finishing) {
        drop(q, SENDQ_DROP_DISCARDED, 1);
        return SENDQ_ENDED;
    }
    if (len > q->max_payload) {
        drop(q, SENDQ_DROP_TOO_BIG, 1);
        return SENDQ_TOO_BIG;
    }
    int sig = classify_packet(p, len) == PKT_SIGNAL;
    size_t evicted = 0;
    int rc = pktq_push(sig ? &q->signal : &q->media, p, len, now_ns, &evicted);
    drop(q, SENDQ_DROP_MEDIA_EVICTED, evicted);
    switch (rc) {
    case PKTQ_OK:
        return SENDQ_OK;
    case PKTQ_ERR_FULL:
        drop(q, SENDQ_DROP_SIGNAL_FULL, 1);
        return SENDQ_FULL;
    case PKTQ_ERR_TOO_BIG:
        drop(q, SENDQ_DROP_TOO_BIG, 1);
        return SENDQ_TOO_BIG;
    default:
        drop(q, SENDQ_DROP_NOMEM, 1);
        return SENDQ_NOMEM;
    }
}

int sendq_push_pong(sendq_t *q, const uint8_t value[8])
{
    if (q->_finishing || q->_npongs == SENDQ_MAX_PONGS) {
        drop(q, SENDQ_DROP_PONG_FULL, 1);
        return SENDQ_FULL;
    }
    memcpy(q->_pongs[q->_npongs++], value, 8);
    return SENDQ_OK;
}

int sendq_push_ping(sendq_t *q, const uint8_t value[8])
{
    if (q->_finishing)
        return SENDQ_ENDED;
    memcpy(q->_ping, value, 8);
    q->_has_ping = 1;
    return SENDQ_OK;
}

void sendq_take_queues(sendq_t *dst, sendq_t *src)
{
    pktq_dispose(&dst->media);
    pktq_dispose(&dst->signal);
    dst->media = src->media;
    dst->signal = src->signal;
    pktq_init(&src->media, src->media._cap, PKTQ_DROP_OLDEST);
    pktq_init(&src->signal, src->signal._cap, PKTQ_REJECT_NEW);
}

void sendq_restart(sendq_t *q)
{
    q->_stage_len = q->_stage_off = 0;
    q->_npongs = 0;
    q->_has_ping = 0;
    q->_finishing = q->_send_close = q->_close_written = q->_eof = 0;
    q->_close_reason_len = 0;
}

void sendq_finish(sendq_t *q, int send_close, uint64_t code, const char *reason)
{
    if (q->_finishing)
        return;
    q->_finishing = 1;
    q->_send_close = send_close ? 1 : 0;
    q->_close_code = code;
    q->_close_reason_len = 0;
    if (reason) {
        size_t n = strlen(reason);
        if (n > sizeof q->_close_reason) {
            n = sizeof q->_close_reason;
            /* Do not cut a UTF-8 sequence: back up over continuation bytes. */
            while (n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80)
                n--;
        }
        memcpy(q->_close_reason, reason, n);
        q->_close_reason_len = n;
    }
}

void sendq_discard(sendq_t *q)
{
    drop(q, SENDQ_DROP_DISCARDED, q->media.count + q->signal.count + q->_npongs);
    while (q->media.count)
        pktq_pop(&q->media);
    while (q->signal.count)
        pktq_pop(&q->signal);
    q->_npongs = 0;
    q->_has_ping = 0;
}

static void expire(sendq_t *q, uint64_t now_ns)
{
    if (q->media_max_age_ns && q->media.count && now_ns > q->media_max_age_ns)
        drop(q, SENDQ_DROP_MEDIA_EXPIRED, pktq_expire(&q->media, now_ns - q->media_max_age_ns));
}

int sendq_ready(sendq_t *q, uint64_t now_ns)
{
    if (q->_eof)
        return 0;
    expire(q, now_ns);
    return q->_stage_off < q->_stage_len || q->_npongs || q->_has_ping || q->signal.count ||
           q->media.count ||
           q->_finishing;
}

/* Writes the capsule head[0..hlen) + body[0..blen) to dst when it fits in
 * room (> 0); otherwise stages it whole and writes its first room bytes.
 * Returns the bytes written to dst, or EMIT_NOMEM (nothing written). */
static size_t emit(sendq_t *q, uint8_t *dst, size_t room, const uint8_t *head, size_t hlen,
                   const uint8_t *body, size_t blen)
{
    size_t total = hlen + blen;
    if (total <= room) {
        memcpy(dst, head, hlen);
        if (blen)
            memcpy(dst + hlen, body, blen);
        return total;
    }
    /* The largest capsule: a max_payload DATAGRAM, or a CLOSE with its reason. */
    if (!q->_stage &&
        !(q->_stage = malloc(CAPSULE_MAX_OVERHEAD + q->max_payload + 8 + SENDQ_REASON_MAX)))
        return EMIT_NOMEM;
    memcpy(q->_stage, head, hlen);
    if (blen)
        memcpy(q->_stage + hlen, body, blen);
    q->_stage_len = total;
    q->_stage_off = room;
    memcpy(dst, q->_stage, room);
    return room;
}

/* Packs the oldest packet of pq as a capsule of this type. Returns bytes
 * written to dst (0 when pq is empty). A packet that cannot be staged for lack
 * of memory is dropped, never half sent. */
static size_t pack_packet(sendq_t *q, pktq_t *pq, uint64_t type, uint8_t *dst, size_t room,
                          uint64_t now_ns)
{
    uint8_t head[CAPSULE_MAX_OVERHEAD];
    const uint8_t *p;
    size_t len;
    ssize_t h;
    if (!pktq_peek(pq, &p, &len))
        return 0;
    uint64_t queued = pktq_peek_time(pq);
    if (type == CAPSULE_DATAGRAM) {
        /* RFC 9297 §2.1: a DATAGRAM value is a context id, then the payload;
         * stamped (context id 2), the time it was queued comes first. */
        uint8_t pre[1 + CAPSULE_STAMP_LEN];
        size_t n = capsule_datagram_prefix(pre, q->stamp_media, (uint32_t)(queued / 1000u));
        h = capsule_encode_header(head, sizeof head - n, type, (uint64_t)len + n);
        if (h > 0) {
            memcpy(head + h, pre, n);
            h += (ssize_t)n;
        }
    } else {
        h = capsule_encode_header(head, sizeof head, type, len);
    }
    size_t k = h > 0 ? emit(q, dst, room, head, (size_t)h, p, len) : EMIT_NOMEM;
    pktq_pop(pq);
    if (k == EMIT_NOMEM) {
        drop(q, SENDQ_DROP_NOMEM, 1);
        return 0;
    }
    q->tx_packets++;
    q->tx_bytes += len;
    if (q->on_sent)
        q->on_sent(q->ctx, now_ns > queued ? now_ns - queued : 0);
    return k;
}

size_t sendq_fill(sendq_t *q, uint8_t *dst, size_t cap, uint64_t now_ns, int *eof)
{
    uint8_t head[CAPSULE_MAX_HEADER + 8 + SENDQ_REASON_MAX];
    size_t n = 0, k;
    ssize_t h;

    expire(q, now_ns);
    while (!q->_eof && n < cap) {
        size_t room = cap - n;
        if (q->_stage_off < q->_stage_len) {
            k = q->_stage_len - q->_stage_off;
            if (k > room)
                k = room;
            memcpy(dst + n, q->_stage + q->_stage_off, k);
            q->_stage_off += k;
            n += k;
            if (q->_stage_off == q->_stage_len)
                q->_stage_off = q->_stage_len = 0;
            continue;
        }
        if (q->_npongs) {
            h = capsule_encode(head, sizeof head, CAPSULE_PONG, q->_pongs[0], 8);
            k = h > 0 ? emit(q, dst + n, room, head, (size_t)h, NULL, 0) : EMIT_NOMEM;
            memmove(q->_pongs[0], q->_pongs[1], --q->_npongs * 8);
            if (k == EMIT_NOMEM)
                drop(q, SENDQ_DROP_PONG_FULL, 1);
            else
                n += k;
            continue;
        }
        if (q->_has_ping) {
            q->_has_ping = 0;
            h = capsule_encode(head, sizeof head, CAPSULE_PING, q->_ping, 8);
            k = h > 0 ? emit(q, dst + n, room, head, (size_t)h, NULL, 0) : EMIT_NOMEM;
            if (k != EMIT_NOMEM)
                n += k;
            continue;
        }
        if (q->signal.count) {
            n += pack_packet(q, &q->signal, CAPSULE_SIGNAL, dst + n, room, now_ns);
            continue;
        }
        if (q->media.count) {
            n += pack_packet(q, &q->media, CAPSULE_DATAGRAM, dst + n, room, now_ns);
            continue;
        }
        if (!q->_finishing)
            break;
        if (q->_send_close && !q->_close_written) {
            q->_close_written = 1;
            h = capsule_encode_close(head, sizeof head, q->_close_code, q->_close_reason,
                                     q->_close_reason_len);
            k = h > 0 ? emit(q, dst + n, room, head, (size_t)h, NULL, 0) : EMIT_NOMEM;
            if (k != EMIT_NOMEM)
                n += k;
            continue;
        }
        q->_eof = 1;
    }
    *eof = q->_eof;
    return n;
}
