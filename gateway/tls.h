/*
 * tls.h — the gateway's TLS context: TLS 1.2+, ALPN h2 only.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Builds a server SSL_CTX from PEM files. Returns NULL with err filled
 * (including OpenSSL's reason) on failure. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* The first error on OpenSSL's queue as text (clears the queue); the
 * gateway's name for tlserr_take (common/tlserr.h). */
const char *tls_last_error(char *buf, size_t cap);

#endif
