/*
 * test_lifecycle.c — shutdown with live tunnels, --check-config, connection
 * deadlines (silent, stalled, request-less clients) and cleartext refusal.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_flow.h"
#include "../support/ts_http.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_proc.h"
#include "../support/ts_util.h"

static ts_fixture_t fx;
static ts_proc_t curl_proc;
static ts_run_t run;
static int fd = -1;

static void teardown(void)
{
    if (fd >= 0)
        close(fd);
    ts_proc_dispose(&curl_proc);
    ts_run_free(&run);
    ts_fixture_teardown(&fx);
}

static void start_gateway(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    /* drain_ms 0: SIGTERM sends CLOSE at once, as these tests expect; the
     * phases of a longer drain are test_drain's. */
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, "{\"drain_ms\":0}"), 0,
                 "sluiced did not print its ready line (its output is above)");
}

Test(lifecycle, sigterm_closes_tunnels_and_everything_exits_0, .fini = teardown, .timeout = 120)
{
    start_gateway();
    ts_shim_t *s;
    const char *why = NULL;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &s, &fd, &why), 0, "%s", why);

    /* A second, raw tunnel from curl, proven live by one echoed datagram, so
     * the CLOSE the gateway sends on shutdown can be read byte for byte. */
    char url[256], body[PATH_MAX], username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "/v1/tunnel/acme/sfu", url, sizeof url), 0);
    cr_assert_eq(ts_tmppath("tunnel.body", body, sizeof body), 0);
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, NULL, username, sizeof username,
                              cred, sizeof cred),
                 0);
    cr_assert_eq(ts_http_tunnel_start(&curl_proc, url, username, cred, body, 60), 0);
    uint8_t pkt[64], capsule[128], back[2048];
    size_t pkt_len = ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, 3, 480, 0x0badcafeu, 3);
    ssize_t n = capsule_encode_datagram(capsule, sizeof capsule, pkt, pkt_len);
    cr_assert_gt(n, 0);
    cr_assert_eq(write(curl_proc.in_fd, capsule, (size_t)n), n);
    cr_assert_eq(ts_file_wait_datagram(body, curl_proc.in_fd, back, sizeof back,
                                       ts_deadline(ts_ms(10000))),
                 (ssize_t)pkt_len, "the curl tunnel did not echo within 10 s");

    int64_t t_term = ts_now_ms();
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGTERM), 0);

    /* curl first: it only reads the response while being fed (see
     * ts_http_tunnel_nudge). Like a well-behaved tunnel client it then ends
     * its request body once CLOSE arrives, so the gateway's drain can finish
     * without waiting for its timeout. */
    uint64_t first_close = UINT64_MAX;
    cr_expect_eq(ts_file_wait_close(body, curl_proc.in_fd, &first_close,
                                    ts_deadline(ts_ms(10000))),
                 0, "no CLOSE capsule on the curl tunnel within 10 s of SIGTERM");
    close(curl_proc.in_fd);
    curl_proc.in_fd = -1;
    int curl_code = ts_http_tunnel_wait_exit(&curl_proc, ts_deadline(ts_ms(10000)));
    cr_expect_geq(curl_code, 0, "the curl tunnel was still open 10 s after SIGTERM");

    /* The shim takes a gateway shutdown as a reason to reconnect, never to
     * exit (docs/shim.md, "Reconnect"); SIGTERM then stops it with 0. */
    char line[TS_PROC_LINE_MAX] = "";
    cr_expect_eq(ts_proc_wait_line(&s->proc, "sluice-shim reconnecting ", ts_deadline(ts_ms(10000)),
                                   line, sizeof line),
                 0, "the shim did not print \"sluice-shim reconnecting ...\" within 10 s");
    cr_log_info("shim said: %s", line);
    cr_expect(ts_proc_running(&s->proc), "the shim exited after the gateway shut down");
    int shim_code = ts_proc_stop(&s->proc, ts_deadline(ts_ms(10000)));
    cr_expect_eq(shim_code, 0, "the shim exited with %d on SIGTERM, expected 0", shim_code);
    int gw_code = ts_proc_wait_exit(&fx.gw.proc, ts_deadline(ts_ms(10000)));
    if (gw_code != 0)
        ts_proc_dump(&fx.gw.proc, "after SIGTERM");
    cr_expect_eq(gw_code, 0, "sluiced exited with %d after SIGTERM, expected 0 (-1: still "
                             "running after 10 s; under ASan non-zero is a leak or a report)",
                 gw_code);
    cr_log_info("sluiced exited %lld ms after SIGTERM", (long long)(ts_now_ms() - t_term));

    /* The curl tunnel's response: whole capsules, ending in CLOSE(shutting down). */
    size_t len = 0, ndatagrams, ncloses;
    uint64_t close_code;
    char *data = ts_read_file(body, 1u << 20, &len);
    cr_assert_not_null(data);
    int whole = ts_walk_capsules((const uint8_t *)data, len, &ndatagrams, &ncloses, &close_code);
    free(data);
    cr_expect_eq(whole, 0, "the tunnel response is not a whole capsule stream (%zu bytes)", len);
    cr_expect_eq(ncloses, 1, "%zu CLOSE capsules in the tunnel response, expected 1", ncloses);
    cr_expect_eq(close_code, CLOSE_SHUTTING_DOWN,
                 "CLOSE code %llu (%s), expected %d (shutting down)",
                 (unsigned long long)close_code, capsule_close_name(close_code),
                 CLOSE_SHUTTING_DOWN);
}

static void check_config(const char *path, int want_code, const char *want_text)
{
    char bin[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluiced", bin, sizeof bin), 0,
                 "SLUICE_BUILD is not set (tests/run.sh sets it)");
    char *argv[] = {bin, "--check-config", (char *)path, NULL};
    ts_run_free(&run);
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &run), 0);
    cr_expect_eq(run.code, want_code, "sluiced --check-config %s: exit %d, expected %d\n"
                                      "stdout: %s\nstderr: %s",
                 path, run.code, want_code, run.out, run.err);
    int seen = ts_memmem(run.out, run.out_len, want_text) ||
               ts_memmem(run.err, run.err_len, want_text);
    cr_expect(seen, "sluiced --check-config %s: output does not mention \"%s\"\n"
                    "stdout: %s\nstderr: %s",
              path, want_text, run.out, run.err);
}

Test(lifecycle, check_config_accepts_a_good_file, .fini = teardown)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    ts_config_t c;
    char path[PATH_MAX];
    ts_fixture_std_config(&c, AF_INET, "127.0.0.1:9");
    cr_assert_eq(ts_config_write(&c, path, sizeof path), 0);
    check_config(path, 0, "config ok");
}

Test(lifecycle, check_config_rejects_bad_files_naming_the_json_path, .fini = teardown)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    char path[PATH_MAX];
    ts_config_t c;

    /* A tenant with no secrets. */
    ts_fixture_std_config(&c, AF_INET, "127.0.0.1:9");
    c.tenants[0].secrets[0] = NULL;
    c.tenants[0].secrets[1] = NULL;
    cr_assert_eq(ts_config_write(&c, path, sizeof path), 0);
    check_config(path, 2, "$.tenants[0].secrets");

    /* A listen address that is not an address. */
    ts_fixture_std_config(&c, AF_INET, "127.0.0.1:9");
    c.listen[0] = "not-an-address";
    cr_assert_eq(ts_config_write(&c, path, sizeof path), 0);
    check_config(path, 2, "$.listen[0]");

    /* A tenant enabled in a region that does not exist. */
    ts_fixture_std_config(&c, AF_INET, "127.0.0.1:9");
    c.tenants[1].regions[1] = "mars";
    cr_assert_eq(ts_config_write(&c, path, sizeof path), 0);
    check_config(path, 2, "$.tenants[1].regions");

    /* Not JSON at all. */
    cr_assert_eq(ts_config_write_raw("{\"listen\": [\"127.0.0.1:0\",", path, sizeof path), 0);
    check_config(path, 2, path);

    /* No such file: the message names it. */
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/does-not-exist.json", ts_tmpdir());
    check_config(missing, 2, "does-not-exist.json");
}

Test(lifecycle, cleartext_is_refused, .fini = teardown)
{
    start_gateway();
    const ts_addr_t *gw = &fx.gw.listen[0];

    /* HTTP/2 with prior knowledge over plain TCP must not reach a tunnel. */
    char url[256];
    snprintf(url, sizeof url, "http://%s/v1/tunnel/acme/sfu", fx.gw.listen_str[0]);
    char *argv[] = {"curl", "--http2-prior-knowledge", "-sS", "-o", "/dev/null", "-w",
                    "%{http_code}", "--max-time", "5", "-X", "POST", url, NULL};
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &run), 0, "cannot run curl");
    cr_expect(strcmp(run.out, "200") != 0,
              "cleartext h2 prior-knowledge POST got 200; curl exit %d", run.code);
    cr_expect_neq(run.code, 0, "curl succeeded over cleartext (stdout %s)", run.out);

    /* The gateway answers a non-TLS first byte with HTTP/1.1 400 "TLS
     * required" and closes. Try an HTTP/1.1 request and the h2 preface. */
    static const char *const probes[] = {
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        int s = ts_tcp_connect(gw, ts_deadline(ts_ms(5000)));
        cr_assert_geq(s, 0, "cannot connect to %s", fx.gw.listen_str[0]);
        cr_assert_eq(ts_tcp_send_all(s, probes[i], strlen(probes[i])), 0);
        char buf[4096];
        int closed = 0;
        size_t got = ts_tcp_read_until_close(s, buf, sizeof buf - 1, ts_deadline(ts_ms(5000)),
                                             &closed);
        close(s);
        buf[got] = '\0';
        cr_expect(strncmp(buf, "HTTP/1.1 400", 12) == 0,
                  "probe %zu: response starts \"%.40s\", expected \"HTTP/1.1 400\"", i, buf);
        cr_expect(ts_memmem(buf, got, "TLS required"), "probe %zu: no \"TLS required\" in:\n%s",
                  i, buf);
        cr_expect(closed, "probe %zu: the gateway did not close the connection within 5 s", i);
    }

    /* The gateway is unharmed: a TLS shim still connects and echoes. */
    ts_shim_t *shim;
    const char *why = NULL;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim, &fd, &why), 0,
                 "after the cleartext probes: %s", why);
    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}

/* Every wait has a timer: a client that connects and says nothing, one that
 * stalls inside the TLS handshake, and one that completes TLS but never sends
 * a request are all disconnected by the gateway. The deadlines here are
 * generous liveness bounds (the configured timeouts are 300 ms). */
Test(lifecycle, silent_and_stalled_clients_are_disconnected, .fini = teardown, .timeout = 60)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET,
                                  "{\"handshake_timeout_ms\":300,\"header_timeout_ms\":300}"),
                 0, "sluiced did not print its ready line (its output is above)");
    const ts_addr_t *gw = &fx.gw.listen[0];

    /* Silent after connect, then stalled after the first bytes of a TLS
     * record header (handshake timeout). */
    static const uint8_t partial_hello[] = {0x16, 0x03, 0x01};
    for (int stalled = 0; stalled < 2; stalled++) {
        int s = ts_tcp_connect(gw, ts_deadline(ts_ms(5000)));
        cr_assert_geq(s, 0);
        if (stalled)
            cr_assert_eq(ts_tcp_send_all(s, partial_hello, sizeof partial_hello), 0);
        char buf[256];
        int closed = 0;
        size_t got = ts_tcp_read_until_close(s, buf, sizeof buf, ts_deadline(ts_ms(10000)),
                                             &closed);
        close(s);
        cr_expect(closed, "%s client still connected after 10 s",
                  stalled ? "a stalled TLS" : "a silent");
        cr_expect_eq(got, 0u, "the gateway sent %zu bytes to a client that sent no TLS", got);
    }

    /* TLS and ALPN h2 complete, but no HTTP/2 request ever comes (header
     * timeout): s_client keeps its side open (-ign_eof) until the gateway
     * hangs up. */
    char connect[64];
    snprintf(connect, sizeof connect, "%s", fx.gw.listen_str[0]);
    char ca[PATH_MAX];
    snprintf(ca, sizeof ca, "%s/dev/cert.pem", ts_build_dir());
    char *argv[] = {"openssl", "s_client", "-connect", connect, "-alpn", "h2", "-CAfile", ca,
                    "-verify_return_error", "-ign_eof", NULL};
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(10000)), &run), 0, "cannot run openssl");
    cr_expect_not(run.timed_out, "a TLS client that sends no request was not disconnected");
    cr_expect(ts_memmem(run.out, run.out_len, "ALPN protocol: h2"),
              "the handshake did not complete with h2:\n%s\n%s", run.out, run.err);

    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}
