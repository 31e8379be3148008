/*
 * config_doc.h — what test_config.c and test_config_tenant.c share: config
 * documents made of minimal valid parts (written with single quotes), the
 * parse-and-expect helpers, and a scratch directory for files. Included by
 * the tests that use it; every helper fails the calling test on a problem.
 */
#ifndef SLUICE_TEST_CONFIG_DOC_H
#define SLUICE_TEST_CONFIG_DOC_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/config.h"

/* Test documents are written with single quotes; this turns them into JSON. */
static char *dq(const char *s)
{
    char *d = strdup(s);
    cr_assert_not_null(d);
    for (char *p = d; *p; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

/* A document made of the minimal valid parts, any of which a test replaces;
 * OMIT leaves the key out. extra is appended inside the root object. */
#define OMIT "-"
typedef struct doc {
    const char *listen, *tls, *region, *regions, *tenants, *extra;
} doc_t;

static char *render(doc_t d)
{
    const char *keys[] = {"listen", "tls", "region", "regions", "tenants"};
    const char *vals[] = {
        d.listen ? d.listen : "['127.0.0.1:0']",
        d.tls ? d.tls : "{'cert':'c.pem','key':'k.pem'}",
        d.region ? d.region : "'local'",
        d.regions ? d.regions : "{'local':{'sfu':['builtin:echo']}}",
        d.tenants ? d.tenants : "[{'id':'demo','secrets':['s'],'regions':['local']}]",
    };
    char buf[8192];
    size_t o = 0;
    buf[o++] = '{';
    for (size_t i = 0; i < 5; i++) {
        if (!strcmp(vals[i], OMIT))
            continue;
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s'%s':%s", o > 1 ? "," : "", keys[i],
                              vals[i]);
    }
    if (d.extra)
        o += (size_t)snprintf(buf + o, sizeof buf - o, ",%s", d.extra);
    snprintf(buf + o, sizeof buf - o, "}");
    return dq(buf);
}

static config_t *parse_raw(const char *json, size_t len, char *err, size_t errlen)
{
    return config_parse(json, len, "/base", err, errlen);
}

static config_t *parse_ok(doc_t d)
{
    char *json = render(d), err[512];
    config_t *cfg = parse_raw(json, strlen(json), err, sizeof err);
    cr_assert_not_null(cfg, "%s\nin: %s", err, json);
    free(json);
    return cfg;
}

/* Parses a document that must fail with want somewhere in the message. */
static void expect_raw_error(const char *json, size_t len, const char *want)
{
    char err[512];
    memset(err, 'X', sizeof err);
    config_t *cfg = parse_raw(json, len, err, sizeof err);
    cr_assert_null(cfg, "accepted: %.*s", (int)(len < 300 ? len : 300), json);
    cr_assert_not_null(memchr(err, '\0', sizeof err), "err is not NUL-terminated");
    cr_assert_not_null(strstr(err, want), "error\n  %s\ndoes not contain\n  %s", err, want);
    cr_assert_eq(err[0], '$', "every parse error starts with a JSON path: %s", err);
}

static void expect_error(doc_t d, const char *want)
{
    char *json = render(d);
    expect_raw_error(json, strlen(json), want);
    free(json);
}

/* A scratch directory (mkdtemp under /tmp) for config and store files;
 * remove_tree deletes it. */
static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/sluice-cfg-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void remove_tree(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

#endif
