/*
 * request.h — decide what to do with a tunnel request, with no I/O.
 *
 * The connection collects the few request headers it needs into req_headers_t
 * (bounded copies; nghttp2 has already validated HTTP/2 framing and header
 * syntax), then request_route() checks, in this order: path (404), method
 * (405), request syntax (400, a malformed tunnel-resume token included),
 * credentials (401), tenant permissions (403) and backend availability (503).
 * Whether a named session exists (410) is the tunnel's question, asked after
 * all of these. Unknown tenants, wrong secrets and credentials
 * too far ahead all get the same 401 reason, and the same credential work
 * (config_t.max_secrets HMACs, see cred_check_padded), so neither the response
 * nor its timing reveals which tenants exist or how many secrets they have.
 */
#ifndef SLUICE_REQUEST_H
#define SLUICE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "../proto/cred.h"
#include "../proto/token.h"
#include "config.h"
#include "counters.h"

#define REQ_PATH_MAX 512u
#define REQ_METHOD_MAX 16u
#define REQ_USERNAME_MAX CRED_USERNAME_MAX
#define REQ_CREDENTIAL_MAX 128u
#define REQ_REPORT_MAX 24u /* tunnel-fallback, tunnel-route: longer is "other" */
#define REQ_STAMPS_MAX 8u  /* tunnel-stamps: "?1"; anything else is no offer */

enum req_field {
    REQ_METHOD = 0,
    REQ_PATH,
    REQ_SCHEME,
    REQ_USERNAME,
    REQ_CREDENTIAL,
    REQ_RESUME,          /* tunnel-resume: a session token (proto/README.md §8.1) */
    REQ_FALLBACK,        /* tunnel-fallback: why the client took the tunnel (§2.1) */
    REQ_ROUTE,           /* tunnel-route: direct or through a proxy (§2.1) */
    REQ_STAMPS,          /* tunnel-stamps: ?1 offers stamped DATAGRAMs (§5.1.1) */
    REQ_FIELD_COUNT
};

typedef struct req_headers {
    char method[REQ_METHOD_MAX + 1];
    char path[REQ_PATH_MAX + 1];
    char scheme[8];
    char username[REQ_USERNAME_MAX + 1];
    char credential[REQ_CREDENTIAL_MAX + 1];
    char resume[TOKEN_TEXT_LEN + 1];
    char fallback[REQ_REPORT_MAX + 1];
    char route[REQ_REPORT_MAX + 1];
    char stamps[REQ_STAMPS_MAX + 1];
    unsigned present;   /* bit per req_field seen */
    unsigned too_long;  /* bit per req_field whose value did not fit */
    unsigned repeated;  /* bit per req_field seen more than once */
} req_headers_t;

/* Records one header if it is one we use (name/value as nghttp2 gives them).
 * Values that do not fit are marked too_long, not truncated silently. */
void request_add_header(req_headers_t *h, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen);

typedef struct req_target {
    const cfg_tenant_t *tenant;
    const cfg_region_t *region; /* backend region: the gateway's own or ?region= */
    enum tunnel_kind kind;
    uint64_t expiry;            /* the credential's expiry, unix seconds */
    const char *user;           /* the username's user part (may be empty), in h */
    size_t user_len;
    int resume;                 /* 1: tunnel-resume named the session in token */
    uint8_t token[TOKEN_BYTES];
    enum fallback fallback;     /* the client's report, for counting only */
    enum route route;
    int stamps;                 /* 1: the client offered stamps (tunnel-stamps: ?1) */
} req_target_t;

/* Returns the HTTP status: 200 with *target filled (its user points into h,
 * which must outlive it), or an error status with *reason set to a static,
 * human-readable sentence for the response body. *auth is the 401's cause
 * for operators (AUTH_FAIL_NONE for any other status); the body does not
 * tell an unknown tenant, a bad signature and an expiry too far ahead apart.
 * tunnel-fallback and tunnel-route never change the status: a repeated,
 * over-long or unknown value counts as "other", an absent one as "none". */
int request_route(const config_t *cfg, const req_headers_t *h, uint64_t now,
                  req_target_t *target, const char **reason, enum auth_fail *auth);

/* The fallback or route a header value names: a wire value from
 * proto/README.md §2.1, else FALLBACK_OTHER / ROUTE_OTHER. */
enum fallback request_fallback_parse(const char *value);
enum route request_route_parse(const char *value);

/* Index of an error status in server_counters_t.requests_rejected, or -1. */
int request_status_index(int status);

#endif
