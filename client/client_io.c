/*
 * client_io: one HTTP exchange on one connection, interruptible by a
 * disconnect or a new session (the thread's eventfd), bounded by a deadline.
 * struct cio carries the thread's TLS context and the text of a TLS failure:
 * nothing is kept per thread elsewhere.
 */
#include "client_internal.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "client_wire.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "strlit.h"
#include "tls.h"

/* ---- one HTTP exchange, interruptible -------------------------------------- */

/* Is the exchange over (disconnect, a new session, its deadline)? 0, or
 * -ECANCELED / -ETIMEDOUT. io_wait checks it before each poll; a reader
 * that gets data without ever waiting checks it itself. */
int cio_check(struct cio *io)
{
    pcsig_client_t *c = io->c;
    pthread_mutex_lock(&c->mu);
    bool cancel = io->epoch != 0 && c->epoch != io->epoch;
    if (cl_closing(c)) {
        if (io->policy == IO_CANCEL_ON_CLOSE)
            cancel = true;
        else if (io->policy == IO_CLOSE_DEADLINE && c->close_deadline < io->deadline)
            io->deadline = c->close_deadline;
    }
    pthread_mutex_unlock(&c->mu);
    if (cancel)
        return -ECANCELED;
    return cl_remaining_ms(io->deadline) == 0 ? -ETIMEDOUT : 0;
}

/* Wait until conn can do events: 0, -ETIMEDOUT, -ECANCELED or -errno. */
int cio_wait(struct cio *io, conn_t *conn, short events)
{
    for (;;) {
        int rc = cio_check(io);
        if (rc < 0)
            return rc;
        int left = cl_remaining_ms(io->deadline);
        if (left == 0)
            return -ETIMEDOUT;
        struct pollfd p[2] = {
            {.fd = conn ? conn_fd(conn) : -1, .events = events},
            {.fd = io->wake_fd, .events = POLLIN},
        };
        int n = poll(p, 2, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[1].revents & POLLIN)
            cl_drain(io->wake_fd); /* then re-check the state above */
        if (p[0].revents)
            return 0;
    }
}

/* A new connection within the deadline (bounded: net_connect cannot be
 * interrupted). Returns 0 and *out, or -errno. */
int cio_connect(struct cio *io, conn_t **out)
{
    int left = cl_remaining_ms(io->deadline);
    if (left == 0)
        return -ETIMEDOUT;
    int fd = net_connect(io->c->server, io->c->port,
                         left < CLIENT_CONNECT_MAX_MS ? left : CLIENT_CONNECT_MAX_MS);
    if (fd < 0)
        return fd;
    /* TLS comes from the options (use_tls) only: a missing context with
     * use_tls set fails the connection, it never makes a plain one. */
    if (io->c->use_tls && !io->tls) {
        close(fd); /* cannot happen after a good set-up; never fall back to plain */
        return -EINVAL;
    }
    conn_t *conn = io->c->use_tls ? tls_client_wrap(io->tls, fd, io->c->server) : conn_plain_new(fd);
    if (!conn) {
        close(fd);
        return -ENOMEM;
    }
    *out = conn;
    return 0;
}

/* Add our secure-ids token (if the server gave us one) to a request. */
int cio_add_token(pcsig_client_t *c, buf_t *req)
{
    char tok[sizeof c->token];
    pthread_mutex_lock(&c->mu);
    memcpy(tok, c->token, sizeof tok);
    pthread_mutex_unlock(&c->mu);
    return tok[0] ? cwire_add_header(req, "X-Pcsig-Token", tok) : 0;
}

/* Write all of req: 0, -ECANCELED, -ETIMEDOUT or -errno. */
int cio_send_all(struct cio *io, conn_t *conn, const buf_t *req)
{
    size_t off = 0;
    while (off < req->len) {
        ssize_t w = conn_write(conn, req->data + off, req->len - off);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w == 0)
            return -EIO;
        if (w != -EAGAIN)
            return (int)w;
        int rc = cio_wait(io, conn, conn_want(conn));
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* One read of up to n bytes into dst, waiting while conn would block: the
 * count (> 0), 0 at EOF, -ECANCELED, -ETIMEDOUT or -errno. */
ssize_t cio_read_some(struct cio *io, conn_t *conn, char *dst, size_t n)
{
    for (;;) {
        ssize_t r = conn_read(conn, dst, n);
        if (r != -EAGAIN)
            return r;
        int rc = cio_wait(io, conn, conn_want(conn));
        if (rc < 0)
            return rc;
    }
}

/*
 * Read one complete response into in (which may hold bytes left over from
 * an earlier one; there are none in practice). Returns 0 with *rep filled,
 * -ECANCELED, -ETIMEDOUT, -EPROTO (malformed), -ECONNRESET for an EOF
 * before a complete answer, or -errno. *got_bytes: a response byte arrived.
 */
int cio_read_response(struct cio *io, conn_t *conn, buf_t *in, struct cio_reply *rep,
                            bool *got_bytes)
{
    *got_bytes = in->len > 0;
    bool eof = false;
    cwire_frame_t fr = {0};
    for (;;) {
        size_t head_len = 0, body_len = 0;
        if (eof && in->len == 0)
            return -ECONNRESET;
        int f = cwire_frame_response(&fr, in->data, in->len, eof, &rep->resp, &head_len,
                                     &body_len);
        if (f < 0)
            return eof && !rep->resp.status ? -ECONNRESET : -EPROTO;
        if (f == 1) {
            rep->body = in->data + head_len;
            rep->body_len = body_len;
            rep->total = head_len + body_len;
            return 0;
        }
        size_t room = buf_room(in);
        if (room == 0)
            return -EPROTO;
        if (room > CLIENT_READ_CHUNK)
            room = CLIENT_READ_CHUNK;
        if (buf_reserve(in, room) < 0)
            return -ENOMEM;
        ssize_t r = cio_read_some(io, conn, in->data + in->len, room);
        if (r < 0)
            return (int)r;
        if (r == 0) {
            eof = true;
        } else {
            in->len += (size_t)r;
            *got_bytes = true;
        }
    }
}

static int io_exchange(struct cio *io, conn_t *conn, const buf_t *req, buf_t *in,
                       struct cio_reply *rep, bool *got_bytes)
{
    *got_bytes = in->len > 0;
    int rc = cio_send_all(io, conn, req);
    return rc < 0 ? rc : cio_read_response(io, conn, in, rep, got_bytes);
}

/* Errors that mean the server (not just one request) is gone. */
bool cio_server_gone(int rc)
{
    switch (rc) {
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -ECONNABORTED:
    case -EPIPE:
    case -ENETUNREACH:
    case -EHOSTUNREACH:
    case -ENETDOWN:
    case -EHOSTDOWN:
        return true;
    default:
        return false;
    }
}

/* OpenSSL's "error:0A00045C:SSL routines::tlsv13 alert certificate required"
 * says no more than its last part: the text after the code's fourth ':'. */
static const char *tls_error_text(const char *e)
{
    static const char prefix[] = "TLS error: error:";
    if (strncmp(e, prefix, sizeof prefix - 1) != 0)
        return e;
    const char *p = e + sizeof prefix - 1;
    for (int colons = 0; colons < 3; colons++) {
        p = strchr(p, ':');
        if (!p)
            return e;
        p++;
    }
    return *p ? p : e;
}

/*
 * A failed exchange on a TLS connection that says why: -EKEYREJECTED, with
 * the reason in io->tls_failure. Two cases, both the same to the caller (a
 * certificate problem that retrying will not fix):
 *   - the handshake did not complete (certificate verify failed, ...);
 *   - it completed on our side, but the first read brought a TLS alert
 *     instead of an answer: with TLS 1.3 the server checks our certificate
 *     only after our handshake is done, so its refusal ("certificate
 *     required", "unknown ca") arrives there. A TLS error (-EPROTO with the
 *     TLS layer's reason; the HTTP framing's -EPROTO leaves conn_error
 *     empty) before any answer byte is that refusal. A reset with no alert
 *     behind it (see tls_alert_after_reset) stays a lost server: nothing
 *     says why.
 */
int cio_tls_verdict(struct cio *io, conn_t *conn, int rc, bool got_bytes)
{
    if (rc >= 0 || rc == -ECANCELED || !conn->secure || !conn_error(conn)[0])
        return rc;
    const char *why = tls_error_text(conn_error(conn));
    if (!conn->established) {
        snprintf(io->tls_failure, sizeof io->tls_failure, "%s", why);
        return -EKEYREJECTED;
    }
    if (rc == -EPROTO && !got_bytes) {
        snprintf(io->tls_failure, sizeof io->tls_failure, "the server refused the connection: %s", why);
        return -EKEYREJECTED;
    }
    return rc;
}

/*
 * A TLS connection reset before any answer byte: the server may have sent
 * a refusal alert just before closing (our request, unread, then made its
 * kernel answer with a reset), and the alert may still be readable behind
 * the reset. One more read, without waiting, finds it: -EPROTO with the
 * alert in conn_error, for tls_verdict. Otherwise rc as it was.
 */
int cio_tls_alert_after_reset(conn_t *conn, int rc, bool got_bytes)
{
    if (rc >= 0 || !conn->secure || !conn->established || got_bytes || !cio_server_gone(rc))
        return rc;
    char scrap[256];
    ssize_t r = conn_read(conn, scrap, sizeof scrap);
    return r == -EPROTO && conn_error(conn)[0] ? -EPROTO : rc;
}

/* One request on a new connection; the connection is closed afterwards.
 * *connect_failed: the failure was in reaching the server at all. */
int cio_request(struct cio *io, const buf_t *req, buf_t *in, struct cio_reply *rep,
                      bool *connect_failed)
{
    conn_t *conn = NULL;
    int rc = cio_connect(io, &conn);
    *connect_failed = rc < 0 && rc != -ENOMEM;
    if (rc < 0)
        return rc;
    bool got = false;
    rc = io_exchange(io, conn, req, in, rep, &got);
    rc = cio_tls_verdict(io, conn, cio_tls_alert_after_reset(conn, rc, got), got);
    conn_close(conn);
    return rc;
}

/*
 * A reason for a failed exchange (heap, or NULL). Caller frees. connecting:
 * the failure was in reaching the server ("what: connect: ...", or "what:
 * cannot resolve HOST: ..." for a failed name lookup).
 */
char *cio_reason(const struct cio *io, const char *what, bool connecting, int rc)
{
    const pcsig_client_t *c = io->c;
    int gai = net_resolve_error(rc);
    char tmp[128];
    buf_t b;
    buf_init(&b, 512);
    int p;
    if (gai)
        p = buf_printf(&b, "%s: cannot resolve %s: %s", what, c->server, gai_strerror(gai));
    else if (rc == -EKEYREJECTED)
        p = buf_printf(&b, "%s: TLS: %s", what, io->tls_failure);
    else if (rc == -EPROTO)
        p = buf_printf(&b, "%s: malformed answer from the server", what);
    else
        p = buf_printf(&b, "%s%s: %s", what, connecting ? ": connect" : "",
                       log_strerror(rc < 0 ? -rc : rc, tmp, sizeof tmp));
    if (p < 0 || buf_append(&b, "", 1) < 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* "<status> <reason>[: <short text body>]" for a non-200 answer (heap). */
char *cio_status_reason(const struct cio_reply *rep)
{
    buf_t b;
    buf_init(&b, 512);
    int rc = buf_printf(&b, "%d %.*s", rep->resp.status, (int)rep->resp.reason.len,
                        rep->resp.reason.ptr ? rep->resp.reason.ptr : "");
    /* A short printable body ("Peer most likely gone.") says more. */
    bool text = rep->body_len > 0 && rep->body_len <= CLIENT_REASON_BODY_MAX &&
                rep->resp.has_content_type && rep->resp.content_type.len >= STRLIT_LEN("text/plain") &&
                memcmp(rep->resp.content_type.ptr, STRLIT("text/plain")) == 0;
    for (size_t i = 0; text && i < rep->body_len; i++) {
        unsigned char ch = (unsigned char)rep->body[i];
        if (ch < 0x20 || ch > 0x7e)
            text = false;
    }
    if (rc == 0 && text)
        rc = buf_printf(&b, ": %.*s", (int)rep->body_len, rep->body);
    if (rc == 0)
        rc = buf_append(&b, "", 1);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}


/* Read until the response head in in is complete: its length (> 0), or
 * -EPROTO, -ECONNRESET (EOF first), -ECANCELED, -ETIMEDOUT, -errno. */
long cio_read_head(struct cio *io, conn_t *conn, buf_t *in, http_response_t *resp,
                         bool *got_bytes)
{
    const http_limits_t lim = {.max_head = CWIRE_MAX_HEAD, .max_body = CWIRE_MAX_BODY};
    /* Resumed where the last read stopped: a head that arrives a byte at a
     * time is not scanned again from its start on every read. */
    io->head = (http_parse_state_t)HTTP_PARSE_STATE_INIT;
    for (;;) {
        http_error_t err;
        long h = http_parse_response_resume(in->data, in->len, &lim, &io->head, resp, &err);
        if (h == HTTP_PARSE_ERROR)
            return -EPROTO;
        if (h != HTTP_NEED_MORE)
            return h;
        if (buf_reserve(in, CLIENT_READ_CHUNK) < 0)
            return buf_room(in) == 0 ? -EPROTO : -ENOMEM;
        ssize_t r = cio_read_some(io, conn, in->data + in->len, CLIENT_READ_CHUNK);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return in->len == 0 ? -ECONNRESET : -EPROTO;
        in->len += (size_t)r;
        *got_bytes = true;
    }
}

