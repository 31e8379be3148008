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
    tunnel_host_done(&s->park);
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
    s->park = (tunnel_host_t)TUNNEL_HOST_INIT(&park_ops, st->env, NULL, "parked");
    s->park.parking = 1;
    list_init(&s->park.tunnels);
    list_push(bucket_of(st, s->token), &s->_link);
    st->count++;
    s->t = t;
    t->session = s;
    if (st->router)
        st->router->set_owner(st->router->ud, s->token, (int)st->router->worker, -1);
    return s;
}

/* The session of token bound to exactly this tenant, kind, region and
 * user, or NULL. */
static session_t *find_bound(session_table_t *st, const uint8_t *token, enum tunnel_kind kind,
                             const char *tenant, const char *region, const char *user,
                             size_t user_len)
{
    list_t *head = bucket_of(st, token), *pos;
    for (pos = head->next; pos != head; pos = pos->next) {
        session_t *s = LIST_ENTRY(pos, session_t, _link);
        if (CRYPTO_memcmp(s->token, token, TOKEN_BYTES) != 0)
            continue;
        /* The token is the secret; the binding makes a leaked token useless
         * to another tenant or user. */
        if (s->kind != kind || strcmp(s->tenant, tenant) != 0 || strcmp(s->region, region) != 0 ||
            strlen(s->user) != user_len || memcmp(s->user, user, user_len) != 0)
            return NULL;
        return s;
    }
    return NULL;
}

session_t *session_find(session_table_t *st, const req_target_t *target)
{
    return find_bound(st, target->token, target->kind, target->tenant->id, target->region->name,
                      target->user, target->user_len);
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
    const session_router_t *r = s->_table->router;
    if (r)
        r->set_owner(r->ud, s->token, -1, (int)r->worker);
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

/* ---- handoff between workers ---------------------------------------------- */

/* One resume asked of another worker: filled by the asker, answered by the
 * owner (s, parcel), freed by the asker when the answer is back. */
typedef struct session_handoff {
    uint8_t token[TOKEN_BYTES];
    enum tunnel_kind kind;
    char tenant[NAME_LEN_MAX + 1];
    char region[NAME_LEN_MAX + 1];
    char user[CRED_USERNAME_MAX + 1];
    size_t user_len;
    unsigned from;      /* the asking worker */
    unsigned owner;     /* the worker asked */
    tunnel_t *t;        /* the waiting tunnel; NULL once freed (the asker's thread only) */
    uint64_t expiry;    /* the resume credential's, unix seconds */
    session_t *s;       /* the owner's answer: the session and the tunnel holding */
    tunnel_t *parcel;   /* its flow, watchers stopped; NULL: none (410) */
    int taken_over;     /* the flow was on a live stream (now sent CLOSE(taken over)) */
    char node[CFG_NODE_ADDRESS_MAX + 1]; /* no flow, but the fleet's node holding it: 421 */
} session_handoff_t;

static void handoff_take(session_table_t *st, void *arg);

/* On the asker's loop: the flow arrived. It joins this table and this
 * loop, then answers the waiting stream, or parks if that stream is gone. */
static void handoff_adopt(session_table_t *st, session_handoff_t *h)
{
    session_t *s = h->s;
    tunnel_t *pt = h->parcel;
    s->_table = st;
    s->park.env = st->env;
    list_push(bucket_of(st, s->token), &s->_link);
    st->count++;
    st->env->counters->tunnels_active++; /* pt's, until it is freed below */
    pt->stats = stats_hold(st->env->stats, pt->tenant, pt->kind);
    ratelimit_rehome(&pt->rl, &st->env->rl);
    log_line_t l;
    if (log_begin(&l, LOG_INFO, "session.handoff")) {
        log_str(&l, "tenant", s->tenant);
        log_u64(&l, "from_worker", h->owner);
        log_u64(&l, "to_worker", st->router->worker);
        log_str(&l, "was", h->taken_over ? "attached" : "parked");
        log_str(&l, "stream", h->t ? "waiting" : "gone");
        log_end(&l);
    }
    if (h->t) {
        tunnel_resume_adopt(h->t, pt, h->expiry, h->taken_over, NULL);
        return;
    }
    /* The stream that asked is gone: the flow waits here for the next
     * resume, as if its stream had been reset on this loop. */
    uint32_t grace = s->park.cfg ? s->park.cfg->limits.resume_grace_ms : 0;
    tunnel_t *parked = st->closed || !grace ? NULL : tunnel_new(&s->park, 0);
    if (parked) {
        tunnel_take_flow(parked, pt, compat_mono_ns() + (uint64_t)grace * UTIL_MS_NS);
        st->env->counters->sessions_parked++;
    }
    tunnel_free(pt); /* without a parked tunnel, its socket closes and s ends */
}

/* On the owner's loop: detach the flow (if the session is still here) and
 * send it, or the miss, back to the asker. */
static void handoff_give(session_table_t *st, void *arg)
{
    session_handoff_t *h = arg;
    session_t *s = find_bound(st, h->token, h->kind, h->tenant, h->region, h->user, h->user_len);
    tunnel_t *old = s ? s->t : NULL;
    tunnel_t *pt = NULL;
    if (old && old->state == TUNNEL_OPEN) {
        /* The parked tunnel's snapshot goes with it (session_park's rule). */
        config_t *cfg = config_ref((config_t *)old->host->cfg);
        config_unref(s->_cfg);
        s->_cfg = cfg;
        s->park.cfg = cfg;
        pt = tunnel_new(&s->park, 0);
    }
    if (pt) {
        int parked = session_parked(s);
        tunnel_take_flow(pt, old, 0);
        /* Nothing of the flow stays on this loop: no watcher, no stats
         * reference, not counted here. */
        ev_io_stop(st->env->loop, &pt->udp_io);
        ev_timer_stop(st->env->loop, &pt->timer);
        stats_release(pt->stats);
        pt->stats = NULL;
        st->env->counters->tunnels_active--;
        if (parked)
            tunnel_free(old); /* no socket and nothing queued any more */
        else
            tunnel_close(old, CLOSE_TAKEN_OVER, "taken over", 0);
        list_remove(&s->_link);
        st->count--;
        st->router->set_owner(st->router->ud, s->token, (int)h->from, -1);
        h->s = s;
        h->parcel = pt;
        h->taken_over = !parked;
    }
    /* Not in this process: the lead, which alone sees the fleet, names the
     * node that holds it (issue 8 §4, the 421). */
    const char *node = !pt && st->peer ? st->peer(st->peer_ud, token_tag(h->token)) : NULL;
    if (node)
        snprintf(h->node, sizeof h->node, "%s", node);
    if (st->router->post(st->router->ud, h->from, handoff_take, h) == 0)
        return;
    /* No memory for the message: the flow stays here, parked. */
    log_msg(LOG_ERROR, "session handoff to worker %u: out of memory", h->from);
    if (pt) {
        list_push(bucket_of(st, s->token), &s->_link);
        st->count++;
        st->env->counters->tunnels_active++;
        pt->stats = stats_hold(st->env->stats, pt->tenant, pt->kind);
        st->router->set_owner(st->router->ud, s->token, (int)st->router->worker, -1);
        tunnel_t *parked = tunnel_new(&s->park, 0);
        if (parked)
            tunnel_take_flow(parked, pt,
                             compat_mono_ns() + (uint64_t)s->park.cfg->limits.resume_grace_ms *
                                                    UTIL_MS_NS);
        tunnel_free(pt);
    }
    /* h and its waiting tunnel belong to the asker: it times out there. */
}

static void handoff_take(session_table_t *st, void *arg)
{
    session_handoff_t *h = arg;
    if (h->t)
        h->t->handoff = NULL;
    if (h->parcel)
        handoff_adopt(st, h);
    else if (h->t)
        tunnel_resume_adopt(h->t, NULL, 0, 0, h->node[0] ? h->node : NULL);
    free(h);
}

int session_fetch(session_table_t *st, tunnel_t *t, const req_target_t *target, uint64_t expiry)
{
    const session_router_t *r = st->router;
    if (!r || target->user_len > CRED_USERNAME_MAX)
        return -1;
    int w = r->owner(r->ud, target->token);
    if ((w >= 0 && (unsigned)w == r->worker) || (w < 0 && (r->worker == 0 || !st->peer_fleet)))
        return -1;
    if (w < 0) {
        /* Another node's token? Only the lead reads the fleet (not this
         * thread's to touch): it answers with the node, or a miss. */
        const config_t *cfg = st->env->cfg ? st->env->cfg : t->host->cfg;
        if (cfg->node.id &&
            token_tag(target->token) == token_node_tag(cfg->node.id, strlen(cfg->node.id)))
            return -1; /* our own tag and no worker has it: gone, 410 */
        w = 0;
    }
    session_handoff_t *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    memcpy(h->token, target->token, TOKEN_BYTES);
    h->kind = target->kind;
    snprintf(h->tenant, sizeof h->tenant, "%s", target->tenant->id);
    snprintf(h->region, sizeof h->region, "%s", target->region->name);
    memcpy(h->user, target->user, target->user_len);
    h->user_len = target->user_len;
    h->from = r->worker;
    h->owner = (unsigned)w;
    h->t = t;
    h->expiry = expiry;
    t->handoff = h;
    if (r->post(r->ud, (unsigned)w, handoff_give, h) < 0) {
        t->handoff = NULL;
        free(h);
        return -1;
    }
    return 0;
}

void session_fetch_cancel(tunnel_t *t)
{
    if (t->handoff)
        t->handoff->t = NULL;
    t->handoff = NULL;
}
