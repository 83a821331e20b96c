/*
 * Integration: the pcsig-client CLI in --json mode over pipes: the event
 * lines, piped commands, options, $WEBRTC_SERVER, the default name,
 * --autoconnect, quit and EOF before the sign-in (with the server down too)
 * and after held commands, and peer names.
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

static void test_cli_json(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);

    const char *xa[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "x", NULL};
    h_proc_t *x = cli_spawn(xa);
    cli_expect(x, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    const char *ya[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "y z", NULL};
    h_proc_t *y = cli_spawn(ya);
    cli_expect(y, "{\"event\":\"signed_in\",\"id\":2,\"peers\":[{\"id\":1,\"name\":\"x\","
                  "\"connected\":true}]}");
    cli_expect(x, "{\"event\":\"peer_joined\",\"id\":2,\"name\":\"y%20z\"}");

    /* Text with escapes, then binary. */
    h_proc_send(y, "{\"cmd\":\"send\",\"to\":1,\"data\":\"hello \\\"world\\\"\\n\\u00e9\"}");
    cli_expect(y, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(y, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(x, "{\"event\":\"message\",\"from\":2,\"content_type\":\"text/plain\","
                  "\"data\":\"hello \\\"world\\\"\\n\xc3\xa9\"}");
    h_proc_send(y, "{\"cmd\":\"send\",\"to\":1,\"data_b64\":\"AP8=\","
                "\"content_type\":\"application/octet-stream\"}");
    cli_expect(y, "{\"event\":\"queued\",\"token\":2,\"to\":1}");
    cli_expect(y, "{\"event\":\"sent\",\"token\":2,\"to\":1}");
    cli_expect(x, "{\"event\":\"message\",\"from\":2,\"content_type\":"
                  "\"application/octet-stream\",\"data_b64\":\"AP8=\"}");

    /* Bad input lines are reported, never fatal. */
    h_proc_send(x, "this is not json");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: not a JSON object\"}");
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":true,\"data\":\"x\"}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: \\\"to\\\" must be a peer id "
                  "(a positive integer) or a peer's name\"}");
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":\"nobody\",\"data\":\"x\"}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"no peer named \\\"nobody\\\" (see peers)\"}");
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":2,\"data\":{\"nested\":1}}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: nested objects and arrays "
                  "are not supported\"}");
    h_proc_send(x, "{\"cmd\":\"dance\"}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: unknown \\\"cmd\\\"\"}");
    h_proc_send(x, "");

    /* A message to nobody fails alone. */
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":99,\"data\":\"anyone?\"}");
    cli_expect(x, "{\"event\":\"queued\",\"token\":1,\"to\":99}");
    cli_expect(x, "{\"event\":\"send_failed\",\"token\":1,\"to\":99,\"status\":500,"
                  "\"reason\":\"500 Error: Peer most likely gone.\"}");

    /* Hang-up and the peer list. */
    h_proc_send(x, "{\"cmd\":\"bye\",\"to\":2}");
    cli_expect(x, "{\"event\":\"queued\",\"token\":2,\"to\":2}");
    cli_expect(x, "{\"event\":\"sent\",\"token\":2,\"to\":2}");
    cli_expect(y, "{\"event\":\"hangup\",\"from\":1}");
    h_proc_send(y, "{\"cmd\":\"peers\"}");
    cli_expect(y, "{\"event\":\"peers\",\"peers\":[{\"id\":1,\"name\":\"x\",\"connected\":true}]}");

    /* --autocall: a third CLI calls the lowest id with an offer. */
    const char *za[] = {"--json", "--autocall", "--server", "127.0.0.1", "--port", port,
                        "--name", "z", NULL};
    h_proc_t *z = cli_spawn(za);
    char *line = cli_line(z);
    assert_non_null(strstr(line, "{\"event\":\"signed_in\",\"id\":3,"));
    free(line);
    cli_expect(z, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(z, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(x, "{\"event\":\"peer_joined\",\"id\":3,\"name\":\"z\"}");
    cli_expect(y, "{\"event\":\"peer_joined\",\"id\":3,\"name\":\"z\"}");
    line = cli_line(x);
    if (!strstr(line, "{\"event\":\"message\",\"from\":3,\"content_type\":\"text/plain\","
                      "\"data\":\"{\\\"sdp\\\": \\\"v=0\\\\r\\\\no=- ") ||
        !strstr(line, "\\\", \\\"type\\\": \\\"offer\\\"}\"}"))
        fail_msg("not an offer: %s", line);
    free(line);

    /* EOF on stdin: sign out, report, exit 0; the others see it at once. */
    assert_int_equal(close(z->in_fd), 0);
    z->in_fd = -1;
    cli_expect(z, "{\"event\":\"disconnected\",\"reason\":\"signed out (end of input)\"}");
    assert_int_equal(cli_finish(z, true), 0);
    cli_expect(x, "{\"event\":\"peer_left\",\"id\":3,\"name\":\"z\"}");
    cli_expect(y, "{\"event\":\"peer_left\",\"id\":3,\"name\":\"z\"}");

    /* A send right before EOF still goes out before the sign-out. */
    h_proc_send(y, "{\"cmd\":\"send\",\"to\":1,\"data\":\"last words\"}");
    assert_int_equal(close(y->in_fd), 0);
    y->in_fd = -1;
    cli_expect(y, "{\"event\":\"queued\",\"token\":3,\"to\":1}");
    cli_expect(y, "{\"event\":\"sent\",\"token\":3,\"to\":1}");
    cli_expect(y, "{\"event\":\"disconnected\",\"reason\":\"signed out (end of input)\"}");
    assert_int_equal(cli_finish(y, true), 0);
    cli_expect(x, "{\"event\":\"message\",\"from\":2,\"content_type\":\"text/plain\","
                  "\"data\":\"last words\"}");
    cli_expect(x, "{\"event\":\"peer_left\",\"id\":2,\"name\":\"y%20z\"}");

    /* Signed out behind its back: the lost session is reported before the
     * new sign-in (its ids are void), not just a new signed_in. */
    h_resp_t *r = h_sign_out(&s, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    line = cli_line(x);
    static const char lost[] = "{\"event\":\"session_lost\",\"reason\":\"";
    if (strncmp(line, lost, sizeof lost - 1) != 0)
        fail_msg("CLI printed %s", line);
    free(line);
    cli_expect(x, "{\"event\":\"signed_in\",\"id\":4,\"peers\":[]}");

    h_proc_send(x, "{\"cmd\":\"quit\"}");
    cli_expect(x, "{\"event\":\"disconnected\",\"reason\":\"signed out (quit command)\"}");
    assert_int_equal(cli_finish(x, false), 0);
    h_server_stop(&s);
    h_pass();
}

/* Commands piped before the sign-in completes wait for it; EOF after them
 * still means quit (once they ran). */
static void test_cli_piped(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *a = client(&s, "listener");
    uint64_t ida = signed_in(a, 0);

    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "pipe",
                          NULL};
    h_proc_t *p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"piped 1\"}");
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"piped 2\",\"content_type\":\"text/x\"}");
    close(p->in_fd);
    p->in_fd = -1;
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":2,\"peers\":[{\"id\":1,"
                  "\"name\":\"listener\",\"connected\":true}]}");
    cli_expect(p, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"queued\",\"token\":2,\"to\":1}");
    cli_expect(p, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"sent\",\"token\":2,\"to\":1}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"signed out (end of input)\"}");
    assert_int_equal(cli_finish(p, true), 0);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, "pipe");
    expect_message(a, 2, "text/plain", STRLIT("piped 1"));
    expect_message(a, 2, "text/x", STRLIT("piped 2"));
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, "pipe");
    (void)ida;
    disconnect_clean(a);
    client_free(a);
    h_server_stop(&s);
    h_pass();
}

static void test_cli_options(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "65536", "abc", "-1", "8888x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"--json", "--port", bad[i], NULL};
        h_proc_t *p = cli_spawn_(args, true);
        char err[256];
        size_t n = 0;
        struct pollfd pf = {.fd = p->err_fd, .events = POLLIN};
        while (n < sizeof err - 1 && poll(&pf, 1, T_EVENT_MS) == 1) {
            ssize_t r = read(p->err_fd, err + n, sizeof err - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
        err[n] = '\0';
        char want[128];
        snprintf(want, sizeof want, "Error: %s is not a valid port.\n", bad[i]);
        assert_string_equal(err, want);
        assert_int_equal(cli_finish(p, true), 2);
    }
    const char *help[] = {"--help", NULL};
    h_proc_t *p = cli_spawn(help);
    char *line = cli_line(p);
    assert_non_null(strstr(line, "usage: pcsig-client"));
    free(line);
    assert_int_equal(cli_finish(p, true), 0);
    const char *unknown[] = {"--bogus", NULL};
    p = cli_spawn(unknown);
    assert_int_equal(cli_finish(p, true), 2);
    h_pass();
}

/* --json with nobody listening: a quit or EOF before the sign-in ends the
 * CLI at once (it used to wait for a sign-in that never came); commands
 * held for the sign-in are then reported as not sent, and the status is 1. */
static void test_cli_quit_before_sign_in(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f);
    close(f.lfd); /* the port now refuses */
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)f.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "early",
                          "--log-level", "error", NULL};

    /* quit, stdin left open: status 0. */
    h_proc_t *p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"quit\"}");
    cli_expect_after(p, UNREACHABLE_EV, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (quit command)\"}");
    assert_int_equal(cli_finish(p, false), 0);

    /* EOF with nothing typed: status 0. */
    p = cli_spawn(args);
    close(p->in_fd);
    p->in_fd = -1;
    cli_expect_after(p, UNREACHABLE_EV, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (end of input)\"}");
    assert_int_equal(cli_finish(p, true), 0);

    /* A send held for the sign-in, then EOF: the failed sign-in is shown,
     * the send reported as not sent, status 1. */
    p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"lost\"}");
    close(p->in_fd);
    p->in_fd = -1;
    char *line = cli_line(p);
    static const char failed[] = UNREACHABLE_EV "\"reason\":\"sign-in: connect: ";
    if (strncmp(line, failed, sizeof failed - 1) != 0)
        fail_msg("CLI printed %s", line);
    free(line);
    cli_expect_after(p, UNREACHABLE_EV,
                     "{\"event\":\"error\",\"reason\":\"cannot send: not signed in\"}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (end of input)\"}");
    assert_int_equal(cli_finish(p, true), 1);

    /* The same with quit; what follows the quit is not read. */
    p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"bye\",\"to\":1}");
    h_proc_send(p, "{\"cmd\":\"quit\"}");
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"after quit\"}");
    cli_expect_after(p, UNREACHABLE_EV,
                     "{\"event\":\"error\",\"reason\":\"cannot send: not signed in\"}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (quit command)\"}");
    assert_int_equal(cli_finish(p, false), 1);
    h_pass();
}

/* A quit piped right after commands (before the sign-in completes) still
 * runs them first, as EOF does (test_cli_piped), with stdin left open. */
static void test_cli_quit_after_held(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *a = client(&s, "listener");
    signed_in(a, 0);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "q",
                          NULL};
    h_proc_t *p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"then quit\"}");
    h_proc_send(p, "{\"cmd\":\"quit\"}");
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":2,\"peers\":[{\"id\":1,"
                  "\"name\":\"listener\",\"connected\":true}]}");
    cli_expect(p, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"signed out (quit command)\"}");
    assert_int_equal(cli_finish(p, false), 0);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, "q");
    expect_message(a, 2, "text/plain", STRLIT("then quit"));
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, "q");
    disconnect_clean(a);
    client_free(a);
    h_server_stop(&s);
    h_pass();
}

/* The stock client's defaults: the server from $WEBRTC_SERVER, the name
 * $USERNAME@hostname (as the server lists it: URL-safe); interactive mode
 * connects on "connect", or at start with --autoconnect. */
static void test_cli_defaults_and_autoconnect(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *a = client(&s, "listener");
    signed_in(a, 0);

    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';
    buf_t want_name;
    buf_init(&want_name, 4096);
    assert_int_equal(buf_append_str(&want_name, "pcsig-tester@"), 0);
    for (const unsigned char *h = (const unsigned char *)host; *h; h++) {
        bool safe = (*h >= 'A' && *h <= 'Z') || (*h >= 'a' && *h <= 'z') ||
                    (*h >= '0' && *h <= '9') || strchr("-._~@", *h);
        assert_int_equal(safe ? buf_append(&want_name, h, 1)
                              : buf_printf(&want_name, "%%%02X", *h), 0);
    }
    assert_int_equal(buf_append(&want_name, "", 1), 0);
    const char *env[] = {"WEBRTC_SERVER=127.0.0.1", "USERNAME=pcsig-tester", NULL};
    char want[128];

    /* Without --autoconnect: nothing until "connect". */
    const char *args[] = {"--port", port, NULL};
    h_proc_t *p = cli_spawn_env(args, false, env);
    expect_quiet(a, T_QUIET_MS);
    h_proc_send(p, "connect");
    snprintf(want, sizeof want, "connecting to 127.0.0.1:%s ...", port);
    cli_expect(p, want);
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 2; 1 peer(s)", port);
    cli_expect(p, want);
    cli_expect(p, "  1 \"listener\"");
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, want_name.data);
    h_proc_send(p, "quit");
    cli_expect(p, "disconnected: \"signed out (quit command)\"");
    assert_int_equal(cli_finish(p, false), 0);
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, want_name.data);

    /* --autoconnect: at once. */
    const char *auto_args[] = {"--autoconnect", "--port", port, NULL};
    p = cli_spawn_env(auto_args, false, env);
    snprintf(want, sizeof want, "connecting to 127.0.0.1:%s ...", port);
    cli_expect(p, want);
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 3; 1 peer(s)", port);
    cli_expect(p, want);
    cli_expect(p, "  1 \"listener\"");
    expect_peer(a, PCSIG_EV_PEER_JOINED, 3, want_name.data);
    assert_int_equal(cli_finish(p, true), 0);
    expect_peer(a, PCSIG_EV_PEER_LEFT, 3, want_name.data);
    buf_free(&want_name);
    disconnect_clean(a);
    client_free(a);
    h_server_stop(&s);
    h_pass();
}

/* Interactive commands take a peer's name as well as its id; an ambiguous
 * name lists the candidates, an unknown one says so, and "send ID" with
 * no text is refused instead of sending an empty message. */
static void test_cli_peer_names(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *bob = client(&s, "bob");
    uint64_t idb = signed_in(bob, 0);
    pcsig_client_t *t1 = client(&s, "twin");
    uint64_t idt1 = signed_in(t1, 1);
    pcsig_client_t *t2 = client(&s, "twin");
    uint64_t idt2 = signed_in(t2, 2);
    const char *args[] = {"--autoconnect", "--server", "127.0.0.1", "--port", port, "--name",
                          "me", NULL};
    h_proc_t *p = cli_spawn(args);
    char want[256];
    snprintf(want, sizeof want, "connecting to 127.0.0.1:%s ...", port);
    cli_expect(p, want);
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 4; 3 peer(s)", port);
    cli_expect(p, want);
    cli_expect(p, "  1 \"bob\"");
    cli_expect(p, "  2 \"twin\"");
    cli_expect(p, "  3 \"twin\"");

    h_proc_send(p, "send bob hi bob");
    cli_expect(p, "sent #1 to 1");
    struct pcsig_event *ev = await_ev(bob, PCSIG_EV_MESSAGE, 1u << PCSIG_EV_PEER_JOINED);
    assert_int_equal(ev->len, 6);
    assert_memory_equal(ev->data, "hi bob", 6);
    pcsig_event_free(ev);
    h_proc_send(p, "send twin hello");
    snprintf(want, sizeof want, "error: \"twin\" names 2 peers: %" PRIu64 ", %" PRIu64
             "; use the id", idt1, idt2);
    cli_expect(p, want);
    h_proc_send(p, "call nobody");
    cli_expect(p, "error: no peer named \"nobody\" (see peers)");
    h_proc_send(p, "send 1");
    cli_expect(p, "error: usage: send PEER TEXT: no text to send");
    h_proc_send(p, "send bob   ");
    cli_expect(p, "error: usage: send PEER TEXT: no text to send");
    h_proc_send(p, "send");
    cli_expect(p, "error: usage: send PEER TEXT: PEER is an id or a name from peers");
    h_proc_send(p, "send 3 to the second twin");
    cli_expect(p, "sent #2 to 3");
    ev = await_ev(t2, PCSIG_EV_MESSAGE, 1u << PCSIG_EV_PEER_JOINED);
    assert_int_equal(ev->peer_id, 4);
    assert_int_equal(ev->len, 18);
    assert_memory_equal(ev->data, "to the second twin", 18);
    pcsig_event_free(ev);
    h_proc_send(p, "bye bob");
    cli_expect(p, "sent #3 to 1");
    /* bob got exactly "hi bob" and the hang-up: no empty message between. */
    pcsig_event_free(expect_ev(bob, PCSIG_EV_PEER_HANGUP));
    assert_int_equal(cli_finish(p, true), 0);
    (void)idb;
    client_free(t1);
    client_free(t2);
    client_free(bob);
    h_server_stop(&s);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_cli_json),
        T_TEST(test_cli_piped),
        T_TEST(test_cli_options),
        T_TEST(test_cli_quit_before_sign_in),
        T_TEST(test_cli_quit_after_held),
        T_TEST(test_cli_defaults_and_autoconnect),
        T_TEST(test_cli_peer_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
