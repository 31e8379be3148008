/*
 * tls.h — the gateway's TLS context: TLS 1.2+, ALPN h2 only.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Builds a server SSL_CTX from PEM files: the certificate chain (leaf first)
 * and its private key, which must match. Returns NULL with err filled on
 * failure, naming the file and what is wrong with it ("certificate F: No such
 * file or directory", "... is a directory, not a PEM file", OpenSSL's reason
 * for a file it cannot parse, "private key K does not match certificate C").
 * Used at start-up and by --check-config, so both judge the files alike. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen);

#endif
