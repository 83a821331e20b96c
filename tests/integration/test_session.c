/*
 * Integration: the protocol session byte for byte (protocol.md B 6, 7.2, 9
 * and Part A): sign-in lists, join/leave notifications, relayed messages and
 * acks, the exact header spellings stock clients search for, the CORS block,
 * OPTIONS, names, ids, self-send, unknown members, and bodies that are empty,
 * untyped, large and binary, or that arrive in pieces.
 */
#include "harness.h"
#include "strlit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static const char SORRY_BODY[] = "<html><body>Sorry, not yet implemented</body></html>";
static const char GONE_BODY[] = "Peer most likely gone.";

/*
 * What every answer of ours has (Part A "Kept exactly"): the status line in
 * HTTP/1.1, Server naming pcsig, Cache-Control, Content-Length spelled
 * exactly ("\r\nContent-Length: " + the body length), the CORS block once
 * and exactly, and a Pragma (when present) spelled "\r\nPragma: ".
 */
static void check_layout(const h_resp_t *r)
{
    assert_memory_equal(r->head, "HTTP/1.1 ", 9);
    const char *server = h_hdr(r, "Server");
    assert_non_null(server);
    assert_memory_equal(server, "pcsig", 5);
    H_ASSERT_HDR(r, "Cache-Control", "no-cache");
    char cl[64];
    snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", r->body_len);
    if (h_head_count(r, cl) != 1)
        fail_msg("expected exactly one \"Content-Length: %zu\" line; head:\n%s", r->body_len,
                 r->head);
    assert_int_equal(h_hdr_count(r, "Content-Length"), 1);
    if (h_head_count(r, H_CORS_BLOCK) != 1)
        fail_msg("the CORS block is not there exactly once; head:\n%s", r->head);
    assert_int_equal(h_head_count(r, "Access-Control-"), 5);
    if (h_hdr(r, "Pragma"))
        assert_true(h_head_has(r, "\r\nPragma: "));
    assert_int_equal(h_hdr_count(r, "Connection"), 1);
}

/* An HTTP/1.0 request's answer: the layout above plus "Connection: close". */
static void check_closing(const h_resp_t *r)
{
    check_layout(r);
    H_ASSERT_HDR(r, "Connection", "close");
}

/* A notification on /wait: 200 OK, text/plain, Pragma = own id, body. */
static void check_notification(h_resp_t *r, uint64_t own, const char *body)
{
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_PRAGMA(r, own);
    H_ASSERT_BODY(r, body);
}

static void check_sorry(h_resp_t *r)
{
    H_ASSERT_STATUS(r, 500, "Sorry");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/html");
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, SORRY_BODY);
}

static void check_gone(h_resp_t *r)
{
    H_ASSERT_STATUS(r, 500, "Error");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, GONE_BODY);
}

/* Sign in alice and bob, alice drains bob's join: ids 1 and 2. */
static void alice_and_bob(const h_server_t *srv)
{
    assert_int_equal(h_sign_in(srv, "alice"), 1);
    assert_int_equal(h_sign_in(srv, "bob"), 2);
    h_resp_t *r = h_wait_once(srv, 1);
    check_notification(r, 1, "bob,2,1\n");
    h_resp_free(r);
}

/* protocol.md B 6 with the stock client's exact request bytes (B 7.2). */
static void test_full_session_stock_client(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);

    /* C1: sign-in of alice. */
    h_conn_t *c1 = h_connect(&srv);
    h_send_str(c1, "GET /sign_in?alice HTTP/1.0\r\n\r\n");
    h_resp_t *r = h_read(c1);
    H_ASSERT_STATUS(r, 200, "Added");
    assert_memory_equal(r->head, "HTTP/1.1 200 Added\r\n", 20);
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    assert_true(h_head_has(r, "\r\nContent-Length: 10\r\n"));
    assert_true(h_head_has(r, "\r\nPragma: 1\r\n"));
    H_ASSERT_BODY(r, "alice,1,1\n");
    h_resp_free(r);
    h_expect_eof(c1, H_TIMEOUT_MS); /* HTTP/1.0: the server closes */
    h_close(c1);

    /* C2: alice's hanging GET parks. */
    h_conn_t *c2 = h_connect(&srv);
    h_send_str(c2, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(c2, H_SILENCE_MS);

    /* C3: bob signs in; alice is notified. */
    h_conn_t *c3 = h_connect(&srv);
    h_send_str(c3, "GET /sign_in?bob HTTP/1.0\r\n\r\n");
    r = h_read(c2);
    assert_memory_equal(r->head, "HTTP/1.1 200 OK\r\n", 17);
    check_notification(r, 1, "bob,2,1\n");
    assert_true(h_head_has(r, "\r\nPragma: 1\r\n"));
    h_resp_free(r);
    h_expect_eof(c2, H_TIMEOUT_MS);
    h_close(c2);
    r = h_read(c3);
    H_ASSERT_STATUS(r, 200, "Added");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    assert_true(h_head_has(r, "\r\nPragma: 2\r\n"));
    H_ASSERT_BODY(r, "bob,2,1\nalice,1,1\n");
    h_resp_free(r);
    h_close(c3);

    /* C4: alice re-polls and parks; C5: bob's offer. */
    h_conn_t *c4 = h_connect(&srv);
    h_send_str(c4, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(c4, H_SILENCE_MS);
    static const char offer[] = "{\"type\":\"offer\",\"x\":12}";
    assert_int_equal(sizeof offer - 1, 23);
    h_conn_t *c5 = h_connect(&srv);
    h_send_str(c5, "POST /message?peer_id=2&to=1 HTTP/1.0\r\nContent-Length: 23\r\n"
                   "Content-Type: text/plain\r\n\r\n{\"type\":\"offer\",\"x\":12}");
    r = h_read(c4);
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    assert_true(h_head_has(r, "\r\nContent-Length: 23\r\n"));
    assert_true(h_head_has(r, "\r\nPragma: 2\r\n"));
    H_ASSERT_BODY(r, offer);
    h_resp_free(r);
    h_close(c4);
    r = h_read(c5);
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    assert_true(h_head_has(r, "\r\nContent-Length: 0\r\n"));
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    h_expect_eof(c5, H_TIMEOUT_MS);
    h_close(c5);

    /* C7: alice parks again; C6: bob signs out; alice hears it at once. */
    h_conn_t *c7 = h_connect(&srv);
    h_send_str(c7, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(c7, H_SILENCE_MS);
    h_conn_t *c6 = h_connect(&srv);
    h_send_str(c6, "GET /sign_out?peer_id=2 HTTP/1.0\r\n\r\n");
    r = h_read(c6);
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    r = h_read(c7);
    check_notification(r, 1, "bob,2,0\n");
    assert_true(h_head_has(r, "\r\nPragma: 1\r\n"));
    h_resp_free(r);
    h_close(c6);
    h_close(c7);

    /* B 9.21: bob is gone for /wait and as a sender. */
    r = h_wait_once(&srv, 2);
    check_sorry(r);
    h_resp_free(r);
    r = h_post_message(&srv, 2, 1, "x", 1, "text/plain");
    check_gone(r);
    h_resp_free(r);

    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.4: a third member's list and exactly one notification for each other. */
static void test_three_members(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "GET /sign_in?carol HTTP/1.1\r\nHost: localhost\r\n\r\n");
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    check_layout(r);
    H_ASSERT_PRAGMA(r, 3);
    H_ASSERT_BODY(r, "carol,3,1\nalice,1,1\nbob,2,1\n");
    h_resp_free(r);
    h_close(c);

    uint64_t ids[] = {1, 2, 3};
    h_drain_joins(&srv, ids, 3);
    /* Nothing more for anyone: the next /wait of each parks. */
    h_conn_t *w[3];
    for (int i = 0; i < 3; i++) {
        w[i] = h_connect(&srv);
        h_sendf(w[i], "GET /wait?peer_id=%d HTTP/1.0\r\n\r\n", i + 1);
    }
    for (int i = 0; i < 3; i++)
        h_expect_silence(w[i], i == 0 ? H_SILENCE_MS : 50);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Part A: the CORS block on OPTIONS, which has no Content-Type. */
static void test_options(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    static const char *const reqs[] = {
        "OPTIONS /message?peer_id=1&to=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "OPTIONS /sign_in HTTP/1.0\r\n\r\n",
        ("OPTIONS /anything HTTP/1.0\r\nOrigin: http://example.org\r\n"
         "Access-Control-Request-Method: POST\r\n\r\n"),
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        h_resp_t *r = h_request_str(&srv, reqs[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        check_closing(r);
        H_ASSERT_NO_HDR(r, "Content-Type");
        assert_true(h_head_has(r, "\r\nContent-Length: 0\r\n"));
        H_ASSERT_NO_HDR(r, "Pragma");
        H_ASSERT_BODY(r, "");
        h_resp_free(r);
    }
    /* OPTIONS created nobody: the first sign-in is still id 1. */
    assert_int_equal(h_sign_in(&srv, "x"), 1);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Sign in with a raw name and return the first line of the list. */
static char *sign_in_first_line(const h_server_t *srv, const char *target, uint64_t *id)
{
    h_conn_t *c = h_connect(srv);
    h_sendf(c, "GET %s HTTP/1.0\r\n\r\n", target);
    h_resp_t *r = h_read(c);
    h_close(c);
    H_ASSERT_STATUS(r, 200, "Added");
    *id = (uint64_t)h_hdr_num(r, "Pragma");
    char *nl = memchr(r->body, '\n', r->body_len);
    assert_non_null(nl);
    char *line = malloc((size_t)(nl - r->body) + 1);
    assert_non_null(line);
    memcpy(line, r->body, (size_t)(nl - r->body));
    line[nl - r->body] = '\0';
    h_resp_free(r);
    return line;
}

/* Part A names: raw bytes, ',' -> '_', 512 bytes, peer_<id> when empty. */
static void test_names(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    uint64_t id;
    char *line = sign_in_first_line(&srv, "/sign_in", &id);
    assert_int_equal(id, 1);
    assert_string_equal(line, "peer_1,1,1");
    free(line);
    line = sign_in_first_line(&srv, "/sign_in?", &id);
    assert_int_equal(id, 2);
    assert_string_equal(line, "peer_2,2,1");
    free(line);
    line = sign_in_first_line(&srv, "/sign_in?a,b,c", &id);
    assert_int_equal(id, 3);
    assert_string_equal(line, "a_b_c,3,1");
    free(line);
    line = sign_in_first_line(&srv, "/sign_in?name=J%20D&x=1", &id);
    assert_int_equal(id, 4);
    assert_string_equal(line, "name=J%20D&x=1,4,1");
    free(line);

    char target[700] = "/sign_in?";
    char expect[700];
    for (int i = 0; i < 600; i++)
        target[9 + i] = (char)('a' + i % 26);
    target[609] = '\0';
    memcpy(expect, target + 9, 512);
    snprintf(expect + 512, sizeof expect - 512, ",5,1");
    line = sign_in_first_line(&srv, target, &id);
    assert_int_equal(id, 5);
    assert_int_equal(strlen(line), 512 + 4);
    assert_string_equal(line, expect);
    free(line);

    /* The others see the same names in their notifications, in join order. */
    for (uint64_t who = 2; who <= 5; who++) {
        h_resp_t *r = h_wait_once(&srv, 1);
        H_ASSERT_PRAGMA(r, 1);
        char want[700];
        if (who == 2)
            snprintf(want, sizeof want, "peer_2,2,1\n");
        else if (who == 3)
            snprintf(want, sizeof want, "a_b_c,3,1\n");
        else if (who == 4)
            snprintf(want, sizeof want, "name=J%%20D&x=1,4,1\n");
        else
            snprintf(want, sizeof want, "%.512s,5,1\n", target + 9);
        H_ASSERT_BODY(r, want);
        h_resp_free(r);
    }
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.9: ids are never reused. */
static void test_ids_never_reused(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    uint64_t x = h_sign_in(&srv, "x");
    assert_int_equal(x, 1);
    h_resp_t *r = h_sign_out(&srv, x);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    assert_int_equal(h_sign_in(&srv, "y"), 2);
    r = h_sign_out(&srv, 2);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = h_sign_out(&srv, 2); /* twice: it is gone */
    check_sorry(r);
    h_resp_free(r);
    assert_int_equal(h_sign_in(&srv, "x"), 3);
    assert_int_equal(h_sign_in(&srv, "y"), 4);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.13: a message to oneself is echoed on the same connection. */
static void test_self_send_echo(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_resp_t *r = h_post_message(&srv, 2, 2, "self", 4, "text/x");
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/x");
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "self");
    h_resp_free(r);
    /* Nothing was queued for bob: his /wait parks. */
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=2 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.14/15: unknown target or sender: 500 Error, and nothing is relayed. */
static void test_unknown_target_and_sender(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_resp_t *r = h_post_message(&srv, 1, 999, "hello", 5, "text/plain");
    check_gone(r);
    h_resp_free(r);
    r = h_post_message(&srv, 999, 1, "hello", 5, "text/plain");
    check_gone(r);
    h_resp_free(r);
    /* Parameter order does not matter (B 9.16). */
    r = h_request_str(&srv, "POST /message?to=1&peer_id=2 HTTP/1.0\r\nContent-Length: 3\r\n"
                            "Content-Type: text/plain\r\n\r\nabc");
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = h_wait_once(&srv, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "abc");
    h_resp_free(r);
    /* Alice received nothing from 999 (nor anything else). */
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.22 / Part A: /wait and /sign_out for an unknown id: 500 Sorry. */
static void test_unknown_id_sorry(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    h_resp_t *r = h_wait_once(&srv, 77);
    check_sorry(r);
    h_resp_free(r);
    r = h_sign_out(&srv, 77);
    check_sorry(r);
    h_resp_free(r);
    r = h_request_str(&srv, "GET /wait?peer_id=77 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    check_sorry(r);
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Receive on alice's (1) parked or next /wait one message from bob (2). */
static h_resp_t *wait_message_for_alice(const h_server_t *srv)
{
    h_resp_t *r = h_wait_once(srv, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_PRAGMA(r, 2);
    return r;
}

/* B 9.29: GET /message relays an empty message with no Content-Type. */
static void test_get_message_relays_empty(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_resp_t *r = h_request_str(&srv, "GET /message?peer_id=2&to=1 HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    r = wait_message_for_alice(&srv);
    H_ASSERT_NO_HDR(r, "Content-Type");
    assert_true(h_head_has(r, "\r\nContent-Length: 0\r\n"));
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Part A: POST with Content-Length: 0 is a valid, empty message. */
static void test_post_empty_body_relayed(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    h_resp_t *r = h_request_str(&srv, "POST /message?peer_id=2&to=1 HTTP/1.0\r\n"
                                      "Content-Length: 0\r\nContent-Type: text/plain\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_NO_HDR(r, "Pragma");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    r = h_read(w);
    H_ASSERT_STATUS(r, 200, "OK");
    check_closing(r);
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    assert_true(h_head_has(r, "\r\nContent-Length: 0\r\n"));
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    /* Exactly one relay: alice's next /wait parks. */
    h_close(w);
    w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Part A: POST without Content-Type is relayed without one. */
static void test_post_without_content_type(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    h_resp_t *r = h_post_message(&srv, 2, 1, "hi", 2, NULL);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    /* Lower-case header names are headers too (Part A). */
    r = h_request_str(&srv, "POST /message?peer_id=2&to=1 HTTP/1.0\r\n"
                            "content-length: 3\r\ncontent-type: text/lower\r\n\r\nlow");
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = wait_message_for_alice(&srv);
    H_ASSERT_NO_HDR(r, "Content-Type");
    H_ASSERT_BODY(r, "hi");
    h_resp_free(r);
    r = wait_message_for_alice(&srv);
    H_ASSERT_HDR(r, "Content-Type", "text/lower");
    H_ASSERT_BODY(r, "low");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.17: 100 KB of every byte value, relayed exactly to a parked wait and
 * through the queue. */
static void test_large_binary_body(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    const size_t n = 100 * 1024;
    unsigned char *body = malloc(n);
    assert_non_null(body);
    for (size_t i = 0; i < n; i++)
        body[i] = (unsigned char)((i * 7 + i / 256) & 0xff);
    for (size_t i = 0; i < 256; i++)
        body[i] = (unsigned char)i; /* 0..255 right at the start, NUL first */

    /* Parked: the message goes straight to the waiting socket. */
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    h_send_ok(&srv, 2, 1, body, n, "application/octet-stream");
    h_resp_t *r = h_read(w);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_HDR(r, "Content-Type", "application/octet-stream");
    assert_true(h_head_has(r, "\r\nContent-Length: 102400\r\n"));
    assert_int_equal(r->body_len, n);
    assert_memory_equal(r->body, body, n);
    h_resp_free(r);
    h_close(w);

    /* Queued: the same bytes come out of the queue. */
    h_send_ok(&srv, 2, 1, body, n, "application/octet-stream");
    r = wait_message_for_alice(&srv);
    assert_int_equal(r->body_len, n);
    assert_memory_equal(r->body, body, n);
    h_resp_free(r);
    free(body);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* B 9.18: headers split inside a name, the body in chunks of 3000 and 2000
 * bytes; the server answers only once the request is complete. */
static void test_split_delivery(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    alice_and_bob(&srv);
    char body[5000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('A' + i % 23);
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "POST /message?peer_id=2&to=1 HTTP/1.0\r\nContent-Le");
    h_expect_silence(c, 150);
    h_send_str(c, "ngth: 5000\r\nContent-Type: text/plain\r\n\r\n");
    h_expect_silence(c, 150);
    h_send(c, body, 3000);
    h_expect_silence(c, 150);
    h_send(c, body + 3000, 2000);
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_BODY(r, "");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);

    r = wait_message_for_alice(&srv);
    assert_int_equal(r->body_len, sizeof body);
    assert_memory_equal(r->body, body, sizeof body);
    h_resp_free(r);
    /* Relayed once: the next /wait parks. */
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);

    /* The sign-in request split byte by byte is one request too. */
    static const char req[] = "GET /sign_in?carol HTTP/1.0\r\n\r\n";
    c = h_connect(&srv);
    for (size_t i = 0; i + 1 < sizeof req - 1; i++)
        h_send(c, req + i, 1);
    h_expect_silence(c, 100);
    h_send(c, req + sizeof req - 2, 1);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "Added");
    H_ASSERT_PRAGMA(r, 3);
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_full_session_stock_client),
        H_TEST(test_three_members),
        H_TEST(test_options),
        H_TEST(test_names),
        H_TEST(test_ids_never_reused),
        H_TEST(test_self_send_echo),
        H_TEST(test_unknown_target_and_sender),
        H_TEST(test_unknown_id_sorry),
        H_TEST(test_get_message_relays_empty),
        H_TEST(test_post_empty_body_relayed),
        H_TEST(test_post_without_content_type),
        H_TEST(test_large_binary_body),
        H_TEST(test_split_delivery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
