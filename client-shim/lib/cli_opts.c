/*
 * cli_opts.c — sluice-shim option parsing (see shim_cli.h).
 *
 * Accepts "--name value" and "--name=value". Each option may be given once.
 */
#include "shim_cli.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/name.h"

static const char usage[] =
    "Usage: sluice-shim --gateway https://HOST[:PORT] --tenant ID --kind sfu|turn\n"
    "                   --listen ADDR:PORT\n"
    "                   (--username U --credential C | --credential-file F | --secret S)\n"
    "                   [options]\n"
    "\n"
    "Relays UDP between local applications and a sluice gateway: each local source\n"
    "address that sends to --listen gets its own tunnel; replies go back to it.\n"
    "\n"
    "  --gateway URL        gateway, https://host[:port]; IPv6: https://[::1]:8443\n"
    "  --tenant ID          tenant id\n"
    "  --kind sfu|turn      backend kind\n"
    "  --region NAME        region (default: the gateway's own)\n"
    "  --listen ADDR:PORT   local UDP address, e.g. 127.0.0.1:5004 or [::1]:0;\n"
    "                       port 0 picks a free port (printed on stdout)\n"
    "  --username U         tunnel-username from your credential service\n"
    "  --credential C       tunnel-credential from your credential service\n"
    "  --credential-file F  username and credential on two lines; re-read when the\n"
    "                       file changes and on SIGHUP\n"
    "  --secret S           mint credentials locally from the tenant secret\n"
    "                       (development and tests only: the secret is visible in ps)\n"
    "  --hash sha1|sha256   HMAC for --secret (default sha1)\n"
    "  --ttl SECONDS        lifetime of minted credentials (default 3600)\n"
    "  --user ID            user id in minted usernames\n"
    "  --ca-file FILE       PEM trust anchors (default: the system store)\n"
    "  --server-name NAME   name to verify in the certificate (default: URL host)\n"
    "  --proxy URL          proxy for the gateway: http://[user:pass@]host:port,\n"
    "                       https://, socks5h://...; 'none' connects directly\n"
    "                       (default: --proxy-pac, then https_proxy/no_proxy)\n"
    "  --proxy-pac FILE|URL PAC file (or http(s) URL) to choose the proxy; every\n"
    "                       route of its answer is tried in order\n"
    "  --proxy-user-file F  proxy credentials: one line user:password\n"
    "  --connect-timeout-ms MS  deadline for the TCP connect (or the proxy's CONNECT)\n"
    "                       and for the TLS handshake, each (default 10000; probe 5000)\n"
    "  --max-flows N        concurrent local flows (default 64)\n"
    "  --flow-idle-ms MS    close a flow after this silence (default 60000)\n"
    "  --reconnect-min-ms MS  first wait before reconnecting (default 250)\n"
    "  --reconnect-max-ms MS  longest wait between reconnects (default 30000)\n"
    "  --ping-interval-ms MS  PING capsule per tunnel (keepalive, RTT; default 20000)\n"
    "  --queue-bytes N      uplink queue bound per tunnel and class (default 524288)\n"
    "  --direct ADDR:PORT   the backend's public UDP address (numeric): a STUN check\n"
    "                       decides per flow between plain UDP there and the tunnel\n"
    "  --direct-budget-ms MS  time the check may take (default 1000)\n"
    "  --direct-silence-ms MS a direct flow with no reply for this long moves to the\n"
    "                       tunnel (default 5000)\n"
    "  -v, --verbose        log tunnel events on stderr\n"
    "  -h, --help           print this help\n"
    "  -V, --version        print the version\n"
    "\n"
    "A transient failure (gateway or proxy down, unreachable, timing out, a reset,\n"
    "GOAWAY, a gateway shutting down) never ends the shim: it reconnects with\n"
    "back-off and resumes its tunnels. Exit codes: 0 after SIGINT/SIGTERM; 1 local\n"
    "failure; 2 bad usage; 3 gateway certificate or name not trusted, or no HTTP/2;\n"
    "4 tunnel refused with 401/403; 5 proxy refused the CONNECT; 6 unusable proxy\n"
    "settings; 7 proxy authentication failed (407).\n"
    "\n"
    "sluice-shim probe --gateway URL --tenant ID --kind K (credentials) [--direct ADDR:PORT]\n"
    "                  [--ca-file FILE] [--server-name NAME] [--direct-budget-ms MS]\n"
    "                  [--proxy URL | --proxy-pac FILE|URL] [--proxy-user-file F]\n"
    "                  [--connect-timeout-ms MS]\n"
    "Runs only the checks of the fallback ladder and prints which rungs work, with\n"
    "times: UDP to --direct (STUN), proxy discovery, TLS to the gateway, a tunnel open.\n"
    "Exits 0 when some way through works, 1 when none does.\n";

const char *shim_cli_usage(void)
{
    return usage;
}

/* Decimal unsigned in [min, max]. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

enum opt_id {
    O_GATEWAY, O_TENANT, O_KIND, O_REGION, O_LISTEN, O_USERNAME, O_CREDENTIAL, O_SECRET,
    O_HASH, O_TTL, O_USER, O_CA_FILE, O_SERVER_NAME, O_MAX_FLOWS, O_FLOW_IDLE, O_VERBOSE,
    O_HELP, O_VERSION, O_CRED_FILE, O_RECONNECT_MIN, O_RECONNECT_MAX, O_PING, O_QUEUE_BYTES,
    O_DIRECT, O_DIRECT_BUDGET, O_DIRECT_SILENCE, /* fallback ladder */
    O_PROXY, O_PROXY_PAC, O_PROXY_USER_FILE, /* proxies */
    O_CONNECT_TIMEOUT,
    O_COUNT
};

static const struct {
    const char *name;
    const char *short_name;
    int has_arg;
} opt_table[O_COUNT] = {
    [O_GATEWAY] = {"--gateway", NULL, 1},     [O_TENANT] = {"--tenant", NULL, 1},
    [O_KIND] = {"--kind", NULL, 1},           [O_REGION] = {"--region", NULL, 1},
    [O_LISTEN] = {"--listen", NULL, 1},       [O_USERNAME] = {"--username", NULL, 1},
    [O_CREDENTIAL] = {"--credential", NULL, 1}, [O_SECRET] = {"--secret", NULL, 1},
    [O_HASH] = {"--hash", NULL, 1},           [O_TTL] = {"--ttl", NULL, 1},
    [O_USER] = {"--user", NULL, 1},           [O_CA_FILE] = {"--ca-file", NULL, 1},
    [O_SERVER_NAME] = {"--server-name", NULL, 1}, [O_MAX_FLOWS] = {"--max-flows", NULL, 1},
    [O_FLOW_IDLE] = {"--flow-idle-ms", NULL, 1}, [O_VERBOSE] = {"--verbose", "-v", 0},
    [O_HELP] = {"--help", "-h", 0},           [O_VERSION] = {"--version", "-V", 0},
    [O_CRED_FILE] = {"--credential-file", NULL, 1},
    [O_RECONNECT_MIN] = {"--reconnect-min-ms", NULL, 1},
    [O_RECONNECT_MAX] = {"--reconnect-max-ms", NULL, 1},
    [O_PING] = {"--ping-interval-ms", NULL, 1},
    [O_QUEUE_BYTES] = {"--queue-bytes", NULL, 1},
    [O_DIRECT] = {"--direct", NULL, 1},       [O_DIRECT_BUDGET] = {"--direct-budget-ms", NULL, 1},
    [O_DIRECT_SILENCE] = {"--direct-silence-ms", NULL, 1},
    [O_PROXY] = {"--proxy", NULL, 1},         [O_PROXY_PAC] = {"--proxy-pac", NULL, 1},
    [O_PROXY_USER_FILE] = {"--proxy-user-file", NULL, 1},
    [O_CONNECT_TIMEOUT] = {"--connect-timeout-ms", NULL, 1},
};

/* The fallback ladder's options (docs/shim.md, "Fallback ladder"). */
static int validate_direct(shim_cli_opts_t *o, const char *val[O_COUNT], char *err,
                           size_t errlen)
{
    uint64_t v;

    o->direct_str = val[O_DIRECT];
    if (o->direct_str) {
        if (shim_addr_parse(o->direct_str, &o->direct, &o->direct_len, err, errlen) < 0) {
            char tmp[256];
            snprintf(tmp, sizeof(tmp), "--direct: %s", err ? err : "");
            return shim__errf(err, errlen, "%s", tmp);
        }
        /* sin_port and sin6_port sit at the same offset. */
        if (((const struct sockaddr_in *)(const void *)&o->direct)->sin_port == 0)
            return shim__errf(err, errlen, "--direct: port 0");
    }
    o->direct_budget_ms = SHIM_CLI_DEFAULT_DIRECT_BUDGET_MS;
    if (val[O_DIRECT_BUDGET]) {
        if (parse_uint(val[O_DIRECT_BUDGET], 100, 60000, &v) < 0)
            return shim__errf(err, errlen, "--direct-budget-ms: expected 100 to 60000");
        o->direct_budget_ms = (uint32_t)v;
    }
    o->direct_silence_ms = SHIM_CLI_DEFAULT_DIRECT_SILENCE_MS;
    if (val[O_DIRECT_SILENCE]) {
        if (parse_uint(val[O_DIRECT_SILENCE], 200, 600000, &v) < 0)
            return shim__errf(err, errlen, "--direct-silence-ms: expected 200 to 600000");
        o->direct_silence_ms = (uint32_t)v;
    }
    if (!o->direct_str && (val[O_DIRECT_BUDGET] || val[O_DIRECT_SILENCE]))
        return shim__errf(err, errlen, "--direct-budget-ms and --direct-silence-ms need --direct");
    return 0;
}

/* Finds the option named by arg ("--name" or "--name=value"); *inline_val
 * gets the text after '=' or NULL. Returns its id or -1. */
static int opt_lookup(const char *arg, const char **inline_val)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);

    *inline_val = eq ? eq + 1 : NULL;
    for (int i = 0; i < O_COUNT; i++) {
        if (strlen(opt_table[i].name) == n && strncmp(arg, opt_table[i].name, n) == 0)
            return i;
        if (opt_table[i].short_name && !eq && strcmp(arg, opt_table[i].short_name) == 0)
            return i;
    }
    return -1;
}

/* Checks the combination of options once all are read. */
static int validate(shim_cli_opts_t *o, const char *val[O_COUNT], char *err, size_t errlen)
{
    static const enum opt_id required[] = {O_GATEWAY, O_TENANT, O_KIND, O_LISTEN};
    uint64_t v;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!val[required[i]] && !(o->probe && required[i] == O_LISTEN))
            return shim__errf(err, errlen, "%s is required (see --help)",
                        opt_table[required[i]].name);

    o->gateway = val[O_GATEWAY];
    if (shim_url_parse(o->gateway, o->gw_host, sizeof(o->gw_host), &o->gw_port, err,
                       errlen) < 0)
        return -1;

    o->tenant = val[O_TENANT];
    if (!name_valid(o->tenant, strlen(o->tenant)))
        return shim__errf(err, errlen,
                          "--tenant: expected 1 to 64 letters, digits, '.', '_' or '-'");
    o->kind = val[O_KIND];
    if (strcmp(o->kind, "sfu") != 0 && strcmp(o->kind, "turn") != 0)
        return shim__errf(err, errlen, "--kind: expected sfu or turn, not '%s'", o->kind);
    o->region = val[O_REGION];
    if (o->region && !name_valid(o->region, strlen(o->region)))
        return shim__errf(err, errlen,
                          "--region: expected 1 to 64 letters, digits, '.', '_' or '-'");

    o->listen_str = val[O_LISTEN];
    if (o->listen_str && shim_addr_parse(o->listen_str, &o->listen, &o->listen_len, err, errlen) < 0) {
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "--listen: %s", err ? err : "");
        return shim__errf(err, errlen, "%s", tmp);
    }

    o->username = val[O_USERNAME];
    o->credential = val[O_CREDENTIAL];
    o->secret = val[O_SECRET];
    o->credential_file = val[O_CRED_FILE];
    if (o->credential_file) {
        if (o->username || o->credential || o->secret)
            return shim__errf(err, errlen, "--credential-file cannot be combined with "
                                           "--username/--credential/--secret");
        if (!*o->credential_file)
            return shim__errf(err, errlen, "--credential-file: empty");
        if (val[O_HASH] || val[O_TTL] || val[O_USER])
            return shim__errf(err, errlen, "--hash, --ttl and --user only apply with --secret");
    } else if (o->secret) {
        if (o->username || o->credential)
            return shim__errf(err, errlen, "--secret cannot be combined with --username/--credential");
        if (!*o->secret)
            return shim__errf(err, errlen, "--secret: empty");
    } else {
        if (!o->username || !o->credential)
            return shim__errf(err, errlen, "give --username and --credential, "
                                           "--credential-file, or --secret to mint them");
        if (val[O_HASH] || val[O_TTL] || val[O_USER])
            return shim__errf(err, errlen, "--hash, --ttl and --user only apply with --secret");
    }
    o->hash = SLUICE_HASH_SHA1;
    if (val[O_HASH]) {
        if (strcmp(val[O_HASH], "sha1") == 0)
            o->hash = SLUICE_HASH_SHA1;
        else if (strcmp(val[O_HASH], "sha256") == 0)
            o->hash = SLUICE_HASH_SHA256;
        else
            return shim__errf(err, errlen, "--hash: expected sha1 or sha256, not '%s'", val[O_HASH]);
    }
    o->ttl = SHIM_CLI_DEFAULT_TTL;
    if (val[O_TTL]) {
        if (parse_uint(val[O_TTL], 1, 10u * 365 * 86400, &v) < 0)
            return shim__errf(err, errlen, "--ttl: expected seconds between 1 and 315360000");
        o->ttl = v;
    }
    o->user = val[O_USER];
    if (o->user) {
        for (const char *c = o->user; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return shim__errf(err, errlen, "--user: control characters are not allowed");
        if (strlen(o->user) > 200)
            return shim__errf(err, errlen, "--user: longer than 200 bytes");
    }

    o->ca_file = val[O_CA_FILE];
    o->server_name = val[O_SERVER_NAME];
    if (o->server_name && !*o->server_name)
        return shim__errf(err, errlen, "--server-name: empty");

    o->proxy = val[O_PROXY];
    o->proxy_pac = val[O_PROXY_PAC];
    o->proxy_user_file = val[O_PROXY_USER_FILE];
    if ((o->proxy && !*o->proxy) || (o->proxy_pac && !*o->proxy_pac) ||
        (o->proxy_user_file && !*o->proxy_user_file))
        return shim__errf(err, errlen, "--proxy, --proxy-pac and --proxy-user-file take a "
                                       "non-empty value");
    if (o->proxy && o->proxy_pac)
        return shim__errf(err, errlen, "give --proxy or --proxy-pac, not both");
    o->connect_timeout_ms = 0; /* the mode's default */
    if (val[O_CONNECT_TIMEOUT]) {
        if (parse_uint(val[O_CONNECT_TIMEOUT], 100, 600000, &v) < 0)
            return shim__errf(err, errlen, "--connect-timeout-ms: expected 100 to 600000");
        o->connect_timeout_ms = (uint32_t)v;
    }

    o->max_flows = SHIM_CLI_DEFAULT_MAX_FLOWS;
    if (val[O_MAX_FLOWS]) {
        if (parse_uint(val[O_MAX_FLOWS], 1, SHIM_CLI_MAX_MAX_FLOWS, &v) < 0)
            return shim__errf(err, errlen, "--max-flows: expected 1 to %u", SHIM_CLI_MAX_MAX_FLOWS);
        o->max_flows = (unsigned)v;
    }
    o->flow_idle_ms = SHIM_CLI_DEFAULT_FLOW_IDLE_MS;
    if (val[O_FLOW_IDLE]) {
        if (parse_uint(val[O_FLOW_IDLE], 100, 86400000u, &v) < 0)
            return shim__errf(err, errlen, "--flow-idle-ms: expected 100 to 86400000");
        o->flow_idle_ms = (uint32_t)v;
    }
    o->reconnect_min_ms = SHIM_CLI_DEFAULT_RECONNECT_MIN_MS;
    if (val[O_RECONNECT_MIN]) {
        if (parse_uint(val[O_RECONNECT_MIN], 10, 600000, &v) < 0)
            return shim__errf(err, errlen, "--reconnect-min-ms: expected 10 to 600000");
        o->reconnect_min_ms = (uint32_t)v;
    }
    o->reconnect_max_ms = SHIM_CLI_DEFAULT_RECONNECT_MAX_MS;
    if (val[O_RECONNECT_MAX]) {
        if (parse_uint(val[O_RECONNECT_MAX], 10, 3600000, &v) < 0)
            return shim__errf(err, errlen, "--reconnect-max-ms: expected 10 to 3600000");
        o->reconnect_max_ms = (uint32_t)v;
    }
    if (o->reconnect_max_ms < o->reconnect_min_ms)
        return shim__errf(err, errlen, "--reconnect-max-ms is below --reconnect-min-ms");
    o->ping_interval_ms = SHIM_CLI_DEFAULT_PING_MS;
    if (val[O_PING]) {
        if (parse_uint(val[O_PING], 10, 3600000, &v) < 0)
            return shim__errf(err, errlen, "--ping-interval-ms: expected 10 to 3600000");
        o->ping_interval_ms = (uint32_t)v;
    }
    o->queue_bytes = SHIM_CLI_DEFAULT_QUEUE_BYTES;
    if (val[O_QUEUE_BYTES]) {
        if (parse_uint(val[O_QUEUE_BYTES], 65536, 64u * 1024 * 1024, &v) < 0)
            return shim__errf(err, errlen, "--queue-bytes: expected 65536 to 67108864");
        o->queue_bytes = (size_t)v;
    }
    return validate_direct(o, val, err, errlen);
}

int shim_cli_parse(int argc, char *const argv[], shim_cli_opts_t *o, char *err, size_t errlen)
{
    const char *val[O_COUNT] = {0};
    int seen[O_COUNT] = {0};

    memset(o, 0, sizeof(*o));
    o->probe = argc > 1 && strcmp(argv[1], "probe") == 0;
    for (int i = 1 + o->probe; i < argc; i++) {
        const char *arg = argv[i], *inline_val;
        int id = opt_lookup(arg, &inline_val);

        if (id < 0)
            return shim__errf(err, errlen, "unknown option '%s' (see --help)", arg);
        if (seen[id]++)
            return shim__errf(err, errlen, "%s given twice", opt_table[id].name);
        if (!opt_table[id].has_arg) {
            if (inline_val)
                return shim__errf(err, errlen, "%s takes no value", opt_table[id].name);
            val[id] = "";
            continue;
        }
        if (inline_val) {
            val[id] = inline_val;
        } else {
            if (i + 1 >= argc)
                return shim__errf(err, errlen, "%s needs a value", opt_table[id].name);
            val[id] = argv[++i];
        }
    }
    o->help = val[O_HELP] != NULL;
    o->version = val[O_VERSION] != NULL;
    o->verbose = val[O_VERBOSE] != NULL;
    if (o->help || o->version)
        return 0;
    return validate(o, val, err, errlen);
}
