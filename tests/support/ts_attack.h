/*
 * ts_attack.h — the attacks of issue 10 §3 against a running sluiced, and the
 * legitimate call measured while each one runs (test_attacks, bench_attack).
 *
 * The legitimate call (ts_acall_*) is a thread with one UDP socket that sends
 * a fixed-size RTP-looking packet at a fixed rate to a shim's listen address
 * (the shim carries it through one tunnel to the echo backend and back) and
 * times every echo. Each packet carries the phase it was sent in: a caller
 * sets phase 1 for a baseline window, phase 2 while an attack runs, and so
 * on; loss and RTT percentiles are per phase, so the baseline and the attack
 * are measured in the same run with the same call.
 *
 * An attack (ts_attack_run) runs on the caller's thread, bounded in time,
 * and says how the gateway cut it off: the GOAWAY (code and debug data) the
 * attacker saw, or, for attacks that never get HTTP/2 going (slowloris, bare
 * TCP), how many connections the gateway closed and when. Attacks that hold
 * many connections open raise this process's RLIMIT_NOFILE soft limit to the
 * hard limit.
 */
#ifndef SLUICE_TS_ATTACK_H
#define SLUICE_TS_ATTACK_H

#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"

/* ---- the legitimate call --------------------------------------------------- */

#define TS_ACALL_PHASES 64u

typedef struct ts_acall ts_acall_t;

typedef struct ts_acall_stats {
    uint64_t sent, received;     /* packets sent in the phase; their echoes */
    uint64_t p50_ns, p99_ns, max_ns;
} ts_acall_stats_t;

/* Starts the call's thread: len-byte packets (len 32..1400) at pps from fd
 * (owned by the caller, kept open until ts_acall_stop) to `to`. It sends in
 * phase 0 (not measured) until ts_acall_phase changes it. NULL on failure. */
ts_acall_t *ts_acall_start(int fd, const ts_addr_t *to, unsigned pps, size_t len);

/* Packets sent from now on belong to phase (0..TS_ACALL_PHASES-1). */
void ts_acall_phase(ts_acall_t *a, unsigned phase);

/* The figures of phase so far. */
void ts_acall_stats(ts_acall_t *a, unsigned phase, ts_acall_stats_t *out);

/* Waits (bounded by deadline) until every packet of phase has come back or
 * no echo has arrived for quiet_ms: late echoes count, lost ones do not. */
void ts_acall_settle(ts_acall_t *a, unsigned phase, int quiet_ms, int64_t deadline);

/* Stops and joins the thread, frees a. NULL: no-op. */
void ts_acall_stop(ts_acall_t *a);

/* ---- attacks ---------------------------------------------------------------- */

typedef struct ts_attack_env {
    ts_addr_t gw;                /* the gateway's listen address */
    const char *ca_file;         /* the gateway's CA (NULL: <build>/dev/cert.pem) */
    const char *path;            /* a tunnel path the credentials below open */
    const char *username, *credential;  /* valid credentials */
    uint32_t max_streams;        /* the gateway's limits.max_streams */
    size_t conns;                /* slowloris / bare TCP: connections to hold */
    unsigned open_per_s;         /* their opening rate (0: as fast as they go) */
    int duration_ms;             /* how long a paced attack (churn, brute force) lasts */
} ts_attack_env_t;

typedef struct ts_attack_result {
    int cut;                     /* the gateway ended the attack (see how) */
    int goaway;                  /* a GOAWAY arrived */
    uint32_t goaway_code;
    char goaway_debug[128];
    char how[320];               /* one line for the report */
    int64_t cut_ms;              /* attack start to the attacker's connection closed */
    uint64_t sent;               /* frames, requests or connections the attacker got out */
    char why[256];               /* when the attack could not even be run */
} ts_attack_result_t;

typedef int (*ts_attack_fn)(const ts_attack_env_t *env, ts_attack_result_t *res);

typedef struct ts_attack {
    const char *name;            /* short, for test names and table rows */
    const char *what;            /* one line: what the attacker does */
    ts_attack_fn run;
} ts_attack_t;

/* Every attack, in report order. */
extern const ts_attack_t ts_attacks[];
extern const size_t ts_attacks_n;

/* The attack called name, or NULL. */
const ts_attack_t *ts_attack_find(const char *name);

/* Runs one attack. Returns 0 when it ran (res says whether it was cut), -1
 * when it could not be set up (res->why). */
int ts_attack_run(const ts_attack_t *a, const ts_attack_env_t *env, ts_attack_result_t *res);

/* Internal (ts_attack_conns.c), reached through ts_attacks[]. */
int ts_attack__slowloris_tls(const ts_attack_env_t *env, ts_attack_result_t *res);
int ts_attack__slowloris_headers(const ts_attack_env_t *env, ts_attack_result_t *res);
int ts_attack__bare_tcp(const ts_attack_env_t *env, ts_attack_result_t *res);

/* The name of an HTTP/2 error code (RFC 9113 §7). */
const char *ts_attack_h2_error(uint32_t code);

/* ---- one attack, measured ------------------------------------------------------ */

/* Limits every measured attack runs under: the defaults, except the
 * handshake, header and write-stall timeouts (2 s instead of 10 s) so that
 * an attack cut by a timeout fits in a few seconds. */
#define TS_ATTACK_LIMITS \
    "{\"handshake_timeout_ms\":2000,\"header_timeout_ms\":2000,\"write_stall_ms\":2000}"
/* For slowloris at full scale: 30 s handshake and header timeouts (and a
 * 30 s PING interval, whose dead-peer check would otherwise cut a silent
 * HTTP/2 connection at 5 + 10 s), so that 10,000 connections opened at the
 * rate this machine manages are all held at once before the first is cut. */
#define TS_ATTACK_LIMITS_SLOW                                                    \
    "{\"handshake_timeout_ms\":30000,\"header_timeout_ms\":30000,"              \
    "\"ping_interval_ms\":30000,\"write_stall_ms\":2000}"

typedef struct ts_attack_row {
    ts_attack_result_t res;
    ts_acall_stats_t base, during;   /* the call before and during the attack */
    long rss_before_kb, rss_after_kb;
    long hwm_after_kb;               /* VmHWM after the attack: its peak, if above before */
    uint64_t cpu_ns;                 /* sluiced's CPU time (user + system) during the attack */
    int64_t window_ms;               /* the call's attack window */
    size_t log_lines;                /* sluiced's stderr lines during the attack */
    int gw_ok;                       /* sluiced exited 0 after SIGTERM */
    int ran;                         /* everything up to the attack worked */
    char why[256];                   /* when !ran */
} ts_attack_row_t;

/* On a fresh sluiced (the standard test config with TS_ATTACK_LIMITS, its
 * $SLUICE_BUILD) with one live shim: the legitimate call (200 B at 50 pps)
 * runs alone for base_ms, then during the attack (at least min_attack_ms,
 * the call's window staying open that long), then sluiced is stopped.
 * limits_json NULL: TS_ATTACK_LIMITS. conns, open_per_s and duration_ms of
 * opts (may be NULL) go to the attack's env. Returns 0 when the row was
 * measured (row->ran), -1 with row->why. Not thread-safe. */
int ts_attack_measure(const ts_attack_t *a, const char *limits_json, const ts_attack_env_t *opts,
                      int base_ms, int min_attack_ms, ts_attack_row_t *row);

#endif
