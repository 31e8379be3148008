/* test_prom.c — gateway/prom.c: the exposition text byte for byte, label and
 * HELP escaping, cumulative histogram buckets in seconds, the size bound;
 * and Debian's `promtool check metrics` accepts a page that uses every
 * writer. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/prom.h"
#include <sys/wait.h>

static const uint64_t bounds_ns[] = {100000, 1000000, 10000000}; /* 0.1 ms, 1 ms, 10 ms */
static const prom_bounds_t bounds = {bounds_ns, 3};

Test(prom, counter_and_gauge_text)
{
    prom_buf_t b = {0};
    prom_family(&b, "sluice_tunnels_opened_total", PROM_COUNTER, "Tunnels opened.");
    prom_label_t l[] = {{"tenant", "acme"}, {"kind", "sfu"}};
    prom_u64(&b, "sluice_tunnels_opened_total", l, 2, 42);
    prom_family(&b, "sluice_up", PROM_GAUGE, "One.");
    prom_u64(&b, "sluice_up", NULL, 0, 1);
    prom_double(&b, "sluice_start_time_seconds", NULL, 0, 1764645000.5);
    cr_assert(!b.oom);
    cr_assert_str_eq(b.p, "# HELP sluice_tunnels_opened_total Tunnels opened.\n"
                          "# TYPE sluice_tunnels_opened_total counter\n"
                          "sluice_tunnels_opened_total{tenant=\"acme\",kind=\"sfu\"} 42\n"
                          "# HELP sluice_up One.\n"
                          "# TYPE sluice_up gauge\n"
                          "sluice_up 1\n"
                          "sluice_start_time_seconds 1764645000.5\n");
    prom_buf_free(&b);
}

Test(prom, escaping)
{
    prom_buf_t b = {0};
    prom_family(&b, "x", PROM_GAUGE, "a \\ b\nc \"q\"");
    prom_label_t l[] = {{"v", "a\\b\"c\nd"}};
    prom_u64(&b, "x", l, 1, 0);
    cr_assert_str_eq(b.p, "# HELP x a \\\\ b\\nc \"q\"\n"
                          "# TYPE x gauge\n"
                          "x{v=\"a\\\\b\\\"c\\nd\"} 0\n");
    prom_buf_free(&b);
}

Test(prom, histogram_is_cumulative_in_seconds)
{
    prom_hist_t h = {0}, w2 = {0};
    prom_hist_observe(&h, &bounds, 50000);    /* 0.05 ms: first bucket */
    prom_hist_observe(&h, &bounds, 100000);   /* on the bound: le is inclusive */
    prom_hist_observe(&w2, &bounds, 5000000); /* 5 ms, another worker */
    prom_hist_observe(&w2, &bounds, 2000000000); /* 2 s: +Inf */
    prom_hist_add(&h, &w2);
    prom_buf_t b = {0};
    prom_label_t l[] = {{"direction", "up"}};
    prom_hist_write(&b, "sluice_t_seconds", l, 1, &h, &bounds);
    cr_assert_str_eq(b.p, "sluice_t_seconds_bucket{direction=\"up\",le=\"0.0001\"} 2\n"
                          "sluice_t_seconds_bucket{direction=\"up\",le=\"0.001\"} 2\n"
                          "sluice_t_seconds_bucket{direction=\"up\",le=\"0.01\"} 3\n"
                          "sluice_t_seconds_bucket{direction=\"up\",le=\"+Inf\"} 4\n"
                          "sluice_t_seconds_sum{direction=\"up\"} 2.00515\n"
                          "sluice_t_seconds_count{direction=\"up\"} 4\n",
                     "%s", b.p);
    prom_buf_free(&b);
}

Test(prom, a_bounded_buffer_stops_and_says_so)
{
    prom_buf_t b = {.max = 64};
    for (int i = 0; i < 10; i++)
        prom_u64(&b, "sluice_something_long_total", NULL, 0, (uint64_t)i);
    cr_assert(b.oom);
    cr_assert_leq(b.len, 64u);
    prom_buf_free(&b);
    cr_assert_eq(b.max, 64u, "the bound stays for the next page");
}

Test(prom, promtool_accepts_the_page, .timeout = 60)
{
    prom_buf_t b = {0};
    prom_family(&b, "sluice_packets_total", PROM_COUNTER, "Packets relayed.");
    prom_label_t l[] = {{"tenant", "acme"}, {"kind", "turn"}, {"direction", "up"}};
    prom_u64(&b, "sluice_packets_total", l, 3, 7);
    l[2].value = "down";
    prom_u64(&b, "sluice_packets_total", l, 3, 9);
    prom_family(&b, "sluice_packet_residence_seconds", PROM_HISTOGRAM,
                "Time a packet spends inside the gateway.");
    prom_hist_t h = {0};
    prom_hist_observe(&h, &bounds, 30000);
    prom_hist_write(&b, "sluice_packet_residence_seconds", l + 2, 1, &h, &bounds);
    prom_family(&b, "sluice_start_time_seconds", PROM_GAUGE, "Start \"time\" \\ epoch.");
    prom_double(&b, "sluice_start_time_seconds", NULL, 0, 1764645000.25);
    cr_assert(!b.oom);

    /* promtool reads the page on stdin and exits 0 when it is valid. */
    FILE *f = popen("promtool check metrics", "w");
    cr_assert(f, "promtool (Debian's prometheus package) cannot be run");
    fwrite(b.p, 1, b.len, f);
    int status = pclose(f);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "promtool check metrics failed (status %d) on:\n%s", status, b.p);
    prom_buf_free(&b);
}
