/* ts_scrape.c — see ts_scrape.h. */
#include "ts_scrape.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_MAX (16u << 20) /* a page larger than this is cut */

typedef struct page {
    char *p;
    size_t len, cap;
} page_t;

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    page_t *pg = ud;
    size_t k = size * n;
    if (pg->len + k + 1 > pg->cap) {
        size_t cap = pg->cap ? pg->cap : 65536;
        while (cap < pg->len + k + 1 && cap < PAGE_MAX)
            cap *= 2;
        if (cap < pg->len + k + 1)
            return 0; /* too large: curl stops with a write error */
        char *q = realloc(pg->p, cap);
        if (!q)
            return 0;
        pg->p = q;
        pg->cap = cap;
    }
    memcpy(pg->p + pg->len, data, k);
    pg->len += k;
    pg->p[pg->len] = '\0';
    return k;
}

/* The value of label in a sample line's {...}, copied into out. */
static int label_value(const char *line, const char *end, const char *label, char *out,
                       size_t cap)
{
    size_t ll = strlen(label);
    for (const char *q = line; q + ll + 2 < end; q++) {
        if ((q[-1] == '{' || q[-1] == ',') && !strncmp(q, label, ll) && q[ll] == '=' &&
            q[ll + 1] == '"') {
            const char *v = q + ll + 2, *e = memchr(v, '"', (size_t)(end - v));
            if (!e || (size_t)(e - v) >= cap)
                return -1;
            memcpy(out, v, (size_t)(e - v));
            out[e - v] = '\0';
            return 0;
        }
    }
    return -1;
}

int ts_scrape_sum_by(const char *url, const char *family, const char *label, ts_scrape_sum_t *out,
                     size_t max, long timeout_ms, char *why, size_t cap)
{
    page_t pg = {0};
    CURL *e = curl_easy_init();
    long status = 0;
    CURLcode rc = CURLE_FAILED_INIT;
    if (e) {
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &pg);
        rc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
    }
    if (rc != CURLE_OK || status != 200 || !pg.p) {
        snprintf(why, cap, "GET %s: %s (status %ld)", url, curl_easy_strerror(rc), status);
        free(pg.p);
        return -1;
    }
    size_t n = 0, fl = strlen(family);
    for (char *line = pg.p; line && *line;) {
        char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        if (!strncmp(line, family, fl) && line[fl] == '{') {
            char v[sizeof out->value];
            const char *sp = memchr(line, ' ', (size_t)(end - line));
            /* the sample's value follows the last space (no timestamps here) */
            const char *num = sp;
            for (const char *q = sp; q && q < end; q++)
                if (*q == ' ')
                    num = q;
            if (num && label_value(line + fl + 1, end, label, v, sizeof v) == 0) {
                size_t i = 0;
                while (i < n && strcmp(out[i].value, v))
                    i++;
                if (i == n && n < max) {
                    snprintf(out[n].value, sizeof out[n].value, "%s", v);
                    out[n++].sum = 0;
                }
                if (i < n)
                    out[i].sum += strtod(num + 1, NULL);
            }
        }
        line = *end ? end + 1 : NULL;
    }
    free(pg.p);
    return (int)n;
}

int ts_scrape_total(const char *url, const char *family, const char *label,
                    const char *const *values, double *total, long timeout_ms, char *why,
                    size_t cap)
{
    ts_scrape_sum_t sums[64];
    int n = ts_scrape_sum_by(url, family, label, sums, sizeof sums / sizeof sums[0], timeout_ms,
                             why, cap);
    if (n < 0)
        return -1;
    *total = 0;
    for (int i = 0; i < n; i++)
        for (const char *const *v = values; *v; v++)
            if (!strcmp(sums[i].value, *v))
                *total += sums[i].sum;
    return 0;
}
