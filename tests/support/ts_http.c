/*
 * ts_http.c — run curl and collect status, version, headers and body.
 */
#include "ts_http.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_pkt.h"
#include "ts_proc.h"
#include "ts_util.h"

#define BODY_MAX (1u << 20)

int ts_http(const ts_http_req_t *req, ts_http_resp_t *resp)
{
    char ca[PATH_MAX], body_path[PATH_MAX], hdr_path[PATH_MAX], data_arg[PATH_MAX + 1];
    char max_time[16];
    memset(resp, 0, sizeof *resp);
    resp->curl_exit = -1;
    if (req->ca_file)
        snprintf(ca, sizeof ca, "%s", req->ca_file);
    else if (ts_build_path(NULL, "dev/cert.pem", ca, sizeof ca) < 0)
        return -1;
    if (ts_tmppath("curl.body", body_path, sizeof body_path) < 0 ||
        ts_tmppath("curl.headers", hdr_path, sizeof hdr_path) < 0)
        return -1;
    int max_s = req->max_time_s > 0 ? req->max_time_s : 10;
    snprintf(max_time, sizeof max_time, "%d", max_s);

    char *argv[48];
    size_t n = 0;
    argv[n++] = "curl";
    argv[n++] = "--http2";
    argv[n++] = "-sS";
    argv[n++] = "--cacert";
    argv[n++] = ca;
    argv[n++] = "-o";
    argv[n++] = body_path;
    argv[n++] = "-D";
    argv[n++] = hdr_path;
    argv[n++] = "-w";
    argv[n++] = "%{http_code} %{http_version} %{content_type}";
    argv[n++] = "--max-time";
    argv[n++] = max_time;
    argv[n++] = "-X";
    argv[n++] = (char *)(req->method ? req->method : "POST");
    for (size_t i = 0; i < TS_HTTP_MAX_HEADERS && req->headers[i]; i++) {
        argv[n++] = "-H";
        argv[n++] = (char *)req->headers[i];
    }
    if (req->body_file) {
        snprintf(data_arg, sizeof data_arg, "@%s", req->body_file);
        argv[n++] = "--data-binary";
        argv[n++] = data_arg;
    }
    argv[n++] = (char *)req->url;
    argv[n] = NULL;

    ts_run_t r;
    /* curl enforces --max-time itself; the extra margin only catches a hang. */
    if (ts_run(argv, NULL, ts_deadline(ts_ms((int64_t)max_s * 1000 + 5000)), &r) < 0)
        return -1;
    resp->curl_exit = r.code;
    resp->err = r.err;
    r.err = NULL;
    if (r.out) {
        int pos = 0;
        if (sscanf(r.out, "%d %7s %n", &resp->status, resp->version, &pos) >= 2 && pos > 0)
            snprintf(resp->content_type, sizeof resp->content_type, "%s", r.out + pos);
    }
    ts_run_free(&r);
    resp->body = ts_read_file(body_path, BODY_MAX, &resp->body_len);
    if (!resp->body)
        resp->body = calloc(1, 1);
    resp->headers = ts_read_file(hdr_path, BODY_MAX, NULL);
    if (!resp->headers)
        resp->headers = calloc(1, 1);
    unlink(body_path);
    unlink(hdr_path);
    return 0;
}

void ts_http_resp_free(ts_http_resp_t *resp)
{
    free(resp->body);
    free(resp->headers);
    free(resp->err);
    resp->body = resp->headers = resp->err = NULL;
}

int ts_http_tunnel_start(struct ts_proc *p, const char *url, const char *username,
                         const char *credential, const char *body_path, int max_time_s)
{
    char ca[PATH_MAX], uh[512], ch[256], max_time[16];
    if (ts_build_path(NULL, "dev/cert.pem", ca, sizeof ca) < 0)
        return -1;
    snprintf(uh, sizeof uh, "tunnel-username: %s", username);
    snprintf(ch, sizeof ch, "tunnel-credential: %s", credential);
    snprintf(max_time, sizeof max_time, "%d", max_time_s > 0 ? max_time_s : 30);
    /* -T - streams stdin as the request body as it is written (curl reads it
     * with read(2), not stdio), -X POST keeps the method, and -N flushes each
     * piece of the response body to the file as it arrives. */
    char *argv[] = {"curl", "--http2", "-sS", "-N", "--cacert", ca, "-X", "POST", "-T", "-",
                    "-H", uh, "-H", ch, "-o", (char *)body_path, "--max-time", max_time,
                    (char *)url, NULL};
    return ts_proc_spawn(p, "curl-tunnel", argv, TS_PROC_STDIN_PIPE);
}

int ts_http_tunnel_wait_exit(struct ts_proc *p, int64_t deadline)
{
    for (;;) {
        int code = ts_proc_wait_exit(p, ts_now_ms() + 20 < deadline ? ts_now_ms() + 20 : deadline);
        if (code >= 0 || ts_remaining_ms(deadline) == 0)
            return code;
        if (p->in_fd >= 0 && ts_capsule_grease(p->in_fd) < 0) {
            close(p->in_fd); /* curl closed its stdin: nothing more to nudge */
            p->in_fd = -1;
        }
    }
}
