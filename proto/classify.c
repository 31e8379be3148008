/*
 * classify.c — queue class of a UDP payload by its first byte (RFC 7983 §7).
 */
#include "classify.h"

enum pkt_class classify_packet(const uint8_t *payload, size_t len)
{
    if (len == 0)
        return PKT_MEDIA;
    uint8_t b = payload[0];
    /* 0..3 STUN (RFC 8489 §5: the top two bits of a STUN message are zero),
     * 20..63 DTLS content types. ZRTP (16..19), TURN ChannelData (64..79) and
     * RTP/RTCP (128..191) are media, and so is anything unrecognised. */
    if (b <= 3 || (b >= 20 && b <= 63))
        return PKT_SIGNAL;
    return PKT_MEDIA;
}
