/*
 * log.h — one-line structured logs on stderr (logfmt), and a rate limiter for
 * events a peer can repeat at will.
 *
 * Logs are for operators: one line per connection or tunnel event, never one
 * per packet. Counters (counters.h, /metrics) carry the per-packet story.
 *
 * Every line is logfmt: space-separated key=value pairs, a value in double
 * quotes when it is empty or holds a space, '=', '"' or a byte outside
 * printable ASCII, with '\\', '"' and control bytes escaped (\n, \t, \xHH)
 * inside the quotes. Every line starts
 *
 *     ts=2026-12-02T04:10:00.123Z level=info
 *
 * then either `event=<name>` and the event's fields (log_begin ... log_end),
 * or `msg="<text>"` (log_msg). docs/operations.md ("Logs") lists every event
 * and field. Values are escaped here, so peer text cannot split a line or
 * forge a field; still pass it through text_escape() (proto/text.h) when it
 * is formatted into a log_msg text, which then stays readable.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,
};

/* Messages above this level are discarded (default LOG_INFO). Set once at
 * start-up, before the loop runs. */
void log_set_level(enum log_level level);

/* "error", "warn", "info", "debug" -> level; -1 for anything else. */
int log_level_parse(const char *name);

/* 1 when a line at level would be written. */
int log_enabled(enum log_level level);

/* Writes "ts=... level=... msg=<the formatted text>" and a newline to stderr
 * in one write. Lines longer than LOG_LINE_MAX are cut (still one line). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define LOG_LINE_MAX 1024u

/*
 * Structured events:
 *
 *     log_line_t l;
 *     if (log_begin(&l, LOG_INFO, "conn.close")) {
 *         log_str(&l, "peer", c->peer);
 *         log_str(&l, "reason", conn_end_name(c->end));
 *         log_u64(&l, "duration_ms", ms);
 *         log_end(&l);
 *     }
 *
 * log_begin returns 0 (and the line is not built) when the level is off.
 * Keys are constants of the code: [a-z0-9_.]. A line that would pass
 * LOG_LINE_MAX drops the fields that do not fit and ends with truncated=1.
 */
typedef struct log_line {
    char buf[LOG_LINE_MAX];
    size_t len;
    int full; /* a field did not fit */
} log_line_t;

int log_begin(log_line_t *l, enum log_level level, const char *event);
void log_str(log_line_t *l, const char *key, const char *value);
void log_strn(log_line_t *l, const char *key, const char *value, size_t len);
void log_u64(log_line_t *l, const char *key, uint64_t value);
void log_i64(log_line_t *l, const char *key, int64_t value);
/* Writes the line (one write) and a newline. */
void log_end(log_line_t *l);

/*
 * Rate limiting repeated events.
 *
 * A client can make the gateway log at will (a bad credential, a malformed
 * request, a protocol error): one line each would let it flood the log and
 * the disk. A log_limit_t, one per kind of event, lets at most `burst` lines
 * through per `interval`; the rest are only counted. The first time the kind
 * is logged after its interval has ended, one summary line goes first:
 *
 *   ... sluiced info: auth failure: 1234 similar lines suppressed in 10000 ms
 *
 * or, for a limiter with `who` set (one connection's events):
 *
 *   ... tunnel open/close of 192.0.2.7:40312: 880 similar lines suppressed in 10000 ms
 *
 * Windows are fixed: a window starts with the first event after the previous
 * one ended, and allows `burst` lines.
 *
 * Embed the struct where the events are counted (the server, for events of
 * all connections; a connection, for per-connection events) and initialise it
 * with LOG_LIMIT_INIT:
 *
 *     s->auth_log = (log_limit_t)LOG_LIMIT_INIT("auth failure", 10, 10000);
 *     ...
 *     log_limited(&s->auth_log, compat_mono_ns(), LOG_INFO, "conn %s: %d %s", ...);
 *
 * or, when making the arguments costs something (escaping peer text), ask
 * first and format only what will be written:
 *
 *     if (log_limit_take(&s->close_log, compat_mono_ns(), LOG_INFO)) {
 *         char reason[TEXT_ESCAPE_CAP(64)];
 *         text_escape(reason, sizeof reason, p, n);
 *         log_msg(LOG_INFO, "tunnel %s: client CLOSE: %s", id, reason);
 *     }
 *
 * Time: `now` is CLOCK_MONOTONIC in nanoseconds, compat_mono_ns()
 * (common/compat.h). Not ev_now(): libev's loop time follows the wall clock,
 * which can jump. A `now` earlier than the window's start (it cannot happen
 * with a monotonic clock) starts a new window rather than muting the kind.
 *
 * Cost: an event that is suppressed costs a level compare, a subtraction and
 * compare, and an increment; nothing is formatted. No allocation ever.
 *
 * A burst followed by silence is reported only when the kind is next logged.
 * Call log_limit_flush() from a periodic timer to report it as soon as the
 * window ends, and with now = UINT64_MAX at shutdown to report what is left.
 *
 * Not thread-safe: one log_limit_t belongs to one event loop.
 */
typedef struct log_limit {
    const char *what;     /* the kind of event, named in the summary line (static) */
    const char *who;      /* NULL, or whose events (a peer), named in the summary line too;
                           * must outlive the limiter's last flush */
    uint32_t burst;       /* lines allowed per window (0 mutes the kind, still counting) */
    uint64_t interval_ns; /* window length */
    uint64_t _start;      /* start of the current window */
    uint32_t _lines;      /* lines let through in the current window */
    uint64_t _suppressed; /* events counted but not logged in the current window */
    enum log_level _level; /* level of the events counted (for the summary line) */
} log_limit_t;

#define LOG_LIMIT_INIT(what_, burst_, interval_ms_)                                            \
    {                                                                                          \
        .what = (what_), .burst = (burst_), .interval_ns = (uint64_t)(interval_ms_)*1000000u  \
    }

/* Decides one event of this kind at time now. Returns 1 when its line should
 * be written (the caller then writes it with log_msg), after first writing
 * the summary of the previous window if lines were suppressed there. Returns
 * 0 when the line is to be dropped: counted when the level is enabled, not
 * even counted when it is above the log level. */
int log_limit_take(log_limit_t *lim, uint64_t now, enum log_level level);

/* log_limit_take, then log_msg when it allows. */
void log_limited(log_limit_t *lim, uint64_t now, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the summary of a window that has ended with lines suppressed, and
 * starts a fresh window. now = UINT64_MAX ends any window (shutdown). */
void log_limit_flush(log_limit_t *lim, uint64_t now);

/* The gateway's limiters for events a peer causes at will, one set per loop:
 * 10 lines per 10 s of each kind, then a summary. */
typedef struct log_limits {
    log_limit_t refused; /* requests answered 4xx/503 */
    log_limit_t tunnel;  /* protocol errors, client CLOSEs, linger resets */
    log_limit_t conn;    /* TLS failures, cleartext, deadlines, GOAWAYs, resets */
} log_limits_t;

#define LOG_LIMITS_WINDOW_S 10 /* the server also flushes summaries twice a window */
#define LOG_LIMITS_INIT                                                                        \
    {                                                                                          \
        .refused = LOG_LIMIT_INIT("refused request", 10, LOG_LIMITS_WINDOW_S * 1000),          \
        .tunnel = LOG_LIMIT_INIT("tunnel event", 10, LOG_LIMITS_WINDOW_S * 1000),              \
        .conn = LOG_LIMIT_INIT("connection event", 10, LOG_LIMITS_WINDOW_S * 1000),            \
    }

void log_limits_flush(log_limits_t *l, uint64_t now);

#endif
