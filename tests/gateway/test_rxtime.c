/*
 * test_rxtime.c — gateway/rxtime.c: a read BIO over a TCP socket that reads
 * like OpenSSL's socket BIO and tells how long ago the bytes it read reached
 * the kernel.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/compat.h"
#include "../../gateway/rxtime.h"
#include "../support/ts_net.h"
#include "../support/ts_util.h"

static int peer = -1, fd = -1;
static BIO *bio;

/* A connected loopback TCP pair: peer writes, fd (non-blocking) is read. */
static void setup(void)
{
    cr_assert_eq(ts_tcp_pair(&peer, &fd, 0), 0, "%s", strerror(errno));
    bio = rxtime_bio_new(fd);
    cr_assert_not_null(bio);
}

static void teardown(void)
{
    BIO_free(bio);
    if (fd >= 0)
        close(fd);
    if (peer >= 0)
        close(peer);
}

static void wait_readable(void)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 5000), 1, "the bytes did not arrive");
}

Test(rxtime, reads_what_arrived_and_says_how_long_it_waited, .init = setup, .fini = teardown)
{
    cr_assert_eq(rxtime_age_ns(bio, compat_real_ns()), -1, "no read yet: unknown");
    cr_assert_eq(write(peer, "hello", 5), 5);
    wait_readable();
    int64_t arrived_by = compat_real_ns();
    char buf[16];
    cr_assert_eq(BIO_read(bio, buf, sizeof buf), 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    /* Asked 250 ms later, the bytes are at least that old, and they
     * arrived before poll said so. */
    int64_t later = compat_real_ns() + 250 * 1000000ll;
    int64_t age = rxtime_age_ns(bio, later);
    cr_assert_geq(age, later - arrived_by, "age %lld ns", (long long)age);
    cr_assert_lt(age, 60 * 1000000000ll);
}

Test(rxtime, nothing_to_read_is_a_retry, .init = setup, .fini = teardown)
{
    char buf[16];
    cr_assert_eq(BIO_read(bio, buf, sizeof buf), -1);
    cr_assert(BIO_should_retry(bio) && BIO_should_read(bio), "EAGAIN must be a read retry");
    cr_assert_eq(BIO_eof(bio), 0);
}

Test(rxtime, end_of_stream_reads_0_and_is_eof, .init = setup, .fini = teardown)
{
    cr_assert_eq(shutdown(peer, SHUT_WR), 0);
    wait_readable();
    char buf[16];
    cr_assert_eq(BIO_read(bio, buf, sizeof buf), 0);
    cr_assert_not(BIO_should_retry(bio));
    cr_assert_eq(BIO_eof(bio), 1, "OpenSSL tells an unexpected EOF by BIO_eof");
}

Test(rxtime, a_stamp_from_a_clock_step_is_unknown, .init = setup, .fini = teardown)
{
    cr_assert_eq(write(peer, "x", 1), 1);
    wait_readable();
    char buf[4];
    cr_assert_eq(BIO_read(bio, buf, sizeof buf), 1);
    int64_t now = compat_real_ns();
    cr_assert_eq(rxtime_age_ns(bio, now - 5 * 1000000000ll), -1, "the clock stepped back");
    cr_assert_eq(rxtime_age_ns(bio, now + 3600 * 1000000000ll), -1, "the clock stepped ahead");
}

Test(rxtime, the_descriptor_is_the_callers, .init = setup, .fini = teardown)
{
    cr_assert_eq(BIO_get_fd(bio, NULL), fd);
    BIO_free(bio);
    bio = NULL;
    cr_assert_eq(write(peer, "y", 1), 1);
    wait_readable(); /* fd still open: freeing the BIO did not close it */
}
