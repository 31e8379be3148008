/* owd.c — see owd.h. */
#include "owd.h"

#include <string.h>

void owd_init(owd_t *o)
{
    memset(o, 0, sizeof *o);
}

uint64_t owd_sample(owd_t *o, uint32_t sent_us, uint64_t arrival_ns)
{
    uint32_t diff = (uint32_t)(arrival_ns / 1000u) - sent_us; /* modulo 2^32 */

    if (!o->used) {
        o->origin_us = diff;
        o->min_us[0] = o->base_us = 0;
        o->cur = 0;
        o->used = 1;
        o->bucket_start_ns = arrival_ns;
        return 0;
    }
    int32_t rel = (int32_t)(diff - o->origin_us);
    /* A new bucket each minute; after a silence longer than the window the
     * old minimums are all stale and the base starts afresh. */
    if (arrival_ns - o->bucket_start_ns >= OWD_BUCKET_NS) {
        uint64_t steps = (arrival_ns - o->bucket_start_ns) / OWD_BUCKET_NS;
        if (steps >= OWD_BUCKETS) {
            o->used = 1;
            o->cur = 0;
            o->bucket_start_ns = arrival_ns;
        } else {
            o->cur = (uint8_t)((o->cur + steps) % OWD_BUCKETS);
            o->used = (uint8_t)(o->used + steps > OWD_BUCKETS ? OWD_BUCKETS : o->used + steps);
            o->bucket_start_ns += steps * OWD_BUCKET_NS;
            /* Buckets skipped over saw no packet: they hold no minimum. */
            for (uint64_t i = 1; i < steps; i++)
                o->min_us[(o->cur + OWD_BUCKETS - i) % OWD_BUCKETS] = INT32_MAX;
        }
        o->min_us[o->cur] = rel;
        /* Once a minute, the base over the window as it now stands. */
        o->base_us = INT32_MAX;
        for (unsigned i = 0; i < o->used; i++) {
            int32_t m = o->min_us[(o->cur + OWD_BUCKETS - i) % OWD_BUCKETS];
            if (m < o->base_us)
                o->base_us = m;
        }
    } else if (rel < o->min_us[o->cur]) {
        o->min_us[o->cur] = rel;
        if (rel < o->base_us)
            o->base_us = rel;
    }
    return rel > o->base_us ? (uint64_t)((int64_t)rel - o->base_us) * 1000u : 0;
}
