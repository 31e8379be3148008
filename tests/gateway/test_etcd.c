/*
 * test_etcd.c — gateway/etcd.c, the tenant store in etcd, on a libev loop in
 * this process against a real etcd (tests/support/ts_etcd.c).
 *
 * The watch: open reads the first snapshot; a put reaches the apply callback
 * as a new table whose tenants_revision is the put's revision; a bad tenant
 * is not applied and the last table stays; with etcd stopped the store keeps
 * its table, and once etcd is back it reads and watches again.
 * The admin store (etcd_store_admin): read gives {"revision", "tenants"}; a
 * write with the revision read commits and calls back only after the watch
 * applied it; a stale revision is a conflict decided by etcd's transaction;
 * the tenant's key is the one holding its id, else prefix + id; etcd down
 * is STORE_ERROR with nothing written; validation as the watch does it.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/etcd.h"
#include "../../gateway/json.h"
#include "../support/ts_config.h"
#include "../support/ts_etcd.h"
#include "../support/ts_util.h"

#define PREFIX "/p/"
#define ACME "{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"local\"]}"

static ts_etcd_t etcd;
static struct ev_loop *loop;
static etcd_store_t *store;
static config_t *base, *first;
static char cfg_path[PATH_MAX];

/* What the apply callback saw. */
static int applied;
static config_t *last;
static int refuse; /* the callback fails (as a server_reload that refuses) */

static int on_apply(void *ud, config_t *cfg, char *err, size_t errlen)
{
    (void)ud;
    if (refuse) {
        snprintf(err, errlen, "refused by the test");
        return -1;
    }
    config_unref(last);
    last = config_ref(cfg);
    applied++;
    return 0;
}

static void teardown(void)
{
    etcd_store_free(store);
    store = NULL;
    config_unref(base);
    config_unref(first);
    config_unref(last);
    base = first = last = NULL;
    applied = refuse = 0;
    if (loop)
        ev_loop_destroy(loop);
    loop = NULL;
    ts_etcd_end(&etcd);
}

static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
}

/* Runs the loop until cond() or deadline (20 ms per iteration at most). */
static int run_until(int (*cond)(void *), void *arg, int64_t deadline)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.02, 0.02);
    ev_timer_start(loop, &tick);
    for (int i = 0; i < 100000 && !cond(arg) && ts_now_ms() < deadline; i++)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return cond(arg) ? 0 : -1;
}

static int seen_revision(void *arg)
{
    return etcd_store_revision(store) >= *(int64_t *)arg;
}

/* etcd with acme under PREFIX, a config on it, the store open and started. */
static void open_store(void)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    if (!ts_etcd_available())
        cr_skip_test("no " TS_ETCD_BIN " (Debian package etcd-server)");
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not start");
    int64_t rev = ts_etcd_put(&etcd, PREFIX "acme", ACME, ts_deadline(5000));
    cr_assert_gt(rev, 0);
    char cert[PATH_MAX], key[PATH_MAX], text[3 * PATH_MAX], path[PATH_MAX], err[1024];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(text, sizeof text,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"%s\",\"key\":\"%s\"},"
             "\"region\":\"local\",\"regions\":{\"local\":{\"sfu\":[\"builtin:echo\"]}},"
             "\"tenant_store\":{\"type\":\"etcd\",\"endpoints\":[\"%s\"],"
             "\"prefix\":\"" PREFIX "\"}}",
             cert, key, etcd.url);
    cr_assert_eq(ts_config_write_raw(text, path, sizeof path), 0);
    memcpy(cfg_path, path, sizeof cfg_path);
    base = config_load(path, err, sizeof err);
    cr_assert_not_null(base, "%s", err);
    int code = 0;
    store = etcd_store_open(path, base, &first, &code, err, sizeof err);
    cr_assert_not_null(store, "exit %d: %s", code, err);
    cr_assert_eq(first->ntenants, 1);
    cr_assert_not_null(config_tenant(first, "acme", 4));
    cr_assert_eq(first->tenants_revision, (uint64_t)rev);
    cr_assert_eq(etcd_store_revision(store), rev);
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
    cr_assert_eq(etcd_store_start(store, loop, on_apply, NULL, err, sizeof err), 0, "%s", err);
}

Test(etcd_store, puts_are_applied_bad_tenants_are_not_and_an_outage_is_survived,
     .fini = teardown, .timeout = 90)
{
    open_store();
    /* A put: a new table with the put's revision. */
    int64_t rev = ts_etcd_put(&etcd, PREFIX "beta",
                              "{\"id\":\"beta\",\"secrets\":[\"s2\"],\"regions\":[\"local\"]}",
                              ts_deadline(5000));
    cr_assert_gt(rev, 0);
    cr_assert_eq(run_until(seen_revision, &rev, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(applied, 1, "applied %d", applied);
    cr_assert_eq(last->ntenants, 2);
    cr_assert_not_null(config_tenant(last, "beta", 4));
    cr_assert_eq(last->tenants_revision, (uint64_t)rev);

    /* A bad tenant: seen, not applied; the last table stays. */
    rev = ts_etcd_put(&etcd, PREFIX "bad", "{\"id\":\"bad\",\"secrets\":[],\"regions\":[\"local\"]}",
                      ts_deadline(5000));
    cr_assert_gt(rev, 0);
    cr_assert_eq(run_until(seen_revision, &rev, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(applied, 1, "a table with a bad tenant was applied");
    cr_assert_eq(last->ntenants, 2);
    cr_assert_null(config_tenant(last, "bad", 3));
    int64_t del = ts_etcd_delete(&etcd, PREFIX "bad", ts_deadline(5000));
    cr_assert_eq(run_until(seen_revision, &del, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(applied, 2, "the table without the bad tenant was not applied");

    /* etcd stopped: the store keeps its table (nothing applied, nothing
     * lost); restarted: it reads again, and a put made then is applied. */
    cr_assert_eq(ts_etcd_stop(&etcd, ts_deadline(ts_ms(10000))), 0);
    int64_t never = INT64_MAX;
    run_until(seen_revision, &never, ts_deadline(300)); /* lets the store see the loss */
    cr_assert_eq(applied, 2);
    cr_assert_eq(last->ntenants, 2);
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not restart");
    rev = ts_etcd_put(&etcd, PREFIX "gamma",
                      "{\"id\":\"gamma\",\"secrets\":[\"s3\"],\"regions\":[\"local\"]}",
                      ts_deadline(5000));
    cr_assert_gt(rev, 0);
    /* Back-off is at most 5 s (it doubles from 100 ms), then a re-read. */
    cr_assert_eq(run_until(seen_revision, &rev, ts_deadline(ts_ms(15000))), 0,
                 "the store did not come back after etcd's restart");
    cr_assert_eq(applied, 3);
    cr_assert_not_null(config_tenant(last, "gamma", 5));
}

/* A write's outcome. */
typedef struct wrote {
    int calls, status;
    uint64_t revision;
    int applied_then; /* the apply count when the callback ran */
    char err[512];
} wrote_t;

static void on_written(void *arg, int status, uint64_t revision, const char *err)
{
    wrote_t *w = arg;
    w->calls++;
    w->status = status;
    w->revision = revision;
    w->applied_then = applied;
    snprintf(w->err, sizeof w->err, "%s", err ? err : "");
}

static int called(void *arg)
{
    return ((wrote_t *)arg)->calls > 0;
}

/* The document the admin store reads, parsed; its revision into *rev. */
static json_t *read_doc(store_t *st, uint64_t *rev)
{
    char *doc = NULL, err[256], msg[128];
    size_t len = 0;
    cr_assert_eq(store_read(st, &doc, &len, rev, err, sizeof err), STORE_OK, "%s", err);
    json_t *root = json_parse(doc, len, msg, sizeof msg);
    cr_assert_not_null(root, "%s: %s", msg, doc);
    free(doc);
    return root;
}

static void write_tenant(store_t *st, const char *id, const char *json, uint64_t expected,
                         wrote_t *w)
{
    memset(w, 0, sizeof *w);
    store_write(st, id, json, strlen(json), expected, on_written, w);
    cr_assert_eq(run_until(called, w, ts_deadline(ts_ms(5000))), 0, "no callback");
    cr_assert_eq(w->calls, 1);
}

Test(etcd_store, admin_writes_are_transactions_on_the_key_revision, .fini = teardown,
     .timeout = 90)
{
    open_store();
    /* A tenant whose key is not its id. */
    int64_t r0 = ts_etcd_put(&etcd, PREFIX "odd-key",
                             "{\"id\":\"odd\",\"secrets\":[\"o1\"],\"regions\":[\"local\"]}",
                             ts_deadline(5000));
    cr_assert_eq(run_until(seen_revision, &r0, ts_deadline(ts_ms(5000))), 0);
    store_t *st = etcd_store_admin(store);
    cr_assert_eq(etcd_store_of(st), store);
    cr_assert_str_eq(st->ops->type, "etcd");
    uint64_t rev = 0;
    json_t *doc = read_doc(st, &rev);
    cr_assert_eq(rev, (uint64_t)r0);
    cr_assert_eq(json_get(doc, "tenants")->n, 2);
    json_free(doc);

    /* The same validation as the watch, named by the tenant's path. */
    char err[1024];
    const char *bad = "{\"revision\":1,\"tenants\":[{\"id\":\"x\",\"secrets\":[],"
                      "\"regions\":[\"local\"]}]}";
    cr_assert_null(etcd_store_retenant(store, bad, strlen(bad), err, sizeof err));
    cr_assert(strstr(err, "$.secrets"), "%s", err);

    /* With the revision read: committed, and called back once applied. */
    wrote_t w;
    const char *acme2 = "{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"local\"],"
                        "\"max_ttl\":77}";
    int before = applied;
    write_tenant(st, "acme", acme2, rev, &w);
    cr_assert_eq(w.status, STORE_OK, "%s", w.err);
    cr_assert_gt(w.revision, rev);
    cr_assert_eq(w.applied_then, before + 1, "called back before the watch applied it");
    cr_assert_eq(last->tenants_revision, w.revision);
    cr_assert_eq(config_tenant(last, "acme", 4)->max_ttl, 77);

    /* The same stale revision again: etcd's compare fails, nothing written. */
    const char *acme3 = "{\"id\":\"acme\",\"secrets\":[\"s1\"],\"regions\":[\"local\"],"
                        "\"max_ttl\":88}";
    uint64_t committed = w.revision;
    write_tenant(st, "acme", acme3, rev, &w);
    cr_assert_eq(w.status, STORE_CONFLICT);
    cr_assert_eq(w.revision, committed, "a conflict names the current revision");
    cr_assert_eq(config_tenant(last, "acme", 4)->max_ttl, 77);
    /* A stale revision is a conflict even for another tenant's write
     * only if that tenant changed: odd did not, so this one goes through. */
    write_tenant(st, "odd", "{\"id\":\"odd\",\"secrets\":[\"o2\"],\"regions\":[\"local\"]}", rev,
                 &w);
    cr_assert_eq(w.status, STORE_OK, "%s", w.err);
    doc = read_doc(st, &rev);
    cr_assert_eq(json_get(doc, "tenants")->n, 2, "odd was written to a new key");
    json_free(doc);
    /* A new tenant goes to prefix + id. */
    write_tenant(st, "zeta", "{\"id\":\"zeta\",\"secrets\":[\"z\"],\"regions\":[\"local\"]}", rev,
                 &w);
    cr_assert_eq(w.status, STORE_OK, "%s", w.err);
    cr_assert_not_null(config_tenant(last, "zeta", 4));
    int64_t del = ts_etcd_delete(&etcd, PREFIX "zeta", ts_deadline(5000));
    cr_assert_gt(del, 0, "zeta is not at " PREFIX "zeta");
    cr_assert_eq(run_until(seen_revision, &del, ts_deadline(ts_ms(5000))), 0);
    cr_assert_null(config_tenant(last, "zeta", 4));

    /* etcd down: an error naming it, nothing written, no apply. */
    cr_assert_eq(ts_etcd_stop(&etcd, ts_deadline(ts_ms(10000))), 0);
    doc = read_doc(st, &rev);
    json_free(doc);
    before = applied;
    write_tenant(st, "acme", acme3, rev, &w);
    cr_assert_eq(w.status, STORE_ERROR);
    cr_assert(strstr(w.err, "unreachable, nothing written") && strstr(w.err, etcd.url), "%s",
              w.err);
    cr_assert_eq(applied, before);
    cr_assert_eq(config_tenant(last, "acme", 4)->max_ttl, 77);
}

/* Rewrites the config file with the given region, node and prefix, then
 * reloads; returns etcd_store_reload's result with err. */
static int reload_with(const char *region, const char *node, const char *prefix, char *err,
                       size_t errlen)
{
    char cert[PATH_MAX], key[PATH_MAX], text[3 * PATH_MAX];
    cr_assert_eq(ts_build_path(NULL, "dev/cert.pem", cert, sizeof cert), 0);
    cr_assert_eq(ts_build_path(NULL, "dev/key.pem", key, sizeof key), 0);
    snprintf(text, sizeof text,
             "{\"listen\":[\"127.0.0.1:0\"],\"tls\":{\"cert\":\"%s\",\"key\":\"%s\"},"
             "\"region\":\"%s\",\"regions\":{\"local\":{\"sfu\":[\"builtin:echo\"]},"
             "\"eu\":{\"sfu\":[\"builtin:echo\"]}},%s"
             "\"tenant_store\":{\"type\":\"etcd\",\"endpoints\":[\"%s\"],"
             "\"prefix\":\"%s\"}}",
             cert, key, region, node, etcd.url, prefix);
    cr_assert_eq(ts_write_file(cfg_path, text, strlen(text)), 0);
    return etcd_store_reload(store, cfg_path, err, errlen);
}

/* A reload applies the file with the tenants from etcd, but what was made at
 * start from it (the store, the fleet's registration: region and node id) is
 * refused with the JSON path, nothing changed. */
Test(etcd_store, a_reload_that_would_move_the_store_or_the_node_is_refused, .fini = teardown,
     .timeout = 60)
{
    open_store();
    char err[1024];
    int before = applied;
    cr_assert_eq(reload_with("local", "", PREFIX, err, sizeof err), 0, "%s", err);
    cr_assert_eq(applied, before + 1, "the same file is applied again");
    cr_assert_eq(reload_with("eu", "", PREFIX, err, sizeof err), -1);
    cr_assert(strstr(err, "$.region: changed"), "%s", err);
    cr_assert_eq(reload_with("local", "\"node\":{\"id\":\"other-node\"},", PREFIX, err,
                             sizeof err),
                 -1);
    cr_assert(strstr(err, "$.node.id: changed"), "%s", err);
    cr_assert_eq(reload_with("local", "", "/elsewhere/", err, sizeof err), -1);
    cr_assert(strstr(err, "$.tenant_store: changed"), "%s", err);
    cr_assert_eq(applied, before + 1, "a refused reload applied something");
}
