/*
 * ts_host.c — UDP drop counter, own CPU time, pinning (ts_host.h).
 */
#include "ts_host.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ts_util.h"

long ts_host_udp_rcvbuf_errors(void)
{
    char *t = ts_read_file("/proc/net/snmp", 65536, NULL);
    long v = -1;
    /* Two "Udp:" lines: the field names, then the values in the same order. */
    char *names = t ? strstr(t, "\nUdp:") : NULL;
    char *values = names ? strstr(names + 1, "\nUdp:") : NULL;
    if (names && values) {
        char *np = names + 5, *vp = values + 5;
        for (int i = 0; i < 32; i++) {
            size_t nl = strcspn(np += strspn(np, " "), " \n");
            char *end;
            long n = strtol(vp, &end, 10);
            if (nl == 0 || end == vp)
                break;
            if (nl == 12 && strncmp(np, "RcvbufErrors", 12) == 0) {
                v = n;
                break;
            }
            np += nl;
            vp = end;
        }
    }
    free(t);
    return v;
}

double ts_host_self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int ts_host_pin_threads(pid_t pid, long cpu, char *why, size_t cap)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(why, cap, "cannot list %s", dir);
        return -1;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)cpu, &set);
    int rc = 0;
    struct dirent *e;
    for (int n = 0; n < 4096 && (e = readdir(d)); n++) {
        long tid = strtol(e->d_name, NULL, 10);
        /* A thread that ended meanwhile (ESRCH) needs no pinning. */
        if (tid > 0 && sched_setaffinity((pid_t)tid, sizeof set, &set) < 0 && errno != ESRCH) {
            snprintf(why, cap, "cannot pin thread %ld to CPU %ld: %s", tid, cpu,
                     strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

static int write_str(const char *dir, const char *file, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int ts_host_cpu_quota(pid_t pid, unsigned pct, char *path, size_t pathcap, char *why, size_t cap)
{
    /* Period 1 ms; the kernel's smallest quota is 1 ms, so the period grows
     * for caps under 100 % of a CPU: quota = 1 ms, period = 100 / pct ms. */
    unsigned period_us = pct >= 100 ? 1000 : 100000 / (pct ? pct : 1);
    unsigned quota_us = pct >= 100 ? 10 * pct : 1000;
    char v[64], pids[32];
    snprintf(pids, sizeof pids, "%ld\n", (long)pid);
    int v1 = access("/sys/fs/cgroup/cpu/cgroup.procs", W_OK) == 0;
    snprintf(path, pathcap, "%s/sluice-bench-%ld", v1 ? "/sys/fs/cgroup/cpu" : "/sys/fs/cgroup",
             (long)getpid());
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        snprintf(why, cap, "mkdir %s: %s (root and a CPU cgroup are needed)", path, strerror(errno));
        return -1;
    }
    int bad;
    if (v1) {
        snprintf(v, sizeof v, "%u\n", period_us);
        bad = write_str(path, "cpu.cfs_period_us", v);
        snprintf(v, sizeof v, "%u\n", quota_us);
        bad = bad || write_str(path, "cpu.cfs_quota_us", v);
    } else {
        write_str("/sys/fs/cgroup", "cgroup.subtree_control", "+cpu\n");
        snprintf(v, sizeof v, "%u %u\n", quota_us, period_us);
        bad = write_str(path, "cpu.max", v);
    }
    /* cgroup.procs moves every thread of the process. */
    if (bad || write_str(path, "cgroup.procs", pids) < 0) {
        snprintf(why, cap, "cannot set a CPU quota in %s: %s", path, strerror(errno));
        rmdir(path);
        return -1;
    }
    return 0;
}

void ts_host_cpu_quota_remove(const char *path)
{
    if (path && *path)
        rmdir(path);
}
