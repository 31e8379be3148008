/* json.c — see json.h. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

void json_free(json_t *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        if (v->type == JSON_ARRAY) {
            json_free(v->items[i]);
        } else {
            free(v->members[i].key);
            json_free(v->members[i].val);
        }
    }
    free(v->items);
    free(v->members);
    free(v->str);
    free(v);
}

char *json_strdup(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        if (len)
            memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

typedef struct jbuild {
    json_t *root;
    json_t *stack[JSON_DEPTH_MAX]; /* open arrays and objects */
    size_t depth;
    char *key; /* the object key waiting for its value */
    size_t klen;
    const char *fail; /* why we cancelled the parse, when it was us */
} jbuild_t;

static json_t *jb_new(jbuild_t *b, enum json_type type)
{
    json_t *v = calloc(1, sizeof *v);
    if (!v)
        b->fail = "out of memory";
    else
        v->type = type;
    return v;
}

/* Attaches v to the open container (or makes it the root). Takes v. */
static int jb_add(jbuild_t *b, json_t *v)
{
    if (!v)
        return 0;
    if (b->depth == 0) {
        b->root = v; /* yajl allows exactly one top-level value */
        return 1;
    }
    json_t *top = b->stack[b->depth - 1];
    if (top->n == top->cap) {
        size_t cap = top->cap ? top->cap * 2 : 4;
        void *p = top->type == JSON_ARRAY ? realloc(top->items, cap * sizeof *top->items)
                                        : realloc(top->members, cap * sizeof *top->members);
        if (!p) {
            json_free(v);
            b->fail = "out of memory";
            return 0;
        }
        if (top->type == JSON_ARRAY)
            top->items = p;
        else
            top->members = p;
        top->cap = cap;
    }
    if (top->type == JSON_ARRAY) {
        top->items[top->n++] = v;
    } else {
        top->members[top->n++] = (json_member_t){b->key, b->klen, v};
        b->key = NULL;
    }
    return 1;
}

static int jb_scalar(jbuild_t *b, enum json_type type, const void *s, size_t len)
{
    json_t *v = jb_new(b, type);
    if (v && s) {
        v->str = json_strdup(s, len);
        v->len = len;
        if (!v->str) {
            free(v);
            b->fail = "out of memory";
            return 0;
        }
    }
    return jb_add(b, v);
}

static int jb_open(jbuild_t *b, enum json_type type)
{
    if (b->depth == JSON_DEPTH_MAX) {
        b->fail = "JSON nested deeper than 32 levels";
        return 0;
    }
    json_t *v = jb_new(b, type);
    if (!jb_add(b, v))
        return 0;
    b->stack[b->depth++] = v;
    return 1;
}

static int on_null(void *ctx)
{
    return jb_scalar(ctx, JSON_NULL, NULL, 0);
}

static int on_boolean(void *ctx, int val)
{
    jbuild_t *b = ctx;
    json_t *v = jb_new(b, JSON_BOOL);
    if (v)
        v->boolean = val;
    return jb_add(b, v);
}

static int on_number(void *ctx, const char *s, size_t len)
{
    return jb_scalar(ctx, JSON_NUMBER, s, len);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    return jb_scalar(ctx, JSON_STRING, s, len);
}

static int on_start_map(void *ctx)
{
    return jb_open(ctx, JSON_OBJECT);
}

static int on_start_array(void *ctx)
{
    return jb_open(ctx, JSON_ARRAY);
}

static int on_map_key(void *ctx, const unsigned char *key, size_t len)
{
    jbuild_t *b = ctx;
    free(b->key);
    b->key = json_strdup(key, len);
    b->klen = len;
    if (!b->key)
        b->fail = "out of memory";
    return b->key != NULL;
}

static int on_end(void *ctx)
{
    jbuild_t *b = ctx;
    b->depth--;
    return 1;
}

static const yajl_callbacks jb_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

/* Parses one JSON document. On failure returns NULL with a one-line reason
 * (without the "$: " prefix) in msg. */
json_t *json_parse(const char *json, size_t len, char *msg, size_t msglen)
{
    jbuild_t b = {0};
    yajl_handle h = yajl_alloc(&jb_callbacks, NULL, &b);
    if (!h) {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    const unsigned char *in = (const unsigned char *)(json ? json : "");
    yajl_status st = yajl_parse(h, in, len);
    /* yajl counts the offending byte as consumed; point at it. */
    size_t at = yajl_get_bytes_consumed(h);
    at -= at > 0;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        at = len;
    }
    if (st == yajl_status_ok) {
        yajl_free(h);
        return b.root;
    }
    if (b.fail) {
        snprintf(msg, msglen, "%s", b.fail);
    } else {
        /* yajl's terse text is "lexical error: ...\n" or "parse error: ...\n". */
        unsigned char *e = yajl_get_error(h, 0, in, len);
        size_t elen = e ? strlen((char *)e) : 0;
        while (elen && (e[elen - 1] == '\n' || e[elen - 1] == ' ' || e[elen - 1] == '.'))
            elen--;
        unsigned line = 1, col = 1;
        for (size_t i = 0; i < at && i < len; i++) {
            if (in[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(msg, msglen, "invalid JSON: %.*s at line %u, column %u", (int)elen,
                 e ? (char *)e : "syntax error", line, col);
        if (e)
            yajl_free_error(h, e);
    }
    yajl_free(h);
    json_free(b.root);
    free(b.key);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Building and writing trees (the admin API's tenant documents)             */

json_t *json_new(enum json_type type, const void *s, size_t len)
{
    json_t *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->type = type;
    if (type == JSON_STRING || type == JSON_NUMBER) {
        v->str = json_strdup(s, len);
        v->len = len;
        if (!v->str) {
            free(v);
            return NULL;
        }
    }
    return v;
}

json_t *json_get(const json_t *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = obj->n; i-- > 0;)
        if (obj->members[i].klen == klen && !memcmp(obj->members[i].key, key, klen))
            return obj->members[i].val;
    return NULL;
}

static int json_grow(json_t *c)
{
    if (c->n < c->cap)
        return 0;
    size_t cap = c->cap ? c->cap * 2 : 4;
    void *p = c->type == JSON_ARRAY ? realloc(c->items, cap * sizeof *c->items)
                                    : realloc(c->members, cap * sizeof *c->members);
    if (!p)
        return -1;
    if (c->type == JSON_ARRAY)
        c->items = p;
    else
        c->members = p;
    c->cap = cap;
    return 0;
}

int json_set(json_t *obj, const char *key, json_t *val)
{
    if (!val)
        return -1;
    size_t klen = strlen(key);
    for (size_t i = 0; i < obj->n; i++) {
        if (obj->members[i].klen == klen && !memcmp(obj->members[i].key, key, klen)) {
            json_free(obj->members[i].val);
            obj->members[i].val = val;
            return 0;
        }
    }
    char *k = json_strdup(key, klen);
    if (!k || json_grow(obj)) {
        free(k);
        json_free(val);
        return -1;
    }
    obj->members[obj->n++] = (json_member_t){k, klen, val};
    return 0;
}

void json_remove(json_t *obj, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < obj->n; i++) {
        if (obj->members[i].klen == klen && !memcmp(obj->members[i].key, key, klen)) {
            free(obj->members[i].key);
            json_free(obj->members[i].val);
            memmove(&obj->members[i], &obj->members[i + 1],
                    (obj->n - i - 1) * sizeof *obj->members);
            obj->n--;
            i--;
        }
    }
}

int json_push(json_t *arr, json_t *val)
{
    if (!val)
        return -1;
    if (json_grow(arr)) {
        json_free(val);
        return -1;
    }
    arr->items[arr->n++] = val;
    return 0;
}

json_t *json_copy(const json_t *v)
{
    json_t *c = json_new(v->type, v->str, v->len);
    if (!c)
        return NULL;
    c->boolean = v->boolean;
    for (size_t i = 0; i < v->n; i++) {
        int rc = v->type == JSON_ARRAY ? json_push(c, json_copy(v->items[i]))
                                       : json_set(c, v->members[i].key, json_copy(v->members[i].val));
        if (rc) {
            json_free(c);
            return NULL;
        }
    }
    return c;
}

/* RFC 7396 §2: null removes a member, an object merges, anything else replaces. */
int json_merge_patch(json_t *target, const json_t *patch)
{
    for (size_t i = 0; i < patch->n; i++) {
        const json_member_t *m = &patch->members[i];
        if (m->val->type == JSON_NULL) {
            json_remove(target, m->key);
            continue;
        }
        json_t *cur = json_get(target, m->key);
        if (m->val->type == JSON_OBJECT && cur && cur->type == JSON_OBJECT) {
            if (json_merge_patch(cur, m->val))
                return -1;
        } else if (json_set(target, m->key, json_copy(m->val))) {
            return -1;
        }
    }
    return 0;
}

static int json_gen_value(yajl_gen g, const json_t *v)
{
    yajl_gen_status st = yajl_gen_status_ok;
    switch (v->type) {
    case JSON_NULL: st = yajl_gen_null(g); break;
    case JSON_BOOL: st = yajl_gen_bool(g, v->boolean); break;
    case JSON_NUMBER: st = yajl_gen_number(g, v->str, v->len); break;
    case JSON_STRING: st = yajl_gen_string(g, (const unsigned char *)v->str, v->len); break;
    case JSON_ARRAY:
        st = yajl_gen_array_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->n; i++)
            st = json_gen_value(g, v->items[i]) ? yajl_gen_generation_complete
                                                : yajl_gen_status_ok;
        if (st == yajl_gen_status_ok)
            st = yajl_gen_array_close(g);
        break;
    case JSON_OBJECT:
        st = yajl_gen_map_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->n; i++) {
            st = yajl_gen_string(g, (const unsigned char *)v->members[i].key, v->members[i].klen);
            if (st == yajl_gen_status_ok && json_gen_value(g, v->members[i].val))
                st = yajl_gen_generation_complete;
        }
        if (st == yajl_gen_status_ok)
            st = yajl_gen_map_close(g);
        break;
    }
    return st == yajl_gen_status_ok ? 0 : -1;
}

int json_gen(yajl_gen g, const json_t *v)
{
    return json_gen_value(g, v);
}

char *json_write(const json_t *v, size_t *len)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    char *out = NULL;
    if (!g)
        return NULL;
    yajl_gen_config(g, yajl_gen_beautify, 1);
    const unsigned char *buf;
    size_t n;
    if (!json_gen_value(g, v) && yajl_gen_get_buf(g, &buf, &n) == yajl_gen_status_ok) {
        out = json_strdup(buf, n);
        if (out && len)
            *len = n;
    }
    yajl_gen_free(g);
    return out;
}
