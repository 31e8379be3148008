/*
 * heap.c — glibc's allocator set up for a long-running gateway (heap.h).
 */
#include "heap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

/* Whether a colon-separated tunables list names the tcache count. */
static int names_tcache(const char *list)
{
    size_t n = strlen(HEAP_TCACHE_TUNABLE);
    for (const char *p = list;; p++) {
        if (strncmp(p, HEAP_TCACHE_TUNABLE, n) == 0 && p[n] == '=')
            return 1;
        if (!(p = strchr(p, ':')))
            return 0;
    }
}

int heap_tunables(const char *current, char *out, size_t outlen)
{
    if (current && names_tcache(current))
        return 0;
    int n = current && *current
                ? snprintf(out, outlen, "%s:%s", current, HEAP_TCACHE_SETTING)
                : snprintf(out, outlen, "%s", HEAP_TCACHE_SETTING);
    return n > 0 && (size_t)n < outlen ? 1 : -1;
}

int heap_tune(char **argv)
{
#if defined(__GLIBC__) && !defined(HEAP_OWN_ALLOCATOR)
    const char *preload = getenv("LD_PRELOAD");
    if ((preload && *preload) || getauxval(AT_SECURE))
        return 0;
    const char *current = getenv(HEAP_TUNABLES_VAR);
    char value[1024], before[sizeof value];
    if (heap_tunables(current, value, sizeof value) != 1)
        return 0;
    snprintf(before, sizeof before, "%s", current ? current : ""); /* fits: value does */
    /* The program's own path, not /proc/self/exe: the kernel names the
     * process after the file executed (ps, pgrep and systemd show "sluiced",
     * not "exe"). A binary replaced since it started reads "... (deleted)":
     * there is nothing to execute then. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 1) {
        errno = n < 0 ? errno : ENAMETOOLONG;
        return -1;
    }
    self[n] = '\0';
    if (access(self, X_OK) < 0)
        return -1;
    if (setenv(HEAP_TUNABLES_VAR, value, 1) < 0)
        return -1;
    execv(self, argv);
    int e = errno;
    if (current)
        setenv(HEAP_TUNABLES_VAR, before, 1);
    else
        unsetenv(HEAP_TUNABLES_VAR);
    errno = e;
    return -1;
#else
    (void)argv;
    return 0;
#endif
}

size_t heap_release_pages(void *p, size_t len)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t to = ((uintptr_t)p + len) & ~(page - 1);
    if (to <= from || madvise((void *)from, to - from, MADV_DONTNEED) < 0)
        return 0;
    return to - from;
}
