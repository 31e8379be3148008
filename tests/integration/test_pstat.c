/*
 * test_pstat.c — /proc CPU time and memory of a process
 * (tests/support/ts_pstat.h), which the load benchmark reads for sluiced.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <unistd.h>

#include "../support/ts_pstat.h"

Test(pstat, parse_counts_fields_after_the_last_paren)
{
    /* comm "a) b (c" holds spaces and parentheses; utime 1234, stime 56 */
    const char *line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 "
                       "1 0 123 4096 100 18446744073709551615\n";
    uint64_t u = 0, s = 0;
    cr_assert_eq(ts_pstat_parse_stat(line, &u, &s), 0);
    cr_assert_eq(u, 1234);
    cr_assert_eq(s, 56);
}

Test(pstat, parse_refuses_a_truncated_line)
{
    uint64_t u = 0, s = 0;
    cr_assert_eq(ts_pstat_parse_stat("4242 (x) S 1 2 3 4 5 6 7 8 9", &u, &s), -1);
    cr_assert_eq(ts_pstat_parse_stat("4242 x S", &u, &s), -1);
}

Test(pstat, reads_this_process)
{
    ts_pstat_t st = {0};
    cr_assert_eq(ts_pstat_read(getpid(), &st), 0);
    cr_assert_gt(st.rss_kb, 0);
    cr_assert_geq(st.hwm_kb, st.rss_kb);
    cr_assert_eq(ts_pstat_read(-1, &st), -1);
}
