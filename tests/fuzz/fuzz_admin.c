/*
 * fuzz_admin.c — the admin API's tenant bodies (gateway/admin.c): a PATCH
 * body applied to a stored tenant (patch_tenant) and the resulting tenant
 * table validated as the gateway would load it (config_retenant), exactly
 * the steps patch() takes between reading the store and writing it; and a
 * whole tenant table ({"revision": N, "tenants": [...]}, docs/admin.md) as
 * the file store holds it, through config_retenant.
 *
 * The gateway config is fixed and uses a file tenant store (a file this
 * target writes once under a mktemp directory); the stored table has tenants
 * "acme" and "other". Byte 0 of the input chooses: even, the rest is a PATCH
 * body for "acme"; odd, the rest is a whole tenant table.
 *
 * Asserts: no crash, no sanitizer report, no leak; a refused body or table
 * gets an error naming a JSON path ("$" first), in the request's terms for a
 * PATCH (map_error: it does not start with "$.tenants[N]"); an accepted PATCH leaves a
 * snapshot in which "acme" is still found, and "other" untouched.
 *
 * admin.c is included to reach its static functions (as the tests do); its
 * object in libsluiced.a is then not linked.
 */
#include "../../gateway/admin.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char STORED[] =
    "{\"revision\":7,\"tenants\":["
    "{\"id\":\"acme\",\"secrets\":[\"s1\",\"s2\"],\"regions\":[\"local\"],\"kinds\":[\"sfu\"],"
    "\"limits\":{\"up_bits_s\":2000000}},"
    "{\"id\":\"other\",\"secrets\":[\"o1\"],\"regions\":[\"local\",\"eu\"],\"hash\":\"sha256\"}]}";

static config_t *base;

static void fixture_once(void)
{
    if (base)
        return;
    char dir[] = "/tmp/fuzz_admin.XXXXXX";
    FUZZ_ASSERT(mkdtemp(dir) != NULL);
    char path[sizeof dir + 16];
    snprintf(path, sizeof path, "%s/tenants.json", dir);
    FILE *f = fopen(path, "w");
    FUZZ_ASSERT(f && fwrite(STORED, 1, sizeof STORED - 1, f) == sizeof STORED - 1);
    fclose(f);
    char json[1024], err[512];
    snprintf(json, sizeof json,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"},"
             "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"127.0.0.1:9\"]},"
             "\"eu\":{\"sfu\":[\"127.0.0.1:9\"]}},"
             "\"tenant_store\":{\"type\":\"file\",\"path\":\"%s\"}}",
             path);
    base = config_parse(json, strlen(json), NULL, err, sizeof err);
    if (!base)
        fprintf(stderr, "fuzz_admin config: %s\n", err);
    FUZZ_ASSERT(base != NULL);
    /* The snapshot holds the table; the file is not read again. */
    unlink(path);
    rmdir(dir);
}

static void check_error(const char *err)
{
    FUZZ_ASSERT(memchr(err, '\0', 1024) != NULL);
    FUZZ_ASSERT(strstr(err, "$") != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fixture_once();
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char err[1024], msg[256];

    if (data[0] & 1) { /* a whole tenant table */
        err[0] = '\0';
        config_t *cfg = config_retenant(base, in, n, err, sizeof err);
        if (!cfg)
            check_error(err);
        config_unref(cfg);
        return 0;
    }

    /* patch(): the body, the stored table, patch_tenant, the whole table checked. */
    json_t *body = json_parse(in, n, msg, sizeof msg);
    if (!body || body->type != JSON_OBJECT) {
        json_free(body);
        return 0;
    }
    json_t *root = json_parse(STORED, sizeof STORED - 1, msg, sizeof msg);
    FUZZ_ASSERT(root != NULL);
    json_t *t = json_get(root, "tenants")->items[0];
    err[0] = '\0';
    if (patch_tenant(base, t, body, err, sizeof err)) {
        FUZZ_ASSERT(err[0] == '$' || !strcmp(err, "out of memory"));
    } else {
        size_t len;
        char *cand = json_write(root, &len);
        FUZZ_ASSERT(cand != NULL);
        config_t *check = config_retenant(base, cand, len, err, sizeof err);
        free(cand);
        if (!check) {
            const char *p = strstr(err, "$.");
            char e2[1024];
            snprintf(e2, sizeof e2, "%s", p ? p : err);
            map_error(e2);
            check_error(e2);
            /* The path is the body's (client text quoted later may say anything). */
            FUZZ_ASSERT(e2[0] == '$' && strncmp(e2, "$.tenants[", 10) != 0);
        } else {
            FUZZ_ASSERT(config_tenant(check, "acme", 4) != NULL);
            const cfg_tenant_t *o = config_tenant(check, "other", 5);
            FUZZ_ASSERT(o != NULL && o->nsecrets == 1 && o->hash == CRED_SHA256);
            config_unref(check);
        }
    }
    json_free(root);
    json_free(body);
    return 0;
}
