/*
 * ts_pstat.h — another process's CPU time, memory and open descriptors from
 * /proc, for the benchmarks and the tests that watch them (proc(5)).
 */
#ifndef SLUICE_TS_PSTAT_H
#define SLUICE_TS_PSTAT_H

#include <stdint.h>
#include <sys/types.h>

typedef struct ts_pstat {
    uint64_t utime_ns, stime_ns; /* /proc/PID/stat fields 14 and 15 (clock ticks,
                                  * usually 10 ms each, converted) */
    long rss_kb;                 /* /proc/PID/status VmRSS */
    long hwm_kb;                 /* VmHWM: the peak RSS so far */
} ts_pstat_t;

/* Reads pid's counters into *out. Returns 0, or -1 (no such process, or a
 * file that does not parse). */
int ts_pstat_read(pid_t pid, ts_pstat_t *out);

/* Open descriptors of pid (the entries of /proc/PID/fd), or -1. */
long ts_pstat_fds(pid_t pid);

/* The lowest descriptor number pid does not use (the one its next open,
 * socket or accept would get), or -1. */
int ts_pstat_fd_lowest_free(pid_t pid);

/* Parses the contents of a /proc/PID/stat line: utime and stime in clock
 * ticks. The command name (field 2) may hold spaces and parentheses: fields
 * are counted after its last ')'. Returns 0 or -1. */
int ts_pstat_parse_stat(const char *line, uint64_t *utime_ticks, uint64_t *stime_ticks);

#endif
