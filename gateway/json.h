/*
 * json.h — a small JSON tree built from yajl's event parser, for the config.
 *
 * yajl_tree is not used because it NUL-terminates strings without a length
 * (a "\u0000" inside a secret would silently shorten the HMAC key) and
 * reports syntax errors as a multi-line excerpt with no position. This tree
 * keeps every string's length, keeps object members in document order with
 * duplicates (so the validator can refuse them), and bounds nesting depth.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stddef.h>
#include <yajl/yajl_gen.h>

#define JSON_DEPTH_MAX 32u /* the config schema needs 4 */

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct json json_t;

typedef struct json_member {
    char *key; /* NUL-terminated copy; klen excludes the NUL */
    size_t klen;
    json_t *val;
} json_member_t;

struct json {
    enum json_type type;
    int boolean;
    char *str; /* JSON_STRING: decoded bytes; JSON_NUMBER: the literal; NUL-terminated */
    size_t len;
    json_t **items;         /* JSON_ARRAY */
    json_member_t *members; /* JSON_OBJECT, in document order, duplicates kept */
    size_t n, cap;
};

/* Parses one JSON document. Returns the tree (free with json_free), or NULL
 * with a one-line reason such as "invalid JSON: parse error: trailing garbage
 * at line 1, column 9" in msg. */
json_t *json_parse(const char *json, size_t len, char *msg, size_t msglen);

/* Frees a tree; NULL is a no-op. */
void json_free(json_t *v);

/* A NUL-terminated copy of len bytes; NULL when out of memory. */
char *json_strdup(const void *p, size_t len);

/* Editing, for documents the gateway writes (the tenant store's file and the
 * admin API's answers). Functions that take a json_t * val take ownership of
 * it, also on failure; all return 0, or -1 when out of memory. */

/* A new value; s/len is the text of a JSON_STRING or the literal of a
 * JSON_NUMBER, ignored otherwise. NULL when out of memory. */
json_t *json_new(enum json_type type, const void *s, size_t len);
/* The last member named key of an object; NULL when absent or not an object. */
json_t *json_get(const json_t *obj, const char *key);
/* Replaces the member named key (the first one) or appends it. */
int json_set(json_t *obj, const char *key, json_t *val);
/* Removes every member named key. */
void json_remove(json_t *obj, const char *key);
int json_push(json_t *arr, json_t *val);
/* A deep copy; NULL when out of memory. */
json_t *json_copy(const json_t *v);
/* Applies an RFC 7396 merge patch (an object) to target (an object). */
int json_merge_patch(json_t *target, const json_t *patch);
/* Writes v through g; returns 0 or -1. */
int json_gen(yajl_gen g, const json_t *v);
/* v as indented JSON text, NUL-terminated and malloc'd (length in *len when
 * len is not NULL); NULL when out of memory. */
char *json_write(const json_t *v, size_t *len);

#endif
