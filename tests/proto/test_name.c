/* test_name.c — proto/name.c: the tenant id / region name rule. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/name.h"

Test(name, every_character)
{
    for (int c = 0; c < 256; c++) {
        int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '_' || c == '-';
        char s[1] = {(char)c};
        cr_assert_eq(name_char_valid(c), want, "character 0x%02x", c);
        cr_assert_eq(name_valid(s, 1), want, "one-character name 0x%02x", c);
        char mid[3] = {'a', (char)c, 'b'};
        cr_assert_eq(name_valid(mid, 3), want, "0x%02x inside a name", c);
    }
}

Test(name, lengths)
{
    char s[NAME_LEN_MAX + 2];
    memset(s, 'a', sizeof s);
    cr_assert_not(name_valid(s, 0), "empty");
    cr_assert_not(name_valid(NULL, 0), "empty, no pointer");
    cr_assert(name_valid(s, 1));
    cr_assert(name_valid(s, NAME_LEN_MAX), "exactly %u", NAME_LEN_MAX);
    cr_assert_not(name_valid(s, NAME_LEN_MAX + 1), "one over %u", NAME_LEN_MAX);
}

Test(name, examples)
{
    static const char *const good[] = {"demo", "eu-west", "initech.turn", "A_b-9", ".", "-"};
    static const char *const bad[] = {"a b", "a/b", "a~b", "a%2f", "a?b", "caf\xc3\xa9",
                                      "a\nb", "a:b"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_expect(name_valid(good[i], strlen(good[i])), "\"%s\" refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_not(name_valid(bad[i], strlen(bad[i])), "\"%s\" accepted", bad[i]);
    /* Length-delimited: a NUL inside is a character like any other (refused). */
    cr_expect_not(name_valid("ab\0c", 4));
    cr_expect(name_valid("ab\0c", 2));
}
