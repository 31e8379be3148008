/*
 * token.h — the text form of a session token (proto/README.md §8.1).
 *
 * A session token is TOKEN_BYTES random bytes written as TOKEN_TEXT_LEN
 * characters of base64url without padding (RFC 4648 §5): 16 bytes give 22
 * characters, the last of which carries 2 data bits and 4 zero bits. Only that
 * canonical form decodes, so every token has exactly one spelling and a
 * header value can be compared as bytes. Pure: the caller brings the random
 * bytes.
 *
 * A token names its node (issue 8 §4): a gateway with a node id writes the
 * TOKEN_TAG_BYTES of token_node_tag(id) in front of TOKEN_BYTES -
 * TOKEN_TAG_BYTES (12) random bytes, so another gateway of the fleet can tell
 * whose session a resume asks for. 96 random bits stay unguessable; a
 * gateway without a node id uses 16 random bytes and its tokens name nobody.
 */
#ifndef SLUICE_TOKEN_H
#define SLUICE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_BYTES 16u
#define TOKEN_TEXT_LEN 22u
#define TOKEN_TAG_BYTES 4u /* raw[0..4): the node tag, big-endian */

/* Writes the TOKEN_TEXT_LEN characters of raw and a NUL into out
 * (TOKEN_TEXT_LEN + 1 bytes). */
void token_encode(const uint8_t raw[TOKEN_BYTES], char out[TOKEN_TEXT_LEN + 1]);

/* Decodes text[0..len) into raw. Returns 0, or PROTO_ERR_MALFORMED when it is
 * not exactly TOKEN_TEXT_LEN base64url characters in canonical form (the
 * last character's four low bits zero). */
int token_decode(const char *text, size_t len, uint8_t raw[TOKEN_BYTES]);

/* The node tag of node id id[0..len): 32-bit FNV-1a (offset basis
 * 0x811c9dc5, prime 0x01000193) of its bytes. Two ids of one fleet share a
 * tag with probability about n^2 / 2^33; the gateway then answers 410 as for
 * an unknown node (gateway/session.c). */
uint32_t token_node_tag(const char *id, size_t len);

/* The node tag a token carries (its first TOKEN_TAG_BYTES, big-endian). */
uint32_t token_tag(const uint8_t raw[TOKEN_BYTES]);

/* Writes tag into raw's first TOKEN_TAG_BYTES; the rest stays as it is. */
void token_set_tag(uint8_t raw[TOKEN_BYTES], uint32_t tag);

#endif
