/*
 * test_resume_gw.c — session resume on the real gateway (proto/README.md
 * §8.1), over TLS and TCP: the client's connection dies and a new one resumes
 * the tunnel; the echo backend must see one source address for both; a
 * resume while the first connection is still up takes the tunnel over; and a
 * 200 x 1,200 B burst echoed by the backend comes back whole.
 *
 * The client is ts_h2raw, so a test can drop a connection exactly when it
 * wants and send the tunnel-resume header.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_util.h"

#define TUNNEL_PATH "/v1/tunnel/" TS_FX_TENANT "/sfu"

static ts_fixture_t fx;
static ts_h2raw_t a, b;

static void teardown(void)
{
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    ts_fixture_teardown(&fx);
}

static void start_gateway(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0,
                 "sluiced did not print its ready line (its output is above)");
}

static void connect_client(ts_h2raw_t *c)
{
    cr_assert_eq(ts_h2raw_connect(c, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to the gateway: %s", c->err);
}

/* A tunnel request on stream 1 of c for path, as tenant acme (or beta when
 * the path names it), resuming token when it is not NULL; returns the status. */
static int request_path(ts_h2raw_t *c, const char *path, const char *token)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    int beta = strstr(path, TS_FX_TENANT_B) != NULL;
    cr_assert_eq(ts_cred_mint(beta ? CRED_SHA256 : CRED_SHA1, beta ? TS_FX_SECRET_B : TS_FX_SECRET,
                              600, NULL, username, sizeof username, cred, sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request_resume(c, 1, path, username, cred, token, 0), 0, "%s",
                 c->err);
    return ts_h2raw_wait_status(c, 1, ts_deadline(ts_ms(10000)));
}

static int request(ts_h2raw_t *c, const char *token)
{
    return request_path(c, TUNNEL_PATH, token);
}

/* Sends one DATAGRAM capsule on stream 1. */
static void send_datagram(ts_h2raw_t *c, const uint8_t *p, size_t len)
{
    uint8_t buf[2048];
    ssize_t n = capsule_encode_datagram(buf, sizeof buf, p, len);
    cr_assert_gt(n, 0);
    cr_assert_eq(ts_h2raw_send_frame(c, 0 /* DATA */, 0, 1, buf, (size_t)n), 0, "%s", c->err);
}

static int body_has(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    return s && s->body_len + s->body_over >= *(size_t *)arg;
}

static int has_close(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    return s && ts_find_close(s->body, s->body_len, arg, NULL, 0) >= 0 && s->end_stream;
}

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'r',  'e',  's',  'u', 'm', 'e'};

/* One datagram up, its echo down: the body grows by one capsule. */
static void round_trip(ts_h2raw_t *c)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    size_t want = s->body_len + s->body_over + 2 + 1 + sizeof rtp;
    send_datagram(c, rtp, sizeof rtp);
    cr_assert_eq(ts_h2raw_wait(c, body_has, &want, ts_deadline(ts_ms(5000))), 0,
                 "no echo through the tunnel");
}

Test(resume_gw, a_new_connection_resumes_the_tunnel_on_the_same_backend_port,
     .fini = teardown, .timeout = 60)
{
    start_gateway();
    connect_client(&a);
    cr_assert_eq(request(&a, NULL), 200);
    char token[64];
    snprintf(token, sizeof token, "%s", ts_h2raw_stream(&a, 1)->session);
    cr_assert_eq(strlen(token), 22, "tunnel-session \"%s\"", token);
    round_trip(&a);

    /* The connection dies (no CLOSE, no END_STREAM): the flow is parked. */
    int64_t cut = ts_now_ns();
    ts_h2raw_close(&a);
    cr_assert_eq(ts_log_wait(fx.gw.proc.err_path, "event=tunnel.detach", 1,
                             ts_deadline(ts_ms(5000))),
                 0, "the gateway did not park the tunnel");

    connect_client(&b);
    cr_assert_eq(request(&b, token), 200);
    cr_assert_str_eq(ts_h2raw_stream(&b, 1)->session, token);
    round_trip(&b);
    double gap_ms = (double)(ts_now_ns() - cut) / 1e6;
    cr_log_info("resume: connection cut to first echo on the new connection: %.1f ms", gap_ms);

    ts_addr_t src[4];
    cr_assert_eq(ts_echo_sources(fx.echo, src, 4), 1,
                 "the backend saw more than one source address");
    cr_assert_eq(ts_echo_packets(fx.echo), 2);

    const char *what;
    int code;
    ts_h2raw_close(&b);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited %d", what, code);
}

Test(resume_gw, a_resume_while_attached_takes_over_and_closes_the_old_stream,
     .fini = teardown, .timeout = 60)
{
    start_gateway();
    connect_client(&a);
    cr_assert_eq(request(&a, NULL), 200);
    char token[64];
    snprintf(token, sizeof token, "%s", ts_h2raw_stream(&a, 1)->session);
    round_trip(&a);

    connect_client(&b);
    cr_assert_eq(request(&b, token), 200);
    uint64_t close_code = 0;
    cr_assert_eq(ts_h2raw_wait(&a, has_close, &close_code, ts_deadline(ts_ms(5000))), 0,
                 "the first stream got no CLOSE");
    cr_assert_eq(close_code, CLOSE_TAKEN_OVER);
    round_trip(&b);
    cr_assert_eq(ts_echo_sources(fx.echo, NULL, 0), 1);
}

/* A keyframe through the whole path: 200 x 1,200 B up back to back, echoed
 * back to back by the gateway's built-in echo (region "eu": the backend on
 * the gateway's own loop, so the burst meets the gateway's batching and
 * buffers rather than a test thread's scheduling), all 200 down. */
Test(resume_gw, a_200_packet_burst_comes_back_whole, .fini = teardown, .timeout = 60)
{
    start_gateway();
    connect_client(&a);
    cr_assert_eq(request_path(&a, "/v1/tunnel/" TS_FX_TENANT_B "/sfu?region=eu", NULL), 200);
    uint8_t pkt[1200], frame[16384];
    memset(pkt, 0x33, sizeof pkt);
    pkt[0] = 0x80;
    size_t fill = 0, per = 0;
    for (int i = 0; i < 200; i++) {
        pkt[3] = (uint8_t)i;
        ssize_t n = capsule_encode_datagram(frame + fill, sizeof frame - fill, pkt, sizeof pkt);
        if (n < 0) { /* frame full: send it */
            cr_assert_eq(ts_h2raw_queue_frame(&a, 0, 0, 1, frame, fill), 0, "%s", a.err);
            fill = 0;
            n = capsule_encode_datagram(frame, sizeof frame, pkt, sizeof pkt);
        }
        per = (size_t)n;
        fill += (size_t)n;
    }
    cr_assert_eq(ts_h2raw_send_frame(&a, 0, 0, 1, frame, fill), 0, "%s", a.err);
    size_t want = 200 * per;
    int rc = ts_h2raw_wait(&a, body_has, &want, ts_deadline(ts_ms(10000)));
    const ts_h2raw_stream_t *s = ts_h2raw_stream(&a, 1);
    if (rc != 0) {
        /* Say where they went: the gateway logs the tunnel's drops at close. */
        uint8_t close[8];
        ssize_t n = capsule_encode_close(close, sizeof close, CLOSE_NORMAL, "", 0);
        ts_h2raw_send_frame(&a, 0, 1 /* END_STREAM */, 1, close, (size_t)n);
        ts_log_wait(fx.gw.proc.err_path, "event=tunnel.close", 1, ts_deadline(ts_ms(2000)));
        char line[512] = "";
        ts_log_line(fx.gw.proc.err_path, "event=tunnel.close", 1, line, sizeof line);
        cr_assert_fail("%zu of %zu body bytes came back; %s", s->body_len + s->body_over, want,
                       line);
    }
    cr_assert_eq(s->body_len + s->body_over, want, "nothing but the 200 datagrams");
}
