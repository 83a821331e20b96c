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
 *    loopback host candidate among them; BYE from the peer ends the call;
 *  - malformed offers and candidates from a peer are reported and ignored,
 *    and the client still takes a real call afterwards;
 *  - one call at a time: a second call while busy is refused, and a third
 *    peer calling a busy client gets BYE;
 *  - --no-auto-answer: reject, then answer;
 *  - both calling each other at once (glare): one call, the lower id answers.
 *
 * Every step awaits an event line on a client's stdout (JSON), never a
 * fixed delay. Skipped when the client was built without media support.
 * Not re-run in TLS mode by make test: the media is DTLS either way, and the
 * CLI's signalling over TLS is test_cli's and test_client_lib's TLS runs.
 */
#include "harness.h"
#include "strlit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define T_CALL_MS 30000  /* one expected event of a call (ASan, a loaded box) */
#define T_MAX_PROCS 6

/* A client process, and the "sent" events read from it so far. */
struct proc {
    h_proc_t *h;
    unsigned nsent;
};
static struct proc cli_procs[T_MAX_PROCS];

static int t_teardown(void **state)
{
    memset(cli_procs, 0, sizeof cli_procs);
    return h_teardown(state); /* kills and frees the processes */
}
#define T_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, t_teardown)

static const char *client_path(void)
{
    const char *p = getenv("PCSIG_CLIENT");
    return p && *p ? p : "build/pcsig-client";
}

/* Does this pcsig-client have the conductor? ("media: GStreamer ..." in
 * its --version output.) */
static bool media_built(void)
{
    static int built = -1;
    if (built < 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' --version", client_path());
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        char out[512];
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = '\0';
        pclose(f);
        built = strstr(out, "media: GStreamer") != NULL;
    }
    return built;
}

/* Under TSan (make check) the conductor is not tested: GLib and GStreamer
 * are not instrumented, so every hand-over through their queues and locks
 * (all of the conductor's) is reported as a race. ASan runs it. */
static bool tsan_build(void)
{
    const char *san = getenv("PCSIG_SANITIZE");
    return san && strstr(san, "thread");
}

#define NEED_MEDIA()                                                                   \
    do {                                                                               \
        if (!media_built()) {                                                          \
            fprintf(stderr, "skipped: pcsig-client has no media\n");                  \
            skip();                                                                    \
        }                                                                              \
        if (tsan_build()) {                                                            \
            fprintf(stderr, "skipped under TSan: GLib/GStreamer are not instrumented\n"); \
            skip();                                                                    \
        }                                                                              \
    } while (0)

/* pcsig-client --json --server 127.0.0.1 --port P --name NAME + args. */
static struct proc *cli_spawn(const h_server_t *s, const char *name, const char *const *args)
{
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)s->port);
    const char *argv[32];
    size_t n = 0;
    argv[n++] = client_path();
    argv[n++] = "--json";
    argv[n++] = "--server";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--name";
    argv[n++] = name;
    for (; args && *args && n < 26; args++)
        argv[n++] = *args;
    if (h_tls_mode()) {
        argv[n++] = "--tls";
        argv[n++] = "--ca";
        argv[n++] = h_tls_ca();
    }
    argv[n] = NULL;
    /* Under ASan (make check): GLib's load-time allocations are suppressed
     * (tests/lsan-media.supp), which needs stacks unwound in full. */
    char **envp = environ, *extra[3] = {NULL, NULL, NULL};
    const char *san = getenv("PCSIG_SANITIZE");
    if (san && strstr(san, "address")) {
        size_t ne = 0;
        while (environ[ne])
            ne++;
        envp = calloc(ne + 3, sizeof *envp);
        assert_non_null(envp);
        size_t k = 0;
        for (size_t i = 0; i < ne; i++)
            if (strncmp(environ[i], STRLIT("LSAN_OPTIONS=")) != 0 &&
                strncmp(environ[i], STRLIT("ASAN_OPTIONS=")) != 0)
                envp[k++] = environ[i];
        char supp[4096];
        assert_non_null(realpath("tests/lsan-media.supp", supp));
        assert_true(asprintf(&extra[0], "LSAN_OPTIONS=suppressions=%s:print_suppressions=0", supp) > 0);
        assert_true(asprintf(&extra[1], "ASAN_OPTIONS=fast_unwind_on_malloc=0") > 0);
        envp[k++] = extra[0];
        envp[k++] = extra[1];
        envp[k] = NULL;
    }
    size_t i = 0;
    while (i < T_MAX_PROCS && cli_procs[i].h)
        i++;
    assert_true(i < T_MAX_PROCS);
    struct proc *p = &cli_procs[i];
    p->nsent = 0;
    p->h = h_proc_spawn((char *const *)argv, envp, false);
    snprintf(p->h->name, sizeof p->h->name, "%s", name);
    if (envp != environ)
        free(envp);
    free(extra[0]);
    free(extra[1]);
    return p;
}

static void cli_send(struct proc *p, const char *line)
{
    h_proc_send(p->h, line);
}

/* The next stdout line (malloc'd, no '\n'), or NULL at the deadline. */
static char *cli_line_by(struct proc *p, uint64_t deadline)
{
    char *line = h_proc_line_by(p->h, deadline);
    static const char sent[] = "{\"event\":\"sent\",";
    if (line && strncmp(line, sent, sizeof sent - 1) == 0)
        p->nsent++;
    return line;
}

/* Skip lines until one contains every needle (NULL-terminated); return it
 * (malloc'd). Fails the test after T_CALL_MS, naming the last line seen. */
#define cli_await(p, ...) (h_at(__FILE__, __LINE__), cli_await_((p), __VA_ARGS__, (const char *)NULL))
static char *cli_await_(struct proc *p, ...) __attribute__((sentinel));
static char *cli_await_(struct proc *p, ...)
{
    uint64_t deadline = h_now_ms() + T_CALL_MS;
    char *last = NULL;
    for (;;) {
        char *line = cli_line_by(p, deadline);
        if (!line) {
            va_list ap;
            va_start(ap, p);
            const char *first = va_arg(ap, const char *);
            va_end(ap);
            fail_msg("%s: no line with \"%s\" within %d ms (last: %s)", p->h->name, first,
                     T_CALL_MS, last ? last : "none");
        }
        bool all = true;
        va_list ap;
        va_start(ap, p);
        for (const char *n; (n = va_arg(ap, const char *)) != NULL;)
            if (!strstr(line, n))
                all = false;
        va_end(ap);
        if (all) {
            free(last);
            return line;
        }
        free(last);
        last = line;
    }
}

#define cli_wait_for(p, ...) free(cli_await((p), __VA_ARGS__))

/* A number member of a JSON event line ("key":N), or -1. */
static long long json_num(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(line, pat);
    if (!at)
        return -1;
    return strtoll(at + strlen(pat), NULL, 10);
}

/* Await a media_stats event of p in which every "X_received" counter named
 * is at least min: decoded frames arriving, not just a call set up. */
static void await_frames(struct proc *p, long long min)
{
    uint64_t deadline = h_now_ms() + T_CALL_MS;
    for (;;) {
        char *line = cli_line_by(p, deadline);
        if (!line)
            fail_msg("%s: no media_stats with >= %lld video and audio frames received within %d ms",
                     p->h->name, min, T_CALL_MS);
        bool ok = strstr(line, "\"event\":\"media_stats\"") &&
                  json_num(line, "video_frames_received") >= min &&
                  json_num(line, "audio_frames_received") >= min &&
                  json_num(line, "video_frames_sent") >= min &&
                  json_num(line, "rtp_bytes_received") > 0;
        free(line);
        if (ok)
            return;
    }
}

/* EOF on stdin; await "disconnected" and exit status 0. */
static void cli_quit(struct proc *p)
{
    close(p->h->in_fd);
    p->h->in_fd = -1;
    cli_wait_for(p, "{\"event\":\"disconnected\"");
    assert_int_equal(h_proc_exit(p->h, T_CALL_MS), 0);
    p->h = NULL;
}

/* a signs in; b signs in with --autocall (it calls a, the lowest id). Both
 * await the connected call; returns with the data channel open on both. */
static void start_call(const h_server_t *s, struct proc **a, struct proc **b, const char *media_a,
                       const char *media_b)
{
    const char *aa[] = {"--media", media_a, "--stats-ms", "300", NULL};
    *a = cli_spawn(s, "alice", aa);
    cli_wait_for(*a, "{\"event\":\"signed_in\",\"id\":1,");
    const char *ba[] = {"--media", media_b, "--stats-ms", "300", "--autocall", NULL};
    *b = cli_spawn(s, "bob", ba);
    cli_wait_for(*b, "{\"event\":\"call\",\"state\":\"calling\",\"peer\":1}");
    cli_wait_for(*a, "{\"event\":\"call\",\"state\":\"incoming\",\"peer\":2}");
    cli_wait_for(*a, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":2,");
    cli_wait_for(*b, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":1,");
    cli_wait_for(*a, "{\"event\":\"dc_open\",\"peer\":2,\"label\":\"chat\"}");
    cli_wait_for(*b, "{\"event\":\"dc_open\",\"peer\":1,\"label\":\"chat\"}");
}

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
    struct proc *c = cli_spawn(&s, "carol", ca);
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

static void test_malformed_signaling(void **state)
{
    (void)state;
    NEED_MEDIA();
    h_server_t s;
    h_server_start(&s, NULL);
    const char *aa[] = {"--media", "none", NULL};
    struct proc *a = cli_spawn(&s, "alice", aa);
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
    struct proc *b = cli_spawn(&s, "bob", ba);
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
    struct proc *a = cli_spawn(&s, "alice", aa);
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
    struct proc *c = cli_spawn(&s, "carol", ca);
    cli_wait_for(c, "{\"event\":\"signed_in\",\"id\":3,");
    cli_send(c, "{\"cmd\":\"call\",\"to\":1}");
    cli_wait_for(a, "{\"event\":\"call_refused\",\"peer\":3,");
    cli_wait_for(c, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,"
                    "\"reason\":\"the peer hung up (BYE)\"}");
    cli_send(a, "{\"cmd\":\"send\",\"via\":\"dc\",\"data\":\"still here\"}");
    cli_wait_for(b, "{\"event\":\"dc_message\",\"from\":1,\"data\":\"still here\"}");
    cli_quit(c);
    cli_quit(a);
    cli_wait_for(b, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":1,");
    cli_quit(b);
    /* A call to a member that is not there ends when the offer fails. */
    const char *za[] = {"--media", "none", NULL};
    struct proc *z = cli_spawn(&s, "zed", za);
    cli_wait_for(z, "{\"event\":\"signed_in\",\"id\":4,");
    cli_send(z, "{\"cmd\":\"call\",\"to\":99}");
    cli_wait_for(z, "{\"event\":\"call\",\"state\":\"ended\",\"peer\":99,"
                    "\"reason\":\"a message to the peer failed: 500 Error: Peer most likely gone.\"}");
    cli_send(z, "{\"cmd\":\"hangup\"}");
    cli_wait_for(z, "{\"event\":\"error\",\"reason\":\"cannot hang up: not in a call\"}");
    cli_quit(z);

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
    struct proc *a = cli_spawn(&s, "alice", args);
    cli_wait_for(a, "{\"event\":\"signed_in\",\"id\":1,");
    struct proc *b = cli_spawn(&s, "bob", args);
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
    struct proc *a = cli_spawn(&s, "alice", aa);
    cli_wait_for(a, "{\"event\":\"signed_in\",\"id\":1,");
    const char *ba[] = {"--media", "none", NULL};
    struct proc *b = cli_spawn(&s, "bob", ba);
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
        T_TEST(test_test_call),
        T_TEST(test_callee_killed),
        T_TEST(test_malformed_signaling),
        T_TEST(test_wire_format),
        T_TEST(test_one_call_at_a_time),
        T_TEST(test_no_auto_answer),
        T_TEST(test_glare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
