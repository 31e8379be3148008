/*
 * ts_pkt.h — test payloads of each RFC 7983 class, and finding capsules in
 * captured response bytes.
 *
 * Every builder embeds id so that each packet a test sends is distinct and a
 * reply can be matched byte for byte to what was sent.
 */
#ifndef SLUICE_TS_PKT_H
#define SLUICE_TS_PKT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TS_RTP_HEADER 12u
#define TS_STUN_HEADER 20u

/* RTP (RFC 3550 §5.1): V=2, PT 96, seq, timestamp, SSRC, then a payload whose
 * first 4 bytes are id (big endian) and the rest a pattern; total len bytes
 * (>= 16). Returns len, or 0 when it does not fit. */
size_t ts_pkt_rtp(uint8_t *buf, size_t cap, size_t len, uint16_t seq, uint32_t ts,
                  uint32_t ssrc, uint32_t id);

/* STUN Binding request (RFC 8489 §5): 20-byte header, no attributes, first
 * byte 0x00, magic cookie, id in the transaction id. Returns 20 or 0. */
size_t ts_pkt_stun(uint8_t *buf, size_t cap, uint32_t id);

/* DTLS 1.2 handshake record (RFC 6347 §4.1): first byte 0x16, id in the
 * sequence number, a patterned body; total len bytes (>= 17). Returns len or 0. */
size_t ts_pkt_dtls(uint8_t *buf, size_t cap, size_t len, uint32_t id);

/* Big-endian 32-bit read, for ids in payloads. */
uint32_t ts_get32(const uint8_t *p);

/* Scans bytes that contain capsules somewhere (a response body, or nghttp -v
 * output in which the body is interleaved with frame logs) for the first
 * well-formed CLOSE capsule. Returns 0 with *code and the reason (copied,
 * NUL-terminated, into reason/cap; reason may be NULL), or -1 if none. */
int ts_find_close(const uint8_t *buf, size_t len, uint64_t *code, char *reason, size_t cap);

/* Walks buf as a capsule stream from its first byte. Counts DATAGRAM and CLOSE
 * capsules and records the last CLOSE's code (*close_code = UINT64_MAX when
 * there is none). Returns 0 when buf is whole capsules only, -1 otherwise. */
int ts_walk_capsules(const uint8_t *buf, size_t len, size_t *ndatagrams, size_t *ncloses,
                     uint64_t *close_code);

/* Waits until the file at path (a response body curl is writing) holds a
 * whole DATAGRAM capsule with context id 0; copies its payload into out.
 * Re-reads the file in 20 ms slices until the deadline; when nudge_fd >= 0,
 * each slice also writes a GREASE capsule there (see ts_http_tunnel_nudge).
 * Returns the payload length, or -1 at the deadline. */
ssize_t ts_file_wait_datagram(const char *path, int nudge_fd, uint8_t *out, size_t cap,
                              int64_t deadline);

/* Like ts_file_wait_datagram, for the first CLOSE capsule anywhere in the
 * file (ts_find_close). Returns 0 with *code set, or -1 at the deadline. */
int ts_file_wait_close(const char *path, int nudge_fd, uint64_t *code, int64_t deadline);

/* Writes one empty capsule of the reserved type 0x17 (RFC 9297 §5.4 GREASE:
 * 0x29 * N + 0x17), which a receiver must skip, to fd. Returns 0 or -1. */
int ts_capsule_grease(int fd);

#endif
