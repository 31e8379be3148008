/*
 * ts_net.h — loopback sockets for integration tests.
 *
 * Everything binds or connects to 127.0.0.1 or ::1 only, always on port 0 with
 * the kernel's choice read back: tests never pick port numbers.
 */
#ifndef SLUICE_TS_NET_H
#define SLUICE_TS_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct ts_addr {
    struct sockaddr_storage sa;
    socklen_t len;
} ts_addr_t;

/* The loopback address of family (AF_INET: 127.0.0.1, AF_INET6: ::1) with port. */
void ts_addr_loopback(ts_addr_t *a, int family, uint16_t port);

/* Parses "127.0.0.1:5000" or "[::1]:5000" (numeric only). Returns 0 or -1. */
int ts_addr_parse(const char *s, ts_addr_t *a);

/* Formats as "127.0.0.1:5000" / "[::1]:5000" into buf; returns buf. */
const char *ts_addr_str(const ts_addr_t *a, char *buf, size_t cap);

uint16_t ts_addr_port(const ts_addr_t *a);

/* 1 when both hold the same family, address and port. */
int ts_addr_eq(const ts_addr_t *a, const ts_addr_t *b);

/* A non-blocking UDP socket bound to the loopback of family on port 0; the
 * bound address goes to *bound (may be NULL). Returns the fd or -1. */
int ts_udp_bind(int family, ts_addr_t *bound);

/* ts_udp_bind on a given port (0: any). */
int ts_udp_bind_port(int family, uint16_t port, ts_addr_t *bound);

/* Sends one datagram. Returns 0, or -1 when it was not sent whole. */
int ts_udp_send(int fd, const ts_addr_t *to, const void *buf, size_t len);

/* Receives one datagram, waiting until deadline. Returns its length (0 is a
 * valid empty datagram), or -1 with errno ETIMEDOUT when none arrived. *from
 * may be NULL. */
ssize_t ts_udp_recv(int fd, void *buf, size_t cap, int64_t deadline, ts_addr_t *from);

/* A blocking TCP connection to a (loopback) address, made before deadline.
 * Returns the fd, or -1 with errno (ETIMEDOUT at the deadline; ECONNRESET
 * when the peer accepted and reset before the connect was seen complete). */
int ts_tcp_connect(const ts_addr_t *to, int64_t deadline);

/* ts_tcp_connect with SO_RCVBUF set to rcvbuf before connecting (the window
 * the connection offers from its start); rcvbuf 0: the system default. */
int ts_tcp_connect_rcvbuf(const ts_addr_t *to, int rcvbuf, int64_t deadline);

/* A connected TCP pair on 127.0.0.1: *client blocking, *server (the accepted
 * side) non-blocking. client_rcvbuf > 0: the client's SO_RCVBUF, set before
 * connecting (the window it offers). Returns 0 or -1. */
int ts_tcp_pair(int *client, int *server, int client_rcvbuf);

/* Writes all of buf. Returns 0 or -1. */
int ts_tcp_send_all(int fd, const void *buf, size_t len);

/* Reads until the peer closes, cap bytes are held, or deadline. Returns bytes
 * read; *closed is set to 1 when EOF (or a reset) was seen. */
size_t ts_tcp_read_until_close(int fd, void *buf, size_t cap, int64_t deadline, int *closed);

/* Established TCP connections that process pid holds to remote_port (looked
 * up in /proc/<pid>/fd and /proc/net/tcp{,6}). Returns the count, or -1 when
 * /proc cannot be read. Lets a test check "N tunnels, one connection". */
int ts_tcp_count_conns(pid_t pid, uint16_t remote_port);

#endif
