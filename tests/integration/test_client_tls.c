/*
 * Integration: the client's TLS failures. A server whose CA the client does
 * not trust (one clear fatal error; --insecure connects after a warning),
 * and mutual TLS: no client certificate, or one of another CA, is refused
 * with one clear line (library and CLI); the right certificate signs in.
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

static int insecure_warnings; /* records of the insecure-mode warning seen by the sink */

static void count_insecure_warning(void *arg, const char *rec, size_t len)
{
    (void)arg;
    if (memmem(rec, len, STRLIT("WARN")) && memmem(rec, len, STRLIT("NOT verified")))
        insecure_warnings++;
}

/* A TLS server: the harness's in TLS mode; else one with make test's
 * certificate (PCSIG_TEST_CERTS) or, without it, one made here. Every TLS
 * case of this file starts its own TLS server, so make test runs it plain
 * only (not in ITEST_TLS). */
static void start_tls_server(h_server_t *s)
{
    if (h_tls_mode()) {
        h_server_start(s, NULL);
        return;
    }
    static struct certs k; /* outlives a failure: the teardown removes it */
    const char *d = getenv("PCSIG_TEST_CERTS");
    char cert[192], key[192];
    if (!d || !*d) {
        certs_make(&k);
        d = k.a;
    }
    snprintf(cert, sizeof cert, "%s/server.pem", d);
    snprintf(key, sizeof key, "%s/server.key", d);
    h_server_start(s, "--tls-cert", cert, "--tls-key", key, NULL);
}

/* A client that does not trust the server's CA gets one clear fatal error;
 * --insecure connects anyway, after a loud warning. */
static void test_tls_untrusted_server(void **state)
{
    (void)state;
    h_server_t s;
    start_tls_server(&s);
    assert_true(s.ready_tls);
    struct pcsig_client_options o = {
        .server = "127.0.0.1", .port = s.port, .name = "doubter", .tls = true,
        .ca_file = "/dev/null", /* trusts nothing */
    };
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    if (pcsig_client_setup_error(c) == NULL) {
        assert_int_equal(pcsig_client_connect(c), 0);
        struct pcsig_event *ev = await_ev(c, PCSIG_EV_DISCONNECTED, 0);
        assert_non_null(ev->reason);
        if (!strstr(ev->reason, "certificate verify failed"))
            fail_msg("unclear reason: %s", ev->reason);
        pcsig_event_free(ev);
    }
    pcsig_client_free(c);

    o.ca_file = NULL;
    o.insecure = true;
    insecure_warnings = 0;
    assert_int_equal(log_set_sink(count_insecure_warning, NULL), 0);
    c = pcsig_client_new(&o);
    assert_int_equal(log_set_sink(NULL, NULL), 0);
    if (insecure_warnings != 1)
        fail_msg("--insecure was logged %d times, not once at warn level", insecure_warnings);
    assert_non_null(c);
    assert_null(pcsig_client_setup_error(c));
    assert_int_equal(pcsig_client_connect(c), 0);
    struct pcsig_event *ev = await_ev(c, PCSIG_EV_SIGNED_IN, 0);
    pcsig_event_free(ev);
    pcsig_client_disconnect(c);
    pcsig_client_free(c);
    assert_int_equal(h_server_stop(&s), 0);
    certs_cleanup();
    h_pass();
}

/* A mutual-TLS client (cert NULL: none) with fast retries; not started. */
static pcsig_client_t *mtls_client(uint16_t port, const char *ca, const char *cert,
                                   const char *key)
{
    struct pcsig_client_options o = {
        .server = "127.0.0.1", .port = port, .name = "mtls", .tls = true, .ca_file = ca,
        .cert_file = cert, .key_file = key, .reconnect_min_ms = 50, .reconnect_max_ms = 400,
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

/* A server that requires client certificates: no certificate, or one of
 * another CA, ends the session with one clear line naming the server's
 * refusal (with TLS 1.3 it arrives as an alert on the first read, after our
 * side of the handshake is done) instead of retrying forever; the CLI
 * prints it and exits 1. The right certificate signs in. */
static void test_tls_client_cert_refused(void **state)
{
    (void)state;
    static struct certs k; /* outlives a failure: the teardown removes it */
    certs_make(&k);
    h_server_t s;
    /* TLS mode: the harness gives the server its certificate; else ours. */
    if (h_tls_mode())
        h_server_start(&s, "--tls-client-ca", cert_in(&k, 0, k.a, "ca.pem"), NULL);
    else
        h_server_start(&s, "--tls-cert", cert_in(&k, 0, k.a, "server.pem"), "--tls-key",
                       cert_in(&k, 1, k.a, "server.key"), "--tls-client-ca",
                       cert_in(&k, 2, k.a, "ca.pem"), NULL);
    const char *server_ca = h_tls_mode() ? h_tls_ca() : k.path[2];

    struct {
        const char *cert, *key, *alert;
    } refused[] = {
        {NULL, NULL, "alert certificate required"},
        {cert_in(&k, 3, k.b, "client.pem"), cert_in(&k, 4, k.b, "client.key"), "alert unknown ca"},
    };
    for (size_t i = 0; i < 2; i++) {
        pcsig_client_t *c = mtls_client(s.port, server_ca, refused[i].cert, refused[i].key);
        struct pcsig_event *ev = await_ev(c, PCSIG_EV_DISCONNECTED, SKIP_NOISE);
        assert_non_null(ev->reason);
        if (!strstr(ev->reason, "sign-in: TLS: the server refused the connection: ") ||
            !strstr(ev->reason, refused[i].alert) || strchr(ev->reason, '\n'))
            fail_msg("unclear reason: %s", ev->reason);
        pcsig_event_free(ev);
        expect_quiet(c, T_QUIET_MS); /* it stopped: no more attempts */
        client_free(c);
    }

    /* The CLI: the same line, and exit status 1 (stdin still open). */
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--log-level",
                          "error", "--tls", "--ca", server_ca, NULL};
    h_proc_t *p = cli_spawn_(args, true);
    char *line = cli_line(p);
    /* (A reset that hid the alert is retried once it was reported.) */
    for (int i = 0; i < 20 && strncmp(line, UNREACHABLE_EV, strlen(UNREACHABLE_EV)) == 0; i++) {
        free(line);
        line = cli_line(p);
    }
    if (!strstr(line, "{\"event\":\"disconnected\",\"reason\":\"sign-in: TLS: the server "
                      "refused the connection: ") ||
        !strstr(line, "alert certificate required\"}"))
        fail_msg("CLI printed %s", line);
    free(line);
    assert_int_equal(cli_finish(p, false), 1);

    /* The right certificate: signed in. */
    pcsig_client_t *c = mtls_client(s.port, server_ca, cert_in(&k, 3, k.a, "client.pem"),
                                    cert_in(&k, 4, k.a, "client.key"));
    pcsig_event_free(expect_ev(c, PCSIG_EV_SIGNED_IN));
    disconnect_clean(c);
    client_free(c);
    assert_int_equal(h_server_stop(&s), 0);
    certs_cleanup();
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_tls_untrusted_server),
        T_TEST(test_tls_client_cert_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
