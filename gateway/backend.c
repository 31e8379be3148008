/* backend.c — see backend.h. */
#include "backend.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hrw.h"
#include "util.h"

/* Datagrams read from one probe socket per event: answers are one per probe,
 * anything more is noise (or an attack) and waits for the next event. */
#define PROBE_READS_PER_EVENT 4
#define PROBE_BUF 512 /* larger than any Binding response we accept (52 B) */

static int sa_equal(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr *b,
                    socklen_t blen)
{
    if (a->ss_family != b->sa_family)
        return 0;
    if (b->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return blen >= sizeof *y && x->sin_port == y->sin_port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (b->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return blen >= sizeof *y && x->sin6_port == y->sin6_port &&
               !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
    }
    return alen == blen && !memcmp(a, b, blen);
}

backend_t *backend_find(const backend_table_t *bt, const struct sockaddr *sa, socklen_t len)
{
    for (size_t i = 0; i < bt->n; i++)
        if (sa_equal(&bt->items[i].sa, bt->items[i].len, sa, len))
            return &bt->items[i];
    return NULL;
}

static void set_up(backend_t *b, int up, const char *why)
{
    if (b->up == up)
        return;
    b->up = up;
    log_msg(up ? LOG_INFO : LOG_WARN, "backend %s %s: %s", b->name, up ? "up" : "down", why);
}

static void timer_in(backend_t *b, uint32_t ms)
{
    ev_timer_stop(b->_table->loop, &b->timer);
    ev_timer_set(&b->timer, ms / 1000.0, 0.);
    ev_timer_start(b->_table->loop, &b->timer);
}

/* One probe's outcome. */
static void probe_result(backend_t *b, int answered)
{
    b->waiting = 0;
    if (answered) {
        b->probes_answered++;
        b->fails = 0;
        if (++b->oks >= b->health.up_after)
            set_up(b, 1, "answers probes");
    } else {
        b->oks = 0;
        if (++b->fails >= b->health.down_after)
            set_up(b, 0, "probes unanswered");
        else if (b->up)
            log_msg(LOG_DEBUG, "backend %s: probe unanswered (%u of %u before down)", b->name,
                    b->fails, b->health.down_after);
    }
}

/* ICMP says nothing listens there: out at once, and the answered probes
 * needed to come back start from zero. */
static void mark_unreachable(backend_t *b, int err)
{
    b->oks = 0;
    b->fails = b->health.down_after;
    char why[96];
    snprintf(why, sizeof why, "unreachable (%s)", strerror(err));
    set_up(b, 0, why);
    if (b->health.probe == CFG_PROBE_NONE)
        timer_in(b, b->health.interval_ms); /* the hold-down */
}

static void probe_send(backend_t *b)
{
    uint8_t req[STUN_BINDING_REQUEST_LEN];
    if (RAND_bytes(b->txid, sizeof b->txid) != 1 ||
        stun_binding_request_encode(b->txid, req, sizeof req) < 0) {
        probe_result(b, 0);
        return;
    }
    b->probes_sent++;
    b->waiting = 1;
    if (send(b->fd, req, sizeof req, 0) < 0 &&
        (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)) {
        b->waiting = 0;
        mark_unreachable(b, errno);
    }
}

/* Timer: with probes, either a probe's deadline (waiting) or the next
 * probe; without, the hold-down after an ICMP error has ended. */
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    backend_t *b = container_of(w, backend_t, timer);
    if (b->health.probe == CFG_PROBE_NONE) {
        b->fails = 0;
        set_up(b, 1, "hold-down over");
        return;
    }
    if (b->_deadline) {
        /* The probe's deadline: unanswered unless an answer (or an ICMP
         * error) settled it; either way the next one is due at interval. */
        b->_deadline = 0;
        if (b->waiting)
            probe_result(b, 0);
        timer_in(b, b->health.interval_ms - b->health.timeout_ms);
        return;
    }
    probe_send(b);
    b->_deadline = 1;
    timer_in(b, b->health.timeout_ms);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    backend_t *b = container_of(w, backend_t, io);
    uint8_t buf[PROBE_BUF];
    for (int i = 0; i < PROBE_READS_PER_EVENT; i++) {
        ssize_t n = recv(b->fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) {
                b->waiting = 0;
                mark_unreachable(b, errno);
                continue;
            }
            return; /* EAGAIN */
        }
        if (!b->waiting || (size_t)n < STUN_HEADER_LEN)
            continue;
        stun_binding_response_t r;
        int ok = stun_binding_response_decode(buf, (size_t)n, b->txid, &r, NULL) == n;
        if (!ok) {
            /* A Binding error response (RFC 8489 §6.3.4) with our id: the
             * server is there, it just wants credentials. */
            uint32_t cookie = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 |
                              (uint32_t)buf[6] << 8 | buf[7];
            ok = ((buf[0] << 8) | buf[1]) == STUN_BINDING_ERROR && cookie == STUN_MAGIC_COOKIE &&
                 !memcmp(buf + 8, b->txid, STUN_TXID_LEN);
        }
        if (ok)
            probe_result(b, 1); /* the timer then finds nothing waiting */
    }
}

static int probe_start(backend_t *b, struct ev_loop *loop)
{
    ev_init(&b->timer, timer_cb);
    b->fd = -1;
    if (b->builtin || b->health.probe == CFG_PROBE_NONE)
        return 0;
    b->fd = socket(b->sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b->fd < 0)
        return -1;
    if (connect(b->fd, (const struct sockaddr *)&b->sa, b->len) < 0)
        return -1;
    ev_io_init(&b->io, io_cb, b->fd, EV_READ);
    ev_io_start(loop, &b->io);
    ev_timer_set(&b->timer, 0., 0.); /* the first probe at once */
    ev_timer_start(loop, &b->timer);
    return 0;
}

int backend_table_init(backend_table_t *bt, struct ev_loop *loop, const config_t *cfg,
                       const struct sockaddr *echo, socklen_t echo_len, char *err,
                       size_t errlen)
{
    size_t total = 0;
    *bt = (backend_table_t){.loop = loop};
    for (size_t r = 0; r < cfg->nregions; r++)
        for (int k = 0; k < TUNNEL_KIND_COUNT; k++)
            total += cfg->regions[r].pools[k].n;
    bt->items = calloc(total ? total : 1, sizeof *bt->items);
    if (!bt->items) {
        snprintf(err, errlen, "backends: out of memory");
        return -1;
    }
    for (size_t r = 0; r < cfg->nregions; r++) {
        for (int k = 0; k < TUNNEL_KIND_COUNT; k++) {
            const cfg_pool_t *pool = &cfg->regions[r].pools[k];
            for (size_t i = 0; i < pool->n; i++) {
                const cfg_addr_t *a = &pool->addrs[i];
                const struct sockaddr *sa = a->builtin_echo ? echo : (const void *)&a->sa;
                socklen_t len = a->builtin_echo ? echo_len : a->len;
                if (!sa || backend_find(bt, sa, len))
                    continue;
                backend_t *b = &bt->items[bt->n++];
                memcpy(&b->sa, sa, len);
                b->len = len;
                b->builtin = a->builtin_echo;
                b->health = pool->health;
                b->up = 1;
                b->_table = bt;
                if (b->builtin)
                    snprintf(b->name, sizeof b->name, "builtin:echo");
                else
                    config_addr_str(sa, b->name, sizeof b->name);
                b->id = hrw_hash(b->name, strlen(b->name));
                if (probe_start(b, loop) < 0) {
                    snprintf(err, errlen, "backend %s: probe socket: %s", b->name,
                             strerror(errno));
                    backend_table_dispose(bt);
                    return -1;
                }
            }
        }
    }
    return 0;
}

void backend_table_dispose(backend_table_t *bt)
{
    if (!bt->items)
        return;
    for (size_t i = 0; i < bt->n; i++) {
        backend_t *b = &bt->items[i];
        ev_timer_stop(bt->loop, &b->timer);
        if (b->fd >= 0) {
            ev_io_stop(bt->loop, &b->io);
            close(b->fd);
            b->fd = -1;
        }
    }
    free(bt->items);
    bt->items = NULL;
    bt->n = 0;
}

/* config.c caps a pool at CFG_POOL_MAX addresses: the arrays fit the stack. */
#define SELECT_MAX CFG_POOL_MAX

const backend_t *backend_select(const backend_table_t *bt, const cfg_pool_t *pool, uint64_t key)
{
    uint64_t ids[SELECT_MAX];
    unsigned char up[SELECT_MAX];
    const backend_t *which[SELECT_MAX];
    size_t n = pool->n < SELECT_MAX ? pool->n : SELECT_MAX;
    for (size_t i = 0; i < n; i++) {
        const cfg_addr_t *a = &pool->addrs[i];
        const backend_t *b = NULL;
        for (size_t j = 0; j < bt->n && !b; j++)
            if (a->builtin_echo ? bt->items[j].builtin
                                : sa_equal(&bt->items[j].sa, bt->items[j].len,
                                           (const void *)&a->sa, a->len))
                b = &bt->items[j];
        which[i] = b;
        ids[i] = b ? b->id : 0;
        up[i] = b && b->up;
    }
    long pick = hrw_pick(key, ids, up, n);
    return pick < 0 ? NULL : which[pick];
}

void backend_report_error(backend_table_t *bt, const struct sockaddr *sa, socklen_t len,
                          int err)
{
    backend_t *b = backend_find(bt, sa, len);
    if (b && !b->builtin)
        mark_unreachable(b, err);
}

int backend_table_apply(backend_table_t *bt, const config_t *cfg, const struct sockaddr *echo,
                        socklen_t echo_len, char *err, size_t errlen)
{
    backend_table_t nt;
    if (backend_table_init(&nt, bt->loop, cfg, echo, echo_len, err, errlen) < 0)
        return -1; /* the old table is untouched */
    for (size_t i = 0; i < nt.n; i++) {
        backend_t *b = &nt.items[i];
        b->_table = bt; /* where the table lives once moved below */
        const backend_t *old = backend_find(bt, (const struct sockaddr *)&b->sa, b->len);
        if (!old || old->builtin != b->builtin)
            continue;
        b->up = old->up;
        b->fails = old->fails;
        b->oks = old->oks;
        b->probes_sent = old->probes_sent;
        b->probes_answered = old->probes_answered;
        if (!b->up && b->health.probe == CFG_PROBE_NONE) {
            /* The hold-down starts again: it is not carried over. */
            ev_timer_set(&b->timer, b->health.interval_ms / 1000.0, 0.);
            ev_timer_start(bt->loop, &b->timer);
        }
    }
    backend_table_dispose(bt);
    *bt = nt;
    return 0;
}
