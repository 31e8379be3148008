/* slab.c — see slab.h. */
#include "slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* At the start of every slab; objects follow at SLAB_HDR. */
typedef struct slab_page {
    struct slab_page *prev, *next; /* in s->_avail while it has a free object */
    void *free;                    /* freed objects, linked through their first bytes */
    size_t carved;                 /* objects ever carved from the tail */
    size_t used;                   /* objects out */
} slab_page_t;

#define SLAB_HDR ((sizeof(slab_page_t) + 15u) & ~(size_t)15u)

void slab_init(slab_t *s, size_t size, size_t max_empty)
{
    size = (size + 15u) & ~(size_t)15u;
    *s = (slab_t){.size = size, .max_empty = max_empty};
    if (size)
        s->per_slab = (SLAB_BYTES - SLAB_HDR) / size;
}

/* SLAB_BYTES aligned to SLAB_BYTES: map twice that and unmap the slack. */
static slab_page_t *page_map(void)
{
    size_t len = 2 * (size_t)SLAB_BYTES;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1);
    size_t head = a - (uintptr_t)p, tail = len - head - SLAB_BYTES;
    if (head)
        munmap(p, head);
    if (tail)
        munmap((uint8_t *)a + SLAB_BYTES, tail);
    return (slab_page_t *)a; /* fresh anonymous pages are zero */
}

static void avail_push(slab_t *s, slab_page_t *pg)
{
    pg->prev = NULL;
    pg->next = s->_avail;
    if (s->_avail)
        s->_avail->prev = pg;
    s->_avail = pg;
}

static void avail_remove(slab_t *s, slab_page_t *pg)
{
    if (pg->prev)
        pg->prev->next = pg->next;
    else
        s->_avail = pg->next;
    if (pg->next)
        pg->next->prev = pg->prev;
    pg->prev = pg->next = NULL;
}

void *slab_alloc(slab_t *s, size_t size)
{
    if (!s->size)
        return calloc(1, size);
    if (size > s->size)
        return NULL;
    slab_page_t *pg = s->_avail;
    if (!pg) {
        if (!(pg = page_map()))
            return NULL;
        s->nslabs++;
        avail_push(s, pg);
    } else if (pg->used == 0) {
        s->nempty--;
    }
    void *obj;
    if (pg->free) {
        obj = pg->free;
        pg->free = *(void **)obj;
        memset(obj, 0, s->size);
    } else {
        obj = (uint8_t *)pg + SLAB_HDR + pg->carved++ * s->size; /* never touched: zero */
    }
    pg->used++;
    if (!pg->free && pg->carved == s->per_slab)
        avail_remove(s, pg); /* full */
    s->out++;
    return obj;
}

void slab_free(slab_t *s, void *obj)
{
    if (!obj)
        return;
    if (!s->size) {
        free(obj);
        return;
    }
    slab_page_t *pg = (slab_page_t *)((uintptr_t)obj & ~(uintptr_t)(SLAB_BYTES - 1));
    int was_full = !pg->free && pg->carved == s->per_slab;
    *(void **)obj = pg->free;
    pg->free = obj;
    pg->used--;
    s->out--;
    if (was_full)
        avail_push(s, pg);
    if (pg->used)
        return;
    if (s->nempty < s->max_empty) {
        s->nempty++;
        return;
    }
    avail_remove(s, pg);
    munmap(pg, SLAB_BYTES);
    s->nslabs--;
}

void slab_trim(slab_t *s)
{
    slab_page_t *next;
    for (slab_page_t *pg = s->_avail; pg; pg = next) {
        next = pg->next;
        if (pg->used)
            continue;
        avail_remove(s, pg);
        munmap(pg, SLAB_BYTES);
        s->nslabs--;
        s->nempty--;
    }
}

void slab_dispose(slab_t *s)
{
    slab_trim(s);
}
