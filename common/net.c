/*
 * net: the few socket calls every pcsig program makes, written once with
 * their error handling (getaddrinfo, never gethostbyname; inet_ntop, never
 * inet_ntoa).
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"

int net_set_nonblocking(int fd, int on)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (want == flags)
        return 0;
    return fcntl(fd, F_SETFL, want) < 0 ? -errno : 0;
}

int net_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

static int listen_one(const struct sockaddr *sa, socklen_t sl, int backlog)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    /* Separate v4 and v6 sockets: the same behaviour whatever the sysctl says. */
    if (sa->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, sa, sl) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

static void set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

int net_listen(const char *bind_addr, uint16_t port, int backlog,
               int fds[NET_MAX_LISTENERS], int *nfds)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int wildcard = bind_addr == NULL || bind_addr[0] == '\0' || strcmp(bind_addr, "*") == 0;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int rc = getaddrinfo(wildcard ? NULL : bind_addr, portstr, &hints, &res);
    if (rc != 0) {
        log_error("cannot resolve bind address %s: %s", bind_addr, gai_strerror(rc));
        return -EADDRNOTAVAIL;
    }
    *nfds = 0;
    int first_err = 0;
    uint16_t bound_port = port;
    for (struct addrinfo *ai = res; ai && *nfds < NET_MAX_LISTENERS; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        set_port(ai->ai_addr, bound_port);
        int fd = listen_one(ai->ai_addr, ai->ai_addrlen, backlog);
        if (fd < 0) {
            /* A host without IPv6 still serves IPv4 on the wildcard. */
            if (wildcard && ai->ai_family == AF_INET6 &&
                (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL))
                continue;
            if (!first_err)
                first_err = fd;
            continue;
        }
        if (bound_port == 0) {
            int p = net_local_port(fd);
            if (p > 0)
                bound_port = (uint16_t)p;
        }
        fds[(*nfds)++] = fd;
    }
    freeaddrinfo(res);
    if (first_err || *nfds == 0) {
        for (int i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
        return first_err ? first_err : -EADDRNOTAVAIL;
    }
    return 0;
}

static int connect_timed(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            err = -errno;
            goto fail;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n;
        do
            n = poll(&p, 1, timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n == 0) {
            err = -ETIMEDOUT;
            goto fail;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
            err = -errno;
            goto fail;
        }
        if (soerr) {
            err = -soerr;
            goto fail;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if ((err = net_set_nonblocking(fd, 0)) < 0)
        goto fail;
    return fd;
fail:
    close(fd);
    return err;
}

int net_connect(const char *host, uint16_t port, int timeout_ms)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc == EAI_SYSTEM)
        return errno ? -errno : -EIO;
    if (rc != 0) {
        /* Not an errno: a code of its own, so that the caller can say
         * "cannot resolve HOST: <gai_strerror>" (net_resolve_error). */
        int n = rc < 0 ? -rc : rc;
        return -(NET_ERESOLVE_BASE + n);
    }
    int fd = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_timed(ai, timeout_ms);
        if (fd >= 0)
            break;
    }
    freeaddrinfo(res);
    return fd;
}

int net_resolve_error(int rc)
{
    if (rc > -NET_ERESOLVE_BASE)
        return 0;
    int n = -rc - NET_ERESOLVE_BASE;
    /* EAI_* are negative with glibc, positive elsewhere. */
    return EAI_NONAME < 0 ? -n : n;
}

int net_parse_host_port(const char *s, char **host, uint16_t *port)
{
    const char *h, *colon;
    size_t hlen;
    if (s[0] == '[') {
        /* Brackets are the only way to tell an IPv6 address's colons from the port's. */
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
            return -EINVAL; /* no port, or a bare IPv6 address */
        h = s;
        hlen = (size_t)(colon - s);
    }
    uint64_t v;
    if (hlen == 0 || memchr(h, '[', hlen) || memchr(h, ']', hlen) ||
        proto_parse_u64(colon + 1, strlen(colon + 1), &v) < 0 || v > 65535)
        return -EINVAL;
    char *copy = strndup(h, hlen);
    if (!copy)
        return -ENOMEM;
    *host = copy;
    *port = (uint16_t)v;
    return 0;
}

void net_addr_str(const struct sockaddr *sa, char *out, size_t out_len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, out_len, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, out_len, "[%s]:%u", host, port);
    } else {
        snprintf(out, out_len, "?");
    }
}
