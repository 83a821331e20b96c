/*
 * client_io: cio_read_head resumes the response parser where the last read
 * stopped. A head that arrives one byte per read (a slow or hostile server)
 * costs each byte a bounded number of looks, not a scan from byte 0 on every
 * read: 8 KiB dribbled is a few times 8 K bytes examined, not 32 M.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client_internal.h"
#include "clock.h"

/* A connection that hands out its bytes one per read: a server that
 * dribbles its answer. */
struct dribble_conn {
    conn_t base; /* first: the conn_t the ops get */
    const char *p;
    size_t n, at;
};

static ssize_t dribble_read(conn_t *c, void *p, size_t n)
{
    struct dribble_conn *d = (struct dribble_conn *)c;
    if (n == 0 || d->at == d->n)
        return 0;
    memcpy(p, d->p + d->at++, 1);
    return 1;
}

static ssize_t dribble_write(conn_t *c, const void *p, size_t n)
{
    (void)c;
    (void)p;
    return (ssize_t)n;
}

static void dribble_destroy(conn_t *c)
{
    (void)c; /* on the stack */
}

static const struct conn_ops dribble_ops = {dribble_read, dribble_write, dribble_destroy};

static void test_head_dribbled(void **state)
{
    (void)state;
    buf_t head;
    buf_init(&head, 1 << 16);
    assert_int_equal(buf_append_str(&head, "HTTP/1.0 200 Added\r\nPragma: 7\r\n"), 0);
    while (head.len < 8192)
        assert_int_equal(buf_printf(&head, "X-Fill-%05zu: %0300d\r\n", head.len, 0), 0);
    assert_int_equal(buf_append_str(&head, "Content-Length: 0\r\n\r\n"), 0);

    struct pcsig_client_options o = {.server = "127.0.0.1", .port = 1};
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    struct dribble_conn dc = {.base = {.ops = &dribble_ops, .fd = -1, .established = true},
                              .p = head.data, .n = head.len};
    conn_t *conn = &dc.base;
    int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(wake >= 0);
    struct cio io = {.c = c, .wake_fd = wake, .policy = IO_OWN_DEADLINE,
                     .deadline = clock_now_ms() + 60000};

    buf_t in;
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY); /* as do_sign_in */
    http_response_t resp;
    bool got = false;
    long h = cio_read_head(&io, conn, &in, &resp, &got);

    assert_int_equal(h, (long)head.len);
    assert_int_equal(resp.status, 200);
    assert_true(got);
    /* Resumed: bounded looks per byte (a rescan per read would be ~n^2/2). */
    assert_true(io.head.examined >= head.len);
    if (io.head.examined > 8 * (uint64_t)head.len)
        fail_msg("%llu bytes examined for a %zu-byte head", (unsigned long long)io.head.examined,
                 head.len);

    assert_int_equal(dc.at, head.len); /* one read per byte: nothing beyond the head */
    buf_free(&in);
    close(wake);
    pcsig_client_free(c);
    buf_free(&head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_dribbled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
