/*
 * pcsig-client on a terminal (a pty): the command line is edited with
 * libedit. History (Up recalls the last line, Ctrl-R searches), cursor keys
 * (Left moves, typing inserts there), and an event that arrives while a
 * line is half typed leaves that line intact. Every wait is for something
 * the terminal shows, with a deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_util.h"
#include "strlit.h"


/* Read the terminal until what it showed since `from` contains needle;
 * returns the offset just after it. */
#define await_shown(p, from, needle) (pty_await((p), (from), (needle)) + strlen(needle))

static void type(h_proc_t *p, const char *keys)
{
    size_t n = strlen(keys);
    assert_int_equal(write(p->in_fd, keys, n), (ssize_t)n);
}

/* Signed in as the only member, at the prompt: the offset after it. */
static size_t start(h_server_t *s, h_proc_t **pp, const char *name)
{
    h_server_start(s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s->port);
    const char *args[] = {"--server", "127.0.0.1", "--port", port, "--name", name,
                          "--autoconnect", NULL};
    *pp = cli_spawn_pty(args);
    char want[128];
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 1; 0 peer(s)\r\n", port);
    return await_shown(*pp, 0, want);
}

static void quit(h_proc_t *p, size_t at)
{
    type(p, "quit\r");
    await_shown(p, at, "disconnected: \"signed out (quit command)\"");
    assert_int_equal(h_proc_exit(p, T_EVENT_MS), 0);
}

static void test_history_keys(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* the terminal side only: the same over TLS */
    h_server_t s;
    h_proc_t *p;
    size_t at = start(&s, &p, "ed");

    type(p, "help\r");
    at = await_shown(p, at, "commands: connect");
    /* Up recalls "help" (the old reader ignored the arrow: an empty line). */
    type(p, "\033[A\r");
    at = await_shown(p, at, "commands: connect");
    /* Ctrl-R searches the history: "hel" finds "help" again. */
    type(p, "\022hel\r");
    at = await_shown(p, at, "commands: connect");
    quit(p, at);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_cursor_keys(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip();
    h_server_t s;
    h_proc_t *p;
    size_t at = start(&s, &p, "ed");

    /* "pers", two to the left, "e": "peers" (the old reader appended the
     * "e": "perse", an unknown command). */
    type(p, "pers\033[D\033[De\r");
    at = await_shown(p, at, "no peers");
    /* Home (Ctrl-A) and insert: "eers" -> "peers". */
    type(p, "eers\001p\r");
    at = await_shown(p, at, "no peers");
    quit(p, at);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* A peer joins while a line is half typed: the event is printed on a line
 * of its own, and the half-typed line is drawn again under it, still
 * editable (finished after the event, it runs as typed). */
static void test_event_during_typing(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip();
    h_server_t s;
    h_proc_t *p;
    size_t at = start(&s, &p, "ed");

    type(p, "pee");
    at = await_shown(p, at, "pee");
    uint64_t bob = h_sign_in(&s, "bob");
    assert_int_equal(bob, 2);
    at = await_shown(p, at, "\r\033[Kpeer 2 \"bob\" joined\r\n");
    at = await_shown(p, at, "> pee");
    type(p, "rs\r");
    at = await_shown(p, at, "  2 \"bob\"");
    quit(p, at);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_history_keys),
        H_TEST(test_cursor_keys),
        H_TEST(test_event_during_typing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
