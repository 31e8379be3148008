/*
 * ts_haproxy.h — a real HAProxy (Debian's) on loopback in TCP mode, started
 * by a test, in front of some servers (issue 8 §4; docs/operations.md,
 * "Scaling out").
 *
 * Each HAProxy gets its own mktemp -d directory holding a generated
 * haproxy.cfg: one frontend on 127.0.0.1:<free port>, TCP mode, round robin
 * over the servers, each with send-proxy-v2 when asked (the PROXY protocol
 * header that sluiced reads on a listener with "proxy_protocol"), and
 * `option redispatch` so that a connection refused by a stopped server goes
 * to another. It runs in the foreground (-db) as a ts_proc child and is
 * stopped by PID; the directory is removed with it. HAProxy cannot report its
 * port, so one is picked by binding port 0 and closing, and the start waits
 * until it accepts.
 */
#ifndef SLUICE_TS_HAPROXY_H
#define SLUICE_TS_HAPROXY_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"
#include "ts_proc.h"

#define TS_HAPROXY_SERVERS_MAX 8

typedef struct ts_haproxy {
    ts_proc_t proc;
    uint16_t port;
    ts_addr_t addr;          /* 127.0.0.1:<port> */
    char addr_str[64];
    char dir[PATH_MAX];
} ts_haproxy_t;

/* 1 when a haproxy binary is installed. */
int ts_haproxy_available(void);

/* Starts HAProxy in front of the n servers (n <= TS_HAPROXY_SERVERS_MAX),
 * with send-proxy-v2 on each when proxy_v2, and waits until it accepts.
 * Returns 0, or -1 (its output dumped). Dispose after a failure too. */
int ts_haproxy_start(ts_haproxy_t *h, const ts_addr_t *servers, size_t n, int proxy_v2,
                     int64_t deadline);

/* Stops it (SIGTERM, then SIGKILL at deadline). Returns its exit code or -1. */
int ts_haproxy_stop(ts_haproxy_t *h, int64_t deadline);

/* Kills what still runs and removes the directory. Idempotent. */
void ts_haproxy_dispose(ts_haproxy_t *h);

#endif
