/*
 * fuzz_stun.c — proto/stun.c: the STUN Binding request and response decoders
 * (RFC 8489) the shim's UDP reachability check and its test responders use on
 * datagrams from the network.
 *
 * Input: bytes 0..11 are the transaction id the check expects; the rest is a
 * datagram.
 *
 * Asserts: a decoder's answer is a length 20 + Message Length no longer than
 * the input, PROTO_INCOMPLETE or PROTO_ERR_MALFORMED with a reason; the
 * length does not depend on the bytes after it; a response accepted against
 * an expected transaction id is also accepted without one; an accepted
 * response's mapped address, encoded again with stun_binding_response_encode,
 * decodes to the same address; an accepted request's transaction id, encoded
 * again, decodes to the same id. The decoders read only the input (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/proto.h"
#include "../../proto/stun.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rc(int rc, size_t len, const char *why)
{
    if (rc > 0)
        FUZZ_ASSERT((size_t)rc <= len && rc >= 20 && rc % 4 == 0);
    else
        FUZZ_ASSERT(rc == PROTO_INCOMPLETE || (rc == PROTO_ERR_MALFORMED && why != NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < STUN_TXID_LEN)
        return 0;
    const uint8_t *txid = data;
    size_t len = size - STUN_TXID_LEN;
    uint8_t *p = malloc(len ? len : 1); /* its own block: ASan sees any overread */
    FUZZ_ASSERT(p != NULL);
    memcpy(p, data + STUN_TXID_LEN, len);

    stun_binding_response_t r, r2;
    const char *why = NULL;
    int rc = stun_binding_response_decode(p, len, txid, &r, &why);
    check_rc(rc, len, why);
    why = NULL;
    int rc_any = stun_binding_response_decode(p, len, NULL, &r2, &why);
    check_rc(rc_any, len, why);
    if (rc > 0) {
        FUZZ_ASSERT(rc_any == rc);
        FUZZ_ASSERT(stun_binding_response_decode(p, (size_t)rc, txid, &r2, NULL) == rc);
        if (r.has_mapped) {
            FUZZ_ASSERT(r.mapped.family == 4 || r.mapped.family == 6);
            uint8_t out[STUN_BINDING_RESPONSE_MAX];
            int n = stun_binding_response_encode(txid, &r.mapped, out, sizeof out);
            FUZZ_ASSERT(n > 0);
            FUZZ_ASSERT(stun_binding_response_decode(out, (size_t)n, txid, &r2, NULL) == n);
            FUZZ_ASSERT(r2.has_mapped && r2.has_fingerprint);
            FUZZ_ASSERT(r2.mapped.family == r.mapped.family && r2.mapped.port == r.mapped.port);
            FUZZ_ASSERT(memcmp(r2.mapped.addr, r.mapped.addr, r.mapped.family == 4 ? 4 : 16) == 0);
        }
    }

    uint8_t got[STUN_TXID_LEN];
    why = NULL;
    rc = stun_binding_request_decode(p, len, got, &why);
    check_rc(rc, len, why);
    if (rc > 0) {
        uint8_t out[STUN_BINDING_REQUEST_LEN], again[STUN_TXID_LEN];
        FUZZ_ASSERT(stun_binding_request_encode(got, out, sizeof out) == STUN_BINDING_REQUEST_LEN);
        FUZZ_ASSERT(stun_binding_request_decode(out, sizeof out, again, NULL) ==
                    STUN_BINDING_REQUEST_LEN);
        FUZZ_ASSERT(memcmp(got, again, STUN_TXID_LEN) == 0);
    }
    free(p);
    return 0;
}
