/*
 * ts_pkt.c — RTP/STUN/DTLS test payloads; CLOSE capsule search.
 */
#include "ts_pkt.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "ts_util.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t ts_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void pattern(uint8_t *p, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(id * 31u + i * 7u);
}

size_t ts_pkt_rtp(uint8_t *buf, size_t cap, size_t len, uint16_t seq, uint32_t ts,
                  uint32_t ssrc, uint32_t id)
{
    if (len < TS_RTP_HEADER + 4 || len > cap)
        return 0;
    buf[0] = 0x80; /* V=2, no padding, no extension, no CSRC */
    buf[1] = 96;   /* dynamic payload type, marker clear */
    put16(buf + 2, seq);
    put32(buf + 4, ts);
    put32(buf + 8, ssrc);
    put32(buf + TS_RTP_HEADER, id);
    pattern(buf + TS_RTP_HEADER + 4, len - TS_RTP_HEADER - 4, id);
    return len;
}

size_t ts_pkt_stun(uint8_t *buf, size_t cap, uint32_t id)
{
    if (cap < TS_STUN_HEADER)
        return 0;
    put16(buf, 0x0001);      /* Binding request */
    put16(buf + 2, 0);       /* no attributes */
    put32(buf + 4, 0x2112A442u);
    put32(buf + 8, 0x736c7563u); /* "sluc" */
    put32(buf + 12, 0x65747374u);
    put32(buf + 16, id);
    return TS_STUN_HEADER;
}

size_t ts_pkt_dtls(uint8_t *buf, size_t cap, size_t len, uint32_t id)
{
    if (len < 17 || len > cap)
        return 0;
    buf[0] = 0x16;           /* handshake */
    buf[1] = 0xfe;           /* DTLS 1.2 */
    buf[2] = 0xfd;
    put16(buf + 3, 0);       /* epoch */
    put16(buf + 5, 0);       /* sequence number, 48 bits */
    put32(buf + 7, id);
    put16(buf + 11, (uint16_t)(len - 13));
    pattern(buf + 13, len - 13, id);
    return len;
}

int ts_find_close(const uint8_t *buf, size_t len, uint64_t *code, char *reason, size_t cap)
{
    /* CAPSULE_CLOSE (0x3513) is a 2-byte varint: 0x40 | 0x35, 0x13. */
    for (size_t i = 0; i + 3 <= len; i++) {
        if (buf[i] != 0x75 || buf[i + 1] != 0x13)
            continue;
        capsule_t c;
        ssize_t n = capsule_decode(buf + i, len - i, CAPSULE_DEFAULT_MAX_VALUE, &c, NULL);
        if (n <= 0 || c.type != CAPSULE_CLOSE)
            continue;
        const char *r;
        size_t rlen;
        if (capsule_parse_close(&c, code, &r, &rlen) != PROTO_OK)
            continue;
        if (reason && cap > 0)
            snprintf(reason, cap, "%.*s", (int)rlen, r);
        return 0;
    }
    return -1;
}

int ts_walk_capsules(const uint8_t *buf, size_t len, size_t *ndatagrams, size_t *ncloses,
                     uint64_t *close_code)
{
    *ndatagrams = *ncloses = 0;
    *close_code = UINT64_MAX;
    size_t off = 0;
    while (off < len) {
        capsule_t c;
        ssize_t n = capsule_decode(buf + off, len - off, CAPSULE_DEFAULT_MAX_VALUE, &c, NULL);
        if (n <= 0)
            return -1;
        if (c.type == CAPSULE_DATAGRAM) {
            (*ndatagrams)++;
        } else if (c.type == CAPSULE_CLOSE) {
            const char *r;
            size_t rlen;
            if (capsule_parse_close(&c, close_code, &r, &rlen) != PROTO_OK)
                return -1;
            (*ncloses)++;
        }
        off += (size_t)n;
    }
    return 0;
}

int ts_capsule_grease(int fd)
{
    static const uint8_t grease[2] = {0x17, 0x00};
    return write(fd, grease, sizeof grease) == (ssize_t)sizeof grease ? 0 : -1;
}

ssize_t ts_file_wait_datagram(const char *path, int nudge_fd, uint8_t *out, size_t cap,
                              int64_t deadline)
{
    for (;;) {
        size_t len = 0;
        char *data = ts_read_file(path, 1u << 20, &len);
        const uint8_t *p = (const uint8_t *)data;
        size_t off = 0;
        while (data && off < len) {
            capsule_t c;
            ssize_t n = capsule_decode(p + off, len - off, CAPSULE_DEFAULT_MAX_VALUE, &c, NULL);
            if (n <= 0)
                break;
            uint64_t ctx;
            const uint8_t *payload;
            size_t plen;
            if (c.type == CAPSULE_DATAGRAM &&
                capsule_parse_datagram(&c, &ctx, &payload, &plen) == PROTO_OK && ctx == 0 &&
                plen <= cap) {
                memcpy(out, payload, plen);
                free(data);
                return (ssize_t)plen;
            }
            off += (size_t)n;
        }
        free(data);
        int left = ts_remaining_ms(deadline);
        if (left == 0)
            return -1;
        if (nudge_fd >= 0)
            ts_capsule_grease(nudge_fd);
        poll(NULL, 0, left < 20 ? left : 20);
    }
}

int ts_file_wait_close(const char *path, int nudge_fd, uint64_t *code, int64_t deadline)
{
    for (;;) {
        size_t len = 0;
        char *data = ts_read_file(path, 1u << 20, &len);
        int found = data && ts_find_close((const uint8_t *)data, len, code, NULL, 0) == 0;
        free(data);
        if (found)
            return 0;
        int left = ts_remaining_ms(deadline);
        if (left == 0)
            return -1;
        if (nudge_fd >= 0)
            ts_capsule_grease(nudge_fd);
        poll(NULL, 0, left < 20 ? left : 20);
    }
}
