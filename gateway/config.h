/*
 * config.h — the gateway's configuration as an immutable snapshot.
 *
 * The JSON file (docs/configuration.md) is parsed once with yajl, validated
 * completely, and turned into a config_t that nothing modifies afterwards. It
 * is reference counted so that a live reload can swap in a new snapshot while
 * connections that started under the old one keep theirs.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../proto/cred.h"

enum tunnel_kind {
    TUNNEL_KIND_SFU = 0,
    TUNNEL_KIND_TURN = 1,
    TUNNEL_KIND_COUNT
};

/* "sfu"/"turn" -> kind; returns -1 for anything else. */
int config_kind_parse(const char *s, size_t len);
const char *config_kind_name(enum tunnel_kind kind);

typedef struct cfg_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    int builtin_echo; /* 1: the gateway's built-in echo backend ("builtin:echo") */
    int proxy_protocol; /* $.listen[i] only: a PROXY protocol header (v1 or v2) comes
                         * before the TLS ClientHello (conn.c, proto/proxyproto.h) */
} cfg_addr_t;

enum cfg_probe {
    CFG_PROBE_STUN = 0, /* a STUN Binding request (RFC 8489); the default */
    CFG_PROBE_NONE,     /* no active probe: only ICMP errors take a backend out */
};

/* How the gateway checks a pool's backends (gateway/backend.h). */
typedef struct cfg_health {
    enum cfg_probe probe;
    uint32_t interval_ms;  /* one probe per backend this often (2000) */
    uint32_t timeout_ms;   /* a probe unanswered this long failed (1000; < interval_ms) */
    uint32_t down_after;   /* consecutive failed probes that take a backend out (3) */
    uint32_t up_after;     /* consecutive answered probes that bring it back (2) */
} cfg_health_t;

#define CFG_POOL_MAX 256u /* addresses in one pool */

typedef struct cfg_pool {
    cfg_addr_t *addrs;
    size_t n;
    cfg_health_t health;
} cfg_pool_t;

typedef struct cfg_region {
    char *name;
    cfg_pool_t pools[TUNNEL_KIND_COUNT];
} cfg_region_t;

/* A tenant's rate limits ("tenants[i].limits", docs/configuration.md). Every
 * figure 0 means "no limit". A burst of 0 with a rate is one second of it.
 * Per tunnel, each direction: packets/s and bits/s of media; signaling
 * (SIGNAL capsules up, STUN and DTLS down) skips those and takes from its own small
 * budget, applied in a direction that has a media limit. Per tenant, on this
 * gateway: concurrent tunnels, concurrent tunnels per user, and the bits/s of
 * media of all its tunnels together (both directions). */
typedef struct cfg_rate {
    uint64_t packets_s, packets_burst;
    uint64_t bits_s, bits_burst;
} cfg_rate_t;

typedef struct cfg_tenant_limits {
    cfg_rate_t up;                 /* per tunnel, client -> backend */
    cfg_rate_t down;               /* per tunnel, backend -> client */
    uint64_t signal_packets_s;     /* per tunnel and direction with a media limit (50) */
    uint64_t signal_packets_burst; /* (50) */
    uint64_t max_tunnels;          /* concurrent tunnels of the tenant */
    uint64_t max_tunnels_per_user; /* concurrent tunnels of one user (the username's user part) */
    uint64_t bits_s, bits_burst;   /* aggregate media of all the tenant's tunnels */
    uint64_t retry_after_s;        /* retry-after of a 429 (5) */
} cfg_tenant_limits_t;

typedef struct cfg_tenant {
    char *id;
    cred_secret_t *secrets; /* keys owned by the snapshot */
    size_t nsecrets;
    enum cred_hash hash;
    uint64_t max_ttl;       /* seconds */
    char **regions;         /* regions the tenant is enabled in */
    size_t nregions;
    unsigned kinds;         /* bit (1u << tunnel_kind) per allowed kind */
    cfg_tenant_limits_t limits;
} cfg_tenant_t;

typedef struct cfg_limits {
    size_t max_capsule;            /* max capsule value bytes (default 65535) */
    uint32_t max_streams;          /* concurrent streams per connection (100) */
    uint32_t max_connections;      /* concurrent connections (8192) */
    size_t media_queue_bytes;      /* downlink media queue per tunnel (262144: a 200 x 1,200 B burst) */
    uint32_t media_queue_age_ms;   /* media waits at most this, both legs together (200) */
    size_t signal_queue_bytes;     /* downlink signaling queue per tunnel (65536) */
    uint32_t tunnel_idle_ms;       /* close an sfu tunnel after this silence (30000) */
    uint32_t turn_idle_ms;         /* close a turn tunnel after this silence (900000) */
    uint32_t handshake_timeout_ms; /* TLS handshake deadline (10000) */
    uint32_t header_timeout_ms;    /* first complete request deadline (10000) */
    uint32_t conn_idle_ms;         /* close a connection with no tunnels (60000) */
    uint32_t deregister_ms;        /* shutdown: readyz 503, still accepting this long (0) */
    uint32_t drain_ms;             /* shutdown: after GOAWAY, tunnels run this long (30000) */
    uint32_t drain_timeout_ms;     /* max time to flush CLOSEs on shutdown (5000) */
    uint32_t max_tunnels;          /* concurrent tunnels, all connections (8192) */
    uint32_t close_linger_ms;      /* CLOSE sent: wait this long for END_STREAM, then RST (5000) */
    uint32_t write_stall_ms;       /* output stuck this long: GOAWAY and close (10000) */
    uint32_t ping_interval_ms;     /* nothing received this long: send an HTTP/2 PING (5000) */
    uint32_t ping_timeout_ms;      /* PING sent and nothing received this long: close (10000) */
    uint32_t max_auth_failures;    /* 401s on one connection before GOAWAY (5) */
    uint32_t max_pending_per_source; /* tunnel-less connections per source address (64) */
    uint32_t handshakes_per_source_s; /* new connections per second per source address (20) */
    uint32_t max_control_frames_s; /* frames with no tunnel data, per connection a second (1000) */
    uint32_t resume_grace_ms;      /* a detached tunnel is kept this long for resume; 0: no resume (30000) */
    uint32_t capsule_ping_ms;      /* PING capsule on every open tunnel this often; 0: none (20000) */
    size_t tcp_rcvbuf_bytes;       /* client socket SO_RCVBUF; 0: kernel autotuning (131072) */
    size_t tcp_notsent_lowat_bytes; /* client socket TCP_NOTSENT_LOWAT; 0: not set (16384) */
} cfg_limits_t;

/* The most media may wait in the gateway on one leg, to the backend or back
 * from it (ms, at least 1): half of media_queue_age_ms, so that a packet that
 * goes up and comes back down (an echo; an SFU forwarding it to another
 * tunnel) waited at most media_queue_age_ms in all. */
static inline uint32_t cfg_media_leg_ms(const cfg_limits_t *lim)
{
    return (lim->media_queue_age_ms + 1) / 2;
}

/* One admin API token ("admin.tokens[i]", docs/admin.md). */
typedef struct cfg_admin_token {
    char *token;  /* NUL-terminated; len bytes */
    size_t len;
    char *tenant; /* the one tenant it may see and change; NULL: every tenant */
} cfg_admin_token_t;

typedef struct cfg_admin {
    int enabled;             /* "admin" is present */
    cfg_addr_t listen;       /* never one of $.listen (the public port) */
    cfg_admin_token_t *tokens;
    size_t ntokens;
} cfg_admin_t;

enum cfg_store_type {
    CFG_STORE_INLINE = 0, /* no "tenant_store": $.tenants of the config file; read-only for
                           * the admin API */
    CFG_STORE_FILE,       /* tenants in their own file, writable by the admin API
                           * (gateway/store.h) */
    CFG_STORE_ETCD,       /* the keys under prefix in etcd (gateway/etcd.h); read-only for
                           * the admin API for now */
};

/* Where the tenant table comes from ("tenant_store", docs/configuration.md). */
typedef struct cfg_store {
    enum cfg_store_type type;
    char *path;         /* file: the tenants file, joined to the config's directory */
    char **endpoints;   /* etcd: "http://host:port" without a trailing '/' (1 to 16) */
    size_t nendpoints;
    char *prefix;       /* etcd: the key prefix, e.g. "/sluice/tenants/" */
    char *members_prefix; /* etcd: where the fleet's gateways register
                           * ("/sluice/members/", gateway/fleet.h) */
    uint32_t lease_ttl_s; /* etcd: the TTL of a gateway's member key (10) */
} cfg_store_t;

#define CFG_NODE_ADDRESS_MAX 255u /* bytes of $.node.address */

/* This gateway ("node", docs/configuration.md). */
typedef struct cfg_node {
    char *id; /* NULL: "<hostname>-<pid>" (fleet.c); [A-Za-z0-9._-], 1 to 128 bytes */
    char *address; /* "host:port" a shim reaches this node at directly (the 421 of a
                    * misdirected resume, proto/README.md §8.1); NULL: none. Needs id */
} cfg_node_t;

/* Largest $.workers. */
#define CFG_WORKERS_MAX 64u

typedef struct config {
    int _refs;            /* atomic: snapshots are shared by every worker thread */
    unsigned workers;     /* $.workers: event loops, one per thread (worker.h); read at
                           * start only. Default: the online CPUs (at most CFG_WORKERS_MAX) */
    cfg_addr_t *listen;   /* listen addresses (port 0 allowed) */
    size_t nlisten;
    char *cert_file;      /* as written, joined to the config file's directory if relative */
    char *key_file;
    char *region;         /* this gateway's own region; present in regions */
    cfg_region_t *regions; /* sorted by name (lookups binary-search) */
    size_t nregions;
    cfg_tenant_t *tenants; /* sorted by id */
    size_t ntenants;
    /* Credential work is padded to the same for every request, so timing does
     * not reveal which tenants exist (request.c, cred_check_padded): */
    size_t max_secrets;          /* the most secrets any tenant has (1 with no tenants) */
    enum cred_hash decoy_hash;   /* the hash most tenants use (ties: SHA-256); for unknown tenants */
    cfg_limits_t limits;
    cfg_addr_t echo;      /* where the built-in echo binds ("127.0.0.1:0") */
    int has_echo;         /* 1 when any pool names builtin:echo */
    cfg_admin_t admin;
    cfg_store_t store;
    cfg_node_t node;
    uint64_t tenants_revision; /* the tenants file's "revision"; etcd's (etcd.c); 0 inline */
    /* The config file's bytes and directory, so that config_retenant can
     * build the same snapshot with another tenants document. */
    char *_source;
    size_t _source_len;
    char *_base_dir;
} config_t;

/* The idle limit of a tunnel of this kind, in ms. */
static inline uint32_t config_idle_ms(const cfg_limits_t *l, enum tunnel_kind kind)
{
    return kind == TUNNEL_KIND_TURN ? l->turn_idle_ms : l->tunnel_idle_ms;
}

/* Parses and validates a JSON document. base_dir resolves relative file paths
 * (NULL: keep them as written). Returns a snapshot with one reference, or NULL
 * with err (NUL-terminated) naming the JSON path and what is wrong, e.g.
 * "$.tenants[1].secrets: expected a non-empty array of strings". */
config_t *config_parse(const char *json, size_t len, const char *base_dir, char *err,
                       size_t errlen);

/* config_parse for a document whose tenants come from a store: json is the
 * config file (with "tenant_store", so without "tenants"), and docs[i]
 * (lens[i] bytes) is one tenant object as in $.tenants[], validated the same
 * way; an error in one starts with labels[i] (where it came from, e.g. its
 * etcd key) followed by its JSON path inside that document ("key
 * /sluice/tenants/acme: $.secrets: expected ..."). Nothing is retained. */
config_t *config_parse_tenants(const char *json, size_t len, const char *base_dir,
                               const char *const *docs, const size_t *lens,
                               const char *const *labels, size_t n, char *err, size_t errlen);

/* The snapshot cfg's config file would give with the tenant store holding
 * tenants_doc ({"revision": N, "tenants": [...]}, docs/admin.md) instead of
 * what it holds: validated like config_parse, errors naming the path in
 * tenants_doc ("$.tenants[0].limits.up_bits_s: ..."). cfg must use the file
 * store (CFG_STORE_FILE); with inline or etcd tenants it fails. Returns a new
 * snapshot with one reference, or NULL with err. */
config_t *config_retenant(const config_t *cfg, const char *tenants_doc, size_t len, char *err,
                          size_t errlen);

/* Reads a file and calls config_parse with its directory as base_dir. On error
 * err starts with the file name. */
config_t *config_load(const char *path, char *err, size_t errlen);

/* A snapshot is immutable once built and may be read by every worker thread
 * at once; these two are atomic, so any thread may take or drop a reference. */
config_t *config_ref(config_t *cfg);
void config_unref(config_t *cfg); /* frees on the last reference; NULL is a no-op */

/* Lookups by exact, length-delimited name; NULL when absent. */
const cfg_tenant_t *config_tenant(const config_t *cfg, const char *id, size_t len);
const cfg_region_t *config_region(const config_t *cfg, const char *name, size_t len);
int config_tenant_in_region(const cfg_tenant_t *t, const char *region);

/* The names of "tenants[i].limits" (docs/configuration.md), for writers such
 * as the admin API: name i (i < config_tenant_limit_count()) and its value in l. */
size_t config_tenant_limit_count(void);
const char *config_tenant_limit(size_t i, const cfg_tenant_limits_t *l, uint64_t *val);

/* Formats an address as "1.2.3.4:5" or "[::1]:5" into buf; returns buf. */
const char *config_addr_str(const struct sockaddr *sa, char *buf, size_t cap);

#endif
