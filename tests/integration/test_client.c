/*
 * Integration: libpcsig-client and the pcsig-client CLI against the real
 * server (started on a free port by the harness), and the library against
 * a scripted server that answers byte for byte like the original.
 *
 * Sign-in lists and join/leave events with two and three clients, the
 * conductor's offer/answer/candidate JSON, FIFO order of 1,000 messages,
 * binary bodies, a message to a departed peer failing alone, the server
 * killed and restarted on the same port, SIGTERM's shutdown notice, our id
 * vanishing (SESSION_LOST), client-side /wait timeouts (also against a
 * scripted server that never answers) and the server's idle answers,
 * keep-alive, self-send, the 4 MiB body limit, clean disconnect, mutual-TLS
 * refusals, and the CLI: --json over pipes (quit and EOF before the sign-in,
 * with the server down too), $WEBRTC_SERVER, the default name,
 * --autoconnect, and log lines on a terminal (a pty). Every wait is for an
 * event with a timeout, never a sleep.
 */
#include "harness.h"
#include "strlit.h"

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
#include "pcsig_client.h"

extern char **environ;

#define T_EVENT_MS 10000 /* one expected event */
#define T_QUIET_MS 300   /* "nothing else arrives" windows */

/* ---- clients the running test created (freed by the teardown) ------------------ */

#define T_MAX_CLIENTS 8
static pcsig_client_t *clients[T_MAX_CLIENTS];

static void certs_cleanup(void);

static int t_teardown(void **state)
{
    certs_cleanup(); /* a failed test leaves no key material behind */
    for (size_t i = 0; i < T_MAX_CLIENTS; i++) {
        pcsig_client_free(clients[i]);
        clients[i] = NULL;
    }
    return h_teardown(state); /* and the CLI processes */
}
#define T_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, t_teardown)

static const char *ev_type_name(enum pcsig_event_type t)
{
    switch (t) {
    case PCSIG_EV_SIGNED_IN: return "SIGNED_IN";
    case PCSIG_EV_PEER_JOINED: return "PEER_JOINED";
    case PCSIG_EV_PEER_LEFT: return "PEER_LEFT";
    case PCSIG_EV_MESSAGE: return "MESSAGE";
    case PCSIG_EV_PEER_HANGUP: return "PEER_HANGUP";
    case PCSIG_EV_MESSAGE_SENT: return "MESSAGE_SENT";
    case PCSIG_EV_MESSAGE_FAILED: return "MESSAGE_FAILED";
    case PCSIG_EV_DISCONNECTED: return "DISCONNECTED";
    case PCSIG_EV_SERVER_UNREACHABLE: return "SERVER_UNREACHABLE";
    case PCSIG_EV_SESSION_LOST: return "SESSION_LOST";
    }
    return "?";
}

static pcsig_client_t *client_on(uint16_t port, const char *name, bool keep_alive,
                                 int wait_timeout_ms)
{
    struct pcsig_client_options o = {
        .server = "127.0.0.1",
        .port = port,
        .name = name,
        .keep_alive = keep_alive,
        .wait_timeout_ms = wait_timeout_ms,
        .reconnect_min_ms = 50,
        .reconnect_max_ms = 400,
        /* TLS mode: the same scenarios over TLS, verified against the test CA. */
        .tls = h_tls_mode(),
        .ca_file = h_tls_mode() ? h_tls_ca() : NULL,
    };
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    size_t i = 0;
    while (i < T_MAX_CLIENTS && clients[i])
        i++;
    assert_true(i < T_MAX_CLIENTS);
    clients[i] = c;
    assert_int_equal(pcsig_client_connect(c), 0);
    return c;
}

static pcsig_client_t *client(const h_server_t *s, const char *name)
{
    return client_on(s->port, name, false, 0);
}

static void client_free(pcsig_client_t *c)
{
    for (size_t i = 0; i < T_MAX_CLIENTS; i++)
        if (clients[i] == c)
            clients[i] = NULL;
    pcsig_client_free(c);
}

/* The next event, which must be of type t (and arrive within T_EVENT_MS). */
#define expect_ev(c, t) (h_at(__FILE__, __LINE__), expect_ev_((c), (t), __FILE__, __LINE__))
static struct pcsig_event *expect_ev_(pcsig_client_t *c, enum pcsig_event_type t,
                                      const char *file, int line)
{
    struct pcsig_event *ev = pcsig_client_next_event(c, T_EVENT_MS);
    if (!ev)
        fail_msg("%s:%d: no %s within %d ms", file, line, ev_type_name(t), T_EVENT_MS);
    if (ev->type != t) {
        char why[256];
        snprintf(why, sizeof why, "%s:%d: got %s (peer %" PRIu64 ", reason %s), wanted %s", file,
                 line, ev_type_name(ev->type), ev->peer_id, ev->reason ? ev->reason : "-",
                 ev_type_name(t));
        pcsig_event_free(ev);
        fail_msg("%s", why);
    }
    return ev;
}

/* The first event of type t, dropping others of the types in skip (a mask
 * of 1 << type); any other event fails the test. */
#define await_ev(c, t, skip) (h_at(__FILE__, __LINE__), await_ev_((c), (t), (skip), __FILE__, __LINE__))
static struct pcsig_event *await_ev_(pcsig_client_t *c, enum pcsig_event_type t, unsigned skip,
                                     const char *file, int line)
{
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        uint64_t now = h_now_ms();
        struct pcsig_event *ev =
            pcsig_client_next_event(c, now >= deadline ? 0 : (int)(deadline - now));
        if (!ev)
            fail_msg("%s:%d: no %s within %d ms", file, line, ev_type_name(t), T_EVENT_MS);
        if (ev->type == t)
            return ev;
        if (!(skip & (1u << ev->type))) {
            char why[256];
            snprintf(why, sizeof why, "%s:%d: unexpected %s (reason %s) while awaiting %s", file,
                     line, ev_type_name(ev->type), ev->reason ? ev->reason : "-",
                     ev_type_name(t));
            pcsig_event_free(ev);
            fail_msg("%s", why);
        }
        pcsig_event_free(ev);
    }
}

/* No event at all within ms. */
static void expect_quiet(pcsig_client_t *c, int ms)
{
    struct pcsig_event *ev = pcsig_client_next_event(c, ms);
    if (ev) {
        char why[256];
        snprintf(why, sizeof why, "unexpected %s (peer %" PRIu64 ", reason %s)",
                 ev_type_name(ev->type), ev->peer_id, ev->reason ? ev->reason : "-");
        pcsig_event_free(ev);
        fail_msg("%s", why);
    }
}

static uint64_t signed_in(pcsig_client_t *c, size_t npeers)
{
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->npeers, npeers);
    uint64_t id = ev->own_id;
    assert_true(id > 0);
    pcsig_event_free(ev);
    assert_int_equal(pcsig_client_id(c), id);
    return id;
}

static void expect_peer(pcsig_client_t *c, enum pcsig_event_type t, uint64_t id, const char *name)
{
    struct pcsig_event *ev = expect_ev(c, t);
    assert_int_equal(ev->peer_id, id);
    assert_non_null(ev->name);
    assert_string_equal(ev->name, name);
    pcsig_event_free(ev);
}

static int64_t send_ok(pcsig_client_t *c, uint64_t to, const char *ctype, const void *p, size_t n)
{
    int64_t t = pcsig_client_send(c, to, ctype, p, n);
    if (t <= 0)
        fail_msg("pcsig_client_send: %" PRId64, t);
    return t;
}

static void expect_sent(pcsig_client_t *c, int64_t token, uint64_t to)
{
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_MESSAGE_SENT);
    assert_int_equal(ev->token, (uint64_t)token);
    assert_int_equal(ev->peer_id, to);
    pcsig_event_free(ev);
}

static void expect_message(pcsig_client_t *c, uint64_t from, const char *ctype, const void *p,
                           size_t n)
{
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_MESSAGE);
    assert_int_equal(ev->peer_id, from);
    if (ctype) {
        assert_non_null(ev->content_type);
        assert_string_equal(ev->content_type, ctype);
    } else {
        assert_null(ev->content_type);
    }
    assert_int_equal(ev->len, n);
    if (n)
        assert_memory_equal(ev->data, p, n);
    pcsig_event_free(ev);
}

/* Send a string and check both ends: the sender's ack, the receiver's copy. */
static void relay(pcsig_client_t *from, uint64_t from_id, pcsig_client_t *to, uint64_t to_id,
                  const char *text)
{
    int64_t t = send_ok(from, to_id, NULL, text, strlen(text));
    expect_sent(from, t, to_id);
    expect_message(to, from_id, "text/plain", text, strlen(text));
}

static void disconnect_clean(pcsig_client_t *c)
{
    assert_int_equal(pcsig_client_disconnect(c), 0);
    /* Peers that left just before may still be queued ahead of it. */
    struct pcsig_event *ev = await_ev(c, PCSIG_EV_DISCONNECTED,
                                      1u << PCSIG_EV_PEER_LEFT | 1u << PCSIG_EV_PEER_JOINED);
    pcsig_event_free(ev);
    assert_int_equal(pcsig_client_id(c), 0);
    assert_int_equal(pcsig_client_send(c, 1, NULL, STRLIT("x")), -ENOTCONN);
}

/* ---- two and three clients -------------------------------------------------------------------- */

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

/* ---- the conductor's payloads -------------------------------------------------------------------- */

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

/* ---- order and size ------------------------------------------------------------------------------ */

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

    enum { N = 1000 };
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

/* ---- failures that must stay small --------------------------------------------------------------- */

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

#define SKIP_NOISE ((1u << PCSIG_EV_SERVER_UNREACHABLE))

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

/* ---- timeouts, idle answers, keep-alive ----------------------------------------------------------- */

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

/* ---- a scripted server with the original's exact answers ---------------------------------------- */

struct fake {
    int lfd;
    uint16_t port;
};

static void fake_start(struct fake *f)
{
    int fds[NET_MAX_LISTENERS], n = 0;
    assert_int_equal(net_listen("127.0.0.1", 0, 16, fds, &n), 0);
    f->lfd = fds[0];
    f->port = (uint16_t)net_local_port(fds[0]);
}

static int fake_accept(struct fake *f)
{
    struct pollfd p = {.fd = f->lfd, .events = POLLIN};
    if (poll(&p, 1, T_EVENT_MS) != 1)
        fail_msg("the client did not connect within %d ms", T_EVENT_MS);
    int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* Read one request (head + Content-Length body); return its bytes. */
static char *fake_read(int fd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        http_request_t req;
        http_error_t err;
        http_limits_t lim = {.max_head = 16384, .max_body = 1 << 20};
        long h = http_parse_request(b, n, &lim, &req, &err);
        if (h < 0)
            fail_msg("the client sent a malformed request: %s", err.reason);
        if (h > 0 && n >= (size_t)h + req.content_length) {
            assert_int_equal(n, (size_t)h + req.content_length); /* nothing after it */
            b[n] = '\0';
            *len = n;
            return b;
        }
        uint64_t now = h_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) != 1)
            fail_msg("no complete request within %d ms (%zu bytes)", T_EVENT_MS, n);
        ssize_t r = read(fd, b + n, cap - 1 - n);
        if (r <= 0)
            fail_msg("the client closed before a complete request (%zu bytes)", n);
        n += (size_t)r;
    }
}

static void fake_expect(int fd, const char *want)
{
    size_t n;
    char *got = fake_read(fd, &n);
    if (n != strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("request bytes differ:\n got: %s\nwant: %s", got, want);
    free(got);
}

/* An answer laid out exactly as the original's DataSocket::Send (B 4.1). */
static void fake_answer_ka(int fd, const char *status, const char *ctype, long pragma,
                           const char *body, bool keep)
{
    buf_t b;
    buf_init(&b, 1 << 20);
    buf_printf(&b, "HTTP/1.1 %s\r\nServer: PeerConnectionTestServer/0.1\r\n"
                   "Cache-Control: no-cache\r\nConnection: %s\r\n", status,
               keep ? "keep-alive" : "close");
    if (ctype)
        buf_printf(&b, "Content-Type: %s\r\n", ctype);
    buf_printf(&b, "Content-Length: %zu\r\n", strlen(body));
    if (pragma >= 0)
        buf_printf(&b, "Pragma: %ld\r\n", pragma);
    buf_append_str(&b, H_CORS_BLOCK + 2);
    buf_append_str(&b, "\r\n");
    buf_append_str(&b, body);
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    buf_free(&b);
}

static void fake_answer(int fd, const char *status, const char *ctype, long pragma,
                        const char *body)
{
    fake_answer_ka(fd, status, ctype, pragma, body, false);
}

/* The original never closes after answering: the client must (B 7.4). */
static void fake_expect_client_close(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, T_EVENT_MS) != 1)
        fail_msg("the client did not close the connection");
    char c;
    assert_int_equal(read(fd, &c, 1), 0);
    close(fd);
}

static void *disconnect_thread(void *arg)
{
    pcsig_client_disconnect(arg);
    return NULL;
}

static void test_wire_against_original(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* the original speaks plain HTTP only */
    struct fake f;
    fake_start(&f);
    pcsig_client_t *c = client_on(f.port, "wire test", false, 0);

    /* C1: the sign-in; the answer lists us first, then the others. */
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?wire%20test HTTP/1.0\r\n\r\n");
    fake_answer(s1, "200 Added", "text/plain", 7, "wire%20test,7,1\nother,3,1\n");
    fake_expect_client_close(s1);
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->own_id, 7);
    assert_int_equal(ev->npeers, 1);
    assert_int_equal(ev->peers[0].id, 3);
    assert_string_equal(ev->peers[0].name, "other");
    pcsig_event_free(ev);

    /* C2: the hanging GET, re-issued after every answer. */
    int w1 = fake_accept(&f);
    fake_expect(w1, "GET /wait?peer_id=7 HTTP/1.0\r\n\r\n");
    fake_answer(w1, "200 OK", "text/plain", 3, "{\"type\":\"offer\"}");
    fake_expect_client_close(w1);
    expect_message(c, 3, "text/plain", STRLIT("{\"type\":\"offer\"}"));
    int w2 = fake_accept(&f);
    fake_expect(w2, "GET /wait?peer_id=7 HTTP/1.0\r\n\r\n");
    fake_answer(w2, "200 OK", "text/plain", 7, "late,9,1\n");
    fake_expect_client_close(w2);
    expect_peer(c, PCSIG_EV_PEER_JOINED, 9, "late");
    int w3 = fake_accept(&f);
    fake_expect(w3, "GET /wait?peer_id=7 HTTP/1.0\r\n\r\n"); /* parked */

    /* C3: a message, then one the server refuses (only it fails). */
    int64_t t = send_ok(c, 3, NULL, STRLIT("{\"type\":\"answer\"}"));
    int m1 = fake_accept(&f);
    fake_expect(m1, "POST /message?peer_id=7&to=3 HTTP/1.0\r\nContent-Length: 17\r\n"
                    "Content-Type: text/plain\r\n\r\n{\"type\":\"answer\"}");
    fake_answer(m1, "200 OK", "text/plain", -1, "");
    fake_expect_client_close(m1);
    expect_sent(c, t, 3);
    t = send_ok(c, 4, NULL, STRLIT("BYE"));
    int m2 = fake_accept(&f);
    fake_expect(m2, "POST /message?peer_id=7&to=4 HTTP/1.0\r\nContent-Length: 3\r\n"
                    "Content-Type: text/plain\r\n\r\nBYE");
    fake_answer(m2, "500 Error", "text/plain", -1, "Peer most likely gone.");
    fake_expect_client_close(m2);
    ev = expect_ev(c, PCSIG_EV_MESSAGE_FAILED);
    assert_int_equal(ev->status, 500);
    assert_string_equal(ev->reason, "500 Error: Peer most likely gone.");
    pcsig_event_free(ev);
    assert_int_equal(pcsig_client_id(c), 7);

    /* The original's shutdown notice (no Pragma) on the parked wait: the
     * server is going; sign in again (B 7.4 would call it a message). */
    fake_answer(w3, "200 OK", "text/plain", -1, "Server shutting down");
    fake_expect_client_close(w3);
    ev = expect_ev(c, PCSIG_EV_SERVER_UNREACHABLE);
    assert_string_equal(ev->reason, "server shutting down");
    pcsig_event_free(ev);
    int s2 = fake_accept(&f);
    fake_expect(s2, "GET /sign_in?wire%20test HTTP/1.0\r\n\r\n");
    fake_answer(s2, "200 Added", "text/plain", 1, "wire%20test,1,1\n");
    fake_expect_client_close(s2);
    assert_int_equal(signed_in(c, 0), 1);

    /* C5: disconnect closes the hanging GET and signs out. */
    int w4 = fake_accept(&f);
    fake_expect(w4, "GET /wait?peer_id=1 HTTP/1.0\r\n\r\n");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, disconnect_thread, c), 0);
    /* In the stock client's order: the hanging GET is closed before the
     * sign-out connects (on loopback its FIN is queued here before the
     * sign-out's connection can be accepted). */
    int o1 = fake_accept(&f);
    char byte;
    ssize_t got = recv(w4, &byte, 1, MSG_DONTWAIT);
    if (got != 0)
        fail_msg("the sign-out connected before the hanging GET was closed (recv: %zd, "
                 "errno %d)", got, got < 0 ? errno : 0);
    close(w4);
    fake_expect(o1, "GET /sign_out?peer_id=1 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    pthread_join(th, NULL);
    fake_expect_client_close(o1);
    ev = expect_ev(c, PCSIG_EV_DISCONNECTED);
    assert_string_equal(ev->reason, "signed out"); /* says how it ended */
    pcsig_event_free(ev);
    client_free(c);
    close(f.lfd);
    h_pass();
}

/* keep_alive: the hanging GET in HTTP/1.1 on one connection while the
 * server keeps it open; a kept connection the server closed is replaced
 * quietly (no lost server, no event). */
static void test_wire_keep_alive(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    struct fake f;
    fake_start(&f);
    pcsig_client_t *c = client_on(f.port, "ka", true, 0);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?ka HTTP/1.0\r\n\r\n"); /* control stays HTTP/1.0 */
    fake_answer(s1, "200 Added", "text/plain", 5, "ka,5,1\n");
    fake_expect_client_close(s1);
    assert_int_equal(signed_in(c, 0), 5);

    char want[128];
    snprintf(want, sizeof want, "GET /wait?peer_id=5 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             (unsigned)f.port);
    int w = fake_accept(&f);
    fake_expect(w, want);
    fake_answer_ka(w, "200 OK", "text/plain", 5, "", true); /* pcsig's idle answer */
    fake_expect(w, want);                                   /* same connection */
    fake_answer_ka(w, "200 OK", "application/json", 8, "{}", true);
    expect_message(c, 8, "application/json", STRLIT("{}"));
    fake_expect(w, want);
    close(w); /* the server drops the kept connection */
    int w2 = fake_accept(&f);
    fake_expect(w2, want);
    expect_quiet(c, T_QUIET_MS);
    fake_answer_ka(w2, "200 OK", "text/plain", 5, "late,9,1\n", false); /* ...and close */
    fake_expect_client_close(w2);
    expect_peer(c, PCSIG_EV_PEER_JOINED, 9, "late");
    int w3 = fake_accept(&f);
    fake_expect(w3, want);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, disconnect_thread, c), 0);
    fake_expect_client_close(w3);
    int o1 = fake_accept(&f);
    fake_expect(o1, "GET /sign_out?peer_id=5 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    pthread_join(th, NULL);
    fake_expect_client_close(o1);
    pcsig_event_free(expect_ev(c, PCSIG_EV_DISCONNECTED));
    client_free(c);
    close(f.lfd);
    h_pass();
}

/* A server that takes the /wait and never answers nor closes it: the
 * client's own limit fires (the connection is half-closed at
 * wait_timeout_ms) and a new /wait follows within the grace period. */
static void test_wire_wait_timeout(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    enum { WAIT_MS = 300, GRACE_MS = 1000, SLACK_MS = 2000 };
    struct fake f;
    fake_start(&f);
    pcsig_client_t *c = client_on(f.port, "silent", false, WAIT_MS);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?silent HTTP/1.0\r\n\r\n");
    fake_answer(s1, "200 Added", "text/plain", 4, "silent,4,1\n");
    fake_expect_client_close(s1);
    assert_int_equal(signed_in(c, 0), 4);

    int w1 = fake_accept(&f);
    fake_expect(w1, "GET /wait?peer_id=4 HTTP/1.0\r\n\r\n");
    uint64_t t0 = h_now_ms();
    /* No answer: the client half-closes at its limit (EOF here, not sooner). */
    struct pollfd p = {.fd = w1, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS + SLACK_MS) != 1)
        fail_msg("no half-close within %d ms of the /wait", WAIT_MS + SLACK_MS);
    char ch;
    assert_int_equal(read(w1, &ch, 1), 0);
    uint64_t half = h_now_ms() - t0;
    if (half < WAIT_MS / 2)
        fail_msg("half-closed after %" PRIu64 " ms, before the %d ms limit", half, WAIT_MS);
    /* We still neither answer nor close: the re-poll must come anyway. */
    struct pollfd pl = {.fd = f.lfd, .events = POLLIN};
    if (poll(&pl, 1, WAIT_MS + GRACE_MS + SLACK_MS) != 1)
        fail_msg("no second /wait within %d ms", WAIT_MS + GRACE_MS + SLACK_MS);
    int w2 = fake_accept(&f);
    fake_expect(w2, "GET /wait?peer_id=4 HTTP/1.0\r\n\r\n");
    uint64_t again = h_now_ms() - t0;
    if (again > WAIT_MS + GRACE_MS + SLACK_MS)
        fail_msg("second /wait after %" PRIu64 " ms", again);
    expect_quiet(c, 10); /* a timeout is not an event */
    /* And the new /wait works. */
    fake_answer(w2, "200 OK", "text/plain", 3, "after the silence");
    fake_expect_client_close(w2);
    expect_message(c, 3, "text/plain", STRLIT("after the silence"));
    close(w1);

    int w3 = fake_accept(&f);
    fake_expect(w3, "GET /wait?peer_id=4 HTTP/1.0\r\n\r\n");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, disconnect_thread, c), 0);
    fake_expect_client_close(w3);
    int o1 = fake_accept(&f);
    fake_expect(o1, "GET /sign_out?peer_id=4 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    pthread_join(th, NULL);
    fake_expect_client_close(o1);
    pcsig_event_free(expect_ev(c, PCSIG_EV_DISCONNECTED));
    client_free(c);
    close(f.lfd);
    h_pass();
}

/* ---- secure ids and TLS failures ------------------------------------------------------------ */

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

static int insecure_warnings; /* records of the insecure-mode warning seen by the sink */

static void count_insecure_warning(void *arg, const char *rec, size_t len)
{
    (void)arg;
    if (memmem(rec, len, STRLIT("WARN")) && memmem(rec, len, STRLIT("NOT verified")))
        insecure_warnings++;
}

/* TLS mode only: a client that does not trust the server's CA gets one clear
 * fatal error; --insecure connects anyway, after a loud warning. */
static void test_tls_untrusted_server(void **state)
{
    (void)state;
    if (!h_tls_mode())
        skip();
    h_server_t s;
    h_server_start(&s, NULL);
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
    h_pass();
}

/* ---- the CLI in --json mode -------------------------------------------------------------------- */

static const char *client_path(void)
{
    const char *p = getenv("PCSIG_CLIENT");
    return p && *p ? p : "build/pcsig-client";
}

/* Our environment changed by env (NULL-terminated, or NULL): "NAME=value"
 * sets, a bare "NAME" removes. Free with free(). */
static char **env_with(const char *const *env)
{
    size_t n = 0, extra = 0;
    while (environ[n])
        n++;
    while (env && env[extra])
        extra++;
    char **out = calloc(n + extra + 1, sizeof *out);
    assert_non_null(out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool drop = false;
        for (size_t j = 0; j < extra; j++) {
            size_t l = strcspn(env[j], "=");
            if (strncmp(environ[i], env[j], l) == 0 && environ[i][l] == '=')
                drop = true;
        }
        if (!drop)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < extra; j++)
        if (strchr(env[j], '='))
            out[k++] = (char *)env[j];
    out[k] = NULL;
    return out;
}

/* Spawn the CLI with args (NULL-terminated) and pipes on stdin and stdout;
 * stderr is ours unless capture_err (then a pipe: p->err_fd); the
 * environment is ours changed by env (see env_with; NULL: unchanged). */
static h_proc_t *cli_spawn_env(const char *const *args, bool capture_err,
                                  const char *const *env)
{
    char *argv[32];
    size_t n = 0;
    argv[n++] = (char *)client_path();
    for (; *args && n < 28; args++)
        argv[n++] = (char *)*args;
    if (h_tls_mode()) {
        argv[n++] = "--tls";
        argv[n++] = "--ca";
        argv[n++] = (char *)h_tls_ca();
    }
    argv[n] = NULL;
    char **envp = env_with(env);
    h_proc_t *p = h_proc_spawn(argv, envp, capture_err);
    free(envp);
    return p;
}

static h_proc_t *cli_spawn_(const char *const *args, bool capture_err)
{
    return cli_spawn_env(args, capture_err, NULL);
}

static h_proc_t *cli_spawn(const char *const *args)
{
    return cli_spawn_(args, false);
}

/* The next stdout line (without '\n'), malloc'd. */
static char *cli_line(h_proc_t *p)
{
    char *line = h_proc_line_by(p, h_now_ms() + T_EVENT_MS);
    if (!line)
        fail_msg("no output line from the CLI within %d ms (have \"%.*s\")", T_EVENT_MS,
                 (int)p->len, p->buf);
    return line;
}

#define cli_expect(p, want) (h_at(__FILE__, __LINE__), cli_expect_((p), (want), __LINE__))
static void cli_expect_(h_proc_t *p, const char *want, int line)
{
    char *got = cli_line(p);
    if (strcmp(got, want) != 0)
        fail_msg("line %d: CLI printed\n  %s\nwanted\n  %s", line, got, want);
    free(got);
}

/* Close stdin (EOF = quit) and await the exit; returns the exit status. */
static int cli_finish(h_proc_t *p, bool close_stdin)
{
    if (close_stdin && p->in_fd >= 0) {
        close(p->in_fd);
        p->in_fd = -1;
    }
    return h_proc_exit(p, T_EVENT_MS);
}

static void test_cli_json(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);

    const char *xa[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "x", NULL};
    h_proc_t *x = cli_spawn(xa);
    cli_expect(x, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    const char *ya[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "y z", NULL};
    h_proc_t *y = cli_spawn(ya);
    cli_expect(y, "{\"event\":\"signed_in\",\"id\":2,\"peers\":[{\"id\":1,\"name\":\"x\","
                  "\"connected\":true}]}");
    cli_expect(x, "{\"event\":\"peer_joined\",\"id\":2,\"name\":\"y%20z\"}");

    /* Text with escapes, then binary. */
    h_proc_send(y, "{\"cmd\":\"send\",\"to\":1,\"data\":\"hello \\\"world\\\"\\n\\u00e9\"}");
    cli_expect(y, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(y, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(x, "{\"event\":\"message\",\"from\":2,\"content_type\":\"text/plain\","
                  "\"data\":\"hello \\\"world\\\"\\n\xc3\xa9\"}");
    h_proc_send(y, "{\"cmd\":\"send\",\"to\":1,\"data_b64\":\"AP8=\","
                "\"content_type\":\"application/octet-stream\"}");
    cli_expect(y, "{\"event\":\"queued\",\"token\":2,\"to\":1}");
    cli_expect(y, "{\"event\":\"sent\",\"token\":2,\"to\":1}");
    cli_expect(x, "{\"event\":\"message\",\"from\":2,\"content_type\":"
                  "\"application/octet-stream\",\"data_b64\":\"AP8=\"}");

    /* Bad input lines are reported, never fatal. */
    h_proc_send(x, "this is not json");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: not a JSON object\"}");
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":true,\"data\":\"x\"}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: \\\"to\\\" must be a peer id "
                  "(a positive integer) or a peer's name\"}");
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":\"nobody\",\"data\":\"x\"}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"no peer named \\\"nobody\\\" (see peers)\"}");
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":2,\"data\":{\"nested\":1}}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: nested objects and arrays "
                  "are not supported\"}");
    h_proc_send(x, "{\"cmd\":\"dance\"}");
    cli_expect(x, "{\"event\":\"error\",\"reason\":\"bad command: unknown \\\"cmd\\\"\"}");
    h_proc_send(x, "");

    /* A message to nobody fails alone. */
    h_proc_send(x, "{\"cmd\":\"send\",\"to\":99,\"data\":\"anyone?\"}");
    cli_expect(x, "{\"event\":\"queued\",\"token\":1,\"to\":99}");
    cli_expect(x, "{\"event\":\"send_failed\",\"token\":1,\"to\":99,\"status\":500,"
                  "\"reason\":\"500 Error: Peer most likely gone.\"}");

    /* Hang-up and the peer list. */
    h_proc_send(x, "{\"cmd\":\"bye\",\"to\":2}");
    cli_expect(x, "{\"event\":\"queued\",\"token\":2,\"to\":2}");
    cli_expect(x, "{\"event\":\"sent\",\"token\":2,\"to\":2}");
    cli_expect(y, "{\"event\":\"hangup\",\"from\":1}");
    h_proc_send(y, "{\"cmd\":\"peers\"}");
    cli_expect(y, "{\"event\":\"peers\",\"peers\":[{\"id\":1,\"name\":\"x\",\"connected\":true}]}");

    /* --autocall: a third CLI calls the lowest id with an offer. */
    const char *za[] = {"--json", "--autocall", "--server", "127.0.0.1", "--port", port,
                        "--name", "z", NULL};
    h_proc_t *z = cli_spawn(za);
    char *line = cli_line(z);
    assert_non_null(strstr(line, "{\"event\":\"signed_in\",\"id\":3,"));
    free(line);
    cli_expect(z, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(z, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(x, "{\"event\":\"peer_joined\",\"id\":3,\"name\":\"z\"}");
    cli_expect(y, "{\"event\":\"peer_joined\",\"id\":3,\"name\":\"z\"}");
    line = cli_line(x);
    if (!strstr(line, "{\"event\":\"message\",\"from\":3,\"content_type\":\"text/plain\","
                      "\"data\":\"{\\\"sdp\\\": \\\"v=0\\\\r\\\\no=- ") ||
        !strstr(line, "\\\", \\\"type\\\": \\\"offer\\\"}\"}"))
        fail_msg("not an offer: %s", line);
    free(line);

    /* EOF on stdin: sign out, report, exit 0; the others see it at once. */
    assert_int_equal(close(z->in_fd), 0);
    z->in_fd = -1;
    cli_expect(z, "{\"event\":\"disconnected\",\"reason\":\"signed out (end of input)\"}");
    assert_int_equal(cli_finish(z, true), 0);
    cli_expect(x, "{\"event\":\"peer_left\",\"id\":3,\"name\":\"z\"}");
    cli_expect(y, "{\"event\":\"peer_left\",\"id\":3,\"name\":\"z\"}");

    /* A send right before EOF still goes out before the sign-out. */
    h_proc_send(y, "{\"cmd\":\"send\",\"to\":1,\"data\":\"last words\"}");
    assert_int_equal(close(y->in_fd), 0);
    y->in_fd = -1;
    cli_expect(y, "{\"event\":\"queued\",\"token\":3,\"to\":1}");
    cli_expect(y, "{\"event\":\"sent\",\"token\":3,\"to\":1}");
    cli_expect(y, "{\"event\":\"disconnected\",\"reason\":\"signed out (end of input)\"}");
    assert_int_equal(cli_finish(y, true), 0);
    cli_expect(x, "{\"event\":\"message\",\"from\":2,\"content_type\":\"text/plain\","
                  "\"data\":\"last words\"}");
    cli_expect(x, "{\"event\":\"peer_left\",\"id\":2,\"name\":\"y%20z\"}");

    /* Signed out behind its back: the lost session is reported before the
     * new sign-in (its ids are void), not just a new signed_in. */
    h_resp_t *r = h_sign_out(&s, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    line = cli_line(x);
    static const char lost[] = "{\"event\":\"session_lost\",\"reason\":\"";
    if (strncmp(line, lost, sizeof lost - 1) != 0)
        fail_msg("CLI printed %s", line);
    free(line);
    cli_expect(x, "{\"event\":\"signed_in\",\"id\":4,\"peers\":[]}");

    h_proc_send(x, "{\"cmd\":\"quit\"}");
    cli_expect(x, "{\"event\":\"disconnected\",\"reason\":\"signed out (quit command)\"}");
    assert_int_equal(cli_finish(x, false), 0);
    h_server_stop(&s);
    h_pass();
}

/* Commands piped before the sign-in completes wait for it; EOF after them
 * still means quit (once they ran). */
static void test_cli_piped(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *a = client(&s, "listener");
    uint64_t ida = signed_in(a, 0);

    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "pipe",
                          NULL};
    h_proc_t *p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"piped 1\"}");
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"piped 2\",\"content_type\":\"text/x\"}");
    close(p->in_fd);
    p->in_fd = -1;
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":2,\"peers\":[{\"id\":1,"
                  "\"name\":\"listener\",\"connected\":true}]}");
    cli_expect(p, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"queued\",\"token\":2,\"to\":1}");
    cli_expect(p, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"sent\",\"token\":2,\"to\":1}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"signed out (end of input)\"}");
    assert_int_equal(cli_finish(p, true), 0);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, "pipe");
    expect_message(a, 2, "text/plain", STRLIT("piped 1"));
    expect_message(a, 2, "text/x", STRLIT("piped 2"));
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, "pipe");
    (void)ida;
    disconnect_clean(a);
    client_free(a);
    h_server_stop(&s);
    h_pass();
}

/* --exec: the command gets the body on stdin and the sender in its env. */
static void test_cli_exec(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-exec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char fifo[64], cmd[256];
    snprintf(fifo, sizeof fifo, "%s/out", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* Read-write: we are a writer too, so the FIFO never reports a hang-up. */
    int ffd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    assert_true(ffd >= 0);
    snprintf(cmd, sizeof cmd,
             "{ printf 'from=%%s type=%%s body=' \"$PCSIG_FROM\" \"$PCSIG_CONTENT_TYPE\"; cat; "
             "printf '|'; } > %s", fifo);

    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "ex",
                          "--exec", cmd, NULL};
    h_proc_t *p = cli_spawn(args);
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    pcsig_client_t *a = client(&s, "sender");
    uint64_t ida = signed_in(a, 1);
    int64_t t = send_ok(a, 1, "text/x-exec", STRLIT("line one\nline two"));
    expect_sent(a, t, 1);

    char got[256];
    size_t n = 0;
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    while (!memchr(got, '|', n)) {
        struct pollfd pf = {.fd = ffd, .events = POLLIN};
        uint64_t now = h_now_ms();
        if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) != 1)
            fail_msg("--exec wrote \"%.*s\" only", (int)n, got);
        ssize_t r = read(ffd, got + n, sizeof got - 1 - n);
        if (r > 0)
            n += (size_t)r;
    }
    got[n] = '\0';
    char want[128];
    snprintf(want, sizeof want, "from=%" PRIu64 " type=text/x-exec body=line one\nline two|", ida);
    assert_string_equal(got, want);

    disconnect_clean(a);
    client_free(a);
    assert_int_equal(cli_finish(p, true), 0);
    h_server_stop(&s);
    close(ffd);
    unlink(fifo);
    rmdir(dir);
    h_pass();
}

static void test_cli_options(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "65536", "abc", "-1", "8888x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"--json", "--port", bad[i], NULL};
        h_proc_t *p = cli_spawn_(args, true);
        char err[256];
        size_t n = 0;
        struct pollfd pf = {.fd = p->err_fd, .events = POLLIN};
        while (n < sizeof err - 1 && poll(&pf, 1, T_EVENT_MS) == 1) {
            ssize_t r = read(p->err_fd, err + n, sizeof err - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
        err[n] = '\0';
        char want[128];
        snprintf(want, sizeof want, "Error: %s is not a valid port.\n", bad[i]);
        assert_string_equal(err, want);
        assert_int_equal(cli_finish(p, true), 2);
    }
    const char *help[] = {"--help", NULL};
    h_proc_t *p = cli_spawn(help);
    char *line = cli_line(p);
    assert_non_null(strstr(line, "usage: pcsig-client"));
    free(line);
    assert_int_equal(cli_finish(p, true), 0);
    const char *unknown[] = {"--bogus", NULL};
    p = cli_spawn(unknown);
    assert_int_equal(cli_finish(p, true), 2);
    h_pass();
}

/* The next stdout line that does not start with skip (NULL: none) must be want. */
#define cli_expect_after(p, skip, want) \
    (h_at(__FILE__, __LINE__), cli_expect_after_((p), (skip), (want), __LINE__))
static void cli_expect_after_(h_proc_t *p, const char *skip, const char *want, int line)
{
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        char *got = cli_line(p);
        if (skip && strncmp(got, skip, strlen(skip)) == 0) {
            free(got);
            if (h_now_ms() > deadline) /* skipped lines forever: want never came */
                fail_msg("line %d: no \"%s\" within %d ms", line, want, T_EVENT_MS);
            continue;
        }
        if (strcmp(got, want) != 0)
            fail_msg("line %d: CLI printed\n  %s\nwanted\n  %s", line, got, want);
        free(got);
        return;
    }
}

#define UNREACHABLE_EV "{\"event\":\"server_unreachable\","

/* --json with nobody listening: a quit or EOF before the sign-in ends the
 * CLI at once (it used to wait for a sign-in that never came); commands
 * held for the sign-in are then reported as not sent, and the status is 1. */
static void test_cli_quit_before_sign_in(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f);
    close(f.lfd); /* the port now refuses */
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)f.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "early",
                          "--log-level", "error", NULL};

    /* quit, stdin left open: status 0. */
    h_proc_t *p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"quit\"}");
    cli_expect_after(p, UNREACHABLE_EV, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (quit command)\"}");
    assert_int_equal(cli_finish(p, false), 0);

    /* EOF with nothing typed: status 0. */
    p = cli_spawn(args);
    close(p->in_fd);
    p->in_fd = -1;
    cli_expect_after(p, UNREACHABLE_EV, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (end of input)\"}");
    assert_int_equal(cli_finish(p, true), 0);

    /* A send held for the sign-in, then EOF: the failed sign-in is shown,
     * the send reported as not sent, status 1. */
    p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"lost\"}");
    close(p->in_fd);
    p->in_fd = -1;
    char *line = cli_line(p);
    static const char failed[] = UNREACHABLE_EV "\"reason\":\"sign-in: connect: ";
    if (strncmp(line, failed, sizeof failed - 1) != 0)
        fail_msg("CLI printed %s", line);
    free(line);
    cli_expect_after(p, UNREACHABLE_EV,
                     "{\"event\":\"error\",\"reason\":\"cannot send: not signed in\"}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (end of input)\"}");
    assert_int_equal(cli_finish(p, true), 1);

    /* The same with quit; what follows the quit is not read. */
    p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"bye\",\"to\":1}");
    h_proc_send(p, "{\"cmd\":\"quit\"}");
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"after quit\"}");
    cli_expect_after(p, UNREACHABLE_EV,
                     "{\"event\":\"error\",\"reason\":\"cannot send: not signed in\"}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"disconnected while not signed in (quit command)\"}");
    assert_int_equal(cli_finish(p, false), 1);
    h_pass();
}

/* A quit piped right after commands (before the sign-in completes) still
 * runs them first, as EOF does (test_cli_piped), with stdin left open. */
static void test_cli_quit_after_held(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *a = client(&s, "listener");
    signed_in(a, 0);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "q",
                          NULL};
    h_proc_t *p = cli_spawn(args);
    h_proc_send(p, "{\"cmd\":\"send\",\"to\":1,\"data\":\"then quit\"}");
    h_proc_send(p, "{\"cmd\":\"quit\"}");
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":2,\"peers\":[{\"id\":1,"
                  "\"name\":\"listener\",\"connected\":true}]}");
    cli_expect(p, "{\"event\":\"queued\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"sent\",\"token\":1,\"to\":1}");
    cli_expect(p, "{\"event\":\"disconnected\",\"reason\":\"signed out (quit command)\"}");
    assert_int_equal(cli_finish(p, false), 0);
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, "q");
    expect_message(a, 2, "text/plain", STRLIT("then quit"));
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, "q");
    disconnect_clean(a);
    client_free(a);
    h_server_stop(&s);
    h_pass();
}

/* The stock client's defaults: the server from $WEBRTC_SERVER, the name
 * $USERNAME@hostname (as the server lists it: URL-safe); interactive mode
 * connects on "connect", or at start with --autoconnect. */
static void test_cli_defaults_and_autoconnect(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *a = client(&s, "listener");
    signed_in(a, 0);

    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';
    buf_t want_name;
    buf_init(&want_name, 4096);
    assert_int_equal(buf_append_str(&want_name, "pcsig-tester@"), 0);
    for (const unsigned char *h = (const unsigned char *)host; *h; h++) {
        bool safe = (*h >= 'A' && *h <= 'Z') || (*h >= 'a' && *h <= 'z') ||
                    (*h >= '0' && *h <= '9') || strchr("-._~@", *h);
        assert_int_equal(safe ? buf_append(&want_name, h, 1)
                              : buf_printf(&want_name, "%%%02X", *h), 0);
    }
    assert_int_equal(buf_append(&want_name, "", 1), 0);
    const char *env[] = {"WEBRTC_SERVER=127.0.0.1", "USERNAME=pcsig-tester", NULL};
    char want[128];

    /* Without --autoconnect: nothing until "connect". */
    const char *args[] = {"--port", port, NULL};
    h_proc_t *p = cli_spawn_env(args, false, env);
    expect_quiet(a, T_QUIET_MS);
    h_proc_send(p, "connect");
    snprintf(want, sizeof want, "connecting to 127.0.0.1:%s ...", port);
    cli_expect(p, want);
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 2; 1 peer(s)", port);
    cli_expect(p, want);
    cli_expect(p, "  1 \"listener\"");
    expect_peer(a, PCSIG_EV_PEER_JOINED, 2, want_name.data);
    h_proc_send(p, "quit");
    cli_expect(p, "disconnected: \"signed out (quit command)\"");
    assert_int_equal(cli_finish(p, false), 0);
    expect_peer(a, PCSIG_EV_PEER_LEFT, 2, want_name.data);

    /* --autoconnect: at once. */
    const char *auto_args[] = {"--autoconnect", "--port", port, NULL};
    p = cli_spawn_env(auto_args, false, env);
    snprintf(want, sizeof want, "connecting to 127.0.0.1:%s ...", port);
    cli_expect(p, want);
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 3; 1 peer(s)", port);
    cli_expect(p, want);
    cli_expect(p, "  1 \"listener\"");
    expect_peer(a, PCSIG_EV_PEER_JOINED, 3, want_name.data);
    assert_int_equal(cli_finish(p, true), 0);
    expect_peer(a, PCSIG_EV_PEER_LEFT, 3, want_name.data);
    buf_free(&want_name);
    disconnect_clean(a);
    client_free(a);
    h_server_stop(&s);
    h_pass();
}

/* ---- the CLI on a terminal ------------------------------------------------------------------------ */

/* Spawn the CLI with stdin, stdout and stderr on a new pseudo-terminal;
 * p->out_fd is the master (in_fd and err_fd are copies of it). */
static h_proc_t *cli_spawn_pty(const char *const *args)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(m >= 0);
    assert_int_equal(grantpt(m), 0);
    assert_int_equal(unlockpt(m), 0);
    char slave[128];
    assert_int_equal(ptsname_r(m, slave, sizeof slave), 0);
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)client_path();
    for (; *args && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, slave, O_RDWR | O_NOCTTY, 0);
    posix_spawn_file_actions_adddup2(&fa, 0, 1);
    posix_spawn_file_actions_adddup2(&fa, 0, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fail_msg("cannot run %s (error %d); set PCSIG_CLIENT", argv[0], rc);
    h_proc_t *p =
        h_proc_adopt(pid, fcntl(m, F_DUPFD_CLOEXEC, 3), m, fcntl(m, F_DUPFD_CLOEXEC, 3));
    assert_true(p->in_fd >= 0 && p->err_fd >= 0);
    return p;
}

/* Read the terminal until what it showed since offset `from` contains
 * needle; returns needle's offset in p->buf (nothing is consumed). */
#define pty_await(p, from, needle) (h_at(__FILE__, __LINE__), pty_await_((p), (from), (needle)))
static size_t pty_await_(h_proc_t *p, size_t from, const char *needle)
{
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    size_t nl = strlen(needle);
    for (;;) {
        if (p->len >= from + nl) {
            const char *at = memmem(p->buf + from, p->len - from, needle, nl);
            if (at)
                return (size_t)(at - p->buf);
        }
        uint64_t now = h_now_ms();
        struct pollfd pf = {.fd = p->out_fd, .events = POLLIN};
        if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) != 1 ||
            p->len == sizeof p->buf)
            fail_msg("the terminal never showed \"%s\"; it shows:\n%.*s", needle, (int)p->len,
                     p->buf);
        ssize_t r = read(p->out_fd, p->buf + p->len, sizeof p->buf - p->len);
        if (r <= 0)
            fail_msg("the terminal closed before \"%s\"; it shows:\n%.*s", needle, (int)p->len,
                     p->buf);
        p->len += (size_t)r;
    }
}

/* Interactive mode on a terminal: a warning the library logs while a line
 * is half typed is printed on a line of its own (the prompt erased first)
 * and the prompt with the typed text is redrawn after it, as for events;
 * it used to land in the middle of the input ("> send 1 typ2026-...WARN"). */
static void test_cli_tty_log_lines(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    struct fake f;
    fake_start(&f);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)f.port);
    const char *args[] = {"--server", "127.0.0.1", "--port", port, "--name", "tty",
                          "--autoconnect", NULL};
    h_proc_t *p = cli_spawn_pty(args);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?tty HTTP/1.0\r\n\r\n");
    fake_answer(s1, "200 Added", "text/plain", 5, "tty,5,1\n");
    fake_expect_client_close(s1);
    char want[128];
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 5; 0 peer(s)\r\n> ", port);
    size_t at = pty_await(p, 0, want);

    static const char typed[] = "send 1 typ";
    assert_int_equal(write(p->in_fd, typed, sizeof typed - 1), (ssize_t)(sizeof typed - 1));
    at = pty_await(p, at, typed); /* our echo */

    /* A /wait answer the client does not understand: it logs a warning. */
    int w1 = fake_accept(&f);
    fake_expect(w1, "GET /wait?peer_id=5 HTTP/1.0\r\n\r\n");
    fake_answer(w1, "404 Not Found", "text/plain", -1, "");
    static const char warn[] = " WARN [hanging_get] client: unexpected status on /wait (status "
                               "404); polling again shortly";
    size_t w = pty_await(p, at, warn);
    /* "\r ESC[K" (prompt erased), then the record from its time stamp on. */
    static const char erase[] = "\r\033[K";
    enum { STAMP = 24 }; /* 2026-11-25T08:00:00.123Z */
    if (w < at + STAMP + sizeof erase - 1 ||
        memcmp(p->buf + w - STAMP - (sizeof erase - 1), erase, sizeof erase - 1) != 0)
        fail_msg("the warning does not start on an erased line:\n%.*s", (int)(p->len - at),
                 p->buf + at);
    /* ...and the prompt comes back with the half-typed line. */
    snprintf(want, sizeof want, "%s\r\n\r\033[K> %s", warn, typed);
    pty_await(p, at, want);
    close(w1);
    int w2 = fake_accept(&f); /* it polls again after a pause */
    fake_expect(w2, "GET /wait?peer_id=5 HTTP/1.0\r\n\r\n");

    /* ^U drops the typed text; quit abandons the /wait and signs out. */
    assert_int_equal(write(p->in_fd, STRLIT("\025quit\r")), 6);
    int o1 = fake_accept(&f);
    fake_expect(o1, "GET /sign_out?peer_id=5 HTTP/1.0\r\n\r\n");
    fake_answer(o1, "200 OK", "text/plain", -1, "");
    assert_int_equal(cli_finish(p, false), 0);
    close(o1);
    close(w2);
    close(f.lfd);
    h_pass();
}

/* ---- mutual TLS ------------------------------------------------------------------------------ */

/* Two development CAs made by certs/gen-certs.sh (A: server and client
 * certificates the server trusts; B: a client certificate it does not). */
struct certs {
    char a[64], b[64];
    char path[6][128];
};
static struct certs *certs_made; /* removed by the teardown */

static const char *cert_in(struct certs *k, int slot, const char *dir, const char *name)
{
    snprintf(k->path[slot], sizeof k->path[slot], "%s/%s", dir, name);
    return k->path[slot];
}

static void certs_make(struct certs *k)
{
    snprintf(k->a, sizeof k->a, "/tmp/pcsig-client-ca-XXXXXX");
    snprintf(k->b, sizeof k->b, "/tmp/pcsig-client-ca-XXXXXX");
    assert_non_null(mkdtemp(k->a));
    assert_non_null(mkdtemp(k->b));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "certs/gen-certs.sh --force %s >/dev/null && "
                              "certs/gen-certs.sh --force %s >/dev/null", k->a, k->b);
    certs_made = k;
    if (system(cmd) != 0)
        fail_msg("certs/gen-certs.sh failed (run the tests from the repository root)");
}

static void certs_cleanup(void)
{
    if (!certs_made)
        return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", certs_made->a, certs_made->b);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s %s\n", certs_made->a, certs_made->b);
    certs_made = NULL;
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

/* ---- issue 12: auth token, bounded --exec, backpressure, huge lists, names ------------------------- */

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

/* All of a CLI's stderr until it closes (the CLI exited). */
static char *cli_all_stderr(h_proc_t *p)
{
    buf_t b;
    buf_init(&b, 1 << 24);
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        struct pollfd pf = {.fd = p->err_fd, .events = POLLIN};
        if (poll(&pf, 1, h_ms_left(deadline)) != 1)
            fail_msg("stderr not closed within %d ms", T_EVENT_MS);
        char tmp[4096];
        ssize_t r = read(p->err_fd, tmp, sizeof tmp);
        if (r <= 0)
            break;
        assert_int_equal(buf_append(&b, tmp, (size_t)r), 0);
    }
    assert_int_equal(buf_append(&b, "", 1), 0);
    return b.data;
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

/* --exec under a flood: one child per peer at a time, --exec-max in all,
 * and every message still runs. Each child appends "s FROM PID" when it
 * starts and "e FROM PID" before it ends (O_APPEND writes of a line are
 * atomic), so the file's order shows what overlapped. */
static void test_cli_exec_bounded(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-execb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char logp[64], cmd[256];
    snprintf(logp, sizeof logp, "%s/log", dir);
    int lfd = open(logp, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(lfd >= 0);
    close(lfd);
    /* The child's work takes a moment, so that unbounded children overlap. */
    snprintf(cmd, sizeof cmd,
             "echo \"s $PCSIG_FROM $$\" >> %s; cat > /dev/null; sleep 0.05; "
             "echo \"e $PCSIG_FROM $$\" >> %s", logp, logp);
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "ex",
                          "--exec", cmd, "--exec-max", "3", NULL};
    h_proc_t *p = cli_spawn(args);
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    enum { SENDERS = 6, EACH = 8 };
    pcsig_client_t *snd[SENDERS];
    for (int i = 0; i < SENDERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        snd[i] = client(&s, name);
        pcsig_event_free(expect_ev(snd[i], PCSIG_EV_SIGNED_IN));
    }
    for (int k = 0; k < EACH; k++)
        for (int i = 0; i < SENDERS; i++)
            send_ok(snd[i], 1, NULL, STRLIT("x"));
    if (!h_await_log(logp, 0, "e ", SENDERS * EACH, 4 * T_EVENT_MS))
        fail_msg("not every message ran its --exec child");

    FILE *f = fopen(logp, "r");
    assert_non_null(f);
    char l[128];
    int running = 0, max_running = 0, starts = 0, ends = 0;
    int per_peer[SENDERS + 2] = {0};
    while (fgets(l, sizeof l, f)) {
        unsigned from = 0;
        char kind = 0;
        assert_int_equal(sscanf(l, "%c %u", &kind, &from), 2);
        assert_true(from >= 2 && from < SENDERS + 2);
        if (kind == 's') {
            starts++;
            if (++running > max_running)
                max_running = running;
            if (++per_peer[from] > 1)
                fail_msg("two children at once for the messages of peer %u", from);
        } else {
            ends++;
            running--;
            per_peer[from]--;
        }
    }
    fclose(f);
    assert_int_equal(starts, SENDERS * EACH);
    assert_int_equal(ends, SENDERS * EACH);
    if (max_running > 3)
        fail_msg("%d --exec children ran at once (--exec-max 3)", max_running);
    for (int i = 0; i < SENDERS; i++)
        client_free(snd[i]);
    assert_int_equal(cli_finish(p, true), 0);
    h_server_stop(&s);
    unlink(logp);
    rmdir(dir);
    h_pass();
}

/* --exec's queue is bounded: with the one peer's child held up, 256
 * messages wait, the ones beyond are dropped with a warning, and the
 * waiting ones all run (in order) once the child is released. */
static void test_cli_exec_queue_cap(void **state)
{
    (void)state;
    char dir[] = "/tmp/pcsig-execq-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char logp[64], fifo[64], cmd[512];
    snprintf(logp, sizeof logp, "%s/log", dir);
    snprintf(fifo, sizeof fifo, "%s/go", dir);
    int lfd = open(logp, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(lfd >= 0);
    close(lfd);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* Read-write: the FIFO stays open, so each child's read waits for a line. */
    int ffd = open(fifo, O_RDWR | O_CLOEXEC);
    assert_true(ffd >= 0);
    snprintf(cmd, sizeof cmd, "b=$(cat); read go < %s; echo \"ran $b\" >> %s", fifo, logp);
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "ex",
                          "--exec", cmd, NULL};
    h_proc_t *p = cli_spawn_(args, true);
    cli_expect(p, "{\"event\":\"signed_in\",\"id\":1,\"peers\":[]}");
    pcsig_client_t *a = client(&s, "flood");
    pcsig_event_free(expect_ev(a, PCSIG_EV_SIGNED_IN));
    enum { SENT = 1 + 256 + 3 };
    int64_t last = 0;
    for (int i = 0; i < SENT; i++) {
        char b[16];
        snprintf(b, sizeof b, "%d", i);
        last = send_ok(a, 1, NULL, b, strlen(b));
    }
    /* The CLI has them all once the last message event is printed. */
    struct pcsig_event *ev = await_ev(a, PCSIG_EV_MESSAGE_SENT, 1u << PCSIG_EV_MESSAGE_SENT);
    while (ev->token != (uint64_t)last) {
        pcsig_event_free(ev);
        ev = await_ev(a, PCSIG_EV_MESSAGE_SENT, 0);
    }
    pcsig_event_free(ev);
    cli_expect(p, "{\"event\":\"peer_joined\",\"id\":2,\"name\":\"flood\"}");
    for (int i = 0; i < SENT; i++) {
        char *line = cli_line(p);
        assert_non_null(strstr(line, "{\"event\":\"message\",\"from\":2,"));
        free(line);
    }
    /* Release every child that will run: the first and the 256 queued. */
    char go[257 * 3];
    for (size_t i = 0; i < 257; i++)
        memcpy(go + 3 * i, STRLIT("go\n"));
    assert_int_equal(write(ffd, go, sizeof go), (ssize_t)sizeof go);
    if (!h_await_log(logp, 0, "ran ", 257, 4 * T_EVENT_MS))
        fail_msg("the queued --exec messages did not all run");
    FILE *f = fopen(logp, "r");
    assert_non_null(f);
    char l[64];
    int n = 0;
    while (fgets(l, sizeof l, f)) {
        char want[32];
        snprintf(want, sizeof want, "ran %d\n", n); /* in order: 0..256 */
        assert_string_equal(l, want);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 257);
    client_free(a);
    assert_int_equal(close(p->in_fd), 0);
    p->in_fd = -1;
    char *err = cli_all_stderr(p);
    if (!strstr(err, "the message from 2 is dropped (3 so far)"))
        fail_msg("no warning for the 3 dropped messages: %s", err);
    free(err);
    assert_int_equal(cli_finish(p, true), 0);
    h_server_stop(&s);
    close(ffd);
    unlink(fifo);
    unlink(logp);
    rmdir(dir);
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

/* A scripted server whose sign-in answer lists a million peers (16.8 MB):
 * the client keeps max_peers of them, says how many it skipped, and stays
 * responsive. */
static void huge_list_answer(int fd, uint64_t own, unsigned n)
{
    buf_t body;
    buf_init(&body, (size_t)64 << 20);
    assert_int_equal(buf_printf(&body, "me,%" PRIu64 ",1\n", own), 0);
    /* Ids in a scrambled order (7919 is prime to n): a client must not
     * sort them by insertion. */
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(buf_printf(&body, "peer_%07u,%llu,1\n", i,
                                    (unsigned long long)i * 7919 % n + 2), 0);
    buf_t b;
    buf_init(&b, 4096);
    buf_printf(&b, "HTTP/1.1 200 Added\r\nServer: PeerConnectionTestServer/0.1\r\n"
                   "Cache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\nPragma: %" PRIu64 "\r\n\r\n", body.len, own);
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    size_t off = 0;
    while (off < body.len) {
        ssize_t wr = write(fd, body.data + off, body.len - off);
        if (wr <= 0)
            break; /* the client may leave early: that is its right */
        off += (size_t)wr;
    }
    buf_free(&b);
    buf_free(&body);
}

static void test_huge_peer_list(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip(); /* a plain scripted server */
    struct fake f;
    fake_start(&f);
    struct pcsig_client_options o = {.server = "127.0.0.1", .port = f.port, .name = "big",
                                     .max_peers = 1000};
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    clients[T_MAX_CLIENTS - 1] = c;
    assert_int_equal(pcsig_client_connect(c), 0);
    int s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?big HTTP/1.0\r\n\r\n");
    huge_list_answer(s1, 1, 1000000);
    close(s1);
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->own_id, 1);
    assert_int_equal(ev->npeers, 1000);
    assert_int_equal(ev->peers_omitted, 1000000 - 1000);
    assert_int_equal(ev->peers[0].id, 2);
    assert_string_equal(ev->peers[999].name, "peer_0000999");
    assert_int_equal(ev->peers[999].id, 999ull * 7919 % 1000000 + 2);
    pcsig_event_free(ev);
    int w = fake_accept(&f); /* its /wait, parked */
    close(f.lfd);            /* the sign-out is refused at once */
    assert_int_equal(pcsig_client_disconnect(c), 0);
    pcsig_event_free(await_ev(c, PCSIG_EV_DISCONNECTED, 0));
    close(w);

    /* The CLI with its default cap (100,000): signed_in comes, and EOF
     * ends it (it used to hang sorting the list). Its output is drained
     * here and only its start and size checked. */
    fake_start(&f);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)f.port);
    const char *args[] = {"--json", "--server", "127.0.0.1", "--port", port, "--name", "big",
                          NULL};
    h_proc_t *p = cli_spawn_(args, true);
    s1 = fake_accept(&f);
    fake_expect(s1, "GET /sign_in?big HTTP/1.0\r\n\r\n");
    huge_list_answer(s1, 1, 1000000);
    close(s1);
    h_proc_send(p, "{\"cmd\":\"peers\"}"); /* held for the sign-in */
    close(p->in_fd); /* EOF: quit once that ran */
    p->in_fd = -1;
    char head[64] = "";
    size_t total = 0;
    uint64_t deadline = h_now_ms() + 3 * T_EVENT_MS;
    int wfd = -1;
    for (;;) {
        struct pollfd pf[2] = {{.fd = p->out_fd, .events = POLLIN},
                               {.fd = wfd < 0 ? f.lfd : -1, .events = POLLIN}};
        if (poll(pf, 2, h_ms_left(deadline)) < 1)
            fail_msg("the CLI printed %zu bytes and did not finish", total);
        if (pf[1].revents) {
            wfd = accept4(f.lfd, NULL, NULL, SOCK_CLOEXEC); /* its /wait */
            close(f.lfd); /* and its sign-out is refused */
            f.lfd = -1;
        }
        if (!pf[0].revents)
            continue;
        char tmp[65536];
        ssize_t r = read(p->out_fd, tmp, sizeof tmp);
        if (r <= 0)
            break;
        if (total < sizeof head - 1)
            memcpy(head + total, tmp, (size_t)r < sizeof head - 1 - total ? (size_t)r
                                                                           : sizeof head - 1 - total);
        total += (size_t)r;
    }
    if (strncmp(head, STRLIT("{\"event\":\"signed_in\",\"id\":1,\"peers\":[{\"id\":2,")) != 0)
        fail_msg("CLI printed \"%s\"", head);
    /* signed_in and peers: 100,000 entries of about 48 bytes each, not 1,000,000. */
    if (total < 2 * 100000 * 40 || total > 2 * 100000 * 60)
        fail_msg("the CLI printed %zu bytes", total);
    char *err = cli_all_stderr(p);
    if (!strstr(err, "900000 more peers than max_peers"))
        fail_msg("no warning about the skipped peers: %s", err);
    free(err);
    assert_int_equal(cli_finish(p, true), 0);
    if (wfd >= 0)
        close(wfd);
    if (f.lfd >= 0)
        close(f.lfd);
    h_pass();
}

/* Interactive commands take a peer's name as well as its id; an ambiguous
 * name lists the candidates, an unknown one says so, and "send ID" with
 * no text is refused instead of sending an empty message. */
static void test_cli_peer_names(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    pcsig_client_t *bob = client(&s, "bob");
    uint64_t idb = signed_in(bob, 0);
    pcsig_client_t *t1 = client(&s, "twin");
    uint64_t idt1 = signed_in(t1, 1);
    pcsig_client_t *t2 = client(&s, "twin");
    uint64_t idt2 = signed_in(t2, 2);
    const char *args[] = {"--autoconnect", "--server", "127.0.0.1", "--port", port, "--name",
                          "me", NULL};
    h_proc_t *p = cli_spawn(args);
    char want[256];
    snprintf(want, sizeof want, "connecting to 127.0.0.1:%s ...", port);
    cli_expect(p, want);
    snprintf(want, sizeof want, "signed in to 127.0.0.1:%s as 4; 3 peer(s)", port);
    cli_expect(p, want);
    cli_expect(p, "  1 \"bob\"");
    cli_expect(p, "  2 \"twin\"");
    cli_expect(p, "  3 \"twin\"");

    h_proc_send(p, "send bob hi bob");
    cli_expect(p, "sent #1 to 1");
    struct pcsig_event *ev = await_ev(bob, PCSIG_EV_MESSAGE, 1u << PCSIG_EV_PEER_JOINED);
    assert_int_equal(ev->len, 6);
    assert_memory_equal(ev->data, "hi bob", 6);
    pcsig_event_free(ev);
    h_proc_send(p, "send twin hello");
    snprintf(want, sizeof want, "error: \"twin\" names 2 peers: %" PRIu64 ", %" PRIu64
             "; use the id", idt1, idt2);
    cli_expect(p, want);
    h_proc_send(p, "call nobody");
    cli_expect(p, "error: no peer named \"nobody\" (see peers)");
    h_proc_send(p, "send 1");
    cli_expect(p, "error: usage: send PEER TEXT: no text to send");
    h_proc_send(p, "send bob   ");
    cli_expect(p, "error: usage: send PEER TEXT: no text to send");
    h_proc_send(p, "send");
    cli_expect(p, "error: usage: send PEER TEXT: PEER is an id or a name from peers");
    h_proc_send(p, "send 3 to the second twin");
    cli_expect(p, "sent #2 to 3");
    ev = await_ev(t2, PCSIG_EV_MESSAGE, 1u << PCSIG_EV_PEER_JOINED);
    assert_int_equal(ev->peer_id, 4);
    assert_int_equal(ev->len, 18);
    assert_memory_equal(ev->data, "to the second twin", 18);
    pcsig_event_free(ev);
    h_proc_send(p, "bye bob");
    cli_expect(p, "sent #3 to 1");
    /* bob got exactly "hi bob" and the hang-up: no empty message between. */
    pcsig_event_free(expect_ev(bob, PCSIG_EV_PEER_HANGUP));
    assert_int_equal(cli_finish(p, true), 0);
    (void)idb;
    client_free(t1);
    client_free(t2);
    client_free(bob);
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
        T_TEST(test_wire_against_original),
        T_TEST(test_secure_ids_used_automatically),
        T_TEST(test_tls_untrusted_server),
        T_TEST(test_tls_client_cert_refused),
        T_TEST(test_wire_keep_alive),
        T_TEST(test_wire_wait_timeout),
        T_TEST(test_cli_json),
        T_TEST(test_cli_piped),
        T_TEST(test_cli_exec),
        T_TEST(test_cli_options),
        T_TEST(test_cli_quit_before_sign_in),
        T_TEST(test_cli_quit_after_held),
        T_TEST(test_cli_defaults_and_autoconnect),
        T_TEST(test_cli_tty_log_lines),
        T_TEST(test_auth_token),
        T_TEST(test_cli_exec_bounded),
        T_TEST(test_cli_exec_queue_cap),
        T_TEST(test_backpressure),
        T_TEST(test_huge_peer_list),
        T_TEST(test_cli_peer_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
