/* hostport.c — see hostport.h. */
#include "hostport.h"

#include <string.h>

int hostport_port_parse(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;
    if (len == 0 || len > 5)
        return HOSTPORT_ERR_PORT;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return HOSTPORT_ERR_PORT;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return HOSTPORT_ERR_PORT;
    *port = (uint16_t)v;
    return HOSTPORT_OK;
}

int hostport_split(const char *s, size_t len, unsigned flags, hostport_t *out)
{
    const char *end = s + len;
    const char *colon; /* the ':' before the port, or NULL */

    memset(out, 0, sizeof *out);
    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (!rb)
            return HOSTPORT_ERR_BRACKET;
        out->host = s + 1;
        out->host_len = (size_t)(rb - s - 1);
        out->bracketed = 1;
        if (rb + 1 < end && rb[1] != ':')
            return HOSTPORT_ERR_BRACKET;
        colon = rb + 1 < end ? rb + 1 : NULL;
    } else {
        colon = len > 0 ? memrchr(s, ':', len) : NULL;
        out->host = s;
        out->host_len = colon ? (size_t)(colon - s) : len;
        if (memchr(out->host, ':', out->host_len))
            return HOSTPORT_ERR_UNBRACKETED;
    }
    if (out->host_len == 0)
        return HOSTPORT_ERR_EMPTY_HOST;
    if (!colon)
        return (flags & HOSTPORT_PORT_OPTIONAL) ? HOSTPORT_OK : HOSTPORT_ERR_NO_PORT;
    out->has_port = 1;
    return hostport_port_parse(colon + 1, (size_t)(end - colon - 1), &out->port);
}

const char *hostport_strerror(int rc)
{
    switch (rc) {
    case HOSTPORT_OK:
        return "ok";
    case HOSTPORT_ERR_NO_PORT:
        return "expected host:port";
    case HOSTPORT_ERR_BRACKET:
        return "expected [IPv6 address]:port";
    case HOSTPORT_ERR_UNBRACKETED:
        return "write an IPv6 address as [address]:port";
    case HOSTPORT_ERR_EMPTY_HOST:
        return "no host before the port";
    case HOSTPORT_ERR_PORT:
        return "the port must be an integer from 0 to 65535";
    default:
        return "unknown error";
    }
}
