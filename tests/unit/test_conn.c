/*
 * Unit tests of the plain connection (common/conn.c) over a socketpair:
 * the conn end is wrapped with conn_plain_new, the test drives the raw
 * other end. Covers non-blocking reads and writes (-EAGAIN and what to
 * poll for), the timed helpers (bytes, EOF, -ETIMEDOUT after about the
 * time asked, partial writes completed while a reader drains), writes to
 * a closed peer (an error, never SIGPIPE), and conn_close (closes the
 * socket, NULL-safe).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "strlit.h"
#include "conn.h"

/* A timeout's elapsed time may overshoot by scheduling, never undershoot. */
#define SLACK_MS 5000

typedef struct pair {
    conn_t *c; /* wraps fd[0] */
    int peer;  /* fd[1], blocking */
} pair_t;

static int pair_setup(void **state)
{
    int fd[2];
    pair_t *p = calloc(1, sizeof *p);
    if (p == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) != 0) {
        free(p);
        return -1;
    }
    p->c = conn_plain_new(fd[0]);
    if (p->c == NULL) {
        close(fd[0]);
        close(fd[1]);
        free(p);
        return -1;
    }
    p->peer = fd[1];
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    pair_t *p = *state;
    conn_close(p->c);
    if (p->peer >= 0)
        close(p->peer);
    free(p);
    return 0;
}

static void peer_write(pair_t *p, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(p->peer, s, n), (ssize_t)n);
}

static void test_new_plain(void **state)
{
    pair_t *p = *state;
    int fd = conn_fd(p->c);

    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK); /* made non-blocking */
    assert_true(p->c->established);
    assert_false(p->c->secure);
    assert_string_equal(conn_error(p->c), "");
    /* Nothing to hand-shake on plain TCP. */
    assert_int_equal(conn_handshake_timed(p->c, 0), 0);
}

static void test_new_bad_fd(void **state)
{
    (void)state;
    assert_null(conn_plain_new(-1));
}

static void test_read_would_block(void **state)
{
    pair_t *p = *state;
    char buf[16];

    assert_int_equal(conn_read(p->c, buf, sizeof buf), -EAGAIN);
    assert_int_equal(conn_want(p->c), POLLIN);
}

static void test_read_bytes(void **state)
{
    pair_t *p = *state;
    char buf[64];

    peer_write(p, "hello");
    assert_int_equal(conn_read_timed(p->c, buf, sizeof buf, 5000), 5);
    assert_memory_equal(buf, "hello", 5);
    /* A short buffer gets a part; the rest stays for the next read. */
    peer_write(p, "abcdef");
    assert_int_equal(conn_read(p->c, buf, 2), 2);
    assert_memory_equal(buf, "ab", 2);
    assert_int_equal(conn_read_timed(p->c, buf, sizeof buf, -1), 4);
    assert_memory_equal(buf, "cdef", 4);
}

static void test_read_timeout(void **state)
{
    pair_t *p = *state;
    char buf[16];
    uint64_t t0 = clock_now_ms();

    assert_int_equal(conn_read_timed(p->c, buf, sizeof buf, 100), -ETIMEDOUT);
    uint64_t took = clock_now_ms() - t0;
    if (took < 100 || took > 100 + SLACK_MS)
        fail_msg("a 100 ms read timeout took %llu ms", (unsigned long long)took);
    /* 0 means "do not wait", not "forever". */
    t0 = clock_now_ms();
    assert_int_equal(conn_read_timed(p->c, buf, sizeof buf, 0), -ETIMEDOUT);
    assert_true(clock_now_ms() - t0 < SLACK_MS);
}

static void test_read_eof(void **state)
{
    pair_t *p = *state;
    char buf[16];

    peer_write(p, "last");
    close(p->peer);
    p->peer = -1;
    /* The bytes first, then an orderly EOF, again and again. */
    assert_int_equal(conn_read_timed(p->c, buf, sizeof buf, 5000), 4);
    assert_int_equal(conn_read_timed(p->c, buf, sizeof buf, 5000), 0);
    assert_int_equal(conn_read(p->c, buf, sizeof buf), 0);
}

/* Fills the socket buffers with conn_write; returns the bytes written. */
static size_t fill(conn_t *c)
{
    static char chunk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = conn_write(c, chunk, sizeof chunk);
        if (r == -EAGAIN)
            return total;
        assert_true(r > 0);
        total += (size_t)r;
        assert_true(total < (size_t)1 << 30);
    }
}

static void test_write_would_block(void **state)
{
    pair_t *p = *state;

    assert_int_equal(conn_write(p->c, STRLIT("x")), 1);
    assert_true(fill(p->c) > 0);
    assert_int_equal(conn_write(p->c, STRLIT("y")), -EAGAIN);
    assert_int_equal(conn_want(p->c), POLLOUT);
}

static void test_write_all_timeout(void **state)
{
    pair_t *p = *state;
    char byte = 'z';

    fill(p->c);
    uint64_t t0 = clock_now_ms();
    assert_int_equal(conn_write_all_timed(p->c, &byte, 1, 100), -ETIMEDOUT);
    uint64_t took = clock_now_ms() - t0;
    if (took < 100 || took > 100 + SLACK_MS)
        fail_msg("a 100 ms write timeout took %llu ms", (unsigned long long)took);
}

/* Reads until EOF into a buffer, on its own thread. */
typedef struct drain {
    int fd;
    char *buf;
    size_t cap, len;
} drain_t;

static void *drain_main(void *arg)
{
    drain_t *d = arg;
    for (;;) {
        ssize_t r = read(d->fd, d->buf + d->len, d->cap - d->len);
        if (r <= 0)
            return NULL;
        d->len += (size_t)r;
        if (d->len == d->cap) /* more than expected: the test will say so */
            return NULL;
    }
}

static void test_write_all_large(void **state)
{
    pair_t *p = *state;
    const size_t n = (size_t)4 << 20; /* far more than the socket buffers */
    char *src = malloc(n);
    drain_t d = {.fd = p->peer, .buf = malloc(n + 1), .cap = n + 1};
    pthread_t t;

    assert_non_null(src);
    assert_non_null(d.buf);
    for (size_t i = 0; i < n; i++)
        src[i] = (char)(i * 131 + (i >> 13));
    assert_int_equal(pthread_create(&t, NULL, drain_main, &d), 0);
    /* Many partial writes, each continued where the last one stopped. */
    assert_int_equal(conn_write_all_timed(p->c, src, n, 30000), 0);
    assert_int_equal(conn_write_all_timed(p->c, src, 0, 0), 0); /* nothing: done at once */
    assert_int_equal(shutdown(conn_fd(p->c), SHUT_WR), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(d.len, n);
    assert_memory_equal(d.buf, src, n);
    free(d.buf);
    free(src);
}

static void test_write_to_closed_peer(void **state)
{
    pair_t *p = *state;
    ssize_t r;

    close(p->peer);
    p->peer = -1;
    /* An error, not SIGPIPE (which would end this process). */
    r = conn_write(p->c, STRLIT("x"));
    assert_true(r == -EPIPE || r == -ECONNRESET);
    r = conn_write_all_timed(p->c, STRLIT("xyz"), 1000);
    assert_true(r == -EPIPE || r == -ECONNRESET);
}

static void test_close(void **state)
{
    pair_t *p = *state;
    char buf[4];

    conn_close(p->c);
    p->c = NULL;
    /* The socket is closed: the peer reads EOF at once. */
    struct pollfd pf = {.fd = p->peer, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    assert_int_equal(read(p->peer, buf, sizeof buf), 0);
    conn_close(NULL); /* NULL-safe */
}

#define PT(f) cmocka_unit_test_setup_teardown(f, pair_setup, pair_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        PT(test_new_plain),
        cmocka_unit_test(test_new_bad_fd),
        PT(test_read_would_block),
        PT(test_read_bytes),
        PT(test_read_timeout),
        PT(test_read_eof),
        PT(test_write_would_block),
        PT(test_write_all_timeout),
        PT(test_write_all_large),
        PT(test_write_to_closed_peer),
        PT(test_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
