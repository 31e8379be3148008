/*
 * test_proto.c — proto/proto.c: names of the shared return codes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/proto.h"

Test(proto, strerror_names)
{
    cr_assert_str_eq(proto_strerror(PROTO_OK), "ok");
    cr_assert_str_eq(proto_strerror(42), "ok");
    cr_assert_str_eq(proto_strerror(PROTO_INCOMPLETE), "incomplete input");
    cr_assert_str_eq(proto_strerror(PROTO_ERR_SPACE), "output buffer too small");
    cr_assert_str_eq(proto_strerror(PROTO_ERR_RANGE), "value out of range");
    cr_assert_str_eq(proto_strerror(PROTO_ERR_TOO_LARGE), "capsule value too large");
    cr_assert_str_eq(proto_strerror(PROTO_ERR_MALFORMED), "malformed input");
    cr_assert_str_eq(proto_strerror(-6), "unknown error");
    cr_assert_str_eq(proto_strerror(-1000), "unknown error");
}

/* Each error has its own name: logs must tell them apart. */
Test(proto, strerror_distinct)
{
    for (int a = PROTO_ERR_MALFORMED; a <= PROTO_OK; a++)
        for (int b = a + 1; b <= PROTO_OK; b++)
            cr_assert_str_neq(proto_strerror(a), proto_strerror(b), "%d vs %d", a, b);
}
