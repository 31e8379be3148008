/* tlserr.c — see tlserr.h. */
#include "tlserr.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

const char *tlserr_take(char *buf, size_t cap, const char *fallback)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);

    if (cap == 0) {
        ERR_clear_error();
        return buf;
    }
    if (e == 0) {
        snprintf(buf, cap, "%s", fallback ? fallback : "unknown TLS error");
    } else if (ERR_SYSTEM_ERROR(e)) {
        char tmp[128];
        snprintf(buf, cap, "%s", strerror_r(ERR_GET_REASON(e), tmp, sizeof tmp));
    } else if (ERR_reason_error_string(e)) {
        const char *lib = ERR_lib_error_string(e);
        snprintf(buf, cap, "%s%s%s", lib ? lib : "", lib ? ": " : "", ERR_reason_error_string(e));
    } else {
        ERR_error_string_n(e, buf, cap);
    }
    size_t n = strlen(buf);
    if (e != 0 && data && *data && (flags & ERR_TXT_STRING) && n + 1 < cap)
        snprintf(buf + n, cap - n, " (%s)", data);
    ERR_clear_error();
    return buf;
}
