/*
 * dial.c — direct TCP transport (see shim_dial.h): resolves, connects, and
 * hands the connection over as a TCP pipe (pipe_tcp.c).
 */
#include "shim_dial.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/compat.h"
#include "shim_addr.h"


void shim_dial_init(shim_dial_t *d, struct ev_loop *loop)
{
    memset(d, 0, sizeof(*d));
    d->loop = loop;
    d->_fd = -1;
    ev_init(&d->_io, NULL);
    ev_init(&d->_timer, NULL);
}

void shim_dial_cancel(shim_dial_t *d)
{
    ev_io_stop(d->loop, &d->_io);
    ev_timer_stop(d->loop, &d->_timer);
    if (d->_fd >= 0) {
        close(d->_fd);
        d->_fd = -1;
    }
    if (d->_res) {
        freeaddrinfo(d->_res);
        d->_res = NULL;
    }
    d->_cur = NULL;
}

static void dial_set_err(shim_dial_t *d, const struct addrinfo *ai, int err)
{
    char a[SHIM_ADDRSTR_MAX];

    snprintf(d->_err, sizeof(d->_err), "connect to %s (%s): %s", d->_host,
             shim_addr_format(ai->ai_addr, a, sizeof(a)), strerror(err));
}

/* Starts a connect to d->_cur or a later address. Returns 0 when one is in
 * progress, -1 when none is left (d->_err says why the last one failed). */
static int dial_next(shim_dial_t *d)
{
    for (; d->_cur; d->_cur = d->_cur->ai_next) {
        const struct addrinfo *ai = d->_cur;
        int one = 1;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            dial_set_err(d, ai, errno);
            continue;
        }
        /* Real-time media: never wait to coalesce small writes. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            /* Even an immediate success is reported from the loop. */
            d->_fd = fd;
            ev_io_set(&d->_io, fd, EV_WRITE);
            ev_io_start(d->loop, &d->_io);
            return 0;
        }
        dial_set_err(d, ai, errno);
        close(fd);
    }
    return -1;
}

static void dial_finish(shim_dial_t *d, int fd, const char *err)
{
    char msg[sizeof(d->_err)];
    shim_pipe_t *pipe = NULL;

    if (err)
        snprintf(msg, sizeof(msg), "%s", err);
    if (fd >= 0) {
        d->_fd = -1; /* handed over to the pipe, not closed by cancel */
        pipe = shim_pipe_tcp_new(d->loop, fd);
        if (!pipe) {
            snprintf(msg, sizeof(msg), "connect to %s: out of memory", d->_host);
            err = msg;
        }
    }
    shim_dial_cancel(d);
    d->cb(d, pipe, err ? msg : NULL);
}

static void dial_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    shim_dial_t *d = container_of(w, shim_dial_t, _io);
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(d->_fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == 0) {
        dial_finish(d, d->_fd, NULL);
        return;
    }
    dial_set_err(d, d->_cur, soerr);
    ev_io_stop(loop, &d->_io);
    close(d->_fd);
    d->_fd = -1;
    d->_cur = d->_cur->ai_next;
    if (dial_next(d) < 0)
        dial_finish(d, -1, d->_err);
}

static void dial_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    shim_dial_t *d = container_of(w, shim_dial_t, _timer);

    snprintf(d->_err, sizeof(d->_err), "connect to %s port %u timed out after %u ms",
             d->_host, (unsigned)d->_port, (unsigned)d->_timeout_ms);
    dial_finish(d, -1, d->_err);
}

int shim_dial_start(shim_dial_t *d, const char *host, uint16_t port, uint32_t timeout_ms,
                    shim_dial_cb cb, void *ud, char *err, size_t errlen)
{
    struct addrinfo hints;
    char service[8];
    int rc;

    shim_dial_cancel(d);
    d->cb = cb;
    d->ud = ud;
    d->_port = port;
    snprintf(d->_host, sizeof(d->_host), "%s", host);
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(host, service, &hints, &d->_res);
    if (rc != 0) {
        d->_res = NULL;
        snprintf(err, errlen, "cannot resolve '%s': %s", host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    d->_cur = d->_res;
    ev_init(&d->_io, dial_on_writable);
    if (dial_next(d) < 0) {
        snprintf(err, errlen, "%s", d->_err);
        shim_dial_cancel(d);
        return -1;
    }
    d->_timeout_ms = timeout_ms;
    ev_timer_init(&d->_timer, dial_on_timeout, timeout_ms / 1000.0, 0.);
    ev_timer_start(d->loop, &d->_timer);
    return 0;
}
