/*
 * test_ops_files.c — the operators' files in conf/ against the code:
 *
 * - every metric the alert rules (conf/prometheus/sluice-alerts.yml) and the
 *   Grafana dashboard (conf/grafana/sluice-dashboard.json) name is on a
 *   /metrics page rendered by gateway/metrics.c through the in-memory
 *   harness, and so is every label value they match exactly (a renamed
 *   metric or reason breaks this test, not a production alert);
 * - `promtool check rules` accepts the rules and `promtool test rules` runs
 *   their unit tests (sluice-alerts.test.yml), which test every alert;
 * - the dashboard is JSON with the fields Grafana 9/10 imports, templated by
 *   instance and tenant, and every query in it is valid PromQL (promtool
 *   checks each as a recording rule);
 * - `haproxy -c` accepts conf/haproxy/sni-443.cfg, a TCP-mode SNI router;
 * - sluice_ready, which the "not ready" alert reads, follows /readyz.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../../gateway/backend.h"
#include "../../gateway/json.h"
#include "../../gateway/metrics.h"
#include "harness.c"

#define RULES "conf/prometheus/sluice-alerts.yml"
#define RULES_TEST "conf/prometheus/sluice-alerts.test.yml"
#define DASHBOARD "conf/grafana/sluice-dashboard.json"
#define HAPROXY "conf/haproxy/sni-443.cfg"
#define FILE_MAX (1u << 20)
#define OUT_MAX 16384

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'o',  'p',  's'};

static const metrics_info_t info = {.version = "test", .start_time_s = 1764645000,
                                    .store_type = "etcd", .store_up = 1};

/* The repository root, from this file's path as the compiler saw it. */
static void repo_path(char *out, size_t cap, const char *rel)
{
    const char *me = __FILE__, *tail = strstr(me, "tests/gateway/test_ops_files.c");
    int n = tail ? (int)(tail - me) : 0;
    snprintf(out, cap, "%.*s%s", n, me, rel);
}

/* The whole file at rel (repository-relative), NUL-terminated; free it. */
static char *slurp(const char *rel)
{
    char path[4096];
    repo_path(path, sizeof path, rel);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    char *buf = malloc(FILE_MAX + 1);
    cr_assert_not_null(buf);
    size_t n = fread(buf, 1, FILE_MAX + 1, f);
    fclose(f);
    cr_assert_leq(n, FILE_MAX, "%s is over %u bytes", path, FILE_MAX);
    buf[n] = '\0';
    return buf;
}

/* Runs cmd with sh, its stdout and stderr into out (truncated to cap).
 * Returns its exit status, or -1 when it did not exit normally. */
static int run(const char *cmd, char *out, size_t cap)
{
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t n = 0, r;
    char sink[4096];
    while ((r = fread(n + 1 < cap ? out + n : sink, 1,
                      n + 1 < cap ? cap - 1 - n : sizeof sink, p)) > 0)
        if (n + 1 < cap)
            n += r;
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Fills the backend health table from the harness's config, as
 * server_start does (the harness leaves it empty). Its first probes go to
 * the harness's backend socket: relay packets before this. */
static void add_backends(harness_t *h)
{
    char err[256];
    cr_assert_eq(backend_table_init(&h->srv.backends, h->loop, h->cfg, NULL, 0, err, sizeof err),
                 0, "%s", err);
    cr_assert_gt(h->srv.backends.n, 0);
}

static void init_with_backends(harness_t *h)
{
    h_init(h, "", 0);
    add_backends(h);
}

static void fini_with_backends(harness_t *h)
{
    backend_table_dispose(&h->srv.backends);
    h_fini(h);
}

/* A /metrics page with one tenant's tunnel, a relayed packet and a backend,
 * so every family has its series. */
static char *render_page(void)
{
    harness_t h;
    h_init(&h, "", 0);
    int s = h_open(&h, "/v1/tunnel/acme/sfu");
    cr_assert_eq(h.streams[s].status, 200);
    h_relay_up(&h, s, rtp, sizeof rtp);
    add_backends(&h);
    prom_buf_t b = {0};
    cr_assert_eq(metrics_render(&h.srv, &info, &b), 0);
    fini_with_backends(&h);
    return b.p;
}

static int ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == ':';
}

/* 1 when a sample line of the page is named exactly name (n bytes). */
static int page_has_metric(const char *page, const char *name, size_t n)
{
    for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && (p[n] == '{' || p[n] == ' '))
            return 1;
    return 0;
}

/* 1 when a sample of name has the label pair label="value". */
static int page_has_label(const char *page, const char *name, size_t n, const char *pair)
{
    size_t plen = strlen(pair);
    for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) || p[n] != '{')
            continue;
        const char *end = strchr(p + n, '}');
        for (const char *q = p + n; end && q < end; q++)
            if ((*q == '{' || *q == ',') && (size_t)(end - q - 1) >= plen &&
                !strncmp(q + 1, pair, plen))
                return 1;
    }
    return 0;
}

/* Labels Prometheus adds at scrape time, and le, which promtool checks. */
static int scrape_label(const char *l, size_t n)
{
    return (n == 3 && !strncmp(l, "job", 3)) || (n == 8 && !strncmp(l, "instance", 8)) ||
           (n == 2 && !strncmp(l, "le", 2));
}

/* Checks the matchers of a selector at s ('{' ... '}') of metric name:
 * every label="v" and every alternative of label=~"a|b" (plain words only)
 * must be on the page. Returns the end of the selector. */
static const char *check_matchers(const char *page, const char *name, size_t n, const char *s,
                                  const char *where)
{
    const char *end = strchr(s, '}');
    cr_assert_not_null(end, "%s: unclosed selector after %.*s", where, (int)n, name);
    const char *p = s + 1;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        const char *l = p;
        while (p < end && ident_char(*p))
            p++;
        size_t llen = (size_t)(p - l);
        const char *op = p;
        while (p < end && *p != '"')
            p++;
        if (p >= end)
            break;
        const char *v = ++p;
        while (p < end && *p != '"')
            p++;
        size_t vlen = (size_t)(p - v);
        p++;
        int eq = op[0] == '=' && op[1] == '"', re = op[0] == '=' && op[1] == '~';
        if ((!eq && !re) || scrape_label(l, llen))
            continue;
        /* Each alternative of a regex of plain words, or the one value. */
        for (const char *a = v; a < v + vlen;) {
            const char *bar = memchr(a, '|', (size_t)(v + vlen - a));
            size_t alen = (size_t)((bar ? bar : v + vlen) - a);
            int plain = alen > 0;
            for (size_t i = 0; i < alen; i++)
                plain &= isalnum((unsigned char)a[i]) || a[i] == '_';
            cr_assert(plain || re, "%s: %.*s{%.*s=\"%.*s\"}: not a plain value", where,
                      (int)n, name, (int)llen, l, (int)alen, a);
            if (plain) {
                char pair[256];
                snprintf(pair, sizeof pair, "%.*s=\"%.*s\"", (int)llen, l, (int)alen, a);
                cr_assert(page_has_label(page, name, n, pair),
                          "%s uses %.*s{%s}, which /metrics does not have", where, (int)n, name,
                          pair);
            }
            a += alen + 1;
        }
    }
    return end;
}

/* Checks every metric (a word starting sluice_ or process_) that text names,
 * and its matchers, against the page. Returns how many names it checked. */
static int check_refs(const char *page, const char *text, const char *where)
{
    int count = 0;
    for (const char *p = text; *p; p++) {
        if ((p > text && ident_char(p[-1])) ||
            (strncmp(p, "sluice_", 7) && strncmp(p, "process_", 8)))
            continue;
        const char *name = p;
        while (ident_char(*p))
            p++;
        size_t n = (size_t)(p - name);
        cr_assert(page_has_metric(page, name, n), "%s uses %.*s, which /metrics does not have",
                  where, (int)n, name);
        count++;
        if (*p == '{')
            p = check_matchers(page, name, n, p, where);
        if (!*p)
            break;
    }
    return count;
}

Test(ops_files, every_metric_the_alert_rules_use_is_on_the_page)
{
    char *page = render_page();
    char *rules = slurp(RULES);
    int n = check_refs(page, rules, RULES);
    cr_assert_geq(n, 14, "only %d metric names found in " RULES, n);
    /* The lookups it rests on say no to a misspelt name or reason. */
    cr_assert_not(page_has_metric(page, "sluice_drops_totl", 17));
    cr_assert_not(page_has_label(page, "sluice_drops_total", 18, "reason=\"media_gone\""));
    cr_assert(page_has_label(page, "sluice_drops_total", 18, "reason=\"media_evicted\""));
    free(rules);
    free(page);
}

static int file_has(const char *text, const char *s)
{
    return strstr(text, s) != NULL;
}

/* Runs `tool 'rel'` on a repository file: it must exit 0 and say want. */
static void tool_accepts(const char *tool, const char *rel, const char *want)
{
    char path[4096], cmd[8192], out[OUT_MAX];
    repo_path(path, sizeof path, rel);
    snprintf(cmd, sizeof cmd, "%s '%s'", tool, path);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s:\n%s", cmd, out);
    cr_assert(file_has(out, want), "%s:\n%s", cmd, out);
}

Test(ops_files, promtool_checks_the_rules_and_runs_their_unit_tests, .timeout = 60)
{
    tool_accepts("promtool check rules", RULES, "SUCCESS: 12 rules found");
    tool_accepts("promtool test rules", RULES_TEST, "SUCCESS");

    /* Every alert of the rules file has a test. */
    char *rules = slurp(RULES), *tests = slurp(RULES_TEST);
    int alerts = 0;
    for (const char *p = strstr(rules, "- alert: "); p; p = strstr(p, "- alert: ")) {
        p += 9;
        size_t n = strcspn(p, " \n");
        char want[128];
        snprintf(want, sizeof want, "alertname: %.*s\n", (int)n, p);
        cr_assert(file_has(tests, want), "%.*s has no test in " RULES_TEST, (int)n, p);
        alerts++;
    }
    cr_assert_eq(alerts, 12);
    free(rules);
    free(tests);
}

/* The member key of obj, which must have type t. */
static const json_t *member(const json_t *obj, const char *key, enum json_type t,
                            const char *where)
{
    const json_t *v = json_get(obj, key);
    cr_assert(v && v->type == t, "%s: no %s of the right type", where, key);
    return v;
}

/* Replaces every from in s by to, into out. */
static void replace_all(const char *s, const char *from, const char *to, char *out, size_t cap)
{
    size_t flen = strlen(from), n = 0;
    while (*s && n + 1 < cap) {
        if (!strncmp(s, from, flen)) {
            n += (size_t)snprintf(out + n, cap - n, "%s", to);
            s += flen;
        } else {
            out[n++] = *s++;
        }
    }
    out[n < cap ? n : cap - 1] = '\0';
}

Test(ops_files, the_dashboard_is_grafana_json_and_its_queries_are_on_the_page, .timeout = 60)
{
    char *page = render_page();
    char *text = slurp(DASHBOARD), msg[256];
    json_t *d = json_parse(text, strlen(text), msg, sizeof msg);
    cr_assert_not_null(d, DASHBOARD ": %s", msg);
    cr_assert_eq(d->type, JSON_OBJECT);
    member(d, "title", JSON_STRING, DASHBOARD);
    member(d, "uid", JSON_STRING, DASHBOARD);
    const json_t *sv = member(d, "schemaVersion", JSON_NUMBER, DASHBOARD);
    /* Schema 36 is Grafana 9.0's; later versions migrate it on load. */
    cr_assert_eq(atoi(sv->str), 36, "schemaVersion %s", sv->str);
    member(d, "time", JSON_OBJECT, DASHBOARD);

    /* Templated by data source, instance and tenant. */
    const json_t *vars = member(member(d, "templating", JSON_OBJECT, DASHBOARD), "list",
                                JSON_ARRAY, "templating");
    int have_instance = 0, have_tenant = 0;
    for (size_t i = 0; i < vars->n; i++) {
        const json_t *name = member(vars->items[i], "name", JSON_STRING, "templating.list");
        have_instance |= !strcmp(name->str, "instance");
        have_tenant |= !strcmp(name->str, "tenant");
        const json_t *def = json_get(vars->items[i], "definition");
        if (def && def->type == JSON_STRING)
            check_refs(page, def->str, "a dashboard variable");
    }
    cr_assert(have_instance && have_tenant,
              "the dashboard is not templated by instance and tenant");

    /* Every query: its metrics on the page, and valid PromQL once Grafana's
     * variables are filled in (promtool checks it as a recording rule). */
    char dir[] = "/tmp/sluice-ops-XXXXXX", rules[4096];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(rules, sizeof rules, "%s/dashboard-queries.yml", dir);
    FILE *f = fopen(rules, "w");
    cr_assert_not_null(f);
    fputs("groups:\n  - name: dashboard\n    rules:\n", f);
    const json_t *panels = member(d, "panels", JSON_ARRAY, DASHBOARD);
    int queries = 0, graphs = 0;
    char all[65536] = "";
    size_t alen = 0;
    for (size_t i = 0; i < panels->n; i++) {
        const json_t *p = panels->items[i];
        const json_t *type = member(p, "type", JSON_STRING, "a panel");
        const json_t *title = member(p, "title", JSON_STRING, "a panel");
        member(p, "gridPos", JSON_OBJECT, title->str);
        if (!strcmp(type->str, "row"))
            continue;
        graphs++;
        const json_t *targets = member(p, "targets", JSON_ARRAY, title->str);
        cr_assert_gt(targets->n, 0, "panel %s has no query", title->str);
        for (size_t k = 0; k < targets->n; k++) {
            const json_t *expr = member(targets->items[k], "expr", JSON_STRING, title->str);
            /* Prometheus's own up{} is the one series not on our page. */
            cr_assert(check_refs(page, expr->str, title->str) > 0 ||
                          strstr(expr->str, "up{job=\"sluiced\""),
                      "panel %s: a query names no sluice metric", title->str);
            char a[4096], b[4096], c[4096];
            replace_all(expr->str, "$__rate_interval", "5m", a, sizeof a);
            replace_all(a, "$instance", ".+", b, sizeof b);
            replace_all(b, "$tenant", ".+", c, sizeof c);
            fprintf(f, "      - record: dashboard:query_%d\n        expr: |\n          %s\n",
                    ++queries, c);
            alen += (size_t)snprintf(all + alen, alen < sizeof all ? sizeof all - alen : 0,
                                     "%s\n", expr->str);
            cr_assert_lt(alen, sizeof all);
        }
    }
    fclose(f);
    cr_assert_geq(graphs, 20, "only %d panels", graphs);
    char cmd[8192], out[OUT_MAX];
    snprintf(cmd, sizeof cmd, "promtool check rules '%s'", rules);
    int rc = run(cmd, out, sizeof out);
    remove(rules);
    remove(dir);
    cr_assert_eq(rc, 0, "a dashboard query is not valid PromQL:\n%s", out);

    /* The panels the operations docs promise. */
    const char *topics[] = {"sluice_packets_total",        "sluice_bytes_total",
                            "sluice_drops_total",          "sluice_packet_residence_seconds_bucket",
                            "sluice_client_rtt_seconds_bucket", "sluice_connections_open",
                            "sluice_tunnels_open{",        "sluice_backend_up",
                            "sluice_config_reloads_total", "sluice_tenant_store_up"};
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++)
        cr_assert(file_has(all, topics[i]), "no panel shows %s", topics[i]);
    json_free(d);
    free(text);
    free(page);
}

Test(ops_files, haproxy_accepts_the_sni_router, .timeout = 30)
{
    tool_accepts("haproxy -c -f", HAPROXY, "Configuration file is valid");
    /* TLS passes through: routed by the ClientHello's SNI, never terminated,
     * so the client's ALPN h2 reaches sluiced. */
    char *cfg = slurp(HAPROXY);
    int tcp = 0, sni = 0;
    for (char *line = strtok(cfg, "\n"); line; line = strtok(NULL, "\n")) {
        line += strspn(line, " ");
        if (*line == '#')
            continue;
        tcp |= !strcmp(line, "mode tcp");
        sni |= strstr(line, "use_backend sluice if { req.ssl_sni") != NULL;
        cr_assert_null(strstr(line, "mode http"), "%s", line);
        cr_assert(strncmp(line, "bind ", 5) || !strstr(line, " ssl"), "TLS ends at: %s", line);
    }
    cr_assert(tcp && sni, "not a TCP-mode SNI router");
    free(cfg);
}

/* 1 when the page has the unlabelled sample "name value". */
static int page_says(const char *page, const char *line)
{
    char want[128];
    snprintf(want, sizeof want, "\n%s\n", line);
    return strstr(page, want) != NULL;
}

Test(ops_files, sluice_ready_follows_readyz)
{
    harness_t h;
    init_with_backends(&h);
    prom_buf_t b = {0};
    cr_assert_eq(metrics_render(&h.srv, &info, &b), 0);
    cr_assert(page_says(b.p, "sluice_ready 1"));
    prom_buf_free(&b);

    /* Every backend of the region down: /readyz says 503, so does the page. */
    for (size_t i = 0; i < h.srv.backends.n; i++)
        h.srv.backends.items[i].up = 0;
    const char *why = NULL;
    cr_assert_eq(server_ready(&h.srv, &why), 0);
    b = (prom_buf_t){0};
    cr_assert_eq(metrics_render(&h.srv, &info, &b), 0);
    cr_assert(page_says(b.p, "sluice_ready 0"));
    prom_buf_free(&b);
    for (size_t i = 0; i < h.srv.backends.n; i++)
        h.srv.backends.items[i].up = 1;

    h.srv.draining = 1; /* as after SIGTERM */
    b = (prom_buf_t){0};
    cr_assert_eq(metrics_render(&h.srv, &info, &b), 0);
    cr_assert(page_says(b.p, "sluice_ready 0"));
    prom_buf_free(&b);
    h.srv.draining = 0;
    fini_with_backends(&h);
}
