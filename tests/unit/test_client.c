/*
 * Unit tests of the client's pure parts: the exact request bytes of
 * protocol.md B 7.2, URL-safe names, response framing, the classification
 * of /wait answers, sign-in list parsing, backoff, and the CLI's JSON
 * command parser, string escaping and base64. Plus the library's lifecycle
 * without a server: calls before connect, a disconnect that must not
 * wait for a server that never answers, and a server name that does not
 * resolve.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "net.h"
#include "strlit.h"
/* The modules themselves: their static functions and test hooks are what
 * these tests check (so nothing is exported only for tests). */
#include "client_wire.c"
#include "client_state.c"
#include "client_io.c"
#include "client_control.c"
#include "client_hang.c"
#include "pcsig_client.c"

/* The whole body at once, no limit: init, feed, take. 0 or -ENOMEM. */
static int cwire_parse_peer_list(const char *body, size_t len, uint64_t own_id,
                                 struct pcsig_peer **peers, size_t *npeers)
{
    struct cwire_peer_list l;
    cwire_peer_list_init(&l, own_id, 0);
    *peers = NULL;
    *npeers = 0;
    if (cwire_peer_list_feed(&l, body, len) < 0) {
        cwire_peer_list_free(&l);
        return -ENOMEM;
    }
    cwire_peer_list_take(&l, peers, npeers);
    return 0;
}

/* b's bytes as a NUL-terminated string (tests only hold text here). */
static const char *str(buf_t *b)
{
    assert_int_equal(buf_append(b, "", 1), 0);
    b->len--;
    return b->data;
}

/* ---- request bytes ------------------------------------------------------------- */

static void test_sign_in_bytes(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(cwire_sign_in(&b, STRLIT("alice")), 0);
    assert_string_equal(str(&b), "GET /sign_in?alice HTTP/1.0\r\n\r\n");
    buf_reset(&b);
    assert_int_equal(cwire_sign_in(&b, STRLIT("user@host")), 0);
    assert_string_equal(str(&b), "GET /sign_in?user@host HTTP/1.0\r\n\r\n");
    buf_reset(&b);
    assert_int_equal(cwire_sign_in(&b, STRLIT("a b")), 0);
    assert_string_equal(str(&b), "GET /sign_in?a%20b HTTP/1.0\r\n\r\n");
    buf_free(&b);
}

static void test_wait_bytes(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(cwire_wait(&b, 7, false, "ignored:1"), 0);
    assert_string_equal(str(&b), "GET /wait?peer_id=7 HTTP/1.0\r\n\r\n");
    buf_reset(&b);
    assert_int_equal(cwire_wait(&b, 2147483647, true, "localhost:8888"), 0);
    assert_string_equal(str(&b),
                        "GET /wait?peer_id=2147483647 HTTP/1.1\r\nHost: localhost:8888\r\n\r\n");
    buf_free(&b);
}

static void test_message_bytes(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(cwire_message(&b, 1, 2, NULL, STRLIT("hello")), 0);
    assert_string_equal(str(&b), "POST /message?peer_id=1&to=2 HTTP/1.0\r\n"
                                 "Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello");
    buf_reset(&b);
    assert_int_equal(cwire_message(&b, 12, 3, "", STRLIT("BYE")), 0);
    assert_string_equal(str(&b), "POST /message?peer_id=12&to=3 HTTP/1.0\r\n"
                                 "Content-Length: 3\r\nContent-Type: text/plain\r\n\r\nBYE");
    buf_reset(&b);
    assert_int_equal(cwire_message(&b, 1, 2, "application/json", STRLIT("{}")), 0);
    assert_string_equal(str(&b), "POST /message?peer_id=1&to=2 HTTP/1.0\r\n"
                                 "Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}");
    buf_reset(&b);
    /* Binary bodies go as they are, NULs included. */
    static const char bin[4] = {0, '\r', '\n', (char)0xff};
    assert_int_equal(cwire_message(&b, 1, 2, "application/octet-stream", bin, 4), 0);
    static const char want[] = "POST /message?peer_id=1&to=2 HTTP/1.0\r\nContent-Length: 4\r\n"
                               "Content-Type: application/octet-stream\r\n\r\n";
    assert_int_equal(b.len, sizeof want - 1 + 4);
    assert_memory_equal(b.data, want, sizeof want - 1);
    assert_memory_equal(b.data + sizeof want - 1, bin, 4);
    buf_reset(&b);
    assert_int_equal(cwire_message(&b, 1, 2, NULL, NULL, 0), 0);
    assert_string_equal(str(&b), "POST /message?peer_id=1&to=2 HTTP/1.0\r\n"
                                 "Content-Length: 0\r\nContent-Type: text/plain\r\n\r\n");
    buf_reset(&b);
    /* A type that would split the header is refused, nothing appended. */
    assert_int_equal(cwire_message(&b, 1, 2, "text/plain\r\nX-Evil: 1", STRLIT("x")), -EINVAL);
    assert_int_equal(b.len, 0);
    assert_false(cwire_ctype_ok("a\nb"));
    assert_false(cwire_ctype_ok("a\x7f"));
    assert_true(cwire_ctype_ok("text/plain; charset=utf-8"));
    buf_free(&b);
}

static void test_sign_out_bytes(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(cwire_sign_out(&b, 42), 0);
    assert_string_equal(str(&b), "GET /sign_out?peer_id=42 HTTP/1.0\r\n\r\n");
    buf_free(&b);
}

static void test_host_header(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(cwire_host_header(&b, "localhost", 8888), 0);
    assert_string_equal(str(&b), "localhost:8888");
    buf_reset(&b);
    assert_int_equal(cwire_host_header(&b, "::1", 80), 0);
    assert_string_equal(str(&b), "[::1]:80");
    buf_reset(&b);
    assert_int_equal(cwire_host_header(&b, "[::1]", 80), 0);
    assert_string_equal(str(&b), "[::1]:80");
    buf_free(&b);
}

/* ---- names ----------------------------------------------------------------------- */

static void test_name_encoding(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4096);
    assert_int_equal(cwire_name_encode(&b, STRLIT("AZaz09-._~@")), 0);
    assert_string_equal(str(&b), "AZaz09-._~@");
    buf_reset(&b);
    assert_int_equal(cwire_name_encode(&b, STRLIT("a,b&c=d?e/f%g+h#i")), 0);
    assert_string_equal(str(&b), "a%2Cb%26c%3Dd%3Fe%2Ff%25g%2Bh%23i");
    buf_reset(&b);
    assert_int_equal(cwire_name_encode(&b, STRLIT("caf\xc3\xa9")), 0);
    assert_string_equal(str(&b), "caf%C3%A9");
    buf_reset(&b);
    assert_int_equal(cwire_name_encode(&b, "", 0), 0);
    assert_int_equal(b.len, 0);

    /* Every byte value: kept ones as themselves, the rest as %XX. */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    for (int i = 0; i < 256; i++) {
        buf_reset(&b);
        assert_int_equal(cwire_name_encode(&b, all + i, 1), 0);
        bool kept = (i >= 'A' && i <= 'Z') || (i >= 'a' && i <= 'z') || (i >= '0' && i <= '9') ||
                    i == '-' || i == '.' || i == '_' || i == '~' || i == '@';
        if (kept) {
            assert_int_equal(b.len, 1);
            assert_int_equal((unsigned char)b.data[0], i);
        } else {
            char want[4];
            snprintf(want, sizeof want, "%%%02X", (unsigned)i);
            assert_int_equal(b.len, 3);
            assert_memory_equal(b.data, want, 3);
        }
        /* Whatever the byte, the request line stays one line of visible ASCII. */
        for (size_t k = 0; k < b.len; k++)
            assert_true(b.data[k] > 0x20 && b.data[k] < 0x7f);
    }
    buf_free(&b);
}

static void test_name_truncation(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 8192);
    char name[2000];
    memset(name, 'x', sizeof name);
    assert_int_equal(cwire_name_encode(&b, name, sizeof name), 0);
    assert_int_equal(b.len, PROTO_MAX_NAME);

    /* 511 kept bytes then a space: "%20" does not fit, and is not cut. */
    buf_reset(&b);
    name[511] = ' ';
    assert_int_equal(cwire_name_encode(&b, name, 600), 0);
    assert_int_equal(b.len, 511);

    /* A two-byte character across the limit is dropped whole. */
    buf_reset(&b);
    memset(name, 'x', sizeof name);
    name[506] = (char)0xc3; /* %C3 ends at 509 + %A9 would end at 512 */
    name[507] = (char)0xa9;
    name[508] = (char)0xc3; /* %C3 would end at 515 */
    name[509] = (char)0xa9;
    assert_int_equal(cwire_name_encode(&b, name, 600), 0);
    assert_int_equal(b.len, 512);
    assert_memory_equal(b.data + 506, "%C3%A9", 6);
    buf_reset(&b);
    name[505] = (char)0xe2; /* a three-byte char %E2%82%AC from 505: ends at 514 */
    name[506] = (char)0x82;
    name[507] = (char)0xac;
    assert_int_equal(cwire_name_encode(&b, name, 600), 0);
    assert_int_equal(b.len, 505); /* the whole character is left out */
    buf_free(&b);
}

/* ---- response framing --------------------------------------------------------------- */

static const char NOTIFY[] = "HTTP/1.1 200 OK\r\nServer: PeerConnectionTestServer/0.1\r\n"
                             "Cache-Control: no-cache\r\nConnection: close\r\n"
                             "Content-Type: text/plain\r\nContent-Length: 8\r\nPragma: 1\r\n"
                             "Access-Control-Allow-Origin: *\r\n\r\nbob,2,1\n";

static void test_frame_response(void **state)
{
    (void)state;
    http_response_t r;
    size_t hl = 0, bl = 0;
    size_t n = sizeof NOTIFY - 1;
    /* Every truncation needs more; EOF inside it is an error. */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cwire_frame_response(NULL, NOTIFY, i, false, &r, &hl, &bl), 0);
        assert_int_equal(cwire_frame_response(NULL, NOTIFY, i, true, &r, &hl, &bl), -EPROTO);
    }
    assert_int_equal(cwire_frame_response(NULL, NOTIFY, n, false, &r, &hl, &bl), 1);
    assert_int_equal(hl, n - 8);
    assert_int_equal(bl, 8);
    assert_int_equal(r.status, 200);
    assert_true(r.connection_close);
    /* Bytes after the body (the next response) are not part of this one. */
    char two[2 * sizeof NOTIFY];
    memcpy(two, NOTIFY, n);
    memcpy(two + n, NOTIFY, n);
    assert_int_equal(cwire_frame_response(NULL, two, 2 * n, false, &r, &hl, &bl), 1);
    assert_int_equal(hl + bl, n);

    /* Without Content-Length the body runs to EOF. */
    static const char old[] = "HTTP/1.0 200 OK\r\nPragma: 3\r\n\r\nabc";
    assert_int_equal(cwire_frame_response(NULL, old, sizeof old - 1, false, &r, &hl, &bl), 0);
    assert_int_equal(cwire_frame_response(NULL, old, sizeof old - 1, true, &r, &hl, &bl), 1);
    assert_int_equal(bl, 3);

    static const char junk[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
    assert_int_equal(cwire_frame_response(NULL, junk, sizeof junk - 1, false, &r, &hl, &bl),
                     -EPROTO);
    static const char huge[] = "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n";
    assert_int_equal(cwire_frame_response(NULL, huge, sizeof huge - 1, false, &r, &hl, &bl),
                     -EPROTO);
}

/*
 * Framing resumed across reads (cwire_frame_t) answers what framing from
 * scratch answers, for every length, with and without EOF, a byte at a
 * time: the head is parsed once and the body waited for without parsing.
 */
static void frame_resumed_like_plain(const char *data, size_t n)
{
    for (int at_eof = 0; at_eof < 2; at_eof++) {
        cwire_frame_t fr = {0};
        for (size_t i = 0; i <= n; i++) {
            http_response_t a, b;
            size_t ha = 0, ba = 0, hb = 0, bb = 0;
            bool eof = at_eof && i == n;
            int ra = cwire_frame_response(&fr, data, i, eof, &a, &ha, &ba);
            int rb = cwire_frame_response(NULL, data, i, eof, &b, &hb, &bb);
            assert_int_equal(ra, rb);
            if (rb == 1) {
                assert_int_equal(ha, hb);
                assert_int_equal(ba, bb);
                assert_int_equal(a.status, b.status);
                break;
            }
            if (rb < 0)
                break;
        }
    }
}

static void test_frame_response_resumed(void **state)
{
    (void)state;
    static const char old[] = "HTTP/1.0 200 OK\r\nPragma: 3\r\n\r\nabc";
    static const char bad[] = "HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: 1x\r\n\r\n";
    char two[2 * sizeof NOTIFY];
    size_t n = sizeof NOTIFY - 1;

    memcpy(two, NOTIFY, n);
    memcpy(two + n, NOTIFY, n);
    frame_resumed_like_plain(NOTIFY, n);
    frame_resumed_like_plain(two, 2 * n);
    frame_resumed_like_plain(old, sizeof old - 1);
    frame_resumed_like_plain(bad, sizeof bad - 1);

    /* Once the head is in, the body's bytes are not parsed again. */
    cwire_frame_t fr = {0};
    http_response_t r;
    size_t hl = 0, bl = 0, head = n - 8;
    assert_int_equal(cwire_frame_response(&fr, NOTIFY, head, false, &r, &hl, &bl), 0);
    assert_int_equal(fr.head_len, head);
    uint64_t examined = fr.parse.examined;
    for (size_t i = head; i < n; i++)
        assert_int_equal(cwire_frame_response(&fr, NOTIFY, i, false, &r, &hl, &bl), 0);
    assert_int_equal(fr.parse.examined, examined);
    assert_int_equal(cwire_frame_response(&fr, NOTIFY, n, false, &r, &hl, &bl), 1);
    assert_int_equal(bl, 8);
}

/* ---- /wait classification ---------------------------------------------------------------- */

/* Frame text (which must be complete) and classify it for own id. */
static void classify(const char *text, uint64_t own, struct cwire_wait_result *w)
{
    static http_response_t r; /* the result points into it */
    size_t hl = 0, bl = 0;
    assert_int_equal(cwire_frame_response(NULL, text, strlen(text), true, &r, &hl, &bl), 1);
    cwire_classify_wait(&r, text + hl, bl, own, w);
}

static void test_classify_notifications(void **state)
{
    (void)state;
    struct cwire_wait_result w;
    classify(NOTIFY, 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_JOINED);
    assert_int_equal(w.entry.id, 2);
    assert_int_equal(w.entry.name_len, 3);
    assert_memory_equal(w.entry.name, "bob", 3);
    assert_true(w.entry.connected);

    classify("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n"
             "Pragma: 1\r\n\r\nbob,2,0\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_LEFT);
    assert_int_equal(w.entry.id, 2);
    assert_false(w.entry.connected);

    /* pcsig's idle answer: Pragma = own id, nothing in it. */
    classify("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
             "Pragma: 1\r\nConnection: keep-alive\r\n\r\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_EMPTY);

    /* Our own entry ",0": the server removed us (pcsig's answer to a gone member). */
    classify("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nPragma: 1\r\n\r\nalice,1,0\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_ID_GONE);
    classify("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nPragma: 1\r\n\r\nalice,1,1\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_EMPTY);

    /* Not one well-formed entry. */
    classify("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nPragma: 1\r\n\r\nbob,2,1", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_BAD);
    classify("HTTP/1.1 200 OK\r\nContent-Length: 16\r\nPragma: 1\r\n\r\nbob,2,1\ncar,3,1\n", 1,
             &w);
    assert_int_equal(w.kind, CWIRE_WAIT_BAD);
}

static void test_classify_messages(void **state)
{
    (void)state;
    struct cwire_wait_result w;
    classify("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n"
             "Pragma: 2\r\n\r\nmsg0", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_MESSAGE);
    assert_int_equal(w.from, 2);
    assert_int_equal(w.ctype.len, 16);
    assert_memory_equal(w.ctype.ptr, "application/json", 16);

    /* Untyped (a GET /message relayed): no content type. */
    classify("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nPragma: 2\r\n\r\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_MESSAGE);
    assert_null(w.ctype.ptr);

    /* The in-band hang-up is exactly three bytes. */
    classify("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
             "Pragma: 2\r\n\r\nBYE", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_BYE);
    assert_int_equal(w.from, 2);
    classify("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nPragma: 2\r\n\r\nBYE\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_MESSAGE);
    classify("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nPragma: 2\r\n\r\nbye", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_MESSAGE);

    /* A peer may well send the words of the shutdown notice. */
    classify("HTTP/1.1 200 OK\r\nContent-Length: 20\r\nPragma: 2\r\n\r\nServer shutting down", 1,
             &w);
    assert_int_equal(w.kind, CWIRE_WAIT_MESSAGE);
}

static void test_classify_server_states(void **state)
{
    (void)state;
    struct cwire_wait_result w;
    /* The stock server's notice has no Pragma; pcsig's has our id. */
    classify("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n"
             "Server shutting down", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_SHUTDOWN);
    classify("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
             "Pragma: 1\r\n\r\nServer shutting down", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_SHUTDOWN);
    classify("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_SHUTDOWN);

    classify("HTTP/1.1 500 Sorry\r\nContent-Type: text/html\r\nContent-Length: 52\r\n\r\n"
             "<html><body>Sorry, not yet implemented</body></html>", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_ID_GONE);
    classify("HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_REPOLL);
    classify("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_BAD);
    /* 200 without a (valid) Pragma: neither a notification nor a message. */
    classify("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_BAD);
    classify("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nPragma: -1\r\n\r\nhi", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_BAD);
    classify("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nPragma: no-cache\r\n\r\nhi", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_BAD);
    /* Header names are case-insensitive here (the stock client is stricter). */
    classify("HTTP/1.1 200 OK\r\ncontent-length: 2\r\npragma: 5\r\n\r\nhi", 1, &w);
    assert_int_equal(w.kind, CWIRE_WAIT_MESSAGE);
    assert_int_equal(w.from, 5);
}

/* ---- sign-in list --------------------------------------------------------------------------- */

static void test_peer_list(void **state)
{
    (void)state;
    struct pcsig_peer *p;
    size_t n;
    static const char list[] = "carol,3,1\nalice,1,1\nbob,2,0\n";
    assert_int_equal(cwire_parse_peer_list(list, sizeof list - 1, 3, &p, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].id, 1);
    assert_string_equal(p[0].name, "alice");
    assert_true(p[0].connected);
    assert_int_equal(p[1].id, 2);
    assert_string_equal(p[1].name, "bob");
    assert_false(p[1].connected);
    cwire_peers_free(p, n);

    /* Only ourselves: no peers, no allocation. */
    assert_int_equal(cwire_parse_peer_list(STRLIT("alice,1,1\n"), 1, &p, &n), 0);
    assert_int_equal(n, 0);
    assert_null(p);

    /* Malformed lines are skipped, a trailing piece without '\n' ignored. */
    static const char messy[] = "me,9,1\n,4,1\nx,0,1\ny,abc,1\nz,5,2\ngood,6,1\nhalf,7,1";
    assert_int_equal(cwire_parse_peer_list(messy, sizeof messy - 1, 9, &p, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].id, 6);
    assert_string_equal(p[0].name, "good");
    cwire_peers_free(p, n);

    /* Names are the server's raw bytes (an encoded space stays encoded). */
    assert_int_equal(cwire_parse_peer_list(STRLIT("a%20b,2,1\n"), 1, &p, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].name, "a%20b");
    cwire_peers_free(p, n);
    cwire_peers_free(NULL, 0);
}

/* The list fed in pieces, split at every byte, gives what the whole body
 * gives; max_peers keeps the first ones and counts the rest; an over-long
 * line is skipped without being kept. */
static void test_peer_list_incremental(void **state)
{
    (void)state;
    static const char list[] = "me,9,1\nalice,1,1\nbad line\nbob,2,0\ncarol,3,1\nhalf,7,1";
    size_t len = sizeof list - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        for (size_t cut2 = cut; cut2 <= len; cut2++) {
            struct cwire_peer_list l;
            cwire_peer_list_init(&l, 9, 2);
            assert_int_equal(cwire_peer_list_feed(&l, list, cut), 0);
            assert_int_equal(cwire_peer_list_feed(&l, list + cut, cut2 - cut), 0);
            assert_int_equal(cwire_peer_list_feed(&l, list + cut2, len - cut2), 0);
            assert_int_equal(l.omitted, 1); /* carol */
            struct pcsig_peer *p;
            size_t n;
            cwire_peer_list_take(&l, &p, &n);
            assert_int_equal(n, 2);
            assert_string_equal(p[0].name, "alice");
            assert_int_equal(p[1].id, 2);
            assert_false(p[1].connected);
            cwire_peers_free(p, n);
            cwire_peer_list_free(&l); /* after take: nothing left, no double free */
        }
    }
    /* A line longer than CWIRE_MAX_PEER_LINE, fed in small pieces: skipped
     * (the partial line never grows past the limit), and the next is read. */
    struct cwire_peer_list l;
    cwire_peer_list_init(&l, 1, 0);
    char chunk[100];
    memset(chunk, 'x', sizeof chunk);
    for (size_t i = 0; i < 2 * CWIRE_MAX_PEER_LINE / sizeof chunk; i++) {
        assert_int_equal(cwire_peer_list_feed(&l, chunk, sizeof chunk), 0);
        assert_true(l.partial.len <= CWIRE_MAX_PEER_LINE);
    }
    assert_int_equal(cwire_peer_list_feed(&l, ",5,1\nok,6,1\n", 13), 0);
    assert_int_equal(l.npeers, 1);
    assert_int_equal(l.peers[0].id, 6);
    cwire_peer_list_free(&l);
}

static void test_token_and_loopback(void **state)
{
    (void)state;
    assert_true(cwire_token_ok("abc-DEF_123.~+/="));
    assert_false(cwire_token_ok(""));
    assert_false(cwire_token_ok("a b"));
    assert_false(cwire_token_ok("a\r\nX-Evil: 1"));
    assert_false(cwire_token_ok("tab\there"));
    assert_false(cwire_token_ok("caf\xc3\xa9"));
    char big[CWIRE_MAX_TOKEN + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_false(cwire_token_ok(big));
    big[CWIRE_MAX_TOKEN] = '\0';
    assert_true(cwire_token_ok(big));

    struct sockaddr_in v4 = {.sin_family = AF_INET};
    static const char *const yes4[] = {"127.0.0.1", "127.255.1.2"};
    static const char *const no4[] = {"10.0.0.1", "192.168.1.1", "0.0.0.0", "128.0.0.1"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(inet_pton(AF_INET, yes4[i], &v4.sin_addr), 1);
        assert_true(cwire_addr_is_loopback((struct sockaddr *)&v4));
    }
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(inet_pton(AF_INET, no4[i], &v4.sin_addr), 1);
        assert_false(cwire_addr_is_loopback((struct sockaddr *)&v4));
    }
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    static const char *const yes6[] = {"::1", "::ffff:127.0.0.1"};
    static const char *const no6[] = {"::", "fe80::1", "2001:db8::1", "::ffff:10.0.0.1", "::2"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(inet_pton(AF_INET6, yes6[i], &v6.sin6_addr), 1);
        assert_true(cwire_addr_is_loopback((struct sockaddr *)&v6));
    }
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(inet_pton(AF_INET6, no6[i], &v6.sin6_addr), 1);
        assert_false(cwire_addr_is_loopback((struct sockaddr *)&v6));
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_false(cwire_addr_is_loopback(&un));
}

static void test_backoff(void **state)
{
    (void)state;
    /* Within [base/2, base], base doubling from min up to max. */
    int base = 500;
    for (unsigned a = 0; a < 12; a++) {
        for (uint64_t r = 0; r < 2000; r += 97) {
            int ms = cwire_backoff_ms(a, 500, 10000, r * 0x9E3779B97F4A7C15ULL);
            assert_true(ms >= base / 2);
            assert_true(ms <= base);
        }
        base = base * 2 > 10000 ? 10000 : base * 2;
    }
    assert_int_equal(cwire_backoff_ms(1000, 500, 10000, 0), 5000);
    assert_true(cwire_backoff_ms(0, 0, 0, 12345) >= 1);
    assert_true(cwire_backoff_ms(0, 100, 50, 7) <= 100); /* max below min: min wins */
    /* The jitter does spread the values. */
    int lo = 1 << 30, hi = 0;
    for (uint64_t r = 0; r < 1000; r++) {
        int ms = cwire_backoff_ms(3, 500, 10000, r * 7919);
        lo = ms < lo ? ms : lo;
        hi = ms > hi ? ms : hi;
    }
    assert_true(hi - lo > 1000);
}

/* ---- the library without a server ---------------------------------------------------------------- */

static void test_lifecycle_offline(void **state)
{
    (void)state;
    pcsig_client_free(NULL);
    pcsig_client_t *c = pcsig_client_new(NULL);
    assert_non_null(c);
    assert_int_equal(pcsig_client_id(c), 0);
    assert_int_equal(pcsig_client_send(c, 1, NULL, STRLIT("x")), -ENOTCONN);
    assert_int_equal(pcsig_client_send(c, 0, NULL, STRLIT("x")), -EINVAL);
    assert_int_equal(pcsig_client_send(c, 1, "a\r\nb", STRLIT("x")), -EINVAL);
    assert_null(pcsig_client_next_event(c, 0));
    uint64_t t0 = clock_now_ms();
    assert_null(pcsig_client_next_event(c, 50));
    assert_true(clock_now_ms() - t0 >= 49);
    struct pollfd p = {.fd = pcsig_client_event_fd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_int_equal(pcsig_client_disconnect(c), 0); /* never connected: nothing to do */
    assert_null(pcsig_client_next_event(c, 0));
    pcsig_client_free(c);
}

/* A listener that accepts nothing: sign-in is stuck until its timeout. */
static void test_disconnect_is_prompt(void **state)
{
    (void)state;
    int fds[NET_MAX_LISTENERS], nfds = 0;
    assert_int_equal(net_listen("127.0.0.1", 0, 16, fds, &nfds), 0);
    int port = net_local_port(fds[0]);
    assert_true(port > 0);
    struct pcsig_client_options o = {.server = "127.0.0.1", .port = (uint16_t)port,
                                     .name = "stuck", .request_timeout_ms = 30000};
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    assert_int_equal(pcsig_client_connect(c), 0);
    assert_int_equal(pcsig_client_connect(c), -EALREADY);
    /* Let the sign-in reach the listener's backlog. */
    assert_null(pcsig_client_next_event(c, 200));
    uint64_t t0 = clock_now_ms();
    assert_int_equal(pcsig_client_disconnect(c), 0);
    uint64_t took = clock_now_ms() - t0;
    if (took > 1000)
        fail_msg("disconnect took %llu ms", (unsigned long long)took);
    struct pollfd p = {.fd = pcsig_client_event_fd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 1);
    struct pcsig_event *ev = pcsig_client_next_event(c, 0);
    assert_non_null(ev);
    assert_int_equal(ev->type, PCSIG_EV_DISCONNECTED);
    assert_non_null(ev->reason);
    pcsig_event_free(ev);
    assert_int_equal(poll(&p, 1, 0), 0); /* empty again: not readable */
    assert_int_equal(pcsig_client_disconnect(c), 0);
    assert_null(pcsig_client_next_event(c, 0));
    pcsig_client_free(c);
    close(fds[0]);
}

/* Nobody listens: SERVER_UNREACHABLE with growing, jittered delays. */
static void test_unreachable_backoff(void **state)
{
    (void)state;
    int fds[NET_MAX_LISTENERS], nfds = 0;
    assert_int_equal(net_listen("127.0.0.1", 0, 16, fds, &nfds), 0);
    int port = net_local_port(fds[0]);
    close(fds[0]); /* now (almost certainly) refused */
    struct pcsig_client_options o = {.server = "127.0.0.1", .port = (uint16_t)port,
                                     .name = "nobody", .reconnect_min_ms = 20,
                                     .reconnect_max_ms = 80};
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_int_equal(pcsig_client_connect(c), 0);
    int prev_base = 20;
    for (int i = 0; i < 5; i++) {
        struct pcsig_event *ev = pcsig_client_next_event(c, 5000);
        assert_non_null(ev);
        assert_int_equal(ev->type, PCSIG_EV_SERVER_UNREACHABLE);
        assert_non_null(ev->reason);
        assert_true(ev->retry_in_ms >= prev_base / 2 && ev->retry_in_ms <= prev_base);
        prev_base = prev_base * 2 > 80 ? 80 : prev_base * 2;
        pcsig_event_free(ev);
    }
    assert_int_equal(pcsig_client_send(c, 1, NULL, STRLIT("x")), -ENOTCONN);
    pcsig_client_free(c); /* disconnects and frees queued events */
}

/* A name that does not resolve (RFC 6761: .invalid never does): net_connect
 * says so with a code of its own, and the client reports one line naming
 * the host and the resolver's reason, then retries as for a lost server. */
static void test_unresolvable_server(void **state)
{
    (void)state;
    int rc = net_connect("nohost.invalid", 8888, 2000);
    assert_true(rc <= -NET_ERESOLVE_BASE);
    int gai = net_resolve_error(rc);
    assert_int_not_equal(gai, 0);
    assert_non_null(gai_strerror(gai));
    assert_int_equal(net_resolve_error(-ECONNREFUSED), 0);
    assert_int_equal(net_resolve_error(-EHOSTUNREACH), 0);
    assert_int_equal(net_resolve_error(0), 0);

    struct pcsig_client_options o = {.server = "nohost.invalid", .name = "lost",
                                     .reconnect_min_ms = 20, .reconnect_max_ms = 40};
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    assert_int_equal(pcsig_client_connect(c), 0);
    for (int i = 0; i < 2; i++) {
        struct pcsig_event *ev = pcsig_client_next_event(c, 5000);
        assert_non_null(ev);
        assert_int_equal(ev->type, PCSIG_EV_SERVER_UNREACHABLE);
        assert_non_null(ev->reason);
        static const char want[] = "sign-in: cannot resolve nohost.invalid: ";
        if (strncmp(ev->reason, want, sizeof want - 1) != 0 || !ev->reason[sizeof want - 1] ||
            strchr(ev->reason, '\n'))
            fail_msg("reason \"%s\"", ev->reason);
        pcsig_event_free(ev);
    }
    pcsig_client_free(c);
}

/*
 * A plain-text listener that records whether a client sent it anything:
 * pcsig_client_connect with tls set, after a TLS set-up failure, must
 * return -EINVAL and never reach it (it used to fall back to plain TCP
 * when the reason text could not be kept).
 */
static void expect_no_plain_fallback(struct pcsig_client_options *o)
{
    int fds[NET_MAX_LISTENERS], nfds = 0;
    assert_int_equal(net_listen("127.0.0.1", 0, 16, fds, &nfds), 0);
    o->server = "127.0.0.1";
    o->port = (uint16_t)net_local_port(fds[0]);
    o->name = "tls-only";
    o->tls = true;
    pcsig_client_t *c = pcsig_client_new(o);
    assert_non_null(c);
    int rc = pcsig_client_connect(c);
    if (rc == 0) {
        /* The bug: see what arrives, and fail on a plaintext request. */
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 5000) == 1) {
            int s = accept(fds[0], NULL, NULL);
            char got[16] = "";
            struct pollfd q = {.fd = s, .events = POLLIN};
            if (s >= 0 && poll(&q, 1, 5000) == 1 && read(s, got, 4) == 4 &&
                memcmp(got, STRLIT("GET ")) == 0) {
                close(s);
                pcsig_client_free(c);
                close(fds[0]);
                fail_msg("a TLS client sent a plaintext request after its TLS set-up failed");
            }
            if (s >= 0)
                close(s);
        }
    }
    assert_int_equal(rc, -EINVAL);
    const char *why = pcsig_client_setup_error(c);
    assert_non_null(why);
    assert_true(why[0] != '\0');
    /* Nothing was started: no thread, no connection attempt, no event. */
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_null(pcsig_client_next_event(c, 0));
    assert_int_equal(pcsig_client_connect(c), -EINVAL); /* and never will */
    pcsig_client_free(c);
    close(fds[0]);
}

static void test_tls_setup_failure_is_fatal(void **state)
{
    (void)state;
    /* A CA file that cannot be read. */
    struct pcsig_client_options o = {.ca_file = "/nonexistent/pcsig-ca.pem"};
    expect_no_plain_fallback(&o);
    /* A set-up failure with no reason text at all (an injected fault). */
    cwire_test_tls_setup_fault = 1;
    struct pcsig_client_options o2 = {0};
    expect_no_plain_fallback(&o2);
    cwire_test_tls_setup_fault = 0;
}

/* Accept one connection within 5 s and read what it sends until EOF or
 * the request's end (at most n - 1 bytes, NUL-terminated). */
static size_t accept_and_read(int lfd, char *buf, size_t n)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    int s = accept(lfd, NULL, NULL);
    assert_true(s >= 0);
    size_t got = 0;
    for (;;) {
        struct pollfd q = {.fd = s, .events = POLLIN};
        assert_int_equal(poll(&q, 1, 5000), 1);
        ssize_t r = read(s, buf + got, n - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    buf[got] = '\0';
    close(s);
    return got;
}

/* The auth token never goes in clear to an address that is not loopback
 * (the check is on the connected address; a test hook makes 127.0.0.1
 * count as remote): the connection is closed with nothing sent, and the
 * session ends with the reason. allow_insecure_token sends it anyway. */
static void test_token_not_sent_in_clear(void **state)
{
    (void)state;
    int fds[NET_MAX_LISTENERS], nfds = 0;
    assert_int_equal(net_listen("127.0.0.1", 0, 16, fds, &nfds), 0);
    struct pcsig_client_options o = {.server = "127.0.0.1",
                                     .port = (uint16_t)net_local_port(fds[0]),
                                     .name = "t", .auth_token = "tok-123"};
    cwire_test_loopback_is_remote = 1;
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    assert_int_equal(pcsig_client_connect(c), 0);
    char buf[4096];
    assert_int_equal(accept_and_read(fds[0], buf, sizeof buf), 0); /* not one byte */
    struct pcsig_event *ev = pcsig_client_next_event(c, 5000);
    assert_non_null(ev);
    assert_int_equal(ev->type, PCSIG_EV_DISCONNECTED);
    if (!strstr(ev->reason, "refusing to send the auth token in clear to 127.0.0.1 "
                            "(127.0.0.1 is not a loopback address)") ||
        strstr(ev->reason, "tok-123"))
        fail_msg("reason \"%s\"", ev->reason);
    pcsig_event_free(ev);
    pcsig_client_free(c);

    o.allow_insecure_token = true;
    c = pcsig_client_new(&o);
    assert_non_null(c);
    assert_int_equal(pcsig_client_connect(c), 0);
    accept_and_read(fds[0], buf, sizeof buf);
    assert_string_equal(buf, "GET /sign_in?t HTTP/1.0\r\nAuthorization: Bearer tok-123\r\n\r\n");
    pcsig_client_free(c);
    cwire_test_loopback_is_remote = 0;

    /* Loopback (the hook off): sent without being allowed; with TLS it
     * would be sent anywhere. */
    o.allow_insecure_token = false;
    c = pcsig_client_new(&o);
    assert_int_equal(pcsig_client_connect(c), 0);
    accept_and_read(fds[0], buf, sizeof buf);
    assert_string_equal(buf, "GET /sign_in?t HTTP/1.0\r\nAuthorization: Bearer tok-123\r\n\r\n");
    pcsig_client_free(c);

    /* A token that would break the header is refused up front. */
    o.auth_token = "a\r\nX: y";
    c = pcsig_client_new(&o);
    assert_non_null(c);
    assert_non_null(pcsig_client_setup_error(c));
    assert_int_equal(pcsig_client_connect(c), -EINVAL);
    pcsig_client_free(c);
    close(fds[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_in_bytes),
        cmocka_unit_test(test_wait_bytes),
        cmocka_unit_test(test_message_bytes),
        cmocka_unit_test(test_sign_out_bytes),
        cmocka_unit_test(test_host_header),
        cmocka_unit_test(test_name_encoding),
        cmocka_unit_test(test_name_truncation),
        cmocka_unit_test(test_frame_response),
        cmocka_unit_test(test_frame_response_resumed),
        cmocka_unit_test(test_classify_notifications),
        cmocka_unit_test(test_classify_messages),
        cmocka_unit_test(test_classify_server_states),
        cmocka_unit_test(test_peer_list),
        cmocka_unit_test(test_peer_list_incremental),
        cmocka_unit_test(test_token_and_loopback),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_lifecycle_offline),
        cmocka_unit_test(test_disconnect_is_prompt),
        cmocka_unit_test(test_unreachable_backoff),
        cmocka_unit_test(test_unresolvable_server),
        cmocka_unit_test(test_tls_setup_failure_is_fatal),
        cmocka_unit_test(test_token_not_sent_in_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
