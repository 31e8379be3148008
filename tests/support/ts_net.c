/*
 * ts_net.c — loopback UDP and TCP helpers.
 */
#include "ts_net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts_util.h"

void ts_addr_loopback(ts_addr_t *a, int family, uint16_t port)
{
    memset(a, 0, sizeof *a);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons(port);
        a->len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons(port);
        a->len = sizeof *s4;
    }
}

int ts_addr_parse(const char *s, ts_addr_t *a)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    memset(a, 0, sizeof *a);
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    unsigned long p = 0;
    size_t digits = 0;
    for (; port[digits] >= '0' && port[digits] <= '9' && digits < 6; digits++)
        p = p * 10 + (unsigned long)(port[digits] - '0');
    if (digits == 0 || port[digits] != '\0' || p > 65535)
        return -1;

    struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        a->len = sizeof *s4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        a->len = sizeof *s6;
        return 0;
    }
    return -1;
}

const char *ts_addr_str(const ts_addr_t *a, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, ntohs(s4->sin_port));
    } else {
        snprintf(buf, cap, "(family %d)", a->sa.ss_family);
    }
    return buf;
}

uint16_t ts_addr_port(const ts_addr_t *a)
{
    if (a->sa.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    return 0;
}

int ts_addr_eq(const ts_addr_t *a, const ts_addr_t *b)
{
    if (a->sa.ss_family != b->sa.ss_family || ts_addr_port(a) != ts_addr_port(b))
        return 0;
    if (a->sa.ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr,
                      &((const struct sockaddr_in6 *)&b->sa)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    if (a->sa.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->sa)->sin_addr.s_addr;
    return 0;
}

int ts_udp_bind(int family, ts_addr_t *bound)
{
    return ts_udp_bind_port(family, 0, bound);
}

int ts_udp_bind_port(int family, uint16_t port, ts_addr_t *bound)
{
    ts_addr_t a;
    ts_addr_loopback(&a, family, port);
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (bind(fd, (struct sockaddr *)&a.sa, a.len) < 0) {
        close(fd);
        return -1;
    }
    if (bound) {
        bound->len = sizeof bound->sa;
        if (getsockname(fd, (struct sockaddr *)&bound->sa, &bound->len) < 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

int ts_udp_send(int fd, const ts_addr_t *to, const void *buf, size_t len)
{
    ssize_t n;
    do {
        n = sendto(fd, buf, len, MSG_NOSIGNAL, (const struct sockaddr *)&to->sa, to->len);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

ssize_t ts_udp_recv(int fd, void *buf, size_t cap, int64_t deadline, ts_addr_t *from)
{
    for (;;) {
        ts_addr_t tmp;
        ts_addr_t *src = from ? from : &tmp;
        src->len = sizeof src->sa;
        ssize_t n = recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&src->sa, &src->len);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
            errno != ECONNREFUSED)
            return -1;
        int left = ts_remaining_ms(deadline);
        if (left == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, left);
    }
}

int ts_tcp_pair(int *client, int *server, int client_rcvbuf)
{
    ts_addr_t at;
    ts_addr_loopback(&at, AF_INET, 0);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1, s = -1;
    if (l < 0 || bind(l, (struct sockaddr *)&at.sa, at.len) < 0 || listen(l, 1) < 0)
        goto err;
    at.len = sizeof at.sa;
    if (getsockname(l, (struct sockaddr *)&at.sa, &at.len) < 0)
        goto err;
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || (client_rcvbuf > 0 && setsockopt(c, SOL_SOCKET, SO_RCVBUF, &client_rcvbuf,
                                                 sizeof client_rcvbuf) < 0) ||
        connect(c, (struct sockaddr *)&at.sa, at.len) < 0)
        goto err;
    s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0)
        goto err;
    close(l);
    *client = c;
    *server = s;
    return 0;
err: {
    int e = errno;
    if (l >= 0)
        close(l);
    if (c >= 0)
        close(c);
    errno = e;
    return -1;
}
}

int ts_tcp_connect(const ts_addr_t *to, int64_t deadline)
{
    return ts_tcp_connect_rcvbuf(to, 0, deadline);
}

int ts_tcp_connect_rcvbuf(const ts_addr_t *to, int rcvbuf, int64_t deadline)
{
    int fd = socket(to->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0)
        goto err;
    if (connect(fd, (const struct sockaddr *)&to->sa, to->len) < 0) {
        if (errno != EINPROGRESS)
            goto err;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int ready = poll(&pfd, 1, ts_remaining_ms(deadline));
        if (ready != 1) {
            errno = ready == 0 ? ETIMEDOUT : errno;
            goto err;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            goto err;
        if (soerr != 0) {
            errno = soerr;
            goto err;
        }
    }
    return fd;
err: {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}
}

int ts_tcp_send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 5000) != 1)
                return -1;
            continue;
        }
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

size_t ts_tcp_read_until_close(int fd, void *buf, size_t cap, int64_t deadline, int *closed)
{
    size_t have = 0;
    *closed = 0;
    while (have < cap) {
        ssize_t n = recv(fd, (uint8_t *)buf + have, cap - have, MSG_DONTWAIT);
        if (n > 0) {
            have += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            *closed = 1;
            break;
        }
        int left = ts_remaining_ms(deadline);
        if (left == 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, left);
    }
    return have;
}

/* Socket inodes of pid's open files, from /proc/<pid>/fd/N -> "socket:[INODE]". */
static size_t socket_inodes(pid_t pid, unsigned long *out, size_t cap)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while (n < cap && (de = readdir(d)) != NULL) {
        char path[384], link[128];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ssize_t l = readlink(path, link, sizeof link - 1);
        if (l <= 0)
            continue;
        link[l] = '\0';
        unsigned long ino;
        if (sscanf(link, "socket:[%lu]", &ino) == 1)
            out[n++] = ino;
    }
    closedir(d);
    return n;
}

static int count_in(const char *table, uint16_t port, const unsigned long *inodes, size_t n)
{
    FILE *f = fopen(table, "r");
    if (!f)
        return -1;
    char line[512];
    int count = 0;
    /* Bounded by the table; skip the header line. */
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        char local[64], remote[64];
        unsigned st;
        unsigned long ino;
        if (sscanf(line, " %*s %63s %63s %x %*s %*s %*s %*s %*s %lu", local, remote, &st,
                   &ino) != 4)
            continue;
        const char *colon = strrchr(remote, ':');
        if (!colon || st != 0x01 /* TCP_ESTABLISHED */)
            continue;
        if ((uint16_t)strtoul(colon + 1, NULL, 16) != port)
            continue;
        for (size_t i = 0; i < n; i++)
            if (inodes[i] == ino)
                count++;
    }
    fclose(f);
    return count;
}

int ts_tcp_count_conns(pid_t pid, uint16_t remote_port)
{
    unsigned long inodes[1024];
    size_t n = socket_inodes(pid, inodes, sizeof inodes / sizeof inodes[0]);
    int a = count_in("/proc/net/tcp", remote_port, inodes, n);
    int b = count_in("/proc/net/tcp6", remote_port, inodes, n);
    if (a < 0 && b < 0)
        return -1;
    return (a > 0 ? a : 0) + (b > 0 ? b : 0);
}
