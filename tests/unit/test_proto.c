/*
 * Unit tests of proto: strict numbers and ids, query-string parameters,
 * member-name sanitising and the "name,id,connected\n" entry lines, with
 * hostile bytes and every truncation of a valid line.
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
#include <sys/mman.h>
#include <unistd.h>

#include "proto.h"
#include "strlit.h"

/* proto_parse_u64 over a C string. */
static int u64(const char *s, uint64_t *out)
{
    return proto_parse_u64(s, strlen(s), out);
}

static int id(const char *s, uint64_t *out)
{
    return proto_parse_id(s, strlen(s), out);
}

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(u64("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(u64("1", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(u64("007", &v), 0); /* digits only is the rule */
    assert_int_equal(v, 7);
    assert_int_equal(u64("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(u64("000000000000000000000018446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);

    v = 99;
    assert_int_equal(u64("18446744073709551616", &v), -ERANGE);
    assert_int_equal(u64("18446744073709551620", &v), -ERANGE);
    assert_int_equal(u64("99999999999999999999", &v), -ERANGE);
    assert_int_equal(u64("184467440737095516150", &v), -ERANGE);
    assert_int_equal(v, 99); /* untouched on error */

    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1a", "a1", "0x10", "1.0",
                         "1,", "\t1", "1\n", "\xd9\xa1", "99999999999999999999x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (u64(bad[i], &v) != -EINVAL)
            fail_msg("\"%s\" was not rejected with -EINVAL", bad[i]);
    }
    assert_int_equal(v, 99);

    /* The length bounds the number: no NUL terminator is needed or read. */
    assert_int_equal(proto_parse_u64("123456", 3, &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(proto_parse_u64(STRLIT("1\0002"), &v), -EINVAL);
    assert_int_equal(proto_parse_u64(NULL, 0, &v), -EINVAL);
}

static void test_parse_id(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(id("1", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(id("007", &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(id("2147483647", &v), 0); /* INT32_MAX */
    assert_true(v == PROTO_MAX_ID);

    v = 99;
    assert_int_equal(id("0", &v), -EINVAL);
    assert_int_equal(id("000", &v), -EINVAL);
    assert_int_equal(id("2147483648", &v), -ERANGE); /* INT32_MAX + 1 */
    assert_int_equal(id("4294967296", &v), -ERANGE);
    assert_int_equal(id("18446744073709551615", &v), -ERANGE);
    assert_int_equal(id("18446744073709551616", &v), -ERANGE);
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1a", "-0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (id(bad[i], &v) != -EINVAL)
            fail_msg("\"%s\" was not rejected with -EINVAL", bad[i]);
    }
    assert_int_equal(v, 99);
}

/* proto_query_get over a C string; the value is copied out as a C string. */
static int qget(const char *q, const char *key, char *val, size_t val_size)
{
    const char *v = NULL;
    size_t vlen = 0;
    int rc = proto_query_get(q, strlen(q), key, &v, &vlen);
    val[0] = '\0';
    if (rc == 1) {
        assert_non_null(v);
        assert_true(v >= q && v + vlen <= q + strlen(q));
        assert_true(vlen < val_size);
        memcpy(val, v, vlen);
        val[vlen] = '\0';
    }
    return rc;
}

static void test_query_get(void **state)
{
    (void)state;
    char v[64];
    const char *q = "peer_id=1&to=22&name=alice";
    assert_int_equal(qget(q, "peer_id", v, sizeof v), 1);
    assert_string_equal(v, "1");
    assert_int_equal(qget(q, "to", v, sizeof v), 1);
    assert_string_equal(v, "22");
    assert_int_equal(qget(q, "name", v, sizeof v), 1);
    assert_string_equal(v, "alice");
    assert_int_equal(qget(q, "peer", v, sizeof v), 0);
    assert_int_equal(qget(q, "peer_id=1", v, sizeof v), 0);
    assert_int_equal(qget(q, "t", v, sizeof v), 0);
    assert_int_equal(qget(q, "alice", v, sizeof v), 0);

    /* Whole-name matches only. */
    assert_int_equal(qget("xpeer_id=1", "peer_id", v, sizeof v), 0);
    assert_int_equal(qget("peer_idx=1", "peer_id", v, sizeof v), 0);
    assert_int_equal(qget("xpeer_id=1&peer_id=5", "peer_id", v, sizeof v), 1);
    assert_string_equal(v, "5");
    assert_int_equal(qget("a=peer_id=3", "peer_id", v, sizeof v), 0);

    /* A key without '=', and an empty value. */
    assert_int_equal(qget("sign_in&peer_id=2", "sign_in", v, sizeof v), 1);
    assert_string_equal(v, "");
    assert_int_equal(qget("peer_id=2&flag", "flag", v, sizeof v), 1);
    assert_string_equal(v, "");
    assert_int_equal(qget("a=&b=1", "a", v, sizeof v), 1);
    assert_string_equal(v, "");
    assert_int_equal(qget("a=1=2", "a", v, sizeof v), 1);
    assert_string_equal(v, "1=2"); /* the first '=' splits */

    /* No decoding is done. */
    assert_int_equal(qget("na%6De=x", "name", v, sizeof v), 0);
    assert_int_equal(qget("name=a%20b+c", "name", v, sizeof v), 1);
    assert_string_equal(v, "a%20b+c");

    /* Duplicates, even with equal values or one without '='. */
    assert_int_equal(qget("a=1&a=2", "a", v, sizeof v), -EEXIST);
    assert_int_equal(qget("a=1&b=2&a=1", "a", v, sizeof v), -EEXIST);
    assert_int_equal(qget("a&a=1", "a", v, sizeof v), -EEXIST);
    assert_int_equal(qget("a=1&a=2", "b", v, sizeof v), 0);

    /* Empty queries and empty parameters. */
    assert_int_equal(qget("", "a", v, sizeof v), 0);
    assert_int_equal(qget("&&", "a", v, sizeof v), 0);
    assert_int_equal(qget("&", "a", v, sizeof v), 0);
    assert_int_equal(qget("&&a=1&&", "a", v, sizeof v), 1);
    assert_string_equal(v, "1");
    assert_int_equal(qget("=1", "a", v, sizeof v), 0);

    /* The length bounds the query. */
    const char *val;
    size_t vlen;
    assert_int_equal(proto_query_get("a=12&b=3", 3, "a", &val, &vlen), 1);
    assert_int_equal(vlen, 1);
    assert_memory_equal(val, "1", 1);
    assert_int_equal(proto_query_get("a=12&b=3", 4, "b", &val, &vlen), 0);
    assert_int_equal(proto_query_get(NULL, 0, "a", &val, &vlen), 0);
}

static void test_name_sanitize(void **state)
{
    (void)state;
    char out[PROTO_MAX_NAME];
    assert_int_equal(proto_name_sanitize("", 0, out), 0);

    assert_int_equal(proto_name_sanitize(STRLIT("alice"), out), 5);
    assert_memory_equal(out, "alice", 5);

    assert_int_equal(proto_name_sanitize(STRLIT("a,b,,c"), out), 6);
    assert_memory_equal(out, "a_b__c", 6);

    const char ctl[] = "a\nb\rc\td\0e\x1f" "f\x7fg ";
    assert_int_equal(proto_name_sanitize(ctl, sizeof ctl - 1, out), sizeof ctl - 1);
    assert_memory_equal(out, "a_b_c_d_e_f_g ", sizeof ctl - 1);

    /* High-bit bytes (UTF-8 and otherwise) are kept as they are. */
    const char hi[] = "caf\xc3\xa9\x80\xff";
    assert_int_equal(proto_name_sanitize(hi, sizeof hi - 1, out), sizeof hi - 1);
    assert_memory_equal(out, hi, sizeof hi - 1);

    /* Printable ASCII other than ',' is kept. */
    char all[95];
    for (int i = 0; i < 95; i++)
        all[i] = (char)(0x20 + i);
    assert_int_equal(proto_name_sanitize(all, sizeof all, out), sizeof all);
    for (int i = 0; i < 95; i++)
        assert_int_equal(out[i], all[i] == ',' ? '_' : all[i]);

    /* 600 bytes are cut to PROTO_MAX_NAME, and only that much is written. */
    char in[600];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (char)('a' + i % 26);
    in[3] = ',';
    in[PROTO_MAX_NAME - 1] = '\x01';
    in[PROTO_MAX_NAME] = ',';
    char *exact = malloc(PROTO_MAX_NAME); /* ASan catches a write past the end */
    assert_non_null(exact);
    assert_int_equal(proto_name_sanitize(in, sizeof in, exact), PROTO_MAX_NAME);
    assert_int_equal(exact[3], '_');
    assert_int_equal(exact[PROTO_MAX_NAME - 1], '_');
    assert_memory_equal(exact + 4, in + 4, PROTO_MAX_NAME - 5);
    free(exact);
    assert_int_equal(proto_name_sanitize(in, PROTO_MAX_NAME, out), PROTO_MAX_NAME);
    assert_int_equal(proto_name_sanitize(in, PROTO_MAX_NAME + 1, out), PROTO_MAX_NAME);
}

static void test_entry_append(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(proto_entry_append(&b, STRLIT("alice"), 1, true), 0);
    assert_int_equal(proto_entry_append(&b, STRLIT("bob@host"), 2147483647, false), 0);
    const char want[] = "alice,1,1\nbob@host,2147483647,0\n";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, sizeof want - 1);
    buf_free(&b);

    /* Too long for the buffer: nothing at all is appended. */
    buf_init(&b, 13);
    assert_int_equal(proto_entry_append(&b, STRLIT("ab"), 7, true), 0); /* "ab,7,1\n" */
    assert_int_equal(proto_entry_append(&b, STRLIT("cd"), 8, true), -E2BIG);
    assert_int_equal(b.len, 7);
    assert_int_equal(proto_entry_append(&b, STRLIT("c"), 8, true), 0); /* exactly 13 */
    assert_int_equal(b.len, 13);
    assert_memory_equal(b.data, "ab,7,1\nc,8,1\n", 13);
    buf_free(&b);
}

static void test_entry_round_trip(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 8192);
    char name[PROTO_MAX_NAME];
    const char raw[] = "we,ird\tname \xc3\xa9\x7f";
    size_t name_len = proto_name_sanitize(raw, sizeof raw - 1, name);
    const uint64_t ids[] = {1, 42, 2147483647};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(proto_entry_append(&b, name, name_len, ids[i], i % 2 == 0), 0);

    proto_entry_t e;
    size_t off = 0;
    for (size_t i = 0; i < 3; i++) {
        long n = proto_entry_parse(b.data + off, b.len - off, &e);
        assert_true(n > 0);
        assert_int_equal(e.name_len, name_len);
        assert_memory_equal(e.name, name, name_len);
        assert_ptr_equal(e.name, b.data + off);
        assert_true(e.id == ids[i]);
        assert_int_equal(e.connected, i % 2 == 0);
        off += (size_t)n;
    }
    assert_int_equal(off, b.len);
    assert_int_equal(proto_entry_parse(b.data + off, 0, &e), 0);
    buf_free(&b);
}

static void test_entry_parse(void **state)
{
    (void)state;
    proto_entry_t e;
    const char ok[] = "alice,12,1\nrest";
    assert_int_equal(proto_entry_parse(ok, sizeof ok - 1, &e), 11);
    assert_int_equal(e.name_len, 5);
    assert_memory_equal(e.name, "alice", 5);
    assert_true(e.id == 12);
    assert_true(e.connected);

    assert_int_equal(proto_entry_parse(STRLIT("a b,7,0\n"), &e), 8);
    assert_int_equal(e.name_len, 3);
    assert_true(e.id == 7);
    assert_false(e.connected);

    /* Every truncation of a valid line is "need more", never an error. */
    for (size_t n = 0; n < 11; n++)
        assert_int_equal(proto_entry_parse(ok, n, &e), 0);
    assert_int_equal(proto_entry_parse(STRLIT("alice,12,1"), &e), 0);
    assert_int_equal(proto_entry_parse("", 0, &e), 0);
    assert_int_equal(proto_entry_parse(NULL, 0, &e), 0);
    assert_int_equal(proto_entry_parse(STRLIT("garbage"), &e), 0); /* no line yet */

    const char *bad[] = {
        "\n",              /* empty line */
        "alice\n",         /* missing fields */
        "alice,12\n",      /* missing connected */
        "alice,12,\n",     /* empty connected */
        ",12,1\n",         /* empty name */
        "alice,,1\n",      /* empty id */
        "alice,x,1\n",     /* non-numeric id */
        "alice,12a,1\n",   /* trailing junk in the id */
        "alice, 12,1\n",   /* space in the id */
        "alice,-1,1\n",    /* sign */
        "alice,0,1\n",     /* id 0 */
        "alice,2147483648,1\n", /* id past PROTO_MAX_ID */
        "alice,99999999999999999999,1\n", /* id past uint64 */
        "alice,12,2\n",    /* connected must be 0 or 1 */
        "alice,12,10\n",   /* ... exactly */
        "alice,12,1 \n",
        "alice,12,1\r\n",  /* no CR */
        "alice,12,1,\n",   /* extra field */
        "al,ice,12,1\n",   /* a ',' in the name */
        "alice,12,,1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long rc = proto_entry_parse(bad[i], strlen(bad[i]), &e);
        if (rc != -EINVAL)
            fail_msg("line %zu (\"%s\") gave %ld, not -EINVAL", i, bad[i], rc);
    }
    /* A bad line is an error even when more bytes follow it. */
    assert_int_equal(proto_entry_parse(STRLIT("alice,12,2\nbob,3,1\n"), &e), -EINVAL);
}

static void test_entry_parse_list(void **state)
{
    (void)state;
    const char list[] = "alice,1,1\nbob,2,0\ncarol \xc3\xa9,2147483647,1\nhalf,3";
    const char *names[] = {"alice", "bob", "carol \xc3\xa9"};
    const uint64_t ids[] = {1, 2, 2147483647};
    const bool conn[] = {true, false, true};
    size_t off = 0;
    size_t count = 0;
    proto_entry_t e;
    long n;
    while ((n = proto_entry_parse(list + off, sizeof list - 1 - off, &e)) > 0) {
        assert_true(count < 3);
        assert_int_equal(e.name_len, strlen(names[count]));
        assert_memory_equal(e.name, names[count], e.name_len);
        assert_true(e.id == ids[count]);
        assert_int_equal(e.connected, conn[count]);
        off += (size_t)n;
        count++;
    }
    assert_int_equal(n, 0); /* "half,3" waits for its newline */
    assert_int_equal(count, 3);
    assert_string_equal(list + off, "half,3");
}

static void test_tokens_hex_and_ct(void **state)
{
    (void)state;
    uint8_t in[4] = {0x00, 0x9f, 0xa0, 0xff}, out[4];
    char hex[9];
    proto_hex_encode(in, 4, hex);
    assert_string_equal(hex, "009fa0ff");
    assert_int_equal(proto_hex_decode(STRLIT("009FA0ff"), out, 4), 0);
    assert_memory_equal(in, out, 4);
    assert_int_equal(proto_hex_decode(STRLIT("009fa0f"), out, 4), -EINVAL);
    assert_int_equal(proto_hex_decode(STRLIT("009fa0fg"), out, 4), -EINVAL);
    assert_int_equal(proto_hex_decode("", 0, out, 4), -EINVAL);
    assert_true(proto_ct_equal("abcd", STRLIT("abcd")));
    assert_false(proto_ct_equal("abcd", STRLIT("abce")));
    assert_false(proto_ct_equal("\x80" "bcd", STRLIT("abcd")));
    assert_true(proto_ct_equal("", "x", 0));
}

/* proto_ct_equal_secret over a C-string given. */
static bool secret_eq(const char *secret, const char *given)
{
    return proto_ct_equal_secret(secret, given, strlen(given));
}

static void test_ct_equal_secret(void **state)
{
    (void)state;
    assert_true(secret_eq("cli-token", "cli-token"));
    assert_true(proto_ct_equal_secret("", "", 0));
    /* Every length mismatch fails, on either side, whatever the prefix. */
    assert_false(secret_eq("cli-token", "cli-toke"));
    assert_false(secret_eq("cli-token", "cli-token-and-more"));
    assert_false(secret_eq("cli-token", "cli-tokenn"));
    assert_false(secret_eq("cli-token", ""));
    assert_false(secret_eq("", "x"));
    assert_false(secret_eq("a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    /* Same length, one byte off: first, middle, last, high bit. */
    assert_false(secret_eq("cli-token", "dli-token"));
    assert_false(secret_eq("cli-token", "cli_token"));
    assert_false(secret_eq("cli-token", "cli-tokeN"));
    assert_false(secret_eq("cli-token", "cli-toke\xee"));
    assert_true(secret_eq("t\xc3\xa9", "t\xc3\xa9"));
    /* A NUL in the given bytes is not the secret's end: "abc\0" is not "abc". */
    assert_false(proto_ct_equal_secret("abc", STRLIT("abc\0")));
    assert_false(proto_ct_equal_secret("abc", STRLIT("abc\0\0\0")));
    assert_false(proto_ct_equal_secret("abc", STRLIT("a\0c")));
    assert_false(proto_ct_equal_secret("", STRLIT("\0")));
    /* Only given_len bytes of given are read. */
    assert_true(proto_ct_equal_secret("abc", "abcdef", 3));
}

/* However long the given bytes, the secret is never read past its NUL: the
 * secret ends a page followed by an inaccessible one. */
static void test_ct_equal_secret_stops_at_nul(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    assert_true(page > 0);
    char *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    char *secret = map + page - 4;
    memcpy(secret, "abc", 4);
    char given[4096];
    memset(given, 'a', sizeof given);
    assert_false(proto_ct_equal_secret(secret, given, sizeof given));
    memcpy(given, STRLIT("abc"));
    assert_false(proto_ct_equal_secret(secret, given, sizeof given));
    assert_true(proto_ct_equal_secret(secret, given, 3));
    assert_false(proto_ct_equal_secret(map + page - 1, given, sizeof given)); /* "" */
    assert_int_equal(munmap(map, 2 * (size_t)page), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_name_sanitize),
        cmocka_unit_test(test_entry_append),
        cmocka_unit_test(test_entry_round_trip),
        cmocka_unit_test(test_entry_parse),
        cmocka_unit_test(test_entry_parse_list),
        cmocka_unit_test(test_tokens_hex_and_ct),
        cmocka_unit_test(test_ct_equal_secret),
        cmocka_unit_test(test_ct_equal_secret_stops_at_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
