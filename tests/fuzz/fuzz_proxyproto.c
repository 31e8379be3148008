/*
 * fuzz_proxyproto.c — proto/proxyproto.c: the PROXY protocol v1 and v2 header
 * a load balancer sends before the client's first byte.
 *
 * The gateway reads the header as it arrives (gateway/conn.c peeks at what
 * the socket holds and decodes again), so the decoder's answer on every
 * prefix matters, not only on the whole input. Asserts:
 *   - every result is a length in (0, min(len, PROXYPROTO_MAX)],
 *     PROTO_INCOMPLETE, PROTO_ERR_TOO_LARGE or PROTO_ERR_MALFORMED, and an
 *     error names its fault;
 *   - out is written only on success, with version 1 or 2 and a known family;
 *   - a header's length does not depend on the bytes after it (buf[0..r)
 *     alone gives the same header), every shorter prefix of it is
 *     PROTO_INCOMPLETE, and a prefix that is refused stays refused however
 *     many bytes follow (the answer on a prefix never contradicts the answer on
 *     the whole);
 *   - PROTO_INCOMPLETE is only said of fewer than PROXYPROTO_MAX bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/proto.h"
#include "../../proto/proxyproto.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes a private copy, so that reading past len is an ASan report. */
static int decode(const uint8_t *data, size_t len, proxyproto_t *out)
{
    uint8_t *copy = malloc(len ? len : 1);
    FUZZ_ASSERT(copy != NULL);
    memcpy(copy, data, len);
    const char *why = NULL;
    memset(out, 0xa5, sizeof *out);
    proxyproto_t before = *out;
    int r = proxyproto_decode(copy, len, out, &why);
    free(copy);
    if (r > 0) {
        FUZZ_ASSERT((size_t)r <= len && (size_t)r <= PROXYPROTO_MAX);
        FUZZ_ASSERT(out->version == 1 || out->version == 2);
        FUZZ_ASSERT(out->family == PROXYPROTO_UNSPEC || out->family == PROXYPROTO_INET ||
                    out->family == PROXYPROTO_INET6);
        FUZZ_ASSERT(out->version == 2 || r <= (int)PROXYPROTO_V1_MAX);
    } else {
        FUZZ_ASSERT(r == PROTO_INCOMPLETE || r == PROTO_ERR_TOO_LARGE ||
                    r == PROTO_ERR_MALFORMED);
        FUZZ_ASSERT(memcmp(out, &before, sizeof before) == 0);
        if (r != PROTO_INCOMPLETE)
            FUZZ_ASSERT(why != NULL);
        else
            FUZZ_ASSERT(len < PROXYPROTO_MAX);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > PROXYPROTO_MAX + 64)
        return 0;
    proxyproto_t whole, part;
    int r = decode(data, size, &whole);
    if (r > 0) {
        FUZZ_ASSERT(decode(data, (size_t)r, &part) == r);
        FUZZ_ASSERT(part.version == whole.version && part.family == whole.family &&
                    part.src_port == whole.src_port && part.dst_port == whole.dst_port &&
                    memcmp(part.src, whole.src, 16) == 0 && memcmp(part.dst, whole.dst, 16) == 0);
    }
    for (size_t k = 0; k < size && (r <= 0 || k < (size_t)r); k++) {
        int rk = decode(data, k, &part);
        if (r > 0)
            FUZZ_ASSERT(rk == PROTO_INCOMPLETE);
        else if (rk == PROTO_ERR_MALFORMED || rk == PROTO_ERR_TOO_LARGE)
            FUZZ_ASSERT(r == PROTO_ERR_MALFORMED || r == PROTO_ERR_TOO_LARGE);
        else
            FUZZ_ASSERT(rk == PROTO_INCOMPLETE);
    }
    return 0;
}
