/*
 * test_e2e.c — UDP through sluice-shim -> sluiced -> a UDP backend and back,
 * with real processes on loopback.
 *
 * Loss tolerance is zero: everything is on loopback, each flow keeps at most 8
 * packets in flight (far below any socket buffer or the default 64 KiB tunnel
 * queues), and a primer proves the tunnel stream is open before measuring, so
 * the 200 ms media age limit cannot drop packets queued while a stream opens.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_fixture.h"
#include "../support/ts_flow.h"
#include "../support/ts_net.h"
#include "../support/ts_util.h"

#define WINDOW 8
#define PRIME_RETRY_MS 250

static ts_fixture_t fx;
static ts_flow_t flows[TS_FX_MAX_SHIMS];
static int fds[TS_FX_MAX_SHIMS];
static size_t nflows;

static void setup(void)
{
    for (size_t i = 0; i < TS_FX_MAX_SHIMS; i++)
        fds[i] = -1;
}

static void teardown(void)
{
    for (size_t i = 0; i < nflows; i++)
        ts_flow_free(&flows[i]);
    for (size_t i = 0; i < TS_FX_MAX_SHIMS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    ts_fixture_teardown(&fx);
}

static void start_gateway(int family)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, family, NULL), 0,
                 "sluiced did not print its ready line (its output is above)");
}

/* A local socket, primed through shim s, with a flow of n mixed packets. */
static ts_flow_t *open_flow(const ts_shim_t *s, size_t n, uint16_t tag)
{
    size_t i = nflows;
    cr_assert_lt(i, TS_FX_MAX_SHIMS);
    fds[i] = ts_udp_bind(fx.family, NULL);
    cr_assert_geq(fds[i], 0, "cannot bind a loopback UDP socket");
    cr_assert_eq(ts_flow_prime(fds[i], &s->listen, PRIME_RETRY_MS, ts_deadline(ts_ms(10000))), 0,
                 "flow %u: no primer came back through %s within 10 s", tag, s->listen_str);
    cr_assert_eq(ts_flow_init_mixed(&flows[i], fds[i], &s->listen, n, tag, WINDOW), 0);
    nflows++;
    return &flows[i];
}

static void expect_flow_complete(const ts_flow_t *f, uint16_t tag)
{
    size_t rtp, stun, dtls;
    ts_flow_classes(f, &rtp, &stun, &dtls);
    cr_expect_eq(f->matched, f->n,
                 "flow %u: %zu of %zu packets came back byte-identical (%zu rtp, %zu stun, "
                 "%zu dtls sent; %zu sent in all)",
                 tag, f->matched, f->n, rtp, stun, dtls, f->sent);
    cr_expect_eq(f->foreign, 0, "flow %u: %zu replies were not its own packets", tag, f->foreign);
    cr_expect_eq(f->duplicates, 0, "flow %u: %zu packets came back twice", tag, f->duplicates);
}

static void stop_all_cleanly(void)
{
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0,
                 "%s exited with code %d after SIGTERM, expected 0 (under ASan: a leak or "
                 "sanitizer report; its stderr is above)",
                 what, code);
}

static void one_socket_round_trip(int family)
{
    start_gateway(family);
    cr_assert_eq(fx.gw.listen[0].sa.ss_family, family, "gateway ready line: %s",
                 fx.gw.ready_line);
    ts_shim_t *s;
    cr_assert_eq(ts_fixture_add_shim(&fx, &s), 0, "sluice-shim did not connect (output above)");
    cr_assert_eq(s->listen.sa.ss_family, family, "shim listens on %s", s->listen_str);

    ts_flow_t *f = open_flow(s, 50, 1);
    ts_flows_run(f, 1, ts_deadline(ts_ms(10000)));
    expect_flow_complete(f, 1);

    ts_addr_t src[4];
    size_t nsrc = ts_echo_sources(fx.echo, src, 4);
    cr_expect_eq(nsrc, 1, "the backend saw %zu source addresses for one local socket, "
                          "expected 1 (one tunnel, one gateway-side socket)", nsrc);
    if (nsrc >= 1) {
        char buf[64];
        cr_expect_eq(src[0].sa.ss_family, family, "backend source %s has the wrong family",
                     ts_addr_str(&src[0], buf, sizeof buf));
    }
    stop_all_cleanly();
}

Test(e2e, ipv4_mixed_classes_round_trip, .init = setup, .fini = teardown)
{
    one_socket_round_trip(AF_INET);
}

Test(e2e, ipv6_mixed_classes_round_trip, .init = setup, .fini = teardown)
{
    /* Gateway on [::1]:0, backend on ::1, shim --gateway https://[::1]:PORT
     * --listen [::1]:0 (the dev certificate names IP ::1). */
    one_socket_round_trip(AF_INET6);
}

Test(e2e, four_tunnels_share_one_connection, .init = setup, .fini = teardown)
{
    start_gateway(AF_INET);
    ts_shim_t *s;
    cr_assert_eq(ts_fixture_add_shim(&fx, &s), 0, "sluice-shim did not connect (output above)");
    for (uint16_t i = 1; i <= 4; i++)
        open_flow(s, 30, i);
    ts_flows_run(flows, nflows, ts_deadline(ts_ms(15000)));
    for (size_t i = 0; i < nflows; i++)
        expect_flow_complete(&flows[i], (uint16_t)(i + 1));

    size_t nsrc = ts_echo_sources(fx.echo, NULL, 0);
    cr_expect_eq(nsrc, 4, "the backend saw %zu distinct source addresses for 4 local sockets, "
                          "expected 4 (one gateway-side socket per tunnel)", nsrc);
    int conns = ts_tcp_count_conns(s->proc.pid, ts_addr_port(&fx.gw.listen[0]));
    cr_expect_eq(conns, 1, "sluice-shim holds %d TCP connections to the gateway for 4 tunnels, "
                           "expected 1", conns);
    stop_all_cleanly();
}

Test(e2e, sixteen_shims_at_once, .init = setup, .fini = teardown, .timeout = 180)
{
    enum { NSHIMS = 16, PACKETS = 20 };
    start_gateway(AF_INET);
    ts_shim_t *shims[NSHIMS];
    for (int i = 0; i < NSHIMS; i++)
        cr_assert_eq(ts_fixture_add_shim(&fx, &shims[i]), 0,
                     "sluice-shim #%d did not connect (output above)", i);
    for (int i = 0; i < NSHIMS; i++)
        open_flow(shims[i], PACKETS, (uint16_t)(i + 1));
    /* All 16 flows run at once from one poll loop. */
    ts_flows_run(flows, nflows, ts_deadline(ts_ms(20000)));
    for (size_t i = 0; i < nflows; i++)
        expect_flow_complete(&flows[i], (uint16_t)(i + 1));
    size_t nsrc = ts_echo_sources(fx.echo, NULL, 0);
    cr_expect_eq(nsrc, NSHIMS, "the backend saw %zu distinct sources for %d tunnels", nsrc,
                 NSHIMS);
    stop_all_cleanly();
}
