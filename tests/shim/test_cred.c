/*
 * test_cred.c — client-shim/lib/cred.c: sluice_cred_mint, checked with
 * proto's cred_check (what the gateway runs).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/cred.h"
#include "sluice_shim.h"

static const char secret[] = "dev-only-secret";

static void expect_valid(sluice_hash_t h, enum cred_hash ch, uint64_t expiry, const char *user,
                         const char *want_username)
{
    char u[256], c[64];
    cred_secret_t s = {(const uint8_t *)secret, strlen(secret)};

    cr_assert_eq(sluice_cred_mint(h, secret, strlen(secret), expiry, user, u, sizeof(u), c,
                                  sizeof(c)),
                 SLUICE_OK);
    cr_expect_str_eq(u, want_username);
    cr_expect_eq(cred_check(ch, &s, 1, u, strlen(u), c, strlen(c), expiry - 100, 3600), CRED_OK,
                 "the gateway's check rejects %s / %s", u, c);
    cr_expect_neq(cred_check(ch == CRED_SHA1 ? CRED_SHA256 : CRED_SHA1, &s, 1, u, strlen(u), c,
                             strlen(c), expiry - 100, 3600),
                  CRED_OK, "the other hash must not match");
}

Test(cred, minted_credentials_pass_the_gateway_check)
{
    expect_valid(SLUICE_HASH_SHA1, CRED_SHA1, 1700000000, NULL, "1700000000");
    expect_valid(SLUICE_HASH_SHA1, CRED_SHA1, 1700000000, "", "1700000000");
    expect_valid(SLUICE_HASH_SHA1, CRED_SHA1, 1700000000, "alice", "1700000000:alice");
    expect_valid(SLUICE_HASH_SHA256, CRED_SHA256, 1800000000, "bob", "1800000000:bob");
}

Test(cred, sha1_credential_is_28_base64_chars_and_sha256_44)
{
    char u[256], c[64];
    cr_assert_eq(sluice_cred_mint(SLUICE_HASH_SHA1, "k", 1, 1, "x", u, sizeof(u), c, sizeof(c)), 0);
    cr_expect_eq(strlen(c), 28);
    cr_assert_eq(sluice_cred_mint(SLUICE_HASH_SHA256, "k", 1, 1, "x", u, sizeof(u), c, sizeof(c)),
                 0);
    cr_expect_eq(strlen(c), 44);
}

Test(cred, refuses_bad_input_and_small_buffers)
{
    char u[256], c[64];
    cr_expect_eq(sluice_cred_mint(SLUICE_HASH_SHA1, NULL, 0, 1, NULL, u, sizeof(u), c, sizeof(c)),
                 SLUICE_ERR_INVALID);
    cr_expect_eq(sluice_cred_mint(SLUICE_HASH_SHA1, "k", 0, 1, NULL, u, sizeof(u), c, sizeof(c)),
                 SLUICE_ERR_INVALID, "empty secret");
    cr_expect_eq(sluice_cred_mint(SLUICE_HASH_SHA1, "k", 1, 0, NULL, u, sizeof(u), c, sizeof(c)),
                 SLUICE_ERR_INVALID, "zero expiry");
    cr_expect_eq(sluice_cred_mint(SLUICE_HASH_SHA1, "k", 1, 1, "a\nb", u, sizeof(u), c,
                                  sizeof(c)),
                 SLUICE_ERR_INVALID, "control character in user");
    cr_expect_eq(sluice_cred_mint((sluice_hash_t)7, "k", 1, 1, NULL, u, sizeof(u), c, sizeof(c)),
                 SLUICE_ERR_INVALID, "unknown hash");
    cr_expect_eq(sluice_cred_mint(SLUICE_HASH_SHA1, "k", 1, 1700000000, NULL, u, 10, c,
                                  sizeof(c)),
                 SLUICE_ERR_INVALID, "username buffer too small");
    cr_expect_eq(sluice_cred_mint(SLUICE_HASH_SHA1, "k", 1, 1, NULL, u, sizeof(u), c, 28),
                 SLUICE_ERR_INVALID, "credential buffer too small");
    char longuser[300];
    memset(longuser, 'a', sizeof(longuser) - 1);
    longuser[sizeof(longuser) - 1] = '\0';
    cr_expect_eq(sluice_cred_mint(SLUICE_HASH_SHA1, "k", 1, 1, longuser, u, sizeof(u), c,
                                  sizeof(c)),
                 SLUICE_ERR_INVALID, "username longer than the protocol allows");
}
