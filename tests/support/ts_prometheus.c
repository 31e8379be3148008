/*
 * ts_prometheus.c — a real Prometheus for tests (see ts_prometheus.h).
 */
#include "ts_prometheus.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_curl.h"
#include "ts_squid.h"
#include "ts_util.h"

int ts_prometheus_start(ts_prometheus_t *p, const char *target, int64_t deadline)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof p->dir, "%s/ts-prom.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(p->dir)) {
        p->dir[0] = '\0';
        return -1;
    }
    p->port = ts_free_tcp_port();
    if (!p->port)
        return -1;
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%u", p->port);
    char conf[PATH_MAX + 16], data[PATH_MAX + 16], text[512], listen[32];
    snprintf(conf, sizeof conf, "%s/prometheus.yml", p->dir);
    snprintf(data, sizeof data, "%s/data", p->dir);
    snprintf(listen, sizeof listen, "127.0.0.1:%u", p->port);
    int n = snprintf(text, sizeof text,
                     "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                     "scrape_configs:\n  - job_name: sluiced\n    static_configs:\n"
                     "      - targets: ['%s']\n",
                     target);
    if (ts_write_file(conf, text, (size_t)n) < 0)
        return -1;
    char conf_arg[PATH_MAX + 64], data_arg[PATH_MAX + 64], listen_arg[64];
    snprintf(conf_arg, sizeof conf_arg, "--config.file=%s", conf);
    snprintf(data_arg, sizeof data_arg, "--storage.tsdb.path=%s", data);
    snprintf(listen_arg, sizeof listen_arg, "--web.listen-address=%s", listen);
    char *argv[] = {TS_PROMETHEUS_BIN, conf_arg, data_arg, listen_arg, "--log.level=warn", NULL};
    memset(&p->proc, 0, sizeof p->proc);
    if (ts_proc_spawn(&p->proc, "prometheus", argv, 0) < 0)
        return -1;
    char url[96];
    snprintf(url, sizeof url, "%s/-/ready", p->url);
    ts_curl_reply_t r;
    for (int i = 0; i < 10000 && ts_now_ms() < deadline; i++) {
        if (!ts_proc_running(&p->proc))
            break;
        if (ts_curl(NULL, url, NULL, NULL, 500, &r) == 200)
            return 0;
        usleep(50 * 1000); /* poll interval of a condition with a deadline */
    }
    ts_proc_dump(&p->proc, "prometheus did not become ready");
    return -1;
}

int ts_prometheus_query(const ts_prometheus_t *p, const char *promql, char *value, size_t cap,
                        int64_t deadline)
{
    char *q = curl_easy_escape(NULL, promql, 0);
    if (!q)
        return -1;
    char url[1024];
    snprintf(url, sizeof url, "%s/api/v1/query?query=%s", p->url, q);
    curl_free(q);
    ts_curl_reply_t r;
    for (int i = 0; i < 10000 && ts_now_ms() < deadline; i++) {
        /* {"status":"success","data":{"resultType":"vector","result":[{"metric":{..},
         *  "value":[1764645000.1,"3"]}]}}: the sample is the last string. */
        const char *v;
        if (ts_curl(NULL, url, NULL, NULL, 1000, &r) == 200 && strstr(r.body, "\"success\"") &&
            (v = strstr(r.body, "\"value\":[")) != NULL) {
            const char *s = strchr(v, ',');
            const char *open = s ? strchr(s, '"') : NULL;
            const char *close = open ? strchr(open + 1, '"') : NULL;
            if (close && (size_t)(close - open - 1) < cap) {
                memcpy(value, open + 1, (size_t)(close - open - 1));
                value[close - open - 1] = '\0';
                return 0;
            }
        }
        usleep(200 * 1000); /* the next scrape is up to a second away */
    }
    return -1;
}

double ts_prom_sample(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

void ts_prometheus_dispose(ts_prometheus_t *p)
{
    if (p->proc.pid > 0 && !p->proc.reaped) {
        ts_proc_signal(&p->proc, SIGTERM);
        if (ts_proc_wait_exit(&p->proc, ts_deadline(10000)) < 0)
            ts_proc_stop(&p->proc, ts_deadline(2000));
    }
    ts_proc_dispose(&p->proc);
    if (p->dir[0]) {
        char *argv[] = {"rm", "-rf", p->dir, NULL};
        ts_run_t r;
        if (ts_run(argv, NULL, ts_deadline(5000), &r) == 0)
            ts_run_free(&r);
        p->dir[0] = '\0';
    }
}
