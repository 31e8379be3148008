/*
 * ts_flow.h — UDP round trips through a shim, checked byte for byte.
 *
 * A flow is one local UDP socket sending a fixed list of packets to a shim and
 * expecting each back exactly once, unchanged. ts_flows_run drives any number
 * of flows from one poll loop, with at most `window` unanswered packets per
 * flow, until every packet is back or the deadline passes. A reply that is not
 * byte-identical to a packet of its own flow counts as foreign (for example
 * another socket's traffic delivered to the wrong address).
 *
 * Before measuring, ts_flow_prime sends a primer until one comes back: the
 * first datagram from a new source address makes the shim open a tunnel stream,
 * and the primer proves that stream is open without counting setup time (or a
 * primer dropped while the stream opens) against the flow.
 */
#ifndef SLUICE_TS_FLOW_H
#define SLUICE_TS_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"

#define TS_PKT_MAX 1500u

typedef struct ts_flow {
    int fd;
    ts_addr_t to;
    size_t n;              /* packets */
    size_t window;         /* max unanswered packets in flight (>= 1) */
    uint8_t **pkts;        /* owned: ts_flow_free */
    size_t *lens;
    /* results */
    size_t sent;
    size_t matched;        /* distinct packets that came back identical */
    size_t duplicates;     /* identical replies to an already matched packet */
    size_t foreign;        /* replies matching no packet of this flow */
    uint8_t *_got;
    size_t _cursor;        /* next packet to send */
} ts_flow_t;

/* Makes n packets tagged with tag (a flow's packets differ from every other
 * flow's): by index, mostly RTP (172 bytes) with STUN every 5th and DTLS every
 * 7th, so signaling and media interleave. The flow sends from fd to `to`.
 * Returns 0 or -1 (no memory). */
int ts_flow_init_mixed(ts_flow_t *f, int fd, const ts_addr_t *to, size_t n, uint16_t tag,
                       size_t window);

/* Counts of each class in f (for messages). */
void ts_flow_classes(const ts_flow_t *f, size_t *rtp, size_t *stun, size_t *dtls);

void ts_flow_free(ts_flow_t *f);

/* Sends a primer from fd to `to` every retry_ms until its echo returns or the
 * deadline passes. Returns 0 or -1. Late primer echoes are ignored by
 * ts_flows_run. */
int ts_flow_prime(int fd, const ts_addr_t *to, int retry_ms, int64_t deadline);

/* Runs the flows to completion or deadline. Returns 0 when every flow got all
 * of its packets back with no foreign replies, -1 otherwise (see the counts). */
int ts_flows_run(ts_flow_t *flows, size_t nflows, int64_t deadline);

#endif
