/*
 * test_proxy.c — sluice-shim through a real squid on loopback: plain
 * CONNECT, Basic and Digest auth (right and wrong password), a CONNECT squid
 * refuses, a
 * PAC file naming a dead proxy first, the https_proxy / no_proxy bypass, an
 * unreachable proxy, a reply that is not HTTP, and a proxy that never answers
 * the CONNECT (with --connect-timeout-ms). Each failure must come out
 * as its own exit code and message (docs/shim.md, "Proxy discovery").
 * `sluice-shim probe` reports the same discovery and each route's outcome.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_fixture.h"
#include "../support/ts_net.h"
#include "../support/ts_flow.h"
#include "../support/ts_log.h"
#include "../support/ts_proc.h"
#include "../support/ts_squid.h"
#include "../support/ts_util.h"

#define WAIT_MS 20000
#define PRIME_RETRY_MS 200

static ts_fixture_t fx;
static ts_squid_t sq;
static ts_shim_t shim;

static void setup(void)
{
    /* Only what a test sets: never the machine's own proxy settings. */
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    memset(&shim, 0, sizeof(shim));
    shim.proc.out_fd = shim.proc.in_fd = -1;
}

static void teardown(void)
{
    ts_shim_dispose(&shim);
    ts_squid_dispose(&sq);
    ts_fixture_teardown(&fx);
}

static void start_gateway(void)
{
    cr_assert(ts_squid_available(), "squid is not installed (.ci/bootstrap installs it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0, "gateway did not start");
}

static void start_squid(const ts_squid_opts_t *o)
{
    cr_assert_eq(ts_squid_start(&sq, o, ts_deadline(ts_ms(WAIT_MS))), 0, "squid did not start");
}

static uint16_t gw_port(void)
{
    return ts_addr_port(&fx.gw.listen[0]);
}

/* Stops squid (when started) and the gateway; both must exit cleanly. */
static void finish(void)
{
    const char *what;
    int code;

    if (sq.proc.pid > 0)
        cr_expect_eq(ts_squid_stop(&sq, ts_deadline(ts_ms(WAIT_MS))), 0, "squid exit code");
    cr_expect_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}

/* Starts a shim against the fixture's gateway with extra arguments (NULL
 * terminated, at most 7) and waits for its connected line into line. */
static void start_shim(const char *const *extra, char *line, size_t cap)
{
    char url[128];
    ts_shim_opts_t o = {
        .gateway = url,
        .tenant = TS_FX_TENANT,
        .secret = TS_FX_SECRET,
    };

    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", url, sizeof(url)), 0);
    for (size_t i = 0; extra[i] && i < 7; i++)
        o.extra[i] = extra[i];
    cr_assert_eq(ts_shim_start(&shim, &o, ts_deadline(ts_ms(WAIT_MS))), 0, "shim did not connect");
    snprintf(line, cap, "%s", shim.connected_line);
}

/* A datagram goes through the shim, the gateway and the echo backend and
 * comes back. */
static void expect_echo(void)
{
    int fd = ts_udp_bind(AF_INET, NULL);

    cr_assert_geq(fd, 0);
    cr_expect_eq(ts_flow_prime(fd, &shim.listen, PRIME_RETRY_MS, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "no echo through the tunnel");
    close(fd);
}

/* The relay's arguments after --gateway and --ca-file. */
static const char *const relay_args[] = {"--tenant", TS_FX_TENANT, "--kind", "sfu", "--secret",
                                         TS_FX_SECRET, "--listen", "127.0.0.1:0", NULL};

/* Runs the shim to its exit with extra arguments; returns the run (the
 * caller frees it). */
static void run_shim(const char *const *extra, ts_run_t *r)
{
    ts_shim_argv_t a;
    char url[128];

    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", url, sizeof(url)), 0);
    cr_assert_eq(ts_shim_argv_init(&a, NULL, url), 0);
    ts_shim_argv_add(&a, relay_args);
    ts_shim_argv_add(&a, extra);
    cr_assert_not_null(ts_shim_argv(&a));
    cr_assert_eq(ts_run(ts_shim_argv(&a), NULL, ts_deadline(ts_ms(WAIT_MS)), r), 0);
    cr_assert_eq(r->timed_out, 0, "the shim did not exit: %s", r->err);
}

/* Runs the shim with extra arguments until it says it will reconnect (a
 * transient failure never ends it: docs/shim.md, "Exit codes"), checks
 * that line names want, then stops it: it must exit 0. */
static void expect_reconnecting(const char *const *extra, const char *want)
{
    char url[128], line[TS_PROC_LINE_MAX];
    ts_proc_t p = {.out_fd = -1, .in_fd = -1};
    ts_shim_argv_t a;

    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", url, sizeof(url)), 0);
    cr_assert_eq(ts_shim_argv_init(&a, NULL, url), 0);
    ts_shim_argv_add(&a, relay_args);
    ts_shim_argv_add(&a, extra);
    cr_assert_not_null(ts_shim_argv(&a));
    cr_assert_eq(ts_proc_spawn(&p, "sluice-shim", ts_shim_argv(&a), 0), 0);
    cr_assert_eq(ts_proc_wait_line(&p, "sluice-shim reconnecting", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof(line)),
                 0, "no reconnect");
    cr_expect(strstr(line, want), "'%s' not in: %s", want, line);
    cr_expect(strstr(line, "proxy 127.0.0.1:"), "the proxy is not named: %s", line);
    cr_expect_eq(ts_proc_stop(&p, ts_deadline(ts_ms(WAIT_MS))), 0, "the shim did not exit 0");
    ts_proc_dispose(&p);
}

static char *write_tmp(const char *name, const char *text)
{
    static char path[PATH_MAX];

    cr_assert_eq(ts_tmppath(name, path, sizeof(path)), 0);
    cr_assert_eq(ts_write_file(path, text, strlen(text)), 0);
    return path;
}

Test(proxy, connect_through_squid_carries_the_tunnel, .init = setup, .fini = teardown,
     .timeout = 90)
{
    char line[TS_PROC_LINE_MAX], want[128], connect[64];

    start_gateway();
    start_squid(NULL);
    const char *extra[] = {"--proxy", sq.url, NULL};
    start_shim(extra, line, sizeof(line));
    snprintf(want, sizeof(want), " via proxy 127.0.0.1:%u", (unsigned)sq.port);
    cr_expect(strstr(line, want), "connected line does not name the proxy: %s", line);
    expect_echo();
    /* squid logs a CONNECT tunnel when it ends: stop the shim, then look. */
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    snprintf(connect, sizeof(connect), "CONNECT 127.0.0.1:%u", (unsigned)gw_port());
    cr_expect_eq(ts_log_wait(sq.access_log, connect, 1, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "squid saw no %s", connect);
    finish();
}

Test(proxy, basic_auth_right_password_connects, .init = setup, .fini = teardown, .timeout = 90)
{
    char line[TS_PROC_LINE_MAX];
    const ts_squid_opts_t so = {.user = "alice", .password = "open sesame"};

    start_gateway();
    start_squid(&so);
    const char *creds = write_tmp("proxy-user", "alice:open sesame\n");
    const char *extra[] = {"--proxy", sq.url, "--proxy-user-file", creds, NULL};
    start_shim(extra, line, sizeof(line));
    expect_echo();
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_expect_eq(ts_log_wait(sq.access_log, " alice ", 1, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "squid did not log the authenticated user");
    finish();
}

Test(proxy, basic_auth_wrong_password_is_proxy_auth_naming_basic, .init = setup,
     .fini = teardown, .timeout = 90)
{
    const ts_squid_opts_t so = {.user = "alice", .password = "open sesame"};
    char url[128];
    ts_run_t r;

    start_gateway();
    start_squid(&so);
    /* Credentials in the URL this time; the password must not be echoed. */
    snprintf(url, sizeof(url), "http://alice:wrongpass@127.0.0.1:%u", (unsigned)sq.port);
    const char *extra[] = {"--proxy", url, NULL};
    run_shim(extra, &r);
    cr_expect_eq(r.code, 7, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "407"), "%s", r.err);
    cr_expect(strstr(r.err, "Basic"), "the offered scheme is not named: %s", r.err);
    cr_expect(strstr(r.err, "proxy auth"), "%s", r.err);
    cr_expect_null(strstr(r.err, "wrongpass"), "the password leaked: %s", r.err);
    ts_run_free(&r);

    /* No credentials at all: the same failure, saying none were given. */
    const char *none[] = {"--proxy", sq.url, NULL};
    run_shim(none, &r);
    cr_expect_eq(r.code, 7, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "no credentials"), "%s", r.err);
    ts_run_free(&r);
    finish();
}

Test(proxy, digest_auth_right_password_connects_wrong_one_is_proxy_auth_naming_digest,
     .init = setup, .fini = teardown, .timeout = 90)
{
    const ts_squid_opts_t so = {.user = "bob", .password = "digest me", .digest = 1};
    char line[TS_PROC_LINE_MAX], want[64];
    ts_run_t r;

    start_gateway();
    start_squid(&so);
    /* The right password: curl answers the Digest challenge (the proxy
     * offers nothing else) and the tunnel carries media. */
    const char *creds = write_tmp("proxy-user", "bob:digest me\n");
    const char *extra[] = {"--proxy", sq.url, "--proxy-user-file", creds, NULL};
    start_shim(extra, line, sizeof(line));
    snprintf(want, sizeof(want), " via proxy 127.0.0.1:%u", (unsigned)sq.port);
    cr_expect(strstr(line, want), "%s", line);
    expect_echo();
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    cr_expect_eq(ts_log_wait(sq.access_log, " bob ", 1, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "squid did not log the authenticated user");

    /* A wrong one: exit 7, naming Digest as what the proxy offered. */
    const char *bad = write_tmp("proxy-user-bad", "bob:not it\n");
    const char *wrong[] = {"--proxy", sq.url, "--proxy-user-file", bad, NULL};
    run_shim(wrong, &r);
    cr_expect_eq(r.code, 7, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "407"), "%s", r.err);
    cr_expect(strstr(r.err, "offered: Digest)"), "Digest alone is not named: %s", r.err);
    cr_expect(strstr(r.err, "proxy auth"), "%s", r.err);
    cr_expect_null(strstr(r.err, "not it"), "the password leaked: %s", r.err);
    ts_run_free(&r);
    finish();
}

Test(proxy, refused_connect_is_proxy_refused_with_the_status_line, .init = setup,
     .fini = teardown, .timeout = 90)
{
    ts_squid_opts_t so = {0};
    ts_run_t r;

    start_gateway();
    so.deny_port = gw_port();
    start_squid(&so);
    const char *extra[] = {"--proxy", sq.url, NULL};
    run_shim(extra, &r);
    cr_expect_eq(r.code, 5, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "refused the CONNECT: HTTP/1.1 403"), "%s", r.err);
    cr_expect(strstr(r.err, "proxy refused"), "%s", r.err);
    ts_run_free(&r);
    finish();
}

Test(proxy, pac_with_a_dead_proxy_first_connects_through_the_second, .init = setup,
     .fini = teardown, .timeout = 90)
{
    char line[TS_PROC_LINE_MAX], pac[512], want[128];
    uint16_t dead = ts_free_tcp_port();

    start_gateway();
    start_squid(NULL);
    cr_assert_neq(dead, 0);
    snprintf(pac, sizeof(pac),
             "function FindProxyForURL(url, host) {\n"
             "  if (host == \"127.0.0.1\" && shExpMatch(url, \"https://*\"))\n"
             "    return \"PROXY 127.0.0.1:%u; PROXY 127.0.0.1:%u\";\n"
             "  return \"DIRECT\";\n"
             "}\n",
             (unsigned)dead, (unsigned)sq.port);
    const char *path = write_tmp("proxy.pac", pac);
    const char *extra[] = {"--proxy-pac", path, "-v", NULL};
    start_shim(extra, line, sizeof(line));
    snprintf(want, sizeof(want), " via proxy 127.0.0.1:%u", (unsigned)sq.port);
    cr_expect(strstr(line, want), "not through the second proxy: %s", line);
    expect_echo();
    /* -v logged both attempts, the second with why the first failed. */
    cr_expect_eq(ts_log_count(shim.proc.err_path, "(route 1 of 2)"), 1);
    cr_expect_eq(ts_log_wait(shim.proc.err_path, "(route 2 of 2; the last failed: proxy 127.0.0.1",
                             1, ts_deadline(ts_ms(WAIT_MS))),
                 0);
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    finish();
}

Test(proxy, no_proxy_bypasses_a_dead_env_proxy, .init = setup, .fini = teardown, .timeout = 90)
{
    char line[TS_PROC_LINE_MAX], dead_url[64];

    start_gateway();
    snprintf(dead_url, sizeof(dead_url), "http://127.0.0.1:%u", (unsigned)ts_free_tcp_port());
    setenv("https_proxy", dead_url, 1);
    /* Without a bypass, the environment's proxy is used, and it is dead. */
    const char *noextra[] = {NULL};
    expect_reconnecting(noextra, "(proxy unreachable)");

    setenv("NO_PROXY", "localhost, 127.0.0.0/8", 1);
    start_shim(noextra, line, sizeof(line));
    cr_expect(strstr(line, " direct"), "%s", line);
    expect_echo();
    cr_expect_eq(ts_shim_stop(&shim, ts_deadline(ts_ms(WAIT_MS))), 0);
    finish();
}

Test(proxy, unreachable_proxy_is_its_own_failure, .init = setup, .fini = teardown, .timeout = 90)
{
    char url[64];
    ts_run_t r;

    start_gateway();
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)ts_free_tcp_port());
    const char *extra[] = {"--proxy", url, NULL};
    expect_reconnecting(extra, "(proxy unreachable)");

    /* A proxy URL we cannot use is a configuration error. */
    const char *bad[] = {"--proxy", "ftp://127.0.0.1:21", NULL};
    run_shim(bad, &r);
    cr_expect_eq(r.code, 6, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "proxy config"), "%s", r.err);
    ts_run_free(&r);
    finish();
}

Test(proxy, a_reply_that_is_not_http_is_proxy_malformed, .init = setup, .fini = teardown,
     .timeout = 90)
{
    ts_addr_t a;
    socklen_t len = sizeof(a.sa);
    char url[64], gw[128], req[2048];
    ts_shim_argv_t args;
    ts_proc_t p = {.out_fd = -1, .in_fd = -1};
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fd;

    start_gateway();
    /* A "proxy" in this process: it reads the CONNECT and answers garbage. */
    ts_addr_loopback(&a, AF_INET, 0);
    cr_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&a.sa, a.len) == 0 &&
              listen(lfd, 4) == 0 && getsockname(lfd, (struct sockaddr *)&a.sa, &len) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)ts_addr_port(&a));
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", gw, sizeof(gw)), 0);
    cr_assert_eq(ts_shim_argv_init(&args, NULL, gw), 0);
    ts_shim_argv_add(&args, relay_args);
    ts_shim_argv_add(&args, (const char *const[]){"--proxy", url, NULL});
    cr_assert_eq(ts_proc_spawn(&p, "sluice-shim", ts_shim_argv(&args), 0), 0);
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, ts_remaining_ms(ts_deadline(ts_ms(WAIT_MS)))), 1,
                 "the shim did not connect to the proxy");
    fd = accept(lfd, NULL, NULL);
    cr_assert_geq(fd, 0);
    struct pollfd rfd = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&rfd, 1, ts_remaining_ms(ts_deadline(ts_ms(WAIT_MS)))), 1);
    ssize_t n = read(fd, req, sizeof(req) - 1);
    cr_assert_gt(n, 0);
    req[n] = '\0';
    cr_expect(strncmp(req, "CONNECT 127.0.0.1:", 18) == 0, "%s", req);
    static const char garbage[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
    cr_assert_eq(ts_tcp_send_all(fd, garbage, sizeof(garbage) - 1), 0);
    /* Transient: the shim says why and will try again. */
    char line[TS_PROC_LINE_MAX];
    cr_assert_eq(ts_proc_wait_line(&p, "sluice-shim reconnecting", ts_deadline(ts_ms(WAIT_MS)),
                                   line, sizeof(line)),
                 0, "no reconnect");
    cr_expect(strstr(line, "(proxy malformed)"), "%s", line);
    cr_expect_eq(ts_proc_stop(&p, ts_deadline(ts_ms(WAIT_MS))), 0, "the shim did not exit 0");
    close(fd);
    close(lfd);
    ts_proc_dispose(&p);
    finish();
}

Test(proxy, a_proxy_that_never_answers_the_connect_is_proxy_timeout, .init = setup,
     .fini = teardown, .timeout = 90)
{
    ts_addr_t a;
    socklen_t len = sizeof(a.sa);
    char url[64], req[2048];
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    start_gateway();
    /* A "proxy" that accepts (the kernel completes the handshake into the
     * backlog) and never says a word. */
    ts_addr_loopback(&a, AF_INET, 0);
    cr_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&a.sa, a.len) == 0 &&
              listen(lfd, 8) == 0 && getsockname(lfd, (struct sockaddr *)&a.sa, &len) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)ts_addr_port(&a));
    const char *extra[] = {"--proxy", url, "--connect-timeout-ms", "500", NULL};
    int64_t t0 = ts_now_ms();
    expect_reconnecting(extra, "(proxy timeout)");
    int64_t took = ts_now_ms() - t0;
    fprintf(stderr, "proxy timeout: reconnecting line %lld ms after start\n", (long long)took);
    /* Far below the 10 s default: the option is what set the deadline. */
    cr_expect_lt(took, 5000, "took %lld ms", (long long)took);
    /* It was the CONNECT that went unanswered, not the TCP connect. */
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, ts_remaining_ms(ts_deadline(ts_ms(WAIT_MS)))), 1);
    int fd = accept(lfd, NULL, NULL);
    cr_assert_geq(fd, 0);
    struct pollfd rfd = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&rfd, 1, ts_remaining_ms(ts_deadline(ts_ms(WAIT_MS)))), 1);
    ssize_t n = read(fd, req, sizeof(req) - 1);
    cr_assert_gt(n, 0);
    req[n] = '\0';
    cr_expect(strncmp(req, "CONNECT 127.0.0.1:", 18) == 0, "%s", req);
    close(fd);
    close(lfd);
    finish();
}

/* ---- sluice-shim probe through proxies ------------------------------------ */

/* Runs `sluice-shim probe` against the fixture's gateway with extra
 * arguments (NULL terminated); r->out holds the report. */
static void run_probe(const char *const *extra, ts_run_t *r)
{
    char url[128];
    ts_shim_argv_t a;

    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "", url, sizeof(url)), 0);
    cr_assert_eq(ts_shim_argv_init(&a, "probe", url), 0);
    ts_shim_argv_add(&a, (const char *const[]){"--tenant", TS_FX_TENANT, "--kind", "sfu",
                                               "--secret", TS_FX_SECRET, NULL});
    ts_shim_argv_add(&a, extra);
    cr_assert_not_null(ts_shim_argv(&a));
    cr_assert_eq(ts_run(ts_shim_argv(&a), NULL, ts_deadline(ts_ms(30000)), r), 0);
    cr_assert_eq(r->timed_out, 0, "the probe did not exit: %s", r->err);
    fprintf(stderr, "---- probe (exit %d):\n%s", r->code, r->out);
}

static void expect_in(const ts_run_t *r, const char *want)
{
    cr_expect_not_null(strstr(r->out, want), "'%s' not in:\n%s", want, r->out);
}

Test(proxy, probe_goes_through_squid_and_names_it, .init = setup, .fini = teardown,
     .timeout = 90)
{
    char pac[512], want[256], gw[64];
    uint16_t dead = ts_free_tcp_port();
    ts_run_t r;

    start_gateway();
    start_squid(NULL);
    cr_assert_neq(dead, 0);
    snprintf(gw, sizeof(gw), "127.0.0.1:%u", (unsigned)gw_port());

    /* --proxy: the one route, and it works. */
    const char *explicit[] = {"--proxy", sq.url, NULL};
    run_probe(explicit, &r);
    cr_expect_eq(r.code, 0);
    snprintf(want, sizeof(want), "probe proxy: --proxy -> proxy 127.0.0.1:%u\n",
             (unsigned)sq.port);
    expect_in(&r, want);
    snprintf(want, sizeof(want), "probe tls %s: ok in ", gw);
    expect_in(&r, want);
    snprintf(want, sizeof(want), " ms via proxy 127.0.0.1:%u (alpn=h2 ", (unsigned)sq.port);
    expect_in(&r, want);
    expect_in(&r, "probe tunnel acme/sfu: ok in ");
    expect_in(&r, "probe result: tunnel works\n");
    ts_run_free(&r);
    snprintf(want, sizeof(want), "CONNECT %s", gw);
    cr_expect_eq(ts_log_wait(sq.access_log, want, 1, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "squid saw no %s", want);

    /* A PAC naming a dead proxy first: both routes listed, the second
     * works, and the first is named with its failure class. */
    snprintf(pac, sizeof(pac),
             "function FindProxyForURL(url, host) {\n"
             "  return \"PROXY 127.0.0.1:%u; PROXY 127.0.0.1:%u\";\n"
             "}\n",
             (unsigned)dead, (unsigned)sq.port);
    const char *path = write_tmp("probe.pac", pac);
    const char *bypac[] = {"--proxy-pac", path, NULL};
    run_probe(bypac, &r);
    cr_expect_eq(r.code, 0);
    snprintf(want, sizeof(want),
             "probe proxy: PAC \"PROXY 127.0.0.1:%u; PROXY 127.0.0.1:%u\" -> proxy 127.0.0.1:%u; "
             "proxy 127.0.0.1:%u\n",
             (unsigned)dead, (unsigned)sq.port, (unsigned)dead, (unsigned)sq.port);
    expect_in(&r, want);
    snprintf(want, sizeof(want), " ms via proxy 127.0.0.1:%u (alpn=h2 ", (unsigned)sq.port);
    expect_in(&r, want);
    snprintf(want, sizeof(want), "; failed first: proxy 127.0.0.1:%u: proxy unreachable)\n",
             (unsigned)dead);
    expect_in(&r, want);
    expect_in(&r, "probe result: tunnel works\n");
    ts_run_free(&r);

    /* The environment's proxy, bypassed by NO_PROXY: said so, direct. */
    char dead_url[64];
    snprintf(dead_url, sizeof(dead_url), "http://user:hunter2@127.0.0.1:%u", (unsigned)dead);
    setenv("https_proxy", dead_url, 1);
    setenv("NO_PROXY", "127.0.0.0/8", 1);
    const char *none[] = {NULL};
    run_probe(none, &r);
    cr_expect_eq(r.code, 0);
    snprintf(want, sizeof(want),
             "probe proxy: env https_proxy=proxy 127.0.0.1:%u (bypassed by NO_PROXY) -> direct\n",
             (unsigned)dead);
    expect_in(&r, want);
    expect_in(&r, " ms direct (alpn=h2 ");
    cr_expect_null(strstr(r.out, "hunter2"), "the password leaked: %s", r.out);
    ts_run_free(&r);
    finish();
}

Test(proxy, probe_reports_a_dead_proxy_and_proxy_auth, .init = setup, .fini = teardown,
     .timeout = 90)
{
    const ts_squid_opts_t so = {.user = "alice", .password = "open sesame"};
    char dead_url[64], want[256], gw[64];
    uint16_t dead = ts_free_tcp_port();
    ts_run_t r;

    start_gateway();
    snprintf(gw, sizeof(gw), "127.0.0.1:%u", (unsigned)gw_port());
    snprintf(dead_url, sizeof(dead_url), "http://127.0.0.1:%u", (unsigned)dead);

    /* A dead proxy: the TLS rung fails naming the route and its class, the
     * tunnel is not tried, nothing works. */
    const char *deadp[] = {"--proxy", dead_url, NULL};
    run_probe(deadp, &r);
    cr_expect_eq(r.code, 1);
    snprintf(want, sizeof(want), "probe tls %s: failed in ", gw);
    expect_in(&r, want);
    snprintf(want, sizeof(want), " ms (proxy 127.0.0.1:%u: proxy unreachable (", (unsigned)dead);
    expect_in(&r, want);
    expect_in(&r, "probe tunnel acme/sfu: skipped (no connection to the gateway)\n");
    expect_in(&r, "probe result: nothing works\n");
    ts_run_free(&r);

    /* A proxy that wants credentials: without them "proxy auth" naming
     * Basic; with --proxy-user-file the probe gets through. */
    start_squid(&so);
    const char *noauth[] = {"--proxy", sq.url, NULL};
    run_probe(noauth, &r);
    cr_expect_eq(r.code, 1);
    snprintf(want, sizeof(want), " ms (proxy 127.0.0.1:%u: proxy auth (", (unsigned)sq.port);
    expect_in(&r, want);
    expect_in(&r, "offered: Basic");
    ts_run_free(&r);
    const char *creds = write_tmp("proxy-user", "alice:open sesame\n");
    const char *auth[] = {"--proxy", sq.url, "--proxy-user-file", creds, NULL};
    run_probe(auth, &r);
    cr_expect_eq(r.code, 0);
    snprintf(want, sizeof(want), " ms via proxy 127.0.0.1:%u (alpn=h2 ", (unsigned)sq.port);
    expect_in(&r, want);
    expect_in(&r, "probe result: tunnel works\n");
    ts_run_free(&r);
    finish();
}
