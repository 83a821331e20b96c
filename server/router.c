/*
 * router: paths to handlers, following protocol.md Part A (and Part B where
 * A is silent). Handlers validate their parameters strictly; every refusal
 * and registry error is an outcome whose answer response.c's table decides.
 * Each handler appends its answer to out and records it in the result.
 */
#include "router.h"
#include "strlit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "proto.h"
#include "response.h"
#include "web.h"

static const char quit_body[] = "<html><body>Quitting...</body></html>";

/* A scrape's body: ~8 KiB with every path and status seen; the cap only
 * stops a runaway, never a real exposition. */
#define METRICS_BODY_MAX (1u << 20)
#define METRICS_BODY_TYPICAL 8192
#define HEALTH_BODY_MAX 256

/* One handler's context: the inputs and where its answer goes. */
struct route {
    const struct route_env *env;
    const struct route_request *rq;
    const http_request_t *req;
    buf_t *out;
    struct route_result *res;
    bool ka;
};

/* Append r; the result takes its status when it was appended. */
static int reply(struct route *rt, const struct resp *r)
{
    int rc = resp_append(rt->out, r);
    if (rc == 0)
        rt->res->status = r->status;
    return rc;
}

/* Append outcome o's answer (outcome_answer decides it). */
static int reply_outcome(struct route *rt, enum outcome o, bool ka)
{
    const struct answer *a = outcome_answer(o);
    int rc = resp_append_outcome(rt->out, o, ka, 0);
    if (rc == 0)
        rt->res->status = a->status;
    if (a->close || !ka || rc < 0)
        rt->res->close = true;
    return rc;
}

static int answer(struct route *rt, int status, const char *reason, const char *ctype,
                  const void *body, size_t body_len, uint64_t pragma, bool ka)
{
    struct resp r = {
        .status = status,
        .reason = reason,
        .has_ctype = ctype != NULL,
        .ctype = ctype,
        .ctype_len = ctype ? strlen(ctype) : 0,
        .body = body,
        .body_len = body_len,
        .pragma = pragma,
        .keep_alive = ka,
    };
    return reply(rt, &r);
}

/* peer_id / to: true and *id when valid; otherwise the 400 is the answer. */
static bool want_id(struct route *rt, const char *key, uint64_t *id)
{
    const http_request_t *req = rt->req;
    const char *v;
    size_t vlen;
    bool to = strcmp(key, "to") == 0;
    int rc = proto_query_get(req->query.ptr, req->query.len, key, &v, &vlen);
    enum outcome o;
    if (rc == 0)
        o = to ? OUTCOME_MISSING_TO : OUTCOME_MISSING_PEER_ID;
    else if (rc < 0)
        o = to ? OUTCOME_TWICE_TO : OUTCOME_TWICE_PEER_ID;
    else if (proto_parse_id(v, vlen, id) < 0)
        o = to ? OUTCOME_INVALID_TO : OUTCOME_INVALID_PEER_ID;
    else
        return true;
    reply_outcome(rt, o, rt->ka);
    return false;
}

/* --auth-token: "Authorization: Bearer <token>" with one of the tokens. */
static bool sign_in_authorized(const struct route_env *env, const http_request_t *req)
{
    if (env->nauth_tokens == 0)
        return true;
    const http_header_t *h = http_find_header(req->headers, req->num_headers, "Authorization");
    const size_t bearer = STRLIT_LEN("Bearer ");
    if (!h || h->value.len <= bearer || strncasecmp(h->value.ptr, STRLIT("Bearer ")) != 0)
        return false;
    const char *tok = h->value.ptr + bearer;
    size_t len = h->value.len - bearer;
    bool ok = false;
    /* Every token is compared, each in time that depends only on the
     * presented length: no token's length or bytes leak, nor which matched. */
    for (size_t i = 0; i < env->nauth_tokens; i++)
        ok |= proto_ct_equal_secret(env->auth_tokens[i], tok, len);
    return ok;
}

/* --secure-ids: does the request carry member id's token? Unknown members
 * pass here and are refused by their handler as before. */
static bool token_ok(struct route *rt, uint64_t id)
{
    const struct route_env *env = rt->env;
    const http_request_t *req = rt->req;
    if (!env->cfg->secure_ids)
        return true;
    const char *text = NULL;
    size_t text_len = 0;
    const http_header_t *h = http_find_header(req->headers, req->num_headers, "X-Pcsig-Token");
    if (h) {
        text = h->value.ptr;
        text_len = h->value.len;
    } else if (proto_query_get(req->query.ptr, req->query.len, "token", &text, &text_len) != 1) {
        text = NULL;
    }
    uint8_t token[REG_TOKEN_BYTES];
    size_t len = text && proto_hex_decode(text, text_len, token, sizeof token) == 0 ? sizeof token : 0;
    int rc = env->cluster ? cluster_check_token(env->cluster, id, token, len)
                          : reg_check_token(env->reg, id, token, len);
    if (rc != -EIO && rc != -EACCES)
        return true;
    reply_outcome(rt, outcome_of_error(rc), rt->ka);
    return false;
}

/*
 * Make head + body the next answer, emptying body. At dispatch out is
 * empty (pump writes every answer out before it parses the next request),
 * so body's storage becomes out's with the head moved in front: no second
 * copy of a big body. Otherwise both are appended. 0 or the buf error with
 * out unchanged.
 */
static int attach_answer(buf_t *out, const buf_t *head, buf_t *body)
{
    if (out->len != 0) {
        size_t mark = out->len;
        int rc = buf_append(out, head->data, head->len);
        if (rc == 0)
            rc = buf_append(out, body->data, body->len);
        if (rc < 0)
            out->len = mark;
        return rc;
    }
    size_t max = out->max;
    if (body->len > max - head->len)
        return -E2BIG;
    body->max = max;
    int rc = buf_reserve(body, head->len);
    if (rc < 0)
        return rc;
    memmove(body->data + head->len, body->data, body->len);
    memcpy(body->data, head->data, head->len);
    body->len += head->len;
    buf_free(out);
    *out = *body;
    buf_init(body, 0);
    return 0;
}

static void handle_sign_in(struct route *rt)
{
    const struct route_env *env = rt->env;
    const http_request_t *req = rt->req;
    bool ka = rt->ka;
    if (!sign_in_authorized(env, req)) {
        reply_outcome(rt, OUTCOME_UNAUTHORIZED, ka);
        return;
    }
    /*
     * The list is formatted once, under the registry lock, into a buffer
     * that then becomes the session's output with the head moved in front
     * of it: one copy of the list per answer, never two. It is bounded by
     * --max-output-bytes, and by what --max-total-output-bytes leaves for
     * it: a list that does not fit is a 503 with the reason (the registry
     * refuses it before adding the member), never a silent close.
     * Why a copy per answer and not one snapshot shared by every sign-in:
     * each sign-in changes the membership (its own line), so consecutive
     * answers are never the same bytes; the caps, not sharing, are what
     * bound the memory of clients that do not read their answers.
     */
    size_t per_conn = env->cfg->max_output_bytes;
    size_t cap = env->cfg->max_total_output_bytes;
    size_t held = env->out_held;
    size_t room = held < cap ? cap - held : 0;
    bool by_room = room < per_conn;
    buf_t list;
    buf_init(&list, by_room ? room : per_conn);
    uint64_t id = 0;
    uint8_t token[REG_TOKEN_BYTES];
    int rc = env->cluster ? cluster_sign_in(env->cluster, req->query.ptr, req->query.len, &list,
                                            &id, token)
                          : reg_sign_in(env->reg, req->query.ptr, req->query.len, clock_now_ms(),
                                        &list, &id);
    if (rc == 0) {
        log_event(LOG_DEBUG, "sign_in",
                  &(struct log_fields){.peer_id = id, .remote = rt->rq->peer}, "signed in");
        char extra[64] = "";
        if (env->cfg->secure_ids &&
            (env->cluster || reg_member_token(env->reg, id, token) == 0)) {
            char hex[2 * REG_TOKEN_BYTES + 1];
            proto_hex_encode(token, sizeof token, hex);
            snprintf(extra, sizeof extra, "X-Pcsig-Token: %s\r\n", hex);
            explicit_bzero(token, sizeof token);
        }
        struct resp r = {
            .status = 200, .reason = "Added", .has_ctype = true, .ctype = "text/plain",
            .ctype_len = 10, .body_len = list.len, .pragma = id, .head_only = true,
            .keep_alive = ka, .extra = extra[0] ? extra : NULL,
            .cors_token = env->cfg->secure_ids,
        };
        buf_t head;
        buf_init(&head, 4096);
        rc = resp_append(&head, &r);
        if (rc == 0)
            rc = attach_answer(rt->out, &head, &list);
        if (rc == 0)
            rt->res->status = r.status;
        explicit_bzero(extra, sizeof extra);
        if (head.data)
            explicit_bzero(head.data, head.len);
        buf_free(&head);
        if (rc < 0) {
            /* The member must not stay without having learnt its id. */
            if (env->cluster)
                cluster_sign_out(env->cluster, id);
            else
                reg_sign_out(env->reg, id, clock_now_ms());
            log_errno(LOG_ERROR, -rc, "sign-in answer of %zu bytes", list.len);
            reply_outcome(rt, OUTCOME_NO_MEMORY, false);
        }
    } else if (rc == -E2BIG && by_room) {
        rt->res->make_room = true;
        log_event(LOG_WARN, "sign_in_refused", &(struct log_fields){.remote = rt->rq->peer},
                  "member list over the %zu bytes left of --max-total-output-bytes", room);
        reply_outcome(rt, OUTCOME_OUTPUT_HELD, ka);
    } else {
        if (rc == -E2BIG)
            log_event(LOG_WARN, "sign_in_refused", &(struct log_fields){.remote = rt->rq->peer},
                      "member list over --max-output-bytes %zu", per_conn);
        else if (rc != -EUSERS && rc != -ESHUTDOWN && rc != -EIO)
            log_error("sign-in failed: out of memory");
        reply_outcome(rt, outcome_of_error(rc), ka);
    }
    buf_free(&list);
}

static void handle_message(struct route *rt)
{
    const struct route_env *env = rt->env;
    const http_request_t *req = rt->req;
    bool ka = rt->ka;
    uint64_t from, to;
    if (!want_id(rt, "peer_id", &from) || !want_id(rt, "to", &to) || !token_ok(rt, from))
        return;
    uint64_t now = clock_now_ms();
    size_t len = (size_t)req->content_length;
    if (from == to) {
        /* The original echoes a message to oneself on the same connection. */
        int trc = env->cluster ? cluster_touch(env->cluster, from) : reg_touch(env->reg, from, now);
        if (trc < 0) {
            reply_outcome(rt, trc == -EIO ? OUTCOME_STORE_DOWN : OUTCOME_GONE, ka);
            return;
        }
        struct resp r = {
            .status = 200, .reason = "OK",
            .has_ctype = req->has_content_type,
            .ctype = req->content_type.ptr, .ctype_len = req->content_type.len,
            .body = rt->rq->body, .body_len = len, .pragma = from, .keep_alive = ka,
        };
        reply(rt, &r);
        return;
    }
    int rc = env->cluster ? cluster_send(env->cluster, from, to, req->content_type.ptr,
                                         req->content_type.len, req->has_content_type,
                                         rt->rq->body, len)
                          : reg_send(env->reg, from, to, req->content_type.ptr,
                                     req->content_type.len, req->has_content_type, rt->rq->body,
                                     len, now);
    if (rc == 0) {
        answer(rt, 200, "OK", "text/plain", NULL, 0, 0, ka);
        return;
    }
    enum outcome o = outcome_of_error(rc);
    if (o == OUTCOME_NO_MEMORY)
        log_event(LOG_ERROR, "message_failed", &(struct log_fields){.peer_id = from, .to_id = to},
                  "out of memory");
    reply_outcome(rt, o, ka);
}

/* GET /health: one JSON line; 503 "draining" once a stop has begun, so a
 * load balancer takes us out of rotation while answers still flush. */
static void handle_health(struct route *rt)
{
    const struct route_env *env = rt->env;
    bool draining = env->draining;
    /* --cluster: without Redis this instance can serve nobody. */
    bool degraded = !draining && env->cluster && !cluster_is_up(env->cluster);
    reg_stats_t rs;
    reg_get_stats(env->reg, &rs);
    buf_t body;
    buf_init(&body, HEALTH_BODY_MAX);
    int rc = buf_printf(&body, "{\"status\":\"%s\",\"members\":%zu,\"connections\":%zu,"
                               "\"uptime_s\":%llu}\n",
                        draining ? "draining" : degraded ? "degraded" : "ok", rs.members,
                        env->open_conns,
                        (unsigned long long)((clock_now_ms() - env->started_ms) / 1000));
    if (rc == 0)
        answer(rt, draining || degraded ? 503 : 200,
               draining || degraded ? "Service Unavailable" : "OK",
               "application/json", body.data, body.len, 0, rt->ka);
    else
        reply_outcome(rt, OUTCOME_NO_MEMORY, false);
    buf_free(&body);
}

/* GET /metrics: the snapshot is taken first (the registry lock only while
 * its numbers are copied), then formatted with no lock held. */
static void handle_metrics(struct route *rt)
{
    const struct route_env *env = rt->env;
    struct metrics_snapshot snap;
    env->snapshot(env->snapshot_ctx, &snap);
    buf_t body;
    buf_init(&body, METRICS_BODY_MAX);
    /* One allocation for a typical body rather than a string of regrowths. */
    int rc = buf_reserve(&body, METRICS_BODY_TYPICAL);
    if (rc == 0)
        rc = metrics_format(&body, &snap);
    if (rc == 0 && env->cluster)
        rc = cluster_metrics_append(env->cluster, &body);
    if (rc == 0) {
        static const char ctype[] = "text/plain; version=0.0.4";
        answer(rt, 200, "OK", ctype, body.data, body.len, 0, rt->ka);
    } else {
        log_errno(LOG_ERROR, -rc, "formatting /metrics");
        reply_outcome(rt, OUTCOME_METRICS_FAILED, false);
    }
    buf_free(&body);
}

/* /health and /metrics, on whichever listener serves them. */
static void handle_observability(struct route *rt, bool health)
{
    if (rt->req->method != HTTP_METHOD_GET)
        reply_outcome(rt, OUTCOME_USE_GET, rt->ka);
    else if (health)
        handle_health(rt);
    else
        handle_metrics(rt);
}

/* The page's paths (web.c): true when answered (or when its answer could
 * not be built: status 0, which the session answers with a 500). */
static bool web(struct route *rt)
{
    if (!rt->env->web)
        return false;
    int status = web_answer(rt->env->web, rt->req, rt->out, rt->ka);
    if (status == 0)
        return false;
    if (status > 0)
        rt->res->status = status;
    if (status == outcome_answer(OUTCOME_NO_MEMORY)->status)
        rt->res->close = true; /* its answer says Connection: close */
    return true;
}

static void route(struct route *rt)
{
    const struct route_env *env = rt->env;
    const http_request_t *req = rt->req;
    bool ka = rt->ka;
    /* The metrics listener is exempt, as at accept (see accept_one). */
    if (!rt->rq->metrics_only && !rl_request(env->rl, rt->rq->rl_key, clock_now_ms())) {
        reply_outcome(rt, OUTCOME_RATE_LIMITED, false);
        metrics_count_refused(env->metrics, MET_REFUSED_RATE_LIMIT);
        return;
    }
    http_slice_t path = req->path;
    bool is_health = http_slice_eq(path, "/health");
    bool is_metrics = http_slice_eq(path, "/metrics");

    /* HEAD is a GET without the body for the page's paths only. Elsewhere it
     * gets the head of an unknown method's answer (405, Allow, closed; a
     * HEAD answer carries no body): a HEAD must never sign in, wait or quit. */
    if (req->method == HTTP_METHOD_HEAD) {
        bool protocol = metrics_path_of(false, path.ptr, path.len) != MET_PATH_OTHER ||
                        http_slice_eq(path, "/quit");
        if (!protocol && !rt->rq->metrics_only && web(rt))
            return;
        reply_outcome(rt, OUTCOME_HEAD_REFUSED, false);
        rt->res->linger = true;
        return;
    }

    /* The metrics listener serves nothing else: no signaling, no CORS
     * preflight, no /quit, whatever the method. */
    if (rt->rq->metrics_only) {
        if (is_health || is_metrics)
            handle_observability(rt, is_health);
        else
            reply_outcome(rt, OUTCOME_METRICS_ONLY, ka);
        return;
    }

    if (http_slice_eq(path, "/quit") && !req->has_query) {
        if (!env->cfg->allow_quit) {
            reply_outcome(rt, OUTCOME_QUIT_DISABLED, ka);
            return;
        }
        log_event(LOG_INFO, "quit", &(struct log_fields){.remote = rt->rq->peer}, "quit requested");
        rt->res->close = true;
        answer(rt, 200, "OK", "text/html", quit_body, sizeof quit_body - 1, 0, false);
        rt->res->kind = ROUTE_QUIT;
        return;
    }
    if (req->method == HTTP_METHOD_OPTIONS) {
        /* --auth-token: a page of another origin must be let send
         * Authorization (its preflight asks); a second Allow-Headers line,
         * which browsers join to the first, leaves the stock block as is. */
        struct resp r = {.status = 200, .reason = "OK", .keep_alive = ka,
                         .cors_token = env->cfg->secure_ids,
                         .extra = env->nauth_tokens ? "Access-Control-Allow-Headers: Authorization\r\n"
                                                    : NULL};
        reply(rt, &r);
        return;
    }
    if (http_slice_eq(path, "/sign_in")) {
        handle_sign_in(rt);
        return;
    }
    if (http_slice_eq(path, "/message")) {
        handle_message(rt);
        return;
    }
    if (http_slice_eq(path, "/wait")) {
        uint64_t id;
        if (!want_id(rt, "peer_id", &id) || !token_ok(rt, id))
            return;
        const http_header_t *b = http_find_header(req->headers, req->num_headers, "X-Pcsig-Batch");
        rt->res->kind = ROUTE_WAIT;
        rt->res->wait_member = id;
        rt->res->wait_keep_alive = ka;
        rt->res->wait_batch = b && http_slice_eq(b->value, "1");
        return;
    }
    if (http_slice_eq(path, "/sign_out")) {
        uint64_t id;
        if (!want_id(rt, "peer_id", &id) || !token_ok(rt, id))
            return;
        int rc = env->cluster ? cluster_sign_out(env->cluster, id)
                              : reg_sign_out(env->reg, id, clock_now_ms());
        if (rc == -EIO)
            reply_outcome(rt, OUTCOME_STORE_DOWN, ka);
        else if (rc < 0)
            reply_outcome(rt, OUTCOME_SORRY, ka);
        else
            answer(rt, 200, "OK", "text/plain", NULL, 0, 0, ka);
        return;
    }
    /* With --metrics-bind they are served on that listener only. */
    if ((is_health || is_metrics) && !env->cfg->metrics_bind) {
        handle_observability(rt, is_health);
        return;
    }
    /* Last: the page's paths can never shadow the protocol's. */
    if (web(rt))
        return;
    reply_outcome(rt, OUTCOME_NO_SUCH_PATH, ka);
}

void router_route(const struct route_env *env, const struct route_request *rq, buf_t *out,
                  struct route_result *res)
{
    *res = (struct route_result){.kind = ROUTE_ANSWER};
    struct route rt = {
        .env = env, .rq = rq, .req = rq->req, .out = out, .res = res,
        .ka = rq->req->keep_alive && !env->draining,
    };
    if (!rt.ka)
        res->close = true;
    route(&rt);
}
