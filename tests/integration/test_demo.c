/*
 * test_demo.c — smoke test of sluice-demo with small counts.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../support/ts_proc.h"
#include "../support/ts_util.h"

static ts_run_t run;

static void teardown(void)
{
    ts_run_free(&run);
}

Test(demo, small_run_exits_0_and_reports_loss_and_rtt, .fini = teardown)
{
    const char *build = ts_build_dir();
    cr_assert_not_null(build, "SLUICE_BUILD is not set (tests/run.sh sets it)");
    char bin[PATH_MAX];
    cr_assert_eq(ts_build_path(build, "sluice-demo", bin, sizeof bin), 0);
    char *argv[] = {bin,           "--build", (char *)build, "--packets", "40",
                    "--interval-ms", "2",     "--size",      "172",       NULL};
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(60000)), &run), 0, "cannot run %s", bin);
    cr_expect_eq(run.code, 0, "sluice-demo exit %d, expected 0\nstdout:\n%s\nstderr:\n%s",
                 run.code, run.out, run.err);

    const char *line = strstr(run.out, "sent ");
    cr_assert_not_null(line, "no \"sent ...\" line in:\n%s", run.out);
    unsigned sent = 0, received = 0, lost = 0;
    double loss = -1;
    int n = sscanf(line, "sent %u received %u lost %u (%lf %%)", &sent, &received, &lost, &loss);
    cr_assert_eq(n, 4, "cannot parse \"%.120s\"", line);
    cr_expect_eq(sent, 40, "sent %u of 40", sent);
    cr_expect_eq(received, 40, "received %u of 40 on loopback", received);
    cr_expect(loss >= 0.0 && loss <= 100.0, "loss %.2f %%", loss);
    cr_expect(ts_memmem(run.out, run.out_len, "rtt ms  min "),
              "no RTT percentiles line in:\n%s", run.out);
    cr_expect(ts_memmem(run.out, run.out_len, "p99 "), "no p99 in:\n%s", run.out);
}
