/*
 * fuzz_config.c — gateway/config.c and config_tenant.c: the gateway's config
 * from a JSON buffer (config_parse), the way sluiced reads its file and a
 * reload reads it again.
 *
 * Asserts: config_parse returns a snapshot or NULL with an error that names a
 * JSON path ("$..." then ": " then what is wrong), NUL-terminated inside the
 * caller's buffer, also when that buffer is small; a snapshot's tenants are
 * found again by id; config_ref / config_unref free everything (LeakSanitizer
 * checks each input); parsing the same document twice gives the same answer.
 *
 * Determinism: host names in addresses would be resolved by getaddrinfo (DNS):
 * this file replaces getaddrinfo with one that takes numeric hosts only (a
 * name then fails as "cannot resolve", the same path an unknown name takes).
 * A tenant store path could name a device that blocks on read (/dev/stdin):
 * fopen is replaced too, by one that refuses anything but a regular file.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../gateway/config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res);
FILE *fopen(const char *path, const char *mode);

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static gai_fn real;
    if (!real)
        real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    struct addrinfo h = hints ? *hints : (struct addrinfo){0};
    h.ai_flags |= AI_NUMERICHOST;
    return real(node, service, &h, res);
}

typedef FILE *(*fopen_fn)(const char *, const char *);

FILE *fopen(const char *path, const char *mode)
{
    static fopen_fn real;
    if (!real)
        real = (fopen_fn)dlsym(RTLD_NEXT, "fopen");
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        errno = EACCES;
        return NULL;
    }
    return real(path, mode);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    char err[512];
    memset(err, 'x', sizeof err);
    config_t *cfg = config_parse(json, size, NULL, err, sizeof err);
    if (getenv("FUZZ_VERBOSE")) /* replaying one input: say what it gave */
        fprintf(stderr, "config_parse: %s\n", cfg ? "ok" : err);
    if (!cfg) {
        FUZZ_ASSERT(memchr(err, '\0', sizeof err) != NULL);
        FUZZ_ASSERT(err[0] == '$' && strstr(err, ": ") != NULL);
    } else {
        for (size_t i = 0; i < cfg->ntenants; i++) {
            const cfg_tenant_t *t = &cfg->tenants[i];
            FUZZ_ASSERT(config_tenant(cfg, t->id, strlen(t->id)) == t);
        }
        config_t *r = config_ref(cfg);
        FUZZ_ASSERT(r == cfg);
        config_unref(r);
    }

    /* The same document again, with an error buffer too small for any message. */
    char small[6];
    memset(small, 'x', sizeof small);
    config_t *again = config_parse(json, size, NULL, small, sizeof small);
    FUZZ_ASSERT((again != NULL) == (cfg != NULL));
    if (!again)
        FUZZ_ASSERT(memchr(small, '\0', sizeof small) != NULL && small[0] == '$');
    config_unref(again);
    config_unref(cfg);
    return 0;
}
