/*
 * test_varint.c — proto/varint.c: RFC 9000 §16 variable-length integers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/proto.h"
#include "../../proto/varint.h"

struct vector {
    uint8_t bytes[8];
    size_t len;
    uint64_t value;
    int minimal; /* the encoder produces exactly these bytes */
};

/* RFC 9000 Appendix A.1 sample encodings (proto/README.md §9.1). */
static const struct vector rfc_vectors[] = {
    {{0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c}, 8, 151288809941952652ULL, 1},
    {{0x9d, 0x7f, 0x3e, 0x7d}, 4, 494878333, 1},
    {{0x7b, 0xbd}, 2, 15293, 1},
    {{0x25}, 1, 37, 1},
    {{0x40, 0x25}, 2, 37, 0}, /* non-minimal: valid on decode */
};

/* Length boundaries of RFC 9000 §16 Table 4, plus non-minimal forms. */
static const struct vector boundary_vectors[] = {
    {{0x00}, 1, 0, 1},
    {{0x3f}, 1, 63, 1},
    {{0x40, 0x40}, 2, 64, 1},
    {{0x7f, 0xff}, 2, 16383, 1},
    {{0x80, 0x00, 0x40, 0x00}, 4, 16384, 1},
    {{0xbf, 0xff, 0xff, 0xff}, 4, 1073741823, 1},
    {{0xc0, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00}, 8, 1073741824, 1},
    {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8, VARINT_MAX, 1},
    {{0x40, 0x00}, 2, 0, 0},
    {{0x80, 0x00, 0x00, 0x00}, 4, 0, 0},
    {{0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01}, 8, 1, 0},
    {{0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0xff}, 8, 16383, 0},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void check_decode(const struct vector *v)
{
    uint64_t out = 0;
    ssize_t n = varint_decode(v->bytes, v->len, &out);
    cr_assert_eq(n, (ssize_t)v->len, "decode length of %llu", (unsigned long long)v->value);
    cr_assert_eq(out, v->value);

    /* Trailing bytes are not consumed. */
    uint8_t longer[16];
    memcpy(longer, v->bytes, v->len);
    memset(longer + v->len, 0xff, sizeof(longer) - v->len);
    out = 0;
    cr_assert_eq(varint_decode(longer, sizeof(longer), &out), (ssize_t)v->len);
    cr_assert_eq(out, v->value);

    /* Every truncation point is incomplete and leaves *out alone. */
    for (size_t k = 0; k < v->len; k++) {
        out = 0xdeadbeef;
        cr_assert_eq(varint_decode(v->bytes, k, &out), PROTO_INCOMPLETE, "len %zu of %zu", k,
                     v->len);
        cr_assert_eq(out, 0xdeadbeef);
    }
}

static void check_encode(const struct vector *v)
{
    if (!v->minimal)
        return;
    cr_assert_eq(varint_size(v->value), v->len);

    uint8_t buf[16];
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(varint_encode(buf, sizeof(buf), v->value), (ssize_t)v->len);
    cr_assert_arr_eq(buf, v->bytes, v->len);
    cr_assert_eq(buf[v->len], 0xaa, "wrote past the varint");

    /* Exact capacity works; every smaller one is SPACE and writes nothing. */
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(varint_encode(buf, v->len, v->value), (ssize_t)v->len);
    cr_assert_arr_eq(buf, v->bytes, v->len);
    for (size_t cap = 0; cap < v->len; cap++) {
        memset(buf, 0xaa, sizeof(buf));
        cr_assert_eq(varint_encode(buf, cap, v->value), PROTO_ERR_SPACE);
        for (size_t i = 0; i < sizeof(buf); i++)
            cr_assert_eq(buf[i], 0xaa, "SPACE wrote byte %zu (cap %zu)", i, cap);
    }
}

Test(varint, rfc9000_a1_decode)
{
    for (size_t i = 0; i < NELEM(rfc_vectors); i++)
        check_decode(&rfc_vectors[i]);
}

Test(varint, rfc9000_a1_encode)
{
    for (size_t i = 0; i < NELEM(rfc_vectors); i++)
        check_encode(&rfc_vectors[i]);
}

Test(varint, boundaries_decode)
{
    for (size_t i = 0; i < NELEM(boundary_vectors); i++)
        check_decode(&boundary_vectors[i]);
}

Test(varint, boundaries_encode)
{
    for (size_t i = 0; i < NELEM(boundary_vectors); i++)
        check_encode(&boundary_vectors[i]);
}

Test(varint, size)
{
    cr_assert_eq(varint_size(0), 1);
    cr_assert_eq(varint_size(63), 1);
    cr_assert_eq(varint_size(64), 2);
    cr_assert_eq(varint_size(16383), 2);
    cr_assert_eq(varint_size(16384), 4);
    cr_assert_eq(varint_size((1ULL << 30) - 1), 4);
    cr_assert_eq(varint_size(1ULL << 30), 8);
    cr_assert_eq(varint_size(VARINT_MAX), 8);
    cr_assert_eq(varint_size(VARINT_MAX + 1), 0);
    cr_assert_eq(varint_size(UINT64_MAX), 0);
}

Test(varint, range)
{
    uint8_t buf[16];
    const uint64_t bad[] = {VARINT_MAX + 1, 1ULL << 63, UINT64_MAX};
    for (size_t i = 0; i < NELEM(bad); i++) {
        memset(buf, 0xaa, sizeof(buf));
        cr_assert_eq(varint_encode(buf, sizeof(buf), bad[i]), PROTO_ERR_RANGE);
        /* RANGE wins over SPACE: the value is wrong whatever the buffer. */
        cr_assert_eq(varint_encode(buf, 0, bad[i]), PROTO_ERR_RANGE);
        for (size_t k = 0; k < sizeof(buf); k++)
            cr_assert_eq(buf[k], 0xaa);
    }
}

Test(varint, empty_input)
{
    uint64_t out = 7;
    cr_assert_eq(varint_decode(NULL, 0, &out), PROTO_INCOMPLETE);
    cr_assert_eq(out, 7);
}

/* Every first byte: the two high bits alone give the length. */
Test(varint, every_first_byte)
{
    uint8_t buf[8] = {0};
    for (unsigned b = 0; b < 256; b++) {
        buf[0] = (uint8_t)b;
        size_t want = (size_t)1 << (b >> 6);
        uint64_t out;
        cr_assert_eq(varint_decode(buf, sizeof(buf), &out), (ssize_t)want);
        cr_assert_eq(out, (uint64_t)(b & 0x3f) << (8 * (want - 1)));
        cr_assert_eq(varint_decode(buf, want - 1, &out), PROTO_INCOMPLETE);
    }
}

/* Round trip of every value up to 2^16 and of each power of two (and its
 * neighbours) up to VARINT_MAX. */
static void round_trip(uint64_t v)
{
    uint8_t buf[8];
    uint64_t out = ~v;
    ssize_t n = varint_encode(buf, sizeof(buf), v);
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, varint_size(v));
    cr_assert_eq(varint_decode(buf, (size_t)n, &out), n);
    cr_assert_eq(out, v, "round trip of %llu", (unsigned long long)v);
}

Test(varint, round_trip)
{
    for (uint64_t v = 0; v <= 65536; v++)
        round_trip(v);
    for (unsigned bit = 0; bit < 62; bit++) {
        uint64_t p = 1ULL << bit;
        round_trip(p - 1);
        round_trip(p);
        round_trip(p + 1);
    }
    round_trip(VARINT_MAX - 1);
    round_trip(VARINT_MAX);
}
