/*
 * test_etcd_client.c — gateway/etcd_client.c against a real etcd
 * (tests/support/ts_etcd.c) on a libev loop in this process: a call and its
 * whole body; a blocking perform and its errors; a stream that hands out
 * lines as they come; a stream ended from its line callback (by returning -1,
 * or by cancelling it there: nothing runs after); a call cancelled from
 * another call's done callback, and its own cancel there a no-op; a dead
 * endpoint, then failover to the live one. And the pure helpers: base64 both
 * ways, int64 fields, the prefix range end.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/ts_squid.h"
#include "etcd_loop.h"

static void teardown(void)
{
    etcd_loop_end();
}

/* What a call's callbacks saw. */
typedef struct seen {
    int done, status;
    char body[4096], err[512];
    int lines;
    char line[8][512];
    int stop_at;            /* the line callback returns -1 on this line (1-based) */
    int cancel_at;          /* or cancels its own call on it */
    etcd_call_t *self;
    etcd_call_t *cancel_in_done; /* cancelled from the done callback */
} seen_t;

static void on_done(void *ud, int status, const char *body, size_t len, const char *err)
{
    seen_t *s = ud;
    s->done++;
    s->status = status;
    snprintf(s->body, sizeof s->body, "%s", body ? body : "");
    snprintf(s->err, sizeof s->err, "%s", err ? err : "");
    if (s->cancel_in_done) {
        etcd_call_cancel(s->cancel_in_done);
        s->cancel_in_done = NULL;
        etcd_call_cancel(s->self); /* finished already: a no-op */
    }
}

static int on_line(void *ud, const char *line, size_t len)
{
    seen_t *s = ud;
    if (s->lines < 8)
        snprintf(s->line[s->lines], sizeof s->line[0], "%.*s", (int)len, line);
    s->lines++;
    if (s->cancel_at && s->lines == s->cancel_at) {
        etcd_call_cancel(s->self);
        return 0;
    }
    return s->stop_at && s->lines == s->stop_at ? -1 : 0;
}

static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

/* Runs the loop until *flag >= want or deadline; returns 0 when reached. A
 * 20 ms timer bounds each iteration. */
static int run_until(const int *flag, int want, int64_t deadline)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.02, 0.02);
    ev_timer_start(loop, &tick);
    for (int i = 0; i < 100000 && *flag < want && ts_now_ms() < deadline; i++)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return *flag >= want ? 0 : -1;
}

static char *b64(const char *s)
{
    char *out = etcd_b64_encode(s, strlen(s));
    cr_assert_not_null(out);
    return out;
}

/* A loopback port where nothing listens (bound, then closed). */
static void dead_url(char *out, size_t cap)
{
    uint16_t port = ts_free_tcp_port();
    cr_assert_neq(port, 0);
    snprintf(out, cap, "http://127.0.0.1:%u", port);
}

Test(etcd_client, base64_int_and_prefix_end_helpers)
{
    size_t n = 99;
    char *e = etcd_b64_encode("/sluice/", 8);
    cr_assert_str_eq(e, "L3NsdWljZS8=");
    char *d = etcd_b64_decode(e, strlen(e), &n);
    cr_assert_eq(n, 8);
    cr_assert_str_eq(d, "/sluice/");
    free(e);
    free(d);
    d = etcd_b64_decode("YQ==", 4, &n); /* padding is not data */
    cr_assert_eq(n, 1);
    cr_assert_str_eq(d, "a");
    free(d);
    d = etcd_b64_decode("", 0, &n);
    cr_assert_eq(n, 0);
    free(d);
    cr_assert_null(etcd_b64_decode("abc", 3, &n), "not a multiple of 4");
    cr_assert_null(etcd_b64_decode("a*c=", 4, &n), "not base64");

    char msg[64];
    const char *doc = "{\"s\":\"9007199254740993\",\"n\":42,\"x\":true}";
    json_t *j = json_parse(doc, strlen(doc), msg, sizeof msg);
    cr_assert_not_null(j, "%s", msg);
    cr_assert_eq(etcd_json_int(json_get(j, "s")), 9007199254740993LL);
    cr_assert_eq(etcd_json_int(json_get(j, "n")), 42);
    cr_assert_eq(etcd_json_int(json_get(j, "x")), 0);
    cr_assert_eq(etcd_json_int(json_get(j, "absent")), 0);
    json_free(j);

    e = etcd_prefix_end_b64("/a/");
    cr_assert_str_eq(e, "L2Ew"); /* "/a0" */
    free(e);
    e = etcd_prefix_end_b64("a\xff");
    cr_assert_str_eq(e, "Yg=="); /* "b": a trailing 0xff is dropped, then +1 */
    free(e);
    e = etcd_prefix_end_b64("\xff\xff");
    cr_assert_str_eq(e, "AA=="); /* "\0": every key from the prefix on */
    free(e);
}

Test(etcd_client, a_call_and_a_blocking_perform, .fini = teardown, .timeout = 60)
{
    etcd_loop_start();
    const char *eps[] = {etcd.url};
    etcd_loop_client(eps, 1);
    cr_assert_str_eq(etcd_client_endpoint(client), etcd.url);

    char *k = b64("/t/a"), *v = b64("{\"x\":1}"), body[256];
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    seen_t put = {0};
    cr_assert_not_null(etcd_call(client, "/v3/kv/put", body, 5000, on_done, &put));
    cr_assert_eq(put.done, 0, "done ran inside etcd_call");
    cr_assert_eq(run_until(&put.done, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(put.status, 0, "%s", put.err);
    cr_assert(strstr(put.body, "\"revision\""), "%s", put.body);

    snprintf(body, sizeof body, "{\"key\":\"%s\"}", k);
    seen_t get = {0};
    cr_assert_not_null(etcd_call(client, "/v3/kv/range", body, 5000, on_done, &get));
    cr_assert_eq(run_until(&get.done, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(get.status, 0, "%s", get.err);
    cr_assert(strstr(get.body, v), "the value put is not in %s", get.body);

    /* The blocking form, for start-up. */
    char *out = NULL, err[256] = "";
    size_t len = 0;
    cr_assert_eq(etcd_client_perform(client, "/v3/kv/range", body, 5000, &out, &len, err,
                                     sizeof err),
                 0, "%s", err);
    cr_assert(out && strstr(out, v) && len == strlen(out), "%s", out ? out : "(null)");
    free(out);
    /* An HTTP error is an error (FAILONERROR), with curl's reason. */
    cr_assert_eq(etcd_client_perform(client, "/v3/no/such/path", "{}", 5000, &out, &len, err,
                                     sizeof err),
                 -1);
    cr_assert_null(out);
    cr_assert(strstr(err, "404"), "%s", err);
    seen_t bad = {0};
    cr_assert_not_null(etcd_call(client, "/v3/no/such/path", "{}", 5000, on_done, &bad));
    cr_assert_eq(run_until(&bad.done, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(bad.status, -1);
    cr_assert(strstr(bad.err, "404"), "%s", bad.err);
    free(k);
    free(v);
}

Test(etcd_client, a_dead_endpoint_fails_then_failover_reaches_the_live_one, .fini = teardown,
     .timeout = 60)
{
    etcd_loop_start();
    char dead[64];
    dead_url(dead, sizeof dead);
    const char *eps[] = {dead, etcd.url};
    etcd_loop_client(eps, 2);
    const char *body = "{\"key\":\"AA==\"}";
    char *out = NULL, err[256] = "";
    size_t len = 0;
    cr_assert_eq(etcd_client_perform(client, "/v3/kv/range", body, 5000, &out, &len, err,
                                     sizeof err),
                 -1);
    cr_assert(err[0], "no reason given");
    seen_t a = {0};
    cr_assert_not_null(etcd_call(client, "/v3/kv/range", body, 5000, on_done, &a));
    cr_assert_eq(run_until(&a.done, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(a.status, -1);
    cr_assert(a.err[0], "no reason given");

    etcd_client_failover(client);
    cr_assert_str_eq(etcd_client_endpoint(client), etcd.url);
    seen_t b = {0};
    cr_assert_not_null(etcd_call(client, "/v3/kv/range", body, 5000, on_done, &b));
    cr_assert_eq(run_until(&b.done, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(b.status, 0, "%s", b.err);
    cr_assert_eq(etcd_client_perform(client, "/v3/kv/range", body, 5000, &out, &len, err,
                                     sizeof err),
                 0, "%s", err);
    free(out);
    etcd_client_failover(client); /* round robin: back to the first */
    cr_assert_str_eq(etcd_client_endpoint(client), dead);
}

/* A watch on prefix "/w/" from revision 1. */
static etcd_call_t *watch(seen_t *s)
{
    char *k = b64("/w/"), *end = etcd_prefix_end_b64("/w/"), body[256];
    snprintf(body, sizeof body, "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\"}}", k,
             end);
    free(k);
    free(end);
    s->self = etcd_stream(client, "/v3/watch", body, on_line, on_done, s);
    cr_assert_not_null(s->self);
    return s->self;
}

Test(etcd_client, a_stream_hands_out_lines_and_ends_when_the_reader_says, .fini = teardown,
     .timeout = 60)
{
    etcd_loop_start();
    const char *eps[] = {etcd.url};
    etcd_loop_client(eps, 1);
    seen_t w = {.stop_at = 3};
    watch(&w);
    cr_assert_eq(run_until(&w.lines, 1, ts_deadline(ts_ms(5000))), 0, "no created message");
    cr_assert(strstr(w.line[0], "\"created\":true"), "%s", w.line[0]);
    /* Each put is its own line, as it happens. */
    cr_assert_gt(ts_etcd_put(&etcd, "/w/one", "1", ts_deadline(5000)), 0);
    cr_assert_eq(run_until(&w.lines, 2, ts_deadline(ts_ms(5000))), 0, "no event line");
    char *k1 = b64("/w/one");
    cr_assert(strstr(w.line[1], k1), "%s", w.line[1]);
    cr_assert_eq(w.done, 0);
    cr_assert_gt(ts_etcd_put(&etcd, "/w/two", "2", ts_deadline(5000)), 0);
    cr_assert_eq(run_until(&w.done, 1, ts_deadline(ts_ms(5000))), 0, "the stream did not end");
    cr_assert_eq(w.lines, 3);
    cr_assert_eq(w.status, -1);
    cr_assert_str_eq(w.err, "ended by the reader");
    free(k1);
}

Test(etcd_client, a_cancel_from_a_line_or_a_done_callback_silences_the_call, .fini = teardown,
     .timeout = 60)
{
    etcd_loop_start();
    const char *eps[] = {etcd.url};
    etcd_loop_client(eps, 1);
    /* w1 cancels itself on its first line; w2 is cancelled from the done
     * callback of a range call; w3 keeps watching and shows when the puts
     * have been delivered. */
    seen_t w1 = {.cancel_at = 1}, w2 = {0}, w3 = {0};
    watch(&w1);
    watch(&w2);
    watch(&w3);
    cr_assert_eq(run_until(&w3.lines, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(run_until(&w2.lines, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(run_until(&w1.lines, 1, ts_deadline(ts_ms(5000))), 0);
    seen_t r = {.cancel_in_done = w2.self};
    r.self = etcd_call(client, "/v3/kv/range", "{\"key\":\"AA==\"}", 5000, on_done, &r);
    cr_assert_not_null(r.self);
    cr_assert_eq(run_until(&r.done, 1, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(r.status, 0, "%s", r.err);

    cr_assert_gt(ts_etcd_put(&etcd, "/w/x", "1", ts_deadline(5000)), 0);
    cr_assert_eq(run_until(&w3.lines, 2, ts_deadline(ts_ms(5000))), 0);
    cr_assert_eq(w1.lines, 1, "a call cancelled in its line callback got another line");
    cr_assert_eq(w1.done, 0, "a cancelled call's done ran");
    cr_assert_eq(w2.lines, 1, "a call cancelled from another's done got a line");
    cr_assert_eq(w2.done, 0);
    cr_assert_eq(r.done, 1);
}
