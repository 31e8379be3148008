/*
 * fuzz_util.h — what the libFuzzer targets in tests/fuzz/ share: an assertion
 * that stops the fuzzer with a message (libFuzzer reports abort() as a crash
 * and keeps the input), and a small deterministic generator that turns bytes
 * of the input into choices (split points, operations), so that every run of
 * one input does the same thing.
 */
#ifndef SLUICE_FUZZ_UTIL_H
#define SLUICE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                               \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: fuzz assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* Reads choices from the front of the input; past its end every choice is 0. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t len;
} fuzz_in_t;

static inline uint8_t fuzz_u8(fuzz_in_t *in)
{
    if (in->len == 0)
        return 0;
    in->len--;
    return *in->p++;
}

static inline uint16_t fuzz_u16(fuzz_in_t *in)
{
    uint16_t hi = fuzz_u8(in);
    return (uint16_t)(hi << 8 | fuzz_u8(in));
}

/* Takes up to n bytes; *got is how many there were. */
static inline const uint8_t *fuzz_bytes(fuzz_in_t *in, size_t n, size_t *got)
{
    const uint8_t *p = in->p;
    *got = n < in->len ? n : in->len;
    in->p += *got;
    in->len -= *got;
    return p;
}

/* xorshift64*: the split points of one input, from a seed taken from it. */
static inline uint64_t fuzz_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

#endif
