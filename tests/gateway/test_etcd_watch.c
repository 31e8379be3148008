/*
 * test_etcd_watch.c — gateway/etcd_watch.c, a range read then a watch over
 * one prefix, on a libev loop in this process against a real etcd
 * (tests/support/ts_etcd.c). An owner that records every callback:
 *  - the range (in key order, between BEGIN and KEEP), then the events in
 *    the order etcd made them, a DELETE with no value, keys outside the
 *    prefix never; the revision moves with events only;
 *  - a watch from a compacted revision is canceled by etcd: a re-read;
 *  - a key the owner refuses undoes the range, and the chain retries until
 *    the key is gone;
 *  - etcd killed and restarted: down, then up, once each;
 *  - stopped from inside a kv or an applied callback: nothing runs after.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/etcd_watch.h"
#include "etcd_loop.h"

#define PREFIX "/w/"
#define NOTES_MAX 64

/* An owner: what its callbacks saw. */
typedef struct owner {
    etcd_watch_t *w;
    char notes[NOTES_MAX][96]; /* "begin", "put K=V", "del K", "keep", "undo", "applied R C" */
    int nnotes;
    int ndown, nup, napplied;
    char down_why[256];
    int64_t last_rev;
    char refuse[32];           /* kv returns -1 for this key */
    char stop_on_key[32];      /* kv stops the watch on this key */
    int stop_on_applied;       /* applied stops the watch on its first run */
    char seen_key[32];         /* set when this key is put */
    int seen;
} owner_t;

static owner_t *owners[2];

static void note(owner_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(owner_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (o->nnotes < NOTES_MAX)
        vsnprintf(o->notes[o->nnotes], sizeof o->notes[0], fmt, ap);
    va_end(ap);
    o->nnotes++;
}

static void on_range(void *ud, etcd_watch_range_t step)
{
    note(ud, "%s",
         step == ETCD_WATCH_RANGE_BEGIN ? "begin" : step == ETCD_WATCH_RANGE_KEEP ? "keep" : "undo");
}

static int on_kv(void *ud, const etcd_watch_kv_t *kv)
{
    owner_t *o = ud;
    cr_assert_eq(strlen(kv->key), kv->key_len);
    if (!strcmp(kv->key, o->refuse))
        return -1;
    if (kv->deleted) {
        cr_assert_null(kv->value);
        note(o, "del %s", kv->key);
    } else {
        cr_assert_eq(strlen(kv->value), kv->value_len);
        note(o, "put %s=%s", kv->key, kv->value);
        if (!strcmp(kv->key, o->seen_key))
            o->seen++;
    }
    if (!strcmp(kv->key, o->stop_on_key))
        etcd_watch_stop(o->w);
    return 0;
}

static void on_applied(void *ud, int64_t rev, int changed)
{
    owner_t *o = ud;
    note(o, "applied %lld %d", (long long)rev, changed);
    cr_assert_eq(rev, etcd_watch_revision(o->w));
    o->napplied++;
    o->last_rev = rev;
    if (o->stop_on_applied)
        etcd_watch_stop(o->w);
}

static void on_state(void *ud, int up, const char *why)
{
    owner_t *o = ud;
    cr_assert_eq(etcd_watch_up(o->w), up);
    if (up) {
        cr_assert_null(why);
        o->nup++;
        note(o, "up");
    } else {
        o->ndown++;
        snprintf(o->down_why, sizeof o->down_why, "%s", why);
        note(o, "down");
    }
}

static const etcd_watch_ops_t ops = {on_range, on_kv, on_applied, on_state};

static void teardown(void)
{
    for (int i = 0; i < 2; i++) {
        if (owners[i])
            etcd_watch_free(owners[i]->w);
        free(owners[i]);
        owners[i] = NULL;
    }
    etcd_loop_end();
}

/* etcd, a loop and a client on it. */
static void setup(void)
{
    etcd_loop_start();
    const char *eps[] = {etcd.url};
    etcd_loop_client(eps, 1);
}

/* An owner with a watch of PREFIX (not started). */
static owner_t *owner_new(int i)
{
    owner_t *o = calloc(1, sizeof *o);
    cr_assert_not_null(o);
    const etcd_watch_conf_t conf = {.prefix = PREFIX, .range_timeout_ms = 5000,
                                    .log_prefix = "test: ", .read_name = "range read",
                                    .watch_name = "watch"};
    o->w = etcd_watch_new(client, &conf, &ops, o);
    cr_assert_not_null(o->w);
    owners[i] = o;
    return o;
}

static int reached_rev(owner_t *o, int64_t rev)
{
    return etcd_watch_revision(o->w) >= rev && o->last_rev >= rev;
}

/* Runs the loop until the condition holds or deadline (a 20 ms timer bounds
 * each iteration). */
#define RUN_UNTIL(cond, ms)                                                                  \
    do {                                                                                     \
        int64_t dl_ = ts_deadline(ts_ms(ms));                                                \
        ev_timer t_;                                                                         \
        ev_timer_init(&t_, on_tick, 0.02, 0.02);                                             \
        ev_timer_start(loop, &t_);                                                           \
        for (int i_ = 0; i_ < 100000 && !(cond) && ts_now_ms() < dl_; i_++)                  \
            ev_run(loop, EVRUN_ONCE);                                                        \
        ev_timer_stop(loop, &t_);                                                            \
        cr_assert(cond, "timed out waiting for " #cond);                                     \
    } while (0)

static void on_tick(struct ev_loop *l, ev_timer *t, int revents)
{
}

static int has_note(const owner_t *o, int from, const char *s)
{
    for (int i = from; i < o->nnotes && i < NOTES_MAX; i++)
        if (!strcmp(o->notes[i], s))
            return i;
    return -1;
}

/* Past the "applied R 0" notes from from: messages with no events (the
 * watch's created answer). */
static int skip_idle(const owner_t *o, int from)
{
    size_t n;
    while (from < o->nnotes && from < NOTES_MAX && !strncmp(o->notes[from], "applied ", 8) &&
           (n = strlen(o->notes[from])) > 2 && !strcmp(o->notes[from] + n - 2, " 0"))
        from++;
    return from;
}

/* The notes from from start with want (then only idle messages). */
static void assert_notes(const owner_t *o, int from, const char *const *want, int n)
{
    cr_assert_geq(o->nnotes - from, n, "%d notes from %d, want %d (first: %s)",
                  o->nnotes - from, from, n, from < o->nnotes ? o->notes[from] : "-");
    for (int i = 0; i < n; i++)
        cr_assert_str_eq(o->notes[from + i], want[i], "note %d", from + i);
    cr_assert_eq(skip_idle(o, from + n), o->nnotes, "more notes: %s", o->notes[from + n]);
}

Test(etcd_watch, a_range_then_the_events_in_order, .fini = teardown, .timeout = 60)
{
    setup();
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "b", "2", ts_deadline(5000)), 0);
    int64_t r0 = ts_etcd_put(&etcd, PREFIX "a", "1", ts_deadline(5000));
    cr_assert_gt(r0, 0);
    cr_assert_gt(ts_etcd_put(&etcd, "/x/outside", "0", ts_deadline(5000)), r0);
    owner_t *o = owner_new(0);
    etcd_watch_start(o->w, loop);
    cr_assert_eq(o->nnotes, 0, "a callback ran inside etcd_watch_start");
    RUN_UNTIL(o->napplied >= 2, 5000); /* the range, the watch's created answer */
    char applied[64], created[64];
    snprintf(applied, sizeof applied, "applied %lld 1", (long long)r0 + 1);
    snprintf(created, sizeof created, "applied %lld 0", (long long)r0 + 1);
    /* Key order; the range's revision is etcd's (the outside key's put). */
    const char *range[] = {"begin", "put /w/a=1", "put /w/b=2", "keep", applied, created};
    assert_notes(o, 0, range, 6);
    cr_assert_eq(etcd_watch_revision(o->w), r0 + 1);

    /* Events as etcd made them, one message each; the watch's created
     * answer (no events) leaves the revision where the range put it. */
    int from = o->nnotes;
    int64_t r1 = ts_etcd_put(&etcd, PREFIX "c", "3", ts_deadline(5000));
    cr_assert_gt(ts_etcd_put(&etcd, "/x/outside", "1", ts_deadline(5000)), r1);
    int64_t r2 = ts_etcd_delete(&etcd, PREFIX "a", ts_deadline(5000));
    int64_t r3 = ts_etcd_put(&etcd, PREFIX "b", "", ts_deadline(5000));
    cr_assert(r1 > 0 && r2 > r1 && r3 > r2);
    RUN_UNTIL(reached_rev(o, r3), 5000);
    char a1[64], a2[64], a3[64];
    snprintf(a1, sizeof a1, "applied %lld 1", (long long)r1);
    snprintf(a2, sizeof a2, "applied %lld 1", (long long)r2);
    snprintf(a3, sizeof a3, "applied %lld 1", (long long)r3);
    const char *events[] = {"put /w/c=3", a1, "del /w/a", a2, "put /w/b=", a3};
    assert_notes(o, from, events, 6);
    cr_assert_eq(o->ndown + o->nup, 0);
    cr_assert(etcd_watch_up(o->w));
}

/* POST /v3/kv/compaction up to rev. */
static void compact(int64_t rev)
{
    char body[64], *out = NULL, err[256];
    size_t len;
    snprintf(body, sizeof body, "{\"revision\":\"%lld\"}", (long long)rev);
    cr_assert_eq(etcd_client_perform(client, "/v3/kv/compaction", body, 5000, &out, &len, err,
                                     sizeof err),
                 0, "%s", err);
    free(out);
}

Test(etcd_watch, a_compacted_revision_is_read_again, .fini = teardown, .timeout = 60)
{
    setup();
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "a", "1", ts_deadline(5000)), 0);
    owner_t *o = owner_new(0);
    char err[256];
    cr_assert_eq(etcd_watch_read(o->w, err, sizeof err), 0, "%s", err);
    int64_t r0 = etcd_watch_revision(o->w);
    const char *range[] = {"begin", "put /w/a=1", "keep"};
    assert_notes(o, 0, range, 3);
    /* Changes the watch (from r0 + 1) would have to replay, compacted away. */
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "b", "2", ts_deadline(5000)), r0);
    int64_t r2 = ts_etcd_put(&etcd, PREFIX "a", "3", ts_deadline(5000));
    compact(r2);
    int from = o->nnotes;
    etcd_watch_start(o->w, loop);
    RUN_UNTIL(reached_rev(o, r2) && o->nup == 1, 5000);
    cr_assert_eq(o->ndown, 1);
    cr_assert(strstr(o->down_why, "watch lost"), "%s", o->down_why);
    char applied[64];
    snprintf(applied, sizeof applied, "applied %lld 1", (long long)r2);
    const char *again[] = {"down", "begin", "put /w/a=3", "put /w/b=2", "keep", "up", applied};
    assert_notes(o, skip_idle(o, from), again, 7);
}

Test(etcd_watch, a_refused_key_undoes_the_range_until_it_is_gone, .fini = teardown,
     .timeout = 60)
{
    setup();
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "a", "1", ts_deadline(5000)), 0);
    owner_t *o = owner_new(0);
    char err[256];
    cr_assert_eq(etcd_watch_read(o->w, err, sizeof err), 0, "%s", err);
    int64_t r0 = etcd_watch_revision(o->w);
    snprintf(o->refuse, sizeof o->refuse, PREFIX "bad");
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "bad", "x", ts_deadline(5000)), r0);
    /* A blocking read: undone, the revision where it was. */
    int from = o->nnotes;
    cr_assert_eq(etcd_watch_read(o->w, err, sizeof err), -1);
    cr_assert(strstr(err, "unexpected range read answer"), "%s", err);
    cr_assert_eq(etcd_watch_revision(o->w), r0);
    cr_assert_eq(o->notes[o->nnotes - 1][0], 'u', "%s", o->notes[o->nnotes - 1]);
    cr_assert_eq(has_note(o, from, "begin"), from);

    /* On the loop: the event is refused, the re-read undone, and retried
     * (down once) until the key goes. */
    etcd_watch_start(o->w, loop);
    RUN_UNTIL(o->ndown == 1 && has_note(o, from + 3, "undo") >= 0, 5000);
    cr_assert_eq(o->nup, 0);
    cr_assert_eq(etcd_watch_revision(o->w), r0);
    int64_t r2 = ts_etcd_delete(&etcd, PREFIX "bad", ts_deadline(5000));
    RUN_UNTIL(reached_rev(o, r2), 8000);
    cr_assert_eq(o->ndown, 1);
    cr_assert_eq(o->nup, 1);
    cr_assert(etcd_watch_up(o->w));
}

/* How often the client's endpoint has moved, polled. */
static const char *ep_last;
static int ep_moved;
static int ep_moves(void)
{
    if (strcmp(ep_last, etcd_client_endpoint(client))) {
        ep_last = etcd_client_endpoint(client);
        ep_moved++;
    }
    return ep_moved;
}

Test(etcd_watch, etcd_killed_and_restarted_is_down_then_up_once_each, .fini = teardown,
     .timeout = 90)
{
    setup();
    /* Two names for the one etcd: each failure moves the client to the
     * other, which shows the retries made while etcd is away. */
    char other[64];
    snprintf(other, sizeof other, "http://localhost:%u", etcd.port);
    const char *eps[] = {etcd.url, other};
    etcd_client_free(client);
    client = etcd_client_new(eps, 2);
    cr_assert_not_null(client);
    cr_assert_eq(etcd_client_attach(client, loop), 0);
    owner_t *o = owner_new(0);
    etcd_watch_start(o->w, loop);
    RUN_UNTIL(o->napplied >= 1, 5000);
    cr_assert_eq(ts_etcd_kill(&etcd), 0);
    RUN_UNTIL(o->ndown == 1, 5000);
    cr_assert(!etcd_watch_up(o->w));
    /* Three failed re-reads more (back-off 100, 200, 400 ms): still told once. */
    ep_last = etcd_client_endpoint(client);
    RUN_UNTIL(ep_moves() >= 3, 5000);
    cr_assert_eq(o->ndown, 1, "down told %d times", o->ndown);
    cr_assert(strstr(o->down_why, "lost") || strstr(o->down_why, "failed"), "%s", o->down_why);
    cr_assert_eq(ts_etcd_start(&etcd, ts_deadline(ts_ms(20000))), 0, "etcd did not restart");
    snprintf(o->seen_key, sizeof o->seen_key, PREFIX "after");
    int64_t rev = ts_etcd_put(&etcd, PREFIX "after", "1", ts_deadline(5000));
    cr_assert_gt(rev, 0);
    /* Back-off is at most 5 s, then a re-read and a watch. */
    RUN_UNTIL(o->seen >= 1 && reached_rev(o, rev), 15000);
    cr_assert_eq(o->ndown, 1, "down told %d times", o->ndown);
    cr_assert_eq(o->nup, 1, "up told %d times", o->nup);
    cr_assert(etcd_watch_up(o->w));
}

Test(etcd_watch, stopped_from_a_callback_nothing_runs_after, .fini = teardown, .timeout = 60)
{
    setup();
    owner_t *a = owner_new(0), *ref = owner_new(1);
    snprintf(a->stop_on_key, sizeof a->stop_on_key, PREFIX "stop");
    etcd_watch_start(a->w, loop);
    etcd_watch_start(ref->w, loop);
    RUN_UNTIL(a->napplied >= 1 && ref->napplied >= 1, 5000);
    cr_assert_gt(ts_etcd_put(&etcd, PREFIX "stop", "1", ts_deadline(5000)), 0);
    int64_t rev = ts_etcd_put(&etcd, PREFIX "more", "2", ts_deadline(5000));
    /* The other watch has seen both; a stopped on the first (its stream
     * cancelled there: the second cannot reach it later). */
    RUN_UNTIL(reached_rev(ref, rev) && has_note(a, 0, "put /w/stop=1") >= 0, 5000);
    cr_assert_str_eq(a->notes[a->nnotes - 1], "put /w/stop=1",
                     "a callback ran after the stop: %s", a->notes[a->nnotes - 1]);
    cr_assert_lt(etcd_watch_revision(a->w), rev);

    /* Restarted (a watch from its revision), then stopped from its first
     * applied (the created answer): no event reaches it. */
    a->stop_on_key[0] = '\0';
    a->stop_on_applied = 1;
    int from = a->nnotes;
    /* Before the stop it saw the range and perhaps the created answer too:
     * from here exactly one more applied may run. */
    int before = a->napplied;
    etcd_watch_start(a->w, loop);
    int64_t last = ts_etcd_put(&etcd, PREFIX "last", "3", ts_deadline(5000));
    RUN_UNTIL(reached_rev(ref, last) && a->napplied >= before + 1, 5000);
    cr_assert_eq(a->napplied, before + 1);
    cr_assert_eq(has_note(a, from, "put /w/last=3"), -1, "a watch ran after the stop");
    cr_assert_eq(a->ndown, 0);
}
