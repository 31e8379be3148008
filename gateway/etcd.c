/*
 * etcd.c — the tenant table read and watched from etcd v3 (see etcd.h).
 *
 * HTTP is libcurl's (the easy interface for the blocking read at start, the
 * multi interface on the libev loop afterwards: CURLMOPT_SOCKETFUNCTION and
 * CURLMOPT_TIMERFUNCTION, as curl's docs/examples/evhiperfifo.c does), JSON
 * is gateway/json.c's yajl-built tree. etcd's JSON gateway encodes keys and
 * values in base64 and 64-bit integers as strings.
 */
#include "etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"

#define ETCD_FILE_MAX (1024u * 1024u)   /* the config file, as config.c */
#define ETCD_KEYS_MAX 10000u            /* tenants under the prefix */
#define ETCD_BODY_MAX (64u * 1024u * 1024u) /* one range response or one watch line */
#define ETCD_CONNECT_MS 2000L
#define ETCD_RANGE_MS 5000L
#define ETCD_BACKOFF_MIN_MS 100u
#define ETCD_BACKOFF_MAX_MS 5000u
#define ETCD_LABEL_MAX 300u

typedef struct etcd_kv {
    char *key;   /* NUL-terminated */
    char *val;
    size_t vlen;
} etcd_kv_t;

enum etcd_req { REQ_NONE, REQ_RANGE, REQ_WATCH };

typedef struct etcd_sock {
    ev_io io;
    etcd_store_t *owner;
} etcd_sock_t;

struct etcd_store {
    char *base;          /* the config file's text */
    size_t base_len;
    char *base_dir;
    config_t *cfg;       /* the last snapshot built (for its tenant_store) */
    char *range_body;    /* {"key":..,"range_end":..} */
    char *key_b64, *end_b64;
    etcd_kv_t *kvs;      /* sorted by key */
    size_t nkv;
    int64_t revision;
    size_t ep;           /* endpoint in use */

    struct ev_loop *loop;
    etcd_apply_fn apply;
    void *ud;
    CURLM *multi;
    CURL *easy;
    enum etcd_req req;
    char *buf;           /* response bytes not yet used */
    size_t blen, bcap;
    int abort_watch;     /* a watch message asked for a re-read */
    char errbuf[CURL_ERROR_SIZE];
    ev_timer curl_timer;
    ev_timer retry;
    uint32_t backoff_ms;
    int unreachable;     /* the last attempt failed (logged once per change) */
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static char *b64_encode(const void *p, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, p, (int)len);
    return out;
}

/* Decodes standard base64 into a NUL-terminated buffer; NULL when invalid. */
static char *b64_decode(const char *s, size_t len, size_t *outlen)
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
    size_t pad = (len && s[len - 1] == '=') + (len > 1 && s[len - 2] == '=');
    *outlen = (size_t)n - pad;
    out[*outlen] = '\0';
    return out;
}

static const json_t *jget(const json_t *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->members[i].klen == klen && !memcmp(obj->members[i].key, key, klen))
            return obj->members[i].val;
    return NULL;
}

/* etcd's int64 fields are JSON strings ("revision":"12"); absent is 0. */
static int64_t jint(const json_t *v)
{
    if (!v || (v->type != JSON_STRING && v->type != JSON_NUMBER))
        return 0;
    return strtoll(v->str, NULL, 10);
}

static void kvs_clear(etcd_kv_t *kvs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].val);
    }
    free(kvs);
}

/* Finds key: returns its index, or -(insertion point) - 1. */
static long kv_find(const etcd_store_t *s, const char *key)
{
    size_t lo = 0, hi = s->nkv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(s->kvs[mid].key, key);
        if (r == 0)
            return (long)mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

/* One kv of a range or watch response: key and value decoded. PUT (value
 * present, possibly empty) inserts or replaces; del removes. Returns 0 or -1
 * (undecodable, or more than ETCD_KEYS_MAX keys). */
static int kv_apply(etcd_store_t *s, const json_t *kv, int del)
{
    const json_t *k = jget(kv, "key"), *v = jget(kv, "value");
    size_t klen, vlen = 0;
    if (!k || k->type != JSON_STRING)
        return -1;
    char *key = b64_decode(k->str, k->len, &klen);
    char *val = del ? NULL : v && v->type == JSON_STRING ? b64_decode(v->str, v->len, &vlen)
                                                          : calloc(1, 1);
    if (!key || (!del && !val) || memchr(key, '\0', klen)) {
        free(key);
        free(val);
        return -1;
    }
    long at = kv_find(s, key);
    if (at >= 0) {
        free(key);
        free(s->kvs[at].val);
        if (del) {
            free(s->kvs[at].key);
            memmove(&s->kvs[at], &s->kvs[at + 1], (s->nkv - (size_t)at - 1) * sizeof *s->kvs);
            s->nkv--;
        } else {
            s->kvs[at].val = val;
            s->kvs[at].vlen = vlen;
        }
        return 0;
    }
    if (del) {
        free(key);
        return 0;
    }
    size_t pos = (size_t)(-at - 1);
    etcd_kv_t *grown = s->nkv < ETCD_KEYS_MAX ? realloc(s->kvs, (s->nkv + 1) * sizeof *s->kvs)
                                              : NULL;
    if (!grown) {
        free(key);
        free(val);
        return -1;
    }
    s->kvs = grown;
    memmove(&s->kvs[pos + 1], &s->kvs[pos], (s->nkv - pos) * sizeof *s->kvs);
    s->kvs[pos] = (etcd_kv_t){key, val, vlen};
    s->nkv++;
    return 0;
}

/* A new snapshot: the config file's text plus every tenant document. */
static config_t *snapshot_build(const etcd_store_t *s, const char *base, size_t base_len,
                                const char *base_dir, char *err, size_t errlen)
{
    size_t n = s->nkv;
    const char **docs = calloc(n + 1, sizeof *docs);
    const char **labels = calloc(n + 1, sizeof *labels);
    size_t *lens = calloc(n + 1, sizeof *lens);
    char *lbuf = malloc((n + 1) * ETCD_LABEL_MAX);
    config_t *cfg = NULL;
    if (docs && labels && lens && lbuf) {
        for (size_t i = 0; i < n; i++) {
            char *l = lbuf + i * ETCD_LABEL_MAX;
            snprintf(l, ETCD_LABEL_MAX, "etcd key %s", s->kvs[i].key);
            labels[i] = l;
            docs[i] = s->kvs[i].val;
            lens[i] = s->kvs[i].vlen;
        }
        cfg = config_parse_tenants(base, base_len, base_dir, docs, lens, labels, n, err, errlen);
    } else {
        snprintf(err, errlen, "out of memory");
    }
    free(docs);
    free(labels);
    free(lens);
    free(lbuf);
    return cfg;
}

/* Reads a whole file (at most ETCD_FILE_MAX bytes) and its directory, as
 * config_load resolves relative paths. Returns 0 or -1 with err. */
static int file_read(const char *path, char **text, size_t *len, char **dir, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    *text = malloc(ETCD_FILE_MAX + 1);
    *len = *text ? fread(*text, 1, ETCD_FILE_MAX + 1, f) : 0;
    int bad = !*text || ferror(f) || *len > ETCD_FILE_MAX;
    fclose(f);
    const char *slash = strrchr(path, '/');
    *dir = slash ? json_strdup(path, slash == path ? 1 : (size_t)(slash - path))
                 : json_strdup(".", 1);
    if (bad || !*dir) {
        snprintf(err, errlen, "%s: cannot read it (or larger than 1 MiB)", path);
        free(*text);
        free(*dir);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

static size_t on_write(char *p, size_t size, size_t n, void *ud);

/* An easy handle for POST <endpoint><path> with body. */
static CURL *request_new(etcd_store_t *s, const char *path, const char *body, long timeout_ms)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", s->cfg->store.endpoints[s->ep], path);
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    s->blen = 0;
    s->errbuf[0] = '\0';
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK; /* etcd is local to the fleet */
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_MS) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK;
    /* A watch is silent while nothing changes: TCP keepalive notices a
     * vanished etcd host. */
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 5L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 2L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, s) != CURLE_OK;
    if (bad) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

/* Handles one watch message (a line). Returns 0, 1 when the table changed,
 * or -1 when the watch must be re-established (canceled, compacted, error). */
static int watch_message(etcd_store_t *s, const char *line, size_t len)
{
    char msg[256];
    json_t *root = json_parse(line, len, msg, sizeof msg);
    const json_t *res = jget(root, "result");
    if (!root || !res || jget(root, "error")) {
        log_msg(LOG_WARN, "etcd watch: unexpected message (%s): re-reading",
                root ? "an error or no result" : msg);
        json_free(root);
        return -1;
    }
    const json_t *canceled = jget(res, "canceled");
    if ((canceled && canceled->type == JSON_BOOL && canceled->boolean) ||
        jint(jget(res, "compact_revision")) > 0) {
        log_msg(LOG_WARN, "etcd watch canceled (compacted to revision %lld): re-reading",
                (long long)jint(jget(res, "compact_revision")));
        json_free(root);
        return -1;
    }
    const json_t *events = jget(res, "events");
    int changed = 0, rc = 0;
    for (size_t i = 0; events && events->type == JSON_ARRAY && i < events->n; i++) {
        const json_t *type = jget(events->items[i], "type");
        int del = type && type->type == JSON_STRING && type->len == 6 &&
                  !memcmp(type->str, "DELETE", 6);
        if (kv_apply(s, jget(events->items[i], "kv"), del) < 0) {
            log_msg(LOG_WARN, "etcd watch: an event that does not decode: re-reading");
            rc = -1;
            break;
        }
        changed = 1;
    }
    int64_t rev = jint(jget(jget(res, "header"), "revision"));
    if (rev > s->revision)
        s->revision = rev;
    json_free(root);
    return rc < 0 ? -1 : changed;
}

/* Builds and applies a snapshot from the current documents. */
static void snapshot_apply(etcd_store_t *s)
{
    char err[1024];
    config_t *cfg = snapshot_build(s, s->base, s->base_len, s->base_dir, err, sizeof err);
    if (!cfg) {
        log_msg(LOG_ERROR, "etcd revision %lld: tenant table refused, last snapshot kept: %s",
                (long long)s->revision, err);
        return;
    }
    if (s->apply(s->ud, cfg, err, sizeof err) < 0) {
        log_msg(LOG_ERROR, "etcd revision %lld: not applied, last snapshot kept: %s",
                (long long)s->revision, err);
    } else {
        config_unref(s->cfg);
        s->cfg = config_ref(cfg);
        log_msg(LOG_INFO, "etcd revision %lld applied: %zu tenants", (long long)s->revision,
                cfg->ntenants);
    }
    config_unref(cfg);
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    etcd_store_t *s = ud;
    size_t len = size * n;
    if (s->blen + len > ETCD_BODY_MAX)
        return 0; /* CURLE_WRITE_ERROR: a re-read follows */
    if (s->blen + len > s->bcap) {
        size_t cap = s->bcap ? s->bcap : 4096;
        while (cap < s->blen + len)
            cap *= 2;
        char *grown = realloc(s->buf, cap);
        if (!grown)
            return 0;
        s->buf = grown;
        s->bcap = cap;
    }
    memcpy(s->buf + s->blen, p, len);
    s->blen += len;
    if (s->req != REQ_WATCH)
        return len;
    /* One JSON object per line (the gateway's stream delimiter). */
    int changed = 0;
    char *nl;
    while ((nl = memchr(s->buf, '\n', s->blen)) != NULL) {
        size_t line = (size_t)(nl - s->buf);
        int rc = watch_message(s, s->buf, line);
        memmove(s->buf, nl + 1, s->blen - line - 1);
        s->blen -= line + 1;
        if (rc < 0) {
            s->abort_watch = 1;
            break;
        }
        changed |= rc;
        if (s->unreachable) {
            s->unreachable = 0;
            s->backoff_ms = 0;
            log_msg(LOG_INFO, "etcd %s: watching again from revision %lld",
                    s->cfg->store.endpoints[s->ep], (long long)s->revision);
        }
    }
    if (changed)
        snapshot_apply(s);
    return s->abort_watch ? 0 : len;
}

/* Parses a range response into a fresh table. Returns 0 or -1 with err. */
static int range_parse(etcd_store_t *s, char *err, size_t errlen)
{
    char msg[256];
    json_t *root = json_parse(s->buf ? s->buf : "", s->blen, msg, sizeof msg);
    const json_t *kvs = jget(root, "kvs");
    int64_t rev = jint(jget(jget(root, "header"), "revision"));
    if (!root || rev <= 0 || (kvs && kvs->type != JSON_ARRAY)) {
        snprintf(err, errlen, "unexpected range response (%s)", root ? "no revision" : msg);
        json_free(root);
        return -1;
    }
    etcd_kv_t *old = s->kvs;
    size_t nold = s->nkv;
    s->kvs = NULL;
    s->nkv = 0;
    for (size_t i = 0; kvs && i < kvs->n; i++) {
        if (kv_apply(s, kvs->items[i], 0) < 0) {
            snprintf(err, errlen, "a key or value that does not decode, or more than %u keys",
                     ETCD_KEYS_MAX);
            kvs_clear(s->kvs, s->nkv);
            s->kvs = old;
            s->nkv = nold;
            json_free(root);
            return -1;
        }
    }
    kvs_clear(old, nold);
    s->revision = rev;
    json_free(root);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The multi interface on libev                                              */

static void request_begin(etcd_store_t *s, enum etcd_req req);

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    request_begin(w->data, REQ_RANGE);
}

/* A range or a watch failed or ended: log the change of state once, try the
 * next endpoint after a back-off. */
static void request_failed(etcd_store_t *s, const char *what)
{
    const char *ep = s->cfg->store.endpoints[s->ep];
    if (!s->unreachable)
        log_msg(LOG_WARN,
                "etcd %s: %s; serving with the last tenant table (revision %lld), retrying",
                ep, what, (long long)s->revision);
    else
        log_msg(LOG_DEBUG, "etcd %s: %s", ep, what);
    s->unreachable = 1;
    s->ep = (s->ep + 1) % s->cfg->store.nendpoints;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : ETCD_BACKOFF_MIN_MS;
    if (s->backoff_ms > ETCD_BACKOFF_MAX_MS)
        s->backoff_ms = ETCD_BACKOFF_MAX_MS;
    ev_timer_set(&s->retry, s->backoff_ms / 1000.0, 0.);
    ev_timer_start(s->loop, &s->retry);
}

static void request_done(etcd_store_t *s, CURLcode rc)
{
    enum etcd_req req = s->req;
    curl_multi_remove_handle(s->multi, s->easy);
    curl_easy_cleanup(s->easy);
    s->easy = NULL;
    s->req = REQ_NONE;
    char what[CURL_ERROR_SIZE + 64];
    if (req == REQ_WATCH) {
        snprintf(what, sizeof what, "watch lost (%s)",
                 s->abort_watch ? "re-read asked" : rc == CURLE_OK ? "etcd closed it"
                 : s->errbuf[0]                                    ? s->errbuf
                                                                   : curl_easy_strerror(rc));
        s->abort_watch = 0;
        request_failed(s, what);
        return;
    }
    char err[256];
    int64_t before = s->revision;
    if (rc != CURLE_OK) {
        snprintf(what, sizeof what, "range read failed (%s)",
                 s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
        request_failed(s, what);
        return;
    }
    if (range_parse(s, err, sizeof err) < 0) {
        request_failed(s, err);
        return;
    }
    if (s->unreachable)
        log_msg(LOG_INFO, "etcd %s: reachable again, revision %lld read",
                s->cfg->store.endpoints[s->ep], (long long)s->revision);
    s->unreachable = 0;
    s->backoff_ms = 0;
    if (s->revision != before) /* the same revision is the same table */
        snapshot_apply(s);
    request_begin(s, REQ_WATCH);
}

static void drive(etcd_store_t *s, curl_socket_t fd, int mask)
{
    int running = 0;
    curl_multi_socket_action(s->multi, fd, mask, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE && m->easy_handle == s->easy) {
            request_done(s, m->data.result);
            break; /* request_done may have started another request */
        }
}

static void on_sock_io(struct ev_loop *loop, ev_io *w, int revents)
{
    etcd_sock_t *k = w->data;
    drive(k->owner, w->fd,
          ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0));
}

static void on_curl_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    drive(w->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION: one ev_io per socket curl uses. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    etcd_store_t *s = userp;
    etcd_sock_t *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            ev_io_stop(s->loop, &k->io);
            free(k);
            curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k)
            return -1;
        k->owner = s;
        ev_init(&k->io, on_sock_io);
        k->io.data = k;
        curl_multi_assign(s->multi, fd, k);
    }
    ev_io_stop(s->loop, &k->io);
    ev_io_set(&k->io, fd, ((what & CURL_POLL_IN) ? EV_READ : 0) |
                              ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    ev_io_start(s->loop, &k->io);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer. */
static int on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    etcd_store_t *s = userp;
    ev_timer_stop(s->loop, &s->curl_timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&s->curl_timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(s->loop, &s->curl_timer);
    }
    return 0;
}

static void request_begin(etcd_store_t *s, enum etcd_req req)
{
    char body[1024];
    if (req == REQ_RANGE)
        snprintf(body, sizeof body, "%s", s->range_body);
    else
        snprintf(body, sizeof body,
                 "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
                 "\"start_revision\":\"%lld\"}}",
                 s->key_b64, s->end_b64, (long long)s->revision + 1);
    s->req = req;
    s->easy = request_new(s, req == REQ_RANGE ? "/v3/kv/range" : "/v3/watch", body,
                          req == REQ_RANGE ? ETCD_RANGE_MS : 0L);
    if (!s->easy || curl_multi_add_handle(s->multi, s->easy) != CURLM_OK) {
        if (s->easy)
            curl_easy_cleanup(s->easy);
        s->easy = NULL;
        s->req = REQ_NONE;
        request_failed(s, "cannot set up a request (out of memory?)");
    }
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

etcd_store_t *etcd_store_open(const char *config_path, const config_t *base, config_t **out,
                              int *code, char *err, size_t errlen)
{
    *out = NULL;
    *code = 2;
    static int curl_ready;
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl cannot be initialised");
        *code = 1;
        return NULL;
    }
    curl_ready = 1;
    etcd_store_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = config_ref((config_t *)base);
    if (file_read(config_path, &s->base, &s->base_len, &s->base_dir, err, errlen) < 0)
        goto fail;
    /* range_end: the prefix with its last byte + 1 (etcd's "keys with this
     * prefix"); a prefix of only 0xff bytes means every key from it on. */
    const char *prefix = base->store.prefix;
    size_t plen = strlen(prefix);
    char end[ETCD_LABEL_MAX];
    memcpy(end, prefix, plen);
    size_t elen = plen;
    while (elen > 0 && (unsigned char)end[elen - 1] == 0xff)
        elen--;
    if (elen > 0)
        end[elen - 1]++;
    s->key_b64 = b64_encode(prefix, plen);
    s->end_b64 = elen ? b64_encode(end, elen) : b64_encode("", 1);
    size_t blen = 64 + 2 * (s->key_b64 ? strlen(s->key_b64) : 0) +
                  (s->end_b64 ? strlen(s->end_b64) : 0);
    s->range_body = malloc(blen);
    if (!s->key_b64 || !s->end_b64 || !s->range_body) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(s->range_body, blen, "{\"key\":\"%s\",\"range_end\":\"%s\"}", s->key_b64,
             s->end_b64);

    /* The first read blocks: there is nothing to serve before it. */
    char why[CURL_ERROR_SIZE + 64] = "";
    for (s->ep = 0; s->ep < base->store.nendpoints; s->ep++) {
        CURL *e = request_new(s, "/v3/kv/range", s->range_body, ETCD_RANGE_MS);
        CURLcode rc = e ? curl_easy_perform(e) : CURLE_OUT_OF_MEMORY;
        if (e)
            curl_easy_cleanup(e);
        if (rc == CURLE_OK && range_parse(s, why, sizeof why) == 0)
            break;
        if (rc != CURLE_OK)
            snprintf(why, sizeof why, "%s", s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
        log_msg(LOG_WARN, "etcd %s: %s", base->store.endpoints[s->ep], why);
    }
    if (s->ep == base->store.nendpoints) {
        snprintf(err, errlen, "etcd: cannot read the tenants under %s from any endpoint (%s%s): %s",
                 prefix, base->store.endpoints[0], base->store.nendpoints > 1 ? ", ..." : "",
                 why);
        *code = 1;
        goto fail;
    }
    char perr[1024];
    *out = snapshot_build(s, s->base, s->base_len, s->base_dir, perr, sizeof perr);
    if (!*out) {
        snprintf(err, errlen, "etcd revision %lld: %s", (long long)s->revision, perr);
        goto fail;
    }
    config_unref(s->cfg);
    s->cfg = config_ref(*out);
    log_msg(LOG_INFO, "etcd %s: revision %lld read: %zu tenants under %s",
            base->store.endpoints[s->ep], (long long)s->revision, (*out)->ntenants, prefix);
    return s;
fail:
    etcd_store_free(s);
    return NULL;
}

int etcd_store_start(etcd_store_t *s, struct ev_loop *loop, etcd_apply_fn apply, void *ud,
                     char *err, size_t errlen)
{
    s->loop = loop;
    s->apply = apply;
    s->ud = ud;
    s->multi = curl_multi_init();
    if (!s->multi) {
        snprintf(err, errlen, "libcurl: cannot create a multi handle");
        return -1;
    }
    ev_init(&s->curl_timer, on_curl_timer);
    s->curl_timer.data = s;
    ev_init(&s->retry, on_retry);
    s->retry.data = s;
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    request_begin(s, REQ_WATCH);
    return 0;
}

static int store_same(const cfg_store_t *a, const cfg_store_t *b)
{
    if (a->type != b->type || strcmp(a->prefix, b->prefix) || a->nendpoints != b->nendpoints)
        return 0;
    for (size_t i = 0; i < a->nendpoints; i++)
        if (strcmp(a->endpoints[i], b->endpoints[i]))
            return 0;
    return 1;
}

int etcd_store_reload(etcd_store_t *s, const char *config_path, char *err, size_t errlen)
{
    char *text, *dir;
    size_t len;
    if (file_read(config_path, &text, &len, &dir, err, errlen) < 0)
        return -1;
    int rc = -1;
    char perr[1024];
    config_t *cfg = snapshot_build(s, text, len, dir, perr, sizeof perr);
    if (!cfg)
        snprintf(err, errlen, "%s: %s", config_path, perr);
    else if (!store_same(&cfg->store, &s->cfg->store))
        snprintf(err, errlen, "%s: $.tenant_store: changed; a new tenant store needs a restart",
                 config_path);
    else if (s->apply(s->ud, cfg, err, errlen) == 0)
        rc = 0;
    if (rc == 0) {
        free(s->base);
        free(s->base_dir);
        s->base = text;
        s->base_len = len;
        s->base_dir = dir;
        config_unref(s->cfg);
        s->cfg = config_ref(cfg);
    } else {
        free(text);
        free(dir);
    }
    config_unref(cfg);
    return rc;
}

int64_t etcd_store_revision(const etcd_store_t *s)
{
    return s->revision;
}

void etcd_store_free(etcd_store_t *s)
{
    if (!s)
        return;
    if (s->multi) {
        if (s->easy) {
            curl_multi_remove_handle(s->multi, s->easy); /* closes its sockets: on_socket */
            curl_easy_cleanup(s->easy);
        }
        curl_multi_cleanup(s->multi);
        ev_timer_stop(s->loop, &s->curl_timer);
        ev_timer_stop(s->loop, &s->retry);
    }
    kvs_clear(s->kvs, s->nkv);
    config_unref(s->cfg);
    free(s->base);
    free(s->base_dir);
    free(s->range_body);
    free(s->key_b64);
    free(s->end_b64);
    free(s->buf);
    free(s);
}
