/*
 * Unit tests of web's pure parts: which request paths --web-root may map to
 * a file, If-None-Match matching, Content-Types, the /config.json body, and
 * web_answer on the built-in files (200, 304, 405, not ours).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The module itself: its static functions are what these tests check. */
#include "web.c"
#include "strlit.h"

static bool path_ok(const char *p)
{
    return web_path_ok(p, strlen(p));
}

static void test_path_ok(void **state)
{
    (void)state;
    static const char *const good[] = {"/index.html", "/a", "/sub/a.txt", "/a-b_c.d.e",
                                       "/x/y/z/file.js", "/a..b"};
    static const char *const bad[] = {
        "", "/", "index.html", "/..", "/../x", "/sub/../x", "/./x", "/.hidden", "/sub/.git/x",
        "//x", "/sub//x", "/sub/", "/%2e%2e/x", "/a%20b", "/a\\b", "/a b", "/a?b", "/a\x01",
        "/\xc3\xa9", "/a:b", "/~x",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!path_ok(good[i]))
            fail_msg("refused %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (path_ok(bad[i]))
            fail_msg("accepted %s", bad[i]);
    /* A NUL inside the slice is refused, not a terminator. */
    assert_false(web_path_ok(STRLIT("/a\0b")));
    char longp[WEB_MAX_PATH + 2];
    longp[0] = '/';
    memset(longp + 1, 'a', WEB_MAX_PATH);
    assert_true(web_path_ok(longp, WEB_MAX_PATH));
    assert_false(web_path_ok(longp, WEB_MAX_PATH + 1));
}

static bool matches(const char *value, const char *etag)
{
    return web_etag_matches(value, strlen(value), etag);
}

static void test_etag_matches(void **state)
{
    (void)state;
    const char *e = "\"0123456789abcdef\"";
    assert_true(matches("\"0123456789abcdef\"", e));
    assert_true(matches("W/\"0123456789abcdef\"", e));
    assert_true(matches("\"x\", \"0123456789abcdef\"", e));
    assert_true(matches(" \"x\" ,\t\"0123456789abcdef\" ", e));
    assert_true(matches("*", e));
    assert_false(matches("", e));
    assert_false(matches("\"0123456789abcdee\"", e));
    assert_false(matches("0123456789abcdef", e)); /* unquoted */
    assert_false(matches("\"0123456789abcdef", e));
    assert_false(matches("\"0123456789abcdef\"x", e));
    assert_false(matches("w/\"0123456789abcdef\"", e));
    assert_false(matches("**", e));
}

static void test_content_type(void **state)
{
    (void)state;
    assert_string_equal(web_content_type(STRLIT("/index.html")), "text/html; charset=utf-8");
    assert_string_equal(web_content_type(STRLIT("/app.js")), "text/javascript; charset=utf-8");
    assert_string_equal(web_content_type(STRLIT("/APP.CSS")), "text/css; charset=utf-8");
    assert_string_equal(web_content_type(STRLIT("/x.png")), "image/png");
    assert_string_equal(web_content_type(STRLIT("/x")), "application/octet-stream");
    /* Only the slice counts: "/a.js" cut to "/a." has no known extension. */
    assert_string_equal(web_content_type("/a.js", 3), "application/octet-stream");
}

/* The server's defaults: config_load with no option, no file, no environment. */
static void defaults(struct server_config *cfg)
{
    char arg0[] = "pcsig-server";
    char *argv[] = {arg0, NULL};
    assert_int_equal(config_load(cfg, 1, argv, NULL, stderr), CONFIG_OK);
}

static char *config_json(const struct server_config *cfg, unsigned long long now)
{
    static buf_t b;
    buf_free(&b);
    buf_init(&b, 1 << 16);
    assert_int_equal(web_config_json(cfg, now, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    return b.data;
}

static void test_config_json(void **state)
{
    (void)state;
    struct server_config cfg;
    defaults(&cfg);
    assert_string_equal(config_json(&cfg, 0), "{\"iceServers\":[]}\n");
    cfg.ice_servers = "stun:a:3478,turn:b?transport=tcp";
    assert_string_equal(config_json(&cfg, 0),
                        "{\"iceServers\":[{\"urls\":[\"stun:a:3478\",\"turn:b?transport=tcp\"]}]}\n");
    cfg.ice_username = "u\"\\\n";
    cfg.ice_credential = "p\x7f";
    assert_string_equal(config_json(&cfg, 0),
                        "{\"iceServers\":[{\"urls\":[\"stun:a:3478\",\"turn:b?transport=tcp\"],"
                        "\"username\":\"u\\\"\\\\\\n\",\"credential\":\"p\\u007f\"}]}\n");
    /* TURN REST (RFC 2104 HMAC-SHA1 of "86400:pcsig" under "secret", base64),
     * checked against: printf 86400:pcsig | openssl dgst -sha1 -hmac secret -binary | base64 */
    cfg.ice_servers = "turn:t";
    cfg.ice_secret = "secret";
    assert_string_equal(config_json(&cfg, 0),
                        "{\"iceServers\":[{\"urls\":[\"turn:t\"],\"username\":\"86400:pcsig\","
                        "\"credential\":\"anX9K9O3PVHmLkeAUDoJXMfVpg0=\"}]}\n");
}

/* A GET of path (with an If-None-Match when inm): what web_answer wrote. */
static bool answer(const struct web *w, const char *reqtext, buf_t *out)
{
    http_request_t req;
    http_error_t err;
    http_limits_t lim = {.max_head = 16384, .max_body = 0};
    long n = http_parse_request(reqtext, strlen(reqtext), &lim, &req, &err);
    assert_true(n > 0);
    buf_reset(out);
    return web_answer(w, &req, out, true) != 0;
}

static void test_answer_builtin(void **state)
{
    (void)state;
    struct server_config cfg;
    defaults(&cfg);
    struct web *w = NULL;
    assert_int_equal(web_create(&cfg, &w), 0);
    buf_t out;
    buf_init(&out, 1 << 22);
    assert_true(answer(w, "GET / HTTP/1.1\r\n\r\n", &out));
    assert_int_equal(buf_append(&out, "", 1), 0);
    assert_non_null(strstr(out.data, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out.data, "Content-Type: text/html; charset=utf-8\r\n"));
    assert_non_null(strstr(out.data, "X-Content-Type-Options: nosniff\r\n"));
    const char *etag = strstr(out.data, "ETag: ");
    assert_non_null(etag);
    char tag[19];
    memcpy(tag, etag + 6, 18);
    tag[18] = '\0';
    char req[128];
    snprintf(req, sizeof req, "GET /index.html HTTP/1.1\r\nIf-None-Match: %s\r\n\r\n", tag);
    assert_true(answer(w, req, &out));
    assert_int_equal(buf_append(&out, "", 1), 0);
    assert_non_null(strstr(out.data, "HTTP/1.1 304 Not Modified\r\n"));
    /* The head ends the 304: no body follows it. */
    assert_int_equal(strstr(out.data, "\r\n\r\n") + 4 - out.data, (long)out.len - 1);
    assert_true(answer(w, "POST /app.js HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &out));
    assert_int_equal(buf_append(&out, "", 1), 0);
    assert_non_null(strstr(out.data, "HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_non_null(strstr(out.data, "Allow: GET, HEAD\r\n"));
    /* HEAD: the GET's head (its Content-Length and ETag), no body. */
    assert_true(answer(w, "GET /app.css HTTP/1.1\r\n\r\n", &out));
    size_t get_len = out.len;
    size_t get_head = (size_t)((const char *)memmem(out.data, out.len, STRLIT("\r\n\r\n")) - out.data) + 4;
    char get_copy[4096];
    assert_true(get_head < sizeof get_copy);
    memcpy(get_copy, out.data, get_head);
    assert_true(answer(w, "HEAD /app.css HTTP/1.1\r\n\r\n", &out));
    assert_int_equal(out.len, get_head);
    assert_memory_equal(out.data, get_copy, get_head);
    assert_true(get_len > get_head);
    assert_true(answer(w, "HEAD /config.json HTTP/1.1\r\n\r\n", &out));
    assert_int_equal(buf_append(&out, "", 1), 0);
    assert_non_null(strstr(out.data, "Content-Length: 18\r\n"));
    assert_int_equal(strstr(out.data, "\r\n\r\n") + 4 - out.data, (long)out.len - 1);
    /* Not the page's: nothing written, the router answers. */
    static const char *const not_ours[] = {"/sign_in", "/health", "/nope", "/app.js/", "/index.htm"};
    for (size_t i = 0; i < sizeof not_ours / sizeof not_ours[0]; i++) {
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\n\r\n", not_ours[i]);
        assert_false(answer(w, req, &out));
        assert_int_equal(out.len, 0);
    }
    buf_free(&out);
    web_free(w);
    web_free(NULL);
}

/* Write text to dir/name, replacing it. */
static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* The ETag an answer carries, copied into tag. */
static void etag_in(const buf_t *out, char tag[WEB_ETAG_LEN + 1])
{
    const char *etag = memmem(out->data, out->len, STRLIT("ETag: "));
    assert_non_null(etag);
    memcpy(tag, etag + 6, WEB_ETAG_LEN);
    tag[WEB_ETAG_LEN] = '\0';
}

/* --web-root: 200 with the file, HEAD the same head without it, 304 on a
 * matching If-None-Match (the ETag comes from the file's stat, so neither
 * reads the file), and a rewritten file a new ETag. */
static void test_answer_from_root(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-test-web-XXXXXX";
    assert_non_null(mkdtemp(dir));
    put_file(dir, "a.txt", "hello");
    struct server_config cfg;
    defaults(&cfg);
    cfg.web_root = dir;
    struct web *w = NULL;
    assert_int_equal(web_create(&cfg, &w), 0);
    buf_t out;
    buf_init(&out, 1 << 20);
    assert_true(answer(w, "GET /a.txt HTTP/1.1\r\n\r\n", &out));
    assert_non_null(memmem(out.data, out.len, STRLIT("HTTP/1.1 200 OK\r\n")));
    assert_non_null(memmem(out.data, out.len, STRLIT("Content-Length: 5\r\n")));
    assert_memory_equal(out.data + out.len - 5, "hello", 5);
    char tag[WEB_ETAG_LEN + 1], again[WEB_ETAG_LEN + 1];
    etag_in(&out, tag);
    size_t get_head = out.len - 5;
    char get_copy[2048];
    assert_true(get_head < sizeof get_copy);
    memcpy(get_copy, out.data, get_head);

    assert_true(answer(w, "HEAD /a.txt HTTP/1.1\r\n\r\n", &out));
    assert_int_equal(out.len, get_head);
    assert_memory_equal(out.data, get_copy, get_head);

    char req[256];
    snprintf(req, sizeof req, "GET /a.txt HTTP/1.1\r\nIf-None-Match: W/%s\r\n\r\n", tag);
    assert_true(answer(w, req, &out));
    assert_non_null(memmem(out.data, out.len, STRLIT("HTTP/1.1 304 Not Modified\r\n")));
    assert_non_null(memmem(out.data, out.len, STRLIT("Content-Length: 5\r\n")));
    assert_int_equal((const char *)memmem(out.data, out.len, STRLIT("\r\n\r\n")) + 4 - out.data,
                     (long)out.len);

    /* Rewritten (another size): another ETag, and the old one gets the file. */
    put_file(dir, "a.txt", "hello again");
    assert_true(answer(w, req, &out));
    assert_non_null(memmem(out.data, out.len, STRLIT("HTTP/1.1 200 OK\r\n")));
    assert_memory_equal(out.data + out.len - 11, "hello again", 11);
    etag_in(&out, again);
    assert_string_not_equal(tag, again);

    /* Not a file of the root: the router answers. */
    assert_false(answer(w, "GET /missing.txt HTTP/1.1\r\n\r\n", &out));
    buf_free(&out);
    web_free(w);
    char path[512];
    snprintf(path, sizeof path, "%s/a.txt", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_ok),
        cmocka_unit_test(test_etag_matches),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_answer_builtin),
        cmocka_unit_test(test_answer_from_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
