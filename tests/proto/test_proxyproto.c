/*
 * test_proxyproto.c — proto/proxyproto.c: PROXY protocol v1 and v2 headers
 * (haproxy doc/proxy-protocol.txt), each decoded whole and at every
 * truncation point.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/proto.h"
#include "../../proto/proxyproto.h"

/* A v2 header as HAProxy writes it (send-proxy-v2): PROXY, TCP over IPv4,
 * 172.19.0.1:42578 -> 172.19.0.3:80, then the client's first bytes. */
static const uint8_t V2_INET[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
                                  0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 0xac, 0x13, 0x00, 0x01,
                                  0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50, 0x16, 0x03};
#define V2_INET_LEN 28

/* Every proper prefix is incomplete; the whole decodes to want. */
static void check_truncations(const uint8_t *h, size_t hlen)
{
    for (size_t i = 0; i < hlen; i++) {
        proxyproto_t p;
        const char *why;
        cr_assert_eq(proxyproto_decode(h, i, &p, &why), PROTO_INCOMPLETE, "prefix %zu of %zu",
                     i, hlen);
    }
}

Test(proxyproto, v2_inet)
{
    proxyproto_t p;
    const char *why;
    cr_assert_eq(proxyproto_decode(V2_INET, sizeof V2_INET, &p, &why), V2_INET_LEN);
    cr_assert_eq(p.version, 2);
    cr_assert_eq(p.family, PROXYPROTO_INET);
    cr_assert_arr_eq(p.src, ((uint8_t[]){172, 19, 0, 1}), 4);
    cr_assert_arr_eq(p.dst, ((uint8_t[]){172, 19, 0, 3}), 4);
    cr_assert_eq(p.src_port, 42578);
    cr_assert_eq(p.dst_port, 80);
    check_truncations(V2_INET, V2_INET_LEN);
}

Test(proxyproto, v2_inet6_with_tlv)
{
    uint8_t h[16 + 36 + 7] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                              0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36 + 7};
    h[16 + 15] = 1;                             /* src ::1 */
    h[16 + 16] = 0xfe, h[16 + 17] = 0x80;       /* dst fe80:: */
    h[16 + 32] = 0x12, h[16 + 33] = 0x34;       /* sport 4660 */
    h[16 + 34] = 0x01, h[16 + 35] = 0xbb;       /* dport 443 */
    memcpy(h + 16 + 36, "\x01\x00\x02h2", 5);  /* PP2_TYPE_ALPN "h2" ... */
    memcpy(h + 16 + 41, "\x04\x00", 2);        /* ... and an unterminated NOOP: skipped whole */
    proxyproto_t p;
    const char *why;
    cr_assert_eq(proxyproto_decode(h, sizeof h, &p, &why), (int)sizeof h);
    cr_assert_eq(p.family, PROXYPROTO_INET6);
    cr_assert_eq(p.src[15], 1);
    cr_assert_eq(p.dst[0], 0xfe);
    cr_assert_eq(p.src_port, 4660);
    cr_assert_eq(p.dst_port, 443);
    check_truncations(h, sizeof h);
}

Test(proxyproto, v2_local_keeps_own_address)
{
    static const uint8_t h[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
    proxyproto_t p;
    const char *why;
    cr_assert_eq(proxyproto_decode(h, sizeof h, &p, &why), 16);
    cr_assert_eq(p.family, PROXYPROTO_UNSPEC);
    check_truncations(h, sizeof h);
}

Test(proxyproto, v2_refusals)
{
    uint8_t h[V2_INET_LEN];
    proxyproto_t p;
    const char *why;
    memcpy(h, V2_INET, sizeof h);
    h[12] = 0x11; /* version 1 in a v2 header */
    cr_assert_eq(proxyproto_decode(h, sizeof h, &p, &why), PROTO_ERR_MALFORMED);
    h[12] = 0x22; /* command 2 */
    cr_assert_eq(proxyproto_decode(h, sizeof h, &p, &why), PROTO_ERR_MALFORMED);
    memcpy(h, V2_INET, sizeof h);
    h[13] = 0x41; /* family 4 */
    cr_assert_eq(proxyproto_decode(h, sizeof h, &p, &why), PROTO_ERR_MALFORMED);
    memcpy(h, V2_INET, sizeof h);
    h[15] = 11; /* shorter than IPv4's 12 bytes of addresses */
    cr_assert_eq(proxyproto_decode(h, sizeof h, &p, &why), PROTO_ERR_MALFORMED);
    memcpy(h, V2_INET, sizeof h);
    h[14] = 0x02, h[15] = 0x09; /* 16 + 521 > PROXYPROTO_MAX: refused at once */
    cr_assert_eq(proxyproto_decode(h, 16, &p, &why), PROTO_ERR_TOO_LARGE);
    memcpy(h, V2_INET, sizeof h);
    h[5] = 0x0c; /* not the signature */
    cr_assert_eq(proxyproto_decode(h, sizeof h, &p, &why), PROTO_ERR_MALFORMED);
    /* A TLS ClientHello on a listener that expects a header. */
    cr_assert_eq(proxyproto_decode((const uint8_t *)"\x16\x03\x01", 3, &p, &why),
                 PROTO_ERR_MALFORMED);
    cr_assert_str_eq(why, "no PROXY protocol header");
}

Test(proxyproto, v1_tcp4_tcp6_unknown)
{
    static const char *const ok[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP6 ::1 2001:db8::1 65535 0\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char buf[256];
        size_t n = strlen(ok[i]);
        snprintf(buf, sizeof buf, "%s\x16\x03", ok[i]);
        proxyproto_t p;
        const char *why;
        cr_assert_eq(proxyproto_decode((const uint8_t *)buf, n + 2, &p, &why), (int)n, "%s",
                     ok[i]);
        cr_assert_eq(p.version, 1);
        check_truncations((const uint8_t *)ok[i], n);
        if (i == 0) {
            cr_assert_eq(p.family, PROXYPROTO_INET);
            cr_assert_arr_eq(p.src, ((uint8_t[]){192, 168, 0, 1}), 4);
            cr_assert_eq(p.src_port, 56324);
            cr_assert_eq(p.dst_port, 443);
        } else if (i == 1) {
            cr_assert_eq(p.family, PROXYPROTO_INET6);
            cr_assert_eq(p.src[15], 1);
            cr_assert_eq(p.src_port, 65535);
        } else {
            cr_assert_eq(p.family, PROXYPROTO_UNSPEC);
        }
    }
}

Test(proxyproto, v1_refusals)
{
    static const char *const bad[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 7\r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
        "PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
        "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
        "PROXY \r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        proxyproto_t p;
        const char *why;
        cr_assert_eq(proxyproto_decode((const uint8_t *)bad[i], strlen(bad[i]), &p, &why),
                     PROTO_ERR_MALFORMED, "%s", bad[i]);
        cr_assert_neq(why[0], '\0');
    }
    /* A bare LF then a CR (found by fuzz_proxyproto): refused as soon as the
     * LF is there, and still refused once the CR and more have arrived, not
     * taken as the start of a line still incomplete, nor as an UNKNOWN line. */
    static const char *const lf_then_cr[] = {
        "PROXY TCP4 1.2.3.4\n",
        "PROXY TCP4 1.2.3.4\n1.2.3.4 1 2\r",
        "PROXY TCP4 1.2.3.4\n1.2.3.4 1 2\r\n",
        "PROXY UNKNOWN\nx\r\n",
    };
    for (size_t i = 0; i < sizeof lf_then_cr / sizeof lf_then_cr[0]; i++) {
        proxyproto_t q;
        const char *w = "";
        cr_assert_eq(proxyproto_decode((const uint8_t *)lf_then_cr[i], strlen(lf_then_cr[i]),
                                       &q, &w),
                     PROTO_ERR_MALFORMED, "%s", lf_then_cr[i]);
        cr_assert_str_eq(w, "v1: LF without CR");
    }
    /* No CRLF within 107 bytes. */
    char longline[PROXYPROTO_V1_MAX + 1];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "PROXY UNKNOWN ", 14);
    proxyproto_t p;
    const char *why;
    cr_assert_eq(proxyproto_decode((const uint8_t *)longline, PROXYPROTO_V1_MAX - 1, &p, &why),
                 PROTO_INCOMPLETE);
    cr_assert_eq(proxyproto_decode((const uint8_t *)longline, sizeof longline, &p, &why),
                 PROTO_ERR_TOO_LARGE);
}
