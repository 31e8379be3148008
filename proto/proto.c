/*
 * proto.c — names for the return codes shared by every codec in proto/.
 */
#include "proto.h"

const char *proto_strerror(int err)
{
    if (err >= 0)
        return "ok";
    switch (err) {
    case PROTO_INCOMPLETE:
        return "incomplete input";
    case PROTO_ERR_SPACE:
        return "output buffer too small";
    case PROTO_ERR_RANGE:
        return "value out of range";
    case PROTO_ERR_TOO_LARGE:
        return "capsule value too large";
    case PROTO_ERR_MALFORMED:
        return "malformed input";
    default:
        return "unknown error";
    }
}
