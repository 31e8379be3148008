/*
 * demo.c — sluice-demo: one round trip of RTP-sized packets through
 * sluice-shim -> sluiced -> sluiced's built-in echo, with loss and RTT.
 *
 *   sluice-demo --build DIR [--packets N] [--interval-ms MS] [--size BYTES]
 *
 * Starts sluiced (port 0, built-in echo) and sluice-shim from DIR, sends N RTP
 * packets (default 500 x 172 bytes, one every 10 ms) from one UDP socket,
 * matches replies by extended sequence number, prints the counts and RTT
 * percentiles, stops both processes and exits. Bounded: N <= 100000, the run
 * lasts at most N x interval plus a 2 s drain.
 *
 * Exit status: 0 when the run completed, at least one packet came back and
 * both processes exited 0 on SIGTERM; 1 otherwise; 2 for bad arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_flow.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define DEMO_TENANT "demo"
#define DEMO_SSRC 0x736c7563u
#define START_MS 15000
#define STOP_MS 10000
#define DRAIN_MS 2000
#define SAMPLES_PER_TICK 160u /* RTP timestamp step: 20 ms at 8 kHz */

typedef struct demo_opts {
    const char *build;
    long packets;
    long interval_ms;
    long size;
} demo_opts_t;

typedef struct demo_stats {
    size_t sent, received, duplicates, corrupt, foreign;
    int64_t *sent_ns;  /* per packet; 0 = not sent */
    int64_t *rtt_ns;   /* per packet; -1 = no reply */
} demo_stats_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice-demo --build DIR [--packets N] [--interval-ms MS] "
               "[--size BYTES]\n"
               "  --packets N       packets to send, 1..100000 (500)\n"
               "  --interval-ms MS  gap between packets, 0..1000 (10)\n"
               "  --size BYTES      UDP payload size, 16..1400 (172)\n");
}

static int parse_args(int argc, char **argv, demo_opts_t *o)
{
    static const struct option longopts[] = {
        {"build", required_argument, NULL, 'b'},
        {"packets", required_argument, NULL, 'n'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"size", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (demo_opts_t){.packets = 500, .interval_ms = 10, .size = 172};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'b':
            o->build = optarg;
            break;
        case 'n':
            bad = ts_parse_long(optarg, 1, 100000, &o->packets);
            break;
        case 'i':
            bad = ts_parse_long(optarg, 0, 1000, &o->interval_ms);
            break;
        case 's':
            bad = ts_parse_long(optarg, TS_RTP_HEADER + 4, 1400, &o->size);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "sluice-demo: bad value for an option\n");
            usage(stderr);
            return -1;
        }
    }
    if (!o->build || optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* A random secret as hex, so no fixed secret is ever configured. */
static int random_secret(char *out, size_t cap)
{
    uint8_t raw[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, raw, sizeof raw);
    close(fd);
    if (n != (ssize_t)sizeof raw || cap < 2 * sizeof raw + 1)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n), in milliseconds. */
static double pct_ms(const int64_t *v, size_t n, double p)
{
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e6;
}

static size_t make_packet(uint8_t *buf, const demo_opts_t *o, size_t i)
{
    return ts_pkt_rtp(buf, TS_PKT_MAX, (size_t)o->size, (uint16_t)i,
                      (uint32_t)(i * SAMPLES_PER_TICK), DEMO_SSRC, (uint32_t)i);
}

static void take_reply(demo_stats_t *st, const demo_opts_t *o, const uint8_t *buf, size_t len)
{
    uint8_t want[TS_PKT_MAX];
    if (len < TS_RTP_HEADER + 4 || buf[0] != 0x80 || ts_get32(buf + 8) != DEMO_SSRC) {
        st->foreign++; /* a primer echo or something unexpected */
        return;
    }
    /* The 16-bit RTP sequence number wraps; the 32-bit index after the header
     * extends it. */
    uint32_t i = ts_get32(buf + TS_RTP_HEADER);
    if (i >= (uint32_t)o->packets || !st->sent_ns[i] ||
        (uint16_t)((buf[2] << 8) | buf[3]) != (uint16_t)i) {
        st->foreign++;
        return;
    }
    size_t wlen = make_packet(want, o, i);
    if (wlen != len || memcmp(want, buf, len) != 0) {
        st->corrupt++;
        return;
    }
    if (st->rtt_ns[i] >= 0) {
        st->duplicates++;
        return;
    }
    st->rtt_ns[i] = ts_now_ns() - st->sent_ns[i];
    st->received++;
}

static void drain(int fd, demo_stats_t *st, const demo_opts_t *o, int64_t until_ms)
{
    uint8_t buf[TS_PKT_MAX + 1];
    for (;;) {
        /* Bounded per wakeup; the outer loop is bounded by until_ms. */
        for (int k = 0; k < 256; k++) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0)
                break;
            take_reply(st, o, buf, (size_t)n);
        }
        int left = ts_remaining_ms(until_ms);
        if (left == 0)
            return;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, left);
    }
}

static int run_traffic(int fd, const ts_addr_t *shim, const demo_opts_t *o, demo_stats_t *st)
{
    uint8_t pkt[TS_PKT_MAX];
    int64_t t0 = ts_now_ms();
    for (size_t i = 0; i < (size_t)o->packets; i++) {
        drain(fd, st, o, t0 + (int64_t)i * o->interval_ms);
        size_t len = make_packet(pkt, o, i);
        st->sent_ns[i] = ts_now_ns();
        if (ts_udp_send(fd, shim, pkt, len) == 0)
            st->sent++;
        else
            st->sent_ns[i] = 0;
    }
    /* Wait for stragglers, but not past the moment everything is back. */
    int64_t end = ts_deadline(DRAIN_MS);
    while (st->received + st->corrupt < st->sent && ts_remaining_ms(end) > 0)
        drain(fd, st, o, ts_now_ms() + 50 < end ? ts_now_ms() + 50 : end);
    return 0;
}

static void report(const demo_stats_t *st, const demo_opts_t *o)
{
    size_t lost = st->sent - st->received;
    double loss = st->sent ? 100.0 * (double)lost / (double)st->sent : 0.0;
    printf("sent %zu  received %zu  lost %zu (%.2f %%)  duplicates %zu  corrupt %zu\n",
           st->sent, st->received, lost, loss, st->duplicates, st->corrupt);
    if (st->received == 0) {
        printf("rtt ms  (no replies)\n");
        return;
    }
    int64_t *v = malloc(st->received * sizeof *v);
    if (!v)
        return;
    size_t n = 0;
    for (size_t i = 0; i < (size_t)o->packets; i++)
        if (st->rtt_ns[i] >= 0)
            v[n++] = st->rtt_ns[i];
    qsort(v, n, sizeof *v, cmp_i64);
    printf("rtt ms  min %.3f  p50 %.3f  p95 %.3f  p99 %.3f  max %.3f\n", (double)v[0] / 1e6,
           pct_ms(v, n, 50), pct_ms(v, n, 95), pct_ms(v, n, 99), (double)v[n - 1] / 1e6);
    free(v);
}

int main(int argc, char **argv)
{
    demo_opts_t o;
    if (parse_args(argc, argv, &o) < 0)
        return 2;

    int rc = 1, fd = -1;
    ts_gateway_t gw;
    ts_shim_t shim;
    int gw_started = 0, shim_started = 0;
    demo_stats_t st = {0};
    char secret[64], config[PATH_MAX], url[128];

    setvbuf(stdout, NULL, _IOLBF, 0);
    st.sent_ns = calloc((size_t)o.packets, sizeof *st.sent_ns);
    st.rtt_ns = malloc((size_t)o.packets * sizeof *st.rtt_ns);
    if (!st.sent_ns || !st.rtt_ns || random_secret(secret, sizeof secret) < 0) {
        fprintf(stderr, "sluice-demo: out of memory or no /dev/urandom\n");
        goto out;
    }
    for (size_t i = 0; i < (size_t)o.packets; i++)
        st.rtt_ns[i] = -1;

    ts_config_t c = {
        .build = o.build,
        .listen = {"127.0.0.1:0"},
        .region = "local",
        .regions = {{.name = "local", .sfu = TS_POOL("builtin:echo")}},
        .tenants = {{.id = DEMO_TENANT, .secrets = {secret}, .hash = "sha1", .max_ttl = 3600,
                     .regions = {"local"}, .kinds = {"sfu"}}},
    };
    if (ts_config_write(&c, config, sizeof config) < 0) {
        fprintf(stderr, "sluice-demo: cannot write a config (is %s a build dir?)\n", o.build);
        goto out;
    }
    gw_started = 1;
    if (ts_gateway_start(&gw, o.build, config, ts_deadline(START_MS)) < 0) {
        fprintf(stderr, "sluice-demo: sluiced did not get ready\n");
        goto out;
    }
    ts_gateway_url(&gw, 0, "", url, sizeof url);
    ts_shim_opts_t so = {.build = o.build, .gateway = url, .tenant = DEMO_TENANT,
                         .kind = "sfu", .secret = secret, .listen = "127.0.0.1:0"};
    shim_started = 1;
    if (ts_shim_start(&shim, &so, ts_deadline(START_MS)) < 0) {
        fprintf(stderr, "sluice-demo: sluice-shim did not connect\n");
        goto out;
    }
    char echo[64] = "none";
    if (gw.has_echo)
        ts_addr_str(&gw.echo, echo, sizeof echo);
    printf("sluice-demo: sluiced %s (built-in echo %s), sluice-shim %s\n", gw.listen_str[0], echo,
           shim.listen_str);

    fd = ts_udp_bind(AF_INET, NULL);
    if (fd < 0) {
        fprintf(stderr, "sluice-demo: cannot bind a UDP socket: %s\n", strerror(errno));
        goto out;
    }
    int64_t t_open = ts_now_ns();
    if (ts_flow_prime(fd, &shim.listen, 250, ts_deadline(START_MS)) < 0) {
        fprintf(stderr, "sluice-demo: no echo through the tunnel within %d ms\n", START_MS);
        goto out;
    }
    printf("sluice-demo: tunnel open, first echo after %.3f ms\n",
           (double)(ts_now_ns() - t_open) / 1e6);
    printf("sluice-demo: sending %ld x %ld bytes every %ld ms\n", o.packets, o.size,
           o.interval_ms);
    run_traffic(fd, &shim.listen, &o, &st);
    report(&st, &o);
    rc = st.received > 0 ? 0 : 1;

out:
    if (fd >= 0)
        close(fd);
    if (shim_started) {
        int code = ts_shim_stop(&shim, ts_deadline(STOP_MS));
        printf("sluice-demo: sluice-shim exit %d\n", code);
        if (code != 0)
            rc = 1;
        ts_shim_dispose(&shim);
    }
    if (gw_started) {
        int code = ts_gateway_stop(&gw, ts_deadline(STOP_MS));
        printf("sluice-demo: sluiced exit %d\n", code);
        if (code != 0)
            rc = 1;
        ts_gateway_dispose(&gw);
    }
    free(st.sent_ns);
    free(st.rtt_ns);
    return rc;
}
