/*
 * conn: plain-TCP implementation of the connection vtable, and the waiting
 * helpers that work for any implementation (they only use conn_want()).
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "net.h"

static ssize_t plain_read(conn_t *c, void *p, size_t n)
{
    for (;;) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->want = POLLIN;
            return -EAGAIN;
        }
        return -errno;
    }
}

static ssize_t plain_write(conn_t *c, const void *p, size_t n)
{
    for (;;) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL | (c->closing ? MSG_MORE : 0));
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->want = POLLOUT;
            return -EAGAIN;
        }
        return -errno;
    }
}

static void plain_destroy(conn_t *c)
{
    close(c->fd);
    free(c);
}

static const struct conn_ops plain_ops = {
    .read = plain_read,
    .write = plain_write,
    .destroy = plain_destroy,
};

conn_t *conn_plain_new(int fd)
{
    if (net_set_nonblocking(fd, 1) < 0)
        return NULL;
    return conn_plain_adopt(fd);
}

conn_t *conn_plain_adopt(int fd)
{
    if (fd < 0)
        return NULL;
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ops = &plain_ops;
    c->fd = fd;
    c->want = POLLIN;
    c->established = true;
    return c;
}

const char *conn_error(const conn_t *c) { return c->error; }

ssize_t conn_read(conn_t *c, void *p, size_t n) { return c->ops->read(c, p, n); }
ssize_t conn_write(conn_t *c, const void *p, size_t n) { return c->ops->write(c, p, n); }
short conn_want(const conn_t *c) { return c->want; }
int conn_fd(const conn_t *c) { return c->fd; }

void conn_close(conn_t *c)
{
    if (c)
        c->ops->destroy(c);
}

/* Wait for the conn's wanted events until deadline (0: forever). */
static int wait_ready(conn_t *c, uint64_t deadline)
{
    for (;;) {
        int timeout = -1;
        if (deadline) {
            uint64_t now = clock_now_ms();
            if (now >= deadline)
                return -ETIMEDOUT;
            timeout = (int)(deadline - now);
        }
        struct pollfd pfd = {.fd = c->fd, .events = conn_want(c)};
        int n = poll(&pfd, 1, timeout);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static uint64_t deadline_for(int timeout_ms)
{
    return timeout_ms < 0 ? 0 : clock_now_ms() + (uint64_t)timeout_ms + (timeout_ms == 0);
}

ssize_t conn_read_timed(conn_t *c, void *p, size_t n, int timeout_ms)
{
    uint64_t deadline = deadline_for(timeout_ms);
    for (;;) {
        ssize_t r = conn_read(c, p, n);
        if (r != -EAGAIN)
            return r;
        int w = wait_ready(c, deadline);
        if (w < 0)
            return w;
    }
}

int conn_handshake_timed(conn_t *c, int timeout_ms)
{
    uint64_t deadline = deadline_for(timeout_ms);
    while (!c->established) {
        /* A zero-length write drives the TLS handshake without sending data. */
        ssize_t r = conn_write(c, "", 0);
        if (r >= 0 && c->established)
            break;
        if (r != -EAGAIN && r < 0)
            return (int)r;
        int w = wait_ready(c, deadline);
        if (w < 0)
            return w;
    }
    return 0;
}

int conn_write_all_timed(conn_t *c, const void *p, size_t n, int timeout_ms)
{
    uint64_t deadline = deadline_for(timeout_ms);
    const char *at = p;
    while (n > 0) {
        ssize_t r = conn_write(c, at, n);
        if (r > 0) {
            at += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0)
            return -EIO;
        if (r != -EAGAIN)
            return (int)r;
        int w = wait_ready(c, deadline);
        if (w < 0)
            return w;
    }
    return 0;
}
