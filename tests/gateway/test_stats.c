/* test_stats.c — gateway/stats.c: one entry per tenant and kind, held by
 * references; pruning keeps what a tunnel holds or the config names; CLOSE
 * codes map to their slots. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/stats.h"

static config_t *config_with(const char *tenants)
{
    char json[1024], err[256];
    snprintf(json, sizeof json,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"},"
             "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"127.0.0.1:9\"]}},"
             "\"tenants\":[%s]}",
             tenants);
    config_t *cfg = config_parse(json, strlen(json), NULL, err, sizeof err);
    cr_assert(cfg, "%s", err);
    return cfg;
}

Test(stats, one_entry_per_tenant_and_kind_sorted)
{
    stats_table_t t = {0};
    stats_entry_t *b = stats_hold(&t, "beta", TUNNEL_KIND_SFU);
    stats_entry_t *a1 = stats_hold(&t, "acme", TUNNEL_KIND_TURN);
    stats_entry_t *a0 = stats_hold(&t, "acme", TUNNEL_KIND_SFU);
    cr_assert(a0 && a1 && b);
    cr_assert_eq(stats_hold(&t, "acme", TUNNEL_KIND_SFU), a0, "the same entry again");
    cr_assert_eq(a0->refs, 2u);
    cr_assert_eq(t.n, 3u);
    cr_assert_eq(t.v[0], a0);
    cr_assert_eq(t.v[1], a1);
    cr_assert_eq(t.v[2], b);
    char long_id[80];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    cr_assert_null(stats_hold(&t, long_id, TUNNEL_KIND_SFU), "over the tenant id bound");
    cr_assert_null(stats_hold(NULL, "acme", TUNNEL_KIND_SFU));
    stats_dispose(&t);
    stats_dispose(&t); /* idempotent */
}

Test(stats, prune_keeps_held_and_configured_entries)
{
    stats_table_t t = {0};
    stats_entry_t *gone = stats_hold(&t, "gone", TUNNEL_KIND_SFU);
    stats_entry_t *held = stats_hold(&t, "held", TUNNEL_KIND_SFU);
    stats_entry_t *kept = stats_hold(&t, "kept", TUNNEL_KIND_SFU);
    kept->opened = 7;
    stats_release(gone);
    stats_release(kept);
    stats_release(NULL);
    config_t *cfg = config_with("{\"id\":\"kept\",\"secrets\":[\"0123456789abcdef0123\"],"
                                "\"regions\":[\"local\"]}");
    stats_prune(&t, cfg);
    cr_assert_eq(t.n, 2u);
    cr_assert_eq(t.v[0], held, "a held entry stays although its tenant left");
    cr_assert_eq(t.v[1], kept);
    cr_assert_eq(kept->opened, 7u, "counters survive");
    stats_release(held);
    stats_prune(&t, cfg);
    cr_assert_eq(t.n, 1u);
    config_unref(cfg);
    stats_dispose(&t);
}

Test(stats, close_slots)
{
    cr_assert_eq(stats_close_slot(0x00), 0u);
    cr_assert_eq(stats_close_slot(0x04), 4u);
    cr_assert_eq(stats_close_slot(0x0a), 10u);
    cr_assert_eq(stats_close_slot(0x0b), STATS_CLOSE_OTHER);
    cr_assert_eq(stats_close_slot(UINT64_MAX), STATS_CLOSE_OTHER);
}
