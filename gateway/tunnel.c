/* tunnel.c — see tunnel.h. */
#include "tunnel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../proto/dispatch.h"
#include "conn.h"
#include "log.h"
#include "server.h"
#include "util.h"

/* Fairness: a busy backend cannot starve other watchers of the loop. */
#define UDP_READS_PER_EVENT 64
/* This many ICMP errors in a row, with no reply between, closes the tunnel. */
#define BACKEND_ERRORS_MAX 8

static server_t *srv_of(const tunnel_t *t)
{
    return t->conn->srv;
}

static const cfg_limits_t *limits_of(const tunnel_t *t)
{
    return &srv_of(t)->cfg->limits;
}

static void count_down(tunnel_t *t, uint64_t packets, uint64_t bytes)
{
    server_counters_t *sc = &srv_of(t)->counters;
    t->counters.down_packets += packets;
    t->counters.down_bytes += bytes;
    sc->tunnel.down_packets += packets;
    sc->tunnel.down_bytes += bytes;
}

static void count_drop(tunnel_t *t, enum drop_reason r, uint64_t n)
{
    t->counters.drops[r] += n;
    srv_of(t)->counters.tunnel.drops[r] += n;
}

/* sendq's drop hook: every downlink drop lands in the tunnel's and the
 * server's counters under the gateway's name for it. */
static void down_dropped(void *ctx, enum sendq_drop why, uint64_t n)
{
    static const enum drop_reason map[SENDQ_DROP_COUNT] = {
        [SENDQ_DROP_MEDIA_EVICTED] = DROP_MEDIA_EVICTED,
        [SENDQ_DROP_MEDIA_EXPIRED] = DROP_MEDIA_EXPIRED,
        [SENDQ_DROP_SIGNAL_FULL] = DROP_SIGNAL_FULL,
        [SENDQ_DROP_PONG_FULL] = DROP_PONG_FULL,
        [SENDQ_DROP_TOO_BIG] = DROP_OVERSIZE,
        [SENDQ_DROP_DISCARDED] = DROP_CLOSING,
        [SENDQ_DROP_NOMEM] = DROP_NOMEM,
    };
    count_drop(ctx, map[why], n);
}

tunnel_t *tunnel_new(struct conn *c, int32_t stream_id)
{
    tunnel_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->req = calloc(1, sizeof *t->req);
    if (!t->req) {
        free(t);
        return NULL;
    }
    t->conn = c;
    t->stream_id = stream_id;
    t->state = TUNNEL_REQUEST;
    t->fd = -1;
    t->_next = c->tunnels;
    if (c->tunnels)
        c->tunnels->_prev = t;
    c->tunnels = t;
    return t;
}

void tunnel_add_header(tunnel_t *t, const uint8_t *name, size_t namelen, const uint8_t *value,
                       size_t valuelen)
{
    if (t->state == TUNNEL_REQUEST)
        request_add_header(t->req, name, namelen, value, valuelen);
}

/* Wakes the response body after something was queued. */
static void tunnel_wake(tunnel_t *t)
{
    if (t->deferred) {
        t->deferred = 0;
        nghttp2_session_resume_data(t->conn->h2, t->stream_id);
    }
    conn_want_write(t->conn);
}

/* ---- response body (downlink) ---------------------------------------------- */

/* Error response body: the reason sentence and a newline. */
static ssize_t reason_read(tunnel_t *t, uint8_t *buf, size_t length, uint32_t *flags)
{
    size_t total = strlen(t->reason) + 1, n = 0;
    while (n < length && t->reason_off < total) {
        buf[n++] = t->reason_off + 1 < total ? (uint8_t)t->reason[t->reason_off] : '\n';
        t->reason_off++;
    }
    if (t->reason_off == total)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* nghttp2 data provider of the response body: DATA frames come straight from
 * the tunnel's sendq (signaling before media, stale media dropped at the last
 * moment); it defers when there is nothing to send. */
static ssize_t body_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *flags, nghttp2_data_source *source,
                         void *user_data)
{
    tunnel_t *t = source->ptr;
    if (t->state == TUNNEL_REJECTED)
        return reason_read(t, buf, length, flags);

    uint64_t packets = t->down.tx_packets, bytes = t->down.tx_bytes;
    int eof;
    size_t n = sendq_fill(&t->down, buf, length, util_ns(ev_now(srv_of(t)->loop)), &eof);
    count_down(t, t->down.tx_packets - packets, t->down.tx_bytes - bytes);
    if (eof) {
        t->body_ended = 1;
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (t->rst_after_close)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        return (ssize_t)n;
    }
    if (n == 0) {
        t->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- backend socket (downlink in, uplink out) ------------------------------ */

static void tunnel_touch(tunnel_t *t)
{
    t->last_active = ev_now(srv_of(t)->loop);
}

static void backend_error(tunnel_t *t, int err)
{
    count_drop(t, DROP_BACKEND_ERROR, 1);
    if (++t->backend_errors >= BACKEND_ERRORS_MAX) {
        log_msg(LOG_WARN, "tunnel %s/%d: backend %s unreachable: %s", t->conn->peer,
                t->stream_id, t->backend, strerror(err));
        tunnel_close(t, CLOSE_BACKEND_UNREACHABLE, "backend unreachable", 0);
    }
}

static void udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tunnel_t *t = container_of(w, tunnel_t, udp_io);
    uint8_t *buf = srv_of(t)->udp_buf;
    uint64_t now = util_ns(ev_now(loop));
    int got = 0;
    for (int i = 0; i < UDP_READS_PER_EVENT && t->state == TUNNEL_OPEN; i++) {
        ssize_t r = recv(t->fd, buf, SERVER_UDP_BUF, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            backend_error(t, errno);
            continue;
        }
        got = 1;
        t->backend_errors = 0;
        sendq_push(&t->down, buf, (size_t)r, now); /* drops are counted by the hook */
    }
    if (got) {
        tunnel_touch(t);
        tunnel_wake(t);
    }
}

static void to_backend(tunnel_t *t, const uint8_t *p, size_t len)
{
    for (;;) {
        if (send(t->fd, p, len, 0) >= 0) {
            server_counters_t *sc = &srv_of(t)->counters;
            t->counters.up_packets++;
            t->counters.up_bytes += len;
            sc->tunnel.up_packets++;
            sc->tunnel.up_bytes += len;
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)
            backend_error(t, errno);
        else
            count_drop(t, DROP_UPLINK_SEND, 1); /* EAGAIN, ENOBUFS: a full socket drops */
        return;
    }
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tunnel_t *t = container_of(w, tunnel_t, idle);
    ev_tstamp left = t->last_active + limits_of(t)->tunnel_idle_ms / 1000.0 - ev_now(loop);
    if (left > 0) {
        w->repeat = left;
        ev_timer_again(loop, w);
        return;
    }
    tunnel_close(t, CLOSE_IDLE_TIMEOUT, "idle timeout", 0);
}

static void backend_close(tunnel_t *t)
{
    struct ev_loop *loop = srv_of(t)->loop;
    ev_timer_stop(loop, &t->idle);
    if (t->fd >= 0) {
        ev_io_stop(loop, &t->udp_io);
        close(t->fd);
        t->fd = -1;
    }
}

/* Opens a connected UDP socket to one backend of the pool. The choice is
 * round-robin and fixed for the tunnel's life. Returns 0 or -1 (errno). */
static int backend_open(tunnel_t *t, const cfg_pool_t *pool)
{
    server_t *srv = srv_of(t);
    const cfg_addr_t *a = &pool->addrs[srv->rr++ % pool->n];
    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;
    socklen_t len = a->len;
    if (a->builtin_echo) {
        sa = (const struct sockaddr *)&srv->echo.addr;
        len = srv->echo.addrlen;
    }
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    config_addr_str(sa, t->backend, sizeof t->backend);
    t->fd = fd;
    ev_io_init(&t->udp_io, udp_cb, fd, EV_READ);
    ev_io_start(srv->loop, &t->udp_io);
    return 0;
}

/* ---- request and response ------------------------------------------------- */

static int respond(tunnel_t *t, int status)
{
    char code[4];
    snprintf(code, sizeof code, "%03d", status);
    const char *ctype = status == 200 ? "application/octet-stream" : "text/plain; charset=utf-8";
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME}
    nghttp2_nv nva[] = {
        NV(":status", code),
        NV("content-type", ctype),
        NV("cache-control", "no-store"),
        NV("allow", "POST"),
    };
    /* RFC 9110 §15.5.2: a 401 names the scheme the client should use. */
    nghttp2_nv challenge = NV("www-authenticate", "Sluice-HMAC realm=\"sluice\"");
#undef NV
    size_t nnv = 3;
    if (status == 405)
        nnv = 4;
    else if (status == 401)
        nva[nnv++] = challenge;
    nghttp2_data_provider body = {.source.ptr = t, .read_callback = body_read};
    return nghttp2_submit_response(t->conn->h2, t->stream_id, nva, nnv, &body);
}

static int reject(tunnel_t *t, int status, const char *reason)
{
    server_t *srv = srv_of(t);
    int idx = request_status_index(status);
    if (idx >= 0)
        srv->counters.requests_rejected[idx]++;
    log_msg(LOG_INFO, "conn %s stream %d: %d %s", t->conn->peer, t->stream_id, status, reason);
    t->state = TUNNEL_REJECTED;
    t->reason = reason;
    t->reason_off = 0;
    return respond(t, status);
}

int tunnel_start(tunnel_t *t)
{
    if (t->state != TUNNEL_REQUEST)
        return 0;
    server_t *srv = srv_of(t);
    req_headers_t *req = t->req;
    t->req = NULL;
    int status;
    const char *reason;
    req_target_t target;
    if (t->conn->draining || srv->draining) {
        status = 503;
        reason = "gateway shutting down";
    } else {
        status = request_route(srv->cfg, req, (uint64_t)time(NULL), &target, &reason);
    }
    free(req);
    if (status != 200)
        return reject(t, status, reason);

    const cfg_limits_t *lim = limits_of(t);
    t->reader_buf = malloc(lim->max_capsule + CAPSULE_MAX_HEADER);
    if (!t->reader_buf)
        return reject(t, 503, "gateway out of memory");
    if (backend_open(t, &target.region->pools[target.kind]) < 0) {
        log_msg(LOG_WARN, "conn %s stream %d: backend socket: %s", t->conn->peer, t->stream_id,
                strerror(errno));
        return reject(t, 503, "backend unavailable");
    }
    capsule_reader_init(&t->reader, t->reader_buf, lim->max_capsule + CAPSULE_MAX_HEADER,
                        lim->max_capsule);
    /* A DATAGRAM value is the context id and the payload: max_capsule - 1. */
    sendq_init(&t->down, lim->media_queue_bytes, lim->signal_queue_bytes, lim->max_capsule - 1,
               (uint64_t)lim->media_queue_age_ms * 1000000u, down_dropped, t);
    snprintf(t->tenant, sizeof t->tenant, "%s", target.tenant->id);
    t->kind = target.kind;
    t->state = TUNNEL_OPEN;
    tunnel_touch(t);
    ev_init(&t->idle, idle_cb);
    t->idle.repeat = lim->tunnel_idle_ms / 1000.0;
    ev_timer_again(srv->loop, &t->idle);
    srv->counters.tunnels_opened++;
    srv->counters.tunnels_active++;
    conn_tunnel_opened(t->conn);
    log_msg(LOG_INFO, "tunnel open: conn %s stream %d tenant %s kind %s region %s backend %s",
            t->conn->peer, t->stream_id, t->tenant, config_kind_name(t->kind),
            target.region->name, t->backend);
    return respond(t, 200);
}

/* ---- request body (uplink) ------------------------------------------------- */

static void protocol_error(tunnel_t *t, const char *why)
{
    srv_of(t)->counters.protocol_errors++;
    log_msg(LOG_INFO, "tunnel %s/%d: protocol error: %s", t->conn->peer, t->stream_id, why);
    tunnel_close(t, CLOSE_PROTOCOL_ERROR, why, 1);
}

/* ---- dispatch of uplink capsules (proto/dispatch.h) ---- */

static int up_packet(void *ud, const uint8_t *p, size_t len, int is_signal)
{
    tunnel_t *t = ud;
    to_backend(t, p, len);
    return t->state != TUNNEL_OPEN; /* the backend may have been declared unreachable */
}

static void up_ping(void *ud, const uint8_t *value)
{
    tunnel_t *t = ud;
    sendq_push_pong(&t->down, value); /* a PONG over the bound is counted by the hook */
    tunnel_wake(t);
}

static void up_close(void *ud, uint64_t code, const char *reason, size_t len)
{
    tunnel_t *t = ud;
    log_msg(LOG_INFO, "tunnel %s/%d: client CLOSE %s: %.*s", t->conn->peer, t->stream_id,
            capsule_close_name(code), (int)(len > 200 ? 200 : len), reason);
    tunnel_close(t, CLOSE_NORMAL, "", 0);
}

static void up_skip(void *ud, enum dispatch_skip why)
{
    tunnel_t *t = ud;
    if (why == DISPATCH_SKIP_CONTEXT_ID) {
        count_drop(t, DROP_CONTEXT_ID, 1);
    } else {
        t->counters.unknown_capsules++;
        srv_of(t)->counters.tunnel.unknown_capsules++;
    }
}

static const dispatch_ops_t up_ops = {
    .on_packet = up_packet,
    .on_ping = up_ping,
    .on_close = up_close,
    .on_skip = up_skip,
};

void tunnel_recv_data(tunnel_t *t, const uint8_t *data, size_t len)
{
    if (t->state != TUNNEL_OPEN)
        return; /* rejected or closing: the rest of the body is discarded */
    tunnel_touch(t);
    const char *err = NULL;
    int rc = dispatch_feed(&t->reader, data, len, &up_ops, t, &err);
    if (rc < 0)
        protocol_error(t, err ? err : proto_strerror(rc));
}

void tunnel_remote_end(tunnel_t *t)
{
    if (t->state != TUNNEL_OPEN)
        return;
    if (capsule_reader_pending(&t->reader))
        protocol_error(t, "request body ends inside a capsule");
    else
        tunnel_close(t, CLOSE_NORMAL, "", 0);
}

/* ---- closing --------------------------------------------------------------- */

void tunnel_close(tunnel_t *t, uint64_t code, const char *reason, int rst)
{
    if (t->state != TUNNEL_OPEN)
        return;
    t->state = TUNNEL_CLOSING;
    t->close_code = code;
    t->rst_after_close = rst ? 1 : 0;
    /* What is still queued would arrive after the CLOSE: late, so dropped. */
    sendq_discard(&t->down);
    sendq_finish(&t->down, 1, code, reason);
    backend_close(t);
    tunnel_wake(t);
}

void tunnel_frame_sent(tunnel_t *t, const nghttp2_frame *frame)
{
    if (frame->hd.type == NGHTTP2_DATA && t->body_ended && t->rst_after_close) {
        t->rst_after_close = 0;
        nghttp2_submit_rst_stream(t->conn->h2, NGHTTP2_FLAG_NONE, t->stream_id,
                                  NGHTTP2_PROTOCOL_ERROR);
    }
}

void tunnel_free(tunnel_t *t)
{
    conn_t *c = t->conn;
    int was_open = t->state == TUNNEL_OPEN || t->state == TUNNEL_CLOSING;
    if (was_open) {
        server_t *srv = srv_of(t);
        srv->counters.tunnels_active--;
        sendq_discard(&t->down); /* whatever is still queued was never delivered */
        const tunnel_counters_t *k = &t->counters;
        uint64_t drops = 0;
        for (int i = 0; i < DROP_REASON_COUNT; i++)
            drops += k->drops[i];
        log_msg(LOG_INFO,
                "tunnel closed: conn %s stream %d tenant %s close %s up %llu/%llu B down "
                "%llu/%llu B drops %llu",
                c->peer, t->stream_id, t->tenant,
                t->state == TUNNEL_CLOSING ? capsule_close_name(t->close_code) : "reset",
                (unsigned long long)k->up_packets, (unsigned long long)k->up_bytes,
                (unsigned long long)k->down_packets, (unsigned long long)k->down_bytes,
                (unsigned long long)drops);
    }
    backend_close(t);
    sendq_dispose(&t->down);
    free(t->reader_buf);
    free(t->req);
    if (t->_prev)
        t->_prev->_next = t->_next;
    else
        c->tunnels = t->_next;
    if (t->_next)
        t->_next->_prev = t->_prev;
    conn_tunnel_gone(c, was_open);
    free(t);
}
