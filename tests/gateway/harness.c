/* harness.c — see harness.h. Included by the tests that use it. */
#include "harness.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../../proto/cred.h"

#define H_SECRET "harness-secret"

static h_stream_t *h_find(harness_t *h, int32_t id)
{
    for (int i = 0; i < h->nstreams; i++)
        if (h->streams[i].id == id)
            return &h->streams[i];
    return NULL;
}

static int h_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud)
{
    h_stream_t *st = h_find(ud, f->hd.stream_id);
    if (st && namelen == 7 && memcmp(name, ":status", 7) == 0)
        st->status = atoi((const char *)value);
    if (st && namelen == 14 && memcmp(name, "tunnel-session", 14) == 0)
        snprintf(st->session, sizeof st->session, "%.*s", (int)valuelen, (const char *)value);
    if (st && namelen == 16 && memcmp(name, "tunnel-media-age", 16) == 0)
        snprintf(st->media_age, sizeof st->media_age, "%.*s", (int)valuelen,
                 (const char *)value);
    if (st && namelen == 13 && memcmp(name, "tunnel-stamps", 13) == 0)
        snprintf(st->stamps, sizeof st->stamps, "%.*s", (int)valuelen, (const char *)value);
    if (st && namelen == 11 && memcmp(name, "tunnel-node", 11) == 0)
        snprintf(st->node, sizeof st->node, "%.*s", (int)valuelen, (const char *)value);
    if (st && namelen == 11 && memcmp(name, "retry-after", 11) == 0)
        snprintf(st->retry_after, sizeof st->retry_after, "%.*s", (int)valuelen,
                 (const char *)value);
    return 0;
}

static int h_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                     size_t len, void *ud)
{
    h_stream_t *st = h_find(ud, id);
    cr_assert(st, "data on unknown stream %d", id);
    cr_assert(st->down_len + len <= H_BODY_CAP, "response body over the harness cap");
    memcpy(st->down + st->down_len, data, len);
    st->down_len += len;
    return 0;
}

static int h_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    harness_t *h = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->got_goaway = 1;
        h->goaway_error = f->goaway.error_code;
    }
    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        h->pings++;
    h_stream_t *st = h_find(h, f->hd.stream_id);
    if (!st)
        return 0;
    if (f->hd.type == NGHTTP2_RST_STREAM)
        st->got_rst = 1;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        st->end_stream = 1;
    return 0;
}

static int h_on_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    h_stream_t *st = h_find(ud, id);
    if (st) {
        st->closed = 1;
        st->close_error = error_code;
    }
    return 0;
}

static ssize_t h_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                      uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    h_stream_t *st = src->ptr;
    size_t n = st->up_len - st->up_off;
    if (n > length)
        n = length;
    memcpy(buf, st->up + st->up_off, n);
    st->up_off += n;
    if (st->up_off == st->up_len) {
        st->up_off = st->up_len = 0;
        if (st->up_eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return (ssize_t)n;
        }
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void h_connect(harness_t *h, uint32_t client_window);

void h_init(harness_t *h, const char *limits_json, uint32_t client_window)
{
    h_init_turn(h, limits_json, client_window, 0);
}

void h_init_turn(harness_t *h, const char *limits_json, uint32_t client_window, int turn)
{
    h_init_tenants(h, limits_json, client_window, turn, "", "");
}

void h_init_tenants(harness_t *h, const char *limits_json, uint32_t client_window, int turn,
                    const char *acme_limits, const char *other_limits)
{
    memset(h, 0, sizeof *h);
    log_set_level(LOG_WARN); /* tests read counters, not logs */
    h->loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert(h->loop);

    h->backend_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(h->backend_fd, (struct sockaddr *)&a, sizeof a) == 0);
    h->backend_len = sizeof h->backend;
    getsockname(h->backend_fd, (struct sockaddr *)&h->backend, &h->backend_len);
    int port = ntohs(((struct sockaddr_in *)&h->backend)->sin_port);
    char sfu_pool[32];
    snprintf(sfu_pool, sizeof sfu_pool, "\"127.0.0.1:%d\"", port);

    char json[2048], err[256];
    snprintf(json, sizeof json,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"},"
             "\"region\":\"local\",\"limits\":{%s},"
             "\"regions\":{\"local\":{\"sfu\":[\"127.0.0.1:%d\"],"
             "\"turn\":[%s]}},"
             "\"tenants\":[{\"id\":\"acme\",\"secrets\":[\"" H_SECRET "\"],"
             "\"regions\":[\"local\"],\"limits\":{%s}},"
             "{\"id\":\"other\",\"secrets\":[\"" H_SECRET "\"],\"regions\":[\"local\"],"
             "\"limits\":{%s}}]}",
             limits_json, port, turn ? sfu_pool : "", acme_limits, other_limits);
    h->cfg = config_parse(json, strlen(json), NULL, err, sizeof err);
    cr_assert(h->cfg, "harness config: %s", err);

    server_t *srv = &h->srv;
    list_init(&srv->conns);
    srv->loop = h->loop;
    srv->cfg = h->cfg;
    srv->echo.fd = -1;
    srv->env = (tunnel_env_t){.loop = h->loop, .counters = &srv->counters, .logs = &srv->logs,
                              .stats = &srv->stats, .udp_buf = malloc((size_t)TUNNEL_UDP_BATCH * TUNNEL_UDP_BUF)};
    session_table_init(&srv->sessions, &srv->env);
    cr_assert(conn_h2_setup(&srv->h2_cbs, &srv->h2_opt) == 0);
    h_connect(h, client_window);
}

/* A new memory connection and a client session talking to it. */
static void h_connect(harness_t *h, uint32_t client_window)
{
    h->conn = conn_new_memory(&h->srv);
    cr_assert(h->conn);

    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h_on_close);
    cr_assert(nghttp2_session_client_new(&h->client, cbs, h) == 0);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, client_window}};
    nghttp2_submit_settings(h->client, NGHTTP2_FLAG_NONE, iv, client_window ? 1 : 0);
    h_pump(h);
}

void h_fini(harness_t *h)
{
    h->srv.sessions.closed = 1;
    if (h->conn)
        conn_free(h->conn);
    session_table_dispose(&h->srv.sessions);
    stats_dispose(&h->srv.stats);
    nghttp2_session_del(h->client);
    for (int i = 0; i < h->nstreams; i++)
        free(h->streams[i].down);
    nghttp2_session_callbacks_del(h->srv.h2_cbs);
    nghttp2_option_del(h->srv.h2_opt);
    free(h->srv.env.udp_buf);
    config_unref(h->cfg);
    if (h->backend_fd >= 0)
        close(h->backend_fd);
    ev_loop_destroy(h->loop);
}

void h_shut_windows(harness_t *h)
{
    nghttp2_settings_entry zero = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0};
    cr_assert_eq(nghttp2_submit_settings(h->client, NGHTTP2_FLAG_NONE, &zero, 1), 0);
    h_pump(h);
}

void h_pump(harness_t *h)
{
    for (int round = 0; round < 10000; round++) {
        int moved = 0;
        const uint8_t *data;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(h->client, &data)) > 0) {
            cr_assert(conn_feed(h->conn, data, (size_t)n) == 0, "gateway rejected bytes");
            moved = 1;
        }
        while ((n = conn_pull(h->conn, &data)) > 0) {
            cr_assert(nghttp2_session_mem_recv(h->client, data, (size_t)n) == n);
            moved = 1;
        }
        ev_run(h->loop, EVRUN_NOWAIT);
        if (!moved)
            return;
    }
    cr_assert_fail("h_pump: still moving after 10000 rounds");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void h_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Blocks in the loop until a watcher fires or a short tick passes. */
static void h_block(harness_t *h)
{
    ev_timer tick;
    ev_timer_init(&tick, h_tick, 0.005, 0.);
    ev_timer_start(h->loop, &tick);
    ev_run(h->loop, EVRUN_ONCE);
    ev_timer_stop(h->loop, &tick);
}

static int h_wait(harness_t *h, int pump, int (*cond)(harness_t *, void *), void *arg,
                  int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    for (;;) {
        if (pump)
            h_pump(h);
        if (cond(h, arg))
            return 1;
        if (now_ms() >= end)
            return 0;
        h_block(h);
    }
}

int h_until(harness_t *h, int (*cond)(harness_t *, void *), void *arg, int timeout_ms)
{
    return h_wait(h, 1, cond, arg, timeout_ms);
}

int h_loop_until(harness_t *h, int (*cond)(harness_t *, void *), void *arg, int timeout_ms)
{
    return h_wait(h, 0, cond, arg, timeout_ms);
}

int h_open(harness_t *h, const char *path)
{
    return h_open_ttl(h, path, 600);
}

void h_reconnect(harness_t *h)
{
    conn_free(h->conn);
    h->conn = NULL;
    nghttp2_session_del(h->client);
    h->client = NULL;
    for (int i = 0; i < h->nstreams; i++)
        free(h->streams[i].down);
    memset(h->streams, 0, sizeof h->streams);
    h->nstreams = 0;
    h->got_goaway = 0;
    h_connect(h, 0);
}

int h_open_ttl(harness_t *h, const char *path, int ttl_s)
{
    return h_open_as(h, path, ttl_s, NULL, NULL);
}

int h_open_as(harness_t *h, const char *path, int ttl_s, const char *user_part,
              const char *resume)
{
    cr_assert(h->nstreams < H_STREAMS);
    int idx = h->nstreams++;
    h_stream_t *st = &h->streams[idx];
    st->down = malloc(H_BODY_CAP);
    char user[64], cred[CRED_B64_MAX + 1];
    snprintf(user, sizeof user, "%lld:%s", (long long)time(NULL) + ttl_s,
             user_part ? user_part : "harness");
    cr_assert(cred_sign(CRED_SHA1, (const uint8_t *)H_SECRET, strlen(H_SECRET), user,
                        strlen(user), cred, sizeof cred) > 0);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[8] = {
        NV(":method", "POST"),         NV(":scheme", "https"),
        NV(":authority", "harness"),   NV(":path", path),
        NV("tunnel-username", user),   NV("tunnel-credential", cred),
    };
    size_t nnv = 6;
    if (resume)
        nva[nnv++] = (nghttp2_nv)NV("tunnel-resume", resume);
    if (h->offer_stamps)
        nva[nnv++] = (nghttp2_nv)NV("tunnel-stamps", h->offer_stamps);
#undef NV
    nghttp2_data_provider body = {.source.ptr = st, .read_callback = h_body};
    st->id = nghttp2_submit_request(h->client, NULL, nva, nnv, &body, NULL);
    cr_assert(st->id > 0);
    h_pump(h);
    return idx;
}

void h_send(harness_t *h, int idx, const void *bytes, size_t len)
{
    h_stream_t *st = &h->streams[idx];
    cr_assert(st->up_len + len <= sizeof st->up);
    memcpy(st->up + st->up_len, bytes, len);
    st->up_len += len;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(h->client, st->id);
    }
    h_pump(h);
}

void h_send_capsule(harness_t *h, int idx, uint64_t type, const void *value, size_t len)
{
    uint8_t buf[65536 + CAPSULE_MAX_HEADER];
    ssize_t n = capsule_encode(buf, sizeof buf, type, value, len);
    cr_assert(n > 0);
    h_send(h, idx, buf, (size_t)n);
}

void h_end(harness_t *h, int idx)
{
    h_stream_t *st = &h->streams[idx];
    st->up_eof = 1;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(h->client, st->id);
    }
    h_pump(h);
}

ssize_t h_backend_recv(harness_t *h, uint8_t *buf, size_t cap, struct sockaddr_storage *from,
                       int timeout_ms)
{
    socklen_t len = sizeof *from;
    double end = now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recvfrom(h->backend_fd, buf, cap, 0, (struct sockaddr *)from, &len);
        if (n >= 0)
            return n;
        int left = (int)(end - now_ms());
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = h->backend_fd, .events = POLLIN};
        poll(&p, 1, left);
    }
}

void h_backend_send(harness_t *h, const struct sockaddr_storage *to, const void *p, size_t len)
{
    cr_assert(sendto(h->backend_fd, p, len, 0, (const struct sockaddr *)to,
                     sizeof(struct sockaddr_in)) == (ssize_t)len);
}

void h_backend_close(harness_t *h)
{
    if (h->backend_fd >= 0)
        close(h->backend_fd);
    h->backend_fd = -1;
}

int h_next_capsule(h_stream_t *s, size_t *off, uint64_t *type, const uint8_t **value,
                   size_t *len)
{
    capsule_t c;
    ssize_t n = capsule_decode(s->down + *off, s->down_len - *off, 1u << 20, &c, NULL);
    if (n <= 0)
        return 0;
    *off += (size_t)n;
    *type = c.type;
    *value = c.value;
    *len = c.len;
    return 1;
}

void h_send_datagram(harness_t *h, int idx, const uint8_t *p, size_t len)
{
    uint8_t v[2048];
    cr_assert_leq(len + 1, sizeof v);
    v[0] = 0; /* context id */
    memcpy(v + 1, p, len);
    h_send_capsule(h, idx, CAPSULE_DATAGRAM, v, len + 1);
}

struct sockaddr_storage h_relay_up(harness_t *h, int idx, const uint8_t *p, size_t len)
{
    h_send_datagram(h, idx, p, len);
    uint8_t buf[2048];
    struct sockaddr_storage from;
    ssize_t n = h_backend_recv(h, buf, sizeof buf, &from, 2000);
    cr_assert_eq(n, (ssize_t)len, "backend got %zd bytes, want %zu", n, len);
    cr_assert_arr_eq(buf, p, len);
    return from;
}

int h_count_capsules(harness_t *h, int idx, uint64_t type)
{
    size_t off = 0, len;
    uint64_t t;
    const uint8_t *v;
    int n = 0;
    while (h_next_capsule(&h->streams[idx], &off, &t, &v, &len))
        n += t == type;
    return n;
}

uint64_t h_close_code(harness_t *h, int idx)
{
    size_t off = 0, len;
    uint64_t t;
    const uint8_t *v;
    while (h_next_capsule(&h->streams[idx], &off, &t, &v, &len)) {
        if (t != CAPSULE_CLOSE)
            continue;
        capsule_t c = {CAPSULE_CLOSE, v, len};
        uint64_t code;
        const char *reason;
        size_t rlen;
        cr_assert_eq(capsule_parse_close(&c, &code, &reason, &rlen), PROTO_OK);
        return code;
    }
    cr_assert_fail("stream %d has no CLOSE capsule", idx);
    return UINT64_MAX;
}

int h_has_capsules(harness_t *h, void *arg)
{
    int *want = arg; /* {stream index, count} */
    size_t off = 0, len;
    uint64_t type;
    const uint8_t *v;
    int n = 0;
    while (h_next_capsule(&h->streams[want[0]], &off, &type, &v, &len))
        n++;
    return n >= want[1];
}

void h_wait_capsules(harness_t *h, int idx, int count)
{
    int want[2] = {idx, count};
    cr_assert(h_until(h, h_has_capsules, want, 2000), "stream %d: fewer than %d capsules", idx,
              count);
}

void h_nth_capsule(harness_t *h, int idx, int nth, uint64_t *type, const uint8_t **v,
                   size_t *len)
{
    size_t off = 0;
    for (int i = 0; i <= nth; i++)
        cr_assert(h_next_capsule(&h->streams[idx], &off, type, v, len), "no capsule %d", nth);
}

void h_assert_close(harness_t *h, int idx, int nth, uint64_t code)
{
    uint64_t type;
    const uint8_t *v;
    size_t len;
    h_nth_capsule(h, idx, nth, &type, &v, &len);
    cr_assert_eq(type, CAPSULE_CLOSE);
    capsule_t cap = {type, v, len};
    uint64_t got;
    const char *reason;
    size_t rlen;
    cr_assert_eq(capsule_parse_close(&cap, &got, &reason, &rlen), PROTO_OK);
    cr_assert_eq(got, code, "CLOSE code %llu, want %llu", (unsigned long long)got,
                 (unsigned long long)code);
}

size_t h_retenant(harness_t *h, const char *acme_json)
{
    int port = ntohs(((struct sockaddr_in *)&h->backend)->sin_port);
    char json[2048], err[256];
    snprintf(json, sizeof json,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"},"
             "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"127.0.0.1:%d\"]},"
             "\"eu\":{\"sfu\":[\"127.0.0.1:%d\"]}},"
             "\"tenants\":[%s{\"id\":\"other\",\"secrets\":[\"" H_SECRET "\"],"
             "\"regions\":[\"local\"]}]}",
             port, port, acme_json);
    config_t *cfg = config_parse(json, strlen(json), NULL, err, sizeof err);
    cr_assert(cfg, "new config: %s", err);
    config_t *old = h->cfg;
    h->cfg = h->srv.cfg = cfg;
    h->srv.env.cfg = cfg;
    config_unref(old); /* the connection holds its own */
    size_t n = server_tenants_apply(&h->srv);
    h_pump(h);
    return n;
}
