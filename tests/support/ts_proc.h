/*
 * ts_proc.h — child processes for integration tests: spawn with captured
 * output, wait for a stdout line with a deadline, stop with a deadline.
 *
 * A child runs in its own process group with stdout on a pipe (read here, line
 * by line) and stderr in a file in ts_tmpdir() (read back only for diagnostics,
 * so a chatty or sanitizer-heavy child can never block on a full pipe). Stdin is
 * /dev/null unless TS_PROC_STDIN_PIPE asks for a pipe (non-blocking on the
 * child's side).
 *
 * Nothing is left running: every spawned pid is recorded, and an atexit handler
 * plus a destructor SIGKILL the process group of any child not yet reaped. The
 * child also gets PR_SET_PDEATHSIG(SIGKILL), so it dies even if the test
 * process is killed outright (criterion timeout, crash).
 *
 * Linking this module also sets SIGPIPE to SIG_IGN in the test process (a
 * write to a child's closed stdin is then an EPIPE error, not a crash);
 * children get default signal dispositions back before exec.
 *
 * Env: TS_VERBOSE=1 dumps every child's stderr when it is stopped.
 */
#ifndef SLUICE_TS_PROC_H
#define SLUICE_TS_PROC_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TS_PROC_LINE_MAX 2048u

enum ts_proc_flags {
    TS_PROC_STDIN_PIPE = 1, /* in_fd is the write end of the child's stdin */
};

typedef struct ts_proc {
    pid_t pid;        /* > 0 once spawned; stays set after reaping (for messages) */
    int reaped;       /* 1 once waited for; status is then valid */
    int status;       /* raw wait status */
    int killed;       /* 1 when ts_proc_stop had to use SIGKILL */
    int out_fd;       /* stdout pipe, read end (non-blocking); -1 when closed */
    int in_fd;        /* stdin pipe, write end, with TS_PROC_STDIN_PIPE; else -1 */
    char name[32];
    char err_path[PATH_MAX]; /* the child's stderr */
    int _pidfd;
    int _eof;
    size_t _have;                   /* bytes of a partial line in _buf */
    char _buf[TS_PROC_LINE_MAX];
    size_t _seen_len;               /* recent stdout, for diagnostics */
    char _seen[2048];
} ts_proc_t;

/* Starts argv[0] (a path, or a name looked up in PATH) with argv. name labels
 * diagnostics. Returns 0, or -1 with errno set (exec failure included: the
 * child reports its exec errno through a close-on-exec pipe). */
int ts_proc_spawn(ts_proc_t *p, const char *name, char *const argv[], int flags);

/* Reads stdout lines until one starts with prefix; copies it (no newline,
 * truncated to cap - 1) into out (may be NULL). Earlier lines are discarded.
 * Returns 0; or -1 with errno ETIMEDOUT (deadline passed) or EPIPE (stdout
 * closed: the child exited or closed it). On failure the child's output is
 * dumped to stderr. */
int ts_proc_wait_line(ts_proc_t *p, const char *prefix, int64_t deadline, char *out,
                      size_t cap);

/* Waits until the child exits or the deadline passes, without signalling it.
 * Returns its exit code (ts_proc_exit_code), or -1 with errno ETIMEDOUT. */
int ts_proc_wait_exit(ts_proc_t *p, int64_t deadline);

/* Sends sig to the child (not its group). Returns 0 or -1 (already reaped). */
int ts_proc_signal(ts_proc_t *p, int sig);

/* SIGTERM, wait until deadline, then SIGKILL to the process group and wait
 * (bounded) again. Returns the exit code (0..255, 128+signal when killed by a
 * signal), or -1 if it could not be reaped. A non-zero result or a needed
 * SIGKILL dumps the child's output to stderr. Calling it on an exited child
 * just returns its code. */
int ts_proc_stop(ts_proc_t *p, int64_t deadline);

/* Kills (SIGKILL, whole group) a child still running, reaps it and closes the
 * pipes. Idempotent; use it in fixtures' .fini. Dumps the output of a child
 * that was still running (a test that got that far without stopping it has
 * failed). */
void ts_proc_dispose(ts_proc_t *p);

/* 1 while the child has not been reaped (it may still have exited). */
int ts_proc_running(const ts_proc_t *p);

/* 0..255 for a normal exit, 128 + signal number for a signal. */
int ts_proc_exit_code(int status);

/* Prints the child's recent stdout and the tail of its stderr to stderr. */
void ts_proc_dump(const ts_proc_t *p, const char *why);

/* Result of ts_run. out/err are malloc'd and NUL-terminated (possibly empty). */
typedef struct ts_run {
    int code;      /* exit code as ts_proc_stop returns it; -1 if never ran */
    int timed_out; /* 1 when the deadline stopped it */
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
} ts_run_t;

/* Runs argv to completion with stdin from stdin_file (NULL: /dev/null),
 * collecting at most 1 MiB of stdout and of stderr. A child still running at
 * the deadline is stopped (SIGTERM, then SIGKILL). Returns 0 when it ran (see
 * r->code), -1 when it could not be started. Free r with ts_run_free. */
int ts_run(char *const argv[], const char *stdin_file, int64_t deadline, ts_run_t *r);
void ts_run_free(ts_run_t *r);

#endif
