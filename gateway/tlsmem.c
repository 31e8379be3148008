/*
 * tlsmem.c — OpenSSL's small blocks from a free list per thread (tlsmem.h).
 */
#include "tlsmem.h"

#include <malloc.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>

#include "heap.h"

typedef struct blk {
    struct blk *next;
} blk_t;

typedef struct list {
    blk_t *head;
    unsigned n;
    int keyed; /* exit_key set on this thread */
    uint64_t heap, reused;
} list_t;

static _Thread_local list_t list;
static int installed;
static size_t small_usable;    /* malloc_usable_size of a TLSMEM_SMALL block */
static pthread_key_t exit_key; /* its destructor empties a leaving thread's list */

static void list_release(void *unused)
{
    while (list.head) {
        blk_t *b = list.head;
        list.head = b->next;
        free(b);
    }
    list.n = 0;
}

static void *mem_malloc(size_t n, const char *file, int line)
{
    if (n <= TLSMEM_SMALL) {
        blk_t *b = list.head;
        if (b) {
            list.head = b->next;
            list.n--;
            list.reused++;
            return b;
        }
        n = TLSMEM_SMALL;
    }
    list.heap++;
    return malloc(n);
}

/* Whether p, an allocated block, serves any small request and is not much
 * larger: a block malloc gave for TLSMEM_SMALL bytes, or for a little more. */
static int is_small(void *p)
{
    size_t u = malloc_usable_size(p);
    return u >= TLSMEM_SMALL && u <= small_usable;
}

static void mem_free(void *p, const char *file, int line)
{
    if (!p)
        return;
    if (list.n < TLSMEM_KEEP && is_small(p)) {
        if (!list.keyed)
            list.keyed = pthread_setspecific(exit_key, &list) == 0; /* its destructor runs */
        blk_t *b = p;
        b->next = list.head;
        list.head = b;
        list.n++;
        return;
    }
    free(p);
}

static void *mem_realloc(void *p, size_t n, const char *file, int line)
{
    if (!p)
        return mem_malloc(n, file, line);
    if (n == 0) {
        mem_free(p, file, line);
        return NULL;
    }
    if (n <= malloc_usable_size(p))
        return p;
    list.heap++;
    return realloc(p, n);
}

#ifdef HEAP_OWN_ALLOCATOR
#define SANITIZER_MALLOC 1
#else
#define SANITIZER_MALLOC 0
#endif

int tlsmem_install(void)
{
    if (SANITIZER_MALLOC)
        return 0; /* the sanitizer is to see every block OpenSSL takes */
    if (installed)
        return 1;
    void *probe = malloc(TLSMEM_SMALL);
    if (!probe)
        return 0;
    small_usable = malloc_usable_size(probe);
    free(probe);
    if (pthread_key_create(&exit_key, list_release) != 0)
        return 0;
    if (!CRYPTO_set_mem_functions(mem_malloc, mem_realloc, mem_free)) {
        pthread_key_delete(exit_key);
        return 0;
    }
    installed = 1;
    return 1;
}

int tlsmem_installed(void)
{
    return installed;
}

void tlsmem_stats(tlsmem_stats_t *out)
{
    *out = (tlsmem_stats_t){.heap = list.heap, .reused = list.reused, .listed = list.n};
}
