/* test_pool.c — the bounded buffer cache (gateway/pool.c): reuse, the bound
 * on kept buffers, growing the size, trim, and a zeroed pool. Leaks show
 * under the ASan build (build/asan). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "../../gateway/pool.h"

Test(pool, put_then_get_reuses_the_buffer)
{
    pool_t p;
    pool_init(&p, 100, 4);
    uint8_t *a = pool_get(&p);
    cr_assert(a);
    memset(a, 0xab, p.size); /* the whole size is usable */
    cr_assert_eq(p.out, 1);
    pool_put(&p, a, p.size);
    cr_assert_eq(p.nfree, 1);
    cr_assert_eq(p.out, 0);
    uint8_t *b = pool_get(&p);
    cr_assert_eq(b, a, "a kept buffer is handed out again, not a new one");
    cr_assert_eq(p.nfree, 0);
    pool_put(&p, b, p.size);
    pool_dispose(&p);
    cr_assert_eq(p.nfree, 0);
}

Test(pool, keeps_at_most_max_free)
{
    pool_t p;
    pool_init(&p, 64, 2);
    void *b[5];
    for (int i = 0; i < 5; i++)
        cr_assert(b[i] = pool_get(&p));
    cr_assert_eq(p.out, 5);
    for (int i = 0; i < 5; i++)
        pool_put(&p, b[i], p.size);
    cr_assert_eq(p.nfree, 2, "kept %zu buffers, bound is 2", p.nfree);
    cr_assert_eq(p.out, 0);
    /* The two kept are the last two put back (LIFO), then new ones. */
    void *x = pool_get(&p), *y = pool_get(&p), *z = pool_get(&p);
    cr_assert_eq(x, b[1]);
    cr_assert_eq(y, b[0]);
    cr_assert(z);
    cr_assert_eq(p.nfree, 0);
    pool_put(&p, x, p.size);
    pool_put(&p, y, p.size);
    pool_put(&p, z, p.size);
    pool_dispose(&p);
}

Test(pool, grow_drops_small_buffers)
{
    pool_t p;
    pool_init(&p, 16, 4);
    void *old_out = pool_get(&p), *kept = pool_get(&p);
    pool_put(&p, kept, 16);
    cr_assert_eq(p.nfree, 1);
    pool_grow(&p, 8); /* smaller: nothing changes */
    cr_assert_eq(p.size, 16);
    cr_assert_eq(p.nfree, 1);
    pool_grow(&p, 4096);
    cr_assert_eq(p.size, 4096);
    cr_assert_eq(p.nfree, 0, "buffers of the old size are not kept");
    uint8_t *big = pool_get(&p);
    memset(big, 1, 4096);
    pool_put(&p, old_out, 16); /* handed out before the growth: freed */
    cr_assert_eq(p.nfree, 0);
    pool_put(&p, big, 4096);
    cr_assert_eq(p.nfree, 1);
    pool_trim(&p);
    cr_assert_eq(p.nfree, 0);
    cr_assert_eq(p.out, 0);
    pool_dispose(&p);
}

Test(pool, zeroed_pool_keeps_nothing)
{
    pool_t p;
    memset(&p, 0, sizeof p);
    pool_grow(&p, 300);
    cr_assert_eq(p.size, 300);
    uint8_t *a = pool_get(&p);
    cr_assert(a);
    memset(a, 0, 300);
    pool_put(&p, a, 300);
    cr_assert_eq(p.nfree, 0);
    pool_put(&p, NULL, 300); /* ignored */
    cr_assert_eq(p.out, 0);
    pool_dispose(&p);
}

Test(pool, tiny_size_holds_the_link)
{
    pool_t p;
    pool_init(&p, 1, 2);
    cr_assert_geq(p.size, sizeof(void *));
    void *a = pool_get(&p), *b = pool_get(&p);
    pool_put(&p, a, p.size);
    pool_put(&p, b, p.size);
    cr_assert_eq(pool_get(&p), b);
    cr_assert_eq(pool_get(&p), a);
    pool_put(&p, a, p.size);
    pool_put(&p, b, p.size);
    pool_dispose(&p);
}
