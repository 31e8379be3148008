/*
 * etcd_loop.h — a real etcd (tests/support/ts_etcd.h), a libev loop and an
 * etcd_client_t on it, for the tests of gateway/etcd_client.c and
 * etcd_watch.c. Included by each test file (static state: criterion runs
 * each test in its own process).
 */
#ifndef SLUICE_TEST_ETCD_LOOP_H
#define SLUICE_TEST_ETCD_LOOP_H

#include <criterion/criterion.h>
#include <ev.h>

#include "../../gateway/etcd_client.h"
#include "../support/ts_etcd.h"
#include "../support/ts_util.h"

static ts_etcd_t etcd;
static struct ev_loop *loop;
static etcd_client_t *client;

/* etcd started (the test is skipped without Debian's etcd-server) and a loop. */
static void etcd_loop_start(void)
{
    if (!ts_etcd_available())
        cr_skip_test("no " TS_ETCD_BIN " (Debian package etcd-server)");
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not start");
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
}

/* The client on endpoints, attached to the loop. */
static void etcd_loop_client(const char *const *eps, size_t n)
{
    client = etcd_client_new(eps, n);
    cr_assert_not_null(client);
    cr_assert_eq(etcd_client_attach(client, loop), 0);
}

/* Frees the client and the loop, stops etcd. Idempotent. */
static void etcd_loop_end(void)
{
    etcd_client_free(client);
    client = NULL;
    if (loop)
        ev_loop_destroy(loop);
    loop = NULL;
    ts_etcd_end(&etcd);
}

#endif
