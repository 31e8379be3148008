/*
 * proxy.h — which way out to the gateway: the ordered list of routes (a proxy
 * or "direct") to try, from the client's options, a PAC answer and the
 * environment (docs/shim.md, "Proxy discovery").
 *
 * Pure: no I/O, no getenv (the caller passes the environment's values in),
 * so every rule is unit tested (tests/shim/test_proxy.c). Proxy URLs are
 * checked and taken apart with libcurl's URL API (curl_url), the same parser
 * that later uses them, never by hand. Nothing is allocated that outlives a
 * call: routes are caller-owned fixed-size structs.
 */
#ifndef SHIM_PROXY_H
#define SHIM_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* At most this many routes are tried for one connection (a PAC answer
 * with more entries is cut there). */
#define PROXY_ROUTES_MAX 8u
#define PROXY_URL_MAX 512u
#define PROXY_LABEL_MAX 300u

typedef struct proxy_route {
    int direct;                  /* 1: no proxy; url is empty */
    char url[PROXY_URL_MAX];     /* for CURLOPT_PROXY, scheme always present:
                                  * http://, https://, socks4a:// or socks5h://,
                                  * userinfo kept when it was given */
    char label[PROXY_LABEL_MAX]; /* for logs, never credentials: "direct" or
                                  * "proxy host:port" ("https proxy ...",
                                  * "socks5h proxy ...") */
} proxy_route_t;

/* What decides the routes. Strings are borrowed for the call. */
typedef struct proxy_inputs {
    const char *host;        /* the gateway: DNS name or IP literal, no brackets */
    const char *proxy;       /* an explicit proxy URL, "none" (direct), or NULL */
    const char *pac_answer;  /* the PAC's FindProxyForURL result, or NULL: no PAC */
    int use_env;             /* consult env_proxy / env_no_proxy */
    const char *env_proxy;   /* https_proxy, else HTTPS_PROXY (NULL or "": none) */
    const char *env_no_proxy; /* no_proxy, else NO_PROXY (NULL: none) */
} proxy_inputs_t;

/* Fills out[0..cap) with the routes to try in order. The first rule that
 * applies decides:
 *   1. proxy: "none" is one direct route; otherwise that proxy alone;
 *   2. pac_answer: its entries in order (proxy_pac_routes);
 *   3. use_env with a non-empty env_proxy: direct when env_no_proxy matches
 *      host (proxy_no_proxy_match), else that proxy;
 *   4. one direct route.
 * Returns the number of routes (>= 1), or -1 with a message in err when a
 * proxy URL or the PAC answer is unusable (a configuration error). */
int proxy_routes(const proxy_inputs_t *in, proxy_route_t *out, size_t cap, char *err,
                 size_t errlen);

/* One route from a proxy URL: "[scheme://][user:pass@]host[:port]". The
 * scheme defaults to http and the port to the scheme's (1080 for SOCKS,
 * 443 for https, 80 for http, as libcurl does; a port must be given for http
 * to be useful but is not required). Schemes: http, https, socks4, socks4a,
 * socks5, socks5h. Returns 0, or -1 with err. */
int proxy_route_from_url(const char *url, proxy_route_t *r, char *err, size_t errlen);

/* The routes of a PAC answer ("PROXY a:3128; HTTPS b:443; DIRECT"): entries
 * separated by ';', each DIRECT, PROXY/HTTP host:port, HTTPS host:port, SOCKS/
 * SOCKS4 host:port (socks4a) or SOCKS5 host:port (socks5h), keywords in any
 * case. Unknown entries are skipped; an empty answer is DIRECT. Returns the
 * count (>= 1), or -1 with err when no entry is usable. */
int proxy_pac_routes(const char *answer, proxy_route_t *out, size_t cap, char *err,
                     size_t errlen);

/* 1 when host (a DNS name or IP literal; brackets and a trailing dot are
 * ignored) is excluded from proxying by no_proxy, with curl's conventions:
 * entries separated by commas and/or blanks; "*" alone matches every host;
 * a name matches itself and its subdomains, with or without a leading dot
 * (".example.com" and "example.com" both match "gw.example.com" and
 * "example.com"), case-insensitively; an IP literal entry matches that
 * address only, and "addr/bits" (CIDR) every address in the prefix, IPv4 or
 * IPv6 (IP entries only ever match IP literal hosts: no name is resolved).
 * Else 0. */
int proxy_no_proxy_match(const char *no_proxy, const char *host);

/* ---------------------------------------------------------------- PAC (proxy_pac.c)
 * Not pure: these read files, fetch URLs and run JavaScript. */

#define PROXY_PAC_MAX_BYTES (1024u * 1024u) /* a PAC file longer than this is refused */
#define PROXY_PAC_ANSWER_MAX 1024u

/* The PAC script from src: an http(s):// URL, fetched once with libcurl
 * (blocking, within timeout_ms, redirects followed up to 5, at most
 * PROXY_PAC_MAX_BYTES, 2xx only; never through a proxy), or a file path.
 * Returns a malloc'd NUL-terminated script the caller frees, or NULL with
 * err. */
char *proxy_pac_load(const char *src, uint32_t timeout_ms, char *err, size_t errlen);

/* Runs FindProxyForURL(url, host) of script with libpacparser and copies its
 * answer ("PROXY a:1; DIRECT") into out (cap >= PROXY_PAC_ANSWER_MAX).
 * libpacparser keeps one global JavaScript context: this initialises it,
 * evaluates and tears it down in one call (not thread-safe, like the rest of
 * the library). Returns 0, or -1 with err (script error, no answer). */
int proxy_pac_eval(const char *script, const char *url, const char *host, char *out,
                   size_t cap, char *err, size_t errlen);

#endif
