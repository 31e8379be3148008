/*
 * bench_load.c — `make bench`: an open-loop load generator for sluiced
 * (issue 9 §1). N tunnels over M TLS connections carry RTP-like packets at a
 * fixed offered rate through a real sluiced to a UDP echo backend and back;
 * every round trip is timed, and the gateway's CPU time and memory are read
 * from /proc.
 *
 *   bench_load --build DIR [--seconds S] [--out FILE] [--pin-gateway CPU]
 *              [--profile audio|video] [--tunnels N] [--conns M]
 *              [--rate PPS] [--size BYTES]
 *
 * With none of --profile, --tunnels, --conns, --rate or --size, the default
 * table runs (one row each, DEFAULT_ROWS below); with any of them, one row.
 * Profiles: audio is 200 B at 50 pkt/s per tunnel; video is 1,200 B at
 * --rate pkt/s per tunnel (default 500). --rate and --size override either.
 *
 * Each row runs on a fresh sluiced (port 0; its only sfu backend a ts_echo
 * thread in this process, "probe": "none"; limits generous enough that
 * nothing is refused or rate-limited) and goes:
 *   1. M libsluice-shim clients on this program's libev loop, N tunnels
 *      spread round robin over them (tunnel i on connection i % M), each a
 *      distinct user; wait until every tunnel is answered 200.
 *   2. Open loop for S seconds: the global packet j is due at t0 + j / (N *
 *      rate) and goes to tunnel j % N, so each tunnel sends at its own rate,
 *      the tunnels evenly staggered. A timer every TICK_S sends whatever is
 *      due (at most MAX_PER_TICK per tick: a generator that falls behind
 *      shows as offered < target in the report, never as a burst).
 *   3. Drain: the loop runs until every sent packet came back, or nothing
 *      arrived for DRAIN_QUIET_MS (at most DRAIN_MAX_MS).
 * Payload: byte 0 0x80 (RTP by RFC 7983's first byte: a DATAGRAM capsule),
 * byte 1 MARK, then the tunnel index (u32), its sequence number (u32) and the
 * send time (CLOCK_MONOTONIC ns, i64), in host order; zeros after.
 *
 * Measured per row:
 *   RTT       send (the call to sluice_tunnel_send) to arrival in on_packet,
 *             in a log-linear histogram (tests/support/ts_hist.h, <= 3.1 %
 *             bucket width): p50, p90, p99, p99.9, max
 *   loss      1 - received / sent after the drain, split into up (sent, not
 *             received by the backend) and down (echoed, not received by the
 *             client); the client queues are large enough that the client
 *             itself never drops (its drops are reported separately if any),
 *             and the host's UDP RcvbufErrors are noted when they moved (a
 *             full socket buffer: the backend thread's or sluiced's)
 *   reordered packets that arrived with a sequence number at or below the
 *             highest already received on their tunnel
 *   CPU       sluiced's utime + stime (/proc/PID/stat) from just before the
 *             load to the end of the drain
 *   relayed   packets sluiced forwarded, both directions: uplink (the backend
 *             received them) + downlink (the client received them); divided
 *             by sluiced's CPU seconds
 *   RSS       sluiced's VmRSS when ready, with the tunnels open, after the
 *             drain, and VmHWM (peak)
 *   generator this process's CPU (client loop + echo thread) over the load,
 *             as a share of one core: near 100 % means the generator, not the
 *             gateway, limited the rate
 *
 * Everything is bounded (each wait has a deadline; S <= 60; the whole run
 * RUN_MS). The report (Markdown) goes to stdout and to FILE (default
 * DIR/bench/load.md). Exit status: 0 when every row completed and each
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
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_echo.h"
#include "../support/ts_hist.h"
#include "../support/ts_net.h"
#include "../support/ts_pstat.h"
#include "../support/ts_sluice.h"
#include "../support/ts_report.h"
#include "../support/ts_util.h"
#include "sluice_shim.h"

#define TENANT "bench"
#define MARK 0x4c               /* byte 1 of every payload */
#define HDR_LEN 18              /* 0x80, MARK, index u32, seq u32, time i64 */
#define MAX_SIZE 8192
#define MAX_TUNNELS 10000
#define MAX_CONNS 1000
#define MAX_TOTAL_PPS 200000.0  /* all tunnels together */
#define TICK_S 0.0005
#define MAX_PER_TICK 2000
#define OPEN_MS 30000
#define START_MS 15000
#define STOP_MS 10000
#define DRAIN_QUIET_MS 200
#define DRAIN_MAX_MS 3000
#define RUN_MS (15 * 60 * 1000)
#define CRED_TTL_S 3600
#define MAX_ROWS 8

typedef struct row {
    const char *label;
    long tunnels, conns;        /* N, M */
    long rate;                  /* pkt/s per tunnel */
    long size;                  /* payload bytes */
    /* results */
    int done;
    char why[256];
    double paced_s;
    uint64_t sent, rx, reordered, bad, client_dropped, backend_rx;
    long rcvbuf_drops;          /* host-wide UDP RcvbufErrors during the load; -1: unknown */
    ts_hist_t rtt;              /* ns */
    ts_pstat_t gw_ready, gw_open, gw_after;
    double gw_cpu_s;
    double gen_cpu_s;
    int gw_exit;
} row_t;

/* ---------------------------------------------------------------- load */

struct run;

typedef struct lg_tunnel {
    struct run *run;
    sluice_tunnel_t *t;         /* NULL once ended */
    uint32_t idx;
    uint32_t next_seq;
    uint32_t max_rx_seq;
    int have_rx, open;
} lg_tunnel_t;

typedef struct run {
    struct ev_loop *loop;
    ev_timer tick;
    row_t *row;
    sluice_client_t **clients;
    size_t nclients;
    lg_tunnel_t *tun;
    size_t ntun;
    size_t opened, ended;
    char why[256];              /* the first unexpected end */
    /* pacing */
    int pacing;
    int64_t t0_ns;
    double total_pps;
    uint64_t j;                 /* global packets due so far that were handled */
    uint8_t buf[MAX_SIZE];
} run_t;

/* Keeps the first reason the run went wrong. */
static void note(run_t *r, const char *what, const char *a, const char *b)
{
    if (!r->why[0])
        snprintf(r->why, sizeof r->why, "%s %s: %.150s", what, a, b);
}

static void on_state(sluice_client_t *c, sluice_state_t state, const char *detail, void *ud)
{
    if (state == SLUICE_FAILED || state == SLUICE_CLOSED) {
        run_t *r = ud;
        r->ended++;
        note(r, "client", sluice_state_name(state), detail);
    }
}

static void on_open(sluice_tunnel_t *t, void *ud)
{
    lg_tunnel_t *lt = ud;
    if (!lt->open) {
        lt->open = 1;
        lt->run->opened++;
    }
}

static void on_packet(sluice_tunnel_t *t, const uint8_t *p, size_t len, int is_signal, void *ud)
{
    int64_t now = ts_now_ns();
    lg_tunnel_t *lt = ud;
    row_t *row = lt->run->row;
    uint32_t idx, seq;
    int64_t sent_ns;
    if (len < HDR_LEN || p[0] != 0x80 || p[1] != MARK) {
        row->bad++;
        return;
    }
    memcpy(&idx, p + 2, sizeof idx);
    memcpy(&seq, p + 6, sizeof seq);
    memcpy(&sent_ns, p + 10, sizeof sent_ns);
    if (idx != lt->idx || now < sent_ns) {
        row->bad++;
        return;
    }
    row->rx++;
    ts_hist_add(&row->rtt, (uint64_t)(now - sent_ns));
    if (lt->have_rx && seq <= lt->max_rx_seq) {
        row->reordered++;
    } else {
        lt->max_rx_seq = seq;
        lt->have_rx = 1;
    }
}

static void on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason,
                     void *ud)
{
    lg_tunnel_t *lt = ud;
    char st[64];
    snprintf(st, sizeof st, "%d (%s)", status, sluice_close_name(code));
    lt->t = NULL;
    lt->run->ended++;
    note(lt->run, "tunnel ended, status", st, reason);
}

/* Sends every packet due by now (bounded per tick). */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    run_t *r = (run_t *)((char *)w - offsetof(run_t, tick));
    if (!r->pacing)
        return;
    row_t *row = r->row;
    double el = (double)(ts_now_ns() - r->t0_ns) / 1e9;
    uint64_t due = (uint64_t)(el * r->total_pps);
    for (int k = 0; r->j < due && k < MAX_PER_TICK; k++, r->j++) {
        lg_tunnel_t *lt = &r->tun[r->j % r->ntun];
        if (!lt->t)
            continue;
        uint8_t *p = r->buf;
        int64_t now = ts_now_ns();
        p[0] = 0x80;
        p[1] = MARK;
        memcpy(p + 2, &lt->idx, sizeof lt->idx);
        memcpy(p + 6, &lt->next_seq, sizeof lt->next_seq);
        memcpy(p + 10, &now, sizeof now);
        if (sluice_tunnel_send(lt->t, p, (size_t)row->size) == SLUICE_OK) {
            lt->next_seq++;
            row->sent++;
        }
    }
    /* Behind by more than a tick's cap: the missed packets are not offered
     * later in a burst; the report shows the offered rate that was reached. */
    if (r->j < due)
        r->j = due;
}

static void run_dispose(run_t *r)
{
    for (size_t i = 0; i < r->nclients; i++)
        sluice_client_free(r->clients[i]);
    r->nclients = 0;
    free(r->clients);
    r->clients = NULL;
    free(r->tun);
    r->tun = NULL;
    if (r->loop) {
        ev_timer_stop(r->loop, &r->tick);
        ev_loop_destroy(r->loop);
        r->loop = NULL;
    }
}

/* Connects M clients and opens N tunnels. Returns 0 once all are open. */
static int run_open(run_t *r, const char *ca_file, uint16_t port, const char *secret)
{
    row_t *row = r->row;
    r->loop = ev_loop_new(EVFLAG_AUTO);
    r->clients = calloc((size_t)row->conns, sizeof *r->clients);
    r->tun = calloc((size_t)row->tunnels, sizeof *r->tun);
    if (!r->loop || !r->clients || !r->tun) {
        snprintf(r->why, sizeof r->why, "out of memory");
        return -1;
    }
    ev_timer_init(&r->tick, on_tick, TICK_S, TICK_S);
    ev_timer_start(r->loop, &r->tick);
    char err[200];
    sluice_tls_t *tls = sluice_tls_new(ca_file, err, sizeof err);
    if (!tls) {
        snprintf(r->why, sizeof r->why, "sluice_tls_new: %s", err);
        return -1;
    }
    sluice_client_opts_t co = {.host = "127.0.0.1", .port = port, .tls = tls,
                               .on_state = on_state, .ud = r};
    for (long i = 0; i < row->conns; i++) {
        sluice_client_t *c = sluice_client_new(r->loop, &co, err, sizeof err);
        if (!c || sluice_client_connect(c) != SLUICE_OK) {
            snprintf(r->why, sizeof r->why, "cannot start client %ld: %s", i, c ? "" : err);
            sluice_client_free(c);
            sluice_tls_free(tls);
            return -1;
        }
        r->clients[r->nclients++] = c;
    }
    sluice_tls_free(tls);
    uint64_t expiry = (uint64_t)time(NULL) + CRED_TTL_S;
    for (long i = 0; i < row->tunnels; i++) {
        char user[32], username[256], credential[64];
        snprintf(user, sizeof user, "u%ld", i);
        if (sluice_cred_mint(SLUICE_HASH_SHA1, secret, strlen(secret), expiry, user, username,
                             sizeof username, credential, sizeof credential) != SLUICE_OK) {
            snprintf(r->why, sizeof r->why, "cannot mint a credential");
            return -1;
        }
        lg_tunnel_t *lt = &r->tun[i];
        *lt = (lg_tunnel_t){.run = r, .idx = (uint32_t)i};
        /* Queues big enough that the client never drops what is offered. */
        sluice_tunnel_opts_t to = {.tenant = TENANT, .kind = "sfu", .username = username,
                                   .credential = credential,
                                   .media_queue_bytes = 4u << 20,
                                   .media_max_age_ms = 10000,
                                   .ping_interval_ms = UINT32_MAX,
                                   .on_open = on_open, .on_packet = on_packet,
                                   .on_close = on_close, .ud = lt};
        lt->t = sluice_tunnel_open(r->clients[(size_t)i % r->nclients], &to);
        if (!lt->t) {
            snprintf(r->why, sizeof r->why, "sluice_tunnel_open failed");
            return -1;
        }
        r->ntun++;
    }
    int64_t deadline = ts_deadline(OPEN_MS);
    while (r->opened < r->ntun && r->ended == 0 && ts_now_ms() < deadline)
        ev_run(r->loop, EVRUN_ONCE);
    if (r->opened == r->ntun && r->ended == 0)
        return 0;
    if (!r->why[0])
        snprintf(r->why, sizeof r->why, "%zu of %zu tunnels open at the deadline", r->opened,
                 r->ntun);
    return -1;
}

static uint64_t client_dropped(const run_t *r)
{
    uint64_t n = 0;
    for (size_t i = 0; i < r->ntun; i++) {
        if (!r->tun[i].t)
            continue;
        sluice_tunnel_stats_t st;
        sluice_tunnel_stats(r->tun[i].t, &st);
        n += st.dropped_media + st.dropped_signal;
    }
    return n;
}

/* The host's UDP RcvbufErrors (/proc/net/snmp): datagrams the kernel dropped
 * because a socket's receive buffer was full. Host-wide, so other processes'
 * drops count too; -1 when it cannot be read. */
static long udp_rcvbuf_errors(void)
{
    char *t = ts_read_file("/proc/net/snmp", 65536, NULL);
    long v = -1;
    /* Two "Udp:" lines: the field names, then the values in the same order. */
    char *names = t ? strstr(t, "\nUdp:") : NULL;
    char *values = names ? strstr(names + 1, "\nUdp:") : NULL;
    if (names && values) {
        char *np = names + 5, *vp = values + 5;
        for (int i = 0; i < 32; i++) {
            size_t nl = strcspn(np += strspn(np, " "), " \n");
            char *end;
            long n = strtol(vp, &end, 10);
            if (nl == 0 || end == vp)
                break;
            if (nl == 12 && strncmp(np, "RcvbufErrors", 12) == 0) {
                v = n;
                break;
            }
            np += nl;
            vp = end;
        }
    }
    free(t);
    return v;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---------------------------------------------------------------- rows */

typedef struct bench {
    const char *build;
    char ca_file[PATH_MAX];
    char secret[64];
    long seconds;
    long pin_gateway;           /* -1: not pinned */
    ts_echo_t *echo;
    int failed;
} bench_t;

static int gw_start(bench_t *b, const row_t *row, ts_gateway_t *gw, char *why, size_t cap)
{
    long per_conn = (row->tunnels + row->conns - 1) / row->conns;
    char limits[1024];
    snprintf(limits, sizeof limits,
             "{\"max_connections\":%ld,\"max_tunnels\":%ld,\"max_streams\":%ld,"
             "\"max_pending_per_source\":100000,\"handshakes_per_source_s\":1000000,"
             "\"max_control_frames_s\":1000000,"
             "\"conn_idle_ms\":600000,\"tunnel_idle_ms\":600000}",
             row->conns + 64, row->tunnels + 64, per_conn + 1);
    ts_config_t c = {
        .build = b->build,
        .listen = {"127.0.0.1:0"},
        .region = "local",
        .regions = {{.name = "local", .sfu = TS_POOL(ts_echo_addr_str(b->echo)),
                     .sfu_health = "\"probe\":\"none\""}},
        .tenants = {{.id = TENANT, .secrets = {b->secret}, .hash = "sha1", .max_ttl = 7200,
                     .regions = {"local"}, .kinds = {"sfu"}}},
        .limits_json = limits,
    };
    char config[PATH_MAX];
    memset(gw, 0, sizeof *gw);
    if (ts_config_write(&c, config, sizeof config) < 0) {
        snprintf(why, cap, "cannot write a config (is %s a build dir?)", b->build);
        return -1;
    }
    if (ts_gateway_start(gw, b->build, config, ts_deadline(START_MS)) < 0) {
        snprintf(why, cap, "sluiced did not get ready");
        return -1;
    }
    if (b->pin_gateway >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)b->pin_gateway, &set);
        if (sched_setaffinity(gw->proc.pid, sizeof set, &set) < 0) {
            snprintf(why, cap, "cannot pin sluiced to CPU %ld: %s", b->pin_gateway,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void run_row(bench_t *b, row_t *row)
{
    static run_t r;
    memset(&r, 0, sizeof r);
    r.row = row;
    ts_hist_init(&row->rtt);
    row->gw_exit = -1;
    ts_gateway_t gw;
    if (gw_start(b, row, &gw, row->why, sizeof row->why) < 0)
        goto out;
    pid_t pid = gw.proc.pid;
    if (ts_pstat_read(pid, &row->gw_ready) < 0) {
        snprintf(row->why, sizeof row->why, "cannot read sluiced's /proc entries");
        goto out;
    }
    if (run_open(&r, b->ca_file, ts_addr_port(&gw.listen[0]), b->secret) < 0) {
        snprintf(row->why, sizeof row->why, "%s", r.why);
        goto out;
    }
    uint64_t backend0 = ts_echo_packets(b->echo);
    long rcvbuf0 = udp_rcvbuf_errors();
    double gen0 = self_cpu_s();
    if (ts_pstat_read(pid, &row->gw_open) < 0) {
        snprintf(row->why, sizeof row->why, "cannot read sluiced's /proc entries");
        goto out;
    }

    /* Open loop for S seconds. */
    r.total_pps = (double)row->tunnels * (double)row->rate;
    r.t0_ns = ts_now_ns();
    r.pacing = 1;
    int64_t end = ts_now_ms() + b->seconds * 1000;
    while (ts_now_ms() < end && r.ended == 0)
        ev_run(r.loop, EVRUN_ONCE);
    r.pacing = 0;
    row->paced_s = (double)(ts_now_ns() - r.t0_ns) / 1e9;
    row->gen_cpu_s = self_cpu_s() - gen0;

    /* Drain. */
    int64_t drain_end = ts_now_ms() + DRAIN_MAX_MS, quiet_since = ts_now_ms();
    uint64_t last = row->rx;
    while (row->rx < row->sent && r.ended == 0 && ts_now_ms() < drain_end &&
           ts_now_ms() - quiet_since < DRAIN_QUIET_MS) {
        ev_run(r.loop, EVRUN_ONCE);
        if (row->rx != last) {
            last = row->rx;
            quiet_since = ts_now_ms();
        }
    }
    if (ts_pstat_read(pid, &row->gw_after) < 0) {
        snprintf(row->why, sizeof row->why, "cannot read sluiced's /proc entries");
        goto out;
    }
    row->backend_rx = ts_echo_packets(b->echo) - backend0;
    long rcvbuf1 = udp_rcvbuf_errors();
    row->rcvbuf_drops = rcvbuf0 < 0 || rcvbuf1 < 0 ? -1 : rcvbuf1 - rcvbuf0;
    row->client_dropped = client_dropped(&r);
    row->gw_cpu_s = (double)(row->gw_after.utime_ns + row->gw_after.stime_ns -
                             row->gw_open.utime_ns - row->gw_open.stime_ns) / 1e9;
    if (r.ended) {
        snprintf(row->why, sizeof row->why, "%s", r.why);
        goto out;
    }
    row->done = 1;
out:
    run_dispose(&r);
    if (gw.proc.pid > 0)
        row->gw_exit = ts_gateway_stop(&gw, ts_deadline(STOP_MS));
    ts_gateway_dispose(&gw);
    if (!row->done || row->gw_exit != 0)
        b->failed = 1;
}

/* ---------------------------------------------------------------- report */

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void report(const bench_t *b, const row_t *rows, size_t nrows, const char *path)
{
    static char out[16384];
    size_t pos = 0, cap = sizeof out;
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    ts_appendf(out, cap, &pos, "# sluice under load: open loop through a UDP echo (make bench)\n\n");
    ts_appendf(out, cap, &pos, "- date: %s\n", date);
    ts_report_machine(out, cap, &pos);
    ts_appendf(out, cap, &pos,
               "- method: real sluiced on loopback (%s), a UDP echo backend thread, "
               "libsluice-shim clients on one libev loop in this process; each row %ld s of "
               "open-loop load on a fresh sluiced, then a drain\n",
               b->pin_gateway >= 0 ? "pinned to one CPU" : "not pinned", b->seconds);
    ts_appendf(out, cap, &pos,
               "- RTT from sluice_tunnel_send to on_packet; relayed = packets sluiced "
               "forwarded in both directions (backend received + client received); CPU = "
               "sluiced's utime + stime over the load and the drain; generator = this "
               "process's CPU (client + echo) as a share of one core\n\n");
    ts_appendf(out, cap, &pos,
               "| row | tunnels / conns | size | offered msg/s (target) | echoed msg/s | loss "
               "(up / down) | reordered | RTT p50 / p90 / p99 / p99.9 / max (ms) | sluiced CPU | relayed "
               "pkt per CPU-s | sluiced RSS ready / open / after / peak (MB) | generator CPU |\n");
    ts_appendf(out, cap, &pos, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nrows; i++) {
        const row_t *w = &rows[i];
        double target = (double)w->tunnels * (double)w->rate;
        if (!w->done) {
            ts_appendf(out, cap, &pos, "| %s | %ld / %ld | %ld B | (%.0f) | failed: %s |\n",
                       w->label, w->tunnels, w->conns, w->size, target, w->why);
            continue;
        }
        const ts_hist_t *h = &w->rtt;
        double loss = w->sent ? 100.0 * (double)(w->sent - (w->rx < w->sent ? w->rx : w->sent)) /
                                    (double)w->sent
                              : 0;
        /* up: sent but not received by the backend; down: echoed but not
         * received by the client. */
        double up = w->sent ? 100.0 * (double)(w->sent - (w->backend_rx < w->sent ? w->backend_rx
                                                                                  : w->sent)) /
                                  (double)w->sent
                            : 0;
        double down = w->backend_rx ? 100.0 *
                                          (double)(w->backend_rx - (w->rx < w->backend_rx
                                                                        ? w->rx
                                                                        : w->backend_rx)) /
                                          (double)w->backend_rx
                                    : 0;
        double relayed = (double)(w->backend_rx + w->rx);
        char per_cpu[32];
        if (w->gw_cpu_s > 0)
            snprintf(per_cpu, sizeof per_cpu, "%.0fk", relayed / w->gw_cpu_s / 1000.0);
        else
            snprintf(per_cpu, sizeof per_cpu, "n/a");
        ts_appendf(out, cap, &pos,
                   "| %s | %ld / %ld | %ld B | %.0f (%.0f) | %.0f | %.3f %% (%.3f / %.3f) | %" PRIu64
                   " | %.2f / %.2f / %.2f / %.2f / %.2f | %.2f s (%.0f %%) | %s | %.1f / %.1f / "
                   "%.1f / %.1f | %.0f %% |\n",
                   w->label, w->tunnels, w->conns, w->size, (double)w->sent / w->paced_s,
                   target, (double)w->rx / w->paced_s, loss, up, down, w->reordered,
                   ms(ts_hist_percentile(h, 50)), ms(ts_hist_percentile(h, 90)),
                   ms(ts_hist_percentile(h, 99)), ms(ts_hist_percentile(h, 99.9)), ms(h->max),
                   w->gw_cpu_s, 100.0 * w->gw_cpu_s / w->paced_s, per_cpu,
                   w->gw_ready.rss_kb / 1024.0, w->gw_open.rss_kb / 1024.0,
                   w->gw_after.rss_kb / 1024.0, w->gw_after.hwm_kb / 1024.0,
                   100.0 * w->gen_cpu_s / w->paced_s);
    }
    for (size_t i = 0; i < nrows; i++) {
        const row_t *w = &rows[i];
        if (w->done && (w->bad || w->client_dropped))
            ts_appendf(out, cap, &pos,
                       "\n%s: %" PRIu64 " packets did not parse, the client dropped %" PRIu64
                       "\n",
                       w->label, w->bad, w->client_dropped);
        if (w->done && w->rcvbuf_drops != 0)
            ts_appendf(out, cap, &pos,
                       "\n%s: the host's UDP receive buffers dropped %ld datagrams during the "
                       "load (/proc/net/snmp RcvbufErrors, host-wide)\n",
                       w->label, w->rcvbuf_drops);
        if (w->gw_exit != 0)
            ts_appendf(out, cap, &pos, "\n%s: sluiced exit %d\n", w->label, w->gw_exit);
    }
    fputs(out, stdout);
    if (ts_write_file(path, out, pos) < 0)
        fprintf(stderr, "bench_load: cannot write %s: %s\n", path, strerror(errno));
    else
        printf("report written to %s\n", path);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_load --build DIR [--seconds S] [--out FILE] [--pin-gateway CPU]\n"
            "                  [--profile audio|video] [--tunnels N] [--conns M] [--rate PPS]\n"
            "                  [--size BYTES]\n"
            "  --seconds S      load time of each row, 1..60 (3)\n"
            "  --out FILE       report file (DIR/bench/load.md)\n"
            "  --pin-gateway C  pin sluiced to CPU C (not pinned)\n"
            "  --profile P      audio: 200 B at 50 pkt/s per tunnel; video: 1200 B at 500\n"
            "  --tunnels N      1..%d (100)\n"
            "  --conns M        TLS connections carrying them, 1..min(N, %d) (N)\n"
            "  --rate PPS       packets per second per tunnel (N * PPS <= %.0f)\n"
            "  --size BYTES     payload, %d..%d\n"
            "With none of --profile/--tunnels/--conns/--rate/--size: the default rows.\n",
            MAX_TUNNELS, MAX_CONNS, MAX_TOTAL_PPS, HDR_LEN, MAX_SIZE);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"build", required_argument, NULL, 'b'},
        {"seconds", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"pin-gateway", required_argument, NULL, 'c'},
        {"profile", required_argument, NULL, 'p'},
        {"tunnels", required_argument, NULL, 'n'},
        {"conns", required_argument, NULL, 'm'},
        {"rate", required_argument, NULL, 'r'},
        {"size", required_argument, NULL, 'z'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static bench_t b = {.seconds = 3, .pin_gateway = -1};
    static row_t rows[MAX_ROWS];
    const char *out = NULL, *profile = NULL;
    long tunnels = 0, conns = 0, rate = 0, size = 0;
    int custom = 0, c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'b':
            b.build = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 's':
            bad = ts_parse_long(optarg, 1, 60, &b.seconds);
            break;
        case 'c':
            bad = ts_parse_long(optarg, 0, CPU_SETSIZE - 1, &b.pin_gateway);
            break;
        case 'p':
            profile = optarg;
            bad = strcmp(profile, "audio") != 0 && strcmp(profile, "video") != 0;
            custom = 1;
            break;
        case 'n':
            bad = ts_parse_long(optarg, 1, MAX_TUNNELS, &tunnels);
            custom = 1;
            break;
        case 'm':
            bad = ts_parse_long(optarg, 1, MAX_CONNS, &conns);
            custom = 1;
            break;
        case 'r':
            bad = ts_parse_long(optarg, 1, (long)MAX_TOTAL_PPS, &rate);
            custom = 1;
            break;
        case 'z':
            bad = ts_parse_long(optarg, HDR_LEN, MAX_SIZE, &size);
            custom = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "bench_load: bad value for an option\n");
            usage(stderr);
            return 2;
        }
    }
    if (!b.build || optind != argc) {
        usage(stderr);
        return 2;
    }
    size_t nrows = 0;
    if (custom) {
        int video = profile && strcmp(profile, "video") == 0;
        row_t *w = &rows[nrows++];
        w->label = video ? "video" : "audio";
        w->tunnels = tunnels ? tunnels : 100;
        w->conns = conns ? conns : w->tunnels;
        w->rate = rate ? rate : video ? 500 : 50;
        w->size = size ? size : video ? 1200 : 200;
        if (w->conns > w->tunnels || (double)w->tunnels * (double)w->rate > MAX_TOTAL_PPS) {
            fprintf(stderr, "bench_load: --conns is more than --tunnels, or N * PPS is over "
                            "%.0f\n", MAX_TOTAL_PPS);
            return 2;
        }
    } else {
        /* The default table: 100 users each on their own connection, the
         * same over 10 connections, a higher rate, and video. */
        static const row_t def[] = {
            {.label = "audio, 1 tunnel per conn", .tunnels = 100, .conns = 100, .rate = 50,
             .size = 200},
            {.label = "audio, 10 tunnels per conn", .tunnels = 100, .conns = 10, .rate = 50,
             .size = 200},
            {.label = "200 B at 200 pkt/s, 1 per conn", .tunnels = 100, .conns = 100,
             .rate = 200, .size = 200},
            {.label = "video, 1 tunnel per conn", .tunnels = 10, .conns = 10, .rate = 500,
             .size = 1200},
        };
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++)
            rows[nrows++] = def[i];
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    uint8_t raw[16];
    char out_path[PATH_MAX];
    if (RAND_bytes(raw, sizeof raw) != 1 ||
        ts_build_path(b.build, "dev/cert.pem", b.ca_file, sizeof b.ca_file) < 0 ||
        (out ? snprintf(out_path, sizeof out_path, "%s", out)
             : ts_build_path(b.build, "bench/load.md", out_path, sizeof out_path)) < 0) {
        fprintf(stderr, "bench_load: no randomness, or paths too long\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(b.secret + 2 * i, 3, "%02x", raw[i]);

    b.echo = ts_echo_start(AF_INET);
    if (!b.echo) {
        fprintf(stderr, "bench_load: cannot start the echo backend\n");
        return 1;
    }
    int64_t run_end = ts_deadline(RUN_MS);
    for (size_t i = 0; i < nrows; i++) {
        row_t *w = &rows[i];
        if (ts_now_ms() >= run_end) {
            snprintf(w->why, sizeof w->why, "the run's time was up");
            b.failed = 1;
            continue;
        }
        printf("bench_load: %s: %ld tunnels over %ld connections, %ld B at %ld pkt/s each, "
               "%ld s ...\n",
               w->label, w->tunnels, w->conns, w->size, w->rate, b.seconds);
        run_row(&b, w);
    }
    report(&b, rows, nrows, out_path);
    ts_echo_stop(b.echo);
    return b.failed ? 1 : 0;
}
