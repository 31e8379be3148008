/* token.c — see token.h. */
#include "token.h"

#include "proto.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* RFC 4648 §5: the 6-bit value of a base64url character, or -1. */
static int sextet(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

void token_encode(const uint8_t raw[TOKEN_BYTES], char out[TOKEN_TEXT_LEN + 1])
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < TOKEN_BYTES; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = alphabet[(acc >> bits) & 63];
        }
    }
    if (bits) /* 128 = 21 * 6 + 2: two bits left, padded with zeros */
        out[n++] = alphabet[(acc << (6 - bits)) & 63];
    out[n] = '\0';
}

int token_decode(const char *text, size_t len, uint8_t raw[TOKEN_BYTES])
{
    if (len != TOKEN_TEXT_LEN)
        return PROTO_ERR_MALFORMED;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = sextet(text[i]);
        if (v < 0)
            return PROTO_ERR_MALFORMED;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[n++] = (uint8_t)(acc >> bits);
        }
    }
    /* The leftover bits of the last character must be zero (canonical). */
    if (acc & ((1u << bits) - 1))
        return PROTO_ERR_MALFORMED;
    return 0;
}

uint32_t token_node_tag(const char *id, size_t len)
{
    uint32_t h = 0x811c9dc5u; /* FNV-1a, 32 bits */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)id[i];
        h *= 0x01000193u;
    }
    return h;
}

uint32_t token_tag(const uint8_t raw[TOKEN_BYTES])
{
    return (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3];
}

void token_set_tag(uint8_t raw[TOKEN_BYTES], uint32_t tag)
{
    raw[0] = (uint8_t)(tag >> 24);
    raw[1] = (uint8_t)(tag >> 16);
    raw[2] = (uint8_t)(tag >> 8);
    raw[3] = (uint8_t)tag;
}
