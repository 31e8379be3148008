/*
 * shim_internal.h — the client library's objects, shared by client.c (the
 * connection and its I/O), tls.c, h2.c (the nghttp2 session) and tunnel.c.
 *
 * Layers, each using only the one below:
 *   transport  shim_dial_t yields a connected byte pipe (shim_dial.h,
 *              shim_pipe.h); nothing above it knows what carries the bytes
 *   TLS        SSL over two memory BIOs (tls.c): ciphertext moves between
 *              the BIOs and the pipe, never through OpenSSL's own I/O; one
 *              sluice_tls_t (SSL_CTX and session cache) per process
 *   HTTP/2     nghttp2 session driven by mem_recv / mem_send only
 *   tunnels    one stream each, capsules in both bodies (proto/sendq.h,
 *              proto/dispatch.h)
 *
 * Lifetime. The application owns the client; the client owns its tunnels.
 * Nothing is freed while an application callback or an nghttp2 callback is
 * on the stack: such code only records what happened and "kicks" the client,
 * and the client's ev_prepare watcher (which runs before the loop next
 * blocks) flushes output, reports results and frees what is finished. A
 * tunnel is freed once its on_close has been delivered and nghttp2 no longer
 * refers to its stream.
 *
 * Reconnect (reconnect_max_ms set). A transient end of the connection tears
 * down the pipe, TLS and HTTP/2 but keeps the tunnels that were neither
 * closing nor finished: each is "detached" (no stream, _wait_submit set, its
 * uplink queue kept within its bounds) and sent again on the next connection,
 * with tunnel-resume when the gateway gave it a token. The same detach
 * happens on a live connection when the gateway closes a tunnel with
 * CLOSE(shutting down) or CLOSE(credential expired), or answers a resume with
 * 410: the stream is reset and the tunnel re-submitted once it is gone.
 */
#ifndef SHIM_INTERNAL_H
#define SHIM_INTERNAL_H

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/list.h"
#include "../../proto/capsule.h"
#include "../../proto/sendq.h"
#include "../../proto/token.h"
#include "shim_dial.h"
#include "shim_pipe.h"
#include "sluice_shim.h"

/* The tunnel whose _link is pos (common/list.h). */
#define SHIM_TUNNEL(pos) LIST_ENTRY(pos, sluice_tunnel_t, _link)

#define SHIM_REASON_MAX 512u     /* refusal body / CLOSE reason kept for on_close */
#define SHIM_DETAIL_MAX 320u
#define SHIM_AUTHORITY_MAX 300u  /* "server-name:port", bracketed IPv6 */
#define SHIM_IO_CHUNK 16384u      /* one read(2) / SSL_read / coalesced SSL_write */
#define SHIM_READS_PER_EVENT 8    /* fairness: other watchers get a turn */
#define SHIM_TLS_OUT_HIGH 4096u   /* stop pulling HTTP/2 frames above this backlog */
#define SHIM_STREAM_WINDOW (256u * 1024u)
#define SHIM_CONN_WINDOW (4u * 1024u * 1024u)
#define SHIM_TOKEN_MAX TOKEN_TEXT_LEN /* a tunnel-session token (proto/token.h) */
#define SHIM_RECONNECT_MIN_MS 250u

enum shim_client_phase {
    SHIM_PHASE_IDLE = 0,  /* created, connect not called */
    SHIM_PHASE_WAIT,      /* reconnect back-off: _retry runs, tunnels wait */
    SHIM_PHASE_DIALING,   /* transport connecting */
    SHIM_PHASE_TLS,       /* TLS handshake */
    SHIM_PHASE_READY,     /* HTTP/2 up */
    SHIM_PHASE_CLOSING,   /* sluice_client_close: draining, GOAWAY sent */
    SHIM_PHASE_DONE,      /* torn down (FAILED or CLOSED) */
};

struct st_sluice_tunnel_t {
    sluice_client_t *client;
    list_t _link;          /* the client's _tunnels, in creation order */
    /* Callbacks and user data; the strings in here are not used. */
    sluice_tunnel_opts_t _cb;
    char *_path;
    char *_username;
    char *_credential;
    int32_t stream_id;     /* 0 until submitted */
    int status;            /* final response status, 0 until the headers */
    int _hdr_status;       /* :status of the HEADERS being received */
    int _stream_gone;      /* nghttp2 holds no reference to this tunnel */
    int _closing;          /* sluice_tunnel_close was called */
    int _finished;         /* outcome decided; on_close pending or done */
    int _reported;         /* on_close delivered */
    int _rst_after_eof;    /* reset the stream once the body's end is sent */
    int _result_status;
    uint64_t _result_code;
    char _reason[SHIM_REASON_MAX + 1];
    size_t _reason_len;    /* refusal body bytes collected */
    uint32_t _response_timeout_ms;
    uint32_t _close_timeout_ms;
    sendq_t up;
    capsule_reader_t _reader;
    uint8_t *_rbuf;        /* reassembly buffer of _reader */
    ev_timer _timer;       /* response deadline, then close deadline */
    uint64_t rx_packets, rx_bytes, rx_dropped, rx_discarded;

    /* Session resume and re-submission (see above). */
    char _token[SHIM_TOKEN_MAX + 1]; /* "" until a 200 carried tunnel-session */
    char _hdr_token[SHIM_TOKEN_MAX + 1]; /* tunnel-session of the HEADERS being received */
    char _hdr_node[SHIM_AUTHORITY_MAX]; /* tunnel-node of the HEADERS being received (a 421) */
    int _hdr_stamps;       /* the HEADERS being received accept stamps (tunnel-stamps: ?1) */
    uint32_t _hdr_media_age; /* their tunnel-media-age (ms); 0: absent or not a number */
    uint64_t _media_age_ns;  /* the tunnel's own media age limit (options) */
    int _resuming;         /* the current request carries tunnel-resume */
    int _opened;           /* a 200 was seen on some stream */
    int _detach;           /* the stream is being dropped: its end does not finish t */
    int _wait_submit;      /* send a request on the next usable connection */
    uint32_t resumes, reopens;

    /* PING capsules (keepalive through proxies, RTT). */
    uint32_t _ping_interval_ms; /* UINT32_MAX: never */
    ev_timer _ping;
    uint8_t _ping_value[8];
    uint64_t _ping_sent_ns;     /* 0: no PING outstanding */
    uint64_t _ping_seq;
    uint32_t rtt_us, rtt_min_us;
};

struct st_sluice_client_t {
    struct ev_loop *loop;
    void (*on_state)(sluice_client_t *, sluice_state_t, const char *, void *);
    void *ud;
    char *_host;
    char *_server_name;
    uint16_t port;
    uint32_t _connect_timeout_ms;
    uint32_t _handshake_timeout_ms;
    uint32_t _keepalive_ms;
    char _authority[SHIM_AUTHORITY_MAX];
    /* Proxy settings (sluice_client_opts_t), copied; NULL: not given. */
    char *_proxy;
    char *_proxy_pac;
    char *_proxy_user;
    char *_proxy_password;
    int _proxy_use_env;
    char *_pac_script;    /* the PAC, loaded on the first connect */

    enum shim_client_phase phase;
    shim_dial_t _dial;
    shim_pipe_t *_pipe;   /* the transport, once dialed */
    int _want_write;      /* TLS output waits for the pipe */
    size_t _kbudget;      /* bytes the pipe may take before we wait for it to be writable */
    ev_timer _timer;      /* TLS handshake deadline */
    ev_timer _keepalive;
    ev_timer _retry;      /* reconnect back-off */
    ev_prepare _prep;     /* deferred work: flush, report, free */
    uint64_t _last_rx;    /* monotonic ns (common/compat.h) of the last bytes read */

    sluice_tls_t *_tls;   /* a reference */
    SSL *_ssl;
    BIO *_rbio;           /* pipe -> TLS */
    BIO *_wbio;           /* TLS -> pipe */
    int _peer_close_notify;
    int _resumed;         /* the handshake resumed a session */
    nghttp2_session *_h2;

    list_t _tunnels;      /* sluice_tunnel_t._link, in creation order */

    /* Failure class and reconnect. */
    sluice_fail_t _fail;  /* of the last failure; NONE until one */
    sluice_fail_t _end_fail; /* of the end being torn down */
    uint32_t _reconnect_min_ms, _reconnect_max_ms; /* max 0: no reconnect */
    unsigned _attempt;    /* failures since the last CONNECTED */
    uint32_t _rng;        /* jitter state (xorshift32) */
    int _app_closed;      /* sluice_client_close was called: never reconnect */
    int _report_reconnecting;
    char _reconnect_detail[SHIM_DETAIL_MAX + 32];
    /* A resume answered 421 (docs/shim.md, "Fleet redirect"): the next
     * connection goes to the owning node; TLS name and :authority stay. */
    int _redir;           /* 0 none; 1 the next dial goes there; 2 this connection did */
    char _redir_host[SHIM_AUTHORITY_MAX];
    uint16_t _redir_port;
    /* sluice_client_set_credential: replaces the tunnels' own when set. */
    char *_cred_user;
    char *_cred;

    /* Deferred work and reports. */
    int _depth;           /* application callbacks on the stack */
    int _kicked;
    int _free_requested;
    int _report_connecting;
    int _report_connected;
    int _end_pending;     /* teardown requested with _end_state/_detail */
    int _report_end;      /* final state to report after the tunnels */
    sluice_state_t _end_state;
    char _detail[SHIM_DETAIL_MAX];
    int _goaway_recv;
    uint32_t _goaway_code;
    char _connecting_detail[SHIM_DETAIL_MAX]; /* authority and route being tried */
    char _connected_detail[SHIM_DETAIL_MAX];
    char _goaway[SHIM_DETAIL_MAX];

    uint8_t _buf[SHIM_IO_CHUNK];   /* pipe reads; scratch */
    uint8_t _plain[SHIM_IO_CHUNK]; /* SSL_read output */
    uint8_t _tx[SHIM_IO_CHUNK];    /* HTTP/2 output coalesced into TLS records */
    size_t _txlen;
};

/* client.c */
void shim_client__kick(sluice_client_t *c);
/* Ends the connection with state (FAILED or CLOSED) for the reason fail and
 * the formatted detail; with reconnect on and a transient fail the client
 * reconnects instead (see above). */
void shim_client__end(sluice_client_t *c, sluice_state_t state, sluice_fail_t fail,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int shim_client__usable(const sluice_client_t *c);
/* t's resume was answered 421 with tunnel-node node (proto/README.md §8.1):
 * with reconnect on and no redirect yet on this connection, the client ends
 * it and connects to node at once, where its tunnels resume. Returns 1 when
 * it does (t keeps its token), 0 otherwise (the caller treats it as a 410). */
int shim_client__redirect(sluice_client_t *c, const char *node);
/* 1 when the client reconnects after transient failures. */
int shim_client__reconnects(const sluice_client_t *c);
/* Back-off before reconnect attempt number attempt (0: the first): min
 * doubling per attempt up to max, then jittered by +-25 % from rnd (uniform
 * over uint32_t) and kept within [min, max]. Pure. */
uint32_t shim_backoff_ms(uint32_t min_ms, uint32_t max_ms, unsigned attempt, uint32_t rnd);

/* tls.c */
sluice_tls_t *shim_tls__ref(sluice_tls_t *tls); /* another reference; returns tls */
/* A new SSL for c over fresh BIOs, with c's cached session if any. 0 or -1
 * with err. */
int shim_tls__begin(sluice_client_t *c, char *err, size_t errlen);
/* 1 when the handshake is done and the peer acceptable, 0 when it needs more
 * input, -1 with err and *fail (CERT, ALPN or TLS). */
int shim_tls__handshake(sluice_client_t *c, char *err, size_t errlen, sluice_fail_t *fail);
/* One read from the pipe into the read BIO: bytes moved (> 0), 0 at end of
 * stream, SHIM_PIPE_AGAIN, or SHIM_PIPE_ERROR (c->_pipe->err says why). */
ssize_t shim_tls__pull(sluice_client_t *c);
/* Writes the write BIO's bytes to the pipe: 0 when all are out, 1 when the
 * rest waits for the pipe to be writable, -1 on error (c->_pipe->err). */
int shim_tls__push(sluice_client_t *c);
int shim_tls__resumed(const sluice_client_t *c);
void shim_tls__free(sluice_client_t *c);

/* h2.c */
int shim_h2__session_new(sluice_client_t *c, char *err, size_t errlen);
int shim_h2__submit(sluice_tunnel_t *t);

/* tunnel.c */
void shim_tunnel__finish(sluice_tunnel_t *t, int status, uint64_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void shim_tunnel__wake(sluice_tunnel_t *t);
void shim_tunnel__end_uplink(sluice_tunnel_t *t);
void shim_tunnel__start_timer(sluice_tunnel_t *t, uint32_t ms);
void shim_tunnel__free(sluice_tunnel_t *t);
/* Sends t's request (the client is READY); a failure finishes t. */
void shim_tunnel__submit(sluice_tunnel_t *t);
void shim_tunnel__on_open(sluice_tunnel_t *t);
void shim_tunnel__body(sluice_tunnel_t *t, const uint8_t *data, size_t len);
void shim_tunnel__remote_end(sluice_tunnel_t *t);
void shim_tunnel__stream_closed(sluice_tunnel_t *t, uint32_t error_code);
/* Forgets t's stream (the connection is gone or the stream ended for a
 * re-attach) and marks t for a new request. */
void shim_tunnel__reset_stream(sluice_tunnel_t *t);
/* Drops t's live stream (RST_STREAM(CANCEL)) and re-submits t once it is
 * gone; used for CLOSE(shutting down / credential expired) and 410. */
void shim_tunnel__detach(sluice_tunnel_t *t);
/* The response to t's request is a 200 (counts resumes/reopens, PING timer). */
void shim_tunnel__opened(sluice_tunnel_t *t);
/* The response is final and not 200: 1 when t retries (410 to a resume). */
int shim_tunnel__refused(sluice_tunnel_t *t);
int shim_tunnel__header_ok(const char *s);

#endif
