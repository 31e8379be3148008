/*
 * ts_flow.c — windowed, byte-exact UDP round trips over many sockets.
 */
#include "ts_flow.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ts_pkt.h"
#include "ts_util.h"

#define PRIMER_SSRC 0x5052494du /* "PRIM" */
#define PRIMER_LEN 64u
#define MAX_FLOWS 256

int ts_flow_init_mixed(ts_flow_t *f, int fd, const ts_addr_t *to, size_t n, uint16_t tag,
                       size_t window)
{
    memset(f, 0, sizeof *f);
    f->fd = fd;
    f->to = *to;
    f->n = n;
    f->window = window ? window : 1;
    f->pkts = calloc(n ? n : 1, sizeof *f->pkts);
    f->lens = calloc(n ? n : 1, sizeof *f->lens);
    f->_got = calloc(n ? n : 1, 1);
    if (!f->pkts || !f->lens || !f->_got)
        goto err;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = (uint32_t)tag << 16 | (uint32_t)(i & 0xffff);
        f->pkts[i] = malloc(TS_PKT_MAX);
        if (!f->pkts[i])
            goto err;
        if (i % 5 == 1)
            f->lens[i] = ts_pkt_stun(f->pkts[i], TS_PKT_MAX, id);
        else if (i % 7 == 3)
            f->lens[i] = ts_pkt_dtls(f->pkts[i], TS_PKT_MAX, 93, id);
        else
            f->lens[i] = ts_pkt_rtp(f->pkts[i], TS_PKT_MAX, 172, (uint16_t)i,
                                    (uint32_t)i * 160u, 0x1000u + tag, id);
    }
    return 0;
err:
    ts_flow_free(f);
    return -1;
}

void ts_flow_classes(const ts_flow_t *f, size_t *rtp, size_t *stun, size_t *dtls)
{
    *rtp = *stun = *dtls = 0;
    for (size_t i = 0; i < f->n; i++) {
        uint8_t b = f->pkts[i][0];
        if (b <= 3)
            (*stun)++;
        else if (b >= 20 && b <= 63)
            (*dtls)++;
        else
            (*rtp)++;
    }
}

void ts_flow_free(ts_flow_t *f)
{
    if (f->pkts)
        for (size_t i = 0; i < f->n; i++)
            free(f->pkts[i]);
    free(f->pkts);
    free(f->lens);
    free(f->_got);
    f->pkts = NULL;
    f->lens = NULL;
    f->_got = NULL;
}

static int is_primer(const uint8_t *p, size_t len)
{
    return len == PRIMER_LEN && p[0] == 0x80 && ts_get32(p + 8) == PRIMER_SSRC;
}

int ts_flow_prime(int fd, const ts_addr_t *to, int retry_ms, int64_t deadline)
{
    uint8_t pkt[PRIMER_LEN], buf[TS_PKT_MAX];
    uint16_t seq = 0;
    if (retry_ms < 1)
        retry_ms = 1;
    /* Bounded: one attempt per retry_ms until the deadline. */
    while (ts_remaining_ms(deadline) > 0) {
        ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, seq, 0, PRIMER_SSRC, seq);
        seq++;
        if (ts_udp_send(fd, to, pkt, sizeof pkt) < 0)
            return -1;
        int64_t retry_at = ts_deadline(retry_ms);
        if (retry_at > deadline)
            retry_at = deadline;
        for (;;) {
            ssize_t n = ts_udp_recv(fd, buf, sizeof buf, retry_at, NULL);
            if (n < 0)
                break;
            if (is_primer(buf, (size_t)n))
                return 0;
        }
    }
    return -1;
}

static void take_reply(ts_flow_t *f, const uint8_t *buf, size_t len)
{
    if (is_primer(buf, len))
        return;
    /* Linear match: flows are small (tens to hundreds of packets). */
    for (size_t i = 0; i < f->_cursor; i++) {
        if (f->lens[i] == len && memcmp(f->pkts[i], buf, len) == 0) {
            if (f->_got[i]) {
                f->duplicates++;
            } else {
                f->_got[i] = 1;
                f->matched++;
            }
            return;
        }
    }
    f->foreign++;
}

static void send_window(ts_flow_t *f)
{
    /* In flight = sent - matched; the window is counted in unanswered packets. */
    while (f->_cursor < f->n && f->sent - f->matched < f->window) {
        if (ts_udp_send(f->fd, &f->to, f->pkts[f->_cursor], f->lens[f->_cursor]) < 0)
            return; /* socket buffer full: retried on the next round */
        f->_cursor++;
        f->sent++;
    }
}

int ts_flows_run(ts_flow_t *flows, size_t nflows, int64_t deadline)
{
    if (nflows > MAX_FLOWS)
        return -1;
    struct pollfd pfd[MAX_FLOWS];
    uint8_t buf[TS_PKT_MAX + 1];
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < nflows; i++) {
            send_window(&flows[i]);
            if (flows[i].matched == flows[i].n)
                done++;
            pfd[i].fd = flows[i].fd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        if (done == nflows)
            break;
        int left = ts_remaining_ms(deadline);
        if (left == 0)
            break;
        if (poll(pfd, nflows, left) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < nflows; i++) {
            if (!pfd[i].revents)
                continue;
            /* Drain what is there, bounded per wakeup for fairness. */
            for (int k = 0; k < 64; k++) {
                ssize_t n = recv(flows[i].fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0)
                    break;
                take_reply(&flows[i], buf, (size_t)n);
            }
        }
    }
    int ok = 1;
    for (size_t i = 0; i < nflows; i++)
        if (flows[i].matched != flows[i].n || flows[i].foreign)
            ok = 0;
    return ok ? 0 : -1;
}
