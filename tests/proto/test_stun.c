/* test_stun.c — proto/stun.c: the Binding request we send, the success
 * response we accept (RFC 5769 test vectors), every truncation point, and
 * each refusal. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/stun.h"

/* RFC 5769 §2.1 "Sample Request" and §2.2 "Sample IPv4 Response", §2.3
 * "Sample IPv6 Response", byte for byte. */
static const uint8_t rfc_request[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
    0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
    0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
    0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
    0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
    0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
    0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
    0x7a, 0x3b, 0xcf,
};

static const uint8_t rfc_v4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
    0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
    0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
    0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
    0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
    0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

static const uint8_t rfc_v6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
    0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
    0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
    0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
    0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
    0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
    0x0b, 0x4c,
};

static const uint8_t rfc_txid[STUN_TXID_LEN] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                                0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

/* Decodes a heap copy of exactly len bytes, so a read past the end is an
 * ASan report. */
static int decode_resp(const uint8_t *p, size_t len, const uint8_t *txid,
                       stun_binding_response_t *r, const char **why)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, p, len);
    int rc = stun_binding_response_decode(copy, len, txid, r, why);
    free(copy);
    return rc;
}

static int decode_req(const uint8_t *p, size_t len, uint8_t *txid, const char **why)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, p, len);
    int rc = stun_binding_request_decode(copy, len, txid, why);
    free(copy);
    return rc;
}

Test(stun, rfc5769_fingerprints)
{
    /* The FINGERPRINT covers everything before its own attribute. */
    cr_expect_eq(stun_fingerprint(rfc_request, sizeof rfc_request - 8), 0xe57a3bcfu);
    cr_expect_eq(stun_fingerprint(rfc_v4, sizeof rfc_v4 - 8), 0xc07d4c96u);
    cr_expect_eq(stun_fingerprint(rfc_v6, sizeof rfc_v6 - 8), 0xc8fb0b4cu);
}

Test(stun, rfc5769_ipv4_response)
{
    stun_binding_response_t r;
    const char *why = NULL;
    int rc = decode_resp(rfc_v4, sizeof rfc_v4, rfc_txid, &r, &why);

    cr_assert_eq(rc, (int)sizeof rfc_v4, "rc %d: %s", rc, why ? why : "");
    cr_expect(r.has_mapped);
    cr_expect(r.has_fingerprint);
    cr_expect_eq(r.mapped.family, 4);
    cr_expect_eq(r.mapped.port, 32853);
    static const uint8_t want[4] = {192, 0, 2, 1};
    cr_expect_eq(memcmp(r.mapped.addr, want, 4), 0);
    /* Without a transaction id to match, the same message is accepted. */
    cr_expect_eq(decode_resp(rfc_v4, sizeof rfc_v4, NULL, &r, NULL), (int)sizeof rfc_v4);
}

Test(stun, rfc5769_ipv6_response)
{
    stun_binding_response_t r;
    const char *why = NULL;
    int rc = decode_resp(rfc_v6, sizeof rfc_v6, rfc_txid, &r, &why);

    cr_assert_eq(rc, (int)sizeof rfc_v6, "rc %d: %s", rc, why ? why : "");
    cr_expect_eq(r.mapped.family, 6);
    cr_expect_eq(r.mapped.port, 32853);
    static const uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78,
                                     0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77};
    cr_expect_eq(memcmp(r.mapped.addr, want, 16), 0);
}

Test(stun, rfc5769_request_decodes)
{
    uint8_t txid[STUN_TXID_LEN];
    const char *why = NULL;
    int rc = decode_req(rfc_request, sizeof rfc_request, txid, &why);

    cr_assert_eq(rc, (int)sizeof rfc_request, "rc %d: %s", rc, why ? why : "");
    cr_expect_eq(memcmp(txid, rfc_txid, STUN_TXID_LEN), 0);
}

Test(stun, every_truncation_is_incomplete)
{
    const struct {
        const uint8_t *p;
        size_t len;
        int response;
    } v[] = {
        {rfc_v4, sizeof rfc_v4, 1},
        {rfc_v6, sizeof rfc_v6, 1},
        {rfc_request, sizeof rfc_request, 0},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        for (size_t n = 0; n < v[k].len; n++) {
            stun_binding_response_t r;
            uint8_t txid[STUN_TXID_LEN];
            int rc = v[k].response ? decode_resp(v[k].p, n, rfc_txid, &r, NULL)
                                   : decode_req(v[k].p, n, txid, NULL);
            cr_expect_eq(rc, PROTO_INCOMPLETE, "vector %zu cut at %zu: rc %d", k, n, rc);
        }
    }
}

Test(stun, request_encode)
{
    uint8_t txid[STUN_TXID_LEN], out[64], back[STUN_TXID_LEN];
    for (unsigned i = 0; i < STUN_TXID_LEN; i++)
        txid[i] = (uint8_t)(0xa0 + i);

    cr_expect_eq(stun_binding_request_encode(txid, out, STUN_BINDING_REQUEST_LEN - 1),
                 PROTO_ERR_SPACE);
    cr_assert_eq(stun_binding_request_encode(txid, out, sizeof out),
                 (int)STUN_BINDING_REQUEST_LEN);
    static const uint8_t head[8] = {0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42};
    cr_expect_eq(memcmp(out, head, 8), 0, "type, length 8 (the FINGERPRINT), cookie");
    cr_expect_eq(memcmp(out + 8, txid, STUN_TXID_LEN), 0);
    static const uint8_t fp_head[4] = {0x80, 0x28, 0x00, 0x04};
    cr_expect_eq(memcmp(out + 20, fp_head, 4), 0);
    uint32_t fp = stun_fingerprint(out, 20);
    cr_expect_eq(out[24], (uint8_t)(fp >> 24));
    cr_expect_eq(out[27], (uint8_t)fp);
    cr_expect_eq(decode_req(out, STUN_BINDING_REQUEST_LEN, back, NULL),
                 (int)STUN_BINDING_REQUEST_LEN);
    cr_expect_eq(memcmp(back, txid, STUN_TXID_LEN), 0);
}

Test(stun, response_encode_matches_rfc_attribute)
{
    stun_addr_t a = {.family = 4, .port = 32853, .addr = {192, 0, 2, 1}};
    uint8_t out[STUN_BINDING_RESPONSE_MAX];
    int n = stun_binding_response_encode(rfc_txid, &a, out, sizeof out);

    cr_assert_eq(n, 40);
    /* XOR-MAPPED-ADDRESS exactly as RFC 5769 §2.2 prints it. */
    cr_expect_eq(memcmp(out + 20, rfc_v4 + 36, 12), 0);
    stun_binding_response_t r;
    cr_assert_eq(decode_resp(out, (size_t)n, rfc_txid, &r, NULL), n);
    cr_expect_eq(r.mapped.port, 32853);

    stun_addr_t a6 = {.family = 6, .port = 32853,
                      .addr = {0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x00, 0x11,
                               0x22, 0x33, 0x44, 0x55, 0x66, 0x77}};
    n = stun_binding_response_encode(rfc_txid, &a6, out, sizeof out);
    cr_assert_eq(n, 52);
    cr_expect_eq(memcmp(out + 20, rfc_v6 + 36, 24), 0, "RFC 5769 §2.3 attribute");
    cr_expect_eq(stun_binding_response_encode(rfc_txid, &a6, out, 51), PROTO_ERR_SPACE);
    a6.family = 5;
    cr_expect_eq(stun_binding_response_encode(rfc_txid, &a6, out, sizeof out), PROTO_ERR_RANGE);
}

/* A copy of the IPv4 vector with one change, decoded; returns the code. */
static int mutated(size_t off, uint8_t val, const uint8_t *txid, const char **why)
{
    uint8_t m[sizeof rfc_v4];
    stun_binding_response_t r;
    memcpy(m, rfc_v4, sizeof m);
    m[off] = val;
    return decode_resp(m, sizeof m, txid, &r, why);
}

Test(stun, refusals)
{
    const char *why;
    static const struct {
        size_t off;
        uint8_t val;
        const char *what;
    } bad[] = {
        {0, 0x41, "leading bits"},
        {1, 0x11, "error response, not success"},
        {0, 0x00, "a request, not a response"}, /* 0x0001 */
        {3, 0x3d, "length not a multiple of 4"},
        {4, 0x20, "cookie"},
        {19, 0xaf, "transaction id"},
        {23, 0x40, "SOFTWARE overruns the message"},
        {36, 0x7f, "unknown comprehension-required attribute"},
        {41, 0x03, "address family"},
        {39, 0x0c, "XOR-MAPPED-ADDRESS length"},
        {79, 0x97, "FINGERPRINT value"},
        {75, 0x08, "FINGERPRINT length"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        int rc = mutated(bad[i].off, bad[i].val, rfc_txid, &why);
        cr_expect_eq(rc, PROTO_ERR_MALFORMED, "%s: rc %d", bad[i].what, rc);
        cr_expect_not_null(why, "%s: no description", bad[i].what);
    }
    /* An intact message for another transaction (a late answer to an
     * earlier request, or a forgery without the id). */
    uint8_t other[STUN_TXID_LEN];
    memcpy(other, rfc_txid, sizeof other);
    other[11] ^= 1;
    why = NULL;
    stun_binding_response_t r0;
    cr_expect_eq(decode_resp(rfc_v4, sizeof rfc_v4, other, &r0, &why), PROTO_ERR_MALFORMED);
    cr_expect_str_eq(why ? why : "", "transaction id does not match");
    /* A declared length past the datagram is incomplete, not accepted. */
    cr_expect_eq(mutated(3, 0x40, rfc_txid, NULL), PROTO_INCOMPLETE);
    /* A shorter declared length ends the message early: the caller sees a
     * return value other than the datagram's length. */
    cr_expect_eq(mutated(3, 0x34, rfc_txid, NULL), 20 + 0x34);

    /* An attribute after FINGERPRINT. */
    uint8_t m[sizeof rfc_v4 + 8];
    memcpy(m, rfc_v4, sizeof rfc_v4);
    m[3] = 0x44;
    memcpy(m + sizeof rfc_v4, "\x80\x22\x00\x04test", 8);
    stun_binding_response_t r;
    why = NULL;
    cr_expect_eq(decode_resp(m, sizeof m, rfc_txid, &r, &why), PROTO_ERR_MALFORMED);
    /* (the fingerprint no longer matches either: the length changed; either
     * way it is refused) */
    cr_expect_not_null(why);
}

Test(stun, minimal_response_without_fingerprint)
{
    /* Header and XOR-MAPPED-ADDRESS only: an older server's answer. */
    uint8_t m[32];
    memcpy(m, rfc_v4, 20);
    m[3] = 12;
    memcpy(m + 20, rfc_v4 + 36, 12);
    stun_binding_response_t r;
    cr_assert_eq(decode_resp(m, sizeof m, rfc_txid, &r, NULL), 32);
    cr_expect(r.has_mapped);
    cr_expect(!r.has_fingerprint);
    /* No attributes at all: still a valid success response. */
    m[3] = 0;
    cr_assert_eq(decode_resp(m, 20, rfc_txid, &r, NULL), 20);
    cr_expect(!r.has_mapped);
}
