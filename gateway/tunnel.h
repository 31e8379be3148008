/*
 * tunnel.h — one request stream relayed to one backend UDP flow.
 *
 * Every request stream gets a tunnel_t at its first HEADERS frame. It collects
 * the request headers (TUNNEL_REQUEST), then either answers with an error
 * status and a reason (TUNNEL_REJECTED) or opens a connected UDP socket to a
 * backend and answers 200 (TUNNEL_OPEN). Closing queues a CLOSE capsule, ends
 * the response body and, for protocol errors, resets the stream
 * (TUNNEL_CLOSING). A closing tunnel whose client neither reads the CLOSE nor
 * ends its side within limits.close_linger_ms is reset. The tunnel is freed
 * when its stream closes, or by its connection when the connection goes away.
 *
 * Uplink: capsules from the request body are decoded as they arrive and sent
 * to the backend at once (no queue). Both ways, a packet first passes the
 * tenant's rate limits (ratelimit.h): media over them is dropped and counted,
 * signaling has its own budget. A new tunnel over the tenant's caps gets 429. Downlink: backend datagrams wait in the
 * tunnel's sendq (proto/sendq.h) — signaling (STUN, DTLS per RFC 7983) in a
 * bounded queue that never evicts, media in a bounded queue that drops the
 * oldest packet and anything older than the age limit. The transport pulls the
 * response body with tunnel_body_read.
 *
 * A tunnel sees two narrow things and nothing else:
 *  - its host (tunnel_host_t): the stream operations of the transport that
 *    carries it (HTTP/2 today; an HTTP/1.1 transport or a resumed session
 *    plugs in here), the config snapshot its connection holds, and a name
 *    for logs;
 *  - its environment (tunnel_env_t): the loop, the counters, the shared
 *    receive buffer, the backend choice and the newest config snapshot,
 *    owned by the server. A request is routed (tenant, credential, region)
 *    with the newest snapshot, so a reload's tenant changes apply to new
 *    tunnels on old connections too; limits stay those of the host's.
 * It never writes to the client socket and never frees its host.
 *
 * Session resume (session.h, proto/README.md §8.1): the backend flow — the
 * socket, its watcher, the downlink queues, the counters — can move from one
 * tunnel to another (tunnel_take_flow). A tunnel freed while still open (its
 * stream reset or its connection gone) parks its flow first; a resume request
 * takes a parked flow, or takes over an attached one (whose stream then gets
 * CLOSE(taken over)). A tunnel that handed its flow over has no socket and an
 * empty queue; it only finishes its own stream.
 */
#ifndef SLUICE_TUNNEL_H
#define SLUICE_TUNNEL_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../common/list.h"
#include "../proto/capsule.h"
#include "../proto/owd.h"
#include "../proto/sendq.h"
#include "config.h"
#include "counters.h"
#include "log.h"
#include "pool.h"
#include "ratelimit.h"
#include "request.h"
#include "stats.h"

/* Receive buffer for backend datagrams: larger than any UDP payload. */
#define TUNNEL_UDP_BUF 65536u
/* Datagrams one recvmmsg takes from a backend socket. The loop's receive
 * area holds this many TUNNEL_UDP_BUF slots; only the pages datagrams touch
 * become resident. */
#define TUNNEL_UDP_BATCH 16u

/* Uplink datagrams gathered for one sendmmsg: those of one tunnel that
 * arrive together (one TLS read), up to this many. */
#define TUNNEL_UP_BATCH 16u

/* Capsule reassembly buffers the loop keeps for reuse (tunnel_env_t.readers):
 * at max_capsule 65535, up to 4 MiB, given back by the server's trim. */
#define TUNNEL_READERS_KEPT 64

typedef struct tunnel tunnel_t;
struct session;
struct session_table;

/* Uplink packets copied out of the capsules of one read, waiting for one
 * sendmmsg on their tunnel's socket (tunnel_uplink_flush). Owned by the
 * loop's tunnel_env_t; empty whenever control returns to the loop. */
typedef struct tunnel_upbatch {
    tunnel_t *t;                   /* whose packets wait; NULL: empty */
    unsigned n;
    size_t used;                   /* bytes of area in use */
    size_t len[TUNNEL_UP_BATCH];
    uint8_t signal[TUNNEL_UP_BATCH];
    uint8_t area[TUNNEL_UDP_BUF];
} tunnel_upbatch_t;

/* What the server lends every tunnel of its loop. */
typedef struct tunnel_env {
    struct ev_loop *loop;
    server_counters_t *counters;   /* sums over all tunnels, live and closed */
    log_limits_t *logs;            /* rate limits for lines a client can repeat */
    uint8_t *udp_buf;              /* TUNNEL_UDP_BATCH * TUNNEL_UDP_BUF bytes, shared by the loop */
    pool_t readers;                /* capsule reader buffers, lent per DATA chunk and kept
                                    * by a tunnel only while a capsule is split (a zeroed
                                    * pool keeps none; server_init keeps TUNNEL_READERS_KEPT) */
    const struct sockaddr *echo;   /* where "builtin:echo" is bound, or NULL */
    socklen_t echo_len;
    struct backend_table *backends; /* health and choice (backend.h); NULL: round-robin */
    uint64_t rr;                   /* spreads tunnels without a session; round-robin */
    struct session_table *sessions; /* resumable flows (session.h); NULL: no resume */
    ratelimit_table_t rl;          /* per-tenant caps and aggregate buckets (ratelimit.h) */
    stats_table_t *stats;          /* traffic per tenant and kind, for /metrics (stats.h) */
    uint64_t rx_ns;                /* when the bytes being processed were read (monotonic
                                    * ns): the start of a packet's time in the gateway */
    const config_t *cfg;           /* the newest snapshot: new requests are routed with its
                                    * tenants and regions (a reload applies at once); NULL:
                                    * the host's own */
    tunnel_upbatch_t up;           /* uplink packets waiting for one sendmmsg */
    uint32_t loops;                /* event loops sharing limits.max_connections and
                                    * max_tunnels evenly (worker.h); 0: 1 */
} tunnel_env_t;

/* This loop's share of a process-wide cap: ceil(max / loops), so that the
 * loops together hold at most max + loops - 1 (and the descriptor limit
 * main.c checks for max holds within that slack). */
static inline uint64_t tunnel_env_share(const tunnel_env_t *env, uint64_t max)
{
    uint64_t n = env->loops ? env->loops : 1;
    return (max + n - 1) / n;
}

/* Operations a transport provides to the tunnels it carries. */
typedef struct tunnel_host_ops {
    /* Submits the response headers for status; the body is then pulled with
     * tunnel_body_read. Returns 0 or a negative error fatal to the host. */
    int (*respond)(tunnel_t *t, int status);
    /* tunnel_body_read has something new to return. */
    void (*wake)(tunnel_t *t);
    /* Aborts the stream: the tunnel is freed when the transport closes it.
     * clean: the response is complete and the client may simply stop
     * (RFC 9113 §8.1, NO_ERROR); otherwise it is cancelled. */
    void (*reset)(tunnel_t *t, int clean);
    /* A tunnel opened (200 sent), or an open tunnel was freed. */
    void (*opened)(tunnel_t *t);
    void (*gone)(tunnel_t *t, int was_open);
    /* A request was refused with this status (401s count toward the
     * connection's authentication failures). */
    void (*refused)(tunnel_t *t, int status);
} tunnel_host_ops_t;

typedef struct tunnel_host {
    const tunnel_host_ops_t *ops;
    tunnel_env_t *env;
    const config_t *cfg;   /* the snapshot the connection started with */
    const char *peer;      /* for logs */
    list_t tunnels;        /* every tunnel of this host (tunnel_t._link) */
    log_limit_t flow_log;  /* its tunnel.open/resume/close/detach lines (TUNNEL_HOST_INIT) */
    unsigned refusing : 1; /* shutting down: new requests get 503 */
    unsigned parking : 1;  /* a session's parking host (session.h): no stream */
} tunnel_host_t;

/* A host's tunnel lines are its own business until it churns: a client with
 * valid credentials can open and close tunnels as fast as the control-frame
 * budget lets it, one line each. TUNNEL_LOG_BURST lines per host per
 * LOG_LIMITS_WINDOW_S, then a summary naming the peer (when the host next
 * logs one after the window, or when it goes: tunnel_host_done). */
#define TUNNEL_LOG_BURST 20
#define TUNNEL_HOST_INIT(ops_, env_, cfg_, peer_)                                             \
    {                                                                                          \
        .ops = (ops_), .env = (env_), .cfg = (cfg_), .peer = (peer_),                          \
        .flow_log = {.what = "tunnel open/close", .who = (peer_), .burst = TUNNEL_LOG_BURST,   \
                     .interval_ns = (uint64_t)LOG_LIMITS_WINDOW_S * 1000000000u},              \
    }

enum tunnel_state {
    TUNNEL_REQUEST = 0, /* collecting request headers */
    TUNNEL_REJECTED,    /* error response (status + reason body) in progress */
    TUNNEL_OPEN,        /* relaying */
    TUNNEL_CLOSING,     /* CLOSE queued; ends with END_STREAM or a reset */
};

/* What tunnel_body_read says about the end of the body. */
enum tunnel_body_end {
    TUNNEL_BODY_MORE = 0,  /* more later (nothing now when it returned 0) */
    TUNNEL_BODY_END,       /* this is the last of it: end the stream */
    TUNNEL_BODY_END_RESET, /* the last of it, then reset (protocol error) */
};

struct tunnel {
    tunnel_host_t *host;
    int32_t stream_id;
    enum tunnel_state state;
    list_t _link;                 /* host->tunnels */
    unsigned _xport;              /* reserved for the transport's per-stream flags */

    req_headers_t *req;           /* TUNNEL_REQUEST only */
    const char *reason;           /* TUNNEL_REJECTED: response body */
    size_t reason_off;
    char retry_after[12];         /* a 429's retry-after (seconds), "" otherwise */
    const char *redirect;         /* a 421's tunnel-node address while it is answered */

    int fd;                       /* connected UDP socket to the backend, or -1 */
    ev_io udp_io;
    ev_timer timer;               /* idle, expiry, PING while open; linger while closing;
                                   * the grace period while parked */
    uint64_t last_active;         /* monotonic ns */
    uint64_t expires;             /* monotonic ns at which the credential runs out */
    uint64_t park_until;          /* parked: monotonic ns at which the grace period ends */
    uint64_t ping_at;             /* next PING capsule due (monotonic ns); 0: none */
    uint64_t ping_sent;           /* the unanswered PING's send time (its value); 0: none */
    uint64_t down_wait;           /* see tunnel_waiting_since; 0: nothing waiting */
    unsigned backend_errors;      /* consecutive ICMP errors without a reply */
    uint32_t rxq_dropped;         /* kernel receive-queue drops seen so far (SO_RXQ_OVFL) */

    capsule_reader_t reader;      /* uplink capsules */
    uint8_t *reader_buf;          /* from env->readers while a capsule is split; else NULL */
    size_t reader_cap;            /* its size (the pool's when it was lent) */
    sendq_t down;                 /* downlink: queues, PONGs, CLOSE, capsule packer */
    uint64_t close_code;          /* valid once TUNNEL_CLOSING */
    unsigned body_ended : 1;      /* the response body is complete (CLOSE sent) */
    unsigned rst_after_close : 1; /* protocol error: reset once CLOSE is sent */
    unsigned handed_over : 1;     /* its flow moved to another tunnel (session.h) */
    unsigned stamps : 1;          /* the client offered stamps: the 200 accepts them */
    owd_t owd;                    /* this stream's stamps: the wait before arrival */
    struct session *session;      /* resumable flow (owned by the server's table), or NULL */
    struct session_handoff *handoff; /* a resume waiting for another worker's flow
                                   * (session_fetch), or NULL */
    ratelimit_flow_t rl;          /* the tenant's limits on this flow; moves with it */
    stats_entry_t *stats;         /* its tenant's traffic totals (a reference), or NULL;
                                   * moves with the flow */

    char tenant[65];
    enum tunnel_kind kind;
    uint64_t opened_at;           /* monotonic ns the flow opened (moves with it) */
    char backend[64];             /* for logs */
    tunnel_counters_t counters;
};

/* The host's first tunnel, or NULL. */
static inline tunnel_t *tunnel_first(tunnel_host_t *host)
{
    return LIST_FIRST(&host->tunnels, tunnel_t, _link);
}

/* A tunnel for a new request stream, linked into host->tunnels. Returns NULL
 * when out of memory (the caller refuses the stream). */
tunnel_t *tunnel_new(tunnel_host_t *host, int32_t stream_id);

/* Records a request header (TUNNEL_REQUEST only). */
void tunnel_add_header(tunnel_t *t, const uint8_t *name, size_t namelen, const uint8_t *value,
                       size_t valuelen);

/* The request headers are complete: route the request, open the backend flow
 * and respond. Returns 0, or the negative error of host->ops->respond. */
int tunnel_start(tunnel_t *t);

/* A chunk of the request body. Its packets may wait in env->up: the host
 * calls tunnel_uplink_flush once it has fed what one read brought. */
void tunnel_recv_data(tunnel_t *t, const uint8_t *data, size_t len);

/* Sends the uplink packets gathered in env->up with one sendmmsg (more if the
 * socket refuses one midway), counting each as sent or dropped. */
void tunnel_uplink_flush(tunnel_env_t *env);

/* The client ended its side (END_STREAM). */
void tunnel_remote_end(tunnel_t *t);

/* Fills buf[0..cap) with response body bytes (the error reason, or whole
 * capsules from the downlink queues). Returns the byte count and sets *end. */
size_t tunnel_body_read(tunnel_t *t, uint8_t *buf, size_t cap, enum tunnel_body_end *end);

/* Queues CLOSE(code, reason) and ends the stream; with rst, the stream is then
 * reset. No-op unless the tunnel is open. */
void tunnel_close(tunnel_t *t, uint64_t code, const char *reason, int rst);

/* Since when (monotonic ns) the client has left downlink bytes untaken: the
 * time they were queued, or the last time the body moved with more still
 * queued. 0 once the client has taken everything. Media that expired in the
 * queue does not end the wait: it was offered and not taken. */
uint64_t tunnel_waiting_since(const tunnel_t *t);

/* Ring bytes a downlink queue keeps resident when it is empty: a packet or
 * two of the steady state. */
#define TUNNEL_RING_KEEP 4096u

/* From the connection's health tick, never per packet: a queue that a burst
 * ran deep and that is empty again gives the pages the burst touched back to
 * the system (pktq_idle_span, heap_release_pages). Without it they stay
 * resident for the tunnel's life, and under churn the heap's resident part
 * creeps up with every burst. Returns the bytes given back. */
size_t tunnel_release_idle(tunnel_t *t);

/* Moves from's backend flow into t, a fresh tunnel (TUNNEL_REQUEST), which
 * becomes TUNNEL_OPEN: socket and watcher, queued downlink packets, tenant,
 * kind, backend, counters, rate limits, credential expiry and session. What belongs to
 * from's stream (a capsule partly written, PONGs) stays there; from keeps
 * its state with no socket and empty queues, and is marked handed_over.
 * park_until: t is parked until then (its host is a parking host); 0: t is on
 * a stream, and its idle and expiry timer starts now. */
void tunnel_take_flow(tunnel_t *t, tunnel_t *from, uint64_t park_until);

/* Answers a resume that waited for another worker's flow (session_fetch),
 * on this loop: parcel (the flow, its watchers stopped, already counted
 * and held here) moves into t, which opens and answers 200 as a resume on
 * this loop would; parcel is freed. taken_over: the flow was on a live
 * stream (counted as sessions_taken_over, else sessions_resumed). NULL
 * parcel: the session was gone, 410, or with node (another node of the
 * fleet holds it) 421 naming it. expiry: the resume credential's (unix
 * seconds). Called outside the transport's callbacks: it wakes the host. */
void tunnel_resume_adopt(tunnel_t *t, tunnel_t *parcel, uint64_t expiry, int taken_over,
                         const char *node);

/* The tunnel's session token (the tunnel-session header), or NULL. */
const char *tunnel_session_token(const tunnel_t *t);

/* Releases everything and unlinks from the host (calls ops->gone). An open
 * tunnel with a session that is not already parked parks its flow first
 * (session_park), unless resume is off or the server is shutting down. */
void tunnel_free(tunnel_t *t);

/* The host is going (its tunnels freed): the summary of its suppressed
 * tunnel lines, if any, is written now. */
void tunnel_host_done(tunnel_host_t *host);

#endif
