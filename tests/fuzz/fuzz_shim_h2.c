/*
 * fuzz_shim_h2.c — the shim's response path: what a gateway (or anything
 * pretending to be one) sends back, read by the shim's own HTTP/2 session
 * (client-shim/lib/h2.c: response headers, tunnel-session and tunnel-node,
 * refusal bodies, END_STREAM, RST_STREAM, GOAWAY) and by its tunnels
 * (client-shim/lib/tunnel.c: the capsule stream of the response body through
 * proto/dispatch, PINGs answered, CLOSE, protocol errors answered with
 * CLOSE(protocol error) and a reset).
 *
 * No TLS and no socket: a client is made with sluice_client_new (reconnect
 * off, so nothing ever dials), two tunnels are opened, and the client is
 * brought to the state client.c's client_ready leaves it in (its HTTP/2
 * session, phase READY, the requests submitted). Then the input, the
 * gateway's side of the connection (its SETTINGS first), goes to
 * nghttp2_session_mem_recv in chunks, as client.c's client_tls_in hands it
 * decrypted bytes, with the same handling of an HTTP/2 error; the shim's
 * output is taken and dropped; the application sends packets and closes
 * tunnels at points the input chooses; the loop runs the client's deferred
 * work. Byte 0 chooses the chunking, byte 1 when the application acts.
 *
 * The input's end is the gateway closing the connection (client_on_eof's
 * shim_client__end).
 *
 * Asserts: no crash, no sanitizer report, no leak (the client and its
 * tunnels are freed after each input); each tunnel's on_close comes exactly
 * once (at the latest when the connection ends), with a NUL-terminated
 * reason; no packet is delivered after sluice_tunnel_close or after on_close.
 */
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../client-shim/lib/shim_internal.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NTUNNELS 2

typedef struct app {
    sluice_tunnel_t *t[NTUNNELS];
    int closed[NTUNNELS];  /* on_close calls */
    int closing[NTUNNELS]; /* sluice_tunnel_close called */
    unsigned long packets;
} app_t;

static int which(app_t *a, sluice_tunnel_t *t)
{
    for (int i = 0; i < NTUNNELS; i++)
        if (a->t[i] == t)
            return i;
    FUZZ_ASSERT(!"callback for a tunnel we do not know");
    return -1;
}

static void on_open(sluice_tunnel_t *t, void *ud)
{
    app_t *a = ud;
    FUZZ_ASSERT(!a->closed[which(a, t)]);
}

static void on_packet(sluice_tunnel_t *t, const uint8_t *p, size_t len, int is_signal, void *ud)
{
    app_t *a = ud;
    int i = which(a, t);
    FUZZ_ASSERT(!a->closed[i] && !a->closing[i]);
    FUZZ_ASSERT(len <= CAPSULE_DEFAULT_MAX_VALUE);
    a->packets++;
}

static void on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason, void *ud)
{
    app_t *a = ud;
    int i = which(a, t);
    FUZZ_ASSERT(a->closed[i] == 0);
    FUZZ_ASSERT(reason != NULL && strlen(reason) < 4096);
    a->closed[i] = 1;
    a->t[i] = NULL; /* released when this returns */
}

static sluice_tls_t *shared_tls;

/* What client_tls_in does with decrypted bytes, and client_flush's pull. */
static int feed(sluice_client_t *c, const uint8_t *p, size_t n)
{
    if (!c->_h2 || c->_end_pending || c->phase != SHIM_PHASE_READY)
        return -1;
    ssize_t rv = nghttp2_session_mem_recv(c->_h2, p, n);
    if (rv < 0) {
        shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_PROTOCOL, "HTTP/2 error: %s",
                         nghttp2_strerror((int)rv));
        return -1;
    }
    return 0;
}

static void pump(sluice_client_t *c, struct ev_loop *loop)
{
    for (int round = 0; round < 1000; round++) {
        int moved = 0;
        const uint8_t *out;
        if (c->_h2 && !c->_end_pending)
            while (nghttp2_session_mem_send(c->_h2, &out) > 0)
                moved = 1;
        /* client_flush's end of a session that wants nothing more (after a
         * GOAWAY it sent or received, say), without the TLS close_notify. */
        if (c->_h2 && !c->_end_pending && !nghttp2_session_want_read(c->_h2) &&
            !nghttp2_session_want_write(c->_h2))
            shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_LOST, "HTTP/2 session ended");
        ev_run(loop, EVRUN_NOWAIT);
        if (!moved)
            return;
    }
    FUZZ_ASSERT(!"the shim's output never ends");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    char err[256];
    if (!shared_tls) {
        shared_tls = sluice_tls_new(NULL, err, sizeof err);
        FUZZ_ASSERT(shared_tls != NULL);
    }
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    FUZZ_ASSERT(loop != NULL);
    sluice_client_opts_t co = {.host = "gateway.example", .tls = shared_tls};
    sluice_client_t *c = sluice_client_new(loop, &co, err, sizeof err);
    FUZZ_ASSERT(c != NULL);

    app_t a = {0};
    static const char *const kinds[NTUNNELS] = {"sfu", "turn"};
    for (int i = 0; i < NTUNNELS; i++) {
        sluice_tunnel_opts_t to = {.tenant = "acme", .kind = kinds[i], .username = "1:u",
                                   .credential = "AAAA", .on_open = on_open,
                                   .on_packet = on_packet, .on_close = on_close, .ud = &a};
        a.t[i] = sluice_tunnel_open(c, &to);
        FUZZ_ASSERT(a.t[i] != NULL);
    }
    /* client_ready, without TLS. */
    FUZZ_ASSERT(shim_h2__session_new(c, err, sizeof err) == 0);
    c->phase = SHIM_PHASE_READY;
    for (int i = 0; i < NTUNNELS; i++)
        shim_tunnel__submit(a.t[i]);
    pump(c, loop);

    uint8_t mode = data[0], act = data[1];
    const uint8_t *in = data + 2;
    size_t n = size - 2;
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ mode;
    static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t stun[] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42,
                                   1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    for (size_t off = 0, step = 0; off < n; step++) {
        size_t k = n - off;
        if (mode % 3 == 1)
            k = 1;
        else if (mode % 3 == 2)
            k = 1 + (size_t)(fuzz_rand(&seed) % 48);
        if (k > n - off)
            k = n - off;
        int rc = feed(c, in + off, k);
        off += k;
        /* The application: sends on each open tunnel, and at the step act
         * names closes tunnel (act / 16) % NTUNNELS. */
        for (int i = 0; i < NTUNNELS; i++)
            if (a.t[i] && !a.closing[i])
                sluice_tunnel_send(a.t[i], (step + (size_t)i) & 1 ? stun : rtp,
                                   (step + (size_t)i) & 1 ? sizeof stun : sizeof rtp);
        if (step == (act & 15u)) {
            int i = (act >> 4) % NTUNNELS;
            if (a.t[i] && !a.closing[i]) {
                a.closing[i] = 1;
                sluice_tunnel_close(a.t[i]);
            }
        }
        pump(c, loop);
        if (rc < 0)
            break;
    }
    pump(c, loop);
    /* The input ends: the gateway closed the connection (client_on_eof). */
    shim_client__end(c, SLUICE_FAILED, SLUICE_FAIL_LOST, "gateway closed the connection");
    pump(c, loop);
    for (int i = 0; i < NTUNNELS; i++)
        FUZZ_ASSERT(a.closed[i]); /* every tunnel hears how it ended */
    if (getenv("FUZZ_VERBOSE")) /* replaying one input: say how far it got */
        fprintf(stderr, "fuzz_shim_h2: %lu packets delivered, on_close %d %d\n", a.packets,
                a.closed[0], a.closed[1]);

    sluice_client_free(c);
    ev_run(loop, EVRUN_NOWAIT);
    ev_loop_destroy(loop);
    return 0;
}
