/*
 * acceptor: accepts, enforces --max-connections and the per-address
 * limits, and serves a plain connection's first request on the spot
 * (session_run_here), except with --cluster; TLS, and whatever must wait,
 * go to the poller.
 * poll() failing --accept-give-up seconds without a break (it only fails
 * for want of memory or from a bug) means the acceptor is deaf for good:
 * it stops the server with an error exit, so that a supervisor restarts it.
 */
#include "server_threads.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "response.h"
#include "session.h"

#define ACCEPT_BACKOFF_MS 100
#define ACCEPT_BATCH 64 /* connections accepted (and served) between two polls */
/* TLS connections refused at the connection cap or the per-address limit
 * are answered through TLS, which costs a handshake (and a socket held up to
 * the read timeout): at most this many at once, past it they are closed at
 * once. It stays within the 64 descriptors that the default
 * --max-connections leaves free below the open-file limit. */
#define TLS_REFUSALS_MAX 32

/*
 * Refuse a new connection with a canned answer (503 or 429). Plain: written
 * at once, best effort and never blocking. TLS: bytes before a handshake
 * would be garbage to the client, so a session does the handshake (within
 * the read timeout, like any other) and then answers and closes; at most
 * TLS_REFUSALS_MAX of them at once, so that refusing cannot itself be used
 * to tie the server up. Beyond that, or out of memory, a bare close.
 */
static void refuse_conn(struct server *srv, int fd, struct sockaddr_storage *ss, bool tls,
                        const char *answer, size_t len)
{
    if (!tls) {
        ssize_t w = send(fd, answer, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        close(fd);
        return;
    }
    if (atomic_fetch_add(&srv->tls_refusals, 1) >= TLS_REFUSALS_MAX) {
        atomic_fetch_sub(&srv->tls_refusals, 1);
        close(fd);
        return;
    }
    struct session *s = session_new_refusal(srv, fd, (struct sockaddr *)ss, answer, len);
    if (!s) { /* it closed fd */
        atomic_fetch_sub(&srv->tls_refusals, 1);
        return;
    }
    session_arm_new(s);
}

/* A new connection: refused, or handed to the poller (TLS), or returned to
 * be served by the caller (plain; RUNNING and ours, not yet in epoll). */
static struct session *accept_one(struct server *srv, int fd, struct sockaddr_storage *ss,
                                  bool tls, bool metrics_only)
{
    /* TCP_NODELAY comes from the listener (set_listeners_nodelay). */
    if (atomic_load(&srv->open_conns) >= srv->cfg.max_connections) {
        /* Counted before the client can see the answer, so a scrape that
         * follows the refusal always includes it. */
        metrics_count_refused(&srv->metrics, MET_REFUSED_MAX_CONNECTIONS);
        refuse_conn(srv, fd, ss, tls, srv->busy_answer.data, srv->busy_answer.len);
        return NULL;
    }
    rl_key_t key;
    rl_key_from(&key, (struct sockaddr *)ss);
    /* The metrics listener sits on an operator's address for a scraper: the
     * per-address limits, meant for clients, would throttle the scraper and
     * skew the very counters it reads. --max-connections still applies. */
    bool per_ip = !metrics_only;
    if (per_ip && !rl_conn_open(srv->rl, &key)) {
        metrics_count_refused(&srv->metrics, MET_REFUSED_PER_IP);
        refuse_conn(srv, fd, ss, tls, srv->per_ip_answer.data, srv->per_ip_answer.len);
        return NULL;
    }
    struct session *s = session_new(srv, fd, (struct sockaddr *)ss, tls);
    if (!s) {
        log_event(LOG_ERROR, "conn_refused", NULL, "out of memory: connection refused");
        if (per_ip)
            rl_conn_close(srv->rl, &key);
        close(fd);
        return NULL;
    }
    session_accepted(s, metrics_only, per_ip);
    atomic_fetch_add(&srv->open_conns, 1);
    metrics_count_connection(&srv->metrics);
    if (tls || srv->cluster) {
        /* A handshake takes round trips: the poller waits for them, never
         * this thread. With --cluster a request waits on Redis round trips:
         * the workers serve it (session_first_plain_request), so accepting
         * never waits on Redis. */
        session_arm_new(s);
        return NULL;
    }
    /* Plain: the request is usually in the socket already (the client
     * sent it right after connecting). It is read, parsed, routed and
     * answered without a trip through epoll (see serve_held); the
     * session enters epoll only if it must wait (see in_epoll). */
    return s;
}

/*
 * The n plain connections one drain of the backlog accepted, served here
 * one after the other: the common case of one request at a time costs no
 * hand-off at all. (Sharing a burst with the workers through the work
 * queue was tried and lost members in a 10,000-peer join: BENCHMARKS.md.)
 * With --cluster none is held (accept_one hands every one to the poller):
 * a request there waits on Redis, which would stop this thread accepting.
 */
static void serve_held(struct session **held, size_t n)
{
    for (size_t i = 0; i < n; i++)
        session_run_here(held[i]);
}

/*
 * poll() failed with err (not EINTR), for failing_ms now: wait a moment and
 * let the caller retry, or, when it keeps failing, stop the server with an
 * error (main exits non-zero) instead of running without accepting. True
 * when the acceptor must end: stop requested, or given up.
 */
static bool poll_failure(struct server *srv, int err, uint64_t failing_ms)
{
    if (failing_ms >= srv->cfg.accept_give_up_ms) {
        log_errno(LOG_ERROR, err, "poll: failing for %llu ms; cannot accept, stopping",
                  (unsigned long long)failing_ms);
        atomic_store(&srv->failed, true);
        server_request_quit(srv, "cannot accept connections", NULL);
        return true;
    }
    if (failing_ms == 0)
        log_errno(LOG_ERROR, err, "poll (retrying every %d ms)", ACCEPT_BACKOFF_MS);
    /* poll() cannot wait for us now: sleep, then look for a stop request. */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ACCEPT_BACKOFF_MS * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    uint64_t v;
    return read(srv->acceptor_wake_fd, &v, sizeof v) == (ssize_t)sizeof v;
}

void *acceptor_main(void *arg)
{
    struct server *srv = arg;
    log_set_thread_role("acceptor");
    struct pollfd pfds[SERVER_MAX_LISTENERS + 1];
    bool tls_of[SERVER_MAX_LISTENERS + 1];
    bool metrics_of[SERVER_MAX_LISTENERS + 1];
    uint64_t backoff_until = 0;
    uint64_t last_emfile_log = 0;
    uint64_t poll_failed_since = 0; /* 0: the last poll() worked */
    for (;;) {
        int n = 0;
        pfds[n++] = (struct pollfd){.fd = srv->acceptor_wake_fd, .events = POLLIN};
        uint64_t now = clock_now_ms();
        bool backing_off = now < backoff_until;
        if (!backing_off)
            for (int i = 0; i < srv->nlisten; i++) {
                tls_of[n] = srv->listen_tls[i];
                metrics_of[n] = srv->listen_metrics[i];
                pfds[n++] = (struct pollfd){.fd = srv->listen_fds[i], .events = POLLIN};
            }
        int r = poll(pfds, (nfds_t)n, backing_off ? (int)(backoff_until - now) : -1);
        if (r < 0 && errno != EINTR) {
            if (!poll_failed_since)
                poll_failed_since = now;
            if (poll_failure(srv, errno, now - poll_failed_since))
                break;
            continue;
        }
        poll_failed_since = 0;
        if (pfds[0].revents)
            break; /* stop requested */
        for (int i = 1; i < n; i++) {
            if (!pfds[i].revents)
                continue;
            /* Drain the backlog, but look at the stop request between
             * batches: each connection may now be served right here. */
            /* Accepted, served once the backlog is drained (serve_held). */
            struct session *held[ACCEPT_BATCH];
            size_t nheld = 0;
            for (int k = 0; k < ACCEPT_BATCH; k++) {
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                int fd = accept4(pfds[i].fd, (struct sockaddr *)&ss, &sl,
                                 SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0) {
                    struct session *s = accept_one(srv, fd, &ss, tls_of[i], metrics_of[i]);
                    if (s)
                        held[nheld++] = s;
                    continue;
                }
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    uint64_t t = clock_now_ms();
                    if (t - last_emfile_log >= 5000) {
                        log_errno(LOG_WARN, errno, "accept (backing off; open connections %zu)",
                                  atomic_load(&srv->open_conns));
                        last_emfile_log = t;
                    }
                    backoff_until = t + ACCEPT_BACKOFF_MS;
                    break;
                }
                log_errno(LOG_ERROR, errno, "accept");
                break;
            }
            serve_held(held, nheld);
        }
    }
    return NULL;
}
