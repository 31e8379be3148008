/*
 * ts_echo.c — UDP echo backend thread.
 */
#include "ts_echo.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_util.h"

/* Datagrams handled per wakeup before the stop pipe is looked at again. */
#define BATCH 64

struct ts_echo {
    int fd;
    ts_echo_hook_t hook;
    void *hook_ud;
    int stop_pipe[2];
    pthread_t thread;
    int started;
    int64_t life_ms;      /* the thread serves this long at most */
    ts_addr_t addr;
    char addr_str[64];
    pthread_mutex_t lock; /* guards the fields below */
    uint64_t packets;
    size_t nsources;      /* distinct sources, including those not stored */
    ts_addr_t sources[TS_ECHO_MAX_SOURCES];
    uint64_t per_source[TS_ECHO_MAX_SOURCES];
};

static void record(ts_echo_t *e, const ts_addr_t *src)
{
    pthread_mutex_lock(&e->lock);
    e->packets++;
    size_t stored = e->nsources < TS_ECHO_MAX_SOURCES ? e->nsources : TS_ECHO_MAX_SOURCES;
    size_t i;
    for (i = 0; i < stored; i++)
        if (ts_addr_eq(&e->sources[i], src))
            break;
    if (i < stored) {
        e->per_source[i]++;
    } else {
        if (stored < TS_ECHO_MAX_SOURCES) {
            e->sources[stored] = *src;
            e->per_source[stored] = 1;
        }
        e->nsources++;
    }
    pthread_mutex_unlock(&e->lock);
}

static void *echo_main(void *arg)
{
    ts_echo_t *e = arg;
    uint8_t buf[65536];
    int64_t end = ts_deadline(e->life_ms);
    for (;;) {
        int left = ts_remaining_ms(end);
        if (left == 0)
            break;
        struct pollfd pfd[2] = {
            {.fd = e->fd, .events = POLLIN},
            {.fd = e->stop_pipe[0], .events = POLLIN},
        };
        if (poll(pfd, 2, left) < 0 && errno != EINTR)
            break;
        if (pfd[1].revents)
            break;
        for (int i = 0; i < BATCH; i++) {
            ts_addr_t src;
            src.len = sizeof src.sa;
            ssize_t n = recvfrom(e->fd, buf, sizeof buf, MSG_DONTWAIT,
                                 (struct sockaddr *)&src.sa, &src.len);
            if (n < 0)
                break;
            record(e, &src);
            if (e->hook && e->hook(e->hook_ud, e->fd, buf, (size_t)n, &src))
                continue;
            /* A full socket buffer drops the reply, as a real backend would. */
            sendto(e->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
                   (struct sockaddr *)&src.sa, src.len);
        }
    }
    return NULL;
}

ts_echo_t *ts_echo_start(int family)
{
    return ts_echo_start_hooked(family, NULL, NULL);
}

ts_echo_t *ts_echo_start_hooked(int family, ts_echo_hook_t hook, void *ud)
{
    return ts_echo_start_at(family, 0, hook, ud);
}

ts_echo_t *ts_echo_start_at(int family, uint16_t port, ts_echo_hook_t hook, void *ud)
{
    return ts_echo_start_for(family, port, hook, ud, TS_ECHO_MAX_LIFE_MS);
}

ts_echo_t *ts_echo_start_for(int family, uint16_t port, ts_echo_hook_t hook, void *ud,
                             int64_t life_ms)
{
    ts_echo_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->life_ms = life_ms;
    e->hook = hook;
    e->hook_ud = ud;
    e->stop_pipe[0] = e->stop_pipe[1] = -1;
    pthread_mutex_init(&e->lock, NULL);
    e->fd = ts_udp_bind_port(family, port, &e->addr);
    if (e->fd < 0 || pipe2(e->stop_pipe, O_CLOEXEC) < 0)
        goto err;
    ts_addr_str(&e->addr, e->addr_str, sizeof e->addr_str);
    if (pthread_create(&e->thread, NULL, echo_main, e) != 0)
        goto err;
    e->started = 1;
    return e;
err:
    ts_echo_stop(e);
    return NULL;
}

const ts_addr_t *ts_echo_addr(const ts_echo_t *e)
{
    return &e->addr;
}

const char *ts_echo_addr_str(const ts_echo_t *e)
{
    return e->addr_str;
}

uint64_t ts_echo_packets(ts_echo_t *e)
{
    pthread_mutex_lock(&e->lock);
    uint64_t n = e->packets;
    pthread_mutex_unlock(&e->lock);
    return n;
}

size_t ts_echo_sources(ts_echo_t *e, ts_addr_t *out, size_t cap)
{
    pthread_mutex_lock(&e->lock);
    size_t n = e->nsources;
    size_t stored = n < TS_ECHO_MAX_SOURCES ? n : TS_ECHO_MAX_SOURCES;
    for (size_t i = 0; out && i < stored && i < cap; i++)
        out[i] = e->sources[i];
    pthread_mutex_unlock(&e->lock);
    return n;
}

uint64_t ts_echo_packets_from(ts_echo_t *e, const ts_addr_t *src)
{
    uint64_t n = 0;
    pthread_mutex_lock(&e->lock);
    size_t stored = e->nsources < TS_ECHO_MAX_SOURCES ? e->nsources : TS_ECHO_MAX_SOURCES;
    for (size_t i = 0; i < stored; i++)
        if (ts_addr_eq(&e->sources[i], src))
            n = e->per_source[i];
    pthread_mutex_unlock(&e->lock);
    return n;
}

void ts_echo_stop(ts_echo_t *e)
{
    if (!e)
        return;
    if (e->started) {
        char c = 'x';
        ssize_t w = write(e->stop_pipe[1], &c, 1);
        (void)w;
        pthread_join(e->thread, NULL);
    }
    if (e->fd >= 0)
        close(e->fd);
    if (e->stop_pipe[0] >= 0)
        close(e->stop_pipe[0]);
    if (e->stop_pipe[1] >= 0)
        close(e->stop_pipe[1]);
    pthread_mutex_destroy(&e->lock);
    free(e);
}
