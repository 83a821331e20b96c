/*
 * Integration: libpcsig-client against a scripted server that answers byte
 * for byte like the original (B 4.1, B 7.4): the exact requests the client
 * sends, keep-alive, a /wait the server never answers (client-side
 * timeout), and a huge peer list.
 * Every wait is for an event or a line with a timeout, never a sleep.
 */
#include "client_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "net.h"
#include "strlit.h"

static void test_wire_against_original(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* the original speaks plain HTTP only */
    struct fake f;
    fake_start(&f);
    pcsig_client_t *c = client_on(f.port, "wire test", false, 0);

    /* C1: the sign-in; the answer lists us first, then the others. */
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?wire%20test HTTP/1.0\r\n\r\n");
    fake_answer(s1, "200 Added", "text/plain", 7, "wire%20test,7,1\nother,3,1\n");
    fake_expect_client_close(s1);
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->own_id, 7);
    assert_int_equal(ev->npeers, 1);
    assert_int_equal(ev->peers[0].id, 3);
    assert_string_equal(ev->peers[0].name, "other");
    pcsig_event_free(ev);

    /* C2: the hanging GET, re-issued after every answer. */
    int w1 = fake_accept(&f);
    fake_expect(w1, "GET /wait?peer_id=7 HTTP/1.0\r\n\r\n");
    fake_answer(w1, "200 OK", "text/plain", 3, "{\"type\":\"offer\"}");
    fake_expect_client_close(w1);
    expect_message(c, 3, "text/plain", STRLIT("{\"type\":\"offer\"}"));
    int w2 = fake_accept(&f);
    fake_expect(w2, "GET /wait?peer_id=7 HTTP/1.0\r\n\r\n");
    fake_answer(w2, "200 OK", "text/plain", 7, "late,9,1\n");
    fake_expect_client_close(w2);
    expect_peer(c, PCSIG_EV_PEER_JOINED, 9, "late");
    int w3 = fake_accept(&f);
    fake_expect(w3, "GET /wait?peer_id=7 HTTP/1.0\r\n\r\n"); /* parked */

    /* C3: a message, then one the server refuses (only it fails). */
    int64_t t = send_ok(c, 3, NULL, STRLIT("{\"type\":\"answer\"}"));
    int m1 = fake_accept(&f);
    fake_expect(m1, "POST /message?peer_id=7&to=3 HTTP/1.0\r\nContent-Length: 17\r\n"
                    "Content-Type: text/plain\r\n\r\n{\"type\":\"answer\"}");
    fake_answer(m1, "200 OK", "text/plain", -1, "");
    fake_expect_client_close(m1);
    expect_sent(c, t, 3);
    t = send_ok(c, 4, NULL, STRLIT("BYE"));
    int m2 = fake_accept(&f);
    fake_expect(m2, "POST /message?peer_id=7&to=4 HTTP/1.0\r\nContent-Length: 3\r\n"
                    "Content-Type: text/plain\r\n\r\nBYE");
    fake_answer(m2, "500 Error", "text/plain", -1, "Peer most likely gone.");
    fake_expect_client_close(m2);
    ev = expect_ev(c, PCSIG_EV_MESSAGE_FAILED);
    assert_int_equal(ev->status, 500);
    assert_string_equal(ev->reason, "500 Error: Peer most likely gone.");
    pcsig_event_free(ev);
    assert_int_equal(pcsig_client_id(c), 7);

    /* The original's shutdown notice (no Pragma) on the parked wait: the
     * server is going; sign in again (B 7.4 would call it a message). */
    fake_answer(w3, "200 OK", "text/plain", -1, "Server shutting down");
    fake_expect_client_close(w3);
    ev = expect_ev(c, PCSIG_EV_SERVER_UNREACHABLE);
    assert_string_equal(ev->reason, "server shutting down");
    pcsig_event_free(ev);
    int s2 = fake_accept(&f);
    fake_expect(s2, "GET /sign_in?wire%20test HTTP/1.0\r\n\r\n");
    fake_answer(s2, "200 Added", "text/plain", 1, "wire%20test,1,1\n");
    fake_expect_client_close(s2);
    assert_int_equal(signed_in(c, 0), 1);

    /* C5: disconnect closes the hanging GET and signs out. */
    int w4 = fake_accept(&f);
    fake_expect(w4, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, disconnect_thread, c), 0);
    /* In the stock client's order: the hanging GET is closed before the
     * sign-out connects (on loopback its FIN is queued here before the
     * sign-out's connection can be accepted). */
    int o1 = fake_accept(&f);
    char byte;
    ssize_t got = recv(w4, &byte, 1, MSG_DONTWAIT);
    if (got != 0)
        fail_msg("the sign-out connected before the hanging GET was closed (recv: %zd, "
                 "errno %d)", got, got < 0 ? errno : 0);
    close(w4);
    fake_expect(o1, "GET /sign_out?peer_id=1 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    pthread_join(th, NULL);
    fake_expect_client_close(o1);
    ev = expect_ev(c, PCSIG_EV_DISCONNECTED);
    assert_string_equal(ev->reason, "signed out"); /* says how it ended */
    pcsig_event_free(ev);
    client_free(c);
    close(f.lfd);
    h_pass();
}

/* keep_alive: the hanging GET in HTTP/1.1 on one connection while the
 * server keeps it open; a kept connection the server closed is replaced
 * quietly (no lost server, no event). */
static void test_wire_keep_alive(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    struct fake f;
    fake_start(&f);
    pcsig_client_t *c = client_on(f.port, "ka", true, 0);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?ka HTTP/1.0\r\n\r\n"); /* control stays HTTP/1.0 */
    fake_answer(s1, "200 Added", "text/plain", 5, "ka,5,1\n");
    fake_expect_client_close(s1);
    assert_int_equal(signed_in(c, 0), 5);

    char want[128];
    snprintf(want, sizeof want, "GET /wait?peer_id=5 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             (unsigned)f.port);
    int w = fake_accept(&f);
    fake_expect(w, want);
    fake_answer_ka(w, "200 OK", "text/plain", 5, "", true); /* pcsig's idle answer */
    fake_expect(w, want);                                   /* same connection */
    fake_answer_ka(w, "200 OK", "application/json", 8, "{}", true);
    expect_message(c, 8, "application/json", STRLIT("{}"));
    fake_expect(w, want);
    close(w); /* the server drops the kept connection */
    int w2 = fake_accept(&f);
    fake_expect(w2, want);
    expect_quiet(c, T_QUIET_MS);
    fake_answer_ka(w2, "200 OK", "text/plain", 5, "late,9,1\n", false); /* ...and close */
    fake_expect_client_close(w2);
    expect_peer(c, PCSIG_EV_PEER_JOINED, 9, "late");
    int w3 = fake_accept(&f);
    fake_expect(w3, want);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, disconnect_thread, c), 0);
    fake_expect_client_close(w3);
    int o1 = fake_accept(&f);
    fake_expect(o1, "GET /sign_out?peer_id=5 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    pthread_join(th, NULL);
    fake_expect_client_close(o1);
    pcsig_event_free(expect_ev(c, PCSIG_EV_DISCONNECTED));
    client_free(c);
    close(f.lfd);
    h_pass();
}

/* A server that takes the /wait and never answers nor closes it: the
 * client's own limit fires (the connection is half-closed at
 * wait_timeout_ms) and a new /wait follows within the grace period. */
static void test_wire_wait_timeout(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    enum { WAIT_MS = 300, GRACE_MS = 1000, SLACK_MS = 2000 };
    struct fake f;
    fake_start(&f);
    pcsig_client_t *c = client_on(f.port, "silent", false, WAIT_MS);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?silent HTTP/1.0\r\n\r\n");
    fake_answer(s1, "200 Added", "text/plain", 4, "silent,4,1\n");
    fake_expect_client_close(s1);
    assert_int_equal(signed_in(c, 0), 4);

    int w1 = fake_accept(&f);
    fake_expect(w1, "GET /wait?peer_id=4 HTTP/1.0\r\n\r\n");
    uint64_t t0 = h_now_ms();
    /* No answer: the client half-closes at its limit (EOF here, not sooner). */
    struct pollfd p = {.fd = w1, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS + SLACK_MS) != 1)
        fail_msg("no half-close within %d ms of the /wait", WAIT_MS + SLACK_MS);
    char ch;
    assert_int_equal(read(w1, &ch, 1), 0);
    uint64_t half = h_now_ms() - t0;
    if (half < WAIT_MS / 2)
        fail_msg("half-closed after %" PRIu64 " ms, before the %d ms limit", half, WAIT_MS);
    /* We still neither answer nor close: the re-poll must come anyway. */
    struct pollfd pl = {.fd = f.lfd, .events = POLLIN};
    if (poll(&pl, 1, WAIT_MS + GRACE_MS + SLACK_MS) != 1)
        fail_msg("no second /wait within %d ms", WAIT_MS + GRACE_MS + SLACK_MS);
    int w2 = fake_accept(&f);
    fake_expect(w2, "GET /wait?peer_id=4 HTTP/1.0\r\n\r\n");
    uint64_t again = h_now_ms() - t0;
    if (again > WAIT_MS + GRACE_MS + SLACK_MS)
        fail_msg("second /wait after %" PRIu64 " ms", again);
    expect_quiet(c, 10); /* a timeout is not an event */
    /* And the new /wait works. */
    fake_answer(w2, "200 OK", "text/plain", 3, "after the silence");
    fake_expect_client_close(w2);
    expect_message(c, 3, "text/plain", STRLIT("after the silence"));
    close(w1);

    int w3 = fake_accept(&f);
    fake_expect(w3, "GET /wait?peer_id=4 HTTP/1.0\r\n\r\n");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, disconnect_thread, c), 0);
    fake_expect_client_close(w3);
    int o1 = fake_accept(&f);
    fake_expect(o1, "GET /sign_out?peer_id=4 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    pthread_join(th, NULL);
    fake_expect_client_close(o1);
    pcsig_event_free(expect_ev(c, PCSIG_EV_DISCONNECTED));
    client_free(c);
    close(f.lfd);
    h_pass();
}

/* A scripted server whose sign-in answer lists a million peers (16.8 MB):
 * the client keeps max_peers of them, says how many it skipped, and stays
 * responsive. */
static void huge_list_answer(int fd, uint64_t own, unsigned n)
{
    buf_t body;
    buf_init(&body, (size_t)64 << 20);
    assert_int_equal(buf_printf(&body, "me,%" PRIu64 ",1\n", own), 0);
    /* Ids in a scrambled order (7919 is prime to n): a client must not
     * sort them by insertion. */
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(buf_printf(&body, "peer_%07u,%llu,1\n", i,
                                    (unsigned long long)i * 7919 % n + 2), 0);
    buf_t b;
    buf_init(&b, 4096);
    buf_printf(&b, "HTTP/1.1 200 Added\r\nServer: PeerConnectionTestServer/0.1\r\n"
                   "Cache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\nPragma: %" PRIu64 "\r\n\r\n", body.len, own);
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    size_t off = 0;
    while (off < body.len) {
        ssize_t wr = write(fd, body.data + off, body.len - off);
        if (wr <= 0)
            break; /* the client may leave early: that is its right */
        off += (size_t)wr;
    }
    buf_free(&b);
    buf_free(&body);
}

static void test_huge_peer_list(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    struct fake f;
    fake_start(&f);
    struct pcsig_client_options o = {.server = "127.0.0.1", .port = f.port, .name = "big",
                                     .max_peers = 1000};
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    clients[T_MAX_CLIENTS - 1] = c;
    assert_int_equal(pcsig_client_connect(c), 0);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?big HTTP/1.0\r\n\r\n");
    huge_list_answer(s1, 1, 1000000);
    close(s1);
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->own_id, 1);
    assert_int_equal(ev->npeers, 1000);
    assert_int_equal(ev->peers_omitted, 1000000 - 1000);
    assert_int_equal(ev->peers[0].id, 2);
    assert_string_equal(ev->peers[999].name, "peer_0000999");
    assert_int_equal(ev->peers[999].id, 999ull * 7919 % 1000000 + 2);
    pcsig_event_free(ev);
    int w = fake_accept(&f); /* its /wait, parked */
    close(f.lfd);            /* the sign-out is refused at once */
    assert_int_equal(pcsig_client_disconnect(c), 0);
    pcsig_event_free(await_ev(c, PCSIG_EV_DISCONNECTED, 0));
    close(w);

    /* The CLI with its default cap (100,000): signed_in comes, and EOF
     * ends it (it used to hang sorting the list). Its output is drained
     * here and only its start and size checked. */
    fake_start(&f);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)f.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "big",
                          NULL};
    h_proc_t *p = cli_spawn_(args, true);
    s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?big HTTP/1.0\r\n\r\n");
    huge_list_answer(s1, 1, 1000000);
    close(s1);
    h_proc_send(p, "{\"cmd\":\"peers\"}"); /* held for the sign-in */
    close(p->in_fd); /* EOF: quit once that ran */
    p->in_fd = -1;
    char head[64] = "";
    size_t total = 0;
    uint64_t deadline = h_now_ms() + 3 * T_EVENT_MS;
    int wfd = -1;
    for (;;) {
        struct pollfd pf[2] = {{.fd = p->out_fd, .events = POLLIN},
                               {.fd = wfd < 0 ? f.lfd : -1, .events = POLLIN}};
        if (poll(pf, 2, h_ms_left(deadline)) < 1)
            fail_msg("the CLI printed %zu bytes and did not finish", total);
        if (pf[1].revents) {
            wfd = accept4(f.lfd, NULL, NULL, SOCK_CLOEXEC); /* its /wait */
            close(f.lfd); /* and its sign-out is refused */
            f.lfd = -1;
        }
        if (!pf[0].revents)
            continue;
        char tmp[65536];
        ssize_t r = read(p->out_fd, tmp, sizeof tmp);
        if (r <= 0)
            break;
        if (total < sizeof head - 1)
            memcpy(head + total, tmp, (size_t)r < sizeof head - 1 - total ? (size_t)r
                                                                           : sizeof head - 1 - total);
        total += (size_t)r;
    }
    if (strncmp(head, STRLIT("{\"event\":\"signed_in\",\"id\":1,\"peers\":[{\"id\":2,")) != 0)
        fail_msg("CLI printed \"%s\"", head);
    /* signed_in and peers: 100,000 entries of about 48 bytes each, not 1,000,000. */
    if (total < 2 * 100000 * 40 || total > 2 * 100000 * 60)
        fail_msg("the CLI printed %zu bytes", total);
    char *err = cli_all_stderr(p);
    if (!strstr(err, "900000 more peers than max_peers"))
        fail_msg("no warning about the skipped peers: %s", err);
    free(err);
    assert_int_equal(cli_finish(p, true), 0);
    if (wfd >= 0)
        close(wfd);
    if (f.lfd >= 0)
        close(f.lfd);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_wire_against_original),
        T_TEST(test_wire_keep_alive),
        T_TEST(test_wire_wait_timeout),
        T_TEST(test_huge_peer_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
