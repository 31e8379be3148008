/*
 * test_direct.c — client-shim/lib/direct.c: the UDP reachability check
 * (sluice_udp_check_*) against a STUN responder, a silent socket, a closed
 * port and a real coturn; and the direct relay of one flow, including its
 * silence detection. Everything on loopback; every wait is a loop run with
 * a deadline.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../client-shim/lib/shim_direct.h"
#include "../../proto/stun.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_stun.h"
#include "../support/ts_util.h"
#include "sluice_shim.h"

static struct ev_loop *loop;
static ts_stun_t *stun;
static int silent_fd = -1;
static ts_proc_t coturn;

typedef struct done {
    int calls;
    sluice_udp_check_result_t res;
    int free_inside;
} done_t;

static void setup(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
}

static void teardown(void)
{
    ts_stun_stop(stun);
    stun = NULL;
    if (silent_fd >= 0)
        close(silent_fd);
    silent_fd = -1;
    ts_proc_dispose(&coturn);
    ev_loop_destroy(loop);
}

static void on_done(sluice_udp_check_t *c, const sluice_udp_check_result_t *r, void *ud)
{
    done_t *d = ud;
    d->calls++;
    d->res = *r;
    if (d->free_inside)
        sluice_udp_check_free(c);
}

/* Runs the loop until *flag is non-zero or deadline. */
static void run_until(const int *flag, int64_t deadline)
{
    while (!*flag && ts_now_ms() < deadline)
        ev_run(loop, EVRUN_ONCE);
}

/* A one-shot timer keeps EVRUN_ONCE from blocking past the deadline. */
static void tick(struct ev_loop *l, ev_timer *w, int revents)
{
}

static sluice_udp_check_t *start_check(const ts_addr_t *to, uint32_t budget, done_t *d)
{
    sluice_udp_check_opts_t o = {.addr = &to->sa, .addrlen = to->len, .budget_ms = budget,
                                 .on_done = on_done, .ud = d};
    char err[128] = "";
    sluice_udp_check_t *c = sluice_udp_check_start(loop, &o, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

Test(udp_check, answered_by_responder, .init = setup, .fini = teardown, .timeout = 20)
{
    done_t d = {0};
    stun = ts_stun_start(AF_INET);
    cr_assert_not_null(stun);
    sluice_udp_check_t *c = start_check(ts_stun_addr(stun), 1000, &d);
    sluice_udp_check_result_t r;

    sluice_udp_check_result(c, &r);
    cr_expect_eq(r.reason, SLUICE_UDP_CHECK_RUNNING);
    cr_expect_eq(d.calls, 0, "never called back from start");
    run_until(&d.calls, ts_deadline(ts_ms(5000)));
    cr_assert_eq(d.calls, 1);
    cr_expect(d.res.reachable);
    cr_expect_eq(d.res.reason, SLUICE_UDP_CHECK_ANSWERED);
    cr_expect_geq(d.res.requests, 1);
    cr_expect_leq(d.res.rtt_ms, d.res.elapsed_ms);
    cr_expect_lt(d.res.elapsed_ms, 1000u, "answered inside the budget");
    char want[64];
    snprintf(want, sizeof want, "stun answered in %u ms", d.res.rtt_ms);
    cr_expect_str_eq(d.res.detail, want);
    cr_expect_geq(ts_stun_requests(stun), 1);
    sluice_udp_check_result(c, &r);
    cr_expect_eq(r.reason, SLUICE_UDP_CHECK_ANSWERED, "the result stays readable");
    sluice_udp_check_free(c);
}

Test(udp_check, ipv6_answered, .init = setup, .fini = teardown, .timeout = 20)
{
    done_t d = {0};
    stun = ts_stun_start(AF_INET6);
    if (!stun)
        cr_skip_test("no IPv6 loopback");
    sluice_udp_check_t *c = start_check(ts_stun_addr(stun), 1000, &d);
    run_until(&d.calls, ts_deadline(ts_ms(5000)));
    cr_expect(d.res.reachable, "%s", d.res.detail);
    sluice_udp_check_free(c);
}

/* A bound socket that never answers: the check retransmits with a doubling
 * RTO (0, 100, 300, 700 ms) and gives up when the budget is spent. */
Test(udp_check, silent_peer_retransmits_then_no_answer, .init = setup, .fini = teardown,
     .timeout = 20)
{
    done_t d = {0};
    ts_addr_t silent;
    silent_fd = ts_udp_bind(AF_INET, &silent);
    cr_assert_geq(silent_fd, 0);
    int64_t t0 = ts_now_ms();
    sluice_udp_check_t *c = start_check(&silent, 1000, &d);
    run_until(&d.calls, ts_deadline(ts_ms(5000)));
    int64_t took = ts_now_ms() - t0;

    cr_assert_eq(d.calls, 1);
    cr_expect(!d.res.reachable);
    cr_expect_eq(d.res.reason, SLUICE_UDP_CHECK_NO_ANSWER);
    cr_expect_geq(d.res.elapsed_ms, 1000u);
    cr_expect_lt(took, 1000 + ts_ms(500), "the budget bounds the check: took %lld ms",
                 (long long)took);
    cr_expect_eq(d.res.requests, 4u, "requests at 0, 100, 300 and 700 ms: %u",
                 d.res.requests);
    char want[64];
    snprintf(want, sizeof want, "no stun answer in %u ms", d.res.elapsed_ms);
    cr_expect_str_eq(d.res.detail, want);

    /* What reached the peer: that many valid Binding requests, each its own
     * transaction. */
    uint8_t buf[64], ids[8][STUN_TXID_LEN];
    int n = 0;
    ssize_t len;
    while (n < 8 && (len = ts_udp_recv(silent_fd, buf, sizeof buf, ts_deadline(50), NULL)) >= 0) {
        cr_assert_eq(stun_binding_request_decode(buf, (size_t)len, ids[n], NULL), (int)len);
        for (int k = 0; k < n; k++)
            cr_expect_neq(memcmp(ids[k], ids[n], STUN_TXID_LEN), 0, "txid reused");
        n++;
    }
    cr_expect_eq(n, 4);
    sluice_udp_check_free(c);
}

/* Nothing listens: ICMP port unreachable ends the check early. */
Test(udp_check, closed_port_refused_early, .init = setup, .fini = teardown, .timeout = 20)
{
    done_t d = {0};
    ts_addr_t closed;
    int fd = ts_udp_bind(AF_INET, &closed);
    cr_assert_geq(fd, 0);
    close(fd);
    sluice_udp_check_t *c = start_check(&closed, 1000, &d);
    run_until(&d.calls, ts_deadline(ts_ms(5000)));
    cr_assert_eq(d.calls, 1);
    cr_expect(!d.res.reachable);
    cr_expect_eq(d.res.reason, SLUICE_UDP_CHECK_REFUSED, "%s", d.res.detail);
    cr_expect_lt(d.res.elapsed_ms, 1000u);
    cr_expect_not_null(strstr(d.res.detail, "udp refused"), "%s", d.res.detail);
    sluice_udp_check_free(c);
}

Test(udp_check, free_inside_callback_and_while_running, .init = setup, .fini = teardown,
     .timeout = 20)
{
    done_t d = {.free_inside = 1};
    stun = ts_stun_start(AF_INET);
    cr_assert_not_null(stun);
    start_check(ts_stun_addr(stun), 1000, &d); /* freed by on_done */
    run_until(&d.calls, ts_deadline(ts_ms(5000)));
    cr_expect_eq(d.calls, 1);

    /* Freed while running: no callback, nothing left on the loop. */
    done_t d2 = {0};
    ts_addr_t silent;
    silent_fd = ts_udp_bind(AF_INET, &silent);
    sluice_udp_check_t *c = start_check(&silent, 1000, &d2);
    ev_run(loop, EVRUN_NOWAIT);
    sluice_udp_check_free(c);
    ev_timer t;
    ev_timer_init(&t, tick, 0.2, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, 0); /* returns once no watcher is left: the check's are gone */
    cr_expect_eq(d2.calls, 0);
    sluice_udp_check_free(NULL);
}

Test(udp_check, invalid_options, .init = setup, .fini = teardown)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    char err[128];
    sluice_udp_check_opts_t o = {.addr = &sin, .addrlen = sizeof sin, .on_done = on_done};

    o.addrlen = 4;
    cr_expect_null(sluice_udp_check_start(loop, &o, err, sizeof err));
    o.addrlen = sizeof sin;
    o.on_done = NULL;
    cr_expect_null(sluice_udp_check_start(loop, &o, err, sizeof err));
    o.on_done = on_done;
    o.budget_ms = 60001;
    cr_expect_null(sluice_udp_check_start(loop, &o, err, sizeof err));
    cr_expect_not_null(strstr(err, "budget"), "%s", err);
    cr_expect_str_eq(sluice_udp_check_reason_name(SLUICE_UDP_CHECK_NO_ANSWER), "no answer");
}

/* The real thing: coturn from Debian answers the Binding request (its
 * answer has MAPPED-ADDRESS, RESPONSE-ORIGIN and SOFTWARE besides
 * XOR-MAPPED-ADDRESS, and no FINGERPRINT). */
Test(udp_check, coturn_answers, .init = setup, .fini = teardown, .timeout = 60)
{
    if (access("/usr/bin/turnserver", X_OK) != 0)
        cr_skip_test("coturn is not installed (/usr/bin/turnserver)");
    ts_addr_t a;
    int fd = ts_udp_bind(AF_INET, &a); /* a free port: coturn cannot report its own */
    cr_assert_geq(fd, 0);
    close(fd);
    char port[16], pidfile[PATH_MAX], db[PATH_MAX];
    snprintf(port, sizeof port, "%u", ts_addr_port(&a));
    cr_assert_eq(ts_tmppath("turnserver.pid", pidfile, sizeof pidfile), 0);
    cr_assert_eq(ts_tmppath("turndb", db, sizeof db), 0);
    char *argv[] = {"/usr/bin/turnserver", "-n", "--listening-ip", "127.0.0.1",
                    "--listening-port", port, "--no-tls", "--no-dtls", "--no-cli",
                    "--stun-only", "--no-rfc5780", "--log-file", "stdout", "--simple-log",
                    "--pidfile", pidfile, "--userdb", db, NULL};
    cr_assert_eq(ts_proc_spawn(&coturn, "turnserver", argv, 0), 0);

    /* Ready when it answers: checks of 200 ms until one does. Before it
     * binds, a check is refused at once; the next one then waits for a
     * 50 ms tick of the loop, so the attempts are spread over the deadline. */
    done_t d = {0};
    int64_t deadline = ts_deadline(ts_ms(20000));
    for (int i = 0; i < 400 && !d.res.reachable && ts_now_ms() < deadline; i++) {
        if (d.calls) {
            ev_timer t;
            ev_timer_init(&t, tick, 0.05, 0.);
            ev_timer_start(loop, &t);
            while (ev_is_active(&t))
                ev_run(loop, EVRUN_ONCE);
        }
        memset(&d, 0, sizeof d);
        sluice_udp_check_t *c = start_check(&a, 200, &d);
        run_until(&d.calls, deadline);
        sluice_udp_check_free(c);
    }
    cr_expect(d.res.reachable, "coturn never answered: %s", d.res.detail);
    cr_expect_eq(d.res.reason, SLUICE_UDP_CHECK_ANSWERED);
    ts_proc_stop(&coturn, ts_deadline(ts_ms(5000)));
}

/* ---------------------------------------------------------------- relay */

typedef struct relay_seen {
    int packets;
    uint8_t last[64];
    size_t last_len;
    int silent;
    int64_t silent_at;
} relay_seen_t;

static void relay_on_packet(shim_direct_relay_t *r, const uint8_t *p, size_t len, void *ud)
{
    relay_seen_t *s = ud;
    s->packets++;
    s->last_len = len < sizeof s->last ? len : sizeof s->last;
    memcpy(s->last, p, s->last_len);
}

static void relay_on_silent(shim_direct_relay_t *r, void *ud)
{
    relay_seen_t *s = ud;
    s->silent++;
    s->silent_at = ts_now_ms();
}

static shim_direct_relay_t relay; /* 64 KiB buffer: off the stack */

Test(direct_relay, forwards_both_ways_then_reports_silence, .init = setup, .fini = teardown,
     .timeout = 30)
{
    relay_seen_t seen = {0};
    stun = ts_stun_start(AF_INET);
    cr_assert_not_null(stun);
    shim_direct_relay_opts_t o = {.addr = (const struct sockaddr *)&ts_stun_addr(stun)->sa,
                                  .addrlen = ts_stun_addr(stun)->len, .silence_ms = 400,
                                  .on_packet = relay_on_packet, .on_silent = relay_on_silent,
                                  .ud = &seen};
    char err[128];
    cr_assert_eq(shim_direct_relay_init(&relay, loop, &o, err, sizeof err), 0, "%s", err);

    /* Media goes out and comes back: 20 packets every 50 ms, each answered,
     * is 1 s of traffic, longer than the silence limit: no silence. */
    ev_timer t;
    ev_timer_init(&t, tick, 0.05, 0.05);
    ev_timer_start(loop, &t);
    for (int i = 0; i < 20; i++) {
        uint8_t pkt[8] = {0x80, 0, 0, 0, 0, 0, 0, (uint8_t)i};
        int want = seen.packets + 1;
        cr_assert_eq(shim_direct_relay_send(&relay, pkt, sizeof pkt), 0);
        int64_t dl = ts_deadline(ts_ms(2000));
        while (seen.packets < want && ts_now_ms() < dl)
            ev_run(loop, EVRUN_ONCE);
        cr_assert_eq(seen.packets, want, "packet %d not echoed", i);
        cr_assert_eq(seen.last_len, sizeof pkt);
        cr_assert_eq(memcmp(seen.last, pkt, sizeof pkt), 0);
        ev_run(loop, EVRUN_ONCE); /* one tick: time passes between packets */
    }
    cr_expect_eq(seen.silent, 0, "silence reported while replies came");
    cr_expect_eq(relay.tx_packets, 20u);
    cr_expect_eq(relay.rx_packets, 20u);

    /* The path goes silent while the app keeps sending. */
    ts_stun_mute(stun, 1);
    int64_t t0 = ts_now_ms();
    int64_t dl = ts_deadline(ts_ms(5000));
    while (!seen.silent && ts_now_ms() < dl) {
        uint8_t pkt[4] = {0x80, 1, 2, 3};
        shim_direct_relay_send(&relay, pkt, sizeof pkt);
        ev_run(loop, EVRUN_ONCE);
    }
    cr_assert_eq(seen.silent, 1, "silence never reported");
    cr_expect_geq(seen.silent_at - t0, 400, "reported after %lld ms, before the limit",
                  (long long)(seen.silent_at - t0));
    cr_expect_lt(seen.silent_at - t0, 400 + ts_ms(400));
    ev_timer_stop(loop, &t);
    shim_direct_relay_dispose(&relay);
    shim_direct_relay_dispose(&relay); /* idempotent */
    cr_expect_gt(ts_stun_dropped(stun), 0);
}

Test(direct_relay, quiet_app_is_not_silence, .init = setup, .fini = teardown, .timeout = 20)
{
    relay_seen_t seen = {0};
    ts_addr_t silent;
    silent_fd = ts_udp_bind(AF_INET, &silent);
    cr_assert_geq(silent_fd, 0);
    shim_direct_relay_opts_t o = {.addr = (const struct sockaddr *)&silent.sa,
                                  .addrlen = silent.len, .silence_ms = 200,
                                  .on_packet = relay_on_packet, .on_silent = relay_on_silent,
                                  .ud = &seen};
    cr_assert_eq(shim_direct_relay_init(&relay, loop, &o, NULL, 0), 0);
    /* Nothing sent: nothing to miss, however long it stays quiet. */
    ev_timer t;
    ev_timer_init(&t, tick, 0.5, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, EVRUN_ONCE);
    cr_expect_eq(seen.silent, 0);
    shim_direct_relay_dispose(&relay);
}

/* ---------------------------------------------------------------- options */

#include "../../client-shim/lib/shim_cli.h"

#define DARGV(...) ((char *const[]){"sluice-shim", __VA_ARGS__, NULL})
#define DARGC(...) ((int)(sizeof((const char *[]){"sluice-shim", __VA_ARGS__}) / sizeof(char *)))
#define DPARSE(o, err, ...) \
    shim_cli_parse(DARGC(__VA_ARGS__), DARGV(__VA_ARGS__), (o), (err), sizeof(err))
#define DBASE "--gateway", "https://127.0.0.1:8443", "--tenant", "demo", "--kind", "sfu", \
              "--secret", "s"

Test(direct_opts, defaults_and_values)
{
    shim_cli_opts_t o;
    char err[256] = "";

    cr_assert_eq(DPARSE(&o, err, DBASE, "--listen", "127.0.0.1:0"), 0, "%s", err);
    cr_expect_null(o.direct_str, "no --direct: every flow is tunnelled");
    cr_expect_eq(o.probe, 0);

    cr_assert_eq(DPARSE(&o, err, DBASE, "--listen", "127.0.0.1:0", "--direct", "[::1]:3478",
                        "--direct-budget-ms=250", "--direct-silence-ms", "800"),
                 0, "%s", err);
    cr_expect_str_eq(o.direct_str, "[::1]:3478");
    cr_expect_eq(o.direct.ss_family, AF_INET6);
    cr_expect_eq(ntohs(((struct sockaddr_in6 *)&o.direct)->sin6_port), 3478);
    cr_expect_eq(o.direct_budget_ms, 250u);
    cr_expect_eq(o.direct_silence_ms, 800u);

    cr_assert_eq(DPARSE(&o, err, DBASE, "--listen", "127.0.0.1:0", "--direct", "192.0.2.7:3478"),
                 0, "%s", err);
    cr_expect_eq(o.direct_budget_ms, SHIM_CLI_DEFAULT_DIRECT_BUDGET_MS);
    cr_expect_eq(o.direct_silence_ms, SHIM_CLI_DEFAULT_DIRECT_SILENCE_MS);
}

Test(direct_opts, refusals)
{
    shim_cli_opts_t o;
    char err[256];
    static char *const bad[][2] = {
        {"--direct", "turn.example.com:3478"}, /* numeric only */
        {"--direct", "127.0.0.1:0"},
        {"--direct", "127.0.0.1"},
        {"--direct-budget-ms", "99"},
        {"--direct-budget-ms", "60001"},
        {"--direct-silence-ms", "199"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = strcmp(bad[i][0], "--direct") == 0
                     ? DPARSE(&o, err, DBASE, "--listen", "127.0.0.1:0", bad[i][0], bad[i][1])
                     : DPARSE(&o, err, DBASE, "--listen", "127.0.0.1:0", "--direct",
                              "127.0.0.1:3478", bad[i][0], bad[i][1]);
        cr_expect_eq(rc, -1, "%s %s accepted", bad[i][0], bad[i][1]);
        cr_expect_not_null(strstr(err, bad[i][0]), "%s %s: '%s'", bad[i][0], bad[i][1], err);
    }
    cr_expect_eq(DPARSE(&o, err, DBASE, "--listen", "127.0.0.1:0", "--direct-budget-ms", "500"),
                 -1);
    cr_expect_not_null(strstr(err, "need --direct"), "%s", err);
}

Test(direct_opts, probe_mode_needs_no_listen)
{
    shim_cli_opts_t o;
    char err[256] = "";
    char *const argv[] = {"sluice-shim", "probe", DBASE, "--direct", "127.0.0.1:3478", NULL};

    cr_assert_eq(shim_cli_parse(sizeof argv / sizeof argv[0] - 1, argv, &o, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(o.probe, 1);
    cr_expect_null(o.listen_str);
    /* Without "probe", --listen is still required. */
    cr_expect_eq(DPARSE(&o, err, DBASE), -1);
    cr_expect_not_null(strstr(err, "--listen"), "%s", err);
}
