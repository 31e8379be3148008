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
 * gateway allows 8 CONTINUATIONs per block and then drops the connection
 * (today without a GOAWAY: nghttp2 reports the flood as a fatal error and
 * queues none, so only the close is checked). */
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
    cr_log_info("CONTINUATION flood: GOAWAY %s (code %u); %s", attacker.goaway ? "seen" : "not seen",
                attacker.goaway_code, attacker.err);
    const ts_h2raw_stream_t *s = ts_h2raw_stream(&attacker, 1);
    cr_expect(!s || s->status == 0, "the never-ending request got a %d response",
              s ? s->status : 0);

    expect_bystander_echoes(shim, 2);
    stop_all_cleanly();
}
