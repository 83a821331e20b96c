/*
 * router: paths to handlers, following protocol.md Part A (and Part B where
 * A is silent). Handlers validate their parameters strictly and map every
 * registry error to one status here.
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
#include "metrics.h"
#include "proto.h"
#include "response.h"
#include "server.h"
#include "session.h"
#include "web.h"

static const char sorry_body[] = "<html><body>Sorry, not yet implemented</body></html>";
static const char gone_body[] = "Peer most likely gone.";
static const char quit_body[] = "<html><body>Quitting...</body></html>";

/* A scrape's body: ~8 KiB with every path and status seen; the cap only
 * stops a runaway, never a real exposition. */
#define METRICS_BODY_MAX (1u << 20)
#define METRICS_BODY_TYPICAL 8192
#define HEALTH_BODY_MAX 256

static int answer(struct session *s, int status, const char *reason, const char *ctype,
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
    return resp_append(&s->out, &r);
}

int router_answer_sorry(struct session *s, bool ka)
{
    return answer(s, 500, "Sorry", "text/html", sorry_body, sizeof sorry_body - 1, 0, ka);
}

static int answer_gone(struct session *s, bool ka)
{
    return answer(s, 500, "Error", "text/plain", gone_body, sizeof gone_body - 1, 0, ka);
}

/* peer_id / to: 1 and *id when valid; otherwise a 400 is written and 0 returned. */
static int want_id(struct session *s, const http_request_t *req, const char *key,
                   uint64_t *id, bool ka)
{
    const char *v;
    size_t vlen;
    int rc = proto_query_get(req->query.ptr, req->query.len, key, &v, &vlen);
    const char *why = NULL;
    if (rc == 0)
        why = strcmp(key, "to") == 0 ? "missing parameter 'to'" : "missing parameter 'peer_id'";
    else if (rc < 0)
        why = strcmp(key, "to") == 0 ? "parameter 'to' given twice" : "parameter 'peer_id' given twice";
    else if (proto_parse_id(v, vlen, id) < 0)
        why = strcmp(key, "to") == 0 ? "parameter 'to' is not a valid id"
                                     : "parameter 'peer_id' is not a valid id";
    if (!why)
        return 1;
    resp_append_error(&s->out, 400, why, ka);
    return 0;
}

/* --auth-token: "Authorization: Bearer <token>" with one of the tokens. */
static bool sign_in_authorized(const struct server *srv, const http_request_t *req)
{
    if (srv->nauth_tokens == 0)
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
    for (size_t i = 0; i < srv->nauth_tokens; i++)
        ok |= proto_ct_equal_secret(srv->auth_tokens[i], tok, len);
    return ok;
}

/* --cluster: Redis is unreachable; the request is refused, never lost. */
static void answer_cluster_down(struct session *s, bool ka)
{
    resp_append_error(&s->out, 503, "the cluster's store (Redis) is unreachable; retry later", ka);
}

/* --secure-ids: does the request carry member id's token? Unknown members
 * pass here and are refused by their handler as before. */
static bool token_ok(struct session *s, const http_request_t *req, uint64_t id, bool ka)
{
    struct server *srv = s->srv;
    if (!srv->cfg.secure_ids)
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
    int rc = srv->cluster ? cluster_check_token(srv->cluster, id, token, len)
                          : reg_check_token(srv->reg, id, token, len);
    if (rc == -EIO) {
        answer_cluster_down(s, ka);
        return false;
    }
    if (rc != -EACCES)
        return true;
    resp_append_error(&s->out, 403, "missing or wrong token for this peer_id (--secure-ids)", ka);
    return false;
}

/*
 * Make head + body the session's next answer, emptying body. At dispatch out
 * is empty (pump writes every answer out before it parses the next
 * request), so body's storage becomes out's with the head moved in front:
 * no second copy of a big body. Otherwise both are appended. 0 or the buf
 * error with out unchanged.
 */
static int attach_answer(struct session *s, const buf_t *head, buf_t *body)
{
    if (s->out.len != 0) {
        size_t mark = s->out.len;
        int rc = buf_append(&s->out, head->data, head->len);
        if (rc == 0)
            rc = buf_append(&s->out, body->data, body->len);
        if (rc < 0)
            s->out.len = mark;
        return rc;
    }
    size_t max = s->out.max;
    if (body->len > max - head->len)
        return -E2BIG;
    body->max = max;
    int rc = buf_reserve(body, head->len);
    if (rc < 0)
        return rc;
    memmove(body->data + head->len, body->data, body->len);
    memcpy(body->data, head->data, head->len);
    body->len += head->len;
    buf_free(&s->out);
    s->out = *body;
    buf_init(body, 0);
    return 0;
}

static void handle_sign_in(struct session *s, const http_request_t *req, bool ka)
{
    struct server *srv = s->srv;
    if (!sign_in_authorized(srv, req)) {
        static const char why[] = "sign-in needs Authorization: Bearer <token>\n";
        struct resp r = {
            .status = 401, .reason = "Unauthorized", .has_ctype = true,
            .ctype = "text/plain", .ctype_len = 10, .body = why, .body_len = sizeof why - 1,
            .keep_alive = ka, .extra = "WWW-Authenticate: Bearer realm=\"pcsig\"\r\n",
        };
        resp_append(&s->out, &r);
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
    size_t per_conn = srv->cfg.max_output_bytes;
    size_t cap = srv->cfg.max_total_output_bytes;
    size_t held = atomic_load(&srv->out_held);
    size_t room = held < cap ? cap - held : 0;
    bool by_room = room < per_conn;
    buf_t list;
    buf_init(&list, by_room ? room : per_conn);
    uint64_t id = 0;
    uint8_t token[REG_TOKEN_BYTES];
    int rc = srv->cluster ? cluster_sign_in(srv->cluster, req->query.ptr, req->query.len, &list,
                                            &id, token)
                          : reg_sign_in(srv->reg, req->query.ptr, req->query.len, clock_now_ms(),
                                        &list, &id);
    if (rc == 0) {
        log_event(LOG_DEBUG, "sign_in", &(struct log_fields){.peer_id = id, .remote = s->peer},
                  "signed in");
        char extra[64] = "";
        if (srv->cfg.secure_ids && (srv->cluster || reg_member_token(srv->reg, id, token) == 0)) {
            char hex[2 * REG_TOKEN_BYTES + 1];
            proto_hex_encode(token, sizeof token, hex);
            snprintf(extra, sizeof extra, "X-Pcsig-Token: %s\r\n", hex);
            explicit_bzero(token, sizeof token);
        }
        struct resp r = {
            .status = 200, .reason = "Added", .has_ctype = true, .ctype = "text/plain",
            .ctype_len = 10, .body_len = list.len, .pragma = id, .head_only = true,
            .keep_alive = ka, .extra = extra[0] ? extra : NULL, .cors_token = srv->cfg.secure_ids,
        };
        buf_t head;
        buf_init(&head, 4096);
        rc = resp_append(&head, &r);
        if (rc == 0)
            rc = attach_answer(s, &head, &list);
        explicit_bzero(extra, sizeof extra);
        if (head.data)
            explicit_bzero(head.data, head.len);
        buf_free(&head);
        if (rc < 0) {
            /* The member must not stay without having learnt its id. */
            if (srv->cluster)
                cluster_sign_out(srv->cluster, id);
            else
                reg_sign_out(srv->reg, id, clock_now_ms());
            log_errno(LOG_ERROR, -rc, "sign-in answer of %zu bytes", list.len);
            resp_append_error(&s->out, 503, "out of memory", false);
        }
        session_out_sync(s);
    } else if (rc == -E2BIG && by_room) {
        server_output_pressure(srv, true);
        log_event(LOG_WARN, "sign_in_refused", &(struct log_fields){.remote = s->peer},
                  "member list over the %zu bytes left of --max-total-output-bytes", room);
        resp_append_error(&s->out, 503,
                          "too much output is held for clients that do not read it; retry later",
                          ka);
    } else if (rc == -E2BIG) {
        log_event(LOG_WARN, "sign_in_refused", &(struct log_fields){.remote = s->peer},
                  "member list over --max-output-bytes %zu", per_conn);
        resp_append_error(&s->out, 503, "the member list is larger than --max-output-bytes", ka);
    } else if (rc == -EUSERS) {
        resp_append_error(&s->out, 503, "member limit reached", ka);
    } else if (rc == -ESHUTDOWN) {
        resp_append_error(&s->out, 503, "server shutting down", false);
    } else if (rc == -EIO) {
        answer_cluster_down(s, ka);
    } else {
        log_error("sign-in failed: out of memory");
        resp_append_error(&s->out, 503, "out of memory", false);
    }
    buf_free(&list);
}

static void handle_message(struct session *s, const http_request_t *req, const char *body,
                           bool ka)
{
    struct server *srv = s->srv;
    uint64_t from, to;
    if (!want_id(s, req, "peer_id", &from, ka) || !want_id(s, req, "to", &to, ka) ||
        !token_ok(s, req, from, ka))
        return;
    uint64_t now = clock_now_ms();
    size_t len = (size_t)req->content_length;
    if (from == to) {
        /* The original echoes a message to oneself on the same connection. */
        int trc = srv->cluster ? cluster_touch(srv->cluster, from) : reg_touch(srv->reg, from, now);
        if (trc == -EIO) {
            answer_cluster_down(s, ka);
            return;
        }
        if (trc < 0) {
            answer_gone(s, ka);
            return;
        }
        struct resp r = {
            .status = 200, .reason = "OK",
            .has_ctype = req->has_content_type,
            .ctype = req->content_type.ptr, .ctype_len = req->content_type.len,
            .body = body, .body_len = len, .pragma = from, .keep_alive = ka,
        };
        resp_append(&s->out, &r);
        return;
    }
    int rc = srv->cluster ? cluster_send(srv->cluster, from, to, req->content_type.ptr,
                                         req->content_type.len, req->has_content_type, body, len)
                          : reg_send(srv->reg, from, to, req->content_type.ptr,
                                     req->content_type.len, req->has_content_type, body, len, now);
    switch (rc) {
    case 0:
        answer(s, 200, "OK", "text/plain", NULL, 0, 0, ka);
        break;
    case -ENOENT:
    case -ESRCH:
        answer_gone(s, ka);
        break;
    case -ENOSPC:
        resp_append_error(&s->out, 503, "the target's queue is full; retry later", ka);
        break;
    case -EIO:
        answer_cluster_down(s, ka);
        break;
    default:
        log_event(LOG_ERROR, "message_failed", &(struct log_fields){.peer_id = from, .to_id = to},
                  "out of memory");
        resp_append_error(&s->out, 503, "out of memory", false);
        break;
    }
}

/* GET /health: one JSON line; 503 "draining" once a stop has begun, so a
 * load balancer takes us out of rotation while answers still flush. */
static void handle_health(struct session *s, bool ka)
{
    struct server *srv = s->srv;
    bool draining = atomic_load(&srv->draining);
    /* --cluster: without Redis this instance can serve nobody. */
    bool degraded = !draining && srv->cluster && !cluster_is_up(srv->cluster);
    reg_stats_t rs;
    reg_get_stats(srv->reg, &rs);
    buf_t body;
    buf_init(&body, HEALTH_BODY_MAX);
    int rc = buf_printf(&body, "{\"status\":\"%s\",\"members\":%zu,\"connections\":%zu,"
                               "\"uptime_s\":%llu}\n",
                        draining ? "draining" : degraded ? "degraded" : "ok", rs.members,
                        atomic_load(&srv->open_conns),
                        (unsigned long long)((clock_now_ms() - srv->started_ms) / 1000));
    if (rc == 0)
        answer(s, draining || degraded ? 503 : 200,
               draining || degraded ? "Service Unavailable" : "OK",
               "application/json", body.data, body.len, 0, ka);
    else
        resp_append_error(&s->out, 503, "out of memory", false);
    buf_free(&body);
}

/* GET /metrics: the snapshot is taken first (the registry lock only while
 * its numbers are copied), then formatted with no lock held. */
static void handle_metrics(struct session *s, bool ka)
{
    struct metrics_snapshot snap;
    server_metrics_snapshot(s->srv, &snap);
    buf_t body;
    buf_init(&body, METRICS_BODY_MAX);
    /* One allocation for a typical body rather than a string of regrowths. */
    int rc = buf_reserve(&body, METRICS_BODY_TYPICAL);
    if (rc == 0)
        rc = metrics_format(&body, &snap);
    if (rc == 0 && s->srv->cluster)
        rc = cluster_metrics_append(s->srv->cluster, &body);
    if (rc == 0) {
        static const char ctype[] = "text/plain; version=0.0.4";
        answer(s, 200, "OK", ctype, body.data, body.len, 0, ka);
    } else {
        log_errno(LOG_ERROR, -rc, "formatting /metrics");
        resp_append_error(&s->out, 503, "could not format the metrics", false);
    }
    buf_free(&body);
}

/* /health and /metrics, on whichever listener serves them. */
static void handle_observability(struct session *s, const http_request_t *req, bool health,
                                 bool ka)
{
    if (req->method != HTTP_METHOD_GET) {
        static const char why[] = "use GET\n";
        struct resp r = {
            .status = 405, .reason = "Method Not Allowed", .has_ctype = true,
            .ctype = "text/plain", .ctype_len = 10, .body = why, .body_len = sizeof why - 1,
            .keep_alive = ka, .extra = "Allow: GET\r\n",
        };
        resp_append(&s->out, &r);
        return;
    }
    if (health)
        handle_health(s, ka);
    else
        handle_metrics(s, ka);
}

enum route_outcome router_dispatch(struct session *s, const http_request_t *req,
                                   const char *body, uint64_t *wait_member)
{
    struct server *srv = s->srv;
    bool ka = req->keep_alive && !atomic_load(&srv->draining);
    if (!ka)
        s->close_after_write = true;
    /* The metrics listener is exempt, as at accept (see accept_one). */
    if (!s->metrics_only && !rl_request(srv->rl, &s->rl_key, clock_now_ms())) {
        struct resp r = {
            .status = 429, .reason = "Too Many Requests", .has_ctype = true,
            .ctype = "text/plain", .ctype_len = 10, .body = "request rate limit reached\n",
            .body_len = 27, .keep_alive = false, .extra = "Retry-After: 1\r\n",
        };
        resp_append(&s->out, &r);
        s->close_after_write = true;
        metrics_count_refused(&srv->metrics, MET_REFUSED_RATE_LIMIT);
        return ROUTE_RESPONDED;
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
        if (!protocol && !s->metrics_only && srv->web && web_answer(srv->web, req, &s->out, ka))
            return ROUTE_RESPONDED;
        static const char why[] = "method not allowed\n";
        struct resp r = {
            .status = 405, .reason = "Method Not Allowed", .has_ctype = true,
            .ctype = "text/plain", .ctype_len = 10, .body = why, .body_len = sizeof why - 1,
            .extra = "Allow: GET, POST, OPTIONS\r\n", .head_only = true,
        };
        resp_append(&s->out, &r);
        s->close_after_write = true;
        s->linger = true;
        return ROUTE_RESPONDED;
    }

    /* The metrics listener serves nothing else: no signaling, no CORS
     * preflight, no /quit, whatever the method. */
    if (s->metrics_only) {
        if (is_health || is_metrics)
            handle_observability(s, req, is_health, ka);
        else
            resp_append_error(&s->out, 404, "only /health and /metrics are served here", ka);
        return ROUTE_RESPONDED;
    }

    if (http_slice_eq(path, "/quit") && !req->has_query) {
        if (!srv->cfg.allow_quit) {
            resp_append_error(&s->out, 403, "/quit is disabled (start the server with --allow-quit)", ka);
            return ROUTE_RESPONDED;
        }
        log_event(LOG_INFO, "quit", &(struct log_fields){.remote = s->peer}, "quit requested");
        s->close_after_write = true;
        answer(s, 200, "OK", "text/html", quit_body, sizeof quit_body - 1, 0, false);
        server_request_quit(srv, "GET /quit", s->peer);
        return ROUTE_RESPONDED;
    }
    if (req->method == HTTP_METHOD_OPTIONS) {
        /* --auth-token: a page of another origin must be let send
         * Authorization (its preflight asks); a second Allow-Headers line,
         * which browsers join to the first, leaves the stock block as is. */
        struct resp r = {.status = 200, .reason = "OK", .keep_alive = ka,
                         .cors_token = srv->cfg.secure_ids,
                         .extra = srv->nauth_tokens ? "Access-Control-Allow-Headers: Authorization\r\n"
                                                    : NULL};
        resp_append(&s->out, &r);
        return ROUTE_RESPONDED;
    }
    if (http_slice_eq(path, "/sign_in")) {
        handle_sign_in(s, req, ka);
        return ROUTE_RESPONDED;
    }
    if (http_slice_eq(path, "/message")) {
        handle_message(s, req, body, ka);
        return ROUTE_RESPONDED;
    }
    if (http_slice_eq(path, "/wait")) {
        if (!want_id(s, req, "peer_id", wait_member, ka) || !token_ok(s, req, *wait_member, ka))
            return ROUTE_RESPONDED;
        s->wait_keep_alive = ka;
        s->cluster_gen = 0; /* --cluster: a new /wait takes a new lease */
        const http_header_t *b = http_find_header(req->headers, req->num_headers, "X-Pcsig-Batch");
        s->wait_batch = b && http_slice_eq(b->value, "1");
        return ROUTE_WAIT;
    }
    if (http_slice_eq(path, "/sign_out")) {
        uint64_t id;
        if (!want_id(s, req, "peer_id", &id, ka) || !token_ok(s, req, id, ka))
            return ROUTE_RESPONDED;
        int rc = srv->cluster ? cluster_sign_out(srv->cluster, id)
                              : reg_sign_out(srv->reg, id, clock_now_ms());
        if (rc == -EIO)
            answer_cluster_down(s, ka);
        else if (rc < 0)
            router_answer_sorry(s, ka);
        else
            answer(s, 200, "OK", "text/plain", NULL, 0, 0, ka);
        return ROUTE_RESPONDED;
    }
    /* With --metrics-bind they are served on that listener only. */
    if ((is_health || is_metrics) && !srv->cfg.metrics_bind) {
        handle_observability(s, req, is_health, ka);
        return ROUTE_RESPONDED;
    }
    /* Last: the page's paths can never shadow the protocol's. */
    if (srv->web && web_answer(srv->web, req, &s->out, ka))
        return ROUTE_RESPONDED;
    resp_append_error(&s->out, 404, "no such path", ka);
    return ROUTE_RESPONDED;
}
