/*
 * shim_ring.h — a bounded FIFO of packets in one preallocated byte ring.
 *
 * Each record is a small header (length, enqueue time in ms) followed by the
 * payload, padded to 8 bytes and never split across the ring's end, so a
 * record can be read in place. The ring is allocated on the first push and
 * reused for the queue's life: no allocation per packet.
 *
 * When a push does not fit, the policy decides: SHIM_RING_DROP_OLDEST evicts
 * from the head until it fits (media: a late packet is worth less than a new
 * one), SHIM_RING_REJECT_NEW refuses the packet (signaling: never evict what
 * is queued). Pure data structure: no I/O, no clock of its own.
 */
#ifndef SHIM_RING_H
#define SHIM_RING_H

#include <stddef.h>
#include <stdint.h>

enum shim_ring_policy {
    SHIM_RING_DROP_OLDEST = 0,
    SHIM_RING_REJECT_NEW = 1,
};

enum shim_ring_rc {
    SHIM_RING_OK = 0,
    SHIM_RING_TOO_BIG = -1, /* can never fit: record larger than the ring */
    SHIM_RING_FULL = -2,    /* REJECT_NEW and no room */
    SHIM_RING_NOMEM = -3,   /* the ring could not be allocated */
};

/* Bytes a record of len payload bytes occupies in the ring. */
#define SHIM_RING_HDR 8u
#define SHIM_RING_RECORD(len) ((SHIM_RING_HDR + (size_t)(len) + 7u) & ~(size_t)7u)

typedef struct shim_ring {
    uint8_t *_buf;
    size_t _cap;   /* ring size in bytes, a multiple of 8 */
    size_t _head;  /* offset of the oldest record */
    size_t _tail;  /* offset where the next record goes */
    size_t _wrap;  /* wrapped: records fill [_head, _wrap) then [0, _tail); else 0 */
    size_t bytes;  /* payload bytes queued */
    size_t count;  /* records queued */
    enum shim_ring_policy policy;
} shim_ring_t;

/* Initialises an empty ring of cap bytes (rounded down to a multiple of 8). */
void shim_ring_init(shim_ring_t *r, size_t cap, enum shim_ring_policy policy);

/* Frees the storage; idempotent. The ring may be pushed to again afterwards. */
void shim_ring_dispose(shim_ring_t *r);

/* Appends a copy of p[0..len) stamped now_ms. *dropped (may be NULL) gets the
 * number of records evicted to make room (DROP_OLDEST). Returns a shim_ring_rc;
 * on error the ring is unchanged. */
int shim_ring_push(shim_ring_t *r, const uint8_t *p, size_t len, uint32_t now_ms,
                   size_t *dropped);

/* The oldest record without removing it: returns 0 when empty, else 1 with
 * *p, *len and *ts_ms (each may be NULL) set. *p stays valid until the next
 * push or pop. */
int shim_ring_peek(const shim_ring_t *r, const uint8_t **p, size_t *len, uint32_t *ts_ms);

/* Removes the oldest record; no-op when empty. */
void shim_ring_pop(shim_ring_t *r);

/* Removes records older than max_age_ms at now_ms (wrapping-safe ms clock).
 * Returns how many were removed. */
size_t shim_ring_expire(shim_ring_t *r, uint32_t now_ms, uint32_t max_age_ms);

#endif
