/*
 * hrw.h — rendezvous (highest random weight) hashing, pure.
 *
 * Every candidate node gets a score for a key, score(key, node), and the key
 * goes to the healthy node with the highest score (Thaler and Ravishankar,
 * "Using name-based mappings to increase hit rates", IEEE/ACM ToN 1998).
 * Taking a node out moves only the keys that were on it: every other key's
 * winner still wins. Node ids and key hashes come from hrw_hash, so the choice
 * is the same on every gateway and across restarts for the same names.
 *
 * No allocation, no clock, no I/O: the backend module (backend.h) feeds it
 * the pool and the health of each member.
 */
#ifndef SLUICE_HRW_H
#define SLUICE_HRW_H

#include <stddef.h>
#include <stdint.h>

/* A 64-bit hash of len bytes (FNV-1a with a final avalanche mix). Not keyed:
 * use it on names the gateway chose (session tokens are random already). */
uint64_t hrw_hash(const void *p, size_t len);

/* The score of node for key. */
uint64_t hrw_score(uint64_t key, uint64_t node);

/* The index of the node with the highest score for key among those with
 * up[i] != 0 (ties: the lower index), or -1 when none is up (or n is 0). */
long hrw_pick(uint64_t key, const uint64_t *nodes, const unsigned char *up, size_t n);

#endif
