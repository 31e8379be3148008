/* util.h — small helpers shared by the gateway's event-driven modules. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* container_of and compat_mono_ns, shared with the shim. */
#include "../common/compat.h"

/* Loop time in nanoseconds, as queue timestamps use it. */
static inline uint64_t util_ns(double ev_seconds)
{
    return (uint64_t)(ev_seconds * 1e9);
}

#endif
