/*
 * test_pipe.c — client-shim/lib/pipe_tcp.c: the TCP byte pipe under TLS,
 * over one end of a socket pair (the test holds the other end).
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../client-shim/lib/shim_pipe.h"
#include "../support/ts_util.h"

static struct ev_loop *loop;
static shim_pipe_t *pipe_;
static int peer = -1;
static int ready_events, ready_calls;

static void on_ready(shim_pipe_t *p, int events)
{
    ready_events |= events;
    ready_calls++;
    shim_pipe_want(p, 0); /* level-triggered: stop asking, or it would repeat */
}

static void setup(void)
{
    int sv[2];

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    loop = ev_loop_new(EVFLAG_AUTO);
    pipe_ = shim_pipe_tcp_new(loop, sv[0]);
    cr_assert_not_null(pipe_);
    pipe_->on_ready = on_ready;
    peer = sv[1];
    ready_events = ready_calls = 0;
}

static void teardown(void)
{
    shim_pipe_close(&pipe_);
    shim_pipe_close(&pipe_); /* idempotent */
    if (peer >= 0)
        close(peer);
    ev_loop_destroy(loop);
}

static void on_timeout(struct ev_loop *l, ev_timer *w, int revents)
{
    ev_break(l, EVBREAK_ALL);
}

/* Runs the loop until on_ready was called or 2 s pass. */
static void run_until_ready(void)
{
    int64_t dl = ts_deadline(ts_ms(2000));
    while (!ready_calls && ts_now_ms() < dl) {
        ev_timer t;
        ev_timer_init(&t, on_timeout, ts_remaining_ms(dl) / 1000.0, 0.);
        ev_timer_start(loop, &t);
        ev_run(loop, EVRUN_ONCE);
        ev_timer_stop(loop, &t);
    }
}

TestSuite(pipe_tcp, .init = setup, .fini = teardown, .timeout = 20);

Test(pipe_tcp, bytes_both_ways_and_again_when_empty)
{
    uint8_t buf[16];

    cr_expect_eq(shim_pipe_read(pipe_, buf, sizeof(buf)), SHIM_PIPE_AGAIN);
    cr_expect_eq(shim_pipe_write(pipe_, (const uint8_t *)"hello", 5), 5);
    cr_expect_eq(recv(peer, buf, sizeof(buf), 0), 5);
    cr_expect_eq(memcmp(buf, "hello", 5), 0);
    cr_expect_eq(send(peer, "world!", 6, 0), 6);
    cr_expect_eq(shim_pipe_read(pipe_, buf, sizeof(buf)), 6);
    cr_expect_eq(memcmp(buf, "world!", 6), 0);
}

Test(pipe_tcp, want_read_calls_on_ready_when_bytes_arrive)
{
    uint8_t b;

    shim_pipe_want(pipe_, SHIM_PIPE_READ);
    cr_expect_eq(send(peer, "x", 1, 0), 1);
    run_until_ready();
    cr_expect_eq(ready_events, SHIM_PIPE_READ);
    cr_expect_eq(shim_pipe_read(pipe_, &b, 1), 1);
    cr_expect_eq(b, 'x');
}

Test(pipe_tcp, a_full_pipe_says_again_and_wakes_when_writable)
{
    static uint8_t chunk[65536];
    uint8_t sink[65536];
    ssize_t n = 0;
    int i;

    /* Fill the socket buffers: bounded, a socket pair holds far less. */
    for (i = 0; i < 4096; i++) {
        n = shim_pipe_write(pipe_, chunk, sizeof(chunk));
        if (n == SHIM_PIPE_AGAIN)
            break;
        cr_assert_gt(n, 0);
    }
    cr_assert_eq(n, SHIM_PIPE_AGAIN, "the pipe never filled");
    shim_pipe_want(pipe_, SHIM_PIPE_WRITE);
    while (recv(peer, sink, sizeof(sink), 0) > 0)
        ;
    run_until_ready();
    cr_expect_eq(ready_events, SHIM_PIPE_WRITE);
    cr_expect_gt(shim_pipe_write(pipe_, chunk, 100), 0);
}

Test(pipe_tcp, end_of_stream_then_errors_name_the_cause)
{
    uint8_t buf[8];

    close(peer);
    peer = -1;
    cr_expect_eq(shim_pipe_read(pipe_, buf, sizeof(buf)), 0, "orderly end of stream");
    cr_expect_eq(shim_pipe_write(pipe_, (const uint8_t *)"x", 1), SHIM_PIPE_ERROR);
    cr_expect_not_null(strstr(pipe_->err, "write: "), "%s", pipe_->err);
    cr_expect_not_null(strstr(pipe_->err, "pipe"), "EPIPE named: %s", pipe_->err);
}
