/* test_json.c — gateway/json.c: the tree keeps lengths, order and duplicate
 * keys, bounds depth, and reports syntax errors on one line with a position. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../gateway/json.h"

static json_t *parse_ok(const char *text)
{
    char msg[256] = "";
    json_t *v = json_parse(text, strlen(text), msg, sizeof msg);
    cr_assert(v, "%s: %s", text, msg);
    return v;
}

Test(json, scalars_and_containers)
{
    json_t *v = parse_ok("{\"a\":[1,-2.5e3,true,false,null,\"x\"],\"b\":{}}");
    cr_assert_eq(v->type, JSON_OBJECT);
    cr_assert_eq(v->n, 2u);
    cr_assert_str_eq(v->members[0].key, "a");
    json_t *a = v->members[0].val;
    cr_assert_eq(a->type, JSON_ARRAY);
    cr_assert_eq(a->n, 6u);
    cr_assert_eq(a->items[0]->type, JSON_NUMBER);
    cr_assert_str_eq(a->items[1]->str, "-2.5e3", "numbers keep their literal");
    cr_assert_eq(a->items[2]->type, JSON_BOOL);
    cr_assert_eq(a->items[2]->boolean, 1);
    cr_assert_eq(a->items[3]->boolean, 0);
    cr_assert_eq(a->items[4]->type, JSON_NULL);
    cr_assert_str_eq(a->items[5]->str, "x");
    cr_assert_eq(v->members[1].val->type, JSON_OBJECT);
    cr_assert_eq(v->members[1].val->n, 0u);
    json_free(v);
}

Test(json, strings_keep_their_length_through_nul)
{
    json_t *v = parse_ok("[\"a\\u0000b\"]");
    cr_assert_eq(v->items[0]->len, 3u, "an escaped NUL must not shorten the string");
    cr_assert_eq(memcmp(v->items[0]->str, "a\0b", 3), 0);
    json_free(v);
}

Test(json, duplicate_keys_are_kept_in_order)
{
    json_t *v = parse_ok("{\"k\":1,\"j\":2,\"k\":3}");
    cr_assert_eq(v->n, 3u);
    cr_assert_str_eq(v->members[0].key, "k");
    cr_assert_str_eq(v->members[2].key, "k");
    cr_assert_str_eq(v->members[2].val->str, "3");
    json_free(v);
}

Test(json, depth_is_bounded)
{
    char deep[2 * (JSON_DEPTH_MAX + 1) + 1];
    for (size_t i = 0; i <= JSON_DEPTH_MAX; i++) {
        deep[i] = '[';
        deep[2 * (JSON_DEPTH_MAX + 1) - 1 - i] = ']';
    }
    deep[sizeof deep - 1] = '\0';
    char msg[256] = "";
    cr_assert_null(json_parse(deep, strlen(deep), msg, sizeof msg));
    cr_assert(strlen(msg) > 0);
    /* One level less is fine. */
    json_t *v = json_parse(deep + 1, strlen(deep) - 2, msg, sizeof msg);
    cr_assert(v, "%s", msg);
    json_free(v);
}

Test(json, syntax_errors_name_line_and_column)
{
    static const char text[] = "{\n  \"a\": 1,\n  \"b\" 2\n}";
    char msg[256] = "";
    cr_assert_null(json_parse(text, strlen(text), msg, sizeof msg));
    cr_assert(strstr(msg, "invalid JSON: "), "%s", msg);
    cr_assert(strstr(msg, "line 3"), "%s", msg);
    cr_assert_null(strchr(msg, '\n'), "one line: %s", msg);

    /* Every truncation of a valid document fails cleanly (and leaks nothing
     * under ASan). */
    static const char doc[] = "{\"a\":[1,{\"b\":\"c\"}],\"d\":null}";
    for (size_t n = 0; n < sizeof doc - 1; n++)
        cr_assert_null(json_parse(doc, n, msg, sizeof msg), "prefix of %zu bytes parsed", n);
}
