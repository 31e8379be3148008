/*
 * test_open_relay.c — the gateway is not an open relay (issue 10 §6): no
 * request path, query, header, method, capsule, resume token or admin call
 * sends a datagram anywhere but the backend the configuration gives.
 *
 * The real sluiced runs on loopback. Its tenant acme (kinds [sfu], region
 * local) has one backend: the test's UDP echo on 127.0.0.1:P. The config also
 * names two backends acme may not use — local's turn pool and region eu's sfu
 * pool, both for tenant beta — and those are decoys like the rest: UDP
 * listeners on 127.0.0.2 and 127.1.2.3 (Linux answers all of 127/8), on ::1,
 * on the echo's port P, on the gateway's and the admin API's ports, and on a
 * port D that the attacker names in its requests. Each attempt is a raw
 * HTTP/2 request (ts_h2raw); whatever it is answered, any tunnel it opened
 * carries DATAGRAMs, and a 200 is allowed only for a legitimate request whose
 * datagrams then come back from the echo. At the end every decoy is polled
 * until a deadline and must have received nothing, and every connected UDP
 * socket of the gateway process (/proc/PID/fd against /proc/PID/net/udp{,6})
 * must point at the echo: that covers the addresses a test cannot listen on
 * (169.254.169.254, fe80::, other hosts).
 *
 * probe "none" on every pool: the health checker sends nothing, so a decoy
 * that is a configured backend counts only what a tunnel sent.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_curl.h"
#include "../support/ts_echo.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_sluice.h"
#include "../support/ts_util.h"

#define ROOT "root-token-0123456789"
#define MAX_DECOYS 24
#define DATAGRAMS 3 /* per opened tunnel */

typedef struct decoy {
    char label[80];
    int fd;
    ts_addr_t addr;
    uint64_t got;
} decoy_t;

static ts_gateway_t gw;
static ts_echo_t *echo;
static ts_h2raw_t h;
static decoy_t decoys[MAX_DECOYS];
static size_t ndecoys;
static char dir[PATH_MAX - 32], conf[PATH_MAX], admin_addr[64];
#define NAMED 12
static char named[NAMED][64]; /* what the attacker names: 127.0.0.2:D, [::1]:D, ... */
static uint16_t dport;        /* D */
static int opened, refused;   /* attempts answered 200 / an error */

static void teardown(void)
{
    ts_h2raw_close(&h);
    ts_gateway_dispose(&gw);
    ts_echo_stop(echo);
    echo = NULL;
    for (size_t i = 0; i < ndecoys; i++)
        if (decoys[i].fd >= 0)
            close(decoys[i].fd);
    ndecoys = 0;
}

/* A UDP listener on "addr:port" (numeric); port 0 picks one. NULL when the
 * port is in use on that address (errno EADDRINUSE); any other failure fails
 * the test. */
static decoy_t *decoy_bind(const char *host, int ipv6, uint16_t port, const char *why)
{
    cr_assert_lt(ndecoys, MAX_DECOYS);
    decoy_t *d = &decoys[ndecoys];
    char text[96];
    snprintf(text, sizeof text, ipv6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    cr_assert_eq(ts_addr_parse(text, &d->addr), 0, "%s", text);
    d->fd = socket(d->addr.sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(d->fd, 0);
    if (ipv6)
        setsockopt(d->fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int));
    if (bind(d->fd, (struct sockaddr *)&d->addr.sa, d->addr.len) < 0) {
        int e = errno;
        close(d->fd);
        d->fd = -1;
        cr_assert_eq(e, EADDRINUSE, "cannot bind the decoy %s: %s", text, strerror(e));
        errno = e;
        return NULL;
    }
    socklen_t len = sizeof d->addr.sa;
    cr_assert_eq(getsockname(d->fd, (struct sockaddr *)&d->addr.sa, &len), 0);
    d->addr.len = len;
    char s[64];
    snprintf(d->label, sizeof d->label, "%s (%s)", ts_addr_str(&d->addr, s, sizeof s), why);
    ndecoys++;
    return d;
}

static decoy_t *decoy_add(const char *host, int ipv6, uint16_t port, const char *why)
{
    decoy_t *d = decoy_bind(host, ipv6, port, why);
    cr_assert_not_null(d, "cannot bind the decoy %s:%u: %s", host, (unsigned)port,
                       strerror(errno));
    return d;
}

/* A decoy on a port another component chose (the echo's, the gateway's): the
 * same number may be held on that address by another test's socket. Then
 * there is no decoy there, and the check of sluiced's sockets in /proc
 * (gateway_udp_peers_are_the_echo) still covers it. */
static void decoy_try_add(const char *host, int ipv6, uint16_t port, const char *why)
{
    if (!decoy_bind(host, ipv6, port, why))
        fprintf(stderr, "test_open_relay: no decoy on %s port %u (%s): in use elsewhere\n", host,
                (unsigned)port, why);
}

/* The port D the attacker names: free on 127.0.0.1 and on the four other
 * loopback addresses the decoys take it on (another test's socket may hold
 * it there: pick again). */
static void named_decoys(void)
{
    static const struct {
        const char *host;
        int ipv6;
        const char *why;
    } at[] = {
        {"127.0.0.2", 0, "named port, other loopback"},
        {"127.1.2.3", 0, "named port, other loopback"},
        {"127.255.255.254", 0, "named port, last of 127/8"},
        {"::1", 1, "named port, IPv6 loopback"},
    };
    for (int attempt = 0; attempt < 64; attempt++) {
        size_t mark = ndecoys;
        decoy_t *d = decoy_add("127.0.0.1", 0, 0, "the port the attacker names");
        dport = ts_addr_port(&d->addr);
        size_t i = 0;
        while (i < sizeof at / sizeof at[0] && decoy_bind(at[i].host, at[i].ipv6, dport, at[i].why))
            i++;
        if (i == sizeof at / sizeof at[0])
            return;
        while (ndecoys > mark)
            close(decoys[--ndecoys].fd);
    }
    cr_assert_fail("no port free on every loopback address in 64 tries");
}

/* Reads what each decoy holds, until deadline; returns the total ever received. */
static uint64_t decoys_drain(int64_t deadline)
{
    uint64_t total = 0;
    for (;;) {
        struct pollfd p[MAX_DECOYS];
        for (size_t i = 0; i < ndecoys; i++)
            p[i] = (struct pollfd){.fd = decoys[i].fd, .events = POLLIN};
        int left = ts_remaining_ms(deadline);
        if (poll(p, ndecoys, left > 0 ? left : 0) <= 0)
            break;
        for (size_t i = 0; i < ndecoys; i++) {
            uint8_t buf[2048];
            for (int n = 0; n < 256 && recv(decoys[i].fd, buf, sizeof buf, MSG_DONTWAIT) >= 0;
                 n++)
                decoys[i].got++;
        }
    }
    for (size_t i = 0; i < ndecoys; i++)
        total += decoys[i].got;
    return total;
}

/* The config: acme's only backend is the echo; beta's turn (local) and sfu
 * (eu) backends are decoys acme must never reach. The tenants live in a file
 * store so that the admin API can be asked to change them. Per-source
 * connection limits are raised: every attempt is a new connection. */
static void write_config(void)
{
    static int n;
    char name[32];
    snprintf(name, sizeof name, "relay%d", n++);
    cr_assert_eq(ts_tmppath(name, dir, sizeof dir), 0);
    cr_assert_eq(mkdir(dir, 0700), 0);
    char cert[1024], key[1024], a[64], b[64];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    decoy_t *turn = decoy_add("127.0.0.1", 0, 0, "beta's turn backend in local");
    decoy_t *eu = decoy_add("127.0.0.1", 0, 0, "beta's sfu backend in eu");
    char text[8192];
    snprintf(text, sizeof text,
             "{\"listen\": [\"127.0.0.1:0\"], \"tls\": {\"cert\": \"%s\", \"key\": \"%s\"},"
             " \"region\": \"local\","
             " \"limits\": {\"handshakes_per_source_s\": 100000, \"max_auth_failures\": 1000},"
             " \"regions\": {"
             "  \"local\": {\"sfu\": {\"backends\": [\"%s\"], \"probe\": \"none\"},"
             "             \"turn\": {\"backends\": [\"%s\"], \"probe\": \"none\"}},"
             "  \"eu\": {\"sfu\": {\"backends\": [\"%s\"], \"probe\": \"none\"}}},"
             " \"admin\": {\"listen\": \"127.0.0.1:0\", \"tokens\": [{\"token\": \"" ROOT "\"}]},"
             " \"tenant_store\": {\"type\": \"file\", \"path\": \"tenants.json\"}}",
             cert, key, ts_echo_addr_str(echo), ts_addr_str(&turn->addr, a, sizeof a),
             ts_addr_str(&eu->addr, b, sizeof b));
    snprintf(conf, sizeof conf, "%s/sluiced.json", dir);
    cr_assert_eq(ts_write_file(conf, text, strlen(text)), 0);
    static const char tenants[] =
        "{\"revision\": 1, \"tenants\": ["
        " {\"id\": \"acme\", \"secrets\": [\"s1\"], \"regions\": [\"local\"], \"kinds\": [\"sfu\"]},"
        " {\"id\": \"beta\", \"secrets\": [\"b1\"], \"regions\": [\"local\", \"eu\"],"
        "  \"kinds\": [\"sfu\", \"turn\"]}]}";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tenants.json", dir);
    cr_assert_eq(ts_write_file(path, tenants, strlen(tenants)), 0);
}

static void start(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    echo = ts_echo_start(AF_INET);
    cr_assert_not_null(echo);
    uint16_t p = ts_addr_port(ts_echo_addr(echo));
    named_decoys();
    decoy_try_add("127.0.0.2", 0, p, "echo's port, other loopback");
    decoy_try_add("127.1.2.3", 0, p, "echo's port, other loopback");
    decoy_try_add("::1", 1, p, "echo's port, IPv6 loopback");
    decoy_add("::1", 1, 0, "IPv6 loopback, another port");
    write_config();
    cr_assert_eq(ts_gateway_start(&gw, NULL, conf, ts_deadline(ts_ms(10000))), 0,
                 "sluiced did not start (its output is above)");
    cr_assert_eq(ts_gateway_admin_addr(&gw, admin_addr, sizeof admin_addr, ts_deadline(ts_ms(5000))), 0,
                 "no admin line");
    ts_addr_t admin;
    cr_assert_eq(ts_addr_parse(admin_addr, &admin), 0);
    uint16_t gp = ts_addr_port(&gw.listen[0]), ap = ts_addr_port(&admin);
    decoy_try_add("127.0.0.1", 0, gp, "the gateway's TLS port");
    decoy_try_add("127.0.0.2", 0, gp, "the gateway's TLS port, other loopback");
    decoy_try_add("::1", 1, gp, "the gateway's TLS port, IPv6");
    decoy_try_add("127.0.0.1", 0, ap, "the admin API's port");
    snprintf(named[0], sizeof named[0], "127.0.0.2:%u", (unsigned)dport);
    snprintf(named[1], sizeof named[1], "127.0.0.1:%u", (unsigned)dport);
    snprintf(named[2], sizeof named[2], "[::1]:%u", (unsigned)dport);
    snprintf(named[3], sizeof named[3], "127.1.2.3:%u", (unsigned)dport);
    snprintf(named[4], sizeof named[4], "127.0.0.2:%u", (unsigned)p);
    snprintf(named[5], sizeof named[5], "127.0.0.1:%u", (unsigned)gp);
    snprintf(named[6], sizeof named[6], "169.254.169.254:%u", (unsigned)dport);
    snprintf(named[7], sizeof named[7], "[fe80::1]:%u", (unsigned)dport);
    /* Other spellings of 127.0.0.2 that a lax address parser would take. */
    snprintf(named[8], sizeof named[8], "[::ffff:127.0.0.2]:%u", (unsigned)dport);
    snprintf(named[9], sizeof named[9], "2130706434:%u", (unsigned)dport);
    snprintf(named[10], sizeof named[10], "0x7f.0.0.2:%u", (unsigned)dport);
    snprintf(named[11], sizeof named[11], "127.2:%u", (unsigned)dport);
    opened = refused = 0;
}

/* ---- requests ---------------------------------------------------------- */

#define MAX_NV 24

typedef struct req {
    nghttp2_nv nv[MAX_NV];
    size_t n;
    char user[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
} req_t;

static void nv_add(req_t *r, const char *name, const char *value)
{
    cr_assert_lt(r->n, MAX_NV);
    r->nv[r->n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                                 NGHTTP2_NV_FLAG_NONE};
}

/* A request with a valid credential of secret ("s1": acme, "b1": beta),
 * method and path (NULL: left out), :authority "sluice". */
static req_t *req(req_t *r, const char *secret, const char *method, const char *path)
{
    *r = (req_t){0};
    cr_assert_eq(ts_cred_mint(CRED_SHA1, secret, 600, "u1", r->user, sizeof r->user, r->cred,
                              sizeof r->cred),
                 0);
    nv_add(r, ":method", method);
    nv_add(r, ":scheme", "https");
    nv_add(r, ":authority", "sluice");
    if (path)
        nv_add(r, ":path", path);
    nv_add(r, "tunnel-username", r->user);
    nv_add(r, "tunnel-credential", r->cred);
    return r;
}

/* Replaces the value of name (the first field of that name), or adds it. */
static void nv_set(req_t *r, const char *name, const char *value)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp((const char *)r->nv[i].name, name) == 0) {
            r->nv[i].value = (uint8_t *)value;
            r->nv[i].valuelen = strlen(value);
            return;
        }
    nv_add(r, name, value);
}

static void nv_del(req_t *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp((const char *)r->nv[i].name, name) == 0) {
            memmove(&r->nv[i], &r->nv[i + 1], (r->n - i - 1) * sizeof r->nv[0]);
            r->n--;
            return;
        }
}

static int has_datagram(const ts_h2raw_t *c, void *arg)
{
    (void)arg;
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    size_t nd = 0, nc = 0;
    uint64_t code;
    return s && (s->end_stream || s->reset ||
                 (ts_walk_capsules(s->body, s->body_len, &nd, &nc, &code), nd > 0));
}

/* Stream 1 has an answer: a status, or a reset, or the connection ended. */
static int answered(const ts_h2raw_t *c, void *arg)
{
    (void)arg;
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    return (s && (s->status || s->reset || s->end_stream)) || c->goaway || c->closed;
}

/* A DATAGRAM capsule (context 0) with an RTP packet of id into out. */
static size_t rtp_capsule(uint8_t *out, size_t cap, uint32_t id)
{
    uint8_t pkt[64];
    size_t n = ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, (uint16_t)id, id * 160, 0x0e1a0000u, id);
    ssize_t w = capsule_encode_datagram(out, cap, pkt, n);
    cr_assert_gt(w, 0);
    return (size_t)w;
}

/* One attempt on a fresh connection (stream 1): sends r, waits for the answer
 * and, whatever it is, sends DATAGRAMS RTP datagrams plus extra (more capsule
 * bytes, may be NULL) as the request body. legit: the request is one a
 * client may make, so it must get 200 and its datagrams must come back from
 * the echo; otherwise it must be refused (an error status or a reset
 * stream). The connection stays open unless keep is 0; the status is
 * returned, -1 for a reset or no answer. */
static int attempt_on(ts_h2raw_t *c, const char *label, const req_t *r, int legit,
                      const uint8_t *extra, size_t extra_len, int keep)
{
    cr_assert_eq(ts_h2raw_connect(c, &gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "%s: cannot connect: %s", label, c->err);
    cr_assert_eq(ts_h2raw_headers(c, 1, r->nv, r->n, 0), 0, "%s: %s", label, c->err);
    ts_h2raw_wait(c, answered, NULL, ts_deadline(ts_ms(5000)));
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    int status = s && s->status ? s->status : -1;
    uint8_t body[4096];
    size_t len = 0;
    for (uint32_t i = 0; i < DATAGRAMS; i++)
        len += rtp_capsule(body + len, sizeof body - len, i + 1);
    cr_assert_leq(extra_len, sizeof body - len);
    if (extra_len)
        memcpy(body + len, extra, extra_len);
    len += extra_len;
    ts_h2raw_send_frame(c, NGHTTP2_DATA, 0, 1, body, len); /* may fail on a refused stream */
    if (status == 200) {
        opened++;
        int back = ts_h2raw_wait(c, has_datagram, NULL, ts_deadline(ts_ms(5000))) == 0;
        size_t nd = 0, nc = 0;
        uint64_t code;
        if (s)
            ts_walk_capsules(s->body, s->body_len, &nd, &nc, &code);
        cr_log_info("open-relay attempt: %-60s -> 200, %zu datagram(s) echoed", label, nd);
        cr_expect(legit, "%s: answered 200 — the gateway opened a tunnel for it", label);
        if (legit)
            cr_expect(back && nd > 0, "%s: a legitimate tunnel's datagrams did not come back "
                                      "from the echo",
                      label);
    } else {
        refused++;
        cr_log_info("open-relay attempt: %-60s -> %d%s", label, status,
                    status < 0 && s && s->reset ? " (stream reset)" : "");
        cr_expect(!legit, "%s: a legitimate request got %d, expected 200", label, status);
        cr_expect(status < 0 ? (s && s->reset) || c->goaway || c->closed : status >= 400,
                  "%s: answered %d: neither a tunnel nor an error", label, status);
    }
    if (!keep)
        ts_h2raw_close(c);
    return status;
}

static int attempt(const char *label, const req_t *r, int legit)
{
    return attempt_on(&h, label, r, legit, NULL, 0, 0);
}

/* ---- what the gateway holds -------------------------------------------- */

/* The /proc/net/udp{,6} form of a's address, "0100007F:1F90" or 32 hex
 * digits and a port; IPv4 also as the IPv4-mapped IPv6 form in mapped. */
static void proc_form(const ts_addr_t *a, char *v4, char *mapped, size_t cap)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a->sa;
    snprintf(v4, cap, "%08X:%04X", (unsigned)in->sin_addr.s_addr, (unsigned)ntohs(in->sin_port));
    snprintf(mapped, cap, "0000000000000000%08X%08X:%04X", (unsigned)htonl(0x0000ffffu),
             (unsigned)in->sin_addr.s_addr, (unsigned)ntohs(in->sin_port));
}

/* Every connected UDP socket the gateway process holds must have the echo as
 * its peer. Returns how many connected ones there are. */
static size_t gateway_udp_peers_are_the_echo(void)
{
    enum { MAX_INODES = 4096 };
    static unsigned long inodes[MAX_INODES];
    size_t ninodes = 0;
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)gw.proc.pid);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s: %s", path, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) && ninodes < MAX_INODES) {
        char fdpath[320];
        snprintf(fdpath, sizeof fdpath, "%s/%s", path, e->d_name);
        ssize_t n = readlink(fdpath, link, sizeof link - 1);
        unsigned long ino;
        if (n > 0 && (link[n] = 0, sscanf(link, "socket:[%lu]", &ino) == 1))
            inodes[ninodes++] = ino;
    }
    closedir(d);
    char want4[80], wantmapped[80];
    proc_form(ts_echo_addr(echo), want4, wantmapped, sizeof want4);
    size_t connected = 0;
    static const char *const tables[] = {"udp", "udp6"};
    for (size_t t = 0; t < 2; t++) {
        snprintf(path, sizeof path, "/proc/%d/net/%s", (int)gw.proc.pid, tables[t]);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "%s: %s", path, strerror(errno));
        char line[512];
        for (int lines = 0; lines < 100000 && fgets(line, sizeof line, f); lines++) {
            char local[80], rem[80];
            unsigned long ino;
            if (sscanf(line, " %*[0-9]: %79s %79s %*s %*s %*s %*s %*s %*s %lu", local, rem,
                       &ino) != 3)
                continue; /* the header line */
            int ours = 0;
            for (size_t i = 0; i < ninodes && !ours; i++)
                ours = inodes[i] == ino;
            const char *port = strrchr(rem, ':');
            if (!ours || !port || strcmp(port, ":0000") == 0)
                continue; /* not the gateway's, or not connected */
            connected++;
            cr_expect(strcmp(rem, t == 0 ? want4 : wantmapped) == 0,
                      "the gateway holds a UDP socket connected to %s (/proc %s), not the echo "
                      "(%s)",
                      rem, tables[t], ts_echo_addr_str(echo));
        }
        fclose(f);
    }
    return connected;
}

/* Ends a test: a legitimate tunnel still works (the positive control, so
 * this test can fail), the gateway's connected UDP sockets all point at the
 * echo, every decoy stays silent until a deadline, and sluiced exits 0. */
static void finish(void)
{
    req_t r;
    attempt_on(&h, "control: POST /v1/tunnel/acme/sfu", req(&r, "s1", "POST", "/v1/tunnel/acme/sfu"),
               1, NULL, 0, 1);
    size_t connected = gateway_udp_peers_are_the_echo();
    cr_expect_gt(connected, 0u, "the gateway holds no connected UDP socket while a tunnel is open");
    uint64_t total = decoys_drain(ts_deadline(ts_ms(500)));
    for (size_t i = 0; i < ndecoys; i++)
        cr_expect_eq(decoys[i].got, 0u, "the decoy %s received %llu datagram(s)",
                     decoys[i].label, (unsigned long long)decoys[i].got);
    size_t sources = ts_echo_sources(echo, NULL, 0);
    cr_log_info("open-relay: %d attempts opened a tunnel, %d refused; echo: %llu datagrams from "
                "%zu sources; %zu decoys: %llu datagrams; gateway UDP sockets connected: %zu",
                opened, refused, (unsigned long long)ts_echo_packets(echo), sources, ndecoys,
                (unsigned long long)total, connected);
    cr_expect_gt(ts_echo_packets(echo), 0u, "the echo received nothing (positive control)");
    ts_h2raw_close(&h);
    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(10000))), 0, "sluiced did not exit 0");
    ts_gateway_dispose(&gw);
}

/* ---- the attempts -------------------------------------------------------- */

Test(open_relay, paths_queries_regions_and_kinds_reach_only_the_echo, .fini = teardown,
     .timeout = 60)
{
    start();
    req_t r;
    attempt("legit: /v1/tunnel/acme/sfu", req(&r, "s1", "POST", "/v1/tunnel/acme/sfu"), 1);
    attempt("legit: ?region=local", req(&r, "s1", "POST", "/v1/tunnel/acme/sfu?region=local"), 1);

    char p[40][192];
    size_t np = 0;
#define PATH(...) (snprintf(p[np], sizeof p[np], __VA_ARGS__), p[np++])
    const char *paths[] = {
        "/v1/tunnel/acme%2fsfu",
        "/v1/tunnel/acme%2Fsfu",
        "/v1/tunnel/acme/sfu%2f..%2f..%2fturn",
        "/v1/tunnel/acme/../beta/sfu",
        "/v1/tunnel/./acme/sfu",
        "/v1/tunnel/acme/./sfu",
        "/v1/tunnel/acme/%2e%2e/sfu",
        "/v1/tunnel/acme/%2E%2E/turn",
        "/v1/tunnel/acme/sfu/../turn",
        "/v1/tunnel//acme/sfu",
        "//v1/tunnel/acme/sfu",
        "/v1//tunnel/acme/sfu",
        "/v1/tunnel/acme//sfu",
        "/v1/tunnel/acme/sfu/",
        "/v1/tunnel/acme/sfu/extra",
        "/v1/tunnel/acme/sfu;host=x",
        "/v1/tunnel/acme/s%66u",
        "/v1/tunnel/acme/SFU",
        "/v1/tunnel/ACME/sfu",
        "/v1/tunnel/acme/turn",
        "/v1/tunnel/acme/turn?region=local",
        "/v1/tunnel/acme/sfu?region=eu",
        "/v1/tunnel/acme/sfu?region=EU",
        "/v1/tunnel/acme/sfu?region=mars",
        "/v1/tunnel/acme/sfu?region=",
        "/v1/tunnel/acme/sfu?", /* a '?' with no query is malformed (proto/README.md §4) */
        "/v1/tunnel/acme/sfu?region=local&region=eu",
        "/v1/tunnel/acme/sfu?region=eu%26region=local",
        "/v1/tunnel/acme/sfu?region=local%00eu",
        "/v1/tunnel/acme/sfu?region=local/../eu",
        "/v1/tunnel/acme/sfu?REGION=eu",
        "/v1/tunnel/acme/sfu#region=eu",
        "/v1/tunnel/acme/udp",
        "/v1/tunnel/acme/echo",
        "/v1/tunnel/beta/sfu",
        "/v1/tunnel/beta/turn",
        "/v1/tunnel/beta/sfu?region=eu",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char label[256];
        snprintf(label, sizeof label, "path %s", paths[i]);
        attempt(label, req(&r, "s1", "POST", paths[i]), 0);
    }
    /* Addresses and ports in the path and the query. */
    for (size_t k = 0; k < NAMED; k++) {
        np = 0;
        const char *t = named[k];
        const char *variants[] = {
            PATH("/v1/tunnel/acme/sfu/%.63s", t),
            PATH("/v1/tunnel/%.63s/sfu", t),
            PATH("/v1/tunnel/acme/%.63s", t),
            PATH("/v1/tunnel/acme/sfu?host=%.63s", t),
            PATH("/v1/tunnel/acme/sfu?target=%.63s", t),
            PATH("/v1/tunnel/acme/sfu?backend=%.63s", t),
            PATH("/v1/tunnel/acme/sfu?region=local&backend=%.63s", t),
            PATH("/v1/tunnel/acme/sfu?backend=%.63s&region=local", t),
            PATH("/v1/tunnel/acme/sfu?region=%.63s", t),
            PATH("/v1/tunnel/acme/sfu%%2f%.63s", t),
            PATH("https://%.63s/v1/tunnel/acme/sfu", t),
            PATH("/.well-known/masque/udp/%.63s/", t),
        };
        for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
            char label[256];
            snprintf(label, sizeof label, "path %s", variants[i]);
            attempt(label, req(&r, "s1", "POST", variants[i]), 0);
        }
    }
#undef PATH
    /* Another tenant's credential for acme's path, and acme's for beta's. */
    attempt("beta's credential on acme's path", req(&r, "b1", "POST", "/v1/tunnel/acme/sfu"), 0);
    attempt("acme's credential, beta's turn", req(&r, "s1", "POST", "/v1/tunnel/beta/turn"), 0);
    finish();
}

Test(open_relay, headers_and_connect_methods_reach_only_the_echo, .fini = teardown,
     .timeout = 60)
{
    start();
    req_t r;
    const char *ignored[] = {"host", "x-forwarded-for", "x-forwarded-host", "x-real-ip",
                             "forwarded", "via", "tunnel-target", "tunnel-backend",
                             "tunnel-region", "tunnel-host", "tunnel-fallback", "tunnel-route",
                             "x-sluice-backend", "proxy-authorization", "capsule-protocol"};
    /* Headers naming decoys: the gateway reads none of them for routing, so
     * the request stays legitimate and its datagrams go to the echo. */
    for (size_t k = 0; k < NAMED; k++) {
        for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
            char label[256], fwd[160];
            req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
            if (strcmp(ignored[i], "forwarded") == 0) {
                snprintf(fwd, sizeof fwd, "for=\"%.63s\";host=\"%.63s\"", named[k], named[k]);
                nv_add(&r, ignored[i], fwd);
            } else {
                nv_add(&r, ignored[i], named[k]);
            }
            snprintf(label, sizeof label, "header %.63s: %.63s", ignored[i], named[k]);
            attempt(label, &r, 1);
        }
        char label[256];
        req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
        nv_set(&r, ":authority", named[k]);
        snprintf(label, sizeof label, ":authority %.63s", named[k]);
        attempt(label, &r, 1);
    }
    req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
    nv_add(&r, "tunnel-region", "eu");
    nv_add(&r, "region", "eu");
    attempt("header tunnel-region: eu, region: eu", &r, 1);
    req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
    nv_add(&r, ":path", "/v1/tunnel/acme/turn");
    attempt("two :path fields (sfu, then turn)", &r, 0);
    req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
    nv_add(&r, ":authority", named[0]);
    attempt("two :authority fields", &r, 0);
    req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
    nv_add(&r, ":protocol", "connect-udp");
    attempt("POST with :protocol connect-udp", &r, 0);

    /* CONNECT (RFC 9113 §8.5): only :method and :authority. */
    for (size_t k = 0; k < NAMED; k++) {
        char label[256];
        r = (req_t){0};
        ts_cred_mint(CRED_SHA1, "s1", 600, "u1", r.user, sizeof r.user, r.cred, sizeof r.cred);
        nv_add(&r, ":method", "CONNECT");
        nv_add(&r, ":authority", named[k]);
        nv_add(&r, "tunnel-username", r.user);
        nv_add(&r, "tunnel-credential", r.cred);
        snprintf(label, sizeof label, "CONNECT %.63s", named[k]);
        attempt(label, &r, 0);
        /* Extended CONNECT, RFC 9298 connect-udp with the target in the path. */
        char path[192];
        const char *host = named[k];
        snprintf(path, sizeof path, "/.well-known/masque/udp/%.*s/%u/",
                 (int)(strrchr(host, ':') - host), host, (unsigned)dport);
        req(&r, "s1", "CONNECT", path);
        nv_add(&r, ":protocol", "connect-udp");
        nv_add(&r, "capsule-protocol", "?1");
        snprintf(label, sizeof label, "CONNECT-UDP %s", path);
        attempt(label, &r, 0);
    }
    req(&r, "s1", "CONNECT", "/v1/tunnel/acme/sfu");
    nv_add(&r, ":protocol", "connect-udp");
    attempt("extended CONNECT connect-udp on the tunnel path", &r, 0);
    req(&r, "s1", "CONNECT", "/v1/tunnel/acme/sfu");
    attempt("CONNECT with :path /v1/tunnel/acme/sfu (no :protocol)", &r, 0);
    req(&r, "s1", "CONNECT", "/v1/tunnel/acme/sfu");
    nv_add(&r, ":protocol", "websocket");
    attempt("extended CONNECT websocket on the tunnel path", &r, 0);
    const char *methods[] = {"GET", "PUT", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < 4; i++) {
        char label[64];
        snprintf(label, sizeof label, "%s /v1/tunnel/acme/sfu", methods[i]);
        attempt(label, req(&r, "s1", methods[i], "/v1/tunnel/acme/sfu"), 0);
    }
    req(&r, "s1", "POST", NULL);
    nv_del(&r, ":path");
    attempt("POST without :path", &r, 0);
    req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
    nv_set(&r, ":scheme", "http");
    attempt(":scheme http", &r, 0);
    finish();
}

/* Capsule bytes: a DATAGRAM with context id ctx and payload. */
static size_t datagram_ctx(uint8_t *out, size_t cap, uint64_t ctx, const void *payload,
                           size_t len)
{
    uint8_t value[256];
    cr_assert_lt(len + 8, sizeof value);
    size_t vl;
    if (ctx < 64) {
        value[0] = (uint8_t)ctx;
        vl = 1;
    } else {
        value[0] = 0x80 | (uint8_t)(ctx >> 24), value[1] = (uint8_t)(ctx >> 16);
        value[2] = (uint8_t)(ctx >> 8), value[3] = (uint8_t)ctx;
        vl = 4;
    }
    memcpy(value + vl, payload, len);
    ssize_t w = capsule_encode(out, cap, CAPSULE_DATAGRAM, value, vl + len);
    cr_assert_gt(w, 0);
    return (size_t)w;
}

/* An address as RFC 9298 / RFC 9484 style bytes: IP version, address, port. */
static size_t address_bytes(uint8_t *out, const ts_addr_t *a)
{
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->sa;
        out[0] = 4;
        memcpy(out + 1, &in->sin_addr, 4);
        memcpy(out + 5, &in->sin_port, 2);
        return 7;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->sa;
    out[0] = 6;
    memcpy(out + 1, &in6->sin6_addr, 16);
    memcpy(out + 17, &in6->sin6_port, 2);
    return 19;
}

Test(open_relay, capsules_and_resume_tokens_reach_only_the_echo, .fini = teardown,
     .timeout = 60)
{
    start();
    req_t r;
    /* Capsules on a legitimate tunnel that carry addresses: dropped or
     * delivered to the echo, never elsewhere. */
    static uint8_t extra[16384];
    size_t n = 0;
    for (size_t i = 0; i < ndecoys; i++) {
        uint8_t a[32];
        size_t al = address_bytes(a, &decoys[i].addr);
        char text[64];
        ts_addr_str(&decoys[i].addr, text, sizeof text);
        const uint64_t ctxs[] = {1, 2, 63, 0x1ECA6A00u};
        for (size_t c = 0; c < 4; c++) {
            n += datagram_ctx(extra + n, sizeof extra - n, ctxs[c], a, al);
            n += datagram_ctx(extra + n, sizeof extra - n, ctxs[c], text, strlen(text));
        }
        /* Unknown types (RFC 9297 §3.2: skipped), among them RFC 9484's
         * ADDRESS_ASSIGN / ADDRESS_REQUEST / ROUTE_ADVERTISEMENT. */
        const uint64_t types[] = {0x01, 0x02, 0x3514, 0x3520, 0x1ECA6A00u, 0x1ECA6A01u,
                                  0x1ECA6A02u};
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            ssize_t w = capsule_encode(extra + n, sizeof extra - n, types[t], a, al);
            cr_assert_gt(w, 0);
            n += (size_t)w;
        }
        /* Context 0 and SIGNAL whose payload looks like an address: a UDP
         * payload like any other, for the echo. */
        n += datagram_ctx(extra + n, sizeof extra - n, 0, text, strlen(text));
        ssize_t w = capsule_encode(extra + n, sizeof extra - n, CAPSULE_SIGNAL, a, al);
        cr_assert_gt(w, 0);
        n += (size_t)w;
    }
    cr_log_info("open-relay: %zu bytes of address-carrying capsules", n);
    attempt_on(&h, "capsules: DATAGRAM ctx 1/2/63/0x1ECA6A00, unknown types, SIGNAL",
               req(&r, "s1", "POST", "/v1/tunnel/acme/sfu"), 1, extra, n, 1);
    /* The stream survives them (unknown capsules and other contexts are
     * skipped): a further datagram is still echoed. */
    uint8_t more[128];
    size_t ml = rtp_capsule(more, sizeof more, 99);
    const ts_h2raw_stream_t *s = ts_h2raw_stream(&h, 1);
    cr_assert_not_null(s);
    size_t before = 0, nc = 0, after = 0;
    uint64_t code;
    ts_walk_capsules(s->body, s->body_len, &before, &nc, &code);
    cr_assert_eq(ts_h2raw_send_frame(&h, NGHTTP2_DATA, 0, 1, more, ml), 0);
    int64_t deadline = ts_deadline(ts_ms(5000));
    while (after <= before && ts_remaining_ms(deadline) > 0 && !s->end_stream && !s->reset) {
        ts_h2raw_poll(&h, ts_deadline(100));
        ts_walk_capsules(s->body, s->body_len, &after, &nc, &code);
    }
    cr_expect_gt(after, before, "the tunnel stopped echoing after the address capsules");
    ts_h2raw_close(&h);

    /* Resume tokens. A beta session (local, sfu) and an acme session, both
     * parked when their connections drop. */
    static ts_h2raw_t hb, ha;
    char tb[64], ta[64];
    attempt_on(&hb, "legit: beta /v1/tunnel/beta/sfu", req(&r, "b1", "POST", "/v1/tunnel/beta/sfu"),
               1, NULL, 0, 1);
    snprintf(tb, sizeof tb, "%s", ts_h2raw_stream(&hb, 1)->session);
    attempt_on(&ha, "legit: acme /v1/tunnel/acme/sfu", req(&r, "s1", "POST", "/v1/tunnel/acme/sfu"),
               1, NULL, 0, 1);
    snprintf(ta, sizeof ta, "%s", ts_h2raw_stream(&ha, 1)->session);
    cr_assert(tb[0] && ta[0], "no tunnel-session tokens (resume is on by default)");
    ts_h2raw_close(&hb);
    ts_h2raw_close(&ha);

    struct {
        const char *label, *secret, *path, *token;
    } tries[] = {
        {"forged token", "s1", "/v1/tunnel/acme/sfu", "AAECAwQFBgcICQoLDA0ODw"},
        {"forged token, all ones", "s1", "/v1/tunnel/acme/sfu", "_____________________w"},
        {"forged token, another node's tag", "s1", "/v1/tunnel/acme/sfu",
         "0-Gy-gECAwQFBgcICQoLDA"},
        {"non-canonical token", "s1", "/v1/tunnel/acme/sfu", "AAECAwQFBgcICQoLDA0ODx"},
        {"beta's token on acme's path", "s1", "/v1/tunnel/acme/sfu", tb},
        {"beta's token, beta, region eu (its decoy backend)", "b1",
         "/v1/tunnel/beta/sfu?region=eu", tb},
        {"beta's token, beta, kind turn (its decoy backend)", "b1", "/v1/tunnel/beta/turn", tb},
        {"acme's token, beta's credential and path", "b1", "/v1/tunnel/beta/sfu", ta},
        {"acme's token, region eu", "s1", "/v1/tunnel/acme/sfu?region=eu", ta},
        {"acme's token, kind turn", "s1", "/v1/tunnel/acme/turn", ta},
    };
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        char label[256];
        snprintf(label, sizeof label, "resume: %s", tries[i].label);
        req(&r, tries[i].secret, "POST", tries[i].path);
        nv_add(&r, "tunnel-resume", tries[i].token);
        attempt(label, &r, 0);
    }
    /* Another user of acme with acme's token: 410, the session is bound to u1. */
    r = (req_t){0};
    ts_cred_mint(CRED_SHA1, "s1", 600, "mallory", r.user, sizeof r.user, r.cred, sizeof r.cred);
    nv_add(&r, ":method", "POST");
    nv_add(&r, ":scheme", "https");
    nv_add(&r, ":authority", "sluice");
    nv_add(&r, ":path", "/v1/tunnel/acme/sfu");
    nv_add(&r, "tunnel-username", r.user);
    nv_add(&r, "tunnel-credential", r.cred);
    nv_add(&r, "tunnel-resume", ta);
    attempt("resume: acme's token, another acme user", &r, 0);
    /* The owner resumes: legitimate, and back at the echo. */
    req(&r, "s1", "POST", "/v1/tunnel/acme/sfu");
    nv_add(&r, "tunnel-resume", ta);
    attempt("resume: acme's own token", &r, 1);
    finish();
}

/* ---- admin --------------------------------------------------------------- */

/* tmpl with its first '@' replaced by value, into out. */
static void subst(char *out, size_t cap, const char *tmpl, const char *value)
{
    const char *at = strchr(tmpl, '@');
    if (!at)
        snprintf(out, cap, "%s", tmpl);
    else
        snprintf(out, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, value, at + 1);
}

static long admin(const char *method, const char *path, const char *body, ts_curl_reply_t *r)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", admin_addr, path);
    const char *hdr[] = {"Content-Type: application/json", "Authorization: Bearer " ROOT, NULL};
    long status = ts_curl(method, url, hdr, body, 10000L, r);
    cr_assert_neq(status, -1, "%s %s: %s", method, path, r->err);
    return status;
}

Test(open_relay, admin_refuses_backends_and_regions_not_in_the_config, .fini = teardown,
     .timeout = 60)
{
    start();
    ts_curl_reply_t a;
    char body[512];
    struct {
        const char *method, *path, *fmt, *json_path;
    } calls[] = {
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"enable_region\": \"mars\"}",
         "$.enable_region"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"enable_region\": \"@\"}",
         "$.enable_region"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"enable_region\": \"LOCAL\"}",
         "$.enable_region"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"backends\": [\"@\"]}", "$.backends"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"sfu\": [\"@\"]}", "$.sfu"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"regions\": {\"x\": {\"sfu\": [\"@\"]}}}",
         "$.regions"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"kinds\": [\"sfu\", \"@\"]}",
         "$.kinds"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"kinds\": [\"udp\"]}", "$.kinds"},
        {"PATCH", "/v1/tenants/acme", "{\"revision\": 1, \"limits\": {\"backend\": \"@\"}}",
         "$.limits.backend"},
        {"PUT", "/v1/tenants/acme", "{\"revision\": 1, \"target\": \"@\"}", "$.target"},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        subst(body, sizeof body, calls[i].fmt, named[0]);
        long st = admin(calls[i].method, calls[i].path, body, &a);
        cr_log_info("open-relay admin: %s %s %s -> %ld %s", calls[i].method, calls[i].path, body,
                    st, a.body);
        cr_expect(st >= 400 && st < 500, "%s %s: %ld (%s)", calls[i].method, body, st, a.body);
        cr_expect(strstr(a.body, calls[i].json_path), "%s: the answer does not name %s: %s", body,
                  calls[i].json_path, a.body);
    }
    /* Creating a tenant, or a tenant under an address, is no endpoint. */
    snprintf(body, sizeof body,
             "{\"id\": \"evil\", \"secrets\": [\"e1\"], \"regions\": [\"local\"],"
             " \"sfu\": [\"%s\"]}",
             named[0]);
    const char *creates[][2] = {{"POST", "/v1/tenants"}, {"PUT", "/v1/tenants/evil"},
                                {"PATCH", "/v1/tenants/evil"}, {"POST", "/v1/backends"},
                                {"POST", "/v1/regions/local"}};
    for (size_t i = 0; i < 5; i++) {
        long st = admin(creates[i][0], creates[i][1], body, &a);
        cr_log_info("open-relay admin: %s %s -> %ld %s", creates[i][0], creates[i][1], st, a.body);
        cr_expect(st >= 400 && st < 500, "%s %s: %ld (%s)", creates[i][0], creates[i][1], st,
                  a.body);
    }
    /* Nothing changed: revision 1, and acme still only reaches the echo. */
    cr_assert_eq(admin("GET", "/v1/tenants/acme", NULL, &a), 200);
    cr_expect(strstr(a.body, "\"revision\":1"), "a refused change moved the revision: %s", a.body);
    req_t r;
    attempt("after the admin calls: ?region=eu", req(&r, "s1", "POST", "/v1/tunnel/acme/sfu?region=eu"),
            0);
    attempt("after the admin calls: acme turn", req(&r, "s1", "POST", "/v1/tunnel/acme/turn"), 0);
    attempt("after the admin calls: tenant evil",
            req(&r, "e1", "POST", "/v1/tunnel/evil/sfu"), 0);
    finish();
}
