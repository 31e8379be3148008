/* server.c — see server.h. */
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define ACCEPTS_PER_EVENT 64
#define LISTEN_BACKLOG 511
#define ACCEPT_PAUSE_S 0.1 /* after EMFILE/ENFILE, so the loop does not spin */

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

static void accept_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_t *s = container_of(w, server_t, accept_pause);
    if (!s->draining)
        listeners_set(s, 1);
}

/* Once per iteration, before the loop blocks: write what every connection
 * produced (one write per connection however many packets it queued), then
 * free what was closed. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    server_t *s = container_of(w, server_t, prepare);
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
                log_msg(LOG_WARN, "accept: %s; pausing accepts", strerror(errno));
                listeners_set(s, 0);
                ev_timer_set(&s->accept_pause, ACCEPT_PAUSE_S, 0.);
                ev_timer_start(loop, &s->accept_pause);
            }
            return; /* EAGAIN, or a connection that died in the backlog */
        }
        const cfg_limits_t *lim = &s->cfg->limits;
        if (s->counters.conns_active >= lim->max_connections) {
            s->counters.conns_refused++;
            close(fd);
            continue;
        }
        /* One source cannot take everyone's slots: a cap on its connections
         * that have no tunnel yet, and on its rate of new ones. */
        srclimit_key_t key;
        int rc = srclimit_admit(&s->sources, (struct sockaddr *)&peer, len,
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
        conn_new(s, fd, (struct sockaddr *)&peer, len, key);
    }
}

static int listener_open(server_t *s, listener_t *l, const cfg_addr_t *a, char *err,
                         size_t errlen)
{
    char name[64];
    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;
    config_addr_str(sa, name, sizeof name);
    l->srv = s;
    l->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        goto fail;
    int one = 1;
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa->sa_family == AF_INET6)
        setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    l->addrlen = sizeof l->addr;
    if (bind(l->fd, sa, a->len) < 0 || listen(l->fd, LISTEN_BACKLOG) < 0 ||
        getsockname(l->fd, (struct sockaddr *)&l->addr, &l->addrlen) < 0)
        goto fail;
    ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
    return 0;
fail:
    snprintf(err, errlen, "listen %s: %s", name, strerror(errno));
    return -1;
}

int server_init(server_t *s, struct ev_loop *loop, config_t *cfg, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    list_init(&s->conns);
    s->loop = loop;
    s->cfg = config_ref(cfg);
    s->echo.fd = -1;
    ev_init(&s->accept_pause, accept_resume_cb);
    ev_prepare_init(&s->prepare, prepare_cb);
    ev_prepare_start(loop, &s->prepare);
    s->logs = (log_limits_t)LOG_LIMITS_INIT;
    ev_timer_init(&s->log_flush, log_flush_cb, LOG_LIMITS_WINDOW_S / 2.0,
                  LOG_LIMITS_WINDOW_S / 2.0);
    ev_timer_start(loop, &s->log_flush);
    s->env = (tunnel_env_t){.loop = loop, .counters = &s->counters, .logs = &s->logs};
    session_table_init(&s->sessions, &s->env);
    if (srclimit_init(&s->sources, SRCLIMIT_DEFAULT_ENTRIES) < 0) {
        snprintf(err, errlen, "per-source table: %s", strerror(errno));
        goto fail;
    }
    s->ssl_ctx = tls_server_ctx(cfg->cert_file, cfg->key_file, err, errlen);
    if (!s->ssl_ctx)
        goto fail;
    if (conn_h2_setup(&s->h2_cbs, &s->h2_opt) < 0 ||
        !(s->env.udp_buf = malloc(TUNNEL_UDP_BUF))) {
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
        if (listener_open(s, &s->listeners[i], &cfg->listen[i], err, errlen) < 0)
            goto fail;
    if (cfg->has_echo &&
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

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    log_msg(LOG_WARN, "drain timeout: closing the remaining connections");
    ev_break(loop, EVBREAK_ALL);
}

void server_drain(server_t *s)
{
    if (s->draining) {
        log_msg(LOG_WARN, "second stop request: stopping now");
        ev_break(s->loop, EVBREAK_ALL);
        return;
    }
    s->draining = 1;
    s->sessions.closed = 1; /* every tunnel gets CLOSE(shutting down): nothing to resume */
    log_msg(LOG_INFO, "draining %llu connections, %llu tunnels",
            (unsigned long long)s->counters.conns_active,
            (unsigned long long)s->counters.tunnels_active);
    listeners_set(s, 0);
    ev_timer_stop(s->loop, &s->accept_pause);
    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, &s->conns) {
        conn_t *c = LIST_ENTRY(pos, conn_t, _link);
        if (c->state == CONN_H2)
            conn_drain(c);
        else
            conn_close(c); /* still in the TLS handshake: nothing to say goodbye on */
    }
    if (list_empty(&s->conns)) {
        ev_break(s->loop, EVBREAK_ALL);
        return;
    }
    ev_timer_init(&s->drain_timer, drain_timeout_cb, s->cfg->limits.drain_timeout_ms / 1000.0,
                  0.);
    ev_timer_start(s->loop, &s->drain_timer);
}

void server_conn_gone(server_t *s, struct conn *c)
{
    if (s->draining && list_empty(&s->conns))
        ev_break(s->loop, EVBREAK_ALL);
}

void server_dispose(server_t *s)
{
    log_limits_flush(&s->logs, UINT64_MAX); /* what was suppressed is still told */
    s->flush = s->dead = NULL; /* every connection is freed below */
    s->sessions.closed = 1;    /* ... and none of their tunnels parks */
    while (!list_empty(&s->conns))
        conn_free(LIST_ENTRY(s->conns.next, conn_t, _link));
    session_table_dispose(&s->sessions); /* parked tunnels close */
    if (s->loop) {
        ev_prepare_stop(s->loop, &s->prepare);
        ev_timer_stop(s->loop, &s->log_flush);
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
    if (s->h2_cbs)
        nghttp2_session_callbacks_del(s->h2_cbs);
    if (s->h2_opt)
        nghttp2_option_del(s->h2_opt);
    s->h2_cbs = NULL;
    s->h2_opt = NULL;
    SSL_CTX_free(s->ssl_ctx);
    s->ssl_ctx = NULL;
    srclimit_dispose(&s->sources);
    config_unref(s->cfg);
    s->cfg = NULL;
}
