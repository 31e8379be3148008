/*
 * test_classify.c — proto/classify.c: RFC 7983 §7 first-byte demultiplexing.
 */
#include <criterion/criterion.h>

#include "../../proto/classify.h"

/* The ranges, stated independently of the implementation. */
static enum pkt_class expected(unsigned b)
{
    if (b <= 3)
        return PKT_SIGNAL; /* STUN */
    if (b >= 16 && b <= 19)
        return PKT_MEDIA; /* ZRTP */
    if (b >= 20 && b <= 63)
        return PKT_SIGNAL; /* DTLS */
    return PKT_MEDIA; /* TURN ChannelData 64..79, RTP/RTCP 128..191, the rest */
}

Test(classify, every_first_byte)
{
    uint8_t pkt[4] = {0, 0xff, 0xff, 0xff};
    for (unsigned b = 0; b < 256; b++) {
        pkt[0] = (uint8_t)b;
        cr_assert_eq(classify_packet(pkt, 1), expected(b), "first byte %u", b);
        cr_assert_eq(classify_packet(pkt, sizeof(pkt)), expected(b), "first byte %u", b);
    }
}

Test(classify, boundaries)
{
    const struct {
        uint8_t b;
        enum pkt_class want;
    } cases[] = {
        {0, PKT_SIGNAL},   {3, PKT_SIGNAL}, {4, PKT_MEDIA},    {19, PKT_MEDIA},
        {20, PKT_SIGNAL},  {22, PKT_SIGNAL}, /* DTLS handshake */
        {23, PKT_SIGNAL},  {63, PKT_SIGNAL}, {64, PKT_MEDIA},  {79, PKT_MEDIA},
        {0x80, PKT_MEDIA}, {0x90, PKT_MEDIA}, {191, PKT_MEDIA}, {255, PKT_MEDIA},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(classify_packet(&cases[i].b, 1), cases[i].want, "byte %u", cases[i].b);
}

Test(classify, real_packets)
{
    /* STUN Binding Request header (RFC 8489 §5). */
    const uint8_t stun[] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7,
                            0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
    /* DTLS 1.2 ClientHello record header (RFC 6347 §4.1). */
    const uint8_t dtls[] = {0x16, 0xfe, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                            0x00, 0x40};
    /* RTP header, version 2, PT 96 (RFC 3550 §5.1). */
    const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0x12, 0x34, 0x56, 0x78};
    /* RTCP sender report. */
    const uint8_t rtcp[] = {0x80, 0xc8, 0x00, 0x06};
    /* TURN ChannelData, channel 0x4000 (RFC 8656 §12.4). */
    const uint8_t chan[] = {0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4};
    cr_assert_eq(classify_packet(stun, sizeof(stun)), PKT_SIGNAL);
    cr_assert_eq(classify_packet(dtls, sizeof(dtls)), PKT_SIGNAL);
    cr_assert_eq(classify_packet(rtp, sizeof(rtp)), PKT_MEDIA);
    cr_assert_eq(classify_packet(rtcp, sizeof(rtcp)), PKT_MEDIA);
    cr_assert_eq(classify_packet(chan, sizeof(chan)), PKT_MEDIA);
}

Test(classify, empty)
{
    cr_assert_eq(classify_packet(NULL, 0), PKT_MEDIA);
    const uint8_t zero = 0x00; /* would be STUN, but len 0 means no first byte */
    cr_assert_eq(classify_packet(&zero, 0), PKT_MEDIA);
}
