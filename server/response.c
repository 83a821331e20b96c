/*
 * response: one writer for every answer the server sends, so the byte
 * layout stock clients depend on is decided in one place.
 */
#include "response.h"

#include <errno.h>
#include <string.h>

#include "strlit.h"

#define CORS_BLOCK_SECURE                                                        \
    "Access-Control-Allow-Origin: *\r\n"                                         \
    "Access-Control-Allow-Credentials: true\r\n"                                 \
    "Access-Control-Allow-Methods: POST, GET, OPTIONS\r\n"                       \
    "Access-Control-Allow-Headers: Content-Type, Content-Length, Connection, "   \
    "Cache-Control, X-Pcsig-Token\r\n"                                           \
    "Access-Control-Expose-Headers: Content-Length, X-Pcsig-Token\r\n"

#define CORS_BLOCK                                                               \
    "Access-Control-Allow-Origin: *\r\n"                                         \
    "Access-Control-Allow-Credentials: true\r\n"                                 \
    "Access-Control-Allow-Methods: POST, GET, OPTIONS\r\n"                       \
    "Access-Control-Allow-Headers: Content-Type, Content-Length, Connection, "   \
    "Cache-Control\r\n"                                                          \
    "Access-Control-Expose-Headers: Content-Length\r\n"

/* The standard reason phrase for status. */
static const char *resp_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

int resp_append(buf_t *out, const struct resp *r)
{
    size_t mark = out->len;
    int rc = buf_printf(out,
                        "HTTP/1.1 %d %s\r\n"
                        "Server: pcsig/" PCSIG_VERSION "\r\n"
                        "Cache-Control: no-cache\r\n"
                        "Connection: %s\r\n",
                        r->status, r->reason, r->keep_alive ? "keep-alive" : "close");
    if (rc == 0 && r->has_ctype) {
        rc = buf_append_str(out, "Content-Type: ");
        if (rc == 0)
            rc = buf_append(out, r->ctype, r->ctype_len);
        if (rc == 0)
            rc = buf_append_str(out, "\r\n");
    }
    if (rc == 0)
        rc = buf_printf(out, "Content-Length: %zu\r\n", r->body_len);
    if (rc == 0 && r->pragma)
        rc = buf_printf(out, "Pragma: %llu\r\n", (unsigned long long)r->pragma);
    if (rc == 0 && r->extra)
        rc = buf_append_str(out, r->extra);
    if (rc == 0)
        rc = buf_append_str(out, r->cors_token ? CORS_BLOCK_SECURE "\r\n" : CORS_BLOCK "\r\n");
    if (rc == 0 && r->body_len && !r->head_only)
        rc = buf_append(out, r->body, r->body_len);
    if (rc < 0)
        out->len = mark;
    return rc;
}

#define TEXT "text/plain"
#define ALLOW_ALL "Allow: GET, POST, OPTIONS\r\n"

/*
 * The table. Bodies and phrases are pinned by tests (and by clients that
 * match them): change one only on purpose. Plain-text bodies end in "\n";
 * OUTCOME_GONE and OUTCOME_SORRY keep the original server's bodies as is.
 */
static const struct answer answers[OUTCOME_COUNT] = {
    [OUTCOME_MISSING_PEER_ID] = {.status = 400, .reason = "Bad Request", .ctype = TEXT,
        .body = "missing parameter 'peer_id'\n"},
    [OUTCOME_MISSING_TO] = {.status = 400, .reason = "Bad Request", .ctype = TEXT,
        .body = "missing parameter 'to'\n"},
    [OUTCOME_TWICE_PEER_ID] = {.status = 400, .reason = "Bad Request", .ctype = TEXT,
        .body = "parameter 'peer_id' given twice\n"},
    [OUTCOME_TWICE_TO] = {.status = 400, .reason = "Bad Request", .ctype = TEXT,
        .body = "parameter 'to' given twice\n"},
    [OUTCOME_INVALID_PEER_ID] = {.status = 400, .reason = "Bad Request", .ctype = TEXT,
        .body = "parameter 'peer_id' is not a valid id\n"},
    [OUTCOME_INVALID_TO] = {.status = 400, .reason = "Bad Request", .ctype = TEXT,
        .body = "parameter 'to' is not a valid id\n"},
    [OUTCOME_UNAUTHORIZED] = {.status = 401, .reason = "Unauthorized", .ctype = TEXT,
        .body = "sign-in needs Authorization: Bearer <token>\n",
        .extra = "WWW-Authenticate: Bearer realm=\"pcsig\"\r\n"},
    [OUTCOME_BAD_TOKEN] = {.status = 403, .reason = "Forbidden", .ctype = TEXT,
        .body = "missing or wrong token for this peer_id (--secure-ids)\n"},
    [OUTCOME_QUIT_DISABLED] = {.status = 403, .reason = "Forbidden", .ctype = TEXT,
        .body = "/quit is disabled (start the server with --allow-quit)\n"},
    [OUTCOME_NO_SUCH_PATH] = {.status = 404, .reason = "Not Found", .ctype = TEXT,
        .body = "no such path\n"},
    [OUTCOME_METRICS_ONLY] = {.status = 404, .reason = "Not Found", .ctype = TEXT,
        .body = "only /health and /metrics are served here\n"},
    [OUTCOME_USE_GET] = {.status = 405, .reason = "Method Not Allowed", .ctype = TEXT,
        .body = "use GET\n",
        .extra = "Allow: GET\r\n"},
    [OUTCOME_WEB_USE_GET] = {.status = 405, .reason = "Method Not Allowed", .ctype = TEXT,
        .body = "use GET or HEAD\n",
        .extra = "Allow: GET, HEAD\r\n"},
    [OUTCOME_HEAD_REFUSED] = {.status = 405, .reason = "Method Not Allowed", .ctype = TEXT,
        .body = "method not allowed\n",
        .extra = ALLOW_ALL,
        .close = true, .head_only = true},
    [OUTCOME_REQUEST_TIMEOUT] = {.status = 408, .reason = "Request Timeout", .ctype = TEXT,
        .body = "request not completed within the read timeout\n", .close = true},
    [OUTCOME_DISPLACED] = {.status = 409, .reason = "Conflict", .ctype = TEXT,
        .body = "a newer /wait for this peer replaced this one\n"},
    [OUTCOME_RATE_LIMITED] = {.status = 429, .reason = "Too Many Requests", .ctype = TEXT,
        .body = "request rate limit reached\n",
        .extra = "Retry-After: 1\r\n", .close = true},
    [OUTCOME_PER_IP] = {.status = 429, .reason = "Too Many Requests", .ctype = TEXT,
        .body = "too many connections from your address\n",
        .close = true},
    [OUTCOME_HEAD_TOO_LARGE] = {.status = 431, .reason = "Request Header Fields Too Large",
        .ctype = TEXT,
        .body = "request too large\n", .close = true},
    [OUTCOME_GONE] = {.status = 500, .reason = "Error", .ctype = TEXT,
        .body = "Peer most likely gone."},
    [OUTCOME_SORRY] = {.status = 500, .reason = "Sorry", .ctype = "text/html",
        .body = "<html><body>Sorry, not yet implemented</body></html>"},
    [OUTCOME_NO_ANSWER] = {.status = 500, .reason = "Internal Server Error", .ctype = TEXT,
        .body = "the answer could not be built\n",
        .close = true},
    [OUTCOME_NO_MEMORY] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "out of memory\n", .close = true},
    [OUTCOME_SHUTTING_DOWN] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "server shutting down\n",
        .close = true},
    [OUTCOME_MEMBER_LIMIT] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "member limit reached\n"},
    [OUTCOME_QUEUE_FULL] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "the target's queue is full; retry later\n"},
    [OUTCOME_LIST_TOO_BIG] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "the member list is larger than --max-output-bytes\n"},
    [OUTCOME_OUTPUT_HELD] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "too much output is held for clients that do not read it; "
                "retry later\n"},
    [OUTCOME_STORE_DOWN] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "the cluster's store (Redis) is unreachable; retry later\n"},
    [OUTCOME_METRICS_FAILED] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "could not format the metrics\n", .close = true},
    [OUTCOME_BUSY] = {.status = 503, .reason = "Service Unavailable", .ctype = TEXT,
        .body = "connection limit reached\n",
        .close = true},
    [OUTCOME_WAIT_IDLE] = {.status = 200, .reason = "OK", .ctype = TEXT,
        .body = "", .pragma = true},
    [OUTCOME_WAIT_SHUTDOWN] = {.status = 200, .reason = "OK", .ctype = TEXT,
        .body = "Server shutting down", .close = true,
        .pragma = true},
    [OUTCOME_PLAIN_HTTP_ON_TLS] = {.status = 400, .reason = "Bad Request", .ctype = TEXT,
        .body = "this port speaks TLS: use https://\n",
        .close = true, .bare = true},
};

const struct answer *outcome_answer(enum outcome o)
{
    if ((unsigned)o >= OUTCOME_COUNT)
        o = OUTCOME_NO_ANSWER;
    return &answers[o];
}

enum outcome outcome_of_error(int rc)
{
    switch (rc) {
    case -EACCES: return OUTCOME_BAD_TOKEN;
    case -ENOENT:
    case -ESRCH: return OUTCOME_GONE;
    case -ENOSPC: return OUTCOME_QUEUE_FULL;
    case -EUSERS: return OUTCOME_MEMBER_LIMIT;
    case -E2BIG: return OUTCOME_LIST_TOO_BIG;
    case -ESHUTDOWN: return OUTCOME_SHUTTING_DOWN;
    case -EIO: return OUTCOME_STORE_DOWN;
    default: return OUTCOME_NO_MEMORY; /* -ENOMEM, and what cannot happen */
    }
}

enum outcome outcome_of_wake(enum reg_wake why)
{
    switch (why) {
    case REG_WAKE_ITEM:
    case REG_WAKE_GONE:
    case REG_WAKE_IDLE: return OUTCOME_WAIT_IDLE; /* idle, or woken with no item to send */
    case REG_WAKE_DISPLACED: return OUTCOME_DISPLACED;
    default: return OUTCOME_WAIT_SHUTDOWN;
    }
}

int resp_append_outcome(buf_t *out, enum outcome o, bool keep_alive, uint64_t pragma)
{
    const struct answer *a = outcome_answer(o);
    size_t body_len = strlen(a->body);
    if (a->bare) {
        size_t mark = out->len;
        int rc = buf_printf(out, "HTTP/1.1 %d %s\r\nConnection: close\r\n", a->status, a->reason);
        if (rc == 0 && a->ctype)
            rc = buf_printf(out, "Content-Type: %s\r\n", a->ctype);
        if (rc == 0)
            rc = buf_printf(out, "Content-Length: %zu\r\n\r\n", body_len);
        if (rc == 0 && !a->head_only)
            rc = buf_append(out, a->body, body_len);
        if (rc < 0)
            out->len = mark;
        return rc;
    }
    struct resp r = {
        .status = a->status,
        .reason = a->reason,
        .has_ctype = a->ctype != NULL,
        .ctype = a->ctype,
        .ctype_len = a->ctype ? strlen(a->ctype) : 0,
        .body = a->body,
        .body_len = body_len,
        .pragma = a->pragma ? pragma : 0,
        .keep_alive = keep_alive && !a->close,
        .extra = a->extra,
        .head_only = a->head_only,
    };
    return resp_append(out, &r);
}

int resp_append_parse_error(buf_t *out, int status, const char *why)
{
    buf_t body;
    buf_init(&body, 256);
    int rc = buf_printf(&body, "%s\n", why);
    if (rc == 0) {
        struct resp r = {
            .status = status,
            .reason = resp_reason(status),
            .has_ctype = true,
            .ctype = TEXT,
            .ctype_len = STRLIT_LEN(TEXT),
            .body = body.data,
            .body_len = body.len,
            .extra = status == 405 ? ALLOW_ALL : NULL,
        };
        rc = resp_append(out, &r);
    }
    buf_free(&body);
    return rc;
}
