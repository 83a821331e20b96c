/*
 * Unit tests of buf: appends and formatted appends up to and across the
 * maximum (exactly max fits, one byte more is refused with nothing
 * appended), growth over many appends, consume, reset and free.
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
#include <unistd.h>

#include "buf.h"
#include "strlit.h"

/* Assert that b holds exactly the string s. */
static void assert_buf_is(const buf_t *b, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(b->len, n);
    if (n)
        assert_memory_equal(b->data, s, n);
}

static void test_init_is_empty(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100);
    assert_int_equal(buf_room(&b), 100);
    buf_free(&b);
}

static void test_append(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 1024);
    assert_int_equal(buf_append(&b, STRLIT("hel")), 0);
    assert_int_equal(buf_append_str(&b, "lo "), 0);
    assert_int_equal(buf_append(&b, NULL, 0), 0); /* zero bytes: a no-op */
    assert_int_equal(buf_append_str(&b, ""), 0);
    assert_int_equal(buf_append_u64(&b, 0), 0);
    assert_int_equal(buf_append_str(&b, " "), 0);
    assert_int_equal(buf_append_u64(&b, 42), 0);
    assert_int_equal(buf_append_str(&b, " "), 0);
    assert_int_equal(buf_append_u64(&b, UINT64_MAX), 0);
    assert_buf_is(&b, "hello 0 42 18446744073709551615");
    assert_int_equal(buf_room(&b), 1024 - b.len);
    /* Binary bytes, including NUL, are kept as they are. */
    buf_reset(&b);
    assert_int_equal(buf_append(&b, STRLIT("a\0b\xff")), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "a\0b\xff", 4);
    buf_free(&b);
}

static void test_exact_max_and_one_more(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 10);
    /* One byte past max in a single append: refused, nothing allocated. */
    assert_int_equal(buf_append(&b, STRLIT("0123456789X")), -E2BIG);
    assert_int_equal(b.len, 0);
    assert_null(b.data);

    assert_int_equal(buf_append(&b, STRLIT("0123456789")), 0);
    assert_buf_is(&b, "0123456789");
    assert_int_equal(buf_room(&b), 0);
    assert_true(b.cap >= b.len && b.cap <= b.max + 1);

    assert_int_equal(buf_append(&b, STRLIT("X")), -E2BIG);
    assert_int_equal(buf_append_str(&b, "X"), -E2BIG);
    assert_int_equal(buf_append_u64(&b, 7), -E2BIG);
    assert_buf_is(&b, "0123456789");

    /* A partial fit is refused whole. */
    buf_reset(&b);
    assert_int_equal(buf_append(&b, STRLIT("012345")), 0);
    assert_int_equal(buf_append(&b, STRLIT("abcde")), -E2BIG);
    assert_buf_is(&b, "012345");
    assert_int_equal(buf_append(&b, STRLIT("abcd")), 0);
    assert_buf_is(&b, "012345abcd");
    buf_free(&b);
}

static void test_max_zero(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 0);
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_int_equal(buf_reserve(&b, 0), 0);
    assert_int_equal(buf_append(&b, STRLIT("x")), -E2BIG);
    assert_int_equal(buf_printf(&b, "%s", ""), 0);
    assert_int_equal(buf_printf(&b, "x"), -E2BIG);
    assert_int_equal(buf_append_u64(&b, 0), -E2BIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_room(&b), 0);
    buf_free(&b);
}

static void test_reserve(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 1000);
    assert_int_equal(buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1000 && b.cap <= 1001);
    assert_int_equal(b.len, 0); /* reserving appends nothing */
    assert_int_equal(buf_reserve(&b, 1001), -E2BIG);
    assert_int_equal(buf_append(&b, STRLIT("abc")), 0);
    assert_int_equal(buf_reserve(&b, 997), 0);
    assert_int_equal(buf_reserve(&b, 998), -E2BIG);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -E2BIG);
    buf_free(&b);

    /* With no practical maximum, len + extra must not wrap around. */
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append(&b, STRLIT("abcde")), 0);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -E2BIG);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 4), -E2BIG);
    assert_int_equal(buf_append(&b, STRLIT("f")), 0);
    assert_buf_is(&b, "abcdef");
    buf_free(&b);
}

static void test_growth_doubles(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 1u << 20);
    assert_int_equal(buf_append(&b, STRLIT("x")), 0);
    assert_int_equal(b.cap, 64); /* the minimum allocation */

    size_t last_cap = b.cap;
    int grew = 0;
    char piece[16];
    for (unsigned i = 1; i < 20000; i++) {
        int n = snprintf(piece, sizeof piece, "%u,", i % 1000);
        assert_int_equal(buf_append(&b, piece, (size_t)n), 0);
        if (b.cap != last_cap) {
            assert_int_equal(b.cap, last_cap * 2);
            last_cap = b.cap;
            grew++;
        }
        assert_true(b.cap >= b.len);
    }
    assert_true(grew >= 10);

    /* Every piece is where it was put. */
    size_t off = 1;
    for (unsigned i = 1; i < 20000; i++) {
        int n = snprintf(piece, sizeof piece, "%u,", i % 1000);
        assert_memory_equal(b.data + off, piece, (size_t)n);
        off += (size_t)n;
    }
    assert_int_equal(off, b.len);
    buf_free(&b);
}

static void test_growth_clamped_to_max(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 100);
    for (int i = 0; i < 10; i++)
        assert_int_equal(buf_append(&b, STRLIT("0123456789")), 0);
    assert_int_equal(b.len, 100);
    assert_true(b.cap >= 100 && b.cap <= 101); /* not 128 */
    assert_int_equal(buf_append(&b, STRLIT("x")), -E2BIG);
    buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(buf_printf(&b, "%d-%s-%c", -12, "ab", 'z'), 0);
    assert_buf_is(&b, "-12-ab-z");
    assert_int_equal(buf_printf(&b, "%s", ""), 0); /* empty output: a no-op */
    assert_int_equal(buf_printf(&b, "|%05u|%zu", 42u, (size_t)7), 0);
    assert_buf_is(&b, "-12-ab-z|00042|7");
    buf_reset(&b);

    /* Longer than the minimum allocation, across a growth. */
    assert_int_equal(buf_printf(&b, "[%300s]", "end"), 0);
    assert_int_equal(b.len, 302);
    assert_int_equal(b.data[0], '[');
    assert_int_equal(b.data[1], ' ');
    assert_memory_equal(b.data + 298, "end]", 4);
    buf_free(&b);
}

static void test_printf_near_limit(void **state)
{
    (void)state;
    buf_t b;

    /* max == the minimum allocation: the NUL needs the byte past max. */
    buf_init(&b, 64);
    assert_int_equal(buf_printf(&b, "%64s", "x"), 0);
    assert_int_equal(b.len, 64);
    assert_int_equal(b.data[63], 'x');
    assert_int_equal(buf_printf(&b, "y"), -E2BIG);
    assert_int_equal(b.len, 64);
    buf_free(&b);

    /* Already allocated to exactly max, then filled by printf. */
    buf_init(&b, 128);
    assert_int_equal(buf_reserve(&b, 128), 0);
    assert_int_equal(buf_append(&b, STRLIT("0123456789")), 0);
    assert_int_equal(buf_printf(&b, "%118s", "z"), 0);
    assert_int_equal(b.len, 128);
    assert_int_equal(b.data[127], 'z');
    assert_memory_equal(b.data, "0123456789", 10);
    buf_free(&b);

    /* Exactly the room fits; one more is refused whole. */
    buf_init(&b, 16);
    assert_int_equal(buf_append(&b, STRLIT("0123456789")), 0);
    assert_int_equal(buf_printf(&b, "%s%d", "abcde", 1234567), -E2BIG);
    assert_buf_is(&b, "0123456789");
    assert_int_equal(buf_printf(&b, "%s%d", "abcde", 7), 0);
    assert_buf_is(&b, "0123456789abcde7");
    assert_int_equal(buf_printf(&b, "%s", "!"), -E2BIG);
    assert_buf_is(&b, "0123456789abcde7");
    buf_free(&b);

    /* A large max, with the text one past it and then exactly at it. */
    buf_init(&b, 5000);
    assert_int_equal(buf_printf(&b, "%5001d", 1), -E2BIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_printf(&b, "%5000d", 1), 0);
    assert_int_equal(b.len, 5000);
    assert_int_equal(b.data[4999], '1');
    assert_true(b.cap <= 5001);
    buf_free(&b);
}

static void test_consume(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 256);
    buf_consume(&b, 0);
    buf_consume(&b, 5); /* on an empty buffer: nothing happens */
    assert_int_equal(b.len, 0);

    assert_int_equal(buf_append_str(&b, "abcdefgh"), 0);
    buf_consume(&b, 0);
    assert_buf_is(&b, "abcdefgh");
    buf_consume(&b, 3);
    assert_buf_is(&b, "defgh");
    assert_int_equal(buf_append_str(&b, "XY"), 0);
    assert_buf_is(&b, "defghXY");
    buf_consume(&b, 7);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append_str(&b, "abc"), 0);
    buf_consume(&b, SIZE_MAX);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_room(&b), 256);

    /* Overlapping move of a large tail. */
    for (int i = 0; i < 25; i++)
        assert_int_equal(buf_append_str(&b, "0123456789"), 0);
    buf_consume(&b, 1);
    assert_int_equal(b.len, 249);
    assert_memory_equal(b.data, "1234567890", 10);
    assert_memory_equal(b.data + 239, "0123456789", 10);
    buf_free(&b);
}

static void test_reset_keeps_storage(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 300);
    assert_int_equal(buf_printf(&b, "%200s", "x"), 0);
    char *data = b.data;
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.max, 300);
    assert_int_equal(buf_room(&b), 300);
    assert_int_equal(buf_append_str(&b, "again"), 0);
    assert_ptr_equal(b.data, data);
    assert_buf_is(&b, "again");
    buf_free(&b);
}

static void test_free_is_safe(void **state)
{
    (void)state;
    buf_free(NULL);

    buf_t b;
    buf_init(&b, 50);
    buf_free(&b); /* never allocated */
    buf_free(&b); /* twice */
    assert_null(b.data);

    assert_int_equal(buf_append_str(&b, "abc"), 0);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 50); /* still initialised, same max */
    assert_int_equal(buf_append_str(&b, "def"), 0);
    assert_buf_is(&b, "def");
    buf_free(&b);
}

/* A pipe holding text, its write end closed (EOF after the text). */
static int pipe_with(const char *text)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    size_t n = strlen(text);
    assert_int_equal(write(p[1], text, n), (ssize_t)n);
    close(p[1]);
    return p[0];
}

static void test_read_fd(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 8);
    assert_int_equal(buf_append_str(&b, "ab"), 0);
    int fd = pipe_with("cdefgh"); /* exactly up to max: appended after "ab" */
    assert_int_equal(buf_read_fd(&b, fd), 0);
    close(fd);
    assert_buf_is(&b, "abcdefgh");
    buf_reset(&b);
    fd = pipe_with("123456789"); /* one byte past max */
    assert_int_equal(buf_read_fd(&b, fd), -E2BIG);
    close(fd);
    assert_int_equal(buf_read_fd(&b, -1), -EBADF);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_exact_max_and_one_more),
        cmocka_unit_test(test_max_zero),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_growth_doubles),
        cmocka_unit_test(test_growth_clamped_to_max),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_near_limit),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_reset_keeps_storage),
        cmocka_unit_test(test_free_is_safe),
        cmocka_unit_test(test_read_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
