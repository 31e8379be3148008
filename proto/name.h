/*
 * name.h — the one rule for tenant ids and region names.
 *
 * A name is 1 to NAME_LEN_MAX characters of [A-Za-z0-9._-]: safe as one URL
 * path segment or query value with no percent-encoding (RFC 3986 §2.3
 * unreserved characters, less '~'), safe in a log line, and compared
 * byte-for-byte (case-sensitive). The gateway's config (docs/configuration.md),
 * its request router and the shim's --tenant/--region all use this check, so
 * a name one side accepts the other side accepts too. Pure.
 */
#ifndef SLUICE_NAME_H
#define SLUICE_NAME_H

#include <stddef.h>

#define NAME_LEN_MAX 64u

/* 1 when c may appear in a name: A-Z a-z 0-9 . _ - ; else 0. */
int name_char_valid(int c);

/* 1 when s[0..len) is a valid name, else 0. s may be NULL when len is 0. */
int name_valid(const char *s, size_t len);

#endif
