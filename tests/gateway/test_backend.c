/* test_backend.c — gateway/backend.c on a real libev loop with real UDP
 * backends on loopback (a STUN responder on the same loop answers probes; a
 * closed port answers ICMP):
 * probes and the down/up transitions, selection over up members only, the
 * 503 case (no backend), passive reports, and backend_table_apply keeping
 * the state of addresses a new snapshot still names. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/backend.h"
#include "../../gateway/config.h"
#include "../../proto/stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static struct ev_loop *loop;
static backend_table_t bt;
static config_t *cfg[2];

/* A STUN Binding responder on the test's loop; muted, it drops everything. */
static struct {
    int fd;
    ev_io io;
    int mute;
    char name[64];
} stun = {.fd = -1};

static void stun_cb(struct ev_loop *l, ev_io *w, int revents)
{
    uint8_t buf[512], txid[STUN_TXID_LEN], out[STUN_BINDING_RESPONSE_MAX];
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(stun.fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    if (n <= 0 || stun.mute ||
        stun_binding_request_decode(buf, (size_t)n, txid, NULL) != (int)n)
        return;
    stun_addr_t m = {.family = 4, .port = ntohs(from.sin_port)};
    memcpy(m.addr, &from.sin_addr, 4);
    int len = stun_binding_response_encode(txid, &m, out, sizeof out);
    if (len > 0)
        (void)!sendto(stun.fd, out, (size_t)len, 0, (struct sockaddr *)&from, flen);
}

/* Binds 127.0.0.1:0; returns the fd (the caller closes it) and its name. */
static int udp_bind(char *name, size_t cap)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(name, cap, "127.0.0.1:%u", ntohs(a.sin_port));
    return fd;
}

static void teardown(void)
{
    backend_table_dispose(&bt);
    for (int i = 0; i < 2; i++)
        config_unref(cfg[i]);
    if (stun.fd >= 0) {
        ev_io_stop(loop, &stun.io);
        close(stun.fd);
    }
    stun.fd = -1;
    if (loop)
        ev_loop_destroy(loop);
    loop = NULL;
}

static config_t *parse(const char *pool_json)
{
    char json[1024], err[256];
    snprintf(json, sizeof json,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c\",\"key\":\"k\"},"
             "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":%s}},\"tenants\":[]}",
             pool_json);
    config_t *c = config_parse(json, strlen(json), NULL, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

/* A loopback port nothing listens on. */
static void dead_addr(char *out, size_t cap)
{
    close(udp_bind(out, cap));
}

static backend_t *entry(const char *name)
{
    for (size_t i = 0; i < bt.n; i++)
        if (!strcmp(bt.items[i].name, name))
            return &bt.items[i];
    cr_assert_fail("no entry %s", name);
    return NULL;
}

/* Runs the loop until b->up == up, for at most 3 s. */
static void run_until(backend_t *b, int up)
{
    ev_now_update(loop);
    ev_tstamp deadline = ev_now(loop) + 3.0;
    while (b->up != up && ev_now(loop) < deadline)
        ev_run(loop, EVRUN_ONCE); /* a probe timer fires at least every 100 ms */
    cr_assert_eq(b->up, up, "backend %s still %s after 3 s", b->name, up ? "down" : "up");
}

static const cfg_pool_t *sfu(const config_t *c)
{
    return &c->regions[0].pools[TUNNEL_KIND_SFU];
}

#define FAST "\"interval_ms\":100,\"timeout_ms\":50,\"down_after\":2,\"up_after\":2"

Test(backend, probes_select_and_apply, .fini = teardown, .timeout = 30)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    char live[64], dead[64], json[512], err[256];
    stun.fd = udp_bind(live, sizeof live);
    ev_io_init(&stun.io, stun_cb, stun.fd, EV_READ);
    ev_io_start(loop, &stun.io);
    dead_addr(dead, sizeof dead);
    snprintf(json, sizeof json, "{\"backends\":[\"%s\",\"%s\"]," FAST "}", dead, live);
    cfg[0] = parse(json);
    cr_assert_eq(backend_table_init(&bt, loop, cfg[0], NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(bt.n, 2);
    backend_t *d = entry(dead), *l = entry(live);
    cr_assert(d->up && l->up, "every backend starts up");

    run_until(d, 0); /* ICMP on its first probe */
    for (uint64_t k = 0; k < 200; k++)
        cr_assert_eq(backend_select(&bt, sfu(cfg[0]), k), l, "key %llu went to a down backend",
                     (unsigned long long)k);

    /* Silence: two unanswered probes take it out; no backend is up. */
    stun.mute = 1;
    run_until(l, 0);
    cr_assert_null(backend_select(&bt, sfu(cfg[0]), 1));
    stun.mute = 0;
    run_until(l, 1);
    cr_assert_geq(l->probes_answered, 2);

    /* A tunnel's ICMP report takes the live one out at once. */
    backend_report_error(&bt, (const struct sockaddr *)&l->sa, l->len, ECONNREFUSED);
    cr_assert_eq(l->up, 0);
    run_until(l, 1);

    /* A new snapshot naming dead and a new address: dead keeps its state, the
     * new one starts up, live is gone. */
    char other[64];
    dead_addr(other, sizeof other);
    snprintf(json, sizeof json, "[\"%s\",\"%s\"]", other, dead);
    cfg[1] = parse(json);
    cr_assert_eq(backend_table_apply(&bt, cfg[1], NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(bt.n, 2);
    cr_assert_eq(entry(dead)->up, 0, "a down backend stays down across a new snapshot");
    cr_assert_eq(entry(other)->up, 1);
    cr_assert_eq(backend_select(&bt, sfu(cfg[1]), 7), entry(other));
    cr_assert_null(backend_select(&bt, sfu(cfg[0]), 7), "live is not in the table any more");
}
