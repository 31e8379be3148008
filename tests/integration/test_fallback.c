/*
 * test_fallback.c — the fallback ladder (docs/shim.md) with the real
 * sluice-shim and sluiced on loopback: a STUN responder that answers sends
 * the flow direct (no tunnel); a silent address, or UDP dropped by an
 * nftables rule in a network namespace the test makes, sends it through the
 * tunnel; a direct flow whose path goes silent moves to the tunnel; and
 * `sluice-shim probe` reports the rungs. Each tunnel's tunnel-fallback
 * (why the shim took it) is counted by the gateway: its /metrics, on an
 * admin listener, says so under the reason the shim really had.
 *
 * The decision lines are on the shim's stdout and waited for with a
 * deadline; nothing here sleeps.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_curl.h"
#include "../support/ts_fixture.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_stun.h"
#include "../support/ts_util.h"

#define START_MS 15000
#define WAIT_MS 10000

static ts_fixture_t fx;
static ts_shim_t shim;
static int shim_started;
static ts_stun_t *stun;
static int app = -1, silent_fd = -1;
static ts_run_t run;
static char admin_addr[64];

static void teardown(void)
{
    if (app >= 0)
        close(app);
    if (silent_fd >= 0)
        close(silent_fd);
    app = silent_fd = -1;
    if (shim_started)
        ts_shim_dispose(&shim);
    shim_started = 0;
    ts_stun_stop(stun);
    stun = NULL;
    ts_run_free(&run);
    ts_fixture_teardown(&fx);
}

static void need_build(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
}

/* ts_fixture_start with an admin listener (for /metrics) spliced into the
 * standard config; its address goes to admin_addr. */
static void start_gateway(void)
{
    memset(&fx, 0, sizeof fx);
    fx.family = AF_INET;
    fx.echo = ts_echo_start(AF_INET);
    cr_assert_not_null(fx.echo, "the echo backend did not start");
    ts_config_t c;
    ts_fixture_std_config(&c, AF_INET, ts_echo_addr_str(fx.echo));
    char text[8192];
    int n = ts_config_render(&c, text, sizeof text - 128);
    cr_assert_gt(n, 0);
    char *end = strrchr(text, '}');
    cr_assert_not_null(end);
    snprintf(end, sizeof text - (size_t)(end - text),
             ", \"admin\": {\"listen\": \"127.0.0.1:0\","
             " \"tokens\": [{\"token\": \"root-token-0123456789\"}]}}");
    cr_assert_eq(ts_config_write_raw(text, fx.config, sizeof fx.config), 0);
    fx.gw_started = 1;
    cr_assert_eq(ts_gateway_start(&fx.gw, NULL, fx.config, ts_deadline(ts_ms(START_MS))), 0,
                 "sluiced did not start");
    cr_assert_eq(ts_gateway_admin_addr(&fx.gw, admin_addr, sizeof admin_addr,
                                       ts_deadline(ts_ms(5000))),
                 0, "no admin line");
}

/* The gateway's count of tunnels for acme/sfu with this tunnel-fallback
 * reason (or route, with by "route"), from one scrape of /metrics; -1 when
 * the series is absent (no tunnel for acme/sfu yet). The tunnel is counted
 * before its 200 goes out, so after a round trip through it no waiting is
 * needed. */
static double relay_count(const char *by, const char *value)
{
    static ts_curl_reply_t r;
    char url[128], series[160];
    snprintf(url, sizeof url, "http://%s/metrics", admin_addr);
    cr_assert_eq(ts_curl("GET", url, NULL, NULL, 10000L, &r), 200, "GET /metrics: %s", r.err);
    snprintf(series, sizeof series,
             "sluice_tunnels_by_%s_total{tenant=\"acme\",kind=\"sfu\",%s=\"%s\"}",
             strcmp(by, "route") ? "fallback" : "route", strcmp(by, "route") ? "reason" : "route",
             value);
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* Gateway (with the test's echo as the sfu backend) and a shim with extra
 * arguments; the app socket is bound. */
static void start_all(const char *const *extra)
{
    char url[256];
    start_gateway();
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", url, sizeof url), 0);
    ts_shim_opts_t o = {.gateway = url, .tenant = TS_FX_TENANT, .secret = TS_FX_SECRET};
    for (size_t i = 0; extra[i] && i < 7; i++)
        o.extra[i] = extra[i];
    cr_assert_eq(ts_shim_start(&shim, &o, ts_deadline(ts_ms(START_MS))), 0,
                 "sluice-shim did not start");
    shim_started = 1;
    app = ts_udp_bind(AF_INET, NULL);
    cr_assert_geq(app, 0);
}

/* Sends one RTP-looking packet tagged i and waits for it to come back
 * unchanged. Returns 0 or -1. */
static int round_trip(uint32_t i, int64_t deadline)
{
    uint8_t pkt[12] = {0x80, 0x60, 0, 0, (uint8_t)(i >> 24), (uint8_t)(i >> 16),
                       (uint8_t)(i >> 8), (uint8_t)i, 1, 2, 3, 4};
    uint8_t back[64];
    if (ts_udp_send(app, &shim.listen, pkt, sizeof pkt) < 0)
        return -1;
    for (int k = 0; k < 64; k++) {
        ssize_t n = ts_udp_recv(app, back, sizeof back, deadline, NULL);
        if (n < 0)
            return -1;
        if ((size_t)n == sizeof pkt && memcmp(back, pkt, sizeof pkt) == 0)
            return 0; /* an earlier packet's late echo is skipped */
    }
    return -1;
}

/* The app keeps talking: a packet, then up to 50 ms for any reply, until a
 * reply comes (the path works again) or the deadline. Then the shim's line
 * starting with prefix. Returns 0 with the line in out, or -1. */
static int talk_until_line(const char *prefix, char *out, size_t cap, int64_t deadline)
{
    uint8_t back[64];
    int answered = 0;
    for (uint32_t i = 1000; i < 1000 + 400 && !answered && ts_now_ms() < deadline; i++) {
        uint8_t pkt[8] = {0x80, 0x60, 0, 0, 0, 0, (uint8_t)(i >> 8), (uint8_t)i};
        ts_udp_send(app, &shim.listen, pkt, sizeof pkt);
        answered = ts_udp_recv(app, back, sizeof back, ts_deadline(50), NULL) >= 0;
    }
    if (!answered)
        return -1;
    return ts_proc_wait_line(&shim.proc, prefix, deadline, out, cap);
}

static void flow_prefix(const char *way, char *out, size_t cap)
{
    ts_addr_t local;
    socklen_t len = sizeof local.sa;
    char a[64];
    cr_assert_eq(getsockname(app, (struct sockaddr *)&local.sa, &len), 0);
    local.len = len;
    snprintf(out, cap, "sluice-shim flow %s %s (", ts_addr_str(&local, a, sizeof a), way);
}

Test(fallback, stun_answers_flow_goes_direct, .fini = teardown, .timeout = 60)
{
    need_build();
    stun = ts_stun_start(AF_INET);
    cr_assert_not_null(stun);
    const char *extra[] = {"--direct", ts_stun_addr_str(stun), NULL};
    start_all(extra);

    char want[128], line[TS_PROC_LINE_MAX];
    flow_prefix("direct", want, sizeof want);
    cr_assert_eq(round_trip(1, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "the first packet (held during the check) did not come back");
    cr_assert_eq(ts_proc_wait_line(&shim.proc, "sluice-shim flow ", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof line), 0);
    cr_expect_eq(strncmp(line, want, strlen(want)), 0, "line: %s (want %s...)", line, want);
    cr_expect_not_null(strstr(line, "(stun answered in "), "%s", line);
    for (uint32_t i = 2; i < 22; i++)
        cr_assert_eq(round_trip(i, ts_deadline(ts_ms(WAIT_MS))), 0, "packet %u", i);
    cr_expect_geq(ts_stun_echoed(stun), 21, "the app's packets reached the direct address");
    cr_expect_eq(ts_echo_packets(fx.echo), 0, "no packet went through the tunnel");
    cr_expect_eq(relay_count("fallback", "forced"), -1, "no tunnel, so no relay share");
    fprintf(stderr, "fallback: %s\n", line);

    /* A second flow reuses the cached decision: no new check. */
    uint64_t req = ts_stun_requests(stun);
    int first = app;
    app = ts_udp_bind(AF_INET, NULL);
    cr_assert_eq(round_trip(99, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_assert_eq(ts_proc_wait_line(&shim.proc, "sluice-shim flow ", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof line), 0);
    cr_expect_not_null(strstr(line, "direct (cached: stun answered in "), "%s", line);
    cr_expect_eq(ts_stun_requests(stun), req, "the cached decision sent no new check");
    close(first);

    const char *what;
    int code;
    cr_assert_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(5000))), 0);
    shim_started = 0;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

Test(fallback, no_answer_flow_goes_through_tunnel, .fini = teardown, .timeout = 60)
{
    need_build();
    ts_addr_t silent;
    silent_fd = ts_udp_bind(AF_INET, &silent); /* bound, never answers */
    cr_assert_geq(silent_fd, 0);
    char s[64];
    ts_addr_str(&silent, s, sizeof s);
    const char *extra[] = {"--direct", s, "--direct-budget-ms", "400", NULL};
    start_all(extra);

    char want[128], line[TS_PROC_LINE_MAX];
    flow_prefix("tunnel", want, sizeof want);
    int64_t t0 = ts_now_ms();
    cr_assert_eq(round_trip(1, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "the held packet did not come back through the tunnel");
    int64_t took = ts_now_ms() - t0;
    cr_assert_eq(ts_proc_wait_line(&shim.proc, "sluice-shim flow ", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof line), 0);
    cr_expect_eq(strncmp(line, want, strlen(want)), 0, "line: %s", line);
    cr_expect_not_null(strstr(line, "(no stun answer in 4"), "%s", line);
    cr_expect_geq(took, 400, "the first packet waited for the budget: %lld ms", (long long)took);
    for (uint32_t i = 2; i < 12; i++)
        cr_assert_eq(round_trip(i, ts_deadline(ts_ms(WAIT_MS))), 0, "packet %u", i);
    cr_expect_geq(ts_echo_packets(fx.echo), 11, "the packets went through the gateway");
    cr_expect_eq(relay_count("fallback", "no_answer"), 1, "the gateway knows why");
    cr_expect_eq(relay_count("fallback", "none"), 0);
    cr_expect_eq(relay_count("route", "direct"), 1);
    fprintf(stderr, "fallback: %s; first packet back after %lld ms\n", line, (long long)took);

    const char *what;
    int code;
    cr_assert_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(5000))), 0);
    shim_started = 0;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

Test(fallback, direct_flow_that_goes_silent_moves_to_tunnel, .fini = teardown, .timeout = 60)
{
    need_build();
    stun = ts_stun_start(AF_INET);
    cr_assert_not_null(stun);
    const char *extra[] = {"--direct", ts_stun_addr_str(stun), "--direct-silence-ms", "500",
                           NULL};
    start_all(extra);

    char line[TS_PROC_LINE_MAX], want[128];
    cr_assert_eq(round_trip(1, ts_deadline(ts_ms(WAIT_MS))), 0);
    flow_prefix("direct", want, sizeof want);
    cr_assert_eq(ts_proc_wait_line(&shim.proc, "sluice-shim flow ", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof line), 0);
    cr_assert_eq(strncmp(line, want, strlen(want)), 0, "%s", line);
    cr_expect_eq(ts_echo_packets(fx.echo), 0);

    ts_stun_mute(stun, 1);
    flow_prefix("tunnel", want, sizeof want);
    int64_t t0 = ts_now_ms();
    cr_assert_eq(talk_until_line("sluice-shim flow ", line, sizeof line,
                                 ts_deadline(ts_ms(WAIT_MS))), 0,
                 "no line saying the flow left the silent direct path");
    int64_t took = ts_now_ms() - t0;
    cr_expect_eq(strncmp(line, want, strlen(want)), 0, "%s", line);
    cr_expect_not_null(strstr(line, "(direct silent for 500 ms)"), "%s", line);
    cr_expect_geq(took, 500);
    /* The app did nothing: its packets now come back through the gateway. */
    cr_assert_eq(round_trip(5000, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_expect_gt(ts_echo_packets(fx.echo), 0);
    cr_expect_eq(relay_count("fallback", "direct_silent"), 1, "the gateway knows why");
    cr_expect_eq(relay_count("fallback", "no_answer"), 0);
    fprintf(stderr, "fallback: %s after %lld ms of silence\n", line, (long long)took);

    const char *what;
    int code;
    cr_assert_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(5000))), 0);
    shim_started = 0;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* Without --direct the tunnel is the only way: "forced". */
Test(fallback, without_direct_the_tunnel_is_forced, .fini = teardown, .timeout = 60)
{
    need_build();
    const char *extra[] = {NULL};
    start_all(extra);
    cr_assert_eq(round_trip(1, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_expect_eq(relay_count("fallback", "forced"), 1);
    cr_expect_eq(relay_count("fallback", "none"), 0);
    cr_expect_eq(relay_count("route", "direct"), 1);
    cr_expect_eq(relay_count("route", "proxy"), 0);

    const char *what;
    int code;
    cr_assert_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(5000))), 0);
    shim_started = 0;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* Runs a command to completion; returns its exit code or -1. */
static int sh(const char *cmd)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    ts_run_free(&run);
    if (ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &run) < 0)
        return -1;
    return run.code;
}

/* A network namespace of our own (criterion runs each test in its own
 * process, so only this test is in it) where nftables drops UDP to the
 * direct address, as a locked-down network does. */
Test(fallback, udp_dropped_by_nftables_goes_through_tunnel, .fini = teardown, .timeout = 60)
{
    need_build();
    if (unshare(CLONE_NEWNET) < 0)
        cr_skip_test("cannot make a network namespace (unshare: %s)", strerror(errno));
    if (sh("ip link set lo up") != 0)
        cr_skip_test("cannot bring lo up in the namespace: %s", run.err ? run.err : "");
    stun = ts_stun_start(AF_INET);
    cr_assert_not_null(stun);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "nft add table inet t && "
             "nft add chain inet t o '{ type filter hook output priority 0; }' && "
             "nft add rule inet t o meta l4proto udp udp dport %u drop",
             ts_addr_port(ts_stun_addr(stun)));
    if (sh(cmd) != 0)
        cr_skip_test("nft is not usable here: %s", run.err ? run.err : "");

    const char *extra[] = {"--direct", ts_stun_addr_str(stun), NULL};
    start_all(extra);
    char line[TS_PROC_LINE_MAX], want[128];
    flow_prefix("tunnel", want, sizeof want);
    cr_assert_eq(round_trip(1, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_assert_eq(ts_proc_wait_line(&shim.proc, "sluice-shim flow ", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof line), 0);
    cr_expect_eq(strncmp(line, want, strlen(want)), 0, "%s", line);
    cr_expect_not_null(strstr(line, "(udp blocked (Operation not permitted) after "), "%s",
                       line);
    cr_expect_eq(ts_stun_requests(stun), 0, "the rule let a request through");
    cr_expect_geq(ts_echo_packets(fx.echo), 1);
    cr_expect_eq(relay_count("fallback", "udp_blocked"), 1, "the gateway knows why");
    fprintf(stderr, "fallback (netns, nft drop): %s\n", line);

    const char *what;
    int code;
    cr_assert_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(5000))), 0);
    shim_started = 0;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* ---- sluice-shim probe ---------------------------------------------------- */

static void run_probe(const char *direct, const char *secret)
{
    char url[256];
    ts_shim_argv_t a;

    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", url, sizeof url), 0);
    cr_assert_eq(ts_shim_argv_init(&a, "probe", url), 0);
    ts_shim_argv_add(&a, (const char *const[]){"--tenant", TS_FX_TENANT, "--kind", "sfu",
                                               "--secret", secret, NULL});
    if (direct)
        ts_shim_argv_add(&a, (const char *const[]){"--direct", direct, "--direct-budget-ms",
                                                   "300", NULL});
    ts_run_free(&run);
    cr_assert_eq(ts_run(ts_shim_argv(&a), NULL, ts_deadline(ts_ms(30000)), &run), 0);
    fprintf(stderr, "---- probe (exit %d):\n%s", run.code, run.out);
}

Test(fallback, probe_reports_rungs, .fini = teardown, .timeout = 90)
{
    need_build();
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0, "sluiced did not start");
    stun = ts_stun_start(AF_INET);
    cr_assert_not_null(stun);

    /* Everything works. */
    run_probe(ts_stun_addr_str(stun), TS_FX_SECRET);
    cr_expect_eq(run.code, 0);
    char want[128];
    snprintf(want, sizeof want, "probe udp %s: ok in ", ts_stun_addr_str(stun));
    cr_expect_not_null(strstr(run.out, want), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "(stun answered in "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "probe proxy: none (direct)\n"), "%s", run.out);
    snprintf(want, sizeof want, "probe tls %s: ok in ", fx.gw.listen_str[0]);
    cr_expect_not_null(strstr(run.out, want), "%s", run.out);
    cr_expect_not_null(strstr(run.out, " ms direct (alpn=h2 "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "probe tunnel acme/sfu: ok in "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "probe result: direct udp works; tunnel works\n"), "%s",
                       run.out);

    /* UDP silent, the tunnel refused: nothing works. */
    ts_addr_t silent;
    silent_fd = ts_udp_bind(AF_INET, &silent);
    char s[64];
    ts_addr_str(&silent, s, sizeof s);
    run_probe(s, "wrong-secret");
    cr_expect_eq(run.code, 1);
    cr_expect_not_null(strstr(run.out, ": failed in "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "(no stun answer in "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "probe tunnel acme/sfu: refused in "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "(401 "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "probe result: nothing works\n"), "%s", run.out);

    /* No --direct, tunnel fine: the tunnel rung alone is enough. */
    run_probe(NULL, TS_FX_SECRET);
    cr_expect_eq(run.code, 0);
    cr_expect_not_null(strstr(run.out, "probe udp: skipped (no --direct)\n"), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "probe result: tunnel works\n"), "%s", run.out);

    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

Test(fallback, probe_with_no_gateway_fails, .fini = teardown, .timeout = 60)
{
    need_build();
    char bin[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluice-shim", bin, sizeof bin), 0);
    ts_addr_t closed;
    int fd = ts_udp_bind(AF_INET, &closed); /* a port nothing listens on (TCP too, likely) */
    close(fd);
    char url[96], d[64];
    snprintf(url, sizeof url, "https://%s", ts_addr_str(&closed, d, sizeof d));
    char *argv[] = {bin, "probe", "--gateway", url, "--tenant", "acme", "--kind", "sfu",
                    "--secret", "x", "--direct", d, NULL};
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(30000)), &run), 0);
    cr_expect_eq(run.code, 1, "out: %s err: %s", run.out, run.err);
    cr_expect_not_null(strstr(run.out, "(udp refused "), "%s", run.out);
    cr_expect_not_null(strstr(run.out, "probe tunnel acme/sfu: skipped (no connection"), "%s",
                       run.out);
    cr_expect_not_null(strstr(run.out, "probe result: nothing works\n"), "%s", run.out);
}
