/* test_slab.c — fixed-size objects from mapped slabs (gateway/slab.c):
 * zeroed objects, reuse, a full slab and the next, the bound on empty slabs
 * kept mapped (the rest unmapped: checked with mincore), trim, and a zeroed
 * slab_t falling back to calloc/free. Leaks show under the ASan build. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../gateway/slab.h"

/* Is the page holding p mapped? (mincore fails with ENOMEM when not.) */
static int mapped(const void *p)
{
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char v;
    void *base = (void *)((uintptr_t)p & ~(uintptr_t)(pg - 1));
    return mincore(base, (size_t)pg, &v) == 0 ? 1 : errno == ENOMEM ? 0 : -1;
}

Test(slab, objects_are_zeroed_distinct_and_reused)
{
    slab_t s;
    slab_init(&s, 100, 1);
    cr_assert_eq(s.size, 112, "rounded to 16");
    uint8_t *a = slab_alloc(&s, 100), *b = slab_alloc(&s, 100);
    cr_assert(a && b && a != b);
    cr_assert_geq((size_t)(b > a ? b - a : a - b), s.size, "objects do not overlap");
    for (size_t i = 0; i < 100; i++)
        cr_assert_eq(a[i], 0);
    memset(a, 0xab, s.size);
    cr_assert_eq(s.out, 2);
    slab_free(&s, a);
    uint8_t *c = slab_alloc(&s, 100);
    cr_assert_eq(c, a, "a freed object is handed out again");
    for (size_t i = 0; i < s.size; i++)
        cr_assert_eq(c[i], 0, "a reused object is zeroed again (byte %zu)", i);
    cr_assert_null(slab_alloc(&s, 200), "bigger than the slab's size");
    slab_free(&s, b);
    slab_free(&s, c);
    cr_assert_eq(s.out, 0);
    slab_dispose(&s);
    cr_assert_eq(s.nslabs, 0);
}

Test(slab, a_full_slab_is_followed_by_another_and_objects_stay_inside_their_slab)
{
    slab_t s;
    slab_init(&s, 1408, 0);
    size_t n = s.per_slab * 2 + 3;
    cr_assert_gt(s.per_slab, 40);
    void **o = calloc(n, sizeof *o);
    for (size_t i = 0; i < n; i++) {
        o[i] = slab_alloc(&s, 1408);
        cr_assert(o[i]);
        uintptr_t slab = (uintptr_t)o[i] & ~(uintptr_t)(SLAB_BYTES - 1);
        cr_assert_leq((uintptr_t)o[i] + s.size, slab + SLAB_BYTES, "object %zu crosses its slab", i);
        memset(o[i], (int)i, s.size); /* ASan: every byte is ours */
    }
    cr_assert_eq(s.nslabs, 3);
    cr_assert_eq(s.out, n);
    for (size_t i = 0; i < n; i++)
        slab_free(&s, o[i]);
    cr_assert_eq(s.nslabs, 0, "max_empty 0: every emptied slab is unmapped");
    cr_assert_eq(mapped(o[0]), 0, "the first slab's memory went back to the kernel");
    free(o);
    slab_dispose(&s);
}

Test(slab, keeps_at_most_max_empty_slabs_until_trim)
{
    slab_t s;
    slab_init(&s, 512, 1);
    size_t per = s.per_slab, n = per * 3;
    void **o = calloc(n, sizeof *o);
    for (size_t i = 0; i < n; i++)
        cr_assert(o[i] = slab_alloc(&s, 512));
    cr_assert_eq(s.nslabs, 3);
    for (size_t i = 0; i < n; i++)
        slab_free(&s, o[i]);
    cr_assert_eq(s.nslabs, 1, "one empty slab kept, %zu mapped", s.nslabs);
    cr_assert_eq(s.nempty, 1);
    /* The kept slab serves the next object without a new mapping. */
    void *a = slab_alloc(&s, 512);
    cr_assert(a);
    cr_assert_eq(s.nslabs, 1);
    cr_assert_eq(s.nempty, 0);
    slab_free(&s, a);
    cr_assert_eq(s.nempty, 1);
    slab_trim(&s);
    cr_assert_eq(s.nslabs, 0);
    cr_assert_eq(s.nempty, 0);
    cr_assert_eq(mapped(a), 0, "trim unmapped the empty slab");
    free(o);
    slab_dispose(&s);
}

Test(slab, a_slab_in_use_is_never_unmapped)
{
    slab_t s;
    slab_init(&s, 256, 0);
    void *a = slab_alloc(&s, 256), *b = slab_alloc(&s, 256);
    slab_free(&s, a);
    slab_trim(&s);
    cr_assert_eq(s.nslabs, 1, "b still lives in it");
    cr_assert_eq(mapped(b), 1);
    memset(b, 1, 256);
    slab_free(&s, b);
    cr_assert_eq(s.nslabs, 0);
    slab_dispose(&s);
}

Test(slab, a_zeroed_slab_uses_calloc_and_free)
{
    slab_t s;
    memset(&s, 0, sizeof s);
    uint8_t *a = slab_alloc(&s, 3000);
    cr_assert(a);
    for (size_t i = 0; i < 3000; i++)
        cr_assert_eq(a[i], 0);
    memset(a, 7, 3000);
    cr_assert_eq(s.nslabs, 0);
    slab_free(&s, a); /* ASan would report a leak or a bad free */
    slab_free(&s, NULL);
    slab_dispose(&s);
}
