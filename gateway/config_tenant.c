/*
 * config_tenant.c — the tenant half of the config parser (see config.c for
 * the whole and docs/configuration.md for every key): tenants (secrets,
 * regions, kinds, limits), where they come from ($.tenants, a store file or
 * etcd documents, $.tenant_store), the admin API's access ($.admin), and the
 * public lookups over tenant fields. Shares the validation context and its
 * helpers with config.c through config_internal.h; everything it allocates
 * belongs to the snapshot and is freed by config__tenants_free.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/name.h"
#include "config_internal.h"

/* ------------------------------------------------------------------------ */
/* Tenants                                                                    */

static int secrets_parse(vctx_t *c, const json_t *v, cfg_tenant_t *t)
{
    char d[QBUF];
    if (v->type != JSON_ARRAY || v->n == 0)
        return config__fail(c, "expected a non-empty array of strings, got %s",
                            config__describe(v, d, sizeof d));
    t->secrets = calloc(v->n, sizeof *t->secrets);
    if (!t->secrets)
        return config__nomem(c);
    t->nsecrets = v->n;
    for (size_t i = 0; i < v->n; i++) {
        const char *s;
        size_t len;
        size_t mark = config__path_push_index(c, i);
        if (config__get_string(c, v->items[i], "a non-empty string", &s, &len))
            return -1;
        uint8_t *key = malloc(len);
        if (!key)
            return config__nomem(c);
        memcpy(key, s, len);
        t->secrets[i] = (cred_secret_t){key, len};
        config__path_pop(c, mark);
    }
    return 0;
}

static int tenant_regions_parse(vctx_t *c, const json_t *v, const config_t *cfg, cfg_tenant_t *t)
{
    char d[QBUF];
    if (v->type == JSON_ARRAY && v->n == 0 && c->store_doc)
        return 0; /* disabled everywhere through the admin API */
    if (v->type != JSON_ARRAY || v->n == 0)
        return config__fail(c, "expected a non-empty array of region names, got %s",
                            config__describe(v, d, sizeof d));
    t->regions = calloc(v->n, sizeof *t->regions);
    if (!t->regions)
        return config__nomem(c);
    t->nregions = v->n;
    for (size_t i = 0; i < v->n; i++) {
        const char *s;
        size_t len;
        size_t mark = config__path_push_index(c, i);
        if (config__get_string(c, v->items[i], "a region name", &s, &len))
            return -1;
        if (!config_region(cfg, s, len))
            return config__fail(c, "%s is not a key of $.regions",
                                config__quote(s, len, d, sizeof d));
        t->regions[i] = json_strdup(s, len);
        if (!t->regions[i])
            return config__nomem(c);
        config__path_pop(c, mark);
    }
    return 0;
}

static int kinds_parse(vctx_t *c, const json_t *v, cfg_tenant_t *t)
{
    char d[QBUF];
    t->kinds = (1u << TUNNEL_KIND_SFU) | (1u << TUNNEL_KIND_TURN);
    if (!v)
        return 0;
    if (v->type != JSON_ARRAY || v->n == 0)
        return config__fail(c, "expected a non-empty array of \"sfu\" and \"turn\", got %s",
                            config__describe(v, d, sizeof d));
    t->kinds = 0;
    for (size_t i = 0; i < v->n; i++) {
        const json_t *k = v->items[i];
        int kind = k->type == JSON_STRING ? config_kind_parse(k->str, k->len) : -1;
        if (kind < 0) {
            config__path_push_index(c, i);
            return config__fail(c, "expected \"sfu\" or \"turn\", got %s",
                                config__describe(k, d, sizeof d));
        }
        t->kinds |= 1u << kind;
    }
    return 0;
}

/* tenants[i].limits: flat names, ranges in docs/configuration.md. */
static const struct tlimit_spec {
    const char *name;
    size_t off;
    uint64_t def, max;
} tlimit_specs[] = {
#define T(name, field, def, max) {name, offsetof(cfg_tenant_limits_t, field), def, max}
    T("up_packets_s", up.packets_s, 0, 10000000),
    T("up_packets_burst", up.packets_burst, 0, 10000000),
    T("up_bits_s", up.bits_s, 0, 100000000000ull),
    T("up_bits_burst", up.bits_burst, 0, 10000000000ull),
    T("down_packets_s", down.packets_s, 0, 10000000),
    T("down_packets_burst", down.packets_burst, 0, 10000000),
    T("down_bits_s", down.bits_s, 0, 100000000000ull),
    T("down_bits_burst", down.bits_burst, 0, 10000000000ull),
    T("signal_packets_s", signal_packets_s, 50, 10000000),
    T("signal_packets_burst", signal_packets_burst, 50, 10000000),
    T("max_tunnels", max_tunnels, 0, 1000000),
    T("max_tunnels_per_user", max_tunnels_per_user, 0, 1000000),
    T("bits_s", bits_s, 0, 1000000000000ull),
    T("bits_burst", bits_burst, 0, 10000000000ull),
    T("retry_after_s", retry_after_s, 5, 3600),
#undef T
};
#define NTLIMITS (sizeof tlimit_specs / sizeof tlimit_specs[0])

/* A burst left at 0 under a rate is one second of that rate. */
static void burst_default(uint64_t rate, uint64_t *burst)
{
    if (rate && !*burst)
        *burst = rate < 10000000000ull ? rate : 10000000000ull;
}

static int tenant_limits_parse(vctx_t *c, const json_t *v, cfg_tenant_limits_t *l)
{
    const char *names[NTLIMITS];
    const json_t *f[NTLIMITS];
    for (size_t i = 0; i < NTLIMITS; i++) {
        names[i] = tlimit_specs[i].name;
        *(uint64_t *)(void *)((char *)l + tlimit_specs[i].off) = tlimit_specs[i].def;
    }
    if (v) {
        if (config__get_fields(c, v, "an object", names, NTLIMITS, f))
            return -1;
        for (size_t i = 0; i < NTLIMITS; i++) {
            if (!f[i])
                continue;
            size_t mark = config__path_push_key(c, names[i], strlen(names[i]));
            if (config__get_uint(c, f[i], 0, tlimit_specs[i].max,
                                 (uint64_t *)(void *)((char *)l + tlimit_specs[i].off)))
                return -1;
            config__path_pop(c, mark);
        }
    }
    burst_default(l->up.packets_s, &l->up.packets_burst);
    burst_default(l->up.bits_s, &l->up.bits_burst);
    burst_default(l->down.packets_s, &l->down.packets_burst);
    burst_default(l->down.bits_s, &l->down.bits_burst);
    burst_default(l->signal_packets_s, &l->signal_packets_burst);
    burst_default(l->bits_s, &l->bits_burst);
    return 0;
}

static int tenant_parse(vctx_t *c, const json_t *v, const config_t *cfg, cfg_tenant_t *t)
{
    static const char *const names[] = {"id",      "secrets", "hash",  "max_ttl",
                                        "regions", "kinds",   "limits"};
    enum { F_ID, F_SECRETS, F_HASH, F_TTL, F_REGIONS, F_KINDS, F_LIMITS, F_COUNT };
    const json_t *f[F_COUNT];
    char d[QBUF];
    if (config__get_fields(c, v, "a tenant object", names, F_COUNT, f) ||
        config__require(c, f[F_ID], "id") || config__require(c, f[F_SECRETS], "secrets") ||
        config__require(c, f[F_REGIONS], "regions"))
        return -1;

    const char *s;
    size_t len;
    size_t mark = config__path_push_key(c, "id", 2);
    if (config__get_string(c, f[F_ID], "a tenant id", &s, &len))
        return -1;
    if (!name_valid(s, len))
        return config__fail(c,
                            "%s is not a valid tenant id (1 to 64 characters of A-Z a-z 0-9 . _ -)",
                            config__quote(s, len, d, sizeof d));
    t->id = json_strdup(s, len);
    if (!t->id)
        return config__nomem(c);
    config__path_pop(c, mark);

    config__path_push_key(c, "secrets", 7);
    if (secrets_parse(c, f[F_SECRETS], t))
        return -1;
    config__path_pop(c, mark);

    t->hash = CRED_SHA1;
    if (f[F_HASH]) {
        const json_t *h = f[F_HASH];
        config__path_push_key(c, "hash", 4);
        if (h->type == JSON_STRING && h->len == 6 && !memcmp(h->str, "sha256", 6))
            t->hash = CRED_SHA256;
        else if (!(h->type == JSON_STRING && h->len == 4 && !memcmp(h->str, "sha1", 4)))
            return config__fail(c, "expected \"sha1\" or \"sha256\", got %s",
                                config__describe(h, d, sizeof d));
        config__path_pop(c, mark);
    }

    t->max_ttl = 86400;
    if (f[F_TTL]) {
        config__path_push_key(c, "max_ttl", 7);
        if (config__get_uint(c, f[F_TTL], 1, 31536000, &t->max_ttl))
            return -1;
        config__path_pop(c, mark);
    }

    config__path_push_key(c, "regions", 7);
    if (tenant_regions_parse(c, f[F_REGIONS], cfg, t))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "kinds", 5);
    if (kinds_parse(c, f[F_KINDS], t))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "limits", 6);
    if (tenant_limits_parse(c, f[F_LIMITS], &t->limits))
        return -1;
    config__path_pop(c, mark);
    return 0;
}

typedef struct tenant_order {
    const char *id;
    size_t idx; /* position in the document */
} tenant_order_t;

static int tenant_order_cmp(const void *a, const void *b)
{
    const tenant_order_t *x = a, *y = b;
    int r = strcmp(x->id, y->id);
    return r ? r : (x->idx > y->idx) - (x->idx < y->idx);
}

/* The tenants, from the file's "tenants" array (labels NULL: errors say
 * "$.tenants[i]...") or from a store (labels[i] names where items[i] came
 * from, e.g. its etcd key; errors say "<label>: $.secrets..."). */
int config__tenants_build(vctx_t *c, const json_t *const *items, size_t n,
                          const char *const *labels, config_t *cfg)
{
    char d[QBUF];
    if (n == 0)
        return 0;
    cfg->tenants = calloc(n, sizeof *cfg->tenants);
    if (!cfg->tenants)
        return config__nomem(c);
    cfg->ntenants = n;
    vctx_t sub = *c; /* a store's tenant is a document of its own: path "$" */
    for (size_t i = 0; i < n; i++) {
        vctx_t *vc = c;
        size_t mark = 0;
        if (labels) {
            sub.label = labels[i];
            snprintf(sub.path, sizeof sub.path, "$");
            sub.plen = 1;
            vc = &sub;
        } else {
            mark = config__path_push_index(c, i);
        }
        if (tenant_parse(vc, items[i], cfg, &cfg->tenants[i]))
            return -1;
        if (!labels)
            config__path_pop(c, mark);
    }

    /* Sort by id for binary search, finding repeated ids on the way. */
    tenant_order_t *order = malloc(n * sizeof *order);
    cfg_tenant_t *sorted = malloc(n * sizeof *sorted);
    if (!order || !sorted) {
        free(order);
        free(sorted);
        return config__nomem(c);
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (tenant_order_t){cfg->tenants[i].id, i};
    qsort(order, n, sizeof *order, tenant_order_cmp);
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(order[i - 1].id, order[i].id)) {
            config__quote(order[i].id, strlen(order[i].id), d, sizeof d);
            if (labels) {
                sub.label = labels[order[i].idx];
                snprintf(sub.path, sizeof sub.path, "$.id");
                sub.plen = 4;
                config__fail(&sub, "duplicate tenant id %s (also %s)", d, labels[order[i - 1].idx]);
            } else {
                config__path_push_index(c, order[i].idx);
                config__path_push_key(c, "id", 2);
                config__fail(c, "duplicate tenant id %s (also $.tenants[%zu].id)", d,
                             order[i - 1].idx);
            }
            free(order);
            free(sorted);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = cfg->tenants[order[i].idx];
    free(cfg->tenants);
    cfg->tenants = sorted;
    free(order);
    return 0;
}

int config__tenants_parse(vctx_t *c, const json_t *v, config_t *cfg)
{
    char d[QBUF];
    if (v->type != JSON_ARRAY)
        return config__fail(c, "expected an array of tenant objects, got %s",
                            config__describe(v, d, sizeof d));
    return config__tenants_build(c, (const json_t *const *)v->items, v->n, NULL, cfg);
}

/* ------------------------------------------------------------------------ */
/* Where the tenants come from: $.tenant_store                                */

#define STORE_ENDPOINTS_MAX 16u
#define STORE_PREFIX_MAX 256u

#define STORE_LEASE_TTL_S 10u
#define STORE_MEMBERS_PREFIX "/sluice/members/"

/* "tenant_store": {"type": "file", "path": "tenants.json"} or
 * {"type": "etcd", "endpoints": ["http://host:port", ...], "prefix": "/...",
 * "members_prefix": "/...", "lease_ttl_s": 10} (the last two: gateway/fleet.h).
 * Without it the tenants are $.tenants of this file (CFG_STORE_INLINE). */
int config__store_parse(vctx_t *c, const json_t *v, cfg_store_t *st)
{
    static const char *const names[] = {"type",   "path",           "endpoints",
                                        "prefix", "members_prefix", "lease_ttl_s"};
    enum { F_TYPE, F_PATH, F_ENDPOINTS, F_PREFIX, F_MEMBERS, F_TTL, F_COUNT };
    const json_t *f[F_COUNT];
    char d[QBUF];
    const char *s;
    size_t len;
    if (config__get_fields(c, v, "a tenant store object", names, F_COUNT, f) ||
        config__require(c, f[F_TYPE], "type"))
        return -1;
    size_t mark = config__path_push_key(c, "type", 4);
    if (config__get_string(c, f[F_TYPE], "\"file\" or \"etcd\"", &s, &len))
        return -1;
    if (len == 4 && !memcmp(s, "file", 4)) {
        config__path_pop(c, mark);
        for (size_t i = F_ENDPOINTS; i <= F_TTL; i++) {
            if (f[i]) {
                config__path_push_key(c, names[i], strlen(names[i]));
                return config__fail(c, "only for type \"etcd\"");
            }
        }
        if (config__require(c, f[F_PATH], "path"))
            return -1;
        config__path_push_key(c, "path", 4);
        if (config__file_parse(c, f[F_PATH], &st->path))
            return -1;
        config__path_pop(c, mark);
        st->type = CFG_STORE_FILE;
        return 0;
    }
    if (!(len == 4 && !memcmp(s, "etcd", 4)))
        return config__fail(c, "expected \"file\" or \"etcd\", got %s",
                            config__quote(s, len, d, sizeof d));
    config__path_pop(c, mark);
    if (f[F_PATH]) {
        config__path_push_key(c, "path", 4);
        return config__fail(c, "only for type \"file\"");
    }
    st->type = CFG_STORE_ETCD;
    if (config__require(c, f[F_ENDPOINTS], "endpoints") ||
        config__require(c, f[F_PREFIX], "prefix"))
        return -1;
    config__path_push_key(c, "endpoints", 9);
    const json_t *e = f[F_ENDPOINTS];
    if (e->type != JSON_ARRAY || e->n == 0 || e->n > STORE_ENDPOINTS_MAX)
        return config__fail(c, "expected an array of 1 to %u \"http://host:port\" URLs, got %s",
                            STORE_ENDPOINTS_MAX, config__describe(e, d, sizeof d));
    st->endpoints = calloc(e->n, sizeof *st->endpoints);
    if (!st->endpoints)
        return config__nomem(c);
    st->nendpoints = e->n;
    for (size_t i = 0; i < e->n; i++) {
        size_t m2 = config__path_push_index(c, i);
        if (config__get_string(c, e->items[i], "a \"http://host:port\" URL", &s, &len))
            return -1;
        if (!((len > 7 && !memcmp(s, "http://", 7)) || (len > 8 && !memcmp(s, "https://", 8))))
            return config__fail(c, "expected an http:// or https:// URL, got %s",
                                config__quote(s, len, d, sizeof d));
        while (len > 0 && s[len - 1] == '/')
            len--; /* request paths are appended: "/v3/kv/range" */
        st->endpoints[i] = json_strdup(s, len);
        if (!st->endpoints[i])
            return config__nomem(c);
        config__path_pop(c, m2);
    }
    config__path_pop(c, mark);
    config__path_push_key(c, "prefix", 6);
    if (config__get_string(c, f[F_PREFIX], "a non-empty key prefix such as \"/sluice/tenants/\"",
                           &s, &len))
        return -1;
    if (len > STORE_PREFIX_MAX)
        return config__fail(c, "longer than %u bytes", STORE_PREFIX_MAX);
    st->prefix = json_strdup(s, len);
    if (!st->prefix)
        return config__nomem(c);
    config__path_pop(c, mark);
    s = STORE_MEMBERS_PREFIX;
    len = strlen(s);
    if (f[F_MEMBERS]) {
        config__path_push_key(c, "members_prefix", 14);
        if (config__get_string(c, f[F_MEMBERS],
                               "a non-empty key prefix such as \"/sluice/members/\"", &s, &len))
            return -1;
        if (len > STORE_PREFIX_MAX)
            return config__fail(c, "longer than %u bytes", STORE_PREFIX_MAX);
        config__path_pop(c, mark);
    }
    st->members_prefix = json_strdup(s, len);
    if (!st->members_prefix)
        return config__nomem(c);
    uint64_t ttl = STORE_LEASE_TTL_S;
    if (f[F_TTL]) {
        /* etcd raises a TTL under its minimum (2 s by default) to it. */
        config__path_push_key(c, "lease_ttl_s", 11);
        if (config__get_uint(c, f[F_TTL], 2, 3600, &ttl))
            return -1;
        config__path_pop(c, mark);
    }
    st->lease_ttl_s = (uint32_t)ttl;
    return 0;
}

#define NODE_ID_MAX 128u /* gateway/fleet.h FLEET_NODE_ID_MAX */

/* "node": {"id": "gw-eu-1"}: this gateway's name in the fleet that shares
 * the tenants' limits (an object, so that more about the node can join
 * later). The id becomes an etcd key's last segment: [A-Za-z0-9._-] only. */
/* "host:port" with a port of 1 to 65535 and a host of DNS name characters,
 * or an IPv6 literal in brackets: it goes into a tunnel-node response field
 * as it is, so nothing else may pass. */
static int node_address_ok(const char *s, size_t len)
{
    const char *colon = NULL;
    for (size_t i = len; i-- > 0;)
        if (s[i] == ':') {
            colon = s + i;
            break;
        }
    if (!colon || colon == s || (size_t)(s + len - colon - 1) - 1 >= 5)
        return 0;
    unsigned long port = 0;
    for (const char *p = colon + 1; p < s + len; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port == 0 || port > 65535)
        return 0;
    size_t hlen = (size_t)(colon - s);
    int v6 = s[0] == '[';
    if (v6 && (hlen < 3 || s[hlen - 1] != ']'))
        return 0;
    for (size_t i = v6; i < hlen - v6; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '-' || (v6 && ch == ':');
        if (!ok)
            return 0;
    }
    return 1;
}

int config__node_parse(vctx_t *c, const json_t *v, cfg_node_t *node)
{
    static const char *const names[] = {"id", "address"};
    const json_t *f[2];
    char d[QBUF];
    const char *s;
    size_t len, mark;
    if (config__get_fields(c, v, "a node object", names, 2, f))
        return -1;
    if (f[1]) {
        mark = config__path_push_key(c, "address", 7);
        if (config__get_string(c, f[1], "\"host:port\" such as \"gw-2.example.net:443\"", &s,
                               &len))
            return -1;
        if (len > CFG_NODE_ADDRESS_MAX || !node_address_ok(s, len))
            return config__fail(c, "expected \"host:port\" such as \"gw-2.example.net:443\", "
                                   "got %s", config__quote(s, len, d, sizeof d));
        if (!f[0])
            return config__fail(c, "needs $.node.id: the address is found by the id's tag");
        node->address = json_strdup(s, len);
        if (!node->address)
            return config__nomem(c);
        config__path_pop(c, mark);
    }
    if (!f[0])
        return 0; /* "<hostname>-<pid>" (fleet.c) */
    mark = config__path_push_key(c, "id", 2);
    if (config__get_string(c, f[0], "a node id such as \"gw-eu-1\"", &s, &len))
        return -1;
    if (len > NODE_ID_MAX)
        return config__fail(c, "longer than %u bytes", NODE_ID_MAX);
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return config__fail(c, "expected letters, digits, '.', '_' and '-' only, got %s",
                                config__quote(s, len, d, sizeof d));
    node->id = json_strdup(s, len);
    if (!node->id)
        return config__nomem(c);
    config__path_pop(c, mark);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The snapshot's tenant fields                                               */

/* What an unknown tenant's credential check must cost to look like a known
 * one's: as many HMACs as the tenant with the most secrets, with the hash
 * most tenants use. */
void config__credential_work(config_t *cfg)
{
    size_t sha256 = 0;
    cfg->max_secrets = 1;
    for (size_t i = 0; i < cfg->ntenants; i++) {
        if (cfg->tenants[i].nsecrets > cfg->max_secrets)
            cfg->max_secrets = cfg->tenants[i].nsecrets;
        sha256 += cfg->tenants[i].hash == CRED_SHA256;
    }
    cfg->decoy_hash = 2 * sha256 >= cfg->ntenants && sha256 ? CRED_SHA256 : CRED_SHA1;
}

void config__tenants_free(config_t *cfg)
{
    for (size_t i = 0; cfg->tenants && i < cfg->ntenants; i++) {
        cfg_tenant_t *t = &cfg->tenants[i];
        free(t->id);
        for (size_t j = 0; t->secrets && j < t->nsecrets; j++)
            free((void *)t->secrets[j].key);
        free(t->secrets);
        for (size_t j = 0; t->regions && j < t->nregions; j++)
            free(t->regions[j]);
        free(t->regions);
    }
    free(cfg->tenants);
    for (size_t i = 0; cfg->admin.tokens && i < cfg->admin.ntokens; i++) {
        free(cfg->admin.tokens[i].token);
        free(cfg->admin.tokens[i].tenant);
    }
    free(cfg->admin.tokens);
    free(cfg->store.path);
    for (size_t i = 0; cfg->store.endpoints && i < cfg->store.nendpoints; i++)
        free(cfg->store.endpoints[i]);
    free(cfg->store.endpoints);
    free(cfg->store.prefix);
    free(cfg->store.members_prefix);
    free(cfg->node.id);
    free(cfg->node.address);
}

/* ------------------------------------------------------------------------ */
/* Admin API access: $.admin                                                  */

static unsigned addr_port(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
}

/* admin: {"listen": "host:port", "tokens": [{"token": "...", "tenant": "id"}]} */
int config__admin_parse(vctx_t *c, const json_t *v, config_t *cfg)
{
    static const char *const names[] = {"listen", "tokens"};
    const json_t *f[2];
    char d[QBUF];
    if (config__get_fields(c, v, "an object with \"listen\" and \"tokens\"", names, 2, f) ||
        config__require(c, f[0], "listen") || config__require(c, f[1], "tokens"))
        return -1;
    size_t mark = config__path_push_key(c, "listen", 6);
    if (config__get_addr(c, f[0], ADDR_LISTEN, &cfg->admin.listen))
        return -1;
    /* The admin API never shares the public port (issue 7 §2). */
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const cfg_addr_t *a = &cfg->listen[i];
        if (a->len == cfg->admin.listen.len &&
            !memcmp(&a->sa, &cfg->admin.listen.sa, a->len) &&
            addr_port(&a->sa) != 0)
            return config__fail(
                c,
                "%s is a public listen address ($.listen[%zu]); the admin API needs "
                "its own (loopback or internal) address",
                config__describe(f[0], d, sizeof d), i);
    }
    config__path_pop(c, mark);
    config__path_push_key(c, "tokens", 6);
    const json_t *t = f[1];
    if (t->type != JSON_ARRAY || t->n == 0)
        return config__fail(c, "expected a non-empty array of token objects, got %s",
                            config__describe(t, d, sizeof d));
    cfg->admin.tokens = calloc(t->n, sizeof *cfg->admin.tokens);
    if (!cfg->admin.tokens)
        return config__nomem(c);
    cfg->admin.ntokens = t->n;
    for (size_t i = 0; i < t->n; i++) {
        static const char *const tnames[] = {"token", "tenant"};
        const json_t *tf[2];
        size_t m2 = config__path_push_index(c, i);
        if (config__get_fields(c, t->items[i], "a token object", tnames, 2, tf) ||
            config__require(c, tf[0], "token"))
            return -1;
        const char *s;
        size_t len;
        size_t m3 = config__path_push_key(c, "token", 5);
        if (config__get_string(c, tf[0], "a token string", &s, &len))
            return -1;
        if (len < 16)
            return config__fail(c, "a token must be at least 16 characters");
        if (memchr(s, '\0', len))
            return config__fail(c, "a token must not contain NUL");
        cfg->admin.tokens[i].token = json_strdup(s, len);
        cfg->admin.tokens[i].len = len;
        if (!cfg->admin.tokens[i].token)
            return config__nomem(c);
        config__path_pop(c, m3);
        if (tf[1]) {
            config__path_push_key(c, "tenant", 6);
            if (config__get_string(c, tf[1], "a tenant id", &s, &len))
                return -1;
            if (!name_valid(s, len))
                return config__fail(c, "%s is not a valid tenant id",
                                    config__quote(s, len, d, sizeof d));
            cfg->admin.tokens[i].tenant = json_strdup(s, len);
            if (!cfg->admin.tokens[i].tenant)
                return config__nomem(c);
        }
        config__path_pop(c, m2);
    }
    cfg->admin.enabled = 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The store file                                                             */

#define TENANTS_FILE_MAX (4u * 1024u * 1024u) /* bytes */

/* The tenant store's document, {"revision": N, "tenants": [...]}: from
 * config_retenant, or read from the file. Errors name the file and the path
 * inside it. */
int config__store_tenants_parse(vctx_t *c, config_t *cfg)
{
    char *buf = NULL;
    size_t n = 0;
    const char *doc = c->tenants_doc;
    if (!doc) {
        FILE *fp = fopen(cfg->store.path, "rb");
        if (!fp) {
            config__path_push_key(c, "tenant_store", 12);
            config__path_push_key(c, "path", 4);
            return config__fail(c, "tenant store %s: %s", cfg->store.path, strerror(errno));
        }
        buf = malloc(TENANTS_FILE_MAX + 1);
        n = buf ? fread(buf, 1, TENANTS_FILE_MAX + 1, fp) : 0;
        int bad = !buf || ferror(fp);
        fclose(fp);
        if (bad || n > TENANTS_FILE_MAX) {
            free(buf);
            return config__fail(c, "tenant store %s: %s", cfg->store.path,
                                bad ? "cannot read it" : "larger than 4 MiB");
        }
        doc = buf;
    } else {
        n = c->tenants_len;
    }

    /* Validate inside the document with its own path, then prefix the file. */
    vctx_t t = {.path = "$", .plen = 1, .base_dir = c->base_dir, .store_doc = 1};
    char terr[512] = "";
    t.err = terr;
    t.errlen = sizeof terr;
    char msg[256];
    int rc = -1;
    json_t *root = json_parse(doc, n, msg, sizeof msg);
    if (!root) {
        config__fail(&t, "%s", msg);
    } else {
        static const char *const names[] = {"revision", "tenants"};
        const json_t *f[2];
        if (!config__get_fields(&t, root, "an object with \"revision\" and \"tenants\"", names, 2,
                                f) &&
            !config__require(&t, f[1], "tenants")) {
            size_t mark = config__path_push_key(&t, "revision", 8);
            if (!f[0] || !config__get_uint(&t, f[0], 0, UINT64_MAX / 2, &cfg->tenants_revision)) {
                config__path_pop(&t, mark);
                config__path_push_key(&t, "tenants", 7);
                rc = config__tenants_parse(&t, f[1], cfg);
            }
        }
    }
    json_free(root);
    free(buf);
    if (rc && c->errlen)
        snprintf(c->err, c->errlen, "tenant store %s: %s", cfg->store.path, terr);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Public tenant lookups                                                      */

size_t config_tenant_limit_count(void)
{
    return NTLIMITS;
}

const char *config_tenant_limit(size_t i, const cfg_tenant_limits_t *l, uint64_t *val)
{
    *val = *(const uint64_t *)(const void *)((const char *)l + tlimit_specs[i].off);
    return tlimit_specs[i].name;
}

int config_kind_parse(const char *s, size_t len)
{
    if (len == 3 && !memcmp(s, "sfu", 3))
        return TUNNEL_KIND_SFU;
    if (len == 4 && !memcmp(s, "turn", 4))
        return TUNNEL_KIND_TURN;
    return -1;
}

const char *config_kind_name(enum tunnel_kind kind)
{
    switch (kind) {
    case TUNNEL_KIND_SFU:
        return "sfu";
    case TUNNEL_KIND_TURN:
        return "turn";
    default:
        return "?";
    }
}

int config_tenant_in_region(const cfg_tenant_t *t, const char *region)
{
    for (size_t i = 0; i < t->nregions; i++)
        if (!strcmp(t->regions[i], region))
            return 1;
    return 0;
}
