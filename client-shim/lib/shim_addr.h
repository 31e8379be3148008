/*
 * shim_addr.h — parsing and printing of the addresses the shim is given:
 * the gateway URL, numeric listen addresses, and path tokens. Pure: no DNS
 * (numeric parsing only), no sockets.
 */
#ifndef SHIM_ADDR_H
#define SHIM_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Formats an error into err (when err is not NULL and errlen > 0) and
 * returns -1: the failure path of every parser in the shim. */
int shim__errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Makes text a peer sent (a refusal body, a CLOSE reason, GOAWAY debug data)
 * fit for one log line: trailing line breaks and blanks are cut (text/plain
 * bodies often end with one), then the rest is escaped into dst by
 * text_escape (proto/text.h), the one escaper gateway and shim share.
 * Returns dst. */
char *shim__log_safe(char *dst, size_t cap, const char *src, size_t len);

/* Longest host name we accept (RFC 1035 §2.3.4 limit on a name). */
#define SHIM_HOST_MAX 253u
/* Enough for "[" IPv6 "%" scope "]:" port and NUL. */
#define SHIM_ADDRSTR_MAX 96u

/* Parses "https://host[:port][/]" where host is a DNS name, an IPv4 literal or
 * a bracketed IPv6 literal. Writes the host without brackets into host (cap >=
 * SHIM_HOST_MAX + 1) and the port (443 when absent; 0 is refused). Userinfo,
 * paths other than "/", queries and fragments are refused. Returns 0, or -1
 * with a NUL-terminated message in err. */
int shim_url_parse(const char *url, char *host, size_t hostcap, uint16_t *port, char *err,
                   size_t errlen);

/* Parses a numeric "a.b.c.d:port" or "[v6[%scope]]:port" (port 0..65535).
 * Returns 0 with *ss and *len set, or -1 with err. Never resolves names. */
int shim_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
                    size_t errlen);

/* Formats "a.b.c.d:port" or "[v6]:port" into buf (cap >= SHIM_ADDRSTR_MAX) and
 * returns buf; "?" for other families. */
const char *shim_addr_format(const struct sockaddr *sa, char *buf, size_t cap);

/* Formats host and port as "host:port", bracketing an IPv6 literal. Returns buf. */
const char *shim_hostport_format(const char *host, uint16_t port, char *buf, size_t cap);

/* 4 or 6 when host is an IPv4 or IPv6 literal (no brackets), else 0. */
int shim_host_ip_family(const char *host);

/* 1 when s is a non-empty run of RFC 3986 unreserved characters
 * [A-Za-z0-9._~-] no longer than max, usable as a path segment or query
 * value without escaping; else 0. */
int shim_token_valid(const char *s, size_t max);

#endif
