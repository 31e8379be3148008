/* session.c — see session.h. */
#include "session.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static list_t *bucket_of(session_table_t *st, const uint8_t token[TOKEN_BYTES])
{
    uint32_t h;
    /* Random bytes: any four are a good hash, but not the node tag's. */
    memcpy(&h, token + TOKEN_TAG_BYTES, sizeof h);
    return &st->buckets[h & (SESSION_BUCKETS - 1)];
}

void session_table_init(session_table_t *st, tunnel_env_t *env)
{
    memset(st, 0, sizeof *st);
    st->env = env;
    for (size_t i = 0; i < SESSION_BUCKETS; i++)
        list_init(&st->buckets[i]);
    env->sessions = st;
}

static void session_free(session_t *s)
{
    config_unref(s->_cfg);
    free(s);
}

/* ---- the parking host: a parked tunnel has no stream ---------------------- */

static session_t *session_of_host(const tunnel_host_t *host)
{
    return container_of(host, session_t, park);
}

static int park_respond(tunnel_t *t, int status)
{
    return -1; /* never called: a parked tunnel has no request */
}

static void park_wake(tunnel_t *t)
{
}

/* The grace period is over, or the parked flow failed (backend unreachable):
 * nobody is there to take a CLOSE, so the tunnel goes at once. */
static void park_reset(tunnel_t *t, int clean)
{
    tunnel_free(t);
}

static void park_opened(tunnel_t *t)
{
}

static void park_gone(tunnel_t *t, int was_open)
{
    session_t *s = session_of_host(t->host);
    if (s->_ended && list_empty(&s->park.tunnels))
        session_free(s);
}

static void park_refused(tunnel_t *t, int status)
{
}

static const tunnel_host_ops_t park_ops = {
    .respond = park_respond,
    .wake = park_wake,
    .reset = park_reset,
    .opened = park_opened,
    .gone = park_gone,
    .refused = park_refused,
};

/* ---- table ------------------------------------------------------------------ */

session_t *session_new(session_table_t *st, tunnel_t *t, const req_target_t *target)
{
    session_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (RAND_bytes(s->token, TOKEN_BYTES) != 1 || target->user_len >= sizeof s->user) {
        free(s);
        return NULL;
    }
    const char *node = t->host->cfg ? t->host->cfg->node.id : NULL;
    if (node) /* issue 8 §4: the token names its node */
        token_set_tag(s->token, token_node_tag(node, strlen(node)));
    token_encode(s->token, s->text);
    s->_table = st;
    s->kind = target->kind;
    snprintf(s->tenant, sizeof s->tenant, "%s", target->tenant->id);
    snprintf(s->region, sizeof s->region, "%s", target->region->name);
    memcpy(s->user, target->user, target->user_len);
    s->user[target->user_len] = '\0';
    s->park = (tunnel_host_t){.ops = &park_ops, .env = st->env, .peer = "parked", .parking = 1};
    list_init(&s->park.tunnels);
    list_push(bucket_of(st, s->token), &s->_link);
    st->count++;
    s->t = t;
    t->session = s;
    return s;
}

session_t *session_find(session_table_t *st, const req_target_t *target)
{
    list_t *head = bucket_of(st, target->token), *pos;
    for (pos = head->next; pos != head; pos = pos->next) {
        session_t *s = LIST_ENTRY(pos, session_t, _link);
        if (CRYPTO_memcmp(s->token, target->token, TOKEN_BYTES) != 0)
            continue;
        /* The token is the secret; the binding makes a leaked token useless
         * to another tenant or user. */
        if (s->kind != target->kind || strcmp(s->tenant, target->tenant->id) != 0 ||
            strcmp(s->region, target->region->name) != 0 ||
            strlen(s->user) != target->user_len ||
            memcmp(s->user, target->user, target->user_len) != 0)
            return NULL;
        return s;
    }
    return NULL;
}

const char *session_redirect(const session_table_t *st, const config_t *cfg,
                             const req_target_t *target)
{
    if (!st->peer)
        return NULL;
    uint32_t tag = token_tag(target->token);
    /* Our own tag: the session was ours and is gone (410), never a loop. */
    if (cfg->node.id && tag == token_node_tag(cfg->node.id, strlen(cfg->node.id)))
        return NULL;
    return st->peer(st->peer_ud, tag);
}

int session_parked(const session_t *s)
{
    return s->t && s->t->host == &s->park;
}

int session_park(session_t *s)
{
    session_table_t *st = s->_table;
    tunnel_t *from = s->t;
    if (st->closed || !from || session_parked(s))
        return -1;
    uint32_t grace = from->host->cfg->limits.resume_grace_ms;
    if (grace == 0)
        return -1;
    /* The parked tunnel keeps the snapshot its flow was opened under. */
    config_t *cfg = config_ref((config_t *)from->host->cfg);
    config_unref(s->_cfg);
    s->_cfg = cfg;
    s->park.cfg = cfg;
    tunnel_t *pt = tunnel_new(&s->park, 0);
    if (!pt)
        return -1;
    tunnel_take_flow(pt, from, compat_mono_ns() + (uint64_t)grace * UTIL_MS_NS);
    st->env->counters->sessions_parked++;
    return 0;
}

void session_end(session_t *s)
{
    if (s->_ended)
        return;
    s->_ended = 1;
    s->t = NULL;
    list_remove(&s->_link);
    s->_table->count--;
    if (list_empty(&s->park.tunnels))
        session_free(s);
}

void session_table_dispose(session_table_t *st)
{
    if (!st->env)
        return;
    st->closed = 1;
    for (size_t i = 0; i < SESSION_BUCKETS; i++) {
        while (!list_empty(&st->buckets[i])) {
            session_t *s = LIST_ENTRY(st->buckets[i].next, session_t, _link);
            if (session_parked(s)) {
                tunnel_free(s->t); /* closes the socket: the session ends and is freed */
            } else {
                /* Still attached (its connection outlives the table): it
                 * just stops being resumable. */
                if (s->t)
                    s->t->session = NULL;
                session_end(s);
            }
        }
    }
    st->env->sessions = NULL;
    st->env = NULL;
}
