/*
 * sluicectl — the admin API's command line (docs/admin.md).
 *
 * Each change is a read (GET, for the tenant's revision) and then a PATCH
 * carrying that revision, so a concurrent change by another admin makes the
 * PATCH fail with 409 (exit 4) rather than be overwritten. HTTP is libcurl's
 * easy interface; JSON is parsed with the gateway's yajl-based tree and
 * written with yajl_gen. "check" links the gateway's config loader.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "../../gateway/config.h"
#include "../../gateway/json.h"
#include "../../gateway/tls.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_CONFLICT = 4 };

#define REPLY_MAX (4u * 1024u * 1024u)
#define TOKEN_MAX 4096u

static void usage(FILE *out)
{
    fputs("usage: sluicectl [--admin URL] [--token T | --token-file F] [--json] COMMAND\n"
          "\n"
          "commands:\n"
          "  tenant show [ID]                  list the tenants (or one) and their state\n"
          "  tenant enable ID --region R       switch the tenant on in region R\n"
          "  tenant disable ID --region R      switch it off (its live tunnels there close)\n"
          "  tenant kinds ID sfu,turn          the kinds of tunnel it may open\n"
          "  tenant limits ID KEY=VALUE...     change limits (docs/configuration.md names)\n"
          "  tenant secret add ID SECRET       add a secret (rotation: add, move, retire)\n"
          "  tenant secret retire ID SECRET    retire one\n"
          "  reload                            make the gateway re-read its config file\n"
          "  check FILE                        validate a sluiced config (and its TLS files)\n"
          "\n"
          "options:\n"
          "  --admin URL        the admin API (default $SLUICE_ADMIN or http://127.0.0.1:9443)\n"
          "  --token T          bearer token (default $SLUICE_ADMIN_TOKEN)\n"
          "  --token-file F     read the token from F (first line)\n"
          "  --json             print the API's JSON answer as is\n"
          "  -h, --help         this text\n"
          "\n"
          "exit status: 0 ok; 1 refused (4xx/5xx from the API other than 409, or an invalid\n"
          "config for check); 2 bad usage; 3 the admin API could not be reached; 4 revision\n"
          "conflict (someone changed the tenant meanwhile: run the command again).\n",
          out);
}

typedef struct ctl {
    const char *admin;
    char token[TOKEN_MAX];
    int json;
} ctl_t;

typedef struct reply {
    long status;
    char *body;
    size_t len;
} reply_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    reply_t *r = arg;
    size_t len = size * n;
    if (r->len + len > REPLY_MAX)
        return 0;
    char *b = realloc(r->body, r->len + len + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, len);
    r->body = b;
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

/* One request. Returns 0 with r filled, or EXIT_UNREACHABLE (message printed). */
static int call(const ctl_t *c, const char *method, const char *path, const char *body,
                reply_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    if (!h)
        return EXIT_UNREACHABLE;
    size_t ulen = strlen(c->admin) + strlen(path) + 1;
    char *url = malloc(ulen);
    char auth[TOKEN_MAX + 32];
    snprintf(url, ulen, "%s%s", c->admin, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
    struct curl_slist *hd = curl_slist_append(NULL, auth);
    hd = curl_slist_append(hd, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    free(url);
    if (rc != CURLE_OK) {
        fprintf(stderr, "sluicectl: %s: %s\n", c->admin, curl_easy_strerror(rc));
        free(r->body);
        r->body = NULL;
        return EXIT_UNREACHABLE;
    }
    return 0;
}

/* Maps an answer to an exit code, printing the API's error when it failed. */
static int outcome(const reply_t *r)
{
    if (r->status >= 200 && r->status < 300)
        return EXIT_OK;
    char msg[256];
    json_t *v = r->body ? json_parse(r->body, r->len, msg, sizeof msg) : NULL;
    const json_t *e = json_get(v, "error");
    fprintf(stderr, "sluicectl: %ld: %s\n", r->status,
            e && e->type == JSON_STRING ? e->str : (r->body ? r->body : "no answer"));
    json_free(v);
    return r->status == 409 ? EXIT_CONFLICT : EXIT_REFUSED;
}

static void print_list(const json_t *arr)
{
    for (size_t i = 0; arr && arr->type == JSON_ARRAY && i < arr->n; i++) {
        fputs(i ? "," : "", stdout);
        if (arr->items[i]->type == JSON_STRING)
            fputs(arr->items[i]->str, stdout);
    }
}

static void print_tenant(const json_t *t)
{
    const json_t *id = json_get(t, "id"), *here = json_get(t, "enabled_here");
    const json_t *sec = json_get(t, "secrets"), *rev = json_get(t, "revision");
    printf("%s enabled_here=%s regions=", id && id->type == JSON_STRING ? id->str : "?",
           here && here->boolean ? "yes" : "no");
    print_list(json_get(t, "regions"));
    fputs(" kinds=", stdout);
    print_list(json_get(t, "kinds"));
    printf(" secrets=%s revision=%s", sec && sec->str ? sec->str : "?",
           rev && rev->str ? rev->str : "?");
    const json_t *l = json_get(t, "limits");
    for (size_t i = 0; l && l->type == JSON_OBJECT && i < l->n; i++)
        if (l->members[i].val->str && strcmp(l->members[i].val->str, "0") != 0)
            printf(" %s=%s", l->members[i].key, l->members[i].val->str);
    putchar('\n');
}

/* One request whose answer is printed: the API's JSON as is with --json,
 * else print(answer, arg) on the parsed answer. Returns the exit code. */
static int request_print(const ctl_t *c, const char *method, const char *path, const char *body,
                         void (*print)(const json_t *, const void *), const void *arg)
{
    reply_t r;
    int rc = call(c, method, path, body, &r);
    if (rc)
        return rc;
    rc = outcome(&r);
    if (rc == EXIT_OK && c->json) {
        fwrite(r.body, 1, r.len, stdout);
        putchar('\n');
    } else if (rc == EXIT_OK) {
        char msg[256];
        json_t *v = json_parse(r.body, r.len, msg, sizeof msg);
        print(v, arg);
        json_free(v);
    }
    free(r.body);
    return rc;
}

/* GET /v1/tenants[/id]: one tenant, or the list. */
static void print_show(const json_t *v, const void *id)
{
    const json_t *list = id ? NULL : json_get(v, "tenants");
    if (id)
        print_tenant(v);
    for (size_t i = 0; list && list->type == JSON_ARRAY && i < list->n; i++)
        print_tenant(list->items[i]);
}

static int show(const ctl_t *c, const char *id)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/tenants%s%s", id ? "/" : "", id ? id : "");
    return request_print(c, "GET", path, NULL, print_show, id);
}

typedef enum { P_STR, P_KINDS, P_LIMITS } ptype_t;

/* Reads the tenant's revision, then PATCHes {"revision": N, key: value}. */
static int change(const ctl_t *c, const char *id, const char *key, ptype_t type, char **vals,
                  int nvals)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/tenants/%s", id);
    reply_t r;
    int rc = call(c, "GET", path, NULL, &r);
    if (rc)
        return rc;
    if ((rc = outcome(&r))) {
        free(r.body);
        return rc;
    }
    char msg[256];
    json_t *v = json_parse(r.body, r.len, msg, sizeof msg);
    const json_t *rev = json_get(v, "revision");
    char revision[32];
    snprintf(revision, sizeof revision, "%s", rev && rev->type == JSON_NUMBER ? rev->str : "0");
    json_free(v);
    free(r.body);

    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"revision", 8);
    yajl_gen_number(g, revision, strlen(revision));
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    if (type == P_STR) {
        yajl_gen_string(g, (const unsigned char *)vals[0], strlen(vals[0]));
    } else if (type == P_KINDS) {
        yajl_gen_array_open(g);
        for (char *s = vals[0], *end; s && *s; s = end ? end + 1 : NULL) {
            end = strchr(s, ',');
            yajl_gen_string(g, (const unsigned char *)s, end ? (size_t)(end - s) : strlen(s));
        }
        yajl_gen_array_close(g);
    } else {
        yajl_gen_map_open(g);
        for (int i = 0; i < nvals; i++) {
            char *eq = strchr(vals[i], '=');
            char *end = NULL;
            errno = 0;
            unsigned long long n = eq ? strtoull(eq + 1, &end, 10) : 0;
            if (!eq || end == eq + 1 || *end || errno || eq[1] == '-') {
                fprintf(stderr, "sluicectl: %s: expected KEY=INTEGER\n", vals[i]);
                yajl_gen_free(g);
                return EXIT_USAGE;
            }
            yajl_gen_string(g, (const unsigned char *)vals[i], (size_t)(eq - vals[i]));
            char num[32];
            snprintf(num, sizeof num, "%llu", n);
            yajl_gen_number(g, num, strlen(num));
        }
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    char *body = json_strdup(buf, len);
    yajl_gen_free(g);
    rc = call(c, "PATCH", path, body, &r);
    free(body);
    if (rc)
        return rc;
    rc = outcome(&r);
    if (rc == EXIT_OK) {
        if (c->json) {
            fwrite(r.body, 1, r.len, stdout);
            putchar('\n');
        } else {
            json_t *t = json_parse(r.body, r.len, msg, sizeof msg);
            print_tenant(t);
            json_free(t);
        }
    }
    free(r.body);
    return rc;
}

static int check(const char *path)
{
    char err[1024];
    config_t *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "sluicectl: %s\n", err);
        return EXIT_REFUSED;
    }
    SSL_CTX *ctx = tls_server_ctx(cfg->cert_file, cfg->key_file, err, sizeof err);
    config_unref(cfg);
    if (!ctx) {
        fprintf(stderr, "sluicectl: %s: %s\n", path, err);
        return EXIT_REFUSED;
    }
    SSL_CTX_free(ctx);
    puts("config ok");
    return EXIT_OK;
}

static void print_reload(const json_t *v, const void *arg)
{
    const json_t *region = json_get(v, "region"), *n = json_get(v, "tenants");
    printf("reloaded: region %s, %s tenants\n",
           region && region->type == JSON_STRING ? region->str : "?",
           n && n->type == JSON_NUMBER ? n->str : "?");
}

/* POST /v1/reload: the gateway re-reads its config file (as on SIGHUP). */
static int reload(const ctl_t *c)
{
    return request_print(c, "POST", "/v1/reload", "", print_reload, NULL);
}

static int read_token(const char *file, char *out, size_t cap)
{
    FILE *f = fopen(file, "r");
    if (!f || !fgets(out, (int)cap, f)) {
        fprintf(stderr, "sluicectl: %s: %s\n", file, f ? "empty" : strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    ctl_t c = {.admin = getenv("SLUICE_ADMIN")};
    const char *region = NULL, *env = getenv("SLUICE_ADMIN_TOKEN");
    if (!c.admin)
        c.admin = "http://127.0.0.1:9443";
    if (env)
        snprintf(c.token, sizeof c.token, "%s", env);
    static const struct option opts[] = {
        {"admin", required_argument, NULL, 'a'},      {"token", required_argument, NULL, 't'},
        {"token-file", required_argument, NULL, 'f'}, {"json", no_argument, NULL, 'j'},
        {"region", required_argument, NULL, 'r'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* GNU getopt permutes: options may follow the command
     * ("tenant enable acme --region eu"); "--" ends them. */
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'a': c.admin = optarg; break;
        case 't': snprintf(c.token, sizeof c.token, "%s", optarg); break;
        case 'f':
            if (read_token(optarg, c.token, sizeof c.token))
                return EXIT_USAGE;
            break;
        case 'j': c.json = 1; break;
        case 'r': region = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    char **args = argv + optind;
    int n = argc - optind;
#define IS(i, s) (n > (i) && !strcmp(args[i], s))
    if (IS(0, "check") && n == 2)
        return check(args[1]);
    if (IS(0, "reload") && n == 1) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int rc = reload(&c);
        curl_global_cleanup();
        return rc;
    }
    if (!IS(0, "tenant") || n < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    int rc = EXIT_USAGE;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (IS(1, "show") && n <= 3)
        rc = show(&c, n == 3 ? args[2] : NULL);
    else if ((IS(1, "enable") || IS(1, "disable")) && n == 3 && region)
        rc = change(&c, args[2], IS(1, "enable") ? "enable_region" : "disable_region", P_STR,
                    (char **)&region, 1);
    else if (IS(1, "kinds") && n == 4)
        rc = change(&c, args[2], "kinds", P_KINDS, &args[3], 1);
    else if (IS(1, "limits") && n >= 4)
        rc = change(&c, args[2], "limits", P_LIMITS, &args[3], n - 3);
    else if (IS(1, "secret") && n == 5 && (IS(2, "add") || IS(2, "retire")))
        rc = change(&c, args[3], IS(2, "add") ? "add_secret" : "retire_secret", P_STR, &args[4],
                    1);
    else
        usage(stderr);
#undef IS
    curl_global_cleanup();
    return rc;
}
