/* bucket.c — see bucket.h. */
#include "bucket.h"

#define NS 1000000000ull

static void refill(bucket_t *b, uint64_t now)
{
    if (now <= b->_last) {
        return; /* same instant, or a clock that went back: nothing gained */
    }
    uint64_t dt = now - b->_last;
    b->_last = now;
    uint64_t cap = b->burst * NS;
    uint64_t room = cap - b->_level;
    /* rate x dt would overflow for long gaps: compare through a division
     * first (dt >= room / rate means the bucket fills). */
    if (dt >= room / b->rate + 1)
        b->_level = cap;
    else
        b->_level += b->rate * dt < room ? b->rate * dt : room;
}

static void clamp(uint64_t *rate, uint64_t *burst)
{
    if (*rate > BUCKET_RATE_MAX)
        *rate = BUCKET_RATE_MAX;
    if (*burst > BUCKET_BURST_MAX)
        *burst = BUCKET_BURST_MAX;
    if (*rate && !*burst)
        *burst = 1;
}

void bucket_init(bucket_t *b, uint64_t rate, uint64_t burst, uint64_t now)
{
    clamp(&rate, &burst);
    b->rate = rate;
    b->burst = burst;
    b->_level = burst * NS;
    b->_last = now;
}

void bucket_set(bucket_t *b, uint64_t rate, uint64_t burst, uint64_t now)
{
    if (b->rate)
        refill(b, now);
    else
        b->_level = UINT64_MAX; /* was unlimited: start full */
    clamp(&rate, &burst);
    b->rate = rate;
    b->burst = burst;
    b->_last = now;
    if (b->_level > burst * NS)
        b->_level = burst * NS;
}

int bucket_take(bucket_t *b, uint64_t n, uint64_t now)
{
    if (!b->rate)
        return 1;
    if (n > b->burst)
        return 0;
    refill(b, now);
    if (b->_level < n * NS)
        return 0;
    b->_level -= n * NS;
    return 1;
}

uint64_t bucket_tokens(bucket_t *b, uint64_t now)
{
    if (!b->rate)
        return UINT64_MAX;
    refill(b, now);
    return b->_level / NS;
}

uint64_t bucket_wait_ns(bucket_t *b, uint64_t n, uint64_t now)
{
    if (!b->rate)
        return 0;
    if (n > b->burst)
        return UINT64_MAX;
    refill(b, now);
    if (b->_level >= n * NS)
        return 0;
    uint64_t need = n * NS - b->_level;
    return (need + b->rate - 1) / b->rate; /* rounded up: after it, n are there */
}
