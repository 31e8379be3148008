/*
 * shim_cli.h — command-line options of the sluice-shim CLI, parsed into one
 * validated struct. Pure: no I/O, no globals (unlike getopt), so it is unit
 * tested and the CLI's main stays I/O only.
 */
#ifndef SHIM_CLI_H
#define SHIM_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shim_addr.h"
#include "sluice_shim.h"

#define SHIM_CLI_DEFAULT_MAX_FLOWS 64u
#define SHIM_CLI_MAX_MAX_FLOWS 4096u
#define SHIM_CLI_DEFAULT_FLOW_IDLE_MS 60000u
#define SHIM_CLI_DEFAULT_TTL 3600u
#define SHIM_CLI_DEFAULT_RECONNECT_MIN_MS 250u
#define SHIM_CLI_DEFAULT_RECONNECT_MAX_MS 30000u
/* Below the 60 s idle timeout common in corporate proxies. */
#define SHIM_CLI_DEFAULT_PING_MS 20000u
/* A keyframe: 200 x 1,200 B back to back, with room to spare. */
#define SHIM_CLI_DEFAULT_QUEUE_BYTES (512u * 1024u)
#define SHIM_CLI_DEFAULT_DIRECT_BUDGET_MS 1000u
#define SHIM_CLI_DEFAULT_DIRECT_SILENCE_MS 5000u

/* Strings point into argv; nothing is allocated. */
typedef struct shim_cli_opts {
    const char *gateway;     /* the URL as given */
    char gw_host[SHIM_HOST_MAX + 1];
    uint16_t gw_port;
    const char *tenant;
    const char *kind;
    const char *region;      /* NULL: gateway default */
    const char *username;    /* with credential, or NULL when minting */
    const char *credential;
    const char *credential_file; /* two lines: username, credential; re-read on change */
    const char *secret;      /* non-NULL: mint credentials locally */
    sluice_hash_t hash;
    uint64_t ttl;            /* seconds */
    const char *user;        /* NULL: none */
    const char *ca_file;
    const char *server_name;
    const char *listen_str;
    struct sockaddr_storage listen;
    socklen_t listen_len;
    const char *proxy;       /* --proxy URL or "none"; NULL: PAC, then the environment */
    const char *proxy_pac;   /* --proxy-pac FILE|URL */
    const char *proxy_user_file; /* --proxy-user-file: one line "user:password" */
    uint32_t connect_timeout_ms; /* connect/CONNECT and TLS handshake deadline, each;
                                  * 0: the mode's default (10000, probe 5000) */
    unsigned max_flows;
    uint32_t flow_idle_ms;
    uint32_t reconnect_min_ms;
    uint32_t reconnect_max_ms;
    uint32_t ping_interval_ms;
    size_t queue_bytes;      /* media and signaling queue bound per tunnel */
    int verbose;
    /* Fallback ladder (docs/shim.md): --direct and its knobs; `probe` mode. */
    int probe;               /* argv[1] was "probe": run the checks only (no --listen) */
    const char *direct_str;  /* NULL: no direct UDP, every flow is tunnelled */
    struct sockaddr_storage direct;
    socklen_t direct_len;
    uint32_t direct_budget_ms;
    uint32_t direct_silence_ms;
    int help;    /* --help given: print usage, exit 0 (nothing else validated) */
    int version; /* --version given */
} shim_cli_opts_t;

/* Parses argv[1..argc); argv[1] "probe" selects probe mode (o->probe),
 * where --listen is not required and the options start at argv[2]. Returns 0 with *o filled, or -1 with a one-line
 * message in err naming the offending option. */
int shim_cli_parse(int argc, char *const argv[], shim_cli_opts_t *o, char *err, size_t errlen);

/* The --help text. */
const char *shim_cli_usage(void);

#endif
