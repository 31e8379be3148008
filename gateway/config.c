/*
 * config.c — JSON file -> immutable config_t snapshot (see config.h and
 * docs/configuration.md, which lists every key and every error).
 *
 * Two steps. yajl's event parser feeds a small private tree (json_t) that keeps
 * string lengths and key order; then the validator walks the tree against the
 * schema, building the snapshot and stopping at the first problem with its
 * JSON path ("$.tenants[1].secrets: ..."). yajl_tree is not used because it
 * NUL-terminates strings without a length (a "\u0000" inside a secret would
 * silently shorten the HMAC key) and reports syntax errors as a multi-line
 * excerpt with no position.
 *
 * Every allocation belongs to the snapshot as soon as it is made (arrays are
 * calloc'd and their count set at once), so any error path just calls
 * config_free on the half-built snapshot.
 *
 * This file holds the validation context's helpers (shared with
 * config_tenant.c through config_internal.h), addresses, listen/tls/limits,
 * pools and regions, the root object and the public entry points. The tenant
 * model, its store and admin access are in config_tenant.c.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../proto/hostport.h"
#include "../proto/name.h"
#include "config_internal.h"
#include "json.h"

#define CONFIG_FILE_MAX (1024u * 1024u) /* bytes; a real config is a few KiB */
#define LISTEN_MAX 64u
#define HOST_LEN_MAX 253u               /* RFC 1035 §2.3.4, dotted text form */

/* ------------------------------------------------------------------------ */
/* Validation context: the JSON path being looked at and the error buffer.   */

/* Writes "<path>: <message>" into the error buffer; returns -1. */
int config__fail(vctx_t *c, const char *fmt, ...)
{
    if (c->errlen) {
        int n = c->label ? snprintf(c->err, c->errlen, "%s: %s: ", c->label, c->path)
                         : snprintf(c->err, c->errlen, "%s: ", c->path);
        if (n > 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

/* Writes s as a JSON-ish quoted string, escaping quotes, backslashes and
 * non-printable bytes, cut at QUOTE_MAX bytes with "...". Returns buf. */
const char *config__quote(const char *s, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[8];
        size_t n;
        if (i == QUOTE_MAX) {
            memcpy(tmp, "...", 3);
            n = 3;
            i = len;
        } else if (ch == '"' || ch == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)ch;
            n = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", ch);
        } else {
            tmp[0] = (char)ch;
            n = 1;
        }
        if (o + n + 2 > cap)
            break;
        memcpy(buf + o, tmp, n);
        o += n;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}


/* Appends to the path; returns the old length for path_pop. Keys that are
 * not plain names, or that contain '.', use the bracket form ["a.b"]. */
size_t config__path_push_key(vctx_t *c, const char *key, size_t klen)
{
    size_t mark = c->plen;
    int plain = klen > 0 && klen <= QUOTE_MAX;
    for (size_t i = 0; plain && i < klen; i++)
        plain = name_char_valid((unsigned char)key[i]) && key[i] != '.';
    char q[QBUF];
    int n = plain ? snprintf(c->path + c->plen, sizeof c->path - c->plen, ".%.*s", (int)klen, key)
                  : snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%s]",
                             config__quote(key, klen, q, sizeof q));
    c->plen += n > 0 ? (size_t)n : 0;
    if (c->plen >= sizeof c->path)
        c->plen = sizeof c->path - 1;
    return mark;
}

size_t config__path_push_index(vctx_t *c, size_t i)
{
    size_t mark = c->plen;
    int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%zu]", i);
    c->plen += n > 0 ? (size_t)n : 0;
    if (c->plen >= sizeof c->path)
        c->plen = sizeof c->path - 1;
    return mark;
}

void config__path_pop(vctx_t *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

/* "got ..." text for a value of the wrong type or range. */
const char *config__describe(const json_t *v, char *buf, size_t cap)
{
    switch (v->type) {
    case JSON_NULL:
        return "null";
    case JSON_BOOL:
        return v->boolean ? "true" : "false";
    case JSON_NUMBER:
        snprintf(buf, cap, "%.*s", (int)(v->len < QUOTE_MAX ? v->len : QUOTE_MAX), v->str);
        return buf;
    case JSON_STRING:
        return config__quote(v->str, v->len, buf, cap);
    case JSON_ARRAY:
        return v->n ? "an array" : "an empty array";
    case JSON_OBJECT:
        return v->n ? "an object" : "an empty object";
    }
    return "?";
}

int config__nomem(vctx_t *c)
{
    return config__fail(c, "out of memory");
}

/* ------------------------------------------------------------------------ */
/* Typed accessors. Each reports at the current path.                        */

/* A non-empty string without NUL bytes. what: the expectation, for messages. */
int config__get_string(vctx_t *c, const json_t *v, const char *what, const char **s, size_t *len)
{
    char d[QBUF];
    if (v->type != JSON_STRING || v->len == 0)
        return config__fail(c, "expected %s, got %s", what, config__describe(v, d, sizeof d));
    if (memchr(v->str, '\0', v->len))
        return config__fail(c, "%s contains a NUL character",
                            config__quote(v->str, v->len, d, sizeof d));
    *s = v->str;
    *len = v->len;
    return 0;
}

/* A JSON integer literal (no fraction or exponent) in [min, max]. */
int config__get_uint(vctx_t *c, const json_t *v, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t val = 0;
    int ok = v->type == JSON_NUMBER && v->len > 0 && v->len <= 20;
    for (size_t i = 0; ok && i < v->len; i++) {
        unsigned dgt = (unsigned)(v->str[i] - '0');
        ok = dgt <= 9 && val <= (UINT64_MAX - dgt) / 10;
        val = val * 10 + dgt;
    }
    if (!ok || val < min || val > max) {
        char d[QBUF];
        return config__fail(c, "expected an integer from %llu to %llu, got %s",
                            (unsigned long long)min, (unsigned long long)max,
                            config__describe(v, d, sizeof d));
    }
    *out = val;
    return 0;
}

/* Matches an object's members against the known keys: each found value goes
 * to vals[i] (NULL when absent). Unknown and repeated keys are errors. */
int config__get_fields(vctx_t *c, const json_t *obj, const char *what, const char *const *names,
                       size_t nnames, const json_t **vals)
{
    char d[QBUF];
    if (obj->type != JSON_OBJECT)
        return config__fail(c, "expected %s, got %s", what, config__describe(obj, d, sizeof d));
    for (size_t k = 0; k < nnames; k++)
        vals[k] = NULL;
    for (size_t i = 0; i < obj->n; i++) {
        const json_member_t *m = &obj->members[i];
        size_t k = 0;
        while (k < nnames && !(strlen(names[k]) == m->klen && !memcmp(names[k], m->key, m->klen)))
            k++;
        size_t mark = config__path_push_key(c, m->key, m->klen);
        if (k == nnames) {
            char known[256] = "";
            for (size_t j = 0; j < nnames; j++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         j ? ", " : "", names[j]);
            return config__fail(c, "unknown key (expected one of: %s)", known);
        }
        if (vals[k])
            return config__fail(c, "duplicate key");
        config__path_pop(c, mark);
        vals[k] = m->val;
    }
    return 0;
}

int config__require(vctx_t *c, const json_t *v, const char *name)
{
    if (v)
        return 0;
    config__path_push_key(c, name, strlen(name));
    return config__fail(c, "required key is missing");
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */


static int all_digits_and_dots(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!(s[i] == '.' || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* "IPv4:port", "[IPv6]:port", "hostname:port" -> out (split by
 * proto/hostport, as the shim splits its addresses); "builtin:echo" only in
 * pools. Hostnames are resolved now (getaddrinfo, first result): the snapshot
 * holds addresses, never names, so no lookup happens while serving. */
static int addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24 ==
               127;
    return sa->sa_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
}

static int addr_parse(vctx_t *c, const char *s, size_t len, enum addr_use use, cfg_addr_t *out)
{
    char q[QBUF];
    config__quote(s, len, q, sizeof q);
    memset(out, 0, sizeof *out);
    if (len == 12 && !memcmp(s, "builtin:echo", 12)) {
        if (use != ADDR_BACKEND)
            return config__fail(c,
                                "\"builtin:echo\" is only allowed in a region's sfu or turn pool");
        out->builtin_echo = 1;
        return 0;
    }
    hostport_t hp;
    int rc = hostport_split(s, len, 0, &hp);
    if (rc == HOSTPORT_ERR_UNBRACKETED)
        return config__fail(c, "%s is not host:port (write an IPv6 address as [address]:port)", q);
    if (rc == HOSTPORT_ERR_PORT)
        return config__fail(c, "%s: the port must be an integer from 0 to 65535", q);
    if (rc != HOSTPORT_OK)
        return config__fail(c, "%s is not host:port", q);
    const char *host = hp.host;
    size_t hlen = hp.host_len;
    int v6 = hp.bracketed;
    if (hp.port == 0 && use == ADDR_BACKEND)
        return config__fail(c, "%s: port 0 is not allowed for a backend", q);

    char hbuf[HOST_LEN_MAX + 1], pbuf[8];
    if (hlen > HOST_LEN_MAX)
        return config__fail(c, "%s: the host name is longer than %u characters", q, HOST_LEN_MAX);
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';
    snprintf(pbuf, sizeof pbuf, "%u", (unsigned)hp.port);
    if (!v6) {
        for (size_t i = 0; i < hlen; i++)
            if (!name_char_valid((unsigned char)hbuf[i]))
                return config__fail(c, "%s: the host is neither an IP address nor a host name", q);
        /* getaddrinfo would take "10.1" as 10.0.0.1; only dotted quads here. */
        struct in_addr a4;
        if (all_digits_and_dots(hbuf, hlen) && inet_pton(AF_INET, hbuf, &a4) != 1)
            return config__fail(c, "%s: the host is not a valid IPv4 address", q);
    }

    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = v6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = use == ADDR_LISTEN ? SOCK_STREAM : SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV | (v6 ? AI_NUMERICHOST : 0);
    rc = getaddrinfo(hbuf, pbuf, &hints, &res);
    if (rc != 0) {
        if (v6)
            return config__fail(c, "%s: the host is not a valid IPv6 address", q);
        return config__fail(c, "%s: cannot resolve \"%s\": %s", q, hbuf,
                            rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    }
    if (res->ai_addrlen > sizeof out->sa) {
        freeaddrinfo(res);
        return config__fail(c, "%s: unsupported address family", q);
    }
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    /* The built-in echo reflects whatever reaches it: on any other address it
     * would be a reflector for anyone who can reach the host. */
    if (use == ADDR_ECHO && !addr_is_loopback((const struct sockaddr *)&out->sa))
        return config__fail(c, "%s: the built-in echo binds loopback only (127.0.0.0/8 or [::1])",
                            q);
    return 0;
}

int config__get_addr(vctx_t *c, const json_t *v, enum addr_use use, cfg_addr_t *out)
{
    const char *s;
    size_t len;
    if (config__get_string(c, v, "a \"host:port\" string", &s, &len))
        return -1;
    return addr_parse(c, s, len, use, out);
}

/* ------------------------------------------------------------------------ */
/* Snapshot                                                                  */

static void config_free(config_t *cfg)
{
    free(cfg->listen);
    free(cfg->cert_file);
    free(cfg->key_file);
    free(cfg->region);
    for (size_t i = 0; cfg->regions && i < cfg->nregions; i++) {
        free(cfg->regions[i].name);
        for (int k = 0; k < TUNNEL_KIND_COUNT; k++)
            free(cfg->regions[i].pools[k].addrs);
    }
    free(cfg->regions);
    config__tenants_free(cfg);
    free(cfg->_source);
    free(cfg->_base_dir);
    free(cfg);
}

/* Byte order of (name, len) against a NUL-terminated name; agrees with strcmp,
 * which sorts the arrays, because names contain no NUL. */
static int name_cmp(const char *name, size_t len, const char *s)
{
    size_t slen = strlen(s);
    int r = memcmp(name, s, len < slen ? len : slen);
    if (r)
        return r;
    return len < slen ? -1 : len > slen;
}

/* One $.listen entry: "host:port", or {"address": "host:port",
 * "proxy_protocol": true|false} to opt in to a PROXY protocol header from a
 * load balancer in front (docs/configuration.md). */
static int listen_entry_parse(vctx_t *c, const json_t *v, cfg_addr_t *a)
{
    static const char *const names[] = {"address", "proxy_protocol"};
    const json_t *f[2];
    char d[QBUF];
    if (v->type != JSON_OBJECT)
        return config__get_addr(c, v, ADDR_LISTEN, a);
    if (config__get_fields(c, v, "a listener object", names, 2, f) ||
        config__require(c, f[0], "address"))
        return -1;
    size_t mark = config__path_push_key(c, "address", 7);
    if (config__get_addr(c, f[0], ADDR_LISTEN, a))
        return -1;
    config__path_pop(c, mark);
    if (f[1]) {
        mark = config__path_push_key(c, "proxy_protocol", 14);
        if (f[1]->type != JSON_BOOL)
            return config__fail(c, "expected true or false, got %s",
                                config__describe(f[1], d, sizeof d));
        a->proxy_protocol = f[1]->boolean;
        config__path_pop(c, mark);
    }
    return 0;
}

static int listen_parse(vctx_t *c, const json_t *v, config_t *cfg)
{
    char d[QBUF];
    if (v->type != JSON_ARRAY || v->n == 0)
        return config__fail(c, "expected a non-empty array of \"host:port\" strings or "
                            "{\"address\": ..., \"proxy_protocol\": ...} objects, got %s",
                            config__describe(v, d, sizeof d));
    if (v->n > LISTEN_MAX)
        return config__fail(c, "at most %u listen addresses, got %zu", LISTEN_MAX, v->n);
    cfg->listen = calloc(v->n, sizeof *cfg->listen);
    if (!cfg->listen)
        return config__nomem(c);
    cfg->nlisten = v->n;
    for (size_t i = 0; i < v->n; i++) {
        size_t mark = config__path_push_index(c, i);
        cfg_addr_t *a = &cfg->listen[i];
        if (listen_entry_parse(c, v->items[i], a))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (a->len == cfg->listen[j].len && !memcmp(&a->sa, &cfg->listen[j].sa, a->len))
                return config__fail(c, "%s is listed twice (also $.listen[%zu])",
                                    config__describe(v->items[i], d, sizeof d), j);
        config__path_pop(c, mark);
    }
    return 0;
}

/* Relative paths are taken from base_dir (the config file's directory). */
int config__file_parse(vctx_t *c, const json_t *v, char **out)
{
    const char *s;
    size_t len;
    if (config__get_string(c, v, "a non-empty file path", &s, &len))
        return -1;
    const char *dir = c->base_dir;
    if (s[0] == '/' || !dir || !dir[0]) {
        *out = json_strdup(s, len);
    } else {
        size_t dlen = strlen(dir);
        int slash = dir[dlen - 1] != '/';
        *out = malloc(dlen + (size_t)slash + len + 1);
        if (*out) {
            memcpy(*out, dir, dlen);
            if (slash)
                (*out)[dlen] = '/';
            memcpy(*out + dlen + slash, s, len);
            (*out)[dlen + slash + len] = '\0';
        }
    }
    return *out ? 0 : config__nomem(c);
}

static int tls_parse(vctx_t *c, const json_t *v, config_t *cfg)
{
    static const char *const names[] = {"cert", "key"};
    const json_t *f[2];
    if (config__get_fields(c, v, "an object with \"cert\" and \"key\"", names, 2, f) ||
        config__require(c, f[0], "cert") || config__require(c, f[1], "key"))
        return -1;
    size_t mark = config__path_push_key(c, "cert", 4);
    if (config__file_parse(c, f[0], &cfg->cert_file))
        return -1;
    config__path_pop(c, mark);
    config__path_push_key(c, "key", 3);
    if (config__file_parse(c, f[1], &cfg->key_file))
        return -1;
    config__path_pop(c, mark);
    return 0;
}

enum limit_width { LIMIT_SIZE, LIMIT_U32 };

/* Ranges are documented in docs/configuration.md; keep the two in step. */
static const struct limit_spec {
    const char *name;
    size_t off;
    enum limit_width width;
    uint64_t def, min, max;
} limit_specs[] = {
#define L(field, w, def, min, max) {#field, offsetof(cfg_limits_t, field), w, def, min, max}
    L(max_capsule, LIMIT_SIZE, 65535, 1200, 1048576),
    L(max_streams, LIMIT_U32, 100, 1, 10000),
    L(max_connections, LIMIT_U32, 8192, 1, 1000000),
    L(media_queue_bytes, LIMIT_SIZE, 262144, 2048, 67108864),
    L(media_queue_age_ms, LIMIT_U32, 200, 1, 60000),
    L(signal_queue_bytes, LIMIT_SIZE, 65536, 2048, 67108864),
    L(tunnel_idle_ms, LIMIT_U32, 30000, 1, 86400000),
    /* RFC 8656 §3.2: a TURN allocation lives 600 s between refreshes. */
    L(turn_idle_ms, LIMIT_U32, 900000, 1, 86400000),
    L(handshake_timeout_ms, LIMIT_U32, 10000, 1, 600000),
    L(header_timeout_ms, LIMIT_U32, 10000, 1, 600000),
    L(conn_idle_ms, LIMIT_U32, 60000, 1, 86400000),
    L(deregister_ms, LIMIT_U32, 0, 0, 600000),
    L(drain_ms, LIMIT_U32, 30000, 0, 3600000),
    L(drain_timeout_ms, LIMIT_U32, 5000, 1, 600000),
    L(max_tunnels, LIMIT_U32, 8192, 1, 1000000),
    L(close_linger_ms, LIMIT_U32, 5000, 1, 600000),
    L(write_stall_ms, LIMIT_U32, 10000, 1, 600000),
    L(ping_interval_ms, LIMIT_U32, 5000, 1, 600000),
    L(ping_timeout_ms, LIMIT_U32, 10000, 1, 600000),
    L(max_auth_failures, LIMIT_U32, 5, 1, 1000),
    L(max_pending_per_source, LIMIT_U32, 64, 1, 1000000),
    L(handshakes_per_source_s, LIMIT_U32, 20, 1, 1000000),
    L(max_control_frames_s, LIMIT_U32, 1000, 10, 1000000),
    L(resume_grace_ms, LIMIT_U32, 30000, 0, 3600000),
    L(capsule_ping_ms, LIMIT_U32, 20000, 0, 600000),
    L(tcp_rcvbuf_bytes, LIMIT_SIZE, 131072, 0, 16777216),
    L(tcp_notsent_lowat_bytes, LIMIT_SIZE, 16384, 0, 16777216),
#undef L
};
#define NLIMITS (sizeof limit_specs / sizeof limit_specs[0])

static void limit_set(cfg_limits_t *l, const struct limit_spec *spec, uint64_t val)
{
    char *p = (char *)l + spec->off;
    if (spec->width == LIMIT_SIZE)
        *(size_t *)(void *)p = (size_t)val;
    else
        *(uint32_t *)(void *)p = (uint32_t)val;
}

static int limits_parse(vctx_t *c, const json_t *v, cfg_limits_t *l)
{
    const char *names[NLIMITS];
    const json_t *f[NLIMITS];
    for (size_t i = 0; i < NLIMITS; i++) {
        names[i] = limit_specs[i].name;
        limit_set(l, &limit_specs[i], limit_specs[i].def);
    }
    if (!v)
        return 0;
    if (config__get_fields(c, v, "an object", names, NLIMITS, f))
        return -1;
    for (size_t i = 0; i < NLIMITS; i++) {
        if (!f[i])
            continue;
        uint64_t val;
        size_t mark = config__path_push_key(c, names[i], strlen(names[i]));
        if (config__get_uint(c, f[i], limit_specs[i].min, limit_specs[i].max, &val))
            return -1;
        limit_set(l, &limit_specs[i], val);
        config__path_pop(c, mark);
    }
    return 0;
}

/* Ranges are documented in docs/configuration.md ("Backend health"); keep
 * the two in step. */
static const struct health_spec {
    const char *name;
    size_t off;
    uint32_t def, min, max;
} health_specs[] = {
#define H(field, def, min, max) {#field, offsetof(cfg_health_t, field), def, min, max}
    H(interval_ms, 2000, 100, 600000),
    H(timeout_ms, 1000, 10, 599999),
    H(down_after, 3, 1, 100),
    H(up_after, 2, 1, 100),
#undef H
};
#define NHEALTH (sizeof health_specs / sizeof health_specs[0])

static int addrs_parse(vctx_t *c, const json_t *v, cfg_pool_t *pool)
{
    char d[QBUF];
    if (v->type != JSON_ARRAY)
        return config__fail(
            c, "expected an array of \"host:port\" strings or \"builtin:echo\", got %s",
            config__describe(v, d, sizeof d));
    if (v->n == 0)
        return 0;
    if (v->n > CFG_POOL_MAX)
        return config__fail(c, "at most %u backends in a pool, got %zu", CFG_POOL_MAX, v->n);
    pool->addrs = calloc(v->n, sizeof *pool->addrs);
    if (!pool->addrs)
        return config__nomem(c);
    pool->n = v->n;
    for (size_t i = 0; i < v->n; i++) {
        size_t mark = config__path_push_index(c, i);
        if (config__get_addr(c, v->items[i], ADDR_BACKEND, &pool->addrs[i]))
            return -1;
        config__path_pop(c, mark);
    }
    return 0;
}

/* The probe settings of a pool written as an object (f: its members after
 * "backends", "probe"; NULL when absent). */
static int health_parse(vctx_t *c, const json_t *probe, const json_t *const *f,
                        cfg_health_t *h)
{
    char d[QBUF];
    for (size_t i = 0; i < NHEALTH; i++)
        *(uint32_t *)(void *)((char *)h + health_specs[i].off) = health_specs[i].def;
    h->probe = CFG_PROBE_STUN;
    if (probe) {
        size_t mark = config__path_push_key(c, "probe", 5);
        const char *s;
        size_t len;
        if (config__get_string(c, probe, "\"stun\" or \"none\"", &s, &len))
            return -1;
        if (len == 4 && !memcmp(s, "stun", 4))
            h->probe = CFG_PROBE_STUN;
        else if (len == 4 && !memcmp(s, "none", 4))
            h->probe = CFG_PROBE_NONE;
        else
            return config__fail(c, "expected \"stun\" or \"none\", got %s",
                                config__quote(s, len, d, sizeof d));
        config__path_pop(c, mark);
    }
    for (size_t i = 0; i < NHEALTH; i++) {
        if (!f[i])
            continue;
        uint64_t val;
        size_t mark = config__path_push_key(c, health_specs[i].name, strlen(health_specs[i].name));
        if (config__get_uint(c, f[i], health_specs[i].min, health_specs[i].max, &val))
            return -1;
        *(uint32_t *)(void *)((char *)h + health_specs[i].off) = (uint32_t)val;
        config__path_pop(c, mark);
    }
    if (h->timeout_ms >= h->interval_ms) {
        config__path_push_key(c, "timeout_ms", 10);
        return config__fail(c, "must be less than interval_ms (%u), got %u", h->interval_ms,
                            h->timeout_ms);
    }
    return 0;
}

/* A pool is an array of addresses (default probes), or an object with
 * "backends" (that array) and probe settings. */
static int pool_parse(vctx_t *c, const json_t *v, cfg_pool_t *pool)
{
    const json_t *none[NHEALTH] = {0};
    if (!v)
        return health_parse(c, NULL, none, &pool->health);
    if (v->type != JSON_OBJECT) {
        if (addrs_parse(c, v, pool))
            return -1;
        return health_parse(c, NULL, none, &pool->health);
    }
    const char *names[2 + NHEALTH] = {"backends", "probe"};
    const json_t *f[2 + NHEALTH];
    for (size_t i = 0; i < NHEALTH; i++)
        names[2 + i] = health_specs[i].name;
    if (config__get_fields(c, v, "an object", names, 2 + NHEALTH, f) ||
        config__require(c, f[0], "backends"))
        return -1;
    size_t mark = config__path_push_key(c, "backends", 8);
    if (addrs_parse(c, f[0], pool))
        return -1;
    config__path_pop(c, mark);
    return health_parse(c, f[1], f + 2, &pool->health);
}

static int region_cmp(const void *a, const void *b)
{
    return strcmp(((const cfg_region_t *)a)->name, ((const cfg_region_t *)b)->name);
}

static int regions_parse(vctx_t *c, const json_t *v, config_t *cfg)
{
    char d[QBUF];
    if (v->type != JSON_OBJECT || v->n == 0)
        return config__fail(c, "expected an object with at least one region, got %s",
                            config__describe(v, d, sizeof d));
    cfg->regions = calloc(v->n, sizeof *cfg->regions);
    if (!cfg->regions)
        return config__nomem(c);
    cfg->nregions = v->n;
    static const char *const names[TUNNEL_KIND_COUNT] = {"sfu", "turn"};
    for (size_t i = 0; i < v->n; i++) {
        const json_member_t *m = &v->members[i];
        cfg_region_t *r = &cfg->regions[i];
        size_t mark = config__path_push_key(c, m->key, m->klen);
        if (!name_valid(m->key, m->klen))
            return config__fail(
                c, "not a valid region name (1 to 64 characters of A-Z a-z 0-9 . _ -)");
        r->name = json_strdup(m->key, m->klen);
        if (!r->name)
            return config__nomem(c);
        const json_t *f[TUNNEL_KIND_COUNT];
        if (config__get_fields(c, m->val, "an object with \"sfu\" and/or \"turn\" pools", names,
                               TUNNEL_KIND_COUNT, f))
            return -1;
        for (int k = 0; k < TUNNEL_KIND_COUNT; k++) {
            size_t kmark = config__path_push_key(c, names[k], strlen(names[k]));
            if (pool_parse(c, f[k], &r->pools[k]))
                return -1;
            config__path_pop(c, kmark);
        }
        config__path_pop(c, mark);
    }
    /* Sorted for binary search; equal neighbours are repeated JSON keys. */
    qsort(cfg->regions, cfg->nregions, sizeof *cfg->regions, region_cmp);
    for (size_t i = 1; i < cfg->nregions; i++) {
        if (!strcmp(cfg->regions[i - 1].name, cfg->regions[i].name)) {
            config__path_push_key(c, cfg->regions[i].name, strlen(cfg->regions[i].name));
            return config__fail(c, "duplicate key");
        }
    }
    return 0;
}

static int region_parse(vctx_t *c, const json_t *v, config_t *cfg)
{
    const char *s;
    size_t len;
    char q[QBUF];
    if (config__get_string(c, v, "a region name", &s, &len))
        return -1;
    if (!config_region(cfg, s, len))
        return config__fail(c, "%s is not a key of $.regions", config__quote(s, len, q, sizeof q));
    cfg->region = json_strdup(s, len);
    return cfg->region ? 0 : config__nomem(c);
}

/* $.workers: 1 to CFG_WORKERS_MAX event loops; absent: one per online CPU
 * (sysconf), so a gateway uses every core unless told otherwise. */
static int workers_parse(vctx_t *c, const json_t *v, config_t *cfg)
{
    if (!v) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n < 1 ? 1u : n > (long)CFG_WORKERS_MAX ? CFG_WORKERS_MAX : (unsigned)n;
        return 0;
    }
    uint64_t n;
    if (config__get_uint(c, v, 1, CFG_WORKERS_MAX, &n))
        return -1;
    cfg->workers = (unsigned)n;
    return 0;
}

static int has_builtin_echo(const config_t *cfg)
{
    for (size_t i = 0; i < cfg->nregions; i++)
        for (int k = 0; k < TUNNEL_KIND_COUNT; k++)
            for (size_t j = 0; j < cfg->regions[i].pools[k].n; j++)
                if (cfg->regions[i].pools[k].addrs[j].builtin_echo)
                    return 1;
    return 0;
}

/* Validates the root object in a fixed order, so regions exist before the
 * names that refer to them are checked. */
static int root_parse(vctx_t *c, const json_t *root, const json_t *const *store_tenants,
                      size_t nstore, const char *const *labels, config_t *cfg)
{
    static const char *const names[] = {"listen",  "tls",     "region",       "echo",
                                        "limits",  "regions", "tenants",      "admin",
                                        "tenant_store", "node", "workers"};
    enum { F_LISTEN, F_TLS, F_REGION, F_ECHO, F_LIMITS, F_REGIONS, F_TENANTS, F_ADMIN, F_STORE,
           F_NODE, F_WORKERS, F_COUNT };
    const json_t *f[F_COUNT];
    if (config__get_fields(c, root, "an object", names, F_COUNT, f))
        return -1;
    if (config__require(c, f[F_LISTEN], "listen") || config__require(c, f[F_TLS], "tls") ||
        config__require(c, f[F_REGION], "region") || config__require(c, f[F_REGIONS], "regions"))
        return -1;
    size_t mark = config__path_push_key(c, "tenant_store", 12);
    if (f[F_STORE] && config__store_parse(c, f[F_STORE], &cfg->store))
        return -1;
    config__path_pop(c, mark);
    config__path_push_key(c, "node", 4);
    if (f[F_NODE] && config__node_parse(c, f[F_NODE], &cfg->node))
        return -1;
    config__path_pop(c, mark);
    if (cfg->store.type == CFG_STORE_INLINE && config__require(c, f[F_TENANTS], "tenants"))
        return -1;
    if (cfg->store.type != CFG_STORE_INLINE && f[F_TENANTS]) {
        config__path_push_key(c, "tenants", 7);
        if (cfg->store.type == CFG_STORE_FILE)
            return config__fail(c, "not allowed with $.tenant_store: the tenants live in %s",
                                cfg->store.path);
        return config__fail(c, "not allowed with $.tenant_store: the tenants live in etcd under %s",
                            cfg->store.prefix);
    }

    config__path_push_key(c, "listen", 6);
    if (listen_parse(c, f[F_LISTEN], cfg))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "workers", 7);
    if (workers_parse(c, f[F_WORKERS], cfg))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "tls", 3);
    if (tls_parse(c, f[F_TLS], cfg))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "limits", 6);
    if (limits_parse(c, f[F_LIMITS], &cfg->limits))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "regions", 7);
    if (regions_parse(c, f[F_REGIONS], cfg))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "region", 6);
    if (region_parse(c, f[F_REGION], cfg))
        return -1;
    config__path_pop(c, mark);

    config__path_push_key(c, "echo", 4);
    if (f[F_ECHO] ? config__get_addr(c, f[F_ECHO], ADDR_ECHO, &cfg->echo)
                  : addr_parse(c, "127.0.0.1:0", 11, ADDR_ECHO, &cfg->echo))
        return -1;
    config__path_pop(c, mark);
    cfg->has_echo = has_builtin_echo(cfg);

    if (f[F_ADMIN]) {
        config__path_push_key(c, "admin", 5);
        if (config__admin_parse(c, f[F_ADMIN], cfg))
            return -1;
        config__path_pop(c, mark);
    }

    if (nstore && cfg->store.type != CFG_STORE_ETCD)
        return config__fail(c, "tenant documents were given, but $.tenant_store is not etcd");
    switch (cfg->store.type) {
    case CFG_STORE_INLINE:
        config__path_push_key(c, "tenants", 7);
        if (config__tenants_parse(c, f[F_TENANTS], cfg))
            return -1;
        config__path_pop(c, mark);
        break;
    case CFG_STORE_FILE:
        if (config__store_tenants_parse(c, cfg))
            return -1;
        break;
    case CFG_STORE_ETCD:
        if (config__tenants_build(c, store_tenants, nstore, labels, cfg))
            return -1;
        break;
    }
    config__credential_work(cfg);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

/* config_parse, config_parse_tenants and config_retenant in one: the tenants
 * come from $.tenants, the store file (or tenants_doc in its place), or the
 * n etcd documents, as $.tenant_store says. */
static config_t *config_parse_with(const char *json, size_t len, const char *base_dir,
                                   const char *tenants_doc, size_t tenants_len,
                                   const char *const *docs, const size_t *lens,
                                   const char *const *labels, size_t n, char *err,
                                   size_t errlen)
{
    vctx_t c = {.path = "$", .plen = 1, .err = err, .errlen = err ? errlen : 0,
                .base_dir = base_dir, .tenants_doc = tenants_doc, .tenants_len = tenants_len};
    if (c.errlen)
        err[0] = '\0';
    if (len > CONFIG_FILE_MAX) {
        config__fail(&c, "the document is larger than 1 MiB (%zu bytes)", len);
        return NULL;
    }
    char msg[256];
    json_t *root = json_parse(json, len, msg, sizeof msg);
    if (!root) {
        config__fail(&c, "%s", msg);
        return NULL;
    }
    json_t **trees = n ? calloc(n, sizeof *trees) : NULL;
    config_t *cfg = (!n || trees) ? calloc(1, sizeof *cfg) : NULL;
    if (!cfg) {
        config__nomem(&c);
        goto out;
    }
    cfg->_refs = 1;
    cfg->_source = json_strdup(json, len);
    cfg->_source_len = len;
    cfg->_base_dir = base_dir ? json_strdup(base_dir, strlen(base_dir)) : NULL;
    if (!cfg->_source || (base_dir && !cfg->_base_dir)) {
        config__nomem(&c);
        goto bad;
    }
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > CONFIG_FILE_MAX) {
            if (c.errlen)
                snprintf(err, c.errlen, "%s: larger than 1 MiB (%zu bytes)", labels[i], lens[i]);
            goto bad;
        }
        trees[i] = json_parse(docs[i], lens[i], msg, sizeof msg);
        if (!trees[i]) {
            if (c.errlen)
                snprintf(err, c.errlen, "%s: %s", labels[i], msg);
            goto bad;
        }
    }
    if (root_parse(&c, root, (const json_t *const *)trees, n, labels, cfg) == 0)
        goto out;
bad:
    config_free(cfg);
    cfg = NULL;
out:
    for (size_t i = 0; trees && i < n; i++)
        json_free(trees[i]);
    free(trees);
    json_free(root);
    return cfg;
}

config_t *config_parse_tenants(const char *json, size_t len, const char *base_dir,
                               const char *const *docs, const size_t *lens,
                               const char *const *labels, size_t n, char *err, size_t errlen)
{
    return config_parse_with(json, len, base_dir, NULL, 0, docs, lens, labels, n, err, errlen);
}

config_t *config_parse(const char *json, size_t len, const char *base_dir, char *err,
                       size_t errlen)
{
    return config_parse_with(json, len, base_dir, NULL, 0, NULL, NULL, NULL, 0, err, errlen);
}

config_t *config_retenant(const config_t *cfg, const char *tenants_doc, size_t len, char *err,
                          size_t errlen)
{
    if (cfg->store.type != CFG_STORE_FILE) {
        if (err && errlen)
            snprintf(err, errlen, cfg->store.type == CFG_STORE_ETCD
                                      ? "the tenants are in etcd ($.tenant_store.type \"etcd\")"
                                      : "the tenants are inline in the config file (no "
                                        "$.tenant_store)");
        return NULL;
    }
    return config_parse_with(cfg->_source, cfg->_source_len, cfg->_base_dir, tenants_doc,
                             len, NULL, NULL, NULL, 0, err, errlen);
}

config_t *config_load(const char *path, char *err, size_t errlen)
{
    if (!err)
        errlen = 0;
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(CONFIG_FILE_MAX + 1) : NULL;
    size_t n = 0;
    int rerr = errno;
    if (buf) {
        n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
        rerr = ferror(f) ? errno : 0;
    }
    if (f)
        fclose(f);
    if (!buf || rerr || n > CONFIG_FILE_MAX) {
        if (errlen && (!buf || rerr))
            snprintf(err, errlen, "%s: %s", path, strerror(rerr ? rerr : ENOMEM));
        else if (errlen)
            snprintf(err, errlen, "%s: larger than 1 MiB; not a sluiced configuration", path);
        free(buf);
        return NULL;
    }

    /* The file's directory, for relative certificate and key paths. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? json_strdup(path, slash == path ? 1 : (size_t)(slash - path))
                      : json_strdup(".", 1);
    if (!dir) {
        if (errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        free(buf);
        return NULL;
    }
    char scratch[1];
    int pre = errlen ? snprintf(err, errlen, "%s: ", path) : 0;
    int room = pre >= 0 && (size_t)pre < errlen;
    config_t *cfg = config_parse(buf, n, dir, room ? err + pre : scratch,
                                 room ? errlen - (size_t)pre : sizeof scratch);
    if (cfg && errlen)
        err[0] = '\0';
    free(dir);
    free(buf);
    return cfg;
}

config_t *config_ref(config_t *cfg)
{
    if (cfg) /* relaxed: a reference is only taken from one already held */
        __atomic_add_fetch(&cfg->_refs, 1, __ATOMIC_RELAXED);
    return cfg;
}

void config_unref(config_t *cfg)
{
    /* acq_rel: every thread's reads of the snapshot happen before the free. */
    if (cfg && __atomic_sub_fetch(&cfg->_refs, 1, __ATOMIC_ACQ_REL) == 0)
        config_free(cfg);
}

/* Binary search of n elements of size bytes, sorted by the char * name at
 * name_off in each: the one lookup behind tenants and regions. */
const void *config__find_by_name(const void *base, size_t n, size_t size, size_t name_off,
                                 const char *key, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *elem = (const char *)base + mid * size;
        int r = name_cmp(key, len, *(char *const *)(const void *)(elem + name_off));
        if (r == 0)
            return elem;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const cfg_tenant_t *config_tenant(const config_t *cfg, const char *id, size_t len)
{
    return config__find_by_name(cfg->tenants, cfg->ntenants, sizeof *cfg->tenants,
                                offsetof(cfg_tenant_t, id), id, len);
}

const cfg_region_t *config_region(const config_t *cfg, const char *name, size_t len)
{
    return config__find_by_name(cfg->regions, cfg->nregions, sizeof *cfg->regions,
                                offsetof(cfg_region_t, name), name, len);
}

const char *config_addr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return buf;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    socklen_t len = sa && sa->sa_family == AF_INET    ? sizeof(struct sockaddr_in)
                    : sa && sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                      : 0;
    if (len == 0 || getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                                NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(buf, cap, "(no address)");
    else if (sa->sa_family == AF_INET6)
        snprintf(buf, cap, "[%s]:%s", host, serv);
    else
        snprintf(buf, cap, "%s:%s", host, serv);
    return buf;
}
