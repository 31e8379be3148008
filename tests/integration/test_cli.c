/*
 * test_cli.c — sluiced as an operator meets it: SIGHUP (a reload; the rest of
 * reload is tests/integration/test_reload.c), --check-config on the
 * TLS files, and the open file limit (raised at start, and refused when the
 * config's connection and tunnel limits cannot fit under it). Runs the real
 * binary; the limits are set on the child with prlimit(1).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_http.h"
#include "../support/ts_log.h"
#include "../support/ts_proc.h"
#include "../support/ts_util.h"

static ts_fixture_t fx;
static ts_run_t run;
static ts_proc_t proc;
static ts_http_resp_t resp;

static void teardown(void)
{
    ts_run_free(&run);
    ts_proc_dispose(&proc);
    ts_http_resp_free(&resp);
    ts_fixture_teardown(&fx);
}

static void need_build(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
}

/* ---- SIGHUP ------------------------------------------------------------- */

Test(cli, sighup_reloads_the_unchanged_file_and_keeps_serving, .fini = teardown, .timeout = 60)
{
    need_build();
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0,
                 "sluiced did not print its ready line (its output is above)");
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGHUP), 0);

    /* Still serving: a request gets its answer (GET on a tunnel path: 405). */
    char url[256];
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "/v1/tunnel/acme/sfu", url, sizeof url), 0);
    ts_http_req_t q = {.url = url, .method = "GET", .max_time_s = 10};
    cr_assert_eq(ts_http(&q, &resp), 0, "cannot run curl");
    cr_expect_eq(resp.status, 405, "after SIGHUP: status %d (curl exit %d: %s)", resp.status,
                 resp.curl_exit, resp.err);
    cr_expect_eq(ts_log_wait(fx.gw.proc.err_path, "event=config.reloaded", 1,
                             ts_deadline(ts_ms(5000))),
                 0, "no config.reloaded event in the gateway's log");

    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}

/* ---- --check-config and the TLS files ----------------------------------- */

/* Runs sluiced with args (and a wrapper in front, e.g. prlimit, when wrap is
 * not NULL) to completion into run. */
static void run_sluiced(const char *wrap, const char *mode, const char *config)
{
    char bin[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluiced", bin, sizeof bin), 0);
    char *argv[6];
    size_t n = 0;
    if (wrap) {
        argv[n++] = "prlimit";
        argv[n++] = (char *)wrap;
    }
    argv[n++] = bin;
    argv[n++] = (char *)mode;
    argv[n++] = (char *)config;
    argv[n] = NULL;
    ts_run_free(&run);
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(15000)), &run), 0, "cannot run %s",
                 argv[0]);
}

/* sluiced <mode> config must exit with want_code, saying every one of want[]. */
static void expect_run(const char *wrap, const char *mode, const char *config, int want_code,
                       const char *const *want)
{
    run_sluiced(wrap, mode, config);
    cr_expect_eq(run.code, want_code, "sluiced %s %s: exit %d, expected %d\nstdout: %s\nstderr: %s",
                 mode, config, run.code, want_code, run.out, run.err);
    for (size_t i = 0; want[i]; i++)
        cr_expect(ts_memmem(run.out, run.out_len, want[i]) ||
                      ts_memmem(run.err, run.err_len, want[i]),
                  "sluiced %s %s: output does not mention \"%s\"\nstdout: %s\nstderr: %s", mode,
                  config, want[i], run.out, run.err);
}

#define WANT(...) ((const char *const[]){__VA_ARGS__, NULL})

static void std_config(ts_config_t *c, const char *cert, const char *key, char *path, size_t cap)
{
    ts_fixture_std_config(c, AF_INET, "127.0.0.1:9");
    c->cert = cert;
    c->key = key;
    cr_assert_eq(ts_config_write(c, path, cap), 0);
}

Test(cli, check_config_loads_the_tls_files, .fini = teardown, .timeout = 120)
{
    need_build();
    char cert[PATH_MAX], key[PATH_MAX], missing[PATH_MAX], other_key[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(missing, sizeof missing, "%s/no-such.pem", ts_tmpdir());
    cr_assert_eq(ts_tmppath("other-key.pem", other_key, sizeof other_key), 0);
    char *gen[] = {"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-out", other_key, NULL};
    cr_assert_eq(ts_run(gen, NULL, ts_deadline(ts_ms(15000)), &run), 0);
    cr_assert_eq(run.code, 0, "openssl genpkey: %s", run.err);

    char path[PATH_MAX];
    ts_config_t c;

    std_config(&c, cert, key, path, sizeof path);
    expect_run(NULL, "--check-config", path, 0, WANT("config ok"));

    std_config(&c, missing, key, path, sizeof path);
    expect_run(NULL, "--check-config", path, 2,
               WANT("certificate", missing, "No such file or directory"));

    std_config(&c, cert, missing, path, sizeof path);
    expect_run(NULL, "--check-config", path, 2,
               WANT("private key", missing, "No such file or directory"));

    std_config(&c, ts_tmpdir(), key, path, sizeof path);
    expect_run(NULL, "--check-config", path, 2,
               WANT("certificate", ts_tmpdir(), "is a directory"));

    std_config(&c, cert, ts_tmpdir(), path, sizeof path);
    expect_run(NULL, "--check-config", path, 2,
               WANT("private key", ts_tmpdir(), "is a directory"));

    std_config(&c, key, key, path, sizeof path); /* a key where the certificate goes */
    expect_run(NULL, "--check-config", path, 2, WANT("certificate", key, "PEM"));

    std_config(&c, cert, other_key, path, sizeof path);
    expect_run(NULL, "--check-config", path, 2, WANT(other_key, "does not match", cert));
    /* Start-up judges it the same way, before binding anything. */
    expect_run(NULL, "--config", path, 2, WANT(other_key, "does not match", cert));
}

/* ---- the open file limit ------------------------------------------------ */

/* The "= N file descriptors" figure of a refusal, or 0. */
static unsigned long fds_needed(const char *text)
{
    const char *p = strstr(text, "= ");
    while (p && !strstr(p, " file descriptors"))
        p = strstr(p + 1, "= ");
    unsigned long n = 0;
    return p && sscanf(p, "= %lu file descriptors", &n) == 1 ? n : 0;
}

Test(cli, config_that_cannot_fit_the_fd_limit_is_refused, .fini = teardown, .timeout = 120)
{
    need_build();
    char path[PATH_MAX];
    ts_config_t c;
    ts_fixture_std_config(&c, AF_INET, "127.0.0.1:9");
    cr_assert_eq(ts_config_write(&c, path, sizeof path), 0);

    /* The defaults (8192 + 8192) under a hard limit of 256. */
    static const char *const want[] = {"$.limits.max_connections (8192)",
                                       "$.limits.max_tunnels (8192)", "RLIMIT_NOFILE) is 256",
                                       "hard limit 256", NULL};
    expect_run("--nofile=256:256", "--check-config", path, 2, want);
    unsigned long need = fds_needed(run.err);
    cr_expect_gt(need, 8192ul + 8192ul, "\"= N file descriptors\" missing or too small: %s",
                 run.err);
    expect_run("--nofile=256:256", "--config", path, 2, want);
    cr_expect_null(strstr(run.out, "sluiced ready"), "it started anyway: %s", run.out);

    /* Small limits: the figure it asks for is exactly the figure that fits. */
    c.limits_json = "{\"max_connections\":100,\"max_tunnels\":50}";
    cr_assert_eq(ts_config_write(&c, path, sizeof path), 0);
    expect_run("--nofile=64:64", "--check-config", path, 2,
               WANT("$.limits.max_connections (100)", "$.limits.max_tunnels (50)"));
    need = fds_needed(run.err);
    cr_assert_geq(need, 150, "%s", run.err);
    char exact[64], short_by_one[64];
    snprintf(exact, sizeof exact, "--nofile=%lu:%lu", need, need);
    snprintf(short_by_one, sizeof short_by_one, "--nofile=%lu:%lu", need - 1, need - 1);
    expect_run(exact, "--check-config", path, 0, WANT("config ok"));
    expect_run(short_by_one, "--check-config", path, 2, WANT("max_tunnels (50)"));
    /* The soft limit is raised to the hard one before judging. */
    snprintf(exact, sizeof exact, "--nofile=64:%lu", need);
    expect_run(exact, "--check-config", path, 0, WANT("config ok"));
}

Test(cli, soft_fd_limit_is_raised_to_the_hard_limit, .fini = teardown, .timeout = 60)
{
    need_build();
    char path[PATH_MAX], bin[PATH_MAX];
    ts_config_t c;
    ts_fixture_std_config(&c, AF_INET, "127.0.0.1:9");
    c.limits_json = "{\"max_connections\":1000,\"max_tunnels\":1000}"; /* > 256, < 4096 */
    cr_assert_eq(ts_config_write(&c, path, sizeof path), 0);
    cr_assert_eq(ts_build_path(NULL, "sluiced", bin, sizeof bin), 0);

    /* prlimit execs the command, so the pid is sluiced's. */
    char *argv[] = {"prlimit", "--nofile=256:4096", bin, "--config", path, NULL};
    cr_assert_eq(ts_proc_spawn(&proc, "sluiced", argv, 0), 0);
    cr_assert_eq(ts_proc_wait_line(&proc, "sluiced ready ", ts_deadline(ts_ms(15000)), NULL, 0),
                 0, "sluiced did not start under a soft limit of 256 (hard 4096)");

    char limits_path[64];
    snprintf(limits_path, sizeof limits_path, "/proc/%d/limits", (int)proc.pid);
    char *limits = ts_read_file(limits_path, 65536, NULL);
    cr_assert_not_null(limits, "cannot read %s", limits_path);
    const char *line = strstr(limits, "Max open files");
    unsigned long soft = 0, hard = 0;
    int n = line ? sscanf(line, "Max open files %lu %lu", &soft, &hard) : 0;
    char copy[128] = "";
    if (line)
        snprintf(copy, sizeof copy, "%.*s", (int)strcspn(line, "\n"), line);
    free(limits);
    cr_assert_eq(n, 2, "no open file limit in %s", limits_path);
    cr_expect_eq(hard, 4096, "%s", copy);
    cr_expect_eq(soft, 4096, "the soft limit was not raised to the hard one: %s", copy);
    cr_expect_eq(ts_log_wait(proc.err_path, "fd_limit=4096 fd_limit_was=256", 1,
                                ts_deadline(ts_ms(5000))),
                 0, "the start-up line does not report the raised limit");
    cr_expect_eq(ts_proc_stop(&proc, ts_deadline(ts_ms(10000))), 0);
}
