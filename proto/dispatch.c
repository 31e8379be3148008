/* dispatch.c — see dispatch.h. */
#include "dispatch.h"

#include "proto.h"

static void skip(const dispatch_ops_t *ops, void *ud, enum dispatch_skip why)
{
    if (ops->on_skip)
        ops->on_skip(ud, why);
}

int dispatch_feed(capsule_reader_t *r, const uint8_t *data, size_t len, const dispatch_ops_t *ops,
                  void *ud, const char **err_desc)
{
    capsule_t c;
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
            if (ctx != 0)
                skip(ops, ud, DISPATCH_SKIP_CONTEXT_ID);
            else if (ops->on_packet(ud, p, n, 0))
                return DISPATCH_STOPPED;
            break;
        }
        case CAPSULE_SIGNAL:
            if (ops->on_packet(ud, c.value, c.len, 1))
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
            break;
        default: /* RFC 9297 §3.2: unknown types are skipped */
            skip(ops, ud, DISPATCH_SKIP_UNKNOWN);
            break;
        }
    }
    return rc < 0 ? rc : DISPATCH_OK;
}
