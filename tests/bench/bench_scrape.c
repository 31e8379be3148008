/*
 * bench_scrape.c — `make bench`: how long one /metrics page takes to render
 * (gateway/metrics.c) as the number of tenants with traffic grows, and how
 * large it is. The render runs on the event loop, so its time is the longest
 * a scrape can hold up packet forwarding.
 *
 *   bench_scrape [--tenants N,N,...] [--rounds R] [--out FILE]
 *
 * For each N: a server whose stats table holds N tenants x 2 kinds with
 * traffic, 64 backends and filled histograms; R scrapes (default 50) as the
 * admin listener makes them: the copy (metrics_scrape_new), then 32 KiB
 * slices (metrics_scrape_next) until the page is done. What holds the loop
 * is the copy and one slice at a time: the report gives both (median and
 * slowest), the whole page's time and its size, as Markdown to stdout and to
 * FILE (default build/bench/scrape.md). Bounded: at most 20,000 tenants and
 * 1,000 rounds.
 *
 * Exit status: 0, or 2 for bad arguments.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../gateway/metrics.h"
#include "../../gateway/stats.h"

#define TENANTS_MAX 20000u
#define ROUNDS_MAX 1000u

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A server with n tenants' worth of counters; only what the page reads
 * (the config only for readiness: its region and pools). */
static void fill(server_t *s, unsigned n, backend_t *backends, size_t nbackends)
{
    memset(s, 0, sizeof *s);
    static const char json[] =
        "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"},"
        "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"builtin:echo\"]}},"
        "\"tenants\":[]}";
    char err[256];
    if (!(s->cfg = config_parse(json, sizeof json - 1, NULL, err, sizeof err))) {
        fprintf(stderr, "bench_scrape: %s\n", err);
        exit(1);
    }
    for (unsigned i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "tenant-%05u", i);
        for (int k = 0; k < TUNNEL_KIND_COUNT; k++) {
            stats_entry_t *e = stats_hold(&s->stats, id, (enum tunnel_kind)k);
            if (!e) {
                fprintf(stderr, "bench_scrape: out of memory\n");
                exit(1);
            }
            e->opened = 100 + i;
            e->traffic.up_packets = 1000003ull * (i + 1);
            e->traffic.down_bytes = 7000001ull * (i + 1);
            e->traffic.drops[DROP_MEDIA_EXPIRED] = i;
        }
    }
    for (size_t i = 0; i < nbackends; i++) {
        snprintf(backends[i].name, sizeof backends[i].name, "10.0.%zu.%zu:3478", i / 250,
                 i % 250);
        backends[i].up = 1;
        backends[i].probes_sent = 1000;
    }
    s->backends.items = backends;
    s->backends.n = nbackends;
    for (uint64_t v = 1000; v < 2000000000ull; v = v * 3 / 2) {
        prom_hist_observe(&s->counters.up_residence, &counters_residence_bounds, v);
        prom_hist_observe(&s->counters.rtt, &counters_rtt_bounds, v * 10);
    }
}

int main(int argc, char **argv)
{
    const char *list = "10,100,1000,10000", *out = "build/bench/scrape.md";
    unsigned rounds = 50;
    static const struct option opts[] = {
        {"tenants", required_argument, NULL, 't'},
        {"rounds", required_argument, NULL, 'r'},
        {"out", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 't')
            list = optarg;
        else if (o == 'r')
            rounds = (unsigned)strtoul(optarg, NULL, 10);
        else if (o == 'o')
            out = optarg;
        else
            return 2;
    }
    if (rounds == 0 || rounds > ROUNDS_MAX) {
        fprintf(stderr, "bench_scrape: --rounds 1..%u\n", ROUNDS_MAX);
        return 2;
    }
    static char report[8192];
    size_t pos = 0;
    pos += (size_t)snprintf(report + pos, sizeof report - pos,
                            "| tenants with traffic | series on the page | page size | "
                            "copy, median / slowest | slowest 32 KiB slice, median / slowest "
                            "| whole page, median |\n|---|---|---|---|---|---|\n");
    static backend_t backends[64];
    metrics_info_t info = {.version = "bench", .start_time_s = 1764645000, .store_type = "etcd",
                           .store_up = 1, .store_revision = 42};
    char *copy = strdup(list);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        unsigned n = (unsigned)strtoul(tok, NULL, 10);
        if (n == 0 || n > TENANTS_MAX) {
            fprintf(stderr, "bench_scrape: tenants 1..%u\n", TENANTS_MAX);
            return 2;
        }
        server_t s;
        fill(&s, n, backends, sizeof backends / sizeof *backends);
        double *copy_ms = calloc(rounds, sizeof *copy_ms), *slice_ms = calloc(rounds, sizeof *slice_ms);
        double *page_ms = calloc(rounds, sizeof *page_ms);
        size_t size = 0, series = 0;
        for (unsigned r = 0; r < rounds; r++) {
            prom_buf_t b = {0};
            double t0 = now_ms();
            metrics_scrape_t *m = metrics_scrape_new(&s, &info);
            double t1 = now_ms(), worst = 0;
            copy_ms[r] = t1 - t0;
            int rc = m ? 1 : -1;
            while (rc == 1) {
                /* As the listener does: each slice goes to the socket and
                 * the buffer is reused (only counted here). */
                b.len = 0;
                double a0 = now_ms();
                rc = metrics_scrape_next(m, &b, 32 * 1024);
                double d = now_ms() - a0;
                worst = d > worst ? d : worst;
                size += b.len;
                for (size_t i = 0; i < b.len; i++)
                    series += b.p[i] == '\n' && i + 1 < b.len && b.p[i + 1] != '#';
            }
            if (rc < 0) {
                fprintf(stderr, "bench_scrape: render failed\n");
                return 1;
            }
            metrics_scrape_free(m);
            slice_ms[r] = worst;
            page_ms[r] = now_ms() - t0;
            prom_buf_free(&b);
        }
        size /= rounds;
        series /= rounds;
        qsort(copy_ms, rounds, sizeof *copy_ms, cmp_double);
        qsort(slice_ms, rounds, sizeof *slice_ms, cmp_double);
        qsort(page_ms, rounds, sizeof *page_ms, cmp_double);
        pos += (size_t)snprintf(report + pos, sizeof report - pos,
                                "| %u | %zu | %.1f KiB | %.3f / %.3f ms | %.3f / %.3f ms | "
                                "%.2f ms |\n",
                                n, series, (double)size / 1024, copy_ms[rounds / 2],
                                copy_ms[rounds - 1], slice_ms[rounds / 2], slice_ms[rounds - 1],
                                page_ms[rounds / 2]);
        free(copy_ms);
        free(slice_ms);
        free(page_ms);
        stats_dispose(&s.stats);
        config_unref(s.cfg);
    }
    free(copy);
    fputs(report, stdout);
    FILE *f = fopen(out, "w");
    if (f) {
        fputs(report, f);
        fclose(f);
    }
    return 0;
}
