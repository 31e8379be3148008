/*
 * srclimit.c — per-source admission limits (see srclimit.h).
 *
 * Layout. A fixed pool of entries, indexed by uint32_t, and an array of chain
 * heads (separate chaining through the entries' `next`; the same link threads
 * the free list). Entries never move, so a connection's key is just the index
 * of its source's entry; an entry with pending connections is never
 * reclaimed, so that index stays valid for as long as the key holds a count.
 *
 * Every entry in use is either pending (pending > 0) or on the idle list
 * (pending == 0), a doubly linked list in the order entries went idle. An idle
 * entry is reclaimable once its bucket has refilled (tat <= now).
 *
 * Rate. The token bucket is kept as GCRA's theoretical arrival time `tat`
 * (one number instead of tokens plus a timestamp): each admitted connection
 * moves tat forward by the emission interval T = 1 s / rate; a connection is
 * within the rate when the new tat is at most burst * T ahead of now, and the
 * bucket is full exactly when tat <= now. With burst = rate, burst * T is one
 * second (plus rounding of T up to whole nanoseconds: at most rate ns), so no
 * entry's tat is ever more than ~1 s ahead of its last admit.
 */
#include "srclimit.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define NIL UINT32_MAX
#define PENDING_MAX ((1u << 31) - 1)
#define NS_PER_S 1000000000ull

struct srclimit_entry {
    uint64_t src;        /* IPv4 address, or the IPv6 /64 prefix, as a number */
    uint64_t tat;        /* GCRA theoretical arrival time, ns */
    uint32_t next;       /* hash chain (in use) or free list (free) */
    uint32_t idle_prev;  /* idle list, when pending == 0 */
    uint32_t idle_next;
    unsigned pending : 31;
    unsigned v6 : 1;     /* src is an IPv6 /64 (else an IPv4 address) */
};

_Static_assert(sizeof(struct srclimit_entry) == SRCLIMIT_ENTRY_BYTES,
               "SRCLIMIT_ENTRY_BYTES must match the entry layout");

const char *srclimit_rc_name(int rc)
{
    switch (rc) {
    case SRCLIMIT_OK: return "ok";
    case SRCLIMIT_RATE: return "rate";
    case SRCLIMIT_PENDING: return "pending";
    case SRCLIMIT_FULL: return "full";
    case SRCLIMIT_BADADDR: return "badaddr";
    default: return "unknown";
    }
}

/* ---- keyed hash ----------------------------------------------------------- */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND(v0, v1, v2, v3)                                                                  \
    do {                                                                                          \
        v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);                                 \
        v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                                    \
        v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                                    \
        v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);                                 \
    } while (0)

/* SipHash-2-4 of the 16-byte message whose little-endian words are m0, m1
 * (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012). A source
 * is always exactly two words, so the general byte loop is not needed. */
static uint64_t siphash_2w(uint64_t k0, uint64_t k1, uint64_t m0, uint64_t m1)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    const uint64_t last = (uint64_t)16 << 56; /* message length, no tail bytes */
    const uint64_t m[3] = {m0, m1, last};

    for (int i = 0; i < 3; i++) {
        v3 ^= m[i];
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m[i];
    }
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t bucket_of(const srclimit_t *s, uint64_t src, unsigned v6)
{
    return (uint32_t)siphash_2w(s->_k0, s->_k1, src, v6) & (s->_nbuckets - 1);
}

/* ---- source --------------------------------------------------------------- */

/* The source of a peer address: an IPv4 address, or an IPv6 /64 prefix; an
 * IPv4-mapped IPv6 address is its IPv4 address. Returns 0 or -1. */
static int source_of(const struct sockaddr *sa, socklen_t salen, uint64_t *src, unsigned *v6)
{
    sa_family_t family;

    if (sa == NULL || salen < (socklen_t)(offsetof(struct sockaddr, sa_family) + sizeof family))
        return -1;
    memcpy(&family, (const char *)sa + offsetof(struct sockaddr, sa_family), sizeof family);
    if (family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        *src = ntohl(in.sin_addr.s_addr);
        *v6 = 0;
        return 0;
    }
    if (family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        const uint8_t *b = in6.sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
            *src = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
            *v6 = 0;
        } else {
            *src = load_be64(b);
            *v6 = 1;
        }
        return 0;
    }
    return -1;
}

/* ---- lists ---------------------------------------------------------------- */

static int reclaimable(const srclimit_entry_t *e, uint64_t now_ns)
{
    return e->pending == 0 && e->tat <= now_ns;
}

static void idle_push(srclimit_t *s, uint32_t idx)
{
    srclimit_entry_t *e = &s->_pool[idx];
    e->idle_prev = s->_idle_tail;
    e->idle_next = NIL;
    if (s->_idle_tail != NIL)
        s->_pool[s->_idle_tail].idle_next = idx;
    else
        s->_idle_head = idx;
    s->_idle_tail = idx;
}

static void idle_unlink(srclimit_t *s, uint32_t idx)
{
    srclimit_entry_t *e = &s->_pool[idx];
    if (e->idle_prev != NIL)
        s->_pool[e->idle_prev].idle_next = e->idle_next;
    else
        s->_idle_head = e->idle_next;
    if (e->idle_next != NIL)
        s->_pool[e->idle_next].idle_prev = e->idle_prev;
    else
        s->_idle_tail = e->idle_prev;
}

static void free_push(srclimit_t *s, uint32_t idx)
{
    s->_pool[idx].next = s->_free;
    s->_free = idx;
    s->_used--;
}

/* Unlinks entry idx from its hash chain (it is there: it is in use). */
static void chain_unlink(srclimit_t *s, uint32_t idx)
{
    const srclimit_entry_t *e = &s->_pool[idx];
    uint32_t *link = &s->_buckets[bucket_of(s, e->src, e->v6)];
    while (*link != idx)
        link = &s->_pool[*link].next;
    *link = e->next;
}

/* A free entry, reclaiming the longest-idle one if the pool is used up and its
 * bucket has refilled; NIL when there is none. The entry is counted as used
 * and linked nowhere. */
static uint32_t entry_take(srclimit_t *s, uint64_t now_ns)
{
    uint32_t idx = s->_free;
    if (idx != NIL) {
        s->_free = s->_pool[idx].next;
        s->_used++;
        return idx;
    }
    idx = s->_idle_head;
    if (idx == NIL || !reclaimable(&s->_pool[idx], now_ns))
        return NIL;
    idle_unlink(s, idx);
    chain_unlink(s, idx);
    return idx;
}

/* ---- API ------------------------------------------------------------------ */

int srclimit_init(srclimit_t *s, size_t max_entries)
{
    memset(s, 0, sizeof *s);
    if (max_entries == 0 || max_entries > SRCLIMIT_MAX_ENTRIES) {
        errno = EINVAL;
        return -1;
    }
    uint32_t nb = 1;
    while (nb < max_entries)
        nb <<= 1;
    s->_pool = malloc(max_entries * sizeof *s->_pool);
    s->_buckets = malloc((size_t)nb * sizeof *s->_buckets);
    if (s->_pool == NULL || s->_buckets == NULL)
        goto err_nomem;

    uint8_t seed[16];
    size_t got = 0;
    while (got < sizeof seed) {
        ssize_t n = getrandom(seed + got, sizeof seed - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto err;
        got += (size_t)n;
    }
    s->_k0 = load_le64(seed);
    s->_k1 = load_le64(seed + 8);

    s->_nbuckets = nb;
    s->_max = (uint32_t)max_entries;
    memset(s->_buckets, 0xff, (size_t)nb * sizeof *s->_buckets); /* all NIL */
    for (uint32_t i = 0; i < s->_max; i++)
        s->_pool[i].next = i + 1 < s->_max ? i + 1 : NIL;
    s->_free = 0;
    s->_idle_head = s->_idle_tail = NIL;
    return 0;

err_nomem:
    errno = ENOMEM;
err:;
    int saved = errno;
    srclimit_dispose(s);
    errno = saved;
    return -1;
}

int srclimit_lock_init(srclimit_t *s)
{
    if (s->_lock)
        return 0;
    pthread_mutex_t *m = malloc(sizeof *m);
    if (!m || pthread_mutex_init(m, NULL) != 0) {
        free(m);
        errno = ENOMEM;
        return -1;
    }
    s->_lock = m;
    return 0;
}

void srclimit_view(srclimit_t *v, srclimit_t *owner)
{
    memset(v, 0, sizeof *v);
    v->_owner = owner;
}

void srclimit_dispose(srclimit_t *s)
{
    if (!s->_owner) {
        free(s->_pool);
        free(s->_buckets);
        if (s->_lock) {
            pthread_mutex_destroy(s->_lock);
            free(s->_lock);
        }
    }
    memset(s, 0, sizeof *s);
}

static int admit_locked(srclimit_t *s, const struct sockaddr *sa, socklen_t salen,
                        uint32_t max_pending, uint32_t rate_per_s, uint64_t now_ns,
                        srclimit_key_t *key)
{
    uint64_t src;
    unsigned v6;

    memset(key, 0, sizeof *key);
    if (source_of(sa, salen, &src, &v6) < 0)
        return SRCLIMIT_BADADDR;
    if (s->_pool == NULL)
        return SRCLIMIT_FULL;

    /* Find the source, reclaiming refilled idle entries met on the way: the
     * chain is walked to its end anyway, and this keeps chains short. */
    uint32_t b = bucket_of(s, src, v6), found = NIL;
    uint32_t *link = &s->_buckets[b];
    while (*link != NIL) {
        uint32_t idx = *link;
        srclimit_entry_t *e = &s->_pool[idx];
        if (e->src == src && e->v6 == v6) {
            found = idx;
        } else if (reclaimable(e, now_ns)) {
            *link = e->next;
            idle_unlink(s, idx);
            free_push(s, idx);
            continue;
        }
        link = &e->next;
    }

    if (rate_per_s == 0)
        return SRCLIMIT_RATE;
    const uint64_t t = (NS_PER_S + rate_per_s - 1) / rate_per_s; /* emission interval */
    const uint64_t window = (uint64_t)rate_per_s * t;             /* burst (= rate) * T */
    const uint32_t cap = max_pending < PENDING_MAX ? max_pending : PENDING_MAX;

    if (found != NIL) {
        srclimit_entry_t *e = &s->_pool[found];
        uint64_t tat = (e->tat > now_ns ? e->tat : now_ns) + t;
        if (tat - now_ns > window)
            return SRCLIMIT_RATE;
        if (e->pending >= cap)
            return SRCLIMIT_PENDING;
        if (e->pending == 0)
            idle_unlink(s, found);
        e->tat = tat;
        e->pending++;
    } else {
        if (cap == 0)
            return SRCLIMIT_PENDING;
        found = entry_take(s, now_ns);
        if (found == NIL)
            return SRCLIMIT_FULL;
        srclimit_entry_t *e = &s->_pool[found];
        e->src = src;
        e->v6 = v6;
        e->tat = now_ns + t; /* a full bucket, less this connection's token */
        e->pending = 1;
        e->next = s->_buckets[b];
        s->_buckets[b] = found;
    }
    key->_idx = found;
    key->_pending = 1;
    return SRCLIMIT_OK;
}

/* The table a call acts on: the owner for a view. */
static srclimit_t *table_of(srclimit_t *s)
{
    return s->_owner ? s->_owner : s;
}

int srclimit_admit(srclimit_t *s, const struct sockaddr *sa, socklen_t salen,
                   uint32_t max_pending, uint32_t rate_per_s, uint64_t now_ns,
                   srclimit_key_t *key)
{
    s = table_of(s);
    if (s->_lock)
        pthread_mutex_lock(s->_lock);
    int rc = admit_locked(s, sa, salen, max_pending, rate_per_s, now_ns, key);
    if (s->_lock)
        pthread_mutex_unlock(s->_lock);
    return rc;
}

void srclimit_release(srclimit_t *s, srclimit_key_t *key)
{
    int held = key->_pending;
    uint32_t idx = key->_idx;

    memset(key, 0, sizeof *key);
    if (!held)
        return;
    s = table_of(s);
    if (s->_lock)
        pthread_mutex_lock(s->_lock);
    if (s->_pool != NULL && idx < s->_max && s->_pool[idx].pending != 0 &&
        --s->_pool[idx].pending == 0)
        idle_push(s, idx);
    if (s->_lock)
        pthread_mutex_unlock(s->_lock);
}

size_t srclimit_entries(const srclimit_t *s)
{
    return s->_used;
}

size_t srclimit_bytes(const srclimit_t *s)
{
    if (s->_pool == NULL)
        return 0;
    return (size_t)s->_max * sizeof *s->_pool + (size_t)s->_nbuckets * sizeof *s->_buckets;
}
