/*
 * bench_load.c — `make bench`: the side-by-side load benchmark of issue 9 §1.
 * The same open-loop media load, in the same run on the same machine with the
 * same CPU pinning, goes through each relay to one UDP echo backend and back:
 *
 *   fwd       tests/bench/fwd/udp_fwd: a plain C UDP forwarder (the floor;
 *             one client-facing socket, one upstream socket per user)
 *   fwd-uring the same forwarder moving datagrams with io_uring instead of
 *             epoll and recvmmsg/sendmmsg (udp_fwd --uring; only when
 *             --system names it)
 *   sluice    sluiced, one TLS connection (libsluice-shim client) per user
 *   sluice10  sluiced, 10 tunnels per TLS connection
 *   turn-tls  Debian's coturn, TURN over TLS: one TLS connection and one
 *             allocation per user, ChannelData (tests/support/ts_mload)
 *   turn-udp  coturn, TURN over UDP, one socket and allocation per user
 *
 *   bench_load --build DIR [--seconds S] [--out FILE] [--pin CPU|none]
 *              [--system LIST] [--users N] [--rates LIST] [--sizes LIST]
 *              [--profile audio|video] [--video-rate PPS] [--keyframe MS]
 *              [--burst N] [--saturate] [--full]
 *
 * Offered load is total echoed msg/s spread evenly over the users (default
 * 100): each user sends at rates / users pkt/s. The default (make bench) is
 * every system at 5,000 and 20,000 msg/s, 200 B; --full is 5k/20k/50k msg/s
 * at 200 B and 1,200 B plus --saturate. --profile audio is 200 B at 50 pkt/s
 * per user; video is 1,200 B at --video-rate pkt/s per user (default 100);
 * --keyframe MS adds, on each 1,200 B row, a burst of --burst (default 150)
 * 1,200 B packets per user every MS ms (users staggered over the period).
 * --saturate searches, per system (200 B, or the first size), the highest
 * offered rate whose loss is at most 0.1 % with RTT p99 under 100 ms: doubling
 * from 5,000 msg/s, then bisection, at most SAT_STEPS rows of min(S, 3) s.
 *
 * Pinning (default when the machine has two CPUs or more: --pin 0): every
 * thread of the relaying process on CPU C (sched_setaffinity on each
 * /proc/PID/task entry once it is ready), this program and its echo thread on
 * another CPU (C == 0 ? 1 : 0). --pin none: nothing pinned.
 *
 * Each row runs on a fresh relay (sluiced: port 0, its only sfu backend the
 * ts_echo thread of this process, "probe": "none", limits that never bind;
 * coturn: ts_coturn_start_opts with the dev certificate and a relay range of
 * 1,024 ports; udp_fwd: port 0) and goes:
 *   1. Open every user (tunnels answered 200; TURN allocations bound to a
 *      channel to the echo).
 *   2. Open loop for S seconds: the global packet j is due at t0 + j / (N *
 *      rate) and goes to user j % N. A timer every TICK_S sends whatever is
 *      due (at most MAX_PER_TICK per tick: a generator that falls behind shows
 *      as offered < target in the report, never as a burst).
 *   3. Drain: until every sent packet came back, or nothing arrived for
 *      DRAIN_QUIET_MS (at most DRAIN_MAX_MS).
 * Payload: byte 0 0x80 (RTP by RFC 7983's first byte: a DATAGRAM capsule for
 * sluice), byte 1 MARK, then the user index (u32), its sequence number (u32)
 * and the send time (CLOCK_MONOTONIC ns, i64), in host order; zeros after.
 *
 * Measured per row:
 *   RTT       from the send call to arrival, log-linear histogram
 *             (tests/support/ts_hist.h, <= 3.1 % bucket width)
 *   loss      1 - received / sent after the drain, split into up (not
 *             received by the backend) and down (echoed, not received); the
 *             host's UDP RcvbufErrors are noted when they moved
 *   CPU       the relaying process's utime + stime (/proc/PID/stat, all its
 *             threads) from just before the load to the end of the drain;
 *             per relayed packet, also split into user and kernel time
 *   relayed   packets the relay forwarded, both directions: backend received
 *             + client received; per relay CPU-second
 *   RSS       the relay's VmRSS with the users open, after the drain, VmHWM
 *   generator this process's CPU (clients + echo) as a share of one core:
 *             near 100 % means the generator, not the relay, set the limit
 *
 * Everything is bounded (each wait has a deadline; S <= 60; the whole run
 * RUN_MS). The report (Markdown) goes to stdout and to FILE (default
 * DIR/bench/load.md). Exit status: 0 when every row completed and each relay
 * stopped cleanly; 1 otherwise; 2 for bad arguments.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/rand.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_coturn.h"
#include "../support/ts_echo.h"
#include "../support/ts_hist.h"
#include "../support/ts_host.h"
#include "../support/ts_mload.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_pstat.h"
#include "../support/ts_report.h"
#include "../support/ts_scrape.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"
#include "sluice_shim.h"

#define TENANT "bench"
#define MARK 0x4c               /* byte 1 of every payload */
#define HDR_LEN 18              /* 0x80, MARK, index u32, seq u32, time i64 */
#define ECHO_AT HDR_LEN         /* then, written by the echo: its receive time, i64 */
#define MAX_SIZE 8192
#define MAX_USERS 1000
#define MAX_TOTAL_PPS 200000.0  /* all users together */
#define TICK_S 0.0005
#define MAX_PER_TICK 2000
#define OPEN_MS 30000
#define START_MS 15000
#define STOP_MS 10000
#define DRAIN_QUIET_MS 200
#define DRAIN_MAX_MS 3000
#define RUN_MS (30 * 60 * 1000)
#define CRED_TTL_S 3600
#define MAX_ROWS 96
#define MAX_LIST 8
#define SAT_STEPS 8
#define SAT_START 5000.0
#define SAT_LOSS 0.1            /* percent */
#define SAT_P99_MS 100.0        /* a relay that queues instead of dropping (TLS) */
#define COTURN_RELAY_PORTS 1024u
#define FWD_REL "bench/fwd/udp_fwd"
#define MAX_REASONS 24
#define ADMIN_JSON "{\"listen\":\"127.0.0.1:0\",\"tokens\":[{\"token\":\"bench-token-0123456789\"}]}"

typedef enum sys {
    SYS_FWD, SYS_FWD_URING, SYS_SLUICE, SYS_SLUICE10, SYS_TURN_TLS, SYS_TURN_UDP, SYS_N
} sys_t;
static const char *const sys_names[SYS_N] = {"fwd",      "fwd-uring", "sluice",
                                             "sluice10", "turn-tls",  "turn-udp"};
static const char *const relay_names[SYS_N] = {"udp_fwd", "udp_fwd",    "sluiced",
                                               "sluiced", "turnserver", "turnserver"};

typedef struct row {
    sys_t sys;
    const char *label;          /* "", "sat" (saturation), "keyframe" */
    long users, conns;
    double rate;                /* pkt/s per user */
    long size;                  /* payload bytes */
    long keyframe_ms, burst;    /* 0: no bursts */
    long seconds;
    long overload;              /* this many times the rate of row of_sat (0: not overload) */
    size_t of_sat;
    char label_buf[16];
    /* results */
    int done;
    char why[256];
    double paced_s;
    uint64_t sent, rx, reordered, bad, client_dropped, backend_rx;
    uint64_t client_media_dropped;   /* sluice rows: the clients' queues (age or bytes) */
    ts_scrape_sum_t gw_drops[MAX_REASONS]; /* sluice rows: sluice_drops_total by reason */
    int ngw_drops;
    long rcvbuf_drops;          /* host-wide UDP RcvbufErrors during the load; -1: unknown */
    ts_hist_t rtt;              /* ns */
    ts_hist_t up, down;         /* one way (ns): send to echo, echo to arrival */
    ts_pstat_t srv_open, srv_after;
    double srv_cpu_s;
    double gen_cpu_s;
    int srv_exit;
} row_t;

/* ---------------------------------------------------------------- load */

struct run;

typedef struct lg_tunnel {
    struct run *run;
    sluice_tunnel_t *t;         /* sluice rows: NULL once ended */
    uint32_t idx;
    uint32_t next_seq;
    uint32_t max_rx_seq;
    int have_rx, open;
    int64_t next_burst_ns;
} lg_tunnel_t;

typedef struct run {
    struct ev_loop *loop;
    ev_timer tick;
    row_t *row;
    sluice_client_t **clients;  /* sluice rows */
    size_t nclients;
    ts_mload_t *ml;             /* the other rows */
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

/* A payload came back to user lt: time it. */
static void record(lg_tunnel_t *lt, const uint8_t *p, size_t len)
{
    int64_t now = ts_now_ns();
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
    /* The echo thread's clock is ours (CLOCK_MONOTONIC, one host). */
    int64_t echo_ns;
    if (len >= ECHO_AT + sizeof echo_ns) {
        memcpy(&echo_ns, p + ECHO_AT, sizeof echo_ns);
        if (echo_ns >= sent_ns && echo_ns <= now) {
            ts_hist_add(&row->up, (uint64_t)(echo_ns - sent_ns));
            ts_hist_add(&row->down, (uint64_t)(now - echo_ns));
        }
    }
    if (lt->have_rx && seq <= lt->max_rx_seq) {
        row->reordered++;
    } else {
        lt->max_rx_seq = seq;
        lt->have_rx = 1;
    }
}

static void on_packet(sluice_tunnel_t *t, const uint8_t *p, size_t len, int is_signal, void *ud)
{
    record(ud, p, len);
}

static void on_mload_rx(void *ud, uint32_t user, const uint8_t *p, size_t len)
{
    run_t *r = ud;
    if (user < r->ntun)
        record(&r->tun[user], p, len);
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

static void send_one(run_t *r, lg_tunnel_t *lt, long size)
{
    if (!r->ml && !lt->t)
        return;
    uint8_t *p = r->buf;
    int64_t now = ts_now_ns();
    p[0] = 0x80;
    p[1] = MARK;
    memcpy(p + 2, &lt->idx, sizeof lt->idx);
    memcpy(p + 6, &lt->next_seq, sizeof lt->next_seq);
    memcpy(p + 10, &now, sizeof now);
    int ok = r->ml ? ts_mload_send(r->ml, lt->idx, p, (size_t)size) == 0
                   : sluice_tunnel_send(lt->t, p, (size_t)size) == SLUICE_OK;
    if (ok) {
        lt->next_seq++;
        r->row->sent++;
    }
}

/* Sends every packet due by now (bounded per tick), and the keyframe bursts
 * that are due. */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    run_t *r = (run_t *)((char *)w - offsetof(run_t, tick));
    if (!r->pacing)
        return;
    row_t *row = r->row;
    int64_t now = ts_now_ns();
    double el = (double)(now - r->t0_ns) / 1e9;
    uint64_t due = (uint64_t)(el * r->total_pps);
    for (int k = 0; r->j < due && k < MAX_PER_TICK; k++, r->j++)
        send_one(r, &r->tun[r->j % r->ntun], row->size);
    /* Behind by more than a tick's cap: the missed packets are not offered
     * later in a burst; the report shows the offered rate that was reached. */
    if (r->j < due)
        r->j = due;
    if (row->keyframe_ms > 0) {
        for (size_t i = 0; i < r->ntun; i++) {
            lg_tunnel_t *lt = &r->tun[i];
            if (now < lt->next_burst_ns)
                continue;
            for (long k = 0; k < row->burst; k++)
                send_one(r, lt, row->size);
            lt->next_burst_ns += row->keyframe_ms * 1000000;
        }
    }
}

static void run_dispose(run_t *r)
{
    for (size_t i = 0; i < r->nclients; i++)
        sluice_client_free(r->clients[i]);
    r->nclients = 0;
    free(r->clients);
    r->clients = NULL;
    ts_mload_free(r->ml);
    r->ml = NULL;
    free(r->tun);
    r->tun = NULL;
    if (r->loop) {
        ev_timer_stop(r->loop, &r->tick);
        ev_loop_destroy(r->loop);
        r->loop = NULL;
    }
}

static int run_init(run_t *r)
{
    row_t *row = r->row;
    r->loop = ev_loop_new(EVFLAG_AUTO);
    r->tun = calloc((size_t)row->users, sizeof *r->tun);
    if (!r->loop || !r->tun) {
        snprintf(r->why, sizeof r->why, "out of memory");
        return -1;
    }
    for (long i = 0; i < row->users; i++)
        r->tun[i] = (lg_tunnel_t){.run = r, .idx = (uint32_t)i};
    ev_timer_init(&r->tick, on_tick, TICK_S, TICK_S);
    ev_timer_start(r->loop, &r->tick);
    return 0;
}

/* sluice: M clients and N tunnels. Returns 0 once all are open. */
static int run_open_sluice(run_t *r, const char *ca_file, uint16_t port, const char *secret,
                           long age_ms)
{
    row_t *row = r->row;
    r->clients = calloc((size_t)row->conns, sizeof *r->clients);
    if (run_init(r) < 0 || !r->clients) {
        snprintf(r->why, sizeof r->why, "out of memory");
        return -1;
    }
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
    for (long i = 0; i < row->users; i++) {
        char user[32], username[256], credential[64];
        snprintf(user, sizeof user, "u%ld", i);
        if (sluice_cred_mint(SLUICE_HASH_SHA1, secret, strlen(secret), expiry, user, username,
                             sizeof username, credential, sizeof credential) != SLUICE_OK) {
            snprintf(r->why, sizeof r->why, "cannot mint a credential");
            return -1;
        }
        lg_tunnel_t *lt = &r->tun[i];
        /* Queues big enough that the client never drops what is offered. */
        sluice_tunnel_opts_t to = {.tenant = TENANT, .kind = "sfu", .username = username,
                                   .credential = credential,
                                   .media_queue_bytes = 4u << 20,
                                   .media_max_age_ms = age_ms ? (uint32_t)age_ms : 10000,
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

/* fwd, turn-tls, turn-udp: one transport (and allocation) per user. */
static int run_open_mload(run_t *r, ts_mload_kind_t kind, const ts_addr_t *server,
                          const ts_addr_t *peer, const char *ca_file)
{
    if (run_init(r) < 0)
        return -1;
    ts_mload_opts_t o = {.kind = kind, .users = (size_t)r->row->users, .server = server,
                         .peer = peer, .ca_file = ca_file, .username = TS_COTURN_USER,
                         .password = TS_COTURN_PASSWORD, .rx = on_mload_rx, .ud = r};
    r->ml = ts_mload_open(r->loop, &o, ts_deadline(OPEN_MS), r->why, sizeof r->why);
    if (!r->ml)
        return -1;
    r->ntun = (size_t)r->row->users;
    return 0;
}

static uint64_t client_dropped(const run_t *r)
{
    if (r->ml)
        return ts_mload_dropped(r->ml);
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

static uint64_t client_media_dropped(const run_t *r)
{
    uint64_t n = 0;
    for (size_t i = 0; i < r->ntun && !r->ml; i++) {
        sluice_tunnel_stats_t st;
        if (r->tun[i].t) {
            sluice_tunnel_stats(r->tun[i].t, &st);
            n += st.dropped_media;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- relays */

typedef struct bench {
    const char *build;
    char ca_file[PATH_MAX], key_file[PATH_MAX], fwd_bin[PATH_MAX];
    char secret[64];
    long seconds;
    long pin;                   /* the relay's CPU; -1: nothing pinned */
    long cpu_quota;             /* the relay's CPU cap in % of one CPU; 0: none */
    long age_ms;                /* sluice rows: media age limit, gateway and clients; 0: defaults */
    ts_echo_t *echo;
    int failed;
} bench_t;

typedef struct server {
    sys_t sys;
    pid_t pid;                  /* the relaying process */
    ts_gateway_t gw;
    ts_coturn_t turn;
    ts_proc_t fwd;
    ts_addr_t addr;             /* where clients go (fwd, turn-*) */
    uint16_t port;              /* sluiced's */
    char admin[64];             /* sluiced's admin listener (its /metrics) */
    char cgroup[256];           /* --cpu-quota: the relay's cgroup */
} server_t;

static int start_sluiced(bench_t *b, const row_t *row, server_t *s, char *why, size_t cap)
{
    long per_conn = (row->users + row->conns - 1) / row->conns;
    char limits[1024], age[64] = "";
    if (b->age_ms)
        snprintf(age, sizeof age, ",\"media_queue_age_ms\":%ld", b->age_ms);
    snprintf(limits, sizeof limits,
             "{\"max_connections\":%ld,\"max_tunnels\":%ld,\"max_streams\":%ld,"
             "\"max_pending_per_source\":100000,\"handshakes_per_source_s\":1000000,"
             "\"max_control_frames_s\":1000000,"
             "\"conn_idle_ms\":600000,\"tunnel_idle_ms\":600000%s}",
             row->conns + 64, row->users + 64, per_conn + 1, age);
    ts_config_t c = {
        .build = b->build,
        .listen = {"127.0.0.1:0"},
        .region = "local",
        .regions = {{.name = "local", .sfu = TS_POOL(ts_echo_addr_str(b->echo)),
                     .sfu_health = "\"probe\":\"none\""}},
        .tenants = {{.id = TENANT, .secrets = {b->secret}, .hash = "sha1", .max_ttl = 7200,
                     .regions = {"local"}, .kinds = {"sfu"}}},
        .limits_json = limits,
        .admin_json = ADMIN_JSON,
    };
    char config[PATH_MAX];
    if (ts_config_write(&c, config, sizeof config) < 0) {
        snprintf(why, cap, "cannot write a config (is %s a build dir?)", b->build);
        return -1;
    }
    if (ts_gateway_start(&s->gw, b->build, config, ts_deadline(START_MS)) < 0) {
        snprintf(why, cap, "sluiced did not get ready");
        return -1;
    }
    s->pid = s->gw.proc.pid;
    s->port = ts_addr_port(&s->gw.listen[0]);
    if (ts_gateway_admin_addr(&s->gw, s->admin, sizeof s->admin, ts_deadline(START_MS)) < 0) {
        snprintf(why, cap, "sluiced printed no admin listener");
        return -1;
    }
    return 0;
}

static int start_fwd(bench_t *b, server_t *s, int uring, char *why, size_t cap)
{
    char *argv[5];
    int n = 0;
    argv[n++] = b->fwd_bin;
    if (uring)
        argv[n++] = "--uring";
    argv[n++] = (char *)ts_echo_addr_str(b->echo);
    argv[n++] = "900";
    argv[n] = NULL;
    char line[128];
    long port = 0;
    if (ts_proc_spawn(&s->fwd, "udp_fwd", argv, 0) < 0 ||
        ts_proc_wait_line(&s->fwd, "udp_fwd ready ", ts_deadline(START_MS), line,
                          sizeof line) < 0 ||
        ts_parse_long(line + strlen("udp_fwd ready "), 1, 65535, &port) != 0) {
        snprintf(why, cap, "%.150s did not get ready (make bench builds it)", b->fwd_bin);
        return -1;
    }
    s->pid = s->fwd.pid;
    ts_addr_loopback(&s->addr, AF_INET, (uint16_t)port);
    return 0;
}

static int start_coturn(bench_t *b, server_t *s, int tls, char *why, size_t cap)
{
    ts_coturn_opts_t o = {.relay_ports = COTURN_RELAY_PORTS};
    if (tls) {
        o.cert = b->ca_file; /* the dev certificate is self-signed: its own CA */
        o.key = b->key_file;
    }
    if (ts_coturn_start_opts(&s->turn, &o, ts_deadline(START_MS)) < 0) {
        snprintf(why, cap, "turnserver did not get ready");
        return -1;
    }
    s->pid = s->turn.proc.pid;
    s->addr = tls ? s->turn.tls_listen : s->turn.listen;
    return 0;
}

static int server_start(bench_t *b, const row_t *row, server_t *s, char *why, size_t cap)
{
    memset(s, 0, sizeof *s);
    s->sys = row->sys;
    s->fwd.out_fd = s->fwd.in_fd = s->fwd._pidfd = -1;
    int rc;
    switch (row->sys) {
    case SYS_FWD:
    case SYS_FWD_URING:
        rc = start_fwd(b, s, row->sys == SYS_FWD_URING, why, cap);
        break;
    case SYS_SLUICE:
    case SYS_SLUICE10:
        rc = start_sluiced(b, row, s, why, cap);
        break;
    default:
        rc = start_coturn(b, s, row->sys == SYS_TURN_TLS, why, cap);
    }
    if (rc == 0 && b->pin >= 0)
        rc = ts_host_pin_threads(s->pid, b->pin, why, cap);
    if (rc == 0 && b->cpu_quota)
        rc = ts_host_cpu_quota(s->pid, (unsigned)b->cpu_quota, s->cgroup, sizeof s->cgroup, why,
                               cap);
    return rc;
}

/* Stops the relay: its exit status (0 clean), or -1. */
static int server_stop(server_t *s)
{
    int code = -1;
    switch (s->sys) {
    case SYS_FWD:
    case SYS_FWD_URING:
        if (s->fwd.pid > 0)
            code = ts_proc_stop(&s->fwd, ts_deadline(STOP_MS));
        ts_proc_dispose(&s->fwd);
        break;
    case SYS_SLUICE:
    case SYS_SLUICE10:
        if (s->gw.proc.pid > 0)
            code = ts_gateway_stop(&s->gw, ts_deadline(STOP_MS));
        ts_gateway_dispose(&s->gw);
        break;
    default:
        if (s->turn.proc.pid > 0)
            code = ts_coturn_stop(&s->turn, ts_deadline(STOP_MS));
        ts_coturn_dispose(&s->turn);
    }
    ts_host_cpu_quota_remove(s->cgroup);
    s->cgroup[0] = '\0';
    return code;
}

static void run_row(bench_t *b, row_t *row)
{
    static run_t r;
    static server_t srv;
    memset(&r, 0, sizeof r);
    r.row = row;
    ts_hist_init(&row->rtt);
    ts_hist_init(&row->up);
    ts_hist_init(&row->down);
    row->srv_exit = -1;
    row->done = 0;
    row->why[0] = 0;
    row->sent = row->rx = row->reordered = row->bad = row->client_dropped = 0;
    row->backend_rx = 0;
    if (server_start(b, row, &srv, row->why, sizeof row->why) < 0)
        goto out;
    int rc;
    switch (row->sys) {
    case SYS_FWD:
    case SYS_FWD_URING:
        rc = run_open_mload(&r, TS_MLOAD_UDP, &srv.addr, NULL, NULL);
        break;
    case SYS_TURN_TLS:
    case SYS_TURN_UDP:
        rc = run_open_mload(&r, row->sys == SYS_TURN_TLS ? TS_MLOAD_TURN_TLS
                                                         : TS_MLOAD_TURN_UDP,
                            &srv.addr, ts_echo_addr(b->echo), b->ca_file);
        break;
    default:
        rc = run_open_sluice(&r, b->ca_file, srv.port, b->secret, b->age_ms);
    }
    if (rc < 0) {
        snprintf(row->why, sizeof row->why, "%s", r.why);
        goto out;
    }
    uint64_t backend0 = ts_echo_packets(b->echo);
    long rcvbuf0 = ts_host_udp_rcvbuf_errors();
    double gen0 = ts_host_self_cpu_s();
    if (ts_pstat_read(srv.pid, &row->srv_open) < 0) {
        snprintf(row->why, sizeof row->why, "cannot read the relay's /proc entries");
        goto out;
    }

    /* Open loop for S seconds. */
    r.total_pps = (double)row->users * row->rate;
    r.t0_ns = ts_now_ns();
    for (size_t i = 0; i < r.ntun; i++) /* bursts staggered over the period */
        r.tun[i].next_burst_ns = r.t0_ns + (int64_t)i * row->keyframe_ms * 1000000 /
                                               (int64_t)r.ntun;
    r.pacing = 1;
    int64_t end = ts_now_ms() + row->seconds * 1000;
    while (ts_now_ms() < end && r.ended == 0)
        ev_run(r.loop, EVRUN_ONCE);
    r.pacing = 0;
    row->paced_s = (double)(ts_now_ns() - r.t0_ns) / 1e9;
    row->gen_cpu_s = ts_host_self_cpu_s() - gen0;

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
    if (ts_pstat_read(srv.pid, &row->srv_after) < 0) {
        snprintf(row->why, sizeof row->why, "cannot read the relay's /proc entries");
        goto out;
    }
    row->backend_rx = ts_echo_packets(b->echo) - backend0;
    long rcvbuf1 = ts_host_udp_rcvbuf_errors();
    row->rcvbuf_drops = rcvbuf0 < 0 || rcvbuf1 < 0 ? -1 : rcvbuf1 - rcvbuf0;
    row->client_dropped = client_dropped(&r);
    row->client_media_dropped = client_media_dropped(&r);
    row->ngw_drops = 0;
    if (srv.admin[0]) {
        char url[128], why[256];
        snprintf(url, sizeof url, "http://%s/metrics", srv.admin);
        row->ngw_drops = ts_scrape_sum_by(url, "sluice_drops_total", "reason", row->gw_drops,
                                          MAX_REASONS, 5000, why, sizeof why);
        if (row->ngw_drops < 0)
            fprintf(stderr, "bench_load: %s\n", why);
    }
    if (r.ml)
        row->bad += ts_mload_bad(r.ml);
    row->srv_cpu_s = (double)(row->srv_after.utime_ns + row->srv_after.stime_ns -
                              row->srv_open.utime_ns - row->srv_open.stime_ns) / 1e9;
    if (r.ended) {
        snprintf(row->why, sizeof row->why, "%s", r.why);
        goto out;
    }
    row->done = 1;
out:
    run_dispose(&r);
    row->srv_exit = server_stop(&srv);
    if (!row->done || row->srv_exit != 0)
        b->failed = 1;
}

static double loss_pct(const row_t *w)
{
    return w->sent ? 100.0 * (double)(w->sent - (w->rx < w->sent ? w->rx : w->sent)) /
                         (double)w->sent
                   : 100.0;
}

/* The highest offered rate with loss <= SAT_LOSS for row's system and size:
 * doubling from SAT_START while it holds (and the generator offered at least
 * 95 % of the target, and RTT p99 stayed under SAT_P99_MS: over TLS a relay
 * that cannot keep up queues rather than drops, and the drain would still
 * deliver seconds-old packets), then bisection; at most SAT_STEPS rows. *row
 * ends as the best step (not done when even SAT_START failed). */
static void saturate(bench_t *b, row_t *row)
{
    row_t best = *row, step = *row;
    double lo = 0, hi = 0, rate = SAT_START;
    best.done = 0;
    snprintf(best.why, sizeof best.why, "over %.1f %% loss already at %.0f msg/s", SAT_LOSS,
             SAT_START);
    for (int i = 0; i < SAT_STEPS; i++) {
        step = *row;
        step.rate = rate / (double)row->users;
        printf("bench_load: saturate %s: %.0f msg/s ...\n", sys_names[row->sys], rate);
        int was_failed = b->failed;
        run_row(b, &step); /* a step that fails is an answer, not a failed run */
        b->failed = was_failed;
        double offered = step.paced_s > 0 ? (double)step.sent / step.paced_s : 0;
        int ok = step.done && loss_pct(&step) <= SAT_LOSS && offered >= 0.95 * rate &&
                 (double)ts_hist_percentile(&step.rtt, 99) <= SAT_P99_MS * 1e6;
        if (ok) {
            best = step;
            lo = rate;
        } else {
            hi = rate;
        }
        if (hi == 0) {
            if (rate * 2 > MAX_TOTAL_PPS)
                break;
            rate *= 2;
        } else {
            if (lo == 0 || hi - lo <= 0.1 * lo)
                break;
            rate = (lo + hi) / 2;
        }
    }
    if (!best.done)
        b->failed = 1;
    *row = best;
}

/* ---------------------------------------------------------------- report */

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* Offered msg/s the row aims at: the paced rate and the keyframe bursts. */
static double row_target(const row_t *w)
{
    double t = (double)w->users * w->rate;
    if (w->keyframe_ms > 0)
        t += (double)w->users * (double)w->burst * 1000.0 / (double)w->keyframe_ms;
    return t;
}

/* A row's name in the report: the system, then its label ("sat", ...). */
static const char *row_name(const row_t *w, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s", sys_names[w->sys], w->label[0] ? ", " : "", w->label);
    return buf;
}

/* Each direction's delay, from the echo's receive time (one host, one
 * clock): where the packets waited. */
static void one_way(char *out, size_t cap, size_t *pos, const row_t *rows, size_t nrows)
{
    ts_appendf(out, cap, pos,
               "\nOne-way delay (ms) of the packets that came back: up = from the send call "
               "to the echo, down = from the echo to arrival.\n\n"
               "| system | size | offered msg/s | up p50 / p99 / max | down p50 / p99 / max |\n"
               "|---|---|---|---|---|\n");
    for (size_t i = 0; i < nrows; i++) {
        const row_t *w = &rows[i];
        if (!w->done || !w->up.count)
            continue;
        char name[64];
        ts_appendf(out, cap, pos,
                   "| %s | %ld B | %.0f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f |\n",
                   row_name(w, name, sizeof name), w->size,
                   (double)w->sent / w->paced_s, ms(ts_hist_percentile(&w->up, 50)),
                   ms(ts_hist_percentile(&w->up, 99)), ms(w->up.max),
                   ms(ts_hist_percentile(&w->down, 50)), ms(ts_hist_percentile(&w->down, 99)),
                   ms(w->down.max));
    }
}

/* The relay's CPU per relayed packet, split by where it ran. On loopback the
 * kernel's share includes delivering what the relay sends into the peer's
 * socket (the softirq runs in the sender's system call), for every system
 * alike: a relay's kernel microseconds per packet are a floor that no
 * user-space change removes. */
static void cpu_split(char *out, size_t cap, size_t *pos, const row_t *rows, size_t nrows)
{
    ts_appendf(out, cap, pos,
               "\nRelay CPU per relayed packet (µs), split into user space (utime) and the "
               "kernel (stime, which on loopback includes delivery into the receiving "
               "socket):\n\n"
               "| system | size | offered msg/s | user | kernel | total | kernel share |\n"
               "|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nrows; i++) {
        const row_t *w = &rows[i];
        double relayed = (double)(w->backend_rx + w->rx);
        if (!w->done || relayed <= 0)
            continue;
        double user = (double)(w->srv_after.utime_ns - w->srv_open.utime_ns) / 1e3 / relayed;
        double kern = (double)(w->srv_after.stime_ns - w->srv_open.stime_ns) / 1e3 / relayed;
        char name[64];
        ts_appendf(out, cap, pos, "| %s | %ld B | %.0f | %.2f | %.2f | %.2f | %.0f %% |\n",
                   row_name(w, name, sizeof name), w->size,
                   (double)w->sent / w->paced_s, user, kern, user + kern,
                   user + kern > 0 ? 100.0 * kern / (user + kern) : 0.0);
    }
}

/* Where the packets of each sluice row that lost any went: the clients'
 * queues, each of sluiced's drop reasons (its /metrics), and what no counter
 * explains (sent - echoed - counted; kernel drops on the way show up there
 * and in the host's RcvbufErrors). */
static void loss_by_reason(char *out, size_t cap, size_t *pos, const row_t *rows, size_t nrows)
{
    int head = 0;
    for (size_t i = 0; i < nrows; i++) {
        const row_t *w = &rows[i];
        if (!w->done || (w->sys != SYS_SLUICE && w->sys != SYS_SLUICE10) || w->rx >= w->sent)
            continue;
        if (!head) {
            ts_appendf(out, cap, pos,
                       "\nLoss by reason (sluice rows that lost packets; sluiced's counts are "
                       "`sluice_drops_total` by reason, both directions):\n\n"
                       "| system | offered msg/s | sent | echoed | client queue | sluiced "
                       "drops | host UDP RcvbufErrors | not counted |\n|---|---|---|---|---|---|"
                       "---|---|\n");
            head = 1;
        }
        char gw[512] = "";
        size_t gp = 0;
        double counted = (double)w->client_media_dropped;
        for (int k = 0; k < w->ngw_drops; k++) {
            if (w->gw_drops[k].sum <= 0)
                continue;
            ts_appendf(gw, sizeof gw, &gp, "%s%s %.0f", gp ? ", " : "", w->gw_drops[k].value,
                       w->gw_drops[k].sum);
            counted += w->gw_drops[k].sum;
        }
        double lost = (double)(w->sent - w->rx);
        char name[64];
        row_name(w, name, sizeof name);
        ts_appendf(out, cap, pos,
                   "| %s | %.0f | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %s | %ld | %.0f |\n",
                   name, (double)w->sent / w->paced_s, w->sent, w->rx, w->client_media_dropped,
                   gp ? gw : (w->ngw_drops < 0 ? "(no scrape)" : "none"), w->rcvbuf_drops,
                   lost > counted ? lost - counted : 0);
    }
}

static void report(const bench_t *b, const row_t *rows, size_t nrows, const char *path)
{
    static char out[131072];
    size_t pos = 0, cap = sizeof out;
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    ts_appendf(out, cap, &pos, "# Relays side by side: open loop through a UDP echo (make bench)\n\n");
    ts_appendf(out, cap, &pos, "- date: %s\n", date);
    ts_report_machine(out, cap, &pos);
    if (b->pin >= 0)
        ts_appendf(out, cap, &pos,
                   "- pinning: every thread of the relay on CPU %ld; generator and echo on "
                   "CPU %d\n",
                   b->pin, b->pin == 0 ? 1 : 0);
    else
        ts_appendf(out, cap, &pos, "- pinning: none\n");
    if (b->cpu_quota)
        ts_appendf(out, cap, &pos,
                   "- the relay capped at %ld %% of one CPU (a CPU cgroup: 1 ms of CPU in "
                   "every %.1f ms), so that the generator can offer it several times what it "
                   "can relay\n",
                   b->cpu_quota, b->cpu_quota >= 100 ? 1.0 : 100.0 / (double)b->cpu_quota);
    if (b->age_ms)
        ts_appendf(out, cap, &pos,
                   "- media age limit %ld ms: sluiced's `limits.media_queue_age_ms` and each "
                   "client tunnel's `media_max_age_ms`\n",
                   b->age_ms);
    ts_appendf(out, cap, &pos,
               "- method: each row a fresh relay on loopback, N users each sending at "
               "(offered / N) pkt/s to a UDP echo thread through it, %ld s open loop then a "
               "drain; fwd = a plain C UDP forwarder, sluice = sluiced (libsluice-shim "
               "clients, 1 tunnel per TLS connection; sluice10: 10 per connection), "
               "turn-tls / turn-udp = coturn (ChannelData after Allocate and ChannelBind, "
               "one allocation per user)\n",
               b->seconds);
    ts_appendf(out, cap, &pos,
               "- relayed = packets the relay forwarded in both directions (backend received "
               "+ client received); CPU = the relay process's utime + stime over the load "
               "and the drain (all threads); generator = this process's CPU as a share of "
               "one core\n\n");
    ts_appendf(out, cap, &pos,
               "| system | users / conns | size | offered msg/s (target) | echoed msg/s | loss "
               "(up / down) | RTT p50 / p90 / p99 / p99.9 / max (ms) | relay CPU | relayed pkt "
               "per relay CPU-s | relay RSS open / after / peak (MB) | generator CPU |\n");
    ts_appendf(out, cap, &pos, "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nrows; i++) {
        const row_t *w = &rows[i];
        double target = row_target(w);
        char name[64];
        row_name(w, name, sizeof name);
        if (!w->done) {
            ts_appendf(out, cap, &pos, "| %s | %ld / %ld | %ld B | (%.0f) | failed: %s |\n",
                       name, w->users, w->conns, w->size, target, w->why);
            continue;
        }
        const ts_hist_t *h = &w->rtt;
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
        if (w->srv_cpu_s > 0)
            snprintf(per_cpu, sizeof per_cpu, "%.0fk", relayed / w->srv_cpu_s / 1000.0);
        else
            snprintf(per_cpu, sizeof per_cpu, "n/a");
        ts_appendf(out, cap, &pos,
                   "| %s | %ld / %ld | %ld B | %.0f (%.0f) | %.0f | %.3f %% (%.3f / %.3f) | "
                   "%.2f / %.2f / %.2f / %.2f / %.2f | %.2f s (%.0f %%) | %s | %.1f / %.1f / "
                   "%.1f | %.0f %% |\n",
                   name, w->users, w->conns, w->size, (double)w->sent / w->paced_s, target,
                   (double)w->rx / w->paced_s, loss_pct(w), up, down,
                   ms(ts_hist_percentile(h, 50)), ms(ts_hist_percentile(h, 90)),
                   ms(ts_hist_percentile(h, 99)), ms(ts_hist_percentile(h, 99.9)), ms(h->max),
                   w->srv_cpu_s, 100.0 * w->srv_cpu_s / w->paced_s, per_cpu,
                   w->srv_open.rss_kb / 1024.0, w->srv_after.rss_kb / 1024.0,
                   w->srv_after.hwm_kb / 1024.0, 100.0 * w->gen_cpu_s / w->paced_s);
    }
    one_way(out, cap, &pos, rows, nrows);
    cpu_split(out, cap, &pos, rows, nrows);
    loss_by_reason(out, cap, &pos, rows, nrows);
    for (size_t i = 0; i < nrows; i++) {
        const row_t *w = &rows[i];
        const char *n = sys_names[w->sys];
        long rate = (long)((double)w->users * w->rate + 0.5);
        if (w->done && (w->bad || w->client_dropped || w->reordered))
            ts_appendf(out, cap, &pos,
                       "\n%s at %ld msg/s, %ld B: %" PRIu64 " packets did not parse, the "
                       "client dropped %" PRIu64 ", %" PRIu64 " arrived reordered\n",
                       n, rate, w->size, w->bad, w->client_dropped, w->reordered);
        if (w->done && w->rcvbuf_drops != 0)
            ts_appendf(out, cap, &pos,
                       "\n%s at %ld msg/s, %ld B: the host's UDP receive buffers dropped %ld "
                       "datagrams during the load (/proc/net/snmp RcvbufErrors, host-wide)\n",
                       n, rate, w->size, w->rcvbuf_drops);
        if (w->srv_exit != 0)
            ts_appendf(out, cap, &pos, "\n%s at %ld msg/s, %ld B: %s exit %d\n", n, rate,
                       w->size, relay_names[w->sys], w->srv_exit);
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
            "usage: bench_load --build DIR [--seconds S] [--out FILE] [--pin CPU|none]\n"
            "                  [--system LIST] [--users N] [--rates LIST] [--sizes LIST]\n"
            "                  [--profile audio|video] [--video-rate PPS] [--keyframe MS]\n"
            "                  [--burst N] [--saturate] [--full] [--cpu-quota PCT]\n"
            "                  [--age MS] [--overload LIST]\n"
            "  --seconds S      load time of each row, 1..60 (3)\n"
            "  --out FILE       report file (DIR/bench/load.md)\n"
            "  --pin CPU|none   the relay's CPU; the generator takes another (0 with >= 2 CPUs)\n"
            "  --system LIST    of fwd,fwd-uring,sluice,sluice10,turn-tls,turn-udp\n"
            "                   (all but fwd-uring)\n"
            "  --users N        1..%d (100)\n"
            "  --rates LIST     offered echoed msg/s, all users together (5000,20000)\n"
            "  --sizes LIST     payload bytes, %d..%d (200)\n"
            "  --profile P      audio: 200 B at 50 pkt/s per user; video: 1200 B at --video-rate\n"
            "  --video-rate PPS per user, for --profile video (100)\n"
            "  --keyframe MS    on 1200 B rows, a burst every MS ms per user (off)\n"
            "  --burst N        packets in a burst, 1..1000 (150)\n"
            "  --saturate       add one saturation row per system (<= %.1f %% loss, p99 <= 100 ms)\n"
            "  --full           rates 5000,20000,50000, sizes 200,1200, and --saturate\n"
            "  --cpu-quota PCT  cap the relay at PCT %% of one CPU (a CPU cgroup; root)\n"
            "  --age MS         sluice rows: media age limit of sluiced and the clients\n"
            "  --overload LIST  sluice rows: after each saturation row, rows at these\n"
            "                   multiples of its rate (e.g. 2,6; implies --saturate)\n",
            MAX_USERS, HDR_LEN, MAX_SIZE, SAT_LOSS);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* "a,b,c" of longs in [lo, hi] into out (at most MAX_LIST). Count, or -1. */
static int parse_list(const char *s, long lo, long hi, long *out)
{
    char buf[256];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == MAX_LIST || ts_parse_long(t, lo, hi, &out[n]) != 0)
            return -1;
        n++;
    }
    return n ? n : -1;
}

static int parse_systems(const char *s, int *on)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    memset(on, 0, SYS_N * sizeof *on);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < SYS_N; i++)
            if (strcmp(t, sys_names[i]) == 0)
                on[i] = found = 1;
        if (!found)
            return -1;
    }
    return 0;
}

/* The echo thread's socket gets a receive buffer of ECHO_BUF (the default
 * 208 KiB holds ~90 datagrams of 1,200 B: a burst, or the echo thread waiting
 * for its CPU, would overflow it and show as the relay's uplink loss). The
 * hook runs on the echo's own thread, at its first datagram (main sends one
 * before the first row). It echoes every load packet itself, with its receive
 * time written after the header, so that each direction's delay is known;
 * anything else it leaves to the echo. */
#define ECHO_BUF (4 << 20)
static int echo_hook(void *ud, int fd, const uint8_t *p, size_t len, const ts_addr_t *src)
{
    static int done;
    if (!done) {
        int v = ECHO_BUF;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
        done = 1;
    }
    int64_t now = ts_now_ns();
    uint8_t out[MAX_SIZE];
    if (len < ECHO_AT + sizeof now || len > sizeof out || p[0] != 0x80 || p[1] != MARK)
        return 0;
    memcpy(out, p, len);
    memcpy(out + ECHO_AT, &now, sizeof now);
    (void)sendto(fd, out, len, 0, (const struct sockaddr *)&src->sa, src->len);
    return 1;
}

static int echo_warm(ts_echo_t *e)
{
    int fd = ts_udp_bind(AF_INET, NULL);
    uint8_t probe[4] = {0x80, 0, 0, 0}, reply[16];
    int ok = fd >= 0 && ts_udp_send(fd, ts_echo_addr(e), probe, sizeof probe) == 0 &&
             ts_udp_recv(fd, reply, sizeof reply, ts_deadline(START_MS), NULL) == sizeof probe;
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

/* The relay's CPU, and the generator pinned to another. */
static int pin_self(bench_t *b)
{
    if (b->pin < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(b->pin == 0 ? 1 : 0, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"build", required_argument, NULL, 'b'},
        {"seconds", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"pin", required_argument, NULL, 'c'},
        {"system", required_argument, NULL, 'y'},
        {"users", required_argument, NULL, 'n'},
        {"rates", required_argument, NULL, 'r'},
        {"sizes", required_argument, NULL, 'z'},
        {"profile", required_argument, NULL, 'p'},
        {"video-rate", required_argument, NULL, 'v'},
        {"keyframe", required_argument, NULL, 'k'},
        {"burst", required_argument, NULL, 'u'},
        {"saturate", no_argument, NULL, 'S'},
        {"full", no_argument, NULL, 'F'},
        {"cpu-quota", required_argument, NULL, 'Q'},
        {"age", required_argument, NULL, 'A'},
        {"overload", required_argument, NULL, 'O'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static bench_t b = {.seconds = 3};
    static row_t rows[MAX_ROWS];
    const char *out = NULL, *profile = NULL;
    long users = 100, rates[MAX_LIST] = {5000, 20000}, sizes[MAX_LIST] = {200};
    long video_rate = 100, keyframe = 0, burst = 150;
    long overload[MAX_LIST];
    int nrates = 2, nsizes = 1, sat = 0, full = 0, given_rates = 0, given_sizes = 0, c;
    int noverload = 0;
    int on[SYS_N] = {1, 0, 1, 1, 1, 1}; /* fwd-uring only when asked for */
    b.pin = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 0 : -1;
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
            if (strcmp(optarg, "none") == 0)
                b.pin = -1;
            else
                bad = ts_parse_long(optarg, 0, CPU_SETSIZE - 1, &b.pin);
            break;
        case 'y':
            bad = parse_systems(optarg, on) < 0;
            break;
        case 'n':
            bad = ts_parse_long(optarg, 1, MAX_USERS, &users);
            break;
        case 'r':
            bad = (nrates = parse_list(optarg, 1, (long)MAX_TOTAL_PPS, rates)) < 0;
            given_rates = 1;
            break;
        case 'z':
            bad = (nsizes = parse_list(optarg, HDR_LEN, MAX_SIZE, sizes)) < 0;
            given_sizes = 1;
            break;
        case 'p':
            profile = optarg;
            bad = strcmp(profile, "audio") != 0 && strcmp(profile, "video") != 0;
            break;
        case 'v':
            bad = ts_parse_long(optarg, 1, (long)MAX_TOTAL_PPS, &video_rate);
            break;
        case 'k':
            bad = ts_parse_long(optarg, 10, 60000, &keyframe);
            break;
        case 'u':
            bad = ts_parse_long(optarg, 1, 1000, &burst);
            break;
        case 'S':
            sat = 1;
            break;
        case 'F':
            full = sat = 1;
            break;
        case 'Q':
            bad = ts_parse_long(optarg, 1, 1000, &b.cpu_quota);
            break;
        case 'A':
            bad = ts_parse_long(optarg, 1, 60000, &b.age_ms);
            break;
        case 'O':
            bad = (noverload = parse_list(optarg, 1, 20, overload)) < 0;
            sat = 1;
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
    if (full) {
        static const long fr[] = {5000, 20000, 50000}, fs[] = {200, 1200};
        if (!given_rates)
            memcpy(rates, fr, sizeof fr), nrates = 3;
        if (!given_sizes)
            memcpy(sizes, fs, sizeof fs), nsizes = 2;
    }
    if (profile) {
        int video = strcmp(profile, "video") == 0;
        sizes[0] = video ? 1200 : 200;
        rates[0] = users * (video ? video_rate : 50);
        nsizes = nrates = 1;
    }
    /* Rows grouped by load, the systems side by side within each. */
    size_t nrows = 0;
    for (int zi = 0; zi < nsizes; zi++)
        for (int ri = 0; ri < nrates; ri++)
            for (int si = 0; si < SYS_N; si++) {
                if (!on[si] || nrows == MAX_ROWS)
                    continue;
                if ((double)rates[ri] > MAX_TOTAL_PPS) {
                    fprintf(stderr, "bench_load: a rate is over %.0f\n", MAX_TOTAL_PPS);
                    return 2;
                }
                int kf = keyframe > 0 && sizes[zi] == 1200;
                rows[nrows++] = (row_t){
                    .sys = (sys_t)si, .label = kf ? "keyframe" : "", .users = users,
                    .conns = si == SYS_SLUICE10 ? (users + 9) / 10 : users,
                    .rate = (double)rates[ri] / (double)users, .size = sizes[zi],
                    .keyframe_ms = kf ? keyframe : 0, .burst = burst, .seconds = b.seconds};
            }
    size_t first_sat = nrows;
    for (int si = 0; sat && si < SYS_N; si++)
        if (on[si] && nrows < MAX_ROWS)
            rows[nrows++] = (row_t){
                .sys = (sys_t)si, .label = "sat", .users = users,
                .conns = si == SYS_SLUICE10 ? (users + 9) / 10 : users, .size = sizes[0],
                .seconds = b.seconds < 3 ? b.seconds : 3};
    /* Overload rows: after the saturation rows, each sluice system at
     * multiples of its saturation rate, for the full S seconds. */
    size_t nsat = nrows;
    for (size_t si = first_sat; si < nsat; si++) {
        if (rows[si].sys != SYS_SLUICE && rows[si].sys != SYS_SLUICE10)
            continue;
        for (int k = 0; k < noverload && nrows < MAX_ROWS; k++) {
            row_t *w = &rows[nrows++];
            *w = rows[si];
            w->overload = overload[k];
            w->of_sat = si;
            w->seconds = b.seconds;
            snprintf(w->label_buf, sizeof w->label_buf, "%ldx sat", overload[k]);
        }
    }
    for (size_t i = nsat; i < nrows; i++)
        rows[i].label = rows[i].label_buf; /* rows[] is static: the pointers stay */
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (pin_self(&b) < 0) {
        fprintf(stderr, "bench_load: cannot pin to CPU %d: %s (try --pin none)\n",
                b.pin == 0 ? 1 : 0, strerror(errno));
        return 1;
    }
    if ((on[SYS_TURN_TLS] || on[SYS_TURN_UDP]) && !ts_coturn_available())
        fprintf(stderr, "bench_load: %s is missing: the turn rows will fail\n", TS_COTURN_BIN);

    uint8_t raw[16];
    char out_path[PATH_MAX];
    if (RAND_bytes(raw, sizeof raw) != 1 ||
        ts_build_path(b.build, "dev/cert.pem", b.ca_file, sizeof b.ca_file) < 0 ||
        ts_build_path(b.build, "dev/key.pem", b.key_file, sizeof b.key_file) < 0 ||
        ts_build_path(b.build, FWD_REL, b.fwd_bin, sizeof b.fwd_bin) < 0 ||
        (out ? snprintf(out_path, sizeof out_path, "%s", out)
             : ts_build_path(b.build, "bench/load.md", out_path, sizeof out_path)) < 0) {
        fprintf(stderr, "bench_load: no randomness, or paths too long\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(b.secret + 2 * i, 3, "%02x", raw[i]);

    b.echo = ts_echo_start_hooked(AF_INET, echo_hook, NULL);
    if (!b.echo || echo_warm(b.echo) < 0) {
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
        if (w->overload) {
            const row_t *s = &rows[w->of_sat];
            if (!s->done) {
                snprintf(w->why, sizeof w->why, "no saturation rate to overload");
                b.failed = 1;
                continue;
            }
            w->rate = s->rate * (double)w->overload;
        } else if (i >= first_sat) {
            saturate(&b, w);
            continue;
        }
        printf("bench_load: %s: %ld users over %ld connections, %ld B, %.0f msg/s, %ld s ...\n",
               sys_names[w->sys], w->users, w->conns, w->size, (double)w->users * w->rate,
               w->seconds);
        run_row(&b, w);
    }
    report(&b, rows, nrows, out_path);
    ts_echo_stop(b.echo);
    return b.failed ? 1 : 0;
}
