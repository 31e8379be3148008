/*
 * bench_soak.c — `make soak`: sluiced under a steady call load for a long
 * time, with tunnels continuously opening and closing (issue 10 §5).
 *
 *   bench_soak --build DIR [--seconds S] [--window W] [--warmup W]
 *              [--tunnels N] [--clients K] [--pps P] [--size B]
 *              [--churn PCT] [--workers W] [--out FILE]
 *
 * Defaults: S = $SOAK_SECONDS or 3600; N = 1000 tunnels on K = 100 shim
 * connections (10 tunnels each), P = 50 pkt/s per tunnel of B = 200 bytes
 * (an audio call), 1 % of the tunnels replaced per second (tests/support/
 * ts_soak.h: the old tunnel stops sending, closes once its last echo is back
 * or a second passed; a new one opens in its place), 2 worker loops. The
 * backend is a ts_echo thread of this process (a real UDP socket per tunnel
 * in sluiced, so a leaked tunnel socket shows in its fd count).
 *
 * Every window (W = min(60, S / 10) seconds by default) it samples sluiced's
 * VmRSS (/proc/PID/status), its open descriptors (/proc/PID/fd), its CPU
 * (utime + stime of all its threads), and the window's RTT p50/p99/max, sent,
 * received, skipped (a slot whose tunnel was not open yet) and the loss of
 * the tunnels that ended in it. The warm-up windows (--warmup; default the
 * first 10 minutes when S >= 1800, else one window: under churn the RSS
 * climbs to a plateau over the first ~5,000 tunnel replacements, docs/
 * soak.md) are excluded from drift: drift is the last window against the
 * first window after warm-up (RSS %, descriptors, p50 and p99).
 *
 * After the load every tunnel is retired (so every packet sent is either
 * received or counted lost), the clients close, and sluiced's descriptors
 * must return to their count before the load (within STOP_FD_MS). Where the
 * lost packets went: sluiced's sluice_drops_total by reason (its /metrics,
 * scraped once the load is over) and the host's UDP RcvbufErrors over the
 * run.
 *
 * A tunnel or connection that ends unasked is counted (per window, and the
 * first reason in the totals) and the run goes on: its slot opens afresh.
 *
 * Report (Markdown) to stdout and FILE (default DIR/bench/soak.md). Exit 0
 * when the run completed with no unexpected tunnel or connection end and
 * sluiced exited 0; 1 otherwise; 2 for bad arguments. The targets (RSS drift
 * < 1 %, no descriptor growth) are reported, not enforced by the exit status.
 */
#include <ev.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_echo.h"
#include "../support/ts_hist.h"
#include "../support/ts_host.h"
#include "../support/ts_pstat.h"
#include "../support/ts_report.h"
#include "../support/ts_scrape.h"
#include "../support/ts_sluice.h"
#include "../support/ts_soak.h"
#include "../support/ts_util.h"

#define TENANT "soak"
#define START_MS 15000
#define OPEN_MS 60000
#define FINISH_MS 15000
#define STOP_MS 10000
#define STOP_FD_MS 10000
#define MAX_SECONDS (24 * 3600)
#define MAX_WINDOWS 1500
#define ECHO_BUF (4 << 20)
#define CRED_TTL_S 7200 /* the tenant's max_ttl */
#define WARMUP_LONG_S 600
#define MAX_REASONS 24
#define ADMIN_TOKEN "soak-admin-token-0123"

typedef struct sample {
    double t_s;                 /* end of the window, from the start of the load */
    long rss_kb;
    long fds;
    double cpu_pct;             /* sluiced, of one core */
    double gen_pct;             /* this process (clients + echo), of one core */
    ts_soak_window_t w;         /* counts and RTT histogram of the window */
} sample_t;

typedef struct soak_bench {
    const char *build;
    long seconds, window, warmup, tunnels, clients, pps, size, workers;
    double churn;               /* per second, share */
    long fds_before, fds_after, rss_before;
    ts_pstat_t ps_open;
    sample_t *s;
    size_t ns;
    ts_soak_totals_t tot;
    /* Where the lost packets went: sluiced's own counts, and the host's
     * UDP receive-buffer overflows over the run (any socket: sluiced's
     * tunnel sockets or the echo's). */
    char metrics_url[128];
    ts_scrape_sum_t drops[MAX_REASONS];
    int ndrops;                 /* -1: not scraped */
    long rcvbuf_errors;         /* -1: not read */
    int finished, gw_exit;
    char why[300];
} soak_bench_t;

/* This process's CPU time (every thread), ns. */
static int64_t self_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static double pct_drift(double first, double last)
{
    return first > 0 ? (last - first) * 100.0 / first : 0;
}

static void report(const soak_bench_t *b, const char *path)
{
    static char out[1 << 18];
    size_t pos = 0;
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    ts_appendf(out, sizeof out, &pos, "# sluice soak (make soak)\n\n- date: %s\n", date);
    ts_report_machine(out, sizeof out, &pos);
    ts_appendf(out, sizeof out, &pos,
               "- load: %ld tunnels on %ld connections, %ld pkt/s each of %ld B (%ld msg/s "
               "echoed), %.2f %% of the tunnels replaced per second; sluiced workers %ld, "
               "backend a UDP echo thread\n"
               "- run: %ld s in windows of %ld s, the first %ld window(s) warm-up\n\n",
               b->tunnels, b->clients, b->pps, b->size, b->tunnels * b->pps, b->churn * 100,
               b->workers, b->seconds, b->window, b->warmup);
    ts_appendf(out, sizeof out, &pos,
               "| t (s) | VmRSS (kB) | fds | CPU %% | generator CPU %% | sent | received | "
               "skipped | opened | closed | lost | ended unasked | RTT p50 (ms) | p99 | max |\n"
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < b->ns; i++) {
        const sample_t *s = &b->s[i];
        ts_appendf(out, sizeof out, &pos,
                   "| %.0f%s | %ld | %ld | %.0f | %.0f | %" PRIu64 " | %" PRIu64 " | %" PRIu64
                    " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %.2f | %.2f | %.2f |\n",
                   s->t_s, (long)i < b->warmup ? " (warm-up)" : "", s->rss_kb, s->fds,
                   s->cpu_pct, s->gen_pct, s->w.sent, s->w.rx, s->w.skipped, s->w.opened, s->w.closed,
                   s->w.lost, s->w.unexpected, ms(ts_hist_percentile(&s->w.rtt, 50)),
                   ms(ts_hist_percentile(&s->w.rtt, 99)), ms(s->w.rtt.max));
    }
    const ts_soak_totals_t *t = &b->tot;
    double loss = t->sent ? (double)(t->sent - (t->rx < t->sent ? t->rx : t->sent)) * 100.0 /
                                (double)t->sent
                          : 0;
    ts_appendf(out, sizeof out, &pos,
               "\n## Totals\n\n- packets: %" PRIu64 " sent, %" PRIu64 " received, loss %.4f %% "
               "(%" PRIu64 " lost, in %" PRIu64 " tunnels); %" PRIu64 " not matching, %" PRIu64
               " reordered; %" PRIu64 " turns skipped (the slot's tunnel not open yet, or the "
               "generator a tick behind)\n"
               "- tunnels: %" PRIu64 " opened, %" PRIu64 " closed on request, %" PRIu64
               " ended unexpectedly%s%s\n"
               "- descriptors: %ld before the load, %ld after it (every client gone)\n",
               t->sent, t->rx, loss, t->lost, t->short_tunnels, t->bad, t->reordered,
               t->skipped, t->opened, t->closed, t->unexpected, t->why[0] ? ": " : "", t->why,
               b->fds_before, b->fds_after);
    ts_appendf(out, sizeof out, &pos, "- sluiced's drops over the run (`sluice_drops_total`): ");
    int shown = 0;
    for (int i = 0; i < b->ndrops; i++)
        if (b->drops[i].sum > 0)
            ts_appendf(out, sizeof out, &pos, "%s%s %.0f", shown++ ? ", " : "", b->drops[i].value,
                       b->drops[i].sum);
    ts_appendf(out, sizeof out, &pos, "%s", b->ndrops < 0 ? "not read" : shown ? "" : "none");
    if (b->rcvbuf_errors >= 0)
        ts_appendf(out, sizeof out, &pos,
                   "\n- the host's UDP receive-buffer overflows over the run (`RcvbufErrors`, "
                   "any socket): %ld\n",
                   b->rcvbuf_errors);
    else
        ts_appendf(out, sizeof out, &pos, "\n- the host's UDP receive-buffer overflows: not read\n");
    if ((long)b->ns > b->warmup) {
        const sample_t *f = &b->s[b->warmup], *l = &b->s[b->ns - 1];
        double p50f = ms(ts_hist_percentile(&f->w.rtt, 50)),
               p50l = ms(ts_hist_percentile(&l->w.rtt, 50));
        double p99f = ms(ts_hist_percentile(&f->w.rtt, 99)),
               p99l = ms(ts_hist_percentile(&l->w.rtt, 99));
        double rd = pct_drift((double)f->rss_kb, (double)l->rss_kb);
        ts_appendf(out, sizeof out, &pos,
                   "\n## Drift (window at %.0f s against the last, at %.0f s)\n\n"
                   "- VmRSS: %ld kB -> %ld kB, %+.2f %% (target < 1 %%: %s)\n"
                   "- descriptors: %ld -> %ld (%+ld); after the load %ld, before it %ld "
                   "(target: no growth: %s)\n"
                   "- RTT p50: %.2f -> %.2f ms (%+.2f ms); p99: %.2f -> %.2f ms (%+.2f ms)\n",
                   f->t_s, l->t_s, f->rss_kb, l->rss_kb, rd,
                   rd < 1.0 ? "met" : "MISSED", f->fds, l->fds, l->fds - f->fds, b->fds_after,
                   b->fds_before, b->fds_after == b->fds_before ? "met" : "MISSED", p50f, p50l,
                   p50l - p50f, p99f, p99l, p99l - p99f);
    }
    ts_appendf(out, sizeof out, &pos, "\nsluiced exit %d%s%s\n", b->gw_exit,
               b->why[0] ? "; " : "", b->why);
    fputs(out, stdout);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(out, f);
        fclose(f);
        printf("report written to %s\n", path);
    }
}

static int echo_hook(void *ud, int fd, const uint8_t *p, size_t len, const ts_addr_t *src)
{
    static int done;
    if (!done) { /* a burst must not overflow the echo's default 208 KiB */
        int v = ECHO_BUF;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
        done = 1;
    }
    return 0;
}

/* Runs the load: windows until b->seconds. 0, or -1 (why set). */
static int run(soak_bench_t *b, ts_gateway_t *gw, const char *ca_file, const char *secret)
{
    pid_t pid = gw->proc.pid;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop) {
        snprintf(b->why, sizeof b->why, "no event loop");
        return -1;
    }
    b->fds_before = ts_pstat_fds(pid);
    long rcvbuf0 = ts_host_udp_rcvbuf_errors();
    ts_soak_opts_t o = {.port = ts_addr_port(&gw->listen[0]), .ca_file = ca_file,
                        .tenant = TENANT, .secret = secret, .tunnels = (size_t)b->tunnels,
                        .clients = (size_t)b->clients, .pps = (double)b->pps,
                        .size = (size_t)b->size, .churn = b->churn,
                        .cred_ttl_s = CRED_TTL_S};
    ts_soak_t *s = ts_soak_open(loop, &o, ts_deadline(OPEN_MS), b->why, sizeof b->why);
    int rc = -1;
    if (!s)
        goto out;
    ts_pstat_read(pid, &b->ps_open);
    ts_soak_window_t *scratch = malloc(sizeof *scratch);
    if (!scratch)
        goto out;
    ts_soak_start(s);
    ts_soak_window(s, scratch); /* the open's counts are not the first window's */
    free(scratch);
    int64_t t0 = ts_now_ms();
    ts_pstat_t prev = b->ps_open;
    int64_t prev_ms = t0, prev_gen = self_cpu_ns();
    for (long k = 1; b->ns < MAX_WINDOWS && k * b->window <= b->seconds; k++) {
        int64_t end = t0 + k * b->window * 1000;
        while (ts_now_ms() < end)
            ev_run(loop, EVRUN_ONCE);
        sample_t *sm = &b->s[b->ns++];
        ts_soak_window(s, &sm->w);
        ts_pstat_t ps;
        int64_t now = ts_now_ms();
        if (ts_pstat_read(pid, &ps) == 0) {
            sm->rss_kb = ps.rss_kb;
            double cpu_ns = (double)(ps.utime_ns + ps.stime_ns - prev.utime_ns - prev.stime_ns);
            sm->cpu_pct = now > prev_ms ? cpu_ns / 1e6 * 100.0 / (double)(now - prev_ms) : 0;
            prev = ps;
        }
        int64_t gen = self_cpu_ns();
        sm->gen_pct = now > prev_ms ? (double)(gen - prev_gen) / 1e6 * 100.0 / (double)(now - prev_ms) : 0;
        prev_gen = gen;
        prev_ms = now;
        sm->fds = ts_pstat_fds(pid);
        sm->t_s = (double)(now - t0) / 1000.0;
        fprintf(stderr, "bench_soak: t=%.0fs rss=%ld kB fds=%ld sent=%" PRIu64 " rx=%" PRIu64
                        " p99=%.2f ms\n",
                sm->t_s, sm->rss_kb, sm->fds, sm->w.sent, sm->w.rx,
                ms(ts_hist_percentile(&sm->w.rtt, 99)));
    }
    if (ts_soak_finish(s, ts_deadline(FINISH_MS)) == 0)
        b->finished = 1;
    ts_soak_totals(s, &b->tot);
    long rcvbuf1 = ts_host_udp_rcvbuf_errors();
    b->rcvbuf_errors = rcvbuf0 < 0 || rcvbuf1 < 0 ? -1 : rcvbuf1 - rcvbuf0;
    if (b->metrics_url[0]) {
        char why[256];
        b->ndrops = ts_scrape_sum_by(b->metrics_url, "sluice_drops_total", "reason", b->drops,
                                     MAX_REASONS, 5000, why, sizeof why);
        if (b->ndrops < 0)
            fprintf(stderr, "bench_soak: %s\n", why);
    }
    rc = b->finished && !b->tot.unexpected ? 0 : -1;
    if (!b->finished)
        snprintf(b->why, sizeof b->why, "tunnels still open %d s after the load",
                 FINISH_MS / 1000);
out:
    ts_soak_free(s);
    ev_loop_destroy(loop);
    /* Every client gone: the gateway's descriptors come back to the count
     * before the load once it has noticed the closes. */
    int64_t deadline = ts_deadline(STOP_FD_MS);
    do {
        b->fds_after = ts_pstat_fds(pid);
        if (b->fds_after <= b->fds_before)
            break;
        usleep(10000); /* polling /proc for a condition, with a deadline */
    } while (ts_now_ms() < deadline);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_soak --build DIR [--seconds S] [--window W] [--warmup N]\n"
               "  [--tunnels N] [--clients K] [--pps P] [--size B] [--churn PCT] [--workers W]"
               " [--out FILE]\n"
               "  S: $SOAK_SECONDS or 3600; W: min(60, S/10) s; N 1000;"
               " K 100; P 50; B 200; PCT 1 (per second); workers 2;\n"
               "  warm-up: 10 min of windows when S >= 1800, else 1 window\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"build", required_argument, NULL, 'b'},  {"seconds", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'}, {"warmup", required_argument, NULL, 'u'},
        {"tunnels", required_argument, NULL, 'n'}, {"clients", required_argument, NULL, 'k'},
        {"pps", required_argument, NULL, 'p'},    {"size", required_argument, NULL, 'z'},
        {"churn", required_argument, NULL, 'c'},  {"workers", required_argument, NULL, 'W'},
        {"out", required_argument, NULL, 'o'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static soak_bench_t b = {.seconds = 3600, .warmup = -1, .tunnels = 1000, .clients = 100,
                             .pps = 50, .size = 200, .churn = 0.01, .workers = 2,
                             .gw_exit = -1, .ndrops = -1, .rcvbuf_errors = -1};
    const char *out = NULL, *env = getenv("SOAK_SECONDS");
    long churn_pct100 = 100; /* hundredths of a percent */
    if (env && *env && ts_parse_long(env, 1, MAX_SECONDS, &b.seconds) != 0) {
        fprintf(stderr, "bench_soak: SOAK_SECONDS must be 1..%d\n", MAX_SECONDS);
        return 2;
    }
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'b': b.build = optarg; break;
        case 'o': out = optarg; break;
        case 's': bad = ts_parse_long(optarg, 1, MAX_SECONDS, &b.seconds); break;
        case 'w': bad = ts_parse_long(optarg, 1, 3600, &b.window); break;
        case 'u': bad = ts_parse_long(optarg, 0, 100, &b.warmup); break;
        case 'n': bad = ts_parse_long(optarg, 1, TS_SOAK_MAX_TUNNELS, &b.tunnels); break;
        case 'k': bad = ts_parse_long(optarg, 1, TS_SOAK_MAX_CLIENTS, &b.clients); break;
        case 'p': bad = ts_parse_long(optarg, 1, 1000, &b.pps); break;
        case 'z': bad = ts_parse_long(optarg, TS_SOAK_HDR, TS_SOAK_MAX_SIZE, &b.size); break;
        case 'c': {
            double v = strtod(optarg, NULL);
            bad = !(v >= 0 && v <= 100);
            churn_pct100 = (long)(v * 100 + 0.5);
            break;
        }
        case 'W': bad = ts_parse_long(optarg, 1, 16, &b.workers); break;
        case 'h': usage(stdout); return 0;
        default: bad = 1;
        }
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    if (!b.build) {
        usage(stderr);
        return 2;
    }
    b.churn = (double)churn_pct100 / 10000.0;
    if (!b.window)
        b.window = b.seconds / 10 > 60 ? 60 : b.seconds / 10 ? b.seconds / 10 : 1;
    /* Under churn the RSS climbs to a plateau for the first ~5,000 tunnel
     * replacements (docs/soak.md): a run of half an hour or more leaves its
     * first WARMUP_LONG_S out of the drift. */
    if (b.warmup < 0)
        b.warmup = b.seconds >= 1800 ? (WARMUP_LONG_S + b.window - 1) / b.window : 1;
    if (b.seconds / b.window > MAX_WINDOWS) {
        fprintf(stderr, "bench_soak: at most %d windows\n", MAX_WINDOWS);
        return 2;
    }
    b.s = calloc(MAX_WINDOWS, sizeof *b.s);
    if (!b.s)
        return 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char out_path[PATH_MAX], ca_file[PATH_MAX], config[PATH_MAX], secret[33];
    snprintf(out_path, sizeof out_path, "%s", out ? out : "");
    if (!out && ts_build_path(b.build, "bench/soak.md", out_path, sizeof out_path) < 0)
        return 1;
    if (ts_build_path(b.build, "dev/cert.pem", ca_file, sizeof ca_file) < 0)
        return 1;
    uint8_t raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return 1;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(secret + 2 * i, 3, "%02x", raw[i]);
    /* The echo serves the whole run (its default bound is 10 minutes), with
     * room for opening, the drain and stopping. */
    ts_echo_t *echo = ts_echo_start_for(AF_INET, 0, echo_hook, NULL,
                                        (b.seconds + 300) * 1000);
    if (!echo) {
        fprintf(stderr, "bench_soak: cannot start the echo\n");
        return 1;
    }
    long per_conn = (b.tunnels + b.clients - 1) / b.clients;
    char limits[1024];
    snprintf(limits, sizeof limits,
             "{\"max_connections\":%ld,\"max_tunnels\":%ld,\"max_streams\":%ld,"
             "\"max_pending_per_source\":100000,\"handshakes_per_source_s\":1000000,"
             "\"max_control_frames_s\":1000000,"
             "\"conn_idle_ms\":600000,\"tunnel_idle_ms\":600000}",
             b.clients + 64, 2 * b.tunnels + 64, 2 * per_conn + 16);
    const char *secrets[] = {secret, NULL};
    ts_config_t cfg = {
        .build = b.build,
        .listen = {"127.0.0.1:0"},
        .region = "local",
        .regions = {{.name = "local", .sfu = TS_POOL(ts_echo_addr_str(echo)),
                     .sfu_health = "\"probe\":\"none\""}},
        .tenants = {{.id = TENANT, .secrets = {secrets[0]}, .hash = "sha1", .max_ttl = CRED_TTL_S,
                     .regions = {"local"}, .kinds = {"sfu"}}},
        .limits_json = limits,
        .admin_json = "{\"listen\":\"127.0.0.1:0\",\"tokens\":[{\"token\":\"" ADMIN_TOKEN "\"}]}",
        .workers = (unsigned)b.workers,
    };
    if (ts_config_write(&cfg, config, sizeof config) < 0) {
        fprintf(stderr, "bench_soak: cannot write a config (is %s a build dir?)\n", b.build);
        ts_echo_stop(echo);
        return 1;
    }
    fprintf(stderr, "bench_soak: %ld s, %ld tunnels x %ld pkt/s, windows of %ld s\n",
            b.seconds, b.tunnels, b.pps, b.window);
    ts_gateway_t gw;
    int rc = -1;
    char admin[64];
    if (ts_gateway_start(&gw, b.build, config, ts_deadline(START_MS)) < 0) {
        snprintf(b.why, sizeof b.why, "sluiced did not get ready");
    } else if (ts_gateway_admin_addr(&gw, admin, sizeof admin, ts_deadline(START_MS)) < 0) {
        snprintf(b.why, sizeof b.why, "sluiced did not say where its admin listener is");
    } else {
        snprintf(b.metrics_url, sizeof b.metrics_url, "http://%s/metrics", admin);
        rc = run(&b, &gw, ca_file, secret);
    }
    if (gw.proc.pid > 0)
        b.gw_exit = ts_gateway_stop(&gw, ts_deadline(STOP_MS));
    ts_gateway_dispose(&gw);
    ts_echo_stop(echo);
    report(&b, out_path);
    free(b.s);
    return rc == 0 && b.gw_exit == 0 ? 0 : 1;
}
