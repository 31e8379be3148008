/*
 * srclimit.h — per-source admission limits for the accept path.
 *
 * One source (an IPv4 address, or an IPv6 /64, since anyone who has one
 * address of a /64 has all of them) may hold at most max_pending connections
 * that have not opened a tunnel yet, and may open new connections at most
 * rate_per_s per second with a burst of the same number (a token bucket, kept
 * as a GCRA "theoretical arrival time"). An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) is the IPv4 source a.b.c.d.
 *
 * Memory is fixed at init: max_entries entries of SRCLIMIT_ENTRY_BYTES and
 * 4 bytes per hash bucket (as many buckets as the next power of two >=
 * max_entries); srclimit_bytes reports the total. No allocation after init;
 * every call is O(1) expected. An entry
 * exists while its source has pending connections or its bucket has not
 * refilled (at most burst/rate = about 1 s after its last admitted
 * connection). Idle entries are reclaimed lazily: those met on the new
 * source's hash chain, and, when the table is full, the entry that has been
 * idle longest if its bucket has refilled. Otherwise admit says
 * SRCLIMIT_FULL — which therefore means max_entries sources each had a
 * connection pending, or admitted within about the last second.
 *
 * Sources are hashed with SipHash-2-4 under a key drawn from getrandom(2) at
 * init, so a client cannot pick addresses that share a chain.
 *
 * Pure data structure: no I/O, no clock (time is an argument), no globals.
 * Limits are arguments too, so a reload that changes them needs no rebuild.
 * One table serves the whole process: with several workers (worker.h) the
 * first worker's table is the process's, made lockable (srclimit_lock_init),
 * and every other worker's srclimit_t is a view of it (srclimit_view): each
 * call then takes the owner's mutex, once per accepted connection and once
 * when it stops being pending, never per packet. A source's limits are
 * therefore the same whichever worker's listener the kernel hands it to.
 */
#ifndef SLUICE_SRCLIMIT_H
#define SLUICE_SRCLIMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum srclimit_rc {
    SRCLIMIT_OK = 0,
    SRCLIMIT_RATE = -1,    /* the source is over its rate of new connections */
    SRCLIMIT_PENDING = -2, /* the source already holds max_pending tunnel-less connections */
    SRCLIMIT_FULL = -3,    /* no entry free and none reclaimable (or the table is not set up) */
    SRCLIMIT_BADADDR = -4, /* not an AF_INET / AF_INET6 address of full length */
};

/* "ok", "rate", "pending", "full", "badaddr" (for logs and counters). */
const char *srclimit_rc_name(int rc);

/* The usual table size for one server: 2,359,296 bytes. */
#define SRCLIMIT_DEFAULT_ENTRIES 65536u
/* Largest max_entries srclimit_init accepts. */
#define SRCLIMIT_MAX_ENTRIES (1u << 24)
/* Bytes of one pool entry (the bucket array adds 4 per bucket). */
#define SRCLIMIT_ENTRY_BYTES 32u

typedef struct srclimit_entry srclimit_entry_t; /* private, see srclimit.c */

typedef struct srclimit {
    srclimit_entry_t *_pool; /* max_entries entries; NULL before init / after dispose */
    uint32_t *_buckets;      /* chain heads, _nbuckets (a power of two >= max_entries) */
    uint32_t _nbuckets;
    uint32_t _max;           /* max_entries */
    uint32_t _used;          /* entries in use */
    uint32_t _free;          /* free list through the entries' chain link */
    uint32_t _idle_head;     /* entries with no pending connection, oldest first */
    uint32_t _idle_tail;
    uint64_t _k0, _k1;       /* SipHash key */
    struct srclimit *_owner; /* a view (srclimit_view): every call goes to the owner */
    pthread_mutex_t *_lock;  /* the owner's mutex once srclimit_lock_init ran; NULL: none */
} srclimit_t;

/* What a connection keeps after an admit, to release its pending count later.
 * A zeroed key holds nothing, so a connection that was never admitted (or was
 * refused) can be released safely. */
typedef struct srclimit_key {
    uint32_t _idx;     /* pool index of the source's entry */
    uint32_t _pending; /* 1 while this connection counts as pending */
} srclimit_key_t;

/* Allocates a table for max_entries sources (1..SRCLIMIT_MAX_ENTRIES) and draws
 * its hash key. Returns 0, or -1 with errno EINVAL (bad max_entries), ENOMEM,
 * or getrandom's error; s is then disposed (safe to dispose again). */
int srclimit_init(srclimit_t *s, size_t max_entries);

/* Gives an initialised table a mutex, so that views (srclimit_view) may use
 * it from other threads. Returns 0 or -1 (ENOMEM). */
int srclimit_lock_init(srclimit_t *s);

/* Makes v (zeroed, never initialised) a view of owner, which must be
 * lockable and outlive v: admit and release on v act on owner under its
 * mutex. srclimit_dispose on a view only forgets the owner. */
void srclimit_view(srclimit_t *v, srclimit_t *owner);

/* Frees the table; idempotent, and safe on a zeroed srclimit_t. Keys still held
 * must not be used with a table initialised again afterwards. */
void srclimit_dispose(srclimit_t *s);

/* A new connection from sa (salen bytes, as accept returned it) at now_ns
 * (CLOCK_MONOTONIC; not ev_now(), which follows the wall clock: a step back
 * would hold a source's bucket empty for as long as the step). Returns:
 *   SRCLIMIT_OK       admitted: one token taken, the source's pending count
 *                     raised, and *key set — release it with srclimit_release;
 *   SRCLIMIT_RATE     no token left (rate_per_s 0: never admits);
 *   SRCLIMIT_PENDING  the source holds max_pending (0: never admits) pending
 *                     connections already; counts above 2^31 - 1 act as it;
 *   SRCLIMIT_FULL     a new source, and no entry free or reclaimable;
 *   SRCLIMIT_BADADDR  sa is NULL, too short, or of another family.
 * A refused connection takes no token and changes nothing but the lazy
 * reclaiming of idle entries; *key is then zeroed. When both limits are
 * exceeded, RATE is reported. */
int srclimit_admit(srclimit_t *s, const struct sockaddr *sa, socklen_t salen,
                   uint32_t max_pending, uint32_t rate_per_s, uint64_t now_ns,
                   srclimit_key_t *key);

/* The connection no longer counts as pending: call it when its first tunnel
 * opens and again when it closes. Only the first call after an OK admit has an
 * effect (the key remembers), so the count is never decremented twice. A
 * zeroed key, or any call after dispose, only zeroes the key. */
void srclimit_release(srclimit_t *s, srclimit_key_t *key);

/* Entries in use (sources with pending connections or a refilling bucket,
 * plus idle ones not reclaimed yet). */
size_t srclimit_entries(const srclimit_t *s);

/* Bytes allocated by init: max_entries * SRCLIMIT_ENTRY_BYTES + 4 * buckets. */
size_t srclimit_bytes(const srclimit_t *s);

#endif
