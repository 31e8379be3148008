/*
 * notify.h — tell the service manager where the gateway is in its life:
 * ready, reloading, stopping, and a one-line status (sd_notify(3), the
 * protocol of systemd's Type=notify units; conf/sluiced.service).
 *
 * The messages go to the datagram socket named by $NOTIFY_SOCKET, through
 * libsystemd's sd_notify(). Without that variable (run by hand, by a test, by
 * another supervisor) nothing is sent and nothing fails: readiness is then the
 * "sluiced ready" line on stdout, as before.
 *
 * When main.c sends what (docs/operations.md, "Running under systemd"):
 *   READY=1      once every listener accepts and the tenant table is loaded;
 *   RELOADING=1  when a SIGHUP reload starts, READY=1 when it has ended
 *                (applied or refused: the gateway serves either way);
 *   STOPPING=1   on SIGTERM/SIGINT, as the drain starts.
 * Every message may carry STATUS=, shown by `systemctl status`.
 */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

enum notify_what {
    NOTIFY_STATUS = 0,        /* STATUS= alone */
    NOTIFY_READY = 1 << 0,    /* READY=1 */
    NOTIFY_RELOADING = 1 << 1, /* RELOADING=1 and MONOTONIC_USEC= */
    NOTIFY_STOPPING = 1 << 2, /* STOPPING=1 */
};

/* Longest STATUS= text kept; a longer one is cut. */
#define NOTIFY_STATUS_MAX 256u
/* Longest message notify_format writes, its NUL included. */
#define NOTIFY_MSG_MAX (NOTIFY_STATUS_MAX + 96u)

/* Builds the message for what (bits of enum notify_what) into out: one
 * "KEY=VALUE" per line, in the order READY, RELOADING, MONOTONIC_USEC (with
 * RELOADING: mono_usec, CLOCK_MONOTONIC in µs, which systemd 253 and later
 * require with RELOADING=1 and older ones ignore), STOPPING, STATUS. status
 * (NULL: no STATUS=) is cut to NOTIFY_STATUS_MAX bytes and every byte below
 * 0x20 or 0x7f in it becomes '?', so a status can never end its line and
 * forge another assignment (config errors quote the file's text). Pure.
 * Returns the length written (cap >= NOTIFY_MSG_MAX always suffices), or -1
 * when it does not fit. */
int notify_format(char *out, size_t cap, unsigned what, uint64_t mono_usec, const char *status);

/* Formats STATUS= with fmt (NULL: none) and sends it with what. Returns 1
 * when sent, 0 when $NOTIFY_SOCKET is unset, or -1 when sending failed (the
 * failure is logged once at LOG_WARN; the gateway runs on). */
int notify_send(unsigned what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
