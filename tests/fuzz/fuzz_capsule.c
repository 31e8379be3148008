/*
 * fuzz_capsule.c — proto/capsule.c: the incremental capsule reader
 * (capsule_reader_next) and the one-shot decoder (capsule_decode).
 *
 * Input: byte 0 chooses max_value (small limits reach PROTO_ERR_TOO_LARGE),
 * bytes 1..8 seed the split points, the rest is a capsule stream.
 *
 * Asserts that the stream read three ways gives the same capsules (type,
 * length, value bytes) in the same order and ends the same way (the same error,
 * or the same pending byte count):
 *   - capsule_decode in a loop over the contiguous stream;
 *   - one reader fed the whole stream in one chunk;
 *   - one reader fed it in chunks cut at pseudo-random points (including empty
 *     chunks and one-byte chunks).
 * And that every capsule value lies inside the chunk or the reader's buffer and
 * is never longer than max_value, and that a failed reader stays failed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "../../proto/proto.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one reading saw: capsules as (type, len, value) records, then the end. */
typedef struct trace {
    uint8_t *log;
    size_t len, cap;
    int rc;         /* 0, or the negative proto_err that ended the stream */
    size_t pending; /* capsule_reader_pending at the end */
} trace_t;

static void trace_add(trace_t *t, const capsule_t *c)
{
    size_t need = 2 * sizeof(uint64_t) + c->len;
    FUZZ_ASSERT(t->len + need <= t->cap);
    uint64_t len = c->len;
    memcpy(t->log + t->len, &c->type, sizeof c->type);
    memcpy(t->log + t->len + 8, &len, sizeof len);
    if (c->len > 0)
        memcpy(t->log + t->len + 16, c->value, c->len);
    t->len += need;
}

static int inside(const uint8_t *p, size_t n, const uint8_t *base, size_t base_len)
{
    return p >= base && p + n <= base + base_len;
}

/* Feeds one chunk; returns 0 to go on, or the negative error that ended it. */
static int feed(capsule_reader_t *r, uint8_t *buf, size_t cap, const uint8_t *chunk,
                size_t n, trace_t *t)
{
    const uint8_t *src = chunk;
    size_t len = n;
    capsule_t c;
    const char *err = NULL;
    int rc;
    size_t guard = 0;
    while ((rc = capsule_reader_next(r, &src, &len, &c, &err)) > 0) {
        FUZZ_ASSERT(++guard <= n + 1);
        FUZZ_ASSERT(c.len <= r->max_value);
        FUZZ_ASSERT(c.len == 0 || inside(c.value, c.len, chunk, n) || inside(c.value, c.len, buf, cap));
        trace_add(t, &c);
    }
    if (rc < 0) {
        FUZZ_ASSERT(err != NULL);
        /* A failed reader stays failed, with the same error. */
        const uint8_t one = 0;
        const uint8_t *s2 = &one;
        size_t l2 = 1;
        FUZZ_ASSERT(capsule_reader_next(r, &s2, &l2, &c, NULL) == rc);
        return rc;
    }
    FUZZ_ASSERT(rc == 0 && len == 0 && src == chunk + n);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {0, 1, 7, 8, 63, 300, 1200, CAPSULE_DEFAULT_MAX_VALUE};
    if (size < 9)
        return 0;
    size_t max_value = limits[data[0] % (sizeof limits / sizeof limits[0])];
    uint64_t seed = 0;
    memcpy(&seed, data + 1, 8);
    seed |= 1; /* xorshift needs a non-zero state */
    const uint8_t *stream = data + 9;
    size_t n = size - 9;

    size_t cap = max_value + CAPSULE_MAX_HEADER;
    uint8_t *buf = malloc(cap);
    /* Each capsule is >= 2 bytes on the wire and costs 16 + len in a trace. */
    size_t tcap = 8 * n + n + 16;
    trace_t t[3];
    for (int i = 0; i < 3; i++)
        t[i] = (trace_t){.log = malloc(tcap), .cap = tcap};
    FUZZ_ASSERT(buf && t[0].log && t[1].log && t[2].log);

    /* 1. capsule_decode over the contiguous stream. */
    size_t off = 0;
    for (;;) {
        capsule_t c;
        const char *err = NULL;
        if (off == n)
            break;
        ssize_t r = capsule_decode(stream + off, n - off, max_value, &c, &err);
        if (r == PROTO_INCOMPLETE) {
            t[0].pending = n - off;
            break;
        }
        if (r < 0) {
            FUZZ_ASSERT(err != NULL);
            t[0].rc = (int)r;
            break;
        }
        FUZZ_ASSERT((size_t)r <= n - off && c.len <= max_value);
        FUZZ_ASSERT(inside(c.value, c.len, stream + off, (size_t)r));
        trace_add(&t[0], &c);
        off += (size_t)r;
    }

    /* 2. One reader, the whole stream at once. */
    capsule_reader_t rd;
    capsule_reader_init(&rd, buf, cap, max_value);
    t[1].rc = feed(&rd, buf, cap, stream, n, &t[1]);
    t[1].pending = capsule_reader_pending(&rd);

    /* 3. One reader, chunks cut at pseudo-random points. */
    capsule_reader_init(&rd, buf, cap, max_value);
    off = 0;
    while (off < n && t[2].rc == 0) {
        uint64_t x = fuzz_rand(&seed);
        size_t k;
        switch (x & 3) {
        case 0: k = 0; break;               /* an empty chunk */
        case 1: k = 1; break;               /* one byte */
        default: k = (size_t)(x >> 8) % (n - off + 1); break;
        }
        if (k > n - off)
            k = n - off;
        /* A chunk of its own, so a pointer past it would be caught by ASan. */
        uint8_t *chunk = malloc(k ? k : 1);
        FUZZ_ASSERT(chunk != NULL);
        memcpy(chunk, stream + off, k);
        t[2].rc = feed(&rd, buf, cap, chunk, k, &t[2]);
        free(chunk);
        off += k;
    }
    t[2].pending = capsule_reader_pending(&rd);

    for (int i = 1; i < 3; i++) {
        FUZZ_ASSERT(t[i].rc == t[0].rc);
        FUZZ_ASSERT(t[i].len == t[0].len && memcmp(t[i].log, t[0].log, t[0].len) == 0);
        if (t[0].rc == 0)
            FUZZ_ASSERT(t[i].pending == t[0].pending);
    }

    for (int i = 0; i < 3; i++)
        free(t[i].log);
    free(buf);
    return 0;
}
