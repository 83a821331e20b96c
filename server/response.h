/*
 * response: writes the server's HTTP responses in the original's exact
 * layout (status line, Server, Cache-Control, Connection, Content-Type,
 * Content-Length, Pragma, the CORS block), which stock clients match by
 * exact substrings. Pure: appends to a caller's buffer; thread-safe.
 */
#ifndef PCSIG_RESPONSE_H
#define PCSIG_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "registry.h"
#include "version.h"

struct resp {
    int status;
    const char *reason;     /* "OK", "Added", "Error" ... */
    bool has_ctype;
    const char *ctype;      /* raw bytes, not NUL-terminated */
    size_t ctype_len;
    const void *body;
    size_t body_len;
    uint64_t pragma;        /* 0: no Pragma header */
    bool keep_alive;
    const char *extra;      /* extra header lines, each ending in CRLF, or NULL */
    bool cors_token;        /* --secure-ids: let browsers send and read X-Pcsig-Token */
    bool head_only;         /* write the head for body_len bytes the caller appends */
};

/* Append one response: 0 or the buf error (nothing appended then). */
int resp_append(buf_t *out, const struct resp *r);

/*
 * Every outcome the server answers with a fixed status and text: refusals,
 * errors, and the answers of a /wait woken without a message. The one place
 * that decides their status, reason phrase and body (outcome_answer).
 */
enum outcome {
    OUTCOME_MISSING_PEER_ID,   /* 400 */
    OUTCOME_MISSING_TO,        /* 400 */
    OUTCOME_TWICE_PEER_ID,     /* 400 */
    OUTCOME_TWICE_TO,          /* 400 */
    OUTCOME_INVALID_PEER_ID,   /* 400 */
    OUTCOME_INVALID_TO,        /* 400 */
    OUTCOME_UNAUTHORIZED,      /* 401: sign-in without its bearer token */
    OUTCOME_BAD_TOKEN,         /* 403 (-EACCES): --secure-ids token missing or wrong */
    OUTCOME_QUIT_DISABLED,     /* 403 */
    OUTCOME_NO_SUCH_PATH,      /* 404 */
    OUTCOME_METRICS_ONLY,      /* 404 on the --metrics-bind listener */
    OUTCOME_USE_GET,           /* 405 /health, /metrics */
    OUTCOME_WEB_USE_GET,       /* 405 the page's paths */
    OUTCOME_HEAD_REFUSED,      /* 405 HEAD of a protocol path (head only, closes) */
    OUTCOME_REQUEST_TIMEOUT,   /* 408 */
    OUTCOME_DISPLACED,         /* 409 (REG_WAKE_DISPLACED) */
    OUTCOME_RATE_LIMITED,      /* 429 per-address request rate (closes) */
    OUTCOME_PER_IP,            /* 429 at accept, past --max-conns-per-ip (closes) */
    OUTCOME_HEAD_TOO_LARGE,    /* 431: the input buffer is full */
    OUTCOME_GONE,              /* 500 (-ENOENT, -ESRCH): the peer is not signed in */
    OUTCOME_SORRY,             /* 500 the original's "not yet implemented" */
    OUTCOME_NO_ANSWER,         /* 500 a handler built no answer (closes) */
    OUTCOME_NO_MEMORY,         /* 503 (-ENOMEM; closes) */
    OUTCOME_SHUTTING_DOWN,     /* 503 (-ESHUTDOWN) sign-in while stopping (closes) */
    OUTCOME_MEMBER_LIMIT,      /* 503 (-EUSERS) */
    OUTCOME_QUEUE_FULL,        /* 503 (-ENOSPC) */
    OUTCOME_LIST_TOO_BIG,      /* 503 (-E2BIG) over --max-output-bytes */
    OUTCOME_OUTPUT_HELD,       /* 503 (-E2BIG) over what --max-total-output-bytes leaves */
    OUTCOME_STORE_DOWN,        /* 503 (-EIO) --cluster: Redis unreachable */
    OUTCOME_METRICS_FAILED,    /* 503 /metrics could not be formatted (closes) */
    OUTCOME_BUSY,              /* 503 at accept, --max-connections reached (closes) */
    OUTCOME_WAIT_IDLE,         /* 200 empty: a /wait's timeout (REG_WAKE_IDLE) */
    OUTCOME_WAIT_SHUTDOWN,     /* 200 "Server shutting down" (REG_WAKE_SHUTDOWN; closes) */
    OUTCOME_PLAIN_HTTP_ON_TLS, /* 400 plain HTTP on a TLS port (bare head; closes) */
    OUTCOME_COUNT
};

/* What an outcome answers. Static storage; never NULL fields but ctype/extra. */
struct answer {
    int status;
    const char *reason;  /* the status line's phrase */
    const char *ctype;   /* NULL: no Content-Type */
    const char *body;    /* "" for none */
    const char *extra;   /* header lines each ending in CRLF, or NULL */
    bool close;          /* always Connection: close, whatever the request asked */
    bool head_only;      /* Content-Length of body, body not sent */
    bool bare;           /* status, Connection, type and length only (tls.c's refusal) */
    bool pragma;         /* carries the caller's Pragma (the /wait's member id) */
};

/* THE mapping: the answer of outcome o (an out-of-range o is OUTCOME_NO_ANSWER). */
const struct answer *outcome_answer(enum outcome o);
/* The outcome of a registry/cluster error code (negative errno). */
enum outcome outcome_of_error(int rc);
/* The outcome of a /wait woken without a message (idle, displaced, shutdown). */
enum outcome outcome_of_wake(enum reg_wake why);

/* Append outcome o's answer; keep_alive only where o does not close; pragma
 * only where o carries one (answer.pragma). 0 or the buf error (nothing
 * appended then). The status written is outcome_answer(o)->status. */
int resp_append_outcome(buf_t *out, enum outcome o, bool keep_alive, uint64_t pragma);

/* A request the HTTP parser refused (status and reason are the parser's):
 * text/plain "reason\n", closes. 0 or the buf error. */
int resp_append_parse_error(buf_t *out, int status, const char *reason);

#endif
