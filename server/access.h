/*
 * access: what happens once for every request the server answers. It is
 * counted in the metrics (path label x status), and with --access-log N
 * one request in N is logged as an "access" event. Called by the worker
 * that queued the answer (a parked /wait: when it is answered).
 */
#ifndef PCSIG_ACCESS_H
#define PCSIG_ACCESS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;

/* What access_record needs of the server, and nothing more: where requests
 * are counted, N of --access-log N, and the 1-in-N sequence (a relaxed
 * atomic, so workers never contend on a lock for it). */
struct access_log {
    struct metrics *metrics; /* not owned */
    uint64_t every;          /* 0: count only, log nothing */
    atomic_uint_least64_t seq;
};

struct access_entry {
    const char *remote;   /* the client's address (trusted text) */
    int method;           /* enum http_method, 0: the request did not parse */
    const char *path;     /* untrusted bytes, no query; NULL: unknown */
    size_t path_len;
    const char *query;    /* untrusted; searched for peer_id= only when logged */
    size_t query_len;
    uint64_t peer_id;     /* the member, when already known (0: see query) */
    int status;
    uint64_t bytes;       /* bytes of the answer, head and body */
    uint64_t started_us;  /* clock_now_us() at the request's first byte, 0: now */
};

/* Count in m; log one request in every (0: none). */
void access_init(struct access_log *al, struct metrics *m, uint64_t every);

/* Count the answered request and maybe log it. Thread-safe, never fails;
 * reads nothing of e after it returns. */
void access_record(struct access_log *al, const struct access_entry *e);

#endif
