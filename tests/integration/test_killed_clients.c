/*
 * Integration, hostile clients: clients SIGKILLed mid-request, mid-wait and
 * mid-response.
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

/*
 * --member-timeout 1. carol's process posts one message, sends half of a
 * second and is SIGKILLed: alice gets the first message only, and carol
 * times out as usual. dave's process parks a /wait and is SIGKILLed 1.5 s
 * later (the parked /wait kept him in): his timeout clock restarts at the
 * hang-up, so the others hear "dave,ID,0" a second after the kill, not at
 * once. alice and bob (timeout 1 s too) are served all along.
 */
static void test_killed_clients(void **state)
{
    (void)state;
    h_server_t srv;
    h_server_start(&srv, "--member-timeout", "1", NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, true); /* no connection set-up between their requests */
    pair_exchange(p);

    /* Mid-request. */
    uint64_t carol;
    pid_t child = spawn_child(&srv, CHILD_MID_REQUEST, "carol", p->id[0], &carol);
    char msg[64], join[64], leave[64];
    snprintf(msg, sizeof msg, "from %" PRIu64 ": complete from carol\n", carol);
    pair_until(p, H_TIMEOUT_MS, alice_extra, msg, "carol's complete message reaches alice");
    kill_child(child);
    pair_exchange(p);
    snprintf(leave, sizeof leave, "carol,%" PRIu64 ",0\n", carol);
    pair_until(p, 8000, both_noted, leave, "carol times out after her process died");
    pair_exchange(p);
    pair_expect_extra(p, msg, "");

    /* Mid-wait. */
    uint64_t dave;
    child = spawn_child(&srv, CHILD_MID_WAIT, "dave", 0, &dave);
    snprintf(join, sizeof join, "dave,%" PRIu64 ",1\n", dave);
    snprintf(leave, sizeof leave, "dave,%" PRIu64 ",0\n", dave);
    pair_await_note(p, join);
    /* Parked for 1.5 s, longer than the member timeout: dave stays. */
    uint64_t until = h_now_ms() + 1500;
    while (h_ms_left(until) > 0) {
        pair_poll(p, h_ms_left(until), NULL, 0);
        if (strstr(p->notes[0], leave))
            fail_msg("dave was timed out although his /wait was parked");
    }
    pair_exchange(p);
    uint64_t t_kill = h_now_ms();
    kill_child(child);
    pair_until(p, 8000, both_noted, leave, "dave times out after his process died");
    uint64_t after = p->last_note_ms[0] - t_kill;
    note("dave's leave %" PRIu64 " ms after the kill", after);
    if (after < 900)
        fail_msg("dave's leave came %" PRIu64 " ms after the kill: his timeout clock did not "
                 "restart at the hang-up (member timeout 1 s)",
                 after);
    pair_exchange(p);

    char want[256];
    snprintf(want, sizeof want,
             "bob,%" PRIu64 ",1\ncarol,%" PRIu64 ",1\ncarol,%" PRIu64 ",0\n%s%s", p->id[1],
             carol, carol, join, leave);
    pair_expect_notes(p, 0, want);
    pair_expect_extra(p, msg, "");
    ASSERT_ALIVE(&srv);
    pair_stop(p, &srv);
    h_pass();
}

static uint64_t proc_u64(const char *path, int field)
{
    FILE *f = fopen(path, "r");
    unsigned long long v[3] = {0, 0, 0};
    if (!f)
        return 0;
    int n = fscanf(f, "%llu %llu %llu", &v[0], &v[1], &v[2]);
    fclose(f);
    return n == 3 ? v[field] : 0;
}

/*
 * carol's process parks a /wait and never reads; alice sends her a message
 * larger than the socket buffers can hold, so the server is still writing
 * it when carol "reconnects": a new /wait of hers parks (nothing is queued:
 * the message is in flight). Then the old process is SIGKILLed: the write
 * fails, the message goes back to the head of carol's queue (nothing
 * accepted is dropped silently) and must reach her parked /wait, whole.
 */
static void test_killed_mid_response(void **state)
{
    (void)state;
    uint64_t wmem = proc_u64("/proc/sys/net/ipv4/tcp_wmem", 2);
    uint64_t rmem = proc_u64("/proc/sys/net/ipv4/tcp_rmem", 1);
    if (!wmem || !rmem)
        skip();
    size_t size = (size_t)(wmem + 4 * rmem + 2 * MB);
    if (size > 48 * MB)
        skip(); /* kernel buffers too large to be sure the write is cut */
    char lim[32], qlim[32];
    snprintf(lim, sizeof lim, "%zu", size);
    snprintf(qlim, sizeof qlim, "%zu", 2 * size);
    h_server_t srv;
    h_server_start(&srv, "--max-body-bytes", lim, "--queue-max-bytes", qlim, NULL);
    pair_t *p = &the_pair;
    pair_start(p, &srv, false);

    uint64_t carol;
    pid_t child = spawn_child(&srv, CHILD_MID_WAIT, "carol", 0, &carol);
    char join[64];
    snprintf(join, sizeof join, "carol,%" PRIu64 ",1\n", carol);
    pair_await_note(p, join);
    char *body = tmalloc(size);
    assert_non_null(body);
    prng_state = 42;
    for (size_t i = 0; i < size; i += 8) {
        uint64_t v = prng();
        memcpy(body + i, &v, size - i < 8 ? size - i : 8);
    }
    h_send_ok(&srv, p->id[0], carol, body, size, "application/octet-stream");
    pair_exchange(p);

    /* carol's new /wait parks: the message is still being written to the old one. */
    h_conn_t *w = h_connect(&srv);
    h_sendf(w, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", carol);
    h_wait_parked(&srv, 3, H_TIMEOUT_MS); /* alice's, bob's and carol's new one */
    h_expect_silence(w, 0);
    kill_child(child);
    h_resp_t *r = try_read(w, H_TIMEOUT_MS);
    if (!r)
        fail_msg("carol's parked /wait got nothing within %d ms of the old connection's death: "
                 "the message cut short there was not handed to her waiting /wait",
                 H_TIMEOUT_MS);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, p->id[0]);
    H_ASSERT_HDR(r, "Content-Type", "application/octet-stream");
    if (r->body_len != size || memcmp(r->body, body, size) != 0)
        fail_msg("carol's message after the kill: %zu bytes, expected the %zu sent", r->body_len,
                 size);
    h_resp_free(r);
    h_close(w);
    tfree(body);
    pair_exchange(p);
    /* Delivered once: her next /wait parks. */
    w = h_connect(&srv);
    h_sendf(w, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", carol);
    h_expect_silence(w, H_SILENCE_MS);
    h_close(w);
    pair_expect_no_extra(p);
    pair_stop(p, &srv);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_killed_clients),
        T(test_killed_mid_response),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_client_free(insecure_tls);
    return rc;
}
