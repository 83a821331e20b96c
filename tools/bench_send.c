/*
 * bench_send: the sender threads of pcsig-bench. Each owns an epoll set and
 * keeps up to --inflight messages outstanding: either one new HTTP/1.0
 * connection per POST (as the stock client sends them), or requests
 * pipelined on one persistent HTTP/1.1 connection (--keepalive). Without
 * --rate the loop is closed (a message leaves as soon as a slot is free);
 * with it, message k of a sender is due at start + k / (rate / senders).
 *
 * Order per (sender thread -> receiver) is the property being checked, so
 * a sender never has two messages to the same receiver outstanding: a 503
 * (queue full, connection cap) or a lost connection retries the same
 * message, with the same sequence number, before the next one to that
 * receiver can start.
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "log.h"

#define SEND_EVENTS 256
#define SEND_TICK_MS 10
#define SEND_LOG_MAX 5

enum slot_state { SL_FREE, SL_RETRY, SL_SENT };

struct sconn {
    struct bench_conn bc; /* bc.c NULL when closed */
    bool connecting;
    buf_t out;
    size_t off;
    buf_t in;
    long head_len;
    uint64_t clen;
};

struct sslot {
    enum slot_state st;
    struct bench_msg m;
    unsigned attempts;
    uint64_t retry_at_ms;
    struct sconn c; /* stock mode: this message's connection */
};

struct bench_sender {
    struct bench *b;
    unsigned idx;
    pthread_t th;
    bool started;
    int epfd;
    tls_client_t *tls;    /* --tls: this sender's client context */
    uint64_t total, next_num;
    uint32_t *seq_next;   /* [peers] */
    uint8_t *busy;        /* [peers]: a message to it is outstanding */
    unsigned nslots, nbusy;
    struct sslot *slots;
    struct sconn ka;      /* keep-alive: the one connection */
    unsigned *fifo;       /* keep-alive: slots awaiting answers, in order */
    unsigned fifo_head, fifo_n;
    uint64_t rng;
    char *body;
    double interval_ns;   /* rate mode: between two messages of this sender */
    uint64_t start_ns;
    struct bench_send_stats st;
    atomic_uint_fast64_t settled;
    unsigned logged;
};

/* ---- connections -------------------------------------------------------- */

static void sc_init(struct sconn *c, size_t size)
{
    c->bc.c = NULL;
    c->connecting = false;
    buf_init(&c->out, BENCH_RESP_MAX_HEAD + size + 4096);
    buf_init(&c->in, BENCH_RESP_MAX_HEAD + 65536);
    c->off = 0;
    c->head_len = 0;
    c->clen = 0;
}

static void sc_close(struct sconn *c)
{
    bench_close(&c->bc);
    c->connecting = false;
    buf_reset(&c->out);
    buf_reset(&c->in);
    c->off = 0;
    c->head_len = 0;
    c->clen = 0;
}

static int sc_open(struct bench_sender *s, struct sconn *c, void *tag)
{
    int rc = bench_open(s->b, s->tls, &c->bc);
    if (rc < 0)
        return rc;
    /* Both directions, edge-triggered: covers whatever conn_want() asks for. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = tag};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, bench_fd(&c->bc), &ev) < 0) {
        int err = -errno;
        bench_close(&c->bc);
        return err;
    }
    c->connecting = true;
    c->off = 0;
    c->head_len = 0;
    buf_reset(&c->in);
    return 0;
}

/* Flush c->out (the first writes also drive the TLS handshake): 0 (all out
 * or EAGAIN) or -errno. */
static int sc_flush(struct bench_sender *s, struct sconn *c)
{
    if (c->connecting || c->out.len == 0)
        return 0;
    int rc = bench_write(s->b, &c->bc, c->out.data, c->out.len, &c->off);
    if (rc < 0)
        return rc;
    buf_consume(&c->out, c->off);
    c->off = 0;
    return 0;
}

/*
 * Is a complete answer at the start of c->in? 1 (r filled, *total its size),
 * 0 (need more) or -EPROTO.
 */
static int sc_answer(struct sconn *c, http_response_t *r, size_t *total)
{
    const http_limits_t lim = {.max_head = BENCH_RESP_MAX_HEAD, .max_body = 65536};
    http_error_t err;
    if (c->in.len == 0)
        return 0;
    long head = http_parse_response(c->in.data, c->in.len, &lim, r, &err);
    if (head == HTTP_NEED_MORE)
        return 0;
    if (head < 0 || !r->has_content_length)
        return -EPROTO;
    if (c->in.len < (size_t)head + r->content_length)
        return 0;
    *total = (size_t)head + (size_t)r->content_length;
    c->head_len = head;
    return 1;
}

/* ---- messages ----------------------------------------------------------- */

static void slot_release(struct bench_sender *s, struct sslot *sl)
{
    s->busy[sl->m.to] = 0;
    sl->st = SL_FREE;
    s->nbusy--;
    atomic_fetch_add(&s->settled, 1);
}

/* The message of sl was not answered (or answered 503): try it again soon. */
static void slot_retry(struct bench_sender *s, struct sslot *sl)
{
    if (++sl->attempts >= BENCH_MAX_ATTEMPTS) {
        s->st.refused++;
        if (s->logged++ < SEND_LOG_MAX)
            log_warn("sender %u: giving up on message %" PRIu64 " to peer %" PRIu32
                     " after %u attempts",
                     s->idx, sl->m.num, sl->m.to, sl->attempts);
        slot_release(s, sl);
        return;
    }
    sl->st = SL_RETRY;
    sl->retry_at_ms = clock_now_ms() + BENCH_RETRY_MS;
}

/* Append the POST of sl's message to out. 0 or -errno. */
static int append_post(struct bench_sender *s, buf_t *out, const struct sslot *sl)
{
    const struct bench *b = s->b;
    unsigned long long from = (unsigned long long)sl->m.from_id;
    unsigned long long to = (unsigned long long)b->peers[sl->m.to].id;
    int rc;
    bench_body_encode(s->body, b->o.size, &sl->m);
    if (b->o.keepalive)
        rc = buf_printf(out,
                        "POST /message?peer_id=%llu&to=%llu HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Length: %zu\r\nContent-Type: text/plain\r\n\r\n",
                        from, to, b->host_hdr, b->o.size);
    else
        rc = buf_printf(out,
                        "POST /message?peer_id=%llu&to=%llu HTTP/1.0\r\n"
                        "Content-Length: %zu\r\nContent-Type: text/plain\r\n\r\n",
                        from, to, b->o.size);
    if (rc == 0)
        rc = buf_append(out, s->body, b->o.size);
    return rc;
}

static void ka_fail(struct bench_sender *s, int err, const char *what);

/* Put sl's message on the wire. */
static void slot_send(struct bench_sender *s, struct sslot *sl)
{
    int rc;
    sl->st = SL_SENT;
    if (s->b->o.keepalive) {
        if (!s->ka.bc.c && (rc = sc_open(s, &s->ka, &s->ka)) < 0) {
            s->st.conn_errors++;
            if (s->logged++ < SEND_LOG_MAX)
                log_errno(LOG_WARN, rc, "sender %u: cannot connect", s->idx);
            slot_retry(s, sl);
            return;
        }
        if ((rc = append_post(s, &s->ka.out, sl)) < 0) {
            log_errno(LOG_ERROR, rc, "sender %u: cannot build a request", s->idx);
            atomic_store(&s->b->stop, true);
            return;
        }
        s->fifo[(s->fifo_head + s->fifo_n++) % s->nslots] = (unsigned)(sl - s->slots);
        if ((rc = sc_flush(s, &s->ka)) < 0)
            ka_fail(s, rc, "write failed");
        return;
    }
    buf_reset(&sl->c.out);
    if ((rc = append_post(s, &sl->c.out, sl)) < 0) {
        log_errno(LOG_ERROR, rc, "sender %u: cannot build a request", s->idx);
        atomic_store(&s->b->stop, true);
        return;
    }
    if ((rc = sc_open(s, &sl->c, sl)) < 0) {
        s->st.conn_errors++;
        if (s->logged++ < SEND_LOG_MAX)
            log_errno(LOG_WARN, rc, "sender %u: cannot connect", s->idx);
        slot_retry(s, sl);
    }
}

/* A new message into the free slot sl. */
static void slot_new(struct bench_sender *s, struct sslot *sl)
{
    const struct bench *b = s->b;
    uint32_t n = b->o.peers, to = 0, from;
    unsigned tries;

    for (tries = 0; tries < 16; tries++) {
        to = (uint32_t)(bench_rand(&s->rng) % n);
        if (!s->busy[to])
            break;
    }
    if (tries == 16) { /* crowded: walk to the next free receiver */
        while (s->busy[to])
            to = (to + 1) % n;
    }
    do
        from = (uint32_t)(bench_rand(&s->rng) % n);
    while (from == to);

    s->busy[to] = 1;
    s->nbusy++;
    sl->attempts = 0;
    sl->m.sender = s->idx;
    sl->m.num = s->next_num++;
    sl->m.from_id = b->peers[from].id;
    sl->m.to = to;
    sl->m.seq = ++s->seq_next[to];
    sl->m.t_ns = bench_now_ns();
    if (s->st.sent++ == 0)
        s->st.first_ns = sl->m.t_ns;
    slot_send(s, sl);
}

/* The final answer to sl's message (status from the server). */
static void slot_answered(struct bench_sender *s, struct sslot *sl, const http_response_t *r,
                          const char *body, size_t blen)
{
    if (r->status == 200) {
        s->st.accepted++;
        s->st.last_ns = bench_now_ns();
        slot_release(s, sl);
        return;
    }
    if (r->status == 503) {
        s->st.busy503++;
        slot_retry(s, sl);
        return;
    }
    s->st.refused++;
    if (s->logged++ < SEND_LOG_MAX) {
        buf_t e;
        buf_init(&e, 512);
        log_escape(&e, body, blen, 120);
        log_warn("sender %u: message %" PRIu64 " from id %" PRIu64 " to peer %" PRIu32
                 " (id %" PRIu64 ") refused: %d %.*s \"%.*s\"",
                 s->idx, sl->m.num, sl->m.from_id, sl->m.to, s->b->peers[sl->m.to].id,
                 r->status, (int)r->reason.len, r->reason.ptr, (int)e.len, e.data ? e.data : "");
        buf_free(&e);
    }
    slot_release(s, sl);
}

/* ---- keep-alive connection ---------------------------------------------- */

/* The keep-alive connection is gone: every unanswered message goes again. */
static void ka_fail(struct bench_sender *s, int err, const char *what)
{
    if (err != 0) {
        s->st.conn_errors++;
        if (s->logged++ < SEND_LOG_MAX)
            log_errno(LOG_WARN, err, "sender %u: %s with %u requests unanswered", s->idx, what,
                      s->fifo_n);
    }
    sc_close(&s->ka);
    while (s->fifo_n) {
        struct sslot *sl = &s->slots[s->fifo[s->fifo_head]];
        s->fifo_head = (s->fifo_head + 1) % s->nslots;
        s->fifo_n--;
        if (err == 0)
            sl->attempts--; /* the server said it did not read it: not an attempt */
        slot_retry(s, sl);
    }
    s->fifo_head = 0;
}

static void ka_event(struct bench_sender *s, uint32_t events)
{
    struct sconn *c = &s->ka;
    int rc;
    if (!c->bc.c)
        return;
    if (c->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = bench_so_error(bench_fd(&c->bc));
        if (err) {
            ka_fail(s, -err, "connect failed");
            return;
        }
        c->connecting = false;
    }
    if ((rc = sc_flush(s, c)) < 0) {
        ka_fail(s, rc, "write failed");
        return;
    }
    if (!bench_established(&c->bc))
        return; /* the TLS handshake is driven by the writes alone */
    for (;;) {
        long n = bench_read(s->b, &c->bc, &c->in, 16384);
        if (n == -EAGAIN)
            return;
        if (n == 0 && s->fifo_n == 0 && c->in.len == 0) {
            sc_close(c); /* an idle keep-alive connection closed: reopened on demand */
            return;
        }
        if (n <= 0) {
            ka_fail(s, n == 0 ? -ECONNRESET : (int)n, "connection lost");
            return;
        }
        for (;;) {
            http_response_t r;
            size_t total;
            int a = sc_answer(c, &r, &total);
            if (a == 0)
                break;
            if (a < 0 || s->fifo_n == 0) {
                ka_fail(s, -EPROTO, a < 0 ? "unparsable answer" : "answer to no request");
                return;
            }
            struct sslot *sl = &s->slots[s->fifo[s->fifo_head]];
            s->fifo_head = (s->fifo_head + 1) % s->nslots;
            s->fifo_n--;
            slot_answered(s, sl, &r, c->in.data + c->head_len, (size_t)r.content_length);
            bool close_now = r.connection_close;
            buf_consume(&c->in, total);
            if (close_now) {
                /* Later pipelined requests were not read: send them again. */
                ka_fail(s, 0, "closed by the server");
                return;
            }
        }
    }
}

/* ---- one connection per message ----------------------------------------- */

static void slot_event(struct bench_sender *s, struct sslot *sl, uint32_t events)
{
    struct sconn *c = &sl->c;
    int rc;
    if (!c->bc.c || sl->st != SL_SENT)
        return;
    if (c->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = bench_so_error(bench_fd(&c->bc));
        if (err) {
            s->st.conn_errors++;
            if (s->logged++ < SEND_LOG_MAX)
                log_errno(LOG_WARN, err, "sender %u: connect failed", s->idx);
            sc_close(c);
            slot_retry(s, sl);
            return;
        }
        c->connecting = false;
    }
    if ((rc = sc_flush(s, c)) < 0)
        goto broken;
    if (!bench_established(&c->bc))
        return; /* the TLS handshake is driven by the writes alone */
    for (;;) {
        long n = bench_read(s->b, &c->bc, &c->in, 4096);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            rc = n == 0 ? -ECONNRESET : (int)n;
            goto broken;
        }
        http_response_t r;
        size_t total;
        int a = sc_answer(c, &r, &total);
        if (a < 0) {
            rc = -EPROTO;
            goto broken;
        }
        if (a > 0) {
            /* As the stock client: the answer is complete, so close now. */
            slot_answered(s, sl, &r, c->in.data + c->head_len, (size_t)r.content_length);
            sc_close(c);
            return;
        }
    }
broken:
    s->st.conn_errors++;
    if (s->logged++ < SEND_LOG_MAX)
        log_errno(LOG_WARN, rc, "sender %u: POST connection lost before the answer", s->idx);
    sc_close(c);
    slot_retry(s, sl);
}

/* ---- the thread --------------------------------------------------------- */

static uint64_t due_ns(const struct bench_sender *s, uint64_t k)
{
    return s->start_ns + (uint64_t)((double)k * s->interval_ns);
}

static void *sender_main(void *arg)
{
    struct bench_sender *s = arg;
    struct bench *b = s->b;
    struct epoll_event evs[SEND_EVENTS];
    log_set_thread_role("sender");
    s->start_ns = bench_now_ns();

    while (!atomic_load(&b->stop)) {
        uint64_t now_ms = clock_now_ms();
        /* Retries first: they hold their receiver. */
        for (unsigned i = 0; i < s->nslots; i++) {
            struct sslot *sl = &s->slots[i];
            if (sl->st == SL_RETRY && sl->retry_at_ms <= now_ms)
                slot_send(s, sl);
        }
        int timeout = SEND_TICK_MS;
        if (s->next_num < s->total && s->nbusy < s->nslots) {
            uint64_t now = bench_now_ns();
            for (unsigned i = 0; i < s->nslots && s->next_num < s->total; i++) {
                if (s->slots[i].st != SL_FREE)
                    continue;
                if (s->interval_ns > 0 && due_ns(s, s->next_num) > now)
                    break;
                slot_new(s, &s->slots[i]);
            }
            if (s->interval_ns > 0 && s->next_num < s->total) {
                uint64_t due = due_ns(s, s->next_num);
                /* Rounded up: a zero timeout before the due time would spin. */
                uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 0;
                if (ms < (uint64_t)timeout)
                    timeout = (int)ms;
            }
        }
        if (s->next_num >= s->total && s->nbusy == 0)
            break;
        int n = epoll_wait(s->epfd, evs, SEND_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_errno(LOG_ERROR, errno, "epoll_wait");
            atomic_store(&b->stop, true);
            break;
        }
        for (int i = 0; i < n; i++) {
            if (b->o.keepalive)
                ka_event(s, evs[i].events);
            else
                slot_event(s, evs[i].data.ptr, evs[i].events);
        }
    }
    sc_close(&s->ka);
    for (unsigned i = 0; i < s->nslots; i++)
        sc_close(&s->slots[i].c);
    return NULL;
}

int bench_senders_start(struct bench *b)
{
    const struct bench_opts *o = &b->o;
    b->senders = calloc(o->senders, sizeof *b->senders);
    if (!b->senders)
        return -ENOMEM;
    for (unsigned i = 0; i < o->senders; i++) {
        struct bench_sender *s = &b->senders[i];
        s->b = b;
        s->idx = i;
        s->epfd = -1;
        s->total = b->msgs_for[i];
        s->nslots = o->inflight;
        s->rng = o->seed * 0x9E3779B97F4A7C15ULL + i + 1;
        if (s->rng == 0)
            s->rng = 1;
        if (o->rate > 0)
            s->interval_ns = 1e9 * (double)o->senders / o->rate;
        atomic_init(&s->settled, 0);
        s->seq_next = calloc(o->peers, sizeof *s->seq_next);
        s->busy = calloc(o->peers, 1);
        s->slots = calloc(s->nslots, sizeof *s->slots);
        s->fifo = calloc(s->nslots, sizeof *s->fifo);
        s->body = malloc(o->size);
        if (!s->seq_next || !s->busy || !s->slots || !s->fifo || !s->body)
            return -ENOMEM;
        sc_init(&s->ka, (size_t)s->nslots * (o->size + 512));
        for (unsigned k = 0; k < s->nslots; k++)
            sc_init(&s->slots[k].c, o->size);
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
            return -errno;
        int rc;
        if (o->tls && (rc = bench_tls_client(b, &s->tls)) < 0)
            return rc;
    }
    for (unsigned i = 0; i < o->senders; i++) {
        struct bench_sender *s = &b->senders[i];
        int rc = pthread_create(&s->th, NULL, sender_main, s);
        if (rc != 0)
            return -rc;
        s->started = true;
    }
    return 0;
}

void bench_senders_join(struct bench *b, struct bench_send_stats *t)
{
    memset(t, 0, sizeof *t);
    if (!b->senders)
        return;
    for (unsigned i = 0; i < b->o.senders; i++) {
        struct bench_sender *s = &b->senders[i];
        if (s->started)
            pthread_join(s->th, NULL);
        s->started = false;
        t->sent += s->st.sent;
        t->accepted += s->st.accepted;
        t->refused += s->st.refused;
        t->busy503 += s->st.busy503;
        t->conn_errors += s->st.conn_errors;
        if (s->st.sent && (t->first_ns == 0 || s->st.first_ns < t->first_ns))
            t->first_ns = s->st.first_ns;
        if (s->st.last_ns > t->last_ns)
            t->last_ns = s->st.last_ns;
        if (s->epfd >= 0)
            close(s->epfd);
        s->epfd = -1;
        tls_client_free(s->tls);
        s->tls = NULL;
        buf_free(&s->ka.out);
        buf_free(&s->ka.in);
        for (unsigned k = 0; k < s->nslots; k++) {
            buf_free(&s->slots[k].c.out);
            buf_free(&s->slots[k].c.in);
        }
        free(s->seq_next);
        free(s->busy);
        free(s->slots);
        free(s->fifo);
        free(s->body);
    }
}

uint64_t bench_senders_settled(const struct bench *b)
{
    uint64_t n = 0;
    if (!b->senders)
        return 0;
    for (unsigned i = 0; i < b->o.senders; i++)
        n += atomic_load(&b->senders[i].settled);
    return n;
}
