/*
 * client_internal: what the parts of the client library share (the API
 * and its contract are in pcsig_client.h; the bytes on the wire are built
 * and classified in client_wire.c). The parts, one job each:
 *   - client_state.c   the session state under c->mu: the event queue, the
 *                      outgoing queue, the end of a session;
 *   - client_io.c      one HTTP exchange on one connection, interruptible,
 *                      with its own TLS context and error text (struct cio);
 *   - client_control.c the control thread: sign-in, messages, sign-out;
 *   - client_hang.c    the hanging_get thread: the /wait loop;
 *   - pcsig_client.c   the public API: new, connect, send, disconnect, free.
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
#ifndef PCSIG_CLIENT_INTERNAL_H
#define PCSIG_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "client_wire.h"
#include "conn.h"
#include "http.h"
#include "pcsig_client.h"
#include "proto.h"
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

/*
 * Where a client is in its life (under mu). Only these moves happen:
 *   STOPPED -connect-> SIGNING_IN <-loss / sign-in-> SIGNED_IN
 *   SIGNING_IN -disconnect-> CLOSING;  SIGNED_IN -disconnect-> FLUSHING
 *   FLUSHING -sign-out or loss-> CLOSING
 *   CLOSING -sign-in done during it-> FLUSHING (to sign out again)
 *   SIGNING_IN or CLOSING -fatal sign-in answer-> DEAD
 *   any -threads joined (disconnect, or connect after DEAD)-> STOPPED
 */
enum cl_state {
    CL_STOPPED = 0, /* no threads (new, or joined) */
    CL_SIGNING_IN,  /* threads run, no session: first sign-in, or backoff after a loss */
    CL_SIGNED_IN,   /* a session: own_id and epoch are its */
    CL_FLUSHING,    /* disconnect asked while signed in: queued messages go out, then
                       the sign-out */
    CL_CLOSING,     /* disconnect asked, no session (any more): the threads stop */
    CL_DEAD,        /* a fatal error stopped the threads by themselves; DISCONNECTED is
                       queued already; the next connect or disconnect joins them */
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
    enum cl_state state; /* see enum cl_state */
    bool hang_closed; /* the hanging_get thread has closed its connection for good */
    const char *close_note; /* how the last run ended (static text), for DISCONNECTED */
    uint64_t close_deadline;
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

/* The threads were asked to stop (disconnect or a fatal error). */
static inline bool cl_closing(const pcsig_client_t *c)
{
    return c->state >= CL_FLUSHING;
}

/* A session is on (own_id is ours), also while a disconnect flushes it. */
static inline bool cl_signed_in(const pcsig_client_t *c)
{
    return c->state == CL_SIGNED_IN || c->state == CL_FLUSHING;
}

/* The session ends (a loss, or the sign-out): SIGNED_IN -> SIGNING_IN,
 * FLUSHING -> CLOSING; other states stay. Caller holds mu. */
static inline void cl_session_off(pcsig_client_t *c)
{
    if (c->state == CL_SIGNED_IN)
        c->state = CL_SIGNING_IN;
    else if (c->state == CL_FLUSHING)
        c->state = CL_CLOSING;
}

/* ---- client_state.c: helpers, events, the end of a session ------------------- */

/* A heap copy of s[0..n) plus a NUL (of s up to its NUL); NULL when out of
 * memory. Caller frees. */
char *cl_dup_n(const char *s, size_t n);
char *cl_dup_s(const char *s);
/* Make the eventfd fd readable / read it empty. */
void cl_wake(int fd);
void cl_drain(int fd);
/* Milliseconds until the monotonic deadline, 0 when past. */
int cl_remaining_ms(uint64_t deadline);
/* A zeroed event of type t, or NULL. Caller owns it (pcsig_event_free). */
struct pcsig_event *cl_ev_new(enum pcsig_event_type t);
/* An event with a reason copied from text (may be NULL), or NULL. */
struct pcsig_event *cl_ev_reason(enum pcsig_event_type t, const char *text);
/* A MESSAGE event from a classified answer; NULL when out of memory. */
struct pcsig_event *cl_message_event(const struct cwire_wait_result *w, const char *body,
                                     size_t len);
/* PEER_JOINED / PEER_LEFT for a list entry; NULL when out of memory. */
struct pcsig_event *cl_peer_event(enum pcsig_event_type t, const proto_entry_t *e);
/* Queue ev (ownership passes; NULL: logged as lost). Caller holds mu. */
void cl_emit_locked(pcsig_client_t *c, struct pcsig_event *ev);
/* MESSAGE_FAILED for m. Caller holds mu. */
void cl_emit_failed_locked(pcsig_client_t *c, const struct out_msg *m, int status,
                           const char *reason);
void cl_out_msg_free(struct out_msg *m);
/* Fail every queued message with reason. Caller holds mu. */
void cl_fail_queue_locked(pcsig_client_t *c, const char *reason);
/* The session of epoch ended (the first report wins). Caller holds mu. */
void cl_session_lost_locked(pcsig_client_t *c, uint64_t epoch, enum loss_kind kind,
                            const char *reason);

/* ---- client_io.c: one HTTP exchange, interruptible ---------------------------- */

enum close_policy {
    IO_CANCEL_ON_CLOSE, /* sign-in, /wait: stop at once on disconnect */
    IO_CLOSE_DEADLINE,  /* messages: finish within the close budget */
    IO_OWN_DEADLINE,    /* sign-out: its own short deadline only */
};

/* One exchange's context, on the stack of the thread that runs it: what
 * cancels it, its deadline, the TLS context of that thread (one per thread:
 * each keeps the session tickets of its own connections) and, after a
 * -EKEYREJECTED, the TLS failure's text. */
struct cio {
    pcsig_client_t *c;
    int wake_fd;
    enum close_policy policy;
    uint64_t epoch;    /* non-zero: cancel when the session changes */
    uint64_t deadline; /* monotonic ms */
    tls_client_t *tls; /* used when c->use_tls (never decides it) */
    char tls_failure[CONN_ERROR_MAX + 64];
    http_parse_state_t head; /* cio_read_head's progress through a head */
};

struct cio_reply {
    http_response_t resp;
    const char *body; /* into the input buffer */
    size_t body_len;
    size_t total;     /* head + body bytes, to consume afterwards */
};

/* Is the exchange over (disconnect, a new session, its deadline)? 0, or
 * -ECANCELED / -ETIMEDOUT. */
int cio_check(struct cio *io);
/* Wait until conn can do events: 0, -ETIMEDOUT, -ECANCELED or -errno. */
int cio_wait(struct cio *io, conn_t *conn, short events);
/* A new connection (TLS when c->use_tls, never plain then): 0 and *out, or -errno. */
int cio_connect(struct cio *io, conn_t **out);
/* Add our secure-ids token (if the server gave us one) to a request. */
int cio_add_token(pcsig_client_t *c, buf_t *req);
/* Write all of req: 0, -ECANCELED, -ETIMEDOUT or -errno. */
int cio_send_all(struct cio *io, conn_t *conn, const buf_t *req);
/* One read, waiting while conn would block: count, 0 at EOF, or -errno. */
ssize_t cio_read_some(struct cio *io, conn_t *conn, char *dst, size_t n);
/* Read one complete response into in: 0 with *rep, or -errno (see there). */
int cio_read_response(struct cio *io, conn_t *conn, buf_t *in, struct cio_reply *rep,
                      bool *got_bytes);
/* Read until the response head in `in` (empty at first) is complete: its
 * length (> 0), or -errno; each byte is scanned a bounded number of times
 * (io->head), however the head is split into reads. */
long cio_read_head(struct cio *io, conn_t *conn, buf_t *in, http_response_t *resp,
                   bool *got_bytes);
/* Errors that mean the server (not just one request) is gone. */
bool cio_server_gone(int rc);
/* A TLS failure that says why becomes -EKEYREJECTED, its text in io. */
int cio_tls_verdict(struct cio *io, conn_t *conn, int rc, bool got_bytes);
/* A reset TLS connection: one more read for an alert behind it. */
int cio_tls_alert_after_reset(conn_t *conn, int rc, bool got_bytes);
/* One request on a new connection, closed afterwards. */
int cio_request(struct cio *io, const buf_t *req, buf_t *in, struct cio_reply *rep,
                bool *connect_failed);
/* A reason for a failed exchange (heap, or NULL). Caller frees. */
char *cio_reason(const struct cio *io, const char *what, bool connecting, int rc);
/* "<status> <reason>[: <short text body>]" for a non-200 answer (heap). */
char *cio_status_reason(const struct cio_reply *rep);

/* ---- the threads ---------------------------------------------------------------- */

void *cl_control_main(void *arg); /* client_control.c */
void *cl_hanging_main(void *arg); /* client_hang.c */

#endif
