/*
 * pipe_tcp.c — the direct TCP byte pipe (see shim_pipe.h).
 */
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shim_internal.h"
#include "shim_pipe.h"

typedef struct pipe_tcp {
    shim_pipe_t base;
    struct ev_loop *loop;
    int fd;
    int events; /* SHIM_PIPE_* wanted now */
    ev_io io;
} pipe_tcp_t;

static ssize_t tcp_fail(pipe_tcp_t *t, const char *what, int err)
{
    snprintf(t->base.err, sizeof(t->base.err), "%s: %s", what, strerror(err));
    return SHIM_PIPE_ERROR;
}

static ssize_t tcp_read(shim_pipe_t *p, uint8_t *buf, size_t cap)
{
    pipe_tcp_t *t = container_of(p, pipe_tcp_t, base);

    for (;;) {
        ssize_t n = recv(t->fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SHIM_PIPE_AGAIN;
        return tcp_fail(t, "read", errno);
    }
}

static ssize_t tcp_write(shim_pipe_t *p, const uint8_t *buf, size_t len)
{
    pipe_tcp_t *t = container_of(p, pipe_tcp_t, base);

    for (;;) {
        ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return SHIM_PIPE_AGAIN;
        return tcp_fail(t, "write", errno);
    }
}

static void tcp_want(shim_pipe_t *p, int events)
{
    pipe_tcp_t *t = container_of(p, pipe_tcp_t, base);
    int ev = ((events & SHIM_PIPE_READ) ? EV_READ : 0) | ((events & SHIM_PIPE_WRITE) ? EV_WRITE : 0);

    if (events == t->events)
        return;
    t->events = events;
    ev_io_stop(t->loop, &t->io);
    if (ev) {
        ev_io_set(&t->io, t->fd, ev);
        ev_io_start(t->loop, &t->io);
    }
}

static void tcp_close(shim_pipe_t *p)
{
    pipe_tcp_t *t = container_of(p, pipe_tcp_t, base);

    ev_io_stop(t->loop, &t->io);
    close(t->fd);
    free(t);
}

static void tcp_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    pipe_tcp_t *t = container_of(w, pipe_tcp_t, io);
    int events = ((revents & EV_READ) ? SHIM_PIPE_READ : 0) |
                 ((revents & EV_WRITE) ? SHIM_PIPE_WRITE : 0);

    if (events && t->base.on_ready)
        t->base.on_ready(&t->base, events);
}

static const shim_pipe_ops_t tcp_ops = {
    .read = tcp_read,
    .write = tcp_write,
    .want = tcp_want,
    .close = tcp_close,
};

shim_pipe_t *shim_pipe_tcp_new(struct ev_loop *loop, int fd)
{
    pipe_tcp_t *t = calloc(1, sizeof(*t));

    if (!t) {
        close(fd);
        return NULL;
    }
    t->base.ops = &tcp_ops;
    t->loop = loop;
    t->fd = fd;
    ev_init(&t->io, tcp_on_io);
    return &t->base;
}
