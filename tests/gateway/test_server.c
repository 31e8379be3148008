/*
 * test_server.c — the server's listener and TLS edge in-process: a real
 * listening socket and TLS context (the development certificate from
 * $SLUICE_BUILD/dev), clients made of plain sockets in the test, and the
 * server's counters read directly.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../gateway/config.h"
#include "../../gateway/conn.h"
#include "../../gateway/log.h"
#include "../../gateway/server.h"

#define MAX_CLIENTS 4

static struct ev_loop *loop;
static server_t srv;
static int srv_up;
static uint16_t port;
static int clients[MAX_CLIENTS] = {-1, -1, -1, -1};

static void teardown(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i] >= 0)
            close(clients[i]);
        clients[i] = -1;
    }
    if (srv_up)
        server_dispose(&srv);
    srv_up = 0;
    if (loop)
        ev_loop_destroy(loop);
    loop = NULL;
}

/* A server on 127.0.0.1:0 with the development certificate; limits_json is
 * inserted into "limits". Its port is read back from the ready line. */
static void start_server(const char *limits_json)
{
    const char *build = getenv("SLUICE_BUILD");
    cr_assert_not_null(build, "SLUICE_BUILD is not set (tests/run.sh sets it)");
    log_set_level(LOG_ERROR); /* tests read counters, not logs */
    char json[4096], err[256];
    snprintf(json, sizeof json,
             "{\"listen\":[\"127.0.0.1:0\"],"
             "\"tls\":{\"cert\":\"%s/dev/cert.pem\",\"key\":\"%s/dev/key.pem\"},"
             "\"region\":\"local\",\"limits\":{%s},"
             "\"regions\":{\"local\":{\"sfu\":[\"127.0.0.1:9\"]}},\"tenants\":[]}",
             build, build, limits_json);
    config_t *cfg = config_parse(json, strlen(json), NULL, err, sizeof err);
    cr_assert_not_null(cfg, "config: %s", err);
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
    int rc = server_init(&srv, loop, cfg, err, sizeof err);
    config_unref(cfg); /* the server holds its own reference */
    cr_assert_eq(rc, 0, "server_init: %s", err);
    srv_up = 1;

    char *line = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&line, &len);
    cr_assert_not_null(f);
    server_print_ready(&srv, f);
    fclose(f);
    const char *at = strstr(line, "listen=127.0.0.1:");
    unsigned p = 0;
    int parsed = at && sscanf(at, "listen=127.0.0.1:%u", &p) == 1 && p > 0 && p < 65536;
    free(line);
    cr_assert(parsed, "no listen port in the ready line");
    port = (uint16_t)p;
}

/* A blocking TCP connection to the server. On loopback the kernel completes
 * it from the listen backlog, whether or not the server has accepted yet. */
static int connect_client(int slot)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s",
                 strerror(errno));
    clients[slot] = fd;
    return fd;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

/* Runs the server's loop until cond() holds or timeout_s passes (checked at
 * least every 10 ms). Returns 1 when it holds. */
static int run_until(int (*cond)(void *), void *arg, double timeout_s)
{
    double end = now_s() + timeout_s;
    for (;;) {
        if (cond(arg))
            return 1;
        if (now_s() >= end)
            return 0;
        int fired = 0;
        ev_timer tick;
        ev_timer_init(&tick, tick_cb, 0.01, 0.);
        tick.data = &fired;
        ev_timer_start(loop, &tick);
        ev_run(loop, EVRUN_ONCE);
        ev_timer_stop(loop, &tick);
    }
}

/* Runs the loop for seconds of wall time with one timer; returns the loop
 * iterations (libev's ev_iteration) it took. */
static unsigned run_for(double seconds)
{
    int fired = 0;
    ev_timer t;
    ev_timer_init(&t, tick_cb, seconds, 0.);
    t.data = &fired;
    ev_timer_start(loop, &t);
    unsigned start = ev_iteration(loop);
    double end = now_s() + seconds + 5.0; /* bound, should the timer never fire */
    while (!fired && now_s() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return ev_iteration(loop) - start;
}

/* 1 once the server has closed fd (EOF or reset); reads and discards what it
 * sent before (a TLS alert). */
static int peer_closed(int fd)
{
    uint8_t buf[512];
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
            return 1;
        if (n < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
    return 0;
}

typedef struct closed_wait {
    int fd;
    uint64_t tls_failures;
} closed_wait_t;

static int closed_and_counted(void *arg)
{
    closed_wait_t *w = arg;
    return peer_closed(w->fd) && srv.counters.tls_failures >= w->tls_failures;
}

/* counters.tls_failures counts handshakes that failed and handshakes that
 * timed out (handshake_timeout_ms), once per connection. */
Test(server, tls_failures_count_bad_hellos_and_handshake_timeouts, .fini = teardown,
     .timeout = 60)
{
    start_server("\"handshake_timeout_ms\":300");
    cr_assert_eq(srv.counters.tls_failures, 0u);

    /* A TLS handshake record (RFC 8446 §5.1, type 22, so it passes the
     * cleartext check) holding a ClientHello whose body is garbage: a
     * legacy_version of 0xffff and nothing after it. */
    static const uint8_t bad_hello[] = {0x16, 0x03, 0x01, 0x00, 0x08, /* record */
                                        0x01, 0x00, 0x00, 0x04,       /* ClientHello, 4 bytes */
                                        0xff, 0xff, 0xff, 0xff};
    int a = connect_client(0);
    cr_assert_eq(send(a, bad_hello, sizeof bad_hello, MSG_NOSIGNAL), (ssize_t)sizeof bad_hello);
    closed_wait_t wa = {a, 1};
    cr_assert(run_until(closed_and_counted, &wa, 10.0),
              "bad ClientHello: connection %s, tls_failures %llu (want closed, 1)",
              peer_closed(a) ? "closed" : "open",
              (unsigned long long)srv.counters.tls_failures);
    cr_assert_eq(srv.counters.tls_failures, 1u);

    /* A client that connects and says nothing is cut at the handshake
     * deadline, and that is a TLS failure too. */
    int b = connect_client(1);
    closed_wait_t wb = {b, 2};
    cr_assert(run_until(closed_and_counted, &wb, 10.0),
              "silent client: connection %s, tls_failures %llu (want closed, 2)",
              peer_closed(b) ? "closed" : "open",
              (unsigned long long)srv.counters.tls_failures);
    cr_assert_eq(srv.counters.tls_failures, 2u, "each failed connection counts once");
    cr_assert_eq(srv.counters.conns_active, 0u);
}

static int accepted(void *arg)
{
    return srv.counters.conns_accepted >= *(uint64_t *)arg;
}

/* When accept() fails with EMFILE the server pauses its listeners
 * (ACCEPT_PAUSE_S) instead of waking up for the same pending connection in a
 * busy loop; once descriptors are available again the pending connections
 * are served. One second of loop shows which: paused, a few accept attempts
 * (tens of loop iterations, milliseconds of CPU); spinning, as many
 * iterations as the CPU allows. The iteration count tells them apart even
 * when a loaded machine gives the test little CPU; the CPU time is the
 * symptom an operator would see. */
Test(server, emfile_pauses_accepts_without_spinning, .fini = teardown, .timeout = 60)
{
    enum { PENDING = 2 };
    start_server("");
    for (int i = 0; i < PENDING; i++)
        connect_client(i);

    /* Lower the soft limit to the lowest free descriptor number: from then
     * on no descriptor can be made, and accept() fails with EMFILE. */
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    int lowest = fcntl(clients[0], F_DUPFD, 0);
    cr_assert_geq(lowest, 0);
    close(lowest);
    low = old;
    low.rlim_cur = (rlim_t)lowest;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0, "setrlimit: %s", strerror(errno));
    int probe = dup(clients[0]);
    int probe_errno = errno;
    if (probe >= 0)
        close(probe);

    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now_s();
    unsigned iterations = run_for(1.0);
    double wall = now_s() - t0;
    getrusage(RUSAGE_SELF, &r1);
    uint64_t accepted_low = srv.counters.conns_accepted;
    /* Restore before any assertion: criterion may need descriptors. */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);

    cr_assert(probe < 0 && probe_errno == EMFILE, "the lowered limit did not take (dup: %s)",
              probe < 0 ? strerror(probe_errno) : "succeeded");
    cr_assert_eq(accepted_low, 0u, "a connection was accepted with no descriptor to spare");
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                 (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
                 (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    cr_log_info("EMFILE: %u loop iterations, %.3f s of CPU in %.3f s of loop", iterations,
                cpu, wall);
    cr_assert_lt(iterations, 500u, "%u loop iterations in %.3f s while accept() fails with "
                                   "EMFILE: the listener spins",
                 iterations, wall);
    cr_assert_lt(cpu, 0.3, "%.3f s of CPU in %.3f s of loop while accept() fails with EMFILE: "
                           "the listener spins",
                 cpu, wall);

    uint64_t want = PENDING;
    cr_assert(run_until(accepted, &want, 10.0),
              "%llu of %d pending connections accepted within 10 s of descriptors returning",
              (unsigned long long)srv.counters.conns_accepted, PENDING);
}

/* Accepted sockets get TCP_NODELAY (real time: no Nagle) and a
 * TCP_USER_TIMEOUT of limits.write_stall_ms, so the kernel too gives up on
 * a peer that stopped acknowledging (RFC 5482). */
Test(server, accepted_sockets_get_nodelay_and_the_user_timeout, .fini = teardown, .timeout = 60)
{
    start_server("\"write_stall_ms\":4321,\"handshake_timeout_ms\":60000");
    connect_client(0);
    uint64_t one = 1;
    cr_assert(run_until(accepted, &one, 10.0), "the connection was not accepted");
    const conn_t *c = LIST_FIRST(&srv.conns, conn_t, _link);
    cr_assert_not_null(c);
    unsigned int uto = 0;
    int nodelay = 0;
    socklen_t len = sizeof uto;
    cr_assert_eq(getsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, &len), 0);
    cr_assert_eq(uto, 4321u);
    len = sizeof nodelay;
    cr_assert_eq(getsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    cr_assert(nodelay);
}

typedef struct log_watch {
    FILE *f;
    const char *needle;
} log_watch_t;

static int log_has(void *arg)
{
    log_watch_t *w = arg;
    static char buf[1 << 16];
    fflush(stderr);
    rewind(w->f);
    size_t n = fread(buf, 1, sizeof buf - 1, w->f);
    buf[n] = '\0';
    return strstr(buf, w->needle) != NULL;
}

/* A burst of suppressed lines followed by quiet is reported when its window
 * ends (the server's log_flush timer), not only at the next such event. */
Test(server, suppressed_log_lines_are_reported_after_a_quiet_window, .fini = teardown,
     .timeout = 90)
{
    start_server("\"handshake_timeout_ms\":60000");
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    fflush(stderr);
    cr_assert_eq(dup2(fileno(f), 2), 2); /* criterion runs each test in its own process */
    log_set_level(LOG_INFO);
    /* 14 cleartext clients, two lines each ("cleartext refused", then the
     * close with its cause): 10 lines, then 18 suppressed. */
    for (int i = 0; i < 14; i++) {
        int fd = connect_client(i % MAX_CLIENTS);
        cr_assert_eq(send(fd, "GET / HTTP/1.1\r\n\r\n", 18, MSG_NOSIGNAL), 18);
        closed_wait_t w = {fd, 0};
        cr_assert(run_until(closed_and_counted, &w, 10.0), "cleartext client %d not closed", i);
        close(fd);
        clients[i % MAX_CLIENTS] = -1;
    }
    log_watch_t lines = {f, "cleartext refused"};
    cr_assert(log_has(&lines));
    log_watch_t summary = {f, "connection event: 18 similar lines suppressed"};
    cr_assert_not(log_has(&summary), "the summary came before the window ended");
    cr_assert(run_until(log_has, &summary, 2.5 * LOG_LIMITS_WINDOW_S),
              "no summary of the suppressed lines after the window, with no further event");
}
