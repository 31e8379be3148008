/*
 * test_admin.c — the admin API (gateway/admin.c, docs/admin.md) against a
 * real sluiced with a file tenant store, spoken to with libcurl: bearer
 * tokens (missing, unknown, limited to another tenant), listing, a region
 * switched off closing a live tunnel with CLOSE(tenant disabled) and refusing
 * new ones with 403 and switched on again, limits, secret rotation, 409 on a
 * stale revision, 400 naming the field, the file after a write and the write
 * surviving a restart; inline tenants are read-only (409).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_curl.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_pkt.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define ROOT "root-token-0123456789"
#define ACME_TOK "acme-token-0123456789"
#define ACME_PATH "/v1/tunnel/acme/sfu"

static ts_gateway_t gw;
static ts_h2raw_t a, b;
static char dir[PATH_MAX - 32], conf[PATH_MAX], tenants[PATH_MAX], admin_addr[64];

static const char *extra_header; /* one more request header, or NULL */

static void teardown(void)
{
    extra_header = NULL;
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    ts_gateway_dispose(&gw);
}

/* A directory of its own per test: the store's file sits next to the config. */
static void write_files(int with_store)
{
    static int n;
    char name[32];
    snprintf(name, sizeof name, "admin%d", n++);
    cr_assert_eq(ts_tmppath(name, dir, sizeof dir), 0);
    cr_assert_eq(mkdir(dir, 0700), 0);
    char cert[1024], key[1024];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    static const char tenants_json[] =
        "\"tenants\": [{\"id\": \"acme\", \"secrets\": [\"s1\"], \"regions\": [\"local\"]},"
        " {\"id\": \"beta\", \"secrets\": [\"b1\"], \"hash\": \"sha256\","
        " \"regions\": [\"local\", \"eu\"]}]";
    char text[8192];
    snprintf(text, sizeof text,
             "{\"listen\": [\"127.0.0.1:0\"], \"tls\": {\"cert\": \"%s\", \"key\": \"%s\"},"
             " \"region\": \"local\", \"limits\": {\"capsule_ping_ms\": 0},"
             " \"regions\": {\"local\": {\"sfu\": [\"builtin:echo\"]},"
             " \"eu\": {\"sfu\": [\"builtin:echo\"]}},"
             " \"admin\": {\"listen\": \"127.0.0.1:0\", \"tokens\": [{\"token\": \"" ROOT "\"},"
             " {\"token\": \"" ACME_TOK "\", \"tenant\": \"acme\"}]}, %s%s}",
             cert, key, with_store ? "\"tenant_store\": {\"type\": \"file\", \"path\": "
                                     "\"tenants.json\"}"
                                   : "",
             with_store ? "" : tenants_json);
    snprintf(conf, sizeof conf, "%s/sluiced.json", dir);
    cr_assert_eq(ts_write_file(conf, text, strlen(text)), 0);
    snprintf(tenants, sizeof tenants, "%s/tenants.json", dir);
    snprintf(text, sizeof text, "{\"revision\": 1, %s}", tenants_json);
    cr_assert_eq(ts_write_file(tenants, text, strlen(text)), 0);
}

static void start(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_gateway_start(&gw, NULL, conf, ts_deadline(ts_ms(10000))), 0,
                 "sluiced did not start (its output is above)");
    cr_assert_eq(ts_gateway_admin_addr(&gw, admin_addr, sizeof admin_addr, ts_deadline(ts_ms(5000))), 0,
                 "no admin line");
}

typedef ts_curl_reply_t reply_t;

/* One admin request; token NULL sends none. Returns the status. */
static long call(const char *method, const char *path, const char *token, const char *body,
                 reply_t *r)
{
    char url[256], auth[128];
    snprintf(url, sizeof url, "http://%s%s", admin_addr, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    const char *h[] = {"Content-Type: application/json", token ? auth : extra_header,
                       token ? extra_header : NULL, NULL};
    long status = ts_curl(method, url, h, body, 10000L, r);
    cr_assert_neq(status, -1, "%s %s: %s", method, path, r->err);
    return status;
}

static void connect_gw(ts_h2raw_t *h)
{
    cr_assert_eq(ts_h2raw_connect(h, &gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to the gateway: %s", h->err);
}

/* A tunnel request for acme with secret on stream id of h; returns the status. */
static int tunnel(ts_h2raw_t *h, int32_t id, const char *secret)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, secret, 600, NULL, username, sizeof username, cred,
                              sizeof cred),
                 0);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {
        NV(":method", "POST"),           NV(":scheme", "https"),
        NV(":authority", "sluice"),      NV(":path", ACME_PATH),
        NV("tunnel-username", username), NV("tunnel-credential", cred),
    };
#undef NV
    cr_assert_eq(ts_h2raw_headers(h, id, nva, 6, 0), 0, "%s", h->err);
    return ts_h2raw_wait_status(h, id, ts_deadline(ts_ms(10000)));
}

static int has_close(const ts_h2raw_t *h, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(h, 1);
    return s && s->end_stream && ts_find_close(s->body, s->body_len, arg, NULL, 0) >= 0;
}

static void stop(void)
{
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(10000))), 0, "sluiced did not exit 0");
    ts_gateway_dispose(&gw);
}

Test(admin, tokens_are_checked_and_a_tenant_token_sees_only_its_tenant, .fini = teardown,
     .timeout = 60)
{
    write_files(1);
    start();
    reply_t r;
    cr_assert_eq(call("GET", "/v1/tenants", NULL, NULL, &r), 401);
    cr_assert(strstr(r.body, "\"error\":\"missing bearer token"), "%s", r.body);
    cr_assert_eq(call("GET", "/v1/tenants", "root-token-0123456780", NULL, &r), 401);
    cr_assert(strstr(r.body, "\"error\":\"unknown token\""), "%s", r.body);

    cr_assert_eq(call("GET", "/v1/tenants", ROOT, NULL, &r), 200);
    cr_assert(strstr(r.body, "\"id\":\"acme\"") && strstr(r.body, "\"id\":\"beta\""), "%s",
              r.body);
    cr_assert(strstr(r.body, "\"store\":\"file\",\"revision\":1"), "%s", r.body);
    cr_assert_null(strstr(r.body, "\"s1\""), "secrets are never shown: %s", r.body);

    cr_assert_eq(call("GET", "/v1/tenants", ACME_TOK, NULL, &r), 200);
    cr_assert(strstr(r.body, "\"id\":\"acme\""), "%s", r.body);
    cr_assert_null(strstr(r.body, "\"id\":\"beta\""), "%s", r.body);
    cr_assert_eq(call("GET", "/v1/tenants/beta", ACME_TOK, NULL, &r), 403);
    cr_assert_eq(call("PATCH", "/v1/tenants/beta", ACME_TOK,
                      "{\"revision\": 1, \"disable_region\": \"local\"}", &r),
                 403);
    cr_assert(strstr(r.body, "limited to another tenant"), "%s", r.body);
    cr_assert_eq(call("GET", "/v1/tenants/nobody", ROOT, NULL, &r), 404);
    cr_assert(strstr(r.body, "unknown tenant"), "%s", r.body);
    stop();
}

Test(admin, a_region_switched_off_closes_live_tunnels_and_on_again_serves, .fini = teardown,
     .timeout = 60)
{
    write_files(1);
    start();
    connect_gw(&a);
    cr_assert_eq(tunnel(&a, 1, "s1"), 200);

    reply_t r;
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ACME_TOK,
                      "{\"revision\": 1, \"disable_region\": \"local\"}", &r),
                 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"enabled_here\":false") && strstr(r.body, "\"revision\":2"),
              "%s", r.body);
    uint64_t code = UINT64_MAX;
    cr_assert_eq(ts_h2raw_wait(&a, has_close, &code, ts_deadline(ts_ms(5000))), 0,
                 "the live tunnel got no CLOSE");
    cr_assert_eq(code, CLOSE_TENANT_DISABLED);
    connect_gw(&b);
    cr_assert_eq(tunnel(&b, 1, "s1"), 403);

    /* Durable before the answer: the file holds it already. */
    size_t len;
    char *file = ts_read_file(tenants, 65536, &len);
    cr_assert_not_null(file);
    cr_assert(strstr(file, "\"revision\": 2"), "%s", file);
    free(file);

    /* A stale revision is refused and changes nothing. */
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 1, \"enable_region\": \"local\"}", &r),
                 409);
    cr_assert(strstr(r.body, "\"revision\":2"), "%s", r.body);
    cr_assert_eq(tunnel(&b, 3, "s1"), 403);

    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 2, \"enable_region\": \"local\"}", &r),
                 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"enabled_here\":true"), "%s", r.body);
    cr_assert_eq(tunnel(&b, 5, "s1"), 200);

    /* The revision may come as If-Match instead. */
    extra_header = "If-Match: \"2\"";
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT, "{\"kinds\": [\"sfu\"]}", &r), 409);
    extra_header = "If-Match: 3";
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT, "{\"kinds\": [\"sfu\"]}", &r), 200,
                 "%s", r.body);
    extra_header = NULL;
    cr_assert(strstr(r.body, "\"kinds\":[\"sfu\"]"), "%s", r.body);
    stop();
}

Test(admin, limits_and_bad_fields, .fini = teardown, .timeout = 60)
{
    write_files(1);
    start();
    reply_t r;
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 1, \"limits\": {\"up_bits_s\": -1}}", &r),
                 400);
    cr_assert(strstr(r.body, "$.limits.up_bits_s: expected an integer"), "%s", r.body);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 1, \"limits\": {\"up_bits\": 5}}", &r),
                 400);
    cr_assert(strstr(r.body, "$.limits"), "%s", r.body);
    cr_assert(strstr(r.body, "up_bits"), "%s", r.body);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT, "{\"revision\": 1, \"colour\": 1}", &r),
                 400);
    cr_assert(strstr(r.body, "$.colour: unknown field"), "%s", r.body);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT, "{\"kinds\": [\"turn\"]}", &r), 400);
    cr_assert(strstr(r.body, "$.revision: required"), "%s", r.body);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 1, \"enable_region\": \"mars\"}", &r),
                 400);
    cr_assert(strstr(r.body, "$.enable_region: \\\"mars\\\""), "%s", r.body);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT, "{\"revision\": 1, ", &r), 400);

    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 1, \"limits\": {\"max_tunnels\": 1}}", &r),
                 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"max_tunnels\":1,"), "%s", r.body);
    connect_gw(&a);
    cr_assert_eq(tunnel(&a, 1, "s1"), 200);
    cr_assert_eq(tunnel(&a, 3, "s1"), 429, "the new limit holds");

    /* Applied and durable: a restart comes back with it. */
    stop();
    start();
    cr_assert_eq(call("GET", "/v1/tenants/acme", ROOT, NULL, &r), 200);
    cr_assert(strstr(r.body, "\"max_tunnels\":1,") && strstr(r.body, "\"revision\":2"), "%s",
              r.body);
    stop();
}

Test(admin, secret_rotation, .fini = teardown, .timeout = 60)
{
    write_files(1);
    start();
    reply_t r;
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 1, \"retire_secret\": \"s1\"}", &r),
                 400);
    cr_assert(strstr(r.body, "$.retire_secret: the tenant's last secret"), "%s", r.body);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 1, \"add_secret\": \"s2\"}", &r),
                 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"secrets\":2"), "%s", r.body);
    connect_gw(&a);
    cr_assert_eq(tunnel(&a, 1, "s2"), 200);
    cr_assert_eq(tunnel(&a, 3, "s1"), 200);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 2, \"retire_secret\": \"s1\"}", &r),
                 200, "%s", r.body);
    connect_gw(&b);
    cr_assert_eq(tunnel(&b, 1, "s1"), 401);
    cr_assert_eq(tunnel(&b, 3, "s2"), 200);
    stop();
}

Test(admin, inline_tenants_are_read_only, .fini = teardown, .timeout = 60)
{
    write_files(0);
    start();
    reply_t r;
    cr_assert_eq(call("GET", "/v1/tenants", ROOT, NULL, &r), 200);
    cr_assert(strstr(r.body, "\"store\":\"config\""), "%s", r.body);
    cr_assert_eq(call("PATCH", "/v1/tenants/acme", ROOT,
                      "{\"revision\": 0, \"disable_region\": \"local\"}", &r),
                 409);
    cr_assert(strstr(r.body, "inline in the config file"), "%s", r.body);
    stop();
}

/* Runs the build's sluicectl against the gateway's admin API with args
 * (NULL-terminated, after --admin URL). Returns its exit code; r kept. */
static int ctl(ts_run_t *r, const char *const *args)
{
    char bin[PATH_MAX], url[128];
    cr_assert_eq(ts_build_path(NULL, "sluicectl", bin, sizeof bin), 0);
    snprintf(url, sizeof url, "http://%s", admin_addr);
    const char *argv[16] = {bin, "--admin", url};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    cr_assert_eq(ts_run((char *const *)argv, NULL, ts_deadline(ts_ms(20000)), r), 0);
    return r->code;
}

Test(admin, sluicectl_end_to_end, .fini = teardown, .timeout = 60)
{
    write_files(1);
    start();
    char tokfile[PATH_MAX];
    cr_assert_eq(ts_tmppath("token", tokfile, sizeof tokfile), 0);
    cr_assert_eq(ts_write_file(tokfile, ROOT "\n", strlen(ROOT) + 1), 0);
    ts_run_t r;

    cr_assert_eq(ctl(&r, (const char *[]){"--token-file", tokfile, "tenant", "show", NULL}), 0,
                 "%s", r.err);
    cr_assert(strstr(r.out, "acme enabled_here=yes regions=local kinds=sfu,turn secrets=1"),
              "%s", r.out);
    cr_assert(strstr(r.out, "beta enabled_here=yes regions=local,eu"), "%s", r.out);
    ts_run_free(&r);

    connect_gw(&a);
    cr_assert_eq(tunnel(&a, 1, "s1"), 200);
    cr_assert_eq(ctl(&r, (const char *[]){"--token", ACME_TOK, "tenant", "disable", "acme",
                                          "--region", "local", NULL}),
                 0, "%s", r.err);
    cr_assert(strstr(r.out, "acme enabled_here=no"), "%s", r.out);
    ts_run_free(&r);
    uint64_t code = UINT64_MAX;
    cr_assert_eq(ts_h2raw_wait(&a, has_close, &code, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(code, CLOSE_TENANT_DISABLED);

    cr_assert_eq(ctl(&r, (const char *[]){"--token", ROOT, "--json", "tenant", "limits", "acme",
                                          "max_tunnels=3", "up_bits_s=64000", NULL}),
                 0, "%s", r.err);
    cr_assert(strstr(r.out, "\"max_tunnels\":3,") && strstr(r.out, "\"up_bits_s\":64000,"), "%s",
              r.out);
    ts_run_free(&r);

    /* Exit codes: refused 1, usage 2, unreachable 3. */
    cr_assert_eq(ctl(&r, (const char *[]){"--token", ACME_TOK, "tenant", "kinds", "beta", "sfu",
                                          NULL}),
                 1);
    cr_assert(strstr(r.err, "403"), "%s", r.err);
    ts_run_free(&r);
    cr_assert_eq(ctl(&r, (const char *[]){"--token", ROOT, "tenant", "limits", "acme",
                                          "colour=1", NULL}),
                 1);
    cr_assert(strstr(r.err, "$.limits"), "%s", r.err);
    ts_run_free(&r);
    cr_assert_eq(ctl(&r, (const char *[]){"--token", ROOT, "tenant", "enable", "acme", NULL}), 2);
    ts_run_free(&r);

    size_t len;
    char *file = ts_read_file(tenants, 65536, &len);
    cr_assert_not_null(file);
    cr_assert(strstr(file, "\"revision\": 3") && strstr(file, "\"max_tunnels\": 3"), "%s", file);
    free(file);
    stop();
    cr_assert_eq(ctl(&r, (const char *[]){"--token", ROOT, "tenant", "show", NULL}), 3);
    ts_run_free(&r);
    cr_assert_eq(ctl(&r, (const char *[]){"check", conf, NULL}), 0, "%s", r.err);
    cr_assert(strstr(r.out, "config ok"), "%s", r.out);
    ts_run_free(&r);
    cr_assert_eq(ts_write_file(tenants, "{\"tenants\": 1}", 14), 0);
    cr_assert_eq(ctl(&r, (const char *[]){"check", conf, NULL}), 1);
    cr_assert(strstr(r.err, "tenants.json: $.tenants: expected an array"), "%s", r.err);
    ts_run_free(&r);
}

/* POST /v1/reload re-reads the config file as SIGHUP does: an operator's
 * token only; a file that does not load is the answer (422, its path) and
 * changes nothing; a good one applies (a tenant added to the file serves). */
Test(admin, reload_through_the_api_and_sluicectl, .fini = teardown, .timeout = 60)
{
    write_files(0);
    start();
    reply_t r;
    cr_assert_eq(call("POST", "/v1/reload", ACME_TOK, "", &r), 403, "%s", r.body);
    cr_assert_eq(call("GET", "/v1/reload", ROOT, NULL, &r), 405);
    cr_assert_eq(call("POST", "/v1/reload", ROOT, "", &r), 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"reloaded\":true") && strstr(r.body, "\"tenants\":2"), "%s",
              r.body);

    /* Broken: the error names the file and the path; the old config serves. */
    size_t len;
    char *good = ts_read_file(conf, 65536, &len);
    cr_assert_not_null(good);
    char *bad = strdup(good);
    char *kinds = strstr(bad, "\"regions\": [\"local\"]}");
    cr_assert_not_null(kinds);
    memcpy(kinds, "\"regions\": [\"mars\"] }", 21);
    cr_assert_eq(ts_write_file(conf, bad, strlen(bad)), 0);
    cr_assert_eq(call("POST", "/v1/reload", ROOT, "", &r), 422, "%s", r.body);
    cr_assert(strstr(r.body, "reload refused, old config kept") &&
                  strstr(r.body, "$.tenants[0].regions[0]"),
              "%s", r.body);
    ts_run_t run;
    cr_assert_eq(ctl(&run, (const char *[]){"--token", ROOT, "reload", NULL}), 1);
    cr_assert(strstr(run.err, "422") && strstr(run.err, "$.tenants[0].regions[0]"), "%s",
              run.err);
    ts_run_free(&run);
    connect_gw(&a);
    cr_assert_eq(tunnel(&a, 1, "s1"), 200, "the old config no longer serves");

    /* Fixed, with one more tenant: applied. */
    char *more = malloc(len + 128);
    cr_assert_not_null(more);
    char *tail = strstr(good, "\"tenants\": [");
    cr_assert_not_null(tail);
    size_t head = (size_t)(tail - good) + strlen("\"tenants\": [");
    memcpy(more, good, head);
    strcpy(more + head, "{\"id\": \"gamma\", \"secrets\": [\"g1\"], \"regions\": [\"local\"]}, ");
    strcat(more, good + head);
    cr_assert_eq(ts_write_file(conf, more, strlen(more)), 0);
    cr_assert_eq(ctl(&run, (const char *[]){"--token", ROOT, "reload", NULL}), 0, "%s", run.err);
    cr_assert(strstr(run.out, "reloaded: region local, 3 tenants"), "%s", run.out);
    ts_run_free(&run);
    cr_assert_eq(call("GET", "/v1/tenants/gamma", ROOT, NULL, &r), 200, "%s", r.body);
    free(good);
    free(bad);
    free(more);
    stop();
}
