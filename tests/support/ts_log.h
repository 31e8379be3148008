/*
 * ts_log.h — waiting for text in a child's log file (its stderr, which
 * ts_proc keeps in a file): a condition with a deadline, for events a process
 * reports only on stderr.
 */
#ifndef SLUICE_TS_LOG_H
#define SLUICE_TS_LOG_H

#include <stddef.h>
#include <stdint.h>

#define TS_LOG_MAX (1u << 20) /* bytes of a log read; more is not looked at */

/* Occurrences of needle in the file at path (its first TS_LOG_MAX bytes);
 * 0 when the file cannot be read. */
size_t ts_log_count(const char *path, const char *needle);

/* Waits until path holds at least n occurrences of needle, re-reading it
 * every 10 ms, or the deadline passes. Returns 0, or -1 at the deadline. */
int ts_log_wait(const char *path, const char *needle, size_t n, int64_t deadline);

/* The line holding the n-th (1-based) occurrence of needle, without its line
 * break, into out. Returns 0, or -1 when there is no such occurrence. */
int ts_log_line(const char *path, const char *needle, size_t n, char *out, size_t cap);

#endif
