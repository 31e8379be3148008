/*
 * test_ratelimit.c — a tenant's limits (tenants[i].limits, issue 7 §3) on
 * real tunnels, driven in memory by the harness against a real UDP backend:
 * the tunnel caps answer 429 with retry-after and a reason and never cut an
 * open tunnel; per-tunnel packets/s and bits/s hold in each direction within
 * burst + rate x elapsed (+1 for a refill landing mid-run); signaling passes
 * under a media limit; one tenant over its limit leaves another's throughput
 * unchanged; a resumed tunnel keeps its hold on the cap.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../proto/capsule.h"
#include "harness.c"

#define PATH "/v1/tunnel/acme/sfu"
#define PATH_OTHER "/v1/tunnel/other/sfu"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An RTP-looking media packet of len bytes, tagged (byte 1) and numbered. */
static void media(uint8_t *p, size_t len, uint8_t tag, uint32_t seq)
{
    memset(p, 0xab, len);
    p[0] = 0x80;
    p[1] = tag;
    p[2] = (uint8_t)(seq >> 8);
    p[3] = (uint8_t)seq;
}

/* Reads every datagram already queued at the backend (loopback delivers on
 * send, so nothing more is on its way once the gateway has sent): counts per
 * tag in n[256]. Returns the total. */
static int backend_drain(harness_t *h, int n[256])
{
    uint8_t buf[2048];
    struct sockaddr_storage from;
    int total = 0;
    for (int i = 0; i < 100000; i++) {
        ssize_t r = h_backend_recv(h, buf, sizeof buf, &from, 0);
        if (r < 0)
            break;
        if (r >= 2)
            n[buf[1]]++;
        total++;
    }
    return total;
}

static void body_is(harness_t *h, int idx, const char *want)
{
    h_stream_t *st = &h->streams[idx];
    cr_assert_eq(st->down_len, strlen(want), "body %.*s", (int)st->down_len, st->down);
    cr_assert(!memcmp(st->down, want, st->down_len));
}

/* ---- caps ------------------------------------------------------------------- */

Test(ratelimit, tenant_cap_429_with_retry_after_and_open_tunnels_keep_running)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0, "\"max_tunnels\":2,\"retry_after_s\":7", "");
    int a = h_open(&h, PATH), b = h_open(&h, PATH);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h.streams[b].status, 200);
    int c = h_open(&h, PATH);
    cr_assert_eq(h.streams[c].status, 429);
    cr_assert_str_eq(h.streams[c].retry_after, "7");
    h_pump(&h);
    body_is(&h, c, "tenant at its concurrent tunnel limit\n");
    cr_assert_eq(h.srv.counters.requests_rejected[request_status_index(429)], 1u);
    /* the two open tunnels still relay */
    uint8_t p[100];
    media(p, sizeof p, 1, 1);
    h_relay_up(&h, a, p, sizeof p);
    h_relay_up(&h, b, p, sizeof p);
    /* another tenant is not affected by acme's cap */
    int o = h_open(&h, PATH_OTHER);
    cr_assert_eq(h.streams[o].status, 200);
    cr_assert_str_eq(h.streams[o].retry_after, "");
    /* a closed tunnel gives its place back */
    h_end(&h, a);
    int gone[2] = {a, 1};
    cr_assert(h_until(&h, h_has_capsules, gone, 2000));
    for (int i = 0; i < 100 && ratelimit_tenant_tunnels(&h.srv.env.rl, "acme") != 1; i++)
        h_pump(&h);
    cr_assert_eq(ratelimit_tenant_tunnels(&h.srv.env.rl, "acme"), 1u);
    int d = h_open(&h, PATH);
    cr_assert_eq(h.streams[d].status, 200);
    h_fini(&h);
}

Test(ratelimit, per_user_cap)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0, "\"max_tunnels_per_user\":1", "");
    int a = h_open_as(&h, PATH, 600, "alice", NULL);
    int a2 = h_open_as(&h, PATH, 600, "alice", NULL);
    int b = h_open_as(&h, PATH, 600, "bob", NULL);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h.streams[a2].status, 429);
    cr_assert_str_eq(h.streams[a2].retry_after, "5", "the default retry_after_s");
    h_pump(&h);
    body_is(&h, a2, "user at its concurrent tunnel limit\n");
    cr_assert_eq(h.streams[b].status, 200);
    h_fini(&h);
}

/* ---- per-tunnel rates ------------------------------------------------------------ */

/* up_packets_s 100, burst 10; 60 packets sent as fast as the harness goes:
 * delivered is burst + what refilled meanwhile, the rest counted as
 * rate_tunnel. Tenant "other" (no limits) gets all 60 of its own,
 * interleaved with acme's. */
Test(ratelimit, up_packets_per_tunnel_and_other_tenant_unchanged)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0, "\"up_packets_s\":100,\"up_packets_burst\":10", "");
    int a = h_open(&h, PATH), o = h_open(&h, PATH_OTHER);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h.streams[o].status, 200);
    uint8_t p[100];
    double t0 = mono_s();
    for (uint32_t i = 0; i < 60; i++) {
        media(p, sizeof p, 1, i);
        h_send_datagram(&h, a, p, sizeof p);
        media(p, sizeof p, 2, i);
        h_send_datagram(&h, o, p, sizeof p);
    }
    double elapsed = mono_s() - t0;
    int n[256] = {0};
    backend_drain(&h, n);
    int allowed = 10 + (int)(100 * elapsed) + 1;
    cr_assert_geq(n[1], 10, "acme delivered %d (burst 10)", n[1]);
    cr_assert_leq(n[1], allowed, "acme delivered %d > %d in %.3f s", n[1], allowed, elapsed);
    cr_assert_eq(n[2], 60, "other tenant delivered %d of 60", n[2]);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_RATE_TUNNEL], (uint64_t)(60 - n[1]));
    h_fini(&h);
}

/* up_bits_s with 1,200 B packets: burst 5 packets' worth (48,000 bits) at
 * 96,000 bit/s (10 packets/s). Under that media limit STUN (in SIGNAL
 * capsules, proto/README.md) still passes within its own budget
 * (signal_packets_s 50, burst 50). */
Test(ratelimit, up_bits_per_tunnel_and_signaling_passes)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0, "\"up_bits_s\":96000,\"up_bits_burst\":48000", "");
    int a = h_open(&h, PATH);
    cr_assert_eq(h.streams[a].status, 200);
    uint8_t p[1200];
    double t0 = mono_s();
    for (uint32_t i = 0; i < 30; i++) {
        media(p, sizeof p, 5, i);
        h_send_datagram(&h, a, p, sizeof p);
    }
    /* media is now over its limit; STUN Binding requests (first byte 0) */
    uint8_t stun[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
    for (int i = 0; i < 20; i++) {
        stun[1] = 0x01;
        stun[19] = (uint8_t)i;
        h_send_capsule(&h, a, CAPSULE_SIGNAL, stun, sizeof stun);
    }
    double elapsed = mono_s() - t0;
    int n[256] = {0};
    backend_drain(&h, n);
    int allowed = 5 + (int)(10 * elapsed) + 1;
    cr_assert_geq(n[5], 5);
    cr_assert_leq(n[5], allowed, "media delivered %d > %d in %.3f s", n[5], allowed, elapsed);
    cr_assert_eq(n[0x01], 20, "every STUN packet passes under the media limit: %d", n[0x01]);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_RATE_TUNNEL], (uint64_t)(30 - n[5]));
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_RATE_SIGNAL], 0u);
    h_fini(&h);
}

/* The signaling budget itself: 5/s burst 5, under a media limit. */
Test(ratelimit, signal_budget_holds)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0,
                   "\"up_packets_s\":1,\"signal_packets_s\":5,\"signal_packets_burst\":5", "");
    int a = h_open(&h, PATH);
    uint8_t stun[20] = {0x00, 0x01};
    double t0 = mono_s();
    for (int i = 0; i < 40; i++)
        h_send_capsule(&h, a, CAPSULE_SIGNAL, stun, sizeof stun);
    double elapsed = mono_s() - t0;
    int n[256] = {0};
    int got = backend_drain(&h, n);
    cr_assert_geq(got, 5, "got %d, drops %llu, up %llu", got,
                  (unsigned long long)h.srv.counters.tunnel.drops[DROP_RATE_SIGNAL],
                  (unsigned long long)h.srv.counters.tunnel.up_packets);
    cr_assert_leq(got, 5 + (int)(5 * elapsed) + 1, "%d in %.3f s", got, elapsed);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_RATE_SIGNAL], (uint64_t)(40 - got));
    h_fini(&h);
}

typedef struct down_wait {
    int idx, want;
} down_wait_t;

static int down_settled(harness_t *h, void *arg)
{
    down_wait_t *w = arg;
    uint64_t dropped = h->srv.counters.tunnel.drops[DROP_RATE_TUNNEL] +
                       h->srv.counters.tunnel.drops[DROP_RATE_TENANT];
    return (uint64_t)h_count_capsules(h, w->idx, CAPSULE_DATAGRAM) + dropped >= (uint64_t)w->want;
}

/* down_packets_s 50, burst 8: the backend sends 40 packets at once. */
Test(ratelimit, down_packets_per_tunnel)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0, "\"down_packets_s\":50,\"down_packets_burst\":8", "");
    int a = h_open(&h, PATH);
    uint8_t p[100];
    media(p, sizeof p, 1, 0);
    struct sockaddr_storage to = h_relay_up(&h, a, p, sizeof p); /* uplink: no limit */
    double t0 = mono_s();
    for (uint32_t i = 0; i < 40; i++) {
        media(p, sizeof p, 3, i);
        h_backend_send(&h, &to, p, sizeof p);
    }
    down_wait_t w = {a, 40};
    cr_assert(h_until(&h, down_settled, &w, 2000));
    double elapsed = mono_s() - t0;
    int got = h_count_capsules(&h, a, CAPSULE_DATAGRAM);
    cr_assert_geq(got, 8);
    cr_assert_leq(got, 8 + (int)(50 * elapsed) + 1, "%d in %.3f s", got, elapsed);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_RATE_TUNNEL], (uint64_t)(40 - got));
    h_fini(&h);
}

/* ---- the tenant's aggregate ------------------------------------------------------ */

/* bits_s 9,600 (100 B packets are 800 bits: 12 packets/s), burst 8,000
 * bits (10 packets) shared by two acme tunnels; other unlimited. */
Test(ratelimit, tenant_aggregate_bits_shared_by_its_tunnels)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0, "\"bits_s\":9600,\"bits_burst\":8000", "");
    int a = h_open(&h, PATH), b = h_open(&h, PATH), o = h_open(&h, PATH_OTHER);
    uint8_t p[100];
    double t0 = mono_s();
    for (uint32_t i = 0; i < 20; i++) {
        media(p, sizeof p, 1, i);
        h_send_datagram(&h, a, p, sizeof p);
        media(p, sizeof p, 2, i);
        h_send_datagram(&h, b, p, sizeof p);
        media(p, sizeof p, 4, i);
        h_send_datagram(&h, o, p, sizeof p);
    }
    double elapsed = mono_s() - t0;
    int n[256] = {0};
    backend_drain(&h, n);
    int acme = n[1] + n[2];
    cr_assert_geq(acme, 10);
    cr_assert_leq(acme, 10 + (int)(12 * elapsed) + 1, "%d in %.3f s", acme, elapsed);
    cr_assert_gt(n[2], 0, "the aggregate is shared, not taken by the first tunnel alone");
    cr_assert_eq(n[4], 20, "other tenant unchanged: %d of 20", n[4]);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_RATE_TENANT], (uint64_t)(40 - acme));
    h_fini(&h);
}

/* ---- resume ---------------------------------------------------------------------- */

/* A parked tunnel still holds its place, a resume of it is admitted even at
 * the cap (it is the same tunnel), and a new one is not. */
Test(ratelimit, resume_keeps_its_place_under_the_cap)
{
    harness_t h;
    h_init_tenants(&h, "", 0, 0, "\"max_tunnels\":1", "");
    int a = h_open(&h, PATH);
    cr_assert_eq(h.streams[a].status, 200);
    char token[64];
    snprintf(token, sizeof token, "%s", h.streams[a].session);
    cr_assert_neq(token[0], '\0');
    h_reconnect(&h); /* the stream is gone: the flow parks */
    cr_assert_eq(ratelimit_tenant_tunnels(&h.srv.env.rl, "acme"), 1u);
    int n = h_open(&h, PATH);
    cr_assert_eq(h.streams[n].status, 429);
    int r = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[r].status, 200);
    cr_assert_eq(ratelimit_tenant_tunnels(&h.srv.env.rl, "acme"), 1u);
    h_fini(&h);
}

/* ---- several workers (worker.h) ------------------------------------------------- */

/* Two workers' tables (the owner, slot 0, and a view, slot 1) share a
 * tenant's aggregate in simulated time: both flows busy, the two together
 * pass the bucket's figure (burst + rate x T), not twice it, each a fair
 * part; then one flow alone passes the whole rate, not half. */
Test(ratelimit, tenant_aggregate_is_one_for_every_worker)
{
    ratelimit_table_t owner = {0}, view;
    cr_assert_eq(ratelimit_table_lock_init(&owner, 2), 0);
    ratelimit_table_view(&view, &owner, 1);
    char id[] = "acme";
    cfg_tenant_t t = {.id = id};
    t.limits.bits_s = 1000000;
    t.limits.bits_burst = 100000;
    ratelimit_flow_t fa, fb;
    const char *why;
    uint64_t now = 1000000000ull, ms = 1000000ull;
    cr_assert_eq(ratelimit_admit(&owner, &t, "", 0, &fa, now, &why), RATELIMIT_OK);
    cr_assert_eq(ratelimit_admit(&view, &t, "", 0, &fb, now, &why), RATELIMIT_OK);
    /* 1,000 B packets (8,000 bits), each flow 2 Mbit/s for 2 s: 4x the rate. */
    uint64_t passed[2] = {0, 0};
    unsigned seed = 9;
    for (int i = 0; i < 500; i++, now += 4 * ms) {
        int x = rand_r(&seed) % 2; /* arrivals interleave: either worker first */
        ratelimit_flow_t *first = x ? &fb : &fa, *second = x ? &fa : &fb;
        passed[x] += ratelimit_pass(first, RATELIMIT_UP, 1000, 0, now) == RATELIMIT_PASS;
        passed[1 - x] += ratelimit_pass(second, RATELIMIT_UP, 1000, 0, now) == RATELIMIT_PASS;
    }
    uint64_t bits = (passed[0] + passed[1]) * 8000u, allowed = 100000u + 2000000u;
    cr_assert_leq(bits, allowed, "%llu bits passed, %llu allowed", (unsigned long long)bits,
                  (unsigned long long)allowed);
    cr_assert_geq(bits, allowed - 50000u - 8000u, "%llu bits passed, %llu allowed",
                  (unsigned long long)bits, (unsigned long long)allowed);
    cr_assert_gt(passed[0], passed[1] / 2);
    cr_assert_gt(passed[1], passed[0] / 2);
    /* fb idle: fa alone gets the whole rate (1 Mbit/s over 2 s), less what
     * fb's lease still holds. */
    uint64_t alone = 0;
    for (int i = 0; i < 500; i++, now += 4 * ms)
        alone += ratelimit_pass(&fa, RATELIMIT_UP, 1000, 0, now) == RATELIMIT_PASS;
    cr_assert_geq(alone * 8000u, 2000000u - 50000u - 8000u, "%llu bits alone",
                  (unsigned long long)(alone * 8000u));
    cr_assert_leq(alone * 8000u, 2000000u + 100000u);
    cr_assert_eq(ratelimit_tenant_tunnels(&view, "acme"), 2u);
    ratelimit_release(&fa);
    ratelimit_release(&fb);
    cr_assert_eq(ratelimit_tenant_tunnels(&owner, "acme"), 0u);
    ratelimit_table_dispose(&view);
    ratelimit_table_dispose(&owner);
}
