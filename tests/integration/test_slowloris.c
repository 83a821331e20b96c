/*
 * Integration, hostile clients: slowloris heads and bodies (one byte every
 * 100 ms, paced by the pair's own poll loop) answered 408 a read timeout
 * after their first byte.
 *
 * Each scenario runs against the real server while two well-behaved
 * members, alice and bob (the "pair", hostile.h), keep exchanging messages
 * over parked keep-alive /waits: every message must arrive exactly once and
 * in order, promptly, and nothing else may reach them but the notifications
 * a test expects. Nothing here sleeps to synchronise: every wait is a poll()
 * on sockets, pipes, a pidfd or an inotify descriptor with a deadline.
 */
#include "hostile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "net.h"
#include "strlit.h"
#include "tls.h"

typedef struct trickle {
    h_conn_t *c;
    char data[256];
    size_t len, pos;
    uint64_t t_first; /* when the request's first byte was sent */
    uint64_t t_conn;  /* before the connection was opened */
    bool done;
} trickle_t;

#define SLOW_N 6

#define SLOW_ALL (2 * SLOW_N + 2)

/*
 * --read-timeout 1: SLOW_N heads arriving one byte every 100 ms, SLOW_N
 * bodies doing the same after a complete head, and two heads trickling on
 * keep-alive connections after a first request was served. Each gets 408
 * about a second after its first byte (not after its last), then EOF; a
 * connection's first request counts from the accept (a TLS handshake is
 * inside its second), so its 408 may come sooner after its first byte;
 * nothing of them is signed in or delivered; alice and bob relay normally
 * all along, each post on a new connection.
 */
static void test_slowloris(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--read-timeout", "1", NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    pair_exchange(p);

    static trickle_t t[SLOW_ALL];
    memset(t, 0, sizeof t);
    for (int k = 0; k < SLOW_ALL; k++) {
        trickle_t *x = &t[k];
        x->t_conn = h_now_ms();
        x->c = h_connect(&srv);
        if (k < SLOW_N || k >= 2 * SLOW_N) {
            x->len = (size_t)snprintf(x->data, sizeof x->data,
                                      "GET /sign_in?slow%d HTTP/1.1\r\nHost: x\r\n"
                                      "User-Agent: one byte every 100 ms\r\n\r\n",
                                      k);
            if (k >= 2 * SLOW_N) {
                /* A first request, served; the second one trickles. */
                h_send_str(x->c, "OPTIONS /first HTTP/1.1\r\nHost: x\r\n\r\n");
                h_resp_t *r = h_read(x->c);
                H_ASSERT_STATUS(r, 200, "OK");
                h_resp_free(r);
            }
        } else {
            /* alice -> bob: were it delivered, bob's in-order check would fail. */
            x->len = (size_t)snprintf(x->data, sizeof x->data,
                                      "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64
                                      " HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                                      "Content-Length: 60\r\n\r\n"
                                      "a body that arrives one byte every 100 ms..................",
                                      p->id[0], p->id[1]);
            size_t head = (size_t)(strstr(x->data, "\r\n\r\n") + 4 - x->data);
            h_send(x->c, x->data, head);
            x->pos = head;
            x->t_first = h_now_ms();
        }
    }
    uint64_t deadline = h_now_ms() + 20000;
    size_t open = SLOW_ALL;
    unsigned tick = 0;
    while (open) {
        if (h_ms_left(deadline) == 0)
            fail_msg("%zu slow requests still unanswered after 20 s", open);
        for (int k = 0; k < SLOW_ALL; k++) {
            trickle_t *x = &t[k];
            if (x->done)
                continue;
            if (x->pos == x->len)
                fail_msg("slow request %d was sent completely (%zu bytes in %" PRIu64
                         " ms) without a 408",
                         k, x->len, h_now_ms() - x->t_first);
            h_send(x->c, x->data + x->pos, 1);
            if (!x->t_first)
                x->t_first = h_now_ms();
            x->pos++;
        }
        /* The pacing: 100 ms of serving the pair while watching the slow ones. */
        uint64_t tick_end = h_now_ms() + 100;
        while (h_ms_left(tick_end) > 0) {
            h_conn_t *ex[SLOW_ALL];
            int map[SLOW_ALL];
            size_t nex = 0;
            for (int k = 0; k < SLOW_ALL; k++) {
                if (!t[k].done) {
                    map[nex] = k;
                    ex[nex++] = t[k].c;
                }
            }
            int e = pair_poll(p, h_ms_left(tick_end), ex, nex);
            if (e < 0)
                continue;
            trickle_t *x = &t[map[e]];
            h_resp_t *r = h_take(x->c);
            if (!r) {
                /* h_pump answers 0 only at EOF (it never blocks). */
                if (h_pump(x->c) == 0 && (r = h_take(x->c)) == NULL)
                    fail_msg("slow request %d: closed without a 408", map[e]);
                if (!r)
                    continue;
            }
            uint64_t took = h_now_ms() - x->t_first;
            if (r->status != 408)
                fail_msg("slow request %d: expected 408, got %d %s after %" PRIu64 " ms", map[e],
                         r->status, r->reason, took);
            H_ASSERT_STATUS(r, 408, "Request Timeout");
            H_ASSERT_HDR(r, "Connection", "close");
            h_resp_free(r);
            /* A first request's second started at the accept, after t_conn;
             * a keep-alive one's at its first byte. */
            uint64_t from = map[e] >= 2 * SLOW_N ? x->t_first : x->t_conn;
            uint64_t since = h_now_ms() - from;
            if (since < 900 || took > 6000)
                fail_msg("slow request %d: 408 after %" PRIu64 " ms from its first byte, %" PRIu64
                         " ms from its start (read timeout 1 s)",
                         map[e], took, since);
            note("slow request %d: 408 after %" PRIu64 " ms", map[e], took);
            h_expect_eof(x->c, H_TIMEOUT_MS);
            h_close(x->c);
            x->done = true;
            open--;
        }
        if (++tick % 4 == 0)
            pair_exchange(p);
    }
    pair_exchange(p);
    ASSERT_ALIVE(&srv);
    /* No slow sign-in happened, no slow message was delivered. */
    char want[64];
    snprintf(want, sizeof want, "bob,%" PRIu64 ",1\n", p->id[1]);
    pair_expect_notes(p, 0, want);
    pair_expect_notes(p, 1, "");
    pair_expect_no_extra(p);
    assert_int_equal(h_sign_in(&srv, "after"), 3);
    pair_await_note(p, "after,3,1\n");
    pair_stop(p, &srv);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_slowloris),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
