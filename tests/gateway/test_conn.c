/*
 * test_conn.c — the gateway's HTTP/2 session and tunnels, driven in memory by
 * an nghttp2 client (harness.c), with a real UDP backend socket.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../gateway/tunnel.h"
#include "../../proto/capsule.h"
#include "harness.c"

#define PATH "/v1/tunnel/acme/sfu"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'm',  'e',  'd',  'i', 'a'};
static const uint8_t stun[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2,
                                 3,    4,    5,    6,    7,    8,    9,    10,   11, 12};

Test(conn, tunnel_relays_both_ways_and_classifies_downlink)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200, "headers are sent before any body");
    cr_assert_eq(h.streams[s].down_len, 0u);

    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    h_send_capsule(&h, s, CAPSULE_SIGNAL, stun, sizeof stun);
    uint8_t buf[64];
    struct sockaddr_storage from2;
    cr_assert_eq(h_backend_recv(&h, buf, sizeof buf, &from2, 2000), (ssize_t)sizeof stun);
    cr_assert_arr_eq(buf, stun, sizeof stun);

    h_backend_send(&h, &from, rtp, sizeof rtp);
    h_backend_send(&h, &from, stun, sizeof stun);
    h_wait_capsules(&h, s, 2);
    uint64_t type;
    const uint8_t *v;
    size_t len;
    /* Signaling goes ahead of media, so the STUN reply may come first; find each. */
    int seen_media = 0, seen_signal = 0;
    for (int i = 0; i < 2; i++) {
        h_nth_capsule(&h, s, i, &type, &v, &len);
        if (type == CAPSULE_DATAGRAM) {
            cr_assert_eq(len, sizeof rtp + 1);
            cr_assert_eq(v[0], 0, "context id 0");
            cr_assert_arr_eq(v + 1, rtp, sizeof rtp);
            seen_media = 1;
        } else {
            cr_assert_eq(type, CAPSULE_SIGNAL, "STUN goes down as SIGNAL (RFC 7983)");
            cr_assert_arr_eq(v, stun, sizeof stun);
            seen_signal = 1;
        }
    }
    cr_assert(seen_media && seen_signal);
    cr_assert_eq(h.srv.counters.tunnel.up_packets, 2u);
    cr_assert_eq(h.srv.counters.tunnel.down_packets, 2u);
    h_fini(&h);
}

Test(conn, malformed_capsule_kills_only_its_own_stream)
{
    harness_t h;
    h_init(&h, "", 0);
    int bad = h_open(&h, PATH);
    int good = h_open(&h, PATH);
    cr_assert_eq(h.streams[bad].status, 200);
    cr_assert_eq(h.streams[good].status, 200);
    struct sockaddr_storage from = h_relay_up(&h, good, rtp, sizeof rtp);

    /* A DATAGRAM declaring 70,000 bytes: over the 65,535 maximum. */
    static const uint8_t oversized[] = {0x00, 0x80, 0x01, 0x11, 0x70, 0x00};
    h_send(&h, bad, oversized, sizeof oversized);
    h_wait_capsules(&h, bad, 1);
    h_assert_close(&h, bad, 0, CLOSE_PROTOCOL_ERROR);
    cr_assert(h.streams[bad].got_rst, "RST_STREAM follows the CLOSE");
    cr_assert_eq(h.streams[bad].close_error, NGHTTP2_PROTOCOL_ERROR);
    cr_assert_eq(h.srv.counters.protocol_errors, 1u);

    /* The other stream on the same connection still works both ways. */
    cr_assert_not(h.streams[good].closed);
    h_relay_up(&h, good, rtp, sizeof rtp);
    h_backend_send(&h, &from, rtp, sizeof rtp);
    h_wait_capsules(&h, good, 1);
    h_fini(&h);
}

Test(conn, ping_is_answered_with_pong)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    static const uint8_t opaque[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    h_send_capsule(&h, s, CAPSULE_PING, opaque, sizeof opaque);
    h_wait_capsules(&h, s, 1);
    uint64_t type;
    const uint8_t *v;
    size_t len;
    h_nth_capsule(&h, s, 0, &type, &v, &len);
    cr_assert_eq(type, CAPSULE_PONG);
    cr_assert_eq(len, 8u);
    cr_assert_arr_eq(v, opaque, 8);

    /* A PING of the wrong size is a protocol error. */
    h_send_capsule(&h, s, CAPSULE_PING, opaque, 7);
    h_wait_capsules(&h, s, 2);
    h_assert_close(&h, s, 1, CLOSE_PROTOCOL_ERROR);
    h_fini(&h);
}

static int stream_closed(harness_t *h, void *arg)
{
    return h->streams[*(int *)arg].closed;
}

Test(conn, client_end_of_body_gets_close_normal_and_end_stream)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    h_relay_up(&h, s, rtp, sizeof rtp);
    h_end(&h, s);
    cr_assert(h_until(&h, stream_closed, &s, 2000));
    h_assert_close(&h, s, 0, CLOSE_NORMAL);
    cr_assert(h.streams[s].end_stream);
    cr_assert_not(h.streams[s].got_rst);
    cr_assert_eq(h.srv.counters.tunnels_active, 0u);
    h_fini(&h);
}

Test(conn, client_close_capsule_is_answered)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    uint8_t buf[64];
    ssize_t n = capsule_encode_close(buf, sizeof buf, CLOSE_NORMAL, "bye", 3);
    h_send(&h, s, buf, (size_t)n);
    h_end(&h, s);
    cr_assert(h_until(&h, stream_closed, &s, 2000));
    h_assert_close(&h, s, 0, CLOSE_NORMAL);
    h_fini(&h);
}

Test(conn, body_ending_inside_a_capsule_is_a_protocol_error)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    static const uint8_t partial[] = {0x00, 0x05, 0x00, 0x80}; /* 2 of 5 value bytes */
    h_send(&h, s, partial, sizeof partial);
    h_end(&h, s);
    cr_assert(h_until(&h, stream_closed, &s, 2000));
    h_assert_close(&h, s, 0, CLOSE_PROTOCOL_ERROR);
    h_fini(&h);
}

Test(conn, nonzero_context_id_is_dropped_and_counted)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    uint8_t v[1 + sizeof rtp];
    v[0] = 7; /* context id 7: nothing is registered for it */
    memcpy(v + 1, rtp, sizeof rtp);
    h_send_capsule(&h, s, CAPSULE_DATAGRAM, v, sizeof v);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_CONTEXT_ID], 1u);
    /* The next valid packet is the first the backend sees. */
    static const uint8_t second[] = {0x80, 0x00, 0x00, 0x02};
    h_relay_up(&h, s, second, sizeof second);
    /* Unknown capsule types are skipped (RFC 9297 §3.2), not fatal. */
    h_send_capsule(&h, s, 0x17 + 0x29 * 3, "grease", 6);
    h_relay_up(&h, s, rtp, sizeof rtp);
    cr_assert_eq(h.srv.counters.tunnel.unknown_capsules, 1u);
    h_fini(&h);
}

/* Every backend reply of the congestion test is accounted for: queued or
 * dropped (nothing is sent while the harness does not pull). */
static int all_read(harness_t *h, void *arg)
{
    const tunnel_t *t = arg;
    return t->counters.drops[DROP_MEDIA_EVICTED] + t->down.media.count + t->down.signal.count ==
           100 + 1;
}

/* The client's stream window is closed, so nothing can go down: media piles up
 * in the bounded queue, which evicts the oldest; signaling waits in its own
 * queue. When the window opens, signaling comes out first. */
Test(conn, congestion_drops_oldest_media_never_signaling)
{
    harness_t h;
    h_init(&h, "\"media_queue_bytes\":4096", 1);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);

    uint8_t pkt[200];
    memset(pkt, 0, sizeof pkt);
    pkt[0] = 0x80;
    const int media = 100;
    for (int i = 0; i < media; i++) {
        pkt[2] = (uint8_t)(i >> 8);
        pkt[3] = (uint8_t)i; /* RTP sequence number */
        h_backend_send(&h, &from, pkt, sizeof pkt);
    }
    h_backend_send(&h, &from, stun, sizeof stun);
    /* Let the gateway read everything the backend sent. */
    tunnel_t *t = tunnel_first(&h.conn->host);
    const pktq_t *mq = &t->down.media, *sq = &t->down.signal;
    cr_assert(h_loop_until(&h, all_read, t, 2000), "the gateway did not read all %d replies",
              media + 1);
    uint64_t evicted = t->counters.drops[DROP_MEDIA_EVICTED];
    cr_assert_gt(evicted, 0u, "a 4 KiB queue cannot hold 100 x 200 B");
    cr_assert_eq(sq->count, 1u, "signaling is never evicted");
    cr_assert_leq(mq->bytes, 4096u);
    /* Nothing went out yet: every media packet is queued or counted as dropped. */
    cr_assert_eq(t->down.tx_packets, 0u);
    cr_assert_eq(evicted + mq->count, (uint64_t)media);

    nghttp2_submit_window_update(h.client, NGHTTP2_FLAG_NONE, h.streams[s].id, 1 << 20);
    h_wait_capsules(&h, s, 2);
    uint64_t type;
    const uint8_t *v;
    size_t len;
    h_nth_capsule(&h, s, 0, &type, &v, &len);
    cr_assert_eq(type, CAPSULE_SIGNAL, "signaling overtakes queued media");
    h_nth_capsule(&h, s, 1, &type, &v, &len);
    cr_assert_eq(type, CAPSULE_DATAGRAM);
    uint64_t seq = (uint64_t)((v[1 + 2] << 8) | v[1 + 3]);
    cr_assert_eq(seq, evicted, "the oldest surviving media comes next (seq %llu)",
                 (unsigned long long)seq);
    h_fini(&h);
}

Test(conn, drain_sends_close_shutting_down_and_goaway)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, PATH);
    int b = h_open(&h, PATH);
    conn_drain(h.conn);
    h_pump(&h);
    cr_assert(h.got_goaway);
    h_assert_close(&h, a, 0, CLOSE_SHUTTING_DOWN);
    h_assert_close(&h, b, 0, CLOSE_SHUTTING_DOWN);
    cr_assert(h.streams[a].end_stream && h.streams[b].end_stream);
    /* New streams after GOAWAY are not served. */
    int c = h_open(&h, PATH);
    cr_assert_neq(h.streams[c].status, 200);
    h_fini(&h);
}

static int conn_is_closing(harness_t *h, void *arg)
{
    return h->conn->closing;
}

static int stream_has_close(harness_t *h, void *arg)
{
    int want[2] = {*(int *)arg, 1};
    return h_has_capsules(h, want);
}

Test(conn, idle_tunnel_is_closed_with_idle_timeout)
{
    harness_t h;
    h_init(&h, "\"tunnel_idle_ms\":50", 0);
    int s = h_open(&h, PATH);
    cr_assert(h_until(&h, stream_has_close, &s, 3000), "no CLOSE within 3 s of a 50 ms idle");
    h_assert_close(&h, s, 0, CLOSE_IDLE_TIMEOUT);
    h_fini(&h);
}

/* A 404 or a 401 does not move a connection to the long idle deadline: until
 * a tunnel opens it has header_timeout_ms. */
Test(conn, refused_requests_keep_the_connection_on_the_header_deadline)
{
    harness_t h;
    h_init(&h, "\"header_timeout_ms\":100,\"conn_idle_ms\":600000", 0);
    int s = h_open(&h, "/v1/nope");
    cr_assert_eq(h.streams[s].status, 404);
    cr_assert(h_loop_until(&h, conn_is_closing, NULL, 3000),
              "the connection outlived its header deadline after a 404");
    h_fini(&h);
}

/* A client with a zero window leaves downlink media in our queues: after
 * write_stall_ms without progress it gets GOAWAY and the connection closes. */
Test(conn, client_that_takes_nothing_is_closed_after_the_write_stall_limit)
{
    harness_t h;
    h_init(&h, "\"write_stall_ms\":100,\"tunnel_idle_ms\":600000,\"close_linger_ms\":600000",
           0);
    h_shut_windows(&h);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    h_backend_send(&h, &from, rtp, sizeof rtp);
    cr_assert(h_until(&h, conn_is_closing, NULL, 5000),
              "a client that takes nothing was kept beyond write_stall_ms");
    cr_assert(h.got_goaway, "the client was not told why");
    cr_assert_eq(h.srv.counters.write_stalls, 1u);
    cr_assert_eq(h.conn->end, CONN_END_WRITE_STALL, "ends as %s", conn_end_name(h.conn->end));
    h_fini(&h);
}

static int never(harness_t *h, void *arg)
{
    return 0;
}

/* A client that reads what it is sent is not stalled, however long it runs. */
Test(conn, client_that_reads_is_not_a_write_stall)
{
    harness_t h;
    h_init(&h, "\"write_stall_ms\":50", 0);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    for (int i = 0; i < 20; i++) {
        h_backend_send(&h, &from, rtp, sizeof rtp);
        h_wait_capsules(&h, s, i + 1);
        h_until(&h, never, NULL, 10); /* let 10 ms pass, pumping */
    }
    cr_assert_not(h.conn->closing);
    cr_assert_eq(h.srv.counters.write_stalls, 0u);
    h_fini(&h);
}

/* A client that shut its window, then opened it after the media queued for
 * it had expired, took nothing because nothing fresh was left: it is not
 * stalled, and the empty queue is no wait (the gateway's own lateness, under
 * load, expires media the same way). */
Test(conn, client_whose_queued_media_expired_is_not_a_write_stall)
{
    harness_t h;
    h_init(&h, "\"write_stall_ms\":200,\"media_queue_age_ms\":20,\"tunnel_idle_ms\":600000", 0);
    h_shut_windows(&h);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    h_backend_send(&h, &from, rtp, sizeof rtp);
    h_until(&h, never, NULL, 50); /* past the downlink's 10 ms */
    nghttp2_submit_window_update(h.client, NGHTTP2_FLAG_NONE, h.streams[s].id, 1 << 20);
    h_pump(&h);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_MEDIA_EXPIRED], 1u);
    cr_assert_eq(h_count_capsules(&h, s, CAPSULE_DATAGRAM), 0);

    h_until(&h, never, NULL, 500); /* two and a half write_stall_ms, nothing queued */
    cr_assert_not(h.conn->closing, "closed as a write stall with nothing waiting");
    cr_assert_eq(h.srv.counters.write_stalls, 0u);
    h_backend_send(&h, &from, rtp, sizeof rtp);
    h_wait_capsules(&h, s, 1);
    h_fini(&h);
}

static int released(harness_t *h, void *arg)
{
    return h->srv.trim_released > 0;
}

/* "A connection quiet for a second both ways gives its buffers back, from its
 * health timer" (docs/architecture.md, memory): not before the second, once,
 * and not again while it stays quiet. (The in-memory connection has no TLS:
 * what is checked is when the release runs and that the server counts it
 * towards its heap trim.) */
Test(conn, quiet_connection_releases_its_buffers_once)
{
    harness_t h;
    h_init(&h, "\"write_stall_ms\":40", 0); /* a health tick every 11 ms */
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    uint64_t t0 = h.conn->last_rx > h.conn->last_drain ? h.conn->last_rx : h.conn->last_drain;
    cr_assert_gt(h2mem_resident(&h.conn->h2mem), 0, "no frame went through nghttp2's buffer");
    cr_assert(h_until(&h, released, NULL, 3000), "a quiet connection kept its buffers");
    uint64_t at = h.conn->released_at;
    cr_assert_geq(at - t0, 1000000000u, "released %llu ms after the last I/O",
                  (unsigned long long)((at - t0) / 1000000));
    cr_assert_not_null(h.conn->h2mem.block);
    cr_assert_eq(h2mem_resident(&h.conn->h2mem), 0, "nghttp2's frame buffer was kept");
    h_until(&h, never, NULL, 200); /* about 18 more ticks, still quiet */
    cr_assert_eq(h.srv.trim_released, 1u, "released %u times while quiet",
                 h.srv.trim_released);
    cr_assert_eq(h.conn->released_at, at);
    cr_assert_not(h.conn->closing);
    /* Released is not gone: the next packet goes down the same tunnel. */
    h_backend_send(&h, &from, rtp, sizeof rtp);
    h_wait_capsules(&h, s, 1);
    cr_assert_not(h.conn->closing);
    h_fini(&h);
}

/* Resident pages wholly inside [from, to). */
static size_t resident_pages(const uint8_t *from, const uint8_t *to)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)from + page - 1) & ~(page - 1), b = (uintptr_t)to & ~(page - 1);
    size_t n = 0;
    for (; a < b; a += page) {
        unsigned char v;
        cr_assert_eq(mincore((void *)a, page, &v), 0);
        n += v & 1;
    }
    return n;
}

static tunnel_t *first_tunnel(harness_t *h)
{
    cr_assert_not(list_empty(&h->conn->host.tunnels));
    return LIST_ENTRY(h->conn->host.tunnels.next, tunnel_t, _link);
}

static int media_queued(harness_t *h, void *arg)
{
    return first_tunnel(h)->down.media.count >= *(size_t *)arg;
}

static int burst_pages_given_back(harness_t *h, void *arg)
{
    const pktq_t *q = &first_tunnel(h)->down.media;
    return resident_pages(q->_ring + TUNNEL_RING_KEEP, q->_ring + q->_cap) == 0;
}

/* A burst the client could not take at once runs the downlink ring deep;
 * once it has drained, the connection's health tick gives the pages beyond
 * the first packets back (tunnel_release_idle), and the tunnel carries on. */
Test(conn, a_drained_burst_gives_its_ring_pages_back)
{
    harness_t h;
    h_init(&h, "\"write_stall_ms\":2000", 0); /* a health tick every 0.5 s */
    h_shut_windows(&h);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    uint8_t big[1000];
    memset(big, 'v', sizeof big);
    memcpy(big, rtp, 12); /* an RTP header: media */
    size_t burst = 40;
    for (size_t i = 0; i < burst; i++)
        h_backend_send(&h, &from, big, sizeof big);
    cr_assert(h_until(&h, media_queued, &burst, 3000), "the burst did not wait in the queue");
    const pktq_t *q = &first_tunnel(&h)->down.media;
    cr_assert_gt(resident_pages(q->_ring + TUNNEL_RING_KEEP, q->_ring + q->_cap), 4,
                 "40 KB queued touched no page beyond the first");

    nghttp2_settings_entry open[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(h.client, NGHTTP2_FLAG_NONE, open, 1);
    h_wait_capsules(&h, s, burst);
    cr_assert(h_until(&h, burst_pages_given_back, NULL, 3000),
              "the drained queue kept %zu pages of the burst",
              resident_pages(q->_ring + TUNNEL_RING_KEEP, q->_ring + q->_cap));
    h_backend_send(&h, &from, big, sizeof big);
    h_wait_capsules(&h, s, burst + 1);
    cr_assert_not(h.conn->closing);
    h_fini(&h);
}

/* A ring is allocated where malloc finds room, and under churn that is
 * often memory an earlier tunnel's burst made resident: without a burst of
 * its own the new ring would keep those pages for its life, and the heap's
 * resident part would creep up tunnel after tunnel. The first release that
 * finds it empty gives them back. Here the earlier owner's writes are
 * made by the test, after the ring was allocated and before any health tick
 * (its interval is long), and the release is called as the tick calls it. */
Test(conn, a_new_ring_gives_back_pages_an_earlier_owner_left_resident)
{
    harness_t h;
    h_init(&h, "\"ping_interval_ms\":600000,\"write_stall_ms\":600000", 0);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    h_backend_send(&h, &from, rtp, sizeof rtp);
    h_wait_capsules(&h, s, 1);
    tunnel_t *t = first_tunnel(&h);
    pktq_t *q = &t->down.media;
    cr_assert_not_null(q->_ring);
    cr_assert_eq(q->count, 0);
    memset(q->_ring + TUNNEL_RING_KEEP, 'e', q->_cap - TUNNEL_RING_KEEP);

    size_t released = tunnel_release_idle(t);
    cr_assert_geq(released, q->_cap - TUNNEL_RING_KEEP - (size_t)sysconf(_SC_PAGESIZE),
                  "a new ring gave back %zu bytes", released);
    cr_assert_eq(resident_pages(q->_ring + TUNNEL_RING_KEEP, q->_ring + q->_cap), 0,
                 "the new ring kept pages resident that it never wrote");
    cr_assert_eq(tunnel_release_idle(t), 0, "the same pages given back twice");
    h_backend_send(&h, &from, rtp, sizeof rtp);
    h_wait_capsules(&h, s, 2);
    cr_assert_not(h.conn->closing);
    h_fini(&h);
}

static int got_ping(harness_t *h, void *arg)
{
    return h->pings > 0;
}

/* Silence from the client brings a PING; a client that answers stays. */
Test(conn, silent_client_is_pinged_and_an_answer_keeps_it)
{
    harness_t h;
    h_init(&h, "\"ping_interval_ms\":30,\"ping_timeout_ms\":5000", 0);
    cr_assert(h_until(&h, got_ping, NULL, 3000), "no PING after 30 ms of silence");
    h_pump(&h); /* the client's nghttp2 answers with PING ACK */
    cr_assert_eq(h.conn->ping_sent, 0u, "the ACK did not count as an answer");
    cr_assert_not(h.conn->closing);
    h_fini(&h);
}

/* A peer that answers nothing (not even the PING) is taken for dead. */
Test(conn, dead_peer_is_closed_after_the_ping_timeout)
{
    harness_t h;
    h_init(&h, "\"ping_interval_ms\":20,\"ping_timeout_ms\":50", 0);
    cr_assert(h_loop_until(&h, conn_is_closing, NULL, 5000), "a dead peer was kept");
    cr_assert_eq(h.srv.counters.ping_timeouts, 1u);
    cr_assert_eq(h.conn->end, CONN_END_PING_TIMEOUT, "ends as %s", conn_end_name(h.conn->end));
    h_fini(&h);
}

Test(conn, repeated_failed_authentication_gets_goaway)
{
    harness_t h;
    h_init(&h, "\"max_auth_failures\":2", 0);
    int a = h_open(&h, "/v1/tunnel/nobody/sfu");
    cr_assert_eq(h.streams[a].status, 401);
    cr_assert_not(h.got_goaway, "one failure is not enough");
    int b = h_open(&h, "/v1/tunnel/nobody/sfu");
    cr_assert_eq(h.streams[b].status, 401);
    cr_assert(h.got_goaway, "no GOAWAY after max_auth_failures 401s");
    cr_assert_eq(h.goaway_error, NGHTTP2_NO_ERROR);
    cr_assert_eq(h.srv.counters.auth_goaways, 1u);
    cr_assert_eq(h.conn->end, CONN_END_AUTH, "will end as %s", conn_end_name(h.conn->end));
    h_fini(&h);
    cr_assert_eq(h.srv.counters.conns_closed[CONN_END_AUTH], 1u, "counted when it went");
}

/* Sends a request with extra headers on the harness client; returns its index. */
static int open_with_headers(harness_t *h, const nghttp2_nv *extra, size_t nextra)
{
    int idx = h->nstreams++;
    h_stream_t *st = &h->streams[idx];
    st->down = malloc(H_BODY_CAP);
    nghttp2_nv nva[80];
    size_t n = 0;
#define NV(nm, v) (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(v), strlen(nm), strlen(v), 0}
    nva[n++] = NV(":method", "POST");
    nva[n++] = NV(":scheme", "https");
    nva[n++] = NV(":authority", "harness");
    nva[n++] = NV(":path", PATH);
#undef NV
    for (size_t i = 0; i < nextra && n < 80; i++)
        nva[n++] = extra[i];
    st->id = nghttp2_submit_request(h->client, NULL, nva, n, NULL, NULL);
    cr_assert_gt(st->id, 0);
    h_pump(h);
    return idx;
}

/* The advertised SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB, RFC 7541 §4.1 sizes)
 * and 64 fields per block are enforced: the stream is reset with
 * ENHANCE_YOUR_CALM; the third offence ends the connection. */
Test(conn, header_lists_over_the_advertised_limits_are_reset)
{
    harness_t h;
    h_init(&h, "", 0);
    static char big[17000];
    memset(big, 'a', sizeof big - 1);
    nghttp2_nv one_big = {(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof big - 1, 0};
    int a = open_with_headers(&h, &one_big, 1);
    cr_assert(h.streams[a].closed && h.streams[a].got_rst);
    cr_assert_eq(h.streams[a].close_error, NGHTTP2_ENHANCE_YOUR_CALM);
    cr_assert_eq(h.streams[a].status, 0);

    nghttp2_nv many[70];
    char names[70][16];
    for (int i = 0; i < 70; i++) {
        snprintf(names[i], sizeof names[i], "x-%d", i);
        many[i] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)"v", strlen(names[i]), 1, 0};
    }
    int b = open_with_headers(&h, many, 70);
    cr_assert_eq(h.streams[b].close_error, NGHTTP2_ENHANCE_YOUR_CALM);
    cr_assert_eq(h.srv.counters.header_overflows, 2u);
    cr_assert_not(h.got_goaway, "two offences do not end the connection");

    int ok = h_open(&h, PATH);
    cr_assert_eq(h.streams[ok].status, 200, "a normal request on the same connection works");

    open_with_headers(&h, &one_big, 1);
    cr_assert(h.got_goaway, "the third offence did not end the connection");
    cr_assert_eq(h.goaway_error, NGHTTP2_ENHANCE_YOUR_CALM);
    h_fini(&h);
}

/* Control frames beyond max_control_frames_s a second end the connection
 * with GOAWAY(ENHANCE_YOUR_CALM), which reaches the client before the close. */
Test(conn, control_frame_flood_gets_enhance_your_calm)
{
    harness_t h;
    h_init(&h, "\"max_control_frames_s\":10", 0);
    uint8_t opaque[8] = {0};
    for (int i = 0; i < 200; i++)
        nghttp2_submit_ping(h.client, NGHTTP2_FLAG_NONE, opaque);
    const uint8_t *data;
    ssize_t n;
    int rejected = 0;
    while (!rejected && (n = nghttp2_session_mem_send(h.client, &data)) > 0)
        rejected = conn_feed(h.conn, data, (size_t)n) != 0;
    cr_assert(rejected, "200 PINGs against a budget of 10 a second were all accepted");
    while ((n = conn_pull(h.conn, &data)) > 0)
        nghttp2_session_mem_recv(h.client, data, (size_t)n);
    cr_assert(h.got_goaway);
    cr_assert_eq(h.goaway_error, NGHTTP2_ENHANCE_YOUR_CALM);
    cr_assert_eq(h.srv.counters.conns_calmed, 1u);
    cr_assert_eq(h.conn->end, CONN_END_CALM, "ends as %s", conn_end_name(h.conn->end));
    h_fini(&h);
}

/* Draining first sends GOAWAY(2^31-1): a request already in flight is
 * answered 503 with the reason, not silently dropped (RFC 9113 §6.8). */
Test(conn, request_in_flight_during_drain_gets_503)
{
    harness_t h;
    h_init(&h, "", 0);
    conn_drain(h.conn);
    /* The gateway's notice is on the wire but not yet read by the client. */
    uint8_t held[4096];
    size_t held_len = 0;
    const uint8_t *data;
    ssize_t n;
    while ((n = conn_pull(h.conn, &data)) > 0) {
        cr_assert(held_len + (size_t)n <= sizeof held);
        memcpy(held + held_len, data, (size_t)n);
        held_len += (size_t)n;
    }
    int idx = h.nstreams;
    char user[64], cred[CRED_B64_MAX + 1];
    snprintf(user, sizeof user, "%lld:h", (long long)time(NULL) + 600);
    cred_sign(CRED_SHA1, (const uint8_t *)H_SECRET, strlen(H_SECRET), user, strlen(user), cred,
              sizeof cred);
    nghttp2_nv creds[] = {
        {(uint8_t *)"tunnel-username", (uint8_t *)user, 15, strlen(user), 0},
        {(uint8_t *)"tunnel-credential", (uint8_t *)cred, 17, strlen(cred), 0},
    };
    h.nstreams++;
    h.streams[idx].down = malloc(H_BODY_CAP);
    nghttp2_nv nva[6] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
        {(uint8_t *)":authority", (uint8_t *)"h", 10, 1, 0},
        {(uint8_t *)":path", (uint8_t *)PATH, 5, strlen(PATH), 0},
        creds[0], creds[1],
    };
    h.streams[idx].id = nghttp2_submit_request(h.client, NULL, nva, 6, NULL, NULL);
    while ((n = nghttp2_session_mem_send(h.client, &data)) > 0)
        cr_assert_eq(conn_feed(h.conn, data, (size_t)n), 0);
    cr_assert_eq(nghttp2_session_mem_recv(h.client, held, held_len), (ssize_t)held_len);
    h_pump(&h);
    cr_assert_eq(h.streams[idx].status, 503, "the in-flight request got %d",
                 h.streams[idx].status);
    cr_assert(memmem(h.streams[idx].down, h.streams[idx].down_len, "shutting down", 13));
    cr_assert(h.got_goaway);
    h_fini(&h);
}

/* A TURN Send/Data indication (RFC 8656 §11) is a STUN message: it travels
 * as signaling, and the gateway counts signaling-class packets apart. */
Test(conn, turn_indications_travel_and_count_as_signaling)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    /* Send indication: type 0x0016, length 0, magic cookie, transaction id. */
    const uint8_t send_ind[20] = {0x00, 0x16, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 9, 9, 9, 9,
                                  9, 9, 9, 9, 9, 9, 9, 9};
    const uint8_t data_ind[20] = {0x00, 0x17, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 8, 8, 8, 8,
                                  8, 8, 8, 8, 8, 8, 8, 8};
    const uint8_t chandata[8] = {0x40, 0x00, 0x00, 0x04, 'r', 't', 'p', '!'};
    h_send_capsule(&h, s, CAPSULE_SIGNAL, send_ind, sizeof send_ind);
    uint8_t buf[64];
    struct sockaddr_storage from;
    cr_assert_eq(h_backend_recv(&h, buf, sizeof buf, &from, 2000), (ssize_t)sizeof send_ind);
    h_relay_up(&h, s, chandata, sizeof chandata);
    h_backend_send(&h, &from, data_ind, sizeof data_ind);
    h_backend_send(&h, &from, chandata, sizeof chandata);
    h_wait_capsules(&h, s, 2);
    uint64_t type;
    const uint8_t *v;
    size_t len;
    h_nth_capsule(&h, s, 0, &type, &v, &len);
    cr_assert_eq(type, CAPSULE_SIGNAL, "a Data indication is sent as SIGNAL");
    h_nth_capsule(&h, s, 1, &type, &v, &len);
    cr_assert_eq(type, CAPSULE_DATAGRAM, "ChannelData is sent as DATAGRAM");
    const tunnel_counters_t *k = &tunnel_first(&h.conn->host)->counters;
    cr_assert_eq(k->up_packets, 2u);
    cr_assert_eq(k->up_signal_packets, 1u);
    cr_assert_eq(k->down_signal_packets, 1u);
    cr_assert_eq(h.srv.counters.tunnel.down_signal_packets, 1u);
    h_fini(&h);
}

/* A connection that already had a GOAWAY (here for failed logins) but still
 * carries a tunnel is drained like any other: the tunnel gets its CLOSE. */
Test(conn, drain_closes_tunnels_of_a_connection_that_already_had_goaway)
{
    harness_t h;
    h_init(&h, "\"max_auth_failures\":1", 0);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200);
    int bad = h_open(&h, "/v1/tunnel/nobody/sfu");
    cr_assert_eq(h.streams[bad].status, 401);
    cr_assert(h.got_goaway);
    conn_drain(h.conn);
    cr_assert(h_until(&h, stream_has_close, &s, 3000), "the open tunnel got no CLOSE");
    h_assert_close(&h, s, 0, CLOSE_SHUTTING_DOWN);
    h_fini(&h);
}

Test(conn, error_statuses_carry_a_reason)
{
    harness_t h;
    h_init(&h, "", 0);
    int s404 = h_open(&h, "/v1/nope");
    int s503 = h_open(&h, "/v1/tunnel/acme/turn");
    int s403 = h_open(&h, "/v1/tunnel/acme/sfu?region=elsewhere");
    cr_assert_eq(h.streams[s404].status, 404);
    cr_assert_eq(h.streams[s503].status, 503);
    cr_assert_eq(h.streams[s403].status, 403);
    h_stream_t *st = &h.streams[s503];
    cr_assert(st->down_len > 1 && st->down[st->down_len - 1] == '\n');
    cr_assert(memmem(st->down, st->down_len, "no backend", 10));
    cr_assert_eq(h.srv.counters.requests_rejected[request_status_index(503)], 1u);
    h_fini(&h);
}

/* A raw client for the stream-limit test: records statuses and resets. */
typedef struct raw_client {
    int status[8];   /* by (stream id - 1) / 2 */
    uint32_t rst[8]; /* RST_STREAM error code + 1, 0 when none */
} raw_client_t;

static int raw_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                         size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                         void *ud)
{
    raw_client_t *rc = ud;
    if (namelen == 7 && !memcmp(name, ":status", 7) && f->hd.stream_id <= 15)
        rc->status[(f->hd.stream_id - 1) / 2] = atoi((const char *)value);
    return 0;
}

static int raw_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    raw_client_t *rc = ud;
    if (f->hd.type == NGHTTP2_RST_STREAM && f->hd.stream_id <= 15)
        rc->rst[(f->hd.stream_id - 1) / 2] = f->rst_stream.error_code + 1;
    return 0;
}

/* SETTINGS_MAX_CONCURRENT_STREAMS comes from limits.max_streams, and the
 * gateway enforces it: a client that opens a third stream before it has read
 * the gateway's SETTINGS gets that stream refused (RFC 9113 §5.1.2) while the
 * first two are served. */
Test(conn, streams_beyond_the_limit_are_refused)
{
    harness_t h;
    h_init(&h, "\"max_streams\":2", 0);
    cr_assert_eq(nghttp2_session_get_remote_settings(h.client,
                                                     NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
                 2u, "the limit is announced");

    conn_t *c = conn_new_memory(&h.srv);
    cr_assert(c);
    raw_client_t rc = {{0}, {0}};
    nghttp2_session_callbacks *cbs;
    nghttp2_session *raw;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, raw_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, raw_on_frame);
    cr_assert_eq(nghttp2_session_client_new(&raw, cbs, &rc), 0);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(raw, NGHTTP2_FLAG_NONE, NULL, 0);

    char user[64], cred[CRED_B64_MAX + 1];
    snprintf(user, sizeof user, "%lld:raw", (long long)time(NULL) + 600);
    cred_sign(CRED_SHA1, (const uint8_t *)H_SECRET, strlen(H_SECRET), user, strlen(user), cred,
              sizeof cred);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {
        NV(":method", "POST"), NV(":scheme", "https"),        NV(":authority", "raw"),
        NV(":path", PATH),     NV("tunnel-username", user),   NV("tunnel-credential", cred),
    };
#undef NV
    for (int i = 0; i < 3; i++)
        cr_assert_gt(nghttp2_submit_headers(raw, NGHTTP2_FLAG_NONE, -1, NULL, nva, 6, NULL), 0);
    const uint8_t *data;
    ssize_t n;
    for (int round = 0; round < 100; round++) {
        int moved = 0;
        while ((n = nghttp2_session_mem_send(raw, &data)) > 0) {
            cr_assert_eq(conn_feed(c, data, (size_t)n), 0);
            moved = 1;
        }
        while ((n = conn_pull(c, &data)) > 0) {
            cr_assert_eq(nghttp2_session_mem_recv(raw, data, (size_t)n), n);
            moved = 1;
        }
        if (!moved)
            break;
    }
    cr_expect_eq(rc.status[0], 200);
    cr_expect_eq(rc.status[1], 200);
    cr_expect_eq(rc.status[2], 0, "the third stream got a response");
    cr_expect_eq(rc.rst[2], NGHTTP2_REFUSED_STREAM + 1, "the third stream was not refused");
    cr_expect_eq(c->nopen, 2u);

    nghttp2_session_del(raw);
    conn_free(c);
    h_fini(&h);
}
