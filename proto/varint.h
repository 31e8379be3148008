/*
 * varint.h — QUIC variable-length integers (RFC 9000 §16).
 *
 * The two high bits of the first byte give the length (1, 2, 4 or 8 bytes);
 * the remaining bits hold the value in network byte order. Non-minimal
 * encodings are valid on decode (RFC 9000 §16 does not forbid them);
 * the encoder always writes the shortest form.
 */
#ifndef SLUICE_VARINT_H
#define SLUICE_VARINT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VARINT_MAX ((uint64_t)0x3fffffffffffffffULL)
#define VARINT_MAX_LEN 8

/* Bytes needed to encode v (1, 2, 4 or 8), or 0 if v > VARINT_MAX. */
size_t varint_size(uint64_t v);

/* Decodes one varint from src[0..len). Returns bytes consumed (1..8) and sets
 * *out, or PROTO_INCOMPLETE if len is shorter than the encoding. */
ssize_t varint_decode(const uint8_t *src, size_t len, uint64_t *out);

/* Writes v into dst[0..cap). Returns bytes written, PROTO_ERR_RANGE if
 * v > VARINT_MAX, or PROTO_ERR_SPACE if cap is too small (nothing written). */
ssize_t varint_encode(uint8_t *dst, size_t cap, uint64_t v);

#endif
