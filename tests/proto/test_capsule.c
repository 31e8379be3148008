/*
 * test_capsule.c — proto/capsule.c: RFC 9297 §3.2 capsules, the v1 capsule
 * values, and the incremental reader.
 *
 * The byte vectors marked "README" are the ones printed in proto/README.md §9.2;
 * they must stay identical.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "../../proto/proto.h"
#include "../../proto/varint.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- vectors ------------------------------------------------------------ */

/* README: DATAGRAM, context id 0, carrying a 12-byte RTP header. */
static const uint8_t W_DATAGRAM_RTP[] = {0x00, 0x0d, 0x00, 0x80, 0x60, 0x00, 0x01, 0x00,
                                         0x00, 0x00, 0xa0, 0x12, 0x34, 0x56, 0x78};
/* README: the same RTP header in a stamped DATAGRAM (context id 2), sent
 * 123,456 us into the sender's clock. */
static const uint8_t W_DATAGRAM_STAMPED[] = {0x00, 0x11, 0x02, 0x00, 0x01, 0xe2, 0x40,
                                             0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00,
                                             0xa0, 0x12, 0x34, 0x56, 0x78};
/* README: SIGNAL carrying a 20-byte STUN Binding Request header (RFC 8489 §5). */
static const uint8_t W_SIGNAL_STUN[] = {0x75, 0x10, 0x14, 0x00, 0x01, 0x00, 0x00, 0x21,
                                        0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc,
                                        0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
/* README: PING and the PONG that answers it. */
static const uint8_t W_PING[] = {0x75, 0x11, 0x08, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
static const uint8_t W_PONG[] = {0x75, 0x12, 0x08, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
/* README: CLOSE(normal, "bye"). */
static const uint8_t W_CLOSE_BYE[] = {0x75, 0x13, 0x04, 0x00, 0x62, 0x79, 0x65};
/* README: CLOSE(shutting down) with an empty reason. */
static const uint8_t W_CLOSE_SHUTDOWN[] = {0x75, 0x13, 0x01, 0x07};
/* README: grease type 0x29 * 1000 + 0x17 = 0xa03f (4-byte varint), "grease". */
static const uint8_t W_GREASE[] = {0x80, 0x00, 0xa0, 0x3f, 0x06, 0x67,
                                   0x72, 0x65, 0x61, 0x73, 0x65};
/* README: grease type 0x17 (N = 0) with an empty value. */
static const uint8_t W_GREASE_EMPTY[] = {0x17, 0x00};
/* README: grease type 0x40 (N = 1), empty. */
static const uint8_t W_GREASE1_EMPTY[] = {0x40, 0x40, 0x00};
/* README: the PING above with a non-minimal header (4-byte type, 2-byte
 * length). Decoders accept it; encoders never produce it. */
static const uint8_t W_PING_NONMIN[] = {0x80, 0x00, 0x35, 0x11, 0x40, 0x08, 0x01,
                                        0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
/* The largest header: 8-byte type, 8-byte length (5). */
static const uint8_t W_HDR16[] = {0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x35, 0x10,
                                  0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
                                  0x11, 0x22, 0x33, 0x44, 0x55};

/* A DATAGRAM with a 300-byte payload: 2-byte length varint 0x412d (301). */
#define BIG_PAYLOAD 300u
static uint8_t big_byte(size_t i)
{
    return (uint8_t)(i * 7 + 3);
}

struct cvec {
    const char *name;
    uint64_t type;
    const uint8_t *wire;
    size_t wlen;
    size_t hdr;  /* value = wire + hdr */
    int minimal; /* capsule_encode reproduces wire */
};

#define V(n, t, w, h, m) {n, t, w, sizeof(w), h, m}
static const struct cvec VECTORS[] = {
    V("grease-empty", 0x17, W_GREASE_EMPTY, 2, 1),
    V("datagram-rtp", CAPSULE_DATAGRAM, W_DATAGRAM_RTP, 2, 1),
    V("datagram-stamped", CAPSULE_DATAGRAM, W_DATAGRAM_STAMPED, 2, 1),
    V("signal-stun", CAPSULE_SIGNAL, W_SIGNAL_STUN, 3, 1),
    V("ping", CAPSULE_PING, W_PING, 3, 1),
    V("pong", CAPSULE_PONG, W_PONG, 3, 1),
    V("close-bye", CAPSULE_CLOSE, W_CLOSE_BYE, 3, 1),
    V("close-shutdown", CAPSULE_CLOSE, W_CLOSE_SHUTDOWN, 3, 1),
    V("grease", 0xa03f, W_GREASE, 5, 1),
    V("ping-nonminimal", CAPSULE_PING, W_PING_NONMIN, 6, 0),
    V("header-16", CAPSULE_SIGNAL, W_HDR16, 16, 0),
    V("grease1-empty", 0x40, W_GREASE1_EMPTY, 3, 1),
};

static size_t build_big(uint8_t *out)
{
    out[0] = 0x00;
    out[1] = 0x41;
    out[2] = 0x2d;
    out[3] = 0x00;
    for (size_t i = 0; i < BIG_PAYLOAD; i++)
        out[4 + i] = big_byte(i);
    return 4 + BIG_PAYLOAD;
}

/* ---- capsule_decode ----------------------------------------------------- */

static void check_decode_vector(const struct cvec *v)
{
    capsule_t c;
    ssize_t n = capsule_decode(v->wire, v->wlen, CAPSULE_DEFAULT_MAX_VALUE, &c, NULL);
    cr_assert_eq(n, (ssize_t)v->wlen, "%s", v->name);
    cr_assert_eq(c.type, v->type, "%s", v->name);
    cr_assert_eq(c.len, v->wlen - v->hdr, "%s", v->name);
    cr_assert_eq(c.value, v->wire + v->hdr, "%s: value must point into the input", v->name);

    /* Trailing bytes (the next capsule) are left alone. */
    uint8_t longer[512];
    cr_assert_leq(v->wlen + 8, sizeof(longer));
    memcpy(longer, v->wire, v->wlen);
    memset(longer + v->wlen, 0xc0, 8);
    cr_assert_eq(capsule_decode(longer, v->wlen + 8, CAPSULE_DEFAULT_MAX_VALUE, &c, NULL),
                 (ssize_t)v->wlen, "%s", v->name);
    cr_assert_eq(c.type, v->type);

    /* Every truncation point, from nothing to one byte short. */
    for (size_t k = 0; k < v->wlen; k++) {
        capsule_t u = {.type = 99, .value = NULL, .len = 99};
        const char *desc = "untouched";
        cr_assert_eq(capsule_decode(v->wire, k, CAPSULE_DEFAULT_MAX_VALUE, &u, &desc),
                     PROTO_INCOMPLETE, "%s truncated to %zu", v->name, k);
        cr_assert_eq(u.type, 99);
        cr_assert_null(u.value);
        cr_assert_eq(u.len, 99);
        cr_assert_str_eq(desc, "untouched");
    }
}

Test(capsule, decode_vectors)
{
    for (size_t i = 0; i < NELEM(VECTORS); i++)
        check_decode_vector(&VECTORS[i]);
}

Test(capsule, decode_big)
{
    uint8_t wire[4 + BIG_PAYLOAD];
    struct cvec v = {"big", CAPSULE_DATAGRAM, wire, build_big(wire), 3, 1};
    check_decode_vector(&v);
}

Test(capsule, decode_grease_and_unknown_types)
{
    /* RFC 9297 §5.4: 0x29 * N + 0x17 is reserved grease; any type decodes
     * and is handed to the caller to skip. */
    const uint64_t nmax = (VARINT_MAX - 0x17) / 0x29;
    const uint64_t types[] = {0x17,        0x40,       0x29 * 100 + 0x17, 0x29 * 1000000 + 0x17,
                              0x29 * nmax + 0x17, 0x01, 0x3514, 0xffff, VARINT_MAX};
    for (size_t i = 0; i < NELEM(types); i++) {
        uint8_t buf[32];
        const uint8_t val[] = {0xde, 0xad};
        ssize_t n = capsule_encode(buf, sizeof(buf), types[i], val, sizeof(val));
        cr_assert_gt(n, 0);
        capsule_t c;
        cr_assert_eq(capsule_decode(buf, (size_t)n, CAPSULE_DEFAULT_MAX_VALUE, &c, NULL), n);
        cr_assert_eq(c.type, types[i]);
        cr_assert_eq(c.len, 2);
        cr_assert_arr_eq(c.value, val, 2);
    }
}

Test(capsule, decode_oversize_header_only)
{
    /* SIGNAL declaring 256 bytes, with none of them present. */
    const uint8_t hdr[] = {0x75, 0x10, 0x41, 0x00};
    capsule_t c = {0};
    const char *desc = NULL;
    cr_assert_eq(capsule_decode(hdr, sizeof(hdr), 255, &c, &desc), PROTO_ERR_TOO_LARGE);
    cr_assert_not_null(desc);
    cr_assert_gt(strlen(desc), 0);
    cr_assert_null(c.value);
    cr_assert_eq(capsule_decode(hdr, sizeof(hdr), 255, &c, NULL), PROTO_ERR_TOO_LARGE);
    /* Exactly the maximum is fine: it just needs the value. */
    cr_assert_eq(capsule_decode(hdr, sizeof(hdr), 256, &c, &desc), PROTO_INCOMPLETE);
    /* Before the length is complete, nothing is known yet. */
    cr_assert_eq(capsule_decode(hdr, 3, 0, &c, &desc), PROTO_INCOMPLETE);

    /* The default maximum: 65535 accepted, 65536 rejected. */
    const uint8_t at_max[] = {0x75, 0x10, 0x80, 0x00, 0xff, 0xff};
    const uint8_t over_max[] = {0x75, 0x10, 0x80, 0x01, 0x00, 0x00};
    cr_assert_eq(capsule_decode(at_max, sizeof(at_max), CAPSULE_DEFAULT_MAX_VALUE, &c, NULL),
                 PROTO_INCOMPLETE);
    cr_assert_eq(capsule_decode(over_max, sizeof(over_max), CAPSULE_DEFAULT_MAX_VALUE, &c, NULL),
                 PROTO_ERR_TOO_LARGE);

    /* max_value 0: only empty values. */
    cr_assert_eq(capsule_decode(W_GREASE_EMPTY, 2, 0, &c, NULL), 2);
    cr_assert_eq(capsule_decode(W_PING, 3, 0, &c, NULL), PROTO_ERR_TOO_LARGE);

    /* The largest length a varint carries, with no limit: incomplete, and no
     * overflow computing header + length. */
    const uint8_t huge[] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(capsule_decode(huge, sizeof(huge), SIZE_MAX, &c, NULL), PROTO_INCOMPLETE);
    cr_assert_eq(capsule_decode(huge, sizeof(huge), CAPSULE_DEFAULT_MAX_VALUE, &c, NULL),
                 PROTO_ERR_TOO_LARGE);
}

/* ---- encoders ----------------------------------------------------------- */

/* Every capacity below the size is SPACE and writes nothing; the exact size
 * works. enc() encodes the vector into (dst, cap). */
typedef ssize_t (*enc_fn)(uint8_t *dst, size_t cap, const struct cvec *v);

static void check_encoder(enc_fn enc, const struct cvec *v)
{
    uint8_t buf[512];
    for (size_t cap = 0; cap <= v->wlen; cap++) {
        memset(buf, 0xaa, sizeof(buf));
        ssize_t n = enc(buf, cap, v);
        if (cap < v->wlen) {
            cr_assert_eq(n, PROTO_ERR_SPACE, "%s cap %zu", v->name, cap);
            for (size_t i = 0; i < sizeof(buf); i++)
                cr_assert_eq(buf[i], 0xaa, "%s: SPACE wrote byte %zu (cap %zu)", v->name, i, cap);
        } else {
            cr_assert_eq(n, (ssize_t)v->wlen, "%s", v->name);
            cr_assert_arr_eq(buf, v->wire, v->wlen, "%s", v->name);
            cr_assert_eq(buf[v->wlen], 0xaa, "%s: wrote past the end", v->name);
        }
    }
}

static ssize_t enc_generic(uint8_t *dst, size_t cap, const struct cvec *v)
{
    return capsule_encode(dst, cap, v->type, v->wire + v->hdr, v->wlen - v->hdr);
}

static ssize_t enc_datagram(uint8_t *dst, size_t cap, const struct cvec *v)
{
    /* wire = header, context id 0, payload */
    return capsule_encode_datagram(dst, cap, v->wire + v->hdr + 1, v->wlen - v->hdr - 1);
}

static ssize_t enc_stamped(uint8_t *dst, size_t cap, const struct cvec *v)
{
    /* wire = header, context id 2, stamp, payload */
    const uint8_t *value = v->wire + v->hdr;
    cr_assert_eq(value[0], CAPSULE_CONTEXT_STAMPED);
    return capsule_encode_stamped(dst, cap, capsule_get_stamp(value + 1),
                                  value + 1 + CAPSULE_STAMP_LEN,
                                  v->wlen - v->hdr - 1 - CAPSULE_STAMP_LEN);
}

static ssize_t enc_close(uint8_t *dst, size_t cap, const struct cvec *v)
{
    uint64_t code;
    ssize_t n = varint_decode(v->wire + v->hdr, v->wlen - v->hdr, &code);
    cr_assert_gt(n, 0);
    size_t rlen = v->wlen - v->hdr - (size_t)n;
    return capsule_encode_close(dst, cap, code,
                                rlen ? (const char *)v->wire + v->hdr + n : NULL, rlen);
}

Test(capsule, encode_vectors)
{
    for (size_t i = 0; i < NELEM(VECTORS); i++) {
        const struct cvec *v = &VECTORS[i];
        if (!v->minimal)
            continue;
        check_encoder(enc_generic, v);
        cr_assert_eq(capsule_header_size(v->type, v->wlen - v->hdr), v->hdr, "%s", v->name);
        if (v->type == CAPSULE_DATAGRAM)
            check_encoder(v->wire[v->hdr] == CAPSULE_CONTEXT_STAMPED ? enc_stamped : enc_datagram,
                          v);
        if (v->type == CAPSULE_CLOSE)
            check_encoder(enc_close, v);
    }
    uint8_t wire[4 + BIG_PAYLOAD];
    struct cvec big = {"big", CAPSULE_DATAGRAM, wire, build_big(wire), 3, 1};
    check_encoder(enc_generic, &big);
    check_encoder(enc_datagram, &big);
}

Test(capsule, encode_header)
{
    uint8_t buf[CAPSULE_MAX_HEADER + 1];
    for (size_t i = 0; i < NELEM(VECTORS); i++) {
        const struct cvec *v = &VECTORS[i];
        if (!v->minimal)
            continue;
        for (size_t cap = 0; cap <= v->hdr; cap++) {
            memset(buf, 0xaa, sizeof(buf));
            ssize_t n = capsule_encode_header(buf, cap, v->type, v->wlen - v->hdr);
            if (cap < v->hdr) {
                cr_assert_eq(n, PROTO_ERR_SPACE);
                for (size_t k = 0; k < sizeof(buf); k++)
                    cr_assert_eq(buf[k], 0xaa);
            } else {
                cr_assert_eq(n, (ssize_t)v->hdr);
                cr_assert_arr_eq(buf, v->wire, v->hdr, "%s", v->name);
            }
        }
    }

    /* Largest header: 16 bytes, both varints at VARINT_MAX. */
    cr_assert_eq(capsule_header_size(VARINT_MAX, VARINT_MAX), CAPSULE_MAX_HEADER);
    cr_assert_eq(capsule_encode_header(buf, sizeof(buf), VARINT_MAX, VARINT_MAX),
                 (ssize_t)CAPSULE_MAX_HEADER);
    for (size_t k = 0; k < CAPSULE_MAX_HEADER; k++)
        cr_assert_eq(buf[k], 0xff);

    /* Out of range: 0 / RANGE, nothing written. */
    cr_assert_eq(capsule_header_size(VARINT_MAX + 1, 0), 0);
    cr_assert_eq(capsule_header_size(0, VARINT_MAX + 1), 0);
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(capsule_encode_header(buf, sizeof(buf), VARINT_MAX + 1, 0), PROTO_ERR_RANGE);
    cr_assert_eq(capsule_encode_header(buf, sizeof(buf), 0, VARINT_MAX + 1), PROTO_ERR_RANGE);
    cr_assert_eq(capsule_encode(buf, sizeof(buf), UINT64_MAX, NULL, 0), PROTO_ERR_RANGE);
    for (size_t k = 0; k < sizeof(buf); k++)
        cr_assert_eq(buf[k], 0xaa);

    /* Header sizes at the varint boundaries of the length. */
    cr_assert_eq(capsule_header_size(CAPSULE_DATAGRAM, 63), 2);
    cr_assert_eq(capsule_header_size(CAPSULE_DATAGRAM, 64), 3);
    cr_assert_eq(capsule_header_size(CAPSULE_SIGNAL, 16383), 4);
    cr_assert_eq(capsule_header_size(CAPSULE_SIGNAL, 16384), 6);
    cr_assert_eq(capsule_header_size(CAPSULE_SIGNAL, CAPSULE_DEFAULT_MAX_VALUE), 6);
    /* The documented worst case for a DATAGRAM, stamped, fits CAPSULE_MAX_OVERHEAD. */
    cr_assert_leq(capsule_header_size(CAPSULE_DATAGRAM, VARINT_MAX) + 1 + CAPSULE_STAMP_LEN,
                  CAPSULE_MAX_OVERHEAD);
}

Test(capsule, encode_empty_values)
{
    uint8_t buf[8];
    cr_assert_eq(capsule_encode(buf, sizeof(buf), 0x17, NULL, 0), 2);
    cr_assert_arr_eq(buf, W_GREASE_EMPTY, 2);
    /* DATAGRAM with an empty payload still carries its context id. */
    const uint8_t empty_dgram[] = {0x00, 0x01, 0x00};
    cr_assert_eq(capsule_encode_datagram(buf, sizeof(buf), NULL, 0), 3);
    cr_assert_arr_eq(buf, empty_dgram, 3);
    cr_assert_eq(capsule_encode_datagram(buf, 2, NULL, 0), PROTO_ERR_SPACE);
}

Test(capsule, encode_close_checks)
{
    uint8_t buf[64];
    /* Two-byte code: round trips through parse. */
    ssize_t n = capsule_encode_close(buf, sizeof(buf), 0x1234, "x", 1);
    const uint8_t want[] = {0x75, 0x13, 0x03, 0x52, 0x34, 0x78};
    cr_assert_eq(n, (ssize_t)sizeof(want));
    cr_assert_arr_eq(buf, want, sizeof(want));

    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(capsule_encode_close(buf, sizeof(buf), VARINT_MAX + 1, NULL, 0), PROTO_ERR_RANGE);
    /* A reason the peer would reject is refused here. */
    cr_assert_eq(capsule_encode_close(buf, sizeof(buf), CLOSE_NORMAL, "\xc0\xaf", 2),
                 PROTO_ERR_MALFORMED);
    cr_assert_eq(capsule_encode_close(buf, sizeof(buf), CLOSE_NORMAL, "ok\xed\xa0\x80", 5),
                 PROTO_ERR_MALFORMED);
    for (size_t k = 0; k < sizeof(buf); k++)
        cr_assert_eq(buf[k], 0xaa);

    const char *utf8 = "d\xc3\xa9j\xc3\xa0 vu \xe2\x82\xac \xf0\x9f\x98\x80";
    n = capsule_encode_close(buf, sizeof(buf), CLOSE_OVERLOAD, utf8, strlen(utf8));
    cr_assert_gt(n, 0);
    capsule_t c;
    cr_assert_eq(capsule_decode(buf, (size_t)n, CAPSULE_DEFAULT_MAX_VALUE, &c, NULL), n);
    uint64_t code;
    const char *reason;
    size_t rlen;
    cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
    cr_assert_eq(code, CLOSE_OVERLOAD);
    cr_assert_eq(rlen, strlen(utf8));
    cr_assert_arr_eq(reason, utf8, rlen);
}

/* ---- value parsers ------------------------------------------------------ */

static capsule_t cap_of(uint64_t type, const uint8_t *value, size_t len)
{
    capsule_t c = {.type = type, .value = value, .len = len};
    return c;
}

Test(capsule, parse_datagram_good)
{
    capsule_t c = cap_of(CAPSULE_DATAGRAM, W_DATAGRAM_RTP + 2, sizeof(W_DATAGRAM_RTP) - 2);
    uint64_t id = 99;
    const uint8_t *p = NULL;
    size_t n = 0;
    cr_assert_eq(capsule_parse_datagram(&c, &id, &p, &n), PROTO_OK);
    cr_assert_eq(id, 0);
    cr_assert_eq(p, W_DATAGRAM_RTP + 3);
    cr_assert_eq(n, 12);

    /* Context id only: an empty payload. */
    const uint8_t only_id[] = {0x00};
    c = cap_of(CAPSULE_DATAGRAM, only_id, 1);
    cr_assert_eq(capsule_parse_datagram(&c, &id, &p, &n), PROTO_OK);
    cr_assert_eq(id, 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(p, only_id + 1);

    /* Non-zero ids are reported, not judged (the caller drops them). */
    const uint8_t id2[] = {0x52, 0x34, 0xaa, 0xbb};
    c = cap_of(CAPSULE_DATAGRAM, id2, sizeof(id2));
    cr_assert_eq(capsule_parse_datagram(&c, &id, &p, &n), PROTO_OK);
    cr_assert_eq(id, 0x1234);
    cr_assert_eq(p, id2 + 2);
    cr_assert_eq(n, 2);

    /* Non-minimal zero is still zero. */
    const uint8_t nonmin[] = {0x40, 0x00, 0x80};
    c = cap_of(CAPSULE_DATAGRAM, nonmin, sizeof(nonmin));
    cr_assert_eq(capsule_parse_datagram(&c, &id, &p, &n), PROTO_OK);
    cr_assert_eq(id, 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(p[0], 0x80);
}

Test(capsule, parse_datagram_bad)
{
    const uint8_t trunc2[] = {0x40};
    const uint8_t trunc8[] = {0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    const struct {
        const uint8_t *v;
        size_t len;
    } bad[] = {{NULL, 0}, {trunc2, 0}, {trunc2, 1}, {trunc8, sizeof(trunc8)}};
    for (size_t i = 0; i < NELEM(bad); i++) {
        capsule_t c = cap_of(CAPSULE_DATAGRAM, bad[i].v, bad[i].len);
        uint64_t id = 99;
        const uint8_t *p = (const uint8_t *)"x";
        size_t n = 99;
        cr_assert_eq(capsule_parse_datagram(&c, &id, &p, &n), PROTO_ERR_MALFORMED, "case %zu", i);
        cr_assert_eq(id, 99);
        cr_assert_eq(n, 99);
    }
}

Test(capsule, parse_close_good)
{
    capsule_t c = cap_of(CAPSULE_CLOSE, W_CLOSE_BYE + 3, 4);
    uint64_t code = 99;
    const char *reason = NULL;
    size_t rlen = 99;
    cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
    cr_assert_eq(code, CLOSE_NORMAL);
    cr_assert_eq(rlen, 3);
    cr_assert_arr_eq(reason, "bye", 3);
    cr_assert_eq((const uint8_t *)reason, W_CLOSE_BYE + 4);

    c = cap_of(CAPSULE_CLOSE, W_CLOSE_SHUTDOWN + 3, 1);
    cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
    cr_assert_eq(code, CLOSE_SHUTTING_DOWN);
    cr_assert_eq(rlen, 0);

    /* Unknown codes are fine on the wire (capsule_close_name says "unknown"). */
    const uint8_t big_code[] = {0xbf, 0xff, 0xff, 0xff, 'o', 'k'};
    c = cap_of(CAPSULE_CLOSE, big_code, sizeof(big_code));
    cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
    cr_assert_eq(code, 0x3fffffff);
    cr_assert_eq(rlen, 2);

    /* Valid UTF-8 at the edges of each range, and a NUL (it is UTF-8). */
    static const char *const good[] = {
        "\x00",             "\x7f",          "\xc2\x80",         "\xdf\xbf",
        "\xe0\xa0\x80",     "\xed\x9f\xbf",  "\xee\x80\x80",     "\xef\xbf\xbf",
        "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "caf\xc3\xa9 \xe2\x82\xac",
    };
    for (size_t i = 0; i < NELEM(good); i++) {
        uint8_t v[16] = {0x01};
        size_t len = i == 0 ? 1 : strlen(good[i]);
        memcpy(v + 1, good[i], len);
        c = cap_of(CAPSULE_CLOSE, v, 1 + len);
        cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK, "good %zu", i);
        cr_assert_eq(code, CLOSE_IDLE_TIMEOUT);
        cr_assert_eq(rlen, len);
    }
}

Test(capsule, parse_close_bad)
{
    static const char *const bad[] = {
        "\x80",             /* lone continuation */
        "\xbf",             /* lone continuation */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xe0\x9f\xbf",     /* overlong U+07FF */
        "\xf0\x80\x80\xaf", /* overlong '/' */
        "\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
        "\xed\xa0\x80",     /* U+D800 surrogate */
        "\xed\xbf\xbf",     /* U+DFFF surrogate */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* lead above F4 */
        "\xfe",             "\xff",
        "\xc3",             /* truncated 2-byte */
        "\xe2\x82",         /* truncated 3-byte */
        "\xf0\x9f\x98",     /* truncated 4-byte */
        "\xc3\x28",         /* bad continuation */
        "\xe2\x28\xac",     /* bad 2nd byte */
        "\xe2\x82\x28",     /* bad 3rd byte */
        "\xf0\x9f\x98\x28", /* bad 4th byte */
        "ok\xc3",           /* good, then truncated */
    };
    for (size_t i = 0; i < NELEM(bad); i++) {
        uint8_t v[16] = {0x00};
        size_t len = strlen(bad[i]);
        memcpy(v + 1, bad[i], len);
        capsule_t c = cap_of(CAPSULE_CLOSE, v, 1 + len);
        uint64_t code = 99;
        const char *reason = NULL;
        size_t rlen = 99;
        cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_ERR_MALFORMED,
                     "bad %zu", i);
        cr_assert_eq(code, 99);
        cr_assert_null(reason);
        cr_assert_eq(rlen, 99);
    }

    /* The code is required. */
    const uint8_t trunc[] = {0x40};
    const struct {
        const uint8_t *v;
        size_t len;
    } nocode[] = {{NULL, 0}, {trunc, 1}};
    for (size_t i = 0; i < NELEM(nocode); i++) {
        capsule_t c = cap_of(CAPSULE_CLOSE, nocode[i].v, nocode[i].len);
        uint64_t code;
        const char *reason;
        size_t rlen;
        cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_ERR_MALFORMED);
    }
}

/* An independent statement of RFC 3629 §3-4: decode the code point, then
 * require 10xxxxxx continuations, the shortest form, no surrogate, and
 * nothing above U+10FFFF. Returns the sequence length or 0. */
static size_t ref_utf8_char(const uint8_t *s, size_t len)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n = 0;
    while (n < 8 && (s[0] & (0x80 >> n)))
        n++;
    if (n == 0)
        return 1;
    if (n == 1 || n > 4 || len < n)
        return 0;
    uint32_t cp = s[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] >> 6) != 2)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int ref_utf8(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = ref_utf8_char(s + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

static void utf8_agrees(const uint8_t *s, size_t len)
{
    uint8_t v[8] = {0x00};
    memcpy(v + 1, s, len);
    capsule_t c = cap_of(CAPSULE_CLOSE, v, 1 + len);
    uint64_t code;
    const char *reason;
    size_t rlen;
    int want = ref_utf8(s, len) ? PROTO_OK : PROTO_ERR_MALFORMED;
    int got = capsule_parse_close(&c, &code, &reason, &rlen);
    if (got != want)
        cr_assert_eq(got, want, "%02x %02x %02x %02x (len %zu)", s[0], len > 1 ? s[1] : 0,
                     len > 2 ? s[2] : 0, len > 3 ? s[3] : 0, len);
}

/* Every 1-, 2- and 3-byte sequence, and 4-byte sequences over every lead byte
 * with edge values for the continuation bytes. */
Test(capsule, utf8_exhaustive)
{
    uint8_t s[4];
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        utf8_agrees(s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            utf8_agrees(s, 2);
            if (a < 0xe0 || a > 0xef)
                continue;
            for (unsigned d = 0; d < 256; d++) {
                s[2] = (uint8_t)d;
                utf8_agrees(s, 3);
            }
        }
    }
    static const uint8_t edge[] = {0x00, 0x7f, 0x80, 0x81, 0x8f, 0x90,
                                   0x9f, 0xa0, 0xbe, 0xbf, 0xc0, 0xff};
    for (unsigned a = 0xc0; a < 256; a++)
        for (size_t i = 0; i < sizeof(edge); i++)
            for (size_t j = 0; j < sizeof(edge); j++)
                for (size_t k = 0; k < sizeof(edge); k++) {
                    s[0] = (uint8_t)a;
                    s[1] = edge[i];
                    s[2] = edge[j];
                    s[3] = edge[k];
                    utf8_agrees(s, 4);
                    utf8_agrees(s, 3);
                }
}

Test(capsule, close_names)
{
    cr_assert_str_eq(capsule_close_name(CLOSE_NORMAL), "normal");
    cr_assert_str_eq(capsule_close_name(CLOSE_IDLE_TIMEOUT), "idle timeout");
    cr_assert_str_eq(capsule_close_name(CLOSE_PROTOCOL_ERROR), "protocol error");
    cr_assert_str_eq(capsule_close_name(CLOSE_CREDENTIAL_EXPIRED), "credential expired");
    cr_assert_str_eq(capsule_close_name(CLOSE_TENANT_DISABLED), "tenant disabled");
    cr_assert_str_eq(capsule_close_name(CLOSE_BACKEND_UNREACHABLE), "backend unreachable");
    cr_assert_str_eq(capsule_close_name(CLOSE_OVERLOAD), "overload");
    cr_assert_str_eq(capsule_close_name(CLOSE_SHUTTING_DOWN), "shutting down");
    cr_assert_str_eq(capsule_close_name(CLOSE_RATE_LIMITED), "rate limited");
    cr_assert_str_eq(capsule_close_name(CLOSE_INTERNAL_ERROR), "internal error");
    cr_assert_str_eq(capsule_close_name(CLOSE_TAKEN_OVER), "taken over");
    cr_assert_str_eq(capsule_close_name(0x0b), "unknown");
    cr_assert_str_eq(capsule_close_name(0x100), "unknown");
    cr_assert_str_eq(capsule_close_name(VARINT_MAX), "unknown");
    cr_assert_str_eq(capsule_close_name(UINT64_MAX), "unknown");
}

/* ---- reader ------------------------------------------------------------- */

/* The test stream: every vector, then the big DATAGRAM, then every vector
 * again so that the big one sits in the middle. */
struct stream {
    uint8_t bytes[2048];
    size_t len;
    struct cvec caps[2 * NELEM(VECTORS) + 1];
    size_t start[2 * NELEM(VECTORS) + 1];
    size_t n;
    uint8_t big[4 + BIG_PAYLOAD];
};

static void stream_add(struct stream *s, const struct cvec *v)
{
    cr_assert_leq(s->len + v->wlen, sizeof(s->bytes));
    memcpy(s->bytes + s->len, v->wire, v->wlen);
    s->start[s->n] = s->len;
    s->caps[s->n++] = *v;
    s->len += v->wlen;
}

static void stream_build(struct stream *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < NELEM(VECTORS); i++)
        stream_add(s, &VECTORS[i]);
    struct cvec big = {"big", CAPSULE_DATAGRAM, s->big, build_big(s->big), 3, 1};
    stream_add(s, &big);
    for (size_t i = 0; i < NELEM(VECTORS); i++)
        stream_add(s, &VECTORS[i]);
}

/* Feeds s to a fresh reader in chunks ending at cuts[0..ncuts) (ascending,
 * may repeat: an empty chunk). Each chunk lives in its own exact-size heap
 * block that is poisoned and freed after its call, so pending data that still
 * pointed at it would be caught (by the comparison, and by ASan). Checks the
 * capsules, in order, and where their values point. */
static void run_stream(const struct stream *s, const size_t *cuts, size_t ncuts)
{
    const size_t cap = CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER;
    uint8_t *buf = malloc(cap);
    cr_assert_not_null(buf);
    capsule_reader_t r;
    capsule_reader_init(&r, buf, cap, CAPSULE_DEFAULT_MAX_VALUE);

    size_t got = 0, pos = 0;
    for (size_t ci = 0; ci <= ncuts; ci++) {
        size_t end = ci < ncuts ? cuts[ci] : s->len;
        size_t clen = end - pos;
        uint8_t *chunk = malloc(clen ? clen : 1);
        cr_assert_not_null(chunk);
        memcpy(chunk, s->bytes + pos, clen);

        const uint8_t *p = chunk;
        size_t left = clen;
        capsule_t c;
        const char *desc = NULL;
        int rc;
        while ((rc = capsule_reader_next(&r, &p, &left, &c, &desc)) == 1) {
            cr_assert_lt(got, s->n, "more capsules than sent");
            const struct cvec *v = &s->caps[got];
            cr_assert_eq(c.type, v->type, "capsule %zu (%s)", got, v->name);
            cr_assert_eq(c.len, v->wlen - v->hdr, "capsule %zu (%s)", got, v->name);
            cr_assert_arr_eq(c.value, v->wire + v->hdr, c.len, "capsule %zu (%s)", got, v->name);

            /* Zero copy exactly when the capsule is inside this chunk. */
            size_t cs = s->start[got], ce = cs + v->wlen;
            if (cs >= pos && ce <= end)
                cr_assert_eq(c.value, chunk + (cs - pos) + v->hdr, "capsule %zu zero copy",
                             got);
            else
                cr_assert(c.value >= buf && c.value + c.len <= buf + cap,
                          "capsule %zu should be in the reader buffer", got);
            cr_assert_leq(left, clen);
            cr_assert_eq(p, chunk + (clen - left));
            got++;
        }
        cr_assert_eq(rc, 0, "reader error %d (%s)", rc, desc ? desc : "");
        cr_assert_eq(left, 0, "0 with input left");
        cr_assert_eq(p, chunk + clen);

        /* Bytes held = stream position minus the start of the next capsule. */
        size_t next = got < s->n ? s->start[got] : s->len;
        cr_assert_eq(capsule_reader_pending(&r), end - next);

        memset(chunk, 0xee, clen);
        free(chunk);
        pos = end;
    }
    cr_assert_eq(got, s->n, "got %zu capsules of %zu", got, s->n);
    cr_assert_eq(capsule_reader_pending(&r), 0);
    free(buf);
}

Test(capsule, reader_one_chunk)
{
    struct stream s;
    stream_build(&s);
    run_stream(&s, NULL, 0);
}

Test(capsule, reader_every_split_point)
{
    struct stream s;
    stream_build(&s);
    for (size_t a = 0; a <= s.len; a++)
        run_stream(&s, &a, 1);
}

/* Every pair of split points over the first part of the stream (up to and into
 * the big capsule): every capsule and header split in three. */
Test(capsule, reader_every_split_pair)
{
    struct stream s;
    stream_build(&s);
    size_t limit = s.start[NELEM(VECTORS)] + 8;
    for (size_t a = 0; a <= limit; a++)
        for (size_t b = a; b <= limit; b++) {
            size_t cuts[2] = {a, b};
            run_stream(&s, cuts, 2);
        }
}

Test(capsule, reader_byte_by_byte)
{
    struct stream s;
    stream_build(&s);
    size_t *cuts = malloc(s.len * sizeof(*cuts));
    cr_assert_not_null(cuts);
    for (size_t i = 0; i < s.len; i++)
        cuts[i] = i + 1;
    run_stream(&s, cuts, s.len - 1);
    /* And with an empty chunk between every byte. */
    size_t *cuts2 = malloc(2 * s.len * sizeof(*cuts2));
    cr_assert_not_null(cuts2);
    for (size_t i = 0; i < s.len; i++)
        cuts2[2 * i] = cuts2[2 * i + 1] = i + 1;
    run_stream(&s, cuts2, 2 * s.len - 1);
    free(cuts);
    free(cuts2);
}

/* xorshift64: deterministic on every libc. */
static uint64_t rng_next(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *st = x;
}

Test(capsule, reader_random_chunks)
{
    struct stream s;
    stream_build(&s);
    uint64_t seed = 0x5eed5eed12345678ULL;
    size_t cuts[2048];
    for (int iter = 0; iter < 2000; iter++) {
        size_t maxchunk = 1 + (size_t)(rng_next(&seed) % 64);
        size_t n = 0, at = 0;
        while (at < s.len) {
            at += (size_t)(rng_next(&seed) % (maxchunk + 1)); /* 0: an empty chunk */
            if (at > s.len)
                at = s.len;
            cuts[n++] = at;
        }
        run_stream(&s, cuts, n);
    }
}

/* The largest header with a value of exactly max_value, reassembled in a
 * buffer of exactly max_value + CAPSULE_MAX_HEADER bytes (ASan sees any
 * overrun), split at every point. */
Test(capsule, reader_exact_buffer)
{
    enum { MAXV = 255 };
    uint8_t wire[CAPSULE_MAX_HEADER + MAXV];
    const uint8_t hdr[] = {0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x35, 0x10,
                           0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, MAXV};
    memcpy(wire, hdr, sizeof(hdr));
    for (size_t i = 0; i < MAXV; i++)
        wire[sizeof(hdr) + i] = (uint8_t)(i ^ 0x5a);

    for (size_t cut = 0; cut <= sizeof(wire); cut++) {
        uint8_t *buf = malloc(CAPSULE_MAX_HEADER + MAXV);
        cr_assert_not_null(buf);
        capsule_reader_t r;
        capsule_reader_init(&r, buf, CAPSULE_MAX_HEADER + MAXV, MAXV);
        const uint8_t *p = wire;
        size_t left = cut;
        capsule_t c;
        int rc = capsule_reader_next(&r, &p, &left, &c, NULL);
        if (cut < sizeof(wire)) {
            cr_assert_eq(rc, 0);
            cr_assert_eq(capsule_reader_pending(&r), cut);
            left = sizeof(wire) - cut;
            rc = capsule_reader_next(&r, &p, &left, &c, NULL);
        }
        cr_assert_eq(rc, 1, "cut %zu", cut);
        cr_assert_eq(left, 0);
        cr_assert_eq(c.type, CAPSULE_SIGNAL);
        cr_assert_eq(c.len, MAXV);
        cr_assert_arr_eq(c.value, wire + sizeof(hdr), MAXV);
        free(buf);
    }
}

/* A capsule one byte over the maximum is rejected as soon as its length varint
 * is complete, whatever the chunking, and the error sticks. */
Test(capsule, reader_oversize_sticky)
{
    enum { MAXV = 255 };
    uint8_t wire[sizeof(W_PING) + 4 + MAXV + 1];
    memcpy(wire, W_PING, sizeof(W_PING));
    const uint8_t hdr[] = {0x75, 0x10, 0x41, 0x00}; /* SIGNAL, 256 bytes */
    memcpy(wire + sizeof(W_PING), hdr, sizeof(hdr));
    memset(wire + sizeof(W_PING) + sizeof(hdr), 0x42, MAXV + 1);
    const size_t known_at = sizeof(W_PING) + sizeof(hdr); /* bytes needed to know */

    uint8_t buf[CAPSULE_MAX_HEADER + MAXV];
    for (size_t chunk = 1; chunk <= sizeof(wire); chunk++) {
        capsule_reader_t r;
        capsule_reader_init(&r, buf, sizeof(buf), MAXV);
        size_t fed = 0;
        int saw_ping = 0, err = 0;
        while (fed < sizeof(wire) && !err) {
            size_t n = chunk < sizeof(wire) - fed ? chunk : sizeof(wire) - fed;
            const uint8_t *p = wire + fed;
            size_t left = n;
            fed += n;
            capsule_t c;
            const char *desc = NULL;
            int rc;
            while ((rc = capsule_reader_next(&r, &p, &left, &c, &desc)) == 1) {
                cr_assert_eq(c.type, CAPSULE_PING);
                cr_assert_eq(saw_ping, 0, "chunk %zu: PING returned twice", chunk);
                saw_ping++;
            }
            if (rc < 0) {
                cr_assert_eq(rc, PROTO_ERR_TOO_LARGE, "chunk %zu", chunk);
                cr_assert_not_null(desc);
                err = 1;
            }
        }
        cr_assert_eq(saw_ping, 1, "chunk %zu", chunk);
        cr_assert(err, "chunk %zu: no error", chunk);
        /* Reported in the first call that had the whole length field. */
        size_t first_full = (known_at + chunk - 1) / chunk * chunk;
        cr_assert_eq(fed, first_full < sizeof(wire) ? first_full : sizeof(wire),
                     "chunk %zu: error late", chunk);

        /* Sticky: more data, no data, a valid capsule — all the same error. */
        for (int k = 0; k < 3; k++) {
            const uint8_t *p = k == 2 ? W_PING : wire;
            size_t left = k == 1 ? 0 : (k == 2 ? sizeof(W_PING) : 10);
            capsule_t c;
            const char *desc = NULL;
            cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, &desc), PROTO_ERR_TOO_LARGE);
            cr_assert_not_null(desc);
            cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), PROTO_ERR_TOO_LARGE);
        }
        cr_assert_eq(capsule_reader_pending(&r), 0);
    }
}

Test(capsule, reader_oversize_zero_copy_path)
{
    uint8_t buf[CAPSULE_MAX_HEADER + 3];
    capsule_reader_t r;
    capsule_reader_init(&r, buf, sizeof(buf), 3);
    const uint8_t *p = W_PING;
    size_t left = sizeof(W_PING);
    capsule_t c;
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), PROTO_ERR_TOO_LARGE);
    p = W_GREASE_EMPTY;
    left = sizeof(W_GREASE_EMPTY);
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), PROTO_ERR_TOO_LARGE);
}

Test(capsule, reader_buffer_too_small)
{
    uint8_t buf[CAPSULE_MAX_HEADER + 10];
    capsule_reader_t r;
    const char *desc = NULL;
    const uint8_t *p = W_PING;
    size_t left = sizeof(W_PING);
    capsule_t c;

    /* One byte short of max_value + CAPSULE_MAX_HEADER: refused, sticky. */
    capsule_reader_init(&r, buf, sizeof(buf), 11);
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, &desc), PROTO_ERR_SPACE);
    cr_assert_not_null(desc);
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), PROTO_ERR_SPACE);
    cr_assert_eq(left, sizeof(W_PING));

    /* No buffer at all. */
    capsule_reader_init(&r, NULL, 0, 0);
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), PROTO_ERR_SPACE);
    capsule_reader_init(&r, NULL, 100, 0);
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), PROTO_ERR_SPACE);

    /* max_value raised past the buffer after init. */
    capsule_reader_init(&r, buf, sizeof(buf), 10);
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), 1);
    r.max_value = SIZE_MAX;
    p = W_PING;
    left = sizeof(W_PING);
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), PROTO_ERR_SPACE);
}

Test(capsule, reader_truncated_stream)
{
    uint8_t buf[CAPSULE_MAX_HEADER + 64];
    for (size_t cut = 0; cut < sizeof(W_SIGNAL_STUN); cut++) {
        capsule_reader_t r;
        capsule_reader_init(&r, buf, sizeof(buf), 64);
        const uint8_t *p = W_SIGNAL_STUN;
        size_t left = cut;
        capsule_t c;
        cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), 0);
        cr_assert_eq(capsule_reader_pending(&r), cut);
        /* Nothing more arrives: still pending, nothing returned. */
        left = 0;
        cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), 0);
        cr_assert_eq(capsule_reader_pending(&r), cut);
    }
}

Test(capsule, reader_empty_input)
{
    uint8_t buf[CAPSULE_MAX_HEADER];
    capsule_reader_t r;
    capsule_reader_init(&r, buf, sizeof(buf), 0);
    const uint8_t *p = NULL;
    size_t left = 0;
    capsule_t c;
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), 0);
    cr_assert_eq(capsule_reader_pending(&r), 0);
    /* max_value 0 with a minimal buffer still reads empty capsules. */
    p = W_GREASE1_EMPTY;
    left = 1;
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), 0);
    left = 2;
    cr_assert_eq(capsule_reader_next(&r, &p, &left, &c, NULL), 1);
    cr_assert_eq(c.type, 0x40);
    cr_assert_eq(c.len, 0);
    cr_assert_eq(left, 0);
}
