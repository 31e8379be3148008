/*
 * shim_pipe.h — the byte pipe under the TLS layer: a connected, ordered,
 * reliable stream of bytes to the gateway, whatever carries it.
 *
 * TLS (tls.c) moves ciphertext through this interface and nothing else: it
 * never sees a socket. Two pipes exist, both made by the dialer (dial.c):
 * a direct TCP connection (pipe_tcp.c) and a CONNECT tunnel through a proxy
 * made by libcurl (pipe_curl.c). Another transport is another set of ops,
 * with no change to TLS, HTTP/2 or tunnel code.
 *
 * Readiness is level-triggered, like the socket under it: the owner says
 * which events it wants (want), the pipe calls on_ready from the loop while
 * one of them holds, and the owner reads or writes until the pipe says
 * SHIM_PIPE_AGAIN (or stops early and is called again).
 *
 * Ownership: whoever made the pipe hands it over whole (the dialer to the
 * client); the holder ends it with shim_pipe_close, which also frees it.
 */
#ifndef SHIM_PIPE_H
#define SHIM_PIPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ev_loop;

typedef struct shim_pipe shim_pipe_t;

/* Events for want and on_ready. */
#define SHIM_PIPE_READ 1
#define SHIM_PIPE_WRITE 2

/* Results of read and write other than a byte count. */
enum shim_pipe_rc {
    SHIM_PIPE_AGAIN = -1, /* nothing can move now: want the event and wait */
    SHIM_PIPE_ERROR = -2, /* the pipe is broken; err says why */
};

typedef struct shim_pipe_ops {
    /* Reads up to cap (> 0) bytes. Returns the count (> 0), 0 at the peer's
     * orderly end of stream, SHIM_PIPE_AGAIN or SHIM_PIPE_ERROR. */
    ssize_t (*read)(shim_pipe_t *p, uint8_t *buf, size_t cap);
    /* Writes up to len (> 0) bytes. Returns the count taken (> 0; may be
     * fewer than len), SHIM_PIPE_AGAIN or SHIM_PIPE_ERROR. */
    ssize_t (*write)(shim_pipe_t *p, const uint8_t *buf, size_t len);
    /* Sets the events (SHIM_PIPE_READ | SHIM_PIPE_WRITE, or 0 for none) that
     * make the pipe call on_ready. Replaces the previous set. */
    void (*want)(shim_pipe_t *p, int events);
    /* Closes the connection and frees the pipe. */
    void (*close)(shim_pipe_t *p);
} shim_pipe_ops_t;

struct shim_pipe {
    const shim_pipe_ops_t *ops;
    /* Set by the holder: called from the loop with the events that hold. */
    void (*on_ready)(shim_pipe_t *p, int events);
    void *ud;
    char err[160]; /* why the last SHIM_PIPE_ERROR happened */
};

static inline ssize_t shim_pipe_read(shim_pipe_t *p, uint8_t *buf, size_t cap)
{
    return p->ops->read(p, buf, cap);
}

static inline ssize_t shim_pipe_write(shim_pipe_t *p, const uint8_t *buf, size_t len)
{
    return p->ops->write(p, buf, len);
}

static inline void shim_pipe_want(shim_pipe_t *p, int events)
{
    p->ops->want(p, events);
}

/* Closes and frees *pp and sets it to NULL; a NULL *pp is a no-op. */
static inline void shim_pipe_close(shim_pipe_t **pp)
{
    if (*pp) {
        (*pp)->ops->close(*pp);
        *pp = NULL;
    }
}

/* A pipe over fd, a connected non-blocking stream socket, on loop. The pipe
 * owns fd from now on, also when it returns NULL (out of memory: fd is then
 * closed). */
shim_pipe_t *shim_pipe_tcp_new(struct ev_loop *loop, int fd);

#endif
