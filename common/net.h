/*
 * net: socket helpers shared by the server, the client, the tools and tests.
 * Every socket is created with SOCK_CLOEXEC. Errors: 0/fd or -errno; a
 * failed name lookup of net_connect is a code of its own (see
 * net_resolve_error), so the caller can report it with gai_strerror.
 */
#ifndef PCSIG_NET_H
#define PCSIG_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NET_MAX_LISTENERS 8

/*
 * Open non-blocking listening sockets for bind_addr (NULL or "" or "*": every
 * IPv4 and IPv6 address) and port (0: the kernel picks one; every socket then
 * shares the port the first got). SO_REUSEADDR, IPV6_V6ONLY, backlog.
 * Fills fds[0..*nfds). Returns 0 or -errno with nothing left open.
 */
int net_listen(const char *bind_addr, uint16_t port, int backlog,
               int fds[NET_MAX_LISTENERS], int *nfds);

/* The local port a socket is bound to, or -errno. */
int net_local_port(int fd);

/*
 * Connect a blocking TCP socket to host:port within timeout_ms (tries every
 * address getaddrinfo returns). Returns the fd, -errno, or, when host
 * cannot be resolved, a value <= -NET_ERESOLVE_BASE (never an errno):
 * net_resolve_error() gives its EAI_* code for gai_strerror(). Logs nothing.
 */
int net_connect(const char *host, uint16_t port, int timeout_ms);

/* Above every errno value: net_connect's lookup failures start here. */
#define NET_ERESOLVE_BASE 4096

/* The getaddrinfo error (EAI_*) of a net_connect result, or 0 when rc is
 * not a lookup failure. */
int net_resolve_error(int rc);

int net_set_nonblocking(int fd, int on);

/*
 * Split an "ADDR:PORT" option value: "127.0.0.1:9100", "[::1]:9100",
 * "localhost:9100". The host is non-empty (an IPv6 address in brackets,
 * which are removed) and the port strict decimal 0..65535 (0: any free
 * port). On success *host is a NUL-terminated copy the caller frees.
 * Returns 0, -EINVAL (with *host untouched) or -ENOMEM. Pure; thread-safe.
 */
int net_parse_host_port(const char *s, char **host, uint16_t *port);

/* "addr:port" ("[v6]:port") of a peer address into b (NUL-terminated). */
void net_addr_str(const struct sockaddr *sa, char *out, size_t out_len);

#endif
