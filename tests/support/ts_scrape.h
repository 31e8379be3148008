/*
 * ts_scrape.h — read counters off a real sluiced's /metrics page (the
 * Prometheus text format the gateway writes, docs/metrics.md), for a
 * benchmark that reports what the gateway counted, e.g. drops by reason.
 */
#ifndef SLUICE_TS_SCRAPE_H
#define SLUICE_TS_SCRAPE_H

#include <stddef.h>

typedef struct ts_scrape_sum {
    char value[48];  /* the label's value */
    double sum;      /* every sample of the family with that value, summed */
} ts_scrape_sum_t;

/* GETs url (no proxy, within timeout_ms) and sums every sample of family
 * ("sluice_drops_total") by the value of label ("reason"): up to max
 * distinct values in out, in the order first seen. Returns how many, or -1
 * (no answer, not 200, out of memory) with a reason in why. */
int ts_scrape_sum_by(const char *url, const char *family, const char *label, ts_scrape_sum_t *out,
                     size_t max, long timeout_ms, char *why, size_t cap);

/* The sum of family's samples whose label is one of values (NULL-terminated),
 * in *total: ts_scrape_sum_by, then the values picked. Returns 0, or -1 with
 * why. */
int ts_scrape_total(const char *url, const char *family, const char *label,
                    const char *const *values, double *total, long timeout_ms, char *why,
                    size_t cap);

#endif
