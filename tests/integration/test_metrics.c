/*
 * test_metrics.c — /metrics, /healthz and /readyz on the admin listener of a
 * real sluiced (gateway/admin.c, metrics.c): a call's packets counted by
 * tenant and direction, the page accepted by Debian's `promtool check
 * metrics`, a real Prometheus server scraping it and answering a query
 * through its HTTP API; connection ends and failed TLS handshakes counted by
 * reason. (/readyz during a drain: tests/integration/test_drain.c.)
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_curl.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_pkt.h"
#include "../support/ts_prometheus.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define ACME_PATH "/v1/tunnel/acme/sfu"
#define CALL_PACKETS 5

static ts_gateway_t gw;
static ts_h2raw_t a;
static ts_prometheus_t prom;
static char admin_addr[64];

static void teardown(void)
{
    ts_h2raw_close(&a);
    ts_prometheus_dispose(&prom);
    ts_gateway_dispose(&gw);
}

static void start(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    char cert[1024], key[1024], conf[PATH_MAX], text[4096];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(text, sizeof text,
             "{\"listen\": [\"127.0.0.1:0\"], \"tls\": {\"cert\": \"%s\", \"key\": \"%s\"},"
             " \"region\": \"local\", \"limits\": {\"capsule_ping_ms\": 0,"
             " \"handshake_timeout_ms\": 10000},"
             " \"regions\": {\"local\": {\"sfu\": [\"builtin:echo\"]}},"
             " \"admin\": {\"listen\": \"127.0.0.1:0\","
             " \"tokens\": [{\"token\": \"root-token-0123456789\"}]},"
             " \"tenants\": [{\"id\": \"acme\", \"secrets\": [\"s1\"], \"regions\": [\"local\"]},"
             " {\"id\": \"beta\", \"secrets\": [\"b1\"], \"regions\": [\"local\"]}]}",
             cert, key);
    cr_assert_eq(ts_config_write_raw(text, conf, sizeof conf), 0);
    cr_assert_eq(ts_gateway_start(&gw, NULL, conf, ts_deadline(ts_ms(10000))), 0,
                 "sluiced did not start (its output is above)");
    cr_assert_eq(ts_gateway_admin_addr(&gw, admin_addr, sizeof admin_addr, ts_deadline(ts_ms(5000))), 0,
                 "no admin line");
}

/* GET path on the admin listener, without a token. Returns the status. */
static long get(const char *path, ts_curl_reply_t *r)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", admin_addr, path);
    long status = ts_curl("GET", url, NULL, NULL, 10000L, r);
    cr_assert_neq(status, -1, "GET %s: %s", path, r->err);
    return status;
}

/* Scrapes until series reaches want (counters only grow) or the deadline. */
static double wait_sample(const char *series, double want)
{
    static ts_curl_reply_t r;
    double v = -1;
    int64_t deadline = ts_deadline(ts_ms(10000));
    while (ts_now_ms() < deadline) {
        cr_assert_eq(get("/metrics", &r), 200);
        if ((v = ts_prom_sample(r.body, series)) >= want)
            break;
        usleep(20 * 1000); /* poll interval of a condition with a deadline */
    }
    return v;
}

static void stop(void)
{
    ts_h2raw_close(&a);
    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(15000))), 0, "sluiced did not exit 0");
}

static int tunnel(ts_h2raw_t *h, int32_t id)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, "s1", 600, NULL, username, sizeof username, cred,
                              sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request(h, id, ACME_PATH, username, cred, 0), 0, "%s", h->err);
    return ts_h2raw_wait_status(h, id, ts_deadline(ts_ms(10000)));
}

static int echoed_all(const ts_h2raw_t *h, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(h, 1);
    size_t n = 0, closes = 0;
    uint64_t code;
    return s && ts_walk_capsules(s->body, s->body_len, &n, &closes, &code) == 0 &&
           n >= CALL_PACKETS;
}

static void call(void)
{
    cr_assert_eq(ts_h2raw_connect(&a, &gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to the gateway: %s", a.err);
    cr_assert_eq(tunnel(&a, 1), 200);
    static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                                  0x12, 0x34, 0x56, 0x78, 'm',  'e',  't',  'r'};
    uint8_t buf[64];
    ssize_t n = capsule_encode_datagram(buf, sizeof buf, rtp, sizeof rtp);
    cr_assert_gt(n, 0);
    for (int i = 0; i < CALL_PACKETS; i++)
        cr_assert_eq(ts_h2raw_send_frame(&a, 0 /* DATA */, 0, 1, buf, (size_t)n), 0, "%s", a.err);
    cr_assert_eq(ts_h2raw_wait(&a, echoed_all, NULL, ts_deadline(ts_ms(10000))), 0,
                 "the echo did not come back");
}

Test(metrics, a_call_is_counted_promtool_accepts_the_page_and_prometheus_scrapes_it,
     .fini = teardown, .timeout = 90)
{
    start();
    ts_curl_reply_t r;
    cr_assert_eq(get("/healthz", &r), 200);
    cr_assert_str_eq(r.body, "ok\n");
    cr_assert_eq(get("/readyz", &r), 200);
    cr_assert_str_eq(r.body, "ready\n");
    cr_assert_eq(get("/v1/tenants", &r), 401, "the admin API still wants its token");

    call();
    const char *up = "sluice_packets_total{tenant=\"acme\",kind=\"sfu\",direction=\"up\"}";
    cr_assert_eq(wait_sample(up, CALL_PACKETS), CALL_PACKETS);
    static ts_curl_reply_t m;
    cr_assert_eq(get("/metrics", &m), 200);
    cr_assert_lt(m.len, sizeof m.body - 1, "the page was cut by the test's buffer");
    cr_assert_eq(ts_prom_sample(m.body, "sluice_packets_total{tenant=\"acme\",kind=\"sfu\",direction=\"down\"}"),
                 CALL_PACKETS);
    cr_assert_eq(ts_prom_sample(m.body, "sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 1);
    cr_assert_eq(ts_prom_sample(m.body, "sluice_connections_open"), 1);
    cr_assert_eq(ts_prom_sample(m.body, "sluice_backend_up{backend=\"builtin:echo\"}"), 1);
    cr_assert_eq(ts_prom_sample(m.body, "sluice_packet_residence_seconds_count{direction=\"up\"}"),
                 CALL_PACKETS);
    cr_assert_eq(ts_prom_sample(m.body, "sluice_tenant_store_up{store=\"inline\"}"), 1);
    cr_assert_null(strstr(m.body, "tenant=\"beta\""), "a tenant without tunnels has no series");

    FILE *f = popen("promtool check metrics", "w");
    cr_assert(f, "promtool (Debian's prometheus package) cannot be run");
    fwrite(m.body, 1, m.len, f);
    int status = pclose(f);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "promtool check metrics refused the page:\n%s", m.body);

    /* A real Prometheus scrapes the admin listener and answers a query. */
    int64_t t0 = ts_now_ms();
    cr_assert_eq(ts_prometheus_start(&prom, admin_addr, ts_deadline(ts_ms(30000))), 0,
                 "prometheus did not start");
    char value[64];
    cr_assert_eq(ts_prometheus_query(&prom, "sluice_packets_total{tenant=\"acme\",direction=\"up\"}",
                                     value, sizeof value, ts_deadline(ts_ms(30000))),
                 0, "Prometheus never had the series");
    cr_assert_str_eq(value, "5");
    fprintf(stderr, "test_metrics: Prometheus started and answered from a scrape in %lld ms\n",
            (long long)(ts_now_ms() - t0));
    cr_assert_eq(ts_prometheus_query(&prom, "up{job=\"sluiced\"}", value, sizeof value,
                                     ts_deadline(ts_ms(10000))),
                 0);
    cr_assert_str_eq(value, "1", "Prometheus saw the target down");
    stop();
}

Test(metrics, connection_ends_and_failed_handshakes_by_reason, .fini = teardown, .timeout = 60)
{
    start();
    /* Cleartext: a 400 and the close. */
    int fd = ts_tcp_connect(&gw.listen[0], ts_deadline(ts_ms(5000)));
    cr_assert_geq(fd, 0);
    cr_assert_eq(ts_tcp_send_all(fd, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    cr_assert_eq(wait_sample("sluice_connections_closed_total{reason=\"not_tls\"}", 1), 1);
    close(fd);

    /* TLS that offers no h2: the handshake fails on ALPN. */
    char url[128];
    snprintf(url, sizeof url, "https://%s/", gw.listen_str[0]);
    char *argv[] = {"curl", "-sk", "--http1.1", "--max-time", "5", url, NULL};
    ts_run_t run;
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &run), 0);
    ts_run_free(&run);
    cr_assert_eq(wait_sample("sluice_tls_handshake_failures_total{reason=\"no_alpn\"}", 1), 1);
    cr_assert_eq(wait_sample("sluice_connections_closed_total{reason=\"tls_handshake\"}", 1), 1);

    /* A client that connects and goes away in the middle of the handshake. */
    fd = ts_tcp_connect(&gw.listen[0], ts_deadline(ts_ms(5000)));
    cr_assert_geq(fd, 0);
    static const uint8_t hello_start[] = {0x16, 0x03, 0x01, 0x00, 0x50, 0x01};
    cr_assert_eq(ts_tcp_send_all(fd, hello_start, sizeof hello_start), 0);
    close(fd);
    cr_assert_geq(wait_sample("sluice_tls_handshake_failures_total{reason=\"eof\"}", 1), 1);
    stop();
}
