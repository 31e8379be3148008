/*
 * test_etcd.c — the tenant table in a real etcd shared by two gateways
 * (docs/configuration.md "Tenant store"): a switch written once is obeyed by
 * both within 1 s (the live tunnel gets CLOSE(tenant disabled), a new one 403;
 * a deleted tenant is unknown: 401);
 * with etcd killed both keep serving with their last table, and after a
 * restart on the same data and ports both pick up a change made then; SIGHUP
 * re-reads the file and keeps the tenants from etcd; a
 * gateway never starts with a bad tenant (exit 2, the key and JSON path) or
 * without etcd (exit 1). With an admin API as well (docs/admin.md): a switch
 * written through one gateway's admin API is obeyed by both within 1 s; of
 * two writes from the same revision the first wins and the second gets 409;
 * with etcd down a write gets 503 and changes nothing, and works again once
 * etcd is back; a change made in etcd shows in the admin API.
 *
 * Propagation is measured from the PUT's response to each gateway's
 * "event=tenant.table source=etcd revision=N" log line and printed.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_curl.h"
#include "../support/ts_etcd.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_pkt.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define PREFIX "/sluice/tenants/"
#define ACME_PATH "/v1/tunnel/acme/sfu"
#define BETA_PATH "/v1/tunnel/beta/sfu"
#define ACME_LOCAL "{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"local\",\"eu\"]}"
#define ACME_EU "{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"eu\"]}"
#define ADMIN_TOKEN "0123456789abcdef0123"
#define BETA "{\"id\":\"beta\",\"secrets\":[\"s2\"],\"regions\":[\"local\"]}"

static ts_etcd_t etcd;
static ts_gateway_t gw[2];
static ts_h2raw_t h[4];

static void teardown(void)
{
    for (size_t i = 0; i < 4; i++)
        ts_h2raw_close(&h[i]);
    for (size_t i = 0; i < 2; i++)
        ts_gateway_dispose(&gw[i]);
    ts_etcd_dispose(&etcd);
}

/* A config whose tenants are under PREFIX in etcd, with extra (",key":value
 * members, or "") at the end of the root; its path into out. */
static void write_config_with(char *out, size_t cap, const char *endpoint, const char *extra)
{
    char cert[PATH_MAX], key[PATH_MAX], text[3 * PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(text, sizeof text,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"%s\",\"key\":\"%s\"},"
             "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"builtin:echo\"]},"
             "\"eu\":{\"sfu\":[\"builtin:echo\"]}},"
             "\"limits\":{\"capsule_ping_ms\":0,\"drain_ms\":0}," /* stop: CLOSE at once */
             "\"tenant_store\":{\"type\":\"etcd\",\"endpoints\":[\"%s\"],"
             "\"prefix\":\"" PREFIX "\"}%s}",
             cert, key, endpoint, extra);
    cr_assert_eq(ts_config_write_raw(text, out, cap), 0);
}

static void write_config(char *out, size_t cap, const char *endpoint)
{
    write_config_with(out, cap, endpoint, "");
}

static void start_etcd_and_gateways(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    if (!ts_etcd_available())
        cr_skip_test("no " TS_ETCD_BIN " (Debian package etcd-server)");
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not start");
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "acme", ACME_LOCAL, ts_deadline(5000)), 0);
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "beta", BETA, ts_deadline(5000)), 0);
    char config[PATH_MAX];
    write_config(config, sizeof config, etcd.url);
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_gateway_start(&gw[i], NULL, config, ts_deadline(ts_ms(10000))), 0,
                     "gateway %zu did not start", i);
}

/* A tunnel request for path (acme with s1, beta with s2) on stream id of c. */
static int request_on(ts_h2raw_t *c, int32_t id, const char *path)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    int beta = strstr(path, "beta") != NULL;
    cr_assert_eq(ts_cred_mint(CRED_SHA1, beta ? "s2" : "s1", 600, NULL, username,
                              sizeof username, cred, sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request(c, id, path, username, cred, 0), 0, "%s", c->err);
    return ts_h2raw_wait_status(c, id, ts_deadline(ts_ms(10000)));
}

static void connect_to(ts_h2raw_t *c, size_t g)
{
    cr_assert_eq(ts_h2raw_connect(c, &gw[g].listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to gateway %zu: %s", g, c->err);
}

static int has_close(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    return s && s->end_stream && ts_find_close(s->body, s->body_len, arg, NULL, 0) >= 0;
}

/* Waits until both gateways log that they applied revision rev; returns the
 * slower one's delay from t0 in ms and prints both. */
static int64_t wait_applied(int64_t rev, int64_t t0, const char *what)
{
    char needle[64];
    snprintf(needle, sizeof needle, "event=tenant.table source=etcd revision=%lld ",
             (long long)rev);
    int64_t worst = 0;
    int done[2] = {0, 0};
    int64_t at[2] = {0, 0};
    int64_t deadline = ts_deadline(ts_ms(10000));
    /* Both logs are checked in turn so each gateway's own time is seen. */
    while ((!done[0] || !done[1]) && ts_now_ms() < deadline) {
        for (size_t i = 0; i < 2; i++)
            if (!done[i] && ts_log_count(gw[i].proc.err_path, needle) > 0) {
                done[i] = 1;
                at[i] = ts_now_ms() - t0;
            }
        if (!done[0] || !done[1])
            ts_log_wait(gw[!done[0] ? 0 : 1].proc.err_path, needle, 1,
                        ts_now_ms() + 5 < deadline ? ts_now_ms() + 5 : deadline);
    }
    for (size_t i = 0; i < 2; i++) {
        cr_assert(done[i], "gateway %zu did not log \"%s\" (%s)", i, needle, what);
        fprintf(stderr,
                "test_etcd: %s: gateway %zu applied revision %lld %lld ms after the write\n", what,
                i, (long long)rev, (long long)at[i]);
        if (at[i] > worst)
            worst = at[i];
    }
    return worst;
}

Test(etcd, a_switch_reaches_both_gateways_within_a_second_and_survives_an_etcd_restart,
     .fini = teardown, .timeout = 120)
{
    start_etcd_and_gateways();
    /* acme has a live tunnel on gateway 0; both gateways serve acme. */
    connect_to(&h[0], 0);
    cr_assert_eq(request_on(&h[0], 1, ACME_PATH), 200);
    connect_to(&h[1], 1);
    cr_assert_eq(request_on(&h[1], 1, ACME_PATH), 200);

    /* The switch: acme off in region "local". */
    int64_t rev = ts_etcd_put(&etcd, PREFIX "acme", ACME_EU, ts_deadline(5000));
    int64_t t0 = ts_now_ms();
    cr_assert_gt(rev, 0);
    int64_t worst = wait_applied(rev, t0, "acme disabled in local");
    uint64_t code = UINT64_MAX;
    cr_assert_eq(ts_h2raw_wait(&h[0], has_close, &code, ts_deadline(ts_ms(5000))), 0,
                 "acme's live tunnel on gateway 0 got no CLOSE");
    cr_assert_eq(code, CLOSE_TENANT_DISABLED);
    cr_assert_eq(request_on(&h[1], 3, ACME_PATH), 403, "gateway 1 still serves acme");
    int64_t refused = ts_now_ms() - t0;
    fprintf(stderr, "test_etcd: propagation to both gateways %lld ms (403 seen after %lld ms)\n",
            (long long)worst, (long long)refused);
    cr_assert_lt(worst, 1000, "the switch took %lld ms to reach both gateways", (long long)worst);

    /* etcd killed: both gateways say so and keep serving with their table. */
    cr_assert_eq(ts_etcd_kill(&etcd), 0);
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_log_wait(gw[i].proc.err_path, "serving with the last tenant table", 1,
                                 ts_deadline(ts_ms(10000))),
                     0, "gateway %zu did not log that etcd is gone", i);
    connect_to(&h[2], 0);
    cr_assert_eq(request_on(&h[2], 1, BETA_PATH), 200, "gateway 0 stopped serving beta");
    cr_assert_eq(request_on(&h[1], 5, BETA_PATH), 200, "gateway 1 stopped serving beta");
    cr_assert_eq(request_on(&h[1], 7, ACME_PATH), 403);

    /* Restarted on the same data and ports, a change made now reaches both. */
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not restart");
    rev = ts_etcd_put(&etcd, PREFIX "acme", ACME_LOCAL, ts_deadline(5000));
    t0 = ts_now_ms();
    cr_assert_gt(rev, 0);
    wait_applied(rev, t0, "acme enabled after the etcd restart");
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_log_count(gw[i].proc.err_path, "serving with the last tenant table"), 1,
                     "gateway %zu logged the outage more than once", i);
    connect_to(&h[3], 1);
    cr_assert_eq(request_on(&h[3], 1, ACME_PATH), 200);
    cr_assert_eq(request_on(&h[2], 3, ACME_PATH), 200);

    /* SIGHUP re-reads the file and keeps the tenants read from etcd. */
    const char *log0 = gw[0].proc.err_path;
    size_t reloads = ts_log_count(log0, "event=config.reloaded");
    cr_assert_eq(ts_proc_signal(&gw[0].proc, SIGHUP), 0);
    cr_assert_eq(ts_log_wait(log0, "event=config.reloaded", reloads + 1, ts_deadline(ts_ms(10000))), 0);
    cr_assert_eq(ts_log_count(log0, "event=config.reload_failed"), 0);
    cr_assert_eq(request_on(&h[2], 5, ACME_PATH), 200, "SIGHUP lost the tenants from etcd");

    /* A deleted tenant is gone from both. */
    rev = ts_etcd_delete(&etcd, PREFIX "beta", ts_deadline(5000));
    t0 = ts_now_ms();
    cr_assert_gt(rev, 0);
    wait_applied(rev, t0, "beta deleted");
    cr_assert_eq(request_on(&h[3], 3, BETA_PATH), 401); /* unknown tenant: as a bad credential */

    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_gateway_stop(&gw[i], ts_deadline(ts_ms(10000))), 0);
    cr_assert_geq(ts_etcd_stop(&etcd, ts_deadline(ts_ms(10000))), 0);
}

Test(etcd, a_bad_tenant_in_etcd_refused_at_start_and_kept_out_later, .fini = teardown,
     .timeout = 60)
{
    start_etcd_and_gateways();
    /* Later: a bad document changes nothing and is logged by key and path. */
    int64_t rev = ts_etcd_put(&etcd, PREFIX "bad", "{\"id\":\"bad\",\"secrets\":[],"
                                                  "\"regions\":[\"local\"]}",
                              ts_deadline(5000));
    cr_assert_gt(rev, 0);
    const char *want = "tenant table refused, last snapshot kept: etcd key " PREFIX "bad: "
                       "$.secrets: expected a non-empty array of strings";
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_log_wait(gw[i].proc.err_path, want, 1, ts_deadline(ts_ms(5000))), 0,
                     "gateway %zu did not refuse the bad tenant", i);
    connect_to(&h[0], 0);
    cr_assert_eq(request_on(&h[0], 1, ACME_PATH), 200);
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_gateway_stop(&gw[i], ts_deadline(ts_ms(10000))), 0);

    /* At start: never without a valid table. */
    char config[PATH_MAX];
    write_config(config, sizeof config, etcd.url);
    char *argv[] = {NULL, "--config", config, NULL};
    char bin[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluiced", bin, sizeof bin), 0);
    argv[0] = bin;
    ts_run_t r;
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &r), 0);
    cr_assert_eq(r.code, 2, "exit %d: %s", r.code, r.err);
    cr_assert(strstr(r.err, "etcd key " PREFIX "bad: $.secrets: expected a non-empty array"),
              "%s", r.err);
    ts_run_free(&r);

    /* etcd unreachable at start: exit 1, naming the endpoint. */
    cr_assert_eq(ts_etcd_kill(&etcd), 0);
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(15000)), &r), 0);
    cr_assert_eq(r.code, 1, "exit %d: %s", r.code, r.err);
    cr_assert(strstr(r.err, "cannot read the tenants under " PREFIX) && strstr(r.err, etcd.url),
              "%s", r.err);
    ts_run_free(&r);
}

typedef ts_curl_reply_t reply_t;

/* One admin API request with the test's token; returns the status. */
static long admin_call(const char *addr, const char *method, const char *path, const char *body,
                       reply_t *r)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    const char *hdrs[] = {"Authorization: Bearer " ADMIN_TOKEN, "Content-Type: application/json",
                          NULL};
    long status = ts_curl(method, url, hdrs, body, 10000L, r);
    cr_assert_neq(status, -1, "%s %s: %s", method, path, r->err);
    return status;
}

/* The integer after the first "key": in body (the top-level one for
 * /v1/tenants, whose "revision" comes before "tenants"); -1 when absent. */
static int64_t int_after(const char *body, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *p = strstr(body, needle);
    return p ? strtoll(p + strlen(needle), NULL, 10) : -1;
}

/* Starts etcd with acme and beta and two gateways with an admin API each;
 * their admin addresses into addr[]. */
static void start_with_admin(char addr[2][TS_PROC_LINE_MAX])
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    if (!ts_etcd_available())
        cr_skip_test("no " TS_ETCD_BIN " (Debian package etcd-server)");
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not start");
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "acme", ACME_LOCAL, ts_deadline(5000)), 0);
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "beta", BETA, ts_deadline(5000)), 0);
    char config[PATH_MAX];
    write_config_with(config, sizeof config, etcd.url,
                      ",\"admin\":{\"listen\":\"127.0.0.1:0\","
                      "\"tokens\":[{\"token\":\"" ADMIN_TOKEN "\"}]}");
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(ts_gateway_start(&gw[i], NULL, config, ts_deadline(ts_ms(10000))), 0,
                     "gateway %zu did not start", i);
        cr_assert_eq(ts_gateway_admin_addr(&gw[i], addr[i], TS_PROC_LINE_MAX,
                                           ts_deadline(ts_ms(5000))),
                     0, "no admin line from gateway %zu", i);
    }
}

Test(etcd, an_admin_write_reaches_both_gateways_and_conflicts_are_refused, .fini = teardown,
     .timeout = 120)
{
    char addr[2][TS_PROC_LINE_MAX];
    start_with_admin(addr);
    reply_t r;
    cr_assert_eq(admin_call(addr[0], "GET", "/v1/tenants", NULL, &r), 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"store\":\"etcd\"") && strstr(r.body, "\"id\":\"acme\""), "%s",
              r.body);
    int64_t rev = int_after(r.body, "revision");
    cr_assert_gt(rev, 0, "%s", r.body);
    connect_to(&h[0], 0);
    cr_assert_eq(request_on(&h[0], 1, ACME_PATH), 200);
    connect_to(&h[1], 1);
    cr_assert_eq(request_on(&h[1], 1, ACME_PATH), 200);

    /* The switch through gateway 0's admin API: its 200 means applied there;
     * gateway 1 gets it from its watch. */
    char patch[128];
    snprintf(patch, sizeof patch, "{\"revision\":%lld,\"disable_region\":\"local\"}",
             (long long)rev);
    int64_t t0 = ts_now_ms();
    cr_assert_eq(admin_call(addr[0], "PATCH", "/v1/tenants/acme", patch, &r), 200, "%s", r.body);
    int64_t answered = ts_now_ms() - t0;
    cr_assert(strstr(r.body, "\"enabled_here\":false"), "%s", r.body);
    int64_t wrote = int_after(r.body, "revision");
    cr_assert_gt(wrote, rev, "%s", r.body);
    int64_t worst = wait_applied(wrote, t0, "acme disabled through the admin API");
    fprintf(stderr, "test_etcd: admin write answered in %lld ms, on both gateways in %lld ms\n",
            (long long)answered, (long long)worst);
    cr_assert_lt(worst, 1000, "the admin write took %lld ms to reach both", (long long)worst);
    uint64_t code = UINT64_MAX;
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(ts_h2raw_wait(&h[i], has_close, &code, ts_deadline(ts_ms(5000))), 0,
                     "acme's live tunnel on gateway %zu got no CLOSE", i);
        cr_assert_eq(code, CLOSE_TENANT_DISABLED);
    }
    connect_to(&h[2], 1);
    cr_assert_eq(request_on(&h[2], 1, ACME_PATH), 403, "gateway 1 still serves acme");

    /* Two admins who read the same revision: the first wins, the second
     * gets 409 with the current revision, and the table holds the first. */
    rev = wrote;
    snprintf(patch, sizeof patch, "{\"revision\":%lld,\"max_ttl\":100}", (long long)rev);
    cr_assert_eq(admin_call(addr[0], "PATCH", "/v1/tenants/beta", patch, &r), 200, "%s", r.body);
    int64_t first = int_after(r.body, "revision");
    snprintf(patch, sizeof patch, "{\"revision\":%lld,\"max_ttl\":200}", (long long)rev);
    cr_assert_eq(admin_call(addr[1], "PATCH", "/v1/tenants/beta", patch, &r), 409, "%s", r.body);
    cr_assert(strstr(r.body, "revision conflict"), "%s", r.body);
    wait_applied(first, ts_now_ms(), "beta's max_ttl");
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(admin_call(addr[i], "GET", "/v1/tenants/beta", NULL, &r), 200, "%s", r.body);
        cr_assert_eq(int_after(r.body, "max_ttl"), 100, "gateway %zu: %s", i, r.body);
    }

    /* etcd gone: 503 naming it, nothing changed; back: writes work again. */
    cr_assert_eq(ts_etcd_kill(&etcd), 0);
    snprintf(patch, sizeof patch, "{\"revision\":%lld,\"max_ttl\":300}", (long long)first);
    cr_assert_eq(admin_call(addr[0], "PATCH", "/v1/tenants/beta", patch, &r), 503, "%s", r.body);
    cr_assert(strstr(r.body, "unreachable, nothing written") && strstr(r.body, etcd.url), "%s",
              r.body);
    cr_assert_eq(admin_call(addr[0], "GET", "/v1/tenants/beta", NULL, &r), 200, "%s", r.body);
    cr_assert_eq(int_after(r.body, "max_ttl"), 100, "%s", r.body);
    cr_assert_eq(int_after(r.body, "revision"), first, "%s", r.body);

    size_t back = ts_log_count(gw[0].proc.err_path, "reachable again");
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not restart");
    cr_assert_eq(ts_log_wait(gw[0].proc.err_path, "reachable again", back + 1,
                             ts_deadline(ts_ms(15000))),
                 0, "gateway 0 did not re-read etcd");
    cr_assert_eq(admin_call(addr[0], "PATCH", "/v1/tenants/beta", patch, &r), 200, "%s", r.body);
    cr_assert_eq(int_after(r.body, "max_ttl"), 300, "%s", r.body);

    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_gateway_stop(&gw[i], ts_deadline(ts_ms(10000))), 0);
    cr_assert_geq(ts_etcd_stop(&etcd, ts_deadline(ts_ms(10000))), 0);
}

Test(etcd, the_admin_api_shows_etcd_tenants_and_a_change_made_in_etcd, .fini = teardown,
     .timeout = 60)
{
    char addr[2][TS_PROC_LINE_MAX];
    start_with_admin(addr);
    reply_t r;
    cr_assert_eq(admin_call(addr[0], "GET", "/v1/tenants", NULL, &r), 200, "%s", r.body);
    int64_t rev = int_after(r.body, "revision");
    /* A change that does not validate is refused with its path, nothing written. */
    char patch[128];
    snprintf(patch, sizeof patch, "{\"revision\":%lld,\"kinds\":[\"nope\"]}", (long long)rev);
    cr_assert_eq(admin_call(addr[0], "PATCH", "/v1/tenants/acme", patch, &r), 400, "%s", r.body);
    cr_assert(strstr(r.body, "$.kinds"), "%s", r.body);

    /* The watch runs beside the admin API: a tenant put in etcd shows there. */
    rev = ts_etcd_put(&etcd, PREFIX "gamma",
                      "{\"id\":\"gamma\",\"secrets\":[\"s3\"],\"regions\":[\"local\"]}",
                      ts_deadline(5000));
    cr_assert_gt(rev, 0);
    char want[64];
    snprintf(want, sizeof want, "event=tenant.table source=etcd revision=%lld ", (long long)rev);
    cr_assert_eq(ts_log_wait(gw[0].proc.err_path, want, 1, ts_deadline(ts_ms(5000))), 0,
                 "the gateway did not apply revision %lld", (long long)rev);
    cr_assert_eq(admin_call(addr[0], "GET", "/v1/tenants/gamma", NULL, &r), 200, "%s", r.body);
    cr_assert_eq(int_after(r.body, "revision"), rev, "%s", r.body);
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_gateway_stop(&gw[i], ts_deadline(ts_ms(10000))), 0);
    cr_assert_geq(ts_etcd_stop(&etcd, ts_deadline(ts_ms(10000))), 0);
}
