/*
 * test_cred.c — proto/cred.c: TURN REST API style credentials.
 *
 * Known answers were computed outside this code, e.g.
 *   printf '%s' '1700000000:alice' | openssl dgst -sha1 -hmac sluice-test-secret -binary | base64
 * (and -sha256); the "README" ones are printed in proto/README.md §9.3.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "../../proto/cred.h"
#include "../../proto/proto.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define SECRET(s) {(const uint8_t *)(s), sizeof(s) - 1}

static const char USER[] = "1700000000:alice";
static const uint64_t EXPIRY = 1700000000;
static const uint64_t TTL = 86400;

/* README */
static const char SHA1_ALICE[] = "QJjVzy6hQ6LrFjiQB7BTji5igzY=";
static const char SHA256_ALICE[] = "zn/F07W7zO4Sz+IypOBhe8EG+/cGFT31fFZd4uweoa0=";

struct kav {
    enum cred_hash hash;
    const char *secret;
    size_t secret_len;
    const char *username;
    const char *want;
};

static const struct kav KAVS[] = {
    {CRED_SHA1, "sluice-test-secret", 18, "1700000000:alice", SHA1_ALICE},
    {CRED_SHA256, "sluice-test-secret", 18, "1700000000:alice", SHA256_ALICE},
    {CRED_SHA1, "sluice-test-secret", 18, "1700000000", "X9rU3DQGeJ0MiM7kAtfRs6C60xA="},
    {CRED_SHA256, "sluice-test-secret", 18, "1700000000",
     "Tewk5DKNYvdNbP9ZQUtIKS7Cy8aOG4WCfOU5lqUKBPQ="},
    {CRED_SHA1, "rotated-secret-1", 16, "1700000000:alice", "AT4nOXlhVM+REVQaTM3YY1XCkpw="},
    {CRED_SHA1, "rotated-secret-2", 16, "1700000000:alice", "YRFDawKHq5/Sxmvimw4IsB4rFIo="},
    {CRED_SHA1, "rotated-secret-3", 16, "1700000000:alice", "ewB1mKNNQf7VHBSvfPkb6X2Vo9g="},
    {CRED_SHA256, "rotated-secret-2", 16, "1700000000:alice",
     "THzlORTlvzTRW5FBbUCgQyZxknKG5ruv7N1bNcjlMKI="},
    /* A binary key with a NUL: the length counts, not strlen
     * (openssl dgst -sha1 -mac HMAC -macopt hexkey:6162006364). */
    {CRED_SHA1, "ab\0cd", 5, "1700000000:alice", "U0mtCpAV9yPVjlJUbOLH/ReMEU0="},
    /* Empty key and message (openssl mac -digest SHA1 -macopt hexkey:00 HMAC:
     * a one-zero-byte key pads to the same block as the empty key). */
    {CRED_SHA1, "", 0, "", "+9sdGxiqbAgyS31ktx+3Y3BpDh0="},
};

/* ---- cred_sign ---------------------------------------------------------- */

Test(cred, sign_known_answers)
{
    for (size_t i = 0; i < NELEM(KAVS); i++) {
        const struct kav *k = &KAVS[i];
        char out[CRED_B64_MAX + 1 + 8];
        memset(out, 'Z', sizeof(out));
        ssize_t n = cred_sign(k->hash, (const uint8_t *)k->secret, k->secret_len, k->username,
                              strlen(k->username), out, sizeof(out));
        cr_assert_eq(n, (ssize_t)strlen(k->want), "kav %zu", i);
        cr_assert_str_eq(out, k->want, "kav %zu", i);
        cr_assert_eq(out[n + 1], 'Z', "kav %zu: wrote past the NUL", i);
    }
}

Test(cred, sign_lengths)
{
    char out[CRED_B64_MAX + 1];
    const uint8_t *key = (const uint8_t *)"k";
    cr_assert_eq(cred_sign(CRED_SHA1, key, 1, USER, strlen(USER), out, sizeof(out)), 28);
    cr_assert_eq(cred_sign(CRED_SHA256, key, 1, USER, strlen(USER), out, sizeof(out)),
                 (ssize_t)CRED_B64_MAX);
    cr_assert_eq(strlen(out), CRED_B64_MAX);
    /* Long secrets (longer than the hash block) and NULL with length 0. */
    uint8_t longkey[200];
    memset(longkey, 0x5c, sizeof(longkey));
    cr_assert_eq(cred_sign(CRED_SHA256, longkey, sizeof(longkey), USER, strlen(USER), out,
                           sizeof(out)),
                 44);
    cr_assert_eq(cred_sign(CRED_SHA1, NULL, 0, NULL, 0, out, sizeof(out)), 28);
    cr_assert_str_eq(out, "+9sdGxiqbAgyS31ktx+3Y3BpDh0=");
}

Test(cred, sign_space)
{
    /* Base64 + NUL: 29 bytes for SHA-1, 45 for SHA-256. Anything smaller is
     * SPACE and nothing is written. */
    const struct {
        enum cred_hash hash;
        size_t need;
    } cases[] = {{CRED_SHA1, 29}, {CRED_SHA256, CRED_B64_MAX + 1}};
    const uint8_t *key = (const uint8_t *)"sluice-test-secret";
    for (size_t i = 0; i < NELEM(cases); i++) {
        char out[64];
        for (size_t cap = 0; cap < cases[i].need; cap++) {
            memset(out, 'Z', sizeof(out));
            cr_assert_eq(cred_sign(cases[i].hash, key, 18, USER, strlen(USER), out, cap),
                         PROTO_ERR_SPACE, "hash %d cap %zu", cases[i].hash, cap);
            for (size_t k = 0; k < sizeof(out); k++)
                cr_assert_eq(out[k], 'Z');
        }
        memset(out, 'Z', sizeof(out));
        cr_assert_eq(cred_sign(cases[i].hash, key, 18, USER, strlen(USER), out, cases[i].need),
                     (ssize_t)cases[i].need - 1);
        cr_assert_str_eq(out, cases[i].hash == CRED_SHA1 ? SHA1_ALICE : SHA256_ALICE);
    }
}

Test(cred, sign_bad_hash)
{
    char out[CRED_B64_MAX + 1];
    cr_assert_eq(cred_sign((enum cred_hash)7, (const uint8_t *)"k", 1, USER, strlen(USER), out,
                           sizeof(out)),
                 PROTO_ERR_RANGE);
}

/* ---- cred_parse_username ------------------------------------------------ */

static void parse_ok(const char *u, size_t len, uint64_t want_expiry, const char *want_user)
{
    uint64_t expiry = 0;
    const char *user = NULL;
    size_t user_len = 99;
    cr_assert_eq(cred_parse_username(u, len, &expiry, &user, &user_len), CRED_OK, "'%s'", u);
    cr_assert_eq(expiry, want_expiry, "'%s'", u);
    cr_assert_eq(user_len, strlen(want_user), "'%s'", u);
    cr_assert_arr_eq(user, want_user, user_len, "'%s'", u);
    /* The user id points into the username. */
    cr_assert(user >= u && user + user_len <= u + len, "'%s'", u);
}

Test(cred, parse_good)
{
    parse_ok("1700000000:alice", 16, 1700000000, "alice");
    parse_ok("1700000000", 10, 1700000000, "");
    parse_ok("1700000000:", 11, 1700000000, "");
    parse_ok("1", 1, 1, "");
    parse_ok("0", 1, 0, "");
    parse_ok("0001:x", 6, 1, "x");
    parse_ok("9999999999999999999", 19, 9999999999999999999ULL, "");
    parse_ok("42:a:b:c", 8, 42, "a:b:c");
    parse_ok("42:user@example.com", 19, 42, "user@example.com");
    parse_ok("42:caf\xc3\xa9", 8, 42, "caf\xc3\xa9"); /* bytes >= 0x80 are not control */
    parse_ok("42: spaced ~", 12, 42, " spaced ~");

    /* Exactly CRED_USERNAME_MAX long. */
    char u[CRED_USERNAME_MAX + 1];
    memset(u, 'x', sizeof(u));
    memcpy(u, "123:", 4);
    u[CRED_USERNAME_MAX] = '\0';
    parse_ok(u, CRED_USERNAME_MAX, 123, u + 4);
}

Test(cred, parse_bad)
{
    static const struct {
        const char *u;
        size_t len;
    } bad[] = {
        {"", 0},
        {":alice", 6},
        {"abc", 3},
        {"12a", 3},
        {"12a:x", 5},
        {"-1", 2},
        {"+1", 2},
        {" 1", 2},
        {"1 ", 2},
        {"1 :x", 4},
        {"0x10", 4},
        {"12345678901234567890", 20},      /* 20 digits */
        {"18446744073709551616", 20},      /* 2^64 */
        {"18446744073709551615", 20},      /* UINT64_MAX, but 20 digits */
        {"00000000000000000001", 20},      /* 20 digits, small value */
        {"1\x01", 2},
        {"1:al\x7f" "ice", 8},             /* DEL */
        {"\x7f", 1},
        {"1:\n", 3},
        {"1:alice\r", 8},
        {"1\t:x", 4},
        {"1\0", 2},                        /* embedded NUL */
        {"1:a\0b", 5},
        {"\x1f" "1", 2},
    };
    for (size_t i = 0; i < NELEM(bad); i++) {
        uint64_t expiry = 77;
        const char *user = NULL;
        size_t user_len = 99;
        cr_assert_eq(cred_parse_username(bad[i].u, bad[i].len, &expiry, &user, &user_len),
                     CRED_ERR_MALFORMED, "bad %zu", i);
        cr_assert_eq(expiry, 77);
        cr_assert_null(user);
        cr_assert_eq(user_len, 99);
    }

    /* One over CRED_USERNAME_MAX. */
    char u[CRED_USERNAME_MAX + 1];
    memset(u, 'x', sizeof(u));
    memcpy(u, "123:", 4);
    uint64_t expiry;
    const char *user;
    size_t user_len;
    cr_assert_eq(cred_parse_username(u, sizeof(u), &expiry, &user, &user_len),
                 CRED_ERR_MALFORMED);
}

/* ---- cred_check --------------------------------------------------------- */

static const cred_secret_t ONE[] = {SECRET("sluice-test-secret")};
static const cred_secret_t ROTATION[] = {
    SECRET("rotated-secret-1"), SECRET("rotated-secret-2"), SECRET("rotated-secret-3")};

static int check(enum cred_hash hash, const cred_secret_t *s, size_t ns, const char *user,
                 const char *cred, uint64_t now, uint64_t ttl)
{
    return cred_check(hash, s, ns, user, strlen(user), cred, strlen(cred), now, ttl);
}

Test(cred, check_valid)
{
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY - 1, TTL), CRED_OK);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY - 3600, TTL), CRED_OK);
    /* Exactly max_ttl ahead is allowed. */
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY - TTL, TTL), CRED_OK);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, "1700000000", "X9rU3DQGeJ0MiM7kAtfRs6C60xA=",
                       EXPIRY - 1, TTL),
                 CRED_OK);
}

Test(cred, check_expired)
{
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY, TTL), CRED_ERR_EXPIRED);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY + 1, TTL), CRED_ERR_EXPIRED);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, UINT64_MAX, TTL), CRED_ERR_EXPIRED);
    /* Expiry is judged before the match: a wrong credential still says expired. */
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA256_ALICE, EXPIRY, TTL), CRED_ERR_EXPIRED);
}

Test(cred, check_too_far)
{
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY - TTL - 1, TTL),
                 CRED_ERR_TOO_FAR);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, 0, TTL), CRED_ERR_TOO_FAR);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY - 1, 0), CRED_ERR_TOO_FAR);
    /* now + max_ttl would wrap to a small number; it must not. */
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, 1, UINT64_MAX), CRED_OK);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA1_ALICE, EXPIRY - 1, UINT64_MAX - 5),
                 CRED_OK);
    /* Judged before the match, too. */
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA256_ALICE, 0, TTL), CRED_ERR_TOO_FAR);
}

Test(cred, check_wrong_secret)
{
    const cred_secret_t other[] = {SECRET("sluice-test-secreT")};
    cr_assert_eq(check(CRED_SHA1, other, 1, USER, SHA1_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
    /* Same secret, different username (expiry or user id changed). */
    cr_assert_eq(check(CRED_SHA1, ONE, 1, "1700000000:alicf", SHA1_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, "1700000001:alice", SHA1_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
    /* No secrets at all. */
    cr_assert_eq(check(CRED_SHA1, NULL, 0, USER, SHA1_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
    /* A secret that is a prefix of the right one. */
    const cred_secret_t prefix[] = {{(const uint8_t *)"sluice-test-secret", 17}};
    cr_assert_eq(check(CRED_SHA1, prefix, 1, USER, SHA1_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
}

Test(cred, check_every_position_differs)
{
    /* A credential that differs in any one character does not match. */
    char c[sizeof(SHA1_ALICE)];
    for (size_t i = 0; i < strlen(SHA1_ALICE) - 1; i++) { /* last char is '=' */
        memcpy(c, SHA1_ALICE, sizeof(c));
        c[i] = c[i] == 'A' ? 'B' : 'A';
        cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, c, EXPIRY - 1, TTL), CRED_ERR_MISMATCH,
                     "position %zu", i);
    }
}

Test(cred, check_rotation)
{
    /* Each of the three secrets alone and in the set; the 2nd of 3 matches. */
    const char *creds[] = {"AT4nOXlhVM+REVQaTM3YY1XCkpw=", "YRFDawKHq5/Sxmvimw4IsB4rFIo=",
                           "ewB1mKNNQf7VHBSvfPkb6X2Vo9g="};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(check(CRED_SHA1, ROTATION, 3, USER, creds[i], EXPIRY - 1, TTL), CRED_OK);
        cr_assert_eq(check(CRED_SHA1, &ROTATION[i], 1, USER, creds[i], EXPIRY - 1, TTL),
                     CRED_OK);
    }
    cr_assert_eq(check(CRED_SHA1, ROTATION, 3, USER, SHA1_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
    /* Rotation out: the set without the 2nd secret refuses its credential. */
    const cred_secret_t without[] = {ROTATION[0], ROTATION[2]};
    cr_assert_eq(check(CRED_SHA1, without, 2, USER, creds[1], EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
    /* SHA-256 with rotation. */
    cr_assert_eq(check(CRED_SHA256, ROTATION, 3, USER,
                       "THzlORTlvzTRW5FBbUCgQyZxknKG5ruv7N1bNcjlMKI=", EXPIRY - 1, TTL),
                 CRED_OK);
}

/* Padding changes the work, never the result. */
Test(cred, check_padded_same_results)
{
    static const struct {
        const cred_secret_t *s;
        size_t ns;
        const char *user, *cred;
        uint64_t now, ttl;
    } cases[] = {
        {ONE, 1, USER, SHA1_ALICE, EXPIRY - 1, TTL},                   /* ok */
        {ONE, 1, USER, SHA1_ALICE, EXPIRY, TTL},                       /* expired */
        {ONE, 1, USER, SHA1_ALICE, 0, TTL},                            /* too far */
        {ONE, 1, USER, SHA256_ALICE, EXPIRY - 1, TTL},                 /* mismatch */
        {ONE, 1, "x", SHA1_ALICE, EXPIRY - 1, TTL},                    /* malformed */
        {ROTATION, 3, USER, "YRFDawKHq5/Sxmvimw4IsB4rFIo=", EXPIRY - 1, TTL}, /* 2nd of 3 */
        {ROTATION, 3, USER, SHA1_ALICE, EXPIRY - 1, TTL},              /* none of 3 */
        {NULL, 0, USER, SHA1_ALICE, EXPIRY - 1, TTL},                  /* no secrets */
        {NULL, 0, USER, SHA1_ALICE, 0, 0},                             /* unknown tenant, far */
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        int want = check(CRED_SHA1, cases[i].s, cases[i].ns, cases[i].user, cases[i].cred,
                         cases[i].now, cases[i].ttl);
        for (size_t pad = 0; pad <= 6; pad++) {
            int got = cred_check_padded(CRED_SHA1, cases[i].s, cases[i].ns, cases[i].user,
                                        strlen(cases[i].user), cases[i].cred,
                                        strlen(cases[i].cred), cases[i].now, cases[i].ttl, pad);
            cr_assert_eq(got, want, "case %zu, min_hmacs %zu: %s, want %s", i, pad,
                         cred_strerror(got), cred_strerror(want));
        }
    }
    /* With no secrets the padding runs on cred.c's built-in decoy key: even a
     * credential made with that key matches nothing. */
    static const char decoy[] = "sluice-decoy-secret";
    char forged[CRED_B64_MAX + 1];
    cr_assert_gt(cred_sign(CRED_SHA1, (const uint8_t *)decoy, sizeof decoy - 1, USER,
                           strlen(USER), forged, sizeof forged),
                 0);
    for (size_t pad = 0; pad <= 3; pad++)
        cr_assert_eq(cred_check_padded(CRED_SHA1, NULL, 0, USER, strlen(USER), forged,
                                       strlen(forged), EXPIRY - 1, TTL, pad),
                     CRED_ERR_MISMATCH, "min_hmacs %zu", pad);
}

Test(cred, check_sha256_tenant)
{
    cr_assert_eq(check(CRED_SHA256, ONE, 1, USER, SHA256_ALICE, EXPIRY - 1, TTL), CRED_OK);
    /* The hash is the tenant's: each credential only for its own hash. */
    cr_assert_eq(check(CRED_SHA256, ONE, 1, USER, SHA1_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
    cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, SHA256_ALICE, EXPIRY - 1, TTL),
                 CRED_ERR_MISMATCH);
}

Test(cred, check_wrong_length)
{
    /* Well-formed base64 of the wrong length: no match. */
    const char *wrong[] = {
        "QJjVzy6hQ6LrFjiQB7BTji5i",                     /* truncated by 4 */
        "QJjVzy6hQ6LrFjiQB7BTji5igzYAAAAA",             /* 32 characters */
        "QJjV",
        "zn/F07W7zO4Sz+IypOBhe8EG+/cGFT31fFZd4uweoa0=", /* SHA-256 to a SHA-1 tenant */
    };
    for (size_t i = 0; i < NELEM(wrong); i++)
        cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, wrong[i], EXPIRY - 1, TTL),
                     CRED_ERR_MISMATCH, "wrong %zu", i);
    /* A prefix of the right credential is not accepted, at any length. */
    for (size_t n = 0; n < strlen(SHA1_ALICE); n++)
        cr_assert_neq(cred_check(CRED_SHA1, ONE, 1, USER, strlen(USER), SHA1_ALICE, n,
                                 EXPIRY - 1, TTL),
                      CRED_OK, "prefix %zu", n);
}

Test(cred, check_malformed)
{
    /* Malformed usernames, with the right-looking credential. */
    const char *users[] = {"", "abc", ":alice", "1700000000:al\x01ice",
                           "17000000000000000000:alice"};
    for (size_t i = 0; i < NELEM(users); i++)
        cr_assert_eq(check(CRED_SHA1, ONE, 1, users[i], SHA1_ALICE, EXPIRY - 1, TTL),
                     CRED_ERR_MALFORMED, "user %zu", i);
    /* Malformed before expired: a bad username is never "expired". */
    cr_assert_eq(check(CRED_SHA1, ONE, 1, "x", SHA1_ALICE, UINT64_MAX, TTL), CRED_ERR_MALFORMED);

    /* Credentials that are not padded base64. */
    const char *creds[] = {
        "",
        "QJjVzy6hQ6LrFjiQB7BTji5igzY",   /* padding missing */
        "QJjVzy6hQ6LrFjiQB7BTji5igzY==", /* length not a multiple of 4 */
        "QJjVzy6hQ6LrFjiQB7BTji5ig=Y=",  /* '=' inside */
        "QJjVzy6hQ6LrFjiQB7BTji5igzY!",
        "QJjVzy6hQ6LrFjiQB7BTji5i zY=",
        "QJjVzy6hQ6LrFjiQB7BTji5i-_Y=", /* base64url alphabet */
        "====",
        "A===",
    };
    for (size_t i = 0; i < NELEM(creds); i++)
        cr_assert_eq(check(CRED_SHA1, ONE, 1, USER, creds[i], EXPIRY - 1, TTL),
                     CRED_ERR_MALFORMED, "cred %zu", i);
    /* A NUL inside the credential. */
    cr_assert_eq(cred_check(CRED_SHA1, ONE, 1, USER, strlen(USER), "QJjV\0y6h", 8, EXPIRY - 1,
                            TTL),
                 CRED_ERR_MALFORMED);
}

Test(cred, strerror_names)
{
    cr_assert_str_eq(cred_strerror(CRED_OK), "ok");
    const int codes[] = {CRED_ERR_MALFORMED, CRED_ERR_EXPIRED, CRED_ERR_TOO_FAR,
                         CRED_ERR_MISMATCH};
    for (size_t i = 0; i < NELEM(codes); i++) {
        cr_assert_str_neq(cred_strerror(codes[i]), "ok");
        cr_assert_str_neq(cred_strerror(codes[i]), "unknown error");
        for (size_t j = i + 1; j < NELEM(codes); j++)
            cr_assert_str_neq(cred_strerror(codes[i]), cred_strerror(codes[j]));
    }
    cr_assert_str_eq(cred_strerror(-99), "unknown error");
}

/* proto/README.md §9.3 prints the raw HMACs next to the credentials: they must
 * agree (base64 computed here with libcrypto, independently of cred.c). */
static void hex_to_b64(const char *hex, char *out)
{
    unsigned char raw[32];
    size_t n = strlen(hex) / 2;
    cr_assert_leq(n, sizeof(raw));
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        raw[i] = (unsigned char)v;
    }
    EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
}

Test(cred, readme_vector)
{
    char b64[64];
    hex_to_b64("4098d5cf2ea143a2eb16389007b0538e2e628336", b64);
    cr_assert_str_eq(b64, SHA1_ALICE);
    hex_to_b64("ce7fc5d3b5bbccee12cfe232a4e0617bc106fbf706153df57c565de2ec1ea1ad", b64);
    cr_assert_str_eq(b64, SHA256_ALICE);
    /* And the request example in README §2 uses this pair. */
    cr_assert_eq(check(CRED_SHA1, ONE, 1, "1700000000:alice", "QJjVzy6hQ6LrFjiQB7BTji5igzY=",
                       1699999999, 86400),
                 CRED_OK);
}
