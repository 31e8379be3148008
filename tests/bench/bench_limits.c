/*
 * bench_limits.c — `make bench`: how accurately sluiced holds each tenant
 * limit (docs/configuration.md, "Tenant limits"), and whether one tenant over
 * its limits changes another tenant's throughput and latency (issue 7 §3).
 *
 *   bench_limits --build DIR [--seconds S] [--out FILE]
 *
 * A UDP backend on a thread (ts_echo with a counting hook) stands behind a
 * real sluiced on loopback (port 0). Clients are libsluice-shim tunnels on
 * this program's libev loop. Two tenants: "acme" with limits, "other" with
 * none.
 *
 * Accuracy: one row per limit, each on a fresh sluiced whose acme has only
 * that limit (so no other limit binds first). The load is about 3x the limit,
 * paced for S seconds (default 2); then the counters settle and are read.
 *   up_* / signal   counted where the backend received them (it drops them)
 *   down_*          the client sends unlimited uplink, the backend echoes it:
 *                   offered = what the backend sent, delivered = what the
 *                   client received
 *   bits_s          the tenant's aggregate over 4 tunnels (uplink only)
 *   max_tunnels[_per_user]  3x the cap requested at once; accepted vs cap
 * error % = (delivered - (burst + rate * t)) / (rate * t), t the paced time:
 * a token bucket that starts full lets through at most burst + rate * t.
 *
 * Isolation: other sends 200 B at 200 pps for 3 s through the echo and times
 * each round trip, first alone, then while a forked process floods acme's 4
 * tunnels at 10x acme's per-tunnel packets/s. The flood runs in its own
 * process so that its client-side work does not delay other's client loop;
 * the gateway, the backend and both clients share the machine's CPUs.
 *
 * Everything is bounded (each wait has a deadline, the whole run RUN_MS) and
 * the report (Markdown) goes to stdout and to FILE (default
 * DIR/bench/limits.md). Exit status: 0 when every step completed and each
 * sluiced exited 0; 1 otherwise; 2 for bad arguments.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <nghttp2/nghttp2.h>
#include <openssl/opensslv.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_echo.h"
#include "../support/ts_net.h"
#include "../support/ts_sluice.h"
#include "../support/ts_report.h"
#include "../support/ts_util.h"
#include "sluice_shim.h"

#define ACME "acme"
#define OTHER "other"
#define RUN_MS 180000      /* every deadline falls inside this */
#define START_MS 15000
#define STOP_MS 10000
#define OPEN_MS 10000      /* tunnels answered */
#define SETTLE_QUIET_MS 200 /* counters unchanged this long: the load has drained */
#define SETTLE_MAX_MS 2000
#define TICK_S 0.001       /* pacing timer */
#define MAX_PER_TICK 2000  /* packets one tick may send (a late tick catches up within it) */
#define MAX_TUNNELS 32
#define PKT 200            /* media payload bytes */
#define STUN_LEN 20        /* a STUN Binding request header (RFC 8489 §5) */
#define CRED_TTL_S 1800
#define FLOOD_TUNNELS 4
#define ISO_PPS 200
#define ISO_MS 3000
#define ISO_FACTOR 10
#define MARK_ACME 'A'      /* byte 1 of a media payload: which tenant sent it */
#define MARK_OTHER 'O'

/* ---------------------------------------------------------------- backend */

/* The UDP backend: counts every datagram (by tenant mark too) and either
 * echoes it or drops it. Counters are written on the echo's thread. */
typedef struct backend {
    ts_echo_t *echo;
    atomic_int drop;
    atomic_uint_fast64_t pk, bytes, pk_acme, pk_other;
} backend_t;

static int backend_hook(void *ud, int fd, const uint8_t *p, size_t len, const ts_addr_t *src)
{
    backend_t *b = ud;
    atomic_fetch_add(&b->pk, 1);
    atomic_fetch_add(&b->bytes, len);
    if (len > 1 && p[0] == 0x80 && p[1] == MARK_ACME)
        atomic_fetch_add(&b->pk_acme, 1);
    if (len > 1 && p[0] == 0x80 && p[1] == MARK_OTHER)
        atomic_fetch_add(&b->pk_other, 1);
    return atomic_load(&b->drop);
}

typedef struct bcount {
    uint64_t pk, bytes, pk_acme, pk_other;
} bcount_t;

static bcount_t backend_read(backend_t *b)
{
    return (bcount_t){atomic_load(&b->pk), atomic_load(&b->bytes), atomic_load(&b->pk_acme),
                      atomic_load(&b->pk_other)};
}

/* ---------------------------------------------------------------- clients */

/* One shim connection and its tunnels, all of one tenant. */
typedef struct flow {
    struct ev_loop *loop;
    ev_timer tick;
    sluice_client_t *client;
    sluice_tunnel_t *t[MAX_TUNNELS];
    int t_open[MAX_TUNNELS];
    size_t n;
    size_t opened, refused, failed;  /* 200, 429, anything else */
    int refused_status;
    char refused_reason[128];
    char why[256];                   /* first unexpected end */
    /* pacing */
    int64_t pace_t0_ns;
    double pace_pps;                 /* all tunnels together */
    size_t pace_len;
    int pace_stun;
    uint8_t pace_mark;
    uint64_t pace_sent, pace_seq;
    /* round trips of marked packets (other's isolation run) */
    int64_t *rtt_us;
    size_t nrtt, rtt_cap;
} flow_t;

static void flow_note(flow_t *f, const char *what, const char *a, const char *b)
{
    if (!f->why[0])
        snprintf(f->why, sizeof f->why, "%s %s: %.180s", what, a, b);
}

static void flow_on_state(sluice_client_t *c, sluice_state_t state, const char *detail, void *ud)
{
    if (state == SLUICE_FAILED || state == SLUICE_CLOSED)
        flow_note(ud, "client", sluice_state_name(state), detail);
}

static void flow_on_open(sluice_tunnel_t *t, void *ud)
{
    flow_t *f = ud;
    for (size_t i = 0; i < f->n; i++)
        if (f->t[i] == t && !f->t_open[i]) {
            f->t_open[i] = 1;
            f->opened++;
        }
}

static void flow_on_packet(sluice_tunnel_t *t, const uint8_t *p, size_t len, int is_signal,
                           void *ud)
{
    flow_t *f = ud;
    if (!f->rtt_us || len < 14 || p[1] != MARK_OTHER || f->nrtt >= f->rtt_cap)
        return;
    int64_t sent_ns;
    memcpy(&sent_ns, p + 6, sizeof sent_ns);
    f->rtt_us[f->nrtt++] = (ts_now_ns() - sent_ns) / 1000;
}

static void flow_on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason,
                          void *ud)
{
    flow_t *f = ud;
    for (size_t i = 0; i < f->n; i++)
        if (f->t[i] == t) {
            f->t[i] = NULL;
            f->t_open[i] = 0;
        }
    if (status == 429) {
        f->refused++;
        f->refused_status = status;
        snprintf(f->refused_reason, sizeof f->refused_reason, "%s", reason);
        f->refused_reason[strcspn(f->refused_reason, "\n")] = '\0';
        return;
    }
    f->failed++;
    char st[32];
    snprintf(st, sizeof st, "%d", status);
    flow_note(f, "tunnel ended, status", st, reason);
}

static void flow_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    flow_t *f = (flow_t *)((char *)w - offsetof(flow_t, tick));
    if (f->pace_pps <= 0)
        return;
    double el = (double)(ts_now_ns() - f->pace_t0_ns) / 1e9;
    uint64_t due = (uint64_t)(el * f->pace_pps);
    uint8_t p[PKT > STUN_LEN ? PKT : STUN_LEN];
    for (int k = 0; f->pace_sent < due && k < MAX_PER_TICK; k++) {
        memset(p, 0, sizeof p);
        if (f->pace_stun) {
            /* Binding request, length 0, magic cookie, a transaction id */
            static const uint8_t hdr[8] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
            memcpy(p, hdr, sizeof hdr);
            memcpy(p + 8, &f->pace_seq, sizeof f->pace_seq);
        } else {
            /* RFC 7983: 128-191 is RTP, i.e. media */
            p[0] = 0x80;
            p[1] = f->pace_mark;
            uint32_t seq = (uint32_t)f->pace_seq;
            int64_t now = ts_now_ns();
            memcpy(p + 2, &seq, sizeof seq);
            memcpy(p + 6, &now, sizeof now);
        }
        sluice_tunnel_t *t = NULL;
        for (size_t i = 0; i < f->n && !t; i++)
            t = f->t[(f->pace_seq + i) % f->n];
        f->pace_seq++;
        f->pace_sent++;
        if (t)
            sluice_tunnel_send(t, p, f->pace_len);
    }
}

static int flow_init(flow_t *f, struct ev_loop *loop, const char *ca_file, uint16_t port)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    ev_timer_init(&f->tick, flow_tick, TICK_S, TICK_S);
    ev_timer_start(loop, &f->tick);
    char err[200];
    sluice_client_opts_t co = {.host = "127.0.0.1", .port = port, .ca_file = ca_file,
                               .on_state = flow_on_state, .ud = f};
    f->client = sluice_client_new(loop, &co, err, sizeof err);
    if (!f->client) {
        snprintf(f->why, sizeof f->why, "sluice_client_new: %s", err);
        return -1;
    }
    if (sluice_client_connect(f->client) != SLUICE_OK) {
        snprintf(f->why, sizeof f->why, "sluice_client_connect failed");
        return -1;
    }
    return 0;
}

static void flow_dispose(flow_t *f)
{
    sluice_client_free(f->client);
    f->client = NULL;
    if (f->loop)
        ev_timer_stop(f->loop, &f->tick);
    f->loop = NULL;
    free(f->rtt_us);
    f->rtt_us = NULL;
}

/* Runs the loop until cond holds or the deadline passes. */
static int flow_run_until(flow_t *f, int (*cond)(flow_t *), int64_t deadline)
{
    while (!cond(f) && ts_now_ms() < deadline)
        ev_run(f->loop, EVRUN_ONCE);
    return cond(f) ? 0 : -1;
}

static int all_answered(flow_t *f)
{
    return f->opened + f->refused + f->failed >= f->n;
}

/* Requests n tunnels of tenant at once; user "u<i>" each, or the same user
 * for all. Returns 0 once every request has its answer (200 or 429), -1
 * otherwise. */
static int flow_open(flow_t *f, const char *tenant, const char *secret, size_t n,
                     const char *same_user)
{
    uint64_t expiry = (uint64_t)time(NULL) + CRED_TTL_S;
    for (size_t i = 0; i < n && i < MAX_TUNNELS; i++) {
        char user[32], username[256], credential[64];
        snprintf(user, sizeof user, "%s", same_user ? same_user : "");
        if (!same_user)
            snprintf(user, sizeof user, "u%zu", i);
        if (sluice_cred_mint(SLUICE_HASH_SHA1, secret, strlen(secret), expiry, user, username,
                             sizeof username, credential, sizeof credential) != SLUICE_OK) {
            snprintf(f->why, sizeof f->why, "cannot mint a credential");
            return -1;
        }
        /* Queues big enough that the client never drops what we offer: the
         * gateway's drops are what is measured. */
        sluice_tunnel_opts_t to = {.tenant = tenant, .kind = "sfu", .username = username,
                                   .credential = credential,
                                   .media_queue_bytes = 4u << 20,
                                   .signal_queue_bytes = 4u << 20,
                                   .media_max_age_ms = 5000,
                                   .ping_interval_ms = UINT32_MAX,
                                   .on_open = flow_on_open, .on_packet = flow_on_packet,
                                   .on_close = flow_on_close, .ud = f};
        f->t[f->n] = sluice_tunnel_open(f->client, &to);
        if (!f->t[f->n]) {
            snprintf(f->why, sizeof f->why, "sluice_tunnel_open failed");
            return -1;
        }
        f->n++;
    }
    if (flow_run_until(f, all_answered, ts_deadline(OPEN_MS)) < 0 || f->failed) {
        if (!f->why[0])
            snprintf(f->why, sizeof f->why, "%zu of %zu tunnels answered by the deadline",
                     f->opened + f->refused, f->n);
        return -1;
    }
    return 0;
}

typedef struct tstats {
    uint64_t tx, rx, rx_bytes, dropped;
} tstats_t;

static tstats_t flow_stats(const flow_t *f)
{
    tstats_t s = {0};
    for (size_t i = 0; i < f->n; i++) {
        if (!f->t[i])
            continue;
        sluice_tunnel_stats_t st;
        sluice_tunnel_stats(f->t[i], &st);
        s.tx += st.tx_packets;
        s.rx += st.rx_packets;
        s.rx_bytes += st.rx_bytes;
        s.dropped += st.dropped_media + st.dropped_signal;
    }
    return s;
}

/* Offers pps (over all open tunnels, round robin) of len-byte payloads for
 * ms. Returns the paced time in seconds. */
static double flow_pace(flow_t *f, double pps, size_t len, int stun, uint8_t mark, int ms)
{
    f->pace_t0_ns = ts_now_ns();
    f->pace_pps = pps;
    f->pace_len = len;
    f->pace_stun = stun;
    f->pace_mark = mark;
    f->pace_sent = 0;
    int64_t end = ts_now_ms() + ms;
    while (ts_now_ms() < end)
        ev_run(f->loop, EVRUN_ONCE);
    f->pace_pps = 0;
    return (double)(ts_now_ns() - f->pace_t0_ns) / 1e9;
}

/* Runs the loop until the backend's and the client's counters have not
 * moved for SETTLE_QUIET_MS (bounded by SETTLE_MAX_MS). */
static void flow_settle(flow_t *f, backend_t *b)
{
    int64_t end = ts_now_ms() + SETTLE_MAX_MS, quiet_since = ts_now_ms();
    uint64_t last = UINT64_MAX;
    while (ts_now_ms() < end && ts_now_ms() - quiet_since < SETTLE_QUIET_MS) {
        ev_run(f->loop, EVRUN_ONCE);
        tstats_t s = flow_stats(f);
        uint64_t now = backend_read(b).pk + s.rx + s.tx;
        if (now != last) {
            last = now;
            quiet_since = ts_now_ms();
        }
    }
}

/* ---------------------------------------------------------------- gateway */

typedef struct bench {
    const char *build;
    char ca_file[PATH_MAX];
    char secret[64];
    backend_t be;
    struct ev_loop *loop;
    int seconds;
    int gw_bad;                 /* a sluiced did not exit 0 */
    int failed;                 /* a step did not complete */
    char why[300];
} bench_t;

static int gw_start(bench_t *b, ts_gateway_t *gw, const char *acme_limits)
{
    ts_config_t c = {
        .build = b->build,
        .listen = {"127.0.0.1:0"},
        .region = "local",
        .regions = {{.name = "local", .sfu = TS_POOL(ts_echo_addr_str(b->be.echo)),
                     .sfu_health = "\"probe\":\"none\""}},
        .tenants = {{.id = ACME, .secrets = {b->secret}, .hash = "sha1", .max_ttl = 3600,
                     .regions = {"local"}, .kinds = {"sfu"}, .limits_json = acme_limits},
                    {.id = OTHER, .secrets = {b->secret}, .hash = "sha1", .max_ttl = 3600,
                     .regions = {"local"}, .kinds = {"sfu"}}},
        .limits_json = "{\"max_tunnels\":256,\"max_streams\":100,"
                       "\"conn_idle_ms\":600000,\"tunnel_idle_ms\":600000}",
    };
    char config[PATH_MAX];
    memset(gw, 0, sizeof *gw);
    if (ts_config_write(&c, config, sizeof config) < 0) {
        snprintf(b->why, sizeof b->why, "cannot write a config (is %s a build dir?)", b->build);
        return -1;
    }
    if (ts_gateway_start(gw, b->build, config, ts_deadline(START_MS)) < 0) {
        snprintf(b->why, sizeof b->why, "sluiced did not get ready");
        return -1;
    }
    return 0;
}

static void gw_stop(bench_t *b, ts_gateway_t *gw)
{
    if (gw->proc.pid > 0 && ts_gateway_stop(gw, ts_deadline(STOP_MS)) != 0)
        b->gw_bad = 1;
    ts_gateway_dispose(gw);
}

/* ---------------------------------------------------------------- accuracy */

enum row_kind { R_UP, R_DOWN, R_SIGNAL, R_TENANT, R_CAP, R_CAP_USER };

typedef struct row {
    const char *name;           /* the limit's key(s) */
    enum row_kind kind;
    int bits;                   /* the figure is bits, not packets */
    long rate, burst;           /* configured (caps: rate is the cap) */
    const char *limits;         /* acme's tenants[].limits */
    /* measured */
    int done;
    double t_s;
    double offered, delivered;  /* packets or bits; caps: requested, accepted */
    uint64_t refused;
    char note[160];
} row_t;

#define OFFER 3 /* times the limit */

static void row_fail(bench_t *b, row_t *r, const char *why)
{
    b->failed = 1;
    snprintf(r->note, sizeof r->note, "FAILED: %.140s", why);
}

static void run_row(bench_t *b, row_t *r)
{
    ts_gateway_t gw;
    flow_t f = {0};
    if (gw_start(b, &gw, r->limits) < 0) {
        row_fail(b, r, b->why);
        gw_stop(b, &gw);
        return;
    }
    if (flow_init(&f, b->loop, b->ca_file, ts_addr_port(&gw.listen[0])) < 0)
        goto fail;

    if (r->kind == R_CAP || r->kind == R_CAP_USER) {
        size_t want = (size_t)(OFFER * r->rate);
        if (flow_open(&f, ACME, b->secret, want, r->kind == R_CAP_USER ? "alice" : NULL) < 0)
            goto fail;
        r->offered = (double)want;
        r->delivered = (double)f.opened;
        r->refused = f.refused;
        if (f.refused)
            snprintf(r->note, sizeof r->note, "refused: 429 \"%s\"", f.refused_reason);
        r->done = 1;
        goto out;
    }

    size_t ntun = r->kind == R_TENANT ? FLOOD_TUNNELS : 1;
    if (flow_open(&f, ACME, b->secret, ntun, NULL) < 0 || f.refused)
        goto fail;
    atomic_store(&b->be.drop, r->kind != R_DOWN);
    size_t len = r->kind == R_SIGNAL ? STUN_LEN : PKT;
    double pps = OFFER * (r->bits ? (double)r->rate / (8.0 * (double)len) : (double)r->rate);
    bcount_t b0 = backend_read(&b->be);
    tstats_t s0 = flow_stats(&f);
    r->t_s = flow_pace(&f, pps, len, r->kind == R_SIGNAL, MARK_ACME, b->seconds * 1000);
    flow_settle(&f, &b->be);
    bcount_t b1 = backend_read(&b->be);
    tstats_t s1 = flow_stats(&f);
    if (f.failed || f.opened != ntun)
        goto fail;
    double unit = r->bits ? 8.0 : 1.0;
    if (r->kind == R_DOWN) {
        r->offered = (double)(r->bits ? b1.bytes - b0.bytes : b1.pk - b0.pk) * unit;
        r->delivered = (double)(r->bits ? s1.rx_bytes - s0.rx_bytes : s1.rx - s0.rx) * unit;
    } else {
        r->offered = (double)(s1.tx - s0.tx) * (r->bits ? (double)len * 8.0 : 1.0);
        r->delivered = (double)(r->bits ? b1.bytes - b0.bytes : b1.pk - b0.pk) * unit;
    }
    if (s1.dropped != s0.dropped)
        snprintf(r->note, sizeof r->note, "client queue dropped %" PRIu64,
                 s1.dropped - s0.dropped);
    r->done = 1;
    goto out;
fail:
    row_fail(b, r, f.why[0] ? f.why : "could not run");
out:
    flow_dispose(&f);
    gw_stop(b, &gw);
}

/* ---------------------------------------------------------------- isolation */

typedef struct iso_phase {
    int done;
    double t_s;                 /* other's paced time */
    uint64_t sent, received;
    int64_t p50_us, p99_us, max_us;
    /* acme's flood, phase 2 only: packets/s sent by its client (over the
     * flood's whole life) and received by the backend while other measured */
    double flood_offered_pps, flood_delivered_pps;
} iso_phase_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* other's call: ISO_PPS of PKT bytes for ISO_MS through the echo. */
static int iso_measure(bench_t *b, flow_t *o, iso_phase_t *ph)
{
    o->nrtt = 0;
    tstats_t s0 = flow_stats(o);
    ph->t_s = flow_pace(o, ISO_PPS, PKT, 0, MARK_OTHER, ISO_MS);
    flow_settle(o, &b->be);
    tstats_t s1 = flow_stats(o);
    if (o->failed)
        return -1;
    ph->sent = s1.tx - s0.tx;
    ph->received = s1.rx - s0.rx;
    if (o->nrtt == 0)
        return -1;
    qsort(o->rtt_us, o->nrtt, sizeof o->rtt_us[0], cmp_i64);
    ph->p50_us = o->rtt_us[o->nrtt / 2];
    ph->p99_us = o->rtt_us[(o->nrtt * 99) / 100];
    ph->max_us = o->rtt_us[o->nrtt - 1];
    ph->done = 1;
    return 0;
}

/* The forked flooder: acme's FLOOD_TUNNELS tunnels, ISO_FACTOR x acme's
 * per-tunnel packets/s each, until the parent closes the pipe (or a bound).
 * Writes 'R' when its tunnels are open, then "<offered>\n" at the end. */
static void flood_child(bench_t *b, uint16_t port, long pps_limit, int out_fd, int in_fd)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    flow_t f;
    if (!loop || flow_init(&f, loop, b->ca_file, port) < 0 ||
        flow_open(&f, ACME, b->secret, FLOOD_TUNNELS, NULL) < 0 || f.refused) {
        _exit(1);
    }
    if (write(out_fd, "R", 1) != 1)
        _exit(1);
    /* pace in slices and stop when the parent says so (its end of in_fd closes) */
    f.pace_t0_ns = ts_now_ns();
    f.pace_pps = (double)(ISO_FACTOR * pps_limit * FLOOD_TUNNELS);
    f.pace_len = PKT;
    f.pace_mark = MARK_ACME;
    int64_t end = ts_now_ms() + ISO_MS + SETTLE_MAX_MS + 5000;
    for (;;) {
        struct pollfd p = {.fd = in_fd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0 || ts_now_ms() >= end)
            break;
        ev_run(loop, EVRUN_ONCE);
    }
    f.pace_pps = 0;
    tstats_t s = flow_stats(&f);
    double el = (double)(ts_now_ns() - f.pace_t0_ns) / 1e9;
    char line[64];
    int n = snprintf(line, sizeof line, "%.0f\n", (double)s.tx / el);
    if (write(out_fd, line, (size_t)n) != n)
        _exit(1);
    _exit(0);
}

/* Reads up to cap - 1 bytes from fd until a newline or the deadline. */
static int read_line(int fd, char *buf, size_t cap, int64_t deadline)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = ts_remaining_ms(deadline);
        if (left == 0 || poll(&p, 1, left) <= 0)
            return -1;
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n++] == '\n' || buf[0] == 'R')
            break;
    }
    buf[n] = '\0';
    return 0;
}

#define ISO_PPS_LIMIT 200
static const char iso_limits[] =
    "{\"up_packets_s\":200,\"up_packets_burst\":20,\"up_bits_s\":400000,"
    "\"down_packets_s\":200,\"bits_s\":1000000}";

static void run_isolation(bench_t *b, iso_phase_t ph[2], char *why, size_t whycap)
{
    ts_gateway_t gw;
    flow_t o = {0};
    pid_t child = -1;
    int to_child[2] = {-1, -1}, from_child[2] = {-1, -1};
    if (gw_start(b, &gw, iso_limits) < 0) {
        snprintf(why, whycap, "%s", b->why);
        goto out;
    }
    uint16_t port = ts_addr_port(&gw.listen[0]);
    atomic_store(&b->be.drop, 0);
    if (flow_init(&o, b->loop, b->ca_file, port) < 0 || flow_open(&o, OTHER, b->secret, 1, NULL) < 0) {
        snprintf(why, whycap, "other: %s", o.why);
        goto out;
    }
    o.rtt_cap = ISO_PPS * ISO_MS / 1000 + 100;
    o.rtt_us = calloc(o.rtt_cap, sizeof *o.rtt_us);
    if (!o.rtt_us || iso_measure(b, &o, &ph[0]) < 0) {
        snprintf(why, whycap, "other alone: %s", o.why[0] ? o.why : "no round trip");
        goto out;
    }

    if (pipe(to_child) < 0 || pipe(from_child) < 0) {
        snprintf(why, whycap, "pipe: %s", strerror(errno));
        goto out;
    }
    child = fork();
    if (child < 0) {
        snprintf(why, whycap, "fork: %s", strerror(errno));
        goto out;
    }
    if (child == 0) {
        close(to_child[1]);
        close(from_child[0]);
        flood_child(b, port, ISO_PPS_LIMIT, from_child[1], to_child[0]);
    }
    close(to_child[0]);
    close(from_child[1]);
    to_child[0] = from_child[1] = -1;
    char line[64];
    if (read_line(from_child[0], line, sizeof line, ts_deadline(OPEN_MS)) < 0 || line[0] != 'R') {
        snprintf(why, whycap, "the flooding process did not open acme's tunnels");
        goto out;
    }
    /* let the flood reach its rate before measuring */
    flow_pace(&o, 0, PKT, 0, MARK_OTHER, 300);
    bcount_t b0 = backend_read(&b->be);
    int64_t t0 = ts_now_ns();
    if (iso_measure(b, &o, &ph[1]) < 0) {
        snprintf(why, whycap, "other under acme's flood: %s", o.why[0] ? o.why : "no round trip");
        goto out;
    }
    bcount_t b1 = backend_read(&b->be);
    ph[1].flood_delivered_pps = (double)(b1.pk_acme - b0.pk_acme) * 1e9 / (double)(ts_now_ns() - t0);
    close(to_child[1]);
    to_child[1] = -1;
    if (read_line(from_child[0], line, sizeof line, ts_deadline(STOP_MS)) < 0) {
        snprintf(why, whycap, "the flooding process did not report");
        goto out;
    }
    ph[1].flood_offered_pps = strtod(line, NULL);
out:
    if (child > 0) {
        int st;
        int64_t dl = ts_deadline(STOP_MS);
        while (waitpid(child, &st, WNOHANG) == 0) {
            if (ts_now_ms() >= dl) {
                kill(child, SIGKILL);
                waitpid(child, &st, 0);
                break;
            }
            poll(NULL, 0, 10);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (to_child[i] >= 0)
            close(to_child[i]);
        if (from_child[i] >= 0)
            close(from_child[i]);
    }
    flow_dispose(&o);
    gw_stop(b, &gw);
}

/* ---------------------------------------------------------------- report */

static void report(bench_t *b, row_t *rows, size_t nrows, const iso_phase_t ph[2],
                   const char *iso_why, const char *path)
{
    static char out[16384];
    size_t pos = 0, cap = sizeof out;
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    ts_appendf(out, cap, &pos, "# sluice tenant limits: accuracy and isolation (make bench)\n\n");
    ts_appendf(out, cap, &pos, "- date: %s\n", date);
    ts_report_machine(out, cap, &pos);
    ts_appendf(out, cap, &pos,
               "- method: real sluiced on loopback, a UDP backend thread, libsluice-shim "
               "clients; media payloads %d B, STUN %d B; load %dx each limit for %d s\n\n",
               PKT, STUN_LEN, OFFER, b->seconds);

    ts_appendf(out, cap, &pos, "## Accuracy of each limit\n\n");
    ts_appendf(out, cap, &pos,
               "error = (delivered - (burst + rate * t)) / (rate * t); caps: accepted vs "
               "the cap.\n\n");
    ts_appendf(out, cap, &pos,
               "| limit (acme) | configured | burst | t (s) | offered | delivered | "
               "allowed | error | note |\n");
    ts_appendf(out, cap, &pos, "|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nrows; i++) {
        row_t *r = &rows[i];
        const char *unit = r->bits ? "bit" : "pkt";
        if (!r->done) {
            ts_appendf(out, cap, &pos, "| `%s` | %ld | | | | | | | %s |\n", r->name, r->rate,
                       r->note);
            continue;
        }
        if (r->kind == R_CAP || r->kind == R_CAP_USER) {
            ts_appendf(out, cap, &pos,
                       "| `%s` | %ld tunnels | | | %.0f requested | %.0f accepted | %ld | "
                       "%+.1f %% | %" PRIu64 " %s |\n",
                       r->name, r->rate, r->offered, r->delivered, r->rate,
                       100.0 * (r->delivered - (double)r->rate) / (double)r->rate, r->refused,
                       r->note);
            continue;
        }
        double allowed = (double)r->burst + (double)r->rate * r->t_s;
        double err = 100.0 * (r->delivered - allowed) / ((double)r->rate * r->t_s);
        ts_appendf(out, cap, &pos,
                   "| `%s` | %ld %s/s | %ld %s | %.2f | %.0f %s (%.0f/s) | %.0f %s (%.0f/s) | "
                   "%.0f | %+.2f %% | %s |\n",
                   r->name, r->rate, unit, r->burst, unit, r->t_s, r->offered, unit,
                   r->offered / r->t_s, r->delivered, unit, r->delivered / r->t_s, allowed,
                   err, r->note);
    }

    ts_appendf(out, cap, &pos, "\n## Isolation: other's call while acme floods\n\n");
    ts_appendf(out, cap, &pos,
               "other (no limits): %d B at %d pkt/s for %.1f s through the echo backend. "
               "acme's limits: `%s`; its flood: %d tunnels at %dx its up_packets_s each "
               "(%d pkt/s offered in all), echoed.\n\n",
               PKT, ISO_PPS, ISO_MS / 1000.0, iso_limits, FLOOD_TUNNELS, ISO_FACTOR,
               FLOOD_TUNNELS * ISO_FACTOR * ISO_PPS_LIMIT);
    ts_appendf(out, cap, &pos,
               "| phase | other sent | other received | lost | RTT p50 | RTT p99 | RTT max | "
               "acme offered | acme at backend |\n");
    ts_appendf(out, cap, &pos, "|---|---|---|---|---|---|---|---|---|\n");
    static const char *const phase[2] = {"other alone", "acme flooding"};
    for (int k = 0; k < 2; k++) {
        if (!ph[k].done)
            continue;
        char fo[48] = "-", fd[48] = "-";
        if (k == 1) {
            snprintf(fo, sizeof fo, "%.0f pkt/s", ph[k].flood_offered_pps);
            snprintf(fd, sizeof fd, "%.0f pkt/s", ph[k].flood_delivered_pps);
        }
        ts_appendf(out, cap, &pos,
                   "| %s | %" PRIu64 " | %" PRIu64 " | %" PRId64 " | %.3f ms | %.3f ms | "
                   "%.3f ms | %s | %s |\n",
                   phase[k], ph[k].sent, ph[k].received,
                   (int64_t)ph[k].sent - (int64_t)ph[k].received, ph[k].p50_us / 1000.0,
                   ph[k].p99_us / 1000.0, ph[k].max_us / 1000.0, fo, fd);
    }
    if (iso_why[0])
        ts_appendf(out, cap, &pos, "\nFAILED: %s\n", iso_why);
    if (b->gw_bad)
        ts_appendf(out, cap, &pos, "\nA sluiced did not exit 0.\n");

    fputs(out, stdout);
    if (ts_write_file(path, out, pos) < 0)
        fprintf(stderr, "bench_limits: cannot write %s: %s\n", path, strerror(errno));
    else
        printf("report written to %s\n", path);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_limits --build DIR [--seconds S] [--out FILE]\n"
               "  --seconds S  load time of each accuracy row, 1..10 (2)\n"
               "  --out FILE   report file (DIR/bench/limits.md)\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"build", required_argument, NULL, 'b'},
        {"seconds", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static bench_t b;
    const char *out = NULL;
    long seconds = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'b')
            b.build = optarg;
        else if (c == 'o')
            out = optarg;
        else if (c == 's' && ts_parse_long(optarg, 1, 10, &seconds) == 0)
            continue;
        else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!b.build || optind != argc) {
        usage(stderr);
        return 2;
    }
    b.seconds = (int)seconds;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);

    uint8_t raw[16];
    char out_path[PATH_MAX];
    if (RAND_bytes(raw, sizeof raw) != 1 ||
        ts_build_path(b.build, "dev/cert.pem", b.ca_file, sizeof b.ca_file) < 0 ||
        (out ? snprintf(out_path, sizeof out_path, "%s", out)
             : ts_build_path(b.build, "bench/limits.md", out_path, sizeof out_path)) < 0) {
        fprintf(stderr, "bench_limits: no randomness, or paths too long\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(b.secret + 2 * i, 3, "%02x", raw[i]);

    /* Each row's acme has only its own limit. Media rows use PKT-byte
     * payloads (1,600 bits), so 500 pkt/s and 800,000 bit/s are the same
     * load. The signaling budget binds only in a direction with a media
     * limit: a media limit that never binds (10^6 pkt/s) switches it on. */
    row_t rows[] = {
        {.name = "up_packets_s", .kind = R_UP, .bits = 0, .rate = 500, .burst = 50,
         .limits = "{\"up_packets_s\":500,\"up_packets_burst\":50}"},
        {.name = "down_packets_s", .kind = R_DOWN, .bits = 0, .rate = 500, .burst = 50,
         .limits = "{\"down_packets_s\":500,\"down_packets_burst\":50}"},
        {.name = "up_bits_s", .kind = R_UP, .bits = 1, .rate = 800000, .burst = 16000,
         .limits = "{\"up_bits_s\":800000,\"up_bits_burst\":16000}"},
        {.name = "down_bits_s", .kind = R_DOWN, .bits = 1, .rate = 800000, .burst = 16000,
         .limits = "{\"down_bits_s\":800000,\"down_bits_burst\":16000}"},
        {.name = "signal_packets_s (up)", .kind = R_SIGNAL, .bits = 0, .rate = 100, .burst = 10,
         .limits = "{\"up_packets_s\":1000000,\"signal_packets_s\":100,\"signal_packets_burst\":10}"},
        {.name = "bits_s (tenant, 4 tunnels)", .kind = R_TENANT, .bits = 1, .rate = 1600000, .burst = 16000,
         .limits = "{\"bits_s\":1600000,\"bits_burst\":16000}"},
        {.name = "max_tunnels", .kind = R_CAP, .bits = 0, .rate = 5, .burst = 0,
         .limits = "{\"max_tunnels\":5}"},
        {.name = "max_tunnels_per_user", .kind = R_CAP_USER, .bits = 0, .rate = 3, .burst = 0,
         .limits = "{\"max_tunnels_per_user\":3}"},
    };
    size_t nrows = sizeof rows / sizeof rows[0];

    b.be.echo = ts_echo_start_hooked(AF_INET, backend_hook, &b.be);
    b.loop = ev_loop_new(EVFLAG_AUTO);
    if (!b.be.echo || !b.loop) {
        fprintf(stderr, "bench_limits: cannot start the backend or a loop\n");
        return 1;
    }
    int64_t run_end = ts_deadline(RUN_MS);
    for (size_t i = 0; i < nrows; i++) {
        if (ts_now_ms() >= run_end) {
            row_fail(&b, &rows[i], "the run's time was up");
            continue;
        }
        printf("bench_limits: %s ...\n", rows[i].name);
        run_row(&b, &rows[i]);
    }
    iso_phase_t ph[2] = {{0}};
    char iso_why[300] = "";
    printf("bench_limits: isolation ...\n");
    if (ts_now_ms() < run_end)
        run_isolation(&b, ph, iso_why, sizeof iso_why);
    else
        snprintf(iso_why, sizeof iso_why, "the run's time was up");
    if (iso_why[0])
        b.failed = 1;

    report(&b, rows, nrows, ph, iso_why, out_path);
    ts_echo_stop(b.be.echo);
    ev_loop_destroy(b.loop);
    return b.failed || b.gw_bad ? 1 : 0;
}
