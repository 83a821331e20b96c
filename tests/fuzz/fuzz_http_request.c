/*
 * fuzz_http_request: libFuzzer target for http_parse_request.
 *
 * Each input is parsed with the server's default limits and every result
 * is checked against the contract of http.h:
 *   - an accepted head is re-read byte by byte: request line, target,
 *     path/query split, each header line and the framing fields must be
 *     exactly what the returned slices and flags say, all inside the head;
 *   - errors carry 400/405/413/431/501 and a one-line reason; a 405 only
 *     for a whole, well-formed request line with an unknown method;
 *   - the same bytes give the same result, at any address;
 *   - prefixes: every prefix shorter than an accepted head needs more, a
 *     longer one gives the same head, a prefix of an input that needs more
 *     needs more, and a prefix of an input that fails needs more or fails
 *     the same way (status and reason: errors come left to right, so the
 *     answer never depends on how the bytes were split into reads);
 *   - an accepted target holds no NUL, CR, LF, SP, HTAB, VT or FF (other
 *     control bytes, DEL and obs-text are allowed: http.h);
 *   - limits: the head fits max_head exactly (one byte less is 431), the
 *     body fits max_body exactly (one byte less is 413), and no limits at
 *     all changes neither an accepted head nor a syntax error;
 *   - http_find_header and http_slice_eq agree with a reference on it.
 *   - the resumable call, fed the input in reads of random sizes, gives
 *     the plain call's answer after every read.
 * Violations abort() with the failed condition on stderr.
 */
#include "fuzz_common.h"
#include "strlit.h"
#include "fuzz_http.h"
#include "http.h"

typedef struct outcome {
    long rc;
    http_error_t err;
    http_request_t req;
} outcome_t;

static void parse(const char *buf, size_t len, const http_limits_t *lim, outcome_t *o)
{
    o->err.status = -1;
    o->err.reason = NULL;
    o->rc = http_parse_request(buf, len, lim, &o->req, &o->err);
}

static const char *method_name(enum http_method m)
{
    switch (m) {
    case HTTP_METHOD_GET:
        return "GET";
    case HTTP_METHOD_POST:
        return "POST";
    case HTTP_METHOD_OPTIONS:
        return "OPTIONS";
    case HTTP_METHOD_HEAD:
        return "HEAD";
    }
    return NULL;
}

/* An accepted head buf[0..rc) re-read against what the parser returned. */
static void check_accepted(const char *buf, size_t len, const http_limits_t *lim,
                           const outcome_t *o)
{
    const http_request_t *r = &o->req;
    size_t head = (size_t)o->rc, ml, p;
    const char *m;

    FUZZ_CHECK(head <= len);
    FUZZ_CHECK(lim == NULL || head <= lim->max_head);
    fuzz_check_head_bytes(buf, head);

    /* METHOD SP target SP HTTP/1.x CRLF */
    m = method_name(r->method);
    FUZZ_CHECK(m != NULL);
    ml = strlen(m);
    FUZZ_CHECK(head > ml + 1 && memcmp(buf, m, ml) == 0 && buf[ml] == ' ');
    FUZZ_CHECK(r->target.ptr == buf + ml + 1);
    FUZZ_CHECK(fuzz_within(r->target.ptr, r->target.len, buf, head));
    FUZZ_CHECK(r->target.len > 0 && r->target.ptr[0] == '/');
    for (size_t i = 0; i < r->target.len; i++)
        FUZZ_CHECK(fuzz_is_target_char((unsigned char)r->target.ptr[i]));
    p = ml + 1 + r->target.len;
    FUZZ_CHECK(p + 11 <= head && memcmp(buf + p, STRLIT(" HTTP/1.")) == 0);
    FUZZ_CHECK(r->minor_version == 0 || r->minor_version == 1);
    FUZZ_CHECK(buf[p + 8] == '0' + r->minor_version);
    FUZZ_CHECK(buf[p + 9] == '\r' && buf[p + 10] == '\n');

    /* path and query split the target at its first '?' */
    FUZZ_CHECK(r->path.ptr == r->target.ptr);
    FUZZ_CHECK(fuzz_within(r->path.ptr, r->path.len, r->target.ptr, r->target.len));
    FUZZ_CHECK(memchr(r->path.ptr, '?', r->path.len) == NULL);
    if (r->has_query) {
        FUZZ_CHECK(r->path.len < r->target.len && r->target.ptr[r->path.len] == '?');
        FUZZ_CHECK(r->query.ptr == r->target.ptr + r->path.len + 1);
        FUZZ_CHECK(r->query.len == r->target.len - r->path.len - 1);
        FUZZ_CHECK(fuzz_within(r->query.ptr, r->query.len, r->target.ptr, r->target.len));
    } else {
        FUZZ_CHECK(r->path.len == r->target.len);
        FUZZ_CHECK(r->query.len == 0);
    }

    fuzz_check_header_lines(buf, head, p + 11, r->headers, r->num_headers);
    bool close = fuzz_check_fields(r->headers, r->num_headers, r->has_content_length,
                                   r->content_length, r->has_content_type, r->content_type,
                                   lim != NULL ? lim->max_body : UINT64_MAX);
    FUZZ_CHECK(r->keep_alive == (r->minor_version == 1 && !close));
    fuzz_check_helpers(r->headers, r->num_headers, r->path);
}

/*
 * A 405 names a whole, well-formed request line with an unknown method:
 * tchar+ SP '/' target-chars SP "HTTP/1.0" or "HTTP/1.1" CRLF. Anything
 * else in the first line is a 400 whatever its first word ("HELLO THERE").
 */
static void check_405(const char *buf, size_t len)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0, m;

    while (i < len && fuzz_is_tchar(b[i]))
        i++;
    m = i;
    FUZZ_CHECK(m > 0 && i < len && b[i] == ' ');
    FUZZ_CHECK(!(m == STRLIT_LEN("GET") && memcmp(buf, STRLIT("GET")) == 0) &&
               !(m == STRLIT_LEN("POST") && memcmp(buf, STRLIT("POST")) == 0) &&
               !(m == STRLIT_LEN("OPTIONS") && memcmp(buf, STRLIT("OPTIONS")) == 0));
    i++;
    FUZZ_CHECK(i < len && b[i] == '/');
    while (i < len && fuzz_is_target_char(b[i]))
        i++;
    FUZZ_CHECK(i + 11 <= len && memcmp(buf + i, STRLIT(" HTTP/1.")) == 0);
    FUZZ_CHECK(b[i + 8] == '0' || b[i + 8] == '1');
    FUZZ_CHECK(b[i + 9] == '\r' && b[i + 10] == '\n');
}

/* What every result must satisfy on its own. */
static void check_outcome(const char *buf, size_t len, const http_limits_t *lim,
                          const outcome_t *o)
{
    if (o->rc == HTTP_PARSE_ERROR) {
        fuzz_check_error(&o->err, true);
        if (o->err.status == 405)
            check_405(buf, len);
    } else if (o->rc == HTTP_NEED_MORE) {
        /* "incomplete but still within limits" */
        FUZZ_CHECK(lim == NULL || len < lim->max_head);
    } else {
        FUZZ_CHECK(o->rc > 0);
        check_accepted(buf, len, lim, o);
    }
}

/* The same result for two buffers holding the same head (offsets compared). */
static bool same(const outcome_t *a, const char *abuf, const outcome_t *b, const char *bbuf)
{
    const http_request_t *x = &a->req, *y = &b->req;

    if (a->rc != b->rc)
        return false;
    if (a->rc == HTTP_PARSE_ERROR)
        return fuzz_error_same(&a->err, &b->err);
    if (a->rc == HTTP_NEED_MORE)
        return true;
    return x->method == y->method && fuzz_slice_same(x->target, abuf, y->target, bbuf) &&
           fuzz_slice_same(x->path, abuf, y->path, bbuf) && x->has_query == y->has_query &&
           x->query.len == y->query.len &&
           (!x->has_query || fuzz_slice_same(x->query, abuf, y->query, bbuf)) &&
           x->minor_version == y->minor_version && x->num_headers == y->num_headers &&
           fuzz_headers_same(x->headers, abuf, y->headers, bbuf, x->num_headers) &&
           x->has_content_length == y->has_content_length &&
           x->content_length == y->content_length &&
           x->has_content_type == y->has_content_type &&
           (!x->has_content_type ||
            fuzz_slice_same(x->content_type, abuf, y->content_type, bbuf)) &&
           x->keep_alive == y->keep_alive;
}

/* Parse a fresh exact-size copy of buf[0..k) and check it on its own. */
static void parse_copy(const char *buf, size_t k, const http_limits_t *lim, outcome_t *o,
                       char **copy)
{
    *copy = fuzz_dup(buf, k);
    parse(*copy, k, lim, o);
    check_outcome(*copy, k, lim, o);
}

/* Parse buf under lim and require the given error status. */
static void expect_error(const char *buf, size_t len, const http_limits_t *lim, int status)
{
    static outcome_t o;
    parse(buf, len, lim, &o);
    check_outcome(buf, len, lim, &o);
    FUZZ_CHECK(o.rc == HTTP_PARSE_ERROR && o.err.status == status);
}

static void expect_same(const char *buf, size_t len, const http_limits_t *lim,
                        const outcome_t *want)
{
    static outcome_t o;
    parse(buf, len, lim, &o);
    check_outcome(buf, len, lim, &o);
    FUZZ_CHECK(same(want, buf, &o, buf));
}

static void check_prefixes(const char *buf, size_t len, const http_limits_t *lim,
                           const outcome_t *full, uint64_t h)
{
    static outcome_t o;
    size_t cut[8], n = 0;
    char *copy;

    if (full->rc > 0) {
        size_t head = (size_t)full->rc;
        cut[n++] = 0;
        cut[n++] = 1;
        cut[n++] = head / 2;
        cut[n++] = head - 1;
        cut[n++] = head - 2;
        cut[n++] = (size_t)(h % head);
        for (size_t i = 0; i < n; i++) {
            parse_copy(buf, cut[i], lim, &o, &copy);
            FUZZ_CHECK(o.rc == HTTP_NEED_MORE);
            free(copy);
        }
        /* bytes after the head (a body, the next request) change nothing */
        size_t more[2] = { head, head + (size_t)((h >> 32) % (len - head + 1)) };
        for (size_t i = 0; i < 2; i++) {
            parse_copy(buf, more[i], lim, &o, &copy);
            FUZZ_CHECK(same(full, buf, &o, copy));
            free(copy);
        }
        return;
    }
    cut[n++] = 0;
    cut[n++] = len / 2;
    cut[n++] = (size_t)(h % (len + 1));
    if (len > 0)
        cut[n++] = len - 1;
    for (size_t i = 0; i < n; i++) {
        parse_copy(buf, cut[i], lim, &o, &copy);
        /* an error is final and a head found stays found, so neither can
         * come before "need more"; before an error only the same error can */
        if (full->rc == HTTP_NEED_MORE)
            FUZZ_CHECK(o.rc == HTTP_NEED_MORE);
        else
            FUZZ_CHECK(o.rc == HTTP_NEED_MORE ||
                       (o.rc == HTTP_PARSE_ERROR && fuzz_error_same(&o.err, &full->err)));
        free(copy);
    }
}

static void check_limits(const char *buf, size_t len, const http_limits_t *srv,
                         const outcome_t *full, uint64_t h)
{
    const http_limits_t unlimited = { SIZE_MAX, UINT64_MAX };
    static outcome_t none;

    parse(buf, len, NULL, &none);
    check_outcome(buf, len, NULL, &none);
    /* a max_head beyond LONG_MAX is clamped, which is the same as no limit */
    expect_same(buf, len, &unlimited, &none);

    if (full->rc > 0) {
        size_t head = (size_t)full->rc;
        uint64_t cl = full->req.content_length;
        http_limits_t l = *srv;

        FUZZ_CHECK(same(full, buf, &none, buf));
        l.max_head = head; /* max_head is inclusive */
        expect_same(buf, len, &l, full);
        l.max_head = head - 1;
        expect_error(buf, len, &l, 431);
        l.max_head = (size_t)(h % (head + 16));
        if (l.max_head >= head)
            expect_same(buf, len, &l, full);
        else
            expect_error(buf, len, &l, 431);
        l = *srv;
        l.max_body = cl; /* max_body is inclusive */
        expect_same(buf, len, &l, full);
        if (cl > 0) {
            l.max_body = cl - 1;
            expect_error(buf, len, &l, 413);
            l.max_body = (h >> 16) % cl;
            expect_error(buf, len, &l, 413);
        }
    } else if (full->rc == HTTP_NEED_MORE) {
        http_limits_t l = *srv;
        FUZZ_CHECK(none.rc == HTTP_NEED_MORE);
        /* once len reaches max_head, an unfinished head is too large */
        l.max_head = len;
        expect_error(buf, len, &l, 431);
        l.max_head = (size_t)(h % (len + 1));
        expect_error(buf, len, &l, 431);
    } else {
        http_limits_t l = *srv;
        if (full->err.status != 413 && full->err.status != 431 && len < srv->max_head)
            FUZZ_CHECK(same(full, buf, &none, buf));
        /* a head that only fails under the limits must exceed one of them */
        if (none.rc > 0)
            FUZZ_CHECK((size_t)none.rc > srv->max_head ||
                       none.req.content_length > srv->max_body);
        /* a smaller head limit can only fail earlier */
        l.max_head = (size_t)(h % ((len < srv->max_head ? len : srv->max_head) + 1));
        parse(buf, len, &l, &none);
        check_outcome(buf, len, &l, &none);
        FUZZ_CHECK(none.rc == HTTP_PARSE_ERROR);
    }
}

/* The calls of fuzz_check_resumed: the last outcome of each. */
static outcome_t resumed, plain_out;

static long resume_call(const char *buf, size_t k, const http_limits_t *lim,
                        http_parse_state_t *st)
{
    resumed.err.status = -1;
    resumed.err.reason = NULL;
    resumed.rc = http_parse_request_resume(buf, k, lim, st, &resumed.req, &resumed.err);
    return resumed.rc;
}

static long plain_call(const char *buf, size_t k, const http_limits_t *lim)
{
    parse(buf, k, lim, &plain_out);
    return plain_out.rc;
}

static bool calls_agree(const char *buf)
{
    return same(&plain_out, buf, &resumed, buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer's buffer is exactly size bytes on the heap: ASan sees overreads. */
    const char *buf = (const char *)data;
    const http_limits_t srv = { FUZZ_SRV_MAX_HEAD, FUZZ_SRV_MAX_BODY };
    static outcome_t full, again;
    uint64_t h = fuzz_hash(data, size, 0);

    parse(buf, size, &srv, &full);
    check_outcome(buf, size, &srv, &full);
    parse(buf, size, &srv, &again);
    FUZZ_CHECK(same(&full, buf, &again, buf));

    check_prefixes(buf, size, &srv, &full, h);
    check_limits(buf, size, &srv, &full, h);
    const fuzz_resume_calls_t calls = {resume_call, plain_call, calls_agree};
    fuzz_check_resumed(buf, size, &srv, h, &calls);
    return 0;
}
