/*
 * pool.h — a bounded cache of equal-size buffers, pure (malloc and free only).
 *
 * Buffers that many objects need only now and then (a tunnel's capsule
 * reassembly buffer, which exists only while a capsule is split across DATA
 * chunks) come from here: a buffer put back is kept for the next get, up to
 * max_free of them, so a steady load reuses the same few buffers and makes
 * no allocation per packet; beyond max_free a buffer is freed at once, so an
 * idle gateway holds at most max_free * size bytes here, and none after
 * pool_trim.
 *
 * The size may grow (pool_grow): buffers handed out before keep their old
 * size, and pool_put frees a buffer whose size is not the pool's. One pool
 * per event loop: no locking.
 *
 * A zeroed pool_t is a valid, empty pool of size 0 that keeps nothing
 * (pool_grow sets both).
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stddef.h>

typedef struct pool {
    size_t size;     /* bytes per buffer */
    size_t max_free; /* buffers kept for reuse, at most */
    size_t nfree;    /* buffers kept now */
    size_t out;      /* buffers handed out and not put back */
    void *_free;     /* the kept buffers, linked through their first bytes */
} pool_t;

/* An empty pool of size-byte buffers keeping at most max_free of them.
 * size is raised to sizeof(void *) at least. */
void pool_init(pool_t *p, size_t size, size_t max_free);

/* Makes the pool's buffers at least size bytes: a larger size drops every
 * kept buffer (they are too small) and is taken; a smaller one changes
 * nothing. */
void pool_grow(pool_t *p, size_t size);

/* A buffer of p->size bytes (contents undefined), kept or new; NULL when out
 * of memory. The caller owns it until pool_put. */
void *pool_get(pool_t *p);

/* Gives back a buffer pool_get returned when the pool's size was size (the
 * caller remembers it). Kept when there is room and the size is still the
 * pool's; freed otherwise. NULL is ignored. */
void pool_put(pool_t *p, void *buf, size_t size);

/* Frees every kept buffer (handed-out ones stay valid). */
void pool_trim(pool_t *p);

/* pool_trim; the pool may be used again (or pool_init'ed). Buffers still out
 * may be put back afterwards: they are freed or kept as usual. */
void pool_dispose(pool_t *p);

#endif
