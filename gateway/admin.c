/* admin.c — the admin API (see admin.h and docs/admin.md). */
#include "admin.h"

#include <errno.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "etcd.h"
#include "json.h"
#include "log.h"
#include "metrics.h"

#define METRICS_SLICE (32u * 1024u) /* bytes of /metrics rendered per write */

/* One request: its body, and the state of a write waiting for the store. */
typedef struct admin_req {
    admin_t *admin;
    struct MHD_Connection *conn;
    char *body;
    size_t len;
    int too_large;
    int suspended;   /* waiting for the store's callback */
    int have_answer; /* status and answer are set */
    unsigned status;
    char *answer;    /* JSON text */
    char id[72];     /* the tenant being written */
} admin_req_t;

/* ------------------------------------------------------------------------ */
/* Answers                                                                   */

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, const char *text,
                                 size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"sluiced admin\"");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* {"error": msg[, "revision": rev]} as a malloc'd string. */
static char *error_text(const char *msg, int with_rev, uint64_t rev)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    char *out = NULL;
    if (!g)
        return NULL;
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"error", 5);
    yajl_gen_string(g, (const unsigned char *)msg, strlen(msg));
    if (with_rev) {
        yajl_gen_string(g, (const unsigned char *)"revision", 8);
        yajl_gen_integer(g, (long long)rev);
    }
    yajl_gen_map_close(g);
    const unsigned char *buf;
    size_t n;
    if (yajl_gen_get_buf(g, &buf, &n) == yajl_gen_status_ok)
        out = json_strdup(buf, n);
    yajl_gen_free(g);
    return out;
}

/* A plain-text answer; text is copied, or taken over (malloc'd) with own. */
static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, char *text,
                                 size_t len, int own, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, text, own ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (own)
            free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    char *t = error_text(msg, 0, 0);
    enum MHD_Result rc = t ? send_json(conn, status, t, strlen(t)) : MHD_NO;
    free(t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The operators' endpoints: /metrics, /healthz, /readyz                     */

#define TEXT_PLAIN "text/plain; charset=utf-8"

/* A page being streamed: rendered a slice per write libmicrohttpd asks
 * for (it calls the reader when the socket can take more, from MHD_run on
 * our loop), so a page of many tenants never holds the loop for long. */
typedef struct scrape_io {
    admin_t *admin;
    metrics_scrape_t *m;
    prom_buf_t b;
    size_t off;
    int done;
} scrape_io_t;

static ssize_t scrape_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    scrape_io_t *io = cls;
    if (io->off == io->b.len) {
        if (io->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        io->b.len = io->off = 0;
        int rc = metrics_scrape_next(io->m, &io->b, METRICS_SLICE);
        if (rc < 0) {
            log_msg(LOG_ERROR, "admin: /metrics: out of memory mid-page");
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        io->done = rc == 0;
        if (io->b.len == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = io->b.len - io->off < max ? io->b.len - io->off : max;
    memcpy(buf, io->b.p + io->off, n);
    io->off += n;
    return (ssize_t)n;
}

static void scrape_free(void *cls)
{
    scrape_io_t *io = cls;
    io->admin->_scrapes--;
    metrics_scrape_free(io->m);
    prom_buf_free(&io->b);
    free(io);
}

static enum MHD_Result get_metrics(admin_t *a, struct MHD_Connection *conn)
{
    metrics_info_t info = {.version = "unknown", .store_type = "inline", .store_up = 1};
    if (a->_info)
        a->_info(a->_info_ud, &info);
    /* Each scrape holds a copy of the counters until its page is out. */
    if (a->_scrapes >= ADMIN_SCRAPES_MAX)
        return send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "too many scrapes at once: try again");
    scrape_io_t *io = calloc(1, sizeof *io);
    if (io)
        io->m = metrics_scrape_new(a->_srv, &info);
    if (!io || !io->m) {
        free(io);
        return send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory: try again");
    }
    io->admin = a;
    a->_scrapes++;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, METRICS_SLICE,
                                                               scrape_read, io, scrape_free);
    if (!r) {
        scrape_free(io);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* Answers url when it is one of the operators' endpoints (no token: load
 * balancers and scrapers on the internal network ask them); returns 0 when
 * it is not. */
static int ops_request(admin_t *a, struct MHD_Connection *conn, const char *url,
                       const char *method, enum MHD_Result *rc)
{
    int metrics = !strcmp(url, "/metrics"), healthz = !strcmp(url, "/healthz"),
        readyz = !strcmp(url, "/readyz");
    if (!metrics && !healthz && !readyz)
        return 0;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        *rc = send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
        return 1;
    }
    if (metrics) {
        *rc = get_metrics(a, conn);
    } else if (healthz) {
        *rc = send_text(conn, MHD_HTTP_OK, "ok\n", 3, 0, TEXT_PLAIN);
    } else {
        const char *why = NULL;
        char text[128];
        int ready = server_ready(a->_srv, &why);
        int n = snprintf(text, sizeof text, "%s\n", ready ? "ready" : why);
        *rc = send_text(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text,
                        (size_t)n, 0, TEXT_PLAIN);
    }
    return 1;
}

static void gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* A tenant as the admin API shows it: everything but the secrets' values. */
static void gen_tenant(yajl_gen g, const config_t *cfg, const cfg_tenant_t *t)
{
    yajl_gen_map_open(g);
    gen_str(g, "id");
    gen_str(g, t->id);
    gen_str(g, "enabled_here");
    yajl_gen_bool(g, config_tenant_in_region(t, cfg->region));
    gen_str(g, "regions");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < t->nregions; i++)
        gen_str(g, t->regions[i]);
    yajl_gen_array_close(g);
    gen_str(g, "kinds");
    yajl_gen_array_open(g);
    for (int k = 0; k < TUNNEL_KIND_COUNT; k++)
        if (t->kinds & (1u << k))
            gen_str(g, config_kind_name((enum tunnel_kind)k));
    yajl_gen_array_close(g);
    gen_str(g, "hash");
    gen_str(g, t->hash == CRED_SHA256 ? "sha256" : "sha1");
    gen_str(g, "max_ttl");
    yajl_gen_integer(g, (long long)t->max_ttl);
    gen_str(g, "secrets");
    yajl_gen_integer(g, (long long)t->nsecrets);
    gen_str(g, "limits");
    yajl_gen_map_open(g);
    for (size_t i = 0; i < config_tenant_limit_count(); i++) {
        uint64_t v;
        gen_str(g, config_tenant_limit(i, &t->limits, &v));
        yajl_gen_integer(g, (long long)v);
    }
    yajl_gen_map_close(g);
    gen_str(g, "revision");
    yajl_gen_integer(g, (long long)cfg->tenants_revision);
    yajl_gen_map_close(g);
}

static enum MHD_Result send_gen(struct MHD_Connection *conn, unsigned status, yajl_gen g)
{
    const unsigned char *buf;
    size_t n;
    enum MHD_Result rc = MHD_NO;
    if (yajl_gen_get_buf(g, &buf, &n) == yajl_gen_status_ok)
        rc = send_json(conn, status, (const char *)buf, n);
    yajl_gen_free(g);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Authentication                                                            */

/* The token presented, checked against every configured one in constant
 * time per token (CRYPTO_memcmp), all of them compared so the time does not
 * tell which matched. Returns the token, or NULL with *why set. */
static const cfg_admin_token_t *auth(const config_t *cfg, struct MHD_Connection *conn,
                                     const char **why)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "missing bearer token (Authorization: Bearer TOKEN)";
        return NULL;
    }
    h += 7;
    size_t len = strlen(h);
    const cfg_admin_token_t *found = NULL;
    for (size_t i = 0; i < cfg->admin.ntokens; i++) {
        const cfg_admin_token_t *t = &cfg->admin.tokens[i];
        int eq = t->len == len && CRYPTO_memcmp(t->token, h, len) == 0;
        if (eq && !found)
            found = t;
    }
    if (!found)
        *why = "unknown token";
    return found;
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                     */

static enum MHD_Result get_tenants(admin_t *a, struct MHD_Connection *conn,
                                   const cfg_admin_token_t *tok)
{
    const config_t *cfg = a->_srv->cfg;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (!g)
        return MHD_NO;
    yajl_gen_map_open(g);
    gen_str(g, "region");
    gen_str(g, cfg->region);
    gen_str(g, "store");
    gen_str(g, a->_store                          ? a->_store->ops->type
               : cfg->store.type == CFG_STORE_ETCD ? "etcd"
                                                   : "config");
    gen_str(g, "revision");
    yajl_gen_integer(g, (long long)cfg->tenants_revision);
    gen_str(g, "tenants");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < cfg->ntenants; i++)
        if (!tok->tenant || !strcmp(tok->tenant, cfg->tenants[i].id))
            gen_tenant(g, cfg, &cfg->tenants[i]);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    return send_gen(conn, MHD_HTTP_OK, g);
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */

/* Maps "$.tenants[N].x" (config_retenant's path) to "$.x" (the request's). */
static void map_error(char *err)
{
    const char *p = strstr(err, "$.tenants[");
    if (!p)
        return;
    const char *q = strchr(p, ']');
    if (!q)
        return;
    memmove((char *)p + 1, q + 1, strlen(q + 1) + 1); /* keeps "$" */
}

static int str_in(const json_t *arr, const char *s, size_t len, size_t *at)
{
    for (size_t i = 0; arr && arr->type == JSON_ARRAY && i < arr->n; i++)
        if (arr->items[i]->type == JSON_STRING && arr->items[i]->len == len &&
            !memcmp(arr->items[i]->str, s, len)) {
            if (at)
                *at = i;
            return 1;
        }
    return 0;
}

static void arr_remove(json_t *arr, size_t i)
{
    json_free(arr->items[i]);
    memmove(&arr->items[i], &arr->items[i + 1], (arr->n - i - 1) * sizeof *arr->items);
    arr->n--;
}

/* Applies a PATCH body (docs/admin.md) to a copy of the stored tenant t.
 * Returns 0, or -1 with err naming the body's field. */
static int patch_tenant(const config_t *cfg, json_t *t, const json_t *body, char *err,
                        size_t errlen)
{
    json_t *merge = json_new(JSON_OBJECT, NULL, 0);
    int rc = -1;
    if (!merge) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < body->n; i++) {
        const json_member_t *m = &body->members[i];
        const json_t *v = m->val;
        if (!strcmp(m->key, "revision"))
            continue;
        if (!strcmp(m->key, "kinds") || !strcmp(m->key, "limits") ||
            !strcmp(m->key, "max_ttl") || !strcmp(m->key, "hash")) {
            if (!strcmp(m->key, "limits") && v->type != JSON_OBJECT) {
                snprintf(err, errlen, "$.limits: expected an object");
                goto out;
            }
            if (json_set(merge, m->key, json_copy(v)))
                goto nomem;
            continue;
        }
        int enable = !strcmp(m->key, "enable_region"), disable = !strcmp(m->key, "disable_region");
        int add = !strcmp(m->key, "add_secret"), retire = !strcmp(m->key, "retire_secret");
        if (!(enable || disable || add || retire)) {
            snprintf(err, errlen, "$.%.64s: unknown field (expected revision, enable_region, "
                                  "disable_region, kinds, limits, max_ttl, hash, add_secret, "
                                  "retire_secret)", m->key);
            goto out;
        }
        if (v->type != JSON_STRING || v->len == 0) {
            snprintf(err, errlen, "$.%s: expected a non-empty string", m->key);
            goto out;
        }
        const char *key = enable || disable ? "regions" : "secrets";
        json_t *arr = json_get(t, key);
        if (!arr || arr->type != JSON_ARRAY) {
            if (json_set(t, key, json_new(JSON_ARRAY, NULL, 0)))
                goto nomem;
            arr = json_get(t, key);
        }
        size_t at;
        if (enable && !config_region(cfg, v->str, v->len)) {
            snprintf(err, errlen, "$.enable_region: \"%.64s\" is not a key of the config's $.regions",
                     v->str);
            goto out;
        }
        if ((enable || add) && !str_in(arr, v->str, v->len, NULL)) {
            if (json_push(arr, json_copy(v)))
                goto nomem;
        } else if (disable && str_in(arr, v->str, v->len, &at)) {
            arr_remove(arr, at);
        } else if (retire) {
            if (!str_in(arr, v->str, v->len, &at)) {
                snprintf(err, errlen, "$.retire_secret: not a secret of this tenant");
                goto out;
            }
            if (arr->n == 1) {
                snprintf(err, errlen, "$.retire_secret: the tenant's last secret (add its "
                                      "successor first)");
                goto out;
            }
            arr_remove(arr, at);
        }
    }
    if (json_merge_patch(t, merge))
        goto nomem;
    rc = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
out:
    json_free(merge);
    return rc;
}

static void answer_set(admin_req_t *r, unsigned status, char *text)
{
    r->status = status;
    r->answer = text;
    r->have_answer = 1;
}

/* The store's answer: on success the new document becomes the snapshot. */
static void on_written(void *arg, int status, uint64_t revision, const char *werr)
{
    admin_req_t *r = arg;
    admin_t *a = r->admin;
    char err[1024];
    if (status == STORE_CONFLICT) {
        answer_set(r, MHD_HTTP_CONFLICT,
                   error_text("revision conflict: the tenants changed since you read them; "
                              "read again and retry",
                              1, revision));
    } else if (status != STORE_OK) {
        /* etcd out of reach is a passing state of a service (nothing was
         * written, retry later): 503; a file that cannot be written is 500. */
        int etcd = etcd_store_of(a->_store) != NULL;
        snprintf(err, sizeof err, "tenant store: %s", werr ? werr : "error");
        log_msg(LOG_ERROR, "admin: %s", err);
        answer_set(r, etcd ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR,
                   error_text(err, 0, 0));
    } else {
        int applied;
        if (etcd_store_of(a->_store)) {
            /* The etcd store calls back once its watch has applied the
             * revision (every gateway applies it the same way), or after
             * its bounded wait: nothing to apply here. */
            applied = a->_srv->cfg->tenants_revision >= revision;
            snprintf(err, sizeof err, "not in force here: the watch did not apply it within "
                                      "2 s (it will when it gets it) or refused the table (see "
                                      "the log)");
        } else {
            char *doc = NULL;
            size_t len = 0;
            uint64_t rev = 0;
            config_t *cfg = NULL;
            if (store_read(a->_store, &doc, &len, &rev, err, sizeof err) == STORE_OK)
                cfg = config_retenant(a->_srv->cfg, doc, len, err, sizeof err);
            free(doc);
            applied = cfg && server_reload(a->_srv, cfg, err, sizeof err) == 0;
            config_unref(cfg);
        }
        if (!applied) {
            char msg[1200];
            snprintf(msg, sizeof msg, "written (revision %llu) but not applied: %s",
                     (unsigned long long)revision, err);
            log_msg(LOG_ERROR, "admin: %s", msg);
            answer_set(r, MHD_HTTP_INTERNAL_SERVER_ERROR, error_text(msg, 1, revision));
        } else {
            log_line_t l;
            if (log_begin(&l, LOG_INFO, "tenant.change")) {
                log_str(&l, "source", "admin");
                log_str(&l, "tenant", r->id);
                log_u64(&l, "revision", revision);
                log_str(&l, "store", a->_srv->cfg->store.type == CFG_STORE_ETCD ? "etcd" : "file");
                log_end(&l);
            }
            const config_t *now = a->_srv->cfg;
            const cfg_tenant_t *t = config_tenant(now, r->id, strlen(r->id));
            yajl_gen g = yajl_gen_alloc(NULL);
            if (g && t) {
                gen_tenant(g, now, t);
                const unsigned char *buf;
                size_t n;
                yajl_gen_get_buf(g, &buf, &n);
                answer_set(r, MHD_HTTP_OK, json_strdup(buf, n));
            } else {
                answer_set(r, MHD_HTTP_INTERNAL_SERVER_ERROR, error_text("out of memory", 0, 0));
            }
            if (g)
                yajl_gen_free(g);
        }
    }
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
        ev_timer_stop(a->_loop, &a->_timer);
        ev_timer_set(&a->_timer, 0., 0.);
        ev_timer_start(a->_loop, &a->_timer);
    }
}

static enum MHD_Result patch(admin_t *a, admin_req_t *r, const char *id)
{
    struct MHD_Connection *conn = r->conn;
    const config_t *cfg = a->_srv->cfg;
    char err[1024], msg[256];
    if (!a->_store)
        return send_error(conn, MHD_HTTP_CONFLICT,
                          "the tenants are inline in the config file and read-only here; set "
                          "$.tenant_store to change them through the admin API");
    if (r->too_large)
        return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than 64 KiB");
    json_t *body = json_parse(r->body ? r->body : "", r->len, msg, sizeof msg);
    if (!body || body->type != JSON_OBJECT) {
        snprintf(err, sizeof err, "$: %s", body ? "expected a JSON object" : msg);
        json_free(body);
        return send_error(conn, MHD_HTTP_BAD_REQUEST, err);
    }
    /* The revision the client read: "revision" in the body or If-Match. */
    uint64_t expected = 0;
    const json_t *rv = json_get(body, "revision");
    const char *im = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-Match");
    char *end = NULL;
    if (rv && rv->type == JSON_NUMBER && rv->str[0] != '-' && !strpbrk(rv->str, ".eE"))
        expected = strtoull(rv->str, &end, 10);
    else if (!rv && im)
        expected = strtoull(im + (im[0] == '"'), &end, 10);
    if (!end || end == (rv ? rv->str : im)) {
        json_free(body);
        return send_error(conn, MHD_HTTP_BAD_REQUEST,
                          rv ? "$.revision: expected a non-negative integer"
                             : "$.revision: required (or an If-Match header): the revision you "
                               "read");
    }

    char *doc = NULL;
    size_t len = 0;
    uint64_t rev = 0;
    json_t *root = NULL, *t = NULL;
    enum MHD_Result ret;
    if (store_read(a->_store, &doc, &len, &rev, err, sizeof err) != STORE_OK ||
        !(root = json_parse(doc, len, msg, sizeof msg))) {
        if (root == NULL && doc)
            snprintf(err, sizeof err, "tenant store: %s", msg);
        ret = send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, err);
        goto out;
    }
    json_t *list = json_get(root, "tenants");
    size_t idx = 0;
    for (; list && list->type == JSON_ARRAY && idx < list->n; idx++) {
        const json_t *tid = json_get(list->items[idx], "id");
        if (tid && tid->type == JSON_STRING && !strcmp(tid->str, id))
            break;
    }
    if (!list || list->type != JSON_ARRAY || idx == list->n) {
        ret = send_error(conn, MHD_HTTP_NOT_FOUND, "unknown tenant");
        goto out;
    }
    if (rev != expected) {
        char *txt = error_text("revision conflict: the tenants changed since you read them; "
                               "read again and retry",
                               1, rev);
        ret = txt ? send_json(conn, MHD_HTTP_CONFLICT, txt, strlen(txt)) : MHD_NO;
        free(txt);
        goto out;
    }
    t = list->items[idx]; /* edited in place: root is ours */
    if (patch_tenant(cfg, t, body, err, sizeof err)) {
        ret = send_error(conn, MHD_HTTP_BAD_REQUEST, err);
        goto out;
    }
    /* Validate the whole new document as the gateway would load it. */
    char *cand = json_write(root, &len);
    const etcd_store_t *es = etcd_store_of(a->_store);
    config_t *check = !cand ? NULL
                      : es  ? etcd_store_retenant(es, cand, len, err, sizeof err)
                            : config_retenant(cfg, cand, len, err, sizeof err);
    free(cand);
    if (!check) {
        const char *p = strstr(err, "$.");
        char e2[1024];
        snprintf(e2, sizeof e2, "%s", p ? p : err);
        map_error(e2);
        ret = send_error(conn, MHD_HTTP_BAD_REQUEST, e2);
        goto out;
    }
    config_unref(check);
    char *tj = json_write(t, &len);
    if (!tj) {
        ret = MHD_NO;
        goto out;
    }
    snprintf(r->id, sizeof r->id, "%s", id);
    store_write(a->_store, id, tj, len, expected, on_written, r);
    free(tj);
    if (r->have_answer) {
        ret = send_json(conn, r->status, r->answer ? r->answer : "{}",
                        r->answer ? strlen(r->answer) : 2);
    } else {
        r->suspended = 1; /* an asynchronous store: answered on resume */
        MHD_suspend_connection(conn);
        ret = MHD_YES;
    }
out:
    json_free(root);
    json_free(body);
    free(doc);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* Routing                                                                   */

/* POST /v1/reload: the config file re-read and applied as on SIGHUP; a file
 * that does not load changes nothing and its error is the answer (422). */
static enum MHD_Result post_reload(admin_t *a, struct MHD_Connection *conn,
                                   const cfg_admin_token_t *tok, const char *method)
{
    if (strcmp(method, "POST") != 0)
        return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST /v1/reload");
    if (tok->tenant)
        return send_error(conn, MHD_HTTP_FORBIDDEN,
                          "this token is limited to one tenant; a reload needs an operator's");
    if (!a->_reload)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "no reload here");
    char err[1024];
    if (a->_reload(a->_reload_ud, err, sizeof err) < 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "reload refused, old config kept: %s", err);
        return send_error(conn, MHD_HTTP_UNPROCESSABLE_CONTENT, msg);
    }
    yajl_gen g = yajl_gen_alloc(NULL);
    if (!g)
        return MHD_NO;
    const config_t *cfg = a->_srv->cfg;
    yajl_gen_map_open(g);
    gen_str(g, "reloaded");
    yajl_gen_bool(g, 1);
    gen_str(g, "region");
    gen_str(g, cfg->region);
    gen_str(g, "tenants");
    yajl_gen_integer(g, (long long)cfg->ntenants);
    gen_str(g, "revision");
    yajl_gen_integer(g, (long long)cfg->tenants_revision);
    yajl_gen_map_close(g);
    return send_gen(conn, MHD_HTTP_OK, g);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    admin_t *a = cls;
    admin_req_t *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->admin = a;
        r->conn = conn;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (r->len + *upload_data_size > ADMIN_BODY_MAX) {
            r->too_large = 1;
        } else if (!r->too_large) {
            char *b = realloc(r->body, r->len + *upload_data_size + 1);
            if (!b)
                return MHD_NO;
            memcpy(b + r->len, upload_data, *upload_data_size);
            r->body = b;
            r->len += *upload_data_size;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->have_answer) /* resumed after an asynchronous write */
        return send_json(conn, r->status, r->answer ? r->answer : "{}",
                         r->answer ? strlen(r->answer) : 2);

    enum MHD_Result rc;
    if (ops_request(a, conn, url, method, &rc))
        return rc;
    const config_t *cfg = a->_srv->cfg;
    const char *why = NULL;
    const cfg_admin_token_t *tok = auth(cfg, conn, &why);
    if (!tok)
        return send_error(conn, MHD_HTTP_UNAUTHORIZED, why);

    if (!strcmp(url, "/v1/reload"))
        return post_reload(a, conn, tok, method);
    static const char prefix[] = "/v1/tenants";
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint (try /v1/tenants)");
    const char *rest = url + sizeof prefix - 1;
    int get = !strcmp(method, "GET"), write = !strcmp(method, "PATCH") || !strcmp(method, "PUT");
    if (!rest[0] || !strcmp(rest, "/")) {
        if (!get)
            return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                              "only GET on /v1/tenants; change a tenant with PATCH "
                              "/v1/tenants/{id}");
        return get_tenants(a, conn, tok);
    }
    if (rest[0] != '/')
        return send_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint (try /v1/tenants)");
    const char *id = rest + 1;
    if (tok->tenant && strcmp(tok->tenant, id) != 0)
        return send_error(conn, MHD_HTTP_FORBIDDEN, "this token is limited to another tenant");
    const cfg_tenant_t *t = config_tenant(cfg, id, strlen(id));
    if (!t)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "unknown tenant");
    if (get) {
        yajl_gen g = yajl_gen_alloc(NULL);
        if (!g)
            return MHD_NO;
        gen_tenant(g, cfg, t);
        return send_gen(conn, MHD_HTTP_OK, g);
    }
    if (!write)
        return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET or PATCH");
    return patch(a, r, id);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    admin_req_t *r = *con_cls;
    if (!r)
        return;
    free(r->body);
    free(r->answer);
    free(r);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                  */

static void admin_run(admin_t *a)
{
    MHD_run(a->_mhd);
    ev_timer_stop(a->_loop, &a->_timer);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(a->_mhd, &ms) == MHD_YES) {
        ev_timer_set(&a->_timer, (double)ms / 1000., 0.);
        ev_timer_start(a->_loop, &a->_timer);
    }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    admin_run(w->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    admin_run(w->data);
}

int admin_init(admin_t *a, struct ev_loop *loop, server_t *s, store_t *store, char *err,
               size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->_loop = loop;
    a->_srv = s;
    a->_store = store;
    const cfg_addr_t *la = &s->cfg->admin.listen;
    char name[64];
    config_addr_str((const struct sockaddr *)&la->sa, name, sizeof name);
    int fd = socket(la->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)&la->sa, la->len) < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "admin listen %s: %s", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    a->addrlen = sizeof a->addr;
    getsockname(fd, (struct sockaddr *)&a->addr, &a->addrlen);
    a->_mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
                               on_request, a, MHD_OPTION_LISTEN_SOCKET, fd,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_CONNS_MAX,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_CONN_TIMEOUT_S,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, a, MHD_OPTION_END);
    if (!a->_mhd) {
        snprintf(err, errlen, "admin listen %s: libmicrohttpd did not start", name);
        close(fd);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->_mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0) {
        snprintf(err, errlen, "admin listen %s: libmicrohttpd has no epoll mode", name);
        MHD_stop_daemon(a->_mhd);
        a->_mhd = NULL;
        return -1;
    }
    ev_io_init(&a->_io, on_io, info->epoll_fd, EV_READ);
    a->_io.data = a;
    ev_io_start(loop, &a->_io);
    ev_timer_init(&a->_timer, on_timer, 0., 0.);
    a->_timer.data = a;
    admin_run(a);
    return 0;
}

void admin_set_reload(admin_t *a, admin_reload_fn fn, void *ud)
{
    a->_reload = fn;
    a->_reload_ud = ud;
}

void admin_set_info(admin_t *a, metrics_info_fn fn, void *ud)
{
    a->_info = fn;
    a->_info_ud = ud;
}

void admin_dispose(admin_t *a)
{
    if (!a->_mhd)
        return;
    ev_io_stop(a->_loop, &a->_io);
    ev_timer_stop(a->_loop, &a->_timer);
    MHD_stop_daemon(a->_mhd);
    a->_mhd = NULL;
}
