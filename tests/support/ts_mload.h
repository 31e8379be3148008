/*
 * ts_mload.h — the client side of bench_load's non-sluice rows (issue 9 §1):
 * N users, each on its own transport to a relay, sending and receiving media
 * datagrams on a libev loop.
 *
 *   TS_MLOAD_UDP       one connected UDP socket per user, payload as is (to
 *                      udp_fwd, the floor)
 *   TS_MLOAD_TURN_UDP  one UDP socket per user to a TURN server, one
 *                      allocation each, payload in ChannelData (RFC 8656 §12)
 *   TS_MLOAD_TURN_TLS  the same over one TLS connection per user (OpenSSL,
 *                      the server's certificate checked against ca_file for
 *                      127.0.0.1), ChannelData padded to 4 bytes (§12.5)
 *
 * For TURN, ts_mload_open allocates for every user (ts_turn_setup: the
 * long-term credential, CreatePermission and ChannelBind to peer) before it
 * returns; the relay is then ready. Every datagram that arrives for user i is
 * handed to rx(ud, i, payload, len) from the loop (payload valid during the
 * call). Sends never block: a UDP send the kernel refuses, or TLS output
 * beyond OUT_MAX per user, is dropped and counted (ts_mload_dropped).
 * Single-threaded: everything runs on the caller's loop.
 */
#ifndef SLUICE_TS_MLOAD_H
#define SLUICE_TS_MLOAD_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"

typedef enum ts_mload_kind {
    TS_MLOAD_UDP,
    TS_MLOAD_TURN_UDP,
    TS_MLOAD_TURN_TLS,
} ts_mload_kind_t;

typedef void (*ts_mload_rx_t)(void *ud, uint32_t user, const uint8_t *p, size_t len);

typedef struct ts_mload_opts {
    ts_mload_kind_t kind;
    size_t users;              /* 1..TS_MLOAD_MAX_USERS */
    const ts_addr_t *server;   /* the relay's client-facing address (IPv4) */
    const ts_addr_t *peer;     /* TURN: where the relay sends (the echo) */
    const char *ca_file;       /* TURN over TLS: the server's CA */
    const char *username, *password; /* TURN: the long-term credential */
    ts_mload_rx_t rx;
    void *ud;
} ts_mload_opts_t;

#define TS_MLOAD_MAX_USERS 1000u

typedef struct ts_mload ts_mload_t;

/* Opens every user's transport (and allocation) before deadline. NULL with a
 * reason in why on failure (what was opened is closed). */
ts_mload_t *ts_mload_open(struct ev_loop *loop, const ts_mload_opts_t *o, int64_t deadline,
                          char *why, size_t cap);

/* Sends one datagram for user. 0, or -1 when it was dropped. */
int ts_mload_send(ts_mload_t *m, uint32_t user, const uint8_t *p, size_t len);

/* Datagrams dropped on the sending side so far; frames that arrived and did
 * not parse (or came on an unknown channel). */
uint64_t ts_mload_dropped(const ts_mload_t *m);
uint64_t ts_mload_bad(const ts_mload_t *m);

/* Closes everything (TLS: close_notify, best effort) and frees m. NULL: no-op. */
void ts_mload_free(ts_mload_t *m);

#endif
