/*
 * h2.c — the connection's nghttp2 client session: callbacks and requests.
 *
 * The session does no I/O (client.c feeds it with mem_recv and drains it
 * with mem_send). Each tunnel is the user data of its stream. Callbacks only
 * record what happened on the tunnel and kick the client; nothing is freed
 * here (tunnel.c and client.c's deferred work do that).
 */
#include <stdio.h>
#include <string.h>

#include "../../proto/token.h"
#include "shim_addr.h"
#include "shim_internal.h"

static sluice_tunnel_t *stream_tunnel(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

/* Keeps a tunnel-session value when it is a token (proto/token.h, the
 * gateway's own codec); anything else is ignored, so resume is simply not
 * used. */
static void shim_session_token(const uint8_t *v, size_t n, char *out, size_t cap)
{
    uint8_t raw[TOKEN_BYTES];

    out[0] = '\0';
    if (n >= cap || token_decode((const char *)v, n, raw) != 0)
        return;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* A tunnel-media-age value: 1 to 60000 ms in plain digits; else 0 (ignored). */
static uint32_t shim_media_age(const uint8_t *v, size_t n)
{
    uint32_t ms = 0;

    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        ms = ms * 10 + (uint32_t)(v[i] - '0');
    }
    return ms <= 60000 ? ms : 0;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    sluice_tunnel_t *t;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_RESPONSE)
        return 0;
    t = stream_tunnel(s, f->hd.stream_id);
    /* nghttp2 has checked that :status is three digits (RFC 9113 §8.3.2). */
    if (!t)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
        t->_hdr_status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    else if (namelen == 14 && memcmp(name, "tunnel-session", 14) == 0)
        shim_session_token(value, valuelen, t->_hdr_token, sizeof(t->_hdr_token));
    else if (namelen == 13 && memcmp(name, "tunnel-stamps", 13) == 0)
        t->_hdr_stamps = valuelen == 2 && memcmp(value, "?1", 2) == 0;
    else if (namelen == 16 && memcmp(name, "tunnel-media-age", 16) == 0)
        t->_hdr_media_age = shim_media_age(value, valuelen);
    else if (namelen == 11 && memcmp(name, "tunnel-node", 11) == 0 &&
             valuelen < sizeof(t->_hdr_node)) /* checked by shim_client__redirect */
        snprintf(t->_hdr_node, sizeof(t->_hdr_node), "%.*s", (int)valuelen, (const char *)value);
    return 0;
}

static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    sluice_client_t *c = ud;
    sluice_tunnel_t *t;

    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        t = stream_tunnel(s, f->hd.stream_id);
        if (!t || t->_detach)
            break;
        if (f->headers.cat == NGHTTP2_HCAT_RESPONSE && t->status == 0 && t->_hdr_status >= 200) {
            t->status = t->_hdr_status;
            ev_timer_stop(c->loop, &t->_timer);
            if (t->status == 200)
                shim_tunnel__opened(t);
            else if (shim_tunnel__refused(t))
                break;
        }
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            shim_tunnel__remote_end(t);
        break;
    case NGHTTP2_DATA:
        t = stream_tunnel(s, f->hd.stream_id);
        if (t && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            shim_tunnel__remote_end(t);
        break;
    case NGHTTP2_GOAWAY: {
        char dbg[128];
        shim__log_safe(dbg, sizeof(dbg), (const char *)f->goaway.opaque_data,
                       f->goaway.opaque_data_len);
        c->_goaway_recv = 1;
        c->_goaway_code = f->goaway.error_code;
        snprintf(c->_goaway, sizeof(c->_goaway), "gateway sent GOAWAY (%s)%s%s",
                 nghttp2_http2_strerror(f->goaway.error_code), dbg[0] ? ": " : "", dbg);
        break;
    }
    default:
        break;
    }
    shim_client__kick(c);
    return 0;
}

static int h2_on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                            const uint8_t *data, size_t len, void *ud)
{
    sluice_client_t *c = ud;
    sluice_tunnel_t *t = stream_tunnel(s, stream_id);

    if (t && !c->_free_requested)
        shim_tunnel__body(t, data, len);
    return 0;
}

static int h2_on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                              void *ud)
{
    sluice_tunnel_t *t = stream_tunnel(s, stream_id);

    if (t)
        shim_tunnel__stream_closed(t, error_code);
    return 0;
}

static int h2_on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    sluice_tunnel_t *t;

    if (f->hd.type != NGHTTP2_DATA || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    t = stream_tunnel(s, f->hd.stream_id);
    if (t && t->_rst_after_eof) {
        /* The CLOSE(protocol error) is out: now abandon the response. */
        t->_rst_after_eof = 0;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
    }
    return 0;
}

static int h2_on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int lib_error,
                                void *ud)
{
    sluice_tunnel_t *t;

    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    /* A request refused before its stream was opened (e.g. after GOAWAY) has
     * no stream user data and gets no on_stream_close: find it ourselves. */
    sluice_client_t *c = ud;
    list_t *pos, *tmp;
    t = NULL;
    list_for_each_safe(pos, tmp, &c->_tunnels) {
        if (SHIM_TUNNEL(pos)->stream_id == f->hd.stream_id) {
            t = SHIM_TUNNEL(pos);
            break;
        }
    }
    if (!t)
        return 0;
    if (!nghttp2_session_find_stream(s, f->hd.stream_id))
        t->_stream_gone = 1;
    shim_tunnel__finish(t, 0, SLUICE_CLOSE_NO_CODE, "request not sent: %s",
                        nghttp2_strerror(lib_error));
    return 0;
}

/* The request body: a long-lived provider that defers while the uplink is
 * empty and is resumed by shim_tunnel__wake. Nothing is sent before the 200
 * unless the body is being ended. */
static ssize_t h2_read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
    sluice_tunnel_t *t = source->ptr;
    size_t n;
    int eof;

    if (t->_detach || (t->status != 200 && !sendq_finishing(&t->up)))
        return NGHTTP2_ERR_DEFERRED;
    n = sendq_fill(&t->up, buf, length, compat_mono_ns(), &eof);
    if (eof) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

int shim_h2__session_new(sluice_client_t *c, char *err, size_t errlen)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, SHIM_STREAM_WINDOW},
    };
    int rv;

    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, h2_on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, h2_on_frame_not_send);
    rv = nghttp2_session_client_new(&c->_h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        snprintf(err, errlen, "cannot create HTTP/2 session: %s", nghttp2_strerror(rv));
        c->_h2 = NULL;
        return -1;
    }
    rv = nghttp2_submit_settings(c->_h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(c->_h2, NGHTTP2_FLAG_NONE, 0,
                                                   SHIM_CONN_WINDOW);
    if (rv != 0) {
        snprintf(err, errlen, "cannot start HTTP/2: %s", nghttp2_strerror(rv));
        nghttp2_session_del(c->_h2);
        c->_h2 = NULL;
        return -1;
    }
    return 0;
}

#define NV(n, v, fl)                                                                   \
    {                                                                                  \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE | (fl) \
    }

/* The tunnel-fallback token of f (proto/README.md §2.1), or NULL. */
static const char *fallback_token(sluice_fallback_t f)
{
    static const char *const names[] = {
        [SLUICE_FALLBACK_FORCED] = "forced",
        [SLUICE_FALLBACK_UDP_BLOCKED] = "udp_blocked",
        [SLUICE_FALLBACK_UDP_REFUSED] = "udp_refused",
        [SLUICE_FALLBACK_NO_ANSWER] = "no_answer",
        [SLUICE_FALLBACK_DIRECT_SILENT] = "direct_silent",
        [SLUICE_FALLBACK_UDP_ERROR] = "udp_error",
    };
    return (unsigned)f < sizeof(names) / sizeof(names[0]) ? names[f] : NULL;
}

int shim_h2__submit(sluice_tunnel_t *t)
{
    sluice_client_t *c = t->client;
    const char *fallback = fallback_token(t->_cb.fallback);
    const proxy_route_t *route = c->_dial.route;
    nghttp2_nv nva[11] = {
        NV(":method", "POST", 0),
        NV(":scheme", "https", 0),
        NV(":authority", c->_authority, 0),
        NV(":path", t->_path, 0),
        NV("content-type", "application/octet-stream", 0),
        /* sluice_client_set_credential's, when given, replaces the tunnel's. */
        NV("tunnel-username", c->_cred_user ? c->_cred_user : t->_username, 0),
        /* RFC 7541 §7.1.3: keep the secret out of the HPACK tables. */
        NV("tunnel-credential", c->_cred ? c->_cred : t->_credential, NGHTTP2_NV_FLAG_NO_INDEX),
    };
    size_t nvlen = 7;
    /* proto/README.md §5.1.1: offer stamped media, so that the gateway can
     * drop what waited too long on this side of it. */
    nva[nvlen++] = (nghttp2_nv)NV("tunnel-stamps", "?1", 0);
    /* proto/README.md §2.1: reports for the operator's relay share. */
    if (fallback)
        nva[nvlen++] = (nghttp2_nv)NV("tunnel-fallback", fallback, 0);
    if (route)
        nva[nvlen++] = (nghttp2_nv)NV("tunnel-route", route->direct ? "direct" : "proxy", 0);
    /* proto/README.md §8.1: re-attach the parked session. */
    if (t->_token[0])
        nva[nvlen++] = (nghttp2_nv)NV("tunnel-resume", t->_token, NGHTTP2_NV_FLAG_NO_INDEX);
    nghttp2_data_provider body = {.source.ptr = t, .read_callback = h2_read_body};
    int32_t id = nghttp2_submit_request(c->_h2, NULL, nva, nvlen, &body, t);

    if (id < 0)
        return id;
    t->stream_id = id;
    t->_stream_gone = 0;
    shim_tunnel__start_timer(t, t->_response_timeout_ms);
    return 0;
}
