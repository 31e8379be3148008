/*
 * ts_h2raw.h — a raw HTTP/2-over-TLS client that writes any frame sequence.
 *
 * curl and the shim only send what a correct client sends; attack and limit
 * tests need frames a correct client never would (thousands of RST_STREAMs,
 * HEADERS without END_HEADERS followed by CONTINUATIONs, streams that ignore
 * CLOSE). ts_h2raw_connect does TCP, TLS 1.2+ with ALPN "h2" (verifying the
 * development certificate) and the connection preface with an empty SETTINGS
 * frame (RFC 9113 §3.4); after that every frame is hand-built: a 9-byte header
 * (RFC 9113 §4.1) and the payload the test gives. Header blocks are encoded
 * with nghttp2's HPACK deflater (RFC 7541), so a test controls framing, not
 * encoding.
 *
 * What the gateway sends is parsed frame by frame as the wait functions read:
 * per stream, the :status and tunnel-session (nghttp2's HPACK inflater),
 * response body bytes,
 * END_STREAM and RST_STREAM; per connection, GOAWAY with its error code and
 * whether the connection has closed (EOF, reset or TLS error). By default the
 * client acknowledges SETTINGS and PING and returns flow-control credit for
 * DATA it received, like any live client; clear auto_ack / auto_window after
 * connecting to play a client that does not. Those answers never go between
 * the frames of a header block the test has left open (RFC 9113 §6.10).
 *
 * Writes go through an output buffer: ts_h2raw_queue_frame appends (flushing
 * when full), ts_h2raw_flush writes it out, ts_h2raw_send_frame does both.
 * While a write waits for the socket, incoming frames are read and processed,
 * so neither side can block the other. Every wait ends at a deadline.
 *
 * A ts_h2raw_t holds its buffers inline (a few hundred KiB): make it static.
 *
 * ts_h2raw_connect sets SIGPIPE to SIG_IGN in the process: TLS writes to a
 * connection the gateway closed then fail with EPIPE instead of killing the
 * test.
 */
#ifndef SLUICE_TS_H2RAW_H
#define SLUICE_TS_H2RAW_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ts_net.h"

#define TS_H2RAW_STREAMS 16u         /* streams with a record; later ones are only counted */
#define TS_H2RAW_BODY_CAP 8192u      /* response body bytes kept per stream */
#define TS_H2RAW_FRAME_MAX 16384u    /* SETTINGS_MAX_FRAME_SIZE we accept (the default) */
#define TS_H2RAW_OUT_CAP 65536u      /* output buffer */
#define TS_H2RAW_BLOCK_CAP 65536u    /* a received header block being reassembled */

/* Flags for ts_h2raw_headers and ts_h2raw_request. */
enum ts_h2raw_hflags {
    TS_H2RAW_END_STREAM = 1,     /* END_STREAM on the HEADERS frame */
    TS_H2RAW_NO_END_HEADERS = 2, /* leave END_HEADERS off the last frame of the block */
};

typedef struct ts_h2raw_stream {
    int32_t id;              /* 0: free slot */
    int status;              /* :status of the response, 0 until its HEADERS */
    int end_stream;          /* the gateway ended its side */
    int reset;               /* an RST_STREAM arrived */
    uint32_t rst_code;
    uint8_t body[TS_H2RAW_BODY_CAP];
    size_t body_len;         /* bytes kept in body */
    size_t body_over;        /* bytes that did not fit */
    char session[64];        /* the tunnel-session response header, "" when absent */
} ts_h2raw_stream_t;

typedef struct ts_h2raw {
    int fd;                  /* the TCP socket, -1 when not connected */
    int _open;               /* connect was called: close has work to do */
    void *_ctx, *_ssl;       /* SSL_CTX *, SSL * */
    nghttp2_hd_deflater *_deflater;
    nghttp2_hd_inflater *_inflater;
    char err[256];           /* why the last call failed */
    int auto_ack;            /* answer SETTINGS and PING (default 1) */
    int auto_window;         /* WINDOW_UPDATE for received DATA (default 1) */
    int io_timeout_ms;       /* bound on one blocked write (default 10000) */
    /* what the gateway sent */
    int closed;              /* EOF, reset or TLS error: nothing more will come */
    int goaway;              /* a GOAWAY arrived */
    uint32_t goaway_code;    /* the first one's error code (RFC 9113 §7) */
    int32_t goaway_last_id;  /* the latest one's last stream id */
    char goaway_debug[128];  /* the first one's debug data (the reason), NUL-terminated,
                                truncated */
    int bad_frame;           /* a frame we could not parse (e.g. HPACK error) */
    uint64_t auto_skipped;   /* automatic answers not sent (header block open, buffer full) */
    uint64_t frames_in[11];  /* by type 0..9; [10]: unknown types */
    uint64_t bytes_in;
    ts_h2raw_stream_t streams[TS_H2RAW_STREAMS];
    /* private */
    int _in_frame;           /* processing received frames: queue, never write */
    int _wdead;              /* a write failed: the gateway hung up; reads go on */
    int _out_block;          /* our header block is open (no END_HEADERS yet) */
    int32_t _block_stream;   /* stream of a header block awaiting CONTINUATION, or 0 */
    uint8_t _block_flags;
    size_t _block_len;
    size_t _in_len;
    size_t _out_len;
    uint8_t _in[9 + TS_H2RAW_FRAME_MAX + 16384];
    uint8_t _block[TS_H2RAW_BLOCK_CAP];
    uint8_t _out[TS_H2RAW_OUT_CAP];
} ts_h2raw_t;

/* Connects to `to` (loopback), completes TLS with ALPN h2 verifying the
 * certificate against ca_file (NULL: <build>/dev/cert.pem) and the address,
 * then sends the client preface and an empty SETTINGS frame. Returns 0; or -1
 * with c->err set and errno ETIMEDOUT (deadline passed) or another value (the
 * gateway closed or refused the connection, TLS failed, no h2). Call
 * ts_h2raw_close in either case. */
int ts_h2raw_connect(ts_h2raw_t *c, const ts_addr_t *to, const char *ca_file, int64_t deadline);

/* ts_h2raw_connect with the socket's SO_RCVBUF set to rcvbuf before it
 * connects: a client whose receive window stays small (0: the default). */
int ts_h2raw_connect_rcvbuf(ts_h2raw_t *c, const ts_addr_t *to, const char *ca_file, int rcvbuf,
                            int64_t deadline);

/* Appends one frame (9-byte header + payload) to the output buffer, flushing
 * first when it does not fit. len may exceed TS_H2RAW_FRAME_MAX (for tests of
 * oversized frames) up to 2^24 - 1. Returns 0 or -1 (connection gone). */
int ts_h2raw_queue_frame(ts_h2raw_t *c, uint8_t type, uint8_t flags, int32_t stream_id,
                         const void *payload, size_t len);

/* Writes the output buffer. Returns 0, or -1 when the connection is gone or a
 * write stayed blocked for io_timeout_ms. */
int ts_h2raw_flush(ts_h2raw_t *c);

/* ts_h2raw_queue_frame, then ts_h2raw_flush. */
int ts_h2raw_send_frame(ts_h2raw_t *c, uint8_t type, uint8_t flags, int32_t stream_id,
                        const void *payload, size_t len);

/* HPACK-encodes nva with the connection's deflater into out. The deflater's
 * dynamic table changes, so blocks must be sent in the order they were
 * encoded. Returns the block length or -1. */
ssize_t ts_h2raw_hpack(ts_h2raw_t *c, const nghttp2_nv *nva, size_t nvlen, uint8_t *out,
                       size_t cap);

/* Queues an encoded header block on stream_id as HEADERS, then CONTINUATION
 * frames of at most TS_H2RAW_FRAME_MAX bytes (RFC 9113 §6.10). flags:
 * TS_H2RAW_END_STREAM, TS_H2RAW_NO_END_HEADERS. Returns 0 or -1. */
int ts_h2raw_queue_block(ts_h2raw_t *c, int32_t stream_id, const uint8_t *block, size_t n,
                         unsigned flags);

/* HPACK amplification (RFC 7541 §2.3.3), written by hand: nghttp2's deflater
 * would never index a field this large, which is exactly what an attacker
 * does. A POST request's block for path (at most 126 bytes of it) that, when
 * define, first adds the 4,000-byte field x-bomb to the dynamic table (index
 * 62), then refers to index 62 refs times, one byte each: each reference
 * decodes to 4,038 bytes of header list. out holds TS_H2RAW_BOMB_CAP(refs)
 * bytes. Returns the block's length. */
#define TS_H2RAW_BOMB_CAP(refs) (4 + 126 + 9 + 4000 + (size_t)(refs))
size_t ts_h2raw_hpack_bomb(uint8_t *out, const char *path, int define, size_t refs);

/* Encodes nva and sends it as HEADERS on stream_id, split into CONTINUATION
 * frames when larger than TS_H2RAW_FRAME_MAX. flags: TS_H2RAW_END_STREAM,
 * TS_H2RAW_NO_END_HEADERS. Queues and flushes. Returns 0 or -1. */
int ts_h2raw_headers(ts_h2raw_t *c, int32_t stream_id, const nghttp2_nv *nva, size_t nvlen,
                     unsigned flags);

/* A tunnel request (POST path, :scheme https, :authority "sluice", the
 * tunnel-username and tunnel-credential headers) as ts_h2raw_headers.
 * ts_h2raw_queue_request only queues the frames (floods flush in batches).
 * Returns 0 or -1. */
int ts_h2raw_request(ts_h2raw_t *c, int32_t stream_id, const char *path, const char *username,
                     const char *credential, unsigned flags);
int ts_h2raw_queue_request(ts_h2raw_t *c, int32_t stream_id, const char *path,
                           const char *username, const char *credential, unsigned flags);
/* ts_h2raw_request with a tunnel-resume header carrying resume (NULL: none). */
int ts_h2raw_request_resume(ts_h2raw_t *c, int32_t stream_id, const char *path,
                            const char *username, const char *credential, const char *resume,
                            unsigned flags);

/* Reads and processes what has arrived, waiting at most until deadline for
 * the first bytes. Returns 0, or -1 once the connection has closed. */
int ts_h2raw_poll(ts_h2raw_t *c, int64_t deadline);

/* Reads until cond(c, arg) holds (checked before each read), the connection
 * closes or the deadline passes. Returns 0 when cond holds, else -1 with errno
 * EPIPE (closed without it) or ETIMEDOUT. */
int ts_h2raw_wait(ts_h2raw_t *c, int (*cond)(const ts_h2raw_t *, void *), void *arg,
                  int64_t deadline);

/* Waits for a GOAWAY; *code (may be NULL) gets its error code. Returns 0 or -1. */
int ts_h2raw_wait_goaway(ts_h2raw_t *c, int64_t deadline, uint32_t *code);

/* Reads (processing frames) until the gateway closes the connection. Returns
 * 0 once closed, -1 at the deadline. */
int ts_h2raw_wait_closed(ts_h2raw_t *c, int64_t deadline);

/* Waits until stream_id has a :status; returns it, or -1. */
int ts_h2raw_wait_status(ts_h2raw_t *c, int32_t stream_id, int64_t deadline);

/* The record of stream_id, or NULL (never seen, or beyond TS_H2RAW_STREAMS). */
const ts_h2raw_stream_t *ts_h2raw_stream(const ts_h2raw_t *c, int32_t stream_id);

/* Sends TLS close_notify and shuts down the write side of the socket: the
 * gateway sees the client leave, and ts_h2raw_wait_closed then tells when it
 * has let go of the connection. Returns 0 or -1. */
int ts_h2raw_shutdown_write(ts_h2raw_t *c);

/* Closes the socket and frees TLS and HPACK state. Idempotent; a no-op on a
 * zeroed ts_h2raw_t (connect never called). */
void ts_h2raw_close(ts_h2raw_t *c);

#endif
