/* test_list.c — common/list.h: order, removal while iterating, idempotent removal. */
#include <criterion/criterion.h>

#include "../../common/list.h"

typedef struct item {
    int v;
    list_t link;
} item_t;

static int values(list_t *head, int *out, int cap)
{
    int n = 0;
    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, head)
    {
        cr_assert_lt(n, cap);
        out[n++] = LIST_ENTRY(pos, item_t, link)->v;
    }
    return n;
}

Test(list, push_front_append_back_and_first)
{
    list_t head;
    list_init(&head);
    cr_assert(list_empty(&head));
    cr_assert_null(LIST_FIRST(&head, item_t, link));
    item_t a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
    list_append(&head, &a.link);
    list_append(&head, &b.link);
    list_push(&head, &c.link);
    int v[4];
    cr_assert_eq(values(&head, v, 4), 3);
    cr_assert(v[0] == 3 && v[1] == 1 && v[2] == 2);
    cr_assert_eq(LIST_FIRST(&head, item_t, link), &c);
}

Test(list, removal_inside_the_loop_and_twice)
{
    list_t head;
    list_init(&head);
    item_t it[5];
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        list_append(&head, &it[i].link);
    }
    list_t *pos, *tmp;
    list_for_each_safe(pos, tmp, &head)
    {
        item_t *x = LIST_ENTRY(pos, item_t, link);
        if (x->v % 2 == 0)
            list_remove(pos);
    }
    int v[5];
    cr_assert_eq(values(&head, v, 5), 2);
    cr_assert(v[0] == 1 && v[1] == 3);
    list_remove(&it[0].link); /* already removed: harmless */
    cr_assert_eq(values(&head, v, 5), 2);
    list_remove(&it[1].link);
    list_remove(&it[3].link);
    cr_assert(list_empty(&head));
}
