/*
 * test_sources.c — one source cannot take everyone's slots: connections from
 * one address that have not opened a tunnel are capped
 * (limits.max_pending_per_source), and so is its rate of new connections
 * (limits.handshakes_per_source_s), while a call from another source goes on.
 * The "attacker" binds 127.0.0.2, a loopback address of its own.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_fixture.h"
#include "../support/ts_net.h"
#include "../support/ts_pkt.h"
#include "../support/ts_util.h"

#define MAX_FDS 16

static ts_fixture_t fx;
static int fds[MAX_FDS];
static int nfds;

static void setup(void)
{
    for (int i = 0; i < MAX_FDS; i++)
        fds[i] = -1;
    nfds = 0;
}

static void teardown(void)
{
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    ts_fixture_teardown(&fx);
}

/* A TCP connection to the gateway from 127.0.0.2 that sends nothing. */
static int connect_from_second_source(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000002)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&src, sizeof src), 0, "bind 127.0.0.2");
    cr_assert_eq(connect(fd, (struct sockaddr *)&fx.gw.listen[0].sa, fx.gw.listen[0].len), 0);
    cr_assert_lt(nfds, MAX_FDS);
    fds[nfds++] = fd;
    return fd;
}

/* 1 when the gateway closed fd within the deadline, 0 when it stayed open. */
static int closed_by_gateway(int fd, int64_t deadline)
{
    char buf[64];
    int closed = 0;
    ts_tcp_read_until_close(fd, buf, sizeof buf, deadline, &closed);
    return closed;
}

static void assert_live_call(void)
{
    ts_shim_t *s;
    int ufd = -1;
    const char *why = NULL;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &s, &ufd, &why), 0,
                 "a call from another source failed: %s", why);
    close(ufd);
}

Test(sources, pending_connections_per_source_are_capped, .init = setup, .fini = teardown,
     .timeout = 60)
{
    cr_assert_eq(ts_fixture_start(&fx, AF_INET,
                                  "{\"max_pending_per_source\":3,\"handshakes_per_source_s\":1000,"
                                  "\"handshake_timeout_ms\":60000}"),
                 0);
    int held[3];
    for (int i = 0; i < 3; i++)
        held[i] = connect_from_second_source();
    int extra = connect_from_second_source();
    cr_assert(closed_by_gateway(extra, ts_deadline(ts_ms(5000))),
              "a fourth tunnel-less connection from one source was kept");
    for (int i = 0; i < 3; i++)
        cr_assert_not(closed_by_gateway(held[i], ts_deadline(ts_ms(50))),
                      "a connection within the cap was closed");
    assert_live_call();

    /* A slot frees when one of them goes. */
    close(held[0]);
    fds[0] = -1;
    int64_t deadline = ts_deadline(ts_ms(5000));
    int kept = 0;
    while (!kept && ts_remaining_ms(deadline) > 0) {
        int again = connect_from_second_source();
        kept = !closed_by_gateway(again, ts_deadline(ts_ms(200)));
        if (!kept) { /* the gateway has not seen the close yet: try again */
            close(again);
            fds[--nfds] = -1;
        }
    }
    cr_assert(kept, "the freed slot was never given to a new connection");
}

Test(sources, new_connections_per_source_are_rate_limited, .init = setup, .fini = teardown,
     .timeout = 60)
{
    cr_assert_eq(ts_fixture_start(&fx, AF_INET,
                                  "{\"max_pending_per_source\":1000,\"handshakes_per_source_s\":2,"
                                  "\"handshake_timeout_ms\":60000}"),
                 0);
    int refused = 0;
    for (int i = 0; i < 6; i++)
        refused += closed_by_gateway(connect_from_second_source(), ts_deadline(ts_ms(300)));
    /* A burst of 2, refilled at 2 a second: of 6 quick connections, at
     * least 2 are refused however slow this machine is (the loop above
     * takes under 2 s, which refills at most 4). */
    cr_assert_geq(refused, 2, "only %d of 6 connections over a rate of 2/s were refused", refused);
    assert_live_call();
}
