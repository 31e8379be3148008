/*
 * test_tunnel.c — a tunnel's promises about its backend and its downlink
 * queue (docs/architecture.md "Life of a packet", docs/configuration.md
 * limits), driven in memory by the harness against a real UDP backend.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/capsule.h"
#include "harness.c"

#define PATH "/v1/tunnel/acme/sfu"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'm',  'e',  'd',  'i', 'a'};

static void send_datagram(harness_t *h, int idx, const uint8_t *p, size_t len)
{
    uint8_t v[2048];
    cr_assert_leq(len + 1, sizeof v);
    v[0] = 0; /* context id */
    memcpy(v + 1, p, len);
    h_send_capsule(h, idx, CAPSULE_DATAGRAM, v, len + 1);
}

/* Relays one datagram up and returns the backend's view of the source. */
static struct sockaddr_storage relay_up(harness_t *h, int idx, const uint8_t *p, size_t len)
{
    send_datagram(h, idx, p, len);
    uint8_t buf[2048];
    struct sockaddr_storage from;
    ssize_t n = h_backend_recv(h, buf, sizeof buf, &from, 2000);
    cr_assert_eq(n, (ssize_t)len, "backend got %zd bytes, want %zu", n, len);
    cr_assert_arr_eq(buf, p, len);
    return from;
}

/* Number of capsules of `type` in a stream's response body so far. */
static int count_capsules(harness_t *h, int idx, uint64_t type)
{
    size_t off = 0, len;
    uint64_t t;
    const uint8_t *v;
    int n = 0;
    while (h_next_capsule(&h->streams[idx], &off, &t, &v, &len))
        n += t == type;
    return n;
}

/* The first capsule of `type` in a stream's response body; 0 when none. */
static int find_capsule(harness_t *h, int idx, uint64_t type, const uint8_t **v, size_t *len)
{
    size_t off = 0;
    uint64_t t;
    while (h_next_capsule(&h->streams[idx], &off, &t, v, len))
        if (t == type)
            return 1;
    return 0;
}

static int has_close(harness_t *h, void *arg)
{
    return count_capsules(h, *(int *)arg, CAPSULE_CLOSE) > 0;
}

static uint64_t close_code(harness_t *h, int idx)
{
    const uint8_t *v;
    size_t len;
    cr_assert(find_capsule(h, idx, CAPSULE_CLOSE, &v, &len), "no CLOSE capsule");
    capsule_t c = {CAPSULE_CLOSE, v, len};
    uint64_t code;
    const char *reason;
    size_t rlen;
    cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
    return code;
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
        send_datagram(&h, s, rtp, sizeof rtp);
        /* The ICMP error comes back at once on loopback; it is counted when
         * the tunnel's socket reports it (a read or the next send). */
        h_until(&h, backend_error_counted, &w, 1000);
    }
    cr_assert(h_until(&h, has_close, &s, 2000), "no CLOSE after %d datagrams, %llu errors",
              sent, (unsigned long long)*errors);
    uint64_t code = close_code(&h, s);
    cr_assert_eq(code, CLOSE_BACKEND_UNREACHABLE, "CLOSE code %llu (%s), want backend "
                                                  "unreachable",
                 (unsigned long long)code, capsule_close_name(code));
    cr_assert_geq(*errors, 8u, "CLOSE after only %llu backend errors",
                  (unsigned long long)*errors);
    cr_log_info("%d datagrams, %llu backend errors", sent, (unsigned long long)*errors);
    h_fini(&h);
}

static int elapsed(harness_t *h, void *arg)
{
    return now_ms() >= *(double *)arg;
}

static int has_datagram(harness_t *h, void *arg)
{
    return count_capsules(h, *(int *)arg, CAPSULE_DATAGRAM) > 0;
}

/* "queued media older than media_queue_age_ms is dropped; a late packet is
 * worse than a lost one": the client's window is closed, so backend media
 * waits in the gateway; when the window opens after the age limit, that media
 * is counted as expired and never delivered, while media that arrives after
 * the window opened is delivered. */
Test(tunnel, media_older_than_the_age_limit_is_dropped_not_delivered)
{
    harness_t h;
    h_init(&h, "\"media_queue_age_ms\":50", 0);
    int s = h_open(&h, PATH);
    struct sockaddr_storage from = relay_up(&h, s, rtp, sizeof rtp);

    /* RFC 9113 §6.9.2: SETTINGS_INITIAL_WINDOW_SIZE 0 takes the window of the
     * open stream (nothing sent on it yet) down to 0. */
    nghttp2_settings_entry zero = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0};
    cr_assert_eq(nghttp2_submit_settings(h.client, NGHTTP2_FLAG_NONE, &zero, 1), 0);
    h_pump(&h);

    uint8_t stale[64], fresh[64];
    memset(stale, 's', sizeof stale);
    memset(fresh, 'f', sizeof fresh);
    stale[0] = fresh[0] = 0x80; /* RTP (RFC 7983): the media queue */
    h_backend_send(&h, &from, stale, sizeof stale);
    /* The gateway reads it on the next loop run and stamps it then; let the
     * loop run (pumping too: nothing can go down) well past the age limit. */
    double until = now_ms() + 400;
    h_until(&h, elapsed, &until, 2000);
    cr_assert_eq(count_capsules(&h, s, CAPSULE_DATAGRAM), 0, "media went down a zero window");
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_MEDIA_EXPIRED], 0u,
                 "expired before anything tried to send it");

    nghttp2_submit_window_update(h.client, NGHTTP2_FLAG_NONE, h.streams[s].id, 1 << 20);
    h_pump(&h);
    cr_assert_eq(h.srv.counters.tunnel.drops[DROP_MEDIA_EXPIRED], 1u,
                 "the stale packet was not counted as expired");
    cr_assert_eq(count_capsules(&h, s, CAPSULE_DATAGRAM), 0, "the stale packet was delivered");

    h_backend_send(&h, &from, fresh, sizeof fresh);
    cr_assert(h_until(&h, has_datagram, &s, 2000), "fresh media was not delivered");
    const uint8_t *v;
    size_t len;
    cr_assert(find_capsule(&h, s, CAPSULE_DATAGRAM, &v, &len));
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
    relay_up(&h, s, rtp, sizeof rtp);
    cr_assert_eq(h.srv.counters.tunnel.up_packets, 1u);
    cr_assert_eq(count_capsules(&h, s, CAPSULE_CLOSE), 0, "the tunnel was closed");
    cr_assert_not(h.streams[s].closed);
    cr_assert_eq(h.srv.counters.tunnels_active, 1u);
    h_fini(&h);
}
