/*
 * test_turnmsg.c — bench_load's TURN client messages (tests/support/ts_turn.h)
 * against the RFC 5769 test vectors: MESSAGE-INTEGRITY and FINGERPRINT
 * appended to the sample IPv4 response reproduce it byte for byte (§2.2), the
 * long-term request is rebuilt byte for byte from its attributes with the
 * MD5 key (§2.4), integrity checks accept the vectors and reject a flipped
 * bit; plus ChannelData framing (RFC 8656 §12) and response parsing.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "../support/ts_turn.h"

/* RFC 5769 §2.2: Binding success, SOFTWARE "test vector" (padded with a
 * space), XOR-MAPPED-ADDRESS 192.0.2.1:32853, MESSAGE-INTEGRITY, FINGERPRINT. */
static const uint8_t resp_v4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b,
    0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
    0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
    0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};
#define RESP_V4_BEFORE_MI 48u
static const char short_term_pw[] = "VOkJxbRl1RmTxUk/WvJxBt";

/* RFC 5769 §2.4: Binding request with USERNAME "マトリックス", NONCE, REALM
 * "example.org" and MESSAGE-INTEGRITY with the long-term key of password
 * "TheMatrIX" (after SASLprep). */
static const uint8_t req_lt[] = {
    0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33,
    0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12,
    0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88, 0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83,
    0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9, 0x00, 0x00, 0x00, 0x15, 0x00, 0x1c,
    0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39, 0x35, 0x34, 0x64, 0x36,
    0x4f, 0x4c, 0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76, 0x79,
    0x36, 0x34, 0x73, 0x41, 0x00, 0x14, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d,
    0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00, 0x00, 0x08, 0x00, 0x14,
    0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71,
    0x2e, 0x85, 0xc9, 0xa2, 0x8c, 0xa8, 0x96, 0x66,
};
static const char lt_user[] = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf"
                              "\xe3\x82\xb9";
static const char lt_nonce[] = "f//499k954d6OL34oL9FSTvy64sA";

Test(turnmsg, integrity_and_fingerprint_reproduce_rfc5769_sample_response)
{
    ts_turn_msg_t m;
    memcpy(m.buf, resp_v4, RESP_V4_BEFORE_MI);
    m.len = RESP_V4_BEFORE_MI;
    cr_assert_eq(ts_turn_integrity(&m, (const uint8_t *)short_term_pw, strlen(short_term_pw)),
                 0);
    cr_assert_eq(ts_turn_fingerprint(&m), 0);
    cr_assert_eq(m.len, sizeof resp_v4);
    cr_assert_arr_eq(m.buf, resp_v4, sizeof resp_v4);
}

Test(turnmsg, long_term_request_is_rebuilt_from_its_attributes)
{
    uint8_t key[TS_TURN_KEY_LEN];
    ts_turn_key(lt_user, "example.org", "TheMatrIX", key);
    ts_turn_msg_t m;
    ts_turn_msg_init(&m, 0x0001, req_lt + 8);
    cr_assert_eq(ts_turn_attr(&m, TS_TURN_ATTR_USERNAME, lt_user, strlen(lt_user)), 0);
    cr_assert_eq(ts_turn_attr(&m, TS_TURN_ATTR_NONCE, lt_nonce, strlen(lt_nonce)), 0);
    cr_assert_eq(ts_turn_attr(&m, TS_TURN_ATTR_REALM, "example.org", 11), 0);
    cr_assert_eq(ts_turn_integrity(&m, key, sizeof key), 0);
    cr_assert_eq(m.len, sizeof req_lt);
    cr_assert_arr_eq(m.buf, req_lt, sizeof req_lt);
}

Test(turnmsg, integrity_check_accepts_the_vectors_and_rejects_a_flipped_bit)
{
    uint8_t key[TS_TURN_KEY_LEN];
    ts_turn_key(lt_user, "example.org", "TheMatrIX", key);
    cr_assert_eq(ts_turn_check_integrity(req_lt, sizeof req_lt, key, sizeof key), 1);
    cr_assert_eq(ts_turn_check_integrity(resp_v4, sizeof resp_v4,
                                         (const uint8_t *)short_term_pw,
                                         strlen(short_term_pw)),
                 1);
    uint8_t bad[sizeof req_lt];
    memcpy(bad, req_lt, sizeof bad);
    bad[60] ^= 0x01; /* inside the NONCE */
    cr_assert_eq(ts_turn_check_integrity(bad, sizeof bad, key, sizeof key), 0);
    key[0] ^= 0x80;
    cr_assert_eq(ts_turn_check_integrity(req_lt, sizeof req_lt, key, sizeof key), 0);
    /* A length that does not match: malformed. */
    cr_assert_eq(ts_turn_check_integrity(req_lt, sizeof req_lt - 4, key, sizeof key), -1);
}

Test(turnmsg, allocate_response_is_parsed)
{
    static const uint8_t txid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct sockaddr_in relayed = {.sin_family = AF_INET, .sin_port = htons(49152)};
    inet_pton(AF_INET, "127.0.0.1", &relayed.sin_addr);
    ts_turn_msg_t m;
    ts_turn_msg_init(&m, TS_TURN_SUCCESS(TS_TURN_ALLOCATE), txid);
    cr_assert_eq(ts_turn_attr_xaddr(&m, TS_TURN_ATTR_XOR_RELAYED_ADDRESS, &relayed), 0);
    cr_assert_eq(ts_turn_fingerprint(&m), 0);
    ts_turn_resp_t r;
    cr_assert_eq(ts_turn_parse(m.buf, m.len, txid, &r), 0);
    cr_assert_eq(r.type, 0x0103);
    cr_assert(r.has_relayed);
    cr_assert_eq(r.relayed.sin_port, relayed.sin_port);
    cr_assert_eq(r.relayed.sin_addr.s_addr, relayed.sin_addr.s_addr);
    static const uint8_t other[12] = {0};
    cr_assert_eq(ts_turn_parse(m.buf, m.len, other, &r), -1);

    /* A 401 with realm and nonce (ERROR-CODE: class 4, number 1). */
    static const uint8_t err[4] = {0, 0, 4, 1};
    ts_turn_msg_init(&m, TS_TURN_ERROR(TS_TURN_ALLOCATE), txid);
    ts_turn_attr(&m, TS_TURN_ATTR_ERROR_CODE, err, sizeof err);
    ts_turn_attr(&m, TS_TURN_ATTR_REALM, "r.test", 6);
    ts_turn_attr(&m, TS_TURN_ATTR_NONCE, "n0nce", 5);
    cr_assert_eq(ts_turn_parse(m.buf, m.len, txid, &r), 0);
    cr_assert_eq(r.error, 401);
    cr_assert_str_eq(r.realm, "r.test");
    cr_assert_str_eq(r.nonce, "n0nce");
}

Test(turnmsg, channel_data_is_padded_on_streams_only)
{
    uint8_t out[64], data[5] = {0x80, 1, 2, 3, 4};
    size_t n = ts_turn_channel_data(out, sizeof out, 0x4001, data, sizeof data, 0);
    cr_assert_eq(n, 9);
    static const uint8_t want[9] = {0x40, 0x01, 0x00, 0x05, 0x80, 1, 2, 3, 4};
    cr_assert_arr_eq(out, want, sizeof want);
    cr_assert_eq(ts_turn_frame_len(out, n, 0), 9);
    n = ts_turn_channel_data(out, sizeof out, 0x4001, data, sizeof data, 1);
    cr_assert_eq(n, 12);
    cr_assert_eq(out[9] | out[10] | out[11], 0);
    cr_assert_eq(ts_turn_frame_len(out, n, 1), 12);
    cr_assert_eq(ts_turn_frame_len(out, 3, 1), 0);
    cr_assert_eq(ts_turn_channel_data(out, 8, 0x4001, data, sizeof data, 1), 0);
    /* A STUN message on a stream: 20 + its length. */
    cr_assert_eq(ts_turn_frame_len(req_lt, sizeof req_lt, 1), sizeof req_lt);
}
