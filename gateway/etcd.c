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
#include "etcd_watch.h"
#include "json.h"
#include "log.h"

#define ETCD_FILE_MAX (1024u * 1024u)   /* the config file, as config.c */
#define ETCD_KEYS_MAX 10000u            /* tenants under the prefix */
#define ETCD_RANGE_MS 5000L
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
    etcd_kv_t *kvs;      /* sorted by key */
    size_t nkv;
    etcd_kv_t *old_kvs;  /* set aside while a range answer is read */
    size_t nold;
    int64_t applied;     /* the revision of the last snapshot applied */
    char *prefix;

    etcd_client_t *client;
    etcd_watch_t *watch; /* the range read and the watch; its revision is the table's */
    struct ev_loop *loop;
    etcd_apply_fn apply;
    void *ud;
    etcd_write_t *writes;
    size_t nwrites;
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static const json_t *jget(const json_t *obj, const char *key)
{
    return obj && obj->type == JSON_OBJECT ? json_get(obj, key) : NULL;
}

/* The revision of the table: the watch's (a range read, a message with
 * events). */
static int64_t store_rev(const etcd_store_t *s)
{
    return etcd_watch_revision(s->watch);
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

/* One kv of a range or watch response (etcd_watch.h). PUT (value present,
 * possibly empty) inserts or replaces; del removes. Returns 0 or -1 (a key
 * with a NUL byte, out of memory, or more than ETCD_KEYS_MAX keys). */
static int kv_apply(etcd_store_t *s, const etcd_watch_kv_t *kv)
{
    int del = kv->deleted;
    size_t vlen = kv->value_len;
    char *key = memchr(kv->key, '\0', kv->key_len) ? NULL : json_strdup(kv->key, kv->key_len);
    char *val = del ? NULL : malloc(vlen + 1);
    if (val)
        memcpy(val, kv->value, vlen + 1);
    if (!key || (!del && !val)) {
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
            cfg->tenants_revision = (uint64_t)store_rev(s);
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
/* The watch's callbacks (etcd_watch.h)                                      */

static void writes_settle(etcd_store_t *s);

/* Builds and applies a snapshot from the current documents. */
static void snapshot_apply(etcd_store_t *s)
{
    char err[1024];
    config_t *cfg = snapshot_build(s, s->base, s->base_len, s->base_dir, err, sizeof err);
    if (!cfg) {
        log_msg(LOG_ERROR, "etcd revision %lld: tenant table refused, last snapshot kept: %s",
                (long long)store_rev(s), err);
        return;
    }
    if (s->apply(s->ud, cfg, err, sizeof err) < 0) {
        log_msg(LOG_ERROR, "etcd revision %lld: not applied, last snapshot kept: %s",
                (long long)store_rev(s), err);
    } else {
        config_unref(s->cfg);
        s->cfg = config_ref(cfg);
        s->applied = store_rev(s);
        log_line_t l;
        if (log_begin(&l, LOG_INFO, "tenant.table")) {
            log_str(&l, "source", "etcd");
            log_i64(&l, "revision", store_rev(s));
            log_u64(&l, "tenants", cfg->ntenants);
            log_end(&l);
        }
    }
    config_unref(cfg);
}

/* A range answer is atomic: one that does not decode keeps the old table. */
static void on_range(void *ud, etcd_watch_range_t step)
{
    etcd_store_t *s = ud;
    if (step == ETCD_WATCH_RANGE_BEGIN) {
        s->old_kvs = s->kvs;
        s->nold = s->nkv;
        s->kvs = NULL;
        s->nkv = 0;
        return;
    }
    if (step == ETCD_WATCH_RANGE_KEEP) {
        kvs_clear(s->old_kvs, s->nold);
    } else {
        kvs_clear(s->kvs, s->nkv);
        s->kvs = s->old_kvs;
        s->nkv = s->nold;
    }
    s->old_kvs = NULL;
    s->nold = 0;
}

static int on_kv(void *ud, const etcd_watch_kv_t *kv)
{
    return kv_apply(ud, kv);
}

/* A new table when something changed; then every admin write whose
 * revision has now been applied is answered. */
static void on_applied(void *ud, int64_t rev, int changed)
{
    etcd_store_t *s = ud;
    (void)rev;
    if (changed)
        snapshot_apply(s);
    writes_settle(s);
}

static void on_state(void *ud, int up, const char *why)
{
    etcd_store_t *s = ud;
    if (up)
        log_msg(LOG_INFO, "etcd %s: reachable again, revision %lld read",
                etcd_client_endpoint(s->client), (long long)store_rev(s));
    else
        log_msg(LOG_WARN,
                "etcd %s: %s; serving with the last tenant table (revision %lld), retrying",
                etcd_client_endpoint(s->client), why, (long long)store_rev(s));
}

static const etcd_watch_ops_t etcd_watch_ops = {on_range, on_kv, on_applied, on_state};

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
            if (w->rev > 0 && store_rev(s) >= w->rev) {
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
        if (store_rev(s) >= rev) {
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
    const etcd_watch_conf_t wc = {.prefix = prefix, .range_timeout_ms = ETCD_RANGE_MS,
                                  .log_prefix = "", .read_name = "range read",
                                  .watch_name = "watch"};
    s->watch = s->client ? etcd_watch_new(s->client, &wc, &etcd_watch_ops, s) : NULL;
    if (!s->prefix || !s->client || !s->watch) {
        snprintf(err, errlen, "out of memory (or libcurl cannot start)");
        *code = 1;
        goto fail;
    }

    /* The first read blocks: there is nothing to serve before it. */
    char why[512] = "";
    size_t tried = 0;
    for (; tried < base->store.nendpoints; tried++, etcd_client_failover(s->client)) {
        if (etcd_watch_read(s->watch, why, sizeof why) == 0)
            break;
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
        snprintf(err, errlen, "etcd revision %lld: %s", (long long)store_rev(s), perr);
        goto fail;
    }
    config_unref(s->cfg);
    s->cfg = config_ref(*out);
    s->applied = store_rev(s);
    log_msg(LOG_INFO, "etcd %s: revision %lld read: %zu tenants under %s",
            etcd_client_endpoint(s->client), (long long)store_rev(s), (*out)->ntenants, prefix);
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
    etcd_watch_start(s->watch, loop); /* from the revision open read */
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
    return store_rev(s);
}

int etcd_store_up(const etcd_store_t *s)
{
    return etcd_watch_up(s->watch);
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
    etcd_watch_free(s->watch); /* cancels the watch or range read */
    etcd_client_free(s->client);
    kvs_clear(s->kvs, s->nkv);
    config_unref(s->cfg);
    free(s->base);
    free(s->base_dir);
    free(s->prefix);
    free(s);
}
