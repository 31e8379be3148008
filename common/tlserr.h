/*
 * tlserr.h — OpenSSL's error queue as one line of text, for the gateway
 * (gateway/tls.c, conn.c) and the shim (client-shim/lib/tls.c, client.c).
 *
 * Lives in common/ rather than proto/ because it reads and empties OpenSSL's
 * per-thread error queue: state, however small, where proto/ is pure. Linked
 * into both libsluiced.a and libsluice-shim.a.
 */
#ifndef SLUICE_TLSERR_H
#define SLUICE_TLSERR_H

#include <stddef.h>

/* Formats the oldest error on the calling thread's OpenSSL error queue —
 * usually the root cause, later entries being the callers that passed it up —
 * as "<library>: <reason>" (a system error as its strerror text), followed by
 * " (<detail>)" when OpenSSL attached one, e.g.
 *   "PEM routines: no start line (Expecting: TRUSTED CERTIFICATE)".
 * Writes fallback instead when the queue is empty. Always empties the queue,
 * so a stale error cannot be blamed on a later call. buf is NUL-terminated
 * (cap > 0). Returns buf. */
const char *tlserr_take(char *buf, size_t cap, const char *fallback);

#endif
