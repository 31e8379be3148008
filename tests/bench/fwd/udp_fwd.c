/*
 * udp_fwd.c — the floor of bench_load's side-by-side table (issue 9 §1): the
 * least a relay can do. One process, one thread, no encryption, no framing.
 *
 *   udp_fwd BACKEND_IP:PORT [MAX_SECONDS]
 *
 * One UDP socket on 127.0.0.1:0 faces the clients; its port is printed as
 * "udp_fwd ready PORT" on stdout once it is bound. Each distinct client source
 * address gets its own upstream socket, connected to the backend (the way a
 * TURN server gives each allocation its own relayed address), so a reply on
 * upstream socket i goes back to client i. Datagrams are read with recvmmsg
 * in batches of BATCH (client side: one call drains up to BATCH datagrams of
 * any clients; upstream side: up to BATCH of one client, sent back with one
 * sendmmsg). At most MAX_CLIENTS clients (more are dropped and counted);
 * exits 0 on SIGTERM/SIGINT, or after MAX_SECONDS (default 900) so a
 * forgotten forwarder cannot outlive its benchmark.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
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

/* The client for a source address, made on first sight (-1: table full or no
 * socket). Linear probing; entries are never removed (the process is short). */
static int client_for(const struct sockaddr_in *a, const struct sockaddr_in *backend, int ep)
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
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = nclients};
    if (connect(up, (const struct sockaddr *)backend, sizeof *backend) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, up, &ev) < 0) {
        close(up);
        return -1;
    }
    clients[nclients] = (client_t){.addr = *a, .up = up};
    slots[h] = (int32_t)++nclients;
    return (int)nclients - 1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in backend = {.sin_family = AF_INET};
    char host[64];
    unsigned port = 0;
    long max_s = 900;
    if (argc < 2 || argc > 3 || sscanf(argv[1], "%63[^:]:%u", host, &port) != 2 ||
        port == 0 || port > 65535 || inet_pton(AF_INET, host, &backend.sin_addr) != 1 ||
        (argc == 3 && (max_s = strtol(argv[2], NULL, 10)) <= 0)) {
        fprintf(stderr, "usage: udp_fwd BACKEND_IP:PORT [MAX_SECONDS]\n");
        return 2;
    }
    backend.sin_port = htons((uint16_t)port);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    int lfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof la;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u32 = LISTEN_ID};
    if (lfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *)&la, sizeof la) < 0 ||
        getsockname(lfd, (struct sockaddr *)&la, &sl) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        fprintf(stderr, "udp_fwd: cannot set up: %s\n", strerror(errno));
        return 1;
    }
    bufsize(lfd);
    printf("udp_fwd ready %u\n", ntohs(la.sin_port));
    fflush(stdout);

    static uint8_t bufs[BATCH][DGRAM_MAX];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    static struct sockaddr_in from[BATCH];
    uint64_t dropped = 0;
    time_t end = time(NULL) + max_s;
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
                    int c = client_for(&from[i], &backend, ep);
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
    fprintf(stderr, "udp_fwd: %u clients, %llu datagrams dropped\n", nclients,
            (unsigned long long)dropped);
    return 0;
}
