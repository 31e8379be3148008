/*
 * token.h — the text form of a session token (proto/README.md §8.1).
 *
 * A session token is TOKEN_BYTES random bytes written as TOKEN_TEXT_LEN
 * characters of base64url without padding (RFC 4648 §5): 16 bytes give 22
 * characters, the last of which carries 2 data bits and 4 zero bits. Only that
 * canonical form decodes, so every token has exactly one spelling and a
 * header value can be compared as bytes. Pure: the caller brings the random
 * bytes.
 */
#ifndef SLUICE_TOKEN_H
#define SLUICE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_BYTES 16u
#define TOKEN_TEXT_LEN 22u

/* Writes the TOKEN_TEXT_LEN characters of raw and a NUL into out
 * (TOKEN_TEXT_LEN + 1 bytes). */
void token_encode(const uint8_t raw[TOKEN_BYTES], char out[TOKEN_TEXT_LEN + 1]);

/* Decodes text[0..len) into raw. Returns 0, or PROTO_ERR_MALFORMED when it is
 * not exactly TOKEN_TEXT_LEN base64url characters in canonical form (the
 * last character's four low bits zero). */
int token_decode(const char *text, size_t len, uint8_t raw[TOKEN_BYTES]);

#endif
