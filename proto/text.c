/* text.c — see text.h. */
#include "text.h"

#include <stdint.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (n bytes available): 1 for
 * ASCII, 2..4 for a multi-byte character, 0 when the bytes there do not start
 * one (a stray continuation byte, an overlong form, a surrogate, a code point
 * above U+10FFFF, or a sequence cut by the end of the input). The ranges are
 * the table of RFC 3629 §4. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t b = s[0];
    size_t k;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf) {
        k = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        k = 3;
        if (b == 0xe0)
            lo = 0xa0; /* below: overlong */
        else if (b == 0xed)
            hi = 0x9f; /* above: UTF-16 surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        k = 4;
        if (b == 0xf0)
            lo = 0x90; /* below: overlong */
        else if (b == 0xf4)
            hi = 0x8f; /* above: beyond U+10FFFF */
    } else {
        return 0; /* 0x80..0xc1 (continuation, overlong lead) or 0xf5..0xff */
    }
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t j = 2; j < k; j++)
        if (s[j] < 0x80 || s[j] > 0xbf)
            return 0;
    return k;
}

size_t text_escape(char *dst, size_t cap, const void *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    static const size_t mark = sizeof TEXT_TRUNCATED - 1;
    const uint8_t *s = src;

    if (cap == 0)
        return 0;
    size_t room = cap - 1; /* characters; the NUL is extra */
    size_t o = 0;
    size_t safe = 0; /* last cut point after which the marker still fits */
    size_t i = 0;
    while (i < len) {
        char esc[4];
        const char *unit;
        size_t ulen;
        size_t k = utf8_seq(s + i, len - i);
        int c1 = k == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0; /* U+0080..U+009F */
        if ((k == 1 && s[i] >= 0x20 && s[i] != 0x7f && s[i] != '\\') || (k > 1 && !c1)) {
            unit = (const char *)s + i;
            ulen = k;
        } else {
            /* One byte; a C1 control's second byte, now a lone
             * continuation byte, is escaped on the next turn. */
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[s[i] >> 4];
            esc[3] = hex[s[i] & 0xf];
            unit = esc;
            ulen = 4;
            k = 1;
        }
        if (ulen > room - o) {
            if (room < mark) {
                dst[0] = '\0';
                return 0;
            }
            memcpy(dst + safe, TEXT_TRUNCATED, mark);
            dst[safe + mark] = '\0';
            return safe + mark;
        }
        memcpy(dst + o, unit, ulen);
        o += ulen;
        i += k;
        if (room >= mark && o <= room - mark)
            safe = o;
    }
    dst[o] = '\0';
    return o;
}
