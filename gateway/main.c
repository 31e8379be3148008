/*
 * sluiced — the sluice gateway: HTTP/2 over TLS in, UDP to configured
 * backends out. See docs/architecture.md and proto/README.md.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "admin.h"
#include "config.h"
#include "etcd.h"
#include "fleet.h"
#include "heap.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "server.h"
#include "store.h"
#include "tls.h"
#include "tlsmem.h"
#include "util.h"
#include "worker.h"

#define SLUICE_VERSION "0.1.0"

static void usage(FILE *out)
{
    fputs("usage: sluiced --config FILE [--log-level LEVEL | --verbose | --quiet]\n"
          "       sluiced --check-config FILE\n"
          "\n"
          "HTTPS tunneling gateway for real-time media: clients open HTTP/2 streams\n"
          "(POST /v1/tunnel/{tenant}/{sfu|turn}) carrying RFC 9297 capsules; each\n"
          "stream is relayed over UDP to a backend named in the config.\n"
          "\n"
          "  -c, --config FILE        run with this JSON config (docs/configuration.md)\n"
          "      --check-config FILE  validate a config, print 'config ok' or the error\n"
          "      --log-level LEVEL    error, warn, info (the default) or debug\n"
          "  -v, --verbose            --log-level debug: also each health probe a backend\n"
          "                           misses and each etcd retry while etcd is away\n"
          "  -q, --quiet              --log-level warn: warnings and errors only\n"
          "  -h, --help               this text\n"
          "  -V, --version            print the version\n"
          "\n"
          "When ready, prints one line on stdout:\n"
          "  sluiced ready listen=ADDR:PORT ... [echo=ADDR:PORT]\n"
          "and, with an admin API configured, then:\n"
          "  sluiced admin listen=ADDR:PORT\n"
          "SIGINT/SIGTERM drain gracefully (with etcd tenants, the fleet lease is\n"
          "revoked first; then CLOSE to every tunnel, GOAWAY); a second\n"
          "signal stops at once. SIGHUP reloads the config file: a valid one applies\n"
          "to new connections and to live tunnels' tenants, listeners follow it;\n"
          "an invalid one is logged and changes nothing. With \"tenant_store\" etcd\n"
          "the tenants are read from etcd at start and every change to them is\n"
          "applied the same way (docs/configuration.md, \"Tenant store\").\n"
          "Exit status: 0 ok, 1 runtime error, 2 bad usage/config (the config file,\n"
          "its TLS files, or a file descriptor limit too low for its limits).\n",
          out);
}

/* File descriptors besides connections and tunnels: stdio, libev's epoll and
 * signal descriptors, OpenSSL's random source, and slack; plus one per
 * listener and one for the built-in echo (counted in fd_limit_check). */
#define FD_RESERVE 32u

/* Raises the soft RLIMIT_NOFILE to the hard limit: every connection holds a
 * socket and every tunnel a UDP socket, and the usual soft default (1024) is
 * far below the default limits. A hard limit of "unlimited" cannot be the soft
 * limit on Linux (it is capped by fs.nr_open): 2^20, the default cap, is
 * tried instead. Failure leaves the soft limit as it was; fd_limit_check then
 * judges it. Returns the limit before the change (0 when unknown). */
static rlim_t fd_limit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rlim_t before = rl.rlim_cur;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= rl.rlim_max)
        return before;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_msg(LOG_WARN, "cannot raise the open file limit from %llu to %llu: %s",
                (unsigned long long)before, (unsigned long long)rl.rlim_cur, strerror(errno));
    return before;
}

/* Refuses a config whose connections and tunnels cannot all have their
 * descriptor under the current soft limit: accept() or socket() would fail
 * under load instead. Returns 0, or -1 with err naming the limits. */
static int fd_limit_check(const config_t *cfg, char *err, size_t errlen)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(err, errlen, "cannot read the open file limit (RLIMIT_NOFILE): %s",
                 strerror(errno));
        return -1;
    }
    uint64_t reserve = FD_RESERVE + cfg->nlisten + (cfg->has_echo ? 1u : 0u);
    uint64_t need = (uint64_t)cfg->limits.max_connections + cfg->limits.max_tunnels + reserve;
    if (rl.rlim_cur == RLIM_INFINITY || need <= (uint64_t)rl.rlim_cur)
        return 0;
    char hard[32];
    if (rl.rlim_max == RLIM_INFINITY)
        snprintf(hard, sizeof hard, "unlimited");
    else
        snprintf(hard, sizeof hard, "%llu", (unsigned long long)rl.rlim_max);
    snprintf(err, errlen,
             "$.limits.max_connections (%u) + $.limits.max_tunnels (%u) + %llu reserved "
             "(listeners, echo, stdio, event loop) = %llu file descriptors, but the open "
             "file limit (RLIMIT_NOFILE) is %llu (hard limit %s): lower those limits or raise "
             "the hard limit (ulimit -Hn, systemd LimitNOFILE=)",
             cfg->limits.max_connections, cfg->limits.max_tunnels, (unsigned long long)reserve,
             (unsigned long long)need, (unsigned long long)rl.rlim_cur, hard);
    return -1;
}

/* What start-up checks beyond the config file itself, shared with
 * --check-config so that "config ok" means the gateway would start: the TLS
 * files load and match (the very function server_init uses), and the
 * descriptor limit fits. Call fd_limit_raise first. */
static int preflight(const config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_server_ctx(cfg->cert_file, cfg->key_file, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_free(ctx);
    return fd_limit_check(cfg, err, errlen);
}

typedef struct signals {
    ev_signal term, intr, hup;
    server_t *srv;
    const char *config_path;
    etcd_store_t *etcd; /* NULL: the tenants are not in etcd */
    double started;     /* unix seconds */
    fleet_t *fleet;     /* with etcd: this gateway's share of the tenants' limits */
} signals_t;

/* What /metrics shows of the process and the tenant store (metrics.h). */
static void metrics_info(void *ud, metrics_info_t *info)
{
    const signals_t *sig = ud;
    const config_t *cfg = sig->srv->cfg;
    info->version = SLUICE_VERSION;
    info->start_time_s = sig->started;
    info->store_type = cfg->store.type == CFG_STORE_ETCD   ? "etcd"
                       : cfg->store.type == CFG_STORE_FILE ? "file"
                                                           : "inline";
    info->store_up = sig->etcd ? etcd_store_up(sig->etcd) : 1;
    info->store_revision = sig->etcd ? etcd_store_revision(sig->etcd)
                                     : (int64_t)cfg->tenants_revision;
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    signals_t *sig = w->data;
    log_msg(LOG_INFO, "signal %d: shutting down", w->signum);
    /* Leave the fleet first: the others take this gateway's share at once
     * rather than after the lease's TTL. */
    fleet_leave(sig->fleet);
    notify_send(NOTIFY_STOPPING, "draining %llu connections, %llu tunnels",
                (unsigned long long)sig->srv->counters.conns_active,
                (unsigned long long)sig->srv->counters.tunnels_active);
    server_drain(sig->srv);
}

/* SIGHUP: re-read the config file and apply it (server_reload). A file that
 * does not parse, or whose limits or TLS files would not let the gateway
 * start, changes nothing: the error is logged with its JSON path or file.
 * Returns 0 when applied, -1 when refused. */
static int reload_try(signals_t *sig, char *err, size_t errlen)
{
    if (sig->etcd) /* the file plus the tenants read from etcd (apply_snapshot) */
        return etcd_store_reload(sig->etcd, sig->config_path, err, errlen);
    config_t *cfg = config_load(sig->config_path, err, errlen);
    if (!cfg)
        return -1;
    char why[1024];
    int rc = fd_limit_check(cfg, why, sizeof why) < 0 ||
                     server_reload(sig->srv, cfg, why, sizeof why) < 0
                 ? -1
                 : 0;
    if (rc < 0) /* config_load names the file itself */
        snprintf(err, errlen, "%s: %.900s", sig->config_path, why);
    config_unref(cfg); /* the server holds its own reference */
    return rc;
}

static int reload_config(signals_t *sig, const char *why, char *err, size_t errlen)
{
    log_msg(LOG_INFO, "%s: reloading %s", why, sig->config_path);
    server_counters_t *k = &sig->srv->counters;
    uint64_t failed = k->reloads_failed;
    if (reload_try(sig, err, errlen) == 0)
        return 0;
    if (k->reloads_failed == failed) /* refused before server_reload, which counts its own */
        k->reloads_failed++;
    log_line_t l;
    if (log_begin(&l, LOG_ERROR, "config.reload_failed")) {
        log_str(&l, "source", why);
        log_str(&l, "error", err);
        log_end(&l);
    }
    return -1;
}

/* STATUS= for `systemctl status` (notify.h): what the gateway serves now. */
static void notify_serving(const server_t *srv, unsigned what, const char *note)
{
    notify_send(what, "serving region %s: %zu listeners, %zu tenants%s", srv->cfg->region,
                srv->nlisteners, srv->cfg->ntenants, note);
}

/* The service manager hears RELOADING=1 then READY=1 around every reload
 * (sd_notify(3)), applied or refused: either way the gateway serves. During
 * a drain server_reload refuses, and STOPPING=1 was sent. */
static int reload_notified(signals_t *sig, const char *why, char *err, size_t errlen)
{
    if (sig->srv->draining)
        return reload_config(sig, why, err, errlen);
    notify_send(NOTIFY_RELOADING, "reloading %s", sig->config_path);
    int rc = reload_config(sig, why, err, errlen);
    notify_serving(sig->srv, NOTIFY_READY,
                   rc < 0 ? "; last reload refused (see the log), old config kept" : "");
    return rc;
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    char err[1024];
    reload_notified(w->data, "SIGHUP", err, sizeof err);
}

/* POST /v1/reload on the admin API (admin.h). */
static int on_admin_reload(void *ud, char *err, size_t errlen)
{
    return reload_notified(ud, "admin API", err, errlen);
}

/* A snapshot from the tenant store (etcd.h): the same checks and swap as
 * SIGHUP. */
static int apply_snapshot(void *ud, config_t *cfg, char *err, size_t errlen)
{
    signals_t *sig = ud;
    if (fd_limit_check(cfg, err, errlen) < 0)
        return -1;
    if (server_reload(sig->srv, cfg, err, errlen) < 0)
        return -1;
    notify_serving(sig->srv, NOTIFY_STATUS, "");
    return 0;
}

/* The fleet counted n live gateways in this region (fleet.h). */
static void on_share(void *ud, uint32_t n)
{
    signals_t *sig = ud;
    server_share_set(sig->srv, n);
}

static int check_config(const char *path)
{
    char err[1024];
    config_t *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    fd_limit_raise();
    int rc = preflight(cfg, err, sizeof err);
    config_unref(cfg);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        return 2;
    }
    puts("config ok");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, 'C'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:vqhV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'C':
            return check_config(optarg);
        case 'v':
            log_set_level(LOG_DEBUG);
            break;
        case 'q':
            log_set_level(LOG_WARN);
            break;
        case 'L': {
            int level = log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr, "sluiced: --log-level %s: expected error, warn, info or debug\n",
                        optarg);
                return 2;
            }
            log_set_level((enum log_level)level);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            puts("sluiced " SLUICE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config_path || optind != argc) {
        fputs(config_path ? "sluiced: unexpected argument\n" : "sluiced: --config is required\n",
              stderr);
        usage(stderr);
        return 2;
    }
    /* Before anything is opened: returns only when it did not execute. */
    if (heap_tune(argv) < 0)
        fprintf(stderr, "sluiced: cannot execute itself again to turn off glibc's "
                        "per-thread cache (%s): running with it; more memory stays after "
                        "a load\n",
                strerror(errno));
    /* Before anything uses OpenSSL: its small blocks from a list per thread,
     * so that relaying a packet allocates nothing (tlsmem.h). */
    tlsmem_install();

    char err[1024];
    config_t *cfg = config_load(config_path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "sluiced: %s\n", err);
        return 2;
    }
    etcd_store_t *etcd = NULL;
    if (cfg->store.type == CFG_STORE_ETCD) {
        /* Never start without a valid tenant table: read it before anything
         * else (exit 2: a bad tenant, named by key and JSON path; 1: etcd
         * unreachable). */
        config_t *full = NULL;
        int code;
        etcd = etcd_store_open(config_path, cfg, &full, &code, err, sizeof err);
        config_unref(cfg);
        if (!etcd) {
            fprintf(stderr, "sluiced: %s\n", err);
            return code;
        }
        cfg = full;
    }
    rlim_t fd_before = fd_limit_raise();
    if (preflight(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "sluiced: %s: %s\n", config_path, err);
        config_unref(cfg);
        etcd_store_free(etcd);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* until the loop's watcher takes over (on_hup): no reload
                              * before the server exists */
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    server_t srv;
    int rc = server_init(&srv, loop, cfg, err, sizeof err);
    config_unref(cfg); /* the server holds its own reference */
    if (rc < 0) {
        fprintf(stderr, "sluiced: %s\n", err);
        etcd_store_free(etcd);
        ev_loop_destroy(loop);
        return 1;
    }
    signals_t sig = {.srv = &srv, .config_path = config_path, .etcd = etcd,
                     .started = (double)time(NULL)};
    if (etcd && etcd_store_start(etcd, loop, apply_snapshot, &sig, err, sizeof err) < 0) {
        fprintf(stderr, "sluiced: %s\n", err);
        etcd_store_free(etcd);
        server_dispose(&srv);
        ev_loop_destroy(loop);
        return 1;
    }
    if (etcd && !(sig.fleet = fleet_start(srv.cfg, loop, on_share, &sig, err, sizeof err))) {
        fprintf(stderr, "sluiced: %s\n", err);
        etcd_store_free(etcd);
        server_dispose(&srv);
        ev_loop_destroy(loop);
        return 1;
    }
    if (sig.fleet) { /* a resume of another node's session gets a 421 (issue 8 §4) */
        srv.sessions.peer = fleet_peer_address;
        srv.sessions.peer_ud = sig.fleet;
    }
    ev_signal_init(&sig.term, on_signal, SIGTERM);
    ev_signal_init(&sig.intr, on_signal, SIGINT);
    ev_signal_init(&sig.hup, on_hup, SIGHUP);
    sig.term.data = sig.intr.data = sig.hup.data = &sig;
    ev_signal_start(loop, &sig.term);
    ev_signal_start(loop, &sig.intr);
    ev_signal_start(loop, &sig.hup);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    log_line_t l;
    if (log_begin(&l, LOG_INFO, "start")) {
        log_str(&l, "version", SLUICE_VERSION);
        log_str(&l, "region", srv.cfg->region);
        log_str(&l, "config", config_path);
        log_u64(&l, "fd_limit", (uint64_t)rl.rlim_cur);
        log_u64(&l, "fd_limit_was", (uint64_t)fd_before);
        log_end(&l);
    }
    /* The file tenant store and the admin API (docs/admin.md): started at
     * start-up only; a reload changes tokens and tenants, not the admin
     * address. With etcd tenants the admin API writes through the etcd
     * store (owned by etcd: store_free on it does nothing). */
    store_t *store = etcd ? etcd_store_admin(etcd) : NULL;
    admin_t admin = {0};
    if (srv.cfg->store.type == CFG_STORE_FILE && !(store = store_file_new(srv.cfg->store.path))) {
        fprintf(stderr, "sluiced: out of memory\n");
        fleet_free(sig.fleet);
        etcd_store_free(etcd);
        server_dispose(&srv);
        ev_loop_destroy(loop);
        return 1;
    }
    if (srv.cfg->admin.enabled && admin_init(&admin, loop, &srv, store, err, sizeof err) < 0) {
        fprintf(stderr, "sluiced: %s\n", err);
        store_free(store);
        fleet_free(sig.fleet);
        etcd_store_free(etcd);
        server_dispose(&srv);
        ev_loop_destroy(loop);
        return 1;
    }
    admin_set_info(&admin, metrics_info, &sig);
    admin_set_reload(&admin, on_admin_reload, &sig);
    /* The other $.workers loops, each on its own thread with listeners in
     * the lead's SO_REUSEPORT groups (worker.h): started last, so that a
     * failure above has only the main loop to undo. */
    workers_t *workers = workers_start(&srv, srv.cfg, err, sizeof err);
    if (!workers) {
        fprintf(stderr, "sluiced: %s\n", err);
        admin_dispose(&admin);
        store_free(store);
        fleet_free(sig.fleet);
        etcd_store_free(etcd);
        server_dispose(&srv);
        ev_loop_destroy(loop);
        return 1;
    }
    server_print_ready(&srv, stdout);
    if (srv.cfg->admin.enabled) {
        char name[64];
        printf("sluiced admin listen=%s\n",
               config_addr_str((const struct sockaddr *)&admin.addr, name, sizeof name));
        fflush(stdout);
    }
    notify_serving(&srv, NOTIFY_READY, ""); /* listeners accept, tenants loaded */
    if (log_begin(&l, LOG_INFO, "ready")) {
        char name[64];
        log_u64(&l, "listeners", srv.nlisteners);
        log_u64(&l, "workers", workers_count(workers));
        log_u64(&l, "tenants", srv.cfg->ntenants);
        if (srv.cfg->admin.enabled)
            log_str(&l, "admin",
                    config_addr_str((const struct sockaddr *)&admin.addr, name, sizeof name));
        log_end(&l);
    }
    ev_run(loop, 0);

    const server_counters_t *k = &srv.counters;
    if (log_begin(&l, LOG_INFO, "stop")) {
        log_u64(&l, "connections", k->conns_accepted);
        log_u64(&l, "tunnels", k->tunnels_opened);
        log_end(&l);
    }
    ev_signal_stop(loop, &sig.term);
    ev_signal_stop(loop, &sig.intr);
    ev_signal_stop(loop, &sig.hup);
    /* The stop is done: a late SIGTERM (a supervisor repeating its request)
     * must not turn the clean exit below into death by signal. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    admin_dispose(&admin);
    store_free(store);
    workers_stop(workers); /* their connections close and their threads end first */
    srv.sessions.peer = NULL;
    fleet_free(sig.fleet); /* revokes the lease if a signal did not */
    etcd_store_free(etcd);
    server_dispose(&srv);
    ev_loop_destroy(loop);
    return 0;
}
