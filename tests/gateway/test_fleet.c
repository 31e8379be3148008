/*
 * test_fleet.c — the pure parts of the fleet (gateway/fleet.h) and the share
 * arithmetic it drives (ratelimit_share, gateway/ratelimit.h): member keys,
 * the member set and N, a tenant's limits divided among N gateways, and one
 * measured check that a shared aggregate bucket passes about 1/N of the
 * configured bits/s.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/config.h"
#include "../../gateway/fleet.h"
#include "../../proto/token.h"
#include "../../gateway/ratelimit.h"

#define DIR "/sluice/members/eu/"

static int id_of(const char *key, char *out, size_t cap)
{
    const char *id;
    int n = fleet_member_id(DIR, strlen(DIR), key, strlen(key), &id);
    if (n >= 0)
        snprintf(out, cap, "%.*s", n, id);
    return n;
}

Test(fleet, member_key_parsing)
{
    char id[FLEET_NODE_ID_MAX + 1];
    cr_assert_eq(id_of(DIR "gw-a", id, sizeof id), 4);
    cr_assert_str_eq(id, "gw-a");
    cr_assert_eq(id_of(DIR "host.example-1234", id, sizeof id), 17);
    cr_assert_str_eq(id, "host.example-1234");
    cr_assert_eq(id_of(DIR, id, sizeof id), -1, "the directory itself is no member");
    cr_assert_eq(id_of(DIR "a/b", id, sizeof id), -1, "a deeper key is no member");
    cr_assert_eq(id_of("/sluice/members/us/gw-a", id, sizeof id), -1, "another region");
    cr_assert_eq(id_of("/sluice/members/eu", id, sizeof id), -1, "a truncated directory");
    cr_assert_eq(id_of("/sluice/members/eu-west/x", id, sizeof id), -1,
                 "a region whose name starts with ours");
    char longkey[sizeof DIR + FLEET_NODE_ID_MAX + 2];
    snprintf(longkey, sizeof longkey, DIR "%0*d", (int)FLEET_NODE_ID_MAX, 7);
    cr_assert_eq(id_of(longkey, id, sizeof id), (int)FLEET_NODE_ID_MAX);
    snprintf(longkey, sizeof longkey, DIR "%0*d", (int)FLEET_NODE_ID_MAX + 1, 7);
    cr_assert_eq(id_of(longkey, id, sizeof id), -1, "an id over FLEET_NODE_ID_MAX");
    const char nul[] = DIR "a\0b";
    const char *p;
    cr_assert_eq(fleet_member_id(DIR, strlen(DIR), nul, sizeof nul - 1, &p), -1);
}

Test(fleet, member_set_and_count)
{
    fleet_set_t s = {0};
    cr_assert_eq(fleet_set_count(&s, "me"), 1, "alone, a gateway counts itself");
    cr_assert_eq(fleet_set_update(&s, "me", 2, 1), 1);
    cr_assert_eq(fleet_set_count(&s, "me"), 1, "itself once, not twice");
    cr_assert_eq(fleet_set_update(&s, "b", 1, 1), 1);
    cr_assert_eq(fleet_set_update(&s, "b", 1, 1), 0, "a second put of b changes nothing");
    cr_assert_eq(fleet_set_update(&s, "bb", 2, 1), 1, "a prefix is another id");
    cr_assert_eq(fleet_set_count(&s, "me"), 3);
    cr_assert_eq(fleet_set_update(&s, "me", 2, 0), 1, "own key expired");
    cr_assert_eq(fleet_set_count(&s, "me"), 3, "itself still counted");
    cr_assert_eq(fleet_set_update(&s, "zz", 2, 0), 0, "deleting an unknown id");
    cr_assert_eq(fleet_set_update(&s, "b", 1, 0), 1);
    cr_assert_eq(fleet_set_count(&s, "me"), 2);
    cr_assert_eq(s.n, 1);
    cr_assert_str_eq(s.ids[0], "bb");
    fleet_set_clear(&s);
    cr_assert_eq(s.n, 0);
}

/* Issue 8 §4: the members' addresses by node tag, for a 421. */
Test(fleet, member_addresses_by_tag)
{
    fleet_set_t s = {0};
    uint32_t t1 = token_node_tag("gw-1", 4), t2 = token_node_tag("gw-2", 4);
    cr_assert_eq(fleet_set_put(&s, "gw-1", 4, "127.0.0.1:1001", 14), 1);
    cr_assert_eq(fleet_set_put(&s, "gw-2", 4, NULL, 0), 1);
    cr_assert_eq(fleet_set_update(&s, "gw-3", 4, 1), 1);
    cr_assert_str_eq(fleet_set_address(&s, t1, "gw-2"), "127.0.0.1:1001");
    cr_assert_null(fleet_set_address(&s, t1, "gw-1"), "never self");
    cr_assert_null(fleet_set_address(&s, t2, "gw-1"), "gw-2 has no address");
    cr_assert_eq(fleet_set_put(&s, "gw-2", 4, "gw-2.example.net:443", 20), 0, "an update");
    cr_assert_str_eq(fleet_set_address(&s, t2, "gw-1"), "gw-2.example.net:443");
    cr_assert_eq(fleet_set_count(&s, "gw-1"), 3);
    cr_assert_null(fleet_set_address(&s, 0x12345678u, "gw-1"), "an unknown tag");
    cr_assert_eq(fleet_set_update(&s, "gw-1", 4, 0), 1);
    cr_assert_null(fleet_set_address(&s, t1, "gw-2"), "gone with its key");
    cr_assert_str_eq(fleet_set_address(&s, t2, "gw-3"), "gw-2.example.net:443",
                     "the arrays moved together");
    fleet_set_clear(&s);
    cr_assert_eq(s.n, 0);
}

Test(fleet, member_values)
{
    char a[CFG_NODE_ADDRESS_MAX + 1];
    const char *v = "{\"id\":\"gw-1\",\"address\":\"127.0.0.1:443\"}";
    cr_assert_eq(fleet_member_address(v, strlen(v), a, sizeof a), 13);
    cr_assert_str_eq(a, "127.0.0.1:443");
    v = "{\"id\":\"gw-1\"}";
    cr_assert_eq(fleet_member_address(v, strlen(v), a, sizeof a), 0);
    static const char *const bad[] = {"", "[]", "{\"address\":1}", "{\"address\":\"\"}",
                                      "{\"address\":\"h\"}", "{\"address\":\"h:1\\r\\nx: y\"}",
                                      "{\"address\":\"h :1\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(fleet_member_address(bad[i], strlen(bad[i]), a, sizeof a), -1, "%s", bad[i]);
}

Test(fleet, member_set_is_bounded)
{
    fleet_set_t s = {0};
    char id[16];
    for (unsigned i = 0; i < FLEET_MEMBERS_MAX; i++) {
        int n = snprintf(id, sizeof id, "g%u", i);
        cr_assert_eq(fleet_set_update(&s, id, (size_t)n, 1), 1);
    }
    cr_assert_eq(fleet_set_update(&s, "one-more", 8, 1), -1);
    cr_assert_eq(s.n, FLEET_MEMBERS_MAX);
    for (size_t i = 1; i < s.n; i++)
        cr_assert_lt(strcmp(s.ids[i - 1], s.ids[i]), 0, "sorted");
    fleet_set_clear(&s);
}

Test(fleet, share_arithmetic)
{
    cfg_tenant_limits_t l = {0}, o;
    l.max_tunnels = 4;
    l.max_tunnels_per_user = 3;
    l.bits_s = 1000000;
    l.bits_burst = 2000000;
    l.up.bits_s = 64000;
    l.down.packets_s = 50;
    ratelimit_share(&l, 2, &o);
    cr_assert_eq(o.max_tunnels, 2);
    cr_assert_eq(o.bits_s, 500000);
    cr_assert_eq(o.bits_burst, 1000000);
    cr_assert_eq(o.max_tunnels_per_user, 3, "per gateway, not divided");
    cr_assert_eq(o.up.bits_s, 64000, "per tunnel, not divided");
    cr_assert_eq(o.down.packets_s, 50, "per tunnel, not divided");
    ratelimit_share(&l, 3, &o);
    cr_assert_eq(o.max_tunnels, 2, "ceil(4 / 3)");
    cr_assert_eq(o.bits_s, 333333);
    ratelimit_share(&l, 8, &o);
    cr_assert_eq(o.max_tunnels, 1, "at least 1");
    ratelimit_share(&l, 1, &o);
    cr_assert(!memcmp(&o, &l, sizeof l), "N = 1: the configured figures");
    ratelimit_share(&l, 0, &o);
    cr_assert(!memcmp(&o, &l, sizeof l), "N = 0 counts as 1");

    l.max_tunnels = 0;
    l.bits_s = 0;
    l.bits_burst = 0;
    ratelimit_share(&l, 5, &o);
    cr_assert_eq(o.max_tunnels, 0, "no cap stays no cap");
    cr_assert_eq(o.bits_s, 0, "no limit stays no limit");

    l.bits_s = 3;
    l.bits_burst = 100000;
    ratelimit_share(&l, 10, &o);
    cr_assert_eq(o.bits_s, 1, "a limit stays a limit");
    cr_assert_eq(o.bits_burst, RATELIMIT_SHARE_BURST_MIN, "one full packet still passes");
    l.bits_burst = 800;
    ratelimit_share(&l, 10, &o);
    cr_assert_eq(o.bits_burst, 800, "never above the configured burst");
}

static cfg_tenant_t tenant(uint64_t max_tunnels, uint64_t bits_s)
{
    static char id[] = "acme";
    cfg_tenant_t t = {.id = id};
    t.limits.max_tunnels = max_tunnels;
    t.limits.bits_s = bits_s;
    t.limits.bits_burst = bits_s / 10;
    return t;
}

Test(fleet, table_admits_its_share_and_applies_a_new_one)
{
    ratelimit_table_t tb = {0};
    ratelimit_flow_t f[5];
    const char *why;
    cfg_tenant_t t = tenant(4, 0);
    memset(f, 0, sizeof f);
    ratelimit_set_share(&tb, 2);
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[0], 0, &why), RATELIMIT_OK);
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[1], 0, &why), RATELIMIT_OK);
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[2], 0, &why), RATELIMIT_ERR_CAP,
                 "the third of a share of 2");
    ratelimit_set_share(&tb, 1); /* the other gateway left */
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[2], 0, &why), RATELIMIT_OK);
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[3], 0, &why), RATELIMIT_OK);
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[4], 0, &why), RATELIMIT_ERR_CAP);
    ratelimit_set_share(&tb, 4); /* two joined: the open four run on */
    cr_assert_eq(ratelimit_tenant_tunnels(&tb, "acme"), 4);
    for (int i = 0; i < 4; i++)
        ratelimit_release(&f[i]);
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[0], 0, &why), RATELIMIT_OK);
    cr_assert_eq(ratelimit_admit(&tb, &t, "u", 1, &f[1], 0, &why), RATELIMIT_ERR_CAP);
    ratelimit_release(&f[0]);
}

/* Bits passed by the tenant's aggregate bucket in 10 s of 1,000-byte packets
 * offered at 4x the configured rate, share n. */
static uint64_t passed_bits(uint32_t n, int reapply_at_half)
{
    ratelimit_table_t tb = {0};
    ratelimit_flow_t f = {0};
    const char *why;
    cfg_tenant_t t = tenant(0, 8000000); /* 8 Mbit/s, burst 0.8 Mbit */
    ratelimit_set_share(&tb, reapply_at_half ? 1 : n);
    cr_assert_eq(ratelimit_admit(&tb, &t, "", 0, &f, 0, &why), RATELIMIT_OK);
    uint64_t bits = 0;
    const uint64_t step = 250000; /* ns: 4,000 packets/s = 32 Mbit/s offered */
    for (uint64_t now = 0; now < 10000000000ull; now += step) {
        if (reapply_at_half && now == 5000000000ull) {
            ratelimit_set_share(&tb, n);
            ratelimit_apply(&f, &t.limits, now);
        }
        if (ratelimit_pass(&f, RATELIMIT_UP, 1000, 0, now) == RATELIMIT_PASS &&
            (!reapply_at_half || now >= 5000000000ull))
            bits += 8000;
    }
    ratelimit_release(&f);
    return bits;
}

Test(fleet, shared_aggregate_rate_measured)
{
    /* 10 s at 8 Mbit/s / n plus one burst of 0.8 Mbit / n: within 2 %. */
    for (uint32_t n = 1; n <= 4; n++) {
        double want = (80000000.0 + 800000.0) / n, got = (double)passed_bits(n, 0);
        cr_assert(got > want * 0.98 && got < want * 1.02, "n %u: %.0f bits, want %.0f", n, got,
                  want);
    }
    /* A live flow takes a new share through ratelimit_apply: the second 5 s
     * pass about half of 8 Mbit/s (the bucket keeps its tokens up to the new
     * burst, 0.4 Mbit). */
    double got = (double)passed_bits(2, 1), want = 4000000.0 * 5 + 400000.0;
    cr_assert(got > want * 0.95 && got < want * 1.05, "%.0f bits, want %.0f", got, want);
}

/* ---- the fleet's configuration ($.node, $.tenant_store) ------------------ */

#define CFG_HEAD                                                                              \
    "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"},"           \
    "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"builtin:echo\"]}}"
#define ETCD_STORE "\"type\":\"etcd\",\"endpoints\":[\"http://127.0.0.1:2379\"],\"prefix\":\"/t/\""

static config_t *parse(const char *tail, char *err, size_t errlen)
{
    char doc[2048];
    snprintf(doc, sizeof doc, CFG_HEAD "%s}", tail);
    return config_parse_tenants(doc, strlen(doc), "/base", NULL, NULL, NULL, 0, err, errlen);
}

static void expect_error(const char *tail, const char *want)
{
    char err[1024] = "";
    config_t *cfg = parse(tail, err, sizeof err);
    cr_assert_null(cfg, "accepted: %s", tail);
    cr_assert_not_null(strstr(err, want), "error \"%s\", want \"%s\"", err, want);
}

Test(fleet, config_defaults_and_values)
{
    char err[1024] = "";
    config_t *cfg = parse(",\"tenant_store\":{" ETCD_STORE "}", err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_str_eq(cfg->store.members_prefix, "/sluice/members/");
    cr_assert_eq(cfg->store.lease_ttl_s, 10);
    cr_assert_null(cfg->node.id, "absent: <hostname>-<pid>, made by fleet.c");
    config_unref(cfg);
    cfg = parse(",\"node\":{\"id\":\"gw-eu_1.a\"},\"tenant_store\":{" ETCD_STORE
                ",\"members_prefix\":\"/m/\",\"lease_ttl_s\":3}",
                err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_str_eq(cfg->store.members_prefix, "/m/");
    cr_assert_eq(cfg->store.lease_ttl_s, 3);
    cr_assert_str_eq(cfg->node.id, "gw-eu_1.a");
    config_unref(cfg);
    static const char *const good[] = {"gw-2.example.net:443", "127.0.0.1:1", "[::1]:65535"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char tail[256];
        snprintf(tail, sizeof tail,
                 ",\"node\":{\"id\":\"a\",\"address\":\"%s\"},\"tenant_store\":{" ETCD_STORE "}",
                 good[i]);
        cfg = parse(tail, err, sizeof err);
        cr_assert_not_null(cfg, "%s: %s", good[i], err);
        cr_assert_str_eq(cfg->node.address, good[i]);
        config_unref(cfg);
    }
    cfg = parse(",\"node\":{},\"tenant_store\":{" ETCD_STORE "}", err, sizeof err);
    cr_assert_not_null(cfg, "an empty node object: %s", err);
    config_unref(cfg);
}

Test(fleet, config_errors)
{
    expect_error(",\"node\":{\"id\":\"a/b\"}", "$.node.id: expected letters");
    expect_error(",\"node\":{\"id\":\"\"}", "$.node.id:");
    expect_error(",\"node\":\"gw\"", "$.node:");
    expect_error(",\"node\":{\"address\":\"x\"}", "$.node.address: expected \"host:port\"");
    expect_error(",\"node\":{\"address\":\"h:443\"}", "$.node.address: needs $.node.id");
    static const char *const bad[] = {"h", "h:", ":443", "h:0", "h:65536", "h:123456",
                                      "h h:1", "h\\r:1", "[::1:1", "h:1x", "a/b:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char tail[256];
        snprintf(tail, sizeof tail, ",\"node\":{\"id\":\"a\",\"address\":\"%s\"}", bad[i]);
        expect_error(tail, "$.node.address: expected \"host:port\"");
    }
    expect_error(",\"tenant_store\":{" ETCD_STORE ",\"lease_ttl_s\":1}",
                 "$.tenant_store.lease_ttl_s:");
    expect_error(",\"tenant_store\":{" ETCD_STORE ",\"lease_ttl_s\":3601}",
                 "$.tenant_store.lease_ttl_s:");
    expect_error(",\"tenant_store\":{" ETCD_STORE ",\"members_prefix\":\"\"}",
                 "$.tenant_store.members_prefix:");
    expect_error(",\"tenant_store\":{\"type\":\"file\",\"path\":\"t.json\",\"lease_ttl_s\":5}",
                 "$.tenant_store.lease_ttl_s: only for type \"etcd\"");
}
