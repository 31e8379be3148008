/*
 * linger.h — closing a client's socket without losing our last words.
 *
 * When the gateway ends a connection (a GOAWAY with the reason, a 400 to a
 * cleartext client) the client may still be sending. close() on a socket
 * with unread bytes, or one that receives bytes afterwards, makes the kernel
 * answer with a reset, and a reset throws away whatever of ours is still in
 * the send queue: the GOAWAY that says why can vanish, and the client sees
 * only "connection reset" (RFC 9113 §6.8 and §5.4.1 want the GOAWAY to
 * arrive; HTTP/1.1 servers call this a lingering close, RFC 9112 §9.6).
 *
 * linger_close half-closes instead (shutdown(SHUT_WR): our bytes go out,
 * then a FIN) and keeps reading and discarding what the client sends until
 * it closes its side too, or for at most `seconds`, then closes. Bounded:
 * at most `max` sockets linger at once per set (beyond, they close at once),
 * each for at most `seconds`, with reads of at most LINGER_READS_PER_EVENT
 * × 16 KiB per readiness event.
 *
 * One set per event loop; not thread-safe.
 */
#ifndef SLUICE_LINGER_H
#define SLUICE_LINGER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/list.h"

#define LINGER_READS_PER_EVENT 4

typedef struct linger_set {
    struct ev_loop *loop;
    list_t socks;         /* lingering sockets (linger.c) */
    size_t count, max;    /* lingering now; at most */
    double seconds;
} linger_set_t;

/* An empty set on loop: at most max sockets at once, each for at most
 * seconds. */
void linger_init(linger_set_t *set, struct ev_loop *loop, size_t max, double seconds);

/* Takes ownership of fd, a connected non-blocking TCP socket whose last
 * bytes have been written: half-closes it and closes it once the peer has
 * closed its side or set->seconds have passed. Closes at once when the set
 * is full, the socket cannot be half-closed, or the peer has already gone. */
void linger_close(linger_set_t *set, int fd);

/* Closes every lingering socket now (shutdown). Idempotent. */
void linger_dispose(linger_set_t *set);

#endif
