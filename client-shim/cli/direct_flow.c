/*
 * direct_flow.c — the CLI's fallback ladder for flows (see direct_flow.h).
 */
#include "direct_flow.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/compat.h"
#include "../../proto/pktq.h"
#include "../lib/shim_addr.h"
#include "../lib/shim_direct.h"

typedef struct dflow {
    cli_direct_t *d;
    shim_flow_t *f;
    pktq_t held;               /* CHECKING: the app's packets, oldest dropped first */
    int relay_up;
    shim_direct_relay_t relay; /* DIRECT */
} dflow_t;

static uint64_t mono_ms(void)
{
    return compat_mono_ns() / 1000000u;
}

/* One decision line on stdout: "sluice-shim flow <src> <way> (<prefix><detail>)". */
static void say(const shim_flow_t *f, const char *way, const char *prefix, const char *detail)
{
    char a[SHIM_ADDRSTR_MAX];

    printf("sluice-shim flow %s %s (%s%s)\n",
           shim_addr_format((const struct sockaddr *)&f->addr, a, sizeof(a)), way, prefix,
           detail);
    fflush(stdout);
}

void cli_direct_init(cli_direct_t *d, struct ev_loop *loop, const shim_cli_opts_t *o,
                     shim_flowtab_t *flows, const cli_direct_ops_t *ops, void *ctx)
{
    memset(d, 0, sizeof(*d));
    d->loop = loop;
    d->o = o;
    d->flows = flows;
    d->ops = *ops;
    d->ctx = ctx;
}

int cli_direct_enabled(const cli_direct_t *d)
{
    return d->o && d->o->direct_str != NULL;
}

static void dflow_free(dflow_t *df)
{
    if (df->relay_up)
        shim_direct_relay_dispose(&df->relay);
    pktq_dispose(&df->held);
    df->f->direct = NULL;
    df->f->mode = SHIM_FLOW_TUNNEL;
    free(df);
}

/* The tunnel-fallback a UDP check's reason stands for. */
static sluice_fallback_t check_fallback(sluice_udp_check_reason_t r)
{
    switch (r) {
    case SLUICE_UDP_CHECK_NO_ANSWER: return SLUICE_FALLBACK_NO_ANSWER;
    case SLUICE_UDP_CHECK_REFUSED: return SLUICE_FALLBACK_UDP_REFUSED;
    case SLUICE_UDP_CHECK_BLOCKED: return SLUICE_FALLBACK_UDP_BLOCKED;
    default: return SLUICE_FALLBACK_UDP_ERROR;
    }
}

/* The flow goes through the tunnel, telling the gateway why; held packets
 * follow it in order. */
static void go_tunnel(cli_direct_t *d, shim_flow_t *f, sluice_fallback_t why)
{
    dflow_t *df = f->direct;
    const uint8_t *p;
    size_t len;

    f->fallback = why;
    if (d->ops.open_tunnel(d->ctx, f) < 0) {
        if (df)
            dflow_free(df);
        shim_flowtab_remove(d->flows, f);
        return;
    }
    if (df) {
        while (pktq_peek(&df->held, &p, &len)) {
            sluice_tunnel_send(f->tunnel, p, len); /* drops are counted there */
            pktq_pop(&df->held);
        }
        dflow_free(df);
    }
    f->mode = SHIM_FLOW_TUNNEL;
}

static void relay_on_packet(shim_direct_relay_t *r, const uint8_t *p, size_t len, void *ud)
{
    dflow_t *df = ud;

    df->d->ops.to_app(df->d->ctx, df->f, p, len);
}

static void relay_on_silent(shim_direct_relay_t *r, void *ud)
{
    dflow_t *df = ud;
    cli_direct_t *d = df->d;
    shim_flow_t *f = df->f;

    /* The path stopped working: later flows go straight to the tunnel too,
     * for the cache's time, instead of each finding out again. */
    snprintf(d->cached_detail, sizeof(d->cached_detail), "direct silent for %" PRIu32 " ms",
             d->o->direct_silence_ms);
    d->cached = -1;
    d->cached_fallback = SLUICE_FALLBACK_DIRECT_SILENT;
    d->cached_until_ms = mono_ms() + DIRECT_CACHE_MS;
    say(f, "tunnel", "", d->cached_detail);
    /* Frees df, relay included: touch neither after. */
    go_tunnel(d, f, SLUICE_FALLBACK_DIRECT_SILENT);
}

/* The flow goes direct; held packets go out first. */
static void go_direct(cli_direct_t *d, shim_flow_t *f)
{
    dflow_t *df = f->direct;
    char err[160];
    const uint8_t *p;
    size_t len;
    shim_direct_relay_opts_t ro = {
        .addr = (const struct sockaddr *)&d->o->direct,
        .addrlen = d->o->direct_len,
        .silence_ms = d->o->direct_silence_ms,
        .on_packet = relay_on_packet,
        .on_silent = relay_on_silent,
        .ud = df,
    };

    if (shim_direct_relay_init(&df->relay, d->loop, &ro, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice-shim: %s; using the tunnel\n", err);
        go_tunnel(d, f, SLUICE_FALLBACK_UDP_ERROR);
        return;
    }
    df->relay_up = 1;
    f->mode = SHIM_FLOW_DIRECT;
    while (pktq_peek(&df->held, &p, &len)) {
        shim_direct_relay_send(&df->relay, p, len);
        pktq_pop(&df->held);
    }
    pktq_dispose(&df->held);
}

static void check_on_done(sluice_udp_check_t *c, const sluice_udp_check_result_t *r, void *ud)
{
    cli_direct_t *d = ud;

    d->cached = r->reachable ? 1 : -1;
    d->cached_fallback = check_fallback(r->reason);
    d->cached_until_ms = mono_ms() + DIRECT_CACHE_MS;
    snprintf(d->cached_detail, sizeof(d->cached_detail), "%s", r->detail);
    sluice_udp_check_free(c); /* deferred by the library until we return */
    d->check = NULL;
    /* Every flow that waited gets the answer. */
    for (size_t i = 0; i < shim_flowtab_cap(d->flows); i++) {
        shim_flow_t *f = shim_flowtab_at(d->flows, i);
        if (f->state != SHIM_FLOW_ACTIVE || f->mode != SHIM_FLOW_CHECKING)
            continue;
        say(f, r->reachable ? "direct" : "tunnel", "", r->detail);
        if (r->reachable)
            go_direct(d, f);
        else
            go_tunnel(d, f, d->cached_fallback);
    }
}

int cli_direct_flow_start(cli_direct_t *d, shim_flow_t *f, const uint8_t *p, size_t len)
{
    dflow_t *df;

    if (d->cached < 0 && mono_ms() < d->cached_until_ms) {
        say(f, "tunnel", "cached: ", d->cached_detail);
        go_tunnel(d, f, d->cached_fallback);
        if (f->state != SHIM_FLOW_ACTIVE || !f->tunnel)
            return -1;
        sluice_tunnel_send(f->tunnel, p, len);
        return 0;
    }
    df = calloc(1, sizeof(*df));
    if (!df)
        return -1;
    df->d = d;
    df->f = f;
    pktq_init(&df->held, DIRECT_HOLD_BYTES, PKTQ_DROP_OLDEST);
    f->direct = df;
    if (d->cached > 0 && mono_ms() < d->cached_until_ms) {
        say(f, "direct", "cached: ", d->cached_detail);
        go_direct(d, f);
        if (f->mode == SHIM_FLOW_DIRECT)
            shim_direct_relay_send(&df->relay, p, len);
        else if (f->state == SHIM_FLOW_ACTIVE && f->tunnel)
            sluice_tunnel_send(f->tunnel, p, len);
        return 0;
    }
    f->mode = SHIM_FLOW_CHECKING;
    cli_direct_flow_packet(d, f, p, len);
    if (!d->check) {
        char err[160];
        sluice_udp_check_opts_t co = {
            .addr = &d->o->direct,
            .addrlen = d->o->direct_len,
            .budget_ms = d->o->direct_budget_ms,
            .on_done = check_on_done,
            .ud = d,
        };
        d->check = sluice_udp_check_start(d->loop, &co, err, sizeof(err));
        if (!d->check) {
            fprintf(stderr, "sluice-shim: %s\n", err);
            say(f, "tunnel", "", "no udp check");
            go_tunnel(d, f, SLUICE_FALLBACK_UDP_ERROR);
        }
    }
    return 0;
}

void cli_direct_flow_packet(cli_direct_t *d, shim_flow_t *f, const uint8_t *p, size_t len)
{
    dflow_t *df = f->direct;
    size_t dropped = 0;

    if (!df)
        return;
    if (f->mode == SHIM_FLOW_DIRECT) {
        shim_direct_relay_send(&df->relay, p, len);
        return;
    }
    /* CHECKING: held at most DIRECT_HOLD_BYTES; the budget bounds their age. */
    if (pktq_push(&df->held, p, len, compat_mono_ns(), &dropped) != PKTQ_OK)
        dropped++;
    d->held_dropped += dropped;
}

void cli_direct_flow_end(cli_direct_t *d, shim_flow_t *f)
{
    if (f->direct)
        dflow_free(f->direct);
}

void cli_direct_dispose(cli_direct_t *d)
{
    if (d->flows) {
        for (size_t i = 0; i < shim_flowtab_cap(d->flows); i++) {
            shim_flow_t *f = shim_flowtab_at(d->flows, i);
            if (f && f->direct)
                dflow_free(f->direct);
        }
    }
    sluice_udp_check_free(d->check);
    d->check = NULL;
}
