/*
 * router: one complete request to its outcome, following protocol.md
 * Part A (and Part B where A is silent). A function of the request, its
 * body, the registry (or the cluster) and the configuration: it appends
 * the answer to the caller's output buffer and says in a route_result
 * what else must happen (park a /wait, stop the server, close after the
 * answer). It writes no session or server field, and calls neither module:
 * session.c, its only caller, applies the result. Statuses come from
 * response.h's outcome table (outcome_answer) or from the handler's own
 * 200 answers.
 */
#ifndef PCSIG_ROUTER_H
#define PCSIG_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "ratelimit.h"
#include "registry.h"

struct cluster;
struct web;

/* What the router may read (and the stores it may change). Filled by the
 * session for each request; everything but the counters is the server's
 * fixed configuration. */
struct route_env {
    const struct server_config *cfg;
    registry_t *reg;
    struct cluster *cluster;  /* --cluster; NULL: the registry is the store */
    const struct web *web;    /* NULL: --no-web */
    ratelimit_t *rl;
    struct metrics *metrics;  /* refusals are counted here */
    char *const *auth_tokens; /* --auth-token */
    size_t nauth_tokens;
    bool draining;            /* a stop has begun: answers close */
    size_t open_conns;        /* for /health */
    uint64_t started_ms;      /* for /health */
    size_t out_held;          /* answer bytes held now (--max-total-output-bytes) */
    /* A scrape's numbers (server_metrics_snapshot), taken only for /metrics. */
    void (*snapshot)(void *ctx, struct metrics_snapshot *out);
    void *snapshot_ctx;
};

/* The connection's side of a request. */
struct route_request {
    const http_request_t *req;
    const char *body;       /* req->content_length bytes */
    const char *peer;       /* "addr:port", for the log */
    const rl_key_t *rl_key; /* per-address request rate */
    bool metrics_only;      /* accepted on the --metrics-bind listener */
};

enum route_kind {
    ROUTE_ANSWER, /* the answer is in out */
    ROUTE_WAIT,   /* a valid /wait: the caller parks it (nothing in out) */
    ROUTE_QUIT,   /* GET /quit allowed: answered in out; the caller stops the server */
};

struct route_result {
    enum route_kind kind;
    int status;           /* of the answer appended; 0: none could be built */
    bool close;           /* close the connection once the answer is written */
    bool linger;          /* ... after draining what the client still sends */
    bool make_room;       /* a big answer found no room under the output cap */
    /* ROUTE_WAIT: */
    uint64_t wait_member;
    bool wait_keep_alive;
    bool wait_batch;      /* X-Pcsig-Batch: 1 */
};

/* Route one request; any answer is appended to out. Thread-safe. */
void router_route(const struct route_env *env, const struct route_request *rq, buf_t *out,
                  struct route_result *res);

#endif
