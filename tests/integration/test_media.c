/*
 * test_media: real WebRTC calls between two pcsig-client processes through
 * pcsig-server (issue 16): GStreamer webrtcbin on both ends, ICE over
 * loopback host candidates, DTLS-SRTP media and an SCTP data channel.
 *
 *  - a test call (--media test): it connects, the data channel carries a
 *    message each way, decoded video and audio frames arrive both ways (the
 *    counters of the media_stats events rise), hangup sends BYE and ends
 *    both sides, both sign out cleanly;
 *  - the callee killed with SIGKILL mid-call: the caller is told (the
 *    server's leave notification) and is idle again;
 *  - the wire: the original conductor's offer and candidate JSON, with a
 *    loopback host candidate among them; BYE from the peer ends the call.
 *
 * The calls' signalling corner cases (malformed offers and candidates, one
 * call at a time, --no-auto-answer, glare) are test_media_signaling's: two
 * files that make test runs side by side. Every step awaits an event line
 * on a client's stdout (JSON), never a fixed delay. Skipped when the client
 * was built without media support. Not re-run in TLS mode by make test: the
 * media is DTLS either way, and the CLI's signalling over TLS is test_cli's
 * and test_client_lib's TLS runs.
 */
#include "media_util.h"
#include "strlit.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_test_call(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    h_server_start(&s, NULL);
    struct proc *a, *b;
    start_call(&s, &a, &b, "test", "test");

    /* The data channel, both ways (text with a quote and non-ASCII). */
    cli_send(a, "{\"cmd\":\"send\",\"via\":\"dc\",\"data\":\"hi \\\"bob\\\" \\u00e9\"}");
    cli_wait_for(a, "{\"event\":\"dc_sent\",\"to\":2,");
    cli_wait_for(b, "{\"event\":\"dc_message\",\"from\":1,\"data\":\"hi \\\"bob\\\" \xc3\xa9\"}");
    cli_send(b, "{\"cmd\":\"send\",\"via\":\"dc\",\"data\":\"hello alice\"}");
    cli_wait_for(a, "{\"event\":\"dc_message\",\"from\":2,\"data\":\"hello alice\"}");

    /* Chat through the server still works; the "sent" reports of the
     * conductor's own messages (offer, candidates) were not shown: the
     * first "sent" is this message's. */
    cli_send(b, "{\"cmd\":\"send\",\"to\":1,\"data\":\"via the server\"}");
    char *q = cli_await(b, "{\"event\":\"queued\"");
    char want[96];
    snprintf(want, sizeof want, "{\"event\":\"sent\",\"token\":%lld,\"to\":1}",
             json_num(q, "token"));
    free(q);
    if (b->nsent != 0)
        fail_msg("bob showed %u \"sent\" events before queueing anything: the conductor's own",
                 b->nsent);
    cli_wait_for(b, want);
    cli_wait_for(a, "{\"event\":\"message\",\"from\":2,", "\"data\":\"via the server\"}");

    /* Decoded video and audio frames, both ways. */
    await_frames(a, 10);
    await_frames(b, 10);

    /* BYE ends both sides; then both sign out cleanly. */
    cli_send(b, "{\"cmd\":\"hangup\"}");
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,\"reason\":\"hung up\"}");
    cli_wait_for(a, "{\"event\":\"hangup\",\"from\":2}");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":2,"
                    "\"reason\":\"the peer hung up (BYE)\"}");
    cli_send(a, "{\"cmd\":\"hangup\"}");
    cli_wait_for(a, "{\"event\":\"error\",\"reason\":\"cannot hang up: not in a call\"}");
    cli_quit(b);
    cli_wait_for(a, "{\"event\":\"peer_left\",\"id\":2,");
    cli_quit(a);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_callee_killed(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    /* The server tells the others soon after a member's /wait is gone. */
    h_server_start(&s, "--member-timeout", "1", NULL);
    struct proc *a, *b;
    start_call(&s, &a, &b, "test", "test");
    await_frames(b, 1);
    assert_int_equal(kill(a->h->pid, SIGKILL), 0);
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,");
    /* Idle again: nothing to hang up, and a new call can be placed. */
    cli_send(b, "{\"cmd\":\"hangup\"}");
    cli_wait_for(b, "{\"event\":\"error\",\"reason\":\"cannot hang up: not in a call\"}");
    const char *ca[] = {"--media", "none", NULL};
    struct proc *c = cli_spawn_json(&s, "carol", ca);
    cli_wait_for(b, "{\"event\":\"peer_joined\",\"id\":3,");
    cli_send(b, "{\"cmd\":\"call\",\"to\":3}");
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":3,");
    cli_wait_for(c, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":2,");
    cli_quit(b);
    cli_wait_for(c, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":2,");
    cli_quit(c);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}


/* What a peer receives is the original conductor's JSON, and the host
 * candidates include loopback (libnice leaves it out by itself). */
static void test_wire_format(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    h_server_start(&s, NULL);
    uint64_t m = h_sign_in(&s, "raw");
    const char *aa[] = {"--media", "none", NULL};
    struct proc *a = cli_spawn_json(&s, "alice", aa);
    cli_wait_for(a, "{\"event\":\"signed_in\",\"id\":2,");
    h_resp_t *r = h_wait_once(&s, m); /* alice joined */
    h_resp_free(r);
    cli_send(a, "{\"cmd\":\"call\",\"to\":1}");
    r = h_wait_once(&s, m);
    H_ASSERT_PRAGMA(r, 2);
    static const char offer[] = "{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n";
    if (strncmp(r->body, offer, strlen(offer)) != 0 || !strstr(r->body, "m=application ") ||
        !strstr(r->body, "a=setup:actpass") || r->body[r->body_len - 1] != '}')
        fail_msg("not an offer: %s", r->body);
    h_resp_free(r);
    bool loopback = false;
    for (int i = 0; i < 64 && !loopback; i++) {
        r = h_wait_once(&s, m);
        H_ASSERT_PRAGMA(r, 2);
        if (strncmp(r->body, STRLIT("{\"candidate\":\"candidate:")) != 0 ||
            !strstr(r->body, "\",\"sdpMid\":\"") || !strstr(r->body, ",\"sdpMLineIndex\":0}"))
            fail_msg("not a candidate: %s", r->body);
        loopback = strstr(r->body, " 127.0.0.1 ") && strstr(r->body, " typ host");
        h_resp_free(r);
    }
    assert_true(loopback);
    /* BYE from the raw peer ends the call. */
    h_send_ok(&s, m, 2, "BYE", 3, "text/plain");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,"
                    "\"reason\":\"the peer hung up (BYE)\"}");
    cli_quit(a);
    r = h_sign_out(&s, m);
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_test_call),
        T_TEST(test_callee_killed),
        T_TEST(test_wire_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
