/*
 * hostport.h — splitting "host:port" text, the one way both sides do it.
 *
 * Accepted forms (RFC 3986 §3.2.2 authority syntax, without userinfo):
 *
 *   host:port       host has no ':' (a name or an IPv4 literal)
 *   [v6]:port       an IPv6 literal always goes in brackets
 *   host, [v6]      only with HOSTPORT_PORT_OPTIONAL (a URL's default port)
 *
 * The port is 1 to 5 decimal digits with a value of at most 65535; port 0 is
 * accepted here and refused by callers for which it makes no sense. The host
 * is only located, never judged: whether it is an IP literal, a valid DNS name
 * or resolvable is for the caller. Pure: no allocation, no DNS; out->host
 * points into the input.
 *
 * Users: gateway/config.c (listen, echo and backend addresses) and
 * client-shim/lib/addr.c (the gateway URL's authority, --listen).
 */
#ifndef SLUICE_HOSTPORT_H
#define SLUICE_HOSTPORT_H

#include <stddef.h>
#include <stdint.h>

enum hostport_err {
    HOSTPORT_OK = 0,
    HOSTPORT_ERR_NO_PORT = -1,     /* no ":port" and the port is required */
    HOSTPORT_ERR_BRACKET = -2,     /* "[" without "]", or something other than ":" after "]" */
    HOSTPORT_ERR_UNBRACKETED = -3, /* ':' in a host not in brackets (an IPv6 literal?) */
    HOSTPORT_ERR_EMPTY_HOST = -4,  /* ":80", "[]:80" */
    HOSTPORT_ERR_PORT = -5,        /* port empty, not digits, more than 5 of them, or > 65535 */
};

enum hostport_flags {
    HOSTPORT_PORT_OPTIONAL = 1, /* "host" and "[v6]" alone are accepted (has_port 0) */
};

typedef struct hostport {
    const char *host; /* into the input; brackets excluded */
    size_t host_len;
    int bracketed;    /* 1 for the "[v6]" form */
    int has_port;     /* 0 only with HOSTPORT_PORT_OPTIONAL */
    uint16_t port;    /* 0 when has_port is 0 */
} hostport_t;

/* Splits s[0..len). Returns HOSTPORT_OK with *out filled, or a negative
 * hostport_err (*out is then unspecified). */
int hostport_split(const char *s, size_t len, unsigned flags, hostport_t *out);

/* Decimal port s[0..len): 1 to 5 digits, at most 65535. Returns 0 or
 * HOSTPORT_ERR_PORT. */
int hostport_port_parse(const char *s, size_t len, uint16_t *port);

/* A static description of a hostport_err ("ok" for HOSTPORT_OK). */
const char *hostport_strerror(int rc);

#endif
