/*
 * ts_curl.h — one HTTP/1.1 request with libcurl's easy interface, for tests
 * that talk to an HTTP/1.1 service on loopback: the gateway's admin API,
 * etcd's JSON gateway. (ts_http.h runs the curl tool for HTTP/2 instead.)
 */
#ifndef SLUICE_TS_CURL_H
#define SLUICE_TS_CURL_H

#include <stddef.h>

typedef struct ts_curl_reply {
    long status;        /* the HTTP status, or -1 when no response came */
    char body[16384];   /* NUL-terminated; a longer body is cut, len counts what was kept */
    size_t len;
    char err[256];      /* curl's message when status is -1 */
} ts_curl_reply_t;

/* Sends method (NULL: GET, or POST with a body) to url with headers (each
 * "Name: value", NULL-terminated list, may be NULL) and body (NULL: none),
 * never through a proxy, within timeout_ms. Returns r->status. */
long ts_curl(const char *method, const char *url, const char *const *headers, const char *body,
             long timeout_ms, ts_curl_reply_t *r);

#endif
