/*
 * Integration, hostile clients: control, DEL and high-bit bytes everywhere in a
 * head, bad peer_id and to values, and nasty names.
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

enum where { IN_METHOD, IN_METHOD_END, IN_PATH, IN_QUERY, IN_HNAME, IN_HVALUE, N_WHERE };

static const char *const where_name[N_WHERE] = {"method", "end of method", "path",
                                                "query", "header name", "header value"};

/* Bytes a request-target refuses (http.h); every other byte is kept raw. */
static bool target_refuses(unsigned char b)
{
    return b == 0x00 || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r' ||
           b == ' ';
}

/* What a name keeps of byte b: control bytes and DEL become '_', as ',' does. */
static char name_byte(unsigned char b)
{
    return b < 0x20 || b == 0x7f || b == ',' ? '_' : (char)b;
}

/* One request with byte b at w on a new connection: its answer (EOF after a 400). */
static h_resp_t *control_byte_request(const h_server_t *srv, const pair_t *p, int w,
                                      unsigned char b)
{
    char req[256];
    int n;
    switch (w) {
    case IN_METHOD:
        n = snprintf(req, sizeof req, "G%cT /sign_in?m HTTP/1.1\r\nHost: x\r\n\r\n", b);
        break;
    case IN_METHOD_END:
        n = snprintf(req, sizeof req,
                     "POST%c /message?peer_id=%" PRIu64 "&to=%" PRIu64
                     " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
                     b, p->id[0], p->id[1]);
        break;
    case IN_PATH:
        n = snprintf(req, sizeof req, "GET /sign%cin?p HTTP/1.1\r\nHost: x\r\n\r\n", b);
        break;
    case IN_QUERY:
        n = snprintf(req, sizeof req, "GET /sign_in?q%cq HTTP/1.1\r\nHost: x\r\n\r\n", b);
        break;
    case IN_HNAME:
        n = snprintf(req, sizeof req,
                     "GET /sign_in?n HTTP/1.1\r\nHost: x\r\nX-Na%cme: v\r\n\r\n", b);
        break;
    default:
        n = snprintf(req, sizeof req,
                     "GET /sign_in?v%02x HTTP/1.1\r\nHost: x\r\nX-Value: a%cb\r\n\r\n", b, b);
        break;
    }
    /* snprintf stops at nothing: %c with 0 writes a NUL we keep. */
    assert_true(n > 0 && (size_t)n < sizeof req);
    h_at(__FILE__, __LINE__);
    h_conn_t *c = h_connect(srv);
    h_send(c, req, (size_t)n);
    h_resp_t *r = h_read(c);
    if (r->status == 400) {
        H_ASSERT_HDR(r, "Connection", "close");
        h_expect_eof(c, H_TIMEOUT_MS);
    }
    h_close(c);
    return r;
}

/* req gets a 400 whose one-line reason names the parameter key. */
#define expect_bad_id(srv, req, n, key) expect_bad_id_at(__LINE__, (srv), (req), (n), (key))

static void expect_bad_id_at(int line, const h_server_t *srv, const char *req, int n,
                             const char *key)
{
    char quoted[32];
    snprintf(quoted, sizeof quoted, "'%s'", key);
    assert_true(n > 0 && (size_t)n < 256);
    h_at(__FILE__, line);
    h_resp_t *r = h_request_(srv, req, (size_t)n);
    if (r->status != 400 || !strstr(r->body, quoted))
        fail_msg("%s:%d: \"%s\": expected 400 naming %s, got %d %s: %s", __FILE__, line,
                 show(req, (size_t)n), quoted, r->status, r->reason, show(r->body, r->body_len));
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    h_resp_free(r);
}

/*
 * Every byte class in every place of a head. Refused (400, then EOF): any
 * of them in the method or a header name; NUL, CR, LF, HTAB, VT and FF in
 * the target; CTLs but HTAB in a header value. Accepted: other control
 * bytes, DEL and high-bit bytes in the target, where a sign-in name keeps
 * high-bit bytes raw and turns control bytes and DEL into '_' (alice and
 * bob hear exactly those bytes), and a path byte makes an unknown path
 * (404); HTAB and obs-text in a header value. Ids with such bytes get a
 * 400 naming the parameter (a lenient reading of "<bob's id>\x80" would
 * sign bob out or displace a /wait). The pair is served throughout.
 */
static void test_control_bytes(void **state)
{
    (void)state;
    static const unsigned char bytes[] = {0x00, 0x01, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
                                          0x1b, 0x1f, 0x7f, 0x80, 0xa0, 0xc3, 0xff};
    h_server_t srv;
    h_server_start(&srv, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    char joins[4096]; /* every join after bob's, as alice and bob must hear them */
    size_t jn = 0;
    unsigned count = 0, named = 0, valued = 0, not_found = 0;
    for (int w = 0; w < N_WHERE; w++) {
        for (size_t k = 0; k < sizeof bytes; k++) {
            unsigned char b = bytes[k];
            int want = 400;
            if (w == IN_PATH && !target_refuses(b))
                want = 404;
            else if (w == IN_QUERY && !target_refuses(b))
                want = 200;
            else if (w == IN_HVALUE && (b == 0x09 || b >= 0x80))
                want = 200;
            h_resp_t *r = control_byte_request(&srv, p, w, b);
            if (r->status != want)
                fail_msg("byte 0x%02x in the %s: expected %d, got %d %s: %s", b, where_name[w],
                         want, r->status, r->reason, show(r->body, r->body_len));
            if (want == 200) {
                H_ASSERT_STATUS(r, 200, "Added");
                long long id = h_hdr_num(r, "Pragma");
                char own[64];
                int on = w == IN_QUERY
                             ? snprintf(own, sizeof own, "q%cq,%lld,1\n", name_byte(b), id)
                             : snprintf(own, sizeof own, "v%02x,%lld,1\n", b, id);
                /* the own entry first, byte for byte */
                if (r->body_len < (size_t)on || memcmp(r->body, own, (size_t)on) != 0)
                    fail_msg("byte 0x%02x in the %s: own entry \"%s\", expected \"%s\"", b,
                             where_name[w], show(r->body, r->body_len), show(own, (size_t)on));
                assert_true(jn + (size_t)on < sizeof joins);
                memcpy(joins + jn, own, (size_t)on);
                jn += (size_t)on;
                joins[jn] = '\0';
                if (w == IN_QUERY)
                    named++;
                else
                    valued++;
            } else if (want == 404) {
                not_found++;
            }
            h_resp_free(r);
            ASSERT_ALIVE(&srv);
            if (++count % 12 == 0)
                pair_exchange(p);
        }
    }
    assert_int_equal(named, 9);
    assert_int_equal(valued, 5);
    assert_int_equal(not_found, 9);

    /* Ids are parsed strictly: raw bytes in them are a 400 that says which.
     * The /waits name alice, whose parked /wait a lenient server would
     * displace; the sign-outs and the message name bob. */
    uint64_t a = p->id[0], b = p->id[1];
    char req[256];
    int n = snprintf(req, sizeof req, "GET /wait?peer_id=\x80 HTTP/1.0\r\n\r\n");
    expect_bad_id(&srv, req, n, "peer_id");
    n = snprintf(req, sizeof req, "GET /wait?peer_id=%" PRIu64 "\xc3\xa9 HTTP/1.0\r\n\r\n", a);
    expect_bad_id(&srv, req, n, "peer_id");
    n = snprintf(req, sizeof req, "GET /sign_out?peer_id=%" PRIu64 "\x01 HTTP/1.0\r\n\r\n", b);
    expect_bad_id(&srv, req, n, "peer_id");
    n = snprintf(req, sizeof req, "GET /sign_out?peer_id=\x7f%" PRIu64 " HTTP/1.0\r\n\r\n", b);
    expect_bad_id(&srv, req, n, "peer_id");
    n = snprintf(req, sizeof req,
                 "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 "\xff HTTP/1.0\r\n"
                 "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
                 a, b);
    expect_bad_id(&srv, req, n, "to");

    ASSERT_ALIVE(&srv);
    pair_exchange(p);
    pair_until(p, H_TIMEOUT_MS, both_noted, "vff,", "alice and bob hear the last sign-in");
    char want_alice[4200];
    snprintf(want_alice, sizeof want_alice, "bob,%" PRIu64 ",1\n%s", b, joins);
    pair_expect_notes(p, 0, want_alice);
    pair_expect_notes(p, 1, joins);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

enum id_kind { K_WAIT, K_SIGN_OUT, K_FROM, K_TO, N_KIND };

static void test_bad_ids(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    uint64_t a = p->id[0], b = p->id[1];
    /* K is the key; DUP a real member's id (a lenient server would sign
     * alice out or displace bob's /wait). */
    static const char *const bad[] = {
        "K=-1", "K=99999999999999999999", "K=18446744073709551616", "K=2147483648",
        "K=abc", "K=1abc", "K=0", "K=00", "K=", "K", "K=+1", "K=1.0", "K=0x1",
        "K=%31", "K=1%00", "xK=1", "K=DUP&K=DUP", "K=DUP&K=1", "",
    };
    unsigned count = 0;
    for (int k = 0; k < N_KIND; k++) {
        const char *key = k == K_TO ? "to" : "peer_id";
        uint64_t dup = k == K_WAIT ? b : a;
        for (size_t v = 0; v < sizeof bad / sizeof bad[0]; v++) {
            char expr[128], req[512];
            size_t e = 0;
            for (const char *t = bad[v]; *t && e + 24 < sizeof expr; t++) {
                if (*t == 'K') {
                    e += (size_t)snprintf(expr + e, sizeof expr - e, "%s", key);
                } else if (strncmp(t, STRLIT("DUP")) == 0) {
                    e += (size_t)snprintf(expr + e, sizeof expr - e, "%" PRIu64, dup);
                    t += 2;
                } else {
                    expr[e++] = *t;
                }
            }
            expr[e] = '\0';
            int n;
            switch (k) {
            case K_WAIT:
                n = snprintf(req, sizeof req, "GET /wait?%s HTTP/1.0\r\n\r\n", expr);
                break;
            case K_SIGN_OUT:
                n = snprintf(req, sizeof req, "GET /sign_out?%s HTTP/1.0\r\n\r\n", expr);
                break;
            case K_FROM:
                n = snprintf(req, sizeof req,
                             "POST /message?%s&to=%" PRIu64 " HTTP/1.0\r\n"
                             "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
                             expr, b);
                break;
            default:
                n = snprintf(req, sizeof req,
                             "POST /message?peer_id=%" PRIu64 "&%s HTTP/1.0\r\n"
                             "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
                             a, expr);
                break;
            }
            h_resp_t *r = h_request(&srv, req, (size_t)n);
            char quoted[16];
            snprintf(quoted, sizeof quoted, "'%s'", key);
            if (r->status != 400 || strcmp(r->reason, "Bad Request") != 0 ||
                !strstr(r->body, quoted) || r->body[r->body_len - 1] != '\n')
                fail_msg("\"%s\": expected 400 naming %s, got %d %s: %s", show(req, (size_t)n),
                         quoted, r->status, r->reason, show(r->body, r->body_len));
            H_ASSERT_HDR(r, "Content-Type", "text/plain");
            H_ASSERT_NO_HDR(r, "Pragma");
            h_resp_free(r);
            if (++count % 16 == 0)
                pair_exchange(p);
        }
    }
    ASSERT_ALIVE(&srv);
    pair_exchange(p);

    /* Well-formed ids of nobody: 500, as documented. */
    static const char sorry[] = "<html><body>Sorry, not yet implemented</body></html>";
    static const char gone[] = "Peer most likely gone.";
    struct {
        char req[256];
        const char *reason, *body;
    } unknown[6];
    snprintf(unknown[0].req, 256, "GET /wait?peer_id=999999 HTTP/1.0\r\n\r\n");
    snprintf(unknown[1].req, 256, "GET /wait?peer_id=2147483647 HTTP/1.0\r\n\r\n");
    snprintf(unknown[2].req, 256, "GET /sign_out?peer_id=999999 HTTP/1.0\r\n\r\n");
    snprintf(unknown[3].req, 256,
             "POST /message?peer_id=999999&to=%" PRIu64 " HTTP/1.0\r\nContent-Length: 1\r\n\r\nx",
             b);
    snprintf(unknown[4].req, 256,
             "POST /message?peer_id=%" PRIu64 "&to=999999 HTTP/1.0\r\nContent-Length: 1\r\n\r\nx",
             a);
    snprintf(unknown[5].req, 256,
             "POST /message?peer_id=%" PRIu64 "&to=2147483647 HTTP/1.0\r\nContent-Length: 1\r\n\r\nx",
             a);
    for (size_t i = 0; i < 6; i++) {
        unknown[i].reason = i < 3 ? "Sorry" : "Error";
        unknown[i].body = i < 3 ? sorry : gone;
    }
    for (size_t i = 0; i < 6; i++) {
        const char *req = unknown[i].req;
        size_t n = strlen(req);
        h_resp_t *r = h_request(&srv, req, n);
        if (r->status != 500 || strcmp(r->reason, unknown[i].reason) != 0 ||
            strcmp(r->body, unknown[i].body) != 0)
            fail_msg("\"%s\": expected 500 %s, got %d %s: %s", show(req, n), unknown[i].reason,
                     r->status, r->reason, show(r->body, r->body_len));
        h_resp_free(r);
    }

    /* Pipelined on one keep-alive connection: each error is answered in
     * order and the connection goes on; a body that looks like a request
     * stays a body. */
    h_conn_t *c = h_connect(&srv);
    h_sendf(c,
            "GET /wait?peer_id=abc HTTP/1.1\r\nHost: t\r\n\r\n"
            "POST /message?peer_id=%" PRIu64 "&to=-1 HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: text/plain\r\nContent-Length: 22\r\n\r\nGET /quit HTTP/1.1\r\n\r\n"
            "GET /sign_out?peer_id=%" PRIu64 "&peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n"
            "GET /wait?peer_id=999999 HTTP/1.1\r\nHost: t\r\n\r\n"
            "OPTIONS /end HTTP/1.1\r\nHost: t\r\n\r\n",
            a, b, b);
    static const int want[] = {400, 400, 400, 500, 200};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        h_resp_t *r = h_read(c);
        if (r->status != want[i])
            fail_msg("pipelined answer %zu: expected %d, got %d %s: %s", i, want[i], r->status,
                     r->reason, show(r->body, r->body_len));
        H_ASSERT_HDR(r, "Connection", "keep-alive");
        h_resp_free(r);
    }
    h_expect_silence(c, H_SILENCE_MS);
    h_close(c);

    ASSERT_ALIVE(&srv);
    char notes[64];
    snprintf(notes, sizeof notes, "bob,%" PRIu64 ",1\n", b);
    pair_expect_notes(p, 0, notes);
    pair_expect_notes(p, 1, "");
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

/* Every line of a member list: "name,id,0|1" with exactly two commas. */
static void check_list_lines(const char *what, const char *body, size_t len, size_t want_lines)
{
    size_t lines = 0;
    const char *s = body, *end = body + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            fail_msg("%s: unterminated last line \"%s\"", what, show(s, (size_t)(end - s)));
        size_t commas = 0;
        for (const char *q = s; q < nl; q++)
            commas += *q == ',';
        if (commas != 2)
            fail_msg("%s: line with %zu commas: \"%s\"", what, commas, show(s, (size_t)(nl - s)));
        lines++;
        s = nl + 1;
    }
    if (lines != want_lines)
        fail_msg("%s: %zu lines, expected %zu", what, lines, want_lines);
}

/*
 * Nasty names: ',' and control bytes become '_', non-ASCII bytes stay raw,
 * 512 bytes are kept (cut even inside a UTF-8 sequence), nothing is
 * decoded. Each sign-in's own entry, the whole list a later member gets,
 * and the joins alice and bob hear carry exactly those bytes.
 */
static void test_names(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);
    enum { NN = 20 };
    static char raw[NN][700], san[NN][700];
    int k = 0;
    snprintf(raw[k++], 700, "a,b");
    snprintf(raw[k++], 700, ",,,");
    snprintf(raw[k++], 700, "%%0A");
    snprintf(raw[k++], 700, "x%%0Ay,1,1%%0Az");
    snprintf(raw[k++], 700, "evil,99,1%%0D%%0Afake,100,1");
    snprintf(raw[k++], 700, "%%");
    snprintf(raw[k++], 700, "%%%%%%00");
    snprintf(raw[k++], 700, "%%ZZ");
    snprintf(raw[k++], 700, "a=b&c=d");
    memset(raw[k++], ',', 600); /* 600 commas */
    memset(raw[k], 'n', 600);   /* a comma at byte 512, the first one cut */
    raw[k++][511] = ',';
    memset(raw[k], 'q', 513); /* one byte over */
    k++;
    memset(raw[k], 'z', 600); /* a comma just past the cut */
    raw[k++][512] = ',';
    /* Non-ASCII bytes are kept raw, whether UTF-8 or not; control bytes
     * and DEL become '_' as ',' does; the cut is at byte 512 even inside
     * a UTF-8 sequence. */
    snprintf(raw[k++], 700, "caf\xc3\xa9");
    snprintf(raw[k++], 700, "\xe6\x97\xa5\xe6\x9c\xac@h\xc3\xb4te");
    snprintf(raw[k++], 700, "\xff\xfe\x80\xc0");
    snprintf(raw[k++], 700, "a\x01" "b\x1b[31mc\x7f");
    snprintf(raw[k++], 700, "\x1f,\x7f");
    for (int j = 0; j < 300; j++) /* 300 x U+00E9: 256 of them kept */
        memcpy(raw[k] + 2 * j, STRLIT("\xc3\xa9"));
    k++;
    raw[k][0] = 'x'; /* the cut splits the 256th U+00E9 */
    for (int j = 0; j < 300; j++)
        memcpy(raw[k] + 1 + 2 * j, STRLIT("\xc3\xa9"));
    k++;
    assert_int_equal(k, NN);
    for (int i = 0; i < NN; i++) {
        size_t n = strlen(raw[i]);
        if (n > 512)
            n = 512;
        for (size_t j = 0; j < n; j++)
            san[i][j] = name_byte((unsigned char)raw[i][j]);
        san[i][n] = '\0';
    }
    assert_int_equal(strlen(san[NN - 1]), 512);
    assert_memory_equal(san[NN - 1] + 509, "\xc3\xa9\xc3", 3); /* half a U+00E9 last */
    assert_string_equal(san[NN - 4], "a_b_[31mc_");
    char want_notes[NN * 600 + 64];
    size_t wn = (size_t)snprintf(want_notes, sizeof want_notes, "bob,%" PRIu64 ",1\n", p->id[1]);
    uint64_t ids[NN];
    for (int i = 0; i < NN; i++) {
        h_conn_t *c = h_connect(&srv);
        h_sendf(c, "GET /sign_in?%s HTTP/1.0\r\n\r\n", raw[i]);
        h_resp_t *r = h_read(c);
        h_close(c);
        H_ASSERT_STATUS(r, 200, "Added");
        ids[i] = (uint64_t)h_hdr_num(r, "Pragma");
        /* The list: own entry, alice, bob, the earlier names. */
        check_list_lines(raw[i], r->body, r->body_len, (size_t)i + 3);
        char own[700];
        int on = snprintf(own, sizeof own, "%s,%" PRIu64 ",1\n", san[i], ids[i]);
        if (r->body_len < (size_t)on || memcmp(r->body, own, (size_t)on) != 0)
            fail_msg("name \"%s\": own entry \"%s\", expected \"%s\"", show(raw[i], 60),
                     show(r->body, r->body_len < 80 ? r->body_len : 80), show(own, 80));
        h_resp_free(r);
        wn += (size_t)snprintf(want_notes + wn, sizeof want_notes - wn, "%s", own);
        if (i % 4 == 3)
            pair_exchange(p);
    }
    /* A name with a space, HTAB or NUL cannot be sent: the request line
     * ends at the space (the original kept the part before it; we answer
     * 400), and HTAB and NUL are refused in a target. Nobody signs in. */
    static const char spaced[] = "GET /sign_in?John Doe HTTP/1.0\r\n\r\n";
    static const char tabbed[] = "GET /sign_in?John\tDoe HTTP/1.0\r\n\r\n";
    static const char nul[] = "GET /sign_in?John\0Doe HTTP/1.0\r\n\r\n";
    expect_refusal(&srv, spaced, sizeof spaced - 1, 400);
    expect_refusal(&srv, tabbed, sizeof tabbed - 1, 400);
    expect_refusal(&srv, nul, sizeof nul - 1, 400);
    /* The last list, entry by entry. */
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "GET /sign_in?last HTTP/1.0\r\n\r\n");
    h_resp_t *r = h_read(c);
    h_close(c);
    H_ASSERT_STATUS(r, 200, "Added");
    check_list_lines("last", r->body, r->body_len, NN + 3);
    char *want = tmalloc(NN * 600 + 256);
    assert_non_null(want);
    size_t l = (size_t)snprintf(want, 256, "last,%lld,1\nalice,%" PRIu64 ",1\nbob,%" PRIu64 ",1\n",
                                h_hdr_num(r, "Pragma"), p->id[0], p->id[1]);
    for (int i = 0; i < NN; i++)
        l += (size_t)snprintf(want + l, 700, "%s,%" PRIu64 ",1\n", san[i], ids[i]);
    if (r->body_len != l || memcmp(r->body, want, l) != 0)
        fail_msg("the list:\n%s\nexpected:\n%s", r->body, want);
    wn += (size_t)snprintf(want_notes + wn, sizeof want_notes - wn, "last,%lld,1\n",
                           h_hdr_num(r, "Pragma"));
    h_resp_free(r);
    tfree(want);
    /* Every notification was one line, names as in the list, byte for
     * byte; bob heard the same joins after his own. */
    pair_until(p, H_TIMEOUT_MS, both_noted, "last,", "alice and bob hear the last join");
    pair_expect_notes(p, 0, want_notes);
    pair_expect_notes(p, 1, strchr(want_notes, '\n') + 1);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_control_bytes),
        T(test_bad_ids),
        T(test_names),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
