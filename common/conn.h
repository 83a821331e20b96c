/*
 * conn: the one I/O layer. Everything above it reads and writes through
 * conn_read / conn_write / conn_close and never sees whether the bytes go
 * over plain TCP or (later) TLS: a connection is a small vtable.
 *
 * The socket is always non-blocking. conn_read/conn_write never wait; the
 * *_timed helpers wait with poll() for blocking-style callers (client,
 * tests, tools). Errors: a negative errno; -EAGAIN means "try again when
 * conn_want() is ready". A conn_t belongs to one thread at a time.
 */
#ifndef PCSIG_CONN_H
#define PCSIG_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct conn conn_t;

struct conn_ops {
    ssize_t (*read)(conn_t *c, void *p, size_t n);
    ssize_t (*write)(conn_t *c, const void *p, size_t n);
    void (*destroy)(conn_t *c); /* closes the socket and frees c */
};

#define CONN_ERROR_MAX 256

struct conn {
    const struct conn_ops *ops;
    int fd;
    short want;       /* POLLIN or POLLOUT: what the last -EAGAIN waits for */
    bool secure;      /* TLS */
    bool established; /* plain: always; TLS: the handshake completed */
    bool resumed;     /* TLS: the handshake resumed an earlier session */
    /* Set by the owner when the socket is closed (or shut down for writing)
     * right after what it writes now: plain writes then carry MSG_MORE, so
     * the last piece of the answer waits in the socket and leaves with the
     * FIN in one segment (one wake-up of the client, not two). Nothing is
     * held past that close: a piece is held only until the next push. */
    bool closing;
    char error[CONN_ERROR_MAX]; /* why the last call failed, "" if unknown */
};

/* Wrap a connected socket (made non-blocking here). Takes ownership of fd on
 * success; returns NULL (fd untouched) when out of memory. */
conn_t *conn_plain_new(int fd);
/* The same for a socket that is non-blocking already (accept4 with
 * SOCK_NONBLOCK): no fcntl() calls, two fewer system calls per connection. */
conn_t *conn_plain_adopt(int fd);

/* >0 bytes read, 0 orderly EOF, -EAGAIN, or -errno. */
ssize_t conn_read(conn_t *c, void *p, size_t n);
/* >0 bytes written (maybe fewer than n), -EAGAIN, or -errno; never SIGPIPE. */
ssize_t conn_write(conn_t *c, const void *p, size_t n);
/* The poll events a caller should wait for after -EAGAIN. */
short conn_want(const conn_t *c);
/* A one-line reason for the last failure ("" when there is none). */
const char *conn_error(const conn_t *c);
/* Finish the TLS handshake (no-op for plain) within timeout_ms: 0, -ETIMEDOUT,
 * -ECONNRESET, or -EPROTO with conn_error() saying why. */
int conn_handshake_timed(conn_t *c, int timeout_ms);
int conn_fd(const conn_t *c);
/* Close the socket and free c. NULL-safe. */
void conn_close(conn_t *c);

/* Wait up to timeout_ms (-1: forever) for bytes: >0 read, 0 EOF, -ETIMEDOUT, -errno. */
ssize_t conn_read_timed(conn_t *c, void *p, size_t n, int timeout_ms);
/* Write all n bytes within timeout_ms in total: 0, -ETIMEDOUT or -errno. */
int conn_write_all_timed(conn_t *c, const void *p, size_t n, int timeout_ms);

#endif
