/*
 * fuzz_cred.c — proto/cred.c: parsing a tunnel-username and checking a
 * tunnel-credential against a tenant's secrets.
 *
 * Input: a hash byte, up to three secrets, a username, a credential, the time
 * and max_ttl, each taken from the input (fuzz_util.h), so the fuzzer
 * controls every field independently.
 *
 * Asserts, for every input:
 *   - cred_parse_username: on success the user part lies inside the username
 *     and the expiry is the decimal number before it;
 *   - cred_check on the fuzzed credential returns one of the documented
 *     results, the same as cred_check_padded with any min_hmacs, and CRED_OK
 *     only when the credential equals cred_sign(secret, username) for one of
 *     the secrets and the expiry is inside (now, now + max_ttl];
 *   - the credential cred_sign makes with each secret is accepted exactly when
 *     the username parses and the expiry is inside that window, and otherwise
 *     refused with the documented reason in the documented order (malformed,
 *     expired, too far);
 *   - the same credential with one character changed is never accepted.
 */
#include <stdint.h>
#include <string.h>

#include "../../proto/cred.h"
#include "../../proto/proto.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int expected(int parsed, uint64_t expiry, uint64_t now, uint64_t max_ttl)
{
    if (parsed != CRED_OK)
        return CRED_ERR_MALFORMED;
    if (expiry <= now)
        return CRED_ERR_EXPIRED;
    if (expiry - now > max_ttl)
        return CRED_ERR_TOO_FAR;
    return CRED_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    enum cred_hash hash = (fuzz_u8(&in) & 1) ? CRED_SHA256 : CRED_SHA1;
    cred_secret_t secrets[3];
    size_t nsecrets = fuzz_u8(&in) % 4;
    for (size_t i = 0; i < nsecrets; i++) {
        secrets[i].key = fuzz_bytes(&in, fuzz_u8(&in) % 65, &secrets[i].len);
    }
    size_t ulen, clen;
    const char *username = (const char *)fuzz_bytes(&in, fuzz_u16(&in) % 300, &ulen);
    const char *credential = (const char *)fuzz_bytes(&in, fuzz_u8(&in) % 64, &clen);
    uint64_t now = (uint64_t)fuzz_u16(&in) << 16 | fuzz_u16(&in);
    now = now * 1000u; /* up to ~4e12: around and far beyond today's 1.7e9 */
    uint64_t max_ttl = (uint64_t)fuzz_u16(&in) * 60u;
    size_t min_hmacs = fuzz_u8(&in) % 6;

    uint64_t expiry = 0;
    const char *user = NULL;
    size_t user_len = 0;
    int parsed = cred_parse_username(username, ulen, &expiry, &user, &user_len);
    FUZZ_ASSERT(parsed == CRED_OK || parsed == CRED_ERR_MALFORMED);
    if (parsed == CRED_OK) {
        FUZZ_ASSERT(ulen > 0 && ulen <= CRED_USERNAME_MAX);
        FUZZ_ASSERT(user >= username && user + user_len == username + ulen);
        FUZZ_ASSERT(username[0] >= '0' && username[0] <= '9');
        uint64_t v = 0;
        const char *p = username;
        while (p < username + ulen && *p >= '0' && *p <= '9')
            v = v * 10 + (uint64_t)(*p++ - '0');
        FUZZ_ASSERT(v == expiry);
        if (p < username + ulen)
            FUZZ_ASSERT(*p == ':' && user == p + 1);
        else
            FUZZ_ASSERT(user == username + ulen && user_len == 0);
    }

    /* The fuzzed credential. */
    int rc = cred_check(hash, secrets, nsecrets, username, ulen, credential, clen, now, max_ttl);
    int rcp = cred_check_padded(hash, secrets, nsecrets, username, ulen, credential, clen, now,
                                max_ttl, min_hmacs);
    FUZZ_ASSERT(rc == rcp);
    FUZZ_ASSERT(rc <= 0 && rc >= CRED_ERR_MISMATCH);
    FUZZ_ASSERT(cred_strerror(rc) != NULL);
    if (parsed != CRED_OK)
        FUZZ_ASSERT(rc == CRED_ERR_MALFORMED);
    if (rc == CRED_OK) {
        int match = 0;
        for (size_t i = 0; i < nsecrets; i++) {
            char sig[CRED_B64_MAX + 1];
            ssize_t n = cred_sign(hash, secrets[i].key, secrets[i].len, username, ulen, sig,
                                  sizeof sig);
            match |= n == (ssize_t)clen && memcmp(sig, credential, clen) == 0;
        }
        FUZZ_ASSERT(match);
        FUZZ_ASSERT(expected(parsed, expiry, now, max_ttl) == CRED_OK);
    }

    /* The credential each secret makes, and the same with one character off. */
    for (size_t i = 0; i < nsecrets; i++) {
        char sig[CRED_B64_MAX + 1];
        ssize_t n = cred_sign(hash, secrets[i].key, secrets[i].len, username, ulen, sig,
                              sizeof sig);
        FUZZ_ASSERT(n == (hash == CRED_SHA256 ? 44 : 28) && sig[n] == '\0');
        char small[8];
        FUZZ_ASSERT(cred_sign(hash, secrets[i].key, secrets[i].len, username, ulen, small,
                              sizeof small) == PROTO_ERR_SPACE);
        int want = expected(parsed, expiry, now, max_ttl);
        rc = cred_check(hash, secrets, nsecrets, username, ulen, sig, (size_t)n, now, max_ttl);
        FUZZ_ASSERT(rc == want);
        size_t at = (size_t)fuzz_u8(&in) % (size_t)n;
        sig[at] = sig[at] == 'A' ? 'B' : 'A';
        rc = cred_check(hash, secrets, nsecrets, username, ulen, sig, (size_t)n, now, max_ttl);
        FUZZ_ASSERT(rc != CRED_OK);
    }
    return 0;
}
