/*
 * harness.h — an in-memory HTTP/2 client talking to the gateway's session.
 *
 * No TLS and no TCP: the client's nghttp2 session and a memory-mode conn_t
 * exchange bytes directly (conn_feed / conn_pull). Tunnels are real: the
 * config's sfu pool (and, with h_init_turn, its turn pool) names a UDP socket
 * owned by the harness (the "backend"), so a test sees exactly what the
 * gateway sends to the backend and can answer; otherwise the turn pool is
 * empty (503). Tenants "acme" and "other" share one secret.
 */
#ifndef SLUICE_TEST_HARNESS_H
#define SLUICE_TEST_HARNESS_H

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../../gateway/conn.h"
#include "../../gateway/log.h"
#include "../../gateway/server.h"

#define H_STREAMS 8
#define H_BODY_CAP (1u << 20)

typedef struct h_stream {
    int32_t id;
    int status;              /* :status, 0 until the response headers */
    uint8_t *down;           /* response body bytes received */
    size_t down_len;
    uint8_t up[65536 + 64];  /* request body bytes not yet sent */
    size_t up_len, up_off;
    int up_eof;              /* end the request body once up is drained */
    int deferred;
    int closed;              /* stream closed */
    uint32_t close_error;    /* RST_STREAM error code (0: closed cleanly) */
    int got_rst;
    int end_stream;          /* response body ended with END_STREAM */
    char session[64];        /* the tunnel-session response header, "" when absent */
    char retry_after[16];    /* the retry-after response header, "" when absent */
    char node[64];           /* the tunnel-node response header (a 421), "" when absent */
    char stamps[8];          /* the tunnel-stamps response header, "" when absent */
    char media_age[12];      /* the tunnel-media-age response header, "" when absent */
} h_stream_t;

typedef struct harness {
    struct ev_loop *loop;
    config_t *cfg;
    server_t srv;
    conn_t *conn;
    nghttp2_session *client;
    h_stream_t streams[H_STREAMS];
    int nstreams;
    int got_goaway;
    const char *offer_stamps;         /* tunnel-stamps value of the next h_open*, or NULL */
    uint32_t goaway_error;            /* error code of the last GOAWAY */
    int pings;                        /* PINGs received (not ACKs) */
    int backend_fd;                   /* the UDP backend the pools name */
    struct sockaddr_storage backend;  /* its address */
    socklen_t backend_len;
} harness_t;

/* Sets up loop, config, server state, connection and client. limits_json is
 * inserted into "limits" (may be ""). client_window is the client's
 * SETTINGS_INITIAL_WINDOW_SIZE (0: nghttp2's default). */
void h_init(harness_t *h, const char *limits_json, uint32_t client_window);
/* The same, with the turn pool naming the backend too when turn is 1. */
void h_init_turn(harness_t *h, const char *limits_json, uint32_t client_window, int turn);
/* The same, with tenants[i].limits of "acme" and "other" (JSON members, may
 * be ""). */
void h_init_tenants(harness_t *h, const char *limits_json, uint32_t client_window, int turn,
                    const char *acme_limits, const char *other_limits);
void h_fini(harness_t *h);

/* Moves bytes both ways and runs the loop once without blocking, until nothing
 * moves (bounded). */
void h_pump(harness_t *h);

/* The client's SETTINGS_INITIAL_WINDOW_SIZE 0, sent and pumped: every stream's
 * window is shut, those already open included (RFC 9113 §6.9.2), until the
 * client sends WINDOW_UPDATE. */
void h_shut_windows(harness_t *h);

/* Pumps and runs the loop until cond(h, arg) holds or timeout_ms passes.
 * Returns 1 when it holds. */
int h_until(harness_t *h, int (*cond)(harness_t *, void *), void *arg, int timeout_ms);

/* Runs only the gateway's loop (no bytes move between the peers) until
 * cond(h, arg) holds or timeout_ms passes. Returns 1 when it holds. */
int h_loop_until(harness_t *h, int (*cond)(harness_t *, void *), void *arg, int timeout_ms);

/* Opens POST path with valid credentials for tenant "acme" (or the given
 * username/credential when not NULL). Returns the stream index. */
int h_open(harness_t *h, const char *path);
/* The same with a credential that expires ttl_s seconds from now. */
int h_open_ttl(harness_t *h, const char *path, int ttl_s);

/* The same with the username's user part (NULL: "harness") and a
 * tunnel-resume header (NULL: none). */
int h_open_as(harness_t *h, const char *path, int ttl_s, const char *user, const char *resume);

/* The client's connection dies (as a reset TCP connection would): the
 * gateway frees it, and a new connection and client session replace it.
 * Stream records are cleared (indices start again at 0). */
void h_reconnect(harness_t *h);

/* Swaps in a new snapshot as server_reload does (without TLS or listeners):
 * the harness's config (regions "local" and "eu" on the backend, tenant
 * "other") with tenant acme as acme_json ("" leaves it out), then applies it
 * to the live tunnels (server_tenants_apply) and pumps. Returns how many
 * tunnels were closed. */
size_t h_retenant(harness_t *h, const char *acme_json);

/* Queues uplink bytes on a stream and pumps. */
void h_send(harness_t *h, int idx, const void *bytes, size_t len);
void h_send_capsule(harness_t *h, int idx, uint64_t type, const void *value, size_t len);
void h_end(harness_t *h, int idx);

/* Backend side: receive one datagram within timeout (returns length or -1)
 * and reply to the last sender. */
ssize_t h_backend_recv(harness_t *h, uint8_t *buf, size_t cap, struct sockaddr_storage *from,
                       int timeout_ms);
void h_backend_send(harness_t *h, const struct sockaddr_storage *to, const void *p, size_t len);

/* Closes the backend socket (backend_fd becomes -1): the pools then name a
 * loopback UDP port nobody listens on, and what a tunnel sends there draws
 * ICMP port unreachable (ECONNREFUSED on its connected socket). */
void h_backend_close(harness_t *h);

/* A DATAGRAM capsule (context id 0) around one UDP payload, sent and pumped. */
void h_send_datagram(harness_t *h, int idx, const uint8_t *p, size_t len);

/* Sends one datagram up, asserts the backend receives exactly it, and returns
 * the backend's view of the tunnel's source address (to reply to). */
struct sockaddr_storage h_relay_up(harness_t *h, int idx, const uint8_t *p, size_t len);

/* An h_until condition: arg is int[2] {stream index, count}; true once the
 * stream's body holds at least count capsules. */
int h_has_capsules(harness_t *h, void *arg);

/* Waits (pumping) until a stream's body holds at least count capsules;
 * asserts they come within 2 s. */
void h_wait_capsules(harness_t *h, int idx, int count);

/* The nth (from 0) capsule of a stream's response body; asserts it exists. */
void h_nth_capsule(harness_t *h, int idx, int nth, uint64_t *type, const uint8_t **v,
                   size_t *len);

/* Asserts the nth capsule of a stream's body is CLOSE with this code. */
void h_assert_close(harness_t *h, int idx, int nth, uint64_t code);

/* Capsules of type in a stream's response body so far. */
int h_count_capsules(harness_t *h, int idx, uint64_t type);

/* The code of the stream's CLOSE capsule (asserts there is one). */
uint64_t h_close_code(harness_t *h, int idx);

/* Decodes the next capsule of a stream's response body at *off (advancing it).
 * Returns 1 with *c set, 0 when no complete capsule is there yet. */
int h_next_capsule(h_stream_t *s, size_t *off, uint64_t *type, const uint8_t **value,
                   size_t *len);

#endif
