/*
 * test_limits.c — the bounds README.md "Operating" and docs/configuration.md
 * promise, checked on the real gateway: drain_timeout_ms and the second
 * signal, max_connections, conn_idle_ms.
 *
 * The client is ts_h2raw, so a test can play a client that never ends its
 * request body (ignores CLOSE) or never opens another tunnel.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_proc.h"
#include "../support/ts_util.h"

#define TUNNEL_PATH "/v1/tunnel/" TS_FX_TENANT "/sfu"
#define NCLIENTS 4

static ts_fixture_t fx;
static ts_h2raw_t clients[NCLIENTS];

static void teardown(void)
{
    for (int i = 0; i < NCLIENTS; i++)
        ts_h2raw_close(&clients[i]);
    ts_fixture_teardown(&fx);
}

static void start_gateway(const char *limits_json)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, limits_json), 0,
                 "sluiced did not print its ready line (its output is above)");
}

static void connect_client(ts_h2raw_t *c)
{
    cr_assert_eq(ts_h2raw_connect(c, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to the gateway: %s", c->err);
}

/* A tunnel on stream 1 of c, answered 200. */
static void open_tunnel(ts_h2raw_t *c)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, NULL, username, sizeof username,
                              cred, sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request(c, 1, TUNNEL_PATH, username, cred, 0), 0, "%s", c->err);
    int status = ts_h2raw_wait_status(c, 1, ts_deadline(ts_ms(10000)));
    cr_assert_eq(status, 200, "tunnel request: status %d, expected 200 (%s)", status, c->err);
}

/* Condition for ts_h2raw_wait: stream 1's body holds a CLOSE capsule; its
 * code goes to *(uint64_t *)arg. */
static int has_close_capsule(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    if (!s || ts_find_close(s->body, s->body_len, arg, NULL, 0) < 0)
        return 0;
    return 1;
}

/* After SIGTERM the tunnel gets CLOSE(shutting down) and the connection
 * GOAWAY, which also proves the gateway has handled the first signal. The
 * client then does what a broken client does: nothing (no END_STREAM). */
static void expect_drain_started(ts_h2raw_t *c)
{
    uint64_t code = UINT64_MAX;
    cr_assert_eq(ts_h2raw_wait(c, has_close_capsule, &code, ts_deadline(ts_ms(10000))), 0,
                 "no CLOSE capsule on the tunnel within 10 s of SIGTERM (%s)", c->err);
    cr_assert_eq(code, CLOSE_SHUTTING_DOWN, "CLOSE code %llu (%s), expected shutting down",
                 (unsigned long long)code, capsule_close_name(code));
    uint32_t goaway = UINT32_MAX;
    cr_assert_eq(ts_h2raw_wait_goaway(c, ts_deadline(ts_ms(10000)), &goaway), 0,
                 "no GOAWAY within 10 s of SIGTERM (%s)", c->err);
    cr_assert_eq(goaway, NGHTTP2_NO_ERROR, "drain GOAWAY code %u, expected NO_ERROR", goaway);
}

/* 1 when the gateway's stderr contains text. */
static int gateway_logged(const char *text)
{
    return ts_log_count(fx.gw.proc.err_path, text) > 0;
}

/* README "Operating": a second signal stops at once. With drain_timeout_ms at
 * 60 s and a client that never ends its tunnel, only the second signal can
 * end the process within the 15 s this test allows. */
Test(limits, second_signal_stops_at_once, .fini = teardown, .timeout = 90)
{
    start_gateway("{\"drain_ms\":0,\"drain_timeout_ms\":60000}");
    ts_h2raw_t *c = &clients[0];
    connect_client(c);
    open_tunnel(c);

    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGTERM), 0);
    expect_drain_started(c);
    /* The first signal alone does not stop it: the drain waits for the client. */
    cr_assert_eq(ts_proc_wait_exit(&fx.gw.proc, ts_deadline(300)), -1,
                 "sluiced exited on the first SIGTERM while a tunnel was still open");

    int64_t t_second = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGTERM), 0);
    int code = ts_proc_wait_exit(&fx.gw.proc, ts_deadline(ts_ms(15000)));
    cr_expect_eq(code, 0, "sluiced after the second SIGTERM: exit %d, expected 0 (-1: still "
                          "running after 15 s, with a 60 s drain timeout)",
                 code);
    if (code >= 0)
        cr_log_info("sluiced exited %lld ms after the second SIGTERM",
                    (long long)(ts_now_ms() - t_second));
    cr_expect(gateway_logged("second stop request"),
              "sluiced did not log the second stop request");
}

/* drain_timeout_ms bounds a drain: the client ignores CLOSE, yet the gateway
 * exits 0 soon after the 300 ms drain timeout and says why. */
Test(limits, drain_timeout_bounds_a_drain, .fini = teardown, .timeout = 90)
{
    start_gateway("{\"drain_ms\":0,\"drain_timeout_ms\":300}");
    ts_h2raw_t *c = &clients[0];
    connect_client(c);
    open_tunnel(c);

    int64_t t_term = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGTERM), 0);
    expect_drain_started(c);
    int code = ts_proc_wait_exit(&fx.gw.proc, ts_deadline(ts_ms(15000)));
    cr_expect_eq(code, 0, "sluiced after SIGTERM: exit %d, expected 0 (-1: still running "
                          "15 s later, with a 300 ms drain timeout)",
                 code);
    if (code >= 0)
        cr_log_info("sluiced exited %lld ms after SIGTERM", (long long)(ts_now_ms() - t_term));
    cr_expect(gateway_logged("drain timeout"), "sluiced did not log the drain timeout");
}

/* max_connections: beyond it a connection is accepted and closed at once
 * (before or during the TLS handshake); when a held one goes, a new one is
 * served again. handshake_timeout_ms is far beyond the test's deadlines, so
 * only the refusal can close the extra connection in time. */
Test(limits, max_connections_accepts_and_closes_the_extra_one, .fini = teardown, .timeout = 90)
{
    start_gateway("{\"max_connections\":2,\"handshake_timeout_ms\":120000}");
    connect_client(&clients[0]);
    connect_client(&clients[1]);

    /* The gateway has accepted both (their handshakes completed). */
    int64_t t0 = ts_now_ms();
    int rc = ts_h2raw_connect(&clients[2], &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000)));
    int err = errno;
    cr_expect_neq(rc, 0, "a third connection was served with max_connections 2");
    if (rc != 0) {
        cr_expect_neq(err, ETIMEDOUT, "the third connection was neither served nor closed "
                                      "within 10 s: %s",
                      clients[2].err);
        cr_log_info("third connection refused after %lld ms: %s",
                    (long long)(ts_now_ms() - t0), clients[2].err);
    }
    ts_h2raw_close(&clients[2]);

    /* One client leaves; once the gateway has let go of it (it closes its
     * side too), a new connection is served. */
    cr_assert_eq(ts_h2raw_shutdown_write(&clients[0]), 0);
    cr_assert_eq(ts_h2raw_wait_closed(&clients[0], ts_deadline(ts_ms(10000))), 0,
                 "the gateway did not close a connection whose client left");
    ts_h2raw_close(&clients[0]);
    connect_client(&clients[3]);
    open_tunnel(&clients[3]);

    for (int i = 0; i < NCLIENTS; i++)
        ts_h2raw_close(&clients[i]);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}

/* conn_idle_ms: a connection whose last tunnel has closed gets GOAWAY
 * (NO_ERROR, RFC 9113 §6.8) and is then closed. The connection's timer first
 * looks at header_timeout_ms, 3 s here (room for a slow request), so the
 * GOAWAY is due about 3 s after connecting; the 15 s deadline is a liveness
 * bound. */
Test(limits, idle_connection_gets_goaway_then_close, .fini = teardown, .timeout = 90)
{
    start_gateway("{\"conn_idle_ms\":100,\"header_timeout_ms\":3000}");
    ts_h2raw_t *c = &clients[0];
    connect_client(c);
    open_tunnel(c);

    /* The client ends its side; the gateway answers CLOSE(normal) and ends
     * the stream: no tunnel is left on the connection. */
    cr_assert_eq(ts_h2raw_send_frame(c, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, NULL, 0), 0,
                 "%s", c->err);
    uint64_t close_code = UINT64_MAX;
    cr_assert_eq(ts_h2raw_wait(c, has_close_capsule, &close_code, ts_deadline(ts_ms(10000))), 0,
                 "no CLOSE after the client ended its tunnel (%s)", c->err);
    cr_assert_eq(close_code, CLOSE_NORMAL);
    cr_expect_not(c->goaway, "GOAWAY came with the tunnel's CLOSE, before any idle time");

    uint32_t code = UINT32_MAX;
    cr_assert_eq(ts_h2raw_wait_goaway(c, ts_deadline(ts_ms(15000)), &code), 0,
                 "no GOAWAY within 15 s on a connection idle for longer than conn_idle_ms (%s)",
                 c->err);
    cr_expect_eq(code, NGHTTP2_NO_ERROR, "idle GOAWAY code %u, expected NO_ERROR", code);
    cr_expect_eq(ts_h2raw_wait_closed(c, ts_deadline(ts_ms(10000))), 0,
                 "the gateway did not close the idle connection after its GOAWAY");
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    cr_expect(s && s->end_stream, "the tunnel's stream did not end before the GOAWAY");

    const char *what;
    int ecode;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &ecode), 0, "%s exited with code %d", what, ecode);
}

/* Uplink media on stream 1 of c: one RTP packet of len bytes as a DATAGRAM
 * capsule. The built-in echo sends each one back down. */
static int send_media(ts_h2raw_t *c, uint16_t seq, size_t len)
{
    static uint8_t pkt[65536], capsule[65536 + 16];
    size_t n = ts_pkt_rtp(pkt, sizeof pkt, len, seq, seq * 160u, 0x5a11u, seq);
    ssize_t k = capsule_encode_datagram(capsule, sizeof capsule, pkt, n);
    cr_assert_gt(k, 0);
    for (size_t off = 0; off < (size_t)k; off += 16384) { /* SETTINGS_MAX_FRAME_SIZE */
        size_t part = (size_t)k - off < 16384 ? (size_t)k - off : 16384;
        if (ts_h2raw_send_frame(c, NGHTTP2_DATA, 0, 1, capsule + off, part) < 0)
            return -1;
    }
    return 0;
}

/* Issue 5: "five clients with a zero receive window, or that stopped reading,
 * held their closing tunnels and connections for as long as they liked ...
 * With default settings such a client is gone within 20 s." Here with the
 * default limits: a client whose stream window stays shut while its call's
 * media keeps coming back gets GOAWAY and is closed. */
Test(limits, zero_window_client_is_gone_within_20_s_by_default, .fini = teardown, .timeout = 90)
{
    start_gateway(NULL);
    ts_h2raw_t *c = &clients[0];
    connect_client(c);
    c->auto_window = 0; /* never give the gateway more flow-control credit */
    open_tunnel(c);
    int64_t start = ts_now_ms(), deadline = ts_deadline(ts_ms(20000));
    uint16_t seq = 0;
    while (!c->closed && ts_remaining_ms(deadline) > 0) {
        if (send_media(c, seq++, 1200) < 0)
            break;
        ts_h2raw_poll(c, ts_deadline(ts_ms(20))); /* a 50 pps call, reading */
    }
    ts_h2raw_wait_closed(c, deadline);
    int64_t took = ts_now_ms() - start;
    cr_assert(c->closed, "a client with a shut window was still connected after 20 s");
    cr_assert(c->goaway, "it was closed without a GOAWAY saying why");
    cr_log_info("zero window: closed %lld ms after its call started", (long long)took);
    cr_assert(gateway_logged("no write progress"), "the gateway did not log why");
}

/* The same for a client that stopped reading altogether: the gateway's
 * writes stop making progress once the socket buffers are full. */
Test(limits, client_that_stopped_reading_is_gone_within_20_s_by_default, .fini = teardown,
     .timeout = 90)
{
    start_gateway(NULL);
    ts_h2raw_t *c = &clients[0];
    connect_client(c);
    int small = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    open_tunnel(c);
    int64_t start = ts_now_ms(), deadline = ts_deadline(ts_ms(20000));
    uint16_t seq = 0;
    /* 32 KB of media every 10 ms comes back down and is never read. */
    while (!gateway_logged("no write progress") && ts_remaining_ms(deadline) > 0) {
        if (send_media(c, seq++, 32768) < 0)
            break;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL); /* pacing the load, not synchronisation */
    }
    int64_t took = ts_now_ms() - start;
    cr_assert(gateway_logged("no write progress"),
              "a client that reads nothing was still served after 20 s");
    cr_log_info("stopped reading: dropped %lld ms after its call started", (long long)took);
}
