/*
 * proxyproto.h — the PROXY protocol header a TCP load balancer (HAProxy's
 * send-proxy / send-proxy-v2) writes before the client's first byte, so that
 * the gateway learns the client's real address (haproxy doc/proxy-protocol.txt,
 * "The PROXY protocol", versions 1 and 2; docs/configuration.md, $.listen).
 *
 * Pure: proxyproto_decode reads a header from a buffer and never touches a
 * socket. A header is at most PROXYPROTO_MAX bytes here (v1's own limit is
 * 107; v2's TLVs are skipped, and a v2 header longer than PROXYPROTO_MAX is
 * refused: we configure the balancer, which sends none or a few).
 */
#ifndef SLUICE_PROXYPROTO_H
#define SLUICE_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROXYPROTO_V1_MAX 107u /* "PROXY " ... CRLF, §2.1 */
#define PROXYPROTO_MAX 536u    /* 16 + 520: IPv6 addresses and some TLVs */

enum proxyproto_family {
    PROXYPROTO_UNSPEC = 0, /* v2 LOCAL, v1 UNKNOWN, or a family we do not use
                            * (AF_UNIX, UDP): keep the connection's own address */
    PROXYPROTO_INET,       /* TCP over IPv4: 4-byte addresses */
    PROXYPROTO_INET6,      /* TCP over IPv6: 16-byte addresses */
};

typedef struct proxyproto {
    uint8_t version;              /* 1 or 2 */
    enum proxyproto_family family;
    uint8_t src[16], dst[16];     /* network order; 4 or 16 bytes used */
    uint16_t src_port, dst_port;  /* host order */
} proxyproto_t;

/* Decodes the header at buf[0..len). Returns the header's length (> 0; the
 * connection's own bytes start after it), PROTO_INCOMPLETE when buf is a
 * proper prefix of a header that fits in PROXYPROTO_MAX, PROTO_ERR_TOO_LARGE
 * for a longer one, or PROTO_ERR_MALFORMED (anything else, including a
 * connection that does not start with a header); *why then names the fault
 * (a static string). out is written only on success. */
int proxyproto_decode(const uint8_t *buf, size_t len, proxyproto_t *out, const char **why);

#endif
