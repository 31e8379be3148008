/*
 * ts_proc.c — spawn, line waits, stop and the leave-nothing-running net.
 */
#include "ts_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ts_util.h"

/* Pids spawned and not yet reaped. Only pids are kept, never ts_proc_t
 * pointers: an aborted test leaves its stack-allocated structs behind. */
#define LIVE_MAX 256
static pid_t live[LIVE_MAX];

/* Bound on a wait after SIGKILL (the kernel reaps promptly; this only guards
 * against a process stuck in uninterruptible sleep). */
#define KILL_WAIT_MS 5000
#define STD_CAP (1u << 20)

static void live_add(pid_t pid)
{
    for (size_t i = 0; i < LIVE_MAX; i++) {
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
    }
    /* Full: the exit net cannot see this one, but PDEATHSIG still applies. */
    fprintf(stderr, "ts_proc: more than %d live children\n", LIVE_MAX);
}

static void live_del(pid_t pid)
{
    for (size_t i = 0; i < LIVE_MAX; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static void kill_all_children(void)
{
    for (size_t i = 0; i < LIVE_MAX; i++) {
        pid_t pid = live[i];
        if (pid <= 0)
            continue;
        live[i] = 0;
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        /* SIGKILL cannot be caught: the wait ends as soon as the kernel reaps. */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

__attribute__((constructor)) static void ts_proc_init(void)
{
    /* Writing to a child's closed stdin or a reset socket must be an error
     * return, not the death of the test process. Children get SIG_DFL back. */
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_all_children);
}

__attribute__((destructor)) static void ts_proc_fini(void)
{
    kill_all_children();
}

int ts_proc_exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int ts_proc_running(const ts_proc_t *p)
{
    return p->pid > 0 && !p->reaped;
}

/* Resolves a bare command name through PATH in the parent, so the child only
 * needs execv (async-signal-safe after fork in a threaded process). */
static int resolve(const char *cmd, char *out, size_t cap)
{
    if (strchr(cmd, '/')) {
        if ((size_t)snprintf(out, cap, "%s", cmd) >= cap)
            return -1;
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        int w = snprintf(out, cap, "%.*s/%s", (int)n, path, cmd);
        if (w > 0 && (size_t)w < cap && access(out, X_OK) == 0)
            return 0;
        path += n + (end ? 1 : 0);
    }
    errno = ENOENT;
    return -1;
}

static int reap(ts_proc_t *p, int flags);

static void child_exec(const char *file, char *const argv[], int in_fd, int out_fd,
                       int err_fd, int report_fd, pid_t parent)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127); /* the parent died before PDEATHSIG was armed */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        goto fail;
    execv(file, argv);
fail:;
    int e = errno;
    ssize_t w = write(report_fd, &e, sizeof e);
    (void)w;
    _exit(127);
}

static int spawn_fd(ts_proc_t *p, const char *name, char *const argv[], int stdin_fd,
                    int want_in_pipe)
{
    char file[PATH_MAX];
    int outp[2] = {-1, -1}, inp[2] = {-1, -1}, rep[2] = {-1, -1};
    int err_fd = -1, null_fd = -1, saved = 0;

    memset(p, 0, sizeof *p);
    p->out_fd = p->in_fd = p->_pidfd = -1;
    snprintf(p->name, sizeof p->name, "%s", name);

    if (resolve(argv[0], file, sizeof file) < 0)
        return -1;
    char errname[64];
    snprintf(errname, sizeof errname, "%s.stderr", p->name);
    if (ts_tmppath(errname, p->err_path, sizeof p->err_path) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    err_fd = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (err_fd < 0 || pipe2(outp, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0)
        goto err;
    if (want_in_pipe) {
        if (pipe2(inp, O_CLOEXEC) < 0)
            goto err;
        /* Non-blocking for the child: a reader such as curl -T - then gets
         * EAGAIN and keeps serving the connection instead of blocking in
         * read(2) until the test writes again. */
        fcntl(inp[0], F_SETFL, O_NONBLOCK);
        stdin_fd = inp[0];
    } else if (stdin_fd < 0) {
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0)
            goto err;
        stdin_fd = null_fd;
    }

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        goto err;
    if (pid == 0)
        child_exec(file, argv, stdin_fd, outp[1], err_fd, rep[1], parent);

    setpgid(pid, pid); /* also done by the child; whichever runs first wins */
    live_add(pid);
    p->pid = pid;
    close(outp[1]);
    close(rep[1]);
    close(err_fd);
    if (null_fd >= 0)
        close(null_fd);
    if (inp[0] >= 0)
        close(inp[0]);
    p->out_fd = outp[0];
    p->in_fd = inp[1];
    fcntl(p->out_fd, F_SETFL, O_NONBLOCK);

    /* EOF on the report pipe means execv succeeded (close-on-exec). */
    int child_errno = 0;
    ssize_t r;
    do {
        r = read(rep[0], &child_errno, sizeof child_errno);
    } while (r < 0 && errno == EINTR);
    close(rep[0]);
    if (r == (ssize_t)sizeof child_errno) {
        reap(p, 0); /* the child has _exit(127)ed or is about to */
        close(p->out_fd);
        if (p->in_fd >= 0)
            close(p->in_fd);
        p->out_fd = p->in_fd = -1;
        errno = child_errno;
        return -1;
    }
    p->_pidfd = pidfd_open(pid, 0); /* -1 on old kernels: fall back to slices */
    return 0;

err:
    saved = errno;
    int fds[] = {err_fd, null_fd, outp[0], outp[1], inp[0], inp[1], rep[0], rep[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    p->out_fd = p->in_fd = -1;
    errno = saved;
    return -1;
}

int ts_proc_spawn(ts_proc_t *p, const char *name, char *const argv[], int flags)
{
    return spawn_fd(p, name, argv, -1, (flags & TS_PROC_STDIN_PIPE) != 0);
}

static void seen_append(ts_proc_t *p, const char *s, size_t n)
{
    if (n >= sizeof p->_seen) {
        s += n - (sizeof p->_seen - 1);
        n = sizeof p->_seen - 1;
    }
    if (p->_seen_len + n >= sizeof p->_seen) {
        size_t drop = p->_seen_len + n - (sizeof p->_seen - 1);
        memmove(p->_seen, p->_seen + drop, p->_seen_len - drop);
        p->_seen_len -= drop;
    }
    memcpy(p->_seen + p->_seen_len, s, n);
    p->_seen_len += n;
    p->_seen[p->_seen_len] = '\0';
}

/* Takes one complete line out of _buf into line (NUL-terminated, no newline).
 * A full buffer without a newline counts as a line. Returns 1 or 0 (none). */
static int take_line(ts_proc_t *p, char *line, size_t cap)
{
    char *nl = memchr(p->_buf, '\n', p->_have);
    size_t n;
    if (nl)
        n = (size_t)(nl - p->_buf);
    else if (p->_have == sizeof p->_buf || (p->_eof && p->_have > 0))
        n = p->_have;
    else
        return 0;
    size_t copy = n < cap - 1 ? n : cap - 1;
    memcpy(line, p->_buf, copy);
    line[copy] = '\0';
    seen_append(p, p->_buf, n);
    seen_append(p, "\n", 1);
    size_t used = n + (nl ? 1 : 0);
    memmove(p->_buf, p->_buf + used, p->_have - used);
    p->_have -= used;
    return 1;
}

/* Reads what stdout has now. Returns 1 if bytes came, 0 if none (EAGAIN), -1 at EOF. */
static int fill(ts_proc_t *p)
{
    if (p->_eof || p->out_fd < 0)
        return -1;
    ssize_t r;
    do {
        r = read(p->out_fd, p->_buf + p->_have, sizeof p->_buf - p->_have);
    } while (r < 0 && errno == EINTR);
    if (r > 0) {
        p->_have += (size_t)r;
        return 1;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    p->_eof = 1;
    return -1;
}

int ts_proc_wait_line(ts_proc_t *p, const char *prefix, int64_t deadline, char *out,
                      size_t cap)
{
    char line[TS_PROC_LINE_MAX + 1];
    size_t plen = strlen(prefix);
    for (;;) {
        while (take_line(p, line, sizeof line)) {
            if (strncmp(line, prefix, plen) == 0) {
                if (out && cap > 0)
                    snprintf(out, cap, "%s", line);
                return 0;
            }
        }
        if (p->_eof || p->out_fd < 0) {
            char why[160];
            snprintf(why, sizeof why, "stdout closed before a line starting \"%s\"", prefix);
            ts_proc_dump(p, why);
            errno = EPIPE;
            return -1;
        }
        int left = ts_remaining_ms(deadline);
        if (left == 0) {
            char why[160];
            snprintf(why, sizeof why, "no line starting \"%s\" before the deadline", prefix);
            ts_proc_dump(p, why);
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
        int n = poll(&pfd, 1, left);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0)
            fill(p);
    }
}

static int reap(ts_proc_t *p, int flags)
{
    if (p->reaped)
        return 1;
    int st;
    pid_t r;
    do {
        r = waitpid(p->pid, &st, flags);
    } while (r < 0 && errno == EINTR);
    if (r == p->pid) {
        p->reaped = 1;
        p->status = st;
        live_del(p->pid);
        if (p->_pidfd >= 0) {
            close(p->_pidfd);
            p->_pidfd = -1;
        }
        return 1;
    }
    if (r < 0 && errno == ECHILD) {
        /* Reaped elsewhere (should not happen); do not wait forever. */
        p->reaped = 1;
        p->status = 0x7f00; /* reads as exit code 127 */
        live_del(p->pid);
        return 1;
    }
    return 0;
}

int ts_proc_wait_exit(ts_proc_t *p, int64_t deadline)
{
    if (p->pid <= 0) {
        errno = ESRCH;
        return -1;
    }
    for (;;) {
        if (reap(p, WNOHANG))
            return ts_proc_exit_code(p->status);
        int left = ts_remaining_ms(deadline);
        if (left == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (p->_pidfd >= 0) {
            struct pollfd pfd = {.fd = p->_pidfd, .events = POLLIN};
            poll(&pfd, 1, left);
        } else {
            /* No pidfd: re-check in short slices (bounded by the deadline). */
            poll(NULL, 0, left < 10 ? left : 10);
        }
    }
}

int ts_proc_signal(ts_proc_t *p, int sig)
{
    if (!ts_proc_running(p)) {
        errno = ESRCH;
        return -1;
    }
    return kill(p->pid, sig);
}

static void verbose_dump(const ts_proc_t *p, int code)
{
    const char *v = getenv("TS_VERBOSE");
    if (v && strcmp(v, "1") == 0) {
        char why[64];
        snprintf(why, sizeof why, "exit code %d", code);
        ts_proc_dump(p, why);
    }
}

int ts_proc_stop(ts_proc_t *p, int64_t deadline)
{
    if (p->pid <= 0)
        return -1;
    if (!p->reaped) {
        kill(p->pid, SIGTERM);
        if (ts_proc_wait_exit(p, deadline) < 0) {
            p->killed = 1;
            kill(-p->pid, SIGKILL);
            kill(p->pid, SIGKILL);
            if (ts_proc_wait_exit(p, ts_deadline(KILL_WAIT_MS)) < 0)
                return -1;
        }
    }
    int code = ts_proc_exit_code(p->status);
    if (p->killed || code != 0) {
        char why[96];
        snprintf(why, sizeof why, "%s (exit code %d)",
                 p->killed ? "did not exit on SIGTERM in time, killed" : "stopped", code);
        ts_proc_dump(p, why);
    } else {
        verbose_dump(p, code);
    }
    return code;
}

void ts_proc_dispose(ts_proc_t *p)
{
    if (p->pid <= 0)
        return; /* never spawned (or zeroed): its fds are not ours to close */
    if (!p->reaped) {
        ts_proc_dump(p, "still running at teardown, killed");
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        ts_proc_wait_exit(p, ts_deadline(KILL_WAIT_MS));
    }
    if (p->out_fd >= 0) {
        close(p->out_fd);
        p->out_fd = -1;
    }
    if (p->in_fd >= 0) {
        close(p->in_fd);
        p->in_fd = -1;
    }
    if (p->_pidfd >= 0) {
        close(p->_pidfd);
        p->_pidfd = -1;
    }
}

void ts_proc_dump(const ts_proc_t *p, const char *why)
{
    fprintf(stderr, "==== %s (pid %d): %s\n", p->name, (int)p->pid, why);
    fprintf(stderr, "---- %s stdout (recent):\n%s", p->name, p->_seen_len ? p->_seen : "");
    if (p->_have > 0)
        fprintf(stderr, "%.*s\n", (int)p->_have, p->_buf);
    size_t len = 0;
    char *err = p->err_path[0] ? ts_read_file(p->err_path, STD_CAP, &len) : NULL;
    const size_t tail = 8192;
    const char *from = err;
    if (err && len > tail)
        from = err + len - tail;
    fprintf(stderr, "---- %s stderr%s:\n%s%s==== end %s\n", p->name,
            (err && len > tail) ? " (last 8 KiB)" : "", from ? from : "(none)\n",
            (from && len && from[strlen(from) - 1] != '\n') ? "\n" : "", p->name);
    free(err);
}

int ts_run(char *const argv[], const char *stdin_file, int64_t deadline, ts_run_t *r)
{
    memset(r, 0, sizeof *r);
    r->code = -1;
    int in_fd = -1;
    if (stdin_file) {
        in_fd = open(stdin_file, O_RDONLY | O_CLOEXEC);
        if (in_fd < 0)
            return -1;
    }
    const char *base = strrchr(argv[0], '/');
    ts_proc_t p;
    int rc = spawn_fd(&p, base ? base + 1 : argv[0], argv, in_fd, 0);
    if (in_fd >= 0)
        close(in_fd);
    if (rc < 0)
        return -1;

    size_t cap = 65536;
    r->out = malloc(cap + 1);
    while (r->out) {
        if (r->out_len == cap && cap < STD_CAP) {
            char *bigger = realloc(r->out, cap * 2 + 1);
            if (!bigger)
                break;
            r->out = bigger;
            cap *= 2;
        }
        char sink[4096];
        char *dst = r->out_len < cap ? r->out + r->out_len : sink;
        size_t room = r->out_len < cap ? cap - r->out_len : sizeof sink;
        ssize_t n = read(p.out_fd, dst, room);
        if (n > 0) {
            if (dst != sink)
                r->out_len += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            break;
        int left = ts_remaining_ms(deadline);
        if (left == 0) {
            r->timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = p.out_fd, .events = POLLIN};
        poll(&pfd, 1, left);
    }
    if (r->out)
        r->out[r->out_len] = '\0';

    if (r->timed_out) {
        r->code = ts_proc_stop(&p, ts_deadline(2000));
    } else {
        r->code = ts_proc_wait_exit(&p, deadline);
        if (r->code < 0) {
            r->timed_out = 1;
            r->code = ts_proc_stop(&p, ts_deadline(2000));
        }
    }
    r->err = ts_read_file(p.err_path, STD_CAP, &r->err_len);
    if (!r->err) {
        r->err = calloc(1, 1);
        r->err_len = 0;
    }
    ts_proc_dispose(&p);
    return 0;
}

void ts_run_free(ts_run_t *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
    r->out_len = r->err_len = 0;
}
