/*
 * Integration: libpcsig-client against the real server (started on a free
 * port by the harness). Sign-in lists and join/leave events with two and
 * three clients, the conductor's offer/answer/candidate JSON, FIFO order of
 * 1,000 messages, binary bodies, the 4 MiB body limit, a message to a
 * departed peer failing alone, the server killed and restarted on the same
 * port, our id vanishing (SESSION_LOST), client-side /wait timeouts and the
 * server's idle answers, keep-alive, --secure-ids tokens, backpressure.
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

static void test_two_clients(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    pcsig_client_t *a = client(&s, "alice");
    uint64_t ida = signed_in(a, 0);
    assert_int_equal(ida, 1);

    pcsig_client_t *b = client(&s, "bob");
    struct pcsig_event *ev = expect_ev(b, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->own_id, 2);
    assert_int_equal(ev->npeers, 1);
    assert_int_equal(ev->peers[0].id, 1);
    assert_string_equal(ev->peers[0].name, "alice");
    assert_true(ev->peers[0].connected);
    pcsig_event_free(ev);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, "bob");

    relay(a, 1, b, 2, "hello bob");
    relay(b, 2, a, 1, "hello alice");

    /* A clean disconnect signs out: the other side hears of it at once. */
    uint64_t t0 = h_now_ms();
    disconnect_clean(b);
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, "bob");
    uint64_t took = h_now_ms() - t0;
    if (took > 2000)
        fail_msg("PEER_LEFT came %" PRIu64 " ms after the disconnect", took);
    expect_quiet(a, T_QUIET_MS);

    /* A disconnected client can sign in again (a new id). */
    assert_int_equal(pcsig_client_connect(b), 0);
    ev = expect_ev(b, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->own_id, 3);
    assert_int_equal(ev->npeers, 1);
    pcsig_event_free(ev);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 3, "bob");

    disconnect_clean(a);
    expect_peer(b, PCSIG_EV_PEER_LEFT, 1, "alice");
    disconnect_clean(b);
    client_free(a);
    client_free(b);
    h_server_stop(&s);
    h_pass();
}

static void test_three_clients(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    pcsig_client_t *a = client(&s, "alice");
    signed_in(a, 0);
    pcsig_client_t *b = client(&s, "bob b");
    signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, "bob%20b"); /* names go URL-safe */
    pcsig_client_t *c = client(&s, "carol,\xc3\xa9");
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->own_id, 3);
    assert_int_equal(ev->npeers, 2); /* the others, in join order */
    assert_int_equal(ev->peers[0].id, 1);
    assert_string_equal(ev->peers[0].name, "alice");
    assert_int_equal(ev->peers[1].id, 2);
    assert_string_equal(ev->peers[1].name, "bob%20b");
    pcsig_event_free(ev);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 3, "carol%2C%C3%A9");
    expect_peer(b, PCSIG_EV_PEER_JOINED, 3, "carol%2C%C3%A9");

    relay(c, 3, a, 1, "c to a");
    relay(c, 3, b, 2, "c to b");
    relay(a, 1, c, 3, "a to c");

    disconnect_clean(b);
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, "bob%20b");
    expect_peer(c, PCSIG_EV_PEER_LEFT, 2, "bob%20b");
    disconnect_clean(a);
    expect_peer(c, PCSIG_EV_PEER_LEFT, 1, "alice");
    expect_quiet(c, T_QUIET_MS);
    client_free(a);
    client_free(b);
    client_free(c);
    h_server_stop(&s);
    h_pass();
}

/* JsonCpp StyledWriter output as the stock conductor sends it. */
static const char OFFER[] =
    "{\n   \"sdp\" : \"v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\n"
    "t=0 0\\r\\na=group:BUNDLE 0\\r\\na=msid-semantic: WMS stream\\r\\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\nc=IN IP4 0.0.0.0\\r\\na=rtcp:9 IN IP4 0.0.0.0\\r\\n"
    "a=ice-ufrag:Xk3a\\r\\na=ice-pwd:4vYcbwhgtKRDNkhv6xQ0mQgW\\r\\na=ice-options:trickle\\r\\n"
    "a=fingerprint:sha-256 12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:"
    "DE:F0:12:34:56:78:9A:BC:DE:F0\\r\\na=setup:actpass\\r\\na=mid:0\\r\\na=sendrecv\\r\\n"
    "a=rtcp-mux\\r\\na=rtpmap:111 opus/48000/2\\r\\n\",\n   \"type\" : \"offer\"\n}\n";

static const char ANSWER[] =
    "{\n\t\"sdp\" : \"v=0\\r\\no=- 8032411920455416186 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\n"
    "t=0 0\\r\\na=group:BUNDLE 0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n"
    "c=IN IP4 0.0.0.0\\r\\na=ice-ufrag:Qw9z\\r\\na=ice-pwd:Yd2P0b7Yh4cKk0E1t9a8Lm3N\\r\\n"
    "a=setup:active\\r\\na=mid:0\\r\\na=sendrecv\\r\\na=rtcp-mux\\r\\n"
    "a=rtpmap:111 opus/48000/2\\r\\n\",\n\t\"type\" : \"answer\"\n}";

static const char CAND1[] =
    "{\n   \"candidate\" : \"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx "
    "raddr 192.168.1.2 rport 46154 generation 0 ufrag Xk3a network-cost 999\",\n"
    "   \"sdpMLineIndex\" : 0,\n   \"sdpMid\" : \"0\"\n}\n";

static const char CAND2[] =
    "{\n   \"candidate\" : \"candidate:1 1 udp 2122260223 192.168.1.2 50000 typ host "
    "generation 0\",\n   \"sdpMLineIndex\" : 0,\n   \"sdpMid\" : \"0\"\n}\n";

static const char CAND3[] =
    "{\n\t\"candidate\" : \"candidate:2 1 tcp 1518280447 192.168.1.3 9 typ host tcptype active\","
    "\n\t\"sdpMLineIndex\" : 0,\n\t\"sdpMid\" : \"0\"\n}";

static void test_offer_answer_candidates(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    pcsig_client_t *a = client(&s, "caller");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client(&s, "callee");
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "callee");

    /* Offer, trickled candidates, answer, then the callee's candidate. */
    int64_t t1 = send_ok(a, idb, NULL, OFFER, sizeof OFFER - 1);
    int64_t t2 = send_ok(a, idb, NULL, CAND1, sizeof CAND1 - 1);
    int64_t t3 = send_ok(a, idb, NULL, CAND2, sizeof CAND2 - 1);
    assert_true(t1 < t2 && t2 < t3);
    expect_message(b, ida, "text/plain", OFFER, sizeof OFFER - 1);
    expect_message(b, ida, "text/plain", CAND1, sizeof CAND1 - 1);
    expect_message(b, ida, "text/plain", CAND2, sizeof CAND2 - 1);
    expect_sent(a, t1, idb);
    expect_sent(a, t2, idb);
    expect_sent(a, t3, idb);
    relay(b, idb, a, ida, ANSWER);
    relay(b, idb, a, ida, CAND3);

    /* Hang-up: the 3-byte BYE is an event of its own, not a message. */
    int64_t t = send_ok(a, idb, NULL, STRLIT("BYE"));
    expect_sent(a, t, idb);
    struct pcsig_event *ev = expect_ev(b, PCSIG_EV_PEER_HANGUP);
    assert_int_equal(ev->peer_id, ida);
    pcsig_event_free(ev);
    /* "BYE\n" is just a message. */
    relay(b, idb, a, ida, "BYE\n");

    disconnect_clean(a);
    disconnect_clean(b);
    client_free(a);
    client_free(b);
    h_server_stop(&s);
    h_pass();
}

static void test_fifo_1000(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--queue-max-msgs", "5000", NULL);
    pcsig_client_t *a = client(&s, "sender");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client(&s, "receiver");
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "receiver");

    /* Over TLS 200: each message is a connection of its own, a handshake
     * each (2,000 of them were most of this file's TLS time), and the
     * order is the library's and the server's, not TLS's. */
    const int N = h_tls_mode() ? 200 : 1000;
    int64_t first = 0;
    for (int i = 0; i < N; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "message %04d of %d, %.*s", i, N, i % 20, "xxxxxxxxxxxxxxxxxxxx");
        int64_t t = send_ok(a, idb, i % 2 ? "application/json" : NULL, msg, (size_t)n);
        if (i == 0)
            first = t;
        assert_int_equal(t, first + i); /* tokens count up */
    }
    for (int i = 0; i < N; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "message %04d of %d, %.*s", i, N, i % 20, "xxxxxxxxxxxxxxxxxxxx");
        struct pcsig_event *ev = expect_ev(b, PCSIG_EV_MESSAGE);
        if (ev->len != (size_t)n || memcmp(ev->data, msg, (size_t)n) != 0)
            fail_msg("message %d out of order or changed: got \"%.*s\"", i, (int)ev->len,
                     (const char *)ev->data);
        assert_int_equal(ev->peer_id, ida);
        assert_string_equal(ev->content_type, i % 2 ? "application/json" : "text/plain");
        pcsig_event_free(ev);
    }
    for (int i = 0; i < N; i++)
        expect_sent(a, first + i, idb);
    expect_quiet(a, 50);
    expect_quiet(b, 50);
    disconnect_clean(a);
    disconnect_clean(b);
    client_free(a);
    client_free(b);
    h_server_stop(&s);
    h_pass();
}

static void test_binary_bodies(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    pcsig_client_t *a = client(&s, "bin-a");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client_on(s.port, "bin-b", true, 0); /* and keep-alive on one end */
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "bin-b");

    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    int64_t t = send_ok(a, idb, "application/octet-stream", all, sizeof all);
    expect_sent(a, t, idb);
    expect_message(b, ida, "application/octet-stream", all, sizeof all);

    enum { BIG = 200 * 1024 };
    unsigned char *big = malloc(BIG);
    assert_non_null(big);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < BIG; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big[i] = (unsigned char)x;
    }
    /* One way, then the other: each client's events then come in one order. */
    t = send_ok(b, ida, "application/octet-stream", big, BIG);
    expect_sent(b, t, ida);
    expect_message(a, idb, "application/octet-stream", big, BIG);
    t = send_ok(a, idb, "application/octet-stream", big, BIG);
    expect_sent(a, t, idb);
    expect_message(b, ida, "application/octet-stream", big, BIG);
    free(big);

    /* An empty body is a message too (pcsig relays it). */
    t = send_ok(a, idb, NULL, NULL, 0);
    expect_sent(a, t, idb);
    expect_message(b, ida, "text/plain", "", 0);

    disconnect_clean(a);
    disconnect_clean(b);
    client_free(a);
    client_free(b);
    h_server_stop(&s);
    h_pass();
}

/* The server's body limit (--max-body-bytes, 4 MiB by default): exactly
 * that many binary bytes go through intact; one more fails that message
 * alone with 413, and the session goes on. */
static void test_body_limit(void **state)
{
    (void)state;
    enum { LIMIT = 4 << 20 };
    h_server_t s;
    h_server_start(&s, NULL);
    pcsig_client_t *a = client(&s, "big-a");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client(&s, "big-b");
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "big-b");

    unsigned char *big = malloc(LIMIT + 1);
    assert_non_null(big);
    uint32_t x = 88675123u;
    for (size_t i = 0; i < LIMIT + 1; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big[i] = (unsigned char)x;
    }
    int64_t t = send_ok(a, idb, "application/octet-stream", big, LIMIT);
    expect_sent(a, t, idb);
    expect_message(b, ida, "application/octet-stream", big, LIMIT);

    t = send_ok(a, idb, "application/octet-stream", big, LIMIT + 1);
    struct pcsig_event *ev = expect_ev(a, PCSIG_EV_MESSAGE_FAILED);
    assert_int_equal(ev->token, (uint64_t)t);
    assert_int_equal(ev->status, 413);
    pcsig_event_free(ev);
    free(big);
    /* Only that message: same id, both ways still work, nothing else came. */
    assert_int_equal(pcsig_client_id(a), ida);
    relay(a, ida, b, idb, "after the big one");
    relay(b, idb, a, ida, "and back");
    expect_quiet(a, T_QUIET_MS);
    expect_quiet(b, 10);

    disconnect_clean(a);
    disconnect_clean(b);
    client_free(a);
    client_free(b);
    h_server_stop(&s);
    h_pass();
}

static void test_message_to_departed_peer(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    pcsig_client_t *a = client(&s, "a");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client(&s, "b");
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "b");
    pcsig_client_t *c = client(&s, "c");
    uint64_t idc = signed_in(c, 2);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idc, "c");
    expect_peer(b, PCSIG_EV_PEER_JOINED, idc, "c");

    disconnect_clean(b);
    expect_peer(a, PCSIG_EV_PEER_LEFT, idb, "b");
    expect_peer(c, PCSIG_EV_PEER_LEFT, idb, "b");

    /* The server answers 500 for the departed peer: that message fails... */
    int64_t t = send_ok(a, idb, NULL, STRLIT("are you there?"));
    struct pcsig_event *ev = expect_ev(a, PCSIG_EV_MESSAGE_FAILED);
    assert_int_equal(ev->token, (uint64_t)t);
    assert_int_equal(ev->peer_id, idb);
    assert_int_equal(ev->status, 500);
    assert_non_null(ev->reason);
    if (!strstr(ev->reason, "Peer most likely gone."))
        fail_msg("reason \"%s\"", ev->reason);
    pcsig_event_free(ev);

    /* ...and only that message: same id, the session goes on. */
    assert_int_equal(pcsig_client_id(a), ida);
    relay(a, ida, c, idc, "still here");
    relay(c, idc, a, ida, "me too");
    expect_quiet(a, T_QUIET_MS);

    /* Messages to ourselves come back through the server (B 4.5). */
    t = send_ok(a, ida, "text/x-self", STRLIT("self"));
    expect_sent(a, t, ida);
    expect_message(a, ida, "text/x-self", STRLIT("self"));

    disconnect_clean(a);
    disconnect_clean(c);
    client_free(a);
    client_free(b);
    client_free(c);
    h_server_stop(&s);
    h_pass();
}

static void test_server_killed_and_restarted(void **state)
{
    (void)state;
    h_server_t s1;
    h_server_start(&s1, NULL);
    uint16_t port = s1.port;
    pcsig_client_t *a = client(&s1, "a");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client(&s1, "b");
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "b");
    relay(a, ida, b, idb, "before");

    kill(s1.pid, SIGKILL);
    assert_int_equal(h_server_await_exit(&s1, 5000), 128 + SIGKILL);

    /* Both notice, say when they retry, and keep retrying (refused). */
    pcsig_client_t *both[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        struct pcsig_event *ev = expect_ev(both[i], PCSIG_EV_SERVER_UNREACHABLE);
        assert_non_null(ev->reason);
        assert_true(ev->retry_in_ms >= 25 && ev->retry_in_ms <= 400);
        pcsig_event_free(ev);
        assert_int_equal(pcsig_client_id(both[i]), 0);
        assert_int_equal(pcsig_client_send(both[i], 1, NULL, STRLIT("x")), -ENOTCONN);
        ev = expect_ev(both[i], PCSIG_EV_SERVER_UNREACHABLE);
        pcsig_event_free(ev);
    }

    /* A new server on the same port: both sign in again with new ids. */
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    h_server_t s2;
    h_server_start(&s2, "--port", portstr, NULL);
    assert_int_equal(s2.port, port);
    struct pcsig_event *ea = await_ev(a, PCSIG_EV_SIGNED_IN, SKIP_NOISE);
    struct pcsig_event *eb = await_ev(b, PCSIG_EV_SIGNED_IN, SKIP_NOISE);
    uint64_t na = ea->own_id, nb = eb->own_id;
    assert_true((na == 1 && nb == 2) || (na == 2 && nb == 1));
    /* The later one sees the earlier one in its list; the earlier a join. */
    pcsig_client_t *later = na > nb ? a : b, *earlier = na > nb ? b : a;
    struct pcsig_event *el = na > nb ? ea : eb;
    assert_int_equal(el->npeers, 1);
    assert_int_equal(el->peers[0].id, na > nb ? nb : na);
    pcsig_event_free(ea);
    pcsig_event_free(eb);
    expect_peer(earlier, PCSIG_EV_PEER_JOINED, na > nb ? na : nb, later == a ? "a" : "b");
    assert_int_equal(pcsig_client_id(a), na);
    relay(a, na, b, nb, "after");
    relay(b, nb, a, na, "after too");

    /* SIGTERM: parked waits get the shutdown notice; same story. */
    assert_int_equal(h_server_stop(&s2), 0);
    for (int i = 0; i < 2; i++) {
        struct pcsig_event *ev = expect_ev(both[i], PCSIG_EV_SERVER_UNREACHABLE);
        assert_non_null(ev->reason);
        pcsig_event_free(ev);
    }
    h_server_t s3;
    h_server_start(&s3, "--port", portstr, NULL);
    ea = await_ev(a, PCSIG_EV_SIGNED_IN, SKIP_NOISE);
    eb = await_ev(b, PCSIG_EV_SIGNED_IN, SKIP_NOISE);
    na = ea->own_id;
    nb = eb->own_id;
    pcsig_event_free(ea);
    pcsig_event_free(eb);
    pcsig_event_free(await_ev(na > nb ? b : a, PCSIG_EV_PEER_JOINED, 0));
    relay(a, na, b, nb, "third server");

    disconnect_clean(a);
    disconnect_clean(b);
    client_free(a);
    client_free(b);
    h_server_stop(&s3);
    h_pass();
}

static void test_id_gone_signs_in_again(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    pcsig_client_t *a = client(&s, "a");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client(&s, "b");
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "b");

    /* Someone signs a out behind its back: a's /wait learns its id is gone. */
    h_resp_t *r = h_sign_out(&s, ida);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    expect_peer(b, PCSIG_EV_PEER_LEFT, ida, "a");
    /* a is told that its session (id, peer ids) is void... */
    struct pcsig_event *ev = expect_ev(a, PCSIG_EV_SESSION_LOST);
    assert_non_null(ev->reason);
    assert_true(ev->reason[0] != '\0');
    pcsig_event_free(ev);
    /* ...and signs in again at once, without a backoff (the server is there). */
    ev = expect_ev(a, PCSIG_EV_SIGNED_IN);
    uint64_t na = ev->own_id;
    assert_int_equal(na, 3);
    assert_int_equal(ev->npeers, 1);
    pcsig_event_free(ev);
    expect_peer(b, PCSIG_EV_PEER_JOINED, na, "a");
    relay(b, idb, a, na, "welcome back");

    disconnect_clean(a);
    disconnect_clean(b);
    client_free(a);
    client_free(b);
    h_server_stop(&s);
    h_pass();
}

static void test_wait_timeouts_and_idle_answers(void **state)
{
    (void)state;
    h_server_t s;
    /* The server answers idle waits every 0.3 s; a re-polls every 0.2 s
     * itself (its old wait is then displaced with a 409 nobody reads). */
    h_server_start(&s, "--wait-timeout", "0.3", "--member-timeout", "2", NULL);
    pcsig_client_t *a = client_on(s.port, "short", false, 200);
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client_on(s.port, "idle", false, 0);
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "idle");

    /* Several rounds of both: nothing surfaces as an event, nobody times out. */
    expect_quiet(a, 2500);
    expect_quiet(b, 10);
    relay(a, ida, b, idb, "after the idle answers");
    relay(b, idb, a, ida, "after the client timeouts");

    /* The same with keep-alive on the hanging GET. */
    pcsig_client_t *c = client_on(s.port, "kept", true, 0);
    uint64_t idc = signed_in(c, 2);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idc, "kept");
    expect_peer(b, PCSIG_EV_PEER_JOINED, idc, "kept");
    expect_quiet(c, 1000);
    for (int i = 0; i < 20; i++) {
        char m[32];
        snprintf(m, sizeof m, "kept %d", i);
        relay(a, ida, c, idc, m);
    }
    relay(c, idc, b, idb, "from kept");

    disconnect_clean(a);
    disconnect_clean(b);
    disconnect_clean(c);
    client_free(a);
    client_free(b);
    client_free(c);
    h_server_stop(&s);
    h_pass();
}

/* A --secure-ids server: the client picks up its token and uses it. */
static void test_secure_ids_used_automatically(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--secure-ids", NULL);
    pcsig_client_t *a = client(&s, "alice");
    uint64_t ida = signed_in(a, 0);
    pcsig_client_t *b = client(&s, "bob");
    uint64_t idb = signed_in(b, 1);
    expect_peer(a, PCSIG_EV_PEER_JOINED, idb, "bob");
    relay(a, ida, b, idb, "with a token");
    relay(b, idb, a, ida, "and back");
    /* Without its token nobody can read alice's queue. */
    char req[128];
    snprintf(req, sizeof req, "GET /wait?peer_id=%llu HTTP/1.0\r\n\r\n", (unsigned long long)ida);
    h_resp_t *r = h_request_str(&s, req);
    H_ASSERT_STATUS(r, 403, "Forbidden");
    h_resp_free(r);
    disconnect_clean(b);
    expect_peer(a, PCSIG_EV_PEER_LEFT, idb, "bob");
    disconnect_clean(a);
    client_free(a);
    client_free(b);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* An application that reads no events: past max_event_bytes the client
 * stops polling, the messages stay on the server until its queue is full
 * and the sender gets 503s; once the application reads, every accepted
 * message arrives, in order. */
static void test_backpressure(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--queue-max-bytes", "2097152", NULL);
    struct pcsig_client_options o = {
        .server = "127.0.0.1", .port = s.port, .name = "slow",
        .tls = h_tls_mode(), .ca_file = h_tls_mode() ? h_tls_ca() : NULL,
        .max_event_bytes = 1 << 20,
    };
    pcsig_client_t *r = pcsig_client_new(&o);
    assert_non_null(r);
    clients[T_MAX_CLIENTS - 1] = r;
    assert_int_equal(pcsig_client_connect(r), 0);
    uint64_t idr = signed_in(r, 0);
    pcsig_client_t *w = client(&s, "fast");
    uint64_t idw = signed_in(w, 1);
    pcsig_event_free(expect_ev(r, PCSIG_EV_PEER_JOINED));

    /* 256 KiB each: the reader's library takes 4 (then it holds more than
     * its 1 MiB cap and stops polling), the server queues the next 8 (its
     * 2 MiB cap), and refuses the 13th with a 503. The first 4 are sent
     * one by one, each once the reader took it (the server's queue empty
     * again), so that none of them can find the queue full. */
    enum { N = 12, SIZE = 256 * 1024 };
    char *body = malloc(SIZE);
    assert_non_null(body);
    memset(body, 'm', SIZE);
    for (int i = 0; i < N + 1; i++) {
        snprintf(body, 16, "%06d", i);
        int64_t t = send_ok(w, idr, "application/x-test", body, SIZE);
        struct pcsig_event *ev = pcsig_client_next_event(w, T_EVENT_MS);
        assert_non_null(ev);
        assert_int_equal(ev->token, (uint64_t)t);
        if (i < N) {
            if (ev->type != PCSIG_EV_MESSAGE_SENT)
                fail_msg("message %d: %s", i, ev->reason ? ev->reason : "?");
        } else if (ev->type != PCSIG_EV_MESSAGE_FAILED || ev->status != 503) {
            fail_msg("message %d was accepted: the reader took more than its cap", i);
        }
        pcsig_event_free(ev);
        if (i < 4)
            h_await_metric(&s, "pcsig_queued_messages", 0, T_EVENT_MS);
    }
    /* What the reader's library did not take stays on the server. */
    h_await_metric(&s, "pcsig_queued_messages", N - 4, T_EVENT_MS);
    /* Now read: every accepted message, in order, nothing else. */
    for (int i = 0; i < N; i++) {
        struct pcsig_event *ev = expect_ev(r, PCSIG_EV_MESSAGE);
        assert_int_equal(ev->peer_id, idw);
        assert_int_equal(ev->len, SIZE);
        char want[16];
        snprintf(want, sizeof want, "%06d", i);
        if (memcmp(ev->data, want, 7) != 0)
            fail_msg("message %d came as \"%.6s\"", i, (char *)ev->data);
        pcsig_event_free(ev);
    }
    expect_quiet(r, T_QUIET_MS);
    h_await_metric(&s, "pcsig_queued_messages", 0, T_EVENT_MS);
    /* And the flow goes on as normal. */
    relay(w, idw, r, idr, "after the flood");
    free(body);
    client_free(w);
    h_server_stop(&s);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_two_clients),
        T_TEST(test_three_clients),
        T_TEST(test_offer_answer_candidates),
        T_TEST(test_fifo_1000),
        T_TEST(test_binary_bodies),
        T_TEST(test_body_limit),
        T_TEST(test_message_to_departed_peer),
        T_TEST(test_server_killed_and_restarted),
        T_TEST(test_id_gone_signs_in_again),
        T_TEST(test_wait_timeouts_and_idle_answers),
        T_TEST(test_secure_ids_used_automatically),
        T_TEST(test_backpressure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
