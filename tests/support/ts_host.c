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
