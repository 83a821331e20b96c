/*
 * Integration at scale: 300 members, every join notification delivered
 * exactly once (N(N-1)/2 of them over keep-alive /wait loops), 300 parked
 * waits at once each receiving exactly its own message, the shutdown notice
 * on every parked wait at SIGTERM; the connection cap (--max-connections)
 * refusing with 503 while the server keeps serving, also against 15,000
 * connections opened at once (issue 6's fault matrix); parked /waits and
 * idle keep-alive connections holding no worker (--workers 1); and the main
 * listener on IPv6 loopback; a member that never waits while 30,000 others
 * sign in and out (the notification log stays bounded). One thread: poll()
 * (epoll for the 15,000) over all the connections.
 */
#include "harness.h"
#include "strlit.h"
#include "../../server/registry.h" /* REG_NOTE_LAG */

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define N_MEMBERS 300
/* Over TLS the same phases with fewer members: each member's TLS path is
 * the same at 100 as at 300, and 300 cost 300 handshakes and 45,000
 * notifications in TLS records (most of the suite's TLS time). */
#define N_MEMBERS_TLS 100
static size_t n_members = N_MEMBERS;
#define PHASE_TIMEOUT_MS 45000

static void send_wait(h_conn_t *c, uint64_t id)
{
    h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n", id);
}

/*
 * Poll the connections conns[i] for which want[i] > 0 until every one got
 * want[i] responses, calling on_resp(i, resp) for each (which owns resp and
 * may send the next request). Fails on timeout or EOF.
 */
typedef void (*on_resp_fn)(size_t i, h_resp_t *r);

#define MAX_CONNS 512
static struct pollfd pfd[MAX_CONNS];
static size_t idx[MAX_CONNS];

static void collect(h_conn_t **conns, size_t n, size_t *want, on_resp_fn on_resp)
{
    assert_true(n <= MAX_CONNS);
    uint64_t deadline = h_now_ms() + PHASE_TIMEOUT_MS;
    for (;;) {
        size_t np = 0, left = 0;
        for (size_t i = 0; i < n; i++) {
            if (!want[i])
                continue;
            left += want[i];
            pfd[np] = (struct pollfd){.fd = h_fd(conns[i]), .events = POLLIN};
            idx[np++] = i;
        }
        if (!left)
            break;
        uint64_t now = h_now_ms();
        if (now >= deadline)
            fail_msg("%zu responses still missing on %zu connections after %d ms", left, np,
                     PHASE_TIMEOUT_MS);
        int r = poll(pfd, (nfds_t)np, (int)(deadline - now));
        if (r <= 0)
            continue;
        for (size_t k = 0; k < np; k++) {
            if (!pfd[k].revents)
                continue;
            size_t i = idx[k];
            if (h_pump(conns[i]) == 0 && h_pending(conns[i]) == 0)
                fail_msg("connection %zu closed with %zu responses missing", i, want[i]);
            h_resp_t *resp;
            while (want[i] && (resp = h_take(conns[i])) != NULL) {
                want[i]--;
                on_resp(i, resp);
            }
        }
    }
}

/* Assert that none of the connections receives anything within ms. */
static void all_silent(h_conn_t **conns, size_t n, int ms)
{
    assert_true(n <= MAX_CONNS);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(h_pending(conns[i]), 0);
        pfd[i] = (struct pollfd){.fd = h_fd(conns[i]), .events = POLLIN};
    }
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    for (;;) {
        /* At least one look, even for ms == 0 (what already arrived). */
        uint64_t now = h_now_ms();
        int r = poll(pfd, (nfds_t)n, now >= deadline ? 0 : (int)(deadline - now));
        if (r == 0)
            break;
        for (size_t i = 0; r > 0 && i < n; i++) {
            if (pfd[i].revents) {
                /* TLS: session tickets after the handshake are not data. */
                if (h_tls_mode() && h_pump(conns[i]) < 0 && h_pending(conns[i]) == 0)
                    continue;
                fprintf(stderr, "connection %zu received something or closed:\n", i);
                h_pump(conns[i]);
                h_expect_silence(conns[i], 0); /* fails, showing what came */
                fail_msg("connection %zu: poll reported an event", i);
            }
        }
    }
}

/* State of the 300-member test, for the collect() callbacks. */
static uint64_t ids[N_MEMBERS];
static h_conn_t *waits[N_MEMBERS];
static size_t joins_seen[N_MEMBERS];
static size_t joins_total;
static size_t messages_seen;

static void on_join(size_t i, h_resp_t *r)
{
    uint64_t who = 0;
    int conn = 0;
    if (r->status != 200 || h_hdr_num(r, "Pragma") != (long long)ids[i] ||
        !h_parse_entry(r->body, r->body_len, &who, &conn))
        fail_msg("member %" PRIu64 ": bad notification %d %s: %s", ids[i], r->status, r->reason,
                 r->body);
    /* In join order: the k-th notification is about member i+1+k. */
    size_t k = joins_seen[i]++;
    if (who != ids[i + 1 + k] || conn != 1)
        fail_msg("member %" PRIu64 ": notification %zu is \"%s\", expected id %" PRIu64,
                 ids[i], k, r->body, ids[i + 1 + k]);
    if (!h_hdr(r, "Connection") || strcmp(h_hdr(r, "Connection"), "keep-alive") != 0)
        fail_msg("member %" PRIu64 ": a keep-alive /wait answered without keep-alive", ids[i]);
    joins_total++;
    h_resp_free(r);
    if (joins_seen[i] < n_members - 1 - i)
        send_wait(waits[i], ids[i]);
}

static void on_message(size_t i, h_resp_t *r)
{
    char want[32];
    snprintf(want, sizeof want, "for %" PRIu64, ids[i]);
    if (r->status != 200 || h_hdr_num(r, "Pragma") != (long long)ids[0] ||
        strcmp(r->body, want) != 0)
        fail_msg("member %" PRIu64 ": expected \"%s\" from %" PRIu64 ", got %d %s Pragma %s: %s",
                 ids[i], want, ids[0], r->status, r->reason,
                 h_hdr(r, "Pragma") ? h_hdr(r, "Pragma") : "-", r->body);
    messages_seen++;
    h_resp_free(r);
}

static void test_300_members(void **state)
{
    (void)state;
    h_server_t srv;
    n_members = h_tls_mode() ? N_MEMBERS_TLS : N_MEMBERS;
    /* Not a timeout test: on a loaded box the phases may take a while, and
     * members idle between them must not be timed out meanwhile. */
    h_server_start(&srv, "--member-timeout", "300", "--wait-timeout", "300", "--idle-timeout",
                   "300", NULL);
    char name[32];
    for (size_t i = 0; i < n_members; i++) {
        snprintf(name, sizeof name, "member%03zu", i);
        ids[i] = h_sign_in(&srv, name);
        assert_int_equal(ids[i], i + 1);
    }

    /* Every member drains its joins with keep-alive /wait loops. */
    size_t want[N_MEMBERS];
    joins_total = 0;
    for (size_t i = 0; i < n_members; i++) {
        /* The last member has nothing to drain: its connection is opened
         * when it parks (a connection that sends nothing for the read
         * timeout is closed by the server). */
        waits[i] = i < n_members - 1 ? h_connect(&srv) : NULL;
        joins_seen[i] = 0;
        want[i] = n_members - 1 - i;
        if (want[i])
            send_wait(waits[i], ids[i]);
    }
    collect(waits, n_members, want, on_join);
    assert_int_equal(joins_total, n_members * (n_members - 1) / 2);

    /* All 300 park at once; nothing is pending for anyone. */
    waits[n_members - 1] = h_connect(&srv);
    for (size_t i = 0; i < n_members; i++)
        send_wait(waits[i], ids[i]);
    all_silent(waits, n_members, H_SILENCE_MS);

    /* Member 1 sends one message to each of the others. */
    h_conn_t *ctl = h_connect(&srv);
    for (size_t i = 1; i < n_members; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "for %" PRIu64, ids[i]);
        h_sendf(ctl,
                "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
                "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
                ids[0], ids[i], n, body);
        h_resp_t *r = h_read(ctl);
        H_ASSERT_STATUS(r, 200, "OK");
        h_resp_free(r);
    }
    messages_seen = 0;
    want[0] = 0;
    for (size_t i = 1; i < n_members; i++)
        want[i] = 1;
    collect(waits, n_members, want, on_message);
    assert_int_equal(messages_seen, n_members - 1);
    /* Exactly one each: everybody parks again and stays parked (member 1
     * never stopped waiting). */
    for (size_t i = 1; i < n_members; i++)
        send_wait(waits[i], ids[i]);
    /* All parked before SIGTERM (a second message for anyone would have
     * answered its new /wait at once instead). */
    h_wait_parked(&srv, n_members, PHASE_TIMEOUT_MS);
    all_silent(waits, n_members, 0);

    /* SIGTERM: every parked wait gets the notice with its own Pragma, the
     * server closes them and exits 0. Their bytes wait in our sockets. */
    assert_int_equal(h_server_stop(&srv), 0);
    for (size_t i = 0; i < n_members; i++) {
        h_resp_t *r = h_read(waits[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        H_ASSERT_PRAGMA(r, ids[i]);
        H_ASSERT_HDR(r, "Connection", "close");
        H_ASSERT_BODY(r, "Server shutting down");
        h_resp_free(r);
        h_expect_eof(waits[i], H_TIMEOUT_MS);
    }
    h_expect_eof(ctl, H_TIMEOUT_MS);
    h_pass();
}

/* --max-connections 50: connections 51..60 get 503 and are closed; the 50
 * accepted ones are fully served; once they are gone sign-in works again. */
static void test_connection_cap(void **state)
{
    (void)state;
    enum { CAP = 50, OPEN = 60 };
    h_server_t srv;
    /* The accepted connections stay silent for a while: not a read-timeout test. */
    h_server_start(&srv, "--max-connections", "50", "--read-timeout", "60", NULL);
    h_conn_t *c[OPEN];
    for (int i = 0; i < OPEN; i++)
        c[i] = h_connect(&srv);
    /* The refused ones hear why, then EOF. */
    for (int i = CAP; i < OPEN; i++) {
        h_resp_t *r = h_read(c[i]);
        H_ASSERT_STATUS(r, 503, "Service Unavailable");
        H_ASSERT_HDR(r, "Connection", "close");
        H_ASSERT_HDR(r, "Content-Type", "text/plain");
        assert_true(h_head_has(r, H_CORS_BLOCK));
        assert_true(r->body_len > 0);
        h_resp_free(r);
        h_expect_eof(c[i], H_TIMEOUT_MS);
    }
    /* The accepted ones got nothing yet and are served normally. */
    all_silent(c, CAP, H_SILENCE_MS);
    for (int i = 0; i < CAP; i++)
        h_sendf(c[i], "GET /sign_in?conn%02d HTTP/1.0\r\n\r\n", i);
    for (int i = 0; i < CAP; i++) {
        h_resp_t *r = h_read(c[i]);
        H_ASSERT_STATUS(r, 200, "Added");
        h_resp_free(r);
        h_expect_eof(c[i], H_TIMEOUT_MS);
    }
    for (int i = 0; i < OPEN; i++)
        h_close(c[i]);

    /* The server frees a slot right after it closes a connection; we saw the
     * EOF, so at most a moment passes before the count drops: retry the
     * sign-in while it answers 503 (each attempt a real round trip). */
    uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    int attempts = 0;
    for (;;) {
        h_conn_t *p = h_connect(&srv);
        h_send_str(p, "GET /sign_in?after HTTP/1.0\r\n\r\n");
        h_resp_t *r = h_read(p);
        h_close(p);
        attempts++;
        if (r->status == 200) {
            H_ASSERT_STATUS(r, 200, "Added");
            H_ASSERT_PRAGMA(r, CAP + 1);
            h_resp_free(r);
            break;
        }
        H_ASSERT_STATUS(r, 503, "Service Unavailable");
        h_resp_free(r);
        if (h_now_ms() >= deadline || attempts >= 1000)
            fail_msg("sign-in still refused with 503 after %d attempts", attempts);
    }
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* ---- alice and bob, for the tests below ------------------------------------ */

/*
 * Two members with a keep-alive /wait always parked and a keep-alive
 * connection each for their posts, all opened before a test's stress (new
 * connections may be refused meanwhile). Every message is checked on
 * arrival: from the other, in order, exactly once; anything else on a
 * /wait (a notification, an empty answer) fails the test.
 */
typedef struct duo {
    uint64_t id[2];
    h_conn_t *w[2];
    h_conn_t *ctl[2];
    unsigned sent[2]; /* by i to 1-i */
    unsigned got[2];  /* by i from 1-i */
} duo_t;

static const char *const duo_names[2] = {"alice", "bob"};

static void duo_park(duo_t *d, int i)
{
    send_wait(d->w[i], d->id[i]);
}

static void duo_body(int from, unsigned n, char *out, size_t cap)
{
    snprintf(out, cap, "message %u from %s", n, duo_names[from]);
}

static void duo_start(duo_t *d, const h_server_t *srv)
{
    memset(d, 0, sizeof *d);
    for (int i = 0; i < 2; i++)
        d->id[i] = h_sign_in(srv, duo_names[i]);
    h_drain_joins(srv, d->id, 2);
    for (int i = 0; i < 2; i++) {
        d->w[i] = h_connect(srv);
        duo_park(d, i);
        d->ctl[i] = h_connect(srv);
        h_send_str(d->ctl[i], "OPTIONS /warm-up HTTP/1.1\r\nHost: t\r\n\r\n");
        h_resp_t *r = h_read(d->ctl[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        h_resp_free(r);
    }
    h_wait_parked(srv, 2, H_TIMEOUT_MS);
}

/* Member i posts its next message to the other on its own connection. */
static void duo_post(duo_t *d, int i)
{
    char body[64];
    duo_body(i, d->sent[i], body, sizeof body);
    h_sendf(d->ctl[i],
            "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
            d->id[i], d->id[1 - i], strlen(body), body);
    h_resp_t *r = h_read(d->ctl[i]);
    if (r->status != 200 || r->body_len != 0)
        fail_msg("%s's message %u: %d %s %s", duo_names[i], d->sent[i], r->status, r->reason,
                 r->body);
    h_resp_free(r);
    d->sent[i]++;
}

/* Every message sent so far arrives, in order, and each /wait parks again. */
static void duo_collect(duo_t *d)
{
    for (int i = 0; i < 2; i++) {
        while (d->got[i] < d->sent[1 - i]) {
            char want[64];
            duo_body(1 - i, d->got[i], want, sizeof want);
            h_resp_t *r = h_read(d->w[i]);
            if (r->status != 200 || h_hdr_num(r, "Pragma") != (long long)d->id[1 - i] ||
                strcmp(r->body, want) != 0)
                fail_msg("%s expected \"%s\" (Pragma %" PRIu64 "), got %d %s, Pragma %s: \"%s\" "
                         "(lost, duplicated, reordered or foreign)",
                         duo_names[i], want, d->id[1 - i], r->status, r->reason,
                         h_hdr(r, "Pragma") ? h_hdr(r, "Pragma") : "-", r->body);
            h_resp_free(r);
            d->got[i]++;
            duo_park(d, i);
        }
    }
}

/* SIGTERM: exit 0, and both parked /waits get the shutdown notice. */
static void duo_stop(duo_t *d, h_server_t *srv)
{
    assert_int_equal(h_server_stop(srv), 0);
    for (int i = 0; i < 2; i++) {
        h_resp_t *r = h_read(d->w[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        H_ASSERT_PRAGMA(r, d->id[i]);
        H_ASSERT_BODY(r, "Server shutting down");
        h_resp_free(r);
    }
}

/* ---- 15,000 connections at once against the connection cap -------------------- */

#define FLOOD_N 15000
#define FLOOD_CAP 1000
#define FLOOD_HELD 4 /* the duo's connections, opened before the flood */
#define FLOOD_SOURCES 16 /* source addresses 127.0.0.2...: spread the ephemeral ports */
#define FLOOD_FD_MARGIN 256 /* our other descriptors: harness, duo, scrapes */
#define FLOOD_TIMEOUT_MS 40000

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { FL_CONNECTING, FL_SENT, FL_REFUSED, FL_SERVED };

typedef struct flood_conn {
    int fd;
    unsigned char state;
    bool eof;
    uint16_t len;
    char buf[1024];
} flood_conn_t;

static flood_conn_t flood[FLOOD_N];
static int flood_ep = -1;

static const char flood_req[] = "OPTIONS /flood HTTP/1.1\r\nHost: t\r\n\r\n";

/* Closes what a failed flood test left open. */
static int flood_teardown(void **state)
{
    for (size_t i = 0; i < FLOOD_N; i++) {
        if (flood[i].fd >= 0)
            close(flood[i].fd);
        flood[i].fd = -1;
    }
    if (flood_ep >= 0)
        close(flood_ep);
    flood_ep = -1;
    return h_teardown(state);
}

/* Raise our open-file limit to room for the flood: false when the hard limit
 * is too small (*have says what it is). */
static bool flood_rlimit(struct rlimit *old, rlim_t *have)
{
    rlim_t need = FLOOD_N + FLOOD_FD_MARGIN;
    if (getrlimit(RLIMIT_NOFILE, old) < 0)
        fail_msg("getrlimit: errno %d", errno);
    *have = old->rlim_max;
    if (old->rlim_max != RLIM_INFINITY && old->rlim_max < need)
        return false;
    struct rlimit raised = {.rlim_cur = old->rlim_max, .rlim_max = old->rlim_max};
    if (old->rlim_cur < need && setrlimit(RLIMIT_NOFILE, &raised) < 0)
        fail_msg("setrlimit to %llu: errno %d", (unsigned long long)raised.rlim_cur, errno);
    return true;
}

/* Start connection i: a non-blocking connect from 127.0.0.(2 + i % SOURCES). */
static void flood_open(size_t i, uint16_t port)
{
    flood_conn_t *fc = &flood[i];
    fc->state = FL_CONNECTING;
    fc->len = 0;
    fc->eof = false;
    fc->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fc->fd < 0)
        fail_msg("flood connection %zu: socket: errno %d", i, errno);
    int one = 1;
    /* The port is chosen at connect time, per source address. */
    (void)setsockopt(fc->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % FLOOD_SOURCES))};
    if (bind(fc->fd, (struct sockaddr *)&src, sizeof src) < 0)
        fail_msg("flood connection %zu: bind to 127.0.0.%zu: errno %d", i, 2 + i % FLOOD_SOURCES,
                 errno);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fc->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)
        fail_msg("flood connection %zu: connect: errno %d", i, errno);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u64 = i};
    if (epoll_ctl(flood_ep, EPOLL_CTL_ADD, fc->fd, &ev) < 0)
        fail_msg("flood connection %zu: epoll_ctl: errno %d", i, errno);
}

/* Connected: send the request. A refused connection may already be closed
 * by the server (EPIPE, ECONNRESET): its answer is in our socket anyway. */
static void flood_send(size_t i)
{
    flood_conn_t *fc = &flood[i];
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fc->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0)
        fail_msg("flood connection %zu did not connect: errno %d", i, err ? err : errno);
    ssize_t w = send(fc->fd, flood_req, sizeof flood_req - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w != (ssize_t)(sizeof flood_req - 1) && !(w < 0 && (errno == EPIPE || errno == ECONNRESET)))
        fail_msg("flood connection %zu: send returned %zd, errno %d", i, w, errno);
    fc->state = FL_SENT;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = i};
    if (epoll_ctl(flood_ep, EPOLL_CTL_MOD, fc->fd, &ev) < 0)
        fail_msg("flood connection %zu: epoll_ctl: errno %d", i, errno);
}

/* Read what connection i has (a reset counts as the end, like EOF). */
static void flood_read(size_t i)
{
    flood_conn_t *fc = &flood[i];
    while (!fc->eof) {
        if (fc->len == sizeof fc->buf)
            fail_msg("flood connection %zu: more than %zu bytes", i, sizeof fc->buf);
        ssize_t n = recv(fc->fd, fc->buf + fc->len, sizeof fc->buf - fc->len, MSG_DONTWAIT);
        if (n > 0) {
            fc->len = (uint16_t)(fc->len + n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        fc->eof = true;
    }
}

/*
 * Classify connection i by what it received: a complete 503 with a reason
 * followed by the close (refused), or a complete 200 to its OPTIONS on a
 * connection kept open (served). Anything else fails the test; incomplete
 * is "not yet". True when it is settled.
 */
static bool flood_settle(size_t i)
{
    flood_conn_t *fc = &flood[i];
    static http_response_t pr;
    http_error_t err = {0};
    const http_limits_t lim = {.max_head = sizeof fc->buf, .max_body = sizeof fc->buf};
    long head = fc->len ? http_parse_response(fc->buf, fc->len, &lim, &pr, &err) : 0;
    bool complete = head > 0 && pr.has_content_length &&
                    fc->len - (size_t)head >= pr.content_length;
    if (head < 0 || (complete && fc->len - (size_t)head != pr.content_length))
        fail_msg("flood connection %zu: malformed or extra bytes (%u bytes): %.*s", i,
                 (unsigned)fc->len, (int)fc->len, fc->buf);
    if (!complete) {
        if (fc->eof)
            fail_msg("flood connection %zu closed without a complete answer (%u bytes): %.*s", i,
                     (unsigned)fc->len, (int)fc->len, fc->buf);
        return false;
    }
    const char *body = fc->buf + head;
    size_t blen = (size_t)pr.content_length;
    if (pr.status == 503) {
        if (pr.reason.len != 19 || memcmp(pr.reason.ptr, STRLIT("Service Unavailable")) != 0 ||
            !pr.connection_close || blen < 2 || body[blen - 1] != '\n' ||
            memchr(body, '\n', blen - 1))
            fail_msg("flood connection %zu: a 503 without Connection: close or a one-line "
                     "reason: %.*s", i, (int)fc->len, fc->buf);
        if (!fc->eof)
            return false; /* the close follows */
        fc->state = FL_REFUSED;
        close(fc->fd); /* also unregisters it from epoll */
        fc->fd = -1;
        return true;
    }
    if (pr.status == 200 && !pr.connection_close && !fc->eof) {
        fc->state = FL_SERVED; /* keeps its slot: stays open, no longer watched */
        if (epoll_ctl(flood_ep, EPOLL_CTL_DEL, fc->fd, NULL) < 0)
            fail_msg("flood connection %zu: epoll_ctl: errno %d", i, errno);
        return true;
    }
    fail_msg("flood connection %zu: neither a refusal nor a kept-alive answer: %.*s", i,
             (int)fc->len, fc->buf);
    return false;
}

/* Handle the events that are there (wait up to ms): how many settled. */
static size_t flood_events(int ms)
{
    static struct epoll_event evs[1024];
    int n = epoll_wait(flood_ep, evs, 1024, ms);
    if (n < 0 && errno != EINTR)
        fail_msg("epoll_wait: errno %d", errno);
    size_t settled = 0;
    for (int k = 0; k < n; k++) {
        size_t i = (size_t)evs[k].data.u64;
        if (flood[i].state == FL_CONNECTING) {
            if (!(evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                continue;
            flood_send(i);
        }
        if (flood[i].state == FL_SENT) {
            flood_read(i);
            settled += flood_settle(i);
        }
    }
    return settled;
}

static bool flood_server_alive(const h_server_t *s)
{
    struct pollfd p = {.fd = s->pidfd, .events = POLLIN};
    return s->running && poll(&p, 1, 0) == 0;
}

/*
 * Issue 6's fault matrix: 15,000 connections opened at once against
 * --max-connections 1000. Each one sends a keep-alive request as soon as it
 * is connected; each must get either the 503 with its reason and the close,
 * or (within the cap, which the accepted ones keep occupied) a normal
 * answer. Exactly the room under the cap is served; the server stays up;
 * alice and bob, connected before, relay in order throughout (messages
 * posted mid-flood included); and once the flood is gone the open
 * connections are back to the baseline.
 */
static void test_fifteen_thousand_at_once(void **state)
{
    (void)state;
    if (h_tls_mode()) {
        /* Over TLS a refusal takes a handshake, and only a few at a time
         * get one (the rest are closed bare): not "a 503 for every one",
         * and 15,000 handshakes would be a benchmark, not a test. */
        skip();
    }
    for (size_t i = 0; i < FLOOD_N; i++)
        flood[i].fd = -1;
    struct rlimit old;
    rlim_t have;
    if (!flood_rlimit(&old, &have)) {
        fprintf(stderr, "note: skipped: the open-file hard limit %llu is below the %d this "
                "test needs (%d connections + %d)\n", (unsigned long long)have,
                FLOOD_N + FLOOD_FD_MARGIN, FLOOD_N, FLOOD_FD_MARGIN);
        skip();
    }
    h_server_t srv;
    char cap[16];
    snprintf(cap, sizeof cap, "%d", FLOOD_CAP);
    /* Not a timeout test: nothing may be timed out while the flood lasts. */
    h_server_start(&srv, "--max-connections", cap, "--read-timeout", "120", "--idle-timeout",
                   "300", "--wait-timeout", "300", "--member-timeout", "300", NULL);
    duo_t d;
    duo_start(&d, &srv);
    duo_post(&d, 0);
    duo_post(&d, 1);
    duo_collect(&d);
    /* The baseline: the duo's 4 connections plus the scrape's own. */
    h_await_metric(&srv, "pcsig_open_connections", FLOOD_HELD + 1, H_TIMEOUT_MS);

    flood_ep = epoll_create1(EPOLL_CLOEXEC);
    if (flood_ep < 0)
        fail_msg("epoll_create1: errno %d", errno);
    size_t settled = 0;
    uint64_t t0 = h_now_ms();
    for (size_t i = 0; i < FLOOD_N; i++) {
        flood_open(i, srv.port);
        if (i % 256 == 255)
            settled += flood_events(0); /* answer what is ready; never wait */
        if (i == FLOOD_N / 2) {
            /* Halfway: both members post (over connections held since before). */
            duo_post(&d, 0);
            duo_post(&d, 1);
        }
    }
    uint64_t t_opened = h_now_ms();
    uint64_t deadline = t_opened + FLOOD_TIMEOUT_MS;
    while (settled < FLOOD_N) {
        uint64_t now = h_now_ms();
        if (now >= deadline) {
            size_t by[4] = {0, 0, 0, 0};
            for (size_t i = 0; i < FLOOD_N; i++)
                by[flood[i].state]++;
            fail_msg("%zu of %d connections unsettled %d ms after the last connect (%zu "
                     "connecting, %zu awaiting an answer, %zu refused, %zu served)",
                     FLOOD_N - settled, FLOOD_N, FLOOD_TIMEOUT_MS, by[FL_CONNECTING],
                     by[FL_SENT], by[FL_REFUSED], by[FL_SERVED]);
        }
        settled += flood_events((int)(deadline - now));
    }
    uint64_t t_settled = h_now_ms();
    size_t refused = 0, served = 0;
    for (size_t i = 0; i < FLOOD_N; i++) {
        refused += flood[i].state == FL_REFUSED;
        served += flood[i].state == FL_SERVED;
    }
    fprintf(stderr, "note: %d connections: %zu refused with 503, %zu served; opened in %" PRIu64
            " ms, all settled %" PRIu64 " ms later\n", FLOOD_N, refused, served, t_opened - t0,
            t_settled - t_opened);
    if (!flood_server_alive(&srv))
        fail_msg("the server is gone after the flood");
    /* The cap held (no more than its room was served), and all of its room
     * was used (a connection the server had room for was not refused; a
     * sign-in or scrape connection closing just then may hold a slot). */
    if (served > FLOOD_CAP - FLOOD_HELD)
        fail_msg("%zu flood connections served: the cap of %d (%d held by alice and bob) was "
                 "not enforced", served, FLOOD_CAP, FLOOD_HELD);
    if (served + 2 < FLOOD_CAP - FLOOD_HELD)
        fail_msg("only %zu flood connections served with room for %d under the cap", served,
                 FLOOD_CAP - FLOOD_HELD);
    assert_int_equal(refused + served, FLOOD_N);
    /* Still at the cap while the served ones stay: a newcomer is refused too. */
    if (served == FLOOD_CAP - FLOOD_HELD && h_metric(&srv, "pcsig_open_connections") != -1)
        fail_msg("a new connection was served with %d connections open (cap %d)", FLOOD_CAP,
                 FLOOD_CAP);

    /* alice and bob: the mid-flood messages, then more, in order. */
    for (int k = 0; k < 10; k++) {
        duo_post(&d, 0);
        duo_post(&d, 1);
    }
    duo_collect(&d);

    /* Served ones are still served on their kept connection. */
    size_t again = 0;
    for (size_t i = 0; i < FLOOD_N && again < 10; i++) {
        if (flood[i].state != FL_SERVED)
            continue;
        flood[i].len = 0;
        flood[i].state = FL_SENT;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = i};
        if (epoll_ctl(flood_ep, EPOLL_CTL_ADD, flood[i].fd, &ev) < 0 ||
            send(flood[i].fd, flood_req, sizeof flood_req - 1, MSG_NOSIGNAL) !=
                (ssize_t)(sizeof flood_req - 1))
            fail_msg("served flood connection %zu: errno %d", i, errno);
        again++;
    }
    deadline = h_now_ms() + H_TIMEOUT_MS;
    for (size_t done = 0; done < again;) {
        uint64_t now = h_now_ms();
        if (now >= deadline)
            fail_msg("%zu of %zu served connections not answered again within %d ms",
                     again - done, again, H_TIMEOUT_MS);
        done += flood_events((int)(deadline - now));
    }

    /* The flood goes: the open connections return to the baseline. */
    for (size_t i = 0; i < FLOOD_N; i++) {
        if (flood[i].fd >= 0)
            close(flood[i].fd);
        flood[i].fd = -1;
    }
    close(flood_ep);
    flood_ep = -1;
    h_await_metric(&srv, "pcsig_open_connections", FLOOD_HELD + 1, H_TIMEOUT_MS);
    double counted = h_metric(&srv, "pcsig_connections_refused_total{reason=\"max_connections\"}");
    if (counted < (double)refused)
        fail_msg("pcsig_connections_refused_total{reason=\"max_connections\"} is %g, below the "
                 "%zu refusals seen", counted, refused);
    h_wait_parked(&srv, 2, H_TIMEOUT_MS);
    duo_post(&d, 0);
    duo_post(&d, 1);
    duo_collect(&d);
    duo_stop(&d, &srv);
    if (setrlimit(RLIMIT_NOFILE, &old) < 0)
        fail_msg("setrlimit back: errno %d", errno);
    h_pass();
}

/* ---- one worker ------------------------------------------------------------------ */

/*
 * --workers 1: three parked /waits and two idle keep-alive connections hold
 * no worker. With all of them open, a new connection's sign-in is answered,
 * every parked /wait hears the join, a message reaches its parked /wait, and
 * the idle connections are served again. Any of them holding the only
 * worker would leave the newcomer unanswered (the harness's read timeout
 * fails the test).
 */
static void test_one_worker_not_held(void **state)
{
    (void)state;
    enum { PARKED = 3, IDLE = 2 };
    h_server_t srv;
    h_server_start(&srv, "--workers", "1", NULL);
    uint64_t id[PARKED];
    char name[16];
    for (size_t i = 0; i < PARKED; i++) {
        snprintf(name, sizeof name, "member%zu", i);
        id[i] = h_sign_in(&srv, name);
    }
    h_drain_joins(&srv, id, PARKED);
    h_conn_t *w[PARKED];
    for (size_t i = 0; i < PARKED; i++) {
        w[i] = h_connect(&srv);
        send_wait(w[i], id[i]);
    }
    h_wait_parked(&srv, PARKED, H_TIMEOUT_MS);
    h_conn_t *idle[IDLE];
    for (size_t i = 0; i < IDLE; i++) {
        idle[i] = h_connect(&srv);
        h_send_str(idle[i], "OPTIONS /idle HTTP/1.1\r\nHost: t\r\n\r\n");
        h_resp_t *r = h_read(idle[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        H_ASSERT_HDR(r, "Connection", "keep-alive");
        h_resp_free(r);
    }

    uint64_t t0 = h_now_ms();
    uint64_t dave = h_sign_in(&srv, "dave");
    char join[64];
    snprintf(join, sizeof join, "dave,%" PRIu64 ",1\n", dave);
    for (size_t i = 0; i < PARKED; i++) {
        h_resp_t *r = h_read(w[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        H_ASSERT_PRAGMA(r, id[i]);
        H_ASSERT_BODY(r, join);
        h_resp_free(r);
        send_wait(w[i], id[i]);
    }
    h_send_ok(&srv, dave, id[0], "through one worker", 18, "text/plain");
    h_resp_t *r = h_read(w[0]);
    H_ASSERT_PRAGMA(r, dave);
    H_ASSERT_BODY(r, "through one worker");
    h_resp_free(r);
    send_wait(w[0], id[0]);
    for (size_t i = 0; i < IDLE; i++) {
        h_send_str(idle[i], "OPTIONS /idle HTTP/1.1\r\nHost: t\r\n\r\n");
        r = h_read(idle[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        h_resp_free(r);
    }
    fprintf(stderr, "note: one worker: sign-in, joins, message and idle answers in %" PRIu64
            " ms\n", h_now_ms() - t0);
    h_wait_parked(&srv, PARKED, H_TIMEOUT_MS);
    assert_int_equal(h_server_stop(&srv), 0);
    for (size_t i = 0; i < PARKED; i++) {
        r = h_read(w[i]);
        H_ASSERT_PRAGMA(r, id[i]);
        H_ASSERT_BODY(r, "Server shutting down");
        h_resp_free(r);
    }
    h_pass();
}

/* ---- IPv6 --------------------------------------------------------------------------- */

static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&lo6, sizeof lo6) == 0;
    close(fd);
    return ok;
}

/* --bind ::1 (the last --bind wins over the harness's 127.0.0.1; the
 * harness then connects there): the main listener serves the protocol over
 * IPv6 loopback, TLS in TLS mode. */
static void test_ipv6_loopback(void **state)
{
    (void)state;
    if (!have_ipv6_loopback()) {
        fprintf(stderr, "note: skipped: no IPv6 loopback (::1) on this host\n");
        skip();
    }
    h_server_t srv;
    h_server_start(&srv, "--bind", "::1", NULL);
    assert_string_equal(srv.host, "::1");
    uint64_t pair[2];
    pair[0] = h_sign_in(&srv, "alice");
    pair[1] = h_sign_in(&srv, "bob");
    h_drain_joins(&srv, pair, 2);
    /* A message to alice's parked keep-alive /wait, all over ::1. */
    h_conn_t *w = h_connect(&srv);
    struct sockaddr_in6 peer;
    socklen_t pl = sizeof peer;
    assert_int_equal(getpeername(h_fd(w), (struct sockaddr *)&peer, &pl), 0);
    assert_int_equal(peer.sin6_family, AF_INET6);
    assert_true(IN6_IS_ADDR_LOOPBACK(&peer.sin6_addr));
    send_wait(w, pair[0]);
    h_wait_parked(&srv, 1, H_TIMEOUT_MS);
    h_send_ok(&srv, pair[1], pair[0], "over IPv6!", 10, "text/plain");
    h_resp_t *r = h_read(w);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, pair[1]);
    H_ASSERT_BODY(r, "over IPv6!");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/*
 * A member that never waits, kept signed in by messages to itself, while
 * CHURN_CYCLES others sign in and out one after another (issue 12: 100,000
 * such cycles grew the server by 121 MiB, a notification log entry per
 * sign-in and per sign-out pinned by the member's cursor). The log stays
 * within twice REG_NOTE_LAG (pcsig_notifications_logged), the resident
 * memory stops growing once it is there, and when the member finally waits
 * it hears the leave of the member it knew, of the churn only whole
 * join-then-leave pairs (the last few), and the join of the member signed
 * in after it.
 */
#define CHURN_CYCLES 30000
#define CHURN_CYCLES_SANITIZED 12000 /* still 24,000 events: past the bound */
#define CHURN_BATCH 250

/* One batched /wait of member id on c: the records, in order, appended to
 * *out as "pragma body" lines (the bodies are entry lines with their '\n'). */
static size_t batch_wait(h_conn_t *c, uint64_t id, char **out, size_t *out_len)
{
    h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\nX-Pcsig-Batch: 1\r\n\r\n",
            id);
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    long long n = h_hdr_num(r, "X-Pcsig-Batch-Count");
    assert_true(n > 0);
    const char *p = r->body, *end = r->body + r->body_len;
    for (long long k = 0; k < n; k++) {
        unsigned long long pragma;
        size_t ctlen, blen;
        int used = 0;
        assert_true(sscanf(p, "%llu %zu %zu\n%n", &pragma, &ctlen, &blen, &used) == 3 && used > 0);
        p += used;
        assert_true((size_t)(end - p) >= ctlen + blen);
        p += ctlen;
        char *line = NULL;
        int len = asprintf(&line, "%llu %.*s", pragma, (int)blen, p);
        assert_true(len > 0);
        *out = realloc(*out, *out_len + (size_t)len + 1);
        assert_non_null(*out);
        memcpy(*out + *out_len, line, (size_t)len + 1);
        *out_len += (size_t)len;
        free(line);
        p += blen;
    }
    assert_true(p == end);
    h_resp_free(r);
    return (size_t)n;
}

static void test_stalled_member_churn(void **state)
{
    (void)state;
    /* Under a sanitizer the run is slower and freed memory is held back
     * (ASan's quarantine): fewer cycles, and the resident size says nothing. */
    const char *san = getenv("PCSIG_SANITIZE");
    bool sanitized = san && *san;
    /* Not over TLS (make test's TLS re-run of this file): the log's bound
     * is no TLS matter, and the pipelined requests through TLS records are
     * test_keepalive's. */
    if (h_tls_mode())
        skip();
    int cycles = sanitized ? CHURN_CYCLES_SANITIZED : CHURN_CYCLES;
    h_server_t srv;
    /* "stalled" never waits: only its own messages keep it a member, and a
     * slow (sanitized, loaded) run must not time it out between them. */
    h_server_start(&srv, "--member-timeout", "600", NULL);
    uint64_t known = h_sign_in(&srv, "known");
    uint64_t stalled = h_sign_in(&srv, "stalled");
    h_resp_free(h_sign_out(&srv, known)); /* stalled was told of it: hears its leave */
    h_conn_t *c = h_connect(&srv);
    uint64_t next = stalled + 1; /* ids are handed out in order, never reused */
    double rss_mid = 0;
    char *req = NULL;
    for (int done = 0; done < cycles; done += CHURN_BATCH) {
        /* Pipelined: the ids are known in advance. */
        size_t len = 0;
        for (int k = 0; k < CHURN_BATCH; k++) {
            char *one = NULL;
            int n = asprintf(&one, "GET /sign_in?churn HTTP/1.1\r\nHost: t\r\n\r\n"
                                   "GET /sign_out?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n",
                             next + (uint64_t)k);
            assert_true(n > 0);
            req = realloc(req, len + (size_t)n);
            assert_non_null(req);
            memcpy(req + len, one, (size_t)n);
            len += (size_t)n;
            free(one);
        }
        h_send(c, req, len);
        for (int k = 0; k < CHURN_BATCH; k++, next++) {
            h_resp_t *r = h_read(c);
            H_ASSERT_STATUS(r, 200, "Added");
            H_ASSERT_PRAGMA(r, next);
            h_resp_free(r);
            r = h_read(c);
            H_ASSERT_STATUS(r, 200, "OK");
            h_resp_free(r);
        }
        if (done % 10000 == 0) { /* still here: a message to itself (echoed) */
            h_resp_t *r = h_post_message(&srv, stalled, stalled, "alive", 5, "text/plain");
            H_ASSERT_STATUS(r, 200, "OK");
            H_ASSERT_BODY(r, "alive");
            h_resp_free(r);
        }
        if (done + CHURN_BATCH == cycles / 3 / CHURN_BATCH * CHURN_BATCH)
            rss_mid = h_metric(&srv, "process_resident_memory_bytes");
    }
    free(req);
    double logged = h_metric(&srv, "pcsig_notifications_logged");
    double rss_end = h_metric(&srv, "process_resident_memory_bytes");
    fprintf(stderr, "churn: %d cycles, %.0f notifications logged, resident %.1f MiB -> %.1f MiB\n",
            cycles, logged, rss_mid / 1048576, rss_end / 1048576);
    assert_true(logged <= 2 * REG_NOTE_LAG + 2);
    /* Unbounded, the last two thirds added 40,000 entries: 4 MiB (short
     * names); bounded, the log is at its size by the first third. */
    if (cycles == CHURN_CYCLES)
        assert_true(rss_end - rss_mid < 2.0 * 1048576);

    uint64_t last = h_sign_in(&srv, "last");
    char *got = NULL;
    size_t got_len = 0;
    char want_end[64];
    snprintf(want_end, sizeof want_end, "%" PRIu64 " last,%" PRIu64 ",1\n", stalled, last);
    size_t items = 0;
    while (got_len < strlen(want_end) || strcmp(got + got_len - strlen(want_end), want_end) != 0)
        items += batch_wait(c, stalled, &got, &got_len);
    /* known's leave first; then whole pairs of the churn, in order; then last. */
    char *line = got, *nl;
    char want[64];
    snprintf(want, sizeof want, "%" PRIu64 " known,%" PRIu64 ",0", stalled, known);
    nl = strchr(line, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_string_equal(line, want);
    uint64_t open = 0, prev = 0;
    size_t pairs = 0;
    for (line = nl + 1; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        unsigned long long pragma, id;
        int conn;
        if (strncmp(line + snprintf(want, sizeof want, "%" PRIu64 " ", stalled), STRLIT("last,")) == 0)
            break;
        if (sscanf(line, "%llu churn,%llu,%d", &pragma, &id, &conn) != 3 || pragma != stalled)
            fail_msg("unexpected item \"%s\"", line);
        if (conn) {
            assert_true(open == 0 && id > prev);
            open = prev = id;
        } else {
            assert_true(id == open);
            open = 0;
            pairs++;
        }
    }
    assert_true(open == 0);
    assert_true(pairs <= REG_NOTE_LAG);
    fprintf(stderr, "churn: the stalled member heard %zu items, %zu whole pairs of the churn\n",
            items, pairs);
    free(got);
    h_close(c);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_300_members),
        H_TEST(test_connection_cap),
        cmocka_unit_test_setup_teardown(test_fifteen_thousand_at_once, h_setup, flood_teardown),
        H_TEST(test_one_worker_not_held),
        H_TEST(test_ipv6_loopback),
        H_TEST(test_stalled_member_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
