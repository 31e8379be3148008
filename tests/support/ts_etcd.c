/*
 * ts_etcd.c — a real etcd for tests (see ts_etcd.h).
 */
#include "ts_etcd.h"

#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_squid.h"
#include "ts_curl.h"
#include "ts_util.h"

int ts_etcd_available(void)
{
    return access(TS_ETCD_BIN, X_OK) == 0;
}

/* POST (body non-NULL) or GET url; returns the HTTP status, or -1. */
static long http(const char *url, const char *body, long timeout_ms, ts_curl_reply_t *out)
{
    return ts_curl(NULL, url, NULL, body, timeout_ms, out);
}

static void rm_dir(const char *dir)
{
    char *argv[] = {"rm", "-rf", (char *)dir, NULL};
    ts_run_t r;
    if (dir[0] && ts_run(argv, NULL, ts_deadline(5000), &r) == 0)
        ts_run_free(&r);
}

int ts_etcd_start(ts_etcd_t *e, int64_t deadline)
{
    if (!e->dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(e->dir, sizeof e->dir, "%s/ts-etcd.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(e->dir)) {
            fprintf(stderr, "ts_etcd: mkdtemp %s: %s\n", e->dir, strerror(errno));
            e->dir[0] = '\0';
            return -1;
        }
        /* Two distinct free ports: the kernel may hand the same one out
         * twice in a row, once the first probe's socket is closed. */
        e->port = ts_free_tcp_port();
        e->peer_port = ts_free_tcp_port();
        for (int i = 0; i < 16 && e->peer_port == e->port; i++)
            e->peer_port = ts_free_tcp_port();
        if (!e->port || !e->peer_port || e->port == e->peer_port) {
            fprintf(stderr, "ts_etcd: no two free loopback ports (%u, %u)\n", e->port,
                    e->peer_port);
            return -1;
        }
        snprintf(e->url, sizeof e->url, "http://127.0.0.1:%u", e->port);
    }
    char data[PATH_MAX + 8], client[64], peer[64], cluster[96];
    snprintf(data, sizeof data, "%s/data", e->dir);
    snprintf(client, sizeof client, "http://127.0.0.1:%u", e->port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%u", e->peer_port);
    snprintf(cluster, sizeof cluster, "default=%s", peer);
    char *argv[] = {TS_ETCD_BIN, "--data-dir", data, "--listen-client-urls", client,
                    "--advertise-client-urls", client, "--listen-peer-urls", peer,
                    "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
                    "--log-level", "warn", NULL};
    memset(&e->proc, 0, sizeof e->proc);
    if (ts_proc_spawn(&e->proc, "etcd", argv, 0) < 0) {
        fprintf(stderr, "ts_etcd: cannot start %s: %s\n", TS_ETCD_BIN, strerror(errno));
        return -1;
    }
    char url[96];
    snprintf(url, sizeof url, "%s/health", e->url);
    ts_curl_reply_t b;
    for (int i = 0; i < 10000 && ts_now_ms() < deadline; i++) {
        if (!ts_proc_running(&e->proc))
            break;
        if (http(url, NULL, 200, &b) == 200 && strstr(b.body, "\"true\""))
            return 0;
        usleep(20 * 1000); /* poll interval of a condition with a deadline */
    }
    ts_proc_dump(&e->proc, "etcd did not become healthy");
    return -1;
}

int ts_etcd_stop(ts_etcd_t *e, int64_t deadline)
{
    if (e->proc.pid <= 0 || e->proc.reaped)
        return -1;
    /* etcd exits 143 on SIGTERM, which ts_proc_stop would report as a
     * failure with its log: ask and wait, and only then force. */
    ts_proc_signal(&e->proc, SIGTERM);
    int code = ts_proc_wait_exit(&e->proc, deadline);
    return code >= 0 ? 0 : ts_proc_stop(&e->proc, ts_deadline(5000));
}

int ts_etcd_kill(ts_etcd_t *e)
{
    if (e->proc.pid <= 0 || e->proc.reaped)
        return -1;
    ts_proc_signal(&e->proc, SIGKILL);
    int rc = ts_proc_wait_exit(&e->proc, ts_deadline(5000)) < 0 ? -1 : 0;
    ts_proc_dispose(&e->proc); /* closes its pipes; the directory stays */
    return rc;
}

static char *b64(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
    return out;
}

/* The header's "revision":"N" of a response. */
static int64_t revision_of(const ts_curl_reply_t *b)
{
    const char *r = strstr(b->body, "\"revision\":\"");
    return r ? strtoll(r + 12, NULL, 10) : -1;
}

int64_t ts_etcd_put(const ts_etcd_t *e, const char *key, const char *value, int64_t deadline)
{
    char *k = b64(key), *v = b64(value);
    size_t cap = 64 + (k ? strlen(k) : 0) + (v ? strlen(v) : 0);
    char *body = malloc(cap), url[96];
    int64_t rev = -1;
    ts_curl_reply_t b;
    if (k && v && body) {
        snprintf(body, cap, "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
        snprintf(url, sizeof url, "%s/v3/kv/put", e->url);
        int ms = ts_remaining_ms(deadline);
        if (http(url, body, ms > 0 ? ms : 1, &b) == 200)
            rev = revision_of(&b);
    }
    free(k);
    free(v);
    free(body);
    return rev;
}

int64_t ts_etcd_delete(const ts_etcd_t *e, const char *key, int64_t deadline)
{
    char *k = b64(key), body[512], url[96];
    int64_t rev = -1;
    ts_curl_reply_t b;
    if (k && strlen(k) < 400) {
        snprintf(body, sizeof body, "{\"key\":\"%s\"}", k);
        snprintf(url, sizeof url, "%s/v3/kv/deleterange", e->url);
        int ms = ts_remaining_ms(deadline);
        if (http(url, body, ms > 0 ? ms : 1, &b) == 200)
            rev = revision_of(&b);
    }
    free(k);
    return rev;
}

void ts_etcd_dispose(ts_etcd_t *e)
{
    if (e->proc.pid > 0)
        ts_proc_dispose(&e->proc);
    e->proc.pid = 0;
    if (e->dir[0] && getenv("TS_KEEP") == NULL)
        rm_dir(e->dir);
    e->dir[0] = '\0';
}

void ts_etcd_end(ts_etcd_t *e)
{
    if (ts_proc_running(&e->proc))
        ts_etcd_stop(e, ts_deadline(ts_ms(10000)));
    ts_etcd_dispose(e);
}
