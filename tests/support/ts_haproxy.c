/*
 * ts_haproxy.c — a real HAProxy for load-balancer tests (see ts_haproxy.h).
 */
#include "ts_haproxy.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_squid.h" /* ts_free_tcp_port */
#include "ts_util.h"

#define HAPROXY_BIN "/usr/sbin/haproxy"

int ts_haproxy_available(void)
{
    return access(HAPROXY_BIN, X_OK) == 0;
}

static void rm_dir(const char *dir)
{
    char *argv[] = {"rm", "-rf", (char *)dir, NULL};
    ts_run_t r;

    if (dir[0] && ts_run(argv, NULL, ts_deadline(5000), &r) == 0)
        ts_run_free(&r);
}

int ts_haproxy_start(ts_haproxy_t *h, const ts_addr_t *servers, size_t n, int proxy_v2,
                     int64_t deadline)
{
    const char *tmp = getenv("TMPDIR");
    char conf[PATH_MAX], text[4096], name[64];
    size_t pos = 0, p0 = 0;

    memset(h, 0, sizeof(*h));
    h->proc.pid = 0;
    h->proc.out_fd = h->proc.in_fd = -1;
    if (n == 0 || n > TS_HAPROXY_SERVERS_MAX)
        return -1;
    snprintf(h->dir, sizeof(h->dir), "%s/sluice-haproxy.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(h->dir)) {
        h->dir[0] = '\0';
        return -1;
    }
    h->port = ts_free_tcp_port();
    if (!h->port || ts_appendf(conf, sizeof(conf), &p0, "%s/haproxy.cfg", h->dir) < 0)
        return -1;
    ts_addr_loopback(&h->addr, AF_INET, h->port);
    ts_addr_str(&h->addr, h->addr_str, sizeof(h->addr_str));
    /* Long client/server timeouts: tunnels are long-lived (conf/haproxy). */
    if (ts_appendf(text, sizeof(text), &pos,
                   "global\n"
                   "    maxconn 1000\n"
                   "defaults\n"
                   "    mode tcp\n"
                   "    timeout connect 2s\n"
                   "    timeout client 10m\n"
                   "    timeout server 10m\n"
                   "    retries 3\n"
                   "    option redispatch\n"
                   "frontend fe\n"
                   "    bind 127.0.0.1:%u\n"
                   "    default_backend gateways\n"
                   "backend gateways\n"
                   "    balance roundrobin\n",
                   (unsigned)h->port) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (ts_appendf(text, sizeof(text), &pos, "    server gw%zu %s%s\n", i,
                       ts_addr_str(&servers[i], name, sizeof(name)),
                       proxy_v2 ? " send-proxy-v2" : "") < 0)
            return -1;
    if (ts_write_file(conf, text, pos) < 0)
        return -1;

    char *argv[] = {HAPROXY_BIN, "-db", "-f", conf, NULL};
    if (ts_proc_spawn(&h->proc, "haproxy", argv, 0) < 0)
        return -1;
    while (ts_now_ms() < deadline) {
        int fd = ts_tcp_connect(&h->addr, deadline);
        if (fd >= 0) {
            /* An accepted connection goes to a server: close it at once (the
             * server sees a PROXY header, then EOF). */
            close(fd);
            return 0;
        }
        if (!ts_proc_running(&h->proc))
            break;
        poll(NULL, 0, 20); /* bounded by the deadline */
    }
    fprintf(stderr, "ts_haproxy: haproxy did not start on port %u\n", (unsigned)h->port);
    ts_proc_dump(&h->proc, "haproxy did not start");
    return -1;
}

int ts_haproxy_stop(ts_haproxy_t *h, int64_t deadline)
{
    if (h->proc.pid <= 0)
        return -1;
    return ts_proc_stop(&h->proc, deadline);
}

void ts_haproxy_dispose(ts_haproxy_t *h)
{
    if (h->proc.pid > 0)
        ts_proc_dispose(&h->proc);
    h->proc.pid = 0;
    rm_dir(h->dir);
    h->dir[0] = '\0';
}
