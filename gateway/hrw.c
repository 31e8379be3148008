/* hrw.c — see hrw.h. */
#include "hrw.h"

/* The splitmix64 finalizer: every input bit affects every output bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint64_t hrw_hash(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return mix64(h);
}

uint64_t hrw_score(uint64_t key, uint64_t node)
{
    /* Mixing the pair, not key ^ node alone: otherwise two nodes' order would
     * be the same for keys differing only in bits both ids share. */
    return mix64(key ^ mix64(node + 0x9e3779b97f4a7c15ull));
}

long hrw_pick(uint64_t key, const uint64_t *nodes, const unsigned char *up, size_t n)
{
    long best = -1;
    uint64_t best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (!up[i])
            continue;
        uint64_t s = hrw_score(key, nodes[i]);
        if (best < 0 || s > best_score) {
            best = (long)i;
            best_score = s;
        }
    }
    return best;
}
