/*
 * test_flow.c — client-shim/lib/flow.c: the CLI's flow table.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "../../client-shim/lib/shim_flow.h"

static socklen_t v4(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip, &a->sin_addr);
    return sizeof(*a);
}

static socklen_t v6(struct sockaddr_storage *ss, const char *ip, uint16_t port, uint32_t scope)
{
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_scope_id = scope;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    return sizeof(*a);
}

#define SA(x) ((const struct sockaddr *)&(x))

Test(flow, address_equality)
{
    struct sockaddr_storage a, b;
    socklen_t la, lb;

    la = v4(&a, "127.0.0.1", 5000);
    lb = v4(&b, "127.0.0.1", 5000);
    cr_expect(shim_sockaddr_equal(SA(a), la, SA(b), lb));
    lb = v4(&b, "127.0.0.1", 5001);
    cr_expect_not(shim_sockaddr_equal(SA(a), la, SA(b), lb), "ports differ");
    lb = v4(&b, "127.0.0.2", 5000);
    cr_expect_not(shim_sockaddr_equal(SA(a), la, SA(b), lb), "addresses differ");
    lb = v6(&b, "::ffff:127.0.0.1", 5000, 0);
    cr_expect_not(shim_sockaddr_equal(SA(a), la, SA(b), lb), "families differ");
    la = v6(&a, "fe80::1", 5000, 2);
    lb = v6(&b, "fe80::1", 5000, 2);
    cr_expect(shim_sockaddr_equal(SA(a), la, SA(b), lb));
    lb = v6(&b, "fe80::1", 5000, 3);
    cr_expect_not(shim_sockaddr_equal(SA(a), la, SA(b), lb), "scopes differ");
}

Test(flow, add_find_remove)
{
    shim_flowtab_t ft;
    struct sockaddr_storage a, b;
    socklen_t la = v4(&a, "127.0.0.1", 1000), lb = v6(&b, "::1", 1000, 0);
    int owner;

    cr_assert_eq(shim_flowtab_init(&ft, 4, &owner), 0);
    cr_expect_null(shim_flowtab_find(&ft, SA(a), la));
    shim_flow_t *fa = shim_flowtab_add(&ft, SA(a), la, 10);
    shim_flow_t *fb = shim_flowtab_add(&ft, SA(b), lb, 20);
    cr_assert_not_null(fa);
    cr_assert_not_null(fb);
    cr_expect_eq(fa->owner, &owner);
    cr_expect_eq(fa->state, SHIM_FLOW_ACTIVE);
    cr_expect_eq(fa->last_ms, 10);
    cr_expect_eq(ft.count, 2);
    cr_expect_eq(shim_flowtab_find(&ft, SA(a), la), fa);
    cr_expect_eq(shim_flowtab_find(&ft, SA(b), lb), fb);
    cr_expect_eq(shim_flowtab_find(&ft, SA(a), la), fa, "again, through the cache");
    shim_flowtab_remove(&ft, fa);
    shim_flowtab_remove(&ft, fa); /* no-op */
    cr_expect_eq(ft.count, 1);
    cr_expect_null(shim_flowtab_find(&ft, SA(a), la));
    cr_expect_eq(shim_flowtab_find(&ft, SA(b), lb), fb);
    shim_flowtab_dispose(&ft);
    shim_flowtab_dispose(&ft);
}

Test(flow, bounded_and_slots_are_reused)
{
    shim_flowtab_t ft;
    struct sockaddr_storage s;
    shim_flow_t *f[3];

    cr_assert_eq(shim_flowtab_init(&ft, 3, NULL), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(f[i] = shim_flowtab_add(&ft, SA(s), v4(&s, "10.0.0.1", (uint16_t)(100 + i)), 0));
    cr_expect_null(shim_flowtab_add(&ft, SA(s), v4(&s, "10.0.0.1", 200), 0), "table full");
    shim_flowtab_remove(&ft, f[1]);
    shim_flow_t *g = shim_flowtab_add(&ft, SA(s), v4(&s, "10.0.0.1", 200), 0);
    cr_expect_eq(g, f[1], "the freed slot is reused (stable addresses)");
    cr_expect_eq(g->tunnel, NULL);
    cr_expect_eq(shim_flowtab_cap(&ft), 3);
    cr_expect_eq(shim_flowtab_at(&ft, 3), NULL);
    shim_flowtab_dispose(&ft);
    cr_expect_neq(shim_flowtab_init(&ft, 0, NULL), 0, "zero slots is refused");
}

Test(flow, closing_flows_are_not_matched_but_backoff_flows_are)
{
    shim_flowtab_t ft;
    struct sockaddr_storage s;
    socklen_t l = v4(&s, "10.0.0.1", 7);

    cr_assert_eq(shim_flowtab_init(&ft, 4, NULL), 0);
    shim_flow_t *f = shim_flowtab_add(&ft, SA(s), l, 0);
    f->state = SHIM_FLOW_CLOSING;
    cr_expect_null(shim_flowtab_find(&ft, SA(s), l), "a closing flow gives way to a new one");
    shim_flow_t *g = shim_flowtab_add(&ft, SA(s), l, 0);
    cr_expect_neq(g, f);
    cr_expect_eq(shim_flowtab_active(&ft), 1);
    g->state = SHIM_FLOW_BACKOFF;
    cr_expect_eq(shim_flowtab_find(&ft, SA(s), l), g);
    cr_expect_eq(shim_flowtab_active(&ft), 0);
    cr_expect_eq(ft.count, 2);
    shim_flowtab_dispose(&ft);
}
