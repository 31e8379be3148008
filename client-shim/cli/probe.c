/*
 * probe.c — `sluice-shim probe` (see probe.h): the tool an admin runs on a
 * user's machine to see which way out works.
 *
 * The UDP check and the connection to the gateway start together; the tunnel
 * open follows the connection. Each rung prints one line, in ladder order,
 * once everything is done:
 *
 *   probe udp <addr>: ok in <ms> ms (stun answered in 3 ms)
 *   probe proxy: PAC "PROXY 10.0.0.1:3128; DIRECT" -> proxy 10.0.0.1:3128; direct
 *   probe tls <host:port>: ok in <ms> ms via proxy 10.0.0.1:3128 (alpn=h2 TLSv1.3)
 *   probe tunnel <tenant>/<kind>: ok in <ms> ms (200)
 *   probe result: direct udp works; tunnel works
 *
 * ("failed", "refused" or "skipped" instead of "ok", with the reason in the
 * parentheses.) The proxy line is what discovery decided, by the rules the
 * relay uses (docs/shim.md, "Proxy discovery"): the source and the routes.
 * The TLS rung tries those routes in order, one client per route, so that
 * each failed route is named with its failure class (sluice_fail_name).
 * The whole probe is bounded by PROBE_DEADLINE_MS.
 */
#include "probe.h"

#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/compat.h"
#include "../lib/proxy.h"
#include "../lib/shim_addr.h"
#include "sluice_shim.h"

#define PROBE_TIMEOUT_MS 5000u    /* connect, handshake, tunnel response (default) */
#define PROBE_DEADLINE_MS 20000u  /* everything */
#define PROBE_TEXT 1400
#define PROBE_ROUTE_DETAIL 200    /* a failed route's detail in the report */

typedef struct rung {
    const char *verdict; /* NULL while running */
    uint64_t ms;
    char how[PROXY_LABEL_MAX + 8]; /* the TLS rung's route: "direct", "via proxy h:p" */
    char detail[PROBE_TEXT];
} rung_t;

typedef struct probe {
    struct ev_loop *loop;
    const shim_cli_opts_t *o;
    uint64_t t0_ms, tunnel_t0_ms;
    sluice_udp_check_t *check;
    sluice_client_t *client; /* the current route's */
    sluice_tunnel_t *tunnel;
    sluice_tls_t *tlsctx;   /* one for every route's client */
    const char *proxy_user, *proxy_password; /* borrowed from the caller */
    uint32_t timeout_ms;
    /* Proxy discovery: the routes, the one being tried, and what failed. */
    proxy_route_t routes[PROXY_ROUTES_MAX];
    size_t nroutes, ri;
    char proxy_line[PROBE_TEXT];
    char failed[PROBE_TEXT];   /* "<route>: <class> (<detail>); ..." */
    char failed_short[PROBE_TEXT]; /* "<route>: <class>; ..." */
    rung_t udp, tls, tun;
    ev_timer deadline;
} probe_t;

static uint64_t mono_ms(void)
{
    return compat_mono_ns() / 1000000u;
}

static void rung_set(rung_t *r, const char *verdict, uint64_t since_ms, const char *detail)
{
    if (r->verdict)
        return;
    r->verdict = verdict;
    r->ms = mono_ms() - since_ms;
    snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

static void probe_maybe_done(probe_t *p)
{
    if (p->udp.verdict && p->tls.verdict && p->tun.verdict)
        ev_break(p->loop, EVBREAK_ALL);
}

static void on_check(sluice_udp_check_t *c, const sluice_udp_check_result_t *r, void *ud)
{
    probe_t *p = ud;

    rung_set(&p->udp, r->reachable ? "ok" : "failed", p->t0_ms, r->detail);
    probe_maybe_done(p);
}

static void tun_on_open(sluice_tunnel_t *t, void *ud)
{
    probe_t *p = ud;

    rung_set(&p->tun, "ok", p->tunnel_t0_ms, "200");
    sluice_tunnel_close(t);
    probe_maybe_done(p);
}

static void tun_on_packet(sluice_tunnel_t *t, const uint8_t *b, size_t len, int sig, void *ud)
{
}

static void tun_on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason,
                         void *ud)
{
    probe_t *p = ud;
    char d[PROBE_TEXT];

    p->tunnel = NULL;
    if (status != 200 && status != 0)
        snprintf(d, sizeof(d), "%d %s", status, reason);
    else
        snprintf(d, sizeof(d), "%s", *reason ? reason : "no response");
    rung_set(&p->tun, status != 200 && status != 0 ? "refused" : "failed", p->tunnel_t0_ms, d);
    probe_maybe_done(p);
}

static void probe_open_tunnel(probe_t *p)
{
    const shim_cli_opts_t *o = p->o;
    char username[320], credential[64];
    sluice_tunnel_opts_t to = {
        .tenant = o->tenant,
        .kind = o->kind,
        .region = o->region,
        .username = o->username,
        .credential = o->credential,
        .response_timeout_ms = PROBE_TIMEOUT_MS,
        .on_open = tun_on_open,
        .on_packet = tun_on_packet,
        .on_close = tun_on_close,
        .ud = p,
    };

    p->tunnel_t0_ms = mono_ms();
    if (o->secret) {
        if (sluice_cred_mint(o->hash, o->secret, strlen(o->secret),
                             (uint64_t)time(NULL) + o->ttl, o->user, username, sizeof(username),
                             credential, sizeof(credential)) != SLUICE_OK) {
            rung_set(&p->tun, "failed", p->tunnel_t0_ms, "cannot mint a credential");
            return;
        }
        to.username = username;
        to.credential = credential;
    }
    p->tunnel = sluice_tunnel_open(p->client, &to);
    if (!p->tunnel)
        rung_set(&p->tun, "failed", p->tunnel_t0_ms, "cannot open a tunnel");
}

static void probe_dial_next(probe_t *p);

/* Appends "<route>: <class>" (and the detail) of a failed route. */
static void probe_route_failed(probe_t *p, const proxy_route_t *r, sluice_fail_t fail,
                               const char *detail)
{
    size_t l = strlen(p->failed), ls = strlen(p->failed_short);
    size_t lab = strlen(r->label);

    /* The library's detail often starts with the route's name: say it once. */
    if (strncmp(detail, r->label, lab) == 0 && strncmp(detail + lab, ": ", 2) == 0)
        detail += lab + 2;

    snprintf(p->failed + l, sizeof(p->failed) - l, "%s%s: %s (%.*s)", l ? "; " : "", r->label,
             sluice_fail_name(fail), PROBE_ROUTE_DETAIL, detail);
    snprintf(p->failed_short + ls, sizeof(p->failed_short) - ls, "%s%s: %s", ls ? "; " : "",
             r->label, sluice_fail_name(fail));
}

static void on_state(sluice_client_t *c, sluice_state_t state, const char *detail, void *ud)
{
    probe_t *p = ud;
    const proxy_route_t *r = &p->routes[p->ri];
    char d[PROBE_TEXT];

    if (c != p->client)
        return; /* a route given up on */
    switch (state) {
    case SLUICE_CONNECTING:
        break;
    case SLUICE_CONNECTED:
        snprintf(p->tls.how, sizeof(p->tls.how), "%s%s", r->direct ? "" : "via ", r->label);
        if (p->failed_short[0])
            snprintf(d, sizeof(d), "%.200s; failed first: %.600s", detail, p->failed_short);
        else
            snprintf(d, sizeof(d), "%s", detail);
        rung_set(&p->tls, "ok", p->t0_ms, d);
        probe_open_tunnel(p);
        break;
    default:
        probe_route_failed(p, r, sluice_client_failure(c), detail);
        sluice_client_free(c); /* deferred: we are inside its callback */
        p->client = NULL;
        p->ri++;
        probe_dial_next(p);
        break;
    }
    probe_maybe_done(p);
}

/* Connects over route p->ri, or ends the TLS rung when none is left. */
static void probe_dial_next(probe_t *p)
{
    char err[512];

    while (p->ri < p->nroutes) {
        const proxy_route_t *r = &p->routes[p->ri];
        sluice_client_opts_t cl = {
            .host = p->o->gw_host,
            .port = p->o->gw_port,
            .server_name = p->o->server_name,
            .tls = p->tlsctx,
            .connect_timeout_ms = p->timeout_ms,
            .handshake_timeout_ms = p->timeout_ms,
            .on_state = on_state,
            .ud = p,
            /* The route is decided here: the client takes exactly it. */
            .proxy = r->direct ? "none" : r->url,
            .proxy_user = p->proxy_user,
            .proxy_password = p->proxy_password,
        };
        p->client = sluice_client_new(p->loop, &cl, err, sizeof(err));
        if (p->client) {
            sluice_client_connect(p->client);
            return;
        }
        probe_route_failed(p, r, SLUICE_FAIL_PROXY_CONFIG, err);
        p->ri++;
    }
    rung_set(&p->tls, "failed", p->t0_ms, p->failed[0] ? p->failed : "no route");
    rung_set(&p->tun, "skipped", p->t0_ms, "no connection to the gateway");
}

/* Proxy discovery as the relay does it (client.c, client_routes), but
 * saying where the answer came from. Fills p->routes and p->proxy_line.
 * Returns 0, or -1 with the reason in p->proxy_line (bad settings). */
static int probe_discover(probe_t *p)
{
    const shim_cli_opts_t *o = p->o;
    const char *lower = getenv("https_proxy"), *no = getenv("no_proxy");
    const char *env_name = lower && *lower ? "https_proxy" : "HTTPS_PROXY";
    const char *env = lower && *lower ? lower : getenv("HTTPS_PROXY");
    const char *no_name = no ? "no_proxy" : "NO_PROXY";
    char answer[PROXY_PAC_ANSWER_MAX], safe[PROXY_PAC_ANSWER_MAX * 4 + 1], err[512],
        src[PROBE_TEXT];
    proxy_inputs_t in = {.host = o->gw_host, .proxy = o->proxy, .use_env = 1};
    int n;

    /* curl's order: the lower-case name first. */
    in.env_proxy = env;
    in.env_no_proxy = no ? no : getenv("NO_PROXY");
    if (o->proxy) {
        snprintf(src, sizeof(src), "--proxy%s", strcmp(o->proxy, "none") == 0 ? " none" : "");
    } else if (o->proxy_pac) {
        char hp[SHIM_HOST_MAX + 16], url[SHIM_HOST_MAX + 32];
        char *script = proxy_pac_load(o->proxy_pac, p->timeout_ms, err, sizeof(err));
        if (!script) {
            snprintf(p->proxy_line, sizeof(p->proxy_line), "failed (PAC: %s)", err);
            return -1;
        }
        shim_hostport_format(o->gw_host, o->gw_port, hp, sizeof(hp));
        snprintf(url, sizeof(url), "https://%s/", hp);
        n = proxy_pac_eval(script, url, o->gw_host, answer, sizeof(answer), err, sizeof(err));
        free(script);
        if (n < 0) {
            snprintf(p->proxy_line, sizeof(p->proxy_line), "failed (PAC: %s)", err);
            return -1;
        }
        /* The answer is the script's text: escaped before it is printed. */
        shim__log_safe(safe, sizeof(safe), answer, strlen(answer));
        snprintf(src, sizeof(src), "PAC \"%.600s\"", safe);
        in.pac_answer = answer;
    } else if (env && *env) {
        proxy_route_t er;
        /* The label, never the URL: it may hold credentials. */
        if (proxy_route_from_url(env, &er, err, sizeof(err)) < 0)
            snprintf(er.label, sizeof(er.label), "?");
        snprintf(src, sizeof(src), "env %s=%s%s%s", env_name, er.label,
                 proxy_no_proxy_match(in.env_no_proxy, o->gw_host) ? " (bypassed by " : "",
                 proxy_no_proxy_match(in.env_no_proxy, o->gw_host) ? no_name : "");
        if (proxy_no_proxy_match(in.env_no_proxy, o->gw_host))
            strncat(src, ")", sizeof(src) - strlen(src) - 1);
    } else {
        snprintf(p->proxy_line, sizeof(p->proxy_line), "none (direct)");
        p->routes[0] = (proxy_route_t){.direct = 1, .label = "direct"};
        p->nroutes = 1;
        return 0;
    }
    n = proxy_routes(&in, p->routes, PROXY_ROUTES_MAX, err, sizeof(err));
    if (n < 0) {
        snprintf(p->proxy_line, sizeof(p->proxy_line), "failed (%s)", err);
        return -1;
    }
    p->nroutes = (size_t)n;
    size_t l = (size_t)snprintf(p->proxy_line, sizeof(p->proxy_line), "%s ->", src);
    for (size_t i = 0; i < p->nroutes && l < sizeof(p->proxy_line); i++)
        l += (size_t)snprintf(p->proxy_line + l, sizeof(p->proxy_line) - l, "%s %s",
                              i ? ";" : "", p->routes[i].label);
    return 0;
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    probe_t *p = container_of(w, probe_t, deadline);

    rung_set(&p->udp, "failed", p->t0_ms, "probe deadline");
    rung_set(&p->tls, "failed", p->t0_ms, "probe deadline");
    rung_set(&p->tun, "failed", p->t0_ms, "probe deadline");
    ev_break(loop, EVBREAK_ALL);
}

static void print_rung(const char *what, const rung_t *r)
{
    if (strcmp(r->verdict, "skipped") == 0)
        printf("probe %s: skipped (%s)\n", what, r->detail);
    else
        printf("probe %s: %s in %" PRIu64 " ms%s%s (%s)\n", what, r->verdict, r->ms,
               r->how[0] ? " " : "", r->how, r->detail);
}

int probe_run(const shim_cli_opts_t *o, const char *proxy_user, const char *proxy_password)
{
    static probe_t p; /* the loop's watchers live here until the end */
    char err[512], gw[SHIM_HOST_MAX + 16], what[SHIM_HOST_MAX + 160];
    sluice_tls_t *tls;
    int udp_ok, tun_ok;

    memset(&p, 0, sizeof(p));
    p.o = o;
    p.proxy_user = proxy_user;
    p.proxy_password = proxy_password;
    p.timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : PROBE_TIMEOUT_MS;
    tls = sluice_tls_new(o->ca_file, err, sizeof(err));
    if (!tls) {
        fprintf(stderr, "sluice-shim: %s\n", err);
        return 2;
    }
    p.loop = ev_loop_new(EVFLAG_AUTO);
    if (!p.loop) {
        sluice_tls_free(tls);
        fprintf(stderr, "sluice-shim: cannot create the event loop\n");
        return 1;
    }
    p.t0_ms = mono_ms();
    ev_timer_init(&p.deadline, on_deadline, PROBE_DEADLINE_MS / 1000.0, 0.);
    ev_timer_start(p.loop, &p.deadline);

    if (o->direct_str) {
        sluice_udp_check_opts_t co = {.addr = &o->direct, .addrlen = o->direct_len,
                                      .budget_ms = o->direct_budget_ms, .on_done = on_check,
                                      .ud = &p};
        p.check = sluice_udp_check_start(p.loop, &co, err, sizeof(err));
        if (!p.check)
            rung_set(&p.udp, "failed", p.t0_ms, err);
    } else {
        rung_set(&p.udp, "skipped", p.t0_ms, "no --direct");
    }

    p.tlsctx = tls;
    if (probe_discover(&p) < 0) {
        rung_set(&p.tls, "skipped", p.t0_ms, "no usable proxy settings");
        rung_set(&p.tun, "skipped", p.t0_ms, "no connection to the gateway");
    } else {
        probe_dial_next(&p);
    }
    if (!(p.udp.verdict && p.tls.verdict && p.tun.verdict))
        ev_run(p.loop, 0);

    shim_hostport_format(o->gw_host, o->gw_port, gw, sizeof(gw));
    if (o->direct_str) {
        snprintf(what, sizeof(what), "udp %s", o->direct_str);
        print_rung(what, &p.udp);
    } else {
        print_rung("udp", &p.udp);
    }
    printf("probe proxy: %s\n", p.proxy_line);
    snprintf(what, sizeof(what), "tls %s", gw);
    print_rung(what, &p.tls);
    snprintf(what, sizeof(what), "tunnel %s/%s", o->tenant, o->kind);
    print_rung(what, &p.tun);
    udp_ok = strcmp(p.udp.verdict, "ok") == 0;
    tun_ok = strcmp(p.tun.verdict, "ok") == 0;
    if (udp_ok || tun_ok)
        printf("probe result:%s%s%s\n", udp_ok ? " direct udp works" : "",
               udp_ok && tun_ok ? ";" : "", tun_ok ? " tunnel works" : "");
    else
        printf("probe result: nothing works\n");
    fflush(stdout);

    ev_timer_stop(p.loop, &p.deadline);
    sluice_udp_check_free(p.check);
    sluice_client_free(p.client);
    sluice_tls_free(tls);
    ev_loop_destroy(p.loop);
    return udp_ok || tun_ok ? 0 : 1;
}
