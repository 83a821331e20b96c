/*
 * Access control: --auth-token / --auth-token-file on /sign_in (401), and
 * --secure-ids: a secret per member that /wait, /message and /sign_out must
 * present (403 otherwise), so ids can no longer be spoofed; neither kind of
 * secret ever reaches the log, and untrusted bytes reach it escaped; the
 * per-address limits (429) refill and hold one address only.
 */
#include "harness.h"
#include "strlit.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "tls.h"

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

/* Where a request carries its --secure-ids token. */
enum tok_at { TOK_NONE, TOK_QUERY, TOK_HEADER };

/* As member id: GET /wait or /sign_out, or POST /message to `to` ("spoof"),
 * with tok placed as `at` says; the response. */
static h_resp_t *as_member(const h_server_t *s, const char *what, uint64_t id, uint64_t to,
                           enum tok_at at, const char *tok)
{
    char query[256] = "", header[256] = "", req[1024];
    if (at == TOK_QUERY)
        snprintf(query, sizeof query, "&token=%s", tok);
    else if (at == TOK_HEADER)
        snprintf(header, sizeof header, "X-Pcsig-Token: %s\r\n", tok);
    if (strcmp(what, "message") == 0)
        snprintf(req, sizeof req,
                 "POST /message?peer_id=%llu&to=%llu%s HTTP/1.0\r\n%sContent-Length: 5\r\n"
                 "Content-Type: text/plain\r\n\r\nspoof",
                 (unsigned long long)id, (unsigned long long)to, query, header);
    else
        snprintf(req, sizeof req, "GET /%s?peer_id=%llu%s HTTP/1.0\r\n%s\r\n", what,
                 (unsigned long long)id, query, header);
    return h_request_str(s, req);
}

/* Sign in name on a --secure-ids server (auth: the Authorization value or
 * NULL); the issued token into tok (33 bytes), the id returned. */
static uint64_t secure_sign_in(const h_server_t *s, const char *name, const char *auth, char *tok)
{
    h_resp_t *r = sign_in_with(s, name, auth);
    H_ASSERT_STATUS(r, 200, "Added");
    const char *t = h_hdr(r, "X-Pcsig-Token");
    if (!t || strlen(t) != 32)
        fail_msg("no 32-digit X-Pcsig-Token; head:\n%s", r->head);
    memcpy(tok, t, 33);
    long long id = h_hdr_num(r, "Pragma");
    assert_true(id > 0);
    h_resp_free(r);
    return (uint64_t)id;
}

static void test_secure_ids_refusals(void **state)
{
    (void)state;
    h_server_t s;
    /* Many refused requests (over TLS, a handshake each) come before alice
     * waits: a member timeout they cannot outlast, whatever the load. */
    h_server_start(&s, "--secure-ids", "--member-timeout", "600", (char *)NULL);
    char alice_tok[33], bob_tok[33];
    uint64_t alice = secure_sign_in(&s, "alice", NULL, alice_tok);
    uint64_t bob = secure_sign_in(&s, "bob", NULL, bob_tok);

    /* Every request an attacker could make for alice's id (her /wait and
     * /sign_out) or for bob's (a /message to alice in his name): no token,
     * the other member's, a wrong one of the right length, the right one cut
     * or extended to other lengths, not hex, or empty. Header or query. */
    struct {
        const char *what;
        uint64_t id;
        const char *own;
        const char *other;
    } target[] = {
        {"wait", alice, alice_tok, bob_tok},
        {"sign_out", alice, alice_tok, bob_tok},
        {"message", bob, bob_tok, alice_tok},
    };
    for (size_t t = 0; t < sizeof target / sizeof *target; t++) {
        h_resp_t *r = as_member(&s, target[t].what, target[t].id, alice, TOK_NONE, NULL);
        H_ASSERT_STATUS(r, 403, "Forbidden");
        h_resp_free(r);
        char bad[8][80];
        snprintf(bad[0], sizeof bad[0], "%s", target[t].other);
        snprintf(bad[1], sizeof bad[1], "00000000000000000000000000000000");
        snprintf(bad[2], sizeof bad[2], "%.30s", target[t].own);
        snprintf(bad[3], sizeof bad[3], "%.31s", target[t].own);
        snprintf(bad[4], sizeof bad[4], "%s0", target[t].own);
        snprintf(bad[5], sizeof bad[5], "%s00", target[t].own);
        snprintf(bad[6], sizeof bad[6], "%s%s", target[t].own, target[t].own);
        snprintf(bad[7], sizeof bad[7], "%.31sg", target[t].own);
        for (size_t b = 0; b < 8; b++) {
            for (enum tok_at at = TOK_QUERY; at <= TOK_HEADER; at++) {
                r = as_member(&s, target[t].what, target[t].id, alice, at, bad[b]);
                if (r->status != 403)
                    fail_msg("%s as %llu with token \"%s\" in the %s: %d, not 403",
                             target[t].what, (unsigned long long)target[t].id, bad[b],
                             at == TOK_QUERY ? "query" : "header", r->status);
                h_resp_free(r);
            }
        }
        r = as_member(&s, target[t].what, target[t].id, alice, TOK_QUERY, "");
        H_ASSERT_STATUS(r, 403, "Forbidden");
        h_resp_free(r);
    }

    /* Nothing of that happened: alice is still in, her queue holds bob's
     * join and then only what bob really sends. */
    h_resp_t *r = as_member(&s, "wait", alice, 0, TOK_HEADER, alice_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_BODY(r, "bob,2,1\n");
    h_resp_free(r);
    char req[512];
    snprintf(req, sizeof req,
             "POST /message?peer_id=%llu&to=%llu&token=%s HTTP/1.0\r\nContent-Length: 5\r\n"
             "Content-Type: text/plain\r\n\r\nhello",
             (unsigned long long)bob, (unsigned long long)alice, bob_tok);
    r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 200, "OK"); /* the token as a query parameter */
    h_resp_free(r);
    r = as_member(&s, "wait", alice, 0, TOK_QUERY, alice_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, bob);
    H_ASSERT_BODY(r, "hello");
    h_resp_free(r);

    /* Sign-out with the token as a query parameter, then as a header. */
    r = as_member(&s, "sign_out", alice, 0, TOK_QUERY, alice_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = as_member(&s, "wait", bob, 0, TOK_QUERY, bob_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_BODY(r, "alice,1,0\n");
    h_resp_free(r);
    r = as_member(&s, "sign_out", bob, 0, TOK_HEADER, bob_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* ---- the log ---------------------------------------------------------------- */

/* The server's stderr as a NUL-terminated string (the caller frees; *len its
 * length, NULs included), or NULL when not captured (PCSIG_TEST_VERBOSE). */
static char *read_log(const h_server_t *s, size_t *len)
{
    if (!s->log_path[0])
        return NULL;
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        fail_msg("cannot open %s", s->log_path);
    size_t cap = 1 << 16, n;
    char *t = malloc(cap);
    assert_non_null(t);
    *len = 0;
    while ((n = fread(t + *len, 1, cap - 1 - *len, f)) > 0) {
        *len += n;
        if (*len == cap - 1) {
            cap *= 2;
            t = realloc(t, cap);
            assert_non_null(t);
        }
    }
    fclose(f);
    t[*len] = '\0';
    return t;
}

/* Fail when the log holds secret in any letter case. */
static void assert_not_logged(const char *log, size_t len, const char *secret, const char *what)
{
    char *low = malloc(len + 1), want[128];
    assert_non_null(low);
    for (size_t i = 0; i <= len; i++)
        low[i] = (char)tolower((unsigned char)log[i]);
    size_t n = strlen(secret);
    assert_true(n > 0 && n < sizeof want);
    for (size_t i = 0; i <= n; i++)
        want[i] = (char)tolower((unsigned char)secret[i]);
    const char *at = memmem(low, len, want, n);
    free(low);
    if (at)
        fail_msg("%s \"%s\" is in the log:\n%s", what, secret, log);
}

static void assert_logged(const char *log, size_t len, const char *lit, const char *what)
{
    if (!memmem(log, len, lit, strlen(lit)))
        fail_msg("%s (%s) is not in the log:\n%s", what, lit, log);
}

#define AUTH_SECRET "hB-Sekr1t-Qz7wX4"
#define WRONG_BEARER "hB-Wr0ng-Vk2pL9"

/* One session of everything a member does, plus refused attempts, against a
 * server logging at debug with every request in the access log, in one log
 * format; then the log is searched. */
static void secrets_not_logged(const char *format)
{
    h_server_t s;
    h_server_start(&s, "--secure-ids", "--auth-token", AUTH_SECRET, "--log-level", "debug",
                   "--access-log", "1", "--log-format", format, (char *)NULL);
    bool json = strcmp(format, "json") == 0;
    char alice_tok[33], bob_tok[33];
    uint64_t alice = secure_sign_in(&s, "alice", "Bearer " AUTH_SECRET, alice_tok);
    uint64_t bob = secure_sign_in(&s, "bob", "Bearer " AUTH_SECRET, bob_tok);
    h_resp_t *r = sign_in_with(&s, "mallory", "Bearer " WRONG_BEARER);
    H_ASSERT_STATUS(r, 401, "Unauthorized");
    h_resp_free(r);
    r = as_member(&s, "wait", alice, 0, TOK_HEADER, alice_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    char req[512];
    snprintf(req, sizeof req,
             "POST /message?peer_id=%llu&to=%llu&token=%s HTTP/1.0\r\nContent-Length: 5\r\n"
             "Content-Type: text/plain\r\n\r\nhello",
             (unsigned long long)bob, (unsigned long long)alice, bob_tok);
    r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = as_member(&s, "wait", alice, 0, TOK_QUERY, alice_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    /* Wrong secure-id tokens: bob's for alice, in either place. */
    for (enum tok_at at = TOK_QUERY; at <= TOK_HEADER; at++) {
        r = as_member(&s, "wait", alice, 0, at, bob_tok);
        H_ASSERT_STATUS(r, 403, "Forbidden");
        h_resp_free(r);
    }
    /* Untrusted bytes in the logged path: a quote, and ESC + a high-bit
     * byte (the request target takes raw bytes; the log must escape them). */
    r = h_request_str(&s, "GET /q\"uote HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 404, "Not Found");
    h_resp_free(r);
    r = h_request_str(&s, "GET /e\x1b[31mred\xff HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 404, "Not Found"); /* raw target bytes reach the router */
    h_resp_free(r);
    r = as_member(&s, "sign_out", bob, 0, TOK_HEADER, bob_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    r = as_member(&s, "sign_out", alice, 0, TOK_QUERY, alice_tok);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);

    size_t len;
    char *log = read_log(&s, &len);
    if (!log) {
        fprintf(stderr, "note: PCSIG_TEST_VERBOSE: the server log is not captured; not checked\n");
        return;
    }
    /* The log did record the session at debug level, in this format. */
    assert_logged(log, len, json ? "\"event\":\"sign_in\"" : "] sign_in ", "the debug sign-in");
    assert_logged(log, len, json ? "\"status\":401" : " status=401 ", "the refused sign-in");
    assert_logged(log, len, json ? "\"status\":403" : " status=403 ", "the refused /wait");
    assert_logged(log, len, json ? "\"path\":\"/message\"" : " path=\"/message\"", "the /message");
    /* ... and no secret of it. */
    assert_not_logged(log, len, AUTH_SECRET, "--auth-token");
    assert_not_logged(log, len, WRONG_BEARER, "a refused bearer token");
    assert_not_logged(log, len, alice_tok, "alice's X-Pcsig-Token");
    assert_not_logged(log, len, bob_tok, "bob's X-Pcsig-Token");
    /* Untrusted bytes are escaped: the quote cannot end the path field, no
     * raw ESC can colour a terminal, no raw high-bit byte reaches it. */
    assert_logged(log, len, "/q\\\"uote", "the escaped quote");
    if (memmem(log, len, STRLIT("/q\"uote")))
        fail_msg("a raw quote in the log:\n%s", log);
    if (memchr(log, 0x1b, len) || memchr(log, 0xff, len))
        fail_msg("a raw ESC or 0xff byte in the log:\n%s", log);
    assert_logged(log, len, json ? "/e\\u001b[31mred\\u00ff" : "/e\\x1b[31mred\\xff",
                  "the escaped ESC path");
    free(log);
}

static void test_secrets_not_logged(void **state)
{
    (void)state;
    secrets_not_logged("text");
    secrets_not_logged("json");
    h_pass();
}

/* ---- rate limits ------------------------------------------------------------ */

static tls_client_t *tls_from; /* TLS mode: the client of status_from */

/* One HTTP/1.0 request (TLS in TLS mode) from the local address src to the
 * server; the answer's status (fails the test when none comes). */
static int status_from(const h_server_t *s, const char *src, const char *req)
{
    char why[256];
    if (h_tls_mode() && !tls_from) {
        struct tls_client_options o = {.ca_file = h_tls_ca()};
        if (tls_client_new(&o, &tls_from, why, sizeof why) < 0)
            fail_msg("tls_client_new: %s", why);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        fail_msg("bind to %s: errno %d", src, errno);
    a.sin_port = htons(s->port);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        fail_msg("connect from %s: errno %d", src, errno);
    conn_t *c = h_tls_mode() ? tls_client_wrap(tls_from, fd, "localhost") : conn_plain_new(fd);
    assert_non_null(c);
    if (conn_handshake_timed(c, H_TIMEOUT_MS) < 0)
        fail_msg("TLS handshake from %s: %s", src, conn_error(c));
    assert_int_equal(conn_write_all_timed(c, req, strlen(req), H_TIMEOUT_MS), 0);
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    /* HTTP/1.0: the answer ends with the connection. */
    while (len < sizeof buf - 1 && (n = conn_read_timed(c, buf + len, sizeof buf - 1 - len,
                                                        H_TIMEOUT_MS)) > 0)
        len += (size_t)n;
    conn_close(c);
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %3d ", &status) != 1 || !strstr(buf, "\r\n\r\n"))
        fail_msg("no answer from %s: \"%s\"", src, buf);
    return status;
}

static void test_rate_limit_refill_and_per_address(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--rate-limit", "2", (char *)NULL);
    /* 127.0.0.1 spends its burst (4) and more: 429. */
    int limited = 0;
    for (int i = 0; i < 200 && !limited; i++) {
        h_resp_t *r = h_request_str(&s, "OPTIONS / HTTP/1.0\r\n\r\n");
        limited = r->status == 429;
        if (!limited)
            H_ASSERT_STATUS(r, 200, "OK");
        h_resp_free(r);
    }
    assert_true(limited);
    /* Another address has a bucket of its own: its whole burst passes while
     * 127.0.0.1 is limited (one shared bucket would refuse after at most two
     * refills, i.e. more than 1 s: four requests take far less). */
    for (int i = 0; i < 4; i++)
        assert_int_equal(status_from(&s, "127.0.0.2", "OPTIONS / HTTP/1.0\r\n\r\n"), 200);
    /* The bucket refills (2/s): 127.0.0.1 is served again, without assuming
     * when; every refusal until then says when to retry. */
    uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    int status = 429;
    while (status == 429 && h_now_ms() < deadline) {
        h_resp_t *r = h_request_str(&s, "OPTIONS / HTTP/1.0\r\n\r\n");
        status = r->status;
        if (status == 429) {
            H_ASSERT_HDR(r, "Retry-After", "1");
            poll(NULL, 0, 50);
        } else {
            H_ASSERT_STATUS(r, 200, "OK");
        }
        h_resp_free(r);
    }
    assert_int_equal(status, 200);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_conn_limit_per_address(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--max-conns-per-ip", "2", (char *)NULL);
    h_conn_t *c[3] = {h_connect(&s), h_connect(&s), NULL};
    {
        /* 127.0.0.1 is at its limit (on a TLS port the 429 comes through TLS). */
        c[2] = h_connect(&s);
        h_resp_t *r = h_read(c[2]);
        H_ASSERT_STATUS(r, 429, "Too Many Requests");
        h_resp_free(r);
        h_expect_eof(c[2], H_TIMEOUT_MS);
    }
    /* ... while 127.0.0.2 is served. */
    assert_int_equal(status_from(&s, "127.0.0.2", "OPTIONS / HTTP/1.0\r\n\r\n"), 200);
    /* And 127.0.0.1's open connections still work. */
    h_send_str(c[0], "OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n");
    h_resp_t *r = h_read(c[0]);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    for (int i = 0; i < 3; i++)
        h_close(c[i]);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* The metrics port the server wrote to path (fails the test otherwise). */
static uint16_t read_port_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("no port file %s: errno %d", path, errno);
    unsigned port = 0;
    int n = fscanf(f, "%u", &port);
    fclose(f);
    if (n != 1 || port == 0 || port > 65535)
        fail_msg("bad port file %s", path);
    return (uint16_t)port;
}

/* pcsig_open_connections, scraped on the keep-alive connection m to the
 * metrics port (exempt from the per-address limits; counted itself). */
static long open_connections(h_conn_t *m)
{
    h_send_str(m, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    h_resp_t *r = h_read(m);
    H_ASSERT_STATUS(r, 200, "OK");
    const char *at = strstr(r->body, "\npcsig_open_connections ");
    assert_non_null(at);
    long open = strtol(at + strlen("\npcsig_open_connections "), NULL, 10);
    h_resp_free(r);
    return open;
}

/* Scrape until want connections are open (the scrape included): the server
 * closes a finished connection, and gives its per-address slot back, on
 * its own schedule, which can be after the client has read the answer. */
static void await_open_connections(h_conn_t *m, long want)
{
    uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    long open;
    while ((open = open_connections(m)) != want) {
        if (h_now_ms() > deadline)
            fail_msg("%ld connections open after %d ms, not %ld", open, H_TIMEOUT_MS, want);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Whether c has bytes or EOF to read now (a refusal's 429). */
static bool readable_now(h_conn_t *c)
{
    if (h_pending(c))
        return true;
    struct pollfd p = {.fd = h_fd(c), .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void test_rate_limits(void **state)
{
    (void)state;
    h_server_t s;
    char pf[] = "/tmp/pcsig-metrics-port-XXXXXX";
    int fd = mkstemp(pf);
    assert_true(fd >= 0);
    close(fd);
    h_server_start(&s, "--rate-limit", "2", "--max-conns-per-ip", "4", "--metrics-bind",
                   "127.0.0.1:0", "--metrics-port-file", pf, (char *)NULL);
    uint16_t mport = read_port_file(pf);
    unlink(pf);
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
    {
        /* The fifth connection from one address is refused with 429 (over
         * TLS on a TLS port). First the four hold their slots for sure: the
         * 30 above give theirs back on the server's schedule, and if one of
         * the four took a 429 meanwhile, it freed no slot for the fifth to
         * take; it is opened again. The server counts a connection open
         * only while it holds its slot, so 4 + the scrape open = 4 slots. */
        h_conn_t *m = h_connect_plain(mport);
        await_open_connections(m, 1);
        h_conn_t *c[5];
        for (int i = 0; i < 4; i++)
            c[i] = h_connect(&s);
        uint64_t deadline = h_now_ms() + H_TIMEOUT_MS;
        while (open_connections(m) != 5) {
            for (int i = 0; i < 4; i++) {
                if (readable_now(c[i])) {
                    h_close(c[i]);
                    c[i] = h_connect(&s);
                }
            }
            if (h_now_ms() > deadline)
                fail_msg("the four connections were not all held within %d ms", H_TIMEOUT_MS);
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
        h_close(m);
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
        H_TEST(test_secure_ids_refusals),
        H_TEST(test_secrets_not_logged),
        H_TEST(test_rate_limits),
        H_TEST(test_rate_limit_refill_and_per_address),
        H_TEST(test_conn_limit_per_address),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(tls_from);
    return failed;
}
