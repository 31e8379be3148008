/*
 * bucket.h — a token bucket with exact integer arithmetic.
 *
 * A bucket holds up to `burst` tokens and gains `rate` tokens a second; a
 * packet of n units (1 for a packets/s limit, its size in bits for a bits/s
 * limit) passes when n tokens are there, and takes them. The level is kept
 * in token-nanoseconds (tokens x 10^9), so a refill of rate x elapsed_ns is
 * exact: no rounding drifts however often it is called.
 *
 * Pure: no clock reads and no allocation. Time is the caller's monotonic
 * clock in ns, passed to every call; a time earlier than the last one seen
 * refills nothing. rate 0 means "no limit": every take succeeds.
 */
#ifndef SLUICE_BUCKET_H
#define SLUICE_BUCKET_H

#include <stdint.h>

/* Bounds that keep burst x 10^9 and rate x elapsed within 64 bits. */
#define BUCKET_BURST_MAX 10000000000ull /* tokens: 10 Gbit of burst */
#define BUCKET_RATE_MAX 1000000000000ull /* tokens a second: 1 Tbit/s */

typedef struct bucket {
    uint64_t rate;    /* tokens a second; 0: unlimited */
    uint64_t burst;   /* capacity in tokens (at least 1 when rate > 0) */
    uint64_t _level;  /* tokens x 10^9 */
    uint64_t _last;   /* monotonic ns of the last refill */
} bucket_t;

/* A full bucket at time now. rate and burst are clamped to the maxima above;
 * a burst of 0 with a rate is taken as 1 so that a bucket can ever pass. */
void bucket_init(bucket_t *b, uint64_t rate, uint64_t burst, uint64_t now);

/* New figures for a live bucket (a reload): the tokens it holds are kept, up
 * to the new burst. */
void bucket_set(bucket_t *b, uint64_t rate, uint64_t burst, uint64_t now);

/* Refills up to now, then takes n tokens if there are that many. Returns 1
 * (taken) or 0 (not enough: nothing taken). n over the burst never passes. */
int bucket_take(bucket_t *b, uint64_t n, uint64_t now);

/* Whole tokens available at now (after refill, without taking). */
uint64_t bucket_tokens(bucket_t *b, uint64_t now);

/* ns from now until n tokens are there (0: now); UINT64_MAX when n exceeds
 * the burst. Does not change the bucket beyond refilling it. */
uint64_t bucket_wait_ns(bucket_t *b, uint64_t n, uint64_t now);

#endif
