/*
 * direct_flow.h — the CLI's fallback ladder for flows (docs/shim.md,
 * "Fallback ladder"): with --direct, a new flow's first packet starts a UDP
 * check (sluice_udp_check_*) of the direct address, or joins the one that
 * runs; its packets are held meanwhile (bounded). The answer sends the flow
 * direct (a shim_direct_relay_t to the address) or through the tunnel. The
 * decision is cached for DIRECT_CACHE_MS, so later flows do not pay the
 * budget. A direct flow that goes silent moves to the tunnel. Every tunnel
 * it opens tells the gateway why (f->fallback, sent as tunnel-fallback).
 *
 * stdout lines (flushed at once):
 *   sluice-shim flow <src> direct (<check detail>)
 *   sluice-shim flow <src> tunnel (<check detail>)
 *   sluice-shim flow <src> tunnel (direct silent for <N> ms)
 * A cached decision says "(cached: <detail>)".
 *
 * The module owns each flow's direct state (f->direct) and nothing else; it
 * reaches the tunnel and the application through the ops main.c gives it.
 */
#ifndef CLI_DIRECT_FLOW_H
#define CLI_DIRECT_FLOW_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/shim_cli.h"
#include "../lib/shim_flow.h"
#include "sluice_shim.h"

#define DIRECT_CACHE_MS 60000u             /* how long a decision holds for new flows */
#define DIRECT_HOLD_BYTES (256u * 1024u)   /* packets held per flow while checking */

typedef struct cli_direct_ops {
    /* Opens f's tunnel (sets f->tunnel). 0, or -1 when it cannot. */
    int (*open_tunnel)(void *ctx, shim_flow_t *f);
    /* A datagram from the direct address for the application behind f. */
    void (*to_app)(void *ctx, shim_flow_t *f, const uint8_t *p, size_t len);
} cli_direct_ops_t;

typedef struct cli_direct {
    struct ev_loop *loop;
    const shim_cli_opts_t *o;
    shim_flowtab_t *flows;
    cli_direct_ops_t ops;
    void *ctx;
    sluice_udp_check_t *check; /* the check that runs, shared by CHECKING flows */
    int cached;                /* 1 direct, -1 tunnel, 0 nothing cached */
    uint64_t cached_until_ms;
    char cached_detail[128];
    sluice_fallback_t cached_fallback; /* with cached -1: the tunnel-fallback it means */
    uint64_t held_dropped;     /* held packets evicted (bound reached) */
} cli_direct_t;

void cli_direct_init(cli_direct_t *d, struct ev_loop *loop, const shim_cli_opts_t *o,
                     shim_flowtab_t *flows, const cli_direct_ops_t *ops, void *ctx);

/* 1 when --direct was given. */
int cli_direct_enabled(const cli_direct_t *d);

/* The first packet of a new flow (mode TUNNEL, no tunnel yet). Decides, or
 * starts the check and holds the packet. Returns 0, or -1 when the flow
 * cannot be served (the caller removes it). */
int cli_direct_flow_start(cli_direct_t *d, shim_flow_t *f, const uint8_t *p, size_t len);

/* A packet of a CHECKING or DIRECT flow. */
void cli_direct_flow_packet(cli_direct_t *d, shim_flow_t *f, const uint8_t *p, size_t len);

/* Releases f's direct state (the flow ends); f->mode becomes TUNNEL. */
void cli_direct_flow_end(cli_direct_t *d, shim_flow_t *f);

/* Releases every flow's direct state and the check. Idempotent. */
void cli_direct_dispose(cli_direct_t *d);

#endif
