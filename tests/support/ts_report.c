/*
 * ts_report.c — the machine and libraries lines of benchmark reports (see
 * ts_report.h).
 */
#include "ts_report.h"

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "ts_util.h"

void ts_report_machine(char *out, size_t cap, size_t *pos)
{
    struct utsname u;
    char model[128];
    ts_cpu_model(model, sizeof model);
    if (uname(&u) < 0)
        memset(&u, 0, sizeof u);
    ts_appendf(out, cap, pos, "- machine: %ld cpus (%s), %s %s %s\n",
               sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release, u.machine);
    ts_appendf(out, cap, pos, "- libraries: %s, nghttp2 %s, libev %d.%d\n",
               OpenSSL_version(OPENSSL_VERSION), nghttp2_version(0)->version_str,
               ev_version_major(), ev_version_minor());
}
