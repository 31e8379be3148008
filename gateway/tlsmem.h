/*
 * tlsmem.h — OpenSSL's small blocks from a free list per thread, so that a
 * relayed packet allocates nothing.
 *
 * OpenSSL 3.0 allocates a 40-byte block (a WPACKET sub-packet header,
 * crypto/packet.c) to build a record's header and its AEAD additional data:
 * one per record read and three per record written, the only allocations
 * left on sluiced's packet path (docs/benchmarks.md, "OpenSSL's blocks per
 * record"). Installed through CRYPTO_set_mem_functions, this allocator keeps
 * up to TLSMEM_KEEP freed blocks of up to TLSMEM_SMALL bytes on a list of the
 * thread that freed them and hands them out again; everything else is
 * malloc, realloc and free as before. Every block is an ordinary malloc
 * block, so memory allocated on one side and freed on the other stays
 * correct.
 */
#ifndef SLUICE_TLSMEM_H
#define SLUICE_TLSMEM_H

#include <stdint.h>

/* Requests of up to this many bytes are served from the list (and a block
 * taken from malloc for one is this large, so that any listed block fits
 * any such request). */
#define TLSMEM_SMALL 64u

/* Freed small blocks a thread keeps; more go back to malloc. OpenSSL frees
 * each block within the call that took it (two or three live at a time), so
 * a few suffice; and few are kept because, like glibc's per-thread cache
 * (heap.h), each listed block keeps its heap page from malloc_trim. */
#define TLSMEM_KEEP 16u

typedef struct tlsmem_stats {
    uint64_t heap;   /* requests malloc or realloc served */
    uint64_t reused; /* small requests served from the list */
    unsigned listed; /* blocks on the list now */
} tlsmem_stats_t;

/* Gives OpenSSL this allocator. Call before anything uses OpenSSL: once it
 * has allocated, its functions can no longer be replaced. Returns 1 when
 * installed; 0 when not (a sanitizer's malloc serves the process and should
 * see every block, or OpenSSL has allocated already; OpenSSL then uses
 * malloc as before). */
int tlsmem_install(void);

/* Whether tlsmem_install installed the allocator. */
int tlsmem_installed(void);

/* The calling thread's counts. */
void tlsmem_stats(tlsmem_stats_t *out);

#endif
