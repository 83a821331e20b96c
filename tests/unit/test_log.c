/*
 * Unit tests of log: log_escape of hostile bytes, log_level_parse, and the
 * records themselves, captured by pointing fd 2 at a pipe: their format (UTC
 * time, level, role), level filtering, errno text, truncation of long
 * records and whole lines from concurrent threads; then the text form of
 * log_event and the JSON form of every record, each line checked by a small
 * strict JSON parser below (no JSON library: the point is to hold the
 * logger's output to the grammar, not to a second implementation's leniency).
 * Last, the sink: each record reaches it once and whole (also from several
 * threads, and while sinks are swapped), NULL restores stderr, and a sink
 * that logs cannot recurse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "strlit.h"

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
    check_escape(STRLIT("GET /sign_in?x HTTP/1.1"), 100, "GET /sign_in?x HTTP/1.1");
    check_escape(STRLIT("a\"b\\c"), 100, "a\\\"b\\\\c");
    check_escape(STRLIT("\r\n\t\0"), 100, "\\x0d\\x0a\\x09\\x00");
    check_escape(STRLIT("\x1f\x7f\x80\xff ~"), 100, "\\x1f\\x7f\\x80\\xff ~");
    check_escape(STRLIT("\xc3\xa9t\xc3\xa9"), 100, "\\xc3\\xa9t\\xc3\\xa9");
    check_escape(STRLIT("%s%n"), 100, "%s%n"); /* kept: escaped text is an argument, never a format */

    /* At most max_in input bytes, then "...". */
    check_escape(STRLIT("abcdef"), 6, "abcdef");
    check_escape(STRLIT("abcdef"), 7, "abcdef");
    check_escape(STRLIT("abcdef"), 5, "abcde...");
    check_escape(STRLIT("abcdef"), 0, "...");
    check_escape(STRLIT("\n\n\n"), 2, "\\x0a\\x0a...");
    check_escape(STRLIT("ab\"cd"), 3, "ab\\\"...");

    /* Appends after what is already there. */
    buf_t b;
    buf_init(&b, 64);
    assert_int_equal(buf_append_str(&b, "x="), 0);
    assert_int_equal(log_escape(&b, STRLIT("\x01y"), 10), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "x=\\x01y", 7);
    buf_free(&b);

    /* Too long for the buffer: an error and nothing half-escaped left. */
    buf_init(&b, 10);
    assert_int_equal(buf_append_str(&b, "ok:"), 0);
    assert_int_equal(log_escape(&b, STRLIT("abcd\n"), 100), -E2BIG); /* 3 + 4 + 4 > 10 */
    assert_int_equal(b.len, 3);
    assert_int_equal(log_escape(&b, STRLIT("abcdefg"), 100), 0);    /* exactly 10 */
    assert_int_equal(b.len, 10);
    buf_reset(&b);
    assert_int_equal(log_escape(&b, STRLIT("abcdefghijk"), 8), -E2BIG); /* 8 + "..." */
    assert_int_equal(b.len, 0);
    assert_int_equal(log_escape(&b, STRLIT("abcdefghijk"), 7), 0);
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
    log_event(LOG_WARN, "ev_w", NULL, "w4");
    log_event(LOG_ERROR, "ev_e", NULL, "e3");
    size_t n;
    char *out = capture_end(&n);
    log_set_level(LOG_INFO);

    assert_int_equal(count_lines(out), 5);
    assert_non_null(strstr(out, " ERROR [lv] ev_e e3\n"));
    assert_null(strstr(out, "w4"));
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
    /* A cut record keeps its error text: it says more than the message's end. */
    char want[160], tmp[128];
    snprintf(want, sizeof want, "...: %s\n", strerror_r(ENOENT, tmp, sizeof tmp));
    assert_true(ends_with(l2, n2, want));

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

static void check_thread_lines(char *out);

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
    check_thread_lines(out);
    free(out);
}

/* out holds log_thread's records of THREADS threads, each whole and each
 * thread's in order. Destroys out's newlines. */
static void check_thread_lines(char *out)
{
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
}

/* ---- a strict JSON checker ---- */

/*
 * RFC 8259's grammar, stricter where the logger promises more: strings hold
 * printable ASCII only (the logger escapes every other byte) and \u escapes
 * stay below 0x100 (it shows bytes, never code points). The top level must
 * be one object with unique keys; their names are collected in order, and
 * one key's string value can be decoded back to bytes.
 */
struct jp {
    const char *p, *end;
    int depth;
    buf_t *keys;      /* top-level keys, each followed by ',' (may be NULL) */
    const char *want; /* a top-level key whose string value is decoded... */
    buf_t *value;     /* ...into this */
    int found;
};

#define JP_MAX_DEPTH 16

static void jp_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int jp_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string; its decoded bytes are appended to out unless out is NULL. */
static int jp_string(struct jp *j, buf_t *out)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            return 0;
        if (c < 0x20 || c >= 0x7f)
            return -1;
        if (c == '\\') {
            if (j->p >= j->end)
                return -1;
            char e = *j->p++;
            switch (e) {
            case '"': case '\\': case '/': c = (unsigned char)e; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                if (j->end - j->p < 4)
                    return -1;
                int v = 0;
                for (int k = 0; k < 4; k++) {
                    int h = jp_hex(j->p[k]);
                    if (h < 0)
                        return -1;
                    v = v * 16 + h;
                }
                j->p += 4;
                if (v > 0xff)
                    return -1;
                c = (unsigned char)v;
                break;
            }
            default:
                return -1;
            }
        }
        if (out && buf_append(out, &c, 1) < 0)
            return -1;
    }
    return -1; /* unterminated */
}

static int jp_digits(struct jp *j)
{
    const char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > start ? 0 : -1;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int jp_number(struct jp *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (j->p >= j->end || *j->p < '1' || *j->p > '9' || jp_digits(j) < 0)
        return -1;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (jp_digits(j) < 0)
            return -1;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (jp_digits(j) < 0)
            return -1;
    }
    return 0;
}

static int jp_literal(struct jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return -1;
    j->p += n;
    return 0;
}

static int jp_value(struct jp *j);

/* An object or an array; at depth 1 an object's keys are recorded. */
static int jp_container(struct jp *j, char open)
{
    char close = open == '{' ? '}' : ']';
    bool top = j->depth == 1 && open == '{';
    j->p++;
    jp_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        if (open == '{') {
            buf_t key;
            buf_init(&key, 4096);
            int rc = jp_string(j, &key);
            bool wanted = false;
            if (rc == 0 && top && j->keys) {
                /* Unique keys: ",name," must not occur in ",keys". */
                buf_t probe;
                buf_init(&probe, 8192);
                rc = buf_printf(&probe, ",%.*s,", (int)key.len, key.data ? key.data : "");
                buf_t hay;
                buf_init(&hay, 65536);
                if (rc == 0)
                    rc = buf_printf(&hay, ",%.*s", (int)j->keys->len,
                                    j->keys->data ? j->keys->data : "");
                if (rc == 0 && memmem(hay.data, hay.len, probe.data, probe.len))
                    rc = -1;
                buf_free(&probe);
                buf_free(&hay);
                if (rc == 0 && key.len)
                    rc = buf_append(j->keys, key.data, key.len);
                if (rc == 0)
                    rc = buf_append(j->keys, STRLIT(","));
            }
            if (rc == 0 && top && j->want && key.len == strlen(j->want) &&
                memcmp(key.data, j->want, key.len) == 0)
                wanted = true;
            buf_free(&key);
            if (rc < 0)
                return -1;
            jp_ws(j);
            if (j->p >= j->end || *j->p != ':')
                return -1;
            j->p++;
            jp_ws(j);
            if (wanted) {
                if (jp_string(j, j->value) < 0)
                    return -1;
                j->found++;
            } else if (jp_value(j) < 0) {
                return -1;
            }
        } else if (jp_value(j) < 0) {
            return -1;
        }
        jp_ws(j);
        if (j->p >= j->end)
            return -1;
        if (*j->p == close) {
            j->p++;
            return 0;
        }
        if (*j->p != ',')
            return -1;
        j->p++;
        jp_ws(j);
    }
}

static int jp_value(struct jp *j)
{
    if (j->p >= j->end)
        return -1;
    switch (*j->p) {
    case '{':
    case '[': {
        if (++j->depth > JP_MAX_DEPTH)
            return -1;
        int rc = jp_container(j, *j->p);
        j->depth--;
        return rc;
    }
    case '"':
        return jp_string(j, NULL);
    case 't':
        return jp_literal(j, "true");
    case 'f':
        return jp_literal(j, "false");
    case 'n':
        return jp_literal(j, "null");
    default:
        return jp_number(j);
    }
}

/*
 * 0 if line[0..len) is exactly one JSON object. keys (may be NULL) gets its
 * top-level keys as "a,b,c,"; if want is set, value gets that key's decoded
 * string and the result is -1 unless the key occurs once with a string.
 */
static int json_check(const char *line, size_t len, buf_t *keys, const char *want, buf_t *value)
{
    struct jp j = {.p = line, .end = line + len, .keys = keys, .want = want, .value = value};
    buf_t own;
    buf_init(&own, 65536);
    if (!j.keys)
        j.keys = &own; /* uniqueness is checked either way */
    jp_ws(&j);
    int rc = j.p < j.end && *j.p == '{' ? jp_value(&j) : -1;
    jp_ws(&j);
    if (rc == 0 && j.p != j.end)
        rc = -1;
    if (rc == 0 && want && j.found != 1)
        rc = -1;
    buf_free(&own);
    return rc;
}

static void test_json_checker(void **state)
{
    (void)state;
    static const char *const good[] = {
        "{}", "{\"a\":1}", " {\"a\" : -0.5e+3 , \"b\":[true,false,null,{\"c\":[]}]} ",
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00ff\\u0041\"}", "{\"a\":0,\"b\":10}",
    };
    static const char *const bad[] = {
        "", "[]", "1", "\"s\"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{a:1}",
        "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":+1}",
        "{\"a\":tru}", "{\"a\":\"x}", "{\"a\":\"\\x41\"}", "{\"a\":\"\\u00f\"}",
        "{\"a\":\"\\u0100\"}", "{\"a\":\"\t\"}", "{\"a\":\"\xc3\xa9\"}", "{\"a\":1}x",
        "{\"a\":1}{}", "{\"a\":1,\"a\":2}", "{\"a\":[1,]}", "{\"a\":'x'}",
        "{\"a\":[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (json_check(good[i], strlen(good[i]), NULL, NULL, NULL) != 0)
            fail_msg("rejected %s", good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (json_check(bad[i], strlen(bad[i]), NULL, NULL, NULL) == 0)
            fail_msg("accepted %s", bad[i]);
    }
    buf_t keys, v;
    buf_init(&keys, 256);
    buf_init(&v, 256);
    const char *o = "{\"x\":1,\"s\":\"a\\n\\u0000\\u00ff\",\"y\":{\"s\":2}}";
    assert_int_equal(json_check(o, strlen(o), &keys, "s", &v), 0);
    assert_int_equal(keys.len, 6);
    assert_memory_equal(keys.data, "x,s,y,", 6);
    assert_int_equal(v.len, 4);
    assert_memory_equal(v.data, "a\n\0\xff", 4);
    buf_reset(&v);
    assert_int_equal(json_check(o, strlen(o), NULL, "x", &v), -1); /* not a string */
    assert_int_equal(json_check(o, strlen(o), NULL, "z", &v), -1); /* absent */
    buf_free(&keys);
    buf_free(&v);
}

/* ---- JSON records ---- */

/* The next line of *cursor (without its '\n'), advancing past it. */
static char *next_line(char **cursor, size_t *len)
{
    char *line = *cursor;
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    *len = (size_t)(nl - line);
    *cursor = nl + 1;
    return line;
}

/*
 * Check one JSON record: valid, keys exactly want_keys, a well-formed UTC
 * time, and everything after the time equal to want_rest (if not NULL).
 */
static void check_json_record(const char *line, size_t len, const char *want_keys,
                              const char *want_rest)
{
    buf_t keys;
    buf_init(&keys, 4096);
    if (json_check(line, len, &keys, NULL, NULL) != 0)
        fail_msg("not valid JSON: %.*s", (int)len, line);
    if (keys.len != strlen(want_keys) || memcmp(keys.data, want_keys, keys.len) != 0)
        fail_msg("keys %.*s, want %s", (int)keys.len, keys.data, want_keys);
    buf_free(&keys);

    /* {"time":"2026-11-25T08:00:00.123Z", */
    static const char pre[] = "{\"time\":\"";
    size_t tlen = sizeof pre - 1 + 24 + 2;
    assert_true(len > tlen);
    assert_memory_equal(line, pre, sizeof pre - 1);
    const char *t = line + sizeof pre - 1;
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < 24; i++) {
        if (shape[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != shape[i])
            fail_msg("bad time in %.*s", (int)len, line);
    }
    assert_memory_equal(t + 24, "\",", 2);
    if (want_rest && (len - tlen != strlen(want_rest) ||
                      memcmp(line + tlen, want_rest, len - tlen) != 0))
        fail_msg("record %.*s\n  want ...%s", (int)len, line, want_rest);
}

/* The decoded string value of key in a JSON record (malloc'd buffer in *v). */
static void json_field(const char *line, size_t len, const char *key, buf_t *v)
{
    buf_init(v, 65536);
    if (json_check(line, len, NULL, key, v) != 0)
        fail_msg("no string \"%s\" in %.*s", key, (int)len, line);
}

static void *log_no_role(void *arg)
{
    (void)arg;
    log_info("from a thread without a role");
    return NULL;
}

static void test_json_msg(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_INFO);
    log_set_thread_role("js");
    /* The time is UTC whatever the zone, as in text. */
    setenv("TZ", "XYZ-5", 1);
    tzset();
    time_t before = time(NULL);
    capture_begin();
    log_info("hello %d %s", 5, "world");
    log_warn("quote \" backslash \\ tab\tnl\ncr\r slash / %%");
    log_error("%s", "");
    log_debug("filtered");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, log_no_role, NULL), 0);
    pthread_join(th, NULL);
    log_set_thread_role("r\"1\\");
    log_info("odd role");
    log_set_thread_role("js");
    size_t n;
    char *out = capture_end(&n);
    time_t after = time(NULL);
    unsetenv("TZ");
    tzset();
    log_set_format(LOG_FORMAT_TEXT);

    static const char keys[] = "time,level,role,event,msg,";
    assert_int_equal(count_lines(out), 5);
    char *cur = out;
    size_t len;
    char *line = next_line(&cur, &len);
    check_json_record(line, len, keys,
                      "\"level\":\"info\",\"role\":\"js\",\"event\":\"log\","
                      "\"msg\":\"hello 5 world\"}");
    struct tm tm = {0};
    int ms;
    assert_int_equal(sscanf(line, "{\"time\":\"%4d-%2d-%2dT%2d:%2d:%2d.%3dZ\"", &tm.tm_year,
                            &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms),
                     7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= after + 1);

    line = next_line(&cur, &len);
    check_json_record(line, len, keys,
                      "\"level\":\"warn\",\"role\":\"js\",\"event\":\"log\",\"msg\":"
                      "\"quote \\\" backslash \\\\ tab\\tnl\\ncr\\r slash / %\"}");
    line = next_line(&cur, &len);
    check_json_record(line, len, keys,
                      "\"level\":\"error\",\"role\":\"js\",\"event\":\"log\",\"msg\":\"\"}");
    line = next_line(&cur, &len);
    check_json_record(line, len, keys,
                      "\"level\":\"info\",\"role\":\"-\",\"event\":\"log\","
                      "\"msg\":\"from a thread without a role\"}");
    line = next_line(&cur, &len);
    check_json_record(line, len, keys,
                      "\"level\":\"info\",\"role\":\"r\\\"1\\\\\",\"event\":\"log\","
                      "\"msg\":\"odd role\"}");
    free(out);
}

static void test_json_errno(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_INFO);
    log_set_thread_role("io");
    errno = EAGAIN;
    capture_begin();
    log_errno(LOG_ERROR, ENOENT, "open %s", "/no\"pe");
    log_errno(LOG_WARN, -ECONNRESET, "read");
    log_errno(LOG_DEBUG, EIO, "filtered");
    int e = errno;
    size_t n;
    char *out = capture_end(&n);
    log_set_format(LOG_FORMAT_TEXT);
    assert_int_equal(e, EAGAIN);

    assert_int_equal(count_lines(out), 2);
    char want[512], tmp[128];
    char *cur = out;
    size_t len;
    char *line = next_line(&cur, &len);
    snprintf(want, sizeof want,
             "\"level\":\"error\",\"role\":\"io\",\"event\":\"log\",\"msg\":\"open /no\\\"pe\","
             "\"error\":\"%s\"}", strerror_r(ENOENT, tmp, sizeof tmp));
    check_json_record(line, len, "time,level,role,event,msg,error,", want);
    line = next_line(&cur, &len);
    snprintf(want, sizeof want,
             "\"level\":\"warn\",\"role\":\"io\",\"event\":\"log\",\"msg\":\"read\","
             "\"error\":\"%s\"}", strerror_r(ECONNRESET, tmp, sizeof tmp));
    check_json_record(line, len, "time,level,role,event,msg,error,", want);
    free(out);
}

static void test_json_event_fields(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_INFO);
    log_set_thread_role("w");
    static const char path[] = "/a\"b\\c\n\x01\xff \xc3\xa9?q=1";
    struct log_fields all = {
        .peer_id = 7, .to_id = UINT64_MAX, .remote = "[::1]:443", .method = "GET",
        .path = path, .path_len = sizeof path - 1, .status = 404, .bytes = 12,
        .duration_us = 345,
    };
    struct log_fields none = {0};
    struct log_fields some = {.peer_id = 3, .remote = "127.0.0.1:5000"};
    struct log_fields nul_path = {.path = "a\0b", .path_len = 3};
    capture_begin();
    log_event(LOG_INFO, "access", &all, "%s done", "GET");
    log_event(LOG_WARN, "sign_out", NULL, "bye");
    log_event(LOG_WARN, "sign_out", &none, "bye");
    log_event(LOG_INFO, "sign_in", &some, "member %d signed in", 3);
    log_event(LOG_INFO, "e\"v", &nul_path, "x");
    log_event(LOG_DEBUG, "filtered", &all, "not shown");
    size_t n;
    char *out = capture_end(&n);
    log_set_format(LOG_FORMAT_TEXT);

    assert_int_equal(count_lines(out), 5);
    char *cur = out;
    size_t len;
    char *line = next_line(&cur, &len);
    check_json_record(line, len,
                      "time,level,role,event,peer_id,to_id,remote,method,path,status,bytes,"
                      "duration_us,msg,",
                      "\"level\":\"info\",\"role\":\"w\",\"event\":\"access\",\"peer_id\":7,"
                      "\"to_id\":18446744073709551615,\"remote\":\"[::1]:443\",\"method\":\"GET\","
                      "\"path\":\"/a\\\"b\\\\c\\n\\u0001\\u00ff \\u00c3\\u00a9?q=1\","
                      "\"status\":404,\"bytes\":12,\"duration_us\":345,\"msg\":\"GET done\"}");
    buf_t v;
    json_field(line, len, "path", &v); /* byte-wise: decodes to the very bytes */
    assert_int_equal(v.len, sizeof path - 1);
    assert_memory_equal(v.data, path, sizeof path - 1);
    buf_free(&v);

    for (int i = 0; i < 2; i++) {
        line = next_line(&cur, &len);
        check_json_record(line, len, "time,level,role,event,msg,",
                          "\"level\":\"warn\",\"role\":\"w\",\"event\":\"sign_out\","
                          "\"msg\":\"bye\"}");
    }
    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,peer_id,remote,msg,",
                      "\"level\":\"info\",\"role\":\"w\",\"event\":\"sign_in\",\"peer_id\":3,"
                      "\"remote\":\"127.0.0.1:5000\",\"msg\":\"member 3 signed in\"}");
    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,path,msg,",
                      "\"level\":\"info\",\"role\":\"w\",\"event\":\"e\\\"v\","
                      "\"path\":\"a\\u0000b\",\"msg\":\"x\"}");
    free(out);
}

static void test_json_escaping(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_INFO);
    log_set_thread_role("esc");

    /* Every byte but NUL (a C string's end) in a message, every byte in a path. */
    char all[256];
    for (int i = 0; i < 255; i++)
        all[i] = (char)(i + 1);
    all[255] = '\0';
    char every[256];
    for (int i = 0; i < 256; i++)
        every[i] = (char)i;
    struct log_fields f = {.path = every, .path_len = sizeof every};

    /* log_escape's output (backslashes) travels inside a JSON string. */
    static const char hostile[] = "a\"\n\xff\\";
    buf_t esc;
    buf_init(&esc, 256);
    assert_int_equal(log_escape(&esc, hostile, sizeof hostile - 1, 100), 0);
    assert_int_equal(esc.len, 13);
    assert_memory_equal(esc.data, "a\\\"\\x0a\\xff\\\\", 13);

    char long_path[300];
    memset(long_path, 'p', sizeof long_path);
    struct log_fields lp = {.path = long_path, .path_len = sizeof long_path};

    capture_begin();
    log_info("%s", all);
    log_event(LOG_INFO, "bytes", &f, "every byte in the path");
    log_info("got %.*s", (int)esc.len, esc.data);
    log_info("ctl \x01\x1f\x7f\x80\xff\b\f end");
    log_event(LOG_INFO, "long_path", &lp, "cut path");
    size_t n;
    char *out = capture_end(&n);
    log_set_format(LOG_FORMAT_TEXT);

    assert_int_equal(count_lines(out), 5);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c != '\n' && (c < 0x20 || c >= 0x7f))
            fail_msg("byte 0x%02x in the JSON output", c);
    }
    char *cur = out;
    size_t len;
    buf_t v;

    char *line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,msg,", NULL);
    json_field(line, len, "msg", &v);
    assert_int_equal(v.len, 255);
    assert_memory_equal(v.data, all, 255);
    buf_free(&v);

    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,path,msg,", NULL);
    json_field(line, len, "path", &v);
    assert_int_equal(v.len, 256);
    assert_memory_equal(v.data, every, 256);
    buf_free(&v);

    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,msg,",
                      "\"level\":\"info\",\"role\":\"esc\",\"event\":\"log\","
                      "\"msg\":\"got a\\\\\\\"\\\\x0a\\\\xff\\\\\\\\\"}");
    json_field(line, len, "msg", &v); /* reads back as log_escape wrote it */
    assert_int_equal(v.len, 4 + esc.len);
    assert_memory_equal(v.data + 4, esc.data, esc.len);
    buf_free(&v);

    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,msg,",
                      "\"level\":\"info\",\"role\":\"esc\",\"event\":\"log\",\"msg\":"
                      "\"ctl \\u0001\\u001f\\u007f\\u0080\\u00ff\\b\\f end\"}");

    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,path,msg,", NULL);
    json_field(line, len, "path", &v); /* 256 bytes, then "..." */
    assert_int_equal(v.len, 259);
    assert_memory_equal(v.data, long_path, 256);
    assert_memory_equal(v.data + 256, "...", 3);
    buf_free(&v);
    buf_free(&esc);
    free(out);
}

/*
 * Log msg (through "%s") in JSON, check the record is valid, within the
 * limit, and that msg reads back whole, or as a prefix with "..." and
 * "truncated":true. Returns whether it was cut.
 */
static bool check_json_cut(enum log_level level, int errnum, const struct log_fields *f,
                           const char *msg)
{
    capture_begin();
    if (errnum)
        log_errno(level, errnum, "%s", msg);
    else
        log_event(level, "big", f, "%s", msg);
    size_t n;
    char *out = capture_end(&n);
    assert_int_equal(count_lines(out), 1);
    assert_true(n <= RECORD_MAX);
    buf_t keys;
    buf_init(&keys, 4096);
    if (json_check(out, n - 1, &keys, NULL, NULL) != 0)
        fail_msg("not valid JSON: %s", out);
    bool cut = ends_with(out, n, ",\"truncated\":true}\n");
    assert_true(ends_with(keys.data, keys.len, cut ? "msg,truncated," : "msg,") ||
                ends_with(keys.data, keys.len, cut ? "msg,error,truncated," : "msg,error,"));
    buf_free(&keys);

    buf_t v;
    json_field(out, n - 1, "msg", &v);
    size_t mlen = strlen(msg);
    if (cut) {
        assert_true(v.len >= 3 && v.len - 3 < mlen);
        assert_memory_equal(v.data, msg, v.len - 3);
        assert_memory_equal(v.data + v.len - 3, "...", 3);
        /* Cut no earlier than needed: the next escape would not have fit. */
        assert_true(n > RECORD_MAX - 6 - 3 - 1);
    } else {
        assert_int_equal(v.len, mlen);
        assert_memory_equal(v.data, msg, mlen);
    }
    buf_free(&v);
    free(out);
    return cut;
}

static void test_json_truncated(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_INFO);
    log_set_thread_role("big");
    size_t big = 20000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);

    /* Plain letters, then bytes that take 6 each, then 2 each. */
    for (size_t i = 0; i < big; i++)
        msg[i] = (char)('a' + i % 26);
    msg[big] = '\0';
    assert_true(check_json_cut(LOG_INFO, 0, NULL, msg));
    assert_true(check_json_cut(LOG_ERROR, ENOENT, NULL, msg)); /* error kept whole */
    memset(msg, '\x01', big);
    assert_true(check_json_cut(LOG_INFO, 0, NULL, msg));
    memset(msg, '"', big);
    assert_true(check_json_cut(LOG_INFO, 0, NULL, msg));
    /* Long fields leave less room for the message, still a whole object. */
    char path[400];
    memset(path, '\xff', sizeof path);
    struct log_fields f = {.peer_id = 1, .remote = "1.2.3.4:5", .path = path,
                           .path_len = sizeof path, .status = 200};
    assert_true(check_json_cut(LOG_INFO, 0, &f, msg));

    /* Every length around the limit, ending in a plain byte or an escape. */
    bool saw_whole = false, saw_cut = false;
    for (size_t len = 8050; len <= 8200; len++) {
        memset(msg, 'x', len);
        msg[len] = '\0';
        bool c = check_json_cut(LOG_INFO, 0, NULL, msg);
        saw_whole |= !c;
        saw_cut |= c;
        msg[len - 1] = '\n';
        check_json_cut(LOG_INFO, 0, NULL, msg);
        msg[len - 1] = '\x80';
        check_json_cut(LOG_INFO, 0, NULL, msg);
    }
    assert_true(saw_whole && saw_cut);
    log_set_format(LOG_FORMAT_TEXT);
    free(msg);
}

static void test_json_levels(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_thread_role("lv");
    log_set_level(LOG_WARN);
    struct log_fields f = {.peer_id = 9};
    capture_begin();
    log_debug("d1");
    log_info("i1");
    log_event(LOG_INFO, "ev", &f, "i2");
    log_errno(LOG_INFO, EIO, "i3");
    log_warn("w1");
    log_event(LOG_WARN, "ev", &f, "w2");
    log_set_level(LOG_DEBUG);
    log_event(LOG_DEBUG, "ev", &f, "d2");
    size_t n;
    char *out = capture_end(&n);
    log_set_level(LOG_INFO);
    log_set_format(LOG_FORMAT_TEXT);

    assert_int_equal(count_lines(out), 3);
    char *cur = out;
    size_t len;
    char *line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,msg,",
                      "\"level\":\"warn\",\"role\":\"lv\",\"event\":\"log\",\"msg\":\"w1\"}");
    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,peer_id,msg,",
                      "\"level\":\"warn\",\"role\":\"lv\",\"event\":\"ev\",\"peer_id\":9,"
                      "\"msg\":\"w2\"}");
    line = next_line(&cur, &len);
    check_json_record(line, len, "time,level,role,event,peer_id,msg,",
                      "\"level\":\"debug\",\"role\":\"lv\",\"event\":\"ev\",\"peer_id\":9,"
                      "\"msg\":\"d2\"}");
    free(out);
}

/* ---- text form of log_event ---- */

static void test_text_event(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_TEXT);
    log_set_level(LOG_INFO);
    log_set_thread_role("tx");
    static const char path[] = "/a\"b\\c d\n\xff";
    struct log_fields all = {
        .peer_id = 7, .to_id = UINT64_MAX, .remote = "[::1]:443", .method = "GET",
        .path = path, .path_len = sizeof path - 1, .status = 404, .bytes = 12,
        .duration_us = 345,
    };
    struct log_fields some = {.peer_id = 3, .remote = "127.0.0.1:5000"};
    struct log_fields odd = {.remote = "1.2.3.4:5\n", .bytes = 1};
    capture_begin();
    log_event(LOG_INFO, "sign_in", &some, "member %d signed in", 3);
    log_event(LOG_WARN, "access", &all, "%s done", "GET");
    log_event(LOG_INFO, "sign_out", NULL, "bye");
    log_event(LOG_INFO, "tick", NULL, "%s", "");
    log_event(LOG_INFO, "odd", &odd, "x");
    log_event(LOG_DEBUG, "filtered", &some, "not shown");
    size_t n;
    char *out = capture_end(&n);

    assert_int_equal(count_lines(out), 5);
    char *cur = out;
    size_t len;
    static const char *const want[] = {
        "INFO [tx] sign_in peer_id=3 remote=127.0.0.1:5000 member 3 signed in",
        ("WARN [tx] access peer_id=7 to_id=18446744073709551615 remote=[::1]:443 method=GET "
         "path=\"/a\\\"b\\\\c d\\x0a\\xff\" status=404 bytes=12 duration_us=345 GET done"),
        "INFO [tx] sign_out bye",
        "INFO [tx] tick",
        "INFO [tx] odd remote=1.2.3.4:5\\x0a bytes=1 x",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *line = next_line(&cur, &len);
        assert_true(len > 25);
        assert_int_equal(line[23], 'Z');
        if (len - 25 != strlen(want[i]) || memcmp(line + 25, want[i], len - 25) != 0)
            fail_msg("record %.*s\n  want ...%s", (int)len, line, want[i]);
    }
    free(out);

    /* A long one is cut inside its message; its head stays whole. */
    size_t big = 20000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    memset(msg, 'm', big);
    msg[big] = '\0';
    capture_begin();
    log_event(LOG_INFO, "sign_in", &some, "%s", msg);
    out = capture_end(&n);
    assert_int_equal(count_lines(out), 1);
    assert_true(n <= RECORD_MAX && n > RECORD_MAX - 4);
    assert_true(ends_with(out, n, "mmm...\n"));
    assert_non_null(strstr(out, " INFO [tx] sign_in peer_id=3 remote=127.0.0.1:5000 mmm"));
    free(out);
    free(msg);
}

/* ---- the sink ---- */

/* Collects what a sink is given: each call must be one whole record. */
struct collect {
    pthread_mutex_t lock;
    buf_t got;  /* the records, one after another */
    int calls;
    int bad;    /* calls that were not exactly one line */
};

static void collect_init(struct collect *c)
{
    assert_int_equal(pthread_mutex_init(&c->lock, NULL), 0);
    buf_init(&c->got, 1 << 20);
    c->calls = c->bad = 0;
}

static void collect_free(struct collect *c)
{
    buf_free(&c->got);
    pthread_mutex_destroy(&c->lock);
}

/* The text so far, NUL-terminated (for strstr and the line checks). */
static char *collect_text(struct collect *c)
{
    assert_int_equal(buf_append(&c->got, "", 1), 0);
    c->got.len--;
    return c->got.data;
}

static void sink_collect(void *arg, const char *rec, size_t len)
{
    struct collect *c = arg;
    pthread_mutex_lock(&c->lock);
    c->calls++;
    if (len == 0 || memchr(rec, '\n', len) != rec + len - 1)
        c->bad++;
    if (buf_append(&c->got, rec, len) < 0)
        c->bad++;
    pthread_mutex_unlock(&c->lock);
}

/* Whatever a test left behind, the next one logs to stderr. */
static int sink_teardown(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_TEXT);
    return log_set_sink(NULL, NULL);
}

static void test_sink_records(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    log_set_level(LOG_INFO);
    log_set_thread_role("sk");
    capture_begin();
    assert_int_equal(log_set_sink(sink_collect, &c), 0);
    log_info("first %d", 1);
    log_debug("filtered out");
    log_errno(LOG_WARN, -ENOENT, "second");
    struct log_fields f = {.peer_id = 7, .path = "/a b\n", .path_len = 5};
    log_event(LOG_ERROR, "access", &f, "third");
    log_set_format(LOG_FORMAT_JSON);
    log_info("fourth \"q\"");
    log_set_format(LOG_FORMAT_TEXT);
    assert_int_equal(log_set_sink(NULL, NULL), 0);
    log_info("back on stderr");
    size_t n;
    char *out = capture_end(&n);

    /* Each record once, whole, formatted and escaped as on stderr. */
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.calls, 4);
    char *got = collect_text(&c);
    assert_int_equal(count_lines(got), 4);
    char tmp[128];
    char want[256];
    const char *l = got;
    assert_non_null(l = strstr(l, " INFO [sk] first 1\n"));
    snprintf(want, sizeof want, " WARN [sk] second: %s\n", strerror_r(ENOENT, tmp, sizeof tmp));
    assert_non_null(l = strstr(l, want));
    assert_non_null(l = strstr(l, " ERROR [sk] access peer_id=7 path=\"/a b\\x0a\" third\n"));
    assert_non_null(l = strstr(l, "\"level\":\"info\",\"role\":\"sk\",\"event\":\"log\","
                                  "\"msg\":\"fourth \\\"q\\\"\"}\n"));
    assert_null(strstr(got, "filtered out"));
    assert_null(strstr(got, "back on stderr"));

    /* Nothing reached stderr while the sink was set; NULL restored it. */
    assert_int_equal(count_lines(out), 1);
    assert_true(ends_with(out, n, " INFO [sk] back on stderr\n"));
    free(out);
    collect_free(&c);
}

static void test_sink_threads(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    log_set_level(LOG_INFO);
    capture_begin();
    assert_int_equal(log_set_sink(sink_collect, &c), 0);
    pthread_t th[THREADS];
    for (int k = 0; k < THREADS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, log_thread, (void *)(intptr_t)k), 0);
    for (int k = 0; k < THREADS; k++)
        pthread_join(th[k], NULL);
    assert_int_equal(log_set_sink(NULL, NULL), 0);
    size_t n;
    char *out = capture_end(&n);
    assert_int_equal(n, 0);
    free(out);

    assert_int_equal(c.bad, 0);
    assert_int_equal(c.calls, THREADS * PER_THREAD);
    check_thread_lines(collect_text(&c));
    collect_free(&c);
}

/* A sink that breaks the contract: it logs and sets the sink itself. */
static int inner_set_rc;

static void sink_recursive(void *arg, const char *rec, size_t len)
{
    sink_collect(arg, rec, len);
    inner_set_rc = log_set_sink(NULL, NULL);
    log_warn("logged from inside the sink");
}

static void test_sink_no_recursion(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    log_set_level(LOG_INFO);
    log_set_thread_role("rec");
    inner_set_rc = 0;
    capture_begin();
    assert_int_equal(log_set_sink(sink_recursive, &c), 0);
    log_info("outer one");
    log_info("outer two"); /* the sink is still set: the inner call was refused */
    assert_int_equal(log_set_sink(NULL, NULL), 0);
    size_t n;
    char *out = capture_end(&n);

    assert_int_equal(inner_set_rc, -EDEADLK);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.calls, 2); /* only the outer records; no recursion */
    char *got = collect_text(&c);
    assert_non_null(strstr(got, " INFO [rec] outer one\n"));
    assert_non_null(strstr(got, " INFO [rec] outer two\n"));
    assert_null(strstr(got, "inside"));
    /* The inner records went to stderr, once each. */
    assert_int_equal(count_lines(out), 2);
    const char *l = strstr(out, " WARN [rec] logged from inside the sink\n");
    assert_non_null(l);
    assert_non_null(strstr(l + 1, " WARN [rec] logged from inside the sink\n"));
    free(out);
    collect_free(&c);
}

/* A sink that counts its calls and how many are running right now. */
struct counting {
    atomic_int running;
    atomic_int calls;
};

static void sink_count(void *arg, const char *rec, size_t len)
{
    struct counting *k = arg;
    (void)rec;
    (void)len;
    atomic_fetch_add(&k->running, 1);
    sched_yield(); /* widen the window a swap must wait out */
    atomic_fetch_add(&k->calls, 1);
    atomic_fetch_sub(&k->running, 1);
}

static atomic_int swap_done; /* logging threads that are finished */

static void *swap_thread(void *arg)
{
    log_thread(arg);
    atomic_fetch_add(&swap_done, 1);
    return NULL;
}

/*
 * Swapping sinks while threads log: every record reaches exactly one of
 * them, and once log_set_sink returns the previous sink is never running
 * (what lets a caller free its arg).
 */
static void test_sink_swap_under_load(void **state)
{
    (void)state;
    struct counting a = {0}, b = {0};
    log_set_level(LOG_INFO);
    atomic_store(&swap_done, 0);
    capture_begin();
    assert_int_equal(log_set_sink(sink_count, &a), 0);
    pthread_t th[THREADS];
    for (int k = 0; k < THREADS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, swap_thread, (void *)(intptr_t)k), 0);
    int swaps = 0;
    while (atomic_load(&swap_done) < THREADS || swaps < 100) {
        assert_int_equal(log_set_sink(sink_count, &b), 0);
        assert_int_equal(atomic_load(&a.running), 0);
        assert_int_equal(log_set_sink(sink_count, &a), 0);
        assert_int_equal(atomic_load(&b.running), 0);
        swaps++;
    }
    for (int k = 0; k < THREADS; k++)
        pthread_join(th[k], NULL);
    assert_int_equal(log_set_sink(NULL, NULL), 0);
    assert_int_equal(atomic_load(&a.running), 0);
    size_t n;
    char *out = capture_end(&n);
    assert_int_equal(n, 0);
    free(out);
    assert_int_equal(atomic_load(&a.calls) + atomic_load(&b.calls), THREADS * PER_THREAD);
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
        cmocka_unit_test(test_json_checker),
        cmocka_unit_test(test_json_msg),
        cmocka_unit_test(test_json_errno),
        cmocka_unit_test(test_json_event_fields),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_truncated),
        cmocka_unit_test(test_json_levels),
        cmocka_unit_test(test_text_event),
        cmocka_unit_test_teardown(test_sink_records, sink_teardown),
        cmocka_unit_test_teardown(test_sink_threads, sink_teardown),
        cmocka_unit_test_teardown(test_sink_no_recursion, sink_teardown),
        cmocka_unit_test_teardown(test_sink_swap_under_load, sink_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
