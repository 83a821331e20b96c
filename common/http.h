/*
 * http: a pure, incremental HTTP/1.x request and response head parser.
 *
 * The parser never does I/O and never allocates: it is handed the bytes
 * received so far and either reports that more are needed, fails with the
 * status the server should answer (and a one-line reason), or fills a
 * struct whose slices point into the caller's buffer. Call it again with
 * the grown buffer after each read. The plain calls keep no state and read
 * the buffer from its first byte each time; a connection that reads a head
 * in pieces uses the _resume calls with an http_parse_state_t, so that each
 * call looks only at what arrived since the last one (a head sent one byte
 * per read then costs O(n) in all, not O(n^2)).
 * All functions are thread-safe (they touch only their arguments).
 *
 * Bytes accepted, by place (anything else is a 400; NUL, and CR or LF other
 * than as a CRLF line end, are refused anywhere in a head):
 *   - method, header name: RFC 9110 tchar;
 *   - request-target: any byte except NUL, CR, LF, SP, HTAB, VT and FF.
 *     That is wider than RFC 9112 on purpose: member names are the raw
 *     query bytes and the stock client sends "$USERNAME@hostname" unencoded,
 *     so obs-text (0x80-0xff), DEL and the other control bytes are kept for
 *     the router to judge (names turn control bytes into '_'; ids are
 *     parsed strictly). SP ends the target, so a name with a space cannot be
 *     sent; HTAB, VT and FF are refused because RFC 9112 section 3 lets a
 *     lenient parser split the request line on them too;
 *   - header value, reason phrase: RFC 9110 field-value: HTAB, SP, VCHAR and
 *     obs-text; the other CTLs (0x00-0x08, 0x0a-0x1f, 0x7f) are refused.
 */
#ifndef PCSIG_HTTP_H
#define PCSIG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A length-carrying view into someone else's bytes. */
typedef struct http_slice {
    const char *ptr;
    size_t len;
} http_slice_t;

#define HTTP_MAX_HEADERS 64 /* more header lines than this: 431 */

typedef struct http_header {
    http_slice_t name;  /* as sent (case preserved), never empty */
    http_slice_t value; /* leading/trailing spaces and tabs trimmed */
} http_header_t;

enum http_method {
    HTTP_METHOD_GET = 1,
    HTTP_METHOD_POST,
    HTTP_METHOD_OPTIONS,
    HTTP_METHOD_HEAD, /* served for the browser page's paths only */
};

/* Limits enforced while parsing; exceeding one is an error, not a truncation. */
typedef struct http_limits {
    size_t max_head; /* request/status line + headers + blank line, bytes (431) */
    uint64_t max_body; /* Content-Length above this: 413 */
} http_limits_t;

typedef struct http_error {
    int status;         /* 400, 405, 408, 413, 431, 501 ... (requests); 0 for responses */
    const char *reason; /* static, one line, no CR/LF */
} http_error_t;

typedef struct http_request {
    enum http_method method;
    http_slice_t target;  /* request-target as sent: starts with '/', raw bytes (above) */
    http_slice_t path;    /* target up to the first '?' */
    http_slice_t query;   /* after the first '?'; len 0 when absent or empty */
    bool has_query;       /* a '?' was present */
    int minor_version;    /* 0 or 1 */
    size_t num_headers;
    http_header_t headers[HTTP_MAX_HEADERS];
    bool has_content_length;
    uint64_t content_length; /* 0 when absent */
    bool has_content_type;
    http_slice_t content_type;
    bool keep_alive; /* HTTP/1.1 without "Connection: close" */
} http_request_t;

typedef struct http_response {
    int minor_version;
    int status;          /* 100..999 */
    http_slice_t reason; /* may be empty */
    size_t num_headers;
    http_header_t headers[HTTP_MAX_HEADERS];
    bool has_content_length;
    uint64_t content_length;
    bool has_content_type;
    http_slice_t content_type;
    bool connection_close; /* "Connection: close" present */
} http_response_t;

/* Return values of the parsers besides a positive head length. */
#define HTTP_NEED_MORE 0
#define HTTP_PARSE_ERROR (-1)

/*
 * Parse a request head from buf[0..len).
 * Returns the head length (> 0, including the blank line) when complete,
 * HTTP_NEED_MORE when the head is incomplete but still within limits, or
 * HTTP_PARSE_ERROR with *err filled. The body (content_length bytes) starts
 * at buf + returned length and is the caller's to wait for.
 */
long http_parse_request(const char *buf, size_t len, const http_limits_t *lim,
                        http_request_t *req, http_error_t *err);

/* The same for a response head (used by clients and tests); err->status is 0. */
long http_parse_response(const char *buf, size_t len, const http_limits_t *lim,
                         http_response_t *resp, http_error_t *err);

/*
 * Where a parse of one head stopped: offsets only (never pointers, since
 * the caller's buffer may move when it grows), and what the complete lines
 * so far imply. Start from HTTP_PARSE_STATE_INIT (or all zeros). Between
 * calls the bytes already passed must stay the same and only grow at the
 * end; when the caller drops or changes them otherwise it starts a new
 * state. The parser starts a new state itself whenever it returns anything
 * but HTTP_NEED_MORE, so that the same state serves the next head.
 */
typedef struct http_parse_state {
    size_t scanned;      /* bytes past the byte-level scan (NUL, CR, LF) */
    size_t line;         /* offset of the first line not yet complete */
    size_t line_checked; /* bytes of that line known to begin a valid line */
    size_t mark1;        /* in that line, 0 until seen: the SP after the method, the colon */
    size_t mark2;        /* in a request line, 0 until seen: the SP after the target */
    bool first_done;     /* the request or status line is complete and valid */
    size_t num_headers;  /* complete header lines so far */
    bool has_content_length;
    uint64_t content_length;
    /* Bytes looked at, summed over every call (kept when a new head starts):
     * the parser's cost, for tests and benchmarks. */
    uint64_t examined;
} http_parse_state_t;

#define HTTP_PARSE_STATE_INIT {0}

/*
 * http_parse_request/http_parse_response resumed from *st: the same result
 * (and the same error for the same bytes, whatever the split into reads)
 * as the plain call on buf[0..len); on HTTP_NEED_MORE *req or *resp holds
 * nothing of use. Each byte is looked at a bounded number of times over
 * all the calls for one head.
 */
long http_parse_request_resume(const char *buf, size_t len, const http_limits_t *lim,
                               http_parse_state_t *st, http_request_t *req, http_error_t *err);
long http_parse_response_resume(const char *buf, size_t len, const http_limits_t *lim,
                                http_parse_state_t *st, http_response_t *resp,
                                http_error_t *err);

/* First header named name (ASCII case-insensitive), or NULL. */
const http_header_t *http_find_header(const http_header_t *headers, size_t n,
                                      const char *name);

/* True when s equals the NUL-terminated lit byte for byte. */
bool http_slice_eq(http_slice_t s, const char *lit);

#endif
