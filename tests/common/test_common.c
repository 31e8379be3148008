/*
 * test_common.c — common/: the OpenSSL error formatter (tlserr.c) and the
 * two helpers of compat.h.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pemerr.h>
#include <string.h>

#include "../../common/compat.h"
#include "../../common/tlserr.h"

Test(tlserr, oldest_error_with_detail_and_the_queue_emptied)
{
    char buf[256];
    ERR_clear_error();
    ERR_raise_data(ERR_LIB_PEM, PEM_R_NO_START_LINE, "Expecting: %s", "TRUSTED CERTIFICATE");
    ERR_raise(ERR_LIB_SSL, ERR_R_PEM_LIB); /* a caller passing it up */
    cr_assert_str_eq(tlserr_take(buf, sizeof buf, "none"),
                     "PEM routines: no start line (Expecting: TRUSTED CERTIFICATE)");
    cr_assert_eq(ERR_peek_error(), 0, "the queue is left empty");
    cr_assert_str_eq(tlserr_take(buf, sizeof buf, "none"), "none", "empty queue: the fallback");
}

Test(tlserr, system_error_as_strerror)
{
    char buf[256];
    ERR_clear_error();
    ERR_raise_data(ERR_LIB_SYS, ENOENT, "calling fopen(%s, r)", "/x.pem");
    cr_assert_str_eq(tlserr_take(buf, sizeof buf, NULL),
                     "No such file or directory (calling fopen(/x.pem, r))");
}

Test(tlserr, small_buffers_stay_terminated)
{
    char buf[8];
    for (size_t cap = 1; cap <= sizeof buf; cap++) {
        memset(buf, 'Z', sizeof buf);
        ERR_raise_data(ERR_LIB_PEM, PEM_R_NO_START_LINE, "detail");
        tlserr_take(buf, cap, "none");
        cr_assert_lt(strlen(buf), cap, "cap %zu", cap);
        for (size_t j = cap; j < sizeof buf; j++)
            cr_assert_eq(buf[j], 'Z', "cap %zu: wrote byte %zu", cap, j);
        cr_assert_eq(ERR_peek_error(), 0);
    }
    ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
    tlserr_take(NULL, 0, "none");
    cr_assert_eq(ERR_peek_error(), 0, "cap 0 writes nothing but still empties the queue");
}

typedef struct owner {
    int a;
    double b;
    char member[3];
} owner_t;

Test(compat, container_of_and_monotonic_clock)
{
    owner_t o;
    cr_assert_eq(container_of(&o.member, owner_t, member), &o);
    cr_assert_eq(container_of(&o.a, owner_t, a), &o);
    uint64_t prev = compat_mono_ns();
    for (int i = 0; i < 1000; i++) {
        uint64_t now = compat_mono_ns();
        cr_assert_geq(now, prev, "the monotonic clock went back");
        prev = now;
    }
    cr_assert_gt(prev, 0);
}
