/*
 * test_faults.c — issue 10 §4: the gateway under faults, each test saying
 * what may be lost and showing that nothing more is (docs/faults.md has one
 * section per fault and names the test here that shows it).
 *
 * The gateway is the standard fixture (ts_fixture.h: tenant acme, region
 * "local" on the test's own echo backend with probe "none"); clients are
 * sluice-shim with UDP flows (ts_flow.h) or ts_h2raw where the test needs to
 * see a status, a CLOSE capsule or to play a client that stops reading.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_cutter.h"
#include "../support/ts_fault.h"
#include "../support/ts_fixture.h"
#include "../support/ts_flow.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_proc.h"
#include "../support/ts_pstat.h"
#include "../support/ts_util.h"

#define TUNNEL_PATH "/v1/tunnel/" TS_FX_TENANT "/sfu"
#define NCLIENTS 3

static ts_fixture_t fx;
static ts_h2raw_t cl[NCLIENTS];
static int app_fd = -1;
static int extra_fd[4] = {-1, -1, -1, -1};
static ts_cutter_t *cutter;
static ts_shim_t own_shim;

static void teardown(void)
{
    unsetenv("TS_GATEWAY_WRAP");
    for (int i = 0; i < NCLIENTS; i++)
        ts_h2raw_close(&cl[i]);
    if (app_fd >= 0)
        close(app_fd);
    app_fd = -1;
    for (int i = 0; i < 4; i++) {
        if (extra_fd[i] >= 0)
            close(extra_fd[i]);
        extra_fd[i] = -1;
    }
    ts_shim_dispose(&own_shim);
    memset(&own_shim, 0, sizeof own_shim);
    ts_cutter_stop(cutter);
    cutter = NULL;
    ts_fixture_teardown(&fx);
}

TestSuite(faults, .fini = teardown, .timeout = 90);

static void start_gateway(const char *limits_json)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, limits_json), 0,
                 "sluiced did not print its ready line (its output is above)");
}

static const char *gw_log(void)
{
    return fx.gw.proc.err_path;
}

static void wait_log(const char *needle, size_t n, int ms)
{
    cr_assert_eq(ts_log_wait(gw_log(), needle, n, ts_deadline(ts_ms(ms))), 0,
                 "the gateway did not log \"%s\" (%zu times) within %d ms", needle, n, ms);
}

static void connect_client(ts_h2raw_t *c)
{
    cr_assert_eq(ts_h2raw_connect(c, &fx.gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to the gateway: %s", c->err);
}

/* A tunnel request on stream id of c with a credential minted now for ttl_s;
 * returns the :status. */
static int request_tunnel(ts_h2raw_t *c, int32_t id, int64_t ttl_s)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, ttl_s, NULL, username, sizeof username,
                              cred, sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request(c, id, TUNNEL_PATH, username, cred, 0), 0, "%s", c->err);
    return ts_h2raw_wait_status(c, id, ts_deadline(ts_ms(10000)));
}

/* The response body of stream id as a string (it is text for a refusal). */
static const char *body_of(const ts_h2raw_t *c, int32_t id)
{
    static char text[TS_H2RAW_BODY_CAP + 1];
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, id);
    size_t n = s ? s->body_len : 0;
    memcpy(text, s ? (const char *)s->body : "", n);
    text[n] = 0;
    return text;
}

/* One RTP packet of len bytes up stream id as a DATAGRAM capsule (the echo
 * sends it back down), split at SETTINGS_MAX_FRAME_SIZE. Returns 0 or -1. */
static int send_media(ts_h2raw_t *c, int32_t id, uint16_t seq, size_t len)
{
    static uint8_t pkt[65536], capsule[65536 + 16];
    size_t n = ts_pkt_rtp(pkt, sizeof pkt, len, seq, seq * 160u, 0x5a11u, seq);
    ssize_t k = capsule_encode_datagram(capsule, sizeof capsule, pkt, n);
    cr_assert_gt(k, 0);
    for (size_t off = 0; off < (size_t)k; off += 16384) {
        size_t part = (size_t)k - off < 16384 ? (size_t)k - off : 16384;
        if (ts_h2raw_send_frame(c, NGHTTP2_DATA, 0, id, capsule + off, part) < 0)
            return -1;
    }
    return 0;
}

typedef struct body_want {
    int32_t id;
    size_t bytes;
} body_want_t;

static size_t body_total(const ts_h2raw_t *c, int32_t id)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, id);
    return s ? s->body_len + s->body_over : 0;
}

static int body_has(const ts_h2raw_t *c, void *arg)
{
    const body_want_t *w = arg;
    return body_total(c, w->id) >= w->bytes;
}

/* A 100-byte packet up stream id; 1 when its echo came down within ms. */
static int round_trip(ts_h2raw_t *c, int32_t id, uint16_t seq, int ms)
{
    body_want_t w = {id, body_total(c, id) + 1};
    if (send_media(c, id, seq, 100) < 0)
        return 0;
    return ts_h2raw_wait(c, body_has, &w, ts_deadline(ts_ms(ms))) == 0;
}

typedef struct close_seen {
    int32_t id;
    uint64_t code;
} close_seen_t;

static int has_close(const ts_h2raw_t *c, void *arg)
{
    close_seen_t *cs = arg;
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, cs->id);
    return s && ts_find_close(s->body, s->body_len, &cs->code, NULL, 0) >= 0;
}

/* n mixed packets (RTP, STUN, DTLS) from fd through shim s and back; asserts
 * that every one came back. */
static void flow_all_back(int fd, const ts_shim_t *s, size_t n, uint16_t tag, const char *when)
{
    ts_flow_t f;
    cr_assert_eq(ts_flow_init_mixed(&f, fd, &s->listen, n, tag, 16), 0);
    int rc = ts_flows_run(&f, 1, ts_deadline(ts_ms(10000)));
    size_t matched = f.matched, foreign = f.foreign;
    ts_flow_free(&f);
    cr_assert_eq(rc, 0, "%s: %zu of %zu packets back, %zu foreign", when, matched, n, foreign);
}

/* ---- 1. backend killed and restarted ------------------------------------- */

/* The backend process dies (its port answers ICMP port unreachable) and comes
 * back on the same port well within tunnel_idle_ms. The tunnel reports it
 * (backend down in the log, the datagrams counted as backend_error drops) and
 * carries on: the same tunnel, the same gateway socket (the backend sees one
 * source), no CLOSE, no second tunnel. May be lost: the datagrams sent while
 * the backend was gone (counted here); nothing after it is back. */
Test(faults, backend_killed_and_restarted_the_same_tunnel_carries_on)
{
    start_gateway(NULL);
    ts_shim_t *shim;
    const char *why;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim, &app_fd, &why), 0, "%s", why);
    ts_addr_t src0, src1;
    cr_assert_eq(ts_echo_sources(fx.echo, &src0, 1), 1);
    char name[64], needle[128];
    snprintf(name, sizeof name, "%s", ts_echo_addr_str(fx.echo));
    uint16_t port = ts_addr_port(ts_echo_addr(fx.echo));

    ts_echo_stop(fx.echo);
    fx.echo = NULL;
    /* Each datagram now draws an ICMP error; eight in a row would close the
     * tunnel (proto/README.md §4), so at most four are sent. */
    snprintf(needle, sizeof needle, "backend %s down: unreachable", name);
    int sent_in_gap = 0;
    uint8_t pkt[64] = {0x80, 0x00};
    while (sent_in_gap < 4 && ts_log_count(gw_log(), needle) == 0) {
        pkt[3] = (uint8_t)sent_in_gap;
        cr_assert_eq(ts_udp_send(app_fd, &shim->listen, pkt, sizeof pkt), 0);
        sent_in_gap++;
        ts_log_wait(gw_log(), needle, 1, ts_deadline(ts_ms(1000)));
    }
    cr_assert_gt(ts_log_count(gw_log(), needle), 0, "the gateway never saw the backend go");

    fx.echo = ts_echo_start_at(AF_INET, port, NULL, NULL);
    cr_assert_not_null(fx.echo, "cannot bind %s again", name);
    cr_assert_eq(ts_flow_prime(app_fd, &shim->listen, 50, ts_deadline(ts_ms(3000))), 0,
                 "nothing came back through the tunnel after the backend returned");
    flow_all_back(app_fd, shim, 300, 11, "after the restart");

    cr_expect_eq(ts_echo_sources(fx.echo, &src1, 1), 1);
    cr_expect(ts_addr_eq(&src0, &src1), "the restarted backend saw another gateway socket");
    cr_expect_eq(ts_log_count(gw_log(), "event=tunnel.open "), 1, "a second tunnel was opened");
    cr_expect_eq(ts_log_count(gw_log(), "event=tunnel.close "), 0, "the tunnel was closed");
    cr_log_info("backend gone: %d datagram(s) sent in the gap (may be lost), 300 of 300 back "
                "after it returned on the same tunnel", sent_in_gap);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* The backend does not come back: after eight ICMP errors in a row the client
 * gets CLOSE(backend unreachable), and a new tunnel gets 503 with the reason
 * while the backend is out. May be lost: the datagrams sent after it died. */
Test(faults, backend_that_stays_dead_closes_the_tunnel_with_the_reason)
{
    start_gateway("{\"capsule_ping_ms\": 0}");
    ts_h2raw_t *c = &cl[0];
    connect_client(c);
    cr_assert_eq(request_tunnel(c, 1, 600), 200);
    cr_assert(round_trip(c, 1, 0, 5000), "no echo before the backend died");

    ts_echo_stop(fx.echo);
    fx.echo = NULL;
    close_seen_t cs = {1, UINT64_MAX};
    int sent = 0;
    while (sent < 64 && !has_close(c, &cs)) {
        cr_assert_eq(send_media(c, 1, (uint16_t)(sent + 1), 100), 0, "%s", c->err);
        sent++;
        ts_h2raw_wait(c, has_close, &cs, ts_deadline(ts_ms(20))); /* a 50 pps call */
    }
    cr_assert_eq(ts_h2raw_wait(c, has_close, &cs, ts_deadline(ts_ms(3000))), 0,
                 "no CLOSE after %d datagrams to a dead backend", sent);
    cr_assert_eq(cs.code, CLOSE_BACKEND_UNREACHABLE, "CLOSE code %llu (%s)",
                 (unsigned long long)cs.code, capsule_close_name(cs.code));
    cr_expect_gt(ts_log_count(gw_log(), " unreachable: Connection refused"), 0,
                 "the gateway did not log why it closed the tunnel");
    int status = request_tunnel(c, 3, 600);
    cr_expect_eq(status, 503, "a new tunnel while the only backend is out: %d", status);
    cr_expect(strstr(body_of(c, 3), "no healthy backend"), "body \"%s\"", body_of(c, 3));
    cr_log_info("dead backend: CLOSE(backend unreachable) after %d datagrams", sent);
    ts_h2raw_close(c);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* ---- 2. the gateway at its file descriptor limit -------------------------- */

/* sluiced refuses to start when max_connections + max_tunnels do not fit its
 * limit (docs/configuration.md "File descriptors"), so the limit is lowered
 * under the running process (prlimit(2), as `prlimit --pid` does) to its
 * lowest free descriptor number: the next accept() or socket() fails with
 * EMFILE.
 * Then: no busy loop (CPU over 1.5 s), a running call loses nothing, a new
 * tunnel gets 503 naming the cause, new connections wait in the backlog
 * (not served, not closed), and everything resumes when the limit is raised:
 * the waiting connections are served. May be lost: nothing. */
Test(faults, at_the_fd_limit_no_busy_loop_no_loss_and_a_clear_refusal)
{
    start_gateway(NULL);
    ts_shim_t *shim;
    const char *why;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim, &app_fd, &why), 0, "%s", why);
    ts_h2raw_t *c = &cl[0];
    connect_client(c);
    pid_t pid = fx.gw.proc.pid;
    /* A new descriptor takes the lowest free number, and fails (EMFILE)
     * when that is at or above the soft limit. */
    int used = (int)ts_pstat_fds(pid), lowest = ts_pstat_fd_lowest_free(pid);
    cr_assert_gt(lowest, 0);
    uint64_t old_soft = 0;
    cr_assert_eq(ts_fault_nofile(pid, (uint64_t)lowest, &old_soft), 0, "prlimit: %s",
                 strerror(errno));

    /* New connections: the kernel completes them; sluiced cannot accept. */
    for (int i = 0; i < 4; i++) {
        extra_fd[i] = ts_tcp_connect(&fx.gw.listen[0], ts_deadline(ts_ms(5000)));
        cr_assert_geq(extra_fd[i], 0, "connection %d was not even queued", i);
        /* Cleartext: once accepted, the gateway answers 400 and hangs up. */
        static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        cr_assert_eq(ts_tcp_send_all(extra_fd[i], req, sizeof req - 1), 0);
    }
    wait_log("accept: Too many open files; pausing accepts", 1, 5000);
    ts_pstat_t p0, p1;
    cr_assert_eq(ts_pstat_read(pid, &p0), 0);
    int64_t t0 = ts_now_ms();
    poll(NULL, 0, 1500); /* the measuring window, not synchronisation */
    cr_assert_eq(ts_pstat_read(pid, &p1), 0);
    int64_t wall = ts_now_ms() - t0;
    for (int i = 0; i < 4; i++) {
        struct pollfd p = {.fd = extra_fd[i], .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 0), 0, "connection %d was served at the fd limit", i);
    }
    uint64_t cpu_ms = (p1.utime_ns + p1.stime_ns - p0.utime_ns - p0.stime_ns) / 1000000u;
    size_t pauses = ts_log_count(gw_log(), "pausing accepts");
    cr_log_info("at the fd limit (%d, %d open): %llu ms CPU in %lld ms with 4 connections "
                "waiting; %zu \"pausing accepts\" lines", lowest, used, (unsigned long long)cpu_ms,
                (long long)wall, pauses);
    /* One pause per 100 ms (ACCEPT_PAUSE_S) on each event loop: the log line
     * is rate-limited (each loop's conn limiter: 10 per 10 s window) so the
     * log stays bounded. */
    char ready[512];
    long workers = 1;
    const char *w = ts_log_line(gw_log(), "event=ready ", 1, ready, sizeof ready) == 0
                        ? strstr(ready, " workers=")
                        : NULL;
    cr_assert(w && sscanf(w, " workers=%ld", &workers) == 1, "no workers= in \"%s\"", ready);
    cr_expect_leq(pauses, (size_t)(10 * workers),
                  "%zu \"pausing accepts\" lines (%ld event loops): log volume unbounded", pauses,
                  workers);
    cr_expect_leq(cpu_ms, 150, "sluiced spun at its fd limit: %llu ms CPU in %lld ms",
                  (unsigned long long)cpu_ms, (long long)wall);

    flow_all_back(app_fd, shim, 300, 21, "a running call at the fd limit");
    int status = request_tunnel(c, 1, 600);
    cr_expect_eq(status, 503, "a new tunnel at the fd limit: status %d", status);
    cr_expect(strstr(body_of(c, 1), "file descriptors"), "body \"%s\"", body_of(c, 1));
    cr_expect_gt(ts_log_count(gw_log(), "Too many open files"), 1);

    cr_assert_eq(ts_fault_nofile(pid, old_soft, NULL), 0);
    /* The connections that waited in the backlog are served now. */
    for (int i = 0; i < 4; i++) {
        char reply[512];
        int closed = 0;
        size_t n = ts_tcp_read_until_close(extra_fd[i], reply, sizeof reply - 1,
                                           ts_deadline(ts_ms(5000)), &closed);
        reply[n] = 0;
        cr_assert(closed && strstr(reply, "TLS required"),
                  "connection %d that waited in the backlog: \"%s\" (closed %d)", i, reply,
                  closed);
    }
    cr_assert_eq(request_tunnel(c, 3, 600), 200, "no new tunnel once fds were free again");
    cr_assert(round_trip(c, 3, 1, 5000), "the new tunnel carries nothing");
    ts_shim_t *shim2;
    int fd2 = -1;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim2, &fd2, &why), 0,
                 "a new connection after the limit was raised: %s", why);
    close(fd2);
    flow_all_back(app_fd, shim, 100, 22, "the running call after the limit was raised");
    for (int i = 0; i < 4; i++) {
        close(extra_fd[i]);
        extra_fd[i] = -1;
    }
    ts_h2raw_close(c);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* ---- 5. SIGTERM drain with clients that do not cooperate ------------------- */

static uint16_t local_port(int fd)
{
    ts_addr_t a;
    a.len = sizeof a.sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a.sa, &a.len), 0);
    return ts_addr_port(&a);
}

/* Two clients that do not cooperate: one's TCP is dead (it stopped reading,
 * its receive window is full and the gateway's send queue holds bytes it
 * will never take, so neither CLOSE nor GOAWAY can reach it), the other
 * reads but ignores CLOSE and never ends its stream. drain_ms then
 * drain_timeout_ms bound the drain: sluiced exits 0 on time. May be lost:
 * what the dead client never read (it was not reading anything). */
Test(faults, drain_deadline_holds_with_a_dead_peer)
{
    enum { DRAIN_MS = 400, TIMEOUT_MS = 300 };
    char limits[256];
    snprintf(limits, sizeof limits,
             "{\"capsule_ping_ms\": 0, \"drain_ms\": %d, \"drain_timeout_ms\": %d}", DRAIN_MS,
             TIMEOUT_MS);
    start_gateway(limits);
    ts_h2raw_t *dead = &cl[0], *deaf = &cl[1];
    connect_client(dead);
    int small = 4096;
    setsockopt(dead->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    cr_assert_eq(request_tunnel(dead, 1, 600), 200);
    connect_client(deaf);
    cr_assert_eq(request_tunnel(deaf, 1, 600), 200);

    /* Media goes up and its echo comes down into a socket nobody reads, until
     * the gateway's send queue to it holds what the client will not take. */
    uint16_t gport = ts_addr_port(&fx.gw.listen[0]), cport = local_port(dead->fd);
    long txq = -1;
    int sent = 0;
    int64_t fill_deadline = ts_deadline(ts_ms(10000));
    while (sent < 4000 && ts_remaining_ms(fill_deadline) > 0 &&
           (txq = ts_fault_tcp_txq(gport, cport)) < 32768) {
        if (send_media(dead, 1, (uint16_t)sent, 4000) < 0)
            break;
        sent++;
    }
    cr_log_info("dead peer: %d datagrams sent, gateway send queue %ld bytes", sent, txq);
    cr_assert_geq(txq, 32768, "the gateway's send queue to the dead client never filled (%ld)",
                  txq);

    int64_t t_term = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGTERM), 0);
    int code = ts_proc_wait_exit(&fx.gw.proc, ts_deadline(ts_ms(10000)));
    int64_t took = ts_now_ms() - t_term;
    cr_assert_eq(code, 0, "sluiced after SIGTERM: exit %d (-1: still running 10 s later)", code);
    cr_log_info("drain with a dead peer: exited %lld ms after SIGTERM (drain_ms %d + "
                "drain_timeout_ms %d)", (long long)took, DRAIN_MS, TIMEOUT_MS);
    cr_expect_leq(took, DRAIN_MS + TIMEOUT_MS + 2000, "the drain deadline did not hold");
    cr_expect_gt(ts_log_count(gw_log(), "drain timeout"), 0, "sluiced did not say why it stopped");
    /* The client that reads saw the drain. */
    close_seen_t cs = {1, UINT64_MAX};
    cr_expect_eq(ts_h2raw_wait(deaf, has_close, &cs, ts_deadline(ts_ms(3000))), 0);
    cr_expect_eq(cs.code, CLOSE_SHUTTING_DOWN);
}

/* Runs a shell command to completion; returns its exit code or -1, and its
 * stderr in *err (static; "" when none). */
static int sh(const char *cmd, const char **err)
{
    static ts_run_t run;
    static char msg[256];
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    ts_run_free(&run);
    int rc = ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &run) < 0 ? -1 : run.code;
    snprintf(msg, sizeof msg, "%s", run.err ? run.err : "");
    *err = msg;
    return rc;
}

/* The same with a peer that never ACKs: in a network namespace of the test's
 * own (criterion runs each test in its own process), nftables drops every
 * packet the client sends once its tunnel is open, so the gateway's PING
 * capsules, then its GOAWAY and CLOSE, are never acknowledged. The drain
 * deadline holds and sluiced exits 0 on time. May be lost: what the dead
 * client was sent (nothing reaches it any more). */
Test(faults, drain_deadline_holds_with_a_peer_that_never_acks)
{
    enum { DRAIN_MS = 400, TIMEOUT_MS = 300 };
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    const char *err;
    if (unshare(CLONE_NEWNET) < 0)
        cr_skip_test("cannot make a network namespace (unshare: %s)", strerror(errno));
    if (sh("ip link set lo up", &err) != 0)
        cr_skip_test("cannot bring lo up in the namespace: %s", err);
    char limits[256];
    snprintf(limits, sizeof limits,
             "{\"capsule_ping_ms\": 100, \"drain_ms\": %d, \"drain_timeout_ms\": %d}",
             DRAIN_MS, TIMEOUT_MS);
    start_gateway(limits);
    ts_h2raw_t *dead = &cl[0];
    connect_client(dead);
    cr_assert_eq(request_tunnel(dead, 1, 600), 200);
    cr_assert(round_trip(dead, 1, 0, 5000), "no echo before the peer went dead");

    uint16_t gport = ts_addr_port(&fx.gw.listen[0]), cport = local_port(dead->fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "nft add table inet t && "
             "nft add chain inet t o '{ type filter hook output priority 0; }' && "
             "nft add rule inet t o tcp sport %u drop",
             cport);
    if (sh(cmd, &err) != 0)
        cr_skip_test("nft is not usable here: %s", err);
    /* The PING capsules (every 100 ms) now stay unacknowledged. */
    long txq = 0;
    for (int64_t d = ts_deadline(ts_ms(3000)); ts_remaining_ms(d) > 0 && txq <= 0;) {
        txq = ts_fault_tcp_txq(gport, cport);
        poll(NULL, 0, 20); /* bounded polling of /proc for the condition */
    }
    cr_assert_gt(txq, 0, "the gateway's send queue to the dead peer stayed empty");

    int64_t t_term = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGTERM), 0);
    int code = ts_proc_wait_exit(&fx.gw.proc, ts_deadline(ts_ms(10000)));
    int64_t took = ts_now_ms() - t_term;
    cr_assert_eq(code, 0, "sluiced after SIGTERM: exit %d (-1: still running 10 s later)", code);
    cr_log_info("drain with a peer that never ACKs (%ld bytes unacknowledged): exited %lld ms "
                "after SIGTERM (drain_ms %d + drain_timeout_ms %d)",
                txq, (long long)took, DRAIN_MS, TIMEOUT_MS);
    cr_expect_leq(took, DRAIN_MS + TIMEOUT_MS + 2000, "the drain deadline did not hold");
    cr_expect_gt(ts_log_count(gw_log(), "drain timeout"), 0, "sluiced did not say why it stopped");
}

/* ---- 6. clock steps ----------------------------------------------------- */

/* sluiced runs with libfaketime preloaded (ts_fault.h): its CLOCK_REALTIME
 * (time(), what credential expiry is judged on) can be stepped while it runs;
 * its CLOCK_MONOTONIC (libev's timers, tunnel idle and expiry deadlines) is
 * left alone. A step forward past a credential's expiry refuses new tunnels
 * with it (401 "credential expired") but neither closes the running call nor
 * fires its idle timer; a step back does not stall the idle timer. May be
 * lost: nothing. */
Test(faults, clock_steps_expire_credentials_on_wall_time_and_leave_timers_alone)
{
    enum { IDLE_MS = 1500, STEP_S = 3600 };
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_not_null(ts_fault_libfaketime(),
                       "libfaketime is not installed (Debian package faketime, README.md)");
    ts_fault_clock_t clk;
    cr_assert_eq(ts_fault_clock_init(&clk, ts_tmpdir()), 0);
    cr_assert_eq(setenv("TS_GATEWAY_WRAP", clk.wrap, 1), 0);
    char limits[128];
    snprintf(limits, sizeof limits, "{\"capsule_ping_ms\": 0, \"tunnel_idle_ms\": %d}", IDLE_MS);
    start_gateway(limits);
    unsetenv("TS_GATEWAY_WRAP");
    ts_h2raw_t *c = &cl[0];
    connect_client(c);
    /* The call's credential is good for 600 s of wall time. */
    cr_assert_eq(request_tunnel(c, 1, 600), 200);
    cr_assert(round_trip(c, 1, 0, 5000), "no echo before the step");

    /* An hour forward: a credential minted now for 600 s has expired. */
    cr_assert_eq(ts_fault_clock_step(&clk, STEP_S), 0);
    int status = request_tunnel(c, 3, 600);
    cr_expect_eq(status, 401, "a new tunnel after the step forward: %d", status);
    cr_expect(strstr(body_of(c, 3), "credential expired"), "body \"%s\"", body_of(c, 3));
    /* The running call goes on: its deadlines are monotonic. A packet every
     * 250 ms for longer than tunnel_idle_ms, so that the tunnel's timer runs
     * at least once with the clock an hour ahead; then quiet for less than
     * tunnel_idle_ms: no CLOSE (neither credential expired nor idle). */
    close_seen_t cs = {1, UINT64_MAX};
    for (int i = 1; i <= IDLE_MS / 250 + 2; i++) {
        cr_assert(round_trip(c, 1, (uint16_t)i, 2000), "the call stopped after the step forward");
        cr_assert_neq(ts_h2raw_wait(c, has_close, &cs, ts_deadline(ts_ms(250))), 0,
                      "the call got CLOSE (%s) after the step forward", capsule_close_name(cs.code));
    }
    cr_assert_neq(ts_h2raw_wait(c, has_close, &cs, ts_deadline(ts_ms(IDLE_MS - 500))), 0,
                  "the call got CLOSE (%s) after the step forward", capsule_close_name(cs.code));
    cr_assert(round_trip(c, 1, 100, 2000), "the call stopped after the step forward");

    /* The call falls quiet, then the clock steps back 70 minutes (to ten
     * minutes behind real time): the idle timer, armed an hour "ahead", still
     * fires tunnel_idle_ms after the last packet, not 70 minutes late; and a
     * fresh credential is good again (600 s left, under the tenant's
     * max_ttl). */
    cr_assert(round_trip(c, 1, 101, 2000), "the call stopped after the step forward");
    int64_t quiet_from = ts_now_ms();
    cr_assert_eq(ts_fault_clock_step(&clk, -600), 0);
    cr_expect_eq(request_tunnel(c, 5, 600), 200, "a fresh credential after the step back");
    cr_assert_eq(ts_h2raw_wait(c, has_close, &cs, ts_deadline(ts_ms(IDLE_MS + 3000))), 0,
                 "no idle CLOSE within %d ms of the last packet after a step back",
                 IDLE_MS + 3000);
    int64_t took = ts_now_ms() - quiet_from;
    cr_expect_eq(cs.code, CLOSE_IDLE_TIMEOUT, "CLOSE code %llu (%s)",
                 (unsigned long long)cs.code, capsule_close_name(cs.code));
    cr_expect_geq(took, IDLE_MS - 100, "the idle CLOSE came early: %lld ms", (long long)took);
    cr_log_info("clock steps: +%d s refused a new tunnel (401), the call ran on; after -600 s "
                "the idle CLOSE came %lld ms after the last packet (tunnel_idle_ms %d)",
                STEP_S, (long long)took, IDLE_MS);
    ts_h2raw_close(c);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* ---- 3. a client whose address changes mid-call ---------------------------- */

/* The call of the address-change test: ECHO_LEN-byte packets marked
 * ECHO_MARK, numbered in bytes 2-3. Records when each of the n packets first
 * came back (back_at[seq], ms) until all have or until passes. */
#define ECHO_LEN 64
#define ECHO_MARK 0xc7
static void collect_echoes(int fd, int64_t *back_at, int n, int *n_back, int64_t until)
{
    uint8_t buf[256];
    while (*n_back < n && ts_remaining_ms(until) > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)ts_remaining_ms(until)) <= 0)
            return;
        ssize_t k;
        while ((k = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
            int j = buf[2] << 8 | buf[3];
            if (k == ECHO_LEN && buf[4] == ECHO_MARK && j < n && !back_at[j]) {
                back_at[j] = ts_now_ms();
                (*n_back)++;
            }
        }
    }
}

/* The shim reaches the gateway through ts_cutter (the network path). Mid-call
 * the path is cut (both sides reset) and from then on connects from
 * 127.0.0.2: the gateway sees the same client come back from another
 * address. The shim reconnects and resumes its session (proto/README.md
 * §8.1): the backend sees one source for the whole call, and the gateway
 * logs the new peer. May be lost: the packets of the gap, from the last
 * 50 ms before the cut (their echoes in flight) to the resume (reported);
 * none sent earlier, none sent 500 ms after the cut. */
Test(faults, a_client_whose_address_changes_resumes_its_call)
{
    enum { N = 400, CUT_AT = 100, PACE_MS = 5, LATE = CUT_AT + 100 };
    static int64_t back_at[N];
    memset(back_at, 0, sizeof back_at);
    start_gateway(NULL);
    cr_assert_not_null(cutter = ts_cutter_start(&fx.gw.listen[0]));
    char url[128];
    snprintf(url, sizeof url, "https://%s", ts_cutter_addr_str(cutter));
    ts_shim_opts_t o = {.gateway = url, .tenant = TS_FX_TENANT, .secret = TS_FX_SECRET,
                        .extra = {"--reconnect-min-ms", "50", "--reconnect-max-ms", "400"}};
    cr_assert_eq(ts_shim_start(&own_shim, &o, ts_deadline(ts_ms(15000))), 0);
    cr_assert_geq(app_fd = ts_udp_bind(AF_INET, NULL), 0);
    cr_assert_eq(ts_flow_prime(app_fd, &own_shim.listen, 50, ts_deadline(ts_ms(5000))), 0);
    ts_addr_t moved;
    cr_assert_eq(ts_addr_parse("127.0.0.2:0", &moved), 0);

    uint8_t pkt[ECHO_LEN] = {0x80, 0x00};
    pkt[4] = ECHO_MARK;
    int cut = -1, n_back = 0;
    int64_t deadline = ts_deadline(ts_ms(20000));
    for (int i = 0; i < N && ts_remaining_ms(deadline) > 0; i++) {
        if (i == CUT_AT) {
            ts_cutter_set_source(cutter, &moved);
            cut = ts_cutter_cut_all(cutter);
        }
        pkt[2] = (uint8_t)(i >> 8);
        pkt[3] = (uint8_t)i;
        cr_assert_eq(ts_udp_send(app_fd, &own_shim.listen, pkt, sizeof pkt), 0);
        collect_echoes(app_fd, back_at, N, &n_back, ts_deadline(ts_ms(PACE_MS))); /* the pace */
    }
    /* Echoes of the last packets may still be on their way. */
    collect_echoes(app_fd, back_at, N, &n_back, ts_deadline(ts_ms(1000)));
    cr_assert_eq(cut, 1, "the shim's connection was not live at the cut");
    int64_t gap = 0, prev = 0;
    int lost = 0, lost_before = 0, lost_late = 0;
    for (int i = 0; i < N; i++) {
        if (!back_at[i]) {
            lost++;
            lost_before += i < CUT_AT - 10; /* echoes of the last 50 ms may be in flight */
            lost_late += i >= LATE;
            continue;
        }
        if (prev && back_at[i] - prev > gap)
            gap = back_at[i] - prev;
        prev = back_at[i];
    }
    cr_log_info("address change: %d of %d back, %d lost, media gap %lld ms", n_back, N, lost,
                (long long)gap);
    cr_expect_eq(lost_before, 0, "%d packets lost before the cut", lost_before);
    cr_expect_eq(lost_late, 0, "%d packets lost 500 ms or more after the cut", lost_late);
    cr_expect_gt(ts_log_count(gw_log(), "peer=127.0.0.2:"), 0,
                 "the gateway never saw the client from 127.0.0.2");
    ts_addr_t src[4];
    cr_expect_eq(ts_echo_sources(fx.echo, src, 4), 1,
                 "the backend saw more than one source: the session was not resumed");
    cr_expect_eq(ts_log_count(own_shim.proc.err_path, "reopens 1)"), 0, "the tunnel was re-opened");
    cr_expect_eq(ts_shim_stop(&own_shim, ts_deadline(ts_ms(10000))), 0);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* ---- 4. a broken reload ---------------------------------------------------- */

/* A call that runs in chunks of 100 mixed packets on a thread until told to
 * stop (no criterion assertions off the test's thread: results only). */
typedef struct call {
    int fd;
    ts_addr_t to;
    _Atomic int stop;
    _Atomic int chunks;
    size_t sent, matched, foreign;
    int failed;
} call_t;

static void *call_run(void *arg)
{
    call_t *k = arg;
    for (int i = 0; i < 200 && !k->stop; i++) {
        ts_flow_t f;
        if (ts_flow_init_mixed(&f, k->fd, &k->to, 100, (uint16_t)(100 + i), 8) < 0) {
            k->failed = 1;
            break;
        }
        k->failed |= ts_flows_run(&f, 1, ts_deadline(ts_ms(5000))) < 0;
        k->sent += f.n;
        k->matched += f.matched;
        k->foreign += f.foreign;
        ts_flow_free(&f);
        k->chunks++;
    }
    return NULL;
}

/* Writes text (len bytes of it) over the gateway's config, sends SIGHUP and
 * waits for the nth "config.reload_failed"; copies that line into line. */
static void reload_broken(const char *text, size_t len, size_t nth, char *line, size_t cap)
{
    cr_assert_eq(ts_write_file(fx.config, text, len), 0);
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGHUP), 0);
    wait_log("event=config.reload_failed", nth, 10000);
    cr_assert_eq(ts_log_line(gw_log(), "event=config.reload_failed", nth, line, cap), 0);
}

/* Three broken reloads while a call runs: the file cut off mid-write (a
 * writer that is not atomic, caught half-way), a key file that does not
 * exist, a certificate file that is empty (being written). Each is refused
 * with the cause in the log; nothing changes: the call loses nothing, the
 * old certificate is still served and new tunnels open. May be lost:
 * nothing. */
Test(faults, broken_reloads_while_a_call_runs_change_nothing)
{
    start_gateway(NULL);
    ts_shim_t *shim;
    const char *why;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim, &app_fd, &why), 0, "%s", why);
    static call_t k;
    memset(&k, 0, sizeof k);
    k.fd = app_fd;
    k.to = shim->listen;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, call_run, &k), 0);
    for (int i = 0; i < 500 && k.chunks < 1; i++)
        poll(NULL, 0, 10); /* bounded wait for the call's first chunk */

    static char text[16384], line[2048];
    ts_config_t cfg;
    ts_fixture_std_config(&cfg, AF_INET, ts_echo_addr_str(fx.echo));
    int n = ts_config_render(&cfg, text, sizeof text);
    cr_assert_gt(n, 0);
    reload_broken(text, (size_t)n / 2, 1, line, sizeof line);
    char truncated[2048];
    snprintf(truncated, sizeof truncated, "%s", line);

    char missing[PATH_MAX], empty[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/no-such-key.pem", ts_tmpdir());
    cfg.key = missing;
    n = ts_config_render(&cfg, text, sizeof text);
    reload_broken(text, (size_t)n, 2, line, sizeof line);
    cr_expect(strstr(line, "no-such-key.pem"), "missing key: %s", line);

    cr_assert_eq(ts_tmppath("empty-cert.pem", empty, sizeof empty), 0);
    cr_assert_eq(ts_write_file(empty, "", 0), 0);
    ts_fixture_std_config(&cfg, AF_INET, ts_echo_addr_str(fx.echo));
    cfg.cert = empty;
    n = ts_config_render(&cfg, text, sizeof text);
    reload_broken(text, (size_t)n, 3, line, sizeof line);
    cr_expect(strstr(line, "empty-cert.pem"), "empty certificate: %s", line);

    int chunks_during = k.chunks;
    k.stop = 1;
    pthread_join(th, NULL);
    cr_log_info("truncated config: %s", truncated);
    cr_expect(strstr(truncated, fx.config) && strstr(truncated, "invalid JSON"),
              "the truncated config's line names neither file nor cause: %s", truncated);
    cr_expect_eq(ts_log_count(gw_log(), "event=config.reloaded"), 0);
    cr_log_info("broken reloads: the call sent %zu packets in %d chunks (%d when the last "
                "reload was refused), %zu back", k.sent, (int)k.chunks, chunks_during, k.matched);
    cr_assert(!k.failed && k.matched == k.sent && k.foreign == 0,
              "the call lost %zu of %zu packets (%zu foreign) across the broken reloads",
              k.sent - k.matched, k.sent, k.foreign);
    cr_assert_geq(k.chunks, 2, "the call did not run across the reloads");

    /* The old certificate still served, tunnels still open. */
    ts_h2raw_t *c = &cl[0];
    connect_client(c);
    cr_assert_eq(request_tunnel(c, 1, 600), 200);
    cr_assert(round_trip(c, 1, 0, 5000));
    ts_h2raw_close(c);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}
