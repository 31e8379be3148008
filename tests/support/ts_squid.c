/*
 * ts_squid.c — a real squid for proxy tests (see ts_squid.h).
 */
#include "ts_squid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ts_log.h"
#include "ts_net.h"
#include "ts_util.h"

#define SQUID_BIN "/usr/sbin/squid"
#define BASIC_AUTH_HELPER "/usr/lib/squid/basic_ncsa_auth"
#define DIGEST_AUTH_HELPER "/usr/lib/squid/digest_file_auth"

int ts_squid_available(void)
{
    return access(SQUID_BIN, X_OK) == 0;
}

uint16_t ts_free_tcp_port(void)
{
    ts_addr_t a;
    socklen_t len = sizeof(a.sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint16_t port = 0;

    ts_addr_loopback(&a, AF_INET, 0);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a.sa, a.len) == 0 &&
        getsockname(fd, (struct sockaddr *)&a.sa, &len) == 0)
        port = ts_addr_port(&a);
    if (fd >= 0)
        close(fd);
    return port;
}

/* "user:<apr1 hash>" from `openssl passwd -apr1`, for basic_ncsa_auth. */
static int write_htpasswd(const char *path, const char *user, const char *password,
                          int64_t deadline)
{
    char *argv[] = {"openssl", "passwd", "-apr1", (char *)password, NULL};
    ts_run_t r;
    char line[512];
    int rc = -1;

    if (ts_run(argv, NULL, deadline, &r) < 0)
        return -1;
    if (r.code == 0 && r.out_len > 0) {
        r.out[strcspn(r.out, "\r\n")] = '\0';
        int n = snprintf(line, sizeof(line), "%s:%s\n", user, r.out);
        if (n > 0 && (size_t)n < sizeof(line) && ts_write_file(path, line, (size_t)n) == 0 &&
            chmod(path, 0644) == 0)
            rc = 0;
    }
    ts_run_free(&r);
    return rc;
}

static void rm_dir(const char *dir)
{
    char *argv[] = {"rm", "-rf", (char *)dir, NULL};
    ts_run_t r;

    if (dir[0] && ts_run(argv, NULL, ts_deadline(5000), &r) == 0)
        ts_run_free(&r);
}

int ts_squid_start(ts_squid_t *sq, const ts_squid_opts_t *o, int64_t deadline)
{
    static const ts_squid_opts_t none = {0};
    const char *tmp = getenv("TMPDIR");
    char conf[PATH_MAX], passwd[PATH_MAX], text[4096];
    size_t pos = 0;

    memset(sq, 0, sizeof(*sq));
    sq->proc.pid = 0;
    sq->proc.out_fd = sq->proc.in_fd = -1;
    if (!o)
        o = &none;
    snprintf(sq->dir, sizeof(sq->dir), "%s/sluice-squid.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(sq->dir)) {
        sq->dir[0] = '\0';
        return -1;
    }
    /* Started as root, squid works as user proxy: it must write here. */
    if (chmod(sq->dir, 0777) < 0)
        return -1;
    sq->port = ts_free_tcp_port();
    if (!sq->port)
        return -1;
    snprintf(sq->url, sizeof(sq->url), "http://127.0.0.1:%u", (unsigned)sq->port);
    size_t p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    if (ts_appendf(conf, sizeof(conf), &p0, "%s/squid.conf", sq->dir) < 0 ||
        ts_appendf(passwd, sizeof(passwd), &p1, "%s/passwd", sq->dir) < 0 ||
        ts_appendf(sq->access_log, sizeof(sq->access_log), &p2, "%s/access.log", sq->dir) < 0 ||
        ts_appendf(sq->cache_log, sizeof(sq->cache_log), &p3, "%s/cache.log", sq->dir) < 0)
        return -1;

    if (ts_appendf(text, sizeof(text), &pos,
                   "http_port 127.0.0.1:%u\n"
                   "pid_filename %s/squid.pid\n"
                   "cache_log %s\n"
                   "access_log stdio:%s\n"
                   "cache_store_log none\n"
                   "cache deny all\n"
                   "cache_mem 8 MB\n"
                   "coredump_dir %s\n"
                   "pinger_enable off\n"
                   "shutdown_lifetime 0 seconds\n"
                   "forwarded_for delete\n"
                   "acl loop src 127.0.0.0/8\n"
                   "acl CONNECT method CONNECT\n",
                   (unsigned)sq->port, sq->dir, sq->cache_log, sq->access_log, sq->dir) < 0)
        return -1;
    if (o->deny_port &&
        ts_appendf(text, sizeof(text), &pos,
                   "acl denied_port port %u\n"
                   "http_access deny CONNECT denied_port\n",
                   (unsigned)o->deny_port) < 0)
        return -1;
    if (o->user && o->digest) {
        /* digest_file_auth reads plain "user:password" lines. */
        char line[512];
        int n = snprintf(line, sizeof(line), "%s:%s\n", o->user, o->password ? o->password : "");
        if (n < 0 || (size_t)n >= sizeof(line) || ts_write_file(passwd, line, (size_t)n) < 0 ||
            chmod(passwd, 0644) < 0)
            return -1;
        if (ts_appendf(text, sizeof(text), &pos,
                       "auth_param digest program %s %s\n"
                       "auth_param digest realm sluice-test\n"
                       "auth_param digest children 2 startup=1\n"
                       "acl authed proxy_auth REQUIRED\n"
                       "http_access deny !authed\n",
                       DIGEST_AUTH_HELPER, passwd) < 0)
            return -1;
    } else if (o->user) {
        if (write_htpasswd(passwd, o->user, o->password ? o->password : "", deadline) < 0)
            return -1;
        if (ts_appendf(text, sizeof(text), &pos,
                       "auth_param basic program %s %s\n"
                       "auth_param basic realm sluice-test\n"
                       "auth_param basic children 2 startup=1\n"
                       "acl authed proxy_auth REQUIRED\n"
                       "http_access deny !authed\n",
                       BASIC_AUTH_HELPER, passwd) < 0)
            return -1;
    }
    if (ts_appendf(text, sizeof(text), &pos, "http_access allow loop\nhttp_access deny all\n") <
            0 ||
        ts_write_file(conf, text, pos) < 0 || chmod(conf, 0644) < 0)
        return -1;

    char *argv[] = {SQUID_BIN, "-N", "-f", conf, NULL};
    if (ts_proc_spawn(&sq->proc, "squid", argv, 0) < 0)
        return -1;
    /* Ready once its log says so and a connection is accepted. */
    if (ts_log_wait(sq->cache_log, "Accepting HTTP Socket connections", 1, deadline) < 0)
        goto fail;
    ts_addr_t a;
    ts_addr_loopback(&a, AF_INET, sq->port);
    while (ts_now_ms() < deadline) {
        int fd = ts_tcp_connect(&a, deadline);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (!ts_proc_running(&sq->proc))
            break;
        poll(NULL, 0, 20); /* bounded by the deadline */
    }
fail:
    fprintf(stderr, "ts_squid: squid did not start on port %u\n", (unsigned)sq->port);
    char *log = ts_read_file(sq->cache_log, 16384, NULL);
    if (log) {
        fprintf(stderr, "--- squid cache.log ---\n%s\n", log);
        free(log);
    }
    return -1;
}

int ts_squid_stop(ts_squid_t *sq, int64_t deadline)
{
    if (sq->proc.pid <= 0)
        return -1;
    return ts_proc_stop(&sq->proc, deadline);
}

void ts_squid_dispose(ts_squid_t *sq)
{
    if (sq->proc.pid > 0)
        ts_proc_dispose(&sq->proc);
    sq->proc.pid = 0;
    if (sq->dir[0] && getenv("TS_KEEP") == NULL)
        rm_dir(sq->dir);
    sq->dir[0] = '\0';
}
