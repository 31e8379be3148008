/* test_hostport.c — proto/hostport.c: splitting "host:port" and "[v6]:port",
 * every truncation point, and port bounds. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/hostport.h"

/* Splits a heap copy of exactly len bytes (no NUL), so any read past the end
 * is an ASan report. */
static int split(const char *s, size_t len, unsigned flags, hostport_t *hp)
{
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, s, len);
    int rc = hostport_split(copy, len, flags, hp);
    if (rc == HOSTPORT_OK) /* re-point into the literal: copy is freed below */
        hp->host = s + (hp->host - copy);
    free(copy);
    return rc;
}

Test(hostport, accepted_forms)
{
    static const struct {
        const char *in;
        unsigned flags;
        const char *host;
        int bracketed, has_port;
        unsigned port;
    } ok[] = {
        {"127.0.0.1:8443", 0, "127.0.0.1", 0, 1, 8443},
        {"sfu1.internal:7000", 0, "sfu1.internal", 0, 1, 7000},
        {"[::1]:443", 0, "::1", 1, 1, 443},
        {"[fe80::1%eth0]:7000", 0, "fe80::1%eth0", 1, 1, 7000},
        {"0.0.0.0:0", 0, "0.0.0.0", 0, 1, 0},
        {"h:65535", 0, "h", 0, 1, 65535},
        {"h:00080", 0, "h", 0, 1, 80},
        {"gw.example.com", HOSTPORT_PORT_OPTIONAL, "gw.example.com", 0, 0, 0},
        {"[2001:db8::5]", HOSTPORT_PORT_OPTIONAL, "2001:db8::5", 1, 0, 0},
        {"gw:8443", HOSTPORT_PORT_OPTIONAL, "gw", 0, 1, 8443},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        hostport_t hp;
        int rc = split(ok[i].in, strlen(ok[i].in), ok[i].flags, &hp);
        cr_assert_eq(rc, HOSTPORT_OK, "%s: %s", ok[i].in, hostport_strerror(rc));
        cr_expect_eq(hp.host_len, strlen(ok[i].host), "%s", ok[i].in);
        cr_expect_eq(memcmp(hp.host, ok[i].host, hp.host_len), 0, "%s", ok[i].in);
        cr_expect_eq(hp.bracketed, ok[i].bracketed, "%s", ok[i].in);
        cr_expect_eq(hp.has_port, ok[i].has_port, "%s", ok[i].in);
        cr_expect_eq(hp.port, ok[i].port, "%s", ok[i].in);
    }
}

Test(hostport, refused_forms)
{
    static const struct {
        const char *in;
        unsigned flags;
        int rc;
    } bad[] = {
        {"", 0, HOSTPORT_ERR_EMPTY_HOST},
        {"", HOSTPORT_PORT_OPTIONAL, HOSTPORT_ERR_EMPTY_HOST},
        {"127.0.0.1", 0, HOSTPORT_ERR_NO_PORT},
        {"[::1]", 0, HOSTPORT_ERR_NO_PORT},
        {":80", 0, HOSTPORT_ERR_EMPTY_HOST},
        {"[]:80", 0, HOSTPORT_ERR_EMPTY_HOST},
        {"[]", HOSTPORT_PORT_OPTIONAL, HOSTPORT_ERR_EMPTY_HOST},
        {"::1:443", 0, HOSTPORT_ERR_UNBRACKETED},
        {"::1", HOSTPORT_PORT_OPTIONAL, HOSTPORT_ERR_UNBRACKETED},
        {"a:b:c", 0, HOSTPORT_ERR_UNBRACKETED},
        {"[::1", 0, HOSTPORT_ERR_BRACKET},
        {"[::1]80", 0, HOSTPORT_ERR_BRACKET},
        {"[::1]x:80", HOSTPORT_PORT_OPTIONAL, HOSTPORT_ERR_BRACKET},
        {"[a]b]:1", 0, HOSTPORT_ERR_BRACKET},
        {"h:", 0, HOSTPORT_ERR_PORT},
        {"[::1]:", HOSTPORT_PORT_OPTIONAL, HOSTPORT_ERR_PORT},
        {"h:65536", 0, HOSTPORT_ERR_PORT},
        {"h:99999", 0, HOSTPORT_ERR_PORT},
        {"h:100000", 0, HOSTPORT_ERR_PORT},
        {"h:000080", 0, HOSTPORT_ERR_PORT},
        {"h:-1", 0, HOSTPORT_ERR_PORT},
        {"h:+1", 0, HOSTPORT_ERR_PORT},
        {"h: 1", 0, HOSTPORT_ERR_PORT},
        {"h:8x", 0, HOSTPORT_ERR_PORT},
        {"builtin:echo", 0, HOSTPORT_ERR_PORT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hostport_t hp;
        int rc = split(bad[i].in, strlen(bad[i].in), bad[i].flags, &hp);
        cr_expect_eq(rc, bad[i].rc, "\"%s\" (flags %u): got %d (%s), want %d (%s)", bad[i].in,
                     bad[i].flags, rc, hostport_strerror(rc), bad[i].rc,
                     hostport_strerror(bad[i].rc));
        cr_expect_neq(strcmp(hostport_strerror(rc), "unknown error"), 0);
    }
}

Test(hostport, every_port_value_at_the_bounds)
{
    char in[32];
    for (unsigned p = 0; p <= 70000; p += p < 70 || p > 65500 ? 1 : 997) {
        hostport_t hp;
        int n = snprintf(in, sizeof in, "[::1]:%u", p);
        int rc = split(in, (size_t)n, 0, &hp);
        if (p <= 65535) {
            cr_assert_eq(rc, HOSTPORT_OK, "%s", in);
            cr_assert_eq(hp.port, p);
        } else {
            cr_assert_eq(rc, HOSTPORT_ERR_PORT, "%s", in);
        }
    }
}

/* Every prefix of valid inputs: never a read past the end (heap copies), and
 * only the whole input or a prefix that is itself a valid form succeeds. */
Test(hostport, every_truncation_point)
{
    static const char *const inputs[] = {"[2001:db8::1]:8443", "gw.example.com:443",
                                         "10.0.0.1:7"};
    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
        const char *in = inputs[k];
        size_t len = strlen(in);
        for (unsigned flags = 0; flags <= HOSTPORT_PORT_OPTIONAL; flags++) {
            for (size_t cut = 0; cut <= len; cut++) {
                hostport_t hp;
                int rc = split(in, cut, flags, &hp);
                const char *colon = strrchr(in, ':');
                size_t port_at = (size_t)(colon - in) + 1;
                int want_ok = cut > port_at || (flags && in[0] == '[' && cut == port_at - 1) ||
                              (flags && in[0] != '[' && cut > 0 && cut < port_at);
                cr_assert_eq(rc == HOSTPORT_OK, want_ok, "\"%.*s\" flags %u: rc %d", (int)cut,
                             in, flags, rc);
                if (rc == HOSTPORT_OK && cut > port_at)
                    cr_assert_eq(hp.has_port, 1);
            }
        }
    }
}
