/*
 * test_lb.c — a fleet behind a load balancer (issue 8 §4; docs/operations.md,
 * "Scaling out"): Debian's HAProxy in TCP mode with send-proxy-v2 in front of
 * two real gateways that share a real etcd (the fleet's member keys carry
 * each node's advertised address, $.node.address).
 *
 *  - the gateways read the PROXY header on their balancer-facing listener
 *    ("proxy_protocol": true) and log the client's own address, not
 *    HAProxy's; shims through HAProxy spread across both gateways;
 *  - a shim whose connection is cut reconnects through HAProxy, lands on the
 *    other gateway (round robin), gets 421 with tunnel-node naming the owner's
 *    direct listener, reconnects there and resumes: the backend sees one
 *    source address throughout and no packet is lost beyond the reconnect
 *    gap (printed);
 *  - one gateway drained (SIGTERM) while calls run: every call continues.
 *    Today's drain ends the sessions of the drained gateway (CLOSE(shutting
 *    down), proto/README.md §8.1), so its calls re-open on the other gateway.
 *
 * Every wait is for a line or a condition with a deadline; nothing sleeps.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_cutter.h"
#include "../support/ts_echo.h"
#include "../support/ts_etcd.h"
#include "../support/ts_flow.h"
#include "../support/ts_haproxy.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_squid.h"
#include "../support/ts_util.h"

#define PREFIX "/sluice/tenants/"
#define ACME "{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"local\"]}"
#define START_MS 20000
#define WAIT_MS 15000
#define SHIMS 4

static ts_etcd_t etcd;
static ts_echo_t *echo;
static ts_gateway_t gw[2];
static char direct[2][64]; /* each node's advertised address: its plain listener */
static ts_haproxy_t lb;
static ts_cutter_t *cutter;
static ts_proc_t shim[SHIMS];
static ts_addr_t shim_addr[SHIMS];
static int fds[SHIMS] = {-1, -1, -1, -1};

static void teardown(void)
{
    for (size_t i = 0; i < SHIMS; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
        ts_proc_dispose(&shim[i]);
    }
    ts_cutter_stop(cutter);
    cutter = NULL;
    ts_haproxy_dispose(&lb);
    for (size_t i = 0; i < 2; i++)
        ts_gateway_dispose(&gw[i]);
    ts_etcd_dispose(&etcd);
    ts_echo_stop(echo);
    echo = NULL;
}

TestSuite(lb, .fini = teardown, .timeout = 150);

static void start_fleet(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    if (!ts_etcd_available())
        cr_skip_test("no " TS_ETCD_BIN " (Debian package etcd-server)");
    if (!ts_haproxy_available())
        cr_skip_test("no haproxy (Debian package haproxy)");
    cr_assert_not_null(echo = ts_echo_start(AF_INET));
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(START_MS))), 0, "etcd did not start");
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "acme", ACME, ts_deadline(5000)), 0);
    char cert[PATH_MAX], key[PATH_MAX], text[4 * PATH_MAX], config[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    for (int g = 0; g < 2; g++) {
        /* The direct listener's port is in the config (node.address): one
         * that was free a moment ago. The balancer's listener takes port 0. */
        snprintf(direct[g], sizeof direct[g], "127.0.0.1:%u", (unsigned)ts_free_tcp_port());
        snprintf(text, sizeof text,
                 "{\"listen\":[{\"address\":\"127.0.0.1:0\",\"proxy_protocol\":true},\"%s\"],"
                 "\"tls\":{\"cert\":\"%s\",\"key\":\"%s\"},"
                 "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"%s\"]}},"
                 "\"limits\":{\"capsule_ping_ms\":0},"
                 "\"node\":{\"id\":\"gw-%d\",\"address\":\"%s\"},"
                 "\"tenant_store\":{\"type\":\"etcd\",\"endpoints\":[\"%s\"],"
                 "\"prefix\":\"" PREFIX "\",\"lease_ttl_s\":2}}",
                 direct[g], cert, key, ts_echo_addr_str(echo), g, direct[g], etcd.url);
        cr_assert_eq(ts_config_write_raw(text, config, sizeof config), 0);
        cr_assert_eq(ts_gateway_start(&gw[g], NULL, config, ts_deadline(ts_ms(START_MS))), 0,
                     "gateway %d did not start", g);
        cr_assert_eq(gw[g].nlisten, 2);
    }
    for (int g = 0; g < 2; g++)
        cr_assert_eq(ts_log_wait(gw[g].proc.err_path, "fleet: 2 live gateways in region local",
                                 1, ts_deadline(ts_ms(WAIT_MS))),
                     0, "gateway %d never counted 2 live gateways", g);
    ts_addr_t backends[2] = {gw[0].listen[0], gw[1].listen[0]};
    cr_assert_eq(ts_haproxy_start(&lb, backends, 2, 1, ts_deadline(ts_ms(START_MS))), 0,
                 "haproxy did not start");
}

/* Shim i through url (HAProxy, or the cutter in front of it), one UDP
 * socket primed through it. */
static void shim_start(int i, const char *to)
{
    char url[128], line[TS_PROC_LINE_MAX];
    ts_shim_argv_t a;

    snprintf(url, sizeof url, "https://%s", to);
    cr_assert_eq(ts_shim_argv_init(&a, NULL, url), 0);
    ts_shim_argv_add(&a, (const char *const[]){"--listen", "127.0.0.1:0", "--reconnect-min-ms",
                                               "50", "--reconnect-max-ms", "400", "-v",
                                               "--tenant", "acme", "--kind", "sfu", "--secret",
                                               "s1", NULL});
    cr_assert_not_null(ts_shim_argv(&a));
    cr_assert_eq(ts_proc_spawn(&shim[i], "sluice-shim", ts_shim_argv(&a), 0), 0);
    cr_assert_eq(ts_proc_wait_line(&shim[i], "sluice-shim listening ",
                                   ts_deadline(ts_ms(START_MS)), line, sizeof line),
                 0);
    cr_assert_eq(ts_addr_parse(line + strlen("sluice-shim listening "), &shim_addr[i]), 0);
    cr_assert_geq(fds[i] = ts_udp_bind(AF_INET, NULL), 0);
    cr_assert_eq(ts_flow_prime(fds[i], &shim_addr[i], 100, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "shim %d: no echo through the balancer", i);
}

/* Tunnels each gateway opened (fresh or resumed). */
static size_t tunnels_on(int g, const char *how)
{
    char needle[32];
    snprintf(needle, sizeof needle, "event=tunnel.%s ", how);
    return ts_log_count(gw[g].proc.err_path, needle);
}

/* A paced call on each of the n shims: packet i every PACE_MS, its echo
 * timed; at packet at, event() runs. Fills back_at[shim][i] (0: lost). */
enum { N = 600, PACE_MS = 5, TAIL_MS = 500 };
static int64_t back_at[SHIMS][N];

static void run_calls(int n, int at, void (*event)(void))
{
    uint8_t pkt[64], buf[256];
    memset(back_at, 0, sizeof back_at);
    memset(pkt, 0, sizeof pkt);
    pkt[0] = 0x80; /* RTP */
    pkt[4] = 0xc7;
    int64_t deadline = ts_deadline(ts_ms(40000));
    /* After the last packet, up to TAIL_MS more for the echoes still on
     * their way: a packet is lost when it never comes back, not when it
     * comes back more than one pace after the last send. */
    for (int i = 0; i < N + TAIL_MS / PACE_MS && ts_remaining_ms(deadline) > 0; i++) {
        if (i == at)
            event();
        if (i >= N) {
            int all = 1;
            for (int s = 0; s < n; s++)
                all &= back_at[s][N - 1] != 0;
            if (all)
                break;
        }
        pkt[2] = (uint8_t)(i >> 8);
        pkt[3] = (uint8_t)i;
        for (int s = 0; s < n && i < N; s++) {
            pkt[5] = (uint8_t)s;
            cr_assert_eq(ts_udp_send(fds[s], &shim_addr[s], pkt, sizeof pkt), 0);
        }
        int64_t until = ts_deadline(ts_ms(PACE_MS));
        do {
            struct pollfd p[SHIMS];
            for (int s = 0; s < n; s++)
                p[s] = (struct pollfd){.fd = fds[s], .events = POLLIN};
            if (poll(p, (nfds_t)n, ts_remaining_ms(until)) <= 0)
                break;
            for (int s = 0; s < n; s++) {
                ssize_t k;
                while ((k = recv(fds[s], buf, sizeof buf, MSG_DONTWAIT)) > 0) {
                    int j = buf[2] << 8 | buf[3];
                    if (k == (ssize_t)sizeof pkt && buf[4] == 0xc7 && buf[5] == s && j < N &&
                        !back_at[s][j])
                        back_at[s][j] = ts_now_ms();
                }
            }
        } while (ts_remaining_ms(until) > 0);
    }
}

/* Shim s's call: packets lost from packet `from` on, and the longest gap
 * between two echoes. */
static int lost_after(int s, int from, int64_t *gap)
{
    int64_t prev = 0;
    int lost = 0;
    *gap = 0;
    for (int i = 0; i < N; i++) {
        if (!back_at[s][i]) {
            lost += i >= from;
            continue;
        }
        if (prev && back_at[s][i] - prev > *gap)
            *gap = back_at[s][i] - prev;
        prev = back_at[s][i];
    }
    return lost;
}

Test(lb, gateways_log_the_real_client_and_tunnels_spread)
{
    start_fleet();
    /* A connection of our own: its port is the client's, HAProxy's is not. */
    int fd = ts_tcp_connect(&lb.addr, ts_deadline(ts_ms(WAIT_MS)));
    cr_assert_geq(fd, 0);
    ts_addr_t me;
    socklen_t len = sizeof me.sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&me.sa, &len), 0);
    me.len = len;
    char needle[128], line[TS_PROC_LINE_MAX] = "";
    snprintf(needle, sizeof needle, "conn 127.0.0.1:%u: PROXY v2 header from 127.0.0.1:",
             (unsigned)ts_addr_port(&me));
    int64_t deadline = ts_deadline(ts_ms(WAIT_MS));
    int found = -1;
    while (found < 0 && ts_remaining_ms(deadline) > 0) {
        for (int g = 0; g < 2 && found < 0; g++)
            if (ts_log_line(gw[g].proc.err_path, needle, 1, line, sizeof line) == 0)
                found = g;
        if (found < 0)
            poll(NULL, 0, 20); /* bounded by the deadline */
    }
    close(fd);
    cr_assert_geq(found, 0, "no gateway logged the client's own address (%s)", needle);
    const char *via = strstr(line, "header from 127.0.0.1:") + strlen("header from 127.0.0.1:");
    cr_assert_neq(atoi(via), ts_addr_port(&me), "%s", line);
    cr_log_info("gateway %d: %s", found, line);

    for (int i = 0; i < SHIMS; i++)
        shim_start(i, lb.addr_str);
    size_t on0 = tunnels_on(0, "open"), on1 = tunnels_on(1, "open");
    cr_log_info("%d shims through HAProxy: %zu tunnels on gateway 0, %zu on gateway 1", SHIMS,
                on0, on1);
    cr_expect_eq(on0 + on1, SHIMS);
    cr_expect_geq(on0, 1, "gateway 0 got no tunnel");
    cr_expect_geq(on1, 1, "gateway 1 got no tunnel");
    for (int g = 0; g < 2; g++)
        cr_expect_eq(ts_log_count(gw[g].proc.err_path, " reason=proxy_header "), 0);

    /* A client that reaches the PROXY listener itself, without a header: a
     * TLS ClientHello where the header belongs is refused and counted. */
    fd = ts_tcp_connect(&gw[0].listen[0], ts_deadline(ts_ms(WAIT_MS)));
    cr_assert_geq(fd, 0);
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00};
    cr_assert_eq(ts_tcp_send_all(fd, hello, sizeof hello), 0);
    cr_expect_eq(ts_log_wait(gw[0].proc.err_path,
                             "bad PROXY protocol header: no PROXY protocol header", 1,
                             ts_deadline(ts_ms(WAIT_MS))),
                 0);
    cr_expect_eq(ts_log_wait(gw[0].proc.err_path, " reason=proxy_header ", 1,
                             ts_deadline(ts_ms(WAIT_MS))),
                 0);
    close(fd);
}

static void cut(void)
{
    cr_assert_eq(ts_cutter_cut_all(cutter), 1, "the shim's connection was not live at the cut");
}

Test(lb, a_resume_on_the_wrong_node_gets_421_and_resumes_on_its_own)
{
    start_fleet();
    cr_assert_not_null(cutter = ts_cutter_start(&lb.addr));
    shim_start(0, ts_cutter_addr_str(cutter));
    int owner = tunnels_on(0, "open") == 1 ? 0 : 1;
    cr_assert_eq(tunnels_on(owner, "open"), 1, "no gateway opened the tunnel");

    /* Cut under a live call: the reconnect goes through HAProxy to the next
     * gateway in its round robin, the one that does not hold the session. */
    run_calls(1, 100, cut);
    int64_t gap;
    int lost = lost_after(0, 200, &gap), back = 0;
    for (int i = 0; i < N; i++)
        back += back_at[0][i] != 0;
    cr_log_info("resume redirected by 421: %d of %d echoes back, media gap %lld ms", back, N,
                (long long)gap);
    char needle[128];
    snprintf(needle, sizeof needle, "session held by node %s", direct[owner]);
    cr_expect_geq(ts_log_count(shim[0].err_path, needle), 1, "the shim was not sent to %s",
                  direct[owner]);
    cr_expect_geq(ts_log_count(gw[1 - owner].proc.err_path, " status=421 "),
                  1, "the other gateway answered no 421");
    cr_expect_eq(tunnels_on(owner, "resume"), 1, "the owner did not resume the tunnel");
    cr_expect_eq(tunnels_on(1 - owner, "open"), 0, "the other gateway opened a tunnel");
    /* The call's packets came from one source (the gateways' health probes
     * come from others, with a packet or two each). */
    ts_addr_t src[8];
    size_t nsrc = ts_echo_sources(echo, src, 8), calls = 0;
    for (size_t i = 0; i < nsrc; i++)
        calls += ts_echo_packets_from(echo, &src[i]) > 50;
    cr_expect_eq(calls, 1, "the call came from %zu backend sources: the session was not resumed",
                 calls);
    cr_expect_eq(lost, 0, "%d packets lost after the reconnect gap", lost);
}

static void drain_gateway_0(void)
{
    cr_assert_eq(ts_proc_signal(&gw[0].proc, SIGTERM), 0);
}

Test(lb, one_gateway_drained_every_call_continues)
{
    start_fleet();
    for (int i = 0; i < SHIMS; i++)
        shim_start(i, lb.addr_str);
    size_t on0 = tunnels_on(0, "open");
    cr_assert_geq(on0, 1, "gateway 0 carries no call to drain");
    cr_assert_geq(tunnels_on(1, "open"), 1);

    run_calls(SHIMS, 100, drain_gateway_0);
    cr_expect_eq(ts_proc_wait_exit(&gw[0].proc, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "the drained gateway did not exit 0");
    for (int s = 0; s < SHIMS; s++) {
        int64_t gap;
        int lost = lost_after(s, 400, &gap);
        cr_log_info("drain: call %d, media gap %lld ms", s, (long long)gap);
        cr_expect_eq(lost, 0, "call %d: %d packets lost 1.5 s after the drain began", s, lost);
    }
    cr_log_info("drain: %zu calls were on the drained gateway; gateway 1 opened %zu tunnels",
                on0, tunnels_on(1, "open"));
}
