/*
 * harness: what every integration test needs to drive the real pcsig-server
 * over raw sockets.
 *
 *  - h_server_start / h_server_stop: spawn the binary (env PCSIG_SERVER,
 *    default build/pcsig-server) with "--bind 127.0.0.1 --port 0" and the
 *    caller's options, learn the port from its one ready line on stdout
 *    (read with poll and a timeout, never a sleep), and stop it with SIGTERM,
 *    awaiting the exit through a pidfd. Its stderr goes to a log file under
 *    /tmp that is printed (tail) when a test fails, or to our stderr when
 *    PCSIG_TEST_VERBOSE is set.
 *  - h_conn_t: one client connection: a blocking-connected socket plus the
 *    bytes received but not yet consumed, so that several responses can be
 *    read one after the other from the same keep-alive connection.
 *  - h_resp_t: one complete response (head parsed by http_parse_response,
 *    exactly Content-Length body bytes), with NUL-terminated copies.
 *  - the protocol's steps (sign-in, one /wait, a message, sign-out) each on
 *    a fresh HTTP/1.0 connection, byte for byte like the stock client.
 *  - awaiting the server's state instead of sleeping: a /metrics sample
 *    (h_wait_parked: the /waits parked), or "the server has read what was
 *    sent" (h_await_read_by_server).
 *
 * Every function that "must" work fails the running cmocka test itself (with
 * the calling test's file and line) instead of returning an error, so tests
 * read as the protocol steps they check. Every wait has a timeout.
 *
 * Each test is registered with H_TEST(fn) (setup/teardown below) and ends
 * with h_pass(): a test that failed never reaches it, and the teardown then
 * kills what the test left running, closes its sockets and prints the
 * server's log.
 */
#ifndef PCSIG_TEST_HARNESS_H
#define PCSIG_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>
#include <sys/types.h>

#include "http.h"

/* Generous defaults: CI may be a loaded 2-core box running ASan. */
#define H_TIMEOUT_MS 10000       /* one response, one connect, one send */
#define H_START_TIMEOUT_MS 10000 /* the ready line */
/* H_START_TIMEOUT_MS, or PCSIG_TEST_START_MS when set (a launcher of several
 * servers takes longer). */
int h_start_timeout_ms(void);
#define H_STOP_TIMEOUT_MS 20000  /* SIGTERM to exit */
#define H_SILENCE_MS 300         /* "nothing arrives" windows */

/* ---- test registration ------------------------------------------------- */

int h_setup(void **state);
int h_teardown(void **state);
#define H_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, h_teardown)

/* Mark the running test as passed (its last statement). Fails the test if it
 * left a server running. */
#define h_pass() (h_at(__FILE__, __LINE__), h_pass_())
void h_pass_(void);

/* Where the test is (set by the macros below; used in failure messages). */
void h_at(const char *file, int line);

/* ---- the server --------------------------------------------------------- */

typedef struct h_server {
    pid_t pid;
    int pidfd;
    int out_fd;           /* read end of the server's stdout */
    uint16_t port;
    char host[64];        /* where connections go: the last --bind given, or 127.0.0.1 */
    bool running;         /* spawned and not yet reaped */
    int exit_code;        /* after reaping: exit status, 128+signal, or -1 */
    char log_path[128];   /* "" when stderr is inherited */
    bool ready_tls;       /* the ready line said "TLS port": the port speaks TLS */
    size_t slot;          /* the harness's copy, for the teardown */
} h_server_t;

/* Start the server with "--bind 127.0.0.1 --port 0" plus the NULL-terminated
 * extra arguments; returns once it printed its ready line (fails the test
 * otherwise). An extra "--bind ADDR" wins (the server takes the last one):
 * every connection to this server then goes to ADDR (e.g. "::1"). */
#define h_server_start(s, ...) (h_at(__FILE__, __LINE__), h_server_start_((s), __VA_ARGS__))
void h_server_start_(h_server_t *s, ...) __attribute__((sentinel));

/* SIGTERM, then await the exit (pidfd + poll). Returns the exit status
 * (128+signal when killed by one); -1 when it did not exit within
 * H_STOP_TIMEOUT_MS and had to be SIGKILLed. */
#define h_server_stop(s) (h_at(__FILE__, __LINE__), h_server_stop_(s))
int h_server_stop_(h_server_t *s);

/* Await an exit the server does by itself (no signal sent). Returns as
 * h_server_stop does, or -2 when still running after timeout_ms (it is left
 * running; the teardown kills it). */
#define h_server_await_exit(s, ms) (h_at(__FILE__, __LINE__), h_server_await_exit_((s), (ms)))
int h_server_await_exit_(h_server_t *s, int timeout_ms);

/* Run the server binary with exactly "--bind 127.0.0.1 --port 0" followed by
 * args (NULL-terminated) and await its exit within timeout_ms; its stderr is
 * captured into err (NUL-terminated, truncated to cap). Returns the exit
 * status, 128+signal, or -1 when it had to be killed (timeout). */
int h_run_server_cmd(const char *const *args, char *err, size_t cap, int timeout_ms);

/* ---- responses ---------------------------------------------------------- */

typedef struct h_resp {
    int status;
    char *reason;             /* NUL-terminated */
    char *head;               /* raw head incl. the blank line, NUL-terminated */
    size_t head_len;
    char *body;               /* body bytes + a NUL (the body may hold NULs) */
    size_t body_len;
    size_t nhdr;
    char *hname[HTTP_MAX_HEADERS]; /* NUL-terminated copies, as sent */
    char *hval[HTTP_MAX_HEADERS];  /* trimmed values */
} h_resp_t;

/* The first value of header name (case-insensitive), or NULL. */
const char *h_hdr(const h_resp_t *r, const char *name);
/* How many header lines are named name (case-insensitive). */
size_t h_hdr_count(const h_resp_t *r, const char *name);
/* The header's value as a non-negative decimal, or -1 when absent/invalid. */
long long h_hdr_num(const h_resp_t *r, const char *name);
/* True when the raw head contains lit (exact bytes). */
bool h_head_has(const h_resp_t *r, const char *lit);
/* How often lit occurs in the raw head. */
size_t h_head_count(const h_resp_t *r, const char *lit);
void h_resp_free(h_resp_t *r);

/* The five Access-Control-* lines of protocol.md B 4.1, exactly. */
extern const char H_CORS_BLOCK[];

/* Assertions with the test's own line numbers. */
#define H_ASSERT_STATUS(r, code, rsn)                                   \
    do {                                                                \
        assert_non_null(r);                                             \
        assert_int_equal((r)->status, (code));                          \
        assert_string_equal((r)->reason, (rsn));                        \
    } while (0)
#define H_ASSERT_BODY(r, s)                                             \
    do {                                                                \
        assert_string_equal((r)->body, (s));                            \
        assert_int_equal((r)->body_len, strlen(s));                     \
    } while (0)
#define H_ASSERT_HDR(r, name, val)                                      \
    do {                                                                \
        const char *h_v_ = h_hdr((r), (name));                          \
        if (!h_v_)                                                      \
            fail_msg("header %s missing; head:\n%s", (name), (r)->head); \
        assert_string_equal(h_v_, (val));                               \
        assert_int_equal(h_hdr_count((r), (name)), 1);                  \
    } while (0)
#define H_ASSERT_NO_HDR(r, name)                                        \
    do {                                                                \
        if (h_hdr((r), (name)))                                         \
            fail_msg("unexpected header %s: %s; head:\n%s", (name),     \
                     h_hdr((r), (name)), (r)->head);                    \
    } while (0)
#define H_ASSERT_PRAGMA(r, id) H_ASSERT_NUM_HDR((r), "Pragma", (id))
#define H_ASSERT_NUM_HDR(r, name, n)                                    \
    do {                                                                \
        if (!h_hdr((r), (name)))                                        \
            fail_msg("header %s missing; head:\n%s", (name), (r)->head); \
        assert_int_equal(h_hdr_num((r), (name)), (long long)(n));       \
        assert_int_equal(h_hdr_count((r), (name)), 1);                  \
    } while (0)

/* ---- connections --------------------------------------------------------- */

typedef struct h_conn h_conn_t;

/* A new connection to the server (fails the test when it cannot connect). */
#define h_connect(s) (h_at(__FILE__, __LINE__), h_connect_(s))
h_conn_t *h_connect_(const h_server_t *s);
/* A plain connection to 127.0.0.1:port even in TLS mode (a listener that
 * never speaks TLS, such as --metrics-bind). Fails the test when it cannot. */
#define h_connect_plain(port) (h_at(__FILE__, __LINE__), h_connect_plain_(port))
h_conn_t *h_connect_plain_(uint16_t port);
/* Connect without failing: NULL when refused/timed out. */
h_conn_t *h_try_connect(const h_server_t *s);
void h_close(h_conn_t *c); /* NULL-safe */
int h_fd(const h_conn_t *c);
/* Bytes received and not yet consumed as a response. */
size_t h_pending(const h_conn_t *c);

/* Send all n bytes (fails the test on error or timeout). */
#define h_send(c, p, n) (h_at(__FILE__, __LINE__), h_send_((c), (p), (n)))
#define h_send_str(c, str) (h_at(__FILE__, __LINE__), h_send_((c), (str), strlen(str)))
void h_send_(h_conn_t *c, const void *p, size_t n);
/* Send with printf formatting (request lines with ids). */
#define h_sendf(c, ...) (h_at(__FILE__, __LINE__), h_sendf_((c), __VA_ARGS__))
void h_sendf_(h_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Read one complete response within timeout_ms (fails the test on timeout,
 * EOF or a malformed response). Extra bytes stay buffered for the next. */
#define h_read(c) (h_at(__FILE__, __LINE__), h_read_((c), H_TIMEOUT_MS))
#define h_read_timeout(c, ms) (h_at(__FILE__, __LINE__), h_read_((c), (ms)))
h_resp_t *h_read_(h_conn_t *c, int timeout_ms);

/* Assert that nothing (no byte, no EOF) arrives within ms. */
#define h_expect_silence(c, ms) (h_at(__FILE__, __LINE__), h_expect_silence_((c), (ms)))
void h_expect_silence_(h_conn_t *c, int ms);
/* Assert that the server closes the connection (EOF or reset) within
 * timeout_ms, with no further bytes before it. */
#define h_expect_eof(c, ms) (h_at(__FILE__, __LINE__), h_expect_eof_((c), (ms)))
void h_expect_eof_(h_conn_t *c, int timeout_ms);

/* Non-blocking pieces for poll() loops over many connections:
 * h_pump reads what is available: >0 bytes, 0 EOF (or reset), -1 nothing yet.
 * h_take returns the next complete buffered response or NULL (fails the test
 * on a malformed response). */
ssize_t h_pump(h_conn_t *c);
#define h_take(c) (h_at(__FILE__, __LINE__), h_take_(c))
h_resp_t *h_take_(h_conn_t *c);

/* ---- awaiting the server's state (instead of fixed delays) -------------- */

/* One GET /metrics on a new connection (the main port, TLS in TLS mode):
 * the value of the sample name, labels included as the server writes them
 * (e.g. "pcsig_connections_refused_total{reason=\"max_connections\"}");
 * -1 when the answer is not 200. Fails the test when the sample is missing. */
#define h_metric(s, name) (h_at(__FILE__, __LINE__), h_metric_((s), (name)))
double h_metric_(const h_server_t *s, const char *name);

/* Scrape until the sample name equals want (a non-200 answer, such as a 503
 * at the connection cap, counts as not yet); fails the test after
 * timeout_ms. Returns the number of scrapes (each is a request and a
 * connection the server counts). */
#define h_await_metric(s, name, want, ms) \
    (h_at(__FILE__, __LINE__), h_await_metric_((s), (name), (want), (ms)))
int h_await_metric_(const h_server_t *s, const char *name, double want, int timeout_ms);

/* Until exactly n /waits are parked: how a test knows the server holds a
 * /wait it sent before acting on it. */
#define h_wait_parked(s, n, ms) h_await_metric((s), "pcsig_parked_waits", (double)(n), (ms))

/* Until the server has read every byte sent so far on c (an IPv4
 * connection): our unacknowledged bytes and the receive queue of the
 * server's end (/proc/net/tcp) are both 0. How a test knows a partial
 * request is in the server's hands. Fails the test after timeout_ms. */
#define h_await_read_by_server(c, ms) (h_at(__FILE__, __LINE__), h_await_read_by_server_((c), (ms)))
void h_await_read_by_server_(h_conn_t *c, int timeout_ms);

/* ---- protocol steps (each on a new HTTP/1.0 connection, like the stock
 *      client; every one fails the test when no well-formed answer comes) --- */

/* One request (raw bytes), one response; the connection is then closed. */
#define h_request(s, p, n) (h_at(__FILE__, __LINE__), h_request_((s), (p), (n)))
#define h_request_str(s, str) (h_at(__FILE__, __LINE__), h_request_((s), (str), strlen(str)))
h_resp_t *h_request_(const h_server_t *s, const void *p, size_t n);

/* GET /sign_in?name HTTP/1.0 (name NULL: "GET /sign_in"); asserts
 * "200 Added" with a Pragma and returns the id. */
#define h_sign_in(s, name) (h_at(__FILE__, __LINE__), h_sign_in_((s), (name)))
uint64_t h_sign_in_(const h_server_t *s, const char *name);

/* GET /wait?peer_id=id HTTP/1.0 on a new connection; the response. */
#define h_wait_once(s, id) (h_at(__FILE__, __LINE__), h_wait_once_((s), (id)))
h_resp_t *h_wait_once_(const h_server_t *s, uint64_t id);

/* The stock client's POST /message (ctype NULL: no Content-Type line). */
#define h_post_message(s, from, to, body, len, ctype) \
    (h_at(__FILE__, __LINE__), h_post_message_((s), (from), (to), (body), (len), (ctype)))
h_resp_t *h_post_message_(const h_server_t *s, uint64_t from, uint64_t to, const void *body,
                          size_t len, const char *ctype);
/* The same, asserting the sender's ack: 200 OK, text/plain, empty, no Pragma. */
#define h_send_ok(s, from, to, body, len, ctype) \
    (h_at(__FILE__, __LINE__), h_send_ok_((s), (from), (to), (body), (len), (ctype)))
void h_send_ok_(const h_server_t *s, uint64_t from, uint64_t to, const void *body, size_t len,
                const char *ctype);

/* GET /sign_out?peer_id=id HTTP/1.0; the response. */
#define h_sign_out(s, id) (h_at(__FILE__, __LINE__), h_sign_out_((s), (id)))
h_resp_t *h_sign_out_(const h_server_t *s, uint64_t id);

/* Members ids[0..n) signed in in this order, nobody waited yet: member i has
 * one join notification for each later member queued. Drain them all (one
 * /wait each), asserting each is 200 OK, Pragma = own id, "name,<id>,1\n" in
 * join order. */
#define h_drain_joins(s, ids, n) (h_at(__FILE__, __LINE__), h_drain_joins_((s), (ids), (n)))
void h_drain_joins_(const h_server_t *s, const uint64_t *ids, size_t n);

/* Parse "name,id,connected\n" (exactly one line): true and the parts. */
bool h_parse_entry(const char *body, size_t len, uint64_t *id, int *connected);

/* TLS mode (env PCSIG_TEST_TLS=1): every server started by h_server_start
 * serves TLS with a freshly generated development certificate, and every
 * h_conn speaks TLS to it (verified against that CA), so each scenario runs
 * unchanged over TLS. Tests of plain-only behaviour skip themselves. */
bool h_tls_mode(void);
/* TLS mode: the CA file clients must trust (after the first server start). */
const char *h_tls_ca(void);

/* Milliseconds on the monotonic clock. */
uint64_t h_now_ms(void);
/* Milliseconds from now until deadline (h_now_ms based), 0 once passed. */
int h_ms_left(uint64_t deadline);

/* Wait (inotify on the file, no timer loop) until needle occurs at least
 * `times` times in the log file at path after its first `offset` bytes (at
 * most 1 MiB of it is read). True when it did within ms; fails the test
 * when the file cannot be watched. */
bool h_await_log(const char *path, size_t offset, const char *needle, size_t times, int ms);

/* ---- child processes (the CLI) -------------------------------------------- */

typedef struct h_proc {
    pid_t pid;
    int pidfd;
    int in_fd;         /* its stdin (-1 once closed) */
    int out_fd;        /* its stdout */
    int err_fd;        /* its stderr when captured, else -1 */
    char buf[1 << 16]; /* stdout read but not yet taken as lines */
    size_t len;
    char name[16];     /* in failure messages ("the CLI" unless set) */
} h_proc_t;

/* Spawn argv (argv[0] the path) with envp (NULL: ours), pipes on its stdin
 * and stdout, and on its stderr when capture_err; SIGPIPE at its default.
 * Fails the test when it cannot run. h_teardown kills and frees it unless
 * h_proc_exit took it first. */
h_proc_t *h_proc_spawn(char *const *argv, char *const *envp, bool capture_err);
/* The same for a child spawned otherwise (on a pty): fds are owned from now. */
h_proc_t *h_proc_adopt(pid_t pid, int in_fd, int out_fd, int err_fd);
/* Write line and '\n' to its stdin. */
void h_proc_send(h_proc_t *p, const char *line);
/* The next stdout line (malloc'd, no '\n'), or NULL at the deadline (an
 * h_now_ms time); fails the test at EOF or on a line longer than p->buf. */
char *h_proc_line_by(h_proc_t *p, uint64_t deadline);
/* Await its exit (within ms, else the test fails); reaps, closes and frees
 * p. Returns the exit status, or 128 + the signal that ended it. */
int h_proc_exit(h_proc_t *p, int ms);

#endif
