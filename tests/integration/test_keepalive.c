/*
 * Integration: HTTP/1.1 keep-alive and pipelining (protocol.md Part A):
 * several requests on one connection, pipelined POSTs relayed intact and
 * in order, a parked /wait on a keep-alive connection reused afterwards,
 * HTTP/1.0 and "Connection: close" closing after the answer, and the idle
 * timeout.
 */
#include "harness.h"
#include "strlit.h"

#include <inttypes.h>
#include <stdio.h>

static void assert_keep_alive(const h_resp_t *r)
{
    H_ASSERT_HDR(r, "Connection", "keep-alive");
}

/* HTTP/1.1: sign-in, message and wait on one connection, each answered
 * with "Connection: keep-alive". */
static void test_three_requests_one_connection(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "GET /sign_in?alice HTTP/1.1\r\nHost: t\r\n\r\n");
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    assert_keep_alive(r);
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "alice,1,1\n");
    h_resp_free(r);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);

    h_send_str(c, "POST /message?peer_id=1&to=2 HTTP/1.1\r\nHost: t\r\n"
                  "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    assert_keep_alive(r);
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);

    h_send_str(c, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    assert_keep_alive(r);
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);

    /* The connection is still open and idle; bob got the message. */
    h_expect_silence(c, 100);
    r = h_wait_once(&srv, 2);
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "hello");
    h_resp_free(r);
    /* A fourth request on the same connection, this one closing. */
    h_send_str(c, "GET /sign_out?peer_id=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_HDR(r, "Connection", "close");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Two POSTs (and a self-send) in one send(): two separate, intact messages
 * in order for alice, the answers in request order. */
static void test_pipelined_posts(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    uint64_t ids[] = {1, 2};
    h_drain_joins(&srv, ids, 2);

    static const char pipeline[] =
        "POST /message?peer_id=2&to=1 HTTP/1.1\r\nHost: t\r\nContent-Type: text/one\r\n"
        "Content-Length: 3\r\n\r\none"
        "POST /message?peer_id=2&to=1 HTTP/1.1\r\nHost: t\r\nContent-Type: text/two\r\n"
        "Content-Length: 5\r\n\r\ntwo!!"
        "POST /message?peer_id=2&to=2 HTTP/1.1\r\nHost: t\r\nContent-Type: text/self\r\n"
        "Content-Length: 4\r\n\r\nself";
    h_conn_t *c = h_connect(&srv);
    h_send(c, pipeline, sizeof pipeline - 1);
    for (int i = 0; i < 2; i++) {
        h_resp_t *r = h_read(c);
        H_ASSERT_STATUS(r, 200, "OK");
        assert_keep_alive(r);
        H_ASSERT_HDR(r, "Content-Type", "text/plain");
        H_ASSERT_NO_HDR(r, "Pragma");
        H_ASSERT_BODY(r, "");
        h_resp_free(r);
    }
    h_resp_t *r = h_read(c); /* the echo comes third */
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_HDR(r, "Content-Type", "text/self");
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "self");
    h_resp_free(r);
    h_expect_silence(c, 100);

    r = h_wait_once(&srv, 1);
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_HDR(r, "Content-Type", "text/one");
    H_ASSERT_BODY(r, "one");
    h_resp_free(r);
    r = h_wait_once(&srv, 1);
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_HDR(r, "Content-Type", "text/two");
    H_ASSERT_BODY(r, "two!!");
    h_resp_free(r);
    /* Exactly two: alice's next /wait parks. */
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);

    /* Pipelined GETs, the last one closing: three answers, then EOF. */
    h_send_str(c, "GET /sign_in?carol HTTP/1.1\r\nHost: t\r\n\r\n"
                  "OPTIONS /x HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /sign_in?dave HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    H_ASSERT_PRAGMA(r, 3);
    assert_keep_alive(r);
    h_resp_free(r);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_NO_HDR(r, "Content-Type");
    assert_keep_alive(r);
    h_resp_free(r);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    H_ASSERT_PRAGMA(r, 4);
    H_ASSERT_HDR(r, "Connection", "close");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* A /wait parks on a keep-alive connection, is answered, and the same
 * connection carries the next /wait, which parks and is answered too. */
static void test_parked_wait_keepalive_reused(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    uint64_t ids[] = {1, 2};
    h_drain_joins(&srv, ids, 2);
    h_conn_t *w = h_connect(&srv);
    for (int round = 0; round < 3; round++) {
        h_send_str(w, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        h_expect_silence(w, H_SILENCE_MS);
        char body[32];
        int n = snprintf(body, sizeof body, "round %d", round);
        h_send_ok(&srv, 2, 1, body, (size_t)n, "text/plain");
        h_resp_t *r = h_read(w);
        H_ASSERT_STATUS(r, 200, "OK");
        assert_keep_alive(r);
        H_ASSERT_PRAGMA(r, 2);
        H_ASSERT_BODY(r, body);
        h_resp_free(r);
    }
    /* The last parked wait on it is answered by the departure of bob. */
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    h_resp_t *r = h_sign_out(&srv, 2);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = h_read(w);
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "bob,2,0\n");
    assert_keep_alive(r);
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Part A: a member that signs out while its keep-alive /wait is parked gets
 * its own entry "name,id,0" there and that connection is closed, so the
 * answer must say "Connection: close". */
static void test_own_signout_closes_keepalive_wait(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    h_resp_t *r = h_sign_out(&srv, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = h_read(w);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "alice,1,0\n");
    h_expect_eof(w, H_TIMEOUT_MS);
    H_ASSERT_HDR(r, "Connection", "close");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* HTTP/1.0 (and HTTP/1.1 with Connection: close): "Connection: close" and
 * the server closes after the answer, also after a parked /wait. */
static void test_close_after_answer(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    static const char *const reqs[] = {
        "GET /sign_in?a HTTP/1.0\r\n\r\n",
        "GET /sign_in?b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /sign_in?c HTTP/1.1\r\nHost: t\r\nConnection: Close\r\n\r\n",
        "OPTIONS /sign_in HTTP/1.0\r\n\r\n",
        "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n", /* a's joins: answered at once */
        "GET /nowhere HTTP/1.0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        h_conn_t *c = h_connect(&srv);
        h_send_str(c, reqs[i]);
        h_resp_t *r = h_read(c);
        H_ASSERT_HDR(r, "Connection", "close");
        h_resp_free(r);
        h_expect_eof(c, H_TIMEOUT_MS);
        h_close(c);
    }
    /* HTTP/1.0 with "Connection: keep-alive" is still closed (Part A). */
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "GET /sign_in?d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    H_ASSERT_HDR(r, "Connection", "close");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);
    /* A parked HTTP/1.0 wait: answered, then closed. */
    h_resp_t *j = h_wait_once(&srv, 1); /* c's join */
    H_ASSERT_PRAGMA(j, 1);
    h_resp_free(j);
    j = h_wait_once(&srv, 1); /* d's join */
    H_ASSERT_PRAGMA(j, 1);
    h_resp_free(j);
    c = h_connect(&srv);
    h_send_str(c, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(c, H_SILENCE_MS);
    h_send_ok(&srv, 2, 1, "x", 1, "text/plain");
    r = h_read(c);
    H_ASSERT_BODY(r, "x");
    H_ASSERT_HDR(r, "Connection", "close");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* --idle-timeout 1: an idle keep-alive connection is closed by the server;
 * a busy one is not. */
static void test_idle_timeout(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--idle-timeout", "1", NULL);
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "GET /sign_in?alice HTTP/1.1\r\nHost: t\r\n\r\n");
    h_resp_t *r = h_read(c);
    uint64_t t0 = h_now_ms();
    assert_keep_alive(r);
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    uint64_t elapsed = h_now_ms() - t0;
    if (elapsed < 900)
        fail_msg("idle connection closed after %" PRIu64 " ms (idle timeout 1 s)", elapsed);
    h_close(c);

    /* A parked /wait is not idle: it outlives the idle timeout (answered
     * empty only by the 30 s wait timeout). */
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    r = h_wait_once(&srv, 1);
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);
    c = h_connect(&srv);
    h_send_str(c, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    h_expect_silence(c, 1800);
    h_send_ok(&srv, 2, 1, "late", 4, "text/plain");
    r = h_read(c);
    H_ASSERT_BODY(r, "late");
    assert_keep_alive(r);
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_three_requests_one_connection),
        H_TEST(test_pipelined_posts),
        H_TEST(test_parked_wait_keepalive_reused),
        H_TEST(test_own_signout_closes_keepalive_wait),
        H_TEST(test_close_after_answer),
        H_TEST(test_idle_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
