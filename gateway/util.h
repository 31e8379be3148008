/* util.h — small helpers shared by the gateway's event-driven modules. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* container_of and compat_mono_ns, shared with the shim. */
#include "../common/compat.h"

/* Monotonic time in nanoseconds: ages and deadlines never follow the wall
 * clock (libev's ev_now() does). */
static inline uint64_t util_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define UTIL_MS_NS 1000000u

#endif
