/*
 * worker.h — the process's event loops: one lead on the main thread and
 * $.workers - 1 followers, each on a thread of its own (docs/architecture.md,
 * "Workers").
 *
 * Each follower is a server_t (server.h, server_init_follower) on its own
 * libev loop. No thread touches another loop's watchers: the lead reaches a
 * follower only with a message (a function and its argument) pushed on the
 * follower's queue under its mutex and an ev_async that wakes its loop,
 * which runs the message between two events. Two kinds:
 *  - a call (workers_reload, workers_tenants_apply, workers_collect): the
 *    lead waits until the follower has run it, at most WORKER_CALL_TIMEOUT_S;
 *    a call still queued then is withdrawn and fails. Followers never wait
 *    for the lead, so a call cannot deadlock;
 *  - a post (workers_drain_phase): queued and not waited for.
 * The other way, a follower only sets its idle flag and wakes the lead's
 * loop (workers_idle).
 *
 * What the lead owns and followers read: the config snapshot (immutable,
 * atomic reference count), the TLS context (a reference each), the per-source
 * table and the tenant counts (mutex inside srclimit.h and ratelimit.h).
 *
 * All functions but workers_idle run on the main thread.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <stddef.h>

#include "config.h"
#include "counters.h"
#include "server.h"
#include "stats.h"

/* How long the lead waits for a follower to run a call. */
#define WORKER_CALL_TIMEOUT_S 5

typedef struct workers workers_t;

/* Starts cfg->workers - 1 followers around lead (initialised with cfg on the
 * main loop, not running yet) and sets lead->group. When the lead's session
 * table has a fleet (session.h, peer: set it first), every follower's asks
 * the lead about a token no worker holds, for a 421. With cfg->workers 1 it
 * returns a group of the lead alone. Returns the group, or NULL with err
 * filled (every follower started is stopped again; lead->group stays NULL). */
workers_t *workers_start(server_t *lead, config_t *cfg, char *err, size_t errlen);

/* Stops every follower's loop, joins its thread and disposes its server
 * (its connections close, its parked tunnels go), then frees the group and
 * clears lead->group. Call after the lead's loop returned and before
 * server_dispose(lead). NULL is a no-op. */
void workers_stop(workers_t *g);

/* Loops in the group, the lead's included. */
size_t workers_count(const workers_t *g);

/* Every follower applies cfg (server_reload_follow), one after the other;
 * *closed gets the tunnels they closed in all. Returns 0, or -1 with err
 * naming the first follower that failed. */
int workers_reload(workers_t *g, config_t *cfg, size_t *closed, char *err, size_t errlen);

/* Every follower holds its live tunnels to its snapshot again
 * (server_tenants_apply: a new fleet share). */
void workers_tenants_apply(workers_t *g);

/* Posts a drain phase to every follower (server_drain_follow). */
void workers_drain_phase(workers_t *g, enum drain_phase phase);

/* On a follower's thread: it has no connection left while draining. Wakes
 * the lead's loop, which calls server_followers_idle. */
void workers_idle(workers_t *g, unsigned index);

/* 1 when every follower has reported idle (or there is none). */
int workers_followers_idle(const workers_t *g);

/* Adds every follower's counters into *sum (server_counters_add) and appends
 * copies of its stats entries to *v (*n of them, *cap allocated; realloc'd,
 * the caller frees *v), each copied by the follower on its own thread.
 * accepted[i] and open[i] (workers_count entries, i 1..) get follower i's
 * connections accepted and open; the caller fills in the lead's, [0].
 * Returns 0, or -1 (out of memory, or a follower did not answer in time:
 * what was collected stays). */
int workers_collect(workers_t *g, server_counters_t *sum, stats_entry_t **v, size_t *n,
                    size_t *cap, uint64_t *accepted, uint64_t *open);

/* dst += src for every counter; gauges too (active connections and tunnels
 * are per worker); reload_last_ok takes the later. Histograms bucket by
 * bucket. */
void server_counters_add(server_counters_t *dst, const server_counters_t *src);

#endif
