/* rxtime.c — see rxtime.h. */
#include "rxtime.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define RXTIME_MAX_AGE_NS (60ll * 1000000000ll) /* beyond: a clock step */

typedef struct rxtime {
    int fd;
    int64_t stamp; /* CLOCK_REALTIME ns of the last read's newest segment; 0: none */
} rxtime_t;

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

static int rx_read(BIO *b, char *buf, int len)
{
    rxtime_t *r = BIO_get_data(b);
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct timespec))];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = (size_t)len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof ctl.buf};
    BIO_clear_retry_flags(b);
    ssize_t n = recvmsg(r->fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_read(b);
        return -1;
    }
    if (n == 0) {
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* as the socket BIO: BIO_eof tells */
        return 0;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            r->stamp = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
        }
    }
    return (int)n;
}

static long rx_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    rxtime_t *r = BIO_get_data(b);
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = r->fd;
        return r->fd;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static int rx_destroy(BIO *b)
{
    free(BIO_get_data(b)); /* the descriptor is the connection's */
    BIO_set_data(b, NULL);
    return 1;
}

static void method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "sluice rxtime");
    if (m && BIO_meth_set_read(m, rx_read) && BIO_meth_set_ctrl(m, rx_ctrl) &&
        BIO_meth_set_destroy(m, rx_destroy))
        method = m;
    else
        BIO_meth_free(m);
}

BIO *rxtime_bio_new(int fd)
{
    pthread_once(&method_once, method_make);
    rxtime_t *r = method ? calloc(1, sizeof *r) : NULL;
    BIO *b = r ? BIO_new(method) : NULL;
    if (!b) {
        free(r);
        return NULL;
    }
    r->fd = fd;
    BIO_set_data(b, r);
    BIO_set_init(b, 1);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one); /* best effort */
    return b;
}

int64_t rxtime_age_ns(BIO *b, int64_t now_real)
{
    const rxtime_t *r = BIO_get_data(b);
    if (!r || !r->stamp)
        return -1;
    int64_t age = now_real - r->stamp;
    return age >= 0 && age <= RXTIME_MAX_AGE_NS ? age : -1;
}
