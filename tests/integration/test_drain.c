/*
 * test_drain.c — a graceful shutdown of a real sluiced in its phases
 * (server_drain, docs/operations.md "Drain and rolling restarts"): a call
 * sends a packet every 5 ms through a tunnel; on SIGTERM /readyz turns 503 at
 * once, a new tunnel is still served during the deregistration delay D, then
 * the connection gets GOAWAY and a new connection is refused; the call runs
 * on and every packet sent before the drain deadline (T after GOAWAY) comes
 * back; then CLOSE(shutting down), and the gateway exits 0.
 *
 * The client is the raw HTTP/2 client (ts_h2raw): it stays on its connection
 * after GOAWAY, as a client of the gateway's promise must to be counted;
 * sluice-shim instead moves to a new connection at GOAWAY (docs/shim.md).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_curl.h"
#include "../support/ts_cutter.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define D_MS 800   /* limits.deregister_ms */
#define T_MS 1200  /* limits.drain_ms */
#define FLUSH_MS 1000 /* limits.drain_timeout_ms */
#define EVERY_MS 5
#define MARGIN_MS 50 /* a packet this close to the deadline may be in flight at CLOSE */
#define MAX_PKTS 1000
#define PATH "/v1/tunnel/acme/sfu"

static ts_gateway_t gw, gw_b;
static ts_h2raw_t call, late;
static char admin_addr[64];
static ts_shim_t shim;
static ts_cutter_t *front;
static int app_fd = -1;

static void teardown(void)
{
    ts_h2raw_close(&call);
    ts_h2raw_close(&late);
    ts_shim_dispose(&shim);
    ts_cutter_stop(front);
    front = NULL;
    if (app_fd >= 0)
        close(app_fd);
    app_fd = -1;
    ts_gateway_dispose(&gw);
    ts_gateway_dispose(&gw_b);
}

/* A gateway with the built-in echo, tenant acme, these drain limits and an
 * admin listener whose address goes to admin (may be NULL). */
static void start_gw(ts_gateway_t *g, int d_ms, int t_ms, char *admin, size_t admin_cap)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    char cert[1024], key[1024], conf[PATH_MAX], text[4096];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(text, sizeof text,
             "{\"listen\": [\"127.0.0.1:0\"], \"tls\": {\"cert\": \"%s\", \"key\": \"%s\"},"
             " \"region\": \"local\", \"limits\": {\"capsule_ping_ms\": 0,"
             " \"deregister_ms\": %d, \"drain_ms\": %d, \"drain_timeout_ms\": %d},"
             " \"regions\": {\"local\": {\"sfu\": [\"builtin:echo\"]}},"
             " \"admin\": {\"listen\": \"127.0.0.1:0\","
             " \"tokens\": [{\"token\": \"root-token-0123456789\"}]},"
             " \"tenants\": [{\"id\": \"acme\", \"secrets\": [\"s1\"], \"regions\": [\"local\"]}]}",
             cert, key, d_ms, t_ms, FLUSH_MS);
    cr_assert_eq(ts_config_write_raw(text, conf, sizeof conf), 0);
    cr_assert_eq(ts_gateway_start(g, NULL, conf, ts_deadline(ts_ms(10000))), 0,
                 "sluiced did not start (its output is above)");
    char addr[128];
    cr_assert_eq(ts_gateway_admin_addr(g, admin ? admin : addr, admin ? admin_cap : sizeof addr,
                                       ts_deadline(ts_ms(5000))),
                 0, "no admin line");
}

static void start(void)
{
    start_gw(&gw, D_MS, T_MS, admin_addr, sizeof admin_addr);
}

static long readyz(void)
{
    char url[256];
    ts_curl_reply_t r;
    snprintf(url, sizeof url, "http://%s/readyz", admin_addr);
    long status = ts_curl("GET", url, NULL, NULL, 5000L, &r);
    cr_assert_neq(status, -1, "GET /readyz: %s", r.err);
    return status;
}

/* Connects c and opens a tunnel on stream 1; returns its :status. */
static int open_tunnel(ts_h2raw_t *c)
{
    if (ts_h2raw_connect(c, &gw.listen[0], NULL, ts_deadline(ts_ms(5000))) < 0)
        return -1;
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, "s1", 600, NULL, username, sizeof username, cred,
                              sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request(c, 1, PATH, username, cred, 0), 0, "%s", c->err);
    return ts_h2raw_wait_status(c, 1, ts_deadline(ts_ms(5000)));
}

/* One packet of the call: RTP-like, its number in the sequence field. */
static void send_pkt(uint16_t seq)
{
    uint8_t pkt[12] = {0x80, 0x60, (uint8_t)(seq >> 8), (uint8_t)seq, 0, 0, 0, 0,
                       0x0b, 0xad, 0xca, 0xfe};
    uint8_t cap[64];
    ssize_t n = capsule_encode_datagram(cap, sizeof cap, pkt, sizeof pkt);
    cr_assert_gt(n, 0);
    cr_assert_eq(ts_h2raw_send_frame(&call, 0 /* DATA */, 0, 1, cap, (size_t)n), 0, "%s",
                 call.err);
}

/* The call's pace: reads what arrives for EVERY_MS. ts_h2raw_poll returns as
 * soon as bytes arrive, so one poll per packet would send faster than one
 * packet per EVERY_MS whenever the echo is quick, and the body would outgrow
 * the client's record. Returns -1 once the connection has closed. */
static int poll_call(void)
{
    int64_t due = ts_deadline(EVERY_MS);
    int rc;
    do
        rc = ts_h2raw_poll(&call, due);
    while (rc >= 0 && ts_now_ms() < due);
    return rc;
}

/* Marks every packet echoed on stream 1 in back[]; returns the CLOSE code
 * (or -1 without one). */
static int64_t scan_body(unsigned char *back, size_t nback)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(&call, 1);
    cr_assert_not_null(s);
    cr_assert_eq(s->body_over, 0u, "the body outgrew the client's record");
    size_t off = 0;
    int64_t close_code = -1;
    while (off < s->body_len) {
        capsule_t c;
        ssize_t n = capsule_decode(s->body + off, s->body_len - off, 65535, &c, NULL);
        if (n <= 0)
            break;
        off += (size_t)n;
        uint64_t ctx;
        const uint8_t *p;
        size_t len;
        if (c.type == CAPSULE_DATAGRAM && capsule_parse_datagram(&c, &ctx, &p, &len) == 0 &&
            len == 12) {
            unsigned seq = (unsigned)(p[2] << 8 | p[3]);
            if (seq < nback)
                back[seq] = 1;
        } else if (c.type == CAPSULE_CLOSE) {
            uint64_t code;
            const char *why;
            size_t wlen;
            if (capsule_parse_close(&c, &code, &why, &wlen) == 0)
                close_code = (int64_t)code;
        }
    }
    return close_code;
}

static int has_close(const ts_h2raw_t *c, void *arg)
{
    unsigned char back[MAX_PKTS];
    (void)c;
    return scan_body(back, 0) >= 0;
}

Test(drain, a_call_runs_through_the_drain_and_loses_nothing, .fini = teardown, .timeout = 60)
{
    start();
    cr_assert_eq(readyz(), 200);
    cr_assert_eq(open_tunnel(&call), 200, "the call's tunnel: %s", call.err);

    static int64_t sent_at[MAX_PKTS];
    unsigned nsent = 0;
    for (; nsent < 20; nsent++) { /* the call before the stop */
        sent_at[nsent] = ts_now_ms();
        send_pkt((uint16_t)nsent);
        poll_call();
    }

    int64_t t_term = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&gw.proc, SIGTERM), 0);
    /* 1. /readyz 503 at once (a load balancer starts to deregister). */
    long st = 200;
    int64_t until = ts_deadline(ts_ms(500));
    while (ts_now_ms() < until && (st = readyz()) == 200)
        poll_call(); /* the call does not wait */
    int64_t t_503 = ts_now_ms() - t_term;
    cr_assert_eq(st, 503, "/readyz still 200 500 ms after SIGTERM");
    /* ... and a new tunnel within D is still served. */
    cr_assert_eq(open_tunnel(&late), 200, "a new tunnel within the deregistration delay: %s",
                 late.err);
    cr_assert_lt(ts_now_ms() - t_term, D_MS, "the deregistration check came too late");
    ts_h2raw_close(&late);

    /* The call runs on through D, GOAWAY and T, until CLOSE. */
    int64_t t_goaway = -1, t_close = -1, t_refused = -1;
    int64_t end = ts_deadline(ts_ms(D_MS + T_MS + 5000));
    while (nsent < MAX_PKTS && ts_now_ms() < end) {
        sent_at[nsent] = ts_now_ms();
        if (t_close < 0 && !call.closed)
            send_pkt((uint16_t)nsent);
        nsent++;
        if (poll_call() < 0 && t_close < 0)
            break;
        if (call.goaway && t_goaway < 0) {
            t_goaway = ts_now_ms();
            /* 2. Past D: a new connection is refused. */
            cr_assert_lt(ts_h2raw_connect(&late, &gw.listen[0], NULL, ts_deadline(ts_ms(2000))),
                         0, "a new connection after GOAWAY was served");
            ts_h2raw_close(&late);
            t_refused = ts_now_ms();
        }
        if (t_close < 0 && has_close(&call, NULL))
            t_close = ts_now_ms();
        if (t_close >= 0)
            break;
    }
    cr_assert_geq(t_goaway, 0, "no GOAWAY");
    cr_assert_geq(t_close, 0, "no CLOSE within D + T + 5 s of SIGTERM");
    cr_assert_geq(t_goaway - t_term, D_MS - 50, "GOAWAY %lld ms after SIGTERM, before D",
                  (long long)(t_goaway - t_term));
    cr_assert_geq(t_close - t_goaway, T_MS - 100, "CLOSE %lld ms after GOAWAY, before T",
                  (long long)(t_close - t_goaway));

    /* 3. CLOSE(shutting down), then the gateway exits 0. */
    int code = ts_proc_wait_exit(&gw.proc, ts_deadline(ts_ms(FLUSH_MS + 3000)));
    cr_assert_eq(code, 0, "sluiced exit %d after the drain (-1: still running)", code);
    int64_t t_exit = ts_now_ms() - t_term;
    ts_h2raw_poll(&call, ts_deadline(50));
    static unsigned char back[MAX_PKTS];
    cr_assert_eq(scan_body(back, MAX_PKTS), CLOSE_SHUTTING_DOWN);

    /* Every packet sent before the drain deadline came back. */
    int64_t deadline = t_goaway + T_MS - MARGIN_MS;
    unsigned counted = 0, lost = 0;
    for (unsigned i = 0; i < nsent; i++) {
        if (sent_at[i] >= deadline)
            break;
        counted++;
        if (!back[i]) {
            lost++;
            cr_log_error("packet %u sent %lld ms after SIGTERM did not come back", i,
                         (long long)(sent_at[i] - t_term));
        }
    }
    cr_log_info("drain: readyz 503 after %lld ms, GOAWAY after %lld ms, new connection refused "
                "after %lld ms, CLOSE after %lld ms, exit after %lld ms; %u packets before the "
                "deadline, %u lost",
                (long long)t_503, (long long)(t_goaway - t_term), (long long)(t_refused - t_term),
                (long long)(t_close - t_term), (long long)t_exit, counted, lost);
    /* The call pauses while the test checks readyz and opens or is refused a
     * connection; through T it sends every 5 ms. */
    cr_assert_gt(counted, T_MS / EVERY_MS / 2, "the call sent too little (%u)", counted);
    cr_assert_eq(lost, 0u, "%u of %u packets sent before the drain deadline were lost", lost,
                 counted);
}

/* Two gateways behind a front (a TCP relay standing in for an L4 balancer):
 * A drains while a call runs through sluice-shim. When A's /readyz turns
 * 503 the front sends new connections to B, as a balancer would; at A's
 * GOAWAY the shim leaves A, reconnects through the front to B, its resume is
 * refused there (410: B does not hold the session) and the tunnel opens
 * fresh. The call goes on; the longest silence is measured and printed. */
#define B_D_MS 500
#define B_T_MS 10000
#define B_PKTS 1200

Test(drain, a_call_moves_to_another_gateway, .fini = teardown, .timeout = 90)
{
    start_gw(&gw, B_D_MS, B_T_MS, admin_addr, sizeof admin_addr);
    start_gw(&gw_b, B_D_MS, B_T_MS, NULL, 0);
    front = ts_cutter_start(&gw.listen[0]);
    cr_assert_not_null(front);
    char url[128];
    snprintf(url, sizeof url, "https://%s", ts_cutter_addr_str(front));
    ts_shim_opts_t o = {.gateway = url, .tenant = "acme", .kind = "sfu", .secret = "s1",
                        .extra = {"--reconnect-min-ms", "20", NULL}};
    cr_assert_eq(ts_shim_start(&shim, &o, ts_deadline(ts_ms(15000))), 0, "sluice-shim did not "
                                                                         "connect");
    app_fd = ts_udp_bind(AF_INET, NULL);
    cr_assert_geq(app_fd, 0);

    static int64_t sent_at[B_PKTS], back_at[B_PKTS];
    unsigned n = 0, nback = 0;
    int64_t t_term = -1, t_moved = -1, t_exit = -1;
    int a_code = -2;
    int64_t end = ts_deadline(ts_ms(20000));
    while (n < B_PKTS && ts_now_ms() < end) {
        uint8_t pkt[12] = {0x80, 0x60, (uint8_t)(n >> 8), (uint8_t)n, 0, 0, 0, 0,
                           0x0b, 0xad, 0xca, 0xfe};
        sent_at[n] = ts_now_ms();
        back_at[n] = -1;
        cr_assert_eq(ts_udp_send(app_fd, &shim.listen, pkt, sizeof pkt), 0);
        n++;
        int64_t next = sent_at[n - 1] + EVERY_MS;
        uint8_t in[64];
        ssize_t r;
        while ((r = ts_udp_recv(app_fd, in, sizeof in, next, NULL)) >= 0) {
            unsigned seq = r == 12 ? (unsigned)(in[2] << 8 | in[3]) : B_PKTS;
            if (seq < n && back_at[seq] < 0) {
                back_at[seq] = ts_now_ms();
                nback++;
            }
        }
        if (n == 100) { /* the call is established: stop A */
            t_term = ts_now_ms();
            cr_assert_eq(ts_proc_signal(&gw.proc, SIGTERM), 0);
        }
        if (t_term >= 0 && t_moved < 0 && readyz() == 503) {
            ts_cutter_retarget(front, &gw_b.listen[0]); /* the balancer notices */
            t_moved = ts_now_ms();
        }
        if (t_term >= 0 && t_exit < 0 && (a_code = ts_proc_wait_exit(&gw.proc, 0)) >= 0)
            t_exit = ts_now_ms();
        if (t_exit >= 0 && n > 100 && sent_at[n - 1] - t_exit > 1000)
            break; /* a second of the call on B is enough */
    }
    cr_assert_geq(t_moved, 0, "A's /readyz never turned 503");
    cr_assert_geq(t_exit, 0, "A did not exit within 20 s (drain time %d ms)", B_T_MS);
    cr_assert_eq(a_code, 0, "A exited with %d", a_code);

    /* The longest silence: from a packet that came back to the next one. */
    int64_t gap = 0, last = -1;
    unsigned lost = 0, after = 0;
    for (unsigned i = 0; i < n; i++) {
        if (back_at[i] < 0) {
            lost++;
            continue;
        }
        if (last >= 0 && back_at[i] - last > gap)
            gap = back_at[i] - last;
        last = back_at[i];
        if (sent_at[i] > t_exit)
            after++;
    }
    cr_log_info("drain to another gateway: readyz 503 after %lld ms, A exited after %lld ms "
                "(its drain time %d ms), longest silence %lld ms, %u of %u packets lost, %u "
                "came back through B after A exited",
                (long long)(t_moved - t_term), (long long)(t_exit - t_term), B_T_MS,
                (long long)gap, lost, n, after);
    cr_assert_lt(t_exit - t_term, B_T_MS, "A waited for its drain time: the shim did not leave");
    cr_assert_gt(after, 100u, "the call did not continue on B (%u packets came back)", after);
    cr_assert_lt(gap, 2000, "the call was silent for %lld ms", (long long)gap);
    cr_assert_eq(ts_log_count(gw_b.proc.err_path, " status=410 "), 1,
                 "B was not asked to resume the session A held");
    cr_assert_eq(ts_log_count(gw_b.proc.err_path, "event=tunnel.open "), 1,
                 "B did not open exactly one (fresh) tunnel for the call");
    cr_assert_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(10000))), 0);
    cr_assert_eq(ts_gateway_stop(&gw_b, ts_deadline(ts_ms(10000))), 0);
}
