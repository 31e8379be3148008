/* pool.c — see pool.h. */
#include "pool.h"

#include <stdlib.h>

void pool_init(pool_t *p, size_t size, size_t max_free)
{
    *p = (pool_t){.size = size < sizeof(void *) ? sizeof(void *) : size, .max_free = max_free};
}

void pool_grow(pool_t *p, size_t size)
{
    if (size <= p->size)
        return;
    pool_trim(p);
    p->size = size < sizeof(void *) ? sizeof(void *) : size;
}

void *pool_get(pool_t *p)
{
    void *b = p->_free;
    if (b) {
        p->_free = *(void **)b;
        p->nfree--;
    } else if (!(b = malloc(p->size))) {
        return NULL;
    }
    p->out++;
    return b;
}

void pool_put(pool_t *p, void *buf, size_t size)
{
    if (!buf)
        return;
    if (p->out)
        p->out--;
    if (size != p->size || p->nfree >= p->max_free) {
        free(buf);
        return;
    }
    *(void **)buf = p->_free;
    p->_free = buf;
    p->nfree++;
}

void pool_trim(pool_t *p)
{
    while (p->_free) {
        void *b = p->_free;
        p->_free = *(void **)b;
        free(b);
    }
    p->nfree = 0;
}

void pool_dispose(pool_t *p)
{
    pool_trim(p);
}
