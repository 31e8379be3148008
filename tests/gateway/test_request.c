/* test_request.c — request_route: statuses, their order, and no tenant enumeration. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/request.h"

#define NOW 1700000000ull

static config_t *cfg;

static void setup(void)
{
    static const char json[] =
        "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c\",\"key\":\"k\"},"
        "\"region\":\"eu\","
        "\"regions\":{\"eu\":{\"sfu\":[\"127.0.0.1:5000\"],\"turn\":[]},"
        "\"us\":{\"sfu\":[\"127.0.0.1:5001\"],\"turn\":[\"127.0.0.1:5002\"]},"
        "\"ap\":{\"sfu\":[\"127.0.0.1:5003\"]}},"
        "\"tenants\":["
        "{\"id\":\"acme\",\"secrets\":[\"old\",\"new\"],\"max_ttl\":3600,"
        "\"regions\":[\"eu\",\"us\"],\"kinds\":[\"sfu\",\"turn\"]},"
        "{\"id\":\"sfuonly\",\"secrets\":[\"s\"],\"regions\":[\"eu\"],\"kinds\":[\"sfu\"]},"
        "{\"id\":\"elsewhere\",\"secrets\":[\"s\"],\"regions\":[\"us\"]},"
        "{\"id\":\"strong\",\"secrets\":[\"k256\"],\"hash\":\"sha256\",\"regions\":[\"eu\"]}]}";
    char err[256];
    cfg = config_parse(json, sizeof json - 1, NULL, err, sizeof err);
    cr_assert(cfg, "%s", err);
}

static void teardown(void)
{
    config_unref(cfg);
}

TestSuite(request, .init = setup, .fini = teardown);

static void hdr(req_headers_t *h, const char *name, const char *value)
{
    request_add_header(h, (const uint8_t *)name, strlen(name), (const uint8_t *)value,
                       strlen(value));
}

/* A request with a valid credential for secret (hash) expiring at expiry. */
static void make(req_headers_t *h, const char *method, const char *path, const char *secret,
                 enum cred_hash hash, uint64_t expiry)
{
    memset(h, 0, sizeof *h);
    hdr(h, ":method", method);
    hdr(h, ":scheme", "https");
    hdr(h, ":path", path);
    char user[64], cred[CRED_B64_MAX + 1];
    snprintf(user, sizeof user, "%llu:alice", (unsigned long long)expiry);
    cr_assert(cred_sign(hash, (const uint8_t *)secret, strlen(secret), user, strlen(user), cred,
                        sizeof cred) > 0);
    hdr(h, "tunnel-username", user);
    hdr(h, "tunnel-credential", cred);
}

static int route(const req_headers_t *h, const char **reason, req_target_t *t)
{
    return request_route(cfg, h, NOW, t, reason);
}

Test(request, valid_request_routes_to_own_region)
{
    req_headers_t h;
    req_target_t t;
    const char *why;
    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 200, "%s", why);
    cr_assert_str_eq(t.tenant->id, "acme");
    cr_assert_str_eq(t.region->name, "eu");
    cr_assert_eq(t.kind, TUNNEL_KIND_SFU);
}

Test(request, rotated_secret_and_sha256_tenant)
{
    req_headers_t h;
    req_target_t t;
    const char *why;
    make(&h, "POST", "/v1/tunnel/acme/sfu", "old", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 200, "the older of two secrets still works");
    make(&h, "POST", "/v1/tunnel/strong/sfu", "k256", CRED_SHA256, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 200, "%s", why);
    make(&h, "POST", "/v1/tunnel/strong/sfu", "k256", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 401, "SHA-1 credential for a SHA-256 tenant");
}

Test(request, region_query_picks_another_region)
{
    req_headers_t h;
    req_target_t t;
    const char *why;
    make(&h, "POST", "/v1/tunnel/acme/turn?region=us", "new", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 200, "%s", why);
    cr_assert_str_eq(t.region->name, "us");
    cr_assert_eq(t.kind, TUNNEL_KIND_TURN);
    make(&h, "POST", "/v1/tunnel/acme/sfu?region=ap", "new", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 403, "acme is not enabled in ap");
    make(&h, "POST", "/v1/tunnel/acme/sfu?region=nowhere", "new", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 403);
}

Test(request, statuses)
{
    static const struct {
        const char *method, *path;
        int status;
    } cases[] = {
        {"POST", "/", 404},
        {"POST", "/v2/tunnel/acme/sfu", 404},
        {"POST", "/v1/tunnel/acme", 404},
        {"POST", "/v1/tunnel/acme/sfu/extra", 404},
        {"POST", "/v1/tunnel/acme/webrtc", 404},
        {"GET", "/v1/tunnel/acme/sfu", 405},
        {"PUT", "/v1/tunnel/acme/sfu", 405},
        {"POST", "/v1/tunnel//sfu", 400},
        {"POST", "/v1/tunnel/ac%20me/sfu", 400},
        {"POST", "/v1/tunnel/acme/sfu?colour=red", 400},
        {"POST", "/v1/tunnel/acme/sfu?region=", 400},
        {"POST", "/v1/tunnel/acme/sfu?region=e%75", 400},
        {"POST", "/v1/tunnel/sfuonly/turn", 403},
        {"POST", "/v1/tunnel/acme/turn", 503},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        req_headers_t h;
        req_target_t t;
        const char *why = NULL;
        const char *secret = strncmp(cases[i].path, "/v1/tunnel/sfuonly", 18) ? "new" : "s";
        make(&h, cases[i].method, cases[i].path, secret, CRED_SHA1, NOW + 60);
        int got = route(&h, &why, &t);
        cr_expect_eq(got, cases[i].status, "%s %s: got %d (%s), want %d", cases[i].method,
                     cases[i].path, got, why, cases[i].status);
        cr_expect(why && *why, "every status has a reason");
    }
}

Test(request, tenant_not_enabled_in_this_gateways_region)
{
    req_headers_t h;
    req_target_t t;
    const char *why;
    make(&h, "POST", "/v1/tunnel/elsewhere/sfu", "s", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 403);
    cr_assert(strstr(why, "region"), "%s", why);
}

Test(request, credential_failures_are_401)
{
    req_headers_t h;
    req_target_t t;
    const char *why;

    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW);
    cr_assert_eq(route(&h, &why, &t), 401, "expiry == now is expired");
    cr_assert_str_eq(why, "credential expired");
    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW + 3601);
    cr_assert_eq(route(&h, &why, &t), 401, "beyond max_ttl (3600)");
    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW + 3600);
    cr_assert_eq(route(&h, &why, &t), 200, "exactly max_ttl ahead is fine");
    make(&h, "POST", "/v1/tunnel/acme/sfu", "wrong", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &why, &t), 401);

    memset(&h, 0, sizeof h);
    hdr(&h, ":method", "POST");
    hdr(&h, ":scheme", "https");
    hdr(&h, ":path", "/v1/tunnel/acme/sfu");
    cr_assert_eq(route(&h, &why, &t), 401, "no credentials at all");
    hdr(&h, "tunnel-username", "soon:alice");
    hdr(&h, "tunnel-credential", "AAAA");
    cr_assert_eq(route(&h, &why, &t), 401, "malformed username");
}

Test(request, unknown_tenant_is_indistinguishable_from_wrong_secret)
{
    req_headers_t h;
    req_target_t t;
    const char *unknown, *wrong, *far_unknown, *far_known;
    make(&h, "POST", "/v1/tunnel/nosuchtenant/sfu", "new", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &unknown, &t), 401);
    make(&h, "POST", "/v1/tunnel/acme/sfu", "bad", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &wrong, &t), 401);
    cr_assert_str_eq(unknown, wrong);
    /* Even a credential too far ahead says nothing about the tenant. */
    make(&h, "POST", "/v1/tunnel/nosuchtenant/sfu", "new", CRED_SHA1, NOW + 999999);
    cr_assert_eq(route(&h, &far_unknown, &t), 401);
    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW + 999999);
    cr_assert_eq(route(&h, &far_known, &t), 401);
    cr_assert_str_eq(far_unknown, far_known);
    /* 403 is only ever given after the credential checks out. */
    make(&h, "POST", "/v1/tunnel/sfuonly/turn", "bad", CRED_SHA1, NOW + 60);
    cr_assert_eq(route(&h, &wrong, &t), 401);
}

Test(request, repeated_or_oversized_headers)
{
    req_headers_t h;
    req_target_t t;
    const char *why;
    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW + 60);
    hdr(&h, "tunnel-username", "1:x");
    cr_assert_eq(route(&h, &why, &t), 400, "a repeated credential header is malformed");

    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW + 60);
    char big[REQ_PATH_MAX + 10];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memset(&h, 0, sizeof h);
    hdr(&h, ":method", "POST");
    hdr(&h, ":path", big);
    cr_assert(h.too_long);
    cr_assert_eq(route(&h, &why, &t), 400);

    make(&h, "POST", "/v1/tunnel/acme/sfu", "new", CRED_SHA1, NOW + 60);
    h.scheme[0] = '\0';
    strcpy(h.scheme, "http");
    cr_assert_eq(route(&h, &why, &t), 400, ":scheme http is refused");
}
