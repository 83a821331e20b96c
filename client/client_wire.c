/*
 * client_wire: request bytes, response framing and /wait classification for
 * the pcsig client (see client_wire.h). No I/O: pcsig_client.c owns that.
 */
#include "client_wire.h"
#include "strlit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* RFC 3986 unreserved, plus '@': see cwire_name_encode in the header. */
static bool name_byte_kept(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '@';
}

/*
 * Append name percent-encoded for a query string: the RFC 3986 unreserved
 * bytes (A-Z a-z 0-9 - . _ ~) and '@' (legal in a query, and part of the
 * stock default "user@host") are kept, every other byte becomes %XX. The
 * server keeps raw query bytes, so others see "a b" as "a%20b".
 * The encoded form is kept within PROTO_MAX_NAME bytes (what the server
 * keeps): encoding stops before the first byte that would not fit, never
 * inside a %XX and never inside a UTF-8 sequence. Returns 0 or a buf error.
 */
static int cwire_name_encode(buf_t *b, const char *name, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)name;
    /* How many input bytes fit in PROTO_MAX_NAME encoded bytes. */
    size_t used = 0, n = 0;
    while (n < len) {
        size_t w = name_byte_kept(p[n]) ? 1 : 3;
        if (used + w > PROTO_MAX_NAME)
            break;
        used += w;
        n++;
    }
    /* A cut inside a UTF-8 sequence would leave a broken character at the
     * end of the name everybody sees; a sequence is at most 4 bytes. */
    if (n < len) {
        size_t back = 0;
        while (n > 0 && back < 3 && (p[n] & 0xC0) == 0x80) {
            n--;
            back++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (name_byte_kept(p[i])) {
            rc = buf_append(b, &p[i], 1);
        } else {
            char esc[3] = {'%', hex[p[i] >> 4], hex[p[i] & 15]};
            rc = buf_append(b, esc, sizeof esc);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cwire_sign_in(buf_t *b, const char *name, size_t len)
{
    int rc = buf_append_str(b, "GET /sign_in?");
    if (rc == 0)
        rc = cwire_name_encode(b, name, len);
    if (rc == 0)
        rc = buf_append_str(b, " HTTP/1.0\r\n\r\n");
    return rc;
}

int cwire_wait(buf_t *b, uint64_t own_id, bool keep_alive, const char *host)
{
    int rc = buf_append_str(b, "GET /wait?peer_id=");
    if (rc == 0)
        rc = buf_append_u64(b, own_id);
    if (rc < 0)
        return rc;
    if (!keep_alive)
        return buf_append_str(b, " HTTP/1.0\r\n\r\n");
    /* HTTP/1.1 keeps the connection open by default; Host is mandatory. */
    rc = buf_append_str(b, " HTTP/1.1\r\nHost: ");
    if (rc == 0)
        rc = buf_append_str(b, host);
    if (rc == 0)
        rc = buf_append_str(b, "\r\n\r\n");
    return rc;
}

bool cwire_ctype_ok(const char *ctype)
{
    for (const unsigned char *p = (const unsigned char *)ctype; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

int cwire_message(buf_t *b, uint64_t from, uint64_t to, const char *ctype,
                  const void *body, size_t len)
{
    if (ctype == NULL || ctype[0] == '\0')
        ctype = CWIRE_DEFAULT_CTYPE;
    if (!cwire_ctype_ok(ctype))
        return -EINVAL;
    int rc = buf_append_str(b, "POST /message?peer_id=");
    if (rc == 0)
        rc = buf_append_u64(b, from);
    if (rc == 0)
        rc = buf_append_str(b, "&to=");
    if (rc == 0)
        rc = buf_append_u64(b, to);
    if (rc == 0)
        rc = buf_append_str(b, " HTTP/1.0\r\nContent-Length: ");
    if (rc == 0)
        rc = buf_append_u64(b, len);
    if (rc == 0)
        rc = buf_append_str(b, "\r\nContent-Type: ");
    if (rc == 0)
        rc = buf_append_str(b, ctype);
    if (rc == 0)
        rc = buf_append_str(b, "\r\n\r\n");
    if (rc == 0)
        rc = buf_append(b, body, len);
    return rc;
}

int cwire_sign_out(buf_t *b, uint64_t own_id)
{
    int rc = buf_append_str(b, "GET /sign_out?peer_id=");
    if (rc == 0)
        rc = buf_append_u64(b, own_id);
    if (rc == 0)
        rc = buf_append_str(b, " HTTP/1.0\r\n\r\n");
    return rc;
}

int cwire_host_header(buf_t *b, const char *host, uint16_t port)
{
    bool v6 = strchr(host, ':') != NULL && host[0] != '[';
    int rc = 0;
    if (v6)
        rc = buf_append_str(b, "[");
    if (rc == 0)
        rc = buf_append_str(b, host);
    if (rc == 0)
        rc = buf_append_str(b, v6 ? "]:" : ":");
    if (rc == 0)
        rc = buf_append_u64(b, port);
    return rc;
}

int cwire_frame_response(cwire_frame_t *fr, const char *buf, size_t len, bool eof,
                         http_response_t *resp, size_t *head_len, size_t *body_len)
{
    const http_limits_t lim = {.max_head = CWIRE_MAX_HEAD, .max_body = CWIRE_MAX_BODY};
    http_error_t err;
    long h;

    if (fr != NULL && fr->head_len > 0 && len >= fr->head_len && !eof) {
        /* The head is known: wait for the body without parsing it again. */
        size_t have = len - fr->head_len;
        if (fr->has_content_length ? have < fr->content_length : have <= CWIRE_MAX_BODY)
            return 0;
    }
    /* At EOF the plain parse fills *resp however the reads went (the
     * caller tells a reset from a truncated answer by resp->status). */
    if (fr != NULL && !eof)
        h = http_parse_response_resume(buf, len, &lim, &fr->parse, resp, &err);
    else
        h = http_parse_response(buf, len, &lim, resp, &err);
    if (h == HTTP_PARSE_ERROR)
        return -EPROTO;
    if (h == HTTP_NEED_MORE)
        return eof ? -EPROTO : 0;
    size_t head = (size_t)h, have = len - head;
    if (fr != NULL) {
        fr->head_len = head;
        fr->has_content_length = resp->has_content_length;
        fr->content_length = resp->content_length;
    }
    if (resp->has_content_length) {
        if (resp->content_length > CWIRE_MAX_BODY)
            return -EPROTO;
        if (have < resp->content_length)
            return eof ? -EPROTO : 0;
        *body_len = (size_t)resp->content_length;
    } else {
        /* HTTP/1.0 framing: the body is everything up to the close. */
        if (have > CWIRE_MAX_BODY)
            return -EPROTO;
        if (!eof)
            return 0;
        *body_len = have;
    }
    *head_len = head;
    return 1;
}

int cwire_pragma(const http_response_t *resp, uint64_t *id)
{
    const http_header_t *h = http_find_header(resp->headers, resp->num_headers, "Pragma");
    if (h == NULL)
        return -ENOENT;
    return proto_parse_id(h->value.ptr, h->value.len, id) < 0 ? -EINVAL : 0;
}

static bool body_is(const char *body, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && memcmp(body, lit, n) == 0;
}

void cwire_classify_wait(const http_response_t *resp, const char *body, size_t len,
                         uint64_t own_id, struct cwire_wait_result *out)
{
    memset(out, 0, sizeof *out);
    out->kind = CWIRE_WAIT_BAD;
    switch (resp->status) {
    case 200:
        break;
    case 409:
        out->kind = CWIRE_WAIT_REPOLL;
        out->why = "a newer /wait replaced this one (409)";
        return;
    case 500:
        /* "500 Sorry": the server does not know our id (it restarted, or
         * timed us out); the stock server has no other 500 for /wait. */
        out->kind = CWIRE_WAIT_ID_GONE;
        out->why = "the server does not know our id (500)";
        return;
    case 503:
        out->kind = CWIRE_WAIT_SHUTDOWN;
        out->why = "the server is shutting down (503)";
        return;
    default:
        out->why = "unexpected status on /wait";
        return;
    }

    uint64_t pragma = 0;
    int prc = cwire_pragma(resp, &pragma);
    /* The stock server's notice has no Pragma, pcsig's carries our own id;
     * from any other id the same text is an ordinary message. */
    if (body_is(body, len, CWIRE_SHUTDOWN_BODY) && (prc == -ENOENT || (prc == 0 && pragma == own_id))) {
        out->kind = CWIRE_WAIT_SHUTDOWN;
        out->why = "server shutting down";
        return;
    }
    if (prc < 0) {
        out->why = prc == -ENOENT ? "no Pragma on a /wait answer" : "bad Pragma on a /wait answer";
        return;
    }
    if (pragma != own_id) {
        out->from = pragma;
        if (body_is(body, len, CWIRE_BYE)) {
            out->kind = CWIRE_WAIT_BYE;
            return;
        }
        out->kind = CWIRE_WAIT_MESSAGE;
        if (resp->has_content_type)
            out->ctype = resp->content_type;
        return;
    }
    if (len == 0) {
        out->kind = CWIRE_WAIT_EMPTY;
        return;
    }
    long n = proto_entry_parse(body, len, &out->entry);
    if (n <= 0 || (size_t)n != len) {
        out->why = "malformed notification";
        return;
    }
    if (out->entry.id == own_id) {
        /* pcsig answers a removed member's /wait with its own ",0" entry. */
        if (out->entry.connected) {
            out->kind = CWIRE_WAIT_EMPTY;
        } else {
            out->kind = CWIRE_WAIT_ID_GONE;
            out->why = "the server removed us";
        }
        return;
    }
    out->kind = out->entry.connected ? CWIRE_WAIT_JOINED : CWIRE_WAIT_LEFT;
}

void cwire_peers_free(struct pcsig_peer *peers, size_t npeers)
{
    if (peers == NULL)
        return;
    for (size_t i = 0; i < npeers; i++)
        free(peers[i].name);
    free(peers);
}

void cwire_peer_list_init(struct cwire_peer_list *l, uint64_t own_id, size_t max_peers)
{
    *l = (struct cwire_peer_list){.own_id = own_id, .max_peers = max_peers};
    buf_init(&l->partial, CWIRE_MAX_PEER_LINE);
}

void cwire_peer_list_free(struct cwire_peer_list *l)
{
    cwire_peers_free(l->peers, l->npeers);
    l->peers = NULL;
    l->npeers = l->cap = 0;
    buf_free(&l->partial);
}

void cwire_peer_list_take(struct cwire_peer_list *l, struct pcsig_peer **peers, size_t *npeers)
{
    *peers = l->peers;
    *npeers = l->npeers;
    l->peers = NULL;
    l->npeers = l->cap = 0;
    buf_free(&l->partial);
}

/* One complete line (with its '\n'): keep, count or skip it. */
static int peer_line(struct cwire_peer_list *l, const char *s, size_t n)
{
    proto_entry_t e;
    /* Malformed lines are skipped, as the stock client skips entries it
     * cannot parse; the rest of the list is still good. */
    if (proto_entry_parse(s, n, &e) <= 0 || e.id == l->own_id)
        return 0;
    if (l->max_peers && l->npeers >= l->max_peers) {
        l->omitted++;
        return 0;
    }
    if (l->npeers == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        struct pcsig_peer *nv = realloc(l->peers, ncap * sizeof *nv);
        if (nv == NULL)
            return -ENOMEM;
        l->peers = nv;
        l->cap = ncap;
    }
    char *name = malloc(e.name_len + 1);
    if (name == NULL)
        return -ENOMEM;
    memcpy(name, e.name, e.name_len);
    name[e.name_len] = '\0';
    l->peers[l->npeers++] = (struct pcsig_peer){.id = e.id, .name = name,
                                                .connected = e.connected};
    return 0;
}

int cwire_peer_list_feed(struct cwire_peer_list *l, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t piece = nl ? (size_t)(nl - p) + 1 : n;
        int rc = 0;
        if (l->skipping) {
            l->skipping = nl == NULL;
        } else if (l->partial.len == 0 && nl) {
            rc = peer_line(l, p, piece); /* the common case: no copy */
        } else if (l->partial.len + piece > CWIRE_MAX_PEER_LINE) {
            buf_reset(&l->partial);
            l->skipping = nl == NULL;
        } else if ((rc = buf_append(&l->partial, p, piece)) == 0 && nl) {
            rc = peer_line(l, l->partial.data, l->partial.len);
            buf_reset(&l->partial);
        }
        if (rc < 0)
            return -ENOMEM;
        p += piece;
        n -= piece;
    }
    return 0;
}

bool cwire_token_ok(const char *token)
{
    size_t n = 0;
    for (; token[n]; n++)
        if ((unsigned char)token[n] < 0x21 || (unsigned char)token[n] > 0x7e)
            return false;
    return n > 0 && n <= CWIRE_MAX_TOKEN;
}

bool cwire_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

int cwire_backoff_ms(unsigned attempt, int min_ms, int max_ms, uint64_t rnd)
{
    if (min_ms < 1)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    int64_t base = min_ms;
    for (unsigned i = 0; i < attempt && base < max_ms; i++)
        base *= 2;
    if (base > max_ms)
        base = max_ms;
    /* Equal jitter: never less than half the base, so retries still back
     * off, but clients that lost the same server do not retry in step. */
    int64_t half = base / 2;
    int64_t ms = half + (int64_t)(rnd % (uint64_t)(base - half + 1));
    return ms < 1 ? 1 : (int)ms;
}

int cwire_add_header(buf_t *b, const char *name, const char *value)
{
    const char *end = b->len > 0 ? memmem(b->data, b->len, STRLIT("\r\n\r\n")) : NULL;
    if (!end)
        return -EINVAL;
    size_t at = (size_t)(end - b->data) + STRLIT_LEN("\r\n"); /* after the last header's CRLF */
    size_t add = strlen(name) + STRLIT_LEN(": ") + strlen(value) + STRLIT_LEN("\r\n");
    int rc = buf_reserve(b, add);
    if (rc < 0)
        return rc;
    memmove(b->data + at + add, b->data + at, b->len - at);
    size_t o = at;
    memcpy(b->data + o, name, strlen(name));
    o += strlen(name);
    memcpy(b->data + o, STRLIT(": "));
    o += STRLIT_LEN(": ");
    memcpy(b->data + o, value, strlen(value));
    o += strlen(value);
    memcpy(b->data + o, STRLIT("\r\n"));
    b->len += add;
    return 0;
}
