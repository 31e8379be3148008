/*
 * test_overload.c — a late packet is worse than a lost one, wherever it
 * waited (issue 10 §2; docs/architecture.md, "Overload").
 *
 * When sluiced cannot keep up, packets wait in the kernel: the uplink in the
 * client connection's TCP receive queue, the downlink in the tunnel's UDP
 * socket. sluiced reads the kernel's arrival stamp with the bytes
 * (gateway/rxtime.c, SO_TIMESTAMPNS on both) and ages each packet from there:
 * media older than its leg's half of limits.media_queue_age_ms is dropped
 * and counted (uplink_expired, media_expired), signaling always goes on.
 *
 * Here the gateway is stopped (SIGSTOP) while packets arrive for it, so they
 * wait in its sockets for three times the age limit, then continued. What may
 * be lost: exactly the media that waited, no more (the counters say so);
 * every signaling packet and every packet sent after it continued arrive.
 *
 * Media may also have waited before it reached the gateway: in the client's
 * queue, TLS output and unsent kernel bytes. A stamped DATAGRAM says so
 * (proto/README.md §5.1.1): the last test sends media stamped three quarters
 * of the age limit before a fresh primer (within the limit, past the uplink's
 * half of it), and it is dropped as uplink_expired too.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../../proto/capsule.h"
#include "../support/ts_fixture.h"
#include "../support/ts_h2raw.h"
#include "../support/ts_pkt.h"
#include "../support/ts_scrape.h"
#include "../support/ts_util.h"

#define TUNNEL_PATH "/v1/tunnel/" TS_FX_TENANT "/sfu"
/* Long enough that a sanitizer build on a busy host relays fresh media
 * within its leg's half (200 ms); the stale packets wait three times it. */
#define AGE_MS 400
#define STR_(x) #x
#define STR(x) STR_(x)
#define STALE_MEDIA 20u
#define STALE_SIGNAL 5u
#define SEQ_STALE 100u   /* media sequence numbers STALE .. STALE + STALE_MEDIA - 1 */
#define SEQ_PRIMER 1u
#define SEQ_MARKER 999u
#define PAYLOAD 60u

static ts_echo_t *echo;
static ts_gateway_t gw;
static ts_h2raw_t client;
static char metrics_url[128];

/* The echo's socket and the tunnel's address, learnt from the primer. */
static struct {
    pthread_mutex_t lock;
    int fd;
    ts_addr_t tunnel;
    int have;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static int learn_tunnel(void *ud, int fd, const uint8_t *p, size_t len, const ts_addr_t *src)
{
    pthread_mutex_lock(&seen.lock);
    seen.fd = fd;
    seen.tunnel = *src;
    seen.have = 1;
    pthread_mutex_unlock(&seen.lock);
    return 0; /* echo it */
}

static void teardown(void)
{
    ts_h2raw_close(&client);
    if (gw.proc.pid > 0)
        kill(gw.proc.pid, SIGCONT);
    ts_gateway_dispose(&gw);
    ts_echo_stop(echo);
    echo = NULL;
}

static void start(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    echo = ts_echo_start_hooked(AF_INET, learn_tunnel, NULL);
    cr_assert_not_null(echo);
    ts_config_t c;
    ts_fixture_std_config(&c, AF_INET, ts_echo_addr_str(echo));
    c.limits_json = "{\"media_queue_age_ms\":" STR(AGE_MS) ",\"capsule_ping_ms\":0}";
    c.admin_json = "{\"listen\":\"127.0.0.1:0\",\"tokens\":[{\"token\":\"overload-token-0123\"}]}";
    char config[PATH_MAX], admin[64];
    cr_assert_geq(ts_config_write(&c, config, sizeof config), 0);
    cr_assert_eq(ts_gateway_start(&gw, NULL, config, ts_deadline(ts_ms(10000))), 0,
                 "sluiced did not start");
    cr_assert_eq(ts_gateway_admin_addr(&gw, admin, sizeof admin, ts_deadline(ts_ms(5000))), 0);
    snprintf(metrics_url, sizeof metrics_url, "http://%s/metrics", admin);

    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, NULL, username, sizeof username,
                              cred, sizeof cred),
                 0);
    cr_assert_eq(ts_h2raw_connect(&client, &gw.listen[0], NULL, ts_deadline(ts_ms(10000))), 0,
                 "%s", client.err);
    cr_assert_eq(ts_h2raw_request(&client, 1, TUNNEL_PATH, username, cred, 0), 0, "%s",
                 client.err);
    cr_assert_eq(ts_h2raw_wait_status(&client, 1, ts_deadline(ts_ms(10000))), 200, "%s",
                 client.err);
}

static size_t media(uint8_t *pkt, uint32_t seq)
{
    return ts_pkt_rtp(pkt, PAYLOAD, PAYLOAD, (uint16_t)seq, seq * 160, 7, seq);
}

/* Media in a DATAGRAM capsule, STUN in a SIGNAL capsule (proto/README.md). */
static void send_capsule(const uint8_t *pkt, size_t len)
{
    uint8_t cap[PAYLOAD + CAPSULE_MAX_OVERHEAD];
    ssize_t n = pkt[0] < 4 ? capsule_encode(cap, sizeof cap, CAPSULE_SIGNAL, pkt, len)
                           : capsule_encode_datagram(cap, sizeof cap, pkt, len);
    cr_assert_gt(n, 0);
    cr_assert_eq(ts_h2raw_send_frame(&client, NGHTTP2_DATA, 0, 1, cap, (size_t)n), 0, "%s",
                 client.err);
}

/* What came back on the tunnel so far. */
typedef struct echoes {
    size_t signal;          /* STUN */
    size_t stale_media;     /* media with a SEQ_STALE.. sequence number */
    int primer, marker;
} echoes_t;

static void count_echoes(const ts_h2raw_t *c, echoes_t *e)
{
    memset(e, 0, sizeof *e);
    const ts_h2raw_stream_t *s = ts_h2raw_stream(c, 1);
    for (size_t off = 0; s && off < s->body_len;) {
        capsule_t cap;
        ssize_t used = capsule_decode(s->body + off, s->body_len - off, 65536, &cap, NULL);
        if (used <= 0)
            break;
        off += (size_t)used;
        uint64_t ctx;
        const uint8_t *p;
        size_t len;
        if (cap.type == CAPSULE_SIGNAL) {
            e->signal++;
            continue;
        }
        if (cap.type != CAPSULE_DATAGRAM || capsule_parse_datagram(&cap, &ctx, &p, &len) < 0)
            continue;
        if (len >= TS_RTP_HEADER + 4) {
            uint32_t seq = ts_get32(p + TS_RTP_HEADER);
            e->primer |= seq == SEQ_PRIMER;
            e->marker |= seq == SEQ_MARKER;
            e->stale_media += seq >= SEQ_STALE && seq < SEQ_STALE + STALE_MEDIA;
        }
    }
}

static double drops(const char *reason);

static int has(const ts_h2raw_t *c, void *arg)
{
    const echoes_t *want = arg;
    echoes_t e;
    count_echoes(c, &e);
    return e.signal >= want->signal && e.primer >= want->primer && e.marker >= want->marker;
}

static void wait_for(size_t signal, int primer, int marker, const char *what)
{
    echoes_t want = {.signal = signal, .primer = primer, .marker = marker};
    int rc = ts_h2raw_wait(&client, has, &want, ts_deadline(ts_ms(10000)));
    if (rc == 0)
        return;
    echoes_t e;
    count_echoes(&client, &e);
    cr_assert_fail("%s did not come back (%zu signaling, %zu stale media, primer %d, marker %d; "
                   "dropped uplink_expired %.0f, media_expired %.0f): %s",
                   what, e.signal, e.stale_media, e.primer, e.marker, drops("uplink_expired"),
                   drops("media_expired"), client.err);
}

/* The gateway stopped for three times the age limit: whatever reached its
 * sockets meanwhile waited that long. The wait is the experiment (time
 * passing), not a synchronisation: the client keeps its socket serviced. */
static void stop_gateway_while(void (*arrive)(void))
{
    cr_assert_eq(kill(gw.proc.pid, SIGSTOP), 0);
    arrive();
    int64_t until = ts_now_ms() + 3 * AGE_MS;
    while (ts_now_ms() < until)
        ts_h2raw_poll(&client, until);
    cr_assert_eq(kill(gw.proc.pid, SIGCONT), 0);
}

/* sluiced's sluice_drops_total for reason. */
static double drops(const char *reason)
{
    const char *const one[] = {reason, NULL};
    double total;
    char why[256];
    cr_assert_eq(ts_scrape_total(metrics_url, "sluice_drops_total", "reason", one, &total, 5000,
                                 why, sizeof why),
                 0, "%s", why);
    return total;
}

static void finish(void)
{
    ts_h2raw_close(&client);
    cr_assert_eq(ts_gateway_stop(&gw, ts_deadline(ts_ms(10000))), 0, "sluiced did not exit 0");
}

static void uplink_arrives(void)
{
    uint8_t pkt[PAYLOAD];
    for (uint32_t i = 0; i < STALE_MEDIA; i++)
        send_capsule(pkt, media(pkt, SEQ_STALE + i));
    for (uint32_t i = 0; i < STALE_SIGNAL; i++)
        send_capsule(pkt, ts_pkt_stun(pkt, sizeof pkt, i + 1));
}

static void downlink_arrives(void)
{
    pthread_mutex_lock(&seen.lock);
    int fd = seen.fd;
    ts_addr_t to = seen.tunnel;
    pthread_mutex_unlock(&seen.lock);
    uint8_t pkt[PAYLOAD];
    /* From the echo's own socket: the tunnel's socket is connected to it. */
    for (uint32_t i = 0; i < STALE_MEDIA; i++) {
        size_t n = media(pkt, SEQ_STALE + i);
        cr_assert_eq(sendto(fd, pkt, n, 0, (const struct sockaddr *)&to.sa, to.len), (ssize_t)n);
    }
    for (uint32_t i = 0; i < STALE_SIGNAL; i++) {
        size_t n = ts_pkt_stun(pkt, sizeof pkt, i + 1);
        cr_assert_eq(sendto(fd, pkt, n, 0, (const struct sockaddr *)&to.sa, to.len), (ssize_t)n);
    }
}

/* Both directions: a primer through the tunnel, then sluiced stopped while
 * arrives() sends it STALE_MEDIA media and STALE_SIGNAL signaling packets.
 * Once it goes on, the signaling and media sent afterwards arrive, no stale
 * media does, and drops of reason count exactly the stale packets (of other:
 * none). The signaling is read after the media: once it is back, every
 * stale packet has been dealt with, and the marker cannot share their read. */
static void stale_while_stopped(void (*arrives)(void), const char *reason, const char *other)
{
    start();
    uint8_t pkt[PAYLOAD];
    send_capsule(pkt, media(pkt, SEQ_PRIMER));
    wait_for(0, 1, 0, "the primer");
    pthread_mutex_lock(&seen.lock);
    int have = seen.have;
    pthread_mutex_unlock(&seen.lock);
    cr_assert(have, "the echo saw the primer but not its source");

    stop_gateway_while(arrives);
    wait_for(STALE_SIGNAL, 1, 0, "the signaling sent while sluiced was stopped");
    send_capsule(pkt, media(pkt, SEQ_MARKER));
    wait_for(STALE_SIGNAL, 1, 1, "media sent after sluiced went on");

    echoes_t e;
    count_echoes(&client, &e);
    cr_assert_eq(e.stale_media, 0, "%zu stale media packets were relayed", e.stale_media);
    cr_assert_eq(e.signal, STALE_SIGNAL);
    cr_assert_eq(drops(reason), STALE_MEDIA, "every stale packet counted as %s", reason);
    cr_assert_eq(drops(other), 0, "stale packets counted as %s", other);
    finish();
}

Test(overload, uplink_media_that_waited_in_the_receive_queue_is_dropped_signaling_is_not,
     .fini = teardown, .timeout = 60)
{
    stale_while_stopped(uplink_arrives, "uplink_expired", "media_expired");
}

Test(overload, downlink_media_that_waited_in_the_backend_socket_is_dropped_signaling_is_not,
     .fini = teardown, .timeout = 60)
{
    stale_while_stopped(downlink_arrives, "media_expired", "uplink_expired");
}

/* The client's clock, as another host's would be: ours, far off; ago_ms
 * back. */
static uint32_t client_us(int64_t ago_ms)
{
    return (uint32_t)(ts_now_ns() / 1000) + 0x5bd1e995u - (uint32_t)(ago_ms * 1000);
}

static void send_stamped(const uint8_t *pkt, size_t len, uint32_t sent_us)
{
    uint8_t cap[PAYLOAD + CAPSULE_MAX_OVERHEAD];
    ssize_t n = capsule_encode_stamped(cap, sizeof cap, sent_us, pkt, len);
    cr_assert_gt(n, 0);
    cr_assert_eq(ts_h2raw_send_frame(&client, NGHTTP2_DATA, 0, 1, cap, (size_t)n), 0, "%s",
                 client.err);
}

Test(overload, uplink_media_that_waited_before_it_reached_the_gateway_is_dropped_by_its_stamp,
     .fini = teardown, .timeout = 60)
{
    start();
    uint8_t pkt[PAYLOAD];
    send_stamped(pkt, media(pkt, SEQ_PRIMER), client_us(0)); /* the stream's base */
    wait_for(0, 1, 0, "the primer");
    for (uint32_t i = 0; i < STALE_MEDIA; i++)
        send_stamped(pkt, media(pkt, SEQ_STALE + i), client_us(AGE_MS * 3 / 4));
    for (uint32_t i = 0; i < STALE_SIGNAL; i++)
        send_capsule(pkt, ts_pkt_stun(pkt, sizeof pkt, i + 1));
    wait_for(STALE_SIGNAL, 1, 0, "the signaling sent after the stale media");
    send_stamped(pkt, media(pkt, SEQ_MARKER), client_us(AGE_MS / 10));
    wait_for(STALE_SIGNAL, 1, 1, "media that waited a tenth of the age limit");

    echoes_t e;
    count_echoes(&client, &e);
    cr_assert_eq(e.stale_media, 0, "%zu stale media packets were relayed", e.stale_media);
    cr_assert_eq(drops("uplink_expired"), STALE_MEDIA, "every stale packet counted");
    cr_assert_eq(drops("media_expired"), 0);
    finish();
}
