/*
 * tls.c — TLS over memory BIOs for the client connection.
 *
 * OpenSSL never touches the socket: client.c writes what it reads from the
 * transport into _rbio and sends what accumulates in _wbio. That keeps TLS
 * independent of how the byte pipe was made (direct TCP today, a CONNECT
 * proxy later). The peer is verified against the trust store: chain, then
 * host name (RFC 6125) or IP address, and ALPN must select "h2" (RFC 9113
 * §3.2).
 */
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "../../common/tlserr.h"
#include "shim_addr.h"
#include "shim_internal.h"

SSL_CTX *shim_tls__ctx_new(const char *ca_file, char *err, size_t errlen)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx) {
        tlserr_take(e, sizeof(e), "unknown error");
        snprintf(err, errlen, "cannot create TLS context: %s", e);
        return NULL;
    }
    /* RFC 9113 §9.2: TLS 1.2 or later, no compression, no renegotiation. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0) {
        snprintf(err, errlen, "cannot set ALPN");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            tlserr_take(e, sizeof(e), "unknown error");
            snprintf(err, errlen, "cannot load CA file '%s': %s", ca_file, e);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tlserr_take(e, sizeof(e), "unknown error");
        snprintf(err, errlen, "cannot load the system trust store: %s", e);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int shim_tls__begin(sluice_client_t *c, char *err, size_t errlen)
{
    const char *name = c->_server_name;
    SSL *ssl = SSL_new(c->_ctx);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());

    if (!ssl || !rbio || !wbio) {
        SSL_free(ssl);
        BIO_free(rbio);
        BIO_free(wbio);
        snprintf(err, errlen, "cannot create TLS session: out of memory");
        return -1;
    }
    /* An empty read BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);

    if (shim_host_ip_family(name)) {
        /* RFC 6066 §3: no SNI for IP literals; match an iPAddress SAN. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1)
            goto bad_name;
    } else {
        if (SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1)
            goto bad_name;
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    c->_ssl = ssl;
    c->_rbio = rbio;
    c->_wbio = wbio;
    return 0;

bad_name:
    SSL_free(ssl);
    snprintf(err, errlen, "cannot verify against server name '%s'", name);
    return -1;
}

/* Returns 1 when the handshake is complete and the peer acceptable, 0 when
 * it needs more input, -1 with err on failure. */
int shim_tls__handshake(sluice_client_t *c, char *err, size_t errlen)
{
    const unsigned char *proto = NULL;
    unsigned int plen = 0;
    char e[256];
    int rc = SSL_do_handshake(c->_ssl);

    if (rc != 1) {
        int se = SSL_get_error(c->_ssl, rc);
        long vr;
        if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            return 0;
        }
        vr = SSL_get_verify_result(c->_ssl);
        if (vr != X509_V_OK) {
            snprintf(err, errlen, "TLS certificate verification failed: %s",
                     X509_verify_cert_error_string(vr));
            ERR_clear_error();
        } else if (se == SSL_ERROR_SSL &&
                   ERR_GET_REASON(ERR_peek_error()) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL) {
            tlserr_take(e, sizeof(e), "unknown error");
            snprintf(err, errlen, "gateway did not negotiate HTTP/2 (ALPN h2): %s", e);
        } else if (se == SSL_ERROR_SSL) {
            tlserr_take(e, sizeof(e), "unknown error");
            snprintf(err, errlen, "TLS handshake failed: %s", e);
        } else {
            ERR_clear_error();
            snprintf(err, errlen, "TLS handshake failed (error %d)", se);
        }
        return -1;
    }
    SSL_get0_alpn_selected(c->_ssl, &proto, &plen);
    if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
        if (plen)
            snprintf(err, errlen, "gateway did not negotiate HTTP/2: ALPN '%.*s'", (int)plen,
                     (const char *)proto);
        else
            snprintf(err, errlen, "gateway did not negotiate HTTP/2: no ALPN");
        return -1;
    }
    return 1;
}

void shim_tls__free(sluice_client_t *c)
{
    SSL_free(c->_ssl); /* frees both BIOs */
    c->_ssl = NULL;
    c->_rbio = c->_wbio = NULL;
}
