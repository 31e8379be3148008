/*
 * ts_http.h — HTTP/2 requests with the curl command-line tool.
 *
 * A black-box check of the gateway's HTTP side through an independent client:
 * curl --http2 verifying the development certificate (--cacert, no -k), with
 * the status, negotiated version and content type taken from -w, the response
 * body from -o and the response headers from -D.
 */
#ifndef SLUICE_TS_HTTP_H
#define SLUICE_TS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define TS_HTTP_MAX_HEADERS 8

typedef struct ts_http_req {
    const char *url;
    const char *method;                          /* NULL: POST */
    const char *headers[TS_HTTP_MAX_HEADERS];    /* "name: value", NULL-terminated */
    const char *body_file;                       /* --data-binary @file; NULL: no body */
    int max_time_s;                              /* curl --max-time; 0: 10 */
    const char *ca_file;                         /* NULL: <build>/dev/cert.pem */
} ts_http_req_t;

typedef struct ts_http_resp {
    int curl_exit;          /* curl's exit code (28: --max-time reached) */
    int status;             /* %{http_code}; 0 when no response came */
    char version[8];        /* %{http_version}: "2" for HTTP/2 */
    char content_type[128]; /* %{content_type} */
    char *body;             /* malloc'd, NUL-terminated; body_len excludes the NUL */
    size_t body_len;
    char *headers;          /* malloc'd raw response headers (-D) */
    char *err;              /* curl's stderr */
} ts_http_resp_t;

/* Runs curl for req. Returns 0 when curl ran (see resp), -1 when it could not
 * be started. Free resp with ts_http_resp_free. */
int ts_http(const ts_http_req_t *req, ts_http_resp_t *resp);
void ts_http_resp_free(ts_http_resp_t *resp);

/* Starts curl as a long-lived tunnel client: POST url with the credential
 * headers, request body streamed from p->in_fd (write capsules there; close it
 * to end the body), response body written to body_path as it arrives. curl
 * gives up after max_time_s. Returns 0 or -1. Dispose p when done.
 *
 * curl 7.88 quirk: while its stdin has nothing to read, curl pauses the upload
 * and does not hand received response data to its output until stdin becomes
 * readable again. A test waiting for response bytes must therefore keep
 * writing: ts_http_tunnel_nudge writes one GREASE capsule (RFC 9297 §5.4),
 * which the gateway must skip. */
struct ts_proc;
int ts_http_tunnel_start(struct ts_proc *p, const char *url, const char *username,
                         const char *credential, const char *body_path, int max_time_s);

/* Waits for the curl tunnel p to exit, nudging it every 20 ms, until deadline.
 * Returns its exit code or -1 (still running). */
int ts_http_tunnel_wait_exit(struct ts_proc *p, int64_t deadline);

#endif
