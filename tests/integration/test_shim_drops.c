/*
 * test_shim_drops.c — sluice-shim counts every packet it did not relay, by
 * reason, including what the kernel dropped before it read (client-shim/cli/
 * main.c, cli_tell_drops; docs/shim.md, "Drops").
 *
 * The shim is stopped (SIGSTOP) while the app sends more than the shim's UDP
 * socket holds, then continued. What may be lost: what the kernel dropped
 * and whatever a queue dropped, each counted; the shim's exit line plus
 * sluiced's uplink drop counters plus what reached the backend must add up
 * to what the app sent.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_fixture.h"
#include "../support/ts_pkt.h"
#include "../support/ts_scrape.h"
#include "../support/ts_util.h"

#define SEQ_MARKER 900000u /* above every other sequence number sent */
#define BLAST 6000u        /* 200 B datagrams: more than the shim's 1 MiB socket buffer holds */

static ts_fixture_t fx;
static char metrics_url[128];

/* sluiced's uplink drops (sluice_drops_total of the uplink's reasons). */
static double uplink_drops(void)
{
    static const char *const uplink[] = {"uplink_expired", "uplink_send", "backend_error", NULL};
    double total;
    char why[256];
    cr_assert_eq(ts_scrape_total(metrics_url, "sluice_drops_total", "reason", uplink, &total,
                                 5000, why, sizeof why),
                 0, "%s", why);
    return total;
}


static int roomy_backend(void *ud, int fd, const uint8_t *p, size_t len, const ts_addr_t *src)
{
    static int done;
    if (!done) {
        int v = 16 << 20;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
        done = 1;
    }
    return 0;
}

static void teardown_fx(void)
{
    ts_fixture_teardown(&fx);
}

/* "... dropped N packets: tunnel queues A, app socket receive queue B, to the
 * app C, flow table full D, oversize E, refused flow F" */
static int parse_drops(const char *text, unsigned long long v[7])
{
    const char *p = strstr(text, "sluice-shim: dropped ");
    return p && sscanf(p,
                       "sluice-shim: dropped %llu packets: tunnel queues %llu, app socket "
                       "receive queue %llu, to the app %llu, flow table full %llu, oversize "
                       "%llu, refused flow %llu",
                       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]) == 7
               ? 0
               : -1;
}

Test(shim_drops, every_packet_not_relayed_is_counted_by_reason, .fini = teardown_fx,
     .timeout = 60)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    /* The standard fixture, with a backend whose socket holds the whole
     * blast: its own kernel drops would be nobody's count. */
    memset(&fx, 0, sizeof fx);
    fx.family = AF_INET;
    fx.echo = ts_echo_start_hooked(AF_INET, roomy_backend, NULL);
    cr_assert_not_null(fx.echo);
    ts_config_t c;
    ts_fixture_std_config(&c, AF_INET, ts_echo_addr_str(fx.echo));
    c.admin_json = "{\"listen\":\"127.0.0.1:0\",\"tokens\":[{\"token\":\"overload-token-0123\"}]}";
    cr_assert_geq(ts_config_write(&c, fx.config, sizeof fx.config), 0);
    fx.gw_started = 1;
    cr_assert_eq(ts_gateway_start(&fx.gw, NULL, fx.config, ts_deadline(ts_ms(10000))), 0,
                 "sluiced did not start");
    char admin[64];
    cr_assert_eq(ts_gateway_admin_addr(&fx.gw, admin, sizeof admin, ts_deadline(ts_ms(5000))), 0);
    snprintf(metrics_url, sizeof metrics_url, "http://%s/metrics", admin);
    ts_shim_t *shim;
    int app;
    const char *why = "";
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim, &app, &why), 0, "%s", why);
    /* The app reads the echoes only at the end: room for all of them. */
    int big = 16 << 20;
    if (setsockopt(app, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
        setsockopt(app, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    uint64_t before = ts_echo_packets(fx.echo);
    double gw_before = uplink_drops();

    /* While the shim is stopped the app sends more than its socket holds:
     * the kernel drops the rest, which the shim must count (SO_RXQ_OVFL). */
    cr_assert_eq(ts_proc_signal(&shim->proc, SIGSTOP), 0);
    uint8_t pkt[200];
    for (uint32_t i = 0; i < BLAST; i++) {
        ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, (uint16_t)i, i * 160, 9, i);
        cr_assert_eq(ts_udp_send(app, &shim->listen, pkt, sizeof pkt), 0);
    }
    cr_assert_eq(ts_proc_signal(&shim->proc, SIGCONT), 0);

    /* A marker after the blast: once its echo is back, the shim has dealt
     * with everything before it, and the backend has seen all it will. The
     * socket may still be full when it comes: sent again until one is back
     * (each one counts as sent). */
    int64_t deadline = ts_deadline(ts_ms(20000));
    uint32_t markers = 0;
    int marker = 0;
    while (!marker) {
        cr_assert_lt(ts_now_ms(), deadline, "no marker's echo came back");
        ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, 0xffff, 0, 9, SEQ_MARKER);
        cr_assert_eq(ts_udp_send(app, &shim->listen, pkt, sizeof pkt), 0);
        markers++;
        uint8_t in[256];
        ssize_t n;
        while (!marker && (n = ts_udp_recv(app, in, sizeof in, ts_deadline(ts_ms(200)), NULL)) > 0)
            marker = n >= (ssize_t)TS_RTP_HEADER + 4 && ts_get32(in + TS_RTP_HEADER) == SEQ_MARKER;
    }
    uint64_t relayed = ts_echo_packets(fx.echo) - before;
    double gw_dropped = uplink_drops() - gw_before;
    close(app);

    const char *what = "";
    int code = 0;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
    char *err = ts_read_file(shim->proc.err_path, 1 << 20, NULL);
    unsigned long long v[7];
    cr_assert(err && parse_drops(err, v) == 0, "no drop line from the shim:\n%s", err ? err : "");
    free(err);
    cr_assert_gt(v[2], 0, "the kernel dropped nothing? (sent %u)", BLAST);
    cr_assert_eq(v[0], v[1] + v[2] + v[3] + v[4] + v[5] + v[6]);
    /* Every datagram the app sent reached the backend or was counted, by
     * the shim or by sluiced. */
    cr_assert_eq(relayed + v[1] + v[2] + v[4] + v[5] + v[6] + (uint64_t)gw_dropped,
                 BLAST + markers,
                 "relayed %llu, shim dropped %llu (queues %llu, socket %llu), sluiced dropped "
                 "%.0f: %u sent",
                 (unsigned long long)relayed, v[0], v[1], v[2], gw_dropped, BLAST + markers);
}
