/*
 * test_deploy.c — deployment (docs/operations.md): the gateway's sd_notify
 * messages as systemd would receive them, the systemd unit as
 * `systemd-analyze` judges it, and `make install`.
 *
 * sd_notify: the test binds a unix datagram socket in its own mktemp -d
 * directory and starts sluiced with NOTIFY_SOCKET naming it, as systemd does
 * for a Type=notify unit. READY=1 must come after the "sluiced ready" line
 * and with the listener accepting: the test fills the socket's queue first,
 * so the gateway blocks in its first sd_notify() and the test looks at it
 * there (no race with what the gateway does next); a SIGHUP brings RELOADING=1 (with MONOTONIC_USEC=) then READY=1,
 * a refused reload too, with a STATUS= that says so; SIGTERM brings
 * STOPPING=1 and a clean exit.
 *
 * The unit and install tests run third-party tools (systemd-analyze, make,
 * man) from the source tree: the current directory, as tests/run.sh and
 * `make test` leave it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_log.h"
#include "../support/ts_net.h"
#include "../support/ts_proc.h"
#include "../support/ts_util.h"

static ts_proc_t gw;
static int notify_fd = -1;

static void teardown(void)
{
    ts_proc_dispose(&gw);
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}

/* Binds the notify socket in ts_tmpdir() (a mktemp -d directory) and points
 * NOTIFY_SOCKET at it for the gateway this process spawns. */
static void notify_listen(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char path[PATH_MAX];
    cr_assert_eq(ts_tmppath("notify.sock", path, sizeof path), 0);
    cr_assert_lt(strlen(path), sizeof sun.sun_path, "tmpdir path too long for a socket");
    memcpy(sun.sun_path, path, strlen(path) + 1);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(notify_fd, 0);
    cr_assert_eq(bind(notify_fd, (struct sockaddr *)&sun, sizeof sun), 0, "bind %s: %s", path,
                 strerror(errno));
    cr_assert_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
}

#define FILLER "X_SLUICE_TEST_FILLER=1"

/* Fills the notify socket's receive queue (net.unix.max_dgram_qlen
 * datagrams, then EAGAIN): the gateway's first sd_notify() then blocks inside
 * sendmsg until the test reads, so what the test observes before reading is
 * what the gateway had done before it sent READY=1. */
static void notify_fill(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    int sent = 0;
    for (; sent < 100000; sent++) {
        if (sendto(fd, FILLER, strlen(FILLER), MSG_DONTWAIT, (struct sockaddr *)&sun,
                   sizeof sun) < 0)
            break;
    }
    cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "filling the notify queue: %s",
              strerror(errno));
    cr_assert_gt(sent, 0);
    close(fd);
}

/* The next notify datagram that is not a filler, NUL-terminated, into buf;
 * fails the test when none arrives before 10 s. */
static void notify_next(char *buf, size_t cap)
{
    int64_t deadline = ts_deadline(ts_ms(10000));
    for (;;) {
        struct pollfd pfd = {.fd = notify_fd, .events = POLLIN};
        int left = ts_remaining_ms(deadline);
        cr_assert_gt(left, 0, "no sd_notify message within 10 s");
        int n = poll(&pfd, 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_geq(n, 0);
        if (n == 0)
            continue;
        ssize_t len = recv(notify_fd, buf, cap - 1, 0);
        cr_assert_gt(len, 0, "recv: %s", strerror(errno));
        buf[len] = '\0';
        if (strcmp(buf, FILLER) != 0)
            return;
    }
}

/* 1 when msg holds the line "line" (sd_notify: newline-separated). */
static int has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

/* 1 when a line of msg starts with prefix. */
static int has_prefix(const char *msg, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, n) == 0)
            return 1;
    return 0;
}

static void write_config(char *path, size_t cap)
{
    ts_config_t cfg;
    ts_fixture_std_config(&cfg, AF_INET, "builtin:echo");
    cr_assert_eq(ts_config_write(&cfg, path, cap), 0);
}

Test(deploy, sd_notify_ready_reload_stop, .fini = teardown, .timeout = 60)
{
    char build_bin[PATH_MAX], config[PATH_MAX], msg[1024], line[TS_PROC_LINE_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluiced", build_bin, sizeof build_bin), 0,
                 "SLUICE_BUILD is not set (tests/run.sh sets it)");
    write_config(config, sizeof config);
    notify_listen();
    notify_fill();
    char *argv[] = {build_bin, "--config", config, NULL};
    cr_assert_eq(ts_proc_spawn(&gw, "sluiced", argv, 0), 0);

    /* The gateway is held in its first sd_notify() (the queue is full): the
     * ready line and a listener that accepts must come before it. */
    cr_assert_eq(ts_proc_wait_line(&gw, "sluiced ready ", ts_deadline(ts_ms(10000)), line,
                                   sizeof line),
                 0, "no ready line before the first sd_notify message");
    const char *l = strstr(line, "listen=");
    cr_assert_not_null(l, "%s", line);
    char addr_s[64];
    size_t alen = strcspn(l + 7, " ");
    cr_assert_lt(alen, sizeof addr_s);
    memcpy(addr_s, l + 7, alen);
    addr_s[alen] = '\0';
    ts_addr_t addr;
    cr_assert_eq(ts_addr_parse(addr_s, &addr), 0, "%s", line);
    int fd = ts_tcp_connect(&addr, ts_deadline(ts_ms(5000)));
    cr_assert_geq(fd, 0, "the listener does not accept before READY=1");
    close(fd);
    /* READY=1 is the first message. */
    notify_next(msg, sizeof msg);
    cr_assert(has_line(msg, "READY=1"), "first message is not READY=1: %s", msg);
    cr_assert(has_prefix(msg, "STATUS=serving region local: 1 listeners, 2 tenants"),
              "READY=1 without the serving status: %s", msg);

    /* An applied reload: RELOADING=1 with the monotonic time, then READY=1. */
    cr_assert_eq(ts_proc_signal(&gw, SIGHUP), 0);
    notify_next(msg, sizeof msg);
    cr_assert(has_line(msg, "RELOADING=1"), "SIGHUP did not send RELOADING=1 first: %s", msg);
    cr_assert(has_prefix(msg, "MONOTONIC_USEC="), "RELOADING=1 without MONOTONIC_USEC=: %s",
              msg);
    cr_assert(!has_line(msg, "READY=1"), "%s", msg);
    notify_next(msg, sizeof msg);
    cr_assert(has_line(msg, "READY=1"), "no READY=1 after the reload: %s", msg);
    cr_assert(has_prefix(msg, "STATUS=serving region local"), "%s", msg);
    cr_assert_null(strstr(msg, "refused"), "an applied reload reported as refused: %s", msg);
    cr_assert_eq(ts_log_count(gw.err_path, "event=config.reloaded"), 1);

    /* A refused reload (the file does not parse): READY=1 all the same, the
     * status says the old config is kept. */
    cr_assert_eq(ts_write_file(config, "{", 1), 0);
    cr_assert_eq(ts_proc_signal(&gw, SIGHUP), 0);
    notify_next(msg, sizeof msg);
    cr_assert(has_line(msg, "RELOADING=1"), "%s", msg);
    notify_next(msg, sizeof msg);
    cr_assert(has_line(msg, "READY=1"), "no READY=1 after a refused reload: %s", msg);
    cr_assert_not_null(strstr(msg, "last reload refused"), "%s", msg);

    /* SIGTERM: STOPPING=1 as the drain starts, then exit 0. */
    cr_assert_eq(ts_proc_signal(&gw, SIGTERM), 0);
    notify_next(msg, sizeof msg);
    cr_assert(has_line(msg, "STOPPING=1"), "SIGTERM did not send STOPPING=1: %s", msg);
    cr_assert(has_prefix(msg, "STATUS=draining "), "%s", msg);
    cr_assert_eq(ts_proc_wait_exit(&gw, ts_deadline(ts_ms(15000))), 0);
}

/* a then b into out; fails the test when it does not fit. */
static void path_cat(char *out, size_t cap, const char *a, const char *b)
{
    size_t pos = 0;
    cr_assert_eq(ts_appendf(out, cap, &pos, "%s%s", a, b), 0, "path too long: %s%s", a, b);
}

/* The source tree: the current directory, which holds the unit. */
static const char *source_dir(char *out, size_t cap)
{
    cr_assert_not_null(getcwd(out, cap));
    char unit[PATH_MAX];
    path_cat(unit, sizeof unit, out, "/conf/sluiced.service");
    cr_assert_eq(access(unit, R_OK), 0,
                 "run from the source tree (tests/run.sh does): no %s", unit);
    return out;
}

/* Runs argv to completion (60 s at most); fails the test when it cannot
 * start. */
static void run(char *const argv[], ts_run_t *r)
{
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(60000)), r), 0, "cannot run %s", argv[0]);
    cr_assert_eq(r->timed_out, 0, "%s timed out", argv[0]);
}

/* `make install DESTDIR=dest PREFIX=prefix` with this build's binaries (made
 * already: -o all builds nothing, so an ASan build stays what it is). The
 * outer make's jobserver settings are not passed on. */
static void make_install(const char *src, const char *dest, const char *prefix)
{
    char destdir[PATH_MAX + 16], pfx[PATH_MAX + 16], build[PATH_MAX + 16];
    snprintf(destdir, sizeof destdir, "DESTDIR=%s", dest);
    snprintf(pfx, sizeof pfx, "PREFIX=%s", prefix);
    snprintf(build, sizeof build, "BUILD=%s", ts_build_dir());
    char *argv[] = {"env", "-u", "MAKEFLAGS", "-u", "MFLAGS", "-u", "MAKELEVEL", "make",
                    "-s", "--no-print-directory", "-C", (char *)src, "-o", "all", "install",
                    destdir, pfx, build, NULL};
    ts_run_t r;
    run(argv, &r);
    cr_assert_eq(r.code, 0, "make install failed (%d): %s", r.code, r.err);
    ts_run_free(&r);
}

static void assert_mode(const char *root, const char *rel, mode_t mode)
{
    char path[PATH_MAX];
    struct stat st;
    path_cat(path, sizeof path, root, rel);
    cr_assert_eq(stat(path, &st), 0, "not installed: %s", rel);
    cr_assert(S_ISREG(st.st_mode), "%s", rel);
    cr_assert_eq(st.st_mode & 07777, mode, "%s: mode %o, expected %o", rel,
                 (unsigned)(st.st_mode & 07777), (unsigned)mode);
}

Test(deploy, make_install, .fini = teardown, .timeout = 120)
{
    char src[PATH_MAX], dest[PATH_MAX];
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    source_dir(src, sizeof src);
    cr_assert_eq(ts_tmppath("root", dest, sizeof dest), 0);
    make_install(src, dest, "/opt/sluice");

    assert_mode(dest, "/opt/sluice/bin/sluiced", 0755);
    assert_mode(dest, "/opt/sluice/bin/sluice-shim", 0755);
    assert_mode(dest, "/opt/sluice/bin/sluicectl", 0755);
    assert_mode(dest, "/opt/sluice/share/man/man8/sluiced.8", 0644);
    assert_mode(dest, "/opt/sluice/share/man/man1/sluice-shim.1", 0644);
    assert_mode(dest, "/opt/sluice/share/man/man1/sluicectl.1", 0644);
    assert_mode(dest, "/opt/sluice/lib/systemd/system/sluiced.service", 0644);
    assert_mode(dest, "/opt/sluice/share/doc/sluice/sluiced.json.example", 0644);
    assert_mode(dest, "/opt/sluice/share/doc/sluice/sluice-alerts.yml", 0644);
    assert_mode(dest, "/opt/sluice/share/doc/sluice/sluice-dashboard.json", 0644);
    assert_mode(dest, "/opt/sluice/share/doc/sluice/sni-443.cfg", 0644);

    /* The installed unit runs the installed binary. */
    char unit[PATH_MAX];
    path_cat(unit, sizeof unit, dest, "/opt/sluice/lib/systemd/system/sluiced.service");
    char *text = ts_read_file(unit, 1 << 16, NULL);
    cr_assert_not_null(text);
    cr_assert_not_null(strstr(text, "\nExecStart=/opt/sluice/bin/sluiced --config "), "%s", text);
    cr_assert_null(strstr(text, "/usr/local/bin"), "the unit still names /usr/local/bin");
    free(text);

    /* The installed programs run. */
    char bin[PATH_MAX];
    path_cat(bin, sizeof bin, dest, "/opt/sluice/bin/sluiced");
    char *ver[] = {bin, "--version", NULL};
    ts_run_t r;
    run(ver, &r);
    cr_assert_eq(r.code, 0);
    cr_assert(strncmp(r.out, "sluiced ", 8) == 0, "%s", r.out);
    ts_run_free(&r);

    /* Each page renders with man, and neither man nor groff warns. */
    static const char *const pages[] = {"man8/sluiced.8", "man1/sluice-shim.1",
                                        "man1/sluicectl.1"};
    static const char *const names[] = {"sluiced", "sluice-shim", "sluicectl"};
    for (size_t i = 0; i < 3; i++) {
        char page[PATH_MAX];
        char man_dir[PATH_MAX];
        path_cat(man_dir, sizeof man_dir, dest, "/opt/sluice/share/man/");
        path_cat(page, sizeof page, man_dir, pages[i]);
        char *man[] = {"env", "MANWIDTH=80", "man", "--warnings", "-l", page, NULL};
        run(man, &r);
        cr_assert_eq(r.code, 0, "man -l %s: %s", pages[i], r.err);
        cr_assert_eq(r.err_len, 0, "man warns on %s: %s", pages[i], r.err);
        cr_assert_not_null(strstr(r.out, "NAME"), "%s", pages[i]);
        cr_assert_not_null(strstr(r.out, names[i]), "%s", pages[i]);
        ts_run_free(&r);
        char *groff[] = {"groff", "-ww", "-z", "-man", page, NULL};
        run(groff, &r);
        cr_assert_eq(r.code, 0, "groff %s: %s", pages[i], r.err);
        cr_assert_eq(r.err_len, 0, "groff warns on %s: %s", pages[i], r.err);
        ts_run_free(&r);
    }
}

/* conf/sluiced.service with ExecStart= on the built binary (verify wants it
 * to exist), checked by systemd-analyze: verify finds no problem (its
 * Documentation= man page found in an install's MANPATH), and the security
 * exposure stays at or below the 1.5 docs/operations.md states. */
Test(deploy, systemd_unit, .fini = teardown, .timeout = 120)
{
    char src[PATH_MAX], dest[PATH_MAX], unit[PATH_MAX], bin[PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "sluiced", bin, sizeof bin), 0,
                 "SLUICE_BUILD is not set (tests/run.sh sets it)");
    source_dir(src, sizeof src);
    cr_assert_eq(ts_tmppath("root", dest, sizeof dest), 0);
    make_install(src, dest, "/usr/local");

    /* A copy named sluiced.service (verify names the unit after its file). */
    char dir[PATH_MAX];
    cr_assert_eq(ts_tmppath("unit", dir, sizeof dir), 0);
    cr_assert_eq(mkdir(dir, 0700), 0);
    path_cat(unit, sizeof unit, dir, "/sluiced.service");
    char orig[PATH_MAX];
    path_cat(orig, sizeof orig, src, "/conf/sluiced.service");
    size_t len;
    char *text = ts_read_file(orig, 1 << 16, &len);
    cr_assert_not_null(text);
    static char out[1 << 17];
    size_t pos = 0;
    const char *p = text;
    const char *from = "/usr/local/bin/sluiced";
    int replaced = 0;
    for (const char *hit; (hit = strstr(p, from)); p = hit + strlen(from), replaced++) {
        cr_assert_eq(ts_appendf(out, sizeof out, &pos, "%.*s%s", (int)(hit - p), p, bin), 0);
    }
    cr_assert_eq(ts_appendf(out, sizeof out, &pos, "%s", p), 0);
    free(text);
    cr_assert_geq(replaced, 2, "ExecStartPre= and ExecStart= should name /usr/local/bin/sluiced");
    cr_assert_eq(ts_write_file(unit, out, pos), 0);

    char manpath[PATH_MAX + 16];
    char mandir[PATH_MAX];
    path_cat(mandir, sizeof mandir, dest, "/usr/local/share/man");
    path_cat(manpath, sizeof manpath, "MANPATH=", mandir);
    char *verify[] = {"env", manpath, "systemd-analyze", "verify", unit, NULL};
    ts_run_t r;
    run(verify, &r);
    cr_assert_eq(r.code, 0, "systemd-analyze verify: %s%s", r.out, r.err);
    cr_assert_eq(r.err_len, 0, "systemd-analyze verify warns: %s", r.err);
    ts_run_free(&r);

    char *security[] = {"systemd-analyze", "security", "--offline=yes", "--threshold=15",
                        "--no-pager", unit, NULL};
    run(security, &r);
    cr_assert_eq(r.code, 0, "exposure above 1.5 (docs/operations.md states 1.5): %s%s", r.out,
                 r.err);
    cr_assert_not_null(strstr(r.out, "Overall exposure level for sluiced.service: 1.5"),
                       "%s", r.out);
    ts_run_free(&r);
}
