/*
 * etcd_watch.c — a range read then a watch over one etcd prefix, re-read on
 * every loss (see etcd_watch.h).
 *
 * Every step that runs an owner's callback checks afterwards that the chain
 * is still the one it ran for (gen): the owner may have stopped (or
 * restarted) it there.
 */
#include "etcd_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"

#define ETCD_WATCH_BACKOFF_MIN_MS 100u
#define ETCD_WATCH_BACKOFF_MAX_MS 5000u
#define ETCD_WATCH_BODY_MAX 1024u /* a watch's create_request, prefixes included */

struct etcd_watch {
    etcd_client_t *_client;
    struct ev_loop *_loop;       /* NULL until etcd_watch_start */
    const etcd_watch_ops_t *_ops;
    void *_ud;
    char *_prefix_b64, *_end_b64;
    char *_range_body;           /* {"key":..,"range_end":..[,"keys_only":true]} */
    long _range_ms;
    char *_log_prefix, *_read_name, *_watch_name;

    etcd_call_t *_call;          /* the range read or the watch in flight */
    ev_timer _retry;
    uint32_t _backoff_ms;
    unsigned _gen;               /* moves on every start and stop */
    int _down;                   /* the last attempt failed (told once) */
    int64_t _revision;
};

static const json_t *jget(const json_t *obj, const char *key)
{
    return obj && obj->type == JSON_OBJECT ? json_get(obj, key) : NULL;
}

static char *strcopy(const char *s)
{
    return json_strdup(s, strlen(s));
}

/* Decodes one kv object of a range answer or an event and hands it to the
 * owner. Returns 0 or -1 (undecodable, or refused). */
static int kv_deliver(etcd_watch_t *w, const json_t *kv, int del)
{
    const json_t *k = jget(kv, "key"), *v = jget(kv, "value");
    if (!k || k->type != JSON_STRING)
        return -1;
    etcd_watch_kv_t one = {.deleted = del};
    char *key = etcd_b64_decode(k->str, k->len, &one.key_len);
    char *val = del ? NULL
                    : v && v->type == JSON_STRING ? etcd_b64_decode(v->str, v->len, &one.value_len)
                                                  : calloc(1, 1);
    int rc = -1;
    if (key && (del || val)) {
        one.key = key;
        one.value = val;
        rc = w->_ops->kv(w->_ud, &one);
    }
    free(key);
    free(val);
    return rc;
}

/* A range answer into the owner's fresh table. Returns 0 (the revision
 * moved to the answer's) or -1 with err (the old table back). */
static int range_parse(etcd_watch_t *w, const char *body, size_t len, char *err, size_t errlen)
{
    char msg[256];
    json_t *root = json_parse(body, len, msg, sizeof msg);
    const json_t *kvs = jget(root, "kvs");
    int64_t rev = etcd_json_int(jget(jget(root, "header"), "revision"));
    if (!root || rev <= 0 || (kvs && kvs->type != JSON_ARRAY)) {
        snprintf(err, errlen, "unexpected %s answer (%s)", w->_read_name,
                 root ? "no revision" : msg);
        json_free(root);
        return -1;
    }
    unsigned gen = w->_gen;
    w->_ops->range(w->_ud, ETCD_WATCH_RANGE_BEGIN);
    int rc = 0;
    for (size_t i = 0; kvs && i < kvs->n && gen == w->_gen; i++)
        if (kv_deliver(w, kvs->items[i], 0) < 0) {
            snprintf(err, errlen, "unexpected %s answer (a key or value that does not decode, "
                     "or one too many)", w->_read_name);
            rc = -1;
            break;
        }
    if (gen != w->_gen && rc == 0) {
        snprintf(err, errlen, "stopped");
        rc = -1;
    }
    json_free(root);
    w->_ops->range(w->_ud, rc < 0 ? ETCD_WATCH_RANGE_UNDO : ETCD_WATCH_RANGE_KEEP);
    if (rc == 0)
        w->_revision = rev;
    return rc;
}

static void range_begin(etcd_watch_t *w);

/* A range or a watch failed or ended: the owner hears of it once, then the
 * next endpoint after a back-off. */
static void chain_failed(etcd_watch_t *w, const char *what)
{
    w->_call = NULL;
    if (!w->_down) {
        unsigned gen = w->_gen;
        w->_down = 1;
        w->_ops->state(w->_ud, 0, what);
        if (gen != w->_gen)
            return;
    } else {
        log_msg(LOG_DEBUG, "%setcd %s: %s", w->_log_prefix, etcd_client_endpoint(w->_client),
                what);
    }
    etcd_client_failover(w->_client);
    w->_backoff_ms = w->_backoff_ms ? w->_backoff_ms * 2 : ETCD_WATCH_BACKOFF_MIN_MS;
    if (w->_backoff_ms > ETCD_WATCH_BACKOFF_MAX_MS)
        w->_backoff_ms = ETCD_WATCH_BACKOFF_MAX_MS;
    ev_timer_set(&w->_retry, w->_backoff_ms / 1000.0, 0.);
    ev_timer_start(w->_loop, &w->_retry);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    range_begin(t->data);
}

/* One watch message (a line). Returns 1 when it carried events, 0 when
 * not, -1 when the watch must be re-established (an error, canceled,
 * compacted, an event that does not decode or is refused). */
static int watch_message(etcd_watch_t *w, const char *line, size_t len)
{
    char msg[256];
    json_t *root = json_parse(line, len, msg, sizeof msg);
    const json_t *res = jget(root, "result");
    if (!root || !res || jget(root, "error")) {
        log_msg(LOG_WARN, "%setcd %s: unexpected message (%s): re-reading", w->_log_prefix,
                w->_watch_name, root ? "an error or no result" : msg);
        json_free(root);
        return -1;
    }
    const json_t *canceled = jget(res, "canceled");
    if ((canceled && canceled->type == JSON_BOOL && canceled->boolean) ||
        etcd_json_int(jget(res, "compact_revision")) > 0) {
        log_msg(LOG_WARN, "%setcd %s canceled (compacted to revision %lld): re-reading",
                w->_log_prefix, w->_watch_name,
                (long long)etcd_json_int(jget(res, "compact_revision")));
        json_free(root);
        return -1;
    }
    const json_t *events = jget(res, "events");
    unsigned gen = w->_gen;
    int changed = 0, rc = 0;
    for (size_t i = 0; events && events->type == JSON_ARRAY && i < events->n; i++) {
        const json_t *type = jget(events->items[i], "type");
        int del = type && type->type == JSON_STRING && type->len == 6 &&
                  !memcmp(type->str, "DELETE", 6);
        if (kv_deliver(w, jget(events->items[i], "kv"), del) < 0) {
            log_msg(LOG_WARN, "%setcd %s: an event that does not decode: re-reading",
                    w->_log_prefix, w->_watch_name);
            rc = -1;
            break;
        }
        changed = 1;
        if (gen != w->_gen)
            break;
    }
    int64_t rev = etcd_json_int(jget(jget(res, "header"), "revision"));
    if (rc == 0 && changed && gen == w->_gen && rev > w->_revision)
        w->_revision = rev;
    json_free(root);
    return rc < 0 ? -1 : changed;
}

static int on_watch_line(void *ud, const char *line, size_t len)
{
    etcd_watch_t *w = ud;
    unsigned gen = w->_gen;
    int rc = watch_message(w, line, len);
    if (gen != w->_gen)
        return 0; /* stopped from a callback: the call is cancelled already */
    if (rc < 0)
        return -1; /* on_watch_done runs: a re-read */
    w->_ops->applied(w->_ud, w->_revision, rc > 0);
    return 0;
}

static void on_watch_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    etcd_watch_t *w = ud;
    char what[512];
    snprintf(what, sizeof what, "%s lost (%s)", w->_watch_name,
             status == 0 ? "etcd closed it" : err);
    chain_failed(w, what);
}

static void watch_begin(etcd_watch_t *w)
{
    char body[ETCD_WATCH_BODY_MAX], what[128];
    snprintf(body, sizeof body,
             "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
             "\"start_revision\":\"%lld\"}}",
             w->_prefix_b64, w->_end_b64, (long long)w->_revision + 1);
    w->_call = etcd_stream(w->_client, "/v3/watch", body, on_watch_line, on_watch_done, w);
    if (!w->_call) {
        snprintf(what, sizeof what, "cannot set up the %s (out of memory?)", w->_watch_name);
        chain_failed(w, what);
    }
}

static void on_range_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    etcd_watch_t *w = ud;
    char why[512];
    int64_t before = w->_revision;
    unsigned gen = w->_gen;
    w->_call = NULL;
    if (status < 0) {
        snprintf(why, sizeof why, "%s failed (%s)", w->_read_name, err);
        chain_failed(w, why);
        return;
    }
    if (range_parse(w, body, len, why, sizeof why) < 0) {
        if (gen == w->_gen)
            chain_failed(w, why);
        return;
    }
    w->_backoff_ms = 0;
    if (w->_down) {
        w->_down = 0;
        w->_ops->state(w->_ud, 1, NULL);
        if (gen != w->_gen)
            return;
    }
    /* The same revision is the same table. */
    w->_ops->applied(w->_ud, w->_revision, w->_revision != before);
    if (gen == w->_gen)
        watch_begin(w);
}

static void range_begin(etcd_watch_t *w)
{
    w->_call = etcd_call(w->_client, "/v3/kv/range", w->_range_body, w->_range_ms,
                         on_range_done, w);
    if (!w->_call) {
        char what[128];
        snprintf(what, sizeof what, "cannot set up the %s (out of memory?)", w->_read_name);
        chain_failed(w, what);
    }
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

etcd_watch_t *etcd_watch_new(etcd_client_t *c, const etcd_watch_conf_t *conf,
                             const etcd_watch_ops_t *ops, void *ud)
{
    etcd_watch_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->_client = c;
    w->_ops = ops;
    w->_ud = ud;
    w->_range_ms = conf->range_timeout_ms;
    w->_prefix_b64 = etcd_b64_encode(conf->prefix, strlen(conf->prefix));
    w->_end_b64 = etcd_prefix_end_b64(conf->prefix);
    w->_log_prefix = strcopy(conf->log_prefix);
    w->_read_name = strcopy(conf->read_name);
    w->_watch_name = strcopy(conf->watch_name);
    size_t blen = 64 + (w->_prefix_b64 ? strlen(w->_prefix_b64) : 0) +
                  (w->_end_b64 ? strlen(w->_end_b64) : 0);
    w->_range_body = malloc(blen);
    /* The watch's body must hold both prefixes too. */
    if (!w->_prefix_b64 || !w->_end_b64 || !w->_log_prefix || !w->_read_name ||
        !w->_watch_name || !w->_range_body || blen + 64 > ETCD_WATCH_BODY_MAX) {
        etcd_watch_free(w);
        return NULL;
    }
    snprintf(w->_range_body, blen, "{\"key\":\"%s\",\"range_end\":\"%s\"%s}", w->_prefix_b64,
             w->_end_b64, conf->keys_only ? ",\"keys_only\":true" : "");
    ev_init(&w->_retry, on_retry);
    w->_retry.data = w;
    return w;
}

int etcd_watch_read(etcd_watch_t *w, char *err, size_t errlen)
{
    char *body;
    size_t len;
    if (etcd_client_perform(w->_client, "/v3/kv/range", w->_range_body, w->_range_ms, &body,
                            &len, err, errlen) < 0)
        return -1;
    int rc = range_parse(w, body, len, err, errlen);
    free(body);
    return rc;
}

void etcd_watch_start(etcd_watch_t *w, struct ev_loop *loop)
{
    etcd_watch_stop(w);
    w->_loop = loop;
    if (w->_revision > 0)
        watch_begin(w);
    else
        range_begin(w);
}

void etcd_watch_stop(etcd_watch_t *w)
{
    w->_gen++;
    etcd_call_cancel(w->_call);
    w->_call = NULL;
    if (w->_loop)
        ev_timer_stop(w->_loop, &w->_retry);
}

int64_t etcd_watch_revision(const etcd_watch_t *w)
{
    return w->_revision;
}

int etcd_watch_up(const etcd_watch_t *w)
{
    return !w->_down;
}

void etcd_watch_free(etcd_watch_t *w)
{
    if (!w)
        return;
    etcd_watch_stop(w);
    free(w->_prefix_b64);
    free(w->_end_b64);
    free(w->_range_body);
    free(w->_log_prefix);
    free(w->_read_name);
    free(w->_watch_name);
    free(w);
}
