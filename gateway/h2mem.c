/*
 * h2mem.c — one session's allocator: the large frame buffer mapped, the rest
 * from malloc (h2mem.h).
 */
#include "h2mem.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "heap.h"

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Blocks mapped in the process, all loops together. */
static atomic_uint mapped;

/* A fresh zeroed mapping of at least n bytes as m's block; NULL when
 * H2MEM_MAX_BLOCKS are mapped or mmap fails. */
static void *block_map(h2mem_t *m, size_t n)
{
    if (atomic_fetch_add_explicit(&mapped, 1, memory_order_relaxed) >= H2MEM_MAX_BLOCKS) {
        atomic_fetch_sub_explicit(&mapped, 1, memory_order_relaxed);
        return NULL;
    }
    size_t cap = (n + page_size() - 1) & ~(page_size() - 1);
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        atomic_fetch_sub_explicit(&mapped, 1, memory_order_relaxed);
        return NULL;
    }
    m->block = p;
    m->cap = cap;
    return p;
}

/* Unmaps block p of cap bytes (m's, or the one it just replaced). */
static void block_unmap(void *p, size_t cap)
{
    munmap(p, cap);
    atomic_fetch_sub_explicit(&mapped, 1, memory_order_relaxed);
}

/* Whether a request of n bytes gets the block (when mapping fails, malloc
 * serves it, untracked, as any other). */
static int wants_block(const h2mem_t *m, size_t n)
{
    return n >= H2MEM_MAP_MIN && !m->block;
}

static void *mem_malloc(size_t n, void *ud)
{
    h2mem_t *m = ud;
    void *p = wants_block(m, n) ? block_map(m, n) : NULL;
    return p ? p : malloc(n);
}

static void mem_free(void *p, void *ud)
{
    h2mem_t *m = ud;
    if (p && p == m->block) {
        block_unmap(m->block, m->cap);
        m->block = NULL;
        m->cap = 0;
    } else {
        free(p);
    }
}

static void *mem_calloc(size_t nmemb, size_t size, void *ud)
{
    h2mem_t *m = ud;
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    void *p = wants_block(m, nmemb * size) ? block_map(m, nmemb * size) : NULL;
    return p ? p : calloc(nmemb, size);
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    h2mem_t *m = ud;
    if (!p)
        return mem_malloc(n, ud);
    if (!n) {
        mem_free(p, ud);
        return NULL;
    }
    if (p == m->block) {
        if (n <= m->cap)
            return p;
        size_t old_cap = m->cap;
        void *q = block_map(m, n); /* m->block is q now, or still p */
        if (!q) {
            if (!(q = malloc(n)))
                return NULL; /* realloc's contract: p is left as it was */
            m->block = NULL;
            m->cap = 0;
        }
        memcpy(q, p, old_cap);
        block_unmap(p, old_cap);
        return q;
    }
    if (wants_block(m, n)) {
        size_t have = malloc_usable_size(p);
        void *q = block_map(m, n);
        if (q) {
            memcpy(q, p, have < n ? have : n);
            free(p);
            return q;
        }
    }
    return realloc(p, n);
}

void h2mem_init(h2mem_t *m, nghttp2_mem *mem)
{
    mem->mem_user_data = m;
    mem->malloc = mem_malloc;
    mem->free = mem_free;
    mem->calloc = mem_calloc;
    mem->realloc = mem_realloc;
}

int h2mem_release(h2mem_t *m)
{
    if (!m->block)
        return 0;
    heap_release_pages(m->block, m->cap);
    return 1;
}

unsigned h2mem_mapped(void)
{
    return atomic_load_explicit(&mapped, memory_order_relaxed);
}

size_t h2mem_resident(const h2mem_t *m)
{
    if (!m->block)
        return 0;
    size_t pages = m->cap / page_size(), resident = 0;
    unsigned char vec[64];
    for (size_t at = 0; at < pages; at += sizeof vec) {
        size_t k = pages - at < sizeof vec ? pages - at : sizeof vec;
        if (mincore((char *)m->block + at * page_size(), k * page_size(), vec) < 0)
            return 0;
        for (size_t i = 0; i < k; i++)
            resident += vec[i] & 1;
    }
    return resident * page_size();
}
