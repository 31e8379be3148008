/*
 * ts_echo.h — a UDP echo backend on a thread, standing in for an SFU or TURN
 * server. It sends every datagram back to its source unchanged and records the
 * distinct source addresses it saw, so a test can tell how many gateway-side
 * tunnel sockets reached it.
 *
 * Bounded: it serves at most TS_ECHO_MAX_LIFE_MS (a benchmark that runs
 * longer says how long: ts_echo_start_for) and remembers at most
 * TS_ECHO_MAX_SOURCES sources (further ones are counted, not stored).
 */
#ifndef SLUICE_TS_ECHO_H
#define SLUICE_TS_ECHO_H

#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"

#define TS_ECHO_MAX_SOURCES 256u
#define TS_ECHO_MAX_LIFE_MS (10 * 60 * 1000)

typedef struct ts_echo ts_echo_t;

/* Binds the loopback of family (AF_INET / AF_INET6) on port 0 and starts the
 * thread. Returns NULL on failure. */
ts_echo_t *ts_echo_start(int family);

/* Called on the echo's thread with every datagram (after it is counted),
 * before it is echoed: returns 1 when it dealt with the datagram itself
 * (answered on fd, or dropped it), 0 to have it echoed. */
typedef int (*ts_echo_hook_t)(void *ud, int fd, const uint8_t *p, size_t len,
                              const ts_addr_t *src);

/* ts_echo_start with a hook (ts_stun is one). */
ts_echo_t *ts_echo_start_hooked(int family, ts_echo_hook_t hook, void *ud);

/* ts_echo_start_hooked on a given loopback port (0: any), for a backend that
 * restarts where it was. */
ts_echo_t *ts_echo_start_at(int family, uint16_t port, ts_echo_hook_t hook, void *ud);

/* ts_echo_start_at serving for life_ms instead of TS_ECHO_MAX_LIFE_MS; after
 * that the thread stops answering (a bound, never a way to stop it). */
ts_echo_t *ts_echo_start_for(int family, uint16_t port, ts_echo_hook_t hook, void *ud,
                             int64_t life_ms);

/* Where it listens, as an address and as "127.0.0.1:PORT" / "[::1]:PORT". */
const ts_addr_t *ts_echo_addr(const ts_echo_t *e);
const char *ts_echo_addr_str(const ts_echo_t *e);

/* Datagrams echoed so far. */
uint64_t ts_echo_packets(ts_echo_t *e);

/* Distinct source addresses seen so far (may exceed what fits in out). Copies
 * up to cap of them into out (may be NULL), in order of first appearance. */
size_t ts_echo_sources(ts_echo_t *e, ts_addr_t *out, size_t cap);

/* Datagrams received from one source. */
uint64_t ts_echo_packets_from(ts_echo_t *e, const ts_addr_t *src);

/* Stops the thread, closes the socket, frees e. NULL is a no-op. */
void ts_echo_stop(ts_echo_t *e);

#endif
