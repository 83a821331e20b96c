/*
 * Integration: the CLI's --exec: the command gets the body on stdin and the
 * sender in its environment, runs bounded in number, and a full queue of
 * commands is capped.
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

/* --exec: the command gets the body on stdin and the sender in its env. */
static void test_cli_exec(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-exec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char fifo[64], cmd[256];
    snprintf(fifo, sizeof fifo, "%s/out", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* Read-write: we are a writer too, so the FIFO never reports a hang-up. */
    int ffd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    assert_true(ffd >= 0);
    snprintf(cmd, sizeof cmd,
             "{ printf 'from=%%s type=%%s body=' \"$PCSIG_FROM\" \"$PCSIG_CONTENT_TYPE\"; cat; "
             "printf '|'; } > %s", fifo);

    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "ex",
                          "--exec", cmd, NULL};
    h_proc_t *p = cli_spawn(args);
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    pcsig_client_t *a = client(&s, "sender");
    uint64_t ida = signed_in(a, 1);
    int64_t t = send_ok(a, 1, "text/x-exec", STRLIT("line one\nline two"));
    expect_sent(a, t, 1);

    char got[256];
    size_t n = 0;
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    while (!memchr(got, '|', n)) {
        struct pollfd pf = {.fd = ffd, .events = POLLIN};
        uint64_t now = h_now_ms();
        if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) != 1)
            fail_msg("--exec wrote \"%.*s\" only", (int)n, got);
        ssize_t r = read(ffd, got + n, sizeof got - 1 - n);
        if (r > 0)
            n += (size_t)r;
    }
    got[n] = '\0';
    char want[128];
    snprintf(want, sizeof want, "from=%" PRIu64 " type=text/x-exec body=line one\nline two|", ida);
    assert_string_equal(got, want);

    disconnect_clean(a);
    client_free(a);
    assert_int_equal(cli_finish(p, true), 0);
    h_server_stop(&s);
    close(ffd);
    unlink(fifo);
    rmdir(dir);
    h_pass();
}

/* --exec under a flood: one child per peer at a time, --exec-max in all,
 * and every message still runs. Each child appends "s FROM PID" when it
 * starts and "e FROM PID" before it ends (O_APPEND writes of a line are
 * atomic), so the file's order shows what overlapped. */
/* Each of `times` needles in the log at path within T_EVENT_MS of the one
 * before: a long run of children is slow under load, not stuck, so the
 * deadline is on progress, not on the whole run. */
static bool await_log_progress(const char *path, const char *needle, size_t times)
{
    for (size_t k = 1; k <= times; k++)
        if (!h_await_log(path, 0, needle, k, T_EVENT_MS))
            return false;
    return true;
}

static void test_cli_exec_bounded(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-execb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char logp[64], cmd[256];
    snprintf(logp, sizeof logp, "%s/log", dir);
    int lfd = open(logp, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(lfd >= 0);
    close(lfd);
    /* The child's work takes a moment, so that unbounded children overlap. */
    snprintf(cmd, sizeof cmd,
             "echo \"s $PCSIG_FROM $$\" >> %s; cat > /dev/null; sleep 0.05; "
             "echo \"e $PCSIG_FROM $$\" >> %s", logp, logp);
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "ex",
                          "--exec", cmd, "--exec-max", "3", NULL};
    h_proc_t *p = cli_spawn(args);
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    enum { SENDERS = 6, EACH = 4 }; /* six peers with children due at once: past --exec-max 3 */
    pcsig_client_t *snd[SENDERS];
    for (int i = 0; i < SENDERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        snd[i] = client(&s, name);
        pcsig_event_free(expect_ev(snd[i], PCSIG_EV_SIGNED_IN));
    }
    for (int k = 0; k < EACH; k++)
        for (int i = 0; i < SENDERS; i++)
            send_ok(snd[i], 1, NULL, STRLIT("x"));
    if (!await_log_progress(logp, "e ", SENDERS * EACH))
        fail_msg("not every message ran its --exec child");

    FILE *f = fopen(logp, "r");
    assert_non_null(f);
    char l[128];
    int running = 0, max_running = 0, starts = 0, ends = 0;
    int per_peer[SENDERS + 2] = {0};
    while (fgets(l, sizeof l, f)) {
        unsigned from = 0;
        char kind = 0;
        assert_int_equal(sscanf(l, "%c %u", &kind, &from), 2);
        assert_true(from >= 2 && from < SENDERS + 2);
        if (kind == 's') {
            starts++;
            if (++running > max_running)
                max_running = running;
            if (++per_peer[from] > 1)
                fail_msg("two children at once for the messages of peer %u", from);
        } else {
            ends++;
            running--;
            per_peer[from]--;
        }
    }
    fclose(f);
    assert_int_equal(starts, SENDERS * EACH);
    assert_int_equal(ends, SENDERS * EACH);
    if (max_running > 3)
        fail_msg("%d --exec children ran at once (--exec-max 3)", max_running);
    for (int i = 0; i < SENDERS; i++)
        client_free(snd[i]);
    assert_int_equal(cli_finish(p, true), 0);
    h_server_stop(&s);
    unlink(logp);
    rmdir(dir);
    h_pass();
}

/* --exec's queue is bounded: with the one peer's child held up, 256
 * messages wait, the ones beyond are dropped with a warning, and the
 * waiting ones all run (in order) once the child is released. */
static void test_cli_exec_queue_cap(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-execq-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char logp[64], fifo[64], cmd[512];
    snprintf(logp, sizeof logp, "%s/log", dir);
    snprintf(fifo, sizeof fifo, "%s/go", dir);
    int lfd = open(logp, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(lfd >= 0);
    close(lfd);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* Read-write: the FIFO stays open, so each child's read waits for a line. */
    int ffd = open(fifo, O_RDWR | O_CLOEXEC);
    assert_true(ffd >= 0);
    /* Builtins only (no fork in the child): 257 of them run one by one. */
    snprintf(cmd, sizeof cmd, "read -r b; read go < %s; echo \"ran $b\" >> %s", fifo, logp);
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "ex",
                          "--exec", cmd, NULL};
    h_proc_t *p = cli_spawn_(args, true);
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    pcsig_client_t *a = client(&s, "flood");
    pcsig_event_free(expect_ev(a, PCSIG_EV_SIGNED_IN));
    enum { SENT = 1 + 256 + 3 };
    int64_t last = 0;
    for (int i = 0; i < SENT; i++) {
        char b[16];
        snprintf(b, sizeof b, "%d", i);
        last = send_ok(a, 1, NULL, b, strlen(b));
    }
    /* The CLI has them all once the last message event is printed. */
    struct pcsig_event *ev = await_ev(a, PCSIG_EV_MESSAGE_SENT, 1u << PCSIG_EV_MESSAGE_SENT);
    while (ev->token != (uint64_t)last) {
        pcsig_event_free(ev);
        ev = await_ev(a, PCSIG_EV_MESSAGE_SENT, 0);
    }
    pcsig_event_free(ev);
    cli_expect(p, "{\"event\":\"peer_joined\",\"id\":2,\"name\":\"flood\"}");
    for (int i = 0; i < SENT; i++) {
        char *line = cli_line(p);
        assert_non_null(strstr(line, "{\"event\":\"message\",\"from\":2,"));
        free(line);
    }
    /* Release every child that will run: the first and the 256 queued. */
    char go[257 * 3];
    for (size_t i = 0; i < 257; i++)
        memcpy(go + 3 * i, STRLIT("go\n"));
    assert_int_equal(write(ffd, go, sizeof go), (ssize_t)sizeof go);
    if (!await_log_progress(logp, "ran ", 257))
        fail_msg("the queued --exec messages did not all run");
    FILE *f = fopen(logp, "r");
    assert_non_null(f);
    char l[64];
    int n = 0;
    while (fgets(l, sizeof l, f)) {
        char want[32];
        snprintf(want, sizeof want, "ran %d\n", n); /* in order: 0..256 */
        assert_string_equal(l, want);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 257);
    client_free(a);
    assert_int_equal(close(p->in_fd), 0);
    p->in_fd = -1;
    char *err = cli_all_stderr(p);
    if (!strstr(err, "the message from 2 is dropped (3 so far)"))
        fail_msg("no warning for the 3 dropped messages: %s", err);
    free(err);
    assert_int_equal(cli_finish(p, true), 0);
    h_server_stop(&s);
    close(ffd);
    unlink(fifo);
    unlink(logp);
    rmdir(dir);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_cli_exec),
        T_TEST(test_cli_exec_bounded),
        T_TEST(test_cli_exec_queue_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
