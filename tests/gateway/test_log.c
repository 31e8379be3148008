/*
 * test_log.c — gateway/log.c: one line per message whatever the arguments
 * hold, and the rate limiter for repeated events, driven by injected time
 * (no sleeping).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/log.h"

#define MS 1000000ull
#define T0 (5000 * MS) /* an arbitrary monotonic start */

static char path[64];
static int saved_stderr = -1;

/* Each test runs in its own process: stderr goes to a file, read back. */
static void capture(void)
{
    snprintf(path, sizeof path, "/tmp/sluice-test-log-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    fflush(stderr);
    saved_stderr = dup(2);
    cr_assert_eq(dup2(fd, 2), 2);
    close(fd);
    log_set_level(LOG_INFO);
}

static void release(void)
{
    if (saved_stderr >= 0) {
        fflush(stderr);
        dup2(saved_stderr, 2);
        close(saved_stderr);
        saved_stderr = -1;
    }
    unlink(path);
}

TestSuite(log, .init = capture, .fini = release);

/* The captured output so far (static buffer) and its number of lines. */
static const char *output(size_t *nlines)
{
    static char buf[65536];
    fflush(stderr);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += buf[i] == '\n';
    if (nlines)
        *nlines = lines;
    return buf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(log, one_line_whatever_the_arguments)
{
    log_msg(LOG_INFO, "client said %s", "bye\n2024-01-01T00:00:00Z sluiced info: forged\r\x1b[2J\x7f");
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 1, "%s", out);
    cr_assert(strstr(out, " level=info msg=\"client said bye\\n2024-01-01T00:00:00Z sluiced info: "
                          "forged\\r\\x1b[2J\\x7f\"\n"),
              "%s", out);
    cr_assert(!strncmp(out, "ts=", 3), "%s", out);

    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_msg(LOG_WARN, "%s", big);
    out = output(&lines);
    cr_assert_eq(lines, 2, "an over-long message is cut, still one line");
}

Test(log, level_filters)
{
    log_set_level(LOG_WARN);
    log_msg(LOG_INFO, "hidden");
    log_msg(LOG_WARN, "shown");
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 1, "%s", out);
    cr_assert(strstr(out, " level=warn msg=shown\n"), "%s", out);
}

Test(log, burst_then_one_summary_when_the_kind_is_next_logged)
{
    log_limit_t lim = LOG_LIMIT_INIT("auth failure", 3, 1000);
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += log_limit_take(&lim, T0 + (uint64_t)i * MS, LOG_INFO) &&
                   (log_msg(LOG_INFO, "auth failure %d", i), 1);
    cr_assert_eq(allowed, 3);
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 3, "%s", out);
    cr_assert(strstr(out, "auth failure 0") && strstr(out, "auth failure 2"));
    cr_assert_null(strstr(out, "auth failure 3"));

    /* Still inside the window (999 ms after its start): counted, not written. */
    log_limited(&lim, T0 + 999 * MS, LOG_INFO, "auth failure late");
    out = output(&lines);
    cr_assert_eq(lines, 3, "%s", out);

    /* The window has ended: the summary, then the line itself. */
    log_limited(&lim, T0 + 1000 * MS, LOG_INFO, "auth failure next");
    out = output(&lines);
    cr_assert_eq(lines, 5, "%s", out);
    const char *sum = strstr(out, "auth failure: 8 similar lines suppressed in 1000 ms");
    const char *next = strstr(out, "auth failure next");
    cr_assert(sum && next && sum < next, "%s", out);

    /* A quiet window has nothing to report. */
    log_limited(&lim, T0 + 5000 * MS, LOG_INFO, "auth failure later");
    out = output(&lines);
    cr_assert_eq(lines, 6, "%s", out);
    cr_assert_eq(count(out, "suppressed"), 1, "%s", out);
}

/* One connection's limiter names the connection in its summary. */
Test(log, a_summary_names_whose_events_it_counted)
{
    log_limit_t lim = {.what = "tunnel open/close", .who = "192.0.2.7:40312", .burst = 2,
                       .interval_ns = 1000 * MS};
    for (int i = 0; i < 7; i++)
        log_limited(&lim, T0 + (uint64_t)i * MS, LOG_INFO, "tunnel.open %d", i);
    log_limit_flush(&lim, UINT64_MAX);
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 3, "%s", out);
    cr_assert(strstr(out, "tunnel open/close of 192.0.2.7:40312: 5 similar lines suppressed"),
              "%s", out);
}

Test(log, every_window_allows_its_burst)
{
    log_limit_t lim = LOG_LIMIT_INIT("bad request", 2, 100);
    int allowed = 0;
    /* 50 windows of 100 ms, 20 events each (one every 5 ms). */
    for (uint64_t t = 0; t < 5000; t += 5)
        allowed += log_limit_take(&lim, T0 + t * MS, LOG_INFO);
    cr_assert_eq(allowed, 50 * 2);
    size_t lines;
    const char *out = output(&lines);
    /* Each window after the first opens with the summary of the one before. */
    cr_assert_eq(count(out, "bad request: 18 similar lines suppressed in 100 ms"), 49, "%s", out);
}

Test(log, flush_reports_a_burst_followed_by_silence)
{
    log_limit_t lim = LOG_LIMIT_INIT("protocol error", 1, 1000);
    for (int i = 0; i < 5; i++)
        log_limited(&lim, T0 + (uint64_t)i * MS, LOG_INFO, "protocol error %d", i);
    size_t lines;
    output(&lines);
    cr_assert_eq(lines, 1);
    log_limit_flush(&lim, T0 + 999 * MS);
    output(&lines);
    cr_assert_eq(lines, 1, "the window has not ended: nothing yet");
    log_limit_flush(&lim, T0 + 1000 * MS);
    const char *out = output(&lines);
    cr_assert_eq(lines, 2, "%s", out);
    cr_assert(strstr(out, "protocol error: 4 similar lines suppressed in 1000 ms"), "%s", out);
    log_limit_flush(&lim, T0 + 9000 * MS);
    output(&lines);
    cr_assert_eq(lines, 2, "reported once");

    /* At shutdown: UINT64_MAX ends the window whenever it started. */
    log_limited(&lim, T0 + 9000 * MS, LOG_INFO, "protocol error again");
    log_limited(&lim, T0 + 9001 * MS, LOG_INFO, "protocol error again");
    log_limit_flush(&lim, UINT64_MAX);
    out = output(&lines);
    cr_assert_eq(lines, 4, "%s", out);
    cr_assert(strstr(out, "protocol error: 1 similar lines suppressed"), "%s", out);
    /* And a clock value before the window's start opens a new window. */
    cr_assert_eq(log_limit_take(&lim, T0, LOG_INFO), 1);
}

Test(log, disabled_level_is_not_counted)
{
    log_set_level(LOG_WARN);
    log_limit_t lim = LOG_LIMIT_INIT("debug chatter", 1, 1000);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(log_limit_take(&lim, T0 + (uint64_t)i, LOG_INFO), 0);
    log_limit_flush(&lim, UINT64_MAX);
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 0, "%s", out);
}

Test(log, zero_burst_mutes_but_counts)
{
    log_limit_t lim = LOG_LIMIT_INIT("muted", 0, 1000);
    for (int i = 0; i < 7; i++)
        log_limited(&lim, T0 + (uint64_t)i * MS, LOG_WARN, "muted %d", i);
    log_limit_flush(&lim, T0 + 2000 * MS);
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 1, "%s", out);
    cr_assert(strstr(out, " level=warn msg=\"muted: 7 similar lines suppressed"), "%s", out);
}

/* An event: logfmt fields, quoted only when they must be, escaped inside. */
Test(log, events_are_logfmt)
{
    log_line_t l;
    cr_assert(log_begin(&l, LOG_INFO, "conn.close"));
    log_str(&l, "peer", "127.0.0.1:4000");
    log_str(&l, "reason", "write stall");
    log_str(&l, "empty", "");
    log_str(&l, "nul", NULL);
    log_str(&l, "tricky", "a=b \"c\" \\d\te\x01");
    log_u64(&l, "bytes", 18446744073709551615ull);
    log_i64(&l, "delta", -5);
    log_end(&l);
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 1);
    cr_assert(strstr(out, " level=info event=conn.close peer=127.0.0.1:4000 reason=\"write stall\""
                          " empty=\"\" nul=\"\" tricky=\"a=b \\\"c\\\" \\\\d\\te\\x01\""
                          " bytes=18446744073709551615 delta=-5\n"),
              "%s", out);
    log_set_level(LOG_WARN);
    cr_assert_not(log_begin(&l, LOG_INFO, "hidden"), "a level that is off builds nothing");
}

/* A field that does not fit is dropped whole and the line says so. */
Test(log, an_overfull_event_drops_whole_fields)
{
    char big[700];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_line_t l;
    cr_assert(log_begin(&l, LOG_INFO, "x"));
    log_str(&l, "a", big);
    log_str(&l, "b", big);
    log_u64(&l, "c", 7);
    log_end(&l);
    size_t lines;
    const char *out = output(&lines);
    cr_assert_eq(lines, 1);
    cr_assert(strstr(out, " a=yyy"), "%s", out);
    cr_assert_null(strstr(out, " b="), "a half field");
    cr_assert(strstr(out, " truncated=1\n"), "%s", out);
    cr_assert_leq(strlen(out), LOG_LINE_MAX + 1);
}

Test(log, level_names)
{
    cr_assert_eq(log_level_parse("error"), LOG_ERROR);
    cr_assert_eq(log_level_parse("warn"), LOG_WARN);
    cr_assert_eq(log_level_parse("info"), LOG_INFO);
    cr_assert_eq(log_level_parse("debug"), LOG_DEBUG);
    cr_assert_eq(log_level_parse("verbose"), -1);
    cr_assert_eq(log_level_parse(""), -1);
}
