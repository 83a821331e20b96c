/*
 * fuzz_http: checks shared by the request and response fuzz targets.
 *
 * An accepted head is re-read byte by byte against the slices the parser
 * returned, so every slice is proven to lie inside the head at the place
 * the grammar puts it, and the framing fields (Content-Length,
 * Content-Type, Connection) are recomputed from the headers by code
 * written independently of common/http.c.
 */
#ifndef PCSIG_FUZZ_HTTP_H
#define PCSIG_FUZZ_HTTP_H

#include "fuzz_common.h"
#include "strlit.h"
#include "http.h"

/* pcsig-server's default limits (server/config.c). */
#define FUZZ_SRV_MAX_HEAD ((size_t)16 * 1024)
#define FUZZ_SRV_MAX_BODY ((uint64_t)4 * 1024 * 1024)

static inline bool fuzz_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 tchar. */
static inline bool fuzz_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/*
 * A request-target byte: anything but NUL, CR, LF and the whitespace a
 * request line may be split on (SP, HTAB, VT, FF; RFC 9112 section 3).
 * Control bytes, DEL and obs-text are kept (names are raw query bytes).
 */
static inline bool fuzz_is_target_char(unsigned char c)
{
    return c != '\0' && memchr("\t\n\v\f\r ", c, 6) == NULL;
}

/* HTAB, SP, visible ASCII and obs-text: no CTL. */
static inline bool fuzz_is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Offset of p from base; only after fuzz_within said p is inside. */
static inline size_t fuzz_off(const char *p, const char *base)
{
    return (size_t)((uintptr_t)p - (uintptr_t)base);
}

/* An error: the status is one a server may answer (or 0 for responses), the
 * reason a non-empty single line. */
static inline void fuzz_check_error(const http_error_t *err, bool is_request)
{
    if (is_request)
        FUZZ_CHECK(err->status == 400 || err->status == 405 || err->status == 413 ||
                   err->status == 431 || err->status == 501);
    else
        FUZZ_CHECK(err->status == 0);
    FUZZ_CHECK(err->reason != NULL);
    FUZZ_CHECK(err->reason[0] != '\0');
    FUZZ_CHECK(strlen(err->reason) < 200);
    FUZZ_CHECK(strchr(err->reason, '\r') == NULL && strchr(err->reason, '\n') == NULL);
}

/*
 * buf[0..head_len) is a whole head: no NUL, CR and LF only as CRLF, and the
 * first blank line is the one that ends it.
 */
static inline void fuzz_check_head_bytes(const char *buf, size_t head_len)
{
    FUZZ_CHECK(head_len >= 4);
    for (size_t i = 0; i < head_len; i++) {
        FUZZ_CHECK(buf[i] != '\0');
        if (buf[i] == '\n')
            FUZZ_CHECK(i > 0 && buf[i - 1] == '\r');
        if (buf[i] == '\r')
            FUZZ_CHECK(i + 1 < head_len && buf[i + 1] == '\n');
    }
    FUZZ_CHECK(memmem(buf, head_len, STRLIT("\r\n\r\n")) == buf + head_len - 4);
}

/*
 * From offset pos, buf holds exactly the lines of h[0..n), each
 * name ":" OWS value OWS CRLF, and then the blank line ending at head_len.
 */
static inline void fuzz_check_header_lines(const char *buf, size_t head_len, size_t pos,
                                           const http_header_t *h, size_t n)
{
    FUZZ_CHECK(n <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        http_slice_t name = h[i].name, value = h[i].value;
        size_t p;

        FUZZ_CHECK(name.ptr != NULL && fuzz_within(name.ptr, name.len, buf, head_len));
        FUZZ_CHECK(name.ptr == buf + pos);
        FUZZ_CHECK(name.len > 0);
        for (size_t k = 0; k < name.len; k++)
            FUZZ_CHECK(fuzz_is_tchar((unsigned char)name.ptr[k]));
        p = pos + name.len;
        FUZZ_CHECK(p < head_len && buf[p] == ':');
        p++;
        if (value.ptr == NULL) {
            FUZZ_CHECK(value.len == 0);
        } else {
            FUZZ_CHECK(fuzz_within(value.ptr, value.len, buf, head_len));
            size_t v0 = fuzz_off(value.ptr, buf);
            FUZZ_CHECK(v0 >= p);
            for (; p < v0; p++)
                FUZZ_CHECK(fuzz_is_ows(buf[p]));
            for (size_t k = 0; k < value.len; k++)
                FUZZ_CHECK(fuzz_is_value_char((unsigned char)value.ptr[k]));
            if (value.len > 0) {
                FUZZ_CHECK(!fuzz_is_ows(value.ptr[0]));
                FUZZ_CHECK(!fuzz_is_ows(value.ptr[value.len - 1]));
            }
            p = v0 + value.len;
        }
        while (p < head_len && fuzz_is_ows(buf[p]))
            p++;
        FUZZ_CHECK(p + 1 < head_len && buf[p] == '\r' && buf[p + 1] == '\n');
        pos = p + 2;
    }
    FUZZ_CHECK(pos + 2 == head_len && buf[pos] == '\r' && buf[pos + 1] == '\n');
}

/* True when the comma-separated list v holds "close" (any case, OWS around). */
static inline bool fuzz_list_has_close(http_slice_t v)
{
    size_t i = 0;
    while (i <= v.len) {
        size_t j = i, a, b;
        while (j < v.len && v.ptr[j] != ',')
            j++;
        a = i;
        b = j;
        while (a < b && fuzz_is_ows(v.ptr[a]))
            a++;
        while (b > a && fuzz_is_ows(v.ptr[b - 1]))
            b--;
        if (fuzz_caseeq(v.ptr + a, b - a, "close"))
            return true;
        i = j + 1;
    }
    return false;
}

/*
 * The framing fields agree with the headers: Content-Length strict, equal
 * when repeated and within max_body; no Transfer-Encoding; Content-Type the
 * first non-empty one. Returns whether a Connection header lists "close".
 */
static inline bool fuzz_check_fields(const http_header_t *h, size_t n, bool has_cl, uint64_t cl,
                                     bool has_ct, http_slice_t ct, uint64_t max_body)
{
    bool ref_has_cl = false, ref_close = false;
    uint64_t ref_cl = 0;
    const http_header_t *ref_ct = NULL;

    for (size_t i = 0; i < n; i++) {
        http_slice_t name = h[i].name, value = h[i].value;
        FUZZ_CHECK(!fuzz_caseeq(name.ptr, name.len, "Transfer-Encoding"));
        if (fuzz_caseeq(name.ptr, name.len, "Content-Length")) {
            uint64_t v = 0;
            FUZZ_CHECK(fuzz_ref_u64(value.ptr, value.len, &v) == 0);
            FUZZ_CHECK(!ref_has_cl || v == ref_cl);
            ref_has_cl = true;
            ref_cl = v;
        } else if (fuzz_caseeq(name.ptr, name.len, "Content-Type")) {
            if (ref_ct == NULL && value.len > 0)
                ref_ct = &h[i];
        } else if (fuzz_caseeq(name.ptr, name.len, "Connection")) {
            if (fuzz_list_has_close(value))
                ref_close = true;
        }
    }
    FUZZ_CHECK(has_cl == ref_has_cl);
    FUZZ_CHECK(cl == ref_cl);
    FUZZ_CHECK(cl <= max_body);
    FUZZ_CHECK(has_ct == (ref_ct != NULL));
    if (has_ct)
        FUZZ_CHECK(ct.ptr == ref_ct->value.ptr && ct.len == ref_ct->value.len);
    return ref_close;
}

/*
 * The helpers the router and the client use on an accepted head:
 * http_find_header returns the first header of that name in any case, and
 * http_slice_eq is exact byte equality (including on empty NULL slices).
 */
static inline void fuzz_check_helpers(const http_header_t *h, size_t n, http_slice_t some)
{
    static const char *const names[] = { "Content-Length", "content-type", "PRAGMA",
                                         "Connection", "Host", "" };
    static const char *const lits[] = { "/sign_in", "/wait", "/message", "/sign_out", "/", "" };
    const http_slice_t empty = { NULL, 0 };
    char name[64];

    for (size_t k = 0; k <= sizeof names / sizeof names[0]; k++) {
        const char *want = NULL;
        const http_header_t *first = NULL;
        if (k < sizeof names / sizeof names[0]) {
            want = names[k];
        } else if (n > 0 && h[n - 1].name.len < sizeof name) { /* a name the input chose */
            memcpy(name, h[n - 1].name.ptr, h[n - 1].name.len);
            name[h[n - 1].name.len] = '\0';
            want = name;
        } else {
            break;
        }
        for (size_t i = 0; i < n && first == NULL; i++) {
            if (fuzz_caseeq(h[i].name.ptr, h[i].name.len, want))
                first = &h[i];
        }
        FUZZ_CHECK(http_find_header(h, n, want) == first);
    }
    for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
        size_t len = strlen(lits[k]);
        bool eq = some.len == len && (len == 0 || memcmp(some.ptr, lits[k], len) == 0);
        FUZZ_CHECK(http_slice_eq(some, lits[k]) == eq);
        FUZZ_CHECK(http_slice_eq(empty, lits[k]) == (len == 0));
    }
}

/* Two slices at the same offsets from their buffers (NULL only when empty). */
static inline bool fuzz_slice_same(http_slice_t a, const char *abase, http_slice_t b,
                                   const char *bbase)
{
    if (a.len != b.len || (a.ptr == NULL) != (b.ptr == NULL))
        return false;
    return a.ptr == NULL || fuzz_off(a.ptr, abase) == fuzz_off(b.ptr, bbase);
}

static inline bool fuzz_headers_same(const http_header_t *a, const char *abase,
                                     const http_header_t *b, const char *bbase, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!fuzz_slice_same(a[i].name, abase, b[i].name, bbase) ||
            !fuzz_slice_same(a[i].value, abase, b[i].value, bbase))
            return false;
    }
    return true;
}

/* Same error: status and reason text. */
static inline bool fuzz_error_same(const http_error_t *a, const http_error_t *b)
{
    return a->status == b->status && a->reason != NULL && b->reason != NULL &&
           strcmp(a->reason, b->reason) == 0;
}

/*
 * A target's two calls on buf[0..k), for fuzz_check_resumed: each keeps its
 * outcome (the target's own type) for agrees(), which compares the last of
 * each, both slicing buf.
 */
typedef struct fuzz_resume_calls {
    long (*resume)(const char *buf, size_t k, const http_limits_t *lim, http_parse_state_t *st);
    long (*plain)(const char *buf, size_t k, const http_limits_t *lim);
    bool (*agrees)(const char *buf);
} fuzz_resume_calls_t;

/*
 * The resumable call fed the input in reads of 1 to 16 bytes (sizes drawn
 * from h) answers what the plain call answers for the bytes so far. Its
 * answers other than need-more come from the plain call itself, so what
 * can go wrong is a need-more where the plain call already has an answer:
 * as the plain call's need-more holds for every shorter prefix (the
 * targets' check_prefixes), checking the last need-more read, and the
 * first answer against the plain call, covers every read at the cost of
 * two plain calls.
 */
static inline void fuzz_check_resumed(const char *buf, size_t len, const http_limits_t *lim,
                                      uint64_t h, const fuzz_resume_calls_t *calls)
{
    http_parse_state_t st = HTTP_PARSE_STATE_INIT;
    size_t k = 0, last_more = 0;

    for (;;) {
        if (calls->resume(buf, k, lim, &st) != HTTP_NEED_MORE) {
            calls->plain(buf, k, lim);
            FUZZ_CHECK(calls->agrees(buf));
            break;
        }
        last_more = k;
        if (k == len)
            break;
        size_t step = 1 + (size_t)(h & 15);
        h = h >> 4 | h << 60;
        k = len - k < step ? len : k + step;
    }
    FUZZ_CHECK(calls->plain(buf, last_more, lim) == HTTP_NEED_MORE);
    /* each byte was looked at a bounded number of times */
    FUZZ_CHECK(st.examined <= 8 * (uint64_t)len + 64);
}

#endif
