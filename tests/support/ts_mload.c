/*
 * ts_mload.c — per-user UDP, TURN/UDP and TURN/TLS transports for bench_load
 * (ts_mload.h).
 */
#include "ts_mload.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ts_turn.h"
#include "ts_util.h"

#define SOCKBUF (2 << 20)
#define OUT_MAX (512u << 10)   /* TLS output queued per user (a keyframe burst fits) */
#define IN_MAX (64u << 10)     /* TLS input buffered per user */
#define DGRAM_MAX 65536u
#define RX_BATCH 256           /* datagrams or reads per readiness event */

typedef struct user {
    ts_mload_t *m;
    uint32_t idx;
    uint16_t channel;
    int fd;
    SSL *ssl;
    ev_io rio, wio;
    uint8_t *out;              /* TLS: bytes not yet taken by SSL_write */
    size_t out_len;
    uint8_t *in;               /* TLS: bytes not yet framed */
    size_t in_len;
} user_t;

struct ts_mload {
    struct ev_loop *loop;
    ts_mload_opts_t o;
    SSL_CTX *ctx;
    user_t *users;
    size_t nusers;
    uint64_t dropped, bad;
    uint8_t scratch[DGRAM_MAX];
};

static void deliver(ts_mload_t *m, user_t *u, const uint8_t *p, size_t len)
{
    if (m->o.kind == TS_MLOAD_UDP) {
        m->o.rx(m->o.ud, u->idx, p, len);
        return;
    }
    /* ChannelData on this user's channel (RFC 8656 §12.4); anything else (a
     * STUN message: a refresh answer, an indication) is not media. */
    if (len < TS_TURN_CD_HEADER || (p[0] & 0xC0) != 0x40) {
        m->bad++;
        return;
    }
    size_t body = (size_t)p[2] << 8 | p[3];
    uint16_t ch = (uint16_t)(p[0] << 8 | p[1]);
    if (ch != u->channel || TS_TURN_CD_HEADER + body > len) {
        m->bad++;
        return;
    }
    m->o.rx(m->o.ud, u->idx, p + TS_TURN_CD_HEADER, body);
}

static void flush_tls(user_t *u)
{
    ts_mload_t *m = u->m;
    while (u->out_len > 0) {
        int n = SSL_write(u->ssl, u->out, (int)(u->out_len < 16384 ? u->out_len : 16384));
        if (n <= 0) {
            int e = SSL_get_error(u->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                ev_io_start(m->loop, &u->wio);
                return;
            }
            m->dropped += 1; /* a broken connection: what is queued is lost */
            u->out_len = 0;
            break;
        }
        memmove(u->out, u->out + n, u->out_len - (size_t)n);
        u->out_len -= (size_t)n;
    }
    ev_io_stop(m->loop, &u->wio);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    flush_tls(w->data);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    user_t *u = w->data;
    ts_mload_t *m = u->m;
    if (!u->ssl) {
        for (int i = 0; i < RX_BATCH; i++) {
            ssize_t n = recv(u->fd, m->scratch, sizeof m->scratch, MSG_DONTWAIT);
            if (n < 0)
                break;
            deliver(m, u, m->scratch, (size_t)n);
        }
        return;
    }
    for (int i = 0; i < RX_BATCH; i++) {
        int n = SSL_read(u->ssl, u->in + u->in_len, (int)(IN_MAX - u->in_len));
        if (n <= 0)
            break;
        u->in_len += (size_t)n;
        size_t at = 0;
        for (;;) {
            size_t f = ts_turn_frame_len(u->in + at, u->in_len - at, 1);
            if (f == 0 || at + f > u->in_len)
                break;
            deliver(m, u, u->in + at, f);
            at += f;
        }
        memmove(u->in, u->in + at, u->in_len - at);
        u->in_len -= at;
        if (u->in_len == IN_MAX) { /* a frame larger than the buffer: not ours */
            m->bad++;
            u->in_len = 0;
        }
    }
    if (u->out_len)
        flush_tls(u); /* a write that wanted a read */
}

int ts_mload_send(ts_mload_t *m, uint32_t user, const uint8_t *p, size_t len)
{
    user_t *u = &m->users[user];
    if (m->o.kind == TS_MLOAD_UDP) {
        if (send(u->fd, p, len, MSG_DONTWAIT) < 0) {
            m->dropped++;
            return -1;
        }
        return 0;
    }
    int stream = m->o.kind == TS_MLOAD_TURN_TLS;
    if (!stream) {
        size_t n = ts_turn_channel_data(m->scratch, sizeof m->scratch, u->channel, p, len, 0);
        if (n == 0 || send(u->fd, m->scratch, n, MSG_DONTWAIT) < 0) {
            m->dropped++;
            return -1;
        }
        return 0;
    }
    size_t n = ts_turn_channel_data(u->out + u->out_len, OUT_MAX - u->out_len, u->channel, p,
                                    len, 1);
    if (n == 0) {
        m->dropped++;
        return -1;
    }
    u->out_len += n;
    if (!ev_is_active(&u->wio))
        flush_tls(u);
    return 0;
}

uint64_t ts_mload_dropped(const ts_mload_t *m)
{
    return m->dropped;
}

uint64_t ts_mload_bad(const ts_mload_t *m)
{
    return m->bad;
}

static void bufsize(int fd)
{
    int v = SOCKBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

static int set_blocking(int fd, int blocking)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
}

/* The user's transport, connected, TLS handshaken, and (TURN) allocated. */
static int user_open(ts_mload_t *m, user_t *u, int64_t deadline, char *why, size_t cap)
{
    const ts_mload_opts_t *o = &m->o;
    if (o->kind == TS_MLOAD_TURN_TLS) {
        u->fd = ts_tcp_connect(o->server, deadline);
        if (u->fd < 0) {
            snprintf(why, cap, "user %u: cannot connect: %s", u->idx, strerror(errno));
            return -1;
        }
        int one = 1;
        setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int left = ts_remaining_ms(deadline);
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        setsockopt(u->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(u->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        u->ssl = SSL_new(m->ctx);
        u->out = malloc(OUT_MAX);
        u->in = malloc(IN_MAX);
        if (!u->ssl || !u->out || !u->in || set_blocking(u->fd, 1) < 0 ||
            !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(u->ssl), "127.0.0.1") ||
            !SSL_set_fd(u->ssl, u->fd) || SSL_connect(u->ssl) != 1) {
            char e[160];
            ERR_error_string_n(ERR_get_error(), e, sizeof e);
            snprintf(why, cap, "user %u: TLS handshake failed: %s", u->idx, e);
            return -1;
        }
    } else {
        u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (u->fd < 0 || connect(u->fd, (const struct sockaddr *)&o->server->sa,
                                 o->server->len) < 0) {
            snprintf(why, cap, "user %u: cannot open a UDP socket: %s", u->idx,
                     strerror(errno));
            return -1;
        }
    }
    bufsize(u->fd);
    if (o->kind != TS_MLOAD_UDP) {
        struct sockaddr_in relayed;
        char turn_why[200];
        if (ts_turn_setup(u->fd, u->ssl, o->username, o->password,
                          (const struct sockaddr_in *)&o->peer->sa, u->channel, &relayed,
                          deadline, turn_why, sizeof turn_why) < 0) {
            snprintf(why, cap, "user %u: %s", u->idx, turn_why);
            return -1;
        }
    }
    if (u->ssl && set_blocking(u->fd, 0) < 0) {
        snprintf(why, cap, "user %u: fcntl: %s", u->idx, strerror(errno));
        return -1;
    }
    ev_io_init(&u->rio, on_readable, u->fd, EV_READ);
    ev_io_init(&u->wio, on_writable, u->fd, EV_WRITE);
    u->rio.data = u->wio.data = u;
    ev_io_start(m->loop, &u->rio);
    return 0;
}

ts_mload_t *ts_mload_open(struct ev_loop *loop, const ts_mload_opts_t *o, int64_t deadline,
                          char *why, size_t cap)
{
    if (o->users == 0 || o->users > TS_MLOAD_MAX_USERS || !o->rx ||
        o->server->sa.ss_family != AF_INET ||
        (o->kind != TS_MLOAD_UDP &&
         (!o->peer || o->peer->sa.ss_family != AF_INET || !o->username || !o->password)) ||
        (o->kind == TS_MLOAD_TURN_TLS && !o->ca_file)) {
        snprintf(why, cap, "bad ts_mload options");
        return NULL;
    }
    ts_mload_t *m = calloc(1, sizeof *m);
    if (!m || !(m->users = calloc(o->users, sizeof *m->users))) {
        free(m);
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->o = *o;
    if (o->kind == TS_MLOAD_TURN_TLS) {
        m->ctx = SSL_CTX_new(TLS_client_method());
        if (!m->ctx || SSL_CTX_load_verify_locations(m->ctx, o->ca_file, NULL) != 1) {
            snprintf(why, cap, "cannot load %s", o->ca_file);
            ts_mload_free(m);
            return NULL;
        }
        SSL_CTX_set_verify(m->ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(m->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    for (size_t i = 0; i < o->users; i++) {
        user_t *u = &m->users[i];
        *u = (user_t){.m = m, .idx = (uint32_t)i, .fd = -1,
                      .channel = (uint16_t)(TS_TURN_CHANNEL_MIN + i)};
        m->nusers++;
        if (user_open(m, u, deadline, why, cap) < 0) {
            ts_mload_free(m);
            return NULL;
        }
    }
    return m;
}

void ts_mload_free(ts_mload_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nusers; i++) {
        user_t *u = &m->users[i];
        if (u->fd >= 0) {
            ev_io_stop(m->loop, &u->rio);
            ev_io_stop(m->loop, &u->wio);
        }
        if (u->ssl) {
            SSL_shutdown(u->ssl);
            SSL_free(u->ssl);
        }
        if (u->fd >= 0)
            close(u->fd);
        free(u->out);
        free(u->in);
    }
    SSL_CTX_free(m->ctx);
    free(m->users);
    free(m);
}
