/*
 * pcsig_client: the threads, queues and reconnect logic of the client
 * library (the API and its contract are in pcsig_client.h; the bytes on the
 * wire are built and classified in client_wire.c).
 *
 * DESIGN
 *
 * Threads. The caller's threads only take the mutex, copy and link: they
 * never touch the network. Two threads of ours do:
 *   - control: signs in (again after a loss, with backoff), then sends the
 *     outgoing queue one request at a time in order, each on a new HTTP/1.0
 *     connection; on disconnect it flushes the queue for a short while and
 *     signs out;
 *   - hanging_get: while signed in, one /wait after another (a new
 *     connection each, or one kept-alive connection with keep_alive).
 *
 * State. Everything shared is under c->mu: run state, own id, the session
 * epoch, the outgoing queue, the event queue. A "session" is one sign-in;
 * c->epoch grows when one starts or ends, and a thread acting on what it
 * learned in an older epoch drops it (a message from a peer of a dead
 * session is never reported under the new id). c->life_mu serialises
 * connect and disconnect (join); lock order: life_mu, then mu.
 *
 * Losing the server. Connection refused/reset, EOF before an answer or the
 * shutdown notice mean the server is gone: the session ends, queued
 * messages fail (their peer ids belong to the old server), and control
 * retries sign-in with jittered exponential backoff, reporting
 * SERVER_UNREACHABLE before each wait. A 500 on /wait (or our own ",0"
 * entry) means only our id is gone: SESSION_LOST, and sign in again at once
 * (with backoff if that keeps happening). A TLS failure that retrying will
 * not fix (our check of the server's certificate, or the server's refusal
 * of ours, which TLS 1.3 delivers as an alert on the first read) ends it
 * all: DISCONNECTED with the reason, as a 4xx answer to sign-in does.
 *
 * Waking. Each thread blocks only in poll() on its socket plus its own
 * eventfd (ctl_wake, hang_wake) or in a condition variable; disconnect and
 * a session loss write the eventfds and signal the conditions, so both
 * threads notice within one poll wake-up. The only call that cannot be
 * interrupted is net_connect: its TCP handshake is bounded by
 * CLIENT_CONNECT_MAX_MS per address tried, but the name lookup before it
 * (getaddrinfo) has no timeout of ours, only the resolver's (resolv.conf:
 * 5 s per try by default), so with a slow DNS server disconnect can wait
 * that long for a thread that is inside a lookup. Give an address to avoid
 * it.
 *
 * Timeouts. A /wait that outlives wait_timeout_ms is half-closed rather
 * than closed: the server un-parks it, and an answer it wrote just before
 * still arrives (CLIENT_WAIT_GRACE_MS) instead of being lost with the
 * socket. Control requests have request_timeout_ms each.
 *
 * Disconnect. Sign-in and /wait stop at once; messages already queued go
 * out within CLIENT_CLOSE_FLUSH_MS, then the sign-out (CLIENT_SIGNOUT_MS),
 * then both threads are joined and DISCONNECTED is queued last.
 *
 * Events. A FIFO of heap events under mu; c->ev_fd (an eventfd) is
 * readable exactly while it is non-empty, so callers can poll() it.
 */
#include "pcsig_client.h"
#include "strlit.h"

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
#include "tls.h"

#define CLIENT_DEFAULT_SERVER "localhost"
#define CLIENT_DEFAULT_PORT 8888
#define CLIENT_DEFAULT_WAIT_MS 45000    /* > the server's 30 s idle answer */
#define CLIENT_DEFAULT_REQUEST_MS 10000
#define CLIENT_DEFAULT_RECONNECT_MIN_MS 500
#define CLIENT_DEFAULT_RECONNECT_MAX_MS 10000
#define CLIENT_CONNECT_MAX_MS 3000      /* bound on one uninterruptible connect */
#define CLIENT_CLOSE_FLUSH_MS 2000      /* disconnect: time to send what is queued */
#define CLIENT_SIGNOUT_MS 2000          /* disconnect: time for the sign-out itself */
#define CLIENT_WAIT_GRACE_MS 1000       /* after our own /wait timeout, see do_wait */
#define CLIENT_READ_CHUNK 65536
#define CLIENT_REASON_BODY_MAX 200      /* error bodies shown in a reason */
#define CLIENT_DEFAULT_MAX_EVENT_BYTES ((size_t)16 << 20) /* backpressure on /wait */
#define CLIENT_DEFAULT_MAX_PEERS 100000 /* peers kept of a sign-in answer */
#define CLIENT_EVENT_OVERHEAD 64        /* bytes an event counts beyond its data */

/* One queued POST /message; the request bytes are built by the sender. */
struct out_msg {
    struct out_msg *next;
    uint64_t token;
    uint64_t from, to;
    buf_t req;
};

/* An event with its queue link; ev first so pcsig_event_free can free it. */
struct ev_item {
    struct pcsig_event ev;
    struct ev_item *next;
    size_t bytes; /* what it counts in c->ev_bytes */
};

enum loss_kind {
    LOSS_NONE = 0,
    LOSS_SERVER,  /* the server went away: backoff and SERVER_UNREACHABLE */
    LOSS_ID_GONE, /* the server forgot us: sign in again */
};

struct pcsig_client {
    /* Set by pcsig_client_new, read-only afterwards. */
    char *server;
    uint16_t port;
    char *name;
    char *host_hdr;
    bool keep_alive;
    int wait_timeout_ms;
    int request_timeout_ms;
    int reconnect_min_ms;
    int reconnect_max_ms;
    /* TLS on or off is use_tls, from the options, and nothing else: a
     * context that is missing with use_tls set fails the connection (never
     * a plain one). One context per thread: each keeps the session tickets
     * of its own connections, so no OpenSSL session is shared. */
    bool use_tls;
    tls_client_t *tls;      /* control thread */
    tls_client_t *tls_hang; /* hanging_get thread */
    /* A set-up failure, reported by connect (-EINVAL). A flag and a fixed
     * array: recording the failure cannot itself fail. */
    bool setup_failed;
    char setup_error[256];
    char *auth_token;   /* "Bearer" token for the sign-in, or NULL; wiped on free */
    bool allow_insecure_token;
    size_t max_event_bytes;
    size_t max_peers;
    int ev_fd;
    int ctl_wake;
    int hang_wake;

    pthread_mutex_t life_mu; /* connect/disconnect; taken before mu */
    pthread_mutex_t mu;
    pthread_cond_t ctl_cond;
    pthread_cond_t hang_cond;
    pthread_cond_t ev_cond;
    bool sync_ready; /* mutexes and conditions initialised */

    /* Under mu. */
    bool running;  /* threads started and not yet joined */
    bool closing;  /* disconnect (or a fatal error) asked the threads to stop */
    bool dead;     /* a fatal error: DISCONNECTED already queued */
    bool hang_closed; /* the hanging_get thread has closed its connection for good */
    const char *close_note; /* how the last run ended (static text), for DISCONNECTED */
    uint64_t close_deadline;
    bool signed_in;
    uint64_t own_id;
    char token[40];  /* --secure-ids servers: our X-Pcsig-Token, "" if none */
    uint64_t epoch;
    enum loss_kind loss;
    char *loss_reason;
    unsigned id_gone_streak; /* ID_GONE losses without a 200 on /wait between */
    uint64_t next_token;
    struct out_msg *q_head, *q_tail;
    struct ev_item *ev_head, *ev_tail;
    size_t ev_bytes;     /* what the queued events count (see ev_bytes_of) */
    bool hang_throttled; /* the hanging_get waits for the caller to drain */
    pthread_t ctl_thread, hang_thread;
};

/* Tests only (the unit test #includes this file): while non-zero,
 * pcsig_client_new fails its TLS set-up with no reason text, as if the
 * library's allocations had failed too. Set before pcsig_client_new, in the
 * thread that calls it. */
static int cwire_test_tls_setup_fault;
/* Tests only: while non-zero, a loopback server address counts as remote
 * for the auth token's plain-TCP check (tests can reach nothing else). */
static int cwire_test_loopback_is_remote;

/* ---- small helpers --------------------------------------------------------- */

/* The text of an errno value, whichever strerror_r the C library has. */
static const char *err_text(int err, char *tmp, size_t n)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(err, tmp, n);
#else
    if (strerror_r(err, tmp, n) != 0)
        snprintf(tmp, n, "error %d", err);
    return tmp;
#endif
}

/* A heap copy of s[0..n) plus a NUL; NULL when out of memory. Caller frees. */
static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *dup_s(const char *s)
{
    return dup_n(s, strlen(s));
}

static void wake(int fd)
{
    uint64_t one = 1;
    /* Only fails when the counter would overflow: it is readable then anyway. */
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

static void drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = clock_now_ms();
    if (now >= deadline)
        return 0;
    uint64_t left = deadline - now;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* xorshift64*: backoff jitter; each control thread owns its state. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* ---- events ------------------------------------------------------------------ */

/* A zeroed event of type t, or NULL. Caller owns it (pcsig_event_free). */
static struct pcsig_event *ev_new(enum pcsig_event_type t)
{
    struct ev_item *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->ev.type = t;
    return &it->ev;
}

void pcsig_event_free(struct pcsig_event *ev)
{
    if (!ev)
        return;
    free(ev->name);
    cwire_peers_free(ev->peers, ev->npeers);
    free(ev->content_type);
    free(ev->data);
    free(ev->reason);
    free(ev); /* ev is the first member of its ev_item */
}

/* What an event counts against max_event_bytes: its variable parts plus a
 * fixed overhead, so that many empty events count too. */
static size_t ev_bytes_of(const struct pcsig_event *ev)
{
    size_t n = sizeof(struct ev_item) + CLIENT_EVENT_OVERHEAD + ev->len;
    if (ev->name)
        n += strlen(ev->name);
    if (ev->content_type)
        n += strlen(ev->content_type);
    if (ev->reason)
        n += strlen(ev->reason);
    for (size_t i = 0; i < ev->npeers; i++)
        n += sizeof ev->peers[i] + strlen(ev->peers[i].name) + 1;
    return n;
}

/* Queue ev (ownership passes to the queue). Caller holds mu. NULL-safe: an
 * event that could not be allocated is lost, and logged. */
static void emit_locked(pcsig_client_t *c, struct pcsig_event *ev)
{
    if (!ev) {
        log_error("client: out of memory; an event was dropped");
        return;
    }
    struct ev_item *it = (struct ev_item *)ev;
    it->next = NULL;
    it->bytes = ev_bytes_of(ev);
    c->ev_bytes += it->bytes;
    if (c->ev_tail) {
        c->ev_tail->next = it;
    } else {
        c->ev_head = it;
        wake(c->ev_fd); /* readable while the queue is non-empty */
    }
    c->ev_tail = it;
    pthread_cond_broadcast(&c->ev_cond);
}

/* An event with a reason copied from text (may be NULL). */
static struct pcsig_event *ev_reason(enum pcsig_event_type t, const char *text)
{
    struct pcsig_event *ev = ev_new(t);
    if (ev && text && !(ev->reason = dup_n(text, strlen(text)))) {
        pcsig_event_free(ev);
        return NULL;
    }
    return ev;
}

static void emit_failed_locked(pcsig_client_t *c, const struct out_msg *m, int status,
                               const char *reason)
{
    struct pcsig_event *ev = ev_reason(PCSIG_EV_MESSAGE_FAILED, reason);
    if (ev) {
        ev->token = m->token;
        ev->peer_id = m->to;
        ev->status = status;
    }
    emit_locked(c, ev);
}

static void out_msg_free(struct out_msg *m)
{
    if (m) {
        buf_free(&m->req);
        free(m);
    }
}

/* Fail every queued message with reason. Caller holds mu. */
static void fail_queue_locked(pcsig_client_t *c, const char *reason)
{
    while (c->q_head) {
        struct out_msg *m = c->q_head;
        c->q_head = m->next;
        emit_failed_locked(c, m, 0, reason);
        out_msg_free(m);
    }
    c->q_tail = NULL;
}

/*
 * The session of epoch ended (kind, reason). The first thread to notice
 * wins; later reports about the same session are ignored. Caller holds mu.
 */
static void session_lost_locked(pcsig_client_t *c, uint64_t epoch, enum loss_kind kind,
                                const char *reason)
{
    if (!c->signed_in || c->epoch != epoch)
        return;
    log_debug("client: session %llu of id %llu ended: %s", (unsigned long long)epoch,
             (unsigned long long)c->own_id, reason);
    c->signed_in = false;
    c->own_id = 0;
    c->epoch++;
    c->loss = kind;
    free(c->loss_reason);
    c->loss_reason = dup_s(reason);
    if (kind == LOSS_ID_GONE) {
        c->id_gone_streak++;
        /* The sign-in that follows is silent otherwise: the caller must learn
         * that the old id (and every peer id it knew) is void. */
        emit_locked(c, ev_reason(PCSIG_EV_SESSION_LOST, reason));
    }
    fail_queue_locked(c, "the session ended before the message was sent");
    pthread_cond_broadcast(&c->ctl_cond);
    pthread_cond_broadcast(&c->hang_cond);
    wake(c->hang_wake);
}

/* ---- one HTTP exchange, interruptible -------------------------------------- */

enum close_policy {
    IO_CANCEL_ON_CLOSE, /* sign-in, /wait: stop at once on disconnect */
    IO_CLOSE_DEADLINE,  /* messages: finish within the close budget */
    IO_OWN_DEADLINE,    /* sign-out: its own short deadline only */
};

struct io {
    pcsig_client_t *c;
    int wake_fd;
    enum close_policy policy;
    uint64_t epoch;    /* non-zero: cancel when the session changes */
    uint64_t deadline; /* monotonic ms */
};

/* Is the exchange over (disconnect, a new session, its deadline)? 0, or
 * -ECANCELED / -ETIMEDOUT. io_wait checks it before each poll; a reader
 * that gets data without ever waiting checks it itself. */
static int io_check(struct io *io)
{
    pcsig_client_t *c = io->c;
    pthread_mutex_lock(&c->mu);
    bool cancel = io->epoch != 0 && c->epoch != io->epoch;
    if (c->closing) {
        if (io->policy == IO_CANCEL_ON_CLOSE)
            cancel = true;
        else if (io->policy == IO_CLOSE_DEADLINE && c->close_deadline < io->deadline)
            io->deadline = c->close_deadline;
    }
    pthread_mutex_unlock(&c->mu);
    if (cancel)
        return -ECANCELED;
    return remaining_ms(io->deadline) == 0 ? -ETIMEDOUT : 0;
}

/* Wait until conn can do events: 0, -ETIMEDOUT, -ECANCELED or -errno. */
static int io_wait(struct io *io, conn_t *conn, short events)
{
    for (;;) {
        int rc = io_check(io);
        if (rc < 0)
            return rc;
        int left = remaining_ms(io->deadline);
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
            drain(io->wake_fd); /* then re-check the state above */
        if (p[0].revents)
            return 0;
    }
}

/* A new connection within the deadline (bounded: net_connect cannot be
 * interrupted). Returns 0 and *out, or -errno. */
static int io_connect(struct io *io, conn_t **out)
{
    int left = remaining_ms(io->deadline);
    if (left == 0)
        return -ETIMEDOUT;
    int fd = net_connect(io->c->server, io->c->port,
                         left < CLIENT_CONNECT_MAX_MS ? left : CLIENT_CONNECT_MAX_MS);
    if (fd < 0)
        return fd;
    tls_client_t *t = io->wake_fd == io->c->hang_wake ? io->c->tls_hang : io->c->tls;
    if (io->c->use_tls && !t) {
        close(fd); /* cannot happen after a good set-up; never fall back to plain */
        return -EINVAL;
    }
    conn_t *conn = io->c->use_tls ? tls_client_wrap(t, fd, io->c->server) : conn_plain_new(fd);
    if (!conn) {
        close(fd);
        return -ENOMEM;
    }
    *out = conn;
    return 0;
}

/* Add our secure-ids token (if the server gave us one) to a request. */
static int add_token(pcsig_client_t *c, buf_t *req)
{
    char tok[sizeof c->token];
    pthread_mutex_lock(&c->mu);
    memcpy(tok, c->token, sizeof tok);
    pthread_mutex_unlock(&c->mu);
    return tok[0] ? cwire_add_header(req, "X-Pcsig-Token", tok) : 0;
}

struct reply {
    http_response_t resp;
    const char *body; /* into the input buffer */
    size_t body_len;
    size_t total;     /* head + body bytes, to consume afterwards */
};

/* Write all of req: 0, -ECANCELED, -ETIMEDOUT or -errno. */
static int io_send_all(struct io *io, conn_t *conn, const buf_t *req)
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
        int rc = io_wait(io, conn, conn_want(conn));
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* One read of up to n bytes into dst, waiting while conn would block: the
 * count (> 0), 0 at EOF, -ECANCELED, -ETIMEDOUT or -errno. */
static ssize_t io_read_some(struct io *io, conn_t *conn, char *dst, size_t n)
{
    for (;;) {
        ssize_t r = conn_read(conn, dst, n);
        if (r != -EAGAIN)
            return r;
        int rc = io_wait(io, conn, conn_want(conn));
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
static int io_read_response(struct io *io, conn_t *conn, buf_t *in, struct reply *rep,
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
        ssize_t r = io_read_some(io, conn, in->data + in->len, room);
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

static int io_exchange(struct io *io, conn_t *conn, const buf_t *req, buf_t *in,
                       struct reply *rep, bool *got_bytes)
{
    *got_bytes = in->len > 0;
    int rc = io_send_all(io, conn, req);
    return rc < 0 ? rc : io_read_response(io, conn, in, rep, got_bytes);
}

/* Errors that mean the server (not just one request) is gone. */
static bool is_server_gone(int rc)
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

/* The TLS layer's one-line reason for the calling thread's last TLS
 * failure (-EKEYREJECTED). Per thread: each client thread has its own. */
static _Thread_local char tls_failure[CONN_ERROR_MAX + 64];

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
 * the reason in tls_failure. Two cases, both the same to the caller (a
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
static int tls_verdict(conn_t *conn, int rc, bool got_bytes)
{
    if (rc >= 0 || rc == -ECANCELED || !conn->secure || !conn_error(conn)[0])
        return rc;
    const char *why = tls_error_text(conn_error(conn));
    if (!conn->established) {
        snprintf(tls_failure, sizeof tls_failure, "%s", why);
        return -EKEYREJECTED;
    }
    if (rc == -EPROTO && !got_bytes) {
        snprintf(tls_failure, sizeof tls_failure, "the server refused the connection: %s", why);
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
static int tls_alert_after_reset(conn_t *conn, int rc, bool got_bytes)
{
    if (rc >= 0 || !conn->secure || !conn->established || got_bytes || !is_server_gone(rc))
        return rc;
    char scrap[256];
    ssize_t r = conn_read(conn, scrap, sizeof scrap);
    return r == -EPROTO && conn_error(conn)[0] ? -EPROTO : rc;
}

/* One request on a new connection; the connection is closed afterwards.
 * *connect_failed: the failure was in reaching the server at all. */
static int io_request(struct io *io, const buf_t *req, buf_t *in, struct reply *rep,
                      bool *connect_failed)
{
    conn_t *conn = NULL;
    int rc = io_connect(io, &conn);
    *connect_failed = rc < 0 && rc != -ENOMEM;
    if (rc < 0)
        return rc;
    bool got = false;
    rc = io_exchange(io, conn, req, in, rep, &got);
    rc = tls_verdict(conn, tls_alert_after_reset(conn, rc, got), got);
    conn_close(conn);
    return rc;
}

/*
 * A reason for a failed exchange (heap, or NULL). Caller frees. connecting:
 * the failure was in reaching the server ("what: connect: ...", or "what:
 * cannot resolve HOST: ..." for a failed name lookup).
 */
static char *io_reason(const pcsig_client_t *c, const char *what, bool connecting, int rc)
{
    int gai = net_resolve_error(rc);
    char tmp[128];
    buf_t b;
    buf_init(&b, 512);
    int p;
    if (gai)
        p = buf_printf(&b, "%s: cannot resolve %s: %s", what, c->server, gai_strerror(gai));
    else if (rc == -EKEYREJECTED)
        p = buf_printf(&b, "%s: TLS: %s", what, tls_failure);
    else if (rc == -EPROTO)
        p = buf_printf(&b, "%s: malformed answer from the server", what);
    else
        p = buf_printf(&b, "%s%s: %s", what, connecting ? ": connect" : "",
                       err_text(rc < 0 ? -rc : rc, tmp, sizeof tmp));
    if (p < 0 || buf_append(&b, "", 1) < 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* "<status> <reason>[: <short text body>]" for a non-200 answer (heap). */
static char *status_reason(const struct reply *rep)
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

/* ---- control thread ---------------------------------------------------------- */

enum signin_result { SIGNIN_OK, SIGNIN_RETRY, SIGNIN_FATAL, SIGNIN_CANCELED };

/* Read until the response head in in is complete: its length (> 0), or
 * -EPROTO, -ECONNRESET (EOF first), -ECANCELED, -ETIMEDOUT, -errno. */
static long io_read_head(struct io *io, conn_t *conn, buf_t *in, http_response_t *resp,
                         bool *got_bytes)
{
    const http_limits_t lim = {.max_head = CWIRE_MAX_HEAD, .max_body = CWIRE_MAX_BODY};
    for (;;) {
        http_error_t err;
        long h = http_parse_response(in->data, in->len, &lim, resp, &err);
        if (h == HTTP_PARSE_ERROR)
            return -EPROTO;
        if (h != HTTP_NEED_MORE)
            return h;
        if (buf_reserve(in, CLIENT_READ_CHUNK) < 0)
            return buf_room(in) == 0 ? -EPROTO : -ENOMEM;
        ssize_t r = io_read_some(io, conn, in->data + in->len, CLIENT_READ_CHUNK);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return in->len == 0 ? -ECONNRESET : -EPROTO;
        in->len += (size_t)r;
        *got_bytes = true;
    }
}

/* What a 200 to sign-in brought: our id, the --secure-ids token, the list. */
struct sign_in_ok {
    uint64_t id;
    char token[sizeof ((pcsig_client_t *)0)->token];
    struct cwire_peer_list list;
    bool list_ready; /* list initialised (free it) */
};

/*
 * The rest of a 200 to sign-in, whose head (head_len bytes of in) is
 * parsed in resp: the body is the peer list, fed to the parser as it
 * arrives and never kept whole, so a list of a million entries costs only
 * the max_peers kept. Returns 0, or as io_read_response.
 */
static int sign_in_body(struct io *io, conn_t *conn, buf_t *in, const http_response_t *resp,
                        size_t head_len, struct sign_in_ok *ok, bool *got_bytes)
{
    bool has_len = resp->has_content_length;
    uint64_t want = resp->content_length, got = 0;
    if (has_len && want > CWIRE_MAX_BODY)
        return -EPROTO;
    if (cwire_pragma(resp, &ok->id) < 0)
        return -EBADMSG;
    const http_header_t *tok = http_find_header(resp->headers, resp->num_headers,
                                                "X-Pcsig-Token");
    if (tok && tok->value.len < sizeof ok->token) {
        memcpy(ok->token, tok->value.ptr, tok->value.len);
        ok->token[tok->value.len] = '\0';
    }
    /* resp points into in: nothing of it is used after this. */
    cwire_peer_list_init(&ok->list, ok->id, io->c->max_peers);
    ok->list_ready = true;
    buf_consume(in, head_len);
    for (;;) {
        size_t n = in->len;
        if (has_len && n > want - got)
            n = (size_t)(want - got); /* nothing after the body is ours */
        if (cwire_peer_list_feed(&ok->list, in->data, n) < 0)
            return -ENOMEM;
        got += n;
        buf_reset(in);
        if (has_len && got == want)
            return 0;
        if (!has_len && got > CWIRE_MAX_BODY)
            return -EPROTO;
        /* A fast endless stream never makes us wait: look up anyway, so a
         * disconnect or the deadline still ends it. */
        int st = io_check(io);
        if (st < 0)
            return st;
        if (buf_reserve(in, CLIENT_READ_CHUNK) < 0)
            return -ENOMEM;
        ssize_t r = io_read_some(io, conn, in->data, CLIENT_READ_CHUNK);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return has_len ? -EPROTO : 0; /* HTTP/1.0 framing: the body ends at EOF */
        in->len = (size_t)r;
        *got_bytes = true;
    }
}

/* The connected address of fd as text (for a message), into out. */
static void peer_addr_text(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(out, n, "?");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                             : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!inet_ntop(ss.ss_family, a, out, (socklen_t)n))
        snprintf(out, n, "?");
}

/* May our auth token go over this connection? Yes with TLS, to a loopback
 * address, or when the caller allowed it; the address is the one actually
 * connected (a name may resolve anywhere). */
static bool token_may_go(const pcsig_client_t *c, conn_t *conn)
{
    if (!c->auth_token || c->use_tls || c->allow_insecure_token)
        return true;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    return getpeername(conn_fd(conn), (struct sockaddr *)&ss, &sl) == 0 &&
           cwire_addr_is_loopback((const struct sockaddr *)&ss) && !cwire_test_loopback_is_remote;
}

/*
 * The sign-in exchange on a new connection: a 200's body is parsed as it
 * arrives (sign_in_body, *is_ok set), any other answer is read whole into
 * *rep. -EACCES: the auth token would have gone in clear to a non-loopback
 * address (nothing was sent; *where names the address). Else as io_request.
 */
static int sign_in_request(struct io *io, const buf_t *req, buf_t *in, struct reply *rep,
                           struct sign_in_ok *ok, bool *is_ok, bool *connect_failed,
                           char *where, size_t where_len)
{
    *is_ok = false;
    conn_t *conn = NULL;
    int rc = io_connect(io, &conn);
    *connect_failed = rc < 0 && rc != -ENOMEM;
    if (rc < 0)
        return rc;
    if (!token_may_go(io->c, conn)) {
        peer_addr_text(conn_fd(conn), where, where_len);
        conn_close(conn);
        return -EACCES;
    }
    bool got = false;
    rc = io_send_all(io, conn, req);
    long h = rc < 0 ? rc : io_read_head(io, conn, in, &rep->resp, &got);
    if (h > 0 && rep->resp.status == 200) {
        *is_ok = true;
        rc = sign_in_body(io, conn, in, &rep->resp, (size_t)h, ok, &got);
    } else if (h > 0) {
        rc = io_read_response(io, conn, in, rep, &got); /* a short refusal: whole */
    } else {
        rc = (int)h;
    }
    rc = tls_verdict(conn, tls_alert_after_reset(conn, rc, got), got);
    conn_close(conn);
    return rc;
}

/* The request bytes of a sign-in, with our auth token if we have one. */
static int sign_in_bytes(pcsig_client_t *c, buf_t *req)
{
    int rc = cwire_sign_in(req, c->name, strlen(c->name));
    if (rc == 0 && c->auth_token) {
        buf_t v;
        buf_init(&v, CWIRE_MAX_TOKEN + 16);
        rc = buf_printf(&v, "Bearer %s", c->auth_token);
        if (rc == 0)
            rc = buf_append(&v, "", 1);
        if (rc == 0)
            rc = cwire_add_header(req, "Authorization", v.data);
        if (v.data)
            explicit_bzero(v.data, v.len);
        buf_free(&v);
    }
    return rc;
}

/* Sign in; on SIGNIN_OK *ev is the SIGNED_IN event, else *reason (heap). */
static enum signin_result do_sign_in(pcsig_client_t *c, struct pcsig_event **ev, char **reason)
{
    *ev = NULL;
    *reason = NULL;
    buf_t req, in;
    buf_init(&req, strlen(c->name) * 3 + CWIRE_MAX_TOKEN + 128);
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    enum signin_result res = SIGNIN_RETRY;
    struct io io = {.c = c, .wake_fd = c->ctl_wake, .policy = IO_CANCEL_ON_CLOSE,
                    .deadline = clock_now_ms() + (uint64_t)c->request_timeout_ms};
    struct reply rep;
    struct sign_in_ok ok = {0};
    bool unreachable = false, is_ok = false;
    char where[64] = "";
    int rc = sign_in_bytes(c, &req);
    if (rc == 0)
        rc = sign_in_request(&io, &req, &in, &rep, &ok, &is_ok, &unreachable, where,
                             sizeof where);
    if (rc == -ECANCELED) {
        res = SIGNIN_CANCELED;
        goto out;
    }
    if (rc == -EACCES) {
        buf_t b;
        buf_init(&b, 1024);
        if (buf_printf(&b, "sign-in: refusing to send the auth token in clear to %s (%s is "
                           "not a loopback address): use TLS, or allow it explicitly "
                           "(--allow-insecure-token)", c->server, where) == 0 &&
            buf_append(&b, "", 1) == 0)
            *reason = b.data;
        else
            buf_free(&b);
        res = SIGNIN_FATAL;
        goto out;
    }
    if (rc == -EBADMSG) {
        *reason = dup_s("sign-in: no valid Pragma in the answer");
        goto out;
    }
    if (rc < 0) {
        *reason = io_reason(c, "sign-in", unreachable, rc);
        /* A certificate that fails verification will fail again: stop. */
        if (rc == -EKEYREJECTED)
            res = SIGNIN_FATAL;
        goto out;
    }
    if (!is_ok) {
        char *sr = status_reason(&rep);
        buf_t b;
        buf_init(&b, 1024);
        /* A 401 from a server run with --auth-token: say which side of it we are. */
        const char *hint = rep.resp.status != 401 ? ""
                           : c->auth_token ? " (the auth token was not accepted)"
                                           : " (the server wants an auth token: --auth-token)";
        if (buf_printf(&b, "sign-in refused: %s%s", sr ? sr : "?", hint) == 0 &&
            buf_append(&b, "", 1) == 0)
            *reason = b.data;
        else
            buf_free(&b);
        free(sr);
        /* A 4xx will not change by retrying (except a timeout or a rate limit). */
        int st = rep.resp.status;
        if (st >= 400 && st < 500 && st != 408 && st != 429)
            res = SIGNIN_FATAL;
        goto out;
    }
    struct pcsig_event *e = ev_new(PCSIG_EV_SIGNED_IN);
    if (!e) {
        *reason = dup_s("sign-in: out of memory");
        goto out;
    }
    e->peers_omitted = ok.list.omitted;
    cwire_peer_list_take(&ok.list, &e->peers, &e->npeers);
    if (e->peers_omitted)
        log_warn("client: the server listed %zu more peers than max_peers (%zu): only the "
                 "first %zu are kept", e->peers_omitted, c->max_peers, e->npeers);
    e->own_id = ok.id;
    *ev = e;
    res = SIGNIN_OK;
    /* A server in --secure-ids mode hands out a token: use it from now on. */
    pthread_mutex_lock(&c->mu);
    memcpy(c->token, ok.token, sizeof c->token);
    pthread_mutex_unlock(&c->mu);
out:
    if (ok.list_ready)
        cwire_peer_list_free(&ok.list);
    if (req.data)
        explicit_bzero(req.data, req.len); /* it held the auth token */
    buf_free(&req);
    buf_free(&in);
    return res;
}

/* A MESSAGE event from a classified answer; NULL when out of memory. */
static struct pcsig_event *message_event(const struct cwire_wait_result *w, const char *body,
                                         size_t len)
{
    struct pcsig_event *ev = ev_new(PCSIG_EV_MESSAGE);
    if (!ev)
        return NULL;
    ev->peer_id = w->from;
    ev->len = len;
    /* A NUL after the bytes: text bodies can be used as C strings. */
    ev->data = (unsigned char *)dup_n(body, len);
    if (w->ctype.ptr)
        ev->content_type = dup_n(w->ctype.ptr, w->ctype.len);
    if (!ev->data || (w->ctype.ptr && !ev->content_type)) {
        pcsig_event_free(ev);
        return NULL;
    }
    return ev;
}

/* Send one queued message and report it. Called without mu. */
static void send_one(pcsig_client_t *c, struct out_msg *m, uint64_t epoch)
{
    buf_t in;
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    struct io io = {.c = c, .wake_fd = c->ctl_wake, .policy = IO_CLOSE_DEADLINE,
                    .deadline = clock_now_ms() + (uint64_t)c->request_timeout_ms};
    struct reply rep;
    bool unreachable = false;
    int rc = io_request(&io, &m->req, &in, &rep, &unreachable);
    char *reason = NULL;
    struct pcsig_event *echo = NULL;
    if (rc < 0) {
        reason = io_reason(c, "message", unreachable, rc);
    } else if (rep.resp.status != 200) {
        reason = status_reason(&rep);
    } else if (m->to == m->from) {
        /* Sent to ourselves: the server echoes it in the ack (B 4.5); it
         * is reported as if it had come through /wait. */
        uint64_t p;
        if (cwire_pragma(&rep.resp, &p) == 0 && p == m->from) {
            struct cwire_wait_result w = {.kind = CWIRE_WAIT_MESSAGE, .from = p};
            if (rep.resp.has_content_type)
                w.ctype = rep.resp.content_type;
            if (rep.body_len == 3 && memcmp(rep.body, CWIRE_BYE, 3) == 0) {
                if ((echo = ev_new(PCSIG_EV_PEER_HANGUP)) != NULL)
                    echo->peer_id = p;
            } else {
                echo = message_event(&w, rep.body, rep.body_len);
            }
        }
    }
    pthread_mutex_lock(&c->mu);
    if (rc == 0 && rep.resp.status == 200) {
        struct pcsig_event *ev = ev_new(PCSIG_EV_MESSAGE_SENT);
        if (ev) {
            ev->token = m->token;
            ev->peer_id = m->to;
        }
        emit_locked(c, ev);
        if (echo)
            emit_locked(c, echo);
    } else {
        emit_failed_locked(c, m, rc == 0 ? rep.resp.status : 0,
                           reason ? reason : "message failed");
        if (rc < 0 && rc != -ECANCELED && (unreachable || is_server_gone(rc)))
            session_lost_locked(c, epoch, LOSS_SERVER, reason ? reason : "server gone");
    }
    pthread_mutex_unlock(&c->mu);
    free(reason);
    buf_free(&in);
}

/* True when the server confirmed the sign-out (200). */
static bool sign_out(pcsig_client_t *c, uint64_t id)
{
    buf_t req, in;
    buf_init(&req, 256); /* the request line and, with --secure-ids, the token */
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    int budget = c->request_timeout_ms < CLIENT_SIGNOUT_MS ? c->request_timeout_ms
                                                            : CLIENT_SIGNOUT_MS;
    struct io io = {.c = c, .wake_fd = c->ctl_wake, .policy = IO_OWN_DEADLINE,
                    .deadline = clock_now_ms() + (uint64_t)budget};
    struct reply rep;
    bool unreachable;
    int rc = cwire_sign_out(&req, id);
    if (rc == 0)
        rc = add_token(c, &req);
    if (rc == 0)
        rc = io_request(&io, &req, &in, &rep, &unreachable);
    if (rc < 0) {
        char tmp[128];
        log_debug("client: sign-out of %llu failed: %s", (unsigned long long)id,
                  err_text(-rc, tmp, sizeof tmp));
    } else if (rep.resp.status != 200) {
        log_debug("client: sign-out of %llu answered %d", (unsigned long long)id,
                  rep.resp.status);
    }
    buf_free(&req);
    buf_free(&in);
    return rc == 0 && rep.resp.status == 200;
}

/* Set the delay before the next sign-in after a loss, and report it.
 * Returns the monotonic time of the next attempt. Caller holds mu. */
static uint64_t plan_retry_locked(pcsig_client_t *c, unsigned *fails, uint64_t *rng,
                                  const char *reason, bool server_gone)
{
    int delay;
    if (server_gone) {
        delay = cwire_backoff_ms((*fails)++, c->reconnect_min_ms, c->reconnect_max_ms,
                                 rng_next(rng));
    } else if (c->id_gone_streak <= 1) {
        return 0; /* the server forgot us once: sign in again at once */
    } else {
        delay = cwire_backoff_ms(c->id_gone_streak - 2, c->reconnect_min_ms,
                                 c->reconnect_max_ms, rng_next(rng));
    }
    struct pcsig_event *ev = ev_reason(PCSIG_EV_SERVER_UNREACHABLE, reason);
    if (ev)
        ev->retry_in_ms = delay;
    emit_locked(c, ev);
    return clock_now_ms() + (uint64_t)delay;
}

static void *control_main(void *arg)
{
    pcsig_client_t *c = arg;
    log_set_thread_role("control");
    uint64_t rng = clock_now_ms() ^ ((uint64_t)(uintptr_t)c << 16) ^ ((uint64_t)getpid() << 40);
    if (rng == 0)
        rng = 0x9E3779B97F4A7C15ULL;
    unsigned fails = 0;
    uint64_t retry_at = 0;

    pthread_mutex_lock(&c->mu);
    while (!c->closing) {
        if (!c->signed_in) {
            if (c->loss != LOSS_NONE) {
                retry_at = plan_retry_locked(c, &fails, &rng, c->loss_reason ? c->loss_reason
                                                                             : "session lost",
                                             c->loss == LOSS_SERVER);
                c->loss = LOSS_NONE;
            }
            if (retry_at && clock_now_ms() < retry_at) {
                struct timespec ts = clock_deadline_in((uint64_t)remaining_ms(retry_at));
                pthread_cond_timedwait(&c->ctl_cond, &c->mu, &ts);
                continue;
            }
            retry_at = 0;
            pthread_mutex_unlock(&c->mu);
            struct pcsig_event *ev;
            char *reason;
            enum signin_result r = do_sign_in(c, &ev, &reason);
            pthread_mutex_lock(&c->mu);
            if (r == SIGNIN_OK && !c->closing) {
                c->signed_in = true;
                c->own_id = ev->own_id;
                c->epoch++;
                fails = 0;
                log_debug("client: signed in as %llu", (unsigned long long)c->own_id);
                emit_locked(c, ev);
                pthread_cond_broadcast(&c->hang_cond);
            } else if (r == SIGNIN_OK) {
                /* Disconnect came during the sign-in: sign out below. */
                c->signed_in = true;
                c->own_id = ev->own_id;
                c->epoch++;
                pcsig_event_free(ev);
            } else if (r == SIGNIN_FATAL) {
                log_warn("client: %s", reason ? reason : "sign-in refused");
                c->dead = true;
                c->closing = true;
                emit_locked(c, ev_reason(PCSIG_EV_DISCONNECTED, reason ? reason : "sign-in refused"));
                pthread_cond_broadcast(&c->hang_cond);
                wake(c->hang_wake);
            } else if (r == SIGNIN_RETRY) {
                retry_at = plan_retry_locked(c, &fails, &rng, reason ? reason : "sign-in failed",
                                             true);
            }
            free(reason);
            continue;
        }
        if (c->q_head) {
            struct out_msg *m = c->q_head;
            c->q_head = m->next;
            if (!c->q_head)
                c->q_tail = NULL;
            uint64_t epoch = c->epoch;
            pthread_mutex_unlock(&c->mu);
            send_one(c, m, epoch);
            out_msg_free(m);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        pthread_cond_wait(&c->ctl_cond, &c->mu);
    }

    /* Closing: what was queued before the disconnect still goes out, in
     * order, within the close budget; then the sign-out. */
    while (!c->dead && c->signed_in && c->q_head && clock_now_ms() < c->close_deadline) {
        struct out_msg *m = c->q_head;
        c->q_head = m->next;
        if (!c->q_head)
            c->q_tail = NULL;
        uint64_t epoch = c->epoch;
        pthread_mutex_unlock(&c->mu);
        send_one(c, m, epoch);
        out_msg_free(m);
        pthread_mutex_lock(&c->mu);
    }
    fail_queue_locked(c, "disconnected before the message was sent");
    /* The stock client closes its hanging GET before it signs out (the
     * original server may otherwise answer the parked wait after the
     * member is gone): give the hanging_get thread, woken by the same
     * disconnect, a moment to close its connection first. */
    uint64_t hang_until = clock_now_ms() + CLIENT_SIGNOUT_MS;
    while (!c->hang_closed && clock_now_ms() < hang_until) {
        struct timespec ts = clock_deadline_in((uint64_t)remaining_ms(hang_until));
        pthread_cond_timedwait(&c->ctl_cond, &c->mu, &ts);
    }
    bool was_in = c->signed_in;
    uint64_t id = c->own_id;
    c->signed_in = false;
    c->own_id = 0;
    c->epoch++;
    pthread_mutex_unlock(&c->mu);
    /* What the DISCONNECTED event will say, instead of a bare "disconnected". */
    const char *note = !was_in              ? "disconnected while not signed in"
                       : sign_out(c, id)    ? "signed out"
                                            : "disconnected; the server did not confirm the sign-out";
    pthread_mutex_lock(&c->mu);
    c->close_note = note;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- hanging_get thread ------------------------------------------------------ */

static struct pcsig_event *peer_event(enum pcsig_event_type t, const proto_entry_t *e)
{
    struct pcsig_event *ev = ev_new(t);
    if (!ev)
        return NULL;
    ev->peer_id = e->id;
    if (!(ev->name = dup_n(e->name, e->name_len))) {
        pcsig_event_free(ev);
        return NULL;
    }
    return ev;
}

/* Pause the hanging_get for ms (a disconnect or a new session ends it early). */
static void hang_pause_locked(pcsig_client_t *c, uint64_t epoch, int ms)
{
    uint64_t until = clock_now_ms() + (uint64_t)ms;
    while (!c->closing && c->epoch == epoch && clock_now_ms() < until) {
        struct timespec ts = clock_deadline_in((uint64_t)remaining_ms(until));
        pthread_cond_timedwait(&c->hang_cond, &c->mu, &ts);
    }
}

/*
 * One /wait: reuse the kept-alive connection if there is one (retrying once
 * on a new one when it turns out closed), else a new connection.
 * Returns as io_exchange; *keep says whether *connp stays usable.
 */
static int do_wait(struct io *io, conn_t **connp, const buf_t *req, buf_t *in,
                   struct reply *rep, bool *keep, bool *connect_failed)
{
    *keep = false;
    *connect_failed = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = *connp != NULL;
        if (!reused) {
            int rc = io_connect(io, connp);
            *connect_failed = rc < 0 && rc != -ENOMEM;
            if (rc < 0)
                return rc;
        }
        bool got = in->len > 0, half_closed = false;
        int rc = io_send_all(io, *connp, req);
        if (rc == 0)
            rc = io_read_response(io, *connp, in, rep, &got);
        if (rc == -ETIMEDOUT) {
            /* Our limit, not the server's: closing now could drop an answer
             * the server has just written. Half-close instead, so that it
             * un-parks the /wait (and keeps undelivered items queued), and
             * read on briefly for anything already under way. */
            half_closed = shutdown(conn_fd(*connp), SHUT_WR) == 0;
            if (half_closed) {
                io->deadline = clock_now_ms() + CLIENT_WAIT_GRACE_MS;
                rc = io_read_response(io, *connp, in, rep, &got);
                if (rc != 0 && rc != -ECANCELED)
                    rc = -ETIMEDOUT;
            }
        }
        /* A server that no longer takes our certificate (a reload with a
         * new client CA) refuses a new connection as it refuses a sign-in. */
        if (rc < 0 && rc != -ETIMEDOUT && !reused)
            rc = tls_verdict(*connp, tls_alert_after_reset(*connp, rc, got), got);
        if (rc == 0) {
            *keep = !half_closed && io->c->keep_alive && rep->resp.minor_version == 1 &&
                    !rep->resp.connection_close && rep->resp.has_content_length;
            return 0;
        }
        conn_close(*connp);
        *connp = NULL;
        buf_reset(in);
        /* A kept-alive connection the server closed meanwhile is not a
         * lost server: try once more on a fresh one. */
        if (!(reused && !got && (is_server_gone(rc) || rc == -EIO)))
            return rc;
    }
    return -ECONNRESET;
}

static void *hanging_main(void *arg)
{
    pcsig_client_t *c = arg;
    log_set_thread_role("hanging_get");
    conn_t *conn = NULL;
    buf_t in, req;
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    buf_init(&req, 1024);
    uint64_t epoch = 0;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->closing && !c->signed_in)
            pthread_cond_wait(&c->hang_cond, &c->mu);
        if (c->closing)
            break;
        if (c->epoch != epoch) {
            /* A new session: nothing of the old connection is ours any more. */
            conn_close(conn);
            conn = NULL;
            buf_reset(&in);
            epoch = c->epoch;
        }
        if (c->ev_bytes > c->max_event_bytes) {
            /* Backpressure: the caller has not taken what we have. No new
             * /wait until it does, so further messages stay queued on the
             * server, whose own caps (and 503s to the senders) bound them. */
            log_debug("client: %zu bytes of events not taken (cap %zu): /wait paused",
                      c->ev_bytes, c->max_event_bytes);
            c->hang_throttled = true;
            while (!c->closing && c->epoch == epoch && c->ev_bytes > c->max_event_bytes)
                pthread_cond_wait(&c->hang_cond, &c->mu);
            c->hang_throttled = false;
            continue;
        }
        uint64_t own = c->own_id;
        pthread_mutex_unlock(&c->mu);

        buf_reset(&req);
        struct io io = {.c = c, .wake_fd = c->hang_wake, .policy = IO_CANCEL_ON_CLOSE,
                        .epoch = epoch,
                        .deadline = clock_now_ms() + (uint64_t)c->wait_timeout_ms};
        struct reply rep;
        bool keep = false, unreachable = false;
        int rc = cwire_wait(&req, own, c->keep_alive, c->host_hdr);
        if (rc == 0)
            rc = add_token(c, &req);
        if (rc == 0)
            rc = do_wait(&io, &conn, &req, &in, &rep, &keep, &unreachable);

        struct cwire_wait_result w = {.kind = CWIRE_WAIT_BAD};
        struct pcsig_event *ev = NULL;
        char *reason = NULL;
        if (rc == 0) {
            cwire_classify_wait(&rep.resp, rep.body, rep.body_len, own, &w);
            if (w.kind == CWIRE_WAIT_MESSAGE)
                ev = message_event(&w, rep.body, rep.body_len);
            else if (w.kind == CWIRE_WAIT_JOINED)
                ev = peer_event(PCSIG_EV_PEER_JOINED, &w.entry);
            else if (w.kind == CWIRE_WAIT_LEFT)
                ev = peer_event(PCSIG_EV_PEER_LEFT, &w.entry);
            else if (w.kind == CWIRE_WAIT_BYE && (ev = ev_new(PCSIG_EV_PEER_HANGUP)))
                ev->peer_id = w.from;
        } else if (rc != -ECANCELED && rc != -ETIMEDOUT) {
            reason = io_reason(c, "hanging GET", unreachable, rc);
        }
        if (rc == 0 && keep)
            buf_consume(&in, rep.total);
        else {
            conn_close(conn);
            conn = NULL;
            buf_reset(&in);
        }

        pthread_mutex_lock(&c->mu);
        bool current = !c->closing && c->epoch == epoch;
        if (!current) {
            pcsig_event_free(ev);
        } else if (rc == 0) {
            if (rep.resp.status == 200 && w.kind != CWIRE_WAIT_ID_GONE)
                c->id_gone_streak = 0; /* the new session works */
            switch (w.kind) {
            case CWIRE_WAIT_MESSAGE:
            case CWIRE_WAIT_JOINED:
            case CWIRE_WAIT_LEFT:
            case CWIRE_WAIT_BYE:
                emit_locked(c, ev);
                break;
            case CWIRE_WAIT_EMPTY:
                break;
            case CWIRE_WAIT_REPOLL:
                /* Our own re-polls close the old connection first, so a 409
                 * we read means someone else polls with our id: poll again,
                 * but do not let the two of us spin. */
                hang_pause_locked(c, epoch, c->reconnect_min_ms);
                break;
            case CWIRE_WAIT_SHUTDOWN:
                session_lost_locked(c, epoch, LOSS_SERVER, w.why);
                break;
            case CWIRE_WAIT_ID_GONE:
                session_lost_locked(c, epoch, LOSS_ID_GONE, w.why);
                break;
            case CWIRE_WAIT_BAD:
            default:
                log_warn("client: %s (status %d); polling again shortly", w.why,
                         rep.resp.status);
                hang_pause_locked(c, epoch, c->reconnect_min_ms);
                break;
            }
        } else if (rc == -ECANCELED) {
            /* disconnect or a new session: the loop head sorts it out */
        } else if (unreachable || is_server_gone(rc) || rc == -EKEYREJECTED) {
            /* A TLS refusal too: the sign-in that follows finds out for good. */
            session_lost_locked(c, epoch, LOSS_SERVER, reason ? reason : "server gone");
        } else if (rc == -ETIMEDOUT) {
            log_debug("client: no answer to /wait within %d ms; polling again",
                      c->wait_timeout_ms);
        } else {
            /* Malformed answers, out of memory: not worth a new session. */
            log_warn("client: %s; polling again shortly", reason ? reason : "hanging GET failed");
            hang_pause_locked(c, epoch, c->reconnect_min_ms);
        }
        free(reason);
    }
    pthread_mutex_unlock(&c->mu);
    conn_close(conn);
    pthread_mutex_lock(&c->mu);
    c->hang_closed = true; /* the control thread signs out only after this */
    pthread_cond_broadcast(&c->ctl_cond);
    pthread_mutex_unlock(&c->mu);
    buf_free(&in);
    buf_free(&req);
    return NULL;
}

/* ---- public API ----------------------------------------------------------------- */

/* "USERNAME@hostname" as the stock client names itself (heap, or NULL). */
static char *default_name(void)
{
    const char *user = getenv("USERNAME");
    if (!user || !*user)
        user = "user";
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    buf_t b;
    buf_init(&b, 1024);
    if (buf_printf(&b, "%s@%s", user, host) < 0 || buf_append(&b, "", 1) < 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}

static void client_destroy(pcsig_client_t *c)
{
    if (c->sync_ready) {
        pthread_mutex_destroy(&c->life_mu);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->ctl_cond);
        pthread_cond_destroy(&c->hang_cond);
        pthread_cond_destroy(&c->ev_cond);
    }
    while (c->ev_head) {
        struct ev_item *it = c->ev_head;
        c->ev_head = it->next;
        c->ev_bytes -= it->bytes;
        pcsig_event_free(&it->ev);
    }
    while (c->q_head) {
        struct out_msg *m = c->q_head;
        c->q_head = m->next;
        out_msg_free(m);
    }
    if (c->ev_fd >= 0)
        close(c->ev_fd);
    if (c->ctl_wake >= 0)
        close(c->ctl_wake);
    if (c->hang_wake >= 0)
        close(c->hang_wake);
    tls_client_free(c->tls);
    tls_client_free(c->tls_hang);
    if (c->auth_token) {
        explicit_bzero(c->auth_token, strlen(c->auth_token));
        free(c->auth_token);
    }
    free(c->loss_reason);
    free(c->server);
    free(c->name);
    free(c->host_hdr);
    free(c);
}

pcsig_client_t *pcsig_client_new(const struct pcsig_client_options *opts)
{
    struct pcsig_client_options o = {0};
    if (opts)
        o = *opts;
    pcsig_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ev_fd = c->ctl_wake = c->hang_wake = -1;
    const char *server = o.server && *o.server ? o.server : CLIENT_DEFAULT_SERVER;
    c->server = dup_n(server, strlen(server));
    c->port = o.port ? o.port : CLIENT_DEFAULT_PORT;
    c->name = o.name && *o.name ? dup_n(o.name, strlen(o.name)) : default_name();
    c->keep_alive = o.keep_alive;
    c->use_tls = o.tls;
    if (o.tls) {
        struct tls_client_options to = {.ca_file = o.ca_file, .cert_file = o.cert_file,
                                        .key_file = o.key_file, .insecure = o.insecure};
        /* A library user gets the same loud warning as the CLI's user. */
        if (o.insecure)
            log_warn("TLS insecure mode: the server's certificate is NOT verified; anyone on "
                     "the path can read and change this session");
        char why[sizeof c->setup_error - 8] = "";
        if (cwire_test_tls_setup_fault || tls_client_new(&to, &c->tls, why, sizeof why) < 0 ||
            tls_client_new(&to, &c->tls_hang, why, sizeof why) < 0) {
            tls_client_free(c->tls);
            tls_client_free(c->tls_hang);
            c->tls = c->tls_hang = NULL;
            c->setup_failed = true;
            snprintf(c->setup_error, sizeof c->setup_error, "%s",
                     why[0] ? why : "TLS set-up failed");
        }
    }
    if (o.auth_token) {
        if (!cwire_token_ok(o.auth_token)) {
            /* (after a TLS failure too: the token must not be kept) */
            c->setup_failed = true;
            if (!c->setup_error[0])
                snprintf(c->setup_error, sizeof c->setup_error,
                     "the auth token must be 1 to %d bytes of visible ASCII (no spaces or "
                     "control characters)", CWIRE_MAX_TOKEN);
        } else if (!(c->auth_token = dup_s(o.auth_token))) {
            goto fail;
        }
    }
    c->allow_insecure_token = o.allow_insecure_token;
    c->max_event_bytes = o.max_event_bytes ? o.max_event_bytes : CLIENT_DEFAULT_MAX_EVENT_BYTES;
    c->max_peers = o.max_peers ? o.max_peers : CLIENT_DEFAULT_MAX_PEERS;
    c->wait_timeout_ms = o.wait_timeout_ms > 0 ? o.wait_timeout_ms : CLIENT_DEFAULT_WAIT_MS;
    c->request_timeout_ms = o.request_timeout_ms > 0 ? o.request_timeout_ms
                                                     : CLIENT_DEFAULT_REQUEST_MS;
    c->reconnect_min_ms = o.reconnect_min_ms > 0 ? o.reconnect_min_ms
                                                 : CLIENT_DEFAULT_RECONNECT_MIN_MS;
    c->reconnect_max_ms = o.reconnect_max_ms > 0 ? o.reconnect_max_ms
                                                 : CLIENT_DEFAULT_RECONNECT_MAX_MS;
    if (c->reconnect_max_ms < c->reconnect_min_ms)
        c->reconnect_max_ms = c->reconnect_min_ms;
    c->next_token = 1;
    if (!c->server || !c->name)
        goto fail;
    buf_t h;
    buf_init(&h, strlen(c->server) + 16);
    if (cwire_host_header(&h, c->server, c->port) < 0 || buf_append(&h, "", 1) < 0) {
        buf_free(&h);
        goto fail;
    }
    c->host_hdr = h.data;
    c->ev_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->ctl_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->hang_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->ev_fd < 0 || c->ctl_wake < 0 || c->hang_wake < 0)
        goto fail;
    if (pthread_mutex_init(&c->life_mu, NULL) != 0)
        goto fail;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        pthread_mutex_destroy(&c->life_mu);
        goto fail;
    }
    if (clock_cond_init(&c->ctl_cond) < 0)
        goto fail_mu;
    if (clock_cond_init(&c->hang_cond) < 0)
        goto fail_ctl;
    if (clock_cond_init(&c->ev_cond) < 0)
        goto fail_hang;
    c->sync_ready = true;
    return c;
fail_hang:
    pthread_cond_destroy(&c->hang_cond);
fail_ctl:
    pthread_cond_destroy(&c->ctl_cond);
fail_mu:
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->life_mu);
fail:
    client_destroy(c);
    return NULL;
}

const char *pcsig_client_setup_error(pcsig_client_t *c)
{
    return c->setup_failed ? c->setup_error : NULL;
}

int pcsig_client_connect(pcsig_client_t *c)
{
    if (c->setup_failed)
        return -EINVAL;
    pthread_mutex_lock(&c->life_mu);
    pthread_mutex_lock(&c->mu);
    if (c->running && c->dead) {
        /* A fatal error stopped the threads by themselves: reap them. */
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->hang_thread, NULL);
        pthread_join(c->ctl_thread, NULL);
        pthread_mutex_lock(&c->mu);
        c->running = false;
    }
    if (c->running) {
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_unlock(&c->life_mu);
        return -EALREADY;
    }
    /* A fresh start: stale wake-ups of an earlier run are dropped. */
    drain(c->ctl_wake);
    drain(c->hang_wake);
    c->closing = false;
    c->dead = false;
    c->hang_closed = false;
    c->close_note = NULL;
    c->signed_in = false;
    c->own_id = 0;
    c->loss = LOSS_NONE;
    c->id_gone_streak = 0;
    c->running = true;
    pthread_mutex_unlock(&c->mu);

    int rc = pthread_create(&c->ctl_thread, NULL, control_main, c);
    if (rc == 0) {
        rc = pthread_create(&c->hang_thread, NULL, hanging_main, c);
        if (rc != 0) {
            pthread_mutex_lock(&c->mu);
            c->closing = true;
            c->hang_closed = true; /* there is no hanging_get thread to wait for */
            c->close_deadline = clock_now_ms();
            pthread_cond_broadcast(&c->ctl_cond);
            pthread_mutex_unlock(&c->mu);
            wake(c->ctl_wake);
            pthread_join(c->ctl_thread, NULL);
        }
    }
    if (rc != 0) {
        pthread_mutex_lock(&c->mu);
        c->running = false;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&c->life_mu);
    return -rc;
}

int64_t pcsig_client_send(pcsig_client_t *c, uint64_t to, const char *content_type,
                          const void *data, size_t len)
{
    if (to == 0 || to > PROTO_MAX_ID || (content_type && !cwire_ctype_ok(content_type)) ||
        (len > 0 && data == NULL))
        return -EINVAL;
    pthread_mutex_lock(&c->mu);
    bool in = c->signed_in && !c->closing;
    uint64_t own = c->own_id, epoch = c->epoch;
    pthread_mutex_unlock(&c->mu);
    if (!in)
        return -ENOTCONN;

    /* Build the bytes here, outside the lock: the body is copied once. */
    size_t ctlen = content_type ? strlen(content_type) : 0;
    if (len > SIZE_MAX - ctlen - 256)
        return -ENOMEM;
    struct out_msg *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    buf_init(&m->req, len + ctlen + 256);
    int rc = buf_reserve(&m->req, len + ctlen + 160);
    if (rc == 0)
        rc = cwire_message(&m->req, own, to, content_type, data, len);
    if (rc == 0)
        rc = add_token(c, &m->req);
    if (rc < 0) {
        out_msg_free(m);
        return rc == -EINVAL ? -EINVAL : -ENOMEM;
    }
    m->from = own;
    m->to = to;

    pthread_mutex_lock(&c->mu);
    if (!c->signed_in || c->closing || c->epoch != epoch) {
        pthread_mutex_unlock(&c->mu);
        out_msg_free(m);
        return -ENOTCONN;
    }
    m->token = c->next_token++;
    if (c->q_tail)
        c->q_tail->next = m;
    else
        c->q_head = m;
    c->q_tail = m;
    int64_t token = (int64_t)m->token;
    pthread_cond_signal(&c->ctl_cond);
    pthread_mutex_unlock(&c->mu);
    return token;
}

uint64_t pcsig_client_id(pcsig_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t id = c->signed_in ? c->own_id : 0;
    pthread_mutex_unlock(&c->mu);
    return id;
}

int pcsig_client_disconnect(pcsig_client_t *c)
{
    pthread_mutex_lock(&c->life_mu);
    pthread_mutex_lock(&c->mu);
    if (!c->running) {
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_unlock(&c->life_mu);
        return 0;
    }
    if (!c->closing) {
        c->closing = true;
        c->close_deadline = clock_now_ms() + CLIENT_CLOSE_FLUSH_MS;
    }
    pthread_cond_broadcast(&c->ctl_cond);
    pthread_cond_broadcast(&c->hang_cond);
    pthread_mutex_unlock(&c->mu);
    wake(c->ctl_wake);
    wake(c->hang_wake);

    pthread_join(c->hang_thread, NULL);
    pthread_join(c->ctl_thread, NULL);

    pthread_mutex_lock(&c->mu);
    c->running = false;
    c->signed_in = false;
    c->own_id = 0;
    fail_queue_locked(c, "disconnected before the message was sent");
    if (!c->dead)
        emit_locked(c, ev_reason(PCSIG_EV_DISCONNECTED,
                                 c->close_note ? c->close_note : "disconnected"));
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&c->life_mu);
    return 0;
}

int pcsig_client_event_fd(pcsig_client_t *c)
{
    return c->ev_fd;
}

struct pcsig_event *pcsig_client_next_event(pcsig_client_t *c, int timeout_ms)
{
    struct timespec ts;
    if (timeout_ms > 0)
        ts = clock_deadline_in((uint64_t)timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (!c->ev_head && timeout_ms != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&c->ev_cond, &c->mu);
        } else if (pthread_cond_timedwait(&c->ev_cond, &c->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    struct ev_item *it = c->ev_head;
    if (it) {
        c->ev_bytes -= it->bytes;
        /* Below the cap again: a throttled hanging_get may poll. */
        if (c->hang_throttled && c->ev_bytes <= c->max_event_bytes)
            pthread_cond_broadcast(&c->hang_cond);
        c->ev_head = it->next;
        if (!c->ev_head) {
            c->ev_tail = NULL;
            drain(c->ev_fd);
        }
        it->next = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return it ? &it->ev : NULL;
}

void pcsig_client_free(pcsig_client_t *c)
{
    if (!c)
        return;
    pcsig_client_disconnect(c);
    client_destroy(c);
}
