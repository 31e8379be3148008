/*
 * test_floods.c — HTTP/2 floods against the real gateway: the attacker's
 * connection is cut, everyone else's tunnel carries on.
 *
 * The attacker is ts_h2raw (hand-built frames over TLS); the bystander is a
 * sluice-shim whose tunnel is proven live before the attack and checked again
 * after it. docs/architecture.md §Bounds promises the nghttp2 flood limits:
 * RST_STREAM rate 1000 burst / 33 per s (rapid reset, CVE-2023-44487) and 8
 * CONTINUATIONs per header block (CVE-2024-28182).
 */
#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_util.h"

#define TUNNEL_PATH "/v1/tunnel/" TS_FX_TENANT "/sfu"

static ts_fixture_t fx;
static ts_h2raw_t attacker;
static int app_fd = -1;

static void teardown(void)
{
    if (app_fd >= 0)
        close(app_fd);
    app_fd = -1;
    ts_h2raw_close(&attacker);
    ts_fixture_teardown(&fx);
}

/* The gateway with a live bystander shim. A request that never completes its
 * headers must not be cut by the header timeout instead of the flood limit,
 * so that deadline is far beyond the test's. */
static ts_shim_t *start_with_bystander(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, "{\"header_timeout_ms\":120000}"), 0,
                 "sluiced did not print its ready line (its output is above)");
    ts_shim_t *shim;
    const char *why = NULL;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim, &app_fd, &why), 0, "%s", why);
    return shim;
}

static void mint(char *username, size_t ucap, char *cred, size_t ccap)
{
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, NULL, username, ucap, cred, ccap),
                 0);
}

/* One RTP packet with a unique id through the bystander's tunnel, retried a
 * few times (loopback UDP may still drop under load), must come back
 * byte-identical. */
static void expect_bystander_echoes(ts_shim_t *shim, uint32_t id)
{
    uint8_t pkt[172], back[2048];
    size_t len = ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, (uint16_t)id, id * 160, 0x5eed0001u, id);
    cr_assert_gt(len, 0u);
    int64_t deadline = ts_deadline(ts_ms(10000));
    int echoed = 0;
    for (int attempt = 0; attempt < 20 && !echoed && ts_remaining_ms(deadline) > 0; attempt++) {
        cr_assert_eq(ts_udp_send(app_fd, &shim->listen, pkt, len), 0);
        int64_t retry = ts_deadline(500);
        ssize_t n;
        while (!echoed && (n = ts_udp_recv(app_fd, back, sizeof back,
                                           retry < deadline ? retry : deadline, NULL)) >= 0)
            echoed = (size_t)n == len && memcmp(back, pkt, len) == 0;
    }
    cr_expect(echoed, "the bystander's tunnel no longer echoes (packet %u)", id);
    cr_expect(ts_proc_running(&shim->proc), "the bystander shim exited");
}

static void stop_all_cleanly(void)
{
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0,
                 "%s exited with code %d after SIGTERM, expected 0 (its stderr is above)", what,
                 code);
}

/* Rapid reset (CVE-2023-44487): open a tunnel and cancel it at once, over and
 * over. nghttp2's RST_STREAM rate limit (1000 burst, 33/s) answers with
 * GOAWAY and the gateway closes the connection once it is written. */
Test(floods, rapid_reset_cuts_the_attacker_not_the_bystander, .fini = teardown, .timeout = 120)
{
    enum { STREAMS = 5000, BATCH = 64 };
    ts_shim_t *shim = start_with_bystander();
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    mint(username, sizeof username, cred, sizeof cred);
    cr_assert_eq(ts_h2raw_connect(&attacker, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))),
                 0, "%s", attacker.err);

    static const uint8_t cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
    int sent = 0;
    for (int i = 0; i < STREAMS; i++) {
        int32_t id = 2 * i + 1;
        if (ts_h2raw_queue_request(&attacker, id, TUNNEL_PATH, username, cred, 0) < 0 ||
            ts_h2raw_queue_frame(&attacker, NGHTTP2_RST_STREAM, 0, id, cancel, sizeof cancel) <
                0)
            break;
        sent++;
        if (sent % BATCH == 0 && ts_h2raw_flush(&attacker) < 0)
            break;
    }
    ts_h2raw_flush(&attacker);
    cr_log_info("rapid reset: %d HEADERS + RST_STREAM pairs written before the gateway cut in",
                sent);

    uint32_t code = 0;
    cr_expect_eq(ts_h2raw_wait_goaway(&attacker, ts_deadline(ts_ms(15000)), &code), 0,
                 "no GOAWAY after %d rapid resets (%s)", sent, attacker.err);
    cr_expect_neq(code, NGHTTP2_NO_ERROR, "GOAWAY(NO_ERROR) for a flood; expected an error code");
    cr_log_info("rapid reset: GOAWAY error code %u", code);
    cr_expect_eq(ts_h2raw_wait_closed(&attacker, ts_deadline(ts_ms(15000))), 0,
                 "the gateway kept the attacker's connection open for 15 s after the flood");

    expect_bystander_echoes(shim, 1);
    stop_all_cleanly();
}

/* CONTINUATION flood (CVE-2024-28182): a header block that never ends. The
 * gateway allows 8 CONTINUATIONs per block (and counts each against the
 * control-frame budget), then says GOAWAY and drops the connection. */
Test(floods, continuation_flood_cuts_the_attacker_not_the_bystander, .fini = teardown,
     .timeout = 120)
{
    enum { CONTINUATIONS = 2000 };
    ts_shim_t *shim = start_with_bystander();
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    mint(username, sizeof username, cred, sizeof cred);
    cr_assert_eq(ts_h2raw_connect(&attacker, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))),
                 0, "%s", attacker.err);

    cr_assert_eq(ts_h2raw_request(&attacker, 1, TUNNEL_PATH, username, cred,
                                  TS_H2RAW_NO_END_HEADERS),
                 0, "%s", attacker.err);
    /* Empty CONTINUATIONs (RFC 9113 §6.10 allows them): the block never
     * grows, so no bound on header size can cut the connection in the count
     * limit's place. */
    int sent = 0;
    for (int i = 0; i < CONTINUATIONS; i++) {
        if (ts_h2raw_queue_frame(&attacker, NGHTTP2_CONTINUATION, 0, 1, NULL, 0) < 0)
            break;
        sent++;
        if (sent % 64 == 0 && ts_h2raw_flush(&attacker) < 0)
            break;
    }
    ts_h2raw_flush(&attacker);
    cr_log_info("CONTINUATION flood: %d frames written before the gateway cut in", sent);

    cr_expect_eq(ts_h2raw_wait_closed(&attacker, ts_deadline(ts_ms(15000))), 0,
                 "the gateway kept the attacker's connection open for 15 s after %d "
                 "CONTINUATION frames",
                 sent);
    cr_expect(attacker.goaway, "the connection was cut without a GOAWAY saying why");
    cr_expect_eq(attacker.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    const ts_h2raw_stream_t *s = ts_h2raw_stream(&attacker, 1);
    cr_expect(!s || s->status == 0, "the never-ending request got a %d response",
              s ? s->status : 0);

    expect_bystander_echoes(shim, 2);
    stop_all_cleanly();
}

static int stream1_reset(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    return (s && s->reset) || c->closed;
}

/* HPACK bomb: one 4,000-byte header enters the dynamic table, then 1-byte
 * indexed references to it would expand a small request to megabytes of
 * header fields. The advertised 16 KiB header-list limit is enforced as the
 * block decodes: the stream is reset after a few fields, repeated offences
 * end the connection, and the bystander's call goes on. */
Test(floods, hpack_bomb_is_cut_at_the_advertised_header_list_size, .fini = teardown,
     .timeout = 120)
{
    enum { REFS = 12000, BOMBS = 3 };
    ts_shim_t *shim = start_with_bystander();
    cr_assert_eq(ts_h2raw_connect(&attacker, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))),
                 0, "%s", attacker.err);
    static uint8_t block[TS_H2RAW_BOMB_CAP(REFS)];
    for (int b = 0; b < BOMBS; b++) {
        size_t n = ts_h2raw_hpack_bomb(block, TUNNEL_PATH, b == 0, REFS);
        if (ts_h2raw_queue_block(&attacker, 2 * b + 1, block, n, 0) < 0)
            break;
        if (ts_h2raw_flush(&attacker) < 0)
            break;
        /* The first bomb alone costs its stream, not the connection. (Later
         * ones are not waited for: the last one's GOAWAY may overtake its
         * RST_STREAM, which is fine.) */
        if (b == 0)
            cr_assert_eq(ts_h2raw_wait(&attacker, stream1_reset, NULL, ts_deadline(ts_ms(15000))),
                         0, "the first bomb's stream was not reset (%s)", attacker.err);
    }
    uint32_t code = 0;
    cr_expect_eq(ts_h2raw_wait_goaway(&attacker, ts_deadline(ts_ms(15000)), &code), 0,
                 "no GOAWAY after %d HPACK bombs (%s)", BOMBS, attacker.err);
    cr_expect_eq(code, NGHTTP2_ENHANCE_YOUR_CALM);
    const ts_h2raw_stream_t *s1 = ts_h2raw_stream(&attacker, 1);
    cr_expect(s1 && s1->reset && s1->rst_code == NGHTTP2_ENHANCE_YOUR_CALM,
              "the first bomb's stream was not reset with ENHANCE_YOUR_CALM");
    cr_expect(!s1 || s1->status == 0, "a bomb got a %d response", s1 ? s1->status : 0);
    cr_expect_eq(ts_h2raw_wait_closed(&attacker, ts_deadline(ts_ms(15000))), 0,
                 "the attacker's connection stayed open");
    expect_bystander_echoes(shim, 3);
    stop_all_cleanly();
}

/* Frames nghttp2 itself never cuts — WINDOW_UPDATE, and DATA with no payload
 * — spend the connection's control-frame budget: GOAWAY(ENHANCE_YOUR_CALM),
 * then close, while the bystander carries on. */
static void control_flood(uint8_t type, int32_t stream, const void *payload, size_t len)
{
    enum { FRAMES = 20000 };
    int sent = 0;
    for (int i = 0; i < FRAMES; i++) {
        if (ts_h2raw_queue_frame(&attacker, type, 0, stream, payload, len) < 0)
            break;
        sent++;
        if (sent % 256 == 0 && ts_h2raw_flush(&attacker) < 0)
            break;
    }
    ts_h2raw_flush(&attacker);
    uint32_t code = 0;
    cr_expect_eq(ts_h2raw_wait_goaway(&attacker, ts_deadline(ts_ms(15000)), &code), 0,
                 "no GOAWAY after %d frames of type %u (%s)", sent, type, attacker.err);
    cr_expect_eq(code, NGHTTP2_ENHANCE_YOUR_CALM);
    cr_expect_eq(ts_h2raw_wait_closed(&attacker, ts_deadline(ts_ms(15000))), 0,
                 "the attacker's connection stayed open");
}

Test(floods, window_update_flood_gets_enhance_your_calm, .fini = teardown, .timeout = 120)
{
    ts_shim_t *shim = start_with_bystander();
    cr_assert_eq(ts_h2raw_connect(&attacker, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))),
                 0, "%s", attacker.err);
    static const uint8_t one[4] = {0, 0, 0, 1}; /* a window increment of 1 */
    control_flood(NGHTTP2_WINDOW_UPDATE, 0, one, sizeof one);
    expect_bystander_echoes(shim, 4);
    stop_all_cleanly();
}

Test(floods, empty_data_flood_gets_enhance_your_calm, .fini = teardown, .timeout = 120)
{
    ts_shim_t *shim = start_with_bystander();
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    mint(username, sizeof username, cred, sizeof cred);
    cr_assert_eq(ts_h2raw_connect(&attacker, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))),
                 0, "%s", attacker.err);
    cr_assert_eq(ts_h2raw_request(&attacker, 1, TUNNEL_PATH, username, cred, 0), 0, "%s",
                 attacker.err);
    cr_assert_eq(ts_h2raw_wait_status(&attacker, 1, ts_deadline(ts_ms(10000))), 200, "%s",
                 attacker.err);
    control_flood(NGHTTP2_DATA, 1, NULL, 0);
    expect_bystander_echoes(shim, 5);
    stop_all_cleanly();
}

/* Writes count PING frames through attacker's TLS without reading a byte.
 * Returns the frames written before the gateway stopped taking them, or
 * count. */
static size_t ping_flood_unread(size_t count, int64_t deadline)
{
    enum { PINGS_PER_RECORD = 16384 / 17 };
    static uint8_t record[PINGS_PER_RECORD * 17];
    for (size_t i = 0; i < PINGS_PER_RECORD; i++) {
        uint8_t *f = record + i * 17;
        memset(f, 0, 17);
        f[2] = 8;                /* length 8 */
        f[3] = NGHTTP2_PING;     /* type; flags 0; stream 0 */
        memcpy(f + 9, &i, sizeof i < 8 ? sizeof i : 8);
    }
    SSL *ssl = attacker._ssl;
    size_t sent = 0;
    while (sent < count && ts_remaining_ms(deadline) > 0) {
        size_t n = count - sent < PINGS_PER_RECORD ? count - sent : PINGS_PER_RECORD;
        int w = SSL_write(ssl, record, (int)(n * 17));
        if (w > 0) {
            sent += (size_t)w / 17; /* SSL_write writes a whole record or nothing */
            continue;
        }
        if (SSL_get_error(ssl, w) != SSL_ERROR_WANT_WRITE)
            break; /* the gateway has closed (reset or EOF) */
        struct pollfd p = {.fd = attacker.fd, .events = POLLOUT};
        poll(&p, 1, (int)ts_remaining_ms(deadline));
    }
    ERR_clear_error();
    return sent;
}

/* The GOAWAY that says why must reach the attacker, even one that reads
 * nothing while it floods, keeps its receive window small, and sends again
 * after the gateway has ended the connection: the PING acknowledgements and
 * the GOAWAY behind them then wait in the gateway's send queue. A plain
 * close() answers the bytes that arrive after it with a reset, which throws
 * them away (and, on Linux, what the client had received but not read); the
 * gateway's lingering close (gateway/linger.c) reads and discards instead
 * until the client closes. */
Test(floods, the_goaway_reaches_a_flooder_that_reads_nothing_until_it_is_done, .fini = teardown,
     .timeout = 120)
{
    enum { PINGS = 60000 }; /* 1 MB: far beyond the control-frame budget */
    start_with_bystander();
    /* A small window: the gateway's acks cannot all be delivered. */
    cr_assert_eq(ts_h2raw_connect_rcvbuf(&attacker, &fx.gw.listen[0], NULL, 4096,
                                         ts_deadline(ts_ms(10000))),
                 0, "%s", attacker.err);
    size_t sent = ping_flood_unread(PINGS, ts_deadline(ts_ms(20000)));
    cr_log_info("PING flood: %zu frames written before stopping to read", sent);
    /* Once the gateway has ended the connection (it is no longer
     * established on the gateway's side), one more record. */
    ts_addr_t me = {.len = sizeof me.sa};
    cr_assert_eq(getsockname(attacker.fd, (struct sockaddr *)&me.sa, &me.len), 0);
    int64_t ended = ts_deadline(ts_ms(10000));
    while (ts_tcp_count_conns(fx.gw.proc.pid, ts_addr_port(&me)) > 0 && ts_remaining_ms(ended) > 0)
        poll(NULL, 0, 5); /* polls a condition, bounded by the deadline */
    cr_assert_eq(ts_tcp_count_conns(fx.gw.proc.pid, ts_addr_port(&me)), 0,
                 "the gateway did not end the flooder's connection");
    ping_flood_unread(100, ts_deadline(ts_ms(2000)));
    uint32_t code = 0;
    cr_assert_eq(ts_h2raw_wait_goaway(&attacker, ts_deadline(ts_ms(15000)), &code), 0,
                 "no GOAWAY reached the flooder (%s; %llu PING acks read)", attacker.err,
                 (unsigned long long)attacker.frames_in[NGHTTP2_PING]);
    cr_expect_eq(code, NGHTTP2_ENHANCE_YOUR_CALM);
    cr_expect(attacker.goaway_debug[0], "the GOAWAY carried no reason");
    cr_expect_eq(ts_h2raw_wait_closed(&attacker, ts_deadline(ts_ms(15000))), 0,
                 "the attacker's connection stayed open");
    stop_all_cleanly();
}
