/*
 * main.c — sluice-shim: relays UDP between local applications and a sluice
 * gateway. Each local source address that sends to --listen gets its own
 * tunnel (flow); what the gateway sends on that tunnel goes back to it.
 *
 * stdout carries exactly these lines, each flushed at once, for scripts:
 *   sluice-shim listening <addr:port>
 *   sluice-shim connected gateway=<host:port> alpn=h2 <route>   (every connection)
 *   sluice-shim reconnecting in <N> ms: <reason>
 *   sluice-shim disconnected: <reason>              (only before a non-zero exit)
 *   sluice-shim flow <src> direct|tunnel (<why>)    with --direct (direct_flow.h)
 * (route: "direct" or "via proxy host:port"). Everything else goes to
 * stderr. Exit codes (docs/shim.md): 0 after SIGINT/SIGTERM; 1 for a local
 * failure (cannot listen, out of memory); 2 for bad usage, a CA file or proxy
 * credentials file that cannot be loaded included (checked before anything is
 * bound or printed); then configuration errors, which no retry can mend:
 * 3 the gateway cannot be trusted or spoken to (certificate or name
 * verification, no HTTP/2); 4 the gateway refuses a tunnel with 401 or 403;
 * 5 the proxy refuses the CONNECT (403 or another status); 6 unusable proxy
 * settings (bad URL, PAC error); 7 the proxy wants credentials it did not get
 * or rejected (407).
 *
 * The shim never gives up on a transient failure: gateway down at start,
 * refused, reset, GOAWAY, CLOSE(shutting down) all lead to a reconnect with
 * exponential back-off and jitter (--reconnect-min-ms .. --reconnect-max-ms),
 * keeping the local port and the flows, whose tunnels the library resumes or
 * re-opens on the new connection. A connection that ends while no flow is
 * open (gateways close idle connections) is not worth a reconnect: the shim
 * goes dormant and connects again when the next packet arrives, resuming its
 * TLS session: the process keeps one TLS context (sluice_tls_t) for all its
 * connections.
 *
 * Bursts: while the tunnel a datagram went to holds more than half its queue
 * bound, the UDP socket is not read; the kernel's receive buffer holds the
 * rest of the burst until the tunnel drains below a quarter (checked after
 * every loop iteration, and at most PAUSE_MAX_MS later in any case).
 */
#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <linux/sock_diag.h>
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
#include "direct_flow.h"
#include "probe.h"
#include "sluice_shim.h"

#define UDP_BATCH 64                 /* datagrams read per readiness event */
#define UDP_BUF 65536u
#define STOP_FLUSH_MS 1000           /* bound on the goodbye after a signal */
#define RETRY_AFTER_REFUSAL_MS 2000  /* a refused flow waits this long to retry */
#define KEEPALIVE_MS 15000
#define SOCKBUF_BYTES (1 << 20)
#define OUTCOME_MAX 640              /* an outcome: status and a 512-byte reason */
#define PAUSE_MAX_MS 500             /* longest UDP read pause (the media age bound) */
#define CRED_FILE_MAX 2048
#define EXIT_LOCAL 1
#define EXIT_TLS_CONFIG 3
#define EXIT_REFUSED 4
#define EXIT_PROXY_REFUSED 5
#define EXIT_PROXY_CONFIG 6
#define EXIT_PROXY_AUTH 7

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
    cli_direct_t direct; /* --direct: the fallback ladder's UDP rung */
    char gw[SHIM_HOST_MAX + 16];
    int connected;     /* the current client reported CONNECTED */
    int connected_once;
    int stopping;      /* a signal asked us to stop */
    int done;
    int exit_code;
    /* Packets dropped outside the tunnels' own queues, by reason (and the
     * queues' drops of tunnels that ended), told at exit (cli_tell_drops). */
    uint64_t flows_full, udp_send_drops, oversize_drops, backoff_drops, queue_drops;
    uint32_t rxq_drops; /* the app socket's kernel receive queue overflowed (SO_RXQ_OVFL) */
    /* Read pause while a tunnel's queue is over its bound (bursts). */
    ev_check drain_w;
    ev_timer pause_w;
    shim_flow_t *paused_by;
    uint64_t paused_at_ms;
    /* Credentials: --credential-file (re-read on change and SIGHUP) or
     * --secret (minted again every ttl/2). */
    ev_stat cred_w;
    ev_timer cred_poll_w; /* ev_stat misses a same-size rewrite within a second */
    int cred_bad;         /* the last read failed (said once, not every poll) */
    ev_signal sighup_w;
    ev_timer mint_w;
    char cred_user[320];
    char cred[512];
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
    ev_check_stop(cli->loop, &cli->drain_w);
    ev_timer_stop(cli->loop, &cli->pause_w);
    ev_break(cli->loop, EVBREAK_ALL);
}

static void cli_disconnected(cli_t *cli, const char *reason, int code)
{
    printf("sluice-shim disconnected: %s\n", reason);
    fflush(stdout);
    cli_finish(cli, code);
}

/* ---------------------------------------------------------------- tunnels */

static void tun_on_open(sluice_tunnel_t *t, void *ud)
{
    shim_flow_t *f = ud;
    cli_t *cli = f->owner;
    char a[SHIM_ADDRSTR_MAX];

    if (cli->o->verbose) {
        sluice_tunnel_stats_t st;
        sluice_tunnel_stats(t, &st);
        fprintf(stderr, "sluice-shim: tunnel for %s open (stream %" PRId32 ", resumes %" PRIu32
                        " reopens %" PRIu32 ")\n",
                flow_name(f, a, sizeof(a)), sluice_tunnel_stream_id(t), st.resumes, st.reopens);
    }
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
    sluice_state_t cs = sluice_client_state(cli->client);
    int lost = cs == SLUICE_FAILED || cs == SLUICE_CLOSED;
    /* Worth a line without -v: refusals, and tunnels that ended on their own
     * for a reason other than idleness (a lost connection is told by
     * on_state, and ends we asked for are no news). */
    int notable = refused || (!lost && !cli->stopping && f->state == SHIM_FLOW_ACTIVE &&
                              code != SLUICE_CLOSE_NORMAL && code != SLUICE_CLOSE_IDLE_TIMEOUT);

    flow_name(f, a, sizeof(a));
    tun_outcome(status, code, reason, what, sizeof(what));
    sluice_tunnel_stats(t, &st);
    cli->queue_drops += st.dropped_media + st.dropped_signal;
    if (cli->o->verbose) {
        fprintf(stderr, "sluice-shim: tunnel for %s %s; tx %" PRIu64 " rx %" PRIu64
                        " dropped %" PRIu64 " rtt %" PRIu32 " us (min %" PRIu32 ")\n",
                a, what, st.tx_packets, st.rx_packets, st.dropped_media + st.dropped_signal,
                st.rtt_us, st.rtt_min_us);
    } else if (notable) {
        fprintf(stderr, "sluice-shim: tunnel for %s %s\n", a, what);
    }
    f->tunnel = NULL;
    if (cli->paused_by == f)
        cli->paused_by = NULL;
    if ((status == 401 || status == 403) && !cli->stopping) {
        /* Wrong credentials or tenant: retrying cannot help. */
        char msg[OUTCOME_MAX + 64];
        snprintf(msg, sizeof(msg), "tunnel %s", what);
        shim_flowtab_remove(&cli->flows, f);
        cli_disconnected(cli, msg, EXIT_REFUSED);
        return;
    }
    if (lost) {
        /* The connection ended under this tunnel; on_state follows. */
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
        .username = o->credential_file ? cli->cred_user : o->username,
        .credential = o->credential_file ? cli->cred : o->credential,
        .media_queue_bytes = o->queue_bytes,
        .signal_queue_bytes = o->queue_bytes,
        .ping_interval_ms = o->ping_interval_ms,
        /* Without --direct the tunnel is the only way configured. */
        .fallback = f->fallback ? f->fallback : SLUICE_FALLBACK_FORCED,
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

/* ---------------------------------------------------------------- direct */

/* The fallback ladder's way into the tunnel and back to the app. */
static int direct_open_tunnel(void *ctx, shim_flow_t *f)
{
    return flow_open_tunnel(ctx, f);
}

static void direct_to_app(void *ctx, shim_flow_t *f, const uint8_t *p, size_t len)
{
    cli_t *cli = ctx;

    f->last_ms = cli_now_ms(cli);
    if (sendto(cli->udp, p, len, MSG_DONTWAIT, (const struct sockaddr *)&f->addr, f->addrlen) < 0)
        cli->udp_send_drops++;
}

/* ---------------------------------------------------------------- UDP */

/* One line at exit with every packet the shim did not deliver, by reason
 * (docs/shim.md, "Drops"); nothing when there were none, unless -v. */
static void cli_tell_drops(cli_t *cli)
{
    /* SO_RXQ_OVFL tells the count only with a datagram that came after the
     * drops; the socket's own count (SO_MEMINFO) is final. */
    uint32_t mi[SK_MEMINFO_VARS];
    socklen_t milen = sizeof(mi);
    if (getsockopt(cli->udp, SOL_SOCKET, SO_MEMINFO, mi, &milen) == 0 &&
        milen > SK_MEMINFO_DROPS * sizeof(mi[0]))
        cli->rxq_drops = mi[SK_MEMINFO_DROPS];
    /* Tunnels whose end the loop did not get round to reporting. */
    for (size_t i = 0; i < shim_flowtab_cap(&cli->flows); i++) {
        shim_flow_t *f = shim_flowtab_at(&cli->flows, i);
        if (f->state != SHIM_FLOW_FREE && f->tunnel) {
            sluice_tunnel_stats_t st;
            sluice_tunnel_stats(f->tunnel, &st);
            cli->queue_drops += st.dropped_media + st.dropped_signal;
        }
    }
    uint64_t total = cli->queue_drops + cli->rxq_drops + cli->udp_send_drops +
                     cli->flows_full + cli->oversize_drops + cli->backoff_drops;
    if (!total && !cli->o->verbose)
        return;
    fprintf(stderr,
            "sluice-shim: dropped %" PRIu64 " packets: tunnel queues %" PRIu64
            ", app socket receive queue %" PRIu32 ", to the app %" PRIu64
            ", flow table full %" PRIu64 ", oversize %" PRIu64 ", refused flow %" PRIu64 "\n",
            total, cli->queue_drops, cli->rxq_drops, cli->udp_send_drops, cli->flows_full,
            cli->oversize_drops, cli->backoff_drops);
}

/* Queued payload bytes of f's tunnel against the thresholds: pause above
 * half the bound (a read batch still fits), resume below a quarter. */
static uint64_t cli_queued(const shim_flow_t *f)
{
    sluice_tunnel_stats_t st;

    if (!f->tunnel)
        return 0;
    sluice_tunnel_stats(f->tunnel, &st);
    return st.queued_bytes;
}

static int cli_over_bound(const cli_t *cli, const shim_flow_t *f)
{
    return cli->connected && cli_queued(f) > cli->o->queue_bytes / 2;
}

static void cli_pause(cli_t *cli, shim_flow_t *f, uint64_t now)
{
    cli->paused_by = f;
    cli->paused_at_ms = now;
    ev_io_stop(cli->loop, &cli->udp_w);
    ev_check_start(cli->loop, &cli->drain_w);
    ev_timer_set(&cli->pause_w, PAUSE_MAX_MS / 1000.0, 0.);
    ev_timer_start(cli->loop, &cli->pause_w);
    if (cli->o->verbose)
        fprintf(stderr, "sluice-shim: tunnel queue over %zu bytes; pausing reads\n",
                cli->o->queue_bytes / 2);
}

static void cli_resume_reads(cli_t *cli)
{
    cli->paused_by = NULL;
    ev_check_stop(cli->loop, &cli->drain_w);
    ev_timer_stop(cli->loop, &cli->pause_w);
    if (!cli->stopping && !cli->done)
        ev_io_start(cli->loop, &cli->udp_w);
}

/* After every loop iteration while paused: has the tunnel drained? */
static void cli_on_drain_check(struct ev_loop *loop, ev_check *w, int revents)
{
    cli_t *cli = w->data;

    if (!cli->paused_by || cli_queued(cli->paused_by) < cli->o->queue_bytes / 4 ||
        !cli->connected)
        cli_resume_reads(cli);
}

/* The pause is bounded: media older than this is dropped anyway. */
static void cli_on_pause_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    cli_resume_reads(w->data);
}

static void cli_on_udp(struct ev_loop *loop, ev_io *w, int revents)
{
    cli_t *cli = w->data;

    for (int i = 0; i < UDP_BATCH; i++) {
        struct sockaddr_storage ss;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(uint32_t))];
        } ctl;
        struct iovec iov = {.iov_base = cli->buf, .iov_len = sizeof(cli->buf)};
        struct msghdr mh = {.msg_name = &ss, .msg_namelen = sizeof(ss), .msg_iov = &iov,
                            .msg_iovlen = 1, .msg_control = ctl.buf,
                            .msg_controllen = sizeof(ctl.buf)};
        ssize_t n = recvmsg(cli->udp, &mh, MSG_TRUNC);
        const struct sockaddr *sa = (const struct sockaddr *)&ss;
        socklen_t slen = mh.msg_namelen;
        uint64_t now = cli_now_ms(cli);
        shim_flow_t *f;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN, or an ICMP error reported on the socket */
        }
        /* SO_RXQ_OVFL: the kernel's running count of datagrams it dropped
         * because the socket was full (while a pause held reading back). */
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL)
                memcpy(&cli->rxq_drops, CMSG_DATA(cm), sizeof(cli->rxq_drops));
        if (cli->stopping)
            continue;
        if ((size_t)n > sizeof(cli->buf)) {
            cli->oversize_drops++;
            continue;
        }
        f = shim_flowtab_find(&cli->flows, sa, slen);
        if (f && f->state == SHIM_FLOW_BACKOFF) {
            if (now < f->retry_ms) {
                cli->backoff_drops++; /* its tunnel was refused: retried after the back-off */
                continue;
            }
            f->state = SHIM_FLOW_ACTIVE;
            if (flow_open_tunnel(cli, f) < 0) {
                shim_flowtab_remove(&cli->flows, f);
                continue;
            }
        }
        if (f && f->mode != SHIM_FLOW_TUNNEL) { /* --direct: checking or direct */
            f->last_ms = now;
            cli_direct_flow_packet(&cli->direct, f, cli->buf, (size_t)n);
            continue;
        }
        if (!f) {
            f = shim_flowtab_add(&cli->flows, sa, slen, now);
            if (!f) {
                if (cli->flows_full++ % 1000 == 0)
                    fprintf(stderr, "sluice-shim: %u flows in use; dropping packets from new "
                                    "sources\n", cli->o->max_flows);
                continue;
            }
            if (cli_direct_enabled(&cli->direct)) {
                if (cli_direct_flow_start(&cli->direct, f, cli->buf, (size_t)n) < 0)
                    shim_flowtab_remove(&cli->flows, f);
                continue;
            }
            if (flow_open_tunnel(cli, f) < 0) {
                shim_flowtab_remove(&cli->flows, f);
                continue;
            }
        }
        f->last_ms = now;
        sluice_tunnel_send(f->tunnel, cli->buf, (size_t)n); /* drops are counted there */
        if (cli_over_bound(cli, f)) {
            cli_pause(cli, f, now);
            return;
        }
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
        if (f->state == SHIM_FLOW_ACTIVE && f->mode != SHIM_FLOW_TUNNEL) {
            cli_direct_flow_end(&cli->direct, f); /* no tunnel to close */
            shim_flowtab_remove(&cli->flows, f);
        } else if (f->state == SHIM_FLOW_ACTIVE && f->tunnel) {
            f->state = SHIM_FLOW_CLOSING;
            sluice_tunnel_close(f->tunnel);
        } else if (f->state == SHIM_FLOW_BACKOFF && now >= f->retry_ms) {
            shim_flowtab_remove(&cli->flows, f);
        }
    }
}

/* ---------------------------------------------------------------- lifecycle */

/* Tunnels that live on, or wait, on the client. */
static size_t cli_count_tunnels(shim_flowtab_t *ft)
{
    size_t n = 0;

    for (size_t i = 0; i < shim_flowtab_cap(ft); i++)
        n += shim_flowtab_at(ft, i)->tunnel != NULL;
    return n;
}

static void cli_go_dormant(cli_t *cli, sluice_client_t *c, const char *detail)
{
    fprintf(stderr, "sluice-shim: idle connection ended (%s); reconnecting on the next "
                    "packet\n", detail);
    /* The flows' tunnels (if any) die with the client, without callbacks. */
    for (size_t i = 0; i < shim_flowtab_cap(&cli->flows); i++) {
        shim_flow_t *f = shim_flowtab_at(&cli->flows, i);
        if (f->tunnel)
            shim_flowtab_remove(&cli->flows, f);
    }
    if (cli->paused_by)
        cli_resume_reads(cli);
    sluice_client_free(c); /* deferred: we are inside its callback */
    cli->client = NULL;
    cli->connected = 0;
}

/* The exit code for a failure no retry can mend (docs/shim.md). */
static int cli_fail_code(sluice_fail_t fail)
{
    switch (fail) {
    case SLUICE_FAIL_PROXY_REFUSED: return EXIT_PROXY_REFUSED;
    case SLUICE_FAIL_PROXY_CONFIG: return EXIT_PROXY_CONFIG;
    case SLUICE_FAIL_PROXY_AUTH: return EXIT_PROXY_AUTH;
    default: return EXIT_TLS_CONFIG;
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
    case SLUICE_RECONNECTING:
        if (cli->stopping) {
            cli_finish(cli, 0);
        } else if (cli->connected && cli_count_tunnels(&cli->flows) == 0) {
            /* Nothing to carry: wait for traffic rather than hammer a
             * gateway that is away (or closed an idle connection). */
            cli_go_dormant(cli, c, detail);
        } else {
            const char *why = sluice_fail_name(sluice_client_failure(c));
            cli->connected = 0;
            printf("sluice-shim reconnecting %s (%s)\n", detail, why);
            fflush(stdout);
            fprintf(stderr, "sluice-shim: reconnecting %s (%s)\n", detail, why);
        }
        break;
    case SLUICE_FAILED:
    case SLUICE_CLOSED:
        if (cli->stopping) {
            cli_finish(cli, 0);
        } else if (sluice_fail_permanent(sluice_client_failure(c))) {
            sluice_fail_t fail = sluice_client_failure(c);
            fprintf(stderr, "sluice-shim: cannot use gateway %s: %s (%s)\n", cli->gw, detail,
                    sluice_fail_name(fail));
            cli_disconnected(cli, detail, cli_fail_code(fail));
        } else {
            /* An orderly end with nothing to resume (an idle connection
             * closed by the gateway): reconnect on demand. */
            cli_go_dormant(cli, c, detail);
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
    int bufsz = SOCKBUF_BYTES, one = 1;

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
    setsockopt(cli->udp, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    printf("sluice-shim listening %s\n", shim_addr_format((struct sockaddr *)&ss, a, sizeof(a)));
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------------- credentials */

/* Hands the current credential to the client for every request from now on
 * (opens and resumes): the file's, or a freshly minted one. */
static void cli_push_credential(cli_t *cli)
{
    const shim_cli_opts_t *o = cli->o;
    char username[320], credential[64];

    if (!cli->client)
        return;
    if (o->credential_file) {
        if (cli->cred_user[0])
            sluice_client_set_credential(cli->client, cli->cred_user, cli->cred);
    } else if (o->secret &&
               sluice_cred_mint(o->hash, o->secret, strlen(o->secret),
                                (uint64_t)time(NULL) + o->ttl, o->user, username,
                                sizeof(username), credential, sizeof(credential)) == SLUICE_OK) {
        sluice_client_set_credential(cli->client, username, credential);
    }
}

/* Strips trailing CR/LF/space/tab in place. */
static void cli_rtrim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* Reads --credential-file: line 1 the username, line 2 the credential.
 * Returns 0 (cred_user/cred replaced), or -1 with a message on stderr (the
 * old credential stays). */
static int cli_has_cntrl(const char *s)
{
    for (; *s; s++)
        if (iscntrl((unsigned char)*s))
            return 1;
    return 0;
}

/* Reads --credential-file: a username line and a credential line. Returns
 * 0 (pushing the credential when it changed), or -1 with the reason on
 * stderr — once while the file stays bad: it is also read every second, and
 * a file caught half-written is read again then. */
static int cli_read_cred_file(cli_t *cli)
{
    const char *path = cli->o->credential_file;
    char text[CRED_FILE_MAX + 1], why[160], *nl, *user, *cred = NULL;
    size_t n = 0;
    FILE *fp = fopen(path, "r");

    why[0] = '\0';
    if (!fp) {
        snprintf(why, sizeof(why), "%s", strerror(errno));
    } else {
        n = fread(text, 1, CRED_FILE_MAX, fp);
        fclose(fp);
    }
    text[n] = '\0';
    user = text;
    if ((nl = strchr(text, '\n')) != NULL) {
        *nl = '\0';
        cred = nl + 1;
        if ((nl = strchr(cred, '\n')) != NULL)
            *nl = '\0';
        cli_rtrim(cred);
    }
    cli_rtrim(user);
    if (!why[0] && (!cred || !*user || !*cred || strlen(user) >= sizeof(cli->cred_user) ||
                    strlen(cred) >= sizeof(cli->cred)))
        snprintf(why, sizeof(why), "expected a username line and a credential line");
    if (!why[0] && (cli_has_cntrl(user) || cli_has_cntrl(cred)))
        snprintf(why, sizeof(why), "control character");
    if (why[0]) {
        if (!cli->cred_bad)
            fprintf(stderr, "sluice-shim: cannot use credential file '%s': %s\n", path, why);
        cli->cred_bad = 1;
        return -1;
    }
    cli->cred_bad = 0;
    if (strcmp(user, cli->cred_user) == 0 && strcmp(cred, cli->cred) == 0)
        return 0;
    /* Both lengths were checked against the buffers above. */
    memcpy(cli->cred_user, user, strlen(user) + 1);
    memcpy(cli->cred, cred, strlen(cred) + 1);
    fprintf(stderr, "sluice-shim: credential loaded from '%s' (username %s)\n", path,
            cli->cred_user);
    cli_push_credential(cli);
    return 0;
}

static void cli_on_cred_change(struct ev_loop *loop, ev_stat *w, int revents)
{
    cli_t *cli = w->data;

    if (w->attr.st_nlink)
        cli_read_cred_file(cli);
}

/* A file rewritten in place within the same second with the same size
 * looks unchanged to stat(2): read it every second as well; only a changed
 * credential is pushed. */
static void cli_on_cred_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    cli_read_cred_file(w->data);
}

static void cli_on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
    cli_t *cli = w->data;

    if (cli->o->credential_file)
        cli_read_cred_file(cli);
    else
        cli_push_credential(cli);
}

static void cli_on_mint(struct ev_loop *loop, ev_timer *w, int revents)
{
    cli_push_credential(w->data);
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
        .connect_timeout_ms = o->connect_timeout_ms, /* 0: the library's 10000 */
        .handshake_timeout_ms = o->connect_timeout_ms,
        .on_state = cli_on_state,
        .ud = cli,
        .reconnect_min_ms = o->reconnect_min_ms,
        .reconnect_max_ms = o->reconnect_max_ms,
        .proxy = o->proxy,
        .proxy_pac = o->proxy_pac,
        .proxy_use_env = 1,
        .proxy_user = cli->has_proxy_creds ? cli->proxy_user : NULL,
        .proxy_password = cli->has_proxy_creds ? cli->proxy_password : NULL,
    };

    cli->connected = 0;
    cli->client = sluice_client_new(cli->loop, &co, err, sizeof(err));
    if (!cli->client) {
        fprintf(stderr, "sluice-shim: %s\n", err);
        cli_finish(cli, EXIT_LOCAL);
        return -1;
    }
    cli_push_credential(cli);
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
    if (o->credential_file && cli_read_cred_file(cli) < 0)
        return 2;
    if (o->proxy_user_file && cli_load_proxy_user(cli, o->proxy_user_file) < 0)
        return 2;
    if (cli_bind(cli) < 0)
        return 1;
    if (shim_flowtab_init(&cli->flows, o->max_flows, cli) < 0) {
        fprintf(stderr, "sluice-shim: out of memory\n");
        return 1;
    }
    cli_direct_init(&cli->direct, cli->loop, o, &cli->flows,
                    &(cli_direct_ops_t){direct_open_tunnel, direct_to_app}, cli);
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
    ev_check_init(&cli->drain_w, cli_on_drain_check);
    ev_init(&cli->pause_w, cli_on_pause_timeout);
    cli->drain_w.data = cli->pause_w.data = cli;
    ev_signal_init(&cli->sighup_w, cli_on_sighup, SIGHUP);
    cli->sighup_w.data = cli;
    ev_signal_start(cli->loop, &cli->sighup_w);
    if (o->credential_file) {
        /* inotify where libev has it, else a stat every second. */
        ev_stat_init(&cli->cred_w, cli_on_cred_change, o->credential_file, 1.0);
        cli->cred_w.data = cli;
        ev_stat_start(cli->loop, &cli->cred_w);
        ev_timer_init(&cli->cred_poll_w, cli_on_cred_poll, 1.0, 1.0);
        cli->cred_poll_w.data = cli;
        ev_timer_start(cli->loop, &cli->cred_poll_w);
    } else if (o->secret) {
        /* Fresh before half the lifetime is gone, for resumes and the
         * tunnels the gateway closes with CLOSE(credential expired). */
        double iv = o->ttl / 2.0 < 1.0 ? 1.0 : o->ttl / 2.0;
        ev_timer_init(&cli->mint_w, cli_on_mint, iv, iv);
        cli->mint_w.data = cli;
        ev_timer_start(cli->loop, &cli->mint_w);
    }

    ev_run(cli->loop, 0);
    cli_tell_drops(cli);
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
    if (o.probe) {
        /* The same credentials file as the relay's, checked the same way. */
        if (o.proxy_user_file && cli_load_proxy_user(&cli, o.proxy_user_file) < 0)
            return 2;
        return probe_run(&o, cli.has_proxy_creds ? cli.proxy_user : NULL,
                         cli.has_proxy_creds ? cli.proxy_password : NULL);
    }
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
    ev_check_stop(cli.loop, &cli.drain_w);
    ev_timer_stop(cli.loop, &cli.pause_w);
    ev_signal_stop(cli.loop, &cli.sighup_w);
    ev_stat_stop(cli.loop, &cli.cred_w);
    ev_timer_stop(cli.loop, &cli.cred_poll_w);
    ev_timer_stop(cli.loop, &cli.mint_w);
    cli_direct_dispose(&cli.direct);
    sluice_client_free(cli.client);
    sluice_tls_free(cli.tls);
    shim_flowtab_dispose(&cli.flows);
    if (cli.udp >= 0)
        close(cli.udp);
    ev_loop_destroy(cli.loop);
    fflush(stdout);
    return code;
}
