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
 * The sign-in answer's body as the other members, parsed as it arrives:
 * join order kept, own entry (id own_id) and malformed lines skipped, a
 * trailing piece without '\n' ignored (as the stock client). At most
 * max_peers entries are kept (0: no limit); the others are only counted in
 * omitted. Memory: the kept peers plus one partial line of at most
 * CWIRE_MAX_PEER_LINE bytes (a longer line is malformed and skipped), so a
 * list of a million entries costs no more than the entries kept.
 *   cwire_peer_list_init(&l, own_id, max); feed(&l, chunk)...; take(&l, ...)
 * feed returns 0 or -ENOMEM; take hands over peers (NULL when none; each
 * name NUL-terminated; free with cwire_peers_free) and resets l;
 * cwire_peer_list_free releases whatever l still holds (safe after take).
 */
#define CWIRE_MAX_PEER_LINE 4096
struct cwire_peer_list {
    uint64_t own_id;
    size_t max_peers;
    struct pcsig_peer *peers;
    size_t npeers, cap;
    size_t omitted;  /* well-formed entries beyond max_peers */
    buf_t partial;   /* the start of a line not yet ended by '\n' */
    bool skipping;   /* inside an over-long line: drop bytes up to its '\n' */
};
void cwire_peer_list_init(struct cwire_peer_list *l, uint64_t own_id, size_t max_peers);
int cwire_peer_list_feed(struct cwire_peer_list *l, const char *p, size_t n);
void cwire_peer_list_take(struct cwire_peer_list *l, struct pcsig_peer **peers, size_t *npeers);
void cwire_peer_list_free(struct cwire_peer_list *l);

void cwire_peers_free(struct pcsig_peer *peers, size_t npeers);

/* True when token can follow "Authorization: Bearer ": 1..CWIRE_MAX_TOKEN
 * bytes of visible ASCII (0x21..0x7e), so it can neither break the header
 * nor be cut by a server's whitespace trimming. */
#define CWIRE_MAX_TOKEN 4096
bool cwire_token_ok(const char *token);

/* True for an address of this host's loopback: 127.0.0.0/8, ::1, and
 * IPv4-mapped ::ffff:127.x.y.z. An auth token may go there in clear. */
struct sockaddr;
bool cwire_addr_is_loopback(const struct sockaddr *sa);

/*
 * Backoff before reconnect attempt number attempt (0 = the first retry):
 * base = min(max_ms, min_ms * 2^attempt), then "equal jitter": base/2 plus
 * rnd mod (base/2 + 1). rnd is any random 64-bit value. Always >= 1.
 */
int cwire_backoff_ms(unsigned attempt, int min_ms, int max_ms, uint64_t rnd);

#endif
