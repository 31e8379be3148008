/*
 * counters.h — packet, byte and drop counters, per tunnel and per server.
 *
 * Every packet the gateway does not deliver is counted under exactly one
 * reason. /metrics (metrics.c) exposes server_counters_t and the per-tenant
 * totals (stats.h); a tunnel's own counters are logged when it closes.
 */
#ifndef SLUICE_COUNTERS_H
#define SLUICE_COUNTERS_H

#include <stdint.h>

#include "prom.h"

enum drop_reason {
    DROP_MEDIA_EVICTED = 0, /* downlink media evicted (drop-oldest) for a newer packet */
    DROP_MEDIA_EXPIRED,     /* downlink media older than the queue's age limit */
    DROP_SIGNAL_FULL,       /* downlink signaling queue at its byte bound */
    DROP_OVERSIZE,          /* backend packet too large for one capsule */
    DROP_CONTEXT_ID,        /* uplink DATAGRAM with a non-zero context id */
    DROP_UPLINK_SEND,       /* backend socket refused the packet (EAGAIN, ENOBUFS, ...) */
    DROP_BACKEND_ERROR,     /* ICMP error from the backend (ECONNREFUSED, ...) */
    DROP_CLOSING,           /* queued packets discarded because the tunnel closed */
    DROP_PONG_FULL,         /* more unanswered PINGs than PONG slots */
    DROP_NOMEM,             /* no memory for a queue ring or staging buffer */
    DROP_BACKEND_RXQ,       /* backend socket's kernel receive queue overflowed (SO_RXQ_OVFL) */
    DROP_RATE_TUNNEL,       /* media over the tunnel's packets/s or bits/s (tenants[i].limits) */
    DROP_RATE_TENANT,       /* media over the tenant's aggregate bits/s */
    DROP_RATE_SIGNAL,       /* signaling over its own budget under a media limit */
    DROP_UPLINK_EXPIRED,    /* uplink media older than its age limit when read (it waited in the
                               connection's kernel receive queue and, stamped, before it
                               arrived: proto/README.md §5.1.1) */
    DROP_REASON_COUNT
};

static inline const char *drop_reason_name(enum drop_reason r)
{
    static const char *const names[DROP_REASON_COUNT] = {
        "media_evicted", "media_expired", "signal_full",  "oversize",
        "context_id",    "uplink_send",   "backend_error", "closing",
        "pong_full",     "nomem",         "backend_rxq",  "rate_tunnel",
        "rate_tenant",   "rate_signal",  "uplink_expired",
    };
    return (unsigned)r < DROP_REASON_COUNT ? names[r] : "unknown";
}

/* Why a client connection ended: the first cause wins (conn.c). */
enum conn_end {
    CONN_END_PEER = 0,          /* the client closed or reset it, or ended HTTP/2 */
    CONN_END_NOT_TLS,           /* cleartext refused with a 400 */
    CONN_END_TLS_HANDSHAKE,     /* the TLS handshake failed (tls_fail gives why) */
    CONN_END_HANDSHAKE_TIMEOUT, /* the TLS handshake took longer than handshake_timeout_ms */
    CONN_END_NO_H2,             /* TLS without ALPN h2 */
    CONN_END_TLS_ERROR,         /* a TLS error after the handshake */
    CONN_END_WRITE_ERROR,       /* the socket refused our output */
    CONN_END_PROTOCOL,          /* HTTP/2 protocol error */
    CONN_END_CALM,              /* flood or header abuse: GOAWAY(ENHANCE_YOUR_CALM) */
    CONN_END_AUTH,              /* limits.max_auth_failures 401s: GOAWAY */
    CONN_END_HEADER_TIMEOUT,    /* no tunnel within header_timeout_ms */
    CONN_END_IDLE,              /* no tunnel for conn_idle_ms: GOAWAY */
    CONN_END_WRITE_STALL,       /* the client took nothing for write_stall_ms */
    CONN_END_PING_TIMEOUT,      /* no answer to a keepalive PING */
    CONN_END_SHUTDOWN,          /* the gateway drained or stopped */
    CONN_END_PROXY_HEADER,      /* a PROXY protocol listener: a bad or late header */
    CONN_END_COUNT
};

static inline const char *conn_end_name(enum conn_end e)
{
    static const char *const names[CONN_END_COUNT] = {
        "peer",          "not_tls",        "tls_handshake", "handshake_timeout",
        "no_h2",         "tls_error",      "write_error",   "protocol_error",
        "calm",          "auth_failures",  "header_timeout", "idle",
        "write_stall",   "ping_timeout",   "shutdown",      "proxy_header",
    };
    return (unsigned)e < CONN_END_COUNT ? names[e] : "unknown";
}

/* Why a TLS handshake failed, from OpenSSL's reason code (conn.c). */
enum tls_fail {
    TLS_FAIL_OTHER = 0,
    TLS_FAIL_PROTOCOL_VERSION, /* no TLS version in common, or not TLS at all */
    TLS_FAIL_NO_SHARED_CIPHER,
    TLS_FAIL_CERT_REJECTED,    /* the client's alert: it does not trust our certificate */
    TLS_FAIL_NO_ALPN,          /* no application protocol in common */
    TLS_FAIL_EOF,              /* the client went away mid-handshake */
    TLS_FAIL_TIMEOUT,
    TLS_FAIL_COUNT
};

static inline const char *tls_fail_name(enum tls_fail f)
{
    static const char *const names[TLS_FAIL_COUNT] = {
        "other", "protocol_version", "no_shared_cipher", "certificate_rejected",
        "no_alpn", "eof", "timeout",
    };
    return (unsigned)f < TLS_FAIL_COUNT ? names[f] : "other";
}

/* Why the client took the tunnel: its tunnel-fallback header
 * (proto/README.md §2.1). NONE: absent; OTHER: a value not in this list.
 * The names from FALLBACK_FORCED on are the wire values. */
enum fallback {
    FALLBACK_NONE = 0,
    FALLBACK_OTHER,
    FALLBACK_FORCED,        /* the client was not set up to try direct UDP */
    FALLBACK_UDP_BLOCKED,   /* its host refused to send UDP (firewall, no route) */
    FALLBACK_UDP_REFUSED,   /* ICMP port unreachable from the backend's address */
    FALLBACK_NO_ANSWER,     /* no STUN answer within the client's budget */
    FALLBACK_DIRECT_SILENT, /* a direct flow went silent mid-call */
    FALLBACK_UDP_ERROR,     /* the client could not run its UDP check */
    FALLBACK_COUNT
};

static inline const char *fallback_name(enum fallback f)
{
    static const char *const names[FALLBACK_COUNT] = {
        "none",        "other",      "forced",        "udp_blocked",
        "udp_refused", "no_answer",  "direct_silent", "udp_error",
    };
    return (unsigned)f < FALLBACK_COUNT ? names[f] : "other";
}

/* How the client reached the gateway: its tunnel-route header, same rules. */
enum route { ROUTE_NONE = 0, ROUTE_OTHER, ROUTE_DIRECT, ROUTE_PROXY, ROUTE_COUNT };

static inline const char *route_name(enum route r)
{
    static const char *const names[ROUTE_COUNT] = {"none", "other", "direct", "proxy"};
    return (unsigned)r < ROUTE_COUNT ? names[r] : "other";
}

/* Why a request got 401 (request_route). The client's 401 text does not say
 * which of the last three it was; only operators see them apart. */
enum auth_fail {
    AUTH_FAIL_NONE = -1,
    AUTH_FAIL_MISSING = 0,   /* no tunnel-username or tunnel-credential */
    AUTH_FAIL_MALFORMED,     /* username or credential not in its syntax, or over-long */
    AUTH_FAIL_EXPIRED,       /* the username's expiry has passed */
    AUTH_FAIL_TOO_FAR,       /* expiry beyond the tenant's max_ttl */
    AUTH_FAIL_UNKNOWN_TENANT,
    AUTH_FAIL_BAD_SIGNATURE, /* no secret of the tenant produces the credential */
    AUTH_FAIL_COUNT
};

static inline const char *auth_fail_name(enum auth_fail a)
{
    static const char *const names[AUTH_FAIL_COUNT] = {
        "missing", "malformed", "expired", "expiry_too_far", "unknown_tenant", "bad_signature",
    };
    return (unsigned)a < AUTH_FAIL_COUNT ? names[a] : "unknown";
}

typedef struct tunnel_counters {
    uint64_t up_packets, up_bytes;     /* client -> backend, delivered to the socket */
    uint64_t down_packets, down_bytes; /* backend -> client, written into the stream */
    uint64_t up_signal_packets;        /* of up_packets: SIGNAL (STUN, DTLS, TURN indications) */
    uint64_t down_signal_packets;      /* backend packets of the signaling class, as received */
    uint64_t unknown_capsules;         /* skipped per RFC 9297 §3.2 */
    uint64_t pings_sent, pongs_received; /* PING capsules from the gateway and their answers */
    uint64_t rtt_last_us, rtt_min_us;  /* from PING/PONG capsules; 0 until the first PONG */
    uint64_t drops[DROP_REASON_COUNT];
} tunnel_counters_t;

typedef struct server_counters {
    uint64_t conns_accepted, conns_refused, conns_active;
    uint64_t conns_refused_source[3]; /* per source: over its rate, too many pending, table full */
    uint64_t tls_failures;
    uint64_t tls_failures_by[TLS_FAIL_COUNT];
    uint64_t conns_closed[CONN_END_COUNT];
    uint64_t tunnels_opened, tunnels_active;
    uint64_t requests_rejected[9]; /* 400 401 403 404 405 503 410 429 421, see request.h */
    uint64_t auth_failures[AUTH_FAIL_COUNT]; /* of the 401s, by reason */
    uint64_t protocol_errors;
    uint64_t header_overflows;     /* header blocks over the advertised list size or field count */
    uint64_t conns_calmed;         /* GOAWAY(ENHANCE_YOUR_CALM): frame budget or header abuse */
    uint64_t auth_goaways;         /* GOAWAY after limits.max_auth_failures 401s */
    uint64_t write_stalls;         /* closed after limits.write_stall_ms without progress */
    uint64_t ping_timeouts;        /* closed: no answer to a keepalive PING */
    uint64_t sessions_parked;      /* tunnels detached from their stream and kept for resume */
    uint64_t sessions_resumed;     /* parked tunnels re-attached to a new stream */
    uint64_t sessions_taken_over;  /* attached tunnels moved to a new stream by a resume */
    uint64_t sessions_expired;     /* parked tunnels closed at the end of their grace period */
    uint64_t reloads_ok, reloads_failed; /* config reloads (server_reload and its callers) */
    uint64_t reload_last_ok;       /* unix seconds of the last successful reload; 0: none */
    tunnel_counters_t tunnel;      /* sums over all tunnels, live and closed */
    prom_hist_t up_residence;      /* read from the client to sent to the backend */
    prom_hist_t down_residence;    /* received from the backend to written to the stream */
    prom_hist_t rtt;               /* client RTT from PING/PONG capsules */
} server_counters_t;

/* Bucket bounds of the histograms above (metrics.c). */
extern const prom_bounds_t counters_residence_bounds, counters_rtt_bounds;

#endif
