/* test_store_file.c — gateway/store_file.c: a write with the revision read
 * replaces the tenant and adds one to the revision, durably (the file holds
 * it, no temporary file is left); a stale revision is refused and changes
 * nothing; a new tenant is appended; a missing file is an error. And the
 * json.c editing the store and the admin API use (RFC 7396 merge patch). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../gateway/json.h"
#include "../../gateway/store.h"

static char dir[64], path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/sluice-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tenants.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"revision\": 3, \"tenants\": [{\"id\": \"acme\", \"secrets\": [\"s1\"]},"
          " {\"id\": \"beta\", \"secrets\": [\"b1\"]}]}",
          f);
    fclose(f);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

typedef struct result {
    int calls, status;
    uint64_t revision;
    char err[256];
} result_t;

static void done(void *arg, int status, uint64_t revision, const char *err)
{
    result_t *r = arg;
    r->calls++;
    r->status = status;
    r->revision = revision;
    snprintf(r->err, sizeof r->err, "%s", err ? err : "");
}

static json_t *read_doc(store_t *st, uint64_t *rev)
{
    char *doc, err[256], msg[256];
    size_t len;
    cr_assert_eq(store_read(st, &doc, &len, rev, err, sizeof err), STORE_OK, "%s", err);
    json_t *v = json_parse(doc, len, msg, sizeof msg);
    cr_assert_not_null(v, "%s", msg);
    free(doc);
    return v;
}

static size_t entries(void)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

Test(store_file, a_write_replaces_the_tenant_and_moves_the_revision, .init = setup,
     .fini = teardown)
{
    cr_assert_eq(chmod(path, 0640), 0);
    store_t *st = store_file_new(path);
    cr_assert_not_null(st);
    uint64_t rev;
    json_free(read_doc(st, &rev));
    cr_assert_eq(rev, 3);

    static const char acme[] = "{\"id\": \"acme\", \"secrets\": [\"s1\", \"s2\"]}";
    result_t r = {0};
    store_write(st, "acme", acme, strlen(acme), 3, done, &r);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, STORE_OK, "%s", r.err);
    cr_assert_eq(r.revision, 4);

    json_t *v = read_doc(st, &rev);
    cr_assert_eq(rev, 4);
    const json_t *list = json_get(v, "tenants");
    cr_assert_eq(list->n, 2);
    cr_assert_eq(json_get(list->items[0], "secrets")->n, 2, "acme replaced in place");
    cr_assert_str_eq(json_get(list->items[1], "id")->str, "beta");
    json_free(v);
    cr_assert_eq(entries(), 1, "no temporary file is left");
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0640, "the file keeps its mode");

    /* Stale: refused with the current revision, the file unchanged. */
    static const char acme2[] = "{\"id\": \"acme\", \"secrets\": [\"x\"]}";
    r = (result_t){0};
    store_write(st, "acme", acme2, strlen(acme2), 3, done, &r);
    cr_assert_eq(r.status, STORE_CONFLICT);
    cr_assert_eq(r.revision, 4);
    v = read_doc(st, &rev);
    cr_assert_eq(json_get(json_get(v, "tenants")->items[0], "secrets")->n, 2);
    json_free(v);

    /* A new tenant is appended. */
    static const char gamma[] = "{\"id\": \"gamma\", \"secrets\": [\"g\"]}";
    r = (result_t){0};
    store_write(st, "gamma", gamma, strlen(gamma), 4, done, &r);
    cr_assert_eq(r.status, STORE_OK, "%s", r.err);
    v = read_doc(st, &rev);
    cr_assert_eq(rev, 5);
    cr_assert_eq(json_get(v, "tenants")->n, 3);
    json_free(v);
    store_free(st);
}

Test(store_file, a_missing_file_is_an_error, .init = setup, .fini = teardown)
{
    cr_assert_eq(unlink(path), 0);
    store_t *st = store_file_new(path);
    result_t r = {0};
    store_write(st, "acme", "{}", 2, 3, done, &r);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, STORE_ERROR);
    cr_assert(strstr(r.err, "No such file"), "%s", r.err);
    char *doc = NULL, err[256];
    size_t len;
    uint64_t rev;
    cr_assert_eq(store_read(st, &doc, &len, &rev, err, sizeof err), STORE_ERROR);
    store_free(st);
}

Test(json, merge_patch_and_write)
{
    char msg[256];
    static const char t[] = "{\"a\": 1, \"o\": {\"x\": 1, \"y\": 2}, \"l\": [1]}";
    static const char p[] = "{\"a\": null, \"o\": {\"y\": 3, \"z\": \"s\\u0000t\"}, \"l\": [2, 3]}";
    json_t *tv = json_parse(t, strlen(t), msg, sizeof msg);
    json_t *pv = json_parse(p, strlen(p), msg, sizeof msg);
    cr_assert_eq(json_merge_patch(tv, pv), 0);
    size_t len;
    char *out = json_write(tv, &len);
    json_t *back = json_parse(out, len, msg, sizeof msg);
    cr_assert_not_null(back, "%s", msg);
    cr_assert_null(json_get(back, "a"), "null removes: %s", out);
    const json_t *o = json_get(back, "o");
    cr_assert_str_eq(json_get(o, "x")->str, "1");
    cr_assert_str_eq(json_get(o, "y")->str, "3");
    cr_assert_eq(json_get(o, "z")->len, 3, "a NUL survives the round trip");
    cr_assert_eq(json_get(back, "l")->n, 2, "arrays are replaced");
    free(out);
    json_free(back);
    json_free(tv);
    json_free(pv);
}
