/*
 * Unit tests of cluster_keys: the --cluster URL parser (accepted forms,
 * defaults, every refusal) and the queued-item encoding (round trips with
 * and without a content type, hostile bodies, every truncation and
 * malformed header refused).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cluster_keys.c"

static void url_ok(const char *u, const char *host, unsigned port, int db)
{
    struct ckey_url out;
    const char *why = NULL;
    if (ckey_parse_url(u, &out, &why) != 0)
        fail_msg("%s refused: %s", u, why);
    assert_string_equal(out.host, host);
    assert_int_equal(out.port, port);
    assert_int_equal(out.db, db);
}

static void url_bad(const char *u)
{
    struct ckey_url out;
    const char *why = NULL;
    if (ckey_parse_url(u, &out, &why) != -EINVAL)
        fail_msg("%s accepted", u);
    assert_non_null(why);
}

static void test_url(void **state)
{
    (void)state;
    url_ok("redis://127.0.0.1:6379", "127.0.0.1", 6379, 0);
    url_ok("redis://localhost", "localhost", 6379, 0);
    url_ok("redis://r.example:7000/3", "r.example", 7000, 3);
    url_ok("redis://[::1]:6380/0", "::1", 6380, 0);
    url_ok("redis://[::1]", "::1", 6379, 0);
    url_ok("redis://h:1/", "h", 1, 0);
    url_bad("");
    url_bad("http://h:1");
    url_bad("redis://");
    url_bad("redis://:6379");
    url_bad("redis://h:0");
    url_bad("redis://h:65536");
    url_bad("redis://h:");
    url_bad("redis://h:12x");
    url_bad("redis://h/x");
    url_bad("redis://h/-1");
    url_bad("redis://h/99999999999");
    url_bad("redis://user:pw@h:1");
    url_bad("redis://[::1");
    url_bad("redis://[::1]x");
    url_bad("redis://h h:1");
    url_bad("redis://h\x01:1");
}

static void round_trip(const struct ckey_item *in)
{
    buf_t b;
    buf_init(&b, 1 << 20);
    assert_int_equal(ckey_item_encode(&b, in), 0);
    struct ckey_item out;
    assert_int_equal(ckey_item_decode(b.data, b.len, &out), 0);
    assert_int_equal(out.is_message, in->is_message);
    assert_int_equal(out.pragma, in->pragma);
    assert_int_equal(out.accepted_us, in->accepted_us);
    assert_int_equal(out.has_ctype, in->has_ctype);
    if (in->has_ctype) {
        assert_int_equal(out.ctype_len, in->ctype_len);
        if (in->ctype_len)
            assert_memory_equal(out.ctype, in->ctype, in->ctype_len);
    }
    assert_int_equal(out.body_len, in->body_len);
    if (in->body_len)
        assert_memory_equal(out.body, in->body, in->body_len);
    /* Every truncation is refused, never read past. */
    for (size_t n = 0; n < b.len; n++) {
        struct ckey_item t;
        assert_int_equal(ckey_item_decode(b.data, n, &t), -EINVAL);
    }
    buf_free(&b);
}

static void test_items(void **state)
{
    (void)state;
    static const char hostile[] = "a\nb M 1 2 3 4\n\0\xff-";
    round_trip(&(struct ckey_item){.is_message = true, .pragma = 7, .accepted_us = 123456789,
                                   .has_ctype = true, .ctype = "text/plain", .ctype_len = 10,
                                   .body = "hello", .body_len = 5});
    round_trip(&(struct ckey_item){.is_message = true, .pragma = 2147483647, .has_ctype = false,
                                   .body = hostile, .body_len = sizeof hostile});
    round_trip(&(struct ckey_item){.is_message = true, .pragma = 1, .has_ctype = true,
                                   .ctype = "", .ctype_len = 0, .body = "", .body_len = 0});
    round_trip(&(struct ckey_item){.is_message = false, .pragma = 3, .has_ctype = true,
                                   .ctype = "text/plain", .ctype_len = 10,
                                   .body = "bob,3,1\n", .body_len = 8});
}

/* What the Lua scripts write for a join (note() in cluster.c) decodes. */
static void test_lua_note_form(void **state)
{
    (void)state;
    static const char note[] = "N 12 0 10 9\ntext/plainbob,12,0\n";
    struct ckey_item it;
    assert_int_equal(ckey_item_decode(note, sizeof note - 1, &it), 0);
    assert_false(it.is_message);
    assert_int_equal(it.pragma, 12);
    assert_true(it.has_ctype);
    assert_int_equal(it.body_len, 9);
    assert_memory_equal(it.body, "bob,12,0\n", 9);
}

static void test_items_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "X 1 0 - 0\n",            /* kind */
        "M1 0 - 0\n",             /* separator */
        "M  0 - 0\n",             /* empty pragma */
        "M 1 0 - 1\n",            /* body shorter than said */
        "M 1 0 - 0\nx",           /* body longer than said */
        "M 1 0 5 0\nab",          /* content type past the end */
        "M 1 0 -- 0\n",           /* neither '-' nor a length */
        "M 1 0 - 0",              /* no newline */
        "M 99999999999999999999 0 - 0\n", /* overflow */
        "M -1 0 - 0\n",
        "M 1 0 - +0\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ckey_item it;
        if (ckey_item_decode(bad[i], strlen(bad[i]), &it) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_items),
        cmocka_unit_test(test_lua_note_form),
        cmocka_unit_test(test_items_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
