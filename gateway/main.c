/*
 * sluiced — the sluice gateway: HTTP/2 over TLS in, UDP to configured
 * backends out. See docs/architecture.md and proto/README.md.
 */
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "server.h"
#include "tls.h"
#include "util.h"

#define SLUICE_VERSION "0.1.0"

static void usage(FILE *out)
{
    fputs("usage: sluiced --config FILE [--verbose | --quiet]\n"
          "       sluiced --check-config FILE\n"
          "\n"
          "HTTPS tunneling gateway for real-time media: clients open HTTP/2 streams\n"
          "(POST /v1/tunnel/{tenant}/{sfu|turn}) carrying RFC 9297 capsules; each\n"
          "stream is relayed over UDP to a backend named in the config.\n"
          "\n"
          "  -c, --config FILE        run with this JSON config (docs/configuration.md)\n"
          "      --check-config FILE  validate a config, print 'config ok' or the error\n"
          "  -v, --verbose            log debug detail\n"
          "  -q, --quiet              log warnings and errors only\n"
          "  -h, --help               this text\n"
          "  -V, --version            print the version\n"
          "\n"
          "When ready, prints one line on stdout:\n"
          "  sluiced ready listen=ADDR:PORT ... [echo=ADDR:PORT]\n"
          "SIGINT/SIGTERM drain gracefully (CLOSE to every tunnel, GOAWAY); a second\n"
          "signal stops at once. SIGHUP is logged and ignored (no reload yet).\n"
          "Exit status: 0 ok, 1 runtime error, 2 bad usage/config (the config file\n"
          "or its TLS files).\n",
          out);
}

typedef struct signals {
    ev_signal term, intr, hup;
    server_t *srv;
} signals_t;

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    signals_t *sig = w->data;
    log_msg(LOG_INFO, "signal %d: shutting down", w->signum);
    server_drain(sig->srv);
}

/* SIGHUP's default action would kill the gateway on the signal an operator
 * sends to ask for a reload; until reload exists it is refused out loud. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    log_msg(LOG_WARN, "SIGHUP ignored: reload is not implemented yet; restart to apply a "
                      "new config");
}

/* What start-up checks beyond the config file itself, shared with
 * --check-config so that "config ok" means the gateway would start: the TLS
 * files load and match (the very function server_init uses). */
static int preflight(const config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_server_ctx(cfg->cert_file, cfg->key_file, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_free(ctx);
    return 0;
}

static int check_config(const char *path)
{
    char err[1024];
    config_t *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
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

    char err[1024];
    config_t *cfg = config_load(config_path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "sluiced: %s\n", err);
        return 2;
    }
    if (preflight(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "sluiced: %s: %s\n", config_path, err);
        config_unref(cfg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* until the loop's watcher takes over (on_hup) */
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    server_t srv;
    int rc = server_init(&srv, loop, cfg, err, sizeof err);
    config_unref(cfg); /* the server holds its own reference */
    if (rc < 0) {
        fprintf(stderr, "sluiced: %s\n", err);
        ev_loop_destroy(loop);
        return 1;
    }
    signals_t sig = {.srv = &srv};
    ev_signal_init(&sig.term, on_signal, SIGTERM);
    ev_signal_init(&sig.intr, on_signal, SIGINT);
    ev_signal_init(&sig.hup, on_hup, SIGHUP);
    sig.term.data = sig.intr.data = sig.hup.data = &sig;
    ev_signal_start(loop, &sig.term);
    ev_signal_start(loop, &sig.intr);
    ev_signal_start(loop, &sig.hup);

    log_msg(LOG_INFO, "sluiced %s started, region %s", SLUICE_VERSION, srv.cfg->region);
    server_print_ready(&srv, stdout);
    ev_run(loop, 0);

    const server_counters_t *k = &srv.counters;
    log_msg(LOG_INFO, "stopped: %llu connections, %llu tunnels served",
            (unsigned long long)k->conns_accepted, (unsigned long long)k->tunnels_opened);
    ev_signal_stop(loop, &sig.term);
    ev_signal_stop(loop, &sig.intr);
    ev_signal_stop(loop, &sig.hup);
    server_dispose(&srv);
    ev_loop_destroy(loop);
    return 0;
}
