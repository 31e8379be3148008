/*
 * test_token.c — proto/token.c: the text form of session tokens, checked
 * against the vectors printed in proto/README.md §9.4 (computed outside this
 * code with Python's base64.urlsafe_b64encode, padding stripped).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/proto.h"
#include "../../proto/token.h"

static const struct {
    const char *hex, *text;
} VECTORS[] = {
    {"000102030405060708090a0b0c0d0e0f", "AAECAwQFBgcICQoLDA0ODw"},
    {"ffffffffffffffffffffffffffffffff", "_____________________w"},
    {"3e9a5b1cfb0f7d2c88e4a1907f6b3dd0", "PppbHPsPfSyI5KGQf2s90A"},
};

static void unhex(const char *hex, uint8_t *out)
{
    for (size_t i = 0; i < TOKEN_BYTES; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* The README's text, read from the source tree the test was built from. */
static char *readme(void)
{
    static char buf[65536];
    char path[4096];
    const char *build = getenv("SLUICE_BUILD"); /* <repo>/build, set by tests/run.sh */
    FILE *f = NULL;
    if (build) {
        snprintf(path, sizeof path, "%s/../proto/README.md", build);
        f = fopen(path, "r");
    }
    if (!f)
        f = fopen("proto/README.md", "r");
    cr_assert_not_null(f, "proto/README.md not found (run from the repository root)");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

Test(token, readme_vectors)
{
    const char *doc = readme();
    for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++) {
        uint8_t raw[TOKEN_BYTES], back[TOKEN_BYTES];
        char text[TOKEN_TEXT_LEN + 1], line[128];
        unhex(VECTORS[i].hex, raw);
        token_encode(raw, text);
        cr_assert_str_eq(text, VECTORS[i].text);
        cr_assert_eq(token_decode(text, strlen(text), back), 0);
        cr_assert_arr_eq(back, raw, TOKEN_BYTES);
        snprintf(line, sizeof line, "bytes %s   token %s", VECTORS[i].hex, VECTORS[i].text);
        cr_assert_not_null(strstr(doc, line), "README §9.4 lacks \"%s\"", line);
    }
}

Test(token, readme_resume_request)
{
    const char *doc = readme();
    cr_assert_not_null(strstr(doc, "tunnel-resume      = PppbHPsPfSyI5KGQf2s90A"));
    uint8_t raw[TOKEN_BYTES];
    cr_assert_eq(token_decode("PppbHPsPfSyI5KGQf2s90A", TOKEN_TEXT_LEN, raw), 0);
}

Test(token, only_the_canonical_form_decodes)
{
    static const char *const bad[] = {
        "AAECAwQFBgcICQoLDA0ODx",   /* low bits of the last character set */
        "AAECAwQFBgcICQoLDA0OD",    /* 21 characters */
        "AAECAwQFBgcICQoLDA0ODw==", /* padding */
        "AAECAwQFBgcICQoLDA0OD+",   /* base64, not base64url */
        "AAECAwQFBgcICQoLDA0OD/",
        "AAECAwQFBgcICQoLDA0OD=",
        "AAECAwQFBgcICQoLDA 0Ow",
        "",
    };
    const char *doc = readme();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t raw[TOKEN_BYTES];
        cr_assert_eq(token_decode(bad[i], strlen(bad[i]), raw), PROTO_ERR_MALFORMED, "\"%s\"",
                     bad[i]);
        if (i < 4)
            cr_assert_not_null(strstr(doc, bad[i]), "README §9.4 lists \"%s\"", bad[i]);
    }
    /* Every canonical last character decodes; no other does. */
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int ok = 0;
    for (const char *c = alphabet; *c; c++) {
        char text[TOKEN_TEXT_LEN + 1] = "AAAAAAAAAAAAAAAAAAAAAA";
        uint8_t raw[TOKEN_BYTES];
        text[TOKEN_TEXT_LEN - 1] = *c;
        if (token_decode(text, TOKEN_TEXT_LEN, raw) == 0) {
            ok++;
            cr_assert_not_null(strchr("AQgw", *c), "'%c' decoded", *c);
        }
    }
    cr_assert_eq(ok, 4);
}

Test(token, every_byte_value_round_trips)
{
    for (int v = 0; v < 256; v++) {
        for (size_t pos = 0; pos < TOKEN_BYTES; pos++) {
            uint8_t raw[TOKEN_BYTES] = {0}, back[TOKEN_BYTES];
            char text[TOKEN_TEXT_LEN + 1];
            raw[pos] = (uint8_t)v;
            token_encode(raw, text);
            cr_assert_eq(strlen(text), TOKEN_TEXT_LEN);
            cr_assert_eq(token_decode(text, TOKEN_TEXT_LEN, back), 0);
            cr_assert_arr_eq(back, raw, TOKEN_BYTES);
        }
    }
}

/* §9.4: node tags, computed outside this code (Python, FNV-1a 32). */
Test(token, node_tags)
{
    const char *doc = readme();
    static const struct {
        const char *id;
        uint32_t tag;
        const char *line;
    } tags[] = {
        {"gw-eu-1", 0xd3e1b2fau, "node id gw-eu-1   tag d3e1b2fa"},
        {"gw-eu-2", 0xd2e1b167u, "node id gw-eu-2   tag d2e1b167"},
        {"", 0x811c9dc5u, NULL},
    };
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        cr_assert_eq(token_node_tag(tags[i].id, strlen(tags[i].id)), tags[i].tag, "%s",
                     tags[i].id);
        if (tags[i].line)
            cr_assert_not_null(strstr(doc, tags[i].line), "README §9.4 lacks \"%s\"",
                               tags[i].line);
    }
    /* gw-eu-1's tag and the random bytes 0102...0c. */
    uint8_t raw[TOKEN_BYTES] = {0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t back[TOKEN_BYTES];
    char text[TOKEN_TEXT_LEN + 1];
    token_set_tag(raw, token_node_tag("gw-eu-1", 7));
    token_encode(raw, text);
    cr_assert_str_eq(text, "0-Gy-gECAwQFBgcICQoLDA");
    cr_assert_not_null(
        strstr(doc, "bytes d3e1b2fa0102030405060708090a0b0c   token 0-Gy-gECAwQFBgcICQoLDA"));
    cr_assert_eq(token_decode(text, TOKEN_TEXT_LEN, back), 0);
    cr_assert_eq(token_tag(back), 0xd3e1b2fau);
    cr_assert_arr_eq(back + TOKEN_TAG_BYTES, raw + TOKEN_TAG_BYTES, TOKEN_BYTES - TOKEN_TAG_BYTES);
}

/* Every truncation of a tagged token is refused, not read as another tag. */
Test(token, tagged_truncations)
{
    const char *full = "0-Gy-gECAwQFBgcICQoLDA";
    for (size_t len = 0; len < TOKEN_TEXT_LEN; len++) {
        uint8_t raw[TOKEN_BYTES];
        cr_assert_eq(token_decode(full, len, raw), PROTO_ERR_MALFORMED, "length %zu", len);
    }
}
