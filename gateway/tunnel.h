/*
 * tunnel.h — one HTTP/2 request stream relayed to one backend UDP flow.
 *
 * Every request stream gets a tunnel_t at its first HEADERS frame. It collects
 * the request headers (TUNNEL_REQUEST), then either answers with an error
 * status and a reason (TUNNEL_REJECTED) or opens a connected UDP socket to a
 * backend and answers 200 (TUNNEL_OPEN). Closing queues a CLOSE capsule, ends
 * the response body and, for protocol errors, resets the stream
 * (TUNNEL_CLOSING). The tunnel is freed when nghttp2 closes the stream, or by
 * its connection when the connection goes away.
 *
 * Uplink: capsules from the request body are decoded as they arrive and sent
 * to the backend at once (no queue). Downlink: backend datagrams wait in the
 * tunnel's sendq (proto/sendq.h) — signaling (STUN, DTLS per RFC 7983) in a
 * bounded queue that never evicts, media in a bounded queue that drops the
 * oldest packet and anything older than the age limit. The response body's
 * data provider fills DATA frames from it and defers when it is empty.
 *
 * The connection owns its tunnels; a tunnel never frees its connection and
 * never writes to the TLS socket itself (it asks with conn_want_write).
 */
#ifndef SLUICE_TUNNEL_H
#define SLUICE_TUNNEL_H

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>

#include "../proto/capsule.h"
#include "../proto/sendq.h"
#include "counters.h"
#include "request.h"

struct conn;

enum tunnel_state {
    TUNNEL_REQUEST = 0, /* collecting request headers */
    TUNNEL_REJECTED,    /* error response (status + reason body) in progress */
    TUNNEL_OPEN,        /* relaying */
    TUNNEL_CLOSING,     /* CLOSE queued; ends with END_STREAM or RST_STREAM */
};

typedef struct tunnel {
    struct conn *conn;
    int32_t stream_id;
    enum tunnel_state state;
    struct tunnel *_prev, *_next; /* the connection's list */

    req_headers_t *req;           /* TUNNEL_REQUEST only */
    const char *reason;           /* TUNNEL_REJECTED: response body */
    size_t reason_off;

    int fd;                       /* connected UDP socket to the backend, or -1 */
    ev_io udp_io;
    ev_timer idle;
    ev_tstamp last_active;
    unsigned backend_errors;      /* consecutive ICMP errors without a reply */

    capsule_reader_t reader;      /* uplink capsules */
    uint8_t *reader_buf;
    sendq_t down;                 /* downlink: queues, PONGs, CLOSE, capsule packer */
    uint64_t close_code;          /* valid once TUNNEL_CLOSING */
    unsigned deferred : 1;        /* data provider returned NGHTTP2_ERR_DEFERRED */
    unsigned body_ended : 1;      /* the response body is complete (CLOSE sent) */
    unsigned rst_after_close : 1; /* protocol error: RST_STREAM once CLOSE is sent */

    char tenant[65];
    enum tunnel_kind kind;
    char backend[64];             /* for logs */
    tunnel_counters_t counters;
} tunnel_t;

/* A tunnel for a new request stream, linked into the connection. Returns NULL
 * when out of memory (the caller refuses the stream). */
tunnel_t *tunnel_new(struct conn *c, int32_t stream_id);

/* Records a request header (TUNNEL_REQUEST only). */
void tunnel_add_header(tunnel_t *t, const uint8_t *name, size_t namelen, const uint8_t *value,
                       size_t valuelen);

/* The request headers are complete: route the request, open the backend flow
 * and submit the response. Returns 0, or a negative nghttp2 error that is fatal
 * for the connection. */
int tunnel_start(tunnel_t *t);

/* A chunk of the request body. */
void tunnel_recv_data(tunnel_t *t, const uint8_t *data, size_t len);

/* The client ended its side (END_STREAM). */
void tunnel_remote_end(tunnel_t *t);

/* Queues CLOSE(code, reason) and ends the stream; with rst, the stream is then
 * reset with PROTOCOL_ERROR. No-op unless the tunnel is open. */
void tunnel_close(tunnel_t *t, uint64_t code, const char *reason, int rst);

/* nghttp2 sent a frame on this tunnel's stream. */
void tunnel_frame_sent(tunnel_t *t, const nghttp2_frame *frame);

/* Releases everything and unlinks from the connection. */
void tunnel_free(tunnel_t *t);

#endif
