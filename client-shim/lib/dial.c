/*
 * dial.c — the route list (see shim_dial.h): a direct route resolves,
 * connects, and hands the connection over as a TCP pipe (pipe_tcp.c); a
 * proxy route is handed to libcurl (pipe_curl.c). A failed route moves on to
 * the next one from the loop.
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
    ev_init(&d->_next, NULL);
}

/* Releases what the current route holds. */
static void dial_route_cancel(shim_dial_t *d)
{
    ev_io_stop(d->loop, &d->_io);
    ev_timer_stop(d->loop, &d->_timer);
    shim_proxy_cancel(d->_proxy);
    d->_proxy = NULL;
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

void shim_dial_cancel(shim_dial_t *d)
{
    dial_route_cancel(d);
    ev_timer_stop(d->loop, &d->_next);
}

static void dial_set_err(shim_dial_t *d, const struct addrinfo *ai, int err)
{
    char a[SHIM_ADDRSTR_MAX];

    snprintf(d->_err, sizeof(d->_err), "connect to %s (%s): %s", d->_host,
             shim_addr_format(ai->ai_addr, a, sizeof(a)), strerror(err));
    d->_fail = SLUICE_FAIL_CONNECT;
}

void shim_dial_tune(int fd)
{
    int one = 1, lowat = SHIM_NOTSENT_LOWAT;
    /* Real-time media: never wait to coalesce small writes. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}

/* Starts a connect to d->_cur or a later address. Returns 0 when one is in
 * progress, -1 when none is left (d->_err says why the last one failed). */
static int dial_next(shim_dial_t *d)
{
    for (; d->_cur; d->_cur = d->_cur->ai_next) {
        const struct addrinfo *ai = d->_cur;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            dial_set_err(d, ai, errno);
            continue;
        }
        shim_dial_tune(fd);
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

/* The current route failed with d->_fail and d->_err: the next one is
 * tried from the loop (or the failure reported from there). */
static void dial_route_failed(shim_dial_t *d)
{
    dial_route_cancel(d);
    ev_timer_set(&d->_next, 0., 0.);
    ev_timer_start(d->loop, &d->_next);
}

/* Hands a connected pipe over. */
static void dial_succeeded(shim_dial_t *d, shim_pipe_t *pipe)
{
    dial_route_cancel(d);
    d->cb(d, pipe, SLUICE_FAIL_NONE, NULL);
}

static void dial_finish(shim_dial_t *d, int fd)
{
    shim_pipe_t *pipe;

    d->_fd = -1; /* handed over to the pipe, not closed by cancel */
    pipe = shim_pipe_tcp_new(d->loop, fd);
    if (!pipe) {
        snprintf(d->_err, sizeof(d->_err), "connect to %s: out of memory", d->_host);
        d->_fail = SLUICE_FAIL_CONNECT;
        dial_route_failed(d);
        return;
    }
    dial_succeeded(d, pipe);
}

static void dial_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    shim_dial_t *d = container_of(w, shim_dial_t, _io);
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(d->_fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == 0) {
        dial_finish(d, d->_fd);
        return;
    }
    dial_set_err(d, d->_cur, soerr);
    ev_io_stop(loop, &d->_io);
    close(d->_fd);
    d->_fd = -1;
    d->_cur = d->_cur->ai_next;
    if (dial_next(d) < 0)
        dial_route_failed(d);
}

static void dial_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    shim_dial_t *d = container_of(w, shim_dial_t, _timer);

    snprintf(d->_err, sizeof(d->_err), "connect to %s port %u timed out after %u ms",
             d->_host, (unsigned)d->_port, (unsigned)d->_timeout_ms);
    d->_fail = SLUICE_FAIL_TIMEOUT;
    dial_route_failed(d);
}

/* Starts a direct route. Returns 0 when a connect is in progress, -1 with
 * d->_fail and d->_err when the route failed at once. */
static int dial_direct(shim_dial_t *d)
{
    struct addrinfo hints;
    char service[8];
    int rc;

    snprintf(service, sizeof(service), "%u", (unsigned)d->_port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(d->_host, service, &hints, &d->_res);
    if (rc != 0) {
        d->_res = NULL;
        snprintf(d->_err, sizeof(d->_err), "cannot resolve '%s': %s", d->_host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        d->_fail = SLUICE_FAIL_RESOLVE;
        return -1;
    }
    d->_cur = d->_res;
    ev_init(&d->_io, dial_on_writable);
    if (dial_next(d) < 0)
        return -1;
    ev_timer_init(&d->_timer, dial_on_timeout, d->_timeout_ms / 1000.0, 0.);
    ev_timer_start(d->loop, &d->_timer);
    return 0;
}

static void dial_on_proxy(shim_pipe_t *pipe, sluice_fail_t fail, const char *err, void *ud)
{
    shim_dial_t *d = ud;

    d->_proxy = NULL; /* handed over, or already released */
    if (pipe) {
        dial_succeeded(d, pipe);
        return;
    }
    d->_fail = fail;
    snprintf(d->_err, sizeof(d->_err), "%s", err);
    dial_route_failed(d);
}

/* Starts route d->_ri, or reports the end of the list. */
static void dial_route_start(shim_dial_t *d)
{
    const char *prev = d->_ri ? d->_err : NULL;
    char prev_err[SHIM_DIAL_ERR_MAX];

    if (d->_ri >= d->_nroutes) {
        char msg[SHIM_DIAL_ERR_MAX];
        snprintf(msg, sizeof(msg), "%s", d->_err);
        d->cb(d, NULL, d->_fail, msg);
        return;
    }
    if (prev) {
        snprintf(prev_err, sizeof(prev_err), "%s", prev);
        prev = prev_err;
    }
    d->route = &d->_routes[d->_ri++];
    d->_err[0] = '\0';
    d->_fail = SLUICE_FAIL_NONE;
    if (d->on_attempt)
        d->on_attempt(d, d->route, d->_ri - 1, d->_nroutes, prev);
    if (d->route->direct) {
        if (dial_direct(d) < 0)
            dial_route_failed(d);
        return;
    }
    d->_proxy = shim_proxy_dial(d->loop, d->route, d->_host, d->_port, d->_user, d->_password,
                                d->_timeout_ms, dial_on_proxy, d, d->_err, sizeof(d->_err));
    if (!d->_proxy) {
        d->_fail = SLUICE_FAIL_PROXY_CONFIG;
        dial_route_failed(d);
    }
}

static void dial_on_next(struct ev_loop *loop, ev_timer *w, int revents)
{
    dial_route_start(container_of(w, shim_dial_t, _next));
}

int shim_dial_start(shim_dial_t *d, const proxy_route_t *routes, size_t n, const char *host,
                    uint16_t port, uint32_t timeout_ms, const char *user, const char *password,
                    shim_dial_cb cb, void *ud)
{
    if (n == 0 || n > PROXY_ROUTES_MAX || !host || !cb)
        return -1;
    shim_dial_cancel(d);
    memcpy(d->_routes, routes, n * sizeof(*routes));
    d->_nroutes = n;
    d->_ri = 0;
    d->route = NULL;
    d->cb = cb;
    d->ud = ud;
    d->_user = user;
    d->_password = password;
    d->_port = port;
    d->_timeout_ms = timeout_ms;
    d->_err[0] = '\0';
    snprintf(d->_host, sizeof(d->_host), "%s", host);
    /* Every route, the first included, starts from the loop: the owner
     * hears of each attempt and of the outcome in order, never inside this
     * call. */
    ev_init(&d->_next, dial_on_next);
    ev_timer_set(&d->_next, 0., 0.);
    ev_timer_start(d->loop, &d->_next);
    return 0;
}
