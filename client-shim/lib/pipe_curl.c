/*
 * pipe_curl.c — the byte pipe through a proxy (see shim_dial.h,
 * shim_proxy_dial): libcurl makes the proxy connection and does the CONNECT,
 * then carries our bytes with curl_easy_send / curl_easy_recv.
 *
 * The easy handle asks for "http://host:port" with CURLOPT_CONNECT_ONLY and
 * CURLOPT_HTTPPROXYTUNNEL, so curl connects to the proxy (HTTP, HTTPS or
 * SOCKS), authenticates (CURLAUTH_ANY: Basic, Digest, NTLM, Negotiate),
 * sends `CONNECT host:port` (RFC 9110 §9.3.6) and stops there: no request and
 * no TLS to the target. Our TLS layer then runs inside the tunnel, with its
 * own SNI and certificate checks.
 *
 * curl runs on our libev loop through its multi interface
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION; one multi per pipe, as
 * the pipe must keep it: a connect-only connection lives in its multi's
 * connection cache, and removing the easy handle from the multi would close
 * it). Once connected, readiness comes from CURLINFO_ACTIVESOCKET on our own
 * ev_io, and the multi is never driven again.
 */
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim_addr.h"
#include "shim_dial.h"
#include "shim_internal.h"

#define CURL_SOCKS_MAX 4      /* sockets curl may watch at once (happy eyeballs: 2) */
#define STATUS_LINE_MAX 160u

typedef struct curl_sock {
    struct pipe_curl *owner;
    curl_socket_t fd;          /* CURL_SOCKET_BAD: slot free */
    ev_io io;
} curl_sock_t;

typedef struct pipe_curl {
    shim_pipe_t base;
    struct ev_loop *loop;
    CURLM *multi;
    CURL *easy;
    shim_curl_cb cb;
    void *ud;
    int connected;             /* the CONNECT succeeded: base is a pipe */
    int events;                /* SHIM_PIPE_* wanted (connected) */
    int has_creds;             /* credentials were given (options or URL) */
    int full_read;             /* the last recv filled its buffer: maybe more inside curl */
    curl_socket_t fd;          /* CURLINFO_ACTIVESOCKET once connected */
    ev_io io;                  /* readiness of fd once connected */
    ev_timer timer;            /* curl's timeout while connecting */
    curl_sock_t socks[CURL_SOCKS_MAX];
    char proxy_label[PROXY_LABEL_MAX];
    char status_line[STATUS_LINE_MAX]; /* the proxy's last HTTP status line */
    char errbuf[CURL_ERROR_SIZE];
} pipe_curl_t;

/* ---------------------------------------------------------------- the pipe */

static ssize_t curl_pipe_read(shim_pipe_t *p, uint8_t *buf, size_t cap)
{
    pipe_curl_t *k = container_of(p, pipe_curl_t, base);
    size_t n = 0;
    CURLcode rc = curl_easy_recv(k->easy, buf, cap, &n);

    k->full_read = 0;
    if (rc == CURLE_AGAIN)
        return SHIM_PIPE_AGAIN;
    if (rc != CURLE_OK) {
        shim__errf(p->err, sizeof(p->err), "read through %s: %s", k->proxy_label,
                 curl_easy_strerror(rc));
        return SHIM_PIPE_ERROR;
    }
    k->full_read = n == cap;
    return (ssize_t)n; /* 0: the tunnel's end of stream */
}

static ssize_t curl_pipe_write(shim_pipe_t *p, const uint8_t *buf, size_t len)
{
    pipe_curl_t *k = container_of(p, pipe_curl_t, base);
    size_t n = 0;
    CURLcode rc = curl_easy_send(k->easy, buf, len, &n);

    if (rc == CURLE_AGAIN || (rc == CURLE_OK && n == 0))
        return SHIM_PIPE_AGAIN;
    if (rc != CURLE_OK) {
        shim__errf(p->err, sizeof(p->err), "write through %s: %s", k->proxy_label,
                 curl_easy_strerror(rc));
        return SHIM_PIPE_ERROR;
    }
    return (ssize_t)n;
}

static void curl_pipe_want(shim_pipe_t *p, int events)
{
    pipe_curl_t *k = container_of(p, pipe_curl_t, base);
    int ev = ((events & SHIM_PIPE_READ) ? EV_READ : 0) | ((events & SHIM_PIPE_WRITE) ? EV_WRITE : 0);

    if (events == k->events)
        return;
    k->events = events;
    ev_io_stop(k->loop, &k->io);
    if (ev) {
        ev_io_set(&k->io, k->fd, ev);
        ev_io_start(k->loop, &k->io);
    }
}

static void curl_release(pipe_curl_t *k)
{
    ev_io_stop(k->loop, &k->io);
    ev_timer_stop(k->loop, &k->timer);
    for (int i = 0; i < CURL_SOCKS_MAX; i++) {
        ev_io_stop(k->loop, &k->socks[i].io);
        k->socks[i].fd = CURL_SOCKET_BAD;
    }
    /* From here on curl's callbacks find nothing to do (see curl_on_socket). */
    k->cb = NULL;
    if (k->multi) {
        curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, NULL);
        curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, NULL);
    }
    if (k->multi && k->easy)
        curl_multi_remove_handle(k->multi, k->easy);
    if (k->easy)
        curl_easy_cleanup(k->easy);
    if (k->multi)
        curl_multi_cleanup(k->multi);
    free(k);
}

static void curl_pipe_close(shim_pipe_t *p)
{
    curl_release(container_of(p, pipe_curl_t, base));
}

static void curl_pipe_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    pipe_curl_t *k = container_of(w, pipe_curl_t, io);
    int events = ((revents & EV_READ) ? SHIM_PIPE_READ : 0) |
                 ((revents & EV_WRITE) ? SHIM_PIPE_WRITE : 0);

    if (events && k->base.on_ready)
        k->base.on_ready(&k->base, events);
    /* Level-triggered on the socket is not enough through an HTTPS proxy:
     * curl may hold decrypted bytes the socket no longer signals. A read
     * that filled its buffer may have left some: look again next round. */
    if (k->full_read && (k->events & SHIM_PIPE_READ) && ev_is_active(&k->io))
        ev_feed_event(loop, &k->io, EV_READ);
}

static const shim_pipe_ops_t curl_pipe_ops = {
    .read = curl_pipe_read,
    .write = curl_pipe_write,
    .want = curl_pipe_want,
    .close = curl_pipe_close,
};

/* ---------------------------------------------------------------- connecting */

/* What went wrong, as the proxy failure it is. */
static sluice_fail_t curl_classify(pipe_curl_t *k, CURLcode rc, char *msg, size_t cap)
{
    long code = 0, avail = 0;
    const char *detail = k->errbuf[0] ? k->errbuf : curl_easy_strerror(rc);

    curl_easy_getinfo(k->easy, CURLINFO_HTTP_CONNECTCODE, &code);
    if (code == 407) {
        char schemes[96] = "";
        size_t pos = 0;
        static const struct {
            unsigned long bit;
            const char *name;
        } names[] = {
            {CURLAUTH_BASIC, "Basic"},         {CURLAUTH_DIGEST, "Digest"},
            {CURLAUTH_NTLM, "NTLM"},           {CURLAUTH_NEGOTIATE, "Negotiate"},
            {CURLAUTH_DIGEST_IE, "Digest-IE"}, {CURLAUTH_BEARER, "Bearer"},
        };
        curl_easy_getinfo(k->easy, CURLINFO_PROXYAUTH_AVAIL, &avail);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if ((unsigned long)avail & names[i].bit)
                pos += (size_t)snprintf(schemes + pos, sizeof(schemes) - pos, "%s%s",
                                        pos ? ", " : "", names[i].name);
        shim__errf(msg, cap, "%s: 407 proxy authentication %s (offered: %s)", k->proxy_label,
                 k->has_creds ? "failed" : "required, no credentials given",
                 pos ? schemes : "none we know");
        return SLUICE_FAIL_PROXY_AUTH;
    }
    if (code != 0 && (code < 200 || code > 299)) {
        char line[STATUS_LINE_MAX * 4 + 1];
        shim__log_safe(line, sizeof(line), k->status_line, strlen(k->status_line));
        shim__errf(msg, cap, "%s refused the CONNECT: %s", k->proxy_label,
                 line[0] ? line : "(no status line)");
        return SLUICE_FAIL_PROXY_REFUSED;
    }
    shim__errf(msg, cap, "%s: %s", k->proxy_label, detail);
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return SLUICE_FAIL_PROXY_UNREACHABLE;
    case CURLE_OPERATION_TIMEDOUT:
        return SLUICE_FAIL_PROXY_TIMEOUT;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_PROXY:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return SLUICE_FAIL_PROXY_MALFORMED;
    default:
        return SLUICE_FAIL_PROXY_UNREACHABLE;
    }
}

/* Delivers the outcome: on success the pipe goes to the callback and is its
 * owner's; on failure everything is released first. */
static void curl_done(pipe_curl_t *k, CURLcode rc)
{
    shim_curl_cb cb = k->cb;
    void *ud = k->ud;
    char msg[SHIM_DETAIL_MAX];
    sluice_fail_t fail = SLUICE_FAIL_NONE;
    curl_socket_t fd = CURL_SOCKET_BAD;

    ev_timer_stop(k->loop, &k->timer);
    for (int i = 0; i < CURL_SOCKS_MAX; i++)
        ev_io_stop(k->loop, &k->socks[i].io);
    if (rc == CURLE_OK &&
        (curl_easy_getinfo(k->easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
         fd == CURL_SOCKET_BAD)) {
        shim__errf(msg, sizeof(msg), "%s: the tunnel has no socket", k->proxy_label);
        fail = SLUICE_FAIL_PROXY_MALFORMED;
    } else if (rc != CURLE_OK) {
        fail = curl_classify(k, rc, msg, sizeof(msg));
    }
    if (fail != SLUICE_FAIL_NONE) {
        curl_release(k);
        cb(NULL, fail, msg, ud);
        return;
    }
    k->connected = 1;
    k->fd = fd;
    shim_dial_tune(fd); /* curl set TCP_NODELAY already; the rest is ours */
    k->cb = NULL;
    ev_io_init(&k->io, curl_pipe_on_io, fd, 0);
    cb(&k->base, SLUICE_FAIL_NONE, NULL, ud);
}

/* Runs curl for fd (or its timeout), then looks for the transfer's end. */
static void curl_drive(pipe_curl_t *k, curl_socket_t fd, int ev_mask)
{
    int running = 0;
    CURLMsg *m;
    int left;

    curl_multi_socket_action(k->multi, fd, ev_mask, &running);
    while (k->cb && (m = curl_multi_info_read(k->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE) {
            curl_done(k, m->data.result);
            return; /* k is gone or handed over */
        }
    }
}

static void curl_on_sock_io(struct ev_loop *loop, ev_io *w, int revents)
{
    curl_sock_t *s = container_of(w, curl_sock_t, io);
    int mask = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
               ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_drive(s->owner, s->fd, mask);
}

static void curl_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    curl_drive(container_of(w, pipe_curl_t, timer), CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl asks. */
static int curl_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    pipe_curl_t *k = userp;
    curl_sock_t *s = socketp;

    if (!k->cb)
        return 0; /* connected or released: curl's sockets are not ours to watch */
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(k->loop, &s->io);
            s->fd = CURL_SOCKET_BAD;
            curl_multi_assign(k->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        for (int i = 0; i < CURL_SOCKS_MAX && !s; i++)
            if (k->socks[i].fd == CURL_SOCKET_BAD)
                s = &k->socks[i];
        if (!s)
            return -1; /* more sockets than a CONNECT ever needs */
        s->fd = fd;
        curl_multi_assign(k->multi, fd, s);
    }
    ev_io_stop(k->loop, &s->io);
    ev_io_set(&s->io, fd, ((what & CURL_POLL_IN) ? EV_READ : 0) |
                              ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    ev_io_start(k->loop, &s->io);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer; 0 means "as soon as you can",
 * which must not be done from inside this callback: the timer fires from
 * the loop. */
static int curl_on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    pipe_curl_t *k = userp;

    ev_timer_stop(k->loop, &k->timer);
    if (timeout_ms >= 0 && k->cb) {
        ev_timer_set(&k->timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(k->loop, &k->timer);
    }
    return 0;
}

/* CURLOPT_HEADERFUNCTION: keeps the proxy's last status line (a 407 may be
 * followed by another try and another status line). */
static size_t curl_on_header(char *buf, size_t size, size_t n, void *userp)
{
    pipe_curl_t *k = userp;
    size_t len = size * n;

    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        size_t keep = len < sizeof(k->status_line) - 1 ? len : sizeof(k->status_line) - 1;
        memcpy(k->status_line, buf, keep);
        while (keep && (k->status_line[keep - 1] == '\r' || k->status_line[keep - 1] == '\n'))
            keep--;
        k->status_line[keep] = '\0';
    }
    return len;
}

static int curl_global_ready(void)
{
    static int done, ok;

    /* Not thread-safe, like the rest of the library (one loop thread). */
    if (!done) {
        done = 1;
        ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    }
    return ok;
}

shim_pipe_t *shim_proxy_dial(struct ev_loop *loop, const proxy_route_t *route,
                             const char *host, uint16_t port, const char *user,
                             const char *password, uint32_t timeout_ms, shim_curl_cb cb,
                             void *ud, char *err, size_t errlen)
{
    pipe_curl_t *k;
    char target[SHIM_AUTHORITY_MAX + 16], hp[SHIM_AUTHORITY_MAX];
    CURLMcode mc;

    if (!curl_global_ready()) {
        snprintf(err, errlen, "libcurl cannot be initialised");
        return NULL;
    }
    k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    k->base.ops = &curl_pipe_ops;
    k->loop = loop;
    k->cb = cb;
    k->ud = ud;
    k->fd = CURL_SOCKET_BAD;
    snprintf(k->proxy_label, sizeof(k->proxy_label), "%s", route->label);
    ev_init(&k->io, curl_pipe_on_io);
    ev_init(&k->timer, curl_on_timer);
    for (int i = 0; i < CURL_SOCKS_MAX; i++) {
        k->socks[i].owner = k;
        k->socks[i].fd = CURL_SOCKET_BAD;
        ev_init(&k->socks[i].io, curl_on_sock_io);
    }
    k->multi = curl_multi_init();
    k->easy = curl_easy_init();
    if (!k->multi || !k->easy)
        goto nomem;
    /* "http://" so that curl tunnels and then stops: CONNECT only, no TLS
     * to the target and no request (our TLS runs in the tunnel). */
    shim_hostport_format(host, port, hp, sizeof(hp));
    snprintf(target, sizeof(target), "http://%s/", hp);
#define SET(opt, val)                                                                      \
    if (curl_easy_setopt(k->easy, opt, val) != CURLE_OK)                                   \
        goto nomem;
    SET(CURLOPT_URL, target);
    SET(CURLOPT_PROXY, route->url);
    SET(CURLOPT_NOPROXY, ""); /* the route is decided (proxy.c): no env override */
    SET(CURLOPT_HTTPPROXYTUNNEL, 1L);
    SET(CURLOPT_CONNECT_ONLY, 1L);
    SET(CURLOPT_PROXYAUTH, (long)CURLAUTH_ANY);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L); /* real-time media: never coalesce small writes */
    SET(CURLOPT_ERRORBUFFER, k->errbuf);
    SET(CURLOPT_HEADERFUNCTION, curl_on_header);
    SET(CURLOPT_HEADERDATA, k);
    const char *authority = strstr(route->url, "://");
    k->has_creds = user || (authority && strchr(authority, '@'));
    if (user) {
        SET(CURLOPT_PROXYUSERNAME, user);
        SET(CURLOPT_PROXYPASSWORD, password ? password : "");
    }
#undef SET
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, curl_on_socket);
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETDATA, k);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, curl_on_timer_set);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERDATA, k);
    mc = curl_multi_add_handle(k->multi, k->easy);
    if (mc != CURLM_OK) {
        shim__errf(err, errlen, "%s: %s", route->label, curl_multi_strerror(mc));
        curl_release(k);
        return NULL;
    }
    /* The timer callback has asked for a first run from the loop. */
    return &k->base;

nomem:
    shim__errf(err, errlen, "%s: libcurl setup failed (out of memory?)", route->label);
    curl_release(k);
    return NULL;
}

void shim_proxy_cancel(shim_pipe_t *p)
{
    if (p)
        curl_release(container_of(p, pipe_curl_t, base));
}
