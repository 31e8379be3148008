/*
 * test_proxy.c — client-shim/lib/proxy.c: the route list (explicit proxy,
 * PAC answer, environment), PAC answer entries, and NO_PROXY matching with
 * curl's conventions.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../client-shim/lib/proxy.h"
#include "../support/ts_util.h"

/* ---------------------------------------------------------------- NO_PROXY */

Test(no_proxy, names_match_themselves_and_subdomains_with_or_without_a_dot)
{
    static const struct {
        const char *list, *host;
        int want;
    } cases[] = {
        {"example.com", "example.com", 1},
        {"example.com", "gw.example.com", 1},
        {"example.com", "a.b.example.com", 1},
        {".example.com", "gw.example.com", 1},
        {".example.com", "example.com", 1},
        {"example.com", "badexample.com", 0},
        {".example.com", "badexample.com", 0},
        {"example.com", "example.com.evil", 0},
        {"gw.example.com", "example.com", 0},
        {"EXAMPLE.com", "Gw.Example.COM", 1},
        {"example.com", "gw.example.com.", 1}, /* trailing dot of a FQDN */
        {"example.com.", "gw.example.com", 1},
        {"localhost", "localhost", 1},
        {"", "example.com", 0},
        {",,  ,", "example.com", 0},
        {"a.org, example.com", "gw.example.com", 1},
        {"a.org example.com", "gw.example.com", 1},  /* blanks separate too */
        {"a.org,\texample.com ", "gw.example.com", 1},
        {"a.org,b.org", "gw.example.com", 0},
        {"*", "anything.example", 1},
        {"*", "10.1.2.3", 1},
        {"a.org,*", "x.y", 1},
        {"*.example.com", "gw.example.com", 0}, /* curl: '*' only alone */
        {"com", "gw.example.com", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(proxy_no_proxy_match(cases[i].list, cases[i].host), cases[i].want,
                     "no_proxy '%s', host '%s': want %d", cases[i].list, cases[i].host,
                     cases[i].want);
}

Test(no_proxy, ip_literals_and_cidr)
{
    static const struct {
        const char *list, *host;
        int want;
    } cases[] = {
        {"127.0.0.1", "127.0.0.1", 1},
        {"127.0.0.1", "127.0.0.2", 0},
        {"127.0.0.0/8", "127.200.3.4", 1},
        {"127.0.0.0/8", "128.0.0.1", 0},
        {"10.0.0.0/8,192.168.0.0/16", "192.168.7.7", 1},
        {"192.168.1.0/24", "192.168.2.1", 0},
        {"192.168.1.128/25", "192.168.1.200", 1},
        {"192.168.1.128/25", "192.168.1.100", 0},
        {"0.0.0.0/0", "8.8.8.8", 1},
        {"1.2.3.4/32", "1.2.3.4", 1},
        {"1.2.3.4/33", "1.2.3.4", 0}, /* bad prefix length: matches nothing */
        {"1.2.3.4/", "1.2.3.4", 0},
        {"1.2.3.4/x", "1.2.3.4", 0},
        {"::1", "::1", 1},
        {"[::1]", "::1", 1},
        {"::1", "[::1]", 1},
        {"::1", "::2", 0},
        {"2001:db8::/32", "2001:db8:ffff::1", 1},
        {"2001:db8::/32", "2001:db9::1", 0},
        {"fe80::/10", "febf::1", 1},
        {"fe80::/10", "fec0::1", 0},
        {"127.0.0.0/8", "::1", 0},     /* families never cross */
        {"::/0", "127.0.0.1", 0},
        {"1.2.3.4", "4.example", 0},   /* IP entries never match names... */
        {"example.com", "93.184.216.34", 0}, /* ...nor names IP hosts */
        {"127.0.0.1/8", "localhost", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(proxy_no_proxy_match(cases[i].list, cases[i].host), cases[i].want,
                     "no_proxy '%s', host '%s': want %d", cases[i].list, cases[i].host,
                     cases[i].want);
}

Test(no_proxy, absent_list_or_host_matches_nothing)
{
    cr_expect_eq(proxy_no_proxy_match(NULL, "example.com"), 0);
    cr_expect_eq(proxy_no_proxy_match("*", NULL), 0);
    cr_expect_eq(proxy_no_proxy_match("*", ""), 0);
}

/* ---------------------------------------------------------------- URLs */

Test(proxy_url, scheme_defaults_to_http_and_labels_hide_credentials)
{
    static const struct {
        const char *in, *url, *label;
    } cases[] = {
        {"http://127.0.0.1:3128", "http://127.0.0.1:3128", "proxy 127.0.0.1:3128"},
        {"proxy.corp:8080", "http://proxy.corp:8080", "proxy proxy.corp:8080"},
        {"http://alice:s3cret@proxy.corp:8080", "http://alice:s3cret@proxy.corp:8080",
         "proxy proxy.corp:8080"},
        {"https://proxy.corp", "https://proxy.corp", "https proxy proxy.corp:443"},
        {"http://[::1]:3128/", "http://[::1]:3128/", "proxy [::1]:3128"},
        {"socks5h://127.0.0.1:1080", "socks5h://127.0.0.1:1080", "socks5h proxy 127.0.0.1:1080"},
        {"HTTP://p:1", "HTTP://p:1", "proxy p:1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        proxy_route_t r;
        char err[200] = "";
        cr_assert_eq(proxy_route_from_url(cases[i].in, &r, err, sizeof(err)), 0, "%s: %s",
                     cases[i].in, err);
        cr_expect_eq(r.direct, 0);
        cr_expect_str_eq(r.url, cases[i].url, "%s", cases[i].in);
        cr_expect_str_eq(r.label, cases[i].label, "%s", cases[i].in);
        cr_expect_null(strstr(r.label, "s3cret"));
    }
}

Test(proxy_url, refuses_unusable_urls)
{
    static const char *bad[] = {
        "", "ftp://p:21", "http://", "http://p:99999", "http://p:3128/path", "gopher://x",
        "http://p:3128?q=1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proxy_route_t r;
        char err[200] = "";
        cr_expect_eq(proxy_route_from_url(bad[i], &r, err, sizeof(err)), -1, "'%s' accepted",
                     bad[i]);
        cr_expect_neq(err[0], '\0', "'%s': no message", bad[i]);
    }
}

/* ---------------------------------------------------------------- PAC answers */

Test(pac_answer, every_entry_in_order)
{
    proxy_route_t r[PROXY_ROUTES_MAX];
    char err[200] = "";
    int n = proxy_pac_routes(" PROXY 127.0.0.1:9; proxy b.corp:3128 ;HTTPS c.corp:443;"
                             "SOCKS5 d:1080; SOCKS e:1081; DIRECT",
                             r, PROXY_ROUTES_MAX, err, sizeof(err));

    cr_assert_eq(n, 6, "%d: %s", n, err);
    cr_expect_str_eq(r[0].url, "http://127.0.0.1:9");
    cr_expect_str_eq(r[0].label, "proxy 127.0.0.1:9");
    cr_expect_str_eq(r[1].url, "http://b.corp:3128");
    cr_expect_str_eq(r[2].url, "https://c.corp:443");
    cr_expect_str_eq(r[3].url, "socks5h://d:1080");
    cr_expect_str_eq(r[4].url, "socks4a://e:1081");
    cr_expect_eq(r[5].direct, 1);
    cr_expect_str_eq(r[5].label, "direct");
}

Test(pac_answer, empty_is_direct_unknown_entries_are_skipped_and_cap_is_kept)
{
    proxy_route_t r[3];
    char err[200] = "";

    cr_assert_eq(proxy_pac_routes("", r, 3, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 1);
    cr_assert_eq(proxy_pac_routes(NULL, r, 3, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 1);
    cr_assert_eq(proxy_pac_routes("QUIC x:1; PROXY a:1; PROXY; PROXY u@h:1; DIRECT", r, 3, err,
                                  sizeof(err)),
                 2);
    cr_expect_str_eq(r[0].url, "http://a:1");
    cr_expect_eq(r[1].direct, 1);
    /* More entries than room: the first ones are kept. */
    cr_assert_eq(proxy_pac_routes("PROXY a:1; PROXY b:2; PROXY c:3; PROXY d:4", r, 3, err,
                                  sizeof(err)),
                 3);
    cr_expect_str_eq(r[2].url, "http://c:3");
    /* Nothing usable is a configuration error, not a silent direct route. */
    cr_expect_eq(proxy_pac_routes("QUIC x:1; BOGUS", r, 3, err, sizeof(err)), -1);
    cr_expect_neq(strstr(err, "QUIC"), NULL, "%s", err);
}

/* ---------------------------------------------------------------- choice */

Test(routes, explicit_proxy_then_pac_then_env_then_direct)
{
    proxy_route_t r[PROXY_ROUTES_MAX];
    char err[200] = "";
    proxy_inputs_t in = {
        .host = "gw.example.com",
        .proxy = "http://p1:3128",
        .pac_answer = "PROXY p2:3128; DIRECT",
        .use_env = 1,
        .env_proxy = "http://p3:3128",
        .env_no_proxy = "",
    };

    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1, "%s", err);
    cr_expect_str_eq(r[0].url, "http://p1:3128");
    in.proxy = "none";
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 1);
    in.proxy = "NONE";
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 1);
    in.proxy = NULL;
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 2);
    cr_expect_str_eq(r[0].url, "http://p2:3128");
    cr_expect_eq(r[1].direct, 1);
    in.pac_answer = NULL;
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_str_eq(r[0].url, "http://p3:3128");
    in.use_env = 0;
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 1);
}

Test(routes, no_proxy_bypasses_the_env_proxy_only)
{
    proxy_route_t r[PROXY_ROUTES_MAX];
    char err[200] = "";
    proxy_inputs_t in = {
        .host = "127.0.0.1",
        .use_env = 1,
        .env_proxy = "127.0.0.1:9",
        .env_no_proxy = "localhost,127.0.0.0/8",
    };

    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 1);
    in.env_no_proxy = "localhost";
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 0);
    cr_expect_str_eq(r[0].url, "http://127.0.0.1:9");
    /* An explicit proxy is taken as given. */
    in.env_no_proxy = "*";
    in.proxy = "http://127.0.0.1:9";
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 0);
    /* An empty env proxy is none. */
    in.proxy = NULL;
    in.env_proxy = "";
    cr_assert_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), 1);
    cr_expect_eq(r[0].direct, 1);
}

Test(routes, bad_urls_are_config_errors_without_the_password)
{
    proxy_route_t r[PROXY_ROUTES_MAX];
    char err[200] = "";
    proxy_inputs_t in = {.host = "gw", .proxy = "ftp://bob:hunter2@p:21"};

    cr_expect_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), -1);
    cr_expect_null(strstr(err, "hunter2"), "%s", err);
    cr_expect_neq(err[0], '\0');
    in.proxy = NULL;
    in.use_env = 1;
    in.env_proxy = "gopher://x";
    cr_expect_eq(proxy_routes(&in, r, PROXY_ROUTES_MAX, err, sizeof(err)), -1);
}

/* ---------------------------------------------------------------- PAC evaluation */

Test(pac_eval, libpacparser_runs_find_proxy_for_url)
{
    static const char script[] =
        "function FindProxyForURL(url, host) {\n"
        "  if (dnsDomainIs(host, \".corp.example\")) return \"DIRECT\";\n"
        "  if (shExpMatch(url, \"https://gw.example.com:8443/*\"))\n"
        "    return \"PROXY a.corp:3128; PROXY b.corp:3128; DIRECT\";\n"
        "  return \"PROXY c.corp:8080\";\n"
        "}\n";
    char out[PROXY_PAC_ANSWER_MAX], err[256] = "";

    cr_assert_eq(proxy_pac_eval(script, "https://gw.example.com:8443/", "gw.example.com", out,
                                sizeof(out), err, sizeof(err)),
                 0, "%s", err);
    cr_expect_str_eq(out, "PROXY a.corp:3128; PROXY b.corp:3128; DIRECT");
    cr_assert_eq(proxy_pac_eval(script, "https://x.corp.example:443/", "x.corp.example", out,
                                sizeof(out), err, sizeof(err)),
                 0, "%s", err);
    cr_expect_str_eq(out, "DIRECT");
    /* Evaluated again from scratch: the engine's global state is reset. */
    cr_assert_eq(proxy_pac_eval(script, "https://other:443/", "other", out, sizeof(out), err,
                                sizeof(err)),
                 0, "%s", err);
    cr_expect_str_eq(out, "PROXY c.corp:8080");
}

Test(pac_eval, script_errors_are_reported)
{
    char out[PROXY_PAC_ANSWER_MAX], err[256] = "";

    cr_expect_eq(proxy_pac_eval("function FindProxyForURL(url, host) { return ", "https://a/",
                                "a", out, sizeof(out), err, sizeof(err)),
                 -1);
    cr_expect_neq(err[0], '\0');
    err[0] = '\0';
    cr_expect_eq(proxy_pac_eval("var x = 1;", "https://a/", "a", out, sizeof(out), err,
                                sizeof(err)),
                 -1, "a PAC without FindProxyForURL gave '%s'", out);
    cr_expect_neq(err[0], '\0');
}

Test(pac_eval, load_reads_a_file_and_refuses_a_missing_one)
{
    char err[256] = "", path[4096];
    static const char text[] = "function FindProxyForURL(u, h) { return \"DIRECT\"; }";

    cr_assert_eq(ts_tmppath("t.pac", path, sizeof(path)), 0); /* a private mkdtemp dir */
    cr_assert_eq(ts_write_file(path, text, sizeof(text) - 1), 0);
    char *script = proxy_pac_load(path, 1000, err, sizeof(err));
    cr_assert_not_null(script, "%s", err);
    cr_expect_str_eq(script, text);
    free(script);
    cr_expect_null(proxy_pac_load("/nonexistent/sluice.pac", 1000, err, sizeof(err)));
    cr_expect(strstr(err, "/nonexistent/sluice.pac"), "%s", err);
}
