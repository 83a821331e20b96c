/*
 * Integration: the CLI on a terminal (a pty): log lines printed while a
 * line is half typed land on their own line and the prompt is redrawn.
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



/* Interactive mode on a terminal: a warning the library logs while a line
 * is half typed is printed on a line of its own (the prompt erased first)
 * and the prompt with the typed text is redrawn after it, as for events;
 * it used to land in the middle of the input ("> send 1 typ2026-...WARN"). */
static void test_cli_tty_log_lines(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    struct fake f;
    fake_start(&f);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)f.port);
    const char *args[] = {"--server", "127.0.0.1", "--port", port, "--name", "tty",
                          "--autoconnect", NULL};
    h_proc_t *p = cli_spawn_pty(args);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?tty HTTP/1.0\r\n\r\n");
    fake_answer(s1, "200 Added", "text/plain", 5, "tty,5,1\n");
    fake_expect_client_close(s1);
    char want[128];
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 5; 0 peer(s)\r\n> ", port);
    size_t at = pty_await(p, 0, want);

    static const char typed[] = "send 1 typ";
    assert_int_equal(write(p->in_fd, typed, sizeof typed - 1), (ssize_t)(sizeof typed - 1));
    at = pty_await(p, at, typed); /* our echo */

    /* A /wait answer the client does not understand: it logs a warning. */
    int w1 = fake_accept(&f);
    fake_expect(w1, "GET /wait?peer_id=5 HTTP/1.0\r\n\r\n");
    fake_answer(w1, "404 Not Found", "text/plain", -1, "");
    static const char warn[] = " WARN [hanging_get] client: unexpected status on /wait (status "
                               "404); polling again shortly";
    size_t w = pty_await(p, at, warn);
    /* "\r ESC[K" (prompt erased), then the record from its time stamp on. */
    static const char erase[] = "\r\033[K";
    enum { STAMP = 24 }; /* 2026-11-25T08:00:00.123Z */
    if (w < at + STAMP + sizeof erase - 1 ||
        memcmp(p->buf + w - STAMP - (sizeof erase - 1), erase, sizeof erase - 1) != 0)
        fail_msg("the warning does not start on an erased line:\n%.*s", (int)(p->len - at),
                 p->buf + at);
    /* ...and the prompt comes back with the half-typed line. */
    snprintf(want, sizeof want, "%s\r\n\r\033[K> %s", warn, typed);
    pty_await(p, at, want);
    close(w1);
    int w2 = fake_accept(&f); /* it polls again after a pause */
    fake_expect(w2, "GET /wait?peer_id=5 HTTP/1.0\r\n\r\n");

    /* ^U drops the typed text; quit abandons the /wait and signs out. */
    assert_int_equal(write(p->in_fd, STRLIT("\025quit\r")), 6);
    int o1 = fake_accept(&f);
    fake_expect(o1, "GET /sign_out?peer_id=5 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    assert_int_equal(cli_finish(p, false), 0);
    close(o1);
    close(w2);
    close(f.lfd);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_cli_tty_log_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
