/*
 * test_h2mem.c — gateway/h2mem.c: a session's one large buffer is mapped,
 * resident only where written and given back by h2mem_release; everything
 * else is malloc's; and an nghttp2 session runs on it, also across a release.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/h2mem.h"

static size_t page;
static h2mem_t m;
static nghttp2_mem mem;

static void setup(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    memset(&m, 0, sizeof m);
    h2mem_init(&m, &mem);
}

TestSuite(h2mem, .init = setup);

Test(h2mem, a_large_request_is_mapped_and_resident_only_where_written)
{
    unsigned before = h2mem_mapped();
    uint8_t *p = mem.malloc(16394, mem.mem_user_data);
    cr_assert_not_null(p);
    cr_assert_eq((void *)p, m.block, "the frame-sized request was not mapped");
    cr_assert_geq(m.cap, 16394);
    cr_assert_eq(m.cap % page, 0);
    cr_assert_eq(h2mem_mapped(), before + 1);
    cr_assert_eq(h2mem_resident(&m), 0, "nothing written yet");
    memset(p, 0xab, 100);
    cr_assert_eq(h2mem_resident(&m), page);
    memset(p, 0xab, 16394);
    cr_assert_eq(h2mem_resident(&m), m.cap);

    cr_assert_eq(h2mem_release(&m), 1);
    cr_assert_eq(h2mem_resident(&m), 0, "release gave no page back");
    cr_assert_eq(p[0], 0, "a released block reads as zeros");
    p[16393] = 7; /* and stays usable */
    cr_assert_eq(p[16393], 7);

    mem.free(p, mem.mem_user_data);
    cr_assert_null(m.block);
    cr_assert_eq(h2mem_mapped(), before);
    cr_assert_eq(h2mem_release(&m), 0);
}

Test(h2mem, small_requests_and_a_second_large_one_are_mallocs)
{
    void *small = mem.malloc(1024, mem.mem_user_data);
    void *zeroed = mem.calloc(32, 128, mem.mem_user_data);
    cr_assert_not_null(small);
    cr_assert_not_null(zeroed);
    cr_assert_null(m.block);
    void *big = mem.calloc(1, 20000, mem.mem_user_data);
    cr_assert_eq(big, m.block);
    void *big2 = mem.malloc(20000, mem.mem_user_data);
    cr_assert_not_null(big2);
    cr_assert_neq(big2, m.block, "only one block per session is mapped");
    memset(big2, 1, 20000);
    mem.free(big2, mem.mem_user_data); /* malloc's free: ASan would say otherwise */
    mem.free(small, mem.mem_user_data);
    mem.free(zeroed, mem.mem_user_data);
    mem.free(big, mem.mem_user_data);
    cr_assert_null(m.block);
    cr_assert_null(mem.calloc(SIZE_MAX / 2, 4, mem.mem_user_data), "overflow not refused");
}

Test(h2mem, realloc_moves_contents_into_and_within_the_block)
{
    uint8_t *p = mem.realloc(NULL, 100, mem.mem_user_data);
    cr_assert_not_null(p);
    for (int i = 0; i < 100; i++)
        p[i] = (uint8_t)i;
    uint8_t *q = mem.realloc(p, 16394, mem.mem_user_data);
    cr_assert_eq((void *)q, m.block, "growing to frame size did not map");
    for (int i = 0; i < 100; i++)
        cr_assert_eq(q[i], (uint8_t)i, "byte %d lost moving into the block", i);
    cr_assert_eq(mem.realloc(q, 16000, mem.mem_user_data), q, "shrinking moved the block");
    size_t cap = m.cap;
    q[cap - 1] = 0x5a;
    uint8_t *r = mem.realloc(q, cap + 1, mem.mem_user_data);
    cr_assert_eq((void *)r, m.block);
    cr_assert_gt(m.cap, cap);
    cr_assert_eq(r[0], 0);
    cr_assert_eq(r[99], 99);
    cr_assert_eq(r[cap - 1], 0x5a, "growing the block lost its contents");
    cr_assert_null(mem.realloc(r, 0, mem.mem_user_data));
    cr_assert_null(m.block);
}

Test(h2mem, beyond_the_process_cap_blocks_come_from_malloc)
{
    static h2mem_t many[H2MEM_MAX_BLOCKS + 1];
    static nghttp2_mem mems[H2MEM_MAX_BLOCKS + 1];
    static void *ptrs[H2MEM_MAX_BLOCKS + 1];
    unsigned base = h2mem_mapped();
    size_t n = H2MEM_MAX_BLOCKS - base;
    for (size_t i = 0; i <= n; i++) {
        h2mem_init(&many[i], &mems[i]);
        ptrs[i] = mems[i].calloc(1, 16394, mems[i].mem_user_data); /* mapped, untouched */
        cr_assert_not_null(ptrs[i]);
    }
    cr_assert_eq(h2mem_mapped(), H2MEM_MAX_BLOCKS);
    cr_assert_null(many[n].block, "block %zu mapped beyond the cap", n);
    /* At the cap a block that must grow moves to malloc, contents and all. */
    memset(ptrs[0], 0x42, 16394);
    uint8_t *grown = mems[0].realloc(ptrs[0], 40000, mems[0].mem_user_data);
    cr_assert_not_null(grown);
    cr_assert_null(many[0].block);
    cr_assert_eq(grown[0], 0x42);
    cr_assert_eq(grown[16393], 0x42);
    cr_assert_eq(h2mem_mapped(), H2MEM_MAX_BLOCKS - 1, "the old block was not unmapped");
    ptrs[0] = grown;
    mems[0].free(ptrs[0], mems[0].mem_user_data);
    h2mem_t again = {0};
    nghttp2_mem again_mem;
    h2mem_init(&again, &again_mem);
    void *p = again_mem.malloc(16394, again_mem.mem_user_data);
    cr_assert_eq(p, again.block, "a freed slot was not reused");
    again_mem.free(p, again_mem.mem_user_data);
    for (size_t i = 1; i <= n; i++)
        mems[i].free(ptrs[i], mems[i].mem_user_data);
    cr_assert_eq(h2mem_mapped(), base);
}

/* ---- an nghttp2 session on it ------------------------------------------- */

static ssize_t read_payload(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    size_t *left = src->ptr;
    size_t n = *left < len ? *left : len;
    memset(buf, 'x', n);
    *left -= n;
    if (!*left)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                    size_t len, void *ud)
{
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(data[i], 'x', "payload byte corrupted");
    *(size_t *)ud += len;
    return 0;
}

/* Moves everything each side wants to send to the other. */
static void exchange(nghttp2_session *a, nghttp2_session *b)
{
    for (int round = 0; round < 64; round++) {
        int moved = 0;
        nghttp2_session *from[2] = {a, b}, *to[2] = {b, a};
        for (int k = 0; k < 2; k++) {
            const uint8_t *d;
            ssize_t n;
            while ((n = nghttp2_session_mem_send(from[k], &d)) > 0) {
                cr_assert_eq(nghttp2_session_mem_recv(to[k], d, (size_t)n), n);
                moved = 1;
            }
            cr_assert_geq(n, 0);
        }
        if (!moved)
            return;
    }
    cr_assert_fail("the sessions did not settle");
}

Test(h2mem, a_server_session_runs_on_it_across_releases)
{
    nghttp2_session_callbacks *cbs;
    cr_assert_eq(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_chunk);
    nghttp2_session *server, *client;
    size_t server_got = 0, client_got = 0;
    cr_assert_eq(nghttp2_session_server_new3(&server, cbs, &server_got, NULL, &mem), 0);
    cr_assert_eq(nghttp2_session_client_new(&client, cbs, &client_got), 0);
    cr_assert_eq(nghttp2_submit_settings(server, 0, NULL, 0), 0);
    cr_assert_eq(nghttp2_submit_settings(client, 0, NULL, 0), 0);
    exchange(client, server);
    cr_assert_not_null(m.block, "the session's frame buffer was not mapped");
    cr_assert_eq(nghttp2_session_want_write(server), 0);

    for (int i = 0; i < 3; i++) {
        cr_assert_eq(h2mem_release(&m), 1);
        cr_assert_eq(h2mem_resident(&m), 0);
        /* A request with a body, answered with a body larger than a page. */
        size_t up = 3000, down = 12000;
        nghttp2_data_provider up_src = {.source.ptr = &up, .read_callback = read_payload};
        nghttp2_data_provider down_src = {.source.ptr = &down, .read_callback = read_payload};
        nghttp2_nv req[] = {
            {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
            {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
            {(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0},
            {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
        };
        int32_t id = nghttp2_submit_request(client, NULL, req, 4, &up_src, NULL);
        cr_assert_gt(id, 0);
        exchange(client, server);
        nghttp2_nv resp[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0}};
        cr_assert_eq(nghttp2_submit_response(server, id, resp, 1, &down_src), 0);
        exchange(client, server);
        cr_assert_eq(server_got, 3000u * (size_t)(i + 1));
        cr_assert_eq(client_got, 12000u * (size_t)(i + 1), "round %d: the response was lost", i);
        cr_assert_gt(h2mem_resident(&m), page, "12 KB of DATA did not go through the block");
    }
    nghttp2_session_del(client);
    nghttp2_session_del(server);
    cr_assert_null(m.block, "the session did not free its block");
    nghttp2_session_callbacks_del(cbs);
}
