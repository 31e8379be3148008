/*
 * test_health.c — backend health and selection (gateway/backend.h) with real
 * UDP backends on loopback: ts_stun answers the gateway's STUN Binding probes
 * and echoes everything else; a "dead" backend is a loopback port nothing
 * listens on (bound to 0, read back, closed), which answers with ICMP port
 * unreachable.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_flow.h"
#include "../support/ts_http.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_sluice.h"
#include "../support/ts_stun.h"
#include "../support/ts_util.h"

#define TENANT "acme"
#define SECRET "s1"
#define NSHIMS 24
/* Fast probes so the test sees a change within a second: one every 100 ms,
 * 50 ms to answer, out after 2 misses, back after 2 answers. */
#define FAST_PROBES "\"probe\":\"stun\",\"interval_ms\":100,\"timeout_ms\":50," \
                    "\"down_after\":2,\"up_after\":2"

static ts_gateway_t gw;
static int gw_started;
static ts_shim_t shims[NSHIMS];
static size_t nshims;
static int fds[NSHIMS];
static ts_stun_t *stun[2];
static ts_http_resp_t resp;

static void teardown(void)
{
    for (size_t i = 0; i < nshims; i++) {
        ts_shim_dispose(&shims[i]);
        if (fds[i] >= 0)
            close(fds[i]);
    }
    nshims = 0;
    if (gw_started)
        ts_gateway_dispose(&gw);
    gw_started = 0;
    for (int i = 0; i < 2; i++) {
        ts_stun_stop(stun[i]);
        stun[i] = NULL;
    }
    ts_http_resp_free(&resp);
}

/* A loopback port nothing listens on (until someone else binds it: the test
 * only needs it dead for a few seconds). */
static void dead_addr(char *out, size_t cap)
{
    ts_addr_t a;
    int fd = ts_udp_bind(AF_INET, &a);
    cr_assert_geq(fd, 0, "cannot bind a loopback UDP socket");
    close(fd);
    ts_addr_str(&a, out, cap);
}

static void start_gateway(const char **pool, const char *health)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    ts_config_t c = {
        .regions = {{.name = "local", .sfu = pool, .sfu_health = health}},
        .tenants = {{.id = TENANT, .secrets = {SECRET}, .kinds = {"sfu"},
                     .regions = {"local"}}},
    };
    char path[4096];
    cr_assert_geq(ts_config_write(&c, path, sizeof path), 0, "cannot write the config");
    gw_started = 1;
    cr_assert_eq(ts_gateway_start(&gw, NULL, path, ts_deadline(ts_ms(15000))), 0,
                 "sluiced did not print its ready line (its output is above)");
}

static void wait_log(const char *needle)
{
    cr_assert_eq(ts_log_wait(gw.proc.err_path, needle, 1, ts_deadline(ts_ms(5000))), 0,
                 "the gateway never logged \"%s\"", needle);
}

/* A shim and an app socket whose primer came back through the tunnel: the
 * tunnel reached a live backend. Returns 0, or -1 (why says what failed). */
static int live_tunnel(const char **why)
{
    char url[128];
    cr_assert_eq(ts_gateway_url(&gw, 0, "", url, sizeof url), 0);
    size_t i = nshims++;
    fds[i] = -1;
    ts_shim_opts_t o = {.gateway = url, .tenant = TENANT, .kind = "sfu", .secret = SECRET};
    if (ts_shim_start(&shims[i], &o, ts_deadline(ts_ms(15000))) < 0) {
        *why = "sluice-shim did not connect";
        return -1;
    }
    fds[i] = ts_udp_bind(AF_INET, NULL);
    cr_assert_geq(fds[i], 0);
    if (ts_flow_prime(fds[i], &shims[i].listen, 100, ts_deadline(ts_ms(3000))) < 0) {
        *why = "no primer came back through the tunnel";
        return -1;
    }
    return 0;
}

static void stop_all(void)
{
    for (size_t i = 0; i < nshims; i++)
        cr_expect_eq(ts_shim_stop(&shims[i], ts_deadline(ts_ms(10000))), 0);
    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(10000))), 0,
                 "sluiced exited with an error after SIGTERM (its stderr is above)");
}

/* Issue 7 §4: before health checks, [dead, echo, dead] answered 3 tunnels of
 * 9. Both dead ones are taken out (ICMP on the first probe), and every new
 * tunnel goes to the live one. */
Test(health, dead_alive_dead_pool_answers_every_new_tunnel, .fini = teardown, .timeout = 90)
{
    char d1[64], d2[64], needle[128];
    dead_addr(d1, sizeof d1);
    dead_addr(d2, sizeof d2);
    stun[0] = ts_stun_start(AF_INET);
    cr_assert_not_null(stun[0]);
    const char *pool[] = {d1, ts_stun_addr_str(stun[0]), d2, NULL};
    int64_t t0 = ts_now_ms();
    start_gateway(pool, FAST_PROBES);
    snprintf(needle, sizeof needle, "backend %s down", d1);
    wait_log(needle);
    snprintf(needle, sizeof needle, "backend %s down", d2);
    wait_log(needle);
    for (int i = 0; i < NSHIMS; i++) {
        const char *why;
        cr_assert_eq(live_tunnel(&why), 0, "tunnel %d of %d: %s", i + 1, NSHIMS, why);
    }
    /* tunnel.open lines end "region=R backend=ADDR" (tunnel.close has no region). */
    cr_expect_eq(ts_log_count(gw.proc.err_path, "event=tunnel.open "), NSHIMS);
    snprintf(needle, sizeof needle, "region=local backend=%s", ts_stun_addr_str(stun[0]));
    cr_expect_eq(ts_log_count(gw.proc.err_path, needle), NSHIMS,
                 "every tunnel should have opened on the live backend");
    /* One probe per interval (100 ms), not one per timeout (50 ms). */
    uint64_t probes = ts_stun_requests(stun[0]);
    int64_t elapsed = ts_now_ms() - t0;
    cr_expect_gt(probes, 0, "the live backend saw no probe");
    cr_expect_leq(probes, (uint64_t)(elapsed / 100 + 2), "%llu probes in %lld ms",
                  (unsigned long long)probes, (long long)elapsed);
    stop_all();
}

/* A backend that stops answering probes (muted: no ICMP, just silence) is
 * taken out: with it the only one, a new tunnel gets 503 with a reason. Once
 * it answers again it returns and a new tunnel reaches it. */
Test(health, silent_backend_is_taken_out_and_returns, .fini = teardown, .timeout = 90)
{
    char needle[128];
    stun[0] = ts_stun_start(AF_INET);
    cr_assert_not_null(stun[0]);
    const char *pool[] = {ts_stun_addr_str(stun[0]), NULL};
    start_gateway(pool, FAST_PROBES);
    const char *why;
    cr_assert_eq(live_tunnel(&why), 0, "before: %s", why);

    ts_stun_mute(stun[0], 1);
    snprintf(needle, sizeof needle, "backend %s down: probes unanswered",
             ts_stun_addr_str(stun[0]));
    wait_log(needle);

    char url[256], uh[CRED_USERNAME_MAX + 32], ch[CRED_B64_MAX + 64];
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, SECRET, 600, NULL, username, sizeof username, cred,
                              sizeof cred),
                 0);
    snprintf(uh, sizeof uh, "tunnel-username: %s", username);
    snprintf(ch, sizeof ch, "tunnel-credential: %s", cred);
    cr_assert_eq(ts_gateway_url(&gw, 0, "/v1/tunnel/" TENANT "/sfu", url, sizeof url), 0);
    ts_http_req_t q = {.url = url, .headers = {uh, ch}, .max_time_s = 5};
    cr_assert_eq(ts_http(&q, &resp), 0, "cannot run curl");
    cr_expect_eq(resp.status, 503, "status %d, expected 503 (curl exit %d, %s)", resp.status,
                 resp.curl_exit, resp.err);
    cr_expect(resp.body && strstr(resp.body, "no healthy backend"), "body \"%s\"",
              resp.body ? resp.body : "");

    ts_stun_mute(stun[0], 0);
    snprintf(needle, sizeof needle, "backend %s up", ts_stun_addr_str(stun[0]));
    wait_log(needle);
    cr_assert_eq(live_tunnel(&why), 0, "after it answers again: %s", why);
    stop_all();
}

/* A backend process that stops (its socket closes: ICMP port unreachable) is
 * taken out at once; restarted on the same port, it answers probes and is
 * back, and a new tunnel reaches it. */
Test(health, stopped_backend_is_out_and_returns_when_restarted, .fini = teardown, .timeout = 90)
{
    char needle[128], name[64];
    stun[0] = ts_stun_start(AF_INET);
    cr_assert_not_null(stun[0]);
    snprintf(name, sizeof name, "%s", ts_stun_addr_str(stun[0]));
    uint16_t port = ts_addr_port(ts_stun_addr(stun[0]));
    const char *pool[] = {name, NULL};
    start_gateway(pool, FAST_PROBES);

    ts_stun_stop(stun[0]);
    stun[0] = NULL;
    snprintf(needle, sizeof needle, "backend %s down: unreachable", name);
    wait_log(needle);

    stun[0] = ts_stun_start_at(AF_INET, port);
    cr_assert_not_null(stun[0], "cannot bind %s again", name);
    snprintf(needle, sizeof needle, "backend %s up", name);
    wait_log(needle);
    const char *why;
    cr_assert_eq(live_tunnel(&why), 0, "after the restart: %s", why);
    cr_expect_gt(ts_stun_echoed(stun[0]), 0, "the restarted backend carried no tunnel traffic");
    stop_all();
}

/* Passive: with no probes, the ICMP error a tunnel gets from a dead backend
 * takes it out, and every tunnel opened after that reaches the live one. */
Test(health, icmp_seen_by_a_tunnel_takes_the_backend_out, .fini = teardown, .timeout = 120)
{
    char dead[64], needle[128];
    dead_addr(dead, sizeof dead);
    stun[0] = ts_stun_start(AF_INET);
    cr_assert_not_null(stun[0]);
    const char *pool[] = {dead, ts_stun_addr_str(stun[0]), NULL};
    /* The hold-down outlasts the test: the backend cannot come back in it. */
    start_gateway(pool, "\"probe\":\"none\",\"interval_ms\":600000");
    snprintf(needle, sizeof needle, "backend %s down: unreachable", dead);
    char url[128];
    cr_assert_eq(ts_gateway_url(&gw, 0, "", url, sizeof url), 0);
    /* Tunnels until one lands on the dead backend (each does with odds 1/2;
     * 16 misses in a row: 1 in 65,536) and its first datagram draws ICMP. */
    int hit = 0;
    for (int i = 0; i < 16 && !hit; i++) {
        size_t k = nshims++;
        fds[k] = -1;
        ts_shim_opts_t o = {.gateway = url, .tenant = TENANT, .kind = "sfu", .secret = SECRET};
        cr_assert_eq(ts_shim_start(&shims[k], &o, ts_deadline(ts_ms(15000))), 0);
        fds[k] = ts_udp_bind(AF_INET, NULL);
        cr_assert_geq(fds[k], 0);
        /* A tunnel on the dead backend is closed (backend unreachable) and
         * the shim opens another, so the primer may still come back. */
        (void)ts_flow_prime(fds[k], &shims[k].listen, 100, ts_deadline(ts_ms(3000)));
        hit = ts_log_count(gw.proc.err_path, needle) > 0;
    }
    cr_assert(hit, "no tunnel of 16 went to the dead backend");
    char on_dead[128];
    snprintf(on_dead, sizeof on_dead, "region local backend %s", dead);
    size_t dead_opens = ts_log_count(gw.proc.err_path, on_dead);
    cr_expect_eq(ts_stun_requests(stun[0]), 0, "probe none: no STUN probe expected");
    for (int i = 0; i < 6; i++) {
        const char *why;
        cr_assert_eq(live_tunnel(&why), 0, "tunnel %d after the ICMP: %s", i + 1, why);
    }
    cr_expect_eq(ts_log_count(gw.proc.err_path, on_dead), dead_opens,
                 "a tunnel opened on the dead backend after it was taken out");
    stop_all();
}
