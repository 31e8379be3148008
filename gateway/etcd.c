/*
 * etcd.c — the tenant table read and watched from etcd v3 (see etcd.h).
 *
 * HTTP goes through etcd_client.c (libcurl on the libev loop), JSON is
 * gateway/json.c's yajl-built tree. etcd's JSON gateway encodes keys and
 * values in base64 and 64-bit integers as strings.
 */
#include "etcd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_client.h"
#include "json.h"
#include "log.h"

#define ETCD_FILE_MAX (1024u * 1024u)   /* the config file, as config.c */
#define ETCD_KEYS_MAX 10000u            /* tenants under the prefix */
#define ETCD_RANGE_MS 5000L
#define ETCD_BACKOFF_MIN_MS 100u
#define ETCD_BACKOFF_MAX_MS 5000u
#define ETCD_LABEL_MAX 300u
#define ETCD_WRITE_MS 2000L             /* the txn call */
#define ETCD_APPLY_WAIT_S 2.0           /* a committed write until the watch applies it */
#define ETCD_WRITES_MAX 64u             /* admin writes in flight (ADMIN_CONNS_MAX) */

/* An admin write: the txn in flight (call), then the wait for the watch to
 * apply the revision it committed (rev > 0). */
typedef struct etcd_write {
    etcd_store_t *s;
    etcd_call_t *call;
    ev_timer wait;
    int64_t rev;
    store_write_cb cb;
    void *arg;
    struct etcd_write *next;
} etcd_write_t;

typedef struct etcd_kv {
    char *key;   /* NUL-terminated */
    char *val;
    size_t vlen;
} etcd_kv_t;

struct etcd_store {
    store_t admin;       /* etcd_store_admin: read and write for the admin API */
    char *base;          /* the config file's text */
    size_t base_len;
    char *base_dir;
    config_t *cfg;       /* the last snapshot built (for its tenant_store) */
    char *range_body;    /* {"key":..,"range_end":..} */
    char *key_b64, *end_b64;
    etcd_kv_t *kvs;      /* sorted by key */
    size_t nkv;
    int64_t revision;    /* the last revision seen (a range read, a watch message) */
    int64_t applied;     /* the revision of the last snapshot applied */
    char *prefix;

    etcd_client_t *client;
    struct ev_loop *loop;
    etcd_apply_fn apply;
    void *ud;
    etcd_call_t *call;   /* the range read or the watch in flight */
    ev_timer retry;
    uint32_t backoff_ms;
    int unreachable;     /* the last attempt failed (logged once per change) */
    etcd_write_t *writes;
    size_t nwrites;
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static const json_t *jget(const json_t *obj, const char *key)
{
    return obj && obj->type == JSON_OBJECT ? json_get(obj, key) : NULL;
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
    char *key = etcd_b64_decode(k->str, k->len, &klen);
    char *val = del ? NULL : v && v->type == JSON_STRING ? etcd_b64_decode(v->str, v->len, &vlen)
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
        if (cfg) /* still ours alone: the admin API shows it and writes name it */
            cfg->tenants_revision = (uint64_t)s->revision;
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
/* The range read and the watch on the loop                                  */

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
        etcd_json_int(jget(res, "compact_revision")) > 0) {
        log_msg(LOG_WARN, "etcd watch canceled (compacted to revision %lld): re-reading",
                (long long)etcd_json_int(jget(res, "compact_revision")));
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
    /* Only a message with events says that everything up to its revision
     * has been delivered: the "created" answer carries etcd's current
     * revision while the events since start_revision are still to come. An
     * admin write waits for its revision here (writes_settle). */
    int64_t rev = etcd_json_int(jget(jget(res, "header"), "revision"));
    if (changed && rev > s->revision)
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
        s->applied = s->revision;
        log_msg(LOG_INFO, "etcd revision %lld applied: %zu tenants", (long long)s->revision,
                cfg->ntenants);
    }
    config_unref(cfg);
}

/* Parses a range response into a fresh table. Returns 0 or -1 with err. */
static int range_parse(etcd_store_t *s, const char *body, size_t len, char *err, size_t errlen)
{
    char msg[256];
    json_t *root = json_parse(body, len, msg, sizeof msg);
    const json_t *kvs = jget(root, "kvs");
    int64_t rev = etcd_json_int(jget(jget(root, "header"), "revision"));
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

static void range_begin(etcd_store_t *s);
static void watch_begin(etcd_store_t *s);
static void writes_settle(etcd_store_t *s);

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    range_begin(w->data);
}

/* A range or a watch failed or ended: log the change of state once, try the
 * next endpoint after a back-off. */
static void request_failed(etcd_store_t *s, const char *what)
{
    s->call = NULL;
    const char *ep = etcd_client_endpoint(s->client);
    if (!s->unreachable)
        log_msg(LOG_WARN,
                "etcd %s: %s; serving with the last tenant table (revision %lld), retrying",
                ep, what, (long long)s->revision);
    else
        log_msg(LOG_DEBUG, "etcd %s: %s", ep, what);
    s->unreachable = 1;
    etcd_client_failover(s->client);
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : ETCD_BACKOFF_MIN_MS;
    if (s->backoff_ms > ETCD_BACKOFF_MAX_MS)
        s->backoff_ms = ETCD_BACKOFF_MAX_MS;
    ev_timer_set(&s->retry, s->backoff_ms / 1000.0, 0.);
    ev_timer_start(s->loop, &s->retry);
}

static int on_watch_line(void *ud, const char *line, size_t len)
{
    etcd_store_t *s = ud;
    int rc = watch_message(s, line, len);
    if (rc < 0)
        return -1;
    if (s->unreachable) {
        s->unreachable = 0;
        s->backoff_ms = 0;
        log_msg(LOG_INFO, "etcd %s: watching again from revision %lld",
                etcd_client_endpoint(s->client), (long long)s->revision);
    }
    if (rc > 0)
        snapshot_apply(s);
    writes_settle(s);
    return 0;
}

static void on_watch_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    char what[512];
    snprintf(what, sizeof what, "watch lost (%s)", status == 0 ? "etcd closed it" : err);
    request_failed(ud, what);
}

static void watch_begin(etcd_store_t *s)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
             "\"start_revision\":\"%lld\"}}",
             s->key_b64, s->end_b64, (long long)s->revision + 1);
    s->call = etcd_stream(s->client, "/v3/watch", body, on_watch_line, on_watch_done, s);
    if (!s->call)
        request_failed(s, "cannot set up the watch (out of memory?)");
}

static void on_range_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    etcd_store_t *s = ud;
    char why[512];
    int64_t before = s->revision;
    s->call = NULL;
    if (status < 0) {
        snprintf(why, sizeof why, "range read failed (%s)", err);
        request_failed(s, why);
        return;
    }
    if (range_parse(s, body, len, why, sizeof why) < 0) {
        request_failed(s, why);
        return;
    }
    if (s->unreachable)
        log_msg(LOG_INFO, "etcd %s: reachable again, revision %lld read",
                etcd_client_endpoint(s->client), (long long)s->revision);
    s->unreachable = 0;
    s->backoff_ms = 0;
    if (s->revision != before) /* the same revision is the same table */
        snapshot_apply(s);
    writes_settle(s);
    watch_begin(s);
}

static void range_begin(etcd_store_t *s)
{
    s->call = etcd_call(s->client, "/v3/kv/range", s->range_body, ETCD_RANGE_MS,
                        on_range_done, s);
    if (!s->call)
        request_failed(s, "cannot set up the range read (out of memory?)");
}

/* ------------------------------------------------------------------------ */
/* The admin API's store (store.h)                                           */

/* The tenants as a document {"revision": applied, "tenants": [...]}, in key
 * order; a value that is not JSON is left out (it was refused anyway). */
static json_t *doc_build(const etcd_store_t *s)
{
    json_t *root = json_new(JSON_OBJECT, NULL, 0), *list = json_new(JSON_ARRAY, NULL, 0);
    char num[24];
    int nl = snprintf(num, sizeof num, "%lld", (long long)s->applied);
    if (!root || !list || json_set(root, "revision", json_new(JSON_NUMBER, num, (size_t)nl))) {
        json_free(root);
        json_free(list);
        return NULL;
    }
    if (json_set(root, "tenants", list))
        goto nomem;
    for (size_t i = 0; i < s->nkv; i++) {
        char msg[8];
        json_t *t = json_parse(s->kvs[i].val, s->kvs[i].vlen, msg, sizeof msg);
        if (t && json_push(list, t)) {
            json_free(t);
            goto nomem;
        }
    }
    return root;
nomem:
    json_free(root);
    return NULL;
}

static int ea_read(store_t *st, char **doc, size_t *len, uint64_t *revision, char *err,
                   size_t errlen)
{
    etcd_store_t *s = etcd_store_of(st);
    json_t *root = doc_build(s);
    *doc = root ? json_write(root, len) : NULL;
    json_free(root);
    if (!*doc) {
        snprintf(err, errlen, "out of memory");
        return STORE_ERROR;
    }
    *revision = (uint64_t)s->applied;
    return STORE_OK;
}

/* The key holding tenant id: the one whose document says so, else prefix +
 * id (malloc'd; NULL when out of memory). */
static char *key_for(const etcd_store_t *s, const char *id)
{
    for (size_t i = 0; i < s->nkv; i++) {
        char msg[8];
        json_t *t = json_parse(s->kvs[i].val, s->kvs[i].vlen, msg, sizeof msg);
        const json_t *tid = jget(t, "id");
        int match = tid && tid->type == JSON_STRING && !strcmp(tid->str, id);
        json_free(t);
        if (match)
            return json_strdup(s->kvs[i].key, strlen(s->kvs[i].key));
    }
    size_t plen = strlen(s->prefix), ilen = strlen(id);
    char *key = malloc(plen + ilen + 1);
    if (key) {
        memcpy(key, s->prefix, plen);
        memcpy(key + plen, id, ilen + 1);
    }
    return key;
}

static void write_free(etcd_write_t *w)
{
    etcd_call_cancel(w->call);
    if (w->s->loop)
        ev_timer_stop(w->s->loop, &w->wait);
    w->s->nwrites--;
    free(w);
}

/* Unlinks w, runs its callback once and frees it. */
static void write_finish(etcd_write_t *w, int status, int64_t rev, const char *err)
{
    etcd_store_t *s = w->s;
    for (etcd_write_t **pp = &s->writes; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    store_write_cb cb = w->cb;
    void *arg = w->arg;
    w->call = NULL; /* finished or being finished by its own done callback */
    write_free(w);
    cb(arg, status, (uint64_t)rev, err);
}

/* Every committed write whose revision the watch has now applied (or
 * refused: the snapshot then stays as it was, and the admin API says so). */
static void writes_settle(etcd_store_t *s)
{
    for (int again = 1; again;) {
        again = 0;
        for (etcd_write_t *w = s->writes; w; w = w->next)
            if (w->rev > 0 && s->revision >= w->rev) {
                write_finish(w, STORE_OK, w->rev, NULL);
                again = 1; /* the callback may have changed the list */
                break;
            }
    }
}

/* Committed, but the watch has not delivered the revision in time (etcd
 * lost between the txn and the watch, or a slow watch): the write is durable
 * and will be applied when the watch or its re-read gets it; the caller is
 * told now, with a snapshot older than the revision. */
static void on_write_wait(struct ev_loop *loop, ev_timer *t, int revents)
{
    etcd_write_t *w = t->data;
    log_msg(LOG_WARN, "etcd: revision %lld committed but not seen by the watch within %.0f s",
            (long long)w->rev, ETCD_APPLY_WAIT_S);
    write_finish(w, STORE_OK, w->rev, NULL);
}

static void on_txn_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    etcd_write_t *w = ud;
    etcd_store_t *s = w->s;
    char why[512], msg[256];
    w->call = NULL;
    if (status < 0) {
        snprintf(why, sizeof why, "etcd %s unreachable, nothing written: %s",
                 etcd_client_endpoint(s->client), err);
        write_finish(w, STORE_ERROR, s->applied, why);
        return;
    }
    json_t *root = json_parse(body, len, msg, sizeof msg);
    const json_t *ok = jget(root, "succeeded");
    int64_t rev = etcd_json_int(jget(jget(root, "header"), "revision"));
    int succeeded = ok && ok->type == JSON_BOOL && ok->boolean; /* false is left out */
    json_free(root);
    if (!root || rev <= 0) {
        snprintf(why, sizeof why, "etcd %s: unexpected txn response (%s)",
                 etcd_client_endpoint(s->client), root ? "no revision" : msg);
        write_finish(w, STORE_ERROR, s->applied, why);
    } else if (!succeeded) {
        write_finish(w, STORE_CONFLICT, s->applied, NULL);
    } else {
        w->rev = rev;
        if (s->revision >= rev) {
            write_finish(w, STORE_OK, rev, NULL);
            return;
        }
        ev_timer_init(&w->wait, on_write_wait, ETCD_APPLY_WAIT_S, 0.);
        w->wait.data = w;
        ev_timer_start(s->loop, &w->wait);
    }
}

/* One transaction (etcd's KV.Txn, RFC-less: etcd's api/etcdserverpb): if the
 * tenant's key has not been modified after the revision the admin read
 * (mod_revision < expected + 1; a missing key has mod_revision 0), put the
 * new document; else nothing, "succeeded" false: a conflict. */
static void ea_write(store_t *st, const char *id, const char *tenant_json, size_t len,
                     uint64_t expected, store_write_cb cb, void *arg)
{
    etcd_store_t *s = etcd_store_of(st);
    char *key = NULL, *k64 = NULL, *v64 = NULL, *body = NULL;
    const char *why = "out of memory";
    if (!s->loop) {
        why = "the etcd store is not started";
        goto fail;
    }
    if (s->nwrites >= ETCD_WRITES_MAX) {
        why = "too many writes in flight";
        goto fail;
    }
    key = key_for(s, id);
    k64 = key ? etcd_b64_encode(key, strlen(key)) : NULL;
    v64 = etcd_b64_encode(tenant_json, len);
    size_t blen = 256 + (k64 ? 2 * strlen(k64) : 0) + (v64 ? strlen(v64) : 0);
    body = malloc(blen);
    etcd_write_t *w = calloc(1, sizeof *w);
    if (!k64 || !v64 || !body || !w) {
        free(w);
        goto fail;
    }
    snprintf(body, blen,
             "{\"compare\":[{\"key\":\"%s\",\"target\":\"MOD\",\"result\":\"LESS\","
             "\"mod_revision\":\"%llu\"}],"
             "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
             k64, (unsigned long long)expected + 1, k64, v64);
    w->s = s;
    w->cb = cb;
    w->arg = arg;
    ev_init(&w->wait, on_write_wait);
    w->call = etcd_call(s->client, "/v3/kv/txn", body, ETCD_WRITE_MS, on_txn_done, w);
    if (!w->call) {
        free(w);
        goto fail;
    }
    w->next = s->writes;
    s->writes = w;
    s->nwrites++;
    free(key);
    free(k64);
    free(v64);
    free(body);
    return;
fail:
    free(key);
    free(k64);
    free(v64);
    free(body);
    cb(arg, STORE_ERROR, (uint64_t)s->applied, why);
}

static void ea_free(store_t *st)
{
    (void)st; /* part of the etcd store: etcd_store_free frees it */
}

static const store_ops_t etcd_admin_ops = {"etcd", ea_read, ea_write, ea_free};

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

etcd_store_t *etcd_store_open(const char *config_path, const config_t *base, config_t **out,
                              int *code, char *err, size_t errlen)
{
    *out = NULL;
    *code = 2;
    etcd_store_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = config_ref((config_t *)base);
    if (file_read(config_path, &s->base, &s->base_len, &s->base_dir, err, errlen) < 0)
        goto fail;
    const char *prefix = base->store.prefix;
    s->admin.ops = &etcd_admin_ops;
    s->prefix = json_strdup(prefix, strlen(prefix));
    s->client = etcd_client_new((const char *const *)base->store.endpoints,
                                base->store.nendpoints);
    s->key_b64 = etcd_b64_encode(prefix, strlen(prefix));
    s->end_b64 = etcd_prefix_end_b64(prefix);
    size_t blen = 64 + (s->key_b64 ? strlen(s->key_b64) : 0) +
                  (s->end_b64 ? strlen(s->end_b64) : 0);
    s->range_body = malloc(blen);
    if (!s->prefix || !s->client || !s->key_b64 || !s->end_b64 || !s->range_body) {
        snprintf(err, errlen, "out of memory (or libcurl cannot start)");
        *code = 1;
        goto fail;
    }
    snprintf(s->range_body, blen, "{\"key\":\"%s\",\"range_end\":\"%s\"}", s->key_b64,
             s->end_b64);

    /* The first read blocks: there is nothing to serve before it. */
    char why[512] = "";
    size_t tried = 0;
    for (; tried < base->store.nendpoints; tried++, etcd_client_failover(s->client)) {
        char *body;
        size_t len;
        if (etcd_client_perform(s->client, "/v3/kv/range", s->range_body, ETCD_RANGE_MS,
                                &body, &len, why, sizeof why) == 0) {
            int rc = range_parse(s, body, len, why, sizeof why);
            free(body);
            if (rc == 0)
                break;
        }
        log_msg(LOG_WARN, "etcd %s: %s", etcd_client_endpoint(s->client), why);
    }
    if (tried == base->store.nendpoints) {
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
    s->applied = s->revision;
    log_msg(LOG_INFO, "etcd %s: revision %lld read: %zu tenants under %s",
            etcd_client_endpoint(s->client), (long long)s->revision, (*out)->ntenants, prefix);
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
    if (etcd_client_attach(s->client, loop) < 0) {
        snprintf(err, errlen, "libcurl: cannot create a multi handle");
        return -1;
    }
    ev_init(&s->retry, on_retry);
    s->retry.data = s;
    watch_begin(s);
    return 0;
}

static int str_same(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* What a reload cannot change with etcd tenants: the store itself, and what
 * the fleet registered at start (fleet.h). Returns the JSON path of the
 * first difference, or NULL. */
static const char *restart_needed(const config_t *a, const config_t *b)
{
    const cfg_store_t *x = &a->store, *y = &b->store;
    int same = x->type == y->type && !strcmp(x->prefix, y->prefix) &&
               x->nendpoints == y->nendpoints && str_same(x->members_prefix, y->members_prefix) &&
               x->lease_ttl_s == y->lease_ttl_s;
    for (size_t i = 0; same && i < x->nendpoints; i++)
        same = !strcmp(x->endpoints[i], y->endpoints[i]);
    if (!same)
        return "$.tenant_store";
    if (!str_same(a->node.id, b->node.id))
        return "$.node.id";
    if (strcmp(a->region, b->region))
        return "$.region";
    return NULL;
}

int etcd_store_reload(etcd_store_t *s, const char *config_path, char *err, size_t errlen)
{
    char *text, *dir;
    size_t len;
    if (file_read(config_path, &text, &len, &dir, err, errlen) < 0)
        return -1;
    int rc = -1;
    char perr[1024];
    const char *what;
    config_t *cfg = snapshot_build(s, text, len, dir, perr, sizeof perr);
    if (!cfg)
        snprintf(err, errlen, "%s: %s", config_path, perr);
    else if ((what = restart_needed(cfg, s->cfg)) != NULL)
        snprintf(err, errlen,
                 "%s: %s: changed; with tenants in etcd this needs a restart (the tenant "
                 "store and the fleet's registration are made at start)",
                 config_path, what);
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

store_t *etcd_store_admin(etcd_store_t *s)
{
    return &s->admin;
}

etcd_store_t *etcd_store_of(store_t *st)
{
    /* The store_t is the struct's first member. */
    return st && st->ops == &etcd_admin_ops ? (etcd_store_t *)st : NULL;
}

config_t *etcd_store_retenant(const etcd_store_t *s, const char *tenants_doc, size_t len,
                              char *err, size_t errlen)
{
    char msg[256];
    json_t *root = json_parse(tenants_doc, len, msg, sizeof msg);
    const json_t *list = jget(root, "tenants");
    if (!list || list->type != JSON_ARRAY) {
        snprintf(err, errlen, "$: %s", root ? "expected an object with a \"tenants\" array" : msg);
        json_free(root);
        return NULL;
    }
    size_t n = list->n;
    char **docs = calloc(n + 1, sizeof *docs);
    size_t *lens = calloc(n + 1, sizeof *lens);
    const char **labels = calloc(n + 1, sizeof *labels);
    char *lbuf = malloc((n + 1) * 32);
    config_t *cfg = NULL;
    size_t i = 0;
    if (docs && lens && labels && lbuf) {
        for (; i < n; i++) {
            snprintf(lbuf + i * 32, 32, "tenant %zu", i); /* then its own "$.x" path */
            labels[i] = lbuf + i * 32;
            if (!(docs[i] = json_write(list->items[i], &lens[i])))
                break;
        }
    }
    if (i == n && docs && lens && labels && lbuf)
        cfg = config_parse_tenants(s->base, s->base_len, s->base_dir, (const char *const *)docs,
                                   lens, labels, n, err, errlen);
    else
        snprintf(err, errlen, "out of memory");
    for (size_t j = 0; docs && j < n; j++)
        free(docs[j]);
    free(docs);
    free(lens);
    free(labels);
    free(lbuf);
    json_free(root);
    return cfg;
}

int64_t etcd_store_revision(const etcd_store_t *s)
{
    return s->revision;
}

int etcd_store_up(const etcd_store_t *s)
{
    return !s->unreachable;
}

void etcd_store_free(etcd_store_t *s)
{
    if (!s)
        return;
    while (s->writes) { /* dropped: their callers are gone too (store.h) */
        etcd_write_t *w = s->writes;
        s->writes = w->next;
        write_free(w);
    }
    if (s->loop)
        ev_timer_stop(s->loop, &s->retry);
    etcd_client_free(s->client); /* cancels the watch or range read */
    kvs_clear(s->kvs, s->nkv);
    config_unref(s->cfg);
    free(s->base);
    free(s->base_dir);
    free(s->range_body);
    free(s->key_b64);
    free(s->end_b64);
    free(s->prefix);
    free(s);
}
