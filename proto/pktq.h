/*
 * pktq.h — a bounded FIFO of datagrams, bounded in bytes and, for media, in age.
 *
 * Storage is one ring of `cap` bytes, allocated on the first push and reused
 * for the queue's life: no allocation per packet. A record is a small header
 * (length, enqueue time) followed by the payload, never split across the ring's
 * end. When a push does not fit, the policy decides: PKTQ_DROP_OLDEST removes
 * records from the head until it fits (media: a late packet is worse than a
 * lost one); PKTQ_REJECT_NEW refuses the new packet and leaves the queue as it
 * is (signaling: never evict what is already queued). Every drop is reported to
 * the caller through the return value / out counts so it can be counted.
 *
 * Pure data structure shared by the gateway and the shim (through sendq.h):
 * no I/O and no clock of its own; its one allocation is the ring.
 */
#ifndef SLUICE_PKTQ_H
#define SLUICE_PKTQ_H

#include <stddef.h>
#include <stdint.h>

enum pktq_policy {
    PKTQ_DROP_OLDEST = 0,
    PKTQ_REJECT_NEW = 1,
};

enum pktq_rc {
    PKTQ_OK = 0,
    PKTQ_ERR_TOO_BIG = -1, /* the packet can never fit (len + header > cap) */
    PKTQ_ERR_FULL = -2,    /* PKTQ_REJECT_NEW and no room */
    PKTQ_ERR_NOMEM = -3,   /* the ring could not be allocated */
};

/* Ring bytes one record of len payload bytes takes (header and padding). */
#define PKTQ_RECORD_SIZE(len) ((16u + (size_t)(len) + 7u) & ~(size_t)7u)

typedef struct pktq {
    uint8_t *_ring;
    size_t _cap;
    size_t _head;  /* offset of the oldest record */
    size_t _tail;  /* offset where the next record goes */
    size_t _wrap;  /* when the tail wrapped: end of valid data before offset 0, else 0 */
    size_t _reach; /* furthest ring offset written since pktq_idle_span last answered
                      (all of a ring just allocated: its pages may be resident) */
    size_t bytes;  /* payload bytes queued */
    size_t count;  /* packets queued */
    enum pktq_policy policy;
} pktq_t;

/* Initialises an empty queue; the ring is allocated lazily on the first push. */
void pktq_init(pktq_t *q, size_t cap, enum pktq_policy policy);

/* Frees the ring; idempotent. */
void pktq_dispose(pktq_t *q);

/* Appends a packet stamped with now_ns. With PKTQ_DROP_OLDEST, *dropped (may be
 * NULL) gets the number of packets evicted to make room. Returns a pktq_rc. */
int pktq_push(pktq_t *q, const uint8_t *p, size_t len, uint64_t now_ns, size_t *dropped);

/* Drops packets queued before min_ns (age limit). Returns how many. */
size_t pktq_expire(pktq_t *q, uint64_t min_ns);

/* Oldest packet without removing it; returns 0 when empty, 1 with *p, *len set
 * (valid until the next push, pop, expire or dispose; *p may be NULL when
 * *len is 0). */
int pktq_peek(const pktq_t *q, const uint8_t **p, size_t *len);

/* When the oldest packet was queued (its now_ns); 0 when empty. */
uint64_t pktq_peek_time(const pktq_t *q);

/* Removes the oldest packet (no-op when empty). */
void pktq_pop(pktq_t *q);

/* The part of the ring an empty queue does not need. An empty queue writes
 * its next record at offset 0, so the ring beyond keep bytes holds nothing.
 * When the queue is empty and records have reached past keep since the last
 * call, or the ring was allocated since (malloc may reuse memory another
 * owner made resident), returns 1 with *p and *len set to the ring from keep
 * to its end, and forgets the reach: the owner may give those pages back to
 * the system (the queue only reads what it wrote after). Otherwise (nothing
 * went that far, or packets are queued) returns 0. */
int pktq_idle_span(pktq_t *q, size_t keep, uint8_t **p, size_t *len);

#endif
