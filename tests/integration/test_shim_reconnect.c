/*
 * test_shim_reconnect.c — sluice-shim against a real sluiced that goes away
 * and comes back (docs/shim.md, "Reconnect"): started before the gateway,
 * gateway killed and restarted on the same port, gateway drained (SIGTERM),
 * a 401 that ends the shim, a credential file rotated under a credential
 * that expires, a connection cut under a live call (session resume: one
 * backend source port throughout), RTT from PING capsules, and a
 * keyframe-sized burst.
 *
 * The gateway is restarted on the port of the first one (its listener sets
 * SO_REUSEADDR); a gateway that must start after the shim gets a port found
 * free by binding 0 and closing. Everything waits for a line or a condition
 * with a deadline; nothing sleeps.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_cutter.h"
#include "../support/ts_echo.h"
#include "../support/ts_fixture.h"
#include "../support/ts_flow.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define START_MS 15000
#define WAIT_MS 15000
#define PRIME_RETRY_MS 100

static ts_echo_t *echo;
static ts_gateway_t gw;
static int gw_live;
static ts_proc_t shim;
static ts_addr_t shim_addr;
static int fd = -1;
static char gw_listen[64];
static const char *gw_limits; /* limits JSON for the next gateway_start, or NULL */
static ts_cutter_t *cutter;   /* when set, the shim dials the gateway through it */

static void teardown(void)
{
    if (fd >= 0)
        close(fd);
    fd = -1;
    ts_proc_dispose(&shim);
    ts_cutter_stop(cutter);
    cutter = NULL;
    if (gw_live)
        ts_gateway_dispose(&gw);
    gw_live = 0;
    ts_echo_stop(echo);
    echo = NULL;
}

TestSuite(shim_reconnect, .fini = teardown, .timeout = 120);

/* A loopback TCP port that was free a moment ago. */
static uint16_t free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(s, 0);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* Starts sluiced with the standard config listening on gw_listen
 * ("127.0.0.1:0" the first time; the same port afterwards). */
static void gateway_start(void)
{
    ts_config_t c;
    char path[PATH_MAX];

    if (!echo)
        cr_assert_not_null(echo = ts_echo_start(AF_INET));
    if (!gw_listen[0])
        snprintf(gw_listen, sizeof(gw_listen), "127.0.0.1:0");
    ts_fixture_std_config(&c, AF_INET, ts_echo_addr_str(echo));
    c.listen[0] = gw_listen;
    c.limits_json = gw_limits;
    cr_assert_eq(ts_config_write(&c, path, sizeof(path)), 0);
    if (gw_live)
        ts_gateway_dispose(&gw);
    gw_live = 1;
    cr_assert_eq(ts_gateway_start(&gw, NULL, path, ts_deadline(ts_ms(START_MS))), 0,
                 "sluiced did not start on %s (its output is above)", gw_listen);
    snprintf(gw_listen, sizeof(gw_listen), "%s", gw.listen_str[0]);
}

/* Spawns sluice-shim for gw_listen with args (NULL-terminated) and waits for
 * its listening line only. */
static void shim_spawn(const char *const *args)
{
    char url[128], line[TS_PROC_LINE_MAX];
    ts_shim_argv_t a;

    snprintf(url, sizeof(url), "https://%s", cutter ? ts_cutter_addr_str(cutter) : gw_listen);
    cr_assert_eq(ts_shim_argv_init(&a, NULL, url), 0);
    ts_shim_argv_add(&a, (const char *const[]){"--listen", "127.0.0.1:0", "--reconnect-min-ms",
                                               "50", "--reconnect-max-ms", "400", "-v", NULL});
    ts_shim_argv_add(&a, args);
    cr_assert_not_null(ts_shim_argv(&a));
    cr_assert_eq(ts_proc_spawn(&shim, "sluice-shim", ts_shim_argv(&a), 0), 0);
    cr_assert_eq(ts_proc_wait_line(&shim, "sluice-shim listening ", ts_deadline(ts_ms(START_MS)),
                                   line, sizeof(line)),
                 0);
    cr_assert_eq(ts_addr_parse(line + strlen("sluice-shim listening "), &shim_addr), 0, "%s",
                 line);
}

static const char *const acme[] = {"--tenant", "acme", "--kind", "sfu", "--secret", "s1", NULL};

static void wait_line(const char *prefix, const char *what)
{
    cr_assert_eq(ts_proc_wait_line(&shim, prefix, ts_deadline(ts_ms(WAIT_MS)), NULL, 0), 0,
                 "%s", what);
}

static void prime(const char *what)
{
    if (fd < 0)
        cr_assert_geq(fd = ts_udp_bind(AF_INET, NULL), 0);
    cr_assert_eq(ts_flow_prime(fd, &shim_addr, PRIME_RETRY_MS, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "%s", what);
}

static void shim_stop_0(void)
{
    int code = ts_proc_stop(&shim, ts_deadline(ts_ms(WAIT_MS)));
    cr_expect_eq(code, 0, "the shim exited with %d on SIGTERM", code);
}

Test(shim_reconnect, started_before_the_gateway_connects_once_it_is_up)
{
    snprintf(gw_listen, sizeof(gw_listen), "127.0.0.1:%u", (unsigned)free_port());
    shim_spawn(acme);
    wait_line("sluice-shim reconnecting in ", "no reconnecting line while the gateway is down");
    wait_line("sluice-shim reconnecting in ", "the shim did not keep trying");
    cr_assert(ts_proc_running(&shim), "the shim gave up on a gateway that is not up yet");

    gateway_start();
    wait_line("sluice-shim connected ", "the shim did not connect once the gateway was up");
    prime("no echo through the late gateway");
    shim_stop_0();
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}

/* SIGKILL: no GOAWAY, no CLOSE, the connection just breaks. The app keeps
 * sending to the same local port and gets echoes again once a new gateway
 * is up on the same port. */
Test(shim_reconnect, gateway_killed_and_restarted_the_flow_comes_back_on_the_same_port)
{
    gateway_start();
    shim_spawn(acme);
    wait_line("sluice-shim connected ", "no first connection");
    prime("no echo before the kill");

    int64_t t_kill = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&gw.proc, SIGKILL), 0);
    cr_assert_geq(ts_proc_wait_exit(&gw.proc, ts_deadline(ts_ms(WAIT_MS))), 0);
    wait_line("sluice-shim reconnecting in ", "the lost connection was not followed by a reconnect");
    cr_assert(ts_proc_running(&shim));

    gateway_start();
    wait_line("sluice-shim connected ", "the shim did not reconnect to the restarted gateway");
    prime("the app's flow did not work again through the same local port");
    cr_log_info("media gap across a gateway kill and restart: %lld ms (restart included)",
                (long long)(ts_now_ms() - t_kill));
    cr_expect_geq(ts_log_count(shim.err_path, "reopens 1"), 1,
                  "the tunnel was not re-opened by the library (stderr: 'reopens 1')");
    shim_stop_0();
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}

/* SIGTERM: the gateway drains (CLOSE(shutting down), GOAWAY) and exits 0.
 * The shim does not exit; it reconnects to the next gateway. */
Test(shim_reconnect, gateway_drain_is_a_reason_to_reconnect_not_to_exit)
{
    gateway_start();
    shim_spawn(acme);
    wait_line("sluice-shim connected ", "no first connection");
    prime("no echo before the drain");

    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0, "sluiced drain failed");
    wait_line("sluice-shim reconnecting in ", "no reconnecting line after the drain");
    cr_assert(ts_proc_running(&shim), "the shim exited after a graceful gateway shutdown");
    cr_expect_eq(ts_log_count(shim.err_path, "disconnected"), 0);

    gateway_start();
    wait_line("sluice-shim connected ", "the shim did not reach the new gateway");
    prime("the flow did not come back on the new gateway");
    shim_stop_0();
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}

/* A 401 is a configuration error: exit 4 with the refusal on stdout. */
Test(shim_reconnect, refusal_401_ends_the_shim_with_exit_4)
{
    static const char *const bad[] = {"--tenant", "acme", "--kind", "sfu", "--secret",
                                      "not-the-secret", NULL};
    static const uint8_t rtp[] = {0x80, 0x60, 0, 1, 2, 3, 4, 5};
    char line[TS_PROC_LINE_MAX];

    gateway_start();
    shim_spawn(bad);
    wait_line("sluice-shim connected ", "no connection");
    cr_assert_geq(fd = ts_udp_bind(AF_INET, NULL), 0);
    cr_assert_eq(ts_udp_send(fd, &shim_addr, rtp, sizeof(rtp)), 0);
    cr_assert_eq(ts_proc_wait_line(&shim, "sluice-shim disconnected: ", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof(line)),
                 0);
    cr_expect(strstr(line, "refused: 401 "), "%s", line);
    int code = ts_proc_wait_exit(&shim, ts_deadline(ts_ms(WAIT_MS)));
    cr_expect_eq(code, 4, "exit %d after a 401", code);
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}

/* The credential in the file expires 4 s after the start; the file is
 * rotated before that (same user, another of the tenant's secrets). When the
 * gateway closes the tunnel with CLOSE(credential expired) it parks the
 * session; the library resumes it at once with the new credential, so the
 * backend keeps seeing one source port. Without the reload that request
 * would be refused with 401 and the shim would exit 4. */
Test(shim_reconnect, credential_file_rotation_resumes_the_session)
{
    char path[PATH_MAX], text[1024], user[256], cred[128];
    const char *args[] = {"--tenant", "acme", "--kind", "sfu", "--credential-file", path, NULL};
    ts_addr_t src[4];

    cr_assert_eq(ts_tmppath("cred.txt", path, sizeof(path)), 0);
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 4, "alice", user, sizeof(user), cred,
                              sizeof(cred)), 0);
    snprintf(text, sizeof(text), "%s\n%s\n", user, cred);
    cr_assert_eq(ts_write_file(path, text, strlen(text)), 0);

    gateway_start();
    shim_spawn(args);
    wait_line("sluice-shim connected ", "no connection");
    prime("no echo with the first credential");

    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET2, 600, "alice", user, sizeof(user), cred,
                              sizeof(cred)), 0);
    snprintf(text, sizeof(text), "%s\n%s\n", user, cred);
    cr_assert_eq(ts_write_file(path, text, strlen(text)), 0);
    cr_assert_eq(ts_log_wait(shim.err_path, "credential loaded from", 2,
                             ts_deadline(ts_ms(WAIT_MS))), 0,
                 "the rewritten credential file was not re-read");

    /* The first credential expires; the session is resumed, not re-opened. */
    cr_assert_eq(ts_log_wait(shim.err_path, "resumes 1 reopens 0)", 1,
                             ts_deadline(ts_ms(WAIT_MS))), 0,
                 "the tunnel was not resumed after CLOSE(credential expired)");
    prime("no echo with the rotated credential");
    cr_expect_eq(ts_echo_sources(echo, src, 4), 1,
                 "the backend saw more than one source address across the expiry");
    cr_expect(ts_proc_running(&shim));
    shim_stop_0();
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}

/* A live call (a packet every 5 ms) whose TCP connection is cut under it
 * (ts_cutter resets both sides): the shim reconnects and resumes, the echo
 * backend sees one source address and port for the whole call, and the test
 * reports the media gap: the longest time without an echo. */
Test(shim_reconnect, a_cut_connection_resumes_with_one_backend_source)
{
    enum { N = 600, CUT_AT = 100, PACE_MS = 5, TAIL_MS = 500 };
    static int64_t back_at[N];
    uint8_t pkt[64], buf[256];
    ts_addr_t src[4];
    int n_back = 0, cut = -1;

    gateway_start();
    cr_assert_not_null(cutter = ts_cutter_start(&gw.listen[0]));
    shim_spawn(acme);
    wait_line("sluice-shim connected ", "no connection");
    prime("no echo before the cut");

    memset(pkt, 0, sizeof(pkt));
    pkt[0] = 0x80; /* RTP */
    pkt[4] = 0xc7;
    int64_t deadline = ts_deadline(ts_ms(20000));
    /* After the last packet, up to TAIL_MS more for the echoes still on
     * their way: a packet is lost when it never comes back, not when it
     * comes back more than one pace after the last send (as in test_lb). */
    for (int i = 0; i < N + TAIL_MS / PACE_MS && ts_remaining_ms(deadline) > 0; i++) {
        if (i == CUT_AT)
            cut = ts_cutter_cut_all(cutter);
        if (i >= N && back_at[N - 1])
            break;
        pkt[2] = (uint8_t)(i >> 8);
        pkt[3] = (uint8_t)i;
        if (i < N)
            cr_assert_eq(ts_udp_send(fd, &shim_addr, pkt, sizeof(pkt)), 0);
        /* Pace the call by waiting for echoes for PACE_MS. */
        int64_t until = ts_deadline(ts_ms(PACE_MS));
        do {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, (int)ts_remaining_ms(until)) <= 0)
                break;
            ssize_t k;
            while ((k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
                int j = buf[2] << 8 | buf[3];
                if (k == (ssize_t)sizeof(pkt) && buf[4] == 0xc7 && j < N && !back_at[j]) {
                    back_at[j] = ts_now_ms();
                    n_back++;
                }
            }
        } while (ts_remaining_ms(until) > 0);
    }
    cr_assert_eq(cut, 1, "the shim's connection was not live at the cut");
    /* The media gap: the longest time between two echoes around the cut. */
    int64_t gap = 0, prev = 0;
    int lost = 0, lost_late = 0, first_late = -1;
    for (int i = 0; i < N; i++) {
        if (!back_at[i]) {
            lost++;
            if (i >= CUT_AT + 100 && lost_late++ == 0)
                first_late = i;
            continue;
        }
        if (prev && back_at[i] - prev > gap)
            gap = back_at[i] - prev;
        prev = back_at[i];
    }
    cr_log_info("cut under a call: %d of %d echoes back, %d lost, media gap %lld ms "
                "(connections through the relay: %llu)", n_back, N, lost, (long long)gap,
                (unsigned long long)ts_cutter_accepted(cutter));
    cr_expect_geq(ts_cutter_accepted(cutter), 2, "the shim did not reconnect");
    cr_expect_eq(lost_late, 0, "%d packets lost well after the cut (the first: packet %d of %d)",
                 lost_late, first_late, N);
    cr_expect_eq(ts_echo_sources(echo, src, 4), 1,
                 "the backend saw more than one source address: the session was not resumed");
    cr_expect_eq(ts_log_count(shim.err_path, "reopens 1)"), 0, "the tunnel was re-opened");
    shim_stop_0();
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}

/* PING capsules every 50 ms; the gateway answers with PONG; the tunnel's
 * end line (-v) reports the RTT. */
Test(shim_reconnect, rtt_from_ping_capsules_is_reported)
{
    static const char *const args[] = {"--tenant", "acme", "--kind", "sfu", "--secret", "s1",
                                       "--ping-interval-ms", "50", "--flow-idle-ms", "1000",
                                       NULL};
    char line[TS_PROC_LINE_MAX];
    unsigned long rtt = 0, rtt_min = 0;

    gateway_start();
    shim_spawn(args);
    wait_line("sluice-shim connected ", "no connection");
    prime("no echo");
    cr_assert_eq(ts_log_wait(shim.err_path, "closed: CLOSE(normal)", 1,
                             ts_deadline(ts_ms(WAIT_MS))), 0, "the idle flow was not closed");
    cr_assert_eq(ts_log_line(shim.err_path, "closed: CLOSE(normal)", 1, line, sizeof(line)), 0);
    const char *r = strstr(line, " rtt ");
    cr_assert_not_null(r, "%s", line);
    cr_assert_eq(sscanf(r, " rtt %lu us (min %lu)", &rtt, &rtt_min), 2, "%s", line);
    cr_expect_gt(rtt, 0, "no RTT measured: %s", line);
    cr_expect(rtt_min > 0 && rtt_min <= rtt, "%s", line);
    cr_log_info("RTT over loopback: last %lu us, min %lu us", rtt, rtt_min);
    shim_stop_0();
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}

/* A keyframe: 200 datagrams of 1,200 B sent back to back through the shim
 * all reach the gateway (its uplink count) with no drop in the shim, and all
 * come back through the echo backend and the gateway's downlink queue. */
Test(shim_reconnect, a_200_packet_burst_arrives_whole)
{
    static const char *const args[] = {"--tenant", "beta", "--kind", "sfu", "--secret", "b1",
                                       "--hash", "sha256", "--region", "eu", NULL};
    enum { N = 200, LEN = 1200 };
    static uint8_t pkt[LEN], buf[2048];
    static int got[N];
    int rcv = 4 << 20, n_got = 0;
    char line[TS_PROC_LINE_MAX];

    /* The echo goes back through the gateway's downlink queue, 64 KiB by
     * default: room for the burst there too, so that what is measured is
     * the shim's side. */
    gw_limits = "{\"media_queue_bytes\":1048576}";
    gateway_start();
    shim_spawn(args);
    wait_line("sluice-shim connected ", "no connection");
    prime("no echo");
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));

    memset(pkt, 0x5a, sizeof(pkt));
    pkt[0] = 0x80; /* RTP */
    pkt[1] = 0x60;
    for (int i = 0; i < N; i++) {
        pkt[2] = (uint8_t)(i >> 8);
        pkt[3] = (uint8_t)i;
        pkt[4] = 0xb0;
        cr_assert_eq(ts_udp_send(fd, &shim_addr, pkt, sizeof(pkt)), 0);
        /* Take what already came back, so our own receive buffer is not the
         * bottleneck; this does not pace the burst. */
        ssize_t k;
        while ((k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            if (k == LEN && buf[4] == 0xb0 && !got[buf[2] << 8 | buf[3]]++)
                n_got++;
    }
    int64_t deadline = ts_deadline(ts_ms(10000));
    while (n_got < N && ts_remaining_ms(deadline) > 0) {
        ssize_t k = ts_udp_recv(fd, buf, sizeof(buf), ts_deadline(ts_ms(1000)), NULL);
        if (k < 0)
            break; /* a second of silence: nothing more is coming */
        if (k == LEN && buf[4] == 0xb0 && !got[buf[2] << 8 | buf[3]]++)
            n_got++;
    }
    cr_log_info("burst: %d of %d packets of %d B came back through the echo", n_got, N, LEN);
    cr_expect_eq(n_got, N, "only %d of the %d packets of the burst came back", n_got, N);
    shim_stop_0();
    cr_assert_eq(ts_log_line(shim.err_path, "closed: CLOSE(normal)", 1, line, sizeof(line)), 0);
    cr_expect(strstr(line, "; tx 201 rx ") && strstr(line, " dropped 0 "),
              "the shim dropped part of the burst: %s", line);
    /* Primer + 200: every byte reached the gateway. */
    cr_expect_eq(ts_log_wait(gw.proc.err_path, "up_packets=201 up_bytes=240064", 1,
                             ts_deadline(ts_ms(WAIT_MS))),
                 0, "the gateway did not receive the whole burst");
    cr_expect_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(WAIT_MS))), 0);
}
