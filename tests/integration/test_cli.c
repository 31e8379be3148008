/*
 * test_cli.c — sluiced as an operator meets it: SIGHUP. Runs the real binary.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_http.h"
#include "../support/ts_proc.h"
#include "../support/ts_util.h"

static ts_fixture_t fx;
static ts_http_resp_t resp;

static void teardown(void)
{
    ts_http_resp_free(&resp);
    ts_fixture_teardown(&fx);
}

static void need_build(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
}

/* Waits until the file at path contains needle, or the deadline. */
static int file_wait_text(const char *path, const char *needle, int64_t deadline)
{
    for (;;) {
        size_t len = 0;
        char *data = ts_read_file(path, 1u << 20, &len);
        int found = data && ts_memmem(data, len, needle);
        free(data);
        if (found)
            return 0;
        int left = ts_remaining_ms(deadline);
        if (left == 0)
            return -1;
        poll(NULL, 0, left < 20 ? left : 20);
    }
}

/* ---- SIGHUP ------------------------------------------------------------- */

Test(cli, sighup_is_logged_and_ignored, .fini = teardown, .timeout = 60)
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
    cr_expect_eq(file_wait_text(fx.gw.proc.err_path, "SIGHUP ignored",
                                ts_deadline(ts_ms(5000))),
                 0, "no \"SIGHUP ignored\" line in the gateway's log");

    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}
