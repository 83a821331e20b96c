/*
 * metrics: the server's counters and their Prometheus text exposition
 * (format 0.0.4), in two halves.
 *
 *  - struct metrics: what only grows (request counts by path and status,
 *    relays, refusals, the relay-latency histogram). Any thread bumps it
 *    with relaxed atomics: a scrape needs each number to be exact on its
 *    own, not consistent with the others, and relaxed increments cost no
 *    fence on the request path. It lives in struct server.
 *  - struct metrics_snapshot + metrics_format(): plain integers in, text
 *    out. The server fills a snapshot (these counters, the registry's
 *    gauges copied under its lock, its own atomics) and formats it after
 *    every lock is released. The formatter is pure (no clock, no global, no
 *    lock), so a unit test drives it with a known snapshot.
 */
#ifndef PCSIG_METRICS_H
#define PCSIG_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The path label: a fixed set, so no client can grow the number of series. */
enum metrics_path {
    MET_PATH_SIGN_IN,
    MET_PATH_SIGN_OUT,
    MET_PATH_WAIT,
    MET_PATH_MESSAGE,
    MET_PATH_OPTIONS, /* any OPTIONS request, whatever its path */
    MET_PATH_HEALTH,
    MET_PATH_METRICS,
    MET_PATH_OTHER,   /* everything else, and requests that did not parse */
    MET_PATH_COUNT,
};

/* The status label: the statuses the server answers with; anything else
 * is counted under "other". */
#define MET_STATUS_CODES 200, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 501, 503
#define MET_STATUS_COUNT 15 /* the codes above and "other" */

/* Why a connection or request was turned away before it was served. */
enum metrics_refusal {
    MET_REFUSED_MAX_CONNECTIONS, /* 503: --max-connections reached */
    MET_REFUSED_PER_IP,          /* 429 at accept: --max-conns-per-ip */
    MET_REFUSED_RATE_LIMIT,      /* 429 on a request: --rate-limit */
    MET_REFUSED_COUNT,
};

/* Relay latency buckets: upper bounds in microseconds, 100 us to 10 s. */
#define MET_LATENCY_BOUNDS_US                                                  \
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,       \
        500000, 1000000, 2500000, 5000000, 10000000
#define MET_LATENCY_BUCKETS 16 /* the bounds above; one more slot counts the rest */

struct metrics {
    atomic_uint_least64_t requests[MET_PATH_COUNT][MET_STATUS_COUNT];
    atomic_uint_least64_t relayed, relayed_bytes;
    atomic_uint_least64_t connections;
    atomic_uint_least64_t refused[MET_REFUSED_COUNT];
    /* Per bucket, not cumulative (each observation bumps one slot); the
     * formatter accumulates. The last slot holds observations above 10 s. */
    atomic_uint_least64_t latency[MET_LATENCY_BUCKETS + 1];
    atomic_uint_least64_t latency_sum_us;
    /* Connections closed because their client left answers unread while
     * --max-total-output-bytes was exceeded (the slowest first). */
    atomic_uint_least64_t output_closed;
};

/* Zero every counter (before any thread can see m). */
void metrics_init(struct metrics *m);

/* The counting calls: thread-safe, lock-free, never fail. */
void metrics_count_request(struct metrics *m, enum metrics_path path, int status);
/* One message written to its target's /wait: latency_us since acceptance. */
void metrics_observe_relay(struct metrics *m, uint64_t latency_us, uint64_t body_bytes);
void metrics_count_connection(struct metrics *m);
void metrics_count_refused(struct metrics *m, enum metrics_refusal why);
void metrics_count_output_closed(struct metrics *m);

/* The path label of a request: OPTIONS counts as "options" whatever its
 * path; otherwise the exact path (no query) is matched. Pure. */
enum metrics_path metrics_path_of(bool is_options, const char *path, size_t path_len);

struct metrics_snapshot {
    const char *version;        /* build info label (escaped when formatted) */
    uint64_t start_time_unix_s; /* process start on the wall clock */
    uint64_t uptime_ms;
    bool draining;
    /* the process_* family (procstat.h); left out when has_process is false */
    bool has_process;
    uint64_t process_resident_bytes, process_virtual_bytes, process_cpu_us;
    uint64_t process_open_fds, process_max_fds;
    /* gauges */
    uint64_t members, parked_waits, open_connections;
    uint64_t queued_messages, queued_bytes, worker_queue_depth;
    uint64_t notifications_logged;
    uint64_t output_held_bytes; /* answer bytes not yet taken by their clients */
    /* counters */
    uint64_t requests[MET_PATH_COUNT][MET_STATUS_COUNT];
    uint64_t messages_accepted, messages_relayed, relayed_bytes;
    uint64_t messages_refused, messages_dropped;
    uint64_t member_timeouts, wait_timeouts;
    uint64_t tls_full, tls_resumed, tls_failed;
    uint64_t connections;
    uint64_t output_closed;
    uint64_t refused[MET_REFUSED_COUNT];
    uint64_t latency[MET_LATENCY_BUCKETS + 1]; /* per bucket, as in struct metrics */
    uint64_t latency_sum_us;
};

/* Copy m's counters into the counter fields of out (other fields untouched).
 * Thread-safe; each value is read once, relaxed. */
void metrics_read(struct metrics *m, struct metrics_snapshot *out);

/*
 * Append the exposition of s to out: for every metric a # HELP and a
 * # TYPE line, then its samples; request counts only for the (path, status)
 * pairs seen, every other labelled family in full. Returns 0, or the buf
 * error with out as it was. Pure; thread-safe on distinct buffers.
 */
int metrics_format(buf_t *out, const struct metrics_snapshot *s);

#endif
