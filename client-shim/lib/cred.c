/*
 * cred.c — sluice_cred_mint: TURN REST API style credentials
 * (draft-uberti-behave-turn-rest-00 §2.2), signed by proto/cred.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/cred.h"
#include "sluice_shim.h"

int sluice_cred_mint(sluice_hash_t hash, const char *secret, size_t secret_len,
                     uint64_t expiry, const char *user, char *username, size_t username_cap,
                     char *credential, size_t credential_cap)
{
    char sig[CRED_B64_MAX + 1];
    ssize_t n;
    int len;

    if (!secret || secret_len == 0 || expiry == 0 || !username || !credential ||
        (hash != SLUICE_HASH_SHA1 && hash != SLUICE_HASH_SHA256))
        return SLUICE_ERR_INVALID;
    if (user && *user) {
        for (const char *c = user; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return SLUICE_ERR_INVALID;
        len = snprintf(username, username_cap, "%" PRIu64 ":%s", expiry, user);
    } else {
        len = snprintf(username, username_cap, "%" PRIu64, expiry);
    }
    if (len < 0 || (size_t)len >= username_cap || (size_t)len > CRED_USERNAME_MAX)
        return SLUICE_ERR_INVALID;
    n = cred_sign(hash == SLUICE_HASH_SHA256 ? CRED_SHA256 : CRED_SHA1,
                  (const uint8_t *)secret, secret_len, username, (size_t)len, sig, sizeof(sig));
    if (n < 0 || (size_t)n >= credential_cap)
        return SLUICE_ERR_INVALID;
    memcpy(credential, sig, (size_t)n + 1);
    return SLUICE_OK;
}
