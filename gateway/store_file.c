/* store_file.c — the tenant table in a JSON file (see store.h). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define STORE_FILE_MAX (4u * 1024u * 1024u) /* as config_tenant.c's TENANTS_FILE_MAX */

typedef struct store_file {
    store_t base;
    char *path;
} store_file_t;

static int file_read_all(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return STORE_ERROR;
    }
    char *buf = malloc(STORE_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, STORE_FILE_MAX, fp) : 0;
    int bad = !buf || ferror(fp) || n == STORE_FILE_MAX;
    fclose(fp);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read it (or larger than 4 MiB)", path);
        return STORE_ERROR;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return STORE_OK;
}

static uint64_t doc_revision(const json_t *root)
{
    const json_t *r = json_get(root, "revision");
    return r && r->type == JSON_NUMBER ? strtoull(r->str, NULL, 10) : 0;
}

static int sf_read(store_t *st, char **doc, size_t *len, uint64_t *revision, char *err,
                   size_t errlen)
{
    store_file_t *sf = (store_file_t *)st;
    if (file_read_all(sf->path, doc, len, err, errlen))
        return STORE_ERROR;
    char msg[256];
    json_t *root = json_parse(*doc, *len, msg, sizeof msg);
    if (!root || root->type != JSON_OBJECT) {
        snprintf(err, errlen, "%s: %s", sf->path, root ? "not a JSON object" : msg);
        json_free(root);
        free(*doc);
        *doc = NULL;
        return STORE_ERROR;
    }
    *revision = doc_revision(root);
    json_free(root);
    return STORE_OK;
}

/* temp file + fsync + rename + fsync of the directory: the rename is atomic
 * (POSIX rename(2)), the first fsync makes the new bytes durable before they
 * get the name, the second makes the new name durable. */
static int durable_replace(const char *path, const char *data, size_t len, char *err,
                           size_t errlen)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    char *dir = malloc(plen + 2);
    int fd = -1, rc = -1;
    if (!tmp || !dir) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    struct stat st; /* mkstemp makes 0600: keep the file's own mode */
    if (stat(path, &st) == 0)
        fchmod(fd, st.st_mode & 07777);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
            goto out_unlink;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        fd = -1;
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "rename %s: %s", path, strerror(errno));
        goto out_unlink;
    }
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t dlen = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
    } else {
        strcpy(dir, ".");
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        snprintf(err, errlen, "fsync %s: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        goto out;
    }
    close(dfd);
    rc = 0;
    goto out;
out_unlink:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(dir);
    return rc;
}

static void sf_write(store_t *st, const char *id, const char *tenant_json, size_t tlen,
                     uint64_t expected, store_write_cb cb, void *arg)
{
    store_file_t *sf = (store_file_t *)st;
    char err[512] = "", msg[256];
    char *doc = NULL, *out = NULL;
    size_t len = 0, olen = 0;
    json_t *root = NULL, *tenant = NULL;
    int status = STORE_ERROR;
    uint64_t rev = 0;

    if (file_read_all(sf->path, &doc, &len, err, sizeof err))
        goto done;
    root = json_parse(doc, len, msg, sizeof msg);
    json_t *list = json_get(root, "tenants");
    if (!root || root->type != JSON_OBJECT || !list || list->type != JSON_ARRAY) {
        snprintf(err, sizeof err, "%s: %s", sf->path,
                 root ? "expected an object with a \"tenants\" array" : msg);
        goto done;
    }
    rev = doc_revision(root);
    if (rev != expected) {
        status = STORE_CONFLICT;
        goto done;
    }
    tenant = json_parse(tenant_json, tlen, msg, sizeof msg);
    if (!tenant) {
        snprintf(err, sizeof err, "tenant: %s", msg);
        goto done;
    }
    size_t i = 0;
    for (; i < list->n; i++) {
        const json_t *tid = json_get(list->items[i], "id");
        if (tid && tid->type == JSON_STRING && !strcmp(tid->str, id))
            break;
    }
    if (i < list->n) {
        json_free(list->items[i]);
        list->items[i] = tenant;
    } else if (json_push(list, tenant)) {
        tenant = NULL;
        snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    tenant = NULL;
    char num[24];
    int nl = snprintf(num, sizeof num, "%llu", (unsigned long long)(rev + 1));
    if (json_set(root, "revision", json_new(JSON_NUMBER, num, (size_t)nl)) ||
        !(out = json_write(root, &olen))) {
        snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    if (durable_replace(sf->path, out, olen, err, sizeof err))
        goto done;
    rev++;
    status = STORE_OK;
done:
    json_free(tenant);
    json_free(root);
    free(doc);
    free(out);
    cb(arg, status, rev, status == STORE_ERROR ? err : NULL);
}

static void sf_free(store_t *st)
{
    store_file_t *sf = (store_file_t *)st;
    free(sf->path);
    free(sf);
}

static const store_ops_t store_file_ops = {"file", sf_read, sf_write, sf_free};

store_t *store_file_new(const char *path)
{
    store_file_t *sf = calloc(1, sizeof *sf);
    if (!sf)
        return NULL;
    sf->base.ops = &store_file_ops;
    sf->path = json_strdup(path, strlen(path));
    if (!sf->path) {
        free(sf);
        return NULL;
    }
    return &sf->base;
}
