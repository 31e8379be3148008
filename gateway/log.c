/* log.c — see log.h. The level is the one piece of process-wide state: it is
 * set once at start-up from the command line, before the loop runs. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level max_level = LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    max_level = level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i <= LOG_DEBUG; i++)
        if (!strcmp(name, level_names[i]))
            return i;
    return -1;
}

int log_enabled(enum log_level level)
{
    return level <= max_level;
}

/* Room for a value's worst case (every byte \xHH) is not kept: a value that
 * does not fit is dropped whole, and the line says truncated=1. */
static int put(log_line_t *l, const char *p, size_t n)
{
    if (l->full || l->len + n > sizeof l->buf - 16) { /* keep room for " truncated=1" */
        l->full = 1;
        return -1;
    }
    memcpy(l->buf + l->len, p, n);
    l->len += n;
    return 0;
}

static int needs_quotes(const char *v, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= ' ' || c >= 0x7f || c == '=' || c == '"' || c == '\\')
            return 1;
    }
    return 0;
}

/* key=value, quoted and escaped as logfmt wants (log.h). */
static void field(log_line_t *l, const char *key, const char *v, size_t n)
{
    size_t mark = l->len;
    char tmp[LOG_LINE_MAX];
    size_t k = 0;
    int q = needs_quotes(v, n);
    if (q)
        tmp[k++] = '"';
    size_t i = 0;
    for (; i < n && k + 6 < sizeof tmp; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!q || (c >= ' ' && c < 0x7f && c != '"' && c != '\\')) {
            tmp[k++] = (char)c;
        } else if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            tmp[k++] = '\\';
            tmp[k++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        } else if (c >= 0x80) {
            tmp[k++] = (char)c; /* UTF-8 passes; logfmt readers take bytes */
        } else {
            k += (size_t)snprintf(tmp + k, sizeof tmp - k, "\\x%02x", c);
        }
    }
    if (i < n) { /* longer than a line once escaped */
        l->full = 1;
        return;
    }
    if (q)
        tmp[k++] = '"';
    if (put(l, " ", 1) < 0 || put(l, key, strlen(key)) < 0 || put(l, "=", 1) < 0 ||
        put(l, tmp, k) < 0) {
        l->len = mark; /* the field goes whole or not at all */
        l->full = 1;
    }
}

static void begin(log_line_t *l, enum log_level level)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(l->buf, sizeof l->buf, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    l->len = n > 0 ? (size_t)n : 0;
    l->full = 0;
}

int log_begin(log_line_t *l, enum log_level level, const char *event)
{
    if (level > max_level)
        return 0;
    begin(l, level);
    field(l, "event", event, strlen(event));
    return 1;
}

void log_str(log_line_t *l, const char *key, const char *value)
{
    log_strn(l, key, value ? value : "", value ? strlen(value) : 0);
}

void log_strn(log_line_t *l, const char *key, const char *value, size_t len)
{
    field(l, key, value, len);
}

void log_u64(log_line_t *l, const char *key, uint64_t value)
{
    char v[24];
    int n = snprintf(v, sizeof v, "%llu", (unsigned long long)value);
    field(l, key, v, (size_t)n);
}

void log_i64(log_line_t *l, const char *key, int64_t value)
{
    char v[24];
    int n = snprintf(v, sizeof v, "%lld", (long long)value);
    field(l, key, v, (size_t)n);
}

void log_end(log_line_t *l)
{
    if (l->full) {
        memcpy(l->buf + l->len, " truncated=1", 12);
        l->len += 12;
    }
    l->buf[l->len++] = '\n';
    /* One write per line, so that lines from several loops interleave whole. */
    ssize_t ignored = write(2, l->buf, l->len);
    (void)ignored;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    if (level > max_level)
        return;
    char text[LOG_LINE_MAX];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof text)
        n = (int)sizeof text - 1;
    log_line_t l;
    begin(&l, level);
    /* A long text is cut to what fits rather than dropped. */
    size_t room = sizeof l.buf - l.len - 32;
    size_t len = (size_t)n;
    while (len > 0) {
        size_t mark = l.len;
        field(&l, "msg", text, len);
        if (!l.full)
            break;
        l.len = mark;
        l.full = 0;
        len = len > room ? room : len * 7 / 8; /* escaping may grow a byte fourfold */
    }
    if (len < (size_t)n)
        l.full = 1;
    log_end(&l);
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
        log_msg(lim->_level, "%s%s%s: %llu similar lines suppressed in %llu ms", lim->what,
                lim->who ? " of " : "", lim->who ? lim->who : "",
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
