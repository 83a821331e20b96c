/*
 * TLS end to end: the real server with --tls-cert/--tls-key (and mutual TLS),
 * driven through the common TLS connection layer as a client would: a full
 * relay, resumption, mutual TLS accepted and refused, hostname mismatch,
 * unknown CA, expired certificate, plain<->TLS port mismatches, a stalled
 * handshake, readable 503/429 refusals over TLS (bounded), and SIGHUP
 * reloads (good and bad files) under a relaying load with nothing lost.
 * Certificates are generated per run by certs/gen-certs.sh into a temp dir.
 */
#include "harness.h"
#include "strlit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "conn.h"
#include "net.h"
#include "tls.h"

extern char **environ;

/* server.c's TLS_REFUSALS_MAX: TLS refusals (503/429) answered at once. */
#define SERVER_TLS_REFUSALS_MAX 32

static char dir[64];       /* CA "a": ca, server, client, expired */
static char other_dir[64]; /* CA "b": a client certificate nobody trusts */
static char path_buf[8][256];
static int path_next;

/* dir + "/" + name, in a small ring of buffers (valid for a few calls). */
static const char *in(const char *d, const char *name)
{
    char *p = path_buf[path_next++ % 8];
    snprintf(p, sizeof path_buf[0], "%s/%s", d, name);
    return p;
}

static int run_sh(const char *cmd)
{
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pcsig-tls-XXXXXX");
    snprintf(other_dir, sizeof other_dir, "/tmp/pcsig-tls-XXXXXX");
    if (!mkdtemp(dir) || !mkdtemp(other_dir))
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "certs/gen-certs.sh --force %s >/dev/null && certs/gen-certs.sh --expired %s >/dev/null"
             " && certs/gen-certs.sh --force %s >/dev/null",
             dir, dir, other_dir);
    return run_sh(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, other_dir);
    return run_sh(cmd) == 0 ? 0 : -1;
}

static tls_client_t *client_ctx(const char *ca, const char *cert, const char *key)
{
    struct tls_client_options o = {.ca_file = ca, .cert_file = cert, .key_file = key};
    tls_client_t *t = NULL;
    char err[256] = "";
    if (tls_client_new(&o, &t, err, sizeof err) < 0)
        fail_msg("tls_client_new: %s", err);
    return t;
}

/* Connect to port and handshake: the conn, or NULL with the reason in why
 * and *handshaking telling whether it got as far as the handshake. Asserts
 * nothing (the load thread uses it). */
static conn_t *tls_connect(uint16_t port, tls_client_t *t, const char *host, char *why,
                           size_t why_len, bool *handshaking)
{
    *handshaking = false;
    int fd = net_connect("127.0.0.1", port, H_TIMEOUT_MS);
    if (fd < 0) {
        snprintf(why, why_len, "connect: errno %d", -fd);
        return NULL;
    }
    conn_t *c = tls_client_wrap(t, fd, host);
    if (!c) {
        snprintf(why, why_len, "tls_client_wrap: errno %d", errno);
        close(fd);
        return NULL;
    }
    *handshaking = true;
    if (conn_handshake_timed(c, H_TIMEOUT_MS) < 0) {
        snprintf(why, why_len, "%s", conn_error(c)[0] ? conn_error(c) : "handshake failed");
        conn_close(c);
        return NULL;
    }
    return c;
}

static conn_t *tls_try_open(uint16_t port, tls_client_t *t, const char *host, char *why,
                            size_t why_len)
{
    bool handshaking;
    return tls_connect(port, t, host, why, why_len, &handshaking);
}

/* The same, failing the test unless the handshake at least began: NULL
 * means the handshake failed, why says why. */
static conn_t *tls_open_port(uint16_t port, tls_client_t *t, const char *host, char *why,
                             size_t why_len)
{
    bool handshaking;
    conn_t *c = tls_connect(port, t, host, why, why_len, &handshaking);
    if (!c && !handshaking)
        fail_msg("TLS connection to port %u: %s", (unsigned)port, why);
    return c;
}

static conn_t *tls_open(const h_server_t *s, tls_client_t *t, const char *host, char *why,
                        size_t why_len)
{
    return tls_open_port(s->port, t, host, why, why_len);
}

/* The server's first answer after a handshake that looked fine to us: with
 * TLS 1.3 a refused client certificate only shows up on the first read. */
static ssize_t read_response(conn_t *c, char *out, size_t cap);

static ssize_t tls_roundtrip(conn_t *c, const char *req, char *out, size_t cap)
{
    if (conn_write_all_timed(c, req, strlen(req), H_TIMEOUT_MS) < 0)
        return -1;
    return read_response(c, out, cap);
}

/* One complete response (head and Content-Length body) into out: its
 * length, or -1 (timeout, EOF first, or malformed). */
static ssize_t read_response(conn_t *c, char *out, size_t cap)
{
    size_t got = 0;
    http_limits_t lim = {.max_head = 65536, .max_body = 1 << 20};
    for (;;) {
        ssize_t n = conn_read_timed(c, out + got, cap - got - 1, H_TIMEOUT_MS);
        if (n <= 0)
            return got ? (ssize_t)got : -1;
        got += (size_t)n;
        out[got] = '\0';
        http_response_t r;
        http_error_t e;
        long head = http_parse_response(out, got, &lim, &r, &e);
        if (head < 0)
            return -1;
        if (head > 0 && got - (size_t)head >= r.content_length)
            return (ssize_t)got;
    }
}

/* Body of the single response in raw (after the blank line). */
static const char *body_of(const char *raw)
{
    const char *p = strstr(raw, "\r\n\r\n");
    return p ? p + 4 : "";
}

static void start_tls_server(h_server_t *s, const char *client_ca)
{
    if (client_ca)
        h_server_start(s, "--tls-cert", in(dir, "server.pem"), "--tls-key", in(dir, "server.key"),
                       "--tls-client-ca", client_ca, (char *)NULL);
    else
        h_server_start(s, "--tls-cert", in(dir, "server.pem"), "--tls-key", in(dir, "server.key"),
                       (char *)NULL);
}

/* ---- a server with --tls-port, spawned here ------------------------------ */

/*
 * The harness reads exactly one ready line, and --tls-port makes the server
 * print a second ("... on TLS port N"): servers with both listeners are
 * spawned here. Their stderr always goes to a log file (SIGHUP results are
 * awaited in it; it is printed when a test fails), and own_teardown kills
 * one that a failed test left running.
 */
typedef struct own_server {
    pid_t pid; /* 0: none */
    int pidfd;
    uint16_t port, tls_port;
    char log_path[128];
} own_server_t;

static own_server_t own;


/* The number after prefix at the start of a line of text, or 0. */
static uint16_t ready_port(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        size_t pl = strlen(prefix);
        if (strncmp(p, prefix, pl) != 0)
            continue;
        unsigned long v = 0;
        size_t nd = 0;
        for (p += pl; p[nd] >= '0' && p[nd] <= '9' && nd < 6; nd++)
            v = v * 10 + (unsigned long)(p[nd] - '0');
        return nd && p[nd] == '\n' && v > 0 && v <= 65535 ? (uint16_t)v : 0;
    }
    return 0;
}

/* Start the server on 127.0.0.1, port 0 plain and --tls-port 0, with our
 * certificate and the NULL-terminated extra arguments; returns when both
 * ready lines are out. */
static void own_start(const char *cert, const char *key, ...)
{
    assert_int_equal(own.pid, 0);
    const char *bin = getenv("PCSIG_SERVER") ? getenv("PCSIG_SERVER") : "build/pcsig-server";
    const char *argv[40] = {bin, "--bind", "127.0.0.1", "--port", "0", "--tls-port", "0",
                            "--tls-cert", cert, "--tls-key", key};
    size_t argc = 11;
    va_list ap;
    va_start(ap, key);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 39)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    snprintf(own.log_path, sizeof own.log_path, "/tmp/pcsig-test_tls-own-%d.log", (int)getpid());
    int log_fd = open(own.log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int pfd[2];
    assert_true(log_fd >= 0);
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &fa, &attr, (char *const *)argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    close(log_fd);
    if (rc != 0)
        fail_msg("cannot spawn %s: errno %d (set PCSIG_SERVER)", bin, rc);
    own.pid = pid;
    own.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    assert_true(own.pidfd >= 0);

    char out[512];
    size_t len = 0;
    uint64_t deadline = h_now_ms() + H_START_TIMEOUT_MS;
    while (!ready_port(out, "pcsig-server listening on TLS port ")) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, h_ms_left(deadline)) <= 0)
            fail_msg("no ready lines within %d ms (log %s)", H_START_TIMEOUT_MS, own.log_path);
        ssize_t n = read(pfd[0], out + len, sizeof out - 1 - len);
        if (n <= 0)
            fail_msg("server exited before its ready lines (log %s)", own.log_path);
        len += (size_t)n;
        out[len] = '\0';
    }
    close(pfd[0]); /* it writes nothing more to stdout */
    own.port = ready_port(out, "pcsig-server listening on port ");
    own.tls_port = ready_port(out, "pcsig-server listening on TLS port ");
    assert_true(own.port != 0);
}

/* SIGTERM and await the exit: its status (128+signal when killed). */
static int own_stop(void)
{
    assert_true(own.pid > 0);
    kill(own.pid, SIGTERM);
    struct pollfd p = {.fd = own.pidfd, .events = POLLIN};
    if (poll(&p, 1, H_STOP_TIMEOUT_MS) <= 0)
        fail_msg("server did not exit within %d ms of SIGTERM", H_STOP_TIMEOUT_MS);
    int st = 0;
    assert_int_equal(waitpid(own.pid, &st, 0), own.pid);
    close(own.pidfd);
    own.pid = 0;
    unlink(own.log_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* After a test: a server still running means it failed; show the log. */
static int own_teardown(void **state)
{
    if (own.pid > 0) {
        fprintf(stderr, "---- server log: %s\n", own.log_path);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "tail -n 40 %s >&2", own.log_path);
        (void)system(cmd);
        kill(own.pid, SIGKILL);
        waitpid(own.pid, NULL, 0);
        close(own.pidfd);
        own.pid = 0;
        unlink(own.log_path);
    }
    return h_teardown(state);
}

#define OWN_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, own_teardown)

/* Await a line containing needle in the own server's log, written after
 * offset bytes (inotify: no timer). False when it did not come within ms. */
static bool await_log(const char *needle, size_t offset, int ms)
{
    return h_await_log(own.log_path, offset, needle, 1, ms);
}

/* How long the own server's log is now (where to look for what comes next). */
static size_t log_size(void)
{
    struct stat st;
    return stat(own.log_path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Everything the server sends until it closes (EOF, or a reset after its
 * last bytes): the byte count, or -1 when it does not close in time. */
static ssize_t read_to_close(conn_t *c, char *out, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = conn_read_timed(c, out + got, cap - got - 1, H_TIMEOUT_MS);
        if (n == -ETIMEDOUT)
            return -1;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == cap - 1)
            break;
    }
    out[got] = '\0';
    return (ssize_t)got;
}

static void test_relay_over_tls_and_resumption(void **state)
{
    (void)state;
    h_server_t s;
    start_tls_server(&s, NULL);
    /* A TLS-only port says so in its ready line and its log record. */
    assert_true(s.ready_tls);
    assert_true(h_await_log(s.log_path, 0, "listening on 127.0.0.1 TLS port ", 1, H_TIMEOUT_MS));
    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    char why[256], out[4096];

    conn_t *a = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(a);
    assert_true(a->secure);
    assert_true(tls_roundtrip(a, "GET /sign_in?alice HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_non_null(strstr(out, "HTTP/1.1 200 Added\r\n"));
    assert_string_equal(body_of(out), "alice,1,1\n");
    conn_close(a);

    /* The session ticket of the first connection resumes the second. */
    conn_t *b = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(b);
    assert_true(b->resumed);
    assert_true(tls_roundtrip(b, "GET /sign_in?bob HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_string_equal(body_of(out), "bob,2,1\nalice,1,1\n");
    conn_close(b);

    /* alice: join notice, then a parked wait that receives bob's message. */
    conn_t *w = tls_open(&s, t, "127.0.0.1", why, sizeof why);
    assert_non_null(w);
    assert_true(tls_roundtrip(w, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out) > 0);
    assert_non_null(strstr(out, "\r\nPragma: 1\r\n"));
    assert_string_equal(body_of(out), "bob,2,1\n");
    const char *wait = "GET /wait?peer_id=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(conn_write_all_timed(w, wait, strlen(wait), H_TIMEOUT_MS), 0);

    conn_t *m = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(m);
    assert_true(tls_roundtrip(m, "POST /message?peer_id=2&to=1 HTTP/1.0\r\nContent-Length: 5\r\n"
                                 "Content-Type: text/plain\r\n\r\nhello", out, sizeof out) > 0);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    conn_close(m);

    size_t got = 0;
    for (;;) {
        ssize_t n = conn_read_timed(w, out + got, sizeof out - got - 1, H_TIMEOUT_MS);
        assert_true(n > 0);
        got += (size_t)n;
        out[got] = '\0';
        if (strstr(out, "\r\n\r\nhello"))
            break;
    }
    assert_non_null(strstr(out, "\r\nPragma: 2\r\n"));
    conn_close(w);
    tls_client_free(t);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_mutual_tls(void **state)
{
    (void)state;
    h_server_t s;
    start_tls_server(&s, in(dir, "ca.pem"));
    char why[256], out[4096];

    tls_client_t *good = client_ctx(in(dir, "ca.pem"), in(dir, "client.pem"), in(dir, "client.key"));
    conn_t *c = tls_open(&s, good, "localhost", why, sizeof why);
    assert_non_null(c);
    assert_true(tls_roundtrip(c, "GET /sign_in?cert HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_non_null(strstr(out, "200 Added"));
    conn_close(c);

    /* No certificate, or one from another CA: no answer ever comes. */
    tls_client_t *none = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    tls_client_t *other = client_ctx(in(dir, "ca.pem"), in(other_dir, "client.pem"),
                                     in(other_dir, "client.key"));
    tls_client_t *refused[] = {none, other};
    for (size_t i = 0; i < 2; i++) {
        c = tls_open(&s, refused[i], "localhost", why, sizeof why);
        if (c) {
            ssize_t n = tls_roundtrip(c, "GET /sign_in?nocert HTTP/1.0\r\n\r\n", out, sizeof out);
            assert_true(n < 0);
            conn_close(c);
        }
    }
    /* Nobody else was signed in by the refused attempts. */
    c = tls_open(&s, good, "localhost", why, sizeof why);
    assert_non_null(c);
    assert_true(tls_roundtrip(c, "GET /sign_in?again HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_string_equal(body_of(out), "again,2,1\ncert,1,1\n");
    conn_close(c);
    tls_client_free(good);
    tls_client_free(none);
    tls_client_free(other);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_verification_failures(void **state)
{
    (void)state;
    h_server_t s;
    start_tls_server(&s, NULL);
    char why[256];

    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    assert_null(tls_open(&s, t, "wrong.example", why, sizeof why));
    assert_non_null(strstr(why, "certificate verify failed"));
    assert_non_null(strstr(why, "mismatch"));
    /* A name OpenSSL will not take (longer than SNI allows): the wrap fails
     * closed instead of connecting without it; the socket stays ours. */
    char long_host[300];
    memset(long_host, 'a', sizeof long_host - 1);
    long_host[sizeof long_host - 1] = '\0';
    int fd = net_connect("127.0.0.1", s.port, H_TIMEOUT_MS);
    assert_true(fd >= 0);
    errno = 0;
    assert_null(tls_client_wrap(t, fd, long_host));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(close(fd), 0);
    tls_client_free(t);

    /* A CA we do not trust: the other directory's. */
    t = client_ctx(in(other_dir, "ca.pem"), NULL, NULL);
    assert_null(tls_open(&s, t, "localhost", why, sizeof why));
    assert_non_null(strstr(why, "certificate verify failed"));
    tls_client_free(t);
    assert_int_equal(h_server_stop(&s), 0);

    /* An expired server certificate. */
    h_server_start(&s, "--tls-cert", in(dir, "expired.pem"), "--tls-key", in(dir, "expired.key"),
                   (char *)NULL);
    t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    assert_null(tls_open(&s, t, "localhost", why, sizeof why));
    assert_non_null(strstr(why, "expired"));
    tls_client_free(t);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_port_mismatches_and_stalled_handshake(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--tls-cert", in(dir, "server.pem"), "--tls-key", in(dir, "server.key"),
                   "--read-timeout", "1", (char *)NULL);
    /* Plain HTTP to the TLS port: a readable 400, then close. */
    h_conn_t *c = h_connect(&s);
    h_send_str(c, "GET /sign_in?plain HTTP/1.0\r\n\r\n");
    h_resp_t *r = h_read(c);
    assert_int_equal(r->status, 400);
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);

    /* Half a ClientHello, then nothing: closed after the read timeout, and
     * meanwhile others are served. */
    h_conn_t *stall = h_connect(&s);
    static const unsigned char half_hello[] = {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00};
    h_send(stall, half_hello, sizeof half_hello);
    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    char why[256], out[4096];
    conn_t *ok = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(ok);
    assert_true(tls_roundtrip(ok, "GET /sign_in?meanwhile HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    conn_close(ok);
    h_expect_eof(stall, 5000);
    h_close(stall);
    tls_client_free(t);
    assert_int_equal(h_server_stop(&s), 0);

    /* A TLS ClientHello to the plain port: 400 (as plain text), never a hang. */
    h_server_start(&s, (char *)NULL);
    c = h_connect(&s);
    h_send(c, half_hello, sizeof half_hello);
    r = h_read(c);
    assert_int_equal(r->status, 400);
    h_resp_free(r);
    h_expect_eof(c, H_TIMEOUT_MS);
    h_close(c);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* A new connection's first request must complete within --read-timeout,
 * handshake or not: a client that completes the handshake and then says
 * nothing, and one that sends the first bytes of a record and stops, are
 * both closed then, not after --idle-timeout (60 s here). read_to_close
 * gives up after H_TIMEOUT_MS (10 s): the bound is generous, and still far
 * below the idle timeout it must not wait for. */
static void test_silent_after_handshake(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--tls-cert", in(dir, "server.pem"), "--tls-key", in(dir, "server.key"),
                   "--read-timeout", "1", "--idle-timeout", "60", (char *)NULL);
    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    char why[256], out[4096];

    conn_t *silent = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(silent);
    conn_t *partial = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(partial);
    /* An application-data record header announcing 64 bytes, and 3 of them. */
    static const unsigned char part[] = {0x17, 0x03, 0x03, 0x00, 0x40, 0x01, 0x02, 0x03};
    assert_int_equal(send(conn_fd(partial), part, sizeof part, MSG_NOSIGNAL), (ssize_t)sizeof part);

    if (read_to_close(silent, out, sizeof out) < 0)
        fail_msg("a TLS connection silent after its handshake was not closed within %d ms "
                 "(--read-timeout 1)", H_TIMEOUT_MS);
    if (read_to_close(partial, out, sizeof out) < 0)
        fail_msg("a TLS connection that sent part of a record was not closed within %d ms "
                 "(--read-timeout 1)", H_TIMEOUT_MS);
    conn_close(silent);
    conn_close(partial);

    /* A connection that did send its first request in time is kept past
     * the read timeout: idle between requests is the idle timeout's. */
    conn_t *kept = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(kept);
    assert_true(tls_roundtrip(kept, "OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out) > 0);
    char byte;
    assert_int_equal(conn_read_timed(kept, &byte, 1, 2000), -ETIMEDOUT);
    assert_true(tls_roundtrip(kept, "OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out) > 0);
    conn_close(kept);
    tls_client_free(t);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* Open, one request, close; asserts a complete answer and returns out. */
static const char *tls_request(uint16_t port, tls_client_t *t, const char *req, char *out,
                               size_t cap)
{
    char why[256];
    conn_t *c = tls_open_port(port, t, "localhost", why, sizeof why);
    if (!c)
        fail_msg("handshake for \"%s\": %s", req, why);
    if (tls_roundtrip(c, req, out, cap) <= 0)
        fail_msg("no answer to \"%s\"", req);
    conn_close(c);
    return out;
}

/* The plain port refuses at once, in plain text: status, the reason why as
 * the body, then the close. */
static void expect_plain_refusal(uint16_t port, int status, const char *reason, const char *why)
{
    h_conn_t *p = h_connect_plain(port);
    h_resp_t *r = h_read(p);
    H_ASSERT_STATUS(r, status, reason);
    H_ASSERT_BODY(r, why);
    h_resp_free(r);
    h_expect_eof(p, H_TIMEOUT_MS);
    h_close(p);
}

/* A TLS client refused with status: it completes the handshake, reads the
 * whole answer (without sending anything when req is NULL) and sees the
 * close. False when the handshake fails (refused without an answer). */
static bool refused_over_tls(uint16_t port, tls_client_t *t, const char *req, const char *status,
                             const char *body)
{
    char why[256], out[4096];
    conn_t *c = tls_try_open(port, t, "localhost", why, sizeof why);
    if (!c)
        return false;
    if (req && conn_write_all_timed(c, req, strlen(req), H_TIMEOUT_MS) < 0)
        fail_msg("cannot send \"%s\" on a refused connection", req);
    ssize_t n = read_to_close(c, out, sizeof out);
    conn_close(c);
    if (n <= 0)
        fail_msg("no answer before the close (%zd)", n);
    if (strncmp(out, status, strlen(status)) != 0 || !strstr(out, "\r\nConnection: close\r\n"))
        fail_msg("expected \"%s\"; got \"%s\"", status, out);
    assert_string_equal(body_of(out), body);
    return true;
}

/* --max-connections on the TLS port: the 503 comes through TLS (readable),
 * the plain port still answers it in plain text; refusals in progress are
 * bounded (past the bound: a bare close), and free again once the
 * clients that held them leave. */
static void test_cap_refusal_over_tls(void **state)
{
    (void)state;
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n";
    static const char why_busy[] = "connection limit reached\n";
    /* The read timeout bounds a refusal's handshake: long, so that silent
     * clients hold their refusals for the whole test. */
    own_start(in(dir, "server.pem"), in(dir, "server.key"), "--max-connections", "2",
              "--read-timeout", "60", (char *)NULL);
    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    char why[256], out[4096];
    conn_t *held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = tls_open_port(own.tls_port, t, "localhost", why, sizeof why);
        if (!held[i])
            fail_msg("connection %d under the cap: %s", i, why);
    }
    /* Clients that never send a ClientHello hold refusals until the read
     * timeout; at the bound, the next connection is closed at once. This
     * comes first: a refusal that has been answered is uncounted only when
     * the server frees its session, some time after the client saw the
     * close, so earlier refusals could still hold places here. */
    h_conn_t *silent[SERVER_TLS_REFUSALS_MAX];
    for (int i = 0; i < SERVER_TLS_REFUSALS_MAX; i++)
        silent[i] = h_connect_plain(own.tls_port);
    h_conn_t *extra = h_connect_plain(own.tls_port);
    h_expect_eof(extra, H_TIMEOUT_MS);
    h_close(extra);
    /* The last of them is still held (the bound is not lower). */
    h_expect_silence(silent[SERVER_TLS_REFUSALS_MAX - 1], H_SILENCE_MS);
    assert_false(refused_over_tls(own.tls_port, t, NULL, busy, why_busy));
    /* They leave: readable refusals again (once the server saw the closes). */
    for (int i = 0; i < SERVER_TLS_REFUSALS_MAX; i++)
        h_close(silent[i]);
    uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    int attempts = 1;
    while (!refused_over_tls(own.tls_port, t, NULL, busy, why_busy)) {
        if (h_now_ms() > deadline)
            fail_msg("no readable 503 within %d ms after the silent clients left (%d attempts)",
                     H_TIMEOUT_MS, attempts);
        attempts++;
    }
    /* Over the cap: handshake, the 503 with its reason, the close; whether
     * or not the client sent its request first. */
    if (!refused_over_tls(own.tls_port, t, "GET /sign_in?late HTTP/1.0\r\n\r\n", busy, why_busy))
        fail_msg("a TLS client over the cap got no handshake");
    /* The plain port: the same 503, in plain text, at once. */
    expect_plain_refusal(own.port, 503, "Service Unavailable", why_busy);
    /* Refusals never took a place under the cap: the held ones are served. */
    assert_true(tls_roundtrip(held[0], "GET /sign_in?held HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_string_equal(body_of(out), "held,1,1\n");
    for (int i = 0; i < 2; i++)
        conn_close(held[i]);
    tls_client_free(t);
    assert_int_equal(own_stop(), 0);
    h_pass();
}

/* --max-conns-per-ip: the 429 comes through TLS on the TLS port (and in
 * plain text on the plain port: the limit counts both). */
static void test_per_ip_refusal_over_tls(void **state)
{
    (void)state;
    static const char limited[] = "HTTP/1.1 429 Too Many Requests\r\n";
    static const char why_limited[] = "too many connections from your address\n";
    own_start(in(dir, "server.pem"), in(dir, "server.key"), "--max-conns-per-ip", "2",
              (char *)NULL);
    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    char why[256], out[4096];
    conn_t *held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = tls_open_port(own.tls_port, t, "localhost", why, sizeof why);
        if (!held[i])
            fail_msg("connection %d under the limit: %s", i, why);
    }
    if (!refused_over_tls(own.tls_port, t, "GET /sign_in?third HTTP/1.0\r\n\r\n", limited,
                          why_limited))
        fail_msg("a TLS client over the per-address limit got no handshake");
    expect_plain_refusal(own.port, 429, "Too Many Requests", why_limited);
    /* The refusals took no place of ours: the held connections are served,
     * and once they leave, a new one is too. */
    assert_true(tls_roundtrip(held[0], "GET /sign_in?held HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_string_equal(body_of(out), "held,1,1\n");
    for (int i = 0; i < 2; i++)
        conn_close(held[i]);
    uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    for (;;) {
        conn_t *c = tls_open_port(own.tls_port, t, "localhost", why, sizeof why);
        if (!c)
            fail_msg("handshake after the held connections left: %s", why);
        assert_true(tls_roundtrip(c, "GET /sign_in?after HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
        conn_close(c);
        if (strncmp(out, STRLIT("HTTP/1.1 200 Added\r\n")) == 0)
            break;
        if (strncmp(out, limited, strlen(limited)) != 0 || h_now_ms() > deadline)
            fail_msg("sign-in after the held connections left: \"%s\"", out);
    }
    tls_client_free(t);
    assert_int_equal(own_stop(), 0);
    h_pass();
}

/*
 * Relaying load over TLS, in a thread: bob (from) sends alice (to) numbered
 * messages and each of alice's /waits must take exactly the next one, every
 * request on a new connection (as the stock client does), so handshakes go
 * on through the reloads. Failures are recorded, not asserted (not the
 * test's thread).
 */
struct load {
    uint16_t port;
    tls_client_t *t;
    uint64_t from, to;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* relayed grew, or the thread ended */
    unsigned long relayed;
    bool stop, ended;
    char error[768]; /* the first failure, "" if none */
};

static int load_fail(struct load *l, const char *what, unsigned long n, const char *detail)
{
    pthread_mutex_lock(&l->mu);
    /* The detail (an answer) may be long: its start says enough. */
    snprintf(l->error, sizeof l->error, "%s %lu: %.600s", what, n, detail);
    pthread_mutex_unlock(&l->mu);
    return -1;
}

/* One request on a new connection: 0 with the answer in out, or -1. */
static int load_request(struct load *l, const char *req, char *out, size_t cap, const char *what,
                        unsigned long n)
{
    char why[256];
    conn_t *c = tls_try_open(l->port, l->t, "localhost", why, sizeof why);
    if (!c)
        return load_fail(l, what, n, why);
    ssize_t r = tls_roundtrip(c, req, out, cap);
    conn_close(c);
    return r > 0 ? 0 : load_fail(l, what, n, "no complete answer");
}

static int load_step(struct load *l, unsigned long n)
{
    char body[32], req[256], out[4096];
    int blen = snprintf(body, sizeof body, "load %lu", n);
    snprintf(req, sizeof req,
             "POST /message?peer_id=%llu&to=%llu HTTP/1.0\r\nContent-Length: %d\r\n"
             "Content-Type: text/plain\r\n\r\n%s",
             (unsigned long long)l->from, (unsigned long long)l->to, blen, body);
    if (load_request(l, req, out, sizeof out, "message", n) < 0)
        return -1;
    if (strncmp(out, STRLIT("HTTP/1.1 200 OK\r\n")) != 0)
        return load_fail(l, "message", n, out);
    snprintf(req, sizeof req, "GET /wait?peer_id=%llu HTTP/1.0\r\n\r\n", (unsigned long long)l->to);
    if (load_request(l, req, out, sizeof out, "wait", n) < 0)
        return -1;
    char pragma[48];
    snprintf(pragma, sizeof pragma, "\r\nPragma: %llu\r\n", (unsigned long long)l->from);
    if (!strstr(out, pragma) || strcmp(body_of(out), body) != 0)
        return load_fail(l, "wait (expected its message)", n, out);
    return 0;
}

static void *load_main(void *arg)
{
    struct load *l = arg;
    for (unsigned long n = 1;; n++) {
        pthread_mutex_lock(&l->mu);
        bool stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop || load_step(l, n) < 0)
            break;
        pthread_mutex_lock(&l->mu);
        l->relayed = n;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->mu);
    }
    pthread_mutex_lock(&l->mu);
    l->ended = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Await at least want messages relayed in all (fails the test otherwise). */
static unsigned long load_await(struct load *l, unsigned long want)
{
    struct timespec until = clock_deadline_in(H_TIMEOUT_MS);
    pthread_mutex_lock(&l->mu);
    while (l->relayed < want && !l->ended &&
           pthread_cond_timedwait(&l->cond, &l->mu, &until) == 0)
        ;
    unsigned long got = l->relayed;
    char error[sizeof l->error];
    memcpy(error, l->error, sizeof error);
    pthread_mutex_unlock(&l->mu);
    if (error[0])
        fail_msg("relaying load: %s", error);
    if (got < want)
        fail_msg("relaying load: %lu of %lu messages within %d ms", got, want, H_TIMEOUT_MS);
    return got;
}

/* Ends the load; the count relayed (fails the test if the load failed). */
static unsigned long load_stop(struct load *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    if (l->error[0])
        fail_msg("relaying load: %s", l->error);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
    return l->relayed;
}

/* Which certificate the TLS port serves: the one of CA "a" (dir) or CA
 * "b" (other_dir), told by clients that trust only one of them. */
static void assert_serving(uint16_t port, tls_client_t *trusts, tls_client_t *distrusts)
{
    char why[256];
    conn_t *c = tls_try_open(port, trusts, "localhost", why, sizeof why);
    if (!c)
        fail_msg("the expected certificate is not served: %s", why);
    conn_close(c);
    c = tls_try_open(port, distrusts, "localhost", why, sizeof why);
    if (c)
        fail_msg("the certificate of the other CA is still (or already) served");
    assert_non_null(strstr(why, "certificate verify failed"));
}

/* SIGHUP while messages keep flowing over TLS: a good new certificate is
 * served from then on, a bad file is reported and the current one kept; no
 * member, connection or message is lost, and tickets issued before a reload
 * still resume after it. */
static void test_sighup_reload_under_load(void **state)
{
    (void)state;
    /* The server reads its certificate from copies we replace; the load and
     * the checks of members trust both CAs (the reload switches between them). */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cp %s/server.pem %s/live.pem && cp %s/server.key %s/live.key && "
             "cat %s/ca.pem %s/ca.pem > %s/both-ca.pem",
             dir, dir, dir, dir, dir, other_dir, dir);
    assert_int_equal(run_sh(cmd), 0);
    own_start(in(dir, "live.pem"), in(dir, "live.key"), "--member-timeout", "120",
              "--wait-timeout", "120", (char *)NULL);
    const uint16_t port = own.tls_port;
    tls_client_t *both = client_ctx(in(dir, "both-ca.pem"), NULL, NULL);
    tls_client_t *only_a = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    tls_client_t *only_b = client_ctx(in(other_dir, "ca.pem"), NULL, NULL);
    tls_client_t *resumer = client_ctx(in(dir, "both-ca.pem"), NULL, NULL);
    char why[256], out[4096];

    /* carol (1) parks a /wait across the reloads; bob (3) sends alice (2)
     * the load. Each first takes the join notices queued for it. */
    static const char *const steps[][2] = {
        {"GET /sign_in?carol HTTP/1.0\r\n\r\n", "carol,1,1\n"},
        {"GET /sign_in?alice HTTP/1.0\r\n\r\n", "alice,2,1\ncarol,1,1\n"},
        {"GET /sign_in?bob HTTP/1.0\r\n\r\n", "bob,3,1\ncarol,1,1\nalice,2,1\n"},
        {"GET /wait?peer_id=2 HTTP/1.0\r\n\r\n", "bob,3,1\n"},
        {"GET /wait?peer_id=1 HTTP/1.0\r\n\r\n", "alice,2,1\n"},
        {"GET /wait?peer_id=1 HTTP/1.0\r\n\r\n", "bob,3,1\n"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        assert_string_equal(body_of(tls_request(port, both, steps[i][0], out, sizeof out)),
                            steps[i][1]);
    conn_t *parked = tls_open_port(port, both, "localhost", why, sizeof why);
    assert_non_null(parked);
    const char *wait = "GET /wait?peer_id=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(conn_write_all_timed(parked, wait, strlen(wait), H_TIMEOUT_MS), 0);
    /* A keep-alive connection opened before the reloads, used after them. */
    conn_t *kept = tls_open_port(port, both, "localhost", why, sizeof why);
    assert_non_null(kept);
    tls_request(port, resumer, "OPTIONS / HTTP/1.0\r\n\r\n", out, sizeof out); /* tickets */
    assert_serving(port, only_a, only_b);

    struct load l = {.port = port, .t = both, .from = 3, .to = 2};
    pthread_mutex_init(&l.mu, NULL);
    assert_int_equal(clock_cond_init(&l.cond), 0);
    assert_int_equal(pthread_create(&l.thread, NULL, load_main, &l), 0);
    unsigned long n = load_await(&l, 5);

    /* A good new certificate (CA b's): served once the reload is logged. */
    snprintf(cmd, sizeof cmd, "cp %s/server.pem %s/live.pem && cp %s/server.key %s/live.key",
             other_dir, dir, other_dir, dir);
    assert_int_equal(run_sh(cmd), 0);
    size_t mark = log_size();
    assert_int_equal(kill(own.pid, SIGHUP), 0);
    if (!await_log("SIGHUP: TLS certificate and key reloaded", mark, H_TIMEOUT_MS))
        fail_msg("no \"reloaded\" line in the server log after SIGHUP");
    assert_serving(port, only_b, only_a);
    /* A ticket from before the reload resumes after it. */
    conn_t *c = tls_open_port(port, resumer, "localhost", why, sizeof why);
    assert_non_null(c);
    assert_true(c->resumed);
    assert_true(tls_roundtrip(c, "OPTIONS / HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    conn_close(c);
    n = load_await(&l, n + 5);

    /* A broken file: the failure is logged, the current certificate kept. */
    snprintf(cmd, sizeof cmd, "echo garbage > %s/live.pem", dir);
    assert_int_equal(run_sh(cmd), 0);
    mark = log_size();
    assert_int_equal(kill(own.pid, SIGHUP), 0);
    if (!await_log("SIGHUP: TLS reload failed, keeping the current certificate", mark,
                   H_TIMEOUT_MS))
        fail_msg("no \"reload failed\" line in the server log after SIGHUP with a bad file");
    assert_serving(port, only_b, only_a);
    n = load_await(&l, n + 5);
    n = load_stop(&l);

    /* carol's /wait, parked since before the reloads, takes bob's message. */
    assert_string_equal(
        body_of(tls_request(port, both,
                            "POST /message?peer_id=3&to=1 HTTP/1.0\r\nContent-Length: 5\r\n"
                            "Content-Type: text/plain\r\n\r\nafter",
                            out, sizeof out)),
        "");
    assert_true(read_response(parked, out, sizeof out) > 0);
    assert_non_null(strstr(out, "\r\nPragma: 3\r\n"));
    assert_string_equal(body_of(out), "after");
    conn_close(parked);
    /* Every member is still there, seen through the connection kept open. */
    assert_true(tls_roundtrip(kept, "GET /sign_in?dave HTTP/1.1\r\nHost: x\r\n\r\n", out,
                              sizeof out) > 0);
    assert_string_equal(body_of(out), "dave,4,1\ncarol,1,1\nalice,2,1\nbob,3,1\n");
    conn_close(kept);
    print_message("relayed %lu messages over TLS across two reloads\n", n);
    tls_client_free(both);
    tls_client_free(only_a);
    tls_client_free(only_b);
    tls_client_free(resumer);
    assert_int_equal(own_stop(), 0);
    h_pass();
}

/* End a load whose failures are expected (the server is gone): no checks. */
static void load_end(struct load *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
}

#define SIGTERM_LOADS 3

/*
 * SIGTERM while TLS connections are relaying, parked, and half-way through
 * a handshake: the server drains and exits 0. Under TSan (make check) a
 * race between the threads that still use connections or the TLS context
 * and the freeing of them at shutdown (tls_destroy, tls_server_free) makes
 * the exit status 66, which fails this test.
 */
static void test_sigterm_under_load(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--tls-cert", in(dir, "server.pem"), "--tls-key", in(dir, "server.key"),
                   "--shutdown-grace", "2", (char *)NULL);
    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    char why[256], out[8192], req[128];
    /* Pairs (2k+1 -> 2k+2) relay; member 2*SIGTERM_LOADS+1 parks waits. */
    for (int i = 1; i <= 2 * SIGTERM_LOADS + 1; i++) {
        snprintf(req, sizeof req, "GET /sign_in?m%d HTTP/1.0\r\n\r\n", i);
        assert_non_null(strstr(tls_request(s.port, t, req, out, sizeof out), "200 Added"));
    }
    /* Each target first takes the join notices queued for it. */
    for (int i = 2; i <= 2 * SIGTERM_LOADS; i += 2)
        for (int later = i + 1; later <= 2 * SIGTERM_LOADS + 1; later++) {
            snprintf(req, sizeof req, "GET /wait?peer_id=%d HTTP/1.0\r\n\r\n", i);
            tls_request(s.port, t, req, out, sizeof out);
        }
    struct load loads[SIGTERM_LOADS];
    for (int i = 0; i < SIGTERM_LOADS; i++) {
        loads[i] = (struct load){.port = s.port, .t = client_ctx(in(dir, "ca.pem"), NULL, NULL),
                                 .from = (uint64_t)(2 * i + 1), .to = (uint64_t)(2 * i + 2)};
        pthread_mutex_init(&loads[i].mu, NULL);
        assert_int_equal(clock_cond_init(&loads[i].cond), 0);
        assert_int_equal(pthread_create(&loads[i].thread, NULL, load_main, &loads[i]), 0);
    }
    for (int i = 0; i < SIGTERM_LOADS; i++)
        load_await(&loads[i], 3);
    /* Parked keep-alive waits and handshakes left half-way. */
    conn_t *parked[4];
    for (int i = 0; i < 4; i++) {
        parked[i] = tls_open(&s, t, "localhost", why, sizeof why);
        assert_non_null(parked[i]);
        snprintf(req, sizeof req, "GET /wait?peer_id=%d HTTP/1.1\r\nHost: x\r\n\r\n",
                 2 * SIGTERM_LOADS + 1);
        assert_int_equal(conn_write_all_timed(parked[i], req, strlen(req), H_TIMEOUT_MS), 0);
    }
    static const unsigned char half_hello[] = {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00};
    h_conn_t *half[4];
    for (int i = 0; i < 4; i++) {
        half[i] = h_connect_plain(s.port);
        h_send(half[i], half_hello, sizeof half_hello);
    }

    int status = h_server_stop(&s);
    for (int i = 0; i < SIGTERM_LOADS; i++) {
        load_end(&loads[i]);
        tls_client_free(loads[i].t);
    }
    for (int i = 0; i < 4; i++) {
        conn_close(parked[i]);
        h_close(half[i]);
    }
    tls_client_free(t);
    if (status != 0)
        fail_msg("the server exited with status %d after SIGTERM under load (66: a TSan report)",
                 status);
    h_pass();
}

/* openssl s_client, an independent client, confirms TLS 1.3 and resumption. */
static void test_s_client_tls13_and_reuse(void **state)
{
    (void)state;
    h_server_t s;
    start_tls_server(&s, NULL);
    char sess[96], cmd[1024];
    snprintf(sess, sizeof sess, "%s/s_client.sess", dir);
    const char *flags[] = {"-sess_out", "-sess_in"};
    const char *want[] = {"New, TLSv1.3", "Reused, TLSv1.3"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 "printf 'GET /sign_in?s%d HTTP/1.0\\r\\n\\r\\n' | timeout 20 openssl s_client "
                 "-connect 127.0.0.1:%u -servername localhost -CAfile %s -verify_return_error "
                 "-ign_eof %s %s 2>/dev/null | grep -q '^%s'",
                 i, (unsigned)s.port, in(dir, "ca.pem"), flags[i], sess, want[i]);
        if (run_sh(cmd) != 0)
            fail_msg("s_client did not report '%s': %s", want[i], cmd);
    }
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_relay_over_tls_and_resumption),
        H_TEST(test_mutual_tls),
        H_TEST(test_verification_failures),
        H_TEST(test_port_mismatches_and_stalled_handshake),
        H_TEST(test_silent_after_handshake),
        OWN_TEST(test_cap_refusal_over_tls),
        OWN_TEST(test_per_ip_refusal_over_tls),
        OWN_TEST(test_sighup_reload_under_load),
        H_TEST(test_s_client_tls13_and_reuse),
        H_TEST(test_sigterm_under_load),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
