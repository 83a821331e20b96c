/*
 * test_media_signaling: the call signalling of pcsig-client's conductor
 * between real clients through pcsig-server (issue 16), calls without media
 * (--media none: ICE, DTLS and the data channel only):
 *
 *  - malformed offers and candidates from a peer are reported and ignored,
 *    and the client still takes a real call afterwards;
 *  - one call at a time: a second call while busy is refused, and a third
 *    peer calling a busy client gets BYE; a call to a member that is not
 *    there ends when the offer fails;
 *  - --no-auto-answer: reject, then answer; "bye" ends a call as hangup;
 *  - both calling each other at once (glare): one call, the lower id answers.
 *
 * The calls with media are test_media's (the two run side by side in make
 * test). Every step awaits an event line on a client's stdout (JSON), never
 * a fixed delay. Skipped when the client was built without media support;
 * not re-run in TLS mode (see test_media).
 */
#include "media_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_malformed_signaling(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    h_server_start(&s, NULL);
    const char *aa[] = {"--media", "none", NULL};
    struct proc *a = cli_spawn_json(&s, "alice", aa);
    cli_wait_for(a, "{\"event\":\"signed_in\",\"id\":1,");
    uint64_t m = h_sign_in(&s, "mallory");
    cli_wait_for(a, "{\"event\":\"peer_joined\",\"id\":2,");
    static const struct {
        const char *body;
        const char *reason;
    } bad[] = {
        {"{\"type\":\"offer\",\"sdp\":\"garbage\"}", "malformed offer from peer 2 (ignored): no m= line"},
        {"{\"type\":\"offer\"}", "malformed offer from peer 2 (ignored): no \\\"sdp\\\" string"},
        {"{\"type\":\"offer\",\"sdp\":17}", "malformed offer from peer 2 (ignored): no \\\"sdp\\\" string"},
        {"{\"type\":\"pranswer\",\"sdp\":\"v=0\"}", "malformed message from peer 2 (ignored): "
                                                  "\\\"type\\\" is neither offer nor answer"},
        {"{\"candidate\":\"junk\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}",
         "malformed candidate from peer 2 (ignored): not an ICE candidate line"},
        {"{\"candidate\":\"candidate:1 1 UDP 1 127.0.0.1 9 typ host\",\"sdpMLineIndex\":99}",
         "malformed candidate from peer 2 (ignored): no valid \\\"sdpMLineIndex\\\""},
        {"{\"candidate\":\"candidate:1 1 UDP 1 127.0.0.1 9 typ host\",\"sdpMLineIndex\":-1}",
         "malformed candidate from peer 2 (ignored): no valid \\\"sdpMLineIndex\\\""},
        {"{\"candidate\":7,\"sdpMLineIndex\":0}",
         "malformed candidate from peer 2 (ignored): \\\"candidate\\\" is not a string"},
        {"{\"candidate\":\"candidate:1 1 UDP 1 127.0.0.1 9 typ host\",\"sdpMLineIndex\":0}",
         "candidate from peer 2, not in a call with it; ignored"},
        {"{\"type\":\"answer\",\"sdp\":\"v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n\"}",
         "answer from peer 2, not in a call with it; ignored"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h_send_ok(&s, m, 1, bad[i].body, strlen(bad[i].body), "text/plain");
        char want[512];
        snprintf(want, sizeof want, "{\"event\":\"media_error\",\"peer\":2,\"reason\":\"%s\"}",
                 bad[i].reason);
        char *line = cli_await(a, "\"event\":\"media_error\"");
        if (strcmp(line, want) != 0)
            fail_msg("case %zu: got\n  %s\nwanted\n  %s", i, line, want);
        free(line);
    }
    /* Chat that merely looks like JSON is still a message. */
    const char *chat = "{\"hello\":1}";
    h_send_ok(&s, m, 1, chat, strlen(chat), "text/plain");
    cli_wait_for(a, "{\"event\":\"message\",\"from\":2,", "\"data\":\"{\\\"hello\\\":1}\"}");
    /* Still alive and able to take a real call. */
    const char *ba[] = {"--media", "none", "--autocall", NULL};
    struct proc *b = cli_spawn_json(&s, "bob", ba);
    (void)b;
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":3,");
    cli_wait_for(a, "{\"event\":\"dc_open\",\"peer\":3,");
    h_resp_t *r = h_sign_out(&s, m);
    h_resp_free(r);
    cli_quit(a);
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,");
    cli_quit(b);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_one_call_at_a_time(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    h_server_start(&s, NULL);
    struct proc *a, *b;
    start_call(&s, &a, &b, "none", "none");
    /* A second call from the caller: refused at once. */
    cli_send(b, "{\"cmd\":\"call\",\"to\":1}");
    cli_wait_for(b, "{\"event\":\"error\",\"reason\":\"cannot call: already in a call "
                    "(one call at a time: hangup first)\"}");
    /* A third peer calling the busy callee gets BYE; the call goes on. */
    const char *ca[] = {"--media", "none", NULL};
    struct proc *c = cli_spawn_json(&s, "carol", ca);
    cli_wait_for(c, "{\"event\":\"signed_in\",\"id\":3,");
    cli_send(c, "{\"cmd\":\"call\",\"to\":1}");
    cli_wait_for(a, "{\"event\":\"call_refused\",\"peer\":3,");
    cli_wait_for(c, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,"
                    "\"reason\":\"the peer hung up (BYE)\"}");
    cli_send(a, "{\"cmd\":\"send\",\"via\":\"dc\",\"data\":\"still here\"}");
    cli_wait_for(b, "{\"event\":\"dc_message\",\"from\":1,\"data\":\"still here\"}");
    cli_quit(a);
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,");
    cli_quit(b);
    /* A call to a member that is not there ends when the offer fails: carol
     * again, idle since her refused call (a process of its own would cost
     * a DTLS key pair more, most of a client's CPU in a call). */
    cli_send(c, "{\"cmd\":\"call\",\"to\":99}");
    cli_wait_for(c, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":99,"
                    "\"reason\":\"a message to the peer failed: 500 Error: Peer most likely gone.\"}");
    cli_send(c, "{\"cmd\":\"hangup\"}");
    cli_wait_for(c, "{\"event\":\"error\",\"reason\":\"cannot hang up: not in a call\"}");
    cli_quit(c);

    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* Both call each other at once: one call, answered by the lower id. */
static void test_glare(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    h_server_start(&s, NULL);
    const char *args[] = {"--media", "none", NULL};
    struct proc *a = cli_spawn_json(&s, "alice", args);
    cli_wait_for(a, "{\"event\":\"signed_in\",\"id\":1,");
    struct proc *b = cli_spawn_json(&s, "bob", args);
    cli_wait_for(b, "{\"event\":\"signed_in\",\"id\":2,");
    cli_wait_for(a, "{\"event\":\"peer_joined\",\"id\":2,");
    cli_send(a, "{\"cmd\":\"call\",\"to\":2}");
    cli_send(b, "{\"cmd\":\"call\",\"to\":1}");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":2,");
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":1,");
    cli_wait_for(a, "{\"event\":\"dc_open\",\"peer\":2,");
    cli_wait_for(b, "{\"event\":\"dc_open\",\"peer\":1,");
    cli_send(a, "{\"cmd\":\"send\",\"via\":\"dc\",\"data\":\"one call\"}");
    cli_wait_for(b, "{\"event\":\"dc_message\",\"from\":1,\"data\":\"one call\"}");
    cli_quit(a);
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,");
    cli_quit(b);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_no_auto_answer(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    h_server_start(&s, NULL);
    const char *aa[] = {"--media", "none", "--no-auto-answer", NULL};
    struct proc *a = cli_spawn_json(&s, "alice", aa);
    cli_wait_for(a, "{\"event\":\"signed_in\",\"id\":1,");
    const char *ba[] = {"--media", "none", NULL};
    struct proc *b = cli_spawn_json(&s, "bob", ba);
    cli_wait_for(b, "{\"event\":\"signed_in\",\"id\":2,");
    cli_send(a, "{\"cmd\":\"answer\"}");
    cli_wait_for(a, "{\"event\":\"error\",\"reason\":\"cannot answer: no incoming call\"}");
    cli_send(b, "{\"cmd\":\"call\",\"to\":1}");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"incoming\",\"peer\":2}");
    cli_send(a, "{\"cmd\":\"reject\"}");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":2,\"reason\":\"rejected\"}");
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,"
                    "\"reason\":\"the peer hung up (BYE)\"}");
    cli_send(b, "{\"cmd\":\"call\",\"to\":1}");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"incoming\",\"peer\":2}");
    cli_send(a, "{\"cmd\":\"answer\"}");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":2,");
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":1,");
    /* "bye" to the peer of the call ends it, as hangup does. */
    cli_send(a, "{\"cmd\":\"bye\",\"to\":2}");
    cli_wait_for(a, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":2,\"reason\":\"hung up\"}");
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,"
                    "\"reason\":\"the peer hung up (BYE)\"}");
    cli_quit(a);
    cli_quit(b);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T_TEST(test_malformed_signaling),
        T_TEST(test_one_call_at_a_time),
        T_TEST(test_no_auto_answer),
        T_TEST(test_glare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
