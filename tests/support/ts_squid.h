/*
 * ts_squid.h — a real squid (Debian's) on loopback, started by a test.
 *
 * Each squid gets its own mktemp -d directory (made writable for the user
 * `proxy` squid drops to when started as root) holding a generated
 * squid.conf (http_port 127.0.0.1:<free port>, no cache, no pinger, pid
 * file and logs in the directory), the password file for Basic (htpasswd)
 * or Digest (plain "user:password") auth, and its logs. It runs in the foreground (-N) as a ts_proc child, and is stopped by
 * PID; the directory is removed with it. Squid cannot report its port, so
 * one is picked by binding port 0 and closing, and the start waits until
 * squid accepts on it.
 */
#ifndef SLUICE_TS_SQUID_H
#define SLUICE_TS_SQUID_H

#include <limits.h>
#include <stdint.h>

#include "ts_proc.h"

typedef struct ts_squid_opts {
    /* Proxy auth: only this user with this password may CONNECT. NULL: none. */
    const char *user;
    const char *password;
    /* 1: Digest only (digest_file_auth, RFC 7616), else Basic only
     * (basic_ncsa_auth). */
    int digest;
    /* CONNECT to this port is denied (403). 0: none. */
    uint16_t deny_port;
} ts_squid_opts_t;

typedef struct ts_squid {
    ts_proc_t proc;
    uint16_t port;
    char url[64];            /* "http://127.0.0.1:<port>" */
    char dir[PATH_MAX];
    char access_log[PATH_MAX];
    char cache_log[PATH_MAX];
} ts_squid_t;

/* 1 when a squid binary is installed. */
int ts_squid_available(void);

/* Starts squid with o (NULL: open proxy) and waits until it accepts
 * connections. Returns 0, or -1 (its log dumped to stderr). Dispose after
 * a failure too. */
int ts_squid_start(ts_squid_t *sq, const ts_squid_opts_t *o, int64_t deadline);

/* Stops it (SIGTERM, then SIGKILL at deadline). Returns its exit code or -1. */
int ts_squid_stop(ts_squid_t *sq, int64_t deadline);

/* Kills what still runs and removes the directory. Idempotent. */
void ts_squid_dispose(ts_squid_t *sq);

/* A loopback TCP port that nothing listens on now (bound to 0, closed). */
uint16_t ts_free_tcp_port(void);

#endif
