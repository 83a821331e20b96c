/*
 * access: request accounting (see access.h). The 1-in-N choice is a relaxed
 * atomic sequence in struct access_log, so workers never contend on a lock
 * for it, and N = 1 logs every request exactly once.
 */
#include "access.h"

#include <stdatomic.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"

static const char *method_name(int method)
{
    switch (method) {
    case HTTP_METHOD_GET: return "GET";
    case HTTP_METHOD_POST: return "POST";
    case HTTP_METHOD_OPTIONS: return "OPTIONS";
    case HTTP_METHOD_HEAD: return "HEAD";
    default: return NULL;
    }
}

/* The peer_id the request names, or 0 (absent, repeated or not an id). */
static uint64_t query_peer_id(const char *q, size_t n)
{
    const char *v;
    size_t vlen;
    uint64_t id;
    if (!q || proto_query_get(q, n, "peer_id", &v, &vlen) != 1 || proto_parse_id(v, vlen, &id) < 0)
        return 0;
    return id;
}

void access_init(struct access_log *al, struct metrics *m, uint64_t every)
{
    al->metrics = m;
    al->every = every;
    atomic_init(&al->seq, 0);
}

void access_record(struct access_log *al, const struct access_entry *e)
{
    metrics_count_request(al->metrics,
                          metrics_path_of(e->method == HTTP_METHOD_OPTIONS, e->path, e->path_len),
                          e->status);
    uint64_t every = al->every;
    if (every == 0)
        return;
    uint64_t seq = atomic_fetch_add_explicit(&al->seq, 1, memory_order_relaxed);
    if (seq % every != 0)
        return;
    uint64_t now = clock_now_us();
    /* The query is left out on purpose: with --secure-ids it may carry a
     * member's secret token; the id it names is logged as its own field. */
    struct log_fields f = {
        .peer_id = e->peer_id ? e->peer_id : query_peer_id(e->query, e->query_len),
        .remote = e->remote,
        .method = method_name(e->method),
        .path = e->path,
        .path_len = e->path ? e->path_len : 0,
        .status = e->status,
        .bytes = e->bytes,
        .duration_us = e->started_us && now > e->started_us ? now - e->started_us : 0,
    };
    log_event(LOG_INFO, "access", &f, "%s", "");
}
