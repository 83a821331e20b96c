/*
 * Integration, hostile clients: a client that never reads what it asked for,
 * and half-closed sockets (shutdown of one direction) in every phase.
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

static void test_never_reading_client(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    uint64_t x = h_sign_in(&srv, "stuck");
    char line[64];
    snprintf(line, sizeof line, "stuck,%" PRIu64 ",1\n", x);
    pair_await_note(p, line);

    /* 1 MB self-sends (each echoed back 1 MB), pipelined, never read. */
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: application/octet-stream\r\nContent-Length: %u\r\n\r\n",
                      x, x, MB);
    size_t reqlen = (size_t)hl + MB;
    char *req = tmalloc(reqlen);
    assert_non_null(req);
    memcpy(req, head, (size_t)hl);
    for (size_t i = 0; i < MB; i++)
        req[(size_t)hl + i] = (char)('a' + i % 23);
    hc_t *echo = hc_open(&srv, HC_AUTO);
    size_t pushed = push_until_full(echo, req, reqlen, "1 MB self-sends");
    tfree(req);

    /* Small pipelined requests with answers ten times their size, never read. */
    static const char opt[] = "OPTIONS /never-read HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t olen = sizeof opt - 1, reps = 65536 / olen;
    char *many = tmalloc(reps * olen);
    assert_non_null(many);
    for (size_t i = 0; i < reps; i++)
        memcpy(many + i * olen, opt, olen);
    hc_t *small = hc_open(&srv, HC_AUTO);
    size_t pushed_small = push_until_full(small, many, reps * olen, "pipelined OPTIONS");
    tfree(many);
    note("stuck clients: %zu and %zu bytes pushed", pushed, pushed_small);

    /* Meanwhile everybody else is served as usual. */
    for (int i = 0; i < 3; i++)
        pair_exchange(p);
    uint64_t m = h_sign_in(&srv, "meanwhile");
    snprintf(line, sizeof line, "meanwhile,%" PRIu64 ",1\n", m);
    pair_await_note(p, line);
    ASSERT_ALIVE(&srv);

    /* The stuck clients leave without reading a byte (reset). */
    hc_close(echo);
    hc_close(small);
    pair_exchange(p);
    ASSERT_ALIVE(&srv);

    /* "stuck" is still a member in good order: its queue holds meanwhile's
     * join, then a message sent now. */
    h_send_ok(&srv, p->id[0], x, "for stuck", 9, "text/plain");
    h_resp_t *r = h_wait_once(&srv, x);
    H_ASSERT_PRAGMA(r, x);
    H_ASSERT_BODY(r, line);
    h_resp_free(r);
    r = h_wait_once(&srv, x);
    H_ASSERT_PRAGMA(r, p->id[0]);
    H_ASSERT_BODY(r, "for stuck");
    h_resp_free(r);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

static void test_half_close(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    uint64_t a = p->id[0], b = p->id[1];
    char notes[512];
    size_t nl = (size_t)snprintf(notes, sizeof notes, "bob,%" PRIu64 ",1\n", b);

    /* sign_in, HTTP/1.1 and HTTP/1.0, then SHUT_WR: the answer, then EOF. */
    static const char *const vers[] = {"1.1", "1.0"};
    for (int v = 0; v < 2; v++) {
        h_conn_t *c = h_connect(&srv);
        h_sendf(c, "GET /sign_in?half%d HTTP/%s\r\nHost: t\r\n\r\n", v, vers[v]);
        assert_int_equal(shutdown(h_fd(c), SHUT_WR), 0);
        h_resp_t *r = h_read(c);
        H_ASSERT_STATUS(r, 200, "Added");
        nl += (size_t)snprintf(notes + nl, sizeof notes - nl, "half%d,%lld,1\n", v,
                               h_hdr_num(r, "Pragma"));
        h_resp_free(r);
        h_expect_eof(c, H_TIMEOUT_MS);
        h_close(c);
    }
    /* A message POST. */
    char body[64];
    pair_body(p, 0, p->sent[0], body, sizeof body);
    h_conn_t *c = h_connect(&srv);
    h_sendf(c,
            "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
            a, b, strlen(body), body);
    assert_int_equal(shutdown(h_fd(c), SHUT_WR), 0);
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);
    p->sent[0]++;
    pair_until(p, H_TIMEOUT_MS, all_delivered, NULL, "the half-closed POST is delivered");

    /* A 1 MB self-send: the whole echo (many writes), then EOF. */
    char *big = tmalloc(MB);
    assert_non_null(big);
    for (size_t i = 0; i < MB; i++)
        big[i] = (char)(i * 7 + i / 4096);
    c = h_connect(&srv);
    h_sendf(c,
            "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: %u\r\n\r\n",
            a, a, MB);
    h_send(c, big, MB);
    assert_int_equal(shutdown(h_fd(c), SHUT_WR), 0);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, a);
    assert_int_equal(r->body_len, MB);
    assert_memory_equal(r->body, big, MB);
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);

    /* Three pipelined requests, then SHUT_WR: three answers in order, EOF. */
    pair_body(p, 1, p->sent[1], body, sizeof body);
    c = h_connect(&srv);
    h_sendf(c,
            "GET /sign_in?half2 HTTP/1.1\r\nHost: t\r\n\r\n"
            "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s"
            "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
            "Content-Length: %u\r\n\r\n",
            b, a, strlen(body), body, b, b, MB);
    h_send(c, big, MB);
    assert_int_equal(shutdown(h_fd(c), SHUT_WR), 0);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    nl += (size_t)snprintf(notes + nl, sizeof notes - nl, "half2,%lld,1\n", h_hdr_num(r, "Pragma"));
    h_resp_free(r);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    assert_int_equal(r->body_len, 0);
    h_resp_free(r);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, b);
    assert_int_equal(r->body_len, MB);
    assert_memory_equal(r->body, big, MB);
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);
    p->sent[1]++;
    tfree(big);
    pair_until(p, H_TIMEOUT_MS, all_delivered, NULL, "the pipelined POST is delivered");

    /* Half a request, then SHUT_WR: closed, with a 400 at most, nobody signed in. */
    c = h_connect(&srv);
    h_send_str(c, "GET /sign_in?never HTT");
    assert_int_equal(shutdown(h_fd(c), SHUT_WR), 0);
    h_resp_t *maybe = try_read(c, H_TIMEOUT_MS);
    if (maybe) {
        if (maybe->status != 400)
            fail_msg("half a request then EOF: %d %s", maybe->status, maybe->reason);
        h_resp_free(maybe);
    }
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);

    pair_exchange(p);
    pair_until(p, H_TIMEOUT_MS, alice_noted, "half2,", "alice hears half2's join");
    pair_expect_notes(p, 0, notes);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_never_reading_client),
        T(test_half_close),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
