/*
 * test_attacks.c — issue 10 §3, short: each attack not already in
 * test_floods.c, run against a real sluiced while a legitimate call (one
 * tunnel through sluice-shim, 200 B at 50 pps, echoed) is measured. Each
 * test asserts that the attacker was cut off (the GOAWAY it saw, or every
 * connection closed by the gateway), that the call lost at most 1 % of its
 * packets while the attack ran, that sluiced's log stayed bounded, and that
 * sluiced exits 0 afterwards. Timing figures (added p99) are for
 * `make attack` (tests/bench/bench_attack.c, docs/attacks.md), not asserted.
 *
 * The slowloris and bare-TCP tests hold 200 connections, not 10,000 (the
 * count `make attack` uses), to keep this binary short; the mechanism that
 * cuts them (handshake and header timeouts, max_pending_per_source) is the
 * same.
 */
#include <criterion/criterion.h>
#include <nghttp2/nghttp2.h>
#include <string.h>

#include "../support/ts_attack.h"
#include "../support/ts_util.h"

#define BASE_MS 500
#define MIN_ATTACK_MS 1000
#define PACED_MS 1000
#define CONNS 200
#define NO_GOAWAY UINT32_MAX
#define ANY_GOAWAY (UINT32_MAX - 1)

/* Runs the attack called name, asserts what every attack must show, and
 * that the attacker saw a GOAWAY with code (NO_GOAWAY: none required;
 * ANY_GOAWAY: any code) and a reason. max_log bounds sluiced's log lines during the attack. */
static void attack_with(const char *name, const char *limits, uint32_t code, size_t max_log)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    const ts_attack_t *a = ts_attack_find(name);
    cr_assert_not_null(a, "no attack %s", name);
    static ts_attack_row_t r;
    ts_attack_env_t opts = {.conns = CONNS, .duration_ms = PACED_MS};
    ts_attack_measure(a, limits, &opts, BASE_MS, MIN_ATTACK_MS, &r);
    cr_assert(r.ran, "%s: %s", name, r.why);
    cr_log_info("%s: %s; cut after %lld ms; call %llu/%llu back; p99 %.2f -> %.2f ms; "
                "RSS %+ld KiB; %zu log lines",
                name, r.res.how, (long long)r.res.cut_ms,
                (unsigned long long)r.during.received, (unsigned long long)r.during.sent,
                r.base.p99_ns / 1e6, r.during.p99_ns / 1e6, r.rss_after_kb - r.rss_before_kb,
                r.log_lines);
    cr_expect(r.res.cut, "%s: the attacker was not cut off: %s", name, r.res.how);
    if (code != NO_GOAWAY) {
        cr_expect(r.res.goaway, "%s: no GOAWAY saying why (%s)", name, r.res.how);
        cr_expect(code == ANY_GOAWAY || r.res.goaway_code == code, "%s: GOAWAY %s, expected %s", name,
                     ts_attack_h2_error(r.res.goaway_code), ts_attack_h2_error(code));
        /* Also when nghttp2's own flood limits bind (conn.c conn_h2_failed). */
        cr_expect(r.res.goaway_debug[0], "%s: the GOAWAY carried no reason", name);
    }
    cr_expect_geq(r.during.sent, MIN_ATTACK_MS * 50 / 1000 - 5, "%s: the call hardly ran",
                  name);
    uint64_t lost = r.during.sent - (r.during.received < r.during.sent ? r.during.received
                                                                         : r.during.sent);
    cr_expect_leq(lost * 100, r.during.sent, "%s: the call lost %llu of %llu packets (> 1 %%)",
                  name, (unsigned long long)lost, (unsigned long long)r.during.sent);
    cr_expect_leq(r.log_lines, max_log, "%s: %zu log lines (bound %zu)", name, r.log_lines,
                  max_log);
    cr_expect(r.gw_ok, "%s: sluiced did not exit 0 afterwards (its stderr is above)", name);
}

/* TS_ATTACK_LIMITS with a second a leg for media (media_queue_age_ms 2000):
 * a loss counted here is one the attack caused, not the latency of a
 * sanitizer build on a loaded two-core machine (at 200 ms a leg, the CI's
 * ASan pass once lost 7 of 117 packets under slowloris_tls, which loses none
 * when run alone). Timing is for `make attack`, which keeps the default. */
#define CALL_LIMITS                                                              \
    "{\"handshake_timeout_ms\":2000,\"header_timeout_ms\":2000,\"write_stall_ms\":2000," \
    "\"media_queue_age_ms\":2000}"

static void attack(const char *name, uint32_t code, size_t max_log)
{
    attack_with(name, CALL_LIMITS, code, max_log);
}

/* Rapid reset with wrong credentials: no tunnel ever exists; the
 * control-frame budget or max_auth_failures, whichever binds first, ends
 * the connection. (With valid credentials: test_floods.c.) */
Test(attacks, rapid_reset_with_wrong_credentials, .timeout = 60)
{
    attack("rapid_reset_badcred", ANY_GOAWAY, 20);
}

/* Whichever binds first ends it: the control-frame budget, nghttp2's reset
 * rate limit (which counts the streams it resets itself), or more open
 * streams than max_streams while the resets wait to be written
 * (PROTOCOL_ERROR). */
Test(attacks, made_you_reset, .timeout = 60)
{
    attack("made_you_reset", ANY_GOAWAY, 20);
}

Test(attacks, ping_flood, .timeout = 60)
{
    attack("ping", NGHTTP2_ENHANCE_YOUR_CALM, 20);
}

Test(attacks, settings_flood, .timeout = 60)
{
    attack("settings", NGHTTP2_ENHANCE_YOUR_CALM, 20);
}

Test(attacks, priority_flood, .timeout = 60)
{
    attack("priority", NGHTTP2_ENHANCE_YOUR_CALM, 20);
}

/* Three header lists over 16 KiB: each stream is reset, then the
 * connection ends (conn.c H2_MAX_HEADER_OFFENCES). */
Test(attacks, oversized_headers, .timeout = 60)
{
    attack("oversized_headers", NGHTTP2_ENHANCE_YOUR_CALM, 20);
}

/* Cut at write_stall_ms (2 s here) with GOAWAY(NO_ERROR) "write stalled". */
Test(attacks, zero_window, .timeout = 60)
{
    attack("zero_window", NGHTTP2_NO_ERROR, 20);
}

/* Never an HTTP/2 connection: cut by closing at handshake_timeout_ms. */
Test(attacks, slowloris_tls_handshake, .timeout = 90)
{
    attack("slowloris_tls", NO_GOAWAY, CONNS + 20);
}

/* TLS done, headers never finished: closed at header_timeout_ms. */
Test(attacks, slowloris_headers, .timeout = 90)
{
    attack("slowloris_headers", NO_GOAWAY, CONNS + 20);
}

/* One source: max_pending_per_source (64) and handshakes_per_source_s (20)
 * close most at once, the rest go at the handshake timeout. */
Test(attacks, bare_tcp_flood_from_one_source, .timeout = 90)
{
    attack("bare_tcp", NO_GOAWAY, CONNS + 20);
}

/* max_auth_failures (5) 401s, then GOAWAY(NO_ERROR) on every connection. */
Test(attacks, credential_brute_force, .timeout = 60)
{
    attack("brute_force", NGHTTP2_NO_ERROR, 200);
}

/* Not cut but capped: the tunnels over max_streams are refused, the
 * connection keeps the rest. Its 100 tunnels log TUNNEL_LOG_BURST (20)
 * lines, then a summary (tunnel.h). */
Test(attacks, many_tunnels_on_one_connection, .timeout = 60)
{
    attack("many_tunnels", NO_GOAWAY, 50);
}

/* Churn within the control-frame budget is allowed (a request and a reset
 * spend one frame each): with the default 1,000 a second it takes 500
 * tunnels a second to be cut, which a slow (sanitizer) build may not reach
 * in the test's second. A budget of 200 cuts churn above 100 tunnels/s.
 * Hundreds of tunnels, but 20 tunnel lines and a summary (tunnel.h). */
Test(attacks, tunnel_churn, .timeout = 60)
{
    attack_with("churn",
                "{\"handshake_timeout_ms\":2000,\"header_timeout_ms\":2000,"
                "\"write_stall_ms\":2000,\"media_queue_age_ms\":400,"
                "\"max_control_frames_s\":200}",
                NGHTTP2_ENHANCE_YOUR_CALM, 50);
}
