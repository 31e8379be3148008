/*
 * ts_coturn.c — start, probe and stop turnserver and turnutils_peer; read
 * turnserver's log.
 */
#include "ts_coturn.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ts_pkt.h"
#include "ts_util.h"

#define START_TRIES 3          /* a picked port taken by someone else: retry */
#define PROBE_EVERY_MS 100     /* STUN Binding retransmit while it starts */
#define LOG_MAX (8u << 20)     /* a test's log stays far below this */
#define LOG_POLL_MS 20

int ts_coturn_available(void)
{
    return access(TS_COTURN_BIN, X_OK) == 0 && access(TS_COTURN_PEER_BIN, X_OK) == 0 &&
           access(TS_COTURN_UCLIENT_BIN, X_OK) == 0;
}

/* A loopback UDP port that was free a moment ago (bound on 0, then closed):
 * for programs that cannot report the port they bound. 0 on failure. */
static uint16_t free_udp_port(void)
{
    ts_addr_t a;
    int fd = ts_udp_bind(AF_INET, &a);
    if (fd < 0)
        return 0;
    close(fd);
    return ts_addr_port(&a);
}

/* Sends probe to `to` from a fresh socket every PROBE_EVERY_MS until a reply
 * that accept() takes arrives, p exits, or the deadline passes. Returns 0 or -1. */
static int probe_until(ts_proc_t *p, const ts_addr_t *to, const uint8_t *probe, size_t len,
                       int (*accept_reply)(const uint8_t *, size_t, const uint8_t *),
                       int64_t deadline)
{
    int fd = ts_udp_bind(AF_INET, NULL);
    if (fd < 0)
        return -1;
    int rc = -1;
    while (ts_remaining_ms(deadline) > 0) {
        if (ts_proc_wait_exit(p, ts_now_ms()) >= 0)
            break; /* it exited: a taken port, a bad option */
        ts_udp_send(fd, to, probe, len);
        int64_t slice = ts_deadline(PROBE_EVERY_MS);
        if (slice > deadline)
            slice = deadline;
        uint8_t buf[1500];
        ssize_t n;
        while ((n = ts_udp_recv(fd, buf, sizeof buf, slice, NULL)) >= 0) {
            if (accept_reply(buf, (size_t)n, probe)) {
                rc = 0;
                goto out;
            }
        }
    }
out:
    close(fd);
    return rc;
}

/* A STUN Binding success response (RFC 8489 §6: class bits 0b10, method 1,
 * type 0x0101) to our transaction. */
static int is_binding_answer(const uint8_t *buf, size_t n, const uint8_t *req)
{
    return n >= TS_STUN_HEADER && buf[0] == 0x01 && buf[1] == 0x01 &&
           memcmp(buf + 4, req + 4, 16) == 0;
}

static int is_echo(const uint8_t *buf, size_t n, const uint8_t *req)
{
    return n == TS_STUN_HEADER && memcmp(buf, req, n) == 0;
}

static uint16_t free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ts_addr_t a;
    ts_addr_loopback(&a, AF_INET, 0);
    socklen_t sl = sizeof a.sa;
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a.sa, a.len) == 0 &&
        getsockname(fd, (struct sockaddr *)&a.sa, &sl) == 0)
        port = ts_addr_port(&a);
    if (fd >= 0)
        close(fd);
    return port;
}

static int spawn_turnserver(ts_coturn_t *t, const ts_coturn_opts_t *o, uint16_t port,
                            uint16_t tls_port, uint16_t relay_lo, unsigned nrelay)
{
    char port_arg[16], min_arg[16], max_arg[16], user_arg[128], db[PATH_MAX], pid[PATH_MAX];
    char tls_arg[16];
    t->min_port = relay_lo;
    t->max_port = (uint16_t)(relay_lo + nrelay - 1);
    snprintf(port_arg, sizeof port_arg, "%u", port);
    snprintf(min_arg, sizeof min_arg, "%u", t->min_port);
    snprintf(max_arg, sizeof max_arg, "%u", t->max_port);
    snprintf(user_arg, sizeof user_arg, "%s:%s", TS_COTURN_USER, TS_COTURN_PASSWORD);
    snprintf(db, sizeof db, "%s/turndb", t->dir);
    snprintf(pid, sizeof pid, "%s/turnserver.pid", t->dir);
    ts_addr_loopback(&t->listen, AF_INET, port);
    ts_addr_str(&t->listen, t->listen_str, sizeof t->listen_str);

    snprintf(tls_arg, sizeof tls_arg, "%u", tls_port);
    if (t->has_tls)
        ts_addr_loopback(&t->tls_listen, AF_INET, tls_port);
    char *argv[40] = {
        TS_COTURN_BIN, "-n", "-v",
        "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
        "--listening-port", port_arg,
        "--min-port", min_arg, "--max-port", max_arg,
        /* RFC 8656 §21: a relay to loopback is refused unless asked for. */
        "--allow-loopback-peers",
        "--no-tcp", "--no-dtls", "--no-cli", "--no-rfc5780",
        "--lt-cred-mech", "--user", user_arg, "--realm", TS_COTURN_REALM,
        "--userdb", db, "--pidfile", pid,
        "--log-file", t->log_path, "--simple-log", "--no-stdout-log",
    };
    size_t n = 0;
    while (argv[n])
        n++;
    if (t->has_tls) {
        /* TLS only: --no-tcp leaves the TLS listener on (coturn's own split). */
        char *tls[] = {"--tls-listening-port", tls_arg, "--cert", (char *)o->cert,
                       "--pkey", (char *)o->key};
        for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++)
            argv[n++] = tls[i];
    } else {
        argv[n++] = "--no-tls";
    }
    argv[n] = NULL;
    return ts_proc_spawn(&t->proc, "turnserver", argv, 0);
}

/* Connects to the TLS port until it accepts (coturn opens its listeners in
 * no promised order). 0 or -1. */
static int wait_tls(ts_coturn_t *t, int64_t deadline)
{
    while (ts_remaining_ms(deadline) > 0 && ts_proc_running(&t->proc)) {
        int fd = ts_tcp_connect(&t->tls_listen, ts_deadline(PROBE_EVERY_MS));
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        poll(NULL, 0, 10);
    }
    return -1;
}

int ts_coturn_start(ts_coturn_t *t, int64_t deadline)
{
    return ts_coturn_start_opts(t, NULL, deadline);
}

int ts_coturn_start_opts(ts_coturn_t *t, const ts_coturn_opts_t *o, int64_t deadline)
{
    static const ts_coturn_opts_t none;
    if (!o)
        o = &none;
    unsigned nrelay = o->relay_ports ? o->relay_ports : TS_COTURN_RELAY_PORTS;
    if (nrelay > 16384)
        nrelay = 16384;
    memset(t, 0, sizeof *t);
    t->has_tls = o->cert && o->key;
    t->proc.out_fd = t->proc.in_fd = t->proc._pidfd = -1;
    const char *tmp = ts_tmpdir();
    if (!tmp || (size_t)snprintf(t->dir, sizeof t->dir, "%s/coturn.XXXXXX", tmp) >= sizeof t->dir ||
        !mkdtemp(t->dir)) {
        fprintf(stderr, "ts_coturn_start: cannot make a directory under %s\n",
                tmp ? tmp : "(no tmpdir)");
        return -1;
    }
    snprintf(t->log_path, sizeof t->log_path, "%s/turn.log", t->dir);

    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        uint16_t port = free_udp_port(), relay = free_udp_port();
        uint16_t tls_port = t->has_tls ? free_tcp_port() : 0;
        if (port == 0 || relay == 0 || (t->has_tls && tls_port == 0))
            return -1;
        if (relay > 65535 - nrelay)
            relay = (uint16_t)(65535 - nrelay);
        if (port >= relay && port < relay + nrelay)
            continue; /* would collide with its own range */
        if (ts_proc_running(&t->proc))
            ts_proc_dispose(&t->proc);
        if (spawn_turnserver(t, o, port, tls_port, relay, nrelay) < 0) {
            fprintf(stderr, "ts_coturn_start: cannot run %s: %s\n", TS_COTURN_BIN,
                    strerror(errno));
            return -1;
        }
        uint8_t req[TS_STUN_HEADER];
        ts_pkt_stun(req, sizeof req, (uint32_t)port);
        if (probe_until(&t->proc, &t->listen, req, sizeof req, is_binding_answer, deadline) == 0 &&
            (!t->has_tls || wait_tls(t, deadline) == 0))
            return 0;
        if (ts_proc_running(&t->proc))
            break; /* still up but silent until the deadline: do not retry */
        ts_proc_dump(&t->proc, "turnserver exited while starting; retrying with new ports");
        ts_coturn_log_dump(t, 0, "turnserver log");
    }
    ts_proc_dump(&t->proc, "turnserver did not answer a STUN Binding request");
    ts_coturn_log_dump(t, 0, "turnserver log");
    return -1;
}

/* SIGTERM and a bounded wait; coturn and turnutils_peer end on SIGTERM with
 * the default disposition (exit status 128 + 15), which is a clean stop here. */
static int stop_quietly(ts_proc_t *p, int64_t deadline)
{
    if (p->pid <= 0)
        return -1;
    if (!p->reaped) {
        ts_proc_signal(p, SIGTERM);
        if (ts_proc_wait_exit(p, deadline) < 0)
            return ts_proc_stop(p, deadline); /* kills and dumps */
    }
    int code = ts_proc_exit_code(p->status);
    return (code == 0 || code == 128 + SIGTERM) ? 0 : code;
}

int ts_coturn_stop(ts_coturn_t *t, int64_t deadline)
{
    return stop_quietly(&t->proc, deadline);
}

void ts_coturn_dispose(ts_coturn_t *t)
{
    ts_proc_dispose(&t->proc);
}

size_t ts_coturn_log_mark(const ts_coturn_t *t)
{
    size_t len = 0;
    free(ts_read_file(t->log_path, LOG_MAX, &len));
    return len;
}

size_t ts_coturn_log_count(const ts_coturn_t *t, size_t mark, const char *needle)
{
    size_t len = 0, count = 0, nlen = strlen(needle);
    char *log = ts_read_file(t->log_path, LOG_MAX, &len);
    if (!log || mark >= len || nlen == 0) {
        free(log);
        return 0;
    }
    for (const char *at = log + mark; (at = memmem(at, len - (size_t)(at - log), needle, nlen));
         at += nlen)
        count++;
    free(log);
    return count;
}

int ts_coturn_log_wait(const ts_coturn_t *t, size_t mark, const char *needle, int64_t deadline)
{
    for (;;) {
        if (ts_coturn_log_count(t, mark, needle) > 0)
            return 0;
        int left = ts_remaining_ms(deadline);
        if (left == 0) {
            char why[160];
            snprintf(why, sizeof why, "no \"%s\" in the log before the deadline", needle);
            ts_coturn_log_dump(t, mark, why);
            return -1;
        }
        /* coturn has no way to tell us it wrote a line: re-read in slices. */
        poll(NULL, 0, left < LOG_POLL_MS ? left : LOG_POLL_MS);
    }
}

void ts_coturn_log_dump(const ts_coturn_t *t, size_t mark, const char *why)
{
    size_t len = 0;
    char *log = ts_read_file(t->log_path, LOG_MAX, &len);
    const size_t tail = 6144;
    size_t from = mark < len ? mark : len;
    if (len - from > tail)
        from = len - tail;
    fprintf(stderr, "==== turnserver log %s: %s\n%s==== end turnserver log\n", t->log_path, why,
            log ? log + from : "(unreadable)\n");
    free(log);
}

int ts_turn_peer_start(ts_turn_peer_t *p, int64_t deadline)
{
    memset(p, 0, sizeof *p);
    p->proc.out_fd = p->proc.in_fd = p->proc._pidfd = -1;
    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        uint16_t port = free_udp_port();
        if (port == 0)
            return -1;
        char port_arg[16];
        snprintf(port_arg, sizeof port_arg, "%u", port);
        ts_addr_loopback(&p->addr, AF_INET, port);
        ts_addr_str(&p->addr, p->addr_str, sizeof p->addr_str);
        if (ts_proc_running(&p->proc))
            ts_proc_dispose(&p->proc);
        char *argv[] = {TS_COTURN_PEER_BIN, "-L", "127.0.0.1", "-p", port_arg, NULL};
        if (ts_proc_spawn(&p->proc, "turnutils_peer", argv, 0) < 0) {
            fprintf(stderr, "ts_turn_peer_start: cannot run %s: %s\n", TS_COTURN_PEER_BIN,
                    strerror(errno));
            return -1;
        }
        uint8_t probe[TS_STUN_HEADER];
        ts_pkt_stun(probe, sizeof probe, (uint32_t)port); /* any datagram comes back */
        if (probe_until(&p->proc, &p->addr, probe, sizeof probe, is_echo, deadline) == 0)
            return 0;
        if (ts_proc_running(&p->proc))
            break;
    }
    ts_proc_dump(&p->proc, "turnutils_peer did not echo a datagram");
    return -1;
}

int ts_turn_peer_stop(ts_turn_peer_t *p, int64_t deadline)
{
    return stop_quietly(&p->proc, deadline);
}

void ts_turn_peer_dispose(ts_turn_peer_t *p)
{
    ts_proc_dispose(&p->proc);
}
