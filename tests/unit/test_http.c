/*
 * Unit tests of the HTTP head parser: the stock client's exact requests,
 * every truncation of every valid case, each error path with its status,
 * hostile bytes in every position, pipelining, responses and the helpers.
 *
 * Inputs are copied so that their last byte sits right before a PROT_NONE
 * page (as picohttpparser's tests do), and the truncation loop also parses
 * exact-size heap copies, so a read past the end faults with or without
 * ASan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http.h"

#define LIT(s) (s), (sizeof(s) - 1)

static const http_limits_t test_lim = { 8192, 1u << 20 };

/* ---- guard page ---- */

typedef struct guard_buf {
    unsigned char *map;
    size_t map_len;
    size_t cap; /* usable bytes before the guard page */
} guard_buf_t;

static int guard_setup(void **state)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (32768 + ps - 1) / ps;
    guard_buf_t *g = calloc(1, sizeof *g);

    if (g == NULL)
        return -1;
    g->map_len = (data_pages + 1) * ps;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) {
        free(g);
        return -1;
    }
    g->cap = data_pages * ps;
    if (mprotect(g->map + g->cap, ps, PROT_NONE) != 0) {
        munmap(g->map, g->map_len);
        free(g);
        return -1;
    }
    *state = g;
    return 0;
}

static int guard_teardown(void **state)
{
    guard_buf_t *g = *state;
    munmap(g->map, g->map_len);
    free(g);
    return 0;
}

/* Copies data so that it ends exactly at the guard page. */
static const char *guard_load(guard_buf_t *g, const void *data, size_t n)
{
    unsigned char *dst;

    assert_true(n <= g->cap);
    dst = g->map + g->cap - n;
    if (n > 0)
        memmove(dst, data, n);
    return (const char *)dst;
}

/* ---- helpers ---- */

static long parse_req(guard_buf_t *g, const char *data, size_t n, const http_limits_t *lim,
                      http_request_t *req, http_error_t *err)
{
    const char *p = guard_load(g, data, n);
    err->status = -1;
    err->reason = NULL;
    return http_parse_request(p, n, lim, req, err);
}

static long parse_resp(guard_buf_t *g, const char *data, size_t n, const http_limits_t *lim,
                       http_response_t *resp, http_error_t *err)
{
    const char *p = guard_load(g, data, n);
    err->status = -1;
    err->reason = NULL;
    return http_parse_response(p, n, lim, resp, err);
}

/* Parses a heap copy of exactly n bytes: ASan reports any overread. */
static long parse_req_heap(const char *data, size_t n, const http_limits_t *lim)
{
    http_request_t req;
    http_error_t err;
    char *copy = malloc(n);
    long rc;

    assert_true(copy != NULL || n == 0);
    if (n > 0)
        memcpy(copy, data, n);
    rc = http_parse_request(copy, n, lim, &req, &err);
    free(copy);
    return rc;
}

static long parse_resp_heap(const char *data, size_t n, const http_limits_t *lim)
{
    http_response_t resp;
    http_error_t err;
    char *copy = malloc(n);
    long rc;

    assert_true(copy != NULL || n == 0);
    if (n > 0)
        memcpy(copy, data, n);
    rc = http_parse_response(copy, n, lim, &resp, &err);
    free(copy);
    return rc;
}

static void assert_reason_ok(const http_error_t *err)
{
    assert_non_null(err->reason);
    assert_true(strlen(err->reason) > 0);
    assert_null(strchr(err->reason, '\r'));
    assert_null(strchr(err->reason, '\n'));
}

static void assert_slice(http_slice_t s, const char *lit)
{
    if (!http_slice_eq(s, lit)) {
        print_error("slice \"%.*s\" != \"%s\"\n", (int)s.len, s.ptr ? s.ptr : "", lit);
        fail();
    }
}

/*
 * The resumable calls against the plain ones: the bytes data[0..n) arrive
 * `step` at a time into a buffer that moves on every read (guard_load puts
 * them at a new address each time, as a growing buffer may), and after
 * each read the resumed call must answer exactly what the plain call
 * answers for the same bytes: the same head, or the same error and reason.
 */
static void check_req_resumed(guard_buf_t *g, const char *data, size_t n,
                              const http_limits_t *lim, size_t step)
{
    http_parse_state_t st = HTTP_PARSE_STATE_INIT;

    for (size_t k = 0;; k = k + step < n ? k + step : n) {
        http_request_t a, b;
        http_error_t ea = { -1, NULL }, eb = { -1, NULL };
        const char *p = guard_load(g, data, k);
        long ra = http_parse_request_resume(p, k, lim, &st, &a, &ea);
        long rb = http_parse_request(p, k, lim, &b, &eb);

        if (ra != rb || (rb == HTTP_PARSE_ERROR && (ea.status != eb.status ||
                                                    strcmp(ea.reason, eb.reason) != 0))) {
            print_error("resumed by %zu, \"%.*s\" at %zu: got %ld (%d %s), plain %ld (%d %s)\n",
                        step, (int)n, data, k, ra, ea.status, ea.reason ? ea.reason : "-", rb,
                        eb.status, eb.reason ? eb.reason : "-");
            fail();
        }
        if (rb > 0) {
            assert_int_equal(a.method, b.method);
            assert_true(a.target.ptr == b.target.ptr && a.target.len == b.target.len);
            assert_int_equal(a.num_headers, b.num_headers);
            assert_int_equal(a.content_length, b.content_length);
            assert_int_equal(a.keep_alive, b.keep_alive);
        }
        if (k == n)
            break;
    }
}

static void check_resp_resumed(guard_buf_t *g, const char *data, size_t n,
                               const http_limits_t *lim, size_t step)
{
    http_parse_state_t st = HTTP_PARSE_STATE_INIT;

    for (size_t k = 0;; k = k + step < n ? k + step : n) {
        http_response_t a, b;
        http_error_t ea = { -1, NULL }, eb = { -1, NULL };
        const char *p = guard_load(g, data, k);
        long ra = http_parse_response_resume(p, k, lim, &st, &a, &ea);
        long rb = http_parse_response(p, k, lim, &b, &eb);

        if (ra != rb ||
            (rb == HTTP_PARSE_ERROR && strcmp(ea.reason, eb.reason) != 0)) {
            print_error("resumed by %zu, \"%.*s\" at %zu: got %ld (%s), plain %ld (%s)\n", step,
                        (int)n, data, k, ra, ea.reason ? ea.reason : "-", rb,
                        eb.reason ? eb.reason : "-");
            fail();
        }
        if (rb > 0) {
            assert_int_equal(a.status, b.status);
            assert_true(a.reason.ptr == b.reason.ptr && a.reason.len == b.reason.len);
            assert_int_equal(a.num_headers, b.num_headers);
            assert_int_equal(a.content_length, b.content_length);
        }
        if (k == n)
            break;
    }
}

/* Reads of 1, 2, 3 and 7 bytes. */
static void check_req_resumed_all(guard_buf_t *g, const char *data, size_t n,
                                  const http_limits_t *lim)
{
    static const size_t steps[] = { 1, 2, 3, 7 };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        check_req_resumed(g, data, n, lim, steps[i]);
}

static void check_resp_resumed_all(guard_buf_t *g, const char *data, size_t n,
                                   const http_limits_t *lim)
{
    static const size_t steps[] = { 1, 2, 3, 7 };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        check_resp_resumed(g, data, n, lim, steps[i]);
}

/*
 * Every prefix shorter than the head must ask for more; every longer one
 * must find the same head. Checked against both kinds of fence.
 */
static void check_req_truncations(guard_buf_t *g, const char *data, size_t n, long head)
{
    http_request_t req;
    http_error_t err;

    for (size_t k = 0; k <= n; k++) {
        long want = (long)k < head ? HTTP_NEED_MORE : head;
        long got = parse_req(g, data, k, &test_lim, &req, &err);
        if (got != want) {
            print_error("truncation %zu of \"%.*s\": got %ld (%d %s), want %ld\n", k, (int)n,
                        data, got, err.status, err.reason ? err.reason : "", want);
            fail();
        }
        assert_int_equal(parse_req_heap(data, k, &test_lim), want);
    }
    check_req_resumed_all(g, data, n, &test_lim);
}

static void check_resp_truncations(guard_buf_t *g, const char *data, size_t n, long head)
{
    http_response_t resp;
    http_error_t err;

    for (size_t k = 0; k <= n; k++) {
        long want = (long)k < head ? HTTP_NEED_MORE : head;
        long got = parse_resp(g, data, k, &test_lim, &resp, &err);
        if (got != want) {
            print_error("truncation %zu of \"%.*s\": got %ld (%s), want %ld\n", k, (int)n, data,
                        got, err.reason ? err.reason : "", want);
            fail();
        }
        assert_int_equal(parse_resp_heap(data, k, &test_lim), want);
    }
    check_resp_resumed_all(g, data, n, &test_lim);
}

/* ---- valid requests ---- */

static void test_stock_sign_in(void **state)
{
    static const char raw[] = "GET /sign_in?alice HTTP/1.0\r\n\r\n";
    http_request_t req;
    http_error_t err;

    assert_int_equal(parse_req(*state, LIT(raw), &test_lim, &req, &err), sizeof raw - 1);
    assert_int_equal(req.method, HTTP_METHOD_GET);
    assert_slice(req.target, "/sign_in?alice");
    assert_slice(req.path, "/sign_in");
    assert_true(req.has_query);
    assert_slice(req.query, "alice");
    assert_int_equal(req.minor_version, 0);
    assert_int_equal(req.num_headers, 0);
    assert_false(req.has_content_length);
    assert_int_equal(req.content_length, 0);
    assert_false(req.has_content_type);
    assert_false(req.keep_alive);
    check_req_truncations(*state, LIT(raw), sizeof raw - 1);
}

static void test_stock_wait(void **state)
{
    static const char raw[] = "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n";
    http_request_t req;
    http_error_t err;

    assert_int_equal(parse_req(*state, LIT(raw), &test_lim, &req, &err), sizeof raw - 1);
    assert_int_equal(req.method, HTTP_METHOD_GET);
    assert_slice(req.path, "/wait");
    assert_slice(req.query, "peer_id=1");
    assert_false(req.keep_alive);
    check_req_truncations(*state, LIT(raw), sizeof raw - 1);
}

static void test_stock_message(void **state)
{
    static const char raw[] = "POST /message?peer_id=1&to=2 HTTP/1.0\r\n"
                              "Content-Length: 4\r\n"
                              "Content-Type: text/plain\r\n"
                              "\r\n"
                              "msg0";
    const long head = (long)(sizeof raw - 1 - 4);
    http_request_t req;
    http_error_t err;

    assert_int_equal(parse_req(*state, LIT(raw), &test_lim, &req, &err), head);
    assert_int_equal(req.method, HTTP_METHOD_POST);
    assert_slice(req.path, "/message");
    assert_slice(req.query, "peer_id=1&to=2");
    assert_int_equal(req.minor_version, 0);
    assert_int_equal(req.num_headers, 2);
    assert_slice(req.headers[0].name, "Content-Length");
    assert_slice(req.headers[0].value, "4");
    assert_slice(req.headers[1].name, "Content-Type");
    assert_slice(req.headers[1].value, "text/plain");
    assert_true(req.has_content_length);
    assert_int_equal(req.content_length, 4);
    assert_true(req.has_content_type);
    assert_slice(req.content_type, "text/plain");
    assert_false(req.keep_alive);
    check_req_truncations(*state, LIT(raw), head);
}

static void test_options(void **state)
{
    static const char raw[] = "OPTIONS /message?peer_id=1&to=2 HTTP/1.1\r\n"
                              "Host: localhost:8888\r\n"
                              "Access-Control-Request-Method: POST\r\n"
                              "Origin: http://example.org\r\n"
                              "\r\n";
    http_request_t req;
    http_error_t err;

    assert_int_equal(parse_req(*state, LIT(raw), &test_lim, &req, &err), sizeof raw - 1);
    assert_int_equal(req.method, HTTP_METHOD_OPTIONS);
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.num_headers, 3);
    assert_slice(req.headers[2].value, "http://example.org");
    assert_true(req.keep_alive);
    check_req_truncations(*state, LIT(raw), sizeof raw - 1);
    /* HEAD is known (the router serves it for the page only). */
    assert_int_equal(parse_req(*state, LIT("HEAD / HTTP/1.1\r\n\r\n"), &test_lim, &req, &err), 19);
    assert_int_equal(req.method, HTTP_METHOD_HEAD);
}

static void test_http11_host(void **state)
{
    static const char raw[] = "GET /sign_in?bob@host HTTP/1.1\r\n"
                              "Host: example.org\r\n"
                              "User-Agent: pcsig-test/1\r\n"
                              "\r\n";
    http_request_t req;
    http_error_t err;
    const http_header_t *h;

    assert_int_equal(parse_req(*state, LIT(raw), &test_lim, &req, &err), sizeof raw - 1);
    assert_int_equal(req.minor_version, 1);
    assert_true(req.keep_alive);
    assert_int_equal(req.num_headers, 2);
    h = http_find_header(req.headers, req.num_headers, "host");
    assert_non_null(h);
    assert_slice(h->value, "example.org");
    assert_slice(h->name, "Host");
    check_req_truncations(*state, LIT(raw), sizeof raw - 1);
}

static void test_lowercase_names_and_tabs(void **state)
{
    static const char raw[] = "POST /message?peer_id=3&to=4 HTTP/1.1\r\n"
                              "content-length:\t 12 \t\r\n"
                              "content-type:   application/json\t\r\n"
                              "x-empty:\r\n"
                              "x-blank: \t \r\n"
                              "x-inner:  a \t b  \r\n"
                              "x-utf8: caf\xc3\xa9 \xff\r\n"
                              "connection:keep-alive\r\n"
                              "\r\n"
                              "{\"a\":\"bcd\"}\n";
    const long head = (long)(sizeof raw - 1 - 12);
    http_request_t req;
    http_error_t err;

    assert_int_equal(parse_req(*state, LIT(raw), &test_lim, &req, &err), head);
    assert_int_equal(req.num_headers, 7);
    assert_true(req.has_content_length);
    assert_int_equal(req.content_length, 12);
    assert_slice(req.headers[0].name, "content-length");
    assert_slice(req.headers[0].value, "12");
    assert_true(req.has_content_type);
    assert_slice(req.content_type, "application/json");
    assert_slice(req.headers[2].value, "");
    assert_slice(req.headers[3].value, "");
    assert_slice(req.headers[4].value, "a \t b");
    assert_slice(req.headers[5].value, "caf\xc3\xa9 \xff");
    assert_slice(req.headers[6].value, "keep-alive");
    assert_true(req.keep_alive);
    check_req_truncations(*state, LIT(raw), head);
}

static void test_empty_content_type(void **state)
{
    static const char raw[] = "POST /x HTTP/1.1\r\nContent-Type: \t\r\nContent-Length: 0\r\n\r\n";
    http_request_t req;
    http_error_t err;

    assert_int_equal(parse_req(*state, LIT(raw), &test_lim, &req, &err), sizeof raw - 1);
    assert_false(req.has_content_type);
    assert_true(req.has_content_length);
    assert_int_equal(req.content_length, 0);
}

static void expect_keep_alive(guard_buf_t *g, const char *raw, bool want)
{
    http_request_t req;
    http_error_t err;
    long n = parse_req(g, raw, strlen(raw), &test_lim, &req, &err);

    if (n != (long)strlen(raw) || req.keep_alive != want) {
        print_error("\"%s\": rc %ld keep_alive %d, want %d\n", raw, n, req.keep_alive, want);
        fail();
    }
}

static void test_keep_alive_rules(void **state)
{
    guard_buf_t *g = *state;

    expect_keep_alive(g, "GET / HTTP/1.1\r\n\r\n", true);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n", false);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", false);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nConnection: Upgrade ,close ,x\r\n\r\n", false);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nConnection: te\r\nConnection: close\r\n\r\n",
                      false);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nConnection: not-close\r\n\r\n", true);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true);
    expect_keep_alive(g, "GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n", true);
    expect_keep_alive(g, "GET / HTTP/1.0\r\n\r\n", false);
    expect_keep_alive(g, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false);
}

static void test_query_split(void **state)
{
    guard_buf_t *g = *state;
    http_request_t req;
    http_error_t err;

    assert_true(parse_req(g, LIT("GET /sign_in HTTP/1.1\r\n\r\n"), &test_lim, &req, &err) > 0);
    assert_slice(req.path, "/sign_in");
    assert_false(req.has_query);
    assert_int_equal(req.query.len, 0);

    assert_true(parse_req(g, LIT("GET /sign_in? HTTP/1.1\r\n\r\n"), &test_lim, &req, &err) > 0);
    assert_slice(req.path, "/sign_in");
    assert_true(req.has_query);
    assert_int_equal(req.query.len, 0);

    assert_true(parse_req(g, LIT("GET /x?a=b HTTP/1.1\r\n\r\n"), &test_lim, &req, &err) > 0);
    assert_slice(req.path, "/x");
    assert_true(req.has_query);
    assert_slice(req.query, "a=b");

    assert_true(parse_req(g, LIT("GET /x?a?b=c HTTP/1.1\r\n\r\n"), &test_lim, &req, &err) > 0);
    assert_slice(req.path, "/x");
    assert_slice(req.query, "a?b=c");

    assert_true(parse_req(g, LIT("GET /? HTTP/1.1\r\n\r\n"), &test_lim, &req, &err) > 0);
    assert_slice(req.target, "/?");
    assert_slice(req.path, "/");
    assert_true(req.has_query);
    assert_int_equal(req.query.len, 0);

    assert_true(parse_req(g, LIT("GET / HTTP/1.1\r\n\r\n"), &test_lim, &req, &err) > 0);
    assert_slice(req.path, "/");
    assert_false(req.has_query);
}

/*
 * The target takes raw bytes: a stock client signs in as "$USERNAME@host"
 * without encoding, so UTF-8, other obs-text, DEL and control bytes reach
 * the router byte for byte (it makes names safe). Only NUL, CR, LF, SP,
 * HTAB, VT and FF are refused (http.h).
 */
static void test_raw_target_bytes(void **state)
{
    static const struct {
        const char *raw, *target, *path, *query;
    } ok[] = {
        { "GET /sign_in?\xc3\xa9t\xc3\xa9@h\xc3\xb4te HTTP/1.0\r\n\r\n",
          "/sign_in?\xc3\xa9t\xc3\xa9@h\xc3\xb4te", "/sign_in", "\xc3\xa9t\xc3\xa9@h\xc3\xb4te" },
        { "GET /sign_in?\x80\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n", "/sign_in?\x80\xff\xfe",
          "/sign_in", "\x80\xff\xfe" },
        { "GET /sign_in?a\x01b\x1f\x1b[0m\x7f HTTP/1.0\r\n\r\n",
          "/sign_in?a\x01b\x1f\x1b[0m\x7f", "/sign_in", "a\x01b\x1f\x1b[0m\x7f" },
        { "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", "/caf\xc3\xa9", "/caf\xc3\xa9", NULL },
        { "GET /\x7f?\x08 HTTP/1.1\r\n\r\n", "/\x7f?\x08", "/\x7f", "\x08" },
        { "GET /wait?peer_id=\x80 HTTP/1.0\r\n\r\n", "/wait?peer_id=\x80", "/wait",
          "peer_id=\x80" },
        { "POST /message?peer_id=1&to=\xd9\xa1 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
          "/message?peer_id=1&to=\xd9\xa1", "/message", "peer_id=1&to=\xd9\xa1" },
    };
    guard_buf_t *g = *state;
    http_request_t req;
    http_error_t err;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const char *raw = ok[i].raw;
        size_t n = strlen(raw);
        long head = (long)(strstr(raw, "\r\n\r\n") - raw) + 4;

        if (parse_req(g, raw, n, &test_lim, &req, &err) != head) {
            print_error("case %zu: %d %s\n", i, err.status, err.reason ? err.reason : "-");
            fail();
        }
        assert_slice(req.target, ok[i].target);
        assert_slice(req.path, ok[i].path);
        assert_int_equal(req.has_query, ok[i].query != NULL);
        assert_slice(req.query, ok[i].query != NULL ? ok[i].query : "");
        check_req_truncations(g, raw, n, head);
    }

    /* Each byte value alone in the query: kept as it is, or refused. */
    for (int v = 0; v < 256; v++) {
        char raw[] = "GET /sign_in?a_b HTTP/1.0\r\n\r\n";
        const size_t n = sizeof raw - 1;
        bool refused = v == 0 || v == '\t' || v == '\n' || v == '\v' || v == '\f' ||
                       v == '\r' || v == ' ';
        long rc;

        raw[14] = (char)v;
        rc = parse_req(g, raw, n, &test_lim, &req, &err);
        if (refused) {
            if (rc != HTTP_PARSE_ERROR || err.status != 400) {
                print_error("byte 0x%02x in the query: got %ld, want 400\n", v, rc);
                fail();
            }
            assert_reason_ok(&err);
        } else {
            if (rc != (long)n) {
                print_error("byte 0x%02x in the query: got %ld (%s), want %zu\n", v, rc,
                            err.reason ? err.reason : "-", n);
                fail();
            }
            assert_int_equal(req.query.len, 3);
            assert_memory_equal(req.query.ptr, raw + 13, 3);
            assert_slice(req.path, "/sign_in");
        }
    }
}

static void test_content_length_values(void **state)
{
    guard_buf_t *g = *state;
    http_limits_t big = { 8192, UINT64_MAX };
    http_request_t req;
    http_error_t err;

    assert_true(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), &test_lim,
                          &req, &err) > 0);
    assert_true(req.has_content_length);
    assert_int_equal(req.content_length, 0);

    assert_true(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n"), &test_lim,
                          &req, &err) > 0);
    assert_int_equal(req.content_length, 7);

    /* The same value twice is harmless, even spelled differently. */
    assert_true(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 4\r\ncontent-length: 4\r\n"
                                 "\r\n"),
                          &test_lim, &req, &err) > 0);
    assert_int_equal(req.content_length, 4);
    assert_true(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 4\r\ncontent-length: 04\r\n"
                                 "\r\n"),
                          &test_lim, &req, &err) > 0);

    /* Exactly max_body is allowed. */
    assert_true(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n"), &test_lim,
                          &req, &err) > 0);
    assert_int_equal(req.content_length, 1048576);

    /* The largest uint64 parses; one more overflows. */
    assert_true(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"),
                          &big, &req, &err) > 0);
    assert_true(req.content_length == UINT64_MAX);
    assert_int_equal(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n"
                                      "\r\n"),
                               &big, &req, &err),
                     HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 400);
    assert_int_equal(parse_req(g, LIT("POST / HTTP/1.1\r\nContent-Length: 18446744073709551620\r\n"
                                      "\r\n"),
                               &big, &req, &err),
                     HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 400);
}

/* A NULL limits pointer means "no limits" rather than a crash. */
static void test_null_limits_and_err(void **state)
{
    guard_buf_t *g = *state;
    http_request_t req;
    http_response_t resp;
    const char *p;

    static const char post[] = "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";
    static const char put[] = "PUT / HTTP/1.1\r\n\r\n";
    static const char ok[] = "HTTP/1.1 200 OK\r\n\r\n";

    p = guard_load(g, LIT(post));
    assert_int_equal(http_parse_request(p, sizeof post - 1, NULL, &req, NULL), sizeof post - 1);
    assert_true(req.content_length == 99999999999ULL);
    p = guard_load(g, LIT(put));
    assert_int_equal(http_parse_request(p, sizeof put - 1, &test_lim, &req, NULL),
                     HTTP_PARSE_ERROR);
    p = guard_load(g, LIT(ok));
    assert_int_equal(http_parse_response(p, sizeof ok - 1, NULL, &resp, NULL), sizeof ok - 1);
    assert_int_equal(http_parse_request(NULL, 0, &test_lim, &req, NULL), HTTP_NEED_MORE);
    assert_int_equal(http_parse_response(NULL, 0, &test_lim, &resp, NULL), HTTP_NEED_MORE);
}

/* ---- pipelining ---- */

static void test_pipelined(void **state)
{
    static const char raw[] = "GET /wait?peer_id=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /message?peer_id=1&to=2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                              "GET /sign_out?peer_id=1 HTTP/1.1\r\n\r\n";
    guard_buf_t *g = *state;
    http_request_t req;
    http_error_t err;
    size_t off = 0;
    long n;

    n = parse_req(g, LIT(raw), &test_lim, &req, &err);
    assert_int_equal(n, strlen("GET /wait?peer_id=1 HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_slice(req.path, "/wait");
    off += (size_t)n;

    n = parse_req(g, raw + off, sizeof raw - 1 - off, &test_lim, &req, &err);
    assert_true(n > 0);
    assert_int_equal(req.method, HTTP_METHOD_POST);
    assert_int_equal(req.content_length, 3);
    off += (size_t)n + 3;

    n = parse_req(g, raw + off, sizeof raw - 1 - off, &test_lim, &req, &err);
    assert_int_equal(n, sizeof raw - 1 - off);
    assert_slice(req.path, "/sign_out");

    /* A second head with garbage behind the first is not looked at. */
    assert_int_equal(parse_req(g, LIT("GET / HTTP/1.1\r\n\r\nPUT \0\n junk"), &test_lim, &req,
                               &err),
                     18);
}

/* ---- errors ---- */

typedef struct err_case {
    const char *name;
    const char *data;
    size_t len;
    int status;
} err_case_t;

#define ERR_CASE(name, s, st) { (name), (s), sizeof(s) - 1, (st) }

/*
 * Every truncation of an error case, at the guard page and in an exact-size
 * heap copy: the bytes so far either still need more or already fail with
 * the same status and reason. Success would mean the parser accepts a head
 * that its continuation proves malformed; a different error would mean the
 * answer depends on how the bytes were split into reads.
 */
static void check_req_err_truncations(guard_buf_t *g, const err_case_t *c,
                                      const http_limits_t *lim, const http_error_t *full)
{
    for (size_t k = 0; k < c->len; k++) {
        http_request_t req;
        http_error_t err;
        long rc = parse_req(g, c->data, k, lim, &req, &err);
        bool same = rc == HTTP_PARSE_ERROR && err.status == full->status &&
                    strcmp(err.reason, full->reason) == 0;

        if (rc != HTTP_NEED_MORE && !same) {
            print_error("case \"%s\", truncation %zu: got %ld status %d (%s), want need-more "
                        "or error %d (%s)\n",
                        c->name, k, rc, err.status, err.reason ? err.reason : "-", full->status,
                        full->reason);
            fail();
        }
        assert_int_equal(parse_req_heap(c->data, k, lim), rc);
    }
    check_req_resumed_all(g, c->data, c->len, lim);
}

static void run_err_cases(guard_buf_t *g, const err_case_t *cases, size_t n,
                          const http_limits_t *lim)
{
    for (size_t i = 0; i < n; i++) {
        const err_case_t *c = &cases[i];
        http_request_t req;
        http_error_t err;
        long rc = parse_req(g, c->data, c->len, lim, &req, &err);

        if (rc != HTTP_PARSE_ERROR || err.status != c->status) {
            print_error("case \"%s\": got %ld status %d (%s), want error %d\n", c->name, rc,
                        err.status, err.reason ? err.reason : "-", c->status);
            fail();
        }
        assert_reason_ok(&err);
        assert_int_equal(parse_req_heap(c->data, c->len, lim), HTTP_PARSE_ERROR);
        check_req_err_truncations(g, c, lim, &err);
    }
}

static void test_request_line_errors(void **state)
{
    static const err_case_t cases[] = {
        ERR_CASE("bare LF after request line", "GET / HTTP/1.1\n\r\n", 400),
        ERR_CASE("bare LF alone, early", "GET / HTTP/1.1\n", 400),
        ERR_CASE("bare LF in method", "GE\nT / HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("leading bare LF", "\nGET / HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("CR without LF", "GET / HTTP/1.1\rX\n\r\n", 400),
        ERR_CASE("CR CR LF", "GET / HTTP/1.1\r\r\n\r\n", 400),
        ERR_CASE("HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", 400),
        ERR_CASE("HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 400),
        ERR_CASE("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 400),
        ERR_CASE("lowercase version", "GET / http/1.1\r\n\r\n", 400),
        ERR_CASE("HTTP/1.10", "GET / HTTP/1.10\r\n\r\n", 400),
        ERR_CASE("HTTP/1.", "GET / HTTP/1.\r\n\r\n", 400),
        ERR_CASE("HTTP/1", "GET / HTTP/1\r\n\r\n", 400),
        ERR_CASE("trailing space", "GET / HTTP/1.1 \r\n\r\n", 400),
        ERR_CASE("missing version", "GET /x\r\n\r\n", 400),
        ERR_CASE("missing version, early", "GET /x\r\n", 400),
        ERR_CASE("missing version after SP", "GET /x \r\n\r\n", 400),
        ERR_CASE("method only", "GET\r\n\r\n", 400),
        ERR_CASE("empty request line", "\r\n\r\n", 400),
        ERR_CASE("empty request line, early", "\r\n", 400),
        ERR_CASE("lowercase get", "get / HTTP/1.1\r\n\r\n", 405),
        ERR_CASE("PUT", "PUT / HTTP/1.1\r\n\r\n", 405),
        ERR_CASE("TRACE", "TRACE / HTTP/1.1\r\n\r\n", 405),
        ERR_CASE("lowercase head", "head / HTTP/1.1\r\n\r\n", 405),
        ERR_CASE("DELETE", "DELETE / HTTP/1.1\r\n\r\n", 405),
        ERR_CASE("GETX", "GETX / HTTP/1.1\r\n\r\n", 405),
        ERR_CASE("PUT, line only", "PUT / HTTP/1.1\r\n", 405),
        ERR_CASE("PUT, then a bad header", "PUT / HTTP/1.1\r\nHost : a\r\n\r\n", 405),
        /* Not METHOD SP target SP HTTP/x.y: a 400, whatever the first word. */
        ERR_CASE("HELLO THERE", "HELLO THERE\r\n\r\n", 400),
        ERR_CASE("HELLO THERE, early", "HELLO THERE", 400),
        ERR_CASE("unknown method, one word", "HELLO\r\n\r\n", 400),
        ERR_CASE("unknown method, no version", "PUT /x\r\n\r\n", 400),
        ERR_CASE("unknown method, no version after SP", "PUT /x \r\n\r\n", 400),
        ERR_CASE("unknown method, HTTP/2.0", "PUT / HTTP/2.0\r\n\r\n", 400),
        ERR_CASE("unknown method, trailing space", "PUT / HTTP/1.1 \r\n\r\n", 400),
        ERR_CASE("unknown method, two spaces", "PUT  / HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("unknown method, asterisk", "OPTIONZ * HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("unknown method, NUL in target", "PUT /a\0b HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("unknown method, bare LF", "PUT / HTTP/1.1\n\r\n", 400),
        ERR_CASE("empty method", " / HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("method with (", "G(T / HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("method with high bit", "G\xc9T / HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("tab after method", "GET\t/ HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("two spaces after method", "GET  / HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("two spaces after target", "GET /  HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("tab after target", "GET /\tHTTP/1.1\r\n\r\n", 400),
        ERR_CASE("target without slash", "GET x HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("asterisk target", "GET * HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("absolute target", "GET http://a/ HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("target without slash, early", "GET x", 400),
        ERR_CASE("NUL in target", "GET /a\0b HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("NUL in target, early", "GET /a\0", 400),
        ERR_CASE("NUL in query", "GET /sign_in?caf\xc3\xa9\0x HTTP/1.0\r\n\r\n", 400),
        ERR_CASE("NUL after high bit, early", "GET /sign_in?\xff\0", 400),
        ERR_CASE("tab inside target", "GET /sign_in?a\tb HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("VT in target", "GET /sign_in?a\vb HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("FF in target", "GET /sign_in?a\fb HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("VT in target, early", "GET /\v", 400),
        ERR_CASE("bare LF in target", "GET /sign_in?a\nb HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("CR in target", "GET /sign_in?a\rb HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("space in name", "GET /sign_in?John Doe HTTP/1.0\r\n\r\n", 400),
        ERR_CASE("high bit before target", "GET \xc3\xa9/ HTTP/1.1\r\n\r\n", 400),
        ERR_CASE("NUL first", "\0", 400),
        ERR_CASE("TLS hello", "\x16\x03\x01\x02\x00\x01", 400),
    };
    run_err_cases(*state, cases, sizeof cases / sizeof cases[0], &test_lim);
}

static void test_header_errors(void **state)
{
    static const err_case_t cases[] = {
        ERR_CASE("bare LF after header", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
        ERR_CASE("bare LF as blank line", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
        ERR_CASE("bare LF in value", "GET / HTTP/1.1\r\nX: a\nb\r\n\r\n", 400),
        ERR_CASE("CR in value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
        ERR_CASE("NUL in value", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 400),
        ERR_CASE("NUL in value, early", "GET / HTTP/1.1\r\nX: a\0", 400),
        ERR_CASE("NUL at end of value", "GET / HTTP/1.1\r\nX: a\0\r\n\r\n", 400),
        ERR_CASE("CTL in value", "GET / HTTP/1.1\r\nX: a\x01 b\r\n\r\n", 400),
        ERR_CASE("ESC in value", "GET / HTTP/1.1\r\nX: \x1b[31m\r\n\r\n", 400),
        ERR_CASE("DEL in value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400),
        ERR_CASE("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        ERR_CASE("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
        ERR_CASE("space in name, early", "GET / HTTP/1.1\r\nHo st", 400),
        ERR_CASE("empty header name", "GET / HTTP/1.1\r\n: a\r\n\r\n", 400),
        ERR_CASE("empty name, early", "GET / HTTP/1.1\r\n:", 400),
        ERR_CASE("no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", 400),
        ERR_CASE("no colon, early", "GET / HTTP/1.1\r\nHost\r\n", 400),
        ERR_CASE("( in name", "GET / HTTP/1.1\r\nX(y): a\r\n\r\n", 400),
        ERR_CASE("high bit in name", "GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", 400),
        ERR_CASE("DEL in name", "GET / HTTP/1.1\r\nX\x7f: a\r\n\r\n", 400),
        ERR_CASE("NUL in name", "GET / HTTP/1.1\r\nX\0: a\r\n\r\n", 400),
        ERR_CASE("obs-fold space", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
        ERR_CASE("obs-fold tab", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 400),
        ERR_CASE("obs-fold, early", "GET / HTTP/1.1\r\nX: a\r\n ", 400),
        ERR_CASE("first header indented", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
        ERR_CASE("Transfer-Encoding chunked",
                 "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ERR_CASE("transfer-encoding identity",
                 "POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", 501),
        ERR_CASE("TE with Content-Length",
                 "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                 501),
        ERR_CASE("TE, early", "POST / HTTP/1.1\r\nTRANSFER-ENCODING: x\r\n", 501),
    };
    run_err_cases(*state, cases, sizeof cases / sizeof cases[0], &test_lim);
}

static void test_content_length_errors(void **state)
{
    static const err_case_t cases[] = {
        ERR_CASE("negative", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ERR_CASE("plus sign", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
        ERR_CASE("trailing letter", "POST / HTTP/1.1\r\nContent-Length: 1a\r\n\r\n", 400),
        ERR_CASE("hex", "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400),
        ERR_CASE("empty", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400),
        ERR_CASE("blank", "POST / HTTP/1.1\r\nContent-Length:  \t \r\n\r\n", 400),
        ERR_CASE("inner space", "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400),
        ERR_CASE("list", "POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\n", 400),
        ERR_CASE("decimal point", "POST / HTTP/1.1\r\nContent-Length: 4.0\r\n\r\n", 400),
        ERR_CASE("overflow",
                 "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        ERR_CASE("overflow by one",
                 "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", 400),
        ERR_CASE("high-bit digits", "POST / HTTP/1.1\r\nContent-Length: \xd9\xa1\r\n\r\n", 400),
        ERR_CASE("duplicate differing",
                 "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", 400),
        ERR_CASE("duplicate differing, other case",
                 "POST / HTTP/1.1\r\ncontent-length: 5\r\nCONTENT-LENGTH: 50\r\n\r\n", 400),
        ERR_CASE("bad, early", "POST / HTTP/1.1\r\nContent-Length: x\r\n", 400),
        ERR_CASE("over max_body", "POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413),
        ERR_CASE("far over max_body",
                 "POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n", 413),
        ERR_CASE("over max_body, early", "POST / HTTP/1.1\r\nContent-Length: 2000000\r\n", 413),
    };
    run_err_cases(*state, cases, sizeof cases / sizeof cases[0], &test_lim);
}

/* Appends "X-Hn: v\r\n" header lines to a request line; returns the length. */
static size_t build_headers(char *out, size_t cap, size_t count, bool finish)
{
    size_t n = (size_t)snprintf(out, cap, "GET /wait?peer_id=1 HTTP/1.1\r\n");
    for (size_t i = 0; i < count; i++)
        n += (size_t)snprintf(out + n, cap - n, "X-H%zu: v\r\n", i);
    if (finish)
        n += (size_t)snprintf(out + n, cap - n, "\r\n");
    assert_true(n < cap);
    return n;
}

static void test_too_many_headers(void **state)
{
    guard_buf_t *g = *state;
    char raw[4096];
    http_request_t req;
    http_error_t err;
    size_t n;

    n = build_headers(raw, sizeof raw, HTTP_MAX_HEADERS, true);
    assert_int_equal(parse_req(g, raw, n, &test_lim, &req, &err), n);
    assert_int_equal(req.num_headers, HTTP_MAX_HEADERS);
    assert_slice(req.headers[HTTP_MAX_HEADERS - 1].name, "X-H63");
    check_req_truncations(g, raw, n, (long)n);

    n = build_headers(raw, sizeof raw, HTTP_MAX_HEADERS + 1, true);
    assert_int_equal(parse_req(g, raw, n, &test_lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    assert_string_equal(err.reason, "too many headers");

    /* Known as soon as the 65th line starts. */
    n = build_headers(raw, sizeof raw, HTTP_MAX_HEADERS, false);
    raw[n++] = 'X';
    assert_int_equal(parse_req(g, raw, n, &test_lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    /* ... but 64 headers and a lone CR may still be the end of the head. */
    raw[n - 1] = '\r';
    assert_int_equal(parse_req(g, raw, n, &test_lim, &req, &err), HTTP_NEED_MORE);

    check_req_resumed_all(g, raw, n, &test_lim);
    raw[n - 1] = 'X';
    check_req_resumed_all(g, raw, n, &test_lim);

    n = build_headers(raw, sizeof raw, 200, true);
    assert_int_equal(parse_req(g, raw, n, &test_lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    check_req_resumed_all(g, raw, n, &test_lim);
}

static void test_head_too_large(void **state)
{
    guard_buf_t *g = *state;
    http_limits_t lim = { 64, 1000 };
    char raw[20000];
    http_request_t req;
    http_error_t err;
    size_t n;

    /* Exactly max_head bytes of head is fine. */
    n = (size_t)snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nX: %s\r\n\r\n",
                         "01234567890123456789012345678901234567890");
    assert_int_equal(n, 64);
    assert_int_equal(parse_req(g, raw, n, &lim, &req, &err), 64);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(parse_req(g, raw, k, &lim, &req, &err), HTTP_NEED_MORE);
    /* The body may run past max_head: only the head is limited. */
    memset(raw + n, 'b', 500);
    assert_int_equal(parse_req(g, raw, n + 500, &lim, &req, &err), 64);
    check_req_resumed_all(g, raw, n + 500, &lim);

    /* One byte more, complete: 431. */
    n = (size_t)snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nX: %s\r\n\r\n",
                         "012345678901234567890123456789012345678901");
    assert_int_equal(n, 65);
    assert_int_equal(parse_req(g, raw, n, &lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    assert_string_equal(err.reason, "request header too large");
    assert_int_equal(parse_req(g, raw, 63, &lim, &req, &err), HTTP_NEED_MORE);
    assert_int_equal(parse_req(g, raw, 64, &lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    check_req_resumed_all(g, raw, n, &lim);

    /* Incomplete and endless: 431 once max_head bytes are in. */
    memset(raw, 0, sizeof raw);
    n = (size_t)snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nX: ");
    memset(raw + n, 'a', sizeof raw - n);
    assert_int_equal(parse_req(g, raw, 63, &lim, &req, &err), HTTP_NEED_MORE);
    assert_int_equal(parse_req(g, raw, 64, &lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    assert_int_equal(parse_req(g, raw, sizeof raw, &lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    check_req_resumed_all(g, raw, 100, &lim);

    /* The default limit, with many small headers. */
    n = 0;
    n += (size_t)snprintf(raw + n, sizeof raw - n, "GET / HTTP/1.1\r\n");
    while (n < 9000)
        n += (size_t)snprintf(raw + n, sizeof raw - n, "X: %0300d\r\n", 7);
    n += (size_t)snprintf(raw + n, sizeof raw - n, "\r\n");
    assert_true(n < sizeof raw);
    assert_int_equal(parse_req(g, raw, n, &test_lim, &req, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 431);
    assert_string_equal(err.reason, "request header too large");
    check_req_resumed(g, raw, n, &test_lim, 1);
    check_req_resumed(g, raw, n, &test_lim, 13);
}

/* ---- the cost of a head read in pieces ---- */

/*
 * A head of about 16 KiB in one of four shapes: one long target, one long
 * header value, many header lines, or (response) a long reason and many
 * headers. Returns its length.
 */
static size_t build_big_head(char *out, size_t cap, int shape)
{
    const size_t target = 16384;
    size_t n = 0;

    switch (shape) {
    case 0:
        n += (size_t)snprintf(out, cap, "GET /");
        while (n < target - 40)
            out[n++] = 'a';
        n += (size_t)snprintf(out + n, cap - n, " HTTP/1.1\r\nHost: h\r\n\r\n");
        break;
    case 1:
        n += (size_t)snprintf(out, cap, "GET / HTTP/1.1\r\nX-Long: ");
        while (n < target - 4)
            out[n++] = 'v';
        n += (size_t)snprintf(out + n, cap - n, "\r\n\r\n");
        break;
    case 2:
        n += (size_t)snprintf(out, cap, "POST /message?peer_id=1&to=2 HTTP/1.1\r\n");
        for (int i = 0; i < HTTP_MAX_HEADERS - 1; i++)
            n += (size_t)snprintf(out + n, cap - n, "X-H%d: %0240d\r\n", i, i);
        n += (size_t)snprintf(out + n, cap - n, "Content-Length: 0\r\n\r\n");
        break;
    default:
        n += (size_t)snprintf(out, cap, "HTTP/1.1 200 ");
        while (n < 8000)
            out[n++] = 'r';
        n += (size_t)snprintf(out + n, cap - n, "\r\n");
        for (int i = 0; i < 32; i++)
            n += (size_t)snprintf(out + n, cap - n, "X-H%d: %0240d\r\n", i, i);
        n += (size_t)snprintf(out + n, cap - n, "\r\n");
        break;
    }
    assert_true(n < cap);
    return n;
}

/*
 * A 16 KiB head sent one byte per read costs O(n) with the resumable calls:
 * every byte is looked at a few times in all (the plain call, re-reading
 * the buffer from its start after each read, looks at about n^2 bytes:
 * 134 million here). Counted by the parser itself in st.examined.
 */
static void test_dribbled_head_is_linear(void **state)
{
    guard_buf_t *g = *state;
    const http_limits_t lim = { 32768, 1u << 20 };
    static char raw[20000];

    for (int shape = 0; shape < 4; shape++) {
        size_t n = build_big_head(raw, sizeof raw, shape);
        http_parse_state_t st = HTTP_PARSE_STATE_INIT;
        http_request_t req;
        http_response_t resp;
        http_error_t err;
        long rc = HTTP_NEED_MORE;

        for (size_t k = 0; k <= n; k++) {
            const char *p = guard_load(g, raw, k);
            rc = shape < 3 ? http_parse_request_resume(p, k, &lim, &st, &req, &err)
                           : http_parse_response_resume(p, k, &lim, &st, &resp, &err);
            if (k < n)
                assert_int_equal(rc, HTTP_NEED_MORE);
        }
        assert_int_equal(rc, (long)n);
        if (st.examined > 8 * (uint64_t)n) {
            print_error("shape %d: %zu bytes of head, %llu examined (limit %zu)\n", shape, n,
                        (unsigned long long)st.examined, 8 * n);
            fail();
        }
    }
}

/* ---- hostile bytes ---- */

static bool slice_inside(http_slice_t s, const char *buf, long n)
{
    if (s.len == 0)
        return s.ptr == NULL || (s.ptr >= buf && s.ptr <= buf + n);
    return s.ptr >= buf && s.ptr + s.len <= buf + n;
}

/*
 * The two properties that make a stateless parser safe to call after each
 * read: an error stays an error however many bytes follow, and no prefix of
 * an accepted head is ever refused or accepted early.
 */
static void check_req_consistency(guard_buf_t *g, const char *data, size_t n)
{
    http_request_t req;
    http_error_t err = { 0, NULL };
    int status;
    const char *reason;
    long full, again;
    const char *p = guard_load(g, data, n);

    full = http_parse_request(p, n, &test_lim, &req, &err);
    status = err.status;
    reason = err.reason;
    assert_true(full >= HTTP_PARSE_ERROR && full <= (long)n);
    if (full == HTTP_PARSE_ERROR) {
        assert_true(status == 400 || status == 405 || status == 413 || status == 431 ||
                    status == 501);
        assert_reason_ok(&err);
    } else if (full > 0) {
        assert_true(req.method >= HTTP_METHOD_GET && req.method <= HTTP_METHOD_HEAD);
        assert_true(req.minor_version == 0 || req.minor_version == 1);
        assert_true(req.num_headers <= HTTP_MAX_HEADERS);
        assert_true(slice_inside(req.target, p, full));
        assert_true(slice_inside(req.path, p, full));
        assert_true(slice_inside(req.query, p, full));
        assert_true(req.target.len > 0 && req.target.ptr[0] == '/');
        for (size_t i = 0; i < req.num_headers; i++) {
            assert_true(req.headers[i].name.len > 0);
            assert_true(slice_inside(req.headers[i].name, p, full));
            assert_true(slice_inside(req.headers[i].value, p, full));
        }
        assert_true(memcmp(p + full - 4, "\r\n\r\n", 4) == 0);
    }

    /* The same bytes give the same answer. */
    again = http_parse_request(p, n, &test_lim, &req, &err);
    assert_int_equal(again, full);
    if (full == HTTP_PARSE_ERROR)
        assert_int_equal(err.status, status);

    /* The resumable call is fed the same bytes one per read (cheaper here
     * than check_req_resumed, which parses every prefix again). */
    http_parse_state_t st = HTTP_PARSE_STATE_INIT;
    for (size_t k = 0; k < n; k++) {
        http_error_t rerr = { -1, NULL };
        long r, rr;
        p = guard_load(g, data, k);
        rr = http_parse_request_resume(p, k, &test_lim, &st, &req, &rerr);
        r = http_parse_request(p, k, &test_lim, &req, &err);
        assert_int_equal(rr, r);
        if (r == HTTP_PARSE_ERROR) {
            assert_int_equal(rerr.status, err.status);
            assert_string_equal(rerr.reason, err.reason);
        }
        if (r == HTTP_PARSE_ERROR) {
            /* the same error, whatever the reads: errors come left to right */
            assert_int_equal(full, HTTP_PARSE_ERROR);
            assert_int_equal(err.status, status);
            assert_string_equal(err.reason, reason);
        } else if (r > 0) {
            assert_int_equal(r, full);
        } else if (full > 0) {
            assert_true((long)k < full);
        }
    }
}

static void test_hostile_bytes_request(void **state)
{
    static const char *const bases[] = {
        ("POST /message?peer_id=1&to=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
         "Content-Type: text/plain\r\nConnection: close\r\n\r\nabc"),
        "GET /sign_in?alice HTTP/1.0\r\n\r\n",
        "OPTIONS / HTTP/1.1\r\nX:\r\n\r\n",
    };
    guard_buf_t *g = *state;
    char buf[256];

    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
        size_t n = strlen(bases[b]);
        assert_true(n <= sizeof buf);
        for (size_t pos = 0; pos < n; pos++) {
            for (int v = 0; v < 256; v++) {
                memcpy(buf, bases[b], n);
                buf[pos] = (char)v;
                check_req_consistency(g, buf, n);
            }
        }
    }
}

/* Two bytes at once, over a smaller grid, to reach pairs like CR CR. */
static void test_hostile_byte_pairs(void **state)
{
    static const unsigned char vals[] = { 0x00, 0x09, 0x0a, 0x0d, 0x20, 0x2c, 0x2f,
                                          0x30, 0x3a, 0x3f, 0x7f, 0x80, 0xff, 'a' };
    static const char base[] = "GET /w?a HTTP/1.1\r\nA: b\r\n\r\n";
    guard_buf_t *g = *state;
    char buf[sizeof base];
    const size_t n = sizeof base - 1;

    for (size_t p1 = 0; p1 < n; p1++)
        for (size_t p2 = p1 + 1; p2 < n; p2++)
            for (size_t a = 0; a < sizeof vals; a++)
                for (size_t c = 0; c < sizeof vals; c++) {
                    memcpy(buf, base, n);
                    buf[p1] = (char)vals[a];
                    buf[p2] = (char)vals[c];
                    check_req_consistency(g, buf, n);
                }
}

static void test_hostile_bytes_response(void **state)
{
    static const char base[] = "HTTP/1.1 200 Added\r\nPragma: 1\r\nContent-Length: 10\r\n"
                               "Connection: close\r\n\r\n";
    guard_buf_t *g = *state;
    char buf[sizeof base];
    const size_t n = sizeof base - 1;

    for (size_t pos = 0; pos < n; pos++) {
        for (int v = 0; v < 256; v++) {
            http_response_t resp;
            http_error_t err;
            long full;
            const char *p;

            memcpy(buf, base, n);
            buf[pos] = (char)v;
            p = guard_load(g, buf, n);
            full = http_parse_response(p, n, &test_lim, &resp, &err);
            assert_true(full >= HTTP_PARSE_ERROR && full <= (long)n);
            if (full == HTTP_PARSE_ERROR) {
                assert_int_equal(err.status, 0);
                assert_reason_ok(&err);
            } else if (full > 0) {
                assert_true(resp.status >= 100 && resp.status <= 999);
                assert_true(resp.num_headers <= HTTP_MAX_HEADERS);
                assert_true(slice_inside(resp.reason, p, full));
            }
            const char *reason = full == HTTP_PARSE_ERROR ? err.reason : NULL;
            http_parse_state_t st = HTTP_PARSE_STATE_INIT;
            for (size_t k = 0; k < n; k++) {
                http_error_t rerr = { -1, NULL };
                long r, rr;
                p = guard_load(g, buf, k);
                rr = http_parse_response_resume(p, k, &test_lim, &st, &resp, &rerr);
                r = http_parse_response(p, k, &test_lim, &resp, &err);
                assert_int_equal(rr, r); /* the resumable call, a byte per read */
                if (r == HTTP_PARSE_ERROR)
                    assert_string_equal(rerr.reason, err.reason);
                if (r == HTTP_PARSE_ERROR) {
                    assert_int_equal(full, HTTP_PARSE_ERROR);
                    assert_string_equal(err.reason, reason);
                } else if (r > 0) {
                    assert_int_equal(r, full);
                } else if (full > 0) {
                    assert_true((long)k < full);
                }
            }
        }
    }
}

/* ---- responses ---- */

static void test_response_stock(void **state)
{
    static const char raw[] = "HTTP/1.1 200 Added\r\n"
                              "Server: PeerConnectionTestServer/0.1\r\n"
                              "Cache-Control: no-cache\r\n"
                              "Connection: close\r\n"
                              "Content-Type: text/plain\r\n"
                              "Content-Length: 10\r\n"
                              "Pragma: 1\r\n"
                              "Access-Control-Allow-Origin: *\r\n"
                              "Access-Control-Allow-Credentials: true\r\n"
                              "Access-Control-Allow-Methods: POST, GET, OPTIONS\r\n"
                              "Access-Control-Allow-Headers: Content-Type, Content-Length, "
                              "Connection, Cache-Control\r\n"
                              "Access-Control-Expose-Headers: Content-Length\r\n"
                              "\r\n"
                              "alice,1,1\n";
    const long head = (long)(sizeof raw - 1 - 10);
    http_response_t resp;
    http_error_t err;
    const http_header_t *h;

    assert_int_equal(parse_resp(*state, LIT(raw), &test_lim, &resp, &err), head);
    assert_int_equal(resp.minor_version, 1);
    assert_int_equal(resp.status, 200);
    assert_slice(resp.reason, "Added");
    assert_int_equal(resp.num_headers, 11);
    assert_true(resp.has_content_length);
    assert_int_equal(resp.content_length, 10);
    assert_true(resp.has_content_type);
    assert_slice(resp.content_type, "text/plain");
    assert_true(resp.connection_close);
    h = http_find_header(resp.headers, resp.num_headers, "pragma");
    assert_non_null(h);
    assert_slice(h->value, "1");
    check_resp_truncations(*state, LIT(raw), head);
}

static void test_response_variants(void **state)
{
    guard_buf_t *g = *state;
    http_response_t resp;
    http_error_t err;

    assert_int_equal(parse_resp(g, LIT("HTTP/1.1 200\r\n\r\n"), &test_lim, &resp, &err), 16);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.reason.len, 0);
    assert_false(resp.has_content_length);
    assert_false(resp.connection_close);
    check_resp_truncations(g, LIT("HTTP/1.1 200\r\n\r\n"), 16);

    assert_int_equal(parse_resp(g, LIT("HTTP/1.1 204 \r\n\r\n"), &test_lim, &resp, &err), 17);
    assert_int_equal(resp.status, 204);
    assert_int_equal(resp.reason.len, 0);

    assert_true(parse_resp(g, LIT("HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                  "\r\n"),
                           &test_lim, &resp, &err) > 0);
    assert_int_equal(resp.minor_version, 0);
    assert_int_equal(resp.status, 500);
    assert_slice(resp.reason, "Internal Server Error");
    assert_true(resp.has_content_length);
    assert_int_equal(resp.content_length, 0);

    assert_true(parse_resp(g, LIT("HTTP/1.1 404 Not \xc3\xa9 Found\r\nconnection: Keep-Alive, "
                                  "CLOSE\r\n\r\n"),
                           &test_lim, &resp, &err) > 0);
    assert_int_equal(resp.status, 404);
    assert_true(resp.connection_close);

    assert_true(parse_resp(g, LIT("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n"),
                           &test_lim, &resp, &err) > 0);
    assert_false(resp.connection_close);

    assert_true(parse_resp(g, LIT("HTTP/1.1 999 x\r\n\r\n"), &test_lim, &resp, &err) > 0);
    assert_int_equal(resp.status, 999);
    assert_true(parse_resp(g, LIT("HTTP/1.1 100 Continue\r\n\r\n"), &test_lim, &resp, &err) > 0);
    assert_int_equal(resp.status, 100);
}

static void test_response_errors(void **state)
{
    static const err_case_t cases[] = {
        ERR_CASE("HTTP/2", "HTTP/2 200 OK\r\n\r\n", 0),
        ERR_CASE("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", 0),
        ERR_CASE("lowercase", "http/1.1 200 OK\r\n\r\n", 0),
        ERR_CASE("two digits", "HTTP/1.1 20 OK\r\n\r\n", 0),
        ERR_CASE("four digits", "HTTP/1.1 2000 OK\r\n\r\n", 0),
        ERR_CASE("leading zero", "HTTP/1.1 099 OK\r\n\r\n", 0),
        ERR_CASE("letter", "HTTP/1.1 2x0 OK\r\n\r\n", 0),
        ERR_CASE("no status", "HTTP/1.1\r\n\r\n", 0),
        ERR_CASE("no status after SP", "HTTP/1.1 \r\n\r\n", 0),
        ERR_CASE("two spaces", "HTTP/1.1  200 OK\r\n\r\n", 0),
        ERR_CASE("tab", "HTTP/1.1\t200 OK\r\n\r\n", 0),
        ERR_CASE("CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 0),
        ERR_CASE("bare LF", "HTTP/1.1 200 OK\n\n", 0),
        ERR_CASE("NUL", "HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", 0),
        ERR_CASE("bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", 0),
        ERR_CASE("negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0),
        ERR_CASE("empty Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", 0),
        ERR_CASE("overflowing Content-Length",
                 "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0),
        ERR_CASE("conflicting Content-Length",
                 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0),
        ERR_CASE("Content-Length over max_body",
                 "HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n", 0),
        ERR_CASE("Transfer-Encoding",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0),
        ERR_CASE("space before colon", "HTTP/1.1 200 OK\r\nPragma : 1\r\n\r\n", 0),
        ERR_CASE("obs-fold", "HTTP/1.1 200 OK\r\nPragma: 1\r\n 2\r\n\r\n", 0),
    };
    guard_buf_t *g = *state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_response_t resp;
        http_error_t err;
        long rc = parse_resp(g, cases[i].data, cases[i].len, &test_lim, &resp, &err);

        if (rc != HTTP_PARSE_ERROR || err.status != 0) {
            print_error("case \"%s\": got %ld status %d\n", cases[i].name, rc, err.status);
            fail();
        }
        assert_reason_ok(&err);
        assert_int_equal(parse_resp_heap(cases[i].data, cases[i].len, &test_lim),
                         HTTP_PARSE_ERROR);
        check_resp_resumed_all(g, cases[i].data, cases[i].len, &test_lim);
    }
}

static void test_response_head_too_large(void **state)
{
    guard_buf_t *g = *state;
    http_limits_t lim = { 32, 100 };
    char raw[128];
    http_response_t resp;
    http_error_t err;

    memset(raw, 'a', sizeof raw);
    memcpy(raw, "HTTP/1.1 200 ", 13);
    assert_int_equal(parse_resp(g, raw, 31, &lim, &resp, &err), HTTP_NEED_MORE);
    assert_int_equal(parse_resp(g, raw, 32, &lim, &resp, &err), HTTP_PARSE_ERROR);
    assert_int_equal(err.status, 0);
    assert_reason_ok(&err);
    assert_int_equal(parse_resp(g, raw, sizeof raw, &lim, &resp, &err), HTTP_PARSE_ERROR);
}

/* ---- helpers ---- */

static void test_find_header(void **state)
{
    static const char raw[] = "GET / HTTP/1.1\r\n"
                              "Content-Type: a\r\n"
                              "X-Peer: 1\r\n"
                              "CONTENT-TYPE: b\r\n"
                              "content-length: 0\r\n"
                              "\r\n";
    http_request_t req;
    http_error_t err;
    const http_header_t *h;

    assert_true(parse_req(*state, LIT(raw), &test_lim, &req, &err) > 0);
    assert_int_equal(req.num_headers, 4);

    h = http_find_header(req.headers, req.num_headers, "content-type");
    assert_ptr_equal(h, &req.headers[0]);
    assert_slice(h->value, "a");
    assert_ptr_equal(http_find_header(req.headers, req.num_headers, "CoNtEnT-tYpE"),
                     &req.headers[0]);
    assert_ptr_equal(http_find_header(req.headers, req.num_headers, "x-peer"), &req.headers[1]);
    assert_ptr_equal(http_find_header(req.headers, req.num_headers, "Content-Length"),
                     &req.headers[3]);
    assert_null(http_find_header(req.headers, req.num_headers, "Content"));
    assert_null(http_find_header(req.headers, req.num_headers, "Content-Type-X"));
    assert_null(http_find_header(req.headers, req.num_headers, "X-Pees"));
    assert_null(http_find_header(req.headers, req.num_headers, ""));
    /* Only the first n headers are searched. */
    assert_null(http_find_header(req.headers, 1, "x-peer"));
    assert_null(http_find_header(NULL, 0, "x-peer"));
    /* Content-Type keeps the first value. */
    assert_slice(req.content_type, "a");
}

static void test_slice_eq(void **state)
{
    http_slice_t s = { "abcdef", 3 };
    http_slice_t empty = { NULL, 0 };

    (void)state;
    assert_true(http_slice_eq(s, "abc"));
    assert_false(http_slice_eq(s, "ABC"));
    assert_false(http_slice_eq(s, "ab"));
    assert_false(http_slice_eq(s, "abcd"));
    assert_false(http_slice_eq(s, ""));
    assert_true(http_slice_eq(empty, ""));
    assert_false(http_slice_eq(empty, "a"));
}

#define GT(f) cmocka_unit_test_setup_teardown(f, guard_setup, guard_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        GT(test_stock_sign_in),
        GT(test_stock_wait),
        GT(test_stock_message),
        GT(test_options),
        GT(test_http11_host),
        GT(test_lowercase_names_and_tabs),
        GT(test_empty_content_type),
        GT(test_keep_alive_rules),
        GT(test_query_split),
        GT(test_raw_target_bytes),
        GT(test_content_length_values),
        GT(test_null_limits_and_err),
        GT(test_pipelined),
        GT(test_request_line_errors),
        GT(test_header_errors),
        GT(test_content_length_errors),
        GT(test_too_many_headers),
        GT(test_head_too_large),
        GT(test_dribbled_head_is_linear),
        GT(test_hostile_bytes_request),
        GT(test_hostile_byte_pairs),
        GT(test_hostile_bytes_response),
        GT(test_response_stock),
        GT(test_response_variants),
        GT(test_response_errors),
        GT(test_response_head_too_large),
        GT(test_find_header),
        GT(test_slice_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
