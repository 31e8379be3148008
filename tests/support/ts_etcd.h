/*
 * ts_etcd.h — a real etcd (Debian's etcd-server, v3 JSON gateway) on
 * loopback, started by a test.
 *
 * Each etcd gets a mktemp -d data directory and two free loopback ports
 * (client and peer: bound to 0 and closed, as etcd cannot report its port);
 * the start waits until GET /health answers {"health":"true"}. It runs as a
 * ts_proc child and is stopped or killed by PID; a restart reuses the same
 * directory and ports, so it comes back with its data. Keys are written with
 * libcurl through the JSON gateway (POST /v3/kv/put, /v3/kv/deleterange).
 */
#ifndef SLUICE_TS_ETCD_H
#define SLUICE_TS_ETCD_H

#include <limits.h>
#include <stdint.h>

#include "ts_proc.h"

#define TS_ETCD_BIN "/usr/bin/etcd"

typedef struct ts_etcd {
    ts_proc_t proc;
    uint16_t port, peer_port;
    char url[64];           /* "http://127.0.0.1:<port>" */
    char dir[PATH_MAX];     /* the mktemp -d directory; data in <dir>/data */
} ts_etcd_t;

/* 1 when an etcd binary is installed. */
int ts_etcd_available(void);

/* Starts etcd (a new directory and ports the first time; the same ones after
 * ts_etcd_kill) and waits until it is healthy. Returns 0, or -1 (its log
 * dumped to stderr). Dispose after a failure too. */
int ts_etcd_start(ts_etcd_t *e, int64_t deadline);

/* Stops it by PID (SIGTERM; SIGKILL after deadline). Returns 0, or -1. */
int ts_etcd_stop(ts_etcd_t *e, int64_t deadline);

/* SIGKILL by PID and reap; the directory stays for a restart. */
int ts_etcd_kill(ts_etcd_t *e);

/* Writes key = value (both text). Returns the revision the write made (> 0),
 * or -1. */
int64_t ts_etcd_put(const ts_etcd_t *e, const char *key, const char *value, int64_t deadline);

/* Deletes key. Returns the revision, or -1. */
int64_t ts_etcd_delete(const ts_etcd_t *e, const char *key, int64_t deadline);

/* Stops what still runs and removes the directory. Idempotent. */
void ts_etcd_dispose(ts_etcd_t *e);

/* A test's teardown: stops it if it runs (SIGTERM, 10 s at most), then
 * disposes. Idempotent. */
void ts_etcd_end(ts_etcd_t *e);

#endif
