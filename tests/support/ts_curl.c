/*
 * ts_curl.c — see ts_curl.h.
 */
#include "ts_curl.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    ts_curl_reply_t *r = arg;
    size_t len = size * n, room = sizeof r->body - 1 - r->len;
    size_t keep = len < room ? len : room;
    memcpy(r->body + r->len, p, keep);
    r->len += keep;
    r->body[r->len] = '\0';
    return len;
}

long ts_curl(const char *method, const char *url, const char *const *headers, const char *body,
             long timeout_ms, ts_curl_reply_t *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(r->err, sizeof r->err, "curl_easy_init failed");
        return -1;
    }
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else
        snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r->status;
}
