/* ts_fault.c — see ts_fault.h. */
#include "ts_fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define LIBFAKETIME "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

int ts_fault_nofile(pid_t pid, uint64_t soft, uint64_t *old_soft)
{
    struct rlimit old, rl;
    if (prlimit(pid, RLIMIT_NOFILE, NULL, &old) != 0)
        return -1;
    rl.rlim_cur = (rlim_t)soft;
    rl.rlim_max = old.rlim_max;
    if (prlimit(pid, RLIMIT_NOFILE, &rl, NULL) != 0)
        return -1;
    if (old_soft)
        *old_soft = (uint64_t)old.rlim_cur;
    return 0;
}

/* One /proc/net/tcp{,6} file: lines "sl local rem st tx:rx ...", addresses
 * as hex ADDR:PORT. */
static long txq_in(const char *path, uint16_t lport, uint16_t rport)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    long found = -1;
    int nlines = 0;
    while (found < 0 && nlines++ < 100000 && fgets(line, sizeof line, f)) {
        char local[80], remote[80];
        unsigned st;
        unsigned long tx, rx;
        if (sscanf(line, " %*[0-9]: %79s %79s %x %lx:%lx", local, remote, &st, &tx, &rx) != 5)
            continue;
        const char *lp = strrchr(local, ':'), *rp = strrchr(remote, ':');
        unsigned l, r;
        if (!lp || !rp || sscanf(lp + 1, "%x", &l) != 1 || sscanf(rp + 1, "%x", &r) != 1)
            continue;
        if (l == lport && r == rport)
            found = (long)tx;
    }
    fclose(f);
    return found;
}

long ts_fault_tcp_txq(uint16_t lport, uint16_t rport)
{
    long q = txq_in("/proc/net/tcp", lport, rport);
    return q >= 0 ? q : txq_in("/proc/net/tcp6", lport, rport);
}

const char *ts_fault_libfaketime(void)
{
    return access(LIBFAKETIME, R_OK) == 0 ? LIBFAKETIME : NULL;
}

int ts_fault_clock_init(ts_fault_clock_t *c, const char *dir)
{
    const char *lib = ts_fault_libfaketime();
    if (!lib)
        return -1;
    int n = snprintf(c->file, sizeof c->file, "%s/faketime.rc", dir);
    if (n < 0 || (size_t)n >= sizeof c->file)
        return -1;
    /* Under ASan (make test-asan) the preload comes before its runtime,
     * which ASan refuses unless told that the order is intended. */
    const char *asan = getenv("ASAN_OPTIONS");
    n = snprintf(c->wrap, sizeof c->wrap,
                 "env LD_PRELOAD=%s FAKETIME_TIMESTAMP_FILE=%s FAKETIME_NO_CACHE=1 "
                 "FAKETIME_DONT_FAKE_MONOTONIC=1 ASAN_OPTIONS=%s%sverify_asan_link_order=0",
                 lib, c->file, asan ? asan : "", asan && *asan ? ":" : "");
    if (n < 0 || (size_t)n >= sizeof c->wrap)
        return -1;
    return ts_fault_clock_step(c, 0);
}

int ts_fault_clock_step(ts_fault_clock_t *c, long offset_s)
{
    char tmp[sizeof c->file + 8], text[32];
    snprintf(tmp, sizeof tmp, "%s.new", c->file);
    int n = snprintf(text, sizeof text, "%+ld\n", offset_s);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fwrite(text, 1, (size_t)n, f) == (size_t)n;
    ok &= fclose(f) == 0;
    return ok && rename(tmp, c->file) == 0 ? 0 : -1;
}
