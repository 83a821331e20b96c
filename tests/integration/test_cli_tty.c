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

extern char **environ;

/* Spawn the CLI with stdin, stdout and stderr on a new pseudo-terminal;
 * p->out_fd is the master (in_fd and err_fd are copies of it). */
static h_proc_t *cli_spawn_pty(const char *const *args)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(m >= 0);
    assert_int_equal(grantpt(m), 0);
    assert_int_equal(unlockpt(m), 0);
    char slave[128];
    assert_int_equal(ptsname_r(m, slave, sizeof slave), 0);
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)client_path();
    for (; *args && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, slave, O_RDWR | O_NOCTTY, 0);
    posix_spawn_file_actions_adddup2(&fa, 0, 1);
    posix_spawn_file_actions_adddup2(&fa, 0, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fail_msg("cannot run %s (error %d); set PCSIG_CLIENT", argv[0], rc);
    h_proc_t *p =
        h_proc_adopt(pid, fcntl(m, F_DUPFD_CLOEXEC, 3), m, fcntl(m, F_DUPFD_CLOEXEC, 3));
    assert_true(p->in_fd >= 0 && p->err_fd >= 0);
    return p;
}

/* Read the terminal until what it showed since offset `from` contains
 * needle; returns needle's offset in p->buf (nothing is consumed). */
#define pty_await(p, from, needle) (h_at(__FILE__, __LINE__), pty_await_((p), (from), (needle)))

static size_t pty_await_(h_proc_t *p, size_t from, const char *needle)
{
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    size_t nl = strlen(needle);
    for (;;) {
        if (p->len >= from + nl) {
            const char *at = memmem(p->buf + from, p->len - from, needle, nl);
            if (at)
                return (size_t)(at - p->buf);
        }
        uint64_t now = h_now_ms();
        struct pollfd pf = {.fd = p->out_fd, .events = POLLIN};
        if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) != 1 ||
            p->len == sizeof p->buf)
            fail_msg("the terminal never showed \"%s\"; it shows:\n%.*s", needle, (int)p->len,
                     p->buf);
        ssize_t r = read(p->out_fd, p->buf + p->len, sizeof p->buf - p->len);
        if (r <= 0)
            fail_msg("the terminal closed before \"%s\"; it shows:\n%.*s", needle, (int)p->len,
                     p->buf);
        p->len += (size_t)r;
    }
}

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
