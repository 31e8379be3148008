/*
 * ts_fixture.h — the common integration setup: a UDP echo backend owned by the
 * test, a gateway configured with the standard tenants, and shims.
 *
 * Standard config (TS_FX_* names below):
 *   region "local": sfu = [the test's echo backend] (probe none), turn = []  (503)
 *   region "eu":    sfu = ["builtin:echo"]
 *   tenant "acme":  secrets s1, s2 (rotation), sha1, max_ttl 3600,
 *                   regions [local], kinds [sfu, turn]
 *   tenant "beta":  secret b1, sha256, max_ttl 3600, regions [local, eu],
 *                   kinds [sfu]
 *
 * Typical criterion use: a static ts_fixture_t, ts_fixture_teardown in .fini
 * (it kills and reaps whatever a failed test left running), and an explicit
 * ts_fixture_stop at the end of the test body asserting exit codes of 0.
 */
#ifndef SLUICE_TS_FIXTURE_H
#define SLUICE_TS_FIXTURE_H

#include <limits.h>
#include <stddef.h>

#include "ts_config.h"
#include "ts_echo.h"
#include "ts_sluice.h"

#define TS_FX_TENANT "acme"
#define TS_FX_SECRET "s1"
#define TS_FX_SECRET2 "s2"
#define TS_FX_TENANT_B "beta"
#define TS_FX_SECRET_B "b1"
#define TS_FX_MAX_TTL 3600
#define TS_FX_MAX_SHIMS 32

typedef struct ts_fixture {
    int family;                  /* AF_INET or AF_INET6 */
    ts_echo_t *echo;
    char config[PATH_MAX];
    ts_gateway_t gw;
    int gw_started;
    ts_shim_t shims[TS_FX_MAX_SHIMS];
    size_t nshims;
} ts_fixture_t;

/* Standard config with listen on the loopback of family and the "local" sfu
 * pool pointing at echo_addr, into c (strings are static or borrowed). */
void ts_fixture_std_config(ts_config_t *c, int family, const char *echo_addr);

/* Starts the echo backend and a gateway on the standard config. A non-NULL
 * limits_json is written as the config's "limits". Returns 0 or -1. */
int ts_fixture_start(ts_fixture_t *fx, int family, const char *limits_json);

/* Starts a shim (tenant acme, kind sfu, secret s1, listening on the loopback of
 * fx->family) against listen address 0 of the gateway. *out (may be NULL) gets
 * it. Returns 0 or -1. */
int ts_fixture_add_shim(ts_fixture_t *fx, ts_shim_t **out);

/* ts_fixture_add_shim, then an app-side UDP socket on the loopback of
 * fx->family, proven to reach the backend and back through the tunnel (a
 * primer echoed, ts_flow_prime). Returns 0 with *shim and *fd set (the caller
 * closes fd), or -1 with *why naming the step that failed. */
int ts_fixture_add_live_shim(ts_fixture_t *fx, ts_shim_t **shim, int *fd, const char **why);

/* Stops every shim, then the gateway (SIGTERM, deadline). Returns 0 when every
 * one exited with code 0; otherwise -1 and *what names the first that did not
 * (static string) and *code its exit code. */
int ts_fixture_stop(ts_fixture_t *fx, const char **what, int *code);

/* Kills what still runs, reaps it, stops the echo. Idempotent. */
void ts_fixture_teardown(ts_fixture_t *fx);

#endif
