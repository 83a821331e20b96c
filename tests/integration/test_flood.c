/*
 * Integration, hostile clients: a flood of connections beyond the server's
 * connection limit.
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

static void test_connection_flood(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* the cap's 503 is written in plain text before any handshake */
    enum { CAP = 200 };
    h_server_t srv;
    /* Accepted flood connections stay silent: not a read-timeout test. */
    h_server_start(&srv, "--max-connections", "200", "--read-timeout", "60", NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, true); /* 4 connections, opened before the flood */
    pair_exchange(p);

    static int fds[FLOOD];
    static rawbuf_t rb[FLOOD];
    static bool want[FLOOD];
    memset(rb, 0, sizeof rb);
    open_raw(&srv, fds, FLOOD);
    for (size_t i = 0; i < FLOOD; i++)
        want[i] = true;
    size_t room = CAP - 4;
    /* The ones past the cap (all but room, or up to 2 more, see below) are
     * answered 503 and closed. */
    size_t ended = await_raw_eof(fds, rb, want, FLOOD, FLOOD - room, 20000);
    if (ended < FLOOD - room)
        fail_msg("only %zu of %d connections were refused within 20 s; expected %zu (cap %d, "
                 "4 held by the pair)",
                 ended, FLOOD, FLOOD - room, CAP);
    /* Then nothing more (a sign-in connection of the pair's start may
     * still have been counted for a moment: at most 2 more refusals). */
    ended = await_raw_eof(fds, rb, want, FLOOD, FLOOD, H_SILENCE_MS);
    if (ended > FLOOD - room + 2)
        fail_msg("%zu of %d connections were refused or closed; expected %zu (cap %d, 4 held "
                 "by the pair)",
                 ended, FLOOD, FLOOD - room, CAP);
    size_t refused503 = 0;
    for (size_t i = 0; i < FLOOD; i++) {
        if (!rb[i].eof) {
            if (rb[i].len)
                fail_msg("accepted connection %zu received \"%s\"", i, show(rb[i].b, rb[i].len));
            continue;
        }
        bool cl = false;
        int st = raw_status(&rb[i], &cl);
        if (st == 503 && cl)
            refused503++;
        else if (st != 0)
            fail_msg("refused connection %zu: \"%s\"", i, show(rb[i].b, rb[i].len));
    }
    note("flood: %zu refused with 503, %zu closed silently", refused503, ended - refused503);
    assert_true(refused503 > 0);

    /* alice and bob, connected before, are served all along. */
    pair_exchange(p);
    pair_exchange(p);
    ASSERT_ALIVE(&srv);

    /* Half of the accepted ones ask for something and are served. */
    size_t asked = 0;
    for (size_t i = 0; i < FLOOD; i++) {
        want[i] = false;
        if (!rb[i].eof && asked < room / 2) {
            static const char req[] = "OPTIONS /flood HTTP/1.0\r\n\r\n";
            if (send(fds[i], req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
                fail_msg("send on accepted connection %zu: errno %d", i, errno);
            want[i] = true;
            asked++;
        }
    }
    size_t served = await_raw_eof(fds, rb, want, FLOOD, asked, H_TIMEOUT_MS);
    if (served != asked)
        fail_msg("%zu of %zu accepted connections answered", served, asked);
    for (size_t i = 0; i < FLOOD; i++) {
        bool cl = false;
        if (want[i] && raw_status(&rb[i], &cl) != 200)
            fail_msg("accepted connection %zu: \"%s\"", i, show(rb[i].b, rb[i].len));
    }
    pair_exchange(p);

    /* The flood leaves; a new sign-in works again (503 while the server has
     * not yet noticed every close; each attempt a real round trip). */
    for (size_t i = 0; i < FLOOD; i++)
        close(fds[i]);
    uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    uint64_t id = 0;
    while (!id) {
        h_conn_t *c = h_connect(&srv);
        h_send_str(c, "GET /sign_in?after HTTP/1.0\r\n\r\n");
        h_resp_t *r = h_read(c);
        h_close(c);
        if (r->status == 200)
            id = (uint64_t)h_hdr_num(r, "Pragma");
        else if (r->status != 503)
            fail_msg("sign-in after the flood: %d %s", r->status, r->reason);
        h_resp_free(r);
        if (!id && h_ms_left(deadline) == 0)
            fail_msg("sign-in still refused %d ms after the flood left", H_TIMEOUT_MS);
        pair_service(p, 0);
    }
    char line[64];
    snprintf(line, sizeof line, "after,%" PRIu64 ",1\n", id);
    pair_await_note(p, line);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_connection_flood),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
