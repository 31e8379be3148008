/*
 * ts_turn.h — the client half of TURN (RFC 8656) that a load generator needs
 * to relay through coturn: the long-term credential (RFC 8489 §9.2), Allocate,
 * CreatePermission, ChannelBind, and ChannelData framing (RFC 8656 §12).
 *
 * Messages are built in a caller-owned ts_turn_msg_t (no allocation): a
 * header, then attributes, each padded to 4 bytes with zeros (RFC 8489 §14),
 * then MESSAGE-INTEGRITY (HMAC-SHA1, §14.5) and FINGERPRINT (§14.7) last.
 * proto/stun.h gives the FINGERPRINT CRC; this file adds what a Binding check
 * does not need. Known-answer tests: tests/integration/test_turn.c (RFC 5769).
 *
 * ts_turn_setup runs the four transactions of one allocation over a blocking
 * exchange (a connected UDP socket, or a TLS connection), each with its own
 * deadline; the relay then carries ChannelData on the same transport.
 *
 * Not thread-safe: MESSAGE-INTEGRITY and ts_turn_setup use static scratch
 * buffers (one caller thread at a time, as in bench_load).
 */
#ifndef SLUICE_TS_TURN_H
#define SLUICE_TS_TURN_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#define TS_TURN_MSG_MAX 1024u
#define TS_TURN_KEY_LEN 16u           /* MD5 */
#define TS_TURN_CHANNEL_MIN 0x4000u   /* RFC 8656 §12: 0x4000..0x4FFF */
#define TS_TURN_CHANNEL_MAX 0x4FFFu
#define TS_TURN_CD_HEADER 4u          /* ChannelData: channel u16, length u16 */

enum ts_turn_method {
    TS_TURN_ALLOCATE = 0x003,
    TS_TURN_CREATE_PERMISSION = 0x008,
    TS_TURN_CHANNEL_BIND = 0x009,
};

/* Message classes as they sit in the type field (RFC 8489 §5). */
#define TS_TURN_REQUEST(m) ((uint16_t)(m))
#define TS_TURN_SUCCESS(m) ((uint16_t)((m) | 0x0100))
#define TS_TURN_ERROR(m) ((uint16_t)((m) | 0x0110))

enum ts_turn_attr {
    TS_TURN_ATTR_USERNAME = 0x0006,
    TS_TURN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    TS_TURN_ATTR_ERROR_CODE = 0x0009,
    TS_TURN_ATTR_CHANNEL_NUMBER = 0x000C,
    TS_TURN_ATTR_LIFETIME = 0x000D,
    TS_TURN_ATTR_XOR_PEER_ADDRESS = 0x0012,
    TS_TURN_ATTR_REALM = 0x0014,
    TS_TURN_ATTR_NONCE = 0x0015,
    TS_TURN_ATTR_XOR_RELAYED_ADDRESS = 0x0016,
    TS_TURN_ATTR_REQUESTED_TRANSPORT = 0x0019,
    TS_TURN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    TS_TURN_ATTR_FINGERPRINT = 0x8028,
};

typedef struct ts_turn_msg {
    size_t len;
    uint8_t buf[TS_TURN_MSG_MAX];
} ts_turn_msg_t;

/* A header of type with transaction id txid and no attributes. */
void ts_turn_msg_init(ts_turn_msg_t *m, uint16_t type, const uint8_t txid[12]);

/* Appends an attribute (value padded with zeros to 4 bytes) and updates the
 * header's length. 0, or -1 when it does not fit. */
int ts_turn_attr(ts_turn_msg_t *m, uint16_t type, const void *value, size_t len);

/* Appends an XOR-*-ADDRESS attribute for an IPv4 address (RFC 8489 §14.2). */
int ts_turn_attr_xaddr(ts_turn_msg_t *m, uint16_t type, const struct sockaddr_in *a);

/* Appends MESSAGE-INTEGRITY: HMAC-SHA1 with key over the message so far, with
 * the header's length already counting the attribute (RFC 8489 §14.5). */
int ts_turn_integrity(ts_turn_msg_t *m, const uint8_t *key, size_t key_len);

/* Appends FINGERPRINT (RFC 8489 §14.7). */
int ts_turn_fingerprint(ts_turn_msg_t *m);

/* The long-term key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2;
 * the caller passes strings already processed by OpaqueString). */
void ts_turn_key(const char *username, const char *realm, const char *password,
                 uint8_t key[TS_TURN_KEY_LEN]);

/* 1 when p (a whole message) carries a MESSAGE-INTEGRITY that key verifies, 0
 * when it carries one that does not, -1 when it carries none or is malformed. */
int ts_turn_check_integrity(const uint8_t *p, size_t len, const uint8_t *key, size_t key_len);

/* A response as the client needs it. */
typedef struct ts_turn_resp {
    uint16_t type;
    int error;                   /* ERROR-CODE (e.g. 401), 0 when absent */
    char realm[128], nonce[128]; /* NUL-terminated; empty when absent */
    int has_relayed;
    struct sockaddr_in relayed;  /* XOR-RELAYED-ADDRESS (IPv4) */
} ts_turn_resp_t;

/* Parses a whole message of len bytes whose transaction id must be txid.
 * 0, or -1 (not STUN, another transaction, malformed). */
int ts_turn_parse(const uint8_t *p, size_t len, const uint8_t txid[12], ts_turn_resp_t *out);

/* The length of the STUN message or ChannelData frame that starts at p on a
 * stream (RFC 8656 §12.5: ChannelData padded to 4 bytes over TCP and TLS):
 * 0 when fewer than 4 bytes are there. */
size_t ts_turn_frame_len(const uint8_t *p, size_t have, int stream);

/* Writes a ChannelData frame (padded to 4 bytes when stream) and returns its
 * length, or 0 when cap is too small or len > 65535. */
size_t ts_turn_channel_data(uint8_t *out, size_t cap, uint16_t channel, const void *data,
                            size_t len, int stream);

/* One allocation over a blocking transport: fd a connected UDP socket (ssl
 * NULL), or ssl a TLS connection on blocking fd. Allocate (RFC 8656 §7: first
 * unauthenticated for the 401's realm and nonce, then with the long-term
 * credential), CreatePermission for peer, ChannelBind channel to peer. Each
 * request has its own deadline (retransmitted on UDP). 0 with *relayed set, or
 * -1 with a reason in why. */
int ts_turn_setup(int fd, SSL *ssl, const char *username, const char *password,
                  const struct sockaddr_in *peer, uint16_t channel,
                  struct sockaddr_in *relayed, int64_t deadline, char *why, size_t cap);

#endif
