/*
 * Unit tests of response.c's outcome table (outcome_answer), the one place
 * that maps an outcome (an error code, a /wait's wake reason, a refusal) to
 * an HTTP answer: every entry is complete, the errno and wake mappings, and
 * the bytes of the answers that clients and tests match exactly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "response.h"

#define CORS                                                                     \
    "Access-Control-Allow-Origin: *\r\n"                                         \
    "Access-Control-Allow-Credentials: true\r\n"                                 \
    "Access-Control-Allow-Methods: POST, GET, OPTIONS\r\n"                       \
    "Access-Control-Allow-Headers: Content-Type, Content-Length, Connection, "   \
    "Cache-Control\r\n"                                                          \
    "Access-Control-Expose-Headers: Content-Length\r\n"
#define HEAD_START(status_line, conn)                                            \
    "HTTP/1.1 " status_line "\r\n"                                               \
    "Server: pcsig/" PCSIG_VERSION "\r\n"                                        \
    "Cache-Control: no-cache\r\n"                                                \
    "Connection: " conn "\r\n"

/* outcome o appended to an empty buffer equals want. */
static void expect_bytes(enum outcome o, bool ka, uint64_t pragma, const char *want)
{
    buf_t out;
    buf_init(&out, 65536);
    assert_int_equal(resp_append_outcome(&out, o, ka, pragma), 0);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
        fail_msg("outcome %d:\n--- got\n%.*s\n--- want\n%s", (int)o, (int)out.len, out.data, want);
    /* The status the table names is the one on the wire. */
    char line[32];
    snprintf(line, sizeof line, "HTTP/1.1 %d ", outcome_answer(o)->status);
    assert_memory_equal(out.data, line, strlen(line));
    buf_free(&out);
}

static void test_every_entry_complete(void **state)
{
    (void)state;
    for (int o = 0; o < OUTCOME_COUNT; o++) {
        const struct answer *a = outcome_answer((enum outcome)o);
        if (a->status < 200 || a->status > 599 || !a->reason || !a->reason[0] || !a->body)
            fail_msg("outcome %d has no complete answer", o);
        if (a->status >= 400 && !a->body[0])
            fail_msg("outcome %d: an error without a body", o);
    }
    /* Out of range: the 500 of an answer that could not be built. */
    assert_ptr_equal(outcome_answer(OUTCOME_COUNT), outcome_answer(OUTCOME_NO_ANSWER));
    assert_ptr_equal(outcome_answer((enum outcome)-1), outcome_answer(OUTCOME_NO_ANSWER));
}

static void test_error_codes(void **state)
{
    (void)state;
    static const struct { int rc; enum outcome o; int status; } cases[] = {
        {-EACCES, OUTCOME_BAD_TOKEN, 403},     {-ENOENT, OUTCOME_GONE, 500},
        {-ESRCH, OUTCOME_GONE, 500},           {-ENOSPC, OUTCOME_QUEUE_FULL, 503},
        {-EUSERS, OUTCOME_MEMBER_LIMIT, 503},  {-E2BIG, OUTCOME_LIST_TOO_BIG, 503},
        {-ESHUTDOWN, OUTCOME_SHUTTING_DOWN, 503}, {-EIO, OUTCOME_STORE_DOWN, 503},
        {-ENOMEM, OUTCOME_NO_MEMORY, 503},     {-EINVAL, OUTCOME_NO_MEMORY, 503},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(outcome_of_error(cases[i].rc), cases[i].o);
        assert_int_equal(outcome_answer(cases[i].o)->status, cases[i].status);
    }
    assert_true(outcome_answer(OUTCOME_SHUTTING_DOWN)->close);
    assert_true(outcome_answer(OUTCOME_NO_MEMORY)->close);
    assert_false(outcome_answer(OUTCOME_QUEUE_FULL)->close);
}

static void test_wake_reasons(void **state)
{
    (void)state;
    assert_int_equal(outcome_of_wake(REG_WAKE_IDLE), OUTCOME_WAIT_IDLE);
    assert_int_equal(outcome_of_wake(REG_WAKE_ITEM), OUTCOME_WAIT_IDLE);
    assert_int_equal(outcome_of_wake(REG_WAKE_GONE), OUTCOME_WAIT_IDLE);
    assert_int_equal(outcome_of_wake(REG_WAKE_DISPLACED), OUTCOME_DISPLACED);
    assert_int_equal(outcome_of_wake(REG_WAKE_SHUTDOWN), OUTCOME_WAIT_SHUTDOWN);
    assert_int_equal(outcome_answer(OUTCOME_DISPLACED)->status, 409);
}

/* The answers pinned byte for byte (as sent before the table existed). */
static void test_pinned_bytes(void **state)
{
    (void)state;
    expect_bytes(OUTCOME_BUSY, true, 0,
                 HEAD_START("503 Service Unavailable", "close")
                 "Content-Type: text/plain\r\nContent-Length: 25\r\n" CORS "\r\n"
                 "connection limit reached\n");
    expect_bytes(OUTCOME_PER_IP, false, 0,
                 HEAD_START("429 Too Many Requests", "close")
                 "Content-Type: text/plain\r\nContent-Length: 39\r\n" CORS "\r\n"
                 "too many connections from your address\n");
    expect_bytes(OUTCOME_PLAIN_HTTP_ON_TLS, true, 0,
                 "HTTP/1.1 400 Bad Request\r\n"
                 "Connection: close\r\n"
                 "Content-Type: text/plain\r\n"
                 "Content-Length: 35\r\n"
                 "\r\nthis port speaks TLS: use https://\n");
    /* A 409 keeps the connection when asked, and carries no Pragma. */
    expect_bytes(OUTCOME_DISPLACED, true, 7,
                 HEAD_START("409 Conflict", "keep-alive")
                 "Content-Type: text/plain\r\nContent-Length: 46\r\n" CORS "\r\n"
                 "a newer /wait for this peer replaced this one\n");
    /* A /wait's empty answer and its shutdown notice carry the member id. */
    expect_bytes(OUTCOME_WAIT_IDLE, true, 7,
                 HEAD_START("200 OK", "keep-alive")
                 "Content-Type: text/plain\r\nContent-Length: 0\r\nPragma: 7\r\n" CORS "\r\n");
    expect_bytes(OUTCOME_WAIT_SHUTDOWN, true, 7,
                 HEAD_START("200 OK", "close")
                 "Content-Type: text/plain\r\nContent-Length: 20\r\nPragma: 7\r\n" CORS "\r\n"
                 "Server shutting down");
    expect_bytes(OUTCOME_GONE, true, 0,
                 HEAD_START("500 Error", "keep-alive")
                 "Content-Type: text/plain\r\nContent-Length: 22\r\n" CORS "\r\n"
                 "Peer most likely gone.");
    expect_bytes(OUTCOME_SORRY, false, 0,
                 HEAD_START("500 Sorry", "close")
                 "Content-Type: text/html\r\nContent-Length: 52\r\n" CORS "\r\n"
                 "<html><body>Sorry, not yet implemented</body></html>");
    expect_bytes(OUTCOME_REQUEST_TIMEOUT, true, 0,
                 HEAD_START("408 Request Timeout", "close")
                 "Content-Type: text/plain\r\nContent-Length: 46\r\n" CORS "\r\n"
                 "request not completed within the read timeout\n");
    expect_bytes(OUTCOME_HEAD_TOO_LARGE, false, 0,
                 HEAD_START("431 Request Header Fields Too Large", "close")
                 "Content-Type: text/plain\r\nContent-Length: 18\r\n" CORS "\r\n"
                 "request too large\n");
    /* A HEAD's 405: the length of the body it does not send. */
    expect_bytes(OUTCOME_HEAD_REFUSED, true, 0,
                 HEAD_START("405 Method Not Allowed", "close")
                 "Content-Type: text/plain\r\nContent-Length: 19\r\n"
                 "Allow: GET, POST, OPTIONS\r\n" CORS "\r\n");
    expect_bytes(OUTCOME_RATE_LIMITED, true, 0,
                 HEAD_START("429 Too Many Requests", "close")
                 "Content-Type: text/plain\r\nContent-Length: 27\r\nRetry-After: 1\r\n" CORS
                 "\r\nrequest rate limit reached\n");
}

static void test_parse_error(void **state)
{
    (void)state;
    buf_t out;
    buf_init(&out, 4096);
    assert_int_equal(resp_append_parse_error(&out, 405, "method not allowed"), 0);
    static const char want[] = HEAD_START("405 Method Not Allowed", "close")
        "Content-Type: text/plain\r\nContent-Length: 19\r\n"
        "Allow: GET, POST, OPTIONS\r\n" CORS "\r\nmethod not allowed\n";
    assert_int_equal(out.len, sizeof want - 1);
    assert_memory_equal(out.data, want, out.len);
    buf_free(&out);
}

/* A buffer too small for the answer: an error, and nothing appended. */
static void test_no_room(void **state)
{
    (void)state;
    buf_t out;
    buf_init(&out, 64);
    assert_int_equal(buf_append_str(&out, "x"), 0);
    assert_true(resp_append_outcome(&out, OUTCOME_BUSY, false, 0) < 0);
    assert_true(resp_append_outcome(&out, OUTCOME_PLAIN_HTTP_ON_TLS, false, 0) < 0);
    assert_int_equal(out.len, 1);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_entry_complete),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_wake_reasons),
        cmocka_unit_test(test_pinned_bytes),
        cmocka_unit_test(test_parse_error),
        cmocka_unit_test(test_no_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
