/* linger.c — see linger.h. */
#include "linger.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct linger_sock {
    list_t _link; /* linger_set_t.socks */
    linger_set_t *set;
    ev_io io;
    ev_timer timer;
} linger_sock_t;

void linger_init(linger_set_t *set, struct ev_loop *loop, size_t max, double seconds)
{
    *set = (linger_set_t){.loop = loop, .max = max, .seconds = seconds};
    list_init(&set->socks);
}

/* Reads and discards what the peer sent, at most LINGER_READS_PER_EVENT
 * reads. Returns 1 once the peer has closed its side (or the socket
 * failed), 0 while it is open. */
static int drain(int fd)
{
    uint8_t sink[16384];
    for (int i = 0; i < LINGER_READS_PER_EVENT; i++) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return 0;
}

static void finish(linger_sock_t *l)
{
    ev_io_stop(l->set->loop, &l->io);
    ev_timer_stop(l->set->loop, &l->timer);
    close(l->io.fd);
    list_remove(&l->_link);
    l->set->count--;
    free(l);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    linger_sock_t *l = container_of(w, linger_sock_t, io);
    if (drain(w->fd))
        finish(l);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    finish(container_of(w, linger_sock_t, timer));
}

void linger_close(linger_set_t *set, int fd)
{
    linger_sock_t *l = NULL;
    if (set->count >= set->max || shutdown(fd, SHUT_WR) < 0 || drain(fd) ||
        !(l = malloc(sizeof *l))) {
        close(fd);
        return;
    }
    l->set = set;
    ev_io_init(&l->io, io_cb, fd, EV_READ);
    ev_timer_init(&l->timer, timer_cb, set->seconds, 0.);
    ev_io_start(set->loop, &l->io);
    ev_timer_start(set->loop, &l->timer);
    list_push(&set->socks, &l->_link);
    set->count++;
}

void linger_dispose(linger_set_t *set)
{
    while (set->socks.next && !list_empty(&set->socks))
        finish(LIST_ENTRY(set->socks.next, linger_sock_t, _link));
}
