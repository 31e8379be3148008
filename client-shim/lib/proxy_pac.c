/*
 * proxy_pac.c — PAC files: loading (a file, or a URL fetched with libcurl)
 * and evaluation with libpacparser (see proxy.h).
 */
#include <curl/curl.h>
#include <errno.h>
#include <pacparser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "shim_addr.h"

/* ---------------------------------------------------------------- loading */

typedef struct pac_buf {
    char *data;
    size_t len;
    int too_big;
} pac_buf_t;

static size_t pac_on_data(char *p, size_t size, size_t n, void *ud)
{
    pac_buf_t *b = ud;
    size_t len = size * n;

    if (b->len + len > PROXY_PAC_MAX_BYTES) {
        b->too_big = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    char *grown = realloc(b->data, b->len + len + 1);
    if (!grown)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

static char *pac_fetch(const char *url, uint32_t timeout_ms, char *err, size_t errlen)
{
    pac_buf_t b = {0};
    char ebuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURL *h;
    CURLcode rc;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(h = curl_easy_init())) {
        shim__errf(err, errlen, "PAC '%s': libcurl cannot be initialised", url);
        return NULL;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* The PAC decides the proxy: fetching it through one would be circular
     * (and WPAD servers sit on the inside network). */
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)PROXY_PAC_MAX_BYTES);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, pac_on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (b.too_big || rc == CURLE_FILESIZE_EXCEEDED)
        shim__errf(err, errlen, "PAC '%s': larger than %u bytes", url, PROXY_PAC_MAX_BYTES);
    else if (rc != CURLE_OK)
        shim__errf(err, errlen, "PAC '%s': %s", url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
    else if (status < 200 || status > 299)
        shim__errf(err, errlen, "PAC '%s': HTTP status %ld", url, status);
    else if (!b.data)
        shim__errf(err, errlen, "PAC '%s': empty", url);
    else
        return b.data;
    free(b.data);
    return NULL;
}

static char *pac_read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    pac_buf_t b = {0};
    char chunk[4096];
    size_t n;

    if (!f) {
        shim__errf(err, errlen, "PAC file '%s': %s", path, strerror(errno));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (pac_on_data(chunk, 1, n, &b) != n)
            break;
    int bad = ferror(f) || b.too_big || !b.data;
    fclose(f);
    if (bad) {
        shim__errf(err, errlen, "PAC file '%s': %s", path,
                   b.too_big ? "too large" : !b.data ? "empty" : "read error");
        free(b.data);
        return NULL;
    }
    return b.data;
}

char *proxy_pac_load(const char *src, uint32_t timeout_ms, char *err, size_t errlen)
{
    if (!src || !*src) {
        shim__errf(err, errlen, "empty PAC location");
        return NULL;
    }
    if (strncasecmp(src, "http://", 7) == 0 || strncasecmp(src, "https://", 8) == 0)
        return pac_fetch(src, timeout_ms, err, errlen);
    return pac_read_file(src, err, errlen);
}

/* ---------------------------------------------------------------- evaluation */

/* libpacparser reports script errors through one global printer; the first
 * line of the last evaluation's report is kept here for its message. */
static char pac_last_error[256];

static int pac_on_error(const char *fmt, va_list ap)
{
    if (!pac_last_error[0]) {
        vsnprintf(pac_last_error, sizeof(pac_last_error), fmt, ap);
        pac_last_error[strcspn(pac_last_error, "\r\n")] = '\0';
    }
    return 0;
}

int proxy_pac_eval(const char *script, const char *url, const char *host, char *out,
                   size_t cap, char *err, size_t errlen)
{
    const char *answer;
    int rc = -1;

    pac_last_error[0] = '\0';
    pacparser_set_error_printer(pac_on_error);
    if (!pacparser_init()) {
        shim__errf(err, errlen, "PAC: cannot start the JavaScript engine%s%s",
                   pac_last_error[0] ? ": " : "", pac_last_error);
        return -1;
    }
    if (!pacparser_parse_pac_string(script)) {
        shim__errf(err, errlen, "PAC script error%s%s", pac_last_error[0] ? ": " : "",
                   pac_last_error);
        goto out;
    }
    answer = pacparser_find_proxy(url, host);
    if (!answer) {
        shim__errf(err, errlen, "PAC: FindProxyForURL failed%s%s",
                   pac_last_error[0] ? ": " : "", pac_last_error);
        goto out;
    }
    if (strlen(answer) >= cap) {
        shim__errf(err, errlen, "PAC answer longer than %zu bytes", cap - 1);
        goto out;
    }
    /* The answer belongs to the engine: copy it before the clean-up. */
    snprintf(out, cap, "%s", answer);
    rc = 0;
out:
    pacparser_cleanup();
    return rc;
}
