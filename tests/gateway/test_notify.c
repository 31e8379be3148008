/*
 * test_notify.c — gateway/notify.c: the sd_notify messages as bytes
 * (notify_format, every truncation point), status text that cannot forge an
 * assignment, and notify_send with and without $NOTIFY_SOCKET (a unix
 * datagram socket the test binds in its own mkdtemp directory).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../gateway/notify.h"

static int fmt(char *out, size_t cap, unsigned what, uint64_t usec, const char *status)
{
    memset(out, 'Z', cap);
    return notify_format(out, cap, what, usec, status);
}

Test(notify_format, ready_alone)
{
    char out[NOTIFY_MSG_MAX];
    cr_assert_eq(fmt(out, sizeof out, NOTIFY_READY, 0, NULL), 8);
    cr_assert_str_eq(out, "READY=1\n");
}

Test(notify_format, every_field_in_order)
{
    char out[NOTIFY_MSG_MAX];
    const char *want = "READY=1\nRELOADING=1\nMONOTONIC_USEC=1234567\nSTOPPING=1\n"
                       "STATUS=serving region eu: 2 listeners\n";
    int n = fmt(out, sizeof out, NOTIFY_READY | NOTIFY_RELOADING | NOTIFY_STOPPING, 1234567,
                "serving region eu: 2 listeners");
    cr_assert_eq(n, (int)strlen(want));
    cr_assert_str_eq(out, want);
}

Test(notify_format, status_alone_and_empty)
{
    char out[NOTIFY_MSG_MAX];
    cr_assert_eq(fmt(out, sizeof out, NOTIFY_STATUS, 0, "x"), 9);
    cr_assert_str_eq(out, "STATUS=x\n");
    cr_assert_eq(fmt(out, sizeof out, NOTIFY_STATUS, 0, ""), 8);
    cr_assert_str_eq(out, "STATUS=\n");
    cr_assert_eq(fmt(out, sizeof out, NOTIFY_STATUS, 0, NULL), 0);
    cr_assert_str_eq(out, "");
}

/* A config error quotes the file: a newline in it must not end STATUS= and
 * start READY=1 or anything else. */
Test(notify_format, status_cannot_forge_a_line)
{
    char out[NOTIFY_MSG_MAX];
    int n = fmt(out, sizeof out, NOTIFY_STATUS, 0, "bad\nREADY=1\r\x01\x7f\tend");
    cr_assert_gt(n, 0);
    cr_assert_str_eq(out, "STATUS=bad?READY=1????end\n");
}

Test(notify_format, long_status_is_cut)
{
    char status[NOTIFY_STATUS_MAX * 2], out[NOTIFY_MSG_MAX];
    memset(status, 'a', sizeof status - 1);
    status[sizeof status - 1] = '\0';
    int n = fmt(out, sizeof out, NOTIFY_READY | NOTIFY_RELOADING | NOTIFY_STOPPING, UINT64_MAX,
                status);
    cr_assert_gt(n, 0);
    cr_assert_lt((size_t)n, sizeof out);
    const char *s = strstr(out, "STATUS=");
    cr_assert_not_null(s);
    cr_assert_eq(strlen(s), strlen("STATUS=") + NOTIFY_STATUS_MAX + 1);
    cr_assert_eq(out[n - 1], '\n');
}

/* Every capacity short of the message fails with -1 and never writes past
 * cap; the exact size (the NUL included) succeeds. */
Test(notify_format, every_truncation_point)
{
    const char *want = "READY=1\nRELOADING=1\nMONOTONIC_USEC=42\nSTOPPING=1\nSTATUS=ok\n";
    size_t len = strlen(want);
    char out[128];
    for (size_t cap = 0; cap <= len; cap++) {
        memset(out, 'Z', sizeof out);
        cr_assert_eq(notify_format(out, cap, NOTIFY_READY | NOTIFY_RELOADING | NOTIFY_STOPPING,
                                   42, "ok"),
                     -1, "cap %zu", cap);
        for (size_t i = cap; i < sizeof out; i++)
            cr_assert_eq(out[i], 'Z', "cap %zu: byte %zu written", cap, i);
    }
    cr_assert_eq(notify_format(out, len + 1, NOTIFY_READY | NOTIFY_RELOADING | NOTIFY_STOPPING,
                               42, "ok"),
                 (int)len);
    cr_assert_str_eq(out, want);
}

Test(notify_send, nothing_without_notify_socket)
{
    cr_assert_eq(unsetenv("NOTIFY_SOCKET"), 0);
    cr_assert_eq(notify_send(NOTIFY_READY, "serving %d", 1), 0);
}

static char dir[64];
static int fd = -1;

static void cleanup(void)
{
    char path[128];
    if (fd >= 0)
        close(fd);
    snprintf(path, sizeof path, "%s/notify", dir);
    unlink(path);
    if (dir[0])
        rmdir(dir);
}

/* A unix datagram socket in a mkdtemp directory, named by NOTIFY_SOCKET. */
static void bind_notify(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sluice-notify-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/notify", dir);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0, "%s", strerror(errno));
    cr_assert_eq(setenv("NOTIFY_SOCKET", sun.sun_path, 1), 0);
}

static void recv_msg(char *buf, size_t cap)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "no datagram within 5 s");
    ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
}

Test(notify_send, delivers_to_notify_socket, .fini = cleanup)
{
    bind_notify();
    char buf[NOTIFY_MSG_MAX + 16];
    cr_assert_eq(notify_send(NOTIFY_READY, "serving region %s: %d listeners", "eu", 2), 1);
    recv_msg(buf, sizeof buf);
    cr_assert_str_eq(buf, "READY=1\nSTATUS=serving region eu: 2 listeners\n");

    cr_assert_eq(notify_send(NOTIFY_RELOADING, NULL), 1);
    recv_msg(buf, sizeof buf);
    unsigned long long usec = 0;
    cr_assert_eq(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu\n", &usec), 1, "%s", buf);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now = (unsigned long long)ts.tv_sec * 1000000u + ts.tv_nsec / 1000u;
    cr_assert(usec > 0 && usec <= now && now - usec < 5000000u,
              "MONOTONIC_USEC=%llu is not CLOCK_MONOTONIC now (%llu)", usec, now);
    cr_assert_null(strstr(buf, "STATUS="), "%s", buf);
}

Test(notify_send, a_socket_that_is_gone_fails_quietly, .fini = cleanup)
{
    bind_notify();
    close(fd);
    fd = -1;
    char path[128];
    snprintf(path, sizeof path, "%s/notify", dir);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(notify_send(NOTIFY_STOPPING, "draining"), -1);
    cr_assert_eq(notify_send(NOTIFY_STOPPING, "draining"), -1); /* logged once, still -1 */
}
