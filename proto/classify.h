/*
 * classify.h — which queue class a UDP payload belongs to.
 *
 * RFC 7983 §7 demultiplexes by the first byte: 0–3 STUN, 20–63 DTLS, 64–79
 * TURN ChannelData, 128–191 RTP/RTCP. STUN and DTLS are signaling (never dropped
 * by queue policy, sent ahead of media); everything else, including empty
 * payloads, is media and may be dropped under congestion.
 */
#ifndef SLUICE_CLASSIFY_H
#define SLUICE_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

enum pkt_class {
    PKT_MEDIA = 0,
    PKT_SIGNAL = 1,
};

enum pkt_class classify_packet(const uint8_t *payload, size_t len);

#endif
