/*
 * Integration, hostile clients: SIGTERM while messages are queued and
 * clients are stuck.
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

static void expect_shutdown_notice(h_conn_t *c, uint64_t id)
{
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, id);
    H_ASSERT_HDR(r, "Connection", "close");
    H_ASSERT_BODY(r, "Server shutting down");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
}

static void test_sigterm_with_queues(void **state)
{
    (void)state;
    enum { GRACE_MS = 2000 };
    h_server_t srv;
    h_server_start(&srv, "--shutdown-grace", "2", NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    uint64_t a = p->id[0];
    uint64_t carol = h_sign_in(&srv, "carol"), dave = h_sign_in(&srv, "dave"),
             erin = h_sign_in(&srv, "erin");
    char line[64];
    snprintf(line, sizeof line, "erin,%" PRIu64 ",1\n", erin);
    pair_await_note(p, line);

    /* carol never waits: small and 1 MB messages pile up for her. */
    char *big = tmalloc(MB);
    assert_non_null(big);
    memset(big, 'q', MB);
    for (int i = 0; i < 3; i++)
        h_send_ok(&srv, a, carol, "queued", 6, "text/plain");
    for (int i = 0; i < 2; i++)
        h_send_ok(&srv, a, carol, big, MB, "text/plain");
    /* dave parks on a keep-alive connection (after erin's join), erin on HTTP/1.0. */
    h_conn_t *wd = h_connect(&srv);
    h_sendf(wd, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n", dave);
    h_resp_t *r = h_read(wd);
    H_ASSERT_BODY(r, line);
    h_resp_free(r);
    h_sendf(wd, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n", dave);
    h_conn_t *we = h_connect(&srv);
    h_sendf(we, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", erin);
    h_wait_parked(&srv, 4, H_TIMEOUT_MS); /* alice, bob, dave and erin */
    h_expect_silence(wd, 0);
    h_expect_silence(we, 0);
    /* A request that stops halfway, and a client that never reads. */
    hc_t *half = hc_open(&srv, HC_AUTO);
    static const char half_req[] =
        "POST /message?peer_id=1&to=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc";
    assert_int_equal(hc_write_all(half, half_req, sizeof half_req - 1, H_TIMEOUT_MS), 0);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
                      "Content-Length: %u\r\n\r\n",
                      dave, dave, MB);
    char *req = tmalloc((size_t)hl + MB);
    assert_non_null(req);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, big, MB);
    hc_t *stuck = hc_open(&srv, HC_AUTO);
    push_until_full(stuck, req, (size_t)hl + MB, "the never-reading client");
    tfree(req);
    tfree(big);
    pair_exchange(p);

    /* SIGTERM: the stuck ones hold the server at most for the grace period. */
    uint64_t t0 = h_now_ms();
    int st = h_server_stop(&srv);
    uint64_t took = h_now_ms() - t0;
    note("SIGTERM to exit: %" PRIu64 " ms", took);
    if (st != 0)
        fail_msg("exit status %d after SIGTERM (expected 0)", st);
    if (took > GRACE_MS + 5000)
        fail_msg("the server took %" PRIu64 " ms to exit (grace %d ms)", took, GRACE_MS);
    pair_expect_shutdown(p);
    expect_shutdown_notice(wd, dave);
    expect_shutdown_notice(we, erin);
    if (!hc_read_to_eof(half, H_TIMEOUT_MS))
        fail_msg("the half request's connection was not closed");
    if (!hc_read_to_eof(stuck, H_TIMEOUT_MS)) {
        /* it may hold up to megabytes of echoes: read them all */
        fail_msg("the never-reading client's connection was not closed");
    }
    assert_null(h_try_connect(&srv));
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_sigterm_with_queues),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
