/*
 * fuzz_h2.c — the gateway's whole request path in memory: the client's bytes
 * (after the HTTP/2 connection preface) go into a memory-mode connection
 * (conn_new_memory + conn_feed, as tests/gateway/harness.c drives it), through
 * nghttp2, header collection (gateway/request.c), credential check and
 * routing, to real tunnels whose backend is a UDP socket on loopback that
 * echoes every datagram back; the gateway's output (conn_pull) is taken and
 * dropped. No TLS, no TCP.
 *
 * Each input builds everything afresh (loop, config, server state,
 * connection) and frees it all, so inputs do not influence each other and
 * LeakSanitizer sees each one; only the backend socket lives across inputs.
 * Input: byte 0 chooses how the rest is cut into conn_feed calls (whole, one
 * byte, or pseudo-random chunks seeded by bytes 1..8); the rest are HTTP/2
 * frames, starting with the client's SETTINGS.
 *
 * Credentials: the fuzzer cannot forge an HMAC, and the expiry must be in the
 * future. So the literal username "EXPIRYxxxx:fuzz" is rewritten in place to
 * "<now + 600>:fuzz", and the 28-character literal "CREDENTIALxxxxxxxxxxxxxxxxxx"
 * to that username's HMAC-SHA1 under tenant acme's secret (same lengths, so
 * the HPACK strings around them stay valid): a seed with both reaches the
 * tunnel; a mutated one reaches every refusal.
 *
 * Asserts: no crash, no sanitizer report, no leak; conn_feed refuses bytes
 * only with a negative nghttp2 error; the output flushes out in bounded
 * rounds.
 */
#include <ev.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../gateway/conn.h"
#include "../../gateway/log.h"
#include "../../gateway/server.h"
#include "../../proto/cred.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret"
#define USER_MARK "EXPIRYxxxx:fuzz"
#define CRED_MARK "CREDENTIALxxxxxxxxxxxxxxxxxx"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static int backend_fd = -1;
static int backend_port;
static unsigned long backend_rx; /* datagrams the backend received (FUZZ_VERBOSE) */

static void fixture_once(void)
{
    if (backend_fd >= 0)
        return;
    log_set_level(LOG_ERROR);
    backend_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    FUZZ_ASSERT(backend_fd >= 0 && bind(backend_fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    FUZZ_ASSERT(getsockname(backend_fd, (struct sockaddr *)&a, &len) == 0);
    backend_port = ntohs(a.sin_port);
}

/* The backend answers every datagram waiting (a bounded number) with itself,
 * or only drains them (reply 0: between inputs, so nothing reaches the next). */
static void backend_echo(int reply)
{
    static uint8_t buf[65536];
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(backend_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        backend_rx++;
        if (reply)
            sendto(backend_fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
    }
}

static void sign_marks(uint8_t *p, size_t n)
{
    char user[sizeof USER_MARK];
    snprintf(user, sizeof user, "%010llu:fuzz", (unsigned long long)time(NULL) + 600);
    char cred[CRED_B64_MAX + 1];
    FUZZ_ASSERT(cred_sign(CRED_SHA1, (const uint8_t *)SECRET, strlen(SECRET), user,
                          strlen(user), cred, sizeof cred) == 28);
    for (uint8_t *m = p; (m = memmem(m, n - (size_t)(m - p), USER_MARK, 15)); m += 15)
        memcpy(m, user, 15);
    for (uint8_t *m = p; (m = memmem(m, n - (size_t)(m - p), CRED_MARK, 28)); m += 28)
        memcpy(m, cred, 28);
}

/* Takes what the gateway wants to send, runs its loop once, lets the backend
 * answer. Bounded: a session that never stops writing is a failure. */
static void pump(server_t *srv, conn_t *c)
{
    for (int round = 0; round < 1000; round++) {
        const uint8_t *out;
        ssize_t n;
        int moved = 0;
        if (!c->closing)
            while ((n = conn_pull(c, &out)) > 0)
                moved = 1;
        ev_run(srv->loop, EVRUN_NOWAIT);
        backend_echo(1);
        if (!moved)
            return;
    }
    FUZZ_ASSERT(!"the gateway's output never ends");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    fixture_once();

    char json[1024], err[256];
    snprintf(json, sizeof json,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"},"
             "\"region\":\"local\",\"limits\":{\"max_streams\":16,\"resume_grace_ms\":0},"
             "\"regions\":{\"local\":{\"sfu\":[\"127.0.0.1:%d\"],\"turn\":[\"127.0.0.1:%d\"]},"
             "\"eu\":{\"sfu\":[\"127.0.0.1:%d\"]}},"
             "\"tenants\":[{\"id\":\"acme\",\"secrets\":[\"" SECRET "\"],"
             "\"regions\":[\"local\",\"eu\"],\"kinds\":[\"sfu\",\"turn\"]}]}",
             backend_port, backend_port, backend_port);
    config_t *cfg = config_parse(json, strlen(json), NULL, err, sizeof err);
    if (!cfg)
        fprintf(stderr, "fuzz_h2 config: %s\n", err);
    FUZZ_ASSERT(cfg != NULL);

    server_t *srv = calloc(1, sizeof *srv);
    FUZZ_ASSERT(srv != NULL);
    list_init(&srv->conns);
    srv->loop = ev_loop_new(EVFLAG_AUTO);
    FUZZ_ASSERT(srv->loop != NULL);
    srv->cfg = cfg;
    srv->echo.fd = -1;
    srv->env = (tunnel_env_t){.loop = srv->loop, .counters = &srv->counters, .logs = &srv->logs,
                              .stats = &srv->stats,
                              .udp_buf = malloc((size_t)TUNNEL_UDP_BATCH * TUNNEL_UDP_BUF)};
    FUZZ_ASSERT(srv->env.udp_buf != NULL);
    session_table_init(&srv->sessions, &srv->env);
    FUZZ_ASSERT(conn_h2_setup(&srv->h2_cbs, &srv->h2_opt) == 0);
    conn_t *c = conn_new_memory(srv);
    FUZZ_ASSERT(c != NULL);

    uint8_t mode = data[0];
    uint64_t seed;
    memcpy(&seed, data + 1, 8);
    seed |= 1;
    size_t n = sizeof PREFACE - 1 + size - 9;
    uint8_t *in = malloc(n);
    FUZZ_ASSERT(in != NULL);
    memcpy(in, PREFACE, sizeof PREFACE - 1);
    memcpy(in + sizeof PREFACE - 1, data + 9, size - 9);
    sign_marks(in, n);

    for (size_t off = 0; off < n && !c->closing;) {
        size_t k = n - off;
        if (mode % 3 == 1)
            k = 1;
        else if (mode % 3 == 2)
            k = 1 + (size_t)(fuzz_rand(&seed) % 64);
        if (k > n - off)
            k = n - off;
        int rc = conn_feed(c, in + off, k);
        FUZZ_ASSERT(rc <= 0);
        off += k;
        pump(srv, c);
        if (rc < 0)
            break;
    }
    pump(srv, c);
    free(in);
    if (getenv("FUZZ_VERBOSE")) /* replaying one input: say how far it got */
        fprintf(stderr, "fuzz_h2: %s, backend received %lu datagrams so far\n",
                c->closing ? "connection closed" : "connection open", backend_rx);

    srv->sessions.closed = 1;
    conn_free(c);
    session_table_dispose(&srv->sessions);
    stats_dispose(&srv->stats);
    nghttp2_session_callbacks_del(srv->h2_cbs);
    nghttp2_option_del(srv->h2_opt);
    free(srv->env.udp_buf);
    ev_loop_destroy(srv->loop);
    free(srv);
    config_unref(cfg);
    /* What the tunnels sent after the last pump must not reach the next input. */
    backend_echo(0);
    return 0;
}
