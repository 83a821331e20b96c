/*
 * Integration, hostile clients: the open-file limit lowered under the running
 * server, down to where the acceptor's poll() fails.
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

/* Await a line containing needle in the server's log (inotify, no polling
 * loop on a timer). False when there is no log file (verbose mode) or it
 * did not appear within ms. */
#define await_log(srv, needle, ms) await_log_times((srv), (needle), 1, (ms))

/* The same, until needle occurs at least `times` times. */
static bool await_log_times(const h_server_t *srv, const char *needle, size_t times, int ms)
{
    if (!srv->log_path[0])
        return false;
    return h_await_log(srv->log_path, 0, needle, times, ms);
}

static void test_fd_limit(void **state)
{
    (void)state;
    enum { N = 100 };
    h_server_t srv;
    h_server_start(&srv, "--read-timeout", "30", NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, true); /* connected before the limit drops */
    pair_exchange(p);

    /* What util-linux prlimit --pid PID --nofile=64:64 does. */
    struct rlimit lim = {.rlim_cur = 64, .rlim_max = 64}, got;
    if (prlimit(srv.pid, RLIMIT_NOFILE, &lim, NULL) < 0)
        fail_msg("prlimit(%d, NOFILE, 64): errno %d", (int)srv.pid, errno);
    assert_int_equal(prlimit(srv.pid, RLIMIT_NOFILE, NULL, &got), 0);
    assert_int_equal(got.rlim_cur, 64);

    /* 100 connections: the kernel completes them all (listen backlog); the
     * server accepts what fits and backs off on EMFILE. */
    static int fds[N];
    static rawbuf_t rb[N];
    static bool want[N];
    open_raw(&srv, fds, N);
    if (srv.log_path[0] && !await_log(&srv, "backing off", 15000))
        fail_msg("no \"backing off\" warning in the log: the server never ran out of files?");
    note("fd limit: the server backs off");
    ASSERT_ALIVE(&srv);
    pair_exchange(p);
    pair_exchange(p);
    ASSERT_ALIVE(&srv);

    /* They leave; new requests are served again (retries until a deadline:
     * the server needs a moment to see the closes and stop backing off). */
    for (size_t i = 0; i < N; i++)
        close(fds[i]);
    uint64_t deadline = h_now_ms() + 30000;
    uint64_t id = 0;
    int attempts = 0;
    while (!id) {
        if (h_ms_left(deadline) == 0)
            fail_msg("no sign-in served within 30 s after the flood left (%d attempts)", attempts);
        attempts++;
        h_conn_t *c = h_try_connect(&srv);
        if (!c)
            continue;
        h_send_str(c, "GET /sign_in?after HTTP/1.0\r\n\r\n");
        h_resp_t *r = try_read(c, 2000);
        h_close(c);
        if (r && r->status == 200)
            id = (uint64_t)h_hdr_num(r, "Pragma");
        else if (r)
            fail_msg("sign-in after the flood: %d %s", r->status, r->reason);
        h_resp_free(r);
        pair_service(p, 0);
    }
    char line[64];
    snprintf(line, sizeof line, "after,%" PRIu64 ",1\n", id);
    pair_await_note(p, line);

    /* Again 100 at once, each asking something this time: the server cycles
     * through them with its few descriptors and every one is answered. */
    memset(rb, 0, sizeof rb);
    open_raw(&srv, fds, N);
    static const char req[] = "OPTIONS /fd-limit HTTP/1.0\r\n\r\n";
    for (size_t i = 0; i < N; i++) {
        if (send(fds[i], req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
            fail_msg("send on connection %zu: errno %d", i, errno);
        want[i] = true;
    }
    size_t ended = await_raw_eof(fds, rb, want, N, N, 30000);
    if (ended != N)
        fail_msg("%zu of %d requests answered under the lowered limit", ended, N);
    /* Plain text to the TLS port gets the plain 400 that says so. */
    int st_want = h_tls_mode() ? 400 : 200;
    for (size_t i = 0; i < N; i++) {
        bool cl = false;
        if (raw_status(&rb[i], &cl) != st_want)
            fail_msg("connection %zu: \"%s\"", i, show(rb[i].b, rb[i].len));
        close(fds[i]);
    }
    ASSERT_ALIVE(&srv);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

/*
 * The acceptor's poll() failing: poll() answers EINVAL when it is given more
 * descriptors than RLIMIT_NOFILE allows, so an open-file limit of 1 under
 * the running server makes the acceptor's poll (its wake-up eventfd plus the
 * listener: 2 descriptors) fail. While it fails the acceptor is deaf but the
 * connections already open are served; once poll() works again it accepts
 * again; after --accept-give-up seconds (10 by default; 3 here, so the test
 * does not wait out 10 s) of failing without a break it stops the server,
 * which exits with status 1 (a supervisor restarts it).
 */
#define POLL_RETRY_LOG "poll (retrying every 100 ms)"

#define POLL_GIVE_UP_LOG "cannot accept, stopping"

#define POLL_FATAL_MS 3000 /* --accept-give-up 3 */

/* Set the server's soft open-file limit (the hard one stays). */
static void set_nofile(const h_server_t *srv, rlim_t cur, rlim_t max)
{
    struct rlimit lim = {.rlim_cur = cur, .rlim_max = max}, got;
    if (prlimit(srv->pid, RLIMIT_NOFILE, &lim, NULL) < 0)
        fail_msg("prlimit(%d, NOFILE, %llu): errno %d", (int)srv->pid, (unsigned long long)cur,
                 errno);
    assert_int_equal(prlimit(srv->pid, RLIMIT_NOFILE, NULL, &got), 0);
    assert_int_equal(got.rlim_cur, cur);
}

/* A raw TCP connection (the kernel completes it from the listen backlog):
 * it wakes the acceptor, whose accept4() then fails with EMFILE; after the
 * 100 ms back-off its next poll() covers the listener again, and fails. */
static int wake_acceptor(const h_server_t *srv)
{
    int fd = net_connect("127.0.0.1", srv->port, H_TIMEOUT_MS);
    if (fd < 0)
        fail_msg("connect to wake the acceptor: errno %d", -fd);
    return fd;
}

static void test_acceptor_poll_failure(void **state)
{
    (void)state;
    if (getenv("PCSIG_TEST_VERBOSE"))
        skip(); /* the log line is the only sign that poll() failed */
    h_server_t srv;
    h_server_start(&srv, "--accept-give-up", "3", NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, true); /* keep-alive posts: no new connection needed */
    pair_exchange(p);
    struct rlimit old;
    assert_int_equal(prlimit(srv.pid, RLIMIT_NOFILE, NULL, &old), 0);
    assert_true(old.rlim_cur > 2);

    /* 1. poll() fails: logged once, the open connections are still served. */
    set_nofile(&srv, 1, old.rlim_max);
    int fd = wake_acceptor(&srv);
    if (!await_log_times(&srv, POLL_RETRY_LOG, 1, H_TIMEOUT_MS))
        fail_msg("no \"" POLL_RETRY_LOG "\" in the log: the acceptor's poll() did not fail?");
    close(fd);
    pair_exchange(p);
    ASSERT_ALIVE(&srv);

    /* 2. The limit back: within a retry, new connections are accepted and
     * served, and the members already signed in carry on. */
    set_nofile(&srv, old.rlim_cur, old.rlim_max);
    uint64_t carol = h_sign_in(&srv, "carol");
    char join[64];
    snprintf(join, sizeof join, "carol,%" PRIu64 ",1\n", carol);
    pair_await_note(p, join);
    pair_exchange(p);
    if (await_log_times(&srv, POLL_RETRY_LOG, 2, 0))
        fail_msg("a second \"" POLL_RETRY_LOG "\" while poll() works");
    note("acceptor poll failure: recovered");

    /* 3. Failing for good: logged again (a new episode), the server stays up
     * for the 3 s and then stops by itself, gracefully, with status 1. */
    uint64_t t0 = h_now_ms();
    set_nofile(&srv, 1, old.rlim_max);
    fd = wake_acceptor(&srv);
    if (!await_log_times(&srv, POLL_RETRY_LOG, 2, H_TIMEOUT_MS))
        fail_msg("no second \"" POLL_RETRY_LOG "\" in the log");
    close(fd);
    pair_exchange(p);
    ASSERT_ALIVE(&srv);
    int st = h_server_await_exit(&srv, POLL_FATAL_MS + 15000);
    uint64_t took = h_now_ms() - t0;
    if (st == -2)
        fail_msg("the server still runs %llu ms after its poll() began to fail",
                 (unsigned long long)took);
    assert_int_equal(st, 1);
    if (took < POLL_FATAL_MS)
        fail_msg("the server gave up after %llu ms of failing poll(), not %d",
                 (unsigned long long)took, POLL_FATAL_MS);
    if (!await_log(&srv, POLL_GIVE_UP_LOG, 0))
        fail_msg("the exit without \"" POLL_GIVE_UP_LOG "\" in the log");
    note("acceptor poll failure: exit 1 after %llu ms", (unsigned long long)took);
    pair_expect_shutdown(p);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fd_limit),
        T(test_acceptor_poll_failure),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
