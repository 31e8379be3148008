/*
 * shim_dial.h — the transport layer: yields a connected byte pipe
 * (shim_pipe.h) to the TLS layer above it, over the first of a list of
 * routes (proxy.h) that works: "direct" is a TCP connection (dial.c,
 * pipe_tcp.c); a proxy route is a CONNECT tunnel made by libcurl
 * (pipe_curl.c). The layers above never see which.
 *
 * Routes are tried in order, each with its own connect deadline; a route
 * that fails moves on to the next one from the loop (after on_attempt has
 * told the owner), and the outcome reported is the last route's. The dialer
 * owns its socket or curl handles until it hands the pipe over in the
 * callback; cancelling closes whatever it still holds.
 */
#ifndef SHIM_DIAL_H
#define SHIM_DIAL_H

#include <ev.h>
#include <stdint.h>

#include "proxy.h"
#include "shim_pipe.h"
#include "sluice_shim.h"

#define SHIM_DIAL_ERR_MAX 320u

typedef struct shim_dial shim_dial_t;

/* Unsent bytes the kernel may hold on the gateway connection (TCP_NOTSENT_LOWAT). */
#define SHIM_NOTSENT_LOWAT 4096

/* Socket options of the gateway connection, direct or through a proxy:
 * TCP_NODELAY, and TCP_NOTSENT_LOWAT so that when the gateway (or the path)
 * cannot keep up the backlog waits in the tunnels' age-bounded queues, which
 * drop the oldest media, rather than in the kernel's send buffer. */
void shim_dial_tune(int fd);

/* Success: pipe is connected and now owned by the callee, fail is
 * SLUICE_FAIL_NONE and err NULL. Failure (every route failed): pipe is
 * NULL, fail classifies the last route's failure and err names the route,
 * the address and the cause. Called from the loop, never from
 * shim_dial_start. d->route tells which route the pipe runs over. */
typedef void (*shim_dial_cb)(shim_dial_t *d, shim_pipe_t *pipe, sluice_fail_t fail,
                             const char *err);

/* Told before each route is tried: index (0-based) of n, and why the one
 * before failed (NULL for the first). May be NULL. */
typedef void (*shim_dial_attempt_cb)(shim_dial_t *d, const proxy_route_t *route, size_t index,
                                     size_t n, const char *prev_err);

struct shim_dial {
    struct ev_loop *loop;
    shim_dial_cb cb;
    shim_dial_attempt_cb on_attempt;
    void *ud;
    const proxy_route_t *route;  /* the route being tried, then the one that worked */
    /* The list, copied by shim_dial_start. */
    proxy_route_t _routes[PROXY_ROUTES_MAX];
    size_t _nroutes, _ri;
    const char *_user, *_password; /* proxy credentials, borrowed from the owner */
    /* Direct TCP. */
    struct addrinfo *_res;  /* resolved addresses */
    struct addrinfo *_cur;  /* the one being tried */
    int _fd;
    /* A proxy route's tunnel while curl makes it (pipe_curl.c). */
    shim_pipe_t *_proxy;
    uint16_t _port;
    uint32_t _timeout_ms;
    sluice_fail_t _fail;    /* the current route's failure */
    ev_io _io;
    ev_timer _timer;        /* direct connect deadline */
    ev_timer _next;         /* moves on to the next route from the loop */
    char _host[256];
    char _err[SHIM_DIAL_ERR_MAX];
};

/* Prepares an idle dialer. */
void shim_dial_init(shim_dial_t *d, struct ev_loop *loop);

/* Tries routes[0..n) (1 <= n <= PROXY_ROUTES_MAX, copied) to reach host:port,
 * each within timeout_ms. A direct route resolves host (blocking
 * getaddrinfo; immediate for IP literals) and tries each address in turn; a
 * proxy route leaves host to the proxy. user/password (may be NULL) are
 * proxy credentials, borrowed until the callback. Returns 0: the outcome
 * always comes through cb, from the loop. -1 only for bad arguments. */
int shim_dial_start(shim_dial_t *d, const proxy_route_t *routes, size_t n, const char *host,
                    uint16_t port, uint32_t timeout_ms, const char *user, const char *password,
                    shim_dial_cb cb, void *ud);

/* Stops and releases everything the dialer holds; idempotent. */
void shim_dial_cancel(shim_dial_t *d);

/* pipe_curl.c: a CONNECT tunnel through route (not direct) to host:port.
 * Returns the pipe-to-be at once (NULL with err when it cannot even start);
 * cb then comes from the loop exactly once: with the connected pipe (now the
 * callee's), or with NULL, a PROXY_* failure and its message (the pipe is
 * already released then). Before cb, shim_proxy_cancel releases it and cb
 * never comes. */
typedef void (*shim_curl_cb)(shim_pipe_t *pipe, sluice_fail_t fail, const char *err, void *ud);
shim_pipe_t *shim_proxy_dial(struct ev_loop *loop, const proxy_route_t *route,
                             const char *host, uint16_t port, const char *user,
                             const char *password, uint32_t timeout_ms, shim_curl_cb cb,
                             void *ud, char *err, size_t errlen);
void shim_proxy_cancel(shim_pipe_t *p);

#endif
