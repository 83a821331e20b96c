/*
 * bench: the pieces of pcsig-bench (the load generator) shared by its files.
 *
 *   bench.c        options, the server it may spawn, the phases, the report
 *   bench_net.c    sockets (loopback source spreading), message bodies,
 *                  the latency histogram, the random generator
 *   bench_peers.c  receiver event loops: sign-in, hanging /wait, checking
 *   bench_send.c   sender threads: POST /message, closed loop or at a rate
 *   bench_hs.c     --handshakes: TLS handshake rates, full vs resumed
 *   bench_churn.c  --churn: members signing in and out during the relay
 *
 * Every connection is a conn_t (common/conn.h): plain TCP, or TLS with --tls
 * through its thread's own tls_client_t (one per loop and per sender, so no
 * TLS session is shared between threads), which keeps a small pool of session
 * tickets and gives each new connection one of them, so reconnects resume. The
 * event loops register both directions edge-triggered, so whichever
 * conn_want() names after an -EAGAIN, its edge wakes the loop and the
 * pending operation is retried (while a handshake is in progress only the
 * writes drive it); reads always go on until -EAGAIN, as OpenSSL may hold
 * decrypted records that epoll cannot see.
 *
 * Ownership: struct bench is created by main and outlives every thread.
 * Each peer belongs to exactly one receiver loop (index % loops), which
 * alone touches its mutable fields; the few figures several threads update
 * are atomics in struct bench. Peer ids are written by the loops during
 * sign-in and only read by senders, which start after main has seen every
 * sign-in counted (acquire on the counter, release by each increment).
 */
#ifndef PCSIG_BENCH_H
#define PCSIG_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "conn.h"
#include "tls.h"

#define BENCH_MAX_SENDERS 256
#define BENCH_MAX_LOOPS 64
#define BENCH_MAX_SRC 254          /* 127.0.0.1 .. 127.0.0.254 */
#define BENCH_MAX_PEERS 1000000
#define BENCH_BODY_HDR 54          /* fixed prefix of every message body */
#define BENCH_MAX_SIZE (4u << 20)  /* the server's default body limit */
#define BENCH_RESP_MAX_HEAD 16384
#define BENCH_MAX_ATTEMPTS 50      /* sends of one message before giving up */
#define BENCH_RETRY_MS 20          /* back-off after a 503 or a broken connection */

struct bench_opts {
    const char *host;       /* --server */
    uint16_t port;          /* --port */
    const char *spawn;      /* --spawn-server PATH, or NULL */
    char **server_args;     /* after "--" */
    int nserver_args;
    unsigned peers;
    uint64_t messages;
    unsigned senders;
    unsigned inflight;      /* per sender */
    double rate;            /* msgs/s in total; 0: closed loop */
    size_t size;            /* message body bytes */
    bool keepalive;
    bool batch;             /* --batch: every /wait asks for batched answers */
    unsigned loops;         /* receiver event-loop threads */
    unsigned src_addrs;     /* loopback source addresses to spread over */
    double timeout_s;
    double drain_s;
    unsigned signin_conc;   /* sign-ins in flight per loop */
    int sign_out;           /* -1: auto (only against an external server) */
    uint64_t seed;
    bool quiet;
    bool tls;               /* --tls: every connection speaks TLS */
    const char *ca_file;    /* --ca (default certs/ca.pem) */
    const char *tls_name;   /* --tls-name: verified name/SNI (default: the host) */
    const char *tls_cert;   /* --tls-cert/--tls-key: given to a spawned server */
    const char *tls_key;
    uint64_t handshakes;    /* --handshakes N: the handshake mode; 0: off */
    unsigned hs_parallel;   /* --hs-parallel: connections at a time in that mode */
    double churn_rate;      /* --churn: sign-in/sign-out cycles a second; 0: off */
    double join_interval_ms; /* --join-interval: peer i signs in at i x this; 0: at once */
    unsigned stepwise;      /* --stepwise-join C: one join at a time, new /wait
                             * connections C at a time per loop; 0: off */
    int server_pid;         /* --server-pid: an external server's pid, for its CPU time */
};

/* Latency histogram in microseconds: exact below 128 us, then 64 linear
 * sub-buckets per power of two (about 1.5 % resolution). */
#define HIST_LINEAR 128u
#define HIST_SUB 64u
#define HIST_BUCKETS (HIST_SUB * 60u)
struct bench_hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;
    uint64_t max_us;
};
void hist_add(struct bench_hist *h, uint64_t us);
void hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* Value (us) at quantile q in [0,1]: the midpoint of its bucket; 0 when empty. */
double hist_quantile(const struct bench_hist *h, double q);

/* xorshift64*: a per-thread generator; never seeded with 0. */
uint64_t bench_rand(uint64_t *state);

uint64_t bench_now_ns(void);

/* What a message body says (see bench_body_encode for the layout). */
struct bench_msg {
    unsigned sender;   /* sender thread index */
    uint64_t num;      /* message number within that sender */
    uint64_t from_id;  /* server id of the peer it was posted as */
    uint32_t to;       /* receiver peer index */
    uint32_t seq;      /* per (sender thread, receiver), from 1 */
    uint64_t t_ns;     /* bench_now_ns() when the POST started */
};
/* Write exactly size (>= BENCH_BODY_HDR) bytes for m into dst. */
void bench_body_encode(char *dst, size_t size, const struct bench_msg *m);
/* Decode and verify a received body: 0, or -EINVAL when anything is off. */
int bench_body_decode(const char *p, size_t n, size_t size, struct bench_msg *m);

struct bench_peer {
    uint64_t id;          /* the server's id; 0 until signed in */
    uint32_t index;
    bool dead;            /* the server no longer knows it */
    struct pconn *wait;   /* its /wait connection (keep-alive: its only one) */
    uint64_t retry_at_ms; /* re-poll due at this time when nonzero */
    bool deferred;        /* --stepwise-join: waiting for a /wait slot */
};

struct bench_loop;
struct bench_sender;

enum bench_phase { PH_JOIN = 0, PH_RUN, PH_SIGNOUT, PH_STOP };

struct bench {
    struct bench_opts o;
    struct sockaddr_storage srv;
    socklen_t srv_len;
    bool spread_src;            /* server on IPv4 loopback: bind sources */
    char host_hdr[300];         /* Host header value for HTTP/1.1 */

    struct bench_peer *peers;   /* [o.peers] */
    uint32_t *last_seq;         /* [peer * senders + s], owned by the peer's loop */
    uint64_t msgs_for[BENCH_MAX_SENDERS];
    _Atomic uint64_t *seen[BENCH_MAX_SENDERS]; /* bitmap over message numbers */
    uint64_t join_target;       /* N(N-1)/2 */
    uint64_t t0_ns;             /* sign-in start */

    atomic_int phase;
    atomic_bool stop;           /* everyone: finish now */

    atomic_uint_fast64_t signed_in, signin_failed, signed_out;
    atomic_uint_fast64_t joins, leaves, idle_answers, gone, unexpected, wait_errors;
    atomic_uint_fast64_t delivered, dups, reordered, corrupt;
    atomic_uint_fast64_t t_signed_in_ns, t_joined_ns;
    /* --stepwise-join: peers whose next /wait is not yet written (waiting
     * for a connection slot, connecting or writing); the next sign-in and
     * the relay wait for 0 */
    atomic_uint_fast64_t waits_unsent;
    atomic_uint src_rr;

    /* --churn: cycles' sign-ins and sign-outs that succeeded, cycles that
     * failed; the notifications about churn members the peers received */
    atomic_bool churn_stop;
    atomic_uint_fast64_t churn_signins, churn_signouts, churn_failed;
    atomic_uint_fast64_t churn_joins, churn_leaves;
    /* --churn, written by the churn thread only, read after bench_churn_join:
     * sign-in request -> answer, and connect -> sign-in answer (which adds
     * the wait to be accepted), in us */
    struct bench_hist churn_signin_us, churn_connect_us;

    atomic_uint_fast64_t tls_full, tls_resumed, tls_failed; /* handshakes */
    atomic_uint tls_logged;     /* handshake failures reported in detail */

    struct bench_loop *loops;
    struct bench_sender *senders;

    /* --batch: summed by bench_loops_join (main reads them after) */
    uint64_t batch_answers;     /* answers in the batch format */
    uint64_t batch_records;     /* records in them */
    uint64_t batch_max;         /* most records in one answer */
};

/* Sender-side figures, read by main after the thread is joined. */
struct bench_send_stats {
    uint64_t sent;        /* messages started (first attempts) */
    uint64_t accepted;    /* 200 OK */
    uint64_t refused;     /* given up: 500, 4xx, too many attempts */
    uint64_t busy503;     /* 503 answers (retried) */
    uint64_t conn_errors; /* connections lost or refused (retried) */
    uint64_t first_ns, last_ns;
};

/* One connection of the bench, plain or TLS; owned by one thread. */
struct bench_conn {
    conn_t *c;     /* NULL when closed */
    bool counted;  /* TLS: its handshake (or its failure) is in the figures */
};

/* bench_net.c */
/* A non-blocking TCP socket connecting to the server (EINPROGRESS is fine),
 * bound to one of the loopback sources when b->spread_src. fd or -errno. */
int bench_connect(struct bench *b);
/* A TLS client context for one thread (--ca): 0, or -errno with the reason
 * logged. */
int bench_tls_client(const struct bench *b, tls_client_t **out);
/* bench_connect, wrapped as a conn_t: TLS through tls (the calling thread's
 * client) or plain when tls is NULL. The TLS handshake runs inside the
 * first writes. 0 or -errno. */
int bench_open(struct bench *b, tls_client_t *tls, struct bench_conn *bc);
/* Close (TLS: best-effort close_notify) and forget; NULL-safe. */
void bench_close(struct bench_conn *bc);
static inline int bench_fd(const struct bench_conn *bc) { return conn_fd(bc->c); }
static inline bool bench_established(const struct bench_conn *bc)
{
    return bc->c && bc->c->established;
}
/* Write what is left of p[0..len) from *off; 1 when all is out, 0 on
 * EAGAIN (the edge of conn_want() comes), -errno on error. */
int bench_write(struct bench *b, struct bench_conn *bc, const char *p, size_t len, size_t *off);
/* Pending SO_ERROR of fd (0 when connected). */
int bench_so_error(int fd);
/* Wait (poll) for a non-blocking connect of fd to complete: 0 or -errno
 * (-ETIMEDOUT after timeout_ms). */
int bench_connected_timed(int fd, int timeout_ms);
/* Blocking-style: read one complete answer into in (after what is already
 * there; its body at most in->max bytes), each read waiting at most
 * timeout_ms. Its status and Pragma (0 when none). 0 or -errno (-EPROTO:
 * not HTTP or no Content-Length; -E2BIG: larger than in may hold). */
int bench_answer_timed(conn_t *c, buf_t *in, int timeout_ms, int *status, uint64_t *pragma);
/* Read what the connection has into in (growing it by up to chunk): >0
 * bytes, 0 EOF, -EAGAIN, or -errno. Callers loop until -EAGAIN. */
long bench_read(struct bench *b, struct bench_conn *bc, buf_t *in, size_t chunk);

/*
 * Batched /wait answers (X-Pcsig-Batch: 1): Content-Type
 * application/x-pcsig-batch, X-Pcsig-Batch-Count: N, and a body of N
 * records, each "<pragma> <ctype_len> <body_len>\n" (decimal numbers,
 * single spaces, LF) followed by exactly ctype_len bytes of content type and
 * body_len bytes of body.
 */
#define BENCH_BATCH_CTYPE "application/x-pcsig-batch"
#define BENCH_BATCH_COUNT_HDR "X-Pcsig-Batch-Count"
#define BENCH_BATCH_MAX_BODY (64u << 20) /* what a batch answer may carry here */
struct bench_record {
    uint64_t pragma;      /* >= 1 */
    const char *ctype;    /* ctype_len bytes (0: the sender gave none) */
    size_t ctype_len;
    const char *body;
    size_t body_len;
};
/* The record at p[*off..n) of a batch body, strictly: 1 with rec filled and
 * *off past it, 0 when *off == n (the end), -EPROTO with *why (static text)
 * when the bytes there are not one whole record. */
int bench_batch_next(const char *p, size_t n, size_t *off, struct bench_record *rec,
                     const char **why);

/* bench_peers.c */
int bench_loops_start(struct bench *b);
void bench_loops_join(struct bench *b, struct bench_hist *lat, uint64_t *last_delivery_ns);
/* Loops that finished their sign-outs. */
unsigned bench_loops_signout_done(const struct bench *b);

/* bench_send.c */
int bench_senders_start(struct bench *b);
void bench_senders_join(struct bench *b, struct bench_send_stats *total);
/* Messages settled so far (accepted or given up), over all senders. */
uint64_t bench_senders_settled(const struct bench *b);

/* bench_churn.c: the churn thread (--churn), started with the senders and
 * stopped (joined, freed) by bench_churn_join; NULL-safe. 0 or -errno. */
#define BENCH_CHURN_PREFIX "churn" /* the churn members' names; steady peers are bench<i> */
struct bench_churn;
int bench_churn_start(struct bench *b, struct bench_churn **out);
void bench_churn_join(struct bench_churn *ch);
/* Whether a member name is a churn member's. */
bool bench_is_churn_name(const char *name, size_t len);

/* bench_hs.c: one phase of --handshakes: o.handshakes connections, each a
 * TLS handshake plus GET /sign_in?h and GET /sign_out on it (keep-alive, so
 * the server keeps no members), with a fresh tls_client_t per connection
 * (reuse false: full handshakes) or one shared client (reuse true). */
struct bench_hs_phase {
    uint64_t done;       /* connections that completed both round trips */
    uint64_t failed;     /* connections that did not */
    uint64_t resumed;    /* of done: the handshake resumed a session */
    double wall_s;       /* the phase, first connect to last close */
    struct bench_hist hs;    /* connect -> handshake complete, us */
    struct bench_hist total; /* connect -> close, us */
};
int bench_hs_phase(struct bench *b, bool reuse, struct bench_hs_phase *out);

#endif
