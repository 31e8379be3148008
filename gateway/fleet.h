/*
 * fleet.h — this gateway's membership of its region's fleet in etcd, so that
 * N gateways share a tenant's limits instead of each enforcing all of them
 * (issue 7 §3; docs/configuration.md, "Tenant limits" and "Node").
 *
 * With $.tenant_store etcd, the gateway grants a lease of
 * $.tenant_store.lease_ttl_s (POST /v3/lease/grant), puts
 * <members_prefix><region>/<node id> = {"id": ..., "address": ...} (the
 * address only with $.node.address) under it (POST /v3/kv/put) and keeps it
 * alive every TTL/3 (POST /v3/lease/keepalive). It reads and watches the keys
 * under <members_prefix><region>/ (POST /v3/kv/range, then /v3/watch from the
 * next revision) to know N, the live gateways of its region (itself always
 * counted) and their addresses by node tag (the 421 of a misdirected resume,
 * issue 8 §4), and hands every change of N to the share callback (main.c:
 * server_share_set). A key expires with its lease when its gateway dies
 * (after the TTL) and is revoked at once on a clean exit (fleet_leave).
 *
 * etcd unreachable: the last N stays (logged once each way); keep-alives go
 * on every TTL/3, and a lease etcd no longer knows (it expired meanwhile) is
 * granted anew and the key put again. A lost watch re-reads the members with
 * back-off (100 ms doubling to 5 s) across the endpoints.
 *
 * The fleet has its own etcd_client_t (etcd_client.h) on the same endpoints
 * as the tenant store. Its callbacks run on the loop.
 */
#ifndef SLUICE_FLEET_H
#define SLUICE_FLEET_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct fleet fleet_t;

#define FLEET_MEMBERS_MAX 1024u /* member keys kept per region; more are not counted */
#define FLEET_NODE_ID_MAX 128u  /* bytes of a node id ($.node.id) */

/* N changed (n >= 1). */
typedef void (*fleet_share_fn)(void *ud, uint32_t n);

/* A fleet for cfg (whose $.tenant_store is etcd; copied: the fleet keeps no
 * reference to cfg), on loop. The node id is $.node.id, or
 * "<hostname>-<pid>" when absent. Starts at once: the grant, the put, the
 * members read. share runs whenever N changes (first when the members are
 * read). NULL with err when out of memory or libcurl cannot start. */
fleet_t *fleet_start(const config_t *cfg, struct ev_loop *loop, fleet_share_fn share, void *ud,
                     char *err, size_t errlen);

/* The advertised address of the live node of this region whose node id has
 * this tag (session.h's session_peer_fn; f is the ud), or NULL. */
const char *fleet_peer_address(void *f, uint32_t tag);

/* This gateway's node id. */
const char *fleet_node_id(const fleet_t *f);

/* N as last counted (1 until the members are read). */
uint32_t fleet_members(const fleet_t *f);

/* A clean exit (SIGTERM/SIGINT): stops everything on the loop and revokes
 * the lease, a blocking call of at most 1 s, so that the others rebalance at
 * once instead of after the TTL. Idempotent; share never runs after it. */
void fleet_leave(fleet_t *f);

/* fleet_leave, then frees; NULL is a no-op. */
void fleet_free(fleet_t *f);

/* ---- pure parts, exposed for tests/gateway/test_fleet.c ------------------ */

/* The node id of a member key: key must be dir (members_prefix + region +
 * "/") followed by a non-empty id of at most FLEET_NODE_ID_MAX bytes with no
 * '/' and no NUL. Returns the id's length with *id pointing into key, or -1
 * (a key under dir that is not a member's, e.g. a deeper one). */
int fleet_member_id(const char *dir, size_t dirlen, const char *key, size_t keylen,
                    const char **id);

/* A sorted set of member ids, each with its node tag (token.h) and its
 * advertised address (NULL: none). Zeroed is empty. */
typedef struct fleet_set {
    char **ids;
    char **addrs;
    uint32_t *tags;
    size_t n;
} fleet_set_t;

/* Adds (put) or removes (!put) id, without an address. Returns 1 when the
 * set changed, 0 when not, -1 when out of memory or full (FLEET_MEMBERS_MAX). */
int fleet_set_update(fleet_set_t *s, const char *id, size_t len, int put);

/* Adds id, or updates it, with the address addr[0..alen) (alen 0: none).
 * Returns as fleet_set_update (1 only when id is new). */
int fleet_set_put(fleet_set_t *s, const char *id, size_t len, const char *addr, size_t alen);

/* The address of the one member other than self whose tag is tag; NULL when
 * none has an address, or when two members share the tag (a collision:
 * nobody can tell whose session it is). */
const char *fleet_set_address(const fleet_set_t *s, uint32_t tag, const char *self);

/* The address a member key's value gives: the value is the JSON object
 * {"id": ..., "address": "host:port"} fleet_start writes. Copies it with a
 * NUL into out (cap bytes) and returns its length; 0 when the value has no
 * address; -1 when the value is not such an object or the address is not a
 * plain host:port of at most CFG_NODE_ADDRESS_MAX bytes (it becomes a
 * response field as it is). */
int fleet_member_address(const char *value, size_t len, char *out, size_t cap);

/* N: the members, plus self when self is not among them (a gateway counts
 * itself even while its own key is away). At least 1. */
uint32_t fleet_set_count(const fleet_set_t *s, const char *self);

void fleet_set_clear(fleet_set_t *s);

#endif
