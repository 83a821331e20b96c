/*
 * Integration: per-member queues and parked waits (protocol.md A; B 5.3,
 * 5.4, 9.12, 9.23-26): FIFO order, one item per /wait, parking, the queue
 * limits (503 to the sender), a second /wait displacing the first (409),
 * member timeouts (a parked member is never timed out; an idle parked /wait
 * is answered empty), and what happens to queues when a member leaves.
 */
#include "harness.h"
#include "strlit.h"

#include <inttypes.h>
#include <stdio.h>

/* Sign in alice (1) and bob (2); alice drains bob's join. */
static void alice_and_bob(const h_server_t *srv)
{
    assert_int_equal(h_sign_in(srv, "alice"), 1);
    assert_int_equal(h_sign_in(srv, "bob"), 2);
    uint64_t ids[] = {1, 2};
    h_drain_joins(srv, ids, 2);
}

/* POST a text message on a keep-alive connection; the ack. */
static h_resp_t *ka_message(h_conn_t *c, uint64_t from, uint64_t to, const char *body)
{
    h_sendf(c,
            "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
            "Content-Length: %zu\r\nContent-Type: text/plain\r\n\r\n%s",
            from, to, strlen(body), body);
    return h_read(c);
}

/* GET /wait on a keep-alive connection; the answer. */
static h_resp_t *ka_wait(h_conn_t *c, uint64_t id)
{
    h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n", id);
    return h_read(c);
}

static void assert_ack(h_resp_t *r)
{
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
}

/* A message from `from` with body on a /wait answer. */
static void assert_message(h_resp_t *r, uint64_t from, const char *body)
{
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, from);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_BODY(r, body);
    h_resp_free(r);
}

/* A 503 for a full queue: text/plain, a reason line. */
static void assert_refused(h_resp_t *r)
{
    H_ASSERT_STATUS(r, 503, "Service Unavailable");
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    assert_true(r->body_len > 1);
    assert_int_equal(r->body[r->body_len - 1], '\n');
    h_resp_free(r);
}

/* B 9.12: msg0..msg2 queued, delivered in order one per /wait, each at once;
 * a fourth /wait parks until the next message arrives. */
static void test_fifo_then_park(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_send_ok(&srv, 2, 1, "msg0", 4, "text/plain");
    h_send_ok(&srv, 2, 1, "msg1", 4, "text/plain");
    h_send_ok(&srv, 2, 1, "msg2", 4, "text/plain");
    assert_message(h_wait_once(&srv, 1), 2, "msg0");
    assert_message(h_wait_once(&srv, 1), 2, "msg1");
    assert_message(h_wait_once(&srv, 1), 2, "msg2");

    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    h_send_ok(&srv, 2, 1, "msg3", 4, "text/plain");
    assert_message(h_read(w), 2, "msg3");
    h_expect_eof(w, H_TIMEOUT_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* 1,000 messages (the default per-member limit) queue and drain in order;
 * the 1,001st is refused with 503 and only that one. */
static void test_thousand_in_order(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_conn_t *bob = h_connect(&srv);
    char body[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(body, sizeof body, "message %04d", i);
        assert_ack(ka_message(bob, 2, 1, body));
    }
    assert_refused(ka_message(bob, 2, 1, "one too many"));

    h_conn_t *alice = h_connect(&srv);
    for (int i = 0; i < 1000; i++) {
        snprintf(body, sizeof body, "message %04d", i);
        assert_message(ka_wait(alice, 1), 2, body);
    }
    /* Drained: the next /wait parks, and a new message reaches it. */
    h_send_str(alice, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    h_expect_silence(alice, H_SILENCE_MS);
    assert_ack(ka_message(bob, 2, 1, "after"));
    assert_message(h_read(alice), 2, "after");
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* --queue-max-msgs 3: the 4th message gets 503, the first 3 are delivered,
 * notifications still queue behind them, and room frees up as alice reads. */
static void test_queue_limit_msgs(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--queue-max-msgs", "3", NULL);
    alice_and_bob(&srv);
    h_send_ok(&srv, 2, 1, "m0", 2, "text/plain");
    h_send_ok(&srv, 2, 1, "m1", 2, "text/plain");
    h_send_ok(&srv, 2, 1, "m2", 2, "text/plain");
    assert_refused(h_post_message(&srv, 2, 1, "m3", 2, "text/plain"));
    assert_int_equal(h_sign_in(&srv, "carol"), 3); /* a join is always queued */

    assert_message(h_wait_once(&srv, 1), 2, "m0");
    h_send_ok(&srv, 2, 1, "m4", 2, "text/plain"); /* one slot free again */
    assert_refused(h_post_message(&srv, 2, 1, "m5", 2, "text/plain"));
    assert_message(h_wait_once(&srv, 1), 2, "m1");
    assert_message(h_wait_once(&srv, 1), 2, "m2");
    h_resp_t *r = h_wait_once(&srv, 1);
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "carol,3,1\n");
    h_resp_free(r);
    assert_message(h_wait_once(&srv, 1), 2, "m4");
    /* Bob's own queue was never involved: he has carol's join only. */
    r = h_wait_once(&srv, 2);
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "carol,3,1\n");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* --queue-max-bytes 10: bytes of queued messages are bounded too. */
static void test_queue_limit_bytes(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--queue-max-bytes", "10", NULL);
    alice_and_bob(&srv);
    h_send_ok(&srv, 2, 1, "123456", 6, "text/plain");
    h_send_ok(&srv, 2, 1, "7890", 4, "text/plain"); /* exactly 10 */
    assert_refused(h_post_message(&srv, 2, 1, "x", 1, "text/plain"));
    assert_message(h_wait_once(&srv, 1), 2, "123456");
    h_send_ok(&srv, 2, 1, "abcdef", 6, "text/plain");
    assert_message(h_wait_once(&srv, 1), 2, "7890");
    assert_message(h_wait_once(&srv, 1), 2, "abcdef");
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Part A: a second /wait for the same member replaces the first, which is
 * answered 409 Conflict (text/plain, one line, CORS) and closed. */
static void test_second_wait_displaces_first(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_conn_t *w1 = h_connect(&srv);
    h_send_str(w1, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    /* w1 must be parked before w2 arrives. */
    h_wait_parked(&srv, 1, H_TIMEOUT_MS);
    h_expect_silence(w1, 0);
    h_conn_t *w2 = h_connect(&srv);
    h_send_str(w2, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_resp_t *r = h_read(w1);
    H_ASSERT_STATUS(r, 409, "Conflict");
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    assert_true(r->body_len > 1);
    assert_non_null(memchr(r->body, '\n', r->body_len));
    assert_int_equal(r->body[r->body_len - 1], '\n');
    assert_null(memchr(r->body, '\n', r->body_len - 1));
    assert_true(h_head_has(r, H_CORS_BLOCK));
    h_resp_free(r);
    h_expect_eof(w1, H_TIMEOUT_MS);

    h_expect_silence(w2, H_SILENCE_MS);
    h_send_ok(&srv, 2, 1, "to the second", 13, "text/plain");
    assert_message(h_read(w2), 2, "to the second");
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.23 with --member-timeout 1: bob never waits and is removed; alice,
 * parked, hears "bob,2,0"; bob is then unknown. */
static void test_member_timeout(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--member-timeout", "1", "--wait-timeout", "30", NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    uint64_t t_bob = h_now_ms();
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    h_resp_t *r = h_wait_once(&srv, 1);
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    r = h_read_timeout(w, 10000);
    uint64_t elapsed = h_now_ms() - t_bob;
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "bob,2,0\n");
    h_resp_free(r);
    /* Not before the timeout: more than 1 s after bob's sign-in. */
    if (elapsed < 950)
        fail_msg("bob was removed %" PRIu64 " ms after signing in (timeout 1 s)", elapsed);

    r = h_wait_once(&srv, 2);
    H_ASSERT_STATUS(r, 500, "Sorry");
    h_resp_free(r);
    r = h_post_message(&srv, 1, 2, "x", 1, "text/plain");
    H_ASSERT_STATUS(r, 500, "Error");
    H_ASSERT_BODY(r, "Peer most likely gone.");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.24 / Part A with --member-timeout 1 --wait-timeout 3: parked members
 * outlive the member timeout; their idle waits are answered empty at about
 * 3 s, and they are still members afterwards. */
static void test_parked_member_not_timed_out(void **state)
{
    (void)state;
    h_server_t srv;
    /* The wait outlasts the member timeout. Each member waits again as
     * soon as its idle answer comes (as clients do), so only that moment,
     * not the test's own pace, stands between answer and next wait. */
    h_server_start(&srv, "--member-timeout", "2", "--wait-timeout", "4", NULL);
    alice_and_bob(&srv);
    h_conn_t *wa = h_connect(&srv);
    h_send_str(wa, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_conn_t *wb = h_connect(&srv);
    h_send_str(wb, "GET /wait?peer_id=2 HTTP/1.0\r\n\r\n");
    uint64_t t0 = h_now_ms();

    h_resp_t *ra = h_read_timeout(wa, 10000);
    uint64_t elapsed = h_now_ms() - t0;
    h_conn_t *wa2 = h_connect(&srv);
    h_send_str(wa2, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_resp_t *rb = h_read_timeout(wb, 10000);
    h_conn_t *wb2 = h_connect(&srv);
    h_send_str(wb2, "GET /wait?peer_id=2 HTTP/1.0\r\n\r\n");
    /* Empty notifications, not departures. */
    H_ASSERT_STATUS(ra, 200, "OK");
    H_ASSERT_PRAGMA(ra, 1);
    assert_true(h_head_has(ra, "\r\nContent-Length: 0\r\n"));
    H_ASSERT_BODY(ra, "");
    H_ASSERT_STATUS(rb, 200, "OK");
    H_ASSERT_PRAGMA(rb, 2);
    assert_true(h_head_has(rb, "\r\nContent-Length: 0\r\n"));
    H_ASSERT_BODY(rb, "");
    h_resp_free(ra);
    h_resp_free(rb);
    if (elapsed < 3500)
        fail_msg("the idle /wait was answered after %" PRIu64 " ms (wait timeout 4 s)", elapsed);

    /* Both are still members: bob's message to alice is accepted... */
    h_send_ok(&srv, 2, 1, "still here", 10, "text/plain");
    /* ...and delivered to her waiting /wait. */
    assert_message(h_read_timeout(wa2, 10000), 2, "still here");
    h_close(wa);
    h_close(wb);
    h_close(wa2);
    h_close(wb2);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.26 / Part A: messages queued for a member that signs out are dropped;
 * the sender is not told (it only hears the departure). */
static void test_signout_drops_queued(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_send_ok(&srv, 2, 1, "m1", 2, "text/plain");
    h_send_ok(&srv, 2, 1, "m2", 2, "text/plain");
    h_resp_t *r = h_sign_out(&srv, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);

    r = h_wait_once(&srv, 2);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "alice,1,0\n");
    h_resp_free(r);
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=2 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);

    r = h_wait_once(&srv, 1);
    H_ASSERT_STATUS(r, 500, "Sorry");
    h_resp_free(r);
    /* A newcomer neither sees alice nor inherits anything. */
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "GET /sign_in?carol HTTP/1.0\r\n\r\n");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    H_ASSERT_BODY(r, "carol,3,1\nbob,2,1\n");
    h_resp_free(r);
    r = h_read(w); /* bob's parked wait hears carol */
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "carol,3,1\n");
    h_resp_free(r);
    h_conn_t *wc = h_connect(&srv);
    h_send_str(wc, "GET /wait?peer_id=3 HTTP/1.0\r\n\r\n");
    h_expect_silence(wc, H_SILENCE_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Part A: a member that signs out while its /wait is parked gets its own
 * entry "name,id,0" on that wait, and the others hear it at once. */
static void test_signout_answers_own_parked_wait(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_conn_t *wa = h_connect(&srv);
    h_send_str(wa, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_conn_t *wb = h_connect(&srv);
    h_send_str(wb, "GET /wait?peer_id=2 HTTP/1.0\r\n\r\n");
    h_expect_silence(wa, H_SILENCE_MS);
    h_expect_silence(wb, 50);
    h_resp_t *r = h_sign_out(&srv, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = h_read(wa);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "alice,1,0\n");
    h_resp_free(r);
    h_expect_eof(wa, H_TIMEOUT_MS);
    r = h_read(wb);
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "alice,1,0\n");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* A sign-out that answers the others' parked waits (the departure) must not
 * shorten their member timeout: alice, answered and then idle for a while
 * (well under the 30 s default), is still a member. */
static void test_signout_keeps_others_alive(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    assert_int_equal(h_sign_in(&srv, "carol"), 3);
    uint64_t ids[] = {1, 2, 3};
    h_drain_joins(&srv, ids, 3);
    h_conn_t *wa = h_connect(&srv);
    h_send_str(wa, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(wa, H_SILENCE_MS);
    h_resp_t *r = h_sign_out(&srv, 3);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = h_read(wa);
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "carol,3,0\n");
    h_resp_free(r);
    /* Alice does not poll for a second; bob, parked, hears nothing. */
    h_resp_t *rb = h_wait_once(&srv, 2);
    H_ASSERT_BODY(rb, "carol,3,0\n");
    h_resp_free(rb);
    h_conn_t *wb = h_connect(&srv);
    h_send_str(wb, "GET /wait?peer_id=2 HTTP/1.0\r\n\r\n");
    h_expect_silence(wb, 1500);
    /* Alice is still a member. */
    h_send_ok(&srv, 1, 2, "alive", 5, "text/plain");
    assert_message(h_read(wb), 1, "alive");
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_fifo_then_park),
        H_TEST(test_thousand_in_order),
        H_TEST(test_queue_limit_msgs),
        H_TEST(test_queue_limit_bytes),
        H_TEST(test_second_wait_displaces_first),
        H_TEST(test_member_timeout),
        H_TEST(test_parked_member_not_timed_out),
        H_TEST(test_signout_drops_queued),
        H_TEST(test_signout_answers_own_parked_wait),
        H_TEST(test_signout_keeps_others_alive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
