/* proxyproto.c — see proxyproto.h. Section numbers are those of haproxy's
 * doc/proxy-protocol.txt. */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <string.h>

#include "proto.h"

/* §2.2: the v2 signature, and v1's prefix (§2.1). */
static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};

static int fail(const char **why, const char *what, int rc)
{
    *why = what;
    return rc;
}

/* §2.2: 16 bytes (signature, ver_cmd, fam, len), then len bytes of addresses
 * and TLVs. */
static int decode_v2(const uint8_t *buf, size_t len, proxyproto_t *out, const char **why)
{
    if (len < 16)
        return PROTO_INCOMPLETE;
    uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0f;
    uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0f;
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if (ver != 2)
        return fail(why, "v2: version is not 2", PROTO_ERR_MALFORMED);
    if (cmd > 1)
        return fail(why, "v2: command neither LOCAL nor PROXY", PROTO_ERR_MALFORMED);
    if (fam > 3 || proto > 2)
        return fail(why, "v2: unknown address family or transport", PROTO_ERR_MALFORMED);
    if (16 + body > PROXYPROTO_MAX)
        return fail(why, "v2: header longer than we accept", PROTO_ERR_TOO_LARGE);
    /* The address block's size for each family (UNSPEC: none). */
    static const size_t need[4] = {0, 12, 36, 216};
    if (body < need[fam])
        return fail(why, "v2: length shorter than its addresses", PROTO_ERR_MALFORMED);
    if (len < 16 + body)
        return PROTO_INCOMPLETE;
    proxyproto_t p = {.version = 2, .family = PROXYPROTO_UNSPEC};
    /* LOCAL: the balancer's own health check; the connection's own address
     * stands. Only TCP (STREAM) over IP names a client we can use. */
    if (cmd == 1 && proto == 1 && (fam == 1 || fam == 2)) {
        size_t a = fam == 1 ? 4 : 16;
        const uint8_t *q = buf + 16;
        p.family = fam == 1 ? PROXYPROTO_INET : PROXYPROTO_INET6;
        memcpy(p.src, q, a);
        memcpy(p.dst, q + a, a);
        p.src_port = (uint16_t)(q[2 * a] << 8 | q[2 * a + 1]);
        p.dst_port = (uint16_t)(q[2 * a + 2] << 8 | q[2 * a + 3]);
    }
    *out = p;
    return (int)(16 + body);
}

/* A decimal port, 0 to 65535, without leading zeros (§2.1). */
static int port_parse(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* §2.1: "PROXY" SP ( "TCP4" | "TCP6" | "UNKNOWN" ) [ SP src SP dst SP sport
 * SP dport ] CRLF, at most 107 bytes. */
static int decode_v1(const uint8_t *buf, size_t len, proxyproto_t *out, const char **why)
{
    size_t lim = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
    const uint8_t *cr = memchr(buf, '\r', lim);
    if (!cr) {
        if (len >= PROXYPROTO_V1_MAX)
            return fail(why, "v1: no CRLF within 107 bytes", PROTO_ERR_TOO_LARGE);
        if (memchr(buf, '\n', len))
            return fail(why, "v1: LF without CR", PROTO_ERR_MALFORMED);
        return PROTO_INCOMPLETE;
    }
    size_t n = (size_t)(cr - buf);
    /* A bare LF before the first CR is refused here as it is above when no CR
     * has arrived yet: the answer must not depend on how the bytes were cut. */
    if (memchr(buf, '\n', n))
        return fail(why, "v1: LF without CR", PROTO_ERR_MALFORMED);
    if (n + 1 >= len)
        return PROTO_INCOMPLETE;
    if (buf[n + 1] != '\n')
        return fail(why, "v1: CR without LF", PROTO_ERR_MALFORMED);
    /* Split the line after "PROXY " into at most five fields. */
    const char *line = (const char *)buf + 6, *end = (const char *)buf + n;
    const char *f[5];
    size_t fl[5], nf = 0;
    for (const char *p = line; p <= end && nf < 5;) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *e = sp ? sp : end;
        f[nf] = p;
        fl[nf++] = (size_t)(e - p);
        if (!sp)
            break;
        p = sp + 1;
        if (nf == 5)
            return fail(why, "v1: too many fields", PROTO_ERR_MALFORMED);
    }
    proxyproto_t p = {.version = 1, .family = PROXYPROTO_UNSPEC};
    if (nf >= 1 && fl[0] == 7 && !memcmp(f[0], "UNKNOWN", 7)) {
        *out = p; /* the rest of the line is to be ignored */
        return (int)(n + 2);
    }
    int v4 = nf >= 1 && fl[0] == 4 && !memcmp(f[0], "TCP4", 4);
    int v6 = nf >= 1 && fl[0] == 4 && !memcmp(f[0], "TCP6", 4);
    if (!v4 && !v6)
        return fail(why, "v1: protocol neither TCP4, TCP6 nor UNKNOWN", PROTO_ERR_MALFORMED);
    if (nf != 5)
        return fail(why, "v1: expected source, destination and two ports", PROTO_ERR_MALFORMED);
    char a[2][46];
    for (int i = 0; i < 2; i++) {
        if (fl[1 + i] == 0 || fl[1 + i] >= sizeof a[i])
            return fail(why, "v1: bad address", PROTO_ERR_MALFORMED);
        memcpy(a[i], f[1 + i], fl[1 + i]);
        a[i][fl[1 + i]] = '\0';
    }
    int af = v4 ? AF_INET : AF_INET6;
    if (inet_pton(af, a[0], p.src) != 1 || inet_pton(af, a[1], p.dst) != 1)
        return fail(why, "v1: bad address", PROTO_ERR_MALFORMED);
    if (port_parse(f[3], fl[3], &p.src_port) < 0 || port_parse(f[4], fl[4], &p.dst_port) < 0)
        return fail(why, "v1: bad port", PROTO_ERR_MALFORMED);
    p.family = v4 ? PROXYPROTO_INET : PROXYPROTO_INET6;
    *out = p;
    return (int)(n + 2);
}

int proxyproto_decode(const uint8_t *buf, size_t len, proxyproto_t *out, const char **why)
{
    *why = "";
    size_t m2 = len < sizeof v2_sig ? len : sizeof v2_sig;
    size_t m1 = len < sizeof v1_sig ? len : sizeof v1_sig;
    if (!memcmp(buf, v2_sig, m2))
        return len < sizeof v2_sig ? PROTO_INCOMPLETE : decode_v2(buf, len, out, why);
    if (!memcmp(buf, v1_sig, m1))
        return len < sizeof v1_sig ? PROTO_INCOMPLETE : decode_v1(buf, len, out, why);
    return fail(why, "no PROXY protocol header", PROTO_ERR_MALFORMED);
}
