/*
 * ring.c — bounded packet FIFO (see shim_ring.h).
 *
 * Layout: records occupy [_head, _tail) while the ring has not wrapped. When a
 * record does not fit between _tail and the end but does fit before _head, the
 * ring wraps: _wrap remembers where the upper run ends and writing continues at
 * offset 0, so the records are [_head, _wrap) followed by [0, _tail). A record
 * is never split, so readers get one contiguous pointer.
 */
#include "shim_ring.h"

#include <stdlib.h>
#include <string.h>

#define NO_ROOM ((size_t)-1)

void shim_ring_init(shim_ring_t *r, size_t cap, enum shim_ring_policy policy)
{
    memset(r, 0, sizeof(*r));
    r->_cap = cap & ~(size_t)7u;
    r->policy = policy;
}

void shim_ring_dispose(shim_ring_t *r)
{
    free(r->_buf);
    r->_buf = NULL;
    r->_head = r->_tail = r->_wrap = 0;
    r->bytes = r->count = 0;
}

static void rec_read(const uint8_t *at, uint32_t *len, uint32_t *ts)
{
    memcpy(len, at, 4);
    memcpy(ts, at + 4, 4);
}

/* Where a record of `need` bytes would go, or NO_ROOM. *wraps is set when
 * placing it there starts the lower run at offset 0. */
static size_t ring_find_room(const shim_ring_t *r, size_t need, int *wraps)
{
    *wraps = 0;
    if (r->count == 0)
        return need <= r->_cap ? 0 : NO_ROOM;
    if (r->_wrap == 0) {
        if (r->_cap - r->_tail >= need)
            return r->_tail;
        if (r->_head >= need) {
            *wraps = 1;
            return 0;
        }
        return NO_ROOM;
    }
    return r->_head - r->_tail >= need ? r->_tail : NO_ROOM;
}

int shim_ring_push(shim_ring_t *r, const uint8_t *p, size_t len, uint32_t now_ms,
                   size_t *dropped)
{
    size_t need = SHIM_RING_RECORD(len);
    size_t off, evicted = 0;
    int wraps;

    if (dropped)
        *dropped = 0;
    if (len > UINT32_MAX || need > r->_cap)
        return SHIM_RING_TOO_BIG;
    if (!r->_buf) {
        r->_buf = malloc(r->_cap);
        if (!r->_buf)
            return SHIM_RING_NOMEM;
    }
    while ((off = ring_find_room(r, need, &wraps)) == NO_ROOM) {
        if (r->policy == SHIM_RING_REJECT_NEW)
            return SHIM_RING_FULL;
        shim_ring_pop(r);
        evicted++;
    }
    if (r->count == 0)
        r->_head = r->_tail = r->_wrap = 0;
    if (wraps)
        r->_wrap = r->_tail;

    uint32_t len32 = (uint32_t)len;
    memcpy(r->_buf + off, &len32, 4);
    memcpy(r->_buf + off + 4, &now_ms, 4);
    if (len)
        memcpy(r->_buf + off + SHIM_RING_HDR, p, len);
    r->_tail = off + need;
    r->count++;
    r->bytes += len;
    if (dropped)
        *dropped = evicted;
    return SHIM_RING_OK;
}

int shim_ring_peek(const shim_ring_t *r, const uint8_t **p, size_t *len, uint32_t *ts_ms)
{
    uint32_t l, ts;

    if (r->count == 0)
        return 0;
    rec_read(r->_buf + r->_head, &l, &ts);
    if (p)
        *p = r->_buf + r->_head + SHIM_RING_HDR;
    if (len)
        *len = l;
    if (ts_ms)
        *ts_ms = ts;
    return 1;
}

void shim_ring_pop(shim_ring_t *r)
{
    uint32_t l, ts;

    if (r->count == 0)
        return;
    rec_read(r->_buf + r->_head, &l, &ts);
    r->_head += SHIM_RING_RECORD(l);
    r->count--;
    r->bytes -= l;
    if (r->count == 0)
        r->_head = r->_tail = r->_wrap = 0;
    else if (r->_wrap && r->_head == r->_wrap)
        r->_head = r->_wrap = 0;
}

size_t shim_ring_expire(shim_ring_t *r, uint32_t now_ms, uint32_t max_age_ms)
{
    uint32_t ts;
    size_t n = 0;

    while (shim_ring_peek(r, NULL, NULL, &ts) && (uint32_t)(now_ms - ts) > max_age_ms) {
        shim_ring_pop(r);
        n++;
    }
    return n;
}
