/* dispatch.c — see dispatch.h. */
#include "dispatch.h"

#include "proto.h"

static void skip(const dispatch_ops_t *ops, void *ud, enum dispatch_skip why)
{
    if (ops->on_skip)
        ops->on_skip(ud, why);
}

/* The verdict of a handler: 1 when the stream is abandoned (see enum
 * dispatch_verdict). */
static int verdict(int v, int *muted)
{
    if (v == DISPATCH_MUTE)
        *muted = 1;
    return v != DISPATCH_CONTINUE && v != DISPATCH_MUTE;
}

/* 1 when the input is muted; the packet not offered is reported. */
static int muted_skip(const dispatch_ops_t *ops, void *ud, int muted)
{
    if (muted)
        skip(ops, ud, DISPATCH_SKIP_MUTED);
    return muted;
}

/* Hands one packet to on_packet unless muted. Returns 1 when the stream is
 * abandoned. */
static int deliver(const dispatch_ops_t *ops, void *ud, const uint8_t *p, size_t len,
                   int is_signal, int *muted)
{
    return !muted_skip(ops, ud, *muted) && verdict(ops->on_packet(ud, p, len, is_signal), muted);
}

int dispatch_feed(capsule_reader_t *r, const uint8_t *data, size_t len, const dispatch_ops_t *ops,
                  void *ud, const char **err_desc)
{
    capsule_t c;
    int muted = 0;
    int rc;

    while ((rc = capsule_reader_next(r, &data, &len, &c, err_desc)) > 0) {
        switch (c.type) {
        case CAPSULE_DATAGRAM: {
            uint64_t ctx;
            const uint8_t *p;
            size_t n;
            if (capsule_parse_datagram(&c, &ctx, &p, &n) != PROTO_OK) {
                if (err_desc)
                    *err_desc = "malformed DATAGRAM capsule";
                return PROTO_ERR_MALFORMED;
            }
            if (ctx == CAPSULE_CONTEXT_STAMPED && ops->on_stamped) {
                if (n < CAPSULE_STAMP_LEN) {
                    if (err_desc)
                        *err_desc = "stamped DATAGRAM shorter than its stamp";
                    return PROTO_ERR_MALFORMED;
                }
                if (!muted_skip(ops, ud, muted) &&
                    verdict(ops->on_stamped(ud, p + CAPSULE_STAMP_LEN, n - CAPSULE_STAMP_LEN,
                                            capsule_get_stamp(p)),
                            &muted))
                    return DISPATCH_STOPPED;
            } else if (ctx != CAPSULE_CONTEXT_UDP)
                skip(ops, ud, DISPATCH_SKIP_CONTEXT_ID);
            else if (deliver(ops, ud, p, n, 0, &muted))
                return DISPATCH_STOPPED;
            break;
        }
        case CAPSULE_SIGNAL:
            if (deliver(ops, ud, c.value, c.len, 1, &muted))
                return DISPATCH_STOPPED;
            break;
        case CAPSULE_PING:
            if (c.len != CAPSULE_PING_LEN) {
                if (err_desc)
                    *err_desc = "PING capsule value is not 8 bytes";
                return PROTO_ERR_MALFORMED;
            }
            ops->on_ping(ud, c.value);
            break;
        case CAPSULE_CLOSE: {
            uint64_t code;
            const char *reason;
            size_t rlen;
            if (capsule_parse_close(&c, &code, &reason, &rlen) != PROTO_OK) {
                if (err_desc)
                    *err_desc = "malformed CLOSE capsule";
                return PROTO_ERR_MALFORMED;
            }
            ops->on_close(ud, code, reason, rlen);
            return DISPATCH_CLOSED;
        }
        case CAPSULE_PONG:
            /* Only a PONG that can answer one of our PINGs is of interest. */
            if (ops->on_pong && c.len == CAPSULE_PING_LEN)
                ops->on_pong(ud, c.value);
            break;
        default: /* RFC 9297 §3.2: unknown types are skipped */
            skip(ops, ud, DISPATCH_SKIP_UNKNOWN);
            break;
        }
    }
    return rc < 0 ? rc : DISPATCH_OK;
}
