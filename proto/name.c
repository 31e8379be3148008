/* name.c — see name.h. */
#include "name.h"

int name_char_valid(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int name_valid(const char *s, size_t len)
{
    if (len == 0 || len > NAME_LEN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!name_char_valid((unsigned char)s[i]))
            return 0;
    return 1;
}
