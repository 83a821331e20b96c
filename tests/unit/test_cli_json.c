/*
 * cli_json: the CLI's JSON on jansson and base64 on OpenSSL. What is
 * checked here is what the CLI relies on: commands parsed strictly (flat
 * objects, no duplicates, valid UTF-8, nothing after the object), strings
 * written so that every line is valid JSON whatever the bytes, text for a
 * terminal free of control characters, and strict base64.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli_json.h"
#include "strlit.h"

static const char *str(buf_t *b)
{
    assert_int_equal(buf_append(b, "", 1), 0);
    b->len--;
    return b->data;
}

static char ebuf[256];

static json_t *parse_n(const char *s, size_t n, const char **err)
{
    *err = NULL;
    json_t *o = cli_json_parse_object(s, n, ebuf, sizeof ebuf, err);
    assert_true((o == NULL) == (*err != NULL));
    return o;
}

static json_t *parse(const char *s, const char **err)
{
    return parse_n(s, strlen(s), err);
}

static void test_json_valid(void **state)
{
    (void)state;
    const char *err = NULL;
    json_t *o = parse(" {\"cmd\":\"send\", \"to\" : 2,\"data\":\"hi\","
                      "\"content_type\":\"text/plain\",\"x\":true,\"y\":null,"
                      "\"z\":false,\"f\":-1.5e3,\"neg\":-3}\r\n", &err);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 9);
    assert_string_equal(cli_json_get_string(o, "cmd", NULL), "send");
    uint64_t to = 0;
    assert_int_equal(cli_json_get_id(o, "to", &to), 0);
    assert_int_equal(to, 2);
    size_t len = 0;
    assert_string_equal(cli_json_get_string(o, "data", &len), "hi");
    assert_int_equal(len, 2);
    assert_true(json_is_true(json_object_get(o, "x")));
    assert_true(json_is_null(json_object_get(o, "y")));
    assert_true(json_is_false(json_object_get(o, "z")));
    assert_int_equal(cli_json_get_id(o, "f", &to), -EINVAL);
    assert_int_equal(cli_json_get_id(o, "neg", &to), -EINVAL);
    assert_int_equal(cli_json_get_id(o, "data", &to), -EINVAL);
    assert_int_equal(cli_json_get_id(o, "nope", &to), -ENOENT);
    assert_null(cli_json_get_string(o, "to", NULL));
    json_decref(o);

    o = parse("{}", &err);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
}

static void test_json_escapes(void **state)
{
    (void)state;
    const char *err = NULL;
    size_t len = 0;
    json_t *o = parse("{\"d\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"}", &err);
    assert_string_equal(cli_json_get_string(o, "d", &len), "q\" b\\ s/ \b\f\n\r\t");
    json_decref(o);

    /* \u: ASCII, NUL inside a string, 2- and 3-byte forms, a surrogate pair. */
    o = parse("{\"d\":\"\\u0041\\u0000\\u00e9\\u20AC\\ud83d\\ude00\"}", &err);
    assert_non_null(o);
    const char *d = cli_json_get_string(o, "d", &len);
    static const char want[] = "A\0\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(d, want, len);
    json_decref(o);

    /* Raw UTF-8 passes; keys are decoded too. */
    o = parse("{\"k\\u00e9\":\"caf\xc3\xa9\"}", &err);
    assert_string_equal(cli_json_get_string(o, "k\xc3\xa9", NULL), "caf\xc3\xa9");
    json_decref(o);
}

static void test_json_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "   ",
        "[]",
        "\"cmd\"",
        "{",
        "{\"cmd\"",
        "{\"cmd\":",
        "{\"cmd\":\"x\"",
        "{\"cmd\":\"x\",}",
        "{,}",
        "{\"cmd\" \"x\"}",
        "{cmd:\"x\"}",
        "{'cmd':'x'}",
        "{\"cmd\":\"x\"}}",
        "{\"cmd\":\"x\"} {}",
        "{\"cmd\":\"x\"}x",
        "{\"a\":1,\"a\":2}",          /* duplicate */
        "{\"a\":{\"b\":1}}",         /* nesting */
        "{\"a\":[1]}",
        "{\"a\":01}",
        "{\"a\":+1}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":-}",
        "{\"a\":NaN}",
        "{\"a\":tru}",
        "{\"a\":True}",
        "{\"a\":\"\\x41\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\\ud83d\"}",       /* lone high surrogate */
        "{\"a\":\"\\ude00\"}",       /* lone low surrogate */
        "{\"a\":\"\\ud83d\\u0041\"}",
        "{\"a\":\"tab\there\"}",     /* raw control character */
        "{\"a\":\"nl\nhere\"}",
        "{\"a\":\"\xc3\"}",           /* truncated UTF-8 */
        "{\"a\":\"\xc0\xaf\"}",       /* overlong */
        "{\"a\":\"\xed\xa0\x80\"}",   /* encoded surrogate */
        "{\"a\":\"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
        "{\"a\":\"\xff\"}",
        "{\"a\":\"unterminated}",
        "{\"a\":\"x\\",
        "{\"to\":18446744073709551616}", /* beyond any id */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *err = NULL;
        json_t *o = parse(bad[i], &err);
        if (o)
            fail_msg("accepted bad JSON #%zu: %s", i, bad[i]);
    }
    /* A NUL byte inside the line is not JSON either. */
    const char *err;
    assert_null(parse_n(STRLIT("{\"a\":1}\0"), &err));
    /* The reasons the CLI shows (the --json tests pin these two). */
    assert_null(parse("this is not json", &err));
    assert_string_equal(err, "not a JSON object");
    assert_null(parse("[1]", &err));
    assert_string_equal(err, "not a JSON object");
    assert_null(parse("{\"cmd\":\"send\",\"data\":{\"nested\":1}}", &err));
    assert_string_equal(err, "nested objects and arrays are not supported");
}

static void test_json_every_truncation(void **state)
{
    (void)state;
    static const char ok[] = "{\"cmd\":\"send\",\"to\":12,\"data\":\"a\\u00e9\\n\",\"n\":null}";
    const char *err;
    for (size_t i = 0; i < sizeof ok - 1; i++)
        assert_null(parse_n(ok, i, &err));
    json_t *o = parse_n(ok, sizeof ok - 1, &err);
    assert_non_null(o);
    json_decref(o);
}

static void test_json_output(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(cli_json_append_string(&b, STRLIT("a\"b\\c/\n\r\t\b\f"), false), 0);
    assert_string_equal(str(&b), "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\"");
    buf_reset(&b);
    static const char ctl[] = {0, 1, 0x1f};
    assert_int_equal(cli_json_append_string(&b, ctl, 3, false), 0);
    assert_string_equal(str(&b), "\"\\u0000\\u0001\\u001F\"");
    buf_reset(&b);
    /* Valid UTF-8 kept; invalid bytes become U+FFFD each. */
    assert_int_equal(cli_json_append_string(&b, STRLIT("\xc3\xa9\xe2\x82\xac\xc2\x9b\x7f\xff\xc3"),
                                            false), 0);
    assert_string_equal(str(&b), "\"\xc3\xa9\xe2\x82\xac\xc2\x9b\x7f\xef\xbf\xbd\xef\xbf\xbd\"");
    buf_reset(&b);
    /* For a terminal, DEL and the C1 controls (CSI: U+009B) go as well. */
    assert_int_equal(cli_json_append_string(&b, STRLIT("\xc3\xa9\xc2\x9b[31m\x7f!\xed\xa0\x80"),
                                            true), 0);
    assert_string_equal(str(&b), "\"\xc3\xa9\xef\xbf\xbd[31m\xef\xbf\xbd!\xef\xbf\xbd\xef\xbf\xbd"
                                 "\xef\xbf\xbd\"");
    buf_reset(&b);
    assert_int_equal(cli_json_append_string(&b, "", 0, true), 0);
    assert_string_equal(str(&b), "\"\"");

    /* Round trip: every escaped string parses back to its bytes. */
    char all[128];
    for (int i = 0; i < 128; i++)
        all[i] = (char)i;
    buf_reset(&b);
    buf_append_str(&b, "{\"d\":");
    assert_int_equal(cli_json_append_string(&b, all, sizeof all, false), 0);
    buf_append_str(&b, "}");
    const char *err;
    json_t *o = parse_n(b.data, b.len, &err);
    assert_non_null(o);
    size_t len;
    const char *d = cli_json_get_string(o, "d", &len);
    assert_int_equal(len, sizeof all);
    assert_memory_equal(d, all, sizeof all);
    json_decref(o);

    /* Objects: compact, members in the order they were set. */
    buf_reset(&b);
    json_t *ev = json_object();
    json_object_set_new(ev, "event", json_string("sent"));
    json_object_set_new(ev, "token", json_integer(1));
    json_object_set_new(ev, "to", json_integer(2));
    json_object_set_new(ev, "ok", json_true());
    json_object_set_new(ev, "n", json_null());
    assert_int_equal(cli_json_dump(&b, ev), 0);
    assert_string_equal(str(&b), "{\"event\":\"sent\",\"token\":1,\"to\":2,\"ok\":true,\"n\":null}");
    assert_int_equal(cli_json_dump(&b, NULL), -ENOMEM);
    buf_free(&b);
}

static void test_base64(void **state)
{
    (void)state;
    static const char *const vec[][2] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    buf_t b;
    buf_init(&b, 1 << 20);
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        buf_reset(&b);
        assert_int_equal(cli_b64_encode(&b, vec[i][0], strlen(vec[i][0])), 0);
        assert_string_equal(str(&b), vec[i][1]);
        buf_reset(&b);
        assert_int_equal(cli_b64_decode(&b, vec[i][1], strlen(vec[i][1])), 0);
        assert_string_equal(str(&b), vec[i][0]);
    }
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    buf_t enc;
    buf_init(&enc, 1 << 20);
    assert_int_equal(cli_b64_encode(&enc, all, sizeof all), 0);
    buf_reset(&b);
    assert_int_equal(cli_b64_decode(&b, enc.data, enc.len), 0);
    assert_int_equal(b.len, 256);
    assert_memory_equal(b.data, all, 256);
    buf_free(&enc);

    static const char *const bad[] = {"Zg", "Zg=", "Z===", "Zh==", "Zm9=", "Zm 9v", "Zm9v\n",
                                      "Zg==Zg==", "=Zg=", "Zm-v", "Zm9v====", "Z=g=", " Zm9v",
                                      "Zm9v    "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_reset(&b);
        buf_append_str(&b, "keep");
        if (cli_b64_decode(&b, bad[i], strlen(bad[i])) != -EINVAL)
            fail_msg("accepted bad base64 \"%s\"", bad[i]);
        assert_int_equal(b.len, 4); /* nothing appended */
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_valid),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_json_every_truncation),
        cmocka_unit_test(test_json_output),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
