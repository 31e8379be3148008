/*
 * ts_coturn.h — Debian's coturn (/usr/bin/turnserver) as a real TURN backend
 * for integration tests, and turnutils_peer as the peer behind it.
 *
 * ts_coturn_start runs turnserver in the foreground (-n: no config file) on
 * 127.0.0.1 only, UDP only (no TCP, TLS, DTLS, CLI or RFC 5780 alternate
 * port), with the long-term credential mechanism (RFC 8656 §9.2, one static
 * user TS_COTURN_USER:TS_COTURN_PASSWORD in realm TS_COTURN_REALM), loopback
 * peers allowed (they are refused by default) and a relay port range of its
 * own. Its log, pid file and user database live in a fresh mkdtemp directory
 * under ts_tmpdir(); nothing is read from or written to /etc or /var.
 *
 * coturn cannot listen on port 0 and report the port back, so the listening
 * port (and the start of the relay range) is picked by binding port 0 and
 * closing it; readiness is a STUN Binding request (RFC 8489 §5) answered on
 * that port, and a start whose port was taken in between is retried with new
 * ports (a bounded number of times).
 *
 * ts_coturn_start_opts adds what a benchmark needs: a TLS listener (RFC 8656
 * §3.1, TURN over TLS; --cert/--pkey, its TCP port picked the same way and
 * waited for until it accepts) and a relay range of its own size (one port
 * per allocation).
 *
 * It is stopped by pid (ts_proc: SIGTERM, then SIGKILL to its group); the
 * ts_proc net kills it if the test dies first.
 */
#ifndef SLUICE_TS_COTURN_H
#define SLUICE_TS_COTURN_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "ts_net.h"
#include "ts_proc.h"

#define TS_COTURN_USER "sluice"
#define TS_COTURN_PASSWORD "turn-test-pw"
#define TS_COTURN_REALM "sluice.test"
#define TS_COTURN_RELAY_PORTS 64u   /* size of the relay port range */
#define TS_COTURN_BIN "/usr/bin/turnserver"
#define TS_COTURN_PEER_BIN "/usr/bin/turnutils_peer"
#define TS_COTURN_UCLIENT_BIN "/usr/bin/turnutils_uclient"

typedef struct ts_coturn {
    ts_proc_t proc;
    char dir[PATH_MAX - 32];  /* its private directory (removed with ts_tmpdir()) */
    char log_path[PATH_MAX];  /* <dir>/turn.log, written with -v (one line per request) */
    ts_addr_t listen;         /* 127.0.0.1:PORT, UDP */
    char listen_str[64];
    uint16_t min_port;        /* relay range, inclusive */
    uint16_t max_port;
    int has_tls;              /* ts_coturn_start_opts with a certificate */
    ts_addr_t tls_listen;     /* 127.0.0.1:PORT, TLS over TCP */
} ts_coturn_t;

typedef struct ts_coturn_opts {
    const char *cert, *key;   /* PEM files; both set: a TLS listener too */
    unsigned relay_ports;     /* size of the relay range; 0: TS_COTURN_RELAY_PORTS */
} ts_coturn_opts_t;

/* 1 when /usr/bin/turnserver, turnutils_peer and turnutils_uclient are all
 * executable (a test can then fail with a clear message instead of a spawn
 * error). */
int ts_coturn_available(void);

/* Starts turnserver as described above and returns once it has answered a STUN
 * Binding request. Returns 0; or -1 (spawn failure, exit, no answer before
 * deadline) with its output dumped. The caller disposes t after a failure too. */
int ts_coturn_start(ts_coturn_t *t, int64_t deadline);

/* ts_coturn_start with opts (NULL: the same as ts_coturn_start). With a
 * certificate, it also returns only once the TLS port accepts a connection. */
int ts_coturn_start_opts(ts_coturn_t *t, const ts_coturn_opts_t *opts, int64_t deadline);

/* ts_proc_stop on turnserver: its exit code, or -1. */
int ts_coturn_stop(ts_coturn_t *t, int64_t deadline);

/* Kills and reaps it if still running. Idempotent; safe on a zeroed struct. */
void ts_coturn_dispose(ts_coturn_t *t);

/* The log's current length: a mark, so that a later search sees only what a
 * step of the test caused. */
size_t ts_coturn_log_mark(const ts_coturn_t *t);

/* Occurrences of needle in the log after mark (0 when the log is unreadable). */
size_t ts_coturn_log_count(const ts_coturn_t *t, size_t mark, const char *needle);

/* Waits until needle occurs in the log after mark, re-reading it in short
 * slices. Returns 0, or -1 with the log's tail dumped when the deadline passes. */
int ts_coturn_log_wait(const ts_coturn_t *t, size_t mark, const char *needle, int64_t deadline);

/* Prints the last few KiB of the log after mark to stderr (diagnostics). */
void ts_coturn_log_dump(const ts_coturn_t *t, size_t mark, const char *why);

/* turnutils_peer: a UDP echo on 127.0.0.1 that TURN clients send to through
 * the relay. */
typedef struct ts_turn_peer {
    ts_proc_t proc;
    ts_addr_t addr;
    char addr_str[64];
} ts_turn_peer_t;

/* Starts turnutils_peer on a free loopback port (picked as for coturn) and
 * returns once it has echoed a datagram. Returns 0 or -1 (output dumped). */
int ts_turn_peer_start(ts_turn_peer_t *p, int64_t deadline);
int ts_turn_peer_stop(ts_turn_peer_t *p, int64_t deadline);
void ts_turn_peer_dispose(ts_turn_peer_t *p);

#endif
