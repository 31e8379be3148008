/*
 * capsule.c — RFC 9297 §3.2 capsules, the sluice v1 capsule values, and an
 * incremental reader for a capsule stream that arrives in arbitrary chunks.
 *
 * Nothing here allocates or keeps state outside the caller's structs.
 */
#include "capsule.h"

#include <limits.h>
#include <string.h>

#include "varint.h"

static const char *const ERR_TOO_LARGE = "capsule value longer than the allowed maximum";
static const char *const ERR_READER_SPACE =
    "capsule reader buffer smaller than max_value + CAPSULE_MAX_HEADER";

const char *capsule_close_name(uint64_t code)
{
    switch (code) {
    case CLOSE_NORMAL:
        return "normal";
    case CLOSE_IDLE_TIMEOUT:
        return "idle timeout";
    case CLOSE_PROTOCOL_ERROR:
        return "protocol error";
    case CLOSE_CREDENTIAL_EXPIRED:
        return "credential expired";
    case CLOSE_TENANT_DISABLED:
        return "tenant disabled";
    case CLOSE_BACKEND_UNREACHABLE:
        return "backend unreachable";
    case CLOSE_OVERLOAD:
        return "overload";
    case CLOSE_SHUTTING_DOWN:
        return "shutting down";
    case CLOSE_RATE_LIMITED:
        return "rate limited";
    case CLOSE_TAKEN_OVER:
        return "taken over";
    case CLOSE_INTERNAL_ERROR:
        return "internal error";
    default:
        return "unknown";
    }
}

/* Decodes the Type and Length varints. Returns the header size or
 * PROTO_INCOMPLETE. Any header that parses is well formed: every varint value
 * is a legal type and length (RFC 9297 §3.2). */
static ssize_t decode_header(const uint8_t *src, size_t len, uint64_t *type, uint64_t *vlen)
{
    ssize_t t = varint_decode(src, len, type);
    if (t < 0)
        return t;
    ssize_t l = varint_decode(src + t, len - (size_t)t, vlen);
    if (l < 0)
        return l;
    return t + l;
}

/* The declared length is checked against max_value before any of the value is
 * looked at, so a peer cannot make us wait for (or buffer) an oversized value.
 * The SSIZE_MAX bound keeps the return value representable when max_value is
 * SIZE_MAX (and a 62-bit length on a 32-bit size_t). */
static int too_large(size_t hdr, uint64_t vlen, size_t max_value)
{
    return vlen > max_value || vlen > (uint64_t)(SSIZE_MAX - (ssize_t)hdr);
}

ssize_t capsule_decode(const uint8_t *src, size_t len, size_t max_value, capsule_t *out,
                       const char **err_desc)
{
    uint64_t type, vlen;
    ssize_t hdr = decode_header(src, len, &type, &vlen);
    if (hdr < 0)
        return hdr;
    if (too_large((size_t)hdr, vlen, max_value)) {
        if (err_desc != NULL)
            *err_desc = ERR_TOO_LARGE;
        return PROTO_ERR_TOO_LARGE;
    }
    if (len - (size_t)hdr < vlen)
        return PROTO_INCOMPLETE;

    out->type = type;
    out->value = src + hdr;
    out->len = (size_t)vlen;
    return hdr + (ssize_t)vlen;
}

size_t capsule_header_size(uint64_t type, uint64_t value_len)
{
    size_t t = varint_size(type), l = varint_size(value_len);
    if (t == 0 || l == 0)
        return 0;
    return t + l;
}

ssize_t capsule_encode_header(uint8_t *dst, size_t cap, uint64_t type, uint64_t value_len)
{
    size_t n = capsule_header_size(type, value_len);
    if (n == 0)
        return PROTO_ERR_RANGE;
    if (cap < n)
        return PROTO_ERR_SPACE;
    ssize_t t = varint_encode(dst, cap, type);
    ssize_t l = varint_encode(dst + t, cap - (size_t)t, value_len);
    return t + l;
}

/* Size check shared by the encoders: header + len must fit in cap and in the
 * return type. Returns the header size (> 0) or a negative proto_err. */
static ssize_t check_encode(size_t cap, uint64_t type, size_t len)
{
    size_t hdr = capsule_header_size(type, len);
    if (hdr == 0 || len > (size_t)SSIZE_MAX - hdr)
        return PROTO_ERR_RANGE;
    if (cap < hdr || cap - hdr < len)
        return PROTO_ERR_SPACE;
    return (ssize_t)hdr;
}

ssize_t capsule_encode(uint8_t *dst, size_t cap, uint64_t type, const uint8_t *value,
                       size_t len)
{
    ssize_t hdr = check_encode(cap, type, len);
    if (hdr < 0)
        return hdr;
    /* memmove: the caller may have staged the value at dst + header size. */
    if (len > 0)
        memmove(dst + hdr, value, len);
    capsule_encode_header(dst, cap, type, len);
    return hdr + (ssize_t)len;
}

/* RFC 9297 §2.1: a DATAGRAM value is the context id (with what that id puts
 * before the payload: capsule_datagram_prefix), then the payload, which may
 * already sit where it belongs (memmove). */
static ssize_t encode_datagram(uint8_t *dst, size_t cap, int stamped, uint32_t sent_us,
                               const uint8_t *payload, size_t len)
{
    uint8_t pre[1 + CAPSULE_STAMP_LEN];
    size_t n = capsule_datagram_prefix(pre, stamped, sent_us);
    if (len > (size_t)SSIZE_MAX - n)
        return PROTO_ERR_RANGE;
    ssize_t hdr = check_encode(cap, CAPSULE_DATAGRAM, len + n);
    if (hdr < 0)
        return hdr;
    if (len > 0)
        memmove(dst + hdr + n, payload, len);
    capsule_encode_header(dst, cap, CAPSULE_DATAGRAM, len + n);
    memcpy(dst + hdr, pre, n);
    return hdr + (ssize_t)n + (ssize_t)len;
}

ssize_t capsule_encode_datagram(uint8_t *dst, size_t cap, const uint8_t *payload, size_t len)
{
    return encode_datagram(dst, cap, 0, 0, payload, len);
}

ssize_t capsule_encode_stamped(uint8_t *dst, size_t cap, uint32_t sent_us, const uint8_t *payload,
                               size_t len)
{
    return encode_datagram(dst, cap, 1, sent_us, payload, len);
}

/* UTF-8 as RFC 3629 §4 defines it: shortest form only, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong below U+0800 */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong below U+10000 */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return 0; /* continuation byte, C0/C1 overlong lead, F5..FF */
        }
        if (len - i < n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += n;
    }
    return 1;
}

ssize_t capsule_encode_close(uint8_t *dst, size_t cap, uint64_t code, const char *reason,
                             size_t reason_len)
{
    /* Refuse to send what the peer's capsule_parse_close would reject. */
    size_t cn = varint_size(code);
    if (cn == 0)
        return PROTO_ERR_RANGE;
    if (reason_len > 0 && !utf8_valid((const uint8_t *)reason, reason_len))
        return PROTO_ERR_MALFORMED;
    if (reason_len > (size_t)SSIZE_MAX - cn)
        return PROTO_ERR_RANGE;
    ssize_t hdr = check_encode(cap, CAPSULE_CLOSE, cn + reason_len);
    if (hdr < 0)
        return hdr;
    if (reason_len > 0)
        memmove(dst + hdr + cn, reason, reason_len);
    capsule_encode_header(dst, cap, CAPSULE_CLOSE, cn + reason_len);
    varint_encode(dst + hdr, cn, code);
    return hdr + (ssize_t)(cn + reason_len);
}

int capsule_parse_datagram(const capsule_t *c, uint64_t *context_id, const uint8_t **payload,
                           size_t *len)
{
    uint64_t id;
    ssize_t n = varint_decode(c->value, c->len, &id);
    if (n < 0)
        return PROTO_ERR_MALFORMED; /* empty value or truncated context id */
    *context_id = id;
    *payload = c->value + n;
    *len = c->len - (size_t)n;
    return PROTO_OK;
}

int capsule_parse_close(const capsule_t *c, uint64_t *code, const char **reason,
                        size_t *reason_len)
{
    uint64_t v;
    ssize_t n = varint_decode(c->value, c->len, &v);
    if (n < 0)
        return PROTO_ERR_MALFORMED; /* the code is required */
    if (!utf8_valid(c->value + n, c->len - (size_t)n))
        return PROTO_ERR_MALFORMED;
    *code = v;
    *reason = (const char *)(c->value + n);
    *reason_len = c->len - (size_t)n;
    return PROTO_OK;
}

/*
 * Reader.
 *
 * States, all in the caller's struct:
 *   _have == 0              nothing pending; the next capsule may be zero copy
 *   _have  > 0              _buf[0.._have) is the start of a capsule (header
 *                           possibly incomplete) copied from earlier chunks
 *   _buf == NULL            failed: -_cap is the error (0: never had a buffer)
 *
 * A capsule reassembled in _buf is returned with _have already reset to 0; its
 * bytes stay in _buf until the next call overwrites them, which is exactly the
 * "valid until the next call" promise.
 *
 * Bounds: a header is at most CAPSULE_MAX_HEADER bytes and a value at most
 * max_value bytes, and _cap >= max_value + CAPSULE_MAX_HEADER is re-checked on
 * every call (max_value is a public field), so no copy below can pass _cap.
 */
static int reader_fail(capsule_reader_t *r, int rc)
{
    r->_buf = NULL;
    r->_cap = (size_t)-rc;
    r->_have = 0;
    return rc;
}

static const char *reader_err_desc(int rc)
{
    return rc == PROTO_ERR_TOO_LARGE ? ERR_TOO_LARGE : ERR_READER_SPACE;
}

void capsule_reader_init(capsule_reader_t *r, uint8_t *buf, size_t cap, size_t max_value)
{
    r->_buf = buf;
    r->_cap = buf != NULL ? cap : 0;
    r->_have = 0;
    r->max_value = max_value;
}

int capsule_reader_next(capsule_reader_t *r, const uint8_t **src, size_t *len, capsule_t *out,
                        const char **err_desc)
{
    int rc;

    if (r->_buf == NULL) {
        rc = r->_cap != 0 ? -(int)r->_cap : PROTO_ERR_SPACE;
        goto err;
    }
    if (r->_cap < CAPSULE_MAX_HEADER || r->max_value > r->_cap - CAPSULE_MAX_HEADER) {
        rc = reader_fail(r, PROTO_ERR_SPACE);
        goto err;
    }

    if (r->_have == 0) {
        if (*len == 0)
            return 0;
        ssize_t n = capsule_decode(*src, *len, r->max_value, out, NULL);
        if (n > 0) {
            *src += n;
            *len -= (size_t)n;
            return 1;
        }
        if (n != PROTO_INCOMPLETE) {
            rc = reader_fail(r, (int)n);
            goto err;
        }
        /* The rest of the chunk is the start of one capsule whose declared
         * size (if known) passed the max_value check: it fits in _buf. */
        memcpy(r->_buf, *src, *len);
        r->_have = *len;
        *src += *len;
        *len = 0;
        return 0;
    }

    /* Something is pending. Copy enough to complete the header, without yet
     * consuming it: these bytes may run past the end of a short capsule. */
    size_t peek = 0;
    if (r->_have < CAPSULE_MAX_HEADER) {
        peek = CAPSULE_MAX_HEADER - r->_have;
        if (peek > *len)
            peek = *len;
        if (peek > 0)
            memcpy(r->_buf + r->_have, *src, peek);
    }
    uint64_t type, vlen;
    ssize_t hdr = decode_header(r->_buf, r->_have + peek, &type, &vlen);
    if (hdr < 0) {
        /* Still no whole header, so every peeked byte belongs to it. */
        r->_have += peek;
        *src += peek;
        *len -= peek;
        return 0;
    }
    if (too_large((size_t)hdr, vlen, r->max_value)) {
        rc = reader_fail(r, PROTO_ERR_TOO_LARGE);
        goto err;
    }

    size_t total = (size_t)hdr + (size_t)vlen; /* > _have: it was incomplete */
    size_t take = total - r->_have;
    if (take > *len)
        take = *len;
    if (take > 0)
        memcpy(r->_buf + r->_have, *src, take);
    r->_have += take;
    *src += take;
    *len -= take;
    if (r->_have < total)
        return 0;

    out->type = type;
    out->value = r->_buf + hdr;
    out->len = (size_t)vlen;
    r->_have = 0;
    return 1;

err:
    if (err_desc != NULL)
        *err_desc = reader_err_desc(rc);
    return rc;
}

size_t capsule_reader_pending(const capsule_reader_t *r)
{
    return r->_buf != NULL ? r->_have : 0;
}
