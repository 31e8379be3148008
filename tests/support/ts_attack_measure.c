/*
 * ts_attack_measure.c — one attack on a fresh sluiced while a legitimate
 * call is measured (see ts_attack.h).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ts_attack.h"
#include "ts_config.h"
#include "ts_fixture.h"
#include "ts_pstat.h"
#include "ts_util.h"

#define CALL_PPS 50
#define CALL_LEN 200
#define WARMUP_MS 500
#define SETTLE_QUIET_MS 500

static ts_fixture_t fx;

typedef struct attack_job {
    const ts_attack_t *a;
    const ts_attack_env_t *env;
    ts_attack_result_t *res;
    int rc;
} attack_job_t;

/* The attacker runs on a thread of its own at nice 19 (Linux: the nice value
 * is per thread): on loopback it shares the machine's CPUs with the gateway
 * and the measured call, while a real attacker brings its own machine. The
 * gateway's CPU is what the attack may cost; the attacker's is not. */
static void *attack_thread(void *arg)
{
    attack_job_t *j = arg;
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    j->rc = ts_attack_run(j->a, j->env, j->res);
    return NULL;
}

/* Lines in a file (a sluiced's stderr). */
static size_t file_lines(const char *path)
{
    size_t len = 0, n = 0;
    char *s = ts_read_file(path, 64u << 20, &len);
    for (size_t i = 0; s && i < len; i++)
        n += s[i] == '\n';
    free(s);
    return n;
}

/* Keeps the call running (measuring into the current phase) for ms. */
static void run_call(int ms)
{
    poll(NULL, 0, ms); /* the call's thread does the work: this is its window */
}

int ts_attack_measure(const ts_attack_t *a, const char *limits_json, const ts_attack_env_t *opts,
                      int base_ms, int min_attack_ms, ts_attack_row_t *row)
{
    memset(row, 0, sizeof *row);
    memset(&fx, 0, sizeof fx);
    ts_acall_t *call = NULL;
    int app_fd = -1, rc = -1;
    ts_shim_t *shim;
    const char *why = NULL;
    if (ts_fixture_start(&fx, AF_INET, limits_json ? limits_json : TS_ATTACK_LIMITS) < 0) {
        snprintf(row->why, sizeof row->why, "sluiced did not start");
        goto out;
    }
    if (ts_fixture_add_live_shim(&fx, &shim, &app_fd, &why) < 0) {
        snprintf(row->why, sizeof row->why, "the bystander: %s", why);
        goto out;
    }
    call = ts_acall_start(app_fd, &shim->listen, CALL_PPS, CALL_LEN);
    if (!call) {
        snprintf(row->why, sizeof row->why, "cannot start the call's thread");
        goto out;
    }
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    if (ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, NULL, username, sizeof username, cred,
                     sizeof cred) < 0) {
        snprintf(row->why, sizeof row->why, "cannot mint a credential");
        goto out;
    }
    ts_attack_env_t env = {.gw = fx.gw.listen[0], .path = "/v1/tunnel/" TS_FX_TENANT "/sfu",
                           .username = username, .credential = cred, .max_streams = 100,
                           .conns = opts ? opts->conns : 0,
                           .open_per_s = opts ? opts->open_per_s : 0,
                           .duration_ms = opts ? opts->duration_ms : 0};

    run_call(WARMUP_MS);
    ts_acall_phase(call, 1);
    run_call(base_ms);
    ts_acall_phase(call, 0);

    ts_pstat_t ps = {0};
    row->rss_before_kb = ts_pstat_read(fx.gw.proc.pid, &ps) == 0 ? ps.rss_kb : -1;
    uint64_t cpu0 = ps.utime_ns + ps.stime_ns;
    size_t lines0 = file_lines(fx.gw.proc.err_path);
    ts_acall_phase(call, 2);
    int64_t t0 = ts_now_ms();
    attack_job_t job = {.a = a, .env = &env, .res = &row->res, .rc = -1};
    pthread_t th;
    if (pthread_create(&th, NULL, attack_thread, &job) != 0)
        snprintf(row->res.why, sizeof row->res.why, "cannot start the attacker's thread");
    else
        pthread_join(th, NULL);
    if (job.rc < 0) {
        ts_acall_phase(call, 0);
        snprintf(row->why, sizeof row->why, "%s", row->res.why);
        goto out;
    }
    int64_t left = min_attack_ms - (ts_now_ms() - t0);
    if (left > 0)
        run_call((int)left);
    ts_acall_phase(call, 3);
    row->window_ms = ts_now_ms() - t0;
    if (ts_pstat_read(fx.gw.proc.pid, &ps) == 0)
        row->cpu_ns = ps.utime_ns + ps.stime_ns - cpu0;
    ts_acall_settle(call, 1, SETTLE_QUIET_MS, ts_deadline(ts_ms(3000)));
    ts_acall_settle(call, 2, SETTLE_QUIET_MS, ts_deadline(ts_ms(3000)));
    ts_acall_stats(call, 1, &row->base);
    ts_acall_stats(call, 2, &row->during);
    row->rss_after_kb = ts_pstat_read(fx.gw.proc.pid, &ps) == 0 ? ps.rss_kb : -1;
    row->hwm_after_kb = row->rss_after_kb >= 0 ? ps.hwm_kb : -1;
    row->log_lines = file_lines(fx.gw.proc.err_path) - lines0;
    row->ran = 1;
    rc = 0;
out:
    ts_acall_stop(call);
    if (app_fd >= 0)
        close(app_fd);
    const char *what;
    int code;
    row->gw_ok = fx.gw_started && ts_fixture_stop(&fx, &what, &code) == 0;
    ts_fixture_teardown(&fx);
    return rc;
}
