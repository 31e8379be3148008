/*
 * stun.c — STUN Binding codec (see stun.h).
 */
#include "stun.h"

#include <string.h>

#define FINGERPRINT_XOR 0x5354554eu /* RFC 8489 §14.7 */
#define ATTR_HEADER_LEN 4u
#define FINGERPRINT_ATTR_LEN 8u

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* CRC-32 (ISO/IEC 13239, the one of zlib and Ethernet), bit by bit: a check
 * hashes under a hundred bytes a few times a second, so no table is worth
 * its 1 KiB. */
uint32_t stun_fingerprint(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;

    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return (crc ^ 0xFFFFFFFFu) ^ FINGERPRINT_XOR;
}

static void header_put(uint8_t *out, uint16_t type, uint16_t body_len,
                       const uint8_t txid[STUN_TXID_LEN])
{
    put16(out, type);
    put16(out + 2, body_len);
    put32(out + 4, STUN_MAGIC_COOKIE);
    memcpy(out + 8, txid, STUN_TXID_LEN);
}

/* Appends FINGERPRINT at off, over out[0..off); the header's length must
 * already count it. */
static void fingerprint_put(uint8_t *out, size_t off)
{
    put16(out + off, STUN_ATTR_FINGERPRINT);
    put16(out + off + 2, 4);
    put32(out + off + 4, stun_fingerprint(out, off));
}

int stun_binding_request_encode(const uint8_t txid[STUN_TXID_LEN], uint8_t *out, size_t cap)
{
    if (cap < STUN_BINDING_REQUEST_LEN)
        return PROTO_ERR_SPACE;
    header_put(out, STUN_BINDING_REQUEST, FINGERPRINT_ATTR_LEN, txid);
    fingerprint_put(out, STUN_HEADER_LEN);
    return (int)STUN_BINDING_REQUEST_LEN;
}

int stun_binding_response_encode(const uint8_t txid[STUN_TXID_LEN], const stun_addr_t *mapped,
                                 uint8_t *out, size_t cap)
{
    size_t alen;
    size_t total;
    uint8_t *v;

    if (mapped->family == 4)
        alen = 4;
    else if (mapped->family == 6)
        alen = 16;
    else
        return PROTO_ERR_RANGE;
    total = STUN_HEADER_LEN + ATTR_HEADER_LEN + 4 + alen + FINGERPRINT_ATTR_LEN;
    if (cap < total)
        return PROTO_ERR_SPACE;
    header_put(out, STUN_BINDING_SUCCESS, (uint16_t)(total - STUN_HEADER_LEN), txid);
    /* RFC 8489 §14.2: port XOR the cookie's top 16 bits; address XOR the
     * cookie (IPv4) or the cookie followed by the transaction id (IPv6). */
    put16(out + 20, STUN_ATTR_XOR_MAPPED_ADDRESS);
    put16(out + 22, (uint16_t)(4 + alen));
    v = out + 24;
    v[0] = 0;
    v[1] = mapped->family == 4 ? 0x01 : 0x02;
    put16(v + 2, (uint16_t)(mapped->port ^ (STUN_MAGIC_COOKIE >> 16)));
    for (size_t i = 0; i < alen; i++)
        v[4 + i] = mapped->addr[i] ^ out[4 + i]; /* out[4..20): cookie, txid */
    fingerprint_put(out, total - FINGERPRINT_ATTR_LEN);
    return (int)total;
}

static int fail(const char **why, const char *what)
{
    if (why)
        *why = what;
    return PROTO_ERR_MALFORMED;
}

static int xor_address_decode(const uint8_t *msg, const uint8_t *v, size_t vlen,
                              stun_addr_t *a, const char **why)
{
    size_t alen;

    if (vlen < 4)
        return fail(why, "XOR-MAPPED-ADDRESS too short");
    if (v[1] == 0x01)
        alen = 4;
    else if (v[1] == 0x02)
        alen = 16;
    else
        return fail(why, "XOR-MAPPED-ADDRESS has an unknown address family");
    if (vlen != 4 + alen)
        return fail(why, "XOR-MAPPED-ADDRESS length does not match its family");
    memset(a, 0, sizeof(*a));
    a->family = alen == 4 ? 4 : 6;
    a->port = (uint16_t)(get16(v + 2) ^ (STUN_MAGIC_COOKIE >> 16));
    for (size_t i = 0; i < alen; i++)
        a->addr[i] = v[4 + i] ^ msg[4 + i];
    return 0;
}

/* Attributes a Binding response may carry that we understand (RFC 8489
 * §18.3.1) or may skip; any other comprehension-required one fails the
 * transaction (§6.3.4). */
static int attr_known(uint16_t type)
{
    switch (type) {
    case STUN_ATTR_MAPPED_ADDRESS:
    case STUN_ATTR_USERNAME:
    case STUN_ATTR_MESSAGE_INTEGRITY:
    case STUN_ATTR_ERROR_CODE:
    case STUN_ATTR_UNKNOWN_ATTRIBUTES:
    case STUN_ATTR_REALM:
    case STUN_ATTR_NONCE:
    case STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
    case STUN_ATTR_PASSWORD_ALGORITHM:
    case STUN_ATTR_USERHASH:
    case STUN_ATTR_XOR_MAPPED_ADDRESS:
        return 1;
    default:
        return type >= 0x8000; /* comprehension-optional */
    }
}

/* The checks both decoders share; the response fields go to *out when it is
 * not NULL. */
static int message_decode(const uint8_t *p, size_t len, uint16_t want_type,
                          const uint8_t txid[STUN_TXID_LEN], stun_binding_response_t *out,
                          const char **why)
{
    size_t body, total, off;
    stun_binding_response_t r;

    memset(&r, 0, sizeof(r));
    /* The fixed checks come first, as soon as their bytes are there, so that
     * a datagram that is not STUN is refused rather than "incomplete". */
    if (len >= 1 && (p[0] & 0xC0) != 0)
        return fail(why, "the two leading bits are not zero");
    if (len < STUN_HEADER_LEN)
        return PROTO_INCOMPLETE;
    if (get32(p + 4) != STUN_MAGIC_COOKIE)
        return fail(why, "wrong magic cookie");
    if (get16(p) != want_type)
        return fail(why, want_type == STUN_BINDING_SUCCESS ? "not a Binding success response"
                                                           : "not a Binding request");
    body = get16(p + 2);
    if (body % 4 != 0)
        return fail(why, "message length not a multiple of 4");
    if (txid && memcmp(p + 8, txid, STUN_TXID_LEN) != 0)
        return fail(why, "transaction id does not match");
    total = STUN_HEADER_LEN + body;
    if (len < total)
        return PROTO_INCOMPLETE;

    for (off = STUN_HEADER_LEN; off < total;) {
        uint16_t type, alen;
        size_t padded;

        if (r.has_fingerprint)
            return fail(why, "attribute after FINGERPRINT");
        if (total - off < ATTR_HEADER_LEN)
            return fail(why, "attribute header overruns the message");
        type = get16(p + off);
        alen = get16(p + off + 2);
        padded = ((size_t)alen + 3u) & ~(size_t)3u;
        if (padded > total - off - ATTR_HEADER_LEN)
            return fail(why, "attribute overruns the message");
        /* A server answers a request's unknown attributes with 420 (§6.3.1);
         * that is its business, not the codec's. */
        if (want_type == STUN_BINDING_SUCCESS && !attr_known(type))
            return fail(why, "unknown comprehension-required attribute");
        if (type == STUN_ATTR_XOR_MAPPED_ADDRESS && !r.has_mapped) {
            int rc = xor_address_decode(p, p + off + 4, alen, &r.mapped, why);
            if (rc < 0)
                return rc;
            r.has_mapped = 1;
        } else if (type == STUN_ATTR_FINGERPRINT) {
            if (alen != 4)
                return fail(why, "FINGERPRINT length is not 4");
            if (get32(p + off + 4) != stun_fingerprint(p, off))
                return fail(why, "FINGERPRINT does not match");
            r.has_fingerprint = 1;
        }
        off += ATTR_HEADER_LEN + padded;
    }
    if (out)
        *out = r;
    return (int)total;
}

int stun_binding_response_decode(const uint8_t *p, size_t len,
                                 const uint8_t txid[STUN_TXID_LEN],
                                 stun_binding_response_t *out, const char **why)
{
    return message_decode(p, len, STUN_BINDING_SUCCESS, txid, out, why);
}

int stun_binding_request_decode(const uint8_t *p, size_t len, uint8_t txid_out[STUN_TXID_LEN],
                                const char **why)
{
    int rc = message_decode(p, len, STUN_BINDING_REQUEST, NULL, NULL, why);

    if (rc > 0)
        memcpy(txid_out, p + 8, STUN_TXID_LEN);
    return rc;
}
