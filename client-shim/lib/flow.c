/*
 * flow.c — flow table (see shim_flow.h).
 */
#include "shim_flow.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int shim_sockaddr_equal(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
                        socklen_t blen)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        if (alen < sizeof(*x) || blen < sizeof(*y))
            return 0;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        if (alen < sizeof(*x) || blen < sizeof(*y))
            return 0;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return alen == blen && memcmp(a, b, alen) == 0;
}

int shim_flowtab_init(shim_flowtab_t *ft, size_t max, void *owner)
{
    memset(ft, 0, sizeof(*ft));
    if (max == 0)
        return -1;
    ft->_slots = calloc(max, sizeof(*ft->_slots));
    if (!ft->_slots)
        return -1;
    ft->_cap = max;
    for (size_t i = 0; i < max; i++)
        ft->_slots[i].owner = owner;
    return 0;
}

void shim_flowtab_dispose(shim_flowtab_t *ft)
{
    free(ft->_slots);
    ft->_slots = NULL;
    ft->_cap = ft->count = 0;
    ft->_last = NULL;
}

static int matchable(const shim_flow_t *f)
{
    return f->state == SHIM_FLOW_ACTIVE || f->state == SHIM_FLOW_BACKOFF;
}

shim_flow_t *shim_flowtab_find(shim_flowtab_t *ft, const struct sockaddr *sa, socklen_t len)
{
    shim_flow_t *f = ft->_last;

    if (f && matchable(f) && shim_sockaddr_equal((const struct sockaddr *)&f->addr, f->addrlen,
                                                 sa, len))
        return f;
    for (size_t i = 0; i < ft->_cap; i++) {
        f = &ft->_slots[i];
        if (matchable(f) &&
            shim_sockaddr_equal((const struct sockaddr *)&f->addr, f->addrlen, sa, len)) {
            ft->_last = f;
            return f;
        }
    }
    return NULL;
}

shim_flow_t *shim_flowtab_add(shim_flowtab_t *ft, const struct sockaddr *sa, socklen_t len,
                              uint64_t now_ms)
{
    if (len > sizeof(struct sockaddr_storage))
        return NULL;
    for (size_t i = 0; i < ft->_cap; i++) {
        shim_flow_t *f = &ft->_slots[i];
        if (f->state != SHIM_FLOW_FREE)
            continue;
        void *owner = f->owner;
        memset(f, 0, sizeof(*f));
        f->owner = owner;
        memcpy(&f->addr, sa, len);
        f->addrlen = len;
        f->state = SHIM_FLOW_ACTIVE;
        f->last_ms = now_ms;
        ft->count++;
        ft->_last = f;
        return f;
    }
    return NULL;
}

void shim_flowtab_remove(shim_flowtab_t *ft, shim_flow_t *f)
{
    if (f->state == SHIM_FLOW_FREE)
        return;
    f->state = SHIM_FLOW_FREE;
    f->tunnel = NULL;
    ft->count--;
    if (ft->_last == f)
        ft->_last = NULL;
}

shim_flow_t *shim_flowtab_at(shim_flowtab_t *ft, size_t i)
{
    return i < ft->_cap ? &ft->_slots[i] : NULL;
}

size_t shim_flowtab_cap(const shim_flowtab_t *ft)
{
    return ft->_cap;
}

size_t shim_flowtab_active(const shim_flowtab_t *ft)
{
    size_t n = 0;

    for (size_t i = 0; i < ft->_cap; i++)
        n += ft->_slots[i].state == SHIM_FLOW_ACTIVE;
    return n;
}
