/*
 * owd.h — how long a packet took beyond the fastest its path has been, from
 * the sender's stamps (proto/README.md §5.1.1), without synchronised clocks.
 *
 * A stamped packet carries the sender's clock (microseconds, modulo 2^32)
 * from when it entered the sender. Its arrival time on the receiver's clock
 * minus that stamp is the one-way delay plus an unknown, constant offset
 * between the two clocks. The smallest such difference seen lately is the
 * path's base (its delay with nothing queued, plus the offset); a packet's
 * difference above that base is the time it waited: in the sender's queue,
 * its TLS and kernel buffers, the network. LEDBAT (RFC 6817 §3.4.2) keeps its
 * base the same way: the minimum of a few one-minute buckets, so that a
 * slowly drifting clock or a changed path is followed within the window.
 *
 * The differences are kept relative to the first one, as signed 32-bit
 * microseconds, so the modulo-2^32 stamps wrap harmlessly (about every 71
 * minutes) as long as delays and drift stay under 35 minutes.
 *
 * Pure: no I/O; the receiver's time comes in as nanoseconds.
 */
#ifndef SLUICE_OWD_H
#define SLUICE_OWD_H

#include <stdint.h>

#define OWD_BUCKETS 10u
#define OWD_BUCKET_NS (60ull * 1000000000ull) /* one minute */

typedef struct owd {
    int32_t min_us[OWD_BUCKETS]; /* smallest relative difference of each bucket */
    int32_t base_us;             /* the smallest of the buckets in use */
    uint64_t bucket_start_ns;    /* arrival time the current bucket began */
    uint32_t origin_us;          /* the first packet's difference */
    uint8_t cur, used;           /* current bucket; buckets holding a minimum */
} owd_t;

/* An estimator with no packet seen yet (all-zero is the same). */
void owd_init(owd_t *o);

/* Takes one stamped packet: sent_us is its stamp, arrival_ns when it arrived
 * on the receiver's clock. Returns how long it waited beyond the base, in
 * nanoseconds (0 for the first packet, and for any packet at or below the
 * base, which then becomes the base). */
uint64_t owd_sample(owd_t *o, uint32_t sent_us, uint64_t arrival_ns);

#endif
