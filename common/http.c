/*
 * http: the strict HTTP/1.x head parser shared by the server and the client.
 *
 * The plain calls re-read the buffer from its first byte. Checks run left
 * to right and an error is reported only once the bytes seen so far cannot
 * begin any acceptable head: every prefix of a valid request therefore
 * yields HTTP_NEED_MORE, while garbage is refused as soon as it arrives
 * instead of after max_head bytes. The _resume calls keep that contract at
 * O(n) over all the reads of a head: a fast path (http_resume_more) looks
 * only at the new bytes and answers "need more" when it can prove the plain
 * call would; anything else (an error, a complete head, the size limit) is
 * left to one run of the plain call, so results and errors never differ
 * from it.
 *
 * The grammar is deliberately narrower than RFC 9112 (CRLF only, no
 * obs-fold, no Transfer-Encoding, single spaces in the first line) because
 * the peers speaking to us are our own client and the stock WebRTC
 * example, and every leniency is a request-smuggling or desync risk. The
 * one place it is wider is the request-target, which takes raw bytes (see
 * http.h): it never frames anything, and the stock client puts unencoded
 * user and host names there.
 */
#include "http.h"
#include "strlit.h"
#include "proto.h"

#include <limits.h>
#include <string.h>

/* Internal result of a parsing step; HTTP_STEP_MORE means "not yet". */
enum { HTTP_STEP_ERROR = -1, HTTP_STEP_MORE = 0, HTTP_STEP_OK = 1 };

/* What the header loop collects; identical for requests and responses. */
typedef struct http_fields {
    http_header_t *headers;
    size_t num_headers;
    bool has_content_length;
    uint64_t content_length;
    bool has_content_type;
    http_slice_t content_type;
    bool connection_close;
} http_fields_t;

/* Response errors carry no status: there is nobody to answer. */
static int http_fail(http_error_t *err, bool is_request, int status, const char *reason)
{
    if (err != NULL) {
        err->status = is_request ? status : 0;
        err->reason = reason;
    }
    return HTTP_STEP_ERROR;
}

/* RFC 9110 tchar; spelled out rather than <ctype.h> to stay locale-free. */
static bool http_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

/*
 * A request-target byte (the rule is written down in http.h). Names are the
 * raw query bytes, and a stock client signs in as "$USERNAME@hostname"
 * without encoding, so a non-ASCII user name (obs-text) or even a control
 * byte must reach the router, which makes names safe. Refused: NUL, which
 * nothing downstream could carry; CR and LF, which end the line; SP, which
 * ends the target; and HTAB, VT and FF, which RFC 9112 section 3 lets a
 * lenient parser treat as SP: accepting them would let a proxy in front of
 * us see a different target than we do.
 */
static bool http_is_target_char(unsigned char c)
{
    switch (c) {
    case '\0': case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
        return false;
    default:
        return true;
    }
}

/* field-vchar, SP, HTAB and obs-text; CTLs (NUL, DEL, CR, LF ...) refused. */
static bool http_is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool http_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char http_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool http_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (http_lower((unsigned char)a[i]) != http_lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

/* Case-insensitive equality of a slice with a literal (header names, tokens). */
static bool http_slice_caseeq(http_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && http_caseeq(s.ptr, lit, n);
}

static http_slice_t http_mkslice(const unsigned char *p, size_t n)
{
    http_slice_t s = { (const char *)p, n };
    return s;
}

/* True when the comma-separated list in s holds token (case-insensitive). */
static bool http_list_has_token(http_slice_t s, const char *token)
{
    size_t i = 0;

    while (i < s.len) {
        size_t start, end;
        while (i < s.len && (http_is_ows((unsigned char)s.ptr[i]) || s.ptr[i] == ','))
            i++;
        start = i;
        while (i < s.len && s.ptr[i] != ',')
            i++;
        end = i;
        while (end > start && http_is_ows((unsigned char)s.ptr[end - 1]))
            end--;
        if (end > start && http_slice_caseeq(http_mkslice((const unsigned char *)s.ptr + start,
                                                          end - start), token))
            return true;
    }
    return false;
}

/* The head may not exceed this many bytes; the return type caps it too. */
static size_t http_max_head(const http_limits_t *lim)
{
    size_t m = lim != NULL ? lim->max_head : SIZE_MAX;
    return m > (size_t)LONG_MAX ? (size_t)LONG_MAX : m;
}

static uint64_t http_max_body(const http_limits_t *lim)
{
    return lim != NULL ? lim->max_body : UINT64_MAX;
}

/*
 * Byte-level checks and the search for the blank line, over the part of
 * the buffer that may still belong to the head: a head that has not ended
 * within max_head bytes is too large whatever follows, so nothing beyond
 * is looked at. *avail is how many bytes the line parsers may read: the
 * head length when OK (blank line found); on MORE, all of what may be
 * head; on ERROR, only the bytes before the offending one, so that the
 * caller can report an earlier syntax error first (see http_scan_then).
 */
static int http_scan_head(const unsigned char *b, size_t len, size_t max_head, bool is_request,
                          size_t *avail, http_error_t *err)
{
    size_t n = len < max_head ? len : max_head;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = b[i];
        *avail = i;
        if (c == '\0')
            return http_fail(err, is_request, 400, "NUL byte in header");
        if (c == '\r') {
            if (i + 1 < len && b[i + 1] != '\n')
                return http_fail(err, is_request, 400, "CR not followed by LF");
        } else if (c == '\n') {
            if (i == 0 || b[i - 1] != '\r')
                return http_fail(err, is_request, 400, "bare LF line ending");
            if (i >= 3 && b[i - 2] == '\n' && b[i - 3] == '\r') {
                *avail = i + 1;
                return HTTP_STEP_OK;
            }
        }
    }
    *avail = n;
    return HTTP_STEP_MORE;
}

/*
 * The result of parsing the lines before a byte the scan refused: a syntax
 * error among them came first and wins, else the scan's error stands. This
 * keeps errors in left-to-right order, so the answer never depends on how
 * the bytes were split into reads ("G\x01T \0" is an invalid method both
 * whole and cut after the \x01). err already holds the scan's error, and
 * the line parsers only write to it when they fail themselves.
 */
static int http_scan_then(int scan_rc, int lines_rc)
{
    if (scan_rc == HTTP_STEP_ERROR)
        return HTTP_STEP_ERROR;
    return lines_rc;
}

/*
 * The line starting at pos within b[0..avail): *eol is where its content
 * ends (its CR, or avail). Returns true when the CRLF is complete; the scan
 * already guaranteed that a CR with a following byte is followed by LF.
 */
static bool http_next_line(const unsigned char *b, size_t pos, size_t avail, size_t *eol)
{
    const unsigned char *cr;

    *eol = avail;
    if (pos >= avail)
        return false;
    cr = memchr(b + pos, '\r', avail - pos);
    if (cr == NULL)
        return false;
    *eol = (size_t)(cr - b);
    return *eol + 1 < avail;
}

/*
 * "HTTP/1.0" or "HTTP/1.1" at the start of p[0..n). OK only with all eight
 * bytes present; a shorter n is MORE while it is still a prefix of one.
 */
static int http_parse_version(const unsigned char *p, size_t n, bool complete, bool is_request,
                              int *minor, http_error_t *err)
{
    static const char prefix[] = "HTTP/1.";
    size_t k = n < sizeof prefix - 1 ? n : sizeof prefix - 1;

    /* A loop, not memcmp: at most 7 bytes, once per parse (and per read of
     * a head that arrives in pieces); p may be NULL when k is 0. */
    for (size_t j = 0; j < k; j++)
        if (p[j] != (unsigned char)prefix[j])
            return http_fail(err, is_request, 400, "invalid HTTP version");
    if (n < sizeof prefix) /* the minor digit has not arrived */
        return complete ? http_fail(err, is_request, 400, "invalid HTTP version")
                        : HTTP_STEP_MORE;
    if (p[7] != '0' && p[7] != '1')
        return http_fail(err, is_request, 400, "invalid HTTP version");
    *minor = p[7] - '0';
    return HTTP_STEP_OK;
}

/*
 * METHOD SP request-target SP HTTP-version, p[0..n) without the CRLF.
 * An unknown method is a 405 only once the whole line has arrived and is
 * well formed: "HELLO THERE" is not a request line at all, so it is a 400
 * (for a syntax error, the first word is no method).
 */
static int http_parse_request_line(const unsigned char *p, size_t n, bool complete,
                                   http_request_t *req, http_error_t *err)
{
    size_t i = 0, t0;
    bool known = true;
    int rc;

    while (i < n && http_is_tchar(p[i]))
        i++;
    if (i == n)
        return complete ? http_fail(err, true, 400, "malformed request line") : HTTP_STEP_MORE;
    if (i == 0 || p[i] != ' ')
        return http_fail(err, true, 400, "invalid method");
    /* Methods are case-sensitive (RFC 9110 9.1): "get" is a different one. */
    if (i == STRLIT_LEN("GET") && memcmp(p, STRLIT("GET")) == 0)
        req->method = HTTP_METHOD_GET;
    else if (i == STRLIT_LEN("POST") && memcmp(p, STRLIT("POST")) == 0)
        req->method = HTTP_METHOD_POST;
    else if (i == STRLIT_LEN("OPTIONS") && memcmp(p, STRLIT("OPTIONS")) == 0)
        req->method = HTTP_METHOD_OPTIONS;
    else if (i == STRLIT_LEN("HEAD") && memcmp(p, STRLIT("HEAD")) == 0)
        req->method = HTTP_METHOD_HEAD;
    else
        known = false;
    i++;

    if (i == n)
        return complete ? http_fail(err, true, 400, "malformed request line") : HTTP_STEP_MORE;
    if (p[i] != '/')
        return http_fail(err, true, 400, "invalid request target");
    t0 = i;
    while (i < n && http_is_target_char(p[i]))
        i++;
    if (i == n)
        return complete ? http_fail(err, true, 400, "missing HTTP version") : HTTP_STEP_MORE;
    if (p[i] != ' ')
        return http_fail(err, true, 400, "invalid request target");
    req->target = http_mkslice(p + t0, i - t0);
    i++;

    rc = http_parse_version(p + i, n - i, complete, true, &req->minor_version, err);
    if (rc != HTTP_STEP_OK)
        return rc;
    if (n - i != 8) /* trailing bytes after the version, e.g. "HTTP/1.10" */
        return http_fail(err, true, 400, "invalid HTTP version");
    if (!complete)
        return HTTP_STEP_MORE;
    if (!known)
        return http_fail(err, true, 405, "method not allowed");
    return HTTP_STEP_OK;
}

/* HTTP-version SP 3DIGIT [SP reason-phrase], p[0..n) without the CRLF. */
static int http_parse_status_line(const unsigned char *p, size_t n, bool complete,
                                  http_response_t *resp, http_error_t *err)
{
    size_t i;
    int rc, status = 0;

    rc = http_parse_version(p, n, complete, false, &resp->minor_version, err);
    if (rc != HTTP_STEP_OK)
        return rc;
    i = 8;
    if (i == n)
        return complete ? http_fail(err, false, 0, "malformed status line") : HTTP_STEP_MORE;
    if (p[i] != ' ')
        return http_fail(err, false, 0, "malformed status line");
    i++;
    for (int k = 0; k < 3; k++, i++) {
        if (i == n)
            return complete ? http_fail(err, false, 0, "invalid status code") : HTTP_STEP_MORE;
        if (p[i] < '0' || p[i] > '9' || (k == 0 && p[i] == '0'))
            return http_fail(err, false, 0, "invalid status code");
        status = status * 10 + (p[i] - '0');
    }
    resp->status = status;
    if (i == n) { /* "HTTP/1.1 200" with no reason at all */
        if (!complete)
            return HTTP_STEP_MORE;
        resp->reason = http_mkslice(p + i, 0);
        return HTTP_STEP_OK;
    }
    if (p[i] != ' ')
        return http_fail(err, false, 0, "invalid status code");
    i++;
    for (size_t j = i; j < n; j++) {
        if (!http_is_value_char(p[j]))
            return http_fail(err, false, 0, "invalid byte in reason phrase");
    }
    if (!complete)
        return HTTP_STEP_MORE;
    resp->reason = http_mkslice(p + i, n - i);
    return HTTP_STEP_OK;
}

/* name ":" OWS value OWS, p[0..n) without the CRLF; n > 0. */
static int http_parse_header_line(const unsigned char *p, size_t n, bool complete,
                                  bool is_request, http_header_t *h, http_error_t *err)
{
    size_t i = 0, v0, v1;

    while (i < n && http_is_tchar(p[i]))
        i++;
    if (i == n)
        return complete ? http_fail(err, is_request, 400, "missing colon in header line")
                        : HTTP_STEP_MORE;
    if (p[i] != ':') {
        /* "Name : v" is refused (RFC 9112 5.1): proxies disagree about it. */
        if (http_is_ows(p[i]))
            return http_fail(err, is_request, 400, "whitespace before header colon");
        return http_fail(err, is_request, 400, "invalid header name");
    }
    if (i == 0)
        return http_fail(err, is_request, 400, "empty header name");
    h->name = http_mkslice(p, i);
    i++;
    while (i < n && http_is_ows(p[i]))
        i++;
    v0 = i;
    for (; i < n; i++) {
        if (!http_is_value_char(p[i]))
            return http_fail(err, is_request, 400, "invalid byte in header value");
    }
    if (!complete)
        return HTTP_STEP_MORE;
    v1 = n;
    while (v1 > v0 && http_is_ows(p[v1 - 1]))
        v1--;
    h->value = http_mkslice(p + v0, v1 - v0);
    return HTTP_STEP_OK;
}

/* The meaning of the few headers that change how the message is framed. */
static int http_apply_header(const http_header_t *h, bool is_request, const http_limits_t *lim,
                             http_fields_t *f, http_error_t *err)
{
    if (http_slice_caseeq(h->name, "Content-Length")) {
        /* Strict decimal (proto_parse_u64): a lenient reading ("+5", " 5",
         * "5x") is how two parsers come to disagree about where a body
         * ends, so anything unusual is refused. */
        uint64_t v;
        if (proto_parse_u64(h->value.ptr, h->value.len, &v) < 0)
            return http_fail(err, is_request, 400, "invalid Content-Length");
        if (f->has_content_length && f->content_length != v)
            return http_fail(err, is_request, 400, "conflicting Content-Length headers");
        f->has_content_length = true;
        f->content_length = v;
        if (v > http_max_body(lim))
            return http_fail(err, is_request, 413,
                             is_request ? "request body too large" : "response body too large");
    } else if (http_slice_caseeq(h->name, "Transfer-Encoding")) {
        /* We only frame bodies by Content-Length; guessing would desync. */
        return http_fail(err, is_request, 501, "Transfer-Encoding not supported");
    } else if (http_slice_caseeq(h->name, "Content-Type")) {
        if (!f->has_content_type && h->value.len > 0) {
            f->has_content_type = true;
            f->content_type = h->value;
        }
    } else if (http_slice_caseeq(h->name, "Connection")) {
        if (http_list_has_token(h->value, "close"))
            f->connection_close = true;
    }
    return HTTP_STEP_OK;
}

/*
 * Header lines from pos up to the blank line, within b[0..avail). On OK,
 * *end is the offset just past the blank line.
 */
static int http_parse_fields(const unsigned char *b, size_t pos, size_t avail, bool is_request,
                             const http_limits_t *lim, http_fields_t *f, size_t *end,
                             http_error_t *err)
{
    for (;;) {
        size_t eol;
        bool complete = http_next_line(b, pos, avail, &eol);
        int rc;

        if (eol == pos) {
            if (!complete) /* nothing, or a lone CR, so far */
                return HTTP_STEP_MORE;
            *end = pos + 2;
            return HTTP_STEP_OK;
        }
        if (http_is_ows(b[pos]))
            return http_fail(err, is_request, 400, "obsolete line folding");
        if (f->num_headers == HTTP_MAX_HEADERS)
            return http_fail(err, is_request, 431, "too many headers");
        http_header_t *h = &f->headers[f->num_headers];
        rc = http_parse_header_line(b + pos, eol - pos, complete, is_request, h, err);
        if (rc != HTTP_STEP_OK)
            return rc;
        f->num_headers++;
        rc = http_apply_header(h, is_request, lim, f, err);
        if (rc != HTTP_STEP_OK)
            return rc;
        pos = eol + 2;
    }
}

static void http_fields_init(http_fields_t *f, http_header_t *headers)
{
    f->headers = headers;
    f->num_headers = 0;
    f->has_content_length = false;
    f->content_length = 0;
    f->has_content_type = false;
    f->content_type = http_mkslice(NULL, 0);
    f->connection_close = false;
}

long http_parse_request(const char *buf, size_t len, const http_limits_t *lim,
                        http_request_t *req, http_error_t *err)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t max_head = http_max_head(lim);
    size_t avail, eol, end = 0;
    http_fields_t f;
    bool complete;
    int scan, rc;

    req->method = 0;
    req->target = req->path = req->query = http_mkslice(NULL, 0);
    req->has_query = false;
    req->minor_version = 0;
    req->keep_alive = false;
    http_fields_init(&f, req->headers);

    scan = http_scan_head(b, len, max_head, true, &avail, err);
    complete = http_next_line(b, 0, avail, &eol);
    rc = http_parse_request_line(b, eol, complete, req, err);
    if (rc == HTTP_STEP_OK)
        rc = http_parse_fields(b, eol + 2, avail, true, lim, &f, &end, err);
    rc = http_scan_then(scan, rc);
    req->num_headers = f.num_headers;
    if (rc == HTTP_STEP_ERROR)
        return HTTP_PARSE_ERROR;
    if (rc == HTTP_STEP_MORE) {
        if (len >= max_head)
            return http_fail(err, true, 431, "request header too large");
        return HTTP_NEED_MORE;
    }

    const char *q = memchr(req->target.ptr, '?', req->target.len);
    if (q != NULL) {
        size_t plen = (size_t)(q - req->target.ptr);
        req->path = http_mkslice((const unsigned char *)req->target.ptr, plen);
        req->query = http_mkslice((const unsigned char *)q + 1, req->target.len - plen - 1);
        req->has_query = true;
    } else {
        req->path = req->target;
        req->query = http_mkslice((const unsigned char *)req->target.ptr + req->target.len, 0);
    }
    req->has_content_length = f.has_content_length;
    req->content_length = f.content_length;
    req->has_content_type = f.has_content_type;
    req->content_type = f.content_type;
    /* HTTP/1.0 keep-alive is an opt-in extension we do not offer. */
    req->keep_alive = req->minor_version == 1 && !f.connection_close;
    return (long)end;
}

long http_parse_response(const char *buf, size_t len, const http_limits_t *lim,
                         http_response_t *resp, http_error_t *err)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t max_head = http_max_head(lim);
    size_t avail, eol, end = 0;
    http_fields_t f;
    bool complete;
    int scan, rc;

    resp->minor_version = 0;
    resp->status = 0;
    resp->reason = http_mkslice(NULL, 0);
    http_fields_init(&f, resp->headers);

    scan = http_scan_head(b, len, max_head, false, &avail, err);
    complete = http_next_line(b, 0, avail, &eol);
    rc = http_parse_status_line(b, eol, complete, resp, err);
    if (rc == HTTP_STEP_OK)
        rc = http_parse_fields(b, eol + 2, avail, false, lim, &f, &end, err);
    rc = http_scan_then(scan, rc);
    resp->num_headers = f.num_headers;
    resp->has_content_length = f.has_content_length;
    resp->content_length = f.content_length;
    resp->has_content_type = f.has_content_type;
    resp->content_type = f.content_type;
    resp->connection_close = f.connection_close;
    if (rc == HTTP_STEP_ERROR)
        return HTTP_PARSE_ERROR;
    if (rc == HTTP_STEP_MORE) {
        if (len >= max_head)
            return http_fail(err, false, 0, "response header too large");
        return HTTP_NEED_MORE;
    }
    return (long)end;
}

/*
 * ---- resumable parsing ----
 *
 * Why this is equivalent to the plain call: its result on buf[0..len) is
 * HTTP_NEED_MORE exactly when len < max_head, the byte scan finds neither a
 * bad byte nor the blank line, every complete line parses, and the last,
 * partial line (up to a CR that ends the buffer) is a valid beginning of a
 * line. Each of those is a property of a prefix that stays true as bytes
 * are appended, until the byte that breaks it: so st keeps how far each
 * has been checked and the phase a partial line is in, and a complete line
 * is parsed once, by the same line parsers the plain call uses.
 */

static void http_state_restart(http_parse_state_t *st)
{
    uint64_t examined = st->examined;
    *st = (http_parse_state_t)HTTP_PARSE_STATE_INIT;
    st->examined = examined;
}

/* Whether a partial request line p[0..n) can still begin a valid one. */
static bool http_request_line_prefix(const unsigned char *p, size_t n, http_parse_state_t *st)
{
    size_t i = st->line_checked;

    if (st->mark1 == 0) { /* in the method */
        while (i < n && http_is_tchar(p[i]))
            i++;
        if (i == n)
            goto more;
        if (i == 0 || p[i] != ' ')
            return false;
        st->mark1 = i++;
    }
    if (st->mark2 == 0) { /* in the target */
        if (i == st->mark1 + 1) {
            if (i == n)
                goto more;
            if (p[i] != '/')
                return false;
            i++;
        }
        while (i < n && http_is_target_char(p[i]))
            i++;
        if (i == n)
            goto more;
        if (p[i] != ' ')
            return false;
        st->mark2 = i++;
    }
    /* The version: at most eight bytes, checked whole each time. */
    size_t v = st->mark2 + 1;
    int minor;
    if (n - v > 8 || http_parse_version(p + v, n - v, false, true, &minor, NULL) ==
                         HTTP_STEP_ERROR)
        return false;
    i = n;
more:
    st->examined += i - st->line_checked;
    st->line_checked = n;
    return true;
}

/* The same for a partial status line (resp is scratch). */
static bool http_status_line_prefix(const unsigned char *p, size_t n, http_parse_state_t *st,
                                    http_response_t *resp)
{
    /* "HTTP/1.1 200 " is 13 bytes; what follows is reason phrase. */
    const size_t fixed = 13;
    size_t i = st->line_checked;

    if (i < fixed) {
        size_t k = n < fixed ? n : fixed;
        if (http_parse_status_line(p, k, false, resp, NULL) == HTTP_STEP_ERROR)
            return false;
        st->examined += k;
        if (n <= fixed) {
            st->line_checked = n;
            return true;
        }
        i = fixed;
    }
    for (; i < n; i++) {
        if (!http_is_value_char(p[i]))
            return false;
    }
    st->examined += n - st->line_checked;
    st->line_checked = n;
    return true;
}

/* The same for a partial header line. */
static bool http_header_line_prefix(const unsigned char *p, size_t n, http_parse_state_t *st)
{
    size_t i = st->line_checked;

    if (n == 0) /* nothing, or a lone CR, so far */
        return true;
    if (http_is_ows(p[0]) || st->num_headers == HTTP_MAX_HEADERS)
        return false; /* obsolete line folding; too many headers */
    if (st->mark1 == 0) { /* in the name */
        while (i < n && http_is_tchar(p[i]))
            i++;
        if (i == n)
            goto more;
        if (i == 0 || p[i] != ':')
            return false;
        st->mark1 = i++;
    }
    for (; i < n; i++) {
        if (!http_is_value_char(p[i]))
            return false;
    }
more:
    st->examined += i - st->line_checked;
    st->line_checked = n;
    return true;
}

/* A complete header line p[0..n), parsed and applied once. */
static bool http_header_line_done(const unsigned char *p, size_t n, bool is_request,
                                  const http_limits_t *lim, http_parse_state_t *st)
{
    http_header_t h;
    http_fields_t f;

    if (n == 0 || http_is_ows(p[0]) || st->num_headers == HTTP_MAX_HEADERS)
        return false; /* the blank line is the scan's to find */
    if (http_parse_header_line(p, n, true, is_request, &h, NULL) != HTTP_STEP_OK)
        return false;
    http_fields_init(&f, NULL);
    f.has_content_length = st->has_content_length;
    f.content_length = st->content_length;
    if (http_apply_header(&h, is_request, lim, &f, NULL) != HTTP_STEP_OK)
        return false;
    st->has_content_length = f.has_content_length;
    st->content_length = f.content_length;
    st->num_headers++;
    return true;
}

/*
 * True when b[from..len) holds the LF of a CR LF CR LF, i.e. the head ends
 * in what has arrived. memchr jumps from LF to LF, which a head has few of.
 */
static bool http_blank_line_in(const unsigned char *b, size_t from, size_t len)
{
    while (from < len) {
        const unsigned char *lf = memchr(b + from, '\n', len - from);
        if (lf == NULL)
            return false;
        size_t at = (size_t)(lf - b);
        if (at >= 3 && b[at - 1] == '\r' && b[at - 2] == '\n' && b[at - 3] == '\r')
            return true;
        from = at + 1;
    }
    return false;
}

/*
 * True when the plain parser would answer HTTP_NEED_MORE for b[0..len),
 * found by looking only at bytes st has not seen; false when it is not
 * sure (the plain parser then runs). scratch is the caller's req or resp.
 */
static bool http_resume_more(const unsigned char *b, size_t len, size_t max_head,
                             bool is_request, const http_limits_t *lim, http_parse_state_t *st,
                             void *scratch)
{
    if (len >= max_head)
        return false; /* the plain call judges the limit */
    if (len < st->scanned || st->line > st->scanned)
        http_state_restart(st); /* not the bytes st describes */

    /* A head that arrived whole (a request in one read: the common case)
     * goes to the plain call at once; the scan below would only find its
     * end after reading every byte that the plain call then reads again. */
    st->examined += len - st->scanned;
    if (http_blank_line_in(b, st->scanned, len))
        return false;

    /* The byte scan, looking back instead of ahead so it can resume. */
    for (size_t i = st->scanned; i < len; i++) {
        unsigned char c = b[i];
        if (c == '\0')
            return false;
        if (i > 0 && b[i - 1] == '\r' && c != '\n')
            return false;
        if (c == '\n' && (i == 0 || b[i - 1] != '\r' || (i >= 3 && b[i - 2] == '\n')))
            return false; /* a bare LF, or the blank line: the head is whole */
    }
    st->examined += len - st->scanned;
    st->scanned = len;

    for (;;) {
        size_t pos = st->line, from = pos + st->line_checked;
        const unsigned char *cr = from < len ? memchr(b + from, '\r', len - from) : NULL;
        size_t end = cr != NULL ? (size_t)(cr - b) : len;
        st->examined += (cr != NULL ? end + 1 : len) - from;

        if (cr == NULL || end + 1 == len) { /* the partial last line */
            if (st->first_done)
                return http_header_line_prefix(b + pos, end - pos, st);
            if (is_request)
                return http_request_line_prefix(b + pos, end - pos, st);
            return http_status_line_prefix(b + pos, end - pos, st, scratch);
        }
        /* A complete line (the scan saw LF after its CR). */
        st->examined += end - pos;
        if (!st->first_done) {
            int rc = is_request ? http_parse_request_line(b + pos, end - pos, true, scratch, NULL)
                                : http_parse_status_line(b + pos, end - pos, true, scratch, NULL);
            if (rc != HTTP_STEP_OK)
                return false;
            st->first_done = true;
        } else if (!http_header_line_done(b + pos, end - pos, is_request, lim, st)) {
            return false;
        }
        st->line = end + 2;
        st->line_checked = st->mark1 = st->mark2 = 0;
    }
}

long http_parse_request_resume(const char *buf, size_t len, const http_limits_t *lim,
                               http_parse_state_t *st, http_request_t *req, http_error_t *err)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t max_head = http_max_head(lim);

    if (http_resume_more(b, len, max_head, true, lim, st, req))
        return HTTP_NEED_MORE;
    /* Once per head (or per disagreement, which would only cost time). */
    st->examined += 2 * (len < max_head ? len : max_head);
    http_state_restart(st);
    return http_parse_request(buf, len, lim, req, err);
}

long http_parse_response_resume(const char *buf, size_t len, const http_limits_t *lim,
                                http_parse_state_t *st, http_response_t *resp,
                                http_error_t *err)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t max_head = http_max_head(lim);

    if (http_resume_more(b, len, max_head, false, lim, st, resp))
        return HTTP_NEED_MORE;
    st->examined += 2 * (len < max_head ? len : max_head);
    http_state_restart(st);
    return http_parse_response(buf, len, lim, resp, err);
}

const http_header_t *http_find_header(const http_header_t *headers, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (http_slice_caseeq(headers[i].name, name))
            return &headers[i];
    }
    return NULL;
}

bool http_slice_eq(http_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    /* memcmp with a NULL pointer is undefined even for zero bytes. */
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}
