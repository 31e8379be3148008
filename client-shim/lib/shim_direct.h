/*
 * shim_direct.h — the plain-UDP rung of the fallback ladder, below the CLI:
 * the reachability check (public API: sluice_udp_check_* in sluice_shim.h,
 * implemented in direct.c) and the direct relay of one flow.
 *
 * A direct relay is one connected UDP socket to the backend's public address
 * (the --direct address): what the application sends goes out on it, what
 * comes back on it goes to on_packet. It watches for silence: when packets
 * have gone out and no reply has come back for silence_ms since the first of
 * them, on_silent is called (once; the owner then moves the flow to the
 * tunnel and disposes the relay). Runs on the owner's libev loop; the watchers
 * are embedded, so the owner keeps the struct where it is until dispose.
 */
#ifndef SHIM_DIRECT_H
#define SHIM_DIRECT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sluice_shim.h"

#define SHIM_DIRECT_READS_PER_EVENT 64 /* fairness: datagrams per readiness event */

typedef struct shim_direct_relay shim_direct_relay_t;

typedef struct shim_direct_relay_opts {
    const struct sockaddr *addr; /* the direct address; copied */
    socklen_t addrlen;
    uint32_t silence_ms;         /* > 0 */
    /* One datagram from the direct address; p valid during the call. */
    void (*on_packet)(shim_direct_relay_t *r, const uint8_t *p, size_t len, void *ud);
    /* Replies stopped for silence_ms while packets went out. Called once; the
     * owner may dispose r inside it. */
    void (*on_silent)(shim_direct_relay_t *r, void *ud);
    void *ud;
} shim_direct_relay_opts_t;

struct shim_direct_relay {
    struct ev_loop *_loop;
    int _fd;
    ev_io _io;
    ev_timer _silence;
    uint32_t _silence_ms;
    int _waiting;           /* sent since the last reply */
    uint64_t _waiting_since_ms;
    int _silent;            /* on_silent delivered */
    void (*_on_packet)(shim_direct_relay_t *, const uint8_t *, size_t, void *);
    void (*_on_silent)(shim_direct_relay_t *, void *);
    void *_ud;
    uint64_t tx_packets, rx_packets, tx_errors;
    uint8_t _buf[65536];
};

/* Makes the socket (connected to opts->addr) and starts watching it.
 * Returns 0, or -1 with a message in err (socket or connect failed). */
int shim_direct_relay_init(shim_direct_relay_t *r, struct ev_loop *loop,
                           const shim_direct_relay_opts_t *opts, char *err, size_t errlen);

/* Sends one datagram to the direct address (a full socket buffer or an ICMP
 * error drops it, counted in tx_errors: UDP semantics). Returns 0 or -1. */
int shim_direct_relay_send(shim_direct_relay_t *r, const uint8_t *p, size_t len);

/* Stops the watchers and closes the socket. Idempotent, and safe after a
 * failed init (which leaves _fd at -1). Safe inside on_packet / on_silent:
 * the read loop stops once the socket is closed. */
void shim_direct_relay_dispose(shim_direct_relay_t *r);

#endif
