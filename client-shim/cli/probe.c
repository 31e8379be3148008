/*
 * probe.c — `sluice-shim probe` (see probe.h): the tool an admin runs on a
 * user's machine to see which way out works.
 *
 * The UDP check and the connection to the gateway start together; the tunnel
 * open follows the connection. Each rung prints one line, in ladder order,
 * once everything is done:
 *
 *   probe udp <addr>: ok in <ms> ms (stun answered in 3 ms)
 *   probe proxy: none
 *   probe tls <host:port>: ok in <ms> ms (alpn=h2 TLSv1.3)
 *   probe tunnel <tenant>/<kind>: ok in <ms> ms (200)
 *   probe result: direct udp works; tunnel works
 *
 * ("failed", "refused" or "skipped" instead of "ok", with the reason in the
 * parentheses.) The whole probe is bounded by PROBE_DEADLINE_MS.
 */
#include "probe.h"

#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../common/compat.h"
#include "../lib/shim_addr.h"
#include "sluice_shim.h"

#define PROBE_TIMEOUT_MS 5000u    /* connect, handshake, tunnel response */
#define PROBE_DEADLINE_MS 20000u  /* everything */
#define PROBE_TEXT 600

typedef struct rung {
    const char *verdict; /* NULL while running */
    uint64_t ms;
    char detail[PROBE_TEXT];
} rung_t;

typedef struct probe {
    struct ev_loop *loop;
    const shim_cli_opts_t *o;
    uint64_t t0_ms, tunnel_t0_ms;
    sluice_udp_check_t *check;
    sluice_client_t *client;
    sluice_tunnel_t *tunnel;
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

static void on_state(sluice_client_t *c, sluice_state_t state, const char *detail, void *ud)
{
    probe_t *p = ud;

    switch (state) {
    case SLUICE_CONNECTING:
        break;
    case SLUICE_CONNECTED:
        rung_set(&p->tls, "ok", p->t0_ms, detail);
        probe_open_tunnel(p);
        break;
    default:
        rung_set(&p->tls, "failed", p->t0_ms, detail);
        rung_set(&p->tun, "skipped", p->t0_ms, "no connection to the gateway");
        break;
    }
    probe_maybe_done(p);
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
        printf("probe %s: %s in %" PRIu64 " ms (%s)\n", what, r->verdict, r->ms, r->detail);
}

int probe_run(const shim_cli_opts_t *o)
{
    static probe_t p; /* the loop's watchers live here until the end */
    char err[512], gw[SHIM_HOST_MAX + 16], what[SHIM_HOST_MAX + 160];
    sluice_tls_t *tls;
    int udp_ok, tun_ok;

    memset(&p, 0, sizeof(p));
    p.o = o;
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

    sluice_client_opts_t cl = {
        .host = o->gw_host,
        .port = o->gw_port,
        .server_name = o->server_name,
        .tls = tls,
        .connect_timeout_ms = PROBE_TIMEOUT_MS,
        .handshake_timeout_ms = PROBE_TIMEOUT_MS,
        .on_state = on_state,
        .ud = &p,
    };
    p.client = sluice_client_new(p.loop, &cl, err, sizeof(err));
    if (!p.client) {
        rung_set(&p.tls, "failed", p.t0_ms, err);
        rung_set(&p.tun, "skipped", p.t0_ms, "no connection to the gateway");
    } else {
        sluice_client_connect(p.client);
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
    /* No proxy support in this build: the connection is always direct. */
    printf("probe proxy: none\n");
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
