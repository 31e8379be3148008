/*
 * ts_config.h — gateway config files and credentials for tests.
 *
 * A ts_config_t describes a config in C initialisers; ts_config_write renders
 * it as the JSON gateway/config.h documents and writes it into ts_tmpdir().
 * Pools are NULL-terminated string arrays: a NULL pool pointer leaves the key
 * out, a pool of just {NULL} writes "[]" (no backend: the gateway answers 503).
 *
 *     ts_config_t c = {
 *         .regions = {{.name = "local", .sfu = TS_POOL(echo_addr)}},
 *         .tenants = {{.id = "acme", .secrets = {"s1"}, .kinds = {"sfu"},
 *                      .regions = {"local"}}},
 *     };
 */
#ifndef SLUICE_TS_CONFIG_H
#define SLUICE_TS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "../../proto/cred.h"

#define TS_CFG_MAX 8
/* Pool literals: TS_POOL("127.0.0.1:5000", "builtin:echo"); TS_POOL_EMPTY is []. */
#define TS_POOL(...) ((const char *[]){__VA_ARGS__, NULL})
#define TS_POOL_EMPTY ((const char *[]){NULL})

typedef struct ts_tenant {
    const char *id;                   /* NULL ends the tenants array */
    const char *secrets[TS_CFG_MAX];  /* NULL-terminated */
    const char *hash;                 /* "sha1", "sha256"; NULL: key omitted */
    unsigned max_ttl;                 /* seconds; 0: key omitted */
    const char *regions[TS_CFG_MAX];  /* NULL-terminated */
    const char *kinds[TS_CFG_MAX];    /* NULL-terminated */
    const char *limits_json;          /* "limits" object, written as is; NULL: omitted */
} ts_tenant_t;

typedef struct ts_region {
    const char *name;                 /* NULL ends the regions array */
    const char **sfu;                 /* NULL: key omitted */
    const char **turn;
    /* Extra members of a pool written as an object (gateway/backend.h), e.g.
     * "\"probe\":\"none\"": {"backends": [...], <this>}. NULL: a plain array. */
    const char *sfu_health;
    const char *turn_health;
} ts_region_t;

typedef struct ts_config {
    const char *listen[TS_CFG_MAX];   /* NULL-terminated; none: {"127.0.0.1:0"} */
    const char *cert;                 /* NULL: <build>/dev/cert.pem */
    const char *key;                  /* NULL: <build>/dev/key.pem */
    const char *region;               /* NULL: "local" */
    ts_region_t regions[TS_CFG_MAX];
    ts_tenant_t tenants[TS_CFG_MAX];
    const char *limits_json;          /* a JSON object, written as is; NULL: omitted */
    const char *admin_json;           /* $.admin, a JSON object written as is; NULL: omitted */
    const char *build;                /* NULL: $SLUICE_BUILD */
    unsigned workers;                 /* $.workers; 0: $TS_WORKERS if set (a benchmark
                                       * run with more loops: docs/benchmarks.md), else
                                       * 1, so that a test runs one loop unless it asks
                                       * for more (test_workers.c) */
} ts_config_t;

/* The tenant and secret of ts_config_turn's config. */
#define TS_TURN_TENANT "acme"
#define TS_TURN_SECRET "s1"

/* A config for tests against a real TURN server (tests/support/ts_coturn.h):
 * listen on 127.0.0.1:0, region "local" whose turn pool is [turn_addr] (and no
 * sfu pool), tenant TS_TURN_TENANT with secret TS_TURN_SECRET (sha1), kinds
 * [turn]. turn_addr is copied into a static slot (one per process: criterion
 * runs each test in its own process); the other strings are static. */
void ts_config_turn(ts_config_t *c, const char *turn_addr);

/* Renders the JSON into out. Returns its length, or -1 (does not fit, no build dir). */
int ts_config_render(const ts_config_t *c, char *out, size_t cap);

/* Renders and writes to a new file in ts_tmpdir(); the path goes to path.
 * Returns 0 or -1. */
int ts_config_write(const ts_config_t *c, char *path, size_t cap);

/* Writes text as is to a new file in ts_tmpdir() (for malformed configs). */
int ts_config_write_raw(const char *text, char *path, size_t cap);

/* Mints a TURN-REST credential: username "<now + ttl_s>[:user]" (ttl_s may be
 * negative: already expired) and base64(HMAC(secret, username)) via cred_sign.
 * Returns 0 or -1. */
int ts_cred_mint(enum cred_hash hash, const char *secret, int64_t ttl_s, const char *user,
                 char *username, size_t ucap, char *credential, size_t ccap);

#endif
