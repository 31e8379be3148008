/*
 * test_tenant_limits.c — a tenant's tunnel cap on the real sluiced, seen by
 * an independent client (curl --http2): with acme's max_tunnels at 1 and a
 * shim's tunnel open, a second acme tunnel gets 429 with retry-after and a
 * reason, and the running tunnel keeps relaying (issue 7 §3: a running call
 * is never cut because a new one would exceed a cap). The rates themselves
 * are measured in tests/gateway/test_ratelimit.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_flow.h"
#include "../support/ts_http.h"
#include "../support/ts_util.h"

static ts_fixture_t fx;
static ts_http_resp_t resp;
static int app_fd = -1;

static void teardown(void)
{
    if (app_fd >= 0)
        close(app_fd);
    ts_http_resp_free(&resp);
    ts_fixture_teardown(&fx);
}

/* ts_fixture_start with acme's tenants[].limits set. */
static void start_gateway(const char *acme_limits)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    memset(&fx, 0, sizeof fx);
    fx.family = AF_INET;
    fx.echo = ts_echo_start(AF_INET);
    cr_assert_not_null(fx.echo, "echo backend did not start");
    ts_config_t c;
    ts_fixture_std_config(&c, AF_INET, ts_echo_addr_str(fx.echo));
    cr_assert_str_eq(c.tenants[0].id, TS_FX_TENANT);
    c.tenants[0].limits_json = acme_limits;
    cr_assert_eq(ts_config_write(&c, fx.config, sizeof fx.config), 0);
    fx.gw_started = 1;
    cr_assert_eq(ts_gateway_start(&fx.gw, NULL, fx.config, ts_deadline(ts_ms(15000))), 0,
                 "sluiced did not print its ready line (its output is above)");
}

Test(tenant_limits, cap_429_retry_after_and_the_running_tunnel_stays, .fini = teardown)
{
    start_gateway("{\"max_tunnels\":1,\"retry_after_s\":9}");
    ts_shim_t *shim;
    const char *why = "";
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &shim, &app_fd, &why), 0, "%s", why);

    char username[CRED_USERNAME_MAX], credential[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, "second", username, sizeof username,
                              credential, sizeof credential),
                 0);
    char url[512], uh[CRED_USERNAME_MAX + 32], ch[CRED_B64_MAX + 64];
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "/v1/tunnel/acme/sfu", url, sizeof url), 0);
    snprintf(uh, sizeof uh, "tunnel-username: %s", username);
    snprintf(ch, sizeof ch, "tunnel-credential: %s", credential);
    ts_http_req_t q = {.url = url, .method = "POST", .headers = {uh, ch}, .max_time_s = 10};
    cr_assert_eq(ts_http(&q, &resp), 0, "cannot run curl");
    cr_assert_eq(resp.status, 429, "status %d (curl exit %d, %s)", resp.status, resp.curl_exit,
                 resp.err);
    cr_assert_str_eq(resp.version, "2");
    cr_assert_not_null(strstr(resp.headers, "retry-after: 9\r\n"), "headers: %s", resp.headers);
    cr_assert_str_eq(resp.body, "tenant at its concurrent tunnel limit\n");

    /* the shim's tunnel still relays after the refusal */
    cr_assert_eq(ts_flow_prime(app_fd, &shim->listen, 250, ts_deadline(ts_ms(5000))), 0,
                 "the open tunnel stopped echoing after another was refused");

    const char *what;
    int code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &code), 0, "%s exited with code %d", what, code);
}
