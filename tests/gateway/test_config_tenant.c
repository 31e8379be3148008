/* test_config_tenant.c — gateway/config_tenant.c: tenants (secrets, hash,
 * ttl, regions, kinds, limits) and the credential work they set, the tenant
 * store (inline, file with config_retenant, etcd documents with
 * config_parse_tenants) and $.admin, with every documented error. Under ASan
 * every error path is also a leak check. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/config.h"
#include "config_doc.h"

/* ---- tenants: fields, credential work, kinds ----------------------------- */

/* The credential work every request is padded to (request.c). */
Test(config_tenant, credential_work_is_the_largest_tenant)
{
    static const struct {
        const char *tenants;
        size_t max_secrets;
        enum cred_hash hash;
    } cases[] = {
        {"[]", 1, CRED_SHA1},
        {"[{'id':'a','secrets':['1'],'regions':['local']}]", 1, CRED_SHA1},
        {"[{'id':'a','secrets':['1','2'],'regions':['local']},"
         "{'id':'b','secrets':['1','2','3','4','5'],'hash':'sha256','regions':['local']},"
         "{'id':'c','secrets':['1'],'regions':['local']}]",
         5, CRED_SHA1},
        {"[{'id':'a','secrets':['1'],'hash':'sha256','regions':['local']},"
         "{'id':'b','secrets':['1','2','3'],'regions':['local']}]",
         3, CRED_SHA256},
        {"[{'id':'a','secrets':['1'],'hash':'sha256','regions':['local']}]", 1, CRED_SHA256},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_t *cfg = parse_ok((doc_t){.tenants = cases[i].tenants});
        cr_expect_eq(cfg->max_secrets, cases[i].max_secrets, "case %zu", i);
        cr_expect_eq(cfg->decoy_hash, cases[i].hash, "case %zu", i);
        config_unref(cfg);
    }
}

Test(config_tenant, kinds)
{
    cr_assert_eq(config_kind_parse("sfu", 3), TUNNEL_KIND_SFU);
    cr_assert_eq(config_kind_parse("turn", 4), TUNNEL_KIND_TURN);
    cr_assert_eq(config_kind_parse("turnx", 4), TUNNEL_KIND_TURN);
    cr_assert_eq(config_kind_parse("turn", 3), -1);
    cr_assert_eq(config_kind_parse("SFU", 3), -1);
    cr_assert_eq(config_kind_parse("", 0), -1);
    cr_assert_str_eq(config_kind_name(TUNNEL_KIND_SFU), "sfu");
    cr_assert_str_eq(config_kind_name(TUNNEL_KIND_TURN), "turn");
}

Test(config_tenant, error_secrets_empty)
{
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':['local']},"
                                    "{'id':'b','secrets':[],'regions':['local']}]"},
                 "$.tenants[1].secrets: expected a non-empty array of strings, got an empty array");
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':'s','regions':['local']}]"},
                 "$.tenants[0].secrets: expected a non-empty array of strings, got \"s\"");
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s',''],'regions':['local']}]"},
                 "$.tenants[0].secrets[1]: expected a non-empty string, got \"\"");
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s',7],'regions':['local']}]"},
                 "$.tenants[0].secrets[1]: expected a non-empty string, got 7");
    expect_error((doc_t){.tenants = "[{'id':'a','regions':['local']}]"},
                 "$.tenants[0].secrets: required key is missing");
}

/* One tenant, "a", with extra keys or its own regions. */
#define TENANT(extra) \
    (doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':['local']," extra "}]"}
#define TENANT_R(regions) (doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':" regions "}]"}

Test(config_tenant, error_tenant_fields)
{
    expect_error(TENANT("'hash':'md5'"),
                 "$.tenants[0].hash: expected \"sha1\" or \"sha256\", got \"md5\"");
    expect_error(TENANT("'hash':1"),
                 "$.tenants[0].hash: expected \"sha1\" or \"sha256\", got 1");
    expect_error(TENANT("'max_ttl':0"),
                 "$.tenants[0].max_ttl: expected an integer from 1 to 31536000, got 0");
    expect_error(TENANT("'max_ttl':31536001"),
                 "$.tenants[0].max_ttl: expected an integer from 1 to 31536000, got 31536001");
    expect_error(TENANT_R("['local','mars']"),
                 "$.tenants[0].regions[1]: \"mars\" is not a key of $.regions");
    expect_error(TENANT_R("[]"),
                 "$.tenants[0].regions: expected a non-empty array of region names");
    expect_error(TENANT_R("'local'"),
                 "$.tenants[0].regions: expected a non-empty array of region names, got \"local\"");
    expect_error(TENANT_R("[1]"),
                 "$.tenants[0].regions[0]: expected a region name, got 1");
    expect_error(TENANT("'kinds':['sfu','video']"),
                 "$.tenants[0].kinds[1]: expected \"sfu\" or \"turn\", got \"video\"");
    expect_error(TENANT("'kinds':[]"),
                 "$.tenants[0].kinds: expected a non-empty array of \"sfu\" and \"turn\"");
    expect_error(TENANT("'kinds':'sfu'"),
                 "$.tenants[0].kinds: expected a non-empty array of \"sfu\" and \"turn\", "
                 "got \"sfu\"");
}

/* ---- tenants[i].limits (issue 7 §3) -------------------------------------- */

/* A tenant limit by the name docs/configuration.md gives it, read through
 * config_tenant_limit (the admin API's and sluicectl's view). */
typedef struct tlimit_want {
    const char *name;
    uint64_t want;
} tlimit_want_t;

static void expect_tenant_limits(const cfg_tenant_limits_t *l, const tlimit_want_t *w, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        size_t i = 0;
        uint64_t val = 0;
        while (i < config_tenant_limit_count() &&
               strcmp(config_tenant_limit(i, l, &val), w[k].name))
            i++;
        cr_assert_lt(i, config_tenant_limit_count(), "no tenant limit %s", w[k].name);
        cr_expect_eq(val, w[k].want, "%s is %llu, want %llu", w[k].name, (unsigned long long)val,
                     (unsigned long long)w[k].want);
    }
}

Test(config_tenant, tenant_limits_default_to_none)
{
    static const tlimit_want_t want[] = {
        {"up_packets_s", 0},  {"up_bits_s", 0},         {"down_packets_s", 0},
        {"down_bits_s", 0},   {"max_tunnels", 0},       {"max_tunnels_per_user", 0},
        {"bits_s", 0},        {"signal_packets_s", 50}, {"signal_packets_burst", 50},
        {"retry_after_s", 5},
    };
    config_t *cfg = parse_ok((doc_t){0});
    expect_tenant_limits(&cfg->tenants[0].limits, want, sizeof want / sizeof want[0]);
    config_unref(cfg);
}

Test(config_tenant, tenant_limits_parse_and_burst_defaults)
{
    /* A burst left out is one second of its rate: up_bits_burst,
     * down_packets_burst, bits_burst; signal_packets_burst keeps its 50. */
    static const tlimit_want_t want[] = {
        {"up_packets_s", 100},      {"up_packets_burst", 20},    {"up_bits_s", 2000000},
        {"up_bits_burst", 2000000}, {"down_packets_s", 300},     {"down_packets_burst", 300},
        {"down_bits_burst", 96000}, {"signal_packets_s", 10},    {"signal_packets_burst", 50},
        {"max_tunnels", 3},         {"max_tunnels_per_user", 1}, {"bits_s", 8000000},
        {"bits_burst", 8000000},    {"retry_after_s", 30},
    };
    config_t *cfg = parse_ok(
        (doc_t){.tenants = "[{'id':'demo','secrets':['s'],'regions':['local'],'limits':{"
                           "'up_packets_s':100,'up_packets_burst':20,'up_bits_s':2000000,"
                           "'down_packets_s':300,'down_bits_s':4000000,'down_bits_burst':96000,"
                           "'signal_packets_s':10,'max_tunnels':3,'max_tunnels_per_user':1,"
                           "'bits_s':8000000,'retry_after_s':30}}]"});
    expect_tenant_limits(&cfg->tenants[0].limits, want, sizeof want / sizeof want[0]);
    config_unref(cfg);
}

Test(config_tenant, error_tenant_limits)
{
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':['local'],"
                                    "'limits':{'up_packet_s':1}}]"},
                 "$.tenants[0].limits.up_packet_s: unknown key (expected one of: up_packets_s,");
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':['local']},"
                                    "{'id':'b','secrets':['s'],'regions':['local'],"
                                    "'limits':{'max_tunnels':-1}}]"},
                 "$.tenants[1].limits.max_tunnels: expected an integer from 0 to 1000000, got -1");
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':['local'],"
                                    "'limits':[]}]"},
                 "$.tenants[0].limits: expected an object, got an empty array");
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':['local'],"
                                    "'limits':{'retry_after_s':3601}}]"},
                 "$.tenants[0].limits.retry_after_s: expected an integer from 0 to 3600, got 3601");
}

/* ---- tenant_store: tenants from a store (gateway/etcd.c) ----------------- */

#define ETCD_STORE "'tenant_store':{'type':'etcd','endpoints':['http://127.0.0.1:2379/'],'prefix':'/sluice/tenants/'}"

Test(config_tenant, tenant_store_etcd_takes_tenants_from_documents)
{
    char *json = render((doc_t){.tenants = OMIT, .extra = ETCD_STORE});
    char err[512];
    config_t *base = parse_raw(json, strlen(json), err, sizeof err);
    cr_assert_not_null(base, "%s", err);
    cr_assert_eq(base->store.type, CFG_STORE_ETCD);
    cr_assert_eq(base->store.nendpoints, 1);
    cr_assert_str_eq(base->store.endpoints[0], "http://127.0.0.1:2379");
    cr_assert_str_eq(base->store.prefix, "/sluice/tenants/");
    cr_assert_eq(base->ntenants, 0);
    config_unref(base);

    char *b = dq("{'id':'bob','secrets':['s'],'regions':['local'],'kinds':['turn']}");
    char *a = dq("{'id':'acme','secrets':['s1','s2'],'regions':['local']}");
    const char *docs[] = {b, a}, *labels[] = {"key /t/bob", "key /t/acme"};
    size_t lens[] = {strlen(b), strlen(a)};
    config_t *cfg = config_parse_tenants(json, strlen(json), "/base", docs, lens, labels, 2, err,
                                         sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_eq(cfg->ntenants, 2);
    cr_assert_str_eq(cfg->tenants[0].id, "acme"); /* sorted */
    cr_assert_eq(cfg->tenants[0].nsecrets, 2);
    cr_assert_eq(cfg->tenants[1].kinds, 1u << TUNNEL_KIND_TURN);
    cr_assert_eq(cfg->max_secrets, 2);
    /* etcd tenants are not written through config_retenant (the admin API's path). */
    const char *doc = "{\"revision\":1,\"tenants\":[]}";
    cr_assert_null(config_retenant(cfg, doc, strlen(doc), err, sizeof err));
    cr_assert_str_eq(err, "the tenants are in etcd ($.tenant_store.type \"etcd\")");
    config_unref(cfg);
    free(json);

    /* Tenant documents for a config whose tenants are elsewhere are refused. */
    json = render((doc_t){.tenants = OMIT,
                          .extra = "'tenant_store':{'type':'file','path':'/nonexistent/t.json'}"});
    cr_assert_null(config_parse_tenants(json, strlen(json), "/base", docs, lens, labels, 2, err,
                                        sizeof err));
    cr_assert_str_eq(err, "$: tenant documents were given, but $.tenant_store is not etcd");
    free(a);
    free(b);
    free(json);
}

static void expect_tenant_error(const char *tenant_a, const char *tenant_b, const char *want)
{
    char *json = render((doc_t){.tenants = OMIT, .extra = ETCD_STORE});
    char *a = dq(tenant_a), *b = dq(tenant_b), err[512];
    const char *docs[] = {a, b}, *labels[] = {"key /t/a", "key /t/b"};
    size_t lens[] = {strlen(a), strlen(b)};
    config_t *cfg = config_parse_tenants(json, strlen(json), "/base", docs, lens, labels, 2, err,
                                         sizeof err);
    cr_assert_null(cfg);
    cr_assert(!strncmp(err, want, strlen(want)), "error\n  %s\ndoes not start with\n  %s", err,
              want);
    free(a);
    free(b);
    free(json);
}

Test(config_tenant, tenant_store_errors_name_the_key_and_path)
{
    const char *ok = "{'id':'a','secrets':['s'],'regions':['local']}";
    expect_tenant_error(ok, "{'id':'b','secrets':[],'regions':['local']}",
                        "key /t/b: $.secrets: expected a non-empty array of strings, got an "
                        "empty array");
    expect_tenant_error(ok, "{'id':'b','secrets':['s'],'regions':['mars']}",
                        "key /t/b: $.regions[0]: \"mars\" is not a key of $.regions");
    expect_tenant_error(ok, ok, "key /t/b: $.id: duplicate tenant id \"a\" (also key /t/a)");
    expect_tenant_error(ok, "{'id':'b',", "key /t/b: invalid JSON");
    expect_error((doc_t){.extra = ETCD_STORE},
                 "$.tenants: not allowed with $.tenant_store: the tenants live in etcd under "
                 "/sluice/tenants/");
    expect_error((doc_t){.tenants = OMIT, .extra = "'tenant_store':{'type':'zk'}"},
                 "$.tenant_store.type: expected \"file\" or \"etcd\", got \"zk\"");
    expect_error((doc_t){.tenants = OMIT,
                         .extra = "'tenant_store':{'type':'etcd','endpoints':['127.0.0.1:2379'],"
                                  "'prefix':'/p/'}"},
                 "$.tenant_store.endpoints[0]: expected an http:// or https:// URL");
    expect_error((doc_t){.tenants = OMIT,
                         .extra = "'tenant_store':{'type':'etcd','endpoints':['http://a:1']}"},
                 "$.tenant_store.prefix: required key is missing");
    expect_error((doc_t){.tenants = OMIT, .extra = "'tenant_store':{'type':'file'}"},
                 "$.tenant_store.path: required key is missing");
    expect_error((doc_t){.tenants = OMIT,
                         .extra = "'tenant_store':{'type':'etcd','path':'t.json',"
                                  "'endpoints':['http://a:1'],'prefix':'/p/'}"},
                 "$.tenant_store.path: only for type \"file\"");
    expect_error((doc_t){.tenants = OMIT,
                         .extra = "'tenant_store':{'type':'file','path':'t.json','prefix':'/p/'}"},
                 "$.tenant_store.prefix: only for type \"etcd\"");
    expect_error((doc_t){.tenants = OMIT}, "$.tenants: required key is missing");
}

/* ---- admin and tenant_store ---------------------------------------------- */

Test(config_tenant, admin_tokens_and_listen)
{
    config_t *cfg = parse_ok((doc_t){
        .extra = "'admin':{'listen':'127.0.0.1:0','tokens':[{'token':'0123456789abcdef'},"
                 "{'token':'fedcba9876543210','tenant':'demo'}]}"});
    cr_assert(cfg->admin.enabled);
    cr_assert_eq(cfg->admin.ntokens, 2);
    cr_assert_str_eq(cfg->admin.tokens[0].token, "0123456789abcdef");
    cr_assert_null(cfg->admin.tokens[0].tenant);
    cr_assert_str_eq(cfg->admin.tokens[1].tenant, "demo");
    config_unref(cfg);

    expect_error((doc_t){.listen = "['127.0.0.1:8443']",
                         .extra = "'admin':{'listen':'127.0.0.1:8443','tokens':"
                                  "[{'token':'0123456789abcdef'}]}"},
                 "$.admin.listen: \"127.0.0.1:8443\" is a public listen address ($.listen[0])");
    expect_error((doc_t){.extra = "'admin':{'listen':'127.0.0.1:0','tokens':[{'token':'short'}]}"},
                 "$.admin.tokens[0].token: a token must be at least 16 characters");
    expect_error((doc_t){.extra = "'admin':{'listen':'127.0.0.1:0','tokens':[]}"},
                 "$.admin.tokens: expected a non-empty array of token objects");
    expect_error((doc_t){.extra = "'admin':{'listen':'127.0.0.1:0'}"},
                 "$.admin.tokens: required key is missing");
}

Test(config_tenant, tenant_store_file_and_retenant)
{
    make_tmpdir();
    char path[128], tpath[128], err[512];
    snprintf(path, sizeof path, "%s/gw.json", tmpdir);
    snprintf(tpath, sizeof tpath, "%s/t.json", tmpdir);
    char *json = render((doc_t){.tenants = OMIT,
                                .extra = "'tenant_store':{'type':'file','path':'t.json'}"});
    write_file(path, json, strlen(json));
    free(json);
    json = dq("{'revision':4,'tenants':[{'id':'demo','secrets':['s'],'regions':['local']}]}");
    write_file(tpath, json, strlen(json));
    free(json);

    config_t *cfg = config_load(path, err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_eq(cfg->store.type, CFG_STORE_FILE);
    cr_assert_str_eq(cfg->store.path, tpath);
    cr_assert_eq(cfg->tenants_revision, 4);
    cr_assert_eq(cfg->ntenants, 1);

    /* Another document, same config: the admin API's next snapshot. A tenant
     * may have no region there (switched off everywhere). */
    char *doc = dq("{'revision':5,'tenants':[{'id':'demo','secrets':['s'],'regions':[]},"
                   "{'id':'more','secrets':['m'],'regions':['local']}]}");
    config_t *next = config_retenant(cfg, doc, strlen(doc), err, sizeof err);
    free(doc);
    cr_assert_not_null(next, "%s", err);
    cr_assert_eq(next->tenants_revision, 5);
    cr_assert_eq(next->ntenants, 2);
    cr_assert_not(config_tenant_in_region(config_tenant(next, "demo", 4), "local"));
    config_unref(next);

    doc = dq("{'revision':5,'tenants':[{'id':'demo','secrets':['s'],'regions':['mars']}]}");
    cr_assert_null(config_retenant(cfg, doc, strlen(doc), err, sizeof err));
    free(doc);
    cr_assert(strstr(err, "t.json: $.tenants[0].regions[0]: \"mars\" is not a key of $.regions"),
              "%s", err);
    config_unref(cfg);

    /* Errors: tenants in both places, a missing store file. */
    json = render((doc_t){.extra = "'tenant_store':{'type':'file','path':'t.json'}"});
    write_file(path, json, strlen(json));
    free(json);
    cr_assert_null(config_load(path, err, sizeof err));
    cr_assert(strstr(err, "$.tenants: not allowed with $.tenant_store"), "%s", err);
    cr_assert_eq(unlink(tpath), 0);
    json = render((doc_t){.tenants = OMIT,
                          .extra = "'tenant_store':{'type':'file','path':'t.json'}"});
    write_file(path, json, strlen(json));
    free(json);
    cr_assert_null(config_load(path, err, sizeof err));
    cr_assert(strstr(err, "$.tenant_store.path: tenant store"), "%s", err);
    cr_assert(strstr(err, "No such file"), "%s", err);
    remove_tree();

    expect_error((doc_t){.extra = "'tenant_store':{'type':'etcd3'}"},
                 "$.tenant_store.type: expected \"file\" or \"etcd\", got \"etcd3\"");
}
