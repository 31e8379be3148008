/*
 * client.c — one connection to a gateway: lifecycle, the pump between the
 * byte pipe, TLS and HTTP/2, and deferred work (see shim_internal.h).
 *
 * Data path in:  pipe -> _rbio -> SSL_read -> nghttp2_session_mem_recv
 * Data path out: nghttp2_session_mem_send -> _tx -> SSL_write -> _wbio -> pipe
 *
 * Output is produced only in client_flush, which the ev_prepare watcher runs
 * before the loop blocks, so everything queued during one loop iteration
 * (many packets, many tunnels) leaves in as few TLS records and pipe writes
 * as possible. Output stops being pulled from nghttp2 while more than
 * SHIM_TLS_OUT_HIGH bytes wait for the pipe; the tunnels' bounded queues
 * absorb the rest.
 */
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/tlserr.h"
#include "../../proto/hostport.h"
#include "proxy.h"
#include "shim_addr.h"
#include "shim_internal.h"

#define DEFAULT_TIMEOUT_MS 10000u

const char *sluice_strerror(int err)
{
    switch (err) {
    case SLUICE_ERR_INVALID: return "invalid argument";
    case SLUICE_ERR_STATE: return "not allowed in this state";
    case SLUICE_ERR_NOMEM: return "out of memory";
    case SLUICE_ERR_TOO_BIG: return "payload too large";
    case SLUICE_ERR_FULL: return "signaling queue full";
    default: return err >= 0 ? "ok" : "unknown error";
    }
}

const char *sluice_fail_name(sluice_fail_t fail)
{
    switch (fail) {
    case SLUICE_FAIL_NONE: return "none";
    case SLUICE_FAIL_RESOLVE: return "resolve";
    case SLUICE_FAIL_CONNECT: return "connect";
    case SLUICE_FAIL_TIMEOUT: return "timeout";
    case SLUICE_FAIL_TLS: return "tls";
    case SLUICE_FAIL_CERT: return "certificate";
    case SLUICE_FAIL_ALPN: return "alpn";
    case SLUICE_FAIL_PROTOCOL: return "protocol";
    case SLUICE_FAIL_LOST: return "lost";
    case SLUICE_FAIL_GOAWAY: return "goaway";
    case SLUICE_FAIL_PROXY_UNREACHABLE: return "proxy unreachable";
    case SLUICE_FAIL_PROXY_AUTH: return "proxy auth";
    case SLUICE_FAIL_PROXY_REFUSED: return "proxy refused";
    case SLUICE_FAIL_PROXY_MALFORMED: return "proxy malformed";
    case SLUICE_FAIL_PROXY_TIMEOUT: return "proxy timeout";
    case SLUICE_FAIL_PROXY_CONFIG: return "proxy config";
    }
    return "unknown";
}

int sluice_fail_permanent(sluice_fail_t fail)
{
    return fail == SLUICE_FAIL_CERT || fail == SLUICE_FAIL_ALPN || fail == SLUICE_FAIL_PROXY_AUTH ||
           fail == SLUICE_FAIL_PROXY_REFUSED || fail == SLUICE_FAIL_PROXY_CONFIG;
}

const char *sluice_state_name(sluice_state_t state)
{
    switch (state) {
    case SLUICE_CONNECTING: return "connecting";
    case SLUICE_CONNECTED: return "connected";
    case SLUICE_FAILED: return "failed";
    case SLUICE_CLOSED: return "closed";
    case SLUICE_RECONNECTING: return "reconnecting";
    }
    return "unknown";
}

int shim_client__usable(const sluice_client_t *c)
{
    return !c->_free_requested && !c->_end_pending && c->phase < SHIM_PHASE_CLOSING &&
           !c->_goaway_recv;
}

int shim_client__reconnects(const sluice_client_t *c)
{
    return c->_reconnect_max_ms != 0 && !c->_app_closed;
}

uint32_t shim_backoff_ms(uint32_t min_ms, uint32_t max_ms, unsigned attempt, uint32_t rnd)
{
    uint64_t base = min_ms ? min_ms : 1;
    uint64_t d;

    if (max_ms < min_ms)
        max_ms = min_ms;
    for (unsigned i = 0; i < attempt && base < max_ms; i++)
        base *= 2;
    if (base > max_ms)
        base = max_ms;
    /* +-25 %: base * (0.75 + 0.5 * rnd / 2^32), in integers. Jitter spreads
     * the clients a gateway restart disconnected at the same instant. */
    d = base * 3 / 4 + ((base / 2) * (uint64_t)rnd >> 32);
    if (d < min_ms)
        d = min_ms;
    if (d > max_ms)
        d = max_ms;
    return (uint32_t)d;
}

void shim_client__kick(sluice_client_t *c)
{
    c->_kicked = 1;
    if (!ev_is_active(&c->_prep))
        ev_prepare_start(c->loop, &c->_prep);
}

static void client_stop_io(sluice_client_t *c)
{
    if (c->_pipe)
        shim_pipe_want(c->_pipe, 0);
    ev_timer_stop(c->loop, &c->_timer);
    ev_timer_stop(c->loop, &c->_keepalive);
    ev_timer_stop(c->loop, &c->_retry);
    shim_dial_cancel(&c->_dial);
}

void shim_client__end(sluice_client_t *c, sluice_state_t state, sluice_fail_t fail,
                      const char *fmt, ...)
{
    va_list ap;

    if (c->_end_pending || c->phase == SHIM_PHASE_DONE)
        return;
    c->_end_pending = 1;
    c->_end_state = state;
    c->_end_fail = fail;
    if (fail != SLUICE_FAIL_NONE)
        c->_fail = fail;
    va_start(ap, fmt);
    vsnprintf(c->_detail, sizeof(c->_detail), fmt, ap);
    va_end(ap);
    /* Nothing more is read or timed; the teardown runs from the loop. */
    client_stop_io(c);
    shim_client__kick(c);
}

/* A report's detail: cut to fit, as every detail is. */
static void detailf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void detailf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static void app_state(sluice_client_t *c, sluice_state_t state, const char *detail)
{
    if (!c->on_state || c->_free_requested)
        return;
    c->_depth++;
    c->on_state(c, state, detail, c->ud);
    c->_depth--;
}

/* ---------------------------------------------------------------- output */

/* Hands the coalesced HTTP/2 bytes to TLS. A memory BIO takes all of it. */
static int client_tls_write(sluice_client_t *c)
{
    int n = SSL_write(c->_ssl, c->_tx, (int)c->_txlen);

    if (n <= 0 || (size_t)n != c->_txlen) {
        char e[200];
        tlserr_take(e, sizeof(e), "unknown error");
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_TLS, "TLS write failed: %s", e);
        return -1;
    }
    c->_txlen = 0;
    return 0;
}

/* Sends what TLS has produced; what the pipe does not take now waits for
 * it to be writable. Returns 0, or -1 after ending the client. */
static int client_push(sluice_client_t *c)
{
    int rc = shim_tls__push(c);

    if (rc < 0) {
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_LOST, "write to gateway: %s",
                         c->_pipe->err);
        return -1;
    }
    if (rc != c->_want_write) {
        c->_want_write = rc;
        shim_pipe_want(c->_pipe, SHIM_PIPE_READ | (rc ? SHIM_PIPE_WRITE : 0));
    }
    return 0;
}

/* The HTTP/2 session has nothing left to read or write: both sides sent or
 * received GOAWAY and every stream is closed. Close TLS, then the client. */
/* Ends the client when the connection's end was asked for: by us
 * (sluice_client_close) or by the gateway's GOAWAY. Returns 1 when it did. */
static int client_end_expected(sluice_client_t *c)
{
    if (c->phase == SHIM_PHASE_CLOSING)
        shim_client__end(c, SLUICE_CLOSED, SLUICE_FAIL_NONE, "closed by the application");
    else if (c->_goaway_recv)
        shim_client__end(c, c->_goaway_code == NGHTTP2_NO_ERROR ? SLUICE_CLOSED : SLUICE_FAILED,
                         SLUICE_FAIL_GOAWAY, "%s", c->_goaway);
    else
        return 0;
    return 1;
}

static void client_session_done(sluice_client_t *c)
{
    SSL_shutdown(c->_ssl); /* queues close_notify; teardown sends it */
    ERR_clear_error();
    if (!client_end_expected(c))
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_LOST, "HTTP/2 session ended");
}

static void client_flush(sluice_client_t *c)
{
    if (c->_end_pending || !c->_pipe || !c->_ssl)
        return;
    if (c->_h2) {
        while ((size_t)BIO_ctrl_pending(c->_wbio) < SHIM_TLS_OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->_h2, &data);
            if (n < 0) {
                shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_PROTOCOL, "HTTP/2 error: %s",
                                 nghttp2_strerror((int)n));
                return;
            }
            if (n == 0)
                break;
            while (n > 0) {
                size_t k = sizeof(c->_tx) - c->_txlen;
                if (k > (size_t)n)
                    k = (size_t)n;
                memcpy(c->_tx + c->_txlen, data, k);
                c->_txlen += k;
                data += k;
                n -= (ssize_t)k;
                if (c->_txlen == sizeof(c->_tx) && client_tls_write(c) < 0)
                    return;
            }
            if (c->_end_pending)
                return;
        }
        if (c->_txlen && client_tls_write(c) < 0)
            return;
    }
    if (client_push(c) < 0)
        return;
    if (c->_h2 && !nghttp2_session_want_read(c->_h2) && !nghttp2_session_want_write(c->_h2))
        client_session_done(c);
}

/* ---------------------------------------------------------------- teardown */

/* Whether the end being torn down is followed by a reconnect: reconnect on,
 * a transient cause, and something to keep (a gateway closing a connection
 * that carries no tunnel, as it does with idle ones, is an orderly end). */
static int client_will_reconnect(const sluice_client_t *c)
{
    if (!shim_client__reconnects(c) || c->_end_fail == SLUICE_FAIL_NONE ||
        sluice_fail_permanent(c->_end_fail) || c->_free_requested)
        return 0;
    if (c->_end_fail == SLUICE_FAIL_GOAWAY) {
        list_t *pos, *tmp;
        list_for_each_safe(pos, tmp, (list_t *)&c->_tunnels) {
            const sluice_tunnel_t *t = SHIM_TUNNEL(pos);
            if (!t->_finished && !t->_closing)
                return 1;
        }
        return 0;
    }
    return 1;
}

static void client_on_retry(struct ev_loop *loop, ev_timer *w, int revents);

/* Forgets the connection (pipe, TLS, HTTP/2), keeps the open tunnels for
 * the next one and starts the back-off timer. */
static void client_park(sluice_client_t *c)
{
    uint32_t wait;

    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, &c->_tunnels) {
        sluice_tunnel_t *t = SHIM_TUNNEL(pos);
        ev_timer_stop(c->loop, &t->_timer);
        if (t->_finished) {
            t->_stream_gone = 1;
        } else if (t->_closing) {
            t->_stream_gone = 1;
            shim_tunnel__finish(t, t->status, SLUICE_CLOSE_NORMAL, "closed by the application");
        } else {
            shim_tunnel__reset_stream(t);
        }
    }
    c->_goaway_recv = 0;
    c->_peer_close_notify = 0;
    c->_want_write = 0;
    c->_txlen = 0;
    c->_resumed = 0;
    c->_report_connected = 0;
    c->phase = SHIM_PHASE_WAIT;
    /* xorshift32 (Marsaglia 2003): jitter only, not a secret. */
    c->_rng ^= c->_rng << 13;
    c->_rng ^= c->_rng >> 17;
    c->_rng ^= c->_rng << 5;
    wait = shim_backoff_ms(c->_reconnect_min_ms, c->_reconnect_max_ms, c->_attempt, c->_rng);
    if (c->_redir == 1) /* a redirect is not a failure: go now */
        wait = 0;
    else if (c->_attempt < 32)
        c->_attempt++;
    snprintf(c->_reconnect_detail, sizeof(c->_reconnect_detail), "in %u ms: %s",
             (unsigned)wait, c->_detail);
    c->_report_reconnecting = 1;
    ev_timer_set(&c->_retry, wait / 1000.0, 0.);
    ev_timer_start(c->loop, &c->_retry);
}

/* ---------------------------------------------------------------- redirect */

int shim_client__redirect(sluice_client_t *c, const char *node)
{
    hostport_t hp;

    /* One hop: a 421 on the node we were sent to is a 410 (no ping-pong). */
    if (c->_redir || !shim_client__reconnects(c) ||
        hostport_split(node, strlen(node), 0, &hp) != HOSTPORT_OK ||
        hp.host_len >= sizeof(c->_redir_host))
        return 0;
    memcpy(c->_redir_host, hp.host, hp.host_len);
    c->_redir_host[hp.host_len] = '\0';
    c->_redir_port = hp.port;
    c->_redir = 1;
    shim_client__end(c, SLUICE_CLOSED, SLUICE_FAIL_LOST, "session held by node %s: resuming there",
                     node);
    return 1;
}

/* The end of a connection: a redirected one that never came up sends its
 * tunnels back to the gateway's own address as fresh tunnels; once it has
 * served, the next connection goes to the gateway's address again. */
static void client_redirect_end(sluice_client_t *c)
{
    if (c->_redir != 2)
        return;
    if (c->phase < SHIM_PHASE_READY) {
        list_t *pos, *tmp;
        list_for_each_safe(pos, tmp, &c->_tunnels)
            SHIM_TUNNEL(pos)->_token[0] = '\0';
    }
    c->_redir = 0;
}

static void client_teardown(sluice_client_t *c)
{
    const char *what = c->_end_state == SLUICE_CLOSED ? "connection closed" : "connection lost";
    int reconnect = client_will_reconnect(c);

    client_redirect_end(c);
    c->_end_pending = 0;
    /* Best effort: a TLS alert or close_notify still waiting goes out once;
     * whatever the pipe does not take is dropped with the connection. */
    if (c->_pipe && c->_wbio)
        (void)shim_tls__push(c);
    client_stop_io(c);
    shim_pipe_close(&c->_pipe);
    if (c->_h2) {
        nghttp2_session_del(c->_h2);
        c->_h2 = NULL;
    }
    shim_tls__free(c);
    if (reconnect) {
        client_park(c);
        return;
    }
    c->phase = SHIM_PHASE_DONE;
    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, &c->_tunnels) {
        sluice_tunnel_t *t = SHIM_TUNNEL(pos);
        t->_stream_gone = 1;
        ev_timer_stop(c->loop, &t->_timer);
        if (t->_closing)
            shim_tunnel__finish(t, t->status, SLUICE_CLOSE_NORMAL, "closed by the application");
        else
            shim_tunnel__finish(t, t->status, SLUICE_CLOSE_NO_CODE, "%s: %s", what, c->_detail);
    }
    c->_report_end = 1;
}

static void client_destroy(sluice_client_t *c)
{
    client_stop_io(c);
    ev_prepare_stop(c->loop, &c->_prep);
    shim_pipe_close(&c->_pipe);
    if (c->_h2)
        nghttp2_session_del(c->_h2);
    shim_tls__free(c);
    sluice_tls_free(c->_tls);
    while (!list_empty(&c->_tunnels))
        shim_tunnel__free(SHIM_TUNNEL(c->_tunnels.next));
    free(c->_host);
    free(c->_server_name);
    free(c->_cred_user);
    free(c->_cred);
    free(c->_proxy);
    free(c->_proxy_pac);
    free(c->_proxy_user);
    free(c->_proxy_password);
    free(c->_pac_script);
    free(c);
}

/* Delivers what happened: state changes, then each finished tunnel's
 * on_close (freeing it once nghttp2 is done with it), then the final state
 * once no tunnel is left. */
static void client_dispatch(sluice_client_t *c)
{
    list_t *pos, *tmp;

    if (c->_report_connecting) {
        c->_report_connecting = 0;
        app_state(c, SLUICE_CONNECTING, c->_connecting_detail);
    }
    if (c->_report_reconnecting && !c->_free_requested) {
        c->_report_reconnecting = 0;
        app_state(c, SLUICE_RECONNECTING, c->_reconnect_detail);
    }
    if (c->_report_connected && !c->_free_requested) {
        c->_report_connected = 0;
        app_state(c, SLUICE_CONNECTED, c->_connected_detail);
    }
    list_for_each_safe(pos, tmp, &c->_tunnels) {
        sluice_tunnel_t *t = SHIM_TUNNEL(pos);
        if (c->_free_requested)
            break;
        if (t->_finished && !t->_reported) {
            t->_reported = 1;
            if (t->_cb.on_close) {
                c->_depth++;
                t->_cb.on_close(t, t->_result_status, t->_result_code, t->_reason, t->_cb.ud);
                c->_depth--;
            }
        }
        if (t->_reported && t->_stream_gone)
            shim_tunnel__free(t);
    }
    if (c->_report_end && list_empty(&c->_tunnels) && !c->_free_requested) {
        c->_report_end = 0;
        app_state(c, c->_end_state, c->_detail);
    }
}

/* Sends the request of every tunnel waiting for one. */
static void client_submit_waiting(sluice_client_t *c)
{
    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, &c->_tunnels) {
        sluice_tunnel_t *t = SHIM_TUNNEL(pos);
        if (t->_wait_submit && !t->_finished && !t->_closing && t->_stream_gone)
            shim_tunnel__submit(t);
    }
}

/* The deferred work. Work that callbacks create while it runs is done in
 * further rounds, so it does not wait for the next loop iteration. */
static void client_run(sluice_client_t *c)
{
    for (int round = 0; round < 8; round++) {
        c->_kicked = 0;
        if (c->_free_requested) {
            client_destroy(c);
            return;
        }
        if (c->phase == SHIM_PHASE_READY && c->_goaway_recv && !c->_end_pending &&
            shim_client__reconnects(c))
            /* The gateway is going away: move to another connection now
             * rather than after its drain (docs/shim.md, "Reconnect"). */
            shim_client__end(c, SLUICE_CLOSED, SLUICE_FAIL_GOAWAY, "%s", c->_goaway);
        if (c->phase == SHIM_PHASE_READY && shim_client__usable(c))
            client_submit_waiting(c);
        if (c->phase >= SHIM_PHASE_TLS && c->phase < SHIM_PHASE_DONE)
            client_flush(c);
        if (c->_end_pending)
            client_teardown(c);
        client_dispatch(c);
        if (c->_free_requested) {
            client_destroy(c);
            return;
        }
        if (!c->_kicked) {
            ev_prepare_stop(c->loop, &c->_prep);
            return;
        }
    }
}

static void client_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    client_run(container_of(w, sluice_client_t, _prep));
}

/* ---------------------------------------------------------------- input */

static void client_ready(sluice_client_t *c)
{
    char err[SHIM_DETAIL_MAX];

    ev_timer_stop(c->loop, &c->_timer);
    if (shim_h2__session_new(c, err, sizeof(err)) < 0) {
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_PROTOCOL, "%s", err);
        return;
    }
    c->phase = SHIM_PHASE_READY;
    c->_attempt = 0;
    c->_resumed = shim_tls__resumed(c);
    snprintf(c->_connected_detail, sizeof(c->_connected_detail), "alpn=h2 %s%s",
             SSL_get_version(c->_ssl), c->_resumed ? " resumed" : "");
    c->_report_connected = 1;
    if (c->_keepalive_ms) {
        double iv = c->_keepalive_ms / 2000.0;
        ev_timer_set(&c->_keepalive, iv, iv);
        ev_timer_start(c->loop, &c->_keepalive);
    }
    client_submit_waiting(c);
    shim_client__kick(c);
}

/* Runs TLS (and HTTP/2 once up) over what the read BIO holds. Returns 0, or
 * -1 when the client ended or was freed. */
static int client_tls_in(sluice_client_t *c)
{
    char err[SHIM_DETAIL_MAX];

    if (c->phase == SHIM_PHASE_TLS) {
        sluice_fail_t fail = SLUICE_FAIL_TLS;
        int rc = shim_tls__handshake(c, err, sizeof(err), &fail);
        if (rc < 0) {
            shim_client__end(c, SLUICE_FAILED, fail, "%s", err);
            return -1;
        }
        if (rc == 0)
            return 0;
        client_ready(c);
        if (c->_end_pending)
            return -1;
    }
    for (;;) {
        int n = SSL_read(c->_ssl, c->_plain, (int)sizeof(c->_plain));
        if (n > 0) {
            ssize_t rv = nghttp2_session_mem_recv(c->_h2, c->_plain, (size_t)n);
            if (rv < 0) {
                shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_PROTOCOL, "HTTP/2 error: %s",
                                 nghttp2_strerror((int)rv));
                return -1;
            }
            if (c->_end_pending || c->_free_requested)
                return -1;
            continue;
        }
        switch (SSL_get_error(c->_ssl, n)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            ERR_clear_error();
            return 0;
        case SSL_ERROR_ZERO_RETURN:
            c->_peer_close_notify = 1;
            return 0;
        default: {
            tlserr_take(err, sizeof(err), "connection broken");
            shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_TLS, "TLS error: %s", err);
            return -1;
        }
        }
    }
}

static void client_on_eof(sluice_client_t *c)
{
    if (c->phase == SHIM_PHASE_TLS)
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_TLS,
                         "gateway closed the connection during the TLS handshake");
    else if (!client_end_expected(c))
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_LOST, "gateway closed the connection%s",
                         c->_peer_close_notify ? "" : " (no TLS close_notify)");
}

static void client_on_readable(sluice_client_t *c)
{
    for (int i = 0; i < SHIM_READS_PER_EVENT; i++) {
        ssize_t n = shim_tls__pull(c);
        if (n == SHIM_PIPE_AGAIN)
            break;
        if (n < 0) {
            shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_LOST, "read from gateway: %s",
                             c->_pipe->err);
            break;
        }
        if (n == 0) {
            client_on_eof(c);
            break;
        }
        c->_last_rx = compat_mono_ns();
        if (client_tls_in(c) < 0)
            break;
        if (c->_peer_close_notify) {
            client_on_eof(c);
            break;
        }
    }
    shim_client__kick(c);
}

/* The pipe is readable or, after a short write, writable again (the flush
 * in the deferred work sends the rest). */
static void client_on_pipe(shim_pipe_t *p, int events)
{
    sluice_client_t *c = p->ud;

    if (events & SHIM_PIPE_READ)
        client_on_readable(c);
    if (events & SHIM_PIPE_WRITE) {
        c->_kbudget = SHIM_NOTSENT_LOWAT; /* the kernel holds under that much unsent */
        shim_client__kick(c);
    }
}

static void client_on_handshake_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    sluice_client_t *c = container_of(w, sluice_client_t, _timer);

    shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_TIMEOUT,
                     "TLS handshake with %s timed out after %u ms",
                     c->_authority, (unsigned)c->_handshake_timeout_ms);
}

/* HTTP/2 PING (RFC 9113 §6.7) after a quiet interval; fail after two. */
static void client_on_keepalive(struct ev_loop *loop, ev_timer *w, int revents)
{
    sluice_client_t *c = container_of(w, sluice_client_t, _keepalive);
    uint64_t quiet = compat_mono_ns() - c->_last_rx;
    uint64_t iv = (uint64_t)c->_keepalive_ms * 1000000u;

    if (!c->_h2)
        return;
    if (quiet >= 2 * iv) {
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_LOST,
                         "gateway silent for %llu ms (keepalive)",
                         (unsigned long long)(quiet / 1000000u));
        return;
    }
    if (quiet >= iv) {
        nghttp2_submit_ping(c->_h2, NGHTTP2_FLAG_NONE, NULL);
        shim_client__kick(c);
    }
}

/* Each route the dialer tries is a CONNECTING report naming it (and why
 * the one before failed), so `-v` shows every attempt. */
static void client_on_attempt(shim_dial_t *d, const proxy_route_t *route, size_t index,
                              size_t n, const char *prev_err)
{
    sluice_client_t *c = d->ud;
    char more[SHIM_DETAIL_MAX] = "";

    if (n > 1)
        detailf(more, sizeof(more), " (route %zu of %zu%s%s)", index + 1, n,
                prev_err ? "; the last failed: " : "", prev_err ? prev_err : "");
    detailf(c->_connecting_detail, sizeof(c->_connecting_detail), "%s %s%s%s", c->_authority,
            route->direct ? "" : "via ", route->label, more);
    c->_report_connecting = 1;
    shim_client__kick(c);
}

static void client_on_dialed(shim_dial_t *d, shim_pipe_t *pipe, sluice_fail_t fail,
                             const char *derr)
{
    sluice_client_t *c = d->ud;
    char err[SHIM_DETAIL_MAX];

    if (!pipe) {
        shim_client__end(c, SLUICE_FAILED, fail, "%s", derr);
        return;
    }
    c->_pipe = pipe;
    c->_kbudget = SHIM_NOTSENT_LOWAT;
    pipe->on_ready = client_on_pipe;
    pipe->ud = c;
    c->phase = SHIM_PHASE_TLS;
    c->_last_rx = compat_mono_ns();
    if (shim_tls__begin(c, err, sizeof(err)) < 0) {
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_TLS, "%s", err);
        return;
    }
    shim_pipe_want(pipe, SHIM_PIPE_READ);
    ev_timer_set(&c->_timer, c->_handshake_timeout_ms / 1000.0, 0.);
    ev_timer_start(c->loop, &c->_timer);
    /* Produces the ClientHello; the flush sends it. */
    fail = SLUICE_FAIL_TLS;
    if (shim_tls__handshake(c, err, sizeof(err), &fail) < 0)
        shim_client__end(c, SLUICE_FAILED, fail, "%s", err);
    shim_client__kick(c);
}

static int client_routes(sluice_client_t *c, proxy_route_t *routes, char *err, size_t errlen);

/* Starts the transport over the routes of the moment (a PAC or the
 * environment may name others at each attempt). Failing at once ends the
 * client (or, with reconnect on, waits for the next attempt). */
static void client_dial(sluice_client_t *c)
{
    char err[SHIM_DETAIL_MAX];
    proxy_route_t routes[PROXY_ROUTES_MAX];
    int n;

    c->phase = SHIM_PHASE_DIALING;
    if (c->_redir == 1)
        c->_redir = 2;
    c->_dial.ud = c;
    c->_dial.on_attempt = client_on_attempt; /* reports CONNECTING for each route */
    n = client_routes(c, routes, err, sizeof(err));
    if (n < 0) {
        c->_report_connecting = 1;
        snprintf(c->_connecting_detail, sizeof(c->_connecting_detail), "%s", c->_authority);
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_PROXY_CONFIG, "%s", err);
    } else if (shim_dial_start(&c->_dial, routes, (size_t)n,
                               c->_redir ? c->_redir_host : c->_host,
                               c->_redir ? c->_redir_port : c->port,
                               c->_connect_timeout_ms, c->_proxy_user, c->_proxy_password,
                               client_on_dialed, c) < 0) {
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_PROXY_CONFIG, "no route to try");
    }
    shim_client__kick(c);
}

static void client_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    sluice_client_t *c = container_of(w, sluice_client_t, _retry);

    if (c->phase == SHIM_PHASE_WAIT && !c->_end_pending && !c->_free_requested)
        client_dial(c);
}

/* ---------------------------------------------------------------- API */

sluice_client_t *sluice_client_new(struct ev_loop *loop, const sluice_client_opts_t *opts,
                                   char *err, size_t errlen)
{
    char tmp[SHIM_DETAIL_MAX];
    sluice_client_t *c;

    if (!err) {
        err = tmp;
        errlen = sizeof(tmp);
    }
    if (!loop || !opts || !opts->host || !*opts->host) {
        snprintf(err, errlen, "a loop and opts->host are required");
        return NULL;
    }
    if (opts->tls && opts->ca_file) {
        snprintf(err, errlen, "give the CA file to sluice_tls_new, not with opts->tls");
        return NULL;
    }
    if (strlen(opts->host) > SHIM_HOST_MAX ||
        (opts->server_name && (!*opts->server_name || strlen(opts->server_name) > SHIM_HOST_MAX))) {
        snprintf(err, errlen, "host or server name empty or too long");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c)
        list_init(&c->_tunnels);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->on_state = opts->on_state;
    c->ud = opts->ud;
    c->port = opts->port ? opts->port : 443;
    c->_connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms
                                                      : DEFAULT_TIMEOUT_MS;
    c->_handshake_timeout_ms = opts->handshake_timeout_ms ? opts->handshake_timeout_ms
                                                          : DEFAULT_TIMEOUT_MS;
    c->_keepalive_ms = opts->keepalive_ms;
    c->_reconnect_max_ms = opts->reconnect_max_ms;
    c->_reconnect_min_ms = opts->reconnect_min_ms ? opts->reconnect_min_ms : SHIM_RECONNECT_MIN_MS;
    if (c->_reconnect_max_ms && c->_reconnect_min_ms > c->_reconnect_max_ms)
        c->_reconnect_min_ms = c->_reconnect_max_ms;
    c->_rng = (uint32_t)compat_mono_ns() ^ (uint32_t)(uintptr_t)c;
    if (!c->_rng)
        c->_rng = 0x9e3779b9u;
    c->_host = strdup(opts->host);
    c->_server_name = strdup(opts->server_name ? opts->server_name : opts->host);
    c->_proxy_use_env = opts->proxy_use_env;
#define COPY_OPT(field, src)                                                               \
    if ((src) && !(c->field = strdup(src)))                                                \
        goto nomem;
    COPY_OPT(_proxy, opts->proxy)
    COPY_OPT(_proxy_pac, opts->proxy_pac)
    COPY_OPT(_proxy_user, opts->proxy_user)
    COPY_OPT(_proxy_password, opts->proxy_password)
#undef COPY_OPT
    if (!c->_host || !c->_server_name) {
    nomem:
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    c->_tls = opts->tls ? shim_tls__ref(opts->tls) : sluice_tls_new(opts->ca_file, err, errlen);
    if (!c->_tls)
        goto fail;
    shim_hostport_format(c->_server_name, c->port, c->_authority, sizeof(c->_authority));
    shim_dial_init(&c->_dial, loop);
    ev_init(&c->_timer, client_on_handshake_timeout);
    ev_init(&c->_keepalive, client_on_keepalive);
    ev_init(&c->_retry, client_on_retry);
    ev_prepare_init(&c->_prep, client_on_prepare);
    c->phase = SHIM_PHASE_IDLE;
    return c;

fail:
    free(c->_host);
    free(c->_server_name);
    free(c->_proxy);
    free(c->_proxy_pac);
    free(c->_proxy_user);
    free(c->_proxy_password);
    free(c);
    return NULL;
}

/* The routes to the gateway (docs/shim.md, "Proxy discovery"): the PAC is
 * loaded once per client and evaluated for the gateway's URL at each
 * connect. Returns the count, or -1 with err (a configuration error). */
static int client_routes(sluice_client_t *c, proxy_route_t *routes, char *err, size_t errlen)
{
    char answer[PROXY_PAC_ANSWER_MAX], url[SHIM_AUTHORITY_MAX + 16];
    const char *env_proxy = getenv("https_proxy"), *env_no = getenv("no_proxy");
    proxy_inputs_t in = {
        .host = c->_host,
        .proxy = c->_proxy,
        .use_env = c->_proxy_use_env,
    };

    /* curl's order: the lower-case name first. */
    in.env_proxy = env_proxy && *env_proxy ? env_proxy : getenv("HTTPS_PROXY");
    in.env_no_proxy = env_no ? env_no : getenv("NO_PROXY");
    if (!c->_proxy && c->_proxy_pac) {
        char hp[SHIM_AUTHORITY_MAX];
        if (!c->_pac_script &&
            !(c->_pac_script = proxy_pac_load(c->_proxy_pac, c->_connect_timeout_ms, err, errlen)))
            return -1;
        shim_hostport_format(c->_host, c->port, hp, sizeof(hp));
        snprintf(url, sizeof(url), "https://%s/", hp);
        if (proxy_pac_eval(c->_pac_script, url, c->_host, answer, sizeof(answer), err,
                           errlen) < 0)
            return -1;
        in.pac_answer = answer;
    }
    return proxy_routes(&in, routes, PROXY_ROUTES_MAX, err, errlen);
}

int sluice_client_connect(sluice_client_t *c)
{
    if (!c)
        return SLUICE_ERR_INVALID;
    if (c->phase != SHIM_PHASE_IDLE || c->_end_pending || c->_free_requested)
        return SLUICE_ERR_STATE;
    client_dial(c);
    return SLUICE_OK;
}

void sluice_client_close(sluice_client_t *c)
{
    if (!c || c->_free_requested || c->_end_pending || c->phase >= SHIM_PHASE_CLOSING)
        return;
    list_t *pos, *tmp;
    c->_app_closed = 1;
    if (c->phase != SHIM_PHASE_READY) {
        list_for_each_safe(pos, tmp, &c->_tunnels)
            SHIM_TUNNEL(pos)->_closing = 1;
        shim_client__end(c, SLUICE_CLOSED, SLUICE_FAIL_NONE, "closed by the application");
        return;
    }
    list_for_each_safe(pos, tmp, &c->_tunnels)
        sluice_tunnel_close(SHIM_TUNNEL(pos));
    c->phase = SHIM_PHASE_CLOSING;
    /* RFC 9113 §6.8: we accept no server streams, so last-stream-id is 0. */
    nghttp2_submit_goaway(c->_h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    shim_client__kick(c);
}

void sluice_client_free(sluice_client_t *c)
{
    if (!c || c->_free_requested)
        return;
    if (c->_depth > 0) {
        /* Inside a callback: stop everything now, release from the loop. */
        c->_free_requested = 1;
        client_stop_io(c);
        list_t *pos, *tmp;
        list_for_each_safe(pos, tmp, &c->_tunnels)
            ev_timer_stop(c->loop, &SHIM_TUNNEL(pos)->_timer);
        shim_client__kick(c);
        return;
    }
    client_destroy(c);
}

const char *sluice_client_route(const sluice_client_t *c)
{
    return c->_dial.route && c->phase >= SHIM_PHASE_TLS ? c->_dial.route->label : NULL;
}

int sluice_client_tls_resumed(const sluice_client_t *c)
{
    return c->_resumed;
}

sluice_fail_t sluice_client_failure(const sluice_client_t *c)
{
    return c ? c->_fail : SLUICE_FAIL_NONE;
}

int sluice_client_set_credential(sluice_client_t *c, const char *username,
                                 const char *credential)
{
    char *u, *k;

    if (!c || !shim_tunnel__header_ok(username) || !shim_tunnel__header_ok(credential))
        return SLUICE_ERR_INVALID;
    u = strdup(username);
    k = strdup(credential);
    if (!u || !k) {
        free(u);
        free(k);
        return SLUICE_ERR_NOMEM;
    }
    free(c->_cred_user);
    free(c->_cred);
    c->_cred_user = u;
    c->_cred = k;
    return SLUICE_OK;
}

sluice_state_t sluice_client_state(const sluice_client_t *c)
{
    switch (c->phase) {
    case SHIM_PHASE_WAIT:
        return SLUICE_RECONNECTING;
    case SHIM_PHASE_READY:
    case SHIM_PHASE_CLOSING:
        return SLUICE_CONNECTED;
    case SHIM_PHASE_DONE:
        return c->_end_state;
    default:
        return SLUICE_CONNECTING;
    }
}
