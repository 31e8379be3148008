/*
 * etcd_client.h — calls to etcd v3's JSON gateway on the gateway's libev
 * loop, for the tenant store (etcd.c) and whatever else the fleet keeps in
 * etcd.
 *
 * HTTP is libcurl's: the multi interface driven by libev (CURLMOPT_SOCKETFUNCTION
 * and CURLMOPT_TIMERFUNCTION, as curl's docs/examples/evhiperfifo.c does), and
 * the easy interface for the one blocking read at start-up. Every call is a
 * POST of a JSON body to the client's current endpoint; a caller that sees a
 * failure moves the client on to the next endpoint (etcd_client_failover).
 * The gateway encodes keys and values in base64 and 64-bit integers as JSON
 * strings: the helpers below convert.
 *
 * Ownership: the client owns its calls. A call's callbacks run on the loop,
 * never inside etcd_call/etcd_stream; after its done callback, or after
 * etcd_call_cancel, the call is gone. Freeing the client cancels every call
 * without running its callbacks.
 */
#ifndef SLUICE_ETCD_CLIENT_H
#define SLUICE_ETCD_CLIENT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

typedef struct etcd_client etcd_client_t;
typedef struct etcd_call etcd_call_t;

#define ETCD_BODY_MAX (64u * 1024u * 1024u) /* one response, or one line of a stream */

/* The end of a call: status 0 with the whole body (NUL-terminated; for a
 * stream, what followed the last line), or -1 with err, a one-line reason
 * (curl's, or "HTTP 4xx"). */
typedef void (*etcd_done_fn)(void *ud, int status, const char *body, size_t len,
                             const char *err);

/* One line of a streaming response (a watch, a lease keep-alive): one JSON
 * object. Return 0 to go on, or -1 to end the call (done then runs with
 * status -1, err "ended by the reader"). */
typedef int (*etcd_line_fn)(void *ud, const char *line, size_t len);

/* A client for endpoints (base URLs such as "http://127.0.0.1:2379", copied).
 * The loop may be NULL for a client that only makes blocking calls until
 * etcd_client_attach. NULL when out of memory or libcurl cannot start. */
etcd_client_t *etcd_client_new(const char *const *endpoints, size_t n);

/* Drives the client's calls on loop from now on. Returns 0, or -1. */
int etcd_client_attach(etcd_client_t *c, struct ev_loop *loop);

/* The endpoint calls go to now. */
const char *etcd_client_endpoint(const etcd_client_t *c);

/* Moves on to the next endpoint (round robin). */
void etcd_client_failover(etcd_client_t *c);

/* A blocking POST to path on the current endpoint: *body is the response
 * (malloc'd, NUL-terminated) or NULL with err. Returns 0 or -1. For start-up
 * only: nothing else runs while it waits (timeout_ms at most). */
int etcd_client_perform(etcd_client_t *c, const char *path, const char *body,
                        long timeout_ms, char **out, size_t *outlen, char *err,
                        size_t errlen);

/* A POST on the loop; done runs once, with the whole response. timeout_ms 0
 * means no limit. NULL when it cannot be set up (out of memory). */
etcd_call_t *etcd_call(etcd_client_t *c, const char *path, const char *body, long timeout_ms,
                       etcd_done_fn done, void *ud);

/* A streaming POST: line runs for every line as it arrives, done once at
 * the end. A stream is silent while nothing happens, so TCP keep-alive
 * watches the connection. NULL when it cannot be set up. */
etcd_call_t *etcd_stream(etcd_client_t *c, const char *path, const char *body,
                         etcd_line_fn line, etcd_done_fn done, void *ud);

/* Ends a call; its callbacks never run (again). NULL is a no-op. Safe from
 * any callback, the call's own included. */
void etcd_call_cancel(etcd_call_t *call);

/* Cancels every call and frees the client; NULL is a no-op. */
void etcd_client_free(etcd_client_t *c);

/* Helpers for the JSON gateway's encoding. */

/* Standard base64 of len bytes, NUL-terminated and malloc'd; NULL when out
 * of memory. */
char *etcd_b64_encode(const void *p, size_t len);
/* Decodes standard base64 into a NUL-terminated malloc'd buffer (length in
 * *outlen); NULL when invalid or out of memory. */
char *etcd_b64_decode(const char *s, size_t len, size_t *outlen);
/* An int64 field ("revision":"12"; a number is accepted too); absent is 0. */
int64_t etcd_json_int(const json_t *v);
/* The range end that selects every key starting with prefix: the prefix with
 * its last byte plus one, or "\0" (every key from it on) for a prefix of only
 * 0xff bytes; base64-encoded, malloc'd. NULL when out of memory. */
char *etcd_prefix_end_b64(const char *prefix);

#endif
