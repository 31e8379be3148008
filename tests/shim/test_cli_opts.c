/*
 * test_cli_opts.c — client-shim/lib/cli_opts.c: sluice-shim's options.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "../../client-shim/lib/shim_cli.h"

#define ARGV(...) ((char *const[]){"sluice-shim", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((const char *[]){"sluice-shim", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(o, err, ...) shim_cli_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (o), (err), sizeof(err))

#define BASE "--gateway", "https://127.0.0.1:8443", "--tenant", "demo", "--kind", "sfu", \
             "--listen", "127.0.0.1:0"

Test(cli_opts, minimal_with_username_and_credential)
{
    shim_cli_opts_t o;
    char err[256] = "";

    cr_assert_eq(PARSE(&o, err, BASE, "--username", "1:alice", "--credential", "abc="), 0, "%s",
                 err);
    cr_expect_str_eq(o.gw_host, "127.0.0.1");
    cr_expect_eq(o.gw_port, 8443);
    cr_expect_str_eq(o.tenant, "demo");
    cr_expect_str_eq(o.kind, "sfu");
    cr_expect_null(o.region);
    cr_expect_str_eq(o.username, "1:alice");
    cr_expect_str_eq(o.credential, "abc=");
    cr_expect_null(o.secret);
    cr_expect_eq(o.listen.ss_family, AF_INET);
    cr_expect_eq(o.max_flows, SHIM_CLI_DEFAULT_MAX_FLOWS);
    cr_expect_eq(o.flow_idle_ms, SHIM_CLI_DEFAULT_FLOW_IDLE_MS);
    cr_expect_null(o.ca_file);
    cr_expect_null(o.server_name);
    cr_expect_eq(o.verbose, 0);
}

Test(cli_opts, secret_with_every_option_and_equals_form)
{
    shim_cli_opts_t o;
    char err[256] = "";

    cr_assert_eq(PARSE(&o, err, "--gateway=https://[::1]:9443", "--tenant=acme", "--kind=turn",
                       "--listen=[::1]:0", "--secret", "s3cret", "--hash", "sha256", "--ttl",
                       "600", "--user", "bob", "--ca-file", "/tmp/ca.pem", "--server-name",
                       "localhost", "--region", "eu-west", "--max-flows", "8",
                       "--flow-idle-ms", "1500", "-v"),
                 0, "%s", err);
    cr_expect_str_eq(o.gw_host, "::1");
    cr_expect_eq(o.gw_port, 9443);
    cr_expect_str_eq(o.kind, "turn");
    cr_expect_eq(o.listen.ss_family, AF_INET6);
    cr_expect_str_eq(o.secret, "s3cret");
    cr_expect_eq(o.hash, SLUICE_HASH_SHA256);
    cr_expect_eq(o.ttl, 600);
    cr_expect_str_eq(o.user, "bob");
    cr_expect_str_eq(o.ca_file, "/tmp/ca.pem");
    cr_expect_str_eq(o.server_name, "localhost");
    cr_expect_str_eq(o.region, "eu-west");
    cr_expect_eq(o.max_flows, 8);
    cr_expect_eq(o.flow_idle_ms, 1500);
    cr_expect_eq(o.verbose, 1);
}

Test(cli_opts, help_and_version_need_nothing_else)
{
    shim_cli_opts_t o;
    char err[256];

    cr_expect_eq(PARSE(&o, err, "--help"), 0);
    cr_expect(o.help);
    cr_expect_eq(PARSE(&o, err, "-h"), 0);
    cr_expect(o.help);
    cr_expect_eq(PARSE(&o, err, "--version"), 0);
    cr_expect(o.version);
    cr_expect_eq(PARSE(&o, err, "-V"), 0);
    cr_expect(o.version);
    cr_expect_not_null(strstr(shim_cli_usage(), "-V, --version"));
    cr_expect_eq(shim_cli_parse(1, ARGV(NULL), &o, err, sizeof(err)), -1,
                 "no arguments: --gateway is required");
    cr_expect_not_null(strstr(shim_cli_usage(), "--gateway"));
}

/* Each case is one bad command line and a word its message must contain. */
Test(cli_opts, bad_command_lines_name_the_problem)
{
    static const struct { const char *argv[24]; const char *word; } cases[] = {
        {{"--tenant", "demo", "--kind", "sfu", "--listen", "127.0.0.1:0", "--secret", "s"},
         "--gateway"},
        {{"--gateway", "https://gw", "--kind", "sfu", "--listen", "127.0.0.1:0", "--secret",
          "s"}, "--tenant"},
        {{BASE}, "--secret"},
        {{BASE, "--username", "u"}, "--credential"},
        {{BASE, "--secret", "s", "--username", "u", "--credential", "c"}, "--secret"},
        {{BASE, "--username", "u", "--credential", "c", "--ttl", "5"}, "--secret"},
        {{BASE, "--secret", ""}, "--secret"},
        {{BASE, "--secret", "s", "--hash", "md5"}, "--hash"},
        {{BASE, "--secret", "s", "--ttl", "0"}, "--ttl"},
        {{BASE, "--secret", "s", "--ttl", "1x"}, "--ttl"},
        {{BASE, "--secret", "s", "--user", "a\tb"}, "--user"},
        {{BASE, "--secret", "s", "--max-flows", "0"}, "--max-flows"},
        {{BASE, "--secret", "s", "--max-flows", "99999999999999999999999"}, "--max-flows"},
        {{BASE, "--secret", "s", "--flow-idle-ms", "5"}, "--flow-idle-ms"},
        {{BASE, "--secret", "s", "--tenant", "x"}, "twice"},
        {{BASE, "--secret", "s", "--bogus"}, "--bogus"},
        {{BASE, "--secret"}, "needs a value"},
        {{BASE, "--secret", "s", "-v=1"}, "-v=1"},
        {{BASE, "--secret", "s", "--verbose=1"}, "no value"},
        {{"--gateway", "http://gw", "--tenant", "d", "--kind", "sfu", "--listen", "127.0.0.1:0",
          "--secret", "s"}, "https"},
        {{"--gateway", "https://gw", "--tenant", "d/e", "--kind", "sfu", "--listen",
          "127.0.0.1:0", "--secret", "s"}, "--tenant"},
        {{"--gateway", "https://gw", "--tenant", "d", "--kind", "webrtc", "--listen",
          "127.0.0.1:0", "--secret", "s"}, "--kind"},
        {{"--gateway", "https://gw", "--tenant", "d", "--kind", "sfu", "--listen",
          "localhost:5", "--secret", "s"}, "--listen"},
        {{"--gateway", "https://gw", "--tenant", "d", "--kind", "sfu", "--listen",
          "127.0.0.1:0", "--secret", "s", "--region", "a b"}, "--region"},
        {{BASE, "--secret", "s", "--server-name", ""}, "--server-name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[26] = {"sluice-shim"};
        int argc = 1;
        shim_cli_opts_t o;
        char err[256] = "";
        for (int k = 0; cases[i].argv[k]; k++)
            argv[argc++] = (char *)cases[i].argv[k];
        cr_expect_eq(shim_cli_parse(argc, argv, &o, err, sizeof(err)), -1, "case %zu accepted",
                     i);
        cr_expect_not_null(strstr(err, cases[i].word), "case %zu: '%s' does not mention '%s'", i,
                           err, cases[i].word);
    }
}

Test(cli_opts, connect_timeout_defaults_to_the_mode_and_is_bounded)
{
    shim_cli_opts_t o;
    char err[256] = "";

    cr_assert_eq(PARSE(&o, err, BASE, "--secret", "s"), 0, "%s", err);
    cr_expect_eq(o.connect_timeout_ms, 0, "not given: each mode's own default");
    cr_assert_eq(PARSE(&o, err, BASE, "--secret", "s", "--connect-timeout-ms", "500"), 0, "%s",
                 err);
    cr_expect_eq(o.connect_timeout_ms, 500);
    cr_assert_eq(PARSE(&o, err, "probe", "--gateway", "https://127.0.0.1:8443", "--tenant", "demo",
                       "--kind", "sfu", "--secret", "s", "--connect-timeout-ms=250", "--proxy",
                       "http://127.0.0.1:3128", "--proxy-user-file", "/tmp/u"),
                 0, "%s", err);
    cr_expect_eq(o.probe, 1);
    cr_expect_eq(o.connect_timeout_ms, 250);
    cr_expect_str_eq(o.proxy, "http://127.0.0.1:3128");
    cr_expect_eq(PARSE(&o, err, BASE, "--secret", "s", "--connect-timeout-ms", "99"), -1);
    cr_expect_not_null(strstr(err, "--connect-timeout-ms"), "%s", err);
    cr_expect_eq(PARSE(&o, err, BASE, "--secret", "s", "--connect-timeout-ms", "600001"), -1);
    cr_expect_not_null(strstr(shim_cli_usage(), "--connect-timeout-ms"));
}
