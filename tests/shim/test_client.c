/*
 * test_client.c — the client library (client.c, tls.c, h2.c, tunnel.c) on a
 * real loop against a small scripted TLS + HTTP/2 server in the same process.
 *
 * The script reaches what a well-behaved gateway never does: refusals with a
 * body, PING, CLOSE from the server, an oversized capsule, a server that
 * never answers. Needs the development certificate: $SLUICE_BUILD/dev/
 * cert.pem and key.pem (tests/run.sh sets SLUICE_BUILD; make builds them).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ev.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../support/ts_util.h"
#include "sluice_shim.h"

/* ---------------------------------------------------------------- server */

enum mode {
    M_ECHO,      /* 200, echo DATAGRAM and SIGNAL payloads */
    M_REFUSE,    /* 403 "nope\n" */
    M_CLOSE,     /* 200, then CLOSE(shutting down, "bye") and END_STREAM */
    M_PING,      /* 200, then PING */
    M_OVERSIZE,  /* 200, then a capsule header declaring 70000 bytes */
    M_SILENT,    /* never answer */
    M_STREAM,    /* 200, then STREAM_CAPSULES DATAGRAMs in DATA frames of at most
                  * STREAM_FRAME bytes, so capsules straddle frames; the body
                  * ends once the client's has */
};

#define STREAM_CAPSULES 20
#define STREAM_PAYLOAD 300
#define STREAM_FRAME 700

typedef struct srv_stream {
    int32_t id;
    uint8_t out[8192];
    size_t out_len;
    int end_after; /* END_STREAM once out is sent */
    capsule_reader_t rd;
    uint8_t rbuf[CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER];
} srv_stream_t;

static struct {
    struct ev_loop *loop;
    enum mode mode;
    int lfd, fd;
    ev_io accept_w, io_w;
    SSL_CTX *ctx;
    SSL *ssl;
    int tls_up;
    nghttp2_session *h2;
    char cert[512], key[512];
    /* What the server saw. */
    char path[256], username[128], credential[128], content_type[64];
    char fallback[64], route[64]; /* tunnel-fallback, tunnel-route; "" when absent */
    char stamps[16];          /* tunnel-stamps; "" when absent */
    int accept_stamps;        /* the 200 carries tunnel-stamps: ?1 and tunnel-media-age: 50 */
    int zero_window;          /* streams start with a send window of 0 */
    int stamped;              /* stamped DATAGRAMs (context id 2) received */
    uint32_t last_stamp;
    int requests, datagrams, signals, pongs, closes, up_ended, rsts, pings;
    int stream_closes;        /* streams nghttp2 closed on the server */
    uint32_t stream_close_code; /* the last one's error code */
    uint64_t close_code;
    uint32_t rst_code;
    uint8_t pong[8];
    srv_stream_t *streams[32]; /* freed with the connection if still open */
} S;

static void srv_send(void)
{
    if (S.h2)
        nghttp2_session_send(S.h2);
}

static void srv_append(srv_stream_t *s, const uint8_t *p, size_t n)
{
    if (s->out_len + n <= sizeof(s->out)) {
        memcpy(s->out + s->out_len, p, n);
        s->out_len += n;
    }
    nghttp2_session_resume_data(S.h2, s->id);
}

static ssize_t srv_read(nghttp2_session *h, int32_t id, uint8_t *buf, size_t len, uint32_t *fl,
                        nghttp2_data_source *src, void *ud)
{
    srv_stream_t *s = src->ptr;
    size_t n = s->out_len < len ? s->out_len : len;

    if (S.mode == M_STREAM && n > STREAM_FRAME)
        n = STREAM_FRAME;
    memcpy(buf, s->out, n);
    memmove(s->out, s->out + n, s->out_len - n);
    s->out_len -= n;
    if (s->out_len == 0 && s->end_after) {
        *fl |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

static ssize_t srv_send_cb(nghttp2_session *h, const uint8_t *data, size_t len, int flags,
                           void *ud)
{
    int n = SSL_write(S.ssl, data, (int)len);
    return n > 0 ? n : NGHTTP2_ERR_WOULDBLOCK;
}

static int srv_begin_headers(nghttp2_session *h, const nghttp2_frame *f, void *ud)
{
    srv_stream_t *s = calloc(1, sizeof(*s));
    s->id = f->hd.stream_id;
    for (size_t i = 0; i < 32; i++)
        if (!S.streams[i]) {
            S.streams[i] = s;
            break;
        }
    capsule_reader_init(&s->rd, s->rbuf, sizeof(s->rbuf), CAPSULE_DEFAULT_MAX_VALUE);
    nghttp2_session_set_stream_user_data(h, f->hd.stream_id, s);
    return 0;
}

static int srv_header(nghttp2_session *h, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                      const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
#define KEEP(name, dst)                                                                   \
    if (nl == strlen(name) && memcmp(n, name, nl) == 0)                                   \
        snprintf(dst, sizeof(dst), "%.*s", (int)vl, (const char *)v);
    KEEP(":path", S.path)
    KEEP("tunnel-username", S.username)
    KEEP("tunnel-credential", S.credential)
    KEEP("content-type", S.content_type)
    KEEP("tunnel-fallback", S.fallback)
    KEEP("tunnel-route", S.route)
    KEEP("tunnel-stamps", S.stamps)
    return 0;
}

static void srv_respond(srv_stream_t *s)
{
    nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
                       {(uint8_t *)"tunnel-stamps", (uint8_t *)"?1", 13, 2, 0},
                       {(uint8_t *)"tunnel-media-age", (uint8_t *)"50", 16, 2, 0}};
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = srv_read};
    uint8_t cap[64];
    ssize_t n;

    S.requests++;
    switch (S.mode) {
    case M_SILENT:
        return;
    case M_REFUSE:
        nv[0].value = (uint8_t *)"403";
        srv_append(s, (const uint8_t *)"nope\n", 5);
        s->end_after = 1;
        break;
    case M_CLOSE:
        n = capsule_encode_close(cap, sizeof(cap), CLOSE_SHUTTING_DOWN, "bye", 3);
        srv_append(s, cap, (size_t)n);
        s->end_after = 1;
        break;
    case M_PING: {
        static const uint8_t v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        n = capsule_encode(cap, sizeof(cap), CAPSULE_PING, v, 8);
        srv_append(s, cap, (size_t)n);
        break;
    }
    case M_OVERSIZE:
        n = capsule_encode_header(cap, sizeof(cap), CAPSULE_DATAGRAM, 70000);
        srv_append(s, cap, (size_t)n);
        break;
    case M_STREAM: {
        uint8_t payload[STREAM_PAYLOAD], big[STREAM_PAYLOAD + 8];
        /* 0xff bytes read as a capsule header are an oversized capsule: a
         * reader that loses its place fails at once. */
        memset(payload, 0xff, sizeof(payload));
        payload[0] = 0x80;
        for (int i = 0; i < STREAM_CAPSULES; i++) {
            n = capsule_encode_datagram(big, sizeof(big), payload, sizeof(payload));
            srv_append(s, big, (size_t)n);
        }
        break;
    }
    case M_ECHO:
        break;
    }
    nghttp2_submit_response(S.h2, s->id, nv, S.accept_stamps && S.mode == M_ECHO ? 3 : 1, &dp);
}

static int srv_frame_recv(nghttp2_session *h, const nghttp2_frame *f, void *ud)
{
    srv_stream_t *s = nghttp2_session_get_stream_user_data(h, f->hd.stream_id);

    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && s)
        srv_respond(s);
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && s) {
        S.up_ended++;
        if (S.mode == M_ECHO || S.mode == M_STREAM) { /* the client is done: so are we */
            s->end_after = 1;
            nghttp2_session_resume_data(h, s->id);
        }
    }
    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        S.pings++;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        S.rsts++;
        S.rst_code = f->rst_stream.error_code;
    }
    return 0;
}

static int srv_data(nghttp2_session *h, uint8_t fl, int32_t id, const uint8_t *d, size_t len,
                    void *ud)
{
    srv_stream_t *s = nghttp2_session_get_stream_user_data(h, id);
    capsule_t c;
    uint8_t buf[2048];

    while (s && capsule_reader_next(&s->rd, &d, &len, &c, NULL) > 0) {
        if (c.type == CAPSULE_DATAGRAM && c.len > CAPSULE_STAMP_LEN &&
            c.value[0] == CAPSULE_CONTEXT_STAMPED) {
            /* Echoed unstamped: the shim takes no stamps on the downlink. */
            S.stamped++;
            S.last_stamp = capsule_get_stamp(c.value + 1);
            ssize_t n = capsule_encode_datagram(buf, sizeof(buf), c.value + 1 + CAPSULE_STAMP_LEN,
                                                c.len - 1 - CAPSULE_STAMP_LEN);
            if (S.mode == M_ECHO && n > 0)
                srv_append(s, buf, (size_t)n);
        } else if (c.type == CAPSULE_DATAGRAM) {
            S.datagrams++;
            ssize_t n = capsule_encode(buf, sizeof(buf), CAPSULE_DATAGRAM, c.value, c.len);
            if (S.mode == M_ECHO && n > 0)
                srv_append(s, buf, (size_t)n);
        } else if (c.type == CAPSULE_SIGNAL) {
            S.signals++;
            ssize_t n = capsule_encode(buf, sizeof(buf), CAPSULE_SIGNAL, c.value, c.len);
            if (S.mode == M_ECHO && n > 0)
                srv_append(s, buf, (size_t)n);
        } else if (c.type == CAPSULE_PONG && c.len == 8) {
            S.pongs++;
            memcpy(S.pong, c.value, 8);
        } else if (c.type == CAPSULE_CLOSE) {
            const char *r;
            size_t rl;
            S.closes++;
            capsule_parse_close(&c, &S.close_code, &r, &rl);
        }
    }
    return 0;
}

static void srv_stream_free(srv_stream_t *s)
{
    for (size_t i = 0; i < 32; i++)
        if (S.streams[i] == s)
            S.streams[i] = NULL;
    free(s);
}

static int srv_stream_close(nghttp2_session *h, int32_t id, uint32_t code, void *ud)
{
    srv_stream_t *s = nghttp2_session_get_stream_user_data(h, id);
    S.stream_closes++;
    S.stream_close_code = code;
    if (s)
        srv_stream_free(s);
    return 0;
}

static void srv_close_conn(void)
{
    ev_io_stop(S.loop, &S.io_w);
    if (S.h2) {
        nghttp2_session_del(S.h2);
        S.h2 = NULL;
    }
    for (size_t i = 0; i < 32; i++)
        if (S.streams[i])
            srv_stream_free(S.streams[i]);
    if (S.ssl) {
        SSL_free(S.ssl);
        S.ssl = NULL;
    }
    if (S.fd >= 0) {
        close(S.fd);
        S.fd = -1;
    }
}

static void srv_h2_start(void)
{
    nghttp2_session_callbacks *cb;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0}};

    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, srv_send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, srv_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, srv_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, srv_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, srv_stream_close);
    nghttp2_session_server_new(&S.h2, cb, NULL);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(S.h2, NGHTTP2_FLAG_NONE, iv, S.zero_window ? 2 : 1);
}

static void srv_io(struct ev_loop *loop, ev_io *w, int revents)
{
    uint8_t buf[16384];

    if (!S.tls_up) {
        int rc = SSL_accept(S.ssl);
        if (rc != 1) {
            int e = SSL_get_error(S.ssl, rc);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                srv_close_conn(); /* e.g. the client refused our certificate */
            }
            return;
        }
        S.tls_up = 1;
        srv_h2_start();
    }
    for (;;) {
        int n = SSL_read(S.ssl, buf, sizeof(buf));
        if (n <= 0) {
            int e = SSL_get_error(S.ssl, n);
            ERR_clear_error();
            if (e != SSL_ERROR_WANT_READ)
                srv_close_conn();
            break;
        }
        if (nghttp2_session_mem_recv(S.h2, buf, (size_t)n) < 0) {
            srv_close_conn();
            return;
        }
    }
    srv_send();
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    return nghttp2_select_next_protocol((unsigned char **)out, outlen, in, inlen) == 1
               ? SSL_TLSEXT_ERR_OK
               : SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void srv_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    int fd = accept4(S.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0)
        return;
    if (S.fd >= 0) { /* one connection at a time */
        close(fd);
        return;
    }
    S.fd = fd;
    S.tls_up = 0;
    S.ssl = SSL_new(S.ctx);
    SSL_set_fd(S.ssl, fd);
    ev_io_init(&S.io_w, srv_io, fd, EV_READ);
    ev_io_start(loop, &S.io_w);
}

static uint16_t srv_port(void)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    getsockname(S.lfd, (struct sockaddr *)&a, &l);
    return ntohs(a.sin_port);
}

static void setup(void)
{
    const char *b = getenv("SLUICE_BUILD");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    memset(&S, 0, sizeof(S));
    S.fd = -1;
    cr_assert_not_null(b, "SLUICE_BUILD is not set (tests/run.sh sets it)");
    snprintf(S.cert, sizeof(S.cert), "%s/dev/cert.pem", b);
    snprintf(S.key, sizeof(S.key), "%s/dev/key.pem", b);
    cr_assert_eq(access(S.cert, R_OK), 0, "no development certificate at %s (make devcert)",
                 S.cert);
    S.loop = ev_loop_new(EVFLAG_AUTO);
    S.ctx = SSL_CTX_new(TLS_server_method());
    cr_assert_eq(SSL_CTX_use_certificate_chain_file(S.ctx, S.cert), 1);
    cr_assert_eq(SSL_CTX_use_PrivateKey_file(S.ctx, S.key, SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_alpn_select_cb(S.ctx, alpn_select, NULL);
    S.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(S.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(S.lfd, 8), 0);
    ev_io_init(&S.accept_w, srv_accept, S.lfd, EV_READ);
    ev_io_start(S.loop, &S.accept_w);
}

static void teardown(void)
{
    if (!S.loop)
        return;
    srv_close_conn();
    ev_io_stop(S.loop, &S.accept_w);
    close(S.lfd);
    SSL_CTX_free(S.ctx);
    ev_loop_destroy(S.loop);
}

/* ---------------------------------------------------------------- client side */

typedef struct app {
    sluice_client_t *c;
    sluice_tunnel_t *t;
    int states[4];
    char detail[256];
    int opened, closed, packets, signals;
    int status;
    uint64_t code;
    char reason[600];
    sluice_tunnel_stats_t at_close; /* the tunnel's counters in on_close */
    int free_in_packet;  /* free the client inside on_packet */
    int close_in_packet; /* close the tunnel inside on_packet */
    int close_in_open;   /* close the tunnel inside on_open */
} app_t;

static void on_state(sluice_client_t *c, sluice_state_t st, const char *detail, void *ud)
{
    app_t *a = ud;
    a->states[st]++;
    snprintf(a->detail, sizeof(a->detail), "%s", detail);
}

static void on_open(sluice_tunnel_t *t, void *ud)
{
    app_t *a = ud;
    a->opened++;
    if (a->close_in_open)
        sluice_tunnel_close(t);
}

static void on_packet(sluice_tunnel_t *t, const uint8_t *p, size_t len, int sig, void *ud)
{
    app_t *a = ud;
    if (sig)
        a->signals++;
    else
        a->packets++;
    if (a->close_in_packet)
        sluice_tunnel_close(t);
    if (a->free_in_packet) {
        sluice_client_free(a->c);
        a->c = NULL;
    }
}

static void on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason,
                     void *ud)
{
    app_t *a = ud;
    a->closed++;
    sluice_tunnel_stats(t, &a->at_close);
    a->status = status;
    a->code = code;
    snprintf(a->reason, sizeof(a->reason), "%s", reason);
    a->t = NULL;
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Upper bound of every wait: a liveness bound, not a measurement (a wait ends
 * as soon as its condition holds), generous for a loaded machine and ASan. */
#define WAIT_MS 10000

/* One loop iteration, blocking at most until deadline. */
static void run_once(int64_t deadline)
{
    ev_timer t;
    ev_timer_init(&t, on_timeout, ts_remaining_ms(deadline) / 1000.0, 0.);
    ev_timer_start(S.loop, &t);
    ev_run(S.loop, EVRUN_ONCE);
    ev_timer_stop(S.loop, &t);
}

/* Runs what is ready now, deferred work included (libev runs prepare
 * watchers on every iteration), without blocking. */
static void run_ready(void)
{
    for (int i = 0; i < 4; i++)
        ev_run(S.loop, EVRUN_NOWAIT);
}

/* Runs the loop until cond holds or ms (scaled by TS_TIMEOUT_SCALE) pass;
 * the caller asserts cond afterwards. The shim delivers its callbacks from a
 * prepare watcher, which runs before the loop blocks: after each blocking
 * run, the work its events made is run at once, so that a condition it
 * satisfies is seen before the next run blocks until the deadline. */
#define RUN_UNTIL(cond, ms)                                                   \
    do {                                                                      \
        int64_t dl_ = ts_deadline(ts_ms(ms));                                 \
        while (!(cond) && ts_now_ms() < dl_) {                                \
            run_once(dl_);                                                    \
            run_ready();                                                      \
        }                                                                     \
    } while (0)

static uint32_t keepalive_ms; /* for the next client() */
static uint32_t response_timeout_ms; /* for the next tunnel(); 0: WAIT_MS */
static sluice_fallback_t fallback;    /* for the next tunnel() */
static sluice_tls_t *shared_tls; /* for the next client(): instead of the CA file */

static sluice_client_t *client(app_t *a, const char *server_name, uint16_t port)
{
    char err[256] = "";
    sluice_client_opts_t o = {
        .host = "127.0.0.1",
        .port = port ? port : srv_port(),
        .server_name = server_name,
        .tls = shared_tls,
        .ca_file = shared_tls ? NULL : S.cert,
        .keepalive_ms = keepalive_ms,
        .on_state = on_state,
        .ud = a,
    };
    a->c = sluice_client_new(S.loop, &o, err, sizeof(err));
    cr_assert_not_null(a->c, "%s", err);
    return a->c;
}

static sluice_tunnel_t *tunnel(app_t *a, const char *region)
{
    sluice_tunnel_opts_t o = {
        .tenant = "demo", .kind = "sfu", .region = region,
        .username = "1700000000:alice", .credential = "c3VwZXI=",
        /* Deadlines no slow run reaches unless the test wants it to, and
         * queued media that does not expire while TLS is set up. */
        .response_timeout_ms = response_timeout_ms ? response_timeout_ms : WAIT_MS,
        .close_timeout_ms = WAIT_MS, .media_max_age_ms = WAIT_MS, .fallback = fallback,
        .on_open = on_open, .on_packet = on_packet, .on_close = on_close, .ud = a,
    };
    a->t = sluice_tunnel_open(a->c, &o);
    return a->t;
}

/* The common start: the server in mode m, a client connecting, one tunnel. */
static void connect_and_open(app_t *a, enum mode m)
{
    S.mode = m;
    client(a, "localhost", 0);
    sluice_client_connect(a->c);
    tunnel(a, NULL);
}

/* ---------------------------------------------------------------- tests */

TestSuite(client, .init = setup, .fini = teardown, .timeout = 30);

Test(client, tunnel_opened_before_connect_echoes_and_closes_normally)
{
    app_t a = {0};
    static const uint8_t rtp[] = {0x80, 0x60, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const uint8_t stun[] = {0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42};
    sluice_tunnel_stats_t st;

    S.mode = M_ECHO;
    client(&a, "localhost", 0);
    cr_assert_not_null(tunnel(&a, "local"), "tunnels may be opened before connecting");
    cr_expect_eq(sluice_tunnel_send(a.t, rtp, sizeof(rtp)), SLUICE_OK, "queued before 200");
    cr_expect_eq(sluice_tunnel_send(a.t, stun, sizeof(stun)), SLUICE_OK);
    cr_assert_eq(sluice_client_connect(a.c), SLUICE_OK);
    cr_expect_eq(sluice_client_connect(a.c), SLUICE_ERR_STATE);
    RUN_UNTIL(a.packets + a.signals >= 2 || a.closed, WAIT_MS);
    cr_expect_eq(a.states[SLUICE_CONNECTING], 1);
    cr_expect_eq(a.states[SLUICE_CONNECTED], 1);
    cr_expect_eq(a.opened, 1);
    cr_expect_eq(a.packets, 1);
    cr_expect_eq(a.signals, 1);
    cr_expect_str_eq(S.path, "/v1/tunnel/demo/sfu?region=local");
    cr_expect_str_eq(S.username, "1700000000:alice");
    cr_expect_str_eq(S.credential, "c3VwZXI=");
    cr_expect_str_eq(S.content_type, "application/octet-stream");
    cr_expect_str_eq(S.fallback, "", "no fallback set: no tunnel-fallback");
    cr_expect_str_eq(S.route, "direct", "the route goes along by itself");
    sluice_tunnel_stats(a.t, &st);
    cr_expect_eq(st.tx_packets, 2);
    cr_expect_eq(st.rx_packets, 2);
    cr_expect_gt(sluice_tunnel_stream_id(a.t), 0);

    sluice_tunnel_close(a.t);
    cr_expect_eq(sluice_tunnel_send(a.t, rtp, sizeof(rtp)), SLUICE_ERR_STATE);
    RUN_UNTIL(a.closed, WAIT_MS);
    cr_expect_eq(a.closed, 1);
    cr_expect_eq(a.status, 200);
    cr_expect_eq(a.code, SLUICE_CLOSE_NORMAL, "reason: %s", a.reason);
    cr_expect_eq(S.closes, 1, "the server saw CLOSE");
    cr_expect_eq(S.close_code, CLOSE_NORMAL);
    cr_expect_eq(S.up_ended, 1, "and END_STREAM");
    sluice_client_free(a.c);
}

/* proto/README.md §2.1: the tunnel's fallback goes to the gateway as its
 * token, with the route. */
Test(client, fallback_reason_is_sent)
{
    static const struct {
        sluice_fallback_t f;
        const char *token;
    } cases[] = {
        {SLUICE_FALLBACK_FORCED, "forced"},
        {SLUICE_FALLBACK_UDP_BLOCKED, "udp_blocked"},
        {SLUICE_FALLBACK_UDP_REFUSED, "udp_refused"},
        {SLUICE_FALLBACK_NO_ANSWER, "no_answer"},
        {SLUICE_FALLBACK_DIRECT_SILENT, "direct_silent"},
        {SLUICE_FALLBACK_UDP_ERROR, "udp_error"},
    };
    app_t a = {0};

    S.mode = M_ECHO;
    client(&a, "localhost", 0);
    sluice_client_connect(a.c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int before = S.requests;
        fallback = cases[i].f;
        cr_assert_not_null(tunnel(&a, NULL));
        fallback = SLUICE_FALLBACK_UNSET;
        RUN_UNTIL(S.requests > before, WAIT_MS);
        cr_expect_str_eq(S.fallback, cases[i].token);
        cr_expect_str_eq(S.route, "direct");
    }
    sluice_client_free(a.c);
}

/* proto/README.md §5.1.1: every request offers stamps; once the 200 accepts
 * them, media goes as stamped DATAGRAMs carrying the time it was queued,
 * signaling never; a 200 without acceptance keeps media at context id 0. */
Test(client, media_is_stamped_once_the_gateway_accepts)
{
    static const uint8_t rtp[] = {0x80, 0x60, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const uint8_t stun[] = {0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42};

    S.mode = M_ECHO;
    for (int accept = 0; accept < 2; accept++) {
        app_t a = {0};
        S.accept_stamps = accept;
        S.stamped = S.datagrams = S.signals = 0;
        client(&a, "localhost", 0);
        sluice_client_connect(a.c);
        cr_assert_not_null(tunnel(&a, NULL));
        RUN_UNTIL(a.opened || a.closed, WAIT_MS);
        cr_assert_eq(a.opened, 1);
        cr_expect_str_eq(S.stamps, "?1", "the request offers stamps");
        uint32_t before = (uint32_t)(ts_now_ns() / 1000);
        cr_assert_eq(sluice_tunnel_send(a.t, rtp, sizeof(rtp)), SLUICE_OK);
        uint32_t after = (uint32_t)(ts_now_ns() / 1000);
        cr_assert_eq(sluice_tunnel_send(a.t, stun, sizeof(stun)), SLUICE_OK);
        RUN_UNTIL(a.packets + a.signals >= 2 || a.closed, WAIT_MS);
        cr_expect_eq(a.packets, 1, "the media came back (accept %d)", accept);
        cr_expect_eq(a.signals, 1);
        cr_expect_eq(S.signals, 1, "signaling is never stamped");
        cr_expect_eq(S.stamped, accept, "accept %d: %d stamped", accept, S.stamped);
        cr_expect_eq(S.datagrams, !accept, "accept %d: %d unstamped", accept, S.datagrams);
        if (accept)
            cr_expect_leq(S.last_stamp - before, after - before,
                          "stamp %u is not the time of the send (%u..%u)", S.last_stamp, before,
                          after);
        sluice_client_free(a.c);
    }
}

/* proto/README.md §5.1.1: the gateway's tunnel-media-age caps the tunnel's
 * own media age limit (here 50 ms against the tunnel's WAIT_MS), so media
 * the gateway would drop for its age is dropped in the client, before it is
 * encrypted and sent. The server's window is shut while media waits. */
Test(client, the_gateways_media_age_caps_the_tunnels_own)
{
    static const uint8_t rtp[] = {0x80, 0x60, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    app_t a = {0};
    sluice_tunnel_stats_t st;

    S.mode = M_ECHO;
    S.accept_stamps = 1;
    S.zero_window = 1;
    client(&a, "localhost", 0);
    sluice_client_connect(a.c);
    cr_assert_not_null(tunnel(&a, NULL));
    RUN_UNTIL(a.opened || a.closed, WAIT_MS);
    cr_assert_eq(a.opened, 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(sluice_tunnel_send(a.t, rtp, sizeof(rtp)), SLUICE_OK);
    /* The wait is the experiment: three times the gateway's limit. */
    int64_t until = ts_now_ms() + 150;
    RUN_UNTIL(0, until - ts_now_ms());
    cr_assert_eq(S.stamped + S.datagrams, 0, "media went through a shut window");
    nghttp2_submit_window_update(S.h2, NGHTTP2_FLAG_NONE, S.streams[0]->id, 1 << 20);
    srv_send();
    cr_assert_eq(sluice_tunnel_send(a.t, rtp, sizeof(rtp)), SLUICE_OK);
    RUN_UNTIL(S.stamped >= 1 || a.closed, WAIT_MS);
    sluice_tunnel_stats(a.t, &st);
    cr_expect_eq(S.stamped, 1, "only the fresh packet went");
    cr_expect_eq(st.dropped_media, 3, "the three that waited 150 ms were not dropped");
    sluice_client_free(a.c);
}

Test(client, refusal_reports_status_and_body)
{
    app_t a = {0};

    connect_and_open(&a, M_REFUSE);
    RUN_UNTIL(a.closed, WAIT_MS);
    cr_expect_eq(a.closed, 1);
    cr_expect_eq(a.opened, 0);
    cr_expect_eq(a.status, 403);
    cr_expect_eq(a.code, SLUICE_CLOSE_NO_CODE);
    cr_expect_str_eq(a.reason, "nope", "the trailing newline is trimmed");
    cr_expect_str_eq(S.path, "/v1/tunnel/demo/sfu");
    sluice_client_free(a.c);
}

Test(client, close_from_the_gateway_reaches_on_close)
{
    app_t a = {0};

    connect_and_open(&a, M_CLOSE);
    RUN_UNTIL(a.closed, WAIT_MS);
    cr_expect_eq(a.closed, 1);
    cr_expect_eq(a.status, 200);
    cr_expect_eq(a.code, SLUICE_CLOSE_SHUTTING_DOWN);
    cr_expect_str_eq(a.reason, "bye");
    RUN_UNTIL(S.up_ended, WAIT_MS);
    cr_expect_eq(S.up_ended, 1, "the request body ends");
    cr_expect_eq(S.closes, 0, "without a CLOSE (it would have come before the end)");
    sluice_client_free(a.c);
}

Test(client, ping_is_answered_with_the_same_bytes)
{
    app_t a = {0};
    static const uint8_t v[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    connect_and_open(&a, M_PING);
    RUN_UNTIL(S.pongs, WAIT_MS);
    cr_expect_eq(S.pongs, 1);
    cr_expect_eq(memcmp(S.pong, v, 8), 0);
    sluice_client_free(a.c);
}

Test(client, oversized_capsule_gets_close_protocol_error_and_reset)
{
    app_t a = {0};

    connect_and_open(&a, M_OVERSIZE);
    RUN_UNTIL(a.closed, WAIT_MS);
    cr_expect_eq(a.closed, 1);
    cr_expect_eq(a.code, SLUICE_CLOSE_PROTOCOL_ERROR, "reason: %s", a.reason);
    RUN_UNTIL(S.rsts, WAIT_MS);
    cr_expect_eq(S.closes, 1, "CLOSE(protocol error) was sent");
    cr_expect_eq(S.close_code, CLOSE_PROTOCOL_ERROR);
    cr_expect_eq(S.rsts, 1, "then the stream was reset");
    cr_expect_eq(a.states[SLUICE_FAILED], 0, "the connection survives");
    sluice_client_free(a.c);
}

Test(client, silent_gateway_hits_the_response_deadline)
{
    app_t a = {0};

    S.mode = M_SILENT;
    client(&a, "localhost", 0);
    sluice_client_connect(a.c);
    response_timeout_ms = 300;
    tunnel(&a, NULL);
    response_timeout_ms = 0;
    RUN_UNTIL(a.closed, WAIT_MS);
    cr_expect_eq(a.closed, 1);
    cr_expect_eq(a.status, 0);
    cr_expect_not_null(strstr(a.reason, "no response"), "%s", a.reason);
    sluice_client_free(a.c);
}

Test(client, free_inside_on_packet_is_safe)
{
    app_t a = {0};
    static const uint8_t rtp[] = {0x80, 1, 2, 3};

    a.free_in_packet = 1;
    connect_and_open(&a, M_ECHO);
    for (int i = 0; i < 5; i++)
        sluice_tunnel_send(a.t, rtp, sizeof(rtp));
    RUN_UNTIL(!a.c, WAIT_MS);
    cr_assert_null(a.c, "no packet came back");
    run_ready(); /* the deferred free runs; ASan checks the rest */
    cr_expect_eq(a.packets, 1, "no callback after sluice_client_free");
    cr_expect_eq(a.closed, 0);
}

Test(client, close_inside_on_open_and_orderly_client_close)
{
    app_t a = {0};

    a.close_in_open = 1;
    connect_and_open(&a, M_ECHO);
    RUN_UNTIL(a.closed, WAIT_MS);
    cr_expect_eq(a.closed, 1);
    cr_expect_eq(a.code, SLUICE_CLOSE_NORMAL);
    sluice_client_close(a.c);
    RUN_UNTIL(a.states[SLUICE_CLOSED] || a.states[SLUICE_FAILED], WAIT_MS);
    cr_expect_eq(a.states[SLUICE_CLOSED], 1, "detail: %s", a.detail);
    cr_expect_eq(sluice_client_state(a.c), SLUICE_CLOSED);
    cr_expect_null(tunnel(&a, NULL), "no tunnels on a closed client");
    sluice_client_free(a.c);
}

Test(client, wrong_name_fails_verification)
{
    app_t a = {0};

    client(&a, "not-the-gateway.example", 0);
    sluice_client_connect(a.c);
    tunnel(&a, NULL);
    RUN_UNTIL(a.states[SLUICE_FAILED], WAIT_MS);
    cr_expect_eq(a.states[SLUICE_FAILED], 1);
    cr_expect_not_null(strstr(a.detail, "certificate verification failed"), "%s", a.detail);
    cr_expect_eq(a.closed, 1, "the waiting tunnel is closed too");
    cr_expect_eq(a.status, 0);
    sluice_client_free(a.c);
}

Test(client, refused_connection_fails_with_the_reason)
{
    app_t a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(sa);

    bind(fd, (struct sockaddr *)&sa, sizeof(sa)); /* a port nobody listens on */
    getsockname(fd, (struct sockaddr *)&sa, &l);
    client(&a, NULL, ntohs(sa.sin_port));
    sluice_client_connect(a.c);
    RUN_UNTIL(a.states[SLUICE_FAILED], WAIT_MS);
    close(fd);
    cr_expect_eq(a.states[SLUICE_FAILED], 1);
    cr_expect_not_null(strstr(a.detail, "refused"), "%s", a.detail);
    sluice_client_free(a.c);
}

Test(client, bad_arguments)
{
    app_t a = {0};
    char err[128] = "";
    sluice_client_opts_t o = {.host = "127.0.0.1", .ca_file = "/nonexistent/ca.pem"};

    cr_expect_null(sluice_client_new(S.loop, &o, err, sizeof(err)));
    cr_expect_not_null(strstr(err, "CA file '/nonexistent/ca.pem'"), "%s", err);
    cr_expect_not_null(strstr(err, "No such file"), "%s", err);
    cr_expect_null(sluice_tls_new("/nonexistent/ca.pem", err, sizeof(err)));
    cr_expect_not_null(strstr(err, "/nonexistent/ca.pem"), "%s", err);
    cr_expect_null(sluice_tls_new(S.key, err, sizeof(err)), "a key is not a certificate");
    cr_expect_not_null(strstr(err, "no PEM certificate"), "%s", err);
    o.tls = sluice_tls_new(S.cert, err, sizeof(err));
    cr_assert_not_null(o.tls, "%s", err);
    cr_expect_null(sluice_client_new(S.loop, &o, err, sizeof(err)), "tls and ca_file together");
    cr_expect_not_null(strstr(err, "sluice_tls_new"), "%s", err);
    sluice_tls_free(o.tls);
    o.tls = NULL;
    o.host = NULL;
    cr_expect_null(sluice_client_new(S.loop, &o, NULL, 0));
    client(&a, "localhost", 0);
    sluice_tunnel_opts_t t = {.tenant = "a/b", .kind = "sfu", .username = "u", .credential = "c"};
    cr_expect_null(sluice_tunnel_open(a.c, &t), "tenant with a slash");
    t.tenant = "a~b"; /* the gateway's name rule (proto/name.h) has no '~' */
    cr_expect_null(sluice_tunnel_open(a.c, &t), "tenant with a tilde");
    t.tenant = "demo";
    t.region = "eu~west";
    cr_expect_null(sluice_tunnel_open(a.c, &t), "region with a tilde");
    t.region = NULL;
    t.username = "bad\r\nvalue";
    cr_expect_null(sluice_tunnel_open(a.c, &t), "CR LF in a header");
    t.username = "u";
    t.credential = "";
    cr_expect_null(sluice_tunnel_open(a.c, &t), "empty credential");
    cr_expect_eq(sluice_tunnel_send(NULL, NULL, 0), SLUICE_ERR_INVALID);
    cr_expect_str_eq(sluice_strerror(SLUICE_ERR_FULL), "signaling queue full");
    cr_expect_str_eq(sluice_state_name(SLUICE_CONNECTED), "connected");
    sluice_client_free(a.c);
    sluice_client_free(NULL);
}

Test(client, keepalive_pings_a_quiet_gateway_and_gives_up_on_a_dead_one)
{
    app_t a = {0};

    S.mode = M_SILENT;
    keepalive_ms = 250;
    client(&a, "localhost", 0);
    keepalive_ms = 0;
    sluice_client_connect(a.c);
    /* nghttp2 on the server side answers our PINGs. Were the answers not
     * taken as life, the client would give up after two intervals, that is
     * after two PINGs at the most: four show that they are. */
    RUN_UNTIL(S.pings >= 4 || a.states[SLUICE_FAILED], WAIT_MS);
    cr_expect_eq(a.states[SLUICE_CONNECTED], 1);
    cr_expect_eq(a.states[SLUICE_FAILED], 0, "a quiet but live gateway is fine: %s", a.detail);
    cr_expect_geq(S.pings, 4);
    ev_io_stop(S.loop, &S.io_w); /* the gateway stops reading and answering */
    RUN_UNTIL(a.states[SLUICE_FAILED], WAIT_MS);
    cr_expect_eq(a.states[SLUICE_FAILED], 1);
    cr_expect_not_null(strstr(a.detail, "keepalive"), "%s", a.detail);
    sluice_client_free(a.c);
}

/* The application closes its tunnel while the gateway's capsules are still
 * streaming in, cut across DATA frames: the shim delivers nothing more but
 * keeps reading the body in step, so the close ends normally, without a
 * protocol error on either side. */
Test(client, close_while_split_capsules_stream_in_ends_normally)
{
    app_t a = {0};

    a.close_in_packet = 1;
    connect_and_open(&a, M_STREAM);
    RUN_UNTIL(a.closed, WAIT_MS);
    cr_assert_eq(a.closed, 1);
    cr_expect_eq(a.packets, 1, "nothing is delivered after sluice_tunnel_close");
    cr_expect_eq(a.at_close.rx_packets, 1);
    cr_expect_eq(a.at_close.rx_discarded, STREAM_CAPSULES - 1,
                 "%llu of the %d packets after the close were counted",
                 (unsigned long long)a.at_close.rx_discarded, STREAM_CAPSULES - 1);
    cr_expect_eq(a.status, 200);
    cr_expect_eq(a.code, SLUICE_CLOSE_NORMAL, "close code %llu: %s", (unsigned long long)a.code,
                 a.reason);
    RUN_UNTIL(S.stream_closes, WAIT_MS);
    cr_expect_eq(S.closes, 1);
    cr_expect_eq(S.close_code, CLOSE_NORMAL, "the gateway got CLOSE(%llu)",
                 (unsigned long long)S.close_code);
    cr_expect_eq(S.rsts, 0, "the stream was reset (code %u)", S.rst_code);
    cr_expect_eq(S.stream_close_code, NGHTTP2_NO_ERROR);
    cr_expect_eq(a.states[SLUICE_FAILED], 0);
    sluice_client_free(a.c);
}

/* Clients made with one sluice_tls_t, one after the other, as a reconnect
 * does: the first makes a full handshake, each later one resumes the session
 * from the ticket the previous connection received (one use per ticket, so
 * the third resumes with the second's). */
Test(client, a_shared_tls_context_resumes_the_session_on_reconnect)
{
    static const uint8_t rtp[] = {0x80, 0x60, 0, 1};
    char err[256] = "";

    shared_tls = sluice_tls_new(S.cert, err, sizeof(err));
    cr_assert_not_null(shared_tls, "%s", err);
    S.mode = M_ECHO;
    for (int round = 0; round < 3; round++) {
        app_t a = {0};
        client(&a, "localhost", 0);
        if (round == 2) {
            sluice_tls_free(shared_tls); /* the client keeps its own reference */
            shared_tls = NULL;
        }
        sluice_client_connect(a.c);
        tunnel(&a, NULL);
        sluice_tunnel_send(a.t, rtp, sizeof(rtp));
        /* The echo proves the connection up and the gateway's tickets read. */
        RUN_UNTIL(a.packets || a.closed, WAIT_MS);
        cr_assert_eq(a.packets, 1, "round %d: %s", round, a.reason);
        cr_expect_eq(sluice_client_tls_resumed(a.c), round > 0, "round %d", round);
        cr_expect_eq(strstr(a.detail, " resumed") != NULL, round > 0, "round %d: %s", round,
                     a.detail);
        sluice_client_free(a.c);
        RUN_UNTIL(S.fd < 0, WAIT_MS); /* the server takes one connection at a time */
        cr_assert_lt(S.fd, 0, "round %d: the server still holds the connection", round);
    }
}
