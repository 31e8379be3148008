/*
 * test_tlsmem.c — gateway/tlsmem.c: OpenSSL's small blocks come back from a
 * bounded free list per thread, large ones and reallocations stay malloc's,
 * and TLS 1.3 records, once a connection is warm, allocate nothing from the
 * heap in either direction. Installed by a constructor, before anything in
 * this process uses OpenSSL (as sluiced's main does). Under a sanitizer the
 * allocator stays out of the way and the tests that need it are skipped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../gateway/heap.h"
#include "../../gateway/tlsmem.h"

static int install_result = -1;

__attribute__((constructor)) static void install_first(void)
{
    install_result = tlsmem_install();
}

static void need_allocator(void)
{
    if (!tlsmem_installed())
        cr_skip_test("a sanitizer's malloc serves this build: tlsmem stays out of the way");
}

static tlsmem_stats_t stats(void)
{
    tlsmem_stats_t s;
    tlsmem_stats(&s);
    return s;
}

Test(tlsmem, installs_before_openssl_allocates_and_not_under_a_sanitizer)
{
#ifdef HEAP_OWN_ALLOCATOR
    cr_assert_eq(install_result, 0);
    cr_assert_not(tlsmem_installed());
#else
    cr_assert_eq(install_result, 1);
    cr_assert(tlsmem_installed());
    cr_assert_eq(tlsmem_install(), 1, "a second call is harmless");
#endif
}

Test(tlsmem, a_freed_small_block_is_handed_out_again_zeroed_by_zalloc)
{
    need_allocator();
    unsigned char *p = OPENSSL_malloc(40);
    cr_assert_not_null(p);
    memset(p, 0xa5, 40);
    OPENSSL_free(p);
    tlsmem_stats_t before = stats();
    unsigned char *q = OPENSSL_zalloc(TLSMEM_SMALL);
    cr_assert_eq((void *)q, (void *)p, "the freed block was not reused");
    for (unsigned i = 0; i < TLSMEM_SMALL; i++)
        cr_assert_eq(q[i], 0, "byte %u of a zalloc'd block is not zero", i);
    tlsmem_stats_t after = stats();
    cr_assert_eq(after.reused, before.reused + 1);
    cr_assert_eq(after.heap, before.heap);
    OPENSSL_free(q);
}

Test(tlsmem, large_blocks_go_back_to_malloc_and_the_list_is_bounded)
{
    need_allocator();
    unsigned listed = stats().listed;
    void *big = OPENSSL_malloc(4096);
    cr_assert_not_null(big);
    OPENSSL_free(big);
    cr_assert_eq(stats().listed, listed, "a large block went onto the list");

    void *blocks[TLSMEM_KEEP + 8];
    for (unsigned i = 0; i < TLSMEM_KEEP + 8; i++)
        cr_assert_not_null(blocks[i] = OPENSSL_malloc(1 + i % TLSMEM_SMALL));
    cr_assert_eq(stats().listed, 0);
    for (unsigned i = 0; i < TLSMEM_KEEP + 8; i++)
        OPENSSL_free(blocks[i]);
    cr_assert_eq(stats().listed, TLSMEM_KEEP, "the list holds %u blocks", stats().listed);
}

Test(tlsmem, realloc_keeps_the_bytes_in_place_or_moved)
{
    need_allocator();
    unsigned char *p = OPENSSL_malloc(40);
    cr_assert_not_null(p);
    for (int i = 0; i < 40; i++)
        p[i] = (unsigned char)i;
    unsigned char *q = OPENSSL_realloc(p, TLSMEM_SMALL);
    cr_assert_eq((void *)q, (void *)p, "a block of TLSMEM_SMALL bytes holds the request");
    unsigned char *r = OPENSSL_realloc(q, 5000);
    cr_assert_not_null(r);
    for (int i = 0; i < 40; i++)
        cr_assert_eq(r[i], i, "byte %d was lost in the move", i);
    cr_assert_null(OPENSSL_realloc(r, 0), "realloc to 0 frees");
    unsigned char *s = OPENSSL_realloc(NULL, 10);
    cr_assert_not_null(s, "realloc of NULL allocates");
    OPENSSL_free(s);
}

/* A TLS 1.3 connection over a socket pair, both ends on this thread: the
 * development certificate on the server, no verification on the client. */
typedef struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *srv, *cli;
    int fd[2];
} pair_t;

static void pair_open(pair_t *p)
{
    const char *b = getenv("SLUICE_BUILD");
    char cert[1024], key[1024];
    cr_assert_not_null(b, "SLUICE_BUILD is not set (tests/run.sh sets it)");
    snprintf(cert, sizeof cert, "%s/dev/cert.pem", b);
    snprintf(key, sizeof key, "%s/dev/key.pem", b);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd), 0);
    p->sctx = SSL_CTX_new(TLS_server_method());
    p->cctx = SSL_CTX_new(TLS_client_method());
    cr_assert(p->sctx && p->cctx);
    SSL_CTX_set_min_proto_version(p->sctx, TLS1_3_VERSION);
    cr_assert_eq(SSL_CTX_use_certificate_chain_file(p->sctx, cert), 1, "no certificate at %s",
                 cert);
    cr_assert_eq(SSL_CTX_use_PrivateKey_file(p->sctx, key, SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_num_tickets(p->sctx, 0);
    p->srv = SSL_new(p->sctx);
    p->cli = SSL_new(p->cctx);
    SSL_set_fd(p->srv, p->fd[0]);
    SSL_set_fd(p->cli, p->fd[1]);
    SSL_set_accept_state(p->srv);
    SSL_set_connect_state(p->cli);
    int sdone = 0, cdone = 0;
    for (int i = 0; i < 100 && !(sdone && cdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(p->cli);
            cdone = r == 1;
            cr_assert(cdone || SSL_get_error(p->cli, r) == SSL_ERROR_WANT_READ,
                      "client handshake failed");
        }
        if (!sdone) {
            int r = SSL_do_handshake(p->srv);
            sdone = r == 1;
            cr_assert(sdone || SSL_get_error(p->srv, r) == SSL_ERROR_WANT_READ,
                      "server handshake failed");
        }
    }
    cr_assert(sdone && cdone, "the handshake did not finish");
}

static void pair_close(pair_t *p)
{
    SSL_free(p->srv);
    SSL_free(p->cli);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
    close(p->fd[0]);
    close(p->fd[1]);
}

/* One record of n bytes from one end to the other, read back whole. */
static void one_record(SSL *from, SSL *to, size_t n)
{
    unsigned char out[1200], in[1200];
    memset(out, (int)n, n);
    cr_assert_eq(SSL_write(from, out, (int)n), (int)n);
    int got = SSL_read(to, in, sizeof in);
    cr_assert_eq(got, (int)n, "read %d of %zu bytes", got, n);
    cr_assert_eq(memcmp(in, out, n), 0);
}

Test(tlsmem, warm_tls_records_allocate_nothing_from_the_heap)
{
    need_allocator();
    pair_t p = {0};
    pair_open(&p);
    for (int i = 0; i < 20; i++) { /* warm: buffers, the first records */
        one_record(p.cli, p.srv, 200);
        one_record(p.srv, p.cli, 200);
    }
    tlsmem_stats_t before = stats();
    for (int i = 0; i < 1000; i++) {
        one_record(p.cli, p.srv, i % 2 ? 200 : 1200);
        one_record(p.srv, p.cli, i % 2 ? 1200 : 200);
    }
    tlsmem_stats_t after = stats();
    cr_assert_eq(after.heap, before.heap,
                 "2,000 records took %llu blocks from the heap",
                 (unsigned long long)(after.heap - before.heap));
    cr_assert_geq(after.reused - before.reused, 2000,
                  "only %llu blocks came from the list for 2,000 records",
                  (unsigned long long)(after.reused - before.reused));
    pair_close(&p);
}
