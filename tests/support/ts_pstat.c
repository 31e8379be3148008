/*
 * ts_pstat.c — /proc CPU time and memory of a process (ts_pstat.h).
 */
#include "ts_pstat.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_util.h"

int ts_pstat_parse_stat(const char *line, uint64_t *utime_ticks, uint64_t *stime_ticks)
{
    const char *p = strrchr(line, ')');
    if (!p)
        return -1;
    /* After ") ": field 3 (state) ... field 14 utime, 15 stime. */
    p++;
    for (int field = 3; field < 14; field++) {
        p += strspn(p, " ");
        if (!*p)
            return -1;
        p += strcspn(p, " ");
    }
    char *end;
    unsigned long long u = strtoull(p, &end, 10);
    if (end == p)
        return -1;
    p = end;
    unsigned long long s = strtoull(p, &end, 10);
    if (end == p)
        return -1;
    *utime_ticks = u;
    *stime_ticks = s;
    return 0;
}

/* The "Key:   123 kB" value of key in text, or -1. */
static long status_kb(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, key, klen) == 0 && l[klen] == ':')
            return strtol(l + klen + 1, NULL, 10);
    return -1;
}

int ts_pstat_read(pid_t pid, ts_pstat_t *out)
{
    char path[64];
    long tck = sysconf(_SC_CLK_TCK);
    if (tck <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = ts_read_file(path, 4096, NULL);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *status = ts_read_file(path, 16384, NULL);
    uint64_t u = 0, s = 0;
    int rc = -1;
    if (stat && status && ts_pstat_parse_stat(stat, &u, &s) == 0) {
        out->utime_ns = u * (1000000000u / (uint64_t)tck);
        out->stime_ns = s * (1000000000u / (uint64_t)tck);
        out->rss_kb = status_kb(status, "VmRSS");
        out->hwm_kb = status_kb(status, "VmHWM");
        rc = out->rss_kb < 0 || out->hwm_kb < 0 ? -1 : 0;
    }
    free(stat);
    free(status);
    return rc;
}

/* Counts pid's descriptors; with lowest, also finds the lowest number it
 * does not use (below 4096: a test process holds a few dozen), or -1. */
static long fd_scan(pid_t pid, int *lowest)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    unsigned char used[4096] = {0};
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (e->d_name[0] == '.' || *end)
            continue;
        n++;
        if (fd >= 0 && fd < (long)sizeof used)
            used[fd] = 1;
    }
    closedir(d);
    if (lowest) {
        *lowest = -1;
        for (int i = 0; i < (int)sizeof used && *lowest < 0; i++)
            if (!used[i])
                *lowest = i;
    }
    return n;
}

long ts_pstat_fds(pid_t pid)
{
    return fd_scan(pid, NULL);
}

int ts_pstat_fd_lowest_free(pid_t pid)
{
    int lowest;
    return fd_scan(pid, &lowest) < 0 ? -1 : lowest;
}
