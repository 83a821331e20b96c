/*
 * session: one client connection and its HTTP state machine.
 *
 * Ownership: at any moment a session is owned by exactly one of
 *   - the poller (state ARMED: registered in epoll, waiting for I/O),
 *   - the registry (state PARKED: a hanging GET; also watched for hang-up),
 *   - a worker (state RUNNING: in the work queue or being run).
 * Only the RUNNING owner touches its buffers and socket, and only session.c
 * writes a session's fields (the router returns a route_result that
 * session.c applies); session.c asserts the state where only the owner may
 * be. Anyone who wants
 * it (poller event, registry delivery, reaper deadline) first records why in
 * wake_bits and then claims it with a compare-and-swap from ARMED or PARKED
 * to RUNNING; the winner queues it for a worker, and a worker that is about
 * to give it up re-checks wake_bits so that no wake-up is lost. A PARKED
 * session is claimed only by the registry (with its answer) and by the
 * poller (a hang-up, which the session confirms by reading: an event the
 * poller held from before the park is none); a reaper's bit left from
 * before the park does not take it back.
 * Sessions are freed only by the poller between two epoll batches (the
 * "graveyard"), so an event still in hand never points to freed memory.
 * A worker that gives a session up and then re-checks wake_bits holds a pin
 * across that window: by then another thread may have claimed, run and
 * closed it, and the graveyard keeps a pinned session for a later pass.
 * tests/unit/test_session_own.c plays these races in a fixed order.
 */
#ifndef PCSIG_SESSION_H
#define PCSIG_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "conn.h"
#include "http.h"
#include "ratelimit.h"
#include "registry.h"

struct server;

enum session_state { SESSION_RUNNING = 0, SESSION_ARMED, SESSION_PARKED };

#define SESSION_WAKE_IO 1u      /* epoll reported readiness or hang-up */
#define SESSION_WAKE_TIMEOUT 2u /* the reaper found the deadline passed */
#define SESSION_WAKE_EVICT 4u   /* the reaper closes it to bound held output */

struct session {
    struct reg_waiter waiter; /* the registry's view while parked */
    struct server *srv;
    conn_t *conn;
    atomic_int state;
    atomic_uint wake_bits;
    atomic_uint_least64_t deadline_ms; /* 0: none; read by the reaper */
    atomic_uint pins; /* workers between publishing it and their re-check */
    /* Bytes of out counted in srv->out_held (written by the RUNNING owner,
     * read by the reaper), and when the client last took any of them while
     * more were waiting: 0 when out is not waiting on the client. */
    atomic_size_t out_counted;
    atomic_uint_least64_t out_progress_ms;

    /* Written by whoever claims a parked session, before it is queued. */
    bool has_wake;
    enum reg_wake wake_why;
    reg_item_t *wake_item;

    /* Owned by the RUNNING owner. */
    buf_t in, out;
    /* The head in `in` so far: where its parse stopped (each read is looked
     * at once, not the whole head again), and once complete its length and
     * body length, so a body arriving in pieces is not parsed again either. */
    http_parse_state_t parse;
    size_t head_len;          /* 0: head not complete yet */
    uint64_t head_body_len;
    bool waiting;            /* a /wait is (or was just) parked */
    bool wait_keep_alive;    /* answer the parked /wait with keep-alive */
    bool wait_batch;         /* the /wait asked for batches (X-Pcsig-Batch: 1) */
    uint64_t wait_member;
    uint64_t cluster_gen;    /* --cluster: the parked /wait's lease (cluster_wait) */
    reg_item_t *inflight;    /* delivered item whose bytes are in out */
    uint64_t inflight_member;
    bool close_after_write;
    bool linger;             /* after an error answer: drain input before closing */
    bool lingering;          /* our side is shut down; discarding what still comes */
    uint64_t request_started_ms; /* first byte of the pending request, 0: none */
    uint64_t request_started_us; /* the same on the microsecond clock (access log) */
    uint64_t wait_started_us;    /* the parked /wait's request_started_us */
    int wait_method;             /* and its enum http_method, for the access log */
    /* Accepted on the --metrics-bind listener: /health and /metrics only.
     * Set by the acceptor before the session is published; read-only after. */
    bool metrics_only;
    uint64_t accepted_ms;        /* a TLS handshake must finish by accepted + read timeout */
    /* A first request was read whole (or refused). Until then the read
     * deadline is accepted + read timeout, whatever came before it: a TLS
     * handshake, or part of a TLS record, must not buy the idle timeout. */
    bool first_request_done;
    char peer[64];
    rl_key_t rl_key;  /* the client's address, for per-address limits */
    bool rl_counted;  /* counted in rl_conn_open */
    /* Refused at accept (TLS): answers its out after the handshake, then
     * closes; counted in srv->tls_refusals, not in open_conns. Set before
     * the session is published; read-only after. */
    bool refusal;
    bool tls; /* accepted on a TLS listener; set before publication */
    /* Registered with the server's epoll set. A plain connection is served
     * first on the thread that accepted it, and enters epoll only when it
     * must wait (a partial request, a parked /wait, keep-alive, a slow
     * reader). Written by the RUNNING owner (or before publication). */
    bool in_epoll;
    /* Was ever in it: an event may still be in the poller's hands, so it is
     * freed through the graveyard, never at once. */
    bool was_in_epoll;

    /* The links of the lists that hold it: not the session's state, and
     * the one exception to "only session.c writes": each is written by the
     * list's own module, under the list's lock (tools/check-layers.sh). */
    struct session *wq_next; /* work queue (workers.c; wq_lock), or session_run_here's own */
    struct session *prev, *next; /* all sessions (session.c); sessions_lock */
    struct session *grave_next; /* graveyard (poller.c); grave_lock */
};

/* A session for an accepted socket (takes ownership of fd on success) in
 * state RUNNING, linked into the server's list. NULL when out of memory. */
struct session *session_new(struct server *srv, int fd, const struct sockaddr *peer, bool tls);

/* A TLS connection refused at accept: after the handshake it writes answer
 * (a complete canned response), lingers briefly and closes, never reading a
 * request. Like session_new otherwise (the caller counts it in
 * srv->tls_refusals; the close uncounts it), but it takes fd even when it
 * fails: NULL (fd closed) when out of memory. */
struct session *session_new_refusal(struct server *srv, int fd, const struct sockaddr *peer,
                                    const char *answer, size_t len);

/* What the acceptor knows of a new session (s from session_new, not yet
 * published): accepted on the --metrics-bind listener (/health and /metrics
 * only), and counted in rl_conn_open (uncounted when it closes). */
void session_accepted(struct session *s, bool metrics_only, bool rl_counted);

/* Hand a new session (ours, not in epoll) to the poller: it runs once the
 * client sends (for TLS, its ClientHello), or is closed by the reaper after
 * the read timeout. Publishes s: the caller must not touch it after. */
void session_arm_new(struct session *s);

/* Run the state machine until the session must wait again or is closed.
 * Called only by a worker that owns the session (RUNNING). */
void session_run(struct session *s);

/* Run s (RUNNING, ours) on this thread, then the few parked /waits that
 * what it did woke (a message it relayed), instead of handing them to a
 * worker; the rest of what it woke goes to the work queue as usual. */
void session_run_here(struct session *s);

/* True when s (claimed by the caller) is a plain connection whose first
 * request has not been read yet: it was accepted before its request came
 * in. The poller serves those itself, as the acceptor would have: reading a
 * request is cheap, and a hand-off to a worker costs more than the request.
 * TLS handshakes and everything after the first request go to workers, and
 * with --cluster every request does (it waits on Redis round trips). */
bool session_first_plain_request(const struct session *s);

/* Record why and try to take the session from ARMED (or also PARKED when
 * parked_too). True when the caller won and must server_schedule() it. */
bool session_claim(struct session *s, unsigned wake_bit, bool parked_too);

/* Bring srv->out_held up to date with the bytes now in s->out (call after
 * appending a big answer; the session also calls it itself whenever out
 * shrinks or it waits to write). Called only by the RUNNING owner. */
void session_out_sync(struct session *s);

/* Free a closed session (poller graveyard, final cleanup). */
void session_free(struct session *s);
/* True while a worker may still touch s (see pins): not yet to be freed. */
bool session_pinned(struct session *s);
/* Close a session that no worker will ever run again (final cleanup). */
void session_force_close(struct session *s);

#endif
