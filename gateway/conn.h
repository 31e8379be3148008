/*
 * conn.h — one client connection: TCP socket, TLS, HTTP/2 session, tunnels.
 *
 * The connection is the single owner of everything it holds: the socket, the
 * SSL object, the nghttp2 session, its output buffer, its timer and the list of
 * tunnels (one per stream). nghttp2 does no I/O: bytes read from TLS go to
 * nghttp2_session_mem_recv, frames come out of nghttp2_session_mem_send into a
 * bounded output buffer and are written to TLS when the socket is writable.
 * Tunnels and callbacks never free the connection; only the connection's own
 * event callback (or the server, outside any callback) does.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/socket.h>

struct server;
struct tunnel;

#define CONN_OUT_CAP 32768u  /* TLS output buffer: one write's worth of frames */

enum conn_state {
    CONN_HANDSHAKE = 0,
    CONN_H2,
};

typedef struct conn {
    struct server *srv;
    struct conn *_prev, *_next; /* the server's list */
    uint64_t id;
    char peer[64];
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    enum conn_state state;
    ev_io io;
    ev_timer timer;             /* handshake, first-request and idle deadlines */
    ev_tstamp since;            /* accept (handshake) or last moment with no tunnels */
    unsigned got_request : 1;   /* a request has completed its headers */
    unsigned draining : 1;      /* GOAWAY sent; refuse new streams */
    unsigned peeked : 1;        /* first byte checked for a TLS record */
    unsigned write_blocked : 1; /* SSL_write wants to be retried as it was */
    struct tunnel *tunnels;
    uint32_t nopen;             /* tunnels open or closing */
    const uint8_t *pend;        /* part of nghttp2's last mem_send not yet buffered */
    size_t pend_len;
    size_t out_off, out_len;
    uint8_t out[CONN_OUT_CAP];
} conn_t;

/* Session callbacks and options shared by every connection of a server. */
int conn_h2_setup(nghttp2_session_callbacks **cbs, nghttp2_option **opt);

/* Takes ownership of an accepted, non-blocking socket and starts the TLS
 * handshake. Returns NULL (socket closed) when out of memory. */
conn_t *conn_new(struct server *srv, int fd, const struct sockaddr *peer, socklen_t peerlen);

/* A connection with no socket and no TLS, already speaking HTTP/2: the
 * in-memory test harness drives it with conn_feed and conn_pull. */
conn_t *conn_new_memory(struct server *srv);

/* Hands received bytes to the HTTP/2 session. Returns 0 or a negative nghttp2
 * error (the connection is then finished). */
int conn_feed(conn_t *c, const uint8_t *data, size_t len);

/* The next bytes the session wants to send (*data valid until the next call);
 * returns their length, 0 when there is nothing, or a negative nghttp2 error. */
ssize_t conn_pull(conn_t *c, const uint8_t **data);

/* Asks for the output to be flushed when the socket is writable. */
void conn_want_write(conn_t *c);

/* Graceful shutdown: CLOSE(shutting down) on every tunnel, then GOAWAY. */
void conn_drain(conn_t *c);

/* A tunnel opened or finished closing (keeps nopen and the idle clock). */
void conn_tunnel_opened(conn_t *c);
void conn_tunnel_gone(conn_t *c, int was_open);

/* Frees the connection and its tunnels. Never call it from an nghttp2 or
 * tunnel callback; call it from the connection's own watcher or the server. */
void conn_free(conn_t *c);

#endif
