/*
 * test_text.c — proto/text.c: escaping peer text for logs. Every byte class,
 * UTF-8 validity checked against an independent decoder over every 1-, 2- and
 * 3-byte input (and a large sample of 4-byte ones), a round trip, and every
 * truncation point of a mixed input.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/text.h"

static const char *esc(const char *s, size_t len)
{
    static char out[1024];
    size_t n = text_escape(out, sizeof out, s, len);
    cr_assert_eq(n, strlen(out));
    return out;
}

#define ESC(lit) esc(lit, sizeof(lit) - 1)

/* ---- reference: decode a code point, then judge it (RFC 3629 §3, §4) ---- */

static size_t ref_seq(const uint8_t *s, size_t n)
{
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t k;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        k = 2;
        cp = s[0] & 0x1fu;
    } else if ((s[0] & 0xf0) == 0xe0) {
        k = 3;
        cp = s[0] & 0x0fu;
    } else if ((s[0] & 0xf8) == 0xf0) {
        k = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[j] & 0x3fu);
    }
    if (cp < min_cp[k] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return k;
}

/* The expected escaping, written from the rules in text.h. */
static size_t ref_escape(char *out, const uint8_t *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = ref_seq(s + i, len - i);
        uint32_t c1 = k == 2 ? ((s[i] & 0x1fu) << 6 | (s[i + 1] & 0x3fu)) : 0;
        int keep = (k == 1 && s[i] >= 0x20 && s[i] != 0x7f && s[i] != '\\') ||
                   (k > 1 && !(k == 2 && c1 >= 0x80 && c1 <= 0x9f));
        if (keep) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            o += (size_t)sprintf(out + o, "\\x%02x", s[i]);
            i++;
        }
    }
    out[o] = '\0';
    return o;
}

/* \xHH back to bytes. Returns the length, or -1 on a stray backslash. */
static long unescape(const char *s, uint8_t *out)
{
    size_t o = 0;
    while (*s) {
        if (*s != '\\') {
            out[o++] = (uint8_t)*s++;
            continue;
        }
        unsigned v;
        if (s[1] != 'x' || sscanf(s + 2, "%2x", &v) != 1)
            return -1;
        out[o++] = (uint8_t)v;
        s += 4;
    }
    return (long)o;
}

/* ---- byte classes ---- */

Test(text, plain_text_is_unchanged)
{
    cr_assert_str_eq(ESC(""), "");
    cr_assert_str_eq(ESC("shutting down"), "shutting down");
    cr_assert_str_eq(ESC("a ~!\"#$%&'()*+,-./:;<=>?@[]^_`{|}"), "a ~!\"#$%&'()*+,-./:;<=>?@[]^_`{|}");
}

Test(text, controls_del_and_backslash_are_escaped)
{
    cr_assert_str_eq(ESC("bye\n2024-01-01T00:00:00Z sluiced info: forged"),
                     "bye\\x0a2024-01-01T00:00:00Z sluiced info: forged");
    cr_assert_str_eq(ESC("\r\t\x1b[31m"), "\\x0d\\x09\\x1b[31m");
    cr_assert_str_eq(ESC("a\x7f" "b"), "a\\x7fb");
    cr_assert_str_eq(ESC("C:\\x41"), "C:\\x5cx41", "a literal \\x41 cannot pass for an escape");
    cr_assert_str_eq(esc("a\0b", 3), "a\\x00b", "NUL is data, not the end");
    for (unsigned b = 0; b < 0x20; b++) {
        char in[1] = {(char)b}, want[8];
        snprintf(want, sizeof want, "\\x%02x", b);
        cr_assert_str_eq(esc(in, 1), want, "byte 0x%02x", b);
    }
}

Test(text, valid_utf8_is_kept)
{
    cr_assert_str_eq(ESC("caf\xc3\xa9"), "caf\xc3\xa9");                     /* U+00E9 */
    cr_assert_str_eq(ESC("\xc2\xa0"), "\xc2\xa0");                           /* U+00A0, first non-C1 */
    cr_assert_str_eq(ESC("\xe2\x82\xac"), "\xe2\x82\xac");                   /* U+20AC */
    cr_assert_str_eq(ESC("\xe0\xa0\x80"), "\xe0\xa0\x80");                   /* U+0800, smallest 3-byte */
    cr_assert_str_eq(ESC("\xed\x9f\xbf"), "\xed\x9f\xbf");                   /* U+D7FF, below surrogates */
    cr_assert_str_eq(ESC("\xee\x80\x80"), "\xee\x80\x80");                   /* U+E000, above them */
    cr_assert_str_eq(ESC("\xf0\x90\x80\x80"), "\xf0\x90\x80\x80");           /* U+10000 */
    cr_assert_str_eq(ESC("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");           /* U+1F600 */
    cr_assert_str_eq(ESC("\xf4\x8f\xbf\xbf"), "\xf4\x8f\xbf\xbf");           /* U+10FFFF */
}

Test(text, c1_controls_are_escaped)
{
    cr_assert_str_eq(ESC("\xc2\x9b" "31m"), "\\xc2\\x9b31m", "U+009B is CSI on some terminals");
    cr_assert_str_eq(ESC("\xc2\x80"), "\\xc2\\x80");
    cr_assert_str_eq(ESC("\xc2\x9f"), "\\xc2\\x9f");
}

Test(text, invalid_utf8_is_escaped_byte_by_byte)
{
    /* Overlong forms of '/' and of NUL. */
    cr_assert_str_eq(ESC("\xc0\xaf"), "\\xc0\\xaf");
    cr_assert_str_eq(ESC("\xc1\xbf"), "\\xc1\\xbf");
    cr_assert_str_eq(ESC("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");
    cr_assert_str_eq(ESC("\xe0\x9f\xbf"), "\\xe0\\x9f\\xbf");
    cr_assert_str_eq(ESC("\xf0\x80\x80\xaf"), "\\xf0\\x80\\x80\\xaf");
    cr_assert_str_eq(ESC("\xf0\x8f\xbf\xbf"), "\\xf0\\x8f\\xbf\\xbf");
    cr_assert_str_eq(esc("\xc0\x80", 2), "\\xc0\\x80");
    /* UTF-16 surrogates, alone and as a CESU-8 pair. */
    cr_assert_str_eq(ESC("\xed\xa0\x80"), "\\xed\\xa0\\x80");
    cr_assert_str_eq(ESC("\xed\xbf\xbf"), "\\xed\\xbf\\xbf");
    cr_assert_str_eq(ESC("\xed\xa0\xbd\xed\xb8\x80"), "\\xed\\xa0\\xbd\\xed\\xb8\\x80");
    /* Above U+10FFFF, and bytes that never occur. */
    cr_assert_str_eq(ESC("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
    cr_assert_str_eq(ESC("\xf5\x80\x80\x80"), "\\xf5\\x80\\x80\\x80");
    cr_assert_str_eq(ESC("\xfe\xff"), "\\xfe\\xff");
    /* A stray continuation byte; sequences cut short, at the end and mid-text;
     * a valid character right after an invalid byte is kept. */
    cr_assert_str_eq(ESC("a\x80z"), "a\\x80z");
    cr_assert_str_eq(ESC("\xe2\x82"), "\\xe2\\x82");
    cr_assert_str_eq(ESC("\xe2\x82z"), "\\xe2\\x82z");
    cr_assert_str_eq(ESC("\xf0\x9f\x98"), "\\xf0\\x9f\\x98");
    cr_assert_str_eq(ESC("\xe2\xc3\xa9"), "\\xe2\xc3\xa9");
}

/* Every 1-, 2- and 3-byte input against the reference, and 4-byte inputs
 * with every lead and second byte. Each must also read back to the input. */
Test(text, matches_reference_on_every_short_input, .timeout = 120)
{
    char got[64], want[64];
    uint8_t in[4], back[16];
    unsigned long n = 0;
    for (unsigned len = 1; len <= 4; len++) {
        unsigned long total = len < 4 ? 1ul << (8 * len) : 1ul << 16;
        for (unsigned long v = 0; v < total; v++) {
            if (len < 4) {
                for (unsigned j = 0; j < len; j++)
                    in[j] = (uint8_t)(v >> (8 * j));
                if (len == 3 && in[0] < 0xe0)
                    continue; /* not a 3-byte lead: the shorter cases cover it */
            } else {
                static const uint8_t tail[] = {0x80, 0xbf, 0x41};
                in[0] = (uint8_t)(v >> 8);
                in[1] = (uint8_t)v;
                if (in[0] < 0xf0)
                    continue;
                for (unsigned t = 0; t < 9; t++) {
                    in[2] = tail[t % 3];
                    in[3] = tail[t / 3];
                    size_t gl = text_escape(got, sizeof got, in, 4);
                    ref_escape(want, in, 4);
                    cr_assert_str_eq(got, want, "%02x %02x %02x %02x", in[0], in[1], in[2], in[3]);
                    cr_assert_eq(gl, strlen(want));
                    cr_assert_eq(unescape(got, back), 4);
                    cr_assert_eq(memcmp(back, in, 4), 0);
                    n++;
                }
                continue;
            }
            size_t gl = text_escape(got, sizeof got, in, len);
            ref_escape(want, in, len);
            if (strcmp(got, want) != 0 || gl != strlen(want))
                cr_assert_fail("%u bytes %02x %02x %02x: got \"%s\", want \"%s\"", len, in[0],
                               in[1], in[2], got, want);
            if (unescape(got, back) != (long)len || memcmp(back, in, len) != 0)
                cr_assert_fail("%u bytes %02x %02x %02x do not read back", len, in[0], in[1],
                               in[2]);
            n++;
        }
    }
    cr_log_info("%lu inputs checked", n);
}

/* ---- truncation ---- */

/* Cut points of the full escaping: the output offsets where a whole
 * character or escape ends. */
static size_t boundaries(const uint8_t *s, size_t len, size_t *at)
{
    size_t n = 0, o = 0;
    at[n++] = 0;
    for (size_t i = 0; i < len;) {
        char tmp[16];
        size_t k = ref_seq(s + i, len - i);
        size_t step = k > 1 ? k : 1;
        uint8_t piece[4];
        memcpy(piece, s + i, step);
        size_t w = ref_escape(tmp, piece, step);
        if (k == 2 && w == 8) { /* a C1 control: two separate escapes */
            at[n++] = o + 4;
        }
        o += w;
        at[n++] = o;
        i += step;
    }
    return n;
}

Test(text, every_truncation_point)
{
    static const char input[] = "ok \xc3\xa9\n\xe2\x82\xac\\\xff\xf0\x9f\x98\x80 \xc2\x9b" "end\x80";
    const uint8_t *in = (const uint8_t *)input;
    size_t len = sizeof input - 1;
    char full[256];
    size_t full_len = ref_escape(full, in, len);
    size_t at[64];
    size_t nat = boundaries(in, len, at);
    cr_assert_eq(at[nat - 1], full_len);
    const size_t mark = strlen(TEXT_TRUNCATED);

    for (size_t cap = 0; cap <= full_len + 2; cap++) {
        char buf[300];
        memset(buf, 'Z', sizeof buf);
        size_t n = text_escape(cap ? buf : NULL, cap, in, len);
        for (size_t j = cap; j < sizeof buf; j++)
            cr_assert_eq(buf[j], 'Z', "cap %zu: wrote byte %zu", cap, j);
        if (cap == 0) {
            cr_assert_eq(n, 0);
            continue;
        }
        cr_assert_eq(buf[n], '\0', "cap %zu: not NUL-terminated at %zu", cap, n);
        cr_assert_eq(strlen(buf), n);
        cr_assert_lt(n, cap);
        if (full_len < cap) {
            cr_assert_str_eq(buf, full, "cap %zu: fits, so nothing is cut", cap);
            continue;
        }
        if (cap < TEXT_ESCAPE_MIN) {
            cr_assert_eq(n, 0, "cap %zu: no room for the marker", cap);
            continue;
        }
        cr_assert_geq(n, mark);
        cr_assert_str_eq(buf + n - mark, TEXT_TRUNCATED, "cap %zu: \"%s\"", cap, buf);
        size_t cut = n - mark;
        cr_assert_eq(memcmp(buf, full, cut), 0, "cap %zu: not a prefix", cap);
        /* The cut is a boundary and the last one that leaves room for the marker. */
        size_t best = 0;
        int is_boundary = 0;
        for (size_t b = 0; b < nat; b++) {
            if (at[b] + mark <= cap - 1)
                best = at[b];
            is_boundary |= at[b] == cut;
        }
        cr_assert(is_boundary, "cap %zu: cut at %zu splits a character or escape", cap, cut);
        cr_assert_eq(cut, best, "cap %zu: cut at %zu, the longest fitting prefix is %zu", cap,
                     cut, best);
    }
}

Test(text, worst_case_cap_never_truncates)
{
    uint8_t in[64];
    char out[TEXT_ESCAPE_CAP(sizeof in)];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(0x80 + i); /* all stray continuation bytes: 4 out per byte */
    size_t n = text_escape(out, sizeof out, in, sizeof in);
    cr_assert_eq(n, 4 * sizeof in);
    cr_assert_eq(strstr(out, TEXT_TRUNCATED), NULL);
    cr_assert_eq(text_escape(out, sizeof out, NULL, 0), 0);
    cr_assert_str_eq(out, "");
}
