/* test_srclimit.c — gateway/srclimit.c: the pending cap and the rate per
 * source, what a source is (IPv4, IPv6 /64, v4-mapped), the table bound and
 * its reclaiming, release semantics, the hash, and a randomised run against a
 * model with the table's invariants checked after every step. Time is
 * injected; nothing sleeps. The .c is included to reach the hash and to walk
 * the table's lists. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "../../gateway/srclimit.c"

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC) /* an arbitrary monotonic start */
#define BIG 1000000u     /* a limit that never bites */

/* ---- helpers -------------------------------------------------------------- */

typedef struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
} addr_t;

static addr_t mk(const char *ip, uint16_t port)
{
    addr_t a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        a.len = sizeof *in;
    } else {
        cr_assert_eq(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1, "bad test address %s", ip);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        a.len = sizeof *in6;
    }
    return a;
}

static int adm(srclimit_t *s, const char *ip, uint32_t max_pending, uint32_t rate, uint64_t now,
               srclimit_key_t *key)
{
    static uint16_t port = 1024;
    addr_t a = mk(ip, port++);
    srclimit_key_t scratch;
    return srclimit_admit(s, (const struct sockaddr *)&a.ss, a.len, max_pending, rate, now,
                          key ? key : &scratch);
}

/* The entry of ip's source, or NULL (looked up without reclaiming anything). */
static const srclimit_entry_t *entry_of(const srclimit_t *s, const char *ip)
{
    addr_t a = mk(ip, 1);
    uint64_t src;
    unsigned v6;
    cr_assert_eq(source_of((const struct sockaddr *)&a.ss, a.len, &src, &v6), 0);
    for (uint32_t i = s->_buckets[bucket_of(s, src, v6)]; i != NIL; i = s->_pool[i].next)
        if (s->_pool[i].src == src && s->_pool[i].v6 == v6)
            return &s->_pool[i];
    return NULL;
}

static uint32_t pending_of(const srclimit_t *s, const char *ip)
{
    const srclimit_entry_t *e = entry_of(s, ip);
    return e ? e->pending : 0;
}

/* Every structural promise of srclimit.c: each entry in use sits in the chain
 * its hash names, once; no source twice; in use = pending or on the idle list
 * (in order, links consistent); free list + in use = the pool. */
static void check_invariants(const srclimit_t *s)
{
    uint8_t *state = calloc(s->_max, 1); /* 1 in use, 2 idle-listed, 4 free */
    cr_assert_not_null(state);
    uint32_t used = 0, idle_expected = 0;
    for (uint32_t b = 0; b < s->_nbuckets; b++) {
        uint32_t steps = 0;
        for (uint32_t i = s->_buckets[b]; i != NIL; i = s->_pool[i].next) {
            cr_assert_lt(i, s->_max);
            cr_assert_lt(steps++, s->_max, "chain %u loops", b);
            cr_assert_eq(state[i], 0, "entry %u in two chains", i);
            state[i] = 1;
            used++;
            const srclimit_entry_t *e = &s->_pool[i];
            cr_assert_eq(bucket_of(s, e->src, e->v6), b, "entry %u in the wrong chain", i);
            for (uint32_t j = e->next; j != NIL; j = s->_pool[j].next)
                cr_assert(!(s->_pool[j].src == e->src && s->_pool[j].v6 == e->v6),
                          "source twice in chain %u", b);
            if (e->pending == 0)
                idle_expected++;
        }
    }
    cr_assert_eq(used, s->_used);
    uint32_t idle = 0, prev = NIL;
    for (uint32_t i = s->_idle_head; i != NIL; prev = i, i = s->_pool[i].idle_next) {
        cr_assert_lt(idle++, s->_max + 1, "idle list loops");
        cr_assert_eq(state[i], 1, "idle entry %u not in use", i);
        cr_assert_eq(s->_pool[i].pending, 0, "entry %u idle-listed with pending", i);
        cr_assert_eq(s->_pool[i].idle_prev, prev);
        state[i] = 2;
    }
    cr_assert_eq(s->_idle_tail, prev);
    cr_assert_eq(idle, idle_expected, "every idle entry is on the idle list");
    uint32_t nfree = 0;
    for (uint32_t i = s->_free; i != NIL; i = s->_pool[i].next) {
        cr_assert_lt(i, s->_max);
        cr_assert_eq(state[i], 0, "free entry %u also in use", i);
        state[i] = 4;
        nfree++;
    }
    cr_assert_eq(nfree + used, s->_max);
    free(state);
}

/* ---- the pending cap ------------------------------------------------------ */

Test(srclimit, pending_cap_per_source_and_others_unaffected)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 64), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(adm(&s, "192.0.2.1", 3, BIG, T0, NULL), SRCLIMIT_OK, "connection %d", i);
    cr_assert_eq(adm(&s, "192.0.2.1", 3, BIG, T0, NULL), SRCLIMIT_PENDING);
    cr_assert_eq(adm(&s, "192.0.2.1", 3, BIG, T0 + 3600 * SEC, NULL), SRCLIMIT_PENDING,
                 "pending does not expire with time");
    cr_assert_eq(pending_of(&s, "192.0.2.1"), 3, "refusals do not count");
    cr_assert_eq(adm(&s, "192.0.2.2", 3, BIG, T0, NULL), SRCLIMIT_OK, "another source");
    cr_assert_eq(adm(&s, "2001:db8::1", 3, BIG, T0, NULL), SRCLIMIT_OK, "another family");
    cr_assert_eq(srclimit_entries(&s), 3);
    /* A reload that raises the cap takes effect at once (limits are per call). */
    cr_assert_eq(adm(&s, "192.0.2.1", 4, BIG, T0, NULL), SRCLIMIT_OK);
    check_invariants(&s);
    srclimit_dispose(&s);
}

Test(srclimit, release_frees_a_pending_slot_once)
{
    srclimit_t s;
    srclimit_key_t a, b, c;
    cr_assert_eq(srclimit_init(&s, 16), 0);
    cr_assert_eq(adm(&s, "198.51.100.7", 2, BIG, T0, &a), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "198.51.100.7", 2, BIG, T0, &b), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "198.51.100.7", 2, BIG, T0, &c), SRCLIMIT_PENDING);

    /* First tunnel opened: a is no longer pending. Then it closes: nothing more. */
    srclimit_release(&s, &a);
    cr_assert_eq(pending_of(&s, "198.51.100.7"), 1);
    srclimit_release(&s, &a);
    cr_assert_eq(pending_of(&s, "198.51.100.7"), 1, "second release of a key is a no-op");

    cr_assert_eq(adm(&s, "198.51.100.7", 2, BIG, T0, &c), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "198.51.100.7", 2, BIG, T0, NULL), SRCLIMIT_PENDING);

    /* A refused admit leaves a zeroed key, which releases nothing. */
    srclimit_key_t refused = {._idx = 5, ._pending = 1};
    cr_assert_eq(adm(&s, "198.51.100.7", 2, BIG, T0, &refused), SRCLIMIT_PENDING);
    cr_assert_eq(refused._pending, 0);
    srclimit_release(&s, &refused);
    srclimit_key_t zero = {0};
    srclimit_release(&s, &zero);
    cr_assert_eq(pending_of(&s, "198.51.100.7"), 2);

    srclimit_release(&s, &b);
    srclimit_release(&s, &c);
    cr_assert_eq(pending_of(&s, "198.51.100.7"), 0);
    cr_assert_eq(srclimit_entries(&s), 1, "kept while its bucket refills");
    check_invariants(&s);
    srclimit_dispose(&s);
}

Test(srclimit, zero_limits_admit_nothing)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 4), 0);
    cr_assert_eq(adm(&s, "192.0.2.1", 0, BIG, T0, NULL), SRCLIMIT_PENDING);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 0, T0, NULL), SRCLIMIT_RATE);
    cr_assert_eq(srclimit_entries(&s), 0, "no entry for a refused new source");
    srclimit_dispose(&s);
}

/* ---- the rate ------------------------------------------------------------- */

Test(srclimit, rate_burst_then_refill)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 16), 0);
    const uint32_t rate = 5; /* T = 200 ms, burst 5 */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0, NULL), SRCLIMIT_OK, "burst %d", i);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0 + (uint64_t)i * MS, NULL),
                     SRCLIMIT_RATE, "attempt at +%d ms", i);
    cr_assert_eq(adm(&s, "203.0.113.10", BIG, rate, T0, NULL), SRCLIMIT_OK, "another source");

    /* One token per 200 ms; refused attempts took none. */
    cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0 + 199 * MS, NULL), SRCLIMIT_RATE);
    cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0 + 200 * MS, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0 + 200 * MS, NULL), SRCLIMIT_RATE);
    cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0 + 600 * MS, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0 + 600 * MS, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, T0 + 600 * MS, NULL), SRCLIMIT_RATE);

    /* A long pause refills to the burst, not beyond. */
    uint64_t t = T0 + 3600 * SEC;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, t, NULL), SRCLIMIT_OK, "burst %d", i);
    cr_assert_eq(adm(&s, "203.0.113.9", BIG, rate, t, NULL), SRCLIMIT_RATE);
    check_invariants(&s);
    srclimit_dispose(&s);
}

Test(srclimit, rate_that_does_not_divide_a_second)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 4), 0);
    /* rate 3: T = 333,333,334 ns (rounded up, so never faster than 3/s). */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(adm(&s, "192.0.2.1", BIG, 3, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 3, T0, NULL), SRCLIMIT_RATE);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 3, T0 + 333333333, NULL), SRCLIMIT_RATE);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 3, T0 + 333333334, NULL), SRCLIMIT_OK);
    /* Over 10 s of steady attempts every ms, at most burst + 10 * rate pass. */
    int ok = 0;
    for (uint64_t ms = 0; ms < 10000; ms++)
        ok += adm(&s, "192.0.2.1", BIG, 3, T0 + SEC + ms * MS, NULL) == SRCLIMIT_OK;
    cr_assert_geq(ok, 30);
    cr_assert_leq(ok, 3 + 30);
    srclimit_dispose(&s);
}

Test(srclimit, rate_is_checked_before_pending_and_refusals_take_no_token)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 4), 0);
    cr_assert_eq(adm(&s, "192.0.2.1", 1, 2, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "192.0.2.1", 1, 2, T0, NULL), SRCLIMIT_PENDING, "token left, cap hit");
    cr_assert_eq(adm(&s, "192.0.2.1", 2, 2, T0, NULL), SRCLIMIT_OK, "the PENDING took no token");
    cr_assert_eq(adm(&s, "192.0.2.1", 2, 2, T0, NULL), SRCLIMIT_RATE, "both over: RATE");
    srclimit_dispose(&s);
}

Test(srclimit, an_idle_source_keeps_its_rate_state_until_refilled)
{
    srclimit_t s;
    srclimit_key_t k[4];
    cr_assert_eq(srclimit_init(&s, 4), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(adm(&s, "192.0.2.1", BIG, 4, T0, &k[i]), SRCLIMIT_OK);
    for (int i = 0; i < 4; i++)
        srclimit_release(&s, &k[i]);
    /* Closing every connection does not hand out a new burst. */
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 4, T0 + 100 * MS, NULL), SRCLIMIT_RATE);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 4, T0 + 250 * MS, NULL), SRCLIMIT_OK);
    srclimit_dispose(&s);
}

/* ---- what a source is ----------------------------------------------------- */

Test(srclimit, ipv6_same_slash64_shares_an_entry)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 16), 0);
    cr_assert_eq(adm(&s, "2001:db8:1:2::1", 2, BIG, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "2001:db8:1:2:ffff:ffff:ffff:fffe", 2, BIG, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "2001:db8:1:2:abcd::9", 2, BIG, T0, NULL), SRCLIMIT_PENDING);
    cr_assert_eq(srclimit_entries(&s), 1);
    cr_assert_eq(adm(&s, "2001:db8:1:3::1", 2, BIG, T0, NULL), SRCLIMIT_OK, "next /64");
    cr_assert_eq(adm(&s, "2001:db9:1:2::1", 2, BIG, T0, NULL), SRCLIMIT_OK, "other /32");
    cr_assert_eq(adm(&s, "3001:db8:1:2::1", 2, BIG, T0, NULL), SRCLIMIT_OK, "top bits differ");
    cr_assert_eq(srclimit_entries(&s), 4);
    cr_assert_eq(pending_of(&s, "2001:db8:1:2::"), 2);
    check_invariants(&s);
    srclimit_dispose(&s);
}

Test(srclimit, v4_mapped_is_the_ipv4_source)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 16), 0);
    cr_assert_eq(adm(&s, "::ffff:192.0.2.1", 2, BIG, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "192.0.2.1", 2, BIG, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "::ffff:192.0.2.1", 2, BIG, T0, NULL), SRCLIMIT_PENDING);
    cr_assert_eq(srclimit_entries(&s), 1);
    /* Mapped addresses all sit in the /64 ::, but each is its own source. */
    cr_assert_eq(adm(&s, "::ffff:192.0.2.2", 2, BIG, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(pending_of(&s, "192.0.2.2"), 1);
    /* ::1 is in the /64 ::, which is not the IPv4 address 0.0.0.0. */
    cr_assert_eq(adm(&s, "::1", 1, BIG, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "0.0.0.0", 1, BIG, T0, NULL), SRCLIMIT_OK);
    cr_assert_eq(adm(&s, "::2", 1, BIG, T0, NULL), SRCLIMIT_PENDING, "same /64 as ::1");
    cr_assert_eq(srclimit_entries(&s), 4);
    check_invariants(&s);
    srclimit_dispose(&s);
}

Test(srclimit, bad_addresses)
{
    srclimit_t s;
    srclimit_key_t key = {._idx = 3, ._pending = 1};
    cr_assert_eq(srclimit_init(&s, 4), 0);
    cr_assert_eq(srclimit_admit(&s, NULL, 0, BIG, BIG, T0, &key), SRCLIMIT_BADADDR);
    cr_assert_eq(key._pending, 0);

    addr_t v4 = mk("192.0.2.1", 1), v6 = mk("2001:db8::1", 1);
    const struct sockaddr *sa4 = (const struct sockaddr *)&v4.ss;
    const struct sockaddr *sa6 = (const struct sockaddr *)&v6.ss;
    cr_assert_eq(srclimit_admit(&s, sa4, 1, BIG, BIG, T0, &key), SRCLIMIT_BADADDR, "no family");
    cr_assert_eq(srclimit_admit(&s, sa4, v4.len - 1, BIG, BIG, T0, &key), SRCLIMIT_BADADDR);
    cr_assert_eq(srclimit_admit(&s, sa6, sizeof(struct sockaddr_in), BIG, BIG, T0, &key),
                 SRCLIMIT_BADADDR, "an IPv6 family in an IPv4-sized address");
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/x"};
    cr_assert_eq(srclimit_admit(&s, (const struct sockaddr *)&un, sizeof un, BIG, BIG, T0, &key),
                 SRCLIMIT_BADADDR);
    cr_assert_eq(srclimit_entries(&s), 0);
    cr_assert_str_eq(srclimit_rc_name(SRCLIMIT_BADADDR), "badaddr");
    cr_assert_str_eq(srclimit_rc_name(SRCLIMIT_RATE), "rate");
    cr_assert_str_eq(srclimit_rc_name(42), "unknown");
    srclimit_dispose(&s);
}

/* ---- the table bound ------------------------------------------------------ */

static void nth_v4(char *buf, size_t cap, unsigned i)
{
    snprintf(buf, cap, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
}

Test(srclimit, full_when_every_entry_is_live)
{
    srclimit_t s;
    srclimit_key_t k[8];
    char ip[32];
    cr_assert_eq(srclimit_init(&s, 8), 0);
    for (unsigned i = 0; i < 8; i++) {
        nth_v4(ip, sizeof ip, i);
        cr_assert_eq(adm(&s, ip, BIG, 10, T0, &k[i]), SRCLIMIT_OK);
    }
    cr_assert_eq(srclimit_entries(&s), 8);
    /* All pending: full for as long as they stay pending. */
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 10, T0, NULL), SRCLIMIT_FULL);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 10, T0 + 3600 * SEC, NULL), SRCLIMIT_FULL);
    cr_assert_eq(adm(&s, "10.0.0.3", BIG, 10, T0 + 3600 * SEC, NULL), SRCLIMIT_OK,
                 "a known source still gets in");

    /* Released, and refilled long ago: the longest idle makes room. */
    for (unsigned i = 0; i < 8; i++)
        srclimit_release(&s, &k[i]);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 10, T0 + 3600 * SEC, NULL), SRCLIMIT_OK);
    check_invariants(&s);
    srclimit_dispose(&s);
}

/* A new IPv4 source whose chain holds no idle entry, so that admitting it
 * reclaims nothing on the walk and any reclaiming is the full-table eviction. */
static void source_off_idle_chains(const srclimit_t *s, char *buf, size_t cap)
{
    for (uint32_t i = 0; i < 1u << 16; i++) {
        uint32_t src = 0xac100000u + i; /* 172.16.0.0/16 */
        int idle = 0;
        for (uint32_t j = s->_buckets[bucket_of(s, src, 0)]; j != NIL; j = s->_pool[j].next)
            idle |= s->_pool[j].pending == 0 || s->_pool[j].src == src;
        if (!idle) {
            snprintf(buf, cap, "172.16.%u.%u", i >> 8, i & 255);
            return;
        }
    }
    cr_assert_fail("no source off the idle chains in 2^16 tries");
}

Test(srclimit, idle_entries_are_reclaimed_once_refilled_longest_idle_first)
{
    srclimit_t s;
    srclimit_key_t k[9];
    char ip[32], newip[32];
    /* 9 entries, 16 buckets: some bucket is always free of idle entries. */
    cr_assert_eq(srclimit_init(&s, 9), 0);
    for (unsigned i = 0; i < 9; i++) {
        nth_v4(ip, sizeof ip, i);
        cr_assert_eq(adm(&s, ip, BIG, 10, T0, &k[i]), SRCLIMIT_OK); /* tat = T0 + 100 ms */
    }
    const unsigned order[9] = {5, 2, 7, 0, 8, 1, 3, 4, 6};
    for (unsigned j = 0; j < 9; j++)
        srclimit_release(&s, &k[order[j]]);

    source_off_idle_chains(&s, newip, sizeof newip);
    cr_assert_eq(adm(&s, newip, BIG, 10, T0 + 99 * MS, NULL), SRCLIMIT_FULL,
                 "no bucket refilled yet");
    cr_assert_eq(srclimit_entries(&s), 9);
    for (unsigned j = 0; j < 9; j++) {
        source_off_idle_chains(&s, newip, sizeof newip);
        cr_assert_eq(adm(&s, newip, BIG, 10, T0 + 100 * MS, NULL), SRCLIMIT_OK, "new %u", j);
        cr_assert_eq(srclimit_entries(&s), 9);
        for (unsigned jj = 0; jj < 9; jj++) {
            nth_v4(ip, sizeof ip, order[jj]);
            if (jj <= j)
                cr_assert_null(entry_of(&s, ip), "step %u: %s should be evicted", j, ip);
            else
                cr_assert_not_null(entry_of(&s, ip), "step %u: %s evicted early", j, ip);
        }
        check_invariants(&s);
    }
    cr_assert_eq(adm(&s, "192.0.2.200", BIG, 10, T0 + 100 * MS, NULL), SRCLIMIT_FULL,
                 "all pending now");
    srclimit_dispose(&s);
}

Test(srclimit, an_idle_entry_that_has_not_refilled_blocks_eviction)
{
    srclimit_t s;
    srclimit_key_t a[4], b;
    char newip[32];
    /* 3 entries, 4 buckets: the two idle entries leave a chain free of them. */
    cr_assert_eq(srclimit_init(&s, 3), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(adm(&s, "192.0.2.1", BIG, 4, T0, &a[i]), SRCLIMIT_OK); /* tat T0 + 1 s */
    cr_assert_eq(adm(&s, "192.0.2.2", BIG, 4, T0, &b), SRCLIMIT_OK);           /* tat + 250 ms */
    cr_assert_eq(adm(&s, "192.0.2.9", BIG, 4, T0, NULL), SRCLIMIT_OK);         /* stays pending */
    for (int i = 0; i < 4; i++)
        srclimit_release(&s, &a[i]);
    srclimit_release(&s, &b);
    /* The longest idle (192.0.2.1) has not refilled: FULL, even though .2 has
     * (documented: only the longest-idle entry is considered for eviction). */
    source_off_idle_chains(&s, newip, sizeof newip);
    cr_assert_eq(adm(&s, newip, BIG, 4, T0 + 500 * MS, NULL), SRCLIMIT_FULL);
    cr_assert_not_null(entry_of(&s, "192.0.2.1"));
    cr_assert_not_null(entry_of(&s, "192.0.2.2"));
    cr_assert_eq(adm(&s, newip, BIG, 4, T0 + 1000 * MS, NULL), SRCLIMIT_OK);
    cr_assert_null(entry_of(&s, "192.0.2.1"));
    check_invariants(&s);
    srclimit_dispose(&s);
}

Test(srclimit, refilled_idle_entries_on_a_chain_are_reclaimed_on_lookup)
{
    srclimit_t s;
    srclimit_key_t k;
    char other[32];
    cr_assert_eq(srclimit_init(&s, 64), 0);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, 10, T0, &k), SRCLIMIT_OK);
    srclimit_release(&s, &k);

    /* Another source on the same chain (the key is random: search for one). */
    const srclimit_entry_t *e = entry_of(&s, "192.0.2.1");
    cr_assert_not_null(e);
    uint32_t b = bucket_of(&s, e->src, 0);
    unsigned i = 0;
    for (; i < 1u << 20; i++)
        if (bucket_of(&s, 0x0a000000u + i, 0) == b)
            break;
    cr_assert_lt(i, 1u << 20, "no colliding source in 2^20 tries");
    nth_v4(other, sizeof other, i);

    cr_assert_eq(adm(&s, other, BIG, 10, T0 + 50 * MS, NULL), SRCLIMIT_OK);
    cr_assert_not_null(entry_of(&s, "192.0.2.1"), "not refilled yet: kept");
    cr_assert_eq(srclimit_entries(&s), 2);
    cr_assert_eq(adm(&s, other, BIG, 10, T0 + 100 * MS, NULL), SRCLIMIT_OK);
    cr_assert_null(entry_of(&s, "192.0.2.1"), "refilled: reclaimed on the walk");
    cr_assert_eq(srclimit_entries(&s), 1);
    check_invariants(&s);
    srclimit_dispose(&s);
}

/* ---- lifetime, memory, hash ----------------------------------------------- */

Test(srclimit, init_errors_and_dispose_idempotent)
{
    srclimit_t s;
    errno = 0;
    cr_assert_eq(srclimit_init(&s, 0), -1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(srclimit_init(&s, (size_t)SRCLIMIT_MAX_ENTRIES + 1), -1);
    cr_assert_eq(errno, EINVAL);
    srclimit_dispose(&s);

    srclimit_t z;
    memset(&z, 0, sizeof z);
    srclimit_dispose(&z);

    srclimit_key_t k;
    cr_assert_eq(srclimit_init(&s, 4), 0);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, BIG, T0, &k), SRCLIMIT_OK);
    srclimit_dispose(&s);
    srclimit_dispose(&s);
    cr_assert_eq(srclimit_entries(&s), 0);
    cr_assert_eq(srclimit_bytes(&s), 0);
    srclimit_release(&s, &k); /* after dispose: no effect, key zeroed */
    cr_assert_eq(k._pending, 0);
    cr_assert_eq(adm(&s, "192.0.2.1", BIG, BIG, T0, &k), SRCLIMIT_FULL);
}

Test(srclimit, memory_bound)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, SRCLIMIT_DEFAULT_ENTRIES), 0);
    cr_assert_eq(srclimit_bytes(&s), 65536u * 32 + 65536u * 4);
    cr_assert_eq(srclimit_bytes(&s), 2359296u, "the figure srclimit.h quotes");
    srclimit_dispose(&s);
    cr_assert_eq(srclimit_init(&s, 1000), 0);
    cr_assert_eq(srclimit_bytes(&s), 1000u * 32 + 1024u * 4, "buckets: next power of two");
    srclimit_dispose(&s);
}

Test(srclimit, siphash_reference_vector)
{
    /* Key 00..0f, message 00..0f; expected value from
     * `openssl mac -macopt hexkey:000102030405060708090a0b0c0d0e0f -macopt size:8 SIPHASH`
     * (bytes db9bc2577fcc2a3f, little-endian). */
    cr_assert_eq(siphash_2w(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull, 0x0706050403020100ull,
                            0x0f0e0d0c0b0a0908ull),
                 0x3f2acc7f57c29bdbull);
}

Test(srclimit, each_table_draws_its_own_key)
{
    srclimit_t a, b;
    cr_assert_eq(srclimit_init(&a, 4), 0);
    cr_assert_eq(srclimit_init(&b, 4), 0);
    cr_assert(a._k0 != b._k0 || a._k1 != b._k1);
    srclimit_dispose(&a);
    srclimit_dispose(&b);
}

/* ---- randomised, against a model ------------------------------------------ */

/* Per source, what must hold whatever the table reclaimed: the GCRA state and
 * the pending count. A source whose bucket is full and that has nothing
 * pending may have lost its entry, which is indistinguishable from fresh. */
typedef struct model_src {
    uint64_t tat;
    uint32_t pending;
} model_src_t;

#define NSRC 24
#define NKEYS 64

Test(srclimit, random_run_matches_the_model)
{
    srclimit_t s;
    cr_assert_eq(srclimit_init(&s, 16), 0);
    model_src_t m[NSRC];
    memset(m, 0, sizeof m);
    srclimit_key_t keys[NKEYS];
    int key_src[NKEYS];
    memset(keys, 0, sizeof keys);
    uint64_t now = T0, rng = 0x9e3779b97f4a7c15ull;
    unsigned full = 0, ok = 0;
    const uint32_t max_pending = 3, rate = 10, t = SEC / 10;

    for (int step = 0; step < 20000; step++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        unsigned r = (unsigned)(rng >> 32);
        now += (r % 4) * 7 * MS;
        int k = (int)((r >> 8) % NKEYS);
        if (keys[k]._pending && (r >> 16) % 3 != 0) {
            srclimit_release(&s, &keys[k]);
            m[key_src[k]].pending--;
        } else if (!keys[k]._pending) {
            int src = (int)((r >> 20) % NSRC);
            char ip[64];
            if (src % 2)
                snprintf(ip, sizeof ip, "2001:db8:%x::%x", src, r & 0xffff); /* any host */
            else
                snprintf(ip, sizeof ip, "198.51.100.%d", src);
            uint64_t tat = (m[src].tat > now ? m[src].tat : now) + t;
            int want = tat - now > (uint64_t)rate * t      ? SRCLIMIT_RATE
                       : m[src].pending >= max_pending      ? SRCLIMIT_PENDING
                                                            : SRCLIMIT_OK;
            int got = adm(&s, ip, max_pending, rate, now, &keys[k]);
            if (got == SRCLIMIT_FULL) {
                cr_assert(m[src].pending == 0 && m[src].tat <= now,
                          "step %d: FULL for a source that must have an entry", step);
                cr_assert_eq(srclimit_entries(&s), 16);
                full++;
            } else {
                cr_assert_eq(got, want, "step %d: source %d got %s, model %s", step, src,
                             srclimit_rc_name(got), srclimit_rc_name(want));
            }
            if (got == SRCLIMIT_OK) {
                m[src].tat = tat;
                m[src].pending++;
                key_src[k] = src;
                ok++;
            }
        }
        check_invariants(&s);
    }
    cr_assert_gt(full, 0, "the run should reach a full table");
    cr_assert_gt(ok, 1000);
    srclimit_dispose(&s);
}
