/*
 * ts_fixture.c — echo backend + gateway + shims with the standard config.
 */
#include "ts_fixture.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ts_flow.h"
#include "ts_net.h"
#include "ts_util.h"

#define START_MS 15000
#define STOP_MS 10000

void ts_fixture_std_config(ts_config_t *c, int family, const char *echo_addr)
{
    memset(c, 0, sizeof *c);
    c->listen[0] = family == AF_INET6 ? "[::1]:0" : "127.0.0.1:0";
    c->region = "local";

    static const char *turn_none[] = {NULL};
    static const char *eu_sfu[] = {"builtin:echo", NULL};
    /* The local sfu pool borrows echo_addr: a static slot per process is fine,
     * criterion runs each test in its own process. */
    static const char *local_sfu[2];
    local_sfu[0] = echo_addr;
    local_sfu[1] = NULL;

    /* ts_echo does not speak STUN (it would echo the gateway's probes and be
     * taken out), and tests count its sources: no probe, as for an SFU that
     * answers no STUN (docs/configuration.md, "Backend health"). */
    c->regions[0] = (ts_region_t){.name = "local", .sfu = local_sfu, .turn = turn_none,
                                  .sfu_health = "\"probe\":\"none\""};
    c->regions[1] = (ts_region_t){.name = "eu", .sfu = eu_sfu};
    c->tenants[0] = (ts_tenant_t){
        .id = TS_FX_TENANT,
        .secrets = {TS_FX_SECRET, TS_FX_SECRET2},
        .hash = "sha1",
        .max_ttl = TS_FX_MAX_TTL,
        .regions = {"local"},
        .kinds = {"sfu", "turn"},
    };
    c->tenants[1] = (ts_tenant_t){
        .id = TS_FX_TENANT_B,
        .secrets = {TS_FX_SECRET_B},
        .hash = "sha256",
        .max_ttl = TS_FX_MAX_TTL,
        .regions = {"local", "eu"},
        .kinds = {"sfu"},
    };
}

int ts_fixture_start(ts_fixture_t *fx, int family, const char *limits_json)
{
    memset(fx, 0, sizeof *fx);
    fx->family = family;
    fx->echo = ts_echo_start(family);
    if (!fx->echo) {
        fprintf(stderr, "ts_fixture_start: echo backend did not start\n");
        return -1;
    }
    ts_config_t c;
    ts_fixture_std_config(&c, family, ts_echo_addr_str(fx->echo));
    c.limits_json = limits_json;
    if (ts_config_write(&c, fx->config, sizeof fx->config) < 0) {
        fprintf(stderr, "ts_fixture_start: cannot write the config (SLUICE_BUILD set?)\n");
        return -1;
    }
    fx->gw_started = 1;
    return ts_gateway_start(&fx->gw, NULL, fx->config, ts_deadline(ts_ms(START_MS)));
}

int ts_fixture_add_shim(ts_fixture_t *fx, ts_shim_t **out)
{
    char url[128];
    if (fx->nshims == TS_FX_MAX_SHIMS || ts_gateway_url(&fx->gw, 0, "", url, sizeof url) < 0)
        return -1;
    ts_shim_t *s = &fx->shims[fx->nshims++];
    ts_shim_opts_t o = {
        .gateway = url,
        .tenant = TS_FX_TENANT,
        .kind = "sfu",
        .secret = TS_FX_SECRET,
        .listen = fx->family == AF_INET6 ? "[::1]:0" : "127.0.0.1:0",
    };
    if (out)
        *out = s;
    return ts_shim_start(s, &o, ts_deadline(ts_ms(START_MS)));
}

int ts_fixture_add_live_shim(ts_fixture_t *fx, ts_shim_t **shim, int *fd, const char **why)
{
    *fd = -1;
    if (ts_fixture_add_shim(fx, shim) < 0) {
        *why = "sluice-shim did not connect (output above)";
        return -1;
    }
    *fd = ts_udp_bind(fx->family, NULL);
    if (*fd < 0) {
        *why = "cannot bind a loopback UDP socket";
        return -1;
    }
    if (ts_flow_prime(*fd, &(*shim)->listen, 250, ts_deadline(ts_ms(10000))) < 0) {
        close(*fd);
        *fd = -1;
        *why = "the shim tunnel never echoed a primer";
        return -1;
    }
    return 0;
}

int ts_fixture_stop(ts_fixture_t *fx, const char **what, int *code)
{
    int rc = 0;
    *what = NULL;
    *code = 0;
    for (size_t i = 0; i < fx->nshims; i++) {
        int c = ts_shim_stop(&fx->shims[i], ts_deadline(ts_ms(STOP_MS)));
        if (c != 0 && rc == 0) {
            rc = -1;
            *what = "sluice-shim";
            *code = c;
        }
    }
    if (fx->gw_started) {
        int c = ts_gateway_stop(&fx->gw, ts_deadline(ts_ms(STOP_MS)));
        if (c != 0 && rc == 0) {
            rc = -1;
            *what = "sluiced";
            *code = c;
        }
    }
    return rc;
}

void ts_fixture_teardown(ts_fixture_t *fx)
{
    for (size_t i = 0; i < fx->nshims; i++)
        ts_shim_dispose(&fx->shims[i]);
    fx->nshims = 0;
    if (fx->gw_started)
        ts_gateway_dispose(&fx->gw);
    fx->gw_started = 0;
    ts_echo_stop(fx->echo);
    fx->echo = NULL;
}
