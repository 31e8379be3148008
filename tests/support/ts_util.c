/*
 * ts_util.c — clocks, deadlines, scratch directory, file helpers.
 */
#include "ts_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char tmpdir_path[PATH_MAX];
static pid_t tmpdir_owner; /* a forked child must not remove its parent's dir */
static unsigned tmp_counter;

int64_t ts_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ts_now_ms(void)
{
    return ts_now_ns() / 1000000;
}

int64_t ts_ms(int64_t ms)
{
    const char *s = getenv("TS_TIMEOUT_SCALE");
    long scale = s ? strtol(s, NULL, 10) : 1;
    if (scale < 1)
        scale = 1;
    if (scale > 20)
        scale = 20;
    return ms * scale;
}

int64_t ts_deadline(int64_t ms_from_now)
{
    return ts_now_ms() + ms_from_now;
}

int ts_remaining_ms(int64_t deadline)
{
    int64_t left = deadline - ts_now_ms();
    if (left < 0)
        return 0;
    if (left > INT32_MAX)
        return INT32_MAX;
    return (int)left;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static void tmpdir_cleanup(void)
{
    if (!tmpdir_path[0] || tmpdir_owner != getpid())
        return;
    const char *keep = getenv("TS_KEEP");
    if (keep && strcmp(keep, "1") == 0) {
        fprintf(stderr, "ts: keeping %s\n", tmpdir_path);
        return;
    }
    /* Depth first, no symlink following; bounded by what this process wrote. */
    nftw(tmpdir_path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir_path[0] = '\0';
}

const char *ts_tmpdir(void)
{
    if (tmpdir_path[0] && tmpdir_owner == getpid())
        return tmpdir_path;
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(tmpdir_path, sizeof tmpdir_path, "%s/sluice-ts-XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof tmpdir_path || !mkdtemp(tmpdir_path)) {
        tmpdir_path[0] = '\0';
        return NULL;
    }
    if (!tmpdir_owner)
        atexit(tmpdir_cleanup);
    tmpdir_owner = getpid();
    return tmpdir_path;
}

int ts_tmppath(const char *name, char *out, size_t cap)
{
    const char *dir = ts_tmpdir();
    if (!dir)
        return -1;
    int n = snprintf(out, cap, "%s/%02u-%s", dir, ++tmp_counter, name);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

const char *ts_build_dir(void)
{
    const char *b = getenv("SLUICE_BUILD");
    return (b && *b) ? b : NULL;
}

int ts_build_path(const char *build, const char *rel, char *out, size_t cap)
{
    if (!build)
        build = ts_build_dir();
    if (!build)
        return -1;
    /* Absolute, so that paths written into a config in ts_tmpdir() (which the
     * gateway resolves against the config's directory) still point here. */
    char cwd[PATH_MAX] = "";
    if (build[0] != '/' && !getcwd(cwd, sizeof cwd))
        return -1;
    int n = snprintf(out, cap, "%s%s%s/%s", cwd, cwd[0] ? "/" : "", build, rel);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int ts_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd);
}

char *ts_read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(max + 1);
    size_t have = 0;
    while (buf && have < max) {
        ssize_t r = read(fd, buf + have, max - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            buf = NULL;
        }
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    close(fd);
    if (!buf)
        return NULL;
    buf[have] = '\0';
    if (len)
        *len = have;
    return buf;
}

int ts_memmem(const void *haystack, size_t len, const char *needle)
{
    return haystack && memmem(haystack, len, needle, strlen(needle)) != NULL;
}

int ts_appendf(char *out, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (*pos >= cap)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *pos)
        return -1;
    *pos += (size_t)n;
    return 0;
}

int ts_json_str(char *out, size_t cap, size_t *pos, const char *s)
{
    if (ts_appendf(out, cap, pos, "\"") < 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        if (*p == '"' || *p == '\\')
            rc = ts_appendf(out, cap, pos, "\\%c", *p);
        else if (*p < 0x20)
            rc = ts_appendf(out, cap, pos, "\\u%04x", *p);
        else
            rc = ts_appendf(out, cap, pos, "%c", *p);
        if (rc < 0)
            return -1;
    }
    return ts_appendf(out, cap, pos, "\"");
}

int ts_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

const char *ts_cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return out;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(out, cap, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
    return out;
}
