/*
 * cred.h — ephemeral credentials, TURN REST API style
 * (draft-uberti-behave-turn-rest-00 §2.2).
 *
 *   username   = <expiry unix seconds> [ ":" <user id> ]
 *   credential = base64( HMAC(secret, username) )   -- RFC 4648 §4, padded
 *
 * HMAC-SHA1 by default, HMAC-SHA256 where the tenant's config says so. The
 * HMAC comes from libcrypto's one-shot HMAC(): a pure function, no I/O and no
 * state of ours, so proto/ stays a pure codec layer (see proto/README.md).
 */
#ifndef SLUICE_CRED_H
#define SLUICE_CRED_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

enum cred_hash {
    CRED_SHA1 = 0,
    CRED_SHA256 = 1,
};

enum cred_result {
    CRED_OK = 0,
    CRED_ERR_MALFORMED = -1, /* username not "<digits>[:user]" or credential not base64 */
    CRED_ERR_EXPIRED = -2,   /* expiry <= now */
    CRED_ERR_TOO_FAR = -3,   /* expiry > now + max_ttl */
    CRED_ERR_MISMATCH = -4,  /* no secret produces this credential */
};

#define CRED_USERNAME_MAX 256u
/* base64 of a SHA-256 digest (32 bytes) is 44 characters. */
#define CRED_B64_MAX 44u

typedef struct cred_secret {
    const uint8_t *key;
    size_t len;
} cred_secret_t;

/* Static description of a cred_result. */
const char *cred_strerror(int rc);

/* Parses username into its expiry and user id (user id may be empty; it points
 * into username). Returns CRED_OK or CRED_ERR_MALFORMED (empty, too long,
 * non-digit or overflowing expiry, control characters). */
int cred_parse_username(const char *username, size_t len, uint64_t *expiry,
                        const char **user, size_t *user_len);

/* Writes base64(HMAC(secret, username)) into out, NUL-terminated (cap must
 * hold the encoding and the NUL; CRED_B64_MAX + 1 always does). Returns its
 * length, PROTO_ERR_SPACE when cap is too small, or PROTO_ERR_RANGE for an
 * unknown hash, a secret over INT_MAX bytes or an HMAC failure. */
ssize_t cred_sign(enum cred_hash hash, const uint8_t *secret, size_t secret_len,
                  const char *username, size_t username_len, char *out, size_t cap);

/* Checks a username/credential pair at time now against every secret (rotation:
 * any one may match). Timing does not depend on which secret matched or on
 * where the credential differs. Returns CRED_OK or a negative cred_result,
 * judged in this order: malformed, expired, too far ahead, mismatch.
 * Same as cred_check_padded with min_hmacs 0. */
int cred_check(enum cred_hash hash, const cred_secret_t *secrets, size_t nsecrets,
               const char *username, size_t username_len, const char *credential,
               size_t credential_len, uint64_t now, uint64_t max_ttl);

/* cred_check, computing at least min_hmacs HMACs (the extra ones with the
 * first secret, results discarded) and computing them before the expiry and
 * max_ttl are judged. Once the username and credential parse, the time taken
 * therefore depends only on max(nsecrets, min_hmacs), the hash and the
 * lengths: a caller that passes the same min_hmacs for every tenant (the most
 * secrets any tenant has), and a decoy secret for an unknown tenant, answers
 * in the same time whether the tenant exists, how many secrets it has, and
 * whether the expiry is too far ahead. nsecrets may be 0 (nothing matches; a
 * built-in decoy key does the work). Results as cred_check. */
int cred_check_padded(enum cred_hash hash, const cred_secret_t *secrets, size_t nsecrets,
                      const char *username, size_t username_len, const char *credential,
                      size_t credential_len, uint64_t now, uint64_t max_ttl, size_t min_hmacs);

#endif
