/*
 * ts_sluice.h — run the real sluiced and sluice-shim binaries from a test.
 *
 * Binaries come from $SLUICE_BUILD (the test runner sets it to the absolute
 * build directory): $SLUICE_BUILD/sluiced, $SLUICE_BUILD/sluice-shim, and the
 * development certificate $SLUICE_BUILD/dev/cert.pem. A start function returns
 * only once the process has printed its ready line(s), so a test never needs to
 * sleep before using it.
 */
#ifndef SLUICE_TS_SLUICE_H
#define SLUICE_TS_SLUICE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"
#include "ts_proc.h"

#define TS_LISTEN_MAX 4

typedef struct ts_gateway {
    ts_proc_t proc;
    char config[PATH_MAX];
    size_t nlisten;                       /* listen= addresses, in config order */
    ts_addr_t listen[TS_LISTEN_MAX];
    char listen_str[TS_LISTEN_MAX][64];   /* "127.0.0.1:PORT" / "[::1]:PORT" */
    int has_echo;                         /* the ready line had echo= */
    ts_addr_t echo;
    char ready_line[TS_PROC_LINE_MAX];
} ts_gateway_t;

/* Starts `sluiced --config config_path` (build NULL: $SLUICE_BUILD) and waits
 * for its "sluiced ready " line, parsing every listen= and echo=. Returns 0;
 * or -1 (no build dir, spawn failure, no ready line before deadline, a ready
 * line that does not parse) with the gateway's output dumped. After a failure
 * the caller still disposes gw. $TS_GATEWAY_WRAP, when set, is a command put
 * before sluiced (words split at spaces), e.g. "valgrind --tool=callgrind
 * --callgrind-out-file=F" for the instruction counts in docs/benchmarks.md. */
int ts_gateway_start(ts_gateway_t *gw, const char *build, const char *config_path,
                     int64_t deadline);

/* Waits for the "sluiced admin listen=ADDR" line that follows the ready line
 * when the config has an admin listener, and copies ADDR into out. Returns 0;
 * or -1 (no such line before deadline, or ADDR does not fit in cap). */
int ts_gateway_admin_addr(ts_gateway_t *gw, char *out, size_t cap, int64_t deadline);

/* "https://<listen[i]><path>" into out. Returns 0 or -1. */
int ts_gateway_url(const ts_gateway_t *gw, size_t i, const char *path, char *out, size_t cap);

/* ts_proc_stop on the gateway: its exit code, or -1. */
int ts_gateway_stop(ts_gateway_t *gw, int64_t deadline);
void ts_gateway_dispose(ts_gateway_t *gw);

typedef struct ts_shim_opts {
    const char *gateway;      /* "https://127.0.0.1:PORT" (required) */
    const char *ca_file;      /* NULL: <build>/dev/cert.pem */
    const char *tenant;       /* required */
    const char *kind;         /* NULL: "sfu" */
    const char *secret;       /* --secret, or: */
    const char *username;     /* --username and --credential */
    const char *credential;
    const char *hash;         /* --hash, NULL: omitted */
    const char *user;         /* --user, NULL: omitted */
    const char *region;       /* --region, NULL: omitted */
    const char *listen;       /* NULL: "127.0.0.1:0" */
    const char *extra[8];     /* more arguments, NULL-terminated */
    const char *build;        /* NULL: $SLUICE_BUILD */
} ts_shim_opts_t;

typedef struct ts_shim {
    ts_proc_t proc;
    ts_addr_t listen;         /* from "sluice-shim listening ADDR" */
    char listen_str[64];
    char connected_line[TS_PROC_LINE_MAX];
} ts_shim_t;

/* Starts sluice-shim and waits for "sluice-shim listening " and then
 * "sluice-shim connected ". Returns 0 or -1 as ts_gateway_start does. */
int ts_shim_start(ts_shim_t *s, const ts_shim_opts_t *o, int64_t deadline);
int ts_shim_stop(ts_shim_t *s, int64_t deadline);
void ts_shim_dispose(ts_shim_t *s);

/* An argv for the build's sluice-shim, built up in place, for tests that run
 * it themselves (ts_run, ts_proc_spawn) rather than through ts_shim_start. */
#define TS_SHIM_ARGV_MAX 47
typedef struct ts_shim_argv {
    const char *v[TS_SHIM_ARGV_MAX + 1];
    size_t n;
    int overflow;
    char bin[PATH_MAX], ca[PATH_MAX], url[256];
} ts_shim_argv_t;

/* Starts a with the binary, mode ("probe", or NULL for the relay), then
 * `--gateway url` (copied) and `--ca-file` with the build's development
 * certificate. Returns 0, or -1 when SLUICE_BUILD is unset or url too long. */
int ts_shim_argv_init(ts_shim_argv_t *a, const char *mode, const char *url);

/* Appends the NULL-terminated list (NULL: nothing). Strings are not copied. */
void ts_shim_argv_add(ts_shim_argv_t *a, const char *const *list);

/* The NULL-terminated argv, or NULL when more than TS_SHIM_ARGV_MAX
 * arguments were added. */
char *const *ts_shim_argv(ts_shim_argv_t *a);

#endif
