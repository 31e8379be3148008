/*
 * varint.c — QUIC variable-length integers (RFC 9000 §16).
 *
 *   2MSB  length  usable bits  range
 *   00    1       6            0 - 63
 *   01    2       14           0 - 16383
 *   10    4       30           0 - 1073741823
 *   11    8       62           0 - 4611686018427387903
 */
#include "varint.h"

#include "proto.h"

size_t varint_size(uint64_t v)
{
    if (v <= 63)
        return 1;
    if (v <= 16383)
        return 2;
    if (v <= 1073741823)
        return 4;
    if (v <= VARINT_MAX)
        return 8;
    return 0;
}

ssize_t varint_decode(const uint8_t *src, size_t len, uint64_t *out)
{
    if (len == 0)
        return PROTO_INCOMPLETE;

    /* The two high bits are log2 of the length (RFC 9000 §16, Table 4). */
    size_t n = (size_t)1 << (src[0] >> 6);
    if (len < n)
        return PROTO_INCOMPLETE;

    uint64_t v = src[0] & 0x3f;
    for (size_t i = 1; i < n; i++)
        v = (v << 8) | src[i];
    *out = v;
    return (ssize_t)n;
}

ssize_t varint_encode(uint8_t *dst, size_t cap, uint64_t v)
{
    size_t n = varint_size(v);
    if (n == 0)
        return PROTO_ERR_RANGE;
    if (cap < n)
        return PROTO_ERR_SPACE;

    /* Big-endian value, then the length prefix in the top two bits:
     * n = 1, 2, 4, 8 -> 0b00, 0b01, 0b10, 0b11. */
    for (size_t i = n; i-- > 0; v >>= 8)
        dst[i] = (uint8_t)v;
    dst[0] |= (uint8_t)((n == 8 ? 3 : n / 2) << 6);
    return (ssize_t)n;
}
