/*
 * test_http_status.c — the gateway's HTTP/2 answers, seen by an independent
 * client (curl --http2, verifying the dev certificate).
 *
 * Every refusal must be HTTP/2 with a text/plain reason in the body. All
 * credential failures and an unknown tenant share one 401 body, so a client
 * cannot probe which tenants exist.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_http.h"
#include "../support/ts_pkt.h"
#include "../support/ts_util.h"

static ts_fixture_t fx;
static ts_http_resp_t resp[16];
static size_t nresp;
static ts_proc_t curl_proc;

static void teardown(void)
{
    for (size_t i = 0; i < nresp; i++)
        ts_http_resp_free(&resp[i]);
    ts_proc_dispose(&curl_proc);
    ts_fixture_teardown(&fx);
}

/* Every test ends by stopping the gateway: SIGTERM must give exit code 0
 * (under ASan, a leak or a sanitizer report makes it non-zero). */
static void stop_gateway(void)
{
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0,
                 "%s exited with code %d after SIGTERM, expected 0 (its stderr is above)", what,
                 code);
}

static void start_gateway(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0,
                 "sluiced did not print its ready line (its output is above)");
}

typedef struct cred {
    char username[CRED_USERNAME_MAX];
    char credential[CRED_B64_MAX + 1];
} cred_t;

static cred_t mint(enum cred_hash hash, const char *secret, int64_t ttl_s, const char *user)
{
    cred_t c;
    cr_assert_eq(ts_cred_mint(hash, secret, ttl_s, user, c.username, sizeof c.username,
                              c.credential, sizeof c.credential),
                 0, "cred_sign failed");
    return c;
}

/* One curl request; username/credential NULL leave that header out. The
 * response stays valid until the test ends. */
static ts_http_resp_t *request(const char *method, const char *path, const char *username,
                               const char *credential, const char *body_file, int max_time_s)
{
    char url[512], uh[CRED_USERNAME_MAX + 32], ch[CRED_B64_MAX + 64];
    cr_assert_lt(nresp, sizeof resp / sizeof resp[0]);
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, path, url, sizeof url), 0);
    ts_http_req_t q = {.url = url, .method = method, .body_file = body_file,
                       .max_time_s = max_time_s};
    size_t h = 0;
    if (username) {
        snprintf(uh, sizeof uh, "tunnel-username: %s", username);
        q.headers[h++] = uh;
    }
    if (credential) {
        snprintf(ch, sizeof ch, "tunnel-credential: %s", credential);
        q.headers[h++] = ch;
    }
    ts_http_resp_t *r = &resp[nresp++];
    cr_assert_eq(ts_http(&q, r), 0, "cannot run curl");
    return r;
}

static void expect_refusal(const char *label, const ts_http_resp_t *r, int status)
{
    cr_expect_eq(r->status, status, "%s: HTTP status %d, expected %d (curl exit %d, %s)", label,
                 r->status, status, r->curl_exit, r->err);
    cr_expect_str_eq(r->version, "2", "%s: HTTP version \"%s\", expected 2", label, r->version);
    cr_expect(strncmp(r->content_type, "text/plain", 10) == 0,
              "%s: content-type \"%s\", expected text/plain", label, r->content_type);
    cr_expect_gt(r->body_len, 0, "%s: empty body, expected a reason", label);
}

static ts_http_resp_t *refused(const char *label, const char *method, const char *path,
                               const cred_t *c, int status)
{
    ts_http_resp_t *r = request(method, path, c ? c->username : NULL,
                                c ? c->credential : NULL, NULL, 10);
    expect_refusal(label, r, status);
    return r;
}

Test(http_status, bad_request_400, .fini = teardown)
{
    start_gateway();
    cred_t ok = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    refused("bad region syntax (encoded space)", "POST", "/v1/tunnel/acme/sfu?region=a%20b", &ok,
            400);
    refused("bad region syntax (punctuation)", "POST", "/v1/tunnel/acme/sfu?region=bad!region", &ok,
            400);
    refused("empty tenant in path", "POST", "/v1/tunnel//sfu", &ok, 400);
    stop_gateway();
}

Test(http_status, malformed_username_is_refused, .fini = teardown)
{
    /* A username that is not "<expiry>[:user]" is a credential problem: 401,
     * with a reason that shows the expected form. It is judged before the
     * tenant is looked up, so it says nothing about which tenants exist. */
    start_gateway();
    cred_t c = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    snprintf(c.username, sizeof c.username, "tomorrow:alice");
    ts_http_resp_t *known = refused("malformed username", "POST", "/v1/tunnel/acme/sfu", &c, 401);
    cr_expect(strstr(known->body, "<expiry-unix-seconds>[:<user-id>]"),
              "the reason shows the expected form: \"%s\"", known->body);
    ts_http_resp_t *unknown =
        refused("malformed username, unknown tenant", "POST", "/v1/tunnel/nosuch/sfu", &c, 401);
    cr_expect_str_eq(unknown->body, known->body);
    stop_gateway();
}

Test(http_status, unauthorized_401_never_reveals_the_tenant, .fini = teardown)
{
    start_gateway();
    const char *path = "/v1/tunnel/acme/sfu";
    cred_t wrong = mint(CRED_SHA1, "not-the-secret", 600, NULL);
    ts_http_resp_t *wrong_r = refused("wrong secret", "POST", path, &wrong, 401);
    cr_expect(ts_memmem(wrong_r->headers, strlen(wrong_r->headers), "www-authenticate: Sluice-HMAC"),
              "401 without a www-authenticate challenge (RFC 9110 15.5.2); headers:\n%s",
              wrong_r->headers);

    cred_t ok = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    ts_http_resp_t *unknown_r = refused("unknown tenant", "POST", "/v1/tunnel/nosuch/sfu", &ok, 401);
    cr_expect_eq(unknown_r->body_len, wrong_r->body_len,
                 "unknown-tenant body \"%s\" differs from wrong-secret body \"%s\"",
                 unknown_r->body, wrong_r->body);
    cr_expect_str_eq(unknown_r->body, wrong_r->body,
                     "an unknown tenant must be indistinguishable from a wrong secret");

    /* Everything that depends on the tenant's secrets reads exactly like the
     * wrong secret (and so like an unknown tenant). */
    struct {
        const char *label;
        cred_t c;
        int drop_username, drop_credential;
    } cases[] = {
        {"too far ahead", mint(CRED_SHA1, TS_FX_SECRET, TS_FX_MAX_TTL * 24, NULL), 0, 0},
        {"sha256 credential for a sha1 tenant", mint(CRED_SHA256, TS_FX_SECRET, 600, NULL), 0, 0},
        {"credential not base64", ok, 0, 0},
        {"username altered after signing", mint(CRED_SHA1, TS_FX_SECRET, 600, "alice"), 0, 0},
    };
    snprintf(cases[2].c.credential, sizeof cases[2].c.credential, "!!not*base64!!");
    char *colon = strchr(cases[3].c.username, ':');
    snprintf(colon + 1, sizeof cases[3].c.username - (size_t)(colon + 1 - cases[3].c.username),
             "mallory");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ts_http_resp_t *r = request("POST", path, cases[i].drop_username ? NULL : cases[i].c.username,
                                    cases[i].drop_credential ? NULL : cases[i].c.credential, NULL, 10);
        expect_refusal(cases[i].label, r, 401);
        cr_expect_str_eq(r->body, wrong_r->body, "%s: 401 body \"%s\" differs from \"%s\"",
                         cases[i].label, r->body, wrong_r->body);
    }

    /* Missing headers and an expired credential get their own reasons, so a
     * client knows to mint a fresh one. Both are judged before the tenant is
     * looked up: an unknown tenant gets the very same answer. */
    cred_t expired = mint(CRED_SHA1, TS_FX_SECRET, -60, NULL);
    ts_http_resp_t *exp_known = refused("expired", "POST", path, &expired, 401);
    ts_http_resp_t *exp_unknown =
        refused("expired, unknown tenant", "POST", "/v1/tunnel/nosuch/sfu", &expired, 401);
    cr_expect(strstr(exp_known->body, "expired"), "%s", exp_known->body);
    cr_expect_str_eq(exp_unknown->body, exp_known->body);
    ts_http_resp_t *miss_known = request("POST", path, NULL, ok.credential, NULL, 10);
    ts_http_resp_t *miss_unknown =
        request("POST", "/v1/tunnel/nosuch/sfu", ok.username, NULL, NULL, 10);
    expect_refusal("missing username", miss_known, 401);
    expect_refusal("missing credential, unknown tenant", miss_unknown, 401);
    cr_expect(strstr(miss_known->body, "missing"), "%s", miss_known->body);
    cr_expect_str_eq(miss_unknown->body, miss_known->body);
    stop_gateway();
}

Test(http_status, forbidden_403, .fini = teardown)
{
    start_gateway();
    cred_t acme = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    cred_t beta = mint(CRED_SHA256, TS_FX_SECRET_B, 600, NULL);
    refused("tenant not enabled in region eu", "POST", "/v1/tunnel/acme/sfu?region=eu", &acme, 403);
    refused("kind turn not allowed for beta", "POST", "/v1/tunnel/beta/turn", &beta, 403);
    stop_gateway();
}

Test(http_status, not_found_404, .fini = teardown)
{
    start_gateway();
    cred_t ok = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    refused("/v2 path", "POST", "/v2/tunnel/acme/sfu", &ok, 404);
    refused("unknown kind", "POST", "/v1/tunnel/acme/foo", &ok, 404);
    refused("root", "POST", "/", &ok, 404);
    refused("path without a kind", "POST", "/v1/tunnel/acme", &ok, 404);
    stop_gateway();
}

Test(http_status, method_not_allowed_405, .fini = teardown)
{
    start_gateway();
    cred_t ok = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    ts_http_resp_t *r = refused("GET on the tunnel path", "GET", "/v1/tunnel/acme/sfu", &ok, 405);
    /* RFC 9110 §15.5.6: a 405 response MUST carry Allow. */
    cr_expect(ts_memmem(r->headers, strlen(r->headers), "allow: POST") ||
                  ts_memmem(r->headers, strlen(r->headers), "allow:POST"),
              "405 without \"allow: POST\"; headers:\n%s", r->headers);
    refused("PUT on the tunnel path", "PUT", "/v1/tunnel/acme/sfu", &ok, 405);
    stop_gateway();
}

Test(http_status, no_backend_503, .fini = teardown)
{
    start_gateway();
    cred_t ok = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    refused("empty turn pool", "POST", "/v1/tunnel/acme/turn", &ok, 503);
    stop_gateway();
}

/* A DATAGRAM capsule around a small RTP packet, written to a temp file. */
static void datagram_file(char *path, size_t cap, uint8_t *pkt, size_t *pkt_len)
{
    uint8_t capsule[256];
    *pkt_len = ts_pkt_rtp(pkt, 64, 64, 7, 1120, 0xabcdef01u, 7);
    ssize_t n = capsule_encode_datagram(capsule, sizeof capsule, pkt, *pkt_len);
    cr_assert_gt(n, 0, "capsule_encode_datagram: %s", proto_strerror((int)n));
    cr_assert_eq(ts_tmppath("datagram.bin", path, cap), 0);
    cr_assert_eq(ts_write_file(path, capsule, (size_t)n), 0);
}

Test(http_status, valid_post_gets_200_at_once, .fini = teardown)
{
    start_gateway();
    char body[PATH_MAX];
    uint8_t pkt[64];
    size_t pkt_len;
    datagram_file(body, sizeof body, pkt, &pkt_len);

    struct {
        const char *label, *path;
        cred_t c;
    } cases[] = {
        {"acme, first secret", "/v1/tunnel/acme/sfu", mint(CRED_SHA1, TS_FX_SECRET, 600, NULL)},
        {"acme, rotated secret", "/v1/tunnel/acme/sfu", mint(CRED_SHA1, TS_FX_SECRET2, 600, NULL)},
        {"acme with a user id", "/v1/tunnel/acme/sfu", mint(CRED_SHA1, TS_FX_SECRET, 600, "alice")},
        {"beta, sha256", "/v1/tunnel/beta/sfu", mint(CRED_SHA256, TS_FX_SECRET_B, 600, NULL)},
        {"beta, region eu", "/v1/tunnel/beta/sfu?region=eu",
         mint(CRED_SHA256, TS_FX_SECRET_B, 600, NULL)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* The tunnel body may never end: --max-time cuts it, and -w still
         * reports the status that arrived with the response headers. */
        int64_t t0 = ts_now_ms();
        ts_http_resp_t *r = request("POST", cases[i].path, cases[i].c.username,
                                    cases[i].c.credential, body, 2);
        cr_expect_eq(r->status, 200, "%s: HTTP status %d, expected 200 (curl exit %d, %s; body %s)",
                     cases[i].label, r->status, r->curl_exit, r->err, r->body);
        cr_expect_str_eq(r->version, "2", "%s: HTTP version %s", cases[i].label, r->version);
        cr_expect(r->curl_exit == 0 || r->curl_exit == 28,
                  "%s: curl exit %d (%s); expected 0 or 28 (max-time)", cases[i].label,
                  r->curl_exit, r->err);
        cr_expect_leq(ts_now_ms() - t0, 4000, "%s: curl took %lld ms", cases[i].label,
                      (long long)(ts_now_ms() - t0));
    }
    stop_gateway();
}

Test(http_status, curl_tunnel_echoes_a_datagram, .fini = teardown)
{
    /* A tunnel driven by curl instead of the shim: a DATAGRAM capsule written
     * to the open request body comes back in the response body. */
    start_gateway();
    cred_t c = mint(CRED_SHA1, TS_FX_SECRET, 600, NULL);
    char url[256], out[PATH_MAX];
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "/v1/tunnel/acme/sfu", url, sizeof url), 0);
    cr_assert_eq(ts_tmppath("tunnel.body", out, sizeof out), 0);
    cr_assert_eq(ts_http_tunnel_start(&curl_proc, url, c.username, c.credential, out, 20), 0,
                 "cannot run curl");

    uint8_t pkt[64], capsule[128], back[2048];
    size_t pkt_len = ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, 9, 1440, 0x01020304u, 9);
    ssize_t n = capsule_encode_datagram(capsule, sizeof capsule, pkt, pkt_len);
    cr_assert_gt(n, 0);
    cr_assert_eq(write(curl_proc.in_fd, capsule, (size_t)n), n);

    ssize_t got = ts_file_wait_datagram(out, curl_proc.in_fd, back, sizeof back, ts_deadline(ts_ms(10000)));
    cr_expect_eq(got, (ssize_t)pkt_len, "no DATAGRAM echo in the response body within 10 s");
    if (got == (ssize_t)pkt_len)
        cr_expect_arr_eq(back, pkt, pkt_len, "echoed payload differs");
    cr_expect_geq(ts_echo_packets(fx.echo), 1, "the backend never saw the datagram");

    /* End the request body; the gateway should then finish the stream. */
    close(curl_proc.in_fd);
    curl_proc.in_fd = -1;
    int code = ts_proc_wait_exit(&curl_proc, ts_deadline(ts_ms(5000)));
    if (code < 0)
        code = ts_proc_stop(&curl_proc, ts_deadline(2000));
    cr_log_info("curl exit after the request body ended: %d", code);
    stop_gateway();
}
