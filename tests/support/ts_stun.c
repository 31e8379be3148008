/*
 * ts_stun.c — STUN responder and echo thread (see ts_stun.h).
 */
#include "ts_stun.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../proto/stun.h"
#include "ts_util.h"

#define BATCH 64

struct ts_stun {
    int fd;
    int stop_pipe[2];
    pthread_t thread;
    int started;
    ts_addr_t addr;
    char addr_str[64];
    pthread_mutex_t lock; /* guards the fields below */
    int muted;
    uint64_t requests, echoed, dropped;
};

/* The source as STUN's mapped address. */
static void mapped_from(const ts_addr_t *src, stun_addr_t *m)
{
    memset(m, 0, sizeof *m);
    if (src->sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)&src->sa;
        m->family = 4;
        m->port = ntohs(in->sin_port);
        memcpy(m->addr, &in->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *in6 = (const void *)&src->sa;
        m->family = 6;
        m->port = ntohs(in6->sin6_port);
        memcpy(m->addr, &in6->sin6_addr, 16);
    }
}

static void handle(ts_stun_t *s, const uint8_t *p, size_t len, const ts_addr_t *src)
{
    uint8_t txid[STUN_TXID_LEN], out[STUN_BINDING_RESPONSE_MAX];
    stun_addr_t m;
    int n, muted;

    pthread_mutex_lock(&s->lock);
    muted = s->muted;
    if (muted)
        s->dropped++;
    pthread_mutex_unlock(&s->lock);
    if (muted)
        return;
    if (stun_binding_request_decode(p, len, txid, NULL) == (int)len) {
        /* Counted before the answer goes out, so a test that got the
         * answer sees the count. */
        pthread_mutex_lock(&s->lock);
        s->requests++;
        pthread_mutex_unlock(&s->lock);
        mapped_from(src, &m);
        n = stun_binding_response_encode(txid, &m, out, sizeof out);
        if (n > 0)
            sendto(s->fd, out, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&src->sa,
                   src->len);
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->echoed++;
    pthread_mutex_unlock(&s->lock);
    sendto(s->fd, p, len, MSG_DONTWAIT, (const struct sockaddr *)&src->sa, src->len);
}

static void *stun_main(void *arg)
{
    ts_stun_t *s = arg;
    uint8_t buf[65536];
    int64_t end = ts_deadline(TS_STUN_MAX_LIFE_MS);

    for (;;) {
        int left = ts_remaining_ms(end);
        if (left == 0)
            break;
        struct pollfd pfd[2] = {
            {.fd = s->fd, .events = POLLIN},
            {.fd = s->stop_pipe[0], .events = POLLIN},
        };
        if (poll(pfd, 2, left) < 0 && errno != EINTR)
            break;
        if (pfd[1].revents)
            break;
        for (int i = 0; i < BATCH; i++) {
            ts_addr_t src;
            src.len = sizeof src.sa;
            ssize_t n = recvfrom(s->fd, buf, sizeof buf, MSG_DONTWAIT,
                                 (struct sockaddr *)&src.sa, &src.len);
            if (n < 0)
                break;
            handle(s, buf, (size_t)n, &src);
        }
    }
    return NULL;
}

ts_stun_t *ts_stun_start(int family)
{
    ts_stun_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    s->fd = ts_udp_bind(family, &s->addr);
    if (s->fd < 0 || pipe2(s->stop_pipe, O_CLOEXEC) < 0)
        goto err;
    ts_addr_str(&s->addr, s->addr_str, sizeof s->addr_str);
    if (pthread_create(&s->thread, NULL, stun_main, s) != 0)
        goto err;
    s->started = 1;
    return s;
err:
    ts_stun_stop(s);
    return NULL;
}

const ts_addr_t *ts_stun_addr(const ts_stun_t *s)
{
    return &s->addr;
}

const char *ts_stun_addr_str(const ts_stun_t *s)
{
    return s->addr_str;
}

void ts_stun_mute(ts_stun_t *s, int mute)
{
    pthread_mutex_lock(&s->lock);
    s->muted = mute;
    pthread_mutex_unlock(&s->lock);
}

static uint64_t get(ts_stun_t *s, const uint64_t *field)
{
    pthread_mutex_lock(&s->lock);
    uint64_t v = *field;
    pthread_mutex_unlock(&s->lock);
    return v;
}

uint64_t ts_stun_requests(ts_stun_t *s)
{
    return get(s, &s->requests);
}

uint64_t ts_stun_echoed(ts_stun_t *s)
{
    return get(s, &s->echoed);
}

uint64_t ts_stun_dropped(ts_stun_t *s)
{
    return get(s, &s->dropped);
}

void ts_stun_stop(ts_stun_t *s)
{
    if (!s)
        return;
    if (s->started) {
        char c = 'x';
        ssize_t w = write(s->stop_pipe[1], &c, 1);
        (void)w;
        pthread_join(s->thread, NULL);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->stop_pipe[0] >= 0)
        close(s->stop_pipe[0]);
    if (s->stop_pipe[1] >= 0)
        close(s->stop_pipe[1]);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
