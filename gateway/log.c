/* log.c — see log.h. The level is the one piece of process-wide state: it is
 * set once at start-up from the command line, before the loop runs. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level max_level = LOG_INFO;

void log_set_level(enum log_level level)
{
    max_level = level;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > max_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ sluiced %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
    if (n > 0 && (size_t)n < sizeof line) {
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        /* One line, whatever the arguments held (see log.h). */
        for (char *p = line + n; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    /* One write per line so lines from a future multi-loop process interleave whole. */
    fprintf(stderr, "%s\n", line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

/* Reports the window's suppressed lines, if any, and starts a new window. */
static void limit_roll(log_limit_t *lim, uint64_t now)
{
    if (lim->_suppressed)
        log_msg(lim->_level, "%s: %llu similar lines suppressed in %llu ms", lim->what,
                (unsigned long long)lim->_suppressed,
                (unsigned long long)(lim->interval_ns / 1000000u));
    lim->_start = now;
    lim->_lines = 0;
    lim->_suppressed = 0;
}

int log_limit_take(log_limit_t *lim, uint64_t now, enum log_level level)
{
    if (level > max_level)
        return 0;
    /* Unsigned: a now before _start wraps to a huge difference, and starts
     * a new window too. */
    if (now - lim->_start >= lim->interval_ns)
        limit_roll(lim, now);
    if (lim->_lines < lim->burst) {
        lim->_lines++;
        return 1;
    }
    lim->_suppressed++;
    lim->_level = level;
    return 0;
}

void log_limited(log_limit_t *lim, uint64_t now, enum log_level level, const char *fmt, ...)
{
    if (!log_limit_take(lim, now, level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

void log_limit_flush(log_limit_t *lim, uint64_t now)
{
    if (lim->_suppressed && now - lim->_start >= lim->interval_ns)
        limit_roll(lim, now);
}

void log_limits_flush(log_limits_t *l, uint64_t now)
{
    log_limit_flush(&l->refused, now);
    log_limit_flush(&l->tunnel, now);
    log_limit_flush(&l->conn, now);
}
