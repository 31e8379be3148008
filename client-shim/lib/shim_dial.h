/*
 * shim_dial.h — the transport layer: yields a connected byte pipe
 * (shim_pipe.h; today a direct TCP connection) to the TLS layer above it.
 *
 * The layers above never see how the pipe was made, so an HTTP CONNECT proxy
 * dialer can later produce the same result (a shim_pipe_t with its own ops)
 * after its own exchange. The dialer owns its socket until it hands the pipe
 * over in the callback; cancelling closes whatever it still holds.
 */
#ifndef SHIM_DIAL_H
#define SHIM_DIAL_H

#include <ev.h>
#include <stdint.h>

#include "shim_pipe.h"

typedef struct shim_dial shim_dial_t;

/* Success: pipe is connected and now owned by the callee, err is NULL.
 * Failure: pipe is NULL and err names the address and cause. Called from the
 * loop, never from shim_dial_start. */
typedef void (*shim_dial_cb)(shim_dial_t *d, shim_pipe_t *pipe, const char *err);

struct shim_dial {
    struct ev_loop *loop;
    shim_dial_cb cb;
    void *ud;
    struct addrinfo *_res;  /* resolved addresses */
    struct addrinfo *_cur;  /* the one being tried */
    int _fd;
    uint16_t _port;
    uint32_t _timeout_ms;
    ev_io _io;
    ev_timer _timer;
    char _host[256];
    char _err[320];
};

/* Prepares an idle dialer. */
void shim_dial_init(shim_dial_t *d, struct ev_loop *loop);

/* Resolves host (blocking getaddrinfo; immediate for IP literals) and starts
 * non-blocking connects to each address in turn until one succeeds, all
 * fail, or timeout_ms passes. Returns 0 when the outcome will come through
 * cb, or -1 with err (NUL-terminated) when resolution fails or no address
 * could even be tried; cb is then never called. */
int shim_dial_start(shim_dial_t *d, const char *host, uint16_t port, uint32_t timeout_ms,
                    shim_dial_cb cb, void *ud, char *err, size_t errlen);

/* Stops and releases everything the dialer holds; idempotent. */
void shim_dial_cancel(shim_dial_t *d);

#endif
