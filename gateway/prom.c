/*
 * prom.c — Prometheus text exposition 0.0.4 writer and fixed-bucket
 * histograms (see prom.h).
 */
#include "prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROM_LABELS_MAX 8u /* per sample, le included */

static int reserve(prom_buf_t *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->max && b->len + more + 1 > b->max) {
        b->oom = 1;
        return -1;
    }
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put(prom_buf_t *b, const char *s, size_t len)
{
    if (reserve(b, len) < 0)
        return;
    memcpy(b->p + b->len, s, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static void puts_(prom_buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(prom_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(prom_buf_t *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Escapes backslash and newline (HELP), and double quote too (label values). */
static void put_escaped(prom_buf_t *b, const char *s, int quote)
{
    for (const char *run = s;; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n"
                        : (*s == '"' && quote) ? "\\\""
                                               : NULL;
        if (!esc && *s)
            continue;
        put(b, run, (size_t)(s - run));
        if (!*s)
            return;
        puts_(b, esc);
        run = s + 1;
    }
}

static void put_labels(prom_buf_t *b, const prom_label_t *labels, size_t n)
{
    if (n == 0)
        return;
    put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(b, ",", 1);
        puts_(b, labels[i].name);
        put(b, "=\"", 2);
        put_escaped(b, labels[i].value, 1);
        put(b, "\"", 1);
    }
    put(b, "}", 1);
}

void prom_family(prom_buf_t *b, const char *name, enum prom_type type, const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    puts_(b, "# HELP ");
    puts_(b, name);
    put(b, " ", 1);
    put_escaped(b, help, 0);
    puts_(b, "\n# TYPE ");
    puts_(b, name);
    put(b, " ", 1);
    puts_(b, types[type]);
    put(b, "\n", 1);
}

void prom_u64(prom_buf_t *b, const char *name, const prom_label_t *labels, size_t n,
              uint64_t value)
{
    puts_(b, name);
    put_labels(b, labels, n);
    putf(b, " %llu\n", (unsigned long long)value);
}

void prom_double(prom_buf_t *b, const char *name, const prom_label_t *labels, size_t n,
                 double value)
{
    puts_(b, name);
    put_labels(b, labels, n);
    if (isnan(value))
        puts_(b, " NaN\n");
    else if (isinf(value))
        puts_(b, value > 0 ? " +Inf\n" : " -Inf\n");
    else
        putf(b, " %.17g\n", value);
}

void prom_hist_observe(prom_hist_t *h, const prom_bounds_t *bounds, uint64_t v_ns)
{
    size_t i = 0;
    while (i < bounds->n && v_ns > bounds->le_ns[i])
        i++;
    h->count[i]++;
    h->sum_ns += v_ns;
}

void prom_hist_add(prom_hist_t *dst, const prom_hist_t *src)
{
    for (size_t i = 0; i <= PROM_BUCKETS_MAX; i++)
        dst->count[i] += src->count[i];
    dst->sum_ns += src->sum_ns;
}

void prom_hist_write(prom_buf_t *b, const char *name, const prom_label_t *labels, size_t n,
                     const prom_hist_t *h, const prom_bounds_t *bounds)
{
    prom_label_t with_le[PROM_LABELS_MAX];
    if (n + 1 > PROM_LABELS_MAX || bounds->n > PROM_BUCKETS_MAX) {
        b->oom = 1; /* a programming error: refuse to write a wrong page */
        return;
    }
    if (n > 0) /* labels may be NULL with n 0; memcpy's pointers may not (C11 7.24.1) */
        memcpy(with_le, labels, n * sizeof *labels);
    char metric[128], le[32];
    snprintf(metric, sizeof metric, "%s_bucket", name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= bounds->n; i++) {
        cum += h->count[i];
        if (i < bounds->n)
            snprintf(le, sizeof le, "%g", (double)bounds->le_ns[i] / 1e9);
        else
            snprintf(le, sizeof le, "+Inf");
        with_le[n] = (prom_label_t){"le", le};
        prom_u64(b, metric, with_le, n + 1, cum);
    }
    snprintf(metric, sizeof metric, "%s_sum", name);
    prom_double(b, metric, labels, n, (double)h->sum_ns / 1e9);
    snprintf(metric, sizeof metric, "%s_count", name);
    prom_u64(b, metric, labels, n, cum);
}

void prom_buf_free(prom_buf_t *b)
{
    free(b->p);
    *b = (prom_buf_t){.max = b->max};
}
