/*
 * client_wire: the pure, testable half of the pcsig client.
 *
 * Everything here turns values into the exact bytes the stock
 * peerconnection_client sends (protocol.md B 7.2), or classifies bytes the
 * server sent, without any I/O, threads or clocks. pcsig_client.c does the
 * networking around it; tests/unit/test_client.c checks it byte for byte.
 *
 * Errors follow the common/ convention: 0 (or a count) or a negative errno.
 * All functions are thread-safe (they touch only their arguments).
 */
#ifndef PCSIG_CLIENT_WIRE_H
#define PCSIG_CLIENT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http.h"
#include "proto.h"
#include "pcsig_client.h"

/* Limits on what the client accepts from a server (one name each). */
#define CWIRE_MAX_HEAD (64 * 1024)               /* status line + headers */
#define CWIRE_MAX_BODY ((uint64_t)256 << 20)     /* one response body */
#define CWIRE_DEFAULT_CTYPE "text/plain"         /* the stock client's type */
#define CWIRE_BYE "BYE"                          /* the in-band hang-up body */
#define CWIRE_SHUTDOWN_BODY "Server shutting down"

/*
 * Append name percent-encoded for a query string: the RFC 3986 unreserved
 * bytes (A-Z a-z 0-9 - . _ ~) and '@' (legal in a query, and part of the
 * stock default "user@host") are kept, every other byte becomes %XX. The
 * server keeps raw query bytes, so others see "a b" as "a%20b".
 * The encoded form is kept within PROTO_MAX_NAME bytes (what the server
 * keeps): encoding stops before the first byte that would not fit, never
 * inside a %XX and never inside a UTF-8 sequence. Returns 0 or a buf error.
 */
int cwire_name_encode(buf_t *b, const char *name, size_t len);

/* The exact request bytes, appended to b (0 or a buf error). */
/* "GET /sign_in?<encoded name> HTTP/1.0\r\n\r\n" */
int cwire_sign_in(buf_t *b, const char *name, size_t len);
/* "GET /wait?peer_id=<id> HTTP/1.0\r\n\r\n"; with keep_alive
 * "GET /wait?peer_id=<id> HTTP/1.1\r\nHost: <host>\r\n\r\n" (host already
 * in Host form, e.g. "localhost:8888" or "[::1]:8888"). */
int cwire_wait(buf_t *b, uint64_t own_id, bool keep_alive, const char *host);
/* "POST /message?peer_id=<from>&to=<to> HTTP/1.0\r\nContent-Length: <n>\r\n
 * Content-Type: <ctype or text/plain>\r\n\r\n<body>" (ctype NULL or "":
 * text/plain). -EINVAL when ctype is not cwire_ctype_ok. */
int cwire_message(buf_t *b, uint64_t from, uint64_t to, const char *ctype,
                  const void *body, size_t len);
/* "GET /sign_out?peer_id=<id> HTTP/1.0\r\n\r\n" */
int cwire_sign_out(buf_t *b, uint64_t own_id);
/* The Host header value for host:port (IPv6 literals bracketed). */
int cwire_host_header(buf_t *b, const char *host, uint16_t port);

/* True when ctype can go into a Content-Type header (no CR/LF/controls). */
bool cwire_ctype_ok(const char *ctype);
/* Insert "name: value\r\n" at the end of the request head in b (before the
 * blank line): 0 or -EINVAL (no head) / the buf error. */
int cwire_add_header(buf_t *b, const char *name, const char *value);

/*
 * Where framing one response stopped, kept by the reader between its reads
 * of that response (zero it before each response): the head parser's
 * resume point, then the complete head's length and framing, so that
 * neither a head nor a body arriving in small pieces is parsed again from
 * its first byte at each read.
 */
typedef struct cwire_frame {
    http_parse_state_t parse;
    size_t head_len; /* 0 until the head is complete */
    bool has_content_length;
    uint64_t content_length;
} cwire_frame_t;

/*
 * Frame one response at the start of buf[0..len). eof: the peer closed the
 * connection after these bytes. Returns 1 when complete (*resp filled,
 * *head_len and *body_len set, the body at buf + *head_len), 0 when more
 * bytes are needed, -EPROTO when malformed or over the CWIRE_ limits.
 * A response without Content-Length ends at EOF (HTTP/1.0 framing).
 * fr: the state above, or NULL to parse buf from its start. *resp is
 * filled on 1 and -EPROTO, and on 0 only without fr.
 */
int cwire_frame_response(cwire_frame_t *fr, const char *buf, size_t len, bool eof,
                         http_response_t *resp, size_t *head_len, size_t *body_len);

/* The Pragma header as an id: 0 and *id set, -ENOENT when absent, -EINVAL. */
int cwire_pragma(const http_response_t *resp, uint64_t *id);

/* What one answer to /wait means to the client. */
enum cwire_wait_kind {
    CWIRE_WAIT_JOINED = 1, /* notification: entry (another member) connected */
    CWIRE_WAIT_LEFT,       /* notification: entry (another member) left */
    CWIRE_WAIT_MESSAGE,    /* from, content type, body */
    CWIRE_WAIT_BYE,        /* from sent the 3-byte "BYE" */
    CWIRE_WAIT_EMPTY,      /* pcsig's idle answer (Pragma = own, no body): re-poll */
    CWIRE_WAIT_SHUTDOWN,   /* "Server shutting down" (or 503): the server is going */
    CWIRE_WAIT_ID_GONE,    /* 500, or our own entry ",0": sign in again */
    CWIRE_WAIT_REPOLL,     /* 409 (a newer /wait replaced this one): re-poll */
    CWIRE_WAIT_BAD,        /* anything else: log, re-poll after a pause */
};

struct cwire_wait_result {
    enum cwire_wait_kind kind;
    uint64_t from;           /* MESSAGE, BYE: the sender's id */
    proto_entry_t entry;     /* JOINED, LEFT: points into the body */
    http_slice_t ctype;      /* MESSAGE: into the head; ptr NULL when absent */
    const char *why;         /* BAD, SHUTDOWN, ID_GONE: static, one line */
};

/*
 * Classify a complete /wait answer (resp + body[0..len)) for member own_id
 * (protocol.md B 7.3 and A): Pragma == own_id is a notification (or pcsig's
 * empty idle answer), any other Pragma a message from that id. Pure.
 */
void cwire_classify_wait(const http_response_t *resp, const char *body, size_t len,
                         uint64_t own_id, struct cwire_wait_result *out);

/*
 * The sign-in answer's body as the other members, join order kept, own
 * entry (id own_id) and malformed lines skipped, a trailing piece without
 * '\n' ignored (as the stock client). On success *peers (NULL when none;
 * each name NUL-terminated) belongs to the caller: free with
 * cwire_peers_free. Returns 0 or -ENOMEM.
 */
int cwire_parse_peer_list(const char *body, size_t len, uint64_t own_id,
                          struct pcsig_peer **peers, size_t *npeers);
void cwire_peers_free(struct pcsig_peer *peers, size_t npeers);

/*
 * Backoff before reconnect attempt number attempt (0 = the first retry):
 * base = min(max_ms, min_ms * 2^attempt), then "equal jitter": base/2 plus
 * rnd mod (base/2 + 1). rnd is any random 64-bit value. Always >= 1.
 */
int cwire_backoff_ms(unsigned attempt, int min_ms, int max_ms, uint64_t rnd);

#endif
