/*
 * session: the per-connection HTTP state machine (see session.h for who
 * owns a session when). A worker runs it until it must wait: for bytes
 * (armed for EPOLLIN), for the client to take bytes (EPOLLOUT), or for the
 * registry to answer a parked /wait. No step blocks on the socket.
 */
#include "session.h"
#include "strlit.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "clock.h"
#include "cluster.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "response.h"
#include "router.h"
#include "server_threads.h"
#include "tls.h"

#define SESSION_READ_CHUNK 16384
#define SESSION_KEEP_CAP 4096 /* buffers above this are released while idle */
#define SESSION_OUT_SLACK 65536
/* After an error answer we stop sending and drain what the client is still
 * sending for up to this long, so that closing does not reset the
 * connection before the client has read the answer. */
#define SESSION_LINGER_MS 2000

/*
 * The ownership protocol (session.h), checked where it matters: only the
 * RUNNING owner gets past these points. One relaxed load each, in every
 * build without NDEBUG (the default); a failure is a race in the protocol,
 * never a client's doing.
 */
#define ASSERT_RUNNING(s)                                                                     \
    assert(atomic_load_explicit(&(s)->state, memory_order_relaxed) == SESSION_RUNNING)

/* What a step of the state machine left us with. */
enum step { STEP_HANDED_OFF, STEP_RECLAIMED };

/*
 * How a session reaches the poller: epoll itself in the server. The unit
 * harness (tests/unit/test_session_own.c, which includes this file) puts a
 * fake poller here that records what a session asks for and acts at the
 * moments where other threads may interleave: at ctl, and in the window
 * after a session was handed over and before its owner's re-check.
 */
struct session_poller_ops {
    int (*ctl)(int epfd, int op, int fd, struct epoll_event *ev);
    /* s is published (ARMED or PARKED) and pinned (NULL: nothing to do). */
    void (*handed_over)(struct session *s);
};
static const struct session_poller_ops epoll_ops = {.ctl = epoll_ctl};
static const struct session_poller_ops *poller_ops = &epoll_ops;

static struct session *from_waiter(struct reg_waiter *w)
{
    return (struct session *)((char *)w - offsetof(struct session, waiter));
}

static void waiter_on_park(struct reg_waiter *w)
{
    /* Parked by its owner, inside reg_wait: nobody else could have it. */
    ASSERT_RUNNING(from_waiter(w));
    atomic_store(&from_waiter(w)->state, SESSION_PARKED);
}

static bool waiter_claim(struct reg_waiter *w)
{
    int expected = SESSION_PARKED;
    return atomic_compare_exchange_strong(&from_waiter(w)->state, &expected, SESSION_RUNNING);
}

/*
 * Sessions woken on this thread while it runs another (session_run_here):
 * a message posted on the thread that accepted it wakes the receiver's
 * parked /wait, and this thread answers it next, without a hand-off to a
 * worker (a futex wake and a context switch). Only a few: past that (a
 * broadcast waking hundreds), they go to the work queue for every worker.
 */
#ifndef SESSION_LOCAL_MAX
#define SESSION_LOCAL_MAX 4
#endif
static _Thread_local bool local_on;
static _Thread_local unsigned local_n;
static _Thread_local struct session *local_head, *local_tail;

static void waiter_wake(struct reg_waiter *w, enum reg_wake why, reg_item_t *item)
{
    struct session *s = from_waiter(w);
    ASSERT_RUNNING(s); /* the registry claimed it for us (waiter_claim) */
    assert(!s->has_wake);
    s->has_wake = true;
    s->wake_why = why;
    s->wake_item = item;
    if (local_on && local_n < SESSION_LOCAL_MAX) {
        /* Ours now (the registry claimed it for us): run after the current one. */
        s->wq_next = NULL;
        if (local_tail)
            local_tail->wq_next = s;
        else
            local_head = s;
        local_tail = s;
        local_n++;
        return;
    }
    server_schedule(s->srv, s);
}

struct session *session_new(struct server *srv, int fd, const struct sockaddr *peer, bool tls)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->conn = tls ? tls_server_wrap(srv->tls, fd) : conn_plain_adopt(fd); /* accept4: SOCK_NONBLOCK */
    s->tls = tls;
    s->accepted_ms = clock_now_ms();
    if (!s->conn) {
        free(s);
        return NULL;
    }
    s->srv = srv;
    s->waiter.on_park = waiter_on_park;
    s->waiter.claim = waiter_claim;
    s->waiter.wake = waiter_wake;
    atomic_init(&s->state, SESSION_RUNNING);
    atomic_init(&s->wake_bits, 0);
    atomic_init(&s->deadline_ms, 0);
    atomic_init(&s->pins, 0);
    atomic_init(&s->out_counted, 0);
    atomic_init(&s->out_progress_ms, 0);
    buf_init(&s->in, srv->cfg.max_head + srv->cfg.max_body);
    /* A relayed message (up to the body limit) or a sign-in's member list
     * (up to --max-output-bytes), with its head. */
    size_t biggest = srv->cfg.max_body > srv->cfg.max_output_bytes ? srv->cfg.max_body
                                                                    : srv->cfg.max_output_bytes;
    buf_init(&s->out, biggest + srv->cfg.max_head + SESSION_OUT_SLACK);
    if (peer) {
        net_addr_str(peer, s->peer, sizeof s->peer);
        rl_key_from(&s->rl_key, peer);
    }
    pthread_mutex_lock(&srv->sessions_lock);
    s->next = srv->sessions;
    if (s->next)
        s->next->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    pthread_mutex_unlock(&srv->sessions_lock);
    return s;
}

bool session_claim(struct session *s, unsigned wake_bit, bool parked_too)
{
    atomic_fetch_or(&s->wake_bits, wake_bit);
    int expected = SESSION_ARMED;
    if (atomic_compare_exchange_strong(&s->state, &expected, SESSION_RUNNING))
        return true;
    if (!parked_too)
        return false;
    expected = SESSION_PARKED;
    return atomic_compare_exchange_strong(&s->state, &expected, SESSION_RUNNING);
}

/* Detach from the server's list; called once, by the closer. */
static void unlink_session(struct session *s)
{
    struct server *srv = s->srv;
    pthread_mutex_lock(&srv->sessions_lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    if (--srv->nsessions == 0)
        pthread_cond_broadcast(&srv->sessions_cond);
    pthread_mutex_unlock(&srv->sessions_lock);
}

struct session *session_new_refusal(struct server *srv, int fd, const struct sockaddr *peer,
                                    const char *answer, size_t len)
{
    struct session *s = session_new(srv, fd, peer, true);
    if (!s) {
        close(fd);
        return NULL;
    }
    s->refusal = true;
    if (buf_append(&s->out, answer, len) < 0) {
        /* Nothing published it yet: undo session_new. */
        unlink_session(s);
        conn_close(s->conn);
        session_free(s);
        return NULL;
    }
    /* pump() writes out before it reads anything, and then closes: the
     * linger keeps a request the client sends meanwhile from turning the
     * close into a reset that could destroy the answer unread. */
    s->close_after_write = true;
    s->linger = true;
    return s;
}

void session_out_sync(struct session *s)
{
    struct server *srv = s->srv;
    size_t had = atomic_load_explicit(&s->out_counted, memory_order_relaxed);
    size_t now = s->out.len;
    if (now == had)
        return;
    atomic_store_explicit(&s->out_counted, now, memory_order_relaxed);
    if (now < had) {
        atomic_fetch_sub(&srv->out_held, had - now);
        return;
    }
    size_t cap = srv->cfg.max_total_output_bytes;
    size_t before = atomic_fetch_add(&srv->out_held, now - had);
    if (before <= cap && before + (now - had) > cap)
        server_output_pressure(srv, false); /* just went over */
}

/* An undelivered chain goes back to its queue: Redis's with --cluster. */
static void requeue(struct server *srv, uint64_t member, reg_item_t *item)
{
    if (srv->cluster)
        cluster_requeue(srv->cluster, member, item);
    else
        reg_requeue(srv->reg, member, item, clock_now_ms());
}

/* Give back what this session still holds of the registry, close the socket. */
static void release(struct session *s)
{
    struct server *srv = s->srv;
    /* Nothing more will be written: the output is no longer held. */
    buf_free(&s->out);
    session_out_sync(s);
    atomic_store(&s->out_progress_ms, 0);
    if (s->inflight) {
        /* Its bytes never fully left: the item goes back to the queue head. */
        requeue(srv, s->inflight_member, s->inflight);
        s->inflight = NULL;
    }
    if (s->has_wake && s->wake_item) {
        requeue(srv, s->waiter.member_id, s->wake_item);
        s->wake_item = NULL;
    }
    s->has_wake = false;
    if (s->conn) {
        /* No EPOLL_CTL_DEL: closing the only descriptor of the socket takes
         * it out of the epoll set (the server never duplicates one). */
        conn_close(s->conn);
        s->conn = NULL;
        if (s->refusal)
            atomic_fetch_sub(&srv->tls_refusals, 1);
        else
            atomic_fetch_sub(&srv->open_conns, 1);
        if (s->rl_counted)
            rl_conn_close(srv->rl, &s->rl_key);
        s->rl_counted = false;
    }
}

static enum step close_session(struct session *s)
{
    ASSERT_RUNNING(s);
    if (s->waiting) {
        reg_unpark(s->srv->reg, &s->waiter, clock_now_ms());
        if (s->srv->cluster)
            cluster_release(s->srv->cluster, s->wait_member, s->cluster_gen);
        s->waiting = false;
    }
    release(s);
    unlink_session(s);
    if (!s->was_in_epoll && !session_pinned(s)) {
        /* Never in epoll, so no event in the poller's hands points to it,
         * and unlinked, so the reaper cannot reach it: free it now. */
        session_free(s);
        return STEP_HANDED_OFF;
    }
    server_bury(s->srv, s);
    return STEP_HANDED_OFF;
}

void session_force_close(struct session *s)
{
    release(s);
}

bool session_pinned(struct session *s)
{
    return atomic_load(&s->pins) != 0;
}

/*
 * After publishing s (ARMED or PARKED), take it back if a wake-up raced
 * with the publication. The caller pinned s before publishing: from that
 * store on, another thread may claim, run and close it, so s stays
 * allocated only until the pin is dropped here, and not touched after.
 */
static enum step recheck_and_unpin(struct session *s, int published)
{
    if (poller_ops->handed_over)
        poller_ops->handed_over(s);
    /* Only the poller claims a parked session (a hang-up). The reaper's
     * bits are for armed ones, and may be left from before the park by a
     * claim that lost (an old deadline passed while the /wait was read):
     * no reason to take back, and then close, a wait just parked. */
    unsigned why = published == SESSION_PARKED ? SESSION_WAKE_IO : ~0u;
    int expected = published;
    bool reclaimed = (atomic_load(&s->wake_bits) & why) &&
                     atomic_compare_exchange_strong(&s->state, &expected, SESSION_RUNNING);
    atomic_fetch_sub(&s->pins, 1);
    return reclaimed ? STEP_RECLAIMED : STEP_HANDED_OFF;
}

void session_free(struct session *s)
{
    if (!s)
        return;
    /* No worker between publishing it and its re-check (see pins). */
    assert(atomic_load(&s->pins) == 0);
    buf_free(&s->in);
    buf_free(&s->out);
    free(s);
}

/* Register with epoll, or change what we wait for: a session served at
 * once on the accepting thread enters epoll only when it must wait. */
static int session_epoll(struct session *s, struct epoll_event *ev)
{
    int op = s->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (poller_ops->ctl(s->srv->epfd, op, conn_fd(s->conn), ev) < 0)
        return -1;
    s->in_epoll = s->was_in_epoll = true;
    return 0;
}

/*
 * Give the session to the poller until events (EPOLLIN/EPOLLOUT) or the
 * deadline. If a wake-up raced with us, take it straight back.
 */
static enum step arm(struct session *s, uint32_t events, uint64_t deadline)
{
    ASSERT_RUNNING(s);
    if (s->in.len == 0 && s->in.cap > SESSION_KEEP_CAP)
        buf_free(&s->in);
    if (s->out.len == 0 && s->out.cap > SESSION_KEEP_CAP)
        buf_free(&s->out);
    /* TLS may need the other direction first (handshake, key update). */
    if (conn_want(s->conn) == POLLOUT)
        events = EPOLLOUT;
    else if (events == EPOLLOUT && conn_want(s->conn) == POLLIN)
        events = EPOLLIN;
    if (!s->conn->established && deadline > s->accepted_ms + s->srv->cfg.read_timeout_ms)
        deadline = s->accepted_ms + s->srv->cfg.read_timeout_ms;
    atomic_store(&s->deadline_ms, deadline);
    struct epoll_event ev = {.events = events | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = s};
    if (session_epoll(s, &ev) < 0) {
        log_errno(LOG_ERROR, errno, "epoll_ctl for %s", s->peer);
        return close_session(s);
    }
    atomic_fetch_add(&s->pins, 1);
    atomic_store(&s->state, SESSION_ARMED);
    return recheck_and_unpin(s, SESSION_ARMED);
}

#define SESSION_BATCH_MAX_ITEMS 10000

void session_accepted(struct session *s, bool metrics_only, bool rl_counted)
{
    s->metrics_only = metrics_only;
    s->rl_counted = rl_counted;
}

void session_arm_new(struct session *s)
{
    struct server *srv = s->srv;
    atomic_store(&s->deadline_ms, clock_now_ms() + srv->cfg.read_timeout_ms);
    atomic_store(&s->state, SESSION_ARMED);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = s};
    s->in_epoll = s->was_in_epoll = true; /* before the add publishes it */
    if (poller_ops->ctl(srv->epfd, EPOLL_CTL_ADD, conn_fd(s->conn), &ev) < 0) {
        log_errno(LOG_ERROR, errno, "epoll_ctl add");
        /* Nobody else can have seen it yet: take it back and close it. */
        if (session_claim(s, SESSION_WAKE_TIMEOUT, false)) {
            atomic_store(&s->deadline_ms, 1);
            server_schedule(srv, s);
        }
    }
}

/* A request's answer (of status, as appended) was queued in out from mark:
 * count it, maybe log it. path/query are the request's (untrusted) slices,
 * NULL when it did not parse. */
static void account(struct session *s, int status, size_t mark, int method, const char *path,
                    size_t path_len, const char *query, size_t query_len, uint64_t peer_id,
                    uint64_t started_us)
{
    if (!status)
        return; /* nothing was queued: the connection closes unanswered */
    struct access_entry e = {
        .remote = s->peer, .method = method, .path = path, .path_len = path_len,
        .query = query, .query_len = query_len, .peer_id = peer_id, .status = status,
        .bytes = s->out.len - mark, .started_us = started_us,
    };
    access_record(&s->srv->access, &e);
}

/* The answer to this session's /wait starts at mark in out. Its path is
 * "/wait" exactly (the router parks nothing else), so no request bytes
 * need to outlive the parse for the log. */
static void account_wait(struct session *s, int status, size_t mark)
{
    account(s, status, mark, s->wait_method, STRLIT("/wait"), NULL, 0, s->wait_member,
            s->wait_started_us);
}

/* Answer this session's /wait with outcome o; see account_wait. */
static void answer_wait_outcome(struct session *s, enum outcome o, bool ka)
{
    size_t mark = s->out.len;
    const struct answer *a = outcome_answer(o);
    int rc = resp_append_outcome(&s->out, o, ka, s->wait_member);
    if (rc < 0 || a->close || !ka)
        s->close_after_write = true;
    account_wait(s, rc == 0 ? a->status : 0, mark);
}

/* Every byte of these items reached the kernel: the messages among them
 * count as relayed, with their latency since acceptance. */
static void observe_relayed(struct server *srv, const reg_item_t *chain)
{
    uint64_t now = 0;
    for (const reg_item_t *it = chain; it; it = reg_item_next(it)) {
        if (!reg_item_is_message(it))
            continue;
        if (!now)
            now = clock_now_us();
        uint64_t at = reg_item_accepted_us(it);
        size_t len;
        (void)reg_item_body(it, &len);
        metrics_observe_relay(&srv->metrics, now > at ? now - at : 0, len);
    }
}

/*
 * A batched answer (X-Pcsig-Batch: 1): the chain's items as records
 * "<pragma> <ctype_len> <body_len>\n<ctype><body>", oldest first.
 * 0, or the buf error with nothing appended.
 */
static int append_batch(struct session *s, const reg_item_t *chain, bool ka)
{
    size_t n = 0, total = 0;
    char line[80];
    for (const reg_item_t *it = chain; it; it = reg_item_next(it)) {
        const char *ct, *body;
        size_t ctlen, blen;
        reg_item_content_type(it, &ct, &ctlen);
        body = reg_item_body(it, &blen);
        (void)body;
        int w = snprintf(line, sizeof line, "%llu %zu %zu\n",
                         (unsigned long long)reg_item_pragma(it), ctlen, blen);
        total += (size_t)w + ctlen + blen;
        n++;
    }
    char extra[48];
    snprintf(extra, sizeof extra, "X-Pcsig-Batch-Count: %zu\r\n", n);
    struct resp r = {.status = 200, .reason = "OK", .has_ctype = true,
                     .ctype = "application/x-pcsig-batch", .ctype_len = 25,
                     .body_len = total, .head_only = true, .pragma = s->wait_member,
                     .keep_alive = ka, .extra = extra};
    size_t mark = s->out.len;
    int rc = resp_append(&s->out, &r);
    for (const reg_item_t *it = chain; rc == 0 && it; it = reg_item_next(it)) {
        const char *ct, *body;
        size_t ctlen, blen;
        reg_item_content_type(it, &ct, &ctlen);
        body = reg_item_body(it, &blen);
        rc = buf_printf(&s->out, "%llu %zu %zu\n", (unsigned long long)reg_item_pragma(it),
                        ctlen, blen);
        if (rc == 0)
            rc = buf_append(&s->out, ct, ctlen);
        if (rc == 0)
            rc = buf_append(&s->out, body, blen);
    }
    if (rc < 0)
        s->out.len = mark;
    return rc;
}

/* Write the answer to this session's /wait. */
static void answer_wait(struct session *s, enum reg_wake why, reg_item_t *item)
{
    ASSERT_RUNNING(s);
    struct server *srv = s->srv;
    /* A member that is gone has nothing more to wait for on this connection. */
    bool ka = s->wait_keep_alive && !atomic_load(&srv->draining) && why != REG_WAKE_GONE;
    uint64_t own = s->wait_member;
    size_t mark = s->out.len;
    struct resp r = {.status = 200, .reason = "OK", .keep_alive = ka, .pragma = own,
                     .has_ctype = true, .ctype = "text/plain", .ctype_len = 10};
    int rc;
    if (why == REG_WAKE_ITEM && item && s->wait_batch) {
        /* Whatever queued up meanwhile rides along, up to the body limit
         * (--cluster: the fetch from Redis brought it along already). */
        if (!srv->cluster) {
            size_t cost = reg_item_cost(item);
            size_t budget = srv->cfg.max_body > cost ? srv->cfg.max_body - cost : 0;
            reg_item_t *more = reg_take(srv->reg, own, budget, SESSION_BATCH_MAX_ITEMS - 1,
                                        clock_now_ms());
            /* item was handed over alone: chain the rest behind it. */
            item = reg_chain_append(item, more);
        }
        rc = append_batch(s, item, ka);
        if (rc == 0) {
            s->inflight = item;
            s->inflight_member = own;
            item = NULL;
        }
        if (item)
            requeue(srv, own, item);
        if (rc < 0 || !ka)
            s->close_after_write = true;
        account_wait(s, rc == 0 ? 200 : 0, mark);
        return;
    }
    if (why != REG_WAKE_ITEM && why != REG_WAKE_GONE) {
        answer_wait_outcome(s, outcome_of_wake(why), ka);
        return;
    }
    /* A message, or the member's own leave line when it is gone. */
    if (!item) {
        answer_wait_outcome(s, OUTCOME_WAIT_IDLE, ka);
        if (why == REG_WAKE_GONE)
            s->close_after_write = true;
        return;
    }
    r.has_ctype = reg_item_content_type(item, &r.ctype, &r.ctype_len);
    r.body = reg_item_body(item, &r.body_len);
    r.pragma = reg_item_pragma(item);
    rc = resp_append(&s->out, &r);
    if (rc == 0) {
        s->inflight = item;
        s->inflight_member = own;
        item = NULL;
    }
    if (item)
        requeue(srv, own, item);
    if (rc < 0 || !ka || why == REG_WAKE_GONE)
        s->close_after_write = true;
    account_wait(s, rc == 0 ? r.status : 0, mark);
}

/* Park the /wait of member id, or answer it at once from the queue. */
static enum step start_wait(struct session *s, uint64_t id)
{
    struct server *srv = s->srv;
    ASSERT_RUNNING(s);
    assert(!s->waiting);
    /* A parked wait holds no big buffer (as arm() does for the others): a
     * sign-in's member list may have just gone out of this one. */
    if (s->in.len == 0 && s->in.cap > SESSION_KEEP_CAP)
        buf_free(&s->in);
    if (s->out.len == 0 && s->out.cap > SESSION_KEEP_CAP)
        buf_free(&s->out);
    s->waiting = true;
    s->wait_member = id;
    atomic_store(&s->deadline_ms, 0);
    /* Watch for hang-up while parked; armed before parking, while we own it. */
    struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLONESHOT, .data.ptr = s};
    if (session_epoll(s, &ev) < 0) {
        s->waiting = false;
        return close_session(s);
    }
    reg_item_t *item = NULL;
    /* reg_wait may publish s (on_park) and a sender may claim it at once. */
    atomic_fetch_add(&s->pins, 1);
    int rc = srv->cluster ? cluster_wait(srv->cluster, id, &s->cluster_gen, s->wait_batch,
                                         &s->waiter, &item)
                          : reg_wait(srv->reg, id, &s->waiter, clock_now_ms(), &item);
    if (rc == REG_WAIT_PARKED)
        return recheck_and_unpin(s, SESSION_PARKED);
    atomic_fetch_sub(&s->pins, 1); /* not published: still ours */
    s->waiting = false;
    if (rc == REG_WAIT_ITEM)
        answer_wait(s, REG_WAKE_ITEM, item);
    else if (rc == -ESHUTDOWN)
        answer_wait(s, REG_WAKE_SHUTDOWN, NULL);
    else if (rc == CLUSTER_WAIT_GONE)
        answer_wait(s, REG_WAKE_GONE, item);
    else if (rc == CLUSTER_WAIT_DISPLACED)
        answer_wait(s, REG_WAKE_DISPLACED, NULL);
    else /* -EIO: Redis unreachable; -ENOENT: not signed in */
        answer_wait_outcome(s, rc == -EIO ? OUTCOME_STORE_DOWN : OUTCOME_SORRY,
                            s->wait_keep_alive);
    return STEP_RECLAIMED;
}

/* Refuse the request in `in` (parse_status: the parser's status and why;
 * 0: outcome o's answer), close after the answer, lingering. */
static void refuse(struct session *s, enum outcome o, int parse_status, const char *parse_why)
{
    const struct answer *a = outcome_answer(o);
    int status = parse_status ? parse_status : a->status;
    log_event(LOG_DEBUG, "request_refused",
              &(struct log_fields){.remote = s->peer, .status = status}, "%s",
              parse_status ? parse_why : a->body);
    s->first_request_done = true;
    buf_reset(&s->out);
    int rc = parse_status ? resp_append_parse_error(&s->out, parse_status, parse_why)
                          : resp_append_outcome(&s->out, o, false, 0);
    /* The request did not parse: no method or path to report. */
    account(s, rc == 0 ? status : 0, 0, 0, NULL, 0, NULL, 0, 0, s->request_started_us);
    s->close_after_write = true;
    s->linger = true;
    buf_reset(&s->in);
    s->parse = (http_parse_state_t)HTTP_PARSE_STATE_INIT;
    s->head_len = 0;
}

static void snapshot(void *srv, struct metrics_snapshot *out)
{
    server_metrics_snapshot(srv, out);
}

/*
 * Route a complete request (router.c decides; this applies its result to
 * the session, the one writer of session fields). Every request is
 * answered: res->status is the answer's, also when the router could build
 * none and the 500 of OUTCOME_NO_ANSWER went out instead.
 */
static void dispatch(struct session *s, const http_request_t *req, const char *body,
                     struct route_result *res)
{
    struct server *srv = s->srv;
    const struct route_env env = {
        .cfg = &srv->cfg, .reg = srv->reg, .cluster = srv->cluster, .web = srv->web,
        .rl = srv->rl, .metrics = &srv->metrics, .auth_tokens = srv->auth_tokens,
        .nauth_tokens = srv->nauth_tokens, .draining = atomic_load(&srv->draining),
        .open_conns = atomic_load(&srv->open_conns), .started_ms = srv->started_ms,
        .out_held = atomic_load(&srv->out_held), .snapshot = snapshot, .snapshot_ctx = srv,
    };
    const struct route_request rq = {.req = req, .body = body, .peer = s->peer,
                                     .rl_key = &s->rl_key, .metrics_only = s->metrics_only};
    router_route(&env, &rq, &s->out, res);
    if (res->close)
        s->close_after_write = true;
    if (res->linger)
        s->linger = true;
    if (res->make_room)
        server_output_pressure(srv, true);
    session_out_sync(s); /* a sign-in's list may be big */
    if (res->kind == ROUTE_WAIT) {
        s->wait_keep_alive = res->wait_keep_alive;
        s->wait_batch = res->wait_batch;
        s->cluster_gen = 0; /* --cluster: a new /wait takes a new lease */
        return;
    }
    if (res->kind == ROUTE_QUIT)
        server_request_quit(srv, "GET /quit", s->peer);
    if (res->status == 0) {
        log_event(LOG_ERROR, "answer_failed", &(struct log_fields){.remote = s->peer},
                  "no answer could be built; answering 500");
        if (resp_append_outcome(&s->out, OUTCOME_NO_ANSWER, false, 0) == 0)
            res->status = outcome_answer(OUTCOME_NO_ANSWER)->status;
        s->close_after_write = true;
    }
}

/* Flush, parse, dispatch, read; until we must wait or the session closes. */
static enum step pump(struct session *s)
{
    struct server *srv = s->srv;
    const http_limits_t lim = {.max_head = srv->cfg.max_head, .max_body = srv->cfg.max_body};
    for (;;) {
        ASSERT_RUNNING(s);
        /* What was written is dropped from out once per pass, not after
         * each write: a big answer going out in socket-sized pieces would
         * otherwise be moved down once per piece. */
        size_t sent = 0;
        ssize_t w = 0;
        s->conn->closing = s->close_after_write; /* the answer and the FIN in one segment */
        while (sent < s->out.len) {
            w = conn_write(s->conn, s->out.data + sent, s->out.len - sent);
            if (w <= 0)
                break;
            sent += (size_t)w;
        }
        buf_consume(&s->out, sent);
        if (s->out.len) {
            if (w != -EAGAIN)
                return close_session(s);
            /* The client took something (or has only now begun to be
             * waited on): the reaper closes the longest-stalled first. */
            if (sent || atomic_load(&s->out_progress_ms) == 0)
                atomic_store(&s->out_progress_ms, clock_now_ms());
            session_out_sync(s);
            uint64_t grace = s->close_after_write ? srv->cfg.read_timeout_ms
                                                  : srv->cfg.idle_timeout_ms;
            return arm(s, EPOLLOUT, clock_now_ms() + grace);
        }
        if (atomic_load_explicit(&s->out_progress_ms, memory_order_relaxed))
            atomic_store(&s->out_progress_ms, 0);
        session_out_sync(s);
        if (s->inflight) {
            observe_relayed(s->srv, s->inflight);
            reg_item_free_chain(s->inflight); /* every byte reached the kernel */
            s->inflight = NULL;
        }
        if (s->close_after_write && !s->linger)
            return close_session(s);
        if (s->close_after_write) {
            if (!s->lingering) {
                s->lingering = true;
                shutdown(conn_fd(s->conn), SHUT_WR);
                atomic_store(&s->deadline_ms, clock_now_ms() + SESSION_LINGER_MS);
            }
            char sink[4096];
            ssize_t n;
            while ((n = conn_read(s->conn, sink, sizeof sink)) > 0)
                ;
            if (n == -EAGAIN)
                return arm(s, EPOLLIN, atomic_load(&s->deadline_ms));
            return close_session(s);
        }

        /* A complete head is parsed again (once) only when its body is in. */
        if (s->in.len && (s->head_len == 0 || s->in.len - s->head_len >= s->head_body_len)) {
            http_request_t req;
            http_error_t err;
            long head = http_parse_request_resume(s->in.data, s->in.len, &lim, &s->parse, &req,
                                                  &err);
            if (head < 0) {
                refuse(s, OUTCOME_NO_ANSWER, err.status, err.reason);
                continue;
            }
            if (head > 0) {
                s->head_len = (size_t)head;
                s->head_body_len = req.content_length;
            }
            if (head > 0 && s->in.len - (size_t)head >= req.content_length) {
                s->head_len = 0;
                size_t mark = s->out.len;
                s->first_request_done = true;
                struct route_result res;
                dispatch(s, &req, s->in.data + head, &res);
                if (res.kind != ROUTE_WAIT) {
                    account(s, res.status, mark, (int)req.method, req.path.ptr, req.path.len,
                            req.query.ptr, req.query.len, 0, s->request_started_us);
                } else {
                    s->wait_started_us = s->request_started_us;
                    s->wait_method = (int)req.method;
                }
                /* Slices of req point into in: nothing reads them past here. */
                buf_consume(&s->in, (size_t)head + (size_t)req.content_length);
                uint64_t now_us = s->in.len ? clock_now_us() : 0;
                s->request_started_us = now_us;
                s->request_started_ms = now_us / 1000;
                if (res.kind == ROUTE_WAIT && start_wait(s, res.wait_member) == STEP_HANDED_OFF)
                    return STEP_HANDED_OFF;
                if (s->waiting)
                    return STEP_RECLAIMED; /* taken back from its park: session_run sees why */
                continue;
            }
        }

        if (buf_room(&s->in) == 0) {
            refuse(s, OUTCOME_HEAD_TOO_LARGE, 0, NULL);
            continue;
        }
        size_t want = buf_room(&s->in) < SESSION_READ_CHUNK ? buf_room(&s->in) : SESSION_READ_CHUNK;
        if (buf_reserve(&s->in, want) < 0) {
            refuse(s, OUTCOME_NO_MEMORY, 0, NULL);
            continue;
        }
        ssize_t n = conn_read(s->conn, s->in.data + s->in.len, want);
        if (n > 0) {
            if (s->in.len == 0) {
                s->request_started_us = clock_now_us();
                s->request_started_ms = s->request_started_us / 1000;
            }
            s->in.len += (size_t)n;
            continue;
        }
        if (n == -EAGAIN) {
            uint64_t deadline = s->in.len ? s->request_started_ms + srv->cfg.read_timeout_ms
                                          : clock_now_ms() + srv->cfg.idle_timeout_ms;
            /* No request yet: the read timeout runs from the accept, as it
             * does for a plain connection that sends nothing. A TLS client
             * that handshakes and then goes silent, or sends part of a
             * record (which leaves in empty), gets no idle timeout. */
            uint64_t first_by = s->accepted_ms + srv->cfg.read_timeout_ms;
            if (!s->first_request_done && deadline > first_by)
                deadline = first_by;
            return arm(s, EPOLLIN, deadline);
        }
        if (n < 0 && s->conn->error[0])
            log_event(LOG_DEBUG, s->conn->established ? "conn_error" : "tls_handshake_failed",
                      &(struct log_fields){.remote = s->peer}, "%s", s->conn->error);
        return close_session(s); /* EOF or error: nothing left to answer */
    }
}

/*
 * Read what the client has sent without waiting: true when in now holds a
 * whole request (or one that fails to parse, which pump answers). Before a
 * deadline closes a connection: when every worker was busy, a request may
 * have sat unread in the socket since before it; it is served, not dropped
 * unanswered. A request still incomplete is not.
 */
static bool request_waiting(struct session *s)
{
    struct server *srv = s->srv;
    while (buf_room(&s->in)) {
        size_t want = buf_room(&s->in) < SESSION_READ_CHUNK ? buf_room(&s->in) : SESSION_READ_CHUNK;
        if (buf_reserve(&s->in, want) < 0)
            break;
        ssize_t n = conn_read(s->conn, s->in.data + s->in.len, want);
        if (n <= 0)
            break;
        if (s->in.len == 0) {
            s->request_started_us = clock_now_us();
            s->request_started_ms = s->request_started_us / 1000;
        }
        s->in.len += (size_t)n;
    }
    if (s->in.len == 0)
        return false;
    const http_limits_t lim = {.max_head = srv->cfg.max_head, .max_body = srv->cfg.max_body};
    http_request_t req;
    http_error_t err;
    long head = http_parse_request(s->in.data, s->in.len, &lim, &req, &err);
    return head < 0 || (head > 0 && s->in.len - (size_t)head >= req.content_length);
}

/*
 * A parked /wait was claimed with no answer for it: only the poller does
 * that, for a hang-up, or for an event it held from before the park. Read
 * what the client sent meanwhile (kept in in, served after the answer):
 * true at EOF or an error, or when in is full and nothing more can be seen.
 */
static bool parked_hung_up(struct session *s)
{
    while (buf_room(&s->in)) {
        size_t want = buf_room(&s->in) < SESSION_READ_CHUNK ? buf_room(&s->in) : SESSION_READ_CHUNK;
        if (buf_reserve(&s->in, want) < 0)
            return true;
        ssize_t n = conn_read(s->conn, s->in.data + s->in.len, want);
        if (n == -EAGAIN)
            return false;
        if (n <= 0)
            return true;
        if (s->in.len == 0) {
            s->request_started_us = clock_now_us();
            s->request_started_ms = s->request_started_us / 1000;
        }
        s->in.len += (size_t)n;
    }
    return true;
}

/* The reaper woke us: a deadline passed, or the server is draining. */
static bool handle_timeout(struct session *s)
{
    struct server *srv = s->srv;
    uint64_t deadline = atomic_load(&s->deadline_ms);
    bool passed = deadline && clock_now_ms() >= deadline;
    bool idle = s->in.len == 0 && s->out.len == 0;
    if (!passed && !(atomic_load(&srv->draining) && idle))
        return true; /* not yet: carry on */
    if (s->out.len == 0 && !s->close_after_write && request_waiting(s))
        return true; /* it is all there: answer it */
    if (s->out.len == 0 && s->in.len > 0 && !s->close_after_write) {
        log_event(LOG_DEBUG, "request_timeout", &(struct log_fields){.remote = s->peer},
                  "request not completed in time");
        refuse(s, OUTCOME_REQUEST_TIMEOUT, 0, NULL);
        return true;
    }
    close_session(s);
    return false;
}

void session_run(struct session *s)
{
    for (;;) {
        ASSERT_RUNNING(s);
        unsigned bits = atomic_exchange(&s->wake_bits, 0);
        if ((bits & SESSION_WAKE_EVICT) && !s->waiting && s->out.len &&
            atomic_load(&s->out_progress_ms)) {
            /* Still not taking its answer while held output is over the
             * cap: it goes, so that the clients that do read are served. */
            log_event(LOG_INFO, "output_closed", &(struct log_fields){.remote = s->peer},
                      "closed: %zu answer bytes left unread while held output was over "
                      "--max-total-output-bytes", s->out.len);
            metrics_count_output_closed(&s->srv->metrics);
            close_session(s);
            return;
        }
        if (s->waiting) {
            if (s->has_wake) {
                s->has_wake = false;
                s->waiting = false;
                reg_item_t *item = s->wake_item;
                s->wake_item = NULL;
                if (s->wake_why == REG_WAKE_POLL) {
                    /* --cluster: fetch again from Redis (or park again). */
                    if (start_wait(s, s->wait_member) == STEP_HANDED_OFF)
                        return;
                } else {
                    if (s->srv->cluster && (s->wake_why == REG_WAKE_IDLE ||
                                            s->wake_why == REG_WAKE_SHUTDOWN))
                        cluster_release(s->srv->cluster, s->wait_member, s->cluster_gen);
                    answer_wait(s, s->wake_why, item);
                    if (s->close_after_write && s->in_epoll) {
                        /* Out of epoll before the answer goes: the client hangs
                         * up as soon as it has read it, and that hang-up would
                         * wake the poller for nothing before our close. */
                        poller_ops->ctl(s->srv->epfd, EPOLL_CTL_DEL, conn_fd(s->conn), NULL);
                        s->in_epoll = false;
                    }
                }
            } else if (parked_hung_up(s)) {
                /* Hang-up while parked: the client is gone. */
                close_session(s);
                return;
            } else {
                /* Still there: the poller's event was taken in hand before
                 * this /wait parked (the reaper served it meanwhile). */
                reg_unpark(s->srv->reg, &s->waiter, clock_now_ms());
                s->waiting = false;
                if (start_wait(s, s->wait_member) == STEP_HANDED_OFF)
                    return;
            }
        } else if ((bits & SESSION_WAKE_TIMEOUT) && !handle_timeout(s)) {
            return;
        }
        if (s->waiting)
            continue; /* taken back from its park (start_wait): see why */
        if (pump(s) == STEP_HANDED_OFF)
            return;
    }
}

void session_run_here(struct session *s)
{
    local_on = true;
    session_run(s);
    while (local_head) {
        struct session *next = local_head;
        local_head = next->wq_next;
        if (!local_head)
            local_tail = NULL;
        local_n--;
        session_run(next);
    }
    local_on = false;
}

bool session_first_plain_request(const struct session *s)
{
    /* --cluster: never, the poller would wait on Redis (see accept_one). */
    return !s->first_request_done && !s->tls && !s->refusal && s->conn && !s->srv->cluster;
}
