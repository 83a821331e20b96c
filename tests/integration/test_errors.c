/*
 * Integration: every error answer of protocol.md Part A ("Improved"): bad
 * request lines and versions, bare LF, unknown methods (405 only on a
 * well-formed request line: "HELLO THERE" is a 400), Transfer-Encoding,
 * the header and body limits, invalid Content-Length, requests that stall
 * (408), invalid or missing parameters, unknown paths, /quit with and
 * without --allow-quit, and bad command-line options (exit status 2). After
 * each error the connection is closed and the server keeps serving.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* After an error: the server still signs members in. */
static void still_serving(const h_server_t *srv)
{
    uint64_t id = h_sign_in_(srv, "probe");
    assert_true(id > 0);
}

/*
 * Send req on a new connection; expect `status reason`, text/plain, a
 * one-line reason body, "Connection: close", then EOF; then a sign-in works.
 * Returns the response (caller frees) for extra checks.
 */
static h_resp_t *expect_error_at(int line, const h_server_t *srv, const void *req, size_t len,
                                 int status, const char *reason)
{
    h_at(__FILE__, line);
    h_conn_t *c = h_connect_(srv);
    h_send_(c, req, len);
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    if (r->status != status || strcmp(r->reason, reason) != 0)
        fail_msg("line %d: expected %d %s, got %d %s; body: %s", line, status, reason,
                 r->status, r->reason, r->body);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_HDR(r, "Connection", "close");
    H_ASSERT_NO_HDR(r, "Pragma");
    assert_true(h_head_has(r, H_CORS_BLOCK));
    /* A one-line human-readable reason. */
    assert_true(r->body_len > 1);
    assert_int_equal(r->body[r->body_len - 1], '\n');
    assert_null(memchr(r->body, '\n', r->body_len - 1));
    h_expect_eof_(c, H_TIMEOUT_MS);
    h_close(c);
    still_serving(srv);
    return r;
}
#define expect_error(srv, req, status, reason) \
    h_resp_free(expect_error_at(__LINE__, (srv), (req), strlen(req), (status), (reason)))

static void test_bad_request_lines(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    expect_error(&srv, "HELLO\r\n\r\n", 400, "Bad Request");
    expect_error(&srv, "GET /sign_in?x HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "Bad Request");
    expect_error(&srv, "GET  /sign_in?x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request");
    expect_error(&srv, "GET /sign_in?x\r\n\r\n", 400, "Bad Request");
    expect_error(&srv, "GET /sign_in?x HTTP/2.0\r\nHost: x\r\n\r\n", 400, "Bad Request");
    expect_error(&srv, "GET /sign_in?x HTTP/1.2\r\nHost: x\r\n\r\n", 400, "Bad Request");
    expect_error(&srv, "GET sign_in?x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request");
    expect_error(&srv, "GET /sign_in?x HTTP/1.1\nHost: x\n\n", 400, "Bad Request");
    expect_error(&srv, "GET /sign_in?x HTTP/1.0\n\n", 400, "Bad Request");
    expect_error(&srv, "GET /sign_in?x HTTP/1.1\r\nHost x\r\n\r\n", 400, "Bad Request");
    /* None of these signed anyone in: only the probes got ids (1..10). */
    assert_int_equal(h_sign_in(&srv, "last"), 11);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

static void test_bad_methods(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    h_resp_t *r = expect_error_at(__LINE__, &srv, "PUT /sign_in?x HTTP/1.1\r\nHost: x\r\n\r\n",
                                  strlen("PUT /sign_in?x HTTP/1.1\r\nHost: x\r\n\r\n"), 405,
                                  "Method Not Allowed");
    H_ASSERT_HDR(r, "Allow", "GET, POST, OPTIONS");
    h_resp_free(r);
    expect_error(&srv, "get /sign_in?x HTTP/1.1\r\nHost: x\r\n\r\n", 405, "Method Not Allowed");
    expect_error(&srv, "DELETE /sign_out?peer_id=1 HTTP/1.0\r\n\r\n", 405, "Method Not Allowed");
    /* HEAD /sign_in: a 405 head without its body (tests/browser/assets.test.mjs). */
    /* Not METHOD SP target SP HTTP/x.y: a 400 whatever the first word, and
     * no Allow header (the method is not what is wrong). */
    static const char *const not_lines[] = {
        "HELLO THERE\r\n\r\n",
        "PUT /sign_in?x\r\n\r\n",
        "DELETE /sign_out?peer_id=1 HTTP/2.0\r\n\r\n",
        "PUT  /sign_in?x HTTP/1.1\r\nHost: x\r\n\r\n",
        "HEAD sign_in?x HTTP/1.0\r\n\r\n",
        "PUT /sign_in?x HTTP/1.1 \r\n\r\n",
    };
    for (size_t i = 0; i < sizeof not_lines / sizeof not_lines[0]; i++) {
        r = expect_error_at(__LINE__, &srv, not_lines[i], strlen(not_lines[i]), 400,
                            "Bad Request");
        H_ASSERT_NO_HDR(r, "Allow");
        h_resp_free(r);
    }
    /* The probe signed in as 1 is still there: DELETE did not sign it out. */
    h_resp_t *w = h_wait_once(&srv, 1);
    H_ASSERT_STATUS(w, 200, "OK");
    h_resp_free(w);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

static void test_transfer_encoding(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    expect_error(&srv,
                 "POST /message?peer_id=1&to=2 HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n",
                 501, "Not Implemented");
    expect_error(&srv, "GET /sign_in?x HTTP/1.1\r\nHost: x\r\ntransfer-encoding: identity\r\n\r\n",
                 501, "Not Implemented");
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* A request whose head is head_bytes long (one big X-Pad header). */
static char *request_with_head(size_t head_bytes)
{
    static const char start[] = "GET /sign_in?big HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    static const char end[] = "\r\n\r\n";
    size_t fixed = sizeof start - 1 + sizeof end - 1;
    assert_true(head_bytes > fixed);
    char *req = malloc(head_bytes + 1);
    assert_non_null(req);
    memcpy(req, start, sizeof start - 1);
    memset(req + sizeof start - 1, 'p', head_bytes - fixed);
    memcpy(req + head_bytes - (sizeof end - 1), end, sizeof end);
    assert_int_equal(strlen(req), head_bytes);
    return req;
}

static void test_header_limit(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    char *req = request_with_head(17 * 1024);
    expect_error(&srv, req, 431, "Request Header Fields Too Large");
    free(req);
    /* Many small headers over 16 KiB in total are too large as well. */
    char *many = malloc(20000);
    assert_non_null(many);
    size_t n = (size_t)snprintf(many, 20000, "GET /sign_in?x HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 60 && n < 19000; i++)
        n += (size_t)snprintf(many + n, 20000 - n, "X-H%02d: %0300d\r\n", i, i);
    n += (size_t)snprintf(many + n, 20000 - n, "\r\n");
    assert_true(n > 16 * 1024);
    expect_error(&srv, many, 431, "Request Header Fields Too Large");
    free(many);
    /* Just under the limit is fine. */
    req = request_with_head(16 * 1024 - 64);
    h_resp_t *r = h_request_str(&srv, req);
    H_ASSERT_STATUS(r, 200, "Added");
    h_resp_free(r);
    free(req);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

static void test_header_limit_option(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--max-header-bytes", "1024", NULL);
    char *req = request_with_head(2048);
    expect_error(&srv, req, 431, "Request Header Fields Too Large");
    free(req);
    req = request_with_head(1100);
    expect_error(&srv, req, 431, "Request Header Fields Too Large");
    free(req);
    req = request_with_head(900);
    h_resp_t *r = h_request_str(&srv, req);
    H_ASSERT_STATUS(r, 200, "Added");
    h_resp_free(r);
    free(req);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

static void test_body_limit(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--max-body-bytes", "1000", NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    /* The head alone announces too much: refused before any body byte. */
    expect_error(&srv,
                 "POST /message?peer_id=2&to=1 HTTP/1.1\r\nHost: x\r\n"
                 "Content-Type: text/plain\r\nContent-Length: 1001\r\n\r\n",
                 413, "Content Too Large");
    expect_error(&srv,
                 "POST /message?peer_id=2&to=1 HTTP/1.0\r\n"
                 "Content-Length: 99999999999999999\r\n\r\n",
                 413, "Content Too Large");
    /* Exactly the limit is relayed. */
    char body[1000];
    memset(body, 'b', sizeof body);
    h_send_ok(&srv, 2, 1, body, sizeof body, "text/plain");
    h_resp_t *r;
    for (uint64_t id = 2; id <= 4; id++) { /* bob's and the two probes' joins */
        r = h_wait_once(&srv, 1);
        H_ASSERT_PRAGMA(r, 1);
        uint64_t who;
        int conn;
        assert_true(h_parse_entry(r->body, r->body_len, &who, &conn));
        assert_int_equal(who, id);
        h_resp_free(r);
    }
    r = h_wait_once(&srv, 1);
    H_ASSERT_PRAGMA(r, 2);
    assert_int_equal(r->body_len, sizeof body);
    assert_memory_equal(r->body, body, sizeof body);
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

static void test_bad_content_length(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    static const char *const values[] = {"abc", "-1", "+5", "5x", "1 2", "0x10",
                                         "18446744073709551616"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "POST /message?peer_id=2&to=1 HTTP/1.1\r\nHost: x\r\n"
                 "Content-Type: text/plain\r\nContent-Length: %s\r\n\r\n",
                 values[i]);
        expect_error(&srv, req, 400, "Bad Request");
    }
    expect_error(&srv,
                 "POST /message?peer_id=2&to=1 HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
                 400, "Bad Request");
    /* Nothing of that reached alice: after bob's join her /wait parks. */
    h_resp_t *r = h_wait_once(&srv, 1);
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);
    for (uint64_t id = 3; id <= 10; id++) { /* the probes' joins */
        r = h_wait_once(&srv, 1);
        H_ASSERT_PRAGMA(r, 1);
        uint64_t who;
        int conn;
        assert_true(h_parse_entry(r->body, r->body_len, &who, &conn));
        assert_int_equal(who, id);
        h_resp_free(r);
    }
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* --read-timeout 1: a head or a body that stops arriving gets 408. */
static void test_read_timeout(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--read-timeout", "1", NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    static const char *const partial[] = {
        "GET /sign_in?slow HTTP/1.1\r\nHost: x\r\n",
        "GET /sign_in?slow HTTP/1.1\r\nHost: x\r\nX-Half: abc",
        ("POST /message?peer_id=2&to=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
         "Content-Length: 10\r\n\r\nabc"),
    };
    for (size_t i = 0; i < sizeof partial / sizeof partial[0]; i++) {
        h_conn_t *c = h_connect(&srv);
        uint64_t t0 = h_now_ms();
        h_send_str(c, partial[i]);
        h_resp_t *r = h_read(c);
        uint64_t elapsed = h_now_ms() - t0;
        H_ASSERT_STATUS(r, 408, "Request Timeout");
        H_ASSERT_HDR(r, "Connection", "close");
        H_ASSERT_HDR(r, "Content-Type", "text/plain");
        h_resp_free(r);
        h_expect_eof(c, H_TIMEOUT_MS);
        h_close(c);
        if (elapsed < 900)
            fail_msg("request %zu: 408 after %" PRIu64 " ms (read timeout 1 s)", i, elapsed);
    }
    /* The partial message never reached alice. */
    h_resp_t *r = h_wait_once(&srv, 1);
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    still_serving(&srv);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* 400 for missing, duplicate or invalid ids, with a reason naming them. */
static void expect_param_error_at(int line, const h_server_t *srv, const char *req,
                                  const char *param)
{
    h_at(__FILE__, line);
    h_resp_t *r = h_request_(srv, req, strlen(req));
    if (r->status != 400 || strcmp(r->reason, "Bad Request") != 0)
        fail_msg("line %d: expected 400 Bad Request, got %d %s; body: %s", line, r->status,
                 r->reason, r->body);
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    if (!strstr(r->body, param))
        fail_msg("line %d: the reason \"%s\" does not name %s", line, r->body, param);
    assert_int_equal(r->body[r->body_len - 1], '\n');
    h_resp_free(r);
}
#define expect_param_error(srv, req, param) expect_param_error_at(__LINE__, (srv), (req), (param))

static void test_bad_parameters(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    expect_param_error(&srv, "GET /wait HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait? HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait?xpeer_id=1 HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait?peer_id=0 HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait?peer_id=abc HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait?peer_id=1abc HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait?peer_id= HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait?peer_id=-1 HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /wait?peer_id=1&peer_id=2 HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /sign_out?peer_id=abc HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv, "GET /sign_out HTTP/1.0\r\n\r\n", "peer_id");
    expect_param_error(&srv,
                       "POST /message?to=1 HTTP/1.0\r\nContent-Length: 1\r\n"
                       "Content-Type: text/plain\r\n\r\nx",
                       "peer_id");
    expect_param_error(&srv,
                       "POST /message?peer_id=2 HTTP/1.0\r\nContent-Length: 1\r\n"
                       "Content-Type: text/plain\r\n\r\nx",
                       "to");
    expect_param_error(&srv,
                       "POST /message?peer_id=2&xto=1 HTTP/1.0\r\nContent-Length: 1\r\n"
                       "Content-Type: text/plain\r\n\r\nx",
                       "to");
    expect_param_error(&srv,
                       "POST /message?peer_id=2&to=abc HTTP/1.0\r\nContent-Length: 1\r\n"
                       "Content-Type: text/plain\r\n\r\nx",
                       "to");
    expect_param_error(&srv,
                       "POST /message?peer_id=2&to=0 HTTP/1.0\r\nContent-Length: 1\r\n"
                       "Content-Type: text/plain\r\n\r\nx",
                       "to");
    expect_param_error(&srv,
                       "POST /message?peer_id=2&to=1&to=1 HTTP/1.0\r\nContent-Length: 1\r\n"
                       "Content-Type: text/plain\r\n\r\nx",
                       "to");
    /* Nothing was relayed, nobody was signed out or parked: alice has bob's
     * join only, then her /wait parks. */
    h_resp_t *r = h_wait_once(&srv, 1);
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    h_expect_silence(w, H_SILENCE_MS);
    still_serving(&srv);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

static void test_unknown_path(void **state)
{
    (void)state;
    h_server_t srv;
    /* --no-web: "/" is the browser page otherwise (tests/browser). */
    h_server_start(&srv, "--no-web", NULL);
    static const char *const reqs[] = {
        "GET /foo HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET /sign_in/x HTTP/1.0\r\n\r\n",
        "GET /SIGN_IN?x HTTP/1.0\r\n\r\n",
        "POST /foo HTTP/1.0\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        h_resp_t *r = h_request_str(&srv, reqs[i]);
        H_ASSERT_STATUS(r, 404, "Not Found");
        H_ASSERT_HDR(r, "Content-Type", "text/plain");
        assert_true(h_head_has(r, H_CORS_BLOCK));
        h_resp_free(r);
    }
    /* None of them created a member. */
    assert_int_equal(h_sign_in(&srv, "x"), 1);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* Part A: /quit is refused by default and the server goes on. */
static void test_quit_refused(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    static const char *const reqs[] = {
        "GET /quit HTTP/1.0\r\n\r\n",
        "OPTIONS /quit HTTP/1.0\r\n\r\n",
        "GET /quit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        h_resp_t *r = h_request_str(&srv, reqs[i]);
        H_ASSERT_STATUS(r, 403, "Forbidden");
        H_ASSERT_HDR(r, "Content-Type", "text/plain");
        assert_true(r->body_len > 0);
        h_resp_free(r);
    }
    /* Still running (the pidfd says so) and still serving the members. */
    assert_int_equal(h_server_await_exit(&srv, 200), -2);
    assert_int_equal(h_sign_in(&srv, "bob"), 2);
    h_resp_t *r = h_wait_once(&srv, 1);
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* --allow-quit: GET /quit answers and the server exits 0 by itself; parked
 * waits get the shutdown notice with their own Pragma first. */
static void test_quit_allowed(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--allow-quit", NULL);
    /* The ready line says TLS exactly when the port speaks it. */
    assert_int_equal(srv.ready_tls, h_tls_mode());
    assert_int_equal(h_sign_in(&srv, "alice"), 1);
    h_conn_t *w = h_connect(&srv);
    h_send_str(w, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    /* Parked before /quit: the notice is what a parked /wait gets. */
    h_wait_parked(&srv, 1, H_TIMEOUT_MS);
    h_expect_silence(w, 0);
    h_resp_t *r = h_request_str(&srv, "GET /quit HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_HDR(r, "Content-Type", "text/html");
    H_ASSERT_BODY(r, "<html><body>Quitting...</body></html>");
    h_resp_free(r);
    r = h_read(w);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 1);
    H_ASSERT_BODY(r, "Server shutting down");
    h_resp_free(r);
    assert_int_equal(h_server_await_exit(&srv, H_STOP_TIMEOUT_MS), 0);
    /* Gone: new connections are refused. */
    assert_null(h_try_connect(&srv));
    /* The log names the real cause of the stop, not a signal. */
    assert_true(h_await_log(srv.log_path, 0, "GET /quit from 127.0.0.1:", 1, H_TIMEOUT_MS));
    assert_true(h_await_log(srv.log_path, 0, ": draining", 1, 0));
    assert_false(h_await_log(srv.log_path, 0, "SIGTERM", 1, 0));
    h_pass();
}

/* Bad option values: exit status 2 and a one-line message naming the option.
 * Every case runs; each problem is printed, and the test fails at the end. */
static int bad_option_problems;

static void expect_bad_option_at(int line, const char *const *args, const char *name)
{
    char err[4096];
    int st = h_run_server_cmd(args, err, sizeof err, H_TIMEOUT_MS);
    size_t n = strlen(err);
    const char *problem = NULL;
    if (st != 2)
        problem = "exit status is not 2";
    else if (n < 2 || err[n - 1] != '\n' || memchr(err, '\n', n - 1))
        problem = "stderr is not exactly one line";
    else if (!strstr(err, name))
        problem = "the message does not name the option";
    if (!problem)
        return;
    bad_option_problems++;
    fprintf(stderr, "%s:%d: pcsig-server --bind 127.0.0.1 --port 0", __FILE__, line);
    for (const char *const *a = args; *a; a++)
        fprintf(stderr, " %s", *a);
    fprintf(stderr, ": %s (status %d, stderr \"%.*s\")\n", problem, st,
            n && err[n - 1] == '\n' ? (int)n - 1 : (int)n, err);
}
#define expect_bad_option(name, ...)                                  \
    do {                                                              \
        static const char *const args_[] = {__VA_ARGS__, NULL};       \
        expect_bad_option_at(__LINE__, args_, (name));                \
    } while (0)

static void test_bad_options(void **state)
{
    (void)state;
    bad_option_problems = 0;
    expect_bad_option("--port", "--port", "70000");
    expect_bad_option("--port", "--port=70000");
    expect_bad_option("--port", "--port", "-1");
    expect_bad_option("--port", "--port", "80a");
    expect_bad_option("--workers", "--workers", "0");
    expect_bad_option("--bogus", "--bogus");
    expect_bad_option("--member-timeout", "--member-timeout", "abc");
    expect_bad_option("--wait-timeout", "--wait-timeout", "0");
    expect_bad_option("--read-timeout", "--read-timeout", "1.2345");
    expect_bad_option("--max-body-bytes", "--max-body-bytes", "-5");
    expect_bad_option("--queue-max-msgs", "--queue-max-msgs", "0");
    expect_bad_option("--log-level", "--log-level", "loud");
    expect_bad_option("--max-connections", "--max-connections");
    expect_bad_option("stray", "stray");
    if (bad_option_problems)
        fail_msg("%d bad-option case(s) failed (listed above)", bad_option_problems);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_bad_request_lines),
        H_TEST(test_bad_methods),
        H_TEST(test_transfer_encoding),
        H_TEST(test_header_limit),
        H_TEST(test_header_limit_option),
        H_TEST(test_body_limit),
        H_TEST(test_bad_content_length),
        H_TEST(test_read_timeout),
        H_TEST(test_bad_parameters),
        H_TEST(test_unknown_path),
        H_TEST(test_quit_refused),
        H_TEST(test_quit_allowed),
        H_TEST(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
