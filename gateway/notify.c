/* notify.c — sd_notify(3) messages to the service manager (see notify.h). */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

int notify_format(char *out, size_t cap, unsigned what, uint64_t mono_usec, const char *status)
{
    size_t pos = 0;
    int n;
#define APPEND(...)                                                                      \
    do {                                                                                 \
        n = snprintf(out + pos, cap - pos, __VA_ARGS__);                                 \
        if (n < 0 || (size_t)n >= cap - pos)                                             \
            return -1;                                                                   \
        pos += (size_t)n;                                                                \
    } while (0)
    if (cap == 0)
        return -1;
    out[0] = '\0';
    if (what & NOTIFY_READY)
        APPEND("READY=1\n");
    if (what & NOTIFY_RELOADING)
        APPEND("RELOADING=1\nMONOTONIC_USEC=%llu\n", (unsigned long long)mono_usec);
    if (what & NOTIFY_STOPPING)
        APPEND("STOPPING=1\n");
    if (status) {
        size_t len = strnlen(status, NOTIFY_STATUS_MAX);
        APPEND("STATUS=");
        if (len + 2 > cap - pos) /* the text, '\n', NUL */
            return -1;
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)status[i];
            out[pos++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        out[pos++] = '\n';
        out[pos] = '\0';
    }
#undef APPEND
    return (int)pos;
}

int notify_send(unsigned what, const char *fmt, ...)
{
    if (!getenv("NOTIFY_SOCKET"))
        return 0;
    char status[NOTIFY_STATUS_MAX + 1], msg[NOTIFY_MSG_MAX];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(status, sizeof status, fmt, ap); /* a longer status is cut */
        va_end(ap);
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (notify_format(msg, sizeof msg, what, usec, fmt ? status : NULL) < 0)
        return -1; /* cannot happen: NOTIFY_MSG_MAX holds every message */
    /* unset_environment 0: a reload sends again on the same socket. */
    int rc = sd_notify(0, msg);
    if (rc > 0)
        return 1;
    static int warned;
    if (!warned) {
        warned = 1;
        log_msg(LOG_WARN, "sd_notify to $NOTIFY_SOCKET failed: %s",
                rc < 0 ? strerror(-rc) : "not sent");
    }
    return rc < 0 ? -1 : 0;
}
