/* conn.c — see conn.h. */
#include "conn.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/tlserr.h"
#include "../proto/proto.h"
#include "../proto/proxyproto.h"
#include "log.h"
#include "server.h"
#include "rxtime.h"
#include "tls.h"
#include "tunnel.h"
#include "util.h"

/* Fairness caps: one busy connection cannot hold the loop for long. */
#define READS_PER_EVENT 8    /* TLS records read per readiness event */
#define WRITES_PER_EVENT 8   /* CONN_OUT_CAP-sized writes per readiness event */
#define READ_CHUNK 16384     /* a whole TLS record's plaintext */

/* HTTP/2 settings and flood limits (RFC 9113 §6.5.2; nghttp2 options). */
#define H2_STREAM_WINDOW (256 * 1024)
#define H2_CONN_WINDOW (4 * 1024 * 1024)
#define H2_MAX_HEADER_LIST 16384  /* advertised, and enforced by on_header */
#define H2_MAX_HEADERS 64         /* header fields per block */
#define H2_MAX_HEADER_OFFENCES 3  /* header blocks over the limits before GOAWAY */
#define HANDSHAKE_NS_PER_ITERATION 500000 /* time in TLS handshakes per loop iteration */
/* A connection that has neither read nor written for this long gives its
 * buffers back at its next health tick (conn_release_idle). */
#define CONN_QUIET_NS (1000ull * UTIL_MS_NS)
/* Opaque data of the PING that follows a shutdown notice (RFC 9113 §6.8). */
static const uint8_t drain_ping[8] = {'s', 'l', 'u', 'i', 'c', 'e', 'd', 'r'};

static void conn_calm(conn_t *c, const char *why);
static void conn_log(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_final_goaway(conn_t *c);
static void conn_goaway(conn_t *c, uint32_t code, const char *why);

/* Records why the connection ends; the first cause wins, so a GOAWAY's
 * reason survives the close that follows it. */
static void conn_end_as(conn_t *c, enum conn_end why)
{
    if (!c->end_set) {
        c->end = why;
        c->end_set = 1;
    }
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_more_cb(struct ev_loop *loop, ev_idle *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_health_cb(struct ev_loop *loop, ev_timer *w, int revents);
static int conn_write(conn_t *c);
static int conn_start_h2(conn_t *c);

static tunnel_t *stream_tunnel(conn_t *c, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(c->h2, stream_id);
}

static conn_t *conn_of(const tunnel_t *t)
{
    return container_of(t->host, conn_t, host);
}

/* ---- host operations for tunnels (tunnel.h) -------------------------------- */

/* Per-stream transport flags kept in tunnel_t._xport. */
#define XPORT_DEFERRED 1u  /* the data provider returned NGHTTP2_ERR_DEFERRED */
#define XPORT_RST_NEXT 2u  /* the last DATA went out without END_STREAM: reset next */

/* nghttp2 data provider of a tunnel's response body. */
static ssize_t body_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *flags, nghttp2_data_source *source,
                         void *user_data)
{
    tunnel_t *t = source->ptr;
    enum tunnel_body_end end;
    size_t n = tunnel_body_read(t, buf, length, &end);
    if (end != TUNNEL_BODY_MORE) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (end == TUNNEL_BODY_END_RESET) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            t->_xport |= XPORT_RST_NEXT;
        }
        return (ssize_t)n;
    }
    if (n == 0) {
        t->_xport |= XPORT_DEFERRED;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static int host_respond(tunnel_t *t, int status)
{
    char code[4];
    snprintf(code, sizeof code, "%03d", status);
    const char *ctype = status == 200 ? "application/octet-stream" : "text/plain; charset=utf-8";
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME}
    nghttp2_nv nva[7] = { /* room for the most any status adds */
        NV(":status", code),
        NV("content-type", ctype),
        NV("cache-control", "no-store"),
        NV("allow", "POST"),
    };
    /* RFC 9110 §15.5.2: a 401 names the scheme the client should use. */
    nghttp2_nv challenge = NV("www-authenticate", "Sluice-HMAC realm=\"sluice\"");
    size_t nnv = 3;
    if (status == 405)
        nnv = 4;
    else if (status == 401)
        nva[nnv++] = challenge;
    else if (status == 429 && t->retry_after[0]) /* RFC 6585 §4, RFC 9110 §10.2.3 */
        nva[nnv++] = (nghttp2_nv)NV("retry-after", t->retry_after);
    else if (status == 421 && t->redirect) /* proto/README.md §8.1: the owning node */
        nva[nnv++] = (nghttp2_nv)NV("tunnel-node", t->redirect);
    /* proto/README.md §8.1: the token a resume names. */
    const char *token = status == 200 ? tunnel_session_token(t) : NULL;
    if (token)
        nva[nnv++] = (nghttp2_nv)NV("tunnel-session", token);
    /* proto/README.md §5.1.1: the client's offer of stamps, accepted, with
     * the age past which its media is dropped here: the uplink leg's share. */
    char age[12];
    if (status == 200 && t->stamps) {
        snprintf(age, sizeof age, "%u", (unsigned)cfg_media_leg_ms(&t->host->cfg->limits));
        nva[nnv++] = (nghttp2_nv)NV("tunnel-stamps", "?1");
        nva[nnv++] = (nghttp2_nv)NV("tunnel-media-age", age);
    }
#undef NV
    nghttp2_data_provider body = {.source.ptr = t, .read_callback = body_read};
    return nghttp2_submit_response(conn_of(t)->h2, t->stream_id, nva, nnv, &body);
}

static void host_wake(tunnel_t *t)
{
    conn_t *c = conn_of(t);
    if (t->_xport & XPORT_DEFERRED) {
        t->_xport &= ~XPORT_DEFERRED;
        nghttp2_session_resume_data(c->h2, t->stream_id);
    }
    conn_want_write(c);
}

static void host_reset(tunnel_t *t, int clean)
{
    conn_t *c = conn_of(t);
    nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, t->stream_id,
                              clean ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    conn_want_write(c);
}

static void host_opened(tunnel_t *t)
{
    conn_t *c = conn_of(t);
    c->nopen++;
    c->opened_total++;
    c->ever_opened = 1;
    srclimit_release(&c->srv->sources, &c->source); /* no longer pending */
}

static void host_gone(tunnel_t *t, int was_open)
{
    conn_t *c = conn_of(t);
    if (was_open && --c->nopen == 0 && !c->closing) {
        c->since = compat_mono_ns(); /* the idle clock starts now, not at the timer's next turn */
        c->timer.repeat = c->cfg->limits.conn_idle_ms / 1000.0;
        ev_timer_again(c->srv->loop, &c->timer);
    }
}

/* After max_auth_failures 401s a connection gets GOAWAY: guessing costs a
 * TLS handshake per few guesses. */
static void host_refused(tunnel_t *t, int status)
{
    conn_t *c = conn_of(t);
    if (status != 401 || ++c->auth_failures != c->cfg->limits.max_auth_failures)
        return;
    c->srv->counters.auth_goaways++;
    conn_end_as(c, CONN_END_AUTH);
    conn_log(c, "%u failed authentications; GOAWAY", c->auth_failures);
    conn_goaway(c, NGHTTP2_NO_ERROR, "too many failed authentications");
}

static const tunnel_host_ops_t h2_host_ops = {
    .respond = host_respond,
    .wake = host_wake,
    .reset = host_reset,
    .opened = host_opened,
    .gone = host_gone,
    .refused = host_refused,
};

/* ---- nghttp2 callbacks ----------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                            void *user_data)
{
    conn_t *c = user_data;
    c->hdr_count = 0; /* header blocks are never interleaved (RFC 9113 §4.3) */
    c->hdr_bytes = 0;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    tunnel_t *t = tunnel_new(&c->host, frame->hd.stream_id);
    if (!t)
        return nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                         NGHTTP2_REFUSED_STREAM);
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, t);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    conn_t *c = user_data;
    /* We advertise SETTINGS_MAX_HEADER_LIST_SIZE; nghttp2 does not enforce it
     * on receive. Count every block (trailers too) and reset the stream as
     * soon as it is passed, before nghttp2 validates (and we look at) more
     * fields of an HPACK-amplified block. */
    c->hdr_bytes += namelen + valuelen + 32;
    if (++c->hdr_count > H2_MAX_HEADERS || c->hdr_bytes > H2_MAX_HEADER_LIST) {
        c->srv->counters.header_overflows++;
        conn_log(c, "stream %d: header list over %u bytes or %u fields; reset", frame->hd.stream_id,
                 H2_MAX_HEADER_LIST, H2_MAX_HEADERS);
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_ENHANCE_YOUR_CALM);
        if (++c->header_offences >= H2_MAX_HEADER_OFFENCES)
            conn_calm(c, "repeated oversized header lists");
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    tunnel_t *t = stream_tunnel(c, frame->hd.stream_id);
    if (t)
        tunnel_add_header(t, name, namelen, value, valuelen);
    return 0;
}

/* Frames that carry no tunnel data (everything but non-empty DATA) spend a
 * per-connection budget of max_control_frames_s a second: WINDOW_UPDATE,
 * PING, SETTINGS, PRIORITY, RST_STREAM and empty-DATA floods, none of which
 * nghttp2 cuts, end in GOAWAY(ENHANCE_YOUR_CALM). */
static int frame_budget_take(conn_t *c)
{
    uint32_t rate = c->cfg->limits.max_control_frames_s;
    uint64_t now = compat_mono_ns(), elapsed = now - c->frame_refill;
    /* A second refills the budget whole (and keeps the product below from
     * overflowing after a long quiet spell). */
    uint64_t earned = elapsed >= 1000000000u ? rate : elapsed * rate / 1000000000u;
    if (earned) {
        c->frame_tokens =
            earned >= rate - c->frame_tokens ? rate : c->frame_tokens + (uint32_t)earned;
        c->frame_refill = now;
    }
    if (c->frame_tokens == 0)
        return -1;
    c->frame_tokens--;
    return 0;
}

static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data)
{
    conn_t *c = user_data;
    if (hd->type == NGHTTP2_DATA && hd->length > 0)
        return 0;
    if (frame_budget_take(c) < 0) {
        conn_calm(c, "too many control frames");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    conn_t *c = user_data;
    if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->ping_sent = 0;
        if (c->notice_sent && !memcmp(frame->ping.opaque_data, drain_ping, 8))
            conn_final_goaway(c);
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    tunnel_t *t = stream_tunnel(c, frame->hd.stream_id);
    if (!t)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        int rv = tunnel_start(t);
        if (rv < 0)
            return rv;
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        tunnel_remote_end(t);
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    tunnel_t *t = stream_tunnel(user_data, stream_id);
    if (t)
        tunnel_recv_data(t, data, len);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    conn_t *c = user_data;
    /* A stream nghttp2 resets for the client's fault bypasses its rapid-reset
     * limiter: our resets spend the client's frame budget too. */
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame_budget_take(c) < 0 && !c->draining)
        conn_calm(c, "too many reset streams");
    if (frame->hd.type != NGHTTP2_DATA)
        return 0;
    tunnel_t *t = stream_tunnel(c, frame->hd.stream_id);
    /* The body's last DATA went out without END_STREAM: a protocol error
     * ends in RST_STREAM, after the CLOSE capsule that says why. */
    if (t && (t->_xport & XPORT_RST_NEXT) && t->body_ended) {
        t->_xport &= ~XPORT_RST_NEXT;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, t->stream_id,
                                  NGHTTP2_PROTOCOL_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    tunnel_t *t = stream_tunnel(user_data, stream_id);
    if (t) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        tunnel_free(t); /* never inside tunnel code: streams close in mem_recv/mem_send */
    }
    return 0;
}

int conn_h2_setup(nghttp2_session_callbacks **cbs, nghttp2_option **opt)
{
    if (nghttp2_session_callbacks_new(cbs) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_frame_callback(*cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(*cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(*cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(*cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(*cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(*cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(*cbs, on_stream_close);
    if (nghttp2_option_new(opt) != 0) {
        nghttp2_session_callbacks_del(*cbs);
        *cbs = NULL;
        return -1;
    }
    /* Flood limits: queued SETTINGS/PING acks, SETTINGS entries, CONTINUATION
     * frames per header block, and the rapid-reset rate (CVE-2023-44487). */
    nghttp2_option_set_max_outbound_ack(*opt, 1000);
    nghttp2_option_set_max_settings(*opt, 32);
    nghttp2_option_set_max_continuations(*opt, 8);
    nghttp2_option_set_stream_reset_rate_limit(*opt, 1000, 33);
    nghttp2_option_set_max_send_header_block_length(*opt, 16384);
    /* nghttp2 1.52 (Debian 12's) keeps up to max_streams closed streams per
     * session for the RFC 7540 §5.3 priority tree, which we never use: a
     * connection whose tunnels come and go held them until it ended, about
     * 0.2 KiB each (bench_soak under churn, docs/soak.md). */
    nghttp2_option_set_no_closed_streams(*opt, 1);
    return 0;
}

/* ---- connection life ----------------------------------------------------- */

static void conn_set_events(conn_t *c, int want)
{
    if (c->fd < 0 || c->closing || want == (c->io.events & (EV_READ | EV_WRITE)))
        return;
    struct ev_loop *loop = c->srv->loop;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, want);
    ev_io_start(loop, &c->io);
}

void conn_want_write(conn_t *c)
{
    if (c->fd < 0 || c->closing || c->in_flush || c->state != CONN_H2)
        return;
    c->in_flush = 1;
    c->_flush_next = c->srv->flush;
    c->srv->flush = c;
}

void conn_close(conn_t *c, enum conn_end why)
{
    if (c->closing)
        return;
    conn_end_as(c, why);
    c->closing = 1;
    struct ev_loop *loop = c->srv->loop;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    ev_timer_stop(loop, &c->health);
    ev_idle_stop(loop, &c->more);
    c->_dead_next = c->srv->dead;
    c->srv->dead = c;
}

static conn_t *conn_alloc(struct server *srv, int fd)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = srv;
    c->cfg = config_ref(srv->cfg);
    c->host = (tunnel_host_t)TUNNEL_HOST_INIT(&h2_host_ops, &srv->env, c->cfg, c->peer);
    c->id = srv->next_conn_id++;
    c->fd = fd;
    c->state = CONN_HANDSHAKE;
    list_init(&c->host.tunnels);
    list_push(&srv->conns, &c->_link);
    srv->counters.conns_accepted++;
    srv->counters.conns_active++;
    c->since = c->accepted = compat_mono_ns();
    ev_init(&c->timer, conn_timer_cb);
    ev_init(&c->health, conn_health_cb);
    ev_idle_init(&c->more, conn_more_cb);
    return c;
}

/* ---- where the backlog waits (docs/architecture.md, "Overload") ----------- */

/* Not in the kernel, where nobody drops the oldest media. When the gateway
 * cannot keep up, a client's uplink waits in its receive queue for as long
 * as the queue holds at the rate the gateway gets round to it: bytes, not
 * time, are what a buffer bounds. So the receive buffer follows the delay
 * the connection's reads see (rxtime.h): halved while bytes read are older
 * than half the uplink leg's age limit (a quarter of media_queue_age_ms),
 * doubled back up to tcp_rcvbuf_bytes after a second without. TCP's
 * back-pressure then moves the excess into the client's own queue, which
 * drops the oldest media and keeps signaling (docs/shim.md). A connection
 * the gateway keeps up with never sees its buffer shrink. TCP_NOTSENT_LOWAT
 * does the same for the downlink: the socket stays unwritable while this
 * much is unsent, so what waits, waits in the tunnels' age-bounded queues. */
#define RCVBUF_MIN 4096u
#define RCVBUF_GROW_NS (1000ull * UTIL_MS_NS)

static void conn_tune_socket(conn_t *c)
{
    const cfg_limits_t *lim = &c->cfg->limits;
    if (lim->tcp_rcvbuf_bytes) {
        int v = (int)lim->tcp_rcvbuf_bytes;
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) == 0)
            c->rcvbuf = (uint32_t)v;
    }
    if (lim->tcp_notsent_lowat_bytes) {
        int v = (int)lim->tcp_notsent_lowat_bytes;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof v);
    }
}

/* After a read event: shrink the receive buffer when the reads were late,
 * grow it back when they have not been for a while. At most one change per
 * RX_LATE period, so each sees the effect of the last. */
static void conn_rcvbuf_adapt(conn_t *c, uint64_t now)
{
    uint64_t late_ns = (uint64_t)cfg_media_leg_ms(&c->cfg->limits) * UTIL_MS_NS / 2;
    uint32_t max = (uint32_t)c->cfg->limits.tcp_rcvbuf_bytes, v = c->rcvbuf;
    if (!v || now - c->rcvbuf_at < late_ns)
        return;
    if (c->rx_late_at && now - c->rx_late_at < late_ns)
        v = v / 2 > RCVBUF_MIN ? v / 2 : RCVBUF_MIN;
    else if (now - c->rcvbuf_at >= RCVBUF_GROW_NS && (!c->rx_late_at ||
                                                      now - c->rx_late_at >= RCVBUF_GROW_NS))
        v = v < max / 2 ? v * 2 : max;
    if (v == c->rcvbuf)
        return;
    int iv = (int)v;
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &iv, sizeof iv) == 0) {
        c->rcvbuf = v;
        c->rcvbuf_at = now;
    }
}

conn_t *conn_new(struct server *srv, int fd, const struct sockaddr *peer, socklen_t peerlen,
                 srclimit_key_t source)
{
    SSL *ssl = SSL_new(srv->ssl_ctx);
    conn_t *c = ssl ? conn_alloc(srv, fd) : NULL;
    if (c)
        c->source = source;
    /* Reads through rxtime (when the bytes arrived), writes through a plain
     * socket BIO; neither closes fd, conn_free does. */
    BIO *rb = c ? rxtime_bio_new(fd) : NULL;
    BIO *wb = rb ? BIO_new_socket(fd, BIO_NOCLOSE) : NULL;
    if (wb)
        SSL_set_bio(ssl, rb, wb); /* the SSL owns both from here */
    else
        BIO_free(rb);
    if (!wb) {
        SSL_free(ssl);
        if (c) {
            conn_free(c);
        } else {
            srclimit_release(&srv->sources, &source);
            close(fd);
        }
        return NULL;
    }
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    conn_tune_socket(c);
    config_addr_str(peer, c->peer, sizeof c->peer);
    struct ev_loop *loop = srv->loop;
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    ev_io_start(loop, &c->io);
    ev_timer_set(&c->timer, c->cfg->limits.handshake_timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, &c->timer);
    return c;
}

conn_t *conn_new_memory(struct server *srv)
{
    conn_t *c = conn_alloc(srv, -1);
    if (!c)
        return NULL;
    snprintf(c->peer, sizeof c->peer, "memory:%llu", (unsigned long long)c->id);
    if (conn_start_h2(c) < 0) {
        conn_free(c);
        return NULL;
    }
    return c;
}

int conn_feed(conn_t *c, const uint8_t *data, size_t len)
{
    c->srv->env.rx_ns = compat_mono_ns();
    ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);
    tunnel_uplink_flush(&c->srv->env);
    return rv < 0 ? (int)rv : 0;
}

ssize_t conn_pull(conn_t *c, const uint8_t **data)
{
    return nghttp2_session_mem_send(c->h2, data);
}

/* Whether a connection that ends this way may still have our last words
 * (a GOAWAY with the reason, a 400 to cleartext) on their way while the
 * client sends: those close through linger.h. Not when the client went,
 * stalled or stopped answering (nothing more would reach it), nor when its
 * TLS handshake failed or ran out of time (we have nothing to say). */
static int conn_end_lingers(enum conn_end end)
{
    switch (end) {
    case CONN_END_NOT_TLS:
    case CONN_END_PROTOCOL:
    case CONN_END_CALM:
    case CONN_END_AUTH:
    case CONN_END_HEADER_TIMEOUT:
    case CONN_END_IDLE:
    case CONN_END_SHUTDOWN:
        return 1;
    default:
        return 0;
    }
}

void conn_free(conn_t *c)
{
    server_t *srv = c->srv;
    tunnel_t *t;
    while ((t = tunnel_first(&c->host)))
        tunnel_free(t);
    tunnel_host_done(&c->host);
    ev_io_stop(srv->loop, &c->io);
    ev_timer_stop(srv->loop, &c->timer);
    ev_timer_stop(srv->loop, &c->health);
    nghttp2_session_del(c->h2);
    SSL_free(c->ssl);
    /* Lingering sockets and live connections together stay within this
     * loop's share of max_connections: the descriptors main() reserved. */
    if (c->fd >= 0 && conn_end_lingers(c->end) &&
        srv->counters.conns_active + srv->linger.count <=
            tunnel_env_share(&srv->env, srv->cfg->limits.max_connections))
        linger_close(&srv->linger, c->fd);
    else if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    free(c->proxy_buf);
    srclimit_release(&srv->sources, &c->source);
    list_remove(&c->_link);
    srv->counters.conns_active--;
    if (!c->end_set)
        c->end = srv->drain_phase >= DRAIN_GOAWAY ? CONN_END_SHUTDOWN : CONN_END_PEER;
    srv->counters.conns_closed[c->end]++;
    log_line_t l;
    if (log_limit_take(&srv->logs.conn, compat_mono_ns(), LOG_INFO) &&
        log_begin(&l, LOG_INFO, "conn.close")) {
        log_str(&l, "peer", c->peer);
        log_str(&l, "reason", conn_end_name(c->end));
        log_u64(&l, "duration_ms", (compat_mono_ns() - c->accepted) / UTIL_MS_NS);
        log_u64(&l, "tunnels", c->opened_total);
        log_end(&l);
    }
    config_unref(c->cfg);
    server_conn_gone(srv, c);
    free(c);
}

/* RFC 9113 §6.8: a GOAWAY with 2^31-1 first, so that requests already in
 * flight reach us and get a 503 with a reason instead of vanishing; the final
 * GOAWAY, naming the last stream we processed, follows once the client has
 * answered the PING sent with the notice (one round trip). */
void conn_refuse_new(conn_t *c)
{
    if (c->state != CONN_H2 || c->closing)
        return;
    conn_end_as(c, CONN_END_SHUTDOWN);
    c->host.refusing = 1;
    if (!c->draining) {
        c->draining = 1;
        if (nghttp2_submit_shutdown_notice(c->h2) == 0 &&
            nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, drain_ping) == 0)
            c->notice_sent = 1;
        else
            conn_final_goaway(c);
    }
    conn_want_write(c);
}

void conn_drain(conn_t *c)
{
    if (c->state != CONN_H2 || c->closing)
        return;
    conn_refuse_new(c);
    /* Every open tunnel is told, even on a connection that already had its
     * GOAWAY (idle, failed logins): tunnel_close ignores the closing ones. */
    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, &c->host.tunnels)
        tunnel_close(LIST_ENTRY(pos, tunnel_t, _link), CLOSE_SHUTTING_DOWN,
                     "gateway shutting down", 0);
    conn_want_write(c);
}

static void conn_final_goaway(conn_t *c)
{
    c->notice_sent = 0;
    conn_goaway(c, NGHTTP2_NO_ERROR, "shutting down");
}

/* An INFO line "conn PEER: ..." for an event the client can repeat at will,
 * through the server's rate limit for connection events. */
static void conn_log(conn_t *c, const char *fmt, ...)
{
    if (!log_limit_take(&c->srv->logs.conn, compat_mono_ns(), LOG_INFO))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_msg(LOG_INFO, "conn %s: %s", c->peer, msg);
}

/* GOAWAY naming the last stream processed, the reason in its debug data
 * (RFC 9113 §6.8); the connection takes no new tunnel from then on. */
static void conn_goaway(conn_t *c, uint32_t code, const char *why)
{
    c->draining = 1;
    c->host.refusing = 1;
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                          code, (const uint8_t *)why, strlen(why));
    conn_want_write(c);
}

/* The client is abusing the connection: GOAWAY(ENHANCE_YOUR_CALM) with the
 * reason, nothing more is read, and the connection closes once that is
 * written (RFC 9113 §5.4.1: the GOAWAY goes out before the close). */
static void conn_calm(conn_t *c, const char *why)
{
    if (c->closing || (c->draining && nghttp2_session_want_read(c->h2) == 0))
        return;
    c->srv->counters.conns_calmed++;
    conn_end_as(c, CONN_END_CALM);
    conn_log(c, "%s; GOAWAY(ENHANCE_YOUR_CALM)", why);
    conn_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM, why);
    /* Read nothing more, even while streams are open; nghttp2 repeats the
     * GOAWAY (without the reason) and ends the session once it is sent. */
    nghttp2_session_terminate_session(c->h2, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* nghttp2_session_mem_recv failed with rv: RFC 9113 §5.4.1, say why before
 * closing. nghttp2 queues no GOAWAY for its fatal errors, its flood limits
 * among them (queued acknowledgements, CONTINUATIONs, SETTINGS entries:
 * which of those or the control-frame budget binds first depends on how
 * fast the frames are read); our own callback failures have queued theirs
 * already. */
static void conn_h2_failed(conn_t *c, int rv)
{
    const char *flood = rv == NGHTTP2_ERR_FLOODED              ? "too many frames to acknowledge"
                        : rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ? "too many CONTINUATION frames"
                        : rv == NGHTTP2_ERR_TOO_MANY_SETTINGS      ? "too many SETTINGS entries"
                                                                   : NULL;
    if (flood) {
        conn_calm(c, flood);
        return;
    }
    conn_log(c, "HTTP/2 error: %s", nghttp2_strerror(rv));
    conn_end_as(c, CONN_END_PROTOCOL);
    if (rv == NGHTTP2_ERR_CALLBACK_FAILURE)
        return;
    conn_goaway(c, NGHTTP2_PROTOCOL_ERROR, nghttp2_strerror(rv));
    nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
}

/* ---- I/O ------------------------------------------------------------------- */

/* RFC 8446 §5.1: a TLS connection starts with a handshake record (type 22).
 * Anything else is a cleartext client: tell it why, in the protocol it most
 * likely speaks, and hang up. Returns 1 for TLS, 0 to wait, -1 to close. */
static int conn_check_tls(conn_t *c)
{
    uint8_t b;
    ssize_t r = recv(c->fd, &b, 1, MSG_PEEK);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (r == 0)
        return -1;
    if (b == 22)
        return 1;
    conn_end_as(c, CONN_END_NOT_TLS);
    static const char refusal[] = "HTTP/1.1 400 Bad Request\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "Content-Length: 52\r\n"
                                  "Connection: close\r\n\r\n"
                                  "TLS required: this port speaks HTTP/2 over TLS only\n";
    ssize_t ignored = send(c->fd, refusal, sizeof refusal - 1, MSG_NOSIGNAL);
    (void)ignored;
    conn_log(c, "cleartext refused");
    return -1;
}

static int conn_start_h2(conn_t *c)
{
    const unsigned char *alpn = (const unsigned char *)"h2";
    unsigned alpn_len = 2;
    if (c->ssl)
        SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        conn_end_as(c, CONN_END_NO_H2);
        conn_log(c, "no ALPN h2");
        return -1;
    }
    server_t *srv = c->srv;
    nghttp2_mem mem;
    h2mem_init(&c->h2mem, &mem);
    if (nghttp2_session_server_new3(&c->h2, srv->h2_cbs, c, srv->h2_opt, &mem) != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->cfg->limits.max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_LIST},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0)
        return -1;
    c->state = CONN_H2;
    c->since = c->last_rx = c->last_drain = c->frame_refill = compat_mono_ns();
    log_line_t l;
    if (c->ssl && log_limit_take(&srv->logs.conn, c->since, LOG_INFO) &&
        log_begin(&l, LOG_INFO, "conn.open")) {
        log_str(&l, "peer", c->peer);
        log_str(&l, "tls", SSL_get_version(c->ssl));
        log_u64(&l, "handshake_ms", (c->since - c->accepted) / UTIL_MS_NS);
        log_end(&l);
    }
    c->frame_tokens = c->cfg->limits.max_control_frames_s;
    ev_timer_stop(srv->loop, &c->timer);
    ev_timer_set(&c->timer, c->cfg->limits.header_timeout_ms / 1000.0, 0.);
    ev_timer_start(srv->loop, &c->timer);
    const cfg_limits_t *lim = &c->cfg->limits;
    uint32_t first = lim->write_stall_ms / 4 + 1;
    c->health.repeat = (first < lim->ping_interval_ms ? first : lim->ping_interval_ms) / 1000.0;
    ev_timer_again(srv->loop, &c->health);
    /* Past the deregistration delay a connection that was still in its
     * handshake hears GOAWAY at once; at the drain deadline, CLOSE too. */
    if (srv->drain_phase == DRAIN_GOAWAY)
        conn_refuse_new(c);
    else if (srv->drain_phase == DRAIN_CLOSE)
        conn_drain(c);
    return 0;
}

/* The class of a failed handshake, from SSL_get_error's answer and the
 * oldest error on OpenSSL's queue. */
static enum tls_fail tls_fail_of(int ssl_error, unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN
                   ? TLS_FAIL_EOF
                   : TLS_FAIL_OTHER;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_HTTP_REQUEST:
        return TLS_FAIL_PROTOCOL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
        return TLS_FAIL_NO_SHARED_CIPHER;
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        return TLS_FAIL_CERT_REJECTED;
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return TLS_FAIL_NO_ALPN;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return TLS_FAIL_EOF;
    default:
        return TLS_FAIL_OTHER;
    }
}

void conn_expect_proxy(conn_t *c)
{
    c->proxy_wait = 1;
}

/* The client's real address from a PROXY header (the connection's own for
 * LOCAL/UNKNOWN), admitted by the per-source limits as at accept (server.c).
 * Returns 0, or -1 to close (refused, counted and logged). */
static int conn_proxy_admit(conn_t *c, const proxyproto_t *p)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (p->family == PROXYPROTO_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, p->src, 4);
        in->sin_port = htons(p->src_port);
        len = sizeof *in;
    } else if (p->family == PROXYPROTO_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, p->src, 16);
        in6->sin6_port = htons(p->src_port);
        len = sizeof *in6;
    } else if (getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0) {
        return -1;
    }
    char via[64];
    snprintf(via, sizeof via, "%s", c->peer);
    config_addr_str((struct sockaddr *)&ss, c->peer, sizeof c->peer);
    server_t *srv = c->srv;
    const cfg_limits_t *lim = &c->cfg->limits;
    int rc = srclimit_admit(&srv->sources, (struct sockaddr *)&ss, len,
                            lim->max_pending_per_source, lim->handshakes_per_source_s,
                            compat_mono_ns(), &c->source);
    if (rc != SRCLIMIT_OK) {
        srv->counters.conns_refused++;
        if (rc == SRCLIMIT_RATE || rc == SRCLIMIT_PENDING || rc == SRCLIMIT_FULL)
            srv->counters.conns_refused_source[-rc - 1]++;
        conn_end_as(c, CONN_END_PROXY_HEADER);
        conn_log(c, "refused after its PROXY header (via %s): source over its limit (%s)", via,
                 srclimit_rc_name(rc));
        return -1;
    }
    conn_log(c, "PROXY v%u header from %s", p->version, via);
    return 0;
}

/* Reads the PROXY protocol header (proto/proxyproto.h) without taking a
 * byte of TLS: bytes are peeked, and only those that belong to the header
 * are consumed (all of them while it is incomplete: a header has no other
 * end). At most PROXYPROTO_MAX bytes; the handshake timer bounds the time.
 * Returns 1 when read, 0 to wait, -1 to close (counted and logged). */
static int conn_read_proxy(conn_t *c)
{
    if (!c->proxy_buf && !(c->proxy_buf = malloc(PROXYPROTO_MAX)))
        return -1;
    ssize_t r = recv(c->fd, c->proxy_buf + c->proxy_len, PROXYPROTO_MAX - c->proxy_len,
                     MSG_PEEK);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (r == 0)
        return -1;
    proxyproto_t p;
    const char *why;
    size_t have = c->proxy_len + (size_t)r;
    int n = proxyproto_decode(c->proxy_buf, have, &p, &why);
    if (n < 0 && n != PROTO_INCOMPLETE) {
        conn_end_as(c, CONN_END_PROXY_HEADER);
        conn_log(c, "bad PROXY protocol header: %s", why);
        return -1;
    }
    size_t take = n > 0 ? (size_t)n - c->proxy_len : (size_t)r;
    if (recv(c->fd, c->proxy_buf + c->proxy_len, take, 0) != (ssize_t)take)
        return -1; /* peeked bytes are there to take */
    c->proxy_len += take;
    if (n == PROTO_INCOMPLETE)
        return 0;
    free(c->proxy_buf);
    c->proxy_buf = NULL;
    c->proxy_wait = 0;
    return conn_proxy_admit(c, &p) < 0 ? -1 : 1;
}

/* Returns 0 to go on (state may now be CONN_H2), -1 to close. */
static int conn_handshake(conn_t *c)
{
    if (c->proxy_wait) {
        int rc = conn_read_proxy(c);
        if (rc <= 0)
            return rc;
    }
    if (!c->peeked) {
        int rc = conn_check_tls(c);
        if (rc <= 0)
            return rc;
        c->peeked = 1;
    }
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1)
        return conn_start_h2(c);
    int want;
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        want = EV_READ;
        break;
    case SSL_ERROR_WANT_WRITE:
        want = EV_READ | EV_WRITE;
        break;
    default: {
        char why[256];
        enum tls_fail f = tls_fail_of(SSL_get_error(c->ssl, rc), ERR_peek_error());
        c->srv->counters.tls_failures++;
        c->srv->counters.tls_failures_by[f]++;
        conn_end_as(c, CONN_END_TLS_HANDSHAKE);
        conn_log(c, "TLS handshake failed (%s): %s", tls_fail_name(f),
                 tlserr_take(why, sizeof why, "unknown TLS error"));
        return -1;
    }
    }
    if ((c->io.events & (EV_READ | EV_WRITE)) != want) {
        ev_io_stop(c->srv->loop, &c->io);
        ev_io_set(&c->io, c->fd, want);
        ev_io_start(c->srv->loop, &c->io);
    }
    return 0;
}

/* SSL_get_error is reliable only if the thread's error queue was empty
 * before the call, and clearing it costs about as much as decrypting a small
 * record. So it is not cleared up front: a call that fails in a way an old
 * entry could explain (SSL_ERROR_SSL or SSL_ERROR_SYSCALL with a queue that
 * is not empty) is made again on an empty queue, and that answer counts. A
 * real failure fails again; WANT_READ/WANT_WRITE never look at the queue. */
static int tls_retry(SSL *ssl, int n, int *err)
{
    *err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, n);
    if ((*err != SSL_ERROR_SSL && *err != SSL_ERROR_SYSCALL) || !ERR_peek_error())
        return 0;
    ERR_clear_error();
    return 1;
}

static int tls_read(SSL *ssl, void *buf, int len, int *err)
{
    int n = SSL_read(ssl, buf, len);
    if (tls_retry(ssl, n, err)) {
        n = SSL_read(ssl, buf, len);
        *err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, n);
    }
    return n;
}

static int tls_write(SSL *ssl, const void *buf, int len, int *err)
{
    int n = SSL_write(ssl, buf, len);
    if (tls_retry(ssl, n, err)) {
        n = SSL_write(ssl, buf, len);
        *err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, n);
    }
    return n;
}

/* Returns 0, or -1 when the connection is finished (peer gone, TLS or HTTP/2
 * error). nghttp2 queues its own GOAWAY for protocol errors; the caller flushes
 * what it can before closing. With read-ahead (tls.c) one read() brings in
 * every record the kernel had; once TLS holds no further bytes the loop stops
 * instead of calling read() again only to hear EAGAIN (the watcher is
 * level-triggered: anything that arrived since wakes it again). */
static int conn_read(conn_t *c)
{
    uint8_t buf[READ_CHUNK];
    /* One reading of each clock per event: the records of one event are
     * read within microseconds of each other. */
    uint64_t now = compat_mono_ns();
    int64_t now_real = compat_real_ns();
    for (int i = 0; i < READS_PER_EVENT && !c->closing; i++) {
        int err;
        int n = tls_read(c->ssl, buf, sizeof buf, &err);
        if (n <= 0) {
            switch (err) {
            case SSL_ERROR_WANT_READ:
                return 0;
            case SSL_ERROR_WANT_WRITE:
                conn_want_write(c);
                return 0;
            case SSL_ERROR_ZERO_RETURN: /* close_notify */
            case SSL_ERROR_SYSCALL:     /* EOF or reset */
                conn_end_as(c, CONN_END_PEER);
                return -1;
            default:
                conn_end_as(c, CONN_END_TLS_ERROR);
                return -1;
            }
        }
        c->last_rx = now;
        /* When the bytes reached the kernel, as far as is known: the uplink
         * media they carry is dropped once older than its age limit
         * (tunnel.c, up_packet), however long it waited in the receive queue. */
        int64_t age = rxtime_age_ns(SSL_get_rbio(c->ssl), now_real);
        c->srv->env.rx_ns = age > 0 && (uint64_t)age < now ? now - (uint64_t)age : now;
        if (age > 0 && (uint64_t)age > (uint64_t)cfg_media_leg_ms(&c->cfg->limits) * UTIL_MS_NS / 2)
            c->rx_late_at = now;
        ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
        tunnel_uplink_flush(&c->srv->env); /* this record's packets, one sendmmsg per tunnel */
        if (rv < 0) {
            conn_h2_failed(c, (int)rv);
            return -1;
        }
        if (!SSL_has_pending(c->ssl))
            return 0;
    }
    /* This event's share is read but TLS still holds records the kernel has
     * already handed over, so no readiness will come for them: go on once the
     * loop has nothing else to do (an idle watcher keeps it from blocking). */
    if (!c->closing && SSL_has_pending(c->ssl))
        ev_idle_start(c->srv->loop, &c->more);
    return 0;
}

/* Moves frames from nghttp2 into the output buffer and the buffer into TLS.
 * A write that TLS could not finish is retried with the same bytes before any
 * new frames are taken. The buffer exists only while there is output, so an
 * idle connection holds none. Returns 0, or -1 on a fatal error. */
static int conn_write(conn_t *c)
{
    for (int i = 0; i < WRITES_PER_EVENT; i++) {
        if (!c->write_blocked) {
            while (c->out_len < CONN_OUT_CAP) {
                if (!c->pend_len) {
                    const uint8_t *data;
                    ssize_t n = nghttp2_session_mem_send(c->h2, &data);
                    if (n < 0)
                        return -1;
                    if (n == 0)
                        break;
                    c->pend = data;
                    c->pend_len = (size_t)n;
                }
                if (!c->out && !(c->out = malloc(CONN_OUT_CAP)))
                    return -1;
                size_t k = CONN_OUT_CAP - c->out_len;
                if (k > c->pend_len)
                    k = c->pend_len;
                memcpy(c->out + c->out_len, c->pend, k);
                c->out_len += k;
                c->pend += k;
                c->pend_len -= k;
            }
        }
        if (c->out_off == c->out_len)
            break;
        int err;
        int w = tls_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off), &err);
        if (w <= 0) {
            switch (err) {
            case SSL_ERROR_WANT_WRITE:
            case SSL_ERROR_WANT_READ:
                c->write_blocked = 1;
                return 0;
            default:
                return -1;
            }
        }
        c->write_blocked = 0;
        c->last_drain = compat_mono_ns();
        c->out_off += (size_t)w;
        if (c->out_off == c->out_len)
            c->out_off = c->out_len = 0;
    }
    if (!c->out_len && c->nopen == 0) {
        free(c->out);
        c->out = NULL;
    }
    return 0;
}

static int conn_finished(conn_t *c)
{
    return !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
           !c->out_len && !c->pend_len;
}

/* Writes what is pending and decides which events to wait for: EV_WRITE only
 * while TLS holds back output (or nghttp2 still has frames after this
 * event's share). */
void conn_flush(conn_t *c)
{
    if (c->closing)
        return;
    if (conn_write(c) < 0) {
        conn_close(c, CONN_END_WRITE_ERROR);
        return;
    }
    if (conn_finished(c)) {
        conn_close(c, CONN_END_PEER); /* unless a GOAWAY of ours said why first */
        return;
    }
    int want = EV_READ;
    if (c->out_len || c->pend_len || c->write_blocked || nghttp2_session_want_write(c->h2))
        want |= EV_WRITE;
    conn_set_events(c, want);
}

/* Records read-ahead left in TLS after conn_read's share (see there). */
static void conn_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    conn_t *c = container_of(w, conn_t, more);
    ev_idle_stop(loop, w);
    conn_io_cb(loop, &c->io, EV_READ);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    conn_t *c = container_of(w, conn_t, io);
    if (c->state == CONN_HANDSHAKE) {
        /* A handshake step is CPU work (key exchange, a signature: a few
         * hundred microseconds with a P-256 key, milliseconds with RSA-4096
         * or on a slow core); a burst of new connections must not hold
         * every live call's packets behind it for the whole burst. The
         * budget is time, not steps, so that it holds whatever a step
         * costs; at least one step runs per iteration. The socket stays
         * ready and libev's epoll backend is level-triggered: the steps
         * over the budget are reported again next iteration, after the
         * live connections have had their turn. */
        if (c->srv->hs_ns >= HANDSHAKE_NS_PER_ITERATION)
            return;
        uint64_t t0 = compat_mono_ns();
        int hs = conn_handshake(c);
        c->srv->hs_ns += compat_mono_ns() - t0;
        if (hs < 0) {
            conn_close(c, CONN_END_PEER); /* unless the handshake said why */
            return;
        }
        if (c->state == CONN_HANDSHAKE)
            return;
        revents |= EV_READ; /* TLS may hold early data; SETTINGS to send */
        conn_want_write(c);
    }
    if ((revents & EV_READ) && conn_read(c) < 0) {
        conn_write(c); /* best effort: a GOAWAY nghttp2 queued */
        conn_close(c, CONN_END_PEER); /* unless the read said why */
        return;
    }
    if ((revents & EV_READ) && c->rcvbuf)
        conn_rcvbuf_adapt(c, compat_mono_ns());
    if (revents & EV_WRITE)
        conn_flush(c); /* the socket took more: go on now */
    else
        conn_want_write(c); /* whatever reading produced goes out once, before the loop blocks */
}

/* One timer, three deadlines: the TLS handshake, the first tunnel (slow,
 * silent or request-only clients), and idleness once no tunnel is open. */
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_t *c = container_of(w, conn_t, timer);
    const cfg_limits_t *lim = &c->cfg->limits;
    if (c->state == CONN_HANDSHAKE && c->proxy_wait) {
        conn_log(c, "no complete PROXY protocol header within the handshake timeout");
        conn_close(c, CONN_END_PROXY_HEADER);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        c->srv->counters.tls_failures++;
        c->srv->counters.tls_failures_by[TLS_FAIL_TIMEOUT]++;
        conn_log(c, "TLS handshake timeout");
        conn_close(c, CONN_END_HANDSHAKE_TIMEOUT);
        return;
    }
    uint64_t now = compat_mono_ns(), deadline;
    if (c->draining && c->nopen == 0) {
        conn_close(c, CONN_END_SHUTDOWN); /* GOAWAY had its grace period; the peer is not reading */
        return;
    }
    if (!c->ever_opened) {
        deadline = c->since + (uint64_t)lim->header_timeout_ms * UTIL_MS_NS;
        if (now >= deadline) {
            conn_log(c, "no tunnel within the header timeout");
            conn_close(c, CONN_END_HEADER_TIMEOUT);
            return;
        }
    } else if (c->nopen == 0) {
        deadline = c->since + (uint64_t)lim->conn_idle_ms * UTIL_MS_NS;
        if (now >= deadline) {
            /* RFC 9113 §6.8: say goodbye; with no stream left nghttp2 wants
             * nothing more once it is written, and the connection closes. */
            conn_end_as(c, CONN_END_IDLE);
            conn_goaway(c, NGHTTP2_NO_ERROR, "idle");
            deadline = now + 1000 * UTIL_MS_NS;
        }
    } else {
        deadline = now + (uint64_t)lim->conn_idle_ms * UTIL_MS_NS;
    }
    w->repeat = (double)(deadline - now) / 1e9;
    ev_timer_again(loop, w);
}

/* Idle memory: OpenSSL keeps a read and a write buffer (about 17 KiB and
 * 16 KiB) in every SSL that has been used, and the output buffer stays while
 * tunnels are open. A connection that has been quiet both ways for
 * CONN_QUIET_NS, with nothing half-written, half-read or queued, gives them
 * back; the next record allocates them again. This runs from the health
 * timer, never per packet: a connection carrying media is never quiet for a
 * second, so it keeps its buffers (SSL_MODE_RELEASE_BUFFERS would free and
 * reallocate them around every record instead). */
static void conn_release_idle(conn_t *c, uint64_t now)
{
    if (c->out_len || c->pend_len || c->write_blocked || now - c->last_rx < CONN_QUIET_NS ||
        now - c->last_drain < CONN_QUIET_NS)
        return;
    if (c->released_at >= c->last_rx && c->released_at >= c->last_drain)
        return; /* nothing was read or written since the last release */
    free(c->out);
    c->out = NULL;
    if (c->h2 && !nghttp2_session_want_write(c->h2))
        h2mem_release(&c->h2mem); /* no frame in nghttp2's buffer */
    /* Refused (0) while a record is partly read or written: kept for the
     * next tick. Safe since OpenSSL 3.0.14 (CVE-2024-4741). */
    if (c->ssl && (SSL_has_pending(c->ssl) || !SSL_free_buffers(c->ssl)))
        return;
    c->released_at = now;
    server_memory_released(c->srv);
}

/* Keepalive and progress, every HTTP/2 connection:
 *  - write stall: output TLS will not take, or tunnel bytes the client leaves
 *    in our queues (zero flow-control window), for write_stall_ms: GOAWAY and
 *    close (media was being dropped meanwhile, as always);
 *  - dead peer: nothing received for ping_interval_ms sends a PING; still
 *    nothing ping_timeout_ms later closes. */
static void conn_health_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_t *c = container_of(w, conn_t, health);
    const cfg_limits_t *lim = &c->cfg->limits;
    uint64_t now = compat_mono_ns();
    uint64_t stall = (uint64_t)lim->write_stall_ms * UTIL_MS_NS;
    uint64_t interval = (uint64_t)lim->ping_interval_ms * UTIL_MS_NS;
    uint64_t timeout = (uint64_t)lim->ping_timeout_ms * UTIL_MS_NS;

    uint64_t since = (c->out_len || c->write_blocked) ? c->last_drain : 0;
    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, &c->host.tunnels) {
        tunnel_t *t = LIST_ENTRY(pos, tunnel_t, _link);
        uint64_t ws = tunnel_waiting_since(t);
        if (ws && (!since || ws < since))
            since = ws;
        tunnel_release_idle(t);
    }
    if (since && now - since >= stall) {
        c->srv->counters.write_stalls++;
        conn_log(c, "no write progress for %u ms; GOAWAY and close", lim->write_stall_ms);
        conn_goaway(c, NGHTTP2_NO_ERROR, "write stalled");
        if (c->fd >= 0)
            conn_write(c); /* best effort: the client may still read this */
        conn_close(c, CONN_END_WRITE_STALL);
        return;
    }
    if (c->ping_sent && c->last_rx > c->ping_sent)
        c->ping_sent = 0; /* anything received proves the peer alive */
    if (c->ping_sent && now - c->ping_sent >= timeout) {
        c->srv->counters.ping_timeouts++;
        conn_log(c, "nothing received for %u ms after a PING; closing", lim->ping_timeout_ms);
        conn_close(c, CONN_END_PING_TIMEOUT);
        return;
    }
    if (!c->ping_sent && now - c->last_rx >= interval) {
        static const uint8_t keepalive[8] = {'s', 'l', 'u', 'i', 'c', 'e', 'k', 'a'};
        if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, keepalive) == 0) {
            c->ping_sent = now;
            conn_want_write(c);
        }
    }
    conn_release_idle(c, now);
    uint64_t next = c->ping_sent ? c->ping_sent + timeout : c->last_rx + interval;
    if (since && since + stall < next)
        next = since + stall;
    /* Tunnel bytes may start waiting at any moment: look again within a
     * quarter of the stall limit. */
    if (next > now + stall / 4)
        next = now + stall / 4;
    w->repeat = next > now ? (double)(next - now) / 1e9 : 0.001;
    ev_timer_again(loop, w);
}
