/*
 * capsule.h — RFC 9297 §3.2 capsules and the sluice v1 capsule types.
 *
 *   Capsule {
 *     Capsule Type (i),      -- QUIC varint
 *     Capsule Length (i),    -- QUIC varint, length of the value
 *     Capsule Value (..),
 *   }
 *
 * Types (see proto/README.md for the full contract and test vectors):
 *   0x00   DATAGRAM  context-id (i) = 0, then one UDP payload (media class);
 *                    or context-id 2, a 4-byte stamp, then the payload
 *   0x3510 SIGNAL    one UDP payload of the signaling class
 *   0x3511 PING      8 opaque bytes, answered by a PONG carrying the same bytes
 *   0x3512 PONG
 *   0x3513 CLOSE     code (i), then a UTF-8 reason
 * Unknown types are returned to the caller, who must skip them (RFC 9297 §3.2).
 */
#ifndef SLUICE_CAPSULE_H
#define SLUICE_CAPSULE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

enum capsule_type {
    CAPSULE_DATAGRAM = 0x00,
    CAPSULE_SIGNAL = 0x3510,
    CAPSULE_PING = 0x3511,
    CAPSULE_PONG = 0x3512,
    CAPSULE_CLOSE = 0x3513,
};

/* CLOSE codes (proto/README.md §CLOSE). Stable on the wire: append only. */
enum close_code {
    CLOSE_NORMAL = 0x00,             /* sender is done */
    CLOSE_IDLE_TIMEOUT = 0x01,       /* no traffic for the idle timeout */
    CLOSE_PROTOCOL_ERROR = 0x02,     /* malformed or oversized capsule */
    CLOSE_CREDENTIAL_EXPIRED = 0x03, /* the tunnel's credential ran out */
    CLOSE_TENANT_DISABLED = 0x04,    /* tenant switched off for this region */
    CLOSE_BACKEND_UNREACHABLE = 0x05,/* backend refuses or does not answer */
    CLOSE_OVERLOAD = 0x06,           /* gateway sheds load */
    CLOSE_SHUTTING_DOWN = 0x07,      /* gateway drains or stops */
    CLOSE_RATE_LIMITED = 0x08,       /* tenant or tunnel over its rate limit */
    CLOSE_INTERNAL_ERROR = 0x09,     /* a bug or resource failure on the sender */
    CLOSE_TAKEN_OVER = 0x0a,         /* the session was resumed on another stream */
};

#define CAPSULE_DEFAULT_MAX_VALUE 65535u
#define CAPSULE_PING_LEN 8u
/* Largest capsule header: two 8-byte varints. */
#define CAPSULE_MAX_HEADER 16u
/* DATAGRAM context ids (RFC 9298 §4): 0 is a bare UDP payload; 2 is a UDP
 * payload after the sender's 4-byte stamp (proto/README.md §5.1.1), sent only
 * once the peer accepted stamps. */
#define CAPSULE_CONTEXT_UDP 0u
#define CAPSULE_CONTEXT_STAMPED 2u
#define CAPSULE_STAMP_LEN 4u
/* Largest DATAGRAM/SIGNAL overhead: header, the one-byte context id, a stamp. */
#define CAPSULE_MAX_OVERHEAD (CAPSULE_MAX_HEADER + 1u + CAPSULE_STAMP_LEN)

typedef struct capsule {
    uint64_t type;
    const uint8_t *value; /* points into the decoder's input or reader buffer */
    size_t len;
} capsule_t;

/* Static name of a close code ("normal", "idle timeout", ...; "unknown"). */
const char *capsule_close_name(uint64_t code);

/* Decodes one capsule from contiguous src[0..len). Returns bytes consumed,
 * PROTO_INCOMPLETE, PROTO_ERR_TOO_LARGE when the declared value length exceeds
 * max_value (detected as soon as the length field is complete, before the value
 * arrives). *err_desc (may be NULL) gets a static description on error. */
ssize_t capsule_decode(const uint8_t *src, size_t len, size_t max_value, capsule_t *out,
                       const char **err_desc);

/* Size of a capsule header for this type and value length; 0 if out of range. */
size_t capsule_header_size(uint64_t type, uint64_t value_len);

/* Writes type and length varints. Returns bytes written or a negative proto_err. */
ssize_t capsule_encode_header(uint8_t *dst, size_t cap, uint64_t type, uint64_t value_len);

/* Writes a whole capsule (header + value). Returns bytes written or a negative
 * proto_err; nothing is written on error. */
ssize_t capsule_encode(uint8_t *dst, size_t cap, uint64_t type, const uint8_t *value,
                       size_t len);

/* DATAGRAM with context id 0 around one UDP payload. */
ssize_t capsule_encode_datagram(uint8_t *dst, size_t cap, const uint8_t *payload, size_t len);

/* DATAGRAM with context id 2: the stamp (the sender's clock in microseconds,
 * modulo 2^32, when the payload entered the sender), then the UDP payload. */
ssize_t capsule_encode_stamped(uint8_t *dst, size_t cap, uint32_t sent_us, const uint8_t *payload,
                               size_t len);

/* Writes the 4-byte stamp of a context-2 DATAGRAM (network byte order). */
static inline void capsule_put_stamp(uint8_t *dst, uint32_t sent_us)
{
    dst[0] = (uint8_t)(sent_us >> 24);
    dst[1] = (uint8_t)(sent_us >> 16);
    dst[2] = (uint8_t)(sent_us >> 8);
    dst[3] = (uint8_t)sent_us;
}

static inline uint32_t capsule_get_stamp(const uint8_t *src)
{
    return (uint32_t)src[0] << 24 | (uint32_t)src[1] << 16 | (uint32_t)src[2] << 8 | src[3];
}

/* What a DATAGRAM value holds before its payload: context id 0, or, stamped,
 * context id 2 and the stamp. Writes it to pre and returns its length. */
static inline size_t capsule_datagram_prefix(uint8_t pre[1 + CAPSULE_STAMP_LEN], int stamped,
                                             uint32_t sent_us)
{
    if (!stamped) {
        pre[0] = CAPSULE_CONTEXT_UDP;
        return 1;
    }
    pre[0] = CAPSULE_CONTEXT_STAMPED;
    capsule_put_stamp(pre + 1, sent_us);
    return 1 + CAPSULE_STAMP_LEN;
}

/* CLOSE with a code and a reason (reason may be NULL when reason_len is 0).
 * A reason that is not valid UTF-8 is refused with PROTO_ERR_MALFORMED, so we
 * never send a CLOSE the peer must reject. */
ssize_t capsule_encode_close(uint8_t *dst, size_t cap, uint64_t code, const char *reason,
                             size_t reason_len);

/* Splits a DATAGRAM value into context id and payload. Returns PROTO_OK or
 * PROTO_ERR_MALFORMED (empty value / truncated context id). */
int capsule_parse_datagram(const capsule_t *c, uint64_t *context_id, const uint8_t **payload,
                           size_t *len);

/* Splits a CLOSE value into code and reason. Returns PROTO_OK, or
 * PROTO_ERR_MALFORMED when the code is truncated or the reason is not UTF-8. */
int capsule_parse_close(const capsule_t *c, uint64_t *code, const char **reason,
                        size_t *reason_len);

/*
 * Incremental reader for a byte stream of capsules that arrives in chunks of
 * any size (HTTP/2 DATA frames). Capsules wholly inside one chunk are returned
 * pointing into that chunk (zero copy); a capsule split across chunks is
 * reassembled in the caller-owned buffer given to capsule_reader_init, which must
 * hold at least max_value + CAPSULE_MAX_HEADER bytes. The reader never allocates.
 *
 * Typical use:
 *     while ((rc = capsule_reader_next(&r, &p, &n, &c, &err)) > 0) handle(&c);
 *     if (rc < 0) protocol_error(err);
 */
typedef struct capsule_reader {
    uint8_t *_buf;
    size_t _cap;
    size_t _have;      /* bytes of a partial capsule held in _buf */
    size_t max_value;
} capsule_reader_t;

void capsule_reader_init(capsule_reader_t *r, uint8_t *buf, size_t cap, size_t max_value);

/* Takes bytes from *src and *len (advancing both). Returns 1 with *out set when a
 * capsule is complete (valid until the next call), 0 when all input is consumed
 * and more is needed, or a negative proto_err (the stream is then unusable).
 * *err_desc (may be NULL) gets a static description on error. */
int capsule_reader_next(capsule_reader_t *r, const uint8_t **src, size_t *len, capsule_t *out,
                        const char **err_desc);

/* Bytes of a partial capsule held (non-zero at end of stream = truncated). */
size_t capsule_reader_pending(const capsule_reader_t *r);

#endif
