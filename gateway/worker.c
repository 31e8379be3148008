/* worker.c — see worker.h. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

typedef struct worker worker_t;

/* One message on a worker's queue. A call's message lives on the caller's
 * stack; a post's is allocated and freed by the worker that runs it. */
typedef struct worker_msg {
    struct worker_msg *next;
    void (*fn)(worker_t *w, void *arg);
    void *arg;
    void (*sfn)(session_table_t *st, void *arg); /* instead of fn: a session router's post,
                                                  * run with the worker's session table */
    int post;  /* 1: nobody waits; free it after running */
    int state; /* MSG_QUEUED, MSG_RUNNING, MSG_DONE (under the worker's lock) */
} worker_msg_t;

enum { MSG_QUEUED = 0, MSG_RUNNING, MSG_DONE };

struct worker {
    server_t *srv;             /* the lead's (w[0]), or _own */
    server_t _own;             /* a follower's server */
    session_router_t router;   /* its session table's way to the others */
    struct ev_loop *loop;
    pthread_t thread;
    int thread_started;
    ev_async wake;             /* the queue has something */
    pthread_mutex_t lock;      /* the queue and every message's state */
    pthread_cond_t done;       /* a call's message reached MSG_DONE */
    worker_msg_t *head, *tail;
    workers_t *group;
    unsigned index;
    int idle;                  /* atomic: told the lead it has no connection (draining) */
    int stopping;              /* atomic: workers_stop asked the loop to end */
};

/* The session directory: which worker holds each resumable token. */
typedef struct dir_entry {
    struct dir_entry *next;
    uint8_t token[TOKEN_BYTES];
    int worker;
} dir_entry_t;

#define DIR_BUCKETS 4096u /* power of two */

struct workers {
    server_t *lead;
    ev_async lead_wake;        /* a follower went idle */
    size_t n;                  /* followers: w[1..n]; w[0] is the lead's queue */
    worker_t *w;               /* n + 1 of them */
    pthread_mutex_t dir_lock;
    dir_entry_t *dir[DIR_BUCKETS];
};

/* ---- the follower's side ------------------------------------------------ */

/* Runs every queued message, in order. */
static void wake_run(worker_t *w)
{
    for (;;) {
        pthread_mutex_lock(&w->lock);
        worker_msg_t *m = w->head;
        if (m) {
            w->head = m->next;
            if (!w->head)
                w->tail = NULL;
            m->state = MSG_RUNNING;
        }
        pthread_mutex_unlock(&w->lock);
        if (!m)
            return;
        if (m->sfn)
            m->sfn(&w->srv->sessions, m->arg);
        else
            m->fn(w, m->arg);
        if (m->post) {
            free(m);
            continue;
        }
        pthread_mutex_lock(&w->lock);
        m->state = MSG_DONE;
        pthread_cond_broadcast(&w->done);
        pthread_mutex_unlock(&w->lock);
    }
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    worker_t *w = container_of(a, worker_t, wake);
    if (__atomic_load_n(&w->stopping, __ATOMIC_ACQUIRE)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    wake_run(w);
}

static void *thread_main(void *arg)
{
    worker_t *w = arg;
    ev_run(w->loop, 0);
    return NULL;
}

/* ---- the lead's side ------------------------------------------------------ */

static void push(worker_t *w, worker_msg_t *m)
{
    m->next = NULL;
    m->state = MSG_QUEUED;
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = m;
    else
        w->head = m;
    w->tail = m;
    pthread_mutex_unlock(&w->lock);
    ev_async_send(w->loop, &w->wake);
}

/* Runs fn(w, arg) on w's thread and waits for it. Returns 0, or -1 when w
 * did not start it within WORKER_CALL_TIMEOUT_S (it then never will). */
static int call(worker_t *w, void (*fn)(worker_t *, void *), void *arg)
{
    worker_msg_t m = {.fn = fn, .arg = arg};
    push(w, &m);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WORKER_CALL_TIMEOUT_S;
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    while (m.state != MSG_DONE) {
        if (m.state == MSG_QUEUED &&
            pthread_cond_timedwait(&w->done, &w->lock, &until) == ETIMEDOUT &&
            m.state == MSG_QUEUED) {
            /* Withdrawn: the follower will not see it. */
            worker_msg_t **pp = &w->head, *prev = NULL;
            while (*pp && *pp != &m) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            if (*pp) {
                *pp = m.next;
                if (w->tail == &m)
                    w->tail = prev;
            }
            rc = -1;
            break;
        }
        if (m.state == MSG_RUNNING) /* started: it finishes, whatever the time */
            pthread_cond_wait(&w->done, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    if (rc < 0)
        log_msg(LOG_ERROR, "worker %u: no answer within %d s", w->index, WORKER_CALL_TIMEOUT_S);
    return rc;
}

static int post(worker_t *w, void (*fn)(worker_t *, void *), void *arg)
{
    worker_msg_t *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    m->fn = fn;
    m->arg = arg;
    m->post = 1;
    push(w, m);
    return 0;
}

static void lead_wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    workers_t *g = container_of(a, workers_t, lead_wake);
    server_followers_idle(g->lead);
}

/* ---- the session router (session.h) -------------------------------------- */

static uint32_t dir_hash(const uint8_t *token)
{
    uint32_t h;
    /* Random bytes past the node tag: any four are a good hash. */
    memcpy(&h, token + TOKEN_TAG_BYTES, sizeof h);
    return h & (DIR_BUCKETS - 1);
}

static int dir_owner(void *ud, const uint8_t *token)
{
    workers_t *g = ud;
    int w = -1;
    pthread_mutex_lock(&g->dir_lock);
    for (dir_entry_t *e = g->dir[dir_hash(token)]; e; e = e->next) {
        if (!memcmp(e->token, token, TOKEN_BYTES)) {
            w = e->worker;
            break;
        }
    }
    pthread_mutex_unlock(&g->dir_lock);
    return w;
}

static void dir_set_owner(void *ud, const uint8_t *token, int worker, int expect)
{
    workers_t *g = ud;
    pthread_mutex_lock(&g->dir_lock);
    dir_entry_t **pp = &g->dir[dir_hash(token)];
    while (*pp && memcmp((*pp)->token, token, TOKEN_BYTES))
        pp = &(*pp)->next;
    if (worker >= 0) {
        dir_entry_t *e = *pp;
        if (!e && (e = calloc(1, sizeof *e)) != NULL) {
            memcpy(e->token, token, TOKEN_BYTES);
            e->next = g->dir[dir_hash(token)];
            g->dir[dir_hash(token)] = e;
        }
        if (e) /* out of memory: the session is only resumable on its own worker */
            e->worker = worker;
    } else if (*pp && (expect < 0 || (*pp)->worker == expect)) {
        dir_entry_t *e = *pp;
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&g->dir_lock);
}

static int router_post(void *ud, unsigned worker, void (*fn)(session_table_t *, void *),
                       void *arg)
{
    workers_t *g = ud;
    worker_msg_t *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    m->sfn = fn;
    m->arg = arg;
    m->post = 1;
    push(&g->w[worker], m);
    return 0;
}

/* ---- start and stop -------------------------------------------------------- */

/* Runs what is left on every queue once no loop runs any more (a flow in
 * transit between two workers lands somewhere, to be closed with its
 * server). Bounded: a handoff takes two messages. */
static void queues_drain(workers_t *g)
{
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i <= g->n; i++) {
            worker_t *w = &g->w[i];
            if (w->loop)
                wake_run(w);
        }
    }
}

/* Undoes what start did for follower w (its thread already joined, or never
 * started). */
static void follower_dispose(worker_t *w)
{
    w->srv->sessions.router = NULL;
    server_dispose(w->srv);
    ev_async_stop(w->loop, &w->wake);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->lock);
}

static void worker_queue_init(workers_t *g, worker_t *w, unsigned index, struct ev_loop *loop)
{
    w->group = g;
    w->index = index;
    w->loop = loop;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->done, NULL);
    ev_async_init(&w->wake, wake_cb);
    ev_async_start(loop, &w->wake);
    w->router = (session_router_t){.ud = g, .worker = index, .owner = dir_owner,
                                   .set_owner = dir_set_owner, .post = router_post};
}

workers_t *workers_start(server_t *lead, config_t *cfg, char *err, size_t errlen)
{
    workers_t *g = calloc(1, sizeof *g);
    size_t n = cfg->workers > 1 ? cfg->workers - 1 : 0;
    if (!g || !(g->w = calloc(n + 1, sizeof *g->w))) {
        free(g);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->lead = lead;
    pthread_mutex_init(&g->dir_lock, NULL);
    ev_async_init(&g->lead_wake, lead_wake_cb);
    ev_async_start(lead->loop, &g->lead_wake);
    worker_queue_init(g, &g->w[0], 0, lead->loop);
    g->w[0].srv = lead;
    lead->env.loops = (uint32_t)(n + 1); /* before any follower runs: read on each loop */
    if (n)
        lead->sessions.router = &g->w[0].router;
    /* Followers take no signal: SIGTERM, SIGINT and SIGHUP are the main
     * loop's (main.c); a thread inherits the mask it is created with. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (size_t i = 1; i <= n; i++) {
        worker_t *w = &g->w[i];
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        if (!loop) {
            snprintf(err, errlen, "worker %zu: cannot create an event loop", i);
            goto fail;
        }
        worker_queue_init(g, w, (unsigned)i, loop);
        w->srv = &w->_own;
        char why[512];
        if (server_init_follower(w->srv, loop, cfg, lead, w->index, why, sizeof why) < 0) {
            snprintf(err, errlen, "worker %u: %s", w->index, why);
            ev_async_stop(loop, &w->wake);
            ev_loop_destroy(loop);
            w->loop = NULL;
            pthread_cond_destroy(&w->done);
            pthread_mutex_destroy(&w->lock);
            goto fail;
        }
        w->srv->group = g;
        w->srv->sessions.router = &w->router;
        w->srv->sessions.peer_fleet = lead->sessions.peer != NULL;
        w->srv->env.loops = (uint32_t)(n + 1);
        g->n = i;
        int rc = pthread_create(&w->thread, NULL, thread_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "worker %u: cannot start a thread: %s", w->index, strerror(rc));
            goto fail;
        }
        w->thread_started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    lead->group = g;
    return g;
fail:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    workers_stop(g);
    return NULL;
}

void workers_stop(workers_t *g)
{
    if (!g)
        return;
    for (size_t i = 1; i <= g->n; i++) {
        if (g->w[i].thread_started) {
            __atomic_store_n(&g->w[i].stopping, 1, __ATOMIC_RELEASE);
            ev_async_send(g->w[i].loop, &g->w[i].wake);
        }
    }
    for (size_t i = 1; i <= g->n; i++)
        if (g->w[i].thread_started)
            pthread_join(g->w[i].thread, NULL);
    /* Every loop has stopped: this thread alone runs what is still queued. */
    for (size_t i = 1; i <= g->n; i++)
        __atomic_store_n(&g->w[i].stopping, 0, __ATOMIC_RELAXED);
    queues_drain(g);
    for (size_t i = 1; i <= g->n; i++)
        follower_dispose(&g->w[i]);
    /* The lead's queue: its table forgets the directory, which goes now. */
    worker_t *l = &g->w[0];
    l->srv->sessions.router = NULL;
    ev_async_stop(l->loop, &l->wake);
    pthread_cond_destroy(&l->done);
    pthread_mutex_destroy(&l->lock);
    ev_async_stop(g->lead->loop, &g->lead_wake);
    if (g->lead->group == g)
        g->lead->group = NULL;
    for (size_t b = 0; b < DIR_BUCKETS; b++) {
        while (g->dir[b]) {
            dir_entry_t *e = g->dir[b];
            g->dir[b] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&g->dir_lock);
    free(g->w);
    free(g);
}

size_t workers_count(const workers_t *g)
{
    return g ? g->n + 1 : 1;
}

typedef struct reload_arg {
    config_t *cfg;
    int rc;
    size_t closed;
    char err[512];
} reload_arg_t;

static void reload_fn(worker_t *w, void *arg)
{
    reload_arg_t *a = arg;
    a->rc = server_reload_follow(w->srv, a->cfg, &a->closed, a->err, sizeof a->err);
}

int workers_reload(workers_t *g, config_t *cfg, size_t *closed, char *err, size_t errlen)
{
    int rc = 0;
    *closed = 0;
    for (size_t i = 1; i <= g->n; i++) {
        reload_arg_t a = {.cfg = cfg, .rc = -1};
        snprintf(a.err, sizeof a.err, "no answer");
        if (call(&g->w[i], reload_fn, &a) < 0 || a.rc < 0) {
            log_msg(LOG_ERROR, "worker %u: reload failed: %s", g->w[i].index, a.err);
            if (rc == 0)
                snprintf(err, errlen, "worker %u: %s", g->w[i].index, a.err);
            rc = -1;
        }
        *closed += a.closed;
    }
    return rc;
}

static void tenants_fn(worker_t *w, void *arg)
{
    server_tenants_apply(w->srv);
}

void workers_tenants_apply(workers_t *g)
{
    for (size_t i = 1; i <= g->n; i++)
        call(&g->w[i], tenants_fn, NULL);
}

static void drain_fn(worker_t *w, void *arg)
{
    server_drain_follow(w->srv, (enum drain_phase)(intptr_t)arg);
}

void workers_drain_phase(workers_t *g, enum drain_phase phase)
{
    for (size_t i = 1; i <= g->n; i++)
        if (post(&g->w[i], drain_fn, (void *)(intptr_t)phase) < 0)
            log_msg(LOG_ERROR, "worker %u: out of memory for the drain", g->w[i].index);
}

void workers_idle(workers_t *g, unsigned index)
{
    __atomic_store_n(&g->w[index].idle, 1, __ATOMIC_RELEASE);
    ev_async_send(g->lead->loop, &g->lead_wake);
}

int workers_followers_idle(const workers_t *g)
{
    for (size_t i = 1; i <= g->n; i++)
        if (!__atomic_load_n(&g->w[i].idle, __ATOMIC_ACQUIRE))
            return 0;
    return 1;
}

typedef struct collect_arg {
    server_counters_t counters;
    stats_entry_t *v;
    size_t n;
    int oom;
} collect_arg_t;

/* On the follower's thread: a copy of its counters and entries, taken
 * between two of its events (so one consistent moment of that worker). */
static void collect_fn(worker_t *w, void *arg)
{
    collect_arg_t *a = arg;
    const server_t *s = w->srv;
    a->counters = s->counters;
    if (!s->stats.n)
        return;
    if (!(a->v = malloc(s->stats.n * sizeof *a->v))) {
        a->oom = 1;
        return;
    }
    for (size_t i = 0; i < s->stats.n; i++)
        a->v[i] = *s->stats.v[i];
    a->n = s->stats.n;
}

int workers_collect(workers_t *g, server_counters_t *sum, stats_entry_t **v, size_t *n,
                    size_t *cap, uint64_t *accepted, uint64_t *open)
{
    int rc = 0;
    for (size_t i = 1; i <= g->n; i++) {
        collect_arg_t *a = calloc(1, sizeof *a); /* a server_counters_t is large */
        if (!a)
            return -1;
        if (call(&g->w[i], collect_fn, a) < 0 || a->oom) {
            free(a->v);
            free(a);
            rc = -1;
            continue;
        }
        server_counters_add(sum, &a->counters);
        accepted[i] = a->counters.conns_accepted;
        open[i] = a->counters.conns_active;
        if (a->n && *n + a->n > *cap) {
            size_t want = (*n + a->n) * 2;
            stats_entry_t *nv = realloc(*v, want * sizeof *nv);
            if (!nv) {
                free(a->v);
                free(a);
                return -1;
            }
            *v = nv;
            *cap = want;
        }
        if (a->n)
            memcpy(*v + *n, a->v, a->n * sizeof *a->v);
        *n += a->n;
        free(a->v);
        free(a);
    }
    return rc;
}

/* ---- sums ------------------------------------------------------------------ */

static void u64_add(uint64_t *dst, const uint64_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

void server_counters_add(server_counters_t *dst, const server_counters_t *src)
{
    /* Every field before `tunnel` is a uint64_t counter or gauge. */
    _Static_assert(offsetof(server_counters_t, tunnel) % sizeof(uint64_t) == 0,
                   "server_counters_t: uint64_t fields first");
    uint64_t last = dst->reload_last_ok > src->reload_last_ok ? dst->reload_last_ok
                                                              : src->reload_last_ok;
    u64_add((uint64_t *)dst, (const uint64_t *)src,
            offsetof(server_counters_t, tunnel) / sizeof(uint64_t));
    dst->reload_last_ok = last;
    stats_traffic_add(&dst->tunnel, &src->tunnel);
    prom_hist_add(&dst->up_residence, &src->up_residence);
    prom_hist_add(&dst->down_residence, &src->down_residence);
    prom_hist_add(&dst->rtt, &src->rtt);
}
