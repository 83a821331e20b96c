/*
 * Integration, hostile clients: TLS records on the plain port and random
 * garbage.
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

static void test_tls_on_plain_port(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* the plain port is the subject */
    h_server_t srv;
    h_server_start(&srv, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    /* A ClientHello record header and a body of noise. */
    unsigned char hello[300] = {0x16, 0x03, 0x01, 0x01, 0x27, 0x01, 0x00, 0x01, 0x23, 0x03, 0x03};
    prng_state = 7;
    for (size_t i = 11; i < sizeof hello; i++)
        hello[i] = (unsigned char)prng();
    expect_refusal(&srv, hello, sizeof hello, 400);
    /* An SSLv2-style hello. */
    static const unsigned char v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00};
    expect_refusal(&srv, v2, sizeof v2, 400);
    pair_exchange(p);
    /* A real TLS client fails its handshake promptly instead of hanging. */
    int fd = net_connect("127.0.0.1", srv.port, H_TIMEOUT_MS);
    assert_true(fd >= 0);
    conn_t *t = tls_client_wrap(my_tls(), fd, "localhost");
    assert_non_null(t);
    uint64_t t0 = h_now_ms();
    int rc = conn_handshake_timed(t, H_TIMEOUT_MS);
    uint64_t took = h_now_ms() - t0;
    conn_close(t);
    if (rc == 0)
        fail_msg("a TLS handshake succeeded on the plain port");
    if (took >= H_TIMEOUT_MS)
        fail_msg("the TLS handshake on the plain port hung (%" PRIu64 " ms)", took);
    ASSERT_ALIVE(&srv);
    pair_exchange(p);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

/* What random bytes on one connection may get: well-formed answers, all 2xx
 * but the last, which is 4xx with Connection: close; or none; then EOF. */
static void check_garbage_answer(int round, hc_t *h, bool raw_tls_port, int want_ok)
{
    if (!hc_read_to_eof(h, H_TIMEOUT_MS))
        fail_msg("garbage round %d: the connection was not closed (%zu bytes: \"%s\")", round,
                 h->len, show(h->buf, h->len));
    if (raw_tls_port && h->len && (unsigned char)h->buf[0] == 0x15)
        return; /* a TLS alert: the handshake failed, fine */
    int oks = 0;
    bool refused = false;
    for (;;) {
        rresp_t r;
        int t = take_resp(h->buf, &h->len, &r);
        if (t == 0 && h->len == 0)
            break;
        if (t != 1)
            fail_msg("garbage round %d: malformed or cut answer \"%s\"", round,
                     show(h->buf, h->len));
        if (refused)
            fail_msg("garbage round %d: %d %s after the refusal", round, r.status, r.reason);
        if (r.status >= 200 && r.status <= 299)
            oks++;
        else if (r.status >= 400 && r.status <= 499 && r.close)
            refused = true;
        else
            fail_msg("garbage round %d: answered %d %s (close %d)", round, r.status, r.reason,
                     r.close);
        rresp_free(&r);
    }
    if (oks != want_ok)
        fail_msg("garbage round %d: %d successful answers, expected %d", round, oks, want_ok);
}

static void test_random_garbage(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    prng_state = 0x9E3779B97F4A7C15ull;
    static const char printable[] = "GETPOS /?&=:;,.-_ HTTP/1.1\r\n\r\nabcdefgh0123456789\t";
    static char g[8192];
    int rounds = h_tls_mode() ? 32 : 24;
    for (int round = 0; round < rounds; round++) {
        int kind = round % 4;
        bool raw = round >= 24; /* TLS mode: bytes straight to the TLS port */
        size_t n = 0;
        int want_ok = 0;
        if (kind == 2)
            n = (size_t)snprintf(g, sizeof g, "GET /sign_in?g HTTP/1.1\r\nHost: t\r\n");
        if (kind == 3) {
            n = (size_t)snprintf(g, sizeof g, "OPTIONS /g HTTP/1.1\r\nHost: t\r\n\r\n");
            want_ok = 1;
        }
        size_t len = 2048 + (size_t)(prng() % 2048);
        for (size_t i = 0; i < len; i++) {
            uint64_t v = prng();
            g[n++] = kind == 1 ? printable[v % (sizeof printable - 1)] : (char)(v >> 24);
        }
        if (raw && round % 2 == 0)
            g[0] = 0x16; /* looks like a handshake record */
        if (raw)
            want_ok = 0;
        hc_t *h = hc_open(&srv, raw ? HC_RAW : HC_AUTO);
        (void)hc_write_all(h, g, n, H_TIMEOUT_MS); /* may be cut short by the close */
        shutdown(h->fd, SHUT_WR);
        check_garbage_answer(round, h, raw, want_ok);
        hc_close(h);
        ASSERT_ALIVE(&srv);
        if (round % 4 == 3)
            pair_exchange(p);
    }
    /* Nobody was signed in by any of it. */
    assert_int_equal(h_sign_in(&srv, "after"), 3);
    pair_await_note(p, "after,3,1\n");
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_tls_on_plain_port),
        T(test_random_garbage),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
