/*
 * ts_config.c — render gateway configs as JSON; mint credentials.
 */
#include "ts_config.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_util.h"

/* Appends ["a","b",...] from a NULL-terminated array (at most TS_CFG_MAX). */
static int str_array(char *out, size_t cap, size_t *pos, const char *const *items, size_t max)
{
    if (ts_appendf(out, cap, pos, "[") < 0)
        return -1;
    for (size_t i = 0; i < max && items[i]; i++) {
        if ((i && ts_appendf(out, cap, pos, ",") < 0) || ts_json_str(out, cap, pos, items[i]) < 0)
            return -1;
    }
    return ts_appendf(out, cap, pos, "]");
}

static int pool(char *out, size_t cap, size_t *pos, int *first, const char *key,
                const char **addrs, const char *health)
{
    if (!addrs)
        return 0;
    if (!*first && ts_appendf(out, cap, pos, ",") < 0)
        return -1;
    *first = 0;
    if (ts_json_str(out, cap, pos, key) < 0 || ts_appendf(out, cap, pos, ":") < 0)
        return -1;
    if (!health)
        return str_array(out, cap, pos, addrs, 64);
    if (ts_appendf(out, cap, pos, "{\"backends\":") < 0 || str_array(out, cap, pos, addrs, 64) < 0)
        return -1;
    return ts_appendf(out, cap, pos, ",%s}", health);
}

static int tenant(char *out, size_t cap, size_t *pos, const ts_tenant_t *t)
{
    if (ts_appendf(out, cap, pos, "{\"id\":") < 0 || ts_json_str(out, cap, pos, t->id) < 0 ||
        ts_appendf(out, cap, pos, ",\"secrets\":") < 0 ||
        str_array(out, cap, pos, t->secrets, TS_CFG_MAX) < 0)
        return -1;
    if (t->hash && (ts_appendf(out, cap, pos, ",\"hash\":") < 0 ||
                    ts_json_str(out, cap, pos, t->hash) < 0))
        return -1;
    if (t->max_ttl && ts_appendf(out, cap, pos, ",\"max_ttl\":%u", t->max_ttl) < 0)
        return -1;
    if (ts_appendf(out, cap, pos, ",\"regions\":") < 0 ||
        str_array(out, cap, pos, t->regions, TS_CFG_MAX) < 0 ||
        ts_appendf(out, cap, pos, ",\"kinds\":") < 0 ||
        str_array(out, cap, pos, t->kinds, TS_CFG_MAX) < 0)
        return -1;
    if (t->limits_json && ts_appendf(out, cap, pos, ",\"limits\":%s", t->limits_json) < 0)
        return -1;
    return ts_appendf(out, cap, pos, "}");
}

int ts_config_render(const ts_config_t *c, char *out, size_t cap)
{
    char cert[PATH_MAX], key[PATH_MAX];
    const char *cert_path = c->cert, *key_path = c->key;
    if (!cert_path) {
        if (ts_build_path(c->build, "dev/cert.pem", cert, sizeof cert) < 0)
            return -1;
        cert_path = cert;
    }
    if (!key_path) {
        if (ts_build_path(c->build, "dev/key.pem", key, sizeof key) < 0)
            return -1;
        key_path = key;
    }
    static const char *const default_listen[] = {"127.0.0.1:0", NULL};
    const char *const *listen = c->listen[0] ? c->listen : default_listen;

    size_t pos = 0;
    if (ts_appendf(out, cap, &pos, "{\"listen\":") < 0 ||
        str_array(out, cap, &pos, listen, TS_CFG_MAX) < 0 ||
        ts_appendf(out, cap, &pos, ",\"tls\":{\"cert\":") < 0 ||
        ts_json_str(out, cap, &pos, cert_path) < 0 ||
        ts_appendf(out, cap, &pos, ",\"key\":") < 0 ||
        ts_json_str(out, cap, &pos, key_path) < 0 ||
        ts_appendf(out, cap, &pos, "},\"region\":") < 0 ||
        ts_json_str(out, cap, &pos, c->region ? c->region : "local") < 0 ||
        ts_appendf(out, cap, &pos, ",\"regions\":{") < 0)
        return -1;
    for (size_t i = 0; i < TS_CFG_MAX && c->regions[i].name; i++) {
        const ts_region_t *r = &c->regions[i];
        int first = 1;
        if ((i && ts_appendf(out, cap, &pos, ",") < 0) ||
            ts_json_str(out, cap, &pos, r->name) < 0 || ts_appendf(out, cap, &pos, ":{") < 0 ||
            pool(out, cap, &pos, &first, "sfu", r->sfu, r->sfu_health) < 0 ||
            pool(out, cap, &pos, &first, "turn", r->turn, r->turn_health) < 0 ||
            ts_appendf(out, cap, &pos, "}") < 0)
            return -1;
    }
    if (ts_appendf(out, cap, &pos, "},\"tenants\":[") < 0)
        return -1;
    for (size_t i = 0; i < TS_CFG_MAX && c->tenants[i].id; i++) {
        if ((i && ts_appendf(out, cap, &pos, ",") < 0) || tenant(out, cap, &pos, &c->tenants[i]) < 0)
            return -1;
    }
    if (ts_appendf(out, cap, &pos, "]") < 0)
        return -1;
    if (c->limits_json && ts_appendf(out, cap, &pos, ",\"limits\":%s", c->limits_json) < 0)
        return -1;
    if (c->admin_json && ts_appendf(out, cap, &pos, ",\"admin\":%s", c->admin_json) < 0)
        return -1;
    unsigned workers = c->workers;
    const char *env = getenv("TS_WORKERS");
    if (!workers && env && *env)
        workers = (unsigned)strtoul(env, NULL, 10); /* the gateway validates it */
    if (ts_appendf(out, cap, &pos, ",\"workers\":%u", workers ? workers : 1u) < 0)
        return -1;
    if (ts_appendf(out, cap, &pos, "}\n") < 0)
        return -1;
    return (int)pos;
}

void ts_config_turn(ts_config_t *c, const char *turn_addr)
{
    static char addr[64];
    static const char *turn_pool[2] = {addr, NULL};
    snprintf(addr, sizeof addr, "%s", turn_addr);
    memset(c, 0, sizeof *c);
    c->listen[0] = "127.0.0.1:0";
    c->region = "local";
    c->regions[0] = (ts_region_t){.name = "local", .turn = turn_pool};
    c->tenants[0] = (ts_tenant_t){
        .id = TS_TURN_TENANT,
        .secrets = {TS_TURN_SECRET},
        .hash = "sha1",
        .regions = {"local"},
        .kinds = {"turn"},
    };
}

int ts_config_write_raw(const char *text, char *path, size_t cap)
{
    if (ts_tmppath("sluiced.json", path, cap) < 0)
        return -1;
    return ts_write_file(path, text, strlen(text));
}

int ts_config_write(const ts_config_t *c, char *path, size_t cap)
{
    char json[16384];
    if (ts_config_render(c, json, sizeof json) < 0)
        return -1;
    return ts_config_write_raw(json, path, cap);
}

int ts_cred_mint(enum cred_hash hash, const char *secret, int64_t ttl_s, const char *user,
                 char *username, size_t ucap, char *credential, size_t ccap)
{
    int64_t expiry = (int64_t)time(NULL) + ttl_s;
    if (expiry < 0)
        expiry = 0;
    int n = user ? snprintf(username, ucap, "%" PRId64 ":%s", expiry, user)
                 : snprintf(username, ucap, "%" PRId64, expiry);
    if (n < 0 || (size_t)n >= ucap)
        return -1;
    ssize_t c = cred_sign(hash, (const uint8_t *)secret, strlen(secret), username, (size_t)n,
                          credential, ccap);
    return c < 0 ? -1 : 0;
}
