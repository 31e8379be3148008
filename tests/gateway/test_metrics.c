/*
 * test_metrics.c — gateway/metrics.c and the counters behind it (stats.c,
 * the histograms), driven in memory by the harness: packets, bytes and
 * drops land on the right tenant, kind and direction; every relayed packet
 * is timed once in its direction; CLOSE codes are counted when a tunnel
 * ends; a resumed flow stays one tunnel; a tenant that left the config
 * leaves the page with its last tunnel; and Debian's promtool accepts the
 * page.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../../gateway/metrics.h"
#include "../../proto/capsule.h"
#include "../support/ts_prometheus.h"
#include "harness.c"

#define ACME "/v1/tunnel/acme/sfu"
#define OTHER "/v1/tunnel/other/sfu"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'm',  'e',  't'};

static const metrics_info_t info = {.version = "test", .start_time_s = 1764645000,
                                    .store_type = "inline", .store_up = 1};

static char *render(harness_t *h)
{
    prom_buf_t b = {0};
    cr_assert_eq(metrics_render(&h->srv, &info, &b), 0);
    return b.p;
}

static void promtool_accepts(const char *page)
{
    FILE *f = popen("promtool check metrics", "w");
    cr_assert(f, "promtool (Debian's prometheus package) cannot be run");
    fputs(page, f);
    int status = pclose(f);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "promtool check metrics refused the page:\n%s", page);
}

Test(metrics, traffic_by_tenant_kind_and_direction, .timeout = 30)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, ACME), o = h_open(&h, OTHER);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h.streams[o].status, 200);
    struct sockaddr_storage from = h_relay_up(&h, a, rtp, sizeof rtp);
    h_relay_up(&h, a, rtp, sizeof rtp);
    h_relay_up(&h, o, rtp, sizeof rtp);
    h_backend_send(&h, &from, rtp, sizeof rtp); /* one packet down to acme */
    h_wait_capsules(&h, a, 1);
    h_send_capsule(&h, a, CAPSULE_DATAGRAM, "\x05xyz", 4); /* context id 5: dropped */
    h_pump(&h);

    char *page = render(&h);
    cr_assert_eq(ts_prom_sample(page, "sluice_packets_total{tenant=\"acme\",kind=\"sfu\",direction=\"up\"}"), 2);
    cr_assert_eq(ts_prom_sample(page, "sluice_bytes_total{tenant=\"acme\",kind=\"sfu\",direction=\"up\"}"),
                 2 * sizeof rtp);
    cr_assert_eq(ts_prom_sample(page, "sluice_packets_total{tenant=\"acme\",kind=\"sfu\",direction=\"down\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_packets_total{tenant=\"other\",kind=\"sfu\",direction=\"up\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_packets_total{tenant=\"other\",kind=\"sfu\",direction=\"down\"}"), 0);
    cr_assert_eq(ts_prom_sample(page, "sluice_drops_total{tenant=\"acme\",kind=\"sfu\",reason=\"context_id\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_drops_total{tenant=\"other\",kind=\"sfu\",reason=\"context_id\"}"), 0);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_opened_total{tenant=\"acme\",kind=\"sfu\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_http_responses_total{status=\"200\"}"), 2);
    cr_assert_eq(ts_prom_sample(page, "sluice_connections_open"), 1);
    /* Every relayed packet is timed once, in its direction. */
    cr_assert_eq(ts_prom_sample(page, "sluice_packet_residence_seconds_count{direction=\"up\"}"), 3);
    cr_assert_eq(ts_prom_sample(page, "sluice_packet_residence_seconds_count{direction=\"down\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_packet_residence_seconds_bucket{direction=\"up\",le=\"+Inf\"}"), 3);
    cr_assert_eq(ts_prom_sample(page, "sluice_build_info{version=\"test\"}"), 1);
    promtool_accepts(page);
    free(page);
    h_fini(&h);
}

Test(metrics, a_refusal_is_a_status_not_a_tenant)
{
    harness_t h;
    h_init(&h, "", 0);
    int x = h_open(&h, "/v1/tunnel/nobody/sfu");
    cr_assert_eq(h.streams[x].status, 401);
    char *page = render(&h);
    cr_assert_eq(ts_prom_sample(page, "sluice_http_responses_total{status=\"401\"}"), 1);
    cr_assert_null(strstr(page, "nobody"), "a client's text became a label");
    free(page);
    h_fini(&h);
}

/* A tunnel request with the given header fields (NULL: left out); user and
 * cred default to a good credential for the harness' tenants. */
static int open_with(harness_t *h, const char *path, const char *user, const char *cred,
                     const char *fallback, const char *route)
{
    cr_assert(h->nstreams < H_STREAMS);
    int idx = h->nstreams++;
    h_stream_t *st = &h->streams[idx];
    st->down = malloc(H_BODY_CAP);
    char u[64], c[CRED_B64_MAX + 1];
    snprintf(u, sizeof u, "%lld:m", (long long)time(NULL) + 600);
    cr_assert(cred_sign(CRED_SHA1, (const uint8_t *)H_SECRET, strlen(H_SECRET), u, strlen(u), c,
                        sizeof c) > 0);
    const char *names[] = {":method", ":scheme", ":authority", ":path", "tunnel-username",
                           "tunnel-credential", "tunnel-fallback", "tunnel-route"};
    const char *values[] = {"POST", "https", "harness", path, user ? user : u,
                            cred ? cred : c, fallback, route};
    nghttp2_nv nva[8];
    size_t n = 0;
    for (size_t i = 0; i < 8; i++) {
        if (!values[i] || !*values[i])
            continue;
        nva[n++] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)values[i], strlen(names[i]),
                                strlen(values[i]), NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider body = {.source.ptr = st, .read_callback = h_body};
    st->id = nghttp2_submit_request(h->client, NULL, nva, n, &body, NULL);
    cr_assert(st->id > 0);
    h_pump(h);
    return idx;
}

/* The relay share: tunnels counted by the client's tunnel-fallback and
 * tunnel-route on their tenant and kind; an unknown value is "other", an
 * absent one "none", and never a label of its own. */
Test(metrics, tunnels_by_fallback_and_route, .timeout = 30)
{
    harness_t h;
    h_init(&h, "", 0);
    const struct {
        const char *path, *fallback, *route;
    } opens[] = {
        {ACME, "udp_blocked", "direct"}, {ACME, "udp_blocked", "proxy"},
        {ACME, "forced", "direct"},      {ACME, "evil\"label", "carrier-pigeon"},
        {ACME, NULL, NULL},              {OTHER, "direct_silent", "proxy"},
    };
    for (size_t i = 0; i < sizeof opens / sizeof *opens; i++) {
        int x = open_with(&h, opens[i].path, NULL, NULL, opens[i].fallback, opens[i].route);
        cr_assert_eq(h.streams[x].status, 200, "open %zu", i);
    }
    char *page = render(&h);
#define FB(t, r) "sluice_tunnels_by_fallback_total{tenant=\"" t "\",kind=\"sfu\",reason=\"" r "\"}"
#define RT(t, r) "sluice_tunnels_by_route_total{tenant=\"" t "\",kind=\"sfu\",route=\"" r "\"}"
    static const struct {
        const char *series;
        double want;
    } want[] = {
        {FB("acme", "udp_blocked"), 2}, {FB("acme", "forced"), 1},
        {FB("acme", "other"), 1},       {FB("acme", "none"), 1},
        {FB("acme", "no_answer"), 0},   {FB("acme", "direct_silent"), 0},
        {FB("other", "direct_silent"), 1},
        {RT("acme", "direct"), 2},      {RT("acme", "proxy"), 1},
        {RT("acme", "other"), 1},       {RT("acme", "none"), 1},
        {RT("other", "proxy"), 1},
        {"sluice_tunnels_opened_total{tenant=\"acme\",kind=\"sfu\"}", 5},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_expect_eq(ts_prom_sample(page, want[i].series), want[i].want, "%s", want[i].series);
#undef FB
#undef RT
    cr_assert_null(strstr(page, "evil"), "a client's text became a label");
    cr_assert_null(strstr(page, "pigeon"), "a client's text became a label");
    promtool_accepts(page);
    free(page);
    h_fini(&h);
}

/* 401s by reason; the client's body does not say which. */
Test(metrics, auth_failures_by_reason, .timeout = 30)
{
    harness_t h;
    h_init(&h, "", 0);
    char expired[32];
    snprintf(expired, sizeof expired, "%lld:m", (long long)time(NULL) - 1);
    int x[] = {
        open_with(&h, "/v1/tunnel/nobody/sfu", NULL, NULL, NULL, NULL),
        open_with(&h, ACME, NULL, "QJjVzy6hQ6LrFjiQB7BTji5igzY=", NULL, NULL),
        open_with(&h, ACME, "soon:m", NULL, NULL, NULL),
        open_with(&h, ACME, expired, NULL, NULL, NULL),
    };
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        cr_assert_eq(h.streams[x[i]].status, 401, "request %zu", i);
    cr_assert_eq(h.streams[x[0]].down_len, h.streams[x[1]].down_len);
    cr_assert(!memcmp(h.streams[x[0]].down, h.streams[x[1]].down, h.streams[x[0]].down_len),
              "an unknown tenant and a bad signature look the same to the client");
    char *page = render(&h);
#define AF(r) "sluice_auth_failures_total{reason=\"" r "\"}"
    cr_expect_eq(ts_prom_sample(page, AF("unknown_tenant")), 1);
    cr_expect_eq(ts_prom_sample(page, AF("bad_signature")), 1);
    cr_expect_eq(ts_prom_sample(page, AF("malformed")), 1);
    cr_expect_eq(ts_prom_sample(page, AF("expired")), 1);
    cr_expect_eq(ts_prom_sample(page, AF("missing")), 0);
    cr_expect_eq(ts_prom_sample(page, AF("expiry_too_far")), 0);
#undef AF
    cr_expect_eq(ts_prom_sample(page, "sluice_http_responses_total{status=\"401\"}"), 4);
    promtool_accepts(page);
    free(page);
    h_fini(&h);
}

static int no_stream_left(harness_t *h, void *arg)
{
    return h->srv.counters.tunnels_active == 0;
}

Test(metrics, close_codes_and_a_removed_tenant_leaves_with_its_last_tunnel)
{
    harness_t h;
    h_init(&h, "\"resume_grace_ms\":0", 0);
    int a = h_open(&h, ACME);
    cr_assert_eq(h.streams[a].status, 200);
    h_retenant(&h, ""); /* CLOSE(tenant disabled); the tunnel lingers until the client ends */
    char *page = render(&h);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 1,
                 "a closing tunnel still holds its entry");
    free(page);
    h_end(&h, a);
    cr_assert(h_until(&h, no_stream_left, NULL, 2000), "the closed tunnel was not freed");
    page = render(&h);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_closed_total{tenant=\"acme\",kind=\"sfu\","
                              "code=\"tenant_disabled\"}"),
                 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 0);
    free(page);
    h_retenant(&h, ""); /* the next apply prunes what nothing holds and no tenant names */
    page = render(&h);
    cr_assert_null(strstr(page, "tenant=\"acme\""), "a removed tenant is still on the page");
    free(page);
    h_fini(&h);
}

Test(metrics, a_resumed_flow_is_one_tunnel)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, ACME);
    cr_assert_eq(h.streams[a].status, 200);
    char token[64];
    snprintf(token, sizeof token, "%s", h.streams[a].session);
    h_relay_up(&h, a, rtp, sizeof rtp);
    h_reconnect(&h); /* parked */
    int s = h_open_as(&h, ACME, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200);
    h_relay_up(&h, s, rtp, sizeof rtp);
    char *page = render(&h);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_opened_total{tenant=\"acme\",kind=\"sfu\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_open{tenant=\"acme\",kind=\"sfu\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_packets_total{tenant=\"acme\",kind=\"sfu\",direction=\"up\"}"), 2,
                 "the counts moved with the flow");
    cr_assert_eq(ts_prom_sample(page, "sluice_sessions_total{event=\"resumed\"}"), 1);
    cr_assert_eq(ts_prom_sample(page, "sluice_tunnels_closed_total{tenant=\"acme\",kind=\"sfu\",code=\"none\"}"), 0,
                 "the stream that went was not a tunnel's end");
    free(page);
    h_fini(&h);
}

static int pong_seen(harness_t *h, void *arg)
{
    return h->srv.counters.tunnel.pongs_received > 0;
}

static int has_ping(harness_t *h, void *arg)
{
    return h_count_capsules(h, *(int *)arg, CAPSULE_PING) > 0;
}

Test(metrics, client_rtt_from_ping_and_pong)
{
    harness_t h;
    h_init(&h, "\"capsule_ping_ms\":100", 0);
    int s = h_open(&h, ACME);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert(h_until(&h, has_ping, &s, 2000), "no PING capsule within 2 s");
    uint64_t type;
    const uint8_t *v = NULL;
    size_t off = 0, len;
    while (h_next_capsule(&h.streams[s], &off, &type, &v, &len) && type != CAPSULE_PING)
        ;
    uint8_t value[8];
    memcpy(value, v, 8);
    char *page = render(&h);
    cr_assert_eq(ts_prom_sample(page, "sluice_client_rtt_seconds_count"), 0);
    free(page);
    h_send_capsule(&h, s, CAPSULE_PONG, value, 8);
    cr_assert(h_until(&h, pong_seen, NULL, 1000), "the PONG was not counted");
    page = render(&h);
    cr_assert_eq(ts_prom_sample(page, "sluice_client_rtt_seconds_count"), 1);
    cr_assert_gt(ts_prom_sample(page, "sluice_client_rtt_seconds_sum"), 0);
    free(page);
    h_fini(&h);
}

/* A scrape is a copy taken at once, rendered a slice at a time: the slices
 * make exactly the page a whole render makes, each stops at a row boundary
 * soon after its budget, and traffic after the copy does not show in it. */
Test(metrics, a_scrape_streams_in_slices_of_one_moment)
{
    harness_t h;
    h_init(&h, "", 0);
    int a = h_open(&h, ACME), o = h_open(&h, OTHER);
    cr_assert_eq(h.streams[a].status, 200);
    cr_assert_eq(h.streams[o].status, 200);
    h_relay_up(&h, a, rtp, sizeof rtp);
    prom_buf_t whole = {0};
    cr_assert_eq(metrics_render(&h.srv, &info, &whole), 0);

    metrics_scrape_t *m = metrics_scrape_new(&h.srv, &info);
    cr_assert_not_null(m);
    h_relay_up(&h, a, rtp, sizeof rtp); /* after the copy: not on this page */
    prom_buf_t sliced = {0};
    int rc, calls = 0;
    size_t biggest = 0;
    do {
        size_t before = sliced.len;
        rc = metrics_scrape_next(m, &sliced, 1);
        cr_assert_geq(rc, 0);
        cr_assert(sliced.len == before || sliced.p[sliced.len - 1] == '\n',
                  "a slice ended inside a line");
        biggest = sliced.len - before > biggest ? sliced.len - before : biggest;
        calls++;
    } while (rc == 1 && calls < 10000);
    cr_assert_eq(rc, 0);
    cr_assert_eq(metrics_scrape_next(m, &sliced, 1), 0, "a finished scrape adds nothing");
    metrics_scrape_free(m);
    cr_assert_gt(calls, 2 * 8, "one slice per tenant row group: %d calls", calls);
    cr_assert_lt(biggest, 16384u, "a slice of %zu bytes for a budget of 1", biggest);
    cr_assert_eq(sliced.len, whole.len);
    cr_assert(!memcmp(sliced.p, whole.p, whole.len), "the slices differ from the whole page");
    cr_assert_eq(ts_prom_sample(sliced.p, "sluice_packets_total{tenant=\"acme\",kind=\"sfu\","
                                          "direction=\"up\"}"),
                 1, "traffic after the copy reached the page");
    prom_buf_free(&whole);
    prom_buf_free(&sliced);
    h_fini(&h);
}
