/*
 * test_drain.c — the phases of a graceful shutdown (server_drain, server.h;
 * docs/operations.md "Drain and rolling restarts"), driven in memory by the
 * harness with a real UDP backend socket: readyz 503 and still serving while
 * deregistering, GOAWAY with tunnels relaying both ways, CLOSE(shutting down)
 * at the drain deadline, and what happens to parked sessions.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../gateway/session.h"
#include "../../proto/capsule.h"
#include "harness.c"

#define PATH "/v1/tunnel/acme/sfu"
#define LONG_AGE "\"media_queue_age_ms\":60000"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'd',  'r',  'a',  'i', 'n'};

static int phase_is(harness_t *h, void *arg)
{
    return h->srv.drain_phase == *(enum drain_phase *)arg;
}

static int stream_has_close(harness_t *h, void *arg)
{
    return h_count_capsules(h, *(int *)arg, CAPSULE_CLOSE) > 0;
}

static int got_goaway(harness_t *h, void *arg)
{
    return h->got_goaway;
}

/* arg is int[2] {stream index, count}: that many DATAGRAM capsules came down. */
static int has_datagrams(harness_t *h, void *arg)
{
    const int *want = arg;
    return h_count_capsules(h, want[0], CAPSULE_DATAGRAM) >= want[1];
}

/* One datagram up to the backend and its reply back down the tunnel. */
static void relay_both_ways(harness_t *h, int s)
{
    struct sockaddr_storage from = h_relay_up(h, s, rtp, sizeof rtp);
    int want[2] = {s, h_count_capsules(h, s, CAPSULE_DATAGRAM) + 1};
    h_backend_send(h, &from, rtp, sizeof rtp);
    cr_assert(h_until(h, has_datagrams, want, 2000),
              "the backend's reply did not come down the tunnel");
}

Test(drain, deregister_then_goaway_then_close)
{
    harness_t h;
    h_init(&h, "\"deregister_ms\":200,\"drain_ms\":300", 0);
    int a = h_open(&h, PATH);
    cr_assert_eq(h.streams[a].status, 200);
    const char *why = NULL;
    cr_assert_eq(server_ready(&h.srv, &why), 1);

    server_drain(&h.srv);
    /* 1. Deregistering: not ready, yet everything is served. */
    cr_assert_eq(h.srv.drain_phase, DRAIN_DEREGISTER);
    cr_assert_eq(server_ready(&h.srv, &why), 0);
    cr_assert_str_eq(why, "draining");
    h_pump(&h);
    cr_assert_not(h.got_goaway, "GOAWAY before the deregistration delay");
    int b = h_open(&h, PATH);
    cr_assert_eq(h.streams[b].status, 200, "a new tunnel while deregistering");
    relay_both_ways(&h, a);

    /* 2. GOAWAY: new streams refused, live tunnels relay both ways. */
    enum drain_phase want = DRAIN_GOAWAY;
    cr_assert(h_until(&h, phase_is, &want, 2000), "no GOAWAY phase after 200 ms");
    cr_assert(h_until(&h, got_goaway, NULL, 1000), "no GOAWAY sent");
    cr_assert_eq(h.goaway_error, NGHTTP2_NO_ERROR);
    int c = h_open(&h, PATH);
    cr_assert_neq(h.streams[c].status, 200, "a new stream after GOAWAY was served");
    relay_both_ways(&h, a);
    relay_both_ways(&h, b);
    cr_assert_eq(h_count_capsules(&h, a, CAPSULE_CLOSE), 0);
    cr_assert_eq(h.srv.counters.tunnels_active, 2u);

    /* 3. At the drain deadline: CLOSE(shutting down) on every tunnel. */
    cr_assert(h_until(&h, stream_has_close, &a, 2000), "no CLOSE within 2 s of GOAWAY");
    cr_assert(h_until(&h, stream_has_close, &b, 1000));
    cr_assert_eq(h.srv.drain_phase, DRAIN_CLOSE);
    cr_assert_eq(h_close_code(&h, a), CLOSE_SHUTTING_DOWN);
    cr_assert_eq(h_close_code(&h, b), CLOSE_SHUTTING_DOWN);
    h_fini(&h);
}

/* Phases of 0 ms are skipped: GOAWAY and CLOSE at once, as before drains
 * had phases. */
Test(drain, zero_delays_close_at_once)
{
    harness_t h;
    h_init(&h, "\"deregister_ms\":0,\"drain_ms\":0", 0);
    int a = h_open(&h, PATH);
    cr_assert_eq(h.streams[a].status, 200);
    server_drain(&h.srv);
    cr_assert_eq(h.srv.drain_phase, DRAIN_CLOSE);
    h_pump(&h);
    cr_assert(h.got_goaway);
    h_assert_close(&h, a, 0, CLOSE_SHUTTING_DOWN);
    h_fini(&h);
}

/* No deregistration delay: GOAWAY at once, the tunnel runs on. */
Test(drain, goaway_at_once_without_deregistration)
{
    harness_t h;
    h_init(&h, "\"drain_ms\":60000", 0);
    int a = h_open(&h, PATH);
    server_drain(&h.srv);
    cr_assert_eq(h.srv.drain_phase, DRAIN_GOAWAY);
    cr_assert(h_until(&h, got_goaway, NULL, 1000));
    relay_both_ways(&h, a);
    cr_assert_eq(h_count_capsules(&h, a, CAPSULE_CLOSE), 0);
    h_fini(&h);
}

/* Parked sessions: while deregistering a tunnel whose connection died still
 * parks and resumes; from GOAWAY on nothing parks (no listener is left to
 * resume through), and a tunnel whose connection dies then closes. */
Test(drain, parking_stops_at_goaway)
{
    harness_t h;
    h_init(&h, LONG_AGE ",\"deregister_ms\":300,\"drain_ms\":60000", 0);
    int a = h_open(&h, PATH);
    cr_assert_eq(h.streams[a].status, 200);
    char token[64];
    strcpy(token, h.streams[a].session);
    cr_assert_neq(token[0], '\0');
    server_drain(&h.srv);
    h_reconnect(&h);
    cr_assert_eq(h.srv.counters.sessions_parked, 1u, "no park while deregistering");
    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200, "no resume while deregistering");
    cr_assert_str_eq(h.streams[s].session, token);

    enum drain_phase want = DRAIN_GOAWAY;
    cr_assert(h_until(&h, phase_is, &want, 2000));
    cr_assert(h.srv.sessions.closed);
    uint64_t closed = h.srv.counters.tunnels_active;
    h_reconnect(&h); /* the connection dies during the drain */
    cr_assert_eq(h.srv.counters.sessions_parked, 1u, "a tunnel parked after GOAWAY");
    cr_assert_eq(h.srv.counters.tunnels_active, closed - 1, "the tunnel was not closed");
    h_fini(&h);
}
