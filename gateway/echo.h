/*
 * echo.h — the built-in UDP echo backend ("builtin:echo" in a pool).
 *
 * For development and tests: it sends every datagram back to its sender. It
 * runs on the gateway's loop and binds where the config's "echo" says.
 */
#ifndef SLUICE_ECHO_H
#define SLUICE_ECHO_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct echo {
    int fd;
    ev_io io;
    struct sockaddr_storage addr; /* bound address, port filled in */
    socklen_t addrlen;
    uint8_t *buf;
} echo_t;

/* Binds and starts serving. Returns 0, or -1 with err filled. */
int echo_start(echo_t *e, struct ev_loop *loop, const struct sockaddr *bind_addr,
               socklen_t len, char *err, size_t errlen);

/* Stops and closes; idempotent (fd -1 after). */
void echo_stop(echo_t *e, struct ev_loop *loop);

#endif
