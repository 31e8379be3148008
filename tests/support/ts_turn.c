/*
 * ts_turn.c — TURN client messages and one allocation's setup (ts_turn.h).
 */
#include "ts_turn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../proto/stun.h"
#include "ts_util.h"

#define MI_LEN 20u
#define RETRANSMIT_MS 250        /* UDP only; TLS is reliable */
#define SETUP_STEP_MS 5000       /* each transaction */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void set_length(ts_turn_msg_t *m)
{
    put16(m->buf + 2, (uint16_t)(m->len - STUN_HEADER_LEN));
}

void ts_turn_msg_init(ts_turn_msg_t *m, uint16_t type, const uint8_t txid[12])
{
    memset(m->buf, 0, STUN_HEADER_LEN);
    put16(m->buf, type);
    put32(m->buf + 4, STUN_MAGIC_COOKIE);
    memcpy(m->buf + 8, txid, STUN_TXID_LEN);
    m->len = STUN_HEADER_LEN;
}

int ts_turn_attr(ts_turn_msg_t *m, uint16_t type, const void *value, size_t len)
{
    size_t padded = (len + 3) & ~(size_t)3;
    if (len > 0xFFFF || m->len + 4 + padded > TS_TURN_MSG_MAX)
        return -1;
    uint8_t *p = m->buf + m->len;
    put16(p, type);
    put16(p + 2, (uint16_t)len);
    if (len)
        memcpy(p + 4, value, len);
    memset(p + 4 + len, 0, padded - len);
    m->len += 4 + padded;
    set_length(m);
    return 0;
}

int ts_turn_attr_xaddr(ts_turn_msg_t *m, uint16_t type, const struct sockaddr_in *a)
{
    /* RFC 8489 §14.2: family 0x01, port XOR the cookie's top 16 bits, the
     * address XOR the cookie (both in network order). */
    uint8_t v[8] = {0, 0x01};
    put16(v + 2, (uint16_t)(ntohs(a->sin_port) ^ (STUN_MAGIC_COOKIE >> 16)));
    put32(v + 4, ntohl(a->sin_addr.s_addr) ^ STUN_MAGIC_COOKIE);
    return ts_turn_attr(m, type, v, sizeof v);
}

/* HMAC-SHA1 over p[0..len) with the header's length field replaced by
 * length_field (RFC 8489 §14.5: the length as if the message ended right
 * after MESSAGE-INTEGRITY). */
static int hmac_over(const uint8_t *p, size_t len, uint16_t length_field, const uint8_t *key,
                     size_t key_len, uint8_t out[MI_LEN])
{
    static uint8_t copy[2 * TS_TURN_MSG_MAX];
    if (len < STUN_HEADER_LEN || len > sizeof copy)
        return -1;
    memcpy(copy, p, len);
    put16(copy + 2, length_field);
    unsigned int olen = 0;
    return HMAC(EVP_sha1(), key, (int)key_len, copy, len, out, &olen) && olen == MI_LEN ? 0
                                                                                       : -1;
}

int ts_turn_integrity(ts_turn_msg_t *m, const uint8_t *key, size_t key_len)
{
    uint8_t mac[MI_LEN];
    if (m->len + 4 + MI_LEN > TS_TURN_MSG_MAX ||
        hmac_over(m->buf, m->len, (uint16_t)(m->len + 4 + MI_LEN - STUN_HEADER_LEN), key,
                  key_len, mac) < 0)
        return -1;
    return ts_turn_attr(m, TS_TURN_ATTR_MESSAGE_INTEGRITY, mac, sizeof mac);
}

int ts_turn_fingerprint(ts_turn_msg_t *m)
{
    if (m->len + 8 > TS_TURN_MSG_MAX)
        return -1;
    /* The length counts the FINGERPRINT before the CRC is taken (§14.7). */
    put16(m->buf + 2, (uint16_t)(m->len + 8 - STUN_HEADER_LEN));
    uint8_t v[4];
    put32(v, stun_fingerprint(m->buf, m->len));
    return ts_turn_attr(m, TS_TURN_ATTR_FINGERPRINT, v, sizeof v);
}

void ts_turn_key(const char *username, const char *realm, const char *password,
                 uint8_t key[TS_TURN_KEY_LEN])
{
    unsigned int olen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL) ||
        !EVP_DigestUpdate(ctx, username, strlen(username)) || !EVP_DigestUpdate(ctx, ":", 1) ||
        !EVP_DigestUpdate(ctx, realm, strlen(realm)) || !EVP_DigestUpdate(ctx, ":", 1) ||
        !EVP_DigestUpdate(ctx, password, strlen(password)) ||
        !EVP_DigestFinal_ex(ctx, key, &olen))
        memset(key, 0, TS_TURN_KEY_LEN);
    EVP_MD_CTX_free(ctx);
}

/* Walks the attributes of a whole message: calls fn for each until it returns
 * nonzero. -1 when the message is malformed. */
static int walk(const uint8_t *p, size_t len,
                int (*fn)(void *ud, const uint8_t *msg, size_t at, uint16_t type,
                          const uint8_t *v, size_t vlen),
                void *ud)
{
    if (len < STUN_HEADER_LEN || (p[0] & 0xC0) || get16(p + 2) + STUN_HEADER_LEN != len ||
        (len & 3) || p[4] != 0x21 || p[5] != 0x12 || p[6] != 0xA4 || p[7] != 0x42)
        return -1;
    size_t at = STUN_HEADER_LEN;
    while (at + 4 <= len) {
        uint16_t type = get16(p + at), vlen = get16(p + at + 2);
        size_t padded = ((size_t)vlen + 3) & ~(size_t)3;
        if (at + 4 + padded > len)
            return -1;
        int r = fn(ud, p, at, type, p + at + 4, vlen);
        if (r)
            return r;
        at += 4 + padded;
    }
    return at == len ? 0 : -1;
}

typedef struct mi_check {
    const uint8_t *key;
    size_t key_len;
    int result;
} mi_check_t;

static int check_mi(void *ud, const uint8_t *msg, size_t at, uint16_t type, const uint8_t *v,
                    size_t vlen)
{
    mi_check_t *c = ud;
    if (type != TS_TURN_ATTR_MESSAGE_INTEGRITY)
        return 0;
    uint8_t mac[MI_LEN];
    if (vlen != MI_LEN ||
        hmac_over(msg, at, (uint16_t)(at + 4 + MI_LEN - STUN_HEADER_LEN), c->key, c->key_len,
                  mac) < 0)
        return -1;
    c->result = CRYPTO_memcmp(mac, v, MI_LEN) == 0;
    return 1;
}

int ts_turn_check_integrity(const uint8_t *p, size_t len, const uint8_t *key, size_t key_len)
{
    mi_check_t c = {key, key_len, -1};
    if (walk(p, len, check_mi, &c) < 0)
        return -1;
    return c.result;
}

static void copy_str(char *out, size_t cap, const uint8_t *v, size_t vlen)
{
    size_t n = vlen < cap - 1 ? vlen : cap - 1;
    memcpy(out, v, n);
    out[n] = 0;
}

static int parse_attr(void *ud, const uint8_t *msg, size_t at, uint16_t type, const uint8_t *v,
                      size_t vlen)
{
    ts_turn_resp_t *r = ud;
    switch (type) {
    case TS_TURN_ATTR_ERROR_CODE:
        if (vlen >= 4)
            r->error = (v[2] & 7) * 100 + v[3];
        break;
    case TS_TURN_ATTR_REALM:
        copy_str(r->realm, sizeof r->realm, v, vlen);
        break;
    case TS_TURN_ATTR_NONCE:
        copy_str(r->nonce, sizeof r->nonce, v, vlen);
        break;
    case TS_TURN_ATTR_XOR_RELAYED_ADDRESS:
        if (vlen == 8 && v[1] == 0x01) {
            r->has_relayed = 1;
            r->relayed.sin_family = AF_INET;
            r->relayed.sin_port = htons((uint16_t)(get16(v + 2) ^ (STUN_MAGIC_COOKIE >> 16)));
            uint32_t x = (uint32_t)get16(v + 4) << 16 | get16(v + 6);
            r->relayed.sin_addr.s_addr = htonl(x ^ STUN_MAGIC_COOKIE);
        }
        break;
    }
    return 0;
}

int ts_turn_parse(const uint8_t *p, size_t len, const uint8_t txid[12], ts_turn_resp_t *out)
{
    memset(out, 0, sizeof *out);
    if (len < STUN_HEADER_LEN || memcmp(p + 8, txid, STUN_TXID_LEN) != 0)
        return -1;
    out->type = get16(p);
    return walk(p, len, parse_attr, out) < 0 ? -1 : 0;
}

size_t ts_turn_frame_len(const uint8_t *p, size_t have, int stream)
{
    if (have < 4)
        return 0;
    size_t body = get16(p + 2);
    if ((p[0] & 0xC0) == 0x40) /* ChannelData: channel 0x4000..0x7FFF (§12) */
        return TS_TURN_CD_HEADER + (stream ? (body + 3) & ~(size_t)3 : body);
    return STUN_HEADER_LEN + body;
}

size_t ts_turn_channel_data(uint8_t *out, size_t cap, uint16_t channel, const void *data,
                            size_t len, int stream)
{
    size_t total = TS_TURN_CD_HEADER + (stream ? (len + 3) & ~(size_t)3 : len);
    if (len > 0xFFFF || total > cap)
        return 0;
    put16(out, channel);
    put16(out + 2, (uint16_t)len);
    memcpy(out + TS_TURN_CD_HEADER, data, len);
    memset(out + TS_TURN_CD_HEADER + len, 0, total - TS_TURN_CD_HEADER - len);
    return total;
}

/* ---------------------------------------------------------------- setup */

typedef struct tx {
    int fd;
    SSL *ssl;
    uint8_t in[4096];
    size_t have;
} tx_t;

/* Reads one whole message from a TLS stream before the deadline. Its length,
 * or -1. */
static ssize_t tls_read_msg(tx_t *t, uint8_t *out, size_t cap, int64_t deadline)
{
    for (;;) {
        size_t n = ts_turn_frame_len(t->in, t->have, 1);
        if (n && n <= t->have) {
            if (n > cap)
                return -1;
            memcpy(out, t->in, n);
            memmove(t->in, t->in + n, t->have - n);
            t->have -= n;
            return (ssize_t)n;
        }
        int left = ts_remaining_ms(deadline);
        if (left <= 0 || t->have == sizeof t->in)
            return -1;
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int r = SSL_read(t->ssl, t->in + t->have, (int)(sizeof t->in - t->have));
        if (r <= 0)
            return -1;
        t->have += (size_t)r;
    }
}

/* Sends m and waits for the response to its transaction. 0 or -1. */
static int transact(tx_t *t, const ts_turn_msg_t *m, ts_turn_resp_t *resp)
{
    int64_t deadline = ts_deadline(SETUP_STEP_MS);
    uint8_t buf[2048];
    if (t->ssl) {
        if (SSL_write(t->ssl, m->buf, (int)m->len) != (int)m->len)
            return -1;
        for (;;) {
            ssize_t n = tls_read_msg(t, buf, sizeof buf, deadline);
            if (n < 0)
                return -1;
            if (ts_turn_parse(buf, (size_t)n, m->buf + 8, resp) == 0)
                return 0;
        }
    }
    while (ts_remaining_ms(deadline) > 0) {
        if (send(t->fd, m->buf, m->len, 0) < 0)
            return -1;
        int64_t slice = ts_deadline(RETRANSMIT_MS);
        for (;;) {
            int left = ts_remaining_ms(slice < deadline ? slice : deadline);
            struct pollfd pfd = {.fd = t->fd, .events = POLLIN};
            if (left <= 0 || poll(&pfd, 1, left) <= 0)
                break;
            ssize_t n = recv(t->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0 && ts_turn_parse(buf, (size_t)n, m->buf + 8, resp) == 0)
                return 0;
        }
    }
    return -1;
}

static int new_txid(uint8_t txid[12])
{
    return RAND_bytes(txid, 12) == 1 ? 0 : -1;
}

/* Builds an authenticated request of method m with whatever fill adds, sends
 * it, and retries once with the new nonce on 438 (Stale Nonce, RFC 8489
 * §9.2.5). Returns the response's error code (0: success) or -1. */
typedef struct auth {
    const char *username;
    char realm[128], nonce[128];
    uint8_t key[TS_TURN_KEY_LEN];
} auth_t;

static int request(tx_t *t, auth_t *a, uint16_t method,
                   int (*fill)(ts_turn_msg_t *, const void *), const void *arg,
                   ts_turn_resp_t *resp)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        uint8_t txid[12];
        ts_turn_msg_t m;
        if (new_txid(txid) < 0)
            return -1;
        ts_turn_msg_init(&m, TS_TURN_REQUEST(method), txid);
        if (fill(&m, arg) < 0 ||
            ts_turn_attr(&m, TS_TURN_ATTR_USERNAME, a->username, strlen(a->username)) < 0 ||
            ts_turn_attr(&m, TS_TURN_ATTR_REALM, a->realm, strlen(a->realm)) < 0 ||
            ts_turn_attr(&m, TS_TURN_ATTR_NONCE, a->nonce, strlen(a->nonce)) < 0 ||
            ts_turn_integrity(&m, a->key, sizeof a->key) < 0 || ts_turn_fingerprint(&m) < 0 ||
            transact(t, &m, resp) < 0)
            return -1;
        if (resp->type == TS_TURN_SUCCESS(method))
            return 0;
        if (resp->error != 438 || !resp->nonce[0])
            return resp->error ? resp->error : -1;
        snprintf(a->nonce, sizeof a->nonce, "%s", resp->nonce);
    }
    return 438;
}

static int fill_allocate(ts_turn_msg_t *m, const void *arg)
{
    /* REQUESTED-TRANSPORT: UDP (17), three RFFU bytes (RFC 8656 §18.7). */
    static const uint8_t udp[4] = {17, 0, 0, 0};
    return ts_turn_attr(m, TS_TURN_ATTR_REQUESTED_TRANSPORT, udp, sizeof udp);
}

static int fill_permission(ts_turn_msg_t *m, const void *arg)
{
    return ts_turn_attr_xaddr(m, TS_TURN_ATTR_XOR_PEER_ADDRESS, arg);
}

typedef struct bind_arg {
    const struct sockaddr_in *peer;
    uint16_t channel;
} bind_arg_t;

static int fill_bind(ts_turn_msg_t *m, const void *arg)
{
    const bind_arg_t *b = arg;
    uint8_t v[4] = {0};
    put16(v, b->channel);
    return ts_turn_attr(m, TS_TURN_ATTR_CHANNEL_NUMBER, v, sizeof v) < 0
               ? -1
               : ts_turn_attr_xaddr(m, TS_TURN_ATTR_XOR_PEER_ADDRESS, b->peer);
}

int ts_turn_setup(int fd, SSL *ssl, const char *username, const char *password,
                  const struct sockaddr_in *peer, uint16_t channel,
                  struct sockaddr_in *relayed, int64_t deadline, char *why, size_t cap)
{
    static tx_t t; /* 4 KiB of stream buffer: not on the stack; one setup at a time */
    memset(&t, 0, sizeof t);
    t.fd = fd;
    t.ssl = ssl;
    auth_t a = {.username = username};
    ts_turn_resp_t resp;
    uint8_t txid[12];
    ts_turn_msg_t m;

    /* The first Allocate carries no credential: the 401 names realm and nonce
     * (RFC 8656 §7.1, RFC 8489 §9.2.3). */
    if (new_txid(txid) < 0) {
        snprintf(why, cap, "no randomness");
        return -1;
    }
    ts_turn_msg_init(&m, TS_TURN_REQUEST(TS_TURN_ALLOCATE), txid);
    if (fill_allocate(&m, NULL) < 0 || ts_turn_fingerprint(&m) < 0 ||
        transact(&t, &m, &resp) < 0) {
        snprintf(why, cap, "no answer to the first Allocate");
        return -1;
    }
    if (resp.error != 401 || !resp.realm[0] || !resp.nonce[0]) {
        snprintf(why, cap, "the first Allocate was answered 0x%04x, error %d", resp.type,
                 resp.error);
        return -1;
    }
    snprintf(a.realm, sizeof a.realm, "%s", resp.realm);
    snprintf(a.nonce, sizeof a.nonce, "%s", resp.nonce);
    ts_turn_key(username, a.realm, password, a.key);

    int rc = request(&t, &a, TS_TURN_ALLOCATE, fill_allocate, NULL, &resp);
    if (rc != 0 || !resp.has_relayed) {
        snprintf(why, cap, "Allocate: %d%s", rc, rc == 0 ? " without XOR-RELAYED-ADDRESS" : "");
        return -1;
    }
    *relayed = resp.relayed;
    if ((rc = request(&t, &a, TS_TURN_CREATE_PERMISSION, fill_permission, peer, &resp)) != 0) {
        snprintf(why, cap, "CreatePermission: %d", rc);
        return -1;
    }
    bind_arg_t b = {peer, channel};
    if ((rc = request(&t, &a, TS_TURN_CHANNEL_BIND, fill_bind, &b, &resp)) != 0) {
        snprintf(why, cap, "ChannelBind: %d", rc);
        return -1;
    }
    if (ts_remaining_ms(deadline) <= 0) {
        snprintf(why, cap, "setup past its deadline");
        return -1;
    }
    return 0;
}
