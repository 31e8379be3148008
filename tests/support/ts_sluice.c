/*
 * ts_sluice.c — start/stop sluiced and sluice-shim and parse their ready lines.
 */
#include "ts_sluice.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_util.h"

#define GW_READY "sluiced ready "
#define SHIM_LISTENING "sluice-shim listening "
#define SHIM_CONNECTED "sluice-shim connected "

/* Parses "sluiced ready listen=A listen=B echo=C" (unknown tokens ignored). */
static int parse_ready(ts_gateway_t *gw, const char *line)
{
    char copy[TS_PROC_LINE_MAX];
    snprintf(copy, sizeof copy, "%s", line + strlen(GW_READY));
    gw->nlisten = 0;
    gw->has_echo = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
        if (strncmp(tok, "listen=", 7) == 0) {
            if (gw->nlisten == TS_LISTEN_MAX || ts_addr_parse(tok + 7, &gw->listen[gw->nlisten]) < 0)
                return -1;
            ts_addr_str(&gw->listen[gw->nlisten], gw->listen_str[gw->nlisten],
                         sizeof gw->listen_str[0]);
            gw->nlisten++;
        } else if (strncmp(tok, "echo=", 5) == 0) {
            if (ts_addr_parse(tok + 5, &gw->echo) < 0)
                return -1;
            gw->has_echo = 1;
        }
    }
    return gw->nlisten > 0 ? 0 : -1;
}

int ts_gateway_start(ts_gateway_t *gw, const char *build, const char *config_path,
                     int64_t deadline)
{
    char bin[PATH_MAX];
    memset(gw, 0, sizeof *gw);
    gw->proc.out_fd = gw->proc.in_fd = gw->proc._pidfd = -1;
    snprintf(gw->config, sizeof gw->config, "%s", config_path);
    if (ts_build_path(build, "sluiced", bin, sizeof bin) < 0) {
        fprintf(stderr, "ts_gateway_start: SLUICE_BUILD is not set\n");
        return -1;
    }
    /* TS_GATEWAY_WRAP: words run before sluiced (a profiler, for benchmarks:
     * valgrind runs the program in the same process, so the pid is its). */
    char wrap[512] = "", *argv[24];
    size_t n = 0;
    const char *w = getenv("TS_GATEWAY_WRAP");
    if (w && snprintf(wrap, sizeof wrap, "%s", w) < (int)sizeof wrap) {
        char *save = NULL;
        for (char *tok = strtok_r(wrap, " ", &save); tok && n < 20;
             tok = strtok_r(NULL, " ", &save))
            argv[n++] = tok;
    }
    argv[n++] = bin;
    argv[n++] = "--config";
    argv[n++] = gw->config;
    argv[n] = NULL;
    if (ts_proc_spawn(&gw->proc, "sluiced", argv, 0) < 0) {
        fprintf(stderr, "ts_gateway_start: cannot run %s: %s\n", bin, strerror(errno));
        return -1;
    }
    if (ts_proc_wait_line(&gw->proc, GW_READY, deadline, gw->ready_line,
                          sizeof gw->ready_line) < 0)
        return -1;
    if (parse_ready(gw, gw->ready_line) < 0) {
        ts_proc_dump(&gw->proc, "ready line does not parse");
        return -1;
    }
    return 0;
}

int ts_gateway_url(const ts_gateway_t *gw, size_t i, const char *path, char *out, size_t cap)
{
    if (i >= gw->nlisten)
        return -1;
    int n = snprintf(out, cap, "https://%s%s", gw->listen_str[i], path);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int ts_gateway_admin_addr(ts_gateway_t *gw, char *out, size_t cap, int64_t deadline)
{
    static const char prefix[] = "sluiced admin listen=";
    char line[TS_PROC_LINE_MAX];
    if (ts_proc_wait_line(&gw->proc, prefix, deadline, line, sizeof line) < 0)
        return -1;
    const char *addr = line + sizeof prefix - 1;
    size_t len = strlen(addr);
    if (len >= cap)
        return -1;
    memcpy(out, addr, len + 1);
    return 0;
}

int ts_gateway_stop(ts_gateway_t *gw, int64_t deadline)
{
    return ts_proc_stop(&gw->proc, deadline);
}

void ts_gateway_dispose(ts_gateway_t *gw)
{
    ts_proc_dispose(&gw->proc);
}

static int push(char **argv, size_t *n, size_t cap, const char *a, const char *b)
{
    if (*n + (b ? 2 : 1) >= cap)
        return -1;
    argv[(*n)++] = (char *)a;
    if (b)
        argv[(*n)++] = (char *)b;
    return 0;
}

int ts_shim_start(ts_shim_t *s, const ts_shim_opts_t *o, int64_t deadline)
{
    char bin[PATH_MAX], ca[PATH_MAX];
    memset(s, 0, sizeof *s);
    s->proc.out_fd = s->proc.in_fd = s->proc._pidfd = -1;
    if (ts_build_path(o->build, "sluice-shim", bin, sizeof bin) < 0 ||
        ts_build_path(o->build, "dev/cert.pem", ca, sizeof ca) < 0) {
        fprintf(stderr, "ts_shim_start: SLUICE_BUILD is not set\n");
        return -1;
    }
    char *argv[48];
    size_t n = 0;
    int bad = push(argv, &n, 48, bin, NULL) ||
              push(argv, &n, 48, "--gateway", o->gateway) ||
              push(argv, &n, 48, "--ca-file", o->ca_file ? o->ca_file : ca) ||
              push(argv, &n, 48, "--tenant", o->tenant) ||
              push(argv, &n, 48, "--kind", o->kind ? o->kind : "sfu") ||
              (o->secret && push(argv, &n, 48, "--secret", o->secret)) ||
              (o->username && push(argv, &n, 48, "--username", o->username)) ||
              (o->credential && push(argv, &n, 48, "--credential", o->credential)) ||
              (o->hash && push(argv, &n, 48, "--hash", o->hash)) ||
              (o->user && push(argv, &n, 48, "--user", o->user)) ||
              (o->region && push(argv, &n, 48, "--region", o->region)) ||
              push(argv, &n, 48, "--listen", o->listen ? o->listen : "127.0.0.1:0");
    for (size_t i = 0; !bad && i < 8 && o->extra[i]; i++)
        bad = push(argv, &n, 48, o->extra[i], NULL);
    if (bad || !o->gateway || !o->tenant)
        return -1;
    argv[n] = NULL;

    if (ts_proc_spawn(&s->proc, "sluice-shim", argv, 0) < 0) {
        fprintf(stderr, "ts_shim_start: cannot run %s: %s\n", bin, strerror(errno));
        return -1;
    }
    char line[TS_PROC_LINE_MAX];
    if (ts_proc_wait_line(&s->proc, SHIM_LISTENING, deadline, line, sizeof line) < 0)
        return -1;
    char *addr = line + strlen(SHIM_LISTENING);
    addr[strcspn(addr, " \t\r")] = '\0';
    if (ts_addr_parse(addr, &s->listen) < 0) {
        ts_proc_dump(&s->proc, "listening line does not parse");
        return -1;
    }
    ts_addr_str(&s->listen, s->listen_str, sizeof s->listen_str);
    return ts_proc_wait_line(&s->proc, SHIM_CONNECTED, deadline, s->connected_line,
                             sizeof s->connected_line);
}

int ts_shim_stop(ts_shim_t *s, int64_t deadline)
{
    return ts_proc_stop(&s->proc, deadline);
}

void ts_shim_dispose(ts_shim_t *s)
{
    ts_proc_dispose(&s->proc);
}

int ts_shim_argv_init(ts_shim_argv_t *a, const char *mode, const char *url)
{
    memset(a, 0, sizeof *a);
    if (ts_build_path(NULL, "sluice-shim", a->bin, sizeof a->bin) < 0 ||
        ts_build_path(NULL, "dev/cert.pem", a->ca, sizeof a->ca) < 0 ||
        snprintf(a->url, sizeof a->url, "%s", url) >= (int)sizeof a->url)
        return -1;
    const char *head[] = {a->bin, mode, "--gateway", a->url, "--ca-file", a->ca, NULL};
    a->v[a->n++] = head[0];
    ts_shim_argv_add(a, mode ? head + 1 : head + 2);
    return 0;
}

void ts_shim_argv_add(ts_shim_argv_t *a, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++) {
        if (a->n == TS_SHIM_ARGV_MAX) {
            a->overflow = 1;
            return;
        }
        a->v[a->n++] = list[i];
    }
}

char *const *ts_shim_argv(ts_shim_argv_t *a)
{
    a->v[a->n] = NULL;
    return a->overflow ? NULL : (char *const *)a->v;
}
