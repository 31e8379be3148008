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
    DROP_REASON_COUNT
};

static inline const char *drop_reason_name(enum drop_reason r)
{
    static const char *const names[DROP_REASON_COUNT] = {
        "media_evicted", "media_expired", "signal_full",  "oversize",
        "context_id",    "uplink_send",   "backend_error", "closing",
        "pong_full",     "nomem",         "backend_rxq",  "rate_tunnel",
        "rate_tenant",   "rate_signal",
    };
    return (unsigned)r < DROP_REASON_COUNT ? names[r] : "unknown";
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
    uint64_t tunnels_opened, tunnels_active;
    uint64_t requests_rejected[8]; /* 400 401 403 404 405 503 410 429, see request.h */
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
    tunnel_counters_t tunnel;      /* sums over all tunnels, live and closed */
    prom_hist_t up_residence;      /* read from the client to sent to the backend */
    prom_hist_t down_residence;    /* received from the backend to written to the stream */
    prom_hist_t rtt;               /* client RTT from PING/PONG capsules */
} server_counters_t;

/* Bucket bounds of the histograms above (metrics.c). */
extern const prom_bounds_t counters_residence_bounds, counters_rtt_bounds;

#endif
