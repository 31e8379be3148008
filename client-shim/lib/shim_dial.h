/*
 * shim_dial.h — the transport layer: yields a connected, non-blocking byte
 * pipe (today a direct TCP socket) to the TLS layer above it.
 *
 * The layers above never see how the pipe was made, so an HTTP CONNECT proxy
 * dialer can later produce the same result (a connected fd) after its own
 * exchange. The dialer owns its socket until it hands it over in the
 * callback; cancelling closes whatever it still holds.
 */
#ifndef SHIM_DIAL_H
#define SHIM_DIAL_H

#include <ev.h>
#include <stdint.h>

typedef struct shim_dial shim_dial_t;

/* Success: fd >= 0 is connected and non-blocking, now owned by the callee,
 * err is NULL. Failure: fd is -1 and err names the address and cause. Called
 * from the loop, never from shim_dial_start. */
typedef void (*shim_dial_cb)(shim_dial_t *d, int fd, const char *err);

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
