/*
 * etcd_client.c — etcd v3 JSON gateway calls on libcurl's multi interface,
 * driven by libev (see etcd_client.h).
 *
 * libcurl forbids multi calls from inside its own callbacks
 * (CURLM_RECURSIVE_API_CALL), and a line callback may well start or cancel a
 * call. So while curl is running (c->in_curl) new calls wait on a pending
 * list and cancelled ones are only marked; drive() settles both once
 * curl_multi_socket_action has returned.
 */
#include "etcd_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ETCD_CONNECT_MS 2000L
#define ETCD_URL_MAX 1024u

struct etcd_call {
    etcd_client_t *c;
    CURL *easy;
    etcd_line_fn line; /* NULL: not a stream */
    etcd_done_fn done;
    void *ud;
    char *buf;         /* response bytes not yet handed out */
    size_t blen, bcap;
    int added;         /* in the multi handle */
    int dead;          /* cancelled or finished: freed by drive() */
    int stopped;       /* the line callback asked to end */
    int refused;       /* curl_multi_add_handle failed */
    char errbuf[CURL_ERROR_SIZE];
    etcd_call_t *next;
};

typedef struct etcd_sock {
    ev_io io;
    etcd_client_t *c;
} etcd_sock_t;

struct etcd_client {
    char **endpoints;
    size_t nendpoints, ep;
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    etcd_call_t *calls; /* every live call */
    int in_curl;        /* inside curl_multi_socket_action */
};

/* ------------------------------------------------------------------------ */
/* Encoding helpers                                                          */

char *etcd_b64_encode(const void *p, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, p, (int)len);
    return out;
}

char *etcd_b64_decode(const char *s, size_t len, size_t *outlen)
{
    if (len % 4 || len > ETCD_BODY_MAX)
        return NULL;
    char *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return NULL;
    int n = len ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len) : 0;
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts padding as zero bytes. */
    size_t pad = (len && s[len - 1] == '=') + (len > 1 && s[len - 2] == '=');
    *outlen = (size_t)n - pad;
    out[*outlen] = '\0';
    return out;
}

int64_t etcd_json_int(const json_t *v)
{
    if (!v || (v->type != JSON_STRING && v->type != JSON_NUMBER))
        return 0;
    return strtoll(v->str, NULL, 10);
}

char *etcd_prefix_end_b64(const char *prefix)
{
    size_t len = strlen(prefix);
    char *end = json_strdup(prefix, len);
    if (!end)
        return NULL;
    while (len > 0 && (unsigned char)end[len - 1] == 0xff)
        len--;
    if (len > 0)
        end[len - 1]++;
    char *out = len ? etcd_b64_encode(end, len) : etcd_b64_encode("", 1);
    free(end);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

/* Appends to the call's buffer; 0 or -1 (over ETCD_BODY_MAX, out of memory). */
static int buf_append(etcd_call_t *k, const char *p, size_t len)
{
    if (k->blen + len > ETCD_BODY_MAX)
        return -1;
    if (k->blen + len + 1 > k->bcap) {
        size_t cap = k->bcap ? k->bcap : 4096;
        while (cap < k->blen + len + 1)
            cap *= 2;
        char *grown = realloc(k->buf, cap);
        if (!grown)
            return -1;
        k->buf = grown;
        k->bcap = cap;
    }
    memcpy(k->buf + k->blen, p, len);
    k->blen += len;
    k->buf[k->blen] = '\0';
    return 0;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    etcd_call_t *k = ud;
    size_t len = size * n;
    if (k->dead || buf_append(k, p, len) < 0)
        return 0; /* CURLE_WRITE_ERROR ends the call */
    if (!k->line)
        return len;
    /* One JSON object per line: the JSON gateway's stream delimiter. */
    char *nl;
    while (!k->dead && (nl = memchr(k->buf, '\n', k->blen)) != NULL) {
        size_t line = (size_t)(nl - k->buf);
        int rc = k->line(k->ud, k->buf, line);
        memmove(k->buf, nl + 1, k->blen - line - 1);
        k->blen -= line + 1;
        k->buf[k->blen] = '\0';
        if (rc < 0) {
            k->stopped = 1;
            return 0;
        }
    }
    return k->dead ? 0 : len;
}

static CURL *easy_new(etcd_client_t *c, etcd_call_t *k, const char *path, const char *body,
                      long timeout_ms, char *errbuf)
{
    char url[ETCD_URL_MAX];
    snprintf(url, sizeof url, "%s%s", c->endpoints[c->ep], path);
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    errbuf[0] = '\0';
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK; /* etcd is local to the fleet */
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_MS) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK;
    /* A stream is silent while nothing changes: TCP keep-alive notices a
     * vanished etcd host. */
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 5L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 2L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK;
    if (k) {
        bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, k) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, k) != CURLE_OK;
    }
    if (bad) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

static void call_free(etcd_call_t *k)
{
    etcd_client_t *c = k->c;
    for (etcd_call_t **pp = &c->calls; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    if (k->added)
        curl_multi_remove_handle(c->multi, k->easy); /* closes its sockets: on_socket */
    curl_easy_cleanup(k->easy);
    free(k->buf);
    free(k);
}

/* Adds the calls made while curl was running and frees the dead ones. A
 * done callback may cancel or start other calls, so after each one the walk
 * starts again. */
static void settle(etcd_client_t *c)
{
    for (etcd_call_t *k = c->calls; k; k = k->next)
        if (!k->dead && !k->added) {
            if (curl_multi_add_handle(c->multi, k->easy) == CURLM_OK)
                k->added = 1;
            else
                k->refused = 1;
        }
    for (int again = 1; again;) {
        again = 0;
        for (etcd_call_t *k = c->calls; k; k = k->next)
            if (k->refused && !k->dead) {
                k->dead = 1;
                if (k->done)
                    k->done(k->ud, -1, NULL, 0, "libcurl refused the request");
                again = 1;
                break;
            }
    }
    for (etcd_call_t **pp = &c->calls; *pp;) {
        etcd_call_t *k = *pp;
        if (k->dead) {
            *pp = k->next;
            k->next = NULL;
            call_free(k);
        } else {
            pp = &k->next;
        }
    }
}

static void finish(etcd_call_t *k, CURLcode rc)
{
    char err[CURL_ERROR_SIZE + 32];
    int status = 0;
    if (k->stopped) {
        status = -1;
        snprintf(err, sizeof err, "ended by the reader");
    } else if (rc != CURLE_OK) {
        status = -1;
        snprintf(err, sizeof err, "%s", k->errbuf[0] ? k->errbuf : curl_easy_strerror(rc));
    }
    k->dead = 1; /* a cancel from inside done is a no-op */
    if (k->done)
        k->done(k->ud, status, status ? NULL : k->buf ? k->buf : "", status ? 0 : k->blen,
                status ? err : NULL);
}

static void drive(etcd_client_t *c, curl_socket_t fd, int mask)
{
    int running = 0;
    c->in_curl = 1;
    curl_multi_socket_action(c->multi, fd, mask, &running);
    c->in_curl = 0;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        etcd_call_t *k = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&k);
        if (k && !k->dead)
            finish(k, m->data.result);
        else if (k)
            k->dead = 1;
    }
    settle(c);
}

static void on_sock_io(struct ev_loop *loop, ev_io *w, int revents)
{
    etcd_sock_t *s = w->data;
    drive(s->c, w->fd,
          ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0));
}

static void on_curl_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    drive(w->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION: one ev_io per socket curl uses. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    etcd_client_t *c = userp;
    etcd_sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(c->loop, &s->io);
            free(s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->c = c;
        ev_init(&s->io, on_sock_io);
        s->io.data = s;
        curl_multi_assign(c->multi, fd, s);
    }
    ev_io_stop(c->loop, &s->io);
    ev_io_set(&s->io, fd, ((what & CURL_POLL_IN) ? EV_READ : 0) |
                              ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    ev_io_start(c->loop, &s->io);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer. */
static int on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    etcd_client_t *c = userp;
    ev_timer_stop(c->loop, &c->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&c->timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(c->loop, &c->timer);
    }
    return 0;
}

static etcd_call_t *call_new(etcd_client_t *c, const char *path, const char *body,
                             long timeout_ms, etcd_line_fn line, etcd_done_fn done, void *ud)
{
    if (!c->multi)
        return NULL;
    etcd_call_t *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->c = c;
    k->line = line;
    k->done = done;
    k->ud = ud;
    k->easy = easy_new(c, k, path, body, timeout_ms, k->errbuf);
    if (!k->easy) {
        free(k);
        return NULL;
    }
    k->next = c->calls;
    c->calls = k;
    if (!c->in_curl) {
        if (curl_multi_add_handle(c->multi, k->easy) != CURLM_OK) {
            call_free(k);
            return NULL;
        }
        k->added = 1;
    }
    return k;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

etcd_client_t *etcd_client_new(const char *const *endpoints, size_t n)
{
    static int curl_ready;
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    curl_ready = 1;
    etcd_client_t *c = calloc(1, sizeof *c);
    if (!c || n == 0)
        goto fail;
    c->endpoints = calloc(n, sizeof *c->endpoints);
    if (!c->endpoints)
        goto fail;
    c->nendpoints = n;
    for (size_t i = 0; i < n; i++)
        if (!(c->endpoints[i] = json_strdup(endpoints[i], strlen(endpoints[i]))))
            goto fail;
    return c;
fail:
    etcd_client_free(c);
    return NULL;
}

int etcd_client_attach(etcd_client_t *c, struct ev_loop *loop)
{
    if (c->multi)
        return 0;
    c->multi = curl_multi_init();
    if (!c->multi)
        return -1;
    c->loop = loop;
    ev_init(&c->timer, on_curl_timer);
    c->timer.data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return 0;
}

const char *etcd_client_endpoint(const etcd_client_t *c)
{
    return c->endpoints[c->ep];
}

void etcd_client_failover(etcd_client_t *c)
{
    c->ep = (c->ep + 1) % c->nendpoints;
}

int etcd_client_perform(etcd_client_t *c, const char *path, const char *body,
                        long timeout_ms, char **out, size_t *outlen, char *err, size_t errlen)
{
    etcd_call_t k = {.c = c};
    *out = NULL;
    *outlen = 0;
    CURL *e = easy_new(c, NULL, path, body, timeout_ms, k.errbuf);
    if (!e) {
        snprintf(err, errlen, "cannot set up a request (out of memory?)");
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &k);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", k.errbuf[0] ? k.errbuf : curl_easy_strerror(rc));
        free(k.buf);
        return -1;
    }
    if (!k.buf && !(k.buf = calloc(1, 1))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *out = k.buf;
    *outlen = k.blen;
    return 0;
}

etcd_call_t *etcd_call(etcd_client_t *c, const char *path, const char *body, long timeout_ms,
                       etcd_done_fn done, void *ud)
{
    return call_new(c, path, body, timeout_ms, NULL, done, ud);
}

etcd_call_t *etcd_stream(etcd_client_t *c, const char *path, const char *body,
                         etcd_line_fn line, etcd_done_fn done, void *ud)
{
    return call_new(c, path, body, 0L, line, done, ud);
}

void etcd_call_cancel(etcd_call_t *k)
{
    if (!k || k->dead)
        return;
    k->dead = 1;
    if (!k->c->in_curl)
        call_free(k);
}

void etcd_client_free(etcd_client_t *c)
{
    if (!c)
        return;
    while (c->calls)
        call_free(c->calls);
    if (c->multi) {
        curl_multi_cleanup(c->multi);
        ev_timer_stop(c->loop, &c->timer);
    }
    for (size_t i = 0; c->endpoints && i < c->nendpoints; i++)
        free(c->endpoints[i]);
    free(c->endpoints);
    free(c);
}
