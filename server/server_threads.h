/*
 * server_threads: struct server and what the files of the server's threads
 * share, private to them: acceptor.c, poller.c, workers.c, reaper.c,
 * server.c (the lifecycle) and session.c (the sessions those threads run,
 * which schedule, bury and count themselves in it). tools/check-layers.sh
 * fails when any other file includes it; the rest of the server sees only
 * server.h's lifecycle and what is passed to it.
 * Lock order (outer first): registry -> work queue;
 * sessions -> work queue. No other lock is taken while one is held.
 */
#ifndef PCSIG_SERVER_THREADS_H
#define PCSIG_SERVER_THREADS_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "access.h"
#include "buf.h"
#include "config.h"
#include "metrics.h"
#include "net.h"
#include "ratelimit.h"
#include "registry.h"
#include "server.h"
#include "tls.h"

/* Main port, TLS port and the --metrics-bind port: each up to NET_MAX_LISTENERS. */
#define SERVER_MAX_LISTENERS (3 * NET_MAX_LISTENERS)

struct session;

struct server {
    struct server_config cfg;
    registry_t *reg;
    struct cluster *cluster; /* --cluster (cluster.h); NULL: a single server */
    uint16_t port; /* as bound */

    int listen_fds[SERVER_MAX_LISTENERS];
    bool listen_tls[SERVER_MAX_LISTENERS];
    bool listen_metrics[SERVER_MAX_LISTENERS]; /* --metrics-bind: /health and /metrics only */
    int nlisten;
    uint16_t metrics_port; /* as bound; 0: no metrics listener */
    tls_server_t *tls; /* NULL: no TLS */
    char **auth_tokens; /* sign-in bearer tokens (--auth-token, --auth-token-file) */
    size_t nauth_tokens;
    ratelimit_t *rl; /* per-address limits */
    struct web *web; /* the browser page (web.h); NULL with --no-web */
    uint16_t tls_port;
    int acceptor_wake_fd; /* eventfd: stop the acceptor */
    int epfd;
    int poller_wake_fd; /* eventfd: graveyard non-empty, or stop */

    pthread_t acceptor, poller, reaper;
    pthread_t *workers;
    int nworkers_started;
    bool acceptor_started, poller_started, reaper_started;

    /* Work queue: sessions ready to run. Guarded by wq_lock. */
    pthread_mutex_t wq_lock;
    pthread_cond_t wq_cond;
    struct session *wq_head, *wq_tail;
    bool wq_stop;

    /* Every open session, for the reaper and shutdown. Guarded by sessions_lock. */
    pthread_mutex_t sessions_lock;
    pthread_cond_t sessions_cond; /* signalled when the last session closes */
    struct session *sessions;
    size_t nsessions;

    /* Closed sessions waiting for the poller to free them. Guarded by grave_lock. */
    pthread_mutex_t grave_lock;
    struct session *grave;
    size_t grave_count; /* since the poller last emptied it */

    /* Reaper wake-up and stop. Guarded by reaper_lock. */
    pthread_mutex_t reaper_lock;
    pthread_cond_t reaper_cond;
    bool reaper_stop;

    atomic_bool draining;   /* SIGTERM: answer with Connection: close, close idle */
    atomic_bool poller_stop;
    atomic_size_t open_conns;
    atomic_size_t tls_refusals; /* TLS connections being refused (503/429), not in open_conns */
    atomic_bool failed;         /* the acceptor gave up: main exits with an error */
    /* Why we asked main to stop (server_request_quit): written once, before
     * quit_set is stored, and read by main only after it saw quit_set. */
    atomic_bool quit_claimed;
    atomic_bool quit_set;
    buf_t quit_why; /* NUL-terminated text */
    /* The acceptor's refusals (OUTCOME_BUSY, OUTCOME_PER_IP), whole answers
     * built once at start from response.c's table; read-only after. */
    buf_t busy_answer, per_ip_answer;
    atomic_size_t wq_depth;  /* sessions in the work queue (a gauge for scrapes) */
    /* Answer bytes held in sessions' out buffers, every session together
     * (--max-total-output-bytes bounds it); see session_out_sync. */
    atomic_size_t out_held;
    /* A big answer was refused for want of room: the reaper makes room for
     * one more answer of --max-output-bytes (see evict_stalled). */
    atomic_bool out_pressure;

    /* Observability: counters bumped by every thread (relaxed atomics), the
     * --access-log sampling (counting in metrics), and when we started. */
    struct metrics metrics;
    struct access_log access;
    uint64_t started_ms;      /* clock_now_ms() at start */
    uint64_t started_unix_s;  /* wall clock at start */
};

/* Queue a session for a worker (the caller won its claim). Thread-safe. */
void server_schedule(struct server *srv, struct session *s);
/* Hand a closed session to the poller for freeing. Thread-safe. */
void server_bury(struct server *srv, struct session *s);
/* Held output is over its cap, or (make_room) a big answer found no room:
 * wake the reaper to close the connections that stalled longest. Thread-safe. */
void server_output_pressure(struct server *srv, bool make_room);
/* Ask main to begin a graceful stop (as SIGTERM does). The first caller's
 * cause, with the client's address when remote is not NULL, is what main
 * logs, e.g. "GET /quit from 127.0.0.1:5000". Thread-safe. */
void server_request_quit(struct server *srv, const char *cause, const char *remote);
/* Fill out with everything a scrape reports. Takes the registry lock only
 * to copy its numbers; formats and allocates nothing. Thread-safe. */
void server_metrics_snapshot(struct server *srv, struct metrics_snapshot *out);


/* Thread bodies, started by server_start (arg: the struct server). */
void *acceptor_main(void *arg);
void *poller_main(void *arg);
void *worker_main(void *arg);
void *reaper_main(void *arg);

/* Free the closed sessions no worker still holds (the poller, between two
 * epoll batches; server_stop, once every other thread has ended). */
void server_free_graveyard(struct server *srv);

static inline void eventfd_poke(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static inline void eventfd_drain(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

#endif
