/*
 * Unit tests of log: log_escape of hostile bytes, log_level_parse, and the
 * records themselves, captured by pointing fd 2 at a pipe: their format (UTC
 * time, level, role), level filtering, errno text, truncation of long
 * records and whole lines from concurrent threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define RECORD_MAX 8192 /* LOG_RECORD_MAX in log.c */

/* Escape p[0..n) into a fresh buffer and compare with want. */
static void check_escape(const char *p, size_t n, size_t max_in, const char *want)
{
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(log_escape(&b, p, n, max_in), 0);
    size_t wn = strlen(want);
    if (b.len != wn || (wn && memcmp(b.data, want, wn) != 0))
        fail_msg("escaped to \"%.*s\", want \"%s\"", (int)b.len, b.data ? b.data : "", want);
    buf_free(&b);
}

static void test_escape(void **state)
{
    (void)state;
    check_escape("", 0, 100, "");
    check_escape(NULL, 0, 100, "");
    check_escape("GET /sign_in?x HTTP/1.1", 23, 100, "GET /sign_in?x HTTP/1.1");
    check_escape("a\"b\\c", 5, 100, "a\\\"b\\\\c");
    check_escape("\r\n\t\0", 4, 100, "\\x0d\\x0a\\x09\\x00");
    check_escape("\x1f\x7f\x80\xff ~", 6, 100, "\\x1f\\x7f\\x80\\xff ~");
    check_escape("\xc3\xa9t\xc3\xa9", 5, 100, "\\xc3\\xa9t\\xc3\\xa9");
    check_escape("%s%n", 4, 100, "%s%n"); /* kept: escaped text is an argument, never a format */

    /* At most max_in input bytes, then "...". */
    check_escape("abcdef", 6, 6, "abcdef");
    check_escape("abcdef", 6, 7, "abcdef");
    check_escape("abcdef", 6, 5, "abcde...");
    check_escape("abcdef", 6, 0, "...");
    check_escape("\n\n\n", 3, 2, "\\x0a\\x0a...");
    check_escape("ab\"cd", 5, 3, "ab\\\"...");

    /* Appends after what is already there. */
    buf_t b;
    buf_init(&b, 64);
    assert_int_equal(buf_append_str(&b, "x="), 0);
    assert_int_equal(log_escape(&b, "\x01y", 2, 10), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "x=\\x01y", 7);
    buf_free(&b);

    /* Too long for the buffer: an error and nothing half-escaped left. */
    buf_init(&b, 10);
    assert_int_equal(buf_append_str(&b, "ok:"), 0);
    assert_int_equal(log_escape(&b, "abcd\n", 5, 100), -E2BIG); /* 3 + 4 + 4 > 10 */
    assert_int_equal(b.len, 3);
    assert_int_equal(log_escape(&b, "abcdefg", 7, 100), 0);    /* exactly 10 */
    assert_int_equal(b.len, 10);
    buf_reset(&b);
    assert_int_equal(log_escape(&b, "abcdefghijk", 11, 8), -E2BIG); /* 8 + "..." */
    assert_int_equal(b.len, 0);
    assert_int_equal(log_escape(&b, "abcdefghijk", 11, 7), 0);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "abcdefg...", 10);
    buf_free(&b);
}

static void test_level_parse(void **state)
{
    (void)state;
    enum log_level l = LOG_INFO;
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("info", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);

    const char *bad[] = {"", "Error", "DEBUG", "warning", "info ", " info", "inf", "debugx", "0"};
    l = LOG_WARN;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (log_level_parse(bad[i], &l) != -EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
    assert_int_equal(l, LOG_WARN);
}

/* ---- capturing stderr ---- */

static int saved_stderr = -1;
static int pipe_rd = -1;

static void capture_begin(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    pipe_rd = p[0];
}

/* Restore stderr and return everything written meanwhile (malloc'd, NUL-terminated). */
static char *capture_end(size_t *len)
{
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    size_t cap = 1024, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (;;) {
        if (cap - n < 512) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        ssize_t r = read(pipe_rd, out + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(pipe_rd);
    out[n] = '\0';
    *len = n;
    return out;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int ends_with(const char *s, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    return n >= t && memcmp(s + n - t, tail, t) == 0;
}

static void test_record_format(void **state)
{
    (void)state;
    /* A zone far from UTC: a record written in local time would show it. */
    setenv("TZ", "XYZ-5", 1);
    tzset();
    log_set_level(LOG_INFO);
    log_set_thread_role("tester");
    time_t before = time(NULL);
    capture_begin();
    log_info("hello %d %s", 5, "world");
    size_t n;
    char *out = capture_end(&n);
    time_t after = time(NULL);

    assert_int_equal(count_lines(out), 1);
    /* 2026-11-25T08:00:00.123Z INFO [tester] hello 5 world\n */
    assert_true(n > 25);
    int y, mo, d, h, mi, s, ms;
    char tail[128];
    assert_int_equal(sscanf(out, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %127[^\n]",
                            &y, &mo, &d, &h, &mi, &s, &ms, tail), 8);
    assert_int_equal(out[4], '-');
    assert_int_equal(out[10], 'T');
    assert_int_equal(out[19], '.');
    assert_int_equal(out[23], 'Z');
    assert_int_equal(out[24], ' ');
    assert_string_equal(tail, "INFO [tester] hello 5 world");
    assert_true(ms >= 0 && ms <= 999);

    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= after + 1);
    free(out);
    unsetenv("TZ");
    tzset();
}

static void test_levels(void **state)
{
    (void)state;
    log_set_thread_role("lv");
    log_set_level(LOG_WARN);
    capture_begin();
    log_debug("d1");
    log_info("i1");
    log_warn("w1");
    log_error("e1");
    log_set_level(LOG_DEBUG);
    log_debug("d2");
    log_set_level(LOG_ERROR);
    log_warn("w2");
    log_errno(LOG_WARN, ENOENT, "w3");
    log_errno(LOG_ERROR, ENOENT, "e2");
    size_t n;
    char *out = capture_end(&n);
    log_set_level(LOG_INFO);

    assert_int_equal(count_lines(out), 4);
    assert_non_null(strstr(out, " WARN [lv] w1\n"));
    assert_non_null(strstr(out, " ERROR [lv] e1\n"));
    assert_non_null(strstr(out, " DEBUG [lv] d2\n"));
    assert_non_null(strstr(out, " ERROR [lv] e2: "));
    assert_null(strstr(out, "d1"));
    assert_null(strstr(out, "i1"));
    assert_null(strstr(out, "w2"));
    assert_null(strstr(out, "w3"));
    free(out);
}

static void test_errno_text(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    log_set_thread_role("io");
    errno = EAGAIN;
    capture_begin();
    log_errno(LOG_ERROR, ENOENT, "open %s", "/nope");
    log_errno(LOG_WARN, -ECONNRESET, "read"); /* common/ style negative codes */
    log_info("plain");
    int e = errno;
    size_t n;
    char *out = capture_end(&n);
    assert_int_equal(e, EAGAIN); /* logging leaves errno alone */

    char want[256], tmp[128];
    snprintf(want, sizeof want, " ERROR [io] open /nope: %s\n", strerror_r(ENOENT, tmp, sizeof tmp));
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want, " WARN [io] read: %s\n", strerror_r(ECONNRESET, tmp, sizeof tmp));
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, " INFO [io] plain\n"));
    assert_int_equal(count_lines(out), 3);
    free(out);
}

static void test_long_record_truncated(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    log_set_thread_role("big");
    size_t big = 20000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    for (size_t i = 0; i < big; i++)
        msg[i] = (char)('a' + i % 26);
    msg[big] = '\0';

    capture_begin();
    log_info("%s", msg);
    log_errno(LOG_ERROR, ENOENT, "%s", msg);
    log_info("after");
    size_t n;
    char *out = capture_end(&n);

    assert_int_equal(count_lines(out), 3);
    char *l1 = out;
    char *l2 = strchr(l1, '\n') + 1;
    char *l3 = strchr(l2, '\n') + 1;
    size_t n1 = (size_t)(l2 - l1), n2 = (size_t)(l3 - l2);
    assert_true(n1 <= RECORD_MAX && n1 > RECORD_MAX - 16);
    assert_true(n2 <= RECORD_MAX && n2 > RECORD_MAX - 16);
    assert_true(ends_with(l1, n1, "...\n"));
    assert_true(ends_with(l2, n2, "...\n"));

    /* What is kept is the start of the message. */
    const char *body = strstr(l1, "[big] ");
    assert_non_null(body);
    body += 6;
    size_t kept = (size_t)(l2 - body) - 4;
    assert_memory_equal(body, msg, kept);
    assert_non_null(strstr(l3, " INFO [big] after\n"));
    free(out);
    free(msg);
}

#define THREADS 4
#define PER_THREAD 100 /* all of it must fit in the pipe (64 KiB) */

static void *log_thread(void *arg)
{
    static const char *const roles[THREADS] = {"t0", "t1", "t2", "t3"};
    int k = (int)(intptr_t)arg;
    log_set_thread_role(roles[k]);
    for (int i = 0; i < PER_THREAD; i++)
        log_info("record %d of thread %d %s", i, k, "padding padding padding");
    return NULL;
}

static void test_threads_whole_lines(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    pthread_t th[THREADS];
    capture_begin();
    for (int k = 0; k < THREADS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, log_thread, (void *)(intptr_t)k), 0);
    for (int k = 0; k < THREADS; k++)
        pthread_join(th[k], NULL);
    size_t n;
    char *out = capture_end(&n);

    assert_int_equal(count_lines(out), THREADS * PER_THREAD);
    int next[THREADS] = {0};
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        int k, i, k2;
        const char *tail = line + 25;
        assert_int_equal(sscanf(tail, "INFO [t%d] record %d of thread %d padding padding padding",
                                &k, &i, &k2), 3);
        assert_int_equal(k, k2); /* the role is per thread */
        assert_true(k >= 0 && k < THREADS);
        assert_int_equal(i, next[k]); /* each thread's records in order */
        next[k]++;
        line = nl + 1;
    }
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_record_format),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_errno_text),
        cmocka_unit_test(test_long_record_truncated),
        cmocka_unit_test(test_threads_whole_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
