/*
 * test_tunnel.c — a tunnel's promises about its backend, its downlink queue,
 * its waits (close linger, credential expiry) and its logs
 * (docs/architecture.md "Life of a packet", docs/configuration.md limits),
 * driven in memory by the harness against a real UDP backend.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "harness.c"

#define PATH "/v1/tunnel/acme/sfu"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'm',  'e',  'd',  'i', 'a'};

static int has_close(harness_t *h, void *arg)
{
    return h_count_capsules(h, *(int *)arg, CAPSULE_CLOSE) > 0;
}

typedef struct err_wait {
    int idx;
    uint64_t before;
} err_wait_t;

static int backend_error_counted(harness_t *h, void *arg)
{
    err_wait_t *w = arg;
    return h->srv.counters.tunnel.drops[DROP_BACKEND_ERROR] > w->before ||
           has_close(h, &w->idx);
}

/* "an ICMP error counts as backend_error, and eight in a row close the tunnel
 * with CLOSE(backend unreachable)": the pool names a loopback port nobody
 * listens on, so every datagram draws ICMP port unreachable. A send may also
 * report the previous datagram's error and send nothing, so the number of
 * datagrams needed is not fixed; the number of errors is. */
Test(tunnel, eight_icmp_errors_close_with_backend_unreachable)
{
    harness_t h;
    h_init(&h, "", 0);
    h_backend_close(&h);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200);
    const uint64_t *errors = &h.srv.counters.tunnel.drops[DROP_BACKEND_ERROR];

    int sent = 0;
    for (; sent < 64 && !has_close(&h, &s); sent++) {
        cr_assert_lt(*errors, 8u, "%llu backend errors and the tunnel is still open",
                     (unsigned long long)*errors);
        err_wait_t w = {s, *errors};
        h_send_datagram(&h, s, rtp, sizeof rtp);
        /* The ICMP error comes back at once on loopback; it is counted when
         * the tunnel's socket reports it (a read or the next send). */
        h_until(&h, backend_error_counted, &w, 1000);
    }
    cr_assert(h_until(&h, has_close, &s, 2000), "no CLOSE after %d datagrams, %llu errors",
              sent, (unsigned long long)*errors);
    uint64_t code = h_close_code(&h, s);
    cr_assert_eq(code, CLOSE_BACKEND_UNREACHABLE, "CLOSE code %llu (%s), want backend "
                                                  "unreachable",
                 (unsigned long long)code, capsule_close_name(code));
    cr_assert_geq(*errors, 8u, "CLOSE after only %llu backend errors",
                  (unsigned long long)*errors);
    cr_log_info("%d datagrams, %llu backend errors", sent, (unsigned long long)*errors);
    h_fini(&h);
}

/* "an idle tunnel holds no capsule reader buffer; one is lent only while a
 * capsule is split across DATA chunks" (docs/architecture.md, memory). */
Test(tunnel, reader_buffer_is_held_only_while_a_capsule_is_split)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200);
    tunnel_t *t = tunnel_first(&h.conn->host);
    cr_assert(t);
    cr_assert_null(t->reader_buf, "an idle tunnel holds a reader buffer");
    h_relay_up(&h, s, rtp, sizeof rtp); /* a whole capsule in one DATA frame */
    cr_assert_null(t->reader_buf, "a whole capsule left a reader buffer behind");

    uint8_t v[1 + sizeof rtp], cap[64];
    v[0] = 0; /* context id */
    memcpy(v + 1, rtp, sizeof rtp);
    ssize_t n = capsule_encode(cap, sizeof cap, CAPSULE_DATAGRAM, v, sizeof v);
    cr_assert_gt(n, 6);
    h_send(&h, s, cap, 5); /* the header and a little: one DATA frame */
    cr_assert_not_null(t->reader_buf, "a split capsule has no buffer to wait in");
    h_send(&h, s, cap + 5, (size_t)n - 5);
    uint8_t got[2048];
    struct sockaddr_storage from;
    ssize_t r = h_backend_recv(&h, got, sizeof got, &from, 2000);
    cr_assert_eq(r, (ssize_t)sizeof rtp, "backend got %zd bytes, want %zu", r, sizeof rtp);
    cr_assert_arr_eq(got, rtp, sizeof rtp);
    cr_assert_null(t->reader_buf, "the buffer is kept after the capsule completed");
    h_fini(&h);
}

static int elapsed(harness_t *h, void *arg)
{
    return now_ms() >= *(double *)arg;
}

static int has_datagram(harness_t *h, void *arg)
{
    return h_count_capsules(h, *(int *)arg, CAPSULE_DATAGRAM) > 0;
}

/* "queued media older than the downlink's half of media_queue_age_ms is
 * dropped; a late packet is worse than a lost one": the client's window is
 * closed, so backend media waits in the gateway; when the window opens 400 ms
 * later, past the leg's 250 ms (though within the whole 500), that media is
 * counted as expired and never delivered, while media that arrives after the
 * window opened is delivered. */
Test(tunnel, media_older_than_the_age_limit_is_dropped_not_delivered)
{
    harness_t h;
    h_init(&h, "\"media_queue_age_ms\":500", 0);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);

    h_shut_windows(&h); /* the open stream's too: nothing was sent on it yet */

    uint8_t stale[64], fresh[64];
    memset(stale, 's', sizeof stale);
    memset(fresh, 'f', sizeof fresh);
    stale[0] = fresh[0] = 0x80; /* RTP (RFC 7983): the media queue */
    h_backend_send(&h, &from, stale, sizeof stale);
    /* The gateway reads it on the next loop run and stamps it then; let the
     * loop run (pumping too: nothing can go down) well past the age limit. */
    double until = now_ms() + 400;
    h_until(&h, elapsed, &until, 2000);
    cr_assert_eq(h_count_capsules(&h, s, CAPSULE_DATAGRAM), 0, "media went down a zero window");
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_MEDIA_EXPIRED], 0u,
                 "expired before anything tried to send it");

    nghttp2_submit_window_update(h.client, NGHTTP2_FLAG_NONE, h.streams[s].id, 1 << 20);
    h_pump(&h);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_MEDIA_EXPIRED], 1u,
                 "the stale packet was not counted as expired");
    cr_assert_eq(h_count_capsules(&h, s, CAPSULE_DATAGRAM), 0, "the stale packet was delivered");

    h_backend_send(&h, &from, fresh, sizeof fresh);
    cr_assert(h_until(&h, has_datagram, &s, 2000), "fresh media was not delivered");
    const uint8_t *v;
    size_t len, off = 0;
    uint64_t type;
    cr_assert(h_next_capsule(&h.streams[s], &off, &type, &v, &len));
    cr_assert_eq(type, CAPSULE_DATAGRAM);
    cr_assert_eq(len, 1 + sizeof fresh);
    cr_assert_arr_eq(v + 1, fresh, sizeof fresh, "the delivered datagram is not the fresh one");
    cr_assert_eq(h.srv.counters.tunnel.down_packets, 1u);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_MEDIA_EXPIRED], 1u);
    h_fini(&h);
}

/* "A full socket drops the packet (uplink_send)": any send() failure other
 * than an ICMP error is counted as uplink_send and the tunnel stays open. A
 * 66,000-byte payload (allowed by max_capsule 70,000) is larger than any
 * IPv4 UDP datagram, so send() fails with EMSGSIZE. */
Test(tunnel, uplink_send_failure_is_counted_and_the_tunnel_stays_open)
{
    enum { BIG = 66000 };
    harness_t h;
    h_init(&h, "\"max_capsule\":70000", 0);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200);

    /* The capsule is larger than the harness's send buffer: header and
     * context id first, then the payload in pieces. */
    uint8_t head[CAPSULE_MAX_HEADER + 1];
    ssize_t hl = capsule_encode_header(head, sizeof head, CAPSULE_DATAGRAM, 1 + BIG);
    cr_assert_gt(hl, 0);
    head[hl++] = 0; /* context id */
    h_send(&h, s, head, (size_t)hl);
    static uint8_t big[BIG];
    memset(big, 0x5a, sizeof big);
    big[0] = 0x80;
    h_send(&h, s, big, BIG / 2);
    h_send(&h, s, big + BIG / 2, BIG - BIG / 2);

    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_UPLINK_SEND], 1u,
                 "uplink_send drops: %llu, want 1",
                 (unsigned long long)h.srv.counters.tunnel.drops[DROP_UPLINK_SEND]);
    cr_assert_eq(h.srv.counters.tunnel.up_packets, 0u);

    /* The tunnel is still open: the next datagram reaches the backend. */
    h_relay_up(&h, s, rtp, sizeof rtp);
    cr_assert_eq(h.srv.counters.tunnel.up_packets, 1u);
    cr_assert_eq(h_count_capsules(&h, s, CAPSULE_CLOSE), 0, "the tunnel was closed");
    cr_assert_not(h.streams[s].closed);
    cr_assert_eq(h.srv.counters.tunnels_active, 1u);
    h_fini(&h);
}

static int stream_is_closed(harness_t *h, void *arg)
{
    return h->streams[*(int *)arg].closed;
}

/* A client that cannot take the CLOSE (zero window) is not waited for beyond
 * close_linger_ms: its stream is cancelled and the tunnel freed. */
Test(tunnel, closing_tunnel_of_a_client_not_reading_is_reset_after_the_linger)
{
    harness_t h;
    h_init(&h, "\"tunnel_idle_ms\":20,\"close_linger_ms\":50", 0);
    h_shut_windows(&h);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert(h_until(&h, stream_is_closed, &s, 3000), "the stream was never reset");
    cr_assert(h.streams[s].got_rst);
    cr_assert_eq(h.streams[s].close_error, NGHTTP2_CANCEL);
    cr_assert_eq(h.streams[s].down_len, 0u, "no window, so no CLOSE could be sent");
    cr_assert_null(tunnel_first(&h.conn->host), "the tunnel is freed");
    cr_assert_eq(h.srv.counters.tunnels_active, 0u);
    h_fini(&h);
}

/* A client that took the CLOSE but never ends its side is told to stop
 * without error (RFC 9113 §8.1) once close_linger_ms has passed. */
Test(tunnel, closing_tunnel_whose_client_never_ends_is_reset_cleanly)
{
    harness_t h;
    h_init(&h, "\"tunnel_idle_ms\":20,\"close_linger_ms\":50", 0);
    int s = h_open(&h, PATH);
    cr_assert(h_until(&h, stream_is_closed, &s, 3000), "the stream was never reset");
    h_assert_close(&h, s, 0, CLOSE_IDLE_TIMEOUT);
    cr_assert(h.streams[s].end_stream);
    cr_assert(h.streams[s].got_rst);
    cr_assert_eq(h.streams[s].close_error, NGHTTP2_NO_ERROR);
    cr_assert_null(tunnel_first(&h.conn->host));
    h_fini(&h);
}

Test(tunnel, tunnel_is_closed_when_its_credential_expires)
{
    harness_t h;
    h_init(&h, "", 0);
    /* 2 s: a 1 s credential minted just before a second ticks over can be
     * expired by the time the gateway checks it. */
    int s = h_open_ttl(&h, PATH, 2);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert(h_until(&h, has_close, &s, 5000), "no CLOSE within 5 s of a 2 s credential");
    h_assert_close(&h, s, 0, CLOSE_CREDENTIAL_EXPIRED);
    h_fini(&h);
}

Test(tunnel, tunnels_beyond_max_tunnels_get_503)
{
    harness_t h;
    h_init(&h, "\"max_tunnels\":1", 0);
    int a = h_open(&h, PATH);
    int b = h_open(&h, PATH);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h.streams[b].status, 503);
    cr_assert(memmem(h.streams[b].down, h.streams[b].down_len, "tunnel capacity", 15));
    h_end(&h, a);
    cr_assert(h_until(&h, stream_is_closed, &a, 3000));
    int c = h_open(&h, PATH);
    cr_assert_eq(h.streams[c].status, 200, "a slot freed by a closed tunnel is usable again");
    h_fini(&h);
}

/* The backend socket's receive buffer is sized from the downlink queues, and
 * what the kernel drops when it overflows is counted (SO_RXQ_OVFL). */
Test(tunnel, kernel_receive_queue_overflow_is_counted)
{
    harness_t h;
    h_init(&h, "\"media_queue_bytes\":2048,\"signal_queue_bytes\":2048", 0);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = h_relay_up(&h, s, rtp, sizeof rtp);
    uint8_t pkt[1200] = {0x80};
    for (int i = 0; i < 200; i++) /* the gateway's loop does not run meanwhile */
        h_backend_send(&h, &from, pkt, sizeof pkt);
    h_pump(&h);
    /* The kernel reports the drops with the next datagram it queues. */
    h_backend_send(&h, &from, pkt, sizeof pkt);
    h_pump(&h);
    tunnel_t *t = tunnel_first(&h.conn->host);
    cr_assert_gt(t->counters.drops[DROP_BACKEND_RXQ], 0u, "200 x 1200 B overflow a ~8 KiB buffer");
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_BACKEND_RXQ], t->counters.drops[DROP_BACKEND_RXQ]);
    h_fini(&h);
}

/* Captures what the gateway logs (stderr) into a temporary file; criterion
 * runs each test in its own process, so fd 2 is ours to move. */
static FILE *capture_log(harness_t *h)
{
    FILE *f = tmpfile();
    cr_assert(f);
    fflush(stderr);
    cr_assert(dup2(fileno(f), 2) == 2);
    log_set_level(LOG_INFO);
    h->srv.logs = (log_limits_t)LOG_LIMITS_INIT;
    return f;
}

static char *captured(FILE *f)
{
    static char buf[1 << 16];
    fflush(stderr);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    return buf;
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* A client can make the gateway refuse requests at will: only a burst of
 * lines reaches the log, then one "suppressed" summary. */
Test(tunnel, refused_requests_do_not_flood_the_log)
{
    harness_t h;
    h_init(&h, "\"max_auth_failures\":1000", 0);
    FILE *f = capture_log(&h);
    for (int i = 0; i < 30; i++) {
        int s = h_open(&h, "/v1/nope");
        cr_assert_eq(h.streams[s].status, 404);
        h.nstreams = 0; /* reuse the slot */
        free(h.streams[s].down);
        memset(&h.streams[s], 0, sizeof h.streams[s]);
    }
    log_limits_flush(&h.srv.logs, UINT64_MAX);
    const char *text = captured(f);
    int lines = count_lines_with(text, " status=404 ");
    cr_assert_eq(lines, 10, "%d lines for 30 refused requests:\n%s", lines, text);
    cr_assert(strstr(text, "refused request: 20 similar lines suppressed"), "%s", text);
    h_fini(&h);
}

/* Client text is data: a CLOSE reason cannot forge a log line. */
Test(tunnel, client_close_reason_is_escaped_in_the_log)
{
    harness_t h;
    h_init(&h, "", 0);
    FILE *f = capture_log(&h);
    int s = h_open(&h, PATH);
    static const char evil[] = "bye\n2026-01-01T00:00:00.000Z sluiced error: forged\x1b[2J";
    uint8_t v[128];
    v[0] = 0x00; /* code normal */
    memcpy(v + 1, evil, sizeof evil - 1);
    h_send_capsule(&h, s, CAPSULE_CLOSE, v, sizeof evil);
    h_wait_capsules(&h, s, 1);
    const char *text = captured(f);
    /* text_escape makes the newline \x0a; logfmt then escapes its backslash. */
    cr_assert(strstr(text, "client CLOSE normal: bye\\\\x0a2026"), "%s", text);
    cr_assert(strstr(text, "forged\\\\x1b[2J"), "%s", text);
    cr_assert_null(strstr(text, "\nsluiced error: forged"));
    cr_assert_null(strstr(text, "\nts=2026-01-01"));
    cr_assert_null(strstr(text, "\n2026-01-01T"), "a forged line reached the log:\n%s", text);
    h_fini(&h);
}

/* Uplink packets that arrive together go out in sendmmsg batches
 * (tunnel_uplink_flush): every one reaches the backend, in order, and is
 * counted once; packets sent just before a CLOSE still go out. */
static size_t burst(uint8_t *buf, size_t cap, uint32_t first, uint32_t count)
{
    size_t off = 0;
    for (uint32_t i = first; i < first + count; i++) {
        uint8_t pkt[100];
        memcpy(pkt, rtp, sizeof rtp);
        memset(pkt + sizeof rtp, 0, sizeof pkt - sizeof rtp);
        memcpy(pkt + sizeof rtp, &i, sizeof i);
        ssize_t n = capsule_encode_datagram(buf + off, cap - off, pkt, sizeof pkt);
        cr_assert_gt(n, 0);
        off += (size_t)n;
    }
    return off;
}

static void expect_backend_ids(harness_t *h, uint32_t first, uint32_t count)
{
    for (uint32_t i = first; i < first + count; i++) {
        uint8_t got[200];
        struct sockaddr_storage from;
        ssize_t n = h_backend_recv(h, got, sizeof got, &from, 2000);
        cr_assert_eq(n, 100, "packet %u did not reach the backend", i);
        uint32_t id;
        memcpy(&id, got + sizeof rtp, sizeof id);
        cr_assert_eq(id, i, "packet %u arrived as %u: out of order", i, id);
    }
}

Test(tunnel, a_burst_of_uplink_packets_reaches_the_backend_whole_and_in_order)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    h_relay_up(&h, s, rtp, sizeof rtp);
    uint8_t buf[60 * 110];
    /* 60 packets in one DATA frame: more than one batch (TUNNEL_UP_BATCH). */
    h_send(&h, s, buf, burst(buf, sizeof buf, 0, 60));
    expect_backend_ids(&h, 0, 60);
    tunnel_t *t = tunnel_first(&h.conn->host);
    cr_assert_eq(t->counters.up_packets, 61u);
    cr_assert_eq(h.srv.counters.tunnel.up_packets, 61u);
    cr_assert_eq(t->counters.drops[DROP_UPLINK_SEND], 0u);
    cr_assert_null(h.srv.env.up.t, "nothing waits once the read is done");
    h_fini(&h);
}

Test(tunnel, packets_just_before_a_close_still_reach_the_backend)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, PATH);
    h_relay_up(&h, s, rtp, sizeof rtp);
    uint8_t buf[5 * 110 + 64];
    size_t n = burst(buf, sizeof buf, 100, 5);
    ssize_t c = capsule_encode_close(buf + n, sizeof buf - n, CLOSE_NORMAL, "bye", 3);
    cr_assert_gt(c, 0);
    h_send(&h, s, buf, n + (size_t)c); /* one chunk: 5 packets, then CLOSE */
    expect_backend_ids(&h, 100, 5);
    h_fini(&h);
}

/* proto/README.md §5.1.1: the 200 accepts a client's offer of stamps (and
 * names the uplink's age limit, tunnel-media-age: half of media_queue_age_ms);
 * stamped media that waited longer than that before it reached the gateway
 * (its stamp against the stream's fastest packet so far) is dropped as
 * uplink_expired and never reaches the backend, while fresh stamped media
 * does. A stream that made no offer gets no acceptance. */
Test(tunnel, stamped_media_that_waited_before_it_arrived_is_dropped)
{
    harness_t h;
    h_init(&h, "\"media_queue_age_ms\":100", 0);
    int plain = h_open(&h, PATH);
    cr_assert_eq(h.streams[plain].status, 200);
    cr_assert_str_eq(h.streams[plain].stamps, "", "stamps accepted without an offer");
    cr_assert_str_eq(h.streams[plain].media_age, "");
    h.offer_stamps = "?1";
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert_str_eq(h.streams[s].stamps, "?1", "the offer was not accepted");
    cr_assert_str_eq(h.streams[s].media_age, "50", "the uplink's age limit goes with the acceptance");

    /* The sender's clock: ours, far off, as another host's would be. */
    const uint32_t skew = 0x9e3779b9u;
    uint8_t cap[128], got[256];
    struct sockaddr_storage from;
    const uint64_t *expired = &h.srv.counters.tunnel.drops[DROP_UPLINK_EXPIRED];
    uint8_t pkt[sizeof rtp];
    memcpy(pkt, rtp, sizeof rtp);

    /* The first packet sets the base. */
    pkt[sizeof pkt - 1] = '1';
    ssize_t n = capsule_encode_stamped(cap, sizeof cap,
                                       (uint32_t)(compat_mono_ns() / 1000u) + skew, pkt, sizeof pkt);
    h_send(&h, s, cap, (size_t)n);
    ssize_t r = h_backend_recv(&h, got, sizeof got, &from, 2000);
    cr_assert_eq(r, (ssize_t)sizeof pkt);
    cr_assert_eq(got[sizeof pkt - 1], '1');

    /* Queued 70 ms ago at the client: 70 ms above the base, within the
     * whole limit but past the uplink's half of it. */
    pkt[sizeof pkt - 1] = '2';
    n = capsule_encode_stamped(cap, sizeof cap,
                               (uint32_t)(compat_mono_ns() / 1000u) + skew - 70000u, pkt,
                               sizeof pkt);
    h_send(&h, s, cap, (size_t)n);
    cr_assert_eq(*expired, 1u, "media that waited 70 ms was not dropped");

    /* Queued 10 ms ago: within the limit, delivered. */
    pkt[sizeof pkt - 1] = '3';
    n = capsule_encode_stamped(cap, sizeof cap,
                               (uint32_t)(compat_mono_ns() / 1000u) + skew - 10000u, pkt,
                               sizeof pkt);
    h_send(&h, s, cap, (size_t)n);
    r = h_backend_recv(&h, got, sizeof got, &from, 2000);
    cr_assert_eq(r, (ssize_t)sizeof pkt);
    cr_assert_eq(got[sizeof pkt - 1], '3', "the backend got packet %c", got[sizeof pkt - 1]);
    cr_assert_eq(*expired, 1u);
    cr_assert_eq(h.srv.counters.tunnel.up_packets, 2u);
    h_fini(&h);
}
