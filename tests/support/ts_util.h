/*
 * ts_util.h — clocks, deadlines, the per-process scratch directory and small
 * file helpers for the sluice test-support library.
 *
 * Every wait in the tests is "until a condition or a deadline": deadlines are
 * absolute CLOCK_MONOTONIC milliseconds made with ts_deadline().
 */
#ifndef SLUICE_TS_UTIL_H
#define SLUICE_TS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Monotonic clock in milliseconds / nanoseconds. */
int64_t ts_now_ms(void);
int64_t ts_now_ns(void);

/* Absolute deadline ms_from_now milliseconds ahead. */
int64_t ts_deadline(int64_t ms_from_now);

/* Milliseconds left until deadline, clamped to [0, INT32_MAX] (a poll timeout). */
int ts_remaining_ms(int64_t deadline);

/* Scale factor for timeouts: env TS_TIMEOUT_SCALE (1..20, default 1; a slow
 * machine or valgrind may need more). ts_ms(x) = x * scale. */
int64_t ts_ms(int64_t ms);

/* A private directory for this process (mkdtemp under $TMPDIR or /tmp), made
 * on first use and removed with its contents at exit unless TS_KEEP=1. Returns
 * NULL when it cannot be made. */
const char *ts_tmpdir(void);

/* Writes "<tmpdir>/<name>" into out (names get a per-process counter prefix so
 * repeated names do not collide). Returns 0, or -1 when it does not fit. */
int ts_tmppath(const char *name, char *out, size_t cap);

/* The build directory from env SLUICE_BUILD, or NULL when unset. */
const char *ts_build_dir(void);

/* Writes "<build>/<rel>" into out, made absolute against the current directory
 * when build is relative. build may be NULL to use ts_build_dir(). Returns 0,
 * or -1 (no SLUICE_BUILD, too long). */
int ts_build_path(const char *build, const char *rel, char *out, size_t cap);

/* Creates/truncates path with data. Returns 0 or -1 (errno set). */
int ts_write_file(const char *path, const void *data, size_t len);

/* Reads at most max bytes of path into a malloc'd, NUL-terminated buffer the
 * caller frees; *len (may be NULL) gets its length. NULL on error. */
char *ts_read_file(const char *path, size_t max, size_t *len);

/* 1 if haystack[0..len) contains needle (bytes), else 0. */
int ts_memmem(const void *haystack, size_t len, const char *needle);

/* Appends s to out as a JSON string literal (quotes included), escaping as
 * RFC 8259 §7 requires. Returns 0, or -1 when it does not fit. */
int ts_json_str(char *out, size_t cap, size_t *pos, const char *s);

/* snprintf that appends at *pos; returns 0, or -1 when the output would not fit. */
int ts_appendf(char *out, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A whole decimal number from lo to hi (a command-line option). Returns 0
 * with *out set, or -1 (not a number, trailing text, out of range). */
int ts_parse_long(const char *s, long lo, long hi, long *out);

/* The CPU's "model name" from /proc/cpuinfo into out, or "unknown" (for
 * benchmark reports). Returns out. */
const char *ts_cpu_model(char *out, size_t cap);

#endif
