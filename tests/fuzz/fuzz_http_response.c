/*
 * fuzz_http_response: libFuzzer target for http_parse_response (what the
 * client and the load generator read from a server).
 *
 * The same invariants as fuzz_http_request, for the status line:
 *   - an accepted head is re-read byte by byte: "HTTP/1.x", a three-digit
 *     status 100..999, the reason slice, each header line and the framing
 *     fields (Content-Length, Content-Type, Connection: close);
 *   - errors carry status 0 and a one-line reason;
 *   - determinism, prefixes (shorter than the head: need more; longer:
 *     the same head; never success before need-more or failure, and before
 *     a failure only need-more or the same failure) and exact max_head /
 *     max_body boundaries;
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
    http_response_t resp;
} outcome_t;

static void parse(const char *buf, size_t len, const http_limits_t *lim, outcome_t *o)
{
    o->err.status = -1;
    o->err.reason = NULL;
    o->rc = http_parse_response(buf, len, lim, &o->resp, &o->err);
}

static void check_accepted(const char *buf, size_t len, const http_limits_t *lim,
                           const outcome_t *o)
{
    const http_response_t *r = &o->resp;
    size_t head = (size_t)o->rc, p;
    int status = 0;

    FUZZ_CHECK(head <= len);
    FUZZ_CHECK(lim == NULL || head <= lim->max_head);
    fuzz_check_head_bytes(buf, head);

    /* HTTP/1.x SP 3DIGIT [SP reason] CRLF */
    FUZZ_CHECK(head >= 16 && memcmp(buf, STRLIT("HTTP/1.")) == 0);
    FUZZ_CHECK(r->minor_version == 0 || r->minor_version == 1);
    FUZZ_CHECK(buf[7] == '0' + r->minor_version);
    FUZZ_CHECK(buf[8] == ' ');
    FUZZ_CHECK(buf[9] >= '1' && buf[9] <= '9');
    for (size_t i = 9; i < 12; i++) {
        FUZZ_CHECK(buf[i] >= '0' && buf[i] <= '9');
        status = status * 10 + (buf[i] - '0');
    }
    FUZZ_CHECK(r->status == status && status >= 100 && status <= 999);
    if (buf[12] == '\r') {
        FUZZ_CHECK(r->reason.len == 0);
        p = 12;
    } else {
        FUZZ_CHECK(buf[12] == ' ');
        FUZZ_CHECK(r->reason.ptr == buf + 13);
        FUZZ_CHECK(fuzz_within(r->reason.ptr, r->reason.len, buf, head));
        for (size_t i = 0; i < r->reason.len; i++)
            FUZZ_CHECK(fuzz_is_value_char((unsigned char)r->reason.ptr[i]));
        p = 13 + r->reason.len;
    }
    FUZZ_CHECK(p + 2 <= head && buf[p] == '\r' && buf[p + 1] == '\n');

    fuzz_check_header_lines(buf, head, p + 2, r->headers, r->num_headers);
    bool close = fuzz_check_fields(r->headers, r->num_headers, r->has_content_length,
                                   r->content_length, r->has_content_type, r->content_type,
                                   lim != NULL ? lim->max_body : UINT64_MAX);
    FUZZ_CHECK(r->connection_close == close);
    fuzz_check_helpers(r->headers, r->num_headers, r->reason);
}

static void check_outcome(const char *buf, size_t len, const http_limits_t *lim,
                          const outcome_t *o)
{
    if (o->rc == HTTP_PARSE_ERROR) {
        fuzz_check_error(&o->err, false);
    } else if (o->rc == HTTP_NEED_MORE) {
        FUZZ_CHECK(lim == NULL || len < lim->max_head);
    } else {
        FUZZ_CHECK(o->rc > 0);
        check_accepted(buf, len, lim, o);
    }
}

static bool same(const outcome_t *a, const char *abuf, const outcome_t *b, const char *bbuf)
{
    const http_response_t *x = &a->resp, *y = &b->resp;

    if (a->rc != b->rc)
        return false;
    if (a->rc == HTTP_PARSE_ERROR)
        return fuzz_error_same(&a->err, &b->err);
    if (a->rc == HTTP_NEED_MORE)
        return true;
    return x->minor_version == y->minor_version && x->status == y->status &&
           x->reason.len == y->reason.len &&
           (x->reason.len == 0 || fuzz_slice_same(x->reason, abuf, y->reason, bbuf)) &&
           x->num_headers == y->num_headers &&
           fuzz_headers_same(x->headers, abuf, y->headers, bbuf, x->num_headers) &&
           x->has_content_length == y->has_content_length &&
           x->content_length == y->content_length &&
           x->has_content_type == y->has_content_type &&
           (!x->has_content_type ||
            fuzz_slice_same(x->content_type, abuf, y->content_type, bbuf)) &&
           x->connection_close == y->connection_close;
}

static void parse_copy(const char *buf, size_t k, const http_limits_t *lim, outcome_t *o,
                       char **copy)
{
    *copy = fuzz_dup(buf, k);
    parse(*copy, k, lim, o);
    check_outcome(*copy, k, lim, o);
}

/* Responses fail without a status, so only the failure itself is expected. */
static void expect_error(const char *buf, size_t len, const http_limits_t *lim)
{
    static outcome_t o;
    parse(buf, len, lim, &o);
    check_outcome(buf, len, lim, &o);
    FUZZ_CHECK(o.rc == HTTP_PARSE_ERROR);
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
        if (full->rc == HTTP_NEED_MORE)
            FUZZ_CHECK(o.rc == HTTP_NEED_MORE);
        else /* need more, or already the same error (status and reason) */
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
    expect_same(buf, len, &unlimited, &none);

    if (full->rc > 0) {
        size_t head = (size_t)full->rc;
        uint64_t cl = full->resp.content_length;
        http_limits_t l = *srv;

        FUZZ_CHECK(same(full, buf, &none, buf));
        l.max_head = head;
        expect_same(buf, len, &l, full);
        l.max_head = head - 1;
        expect_error(buf, len, &l);
        l.max_head = (size_t)(h % (head + 16));
        if (l.max_head >= head)
            expect_same(buf, len, &l, full);
        else
            expect_error(buf, len, &l);
        l = *srv;
        l.max_body = cl;
        expect_same(buf, len, &l, full);
        if (cl > 0) {
            l.max_body = cl - 1;
            expect_error(buf, len, &l);
            l.max_body = (h >> 16) % cl;
            expect_error(buf, len, &l);
        }
    } else if (full->rc == HTTP_NEED_MORE) {
        http_limits_t l = *srv;
        FUZZ_CHECK(none.rc == HTTP_NEED_MORE);
        l.max_head = len;
        expect_error(buf, len, &l);
        l.max_head = (size_t)(h % (len + 1));
        expect_error(buf, len, &l);
    } else {
        http_limits_t l = *srv;
        /* a head that only fails under the limits must exceed one of them */
        if (none.rc > 0)
            FUZZ_CHECK((size_t)none.rc > srv->max_head ||
                       none.resp.content_length > srv->max_body);
        l.max_head = (size_t)(h % ((len < srv->max_head ? len : srv->max_head) + 1));
        expect_error(buf, len, &l);
    }
}

/* The calls of fuzz_check_resumed: the last outcome of each. */
static outcome_t resumed, plain_out;

static long resume_call(const char *buf, size_t k, const http_limits_t *lim,
                        http_parse_state_t *st)
{
    resumed.err.status = -1;
    resumed.err.reason = NULL;
    resumed.rc = http_parse_response_resume(buf, k, lim, st, &resumed.resp, &resumed.err);
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
