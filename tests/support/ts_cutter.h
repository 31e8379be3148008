/*
 * ts_cutter.h — a TCP relay for tests that can cut its connections, standing
 * in for a proxy or a network that kills long-lived connections.
 *
 * It listens on the loopback (port 0, read back) and, for each connection it
 * accepts, connects to its target (ts_cutter_retarget moves it for new
 * connections) and copies bytes both ways; a half close
 * (FIN) is passed on after the bytes before it, and a reset or error on one
 * side resets the other. ts_cutter_cut_all() resets every live connection on
 * both sides (SO_LINGER 0 + close: the peers see RST, RFC 9293 §3.5.2) and
 * leaves the listener up, so a client can reconnect through it at once.
 *
 * One thread runs a poll loop over the listener, a control pipe and every
 * connection; the functions below may be called from any other thread.
 * Bounded: at most TS_CUTTER_MAX_CONNS live connections (one more accepted is
 * reset at once), TS_CUTTER_BUF bytes buffered per direction (a full buffer
 * stops reading that side: TCP flow control does the rest), and the thread
 * serves at most TS_CUTTER_MAX_LIFE_MS.
 */
#ifndef SLUICE_TS_CUTTER_H
#define SLUICE_TS_CUTTER_H

#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"

#define TS_CUTTER_MAX_CONNS 32u
#define TS_CUTTER_BUF 65536u
#define TS_CUTTER_MAX_LIFE_MS (10 * 60 * 1000)

typedef struct ts_cutter ts_cutter_t;

/* Listens on the loopback of target's family, port 0, relaying to target, and
 * starts the thread. Returns NULL on failure. */
ts_cutter_t *ts_cutter_start(const ts_addr_t *target);

/* Where it listens, as an address and as "127.0.0.1:PORT" / "[::1]:PORT". */
const ts_addr_t *ts_cutter_addr(const ts_cutter_t *c);
const char *ts_cutter_addr_str(const ts_cutter_t *c);

/* Connections accepted since start (cut or not). */
uint64_t ts_cutter_accepted(ts_cutter_t *c);

/* Connections now relaying (or connecting to the target). */
size_t ts_cutter_live(ts_cutter_t *c);

/* Bytes copied client -> target and target -> client since start. */
uint64_t ts_cutter_bytes_up(ts_cutter_t *c);
uint64_t ts_cutter_bytes_down(ts_cutter_t *c);

/* Resets every live connection, both sides, and returns once the relay thread
 * has done it (bounded by a deadline of its own). Returns how many connections
 * were cut, or -1 when the thread did not answer in time. */
int ts_cutter_cut_all(ts_cutter_t *c);

/* New connections go to target from now on (a load balancer taking a
 * backend out); live ones stay where they are. */
void ts_cutter_retarget(ts_cutter_t *c, const ts_addr_t *target);

/* New connections to the target are made from source (an address, port 0 for
 * any, e.g. 127.0.0.2 on the loopback: a client whose address changed); NULL:
 * the kernel's choice again. Live ones stay as they are. */
void ts_cutter_set_source(ts_cutter_t *c, const ts_addr_t *source);

/* Stops the thread, resets what is still live, closes the listener and frees
 * c. NULL is a no-op. */
void ts_cutter_stop(ts_cutter_t *c);

#endif
