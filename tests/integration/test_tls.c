/*
 * TLS end to end: the real server with --tls-cert/--tls-key (and mutual TLS),
 * driven through the common TLS connection layer as a client would: a full
 * relay, resumption, mutual TLS accepted and refused, hostname mismatch,
 * unknown CA, expired certificate, plain<->TLS port mismatches, a stalled
 * handshake, and SIGHUP reloads (good and bad files) with members kept.
 * Certificates are generated per run by certs/gen-certs.sh into a temp dir.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "net.h"
#include "tls.h"

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

/* Connect and handshake: the conn, or NULL with the reason in why. */
static conn_t *tls_open(const h_server_t *s, tls_client_t *t, const char *host, char *why,
                        size_t why_len)
{
    int fd = net_connect("127.0.0.1", s->port, H_TIMEOUT_MS);
    assert_true(fd >= 0);
    conn_t *c = tls_client_wrap(t, fd, host);
    assert_non_null(c);
    int rc = conn_handshake_timed(c, H_TIMEOUT_MS);
    if (rc < 0) {
        snprintf(why, why_len, "%s", conn_error(c)[0] ? conn_error(c) : "handshake failed");
        conn_close(c);
        return NULL;
    }
    return c;
}

/* The server's first answer after a handshake that looked fine to us: with
 * TLS 1.3 a refused client certificate only shows up on the first read. */
static ssize_t tls_roundtrip(conn_t *c, const char *req, char *out, size_t cap)
{
    if (conn_write_all_timed(c, req, strlen(req), H_TIMEOUT_MS) < 0)
        return -1;
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

static void test_relay_over_tls_and_resumption(void **state)
{
    (void)state;
    h_server_t s;
    start_tls_server(&s, NULL);
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

static void test_sighup_reload_keeps_members(void **state)
{
    (void)state;
    /* The server reads its certificate from copies we can replace. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s/server.pem %s/live.pem && cp %s/server.key %s/live.key", dir,
             dir, dir, dir);
    assert_int_equal(run_sh(cmd), 0);
    h_server_t s;
    h_server_start(&s, "--tls-cert", in(dir, "live.pem"), "--tls-key", in(dir, "live.key"),
                   (char *)NULL);
    tls_client_t *t = client_ctx(in(dir, "ca.pem"), NULL, NULL);
    char why[256], out[4096];
    conn_t *c = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(c);
    assert_true(tls_roundtrip(c, "GET /sign_in?a HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    conn_close(c);
    /* A keep-alive connection opened before the reload stays usable after. */
    conn_t *kept = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(kept);

    /* A broken file: reported, the old certificate kept. */
    snprintf(cmd, sizeof cmd, "echo garbage > %s/live.pem", dir);
    assert_int_equal(run_sh(cmd), 0);
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    c = tls_open(&s, t, "localhost", why, sizeof why);
    assert_non_null(c);
    assert_true(tls_roundtrip(c, "GET /sign_in?b HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_string_equal(body_of(out), "b,2,1\na,1,1\n");
    conn_close(c);

    /* The other CA's server certificate: after SIGHUP, new handshakes use it. */
    snprintf(cmd, sizeof cmd,
             "cp %s/server.pem %s/live.pem && cp %s/server.key %s/live.key", other_dir, dir,
             other_dir, dir);
    assert_int_equal(run_sh(cmd), 0);
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    tls_client_t *t2 = client_ctx(in(other_dir, "ca.pem"), NULL, NULL);
    uint64_t until = h_now_ms() + H_TIMEOUT_MS;
    for (;;) { /* the signal is handled asynchronously: poll for the new cert */
        c = tls_open(&s, t2, "localhost", why, sizeof why);
        if (c || h_now_ms() > until)
            break;
    }
    assert_non_null(c);
    /* Members survived the reloads. */
    assert_true(tls_roundtrip(c, "GET /sign_in?c HTTP/1.0\r\n\r\n", out, sizeof out) > 0);
    assert_string_equal(body_of(out), "c,3,1\na,1,1\nb,2,1\n");
    conn_close(c);
    assert_true(tls_roundtrip(kept, "GET /sign_in?d HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out) > 0);
    assert_non_null(strstr(out, "200 Added"));
    conn_close(kept);
    tls_client_free(t);
    tls_client_free(t2);
    assert_int_equal(h_server_stop(&s), 0);
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
        H_TEST(test_sighup_reload_keeps_members),
        H_TEST(test_s_client_tls13_and_reuse),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
