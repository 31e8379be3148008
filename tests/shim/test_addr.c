/*
 * test_addr.c — client-shim/lib/addr.c: gateway URLs, numeric listen
 * addresses, printing, path tokens.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/text.h"
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "../../client-shim/lib/shim_addr.h"

Test(addr, url_accepts_names_ipv4_and_bracketed_ipv6)
{
    static const struct { const char *url, *host; uint16_t port; } ok[] = {
        {"https://gw.example.com:8443", "gw.example.com", 8443},
        {"https://gw.example.com", "gw.example.com", 443},
        {"https://gw.example.com/", "gw.example.com", 443},
        {"HTTPS://localhost:1", "localhost", 1},
        {"https://127.0.0.1:8443", "127.0.0.1", 8443},
        {"https://[::1]:8443", "::1", 8443},
        {"https://[::1]", "::1", 443},
        {"https://[2001:db8::5]:65535/", "2001:db8::5", 65535},
        {"https://gw.example.com.:443", "gw.example.com.", 443},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char host[SHIM_HOST_MAX + 1], err[128] = "";
        uint16_t port = 0;
        cr_assert_eq(shim_url_parse(ok[i].url, host, sizeof(host), &port, err, sizeof(err)), 0,
                     "%s: %s", ok[i].url, err);
        cr_expect_str_eq(host, ok[i].host, "%s", ok[i].url);
        cr_expect_eq(port, ok[i].port, "%s", ok[i].url);
    }
}

Test(addr, url_refuses_what_it_cannot_mean)
{
    static const char *bad[] = {
        "", "http://gw:80", "gw:443", "https://", "https:///", "https://:443",
        "https://gw:0", "https://gw:65536", "https://gw:99999", "https://gw:12a",
        "https://gw:", "https://gw/path", "https://gw?x=1", "https://gw#f",
        "https://user@gw", "https://[::1", "https://[::1]x", "https://[gw]:1",
        "https://::1:8443", "https://g w", "https://-" "\x01", "https://a..b",
        "https://[::1]:443/tunnel",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[SHIM_HOST_MAX + 1], err[128] = "";
        uint16_t port;
        cr_expect_eq(shim_url_parse(bad[i], host, sizeof(host), &port, err, sizeof(err)), -1,
                     "'%s' was accepted", bad[i]);
        cr_expect_neq(err[0], '\0', "'%s': no message", bad[i]);
    }
    char host[SHIM_HOST_MAX + 1];
    uint16_t port;
    cr_expect_eq(shim_url_parse(NULL, host, sizeof(host), &port, NULL, 0), -1);
}

Test(addr, url_host_length_limit)
{
    char url[400], host[SHIM_HOST_MAX + 1];
    uint16_t port;
    size_t n = (size_t)snprintf(url, sizeof(url), "https://");
    for (int i = 0; i < 254; i++)
        url[n++] = (i % 60 == 59) ? '.' : 'a';
    url[n] = '\0';
    cr_expect_eq(shim_url_parse(url, host, sizeof(host), &port, NULL, 0), -1);
}

Test(addr, listen_address_parsing)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char err[128], buf[SHIM_ADDRSTR_MAX];

    cr_assert_eq(shim_addr_parse("127.0.0.1:5004", &ss, &len, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(ss.ss_family, AF_INET);
    cr_expect_eq(len, sizeof(struct sockaddr_in));
    cr_expect_str_eq(shim_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)),
                     "127.0.0.1:5004");

    cr_assert_eq(shim_addr_parse("[::1]:0", &ss, &len, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(ss.ss_family, AF_INET6);
    cr_expect_str_eq(shim_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), "[::1]:0");

    cr_assert_eq(shim_addr_parse("0.0.0.0:65535", &ss, &len, err, sizeof(err)), 0);
    cr_assert_eq(shim_addr_parse("[::]:1", &ss, &len, err, sizeof(err)), 0);

    static const char *bad[] = {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", ":80",
                                "localhost:80", "::1:80", "[::1]", "[::1]80", "[127.0.0.1]:1",
                                "1.2.3:4", "1.2.3.4:-1", "1.2.3.4:8x", "[::1:5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(shim_addr_parse(bad[i], &ss, &len, err, sizeof(err)), -1,
                     "'%s' was accepted", bad[i]);
}

Test(addr, hostport_and_family)
{
    char buf[300];
    cr_expect_str_eq(shim_hostport_format("gw", 443, buf, sizeof(buf)), "gw:443");
    cr_expect_str_eq(shim_hostport_format("::1", 8443, buf, sizeof(buf)), "[::1]:8443");
    cr_expect_str_eq(shim_hostport_format("10.0.0.1", 1, buf, sizeof(buf)), "10.0.0.1:1");
    cr_expect_eq(shim_host_ip_family("10.0.0.1"), 4);
    cr_expect_eq(shim_host_ip_family("fe80::1"), 6);
    cr_expect_eq(shim_host_ip_family("localhost"), 0);
    cr_expect_eq(shim_host_ip_family("10.0.0.256"), 0);
}

Test(addr, tokens)
{
    cr_expect(shim_token_valid("demo", 128));
    cr_expect(shim_token_valid("a-b_c.d~e09", 128));
    cr_expect_not(shim_token_valid("", 128));
    cr_expect_not(shim_token_valid(NULL, 128));
    cr_expect_not(shim_token_valid("a/b", 128));
    cr_expect_not(shim_token_valid("a b", 128));
    cr_expect_not(shim_token_valid("a?b", 128));
    cr_expect_not(shim_token_valid("%2f", 128));
    cr_expect_not(shim_token_valid("abcd", 3));
    cr_expect(shim_token_valid("abc", 3));
}

Test(addr, peer_text_is_made_safe_for_one_log_line)
{
    static const char a[] = "invalid credentials\r\n \t";
    static const char b[] = "two\nlines\x1b[31m and a DEL\x7f, caf\xc3\xa9 kept";
    static const char c[] = "\n\n";
    char out[128];

    cr_expect_str_eq(shim__log_safe(out, sizeof(out), a, strlen(a)), "invalid credentials");
    cr_expect_str_eq(shim__log_safe(out, sizeof(out), b, strlen(b)),
                     "two\\x0alines\\x1b[31m and a DEL\\x7f, caf\xc3\xa9 kept");
    cr_expect_str_eq(shim__log_safe(out, sizeof(out), c, strlen(c)), "");
    cr_expect_str_eq(shim__log_safe(out, 8, b, strlen(b)), "two" TEXT_TRUNCATED,
                     "a long reason is cut with the marker");
}
