/*
 * addr.c — gateway URL and numeric address parsing (see shim_addr.h).
 */
#include "shim_addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../proto/hostport.h"
#include "../../proto/text.h"

int shim__errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *shim__log_safe(char *dst, size_t cap, const char *src, size_t len)
{
    while (len > 0 && (src[len - 1] == '\n' || src[len - 1] == '\r' || src[len - 1] == ' ' ||
                       src[len - 1] == '\t'))
        len--;
    text_escape(dst, cap, src, len);
    return dst;
}

int shim_host_ip_family(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;

    if (inet_pton(AF_INET, host, &a4) == 1)
        return 4;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return 6;
    return 0;
}

/* LDH host name with optional underscores (seen in internal names), labels
 * of 1..63 characters, no leading or trailing dot (a trailing dot is allowed
 * for a fully qualified name). */
static int dns_name_valid(const char *s, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > SHIM_HOST_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return 1;
}

int shim_url_parse(const char *url, char *host, size_t hostcap, uint16_t *port, char *err,
                   size_t errlen)
{
    static const char scheme[] = "https://";
    const char *p, *end, *h;
    size_t hlen;
    hostport_t hp;
    int rc;

    if (!url || strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return shim__errf(err, errlen, "gateway URL must start with https://");
    p = url + sizeof(scheme) - 1;
    end = p + strlen(p);
    /* An optional single trailing slash is the only path we accept. */
    if (end > p && end[-1] == '/')
        end--;
    for (const char *q = p; q < end; q++) {
        if (*q == '/' || *q == '?' || *q == '#')
            return shim__errf(err, errlen, "gateway URL must not have a path, query or fragment");
        if (*q == '@')
            return shim__errf(err, errlen, "gateway URL must not contain user information");
    }
    if (p == end)
        return shim__errf(err, errlen, "gateway URL has no host");

    rc = hostport_split(p, (size_t)(end - p), HOSTPORT_PORT_OPTIONAL, &hp);
    if (rc == HOSTPORT_ERR_EMPTY_HOST)
        return shim__errf(err, errlen, "gateway URL has no host");
    if (rc == HOSTPORT_ERR_PORT) {
        const char *colon = memrchr(p, ':', (size_t)(end - p));
        return shim__errf(err, errlen, "gateway URL: bad port '%.*s'", (int)(end - colon - 1),
                          colon + 1);
    }
    if (rc != HOSTPORT_OK)
        return shim__errf(err, errlen, "gateway URL: %s", hostport_strerror(rc));
    h = hp.host;
    hlen = hp.host_len;
    if (hlen >= hostcap || hlen > SHIM_HOST_MAX)
        return shim__errf(err, errlen, "gateway host is too long");
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    if (*p == '[') {
        if (shim_host_ip_family(host) != 6)
            return shim__errf(err, errlen, "gateway URL: '%s' is not an IPv6 address", host);
    } else if (shim_host_ip_family(host) != 4 && !dns_name_valid(host, hlen)) {
        return shim__errf(err, errlen, "gateway URL: '%s' is not a valid host name", host);
    }

    *port = hp.has_port ? hp.port : 443;
    if (*port == 0)
        return shim__errf(err, errlen, "gateway URL: port 0 is not allowed");
    return 0;
}

int shim_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
                    size_t errlen)
{
    char host[SHIM_ADDRSTR_MAX];
    hostport_t hp;
    uint16_t port;
    struct addrinfo hints, *res = NULL;
    int rc;

    if (!s || !*s)
        return shim__errf(err, errlen, "empty address");
    rc = hostport_split(s, strlen(s), 0, &hp);
    if (rc == HOSTPORT_ERR_PORT)
        return shim__errf(err, errlen, "'%s': bad port", s);
    if (rc != HOSTPORT_OK)
        return shim__errf(err, errlen, "'%s': %s", s, hostport_strerror(rc));
    if (hp.host_len >= sizeof(host))
        return shim__errf(err, errlen, "'%s': bad address", s);
    memcpy(host, hp.host, hp.host_len);
    host[hp.host_len] = '\0';
    port = hp.port;

    /* getaddrinfo also takes inet_aton() shorthands ("1.2.3"); be strict. */
    if (*s != '[' && shim_host_ip_family(host) != 4)
        return shim__errf(err, errlen, "'%s': not a numeric IPv4 address", s);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = *s == '[' ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res || res->ai_addrlen > sizeof(*ss)) {
        if (res)
            freeaddrinfo(res);
        return shim__errf(err, errlen, "'%s': not a numeric %s address", s,
                    *s == '[' ? "IPv6" : "IPv4");
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    return 0;
}

const char *shim_addr_format(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        if (a->sin6_scope_id)
            snprintf(buf, cap, "[%s%%%u]:%u", ip, (unsigned)a->sin6_scope_id,
                     (unsigned)ntohs(a->sin6_port));
        else
            snprintf(buf, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        snprintf(buf, cap, "?");
    }
    return buf;
}

const char *shim_hostport_format(const char *host, uint16_t port, char *buf, size_t cap)
{
    if (strchr(host, ':'))
        snprintf(buf, cap, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(buf, cap, "%s:%u", host, (unsigned)port);
    return buf;
}

int shim_token_valid(const char *s, size_t max)
{
    size_t n = 0;

    if (!s || !*s)
        return 0;
    for (; *s; s++, n++) {
        char c = *s;
        if (n >= max)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~'))
            return 0;
    }
    return 1;
}
