/* tunnel.c — see tunnel.h. */
#include "tunnel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "../proto/classify.h"
#include "../proto/dispatch.h"
#include "../proto/text.h"
#include "log.h"
#include "util.h"

/* Fairness: a busy backend cannot starve other watchers of the loop. */
#define UDP_READS_PER_EVENT 64
/* This many ICMP errors in a row, with no reply between, closes the tunnel. */
#define BACKEND_ERRORS_MAX 8
/* Bytes of a client's CLOSE reason that reach the log (escaped). */
#define CLOSE_REASON_LOGGED 200

static tunnel_env_t *env_of(const tunnel_t *t)
{
    return t->host->env;
}

static const cfg_limits_t *limits_of(const tunnel_t *t)
{
    return &t->host->cfg->limits;
}

static void count_down(tunnel_t *t, uint64_t packets, uint64_t bytes)
{
    server_counters_t *sc = env_of(t)->counters;
    t->counters.down_packets += packets;
    t->counters.down_bytes += bytes;
    sc->tunnel.down_packets += packets;
    sc->tunnel.down_bytes += bytes;
}

static void count_drop(tunnel_t *t, enum drop_reason r, uint64_t n)
{
    t->counters.drops[r] += n;
    env_of(t)->counters->tunnel.drops[r] += n;
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

tunnel_t *tunnel_new(tunnel_host_t *host, int32_t stream_id)
{
    tunnel_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->req = calloc(1, sizeof *t->req);
    if (!t->req) {
        free(t);
        return NULL;
    }
    t->host = host;
    t->stream_id = stream_id;
    t->state = TUNNEL_REQUEST;
    t->fd = -1;
    list_push(&host->tunnels, &t->_link);
    return t;
}

void tunnel_add_header(tunnel_t *t, const uint8_t *name, size_t namelen, const uint8_t *value,
                       size_t valuelen)
{
    if (t->state == TUNNEL_REQUEST)
        request_add_header(t->req, name, namelen, value, valuelen);
}

static void tunnel_wake(tunnel_t *t)
{
    t->host->ops->wake(t);
}

/* Downlink bytes were queued: the client is waited for from now, unless it
 * already was. Only the body moving ends or restarts the wait (media that
 * expires meanwhile does not: a client that took nothing is still stalled). */
static void down_queued(tunnel_t *t, uint64_t now)
{
    if (!t->down_wait)
        t->down_wait = now;
}

/* ---- response body (downlink) ---------------------------------------------- */

/* Error response body: the reason sentence and a newline. */
static size_t reason_read(tunnel_t *t, uint8_t *buf, size_t cap, enum tunnel_body_end *end)
{
    size_t total = strlen(t->reason) + 1, n = 0;
    while (n < cap && t->reason_off < total) {
        buf[n++] = t->reason_off + 1 < total ? (uint8_t)t->reason[t->reason_off] : '\n';
        t->reason_off++;
    }
    *end = t->reason_off == total ? TUNNEL_BODY_END : TUNNEL_BODY_MORE;
    return n;
}

/* The body comes straight from the tunnel's sendq: signaling before media,
 * stale media dropped at the last moment. */
size_t tunnel_body_read(tunnel_t *t, uint8_t *buf, size_t cap, enum tunnel_body_end *end)
{
    *end = TUNNEL_BODY_MORE;
    if (t->state == TUNNEL_REJECTED)
        return reason_read(t, buf, cap, end);
    if (t->state == TUNNEL_REQUEST || t->body_ended)
        return 0;
    uint64_t packets = t->down.tx_packets, bytes = t->down.tx_bytes;
    int eof;
    uint64_t now = compat_mono_ns();
    size_t n = sendq_fill(&t->down, buf, cap, now, &eof);
    count_down(t, t->down.tx_packets - packets, t->down.tx_bytes - bytes);
    if (eof) {
        t->body_ended = 1;
        t->down_wait = 0;
        *end = t->rst_after_close ? TUNNEL_BODY_END_RESET : TUNNEL_BODY_END;
    } else if (n) {
        t->down_wait = sendq_ready(&t->down, now) ? now : 0;
    }
    return n;
}

uint64_t tunnel_waiting_since(const tunnel_t *t)
{
    return t->down_wait;
}

/* ---- timers: idle and credential expiry while open, linger while closing --- */

static void timer_arm(tunnel_t *t, uint64_t at_ns)
{
    uint64_t now = compat_mono_ns();
    t->timer.repeat = at_ns > now ? (double)(at_ns - now) / 1e9 : 0.0001;
    ev_timer_again(env_of(t)->loop, &t->timer);
}

/* While open: the earlier of the idle deadline and the credential's expiry. */
static void timer_arm_open(tunnel_t *t)
{
    uint64_t idle_at = t->last_active + (uint64_t)limits_of(t)->tunnel_idle_ms * UTIL_MS_NS;
    timer_arm(t, idle_at < t->expires ? idle_at : t->expires);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tunnel_t *t = container_of(w, tunnel_t, timer);
    uint64_t now = compat_mono_ns();
    if (t->state == TUNNEL_CLOSING) {
        /* RFC 9113 §8.1: once the response is complete the client may be
         * told to stop without error; otherwise it is not reading: cancel. */
        log_limited(&env_of(t)->logs->tunnel, now, LOG_INFO,
                    "tunnel %s/%d: client did not finish within the close linger; reset",
                    t->host->peer, t->stream_id);
        ev_timer_stop(loop, w);
        t->host->ops->reset(t, t->body_ended);
        return;
    }
    if (t->state != TUNNEL_OPEN)
        return;
    if (now >= t->expires)
        tunnel_close(t, CLOSE_CREDENTIAL_EXPIRED, "credential expired", 0);
    else if (now >= t->last_active + (uint64_t)limits_of(t)->tunnel_idle_ms * UTIL_MS_NS)
        tunnel_close(t, CLOSE_IDLE_TIMEOUT, "idle timeout", 0);
    else
        timer_arm_open(t);
}

/* ---- backend socket (downlink in, uplink out) ------------------------------ */

static void tunnel_touch(tunnel_t *t, uint64_t now)
{
    t->last_active = now;
}

static void backend_error(tunnel_t *t, int err)
{
    count_drop(t, DROP_BACKEND_ERROR, 1);
    if (++t->backend_errors >= BACKEND_ERRORS_MAX) {
        log_limited(&env_of(t)->logs->tunnel, compat_mono_ns(), LOG_WARN,
                    "tunnel %s/%d: backend %s unreachable: %s", t->host->peer, t->stream_id,
                    t->backend, strerror(err));
        tunnel_close(t, CLOSE_BACKEND_UNREACHABLE, "backend unreachable", 0);
    }
}

/* SO_RXQ_OVFL: the kernel reports, with each datagram, how many it has
 * dropped on this socket so far because the receive buffer was full. */
static void count_rxq_overflow(tunnel_t *t, struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SO_RXQ_OVFL)
            continue;
        uint32_t total;
        memcpy(&total, CMSG_DATA(cm), sizeof total);
        if (total != t->rxq_dropped) {
            count_drop(t, DROP_BACKEND_RXQ, (uint32_t)(total - t->rxq_dropped));
            t->rxq_dropped = total;
        }
    }
}

static void udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tunnel_t *t = container_of(w, tunnel_t, udp_io);
    uint8_t *buf = env_of(t)->udp_buf;
    uint64_t now = compat_mono_ns();
    int got = 0;
    for (int i = 0; i < UDP_READS_PER_EVENT && t->state == TUNNEL_OPEN; i++) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(uint32_t))];
        } ctl;
        struct iovec iov = {buf, TUNNEL_UDP_BUF};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                            .msg_controllen = sizeof ctl.buf};
        ssize_t r = recvmsg(t->fd, &mh, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            backend_error(t, errno);
            continue;
        }
        count_rxq_overflow(t, &mh);
        got = 1;
        t->backend_errors = 0;
        if (classify_packet(buf, (size_t)r) == PKT_SIGNAL) {
            t->counters.down_signal_packets++;
            env_of(t)->counters->tunnel.down_signal_packets++;
        }
        sendq_push(&t->down, buf, (size_t)r, now); /* drops are counted by the hook */
    }
    if (got) {
        tunnel_touch(t, now);
        down_queued(t, now);
        tunnel_wake(t);
    }
}

static void to_backend(tunnel_t *t, const uint8_t *p, size_t len, int is_signal)
{
    for (;;) {
        if (send(t->fd, p, len, 0) >= 0) {
            server_counters_t *sc = env_of(t)->counters;
            t->counters.up_packets++;
            t->counters.up_bytes += len;
            t->counters.up_signal_packets += (unsigned)is_signal;
            sc->tunnel.up_packets++;
            sc->tunnel.up_bytes += len;
            sc->tunnel.up_signal_packets += (unsigned)is_signal;
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

static void backend_close(tunnel_t *t)
{
    if (t->fd >= 0) {
        ev_io_stop(env_of(t)->loop, &t->udp_io);
        close(t->fd);
        t->fd = -1;
    }
}

/* The backend's address for one pick from the pool: round-robin, fixed for
 * the tunnel's life; "builtin:echo" maps to where the echo is bound. */
static const struct sockaddr *backend_pick(tunnel_env_t *env, const cfg_pool_t *pool,
                                           socklen_t *len)
{
    const cfg_addr_t *a = &pool->addrs[env->rr++ % pool->n];
    if (a->builtin_echo) {
        *len = env->echo_len;
        return env->echo;
    }
    *len = a->len;
    return (const struct sockaddr *)&a->sa;
}

/* Opens a connected UDP socket to one backend of the pool, its receive buffer
 * sized to hold what the downlink queues can, and kernel drops reported.
 * Returns 0 or -1 (errno). */
static int backend_open(tunnel_t *t, const cfg_pool_t *pool)
{
    tunnel_env_t *env = env_of(t);
    socklen_t len;
    const struct sockaddr *sa = backend_pick(env, pool, &len);
    if (!sa) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    const cfg_limits_t *lim = limits_of(t);
    int one = 1;
    int rcvbuf = (int)(lim->media_queue_bytes + lim->signal_queue_bytes);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    if (connect(fd, sa, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    config_addr_str(sa, t->backend, sizeof t->backend);
    t->fd = fd;
    ev_io_init(&t->udp_io, udp_cb, fd, EV_READ);
    ev_io_start(env->loop, &t->udp_io);
    return 0;
}

/* ---- request and response ------------------------------------------------- */

static int reject(tunnel_t *t, int status, const char *reason)
{
    int idx = request_status_index(status);
    if (idx >= 0)
        env_of(t)->counters->requests_rejected[idx]++;
    log_limited(&env_of(t)->logs->refused, compat_mono_ns(), LOG_INFO, "conn %s stream %d: %d %s",
                t->host->peer, t->stream_id, status, reason);
    t->state = TUNNEL_REJECTED;
    t->reason = reason;
    t->reason_off = 0;
    t->host->ops->refused(t, status);
    return t->host->ops->respond(t, status);
}

/* Monotonic deadline for a wall-clock expiry (unix seconds). */
static uint64_t expiry_deadline(uint64_t expiry, uint64_t wall_now, uint64_t mono_now)
{
    uint64_t left = expiry > wall_now ? expiry - wall_now : 0;
    if (left > UINT64_MAX / 1000000000u - mono_now / 1000000000u - 1)
        return UINT64_MAX;
    return mono_now + left * 1000000000u;
}

int tunnel_start(tunnel_t *t)
{
    if (t->state != TUNNEL_REQUEST)
        return 0;
    tunnel_env_t *env = env_of(t);
    req_headers_t *req = t->req;
    t->req = NULL;
    int status;
    const char *reason;
    req_target_t target;
    uint64_t wall_now = (uint64_t)time(NULL);
    if (t->host->refusing) {
        status = 503;
        reason = "gateway shutting down";
    } else {
        status = request_route(t->host->cfg, req, wall_now, &target, &reason);
    }
    free(req);
    if (status != 200)
        return reject(t, status, reason);

    const cfg_limits_t *lim = limits_of(t);
    if (env->counters->tunnels_active >= lim->max_tunnels)
        return reject(t, 503, "gateway at its tunnel capacity; try another");
    t->reader_buf = malloc(lim->max_capsule + CAPSULE_MAX_HEADER);
    if (!t->reader_buf)
        return reject(t, 503, "gateway out of memory");
    if (backend_open(t, &target.region->pools[target.kind]) < 0) {
        log_limited(&env_of(t)->logs->refused, compat_mono_ns(), LOG_WARN,
                    "conn %s stream %d: backend socket: %s", t->host->peer, t->stream_id,
                    strerror(errno));
        return reject(t, 503, "backend unavailable");
    }
    capsule_reader_init(&t->reader, t->reader_buf, lim->max_capsule + CAPSULE_MAX_HEADER,
                        lim->max_capsule);
    /* A DATAGRAM value is the context id and the payload: max_capsule - 1. */
    sendq_init(&t->down, lim->media_queue_bytes, lim->signal_queue_bytes, lim->max_capsule - 1,
               (uint64_t)lim->media_queue_age_ms * UTIL_MS_NS, down_dropped, t);
    snprintf(t->tenant, sizeof t->tenant, "%s", target.tenant->id);
    t->kind = target.kind;
    t->state = TUNNEL_OPEN;
    uint64_t now = compat_mono_ns();
    tunnel_touch(t, now);
    t->expires = expiry_deadline(target.expiry, wall_now, now);
    ev_init(&t->timer, timer_cb);
    timer_arm_open(t);
    env->counters->tunnels_opened++;
    env->counters->tunnels_active++;
    t->host->ops->opened(t);
    log_msg(LOG_INFO, "tunnel open: conn %s stream %d tenant %s kind %s region %s backend %s",
            t->host->peer, t->stream_id, t->tenant, config_kind_name(t->kind),
            target.region->name, t->backend);
    return t->host->ops->respond(t, 200);
}

/* ---- request body (uplink) ------------------------------------------------- */

static void protocol_error(tunnel_t *t, const char *why)
{
    env_of(t)->counters->protocol_errors++;
    log_limited(&env_of(t)->logs->tunnel, compat_mono_ns(), LOG_INFO,
                "tunnel %s/%d: protocol error: %s", t->host->peer, t->stream_id, why);
    tunnel_close(t, CLOSE_PROTOCOL_ERROR, why, 1);
}

/* ---- dispatch of uplink capsules (proto/dispatch.h) ---- */

static int up_packet(void *ud, const uint8_t *p, size_t len, int is_signal)
{
    tunnel_t *t = ud;
    to_backend(t, p, len, is_signal);
    return t->state != TUNNEL_OPEN; /* the backend may have been declared unreachable */
}

static void up_ping(void *ud, const uint8_t *value)
{
    tunnel_t *t = ud;
    sendq_push_pong(&t->down, value); /* a PONG over the bound is counted by the hook */
    down_queued(t, compat_mono_ns());
    tunnel_wake(t);
}

static void up_close(void *ud, uint64_t code, const char *reason, size_t len)
{
    tunnel_t *t = ud;
    if (log_limit_take(&env_of(t)->logs->tunnel, compat_mono_ns(), LOG_INFO)) {
        char text[TEXT_ESCAPE_CAP(CLOSE_REASON_LOGGED)];
        text_escape(text, sizeof text, reason, len);
        log_msg(LOG_INFO, "tunnel %s/%d: client CLOSE %s: %s", t->host->peer, t->stream_id,
                capsule_close_name(code), text);
    }
    tunnel_close(t, CLOSE_NORMAL, "", 0);
}

static void up_skip(void *ud, enum dispatch_skip why)
{
    tunnel_t *t = ud;
    if (why == DISPATCH_SKIP_CONTEXT_ID) {
        count_drop(t, DROP_CONTEXT_ID, 1);
    } else {
        t->counters.unknown_capsules++;
        env_of(t)->counters->tunnel.unknown_capsules++;
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
    tunnel_touch(t, compat_mono_ns());
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
    /* The client has close_linger_ms to take the CLOSE and end its side. */
    timer_arm(t, compat_mono_ns() + (uint64_t)limits_of(t)->close_linger_ms * UTIL_MS_NS);
    tunnel_wake(t);
}

void tunnel_free(tunnel_t *t)
{
    tunnel_host_t *host = t->host;
    tunnel_env_t *env = host->env;
    int was_open = t->state == TUNNEL_OPEN || t->state == TUNNEL_CLOSING;
    if (was_open) {
        env->counters->tunnels_active--;
        sendq_discard(&t->down); /* whatever is still queued was never delivered */
        const tunnel_counters_t *k = &t->counters;
        uint64_t drops = 0;
        for (int i = 0; i < DROP_REASON_COUNT; i++)
            drops += k->drops[i];
        log_msg(LOG_INFO,
                "tunnel closed: conn %s stream %d tenant %s close %s up %llu/%llu B down "
                "%llu/%llu B drops %llu",
                host->peer, t->stream_id, t->tenant,
                t->state == TUNNEL_CLOSING ? capsule_close_name(t->close_code) : "reset",
                (unsigned long long)k->up_packets, (unsigned long long)k->up_bytes,
                (unsigned long long)k->down_packets, (unsigned long long)k->down_bytes,
                (unsigned long long)drops);
        ev_timer_stop(env->loop, &t->timer);
    }
    backend_close(t);
    sendq_dispose(&t->down);
    free(t->reader_buf);
    free(t->req);
    list_remove(&t->_link);
    host->ops->gone(t, was_open);
    free(t);
}
