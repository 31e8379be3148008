/*
 * shim_flow.h — the CLI's flow table: one entry per local source address
 * that sends to the shim, each carrying one tunnel.
 *
 * The table is a fixed array of max entries allocated once, so a flow's
 * address is stable for its whole life and can be handed to callbacks as
 * their user data. Lookup is a linear scan behind a one-entry cache: tables
 * are small (--max-flows, default 64) and media arrives in runs from the same
 * source. Pure: no I/O, no clock of its own.
 */
#ifndef SHIM_FLOW_H
#define SHIM_FLOW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sluice_shim.h"

enum shim_flow_state {
    SHIM_FLOW_FREE = 0,    /* slot unused */
    SHIM_FLOW_ACTIVE = 1,  /* has a live tunnel; matched by lookups */
    SHIM_FLOW_CLOSING = 2, /* tunnel asked to close; not matched, waits for on_close */
    SHIM_FLOW_BACKOFF = 3, /* tunnel refused; matched, packets dropped until retry_ms */
};

/* How an ACTIVE flow's packets travel (the fallback ladder, docs/shim.md;
 * cli/direct_flow.c owns the CHECKING and DIRECT modes). */
enum shim_flow_mode {
    SHIM_FLOW_TUNNEL = 0,   /* through the gateway (tunnel set once opened) */
    SHIM_FLOW_CHECKING = 1, /* the UDP check runs; packets held (bounded) */
    SHIM_FLOW_DIRECT = 2,   /* plain UDP to the --direct address; no tunnel */
};

typedef struct shim_flow {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    enum shim_flow_state state;
    sluice_tunnel_t *tunnel;
    uint64_t last_ms;  /* last packet in either direction */
    uint64_t retry_ms; /* BACKOFF: when a new tunnel may be tried */
    void *owner;       /* the table's user (the CLI) */
    enum shim_flow_mode mode;
    void *direct;      /* CHECKING / DIRECT: the direct-flow state; NULL otherwise */
    sluice_fallback_t fallback; /* why its tunnel, when it has one (UNSET: no --direct) */
} shim_flow_t;

typedef struct shim_flowtab {
    shim_flow_t *_slots;
    size_t _cap;
    size_t count;        /* slots not FREE */
    shim_flow_t *_last;  /* lookup cache */
} shim_flowtab_t;

/* Allocates max (>= 1) slots. Returns 0, or -1 when memory runs out. */
int shim_flowtab_init(shim_flowtab_t *ft, size_t max, void *owner);

/* Frees the slots; idempotent. Does not touch the tunnels. */
void shim_flowtab_dispose(shim_flowtab_t *ft);

/* The ACTIVE or BACKOFF flow for this source address, or NULL. */
shim_flow_t *shim_flowtab_find(shim_flowtab_t *ft, const struct sockaddr *sa, socklen_t len);

/* Takes a free slot for sa as ACTIVE with last_ms = now_ms and no tunnel.
 * Returns it, or NULL when every slot is in use. */
shim_flow_t *shim_flowtab_add(shim_flowtab_t *ft, const struct sockaddr *sa, socklen_t len,
                              uint64_t now_ms);

/* Returns a slot to FREE. */
void shim_flowtab_remove(shim_flowtab_t *ft, shim_flow_t *f);

/* Slot i (0 <= i < shim_flowtab_cap) for iteration; check its state. */
shim_flow_t *shim_flowtab_at(shim_flowtab_t *ft, size_t i);
size_t shim_flowtab_cap(const shim_flowtab_t *ft);

/* Number of ACTIVE flows (tunnels that are neither closing nor refused). */
size_t shim_flowtab_active(const shim_flowtab_t *ft);

/* 1 when two socket addresses name the same IP, port (and IPv6 scope). */
int shim_sockaddr_equal(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
                        socklen_t blen);

#endif
