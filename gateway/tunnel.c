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
#include "backend.h"
#include "heap.h"
#include "hrw.h"
#include "log.h"
#include "session.h"
#include "util.h"

/* Fairness: a busy backend cannot starve other watchers of the loop
 * (UDP_BATCHES_PER_EVENT * TUNNEL_UDP_BATCH datagrams at most per event). */
#define UDP_BATCHES_PER_EVENT 4
/* This many ICMP errors in a row, with no reply between, closes the tunnel. */
#define BACKEND_ERRORS_MAX 8
/* Bytes of a client's CLOSE reason that reach the log (escaped). */
#define CLOSE_REASON_LOGGED 200
/* A kernel arrival stamp further back than this is a wall-clock step. */
#define ARRIVAL_AGE_MAX_NS (60ll * 1000000000ll)

static tunnel_env_t *env_of(const tunnel_t *t)
{
    return t->host->env;
}

static const cfg_limits_t *limits_of(const tunnel_t *t)
{
    return &t->host->cfg->limits;
}

/* Traffic counts three times: the tunnel's own counters (its close log), the
 * server's totals and its tenant's entry (stats.h, for /metrics). */
static void count_down(tunnel_t *t, uint64_t packets, uint64_t bytes)
{
    server_counters_t *sc = env_of(t)->counters;
    t->counters.down_packets += packets;
    t->counters.down_bytes += bytes;
    sc->tunnel.down_packets += packets;
    sc->tunnel.down_bytes += bytes;
    if (t->stats) {
        t->stats->traffic.down_packets += packets;
        t->stats->traffic.down_bytes += bytes;
    }
}

static void count_up(tunnel_t *t, size_t len, int is_signal)
{
    server_counters_t *sc = env_of(t)->counters;
    t->counters.up_packets++;
    t->counters.up_bytes += len;
    t->counters.up_signal_packets += (unsigned)is_signal;
    sc->tunnel.up_packets++;
    sc->tunnel.up_bytes += len;
    sc->tunnel.up_signal_packets += (unsigned)is_signal;
    if (t->stats) {
        t->stats->traffic.up_packets++;
        t->stats->traffic.up_bytes += len;
        t->stats->traffic.up_signal_packets += (unsigned)is_signal;
    }
}

static void count_drop(tunnel_t *t, enum drop_reason r, uint64_t n)
{
    t->counters.drops[r] += n;
    env_of(t)->counters->tunnel.drops[r] += n;
    if (t->stats)
        t->stats->traffic.drops[r] += n;
}

/* sendq's hook: a downlink packet left its queue for the stream after
 * waiting this long in the gateway. */
static void down_sent(void *ctx, uint64_t waited_ns)
{
    tunnel_t *t = ctx;
    prom_hist_observe(&env_of(t)->counters->down_residence, &counters_residence_bounds,
                      waited_ns);
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
 * already was. Only the body being read ends or restarts the wait (media that
 * expires in the queue meanwhile does not: a client that took nothing is still
 * stalled); a read that finds nothing left to send ends it, since whatever
 * was queued expired (tunnel_body_read). */
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
    } else if (!sendq_ready(&t->down, now)) {
        t->down_wait = 0; /* all sent, or what was left expired: nothing waits */
    } else if (n) {
        t->down_wait = now;
    }
    return n;
}

uint64_t tunnel_waiting_since(const tunnel_t *t)
{
    return t->down_wait;
}

size_t tunnel_release_idle(tunnel_t *t)
{
    pktq_t *qs[] = {&t->down.media, &t->down.signal};
    size_t released = 0;
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        uint8_t *p;
        size_t len;
        if (pktq_idle_span(qs[i], TUNNEL_RING_KEEP, &p, &len))
            released += heap_release_pages(p, len);
    }
    return released;
}

/* ---- timers: idle and credential expiry while open, linger while closing --- */

static void timer_arm(tunnel_t *t, uint64_t at_ns)
{
    uint64_t now = compat_mono_ns();
    t->timer.repeat = at_ns > now ? (double)(at_ns - now) / 1e9 : 0.0001;
    ev_timer_again(env_of(t)->loop, &t->timer);
}

static uint64_t idle_deadline(const tunnel_t *t)
{
    return t->last_active + (uint64_t)config_idle_ms(limits_of(t), t->kind) * UTIL_MS_NS;
}

/* While open: the earliest of the idle deadline, the credential's expiry and
 * the next PING capsule; while parked: the end of the grace period. */
static void timer_arm_open(tunnel_t *t)
{
    if (t->host->parking) {
        timer_arm(t, t->park_until);
        return;
    }
    uint64_t at = idle_deadline(t);
    if (t->expires < at)
        at = t->expires;
    if (t->ping_at && t->ping_at < at)
        at = t->ping_at;
    timer_arm(t, at);
}

/* A PING capsule whose value is its send time: the PONG gives the RTT with
 * no state but the time of the latest PING (a PONG for an older one is
 * ignored). It keeps proxies that cut silent connections from cutting this
 * one; it is not activity for the idle limit. */
static void ping_send(tunnel_t *t, uint64_t now)
{
    uint8_t v[8];
    for (int i = 0; i < 8; i++)
        v[i] = (uint8_t)(now >> (56 - 8 * i));
    if (sendq_push_ping(&t->down, v) == SENDQ_OK) {
        t->ping_sent = now;
        t->counters.pings_sent++;
        env_of(t)->counters->tunnel.pings_sent++;
        down_queued(t, now);
        tunnel_wake(t);
    }
    t->ping_at = now + (uint64_t)limits_of(t)->capsule_ping_ms * UTIL_MS_NS;
}

static void ping_start(tunnel_t *t, uint64_t now)
{
    uint32_t every = limits_of(t)->capsule_ping_ms;
    t->ping_at = every ? now + (uint64_t)every * UTIL_MS_NS : 0;
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
    if (t->host->parking) {
        if (now < t->park_until) {
            timer_arm_open(t);
            return;
        }
        env_of(t)->counters->sessions_expired++;
        log_limited(&env_of(t)->logs->tunnel, now, LOG_INFO,
                    "tunnel parked: tenant %s backend %s not resumed within %u ms; closed",
                    t->tenant, t->backend, limits_of(t)->resume_grace_ms);
        ev_timer_stop(loop, w);
        t->host->ops->reset(t, 0); /* frees t */
        return;
    }
    if (now >= t->expires) {
        /* The client resumes with a fresh credential and keeps the flow. */
        if (t->session)
            session_park(t->session);
        tunnel_close(t, CLOSE_CREDENTIAL_EXPIRED, "credential expired", 0);
    } else if (now >= idle_deadline(t)) {
        tunnel_close(t, CLOSE_IDLE_TIMEOUT, "idle timeout", 0);
    } else {
        if (t->ping_at && now >= t->ping_at)
            ping_send(t, now);
        timer_arm_open(t);
    }
}

/* ---- backend socket (downlink in, uplink out) ------------------------------ */

static void tunnel_touch(tunnel_t *t, uint64_t now)
{
    t->last_active = now;
}

static void backend_error(tunnel_t *t, int err)
{
    count_drop(t, DROP_BACKEND_ERROR, 1);
    /* ICMP: nothing listens there; new tunnels go elsewhere (backend.h). */
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (env_of(t)->backends && (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH) &&
        getpeername(t->fd, (struct sockaddr *)&peer, &plen) == 0)
        backend_report_error(env_of(t)->backends, (struct sockaddr *)&peer, plen, err);
    if (++t->backend_errors >= BACKEND_ERRORS_MAX) {
        log_limited(&env_of(t)->logs->tunnel, compat_mono_ns(), LOG_WARN,
                    "tunnel %s/%d: backend %s unreachable: %s", t->host->peer, t->stream_id,
                    t->backend, strerror(err));
        tunnel_close(t, CLOSE_BACKEND_UNREACHABLE, "backend unreachable", 0);
    }
}

/* What the kernel says with each datagram: SO_RXQ_OVFL, how many it has
 * dropped on this socket so far because the receive buffer was full (counted
 * here), and SO_TIMESTAMPNS, when the datagram arrived. Returns the arrival
 * on the monotonic clock, given now on both clocks; now when unknown (no
 * stamp, or one a wall-clock step has made meaningless). */
static uint64_t read_cmsgs(tunnel_t *t, struct msghdr *mh, uint64_t now, int64_t now_real)
{
    uint64_t arrived = now;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET)
            continue;
        if (cm->cmsg_type == SO_RXQ_OVFL) {
            uint32_t total;
            memcpy(&total, CMSG_DATA(cm), sizeof total);
            if (total != t->rxq_dropped) {
                count_drop(t, DROP_BACKEND_RXQ, (uint32_t)(total - t->rxq_dropped));
                t->rxq_dropped = total;
            }
        } else if (cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            int64_t age = now_real - ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
            if (age > 0 && age <= ARRIVAL_AGE_MAX_NS && (uint64_t)age < now)
                arrived = now - (uint64_t)age;
        }
    }
    return arrived;
}

/* The tenant's limits (ratelimit.h): returns 1 when the packet is dropped
 * (and counted). */
static int rate_drop(tunnel_t *t, enum ratelimit_dir dir, size_t len, int is_signal, uint64_t now)
{
    static const enum drop_reason map[] = {
        [RATELIMIT_DROP_TUNNEL] = DROP_RATE_TUNNEL,
        [RATELIMIT_DROP_TENANT] = DROP_RATE_TENANT,
        [RATELIMIT_DROP_SIGNAL] = DROP_RATE_SIGNAL,
    };
    enum ratelimit_verdict v = ratelimit_pass(&t->rl, dir, len, is_signal, now);
    if (v == RATELIMIT_PASS)
        return 0;
    count_drop(t, map[v], 1);
    return 1;
}

/* One backend datagram, as udp_cb takes it from the socket; it arrived in
 * the kernel at arrived: its age in the queue counts from there, so a
 * datagram that waited in the socket while the loop was busy expires as
 * soon as one that waited in the queue. */
static void udp_datagram(tunnel_t *t, const uint8_t *p, size_t len, uint64_t now,
                         uint64_t arrived)
{
    int is_signal = classify_packet(p, len) == PKT_SIGNAL;
    if (is_signal) {
        t->counters.down_signal_packets++;
        env_of(t)->counters->tunnel.down_signal_packets++;
    }
    if (rate_drop(t, RATELIMIT_DOWN, len, is_signal, now))
        return;
    sendq_push(&t->down, p, len, arrived); /* drops are counted by the hook */
}

/* Takes up to TUNNEL_UDP_BATCH datagrams per recvmmsg. A short batch means
 * the socket was empty: no further call just to hear EAGAIN (the watcher is
 * level-triggered and fires again for anything that arrives later). */
static void udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tunnel_t *t = container_of(w, tunnel_t, udp_io);
    uint8_t *area = env_of(t)->udp_buf;
    uint64_t now = compat_mono_ns();
    int64_t now_real = compat_real_ns();
    int got = 0;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(struct timespec))];
    } ctl[TUNNEL_UDP_BATCH];
    struct iovec iov[TUNNEL_UDP_BATCH];
    struct mmsghdr mm[TUNNEL_UDP_BATCH];
    for (int i = 0; i < UDP_BATCHES_PER_EVENT && t->state == TUNNEL_OPEN; i++) {
        for (unsigned k = 0; k < TUNNEL_UDP_BATCH; k++) {
            iov[k] = (struct iovec){area + (size_t)k * TUNNEL_UDP_BUF, TUNNEL_UDP_BUF};
            mm[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1,
                                                 .msg_control = ctl[k].buf,
                                                 .msg_controllen = sizeof ctl[k].buf}};
        }
        int n = recvmmsg(t->fd, mm, TUNNEL_UDP_BATCH, 0, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            backend_error(t, errno); /* an ICMP error, reported once per call */
            continue;
        }
        for (int k = 0; k < n && t->state == TUNNEL_OPEN; k++) {
            uint64_t arrived = read_cmsgs(t, &mm[k].msg_hdr, now, now_real);
            udp_datagram(t, iov[k].iov_base, mm[k].msg_len, now, arrived);
        }
        if (n > 0) {
            got = 1;
            t->backend_errors = 0;
        }
        if ((unsigned)n < TUNNEL_UDP_BATCH)
            break;
    }
    if (got) {
        tunnel_touch(t, now);
        down_queued(t, now);
        tunnel_wake(t);
    }
}

/* What happens to an uplink packet the socket refused (errno err). */
static void uplink_refused(tunnel_t *t, int err)
{
    if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH)
        backend_error(t, err);
    else
        count_drop(t, DROP_UPLINK_SEND, 1); /* EAGAIN, ENOBUFS: a full socket drops */
}

void tunnel_uplink_flush(tunnel_env_t *env)
{
    tunnel_upbatch_t *b = &env->up;
    tunnel_t *t = b->t;
    if (!t)
        return;
    unsigned n = b->n;
    b->t = NULL; /* backend_error may close t, whose backend_close flushes */
    b->n = 0;
    b->used = 0;
    struct iovec iov[TUNNEL_UP_BATCH];
    struct mmsghdr mm[TUNNEL_UP_BATCH];
    size_t off = 0;
    for (unsigned k = 0; k < n; k++) {
        iov[k] = (struct iovec){b->area + off, b->len[k]};
        mm[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1}};
        off += b->len[k];
    }
    unsigned i = 0;
    while (i < n) {
        if (t->fd < 0 || t->state != TUNNEL_OPEN) { /* closed by an error just now */
            count_drop(t, DROP_UPLINK_SEND, n - i);
            return;
        }
        int r = sendmmsg(t->fd, mm + i, n - i, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            uplink_refused(t, errno); /* the first packet not sent */
            i++;
            continue;
        }
        for (int k = 0; k < r; k++, i++)
            count_up(t, b->len[i], b->signal[i]);
    }
}

/* Copies the packet into the loop's uplink batch; packets of another tunnel,
 * a full batch or the end of the read send it (tunnel_uplink_flush). */
static void to_backend(tunnel_t *t, const uint8_t *p, size_t len, int is_signal)
{
    tunnel_upbatch_t *b = &env_of(t)->up;
    if (b->t != t || b->n == TUNNEL_UP_BATCH || b->used + len > sizeof b->area)
        tunnel_uplink_flush(env_of(t));
    if (len > sizeof b->area) { /* larger than any UDP payload: the kernel refuses it */
        count_drop(t, DROP_UPLINK_SEND, 1);
        return;
    }
    memcpy(b->area + b->used, p, len);
    b->used += len;
    b->len[b->n] = len;
    b->signal[b->n] = (uint8_t)is_signal;
    b->n++;
    b->t = t;
}

/* Closes the flow's socket; a session naming this flow ends with it. */
static void backend_close(tunnel_t *t)
{
    if (env_of(t)->up.t == t) /* what the client sent before this goes out first */
        tunnel_uplink_flush(env_of(t));
    if (t->fd >= 0) {
        ev_io_stop(env_of(t)->loop, &t->udp_io);
        close(t->fd);
        t->fd = -1;
        if (t->session) {
            session_end(t->session);
            t->session = NULL;
        }
    }
}

/* The backend's address for one pick from the pool, fixed for the flow's
 * life: rendezvous hashing over the pool's healthy members keyed by key
 * (backend.h); round-robin when there is no backend table (test harnesses).
 * "builtin:echo" maps to where the echo is bound. NULL: none is healthy. */
static const struct sockaddr *backend_pick(tunnel_env_t *env, const cfg_pool_t *pool,
                                           uint64_t key, socklen_t *len)
{
    if (env->backends) {
        const backend_t *b = backend_select(env->backends, pool, key);
        if (!b)
            return NULL;
        *len = b->len;
        return (const struct sockaddr *)&b->sa;
    }
    const cfg_addr_t *a = &pool->addrs[env->rr++ % pool->n];
    if (a->builtin_echo) {
        *len = env->echo_len;
        return env->echo;
    }
    *len = a->len;
    return (const struct sockaddr *)&a->sa;
}

/* Opens a connected UDP socket to one backend of the pool (backend_pick), its
 * receive buffer sized to hold what the downlink queues can, and kernel drops
 * reported. Returns 0 or -1 (errno; EHOSTDOWN: no healthy backend). */
static int backend_open(tunnel_t *t, const cfg_pool_t *pool, uint64_t key)
{
    tunnel_env_t *env = env_of(t);
    socklen_t len;
    if (!pool->n) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    const struct sockaddr *sa = backend_pick(env, pool, key, &len);
    if (!sa) {
        errno = env->backends ? EHOSTDOWN : EADDRNOTAVAIL;
        return -1;
    }
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    const cfg_limits_t *lim = limits_of(t);
    int one = 1;
    /* The kernel charges a datagram's truesize, about twice the payload for
     * 1,200 B on loopback: twice the queues' bytes lets a burst the queues
     * can hold wait in the socket while the loop is busy (Linux caps it at
     * net.core.rmem_max, docs/configuration.md). */
    int rcvbuf = (int)(2 * (lim->media_queue_bytes + lim->signal_queue_bytes));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
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

/* tunnel.close (the flow ended: its whole story) or tunnel.detach (the
 * stream went, the flow lives on in another tunnel: parked or resumed). */
static void log_closed(tunnel_t *t)
{
    log_line_t l;
    if (!log_limit_take(&t->host->flow_log, compat_mono_ns(), LOG_INFO) ||
        !log_begin(&l, LOG_INFO, t->handed_over ? "tunnel.detach" : "tunnel.close"))
        return;
    const tunnel_counters_t *k = &t->counters;
    log_str(&l, "conn", t->host->peer);
    log_i64(&l, "stream", t->stream_id);
    log_str(&l, "tenant", t->tenant);
    log_str(&l, "kind", config_kind_name(t->kind));
    log_str(&l, "backend", t->backend);
    log_str(&l, "close", t->state == TUNNEL_CLOSING ? capsule_close_name(t->close_code) : "none");
    if (!t->handed_over) {
        log_u64(&l, "duration_ms", (compat_mono_ns() - t->opened_at) / UTIL_MS_NS);
        log_u64(&l, "up_packets", k->up_packets);
        log_u64(&l, "up_bytes", k->up_bytes);
        log_u64(&l, "down_packets", k->down_packets);
        log_u64(&l, "down_bytes", k->down_bytes);
        for (int i = 0; i < DROP_REASON_COUNT; i++) {
            if (!k->drops[i])
                continue;
            char key[40];
            snprintf(key, sizeof key, "drops_%s", drop_reason_name((enum drop_reason)i));
            log_u64(&l, key, k->drops[i]);
        }
        log_u64(&l, "rtt_us", k->rtt_last_us);
        log_u64(&l, "rtt_min_us", k->rtt_min_us);
    }
    log_end(&l);
}

/* The tenant a request path names, for the log only (it may not exist):
 * the segment after /v1/tunnel/, at most 64 bytes. */
static size_t path_tenant(const char *path, const char **tenant)
{
    static const char prefix[] = "/v1/tunnel/";
    *tenant = "";
    if (!path || strncmp(path, prefix, sizeof prefix - 1) != 0)
        return 0;
    *tenant = path + sizeof prefix - 1;
    size_t n = strcspn(*tenant, "/?");
    return n > 64 ? 64 : n;
}

/* Answers status with reason as the body. The line (rate-limited: a client
 * can repeat it at will) is request.refused, or auth.fail for a 401 with its
 * cause and the tenant the path named; never the credential. */
static int reject_as(tunnel_t *t, int status, const char *reason, enum auth_fail auth,
                     const char *path)
{
    int idx = request_status_index(status);
    if (idx >= 0)
        env_of(t)->counters->requests_rejected[idx]++;
    log_line_t l;
    if (log_limit_take(&env_of(t)->logs->refused, compat_mono_ns(), LOG_INFO) &&
        log_begin(&l, LOG_INFO, auth != AUTH_FAIL_NONE ? "auth.fail" : "request.refused")) {
        const char *tenant;
        size_t tlen = path_tenant(path, &tenant);
        log_str(&l, "conn", t->host->peer);
        log_i64(&l, "stream", t->stream_id);
        log_i64(&l, "status", status);
        if (auth != AUTH_FAIL_NONE)
            log_str(&l, "auth", auth_fail_name(auth));
        if (tlen)
            log_strn(&l, "tenant", tenant, tlen);
        log_str(&l, "reason", reason);
        log_end(&l);
    }
    t->state = TUNNEL_REJECTED;
    t->reason = reason;
    t->reason_off = 0;
    t->host->ops->refused(t, status);
    return t->host->ops->respond(t, status);
}

static int reject(tunnel_t *t, int status, const char *reason)
{
    return reject_as(t, status, reason, AUTH_FAIL_NONE, NULL);
}

/* Monotonic deadline for a wall-clock expiry (unix seconds). */
static uint64_t expiry_deadline(uint64_t expiry, uint64_t wall_now, uint64_t mono_now)
{
    uint64_t left = expiry > wall_now ? expiry - wall_now : 0;
    if (left > UINT64_MAX / 1000000000u - mono_now / 1000000000u - 1)
        return UINT64_MAX;
    return mono_now + left * 1000000000u;
}

/* A resume request: take the session's flow, from its parking host or from
 * the stream it is attached to (which gets CLOSE(taken over)). */
static void resume_flow(tunnel_t *t, session_t *s)
{
    tunnel_t *old = s->t;
    int parked = session_parked(s);
    tunnel_take_flow(t, old, 0);
    if (parked) {
        env_of(t)->counters->sessions_resumed++;
        tunnel_free(old); /* no socket and nothing queued any more */
    } else {
        env_of(t)->counters->sessions_taken_over++;
        tunnel_close(old, CLOSE_TAKEN_OVER, "taken over", 0);
    }
}

/* A new flow: a socket to one backend of the target's pool, and a session
 * for it when resume is on. Returns 0, or -1 after answering 503, with what
 * reject() returned in *rc. */
static int open_flow(tunnel_t *t, const req_target_t *target, int *rc)
{
    const cfg_limits_t *lim = limits_of(t);
    tunnel_env_t *env = env_of(t);
    /* The session comes first: its token is the key that picks the backend
     * (backend.h), so the choice is stable per session. */
    session_table_t *st = env->sessions;
    session_t *s = st && lim->resume_grace_ms ? session_new(st, t, target) : NULL;
    uint64_t key = s ? hrw_hash(s->token, sizeof s->token) : hrw_hash(&env->rr, sizeof env->rr);
    env->rr++;
    if (backend_open(t, &target->region->pools[target->kind], key) < 0) {
        int e = errno;
        if (s) {
            session_end(s); /* no flow: nothing to resume */
            t->session = NULL;
        }
        log_limited(&env->logs->refused, compat_mono_ns(), LOG_WARN,
                    "conn %s stream %d: backend socket: %s", t->host->peer, t->stream_id,
                    e == EHOSTDOWN ? "no healthy backend in the pool" : strerror(e));
        /* EMFILE / ENFILE: our own limit, not the backend's fault; say so. */
        *rc = reject(t, 503, e == EHOSTDOWN                 ? "no healthy backend"
                             : e == EMFILE || e == ENFILE ? "gateway out of file descriptors"
                                                          : "backend unavailable");
        return -1;
    }
    /* A DATAGRAM value is the context id and the payload: max_capsule - 1. */
    sendq_init(&t->down, lim->media_queue_bytes, lim->signal_queue_bytes, lim->max_capsule - 1,
               (uint64_t)cfg_media_leg_ms(lim) * UTIL_MS_NS, down_dropped, t);
    t->down.on_sent = down_sent;
    snprintf(t->tenant, sizeof t->tenant, "%s", target->tenant->id);
    t->kind = target->kind;
    t->opened_at = compat_mono_ns();
    t->state = TUNNEL_OPEN;
    tunnel_touch(t, compat_mono_ns());
    if ((t->stats = stats_hold(env->stats, t->tenant, t->kind)) != NULL) {
        t->stats->opened++;
        t->stats->by_fallback[target->fallback]++;
        t->stats->by_route[target->route]++;
    }
    env_of(t)->counters->tunnels_opened++;
    env_of(t)->counters->tunnels_active++;
    ev_init(&t->timer, timer_cb);
    return 0; /* without a session, the tunnel simply cannot be resumed */
}

/* The common end of a new and a resumed tunnel: its reader, expiry, PING
 * and timers, the log line and the 200. */
static int open_finish(tunnel_t *t, int resumed, uint64_t expiry, uint64_t wall_now,
                       const char *region)
{
    capsule_reader_init(&t->reader, NULL, 0, limits_of(t)->max_capsule); /* a buffer per chunk */
    uint64_t now = compat_mono_ns();
    /* A resume brings a fresh credential: its expiry is the one that counts. */
    t->expires = expiry_deadline(expiry, wall_now, now);
    ping_start(t, now);
    timer_arm_open(t);
    t->host->ops->opened(t);
    log_line_t l;
    if (log_limit_take(&t->host->flow_log, now, LOG_INFO) &&
        log_begin(&l, LOG_INFO, resumed ? "tunnel.resume" : "tunnel.open")) {
        log_str(&l, "conn", t->host->peer);
        log_i64(&l, "stream", t->stream_id);
        log_str(&l, "tenant", t->tenant);
        log_str(&l, "kind", config_kind_name(t->kind));
        log_str(&l, "region", region);
        log_str(&l, "backend", t->backend);
        log_end(&l);
    }
    return t->host->ops->respond(t, 200);
}

int tunnel_start(tunnel_t *t)
{
    if (t->state != TUNNEL_REQUEST)
        return 0;
    tunnel_env_t *env = env_of(t);
    req_headers_t *req = t->req;
    t->req = NULL;
    int status, rc;
    const char *reason;
    req_target_t target;
    enum auth_fail auth = AUTH_FAIL_NONE;
    uint64_t wall_now = (uint64_t)time(NULL);
    if (t->host->refusing) {
        status = 503;
        reason = "gateway shutting down";
    } else {
        status = request_route(env->cfg ? env->cfg : t->host->cfg, req, wall_now, &target,
                               &reason, &auth);
    }
    if (status != 200) {
        if (auth != AUTH_FAIL_NONE)
            env->counters->auth_failures[auth]++;
        rc = reject_as(t, status, reason, auth, req->path);
        free(req);
        return rc;
    }

    const cfg_limits_t *lim = limits_of(t);
    session_t *s = NULL;
    t->stamps = target.stamps != 0; /* this stream's: a resume asks afresh */
    if (target.resume) {
        /* One answer for unknown, expired and foreign tokens: no oracle. */
        s = env->sessions && lim->resume_grace_ms ? session_find(env->sessions, &target) : NULL;
        /* Held by another worker of this process: t waits for the flow
         * (tunnel_resume_adopt answers it). */
        if (!s && env->sessions && lim->resume_grace_ms &&
            session_fetch(env->sessions, t, &target, target.expiry) == 0) {
            free(req);
            return 0;
        }
        if (!s) {
            /* Issue 8 §4: another node's session; tell the client where. */
            const char *node = env->sessions
                                   ? session_redirect(env->sessions,
                                                      env->cfg ? env->cfg : t->host->cfg, &target)
                                   : NULL;
            free(req);
            if (node) {
                t->redirect = node; /* read by respond, within reject */
                rc = reject(t, 421, "session held by another node");
                t->redirect = NULL;
                return rc;
            }
            return reject(t, 410, "session unknown or expired");
        }
    } else if (env->counters->tunnels_active >= tunnel_env_share(env, lim->max_tunnels)) {
        /* Parked tunnels count: each holds a socket. A resume adds none. */
        free(req);
        return reject(t, 503, "gateway at its tunnel capacity; try another");
    } else {
        /* Issue 7 §3: the tenant's caps. A resume is the same tunnel: its
         * flow keeps the hold it has. */
        rc = ratelimit_admit(&env->rl, target.tenant, target.user, target.user_len, &t->rl,
                             compat_mono_ns(), &reason);
        if (rc != RATELIMIT_OK) {
            free(req);
            if (rc == RATELIMIT_ERR_NOMEM)
                return reject(t, 503, "gateway out of memory");
            snprintf(t->retry_after, sizeof t->retry_after, "%llu",
                     (unsigned long long)target.tenant->limits.retry_after_s);
            return reject(t, 429, reason);
        }
    }
    if (s) {
        resume_flow(t, s);
    } else if (open_flow(t, &target, &rc) < 0) {
        ratelimit_release(&t->rl);
        free(req);
        return rc;
    }
    free(req);
    return open_finish(t, s != NULL, target.expiry, wall_now, target.region->name);
}

void tunnel_resume_adopt(tunnel_t *t, tunnel_t *parcel, uint64_t expiry, int taken_over,
                         const char *node)
{
    t->handoff = NULL;
    int rc;
    if (!parcel && node) {
        t->redirect = node; /* read by respond, within reject */
        rc = reject(t, 421, "session held by another node");
        t->redirect = NULL;
    } else if (!parcel) {
        rc = reject(t, 410, "session unknown or expired");
    } else {
        tunnel_take_flow(t, parcel, 0);
        if (taken_over)
            env_of(t)->counters->sessions_taken_over++;
        else
            env_of(t)->counters->sessions_resumed++;
        tunnel_free(parcel); /* no socket and nothing queued any more */
        char region[sizeof t->session->region];
        snprintf(region, sizeof region, "%s", t->session ? t->session->region : "");
        rc = open_finish(t, 1, expiry, (uint64_t)time(NULL), region);
    }
    if (rc < 0) /* the host's own error: its connection ends it */
        log_msg(LOG_WARN, "conn %s stream %d: resume answer: %d", t->host->peer, t->stream_id, rc);
    t->host->ops->wake(t); /* not within the transport's callbacks: it must flush */
}

void tunnel_take_flow(tunnel_t *t, tunnel_t *from, uint64_t park_until)
{
    tunnel_env_t *env = env_of(t);
    if (env->up.t == from) /* the socket changes hands: its packets go first */
        tunnel_uplink_flush(env);
    free(t->req);
    t->req = NULL;
    sendq_init(&t->down, 0, 0, from->down.max_payload, from->down.media_max_age_ns, down_dropped,
               t);
    t->down.on_sent = down_sent;
    sendq_take_queues(&t->down, &from->down);
    if (from->fd >= 0)
        ev_io_stop(env->loop, &from->udp_io);
    t->fd = from->fd;
    from->fd = -1;
    if (t->fd >= 0) {
        ev_io_init(&t->udp_io, udp_cb, t->fd, EV_READ);
        ev_io_start(env->loop, &t->udp_io);
    }
    memcpy(t->tenant, from->tenant, sizeof t->tenant);
    memcpy(t->backend, from->backend, sizeof t->backend);
    t->kind = from->kind;
    t->opened_at = from->opened_at;
    t->backend_errors = from->backend_errors;
    t->rxq_dropped = from->rxq_dropped;
    t->counters = from->counters;
    memset(&from->counters, 0, sizeof from->counters);
    t->stats = from->stats;
    from->stats = NULL;
    t->expires = from->expires;
    t->last_active = from->last_active;
    t->session = from->session;
    from->session = NULL;
    ratelimit_move(&t->rl, &from->rl);
    if (t->session)
        t->session->t = t;
    from->handed_over = 1;
    t->state = TUNNEL_OPEN;
    env->counters->tunnels_active++;
    uint64_t now = compat_mono_ns();
    t->down_wait = sendq_queued(&t->down) ? now : 0;
    t->park_until = park_until;
    ev_init(&t->timer, timer_cb);
    if (park_until)
        timer_arm_open(t);
    else
        tunnel_touch(t, now); /* a new stream: the idle clock starts again */
}

const char *tunnel_session_token(const tunnel_t *t)
{
    return t->session ? t->session->text : NULL;
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

/* One uplink payload. before_ns is how long it had waited before it reached
 * our kernel, as far as its stamp tells (0 when it has none). */
static int up_payload(tunnel_t *t, const uint8_t *p, size_t len, int is_signal, uint64_t before_ns)
{
    uint64_t now = compat_mono_ns();
    tunnel_touch(t, now);
    tunnel_env_t *env = env_of(t);
    /* A late packet is worse than a lost one: media that waited longer than
     * its leg's share of the age limit goes no further; signaling always
     * does. The wait counted is the kernel's receive queue (the gateway was
     * busy) and, for stamped media, the time before it: the client's queue,
     * its TLS and kernel buffers, the path (proto/README.md §5.1.1). */
    uint64_t age = (now > env->rx_ns ? now - env->rx_ns : 0) + before_ns;
    if (!is_signal && age > (uint64_t)cfg_media_leg_ms(limits_of(t)) * UTIL_MS_NS) {
        count_drop(t, DROP_UPLINK_EXPIRED, 1);
        return t->state != TUNNEL_OPEN;
    }
    if (!rate_drop(t, RATELIMIT_UP, len, is_signal, now)) {
        to_backend(t, p, len, is_signal);
        /* From the read of the bytes that carried it to its send. */
        prom_hist_observe(&env->counters->up_residence, &counters_residence_bounds,
                          now > env->rx_ns ? now - env->rx_ns : 0);
    }
    return t->state != TUNNEL_OPEN; /* the backend may have been declared unreachable */
}

static int up_packet(void *ud, const uint8_t *p, size_t len, int is_signal)
{
    return up_payload(ud, p, len, is_signal, 0);
}

/* A stamped DATAGRAM: media whose stamp tells how long it waited before it
 * arrived, beyond the fastest this stream has been (proto/owd.h). Taken on
 * every stream, offered or not: only a client that read our acceptance
 * sends them. */
static int up_stamped(void *ud, const uint8_t *p, size_t len, uint32_t sent_us)
{
    tunnel_t *t = ud;
    return up_payload(t, p, len, 0, owd_sample(&t->owd, sent_us, env_of(t)->rx_ns));
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
    } else if (why == DISPATCH_SKIP_UNKNOWN) { /* (never muted: up_packet does not) */
        t->counters.unknown_capsules++;
        env_of(t)->counters->tunnel.unknown_capsules++;
    }
}

/* The answer to our latest PING (its value is the send time): the RTT. */
static void up_pong(void *ud, const uint8_t *value)
{
    tunnel_t *t = ud;
    uint64_t sent = 0;
    for (int i = 0; i < 8; i++)
        sent = sent << 8 | value[i];
    if (!t->ping_sent || sent != t->ping_sent)
        return; /* not ours, or an older one */
    t->ping_sent = 0;
    uint64_t rtt_ns = compat_mono_ns() - sent, rtt = rtt_ns / 1000u;
    prom_hist_observe(&env_of(t)->counters->rtt, &counters_rtt_bounds, rtt_ns);
    t->counters.pongs_received++;
    env_of(t)->counters->tunnel.pongs_received++;
    t->counters.rtt_last_us = rtt;
    if (!t->counters.rtt_min_us || rtt < t->counters.rtt_min_us)
        t->counters.rtt_min_us = rtt ? rtt : 1;
}

static const dispatch_ops_t up_ops = {
    .on_packet = up_packet,
    .on_ping = up_ping,
    .on_close = up_close,
    .on_skip = up_skip,
    .on_pong = up_pong,
    .on_stamped = up_stamped,
};

/* The capsule reader needs a max_capsule + header buffer only for a capsule
 * split across DATA chunks; whole capsules are decoded in place. So an idle
 * tunnel holds none (64 KiB each at the default max_capsule): a buffer is
 * lent from the loop's pool for each chunk and kept only while a capsule is
 * left partial, then given back. The pool keeps a few, so the lending makes
 * no allocation per packet. */
static int reader_lend(tunnel_t *t)
{
    pool_t *p = &env_of(t)->readers;
    size_t max = limits_of(t)->max_capsule;
    pool_grow(p, max + CAPSULE_MAX_HEADER);
    if (!(t->reader_buf = pool_get(p)))
        return -1;
    t->reader_cap = p->size;
    capsule_reader_init(&t->reader, t->reader_buf, t->reader_cap, max);
    return 0;
}

static void reader_return(tunnel_t *t)
{
    pool_put(&env_of(t)->readers, t->reader_buf, t->reader_cap);
    t->reader_buf = NULL;
    capsule_reader_init(&t->reader, NULL, 0, limits_of(t)->max_capsule);
}

void tunnel_recv_data(tunnel_t *t, const uint8_t *data, size_t len)
{
    if (t->state != TUNNEL_OPEN)
        return; /* rejected or closing: the rest of the body is discarded */
    if (!t->reader_buf && reader_lend(t) < 0) {
        log_limited(&env_of(t)->logs->tunnel, compat_mono_ns(), LOG_WARN,
                    "tunnel %s/%d: no memory for the capsule reader", t->host->peer,
                    t->stream_id);
        tunnel_close(t, CLOSE_INTERNAL_ERROR, "gateway out of memory", 0);
        return;
    }
    const char *err = NULL;
    int rc = dispatch_feed(&t->reader, data, len, &up_ops, t, &err);
    if (rc < 0) {
        protocol_error(t, err ? err : proto_strerror(rc));
        return; /* the reader is unusable; its buffer goes with the tunnel */
    }
    if (!capsule_reader_pending(&t->reader))
        reader_return(t);
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
    if (env_of(t)->up.t == t) { /* what the client sent before this goes out first */
        tunnel_uplink_flush(env_of(t));
        if (t->state != TUNNEL_OPEN) /* the flush found the backend unreachable */
            return;
    }
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
    if (t->host->env->up.t == t)
        tunnel_uplink_flush(t->host->env);
    session_fetch_cancel(t); /* a resume still waiting: its flow parks when it comes */
    /* The stream went away without CLOSE or END_STREAM (reset, connection
     * lost): the flow waits for a resume. */
    if (t->state == TUNNEL_OPEN && t->session && !t->host->parking)
        session_park(t->session);
    tunnel_host_t *host = t->host;
    tunnel_env_t *env = host->env;
    int was_open = t->state == TUNNEL_OPEN || t->state == TUNNEL_CLOSING;
    if (was_open) {
        env->counters->tunnels_active--;
        sendq_discard(&t->down); /* whatever is still queued was never delivered */
        log_closed(t);
        ev_timer_stop(env->loop, &t->timer);
        if (t->stats)
            t->stats->closed[t->state == TUNNEL_CLOSING ? stats_close_slot(t->close_code)
                                                        : STATS_CLOSE_RESET]++;
    }
    stats_release(t->stats);
    backend_close(t);
    ratelimit_release(&t->rl);
    sendq_dispose(&t->down);
    pool_put(&env->readers, t->reader_buf, t->reader_cap);
    free(t->req);
    list_remove(&t->_link);
    host->ops->gone(t, was_open);
    free(t);
}

void tunnel_host_done(tunnel_host_t *host)
{
    log_limit_flush(&host->flow_log, UINT64_MAX);
}
