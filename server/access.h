/*
 * access: what happens once for every request the server answers. It is
 * counted in the metrics (path label x status), and with --access-log N
 * one request in N is logged as an "access" event. Called by the worker
 * that queued the answer (a parked /wait: when it is answered).
 */
#ifndef PCSIG_ACCESS_H
#define PCSIG_ACCESS_H

#include <stddef.h>
#include <stdint.h>

struct server;

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

/* Count the answered request and maybe log it. Thread-safe, never fails;
 * reads nothing of e after it returns. */
void access_record(struct server *srv, const struct access_entry *e);

#endif
