/*
 * Shared by the media tests (test_media, test_media_signaling): pcsig-client
 * processes with --json, their event lines awaited one by one (never a fixed
 * delay), and a call set up between two of them. The processes are killed
 * and freed by the teardown (media_teardown) when a test fails.
 */
#ifndef PCSIG_TEST_MEDIA_UTIL_H
#define PCSIG_TEST_MEDIA_UTIL_H

#include "harness.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define T_CALL_MS 30000  /* one expected event of a call (ASan, a loaded box) */
#define T_MAX_PROCS 6

/* A client process, and the "sent" events read from it so far. */
struct proc {
    h_proc_t *h;
    unsigned nsent;
};

int media_teardown(void **state);
#define T_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, media_teardown)

/* Does this pcsig-client have the conductor? ("media: GStreamer ..." in
 * its --version output.) */
bool media_built(void);

/* Under TSan (make check) the conductor is not tested: GLib and GStreamer
 * are not instrumented, so every hand-over through their queues and locks
 * (all of the conductor's) is reported as a race. ASan runs it. */
bool tsan_build(void);

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

/* pcsig-client --json --server 127.0.0.1 --port P --name NAME + args
 * (NULL-terminated). Owned by the teardown unless cli_quit takes it. */
struct proc *cli_spawn_json(const h_server_t *s, const char *name, const char *const *args);

void cli_send(struct proc *p, const char *line);

/* The next stdout line (malloc'd, no '\n'), or NULL at the deadline. */
char *cli_line_by(struct proc *p, uint64_t deadline);

/* Skip lines until one contains every needle (NULL-terminated); return it
 * (malloc'd). Fails the test after T_CALL_MS, naming the last line seen. */
#define cli_await(p, ...) (h_at(__FILE__, __LINE__), cli_await_((p), __VA_ARGS__, (const char *)NULL))
char *cli_await_(struct proc *p, ...) __attribute__((sentinel));

#define cli_wait_for(p, ...) free(cli_await((p), __VA_ARGS__))

/* A number member of a JSON event line ("key":N), or -1. */
long long json_num(const char *line, const char *key);

/* Await a media_stats event of p in which every "X_received" counter named
 * is at least min: decoded frames arriving, not just a call set up. */
void await_frames(struct proc *p, long long min);

/* EOF on stdin; await "disconnected" and exit status 0. */
void cli_quit(struct proc *p);

/* a signs in; b signs in with --autocall (it calls a, the lowest id). Both
 * await the connected call; returns with the data channel open on both. */
void start_call(const h_server_t *s, struct proc **a, struct proc **b, const char *media_a,
                const char *media_b);

#endif
