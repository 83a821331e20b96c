/*
 * Integration, hostile clients: oversize request heads, header lines, bodies
 * and Content-Lengths.
 *
 * Each scenario runs against the real server while two well-behaved
 * members, alice and bob (the "pair", hostile.h), keep exchanging messages
 * over parked keep-alive /waits: every message must arrive exactly once and
 * in order, promptly, and nothing else may reach them but the notifications
 * a test expects. Nothing here sleeps to synchronise: every wait is a poll()
 * on sockets, pipes, a pidfd or an inotify descriptor with a deadline.
 */
#include "hostile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "net.h"
#include "strlit.h"
#include "tls.h"

static void test_oversize(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--max-header-bytes", "4096", "--max-body-bytes", "65536", NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    uint64_t a = p->id[0], b = p->id[1];
    char *big = tmalloc(64 * 1024);
    assert_non_null(big);

    /* A request line longer than the head limit, complete... */
    size_t n = (size_t)snprintf(big, 64, "GET /sign_in?");
    memset(big + n, 'a', 5000);
    n += 5000;
    n += (size_t)snprintf(big + n, 64, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_refusal(&srv, big, n, 431);
    /* ... and one that never ends. */
    n = (size_t)snprintf(big, 64, "GET /");
    memset(big + n, 'b', 6000);
    n += 6000;
    expect_refusal(&srv, big, n, 431);
    pair_exchange(p);

    /* One huge header; many small ones (over 64 lines); many medium ones. */
    n = (size_t)snprintf(big, 128, "GET /sign_in?h HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'h', 5000);
    n += 5000;
    n += (size_t)snprintf(big + n, 64, "\r\n\r\n");
    expect_refusal(&srv, big, n, 431);
    n = (size_t)snprintf(big, 128, "GET /sign_in?h HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 80; i++)
        n += (size_t)snprintf(big + n, 64, "X-%02d: v\r\n", i);
    n += (size_t)snprintf(big + n, 64, "\r\n");
    assert_true(n < 4096);
    expect_refusal(&srv, big, n, 431);
    n = (size_t)snprintf(big, 128, "GET /sign_in?h HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(big + n, 256, "X-%02d: %0100d\r\n", i, i);
    n += (size_t)snprintf(big + n, 64, "\r\n");
    expect_refusal(&srv, big, n, 431);
    pair_exchange(p);

    /* Bodies over --max-body-bytes: refused on the head, before any body byte. */
    n = (size_t)snprintf(big, 512,
                         "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: text/plain\r\nContent-Length: 65537\r\n\r\n",
                         a, b);
    expect_refusal(&srv, big, n, 413);
    n = (size_t)snprintf(big, 512,
                         "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.0\r\n"
                         "Content-Length: 18446744073709551615\r\n\r\n",
                         a, b);
    expect_refusal(&srv, big, n, 413);
    /* A client that sends the 1 MB body anyway still reads its 413, then EOF. */
    hc_t *h = hc_open(&srv, HC_AUTO);
    n = (size_t)snprintf(big, 512,
                         "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: text/plain\r\nContent-Length: %u\r\n\r\n",
                         a, b, MB);
    assert_int_equal(hc_write_all(h, big, n, H_TIMEOUT_MS), 0);
    char *body = tmalloc(MB);
    assert_non_null(body);
    memset(body, 'B', MB);
    (void)hc_write_all(h, body, MB, H_TIMEOUT_MS); /* may be cut short by the close */
    rresp_t rr;
    int rc = hc_read_resp(h, &rr, H_TIMEOUT_MS);
    if (rc != 1)
        fail_msg("1 MB over the body limit: no complete answer (%d)", rc);
    if (rr.status != 413 || !rr.close)
        fail_msg("1 MB over the body limit: %d %s (close %d)", rr.status, rr.reason, rr.close);
    rresp_free(&rr);
    if (!hc_read_to_eof(h, H_TIMEOUT_MS) || h->len)
        fail_msg("after the 413: %zu more bytes and no EOF", h->len);
    hc_close(h);
    ASSERT_ALIVE(&srv);
    pair_exchange(p);

    /* Exactly the limit is relayed (to a third member, carol). */
    uint64_t c = h_sign_in(&srv, "carol");
    char line[64];
    snprintf(line, sizeof line, "carol,%" PRIu64 ",1\n", c);
    pair_await_note(p, line);
    h_send_ok(&srv, a, c, body, 65536, "text/plain");
    h_resp_t *r = h_wait_once(&srv, c);
    H_ASSERT_PRAGMA(r, a);
    assert_int_equal(r->body_len, 65536);
    assert_memory_equal(r->body, body, 65536);
    h_resp_free(r);
    tfree(body);
    tfree(big);

    char want[128];
    snprintf(want, sizeof want, "bob,%" PRIu64 ",1\n%s", b, line);
    pair_expect_notes(p, 0, want);
    pair_expect_notes(p, 1, line);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_oversize),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
