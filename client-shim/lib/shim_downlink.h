/*
 * shim_downlink.h — reading a tunnel's response body: the capsule stream
 * from the gateway (RFC 9297 §3.2), in chunks of any size, dispatched to
 * handlers. Pure: no I/O; the incremental reader comes from proto/capsule.h.
 */
#ifndef SHIM_DOWNLINK_H
#define SHIM_DOWNLINK_H

#include <stddef.h>
#include <stdint.h>

#include "../../proto/capsule.h"

typedef struct shim_downlink_ops {
    /* A DATAGRAM (context id 0) or SIGNAL payload. Return 0 to go on, non-zero
     * to stop reading (shim_downlink_feed then returns SHIM_DL_STOPPED). */
    int (*on_packet)(void *ud, const uint8_t *p, size_t len, int is_signal);
    /* A PING: answer with a PONG carrying these 8 bytes. */
    void (*on_ping)(void *ud, const uint8_t *value);
    /* A CLOSE; nothing after it is read. reason is not NUL-terminated. */
    void (*on_close)(void *ud, uint64_t code, const char *reason, size_t reason_len);
} shim_downlink_ops_t;

enum shim_dl_rc {
    SHIM_DL_OK = 0,      /* all input consumed; more may follow */
    SHIM_DL_CLOSED = 1,  /* a CLOSE was delivered; the rest of the input is ignored */
    SHIM_DL_STOPPED = 2, /* on_packet asked to stop */
    /* Negative: a proto_err (PROTO_ERR_TOO_LARGE, PROTO_ERR_MALFORMED); the
     * stream is unusable and *err_desc says why. */
};

/* Feeds data[0..len) to reader r and calls ops for each whole capsule. PONG
 * and unknown types are skipped; DATAGRAMs with a context id other than 0
 * are dropped (RFC 9297 §2.1). A malformed DATAGRAM, PING or CLOSE value is a
 * protocol error. Returns a shim_dl_rc or a negative proto_err. */
int shim_downlink_feed(capsule_reader_t *r, const uint8_t *data, size_t len,
                       const shim_downlink_ops_t *ops, void *ud, const char **err_desc);

#endif
