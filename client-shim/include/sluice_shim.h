/*
 * sluice_shim.h — client library for sluice tunnels.
 *
 * A sluice_client_t is one HTTP/2-over-TLS connection to a sluice gateway. On
 * it the application opens tunnels (sluice_tunnel_t), each one HTTP/2 stream
 * `POST /v1/tunnel/{tenant}/{kind}` whose request and response bodies carry
 * UDP payloads as RFC 9297 capsules. The library runs on the caller's libev
 * loop and never blocks it, except for name resolution (see
 * sluice_client_connect).
 *
 * Threading: none. Every function must be called from the loop's thread.
 *
 * Callbacks: every callback may call any function of this API, including
 * sluice_client_free() and sluice_tunnel_close(); the library defers its own
 * clean-up until the callback has returned. Functions never call back into
 * the application synchronously: events are delivered from the loop.
 *
 * Ownership: option strings are copied; the caller keeps its own. A tunnel is
 * owned by the library and stays valid until its on_close callback returns
 * (after which the pointer must not be used); a client is owned by the caller
 * and released with sluice_client_free().
 */
#ifndef SLUICE_SHIM_H
#define SLUICE_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop;

#define SLUICE_SHIM_VERSION "0.1.0"

/* Largest UDP payload a tunnel carries: the capsule value limit (65535) less
 * the DATAGRAM context id. Longer payloads are refused by sluice_tunnel_send. */
#define SLUICE_MAX_PAYLOAD 65534u

/* Return codes. 0 is success; errors are negative. */
enum sluice_err {
    SLUICE_OK = 0,
    SLUICE_ERR_INVALID = -1, /* a required argument is missing or malformed */
    SLUICE_ERR_STATE = -2,   /* not allowed in the object's current state */
    SLUICE_ERR_NOMEM = -3,   /* allocation failed */
    SLUICE_ERR_TOO_BIG = -4, /* payload longer than SLUICE_MAX_PAYLOAD */
    SLUICE_ERR_FULL = -5,    /* signaling queue full: this packet was dropped */
};

/* Static text for a sluice_err ("ok" for >= 0). */
const char *sluice_strerror(int err);

/* CLOSE capsule codes (the wire values of proto/README.md §CLOSE). */
enum sluice_close_code {
    SLUICE_CLOSE_NORMAL = 0x00,
    SLUICE_CLOSE_IDLE_TIMEOUT = 0x01,
    SLUICE_CLOSE_PROTOCOL_ERROR = 0x02,
    SLUICE_CLOSE_CREDENTIAL_EXPIRED = 0x03,
    SLUICE_CLOSE_TENANT_DISABLED = 0x04,
    SLUICE_CLOSE_BACKEND_UNREACHABLE = 0x05,
    SLUICE_CLOSE_OVERLOAD = 0x06,
    SLUICE_CLOSE_SHUTTING_DOWN = 0x07,
    SLUICE_CLOSE_RATE_LIMITED = 0x08,
    SLUICE_CLOSE_INTERNAL_ERROR = 0x09,
    SLUICE_CLOSE_TAKEN_OVER = 0x0a, /* another attachment resumed this session */
};

/* close_code reported by on_close when the tunnel ended without a CLOSE
 * capsule: refused, reset, timed out or the connection was lost. The reason
 * string then says what happened. */
#define SLUICE_CLOSE_NO_CODE UINT64_MAX

/* Static name of a close code for logs: "normal", "idle timeout", ...;
 * "none" for SLUICE_CLOSE_NO_CODE, "unknown" for a code this library does
 * not know. */
const char *sluice_close_name(uint64_t code);

/* ---------------------------------------------------------------- TLS */

typedef struct st_sluice_tls_t sluice_tls_t;

/* A TLS client context to share between clients: trust anchors, TLS 1.2 or
 * later, ALPN h2, and a cache of the last session ticket of up to 8 gateways
 * (by server name and port). A client made with it resumes the session of an
 * earlier client to the same gateway (RFC 8446 §2.2): a reconnect costs one
 * round trip and no certificate check. Each ticket is used once (RFC 8446
 * Appendix C.4); the new connection brings fresh ones.
 *   ca_file  PEM trust anchors; NULL: the system trust store.
 * Returns the context, or NULL with a NUL-terminated message in err (may be
 * NULL) naming the CA file and the cause when it cannot be loaded, or when
 * memory runs out. Reference counted: every client made with it holds a
 * reference, so the caller may sluice_tls_free() its own at any time. */
sluice_tls_t *sluice_tls_new(const char *ca_file, char *err, size_t errlen);

/* Drops the caller's reference; the context is released with the last client
 * that uses it. NULL is a no-op. */
void sluice_tls_free(sluice_tls_t *tls);

/* ---------------------------------------------------------------- client */

typedef struct st_sluice_client_t sluice_client_t;
typedef struct st_sluice_tunnel_t sluice_tunnel_t;

typedef enum sluice_state {
    SLUICE_CONNECTING = 0, /* connect started (detail: "host:port" and the route) */
    SLUICE_CONNECTED = 1,  /* TLS up, ALPN h2, SETTINGS sent (detail: "alpn=h2 TLSv1.3",
                            * then " resumed" when an earlier session was resumed) */
    SLUICE_FAILED = 2,     /* connection failed or broke; detail says why */
    SLUICE_CLOSED = 3,     /* orderly end: sluice_client_close(), or the gateway sent
                            * GOAWAY and finished; detail says which */
    SLUICE_RECONNECTING = 4, /* (with reconnect on) the connection failed or ended for a
                              * transient reason; the client connects again after the
                              * back-off the detail names, and its tunnels wait */
} sluice_state_t;

/* Why a connection attempt or a connection failed (sluice_client_failure).
 * Every FAILED and RECONNECTING report carries one. */
typedef enum sluice_fail {
    SLUICE_FAIL_NONE = 0,
    SLUICE_FAIL_RESOLVE,       /* the gateway's name does not resolve */
    SLUICE_FAIL_CONNECT,       /* TCP connect refused or unreachable */
    SLUICE_FAIL_TIMEOUT,       /* connect or TLS handshake deadline passed */
    SLUICE_FAIL_TLS,           /* TLS failed other than by verification */
    SLUICE_FAIL_CERT,          /* certificate or name verification failed (permanent) */
    SLUICE_FAIL_ALPN,          /* the gateway does not speak h2 (permanent) */
    SLUICE_FAIL_PROTOCOL,      /* HTTP/2 error */
    SLUICE_FAIL_LOST,          /* an established connection broke (reset, EOF, keepalive) */
    SLUICE_FAIL_GOAWAY,        /* the gateway ended the connection (GOAWAY, shutting down) */
    SLUICE_FAIL_PROXY_UNREACHABLE, /* the proxy cannot be resolved or connected to */
    SLUICE_FAIL_PROXY_AUTH,    /* the proxy answered 407 (detail names the offered schemes) */
    SLUICE_FAIL_PROXY_REFUSED, /* the proxy refused the CONNECT (detail: its status line) */
    SLUICE_FAIL_PROXY_MALFORMED, /* the proxy's reply is not valid HTTP */
    SLUICE_FAIL_PROXY_TIMEOUT, /* the proxy did not complete the CONNECT in time */
    SLUICE_FAIL_PROXY_CONFIG,  /* the proxy settings are unusable (bad URL, PAC error) */
} sluice_fail_t;

/* Static name of a failure ("none", "resolve", "proxy auth", ...). */
const char *sluice_fail_name(sluice_fail_t fail);

/* 1 when retrying cannot help without a change of configuration: CERT, ALPN,
 * PROXY_AUTH, PROXY_REFUSED, PROXY_CONFIG. */
int sluice_fail_permanent(sluice_fail_t fail);

/* Static name of a state ("connecting", ...). */
const char *sluice_state_name(sluice_state_t state);

typedef struct sluice_client_opts {
    const char *host;        /* required: DNS name or IP literal (IPv6 without brackets) */
    uint16_t port;           /* 0: 443 */
    const char *server_name; /* name to verify and send as SNI; NULL: host */
    const char *ca_file;     /* PEM trust anchors; NULL: the system trust store.
                              * Must be NULL with tls (give it to sluice_tls_new). */
    uint32_t connect_timeout_ms;   /* TCP connect deadline; 0: 10000 */
    uint32_t handshake_timeout_ms; /* TLS handshake deadline; 0: 10000 */
    /* HTTP/2 PING after this much silence from the gateway; the connection
     * fails when a second interval passes without any frame. 0: off. */
    uint32_t keepalive_ms;
    /* State changes. FAILED and CLOSED are final and reported once, after the
     * on_close of every tunnel. Not called from sluice_client_free(). */
    void (*on_state)(sluice_client_t *client, sluice_state_t state, const char *detail,
                     void *ud);
    void *ud;
    /* TLS context shared with other clients (sluice_tls_new), so that
     * reconnects resume their session. NULL: the client makes its own from
     * ca_file, and shares no session. (New fields go last, so that older
     * initialisers keep their meaning.) */
    sluice_tls_t *tls;

    /* Proxy for the connection (docs/shim.md, "Proxy discovery"), in order:
     *   proxy      "http://[user:pass@]host:port" (or https://, socks5://...),
     *              or "none" for a direct connection; NULL: next rule;
     *   proxy_pac  a PAC file path or http(s) URL, evaluated for the gateway
     *              URL; its whole answer list is tried in order; NULL: next;
     *   use_env    1: HTTPS_PROXY / https_proxy and NO_PROXY / no_proxy.
     * With none of them, the connection is direct. */
    const char *proxy;
    const char *proxy_pac;
    int proxy_use_env;
    /* Proxy credentials when the URL has none (Basic, Digest, NTLM or
     * Negotiate: whatever the proxy offers). NULL: none. */
    const char *proxy_user;
    const char *proxy_password;

    /* Reconnect: when reconnect_max_ms is non-zero, a transient failure
     * (sluice_fail_permanent() == 0) is reported as RECONNECTING instead of
     * FAILED; the client connects again after an exponential back-off from
     * reconnect_min_ms (0: 250) doubling up to reconnect_max_ms, each wait
     * jittered by +-25 %. Open tunnels that carry a resume token survive and
     * are resumed on the new connection (proto/README.md §8.1); the others
     * are opened again. */
    uint32_t reconnect_min_ms;
    uint32_t reconnect_max_ms;
} sluice_client_opts_t;

/* Creates an idle client on loop; no I/O happens until sluice_client_connect.
 * Returns the client, or NULL with a NUL-terminated message in err (may be
 * NULL) when opts are invalid (tls and ca_file both given, among others), the
 * CA file cannot be loaded or memory runs out. The caller owns the client and
 * frees it with sluice_client_free(). */
sluice_client_t *sluice_client_new(struct ev_loop *loop, const sluice_client_opts_t *opts,
                                   char *err, size_t errlen);

/* Starts connecting: name resolution, TCP, TLS (certificate chain and name
 * verified), ALPN h2, HTTP/2 preface. The outcome arrives through on_state:
 * CONNECTED, or FAILED with a detail naming the cause (resolution, refused,
 * certificate error text, ALPN, timeout). Name resolution uses getaddrinfo()
 * and blocks the loop while it runs; pass an IP literal to avoid that.
 * Returns 0, or SLUICE_ERR_STATE when already called. */
int sluice_client_connect(sluice_client_t *client);

/* Orderly close: every tunnel is closed as by sluice_tunnel_close, a GOAWAY
 * is sent, and once the streams are done the TLS connection is shut down.
 * on_state reports CLOSED at the end (FAILED if the connection breaks first).
 * Bound the wait with your own timer and sluice_client_free(). No-op once
 * closing or finished. */
void sluice_client_close(sluice_client_t *client);

/* Releases the client and every tunnel on it, at once and without calling
 * any callback; tunnel pointers become invalid. Safe inside any callback (the
 * memory is released when the callback returns). NULL is a no-op. */
void sluice_client_free(sluice_client_t *client);

/* Current state (CONNECTING also before sluice_client_connect). */
sluice_state_t sluice_client_state(const sluice_client_t *client);

/* 1 when the client's TLS connection resumed an earlier session (see
 * sluice_tls_new), 0 when it made a new one or is not connected yet. */
int sluice_client_tls_resumed(const sluice_client_t *client);

/* Why the last connection attempt or connection failed; SLUICE_FAIL_NONE
 * while none has. */
sluice_fail_t sluice_client_failure(const sluice_client_t *client);

/* The route the connection runs over ("direct", "proxy 127.0.0.1:3128",
 * "https proxy p.corp:443", never credentials), static while the connection
 * lasts; NULL before the transport is up. The CONNECTING detail names the
 * route being tried. */
const char *sluice_client_route(const sluice_client_t *client);

/* A fresh credential for every request from now on (tunnel opens and
 * resumes), replacing the tunnels' own. A tunnel the gateway closes with
 * CLOSE(credential expired) is resumed with it at once. Strings are copied.
 * Returns 0, SLUICE_ERR_INVALID or SLUICE_ERR_NOMEM. */
int sluice_client_set_credential(sluice_client_t *client, const char *username,
                                 const char *credential);

/* ---------------------------------------------------------------- tunnels */

/* Why the application uses a tunnel rather than plain UDP to the backend,
 * sent to the gateway as tunnel-fallback (proto/README.md §2.1) so that its
 * operator sees what share of calls needed the relay and why. A report
 * only: it changes nothing in how the tunnel works. With a UDP check
 * (below), its result's reason gives the value. */
typedef enum sluice_fallback {
    SLUICE_FALLBACK_UNSET = 0,     /* not reported: no header */
    SLUICE_FALLBACK_FORCED,        /* direct UDP was not tried (not configured, or off) */
    SLUICE_FALLBACK_UDP_BLOCKED,   /* the check ended SLUICE_UDP_CHECK_BLOCKED */
    SLUICE_FALLBACK_UDP_REFUSED,   /* ... SLUICE_UDP_CHECK_REFUSED */
    SLUICE_FALLBACK_NO_ANSWER,     /* ... SLUICE_UDP_CHECK_NO_ANSWER */
    SLUICE_FALLBACK_DIRECT_SILENT, /* a direct flow went silent mid-call */
    SLUICE_FALLBACK_UDP_ERROR,     /* ... SLUICE_UDP_CHECK_ERROR, or no check could run */
} sluice_fallback_t;

typedef struct sluice_tunnel_opts {
    const char *tenant;     /* required; 1 to 64 of [A-Za-z0-9._-] (proto/name.h) */
    const char *kind;       /* required: "sfu" or "turn" (any token is sent as given) */
    const char *region;     /* optional, same rule as tenant; NULL or "" for the gateway's default */
    const char *username;   /* required: tunnel-username header */
    const char *credential; /* required: tunnel-credential header */
    /* Uplink queue bounds in bytes (0: 65536 each). Media drops its oldest
     * packets when full; signaling refuses new packets when full. */
    size_t media_queue_bytes;
    size_t signal_queue_bytes;
    /* Queued media older than this is dropped instead of sent (0: 500 ms);
     * lowered to the gateway's own limit when its 200 names a lower one
     * (tunnel-media-age, proto/README.md §5.1.1). */
    uint32_t media_max_age_ms;
    /* Deadline for the response headers and for the gateway to end the stream
     * after sluice_tunnel_close (0: 10000 and 2000). */
    uint32_t response_timeout_ms;
    uint32_t close_timeout_ms;
    /* PING capsule (keepalive through proxies, RTT) every this many ms
     * (0: 20000; UINT32_MAX: never). */
    uint32_t ping_interval_ms;
    /* Sent as tunnel-fallback on every request of the tunnel (opens and
     * resumes; the gateway counts opens). The route to the gateway goes
     * along by itself as tunnel-route: direct or proxy. */
    sluice_fallback_t fallback;

    /* The gateway answered 200: the tunnel carries packets both ways. Called
     * again after each resume or re-open on a new connection (see the stats'
     * resumes and reopens). */
    void (*on_open)(sluice_tunnel_t *tunnel, void *ud);
    /* One UDP payload from the gateway (is_signal: it came as a SIGNAL capsule).
     * p is valid during the call only. */
    void (*on_packet)(sluice_tunnel_t *tunnel, const uint8_t *p, size_t len, int is_signal,
                      void *ud);
    /* The tunnel ended; called exactly once unless the client is freed first.
     *   http_status  200, the refusing status (reason = its text/plain body, at
     *                most 512 bytes), or 0 when no response arrived;
     *   close_code   the gateway's CLOSE code, SLUICE_CLOSE_NORMAL after
     *                sluice_tunnel_close, or SLUICE_CLOSE_NO_CODE;
     *   reason       NUL-terminated, never NULL; valid during the call.
     * The tunnel is released when this returns. */
    void (*on_close)(sluice_tunnel_t *tunnel, int http_status, uint64_t close_code,
                     const char *reason, void *ud);
    void *ud;
} sluice_tunnel_opts_t;

/* Opens a tunnel. Allowed while the client connects (the request waits until
 * it is connected) or is connected. Packets given to sluice_tunnel_send are
 * queued until the gateway answers 200, within the queue bounds. Returns the
 * tunnel (owned by the library), or NULL when the arguments are invalid, the
 * client is closing or finished, or memory runs out. */
sluice_tunnel_t *sluice_tunnel_open(sluice_client_t *client, const sluice_tunnel_opts_t *opts);

/* Queues one UDP payload. RFC 7983 first-byte classification decides its
 * class: STUN and DTLS go as SIGNAL capsules ahead of media, the rest as
 * DATAGRAM capsules. The payload is copied. Returns 0 when queued (older
 * media may have been dropped to make room; see the stats), SLUICE_ERR_FULL
 * when a signaling packet found its queue full (dropped and counted),
 * SLUICE_ERR_TOO_BIG, or SLUICE_ERR_STATE after sluice_tunnel_close or once
 * the tunnel has ended. */
int sluice_tunnel_send(sluice_tunnel_t *tunnel, const uint8_t *p, size_t len);

/* Ends the tunnel: queued packets are sent, then CLOSE(normal) and the end of
 * the request body; on_close follows when the gateway has ended the stream or
 * close_timeout_ms passed. on_packet is not called after this: what the
 * gateway still sends is read (to keep the capsule stream in step),
 * discarded and counted (rx_discarded). Before the gateway has answered, the
 * request is cancelled instead. No-op when already closing or ended. */
void sluice_tunnel_close(sluice_tunnel_t *tunnel);

typedef struct sluice_tunnel_stats {
    uint64_t tx_packets, tx_bytes;   /* payloads handed to HTTP/2 */
    uint64_t rx_packets, rx_bytes;   /* payloads delivered to on_packet */
    uint64_t rx_dropped;             /* DATAGRAMs from the gateway with a context id other than 0 */
    uint64_t rx_discarded;           /* payloads the gateway sent after sluice_tunnel_close */
    uint64_t dropped_media;          /* evicted (full) or expired (too old) */
    uint64_t dropped_signal;         /* refused because the signaling queue was full */
    uint64_t queued_bytes;           /* payload bytes waiting now */
    uint32_t rtt_us, rtt_min_us;     /* last and lowest RTT from PING/PONG (0: none yet) */
    uint32_t resumes;                /* times the session was resumed on a new stream */
    uint32_t reopens;                /* times it had to be opened afresh (resume refused) */
} sluice_tunnel_stats_t;

/* Fills *out with the tunnel's counters. */
void sluice_tunnel_stats(const sluice_tunnel_t *tunnel, sluice_tunnel_stats_t *out);

/* The HTTP/2 stream id, 0 before the request is sent (for logs). */
int32_t sluice_tunnel_stream_id(const sluice_tunnel_t *tunnel);

/* ---------------------------------------------------------------- credentials */

typedef enum sluice_hash {
    SLUICE_HASH_SHA1 = 0,
    SLUICE_HASH_SHA256 = 1,
} sluice_hash_t;

/* Mints a TURN-REST-style credential from a tenant secret (development and
 * tests; production credentials come from the application's backend):
 *   username   = "<expiry>" or "<expiry>:<user>"
 *   credential = base64(HMAC(secret, username))
 * user may be NULL or ""; it must not contain control characters.
 * Writes NUL-terminated strings; a username_cap of 256 and credential_cap of
 * 64 always suffice. Returns 0, or SLUICE_ERR_INVALID (bad user, empty
 * secret, zero expiry, buffers too small). */
int sluice_cred_mint(sluice_hash_t hash, const char *secret, size_t secret_len,
                     uint64_t expiry, const char *user, char *username, size_t username_cap,
                     char *credential, size_t credential_cap);

/* ---------------------------------------------------------------- UDP check */

/* Is plain UDP to the backend open? (docs/shim.md, "Fallback ladder".) A
 * check sends STUN Binding requests (RFC 8489 §6.2.1) from a connected UDP
 * socket to one address, each with a fresh random transaction id, the first
 * at once and the next after an RTO that doubles (rto_ms, 2 rto_ms, ...),
 * until a valid Binding success response arrives or the budget is spent.
 * Nothing is authenticated: any STUN server answers (a TURN server does).
 * The result arrives through on_done, from the loop, exactly once. */
typedef struct st_sluice_udp_check_t sluice_udp_check_t;

typedef enum sluice_udp_check_reason {
    SLUICE_UDP_CHECK_RUNNING = 0,  /* no result yet */
    SLUICE_UDP_CHECK_ANSWERED,     /* a valid Binding success response came back */
    SLUICE_UDP_CHECK_NO_ANSWER,    /* the budget passed without one */
    SLUICE_UDP_CHECK_REFUSED,      /* ICMP port unreachable: nothing listens there */
    SLUICE_UDP_CHECK_BLOCKED,      /* the local host refused to send (a firewall: EPERM),
                                    * or no route */
    SLUICE_UDP_CHECK_ERROR,        /* the socket could not be made */
} sluice_udp_check_reason_t;

typedef struct sluice_udp_check_result {
    int reachable;                    /* 1 only for ANSWERED */
    sluice_udp_check_reason_t reason;
    uint32_t elapsed_ms;              /* start to decision */
    uint32_t rtt_ms;                  /* request to its answer (ANSWERED only) */
    uint32_t requests;                /* Binding requests sent */
    char detail[128];                 /* "stun answered in 3 ms", "no stun answer in
                                       * 1000 ms", "udp refused (...) after 1 ms", ... */
} sluice_udp_check_result_t;

typedef struct sluice_udp_check_opts {
    const void *addr;        /* required: struct sockaddr_in or _in6, numeric */
    uint32_t addrlen;
    uint32_t budget_ms;      /* 0: 1000; at most 60000 */
    uint32_t rto_ms;         /* first retransmit timeout; 0: 100 */
    void (*on_done)(sluice_udp_check_t *check, const sluice_udp_check_result_t *result,
                    void *ud);
    void *ud;
} sluice_udp_check_opts_t;

/* Starts a check on loop. Returns it (owned by the caller, released with
 * sluice_udp_check_free), or NULL with a message in err (may be NULL) for
 * invalid options or when memory runs out. A socket that cannot be made is
 * not a NULL return: the check ends with SLUICE_UDP_CHECK_ERROR. */
sluice_udp_check_t *sluice_udp_check_start(struct ev_loop *loop,
                                           const sluice_udp_check_opts_t *opts, char *err,
                                           size_t errlen);

/* Copies the result (reason RUNNING while the check runs). */
void sluice_udp_check_result(const sluice_udp_check_t *check, sluice_udp_check_result_t *out);

/* Static name of a reason ("answered", "no answer", ...). */
const char *sluice_udp_check_reason_name(sluice_udp_check_reason_t reason);

/* Stops the check if it runs (on_done is then not called) and releases it;
 * safe inside on_done. NULL is a no-op. */
void sluice_udp_check_free(sluice_udp_check_t *check);

#ifdef __cplusplus
}
#endif

#endif
