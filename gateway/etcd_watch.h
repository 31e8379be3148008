/*
 * etcd_watch.h — one prefix of etcd v3 kept in step: a range read, then a
 * watch from the next revision, re-read whenever the watch is lost. The
 * tenant store (etcd.c) and the fleet's members (fleet.c) each run one.
 *
 * The chain, on the owner's etcd_client_t (etcd_client.h) and libev loop:
 *   range read (POST /v3/kv/range, prefix .. prefix end)
 *     -> watch from its revision + 1 (POST /v3/watch, one JSON object a line)
 *     -> every message: its events (PUT, DELETE) in order, then "applied".
 * A failure anywhere (etcd unreachable, an HTTP error, a range answer that
 * does not decode, a watch message that is an error, canceled or compacted
 * (compact_revision), an event the owner refuses, the stream ending) moves
 * the client to its next endpoint (etcd_client_failover) and reads the range
 * again after a back-off of 100 ms, doubling to 5 s, reset by a range read
 * that succeeds. The owner hears of the change of state once each way.
 *
 * A range answer is atomic for the owner: RANGE_BEGIN (set the table aside,
 * start a fresh one), one kv callback per key, then RANGE_KEEP (drop the old
 * table) or RANGE_UNDO (a key refused or the answer does not decode: put the
 * old table back; the revision stays as it was).
 *
 * The revision moves with a range read (its header's revision) and with a
 * watch message that carries events (its header's revision): only such a
 * message says that everything up to it has been delivered; the "created"
 * answer carries etcd's current revision while the events since
 * start_revision are still to come.
 *
 * Ownership: the owner owns the client and the watch, and frees the watch
 * before the client. Callbacks run on the loop (and inside etcd_watch_read
 * for its range), never inside etcd_watch_stop; inside etcd_watch_start only
 * state(down) when its first call cannot be set up (out of memory). Any
 * callback may call etcd_watch_stop (and etcd_watch_start again): no further
 * callback of that chain runs then, except RANGE_UNDO closing a range begun.
 * etcd_watch_free must not be called from a callback.
 */
#ifndef SLUICE_ETCD_WATCH_H
#define SLUICE_ETCD_WATCH_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd_client.h"

typedef struct etcd_watch etcd_watch_t;

typedef enum etcd_watch_range {
    ETCD_WATCH_RANGE_BEGIN, /* a range answer begins: start a fresh table */
    ETCD_WATCH_RANGE_KEEP,  /* it is whole: the fresh table replaces the old */
    ETCD_WATCH_RANGE_UNDO,  /* it failed: the old table comes back */
} etcd_watch_range_t;

/* One key of a range answer or one event of a watch message: key and value
 * decoded from base64, each NUL-terminated (a key may hold NUL bytes: its
 * length says). value is NULL for a DELETE, "" for a range read with
 * keys_only or an absent value. Valid during the callback only. */
typedef struct etcd_watch_kv {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    int deleted;
} etcd_watch_kv_t;

typedef struct etcd_watch_ops {
    void (*range)(void *ud, etcd_watch_range_t step);
    /* Returns 0, or -1 to refuse it (the table cannot take it): a range
     * is undone, a watch re-reads. */
    int (*kv)(void *ud, const etcd_watch_kv_t *kv);
    /* A range read or a watch message has been applied: rev is the
     * revision now (etcd_watch_revision); changed says a range read moved
     * the revision or a message carried events. Runs for every message. */
    void (*applied)(void *ud, int64_t rev, int changed);
    /* The chain went down (why: what failed, e.g. "watch lost (...)"; runs
     * before the failover, so etcd_client_endpoint names the endpoint that
     * failed) or up again (why NULL: a range read succeeded). Once per
     * change; a failure while down is logged at debug level only. */
    void (*state)(void *ud, int up, const char *why);
} etcd_watch_ops_t;

typedef struct etcd_watch_conf {
    const char *prefix;      /* every key that starts with it (copied) */
    int keys_only;           /* range reads without values */
    long range_timeout_ms;   /* one range read at most */
    /* Log wording: lines read "<log_prefix>etcd <endpoint>: <read_name>
     * failed (...)", "<log_prefix>etcd <watch_name> canceled ...". */
    const char *log_prefix;  /* "" or e.g. "fleet: " */
    const char *read_name;   /* e.g. "range read" */
    const char *watch_name;  /* e.g. "watch" */
} etcd_watch_conf_t;

/* A watch of conf->prefix on c (not started; conf's strings are copied).
 * ops and ud must outlive it. NULL when out of memory. */
etcd_watch_t *etcd_watch_new(etcd_client_t *c, const etcd_watch_conf_t *conf,
                             const etcd_watch_ops_t *ops, void *ud);

/* A blocking range read on the client's current endpoint, for start-up:
 * the range callbacks run (not applied nor state). Returns 0, or -1 with
 * err (the owner may fail over and try again). */
int etcd_watch_read(etcd_watch_t *w, char *err, size_t errlen);

/* Runs the chain on loop: a watch from the revision etcd_watch_read got,
 * or first a range read when there was none. Starting a started watch
 * restarts it. */
void etcd_watch_start(etcd_watch_t *w, struct ev_loop *loop);

/* Cancels the call in flight and the back-off; no callback runs after.
 * Idempotent; safe from any callback. */
void etcd_watch_stop(etcd_watch_t *w);

/* The revision of the last range read or event-carrying message (0 before
 * the first). */
int64_t etcd_watch_revision(const etcd_watch_t *w);

/* 1 unless the last attempt failed (and no range read succeeded since). */
int etcd_watch_up(const etcd_watch_t *w);

/* Stops and frees; NULL is a no-op. Not from a callback. */
void etcd_watch_free(etcd_watch_t *w);

#endif
