/*
 * tls.c — TLS for the client connection: the shared context (sluice_tls_t,
 * with its session cache) and each connection's TLS over memory BIOs.
 *
 * OpenSSL never touches the transport: shim_tls__pull moves ciphertext from
 * the byte pipe (shim_pipe.h) into _rbio and shim_tls__push moves what
 * accumulates in _wbio into the pipe. That keeps TLS independent of how the
 * pipe was made (direct TCP today, a CONNECT proxy later). The peer is
 * verified against the trust store: chain, then host name (RFC 6125) or IP
 * address, and ALPN must select "h2" (RFC 9113 §3.2).
 *
 * Session resumption: the context keeps the newest ticket per gateway
 * authority (server name and port). A connection takes its gateway's ticket,
 * if any, when it begins (one use per ticket, RFC 8446 Appendix C.4), and the
 * tickets the gateway sends after the handshake refill the cache through
 * OpenSSL's new-session callback.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/tlserr.h"
#include "shim_addr.h"
#include "shim_internal.h"

#define TLS_SESSIONS 8u /* gateways whose ticket is kept */

struct st_sluice_tls_t {
    SSL_CTX *ctx;
    unsigned refs;
    uint64_t _stamp; /* use counter: the least recently stored entry goes first */
    struct {
        char key[SHIM_AUTHORITY_MAX]; /* "" when free */
        SSL_SESSION *sess;
        uint64_t stamp;
    } _cache[TLS_SESSIONS];
};

/* Stores sess (taking the caller's reference) as key's ticket, replacing
 * key's older one, else a free entry, else the one stored longest ago (free
 * entries have stamp 0, so the lowest stamp covers both). */
static void tls_cache_put(sluice_tls_t *tls, const char *key, SSL_SESSION *sess)
{
    size_t slot = 0;

    for (size_t i = 0; i < TLS_SESSIONS; i++) {
        if (tls->_cache[i].sess && strcmp(tls->_cache[i].key, key) == 0) {
            slot = i;
            break;
        }
        if (tls->_cache[i].stamp < tls->_cache[slot].stamp)
            slot = i;
    }
    SSL_SESSION_free(tls->_cache[slot].sess); /* NULL-safe */
    snprintf(tls->_cache[slot].key, sizeof(tls->_cache[slot].key), "%s", key);
    tls->_cache[slot].sess = sess;
    tls->_cache[slot].stamp = ++tls->_stamp;
}

/* Removes key's ticket from the cache and returns it (the caller's
 * reference), or NULL. */
static SSL_SESSION *tls_cache_take(sluice_tls_t *tls, const char *key)
{
    for (size_t i = 0; i < TLS_SESSIONS; i++) {
        if (tls->_cache[i].sess && strcmp(tls->_cache[i].key, key) == 0) {
            SSL_SESSION *sess = tls->_cache[i].sess;
            tls->_cache[i].sess = NULL;
            tls->_cache[i].key[0] = '\0';
            tls->_cache[i].stamp = 0;
            return sess;
        }
    }
    return NULL;
}

/* OpenSSL's new-session callback: a ticket (TLS 1.3, after the handshake)
 * or a TLS 1.2 session. We keep a copy, not OpenSSL's object: that one stays
 * the connection's session, and OpenSSL marks it not resumable when the
 * connection ends without close_notify, which a gateway closing an idle
 * connection or a lost network does (and which, since RFC 4346 §7.2.1, need
 * not stop a resumption). Returns 0: OpenSSL keeps its own reference. */
static int tls_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    sluice_client_t *c = SSL_get_app_data(ssl);
    SSL_SESSION *copy;

    if (!c || !SSL_SESSION_is_resumable(sess))
        return 0;
    copy = SSL_SESSION_dup(sess);
    if (copy)
        tls_cache_put(c->_tls, c->_authority, copy);
    return 0;
}

sluice_tls_t *sluice_tls_new(const char *ca_file, char *err, size_t errlen)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    char tmp[SHIM_DETAIL_MAX], e[256];
    sluice_tls_t *tls;

    if (!err) {
        err = tmp;
        errlen = sizeof(tmp);
    }
    tls = calloc(1, sizeof(*tls));
    if (!tls) {
        snprintf(err, errlen, "cannot create TLS context: out of memory");
        return NULL;
    }
    tls->refs = 1;
    tls->ctx = SSL_CTX_new(TLS_client_method());
    if (!tls->ctx) {
        tlserr_take(e, sizeof(e), "unknown error");
        snprintf(err, errlen, "cannot create TLS context: %s", e);
        goto fail;
    }
    /* RFC 9113 §9.2: TLS 1.2 or later, no compression, no renegotiation. */
    SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(tls->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(tls->ctx, SSL_VERIFY_PEER, NULL);
    /* Our own cache, keyed by gateway; OpenSSL's internal one is keyed by
     * session id, which a client cannot look up by server. */
    SSL_CTX_set_session_cache_mode(tls->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(tls->ctx, tls_on_new_session);
    if (SSL_CTX_set_alpn_protos(tls->ctx, alpn, sizeof(alpn)) != 0) {
        snprintf(err, errlen, "cannot set ALPN");
        goto fail;
    }
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(tls->ctx, ca_file, NULL) != 1) {
            FILE *f = fopen(ca_file, "r");
            if (!f) {
                snprintf(err, errlen, "cannot load CA file '%s': %s", ca_file, strerror(errno));
                ERR_clear_error();
            } else {
                fclose(f);
                tlserr_take(e, sizeof(e), "unknown error");
                snprintf(err, errlen, "cannot load CA file '%s': no PEM certificate in it (%s)",
                         ca_file, e);
            }
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(tls->ctx) != 1) {
        tlserr_take(e, sizeof(e), "unknown error");
        snprintf(err, errlen, "cannot load the system trust store: %s", e);
        goto fail;
    }
    return tls;

fail:
    SSL_CTX_free(tls->ctx);
    free(tls);
    return NULL;
}

sluice_tls_t *shim_tls__ref(sluice_tls_t *tls)
{
    tls->refs++;
    return tls;
}

void sluice_tls_free(sluice_tls_t *tls)
{
    if (!tls || --tls->refs > 0)
        return;
    for (size_t i = 0; i < TLS_SESSIONS; i++)
        SSL_SESSION_free(tls->_cache[i].sess);
    SSL_CTX_free(tls->ctx);
    free(tls);
}

int shim_tls__begin(sluice_client_t *c, char *err, size_t errlen)
{
    const char *name = c->_server_name;
    SSL *ssl = SSL_new(c->_tls->ctx);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    SSL_SESSION *sess;

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
    /* The ticket was issued for this server name (RFC 8446 §4.6.1); if the
     * gateway no longer takes it, the handshake is simply a full one. */
    sess = tls_cache_take(c->_tls, c->_authority);
    if (sess) {
        SSL_set_session(ssl, sess); /* takes its own reference */
        SSL_SESSION_free(sess);
    }
    SSL_set_app_data(ssl, c);
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
int shim_tls__handshake(sluice_client_t *c, char *err, size_t errlen, sluice_fail_t *fail)
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
        *fail = SLUICE_FAIL_TLS;
        if (vr != X509_V_OK) {
            *fail = SLUICE_FAIL_CERT;
            snprintf(err, errlen, "TLS certificate verification failed: %s",
                     X509_verify_cert_error_string(vr));
            ERR_clear_error();
        } else if (se == SSL_ERROR_SSL &&
                   ERR_GET_REASON(ERR_peek_error()) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL) {
            *fail = SLUICE_FAIL_ALPN;
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
        *fail = SLUICE_FAIL_ALPN;
        if (plen)
            snprintf(err, errlen, "gateway did not negotiate HTTP/2: ALPN '%.*s'", (int)plen,
                     (const char *)proto);
        else
            snprintf(err, errlen, "gateway did not negotiate HTTP/2: no ALPN");
        return -1;
    }
    return 1;
}

int shim_tls__resumed(const sluice_client_t *c)
{
    return c->_ssl && SSL_session_reused(c->_ssl);
}

ssize_t shim_tls__pull(sluice_client_t *c)
{
    ssize_t n = shim_pipe_read(c->_pipe, c->_buf, sizeof(c->_buf));

    if (n > 0 && BIO_write(c->_rbio, c->_buf, (int)n) != (int)n) {
        snprintf(c->_pipe->err, sizeof(c->_pipe->err), "out of memory");
        return SHIM_PIPE_ERROR;
    }
    return n;
}

/* The kernel takes at most _kbudget bytes between two signs that it is
 * writable: with TCP_NOTSENT_LOWAT a socket is writable only while little is
 * unsent, but a write still appends to the last segment, so without the
 * budget a busy path would let tens of KiB wait unsent in the kernel, where
 * nobody drops the oldest media. What does not go waits in the tunnels'
 * age-bounded queues (shim_dial_tune). */
int shim_tls__push(sluice_client_t *c)
{
    for (;;) {
        char *p = NULL;
        long pending = BIO_get_mem_data(c->_wbio, &p);
        ssize_t w;

        if (pending <= 0)
            return 0;
        if (c->_kbudget == 0)
            return 1;
        if ((size_t)pending > c->_kbudget)
            pending = (long)c->_kbudget;
        w = shim_pipe_write(c->_pipe, (const uint8_t *)p, (size_t)pending);
        if (w == SHIM_PIPE_AGAIN)
            return 1;
        if (w < 0)
            return -1;
        c->_kbudget -= (size_t)w;
        /* Consume what went out; _buf is free scratch outside a pull. */
        while (w > 0) {
            int k = BIO_read(c->_wbio, c->_buf,
                             w > (ssize_t)sizeof(c->_buf) ? (int)sizeof(c->_buf) : (int)w);
            if (k <= 0)
                break;
            w -= k;
        }
    }
}

void shim_tls__free(sluice_client_t *c)
{
    SSL_free(c->_ssl); /* frees both BIOs */
    c->_ssl = NULL;
    c->_rbio = c->_wbio = NULL;
}
