/*
 * test_cutter.c — the test relay that stands in for a connection-killing
 * proxy (tests/support/ts_cutter.h): bytes pass both ways unchanged, a half
 * close passes, ts_cutter_cut_all() resets both sides, and a client can
 * reconnect through it right after a cut.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_cutter.h"
#include "../support/ts_net.h"
#include "../support/ts_util.h"

#define WAIT_MS 5000

static ts_cutter_t *cut;
static int lfd = -1;
static int fds[8];
static size_t nfds;

static void setup(void)
{
    cut = NULL;
    lfd = -1;
    nfds = 0;
}

static void teardown(void)
{
    ts_cutter_stop(cut);
    for (size_t i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (lfd >= 0)
        close(lfd);
}

static int keep(int fd)
{
    cr_assert_lt(nfds, sizeof fds / sizeof fds[0]);
    fds[nfds++] = fd;
    return fd;
}

/* A TCP listener on 127.0.0.1:0 (the relay's target); its address to *a. */
static int listen_tcp(ts_addr_t *a)
{
    ts_addr_loopback(a, AF_INET, 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a->sa, a->len), 0);
    cr_assert_eq(listen(fd, 8), 0);
    a->len = sizeof a->sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a->sa, &a->len), 0);
    return fd;
}

static int accept_within(int fd, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ts_remaining_ms(deadline)) != 1)
        return -1;
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}

/* Client through the relay, and the target's end of that connection. */
static void open_pair(int *client, int *server)
{
    *client = keep(ts_tcp_connect(ts_cutter_addr(cut), ts_deadline(ts_ms(WAIT_MS))));
    cr_assert_geq(*client, 0, "cannot connect to the cutter at %s", ts_cutter_addr_str(cut));
    *server = keep(accept_within(lfd, ts_deadline(ts_ms(WAIT_MS))));
    cr_assert_geq(*server, 0, "the cutter did not connect to the target");
}

static uint8_t pattern(size_t i, uint8_t seed)
{
    return (uint8_t)(i * 131u + seed + (i >> 9));
}

/* Sends n patterned bytes on from and reads them on to, interleaved (so that
 * neither side blocks on a full buffer). Returns the bytes that arrived equal. */
static size_t transfer(int from, int to, size_t n, uint8_t seed, int64_t deadline)
{
    size_t sent = 0, got = 0;
    int mismatch = 0;
    fcntl(from, F_SETFL, fcntl(from, F_GETFL) | O_NONBLOCK);
    while (got < n && !mismatch && ts_remaining_ms(deadline) > 0) {
        struct pollfd p[2] = {{.fd = from, .events = sent < n ? POLLOUT : 0},
                              {.fd = to, .events = POLLIN}};
        if (poll(p, 2, ts_remaining_ms(deadline)) <= 0)
            break;
        if (p[0].revents & POLLOUT) {
            uint8_t buf[16384];
            size_t k = n - sent < sizeof buf ? n - sent : sizeof buf;
            for (size_t i = 0; i < k; i++)
                buf[i] = pattern(sent + i, seed);
            ssize_t w = send(from, buf, k, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
        }
        if (p[1].revents) {
            uint8_t buf[16384];
            ssize_t r = recv(to, buf, sizeof buf, MSG_DONTWAIT);
            if (r <= 0)
                break;
            for (ssize_t i = 0; i < r; i++)
                if (buf[i] != pattern(got + (size_t)i, seed))
                    mismatch = 1;
            got += (size_t)r;
        }
    }
    return mismatch ? 0 : got;
}

/* Waits for fd to report a reset: recv fails with ECONNRESET. Returns the
 * errno recv ended with (0 for a clean EOF, ETIMEDOUT for nothing). */
static int wait_reset(int fd, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ts_remaining_ms(deadline)) <= 0)
            return ETIMEDOUT;
        char b[256];
        ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (r == 0)
            return 0;
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return errno;
    }
}

/* Waits until the cutter has want live connections. Returns the last count. */
static size_t wait_live(size_t want, int64_t deadline)
{
    size_t n;
    while ((n = ts_cutter_live(cut)) != want && ts_remaining_ms(deadline) > 0)
        poll(NULL, 0, 5); /* a counter of another thread: re-read in slices */
    return n;
}

static void start(void)
{
    ts_addr_t target;
    lfd = listen_tcp(&target);
    cut = ts_cutter_start(&target);
    cr_assert_not_null(cut, "ts_cutter_start failed");
}

Test(cutter, bytes_pass_both_ways_unchanged, .init = setup, .fini = teardown)
{
    enum { N = 1 << 20 }; /* many times the relay's 64 KiB buffer */
    start();
    int client, server;
    open_pair(&client, &server);
    size_t up = transfer(client, server, N, 1, ts_deadline(ts_ms(WAIT_MS)));
    cr_expect_eq(up, N, "client -> target: %zu of %d bytes arrived intact", up, N);
    size_t down = transfer(server, client, N, 2, ts_deadline(ts_ms(WAIT_MS)));
    cr_expect_eq(down, N, "target -> client: %zu of %d bytes arrived intact", down, N);
    cr_expect_eq(ts_cutter_bytes_up(cut), N);
    cr_expect_eq(ts_cutter_bytes_down(cut), N);
    cr_expect_eq(ts_cutter_accepted(cut), 1);
    cr_expect_eq(ts_cutter_live(cut), 1);
}

Test(cutter, half_close_passes_and_the_connection_ends_cleanly, .init = setup, .fini = teardown)
{
    start();
    int client, server;
    open_pair(&client, &server);
    cr_assert_eq(ts_tcp_send_all(client, "last words", 10), 0);
    cr_assert_eq(shutdown(client, SHUT_WR), 0);
    char buf[64];
    int closed = 0;
    size_t n = ts_tcp_read_until_close(server, buf, sizeof buf, ts_deadline(ts_ms(WAIT_MS)),
                                       &closed);
    cr_expect_eq(n, 10);
    cr_expect(closed, "the target did not see the client's FIN");
    /* The other direction still works after the half close. */
    cr_assert_eq(ts_tcp_send_all(server, "reply", 5), 0);
    close(server);
    fds[nfds - 1] = -1;
    n = ts_tcp_read_until_close(client, buf, sizeof buf, ts_deadline(ts_ms(WAIT_MS)), &closed);
    cr_expect_eq(n, 5);
    cr_expect_eq(memcmp(buf, "reply", 5), 0);
    cr_expect(closed, "the client did not see the target's FIN");
    cr_expect_eq(wait_live(0, ts_deadline(ts_ms(WAIT_MS))), 0,
                 "the relay kept a connection both sides closed");
}

Test(cutter, cut_resets_both_sides_and_a_client_reconnects, .init = setup, .fini = teardown)
{
    start();
    int client, server;
    open_pair(&client, &server);
    cr_assert_eq(transfer(client, server, 1000, 3, ts_deadline(ts_ms(WAIT_MS))), 1000);

    cr_expect_eq(ts_cutter_cut_all(cut), 1, "one live connection, one cut");
    cr_expect_eq(ts_cutter_live(cut), 0);
    int e = wait_reset(client, ts_deadline(ts_ms(WAIT_MS)));
    cr_expect_eq(e, ECONNRESET, "the client saw %s, expected a reset", strerror(e));
    e = wait_reset(server, ts_deadline(ts_ms(WAIT_MS)));
    cr_expect_eq(e, ECONNRESET, "the target saw %s, expected a reset", strerror(e));

    /* The listener survived the cut. */
    int client2, server2;
    open_pair(&client2, &server2);
    cr_expect_eq(transfer(client2, server2, 70000, 4, ts_deadline(ts_ms(WAIT_MS))), 70000);
    cr_expect_eq(transfer(server2, client2, 70000, 5, ts_deadline(ts_ms(WAIT_MS))), 70000);
    cr_expect_eq(ts_cutter_accepted(cut), 2);
    cr_expect_eq(ts_cutter_live(cut), 1);
}

Test(cutter, cut_all_cuts_every_connection, .init = setup, .fini = teardown)
{
    start();
    int c[3], s[3];
    for (int i = 0; i < 3; i++)
        open_pair(&c[i], &s[i]);
    cr_assert_eq(wait_live(3, ts_deadline(ts_ms(WAIT_MS))), 3);
    cr_expect_eq(ts_cutter_cut_all(cut), 3);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(wait_reset(c[i], ts_deadline(ts_ms(WAIT_MS))), ECONNRESET, "client %d", i);
    cr_expect_eq(ts_cutter_cut_all(cut), 0, "nothing left to cut");
}

Test(cutter, a_dead_target_resets_the_client, .init = setup, .fini = teardown)
{
    ts_addr_t target;
    int fd = listen_tcp(&target);
    close(fd); /* nothing listens there now */
    cut = ts_cutter_start(&target);
    cr_assert_not_null(cut);
    int client = ts_tcp_connect(ts_cutter_addr(cut), ts_deadline(ts_ms(WAIT_MS)));
    /* The relay may accept and reset before the client's poll sees its
     * connect complete: then the reset is the connect's error. */
    int e = client < 0 ? errno : wait_reset(keep(client), ts_deadline(ts_ms(WAIT_MS)));
    cr_expect_eq(e, ECONNRESET, "the client saw %s, expected a reset", strerror(e));
    cr_expect_eq(ts_cutter_accepted(cut), 1);
    cr_expect_eq(wait_live(0, ts_deadline(ts_ms(WAIT_MS))), 0);
}
