/* test_config.c — gateway/config.c: a full round trip, the defaults, every
 * documented error (message and JSON path), file loading, lookups and
 * reference counting. Tenants, their store and $.admin (config_tenant.c) are
 * in test_config_tenant.c. Under ASan every error path is also a leak check. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../gateway/config.h"
#include "../../proto/pktq.h"
#include "config_doc.h"

/* ---- helpers -------------------------------------------------------------- */

static void expect_error_q(const char *single_quoted, const char *want)
{
    char *json = dq(single_quoted);
    expect_raw_error(json, strlen(json), want);
    free(json);
}

static const char *addr(const cfg_addr_t *a, char *buf, size_t cap)
{
    return config_addr_str((const struct sockaddr *)&a->sa, buf, cap);
}

static int is_loopback(const cfg_addr_t *a)
{
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->sa;
        return a->len == sizeof *s && (ntohl(s->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->sa;
        return a->len == sizeof *s && IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
    }
    return 0;
}

static uint16_t port_of(const cfg_addr_t *a)
{
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

/* The repository root, from this file's path as the compiler saw it. */
static void repo_path(char *out, size_t cap, const char *rel)
{
    const char *me = __FILE__, *tail = strstr(me, "tests/gateway/test_config.c");
    int n = tail ? (int)(tail - me) : 0;
    snprintf(out, cap, "%.*s%s", n, me, rel);
}

/* ---- valid documents ----------------------------------------------------- */

static const char full_doc[] =
    "{"
    " 'listen': ['127.0.0.1:8443', '[::1]:8444'],"
    " 'tls': { 'cert': 'certs/c.pem', 'key': '/etc/sluice/k.pem' },"
    " 'region': 'eu',"
    " 'echo': '127.0.0.1:7000',"
    " 'limits': {"
    "   'max_capsule': 1500, 'max_streams': 7, 'max_connections': 77,"
    "   'media_queue_bytes': 4096, 'media_queue_age_ms': 150, 'signal_queue_bytes': 8192,"
    "   'tunnel_idle_ms': 1234, 'handshake_timeout_ms': 2345, 'header_timeout_ms': 3456,"
    "   'conn_idle_ms': 4567, 'drain_timeout_ms': 5678 },"
    " 'regions': {"
    "   'eu': { 'sfu': ['10.0.0.1:5000', '[2001:db8::1]:5001'], 'turn': ['localhost:3479'] },"
    "   'us-east.1': { 'sfu': ['builtin:echo'], 'turn': [] }"
    " },"
    " 'tenants': ["
    "   { 'id': 'zeta', 'secrets': ['new-secret', 'old-secret'], 'hash': 'sha256',"
    "     'max_ttl': 3600, 'regions': ['eu', 'us-east.1'], 'kinds': ['turn'] },"
    "   { 'id': 'demo', 'secrets': ['dev-only-secret'], 'hash': 'sha1', 'max_ttl': 86400,"
    "     'regions': ['eu'], 'kinds': ['sfu', 'turn'] }"
    " ]"
    "}";

Test(config, full_round_trip)
{
    char *json = dq(full_doc), err[512], b[128];
    config_t *cfg = config_parse(json, strlen(json), "/srv/conf", err, sizeof err);
    free(json);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_eq(cfg->_refs, 1);

    cr_assert_eq(cfg->nlisten, 2);
    cr_assert_str_eq(addr(&cfg->listen[0], b, sizeof b), "127.0.0.1:8443");
    cr_assert_eq(cfg->listen[0].len, sizeof(struct sockaddr_in));
    cr_assert_eq(cfg->listen[0].builtin_echo, 0);
    cr_assert_str_eq(addr(&cfg->listen[1], b, sizeof b), "[::1]:8444");
    cr_assert_eq(cfg->listen[1].sa.ss_family, AF_INET6);
    cr_assert_eq(cfg->listen[1].len, sizeof(struct sockaddr_in6));

    cr_assert_str_eq(cfg->cert_file, "/srv/conf/certs/c.pem");
    cr_assert_str_eq(cfg->key_file, "/etc/sluice/k.pem");
    cr_assert_str_eq(cfg->region, "eu");
    cr_assert_str_eq(addr(&cfg->echo, b, sizeof b), "127.0.0.1:7000");
    cr_assert_eq(cfg->has_echo, 1);

    const cfg_limits_t *l = &cfg->limits;
    cr_assert_eq(l->max_capsule, 1500);
    cr_assert_eq(l->max_streams, 7);
    cr_assert_eq(l->max_connections, 77);
    cr_assert_eq(l->media_queue_bytes, 4096);
    cr_assert_eq(l->media_queue_age_ms, 150);
    cr_assert_eq(l->signal_queue_bytes, 8192);
    cr_assert_eq(l->tunnel_idle_ms, 1234);
    cr_assert_eq(l->handshake_timeout_ms, 2345);
    cr_assert_eq(l->header_timeout_ms, 3456);
    cr_assert_eq(l->conn_idle_ms, 4567);
    cr_assert_eq(l->drain_timeout_ms, 5678);

    cr_assert_eq(cfg->nregions, 2);
    const cfg_region_t *eu = config_region(cfg, "eu", 2);
    cr_assert_not_null(eu);
    cr_assert_str_eq(eu->name, "eu");
    const cfg_pool_t *sfu = &eu->pools[TUNNEL_KIND_SFU], *turn = &eu->pools[TUNNEL_KIND_TURN];
    cr_assert_eq(sfu->n, 2);
    cr_assert_str_eq(addr(&sfu->addrs[0], b, sizeof b), "10.0.0.1:5000");
    cr_assert_str_eq(addr(&sfu->addrs[1], b, sizeof b), "[2001:db8::1]:5001");
    cr_assert_eq(sfu->addrs[0].builtin_echo, 0);
    cr_assert_eq(turn->n, 1);
    cr_assert(is_loopback(&turn->addrs[0]), "localhost resolved to %s",
              addr(&turn->addrs[0], b, sizeof b));
    cr_assert_eq(port_of(&turn->addrs[0]), 3479);

    const cfg_region_t *us = config_region(cfg, "us-east.1", 9);
    cr_assert_not_null(us);
    cr_assert_str_eq(us->name, "us-east.1");
    cr_assert_eq(us->pools[TUNNEL_KIND_SFU].n, 1);
    cr_assert_eq(us->pools[TUNNEL_KIND_SFU].addrs[0].builtin_echo, 1);
    cr_assert_eq(us->pools[TUNNEL_KIND_SFU].addrs[0].len, 0);
    cr_assert_eq(us->pools[TUNNEL_KIND_TURN].n, 0, "an empty pool means no backend");
    cr_assert_null(us->pools[TUNNEL_KIND_TURN].addrs);

    cr_assert_eq(cfg->ntenants, 2);
    cr_assert_str_eq(cfg->tenants[0].id, "demo", "tenants are sorted by id");
    cr_assert_str_eq(cfg->tenants[1].id, "zeta");
    const cfg_tenant_t *z = config_tenant(cfg, "zeta", 4);
    cr_assert_eq(z, &cfg->tenants[1]);
    cr_assert_eq(z->nsecrets, 2);
    cr_assert_eq(z->secrets[0].len, 10);
    cr_assert_eq(memcmp(z->secrets[0].key, "new-secret", 10), 0);
    cr_assert_eq(z->secrets[1].len, 10);
    cr_assert_eq(memcmp(z->secrets[1].key, "old-secret", 10), 0);
    cr_assert_eq(z->hash, CRED_SHA256);
    cr_assert_eq(z->max_ttl, 3600);
    cr_assert_eq(z->nregions, 2);
    cr_assert_str_eq(z->regions[0], "eu");
    cr_assert_str_eq(z->regions[1], "us-east.1");
    cr_assert_eq(z->kinds, 1u << TUNNEL_KIND_TURN);
    const cfg_tenant_t *d = config_tenant(cfg, "demo", 4);
    cr_assert_not_null(d);
    cr_assert_eq(d->nsecrets, 1);
    cr_assert_eq(d->secrets[0].len, 15);
    cr_assert_eq(memcmp(d->secrets[0].key, "dev-only-secret", 15), 0);
    cr_assert_eq(d->hash, CRED_SHA1);
    cr_assert_eq(d->max_ttl, 86400);
    cr_assert_eq(d->nregions, 1);
    cr_assert_eq(d->kinds, (1u << TUNNEL_KIND_SFU) | (1u << TUNNEL_KIND_TURN));
    config_unref(cfg);
}

Test(config, defaults)
{
    config_t *cfg = parse_ok((doc_t){.regions = "{'local':{'sfu':['10.0.0.1:1']}}"});
    char b[64];
    const cfg_limits_t *l = &cfg->limits;
    cr_assert_eq(l->max_capsule, 65535);
    cr_assert_eq(l->max_streams, 100);
    cr_assert_eq(l->max_connections, 8192);
    cr_assert_eq(l->media_queue_bytes, 262144, "a 200 x 1,200 B keyframe burst fits");
    cr_assert_geq(l->media_queue_bytes, 200 * PKTQ_RECORD_SIZE(1200));
    cr_assert_eq(l->media_queue_age_ms, 200);
    cr_assert_eq(l->signal_queue_bytes, 65536);
    cr_assert_eq(l->tunnel_idle_ms, 30000);
    cr_assert_eq(l->turn_idle_ms, 900000, "outlives a TURN allocation's 600 s");
    cr_assert_eq(config_idle_ms(l, TUNNEL_KIND_SFU), 30000);
    cr_assert_eq(config_idle_ms(l, TUNNEL_KIND_TURN), 900000);
    cr_assert_eq(l->resume_grace_ms, 30000);
    cr_assert_eq(l->capsule_ping_ms, 20000);
    cr_assert_eq(l->tcp_rcvbuf_bytes, 131072);
    cr_assert_eq(l->tcp_notsent_lowat_bytes, 16384);
    cr_assert_eq(l->handshake_timeout_ms, 10000);
    cr_assert_eq(l->header_timeout_ms, 10000);
    cr_assert_eq(l->conn_idle_ms, 60000);
    cr_assert_eq(l->drain_timeout_ms, 5000);
    cr_assert_str_eq(addr(&cfg->echo, b, sizeof b), "127.0.0.1:0");
    cr_assert_eq(cfg->has_echo, 0, "no pool names builtin:echo");
    const cfg_tenant_t *t = config_tenant(cfg, "demo", 4);
    cr_assert_not_null(t);
    cr_assert_eq(t->hash, CRED_SHA1);
    cr_assert_eq(t->max_ttl, 86400);
    cr_assert_eq(t->kinds, 3u);
    const cfg_region_t *r = config_region(cfg, "local", 5);
    cr_assert_eq(r->pools[TUNNEL_KIND_TURN].n, 0, "an absent pool means no backend");
    config_unref(cfg);

    cfg = parse_ok((doc_t){.extra = "'limits':{}"});
    cr_assert_eq(cfg->limits.max_streams, 100);
    cr_assert_eq(cfg->limits.max_tunnels, 8192);
    cr_assert_eq(cfg->limits.close_linger_ms, 5000);
    cr_assert_eq(cfg->limits.write_stall_ms, 10000);
    cr_assert_eq(cfg->limits.ping_interval_ms, 5000);
    cr_assert_eq(cfg->limits.ping_timeout_ms, 10000);
    cr_assert_eq(cfg->limits.max_auth_failures, 5);
    cr_assert_eq(cfg->limits.max_pending_per_source, 64);
    cr_assert_eq(cfg->limits.handshakes_per_source_s, 20);
    cr_assert_eq(cfg->limits.max_control_frames_s, 1000);
    cr_assert_eq(cfg->has_echo, 1);
    config_unref(cfg);
}

Test(config, limits_accept_their_bounds)
{
    config_t *cfg = parse_ok((doc_t){
        .extra = "'limits':{'max_capsule':1200,'max_streams':10000,'max_connections':1,"
                 "'media_queue_bytes':67108864,'media_queue_age_ms':1,'signal_queue_bytes':2048,"
                 "'tunnel_idle_ms':86400000,'handshake_timeout_ms':1,'header_timeout_ms':600000,"
                 "'conn_idle_ms':1,'drain_timeout_ms':600000,'max_tunnels':1,"
                 "'close_linger_ms':1,'write_stall_ms':600000,'ping_interval_ms':1,"
                 "'ping_timeout_ms':600000,'max_auth_failures':1000,'max_pending_per_source':1,"
                 "'handshakes_per_source_s':1000000,'max_control_frames_s':10,"
                 "'turn_idle_ms':86400000,'resume_grace_ms':0,'capsule_ping_ms':0}"});
    cr_assert_eq(cfg->limits.turn_idle_ms, 86400000);
    cr_assert_eq(cfg->limits.resume_grace_ms, 0, "0 turns resume off");
    cr_assert_eq(cfg->limits.capsule_ping_ms, 0, "0 turns PING capsules off");
    cr_assert_eq(cfg->limits.max_auth_failures, 1000);
    cr_assert_eq(cfg->limits.max_control_frames_s, 10);
    cr_assert_eq(cfg->limits.max_capsule, 1200);
    cr_assert_eq(cfg->limits.max_streams, 10000);
    cr_assert_eq(cfg->limits.media_queue_bytes, 67108864);
    cr_assert_eq(cfg->limits.signal_queue_bytes, 2048);
    cr_assert_eq(cfg->limits.tunnel_idle_ms, 86400000);
    cr_assert_eq(cfg->limits.drain_timeout_ms, 600000);
    config_unref(cfg);
}

Test(config, empty_tenants_and_ipv6_listen_only)
{
    config_t *cfg = parse_ok((doc_t){.listen = "['[::]:0']", .tenants = "[]"});
    char b[64];
    cr_assert_eq(cfg->ntenants, 0);
    cr_assert_null(config_tenant(cfg, "demo", 4));
    cr_assert_str_eq(addr(&cfg->listen[0], b, sizeof b), "[::]:0");
    config_unref(cfg);
}

/* Issue 8 §4: a listener may opt in to a PROXY protocol header. */
Test(config, listen_objects_opt_in_to_proxy_protocol)
{
    config_t *cfg = parse_ok((doc_t){.listen = "['127.0.0.1:0',{'address':'127.0.0.1:1',"
                                               "'proxy_protocol':true},{'address':'[::1]:0'}]"});
    char b[64];
    cr_assert_eq(cfg->nlisten, 3);
    cr_assert_eq(cfg->listen[0].proxy_protocol, 0);
    cr_assert_eq(cfg->listen[1].proxy_protocol, 1);
    cr_assert_str_eq(addr(&cfg->listen[1], b, sizeof b), "127.0.0.1:1");
    cr_assert_eq(cfg->listen[2].proxy_protocol, 0);
    config_unref(cfg);
    expect_error((doc_t){.listen = "[{'proxy_protocol':true}]"},
                 "$.listen[0].address: required key is missing");
    expect_error((doc_t){.listen = "[{'address':'127.0.0.1:0','proxy_protocol':1}]"},
                 "$.listen[0].proxy_protocol: expected true or false, got 1");
    expect_error((doc_t){.listen = "[{'address':8443}]"},
                 "$.listen[0].address: expected a \"host:port\" string, got 8443");
    expect_error((doc_t){.listen = "[{'address':'127.0.0.1:0','proxy':true}]"},
                 "$.listen[0].proxy: unknown key");
    expect_error((doc_t){.listen = "['127.0.0.1:5',{'address':'127.0.0.1:5'}]"},
                 "is listed twice (also $.listen[0])");
}

Test(config, hostname_backend_and_echo_resolve)
{
    config_t *cfg = parse_ok((doc_t){.regions = "{'local':{'turn':['localhost:3479']}}",
                                     .extra = "'echo':'localhost:0'"});
    const cfg_pool_t *p = &config_region(cfg, "local", 5)->pools[TUNNEL_KIND_TURN];
    cr_assert_eq(p->n, 1);
    cr_assert(is_loopback(&p->addrs[0]));
    cr_assert_eq(port_of(&p->addrs[0]), 3479);
    cr_assert(is_loopback(&cfg->echo));
    config_unref(cfg);
}

Test(config, relative_paths)
{
    char *json = render((doc_t){.tls = "{'cert':'../build/dev/cert.pem','key':'/abs/k.pem'}"});
    char err[256];
    config_t *cfg = config_parse(json, strlen(json), "conf", err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_str_eq(cfg->cert_file, "conf/../build/dev/cert.pem");
    cr_assert_str_eq(cfg->key_file, "/abs/k.pem");
    config_unref(cfg);

    cfg = config_parse(json, strlen(json), NULL, err, sizeof err);
    cr_assert_str_eq(cfg->cert_file, "../build/dev/cert.pem", "NULL base_dir keeps paths");
    config_unref(cfg);
    cfg = config_parse(json, strlen(json), "/", err, sizeof err);
    cr_assert_str_eq(cfg->cert_file, "/../build/dev/cert.pem");
    config_unref(cfg);
    cfg = config_parse(json, strlen(json), "/etc/sluice/", err, sizeof err);
    cr_assert_str_eq(cfg->cert_file, "/etc/sluice/../build/dev/cert.pem");
    config_unref(cfg);
    free(json);
}

Test(config, length_delimited_input)
{
    /* The document need not be NUL-terminated: trailing bytes are ignored. */
    char *json = render((doc_t){0});
    size_t len = strlen(json);
    char *buf = malloc(len + 5);
    memcpy(buf, json, len);
    memcpy(buf + len, "}}}}}", 5);
    char err[256];
    config_t *cfg = config_parse(buf, len, NULL, err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    config_unref(cfg);
    free(buf);
    free(json);
}

/* ---- refcount, lookups, helpers ------------------------------------------ */

Test(config, refcount)
{
    config_t *cfg = parse_ok((doc_t){0});
    cr_assert_eq(config_ref(cfg), cfg);
    cr_assert_eq(cfg->_refs, 2);
    config_unref(cfg);
    cr_assert_eq(cfg->_refs, 1, "still alive after the first unref");
    cr_assert_str_eq(cfg->tenants[0].id, "demo");
    config_unref(cfg); /* freed here: ASan reports a leak otherwise */
    config_unref(NULL);
    cr_assert_null(config_ref(NULL));
}

Test(config, lookups_are_exact_and_length_delimited)
{
    config_t *cfg = parse_ok((doc_t){
        .regions = "{'b':{},'a':{},'ab':{},'c':{}}",
        .region = "'ab'",
        .tenants = "[{'id':'t2','secrets':['s'],'regions':['a','c']},"
                   "{'id':'t1','secrets':['s'],'regions':['ab']},"
                   "{'id':'t10','secrets':['s'],'regions':['b']}]"});
    cr_assert_eq(cfg->nregions, 4);
    static const char *const names[] = {"a", "ab", "b", "c"};
    for (size_t i = 0; i < 4; i++) {
        const cfg_region_t *r = config_region(cfg, names[i], strlen(names[i]));
        cr_assert_not_null(r, "%s", names[i]);
        cr_assert_str_eq(r->name, names[i]);
    }
    cr_assert_str_eq(config_region(cfg, "abc", 2)->name, "ab");
    cr_assert_str_eq(config_region(cfg, "abc", 1)->name, "a");
    cr_assert_null(config_region(cfg, "abc", 3));
    cr_assert_null(config_region(cfg, "", 0));
    cr_assert_null(config_region(cfg, "d", 1));

    cr_assert_str_eq(config_tenant(cfg, "t1", 2)->id, "t1");
    cr_assert_str_eq(config_tenant(cfg, "t10", 3)->id, "t10");
    cr_assert_str_eq(config_tenant(cfg, "t2/x", 2)->id, "t2");
    cr_assert_null(config_tenant(cfg, "t", 1));
    cr_assert_null(config_tenant(cfg, "t100", 4));
    cr_assert_null(config_tenant(cfg, "T1", 2), "ids are case-sensitive");
    cr_assert_null(config_tenant(cfg, "t1\0", 3));

    const cfg_tenant_t *t2 = config_tenant(cfg, "t2", 2);
    cr_assert_eq(config_tenant_in_region(t2, "a"), 1);
    cr_assert_eq(config_tenant_in_region(t2, "c"), 1);
    cr_assert_eq(config_tenant_in_region(t2, "ab"), 0);
    cr_assert_eq(config_tenant_in_region(t2, ""), 0);
    config_unref(cfg);
}

Test(config, addr_str)
{
    char b[64];
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(5)};
    inet_pton(AF_INET, "1.2.3.4", &s4.sin_addr);
    cr_assert_str_eq(config_addr_str((struct sockaddr *)&s4, b, sizeof b), "1.2.3.4:5");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(65535)};
    inet_pton(AF_INET6, "::1", &s6.sin6_addr);
    cr_assert_eq(config_addr_str((struct sockaddr *)&s6, b, sizeof b), b);
    cr_assert_str_eq(b, "[::1]:65535");
    char small[6];
    cr_assert_str_eq(config_addr_str((struct sockaddr *)&s6, small, sizeof small), "[::1]");
    struct sockaddr_storage none = {0};
    config_addr_str((struct sockaddr *)&none, b, sizeof b);
    cr_assert_str_eq(b, "(no address)");
}

/* ---- errors: the documented examples ---------------------------------------- */

Test(config, error_backend_not_host_port)
{
    expect_error((doc_t){.regions = "{'local':{},'eu':{'sfu':['10.0.0.1']}}"},
                 "$.regions.eu.sfu[0]: \"10.0.0.1\" is not host:port");
}

Test(config, error_region_not_in_regions)
{
    expect_error((doc_t){.region = "'mars'"}, "$.region: \"mars\" is not a key of $.regions");
    expect_error((doc_t){.region = "5"}, "$.region: expected a region name, got 5");
    expect_error((doc_t){.region = "''"}, "$.region: expected a region name, got \"\"");
}

Test(config, error_limit_range)
{
    expect_error((doc_t){.extra = "'limits':{'max_streams':0}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got 0");
    expect_error((doc_t){.extra = "'limits':{'max_streams':10001}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got 10001");
    expect_error((doc_t){.extra = "'limits':{'max_streams':1.5}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got 1.5");
    expect_error((doc_t){.extra = "'limits':{'max_streams':1e2}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got 1e2");
    expect_error((doc_t){.extra = "'limits':{'max_streams':-1}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got -1");
    expect_error((doc_t){.extra = "'limits':{'max_streams':'5'}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got \"5\"");
    expect_error((doc_t){.extra = "'limits':{'max_streams':null}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got null");
    expect_error((doc_t){.extra = "'limits':{'max_streams':99999999999999999999999}"},
                 "$.limits.max_streams: expected an integer from 1 to 10000, got 9999999");
    expect_error((doc_t){.extra = "'limits':[1]"}, "$.limits: expected an object, got an array");
}

/* Every limit, one past each end of its documented range. */
Test(config, error_every_limit_bound)
{
    static const struct {
        const char *name;
        unsigned long min, max;
    } L[] = {
        {"max_capsule", 1200, 1048576},       {"max_streams", 1, 10000},
        {"max_connections", 1, 1000000},      {"media_queue_bytes", 2048, 67108864},
        {"media_queue_age_ms", 1, 60000},     {"signal_queue_bytes", 2048, 67108864},
        {"tunnel_idle_ms", 1, 86400000},      {"handshake_timeout_ms", 1, 600000},
        {"header_timeout_ms", 1, 600000},     {"conn_idle_ms", 1, 86400000},
        {"drain_timeout_ms", 1, 600000},      {"max_tunnels", 1, 1000000},
        {"close_linger_ms", 1, 600000},       {"write_stall_ms", 1, 600000},
        {"ping_interval_ms", 1, 600000},      {"ping_timeout_ms", 1, 600000},
        {"max_auth_failures", 1, 1000},       {"max_pending_per_source", 1, 1000000},
        {"handshakes_per_source_s", 1, 1000000}, {"max_control_frames_s", 10, 1000000},
        {"turn_idle_ms", 1, 86400000},        {"resume_grace_ms", 0, 3600000},
        {"capsule_ping_ms", 0, 600000},       {"tcp_rcvbuf_bytes", 0, 16777216},
        {"tcp_notsent_lowat_bytes", 0, 16777216},
    };
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
        unsigned long bad[2] = {L[i].min - 1, L[i].max + 1};
        for (int j = L[i].min == 0; j < 2; j++) { /* a minimum of 0 means "off" */
            char extra[128], want[160];
            snprintf(extra, sizeof extra, "'limits':{'%s':%lu}", L[i].name, bad[j]);
            snprintf(want, sizeof want, "$.limits.%s: expected an integer from %lu to %lu, got %lu",
                     L[i].name, L[i].min, L[i].max, bad[j]);
            expect_error((doc_t){.extra = extra}, want);
        }
    }
}

Test(config, error_unknown_keys)
{
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s'],'regions':['local'],'colour':1}]"},
                 "$.tenants[0].colour: unknown key");
    expect_error((doc_t){.extra = "'lisen':[]"}, "$.lisen: unknown key");
    expect_error((doc_t){.extra = "'limits':{'max_stream':5}"},
                 "$.limits.max_stream: unknown key (expected one of: max_capsule,");
    expect_error((doc_t){.tls = "{'cert':'c','key':'k','ca':'x'}"}, "$.tls.ca: unknown key");
    expect_error((doc_t){.regions = "{'local':{'sfu':[],'stun':[]}}"},
                 "$.regions.local.stun: unknown key (expected one of: sfu, turn)");
    expect_error((doc_t){.extra = "'a b.c':1"}, "$[\"a b.c\"]: unknown key");
}

Test(config, error_invalid_json)
{
    expect_error_q("{'listen':", "$: invalid JSON: parse error: premature EOF");
    expect_error_q("", "$: invalid JSON: ");
    expect_error_q("{} {}", "$: invalid JSON: parse error: trailing garbage at line 1, column 4");
    expect_error_q("{\n'a':\n  [1,,2]}", "$: invalid JSON: parse error: ");
    expect_error_q("{\n'a':\n  [1,,2]}", "at line 3, column 6");
    expect_error_q("{'a':tru}", "$: invalid JSON: lexical error");
    expect_error_q("{/* no comments */}", "$: invalid JSON: ");
    expect_raw_error("{\"a\":\"\xff\"}", 10, "$: invalid JSON: "); /* not UTF-8 */
    expect_error_q("[]", "$: expected an object, got an empty array");
    expect_error_q("'x'", "$: expected an object, got \"x\"");
    expect_error_q("null", "$: expected an object, got null");
    char deep[100] = "{'a':";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    expect_error_q(deep, "$: JSON nested deeper than 32 levels");
}

/* ---- errors: everything else -------------------------------------------- */

Test(config, error_required_and_types)
{
    expect_error((doc_t){.listen = OMIT}, "$.listen: required key is missing");
    expect_error((doc_t){.tls = OMIT}, "$.tls: required key is missing");
    expect_error((doc_t){.region = OMIT}, "$.region: required key is missing");
    expect_error((doc_t){.regions = OMIT}, "$.regions: required key is missing");
    expect_error((doc_t){.tenants = OMIT}, "$.tenants: required key is missing");
    expect_error((doc_t){.tls = "{'cert':'c'}"}, "$.tls.key: required key is missing");
    expect_error((doc_t){.tls = "{'key':'k'}"}, "$.tls.cert: required key is missing");
    expect_error((doc_t){.tls = "'c.pem'"}, "$.tls: expected an object with \"cert\" and \"key\"");
    expect_error((doc_t){.tls = "{'cert':'','key':'k'}"},
                 "$.tls.cert: expected a non-empty file path, got \"\"");
    expect_error((doc_t){.tls = "{'cert':'c','key':true}"},
                 "$.tls.key: expected a non-empty file path, got true");
    expect_error((doc_t){.listen = "[]"},
                 "$.listen: expected a non-empty array of \"host:port\" strings or "
                 "{\"address\": ..., \"proxy_protocol\": ...} objects, got an empty array");
    expect_error((doc_t){.listen = "'127.0.0.1:1'"},
                 "$.listen: expected a non-empty array of \"host:port\" strings or "
                 "{\"address\": ..., \"proxy_protocol\": ...} objects, got \"127.0.0.1:1\"");
    expect_error((doc_t){.listen = "[8443]"},
                 "$.listen[0]: expected a \"host:port\" string, got 8443");
    expect_error((doc_t){.regions = "{}"},
                 "$.regions: expected an object with at least one region, got an empty object");
    expect_error((doc_t){.regions = "[]"},
                 "$.regions: expected an object with at least one region");
    expect_error((doc_t){.regions = "{'local':[]}"},
                 "$.regions.local: expected an object with \"sfu\" and/or \"turn\" pools");
    expect_error((doc_t){.regions = "{'local':{'sfu':'10.0.0.1:1'}}"},
                 "$.regions.local.sfu: expected an array of \"host:port\" strings");
    expect_error((doc_t){.regions = "{'local':{'sfu':null}}"},
                 "$.regions.local.sfu: expected an array");
    expect_error((doc_t){.tenants = "{}"}, "$.tenants: expected an array of tenant objects");
    expect_error((doc_t){.tenants = "[5]"}, "$.tenants[0]: expected a tenant object, got 5");
    expect_error((doc_t){.tenants = "[{'secrets':['s'],'regions':['local']}]"},
                 "$.tenants[0].id: required key is missing");
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['s']}]"},
                 "$.tenants[0].regions: required key is missing");
    expect_error((doc_t){.extra = "'echo':5"}, "$.echo: expected a \"host:port\" string, got 5");
}

Test(config, error_duplicate_keys)
{
    expect_error_q("{'listen':['127.0.0.1:1'],'listen':['127.0.0.1:2']}",
                   "$.listen: duplicate key");
    expect_error((doc_t){.tls = "{'cert':'a','key':'k','cert':'b'}"}, "$.tls.cert: duplicate key");
    expect_error((doc_t){.regions = "{'eu':{},'local':{},'eu':{}}"}, "$.regions.eu: duplicate key");
    expect_error((doc_t){.regions = "{'local':{'sfu':[],'sfu':[]}}"},
                 "$.regions.local.sfu: duplicate key");
    expect_error((doc_t){.extra = "'limits':{'max_streams':5,'max_streams':6}"},
                 "$.limits.max_streams: duplicate key");
    expect_error((doc_t){.tenants = "[{'id':'a','id':'b','secrets':['s'],'regions':['local']}]"},
                 "$.tenants[0].id: duplicate key");
}

Test(config, error_duplicate_tenant_and_listen)
{
    expect_error((doc_t){.tenants = "[{'id':'demo','secrets':['s'],'regions':['local']},"
                                    "{'id':'x','secrets':['s'],'regions':['local']},"
                                    "{'id':'demo','secrets':['t'],'regions':['local']}]"},
                 "$.tenants[2].id: duplicate tenant id \"demo\" (also $.tenants[0].id)");
    expect_error((doc_t){.listen = "['127.0.0.1:8443','[::1]:8443','127.0.0.1:8443']"},
                 "$.listen[2]: \"127.0.0.1:8443\" is listed twice (also $.listen[0])");
}

#define A16 "aaaaaaaaaaaaaaaa"
#define A64 A16 A16 A16 A16

Test(config, error_names)
{
    expect_error((doc_t){.tenants = "[{'id':'a b','secrets':['s'],'regions':['local']}]"},
                 "$.tenants[0].id: \"a b\" is not a valid tenant id (1 to 64 characters");
    expect_error((doc_t){.tenants = "[{'id':'" A64 "a','secrets':['s'],'regions':['local']}]"},
                 "is not a valid tenant id");
    expect_error((doc_t){.tenants = "[{'id':'','secrets':['s'],'regions':['local']}]"},
                 "$.tenants[0].id: expected a tenant id, got \"\"");
    expect_error((doc_t){.regions = "{'local':{},'eu west':{}}"},
                 "$.regions[\"eu west\"]: not a valid region name (1 to 64 characters");
    expect_error((doc_t){.regions = "{'local':{},'':{}}"},
                 "$.regions[\"\"]: not a valid region name");
    /* 64 characters is fine. */
    config_t *cfg = parse_ok((doc_t){
        .tenants = "[{'id':'" A64 "','secrets':['s'],'regions':['local']}]"});
    cr_assert_eq(strlen(cfg->tenants[0].id), 64);
    config_unref(cfg);
}

Test(config, error_nul_in_strings)
{
    expect_error((doc_t){.tenants = "[{'id':'a','secrets':['ab\\u0000cd'],'regions':['local']}]"},
                 "$.tenants[0].secrets[0]: \"ab\\u0000cd\" contains a NUL character");
    expect_error((doc_t){.tls = "{'cert':'c\\u0000.pem','key':'k'}"},
                 "$.tls.cert: \"c\\u0000.pem\" contains a NUL character");
    expect_error((doc_t){.extra = "'x\\u0000y':1"}, "$[\"x\\u0000y\"]: unknown key");
}

Test(config, error_addresses)
{
    /* The backend pool is the strictest place: no port 0. */
#define POOL(a) (doc_t){.regions = "{'local':{'turn':[" a "]}}"}
    expect_error(POOL("'10.0.0.1:0'"),
                 "$.regions.local.turn[0]: \"10.0.0.1:0\": port 0 is not allowed for a backend");
    expect_error(POOL("'10.0.0.1:65536'"),
                 "$.regions.local.turn[0]: \"10.0.0.1:65536\": "
                 "the port must be an integer from 0 to 65535");
    expect_error(POOL("'10.0.0.1:'"), "\"10.0.0.1:\": the port must be an integer");
    expect_error(POOL("'10.0.0.1:http'"), "\"10.0.0.1:http\": the port must be an integer");
    expect_error(POOL("'10.0.0.1:+80'"), "the port must be an integer");
    expect_error(POOL("'10.0.0.1:123456'"), "the port must be an integer");
    expect_error(POOL("':80'"), "$.regions.local.turn[0]: \":80\" is not host:port");
    expect_error(POOL("'[]:80'"), "\"[]:80\" is not host:port");
    expect_error(POOL("'[::1:80'"), "\"[::1:80\" is not host:port");
    expect_error(POOL("'::1:80'"),
                 "\"::1:80\" is not host:port (write an IPv6 address as [address]:port)");
    expect_error(POOL("'[zz::1]:80'"), "\"[zz::1]:80\": the host is not a valid IPv6 address");
    expect_error(POOL("'[10.0.0.1]:80'"), "the host is not a valid IPv6 address");
    expect_error(POOL("'10.1:80'"), "\"10.1:80\": the host is not a valid IPv4 address");
    expect_error(POOL("'256.0.0.1:80'"), "the host is not a valid IPv4 address");
    expect_error(POOL("'bad host:80'"),
                 "\"bad host:80\": the host is neither an IP address nor a host name");
    expect_error(POOL("'builtin:echo2'"), "\"builtin:echo2\": the port must be an integer");
    /* An unresolvable name ("cannot resolve") is not tested: finding out asks
     * the system's DNS resolver, and tests send nothing beyond loopback. */
    expect_error(POOL("'10.0.0.1:80','x'"), "$.regions.local.turn[1]: \"x\" is not host:port");
    /* builtin:echo belongs in pools only. */
    expect_error((doc_t){.listen = "['builtin:echo']"},
                 "$.listen[0]: \"builtin:echo\" is only allowed in a region's sfu or turn pool");
    expect_error((doc_t){.extra = "'echo':'builtin:echo'"},
                 "$.echo: \"builtin:echo\" is only allowed in a region's sfu or turn pool");
    expect_error((doc_t){.extra = "'echo':'127.0.0.1'"}, "$.echo: \"127.0.0.1\" is not host:port");
    /* The echo reflects anything that reaches it: loopback only. */
    expect_error((doc_t){.extra = "'echo':'0.0.0.0:7000'"},
                 "$.echo: \"0.0.0.0:7000\": the built-in echo binds loopback only (127.0.0.0/8 or [::1])");
    expect_error((doc_t){.extra = "'echo':'[::]:0'"},
                 "$.echo: \"[::]:0\": the built-in echo binds loopback only (127.0.0.0/8 or [::1])");
    config_unref(parse_ok((doc_t){.extra = "'echo':'127.0.0.9:0'"}));
    config_unref(parse_ok((doc_t){.extra = "'echo':'[::1]:0'"}));
    expect_error((doc_t){.listen = "['127.0.0.1:99999']"},
                 "$.listen[0]: \"127.0.0.1:99999\": the port must be an integer from 0 to 65535");
#undef POOL
}

Test(config, error_buffer_handling)
{
    char *json = render((doc_t){.region = "'mars'"});
    char err[12];
    memset(err, 'X', sizeof err);
    cr_assert_null(config_parse(json, strlen(json), NULL, err, sizeof err));
    cr_assert_eq(strlen(err), sizeof err - 1, "truncated, NUL-terminated");
    cr_assert_eq(strncmp(err, "$.region: \"", 11), 0);
    cr_assert_null(config_parse(json, strlen(json), NULL, NULL, 0), "no error buffer is fine");
    err[0] = 'Y';
    cr_assert_null(config_parse(json, strlen(json), NULL, err, 0));
    cr_assert_eq(err[0], 'Y', "errlen 0 writes nothing");
    free(json);

    char *big = malloc((1u << 20) + 2);
    memset(big, ' ', (1u << 20) + 2);
    big[0] = '{';
    big[(1u << 20) + 1] = '}';
    char e2[128];
    cr_assert_null(config_parse(big, (1u << 20) + 2, NULL, e2, sizeof e2));
    cr_assert_str_eq(e2, "$: the document is larger than 1 MiB (1048578 bytes)");
    free(big);
}

/* Every proper prefix of a valid document must fail cleanly (no crash, no
 * leak under ASan, a "$..." message), and so must every one-byte deletion. */
Test(config, every_truncation_and_deletion_fails_cleanly)
{
    char *json = dq(full_doc), err[512];
    size_t len = strlen(json);
    for (size_t n = 0; n < len; n++) {
        config_t *cfg = config_parse(json, n, "/b", err, sizeof err);
        if (cfg) {
            /* Only whitespace may be missing from a document that still parses. */
            for (size_t i = n; i < len; i++)
                cr_assert(json[i] == ' ' || json[i] == '}', "prefix %zu parsed", n);
            config_unref(cfg);
            continue;
        }
        cr_assert_eq(err[0], '$', "prefix %zu: %s", n, err);
    }
    char *cut = malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(cut, json, i);
        memcpy(cut + i, json + i + 1, len - i - 1);
        config_t *cfg = config_parse(cut, len - 1, "/b", err, sizeof err);
        if (cfg)
            config_unref(cfg);
        else
            cr_assert_eq(err[0], '$', "deletion at %zu: %s", i, err);
    }
    free(cut);
    free(json);
}

/* ---- config_load ------------------------------------------------------------ */

Test(config, load_resolves_paths_against_the_file)
{
    make_tmpdir();
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/gw.json", tmpdir);
    char *json = render((doc_t){.tls = "{'cert':'tls/c.pem','key':'/abs/k.pem'}"});
    write_file(path, json, strlen(json));
    config_t *cfg = config_load(path, err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    char want[160];
    snprintf(want, sizeof want, "%s/tls/c.pem", tmpdir);
    cr_assert_str_eq(cfg->cert_file, want);
    cr_assert_str_eq(cfg->key_file, "/abs/k.pem");
    config_unref(cfg);

    /* A bare file name is relative to the working directory. */
    cr_assert_eq(chdir(tmpdir), 0);
    cfg = config_load("gw.json", err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_str_eq(cfg->cert_file, "./tls/c.pem");
    config_unref(cfg);
    free(json);
    remove_tree();
}

Test(config, load_errors_name_the_file)
{
    make_tmpdir();
    char path[128], err[512], want[256];
    snprintf(path, sizeof path, "%s/x.json", tmpdir);

    cr_assert_null(config_load(path, err, sizeof err));
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    cr_assert_str_eq(err, want);

    cr_assert_null(config_load(tmpdir, err, sizeof err));
    snprintf(want, sizeof want, "%s: Is a directory", tmpdir);
    cr_assert_str_eq(err, want);

    char *json = render((doc_t){.listen = "[]"});
    write_file(path, json, strlen(json));
    free(json);
    cr_assert_null(config_load(path, err, sizeof err));
    snprintf(want, sizeof want, "%s: $.listen: expected a non-empty array", path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);

    write_file(path, "{\n", 2);
    cr_assert_null(config_load(path, err, sizeof err));
    snprintf(want, sizeof want, "%s: $: invalid JSON: parse error: premature EOF", path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);

    size_t bigsz = (1u << 20) + 1;
    char *big = malloc(bigsz);
    memset(big, ' ', bigsz);
    write_file(path, big, bigsz);
    free(big);
    cr_assert_null(config_load(path, err, sizeof err));
    snprintf(want, sizeof want, "%s: larger than 1 MiB", path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);

    /* A prefix longer than the buffer: truncated, no overflow. */
    char tiny[8];
    cr_assert_null(config_load(path, tiny, sizeof tiny));
    cr_assert_eq(strlen(tiny), 7);
    cr_assert_null(config_load(path, NULL, 0));
    remove_tree();
}

Test(config, shipped_configs_load)
{
    char path[512], err[512], b[64];
    repo_path(path, sizeof path, "conf/sluiced.json");
    config_t *cfg = config_load(path, err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_eq(cfg->nlisten, 2);
    cr_assert_str_eq(addr(&cfg->listen[0], b, sizeof b), "127.0.0.1:8443");
    cr_assert_str_eq(addr(&cfg->listen[1], b, sizeof b), "[::1]:8443");
    cr_assert_str_eq(cfg->region, "local");
    cr_assert_eq(cfg->has_echo, 1);
    const cfg_region_t *r = config_region(cfg, "local", 5);
    for (int k = 0; k < TUNNEL_KIND_COUNT; k++) {
        cr_assert_eq(r->pools[k].n, 1);
        cr_assert_eq(r->pools[k].addrs[0].builtin_echo, 1);
    }
    const cfg_tenant_t *t = config_tenant(cfg, "demo", 4);
    cr_assert_not_null(t);
    cr_assert_eq(t->secrets[0].len, 15);
    cr_assert_eq(memcmp(t->secrets[0].key, "dev-only-secret", 15), 0);
    /* Small enough to start under a 4,096 open-file limit (docs/configuration.md). */
    cr_assert_leq(cfg->limits.max_connections + cfg->limits.max_tunnels + 64u, 4096u);
    const char *tail = "conf/../build/dev/cert.pem";
    cr_assert_eq(strcmp(cfg->cert_file + strlen(cfg->cert_file) - strlen(tail), tail), 0, "%s",
                 cfg->cert_file);
    config_unref(cfg);

    repo_path(path, sizeof path, "conf/example-production.json");
    cfg = config_load(path, err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_geq(cfg->nregions, 2);
    cr_assert_geq(cfg->ntenants, 3);
    int sha256 = 0, rotating = 0;
    for (size_t i = 0; i < cfg->ntenants; i++) {
        sha256 |= cfg->tenants[i].hash == CRED_SHA256;
        rotating |= cfg->tenants[i].nsecrets > 1;
    }
    cr_assert(sha256 && rotating);
    cr_assert_eq(cfg->has_echo, 0, "production uses real backends");
    config_unref(cfg);
}

/* Backend health (docs/configuration.md, "Backend health"). */
Test(config, pool_health_defaults_and_object_form)
{
    config_t *cfg = parse_ok((doc_t){
        .regions = "{'local':{'sfu':['10.0.0.1:1'],"
                   "'turn':{'backends':['10.0.0.2:3478','10.0.0.3:3478'],'probe':'none',"
                   "'interval_ms':500,'timeout_ms':200,'down_after':1,'up_after':4}}}"});
    const cfg_region_t *r = config_region(cfg, "local", 5);
    const cfg_health_t *h = &r->pools[TUNNEL_KIND_SFU].health;
    cr_assert_eq(h->probe, CFG_PROBE_STUN);
    cr_assert_eq(h->interval_ms, 2000);
    cr_assert_eq(h->timeout_ms, 1000);
    cr_assert_eq(h->down_after, 3);
    cr_assert_eq(h->up_after, 2);
    h = &r->pools[TUNNEL_KIND_TURN].health;
    cr_assert_eq(r->pools[TUNNEL_KIND_TURN].n, 2);
    cr_assert_eq(h->probe, CFG_PROBE_NONE);
    cr_assert_eq(h->interval_ms, 500);
    cr_assert_eq(h->timeout_ms, 200);
    cr_assert_eq(h->down_after, 1);
    cr_assert_eq(h->up_after, 4);
    config_unref(cfg);
    cfg = parse_ok((doc_t){.regions = "{'local':{'sfu':{'backends':[]}}}"});
    cr_assert_eq(config_region(cfg, "local", 5)->pools[TUNNEL_KIND_SFU].n, 0);
    config_unref(cfg);
}

Test(config, error_pool_health)
{
    expect_error((doc_t){.regions = "{'local':{'sfu':{'probe':'none'}}}"},
                 "$.regions.local.sfu.backends: required key is missing");
    expect_error((doc_t){.regions = "{'local':{'sfu':{'backends':['10.0.0.1:1'],'probe':'icmp'}}}"},
                 "$.regions.local.sfu.probe: expected \"stun\" or \"none\", got \"icmp\"");
    expect_error((doc_t){.regions = "{'local':{'sfu':{'backends':['10.0.0.1:1'],'probe':1}}}"},
                 "$.regions.local.sfu.probe: expected \"stun\" or \"none\", got 1");
    expect_error((doc_t){.regions = "{'local':{'sfu':{'backends':['10.0.0.1'],'probe':'none'}}}"},
                 "$.regions.local.sfu.backends[0]: \"10.0.0.1\" is not host:port");
    expect_error((doc_t){.regions = "{'local':{'sfu':{'backends':['10.0.0.1:1'],'interval_ms':99}}}"},
                 "$.regions.local.sfu.interval_ms: expected an integer from 100 to 600000, got 99");
    expect_error((doc_t){.regions = "{'local':{'sfu':{'backends':['10.0.0.1:1'],'down_after':0}}}"},
                 "$.regions.local.sfu.down_after: expected an integer from 1 to 100, got 0");
    expect_error((doc_t){.regions = "{'local':{'sfu':{'backends':['10.0.0.1:1'],'up_after':101}}}"},
                 "$.regions.local.sfu.up_after: expected an integer from 1 to 100, got 101");
    expect_error((doc_t){.regions = "{'local':{'turn':{'backends':['10.0.0.1:1'],"
                                    "'interval_ms':500,'timeout_ms':500}}}"},
                 "$.regions.local.turn.timeout_ms: must be less than interval_ms (500), got 500");
    expect_error((doc_t){.regions = "{'local':{'sfu':{'backends':['10.0.0.1:1'],'weight':1}}}"},
                 "$.regions.local.sfu.weight: unknown key (expected one of: backends, probe, "
                 "interval_ms, timeout_ms, down_after, up_after)");
}
