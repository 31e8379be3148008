/*
 * ts_soak.h — the client side of the soak (issue 10 §5): N tunnels on K
 * libsluice-shim connections to one sluiced, each sending a fixed rate of
 * media datagrams that the backend echoes, while a share of the tunnels is
 * continuously replaced (the old one stops sending, waits for its last
 * echoes, closes; a new one opens in its slot). Used by bench_soak (`make
 * soak`) and test_soak (the short version in the test command).
 *
 * Pacing is open loop, as in bench_load: packet j of the run is due at
 * t0 + j / (N * pps) and belongs to slot j % N; a slot whose tunnel is not
 * open yet skips its turn (counted as skipped, never sent late). Payload:
 * byte 0 0x80 (RTP by RFC 7983's first byte: a DATAGRAM capsule), byte 1
 * TS_SOAK_MARK, then the tunnel's serial number (u32), its sequence number
 * (u32) and the send time (CLOCK_MONOTONIC ns, i64), host order; zeros after.
 *
 * Every tunnel is accounted for by itself: a retired tunnel stops sending,
 * then closes once every packet it sent came back or linger_ms passed; what
 * it sent and never got back is its loss. ts_soak_finish retires every tunnel
 * the same way, so at the end every packet ever sent is either received or
 * counted lost, tunnel by tunnel.
 *
 * The clients' queues are large (1 MiB, 10 s) so that the generator never
 * drops what it offers: a loss is the gateway's or the kernel's. A tunnel
 * that ends unasked is counted and its slot opened afresh on the next tick
 * (a connection that ends is counted; its slots keep failing to open).
 *
 * Single-threaded: everything runs on the caller's loop. Bounded: at most
 * TS_SOAK_MAX_TUNNELS slots, TS_SOAK_MAX_CLIENTS connections, and retiring
 * tunnels are capped (beyond the cap a replacement waits for the next tick).
 */
#ifndef SLUICE_TS_SOAK_H
#define SLUICE_TS_SOAK_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ts_hist.h"

#define TS_SOAK_MARK 0x53
#define TS_SOAK_HDR 18 /* 0x80, MARK, serial u32, seq u32, time i64 */
#define TS_SOAK_MAX_SIZE 1200
#define TS_SOAK_MAX_TUNNELS 10000u
#define TS_SOAK_MAX_CLIENTS 1000u
#define TS_SOAK_MAX_RETIRING 4096u

typedef struct ts_soak_opts {
    uint16_t port;          /* sluiced on 127.0.0.1 */
    const char *ca_file;    /* its certificate's CA */
    const char *tenant, *secret; /* an sfu tenant, sha1 secret */
    size_t tunnels;         /* slots: tunnels live at once, 1..TS_SOAK_MAX_TUNNELS */
    size_t clients;         /* connections carrying them, 1..TS_SOAK_MAX_CLIENTS */
    double pps;             /* per tunnel, > 0 */
    size_t size;            /* payload bytes, TS_SOAK_HDR..TS_SOAK_MAX_SIZE */
    double churn;           /* share of the slots replaced per second, 0..1 */
    uint32_t linger_ms;     /* a retired tunnel's wait for its last echoes (0: 1000) */
    uint32_t cred_ttl_s;    /* credentials expire this long after each open (0: 3600;
                             * the tenant's max_ttl must allow it) */
} ts_soak_opts_t;

/* What happened since the previous ts_soak_window call (or the start). */
typedef struct ts_soak_window {
    uint64_t sent, rx, bad, skipped;
    uint64_t opened, closed;     /* tunnels answered 200; retired tunnels that ended */
    uint64_t lost;               /* packets retired tunnels sent and never got back */
    uint64_t unexpected;         /* tunnels or connections that ended unasked */
    ts_hist_t rtt;               /* ns, of the packets received */
} ts_soak_window_t;

/* Since the start. */
typedef struct ts_soak_totals {
    uint64_t sent, rx, bad, reordered, skipped;
    uint64_t opened;             /* tunnels answered 200 */
    uint64_t closed;             /* retired tunnels whose close completed */
    uint64_t short_tunnels;      /* ended tunnels that got back less than they sent */
    uint64_t lost;               /* sum over ended tunnels of sent - received */
    uint64_t unexpected;         /* tunnels or connections that ended without being asked */
    size_t live, retiring;       /* now */
    char why[256];               /* the first unexpected end */
} ts_soak_totals_t;

typedef struct ts_soak ts_soak_t;

/* Connects the clients and opens every slot's tunnel, waiting (running loop)
 * until all are answered 200, before deadline. NULL with a reason in why on
 * failure (what was opened is freed). Sending and churn start with
 * ts_soak_start. */
ts_soak_t *ts_soak_open(struct ev_loop *loop, const ts_soak_opts_t *o, int64_t deadline,
                        char *why, size_t cap);

/* Starts the paced sending and the churn (t0 = now). */
void ts_soak_start(ts_soak_t *s);

/* Moves the counters since the last call into *w (and resets them). */
void ts_soak_window(ts_soak_t *s, ts_soak_window_t *w);

/* Fills *t. */
void ts_soak_totals(const ts_soak_t *s, ts_soak_totals_t *t);

/* Stops sending and churning, retires every live tunnel, and runs the loop
 * until every tunnel has ended or deadline. Returns 0 when all ended, -1 at
 * the deadline. */
int ts_soak_finish(ts_soak_t *s, int64_t deadline);

/* Frees the clients (and with them any tunnel still open). NULL: no-op. */
void ts_soak_free(ts_soak_t *s);

#endif
