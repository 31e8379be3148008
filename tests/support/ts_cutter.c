/*
 * ts_cutter.c — the cutting TCP relay: one poll-loop thread.
 */
#include "ts_cutter.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ts_util.h"

#define CUT_WAIT_MS 5000
#define ACCEPTS_PER_WAKEUP 16

/* One direction of a connection: bytes read from one side, not yet written to
 * the other. The buffer is refilled only once empty (tests need correctness
 * and bounds, not throughput). */
typedef struct half {
    size_t len, off;
    int eof;      /* the source side sent FIN */
    int shut;     /* FIN passed on to the destination */
    uint8_t buf[TS_CUTTER_BUF];
} half_t;

typedef struct conn {
    int used;
    int cfd, tfd;      /* the accepted client side, the target side */
    int connecting;    /* tfd's connect is in progress */
    int chup, thup;    /* poll said HUP: leave the fd out unless writing to it */
    half_t up;         /* client -> target */
    half_t down;       /* target -> client */
} conn_t;

struct ts_cutter {
    int lfd;
    int ctl[2];               /* commands to the thread: 'c' cut, 'q' quit */
    pthread_t thread;
    int started;
    ts_addr_t addr;
    char addr_str[64];
    conn_t conns[TS_CUTTER_MAX_CONNS];
    pthread_mutex_t lock;     /* guards the fields below */
    ts_addr_t target;         /* where new connections go (ts_cutter_retarget) */
    ts_addr_t source;         /* bound before connecting when len != 0 (ts_cutter_set_source) */
    pthread_cond_t cut_done_cv;
    uint64_t accepted, bytes_up, bytes_down;
    size_t live;
    uint64_t cut_req, cut_done;
    int cut_result;
};

/* An abortive close: SO_LINGER with a zero timeout makes close() send RST
 * instead of FIN (RFC 9293 §3.6, "ABORT"). */
static void reset_fd(int fd)
{
    if (fd < 0)
        return;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void conn_free(ts_cutter_t *c, conn_t *k, int abortive)
{
    if (abortive) {
        reset_fd(k->cfd);
        reset_fd(k->tfd);
    } else {
        close(k->cfd);
        close(k->tfd);
    }
    k->used = 0;
    k->cfd = k->tfd = -1;
    pthread_mutex_lock(&c->lock);
    c->live--;
    pthread_mutex_unlock(&c->lock);
}

static int cut_all_now(ts_cutter_t *c)
{
    int n = 0;
    for (size_t i = 0; i < TS_CUTTER_MAX_CONNS; i++) {
        if (c->conns[i].used) {
            conn_free(c, &c->conns[i], 1);
            n++;
        }
    }
    return n;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_some(ts_cutter_t *c)
{
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int cfd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        pthread_mutex_lock(&c->lock);
        c->accepted++;
        ts_addr_t target = c->target, source = c->source;
        pthread_mutex_unlock(&c->lock);
        conn_t *k = NULL;
        for (size_t j = 0; j < TS_CUTTER_MAX_CONNS && !k; j++)
            if (!c->conns[j].used)
                k = &c->conns[j];
        int tfd = k ? socket(target.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
                    : -1;
        if (tfd < 0) {
            reset_fd(cfd); /* full, or no socket: refuse as a dead proxy would */
            continue;
        }
        if (source.len && bind(tfd, (const struct sockaddr *)&source.sa, source.len) < 0) {
            reset_fd(tfd);
            reset_fd(cfd);
            continue;
        }
        int r = connect(tfd, (const struct sockaddr *)&target.sa, target.len);
        if (r < 0 && errno != EINPROGRESS) {
            reset_fd(tfd);
            reset_fd(cfd);
            continue;
        }
        nodelay(cfd);
        nodelay(tfd);
        /* Clear all but the buffers (len 0 says they hold nothing). */
        memset(k, 0, offsetof(conn_t, up));
        memset(&k->up, 0, offsetof(half_t, buf));
        memset(&k->down, 0, offsetof(half_t, buf));
        k->used = 1;
        k->cfd = cfd;
        k->tfd = tfd;
        k->connecting = r < 0;
        pthread_mutex_lock(&c->lock);
        c->live++;
        pthread_mutex_unlock(&c->lock);
    }
}

/* Moves bytes from src into h, then from h to dst. Returns 0, or -1 when
 * either side failed (the connection is then reset both ways). */
static int pump(ts_cutter_t *c, half_t *h, int src, short src_ev, int dst, short dst_ev,
                uint64_t *counter)
{
    if (h->len == 0 && !h->eof && (src_ev & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = recv(src, h->buf, sizeof h->buf, 0);
        if (n > 0) {
            h->len = (size_t)n;
            h->off = 0;
        } else if (n == 0) {
            h->eof = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return -1; /* ECONNRESET and the like: pass the reset on */
        }
    }
    if (h->len > h->off && (dst_ev & (POLLOUT | POLLHUP | POLLERR))) {
        ssize_t n = send(dst, h->buf + h->off, h->len - h->off, MSG_NOSIGNAL);
        if (n > 0) {
            h->off += (size_t)n;
            pthread_mutex_lock(&c->lock);
            *counter += (uint64_t)n;
            pthread_mutex_unlock(&c->lock);
            if (h->off == h->len)
                h->len = h->off = 0;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return -1;
        }
    }
    if (h->eof && h->len == 0 && !h->shut) {
        shutdown(dst, SHUT_WR); /* the FIN goes on after the bytes before it */
        h->shut = 1;
    }
    return 0;
}

static short events_for(const conn_t *k, int client_side)
{
    const half_t *in = client_side ? &k->up : &k->down;   /* read from this side */
    const half_t *out = client_side ? &k->down : &k->up;  /* write to this side */
    if (!client_side && k->connecting)
        return POLLOUT;
    short ev = 0;
    if (in->len == 0 && !in->eof && !k->connecting)
        ev |= POLLIN;
    if (out->len > out->off)
        ev |= POLLOUT;
    return ev;
}

static void serve_conn(ts_cutter_t *c, conn_t *k, short cev, short tev)
{
    if (k->connecting) {
        if (cev & (POLLERR | POLLHUP)) {
            conn_free(c, k, 1); /* the client gave up first */
            return;
        }
        if (!(tev & (POLLOUT | POLLERR | POLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(k->tfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
            conn_free(c, k, 1); /* target refused or unreachable: reset the client */
            return;
        }
        k->connecting = 0;
        tev = 0;
    }
    if ((cev | tev) & POLLERR) {
        conn_free(c, k, 1);
        return;
    }
    if (pump(c, &k->up, k->cfd, cev, k->tfd, tev, &c->bytes_up) < 0 ||
        pump(c, &k->down, k->tfd, tev, k->cfd, cev, &c->bytes_down) < 0) {
        conn_free(c, k, 1);
        return;
    }
    if (k->up.shut && k->down.shut) {
        conn_free(c, k, 0);
        return;
    }
    k->chup |= (cev & POLLHUP) != 0;
    k->thup |= (tev & POLLHUP) != 0;
}

static void *cutter_main(void *arg)
{
    ts_cutter_t *c = arg;
    struct pollfd pfd[2 + 2 * TS_CUTTER_MAX_CONNS];
    int64_t end = ts_deadline(TS_CUTTER_MAX_LIFE_MS);
    for (;;) {
        int left = ts_remaining_ms(end);
        if (left == 0)
            break;
        pfd[0] = (struct pollfd){.fd = c->ctl[0], .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = c->lfd, .events = POLLIN};
        for (size_t i = 0; i < TS_CUTTER_MAX_CONNS; i++) {
            conn_t *k = &c->conns[i];
            struct pollfd *pc = &pfd[2 + 2 * i], *pt = pc + 1;
            *pc = (struct pollfd){.fd = -1};
            *pt = (struct pollfd){.fd = -1};
            if (!k->used)
                continue;
            pc->events = events_for(k, 1);
            pt->events = events_for(k, 0);
            /* A socket that hung up reports POLLHUP on every poll: leave it
             * out while there is nothing to do on it, or the loop would spin. */
            pc->fd = (k->chup && !pc->events) ? -1 : k->cfd;
            pt->fd = (k->thup && !pt->events) ? -1 : k->tfd;
        }
        if (poll(pfd, 2 + 2 * TS_CUTTER_MAX_CONNS, left) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents) {
            char cmd = 0;
            if (read(c->ctl[0], &cmd, 1) != 1 || cmd == 'q')
                break;
            if (cmd == 'c') {
                int n = cut_all_now(c);
                pthread_mutex_lock(&c->lock);
                c->cut_result = n;
                c->cut_done++;
                pthread_cond_broadcast(&c->cut_done_cv);
                pthread_mutex_unlock(&c->lock);
                continue; /* the pollfds above name closed fds */
            }
        }
        for (size_t i = 0; i < TS_CUTTER_MAX_CONNS; i++) {
            conn_t *k = &c->conns[i];
            short cev = pfd[2 + 2 * i].revents, tev = pfd[3 + 2 * i].revents;
            if (k->used && (cev || tev))
                serve_conn(c, k, cev, tev);
        }
        if (pfd[1].revents)
            accept_some(c);
    }
    cut_all_now(c);
    return NULL;
}

ts_cutter_t *ts_cutter_start(const ts_addr_t *target)
{
    ts_cutter_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->lfd = c->ctl[0] = c->ctl[1] = -1;
    for (size_t i = 0; i < TS_CUTTER_MAX_CONNS; i++)
        c->conns[i].cfd = c->conns[i].tfd = -1;
    c->target = *target;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cut_done_cv, &ca);
    pthread_condattr_destroy(&ca);

    ts_addr_loopback(&c->addr, target->sa.ss_family, 0);
    c->lfd = socket(c->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->lfd < 0 || bind(c->lfd, (struct sockaddr *)&c->addr.sa, c->addr.len) < 0 ||
        listen(c->lfd, 64) < 0)
        goto err;
    c->addr.len = sizeof c->addr.sa;
    if (getsockname(c->lfd, (struct sockaddr *)&c->addr.sa, &c->addr.len) < 0 ||
        pipe2(c->ctl, O_CLOEXEC) < 0)
        goto err;
    ts_addr_str(&c->addr, c->addr_str, sizeof c->addr_str);
    if (pthread_create(&c->thread, NULL, cutter_main, c) != 0)
        goto err;
    c->started = 1;
    return c;
err:
    ts_cutter_stop(c);
    return NULL;
}

const ts_addr_t *ts_cutter_addr(const ts_cutter_t *c)
{
    return &c->addr;
}

const char *ts_cutter_addr_str(const ts_cutter_t *c)
{
    return c->addr_str;
}

static uint64_t read_counter(ts_cutter_t *c, const uint64_t *v)
{
    pthread_mutex_lock(&c->lock);
    uint64_t n = *v;
    pthread_mutex_unlock(&c->lock);
    return n;
}

uint64_t ts_cutter_accepted(ts_cutter_t *c)
{
    return read_counter(c, &c->accepted);
}

uint64_t ts_cutter_bytes_up(ts_cutter_t *c)
{
    return read_counter(c, &c->bytes_up);
}

uint64_t ts_cutter_bytes_down(ts_cutter_t *c)
{
    return read_counter(c, &c->bytes_down);
}

size_t ts_cutter_live(ts_cutter_t *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->live;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int ts_cutter_cut_all(ts_cutter_t *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t seq = ++c->cut_req;
    pthread_mutex_unlock(&c->lock);
    char cmd = 'c';
    if (write(c->ctl[1], &cmd, 1) != 1)
        return -1;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CUT_WAIT_MS / 1000;
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    while (c->cut_done < seq && rc == 0)
        rc = pthread_cond_timedwait(&c->cut_done_cv, &c->lock, &until);
    int n = c->cut_done >= seq ? c->cut_result : -1;
    pthread_mutex_unlock(&c->lock);
    return n;
}

void ts_cutter_stop(ts_cutter_t *c)
{
    if (!c)
        return;
    if (c->started) {
        char cmd = 'q';
        ssize_t w = write(c->ctl[1], &cmd, 1);
        (void)w;
        pthread_join(c->thread, NULL);
    }
    if (c->lfd >= 0)
        close(c->lfd);
    if (c->ctl[0] >= 0)
        close(c->ctl[0]);
    if (c->ctl[1] >= 0)
        close(c->ctl[1]);
    pthread_cond_destroy(&c->cut_done_cv);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void ts_cutter_retarget(ts_cutter_t *c, const ts_addr_t *target)
{
    pthread_mutex_lock(&c->lock);
    c->target = *target;
    pthread_mutex_unlock(&c->lock);
}

void ts_cutter_set_source(ts_cutter_t *c, const ts_addr_t *source)
{
    pthread_mutex_lock(&c->lock);
    if (source)
        c->source = *source;
    else
        memset(&c->source, 0, sizeof c->source);
    pthread_mutex_unlock(&c->lock);
}
