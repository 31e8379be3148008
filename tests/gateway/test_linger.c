/*
 * test_linger.c — gateway/linger.c: a connection the gateway ends keeps
 * reading (and discarding) until the client closes or a time limit, so that
 * the bytes it wrote last reach a client that is still sending, instead of
 * being thrown away by the reset a plain close() provokes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../gateway/linger.h"
#include "../support/ts_net.h"
#include "../support/ts_util.h"

static struct ev_loop *loop;
static linger_set_t set;

static void setup(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
}

static void teardown(void)
{
    linger_dispose(&set);
    ev_loop_destroy(loop);
}

/* Writes as much as the socket takes, without blocking. Returns the bytes. */
static size_t fill(int fd)
{
    static uint8_t block[16384];
    size_t total = 0;
    ssize_t n;
    while ((n = send(fd, block, sizeof block, MSG_DONTWAIT | MSG_NOSIGNAL)) > 0)
        total += (size_t)n;
    return total;
}

static int open_fd(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* The gateway has written its last bytes (more than the client's window:
 * part of them still waits in its send queue) while the client's bytes sit
 * unread and more keep coming. Every byte written arrives, then a FIN. */
Test(linger, our_last_bytes_reach_a_client_that_keeps_sending, .init = setup, .fini = teardown)
{
    int client, server;
    cr_assert_eq(ts_tcp_pair(&client, &server, 4096), 0, "%s", strerror(errno));
    linger_init(&set, loop, 8, 5.0);
    size_t unread = fill(client); /* the gateway never reads these */
    size_t written = fill(server);
    cr_assert_gt(unread, 0);
    cr_assert_gt(written, 0);
    linger_close(&set, server);
    cr_assert_eq(set.count, 1, "the socket did not linger");

    size_t got = 0;
    int end = 1; /* 0: EOF, -1: an error */
    uint8_t buf[65536];
    for (int64_t deadline = ts_deadline(ts_ms(5000)); end > 0 && ts_remaining_ms(deadline) > 0;) {
        fill(client); /* the client goes on sending */
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(client, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            end = 0;
        else if (errno != EAGAIN)
            end = -1;
    }
    cr_assert_eq(end, 0, "the client saw %s, not the end of our bytes",
                 end < 0 ? strerror(errno) : "nothing");
    cr_assert_eq(got, written, "%zu of the %zu bytes written arrived", got, written);

    /* The client closes too: the gateway's socket goes. */
    close(client);
    for (int64_t deadline = ts_deadline(ts_ms(5000)); set.count && ts_remaining_ms(deadline) > 0;)
        ev_run(loop, EVRUN_ONCE);
    cr_assert_eq(set.count, 0, "the socket still lingers after the client closed");
    cr_assert(!open_fd(server), "the descriptor is still open");
}

Test(linger, a_client_that_has_already_closed_is_not_waited_for, .init = setup,
     .fini = teardown)
{
    int client, server;
    cr_assert_eq(ts_tcp_pair(&client, &server, 0), 0, "%s", strerror(errno));
    linger_init(&set, loop, 8, 5.0);
    cr_assert_eq(send(client, "bye", 3, 0), 3);
    close(client);
    /* The FIN follows the bytes: wait until the server side has it. */
    struct pollfd p = {.fd = server, .events = POLLRDHUP};
    cr_assert_eq(poll(&p, 1, 5000), 1, "the client's FIN did not arrive");
    linger_close(&set, server);
    cr_assert_eq(set.count, 0, "lingered for a client that had gone");
    cr_assert(!open_fd(server));
}

/* A client that neither sends nor closes holds the socket no longer than
 * the set's limit. */
Test(linger, a_silent_client_is_let_go_at_the_time_limit, .init = setup, .fini = teardown)
{
    int client, server;
    cr_assert_eq(ts_tcp_pair(&client, &server, 0), 0, "%s", strerror(errno));
    linger_init(&set, loop, 8, 0.05);
    linger_close(&set, server);
    cr_assert_eq(set.count, 1);
    for (int64_t deadline = ts_deadline(ts_ms(5000)); set.count && ts_remaining_ms(deadline) > 0;)
        ev_run(loop, EVRUN_ONCE);
    cr_assert_eq(set.count, 0, "still lingering past the time limit");
    cr_assert(!open_fd(server));
    char b[8];
    cr_assert_eq(recv(client, b, sizeof b, 0), 0, "the client did not see the end");
    close(client);
}

/* The set is bounded: beyond max, sockets close at once. */
Test(linger, beyond_its_bound_a_socket_closes_at_once, .init = setup, .fini = teardown)
{
    int c1, s1, c2, s2;
    cr_assert_eq(ts_tcp_pair(&c1, &s1, 0), 0, "%s", strerror(errno));
    cr_assert_eq(ts_tcp_pair(&c2, &s2, 0), 0, "%s", strerror(errno));
    linger_init(&set, loop, 1, 5.0);
    linger_close(&set, s1);
    linger_close(&set, s2);
    cr_assert_eq(set.count, 1);
    cr_assert(open_fd(s1), "the first socket should linger");
    cr_assert(!open_fd(s2), "the second socket should have closed at once");
    linger_dispose(&set);
    cr_assert_eq(set.count, 0);
    cr_assert(!open_fd(s1), "dispose left a socket open");
    close(c1);
    close(c2);
}
