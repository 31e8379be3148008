/*
 * bench_attack.c — `make attack`: every attack of issue 10 §3 against a real
 * sluiced while a legitimate call runs on its own connection, measured in the
 * same run (docs/attacks.md).
 *
 *   bench_attack --build DIR [--conns N] [--only NAME] [--out FILE]
 *
 * For each attack (tests/support/ts_attack.c), on a fresh sluiced with the
 * default limits except 2 s handshake, header and write-stall timeouts
 * (TS_ATTACK_LIMITS): a sluice-shim carries the legitimate call (one tunnel,
 * 200 B at 50 pps, echoed by the backend, every packet's RTT recorded) for a
 * 3 s baseline, then the attack runs (the call's window lasting at least
 * 3 s), then sluiced is stopped. The table gives how the attacker was cut
 * (the GOAWAY it saw, or when the gateway closed its connections), the time
 * from the attack's start to the cut, the call's loss and RTT p99 (baseline
 * -> under attack), sluiced's RSS change over the attack and the log lines
 * it wrote meanwhile. Slowloris rows hold N connections (default 10,000).
 *
 * Exit status: 0 when every row was measured, its attacker cut, and each
 * sluiced exited 0; 1 otherwise; 2 for bad arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../support/ts_attack.h"
#include "../support/ts_report.h"
#include "../support/ts_util.h"

#define BASE_MS 3000
#define MIN_ATTACK_MS 3000
#define PACED_MS 3000 /* brute force and churn */
#define OPEN_PER_S 1000 /* slowloris connections opened per second */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_attack --build DIR [--conns N] [--only NAME] [--out FILE]\n"
               "  --conns N    slowloris connections (10000); bare TCP uses N / 5\n"
               "  --only NAME  run one attack\n"
               "  --out FILE   report file (DIR/bench/attack.md)\n");
}

static double ms(uint64_t ns)
{
    return ns / 1e6;
}

/* sluiced's CPU over the attack window, in % of one core. */
static double cpu_pct(const ts_attack_row_t *r)
{
    return r->window_ms > 0 ? 100.0 * (double)r->cpu_ns / 1e6 / (double)r->window_ms : 0;
}

static double loss_pct(const ts_acall_stats_t *s)
{
    return s->sent ? 100.0 * (double)(s->sent - (s->received < s->sent ? s->received : s->sent)) /
                         (double)s->sent
                   : 100.0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"build", required_argument, NULL, 'b'}, {"conns", required_argument, NULL, 'c'},
        {"only", required_argument, NULL, 'n'},  {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char *build = NULL, *out = NULL, *only = NULL;
    long conns = 10000;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'b')
            build = optarg;
        else if (c == 'o')
            out = optarg;
        else if (c == 'n')
            only = optarg;
        else if (c == 'c' && ts_parse_long(optarg, 1, 15000, &conns) == 0)
            continue;
        else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!build || optind != argc || (only && !ts_attack_find(only))) {
        usage(stderr);
        return 2;
    }
    char abs[PATH_MAX], out_path[PATH_MAX];
    if (!realpath(build, abs) || setenv("SLUICE_BUILD", abs, 1) < 0 ||
        (out ? snprintf(out_path, sizeof out_path, "%s", out)
             : ts_build_path(abs, "bench/attack.md", out_path, sizeof out_path)) < 0) {
        fprintf(stderr, "bench_attack: bad build directory %s\n", build);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);

    char load_start[64] = "";
    char *l0 = ts_read_file("/proc/loadavg", 256, NULL);
    if (l0) {
        snprintf(load_start, sizeof load_start, "%.*s", (int)strcspn(l0, " "), l0);
        free(l0);
    }
    static ts_attack_row_t rows[64];
    int bad = 0;
    for (size_t i = 0; i < ts_attacks_n && i < 64; i++) {
        const ts_attack_t *a = &ts_attacks[i];
        if (only && strcmp(only, a->name))
            continue;
        int slow = !strncmp(a->name, "slowloris", 9);
        ts_attack_env_t opts = {
            .conns = !strcmp(a->name, "bare_tcp") ? (size_t)conns / 5 : (size_t)conns,
            .open_per_s = slow ? OPEN_PER_S : 0, .duration_ms = PACED_MS};
        printf("bench_attack: %s ...\n", a->name);
        ts_attack_measure(a, slow ? TS_ATTACK_LIMITS_SLOW : TS_ATTACK_LIMITS, &opts, BASE_MS,
                          MIN_ATTACK_MS, &rows[i]);
        ts_attack_row_t *r = &rows[i];
        if (!r->ran)
            printf("  FAILED: %s\n", r->why);
        else
            printf("  %s; %.0f ms; loss %.2f %% -> %.2f %%; p99 %.2f -> %.2f ms; "
                   "RSS %+ld KiB; %zu log lines; sluiced CPU %.0f %%\n",
                   r->res.how, (double)r->res.cut_ms, loss_pct(&r->base), loss_pct(&r->during),
                   ms(r->base.p99_ns), ms(r->during.p99_ns),
                   r->rss_after_kb - r->rss_before_kb, r->log_lines, cpu_pct(r));
        if (!r->ran || !r->res.cut || !r->gw_ok)
            bad = 1;
    }

    char load_end[64] = "";
    char *la = ts_read_file("/proc/loadavg", 256, NULL);
    if (la) {
        snprintf(load_end, sizeof load_end, "%.*s", (int)strcspn(la, " "), la);
        free(la);
    }
    static char rep[65536];
    size_t pos = 0, cap = sizeof rep;
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    ts_appendf(rep, cap, &pos, "# sluice under attack (make attack)\n\n- date: %s\n", date);
    ts_report_machine(rep, cap, &pos);
    ts_appendf(rep, cap, &pos,
               "- method: a fresh sluiced per attack on loopback, limits `%s` (defaults "
               "otherwise); the legitimate call: one tunnel through sluice-shim, 200 B at "
               "50 pkt/s echoed, baseline %d s then at least %d s under attack; slowloris "
               "%ld connections from 127.1.0.0/16 (10 per source) opened at %d/s under limits "
               "`%s`; bare TCP %ld from "
               "127.0.0.1 as fast as they go; sluiced CPU in %% of one core over the attack "
               "window (it has `workers` = the 2 CPUs); RSS delta: after the attack minus before, "
               "(peak): VmHWM after it minus RSS before; the attacker runs at nice 19 on its "
               "own thread\n\n",
               TS_ATTACK_LIMITS, BASE_MS / 1000, MIN_ATTACK_MS / 1000, conns, OPEN_PER_S,
               TS_ATTACK_LIMITS_SLOW, conns / 5);
    ts_appendf(rep, cap, &pos,
               "- machine load: 1-minute load average %s at the start, %s at the end (the "
               "2 cores are shared: a noisy baseline p99 means another process ran)\n\n",
               load_start, load_end);
    ts_appendf(rep, cap, &pos,
               "| attack | how cut | time to cut | legit loss (base → attack) | legit p99 "
               "(base → attack) | added p99 | RSS delta (peak) | log lines | sluiced CPU |\n"
               "|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < ts_attacks_n && i < 64; i++) {
        const ts_attack_t *a = &ts_attacks[i];
        ts_attack_row_t *r = &rows[i];
        if (only && strcmp(only, a->name))
            continue;
        if (!r->ran) {
            ts_appendf(rep, cap, &pos, "| %s | not measured: %s | | | | | | | |\n", a->name,
                       r->why);
            continue;
        }
        ts_appendf(rep, cap, &pos,
                   "| %s | %s%s | %.1f s | %.1f %% → %.1f %% (%" PRIu64 "/%" PRIu64
                   " lost) | %.2f → %.2f ms | %+.2f ms | %+ld KiB (%+ld) | %zu | %.0f %% |\n",
                   a->name, r->res.cut ? "" : "**NOT CUT** ", r->res.how,
                   r->res.cut_ms / 1000.0, loss_pct(&r->base), loss_pct(&r->during),
                   r->during.sent - (r->during.received < r->during.sent ? r->during.received
                                                                         : r->during.sent),
                   r->during.sent, ms(r->base.p99_ns), ms(r->during.p99_ns),
                   ms(r->during.p99_ns) - ms(r->base.p99_ns),
                   r->rss_after_kb - r->rss_before_kb, r->hwm_after_kb - r->rss_before_kb,
                   r->log_lines, cpu_pct(r));
    }
    ts_appendf(rep, cap, &pos, "\nWhat each attack does:\n\n");
    for (size_t i = 0; i < ts_attacks_n; i++)
        if (!only || !strcmp(only, ts_attacks[i].name))
            ts_appendf(rep, cap, &pos, "- %s: %s\n", ts_attacks[i].name, ts_attacks[i].what);
    fputs(rep, stdout);
    if (ts_write_file(out_path, rep, pos) < 0)
        fprintf(stderr, "bench_attack: cannot write %s: %s\n", out_path, strerror(errno));
    else
        printf("report written to %s\n", out_path);
    return bad;
}
