/*
 * ts_host.h — host-wide and per-process facts a benchmark reads or sets
 * around a load: the kernel's UDP receive-buffer drops, this process's CPU
 * time, and CPU pinning of every thread of a process.
 */
#ifndef SLUICE_TS_HOST_H
#define SLUICE_TS_HOST_H

#include <stddef.h>
#include <sys/types.h>

/* The host's UDP RcvbufErrors (/proc/net/snmp): datagrams the kernel dropped
 * because a socket's receive buffer was full. Host-wide, so other processes'
 * drops count too; -1 when it cannot be read. */
long ts_host_udp_rcvbuf_errors(void);

/* This process's utime + stime so far, in seconds (all its threads). */
double ts_host_self_cpu_s(void);

/* sched_setaffinity(cpu) on every thread of pid (/proc/PID/task; a process
 * such as coturn runs several). Threads it starts later inherit the mask of
 * the thread that starts them. 0, or -1 with a reason in why. */
int ts_host_pin_threads(pid_t pid, long cpu, char *why, size_t cap);

/* Caps every thread of pid at pct % of one CPU with a CPU cgroup of its own
 * (v1: /sys/fs/cgroup/cpu/NAME, cpu.cfs_quota_us; v2: /sys/fs/cgroup/NAME,
 * cpu.max): 1 ms of CPU (the kernel's smallest quota) per period of 100/pct
 * ms, so that the cap throttles in small steps, not the default period's
 * 100 ms stalls. Needs root. The cgroup's directory goes into
 * path (give it to ts_host_cpu_quota_remove once pid has exited). 0, or -1
 * with a reason in why. A benchmark uses it to overload a relay several
 * times over with a generator no faster than the relay itself. */
int ts_host_cpu_quota(pid_t pid, unsigned pct, char *path, size_t pathcap, char *why, size_t cap);

/* Removes the cgroup (its processes must have exited). */
void ts_host_cpu_quota_remove(const char *path);

#endif
