/*
 * test_turn.c — sluice's main real-world use with real pieces on loopback: a
 * TURN client (coturn's turnutils_uclient) pointed at sluice-shim's local UDP
 * port, through sluiced, to a real TURN server (coturn's turnserver) as the
 * `turn` backend, relaying to turnutils_peer (a UDP echo) and back:
 *
 *   uclient -> shim --kind turn -> sluiced -> turnserver -> relay -> peer
 *
 * uclient allocates (RFC 8656 §7, with the long-term credential's 401 round
 * trip), installs permissions, and sends n messages per allocation, either in
 * ChannelData messages after a ChannelBind (§12) or in Send indications
 * (§11, uclient -s); the peer echoes each one back the same way. The test
 * asserts uclient's own totals (every message sent came back) and, from
 * turnserver's log, which of the two mechanisms the run really used.
 *
 * uclient's flags: -n messages per allocation, -m clients, -l message length,
 * -u/-w the TURN user, -e/-r the peer, -p the server port (here the shim's),
 * -c no RTCP allocation (one allocation per client instead of an RTP/RTCP
 * pair), -s Send indications instead of channels. A run lasts a few seconds
 * (uclient paces itself); each is bounded by UCLIENT_MS.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../support/ts_config.h"
#include "../support/ts_coturn.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define START_MS 10000
#define STOP_MS 5000
#define UCLIENT_MS 20000
#define MESSAGES 20
#define STR_(x) #x
#define STR(x) STR_(x)
#define MSG_LEN "160"

static ts_coturn_t turn;
static ts_turn_peer_t peer;
static ts_gateway_t gw;
static ts_shim_t shim;

static void setup(void)
{
    memset(&turn, 0, sizeof turn);
    memset(&peer, 0, sizeof peer);
    memset(&gw, 0, sizeof gw);
    memset(&shim, 0, sizeof shim);
}

static void teardown(void)
{
    ts_shim_dispose(&shim);
    ts_gateway_dispose(&gw);
    ts_turn_peer_dispose(&peer);
    ts_coturn_dispose(&turn);
}

/* turnserver + peer, a gateway whose turn pool is that turnserver, one shim
 * (--kind turn) connected to it. */
static void start_all(void)
{
    cr_assert(ts_coturn_available(), "coturn is not installed (%s, %s, %s); "
              "sh .ci/bootstrap installs it", TS_COTURN_BIN, TS_COTURN_PEER_BIN,
              TS_COTURN_UCLIENT_BIN);
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_coturn_start(&turn, ts_deadline(ts_ms(START_MS))), 0,
                 "turnserver did not start (its output is above)");
    cr_assert_eq(ts_turn_peer_start(&peer, ts_deadline(ts_ms(START_MS))), 0,
                 "turnutils_peer did not start (its output is above)");

    ts_config_t c;
    char config[PATH_MAX], url[128];
    ts_config_turn(&c, turn.listen_str);
    cr_assert_eq(ts_config_write(&c, config, sizeof config), 0);
    cr_assert_eq(ts_gateway_start(&gw, NULL, config, ts_deadline(ts_ms(START_MS))), 0,
                 "sluiced did not print its ready line (its output is above)");
    cr_assert_eq(ts_gateway_url(&gw, 0, "", url, sizeof url), 0);
    ts_shim_opts_t o = {
        .gateway = url,
        .tenant = TS_TURN_TENANT,
        .kind = "turn",
        .secret = TS_TURN_SECRET,
    };
    cr_assert_eq(ts_shim_start(&shim, &o, ts_deadline(ts_ms(START_MS))), 0,
                 "sluice-shim did not connect (its output is above)");
}

static void stop_all(void)
{
    int code = ts_shim_stop(&shim, ts_deadline(ts_ms(STOP_MS)));
    cr_expect_eq(code, 0, "sluice-shim exited with %d after SIGTERM", code);
    code = ts_gateway_stop(&gw, ts_deadline(ts_ms(STOP_MS)));
    cr_expect_eq(code, 0, "sluiced exited with %d after SIGTERM", code);
    cr_expect_eq(ts_turn_peer_stop(&peer, ts_deadline(ts_ms(STOP_MS))), 0);
    cr_expect_eq(ts_coturn_stop(&turn, ts_deadline(ts_ms(STOP_MS))), 0);
}

typedef struct uclient_totals {
    long sent, received, lost;
} uclient_totals_t;

/* Finds uclient's closing summary in text: "start_mclient: tot_send_msgs=S,
 * tot_recv_msgs=R" (the periodic progress lines have "msz=" in between, so
 * they do not match) and "Total lost packets L". Returns 0 or -1. */
static int parse_totals(const char *text, uclient_totals_t *t)
{
    const char *s = strstr(text, "start_mclient: tot_send_msgs=");
    const char *l = strstr(text, "Total lost packets ");
    if (!s || !l ||
        sscanf(s, "start_mclient: tot_send_msgs=%ld, tot_recv_msgs=%ld", &t->sent,
               &t->received) != 2 ||
        sscanf(l, "Total lost packets %ld", &t->lost) != 1)
        return -1;
    return 0;
}

/* Runs turnutils_uclient with flags (NULL-terminated) against the shim's local
 * port, MESSAGES per allocation, and returns its totals. */
static void run_uclient(const char *const *flags, uclient_totals_t *t, int64_t *took_ms)
{
    char port[16], peer_port[16];
    snprintf(port, sizeof port, "%u", ts_addr_port(&shim.listen));
    snprintf(peer_port, sizeof peer_port, "%u", ts_addr_port(&peer.addr));
    char *argv[32];
    size_t n = 0;
    argv[n++] = TS_COTURN_UCLIENT_BIN;
    for (size_t i = 0; flags[i] && n < 16; i++)
        argv[n++] = (char *)flags[i];
    const char *rest[] = {"-u", TS_COTURN_USER, "-w", TS_COTURN_PASSWORD,
                          "-e", "127.0.0.1", "-r", peer_port,
                          "-n", STR(MESSAGES), "-m", "1", "-l", MSG_LEN,
                          "-p", port, "127.0.0.1", NULL};
    for (size_t i = 0; rest[i]; i++)
        argv[n++] = (char *)rest[i];
    argv[n] = NULL;

    ts_run_t r;
    int64_t t0 = ts_now_ms();
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(UCLIENT_MS)), &r), 0,
                 "cannot run %s", TS_COTURN_UCLIENT_BIN);
    *took_ms = ts_now_ms() - t0;
    int ok = !r.timed_out && r.code == 0 && (parse_totals(r.out, t) == 0 ||
                                             parse_totals(r.err, t) == 0);
    if (!ok)
        fprintf(stderr, "==== turnutils_uclient (exit %d%s) stdout:\n%s---- stderr:\n%s====\n",
                r.code, r.timed_out ? ", timed out" : "", r.out, r.err);
    int code = r.code, timed_out = r.timed_out;
    ts_run_free(&r);
    cr_assert_not(timed_out, "turnutils_uclient did not finish within %d ms", UCLIENT_MS);
    cr_assert_eq(code, 0, "turnutils_uclient exited with %d (output above)", code);
    cr_assert(ok, "no totals in turnutils_uclient's output (above)");
}

static void expect_all_back(const uclient_totals_t *t, long expected, const char *how,
                            int64_t took_ms)
{
    cr_expect_eq(t->sent, expected, "%s: uclient sent %ld messages, expected %ld", how, t->sent,
                 expected);
    cr_expect_eq(t->received, t->sent,
                 "%s: %ld of %ld messages came back through shim -> sluiced -> turnserver -> "
                 "peer and back (uclient counts %ld lost)",
                 how, t->received, t->sent, t->lost);
    cr_expect_eq(t->lost, 0, "%s: uclient counts %ld lost", how, t->lost);
    cr_log_info("%s: %ld/%ld messages back in a %lld ms run", how, t->received, t->sent,
                (long long)took_ms);
}

Test(turn, uclient_through_sluice_with_channels, .init = setup, .fini = teardown,
     .timeout = 60)
{
    start_all();
    size_t mark = ts_coturn_log_mark(&turn);
    /* Without -c uclient makes an RTP and an RTCP allocation: two local
     * sockets, so two tunnels over the shim's one connection. */
    const char *flags[] = {NULL};
    uclient_totals_t t;
    int64_t took;
    run_uclient(flags, &t, &took);
    expect_all_back(&t, 2L * MESSAGES, "channels", took);

    cr_expect_eq(ts_coturn_log_wait(&turn, mark, "ALLOCATE processed, success",
                                    ts_deadline(ts_ms(2000))), 0,
                 "turnserver logged no successful Allocate (log above)");
    cr_expect_gt(ts_coturn_log_count(&turn, mark, "CHANNEL_BIND processed, success"), 0,
                 "turnserver logged no ChannelBind: the run did not use channels");
    int conns = ts_tcp_count_conns(shim.proc.pid, ts_addr_port(&gw.listen[0]));
    cr_expect_eq(conns, 1, "sluice-shim holds %d connections to the gateway, expected 1",
                 conns);
    stop_all();
}

Test(turn, uclient_through_sluice_with_send_indications, .init = setup, .fini = teardown,
     .timeout = 60)
{
    start_all();
    size_t mark = ts_coturn_log_mark(&turn);
    const char *flags[] = {"-s", "-c", NULL};
    uclient_totals_t t;
    int64_t took;
    run_uclient(flags, &t, &took);
    expect_all_back(&t, MESSAGES, "send indications", took);

    cr_expect_eq(ts_coturn_log_wait(&turn, mark, "CREATE_PERMISSION processed, success",
                                    ts_deadline(ts_ms(2000))), 0,
                 "turnserver logged no CreatePermission (log above)");
    size_t binds = ts_coturn_log_count(&turn, mark, "CHANNEL_BIND");
    cr_expect_eq(binds, 0, "turnserver logged %zu ChannelBinds in a Send-indication run", binds);
    stop_all();
}
