/*
 * The session ownership protocol (session.h), played out: sessions driven
 * through a fake connection (bytes in and out, -EAGAIN, errors, hang-up)
 * and a fake poller (records what each session asks epoll for, delivers
 * readiness when the test says, one-shot like EPOLLONESHOT), with the real
 * work queue (workers.c; the test runs what is queued, when it chooses),
 * registry, graveyard (poller.c) and reaper sweep (reaper.c). Everything
 * runs on the test's thread, except what "another thread" does inside one
 * of the protocol's windows: that runs on a thread started and joined on
 * the spot, so each race happens in one fixed order:
 *   - a wake during park (a message, a wait timeout, a sign-out, a stale
 *     reaper claim) between the park and the owner's re-check,
 *   - a hang-up during a wake (the client goes while its answer is queued
 *     or written), the wake's item then requeued, never lost,
 *   - a displacing /wait during a delivery to the older one,
 *   - readiness or a hang-up between epoll_ctl and the owner's
 *     publication (arm, park), and a poller event held from before a park,
 *   - a stop with parked, queued and idle sessions.
 * Checked throughout: only the RUNNING owner reads, writes or re-arms a
 * session (the fakes assert it), a session is published pinned, every
 * /wait gets one answer at most and every message is answered or still
 * queued, and at the end every connection was closed exactly once and no
 * session is left (ASan, in the sanitized run, sees any double free, any
 * use after free and any leak).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

/* The modules themselves: their static functions and seams are used here. */
#include "proto.h"
#include "session.c"
#include "reaper.c"

/* ---- what server.c would provide (not linked: no threads, no sockets) ---- */

void server_request_quit(struct server *srv, const char *cause, const char *remote)
{
    (void)srv;
    (void)cause;
    (void)remote;
}

void server_metrics_snapshot(struct server *srv, struct metrics_snapshot *out)
{
    (void)srv;
    memset(out, 0, sizeof *out);
}

/* ---- the fake connection ----------------------------------------------- */

#define MAX_CONNS 8
/* Never a descriptor of this process: shutdown() on it fails harmlessly. */
#define FAKE_FD_BASE (1 << 24)

struct fake_conn {
    conn_t c; /* first: conn_t * and struct fake_conn * convert */
    struct session *s;
    buf_t in;      /* what the client sent */
    size_t in_pos; /* how much of it the server read */
    bool hup;      /* the client hung up: EOF once in is read */
    int read_err;  /* 0, or the -errno reads fail with once in is read */
    buf_t out;     /* what the server wrote */
    size_t room;   /* bytes writes take before -EAGAIN (SIZE_MAX: any) */
    int write_err; /* 0, or the -errno writes fail with */
    int destroyed; /* times conn_close reached it */
    /* Called once (then cleared) at the next read, as the owner reads. */
    void (*at_read)(struct fake_conn *fc);
};

static struct fake_conn conns[MAX_CONNS];
static int nconns;
static struct server srv;

/* server_stop's last step: every other thread has ended, it owns all. */
static bool last_thread;

/* Only the RUNNING owner touches a session's connection. */
static void assert_owner(const struct fake_conn *fc)
{
    assert_int_equal(fc->destroyed, 0);
    assert_non_null(fc->s);
    if (!last_thread)
        assert_int_equal(atomic_load(&fc->s->state), SESSION_RUNNING);
}

static ssize_t fake_read(conn_t *c, void *p, size_t n)
{
    struct fake_conn *fc = (struct fake_conn *)c;
    assert_owner(fc);
    if (fc->at_read) {
        void (*hook)(struct fake_conn *) = fc->at_read;
        fc->at_read = NULL;
        hook(fc);
    }
    size_t left = fc->in.len - fc->in_pos;
    if (left) {
        size_t k = left < n ? left : n;
        memcpy(p, fc->in.data + fc->in_pos, k);
        fc->in_pos += k;
        return (ssize_t)k;
    }
    if (fc->read_err)
        return fc->read_err;
    if (fc->hup)
        return 0;
    c->want = POLLIN;
    return -EAGAIN;
}

static ssize_t fake_write(conn_t *c, const void *p, size_t n)
{
    struct fake_conn *fc = (struct fake_conn *)c;
    assert_owner(fc);
    if (fc->write_err)
        return fc->write_err;
    if (fc->room == 0) {
        c->want = POLLOUT;
        return -EAGAIN;
    }
    size_t k = fc->room < n ? fc->room : n;
    assert_int_equal(buf_append(&fc->out, p, k), 0);
    if (fc->room != SIZE_MAX)
        fc->room -= k;
    return (ssize_t)k;
}

static struct fake_poller_entry {
    bool registered; /* in the interest list (ADD, until DEL or close) */
    bool enabled;    /* armed: not yet reported since the last ADD/MOD */
    uint32_t events;
    struct session *s;
} entries[MAX_CONNS];

static void fake_destroy(conn_t *c)
{
    struct fake_conn *fc = (struct fake_conn *)c;
    assert_owner(fc);
    fc->destroyed++;
    /* Closing the only descriptor takes it out of the epoll set. */
    entries[fc - conns].registered = false;
}

static const struct conn_ops fake_ops = {.read = fake_read, .write = fake_write,
                                         .destroy = fake_destroy};

/* ---- the fake poller ----------------------------------------------------- */

/* "Meanwhile, on another thread": fn runs on a thread of its own (its own
 * thread-local state, as a worker's or the poller's), joined at once. */
static void *thread_body(void *arg)
{
    void (*const *fn)(void) = arg;
    (*fn)();
    return NULL;
}

static void on_other_thread(void (*fn)(void))
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_body, &fn), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* One-shot hooks: the test's "meanwhile, on another thread", run there
 * (on_other_thread) when ctl or the hand-over reaches their target. */
static struct session *ctl_target, *handover_target;
static void (*at_ctl)(void);
static void (*at_handover)(void);
static int handovers;

static int fake_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    (void)epfd;
    int i = fd - FAKE_FD_BASE;
    assert_true(i >= 0 && i < nconns);
    struct fake_poller_entry *e = &entries[i];
    assert_owner(&conns[i]);
    switch (op) {
    case EPOLL_CTL_ADD:
        if (e->registered) {
            errno = EEXIST;
            return -1;
        }
        break;
    case EPOLL_CTL_MOD:
        if (!e->registered) {
            errno = ENOENT;
            return -1;
        }
        break;
    case EPOLL_CTL_DEL:
        if (!e->registered) {
            errno = ENOENT;
            return -1;
        }
        e->registered = e->enabled = false;
        return 0;
    default:
        fail();
    }
    assert_true(ev->events & EPOLLONESHOT);
    assert_ptr_equal(ev->data.ptr, conns[i].s);
    e->registered = e->enabled = true;
    e->events = ev->events;
    e->s = ev->data.ptr;
    if (at_ctl && ctl_target == e->s) {
        void (*hook)(void) = at_ctl;
        at_ctl = NULL;
        on_other_thread(hook);
    }
    return 0;
}

static void fake_handed_over(struct session *s)
{
    /* Published pinned: nobody may free it before the owner's re-check. */
    assert_true(atomic_load(&s->pins) > 0);
    int st = atomic_load(&s->state);
    assert_true(st == SESSION_ARMED || st == SESSION_PARKED || st == SESSION_RUNNING);
    handovers++;
    if (at_handover && handover_target == s) {
        void (*hook)(void) = at_handover;
        at_handover = NULL;
        on_other_thread(hook);
    }
}

static const struct session_poller_ops fake_poller_ops = {.ctl = fake_ctl,
                                                          .handed_over = fake_handed_over};

/* What epoll would report for entry i now (0: nothing). */
static uint32_t ready_events(int i)
{
    const struct fake_conn *fc = &conns[i];
    const struct fake_poller_entry *e = &entries[i];
    if (!e->registered || !e->enabled || fc->destroyed)
        return 0;
    uint32_t r = 0;
    if (fc->in_pos < fc->in.len || fc->hup || fc->read_err)
        r |= EPOLLIN;
    if (fc->room || fc->write_err)
        r |= EPOLLOUT;
    if (fc->hup)
        r |= EPOLLRDHUP | EPOLLHUP;
    if (fc->read_err || fc->write_err)
        r |= EPOLLERR;
    return r & (e->events | EPOLLHUP | EPOLLERR);
}

/*
 * One pass of poller_main: collect the ready sessions (one-shot: each is
 * disabled as it is reported; epoll_wait), claim and hand out each, then
 * free the graveyard. Returns how many were reported. A test may act
 * between the two halves: the events are then in the poller's hands.
 */
static int poll_collect(struct session **batch)
{
    int n = 0;
    for (int i = 0; i < nconns; i++)
        if (ready_events(i)) {
            entries[i].enabled = false;
            batch[n++] = entries[i].s;
        }
    return n;
}

static void poll_dispatch(struct session **batch, int n)
{
    for (int i = 0; i < n; i++) {
        struct session *s = batch[i];
        if (!session_claim(s, SESSION_WAKE_IO, true))
            continue;
        if (session_first_plain_request(s))
            session_run_here(s);
        else
            server_schedule(s->srv, s);
    }
    server_free_graveyard(&srv);
}

static int poll_once(void)
{
    struct session *batch[MAX_CONNS];
    int n = poll_collect(batch);
    poll_dispatch(batch, n);
    return n;
}

/* ---- the fake workers: the real queue, run when the test says -------------- */

static struct session *dequeue(void)
{
    pthread_mutex_lock(&srv.wq_lock);
    struct session *s = srv.wq_head;
    if (s) {
        srv.wq_head = s->wq_next;
        if (!srv.wq_head)
            srv.wq_tail = NULL;
        atomic_fetch_sub(&srv.wq_depth, 1);
    }
    pthread_mutex_unlock(&srv.wq_lock);
    return s;
}

/* Run what is queued (and what that queues) as worker_main does. */
static int run_queue(void)
{
    int n = 0;
    struct session *s;
    while ((s = dequeue())) {
        assert_int_equal(atomic_load(&s->state), SESSION_RUNNING);
        session_run_here(s);
        n++;
    }
    return n;
}

/* Poll and run until nothing more happens. */
static void settle(void)
{
    int rounds = 0;
    while (run_queue() + poll_once() > 0)
        assert_true(++rounds < 100); /* a session that never rests: a bug */
}

/* ---- clients ----------------------------------------------------------------- */

/* A plain client connected: its session, served first on this thread as
 * the acceptor does (session_run_here) once it has sent something. */
static struct fake_conn *client(void)
{
    assert_true(nconns < MAX_CONNS);
    int i = nconns++;
    struct fake_conn *fc = &conns[i];
    memset(fc, 0, sizeof *fc);
    buf_init(&fc->in, 1 << 16);
    buf_init(&fc->out, 1 << 20);
    fc->room = SIZE_MAX;
    struct session *s = session_new(&srv, FAKE_FD_BASE + i, NULL, false);
    assert_non_null(s);
    free(s->conn); /* the plain conn it made: never used, owns no descriptor */
    fc->c.ops = &fake_ops;
    fc->c.fd = FAKE_FD_BASE + i;
    fc->c.want = POLLIN;
    fc->c.established = true;
    s->conn = &fc->c;
    fc->s = s;
    memset(&entries[i], 0, sizeof entries[i]);
    atomic_fetch_add(&srv.open_conns, 1); /* as the acceptor counts it */
    return fc;
}

static void say(struct fake_conn *fc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The client sends a formatted request (or part of one). */
static void say(struct fake_conn *fc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(&fc->in, fmt, ap);
    va_end(ap);
    assert_int_equal(rc, 0);
}

static void say_wait(struct fake_conn *fc, uint64_t id)
{
    say(fc, "GET /wait?peer_id=%llu HTTP/1.1\r\nHost: x\r\n\r\n", (unsigned long long)id);
}

static void say_message(struct fake_conn *fc, uint64_t from, uint64_t to, const char *body)
{
    say(fc, "POST /message?peer_id=%llu&to=%llu HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
        (unsigned long long)from, (unsigned long long)to, strlen(body), body);
}

/* The answers written to fc so far. */
static int answers(const struct fake_conn *fc)
{
    int n = 0;
    for (size_t i = 0; i + 9 <= fc->out.len; i++)
        if (memcmp(fc->out.data + i, "HTTP/1.1 ", 9) == 0)
            n++;
    return n;
}

static bool wrote(const struct fake_conn *fc, const char *text)
{
    size_t k = strlen(text);
    for (size_t i = 0; i + k <= fc->out.len; i++)
        if (memcmp(fc->out.data + i, text, k) == 0)
            return true;
    return false;
}

/* The status of the last answer written to fc. */
static int last_status(const struct fake_conn *fc)
{
    for (size_t i = fc->out.len; i-- > 0;)
        if (i + 12 <= fc->out.len && memcmp(fc->out.data + i, "HTTP/1.1 ", 9) == 0) {
            uint64_t status;
            assert_int_equal(proto_parse_u64(fc->out.data + i + 9, 3, &status), 0);
            return (int)status;
        }
    return 0;
}

static int state_of(const struct fake_conn *fc)
{
    return atomic_load(&fc->s->state);
}

/* A client that signs in as name on a new connection: its member id. The
 * connection stays open, keep-alive, armed for its next request. */
static uint64_t sign_in(const char *name, struct fake_conn **out)
{
    struct fake_conn *fc = client();
    say(fc, "GET /sign_in?%s HTTP/1.1\r\nHost: x\r\n\r\n", name);
    session_run_here(fc->s);
    assert_int_equal(answers(fc), 1);
    assert_int_equal(last_status(fc), 200);
    const char *p = NULL;
    for (size_t i = 0; i + 8 <= fc->out.len; i++)
        if (memcmp(fc->out.data + i, "Pragma: ", 8) == 0) {
            p = fc->out.data + i + 8;
            break;
        }
    assert_non_null(p);
    assert_int_equal(state_of(fc), SESSION_ARMED);
    *out = fc;
    return strtoull(p, NULL, 10);
}

static size_t queued_msgs(void)
{
    reg_stats_t st;
    reg_get_stats(srv.reg, &st);
    return st.queued_msgs;
}

static size_t parked(void)
{
    reg_stats_t st;
    reg_get_stats(srv.reg, &st);
    return st.parked;
}

/* ---- set-up and the stop (server_start / server_stop without threads) ----- */

static int setup(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof srv);
    srv.cfg.max_head = 8192;
    srv.cfg.max_body = 65536;
    srv.cfg.max_output_bytes = 1 << 20;
    srv.cfg.max_total_output_bytes = (size_t)1 << 30;
    srv.cfg.read_timeout_ms = 10000;
    srv.cfg.idle_timeout_ms = 60000;
    srv.cfg.member_timeout_ms = 30000;
    srv.cfg.wait_timeout_ms = 5000;
    srv.cfg.max_members = 100;
    srv.cfg.queue_max_msgs = 100;
    srv.cfg.queue_max_bytes = 1 << 20;
    srv.cfg.max_connections = 100;
    reg_config_t rc = {.member_timeout_ms = srv.cfg.member_timeout_ms,
                       .wait_timeout_ms = srv.cfg.wait_timeout_ms, .max_members = 100,
                       .queue_max_msgs = 100, .queue_max_bytes = 1 << 20};
    srv.reg = reg_create(&rc);
    srv.rl = rl_create(0, 0);
    assert_non_null(srv.reg);
    assert_non_null(srv.rl);
    srv.epfd = srv.acceptor_wake_fd = srv.poller_wake_fd = -1;
    pthread_mutex_init(&srv.wq_lock, NULL);
    pthread_cond_init(&srv.wq_cond, NULL);
    pthread_mutex_init(&srv.sessions_lock, NULL);
    pthread_cond_init(&srv.sessions_cond, NULL);
    pthread_mutex_init(&srv.grave_lock, NULL);
    pthread_mutex_init(&srv.reaper_lock, NULL);
    pthread_cond_init(&srv.reaper_cond, NULL);
    metrics_init(&srv.metrics);
    access_init(&srv.access, &srv.metrics, 0);
    srv.started_ms = clock_now_ms();
    nconns = 0;
    handovers = 0;
    at_ctl = NULL;
    at_handover = NULL;
    poller_ops = &fake_poller_ops;
    return 0;
}

/*
 * server_stop's part that concerns sessions: drain (the registry answers
 * every parked wait, the reaper closes the idle), then, on the one thread
 * left, the graveyard and whatever is still open.
 */
static void stop(void)
{
    atomic_store(&srv.draining, true);
    reg_shutdown(srv.reg);
    settle();
    sweep_sessions(&srv, clock_now_ms());
    settle();
    server_free_graveyard(&srv);
    last_thread = true;
    struct session *s = srv.sessions;
    while (s) {
        struct session *next = s->next;
        session_force_close(s);
        session_free(s);
        s = next;
    }
    srv.sessions = NULL;
    srv.nsessions = 0;
    last_thread = false;
}

static int teardown(void **state)
{
    (void)state;
    stop();
    /* Nothing pinned is left in the graveyard: everything was freed. */
    assert_null(srv.grave);
    assert_null(srv.wq_head);
    assert_int_equal(atomic_load(&srv.open_conns), 0);
    assert_int_equal(atomic_load(&srv.out_held), 0);
    for (int i = 0; i < nconns; i++) {
        assert_int_equal(conns[i].destroyed, 1); /* closed exactly once */
        buf_free(&conns[i].in);
        buf_free(&conns[i].out);
    }
    reg_destroy(srv.reg);
    rl_destroy(srv.rl);
    pthread_mutex_destroy(&srv.wq_lock);
    pthread_cond_destroy(&srv.wq_cond);
    pthread_mutex_destroy(&srv.sessions_lock);
    pthread_cond_destroy(&srv.sessions_cond);
    pthread_mutex_destroy(&srv.grave_lock);
    pthread_mutex_destroy(&srv.reaper_lock);
    pthread_cond_destroy(&srv.reaper_cond);
    poller_ops = &epoll_ops;
    return 0;
}

/* ---- the races ----------------------------------------------------------------- */

static struct fake_conn *a, *b, *a2;
static uint64_t ida, idb;

/* B's client sends A a message; the poller and a worker (this thread)
 * carry it: the registry claims A's parked wait on the way. */
static void b_sends(void)
{
    say_message(b, idb, ida, "hello");
    assert_int_equal(poll_once(), 1);
    run_queue();
}


/* A message for A woke its wait between the park and A's re-check, and was
 * answered on the sender's thread before that re-check ran. */
static void test_message_during_park(void **state)
{
    (void)state;
    idb = sign_in("b", &b); /* first: A has no join to hear of */
    ida = sign_in("a", &a);
    say_wait(a, ida);
    assert_int_equal(poll_once(), 1); /* A's /wait came: queued for a worker */
    handover_target = a->s;
    at_handover = b_sends;
    assert_int_equal(run_queue(), 1); /* parks it; the message meanwhile */
    assert_null(at_handover);         /* the window was played */
    assert_true(handovers >= 3);      /* A parked, B and A re-armed: each pinned */
    assert_int_equal(answers(a), 2);
    assert_true(wrote(a, "hello"));
    assert_int_equal(answers(b), 2);
    assert_int_equal(last_status(b), 200);
    /* Both back with the poller, waiting for their next request. */
    assert_int_equal(state_of(a), SESSION_ARMED);
    assert_int_equal(state_of(b), SESSION_ARMED);
    assert_int_equal(parked(), 0);
    assert_int_equal(queued_msgs(), 0);
    /* And again, the plain way: one answer per wake. */
    say_wait(a, ida);
    settle();
    assert_int_equal(state_of(a), SESSION_PARKED);
    b_sends();
    settle();
    assert_int_equal(answers(a), 3);
    assert_int_equal(answers(b), 3);
    assert_int_equal(queued_msgs(), 0);
}

static void a_hangs_up(struct fake_conn *fc)
{
    fc->hup = true;
}

/* The same, and A's client hangs up once it has its answer: A is closed
 * and buried on the sender's thread, and the poller's next pass there
 * must keep it, pinned, for the owner's re-check still to come. */
static void b_sends_and_a_goes(void)
{
    a->at_read = a_hangs_up; /* A's next read: after its answer went */
    b_sends();
    assert_int_equal(a->destroyed, 1);
    assert_ptr_equal(srv.grave, a->s);
    server_free_graveyard(&srv); /* the poller's pass */
    assert_ptr_equal(srv.grave, a->s); /* pinned: kept */
}

static void test_message_and_close_during_park(void **state)
{
    (void)state;
    idb = sign_in("b", &b); /* first: A has no join to hear of */
    ida = sign_in("a", &a);
    say_wait(a, ida);
    assert_int_equal(poll_once(), 1);
    handover_target = a->s;
    at_handover = b_sends_and_a_goes;
    assert_int_equal(run_queue(), 1);
    assert_null(at_handover);
    assert_int_equal(answers(a), 2);
    assert_true(wrote(a, "hello"));
    assert_non_null(srv.grave); /* unpinned now: the next pass frees it */
    poll_once();
    assert_null(srv.grave);
    assert_int_equal(srv.nsessions, 1);
    assert_int_equal(queued_msgs(), 0);
}

/* A's client hangs up while its wait is parked and, in the same poller
 * batch, B's message for A comes: the hang-up wins, A closes unanswered,
 * and the message stays queued for A's next /wait. */
static void test_hangup_then_message(void **state)
{
    (void)state;
    idb = sign_in("b", &b); /* first: A has no join to hear of */
    ida = sign_in("a", &a);
    say_wait(a, ida);
    settle();
    assert_int_equal(parked(), 1);
    assert_int_equal(state_of(a), SESSION_PARKED);
    a->hup = true;
    say_message(b, idb, ida, "hello");
    assert_int_equal(poll_once(), 2); /* A's hang-up first, then B */
    assert_int_equal(run_queue(), 2);
    assert_int_equal(a->destroyed, 1);
    assert_int_equal(answers(a), 1); /* its sign-in only */
    assert_int_equal(last_status(b), 200);
    assert_int_equal(queued_msgs(), 1);
    /* A reconnects: the message is there. */
    a2 = client();
    say_wait(a2, ida);
    session_run_here(a2->s);
    assert_int_equal(answers(a2), 1);
    assert_true(wrote(a2, "hello"));
    assert_int_equal(queued_msgs(), 0);
}

/* B's message claimed A's wait (A runs next on B's thread); before it runs,
 * A's client hangs up: the poller's claim loses (A is RUNNING) but leaves
 * its wake bit, and the write of the answer fails: the message is put back
 * in A's queue, not lost, and A's next /wait gets it. */
static void a_hangs_up_and_poller_sees_it(void)
{
    a->hup = true;
    a->write_err = -EPIPE;
    assert_int_equal(state_of(a), SESSION_RUNNING); /* claimed for the message */
    assert_true(a->s->has_wake);
    assert_int_equal(poll_once(), 1);
    assert_true(atomic_load(&a->s->wake_bits) & SESSION_WAKE_IO);
    assert_null(srv.wq_head); /* the loser queued nothing */
}

static void test_hangup_during_wake(void **state)
{
    (void)state;
    idb = sign_in("b", &b); /* first: A has no join to hear of */
    ida = sign_in("a", &a);
    say_wait(a, ida);
    settle();
    assert_int_equal(parked(), 1);
    say_message(b, idb, ida, "hello");
    /* B's worker: after B's answer, as B is handed back, A's hang-up. */
    handover_target = b->s;
    at_handover = a_hangs_up_and_poller_sees_it;
    assert_int_equal(poll_once(), 1); /* B */
    assert_int_equal(run_queue(), 1); /* B, then A on the same thread */
    assert_null(at_handover);
    assert_int_equal(last_status(b), 200);
    assert_int_equal(a->destroyed, 1);
    assert_int_equal(answers(a), 1); /* nothing went out to it */
    assert_int_equal(queued_msgs(), 1); /* requeued */
    a2 = client();
    say_wait(a2, ida);
    session_run_here(a2->s);
    assert_true(wrote(a2, "hello"));
    assert_int_equal(answers(a2), 1);
    assert_int_equal(queued_msgs(), 0);
}

/* A's wait was claimed for a message; before its answer is written, A's
 * client gives up on that connection and waits again on a new one (a2),
 * which parks. The write to the old one fails: the message goes to the
 * newer parked wait, answered once. */
static void a_waits_again_elsewhere(void)
{
    a->write_err = -ECONNRESET;
    a2 = client();
    say_wait(a2, ida);
    session_run_here(a2->s); /* served on arrival, as the acceptor does */
    assert_int_equal(state_of(a2), SESSION_PARKED);
    assert_int_equal(answers(a2), 0);
}

static void test_displaced_wait_during_delivery(void **state)
{
    (void)state;
    idb = sign_in("b", &b); /* first: A has no join to hear of */
    ida = sign_in("a", &a);
    say_wait(a, ida);
    settle();
    say_message(b, idb, ida, "hello");
    handover_target = b->s;
    at_handover = a_waits_again_elsewhere;
    assert_int_equal(poll_once(), 1);
    run_queue();
    settle();
    assert_null(at_handover);
    assert_int_equal(a->destroyed, 1);
    assert_int_equal(answers(a), 1);
    assert_int_equal(answers(a2), 1);
    assert_true(wrote(a2, "hello"));
    assert_int_equal(queued_msgs(), 0);
    assert_int_equal(parked(), 0);
}

/* The older wait is displaced (409) by a newer one while its client hangs
 * up: one answer (the 409) or none, never two, and it closes. */
static void a_hangs_up_now(void)
{
    a->hup = true;
    poll_once(); /* A's claim for the hang-up loses: A is RUNNING, displaced */
}

static void test_displaced_while_hanging_up(void **state)
{
    (void)state;
    ida = sign_in("a", &a);
    say_wait(a, ida);
    settle();
    a2 = client();
    say_wait(a2, ida);
    handover_target = a2->s; /* a2 parked, A claimed (displaced), not yet run */
    at_handover = a_hangs_up_now;
    session_run_here(a2->s);
    assert_null(at_handover);
    settle();
    assert_int_equal(answers(a), 2);
    assert_int_equal(last_status(a), 409);
    assert_int_equal(a->destroyed, 1);
    assert_int_equal(state_of(a2), SESSION_PARKED);
    assert_int_equal(answers(a2), 0);
}

/* The wait times out (the reaper's registry tick) between the park and the
 * owner's re-check: answered once, empty, and A waits for its next request. */
static void tick_past_wait_timeout(void)
{
    reg_tick(srv.reg, clock_now_ms() + srv.cfg.wait_timeout_ms + 1);
    assert_non_null(srv.wq_head); /* A, claimed for a worker */
}

static void test_wait_timeout_during_park(void **state)
{
    (void)state;
    ida = sign_in("a", &a);
    say_wait(a, ida);
    assert_int_equal(poll_once(), 1);
    handover_target = a->s;
    at_handover = tick_past_wait_timeout;
    assert_int_equal(run_queue(), 2); /* the /wait, then its timeout's answer */
    assert_null(at_handover);
    assert_int_equal(answers(a), 2);
    assert_int_equal(last_status(a), 200);
    assert_int_equal(state_of(a), SESSION_ARMED);
    assert_int_equal(parked(), 0);
}

/* A signs out (from another connection) between the park and the owner's
 * re-check: the wait is answered with A's own leave line on that thread and
 * closed; the graveyard keeps it until the re-check is done. */
static void a_signs_out(void)
{
    a2 = client();
    say(a2, "GET /sign_out?peer_id=%llu HTTP/1.1\r\nHost: x\r\n\r\n", (unsigned long long)ida);
    session_run_here(a2->s);
    assert_int_equal(last_status(a2), 200);
    assert_int_equal(a->destroyed, 1);
    server_free_graveyard(&srv);
    assert_ptr_equal(srv.grave, a->s); /* pinned: kept */
}

static void test_sign_out_during_park(void **state)
{
    (void)state;
    ida = sign_in("a", &a);
    say_wait(a, ida);
    assert_int_equal(poll_once(), 1);
    handover_target = a->s;
    at_handover = a_signs_out;
    assert_int_equal(run_queue(), 1);
    assert_null(at_handover);
    assert_int_equal(answers(a), 2);
    char leave[64];
    snprintf(leave, sizeof leave, "a,%llu,0", (unsigned long long)ida);
    assert_true(wrote(a, leave));
    poll_once();
    assert_null(srv.grave);
}

/* The reaper finds A's (old, idle) deadline passed while A is being served
 * its /wait: its claim loses but leaves a timeout bit. That bit is no
 * reason to take back the parked wait: it stays parked, is not closed, and
 * gets the next message. */
static void reaper_sweeps_late(void)
{
    sweep_sessions(&srv, clock_now_ms() + srv.cfg.idle_timeout_ms + 1);
}

static void reaper_on_other_thread(struct fake_conn *fc)
{
    (void)fc;
    on_other_thread(reaper_sweeps_late);
}

static void test_stale_reaper_claim_during_wait(void **state)
{
    (void)state;
    idb = sign_in("b", &b); /* first: A has no join to hear of */
    ida = sign_in("a", &a);
    say_wait(a, ida);
    assert_int_equal(poll_once(), 1);
    a->at_read = reaper_on_other_thread;
    run_queue(); /* A, then B (its deadline passed too, for the sweep) */
    assert_true(atomic_load(&a->s->wake_bits) & SESSION_WAKE_TIMEOUT);
    settle(); /* B's own stale claim: served, nothing to do */
    assert_int_equal(a->destroyed, 0);
    assert_int_equal(state_of(a), SESSION_PARKED);
    assert_int_equal(parked(), 1);
    assert_int_equal(answers(a), 1);
    b_sends();
    settle();
    assert_int_equal(answers(a), 2);
    assert_true(wrote(a, "hello"));
}

/* The poller has A's readiness (its /wait) in hand when the reaper, A's
 * old deadline passed, claims A first; a worker serves the /wait and parks
 * it. The poller's event, now stale, must not close the parked wait as a
 * hang-up: A stays parked and gets the next message. */
static void test_stale_event_during_park(void **state)
{
    (void)state;
    idb = sign_in("b", &b);
    ida = sign_in("a", &a);
    say_wait(a, ida);
    struct session *batch[MAX_CONNS];
    assert_int_equal(poll_collect(batch), 1); /* in the poller's hands */
    sweep_sessions(&srv, clock_now_ms() + srv.cfg.idle_timeout_ms + 1);
    run_queue(); /* A (and B, claimed too): the /wait parks */
    assert_int_equal(state_of(a), SESSION_PARKED);
    poll_dispatch(batch, 1);
    settle();
    assert_int_equal(a->destroyed, 0);
    assert_int_equal(state_of(a), SESSION_PARKED);
    assert_int_equal(answers(a), 1);
    b_sends();
    settle();
    assert_int_equal(answers(a), 2);
    assert_true(wrote(a, "hello"));
}

/* The poller holds A's hang-up in hand while A, signed out from another
 * connection, is answered and closed: the event must still point to a
 * session (the graveyard's, freed only after the poller's batch), and the
 * late claim must lose. */
static void test_event_in_hand_for_closed_session(void **state)
{
    (void)state;
    ida = sign_in("a", &a);
    say_wait(a, ida);
    settle();
    assert_int_equal(state_of(a), SESSION_PARKED);
    a->hup = true;
    struct session *batch[MAX_CONNS];
    assert_int_equal(poll_collect(batch), 1); /* A's hang-up, in hand */
    a2 = client();
    say(a2, "GET /sign_out?peer_id=%llu HTTP/1.1\r\nHost: x\r\n\r\n", (unsigned long long)ida);
    session_run_here(a2->s); /* wakes A (gone), which runs next and closes */
    assert_int_equal(a->destroyed, 1);
    assert_int_equal(answers(a), 2);
    assert_ptr_equal(srv.grave, a->s);
    poll_dispatch(batch, 1); /* the late claim loses; then the graveyard */
    assert_null(srv.grave);
    assert_null(srv.wq_head);
}

/* A's client hangs up between the owner's epoll_ctl for the parked wait
 * and the park: the poller's claim loses (A is RUNNING) and leaves its bit,
 * the re-check after the park takes A back, and A closes, unanswered, its
 * wait no longer in the registry. */
static void hangup_seen(void)
{
    a->hup = true;
    assert_int_equal(poll_once(), 1);
    assert_true(atomic_load(&a->s->wake_bits) & SESSION_WAKE_IO);
}

static void test_hangup_before_park(void **state)
{
    (void)state;
    ida = sign_in("a", &a);
    say_wait(a, ida);
    assert_int_equal(poll_once(), 1);
    ctl_target = a->s;
    at_ctl = hangup_seen;
    assert_int_equal(run_queue(), 1);
    assert_null(at_ctl);
    assert_int_equal(a->destroyed, 1);
    assert_int_equal(answers(a), 1);
    assert_int_equal(parked(), 0);
}

/* Readiness comes between the owner's epoll_ctl and its publication (ARMED):
 * the poller's claim loses and the one-shot event is spent, so the owner's
 * re-check must take the session back and serve the request. */
static void more_arrives(void)
{
    say_message(a, ida, idb, "second");
    assert_int_equal(poll_once(), 1);
}

static void test_ready_before_publication(void **state)
{
    (void)state;
    idb = sign_in("b", &b); /* first: A has no join to hear of */
    ida = sign_in("a", &a);
    say_message(a, ida, idb, "first");
    assert_int_equal(poll_once(), 1);
    ctl_target = a->s;
    at_ctl = more_arrives;
    assert_int_equal(run_queue(), 1);
    assert_null(at_ctl);
    assert_int_equal(answers(a), 3); /* sign-in, first, second: nothing lost */
    assert_int_equal(queued_msgs(), 2);
    assert_int_equal(state_of(a), SESSION_ARMED);
    assert_true(entries[0].enabled); /* armed again for the next one */
}

/* The stop: A's wait claimed for a message and queued (not yet run), B
 * parked, C idle, D half-way through its request. Every wait is answered
 * once (A its message, B the shutdown notice), everything closes once. */
static void test_stop_with_parked(void **state)
{
    (void)state;
    struct fake_conn *c, *d;
    uint64_t idc = sign_in("c", &c);
    idb = sign_in("b", &b);
    ida = sign_in("a", &a);
    say_wait(b, idb);
    settle();
    assert_int_equal(answers(b), 2); /* A's join, at once */
    say_wait(a, ida);
    say_wait(b, idb);
    settle();
    assert_int_equal(parked(), 2);
    d = client();
    say(d, "GET /sign_in?d HTTP/1.1\r\n");
    session_run_here(d->s);
    assert_int_equal(state_of(d), SESSION_ARMED);
    /* C's message to A, run by a worker (not run_here): A queued. */
    say_message(c, idc, ida, "hello");
    assert_int_equal(poll_once(), 1);
    struct session *cs = dequeue();
    assert_ptr_equal(cs, c->s);
    session_run(cs);
    assert_ptr_equal(srv.wq_head, a->s);
    stop();
    assert_int_equal(answers(a), 2);
    assert_true(wrote(a, "hello"));
    assert_int_equal(answers(b), 3);
    assert_int_equal(last_status(b), 200);
    assert_true(wrote(b, "Connection: close"));
    assert_int_equal(answers(c), 2);
    assert_int_equal(answers(d), 0);
    for (int i = 0; i < nconns; i++)
        assert_int_equal(conns[i].destroyed, 1);
    assert_int_equal(queued_msgs(), 0);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_message_during_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_and_close_during_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_then_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_during_wake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_displaced_wait_during_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_displaced_while_hanging_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_timeout_during_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_out_during_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_reaper_claim_during_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_event_during_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_before_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_in_hand_for_closed_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_before_publication, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_parked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
