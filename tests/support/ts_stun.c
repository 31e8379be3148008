/*
 * ts_stun.c — STUN responder and echo thread (see ts_stun.h).
 */
#include "ts_stun.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../../proto/stun.h"
#include "ts_echo.h"

struct ts_stun {
    ts_echo_t *echo;      /* the socket and its thread; handle() is its hook */
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

/* The echo's hook: answers Binding requests, drops everything while muted,
 * leaves the rest to be echoed. */
static int handle(void *ud, int fd, const uint8_t *p, size_t len, const ts_addr_t *src)
{
    ts_stun_t *s = ud;
    uint8_t txid[STUN_TXID_LEN], out[STUN_BINDING_RESPONSE_MAX];
    stun_addr_t m;
    int n, muted, request = stun_binding_request_decode(p, len, txid, NULL) == (int)len;

    /* Counted before the answer goes out, so a test that got the answer
     * sees the count. */
    pthread_mutex_lock(&s->lock);
    muted = s->muted;
    if (muted)
        s->dropped++;
    else if (request)
        s->requests++;
    else
        s->echoed++;
    pthread_mutex_unlock(&s->lock);
    if (muted)
        return 1;
    if (!request)
        return 0;
    mapped_from(src, &m);
    n = stun_binding_response_encode(txid, &m, out, sizeof out);
    if (n > 0)
        sendto(fd, out, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&src->sa, src->len);
    return 1;
}

ts_stun_t *ts_stun_start(int family)
{
    return ts_stun_start_at(family, 0);
}

ts_stun_t *ts_stun_start_at(int family, uint16_t port)
{
    ts_stun_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->echo = ts_echo_start_at(family, port, handle, s);
    if (!s->echo) {
        ts_stun_stop(s);
        return NULL;
    }
    return s;
}

const ts_addr_t *ts_stun_addr(const ts_stun_t *s)
{
    return ts_echo_addr(s->echo);
}

const char *ts_stun_addr_str(const ts_stun_t *s)
{
    return ts_echo_addr_str(s->echo);
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
    ts_echo_stop(s->echo); /* joins the thread: the hook no longer runs */
    pthread_mutex_destroy(&s->lock);
    free(s);
}
