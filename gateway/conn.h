/*
 * conn.h — one client connection: TCP socket, TLS, HTTP/2 session, tunnels.
 *
 * The connection is the single owner of everything it holds: the socket, the
 * SSL object, the nghttp2 session, its output buffer, its timer, a reference
 * to the config snapshot it started with, and its tunnels (one per stream).
 * It is the tunnels' host (tunnel.h): tunnels reach the HTTP/2 session only
 * through the host operations conn.c provides.
 *
 * nghttp2 does no I/O: bytes read from TLS go to nghttp2_session_mem_recv;
 * frames come out of nghttp2_session_mem_send into a bounded output buffer.
 * Output is flushed once per loop iteration (the server's prepare watcher
 * calls conn_flush for every connection that asked with conn_want_write);
 * the write watcher is armed only when TLS could not take everything, or more
 * frames wait than one flush writes (WRITES_PER_EVENT, for fairness).
 *
 * Closing is deferred: conn_close may be called from any callback; it stops
 * the connection's watchers at once and the server frees it at the end of
 * the loop iteration.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "h2mem.h"
#include "srclimit.h"
#include "tunnel.h"

struct server;

#define CONN_OUT_CAP 32768u  /* TLS output buffer: one write's worth of frames */

enum conn_state {
    CONN_HANDSHAKE = 0,
    CONN_H2,
};

typedef struct conn {
    struct server *srv;
    list_t _link;               /* the server's list of live connections */
    struct conn *_flush_next;   /* the server's flush list */
    struct conn *_dead_next;    /* the server's list of connections to free */
    config_t *cfg;              /* the snapshot this connection started with (a reference) */
    srclimit_key_t source;      /* counts as its source's pending connection until a tunnel opens */
    tunnel_host_t host;         /* what its tunnels see; host.tunnels is the list */
    uint64_t id;
    char peer[64];
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    enum conn_state state;
    ev_io io;
    ev_timer timer;             /* handshake, first-tunnel and idle deadlines */
    ev_timer health;            /* HTTP/2 only: keepalive PINGs and the write-stall check */
    ev_idle more;               /* read-ahead left records in TLS after a read's share */
    uint64_t last_rx;           /* monotonic ns: bytes last read from the client */
    uint64_t last_drain;        /* monotonic ns: TLS last took output (or there was none) */
    uint64_t ping_sent;         /* monotonic ns of our unanswered PING; 0 when none */
    uint64_t released_at;       /* monotonic ns its idle buffers were last released; 0: never */
    uint64_t frame_refill;      /* monotonic ns of the last budget refill */
    uint32_t frame_tokens;      /* control frames the client may still send this second */
    uint32_t auth_failures;     /* 401s on this connection */
    uint32_t header_offences;   /* header blocks over the advertised limits */
    uint32_t hdr_count;         /* the header block being received: fields ... */
    size_t hdr_bytes;           /* ... and RFC 7541 §4.1 size (name + value + 32 each) */
    uint64_t rx_late_at;        /* monotonic ns a read last found bytes older than RX_LATE */
    uint64_t rcvbuf_at;         /* monotonic ns rcvbuf last changed */
    uint32_t rcvbuf;            /* SO_RCVBUF we set (conn_rcvbuf_adapt); 0: the kernel's */
    uint64_t since;             /* monotonic ns: accept, or last moment with no tunnels */
    uint64_t accepted;          /* monotonic ns: accept */
    unsigned ever_opened : 1;   /* a tunnel has opened on this connection */
    unsigned draining : 1;      /* GOAWAY sent; refuse new streams */
    unsigned peeked : 1;        /* first byte checked for a TLS record */
    unsigned proxy_wait : 1;    /* a PROXY protocol header comes first (conn_expect_proxy) */
    unsigned write_blocked : 1; /* SSL_write wants to be retried as it was */
    unsigned in_flush : 1;      /* on the server's flush list */
    unsigned closing : 1;       /* conn_close called: on the dead list, watchers stopped */
    unsigned notice_sent : 1;   /* draining: GOAWAY(2^31-1) sent, final GOAWAY after the PING ack */
    uint32_t nopen;             /* tunnels open or closing */
    uint32_t opened_total;      /* tunnels opened or resumed on it, for its close line */
    enum conn_end end;          /* why it ends; the first cause wins (end_set) */
    unsigned end_set : 1;
    const uint8_t *pend;        /* part of nghttp2's last mem_send not yet buffered */
    size_t pend_len;
    size_t out_off, out_len;
    uint8_t *out;               /* CONN_OUT_CAP bytes while there is output; NULL otherwise */
    uint8_t *proxy_buf;         /* PROXYPROTO_MAX bytes while proxy_wait; NULL otherwise */
    h2mem_t h2mem;              /* h2's frame buffer, mapped (released when quiet) */
    size_t proxy_len;
} conn_t;

/* Session callbacks and options shared by every connection of a server. */
int conn_h2_setup(nghttp2_session_callbacks **cbs, nghttp2_option **opt);

/* Takes ownership of an accepted, non-blocking socket, and of the source key
 * admitted for it, and starts the TLS handshake. Returns NULL (socket closed,
 * key released) when out of memory. */
conn_t *conn_new(struct server *srv, int fd, const struct sockaddr *peer, socklen_t peerlen,
                 srclimit_key_t source);

/* c's listener has "proxy_protocol" ($.listen, docs/configuration.md): a
 * PROXY protocol v1 or v2 header comes before the TLS ClientHello, within
 * the handshake timeout. c was created with a zeroed source key: its real
 * client address is admitted by srclimit once the header is read, and names
 * it in logs. Call right after conn_new. */
void conn_expect_proxy(conn_t *c);

/* A connection with no socket and no TLS, already speaking HTTP/2: the
 * in-memory test harness drives it with conn_feed and conn_pull. */
conn_t *conn_new_memory(struct server *srv);

/* Hands received bytes to the HTTP/2 session. Returns 0 or a negative nghttp2
 * error (the connection is then finished). */
int conn_feed(conn_t *c, const uint8_t *data, size_t len);

/* The next bytes the session wants to send (*data valid until the next call);
 * returns their length, 0 when there is nothing, or a negative nghttp2 error. */
ssize_t conn_pull(conn_t *c, const uint8_t **data);

/* Asks for the output to be flushed at the end of this loop iteration. */
void conn_want_write(conn_t *c);

/* Writes what is pending (called by the server once per loop iteration). */
void conn_flush(conn_t *c);

/* Finishes the connection: stops its watchers now; the server frees it at the
 * end of the loop iteration. Safe from any callback; idempotent. why is
 * counted (server_counters_t.conns_closed) and logged, unless an earlier
 * cause was already recorded (a GOAWAY's reason, say). */
void conn_close(conn_t *c, enum conn_end why);

/* Drain, first step (server_drain's GOAWAY phase): new streams are refused
 * and the client is told with GOAWAY, in two steps (RFC 9113 §6.8); open
 * tunnels keep relaying both ways. Idempotent; no-op before HTTP/2. */
void conn_refuse_new(conn_t *c);

/* Drain, last step: conn_refuse_new, then CLOSE(shutting down) on every open
 * tunnel (proto/README.md §4). Idempotent; no-op before HTTP/2. */
void conn_drain(conn_t *c);

/* Frees the connection and its tunnels at once. Only the server calls it,
 * outside every callback of the connection; everyone else uses conn_close. */
void conn_free(conn_t *c);

#endif
