/*
 * ts_fault.h — what the fault tests (tests/integration/test_faults.c) need
 * beyond the shared support: another process's descriptors and open-file
 * limit, a TCP socket's queues from /proc/net/tcp, and libfaketime for a
 * wall clock that can be stepped under a running sluiced.
 */
#ifndef SLUICE_TS_FAULT_H
#define SLUICE_TS_FAULT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Sets pid's soft RLIMIT_NOFILE to soft (prlimit(2)), leaving the hard limit;
 * *old_soft (may be NULL) gets the soft limit it had. Returns 0 or -1. */
int ts_fault_nofile(pid_t pid, uint64_t soft, uint64_t *old_soft);

/* The send queue (tx_queue: bytes not yet acknowledged by the peer) of the
 * IPv4 or IPv6 TCP socket with local port lport and remote port rport, from
 * /proc/net/tcp and /proc/net/tcp6 (proc(5)). Returns it, or -1 (no such
 * socket). */
long ts_fault_tcp_txq(uint16_t lport, uint16_t rport);

/* Debian's libfaketime (package faketime), or NULL when it is not installed. */
const char *ts_fault_libfaketime(void);

/* A wall clock for one process: TS_GATEWAY_WRAP words that preload
 * libfaketime reading its offset from a file in dir, so that
 * ts_fault_clock_step can move CLOCK_REALTIME while the process runs
 * (FAKETIME_NO_CACHE=1: the file is read on every call), and monotonic time
 * is left alone (FAKETIME_DONT_FAKE_MONOTONIC=1). The offset starts at +0.
 * Returns 0, or -1 (no libfaketime, or dir too long). */
typedef struct ts_fault_clock {
    char file[512];
    char wrap[2048];
} ts_fault_clock_t;
int ts_fault_clock_init(ts_fault_clock_t *c, const char *dir);

/* Sets the offset from real time to offset_s seconds (may be negative),
 * atomically (written beside, then renamed: the process never reads half a
 * file). Returns 0 or -1. */
int ts_fault_clock_step(ts_fault_clock_t *c, long offset_s);

#endif
