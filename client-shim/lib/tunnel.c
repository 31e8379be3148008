/*
 * tunnel.c — tunnels: one HTTP/2 stream each, `POST /v1/tunnel/{tenant}/
 * {kind}[?region=R]`, capsules both ways (see shim_internal.h).
 *
 * A tunnel's life: submitted (immediately, or when the client connects) ->
 * response 200 (on_open; queued uplink starts to flow) or another status
 * (its text/plain body becomes the reason) -> finished (outcome recorded)
 * -> on_close delivered by the client's deferred work -> freed once nghttp2
 * has closed the stream. Every wait is bounded by the tunnel's timer: the
 * response deadline, then, once finished or closing, the close deadline
 * after which the stream is reset.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim_addr.h"
#include "../../proto/dispatch.h"
#include "../../proto/name.h"
#include "shim_internal.h"

#define DEFAULT_QUEUE_BYTES 65536u
#define DEFAULT_MEDIA_AGE_MS 500u

/* A queue holds at least one largest packet, whatever bound the app asked
 * for; 0 means the default. */
static size_t queue_cap(size_t bytes)
{
    size_t min = PKTQ_RECORD_SIZE(SLUICE_MAX_PAYLOAD);
    if (!bytes)
        bytes = DEFAULT_QUEUE_BYTES;
    return bytes < min ? min : bytes;
}
#define DEFAULT_PING_INTERVAL_MS 20000u
#define DEFAULT_RESPONSE_TIMEOUT_MS 10000u
#define DEFAULT_CLOSE_TIMEOUT_MS 2000u
#define HEADER_VALUE_MAX 1024u

#define SAME_CODE(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME_CODE(SLUICE_CLOSE_NORMAL, CLOSE_NORMAL) &&
                   SAME_CODE(SLUICE_CLOSE_IDLE_TIMEOUT, CLOSE_IDLE_TIMEOUT) &&
                   SAME_CODE(SLUICE_CLOSE_PROTOCOL_ERROR, CLOSE_PROTOCOL_ERROR) &&
                   SAME_CODE(SLUICE_CLOSE_CREDENTIAL_EXPIRED, CLOSE_CREDENTIAL_EXPIRED) &&
                   SAME_CODE(SLUICE_CLOSE_TENANT_DISABLED, CLOSE_TENANT_DISABLED) &&
                   SAME_CODE(SLUICE_CLOSE_BACKEND_UNREACHABLE, CLOSE_BACKEND_UNREACHABLE) &&
                   SAME_CODE(SLUICE_CLOSE_OVERLOAD, CLOSE_OVERLOAD) &&
                   SAME_CODE(SLUICE_CLOSE_SHUTTING_DOWN, CLOSE_SHUTTING_DOWN) &&
                   SAME_CODE(SLUICE_CLOSE_RATE_LIMITED, CLOSE_RATE_LIMITED) &&
                   SAME_CODE(SLUICE_CLOSE_INTERNAL_ERROR, CLOSE_INTERNAL_ERROR),
               "public close codes mirror proto/capsule.h");
_Static_assert(SLUICE_MAX_PAYLOAD + 1 == CAPSULE_DEFAULT_MAX_VALUE,
               "a DATAGRAM value is the context id plus the payload");

/* ---------------------------------------------------------------- internals */

void shim_tunnel__start_timer(sluice_tunnel_t *t, uint32_t ms)
{
    ev_timer_stop(t->client->loop, &t->_timer);
    ev_timer_set(&t->_timer, ms / 1000.0, 0.);
    ev_timer_start(t->client->loop, &t->_timer);
}

void shim_tunnel__finish(sluice_tunnel_t *t, int status, uint64_t code, const char *fmt, ...)
{
    char buf[SHIM_REASON_MAX + 1];
    va_list ap;

    if (t->_finished)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap); /* fmt's arguments may point into _reason */
    va_end(ap);
    /* Reasons come from the gateway and end up in logs. */
    shim__log_safe(t->_reason, sizeof(t->_reason), buf, strlen(buf));
    t->_finished = 1;
    t->_detach = 0;
    t->_wait_submit = 0;
    t->_result_status = status;
    t->_result_code = code;
    ev_timer_stop(t->client->loop, &t->_ping);
    if (t->_stream_gone)
        ev_timer_stop(t->client->loop, &t->_timer);
    else
        shim_tunnel__start_timer(t, t->_close_timeout_ms);
    shim_client__kick(t->client);
}

void shim_tunnel__wake(sluice_tunnel_t *t)
{
    sluice_client_t *c = t->client;

    if (t->stream_id > 0 && !t->_stream_gone && c->_h2)
        nghttp2_session_resume_data(c->_h2, t->stream_id); /* fails harmlessly if not deferred */
    shim_client__kick(c);
}

/* Stops the uplink: queued packets are dropped and the body ends. */
void shim_tunnel__end_uplink(sluice_tunnel_t *t)
{
    sendq_discard(&t->up);
    sendq_finish(&t->up, 0, 0, NULL);
    shim_tunnel__wake(t);
}

/* Frees what sluice_tunnel_open allocated, and t. */
static void tunnel_release(sluice_tunnel_t *t)
{
    free(t->_rbuf);
    free(t->_path);
    free(t->_username);
    free(t->_credential);
    free(t);
}

void shim_tunnel__free(sluice_tunnel_t *t)
{
    sluice_client_t *c = t->client;

    list_remove(&t->_link);
    ev_timer_stop(c->loop, &t->_timer);
    ev_timer_stop(c->loop, &t->_ping);
    sendq_dispose(&t->up);
    tunnel_release(t);
}

void shim_tunnel__submit(sluice_tunnel_t *t)
{
    int rv;

    t->_wait_submit = 0;
    t->_resuming = t->_token[0] != '\0';
    rv = shim_h2__submit(t);

    if (rv < 0)
        shim_tunnel__finish(t, 0, SLUICE_CLOSE_NO_CODE, "cannot send the request: %s",
                            nghttp2_strerror(rv));
}

void shim_tunnel__reset_stream(sluice_tunnel_t *t)
{
    sluice_client_t *c = t->client;

    ev_timer_stop(c->loop, &t->_timer);
    ev_timer_stop(c->loop, &t->_ping);
    t->stream_id = 0;
    t->_stream_gone = 1;
    t->status = t->_hdr_status = 0;
    t->_reason_len = 0;
    t->_reason[0] = '\0';
    t->_hdr_token[0] = '\0';
    t->_hdr_node[0] = '\0';
    t->_hdr_stamps = 0;
    t->_hdr_media_age = 0;
    t->up.stamp_media = 0; /* until the next 200 accepts stamps */
    t->up.media_max_age_ns = t->_media_age_ns;
    t->_rst_after_eof = 0;
    t->_detach = 0;
    t->_resuming = 0;
    t->_ping_sent_ns = 0;
    /* The new stream's bodies start afresh; queued packets wait for it. */
    capsule_reader_init(&t->_reader, t->_rbuf, CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER,
                        CAPSULE_DEFAULT_MAX_VALUE);
    sendq_restart(&t->up);
    t->_wait_submit = 1;
    shim_client__kick(c);
}

void shim_tunnel__detach(sluice_tunnel_t *t)
{
    sluice_client_t *c = t->client;

    if (t->_finished || t->_detach)
        return;
    ev_timer_stop(c->loop, &t->_timer);
    ev_timer_stop(c->loop, &t->_ping);
    if (t->_stream_gone || !c->_h2) {
        shim_tunnel__reset_stream(t);
        return;
    }
    /* RST_STREAM closes the stream at once on our side; on_stream_close then
     * re-arms the tunnel (shim_tunnel__stream_closed). */
    t->_detach = 1;
    nghttp2_submit_rst_stream(c->_h2, NGHTTP2_FLAG_NONE, t->stream_id, NGHTTP2_CANCEL);
    shim_client__kick(c);
}

int shim_tunnel__refused(sluice_tunnel_t *t)
{
    /* 421: another node holds the session; resume there, or else afresh. */
    if (t->status == 421 && t->_resuming && !t->_closing) {
        if (t->_hdr_node[0] && shim_client__redirect(t->client, t->_hdr_node)) {
            shim_tunnel__detach(t); /* token kept: it resumes on the next connection */
            return 1;
        }
        t->status = 410;
    }
    /* 410: the session is unknown or expired; open a fresh tunnel. */
    if (t->status == 410 && t->_resuming && !t->_closing) {
        t->_token[0] = '\0';
        shim_tunnel__detach(t);
        return 1;
    }
    return 0;
}

static void tunnel_on_ping(struct ev_loop *loop, ev_timer *w, int revents)
{
    sluice_tunnel_t *t = container_of(w, sluice_tunnel_t, _ping);
    uint8_t v[8];

    if (t->_finished || t->_closing || t->_detach || t->status != 200)
        return;
    t->_ping_seq++;
    for (int i = 0; i < 8; i++)
        v[i] = (uint8_t)(t->_ping_seq >> (56 - 8 * i));
    if (sendq_push_ping(&t->up, v) != SENDQ_OK)
        return;
    /* One PING outstanding: a newer one replaces an unanswered one. */
    memcpy(t->_ping_value, v, 8);
    t->_ping_sent_ns = compat_mono_ns();
    shim_tunnel__wake(t);
}

void shim_tunnel__opened(sluice_tunnel_t *t)
{
    sluice_client_t *c = t->client;

    if (t->_opened) {
        if (t->_resuming)
            t->resumes++;
        else
            t->reopens++;
    }
    t->_opened = 1;
    /* A resume's 200 names the same session; a fresh one names its own, or
     * none when the gateway does not offer resume. */
    if (t->_hdr_token[0] || !t->_resuming)
        memcpy(t->_token, t->_hdr_token, sizeof(t->_token));
    /* proto/README.md §5.1.1: media goes stamped once the gateway said so;
     * and media older than the gateway's age limit is dropped here, before
     * it costs the path and the gateway anything. */
    t->up.stamp_media = t->_hdr_stamps != 0;
    uint64_t gw_age = (uint64_t)t->_hdr_media_age * 1000000u;
    t->up.media_max_age_ns =
        t->_hdr_stamps && gw_age && gw_age < t->_media_age_ns ? gw_age : t->_media_age_ns;
    if (t->_ping_interval_ms != UINT32_MAX) {
        double iv = t->_ping_interval_ms / 1000.0;
        ev_timer_stop(c->loop, &t->_ping);
        ev_timer_set(&t->_ping, iv, iv);
        ev_timer_start(c->loop, &t->_ping);
    }
    shim_tunnel__on_open(t);
}

void shim_tunnel__on_open(sluice_tunnel_t *t)
{
    sluice_client_t *c = t->client;

    if (t->_finished || c->_free_requested)
        return;
    if (t->_cb.on_open) {
        c->_depth++;
        t->_cb.on_open(t, t->_cb.ud);
        c->_depth--;
    }
    shim_tunnel__wake(t);
}

/* A closing tunnel (sluice_tunnel_close) delivers nothing more but keeps
 * reading the gateway's body to its CLOSE or end: skipping any of it would
 * make the reader parse the rest as garbage (dispatch.h). Once the outcome
 * is decided or the client freed, the body is no longer fed at all. */
static int dl_verdict(const sluice_tunnel_t *t)
{
    if (t->client->_free_requested || t->_finished)
        return DISPATCH_ABANDON;
    return t->_closing ? DISPATCH_MUTE : DISPATCH_CONTINUE;
}

static int dl_packet(void *ud, const uint8_t *p, size_t len, int is_signal)
{
    sluice_tunnel_t *t = ud;
    sluice_client_t *c = t->client;
    int v = dl_verdict(t);

    if (v == DISPATCH_MUTE)
        t->rx_discarded++; /* the first of a later input; dl_skip has the rest */
    if (v != DISPATCH_CONTINUE)
        return v;
    t->rx_packets++;
    t->rx_bytes += len;
    if (t->_cb.on_packet) {
        c->_depth++;
        t->_cb.on_packet(t, p, len, is_signal, t->_cb.ud);
        c->_depth--;
    }
    return dl_verdict(t);
}

static void dl_ping(void *ud, const uint8_t *value)
{
    sluice_tunnel_t *t = ud;

    sendq_push_pong(&t->up, value);
    shim_tunnel__wake(t);
}

static void dl_pong(void *ud, const uint8_t *value)
{
    sluice_tunnel_t *t = ud;
    uint64_t us;

    if (!t->_ping_sent_ns || memcmp(value, t->_ping_value, 8) != 0)
        return; /* not ours, or late: an RTT from it would be wrong */
    us = (compat_mono_ns() - t->_ping_sent_ns) / 1000u;
    t->_ping_sent_ns = 0;
    t->rtt_us = us == 0 ? 1 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (!t->rtt_min_us || t->rtt_us < t->rtt_min_us)
        t->rtt_min_us = t->rtt_us;
}

/* A CLOSE the session outlives: the gateway parked it (proto/README.md §8.1)
 * for a new connection (shutting down) or a fresh credential. */
static int close_resumable(const sluice_tunnel_t *t, uint64_t code)
{
    const sluice_client_t *c = t->client;

    if (t->_closing)
        return 0;
    if (code == SLUICE_CLOSE_SHUTTING_DOWN)
        return shim_client__reconnects(c);
    if (code == SLUICE_CLOSE_CREDENTIAL_EXPIRED)
        return c->_cred != NULL || shim_client__reconnects(c);
    return 0;
}

static void dl_close(void *ud, uint64_t code, const char *reason, size_t len)
{
    sluice_tunnel_t *t = ud;

    if (close_resumable(t, code)) {
        shim_tunnel__detach(t);
        return;
    }
    if (len > SHIM_REASON_MAX)
        len = SHIM_REASON_MAX;
    shim_tunnel__finish(t, 200, code, "%.*s", (int)len, reason);
    /* The gateway is done with the tunnel: end our side without a CLOSE. */
    shim_tunnel__end_uplink(t);
}

/* Unknown capsule types are skipped silently; a DATAGRAM for a context we
 * never registered is a dropped packet, and counted; so is a packet that
 * came after sluice_tunnel_close (muted). */
static void dl_skip(void *ud, enum dispatch_skip why)
{
    sluice_tunnel_t *t = ud;

    if (why == DISPATCH_SKIP_CONTEXT_ID)
        t->rx_dropped++;
    else if (why == DISPATCH_SKIP_MUTED)
        t->rx_discarded++;
}

static const dispatch_ops_t dl_ops = {
    .on_packet = dl_packet,
    .on_ping = dl_ping,
    .on_close = dl_close,
    .on_skip = dl_skip,
    .on_pong = dl_pong,
};

/* A capsule the gateway must not send: CLOSE(protocol error), then reset
 * (RFC 9297 §3.3: a malformed capsule stream is an error for the stream). */
static void tunnel_protocol_error(sluice_tunnel_t *t, const char *desc)
{
    sluice_client_t *c = t->client;

    shim_tunnel__finish(t, 200, SLUICE_CLOSE_PROTOCOL_ERROR, "protocol error from gateway: %s",
                        desc ? desc : "malformed capsule");
    sendq_discard(&t->up);
    if (sendq_eof(&t->up) || sendq_finishing(&t->up)) {
        /* Our side has ended or is ending with another CLOSE: just reset. */
        if (!t->_stream_gone && c->_h2)
            nghttp2_submit_rst_stream(c->_h2, NGHTTP2_FLAG_NONE, t->stream_id,
                                      NGHTTP2_PROTOCOL_ERROR);
        shim_client__kick(c);
        return;
    }
    sendq_finish(&t->up, 1, SLUICE_CLOSE_PROTOCOL_ERROR, desc);
    t->_rst_after_eof = 1;
    shim_tunnel__wake(t);
}

void shim_tunnel__body(sluice_tunnel_t *t, const uint8_t *data, size_t len)
{
    const char *err = NULL;
    int rc;

    if (t->_finished || t->_detach)
        return;
    if (t->status != 200) {
        /* A refusal's text/plain body: keep the first SHIM_REASON_MAX bytes. */
        size_t room = SHIM_REASON_MAX - t->_reason_len;
        if (len > room)
            len = room;
        memcpy(t->_reason + t->_reason_len, data, len);
        t->_reason_len += len;
        t->_reason[t->_reason_len] = '\0';
        return;
    }
    rc = dispatch_feed(&t->_reader, data, len, &dl_ops, t, &err);
    if (rc < 0)
        tunnel_protocol_error(t, err);
}

/* The refusal's reason: its body, or a stand-in when it had none. */
static const char *refusal_reason(sluice_tunnel_t *t)
{
    t->_reason[t->_reason_len] = '\0';
    return t->_reason_len ? t->_reason : "(no reason given)";
}

void shim_tunnel__remote_end(sluice_tunnel_t *t)
{
    if (t->_detach)
        return; /* the stream is being reset; t lives on */
    if (t->status != 200)
        shim_tunnel__finish(t, t->status, SLUICE_CLOSE_NO_CODE, "%s", refusal_reason(t));
    else if (capsule_reader_pending(&t->_reader))
        shim_tunnel__finish(t, 200, SLUICE_CLOSE_NO_CODE,
                            "gateway ended the tunnel in the middle of a capsule");
    else if (t->_closing)
        shim_tunnel__finish(t, 200, SLUICE_CLOSE_NORMAL, "closed by the application");
    else
        shim_tunnel__finish(t, 200, SLUICE_CLOSE_NO_CODE, "gateway ended the tunnel without CLOSE");
    shim_tunnel__end_uplink(t);
}

void shim_tunnel__stream_closed(sluice_tunnel_t *t, uint32_t error_code)
{
    if (t->_detach && !t->_finished) {
        shim_tunnel__reset_stream(t);
        return;
    }
    t->_stream_gone = 1;
    ev_timer_stop(t->client->loop, &t->_timer);
    if (t->status == 0) {
        if (error_code == NGHTTP2_REFUSED_STREAM)
            shim_tunnel__finish(t, 0, SLUICE_CLOSE_NO_CODE,
                                "gateway did not accept the stream (REFUSED_STREAM)");
        else
            shim_tunnel__finish(t, 0, SLUICE_CLOSE_NO_CODE, "stream reset before a response: %s",
                                nghttp2_http2_strerror(error_code));
    } else if (t->status != 200) {
        shim_tunnel__finish(t, t->status, SLUICE_CLOSE_NO_CODE, "%s", refusal_reason(t));
    } else if (t->_closing && error_code == NGHTTP2_NO_ERROR) {
        shim_tunnel__finish(t, 200, SLUICE_CLOSE_NORMAL, "closed by the application");
    } else {
        shim_tunnel__finish(t, 200, SLUICE_CLOSE_NO_CODE, "stream reset: %s",
                            nghttp2_http2_strerror(error_code));
    }
    shim_client__kick(t->client);
}

static void tunnel_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    sluice_tunnel_t *t = container_of(w, sluice_tunnel_t, _timer);
    sluice_client_t *c = t->client;

    if (t->status == 0)
        shim_tunnel__finish(t, 0, SLUICE_CLOSE_NO_CODE, "no response from the gateway within %u ms",
                            (unsigned)t->_response_timeout_ms);
    else if (t->_closing)
        shim_tunnel__finish(t, t->status, SLUICE_CLOSE_NORMAL,
                            "closed by the application (gateway did not confirm within %u ms)",
                            (unsigned)t->_close_timeout_ms);
    else
        shim_tunnel__finish(t, t->status, SLUICE_CLOSE_NO_CODE, "timed out");
    ev_timer_stop(loop, &t->_timer);
    if (!t->_stream_gone && c->_h2)
        nghttp2_submit_rst_stream(c->_h2, NGHTTP2_FLAG_NONE, t->stream_id, NGHTTP2_CANCEL);
    shim_client__kick(c);
}

/* ---------------------------------------------------------------- API */

const char *sluice_close_name(uint64_t code)
{
    return code == SLUICE_CLOSE_NO_CODE ? "none" : capsule_close_name(code);
}

/* Header values go on the wire as given: non-empty, bounded, no control
 * characters (RFC 9110 §5.5). */
int shim_tunnel__header_ok(const char *s)
{
    size_t n = 0;

    if (!s || !*s)
        return 0;
    for (; *s; s++, n++)
        if (n >= HEADER_VALUE_MAX || (unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

sluice_tunnel_t *sluice_tunnel_open(sluice_client_t *c, const sluice_tunnel_opts_t *o)
{
    const char *region;
    sluice_tunnel_t *t;
    size_t plen;

    if (!c || !o || !shim_client__usable(c))
        return NULL;
    region = o->region && *o->region ? o->region : NULL;
    /* Tenant and region follow the gateway's name rule (proto/name.h). */
    if (!o->tenant || !name_valid(o->tenant, strlen(o->tenant)) ||
        !shim_token_valid(o->kind, 32) || (region && !name_valid(region, strlen(region))) ||
        !shim_tunnel__header_ok(o->username) || !shim_tunnel__header_ok(o->credential))
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->client = c;
    t->_cb = *o;
    t->_cb.tenant = t->_cb.kind = t->_cb.region = NULL;
    t->_cb.username = t->_cb.credential = NULL;
    plen = strlen("/v1/tunnel///?region=") + strlen(o->tenant) + strlen(o->kind) +
           (region ? strlen(region) : 0) + 1;
    t->_path = malloc(plen);
    t->_username = strdup(o->username);
    t->_credential = strdup(o->credential);
    t->_rbuf = malloc(CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER);
    if (!t->_path || !t->_username || !t->_credential || !t->_rbuf) {
        tunnel_release(t);
        return NULL;
    }
    snprintf(t->_path, plen, "/v1/tunnel/%s/%s%s%s", o->tenant, o->kind,
             region ? "?region=" : "", region ? region : "");
    capsule_reader_init(&t->_reader, t->_rbuf, CAPSULE_DEFAULT_MAX_VALUE + CAPSULE_MAX_HEADER,
                        CAPSULE_DEFAULT_MAX_VALUE);
    t->_media_age_ns =
        (uint64_t)(o->media_max_age_ms ? o->media_max_age_ms : DEFAULT_MEDIA_AGE_MS) * 1000000u;
    sendq_init(&t->up, queue_cap(o->media_queue_bytes), queue_cap(o->signal_queue_bytes),
               SLUICE_MAX_PAYLOAD, t->_media_age_ns, NULL, NULL);
    t->_response_timeout_ms =
        o->response_timeout_ms ? o->response_timeout_ms : DEFAULT_RESPONSE_TIMEOUT_MS;
    t->_close_timeout_ms = o->close_timeout_ms ? o->close_timeout_ms : DEFAULT_CLOSE_TIMEOUT_MS;
    ev_init(&t->_timer, tunnel_on_timer);
    ev_init(&t->_ping, tunnel_on_ping);
    t->_ping_interval_ms = o->ping_interval_ms ? o->ping_interval_ms : DEFAULT_PING_INTERVAL_MS;
    t->_stream_gone = 1; /* until submitted */
    t->_wait_submit = 1;

    list_append(&c->_tunnels, &t->_link);

    if (c->phase == SHIM_PHASE_READY)
        shim_tunnel__submit(t);
    shim_client__kick(c);
    return t;
}

int sluice_tunnel_send(sluice_tunnel_t *t, const uint8_t *p, size_t len)
{
    if (!t || (!p && len))
        return SLUICE_ERR_INVALID;
    if (t->_closing || t->_finished || t->client->_free_requested)
        return SLUICE_ERR_STATE;
    switch (sendq_push(&t->up, p, len, compat_mono_ns())) {
    case SENDQ_OK:
        if (t->status == 200)
            shim_tunnel__wake(t);
        return SLUICE_OK;
    case SENDQ_FULL:
        return SLUICE_ERR_FULL;
    case SENDQ_TOO_BIG:
        return SLUICE_ERR_TOO_BIG;
    case SENDQ_NOMEM:
        return SLUICE_ERR_NOMEM;
    default:
        return SLUICE_ERR_STATE;
    }
}

void sluice_tunnel_close(sluice_tunnel_t *t)
{
    sluice_client_t *c;

    if (!t || t->_closing || t->_finished)
        return;
    c = t->client;
    t->_closing = 1;
    if (t->stream_id == 0 || t->_stream_gone || t->_detach) {
        /* Not attached (waiting for a connection, or its stream being
         * reset): the gateway's parked session expires on its own. */
        shim_tunnel__finish(t, 0, SLUICE_CLOSE_NORMAL, "closed by the application");
    } else if (t->status == 0) {
        /* No answer yet: cancel the request rather than open and close. */
        if (c->_h2)
            nghttp2_submit_rst_stream(c->_h2, NGHTTP2_FLAG_NONE, t->stream_id, NGHTTP2_CANCEL);
        shim_tunnel__finish(t, 0, SLUICE_CLOSE_NORMAL, "closed by the application");
    } else if (t->status == 200) {
        /* Queued packets first, then CLOSE(normal) and END_STREAM. */
        sendq_finish(&t->up, 1, SLUICE_CLOSE_NORMAL, NULL);
        shim_tunnel__start_timer(t, t->_close_timeout_ms);
        shim_tunnel__wake(t);
    }
    shim_client__kick(c);
}

void sluice_tunnel_stats(const sluice_tunnel_t *t, sluice_tunnel_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->tx_packets = t->up.tx_packets;
    out->tx_bytes = t->up.tx_bytes;
    out->rx_packets = t->rx_packets;
    out->rx_bytes = t->rx_bytes;
    out->rx_dropped = t->rx_dropped;
    out->rx_discarded = t->rx_discarded;
    out->dropped_media = t->up.drops[SENDQ_DROP_MEDIA_EVICTED] + t->up.drops[SENDQ_DROP_MEDIA_EXPIRED];
    out->dropped_signal = t->up.drops[SENDQ_DROP_SIGNAL_FULL];
    out->queued_bytes = sendq_queued(&t->up);
    out->rtt_us = t->rtt_us;
    out->rtt_min_us = t->rtt_min_us;
    out->resumes = t->resumes;
    out->reopens = t->reopens;
}

int32_t sluice_tunnel_stream_id(const sluice_tunnel_t *t)
{
    return t->stream_id;
}
