/*
 * bench_mem.c — `make bench`: how much memory sluiced holds per idle
 * client connection and per idle tunnel, measured on the real binary.
 *
 *   bench_mem --build DIR [--conns N] [--tunnels M] [--clients K]
 *             [--max-capsule BYTES] [--out FILE]
 *
 * The scale is --conns 1000 --tunnels 10000 (about 12,100
 * descriptors in sluiced; both processes raise their soft limit to the hard
 * one, which must allow it).
 *
 * Starts sluiced (port 0, built-in echo, limits generous enough that nothing
 * is refused) and reads its memory from /proc/PID/status (VmRSS, RssAnon) and
 * /proc/PID/smaps_rollup (Private_Dirty) after each step, the load of every
 * step staying open through the ones after it:
 *
 *   baseline       the ready gateway
 *   bare TCP       N connections that send nothing: accepted, waiting for
 *                  a ClientHello (the gateway's fd count proves the accept)
 *   idle HTTP/2    N more connections with TLS done, the HTTP/2 preface and
 *                  SETTINGS sent, and the gateway's SETTINGS ACK received
 *                  (proof that the gateway's nghttp2 session processed them);
 *                  no stream
 *   idle tunnels   M tunnels on K libsluice-shim clients, each answered 200
 *                  and then left without a packet
 *   closed         every client gone (the gateway's fd count back to the
 *                  baseline), then up to RECOVER_MS for the RSS to come back
 *                  within RECOVER_PCT % of round 1's baseline: what the
 *                  gateway keeps after the load
 *
 * The same steps then run a second time on the same gateway, to show how
 * much of what the first round left resident is reused.
 *
 * Each step waits for its condition with a deadline, then lets the process
 * settle for SETTLE_MS (a fixed pause only after the condition holds, so that
 * work the last packets triggered has finished before RSS is read). The whole
 * run (both rounds) is bounded by RUN_MS. The report goes to stdout and to FILE (default
 * DIR/bench/report.txt).
 *
 * Deltas are resident pages: memory malloc'd but never touched (most of a
 * tunnel's 64 KiB capsule reader buffer) does not count, and kernel memory
 * (socket structures and buffers) is not in RSS at all.
 *
 * Exit status: 0 when every step reached its condition and sluiced exited 0;
 * 1 otherwise; 2 for bad arguments.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../../gateway/conn.h"
#include "../../gateway/tunnel.h"
#include "../support/ts_config.h"
#include "../support/ts_net.h"
#include "../support/ts_pstat.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"
#include "sluice_shim.h"

#define BENCH_TENANT "bench"
#define RUN_MS 300000     /* every step's deadline falls inside this */
#define START_MS 15000
#define STOP_MS 10000
#define SETTLE_MS 200     /* after a condition holds, before RSS is read */
/* Idle steps settle longer than a connection's quiet time (CONN_QUIET_NS,
 * 1 s), plus one health tick (write_stall_ms / 4 + 1 ms = 501 ms with this
 * config), plus the server's gap between two trims for released buffers
 * (5 s) and one tick of its trim timer (1 s): by then every idle connection
 * has released its TLS buffers and the heap is trimmed. */
#define IDLE_SETTLE_MS 7500
#define CFG_WRITE_STALL_MS 2000
/* After the load: how long the RSS may take to come back (the gateway
 * trims its heap a little after its load fell: server.c), and how close. */
#define RECOVER_MS 10000
#define RECOVER_PCT 10
#define CFG_RESUME_GRACE_MS 1000 /* parked tunnels hold their sockets this long */
#define POLL_MS 10        /* how often /proc is re-read while waiting */
#define RAW_BATCH 50      /* TLS handshakes in flight at once */
#define CRED_TTL_S 1800

/* The config's queue sizes (the defaults, written explicitly so the report
 * states what was measured); max_capsule is an option, default 65535. */
#define CFG_MEDIA_QUEUE 65536
#define CFG_SIGNAL_QUEUE 65536

typedef struct bench_opts {
    const char *build;
    const char *out;
    long conns;   /* N: bare TCP connections, and as many idle HTTP/2 ones */
    long tunnels; /* M */
    long clients; /* K: shim clients carrying the tunnels */
    long max_capsule;
} bench_opts_t;

/* ---------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_mem --build DIR [--conns N] [--tunnels M] [--clients K] "
               "[--max-capsule BYTES] [--out FILE]\n"
               "  --conns N    bare TCP connections, and as many idle HTTP/2 ones, 1..5000 (1000)\n"
               "  --tunnels M  idle tunnels, 1..10000 (1000)\n"
               "  --clients K  shim connections carrying the tunnels, 1..1000 (10)\n"
               "  --max-capsule BYTES  the gateway's limits.max_capsule, 1200..1048576 (65535)\n"
               "  --out FILE   report file (DIR/bench/report.txt)\n");
}

static int parse_args(int argc, char **argv, bench_opts_t *o)
{
    static const struct option longopts[] = {
        {"build", required_argument, NULL, 'b'},
        {"conns", required_argument, NULL, 'n'},
        {"tunnels", required_argument, NULL, 'm'},
        {"clients", required_argument, NULL, 'k'},
        {"max-capsule", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (bench_opts_t){.conns = 1000, .tunnels = 1000, .clients = 10, .max_capsule = 65535};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'b':
            o->build = optarg;
            break;
        case 'n':
            bad = ts_parse_long(optarg, 1, 5000, &o->conns);
            break;
        case 'm':
            bad = ts_parse_long(optarg, 1, 10000, &o->tunnels);
            break;
        case 'k':
            bad = ts_parse_long(optarg, 1, 1000, &o->clients);
            break;
        case 'c':
            bad = ts_parse_long(optarg, 1200, 1048576, &o->max_capsule);
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "bench_mem: bad value for an option\n");
            usage(stderr);
            return -1;
        }
    }
    if (!o->build || optind != argc) {
        usage(stderr);
        return -1;
    }
    if (o->clients > o->tunnels) {
        fprintf(stderr, "bench_mem: --clients %ld is more than --tunnels %ld\n", o->clients,
                o->tunnels);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- /proc */

typedef struct mem_sample {
    long rss_kb;           /* VmRSS */
    long anon_kb;          /* RssAnon */
    long dirty_kb;         /* Private_Dirty (smaps_rollup); -1 when not available */
    long fds;              /* open file descriptors */
} mem_sample_t;

/* The "Key:   123 kB" value of key in a /proc file, or -1. */
static long file_kb(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static int mem_sample(pid_t pid, mem_sample_t *s)
{
    char status[64], rollup[64];
    snprintf(status, sizeof status, "/proc/%d/status", (int)pid);
    snprintf(rollup, sizeof rollup, "/proc/%d/smaps_rollup", (int)pid);
    s->rss_kb = file_kb(status, "VmRSS");
    s->anon_kb = file_kb(status, "RssAnon");
    s->dirty_kb = file_kb(rollup, "Private_Dirty");
    s->fds = ts_pstat_fds(pid);
    return s->rss_kb < 0 || s->anon_kb < 0 || s->fds < 0 ? -1 : 0;
}

/* Waits until pid holds at least (more) or at most (!more) want descriptors.
 * Returns 0, or -1 at the deadline or when /proc cannot be read. */
static int wait_fds(pid_t pid, long want, int more, int64_t deadline)
{
    for (;;) {
        long n = ts_pstat_fds(pid);
        if (n < 0)
            return -1;
        if (more ? n >= want : n <= want)
            return 0;
        if (ts_now_ms() >= deadline)
            return -1;
        poll(NULL, 0, POLL_MS);
    }
}

/* Waits until pid's VmRSS is within RECOVER_PCT % of base_kb, or the
 * deadline: not coming back is a result, not a failure. Returns -1 only
 * when /proc cannot be read. */
static int wait_recovered(pid_t pid, long base_kb, int64_t deadline)
{
    char status[64];
    snprintf(status, sizeof status, "/proc/%d/status", (int)pid);
    for (;;) {
        long rss = file_kb(status, "VmRSS");
        if (rss < 0)
            return -1;
        if (rss * 100 <= base_kb * (100 + RECOVER_PCT) || ts_now_ms() >= deadline)
            return 0;
        poll(NULL, 0, POLL_MS);
    }
}

/* ---------------------------------------------------------------- raw connections */

/* A connection this program drives itself: bare TCP, or TLS + HTTP/2 up to
 * the gateway's SETTINGS ACK, then left idle. */
typedef struct raw_conn {
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    short want;     /* poll events the handshake waits for */
    unsigned up : 1;
    unsigned failed : 1;
    unsigned acked : 1; /* the gateway acknowledged our SETTINGS */
} raw_conn_t;

typedef struct raw_set {
    SSL_CTX *ctx;
    nghttp2_session_callbacks *cbs;
    raw_conn_t *conns;
    size_t n, cap;
    char why[256];  /* the first failure */
} raw_set_t;

static void raw_fail(raw_set_t *rs, raw_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void raw_fail(raw_set_t *rs, raw_conn_t *c, const char *fmt, ...)
{
    c->failed = 1;
    if (rs->why[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->why, sizeof rs->why, fmt, ap);
    va_end(ap);
}

static int raw_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    raw_conn_t *c = ud;
    if (f->hd.type == NGHTTP2_SETTINGS && (f->hd.flags & NGHTTP2_FLAG_ACK))
        c->acked = 1;
    return 0;
}

static int raw_init(raw_set_t *rs, const char *ca_file, size_t cap)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    memset(rs, 0, sizeof *rs);
    rs->conns = calloc(cap, sizeof *rs->conns);
    rs->cap = cap;
    rs->ctx = SSL_CTX_new(TLS_client_method());
    if (!rs->conns || !rs->ctx || nghttp2_session_callbacks_new(&rs->cbs) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_frame_recv_callback(rs->cbs, raw_on_frame);
    SSL_CTX_set_min_proto_version(rs->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(rs->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_alpn_protos(rs->ctx, alpn, sizeof alpn) != 0 ||
        SSL_CTX_load_verify_locations(rs->ctx, ca_file, NULL) != 1)
        return -1;
    return 0;
}

static void raw_dispose(raw_set_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        raw_conn_t *c = &rs->conns[i];
        nghttp2_session_del(c->h2);
        SSL_free(c->ssl);
        if (c->fd >= 0)
            close(c->fd);
    }
    rs->n = 0;
    free(rs->conns);
    rs->conns = NULL;
    SSL_CTX_free(rs->ctx);
    rs->ctx = NULL;
    nghttp2_session_callbacks_del(rs->cbs);
    rs->cbs = NULL;
}

/* Writes what the session has to send. On loopback a few hundred bytes into
 * an empty socket buffer never block; if they did, the connection fails. */
static int raw_flush(raw_set_t *rs, raw_conn_t *c)
{
    for (int i = 0; i < 64; i++) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            raw_fail(rs, c, "HTTP/2: %s", nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0)
            return 0;
        if (SSL_write(c->ssl, data, (int)n) != (int)n) {
            raw_fail(rs, c, "TLS write did not take %zd bytes at once", n);
            return -1;
        }
    }
    return 0;
}

/* The TLS handshake finished: check ALPN, send the preface and SETTINGS. */
static void raw_start_h2(raw_set_t *rs, raw_conn_t *c)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        raw_fail(rs, c, "the gateway did not select ALPN h2");
        return;
    }
    if (nghttp2_session_client_new(&c->h2, rs->cbs, c) != 0 ||
        nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0) != 0) {
        raw_fail(rs, c, "cannot start an HTTP/2 session");
        return;
    }
    raw_flush(rs, c);
}

/* Advances one connection as far as its socket allows. */
static void raw_step(raw_set_t *rs, raw_conn_t *c)
{
    char e[200];
    ERR_clear_error();
    if (!c->h2) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            switch (SSL_get_error(c->ssl, r)) {
            case SSL_ERROR_WANT_READ:
                c->want = POLLIN;
                return;
            case SSL_ERROR_WANT_WRITE:
                c->want = POLLOUT;
                return;
            default:
                ERR_error_string_n(ERR_get_error(), e, sizeof e);
                raw_fail(rs, c, "TLS handshake: %s", e);
                return;
            }
        }
        raw_start_h2(rs, c);
        if (c->failed)
            return;
    }
    c->want = POLLIN;
    for (int i = 0; i < 16 && !c->failed; i++) {
        uint8_t buf[4096];
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ)
                break;
            ERR_error_string_n(ERR_get_error(), e, sizeof e);
            raw_fail(rs, c, "TLS read: %s", err == SSL_ERROR_ZERO_RETURN ? "closed" : e);
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
        if (rv < 0)
            raw_fail(rs, c, "HTTP/2: %s", nghttp2_strerror((int)rv));
    }
    if (!c->failed && raw_flush(rs, c) == 0 && c->acked)
        c->up = 1;
}

/* Opens n bare TCP connections to the gateway. Returns 0 or -1. */
static int raw_open_bare(raw_set_t *rs, const ts_addr_t *to, size_t n, int64_t deadline)
{
    for (size_t i = 0; i < n; i++) {
        int fd = ts_tcp_connect(to, deadline);
        if (fd < 0) {
            snprintf(rs->why, sizeof rs->why, "TCP connect %zu of %zu failed: %s", i + 1, n,
                     strerror(errno));
            return -1;
        }
        rs->conns[rs->n++] = (raw_conn_t){.fd = fd};
    }
    return 0;
}

/* Opens n idle HTTP/2 connections, RAW_BATCH handshakes at a time, each
 * done when the gateway has acknowledged its SETTINGS. Returns 0 or -1. */
static int raw_open_h2(raw_set_t *rs, const ts_addr_t *to, size_t n, int64_t deadline)
{
    struct pollfd pfd[RAW_BATCH];
    raw_conn_t *ready[RAW_BATCH];
    for (size_t done = 0; done < n;) {
        size_t first = rs->n, batch = n - done < RAW_BATCH ? n - done : RAW_BATCH;
        for (size_t i = 0; i < batch; i++) {
            raw_conn_t *c = &rs->conns[rs->n];
            *c = (raw_conn_t){.fd = ts_tcp_connect(to, deadline)};
            if (c->fd < 0) {
                snprintf(rs->why, sizeof rs->why, "TCP connect failed: %s", strerror(errno));
                return -1;
            }
            rs->n++;
            c->ssl = SSL_new(rs->ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 ||
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1") != 1) {
                snprintf(rs->why, sizeof rs->why, "cannot set up a TLS session");
                return -1;
            }
            SSL_set_connect_state(c->ssl);
            raw_step(rs, c);
        }
        for (;;) {
            nfds_t np = 0;
            for (size_t i = first; i < first + batch; i++) {
                raw_conn_t *c = &rs->conns[i];
                if (c->failed)
                    return -1;
                if (!c->up) {
                    pfd[np] = (struct pollfd){.fd = c->fd, .events = c->want};
                    ready[np++] = c;
                }
            }
            if (np == 0)
                break;
            int left = ts_remaining_ms(deadline);
            if (left == 0) {
                snprintf(rs->why, sizeof rs->why, "%zu handshakes not done by the deadline",
                         (size_t)np);
                return -1;
            }
            int r = poll(pfd, np, left);
            if (r < 0 && errno != EINTR) {
                snprintf(rs->why, sizeof rs->why, "poll: %s", strerror(errno));
                return -1;
            }
            for (nfds_t i = 0; r > 0 && i < np; i++)
                if (pfd[i].revents)
                    raw_step(rs, ready[i]);
        }
        done += batch;
    }
    return 0;
}

/* ---------------------------------------------------------------- tunnels */

typedef struct tun_set {
    struct ev_loop *loop;
    ev_timer tick;                /* wakes the loop so every wait sees its deadline */
    sluice_client_t **clients;
    size_t nclients;
    size_t opened, ended;         /* tunnels answered 200; tunnels or clients that ended */
    char why[256];                /* the first end */
} tun_set_t;

static void tun_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

static void tun_on_state(sluice_client_t *client, sluice_state_t state, const char *detail,
                         void *ud)
{
    tun_set_t *ts = ud;
    if (state != SLUICE_FAILED && state != SLUICE_CLOSED)
        return;
    ts->ended++;
    if (!ts->why[0])
        snprintf(ts->why, sizeof ts->why, "client %s: %s", sluice_state_name(state), detail);
}

static void tun_on_open(sluice_tunnel_t *t, void *ud)
{
    tun_set_t *ts = ud;
    ts->opened++;
}

static void tun_on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason,
                         void *ud)
{
    tun_set_t *ts = ud;
    ts->ended++;
    if (!ts->why[0])
        snprintf(ts->why, sizeof ts->why, "tunnel ended: status %d: %s", status, reason);
}

/* Runs the loop for ms (the settle after the tunnels opened: the shims keep
 * their side moving meanwhile). */
static void tun_settle(tun_set_t *ts, int ms)
{
    int64_t end = ts_now_ms() + ms;
    while (ts_now_ms() < end)
        ev_run(ts->loop, EVRUN_ONCE);
}

static int tun_init(tun_set_t *ts, size_t nclients)
{
    memset(ts, 0, sizeof *ts);
    ts->loop = ev_loop_new(EVFLAG_AUTO);
    ts->clients = calloc(nclients, sizeof *ts->clients);
    if (!ts->loop || !ts->clients)
        return -1;
    ev_timer_init(&ts->tick, tun_tick, POLL_MS / 1000.0, POLL_MS / 1000.0);
    ev_timer_start(ts->loop, &ts->tick);
    return 0;
}

static void tun_dispose(tun_set_t *ts)
{
    for (size_t i = 0; i < ts->nclients; i++)
        sluice_client_free(ts->clients[i]);
    ts->nclients = 0;
    free(ts->clients);
    ts->clients = NULL;
    if (ts->loop) {
        ev_timer_stop(ts->loop, &ts->tick);
        ev_loop_destroy(ts->loop);
        ts->loop = NULL;
    }
}

/* Connects nclients shims to port and opens ntunnels over them (spread
 * evenly). Returns 0 once all are open, or -1 with ts->why set. */
static int tun_open(tun_set_t *ts, const char *ca_file, uint16_t port, const char *secret,
                    size_t nclients, size_t ntunnels, int64_t deadline)
{
    char username[256], credential[64];
    uint64_t expiry = (uint64_t)time(NULL) + CRED_TTL_S;
    if (sluice_cred_mint(SLUICE_HASH_SHA1, secret, strlen(secret), expiry, "bench", username,
                         sizeof username, credential, sizeof credential) != SLUICE_OK) {
        snprintf(ts->why, sizeof ts->why, "cannot mint a credential");
        return -1;
    }
    sluice_client_opts_t co = {.host = "127.0.0.1", .port = port, .ca_file = ca_file,
                               .on_state = tun_on_state, .ud = ts};
    sluice_tunnel_opts_t to = {.tenant = BENCH_TENANT, .kind = "sfu", .username = username,
                               .credential = credential, .on_open = tun_on_open,
                               .on_close = tun_on_close, .ud = ts};
    for (size_t i = 0; i < nclients; i++) {
        char err[200];
        sluice_client_t *c = sluice_client_new(ts->loop, &co, err, sizeof err);
        if (!c) {
            snprintf(ts->why, sizeof ts->why, "sluice_client_new: %s", err);
            return -1;
        }
        ts->clients[ts->nclients++] = c;
        if (sluice_client_connect(c) != SLUICE_OK) {
            snprintf(ts->why, sizeof ts->why, "sluice_client_connect failed");
            return -1;
        }
        size_t share = ntunnels / nclients + (i < ntunnels % nclients);
        for (size_t j = 0; j < share; j++) {
            if (!sluice_tunnel_open(c, &to)) {
                snprintf(ts->why, sizeof ts->why, "sluice_tunnel_open failed");
                return -1;
            }
        }
    }
    while (ts->opened < ntunnels && ts->ended == 0 && ts_now_ms() < deadline)
        ev_run(ts->loop, EVRUN_ONCE);
    if (ts->opened == ntunnels && ts->ended == 0)
        return 0;
    if (!ts->why[0])
        snprintf(ts->why, sizeof ts->why, "%zu of %zu tunnels open at the deadline", ts->opened,
                 ntunnels);
    return -1;
}

/* ---------------------------------------------------------------- report */

enum step { S_BASE, S_BARE, S_H2, S_TUN, S_CLOSED, S_COUNT };

/* The load runs twice: the second round shows how much of what the first
 * left resident the allocator reuses. */
#define ROUNDS 2

typedef struct bench_result {
    mem_sample_t m[ROUNDS][S_COUNT];
    int have[ROUNDS][S_COUNT];
    int64_t took_ms[ROUNDS][S_COUNT];
    const char *failed_step;      /* NULL when every step held */
    int failed_round;
    char why[300];
    int gw_exit;
} bench_result_t;

static const char *const step_name[S_COUNT] = {
    "baseline (ready, no client)",
    "+ N bare TCP (no ClientHello)",
    "+ N idle HTTP/2 connections",
    "+ M idle tunnels",
    "all clients closed, after trim",
};

static void machine_info(char *out, size_t cap, size_t *pos)
{
    struct utsname u;
    char model[128];
    ts_cpu_model(model, sizeof model);
    char thp[128] = "unknown";
    char *t = ts_read_file("/sys/kernel/mm/transparent_hugepage/enabled", 128, NULL);
    if (t) {
        snprintf(thp, sizeof thp, "%s", t);
        thp[strcspn(thp, "\n")] = '\0';
        free(t);
    }
    if (uname(&u) < 0)
        memset(&u, 0, sizeof u);
    long memtotal = file_kb("/proc/meminfo", "MemTotal");
    ts_appendf(out, cap, pos,
               "machine   %ld cpus (%s), %s %s %s, %ld MiB RAM, THP %s\n",
               sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release, u.machine,
               memtotal / 1024, thp);
    ts_appendf(out, cap, pos, "libraries %s, nghttp2 %s (this program's; sluiced links the same)\n",
               OpenSSL_version(OPENSSL_VERSION), nghttp2_version(0)->version_str);
}

/* delta in KiB as bytes per object. */
static long per_obj(long from_kb, long to_kb, long count)
{
    return from_kb < 0 || to_kb < 0 ? -1 : (to_kb - from_kb) * 1024 / count;
}

static void report(const bench_result_t *r, const bench_opts_t *o, const char *path)
{
    static char out[8192];
    size_t pos = 0, cap = sizeof out;
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));

    ts_appendf(out, cap, &pos, "sluice memory per idle connection and tunnel (make bench)\n");
    ts_appendf(out, cap, &pos, "date      %s\n", date);
    machine_info(out, cap, &pos);
    ts_appendf(out, cap, &pos,
               "load      N = %ld bare TCP + N = %ld idle HTTP/2 connections, M = %ld idle "
               "tunnels over K = %ld shim connections\n",
               o->conns, o->conns, o->tunnels, o->clients);
    ts_appendf(out, cap, &pos,
               "config    max_capsule %ld, media_queue_bytes %d, signal_queue_bytes %d, "
               "max_streams %ld, write_stall_ms %d, resume_grace_ms %d\n",
               o->max_capsule, CFG_MEDIA_QUEUE, CFG_SIGNAL_QUEUE,
               (o->tunnels + o->clients - 1) / o->clients, CFG_WRITE_STALL_MS,
               CFG_RESUME_GRACE_MS);
    ts_appendf(out, cap, &pos,
               "structs   sizeof conn_t %zu, tunnel_t %zu (of which sendq_t %zu), "
               "tunnel reader buffer %ld (lent only while a capsule is split)\n",
               sizeof(conn_t), sizeof(tunnel_t), sizeof(sendq_t),
               o->max_capsule + CAPSULE_MAX_HEADER);
    ts_appendf(out, cap, &pos,
               "method    sluiced's /proc/PID/status and smaps_rollup after each step's condition "
               "held, then %d ms settle\n"
               "          (%d ms after an idle step; after the close, first up to %d ms for "
               "VmRSS to come within %d %% of round 1's baseline);\n"
               "          resident pages only (untouched malloc'd memory and kernel socket "
               "memory are not counted)\n\n",
               SETTLE_MS, IDLE_SETTLE_MS, RECOVER_MS, RECOVER_PCT);

    ts_appendf(out, cap, &pos, "%-5s %-32s %9s %9s %9s %7s %8s\n", "round", "step", "VmRSS",
               "RssAnon", "PrivDirty", "fds", "took");
    for (int k = 0; k < ROUNDS; k++) {
        for (int s = 0; s < S_COUNT; s++) {
            if (!r->have[k][s])
                continue;
            const mem_sample_t *m = &r->m[k][s];
            ts_appendf(out, cap, &pos,
                       "%-5d %-32s %6ld kB %6ld kB %6ld kB %7ld %5" PRId64 " ms\n", k + 1,
                       step_name[s], m->rss_kb, m->anon_kb, m->dirty_kb, m->fds,
                       r->took_ms[k][s]);
        }
    }

    static const struct {
        const char *what;
        enum step from, to;
        int tunnels;
    } rows[] = {
        {"bare TCP (pre-handshake)", S_BASE, S_BARE, 0},
        {"idle HTTP/2 connection", S_BARE, S_H2, 0},
        {"idle tunnel", S_H2, S_TUN, 1},
    };
    ts_appendf(out, cap, &pos, "\n%-26s %7s %16s %16s %16s\n", "round 1: delta, per object",
               "count", "VmRSS", "RssAnon", "Private_Dirty");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (!r->have[0][rows[i].from] || !r->have[0][rows[i].to])
            continue;
        const mem_sample_t *a = &r->m[0][rows[i].from], *b = &r->m[0][rows[i].to];
        long n = rows[i].tunnels ? o->tunnels : o->conns;
        ts_appendf(out, cap, &pos,
                   "%-26s %7ld %7ld kB %5ld B %7ld kB %5ld B %7ld kB %5ld B\n", rows[i].what, n,
                   b->rss_kb - a->rss_kb, per_obj(a->rss_kb, b->rss_kb, n),
                   b->anon_kb - a->anon_kb, per_obj(a->anon_kb, b->anon_kb, n),
                   b->dirty_kb - a->dirty_kb, per_obj(a->dirty_kb, b->dirty_kb, n));
    }
    /* The targets (issue 9 section 2): VmRSS, round 1. */
    ts_appendf(out, cap, &pos, "\ntargets (VmRSS, round 1)\n");
    if (r->have[0][S_BARE] && r->have[0][S_H2]) {
        long b = per_obj(r->m[0][S_BARE].rss_kb, r->m[0][S_H2].rss_kb, o->conns);
        ts_appendf(out, cap, &pos, "  idle TLS connection %5.1f KiB   (target <= 40 KiB: %s)\n",
                   b / 1024.0, b <= 40 * 1024 ? "met" : "MISSED");
    }
    if (r->have[0][S_H2] && r->have[0][S_TUN]) {
        long b = per_obj(r->m[0][S_H2].rss_kb, r->m[0][S_TUN].rss_kb, o->tunnels);
        ts_appendf(out, cap, &pos, "  idle tunnel         %5.1f KiB   (target <= 8 KiB: %s)\n",
                   b / 1024.0, b <= 8 * 1024 ? "met" : "MISSED");
    }
    for (int k = 0; k < ROUNDS; k++) {
        if (!r->have[0][S_BASE] || !r->have[k][S_TUN] || !r->have[k][S_CLOSED])
            continue;
        long idle = r->m[0][S_BASE].rss_kb, after = r->m[k][S_CLOSED].rss_kb;
        ts_appendf(out, cap, &pos,
                   "  round %d: VmRSS idle %ld kB -> loaded %ld kB -> after %ld kB (%+.1f %% of "
                   "idle; target <= +%d %%: %s)\n",
                   k + 1, idle, r->m[k][S_TUN].rss_kb, after,
                   (after - idle) * 100.0 / idle, RECOVER_PCT,
                   after * 100 <= idle * (100 + RECOVER_PCT) ? "met" : "MISSED");
    }
    if (r->failed_step)
        ts_appendf(out, cap, &pos, "\nFAILED in round %d at \"%s\": %s\n", r->failed_round + 1,
                   r->failed_step, r->why);
    ts_appendf(out, cap, &pos, "sluiced exit %d\n", r->gw_exit);

    fputs(out, stdout);
    if (ts_write_file(path, out, pos) < 0)
        fprintf(stderr, "bench_mem: cannot write %s: %s\n", path, strerror(errno));
    else
        printf("report written to %s\n", path);
}

/* ---------------------------------------------------------------- main */

static int raise_fd_limit(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur) {
        fprintf(stderr,
                "bench_mem: the load needs about %ld file descriptors in sluiced, the limit "
                "is %llu; lower --conns or --tunnels\n",
                need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int random_secret(char *out, size_t cap)
{
    uint8_t raw[16];
    if (cap < 2 * sizeof raw + 1 || RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* A step's condition held: settle, then sample. */
static int take(bench_result_t *r, int k, enum step s, pid_t pid, int64_t started, int settle)
{
    poll(NULL, 0, settle);
    r->took_ms[k][s] = ts_now_ms() - started - settle;
    if (mem_sample(pid, &r->m[k][s]) < 0)
        return -1;
    r->have[k][s] = 1;
    return 0;
}

static void fail(bench_result_t *r, int k, enum step s, const char *why)
{
    r->failed_step = step_name[s];
    r->failed_round = k;
    snprintf(r->why, sizeof r->why, "%s", why);
}

/* One round of the measured steps, in order, ending with every client
 * closed. base_fds: sluiced's descriptors with no client (-1 in round 1:
 * taken from its baseline). Returns 0, or -1 with r->failed_step set. */
static int run_round(bench_result_t *r, int k, const bench_opts_t *o, ts_gateway_t *gw,
                     const char *ca_file, const char *secret, long *base_fds, int64_t deadline)
{
    static const char proc_err[] = "cannot read sluiced's /proc entries";
    pid_t pid = gw->proc.pid;
    const ts_addr_t *to = &gw->listen[0];
    int64_t t0 = ts_now_ms();
    raw_set_t rs;
    tun_set_t ts;
    int rc = -1;
    /* Both inits clear their set first, so the disposes below are always safe. */
    if ((raw_init(&rs, ca_file, 2 * (size_t)o->conns) | tun_init(&ts, (size_t)o->clients)) < 0) {
        fail(r, k, S_BASE, "cannot set up the clients (memory, or the CA file)");
        goto out;
    }
    if (take(r, k, S_BASE, pid, t0, SETTLE_MS) < 0) {
        fail(r, k, S_BASE, proc_err);
        goto out;
    }
    if (*base_fds < 0)
        *base_fds = r->m[k][S_BASE].fds;

    t0 = ts_now_ms();
    if (raw_open_bare(&rs, to, (size_t)o->conns, deadline) < 0) {
        fail(r, k, S_BARE, rs.why);
        goto out;
    }
    if (wait_fds(pid, *base_fds + o->conns, 1, deadline) < 0) {
        fail(r, k, S_BARE, "sluiced did not accept every connection before the deadline");
        goto out;
    }
    if (take(r, k, S_BARE, pid, t0, SETTLE_MS) < 0) {
        fail(r, k, S_BARE, proc_err);
        goto out;
    }

    t0 = ts_now_ms();
    if (raw_open_h2(&rs, to, (size_t)o->conns, deadline) < 0) {
        fail(r, k, S_H2, rs.why);
        goto out;
    }
    if (take(r, k, S_H2, pid, t0, IDLE_SETTLE_MS) < 0) {
        fail(r, k, S_H2, proc_err);
        goto out;
    }

    t0 = ts_now_ms();
    if (tun_open(&ts, ca_file, ts_addr_port(to), secret, (size_t)o->clients,
                 (size_t)o->tunnels, deadline) < 0) {
        fail(r, k, S_TUN, ts.why);
        goto out;
    }
    tun_settle(&ts, IDLE_SETTLE_MS);
    r->took_ms[k][S_TUN] = ts_now_ms() - t0 - IDLE_SETTLE_MS;
    if (ts.ended) {
        fail(r, k, S_TUN, ts.why);
        goto out;
    }
    if (mem_sample(pid, &r->m[k][S_TUN]) < 0) {
        fail(r, k, S_TUN, proc_err);
        goto out;
    }
    r->have[k][S_TUN] = 1;

    t0 = ts_now_ms();
    tun_dispose(&ts);
    raw_dispose(&rs);
    if (wait_fds(pid, *base_fds, 0, deadline) < 0) {
        fail(r, k, S_CLOSED, "sluiced did not close every connection before the deadline");
        goto out;
    }
    if (wait_recovered(pid, r->m[0][S_BASE].rss_kb, ts_deadline(RECOVER_MS)) < 0) {
        fail(r, k, S_CLOSED, proc_err);
        goto out;
    }
    if (take(r, k, S_CLOSED, pid, t0, SETTLE_MS) < 0) {
        fail(r, k, S_CLOSED, proc_err);
        goto out;
    }
    rc = 0;
out:
    tun_dispose(&ts);
    raw_dispose(&rs);
    return rc;
}

static int run_steps(bench_result_t *r, const bench_opts_t *o, ts_gateway_t *gw,
                     const char *ca_file, const char *secret)
{
    int64_t deadline = ts_deadline(RUN_MS);
    long base_fds = -1;
    for (int k = 0; k < ROUNDS; k++)
        if (run_round(r, k, o, gw, ca_file, secret, &base_fds, deadline) < 0)
            return -1;
    return 0;
}

int main(int argc, char **argv)
{
    bench_opts_t o;
    if (parse_args(argc, argv, &o) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* sluiced holds every connection and one UDP socket per tunnel; this
     * program holds the connections. The child inherits the raised limit. */
    if (raise_fd_limit(2 * o.conns + o.clients + o.tunnels + 64) < 0)
        return 2;

    char secret[64], config[PATH_MAX], ca_file[PATH_MAX], out_path[PATH_MAX];
    if (random_secret(secret, sizeof secret) < 0 ||
        ts_build_path(o.build, "dev/cert.pem", ca_file, sizeof ca_file) < 0 ||
        (o.out ? snprintf(out_path, sizeof out_path, "%s", o.out)
               : ts_build_path(o.build, "bench/report.txt", out_path, sizeof out_path)) < 0) {
        fprintf(stderr, "bench_mem: no randomness, or paths too long\n");
        return 1;
    }

    long per_client = (o.tunnels + o.clients - 1) / o.clients;
    char limits[1024];
    snprintf(limits, sizeof limits,
             "{\"max_capsule\":%ld,\"media_queue_bytes\":%d,\"signal_queue_bytes\":%d,"
             "\"max_connections\":%ld,\"max_tunnels\":%ld,\"max_streams\":%ld,"
             "\"max_pending_per_source\":100000,\"handshakes_per_source_s\":1000000,"
             "\"max_control_frames_s\":1000000,"
             "\"handshake_timeout_ms\":600000,\"header_timeout_ms\":600000,"
             "\"conn_idle_ms\":600000,\"tunnel_idle_ms\":600000,"
             "\"ping_interval_ms\":600000,\"ping_timeout_ms\":600000,"
             "\"write_stall_ms\":%d,\"resume_grace_ms\":%d}",
             o.max_capsule, CFG_MEDIA_QUEUE, CFG_SIGNAL_QUEUE, 2 * o.conns + o.clients + 64,
             o.tunnels + 64, per_client, CFG_WRITE_STALL_MS, CFG_RESUME_GRACE_MS);
    ts_config_t c = {
        .build = o.build,
        .listen = {"127.0.0.1:0"},
        .region = "local",
        .regions = {{.name = "local", .sfu = TS_POOL("builtin:echo")}},
        .tenants = {{.id = BENCH_TENANT, .secrets = {secret}, .hash = "sha1",
                     .max_ttl = 3600, .regions = {"local"}, .kinds = {"sfu"}}},
        .limits_json = limits,
    };
    if (ts_config_write(&c, config, sizeof config) < 0) {
        fprintf(stderr, "bench_mem: cannot write a config (is %s a build dir?)\n", o.build);
        return 1;
    }

    ts_gateway_t gw;
    bench_result_t r = {.gw_exit = -1};
    printf("bench_mem: %ld bare TCP, %ld idle HTTP/2 connections, %ld idle tunnels on %ld "
           "clients\n",
           o.conns, o.conns, o.tunnels, o.clients);
    if (ts_gateway_start(&gw, o.build, config, ts_deadline(START_MS)) < 0) {
        fprintf(stderr, "bench_mem: sluiced did not get ready\n");
        ts_gateway_dispose(&gw);
        return 1;
    }
    int rc = run_steps(&r, &o, &gw, ca_file, secret);
    r.gw_exit = ts_gateway_stop(&gw, ts_deadline(STOP_MS));
    ts_gateway_dispose(&gw);
    report(&r, &o, out_path);
    return rc == 0 && r.gw_exit == 0 ? 0 : 1;
}
