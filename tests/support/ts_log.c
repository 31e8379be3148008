/*
 * ts_log.c — text in log files (see ts_log.h).
 */
#include "ts_log.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_util.h"

#define POLL_MS 10

/* The n-th occurrence of needle in buf[0..len), or NULL. */
static const char *nth(const char *buf, size_t len, const char *needle, size_t n)
{
    size_t nl = strlen(needle);
    const char *p = buf, *end = buf + len;

    for (size_t i = 0; nl && p < end; i++) {
        const char *hit = memmem(p, (size_t)(end - p), needle, nl);
        if (!hit)
            return NULL;
        if (i + 1 == n)
            return hit;
        p = hit + nl;
    }
    return NULL;
}

size_t ts_log_count(const char *path, const char *needle)
{
    size_t len = 0, n = 0;
    char *buf = ts_read_file(path, TS_LOG_MAX, &len);

    while (buf && nth(buf, len, needle, n + 1))
        n++;
    free(buf);
    return n;
}

int ts_log_wait(const char *path, const char *needle, size_t n, int64_t deadline)
{
    for (;;) {
        if (ts_log_count(path, needle) >= n)
            return 0;
        if (ts_remaining_ms(deadline) == 0)
            return -1;
        poll(NULL, 0, ts_remaining_ms(deadline) < POLL_MS ? ts_remaining_ms(deadline) : POLL_MS);
    }
}

int ts_log_line(const char *path, const char *needle, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    char *buf = ts_read_file(path, TS_LOG_MAX, &len);
    const char *hit = buf ? nth(buf, len, needle, n) : NULL;
    int rc = -1;

    if (hit) {
        const char *start = hit, *stop = hit;
        while (start > buf && start[-1] != '\n')
            start--;
        while (stop < buf + len && *stop != '\n')
            stop++;
        snprintf(out, cap, "%.*s", (int)(stop - start), start);
        rc = 0;
    }
    free(buf);
    return rc;
}
