/* test_hrw.c — rendezvous hashing (gateway/hrw.c): spread, stability when a
 * node goes down (only its keys move), determinism. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/hrw.h"

#define NODES 5
#define KEYS 20000

static void node_ids(uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char name[32];
        int len = snprintf(name, sizeof name, "10.0.0.%zu:7000", i + 1);
        ids[i] = hrw_hash(name, (size_t)len);
    }
}

static uint64_t key_of(unsigned k)
{
    return hrw_hash(&k, sizeof k);
}

Test(hrw, none_up_and_empty)
{
    uint64_t ids[3];
    node_ids(ids, 3);
    unsigned char up[3] = {0, 0, 0};
    cr_assert_eq(hrw_pick(1, ids, up, 3), -1);
    cr_assert_eq(hrw_pick(1, ids, up, 0), -1);
    up[2] = 1;
    cr_assert_eq(hrw_pick(1, ids, up, 3), 2);
}

Test(hrw, deterministic)
{
    uint64_t ids[NODES];
    node_ids(ids, NODES);
    unsigned char up[NODES];
    memset(up, 1, sizeof up);
    cr_assert_eq(hrw_hash("abc", 3), hrw_hash("abc", 3));
    cr_assert_neq(hrw_hash("abc", 3), hrw_hash("abd", 3));
    for (unsigned k = 0; k < 100; k++)
        cr_assert_eq(hrw_pick(key_of(k), ids, up, NODES), hrw_pick(key_of(k), ids, up, NODES));
}

/* Each of 5 nodes gets 20% of 20,000 keys: within +-10% of that share
 * (binomial sd is about 1.4%, so this fails only on a real bias). */
Test(hrw, distribution)
{
    uint64_t ids[NODES];
    node_ids(ids, NODES);
    unsigned char up[NODES];
    memset(up, 1, sizeof up);
    unsigned count[NODES] = {0};
    for (unsigned k = 0; k < KEYS; k++) {
        long i = hrw_pick(key_of(k), ids, up, NODES);
        cr_assert(i >= 0 && i < NODES);
        count[i]++;
    }
    for (int i = 0; i < NODES; i++)
        cr_assert(count[i] > KEYS / NODES * 9 / 10 && count[i] < KEYS / NODES * 11 / 10,
                  "node %d got %u of %u keys", i, count[i], KEYS);
}

/* A node going down moves exactly its own keys, spread over the others; it
 * coming back moves exactly those keys back. */
Test(hrw, only_the_down_nodes_keys_move)
{
    uint64_t ids[NODES];
    node_ids(ids, NODES);
    unsigned char up[NODES];
    memset(up, 1, sizeof up);
    static long before[KEYS];
    for (unsigned k = 0; k < KEYS; k++)
        before[k] = hrw_pick(key_of(k), ids, up, NODES);
    up[2] = 0;
    unsigned moved = 0, to[NODES] = {0};
    for (unsigned k = 0; k < KEYS; k++) {
        long now = hrw_pick(key_of(k), ids, up, NODES);
        cr_assert_neq(now, 2);
        if (before[k] == 2) {
            moved++;
            to[now]++;
        } else {
            cr_assert_eq(now, before[k], "key %u moved from %ld to %ld", k, before[k], now);
        }
    }
    cr_assert(moved > 0);
    for (int i = 0; i < NODES; i++)
        if (i != 2)
            cr_assert(to[i] > moved / 4 / 2, "node %d took %u of %u moved keys", i, to[i], moved);
    up[2] = 1;
    for (unsigned k = 0; k < KEYS; k++)
        cr_assert_eq(hrw_pick(key_of(k), ids, up, NODES), before[k]);
}
