/*
 * h2mem.h — the memory a connection's nghttp2 session allocates.
 *
 * nghttp2 1.52 gives every session a 16 KiB frame buffer (one frame of the
 * largest size, plus its header) that stays until the session ends: two
 * thirds of the session and about 40 % of an idle TLS connection. From the
 * heap, its pages are resident once any earlier allocation touched them. This
 * allocator takes that one large block from its own mapping instead, so that
 * only the pages frames were written to are resident, and h2mem_release can
 * give them all back when the connection is quiet (the block stays mapped
 * and reads as zeros until the next frame). Everything else goes to malloc,
 * and so does the block when it cannot be mapped.
 */
#ifndef SLUICE_H2MEM_H
#define SLUICE_H2MEM_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

/* Requests of at least this many bytes are mapped, one block per session at
 * a time. */
#define H2MEM_MAP_MIN 16384u

/* At most this many blocks are mapped in the process; beyond, malloc serves
 * them. Each mapping may be one entry of the kernel's vm.max_map_count
 * (65,530 by default) when its neighbours have gone. */
#define H2MEM_MAX_BLOCKS 16384u

typedef struct h2mem {
    void *block; /* the mapped block, or NULL */
    size_t cap;  /* its usable bytes (a multiple of the page size) */
} h2mem_t;

/* Fills *mem with callbacks that allocate for one session from m (zeroed by
 * the caller). Pass mem to nghttp2_session_server_new3, which copies it. */
void h2mem_init(h2mem_t *m, nghttp2_mem *mem);

/* Gives the block's pages back to the kernel; the block stays mapped and
 * reads as zeros. Only while the session holds no frame in it: nothing to
 * send (nghttp2_session_want_write is 0) and everything it returned from
 * nghttp2_session_mem_send consumed. Returns 1 when there was a block. */
int h2mem_release(h2mem_t *m);

/* Blocks mapped in the process now. */
unsigned h2mem_mapped(void);

/* Resident bytes of the block (mincore), for tests and benchmarks. */
size_t h2mem_resident(const h2mem_t *m);

#endif
