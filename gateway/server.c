/* server.c — see server.h. */
#include "server.h"

#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "notify.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#define ACCEPTS_PER_EVENT 64
/* Connections we ended keep reading for up to LINGER_S so that our last
 * bytes (the GOAWAY that says why) are not lost to a reset; at most
 * LINGER_MAX per loop at once (linger.h). */
#define LINGER_MAX 256
#define LINGER_S 1.0
#define LISTEN_BACKLOG 511
#define ACCEPT_PAUSE_S 0.1 /* after EMFILE/ENFILE, so the loop does not spin */
#define RELOAD_LOG_CAP 512  /* the listen= list of the "config reloaded" line */

static void listeners_set(server_t *s, int on)
{
    for (size_t i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i].fd < 0)
            continue;
        if (on)
            ev_io_start(s->loop, &s->listeners[i].io);
        else
            ev_io_stop(s->loop, &s->listeners[i].io);
    }
}

/* Drain: the listening sockets close, so a new connection is refused by the
 * kernel (RST) rather than left in the backlog unanswered. */
static void listeners_close(server_t *s)
{
    for (size_t i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i].fd < 0)
            continue;
        ev_io_stop(s->loop, &s->listeners[i].io);
        close(s->listeners[i].fd);
        s->listeners[i].fd = -1;
    }
}

static void accept_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_t *s = container_of(w, server_t, accept_pause);
    if (s->drain_phase < DRAIN_GOAWAY)
        listeners_set(s, 1);
}

/* Once per iteration, before the loop blocks: write what every connection
 * produced (one write per connection however many packets it queued), then
 * free what was closed, and give the next iteration its handshake budget. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    server_t *s = container_of(w, server_t, prepare);
    s->hs_ns = 0;
    while (s->flush) {
        conn_t *c = s->flush;
        s->flush = c->_flush_next;
        c->in_flush = 0;
        conn_flush(c);
    }
    while (s->dead) {
        conn_t *c = s->dead;
        s->dead = c->_dead_next;
        conn_free(c);
    }
}

/* Memory returned after load. Connections and tunnels that come and go
 * leave the heap fragmented: OpenSSL's and nghttp2's allocations sit between
 * free chunks, so glibc cannot shrink the heap from its top and the RSS stays
 * at its peak (6,000 tunnels came and went: 51-105 MB resident, 0.7 MB in
 * use). malloc_trim(0) gives every free page back, wherever it is; it walks
 * the whole heap and holds the loop meanwhile (bench_mem, --verbose: 0.3-1.7
 * ms after 300 idle connections released their buffers, 8-16 ms once 10,000
 * tunnels had left a 90 MB heap). It runs from this timer, never on the
 * packet path, and only when there is something to give back:
 * the load (connections + tunnels) fell to half of its peak since the last
 * trim, by at least TRIM_MIN_DROP, or at least TRIM_MIN_RELEASED idle
 * connections released their TLS buffers (conn_release_idle) and the last
 * trim is TRIM_RELEASED_GAP_NS old: connections that wake every few seconds
 * (keepalive PINGs) release again and again, and the heap walk must not
 * follow them every second. */
#define TRIM_CHECK_S 1.0
#define TRIM_MIN_DROP 64
#define TRIM_MIN_RELEASED 128
#define TRIM_RELEASED_GAP_NS (5000ull * UTIL_MS_NS) /* ull: 5e9 overflows unsigned */

static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_t *s = container_of(w, server_t, trim);
    uint64_t load = s->counters.conns_active + s->counters.tunnels_active;
    if (load > s->trim_peak)
        s->trim_peak = load;
    int fell = load * 2 <= s->trim_peak && s->trim_peak - load >= TRIM_MIN_DROP;
    uint64_t t0 = compat_mono_ns();
    if (!fell && (s->trim_released < TRIM_MIN_RELEASED ||
                  (s->trim_last && t0 - s->trim_last < TRIM_RELEASED_GAP_NS)))
        return;
    s->trim_last = t0;
    if (fell)
        pool_trim(&s->env.readers);
    malloc_trim(0);
    log_line_t l;
    if (log_begin(&l, LOG_DEBUG, "memory.trim")) {
        log_u64(&l, "load", load);
        log_u64(&l, "peak", s->trim_peak);
        log_u64(&l, "released", s->trim_released);
        log_u64(&l, "took_us", (compat_mono_ns() - t0) / 1000);
        log_end(&l);
    }
    s->trim_peak = load;
    s->trim_released = 0;
}

void server_memory_released(server_t *s)
{
    s->trim_released++;
}

/* A burst of suppressed lines followed by quiet is told when its window
 * ends, not only when the same kind of event next happens. */
static void log_flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_t *s = container_of(w, server_t, log_flush);
    log_limits_flush(&s->logs, compat_mono_ns());
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    listener_t *l = container_of(w, listener_t, io);
    server_t *s = l->srv;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Rate-limited: at the limit this repeats every pause. */
                log_limited(&s->logs.conn, compat_mono_ns(), LOG_WARN,
                            "accept: %s; pausing accepts", strerror(errno));
                listeners_set(s, 0);
                ev_timer_set(&s->accept_pause, ACCEPT_PAUSE_S, 0.);
                ev_timer_start(loop, &s->accept_pause);
            }
            return; /* EAGAIN, or a connection that died in the backlog */
        }
        const cfg_limits_t *lim = &s->cfg->limits;
        if (s->counters.conns_active >= tunnel_env_share(&s->env, lim->max_connections)) {
            s->counters.conns_refused++;
            close(fd);
            continue;
        }
        /* One source cannot take everyone's slots: a cap on its connections
         * that have no tunnel yet, and on its rate of new ones. Behind a
         * PROXY protocol listener the source is the client the header names
         * (conn.c), not the balancer. */
        srclimit_key_t key = {0};
        int rc = l->proxy_protocol
                     ? SRCLIMIT_OK
                     : srclimit_admit(&s->sources, (struct sockaddr *)&peer, len,
                                      lim->max_pending_per_source, lim->handshakes_per_source_s,
                                      compat_mono_ns(), &key);
        if (rc != SRCLIMIT_OK) {
            s->counters.conns_refused++;
            if (rc == SRCLIMIT_RATE || rc == SRCLIMIT_PENDING || rc == SRCLIMIT_FULL)
                s->counters.conns_refused_source[-rc - 1]++;
            if (log_limit_take(&s->logs.conn, compat_mono_ns(), LOG_INFO)) {
                char name[64];
                log_msg(LOG_INFO, "conn %s: refused at accept: source over its limit (%s)",
                        config_addr_str((struct sockaddr *)&peer, name, sizeof name),
                        srclimit_rc_name(rc));
            }
            close(fd);
            continue;
        }
        /* Real time: never hold a small frame back for Nagle. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Unacknowledged data older than this ends the connection in the
         * kernel too (RFC 5482): a vanished peer does not pin buffers. */
        unsigned int uto = s->cfg->limits.write_stall_ms;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);
        conn_t *c = conn_new(s, fd, (struct sockaddr *)&peer, len, key);
        if (c && l->proxy_protocol)
            conn_expect_proxy(c);
    }
}

/* Opens listener i of cfg: at its configured address, or for a follower at
 * the address the lead's listener i is bound to (its port 0 resolved), so
 * that every worker's socket joins one SO_REUSEPORT group. */
static int listener_open(server_t *s, listener_t *l, const cfg_addr_t *a, size_t i, char *err,
                         size_t errlen)
{
    char name[64];
    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;
    socklen_t salen = a->len;
    if (s->lead) {
        sa = (const struct sockaddr *)&s->lead->listeners[i].addr;
        salen = s->lead->listeners[i].addrlen;
    }
    config_addr_str(sa, name, sizeof name);
    l->srv = s;
    l->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        goto fail;
    int one = 1;
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Every worker's socket for this address: the kernel hashes each new
     * connection to one of them (socket(7), SO_REUSEPORT). */
    if (s->reuseport && setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (sa->sa_family == AF_INET6)
        setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    l->addrlen = sizeof l->addr;
    if (bind(l->fd, sa, salen) < 0 || listen(l->fd, LISTEN_BACKLOG) < 0 ||
        getsockname(l->fd, (struct sockaddr *)&l->addr, &l->addrlen) < 0)
        goto fail;
    ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
    l->proxy_protocol = a->proxy_protocol;
    return 0;
fail:
    snprintf(err, errlen, "listen %s: %s", name, strerror(errno));
    return -1;
}

/* server_init and server_init_follower: lead is NULL for the former. */
static int server_setup(server_t *s, struct ev_loop *loop, config_t *cfg, server_t *lead,
                        unsigned index, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    list_init(&s->conns);
    s->loop = loop;
    s->cfg = config_ref(cfg);
    s->echo.fd = -1;
    s->lead = lead;
    s->worker = index;
    s->reuseport = lead ? 1u : cfg->workers > 1;
    ev_init(&s->accept_pause, accept_resume_cb);
    ev_prepare_init(&s->prepare, prepare_cb);
    ev_prepare_start(loop, &s->prepare);
    s->logs = (log_limits_t)LOG_LIMITS_INIT;
    ev_timer_init(&s->log_flush, log_flush_cb, LOG_LIMITS_WINDOW_S / 2.0,
                  LOG_LIMITS_WINDOW_S / 2.0);
    ev_timer_start(loop, &s->log_flush);
    ev_timer_init(&s->trim, trim_cb, TRIM_CHECK_S, TRIM_CHECK_S);
    ev_timer_start(loop, &s->trim);
    s->env = (tunnel_env_t){.loop = loop, .counters = &s->counters, .logs = &s->logs,
                            .stats = &s->stats, .cfg = cfg};
    pool_init(&s->env.readers, 0, TUNNEL_READERS_KEPT);
    linger_init(&s->linger, loop, LINGER_MAX, LINGER_S);
    session_table_init(&s->sessions, &s->env);
    if (lead) {
        /* One per-source table and one tenant count for the process. */
        srclimit_view(&s->sources, &lead->sources);
        ratelimit_table_view(&s->env.rl, &lead->env.rl, index);
        SSL_CTX_up_ref(lead->ssl_ctx); /* shared: OpenSSL locks what SSL_new touches */
        s->ssl_ctx = lead->ssl_ctx;
    } else {
        if (srclimit_init(&s->sources, SRCLIMIT_DEFAULT_ENTRIES) < 0 ||
            (cfg->workers > 1 && srclimit_lock_init(&s->sources) < 0)) {
            snprintf(err, errlen, "per-source table: %s", strerror(errno));
            goto fail;
        }
        if (cfg->workers > 1 && ratelimit_table_lock_init(&s->env.rl, cfg->workers) < 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        s->ssl_ctx = tls_server_ctx(cfg->cert_file, cfg->key_file, err, errlen);
        if (!s->ssl_ctx)
            goto fail;
    }
    if (conn_h2_setup(&s->h2_cbs, &s->h2_opt) < 0 ||
        !(s->env.udp_buf = malloc((size_t)TUNNEL_UDP_BATCH * TUNNEL_UDP_BUF))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->listeners = calloc(cfg->nlisten, sizeof *s->listeners);
    if (!s->listeners) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->nlisten; i++)
        s->listeners[i].fd = -1;
    s->nlisteners = cfg->nlisten;
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (listener_open(s, &s->listeners[i], &cfg->listen[i], i, err, errlen) < 0)
            goto fail;
    if (lead && lead->echo.fd >= 0) { /* one echo socket, the lead's: its address only */
        s->echo.addr = lead->echo.addr;
        s->echo.addrlen = lead->echo.addrlen;
        s->env.echo = (const struct sockaddr *)&s->echo.addr;
        s->env.echo_len = s->echo.addrlen;
    }
    if (!lead && cfg->has_echo &&
        echo_start(&s->echo, loop, (const struct sockaddr *)&cfg->echo.sa, cfg->echo.len, err,
                   errlen) < 0)
        goto fail;
    if (s->echo.fd >= 0) {
        s->env.echo = (const struct sockaddr *)&s->echo.addr;
        s->env.echo_len = s->echo.addrlen;
    }
    if (backend_table_init(&s->backends, loop, cfg, s->env.echo, s->env.echo_len, err,
                           errlen) < 0)
        goto fail;
    s->env.backends = &s->backends;
    listeners_set(s, 1);
    return 0;
fail:
    server_dispose(s);
    return -1;
}

int server_init(server_t *s, struct ev_loop *loop, config_t *cfg, char *err, size_t errlen)
{
    return server_setup(s, loop, cfg, NULL, 0, err, errlen);
}

int server_init_follower(server_t *s, struct ev_loop *loop, config_t *cfg, server_t *lead,
                         unsigned index, char *err, size_t errlen)
{
    return server_setup(s, loop, cfg, lead, index, err, errlen);
}

/* ---- reload ---------------------------------------------------------------- */

/* The same configured listen address: family, address and port (0 included,
 * so "127.0.0.1:0" kept in a new config keeps its socket and its port). */
static int listen_addr_equal(const cfg_addr_t *a, const cfg_addr_t *b)
{
    const struct sockaddr *x = (const struct sockaddr *)&a->sa;
    const struct sockaddr *y = (const struct sockaddr *)&b->sa;
    if (x->sa_family != y->sa_family)
        return 0;
    if (x->sa_family == AF_INET) {
        const struct sockaddr_in *p = (const void *)x, *q = (const void *)y;
        return p->sin_port == q->sin_port && p->sin_addr.s_addr == q->sin_addr.s_addr;
    }
    if (x->sa_family == AF_INET6) {
        const struct sockaddr_in6 *p = (const void *)x, *q = (const void *)y;
        return p->sin6_port == q->sin6_port && p->sin6_scope_id == q->sin6_scope_id &&
               memcmp(&p->sin6_addr, &q->sin6_addr, sizeof p->sin6_addr) == 0;
    }
    return a->len == b->len && memcmp(x, y, a->len) == 0;
}

/* May tunnel t go on under cfg's tenant table? Its tenant must still exist,
 * be enabled in this gateway's region, and allow its kind (the checks
 * request_route makes of a new request). */
/* The tenant as cfg has it, when it still allows t (enabled in this region,
 * for t's kind); NULL otherwise. */
static const cfg_tenant_t *tenant_allowing(const config_t *cfg, const tunnel_t *t)
{
    const cfg_tenant_t *ten = config_tenant(cfg, t->tenant, strlen(t->tenant));
    return ten && (ten->kinds & (1u << t->kind)) && config_tenant_in_region(ten, cfg->region)
               ? ten
               : NULL;
}

size_t server_tenants_apply(server_t *s)
{
    size_t closed = 0;
    uint64_t now = compat_mono_ns();
    const cfg_tenant_t *ten;
    list_t *pos, *tmp, *tpos, *ttmp;
    list_for_each_safe(pos, tmp, &s->conns) {
        conn_t *c = LIST_ENTRY(pos, conn_t, _link);
        list_for_each_safe(tpos, ttmp, &c->host.tunnels) {
            tunnel_t *t = LIST_ENTRY(tpos, tunnel_t, _link);
            if (t->state != TUNNEL_OPEN)
                continue;
            if ((ten = tenant_allowing(s->cfg, t)) != NULL) {
                ratelimit_apply(&t->rl, &ten->limits, now); /* the tenant's new figures */
                continue;
            }
            /* Closed, not reset: a closing tunnel's flow ends with its
             * socket, so it is never parked for a resume. */
            tunnel_close(t, CLOSE_TENANT_DISABLED, "tenant disabled", 0);
            closed++;
        }
    }
    /* Parked flows have no stream to take a CLOSE: they go at once. */
    for (size_t i = 0; i < SESSION_BUCKETS; i++) {
        list_for_each_safe(pos, tmp, &s->sessions.buckets[i]) {
            session_t *ss = LIST_ENTRY(pos, session_t, _link);
            tunnel_t *t = ss->t;
            if (!t || !session_parked(ss) || t->state != TUNNEL_OPEN)
                continue;
            if ((ten = tenant_allowing(s->cfg, t)) != NULL) {
                ratelimit_apply(&t->rl, &ten->limits, now);
                continue;
            }
            tunnel_close(t, CLOSE_TENANT_DISABLED, "tenant disabled", 0); /* ends ss */
            t->host->ops->reset(t, 0);                                    /* frees t */
            closed++;
        }
    }
    stats_prune(&s->stats, s->cfg); /* a tenant that left goes with its last tunnel */
    return closed;
}

void server_share_set(server_t *s, uint32_t n)
{
    uint32_t was = ratelimit_get_share(&s->env.rl);
    ratelimit_set_share(&s->env.rl, n); /* the lead's table: every worker's views see it */
    if (ratelimit_get_share(&s->env.rl) == was)
        return;
    server_tenants_apply(s); /* s->cfg is unchanged: it only re-applies the figures */
    if (s->group)
        workers_tenants_apply(s->group);
    log_msg(LOG_INFO, "fleet: %u live gateways in region %s: tenant limits shared %u ways",
            ratelimit_get_share(&s->env.rl), s->cfg->region, ratelimit_get_share(&s->env.rl));
}

/* What a reload changed, for its log line. */
typedef struct reload_note {
    size_t kept, opened, removed; /* listeners */
    size_t closed;                /* tunnels closed by server_tenants_apply */
} reload_note_t;

static int reload_swap(server_t *s, config_t *cfg, reload_note_t *note, char *err,
                       size_t errlen)
{
    if (s->draining) {
        snprintf(err, errlen, "shutting down: reload refused");
        return -1;
    }
    const config_t *old = s->cfg;
    listener_t *ls = NULL;
    int echo_started = 0;
    SSL_CTX *ctx = NULL;
    if (s->lead) { /* the lead's new context, loaded a moment ago */
        SSL_CTX_up_ref(s->lead->ssl_ctx);
        ctx = s->lead->ssl_ctx;
    } else if (!(ctx = tls_server_ctx(cfg->cert_file, cfg->key_file, err, errlen))) {
        return -1;
    }
    if (!s->lead && cfg->has_echo && s->echo.fd < 0) {
        if (echo_start(&s->echo, s->loop, (const struct sockaddr *)&cfg->echo.sa, cfg->echo.len,
                       err, errlen) < 0)
            goto fail;
        echo_started = 1;
    }
    if (s->lead && s->lead->echo.fd >= 0 && !s->echo.addrlen) {
        s->echo.addr = s->lead->echo.addr; /* the lead started the echo for this snapshot */
        s->echo.addrlen = s->lead->echo.addrlen;
    }
    /* New listeners are bound before anything changes; an unchanged one is
     * matched to its old socket (taken[j] marks it). */
    ls = calloc(cfg->nlisten, sizeof *ls);
    unsigned char *taken = calloc(s->nlisteners + 1, 1);
    size_t *from = calloc(cfg->nlisten + 1, sizeof *from);
    if (!ls || !taken || !from) {
        free(taken);
        free(from);
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    size_t kept = 0, opened = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        ls[i].fd = -1;
        from[i] = SIZE_MAX;
        for (size_t j = 0; j < s->nlisteners && j < old->nlisten; j++) {
            if (!taken[j] && s->listeners[j].fd >= 0 &&
                listen_addr_equal(&cfg->listen[i], &old->listen[j])) {
                taken[j] = 1;
                from[i] = j;
                break;
            }
        }
    }
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (from[i] != SIZE_MAX)
            continue;
        if (listener_open(s, &ls[i], &cfg->listen[i], i, err, errlen) < 0) {
            free(taken);
            free(from);
            goto fail;
        }
        opened++;
    }

    /* The backends' health table follows the new pools; an address in both
     * keeps its state. The last step that can fail. */
    if (backend_table_apply(&s->backends, cfg,
                            cfg->has_echo ? (const struct sockaddr *)&s->echo.addr : NULL,
                            cfg->has_echo ? s->echo.addrlen : 0, err, errlen) < 0) {
        free(taken);
        free(from);
        goto fail;
    }

    /* Nothing can fail from here on. */
    listeners_set(s, 0);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (from[i] == SIZE_MAX)
            continue;
        /* The watcher is embedded: re-initialised at its new place. */
        const listener_t *o = &s->listeners[from[i]];
        ls[i].srv = s;
        ls[i].fd = o->fd;
        ls[i].addr = o->addr;
        ls[i].addrlen = o->addrlen;
        ls[i].proxy_protocol = cfg->listen[i].proxy_protocol; /* a reload may switch it */
        ev_io_init(&ls[i].io, accept_cb, ls[i].fd, EV_READ);
        kept++;
    }
    size_t removed = 0;
    for (size_t j = 0; j < s->nlisteners; j++) {
        if (!taken[j] && s->listeners[j].fd >= 0) {
            close(s->listeners[j].fd);
            removed++;
        }
    }
    free(taken);
    free(from);
    free(s->listeners);
    s->listeners = ls;
    s->nlisteners = cfg->nlisten;
    if (!ev_is_active(&s->accept_pause))
        listeners_set(s, 1);

    if (s->lead && !s->env.echo && s->echo.addrlen) {
        s->env.echo = (const struct sockaddr *)&s->echo.addr;
        s->env.echo_len = s->echo.addrlen;
    } else if (echo_started) {
        s->env.echo = (const struct sockaddr *)&s->echo.addr;
        s->env.echo_len = s->echo.addrlen;
    } else if (!s->lead && cfg->has_echo && old->has_echo &&
               !listen_addr_equal(&cfg->echo, &old->echo)) {
        log_msg(LOG_WARN, "reload: the built-in echo address does not change until a restart");
    }
    SSL_CTX_free(s->ssl_ctx);
    s->ssl_ctx = ctx;
    config_t *prev = s->cfg;
    s->cfg = config_ref(cfg);
    s->env.cfg = s->cfg;
    config_unref(prev); /* connections that started under it hold their own */
    *note = (reload_note_t){.kept = kept, .opened = opened, .removed = removed,
                            .closed = server_tenants_apply(s)};
    return 0;
fail:
    if (ls) {
        for (size_t i = 0; i < cfg->nlisten; i++)
            if (ls[i].fd >= 0)
                close(ls[i].fd); /* only new sockets: kept ones are not moved yet */
        free(ls);
    }
    if (echo_started)
        echo_stop(&s->echo, s->loop);
    SSL_CTX_free(ctx);
    return -1;
}

/* One line for the whole process: the listeners as the lead has them, the
 * tunnels closed on every loop. */
static void reload_log(const server_t *s, const reload_note_t *n)
{
    char list[RELOAD_LOG_CAP], name[64];
    size_t off = 0;
    list[0] = '\0';
    for (size_t i = 0; i < s->nlisteners && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? " " : "",
                                config_addr_str((const struct sockaddr *)&s->listeners[i].addr,
                                                name, sizeof name));
    log_line_t l;
    if (log_begin(&l, LOG_INFO, "config.reloaded")) {
        log_str(&l, "region", s->cfg->region);
        log_u64(&l, "tenants", s->cfg->ntenants);
        log_u64(&l, "revision", s->cfg->tenants_revision);
        log_str(&l, "listen", list);
        log_u64(&l, "listeners_kept", n->kept);
        log_u64(&l, "listeners_opened", n->opened);
        log_u64(&l, "listeners_closed", n->removed);
        log_u64(&l, "tunnels_closed", n->closed);
        log_end(&l);
    }
}

int server_reload(server_t *s, config_t *cfg, char *err, size_t errlen)
{
    reload_note_t note;
    size_t closed_elsewhere = 0;
    if (reload_swap(s, cfg, &note, err, errlen) < 0 ||
        (s->group && workers_reload(s->group, cfg, &closed_elsewhere, err, errlen) < 0)) {
        s->counters.reloads_failed++;
        return -1;
    }
    note.closed += closed_elsewhere;
    reload_log(s, &note);
    s->counters.reloads_ok++;
    s->counters.reload_last_ok = (uint64_t)time(NULL);
    return 0;
}

int server_reload_follow(server_t *s, config_t *cfg, size_t *closed, char *err, size_t errlen)
{
    reload_note_t note;
    if (reload_swap(s, cfg, &note, err, errlen) < 0)
        return -1;
    *closed = note.closed;
    return 0;
}

int server_ready(const server_t *s, const char **why)
{
    if (s->draining) {
        *why = "draining";
        return 0;
    }
    /* Some backend of this gateway's region in selection (a pool with none
     * refuses its own kind with 503, the other kind still works). */
    const cfg_region_t *r = config_region(s->cfg, s->cfg->region, strlen(s->cfg->region));
    for (int k = 0; r && k < TUNNEL_KIND_COUNT; k++)
        for (size_t i = 0; i < r->pools[k].n; i++) {
            const cfg_addr_t *a = &r->pools[k].addrs[i];
            const backend_t *b =
                a->builtin_echo ? NULL
                                : backend_find(&s->backends, (const struct sockaddr *)&a->sa, a->len);
            if (a->builtin_echo || !b || b->up)
                return 1;
        }
    *why = "no healthy backend in this region";
    return 0;
}

void server_print_ready(const server_t *s, FILE *out)
{
    char name[64];
    fputs("sluiced ready", out);
    for (size_t i = 0; i < s->nlisteners; i++)
        fprintf(out, " listen=%s",
                config_addr_str((const struct sockaddr *)&s->listeners[i].addr, name,
                                sizeof name));
    if (s->echo.fd >= 0)
        fprintf(out, " echo=%s",
                config_addr_str((const struct sockaddr *)&s->echo.addr, name, sizeof name));
    fputc('\n', out);
    fflush(out);
}

static void drain_enter(server_t *s, enum drain_phase phase);

/* No connection left in the whole process (the lead's view). */
static int all_idle(const server_t *s)
{
    return list_empty(&s->conns) && (!s->group || workers_followers_idle(s->group));
}

/* What a phase does to this loop's listeners and connections, lead and
 * followers alike. */
static void drain_step(server_t *s, enum drain_phase phase)
{
    list_t *pos, *tmp;
    if (phase < DRAIN_GOAWAY)
        return;
    listeners_close(s);
    ev_timer_stop(s->loop, &s->accept_pause);
    /* GOAWAY: nothing can resume here once the listeners are closed; CLOSE:
     * every tunnel gets CLOSE(shutting down), nothing to resume. */
    s->sessions.closed = 1;
    list_for_each_safe(pos, tmp, &s->conns) {
        conn_t *c = LIST_ENTRY(pos, conn_t, _link);
        if (phase == DRAIN_GOAWAY && c->state == CONN_H2)
            conn_refuse_new(c); /* one in its handshake hears GOAWAY when it ends */
        else if (phase == DRAIN_CLOSE && c->state == CONN_H2)
            conn_drain(c);
        else if (phase == DRAIN_CLOSE)
            conn_close(c, CONN_END_SHUTDOWN); /* in the TLS handshake: nothing to say goodbye on */
    }
}

/* A follower with no connection left tells the lead, once. */
static void follower_idle_check(server_t *s)
{
    if (s->lead && !s->idle_told && s->drain_phase >= DRAIN_GOAWAY && list_empty(&s->conns)) {
        s->idle_told = 1;
        workers_idle(s->group, s->worker);
    }
}

void server_drain_follow(server_t *s, enum drain_phase phase)
{
    s->draining = 1;
    if (phase <= s->drain_phase)
        return;
    s->drain_phase = phase;
    drain_step(s, phase);
    follower_idle_check(s);
}

void server_followers_idle(server_t *s)
{
    if (s->drain_phase >= DRAIN_GOAWAY && all_idle(s))
        ev_break(s->loop, EVBREAK_ALL);
}

static void drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_t *s = container_of(w, server_t, drain_timer);
    if (s->drain_phase == DRAIN_CLOSE) {
        log_msg(LOG_WARN, "drain timeout: closing the remaining connections");
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    drain_enter(s, s->drain_phase + 1);
}

/* The process's live connections and tunnels: the lead's, plus every
 * follower's as a scrape collects them (a drain phase is rare enough to wait
 * for the loops' answers). */
static void drain_counts(const server_t *s, uint64_t *conns, uint64_t *tunnels)
{
    *conns = s->counters.conns_active;
    *tunnels = s->counters.tunnels_active;
    if (!s->group)
        return;
    size_t nw = workers_count(s->group);
    server_counters_t *sum = calloc(1, sizeof *sum); /* large: not on the stack */
    uint64_t *accepted = calloc(nw, sizeof *accepted), *open = calloc(nw, sizeof *open);
    stats_entry_t *v = NULL;
    size_t n = 0, cap = 0;
    if (sum && accepted && open &&
        workers_collect(s->group, sum, &v, &n, &cap, accepted, open) == 0) {
        *conns += sum->conns_active;
        *tunnels += sum->tunnels_active;
    }
    free(v);
    free(open);
    free(accepted);
    free(sum);
}

static void drain_status(const server_t *s, const char *what)
{
    static const char *const phases[] = {"none", "deregister", "goaway", "close"};
    uint64_t conns, tunnels;
    drain_counts(s, &conns, &tunnels);
    log_line_t l;
    if (log_begin(&l, LOG_INFO, "drain")) {
        log_str(&l, "phase", phases[s->drain_phase]);
        log_u64(&l, "connections", conns);
        log_u64(&l, "tunnels", tunnels);
        log_str(&l, "msg", what);
        log_end(&l);
    }
    notify_send(NOTIFY_STATUS, "draining: %s (%llu connections, %llu tunnels)", what,
                (unsigned long long)conns, (unsigned long long)tunnels);
}

/* Enters phase, or the first later one that has time to run (a phase of
 * 0 ms, or a GOAWAY phase with no connection left, is skipped). */
static void drain_enter(server_t *s, enum drain_phase phase)
{
    const cfg_limits_t *lim = &s->cfg->limits;
    ev_timer_stop(s->loop, &s->drain_timer);
    if (phase == DRAIN_DEREGISTER && lim->deregister_ms == 0)
        phase = DRAIN_GOAWAY;
    if (phase == DRAIN_GOAWAY && (lim->drain_ms == 0 || all_idle(s)))
        phase = DRAIN_CLOSE;
    s->drain_phase = phase;
    drain_step(s, phase);
    if (s->group)
        workers_drain_phase(s->group, phase); /* every worker takes the same step */
    uint32_t ms = 0;
    switch (phase) {
    case DRAIN_NONE:
        return;
    case DRAIN_DEREGISTER:
        drain_status(s, "readyz 503, still accepting");
        ms = lim->deregister_ms;
        break;
    case DRAIN_GOAWAY:
        drain_status(s, "GOAWAY sent, tunnels run on");
        ms = lim->drain_ms;
        break;
    case DRAIN_CLOSE:
        drain_status(s, "CLOSE(shutting down) sent");
        if (all_idle(s)) {
            ev_break(s->loop, EVBREAK_ALL);
            return;
        }
        ms = lim->drain_timeout_ms;
        break;
    }
    ev_timer_init(&s->drain_timer, drain_timer_cb, ms / 1000.0, 0.);
    ev_timer_start(s->loop, &s->drain_timer);
}

void server_drain(server_t *s)
{
    if (s->draining) {
        log_msg(LOG_WARN, "second stop request: stopping now");
        ev_break(s->loop, EVBREAK_ALL);
        return;
    }
    s->draining = 1;
    drain_enter(s, DRAIN_DEREGISTER);
}

void server_conn_gone(server_t *s, struct conn *c)
{
    /* No connection left: the GOAWAY phase has nothing to wait for, the
     * CLOSE phase nothing to flush. */
    if (s->lead)
        follower_idle_check(s);
    else if (s->drain_phase >= DRAIN_GOAWAY && all_idle(s))
        ev_break(s->loop, EVBREAK_ALL);
}

void server_dispose(server_t *s)
{
    log_limits_flush(&s->logs, UINT64_MAX); /* what was suppressed is still told */
    s->flush = s->dead = NULL; /* every connection is freed below */
    s->sessions.closed = 1;    /* ... and none of their tunnels parks */
    while (!list_empty(&s->conns))
        conn_free(LIST_ENTRY(s->conns.next, conn_t, _link));
    linger_dispose(&s->linger);
    session_table_dispose(&s->sessions); /* parked tunnels close */
    stats_dispose(&s->stats);
    if (s->loop) {
        ev_prepare_stop(s->loop, &s->prepare);
        ev_timer_stop(s->loop, &s->log_flush);
        ev_timer_stop(s->loop, &s->trim);
        ev_timer_stop(s->loop, &s->drain_timer);
        ev_timer_stop(s->loop, &s->accept_pause);
    }
    for (size_t i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i].fd >= 0) {
            ev_io_stop(s->loop, &s->listeners[i].io);
            close(s->listeners[i].fd);
        }
    }
    free(s->listeners);
    s->listeners = NULL;
    s->nlisteners = 0;
    backend_table_dispose(&s->backends);
    s->env.backends = NULL;
    echo_stop(&s->echo, s->loop);
    free(s->env.udp_buf);
    s->env.udp_buf = NULL;
    pool_dispose(&s->env.readers);
    if (s->h2_cbs)
        nghttp2_session_callbacks_del(s->h2_cbs);
    if (s->h2_opt)
        nghttp2_option_del(s->h2_opt);
    s->h2_cbs = NULL;
    s->h2_opt = NULL;
    SSL_CTX_free(s->ssl_ctx);
    s->ssl_ctx = NULL;
    srclimit_dispose(&s->sources);
    ratelimit_table_dispose(&s->env.rl);
    config_unref(s->cfg);
    s->cfg = NULL;
}
