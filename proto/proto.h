/*
 * proto.h — return codes shared by every sluice codec.
 *
 * Every codec in proto/ follows one contract: a decoder returns the number of
 * bytes it consumed (> 0), PROTO_INCOMPLETE when the input ends before the item
 * does, or another negative proto_err. It never allocates and its outputs point
 * into the caller's input. An encoder writes into a caller-owned buffer and
 * returns the number of bytes written or a negative proto_err.
 *
 * Nothing in proto/ touches a socket, an event loop or global state. The two
 * send-side queues (pktq.h, sendq.h) are the only allocators: each allocates
 * its storage once, on first use, and never per packet.
 */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

enum proto_err {
    PROTO_OK = 0,
    PROTO_INCOMPLETE = -1,    /* input ends mid-item: feed more bytes */
    PROTO_ERR_SPACE = -2,     /* output buffer too small; nothing written */
    PROTO_ERR_RANGE = -3,     /* value outside what the encoding can carry */
    PROTO_ERR_TOO_LARGE = -4, /* capsule value longer than the allowed maximum */
    PROTO_ERR_MALFORMED = -5, /* bytes that can never be valid */
};

/* A static, human-readable name for a proto_err (or "ok" for >= 0). */
const char *proto_strerror(int err);

#endif
