/*
 * test_workers.c — $.workers on the real gateway (gateway/worker.h,
 * docs/architecture.md "Workers"): with 2 and 4 event loops, connections
 * spread over every loop and /metrics sums them; a reload reaches every
 * loop (tunnels of a removed tenant close on each, a new tenant opens on
 * each); a drain reaches every loop and the process exits 0; a session
 * resumed on another loop moves there (parked and attached, the backend
 * sees one source throughout); a tenant's max_tunnels and the gateway's
 * max_connections hold for the process.
 *
 * Which loop a connection lands on is the kernel's SO_REUSEPORT hash of its
 * source port: a test opens connections until /metrics shows every loop has
 * one (bounded), and a resume test retries until both kinds of cross-loop
 * resume happened (bounded; each try is 1/2 likely).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_curl.h"
#include "../support/ts_echo.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_pkt.h"
#include "../support/ts_proc.h"
#include "../support/ts_prometheus.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define ROOT "root-token-0123456789"
#define ACME "[{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"local\"],\"kinds\":[\"sfu\"]%s}]"
#define BETA "[{\"id\":\"beta\",\"secrets\":[\"s1\"],\"regions\":[\"local\"],\"kinds\":[\"sfu\"]}]"
#define MAX_CONNS 48 /* connections one test may open to reach every loop */

static ts_echo_t *echo;
static ts_gateway_t gw;
static ts_h2raw_t conns[MAX_CONNS];
static size_t nconns;
static char conf[PATH_MAX];
static char admin_addr[64];

static void teardown(void)
{
    for (size_t i = 0; i < MAX_CONNS; i++)
        ts_h2raw_close(&conns[i]);
    nconns = 0;
    ts_gateway_dispose(&gw);
    if (echo)
        ts_echo_stop(echo);
    echo = NULL;
}

/* The config: workers loops, tenants (a JSON array), the test's echo as the
 * only backend (no probe: it would count as a source), an admin listener. */
static const char *extra_limits = ""; /* more "limits" members, ",\"k\":v" */

static void write_config(int workers, const char *tenants)
{
    char cert[1024], key[1024], text[4096];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(text, sizeof text,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"%s\",\"key\":\"%s\"},"
             "\"workers\":%d,\"region\":\"local\","
             "\"limits\":{\"capsule_ping_ms\":0,\"drain_ms\":300,\"resume_grace_ms\":10000%s},"
             "\"regions\":{\"local\":{\"sfu\":{\"backends\":[\"%s\"],\"probe\":\"none\"}}},"
             "\"admin\":{\"listen\":\"127.0.0.1:0\",\"tokens\":[{\"token\":\"" ROOT "\"}]},"
             "\"tenants\":%s}",
             cert, key, workers, extra_limits, ts_echo_addr_str(echo), tenants);
    if (!conf[0]) {
        cr_assert_eq(ts_config_write_raw(text, conf, sizeof conf), 0);
        return;
    }
    FILE *f = fopen(conf, "w"); /* a reload re-reads the same file */
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0 && fclose(f) == 0, 1);
}

static void start(int workers, const char *tenants)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    conf[0] = '\0';
    cr_assert_not_null(echo = ts_echo_start(AF_INET));
    write_config(workers, tenants);
    cr_assert_eq(ts_gateway_start(&gw, NULL, conf, ts_deadline(ts_ms(10000))), 0,
                 "sluiced did not start (its output is above)");
    cr_assert_eq(ts_gateway_admin_addr(&gw, admin_addr, sizeof admin_addr, ts_deadline(ts_ms(5000))), 0,
                 "no admin line");
    char want[64];
    snprintf(want, sizeof want, "workers=%d", workers);
    cr_assert_eq(ts_log_wait(gw.proc.err_path, want, 1, ts_deadline(ts_ms(5000))), 0,
                 "the ready log line does not say %s", want);
}

static double sample(const char *series)
{
    static ts_curl_reply_t r;
    char url[128];
    snprintf(url, sizeof url, "http://%s/metrics", admin_addr);
    cr_assert_eq(ts_curl("GET", url, NULL, NULL, 10000L, &r), 200, "%s", r.err);
    return ts_prom_sample(r.body, series);
}

static double worker_sample(const char *family, int w)
{
    char series[128];
    snprintf(series, sizeof series, "%s{worker=\"%d\"}", family, w);
    return sample(series);
}

/* A tunnel request for tenant on stream id of c (resuming token unless NULL);
 * returns the status. */
static int request(ts_h2raw_t *c, int32_t id, const char *tenant, const char *token)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1], path[64];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, "s1", 600, NULL, username, sizeof username, cred,
                              sizeof cred),
                 0);
    snprintf(path, sizeof path, "/v1/tunnel/%s/sfu", tenant);
    cr_assert_eq(ts_h2raw_request_resume(c, id, path, username, cred, token, 0), 0, "%s",
                 c->err);
    return ts_h2raw_wait_status(c, id, ts_deadline(ts_ms(10000)));
}

static ts_h2raw_t *connect_one(void)
{
    cr_assert_lt(nconns, MAX_CONNS, "out of connections");
    ts_h2raw_t *c = &conns[nconns++];
    cr_assert_eq(ts_h2raw_connect(c, &gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to the gateway: %s", c->err);
    return c;
}

/* Opens connections, each with a tunnel of tenant on stream 1 whose status
 * goes to status[i], until every one of workers loops has accepted one (and
 * at least min were opened). Returns how many were opened. */
static size_t spread(int workers, size_t min, const char *tenant, int *status)
{
    for (;;) {
        ts_h2raw_t *c = connect_one();
        status[nconns - 1] = request(c, 1, tenant, NULL);
        int all = 1;
        for (int w = 0; w < workers && all; w++)
            all = worker_sample("sluice_worker_connections_accepted_total", w) >= 1;
        if (all && nconns >= min)
            return nconns;
        cr_assert_lt(nconns, MAX_CONNS, "%zu connections did not reach all %d loops", nconns,
                     workers);
    }
}

static int has_close(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    return s && ts_find_close(s->body, s->body_len, arg, NULL, 0) >= 0;
}

static int body_has(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    return s && s->body_len + s->body_over >= *(size_t *)arg;
}

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'w',  'o',  'r',  'k'};

/* One datagram up stream 1 of c, its echo down. */
static void round_trip(ts_h2raw_t *c)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    size_t want = s->body_len + s->body_over + 2 + 1 + sizeof rtp;
    uint8_t buf[64];
    ssize_t n = capsule_encode_datagram(buf, sizeof buf, rtp, sizeof rtp);
    cr_assert_gt(n, 0);
    cr_assert_eq(ts_h2raw_send_frame(c, 0 /* DATA */, 0, 1, buf, (size_t)n), 0, "%s", c->err);
    cr_assert_eq(ts_h2raw_wait(c, body_has, &want, ts_deadline(ts_ms(5000))), 0,
                 "no echo through the tunnel");
}

static void stop_ok(void)
{
    for (size_t i = 0; i < MAX_CONNS; i++)
        ts_h2raw_close(&conns[i]);
    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(15000))), 0, "sluiced did not exit 0");
}

static void spread_and_sum(int workers)
{
    char tenants[256];
    snprintf(tenants, sizeof tenants, ACME, "");
    start(workers, tenants);
    int status[MAX_CONNS];
    size_t n = spread(workers, 2u * (size_t)workers, "acme", status);
    double sum = 0, open = 0;
    for (int w = 0; w < workers; w++) {
        sum += worker_sample("sluice_worker_connections_accepted_total", w);
        open += worker_sample("sluice_worker_connections_open", w);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(status[i], 200, "connection %zu: tunnel status %d", i, status[i]);
    /* The process-wide families are the loops' sums. */
    cr_assert_eq(sample("sluice_connections_accepted_total"), (double)n);
    cr_assert_eq(sum, (double)n);
    cr_assert_eq(open, (double)n);
    cr_assert_eq(sample("sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), (double)n);
    cr_assert_eq(sample("sluice_tunnels_opened_total{tenant=\"acme\",kind=\"sfu\"}"), (double)n);
    cr_log_info("%d loops: %zu connections", workers, n);
    stop_ok();
}

Test(workers, two_loops_both_accept_and_metrics_sum_them, .fini = teardown, .timeout = 60)
{
    spread_and_sum(2);
}

Test(workers, four_loops_all_accept_and_metrics_sum_them, .fini = teardown, .timeout = 60)
{
    spread_and_sum(4);
}

/* Reload: every loop's tunnels of the removed tenant get CLOSE(tenant
 * disabled), and the new tenant opens on every loop. */
Test(workers, a_reload_reaches_every_loop, .fini = teardown, .timeout = 60)
{
    char tenants[256];
    snprintf(tenants, sizeof tenants, ACME, "");
    start(2, tenants);
    int status[MAX_CONNS];
    size_t n = spread(2, 4, "acme", status);
    write_config(2, BETA);
    ts_curl_reply_t r;
    char url[128];
    const char *hdr[] = {"Authorization: Bearer " ROOT, NULL};
    snprintf(url, sizeof url, "http://%s/v1/reload", admin_addr);
    cr_assert_eq(ts_curl("POST", url, hdr, "", 10000L, &r), 200, "%s", r.body);
    for (size_t i = 0; i < n; i++) {
        uint64_t code = 0;
        cr_assert_eq(ts_h2raw_wait(&conns[i], has_close, &code, ts_deadline(ts_ms(5000))), 0,
                     "connection %zu: no CLOSE after the reload", i);
        cr_assert_eq(code, CLOSE_TENANT_DISABLED, "connection %zu: CLOSE 0x%llx", i,
                     (unsigned long long)code);
    }
    char line[1024], want[48];
    cr_assert_eq(ts_log_line(gw.proc.err_path, "event=config.reloaded", 1, line, sizeof line), 0);
    snprintf(want, sizeof want, " tunnels_closed=%zu", n);
    cr_assert(strstr(line, want), "every loop's closed tunnels in one line: %s", line);
    /* New connections, on every loop again, open the new tenant. */
    size_t before = nconns;
    for (int w = 0; w < 2; w++) {
        double was = worker_sample("sluice_worker_connections_accepted_total", w);
        for (int tries = 0; tries < 32; tries++) {
            ts_h2raw_t *c = connect_one();
            cr_assert_eq(request(c, 1, "beta", NULL), 200);
            if (worker_sample("sluice_worker_connections_accepted_total", w) > was)
                break;
        }
        cr_assert_gt(worker_sample("sluice_worker_connections_accepted_total", w), was,
                     "loop %d took no new connection", w);
    }
    cr_log_info("reload: %zu tunnels closed, %zu opened after", n, nconns - before);
    stop_ok();
}

/* Drain: SIGTERM reaches every loop: every connection hears GOAWAY and its
 * tunnel CLOSE(shutting down), and the process exits 0. */
Test(workers, a_drain_reaches_every_loop_and_exits_0, .fini = teardown, .timeout = 60)
{
    char tenants[256];
    snprintf(tenants, sizeof tenants, ACME, "");
    start(2, tenants);
    int status[MAX_CONNS];
    size_t n = spread(2, 4, "acme", status);
    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(15000))), 0, "sluiced did not exit 0");
    for (size_t i = 0; i < n; i++) {
        uint64_t code = 0;
        cr_assert_eq(ts_h2raw_wait(&conns[i], has_close, &code, ts_deadline(ts_ms(5000))), 0,
                     "connection %zu: no CLOSE in the drain", i);
        cr_assert_eq(code, CLOSE_SHUTTING_DOWN);
        cr_assert(conns[i].goaway, "connection %zu: no GOAWAY", i);
    }
    cr_assert_eq(ts_log_count(gw.proc.err_path, "event=drain phase=close"), 1);
    /* The drain line counts every loop's connections and tunnels. */
    char line[1024], want[64];
    cr_assert_eq(ts_log_line(gw.proc.err_path, "event=drain phase=goaway", 1, line, sizeof line),
                 0);
    snprintf(want, sizeof want, " connections=%zu tunnels=%zu ", n, n);
    cr_assert(strstr(line, want), "the drain line counts one loop only: %s", line);
}

/* Resume on another loop: the flow moves there, parked (its connection
 * gone) or attached (taken over, the old stream gets CLOSE(taken over)),
 * and the backend sees one source port throughout. */
Test(workers, a_session_resumes_on_another_loop, .fini = teardown, .timeout = 90)
{
    char tenants[256];
    snprintf(tenants, sizeof tenants, ACME, "");
    start(2, tenants);
    ts_h2raw_t *c = connect_one();
    cr_assert_eq(request(c, 1, "acme", NULL), 200);
    char token[64];
    snprintf(token, sizeof token, "%s", ts_h2raw_stream(c, 1)->session);
    cr_assert_eq(strlen(token), 22, "tunnel-session \"%s\"", token);
    round_trip(c);
    size_t parked = 0, attached = 0;
    for (int i = 0; i < MAX_CONNS - 1 && (!parked || !attached); i++) {
        int park = i % 2;
        size_t detached = ts_log_count(gw.proc.err_path, "event=tunnel.detach");
        if (park) { /* the connection dies: the flow parks on its loop */
            ts_h2raw_close(c);
            cr_assert_eq(ts_log_wait(gw.proc.err_path, "event=tunnel.detach", detached + 1,
                                     ts_deadline(ts_ms(5000))),
                         0, "the tunnel was not parked");
        }
        ts_h2raw_t *next = connect_one();
        cr_assert_eq(request(next, 1, "acme", token), 200, "resume %d", i);
        cr_assert_str_eq(ts_h2raw_stream(next, 1)->session, token);
        if (!park) {
            uint64_t code = 0;
            cr_assert_eq(ts_h2raw_wait(c, has_close, &code, ts_deadline(ts_ms(5000))), 0,
                         "the old stream got no CLOSE");
            cr_assert_eq(code, CLOSE_TAKEN_OVER);
            ts_h2raw_close(c);
        }
        round_trip(next);
        c = next;
        parked = ts_log_count(gw.proc.err_path, "event=session.handoff tenant=acme from_worker=") &&
                         ts_log_count(gw.proc.err_path, "was=parked")
                     ? 1
                     : 0;
        attached = ts_log_count(gw.proc.err_path, "was=attached");
    }
    cr_assert(parked, "no resume of a parked flow landed on another loop");
    cr_assert(attached, "no take-over landed on another loop");
    cr_assert_eq(ts_echo_sources(echo, NULL, 0), 1, "the backend saw more than one source");
    cr_assert_eq(sample("sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 1.0, "one flow, one tunnel");
    stop_ok();
}

/* A tenant's max_tunnels holds for the process: 3 tunnels in all, however
 * the connections spread over the loops; a closed one frees its slot for a
 * connection on any loop. */
Test(workers, a_tenant_cap_holds_across_loops, .fini = teardown, .timeout = 60)
{
    char tenants[256];
    snprintf(tenants, sizeof tenants, ACME, ",\"limits\":{\"max_tunnels\":3}");
    start(2, tenants);
    int status[MAX_CONNS];
    size_t n = spread(2, 8, "acme", status);
    size_t ok = 0, capped = 0;
    for (size_t i = 0; i < n; i++) {
        ok += status[i] == 200;
        capped += status[i] == 429;
    }
    cr_assert_eq(ok, 3, "%zu tunnels open with max_tunnels 3", ok);
    cr_assert_eq(capped, n - 3);
    cr_assert_eq(sample("sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 3.0);
    /* One ends (CLOSE, END_STREAM): its slot is free for any loop. */
    for (size_t i = 0; i < n; i++) {
        if (status[i] == 200) {
            uint8_t close[8];
            ssize_t len = capsule_encode_close(close, sizeof close, CLOSE_NORMAL, "", 0);
            cr_assert_gt(len, 0);
            cr_assert_eq(ts_h2raw_send_frame(&conns[i], 0 /* DATA */, 1 /* END_STREAM */, 1,
                                             close, (size_t)len),
                         0, "%s", conns[i].err);
            break;
        }
    }
    int64_t deadline = ts_deadline(ts_ms(5000));
    while (sample("sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}") != 2.0 && ts_now_ms() < deadline)
        usleep(10 * 1000); /* poll interval of a condition with a deadline */
    int got = 0;
    for (int tries = 0; tries < 8 && got != 200; tries++)
        got = request(connect_one(), 1, "acme", NULL);
    cr_assert_eq(got, 200, "the freed slot was not given out");
    cr_assert_eq(sample("sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 3.0);
    stop_ok();
}

/* limits.max_connections is the process's: with 2 loops each takes 1 of 2,
 * so at most 2 are open however many arrive (each loop alone would take 2). */
Test(workers, max_connections_is_shared_by_the_loops, .fini = teardown, .timeout = 60)
{
    char tenants[256];
    snprintf(tenants, sizeof tenants, ACME, "");
    extra_limits = ",\"max_connections\":2";
    start(2, tenants);
    for (int i = 0; i < 12; i++) {
        ts_h2raw_t *c = &conns[nconns++];
        ts_h2raw_connect(c, &gw.listen[0], NULL, ts_deadline(ts_ms(5000))); /* may be refused */
    }
    double open = sample("sluice_connections_open");
    double refused = sample("sluice_connections_refused_total{reason=\"max_connections\"}");
    cr_assert_leq(open, 2.0, "%.0f connections open with max_connections 2", open);
    cr_assert_eq(open + refused, 12.0, "open %.0f, refused %.0f", open, refused);
    cr_assert_geq(worker_sample("sluice_worker_connections_open", 0) +
                      worker_sample("sluice_worker_connections_open", 1),
                  open);
    stop_ok();
}

/* $.workers is validated like every key: out of range, a JSON-path error
 * and exit 2; in range, "config ok". */
Test(workers, the_key_is_checked_with_its_path, .fini = teardown, .timeout = 30)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_not_null(echo = ts_echo_start(AF_INET));
    char bin[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluiced", bin, sizeof bin), 0);
    static const struct {
        int workers, code;
        const char *say;
    } cases[] = {
        {0, 2, "$.workers: expected an integer from 1 to 64, got 0"},
        {65, 2, "$.workers: expected an integer from 1 to 64, got 65"},
        {64, 0, "config ok"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conf[0] = '\0';
        write_config(cases[i].workers, "[]");
        char *argv[] = {bin, "--check-config", conf, NULL};
        ts_run_t r = {0};
        cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &r), 0);
        cr_expect_eq(r.code, cases[i].code, "workers %d: exit %d", cases[i].workers, r.code);
        cr_expect(strstr(r.out, cases[i].say) || strstr(r.err, cases[i].say),
                  "workers %d: no \"%s\" in\n%s%s", cases[i].workers, cases[i].say, r.out, r.err);
        ts_run_free(&r);
    }
}
