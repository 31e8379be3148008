/*
 * proxy.c — route choice and NO_PROXY matching (see proxy.h).
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shim_addr.h"

#define NO_PROXY_ENTRY_MAX 300u

/* ---------------------------------------------------------------- URLs */

static const struct {
    const char *scheme;
    const char *label; /* "" for plain http */
} known_schemes[] = {
    {"http", ""},          {"https", "https "},     {"socks4", "socks4 "},
    {"socks4a", "socks4a "}, {"socks5", "socks5 "}, {"socks5h", "socks5h "},
};

int proxy_route_from_url(const char *url, proxy_route_t *r, char *err, size_t errlen)
{
    CURLU *u;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL,
         *fragment = NULL;
    const char *kind = NULL;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    if (!url || !*url)
        return shim__errf(err, errlen, "empty proxy URL");
    if (strlen(url) >= sizeof(r->url))
        return shim__errf(err, errlen, "proxy URL longer than %u bytes",
                          (unsigned)sizeof(r->url) - 1);
    /* libcurl's own reading of a proxy string: no "scheme://" means http.
     * What curl gets always names its scheme, so it never guesses again. */
    if (strstr(url, "://"))
        snprintf(r->url, sizeof(r->url), "%s", url);
    else if ((size_t)snprintf(r->url, sizeof(r->url), "http://%s", url) >= sizeof(r->url))
        return shim__errf(err, errlen, "proxy URL too long");
    u = curl_url();
    if (!u)
        return shim__errf(err, errlen, "out of memory");
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, r->url, CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
        shim__errf(err, errlen, "bad proxy URL: %s", curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        shim__errf(err, errlen, "bad proxy URL: no host");
        goto out;
    }
    for (size_t i = 0; i < sizeof(known_schemes) / sizeof(known_schemes[0]); i++)
        if (strcasecmp(scheme, known_schemes[i].scheme) == 0)
            kind = known_schemes[i].label;
    if (!kind) {
        shim__errf(err, errlen, "proxy scheme '%s' not supported (http, https, socks4, "
                                "socks4a, socks5, socks5h)", scheme);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && strcmp(path, "/") != 0 &&
        *path) {
        shim__errf(err, errlen, "a proxy URL has no path");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK) {
        shim__errf(err, errlen, "a proxy URL has no query or fragment");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        /* socks schemes have no default port in the URL API: curl's 1080. */
        port = NULL;
    }
    snprintf(r->label, sizeof(r->label), "%sproxy %s:%s", kind, host, port ? port : "1080");
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(fragment);
    curl_url_cleanup(u);
    if (rc < 0)
        memset(r, 0, sizeof(*r));
    return rc;
}

static void route_direct(proxy_route_t *r)
{
    memset(r, 0, sizeof(*r));
    r->direct = 1;
    snprintf(r->label, sizeof(r->label), "direct");
}

/* ---------------------------------------------------------------- PAC answers */

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int proxy_pac_routes(const char *answer, proxy_route_t *out, size_t cap, char *err,
                     size_t errlen)
{
    static const struct {
        const char *kw;
        const char *scheme;
    } kws[] = {
        {"PROXY", "http"},    {"HTTP", "http"},       {"HTTPS", "https"},
        {"SOCKS", "socks4a"}, {"SOCKS4", "socks4a"},  {"SOCKS5", "socks5h"},
    };
    size_t n = 0, skipped = 0;
    const char *p = answer ? answer : "";
    char first_err[160] = "";

    if (cap == 0)
        return shim__errf(err, errlen, "no room for routes");
    while (*p && n < cap) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *kw = p, *arg;
        size_t kwlen, arglen;

        while (len && is_blank(*kw)) {
            kw++;
            len--;
        }
        while (len && is_blank(kw[len - 1]))
            len--;
        p = end ? end + 1 : p + strlen(p);
        if (len == 0)
            continue;
        for (kwlen = 0; kwlen < len && !is_blank(kw[kwlen]); kwlen++)
            ;
        for (arg = kw + kwlen, arglen = len - kwlen; arglen && is_blank(*arg); arg++, arglen--)
            ;
        if (kwlen == 6 && strncasecmp(kw, "DIRECT", 6) == 0 && arglen == 0) {
            route_direct(&out[n++]);
            continue;
        }
        const char *scheme = NULL;
        for (size_t i = 0; i < sizeof(kws) / sizeof(kws[0]); i++)
            if (strlen(kws[i].kw) == kwlen && strncasecmp(kw, kws[i].kw, kwlen) == 0)
                scheme = kws[i].scheme;
        char url[PROXY_URL_MAX], e[160];
        /* The argument is host:port only: no scheme, no userinfo, no path. */
        if (!scheme || arglen == 0 || memchr(arg, '/', arglen) || memchr(arg, '@', arglen) ||
            (size_t)snprintf(url, sizeof(url), "%s://%.*s", scheme, (int)arglen, arg) >=
                sizeof(url) ||
            proxy_route_from_url(url, &out[n], e, sizeof(e)) < 0) {
            if (!skipped++)
                snprintf(first_err, sizeof(first_err), "'%.*s'", (int)(len > 80 ? 80 : len),
                         kw);
            continue;
        }
        n++;
    }
    if (n == 0 && skipped == 0) {
        route_direct(&out[0]); /* an empty answer: no proxy */
        return 1;
    }
    if (n == 0)
        return shim__errf(err, errlen, "PAC answer has no usable entry (first: %s)", first_err);
    return (int)n;
}

/* ---------------------------------------------------------------- NO_PROXY */

/* An IP literal (brackets stripped by the caller) into bytes; 4 or 16, or 0. */
static int ip_parse(const char *s, uint8_t out[16])
{
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) == 1)
        return 16;
    return 0;
}

static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;

    if (memcmp(a, b, bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

/* Copies s[0..len) without brackets and a trailing dot into out. */
static void host_norm(const char *s, size_t len, char *out, size_t cap)
{
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    while (len && s[len - 1] == '.')
        len--;
    if (len >= cap)
        len = 0; /* too long to be a host: matches nothing */
    memcpy(out, s, len);
    out[len] = '\0';
}

static int entry_match(const char *e, size_t len, const char *host, const uint8_t *hip,
                       int hiplen)
{
    char pat[NO_PROXY_ENTRY_MAX];
    const char *slash = memchr(e, '/', len);

    if (len == 1 && e[0] == '*')
        return 1;
    if (hiplen) {
        /* An IP host is matched by IP entries only: a literal or a CIDR. */
        uint8_t pip[16];
        unsigned bits;
        size_t iplen = slash ? (size_t)(slash - e) : len;
        host_norm(e, iplen, pat, sizeof(pat));
        if (ip_parse(pat, pip) != hiplen)
            return 0;
        bits = (unsigned)hiplen * 8;
        if (slash) {
            unsigned v = 0;
            size_t k = 1;
            if (slash + 1 == e + len)
                return 0;
            for (; slash + k < e + len; k++) {
                char c = slash[k];
                if (c < '0' || c > '9' || v > 128)
                    return 0;
                v = v * 10 + (unsigned)(c - '0');
            }
            if (v > bits)
                return 0;
            bits = v;
        }
        return prefix_equal(hip, pip, bits);
    }
    if (slash)
        return 0;
    /* A name: ".example.com" and "example.com" both match example.com and
     * every name under it. */
    while (len && e[0] == '.') {
        e++;
        len--;
    }
    host_norm(e, len, pat, sizeof(pat));
    size_t plen = strlen(pat), hlen = strlen(host);
    if (plen == 0 || plen > hlen)
        return 0;
    if (strcasecmp(host + hlen - plen, pat) != 0)
        return 0;
    return plen == hlen || host[hlen - plen - 1] == '.';
}

int proxy_no_proxy_match(const char *no_proxy, const char *host)
{
    char h[SHIM_HOST_MAX + 3];
    uint8_t hip[16];
    int hiplen;
    const char *p = no_proxy;

    if (!no_proxy || !host)
        return 0;
    host_norm(host, strlen(host), h, sizeof(h));
    if (!*h)
        return 0;
    hiplen = ip_parse(h, hip);
    while (*p) {
        size_t len;
        while (*p == ',' || is_blank(*p))
            p++;
        for (len = 0; p[len] && p[len] != ',' && !is_blank(p[len]); len++)
            ;
        if (len && len < NO_PROXY_ENTRY_MAX && entry_match(p, len, h, hip, hiplen))
            return 1;
        p += len;
    }
    return 0;
}

/* ---------------------------------------------------------------- choice */

int proxy_routes(const proxy_inputs_t *in, proxy_route_t *out, size_t cap, char *err,
                 size_t errlen)
{
    char e[256];

    if (cap == 0)
        return shim__errf(err, errlen, "no room for routes");
    if (in->proxy) {
        if (strcasecmp(in->proxy, "none") == 0) {
            route_direct(&out[0]);
            return 1;
        }
        if (proxy_route_from_url(in->proxy, &out[0], e, sizeof(e)) < 0)
            return shim__errf(err, errlen, "--proxy: %s", e); /* the URL may hold a password */
        return 1;
    }
    if (in->pac_answer)
        return proxy_pac_routes(in->pac_answer, out, cap, err, errlen);
    if (in->use_env && in->env_proxy && *in->env_proxy) {
        if (proxy_no_proxy_match(in->env_no_proxy, in->host)) {
            route_direct(&out[0]);
            return 1;
        }
        if (proxy_route_from_url(in->env_proxy, &out[0], e, sizeof(e)) < 0)
            return shim__errf(err, errlen, "https_proxy: %s", e);
        return 1;
    }
    route_direct(&out[0]);
    return 1;
}
