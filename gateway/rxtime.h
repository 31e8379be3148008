/*
 * rxtime.h — when did the bytes TLS is reading reach this host?
 *
 * A client's uplink can wait in the connection's kernel receive queue while
 * the gateway is busy, and there nobody drops the oldest media: a packet read
 * half a second late is relayed half a second late (issue 10 §2; docs/
 * architecture.md, "Overload"). The kernel stamps every segment it receives
 * (SO_TIMESTAMPNS); a read BIO that reads with recvmsg() keeps the stamp of
 * the newest segment of its last read, and the connection compares it with
 * the wall clock to learn how long what it reads has waited, at least.
 *
 * The read BIO replaces OpenSSL's socket BIO on the read side only and
 * behaves like it (EAGAIN is a retry, 0 is end of file and BIO_eof says so);
 * writes keep going through a socket BIO. It never closes the descriptor:
 * the connection owns it. No extra system call per read: the stamp comes in
 * the same recvmsg() as the bytes.
 */
#ifndef SLUICE_RXTIME_H
#define SLUICE_RXTIME_H

#include <openssl/bio.h>
#include <stdint.h>

/* A read BIO over fd, which gets SO_TIMESTAMPNS. NULL when out of memory.
 * Thread-safe (the BIO method is made once per process). */
BIO *rxtime_bio_new(int fd);

/* How long before now_real (CLOCK_REALTIME, ns) the newest byte of the
 * BIO's last read reached the kernel: every byte that read brought in is at
 * least this old. -1 when it is not known: no stamp yet, or one the wall
 * clock has stepped back past or more than a minute away from (a clock
 * step, not a queue). */
int64_t rxtime_age_ns(BIO *b, int64_t now_real);

#endif
