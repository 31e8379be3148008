/* util.h — small helpers shared by the gateway's event-driven modules. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

/* container_of and compat_mono_ns, shared with the shim. Ages and deadlines
 * use the monotonic clock, never libev's ev_now() (wall time). */
#include "../common/compat.h"

#define UTIL_MS_NS 1000000u

#endif
