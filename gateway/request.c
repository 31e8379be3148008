/* request.c — see request.h. */
#include "request.h"

#include <string.h>

#include "../proto/name.h"

static const struct {
    const char *name;
    size_t len;
    size_t off;
    size_t cap;
} fields[REQ_FIELD_COUNT] = {
    [REQ_METHOD] = {":method", 7, offsetof(req_headers_t, method), REQ_METHOD_MAX},
    [REQ_PATH] = {":path", 5, offsetof(req_headers_t, path), REQ_PATH_MAX},
    [REQ_SCHEME] = {":scheme", 7, offsetof(req_headers_t, scheme), 7},
    [REQ_USERNAME] = {"tunnel-username", 15, offsetof(req_headers_t, username),
                      REQ_USERNAME_MAX},
    [REQ_CREDENTIAL] = {"tunnel-credential", 17, offsetof(req_headers_t, credential),
                        REQ_CREDENTIAL_MAX},
    [REQ_RESUME] = {"tunnel-resume", 13, offsetof(req_headers_t, resume), TOKEN_TEXT_LEN},
    [REQ_FALLBACK] = {"tunnel-fallback", 15, offsetof(req_headers_t, fallback), REQ_REPORT_MAX},
    [REQ_ROUTE] = {"tunnel-route", 12, offsetof(req_headers_t, route), REQ_REPORT_MAX},
    [REQ_STAMPS] = {"tunnel-stamps", 13, offsetof(req_headers_t, stamps), REQ_STAMPS_MAX},
};

void request_add_header(req_headers_t *h, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen)
{
    for (int i = 0; i < REQ_FIELD_COUNT; i++) {
        if (namelen != fields[i].len || memcmp(name, fields[i].name, namelen) != 0)
            continue;
        unsigned bit = 1u << i;
        if (h->present & bit)
            h->repeated |= bit;
        h->present |= bit;
        if (valuelen > fields[i].cap) {
            h->too_long |= bit;
            return;
        }
        char *dst = (char *)h + fields[i].off;
        memcpy(dst, value, valuelen);
        dst[valuelen] = '\0';
        return;
    }
}

typedef struct span {
    const char *p;
    size_t len;
} span_t;

/* Splits "/v1/tunnel/{tenant}/{kind}[?query]". Returns 0 when the path has that
 * shape (segments may still be invalid), -1 otherwise. */
static int split_path(const char *path, span_t *tenant, span_t *kind, span_t *query)
{
    static const char prefix[] = "/v1/tunnel/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return -1;
    const char *p = path + sizeof prefix - 1;
    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (!slash || memchr(slash + 1, '/', (size_t)(end - slash - 1)))
        return -1;
    *tenant = (span_t){p, (size_t)(slash - p)};
    *kind = (span_t){slash + 1, (size_t)(end - slash - 1)};
    *query = q ? (span_t){q + 1, strlen(q + 1)} : (span_t){NULL, 0};
    return 0;
}

/* The only query parameter is region=<name>. Returns 0 (region stays empty
 * when there is no query) or -1 when the query is malformed or names
 * anything else; a '?' with nothing after it is malformed too. */
static int parse_query(span_t query, span_t *region)
{
    *region = (span_t){NULL, 0};
    if (!query.p)
        return 0;
    static const char key[] = "region=";
    if (query.len < sizeof key - 1 || memcmp(query.p, key, sizeof key - 1) != 0)
        return -1;
    *region = (span_t){query.p + sizeof key - 1, query.len - (sizeof key - 1)};
    return name_valid(region->p, region->len) ? 0 : -1;
}

#define REJECT(status, text)                                                                   \
    do {                                                                                       \
        *reason = (text);                                                                      \
        return (status);                                                                       \
    } while (0)

#define REJECT_AUTH(why, text)                                                                 \
    do {                                                                                       \
        *auth = (why);                                                                         \
        REJECT(401, text);                                                                     \
    } while (0)

/* Values are matched against the label names themselves, so the wire list
 * and the metric's label values cannot drift apart; "none" and "other" are
 * labels, not wire values. */
enum fallback request_fallback_parse(const char *value)
{
    for (int f = FALLBACK_FORCED; f < FALLBACK_COUNT; f++)
        if (strcmp(value, fallback_name((enum fallback)f)) == 0)
            return (enum fallback)f;
    return FALLBACK_OTHER;
}

enum route request_route_parse(const char *value)
{
    for (int r = ROUTE_DIRECT; r < ROUTE_COUNT; r++)
        if (strcmp(value, route_name((enum route)r)) == 0)
            return (enum route)r;
    return ROUTE_OTHER;
}

/* A report header: absent is NONE, anything unusable OTHER. */
static int report(const req_headers_t *h, enum req_field f, const char *value, int none,
                  int other, int (*parse)(const char *))
{
    unsigned bit = 1u << f;
    if (!(h->present & bit))
        return none;
    if ((h->too_long | h->repeated) & bit)
        return other;
    return parse(value);
}

static int parse_fallback(const char *v)
{
    return (int)request_fallback_parse(v);
}

static int parse_route(const char *v)
{
    return (int)request_route_parse(v);
}

int request_route(const config_t *cfg, const req_headers_t *h, uint64_t now,
                  req_target_t *target, const char **reason, enum auth_fail *auth)
{
    static const char bad_cred[] = "invalid credentials";
    /* Reports are counted and offers taken or not, never judged: repeating
     * them is not an error. */
    const unsigned reports = (1u << REQ_FALLBACK) | (1u << REQ_ROUTE) | (1u << REQ_STAMPS);
    *auth = AUTH_FAIL_NONE;
    span_t tenant_id, kind_name, query, region_name;

    if (!(h->present & (1u << REQ_PATH)) || (h->too_long & (1u << REQ_PATH)))
        REJECT(400, "missing or over-long :path");
    if (split_path(h->path, &tenant_id, &kind_name, &query) < 0)
        REJECT(404, "no such resource; tunnels are at /v1/tunnel/{tenant}/{sfu|turn}");
    int kind = config_kind_parse(kind_name.p, kind_name.len);
    if (kind < 0)
        REJECT(404, "unknown tunnel kind; use sfu or turn");
    if (strcmp(h->method, "POST") != 0)
        REJECT(405, "method not allowed; open a tunnel with POST");
    if (h->repeated & ~reports)
        REJECT(400, "request header repeated");
    if (strcmp(h->scheme, "https") != 0)
        REJECT(400, ":scheme must be https");
    if (!name_valid(tenant_id.p, tenant_id.len))
        REJECT(400, "malformed tenant id");
    if (parse_query(query, &region_name) < 0)
        REJECT(400, "malformed query; the only parameter is region=<name>");
    uint8_t token[TOKEN_BYTES];
    int resume = (h->present & (1u << REQ_RESUME)) != 0;
    if (resume && ((h->too_long & (1u << REQ_RESUME)) ||
                   token_decode(h->resume, strlen(h->resume), token) != 0))
        REJECT(400, "malformed tunnel-resume; expected 22 base64url characters");

    unsigned need = (1u << REQ_USERNAME) | (1u << REQ_CREDENTIAL);
    if ((h->present & need) != need)
        REJECT_AUTH(AUTH_FAIL_MISSING, "missing tunnel-username or tunnel-credential header");
    if (h->too_long & need)
        REJECT_AUTH(AUTH_FAIL_MALFORMED, bad_cred);
    uint64_t expiry;
    const char *user;
    size_t user_len;
    size_t ulen = strlen(h->username);
    if (cred_parse_username(h->username, ulen, &expiry, &user, &user_len) != CRED_OK)
        REJECT_AUTH(AUTH_FAIL_MALFORMED,
                    "malformed tunnel-username; expected <expiry-unix-seconds>[:<user-id>]");
    /* Expiry is judged before the tenant is looked up, so "expired" says
     * nothing about whether the tenant exists. */
    if (expiry <= now)
        REJECT_AUTH(AUTH_FAIL_EXPIRED, "credential expired");

    /* The same work whether the tenant exists or not, however many secrets it
     * has and however far ahead the expiry is: cfg->max_secrets HMACs, all
     * before expiry and max_ttl are judged. An unknown tenant gets no
     * secrets (a built-in decoy key does the work) and the most common hash. */
    const cfg_tenant_t *t = config_tenant(cfg, tenant_id.p, tenant_id.len);
    int rc = cred_check_padded(t ? t->hash : cfg->decoy_hash, t ? t->secrets : NULL,
                               t ? t->nsecrets : 0, h->username, ulen, h->credential,
                               strlen(h->credential), now, t ? t->max_ttl : 0, cfg->max_secrets);
    if (rc == CRED_ERR_MALFORMED) /* the credential is not base64 */
        REJECT_AUTH(AUTH_FAIL_MALFORMED, bad_cred);
    if (!t) /* the decoy's result (too far: max_ttl 0) says nothing */
        REJECT_AUTH(AUTH_FAIL_UNKNOWN_TENANT, bad_cred);
    if (rc == CRED_ERR_TOO_FAR)
        REJECT_AUTH(AUTH_FAIL_TOO_FAR, bad_cred);
    if (rc != CRED_OK)
        REJECT_AUTH(AUTH_FAIL_BAD_SIGNATURE, bad_cred);

    if (!(t->kinds & (1u << kind)))
        REJECT(403, "tunnel kind not allowed for this tenant");
    if (!config_tenant_in_region(t, cfg->region))
        REJECT(403, "tenant not enabled in this gateway's region");
    const cfg_region_t *region = config_region(cfg, cfg->region, strlen(cfg->region));
    if (region_name.len) {
        region = config_region(cfg, region_name.p, region_name.len);
        if (!region || !config_tenant_in_region(t, region->name))
            REJECT(403, "tenant not enabled in the requested region");
    }
    if (!region || region->pools[kind].n == 0)
        REJECT(503, "no backend for this tunnel kind in the region");

    target->tenant = t;
    target->region = region;
    target->kind = (enum tunnel_kind)kind;
    target->expiry = expiry;
    target->user = user;
    target->user_len = user_len;
    target->resume = resume;
    if (resume)
        memcpy(target->token, token, TOKEN_BYTES);
    target->fallback = (enum fallback)report(h, REQ_FALLBACK, h->fallback, FALLBACK_NONE,
                                             FALLBACK_OTHER, parse_fallback);
    target->route =
        (enum route)report(h, REQ_ROUTE, h->route, ROUTE_NONE, ROUTE_OTHER, parse_route);
    /* An offer, not a demand: any other value, or a repeated field, is no
     * offer (an RFC 8941 boolean true is "?1"). */
    target->stamps = (h->present & 1u << REQ_STAMPS) && !(h->repeated & 1u << REQ_STAMPS) &&
                     !(h->too_long & 1u << REQ_STAMPS) && strcmp(h->stamps, "?1") == 0;
    *reason = "ok";
    return 200;
}

int request_status_index(int status)
{
    switch (status) {
    case 400: return 0;
    case 401: return 1;
    case 403: return 2;
    case 404: return 3;
    case 405: return 4;
    case 503: return 5;
    case 410: return 6;
    case 429: return 7;
    case 421: return 8;
    default: return -1;
    }
}
