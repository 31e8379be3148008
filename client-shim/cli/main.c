/*
 * main.c — sluice-shim: relays UDP between local applications and a sluice
 * gateway. Each local source address that sends to --listen gets its own
 * tunnel (flow); what the gateway sends on that tunnel goes back to it.
 *
 * stdout carries exactly these lines, each flushed at once, for scripts:
 *   sluice-shim listening <addr:port>
 *   sluice-shim connected gateway=<host:port> alpn=h2 <route>
 *   sluice-shim disconnected: <reason>
 * (route: "direct" or "via proxy host:port"). Everything else goes to
 * stderr. Exit codes: 0 after SIGINT/SIGTERM or when the gateway shut down;
 * 1 when the connection failed or broke; 2 for bad usage, a CA file or
 * proxy credentials file that cannot be loaded included (checked before
 * anything is bound or printed); when the first connection fails at the
 * proxy: 3 unreachable, timed out or malformed reply, 4 authentication
 * (407), 5 CONNECT refused (403 or another status), 6 unusable proxy
 * settings (bad URL, PAC error).
 *
 * A connection the gateway ends while no tunnel is open (it closes idle
 * connections) is not a disconnect: the shim goes dormant and connects again
 * when the next packet arrives, resuming its TLS session: the process keeps
 * one TLS context (sluice_tls_t) for all its connections. Losing a connection
 * that carried tunnels ends the process (reconnecting those is a later
 * feature).
 */
#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../common/compat.h"

#include "../lib/shim_addr.h"
#include "../lib/shim_cli.h"
#include "../lib/shim_flow.h"
#include "sluice_shim.h"

#define UDP_BATCH 64                 /* datagrams read per readiness event */
#define UDP_BUF 65536u
#define STOP_FLUSH_MS 1000           /* bound on the goodbye after a signal */
#define RETRY_AFTER_REFUSAL_MS 2000  /* a refused flow waits this long to retry */
#define KEEPALIVE_MS 15000
#define SOCKBUF_BYTES (1 << 20)
#define OUTCOME_MAX 640              /* an outcome: status and a 512-byte reason */

typedef struct cli {
    struct ev_loop *loop;
    const shim_cli_opts_t *o;
    int udp;
    ev_io udp_w;
    ev_signal sigint_w, sigterm_w;
    ev_timer sweep_w;
    ev_timer stop_w;
    sluice_tls_t *tls;         /* one per process: trust anchors, session cache */
    char proxy_user[256];      /* from --proxy-user-file */
    char proxy_password[256];
    int has_proxy_creds;
    sluice_client_t *client;
    shim_flowtab_t flows;
    char gw[SHIM_HOST_MAX + 16];
    int connected;     /* the current client reported CONNECTED */
    int connected_once;
    int tunnels_lost;  /* tunnels ended by the current connection's end */
    int stopping;      /* a signal asked us to stop */
    int done;
    int exit_code;
    int shutdown_seen; /* a tunnel got CLOSE(shutting down) */
    uint64_t flows_full, udp_send_drops;
    uint8_t buf[UDP_BUF];
} cli_t;

/* Flow idleness and retry times: monotonic, never the wall clock. */
static uint64_t cli_now_ms(const cli_t *cli)
{
    return compat_mono_ns() / 1000000u;
}

static const char *flow_name(const shim_flow_t *f, char *buf, size_t cap)
{
    return shim_addr_format((const struct sockaddr *)&f->addr, buf, cap);
}

static void cli_finish(cli_t *cli, int code)
{
    if (cli->done)
        return;
    cli->done = 1;
    cli->exit_code = code;
    ev_io_stop(cli->loop, &cli->udp_w);
    ev_timer_stop(cli->loop, &cli->sweep_w);
    ev_timer_stop(cli->loop, &cli->stop_w);
    ev_break(cli->loop, EVBREAK_ALL);
}

static void cli_disconnected(cli_t *cli, const char *reason)
{
    printf("sluice-shim disconnected: %s\n", reason);
    fflush(stdout);
    cli_finish(cli, cli->shutdown_seen ? 0 : 1);
}

/* ---------------------------------------------------------------- tunnels */

static void tun_on_open(sluice_tunnel_t *t, void *ud)
{
    shim_flow_t *f = ud;
    cli_t *cli = f->owner;
    char a[SHIM_ADDRSTR_MAX];

    if (cli->o->verbose)
        fprintf(stderr, "sluice-shim: tunnel for %s open (stream %" PRId32 ")\n",
                flow_name(f, a, sizeof(a)), sluice_tunnel_stream_id(t));
}

static void tun_on_packet(sluice_tunnel_t *t, const uint8_t *p, size_t len, int is_signal,
                          void *ud)
{
    shim_flow_t *f = ud;
    cli_t *cli = f->owner;

    f->last_ms = cli_now_ms(cli);
    /* A full socket buffer drops the datagram, as the network would. */
    if (sendto(cli->udp, p, len, MSG_DONTWAIT, (const struct sockaddr *)&f->addr, f->addrlen) < 0)
        cli->udp_send_drops++;
}

/* What ended a tunnel, for its one log line: a refusal names its HTTP
 * status, a CLOSE its code, anything else what happened. */
static void tun_outcome(int status, uint64_t code, const char *reason, char *buf, size_t cap)
{
    if (status != 200 && status != 0)
        snprintf(buf, cap, "refused: %d %s", status, reason);
    else if (code == SLUICE_CLOSE_NO_CODE)
        snprintf(buf, cap, "ended: %s", reason);
    else if (*reason)
        snprintf(buf, cap, "closed: CLOSE(%s) %s", sluice_close_name(code), reason);
    else
        snprintf(buf, cap, "closed: CLOSE(%s)", sluice_close_name(code));
}

static void tun_on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason,
                         void *ud)
{
    shim_flow_t *f = ud;
    cli_t *cli = f->owner;
    char a[SHIM_ADDRSTR_MAX], what[OUTCOME_MAX];
    sluice_tunnel_stats_t st;
    int refused = status != 200 && status != 0;
    int lost = sluice_client_state(cli->client) >= SLUICE_FAILED;
    /* Worth a line without -v: refusals, and tunnels that ended on their own
     * for a reason other than idleness (a lost connection is told by
     * on_state, and ends we asked for are no news). */
    int notable = refused || (!lost && !cli->stopping && f->state == SHIM_FLOW_ACTIVE &&
                              code != SLUICE_CLOSE_NORMAL && code != SLUICE_CLOSE_IDLE_TIMEOUT);

    flow_name(f, a, sizeof(a));
    tun_outcome(status, code, reason, what, sizeof(what));
    if (cli->o->verbose) {
        sluice_tunnel_stats(t, &st);
        fprintf(stderr, "sluice-shim: tunnel for %s %s; tx %" PRIu64 " rx %" PRIu64
                        " dropped %" PRIu64 "\n",
                a, what, st.tx_packets, st.rx_packets, st.dropped_media + st.dropped_signal);
    } else if (notable) {
        fprintf(stderr, "sluice-shim: tunnel for %s %s\n", a, what);
    }
    f->tunnel = NULL;
    if (code == SLUICE_CLOSE_SHUTTING_DOWN)
        cli->shutdown_seen = 1;
    if (lost) {
        /* The connection ended under this tunnel; on_state follows. */
        cli->tunnels_lost++;
        shim_flowtab_remove(&cli->flows, f);
        return;
    }
    /* A refused or failed flow waits before trying again, so a source that
     * keeps sending does not turn into a stream of doomed requests. */
    if (!cli->stopping && f->state == SHIM_FLOW_ACTIVE && code == SLUICE_CLOSE_NO_CODE &&
        status != 200) {
        f->state = SHIM_FLOW_BACKOFF;
        f->retry_ms = cli_now_ms(cli) + RETRY_AFTER_REFUSAL_MS;
    } else {
        shim_flowtab_remove(&cli->flows, f);
    }
    if (cli->shutdown_seen && cli->connected && !cli->stopping &&
        shim_flowtab_active(&cli->flows) == 0)
        cli_disconnected(cli, "gateway shutting down");
}

static int cli_connect(cli_t *cli);

static int flow_open_tunnel(cli_t *cli, shim_flow_t *f)
{
    const shim_cli_opts_t *o = cli->o;
    char username[320], credential[64];
    sluice_tunnel_opts_t to = {
        .tenant = o->tenant,
        .kind = o->kind,
        .region = o->region,
        .username = o->username,
        .credential = o->credential,
        .on_open = tun_on_open,
        .on_packet = tun_on_packet,
        .on_close = tun_on_close,
        .ud = f,
    };

    if (o->secret) {
        /* Minted per tunnel, so a long-running shim never runs out of time. */
        if (sluice_cred_mint(o->hash, o->secret, strlen(o->secret),
                             (uint64_t)time(NULL) + o->ttl, o->user, username, sizeof(username),
                             credential, sizeof(credential)) != SLUICE_OK) {
            fprintf(stderr, "sluice-shim: cannot mint a credential\n");
            return -1;
        }
        to.username = username;
        to.credential = credential;
    }
    if (!cli->client && cli_connect(cli) < 0)
        return -1;
    f->tunnel = sluice_tunnel_open(cli->client, &to);
    return f->tunnel ? 0 : -1;
}

/* ---------------------------------------------------------------- UDP */

static void cli_on_udp(struct ev_loop *loop, ev_io *w, int revents)
{
    cli_t *cli = w->data;

    for (int i = 0; i < UDP_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof(ss);
        ssize_t n = recvfrom(cli->udp, cli->buf, sizeof(cli->buf), MSG_TRUNC,
                             (struct sockaddr *)&ss, &slen);
        const struct sockaddr *sa = (const struct sockaddr *)&ss;
        uint64_t now = cli_now_ms(cli);
        shim_flow_t *f;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN, or an ICMP error reported on the socket */
        }
        if ((size_t)n > sizeof(cli->buf) || cli->stopping)
            continue;
        f = shim_flowtab_find(&cli->flows, sa, slen);
        if (f && f->state == SHIM_FLOW_BACKOFF) {
            if (now < f->retry_ms)
                continue;
            f->state = SHIM_FLOW_ACTIVE;
            if (flow_open_tunnel(cli, f) < 0) {
                shim_flowtab_remove(&cli->flows, f);
                continue;
            }
        }
        if (!f) {
            f = shim_flowtab_add(&cli->flows, sa, slen, now);
            if (!f) {
                if (cli->flows_full++ % 1000 == 0)
                    fprintf(stderr, "sluice-shim: %u flows in use; dropping packets from new "
                                    "sources\n", cli->o->max_flows);
                continue;
            }
            if (flow_open_tunnel(cli, f) < 0) {
                shim_flowtab_remove(&cli->flows, f);
                continue;
            }
        }
        f->last_ms = now;
        sluice_tunnel_send(f->tunnel, cli->buf, (size_t)n); /* drops are counted there */
    }
}

/* Closes flows idle for --flow-idle-ms and forgets expired refusals. */
static void cli_on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    cli_t *cli = w->data;
    uint64_t now = cli_now_ms(cli);

    for (size_t i = 0; i < shim_flowtab_cap(&cli->flows); i++) {
        shim_flow_t *f = shim_flowtab_at(&cli->flows, i);
        if (now - f->last_ms < cli->o->flow_idle_ms)
            continue;
        if (f->state == SHIM_FLOW_ACTIVE && f->tunnel) {
            f->state = SHIM_FLOW_CLOSING;
            sluice_tunnel_close(f->tunnel);
        } else if (f->state == SHIM_FLOW_BACKOFF && now >= f->retry_ms) {
            shim_flowtab_remove(&cli->flows, f);
        }
    }
}

/* ---------------------------------------------------------------- lifecycle */

/* The exit code for a first connection that failed (docs/shim.md). */
static int cli_fail_code(sluice_fail_t fail)
{
    switch (fail) {
    case SLUICE_FAIL_PROXY_UNREACHABLE:
    case SLUICE_FAIL_PROXY_TIMEOUT:
    case SLUICE_FAIL_PROXY_MALFORMED:
        return 3;
    case SLUICE_FAIL_PROXY_AUTH: return 4;
    case SLUICE_FAIL_PROXY_REFUSED: return 5;
    case SLUICE_FAIL_PROXY_CONFIG: return 6;
    default: return 1;
    }
}

static void cli_on_state(sluice_client_t *c, sluice_state_t state, const char *detail, void *ud)
{
    cli_t *cli = ud;
    const char *route;

    if (cli->done)
        return; /* already said goodbye; the loop is stopping */
    switch (state) {
    case SLUICE_CONNECTING:
        if (cli->o->verbose)
            fprintf(stderr, "sluice-shim: connecting to %s\n", detail);
        break;
    case SLUICE_CONNECTED:
        cli->connected = cli->connected_once = 1;
        route = sluice_client_route(c);
        route = route ? route : "direct";
        printf("sluice-shim connected gateway=%s alpn=h2 %s%s\n", cli->gw,
               strcmp(route, "direct") == 0 ? "" : "via ", route);
        fflush(stdout);
        if (cli->o->verbose)
            fprintf(stderr, "sluice-shim: connected (%s) %s%s\n", detail,
                    strcmp(route, "direct") == 0 ? "" : "via ", route);
        break;
    case SLUICE_RECONNECTING: /* not asked for (no reconnect_max_ms) */
    case SLUICE_FAILED:
    case SLUICE_CLOSED:
        if (cli->stopping) {
            cli_finish(cli, 0);
        } else if (!cli->connected_once) {
            sluice_fail_t fail = sluice_client_failure(c);
            fprintf(stderr, "sluice-shim: cannot connect to %s: %s%s%s\n", cli->gw, detail,
                    fail >= SLUICE_FAIL_PROXY_UNREACHABLE ? " — " : "",
                    fail >= SLUICE_FAIL_PROXY_UNREACHABLE ? sluice_fail_name(fail) : "");
            cli_finish(cli, cli_fail_code(fail));
        } else if (cli->shutdown_seen) {
            cli_disconnected(cli, "gateway shutting down");
        } else if (cli->tunnels_lost || !cli->connected) {
            cli_disconnected(cli, detail);
        } else {
            /* Idle connection closed by the gateway: reconnect on demand. */
            fprintf(stderr, "sluice-shim: idle connection ended (%s); reconnecting on the next "
                            "packet\n", detail);
            sluice_client_free(c); /* deferred: we are inside its callback */
            cli->client = NULL;
            cli->connected = 0;
        }
        break;
    }
}

static void cli_on_stop_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    cli_finish(w->data, 0);
}

static void cli_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    cli_t *cli = w->data;

    if (cli->stopping) { /* a second signal: stop now */
        cli_finish(cli, 0);
        return;
    }
    cli->stopping = 1;
    ev_io_stop(loop, &cli->udp_w);
    ev_timer_stop(loop, &cli->sweep_w);
    ev_timer_set(&cli->stop_w, STOP_FLUSH_MS / 1000.0, 0.);
    ev_timer_start(loop, &cli->stop_w);
    /* CLOSE(normal) on every tunnel, GOAWAY, then CLOSED via on_state. */
    if (cli->client)
        sluice_client_close(cli->client);
    else
        cli_finish(cli, 0);
}

static int cli_bind(cli_t *cli)
{
    const shim_cli_opts_t *o = cli->o;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char a[SHIM_ADDRSTR_MAX];
    int bufsz = SOCKBUF_BYTES;

    cli->udp = socket(o->listen.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cli->udp < 0 || bind(cli->udp, (const struct sockaddr *)&o->listen, o->listen_len) < 0 ||
        getsockname(cli->udp, (struct sockaddr *)&ss, &len) < 0) {
        fprintf(stderr, "sluice-shim: cannot listen on %s: %s\n", o->listen_str,
                strerror(errno));
        return -1;
    }
    /* Media arrives in bursts; a larger buffer rides them out. Best effort. */
    setsockopt(cli->udp, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
    setsockopt(cli->udp, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    printf("sluice-shim listening %s\n", shim_addr_format((struct sockaddr *)&ss, a, sizeof(a)));
    fflush(stdout);
    return 0;
}

/* Creates the client and starts connecting. Returns 0, or -1 after ending
 * the process (the options cannot make a client). */
static int cli_connect(cli_t *cli)
{
    const shim_cli_opts_t *o = cli->o;
    char err[512];
    sluice_client_opts_t co = {
        .host = o->gw_host,
        .port = o->gw_port,
        .server_name = o->server_name,
        .tls = cli->tls,
        .keepalive_ms = KEEPALIVE_MS,
        .on_state = cli_on_state,
        .ud = cli,
        .proxy = o->proxy,
        .proxy_pac = o->proxy_pac,
        .proxy_use_env = 1,
        .proxy_user = cli->has_proxy_creds ? cli->proxy_user : NULL,
        .proxy_password = cli->has_proxy_creds ? cli->proxy_password : NULL,
    };

    cli->tunnels_lost = 0;
    cli->connected = 0;
    cli->client = sluice_client_new(cli->loop, &co, err, sizeof(err));
    if (!cli->client) {
        fprintf(stderr, "sluice-shim: %s\n", err);
        cli_finish(cli, 1);
        return -1;
    }
    sluice_client_connect(cli->client);
    return 0;
}

/* --proxy-user-file: one line "user:password" (a file, so that the
 * password never shows in ps). Returns 0, or -1 after a message. */
static int cli_load_proxy_user(cli_t *cli, const char *path)
{
    char line[sizeof(cli->proxy_user) + sizeof(cli->proxy_password)];
    FILE *f = fopen(path, "r");
    char *colon;
    int ok;

    if (!f) {
        fprintf(stderr, "sluice-shim: --proxy-user-file '%s': %s\n", path, strerror(errno));
        return -1;
    }
    ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    if (ok)
        line[strcspn(line, "\r\n")] = '\0';
    colon = ok ? strchr(line, ':') : NULL;
    if (!colon || colon == line || (size_t)(colon - line) >= sizeof(cli->proxy_user) ||
        strlen(colon + 1) >= sizeof(cli->proxy_password)) {
        fprintf(stderr, "sluice-shim: --proxy-user-file '%s': expected one line "
                        "user:password\n", path);
        return -1;
    }
    *colon = '\0';
    memcpy(cli->proxy_user, line, (size_t)(colon - line) + 1);
    memcpy(cli->proxy_password, colon + 1, strlen(colon + 1) + 1);
    cli->has_proxy_creds = 1;
    return 0;
}

static int cli_run(cli_t *cli)
{
    const shim_cli_opts_t *o = cli->o;
    double sweep_s = o->flow_idle_ms < 4000 ? o->flow_idle_ms / 4000.0 : 1.0;

    char err[512];

    shim_hostport_format(o->gw_host, o->gw_port, cli->gw, sizeof(cli->gw));
    /* The trust anchors are part of the command line: check them before
     * anything is bound or printed. */
    cli->tls = sluice_tls_new(o->ca_file, err, sizeof(err));
    if (!cli->tls) {
        fprintf(stderr, "sluice-shim: %s\n", err);
        return 2;
    }
    if (o->proxy_user_file && cli_load_proxy_user(cli, o->proxy_user_file) < 0)
        return 2;
    if (cli_bind(cli) < 0)
        return 1;
    if (shim_flowtab_init(&cli->flows, o->max_flows, cli) < 0) {
        fprintf(stderr, "sluice-shim: out of memory\n");
        return 1;
    }
    if (cli_connect(cli) < 0)
        return 1;

    ev_io_init(&cli->udp_w, cli_on_udp, cli->udp, EV_READ);
    ev_signal_init(&cli->sigint_w, cli_on_signal, SIGINT);
    ev_signal_init(&cli->sigterm_w, cli_on_signal, SIGTERM);
    ev_timer_init(&cli->sweep_w, cli_on_sweep, sweep_s, sweep_s);
    ev_init(&cli->stop_w, cli_on_stop_timeout);
    cli->udp_w.data = cli->sigint_w.data = cli->sigterm_w.data = cli;
    cli->sweep_w.data = cli->stop_w.data = cli;
    ev_io_start(cli->loop, &cli->udp_w);
    ev_signal_start(cli->loop, &cli->sigint_w);
    ev_signal_start(cli->loop, &cli->sigterm_w);
    ev_timer_start(cli->loop, &cli->sweep_w);

    ev_run(cli->loop, 0);
    return cli->exit_code;
}

int main(int argc, char **argv)
{
    static cli_t cli; /* 64 KiB buffer: keep it off the stack */
    shim_cli_opts_t o;
    char err[512];
    int code;

    if (shim_cli_parse(argc, argv, &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice-shim: %s\n", err);
        return 2;
    }
    if (o.help) {
        fputs(shim_cli_usage(), stdout);
        return 0;
    }
    if (o.version) {
        printf("sluice-shim %s\n", SLUICE_SHIM_VERSION);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    cli.o = &o;
    cli.udp = -1;
    cli.loop = ev_default_loop(EVFLAG_AUTO);
    if (!cli.loop) {
        fprintf(stderr, "sluice-shim: cannot create the event loop\n");
        return 1;
    }
    code = cli_run(&cli);

    ev_signal_stop(cli.loop, &cli.sigint_w);
    ev_signal_stop(cli.loop, &cli.sigterm_w);
    ev_io_stop(cli.loop, &cli.udp_w);
    ev_timer_stop(cli.loop, &cli.sweep_w);
    ev_timer_stop(cli.loop, &cli.stop_w);
    sluice_client_free(cli.client);
    sluice_tls_free(cli.tls);
    shim_flowtab_dispose(&cli.flows);
    if (cli.udp >= 0)
        close(cli.udp);
    ev_loop_destroy(cli.loop);
    fflush(stdout);
    return code;
}
