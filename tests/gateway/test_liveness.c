/*
 * test_liveness.c — what keeps a tunnel alive and whole through proxies and
 * bursts: PING capsules from the gateway (with RTT from the PONG), idle
 * limits per tunnel kind, and a video keyframe's burst of 200 x 1,200 B
 * datagrams arriving whole. Driven in memory by the harness.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../gateway/tunnel.h"
#include "../../proto/capsule.h"
#include "harness.c"

#define SFU "/v1/tunnel/acme/sfu"
#define TURN "/v1/tunnel/acme/turn"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'm',  'e',  'd',  'i', 'a'};

static tunnel_t *tunnel_of(harness_t *h, int idx)
{
    return nghttp2_session_get_stream_user_data(h->conn->h2, h->streams[idx].id);
}

static int has_ping(harness_t *h, void *arg)
{
    return h_count_capsules(h, *(int *)arg, CAPSULE_PING) > 0;
}

static int has_close(harness_t *h, void *arg)
{
    return h_count_capsules(h, *(int *)arg, CAPSULE_CLOSE) > 0;
}

static int pong_counted(harness_t *h, void *arg)
{
    tunnel_t *t = tunnel_of(h, *(int *)arg);
    return t && t->counters.pongs_received > 0;
}

Test(liveness, gateway_pings_every_tunnel_and_measures_rtt_from_the_pong)
{
    harness_t h;
    h_init(&h, "\"capsule_ping_ms\":200", 0);
    int s = h_open(&h, SFU);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert(h_until(&h, has_ping, &s, 2000), "no PING capsule within 2 s");
    size_t off = 0, len;
    uint64_t type;
    const uint8_t *v = NULL;
    while (h_next_capsule(&h.streams[s], &off, &type, &v, &len) && type != CAPSULE_PING)
        ;
    cr_assert_eq(len, 8);
    uint8_t value[8];
    memcpy(value, v, 8);

    /* A PONG that answers nothing of ours is ignored. */
    uint8_t stray[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    h_send_capsule(&h, s, CAPSULE_PONG, stray, 8);
    tunnel_t *t = tunnel_of(&h, s);
    cr_assert_eq(t->counters.pongs_received, 0u);
    cr_assert_geq(t->counters.pings_sent, 1u);

    /* The answer to the PING (the next one is 200 ms away). */
    h_send_capsule(&h, s, CAPSULE_PONG, value, 8);
    cr_assert(h_until(&h, pong_counted, &s, 1000), "the PONG was not counted");
    cr_assert_eq(t->counters.pongs_received, 1u);
    cr_assert_gt(t->counters.rtt_last_us, 0u);
    cr_assert_gt(t->counters.rtt_min_us, 0u);
    cr_assert_leq(t->counters.rtt_min_us, t->counters.rtt_last_us);
    cr_assert_lt(t->counters.rtt_last_us, 2000000u);
    h_fini(&h);
}

Test(liveness, capsule_pings_are_not_traffic_for_the_idle_limit)
{
    harness_t h;
    h_init(&h, "\"capsule_ping_ms\":20,\"tunnel_idle_ms\":200", 0);
    int s = h_open(&h, SFU);
    cr_assert_eq(h.streams[s].status, 200);
    uint8_t v[8] = {9};
    /* The client pings too, more often than the idle limit: still idle. */
    int closed = 0;
    for (int i = 0; i < 100 && !closed; i++) {
        h_send_capsule(&h, s, CAPSULE_PING, v, 8);
        closed = h_until(&h, has_close, &s, 30);
    }
    cr_assert(closed, "PINGs kept an idle tunnel open");
    cr_assert_eq(h_close_code(&h, s), CLOSE_IDLE_TIMEOUT);
    h_fini(&h);
}

Test(liveness, turn_tunnels_have_their_own_idle_limit)
{
    harness_t h;
    h_init_turn(&h, "\"tunnel_idle_ms\":100,\"turn_idle_ms\":600000,\"capsule_ping_ms\":0", 0, 1);
    int sfu = h_open(&h, SFU);
    int turn = h_open(&h, TURN);
    cr_assert_eq(h.streams[sfu].status, 200);
    cr_assert_eq(h.streams[turn].status, 200);
    h_relay_up(&h, sfu, rtp, sizeof rtp);
    h_relay_up(&h, turn, rtp, sizeof rtp);
    cr_assert(h_until(&h, has_close, &sfu, 2000), "the sfu tunnel outlived its idle limit");
    h_assert_close(&h, sfu, 0, CLOSE_IDLE_TIMEOUT);
    cr_assert_eq(h_count_capsules(&h, turn, CAPSULE_CLOSE), 0, "the turn tunnel is kept");
    cr_assert_eq(tunnel_of(&h, turn)->state, TUNNEL_OPEN);
    h_fini(&h);
}

static int queued_packets(harness_t *h, void *arg)
{
    tunnel_t *t = tunnel_of(h, 0);
    return t->down.media.count >= *(size_t *)arg;
}

/* A keyframe: 200 datagrams of 1,200 B from the backend arrive whole with the
 * default queue bounds, even while the client takes nothing: the downlink
 * queue holds the whole burst. The backend sends it in two back-to-back
 * halves, the gateway reading between them, so that the test does not depend
 * on the host's net.core.rmem_max (Debian's default lets a socket buffer
 * hold about 184 such datagrams; a gateway reads while a burst arrives). */
Test(liveness, a_200_packet_burst_arrives_whole)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, SFU);
    struct sockaddr_storage to = h_relay_up(&h, s, rtp, sizeof rtp);
    uint8_t pkt[1200];
    memset(pkt, 0x5a, sizeof pkt);
    pkt[0] = 0x80; /* RTP: media class */
    for (int half = 0; half < 2; half++) {
        for (int i = half * 100; i < half * 100 + 100; i++) {
            pkt[2] = (uint8_t)(i >> 8);
            pkt[3] = (uint8_t)i;
            h_backend_send(&h, &to, pkt, sizeof pkt);
        }
        size_t want = (size_t)(half + 1) * 100;
        cr_assert(h_loop_until(&h, queued_packets, &want, 2000), "the gateway queued %zu of %zu",
                  tunnel_of(&h, s)->down.media.count, want);
    }
    h_wait_capsules(&h, s, 200);
    size_t off = 0, len;
    uint64_t type;
    const uint8_t *v;
    int n = 0;
    while (h_next_capsule(&h.streams[s], &off, &type, &v, &len)) {
        if (type != CAPSULE_DATAGRAM)
            continue;
        cr_assert_eq(len, 1201);
        cr_assert_eq((v[3] << 8) | v[4], n, "packet %d out of order", n);
        n++;
    }
    cr_assert_eq(n, 200);
    const tunnel_counters_t *k = &h.srv.counters.tunnel;
    for (int r = 0; r < DROP_REASON_COUNT; r++)
        cr_assert_eq(k->drops[r], 0u, "%s drops: %llu", drop_reason_name(r),
                     (unsigned long long)k->drops[r]);
    h_fini(&h);
}
