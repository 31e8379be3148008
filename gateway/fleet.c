/*
 * fleet.c — this gateway's lease and member key in etcd, and the count of its
 * region's live gateways (see fleet.h).
 *
 * Two independent chains of calls on the fleet's own etcd_client_t:
 *  - the lease: grant -> put the member key -> keep-alive every TTL/3 (the
 *    tick timer). A keep-alive answered with no TTL means etcd let the lease
 *    expire (it was unreachable for longer than the TTL): grant and put again.
 *  - the members: range read of the region's directory -> watch from the
 *    next revision, re-read with back-off when lost: an etcd_watch_t
 *    (etcd_watch.h), as etcd.c's for the tenants.
 * Either failing leaves N as it was: the share a gateway enforces changes
 * only on evidence that the fleet changed.
 */
#include "fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd_client.h"
#include "etcd_watch.h"
#include "../proto/token.h"
#include "json.h"
#include "log.h"

#define FLEET_RANGE_MS 5000L
#define FLEET_REVOKE_MS 1000L

struct fleet {
    etcd_client_t *client;
    struct ev_loop *loop;
    fleet_share_fn share;
    void *ud;
    char *id;                 /* node id */
    char *key;                /* <members_prefix><region>/<id> */
    size_t dirlen;            /* the directory's length in key */
    char *region;
    char *key_b64;            /* base64 of key */
    char *value_b64;          /* base64 of {"id":...} */
    uint32_t ttl_s;           /* as configured */

    /* the lease chain */
    etcd_call_t *lease_call;
    int64_t lease;            /* 0: none (grant next) */
    int registered;           /* the key is put under lease */
    int lease_down;           /* the last lease call failed (logged once) */
    ev_timer tick;

    /* the members chain */
    etcd_watch_t *members;
    fleet_set_t set;
    fleet_set_t old;          /* set aside while a range answer is read */
    uint32_t n;

    int left;
};

/* ------------------------------------------------------------------------ */
/* Pure parts                                                                */

int fleet_member_id(const char *dir, size_t dirlen, const char *key, size_t keylen,
                    const char **id)
{
    if (keylen <= dirlen || memcmp(key, dir, dirlen))
        return -1;
    size_t len = keylen - dirlen;
    const char *p = key + dirlen;
    if (len > FLEET_NODE_ID_MAX || memchr(p, '/', len) || memchr(p, '\0', len))
        return -1;
    *id = p;
    return (int)len;
}

static const json_t *jget_pure(const json_t *obj, const char *key)
{
    return obj && obj->type == JSON_OBJECT ? json_get(obj, key) : NULL;
}

/* Index of id, or -(insertion point) - 1. */
static long set_find(const fleet_set_t *s, const char *id, size_t len)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = s->ids[mid];
        size_t mlen = strlen(m);
        int r = memcmp(m, id, mlen < len ? mlen : len);
        if (r == 0)
            r = mlen < len ? -1 : mlen > len;
        if (r == 0)
            return (long)mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

int fleet_set_put(fleet_set_t *s, const char *id, size_t len, const char *addr, size_t alen)
{
    long at = set_find(s, id, len);
    char *acopy = alen ? json_strdup(addr, alen) : NULL;
    if (alen && !acopy)
        return -1;
    if (at >= 0) { /* known: its address may have changed */
        free(s->addrs[at]);
        s->addrs[at] = acopy;
        return 0;
    }
    if (s->n >= FLEET_MEMBERS_MAX) {
        free(acopy);
        return -1;
    }
    char *copy = json_strdup(id, len);
    char **ids = copy ? realloc(s->ids, (s->n + 1) * sizeof *s->ids) : NULL;
    if (ids)
        s->ids = ids;
    char **addrs = ids ? realloc(s->addrs, (s->n + 1) * sizeof *s->addrs) : NULL;
    if (addrs)
        s->addrs = addrs;
    uint32_t *tags = addrs ? realloc(s->tags, (s->n + 1) * sizeof *s->tags) : NULL;
    if (!tags) { /* the arrays that grew keep n entries in use: nothing to undo */
        free(copy);
        free(acopy);
        return -1;
    }
    s->tags = tags;
    size_t pos = (size_t)(-at - 1), tail = s->n - pos;
    memmove(&s->ids[pos + 1], &s->ids[pos], tail * sizeof *s->ids);
    memmove(&s->addrs[pos + 1], &s->addrs[pos], tail * sizeof *s->addrs);
    memmove(&s->tags[pos + 1], &s->tags[pos], tail * sizeof *s->tags);
    s->ids[pos] = copy;
    s->addrs[pos] = acopy;
    s->tags[pos] = token_node_tag(id, len);
    s->n++;
    return 1;
}

int fleet_set_update(fleet_set_t *s, const char *id, size_t len, int put)
{
    if (put)
        return set_find(s, id, len) >= 0 ? 0 : fleet_set_put(s, id, len, NULL, 0);
    long at = set_find(s, id, len);
    if (at < 0)
        return 0;
    size_t tail = s->n - (size_t)at - 1;
    free(s->ids[at]);
    free(s->addrs[at]);
    memmove(&s->ids[at], &s->ids[at + 1], tail * sizeof *s->ids);
    memmove(&s->addrs[at], &s->addrs[at + 1], tail * sizeof *s->addrs);
    memmove(&s->tags[at], &s->tags[at + 1], tail * sizeof *s->tags);
    s->n--;
    return 1;
}

const char *fleet_set_address(const fleet_set_t *s, uint32_t tag, const char *self)
{
    const char *found = NULL;
    int hits = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->tags[i] != tag || strcmp(s->ids[i], self) == 0)
            continue;
        found = s->addrs[i];
        hits++;
    }
    return hits == 1 ? found : NULL;
}

int fleet_member_address(const char *value, size_t len, char *out, size_t cap)
{
    char msg[128];
    json_t *root = json_parse(value, len, msg, sizeof msg);
    const json_t *a = jget_pure(root, "address");
    int rc = -1;
    if (!root || root->type != JSON_OBJECT)
        goto done;
    if (!a) {
        rc = 0;
        goto done;
    }
    if (a->type != JSON_STRING || a->len == 0 || a->len > CFG_NODE_ADDRESS_MAX ||
        a->len >= cap || !memchr(a->str, ':', a->len))
        goto done;
    for (size_t i = 0; i < a->len; i++) {
        char ch = a->str[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']'))
            goto done;
    }
    memcpy(out, a->str, a->len);
    out[a->len] = '\0';
    rc = (int)a->len;
done:
    json_free(root);
    return rc;
}

uint32_t fleet_set_count(const fleet_set_t *s, const char *self)
{
    size_t n = s->n + (set_find(s, self, strlen(self)) < 0);
    return n ? (uint32_t)n : 1u;
}

void fleet_set_clear(fleet_set_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->ids[i]);
        free(s->addrs[i]);
    }
    free(s->ids);
    free(s->addrs);
    free(s->tags);
    *s = (fleet_set_t){0};
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static const json_t *jget(const json_t *obj, const char *key)
{
    return obj && obj->type == JSON_OBJECT ? json_get(obj, key) : NULL;
}

/* The first line of a body (a streaming endpoint answered in one piece). */
static json_t *parse_first(const char *body, size_t len, char *msg, size_t msglen)
{
    const char *nl = memchr(body, '\n', len);
    return json_parse(body, nl ? (size_t)(nl - body) : len, msg, msglen);
}

static void count_members(fleet_t *f)
{
    uint32_t n = fleet_set_count(&f->set, f->id);
    if (n == f->n)
        return;
    f->n = n;
    f->share(f->ud, n);
}

/* ------------------------------------------------------------------------ */
/* The lease chain                                                           */

static void lease_failed(fleet_t *f, const char *what, const char *err)
{
    if (!f->lease_down)
        log_msg(LOG_WARN, "fleet: etcd %s: %s (%s); keeping %u live gateways, retrying",
                etcd_client_endpoint(f->client), what, err, f->n);
    f->lease_down = 1;
    etcd_client_failover(f->client);
}

static void lease_ok(fleet_t *f)
{
    if (f->lease_down)
        log_msg(LOG_INFO, "fleet: etcd %s: lease calls answered again",
                etcd_client_endpoint(f->client));
    f->lease_down = 0;
}

static void grant_begin(fleet_t *f);

static void on_put_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    fleet_t *f = ud;
    f->lease_call = NULL;
    if (status < 0) { /* the lease may be gone too: a new one next tick */
        f->lease = 0;
        lease_failed(f, "member key not written", err);
        return;
    }
    lease_ok(f);
    f->registered = 1;
    log_msg(LOG_INFO, "fleet: registered %s under lease %lld", f->key, (long long)f->lease);
}

static void on_grant_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    fleet_t *f = ud;
    char msg[256];
    f->lease_call = NULL;
    if (status < 0) {
        lease_failed(f, "lease grant failed", err);
        return;
    }
    json_t *root = json_parse(body, len, msg, sizeof msg);
    int64_t id = etcd_json_int(jget(root, "ID"));
    int64_t ttl = etcd_json_int(jget(root, "TTL"));
    const char *why = root ? "no ID or TTL" : msg;
    json_free(root);
    if (id == 0 || ttl <= 0) {
        lease_failed(f, "lease grant refused", why);
        return;
    }
    f->lease = id;
    /* etcd may raise a short TTL to its minimum: keep-alive on what it granted. */
    double every = (double)ttl / 3.0;
    if (every != f->tick.repeat) {
        ev_timer_stop(f->loop, &f->tick);
        ev_timer_set(&f->tick, every, every);
        ev_timer_start(f->loop, &f->tick);
    }
    char body_put[1024];
    snprintf(body_put, sizeof body_put, "{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%lld\"}",
             f->key_b64, f->value_b64, (long long)id);
    f->lease_call = etcd_call(f->client, "/v3/kv/put", body_put, (long)(every * 1000),
                              on_put_done, f);
}

static void grant_begin(fleet_t *f)
{
    char body[64];
    f->registered = 0;
    snprintf(body, sizeof body, "{\"TTL\":\"%u\"}", f->ttl_s);
    f->lease_call = etcd_call(f->client, "/v3/lease/grant", body,
                              (long)(f->tick.repeat * 1000), on_grant_done, f);
}

static void on_keepalive_done(void *ud, int status, const char *body, size_t len,
                              const char *err)
{
    fleet_t *f = ud;
    char msg[256];
    f->lease_call = NULL;
    if (status < 0) {
        lease_failed(f, "lease keep-alive failed", err);
        return;
    }
    json_t *root = parse_first(body, len, msg, sizeof msg);
    const json_t *res = jget(root, "result");
    int64_t ttl = etcd_json_int(jget(res, "TTL"));
    const char *why = root ? "no result" : msg;
    json_free(root);
    if (!res) {
        lease_failed(f, "unexpected keep-alive answer", why);
        return;
    }
    lease_ok(f);
    if (ttl > 0)
        return;
    /* etcd no longer knows the lease: it expired while we could not reach
     * it, and our key went with it. Register again at once. */
    log_msg(LOG_WARN, "fleet: lease %lld expired; registering %s again", (long long)f->lease,
            f->key);
    f->lease = 0;
    grant_begin(f);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    fleet_t *f = w->data;
    if (f->lease_call)
        return; /* still waiting (every call times out within a tick) */
    if (!f->lease || !f->registered) {
        if (f->lease && !f->registered) /* granted, not put: a fresh start */
            f->lease = 0;
        grant_begin(f);
        return;
    }
    char body[64];
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", (long long)f->lease);
    f->lease_call = etcd_call(f->client, "/v3/lease/keepalive", body,
                              (long)(f->tick.repeat * 1000), on_keepalive_done, f);
}

/* ------------------------------------------------------------------------ */
/* The members chain                                                         */

/* A range answer is atomic: one that does not decode keeps the old set. */
static void on_members_range(void *ud, etcd_watch_range_t step)
{
    fleet_t *f = ud;
    if (step == ETCD_WATCH_RANGE_BEGIN) {
        f->old = f->set;
        f->set = (fleet_set_t){0};
        return;
    }
    if (step == ETCD_WATCH_RANGE_KEEP) {
        fleet_set_clear(&f->old);
    } else {
        fleet_set_clear(&f->set);
        f->set = f->old;
    }
    f->old = (fleet_set_t){0};
}

/* A member's key put or deleted. Keys under the directory that are not a
 * member's are ignored. Returns 0, or -1 (out of memory, or the set full). */
static int on_member(void *ud, const etcd_watch_kv_t *kv)
{
    fleet_t *f = ud;
    const char *id;
    int idlen = fleet_member_id(f->key, f->dirlen, kv->key, kv->key_len, &id);
    if (idlen < 0)
        return 0;
    if (kv->deleted)
        return fleet_set_update(&f->set, id, (size_t)idlen, 0) < 0 ? -1 : 0;
    /* A value that is not ours still counts the member, without an address. */
    char addr[CFG_NODE_ADDRESS_MAX + 1];
    int alen = kv->value ? fleet_member_address(kv->value, kv->value_len, addr, sizeof addr) : 0;
    int rc = fleet_set_put(&f->set, id, (size_t)idlen, addr, alen > 0 ? (size_t)alen : 0);
    return rc < 0 ? -1 : 0;
}

static void on_members_applied(void *ud, int64_t rev, int changed)
{
    count_members(ud);
}

static void on_members_state(void *ud, int up, const char *why)
{
    fleet_t *f = ud;
    if (up)
        log_msg(LOG_INFO, "fleet: etcd %s: members read again at revision %lld",
                etcd_client_endpoint(f->client), (long long)etcd_watch_revision(f->members));
    else
        log_msg(LOG_WARN, "fleet: etcd %s: %s; keeping %u live gateways, retrying",
                etcd_client_endpoint(f->client), why, f->n);
}

static const etcd_watch_ops_t members_ops = {on_members_range, on_member, on_members_applied,
                                             on_members_state};

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

static char *default_id(void)
{
    char host[256] = "", out[FLEET_NODE_ID_MAX + 1];
    if (gethostname(host, sizeof host - 1) < 0 || !host[0])
        snprintf(host, sizeof host, "sluiced");
    /* A hostname is [A-Za-z0-9.-]; anything else would not make a key. */
    for (char *p = host; *p; p++)
        if (*p == '/')
            *p = '_';
    snprintf(out, sizeof out, "%.100s-%ld", host, (long)getpid());
    return json_strdup(out, strlen(out));
}

fleet_t *fleet_start(const config_t *cfg, struct ev_loop *loop, fleet_share_fn share, void *ud,
                     char *err, size_t errlen)
{
    fleet_t *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->loop = loop;
    f->share = share;
    f->ud = ud;
    f->n = 1;
    f->ttl_s = cfg->store.lease_ttl_s;
    f->id = cfg->node.id ? json_strdup(cfg->node.id, strlen(cfg->node.id)) : default_id();
    f->region = json_strdup(cfg->region, strlen(cfg->region));
    f->client = etcd_client_new((const char *const *)cfg->store.endpoints,
                                cfg->store.nendpoints);
    size_t klen = strlen(cfg->store.members_prefix) + strlen(cfg->region) + 1 +
                  (f->id ? strlen(f->id) : 0);
    f->key = malloc(klen + 1);
    if (!f->id || !f->region || !f->client || !f->key)
        goto nomem;
    snprintf(f->key, klen + 1, "%s%s/", cfg->store.members_prefix, cfg->region);
    size_t dirlen = f->dirlen = strlen(f->key);
    const etcd_watch_conf_t wc = {.prefix = f->key, .keys_only = 0, /* values: addresses */
                                  .range_timeout_ms = FLEET_RANGE_MS, .log_prefix = "fleet: ",
                                  .read_name = "members read", .watch_name = "members watch"};
    f->members = etcd_watch_new(f->client, &wc, &members_ops, f);
    strcat(f->key, f->id);
    f->key_b64 = etcd_b64_encode(f->key, klen);
    char value[FLEET_NODE_ID_MAX + CFG_NODE_ADDRESS_MAX + 64];
    /* Ids and addresses need no JSON escapes (config_tenant.c checks both). */
    if (cfg->node.address)
        snprintf(value, sizeof value, "{\"id\":\"%s\",\"address\":\"%s\"}", f->id,
                 cfg->node.address);
    else
        snprintf(value, sizeof value, "{\"id\":\"%s\"}", f->id);
    f->value_b64 = etcd_b64_encode(value, strlen(value));
    if (!f->members || !f->key_b64 || !f->value_b64)
        goto nomem;
    if (etcd_client_attach(f->client, loop) < 0)
        goto nomem;
    double every = f->ttl_s / 3.0;
    ev_timer_init(&f->tick, on_tick, every, every);
    f->tick.data = f;
    ev_timer_start(loop, &f->tick);
    log_msg(LOG_INFO, "fleet: node %s in region %s, members under %.*s, lease TTL %u s", f->id,
            f->region, (int)dirlen, f->key, f->ttl_s);
    grant_begin(f);
    etcd_watch_start(f->members, loop); /* a range read first */
    return f;
nomem:
    snprintf(err, errlen, "fleet: out of memory (or libcurl cannot start)");
    fleet_free(f);
    return NULL;
}

const char *fleet_peer_address(void *ud, uint32_t tag)
{
    fleet_t *f = ud;
    return fleet_set_address(&f->set, tag, f->id);
}

const char *fleet_node_id(const fleet_t *f)
{
    return f->id;
}

uint32_t fleet_members(const fleet_t *f)
{
    return f->n;
}

void fleet_leave(fleet_t *f)
{
    if (!f || f->left)
        return;
    f->left = 1;
    if (f->loop)
        ev_timer_stop(f->loop, &f->tick);
    etcd_call_cancel(f->lease_call);
    f->lease_call = NULL;
    if (f->members)
        etcd_watch_stop(f->members);
    if (!f->lease || !f->client)
        return;
    char body[64], why[256];
    char *out = NULL;
    size_t outlen;
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", (long long)f->lease);
    if (etcd_client_perform(f->client, "/v3/lease/revoke", body, FLEET_REVOKE_MS, &out, &outlen,
                            why, sizeof why) == 0)
        log_msg(LOG_INFO, "fleet: lease %lld revoked: %s left the fleet", (long long)f->lease,
                f->key);
    else
        log_msg(LOG_WARN, "fleet: lease %lld not revoked (%s): %s goes after the TTL",
                (long long)f->lease, why, f->key);
    free(out);
    f->lease = 0;
}

void fleet_free(fleet_t *f)
{
    if (!f)
        return;
    fleet_leave(f);
    etcd_watch_free(f->members);
    etcd_client_free(f->client);
    fleet_set_clear(&f->set);
    free(f->id);
    free(f->key);
    free(f->region);
    free(f->key_b64);
    free(f->value_b64);
    free(f);
}
