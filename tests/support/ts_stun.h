/*
 * ts_stun.h — a tiny STUN responder on a thread, standing in for the public
 * UDP address of a backend (a TURN server answers Binding requests the same
 * way). On loopback only, port 0.
 *
 * It answers every valid Binding request (proto/stun.h) with a success
 * response carrying the source as XOR-MAPPED-ADDRESS, and echoes every other
 * datagram back to its source, so it also serves as the backend a direct flow
 * talks to. ts_stun_mute() makes it drop everything (a path that went
 * silent) until unmuted. Built on ts_echo (its hook), so bounded like it.
 */
#ifndef SLUICE_TS_STUN_H
#define SLUICE_TS_STUN_H

#include <stdint.h>

#include "ts_net.h"

typedef struct ts_stun ts_stun_t;

/* Binds the loopback of family on port 0 and starts the thread. NULL on
 * failure. */
ts_stun_t *ts_stun_start(int family);

/* ts_stun_start on a given loopback port (a backend restarted where it was).
 * NULL on failure (the port is taken). */
ts_stun_t *ts_stun_start_at(int family, uint16_t port);

const ts_addr_t *ts_stun_addr(const ts_stun_t *s);
const char *ts_stun_addr_str(const ts_stun_t *s); /* "127.0.0.1:PORT" / "[::1]:PORT" */

/* 1: drop everything from now on; 0: answer again. */
void ts_stun_mute(ts_stun_t *s, int mute);

/* Binding requests answered, other datagrams echoed, datagrams dropped while
 * muted, so far. */
uint64_t ts_stun_requests(ts_stun_t *s);
uint64_t ts_stun_echoed(ts_stun_t *s);
uint64_t ts_stun_dropped(ts_stun_t *s);

/* Stops the thread, closes the socket, frees s. NULL is a no-op. */
void ts_stun_stop(ts_stun_t *s);

#endif
