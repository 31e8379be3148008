/*
 * test_turn_resume.c — issue 6 §3-§4: a TURN allocation survives a
 * forced reconnect. uclient -> shim -> [ts_cutter] -> sluiced -> turnserver ->
 * peer; while uclient's messages flow, the cutter resets the shim's TCP
 * connection; the shim reconnects through the cutter (its listener stays up)
 * and resumes its tunnels (tunnel-resume), so turnserver keeps seeing the same
 * gateway-side source address and the allocation, its permissions and its
 * channel binding carry on.
 *
 * Asserted: uclient finishes with at most MAX_LOST messages lost (the media
 * gap of the cut; reported in ms as lost x the 20 ms pacing), the shim
 * connected twice through the cutter, and turnserver answered no request with
 * 437 (Allocation Mismatch, RFC 8656 §7.2: what a new source port would get)
 * and made no allocation after the cut.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../support/ts_config.h"
#include "../support/ts_coturn.h"
#include "../support/ts_cutter.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define START_MS 10000
#define STOP_MS 5000
#define MESSAGES 250            /* at uclient's 20 ms pacing: 5 s of media */
#define PACING_MS 20
#define FLOWING_BYTES (40 * 160) /* about 40 messages' worth */
#define MAX_LOST 50             /* a gap of at most 1 s */
#define STR_(x) #x
#define STR(x) STR_(x)
/* A short first back-off: the gap is what the test measures. */
#define SHIM_RECONNECT_ARGS "--reconnect-min-ms", "50"

static ts_coturn_t turn;
static ts_turn_peer_t peer;
static ts_gateway_t gw;
static ts_shim_t shim;
static ts_cutter_t *cutter;

/* uclient runs to completion on a thread (ts_run collects its output) while
 * the test thread watches turnserver's log and cuts. */
typedef struct uclient_run {
    char *const *argv;
    ts_run_t r;
    int rc;
} uclient_run_t;

static void *uclient_main(void *arg)
{
    uclient_run_t *u = arg;
    u->rc = ts_run(u->argv, NULL, ts_deadline(ts_ms(30000)), &u->r);
    return NULL;
}

static void setup(void)
{
    memset(&turn, 0, sizeof turn);
    memset(&peer, 0, sizeof peer);
    memset(&gw, 0, sizeof gw);
    memset(&shim, 0, sizeof shim);
    cutter = NULL;
}

static void teardown(void)
{
    ts_shim_dispose(&shim);
    ts_cutter_stop(cutter);
    ts_gateway_dispose(&gw);
    ts_turn_peer_dispose(&peer);
    ts_coturn_dispose(&turn);
}

static void start_all(void)
{
    cr_assert(ts_coturn_available(), "coturn is not installed; sh .ci/bootstrap installs it");
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_coturn_start(&turn, ts_deadline(ts_ms(START_MS))), 0);
    cr_assert_eq(ts_turn_peer_start(&peer, ts_deadline(ts_ms(START_MS))), 0);
    ts_config_t c;
    char config[PATH_MAX], url[128];
    ts_config_turn(&c, turn.listen_str);
    cr_assert_eq(ts_config_write(&c, config, sizeof config), 0);
    cr_assert_eq(ts_gateway_start(&gw, NULL, config, ts_deadline(ts_ms(START_MS))), 0);
    cutter = ts_cutter_start(&gw.listen[0]);
    cr_assert_not_null(cutter);
    /* The dev certificate names 127.0.0.1, so TLS through the relay verifies. */
    snprintf(url, sizeof url, "https://%s", ts_cutter_addr_str(cutter));
    ts_shim_opts_t o = {
        .gateway = url,
        .tenant = TS_TURN_TENANT,
        .kind = "turn",
        .secret = TS_TURN_SECRET,
        .extra = {SHIM_RECONNECT_ARGS},
    };
    cr_assert_eq(ts_shim_start(&shim, &o, ts_deadline(ts_ms(START_MS))), 0);
}

/* One uclient run across a cut. send_ind: Send indications (-s) instead of
 * channels; the step that shows the allocation is set up differs. */
static void run_across_a_cut(int send_ind)
{
    start_all();
    char port[16], peer_port[16];
    snprintf(port, sizeof port, "%u", ts_addr_port(&shim.listen));
    snprintf(peer_port, sizeof peer_port, "%u", ts_addr_port(&peer.addr));
    /* -c: no RTCP allocation; -s: Send indications, not channels. */
    char *argv[] = {TS_COTURN_UCLIENT_BIN, "-c", "-u", TS_COTURN_USER, "-w",
                    TS_COTURN_PASSWORD, "-e", "127.0.0.1", "-r", peer_port,
                    "-n", STR(MESSAGES), "-z", STR(PACING_MS), "-m", "1", "-l", "160",
                    "-p", port, send_ind ? "-s" : "-c", "127.0.0.1", NULL};
    const char *ready = send_ind ? "CREATE_PERMISSION processed, success"
                                 : "CHANNEL_BIND processed, success";
    size_t mark = ts_coturn_log_mark(&turn);
    uclient_run_t u = {.argv = argv, .rc = -1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, uclient_main, &u), 0);

    /* Cut once the channel is bound and media flows back: FLOWING_BYTES more
     * came down through the relay after the bind (a counter of the cutter's
     * thread, re-read in short slices until a deadline). */
    int bound = ts_coturn_log_wait(&turn, mark, ready, ts_deadline(ts_ms(START_MS)));
    uint64_t down0 = ts_cutter_bytes_down(cutter);
    int64_t flowing = ts_deadline(ts_ms(START_MS));
    while (bound == 0 && ts_cutter_bytes_down(cutter) < down0 + FLOWING_BYTES &&
           ts_remaining_ms(flowing) > 0)
        poll(NULL, 0, 5);
    size_t cut_mark = ts_coturn_log_mark(&turn);
    int64_t t0 = ts_now_ms();
    uint64_t down_at_cut = ts_cutter_bytes_down(cutter);
    int cut = bound == 0 ? ts_cutter_cut_all(cutter) : -1;
    /* The media gap as the shim sees it: from the cut to the first bytes
     * down through the relay on the new connection (TLS handshake, resume,
     * then media queued meanwhile and new media). */
    int64_t back = ts_deadline(ts_ms(START_MS)), gap_ms = -1;
    while (cut == 1 && ts_remaining_ms(back) > 0) {
        if (ts_cutter_accepted(cutter) >= 2 && ts_cutter_bytes_down(cutter) > down_at_cut) {
            gap_ms = ts_now_ms() - t0;
            break;
        }
        poll(NULL, 0, 1);
    }
    pthread_join(th, NULL); /* bounded: ts_run's own deadline */
    cr_assert_eq(bound, 0, "uclient never bound a channel");
    cr_assert_eq(cut, 1, "the shim's one connection was not live at the cut");
    cr_assert_eq(u.rc, 0, "cannot run %s", TS_COTURN_UCLIENT_BIN);

    long sent = -1, received = -1, lost = -1;
    const char *s = strstr(u.r.out, "start_mclient: tot_send_msgs=");
    const char *l = strstr(u.r.out, "Total lost packets ");
    int parsed = s && l &&
                 sscanf(s, "start_mclient: tot_send_msgs=%ld, tot_recv_msgs=%ld", &sent,
                        &received) == 2 &&
                 sscanf(l, "Total lost packets %ld", &lost) == 1;
    if (!parsed || u.r.code != 0)
        fprintf(stderr, "==== turnutils_uclient (exit %d) stdout:\n%s---- stderr:\n%s====\n",
                u.r.code, u.r.out, u.r.err);
    int code = u.r.code;
    ts_run_free(&u.r);
    cr_assert_eq(code, 0, "turnutils_uclient exited with %d (output above)", code);
    cr_assert(parsed, "no totals in uclient's output (above)");
    cr_log_info("%s: cut; bytes flowed again after %lld ms; uclient ended %lld ms later: "
                "%ld/%ld messages back, %ld lost (~%ld ms of media)",
                send_ind ? "send indications" : "channels", (long long)gap_ms,
                (long long)(ts_now_ms() - t0), received, sent, lost, lost * PACING_MS);
    cr_expect_geq(gap_ms, 0, "nothing came down after the cut");
    cr_expect_geq(sent, MESSAGES - 1, "uclient sent %ld of %d messages", sent, MESSAGES);
    cr_expect_leq(sent - received, MAX_LOST, "%ld of %ld messages lost across the cut",
                  sent - received, sent);
    cr_expect_geq(ts_cutter_accepted(cutter), 2, "the shim did not reconnect through the relay");
    cr_expect_eq(ts_coturn_log_count(&turn, cut_mark, "error 437"), 0,
                 "turnserver saw a new source address after the cut (437 Allocation Mismatch)");
    cr_expect_eq(ts_coturn_log_count(&turn, cut_mark, "ALLOCATE processed, success"), 0,
                 "uclient had to allocate again after the cut");

    code = ts_shim_stop(&shim, ts_deadline(ts_ms(STOP_MS)));
    cr_expect_eq(code, 0, "sluice-shim exited with %d after SIGTERM", code);
    code = ts_gateway_stop(&gw, ts_deadline(ts_ms(STOP_MS)));
    cr_expect_eq(code, 0, "sluiced exited with %d after SIGTERM", code);
    cr_expect_eq(ts_turn_peer_stop(&peer, ts_deadline(ts_ms(STOP_MS))), 0);
    cr_expect_eq(ts_coturn_stop(&turn, ts_deadline(ts_ms(STOP_MS))), 0);
}

Test(turn_resume, allocation_survives_a_cut_connection_with_channels, .init = setup,
     .fini = teardown, .timeout = 60)
{
    run_across_a_cut(0);
}

Test(turn_resume, allocation_survives_a_cut_connection_with_send_indications, .init = setup,
     .fini = teardown, .timeout = 60)
{
    run_across_a_cut(1);
}
