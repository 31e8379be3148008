/*
 * test_reload.c — server_tenants_apply, the part of a reload that holds live
 * tunnels to a new tenant table, driven in memory by the harness: a tunnel
 * whose kind is no longer allowed gets CLOSE(tenant disabled) while another
 * tenant's runs on, the old connection's next request is refused with the new
 * table, and a parked flow of a removed tenant closes at once.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../gateway/session.h"
#include "../../gateway/tunnel.h"
#include "../../proto/capsule.h"
#include "harness.c"

#define ACME "/v1/tunnel/acme/sfu"
#define OTHER "/v1/tunnel/other/sfu"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'r',  'l',  'd'};

Test(reload, a_kind_no_longer_allowed_closes_the_tunnel_and_others_run_on)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, ACME), o = h_open(&h, OTHER);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h.streams[o].status, 200);
    h_relay_up(&h, a, rtp, sizeof rtp);

    cr_assert_eq(h_retenant(&h, "{\"id\":\"acme\",\"secrets\":[\"" H_SECRET "\"],"
                           "\"regions\":[\"local\"],\"kinds\":[\"turn\"]},"),
                 1u);
    cr_assert_eq(h_close_code(&h, a), CLOSE_TENANT_DISABLED);
    cr_assert(h.streams[a].end_stream, "the closed tunnel's stream did not end");
    cr_assert_eq(h.srv.counters.sessions_parked, 0u, "a disabled tenant's flow was parked");
    cr_assert_eq(h.srv.sessions.count, 1u, "only other's session is left");
    /* other's tunnel runs on; acme is refused on this same old connection. */
    h_relay_up(&h, o, rtp, sizeof rtp);
    cr_assert_eq(h_count_capsules(&h, o, CAPSULE_CLOSE), 0);
    int again = h_open(&h, ACME);
    cr_assert_eq(h.streams[again].status, 403);
    /* Nothing changes for tenants the new table still allows. */
    cr_assert_eq(h_retenant(&h, "{\"id\":\"acme\",\"secrets\":[\"" H_SECRET "\"],"
                           "\"regions\":[\"local\"]},"),
                 0u);
    h_fini(&h);
}

Test(reload, a_parked_flow_of_a_removed_tenant_closes_at_once)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, ACME);
    cr_assert_eq(h.streams[a].status, 200);
    h_relay_up(&h, a, rtp, sizeof rtp);
    h_reconnect(&h); /* the connection died: the flow is parked */
    cr_assert_eq(h.srv.counters.sessions_parked, 1u);
    cr_assert_eq(h.srv.sessions.count, 1u);
    cr_assert_eq(h.srv.counters.tunnels_active, 1u);

    cr_assert_eq(h_retenant(&h, ""), 1u);
    cr_assert_eq(h.srv.sessions.count, 0u, "the parked flow is still resumable");
    cr_assert_eq(h.srv.counters.tunnels_active, 0u, "the parked tunnel was not freed");
    h_fini(&h);
}

Test(reload, a_tenant_moved_to_another_region_is_closed)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, ACME);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h_retenant(&h, "{\"id\":\"acme\",\"secrets\":[\"" H_SECRET "\"],"
                           "\"regions\":[\"eu\"]},"),
                 1u);
    cr_assert_eq(h_close_code(&h, a), CLOSE_TENANT_DISABLED);
    h_fini(&h);
}

/* A reload that gives a live tenant rate limits applies them to its open
 * tunnel at once (ratelimit_apply): before it nothing is dropped, after it
 * at most the new burst of a quick run of packets passes. */
Test(reload, new_limits_apply_to_a_live_tunnel)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, ACME);
    cr_assert_eq(h.streams[a].status, 200);
    for (int i = 0; i < 40; i++)
        h_send_datagram(&h, a, rtp, sizeof rtp);
    h_pump(&h);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_RATE_TUNNEL], 0u, "dropped before any limit");

    cr_assert_eq(h_retenant(&h, "{\"id\":\"acme\",\"secrets\":[\"" H_SECRET "\"],"
                           "\"regions\":[\"local\"],"
                           "\"limits\":{\"up_packets_s\":10,\"up_packets_burst\":5}},"),
                 0u);
    for (int i = 0; i < 40; i++)
        h_send_datagram(&h, a, rtp, sizeof rtp);
    h_pump(&h);
    /* 40 sent within well under a second at 10/s with a burst of 5: at most
     * 5 + 10 pass, and the tunnel is still open. */
    cr_assert_geq(h.srv.counters.tunnel.drops[DROP_RATE_TUNNEL], 25u,
                  "only %llu dropped after the reload",
                  (unsigned long long)h.srv.counters.tunnel.drops[DROP_RATE_TUNNEL]);
    cr_assert_eq(h_count_capsules(&h, a, CAPSULE_CLOSE), 0);
    h_fini(&h);
}
