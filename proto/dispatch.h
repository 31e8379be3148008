/*
 * dispatch.h — reading a tunnel body's capsule stream (RFC 9297 §3.2) in
 * chunks of any size and handing each capsule's meaning to handlers. Both
 * peers use it: the gateway on request bodies (uplink), the shim on response
 * bodies (downlink). Pure: no I/O; bytes go through the caller's
 * capsule_reader_t.
 */
#ifndef SLUICE_DISPATCH_H
#define SLUICE_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "capsule.h"

/* Capsules read but not delivered, reported to on_skip so they can be counted. */
enum dispatch_skip {
    DISPATCH_SKIP_CONTEXT_ID = 0, /* DATAGRAM with a context id other than 0, or 2 when
                                     on_stamped is NULL (dropped) */
    DISPATCH_SKIP_UNKNOWN = 1,    /* unknown type, skipped as RFC 9297 §3.2 requires */
    DISPATCH_SKIP_MUTED = 2,      /* a packet not offered: the handler muted this input */
};

/* What on_packet tells dispatch_feed to do next. A capsule stream can only be
 * read from its start: a reader that skips any bytes parses the rest as
 * garbage. So a handler that no longer wants packets chooses between muting
 * (the stream is still read, to its end or its CLOSE) and abandoning it (the
 * caller feeds this reader nothing more, ever). */
enum dispatch_verdict {
    DISPATCH_CONTINUE = 0, /* go on delivering */
    /* Abandon the stream: dispatch_feed returns DISPATCH_STOPPED at once and
     * the rest of the input is not read. The reader is left in the middle of
     * the stream; the caller must not feed it again (its body is discarded or
     * its stream reset). Any non-zero value other than DISPATCH_MUTE means
     * this, so a handler may return a boolean "stop". */
    DISPATCH_ABANDON = 1,
    /* Deliver no more packets from this input but keep reading it, so the
     * reader stays in step with the stream: on_packet is not called again
     * during this dispatch_feed call (each packet it would have had is
     * reported to on_skip as DISPATCH_SKIP_MUTED, so it can be counted);
     * PING, CLOSE and other skips are still reported, and the return value
     * is as if every packet had been delivered. Later calls deliver again: a
     * handler that stays muted (say, until the peer answers its CLOSE)
     * returns DISPATCH_MUTE again. */
    DISPATCH_MUTE = 2,
};

typedef struct dispatch_ops {
    /* A DATAGRAM (context id 0) or SIGNAL payload. Returns a dispatch_verdict. */
    int (*on_packet)(void *ud, const uint8_t *p, size_t len, int is_signal);
    /* A PING: answer with a PONG carrying these 8 bytes. */
    void (*on_ping)(void *ud, const uint8_t *value);
    /* A CLOSE; nothing after it is read. reason is not NUL-terminated. */
    void (*on_close)(void *ud, uint64_t code, const char *reason, size_t reason_len);
    /* A capsule not delivered (may be NULL), muted packets included. */
    void (*on_skip)(void *ud, enum dispatch_skip why);
    /* A PONG answering one of our PINGs, with its 8 bytes (may be NULL: then
     * PONGs are ignored). A PONG value of another length is ignored. */
    void (*on_pong)(void *ud, const uint8_t *value);
    /* A DATAGRAM with context id 2 (proto/README.md §5.1.1): a media payload
     * and its sender's stamp. Returns a dispatch_verdict, as on_packet does.
     * May be NULL: then such DATAGRAMs are skipped (DISPATCH_SKIP_CONTEXT_ID),
     * as a peer that never accepted stamps must. */
    int (*on_stamped)(void *ud, const uint8_t *p, size_t len, uint32_t sent_us);
} dispatch_ops_t;

enum dispatch_rc {
    DISPATCH_OK = 0,      /* all input consumed; more may follow */
    DISPATCH_CLOSED = 1,  /* a CLOSE was delivered; the rest of the input is ignored */
    DISPATCH_STOPPED = 2, /* on_packet returned DISPATCH_ABANDON: see there */
    /* Negative: a proto_err (PROTO_ERR_TOO_LARGE, PROTO_ERR_MALFORMED); the
     * stream is unusable and *err_desc says why. */
};

/* Feeds data[0..len) to reader r and calls ops for each whole capsule. A
 * malformed DATAGRAM (a context-2 value shorter than its stamp included, when
 * on_stamped is set), PING or CLOSE value is a protocol error (also while
 * muted: the stream is read in full). Returns a dispatch_rc or a negative
 * proto_err. */
int dispatch_feed(capsule_reader_t *r, const uint8_t *data, size_t len, const dispatch_ops_t *ops,
                  void *ud, const char **err_desc);

#endif
