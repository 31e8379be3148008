/*
 * test_reload.c — live reload on the real gateway (SIGHUP, docs/configuration.md
 * "Reload"): packets keep flowing through a reload; a broken config changes
 * nothing and the log names its JSON path; a renewed certificate is served to
 * new connections; a tenant disabled in the region loses its live tunnels
 * with CLOSE(tenant disabled) and gets 403 for new ones; listeners follow the
 * config (an unchanged one keeps its socket, an added one accepts, a removed
 * one closes).
 *
 * Each reload rewrites the gateway's own config file, sends SIGHUP and waits
 * for the n-th "event=config.reloaded" (or "event=config.reload_failed") line in its log.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../../proto/capsule.h"
#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_proc.h"
#include "../support/ts_util.h"

#define ACME_PATH "/v1/tunnel/" TS_FX_TENANT "/sfu"
#define BETA_PATH "/v1/tunnel/" TS_FX_TENANT_B "/sfu"
/* The body holds datagrams only (no PING capsules). The media age limit is
 * a minute: what is asserted is that a reload loses nothing, not how long
 * it holds the loop (136 ms under ASan on a loaded two-core machine, past
 * the default's 100 ms a leg). */
#define TEST_LIMITS "{\"capsule_ping_ms\": 0, \"media_queue_age_ms\": 60000}"

static ts_fixture_t fx;
static ts_h2raw_t a, b, c;

static void teardown(void)
{
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    ts_h2raw_close(&c);
    ts_fixture_teardown(&fx);
}

static void start_gateway(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, TEST_LIMITS), 0,
                 "sluiced did not print its ready line (its output is above)");
}

/* The standard config, as the gateway started with it. */
static void std_config(ts_config_t *cfg)
{
    ts_fixture_std_config(cfg, AF_INET, ts_echo_addr_str(fx.echo));
    cfg->limits_json = TEST_LIMITS;
}

/* Rewrites the gateway's config file with cfg, sends SIGHUP and waits for
 * the next line holding want ("event=config.reloaded" or "event=config.reload_failed"). */
static void reload(const ts_config_t *cfg, const char *want)
{
    static char text[16384];
    cr_assert_gt(ts_config_render(cfg, text, sizeof text), 0);
    const char *log = fx.gw.proc.err_path;
    size_t before = ts_log_count(log, want);
    cr_assert_eq(ts_write_file(fx.config, text, strlen(text)), 0);
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGHUP), 0);
    cr_assert_eq(ts_log_wait(log, want, before + 1, ts_deadline(ts_ms(10000))), 0,
                 "no \"%s\" line after SIGHUP", want);
}

static void connect_ca(ts_h2raw_t *h, const ts_addr_t *to, const char *ca)
{
    cr_assert_eq(ts_h2raw_connect(h, to, ca, ts_deadline(ts_ms(10000))), 0,
                 "cannot connect to the gateway: %s", h->err);
}

/* A tunnel request on stream id of h for path (tenant acme, or beta when the
 * path names it); returns the status. */
static int request_on(ts_h2raw_t *h, int32_t id, const char *path, const char *resume)
{
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    int beta = strstr(path, TS_FX_TENANT_B) != NULL;
    cr_assert_eq(ts_cred_mint(beta ? CRED_SHA256 : CRED_SHA1, beta ? TS_FX_SECRET_B : TS_FX_SECRET,
                              600, NULL, username, sizeof username, cred, sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_request_resume(h, id, path, username, cred, resume, 0), 0, "%s",
                 h->err);
    return ts_h2raw_wait_status(h, id, ts_deadline(ts_ms(10000)));
}

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'r',  'e',  'l',  'o', 'a', 'd'};
#define CAPSULE_LEN (2 + 1 + sizeof rtp) /* type, length, context ID, payload */

static void send_datagram(ts_h2raw_t *h)
{
    uint8_t buf[256];
    ssize_t n = capsule_encode_datagram(buf, sizeof buf, rtp, sizeof rtp);
    cr_assert_gt(n, 0);
    cr_assert_eq(ts_h2raw_send_frame(h, 0 /* DATA */, 0, 1, buf, (size_t)n), 0, "%s", h->err);
}

static size_t body_total(const ts_h2raw_t *h)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(h, 1);
    return s ? s->body_len + s->body_over : 0;
}

static int body_has(const ts_h2raw_t *h, void *arg)
{
    return body_total(h) >= *(size_t *)arg;
}

/* n datagrams up; waits until all n echoes are down. */
static void burst(ts_h2raw_t *h, size_t n)
{
    size_t want = body_total(h) + n * CAPSULE_LEN;
    for (size_t i = 0; i < n; i++)
        send_datagram(h);
    cr_assert_eq(ts_h2raw_wait(h, body_has, &want, ts_deadline(ts_ms(5000))), 0,
                 "%zu of %zu echoed bytes came back", body_total(h), want);
}

static int has_close(const ts_h2raw_t *h, void *arg)
{
    const ts_h2raw_stream_t *s = ts_h2raw_stream(h, 1);
    return s && s->end_stream && ts_find_close(s->body, s->body_len, arg, NULL, 0) >= 0;
}

Test(reload, packets_flowing_through_a_reload_are_all_delivered, .fini = teardown, .timeout = 60)
{
    start_gateway();
    connect_ca(&a, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&a, 1, ACME_PATH, NULL), 200);
    const char *log = fx.gw.proc.err_path;

    /* The new config changes the tenant table (a third tenant, acme's
     * secrets rotated) but keeps acme's tunnel allowed. */
    ts_config_t cfg;
    std_config(&cfg);
    cfg.tenants[0].secrets[0] = TS_FX_SECRET2;
    cfg.tenants[0].secrets[1] = "s3";
    cfg.tenants[2] = (ts_tenant_t){.id = "gamma", .secrets = {"g1"}, .regions = {"local"},
                                   .kinds = {"sfu"}};
    static char text[16384];
    cr_assert_gt(ts_config_render(&cfg, text, sizeof text), 0);
    cr_assert_eq(ts_write_file(fx.config, text, strlen(text)), 0);

    /* Datagrams are in flight (sent, echoes not yet waited for) when SIGHUP
     * arrives, and keep going until the reload is logged and after. */
    size_t sent = 0, want = 0;
    for (int i = 0; i < 20; i++) {
        send_datagram(&a);
        sent++;
    }
    cr_assert_eq(ts_proc_signal(&fx.gw.proc, SIGHUP), 0);
    int64_t deadline = ts_deadline(ts_ms(10000));
    int after = 0; /* rounds sent once the reload was logged */
    do {
        after += ts_log_count(log, "event=config.reloaded") > 0;
        cr_assert(ts_remaining_ms(deadline) > 0, "no \"event=config.reloaded\" line after SIGHUP");
        cr_assert_lt(sent, 4000u);
        for (int i = 0; i < 10; i++) {
            send_datagram(&a);
            sent++;
        }
        want = sent * CAPSULE_LEN;
        cr_assert_eq(ts_h2raw_wait(&a, body_has, &want, ts_deadline(ts_ms(5000))), 0,
                     "lost echoes around the reload: %zu of %zu bytes", body_total(&a), want);
    } while (after < 10);
    cr_assert_eq(body_total(&a), sent * CAPSULE_LEN, "echoes: %zu bytes for %zu datagrams",
                 body_total(&a), sent);
    cr_assert_eq(ts_echo_packets(fx.echo), sent);
    const ts_h2raw_stream_t *s = ts_h2raw_stream(&a, 1);
    cr_assert(!s->end_stream && !s->reset, "the live tunnel ended across the reload");

    char line[1024];
    cr_assert_eq(ts_log_line(log, "event=config.reloaded", 1, line, sizeof line), 0);
    cr_assert(strstr(line, " tenants=3 ") &&
                  strstr(line, " listeners_kept=1 listeners_opened=0 listeners_closed=0 ") &&
                  strstr(line, " tunnels_closed=0"),
              "%s", line);
    /* The new tenant is there for a new connection. */
    connect_ca(&b, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&b, 1, BETA_PATH, NULL), 200);

    const char *what;
    int code;
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

Test(reload, a_broken_config_changes_nothing_and_the_log_names_its_json_path,
     .fini = teardown, .timeout = 60)
{
    start_gateway();
    connect_ca(&a, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&a, 1, ACME_PATH, NULL), 200);
    burst(&a, 5);
    const char *log = fx.gw.proc.err_path;

    /* acme disabled here, and a kind that does not exist: all of it refused. */
    ts_config_t cfg;
    std_config(&cfg);
    cfg.tenants[0].regions[0] = "eu";
    cfg.tenants[1].kinds[1] = "video";
    reload(&cfg, "event=config.reload_failed");
    char line[1024];
    cr_assert_eq(ts_log_line(log, "event=config.reload_failed", 1, line, sizeof line), 0);
    cr_assert(strstr(line, "$.tenants[1].kinds[1]") && strstr(line, " source=SIGHUP "), "%s",
              line);

    /* A config that parses but whose certificate is missing: refused too. */
    std_config(&cfg);
    cfg.tenants[0].regions[0] = "eu";
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/no-such-cert.pem", ts_tmpdir());
    cfg.cert = missing;
    reload(&cfg, "event=config.reload_failed");
    cr_assert_eq(ts_log_line(log, "event=config.reload_failed", 2, line, sizeof line), 0);
    cr_assert(strstr(line, "no-such-cert.pem"), "%s", line);
    cr_assert_eq(ts_log_count(log, "event=config.reloaded"), 0);

    /* The live tunnel runs on; acme still gets tunnels on old and new
     * connections. */
    burst(&a, 5);
    cr_assert_eq(request_on(&a, 3, ACME_PATH, NULL), 200);
    connect_ca(&b, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&b, 1, ACME_PATH, NULL), 200);

    const char *what;
    int code;
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* A self-signed certificate for 127.0.0.1 and its key, written over cert and
 * key (a renewal keeps the file names). */
static void make_cert(const char *cert, const char *key)
{
    char *argv[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                    (char *)key, "-out", (char *)cert, NULL};
    ts_run_t r;
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(20000)), &r), 0, "cannot run openssl");
    cr_assert_eq(r.code, 0, "openssl req: %s", r.err);
    ts_run_free(&r);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = ts_read_file(from, 1 << 16, &len);
    cr_assert_not_null(data, "cannot read %s", from);
    cr_assert_eq(ts_write_file(to, data, len), 0);
    free(data);
}

Test(reload, a_renewed_certificate_is_served_to_new_connections, .fini = teardown,
     .timeout = 90)
{
    start_gateway();
    char cert[PATH_MAX], key[PATH_MAX], old_ca[PATH_MAX], new_cert[PATH_MAX], new_key[PATH_MAX];
    cr_assert_eq(ts_tmppath("cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_tmppath("key.pem", key, sizeof key), 0);
    cr_assert_eq(ts_tmppath("old-ca.pem", old_ca, sizeof old_ca), 0);
    cr_assert_eq(ts_tmppath("new-cert.pem", new_cert, sizeof new_cert), 0);
    cr_assert_eq(ts_tmppath("new-key.pem", new_key, sizeof new_key), 0);
    make_cert(cert, key);
    copy_file(cert, old_ca);
    make_cert(new_cert, new_key);

    /* From the development certificate to the first one ... */
    ts_config_t cfg;
    std_config(&cfg);
    cfg.cert = cert;
    cfg.key = key;
    reload(&cfg, "event=config.reloaded");
    connect_ca(&a, &fx.gw.listen[0], old_ca);
    cr_assert_eq(request_on(&a, 1, ACME_PATH, NULL), 200);
    burst(&a, 3);

    /* ... then renewed in place: same file names, new contents. */
    copy_file(new_cert, cert);
    copy_file(new_key, key);
    reload(&cfg, "event=config.reloaded");
    connect_ca(&b, &fx.gw.listen[0], new_cert);
    cr_assert_eq(request_on(&b, 1, ACME_PATH, NULL), 200);
    cr_assert_neq(ts_h2raw_connect(&c, &fx.gw.listen[0], old_ca, ts_deadline(ts_ms(10000))), 0,
                  "a new connection was still served the old certificate");
    /* The connection made before the renewal keeps its session. */
    burst(&a, 3);

    const char *what;
    int code;
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

Test(reload, a_tenant_disabled_in_the_region_loses_its_tunnels_and_gets_403,
     .fini = teardown, .timeout = 60)
{
    start_gateway();
    connect_ca(&a, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&a, 1, ACME_PATH, NULL), 200);
    char token[64];
    snprintf(token, sizeof token, "%s", ts_h2raw_stream(&a, 1)->session);
    cr_assert_neq(token[0], '\0', "no tunnel-session header");
    burst(&a, 3);
    connect_ca(&b, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&b, 1, BETA_PATH, NULL), 200);
    burst(&b, 3);

    /* acme: only in "eu" now; this gateway is "local". */
    ts_config_t cfg;
    std_config(&cfg);
    cfg.tenants[0].regions[0] = "eu";
    reload(&cfg, "event=config.reloaded");

    uint64_t close_code = UINT64_MAX;
    cr_assert_eq(ts_h2raw_wait(&a, has_close, &close_code, ts_deadline(ts_ms(5000))), 0,
                 "acme's tunnel got no CLOSE");
    cr_assert_eq(close_code, CLOSE_TENANT_DISABLED);
    const char *log = fx.gw.proc.err_path;
    char line[1024];
    cr_assert_eq(ts_log_line(log, "event=config.reloaded", 1, line, sizeof line), 0);
    cr_assert(strstr(line, " tunnels_closed=1"), "%s", line);

    /* beta runs on; acme is refused on an old connection and a new one, and
     * its closed tunnel was not kept for a resume. */
    burst(&b, 3);
    cr_assert_eq(request_on(&b, 3, ACME_PATH, NULL), 403);
    connect_ca(&c, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&c, 1, ACME_PATH, token), 403);
    cr_assert_eq(ts_log_count(log, "event=tunnel.detach"), 0);

    const char *what;
    int code;
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    ts_h2raw_close(&c);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* The port of "listen=<prefix>PORT" in line. */
static uint16_t listen_port(const char *line, const char *prefix)
{
    /* listen="127.0.0.1:PORT [::1]:PORT": the only field with addresses */
    const char *needle = prefix, *p = strstr(line, "listen=");
    cr_assert_not_null(p, "no listen= in: %s", line);
    p = strstr(p, needle);
    cr_assert_not_null(p, "no %s in: %s", needle, line);
    long port;
    char digits[8] = {0};
    p += strlen(needle);
    for (size_t i = 0; i < sizeof digits - 1 && p[i] >= '0' && p[i] <= '9'; i++)
        digits[i] = p[i];
    cr_assert_eq(ts_parse_long(digits, 1, 65535, &port), 0, "bad port in: %s", line);
    return (uint16_t)port;
}

Test(reload, listeners_follow_the_config, .fini = teardown, .timeout = 60)
{
    start_gateway();
    connect_ca(&a, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&a, 1, ACME_PATH, NULL), 200);
    const char *log = fx.gw.proc.err_path;
    uint16_t v4 = ts_addr_port(&fx.gw.listen[0]);

    /* Added: [::1]:0. The unchanged 127.0.0.1:0 keeps its socket (and port). */
    ts_config_t cfg;
    std_config(&cfg);
    cfg.listen[1] = "[::1]:0";
    reload(&cfg, "event=config.reloaded");
    char line[1024];
    cr_assert_eq(ts_log_line(log, "event=config.reloaded", 1, line, sizeof line), 0);
    cr_assert(strstr(line, " listeners_kept=1 listeners_opened=1 listeners_closed=0 "), "%s",
              line);
    cr_assert_eq(listen_port(line, "127.0.0.1:"), v4);
    ts_addr_t v6;
    ts_addr_loopback(&v6, AF_INET6, listen_port(line, "[::1]:"));
    connect_ca(&b, &v6, NULL);
    cr_assert_eq(request_on(&b, 1, ACME_PATH, NULL), 200);
    burst(&b, 3);

    /* Removed: 127.0.0.1:0. Its connections live on; it accepts no more. */
    cfg.listen[0] = "[::1]:0";
    cfg.listen[1] = NULL;
    reload(&cfg, "event=config.reloaded");
    cr_assert_eq(ts_log_line(log, "event=config.reloaded", 2, line, sizeof line), 0);
    cr_assert(strstr(line, " listeners_kept=1 listeners_opened=0 listeners_closed=1 "), "%s",
              line);
    int fd = ts_tcp_connect(&fx.gw.listen[0], ts_deadline(ts_ms(2000)));
    cr_assert_lt(fd, 0, "the removed listener still accepts");
    burst(&a, 3);
    burst(&b, 3);

    const char *what;
    int code;
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
}

/* A reload that points the pool at another backend: the health table
 * follows the new pools (backend_table_apply), so a new tunnel goes to the
 * new backend while the old tunnel keeps the backend it has. */
Test(reload, a_new_pool_takes_new_tunnels_and_old_ones_keep_their_backend, .fini = teardown,
     .timeout = 60)
{
    start_gateway();
    ts_echo_t *other = ts_echo_start(AF_INET);
    cr_assert_not_null(other);
    connect_ca(&a, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&a, 1, ACME_PATH, NULL), 200);
    burst(&a, 3);

    ts_config_t cfg;
    std_config(&cfg);
    const char *pool[] = {ts_echo_addr_str(other), NULL};
    cfg.regions[0].sfu = pool;
    reload(&cfg, "event=config.reloaded");

    connect_ca(&b, &fx.gw.listen[0], NULL);
    cr_assert_eq(request_on(&b, 1, ACME_PATH, NULL), 200, "no tunnel on the new pool");
    burst(&b, 4);
    burst(&a, 2);
    cr_expect_eq(ts_echo_packets(other), 4u, "the new tunnel did not reach the new backend");
    cr_expect_eq(ts_echo_packets(fx.echo), 5u, "the old tunnel moved off its backend");

    const char *what;
    int code;
    ts_h2raw_close(&a);
    ts_h2raw_close(&b);
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with %d", what, code);
    ts_echo_stop(other);
}
