/*
 * text.h — peer-supplied text made safe for a log line or an error message.
 *
 * Anything a client or a backend sent (a CLOSE reason, a header value, a
 * tenant id that failed validation) is data, not log format: written raw, a
 * "\n" forges a second log line and an escape sequence drives the operator's
 * terminal. text_escape() is the one place where such bytes are made printable.
 *
 * Output rules, byte by byte over the input:
 *   - well-formed UTF-8 (RFC 3629 §4: no overlong forms, no surrogates
 *     U+D800..U+DFFF, nothing above U+10FFFF) is copied as is, except:
 *   - C0 controls (0x00..0x1f), DEL (0x7f) and the C1 controls U+0080..U+009F
 *     (a terminal may take U+009B as CSI) are written as \xHH per byte;
 *   - a backslash is written as \x5c, so a raw backslash in the output always
 *     starts an escape and the output can be read back unambiguously;
 *   - every byte that does not start a well-formed sequence is written as
 *     \xHH, and scanning resumes at the next byte.
 *
 * Truncation: the output is always NUL-terminated (cap > 0). When the escaped
 * text does not fit in cap - 1 characters, it is cut at a whole character or
 * escape (never inside \xHH or a UTF-8 sequence) and TEXT_TRUNCATED is
 * appended, all within cap. The marker cannot occur in escaped text (a raw
 * backslash only ever starts \xHH). With cap < TEXT_ESCAPE_MIN there is no
 * room for the marker: text that does not fit gives an empty string.
 *
 * Pure: no allocation, no state, no I/O.
 */
#ifndef SLUICE_TEXT_H
#define SLUICE_TEXT_H

#include <stddef.h>

/* Appended to text that was cut. */
#define TEXT_TRUNCATED "\\..."
/* Smallest cap that can hold the marker and the NUL. */
#define TEXT_ESCAPE_MIN (sizeof TEXT_TRUNCATED)
/* A cap that never truncates len input bytes (each becomes at most 4). */
#define TEXT_ESCAPE_CAP(len) ((len) * 4 + 1)

/* Escapes src[0..len) into dst (cap bytes, NUL included) as described above.
 * src may be NULL when len is 0; dst may be NULL when cap is 0. Returns the
 * length of the output, not counting the NUL. */
size_t text_escape(char *dst, size_t cap, const void *src, size_t len);

#endif
