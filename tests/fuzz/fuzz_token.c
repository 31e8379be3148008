/*
 * fuzz_token.c — proto/token.c: the session token a tunnel-resume header
 * carries (proto/README.md §8.1), 22 base64url characters for 16 bytes.
 *
 * Asserts: token_decode accepts exactly the canonical encodings (a text it
 * accepts is what token_encode writes for the bytes it decoded, so one token
 * has one spelling), and decode(encode(raw)) is
 * raw for any 16 bytes; the node tag round-trips through token_set_tag and
 * token_tag without touching the other 12 bytes.
 */
#include <stdint.h>
#include <string.h>

#include "../../proto/proto.h"
#include "../../proto/token.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t raw[TOKEN_BYTES], back[TOKEN_BYTES];
    char text[TOKEN_TEXT_LEN + 1];

    memset(raw, 0x5a, sizeof raw);
    int rc = token_decode((const char *)data, size, raw);
    if (rc == 0) {
        FUZZ_ASSERT(size == TOKEN_TEXT_LEN);
        token_encode(raw, text);
        FUZZ_ASSERT(text[TOKEN_TEXT_LEN] == '\0' && memcmp(text, data, size) == 0);
    } else {
        FUZZ_ASSERT(rc == PROTO_ERR_MALFORMED);
    }

    if (size >= TOKEN_BYTES) {
        memcpy(raw, data, TOKEN_BYTES);
        token_encode(raw, text);
        FUZZ_ASSERT(strlen(text) == TOKEN_TEXT_LEN);
        FUZZ_ASSERT(token_decode(text, TOKEN_TEXT_LEN, back) == 0);
        FUZZ_ASSERT(memcmp(raw, back, TOKEN_BYTES) == 0);
        uint32_t tag = token_node_tag((const char *)data, size);
        memcpy(back, raw, TOKEN_BYTES);
        token_set_tag(back, tag);
        FUZZ_ASSERT(token_tag(back) == tag);
        FUZZ_ASSERT(memcmp(back + TOKEN_TAG_BYTES, raw + TOKEN_TAG_BYTES,
                           TOKEN_BYTES - TOKEN_TAG_BYTES) == 0);
    }
    return 0;
}
