/*
 * test_heap.c — gateway/heap.c: sluiced runs with glibc's per-thread cache
 * turned off (GLIBC_TUNABLES), unless the operator chose a cache size.
 * What it buys (the RSS after a load) is measured by bench_mem, not here.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../gateway/heap.h"
#include "../support/ts_fixture.h"
#include "../support/ts_util.h"

Test(heap, tunables_add_the_cache_setting)
{
    char out[128];
    cr_assert_eq(heap_tunables(NULL, out, sizeof out), 1);
    cr_assert_str_eq(out, "glibc.malloc.tcache_count=0");
    cr_assert_eq(heap_tunables("", out, sizeof out), 1);
    cr_assert_str_eq(out, "glibc.malloc.tcache_count=0");
    cr_assert_eq(heap_tunables("glibc.malloc.arena_max=2", out, sizeof out), 1);
    cr_assert_str_eq(out, "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0");
    /* A name that only begins like it is another tunable. */
    cr_assert_eq(heap_tunables("glibc.malloc.tcache_count_x=1", out, sizeof out), 1);
    cr_assert_str_eq(out, "glibc.malloc.tcache_count_x=1:glibc.malloc.tcache_count=0");
}

Test(heap, tunables_keep_a_cache_size_already_chosen)
{
    char out[128] = "untouched";
    cr_assert_eq(heap_tunables("glibc.malloc.tcache_count=0", out, sizeof out), 0);
    cr_assert_eq(heap_tunables("glibc.malloc.tcache_count=7", out, sizeof out), 0);
    cr_assert_eq(heap_tunables("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=3", out,
                               sizeof out),
                 0);
    cr_assert_str_eq(out, "untouched");
}

Test(heap, tunables_that_do_not_fit_are_refused)
{
    char out[24];
    cr_assert_eq(heap_tunables(NULL, out, sizeof out), -1);
    char big[40];
    cr_assert_eq(heap_tunables("glibc.malloc.arena_max=2", big, sizeof big), -1);
}

/* Only whole pages inside the span go: the bytes around them, which may
 * be the allocator's or the caller's, keep their values. */
Test(heap, release_pages_gives_back_whole_pages_inside_the_span_only)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), size = 16 * page;
    uint8_t *buf = malloc(size);
    cr_assert_not_null(buf);
    memset(buf, 0x5a, size);
    uint8_t *from = buf + 100, *to = buf + size - 100;
    size_t got = heap_release_pages(from, (size_t)(to - from));
    uintptr_t first = ((uintptr_t)from + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t last = (uintptr_t)to & ~(uintptr_t)(page - 1);
    cr_assert_eq(got, last - first);
    cr_assert_geq(got, 13 * page);
    for (uint8_t *p = buf; p < buf + size; p++) {
        int inside = (uintptr_t)p >= first && (uintptr_t)p < last;
        cr_assert_eq(*p, inside ? 0 : 0x5a, "byte %td: %d", p - buf, *p);
    }
    cr_assert_eq(heap_release_pages(buf + 1, page - 2), 0, "less than a page");
    free(buf);
}

/* The GLIBC_TUNABLES a running process was started with ("" when unset). */
static void environ_tunables(pid_t pid, char *out, size_t outlen)
{
    char path[64], env[65536];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s: cannot open", path);
    ssize_t n = read(fd, env, sizeof env - 1);
    close(fd);
    cr_assert_gt(n, 0);
    env[n] = '\0';
    out[0] = '\0';
    for (char *p = env; p < env + n; p += strlen(p) + 1)
        if (strncmp(p, "GLIBC_TUNABLES=", 15) == 0)
            snprintf(out, outlen, "%s", p + 15);
}

static ts_fixture_t fx;

static void teardown(void)
{
    ts_fixture_teardown(&fx);
}

static void start_gateway(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0,
                 "sluiced did not print its ready line (its output is above)");
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1 /* this build's sluiced uses the sanitizer's allocator */
#else
#define SANITIZED 0
#endif

Test(heap, sluiced_runs_without_the_cache, .fini = teardown, .timeout = 60)
{
    unsetenv("GLIBC_TUNABLES");
    unsetenv("LD_PRELOAD");
    start_gateway();
    char t[256];
    environ_tunables(fx.gw.proc.pid, t, sizeof t);
    cr_assert_str_eq(t, SANITIZED ? "" : "glibc.malloc.tcache_count=0",
                     "sluiced's GLIBC_TUNABLES: \"%s\"", t);
    /* Executed again under its own name: ps, pgrep and systemd see sluiced. */
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)fx.gw.proc.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(comm, sizeof comm, f));
    fclose(f);
    cr_assert_str_eq(comm, "sluiced\n");
}

Test(heap, sluiced_keeps_the_operators_cache_size, .fini = teardown, .timeout = 60)
{
    cr_assert_eq(setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=3", 1), 0);
    start_gateway();
    char t[256];
    environ_tunables(fx.gw.proc.pid, t, sizeof t);
    cr_assert_str_eq(t, "glibc.malloc.tcache_count=3");
}
