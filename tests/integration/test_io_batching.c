/*
 * test_io_batching.c — the gateway's batched I/O loses nothing.
 *
 * sluiced reads TLS with read-ahead (one read() takes every record the kernel
 * holds), stops reading once TLS holds no more bytes, reads at most a share of
 * records per readiness event and comes back for the rest from an idle watcher
 * (gateway/conn.c, conn_read): records TLS has already taken from the kernel
 * are announced by no readiness event, so leaving one behind would strand it.
 * It also takes backend datagrams in recvmmsg batches (gateway/tunnel.c,
 * udp_cb), which must keep their order. Here a raw
 * HTTP/2 client (ts_h2raw) corks its socket, writes many DATAGRAM capsules in
 * separate TLS records (one DATA frame each), and uncorks: the gateway gets
 * them all in one read, relays them in one burst to the echo backend, and
 * must deliver every echo back, in order.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../../proto/capsule.h"
#include "../support/ts_fixture.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_pkt.h"
#include "../support/ts_util.h"

#define TUNNEL_PATH "/v1/tunnel/" TS_FX_TENANT "/sfu"
/* More records than one readiness event reads (READS_PER_EVENT, 8) and more
 * datagrams than one recvmmsg takes (TUNNEL_UDP_BATCH, 16). */
#define BURST 60u
#define PAYLOAD 48u

static ts_fixture_t fx;
static ts_h2raw_t client;

static void teardown(void)
{
    ts_h2raw_close(&client);
    ts_fixture_teardown(&fx);
}

typedef struct {
    int32_t stream;
    size_t want;
} body_wait_t;

static int has_datagrams(const ts_h2raw_t *c, void *arg)
{
    const body_wait_t *w = arg;
    const ts_h2raw_stream_t *s = NULL;
    for (size_t i = 0; i < TS_H2RAW_STREAMS; i++)
        if (c->streams[i].id == w->stream)
            s = &c->streams[i];
    size_t n = 0, closes = 0;
    uint64_t code;
    if (!s || ts_walk_capsules(s->body, s->body_len, &n, &closes, &code) < 0)
        return 0;
    return n >= w->want || closes > 0;
}

static const ts_h2raw_stream_t *stream_of(int32_t id)
{
    for (size_t i = 0; i < TS_H2RAW_STREAMS; i++)
        if (client.streams[i].id == id)
            return &client.streams[i];
    return NULL;
}

Test(io_batching, a_corked_burst_of_records_is_relayed_whole_and_in_order, .fini = teardown,
     .timeout = 60)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0, "sluiced did not start");
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, NULL, username, sizeof username,
                              cred, sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_connect(&client, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "%s", client.err);
    cr_assert_eq(ts_h2raw_request(&client, 1, TUNNEL_PATH, username, cred, 0), 0, "%s",
                 client.err);
    cr_assert_eq(ts_h2raw_wait_status(&client, 1, ts_deadline(ts_ms(10000))), 200, "%s",
                 client.err);

    /* From here the client sends nothing but the burst (no WINDOW_UPDATE, no
     * acks), so no later bytes can wake the gateway for records it left. */
    client.auto_window = 0;
    client.auto_ack = 0;
    int on = 1, off = 0;
    cr_assert_eq(setsockopt(client.fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on), 0);
    for (uint32_t i = 0; i < BURST; i++) {
        uint8_t pkt[PAYLOAD], cap[PAYLOAD + CAPSULE_MAX_OVERHEAD];
        cr_assert_eq(ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, (uint16_t)i, i * 160, 7, i),
                     sizeof pkt);
        ssize_t n = capsule_encode_datagram(cap, sizeof cap, pkt, sizeof pkt);
        cr_assert_gt(n, 0);
        /* One frame per flush: each its own SSL_write, so its own record. */
        cr_assert_eq(ts_h2raw_send_frame(&client, NGHTTP2_DATA, 0, 1, cap, (size_t)n), 0, "%s",
                     client.err);
    }
    cr_assert_eq(setsockopt(client.fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off), 0);

    body_wait_t w = {.stream = 1, .want = BURST};
    cr_assert_eq(ts_h2raw_wait(&client, has_datagrams, &w, ts_deadline(ts_ms(10000))), 0,
                 "not every echo of a %u-record burst came back: %s", BURST, client.err);
    const ts_h2raw_stream_t *s = stream_of(1);
    cr_assert_not_null(s);
    /* Walk the body: BURST datagrams, ids 0..BURST-1 in order. */
    size_t off_b = 0;
    for (uint32_t i = 0; i < BURST; i++) {
        capsule_t c;
        ssize_t used = capsule_decode(s->body + off_b, s->body_len - off_b, 65536, &c, NULL);
        cr_assert_gt(used, 0, "capsule %u does not decode", i);
        uint64_t ctx;
        const uint8_t *p;
        size_t len;
        cr_assert_eq(capsule_parse_datagram(&c, &ctx, &p, &len), 0);
        cr_assert_eq(len, PAYLOAD);
        cr_assert_eq(ts_get32(p + TS_RTP_HEADER), i, "echo %u out of order", i);
        off_b += (size_t)used;
    }
    ts_h2raw_close(&client); /* no tunnel left to drain */
    const char *what = "";
    int code = 0;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}
