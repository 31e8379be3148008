/*
 * pktq.c — bounded datagram FIFO in one ring (see pktq.h).
 *
 * Layout. Records start at 8-byte aligned offsets: a 16-byte header (payload
 * length, enqueue time) then the payload, then padding up to the next 8-byte
 * boundary (or the ring's end). A record is never split: when it does not fit
 * between the tail and the ring's end it goes to offset 0 and the end of the
 * valid data is remembered in _wrap. So the queue is in one of two shapes:
 *
 *   flat     (_wrap == 0):  data in [_head, _tail)          free: [_tail, cap) and [0, _head)
 *   wrapped  (_wrap != 0):  data in [_head, _wrap) + [0, _tail)   free: [_tail, _head)
 *
 * _wrap is never 0 when wrapped, since the upper part then holds at least one
 * record, which ends past offset 0. An empty queue resets to offset 0 so the
 * whole ring is one free run again.
 */
#include "pktq.h"

#include <stdlib.h>
#include <string.h>

typedef struct pktq_hdr {
    uint64_t ns;
    uint32_t len;
    uint32_t _pad;
} pktq_hdr_t;

#define HDR sizeof(pktq_hdr_t)
_Static_assert(PKTQ_RECORD_SIZE(0) == HDR, "PKTQ_RECORD_SIZE must match the record header");

/* Offset just past a record of len payload bytes placed at off. */
static size_t rec_end(const pktq_t *q, size_t off, size_t len)
{
    size_t end = (off + HDR + len + 7) & ~(size_t)7;
    return end < q->_cap ? end : q->_cap;
}

static pktq_hdr_t hdr_at(const pktq_t *q, size_t off)
{
    pktq_hdr_t h;
    memcpy(&h, q->_ring + off, sizeof h);
    return h;
}

void pktq_init(pktq_t *q, size_t cap, enum pktq_policy policy)
{
    memset(q, 0, sizeof *q);
    q->_cap = cap;
    q->policy = policy;
}

void pktq_dispose(pktq_t *q)
{
    free(q->_ring);
    q->_ring = NULL;
    q->_head = q->_tail = q->_wrap = q->_reach = 0;
    q->bytes = q->count = 0;
}

/* Where a record of need bytes (header + payload) can start, or (size_t)-1. */
static size_t find_room(const pktq_t *q, size_t need)
{
    if (q->count == 0)
        return 0;
    if (q->_wrap) /* wrapped: only the run between tail and head */
        return q->_tail + need <= q->_head ? q->_tail : (size_t)-1;
    if (q->_tail + need <= q->_cap)
        return q->_tail;
    /* Starting over at 0 needs need <= _head; _head is 8-aligned, so the
     * padded record ends at or before it. */
    return need <= q->_head ? 0 : (size_t)-1;
}

int pktq_push(pktq_t *q, const uint8_t *p, size_t len, uint64_t now_ns, size_t *dropped)
{
    if (dropped)
        *dropped = 0;
    if (q->_cap < HDR || len > q->_cap - HDR || len > UINT32_MAX)
        return PKTQ_ERR_TOO_BIG;
    if (!q->_ring) {
        q->_ring = malloc(q->_cap);
        if (!q->_ring)
            return PKTQ_ERR_NOMEM;
        /* malloc may hand back memory an earlier owner touched: as far as
         * the owner's idle release knows, the whole ring is reached. */
        q->_reach = q->_cap;
    }
    size_t need = HDR + len;
    size_t off = find_room(q, need);
    if (off == (size_t)-1 && q->policy == PKTQ_REJECT_NEW)
        return PKTQ_ERR_FULL;
    /* Evicting everything always makes room: need <= cap was checked above. */
    for (size_t n = 0; off == (size_t)-1; off = find_room(q, need)) {
        pktq_pop(q);
        if (dropped)
            *dropped = ++n;
    }

    pktq_hdr_t h = {.ns = now_ns, .len = (uint32_t)len};
    memcpy(q->_ring + off, &h, sizeof h);
    if (len)
        memcpy(q->_ring + off + HDR, p, len);
    if (q->count && off == 0 && !q->_wrap)
        q->_wrap = q->_tail;
    q->_tail = rec_end(q, off, len);
    if (q->_tail > q->_reach)
        q->_reach = q->_tail;
    q->bytes += len;
    q->count++;
    return PKTQ_OK;
}

int pktq_peek(const pktq_t *q, const uint8_t **p, size_t *len)
{
    if (q->count == 0)
        return 0;
    pktq_hdr_t h = hdr_at(q, q->_head);
    *p = q->_ring + q->_head + HDR;
    *len = h.len;
    return 1;
}

uint64_t pktq_peek_time(const pktq_t *q)
{
    return q->count ? hdr_at(q, q->_head).ns : 0;
}

void pktq_pop(pktq_t *q)
{
    if (q->count == 0)
        return;
    pktq_hdr_t h = hdr_at(q, q->_head);
    q->bytes -= h.len;
    q->count--;
    if (q->count == 0) {
        q->_head = q->_tail = q->_wrap = 0;
        return;
    }
    q->_head = rec_end(q, q->_head, h.len);
    if (q->_wrap && q->_head >= q->_wrap) {
        q->_head = 0;
        q->_wrap = 0;
    }
}

size_t pktq_expire(pktq_t *q, uint64_t min_ns)
{
    size_t n = 0;
    while (q->count && hdr_at(q, q->_head).ns < min_ns) {
        pktq_pop(q);
        n++;
    }
    return n;
}

int pktq_idle_span(pktq_t *q, size_t keep, uint8_t **p, size_t *len)
{
    if (q->count || !q->_ring || q->_reach <= keep)
        return 0;
    *p = q->_ring + keep;
    *len = q->_cap - keep; /* all of it: the reach's last page is partly written too */
    q->_reach = 0;
    return 1;
}
