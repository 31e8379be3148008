/* tls.c — see tls.h. */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/tlserr.h"

/* A missing file or a directory gets a plain message; OpenSSL's for a
 * directory ("no start line", "unsupported") does not say what is wrong.
 * Whatever else is wrong with the file, OpenSSL says as it reads it. */
static int pem_file_check(const char *what, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s %s: is a directory, not a PEM file", what, path);
        return -1;
    }
    return 0;
}

/* RFC 9113 §3.2: h2 over TLS is chosen with ALPN. A client that offers no h2
 * gets a fatal no_application_protocol alert (RFC 7301 §3.2). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h2[] = {2, 'h', '2'};
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h2, sizeof h2, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS context: %s", tlserr_take(why, sizeof why, "unknown TLS error"));
        return NULL;
    }
    /* RFC 9113 §9.2: TLS 1.2 or later, no compression, no renegotiation. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* RFC 9113 §9.2.2 forbids the TLS 1.2 cipher suites of its Appendix A;
     * allow only AEAD suites with forward secrecy. */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    /* No SSL_MODE_RELEASE_BUFFERS: it frees and re-allocates a 16 KiB record
     * buffer around every write, thousands of times a second under media. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    /* Read-ahead: one read() takes every record the kernel holds (up to the
     * 16 KiB record buffer) instead of two per record (header, then body). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (pem_file_check("certificate", cert_file, err, errlen) < 0 ||
        pem_file_check("private key", key_file, err, errlen) < 0)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(err, errlen, "certificate %s: %s", cert_file,
                 tlserr_take(why, sizeof why, "unknown TLS error"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL checks the key against the certificate as it loads it. */
        unsigned long e = ERR_peek_error();
        int mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 &&
                       (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
                        ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
        tlserr_take(why, sizeof why, "unknown TLS error");
        if (mismatch)
            snprintf(err, errlen, "private key %s does not match certificate %s (%s)", key_file,
                     cert_file, why);
        else
            snprintf(err, errlen, "private key %s: %s", key_file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tlserr_take(why, sizeof why, "unknown TLS error");
        snprintf(err, errlen, "private key %s does not match certificate %s", key_file,
                 cert_file);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
