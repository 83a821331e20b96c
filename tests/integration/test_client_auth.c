/*
 * Integration: a server run with --auth-token-file; the library and the CLI
 * sign in with the token, a wrong or missing token is one clear fatal
 * error, and the token appears in no log record.
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

#define T_TOKEN "s3cret-Token_42"

/* Log records (from every thread) collected while a sink is set. */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;

static buf_t seen_logs;

static void collect_logs(void *arg, const char *rec, size_t len)
{
    (void)arg;
    pthread_mutex_lock(&seen_mu);
    (void)buf_append(&seen_logs, rec, len);
    pthread_mutex_unlock(&seen_mu);
}

static pcsig_client_t *token_client(uint16_t port, const char *name, const char *token)
{
    struct pcsig_client_options o = {
        .server = "127.0.0.1", .port = port, .name = name,
        .reconnect_min_ms = 50, .reconnect_max_ms = 400,
        .tls = h_tls_mode(), .ca_file = h_tls_mode() ? h_tls_ca() : NULL,
        .auth_token = token,
    };
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    assert_null(pcsig_client_setup_error(c));
    size_t i = 0;
    while (i < T_MAX_CLIENTS && clients[i])
        i++;
    assert_true(i < T_MAX_CLIENTS);
    clients[i] = c;
    assert_int_equal(pcsig_client_connect(c), 0);
    return c;
}

/* A server run with --auth-token-file: library and CLI sign in with the
 * token and relay; a wrong or missing token is one clear fatal error; the
 * token appears in no log record, debug level included. */
static void test_auth_token(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-token-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/tokens", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "other-token\n" T_TOKEN "\n");
    fclose(f);
    h_server_t s;
    h_server_start(&s, "--auth-token-file", path, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);

    /* Without a token: the server's 401, and what to do about it. */
    pcsig_client_t *none = client(&s, "none");
    struct pcsig_event *ev = expect_ev(none, PCSIG_EV_DISCONNECTED);
    if (!strstr(ev->reason, "401") || !strstr(ev->reason, "--auth-token"))
        fail_msg("reason \"%s\"", ev->reason);
    pcsig_event_free(ev);
    client_free(none);

    /* A wrong token: fatal, and says the token was refused. */
    pcsig_client_t *wrong = token_client(s.port, "wrong", "not-" T_TOKEN);
    ev = expect_ev(wrong, PCSIG_EV_DISCONNECTED);
    if (!strstr(ev->reason, "401") || !strstr(ev->reason, "auth token was not accepted"))
        fail_msg("reason \"%s\"", ev->reason);
    pcsig_event_free(ev);
    client_free(wrong);

    /* The right one (the file's second line), everything logged. */
    buf_init(&seen_logs, 1 << 24);
    log_set_level(LOG_DEBUG);
    assert_int_equal(log_set_sink(collect_logs, NULL), 0);
    pcsig_client_t *a = token_client(s.port, "a", T_TOKEN);
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = token_client(s.port, "b", T_TOKEN);
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "b");
    relay(a, ida, b, idb, "with a token");
    relay(b, idb, a, ida, "back");
    disconnect_clean(b);
    client_free(b);
    expect_peer(a, PCSIG_EV_PEER_LEFT, idb, "b");

    /* The CLI: --auth-token-file, and $PCSIG_AUTH_TOKEN; stderr at debug. */
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "cli",
                          "--auth-token-file", path, "--log-level", "debug", NULL};
    h_proc_t *p = cli_spawn_(args, true);
    uint64_t idc = ida + 2;
    char want[256];
    snprintf(want, sizeof want, "{\"event\":\"signed_in\",\"id\":%" PRIu64 ",\"peers\":"
             "[{\"id\":%" PRIu64 ",\"name\":\"a\",\"connected\":true}]}", idc, ida);
    /* The file's first line is "other-token": also valid on the server. */
    cli_expect(p, want);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idc, "cli");
    snprintf(want, sizeof want, "{\"cmd\":\"send\",\"to\":%" PRIu64 ",\"data\":\"from cli\"}", ida);
    h_proc_send(p, want);
    expect_message(a, idc, "text/plain", STRLIT("from cli"));
    assert_int_equal(close(p->in_fd), 0);
    p->in_fd = -1;
    char *err = cli_all_stderr(p);
    assert_int_equal(cli_finish(p, true), 0);
    if (strstr(err, "other-token") || strstr(err, T_TOKEN))
        fail_msg("the CLI logged the token: %s", err);
    assert_non_null(strstr(err, "DEBUG")); /* debug records were written */
    free(err);
    expect_peer(a, PCSIG_EV_PEER_LEFT, idc, "cli");

    const char *env[] = {"PCSIG_AUTH_TOKEN=" T_TOKEN, NULL};
    const char *eargs[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "env",
                           "--log-level", "debug", NULL};
    p = cli_spawn_env(eargs, true, env);
    char *line = cli_line(p);
    assert_non_null(strstr(line, "{\"event\":\"signed_in\","));
    free(line);
    assert_int_equal(close(p->in_fd), 0);
    p->in_fd = -1;
    err = cli_all_stderr(p);
    assert_int_equal(cli_finish(p, true), 0);
    if (strstr(err, T_TOKEN))
        fail_msg("the CLI logged the token: %s", err);
    free(err);
    pcsig_event_free(await_ev(a, PCSIG_EV_PEER_LEFT, 1u << PCSIG_EV_PEER_JOINED));

    /* A wrong token on the command line: exit 1 with the reason. */
    const char *wargs[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "w",
                           "--auth-token", "wrong", NULL};
    p = cli_spawn(wargs);
    line = cli_line(p);
    if (!strstr(line, "{\"event\":\"disconnected\",\"reason\":\"sign-in refused: 401 ") ||
        !strstr(line, "auth token was not accepted"))
        fail_msg("CLI printed %s", line);
    free(line);
    assert_int_equal(cli_finish(p, false), 1);
    /* Both flags, or a token with a space: usage errors. */
    const char *both[] = {"--auth-token", "x", "--auth-token-file", path, NULL};
    assert_int_equal(cli_finish(cli_spawn_(both, true), true), 2);
    const char *space[] = {"--auth-token", "a b", NULL};
    assert_int_equal(cli_finish(cli_spawn_(space, true), true), 2);

    disconnect_clean(a);
    client_free(a);
    assert_int_equal(log_set_sink(NULL, NULL), 0);
    log_set_level(LOG_WARN);
    pthread_mutex_lock(&seen_mu);
    assert_int_equal(buf_append(&seen_logs, "", 1), 0);
    assert_non_null(strstr(seen_logs.data, "signed in as")); /* debug records came */
    if (strstr(seen_logs.data, T_TOKEN))
        fail_msg("the library logged the token: %s", seen_logs.data);
    buf_free(&seen_logs);
    pthread_mutex_unlock(&seen_mu);
    h_server_stop(&s);
    unlink(path);
    rmdir(dir);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_auth_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
