/*
 * Shared by the hostile-client tests (test_slowloris, test_stuck_clients,
 * test_oversize, test_bad_input, test_flood, test_fd_limit,
 * test_killed_clients, test_sigterm_queues, test_garbage): connections the
 * test drives byte by byte (hc_t), the well-behaved pair alice and bob
 * (pair_t), raw sockets for floods, forked hostile children, and the
 * teardown that frees what a failed test left behind.
 */
#ifndef PCSIG_TEST_HOSTILE_H
#define PCSIG_TEST_HOSTILE_H

#include "harness.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "conn.h"
#include "tls.h"

#define MB (1024u * 1024u)
#define ASSERT_ALIVE(s) assert_alive_at(__FILE__, __LINE__, (s))
void assert_alive_at(const char *file, int line, const h_server_t *s);

/* Printable excerpt of bytes for failure messages. */
const char *show(const char *p, size_t n);

/* A line on stderr when PCSIG_TEST_VERBOSE is set. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


/* A response read without failing the test: NULL on timeout or EOF. */
h_resp_t *try_read(h_conn_t *c, int ms);

/* Test buffers: freed by the teardown when a test fails half-way. */
#define MAX_ALLOCS 16

extern void *allocs[MAX_ALLOCS];

extern size_t nallocs;

void *tmalloc(size_t n);

void tfree(void *p);

/* Fixed-seed PRNG (xorshift64*): the garbage is the same on every run. */
extern uint64_t prng_state;

uint64_t prng(void);

/*
 * hc: a connection the test drives byte by byte and never has to read: plain
 * or (in TLS mode, unless raw) TLS without verification, non-blocking writes
 * that report "the peer takes nothing" instead of failing, and reads that
 * end at EOF. Nothing in here fails the test, so a forked child may use it.
 */
typedef struct hc {
    conn_t *c;
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
} hc_t;

enum { HC_AUTO, HC_RAW };

#define HC_MAX 1200
extern hc_t *hc_list[HC_MAX];

extern size_t hc_count;

extern tls_client_t *insecure_tls;

extern pid_t children[8];

extern size_t nchildren;

tls_client_t *my_tls(void);

#define hc_open(s, how) hc_open_at(__FILE__, __LINE__, (s), (how))
hc_t *hc_open_at(const char *file, int line, const h_server_t *s, int how);

void hc_close(hc_t *h);

/* Write everything within timeout_ms: 0 or -errno (-ETIMEDOUT). */
int hc_write_all(hc_t *h, const void *p, size_t n, int timeout_ms);

typedef struct rresp {
    int status;
    char reason[64];
    bool close;       /* Connection: close */
    long long pragma; /* -1: none */
    char *body;       /* NUL-terminated copy */
    size_t body_len;
} rresp_t;

void rresp_free(rresp_t *r);

/* One complete response from the front of buf[0..*len): 1 (consumed), 0 not
 * yet, -1 malformed. */
int take_resp(char *buf, size_t *len, rresp_t *r);

/* The next response within ms: 1, 0 closed first, -1 malformed, -2 timeout. */
int hc_read_resp(hc_t *h, rresp_t *r, int ms);

/* Read until EOF within ms: true when EOF came (the bytes stay in h->buf). */
bool hc_read_to_eof(hc_t *h, int ms);

#define NOTES_CAP 32768
typedef struct pair {
    const h_server_t *srv;
    uint64_t id[2];
    h_conn_t *w[2];   /* keep-alive connections with a /wait always parked */
    h_conn_t *ctl[2]; /* keep-alive connections for the posts, or NULL: one
                       * HTTP/1.0 connection per post like the stock client */
    unsigned sent[2]; /* messages sent by i to 1-i */
    unsigned got[2];  /* messages received by i from 1-i, checked in order */
    char notes[2][NOTES_CAP]; /* notifications received by i, as sent */
    size_t notes_len[2];
    char extra[2][NOTES_CAP]; /* messages from anybody else: "from ID: body\n" */
    size_t extra_len[2];
    uint64_t last_note_ms[2];
    bool shut[2]; /* got "Server shutting down" */
} pair_t;

extern const char *const pair_names[2];

extern pair_t the_pair;

void pair_body(const pair_t *p, int from, unsigned n, char *out, size_t cap);

/*
 * Serve the pair (answer, check, re-park) for at most ms, also watching the
 * extra connections ex[0..nex) (NULL entries skipped). Returns the index of
 * an extra connection on which bytes or EOF arrived (already pumped into its
 * buffer), -2 after handling pair traffic, or -1 when the time is up.
 */
#define PAIR_MAX_EXTRA 64

int pair_poll(pair_t *p, int ms, h_conn_t *const *ex, size_t nex);

/* Serve the pair for ms. */
void pair_service(pair_t *p, int ms);

typedef bool (*pair_pred)(const pair_t *p, const void *arg);

#define pair_until(p, ms, pred, arg, what) pair_until_at(__FILE__, __LINE__, (p), (ms), (pred), (arg), (what))
void pair_until_at(const char *file, int line, pair_t *p, int ms, pair_pred pred, const void *arg,
                   const char *what);

bool all_delivered(const pair_t *p, const void *arg);

bool both_noted(const pair_t *p, const void *arg);

bool alice_noted(const pair_t *p, const void *arg);

bool alice_extra(const pair_t *p, const void *arg);

/* Both members hear of line (e.g. "carol,3,1\n") within the normal timeout. */
#define pair_await_note(p, line) pair_until((p), H_TIMEOUT_MS, both_noted, (line), (line))

/* One message each way, both delivered within the normal timeout. */
#define pair_exchange(p) (h_at(__FILE__, __LINE__), pair_exchange_(p))

void pair_exchange_(pair_t *p);

/*
 * alice and bob sign in (first, so as ids 1 and 2) and park their /waits;
 * alice's first answer is bob's join. persistent: posts go over two
 * keep-alive connections opened now (for tests where new connections may
 * be refused), warmed up with one request so that the read timeout for a
 * new connection's first request does not apply to them.
 */
void pair_start(pair_t *p, const h_server_t *srv, bool persistent);

/* The notes of member i are exactly want. */
#define pair_expect_notes(p, i, want) pair_expect_notes_at(__FILE__, __LINE__, (p), (i), (want))

void pair_expect_notes_at(const char *file, int line, const pair_t *p, int i, const char *want);

#define pair_expect_no_extra(p) pair_expect_extra_at(__FILE__, __LINE__, (p), "", "")
#define pair_expect_extra(p, a, b) pair_expect_extra_at(__FILE__, __LINE__, (p), (a), (b))
void pair_expect_extra_at(const char *file, int line, const pair_t *p, const char *a, const char *b);

/* After h_server_stop: each parked /wait got the shutdown notice, then EOF. */
void pair_expect_shutdown(pair_t *p);

/* A last exchange, then SIGTERM: exit status 0 and the shutdown notices. */
#define pair_stop(p, srv) (h_at(__FILE__, __LINE__), pair_stop_((p), (srv)))

void pair_stop_(pair_t *p, h_server_t *srv);

/*
 * Send req on a new connection; expect `status`, text/plain, a one-line
 * reason, Connection: close, then EOF; the server is still up.
 */
#define expect_refusal(srv, req, len, status) \
    expect_refusal_at(__FILE__, __LINE__, (srv), (req), (len), (status))

void expect_refusal_at(const char *file, int line, const h_server_t *srv, const void *req, size_t len,
                       int status);

/* Push copies of req (len bytes) into h until the peer takes nothing for a
 * second; returns the bytes pushed. Fails when the connection breaks or when
 * far more than any socket buffers could hold was taken. */
size_t push_until_full(hc_t *h, const char *req, size_t len, const char *what);

#define FLOOD 400
/* Raw TCP connections (no TLS), non-blocking. */
void open_raw(const h_server_t *srv, int *fds, size_t n);

typedef struct rawbuf {
    char b[4096];
    size_t len;
    bool eof;
} rawbuf_t;

/*
 * Await, on fds[i] with want[i] set, the whole answer and EOF (deadline ms);
 * then the first response of each must have status st (0: either no bytes
 * at all or st_alt). Returns how many ended.
 */
size_t await_raw_eof(const int *fds, rawbuf_t *rb, const bool *want, size_t n, size_t stop_at,
                     int ms);

/* The single response in rb: its status, or 0 when there are no bytes, -1 when malformed. */
int raw_status(rawbuf_t *rb, bool *close_hdr);

enum child_kind { CHILD_MID_REQUEST, CHILD_MID_WAIT };

/* Fork a child that signs in as name and then does its hostile part; returns
 * its pid once it is there, with its member id. */
pid_t spawn_child(const h_server_t *srv, int kind, const char *name, uint64_t to,
                  uint64_t *id);

void kill_child(pid_t pid);

int hostile_teardown(void **state);

#define T(f) cmocka_unit_test_setup_teardown(f, h_setup, hostile_teardown)

#endif
