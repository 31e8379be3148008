/* util.h — small helpers shared by the gateway's event-driven modules. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Recovers the owner of an embedded member (a libev watcher, usually). */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Loop time in nanoseconds, as queue timestamps use it. */
static inline uint64_t util_ns(double ev_seconds)
{
    return (uint64_t)(ev_seconds * 1e9);
}

#endif
