/*
 * Access control: --auth-token / --auth-token-file on /sign_in (401), and
 * --secure-ids: a secret per member that /wait, /message and /sign_out must
 * present (403 otherwise), so ids can no longer be spoofed.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static h_resp_t *sign_in_with(const h_server_t *s, const char *name, const char *auth)
{
    char req[512];
    if (auth)
        snprintf(req, sizeof req, "GET /sign_in?%s HTTP/1.0\r\nAuthorization: %s\r\n\r\n", name, auth);
    else
        snprintf(req, sizeof req, "GET /sign_in?%s HTTP/1.0\r\n\r\n", name);
    return h_request_str(s, req);
}

static void test_auth_token(void **state)
{
    (void)state;
    char path[] = "/tmp/pcsig-tokens-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char file[] = "# sign-in tokens\nfirst-token\n\nsecond-token\n";
    assert_int_equal(write(fd, file, sizeof file - 1), (ssize_t)(sizeof file - 1));
    close(fd);
    h_server_t s;
    h_server_start(&s, "--auth-token", "cli-token", "--auth-token-file", path, (char *)NULL);

    const char *refused[] = {NULL, "Bearer wrong", "Bearer ", "Basic Y2xpLXRva2Vu",
                             "Bearer cli-token-and-more", "Bearer # sign-in tokens"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        h_resp_t *r = sign_in_with(&s, "x", refused[i]);
        H_ASSERT_STATUS(r, 401, "Unauthorized");
        H_ASSERT_HDR(r, "WWW-Authenticate", "Bearer realm=\"pcsig\"");
        H_ASSERT_NO_HDR(r, "Pragma");
        h_resp_free(r);
    }
    const char *accepted[] = {"Bearer cli-token", "Bearer first-token", "bearer second-token"};
    for (size_t i = 0; i < 3; i++) {
        h_resp_t *r = sign_in_with(&s, "ok", accepted[i]);
        H_ASSERT_STATUS(r, 200, "Added");
        H_ASSERT_PRAGMA(r, i + 1); /* refused attempts took no id */
        h_resp_free(r);
    }
    /* Only sign-in is guarded: a member's own requests need no bearer token. */
    h_resp_t *r = h_wait_once(&s, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    unlink(path);

    /* An empty token file is a start-up error, not an open door. */
    char empty[] = "/tmp/pcsig-tokens-XXXXXX";
    fd = mkstemp(empty);
    assert_true(fd >= 0);
    close(fd);
    const char *args[] = {"--auth-token-file", empty, NULL};
    char err[512];
    assert_int_not_equal(h_run_server_cmd(args, err, sizeof err, 10000), 0);
    unlink(empty);
    h_pass();
}

static void test_secure_ids(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--secure-ids", (char *)NULL);
    h_resp_t *r = h_request_str(&s, "GET /sign_in?alice HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "Added");
    const char *tok = h_hdr(r, "X-Pcsig-Token");
    assert_non_null(tok);
    assert_int_equal(strlen(tok), 32);
    char alice_tok[40];
    snprintf(alice_tok, sizeof alice_tok, "%s", tok);
    assert_true(h_head_has(r, "\r\nAccess-Control-Expose-Headers: Content-Length, X-Pcsig-Token\r\n"));
    h_resp_free(r);
    r = h_request_str(&s, "GET /sign_in?bob HTTP/1.0\r\n\r\n");
    char bob_tok[40];
    snprintf(bob_tok, sizeof bob_tok, "%s", h_hdr(r, "X-Pcsig-Token"));
    assert_string_not_equal(alice_tok, bob_tok);
    h_resp_free(r);

    /* Without, with a wrong or a malformed token: 403, nothing happens. */
    char req[512];
    const char *bad[] = {"", "&token=00000000000000000000000000000000", "&token=zz", "&token="};
    for (size_t i = 0; i < 4; i++) {
        snprintf(req, sizeof req, "GET /wait?peer_id=1%s HTTP/1.0\r\n\r\n", bad[i]);
        r = h_request_str(&s, req);
        H_ASSERT_STATUS(r, 403, "Forbidden");
        h_resp_free(r);
    }
    /* bob cannot speak as alice, nor sign her out, with his own token. */
    snprintf(req, sizeof req,
             "POST /message?peer_id=1&to=2 HTTP/1.0\r\nX-Pcsig-Token: %s\r\n"
             "Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nspoof", bob_tok);
    r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 403, "Forbidden");
    h_resp_free(r);
    snprintf(req, sizeof req, "GET /sign_out?peer_id=1&token=%s HTTP/1.0\r\n\r\n", bob_tok);
    r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 403, "Forbidden");
    h_resp_free(r);

    /* With her token (query or header, either case of hex) alice works. */
    snprintf(req, sizeof req, "GET /wait?peer_id=1&token=%s HTTP/1.0\r\n\r\n", alice_tok);
    r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_BODY(r, "bob,2,1\n"); /* her queue was intact after the refusals */
    h_resp_free(r);
    snprintf(req, sizeof req,
             "POST /message?peer_id=2&to=1 HTTP/1.0\r\nX-Pcsig-Token: %s\r\n"
             "Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", bob_tok);
    r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    for (char *p = alice_tok; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    snprintf(req, sizeof req, "GET /wait?peer_id=1 HTTP/1.0\r\nX-Pcsig-Token: %s\r\n\r\n", alice_tok);
    r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 2);
    H_ASSERT_BODY(r, "hello");
    h_resp_free(r);

    /* A browser's preflight may send the header. */
    r = h_request_str(&s, "OPTIONS /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    assert_true(h_head_has(r, "\r\nAccess-Control-Allow-Headers: Content-Type, Content-Length, "
                              "Connection, Cache-Control, X-Pcsig-Token\r\n"));
    h_resp_free(r);
    /* Unknown ids are still "unknown", not "forbidden". */
    r = h_request_str(&s, "GET /wait?peer_id=77 HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 500, "Sorry");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_rate_limits(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--rate-limit", "2", "--max-conns-per-ip", "4", (char *)NULL);
    /* A burst of twice the rate passes, then 429 with Retry-After. */
    int ok = 0, limited = 0;
    for (int i = 0; i < 30; i++) {
        h_resp_t *r = h_request_str(&s, "OPTIONS / HTTP/1.0\r\n\r\n");
        if (r->status == 200) {
            ok++;
        } else {
            H_ASSERT_STATUS(r, 429, "Too Many Requests");
            H_ASSERT_HDR(r, "Retry-After", "1");
            limited++;
        }
        h_resp_free(r);
    }
    /* The burst (4) always passes; 30 requests outrun a 2/s refill unless
     * they take over 13 s. */
    assert_true(ok >= 4);
    assert_true(limited > 0);
    if (!h_tls_mode()) {
        /* The fifth connection from one address is refused with 429. */
        h_conn_t *c[5];
        for (int i = 0; i < 4; i++)
            c[i] = h_connect(&s);
        c[4] = h_connect(&s);
        h_resp_t *r = h_read(c[4]);
        H_ASSERT_STATUS(r, 429, "Too Many Requests");
        h_resp_free(r);
        h_expect_eof(c[4], H_TIMEOUT_MS);
        for (int i = 0; i < 5; i++)
            h_close(c[i]);
    }
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_auth_token),
        H_TEST(test_secure_ids),
        H_TEST(test_rate_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
