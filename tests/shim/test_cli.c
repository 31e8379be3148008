/*
 * test_cli.c — the sluice-shim binary (client-shim/cli/main.c) against a real
 * sluiced on loopback: what docs/shim.md promises about its command line,
 * its output and its behaviour (refusal back-off, --max-flows, idle
 * reconnect with TLS session resumption).
 *
 * Events the shim reports only on stderr are waited for in its log file
 * (ts_log_wait), each with a deadline; nothing here sleeps.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_fixture.h"
#include "../support/ts_flow.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define START_MS 15000
#define WAIT_MS 10000
#define PRIME_RETRY_MS 100

static ts_fixture_t fx;
static ts_shim_t shim;
static int shim_started;
static ts_run_t run;
static int fds[2] = {-1, -1};

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (shim_started)
        ts_shim_dispose(&shim);
    ts_run_free(&run);
    ts_fixture_teardown(&fx);
}

static void need_build(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
}

/* Starts the fixture's gateway with limits (may be NULL). */
static void start_gateway(const char *limits)
{
    need_build();
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, limits), 0,
                 "sluiced did not print its ready line (its output is above)");
}

/* Starts a verbose shim for tenant acme with the given secret and extra
 * arguments (NULL-terminated, at most 6). */
static const char *shim_kind; /* NULL: sfu */

static void start_shim(const char *secret, const char *const *extra)
{
    char url[128];
    ts_shim_opts_t o = {.tenant = TS_FX_TENANT, .secret = secret, .kind = shim_kind,
                        .extra = {"-v"}};

    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", url, sizeof(url)), 0);
    o.gateway = url;
    for (size_t i = 0; extra && extra[i]; i++)
        o.extra[i + 1] = extra[i];
    shim_started = 1;
    cr_assert_eq(ts_shim_start(&shim, &o, ts_deadline(ts_ms(START_MS))), 0,
                 "sluice-shim did not connect (its output is above)");
}

/* The shim's args, in full, with --ca-file ca. */
static void run_shim_with_ca(const char *ca)
{
    char bin[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluice-shim", bin, sizeof(bin)), 0);
    char *argv[] = {bin, "--gateway", "https://127.0.0.1:1", "--tenant", "acme", "--kind",
                    "sfu", "--secret", "s1", "--listen", "127.0.0.1:0", "--ca-file",
                    (char *)ca, NULL};
    ts_run_free(&run);
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(WAIT_MS)), &run), 0, "cannot run %s",
                 bin);
}

TestSuite(cli, .fini = teardown, .timeout = 90);

Test(cli, version_with_V_and_long_option)
{
    char bin[PATH_MAX];
    const char *flags[] = {"-V", "--version"};

    need_build();
    cr_assert_eq(ts_build_path(NULL, "sluice-shim", bin, sizeof(bin)), 0);
    for (size_t i = 0; i < 2; i++) {
        char *argv[] = {bin, (char *)flags[i], NULL};
        ts_run_free(&run);
        cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(WAIT_MS)), &run), 0);
        cr_expect_eq(run.code, 0, "%s: exit %d: %s", flags[i], run.code, run.err);
        cr_expect_str_eq(run.out, "sluice-shim 0.1.0\n", "%s", flags[i]);
    }
}

/* A CA file that cannot be used is a usage error: exit 2, the file named,
 * and nothing on stdout (no "listening" line a script would believe). */
Test(cli, unusable_ca_file_exits_2_before_listening)
{
    char empty[PATH_MAX];

    need_build();
    run_shim_with_ca("/nonexistent/ca.pem");
    cr_expect_eq(run.code, 2, "exit %d", run.code);
    cr_expect_str_eq(run.out, "", "stdout: %s", run.out);
    cr_expect(ts_memmem(run.err, run.err_len, "'/nonexistent/ca.pem'"), "%s", run.err);
    cr_expect(ts_memmem(run.err, run.err_len, "No such file"), "%s", run.err);

    cr_assert_eq(ts_tmppath("empty.pem", empty, sizeof(empty)), 0);
    cr_assert_eq(ts_write_file(empty, "", 0), 0);
    run_shim_with_ca(empty);
    cr_expect_eq(run.code, 2, "exit %d", run.code);
    cr_expect_str_eq(run.out, "", "stdout: %s", run.out);
    cr_expect(ts_memmem(run.err, run.err_len, empty), "%s", run.err);
    cr_expect(ts_memmem(run.err, run.err_len, "no PEM certificate"), "%s", run.err);
}

/* A refused flow (503: the turn pool is empty): one line per refusal naming
 * the HTTP status (never a made-up close code), and no new request for 2 s
 * however much the source sends. The bound below is 1.5 s: the first refusal
 * is seen a little after the shim logged it, the second no earlier than it
 * was made. */
Test(cli, refusal_is_reported_once_and_backs_off)
{
    static const uint8_t rtp[] = {0x80, 0x60, 0, 1, 2, 3, 4, 5};
    uint8_t buf[64];
    char line[TS_PROC_LINE_MAX];
    int64_t first = 0, deadline;

    start_gateway(NULL);
    shim_kind = "turn";
    start_shim(TS_FX_SECRET, NULL);
    fds[0] = ts_udp_bind(AF_INET, NULL);
    cr_assert_geq(fds[0], 0);

    /* A packet every 20 ms (the wait for a reply paces it) until two
     * refusals are logged. */
    deadline = ts_deadline(ts_ms(WAIT_MS));
    while (ts_log_count(shim.proc.err_path, " refused: ") < 2 && ts_remaining_ms(deadline) > 0) {
        cr_assert_eq(ts_udp_send(fds[0], &shim.listen, rtp, sizeof(rtp)), 0);
        cr_assert_lt(ts_udp_recv(fds[0], buf, sizeof(buf), ts_deadline(20), NULL), 0,
                     "a refused flow got a reply");
        if (!first && ts_log_count(shim.proc.err_path, " refused: ") == 1)
            first = ts_now_ms();
    }
    cr_assert_eq(ts_log_count(shim.proc.err_path, " refused: "), 2,
                 "the refused flow was not retried within %d ms", WAIT_MS);
    cr_expect_geq(ts_now_ms() - first, 1500, "retried %lld ms after a refusal",
                  (long long)(ts_now_ms() - first));

    cr_assert_eq(ts_log_line(shim.proc.err_path, " refused: ", 1, line, sizeof(line)), 0);
    cr_expect(strstr(line, "refused: 503 "), "%s", line);
    cr_expect(strstr(line, "; tx 0 rx 0 dropped "), "-v adds the counters: %s", line);
    cr_expect_eq(ts_log_count(shim.proc.err_path, "tunnel for "), 2,
                 "one line per tunnel end (two ends)");
    cr_expect_eq(ts_log_count(shim.proc.err_path, "code -1"), 0, "no code -1 in the log");

    const char *what;
    int code;
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}

/* --max-flows 1: a second source is dropped (and logged) while the first
 * flow lives, and gets its tunnel once that flow has idled out. */
Test(cli, max_flows_drops_new_sources_until_a_flow_ends)
{
    /* Idle 1 s: long enough that the first flow cannot idle out between its
     * echo and the second source's packet, even on a loaded machine. */
    static const char *const extra[] = {"--max-flows", "1", "--flow-idle-ms", "1000", NULL};
    static const uint8_t rtp[] = {0x80, 0x60, 0, 2, 9, 9};
    uint8_t buf[64];

    start_gateway(NULL);
    start_shim(TS_FX_SECRET, extra);
    fds[0] = ts_udp_bind(AF_INET, NULL);
    fds[1] = ts_udp_bind(AF_INET, NULL);
    cr_assert(fds[0] >= 0 && fds[1] >= 0);
    cr_assert_eq(ts_flow_prime(fds[0], &shim.listen, PRIME_RETRY_MS, ts_deadline(ts_ms(WAIT_MS))),
                 0, "the first source never got through");

    /* One packet from the second source: dropped, and said so once. */
    cr_assert_eq(ts_udp_send(fds[1], &shim.listen, rtp, sizeof(rtp)), 0);
    cr_assert_eq(ts_log_wait(shim.proc.err_path, "1 flows in use; dropping packets from new "
                             "sources", 1, ts_deadline(ts_ms(WAIT_MS))),
                 0, "the drop was not logged");
    /* The first flow still works, and the dropped packet never came back. */
    cr_assert_eq(ts_udp_send(fds[0], &shim.listen, rtp, sizeof(rtp)), 0);
    cr_expect_geq(ts_udp_recv(fds[0], buf, sizeof(buf), ts_deadline(ts_ms(WAIT_MS)), NULL), 0);
    cr_expect_lt(recv(fds[1], buf, sizeof(buf), MSG_DONTWAIT), 0);

    /* The first source falls silent; its flow idles out and frees the slot. */
    cr_assert_eq(ts_log_wait(shim.proc.err_path, "closed: CLOSE(normal)", 1,
                             ts_deadline(ts_ms(WAIT_MS))),
                 0, "the idle flow was not closed");
    cr_expect_eq(ts_flow_prime(fds[1], &shim.listen, PRIME_RETRY_MS, ts_deadline(ts_ms(WAIT_MS))),
                 0, "the second source never got through after the first flow ended");

    const char *what;
    int code;
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}

/* The gateway closes a connection that carries no tunnel (header_timeout_ms
 * before the first request). The shim stays up, says so on stderr, and
 * connects again on the next packet, resuming its TLS session. */
Test(cli, idle_connection_reconnects_on_demand_and_resumes_tls)
{
    char line[TS_PROC_LINE_MAX];

    start_gateway("{\"header_timeout_ms\":300}");
    start_shim(TS_FX_SECRET, NULL);
    cr_assert_eq(ts_log_wait(shim.proc.err_path, "idle connection ended", 1,
                             ts_deadline(ts_ms(WAIT_MS))),
                 0, "the gateway's idle close was not reported");
    cr_expect_eq(ts_log_count(shim.proc.err_path, "resumed"), 0, "the first connection is new");
    cr_assert(ts_proc_running(&shim.proc));

    fds[0] = ts_udp_bind(AF_INET, NULL);
    cr_assert_geq(fds[0], 0);
    cr_assert_eq(ts_flow_prime(fds[0], &shim.listen, PRIME_RETRY_MS, ts_deadline(ts_ms(WAIT_MS))),
                 0, "no echo through the new connection");
    cr_assert_eq(ts_proc_wait_line(&shim.proc, "sluice-shim connected ",
                                   ts_deadline(ts_ms(WAIT_MS)), line, sizeof(line)),
                 0, "no second connected line");
    cr_assert_eq(ts_log_wait(shim.proc.err_path, "sluice-shim: connected (", 2,
                             ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_assert_eq(ts_log_line(shim.proc.err_path, "sluice-shim: connected (", 2, line,
                             sizeof(line)), 0);
    cr_expect(strstr(line, " resumed)"), "the reconnect did not resume TLS: %s", line);

    const char *what;
    int code;
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}
