/*
 * direct.c — the UDP reachability check (sluice_udp_check_*, sluice_shim.h)
 * and the direct relay of one flow (shim_direct.h).
 */
#include "shim_direct.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../../common/compat.h"
#include "../../proto/stun.h"
#include "shim_addr.h"

#define CHECK_DEFAULT_BUDGET_MS 1000u
#define CHECK_MAX_BUDGET_MS 60000u
#define CHECK_DEFAULT_RTO_MS 100u
#define CHECK_MAX_REQUESTS 16u  /* RFC 8489 §6.2.1's Rc is 7; a long budget gets a few more */
#define CHECK_READS_PER_EVENT 16

static uint64_t now_ms(void)
{
    return compat_mono_ns() / 1000000u;
}

/* ---------------------------------------------------------------- check */

struct st_sluice_udp_check_t {
    struct ev_loop *_loop;
    int _fd;
    ev_io _io;
    ev_timer _timer;    /* next retransmission, or the end of the budget */
    struct sockaddr_storage _addr;
    socklen_t _addrlen;
    uint32_t _budget_ms, _rto_ms, _next_rto_ms;
    uint64_t _start_ms;
    /* Each request is its own transaction (fresh id), so an answer tells
     * which request it answers and the RTT is exact (no Karn ambiguity). */
    uint8_t _txid[CHECK_MAX_REQUESTS][STUN_TXID_LEN];
    uint64_t _sent_ms[CHECK_MAX_REQUESTS];
    uint32_t _nsent;
    int _start_err;     /* errno of a socket that could not be made */
    int _in_cb;         /* on_done is on the stack */
    int _free_pending;  /* sluice_udp_check_free was called inside it */
    void (*_on_done)(sluice_udp_check_t *, const sluice_udp_check_result_t *, void *);
    void *_ud;
    sluice_udp_check_result_t _res;
};

const char *sluice_udp_check_reason_name(sluice_udp_check_reason_t reason)
{
    switch (reason) {
    case SLUICE_UDP_CHECK_RUNNING: return "running";
    case SLUICE_UDP_CHECK_ANSWERED: return "answered";
    case SLUICE_UDP_CHECK_NO_ANSWER: return "no answer";
    case SLUICE_UDP_CHECK_REFUSED: return "refused";
    case SLUICE_UDP_CHECK_BLOCKED: return "blocked";
    case SLUICE_UDP_CHECK_ERROR: return "error";
    }
    return "unknown";
}

static void check_release(sluice_udp_check_t *c)
{
    ev_io_stop(c->_loop, &c->_io);
    ev_timer_stop(c->_loop, &c->_timer);
    if (c->_fd >= 0)
        close(c->_fd);
    free(c);
}

/* Records the result, stops the I/O and tells the owner. */
static void check_finish(sluice_udp_check_t *c, sluice_udp_check_reason_t reason, int err,
                         uint32_t rtt_ms)
{
    sluice_udp_check_result_t *r = &c->_res;
    uint32_t el = (uint32_t)(now_ms() - c->_start_ms);

    ev_io_stop(c->_loop, &c->_io);
    ev_timer_stop(c->_loop, &c->_timer);
    if (c->_fd >= 0) {
        close(c->_fd);
        c->_fd = -1;
    }
    r->reason = reason;
    r->reachable = reason == SLUICE_UDP_CHECK_ANSWERED;
    r->elapsed_ms = el;
    r->rtt_ms = rtt_ms;
    r->requests = c->_nsent;
    switch (reason) {
    case SLUICE_UDP_CHECK_ANSWERED:
        snprintf(r->detail, sizeof(r->detail), "stun answered in %u ms", rtt_ms);
        break;
    case SLUICE_UDP_CHECK_NO_ANSWER:
        snprintf(r->detail, sizeof(r->detail), "no stun answer in %u ms", el);
        break;
    default:
        snprintf(r->detail, sizeof(r->detail), "udp %s (%s) after %u ms",
                 sluice_udp_check_reason_name(reason), strerror(err), el);
        break;
    }
    if (c->_on_done) {
        c->_in_cb = 1;
        c->_on_done(c, r, c->_ud);
        c->_in_cb = 0;
    }
    if (c->_free_pending)
        check_release(c);
}

/* What a socket error means for the check. */
static sluice_udp_check_reason_t check_classify(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return SLUICE_UDP_CHECK_REFUSED; /* ICMP port unreachable (RFC 1122 §4.1.3.3) */
    case EPERM:      /* a local firewall rule (netfilter drop on output) */
    case EACCES:
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EADDRNOTAVAIL:
        return SLUICE_UDP_CHECK_BLOCKED;
    default:
        return 0; /* transient (ENOBUFS, EAGAIN): the next retransmission may pass */
    }
}

/* Sends request number _nsent. Returns 0, or -1 after finishing the check. */
static int check_send(sluice_udp_check_t *c)
{
    uint8_t req[STUN_BINDING_REQUEST_LEN];
    uint32_t i = c->_nsent;
    sluice_udp_check_reason_t why;

    if (getrandom(c->_txid[i], STUN_TXID_LEN, 0) != (ssize_t)STUN_TXID_LEN) {
        check_finish(c, SLUICE_UDP_CHECK_ERROR, errno, 0);
        return -1;
    }
    stun_binding_request_encode(c->_txid[i], req, sizeof(req));
    c->_sent_ms[i] = now_ms();
    c->_nsent++;
    if (send(c->_fd, req, sizeof(req), MSG_DONTWAIT) < 0 && (why = check_classify(errno))) {
        check_finish(c, why, errno, 0);
        return -1;
    }
    return 0;
}

static void check_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    sluice_udp_check_t *c = container_of(w, sluice_udp_check_t, _timer);
    uint64_t el = now_ms() - c->_start_ms;
    uint64_t left;

    if (c->_fd < 0) { /* the socket could not be made (see start) */
        check_finish(c, c->_res.reason, c->_start_err, 0);
        return;
    }
    if (el >= c->_budget_ms) {
        check_finish(c, SLUICE_UDP_CHECK_NO_ANSWER, 0, 0);
        return;
    }
    if (c->_nsent < CHECK_MAX_REQUESTS && check_send(c) < 0)
        return;
    /* RFC 8489 §6.2.1: the RTO doubles after each transmission. The last
     * wait is cut to what is left of the budget. */
    left = c->_budget_ms - el;
    if (c->_nsent >= CHECK_MAX_REQUESTS || c->_next_rto_ms > left)
        ev_timer_set(w, (double)left / 1000.0, 0.);
    else
        ev_timer_set(w, (double)c->_next_rto_ms / 1000.0, 0.);
    c->_next_rto_ms *= 2;
    ev_timer_start(loop, w);
}

static void check_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    sluice_udp_check_t *c = container_of(w, sluice_udp_check_t, _io);
    uint8_t buf[1500];

    for (int n = 0; n < CHECK_READS_PER_EVENT; n++) {
        ssize_t len = recv(c->_fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
        stun_binding_response_t resp;
        sluice_udp_check_reason_t why;

        if (len < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && (why = check_classify(errno)))
                check_finish(c, why, errno, 0);
            return;
        }
        if ((size_t)len > sizeof(buf))
            continue; /* too long to be an answer to us */
        /* Match against every request sent: a late answer to an earlier one
         * proves the path as well as a prompt answer to the last. */
        for (uint32_t i = 0; i < c->_nsent; i++) {
            if (stun_binding_response_decode(buf, (size_t)len, c->_txid[i], &resp, NULL) ==
                (int)len) {
                check_finish(c, SLUICE_UDP_CHECK_ANSWERED, 0,
                             (uint32_t)(now_ms() - c->_sent_ms[i]));
                return;
            }
        }
        /* Anything else (not STUN, another transaction, malformed) is
         * ignored, as RFC 8489 §6.3 says. */
    }
}

sluice_udp_check_t *sluice_udp_check_start(struct ev_loop *loop,
                                           const sluice_udp_check_opts_t *opts, char *err,
                                           size_t errlen)
{
    sluice_udp_check_t *c;
    const struct sockaddr *sa = opts ? opts->addr : NULL;

    if (!loop || !opts || !sa || !opts->on_done ||
        !((sa->sa_family == AF_INET && opts->addrlen >= sizeof(struct sockaddr_in)) ||
          (sa->sa_family == AF_INET6 && opts->addrlen >= sizeof(struct sockaddr_in6))) ||
        opts->addrlen > sizeof(struct sockaddr_storage)) {
        shim__errf(err, errlen, "udp check: an IPv4 or IPv6 address and on_done are required");
        return NULL;
    }
    if (opts->budget_ms > CHECK_MAX_BUDGET_MS) {
        shim__errf(err, errlen, "udp check: budget above %u ms", CHECK_MAX_BUDGET_MS);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        shim__errf(err, errlen, "out of memory");
        return NULL;
    }
    c->_loop = loop;
    memcpy(&c->_addr, sa, opts->addrlen);
    c->_addrlen = opts->addrlen;
    c->_budget_ms = opts->budget_ms ? opts->budget_ms : CHECK_DEFAULT_BUDGET_MS;
    c->_rto_ms = opts->rto_ms ? opts->rto_ms : CHECK_DEFAULT_RTO_MS;
    c->_next_rto_ms = c->_rto_ms;
    c->_on_done = opts->on_done;
    c->_ud = opts->ud;
    c->_start_ms = now_ms();
    snprintf(c->_res.detail, sizeof(c->_res.detail), "running");
    ev_init(&c->_io, check_on_read);
    ev_init(&c->_timer, check_on_timer);

    /* A connected socket: the kernel filters datagrams from other sources
     * and reports ICMP errors for this destination on it. */
    c->_fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->_fd < 0 || connect(c->_fd, sa, c->_addrlen) < 0) {
        /* Reported from the loop, like every other outcome. */
        c->_res.reason = check_classify(errno) ? check_classify(errno) : SLUICE_UDP_CHECK_ERROR;
        c->_start_err = errno;
        if (c->_fd >= 0)
            close(c->_fd);
        c->_fd = -1;
    } else {
        ev_io_set(&c->_io, c->_fd, EV_READ);
        ev_io_start(loop, &c->_io);
    }
    /* The first request goes from the loop too (the timer at 0), so on_done
     * is never called from inside this function. */
    ev_timer_set(&c->_timer, 0., 0.);
    ev_timer_start(loop, &c->_timer);
    return c;
}

void sluice_udp_check_result(const sluice_udp_check_t *c, sluice_udp_check_result_t *out)
{
    *out = c->_res;
}

void sluice_udp_check_free(sluice_udp_check_t *c)
{
    if (!c)
        return;
    if (c->_in_cb) {
        c->_free_pending = 1;
        return;
    }
    check_release(c);
}

/* ---------------------------------------------------------------- relay */

static void relay_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    shim_direct_relay_t *r = container_of(w, shim_direct_relay_t, _io);

    for (int n = 0; n < SHIM_DIRECT_READS_PER_EVENT && r->_fd >= 0; n++) {
        ssize_t len = recv(r->_fd, r->_buf, sizeof(r->_buf), MSG_DONTWAIT | MSG_TRUNC);

        if (len < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            continue; /* an ICMP error for an earlier datagram: silence will tell */
        }
        if ((size_t)len > sizeof(r->_buf))
            continue;
        r->rx_packets++;
        r->_waiting = 0; /* the timer sees it and stands down */
        r->_on_packet(r, r->_buf, (size_t)len, r->_ud);
    }
}

static void relay_on_silence(struct ev_loop *loop, ev_timer *w, int revents)
{
    shim_direct_relay_t *r = container_of(w, shim_direct_relay_t, _silence);
    uint64_t waited;

    if (!r->_waiting || r->_silent)
        return; /* a reply came; the next send re-arms */
    waited = now_ms() - r->_waiting_since_ms;
    if (waited < r->_silence_ms) {
        ev_timer_set(w, (double)(r->_silence_ms - waited) / 1000.0, 0.);
        ev_timer_start(loop, w);
        return;
    }
    r->_silent = 1;
    r->_on_silent(r, r->_ud); /* may dispose and free r: touch nothing after */
}

int shim_direct_relay_init(shim_direct_relay_t *r, struct ev_loop *loop,
                           const shim_direct_relay_opts_t *opts, char *err, size_t errlen)
{
    memset(r, 0, offsetof(shim_direct_relay_t, _buf));
    r->_fd = -1;
    r->_loop = loop;
    r->_silence_ms = opts->silence_ms;
    r->_on_packet = opts->on_packet;
    r->_on_silent = opts->on_silent;
    r->_ud = opts->ud;
    ev_init(&r->_io, relay_on_read);
    ev_init(&r->_silence, relay_on_silence);
    r->_fd = socket(opts->addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->_fd < 0 || connect(r->_fd, opts->addr, opts->addrlen) < 0) {
        shim__errf(err, errlen, "direct socket: %s", strerror(errno));
        if (r->_fd >= 0)
            close(r->_fd);
        r->_fd = -1;
        return -1;
    }
    ev_io_set(&r->_io, r->_fd, EV_READ);
    ev_io_start(loop, &r->_io);
    return 0;
}

int shim_direct_relay_send(shim_direct_relay_t *r, const uint8_t *p, size_t len)
{
    if (r->_fd < 0)
        return -1;
    if (!r->_waiting) {
        /* The first packet since the last reply starts the silence clock.
         * The timer is armed only here and rearms itself, never per packet. */
        r->_waiting = 1;
        r->_waiting_since_ms = now_ms();
        if (!ev_is_active(&r->_silence) && !r->_silent) {
            ev_timer_set(&r->_silence, (double)r->_silence_ms / 1000.0, 0.);
            ev_timer_start(r->_loop, &r->_silence);
        }
    }
    if (send(r->_fd, p, len, MSG_DONTWAIT) < 0) {
        r->tx_errors++;
        return -1;
    }
    r->tx_packets++;
    return 0;
}

void shim_direct_relay_dispose(shim_direct_relay_t *r)
{
    if (r->_loop) {
        ev_io_stop(r->_loop, &r->_io);
        ev_timer_stop(r->_loop, &r->_silence);
    }
    if (r->_fd >= 0)
        close(r->_fd);
    r->_fd = -1;
}
