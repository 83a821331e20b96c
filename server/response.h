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

/* A 4xx/5xx of ours: text/plain, body "why\n". */
int resp_append_error(buf_t *out, int status, const char *why, bool keep_alive);

/* The status of the response that resp_append wrote at out->data + mark,
 * or 0 when nothing was written there. Lets a caller learn what a handler
 * answered without every handler reporting it. */
int resp_status_at(const buf_t *out, size_t mark);

/* The fixed 503 sent by the acceptor when the connection cap is reached. */
extern const char resp_busy_bytes[];
extern const size_t resp_busy_len;
/* The fixed 429 sent by the acceptor past --max-conns-per-ip. */
extern const char resp_per_ip_bytes[];
extern const size_t resp_per_ip_len;

#endif
