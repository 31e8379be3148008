/*
 * ts_prometheus.h — a real Prometheus server (Debian's prometheus) on
 * loopback, started by a test to scrape sluiced's /metrics.
 *
 * Each server gets a mktemp -d directory (its config and TSDB) and a free
 * loopback port (bound to 0 and closed: Prometheus cannot report its port);
 * the start waits until GET /-/ready answers 200. It scrapes one target
 * every second and is stopped by PID.
 */
#ifndef SLUICE_TS_PROMETHEUS_H
#define SLUICE_TS_PROMETHEUS_H

#include <limits.h>
#include <stdint.h>

#include "ts_proc.h"

#define TS_PROMETHEUS_BIN "/usr/bin/prometheus"

typedef struct ts_prometheus {
    ts_proc_t proc;
    uint16_t port;
    char url[64];       /* "http://127.0.0.1:<port>" */
    char dir[PATH_MAX]; /* the mktemp -d directory */
} ts_prometheus_t;

/* Starts Prometheus scraping http://<target>/metrics (target "host:port")
 * every second and waits until it is ready. Returns 0, or -1 (its log dumped
 * to stderr). Dispose after a failure too. */
int ts_prometheus_start(ts_prometheus_t *p, const char *target, int64_t deadline);

/* Asks GET /api/v1/query?query=<promql> until the answer has a result, or the
 * deadline. Copies the first result's value (the sample's text, e.g. "3") to
 * value. Returns 0, or -1. */
int ts_prometheus_query(const ts_prometheus_t *p, const char *promql, char *value, size_t cap,
                        int64_t deadline);

/* The value of the sample whose name and labels are exactly series on a
 * /metrics page, or -1 when the page has no such line. */
double ts_prom_sample(const char *page, const char *series);

/* Stops it (SIGTERM by PID, SIGKILL after the deadline) and removes its
 * directory. Idempotent. */
void ts_prometheus_dispose(ts_prometheus_t *p);

#endif
