/*
 * client_control: the control thread. It signs in (again after a loss,
 * with jittered backoff), sends the outgoing queue one request at a time in
 * order, and on disconnect flushes the queue briefly and signs out.
 */
#include "client_internal.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "client_wire.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "strlit.h"
#include "tls.h"

/* Tests only: while non-zero, a loopback server address counts as remote
 * for the auth token's plain-TCP check (tests can reach nothing else). */
static int cwire_test_loopback_is_remote;

/* xorshift64*: backoff jitter; each control thread owns its state. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}


enum signin_result { SIGNIN_OK, SIGNIN_RETRY, SIGNIN_FATAL, SIGNIN_CANCELED };

/* What a 200 to sign-in brought: our id, the --secure-ids token, the list. */
struct sign_in_ok {
    uint64_t id;
    char token[sizeof ((pcsig_client_t *)0)->token];
    struct cwire_peer_list list;
    bool list_ready; /* list initialised (free it) */
};

/*
 * The rest of a 200 to sign-in, whose head (head_len bytes of in) is
 * parsed in resp: the body is the peer list, fed to the parser as it
 * arrives and never kept whole, so a list of a million entries costs only
 * the max_peers kept. Returns 0, or as io_read_response.
 */
static int sign_in_body(struct cio *io, conn_t *conn, buf_t *in, const http_response_t *resp,
                        size_t head_len, struct sign_in_ok *ok, bool *got_bytes)
{
    bool has_len = resp->has_content_length;
    uint64_t want = resp->content_length, got = 0;
    if (has_len && want > CWIRE_MAX_BODY)
        return -EPROTO;
    if (cwire_pragma(resp, &ok->id) < 0)
        return -EBADMSG;
    const http_header_t *tok = http_find_header(resp->headers, resp->num_headers,
                                                "X-Pcsig-Token");
    if (tok && tok->value.len < sizeof ok->token) {
        memcpy(ok->token, tok->value.ptr, tok->value.len);
        ok->token[tok->value.len] = '\0';
    }
    /* resp points into in: nothing of it is used after this. */
    cwire_peer_list_init(&ok->list, ok->id, io->c->max_peers);
    ok->list_ready = true;
    buf_consume(in, head_len);
    for (;;) {
        size_t n = in->len;
        if (has_len && n > want - got)
            n = (size_t)(want - got); /* nothing after the body is ours */
        if (cwire_peer_list_feed(&ok->list, in->data, n) < 0)
            return -ENOMEM;
        got += n;
        buf_reset(in);
        if (has_len && got == want)
            return 0;
        if (!has_len && got > CWIRE_MAX_BODY)
            return -EPROTO;
        /* A fast endless stream never makes us wait: look up anyway, so a
         * disconnect or the deadline still ends it. */
        int st = cio_check(io);
        if (st < 0)
            return st;
        if (buf_reserve(in, CLIENT_READ_CHUNK) < 0)
            return -ENOMEM;
        ssize_t r = cio_read_some(io, conn, in->data, CLIENT_READ_CHUNK);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return has_len ? -EPROTO : 0; /* HTTP/1.0 framing: the body ends at EOF */
        in->len = (size_t)r;
        *got_bytes = true;
    }
}

/* The connected address of fd as text (for a message), into out. */
static void peer_addr_text(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(out, n, "?");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                             : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!inet_ntop(ss.ss_family, a, out, (socklen_t)n))
        snprintf(out, n, "?");
}

/* May our auth token go over this connection? Yes with TLS, to a loopback
 * address, or when the caller allowed it; the address is the one actually
 * connected (a name may resolve anywhere). */
static bool token_may_go(const pcsig_client_t *c, conn_t *conn)
{
    if (!c->auth_token || c->use_tls || c->allow_insecure_token)
        return true;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    return getpeername(conn_fd(conn), (struct sockaddr *)&ss, &sl) == 0 &&
           cwire_addr_is_loopback((const struct sockaddr *)&ss) && !cwire_test_loopback_is_remote;
}

/*
 * The sign-in exchange on a new connection: a 200's body is parsed as it
 * arrives (sign_in_body, *is_ok set), any other answer is read whole into
 * *rep. -EACCES: the auth token would have gone in clear to a non-loopback
 * address (nothing was sent; *where names the address). Else as io_request.
 */
static int sign_in_request(struct cio *io, const buf_t *req, buf_t *in, struct cio_reply *rep,
                           struct sign_in_ok *ok, bool *is_ok, bool *connect_failed,
                           char *where, size_t where_len)
{
    *is_ok = false;
    conn_t *conn = NULL;
    int rc = cio_connect(io, &conn);
    *connect_failed = rc < 0 && rc != -ENOMEM;
    if (rc < 0)
        return rc;
    if (!token_may_go(io->c, conn)) {
        peer_addr_text(conn_fd(conn), where, where_len);
        conn_close(conn);
        return -EACCES;
    }
    bool got = false;
    rc = cio_send_all(io, conn, req);
    long h = rc < 0 ? rc : cio_read_head(io, conn, in, &rep->resp, &got);
    if (h > 0 && rep->resp.status == 200) {
        *is_ok = true;
        rc = sign_in_body(io, conn, in, &rep->resp, (size_t)h, ok, &got);
    } else if (h > 0) {
        rc = cio_read_response(io, conn, in, rep, &got); /* a short refusal: whole */
    } else {
        rc = (int)h;
    }
    rc = cio_tls_verdict(io, conn, cio_tls_alert_after_reset(conn, rc, got), got);
    conn_close(conn);
    return rc;
}

/* The request bytes of a sign-in, with our auth token if we have one. */
static int sign_in_bytes(pcsig_client_t *c, buf_t *req)
{
    int rc = cwire_sign_in(req, c->name, strlen(c->name));
    if (rc == 0 && c->auth_token) {
        buf_t v;
        buf_init(&v, CWIRE_MAX_TOKEN + 16);
        rc = buf_printf(&v, "Bearer %s", c->auth_token);
        if (rc == 0)
            rc = buf_append(&v, "", 1);
        if (rc == 0)
            rc = cwire_add_header(req, "Authorization", v.data);
        if (v.data)
            explicit_bzero(v.data, v.len);
        buf_free(&v);
    }
    return rc;
}

/* Sign in; on SIGNIN_OK *ev is the SIGNED_IN event, else *reason (heap). */
static enum signin_result do_sign_in(pcsig_client_t *c, struct pcsig_event **ev, char **reason)
{
    *ev = NULL;
    *reason = NULL;
    buf_t req, in;
    buf_init(&req, strlen(c->name) * 3 + CWIRE_MAX_TOKEN + 128);
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    enum signin_result res = SIGNIN_RETRY;
    struct cio io = {.c = c, .wake_fd = c->ctl_wake, .tls = c->tls, .policy = IO_CANCEL_ON_CLOSE,
                    .deadline = clock_now_ms() + (uint64_t)c->request_timeout_ms};
    struct cio_reply rep;
    struct sign_in_ok ok = {0};
    bool unreachable = false, is_ok = false;
    char where[64] = "";
    int rc = sign_in_bytes(c, &req);
    if (rc == 0)
        rc = sign_in_request(&io, &req, &in, &rep, &ok, &is_ok, &unreachable, where,
                             sizeof where);
    if (rc == -ECANCELED) {
        res = SIGNIN_CANCELED;
        goto out;
    }
    if (rc == -EACCES) {
        buf_t b;
        buf_init(&b, 1024);
        if (buf_printf(&b, "sign-in: refusing to send the auth token in clear to %s (%s is "
                           "not a loopback address): use TLS, or allow it explicitly "
                           "(--allow-insecure-token)", c->server, where) == 0 &&
            buf_append(&b, "", 1) == 0)
            *reason = b.data;
        else
            buf_free(&b);
        res = SIGNIN_FATAL;
        goto out;
    }
    if (rc == -EBADMSG) {
        *reason = cl_dup_s("sign-in: no valid Pragma in the answer");
        goto out;
    }
    if (rc < 0) {
        *reason = cio_reason(&io, "sign-in", unreachable, rc);
        /* A certificate that fails verification will fail again: stop. */
        if (rc == -EKEYREJECTED)
            res = SIGNIN_FATAL;
        goto out;
    }
    if (!is_ok) {
        char *sr = cio_status_reason(&rep);
        buf_t b;
        buf_init(&b, 1024);
        /* A 401 from a server run with --auth-token: say which side of it we are. */
        const char *hint = rep.resp.status != 401 ? ""
                           : c->auth_token ? " (the auth token was not accepted)"
                                           : " (the server wants an auth token: --auth-token)";
        if (buf_printf(&b, "sign-in refused: %s%s", sr ? sr : "?", hint) == 0 &&
            buf_append(&b, "", 1) == 0)
            *reason = b.data;
        else
            buf_free(&b);
        free(sr);
        /* A 4xx will not change by retrying (except a timeout or a rate limit). */
        int st = rep.resp.status;
        if (st >= 400 && st < 500 && st != 408 && st != 429)
            res = SIGNIN_FATAL;
        goto out;
    }
    struct pcsig_event *e = cl_ev_new(PCSIG_EV_SIGNED_IN);
    if (!e) {
        *reason = cl_dup_s("sign-in: out of memory");
        goto out;
    }
    e->peers_omitted = ok.list.omitted;
    cwire_peer_list_take(&ok.list, &e->peers, &e->npeers);
    if (e->peers_omitted)
        log_warn("client: the server listed %zu more peers than max_peers (%zu): only the "
                 "first %zu are kept", e->peers_omitted, c->max_peers, e->npeers);
    e->own_id = ok.id;
    *ev = e;
    res = SIGNIN_OK;
    /* A server in --secure-ids mode hands out a token: use it from now on. */
    pthread_mutex_lock(&c->mu);
    memcpy(c->token, ok.token, sizeof c->token);
    pthread_mutex_unlock(&c->mu);
out:
    if (ok.list_ready)
        cwire_peer_list_free(&ok.list);
    if (req.data)
        explicit_bzero(req.data, req.len); /* it held the auth token */
    buf_free(&req);
    buf_free(&in);
    return res;
}


/* Send one queued message and report it. Called without mu. */
static void send_one(pcsig_client_t *c, struct out_msg *m, uint64_t epoch)
{
    buf_t in;
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    struct cio io = {.c = c, .wake_fd = c->ctl_wake, .tls = c->tls, .policy = IO_CLOSE_DEADLINE,
                    .deadline = clock_now_ms() + (uint64_t)c->request_timeout_ms};
    struct cio_reply rep;
    bool unreachable = false;
    int rc = cio_request(&io, &m->req, &in, &rep, &unreachable);
    char *reason = NULL;
    struct pcsig_event *echo = NULL;
    if (rc < 0) {
        reason = cio_reason(&io, "message", unreachable, rc);
    } else if (rep.resp.status != 200) {
        reason = cio_status_reason(&rep);
    } else if (m->to == m->from) {
        /* Sent to ourselves: the server echoes it in the ack (B 4.5); it
         * is reported as if it had come through /wait. */
        uint64_t p;
        if (cwire_pragma(&rep.resp, &p) == 0 && p == m->from) {
            struct cwire_wait_result w = {.kind = CWIRE_WAIT_MESSAGE, .from = p};
            if (rep.resp.has_content_type)
                w.ctype = rep.resp.content_type;
            if (rep.body_len == 3 && memcmp(rep.body, CWIRE_BYE, 3) == 0) {
                if ((echo = cl_ev_new(PCSIG_EV_PEER_HANGUP)) != NULL)
                    echo->peer_id = p;
            } else {
                echo = cl_message_event(&w, rep.body, rep.body_len);
            }
        }
    }
    pthread_mutex_lock(&c->mu);
    if (rc == 0 && rep.resp.status == 200) {
        struct pcsig_event *ev = cl_ev_new(PCSIG_EV_MESSAGE_SENT);
        if (ev) {
            ev->token = m->token;
            ev->peer_id = m->to;
        }
        cl_emit_locked(c, ev);
        if (echo)
            cl_emit_locked(c, echo);
    } else {
        cl_emit_failed_locked(c, m, rc == 0 ? rep.resp.status : 0,
                           reason ? reason : "message failed");
        if (rc < 0 && rc != -ECANCELED && (unreachable || cio_server_gone(rc)))
            cl_session_lost_locked(c, epoch, LOSS_SERVER, reason ? reason : "server gone");
    }
    pthread_mutex_unlock(&c->mu);
    free(reason);
    buf_free(&in);
}

/* Take the queue's first message and send it, c->mu held on entry and on
 * return but not while sending (the sender must not block queueing). */
static void send_next_locked(pcsig_client_t *c)
{
    struct out_msg *m = c->q_head;
    c->q_head = m->next;
    if (!c->q_head)
        c->q_tail = NULL;
    uint64_t epoch = c->epoch;
    pthread_mutex_unlock(&c->mu);
    send_one(c, m, epoch);
    cl_out_msg_free(m);
    pthread_mutex_lock(&c->mu);
}

/* True when the server confirmed the sign-out (200). */
static bool sign_out(pcsig_client_t *c, uint64_t id)
{
    buf_t req, in;
    buf_init(&req, 256); /* the request line and, with --secure-ids, the token */
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    int budget = c->request_timeout_ms < CLIENT_SIGNOUT_MS ? c->request_timeout_ms
                                                            : CLIENT_SIGNOUT_MS;
    struct cio io = {.c = c, .wake_fd = c->ctl_wake, .tls = c->tls, .policy = IO_OWN_DEADLINE,
                    .deadline = clock_now_ms() + (uint64_t)budget};
    struct cio_reply rep;
    bool unreachable;
    int rc = cwire_sign_out(&req, id);
    if (rc == 0)
        rc = cio_add_token(c, &req);
    if (rc == 0)
        rc = cio_request(&io, &req, &in, &rep, &unreachable);
    if (rc < 0) {
        char tmp[128];
        log_debug("client: sign-out of %llu failed: %s", (unsigned long long)id,
                  log_strerror(-rc, tmp, sizeof tmp));
    } else if (rep.resp.status != 200) {
        log_debug("client: sign-out of %llu answered %d", (unsigned long long)id,
                  rep.resp.status);
    }
    buf_free(&req);
    buf_free(&in);
    return rc == 0 && rep.resp.status == 200;
}

/* Set the delay before the next sign-in after a loss, and report it.
 * Returns the monotonic time of the next attempt. Caller holds mu. */
static uint64_t plan_retry_locked(pcsig_client_t *c, unsigned *fails, uint64_t *rng,
                                  const char *reason, bool server_gone)
{
    int delay;
    if (server_gone) {
        delay = cwire_backoff_ms((*fails)++, c->reconnect_min_ms, c->reconnect_max_ms,
                                 rng_next(rng));
    } else if (c->id_gone_streak <= 1) {
        return 0; /* the server forgot us once: sign in again at once */
    } else {
        delay = cwire_backoff_ms(c->id_gone_streak - 2, c->reconnect_min_ms,
                                 c->reconnect_max_ms, rng_next(rng));
    }
    struct pcsig_event *ev = cl_ev_reason(PCSIG_EV_SERVER_UNREACHABLE, reason);
    if (ev)
        ev->retry_in_ms = delay;
    cl_emit_locked(c, ev);
    return clock_now_ms() + (uint64_t)delay;
}

void *cl_control_main(void *arg)
{
    pcsig_client_t *c = arg;
    log_set_thread_role("control");
    uint64_t rng = clock_now_ms() ^ ((uint64_t)(uintptr_t)c << 16) ^ ((uint64_t)getpid() << 40);
    if (rng == 0)
        rng = 0x9E3779B97F4A7C15ULL;
    unsigned fails = 0;
    uint64_t retry_at = 0;

    pthread_mutex_lock(&c->mu);
    while (!cl_closing(c)) {
        if (c->state == CL_SIGNING_IN) {
            if (c->loss != LOSS_NONE) {
                retry_at = plan_retry_locked(c, &fails, &rng, c->loss_reason ? c->loss_reason
                                                                             : "session lost",
                                             c->loss == LOSS_SERVER);
                c->loss = LOSS_NONE;
            }
            if (retry_at && clock_now_ms() < retry_at) {
                struct timespec ts = clock_deadline_in((uint64_t)cl_remaining_ms(retry_at));
                pthread_cond_timedwait(&c->ctl_cond, &c->mu, &ts);
                continue;
            }
            retry_at = 0;
            pthread_mutex_unlock(&c->mu);
            struct pcsig_event *ev;
            char *reason;
            enum signin_result r = do_sign_in(c, &ev, &reason);
            pthread_mutex_lock(&c->mu);
            if (r == SIGNIN_OK && !cl_closing(c)) {
                c->state = CL_SIGNED_IN;
                c->own_id = ev->own_id;
                c->epoch++;
                fails = 0;
                log_debug("client: signed in as %llu", (unsigned long long)c->own_id);
                cl_emit_locked(c, ev);
                pthread_cond_broadcast(&c->hang_cond);
            } else if (r == SIGNIN_OK) {
                /* Disconnect came during the sign-in: sign out below. */
                c->state = CL_FLUSHING;
                c->own_id = ev->own_id;
                c->epoch++;
                pcsig_event_free(ev);
            } else if (r == SIGNIN_FATAL) {
                log_warn("client: %s", reason ? reason : "sign-in refused");
                c->state = CL_DEAD;
                cl_emit_locked(c, cl_ev_reason(PCSIG_EV_DISCONNECTED, reason ? reason : "sign-in refused"));
                pthread_cond_broadcast(&c->hang_cond);
                cl_wake(c->hang_wake);
            } else if (r == SIGNIN_RETRY) {
                retry_at = plan_retry_locked(c, &fails, &rng, reason ? reason : "sign-in failed",
                                             true);
            }
            free(reason);
            continue;
        }
        if (c->q_head) {
            send_next_locked(c);
            continue;
        }
        pthread_cond_wait(&c->ctl_cond, &c->mu);
    }

    /* Closing: what was queued before the disconnect still goes out, in
     * order, within the close budget; then the sign-out. */
    while (c->state == CL_FLUSHING && c->q_head && clock_now_ms() < c->close_deadline)
        send_next_locked(c);
    cl_fail_queue_locked(c, "disconnected before the message was sent");
    /* The stock client closes its hanging GET before it signs out (the
     * original server may otherwise answer the parked wait after the
     * member is gone): give the hanging_get thread, woken by the same
     * disconnect, a moment to close its connection first. */
    uint64_t hang_until = clock_now_ms() + CLIENT_SIGNOUT_MS;
    while (!c->hang_closed && clock_now_ms() < hang_until) {
        struct timespec ts = clock_deadline_in((uint64_t)cl_remaining_ms(hang_until));
        pthread_cond_timedwait(&c->ctl_cond, &c->mu, &ts);
    }
    bool was_in = c->state == CL_FLUSHING;
    uint64_t id = c->own_id;
    cl_session_off(c);
    c->own_id = 0;
    c->epoch++;
    pthread_mutex_unlock(&c->mu);
    /* What the DISCONNECTED event will say, instead of a bare "disconnected". */
    const char *note = !was_in              ? "disconnected while not signed in"
                       : sign_out(c, id)    ? "signed out"
                                            : "disconnected; the server did not confirm the sign-out";
    pthread_mutex_lock(&c->mu);
    c->close_note = note;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

