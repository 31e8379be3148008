/*
 * test_fleet.c — two real gateways and a real etcd share a tenant's tunnel
 * cap (issue 7 §3; docs/configuration.md, "Tenant limits"): with acme's
 * max_tunnels at 4, each of two gateways admits 2 and refuses the 3rd with
 * 429; a gateway stopped with SIGTERM revokes its lease, so the other admits
 * all 4 at once; a gateway SIGKILLed leaves its key to expire with its lease
 * (lease_ttl_s 2 here), after which the other's share rises to 4. With etcd
 * killed both keep their share of 2 (logged once per chain) and after its
 * restart a lease etcd no longer knows (revoked behind the gateway's back,
 * as an expiry during a long outage would) is granted anew and the key put
 * again; the gateway counts itself throughout. The node
 * ids are the default "<hostname>-<pid>": two gateways on one host do not
 * collide. The bits/s share is checked in tests/gateway/test_fleet.c.
 *
 * Rebalance times are measured from the signal to the survivor's
 * "fleet: 1 live gateways" line and printed.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_curl.h"
#include "../support/ts_etcd.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_proc.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define PREFIX "/sluice/tenants/"
#define ACME_PATH "/v1/tunnel/acme/sfu"
#define ACME                                                                                  \
    "{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"local\"],"                          \
    "\"limits\":{\"max_tunnels\":4,\"retry_after_s\":7}}"
#define TTL_S 2 /* etcd's minimum with its default election timeout */
#define SHARED_BY(n) "fleet: " #n " live gateways in region local"

static ts_etcd_t etcd;
static ts_gateway_t gw[2];
static ts_h2raw_t h[2];

static void teardown(void)
{
    for (size_t i = 0; i < 2; i++) {
        ts_h2raw_close(&h[i]);
        ts_gateway_dispose(&gw[i]);
    }
    ts_etcd_dispose(&etcd);
}

static void start_fleet(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    if (!ts_etcd_available())
        cr_skip_test("no " TS_ETCD_BIN " (Debian package etcd-server)");
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not start");
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "acme", ACME, ts_deadline(5000)), 0);
    char cert[PATH_MAX], key[PATH_MAX], text[3 * PATH_MAX], config[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(text, sizeof text,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"%s\",\"key\":\"%s\"},"
             "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"builtin:echo\"]}},"
             "\"limits\":{\"capsule_ping_ms\":0},"
             "\"tenant_store\":{\"type\":\"etcd\",\"endpoints\":[\"%s\"],"
             "\"prefix\":\"" PREFIX "\",\"lease_ttl_s\":%d}}",
             cert, key, etcd.url, TTL_S);
    cr_assert_eq(ts_config_write_raw(text, config, sizeof config), 0);
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_gateway_start(&gw[i], NULL, config, ts_deadline(ts_ms(10000))), 0,
                     "gateway %zu did not start", i);
    /* Each counts both once both have registered. */
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_log_wait(gw[i].proc.err_path, SHARED_BY(2), 1,
                                 ts_deadline(ts_ms(10000))),
                     0, "gateway %zu never counted 2 live gateways", i);
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(ts_h2raw_connect(&h[i], &gw[i].listen[0], NULL, ts_deadline(ts_ms(10000))),
                     0, "cannot connect to gateway %zu: %s", i, h[i].err);
}

/* An acme tunnel request on stream id of gateway g's connection: its status. */
static int request(size_t g, int32_t id)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, "s1", 600, NULL, username, sizeof username, cred,
                              sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request(&h[g], id, ACME_PATH, username, cred, 0), 0, "%s", h[g].err);
    return ts_h2raw_wait_status(&h[g], id, ts_deadline(ts_ms(10000)));
}

/* Each gateway admits 2 of acme's 4 tunnels; the 3rd on each gets 429. */
static void each_admits_two(void)
{
    for (size_t g = 0; g < 2; g++) {
        cr_assert_eq(request(g, 1), 200, "gateway %zu, 1st tunnel", g);
        cr_assert_eq(request(g, 3), 200, "gateway %zu, 2nd tunnel", g);
        cr_assert_eq(request(g, 5), 429, "gateway %zu, 3rd tunnel: over its share of 2", g);
    }
    const ts_h2raw_stream_t *s = ts_h2raw_stream(&h[0], 5);
    cr_assert_not_null(s);
    cr_assert(ts_memmem(s->body, s->body_len, "tenant at its concurrent tunnel limit") >= 0,
              "the 429 names the cap");
}

/* Gateway 0, whose tunnels 1 and 3 are open, now admits 2 more (4 in all)
 * and refuses the 5th, on streams from id on. */
static void survivor_admits_four(int32_t id)
{
    cr_assert_eq(request(0, id), 200, "3rd tunnel on the survivor");
    cr_assert_eq(request(0, id + 2), 200, "4th tunnel on the survivor");
    cr_assert_eq(request(0, id + 4), 429, "5th tunnel: over the whole figure");
    /* the first two ran on through both changes of share */
    for (int32_t open = 1; open <= 3; open += 2) {
        const ts_h2raw_stream_t *s = ts_h2raw_stream(&h[0], open);
        cr_assert(s && !s->end_stream, "tunnel %d was cut", open);
    }
}

/* The survivor and etcd stop cleanly: the survivor's exit revokes its own
 * lease too. */
static void stop_survivor(void)
{
    ts_h2raw_close(&h[0]);
    cr_assert_eq(ts_gateway_stop(&gw[0], ts_deadline(ts_ms(10000))), 0);
    cr_assert_eq(ts_log_count(gw[0].proc.err_path, "revoked"), 1,
                 "gateway 0 did not revoke its lease");
    cr_assert_eq(ts_etcd_stop(&etcd, ts_deadline(ts_ms(10000))), 0);
}

/* Waits until gateway 0 counts itself alone; returns the delay from t0. */
static int64_t wait_alone(int64_t t0, int64_t within_ms, const char *what)
{
    cr_assert_eq(ts_log_wait(gw[0].proc.err_path, SHARED_BY(1), 1,
                             ts_deadline(ts_ms(within_ms))),
                 0, "gateway 0 did not take the whole share within %lld ms (%s)",
                 (long long)within_ms, what);
    int64_t ms = ts_now_ms() - t0;
    fprintf(stderr, "test_fleet: %s: the survivor's share rose %lld ms after the signal\n", what,
            (long long)ms);
    return ms;
}

Test(fleet, sigterm_revokes_the_lease_and_the_other_takes_the_whole_cap, .fini = teardown,
     .timeout = 60)
{
    start_fleet();
    each_admits_two();
    ts_h2raw_close(&h[1]);
    int64_t t0 = ts_now_ms();
    cr_assert_eq(ts_gateway_stop(&gw[1], ts_deadline(ts_ms(10000))), 0);
    cr_assert_eq(ts_log_count(gw[1].proc.err_path, "revoked"), 1,
                 "gateway 1 did not revoke its lease");
    /* Well within the TTL: the revoke, not the expiry, moved it. */
    int64_t ms = wait_alone(t0, 5000, "SIGTERM");
    cr_assert_lt(ms, 1000, "rebalanced only when the lease expired");
    survivor_admits_four(7);
    stop_survivor();
}

Test(fleet, sigkill_leaves_the_key_to_expire_then_the_share_rises, .fini = teardown,
     .timeout = 60)
{
    start_fleet();
    each_admits_two();
    int64_t t0 = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&gw[1].proc, SIGKILL), 0);
    cr_assert_eq(ts_proc_wait_exit(&gw[1].proc, ts_deadline(ts_ms(5000))), 128 + SIGKILL);
    ts_h2raw_close(&h[1]);
    /* Until the lease expires gateway 0 keeps its share of 2. */
    cr_assert_eq(request(0, 7), 429, "the share rose before the lease could expire");
    /* etcd expires a lease up to about a second after its TTL. */
    int64_t ms = wait_alone(t0, TTL_S * 1000 + 10000, "SIGKILL");
    cr_assert_gt(ms, TTL_S * 1000 / 2, "rebalanced before the lease could expire");
    survivor_admits_four(9);
    stop_survivor();
}

/* Both gateways and etcd stop cleanly. */
static void stop_all(void)
{
    for (size_t i = 0; i < 2; i++) {
        ts_h2raw_close(&h[i]);
        cr_assert_eq(ts_gateway_stop(&gw[i], ts_deadline(ts_ms(10000))), 0);
    }
    cr_assert_eq(ts_etcd_stop(&etcd, ts_deadline(ts_ms(10000))), 0);
}

/* The lease id of gateway g's n-th registration, from its log. */
static long long lease_of(size_t g, size_t n)
{
    char line[TS_PROC_LINE_MAX];
    cr_assert_eq(ts_log_line(gw[g].proc.err_path, " under lease ", n, line, sizeof line), 0,
                 "gateway %zu: no registration %zu", g, n);
    return strtoll(strstr(line, " under lease ") + 13, NULL, 10);
}

Test(fleet, etcd_away_keeps_the_share_and_a_lost_lease_registers_again, .fini = teardown,
     .timeout = 90)
{
    start_fleet();
    each_admits_two();
    cr_assert_eq(ts_etcd_kill(&etcd), 0);
    /* Both chains (the lease's keep-alive, the members' watch) notice. */
    for (size_t g = 0; g < 2; g++)
        cr_assert_eq(ts_log_wait(gw[g].proc.err_path, "keeping 2 live gateways", 2,
                                 ts_deadline(ts_ms(10000))),
                     0, "gateway %zu did not say it keeps its share", g);
    /* A second keep-alive fails too (TTL/3 later): still said only once. */
    int64_t t0 = ts_now_ms();
    cr_assert_eq(ts_log_wait(gw[0].proc.err_path, "fleet: etcd", 3, t0 + TTL_S * 1000), -1);
    cr_assert_eq(request(0, 7), 429, "the share changed while etcd was away");
    for (size_t g = 0; g < 2; g++)
        cr_assert_eq(ts_log_count(gw[g].proc.err_path, "keeping 2 live gateways"), 2,
                     "gateway %zu: logged more than once per chain", g);

    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not restart");
    for (size_t g = 0; g < 2; g++) {
        cr_assert_eq(ts_log_wait(gw[g].proc.err_path, "lease calls answered again", 1,
                                 ts_deadline(ts_ms(10000))),
                     0, "gateway %zu: keep-alives did not resume", g);
        cr_assert_eq(ts_log_wait(gw[g].proc.err_path, "members read again", 1,
                                 ts_deadline(ts_ms(10000))),
                     0, "gateway %zu: the members watch did not resume", g);
    }
    cr_assert_eq(ts_log_count(gw[0].proc.err_path, SHARED_BY(1)), 0,
                 "the restart lost a member");

    /* Gateway 1's lease vanishes (revoked here, as etcd expires a lease whose
     * keep-alives did not arrive): its next keep-alive finds it gone, and it
     * registers again under a new lease. */
    long long lease = lease_of(1, 1);
    char url[128], body[64];
    ts_curl_reply_t r;
    snprintf(url, sizeof url, "%s/v3/lease/revoke", etcd.url);
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", lease);
    cr_assert_eq(ts_curl(NULL, url, NULL, body, 5000, &r), 200, "revoke: %s", r.err);
    cr_assert_eq(ts_log_wait(gw[1].proc.err_path, " under lease ", 2,
                             ts_deadline(ts_ms(TTL_S * 1000 + 5000))),
                 0, "gateway 1 did not register again");
    cr_assert_neq(lease_of(1, 2), lease, "registered again under the lost lease");
    cr_assert_eq(ts_log_count(gw[1].proc.err_path, "expired; registering"), 1);
    /* Gateway 0 saw it leave and come back; gateway 1 always counted itself. */
    cr_assert_eq(ts_log_wait(gw[0].proc.err_path, SHARED_BY(2), 2, ts_deadline(ts_ms(10000))), 0,
                 "gateway 0 did not count gateway 1 again");
    cr_assert_eq(ts_log_count(gw[1].proc.err_path, SHARED_BY(1)), 0);
    cr_assert_eq(request(0, 9), 429, "back to a share of 2");
    stop_all();
}
