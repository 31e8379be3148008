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

#endif
