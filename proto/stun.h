/*
 * stun.h — the STUN Binding transaction (RFC 8489), as much of it as a UDP
 * reachability check needs: the shim sends a Binding request to the
 * backend's public address and takes any valid success response as proof
 * that plain UDP gets through (docs/shim.md, "Fallback ladder").
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |0 0|     STUN Message Type     |         Message Length        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                         Magic Cookie                          |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                     Transaction ID (96 bits)                  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *                          (RFC 8489 §5)
 *
 * Pure codec on the proto.h contract: decoders return the bytes the message
 * takes (20 + Message Length), PROTO_INCOMPLETE when the input ends before
 * it does, or PROTO_ERR_MALFORMED with a static description in *why (may be
 * NULL). They never allocate; nothing points into the input after they
 * return except what the output struct says. A datagram carries exactly one
 * message, so a caller given a datagram checks that the return value equals
 * its length (anything else: not a STUN message for us).
 *
 * Not implemented: authentication (MESSAGE-INTEGRITY is skipped, never
 * checked: the check uses no credential, RFC 8489 §9 leaves Binding
 * unauthenticated for this use), and every method other than Binding.
 */
#ifndef SLUICE_STUN_H
#define SLUICE_STUN_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define STUN_HEADER_LEN 20u
#define STUN_MAGIC_COOKIE 0x2112A442u
#define STUN_TXID_LEN 12u
/* A Binding request as stun_binding_request_encode makes it: the header and
 * a FINGERPRINT (RFC 8489 §14.7). */
#define STUN_BINDING_REQUEST_LEN 28u
/* Largest response stun_binding_response_encode makes (IPv6 mapped address
 * and a FINGERPRINT). */
#define STUN_BINDING_RESPONSE_MAX 52u

enum stun_type {
    STUN_BINDING_REQUEST = 0x0001,
    STUN_BINDING_SUCCESS = 0x0101,
    STUN_BINDING_ERROR = 0x0111,
};

enum stun_attr {
    STUN_ATTR_MAPPED_ADDRESS = 0x0001,
    STUN_ATTR_USERNAME = 0x0006,
    STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    STUN_ATTR_ERROR_CODE = 0x0009,
    STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
    STUN_ATTR_REALM = 0x0014,
    STUN_ATTR_NONCE = 0x0015,
    STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    STUN_ATTR_PASSWORD_ALGORITHM = 0x001D,
    STUN_ATTR_USERHASH = 0x001E,
    STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    STUN_ATTR_SOFTWARE = 0x8022,
    STUN_ATTR_FINGERPRINT = 0x8028,
};

/* A transport address as XOR-MAPPED-ADDRESS carries it, already un-XORed. */
typedef struct stun_addr {
    int family;        /* 4 or 6 */
    uint16_t port;     /* host order */
    uint8_t addr[16];  /* network order; 4 bytes used for IPv4 */
} stun_addr_t;

typedef struct stun_binding_response {
    int has_mapped;    /* an XOR-MAPPED-ADDRESS was present */
    stun_addr_t mapped;
    int has_fingerprint; /* a FINGERPRINT was present (and valid) */
} stun_binding_response_t;

/* Writes a Binding request with transaction id txid and a FINGERPRINT into
 * out. Returns STUN_BINDING_REQUEST_LEN, or PROTO_ERR_SPACE when cap is
 * smaller. The caller draws txid from a CSPRNG (RFC 8489 §6: uniformly and
 * randomly), which is what makes a spoofed answer unlikely. */
int stun_binding_request_encode(const uint8_t txid[STUN_TXID_LEN], uint8_t *out, size_t cap);

/* Validates a Binding success response (RFC 8489 §6.3.3 and §6.3.4): the two
 * leading zero bits, type 0x0101, a Message Length that is a multiple of 4
 * and fits the input, the magic cookie, the transaction id (when txid is not
 * NULL), attributes that are well formed and fit, no unknown
 * comprehension-required attribute (0x0000-0x7FFF), and a FINGERPRINT, when
 * present, that is the last attribute and matches. Fills *out. */
int stun_binding_response_decode(const uint8_t *p, size_t len,
                                 const uint8_t txid[STUN_TXID_LEN],
                                 stun_binding_response_t *out, const char **why);

/* Validates a Binding request (the same checks, type 0x0001) and copies its
 * transaction id into txid_out. For test responders and tools. */
int stun_binding_request_decode(const uint8_t *p, size_t len, uint8_t txid_out[STUN_TXID_LEN],
                                const char **why);

/* Writes a Binding success response for txid carrying XOR-MAPPED-ADDRESS
 * mapped and a FINGERPRINT. Returns its length (40 for IPv4, 52 for IPv6),
 * PROTO_ERR_SPACE, or PROTO_ERR_RANGE for a family other than 4 or 6. */
int stun_binding_response_encode(const uint8_t txid[STUN_TXID_LEN], const stun_addr_t *mapped,
                                 uint8_t *out, size_t cap);

/* The FINGERPRINT value for the len bytes of message before it (RFC 8489
 * §14.7: CRC-32 of ISO/IEC 13239, XORed with 0x5354554e). */
uint32_t stun_fingerprint(const uint8_t *p, size_t len);

#endif
