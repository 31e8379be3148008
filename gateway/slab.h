/*
 * slab.h — fixed-size objects (tunnels, connections) carved from 64 KiB
 * slabs mapped outside the malloc heap, so that many of them coming and going
 * does not leave the heap fragmented behind OpenSSL's and nghttp2's
 * allocations, and a slab whose objects are all free goes back to the kernel
 * (munmap) once more than max_empty slabs are empty.
 *
 * An object's slab is found from its address (slabs are aligned to their
 * size): slab_free needs no size and no header per object. Objects come
 * zeroed (calloc semantics). One slab_t per event loop: no locking; an object
 * is freed on the loop that allocated it.
 *
 * A zeroed slab_t (size 0) is valid: slab_alloc and slab_free then fall back
 * to calloc and free, so a harness that never calls slab_init still works.
 * The size must not change while objects are out.
 */
#ifndef SLUICE_SLAB_H
#define SLUICE_SLAB_H

#include <stddef.h>

#define SLAB_BYTES (64u * 1024u)

struct slab_page;

typedef struct slab {
    size_t size;       /* bytes per object (rounded up to 16); 0: calloc/free */
    size_t per_slab;   /* objects in one slab */
    size_t max_empty;  /* empty slabs kept mapped, at most */
    size_t nslabs;     /* slabs mapped now */
    size_t nempty;     /* of which every object is free */
    size_t out;        /* objects handed out and not freed */
    struct slab_page *_avail; /* slabs with a free object (empty ones included) */
} slab_t;

/* An empty slab of size-byte objects keeping at most max_empty empty slabs.
 * size must fit a slab with its header (at most SLAB_BYTES / 4). */
void slab_init(slab_t *s, size_t size, size_t max_empty);

/* A zeroed object of size bytes (at most s->size; a zeroed slab_t takes any
 * size from calloc), or NULL when out of memory or too big. */
void *slab_alloc(slab_t *s, size_t size);

/* Gives back an object slab_alloc returned. NULL is ignored. */
void slab_free(slab_t *s, void *obj);

/* Unmaps every empty slab (objects still out stay valid). */
void slab_trim(slab_t *s);

/* slab_trim; objects still out are the caller's mistake (their slabs stay
 * mapped: nothing is unmapped under a live object). */
void slab_dispose(slab_t *s);

#endif
