/* echo.c — see echo.h. */
#include "echo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define ECHO_BUF 65536
#define ECHO_PER_EVENT 64
/* Kernel buffer for a burst arriving while the loop serves the tunnels that
 * send it: a 200 x 1,200 B keyframe takes about 460 KB of truesize (capped
 * by net.core.rmem_max). */
#define ECHO_RCVBUF (1 << 20)

static void echo_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    echo_t *e = container_of(w, echo_t, io);
    for (int i = 0; i < ECHO_PER_EVENT; i++) {
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof from;
        ssize_t n = recvfrom(e->fd, e->buf, ECHO_BUF, 0, (struct sockaddr *)&from, &fromlen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN, or an ICMP error from an earlier reply: nothing to do */
        }
        /* A full socket buffer drops the reply, as a real backend would. */
        (void)!sendto(e->fd, e->buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen);
    }
}

int echo_start(echo_t *e, struct ev_loop *loop, const struct sockaddr *bind_addr,
               socklen_t len, char *err, size_t errlen)
{
    e->fd = socket(bind_addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    e->buf = malloc(ECHO_BUF);
    e->addrlen = sizeof e->addr;
    if (e->fd < 0 || !e->buf || bind(e->fd, bind_addr, len) < 0 ||
        getsockname(e->fd, (struct sockaddr *)&e->addr, &e->addrlen) < 0) {
        snprintf(err, errlen, "echo backend: %s", strerror(errno));
        echo_stop(e, loop);
        return -1;
    }
    int rcvbuf = ECHO_RCVBUF;
    setsockopt(e->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    ev_io_init(&e->io, echo_cb, e->fd, EV_READ);
    ev_io_start(loop, &e->io);
    return 0;
}

void echo_stop(echo_t *e, struct ev_loop *loop)
{
    if (e->fd >= 0) {
        ev_io_stop(loop, &e->io);
        close(e->fd);
    }
    e->fd = -1;
    free(e->buf);
    e->buf = NULL;
}
