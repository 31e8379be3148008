/*
 * ts_h2raw.c — see ts_h2raw.h.
 */
#include "ts_h2raw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ts_util.h"

/* RFC 9113 §3.4: the client connection preface. */
#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define FRAME_HEADER 9u
#define READS_PER_POLL 64   /* TLS reads per ts_h2raw_poll, so one poll is bounded */
#define POLL_SLICE_MS 100   /* a blocked write re-checks its deadline this often */

static void set_err(ts_h2raw_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(ts_h2raw_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

/* The reason for a failed TLS call: OpenSSL's queue, else errno, else EOF. */
static const char *tls_reason(int ssl_err, char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e) {
        ERR_error_string_n(e, buf, cap);
    } else if (ssl_err == SSL_ERROR_SYSCALL && errno) {
        snprintf(buf, cap, "%s", strerror(errno));
    } else if (ssl_err == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, cap, "the peer sent close_notify");
    } else {
        snprintf(buf, cap, "the peer closed the connection");
    }
    return buf;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* RFC 9113 §4.1: Length (24), Type (8), Flags (8), R (1) + Stream Identifier (31). */
static void frame_header(uint8_t *p, size_t len, uint8_t type, uint8_t flags, int32_t stream)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    put32(p + 5, (uint32_t)stream & 0x7fffffffu);
}

static ts_h2raw_stream_t *stream_slot(ts_h2raw_t *c, int32_t id)
{
    if (id == 0) /* the connection: no stream record (id 0 marks a free slot) */
        return NULL;
    for (size_t i = 0; i < TS_H2RAW_STREAMS; i++)
        if (c->streams[i].id == id)
            return &c->streams[i];
    for (size_t i = 0; i < TS_H2RAW_STREAMS; i++) {
        if (c->streams[i].id == 0) {
            c->streams[i].id = id;
            return &c->streams[i];
        }
    }
    return NULL;
}

const ts_h2raw_stream_t *ts_h2raw_stream(const ts_h2raw_t *c, int32_t stream_id)
{
    for (size_t i = 0; i < TS_H2RAW_STREAMS; i++)
        if (stream_id != 0 && c->streams[i].id == stream_id)
            return &c->streams[i];
    return NULL;
}

/* ---- writing ----------------------------------------------------------------- */

static int read_some(ts_h2raw_t *c);

/* Writes p[0..len) through TLS. While the socket is full, reads what the
 * gateway sends (so it is never blocked on us). Returns 0 or -1. */
static int write_all(ts_h2raw_t *c, const uint8_t *p, size_t len)
{
    SSL *ssl = c->_ssl;
    int64_t deadline = ts_deadline(c->io_timeout_ms);
    while (len > 0) {
        if (c->closed || c->_wdead) {
            set_err(c, "write: the connection is %s", c->closed ? "closed" : "broken");
            errno = EPIPE;
            return -1;
        }
        ERR_clear_error();
        errno = 0;
        /* Without SSL_MODE_ENABLE_PARTIAL_WRITE a write succeeds whole; a
         * retry after WANT_* passes the same arguments, as OpenSSL requires. */
        int n = SSL_write(ssl, p, len > INT_MAX ? INT_MAX : (int)len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        int e = SSL_get_error(ssl, n);
        if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
            /* The gateway hung up. What it sent before (a GOAWAY) may still
             * be waiting in the socket: only the read side decides closed. */
            char why[160];
            set_err(c, "write: %s", tls_reason(e, why, sizeof why));
            c->_wdead = 1;
            errno = EPIPE;
            return -1;
        }
        int left = ts_remaining_ms(deadline);
        if (left == 0) {
            set_err(c, "write: blocked for %d ms", c->io_timeout_ms);
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT | POLLIN};
        poll(&pfd, 1, left < POLL_SLICE_MS ? left : POLL_SLICE_MS);
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
            read_some(c);
    }
    return 0;
}

int ts_h2raw_flush(ts_h2raw_t *c)
{
    if (!c->_open || !c->_ssl) {
        set_err(c, "flush: not connected");
        errno = ENOTCONN;
        return -1;
    }
    /* Frames queued while writing (acknowledgements read meanwhile) land after
     * the bytes being written; they go out in the next round. */
    for (int round = 0; round < 8 && c->_out_len > 0; round++) {
        size_t n = c->_out_len;
        if (write_all(c, c->_out, n) < 0)
            return -1;
        memmove(c->_out, c->_out + n, c->_out_len - n);
        c->_out_len -= n;
    }
    return 0;
}

/* Appends raw bytes to the output buffer (flushing first when full). */
static int queue_bytes(ts_h2raw_t *c, const uint8_t *hd, size_t hdlen, const void *payload,
                       size_t len)
{
    if (!c->_open || !c->_ssl || c->closed || c->_wdead) {
        set_err(c, "queue: the connection is %s",
                c->closed ? "closed" : c->_wdead ? "broken" : "not open");
        errno = c->closed ? EPIPE : ENOTCONN;
        return -1;
    }
    if (c->_out_len + hdlen + len > sizeof c->_out) {
        if (c->_in_frame) /* never write from inside frame processing */
            return -1;
        if (ts_h2raw_flush(c) < 0)
            return -1;
        if (hdlen + len > sizeof c->_out) /* too big to buffer: straight out */
            return write_all(c, hd, hdlen) < 0 || write_all(c, payload, len) < 0 ? -1 : 0;
    }
    memcpy(c->_out + c->_out_len, hd, hdlen);
    c->_out_len += hdlen;
    if (len)
        memcpy(c->_out + c->_out_len, payload, len);
    c->_out_len += len;
    return 0;
}

int ts_h2raw_queue_frame(ts_h2raw_t *c, uint8_t type, uint8_t flags, int32_t stream_id,
                         const void *payload, size_t len)
{
    if (len > 0xffffffu) {
        set_err(c, "frame payload of %zu bytes does not fit a 24-bit length", len);
        errno = EINVAL;
        return -1;
    }
    uint8_t hd[FRAME_HEADER];
    frame_header(hd, len, type, flags, stream_id);
    if (queue_bytes(c, hd, sizeof hd, payload, len) < 0)
        return -1;
    if (type == NGHTTP2_HEADERS || type == NGHTTP2_PUSH_PROMISE || type == NGHTTP2_CONTINUATION)
        c->_out_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
    return 0;
}

int ts_h2raw_send_frame(ts_h2raw_t *c, uint8_t type, uint8_t flags, int32_t stream_id,
                        const void *payload, size_t len)
{
    if (ts_h2raw_queue_frame(c, type, flags, stream_id, payload, len) < 0)
        return -1;
    return ts_h2raw_flush(c);
}

ssize_t ts_h2raw_hpack(ts_h2raw_t *c, const nghttp2_nv *nva, size_t nvlen, uint8_t *out,
                       size_t cap)
{
    ssize_t n = nghttp2_hd_deflate_hd(c->_deflater, out, cap, nva, nvlen);
    if (n < 0) {
        set_err(c, "HPACK deflate: %s", nghttp2_strerror((int)n));
        return -1;
    }
    return n;
}

int ts_h2raw_queue_block(ts_h2raw_t *c, int32_t stream_id, const uint8_t *block, size_t n,
                         unsigned flags)
{
    /* RFC 9113 §6.10: a block larger than one frame continues in
     * CONTINUATION frames; END_HEADERS marks its last frame. */
    size_t off = 0;
    int rc = 0;
    for (int first = 1; rc == 0 && (first || off < n); first = 0) {
        size_t k = n - off;
        if (k > TS_H2RAW_FRAME_MAX)
            k = TS_H2RAW_FRAME_MAX;
        uint8_t f = 0;
        if (first && (flags & TS_H2RAW_END_STREAM))
            f |= NGHTTP2_FLAG_END_STREAM;
        if (off + k == n && !(flags & TS_H2RAW_NO_END_HEADERS))
            f |= NGHTTP2_FLAG_END_HEADERS;
        rc = ts_h2raw_queue_frame(c, first ? NGHTTP2_HEADERS : NGHTTP2_CONTINUATION, f,
                                  stream_id, block + off, k);
        off += k;
    }
    return rc;
}

size_t ts_h2raw_hpack_bomb(uint8_t *out, const char *path, int define, size_t refs)
{
    size_t n = 0, plen = strlen(path);
    if (plen > 126)
        plen = 126; /* one length byte (RFC 7541 §5.1, 7-bit prefix) */
    out[n++] = 0x80 | 3; /* :method POST, static index 3 (§6.1) */
    out[n++] = 0x80 | 7; /* :scheme https, static index 7 */
    out[n++] = 0x04;     /* :path, literal without indexing, name index 4 (§6.2.2) */
    out[n++] = (uint8_t)plen;
    memcpy(out + n, path, plen);
    n += plen;
    if (define) {
        /* x-bomb: 4,000 bytes, literal with incremental indexing, new name
         * (§6.2.1): it becomes dynamic index 62 (§2.3.3). */
        out[n++] = 0x40;
        out[n++] = 6;
        memcpy(out + n, "x-bomb", 6);
        n += 6;
        out[n++] = 0x7f; /* 4000 = 127 + 3873 (§5.1) */
        out[n++] = 0x80 | (3873 & 0x7f);
        out[n++] = 3873 >> 7;
        memset(out + n, 'x', 4000);
        n += 4000;
    }
    memset(out + n, 0x80 | 62, refs); /* one byte, 4,038 bytes of header list each */
    return n + refs;
}

static int headers_impl(ts_h2raw_t *c, int32_t stream_id, const nghttp2_nv *nva, size_t nvlen,
                        unsigned flags, int flush)
{
    size_t cap = nghttp2_hd_deflate_bound(c->_deflater, nva, nvlen);
    uint8_t *block = malloc(cap ? cap : 1);
    if (!block) {
        set_err(c, "headers: out of memory");
        return -1;
    }
    ssize_t n = ts_h2raw_hpack(c, nva, nvlen, block, cap);
    int rc = n < 0 ? -1 : ts_h2raw_queue_block(c, stream_id, block, (size_t)n, flags);
    free(block);
    if (rc == 0 && flush)
        rc = ts_h2raw_flush(c);
    return rc;
}

int ts_h2raw_headers(ts_h2raw_t *c, int32_t stream_id, const nghttp2_nv *nva, size_t nvlen,
                     unsigned flags)
{
    return headers_impl(c, stream_id, nva, nvlen, flags, 1);
}

static int request_impl(ts_h2raw_t *c, int32_t stream_id, const char *path,
                        const char *username, const char *credential, const char *resume,
                        unsigned flags, int flush)
{
#define NV(n, v)                                                                          \
    {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":authority", "sluice"),
        NV(":path", path),
        NV("tunnel-username", username),
        NV("tunnel-credential", credential),
        NV("tunnel-resume", resume ? resume : ""),
    };
#undef NV
    size_t n = sizeof nva / sizeof nva[0] - (resume ? 0 : 1);
    return headers_impl(c, stream_id, nva, n, flags, flush);
}

int ts_h2raw_request(ts_h2raw_t *c, int32_t stream_id, const char *path, const char *username,
                     const char *credential, unsigned flags)
{
    return request_impl(c, stream_id, path, username, credential, NULL, flags, 1);
}

int ts_h2raw_request_resume(ts_h2raw_t *c, int32_t stream_id, const char *path,
                            const char *username, const char *credential, const char *resume,
                            unsigned flags)
{
    return request_impl(c, stream_id, path, username, credential, resume, flags, 1);
}

int ts_h2raw_queue_request(ts_h2raw_t *c, int32_t stream_id, const char *path,
                           const char *username, const char *credential, unsigned flags)
{
    return request_impl(c, stream_id, path, username, credential, NULL, flags, 0);
}

/* ---- reading ----------------------------------------------------------------- */

static void bad_frame(ts_h2raw_t *c, const char *why)
{
    if (!c->bad_frame)
        set_err(c, "from the gateway: %s", why);
    c->bad_frame = 1;
}

/* A complete header block from the gateway: decode it for :status and
 * tunnel-session. */
static void header_block_done(ts_h2raw_t *c)
{
    ts_h2raw_stream_t *s = stream_slot(c, c->_block_stream);
    const uint8_t *in = c->_block;
    size_t left = c->_block_len;
    /* Bounded: every field takes at least one byte, and the final call
     * consumes nothing. */
    for (size_t i = 0; i <= c->_block_len + 1; i++) {
        nghttp2_nv nv;
        int fl = 0;
        ssize_t r = nghttp2_hd_inflate_hd2(c->_inflater, &nv, &fl, in, left, 1);
        if (r < 0) {
            bad_frame(c, "HPACK decoding failed");
            break;
        }
        in += r;
        left -= (size_t)r;
        if ((fl & NGHTTP2_HD_INFLATE_EMIT) && s && s->status == 0 && nv.namelen == 7 &&
            memcmp(nv.name, ":status", 7) == 0) {
            int status = 0;
            for (size_t k = 0; k < nv.valuelen && k < 3; k++)
                status = status * 10 + (nv.value[k] - '0');
            s->status = status;
        }
        if ((fl & NGHTTP2_HD_INFLATE_EMIT) && s && nv.namelen == 14 &&
            memcmp(nv.name, "tunnel-session", 14) == 0)
            snprintf(s->session, sizeof s->session, "%.*s", (int)nv.valuelen,
                     (const char *)nv.value);
        if (fl & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(c->_inflater);
            break;
        }
        if (r == 0 && left == 0 && !(fl & NGHTTP2_HD_INFLATE_EMIT))
            break;
    }
    if (s && (c->_block_flags & NGHTTP2_FLAG_END_STREAM))
        s->end_stream = 1;
    c->_block_stream = 0;
    c->_block_len = 0;
}

static void block_append(ts_h2raw_t *c, const uint8_t *p, size_t len)
{
    if (c->_block_len + len > sizeof c->_block) {
        bad_frame(c, "a header block larger than the reassembly buffer");
        return;
    }
    memcpy(c->_block + c->_block_len, p, len);
    c->_block_len += len;
}

/* Strips RFC 9113 §6.1 padding (PADDED flag). Returns 0, or -1 when malformed. */
static int strip_padding(uint8_t flags, const uint8_t **p, size_t *len)
{
    if (!(flags & NGHTTP2_FLAG_PADDED))
        return 0;
    if (*len < 1 || (size_t)(*p)[0] + 1 > *len)
        return -1;
    size_t pad = (*p)[0];
    *p += 1;
    *len -= 1 + pad;
    return 0;
}

static void queue_auto(ts_h2raw_t *c, uint8_t type, uint8_t flags, int32_t stream,
                       const void *payload, size_t len)
{
    /* RFC 9113 §6.10: nothing may come between the frames of a header
     * block, so while the test's block is open the answer is skipped, as it
     * is when the output buffer is full: the gateway then sees a client that
     * did not answer, never a framing error the test did not ask for. */
    if (c->_out_block) {
        c->auto_skipped++;
        return;
    }
    if (ts_h2raw_queue_frame(c, type, flags, stream, payload, len) < 0)
        c->auto_skipped++;
}

static void on_frame(ts_h2raw_t *c, uint8_t type, uint8_t flags, int32_t sid, const uint8_t *p,
                     size_t len)
{
    c->frames_in[type < 10 ? type : 10]++;
    if (c->_block_stream && type != NGHTTP2_CONTINUATION) {
        bad_frame(c, "a frame inside a header block (RFC 9113 §6.10)");
        c->_block_stream = 0;
        c->_block_len = 0;
    }
    size_t flen = len;
    ts_h2raw_stream_t *s;
    switch (type) {
    case NGHTTP2_DATA:
        if (strip_padding(flags, &p, &len) < 0) {
            bad_frame(c, "DATA padding longer than the frame");
            return;
        }
        s = stream_slot(c, sid);
        if (s) {
            size_t k = len;
            if (k > sizeof s->body - s->body_len)
                k = sizeof s->body - s->body_len;
            memcpy(s->body + s->body_len, p, k);
            s->body_len += k;
            s->body_over += len - k;
            if (flags & NGHTTP2_FLAG_END_STREAM)
                s->end_stream = 1;
        }
        if (c->auto_window && flen > 0) {
            /* RFC 9113 §6.9: return the credit the frame used, on the
             * connection and, while the stream is open, on the stream. */
            uint8_t inc[4];
            put32(inc, (uint32_t)flen);
            queue_auto(c, NGHTTP2_WINDOW_UPDATE, 0, 0, inc, sizeof inc);
            if (!(flags & NGHTTP2_FLAG_END_STREAM))
                queue_auto(c, NGHTTP2_WINDOW_UPDATE, 0, sid, inc, sizeof inc);
        }
        return;
    case NGHTTP2_HEADERS:
        if (strip_padding(flags, &p, &len) < 0) {
            bad_frame(c, "HEADERS padding longer than the frame");
            return;
        }
        if (flags & NGHTTP2_FLAG_PRIORITY) {
            if (len < 5) {
                bad_frame(c, "HEADERS too short for its priority fields");
                return;
            }
            p += 5;
            len -= 5;
        }
        c->_block_stream = sid;
        c->_block_flags = flags;
        c->_block_len = 0;
        block_append(c, p, len);
        if (flags & NGHTTP2_FLAG_END_HEADERS)
            header_block_done(c);
        return;
    case NGHTTP2_CONTINUATION:
        if (!c->_block_stream || sid != c->_block_stream) {
            bad_frame(c, "CONTINUATION outside a header block");
            return;
        }
        block_append(c, p, len);
        if (flags & NGHTTP2_FLAG_END_HEADERS)
            header_block_done(c);
        return;
    case NGHTTP2_RST_STREAM:
        s = stream_slot(c, sid);
        if (s && len >= 4) {
            s->reset = 1;
            s->rst_code = get32(p);
        }
        return;
    case NGHTTP2_SETTINGS:
        if (!(flags & NGHTTP2_FLAG_ACK) && c->auto_ack)
            queue_auto(c, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
        return;
    case NGHTTP2_PING:
        if (!(flags & NGHTTP2_FLAG_ACK) && c->auto_ack && len == 8)
            queue_auto(c, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, p, len);
        return;
    case NGHTTP2_GOAWAY:
        if (len >= 8) {
            c->goaway_last_id = (int32_t)(get32(p) & 0x7fffffffu);
            /* The first GOAWAY says why, code and reason together: a later
             * one (nghttp2's own, without a reason, or a flood limit hit
             * while the first was on its way) must not pair its code with
             * the first one's reason. */
            if (!c->goaway) {
                c->goaway = 1;
                c->goaway_code = get32(p + 4);
                size_t dl = len - 8 < sizeof c->goaway_debug - 1 ? len - 8
                                                                 : sizeof c->goaway_debug - 1;
                memcpy(c->goaway_debug, p + 8, dl);
                c->goaway_debug[dl] = '\0';
            }
        } else {
            bad_frame(c, "GOAWAY shorter than 8 bytes");
        }
        return;
    case NGHTTP2_PUSH_PROMISE:
        bad_frame(c, "PUSH_PROMISE (the gateway never pushes)");
        return;
    default:
        return; /* PRIORITY, WINDOW_UPDATE, unknown types: nothing to record */
    }
}

/* Reads what TLS has without blocking and processes every whole frame.
 * Returns 0, or -1 once the connection is closed. */
static int read_some(ts_h2raw_t *c)
{
    SSL *ssl = c->_ssl;
    for (int i = 0; i < READS_PER_POLL && !c->closed; i++) {
        size_t room = sizeof c->_in - c->_in_len;
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(ssl, c->_in + c->_in_len, (int)room);
        if (n <= 0) {
            int e = SSL_get_error(ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            char why[160];
            if (!c->bad_frame)
                set_err(c, "read: %s", tls_reason(e, why, sizeof why));
            c->closed = 1;
            break;
        }
        c->bytes_in += (uint64_t)n;
        c->_in_len += (size_t)n;
        size_t off = 0;
        c->_in_frame = 1;
        while (c->_in_len - off >= FRAME_HEADER) {
            const uint8_t *h = c->_in + off;
            size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
            if (len > TS_H2RAW_FRAME_MAX) {
                /* RFC 9113 §4.2: over the SETTINGS_MAX_FRAME_SIZE we allow. */
                bad_frame(c, "a frame larger than 16384 bytes");
                c->closed = 1;
                break;
            }
            if (c->_in_len - off < FRAME_HEADER + len)
                break;
            on_frame(c, h[3], h[4], (int32_t)(get32(h + 5) & 0x7fffffffu), h + FRAME_HEADER,
                     len);
            off += FRAME_HEADER + len;
        }
        c->_in_frame = 0;
        memmove(c->_in, c->_in + off, c->_in_len - off);
        c->_in_len -= off;
    }
    return c->closed ? -1 : 0;
}

int ts_h2raw_poll(ts_h2raw_t *c, int64_t deadline)
{
    if (!c->_open || !c->_ssl || c->closed)
        return -1;
    if (!SSL_has_pending(c->_ssl)) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, ts_remaining_ms(deadline)) <= 0)
            return 0;
    }
    read_some(c);
    if (!c->closed && !c->_wdead && c->_out_len)
        ts_h2raw_flush(c); /* acknowledgements queued while reading */
    return c->closed ? -1 : 0;
}

int ts_h2raw_wait(ts_h2raw_t *c, int (*cond)(const ts_h2raw_t *, void *), void *arg,
                  int64_t deadline)
{
    /* Bounded by the deadline: each poll blocks until data or the deadline. */
    for (;;) {
        if (cond(c, arg))
            return 0;
        if (c->closed || !c->_open) {
            errno = EPIPE;
            return -1;
        }
        if (ts_remaining_ms(deadline) == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        ts_h2raw_poll(c, deadline);
    }
}

static int has_goaway(const ts_h2raw_t *c, void *arg)
{
    return c->goaway;
}

int ts_h2raw_wait_goaway(ts_h2raw_t *c, int64_t deadline, uint32_t *code)
{
    if (ts_h2raw_wait(c, has_goaway, NULL, deadline) < 0)
        return -1;
    if (code)
        *code = c->goaway_code;
    return 0;
}

static int is_closed(const ts_h2raw_t *c, void *arg)
{
    return c->closed;
}

int ts_h2raw_wait_closed(ts_h2raw_t *c, int64_t deadline)
{
    return ts_h2raw_wait(c, is_closed, NULL, deadline);
}

static int has_status(const ts_h2raw_t *c, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, *(int32_t *)arg);
    return s && s->status != 0;
}

int ts_h2raw_wait_status(ts_h2raw_t *c, int32_t stream_id, int64_t deadline)
{
    if (ts_h2raw_wait(c, has_status, &stream_id, deadline) < 0)
        return -1;
    return ts_h2raw_stream(c, stream_id)->status;
}

/* ---- connection ---------------------------------------------------------------- */

/* Completes the TLS handshake on c->fd before deadline. Returns 0 or -1. */
static int handshake(ts_h2raw_t *c, const ts_addr_t *to, const char *ca_file, int64_t deadline)
{
    char why[160];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    c->_ctx = ctx;
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        set_err(c, "TLS context: %s", tls_reason(0, why, sizeof why));
        return -1;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        set_err(c, "CA file %s: %s", ca_file, tls_reason(0, why, sizeof why));
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL *ssl = SSL_new(ctx);
    c->_ssl = ssl;
    if (!ssl || SSL_set_alpn_protos(ssl, alpn, sizeof alpn) != 0 || SSL_set_fd(ssl, c->fd) != 1) {
        set_err(c, "TLS setup: %s", tls_reason(0, why, sizeof why));
        return -1;
    }
    /* The development certificate names 127.0.0.1 and ::1 (RFC 6125 IP check). */
    char host[INET6_ADDRSTRLEN] = "";
    const void *ip = to->sa.ss_family == AF_INET6
                         ? (const void *)&((const struct sockaddr_in6 *)&to->sa)->sin6_addr
                         : (const void *)&((const struct sockaddr_in *)&to->sa)->sin_addr;
    inet_ntop(to->sa.ss_family, ip, host, sizeof host);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    SSL_set_connect_state(ssl);
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int rc = SSL_do_handshake(ssl);
        if (rc == 1)
            break;
        int e = SSL_get_error(ssl, rc);
        short ev;
        if (e == SSL_ERROR_WANT_READ) {
            ev = POLLIN;
        } else if (e == SSL_ERROR_WANT_WRITE) {
            ev = POLLOUT;
        } else {
            set_err(c, "TLS handshake: %s", tls_reason(e, why, sizeof why));
            errno = ECONNRESET;
            return -1;
        }
        int left = ts_remaining_ms(deadline);
        if (left == 0) {
            set_err(c, "TLS handshake: no progress before the deadline");
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = c->fd, .events = ev};
        poll(&pfd, 1, left);
    }
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(ssl, &proto, &plen);
    if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
        set_err(c, "TLS handshake: the server did not select ALPN h2");
        errno = EPROTO;
        return -1;
    }
    return 0;
}

int ts_h2raw_connect(ts_h2raw_t *c, const ts_addr_t *to, const char *ca_file, int64_t deadline)
{
    return ts_h2raw_connect_rcvbuf(c, to, ca_file, 0, deadline);
}

int ts_h2raw_connect_rcvbuf(ts_h2raw_t *c, const ts_addr_t *to, const char *ca_file, int rcvbuf,
                            int64_t deadline)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->_open = 1;
    c->auto_ack = 1;
    c->auto_window = 1;
    c->io_timeout_ms = 10000;
    signal(SIGPIPE, SIG_IGN);
    char ca[PATH_MAX];
    if (!ca_file) {
        if (ts_build_path(NULL, "dev/cert.pem", ca, sizeof ca) < 0) {
            set_err(c, "SLUICE_BUILD is not set: no development certificate");
            errno = EINVAL;
            return -1;
        }
        ca_file = ca;
    }
    if (nghttp2_hd_deflate_new(&c->_deflater, 4096) != 0 ||
        nghttp2_hd_inflate_new(&c->_inflater) != 0) {
        set_err(c, "HPACK: out of memory");
        errno = ENOMEM;
        return -1;
    }
    c->fd = ts_tcp_connect_rcvbuf(to, rcvbuf, deadline);
    if (c->fd < 0) {
        int e = ts_remaining_ms(deadline) == 0 ? ETIMEDOUT : (errno ? errno : ECONNREFUSED);
        set_err(c, "TCP connect: %s", strerror(e));
        errno = e;
        return -1;
    }
    if (handshake(c, to, ca_file, deadline) < 0)
        return -1;
    static const uint8_t empty_settings[FRAME_HEADER] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    if (queue_bytes(c, (const uint8_t *)PREFACE, sizeof PREFACE - 1, empty_settings,
                    sizeof empty_settings) < 0 ||
        ts_h2raw_flush(c) < 0)
        return -1;
    return 0;
}

int ts_h2raw_shutdown_write(ts_h2raw_t *c)
{
    if (!c->_open || !c->_ssl || c->fd < 0)
        return -1;
    ERR_clear_error();
    SSL_shutdown(c->_ssl); /* close_notify; the peer's reply is not awaited */
    return shutdown(c->fd, SHUT_WR);
}

void ts_h2raw_close(ts_h2raw_t *c)
{
    if (!c->_open)
        return;
    SSL_free(c->_ssl);
    SSL_CTX_free(c->_ctx);
    c->_ssl = c->_ctx = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    nghttp2_hd_deflate_del(c->_deflater);
    nghttp2_hd_inflate_del(c->_inflater);
    c->_deflater = NULL;
    c->_inflater = NULL;
    c->_open = 0;
}
