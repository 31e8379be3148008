/*
 * heap.h — how sluiced sets up glibc's allocator before it starts, and gives
 * pages it keeps allocated but does not need back to the system.
 *
 * glibc keeps a cache of freed chunks per thread (the tcache: up to 7 chunks
 * of each size up to 1 KiB). After a load has come and gone, the chunks left
 * in the workers' caches lie all over the heap, and each one keeps a page
 * that malloc_trim(0) would otherwise give back (bench_mem: +12 to +14 % of
 * the idle RSS stays after 10,000 tunnels; with no cache, +7 %). glibc reads
 * its tunables only when a program starts, so sluiced sets
 * GLIBC_TUNABLES=glibc.malloc.tcache_count=0 and executes itself again,
 * once, before it opens anything. docs/architecture.md, "Bounds".
 */
#ifndef SLUICE_HEAP_H
#define SLUICE_HEAP_H

#include <stddef.h>

/* Defined when a sanitizer's malloc, not glibc's, serves the process. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HEAP_OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                   \
    __has_feature(memory_sanitizer)
#define HEAP_OWN_ALLOCATOR 1
#endif
#endif

#define HEAP_TUNABLES_VAR "GLIBC_TUNABLES"
#define HEAP_TCACHE_TUNABLE "glibc.malloc.tcache_count"
#define HEAP_TCACHE_SETTING HEAP_TCACHE_TUNABLE "=0"

/* The GLIBC_TUNABLES value to run with, given the current one (NULL when
 * unset): the current tunables followed by HEAP_TCACHE_SETTING. Returns 1 and
 * fills out (NUL-terminated); 0 when nothing is to change (the operator set
 * a tcache count of their own, or sluiced already runs with ours); -1 when
 * the value would not fit in outlen bytes. */
int heap_tunables(const char *current, char *out, size_t outlen);

/* Executes the program's own file (the path /proc/self/exe names) again with
 * argv and the tunables of heap_tunables,
 * when they change anything and glibc's allocator is the one in use: not in a
 * sanitizer build, not with LD_PRELOAD set (another allocator, or a tool such
 * as valgrind or heaptrack, is in charge), not in a set-user-ID process
 * (glibc would drop the tunable). Call it before any thread, descriptor or
 * output exists. Returns only when it did not execute: 0 when nothing was to
 * change, -1 when the exec failed (errno; sluiced runs on with the cache, a
 * larger RSS after load the only cost). */
int heap_tune(char **argv);

/* Gives the whole pages inside [p, p + len) back to the system: they read as
 * zeros afterwards and are resident again only once written. p may point
 * anywhere into memory the caller owns and keeps (a malloc'd buffer: the
 * allocator's own bytes around it lie outside those pages). Returns the bytes
 * given back. */
size_t heap_release_pages(void *p, size_t len);

#endif
