/*
 * bench_peers: the receiver side of pcsig-bench. A few event-loop threads
 * (epoll, edge-triggered, non-blocking sockets) each own the peers with
 * index % loops == their index: they sign them in, keep one hanging /wait
 * per peer and re-poll after every answer, the way the stock client does
 * (a new HTTP/1.0 connection per request) or over one persistent HTTP/1.1
 * connection per peer (--keepalive). Every answer is classified and every
 * relayed message checked (intact, exactly once, in order per sender
 * thread -> receiver) and timed. Nothing here blocks; nothing is shared
 * between loops except the atomics and bitmaps of struct bench.
 *
 * --batch: every /wait carries X-Pcsig-Batch: 1, and an answer in the batch
 * format (BENCH_BATCH_CTYPE) is taken apart strictly into its records, each
 * handled exactly as a separate answer would be (the same checks, a latency
 * per message). Any flaw in the framing counts as unexpected (the run
 * fails); the records before the flaw still count.
 */
#include "bench.h"
#include "strlit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "proto.h"

#define LOOP_EVENTS 512
#define LOOP_TICK_MS 10
#define LOOP_KEEP_CAP 8192 /* input buffers above this are released after an answer */
#define LOOP_LOG_MAX 5     /* detailed reports of each kind of anomaly, per loop */

enum pc_kind { PK_SIGNIN, PK_WAIT, PK_SIGNOUT, PK_PROBE };
enum pc_state { PS_CONNECTING, PS_WRITING, PS_READING };

struct pconn {
    struct bench_conn bc;
    enum pc_kind kind;
    enum pc_state state;
    struct bench_peer *peer;
    struct pconn *prev, *next; /* the loop's open connections */
    char req[320];
    size_t req_len, req_off;
    buf_t in;
    long head_len;  /* > 0 once the answer's head has arrived */
    uint64_t clen;
    bool gated;     /* --stepwise-join: holds one of the loop's C slots until written */
    size_t covers;  /* PK_PROBE: the written /waits whose acceptance its answer shows */
};

struct bench_loop {
    struct bench *b;
    unsigned idx;
    int epfd;
    tls_client_t *tls;      /* --tls: this loop's client context */
    pthread_t th;
    bool started;
    uint32_t next_signin;   /* next peer index to sign in (steps by loops) */
    unsigned signin_inflight;
    bool signout_started;
    uint32_t next_signout;
    unsigned signout_inflight;
    atomic_bool signout_done;
    struct pconn *conns;
    uint32_t *retry;        /* peers with a pending re-poll or retry */
    size_t nretry, cap_retry;
    /* --stepwise-join: /wait connections holding a slot (connecting or
     * writing), those written since the last probe, whether a probe is out,
     * and the peers waiting for a slot (a ring of peer indices; a peer is in
     * it at most once) */
    unsigned wait_opening;
    size_t since_probe;
    bool probing;
    uint32_t *deferred;
    size_t ndeferred, deferred_head, cap_deferred;
    struct bench_hist hist;
    uint64_t last_delivery_ns;
    uint64_t batch_answers, batch_records, batch_max; /* --batch */
    unsigned logged_corrupt, logged_unexpected, logged_errors;
};

/* ---- connections -------------------------------------------------------- */

/* A gated /wait connection was written (it stays unsettled until a probe's
 * answer shows the server took it) or is gone: its slot is free. */
static void pc_ungate(struct bench_loop *l, struct pconn *c, bool written)
{
    if (!c->gated)
        return;
    c->gated = false;
    l->wait_opening--;
    if (written)
        l->since_probe++;
    else
        atomic_fetch_sub(&l->b->waits_unsent, 1);
}

/* A probe answered (or failed): the /waits written before it are settled. */
static void pc_probe_done(struct bench_loop *l, struct pconn *c)
{
    if (c->kind != PK_PROBE || !l->probing)
        return;
    l->probing = false;
    atomic_fetch_sub(&l->b->waits_unsent, c->covers + 1);
    c->covers = 0;
}

static void pc_free(struct bench_loop *l, struct pconn *c)
{
    pc_ungate(l, c, false);
    pc_probe_done(l, c);
    if (c->peer && c->peer->wait == c)
        c->peer->wait = NULL;
    bench_close(&c->bc); /* also leaves the epoll set */
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    buf_free(&c->in);
    free(c);
}

/* Format the request of kind for c->peer into c->req. 0 or -E2BIG. */
static int pc_format(struct bench_loop *l, struct pconn *c, enum pc_kind kind)
{
    const struct bench *b = l->b;
    unsigned long long id = (unsigned long long)c->peer->id;
    int n;

    if (kind == PK_SIGNIN && b->o.keepalive)
        n = snprintf(c->req, sizeof c->req,
                     "GET /sign_in?bench%" PRIu32 " HTTP/1.1\r\nHost: %s\r\n\r\n",
                     c->peer->index, b->host_hdr);
    else if (kind == PK_SIGNIN)
        n = snprintf(c->req, sizeof c->req, "GET /sign_in?bench%" PRIu32 " HTTP/1.0\r\n\r\n",
                     c->peer->index);
    else if (kind == PK_WAIT && b->o.keepalive)
        n = snprintf(c->req, sizeof c->req,
                     "GET /wait?peer_id=%llu HTTP/1.1\r\nHost: %s\r\n%s\r\n", id,
                     b->host_hdr, b->o.batch ? "X-Pcsig-Batch: 1\r\n" : "");
    else if (kind == PK_WAIT)
        n = snprintf(c->req, sizeof c->req, "GET /wait?peer_id=%llu HTTP/1.0\r\n%s\r\n", id,
                     b->o.batch ? "X-Pcsig-Batch: 1\r\n" : "");
    else if (kind == PK_SIGNOUT)
        n = snprintf(c->req, sizeof c->req, "GET /sign_out?peer_id=%llu HTTP/1.0\r\n\r\n", id);
    else /* the original answers OPTIONS at once, as pcsig-server does */
        n = snprintf(c->req, sizeof c->req, "OPTIONS /sign_in HTTP/1.0\r\n\r\n");
    if (n < 0 || (size_t)n >= sizeof c->req)
        return -E2BIG;
    c->kind = kind;
    c->req_len = (size_t)n;
    c->req_off = 0;
    c->head_len = 0;
    c->clen = 0;
    buf_reset(&c->in);
    return 0;
}

/* A new connection for peer carrying a request of kind; NULL with *err set. */
static struct pconn *pc_open(struct bench_loop *l, struct bench_peer *peer, enum pc_kind kind,
                             int *err)
{
    struct bench *b = l->b;
    struct pconn *c = calloc(1, sizeof *c);
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    c->peer = peer;
    size_t list_max = (size_t)b->o.peers * (PROTO_MAX_NAME + 32) + 4096;
    size_t body_max = b->o.size > list_max ? b->o.size : list_max;
    if (b->o.batch && body_max < BENCH_BATCH_MAX_BODY)
        body_max = BENCH_BATCH_MAX_BODY; /* a limit only: memory is taken as bytes come */
    buf_init(&c->in, BENCH_RESP_MAX_HEAD + body_max);
    if ((*err = pc_format(l, c, kind)) < 0) {
        free(c);
        return NULL;
    }
    if ((*err = bench_open(b, l->tls, &c->bc)) < 0) {
        free(c);
        return NULL;
    }
    /* Both directions, edge-triggered: covers whatever conn_want() asks for. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, bench_fd(&c->bc), &ev) < 0) {
        *err = -errno;
        bench_close(&c->bc);
        free(c);
        return NULL;
    }
    c->state = PS_CONNECTING;
    c->next = l->conns;
    if (c->next)
        c->next->prev = c;
    l->conns = c;
    return c;
}

static void loop_retry_later(struct bench_loop *l, struct bench_peer *p, uint64_t delay_ms)
{
    if (p->retry_at_ms == 0) {
        if (l->nretry == l->cap_retry) {
            size_t cap = l->cap_retry ? l->cap_retry * 2 : 64;
            uint32_t *r = realloc(l->retry, cap * sizeof *r);
            if (!r) {
                log_error("out of memory for the retry list");
                atomic_store(&l->b->stop, true);
                return;
            }
            l->retry = r;
            l->cap_retry = cap;
        }
        l->retry[l->nretry++] = p->index;
    }
    p->retry_at_ms = clock_now_ms() + delay_ms;
}

static void note_error(struct bench_loop *l, const struct pconn *c, const char *what, int err)
{
    if (l->logged_errors++ < LOOP_LOG_MAX)
        log_errno(LOG_WARN, err < 0 ? err : 0,
                  "peer %" PRIu32 " (id %" PRIu64 "): %s on its %s connection",
                  c->peer->index, c->peer->id, what,
                  c->kind == PK_SIGNIN ? "sign-in" : c->kind == PK_WAIT ? "/wait"
                  : c->kind == PK_PROBE ? "probe" : "sign-out");
}

static void pc_start_wait(struct bench_loop *l, struct bench_peer *p, struct pconn *reuse);

/* A connection failed before its answer was complete; c is freed. */
static void pc_broken(struct bench_loop *l, struct pconn *c, int err, bool before_request)
{
    struct bench *b = l->b;
    struct bench_peer *p = c->peer;
    enum pc_kind kind = c->kind;
    note_error(l, c, before_request ? "cannot connect" : "connection lost before the answer", err);
    pc_free(l, c);
    switch (kind) {
    case PK_SIGNIN:
        if (before_request) {
            loop_retry_later(l, p, BENCH_RETRY_MS); /* still counted in flight */
        } else {
            /* The server may have signed it in: retrying could sign in twice. */
            atomic_fetch_add(&b->signin_failed, 1);
            l->signin_inflight--;
        }
        break;
    case PK_WAIT:
        atomic_fetch_add(&b->wait_errors, 1);
        loop_retry_later(l, p, BENCH_RETRY_MS);
        break;
    case PK_SIGNOUT:
        l->signout_inflight--; /* best effort */
        break;
    case PK_PROBE: /* pacing only: pc_free settled what it covered */
        break;
    }
}

/* Before its TLS handshake completed, a connection carried no request. */
static bool pc_before_request(const struct pconn *c)
{
    return !bench_established(&c->bc);
}

/* Write what is left of the request (the first writes also drive the TLS
 * handshake); false when c was freed. */
static bool pc_flush(struct bench_loop *l, struct pconn *c)
{
    int rc = bench_write(l->b, &c->bc, c->req, c->req_len, &c->req_off);
    if (rc < 0) {
        pc_broken(l, c, rc, pc_before_request(c));
        return false;
    }
    if (rc > 0) {
        c->state = PS_READING;
        pc_ungate(l, c, true);
    }
    return true;
}

/* ---- answers ------------------------------------------------------------ */

static bool pragma_of(const http_response_t *r, uint64_t *id)
{
    const http_header_t *h = http_find_header(r->headers, r->num_headers, "Pragma");
    return h && proto_parse_u64(h->value.ptr, h->value.len, id) == 0;
}

static void note_unexpected(struct bench_loop *l, const struct pconn *c, const http_response_t *r,
                            const char *body, size_t blen, const char *what)
{
    atomic_fetch_add(&l->b->unexpected, 1);
    if (l->logged_unexpected++ < LOOP_LOG_MAX) {
        buf_t e;
        buf_init(&e, 512);
        log_escape(&e, body, blen, 120);
        log_warn("peer %" PRIu32 " (id %" PRIu64 "): %s: %d %.*s, body \"%.*s\"", c->peer->index,
                 c->peer->id, what, r->status, (int)r->reason.len, r->reason.ptr, (int)e.len,
                 e.data ? e.data : "");
        buf_free(&e);
    }
}

static void check_message(struct bench_loop *l, struct pconn *c, uint64_t from, const char *body,
                          size_t blen)
{
    struct bench *b = l->b;
    struct bench_peer *p = c->peer;
    struct bench_msg m;
    uint64_t now = bench_now_ns();

    if (bench_body_decode(body, blen, b->o.size, &m) < 0 || m.sender >= b->o.senders ||
        m.num >= b->msgs_for[m.sender] || m.to != p->index || m.from_id != from || m.seq == 0) {
        atomic_fetch_add(&b->corrupt, 1);
        if (l->logged_corrupt++ < LOOP_LOG_MAX) {
            buf_t e;
            buf_init(&e, 512);
            log_escape(&e, body, blen, 120);
            log_warn("peer %" PRIu32 " (id %" PRIu64 "): bad message from %" PRIu64
                     " (%zu bytes): \"%.*s\"",
                     p->index, p->id, from, blen, (int)e.len, e.data ? e.data : "");
            buf_free(&e);
        }
        return;
    }
    uint64_t bit = 1ull << (m.num % 64);
    uint64_t old = atomic_fetch_or(&b->seen[m.sender][m.num / 64], bit);
    if (old & bit) {
        atomic_fetch_add(&b->dups, 1);
        return;
    }
    atomic_fetch_add(&b->delivered, 1);
    hist_add(&l->hist, now > m.t_ns ? (now - m.t_ns) / 1000u : 0);
    l->last_delivery_ns = now;
    uint32_t *last = &b->last_seq[(size_t)p->index * b->o.senders + m.sender];
    if (m.seq <= *last)
        atomic_fetch_add(&b->reordered, 1);
    else
        *last = m.seq;
}

/* A flaw in a batch answer (or a batch where none belongs): unexpected. */
static void note_bad_batch(struct bench_loop *l, const struct pconn *c, const char *body,
                           size_t blen, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void note_bad_batch(struct bench_loop *l, const struct pconn *c, const char *body,
                           size_t blen, size_t at, const char *fmt, ...)
{
    atomic_fetch_add(&l->b->unexpected, 1);
    if (l->logged_unexpected++ >= LOOP_LOG_MAX)
        return;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    buf_t e;
    buf_init(&e, 512);
    if (at > blen)
        at = blen;
    log_escape(&e, body + at, blen - at, 120);
    log_warn("peer %" PRIu32 " (id %" PRIu64 "): malformed batch answer (%zu body bytes): %s; "
             "at byte %zu: \"%.*s\"",
             c->peer->index, c->peer->id, blen, what, at, (int)e.len, e.data ? e.data : "");
    buf_free(&e);
}

static bool is_text_plain(const char *ct, size_t n)
{
    return n == STRLIT_LEN("text/plain") && memcmp(ct, STRLIT("text/plain")) == 0;
}

/* A join/leave notification body (one entry): counted; false when it is not one. */
static bool count_notification(struct bench *b, const char *body, size_t blen)
{
    proto_entry_t e;
    long used = proto_entry_parse(body, blen, &e);
    if (used <= 0 || (size_t)used != blen)
        return false;
    if (bench_is_churn_name(e.name, e.name_len)) {
        atomic_fetch_add(e.connected ? &b->churn_joins : &b->churn_leaves, 1);
    } else if (e.connected) {
        uint64_t n = atomic_fetch_add(&b->joins, 1) + 1;
        if (n == b->join_target)
            atomic_store(&b->t_joined_ns, bench_now_ns());
    } else {
        atomic_fetch_add(&b->leaves, 1);
    }
    return true;
}

/* One record of a batch, handled as its own answer would be. */
static void on_record(struct bench_loop *l, struct pconn *c, const struct bench_record *rec,
                      size_t index, const char *body, size_t blen, size_t at)
{
    struct bench_peer *p = c->peer;
    /* The bench's senders and the server's notifications both say text/plain. */
    if (!is_text_plain(rec->ctype, rec->ctype_len))
        note_bad_batch(l, c, body, blen, at, "record %zu (pragma %" PRIu64 "): content type "
                       "\"%.*s\", not text/plain", index, rec->pragma,
                       (int)(rec->ctype_len < 64 ? rec->ctype_len : 64), rec->ctype);
    if (rec->pragma != p->id) {
        check_message(l, c, rec->pragma, rec->body, rec->body_len);
        return;
    }
    if (!count_notification(l->b, rec->body, rec->body_len))
        note_bad_batch(l, c, body, blen, at, "record %zu has our own id %" PRIu64 " as pragma "
                       "but its %zu-byte body is not one name,id,connected entry", index,
                       rec->pragma, rec->body_len);
}

/* An answer in the batch format (or claiming to be one) to a batched /wait. */
static void on_batch_answer(struct bench_loop *l, struct pconn *c, const http_response_t *r,
                            uint64_t pragma, const char *body, size_t blen)
{
    struct bench_peer *p = c->peer;
    const http_header_t *count_h = NULL;
    unsigned ncount = 0;
    uint64_t count = 0;
    for (size_t i = 0; i < r->num_headers; i++) {
        const http_header_t *h = &r->headers[i];
        if (h->name.len == strlen(BENCH_BATCH_COUNT_HDR) &&
            strncasecmp(h->name.ptr, BENCH_BATCH_COUNT_HDR, h->name.len) == 0) {
            count_h = h;
            ncount++;
        }
    }
    if (!r->has_content_type || !http_slice_eq(r->content_type, BENCH_BATCH_CTYPE)) {
        note_bad_batch(l, c, body, blen, 0, BENCH_BATCH_COUNT_HDR " without Content-Type "
                       BENCH_BATCH_CTYPE);
        return;
    }
    if (ncount != 1 || proto_parse_u64(count_h->value.ptr, count_h->value.len, &count) < 0 ||
        count == 0) {
        note_bad_batch(l, c, body, blen, 0, "%s " BENCH_BATCH_COUNT_HDR " header%s%.*s",
                       ncount == 0 ? "no" : ncount > 1 ? "more than one" : "a bad",
                       ncount == 1 ? ": " : "", ncount == 1 ? (int)count_h->value.len : 0,
                       ncount == 1 ? count_h->value.ptr : "");
        return;
    }
    if (pragma != p->id) {
        note_bad_batch(l, c, body, blen, 0, "Pragma %" PRIu64 " is not our own id", pragma);
        return;
    }
    size_t off = 0, k = 0;
    for (;;) {
        struct bench_record rec;
        const char *why = NULL;
        size_t at = off;
        int rc = bench_batch_next(body, blen, &off, &rec, &why);
        if (rc == 0)
            break;
        if (rc < 0) {
            note_bad_batch(l, c, body, blen, at, "record %zu of %" PRIu64 ": %s", k, count, why);
            break;
        }
        on_record(l, c, &rec, k, body, blen, at);
        k++;
    }
    if (off == blen && k != count)
        note_bad_batch(l, c, body, blen, 0, BENCH_BATCH_COUNT_HDR " says %" PRIu64
                       " but the body holds %zu records", count, k);
    l->batch_answers++;
    l->batch_records += k;
    if (k > l->batch_max)
        l->batch_max = k;
}

/* One answer to a /wait; returns true when the peer should poll again now. */
static bool on_wait_answer(struct bench_loop *l, struct pconn *c, const http_response_t *r,
                           const char *body, size_t blen)
{
    struct bench *b = l->b;
    struct bench_peer *p = c->peer;
    uint64_t pragma;

    if (r->status == 503) { /* e.g. the connection cap: try again shortly */
        atomic_fetch_add(&b->wait_errors, 1);
        note_unexpected(l, c, r, body, blen, "/wait refused");
        loop_retry_later(l, p, BENCH_RETRY_MS);
        return false;
    }
    if (r->status == 500) {
        p->dead = true;
        atomic_fetch_add(&b->gone, 1);
        note_unexpected(l, c, r, body, blen, "/wait: the server forgot this peer");
        return false;
    }
    if (r->status != 200 || !pragma_of(r, &pragma)) {
        /* 409 means another /wait of ours replaced this one: never re-poll. */
        note_unexpected(l, c, r, body, blen, "unexpected /wait answer");
        return false;
    }
    bool batch_form = (r->has_content_type && http_slice_eq(r->content_type, BENCH_BATCH_CTYPE)) ||
                      http_find_header(r->headers, r->num_headers, BENCH_BATCH_COUNT_HDR);
    if (batch_form && !b->o.batch) {
        note_bad_batch(l, c, body, blen, 0, "a batch answer to a /wait that did not ask for one");
        return true;
    }
    if (batch_form) {
        on_batch_answer(l, c, r, pragma, body, blen);
        return true;
    }
    if (pragma != p->id) {
        if (b->o.batch)
            note_unexpected(l, c, r, body, blen, "a message not in the batch format");
        check_message(l, c, pragma, body, blen);
        return true;
    }
    if (blen == 0) {
        atomic_fetch_add(&b->idle_answers, 1); /* --wait-timeout: poll again */
        return true;
    }
    proto_entry_t e;
    long used = proto_entry_parse(body, blen, &e);
    if (used <= 0 || (size_t)used != blen) {
        if (blen == STRLIT_LEN("Server shutting down") && memcmp(body, STRLIT("Server shutting down")) == 0) {
            p->dead = true;
            atomic_fetch_add(&b->gone, 1);
            return false;
        }
        note_unexpected(l, c, r, body, blen, "notification is not one entry");
        return true;
    }
    /* Batched, only our own removal (",0" with our id) comes unbatched. */
    if (b->o.batch && (e.connected || e.id != p->id))
        note_unexpected(l, c, r, body, blen, "a notification not in the batch format");
    count_notification(b, body, blen);
    return true;
}

/* Returns true when the sign-in succeeded (p->id set). */
static bool on_signin_answer(struct bench_loop *l, struct pconn *c, const http_response_t *r,
                             const char *body, size_t blen)
{
    struct bench *b = l->b;
    struct bench_peer *p = c->peer;
    uint64_t id;
    proto_entry_t e;

    l->signin_inflight--;
    if (r->status != 200 || !pragma_of(r, &id) || id == 0) {
        atomic_fetch_add(&b->signin_failed, 1);
        note_unexpected(l, c, r, body, blen, "sign-in failed");
        return false;
    }
    if (proto_entry_parse(body, blen, &e) <= 0 || e.id != id)
        note_unexpected(l, c, r, body, blen, "sign-in list does not start with our entry");
    p->id = id;
    /* --stepwise-join: the next sign-in also waits for this peer's first
     * /wait (pc_complete sends it and drops this count). */
    if (b->o.stepwise)
        atomic_fetch_add(&b->waits_unsent, 1);
    uint64_t n = atomic_fetch_add(&b->signed_in, 1) + 1;
    if (n == b->o.peers) {
        atomic_store(&b->t_signed_in_ns, bench_now_ns());
        if (b->join_target == 0)
            atomic_store(&b->t_joined_ns, bench_now_ns());
    }
    return true;
}

/* A complete answer is in c->in; false when c was freed or handed on. */
static bool pc_complete(struct bench_loop *l, struct pconn *c)
{
    struct bench *b = l->b;
    struct bench_peer *p = c->peer;
    const http_limits_t lim = {.max_head = BENCH_RESP_MAX_HEAD, .max_body = c->in.max};
    http_response_t r;
    http_error_t err;
    long head = http_parse_response(c->in.data, c->in.len, &lim, &r, &err);
    if (head <= 0) { /* cannot happen: the same bytes parsed before */
        pc_broken(l, c, -EPROTO, false);
        return false;
    }
    const char *body = c->in.data + head;
    size_t blen = (size_t)c->clen;
    bool keep = b->o.keepalive && !r.connection_close;
    int phase = atomic_load(&b->phase);
    bool first_wait = c->kind == PK_SIGNIN && b->o.stepwise; /* see on_signin_answer */

    switch (c->kind) {
    case PK_SIGNIN:
        if (!on_signin_answer(l, c, &r, body, blen)) {
            pc_free(l, c);
            return false;
        }
        break;
    case PK_WAIT:
        if (!on_wait_answer(l, c, &r, body, blen) || p->dead || phase >= PH_SIGNOUT) {
            pc_free(l, c);
            return false;
        }
        break;
    case PK_SIGNOUT:
        l->signout_inflight--;
        atomic_fetch_add(&b->signed_out, 1);
        pc_free(l, c);
        return false;
    case PK_PROBE:
        pc_free(l, c);
        return false;
    }
    /* Poll again: on this connection with keep-alive, else on a new one. */
    if (keep && c->in.len == (size_t)head + blen) {
        if (c->in.cap > LOOP_KEEP_CAP)
            buf_free(&c->in);
        pc_start_wait(l, p, c);
        if (first_wait)
            atomic_fetch_sub(&b->waits_unsent, 1);
        return p->wait == c && c->state == PS_READING;
    }
    if (keep)
        note_error(l, c, "bytes after the answer", 0);
    pc_free(l, c);
    pc_start_wait(l, p, NULL);
    if (first_wait)
        atomic_fetch_sub(&b->waits_unsent, 1);
    return false;
}

/* Read all that is there; handle a complete answer. c may be freed. */
static void pc_read(struct bench_loop *l, struct pconn *c)
{
    const http_limits_t lim = {.max_head = BENCH_RESP_MAX_HEAD, .max_body = c->in.max};
    /* Every parked /wait holds this much: bounded, large bodies take several reads. */
    size_t chunk = 1024 + (l->b->o.size < 15360 ? l->b->o.size : 15360);

    for (;;) {
        long n = bench_read(l->b, &c->bc, &c->in, chunk);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            pc_broken(l, c, n == 0 ? -ECONNRESET : (int)n, pc_before_request(c));
            return;
        }
        if (c->state != PS_READING) {
            /* Nothing may arrive before the request is out. */
            note_error(l, c, "bytes before the request was sent", 0);
            pc_broken(l, c, -EPROTO, false);
            return;
        }
        if (c->head_len == 0) {
            http_response_t r;
            http_error_t err;
            long head = http_parse_response(c->in.data, c->in.len, &lim, &r, &err);
            if (head == HTTP_NEED_MORE)
                continue;
            if (head < 0 || !r.has_content_length) {
                buf_t e;
                buf_init(&e, 512);
                log_escape(&e, c->in.data, c->in.len, 200);
                log_warn("peer %" PRIu32 ": unparsable answer (%s): \"%.*s\"", c->peer->index,
                         head < 0 ? err.reason : "no Content-Length", (int)e.len,
                         e.data ? e.data : "");
                buf_free(&e);
                atomic_fetch_add(&l->b->unexpected, 1);
                pc_broken(l, c, -EPROTO, false);
                return;
            }
            c->head_len = head;
            c->clen = r.content_length;
            /* A large body (a batch): room for all of it, so it comes in big reads. */
            size_t whole = (size_t)head + (size_t)r.content_length;
            if (whole > c->in.cap && whole - c->in.len <= buf_room(&c->in))
                (void)buf_reserve(&c->in, whole - c->in.len);
        }
        if (c->in.len >= (size_t)c->head_len + c->clen) {
            if (!pc_complete(l, c))
                return;
        }
    }
}

static void pc_event(struct bench_loop *l, struct pconn *c, uint32_t events)
{
    if (c->state == PS_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = bench_so_error(bench_fd(&c->bc));
        if (err) {
            pc_broken(l, c, -err, true);
            return;
        }
        c->state = PS_WRITING;
    }
    if (c->state == PS_WRITING && !pc_flush(l, c))
        return;
    /* A TLS handshake in progress is driven by the writes alone: every edge
     * comes back to pc_flush until the request can go. */
    if (!bench_established(&c->bc))
        return;
    pc_read(l, c);
}

/* ---- per-peer actions --------------------------------------------------- */

/* --stepwise-join: p's next /wait waits for one of the loop's slots. */
static void defer_wait(struct bench_loop *l, struct bench_peer *p)
{
    if (p->deferred)
        return;
    if (l->ndeferred == l->cap_deferred) { /* cannot happen: room for every own peer */
        log_error("the deferred /wait ring is full");
        atomic_store(&l->b->stop, true);
        return;
    }
    l->deferred[(l->deferred_head + l->ndeferred) % l->cap_deferred] = p->index;
    l->ndeferred++;
    p->deferred = true;
    atomic_fetch_add(&l->b->waits_unsent, 1);
}

/* --stepwise-join: once the /waits written since the last probe fill the
 * slots, or the last of them is out, an OPTIONS request that is answered at
 * once: the server accepts connections in order, so its answer shows that
 * every /wait written before it was accepted (and, with a single-threaded
 * server, read and parked). Until then no new /wait connection opens, so
 * at most C + 1 of this loop's connections wait in the listen backlog. */
static void maybe_probe(struct bench_loop *l)
{
    if (l->probing || l->since_probe == 0 || l->wait_opening > 0 ||
        (l->since_probe < l->b->o.stepwise && l->ndeferred > 0))
        return;
    int err = 0;
    struct pconn *c = pc_open(l, &l->b->peers[l->idx], PK_PROBE, &err);
    if (!c) { /* pacing only: count what it would have covered as settled */
        if (l->logged_errors++ < LOOP_LOG_MAX)
            log_errno(LOG_WARN, err, "cannot open a probe connection");
        atomic_fetch_sub(&l->b->waits_unsent, l->since_probe);
        l->since_probe = 0;
        return;
    }
    atomic_fetch_add(&l->b->waits_unsent, 1); /* the probe itself */
    c->covers = l->since_probe;
    l->since_probe = 0;
    l->probing = true;
}

/* Open the deferred /waits there are slots for (all of them once joined). */
static void run_deferred(struct bench_loop *l)
{
    struct bench *b = l->b;
    maybe_probe(l);
    while (l->ndeferred > 0 &&
           (atomic_load(&b->phase) != PH_JOIN ||
            (!l->probing && l->wait_opening + l->since_probe < b->o.stepwise))) {
        struct bench_peer *p = &b->peers[l->deferred[l->deferred_head]];
        l->deferred_head = (l->deferred_head + 1) % l->cap_deferred;
        l->ndeferred--;
        p->deferred = false;
        atomic_fetch_sub(&b->waits_unsent, 1);
        if (!p->wait && !p->dead && p->retry_at_ms == 0)
            pc_start_wait(l, p, NULL);
    }
    maybe_probe(l);
}

/* Send the next /wait of p, on reuse (its keep-alive connection) or a new one. */
static void pc_start_wait(struct bench_loop *l, struct bench_peer *p, struct pconn *reuse)
{
    int err = 0;
    if (atomic_load(&l->b->stop) || atomic_load(&l->b->phase) >= PH_SIGNOUT) {
        if (reuse)
            pc_free(l, reuse);
        return;
    }
    if (reuse) {
        if ((err = pc_format(l, reuse, PK_WAIT)) < 0) {
            pc_free(l, reuse);
            return;
        }
        p->wait = reuse;
        reuse->state = PS_WRITING;
        pc_flush(l, reuse);
        return;
    }
    bool gate = l->b->o.stepwise && atomic_load(&l->b->phase) == PH_JOIN;
    if (gate && (l->probing || l->wait_opening + l->since_probe >= l->b->o.stepwise)) {
        defer_wait(l, p);
        return;
    }
    struct pconn *c = pc_open(l, p, PK_WAIT, &err);
    if (c && gate) {
        c->gated = true;
        l->wait_opening++;
        atomic_fetch_add(&l->b->waits_unsent, 1);
    }
    if (!c) {
        atomic_fetch_add(&l->b->wait_errors, 1);
        if (l->logged_errors++ < LOOP_LOG_MAX)
            log_errno(LOG_WARN, err, "peer %" PRIu32 ": cannot open a /wait connection", p->index);
        loop_retry_later(l, p, BENCH_RETRY_MS);
        return;
    }
    p->wait = c;
}

static void start_signin(struct bench_loop *l, struct bench_peer *p)
{
    int err = 0;
    struct pconn *c = pc_open(l, p, PK_SIGNIN, &err);
    if (!c) {
        if (l->logged_errors++ < LOOP_LOG_MAX)
            log_errno(LOG_WARN, err, "peer %" PRIu32 ": cannot open a sign-in connection",
                      p->index);
        loop_retry_later(l, p, BENCH_RETRY_MS);
        return;
    }
    if (l->b->o.keepalive)
        p->wait = c; /* the same connection carries its /wait afterwards */
}

static void start_signout(struct bench_loop *l, struct bench_peer *p)
{
    int err = 0;
    struct pconn *c = pc_open(l, p, PK_SIGNOUT, &err);
    if (!c)
        l->signout_inflight--; /* best effort */
}

static void run_retries(struct bench_loop *l)
{
    struct bench *b = l->b;
    uint64_t now = clock_now_ms();
    int phase = atomic_load(&b->phase);
    for (size_t i = 0; i < l->nretry;) {
        struct bench_peer *p = &b->peers[l->retry[i]];
        if (p->retry_at_ms > now) {
            i++;
            continue;
        }
        l->retry[i] = l->retry[--l->nretry];
        p->retry_at_ms = 0;
        if (phase >= PH_SIGNOUT || p->dead)
            continue;
        if (p->id == 0)
            start_signin(l, p);
        else if (!p->wait)
            pc_start_wait(l, p, NULL);
    }
}

static void begin_signout(struct bench_loop *l)
{
    struct bench *b = l->b;
    while (l->conns) {
        struct pconn *c = l->conns;
        if (c->kind == PK_SIGNIN)
            l->signin_inflight--;
        pc_free(l, c);
    }
    for (size_t i = 0; i < l->nretry; i++)
        b->peers[l->retry[i]].retry_at_ms = 0;
    l->nretry = 0;
    l->signout_started = true;
    l->next_signout = l->idx;
    if (b->o.sign_out <= 0)
        atomic_store(&l->signout_done, true);
}

/* --join-interval: peer i is due i intervals after the start. --stepwise-join:
 * when peers 0..i-1 are signed in, have seen each other join and have sent
 * their next /wait. */
static bool signin_due(const struct bench *b, uint32_t i)
{
    if (b->o.stepwise)
        return atomic_load(&b->signed_in) == i &&
               atomic_load(&b->joins) == (uint64_t)i * (i ? i - 1 : 0) / 2 &&
               atomic_load(&b->waits_unsent) == 0;
    if (b->o.join_interval_ms <= 0)
        return true;
    return bench_now_ns() >= b->t0_ns + (uint64_t)((double)i * b->o.join_interval_ms * 1e6);
}

static void *loop_main(void *arg)
{
    struct bench_loop *l = arg;
    struct bench *b = l->b;
    struct epoll_event evs[LOOP_EVENTS];
    log_set_thread_role("loop");

    while (!atomic_load(&b->stop)) {
        int phase = atomic_load(&b->phase);
        if (phase <= PH_RUN) {
            while (l->next_signin < b->o.peers && l->signin_inflight < b->o.signin_conc &&
                   signin_due(b, l->next_signin)) {
                struct bench_peer *p = &b->peers[l->next_signin];
                l->next_signin += b->o.loops;
                l->signin_inflight++;
                start_signin(l, p);
            }
        } else if (phase == PH_SIGNOUT) {
            if (!l->signout_started)
                begin_signout(l);
            while (!atomic_load(&l->signout_done) && l->next_signout < b->o.peers &&
                   l->signout_inflight < b->o.signin_conc) {
                struct bench_peer *p = &b->peers[l->next_signout];
                l->next_signout += b->o.loops;
                if (p->id == 0 || p->dead)
                    continue;
                l->signout_inflight++;
                start_signout(l, p);
            }
            if (l->next_signout >= b->o.peers && l->signout_inflight == 0)
                atomic_store(&l->signout_done, true);
        }
        if (l->nretry)
            run_retries(l);
        if (b->o.stepwise)
            run_deferred(l);
        /* Paced sign-ins: come back in time for the next one. */
        int tick = (b->o.join_interval_ms > 0 || b->o.stepwise) && l->next_signin < b->o.peers
                       ? 1 : LOOP_TICK_MS;
        int n = epoll_wait(l->epfd, evs, LOOP_EVENTS, tick);
        if (n < 0 && errno != EINTR) {
            log_errno(LOG_ERROR, errno, "epoll_wait");
            atomic_store(&b->stop, true);
            break;
        }
        for (int i = 0; i < n; i++)
            pc_event(l, evs[i].data.ptr, evs[i].events);
        if (b->o.stepwise)
            run_deferred(l); /* slots freed by these events */
    }
    while (l->conns)
        pc_free(l, l->conns);
    return NULL;
}

int bench_loops_start(struct bench *b)
{
    b->loops = calloc(b->o.loops, sizeof *b->loops);
    if (!b->loops)
        return -ENOMEM;
    for (unsigned i = 0; i < b->o.loops; i++) {
        struct bench_loop *l = &b->loops[i];
        l->b = b;
        l->idx = i;
        l->next_signin = i;
        atomic_init(&l->signout_done, false);
        if (b->o.stepwise) {
            l->cap_deferred = b->o.peers / b->o.loops + 2;
            l->deferred = calloc(l->cap_deferred, sizeof *l->deferred);
            if (!l->deferred)
                return -ENOMEM;
        }
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0)
            return -errno;
        int rc;
        if (b->o.tls && (rc = bench_tls_client(b, &l->tls)) < 0)
            return rc;
    }
    for (unsigned i = 0; i < b->o.loops; i++) {
        struct bench_loop *l = &b->loops[i];
        int rc = pthread_create(&l->th, NULL, loop_main, l);
        if (rc != 0)
            return -rc;
        l->started = true;
    }
    return 0;
}

void bench_loops_join(struct bench *b, struct bench_hist *lat, uint64_t *last_delivery_ns)
{
    *last_delivery_ns = 0;
    if (!b->loops)
        return;
    for (unsigned i = 0; i < b->o.loops; i++) {
        struct bench_loop *l = &b->loops[i];
        if (l->started)
            pthread_join(l->th, NULL);
        l->started = false;
        hist_merge(lat, &l->hist);
        b->batch_answers += l->batch_answers;
        b->batch_records += l->batch_records;
        if (l->batch_max > b->batch_max)
            b->batch_max = l->batch_max;
        if (l->last_delivery_ns > *last_delivery_ns)
            *last_delivery_ns = l->last_delivery_ns;
        if (l->epfd >= 0)
            close(l->epfd);
        l->epfd = -1;
        tls_client_free(l->tls);
        l->tls = NULL;
        free(l->retry);
        l->retry = NULL;
        free(l->deferred);
        l->deferred = NULL;
    }
}

unsigned bench_loops_signout_done(const struct bench *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < b->o.loops; i++)
        n += atomic_load(&b->loops[i].signout_done) ? 1u : 0u;
    return n;
}
