/*
 * compat.h — the two helpers both I/O edges (gateway/ and client-shim/) need
 * and neither should define for itself: recovering an owner from an embedded
 * member, and the monotonic clock.
 *
 * Not in proto/: proto/ is pure and takes time as an argument; reading the
 * clock belongs to the edges, which pass the value down.
 */
#ifndef SLUICE_COMPAT_H
#define SLUICE_COMPAT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Recovers the struct that embeds member (a libev watcher, usually) from a
 * pointer to that member. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* CLOCK_MONOTONIC in nanoseconds: never jumps with wall-clock changes, so
 * intervals and deadlines computed from it are safe. Its origin is
 * unspecified (boot, usually); compare values, never print them as dates. */
static inline uint64_t compat_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CLOCK_REALTIME in nanoseconds: only to compare with the kernel's own wall
 * clock stamps (SO_TIMESTAMPNS); it steps when the clock is set. */
static inline int64_t compat_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

#endif
