/*
 * cred.c — TURN REST API style ephemeral credentials
 * (draft-uberti-behave-turn-rest-00 §2.2).
 *
 * libcrypto is used for the HMAC, base64 and constant-time compare only:
 * pure functions over caller-owned memory.
 */
#include "cred.h"

#include <limits.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proto.h"

/* "<digits>": 19 digits always fit in uint64_t (10^19 - 1 < 2^64). */
#define CRED_EXPIRY_DIGITS_MAX 19u

const char *cred_strerror(int rc)
{
    switch (rc) {
    case CRED_OK:
        return "ok";
    case CRED_ERR_MALFORMED:
        return "malformed username or credential";
    case CRED_ERR_EXPIRED:
        return "credential expired";
    case CRED_ERR_TOO_FAR:
        return "credential expiry too far ahead";
    case CRED_ERR_MISMATCH:
        return "credential does not match";
    default:
        return "unknown error";
    }
}

int cred_parse_username(const char *username, size_t len, uint64_t *expiry,
                        const char **user, size_t *user_len)
{
    if (len == 0 || len > CRED_USERNAME_MAX)
        return CRED_ERR_MALFORMED;

    /* Control characters anywhere (C0 and DEL) are refused: the username ends
     * up in logs and in the HMAC input, and has no business carrying them. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)username[i];
        if (c < 0x20 || c == 0x7f)
            return CRED_ERR_MALFORMED;
    }

    size_t i = 0;
    uint64_t v = 0;
    for (; i < len && username[i] != ':'; i++) {
        unsigned d = (unsigned char)username[i] - (unsigned)'0';
        if (d > 9 || i >= CRED_EXPIRY_DIGITS_MAX)
            return CRED_ERR_MALFORMED;
        if (v > (UINT64_MAX - d) / 10)
            return CRED_ERR_MALFORMED; /* cannot happen with 19 digits; kept as the real bound */
        v = v * 10 + d;
    }
    if (i == 0)
        return CRED_ERR_MALFORMED;

    *expiry = v;
    if (i < len) {
        *user = username + i + 1; /* past the ':' */
        *user_len = len - i - 1;
    } else {
        *user = username + len;
        *user_len = 0;
    }
    return CRED_OK;
}

/* The digest for a hash and its size in bytes; NULL for an unknown hash. */
static const EVP_MD *cred_md(enum cred_hash hash, size_t *mdlen)
{
    switch (hash) {
    case CRED_SHA1:
        *mdlen = 20;
        return EVP_sha1();
    case CRED_SHA256:
        *mdlen = 32;
        return EVP_sha256();
    default:
        return NULL;
    }
}

ssize_t cred_sign(enum cred_hash hash, const uint8_t *secret, size_t secret_len,
                  const char *username, size_t username_len, char *out, size_t cap)
{
    size_t mdlen = 0;
    const EVP_MD *md = cred_md(hash, &mdlen);
    if (md == NULL || secret_len > INT_MAX)
        return PROTO_ERR_RANGE;

    /* RFC 4648 §4: 4 characters per 3 bytes, padded; plus the NUL. */
    if (cap < (mdlen + 2) / 3 * 4 + 1)
        return PROTO_ERR_SPACE;

    /* Real pointers even for empty inputs: in the HMAC_Init_ex() family a NULL
     * key means "keep the previous key". */
    uint8_t empty = 0;
    const uint8_t *key = secret != NULL ? secret : &empty;
    const uint8_t *msg = username != NULL ? (const uint8_t *)username : &empty;

    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (HMAC(md, key, (int)secret_len, msg, username_len, digest, &dlen) == NULL ||
        dlen != mdlen) {
        OPENSSL_cleanse(digest, sizeof(digest));
        return PROTO_ERR_RANGE;
    }
    int n = EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
    OPENSSL_cleanse(digest, sizeof(digest));
    return n;
}

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* Padded base64 syntax (RFC 4648 §4): non-empty, a multiple of 4 characters,
 * '=' only as the last one or two. The credential is the client's input, not
 * a secret, so this check may take data-dependent time. */
static int b64_syntax_ok(const char *s, size_t len)
{
    if (len == 0 || len % 4 != 0)
        return 0;
    size_t pad = 0;
    if (s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char((unsigned char)s[i]))
            return 0;
    return 1;
}

int cred_check(enum cred_hash hash, const cred_secret_t *secrets, size_t nsecrets,
               const char *username, size_t username_len, const char *credential,
               size_t credential_len, uint64_t now, uint64_t max_ttl)
{
    return cred_check_padded(hash, secrets, nsecrets, username, username_len, credential,
                             credential_len, now, max_ttl, 0);
}

int cred_check_padded(enum cred_hash hash, const cred_secret_t *secrets, size_t nsecrets,
                      const char *username, size_t username_len, const char *credential,
                      size_t credential_len, uint64_t now, uint64_t max_ttl, size_t min_hmacs)
{
    static const uint8_t decoy_key[] = "sluice-decoy-secret";
    static const cred_secret_t decoy = {decoy_key, sizeof decoy_key - 1};
    uint64_t expiry;
    const char *user;
    size_t user_len;
    if (cred_parse_username(username, username_len, &expiry, &user, &user_len) != CRED_OK ||
        !b64_syntax_ok(credential, credential_len))
        return CRED_ERR_MALFORMED;

    /* Every secret is tried and compared in constant time, and the results
     * are OR-ed together, so the time taken does not say which secret
     * matched. Padding HMACs (i >= nsecrets) redo the work with the first
     * secret and never count. All of it happens before the expiry is judged,
     * so "too far ahead" costs what "wrong secret" costs. Only the credential
     * length (public: it follows from the hash) may short-cut a comparison. */
    size_t rounds = nsecrets > min_hmacs ? nsecrets : min_hmacs;
    char expected[CRED_B64_MAX + 1];
    unsigned match = 0;
    for (size_t i = 0; i < rounds; i++) {
        const cred_secret_t *s = i < nsecrets ? &secrets[i] : nsecrets ? &secrets[0] : &decoy;
        ssize_t n = cred_sign(hash, s->key, s->len, username, username_len, expected,
                              sizeof(expected));
        unsigned eq = n > 0 && (size_t)n == credential_len &&
                      CRYPTO_memcmp(expected, credential, credential_len) == 0;
        match |= eq & (i < nsecrets);
    }
    OPENSSL_cleanse(expected, sizeof(expected));
    if (expiry <= now)
        return CRED_ERR_EXPIRED;
    if (expiry - now > max_ttl) /* not now + max_ttl: that may wrap */
        return CRED_ERR_TOO_FAR;
    return match ? CRED_OK : CRED_ERR_MISMATCH;
}
