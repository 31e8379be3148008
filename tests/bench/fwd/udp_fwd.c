/*
 * udp_fwd.c — the floor of bench_load's side-by-side table (issue 9 §1): the
 * least a relay can do. One process, one thread, no encryption, no framing.
 *
 *   udp_fwd [--uring] BACKEND_IP:PORT [MAX_SECONDS]
 *
 * One UDP socket on 127.0.0.1:0 faces the clients; its port is printed as
 * "udp_fwd ready PORT" on stdout once it is bound. Each distinct client source
 * address gets its own upstream socket, connected to the backend (the way a
 * TURN server gives each allocation its own relayed address), so a reply on
 * upstream socket i goes back to client i. At most MAX_CLIENTS clients (more
 * are dropped and counted); exits 0 on SIGTERM/SIGINT, or after MAX_SECONDS
 * (default 900) so a forgotten forwarder cannot outlive its benchmark.
 *
 * Two ways to wait and move datagrams (issue 9 §2: "consider io_uring ...
 * measure it against epoll and keep what wins"):
 *   epoll (default)  epoll_wait, then recvmmsg in batches of BATCH (client
 *                    side: one call drains up to BATCH datagrams of any
 *                    clients; upstream side: up to BATCH of one client, sent
 *                    back with one sendmmsg)
 *   --uring          io_uring (liburing): one multishot recvmsg on each
 *                    socket, into buffers the kernel takes from a ring of
 *                    NBUFS provided buffers; each received buffer is sent as
 *                    it is (sendmsg) and returns to the ring when the send
 *                    completes. One io_uring_enter per loop submits all that
 *                    is queued and waits for the next completion.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 4096u
#define HASH_SLOTS 8192u       /* power of two, > MAX_CLIENTS */
#define BATCH 64
#define DGRAM_MAX 2048
#define SOCKBUF (4 << 20)
#define LISTEN_ID UINT32_MAX
#define RING_ENTRIES 4096u

typedef struct client {
    struct sockaddr_in addr;   /* the client's source address */
    int up;                    /* upstream socket, connected to the backend */
} client_t;

static client_t clients[MAX_CLIENTS];
static uint32_t nclients;
static int32_t slots[HASH_SLOTS];  /* index into clients + 1; 0: empty */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static uint32_t hash_addr(const struct sockaddr_in *a)
{
    uint32_t h = a->sin_addr.s_addr * 2654435761u ^ (uint32_t)a->sin_port * 40503u;
    return h & (HASH_SLOTS - 1);
}

static void bufsize(int fd)
{
    int v = SOCKBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

/* Starts watching a new upstream socket (its client index id): 0 or -1. */
typedef int (*watch_fn)(int fd, uint32_t id, void *arg);

/* The client for a source address, made on first sight (-1: table full or no
 * socket). Linear probing; entries are never removed (the process is short). */
static int client_for(const struct sockaddr_in *a, const struct sockaddr_in *backend,
                      watch_fn watch, void *arg)
{
    uint32_t h = hash_addr(a);
    for (uint32_t i = 0; i < HASH_SLOTS; i++, h = (h + 1) & (HASH_SLOTS - 1)) {
        int32_t s = slots[h];
        if (s == 0)
            break;
        const client_t *c = &clients[s - 1];
        if (c->addr.sin_addr.s_addr == a->sin_addr.s_addr && c->addr.sin_port == a->sin_port)
            return s - 1;
    }
    if (nclients >= MAX_CLIENTS)
        return -1;
    int up = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (up < 0)
        return -1;
    bufsize(up);
    clients[nclients] = (client_t){.addr = *a, .up = up};
    if (connect(up, (const struct sockaddr *)backend, sizeof *backend) < 0 ||
        watch(up, nclients, arg) < 0) {
        close(up);
        return -1;
    }
    slots[h] = (int32_t)++nclients;
    return (int)nclients - 1;
}

static int watch_epoll(int fd, uint32_t id, void *arg)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = id};
    return epoll_ctl(*(int *)arg, EPOLL_CTL_ADD, fd, &ev);
}

/* The epoll loop. Returns the datagrams dropped. */
static uint64_t run_epoll(int lfd, const struct sockaddr_in *backend, time_t end)
{
    static uint8_t bufs[BATCH][DGRAM_MAX];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    static struct sockaddr_in from[BATCH];
    uint64_t dropped = 0;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u32 = LISTEN_ID};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        fprintf(stderr, "udp_fwd: epoll: %s\n", strerror(errno));
        exit(1);
    }
    while (!stop && time(NULL) < end) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 1000);
        for (int e = 0; e < n; e++) {
            uint32_t id = evs[e].data.u32;
            int fd = id == LISTEN_ID ? lfd : clients[id].up;
            for (int i = 0; i < BATCH; i++) {
                iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = DGRAM_MAX};
                msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1,
                                                  .msg_name = &from[i],
                                                  .msg_namelen = sizeof from[i]};
            }
            int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0)
                continue;
            if (id == LISTEN_ID) {
                /* Uplink: each datagram to its client's upstream socket. */
                for (int i = 0; i < got; i++) {
                    int c = client_for(&from[i], backend, watch_epoll, &ep);
                    if (c < 0 || send(clients[c].up, bufs[i], msgs[i].msg_len, 0) < 0)
                        dropped++;
                }
            } else {
                /* Downlink: the batch goes back to this one client. */
                for (int i = 0; i < got; i++) {
                    iov[i].iov_len = msgs[i].msg_len;
                    msgs[i].msg_hdr.msg_name = &clients[id].addr;
                    msgs[i].msg_hdr.msg_namelen = sizeof clients[id].addr;
                }
                int sent = sendmmsg(lfd, msgs, (unsigned)got, 0);
                if (sent < got)
                    dropped += (uint64_t)(got - (sent < 0 ? 0 : sent));
            }
        }
    }
    close(ep);
    return dropped;
}

/* The io_uring path. Receives are multishot recvmsg (one SQE keeps
 * receiving) into buffers the kernel picks from a provided-buffer ring; a
 * received buffer is sent as it is and goes back to the ring when its send
 * completes. user_data: the kind in the top byte, then the client (for
 * receives) or the buffer id (for sends). */
#define NBUFS 4096u            /* power of two */
#define BUFSZ 2048u
#define BGID 0
enum { K_RECV_LISTEN = 1, K_RECV_UP, K_SEND };

typedef struct uring_ctx {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    uint8_t *bufs;                  /* NBUFS x BUFSZ */
    struct msghdr rx_listen, rx_up; /* recvmsg templates: with / without a name */
    struct msghdr tx[NBUFS];        /* the send of buffer i */
    struct iovec tx_iov[NBUFS];
    struct sockaddr_in tx_to[NBUFS];
    int lfd;
} uring_ctx_t;

static uint64_t ud(unsigned kind, uint32_t v)
{
    return (uint64_t)kind << 56 | v;
}

static struct io_uring_sqe *sqe_get(uring_ctx_t *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        io_uring_submit(&u->ring); /* the queue is full: hand it to the kernel */
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

static int arm_recv(uring_ctx_t *u, int fd, unsigned kind, uint32_t client)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return -1;
    io_uring_prep_recvmsg_multishot(sqe, fd, kind == K_RECV_LISTEN ? &u->rx_listen : &u->rx_up,
                                    0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud(kind, client));
    return 0;
}

static int watch_uring(int fd, uint32_t id, void *arg)
{
    return arm_recv(arg, fd, K_RECV_UP, id);
}

static void buf_return(uring_ctx_t *u, uint32_t bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

/* Sends what buffer bid received (res bytes, on a receive of kind for
 * client): to the client's upstream socket, or back to the client. 0 or -1
 * (the caller returns the buffer). */
static int relay(uring_ctx_t *u, unsigned kind, uint32_t client, uint32_t bid, int res,
                 const struct sockaddr_in *backend)
{
    struct msghdr *tmpl = kind == K_RECV_LISTEN ? &u->rx_listen : &u->rx_up;
    struct io_uring_recvmsg_out *o =
        io_uring_recvmsg_validate(u->bufs + (size_t)bid * BUFSZ, res, tmpl);
    if (!o || o->flags & MSG_TRUNC)
        return -1;
    struct msghdr *m = &u->tx[bid];
    u->tx_iov[bid] = (struct iovec){
        .iov_base = io_uring_recvmsg_payload(o, tmpl),
        .iov_len = io_uring_recvmsg_payload_length(o, res, tmpl)};
    *m = (struct msghdr){.msg_iov = &u->tx_iov[bid], .msg_iovlen = 1};
    int fd = u->lfd;
    if (kind == K_RECV_LISTEN) {
        if (o->namelen < sizeof(struct sockaddr_in))
            return -1;
        struct sockaddr_in from;
        memcpy(&from, io_uring_recvmsg_name(o), sizeof from);
        int c = client_for(&from, backend, watch_uring, u);
        if (c < 0)
            return -1;
        fd = clients[c].up; /* connected: no address */
    } else {
        u->tx_to[bid] = clients[client].addr;
        m->msg_name = &u->tx_to[bid];
        m->msg_namelen = sizeof u->tx_to[bid];
    }
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return -1;
    io_uring_prep_sendmsg(sqe, fd, m, 0);
    io_uring_sqe_set_data64(sqe, ud(K_SEND, bid));
    return 0;
}

/* The io_uring loop. Returns the datagrams dropped. */
static uint64_t run_uring(int lfd, const struct sockaddr_in *backend, time_t end)
{
    static uring_ctx_t u;
    uint64_t dropped = 0;
    u.lfd = lfd;
    u.rx_listen.msg_namelen = sizeof(struct sockaddr_in);
    int r = io_uring_queue_init(RING_ENTRIES, &u.ring,
                                IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (r == -EINVAL) /* a kernel before 6.1 */
        r = io_uring_queue_init(RING_ENTRIES, &u.ring, 0);
    size_t brsz = NBUFS * sizeof(struct io_uring_buf);
    void *br = MAP_FAILED;
    if (r == 0) {
        br = mmap(NULL, brsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        u.bufs = malloc((size_t)NBUFS * BUFSZ);
        struct io_uring_buf_reg reg = {
            .ring_addr = (uintptr_t)br, .ring_entries = NBUFS, .bgid = BGID};
        r = br == MAP_FAILED || !u.bufs ? -ENOMEM : io_uring_register_buf_ring(&u.ring, &reg, 0);
    }
    if (r < 0) {
        fprintf(stderr, "udp_fwd: io_uring: %s\n", strerror(-r));
        exit(1);
    }
    u.br = br;
    io_uring_buf_ring_init(u.br);
    for (uint32_t i = 0; i < NBUFS; i++)
        buf_return(&u, i);
    if (arm_recv(&u, lfd, K_RECV_LISTEN, 0) < 0) {
        fprintf(stderr, "udp_fwd: cannot post the first receive\n");
        exit(1);
    }
    while (!stop && time(NULL) < end) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 1};
        r = io_uring_submit_and_wait_timeout(&u.ring, &cqe, 1, &ts, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR) {
            fprintf(stderr, "udp_fwd: io_uring_enter: %s\n", strerror(-r));
            exit(1);
        }
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&u.ring, head, cqe)
        {
            uint64_t d = io_uring_cqe_get_data64(cqe);
            unsigned kind = (unsigned)(d >> 56);
            uint32_t v = (uint32_t)d;
            seen++;
            if (kind == K_SEND) {
                if (cqe->res < 0)
                    dropped++;
                buf_return(&u, v);
                continue;
            }
            if (cqe->flags & IORING_CQE_F_BUFFER) {
                uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                if (relay(&u, kind, v, bid, cqe->res, backend) < 0) {
                    dropped++;
                    buf_return(&u, bid);
                }
            } else if (cqe->res < 0 && cqe->res != -ENOBUFS) {
                dropped++;
            }
            /* A multishot receive that stopped (no buffer left, an error)
             * is posted again. */
            if (!(cqe->flags & IORING_CQE_F_MORE) && !stop &&
                arm_recv(&u, kind == K_RECV_LISTEN ? lfd : clients[v].up, kind, v) < 0)
                fprintf(stderr, "udp_fwd: cannot post a receive\n");
        }
        io_uring_cq_advance(&u.ring, seen);
    }
    io_uring_queue_exit(&u.ring);
    munmap(br, brsz);
    free(u.bufs);
    return dropped;
}

int main(int argc, char **argv)
{
    struct sockaddr_in backend = {.sin_family = AF_INET};
    char host[64];
    unsigned port = 0;
    long max_s = 900;
    int uring = argc > 1 && strcmp(argv[1], "--uring") == 0;
    argc -= uring;
    argv += uring;
    if (argc < 2 || argc > 3 || sscanf(argv[1], "%63[^:]:%u", host, &port) != 2 ||
        port == 0 || port > 65535 || inet_pton(AF_INET, host, &backend.sin_addr) != 1 ||
        (argc == 3 && (max_s = strtol(argv[2], NULL, 10)) <= 0)) {
        fprintf(stderr, "usage: udp_fwd [--uring] BACKEND_IP:PORT [MAX_SECONDS]\n");
        return 2;
    }
    backend.sin_port = htons((uint16_t)port);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    int lfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof la;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&la, sizeof la) < 0 ||
        getsockname(lfd, (struct sockaddr *)&la, &sl) < 0) {
        fprintf(stderr, "udp_fwd: cannot set up: %s\n", strerror(errno));
        return 1;
    }
    bufsize(lfd);
    printf("udp_fwd ready %u\n", ntohs(la.sin_port));
    fflush(stdout);

    time_t end = time(NULL) + max_s;
    uint64_t dropped = uring ? run_uring(lfd, &backend, end) : run_epoll(lfd, &backend, end);
    fprintf(stderr, "udp_fwd: %u clients, %llu datagrams dropped\n", nclients,
            (unsigned long long)dropped);
    return 0;
}
