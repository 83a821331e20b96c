/*
 * Integration: the inline serving path (branch perf). A plain connection's
 * first request is read, parsed, routed and answered by the thread that
 * accepted it, or by the poller when its bytes come after the connect; only
 * what must wait enters epoll (a parked /wait, a partial request, a
 * keep-alive connection); a relayed message wakes the receiver's parked
 * /wait and the relaying thread answers up to a few of them itself, the
 * rest through the work queue; a parked /wait holds no big buffer.
 *
 * Each case checks what the client sees (every request answered once, in
 * order) and, where it matters, the server's own gauges: no sleeps, every
 * wait is on a condition with a timeout.
 */
#include "harness.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* ---- a parked /wait releases its big buffers (commit 9a889c2) ---------- */

#define BIG_PEERS 40
#define BIG_BODY (512 * 1024)
/* Per parked peer, RSS may grow by at most this: the session and its
 * small buffers, far below the BIG_BODY answer that went out of it (the
 * code before 9a889c2 kept that answer's buffer: +530 KiB each). Measured
 * on main: under 4 KiB; under ASan about 20-55 KiB, under TSan 60-85 KiB
 * (their allocators and shadow memory), whatever the body size. */
#define BIG_BOUND_PER_PEER (64 * 1024)
#define BIG_BOUND_PER_PEER_SANITIZED (192 * 1024)

/*
 * Every member gets one BIG_BODY message queued; then each, on its own
 * keep-alive connection, sends two /waits in one segment: the first is
 * answered at once with the message (the connection's output buffer grows
 * to hold it), the second parks straight after, without a trip through
 * epoll in between (which released big buffers already before 9a889c2).
 * With all of them parked, the server's RSS must not have grown by the
 * answers it sent.
 */
static void test_parked_wait_releases_big_buffers(void **state)
{
    (void)state;
    /* Big blocks are mmapped and given back on free, so that RSS measures
     * what is held (glibc raises its mmap threshold on its own otherwise,
     * and freed heap memory stays resident); ASan's quarantine would keep
     * freed blocks likewise. */
    setenv("MALLOC_MMAP_THRESHOLD_", "65536", 1);
    const char *asan = getenv("ASAN_OPTIONS");
    char asan_opts[512];
    snprintf(asan_opts, sizeof asan_opts, "%s%squarantine_size_mb=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", asan_opts, 1);
    h_server_t s;
    h_server_start(&s, NULL);
    unsetenv("MALLOC_MMAP_THRESHOLD_");
    if (asan)
        setenv("ASAN_OPTIONS", asan, 1);
    else
        unsetenv("ASAN_OPTIONS");

    uint64_t ids[BIG_PEERS + 1];
    char name[32];
    for (size_t i = 0; i <= BIG_PEERS; i++) {
        snprintf(name, sizeof name, "big%zu", i);
        ids[i] = h_sign_in(&s, name);
    }
    h_drain_joins(&s, ids, BIG_PEERS + 1);
    double rss0 = h_metric(&s, "process_resident_memory_bytes");

    char *body = malloc(BIG_BODY);
    assert_non_null(body);
    for (size_t i = 1; i <= BIG_PEERS; i++) {
        memset(body, (int)('a' + i % 26), BIG_BODY);
        h_send_ok(&s, ids[0], ids[i], body, BIG_BODY, "text/plain");
    }

    h_conn_t *c[BIG_PEERS + 1] = {0};
    for (size_t i = 1; i <= BIG_PEERS; i++) {
        c[i] = h_connect(&s);
        h_sendf(c[i],
                "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n",
                ids[i], ids[i]);
        h_resp_t *r = h_read(c[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        H_ASSERT_PRAGMA(r, ids[0]);
        assert_int_equal(r->body_len, BIG_BODY);
        assert_true(r->body[0] == (char)('a' + i % 26) &&
                    r->body[BIG_BODY - 1] == (char)('a' + i % 26));
        h_resp_free(r);
    }
    h_wait_parked(&s, BIG_PEERS, H_TIMEOUT_MS);
    assert_int_equal(h_metric(&s, "pcsig_queued_messages"), 0);
    double rss1 = h_metric(&s, "process_resident_memory_bytes");
    double per_peer = (rss1 - rss0) / BIG_PEERS;
    print_message("RSS %.1f MiB -> %.1f MiB with %d parked waits: %+.1f KiB per parked peer\n",
                  rss0 / 1048576.0, rss1 / 1048576.0, BIG_PEERS, per_peer / 1024.0);
    const char *san = getenv("PCSIG_SANITIZE"); /* set by make test */
    int bound = san && *san ? BIG_BOUND_PER_PEER_SANITIZED : BIG_BOUND_PER_PEER;
    if (per_peer > bound)
        fail_msg("RSS grew by %.1f KiB per parked /wait (bound %d KiB): parked waits keep "
                 "the %d KiB answers that went out before them",
                 per_peer / 1024.0, bound / 1024, BIG_BODY / 1024);

    /* Still served: each parked wait gets its next message. */
    for (size_t i = 1; i <= BIG_PEERS; i++) {
        h_send_ok(&s, ids[0], ids[i], "next", 4, "text/plain");
        h_resp_t *r = h_read(c[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        H_ASSERT_BODY(r, "next");
        h_resp_free(r);
        h_close(c[i]);
    }
    free(body);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* ---- the first request, however its bytes arrive -------------------------- */

/* The sign-in answer of a fresh server's first member named name. */
static void check_added(h_resp_t *r, const char *name, uint64_t *id)
{
    H_ASSERT_STATUS(r, 200, "Added");
    char want[128];
    long long pragma = h_hdr_num(r, "Pragma");
    assert_true(pragma > 0);
    snprintf(want, sizeof want, "%s,%lld,1\n", name, pragma);
    if (!strstr(r->body, want))
        fail_msg("sign-in list lacks \"%s\": %s", want, r->body);
    if (id)
        *id = (uint64_t)pragma;
}

/* The bytes come after the accept: the acceptor found nothing to read and
 * handed the connection on; the poller serves it when they come. */
static void test_request_after_accept(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    for (int i = 0; i < 5; i++) {
        h_conn_t *late = h_connect(&s);
        /* A round trip on a connection made after it: the acceptor took
         * both from the backlog, in order, before answering this one. */
        h_resp_t *hr = h_request_str(&s, "GET /health HTTP/1.0\r\n\r\n");
        H_ASSERT_STATUS(hr, 200, "OK");
        h_resp_free(hr);
        char name[16];
        snprintf(name, sizeof name, "late%d", i);
        h_sendf(late, "GET /sign_in?%s HTTP/1.0\r\n\r\n", name);
        h_resp_t *r = h_read(late);
        check_added(r, name, NULL);
        h_resp_free(r);
        h_expect_eof(late, H_TIMEOUT_MS);
        h_close(late);
    }
    assert_int_equal(h_metric(&s, "pcsig_members"), 5);

    /* A /wait that comes late parks (from the poller's thread), and a
     * message that comes late on another connection wakes it. */
    uint64_t a = h_sign_in(&s, "lwa"), b = h_sign_in(&s, "lwb");
    h_resp_t *j = h_wait_once(&s, a); /* lwb joined */
    h_resp_free(j);
    h_conn_t *wc = h_connect(&s);
    h_conn_t *mc = h_connect(&s);
    h_resp_t *hr = h_request_str(&s, "GET /health HTTP/1.0\r\n\r\n");
    h_resp_free(hr);
    h_sendf(wc, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", a);
    h_wait_parked(&s, 1, H_TIMEOUT_MS);
    h_sendf(mc, "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.0\r\n"
                "Content-Length: 4\r\n\r\nlate", b, a);
    h_resp_t *ack = h_read(mc);
    H_ASSERT_STATUS(ack, 200, "OK");
    h_resp_free(ack);
    h_resp_t *got = h_read(wc);
    H_ASSERT_STATUS(got, 200, "OK");
    H_ASSERT_PRAGMA(got, b);
    H_ASSERT_BODY(got, "late");
    h_resp_free(got);
    h_expect_eof(wc, H_TIMEOUT_MS);
    h_close(wc);
    h_close(mc);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* A head in two writes, the server holding the first part before the
 * second is sent; and a POST whose body comes after its head. */
static void test_split_request(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    h_conn_t *c = h_connect(&s);
    h_send_str(c, "GET /sign_in?spl");
    if (!h_tls_mode())
        h_await_read_by_server(c, H_TIMEOUT_MS);
    h_expect_silence(c, 50);
    h_send_str(c, "it HTTP/1.0\r\n\r\n");
    h_resp_t *r = h_read(c);
    uint64_t a;
    check_added(r, "split", &a);
    h_resp_free(r);
    h_close(c);

    uint64_t b = h_sign_in(&s, "other");
    h_resp_t *j = h_wait_once(&s, a); /* "other" joined */
    H_ASSERT_STATUS(j, 200, "OK");
    h_resp_free(j);

    c = h_connect(&s);
    h_sendf(c, "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.0\r\n"
               "Content-Type: text/plain\r\nContent-Length: 11\r\n\r\n", a, b);
    if (!h_tls_mode())
        h_await_read_by_server(c, H_TIMEOUT_MS);
    h_send_str(c, "hello");
    if (!h_tls_mode())
        h_await_read_by_server(c, H_TIMEOUT_MS);
    h_expect_silence(c, 50);
    h_send_str(c, " world");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    h_close(c);
    r = h_wait_once(&s, b);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, a);
    H_ASSERT_BODY(r, "hello world");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* Keep-alive: the second and third requests on one connection (after the
 * first went out inline), and a /wait parked on it that another member's
 * sign-in wakes. */
static void test_keepalive_after_inline(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    h_conn_t *c = h_connect(&s);
    h_send_str(c, "GET /sign_in?ka HTTP/1.1\r\nHost: x\r\n\r\n");
    h_resp_t *r = h_read(c);
    uint64_t id;
    check_added(r, "ka", &id);
    h_resp_free(r);
    h_send_str(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n", id);
    h_wait_parked(&s, 1, H_TIMEOUT_MS);
    uint64_t other = h_sign_in(&s, "joiner");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, id);
    char want[64];
    snprintf(want, sizeof want, "joiner,%" PRIu64 ",1\n", other);
    H_ASSERT_BODY(r, want);
    h_resp_free(r);
    h_sendf(c, "GET /sign_out?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n", id);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    h_close(c);
    assert_int_equal(h_metric(&s, "pcsig_members"), 1);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* Several requests in one segment, the first sent with the connect: each
 * answered once, in order, the last one's "close" honoured. */
static void test_pipelined_first_segment(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    h_conn_t *c = h_connect(&s);
    h_send_str(c, "GET /sign_in?p1 HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /sign_in?p2 HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /sign_in?p3 HTTP/1.0\r\n\r\n");
    uint64_t id1, id2, id3;
    h_resp_t *r = h_read(c);
    check_added(r, "p1", &id1);
    h_resp_free(r);
    r = h_read(c);
    check_added(r, "p2", &id2);
    h_resp_free(r);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = h_read(c);
    check_added(r, "p3", &id3);
    H_ASSERT_HDR(r, "Connection", "close");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);
    assert_true(id1 < id2 && id2 < id3);
    assert_int_equal(h_metric(&s, "pcsig_members"), 3);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* ---- relayed messages waking parked waits -------------------------------- */

#define BURST_RECEIVERS 8
#define BURST_MSGS 20

/*
 * BURST_RECEIVERS members park a keep-alive /wait each; one sender pipelines
 * BURST_MSGS messages to each (round-robin) in one segment, so that one
 * thread wakes all of them in a row (a few answered inline, the rest through
 * the work queue). Each receiver re-waits after each message and must get
 * all of its messages exactly once, in order, and nothing more.
 */
static void burst(bool keep_alive)
{
    h_server_t s;
    h_server_start(&s, NULL);
    uint64_t ids[BURST_RECEIVERS + 1];
    char name[32];
    for (size_t i = 0; i <= BURST_RECEIVERS; i++) {
        snprintf(name, sizeof name, "b%zu", i);
        ids[i] = h_sign_in(&s, name);
    }
    h_drain_joins(&s, ids, BURST_RECEIVERS + 1);

    const char *proto = keep_alive ? "1.1" : "1.0";
    h_conn_t *rc[BURST_RECEIVERS + 1] = {0};
    for (size_t i = 1; i <= BURST_RECEIVERS; i++) {
        rc[i] = h_connect(&s);
        h_sendf(rc[i], "GET /wait?peer_id=%" PRIu64 " HTTP/%s\r\nHost: x\r\n\r\n", ids[i],
                proto);
    }
    h_wait_parked(&s, BURST_RECEIVERS, H_TIMEOUT_MS);

    /* The whole burst in one buffer, sent with one write. */
    size_t cap = (size_t)BURST_RECEIVERS * BURST_MSGS * 256, len = 0;
    char *burst = malloc(cap);
    assert_non_null(burst);
    for (int k = 0; k < BURST_MSGS; k++)
        for (size_t i = 1; i <= BURST_RECEIVERS; i++) {
            char msg[32];
            int ml = snprintf(msg, sizeof msg, "m%zu-%02d", i, k);
            len += (size_t)snprintf(burst + len, cap - len,
                                    "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64
                                    " HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                                    "Content-Length: %d\r\n\r\n%s",
                                    ids[0], ids[i], ml, msg);
            assert_true(len < cap);
        }
    double relayed0 = h_metric(&s, "pcsig_messages_relayed_total");
    h_conn_t *sc = h_connect(&s);
    h_send(sc, burst, len);
    free(burst);

    int got[BURST_RECEIVERS + 1] = {0};
    int acks = 0, done = 0;
    uint64_t deadline = h_now_ms() + 4 * H_TIMEOUT_MS;
    while (done < BURST_RECEIVERS || acks < BURST_RECEIVERS * BURST_MSGS) {
        struct pollfd p[BURST_RECEIVERS + 2];
        for (size_t i = 1; i <= BURST_RECEIVERS; i++)
            p[i] = (struct pollfd){.fd = h_fd(rc[i]), .events = POLLIN};
        p[0] = (struct pollfd){.fd = h_fd(sc), .events = POLLIN};
        int left = h_ms_left(deadline);
        if (left == 0)
            fail_msg("burst not delivered in time: %d acks, %d receivers done", acks, done);
        /* TLS may hold decrypted bytes already: pump everyone each round. */
        if (!h_tls_mode())
            assert_true(poll(p, BURST_RECEIVERS + 1, left) >= 0);
        else
            (void)poll(p, BURST_RECEIVERS + 1, 10);
        if (h_pump(sc) == 0)
            fail_msg("the sender's connection closed after %d acks", acks);
        h_resp_t *r;
        while ((r = h_take(sc))) {
            H_ASSERT_STATUS(r, 200, "OK");
            h_resp_free(r);
            acks++;
        }
        for (size_t i = 1; i <= BURST_RECEIVERS; i++) {
            if (h_pump(rc[i]) == 0)
                fail_msg("receiver %zu's connection closed after %d messages", i, got[i]);
            while ((r = h_take(rc[i]))) {
                H_ASSERT_STATUS(r, 200, "OK");
                H_ASSERT_PRAGMA(r, ids[0]);
                char want[32];
                snprintf(want, sizeof want, "m%zu-%02d", i, got[i]);
                if (got[i] >= BURST_MSGS || strcmp(r->body, want) != 0)
                    fail_msg("receiver %zu: got \"%s\" as message %d, expected \"%s\"", i,
                             r->body, got[i], got[i] < BURST_MSGS ? want : "nothing");
                h_resp_free(r);
                got[i]++;
                if (got[i] == BURST_MSGS)
                    done++;
                if (!keep_alive) {
                    /* HTTP/1.0: the server closes; the next wait comes on
                     * a new connection (served on accept or parked). */
                    h_expect_eof(rc[i], H_TIMEOUT_MS);
                    h_close(rc[i]);
                    rc[i] = h_connect(&s);
                }
                h_sendf(rc[i], "GET /wait?peer_id=%" PRIu64 " HTTP/%s\r\nHost: x\r\n\r\n",
                        ids[i], proto);
                if (!keep_alive)
                    break;
            }
        }
    }
    /* Every receiver parked again, with nothing left queued: nothing was
     * delivered twice or left behind. */
    h_wait_parked(&s, BURST_RECEIVERS, H_TIMEOUT_MS);
    assert_int_equal(h_metric(&s, "pcsig_queued_messages"), 0);
    /* Counted once written, which may be just after the receiver read it. */
    h_await_metric(&s, "pcsig_messages_relayed_total",
                   relayed0 + BURST_RECEIVERS * BURST_MSGS, H_TIMEOUT_MS);
    for (size_t i = 1; i <= BURST_RECEIVERS; i++) {
        h_expect_silence(rc[i], 20);
        h_close(rc[i]);
    }
    h_close(sc);
    assert_int_equal(h_server_stop(&s), 0);
}

static void test_burst_wakes_parked_waits(void **state)
{
    (void)state;
    burst(true);
    h_pass();
}

/* The same with HTTP/1.0 waits: each woken wait's session closes after its
 * answer, and each next wait is a new connection. */
static void test_burst_wakes_closing_waits(void **state)
{
    (void)state;
    burst(false);
    h_pass();
}

/*
 * A /wait pipelined with requests behind it in one segment: the wait parks
 * with those bytes held, and they are answered after the wait's answer, in
 * order, once a message wakes it.
 */
static void test_requests_behind_parked_wait(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    uint64_t ids[2] = {h_sign_in(&s, "front"), h_sign_in(&s, "back")};
    h_drain_joins(&s, ids, 2);
    h_conn_t *c = h_connect(&s);
    h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
               "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n"
               "Content-Length: 4\r\n\r\nback"
               "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n",
            ids[0], ids[0], ids[1], ids[0]);
    h_wait_parked(&s, 1, H_TIMEOUT_MS);
    h_expect_silence(c, 50);
    h_send_ok(&s, ids[1], ids[0], "first", 5, "text/plain");
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, ids[1]);
    H_ASSERT_BODY(r, "first");
    h_resp_free(r);
    r = h_read(c); /* /health */
    H_ASSERT_STATUS(r, 200, "OK");
    assert_non_null(strstr(r->body, "ok"));
    h_resp_free(r);
    r = h_read(c); /* the ack of the message to back */
    H_ASSERT_STATUS(r, 200, "OK");
    assert_int_equal(r->body_len, 0);
    h_resp_free(r);
    h_wait_parked(&s, 1, H_TIMEOUT_MS); /* the second wait */
    h_send_ok(&s, ids[1], ids[0], "second", 6, "text/plain");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_BODY(r, "second");
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);
    r = h_wait_once(&s, ids[1]);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, ids[0]);
    H_ASSERT_BODY(r, "back");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* ---- clients that leave at once ------------------------------------------ */

#define HASTY 60

/*
 * Clients that close (or reset) right after sending their request, with
 * the request complete, partial, or as a parked /wait: the server stays up,
 * and every such connection is closed and counted off (open connections
 * back to just the scrape's own).
 */
static void test_client_closes_after_sending(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    uint64_t w = h_sign_in(&s, "waiter");
    for (int i = 0; i < HASTY; i++) {
        h_conn_t *c = h_connect(&s);
        switch (i % 4) {
        case 0:
            h_sendf(c, "GET /sign_in?hasty%d HTTP/1.0\r\n\r\n", i);
            break;
        case 1:
            h_send_str(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /heal");
            break;
        case 2:
            h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n", w);
            break;
        default:
            h_send_str(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            break;
        }
        if (i % 2 && !h_tls_mode()) {
            /* A reset instead of a FIN: the server's writes fail. */
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            assert_int_equal(setsockopt(h_fd(c), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
        }
        h_close(c);
    }
    h_await_metric(&s, "pcsig_open_connections", 1, 2 * H_TIMEOUT_MS);
    h_wait_parked(&s, 0, H_TIMEOUT_MS);
    h_resp_t *r = h_request_str(&s, "GET /health HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    /* A new member's wait is parked and woken as ever. */
    uint64_t from = h_sign_in(&s, "sender");
    w = h_sign_in(&s, "after");
    h_conn_t *c = h_connect(&s);
    h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n", w);
    h_wait_parked(&s, 1, H_TIMEOUT_MS);
    h_send_ok(&s, from, w, "hi", 2, "text/plain");
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, from);
    H_ASSERT_BODY(r, "hi");
    h_resp_free(r);
    h_close(c);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

#define IDLE_CONNS 150
#define PARKED_CONNS 70

/*
 * Sessions that did go through epoll (idle keep-alive connections after an
 * answer, parked waits) and then all close at once, more than one
 * graveyard batch (64) of them, half by reset: each is closed, counted off
 * and freed (under ASan: no use after free by an event still in the
 * poller's hands), and the server serves on.
 */
static void test_many_epoll_sessions_close(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    uint64_t ids[PARKED_CONNS];
    char name[32];
    for (size_t i = 0; i < PARKED_CONNS; i++) {
        snprintf(name, sizeof name, "pk%zu", i);
        ids[i] = h_sign_in(&s, name);
    }
    h_drain_joins(&s, ids, PARKED_CONNS);
    h_conn_t *c[IDLE_CONNS + PARKED_CONNS];
    for (size_t i = 0; i < IDLE_CONNS; i++) {
        c[i] = h_connect(&s);
        h_send_str(c[i], "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        h_resp_t *r = h_read(c[i]);
        H_ASSERT_STATUS(r, 200, "OK");
        h_resp_free(r);
    }
    for (size_t i = 0; i < PARKED_CONNS; i++) {
        c[IDLE_CONNS + i] = h_connect(&s);
        h_sendf(c[IDLE_CONNS + i], "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n",
                ids[i]);
    }
    h_wait_parked(&s, PARKED_CONNS, H_TIMEOUT_MS);
    /* + 1: the scrape's own (awaited: a previous scrape's connection may
     * not have been seen closed yet). */
    h_await_metric(&s, "pcsig_open_connections", IDLE_CONNS + PARKED_CONNS + 1, H_TIMEOUT_MS);
    for (size_t i = 0; i < IDLE_CONNS + PARKED_CONNS; i++) {
        if (i % 2 && !h_tls_mode()) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            assert_int_equal(setsockopt(h_fd(c[i]), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
        }
        h_close(c[i]);
    }
    h_await_metric(&s, "pcsig_open_connections", 1, 2 * H_TIMEOUT_MS);
    h_wait_parked(&s, 0, H_TIMEOUT_MS);
    /* The members are still there, their waits served as ever. */
    h_conn_t *w = h_connect(&s);
    h_sendf(w, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n", ids[1]);
    h_wait_parked(&s, 1, H_TIMEOUT_MS);
    h_send_ok(&s, ids[0], ids[1], "still", 5, "text/plain");
    h_resp_t *r = h_read(w);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_BODY(r, "still");
    h_resp_free(r);
    h_close(w);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* More than the server's socket takes (tcp_wmem's maximum is commonly
 * 4 MiB): most of it must stay held by the server. */
#define SLOW_BODY (12 * 1024 * 1024)

/*
 * A slow reader on the inline path: a /wait whose answer (a 12 MiB message)
 * is far more than the socket takes, from a client with a small receive
 * buffer that does not read. Whoever served it (the accepting thread) must
 * not block on it: other clients are served meanwhile, parked waits woken;
 * then the slow client reads, and gets every byte.
 */
static void test_slow_reader_first_request(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* raw plain socket with a small receive buffer */
    h_server_t s;
    h_server_start(&s, "--max-body-bytes", "16777216", NULL);
    uint64_t ids[3] = {h_sign_in(&s, "sl0"), h_sign_in(&s, "sl1"), h_sign_in(&s, "sl2")};
    h_drain_joins(&s, ids, 3);
    char *body = malloc(SLOW_BODY);
    assert_non_null(body);
    for (size_t i = 0; i < SLOW_BODY; i++)
        body[i] = (char)('a' + i % 23);
    h_send_ok(&s, ids[0], ids[1], body, SLOW_BODY, "application/octet-stream");

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int rcvbuf = 4096;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(s.port)};
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    char req[128];
    int rl = snprintf(req, sizeof req, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", ids[1]);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(send(fd, req, (size_t)rl, MSG_NOSIGNAL), rl);
    /* Until the answer is stuck in the server's hands (held output). */
    h_await_metric(&s, "pcsig_open_connections", 2, H_TIMEOUT_MS);
    uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    while (h_metric(&s, "pcsig_output_held_bytes") <= 0)
        if (h_ms_left(deadline) == 0)
            fail_msg("the 12 MiB answer was never held for the slow reader");

    /* Meanwhile: new connections served, a parked wait woken. */
    for (int i = 0; i < 5; i++) {
        h_resp_t *r = h_request_str(&s, "GET /health HTTP/1.0\r\n\r\n");
        H_ASSERT_STATUS(r, 200, "OK");
        h_resp_free(r);
    }
    h_conn_t *w = h_connect(&s);
    h_sendf(w, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", ids[2]);
    h_wait_parked(&s, 1, H_TIMEOUT_MS);
    h_send_ok(&s, ids[0], ids[2], "quick", 5, "text/plain");
    h_resp_t *r = h_read(w);
    H_ASSERT_BODY(r, "quick");
    h_resp_free(r);
    h_close(w);

    /* The slow reader reads now: the whole answer, byte for byte. */
    size_t cap = SLOW_BODY + 4096, got = 0;
    char *in = malloc(cap);
    assert_non_null(in);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = h_ms_left(deadline + 2 * H_TIMEOUT_MS);
        if (left == 0 || poll(&p, 1, left) != 1)
            fail_msg("the slow reader's answer stopped after %zu bytes", got);
        ssize_t n = recv(fd, in + got, cap - got, 0);
        if (n < 0) {
            char why[128];
            fail_msg("recv: %s", log_strerror(errno, why, sizeof why));
        }
        if (n == 0)
            break;
        got += (size_t)n;
        assert_true(got < cap);
    }
    close(fd);
    const char *end = memmem(in, got, "\r\n\r\n", 4);
    assert_non_null(end);
    size_t head = (size_t)(end - in) + 4;
    assert_memory_equal(in, "HTTP/1.1 200 OK\r\n", 17);
    assert_int_equal(got - head, SLOW_BODY);
    assert_memory_equal(in + head, body, SLOW_BODY);
    free(in);
    free(body);
    h_await_metric(&s, "pcsig_output_held_bytes", 0, H_TIMEOUT_MS);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_parked_wait_releases_big_buffers),
        H_TEST(test_request_after_accept),
        H_TEST(test_split_request),
        H_TEST(test_keepalive_after_inline),
        H_TEST(test_pipelined_first_segment),
        H_TEST(test_burst_wakes_parked_waits),
        H_TEST(test_burst_wakes_closing_waits),
        H_TEST(test_requests_behind_parked_wait),
        H_TEST(test_client_closes_after_sending),
        H_TEST(test_many_epoll_sessions_close),
        H_TEST(test_slow_reader_first_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
