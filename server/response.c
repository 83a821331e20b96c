/*
 * response: one writer for every answer the server sends, so the byte
 * layout stock clients depend on is decided in one place.
 */
#include "response.h"

#include <string.h>

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

const char resp_busy_bytes[] =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Server: pcsig/" PCSIG_VERSION "\r\n"
    "Cache-Control: no-cache\r\n"
    "Connection: close\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 25\r\n"
    CORS_BLOCK
    "\r\n"
    "connection limit reached\n";
const size_t resp_busy_len = sizeof resp_busy_bytes - 1;

#define PER_IP_BODY "too many connections from your address\n"
const char resp_per_ip_bytes[] =
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Server: pcsig/" PCSIG_VERSION "\r\n"
    "Cache-Control: no-cache\r\n"
    "Connection: close\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 39\r\n"
    CORS_BLOCK
    "\r\n" PER_IP_BODY;
_Static_assert(sizeof PER_IP_BODY - 1 == 39, "Content-Length of the 429");
const size_t resp_per_ip_len = sizeof resp_per_ip_bytes - 1;

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

int resp_status_at(const buf_t *out, size_t mark)
{
    static const char prefix[] = "HTTP/1.1 ";
    const size_t plen = sizeof prefix - 1;
    if (mark > out->len || out->len - mark < plen + 3)
        return 0;
    const char *p = out->data + mark;
    if (memcmp(p, prefix, plen) != 0)
        return 0;
    int status = 0;
    for (size_t i = plen; i < plen + 3; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        status = status * 10 + (p[i] - '0');
    }
    return status;
}

int resp_append_error(buf_t *out, int status, const char *why, bool keep_alive)
{
    buf_t body;
    buf_init(&body, 256);
    int rc = buf_printf(&body, "%s\n", why);
    if (rc == 0) {
        struct resp r = {
            .status = status,
            .reason = resp_reason(status),
            .has_ctype = true,
            .ctype = "text/plain",
            .ctype_len = 10,
            .body = body.data,
            .body_len = body.len,
            .keep_alive = keep_alive,
            .extra = status == 405 ? "Allow: GET, POST, OPTIONS\r\n" : NULL,
        };
        rc = resp_append(out, &r);
    }
    buf_free(&body);
    return rc;
}
