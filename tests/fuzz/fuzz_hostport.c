/*
 * fuzz_hostport.c — proto/hostport.c: "host:port" and "[v6]:port" as the
 * gateway's config (listen, echo, backend addresses) and the shim (the
 * gateway URL's authority, --listen) write them.
 *
 * Input: byte 0 chooses the flags; the rest is the text.
 *
 * Asserts: an accepted text's host lies inside it (brackets excluded), holds
 * no ':' unless bracketed, and its port is what hostport_port_parse reads from
 * the text after the last ':'; the host and port written back in the same
 * form split to the same host and port; without HOSTPORT_PORT_OPTIONAL a port
 * is always there; a refusal is a negative hostport_err.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/hostport.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1024)
        return 0;
    unsigned flags = data[0] & 1 ? HOSTPORT_PORT_OPTIONAL : 0;
    size_t len = size - 1;
    char *s = malloc(len ? len : 1);
    FUZZ_ASSERT(s != NULL);
    memcpy(s, data + 1, len);

    hostport_t hp;
    int rc = hostport_split(s, len, flags, &hp);
    if (rc != HOSTPORT_OK) {
        FUZZ_ASSERT(rc < 0);
        free(s);
        return 0;
    }
    FUZZ_ASSERT(hp.host >= s && hp.host + hp.host_len <= s + len);
    if (!hp.bracketed)
        FUZZ_ASSERT(memchr(hp.host, ':', hp.host_len) == NULL);
    if (!(flags & HOSTPORT_PORT_OPTIONAL))
        FUZZ_ASSERT(hp.has_port);
    if (hp.has_port) {
        const char *colon = memrchr(s, ':', len);
        FUZZ_ASSERT(colon != NULL);
        uint16_t port;
        FUZZ_ASSERT(hostport_port_parse(colon + 1, len - (size_t)(colon + 1 - s), &port) ==
                        HOSTPORT_OK &&
                    port == hp.port);
    } else {
        FUZZ_ASSERT(hp.port == 0);
    }

    /* Written back in the same form, it splits the same. */
    char *again = malloc(hp.host_len + 16);
    FUZZ_ASSERT(again != NULL);
    /* memcpy, not "%.*s": the host is located, not judged, and may hold a NUL
     * (callers refuse it: config.c names it, the shim's argv cannot carry it). */
    size_t n = 0;
    if (hp.bracketed)
        again[n++] = '[';
    memcpy(again + n, hp.host, hp.host_len);
    n += hp.host_len;
    if (hp.bracketed)
        again[n++] = ']';
    if (hp.has_port)
        n += (size_t)snprintf(again + n, 8, ":%u", (unsigned)hp.port);
    hostport_t hp2;
    FUZZ_ASSERT(hostport_split(again, n, flags, &hp2) == HOSTPORT_OK);
    FUZZ_ASSERT(hp2.host_len == hp.host_len && memcmp(hp2.host, hp.host, hp.host_len) == 0);
    FUZZ_ASSERT(hp2.bracketed == hp.bracketed && hp2.has_port == hp.has_port &&
                hp2.port == hp.port);
    free(again);
    free(s);
    return 0;
}
