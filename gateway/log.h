/*
 * log.h — one-line structured logs on stderr.
 *
 * Logs are for operators: one line per connection or tunnel event, never one
 * per packet. Counters (counters.h) carry the per-packet story.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,
};

/* Messages above this level are discarded (default LOG_INFO). */
void log_set_level(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
