/*
 * client_hang: the hanging_get thread. While signed in, one /wait after
 * another (a new connection each, or one kept-alive connection), each answer
 * classified (client_wire.c) into an event or a session loss.
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

/* Pause the hanging_get for ms (a disconnect or a new session ends it early). */
static void hang_pause_locked(pcsig_client_t *c, uint64_t epoch, int ms)
{
    uint64_t until = clock_now_ms() + (uint64_t)ms;
    while (!cl_closing(c) && c->epoch == epoch && clock_now_ms() < until) {
        struct timespec ts = clock_deadline_in((uint64_t)cl_remaining_ms(until));
        pthread_cond_timedwait(&c->hang_cond, &c->mu, &ts);
    }
}

/*
 * One /wait: reuse the kept-alive connection if there is one (retrying once
 * on a new one when it turns out closed), else a new connection.
 * Returns as io_exchange; *keep says whether *connp stays usable.
 */
static int do_wait(struct cio *io, conn_t **connp, const buf_t *req, buf_t *in,
                   struct cio_reply *rep, bool *keep, bool *connect_failed)
{
    *keep = false;
    *connect_failed = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = *connp != NULL;
        if (!reused) {
            int rc = cio_connect(io, connp);
            *connect_failed = rc < 0 && rc != -ENOMEM;
            if (rc < 0)
                return rc;
        }
        bool got = in->len > 0, half_closed = false;
        int rc = cio_send_all(io, *connp, req);
        if (rc == 0)
            rc = cio_read_response(io, *connp, in, rep, &got);
        if (rc == -ETIMEDOUT) {
            /* Our limit, not the server's: closing now could drop an answer
             * the server has just written. Half-close instead, so that it
             * un-parks the /wait (and keeps undelivered items queued), and
             * read on briefly for anything already under way. */
            half_closed = shutdown(conn_fd(*connp), SHUT_WR) == 0;
            if (half_closed) {
                io->deadline = clock_now_ms() + CLIENT_WAIT_GRACE_MS;
                rc = cio_read_response(io, *connp, in, rep, &got);
                if (rc != 0 && rc != -ECANCELED)
                    rc = -ETIMEDOUT;
            }
        }
        /* A server that no longer takes our certificate (a reload with a
         * new client CA) refuses a new connection as it refuses a sign-in. */
        if (rc < 0 && rc != -ETIMEDOUT && !reused)
            rc = cio_tls_verdict(io, *connp, cio_tls_alert_after_reset(*connp, rc, got), got);
        if (rc == 0) {
            *keep = !half_closed && io->c->keep_alive && rep->resp.minor_version == 1 &&
                    !rep->resp.connection_close && rep->resp.has_content_length;
            return 0;
        }
        conn_close(*connp);
        *connp = NULL;
        buf_reset(in);
        /* A kept-alive connection the server closed meanwhile is not a
         * lost server: try once more on a fresh one. */
        if (!(reused && !got && (cio_server_gone(rc) || rc == -EIO)))
            return rc;
    }
    return -ECONNRESET;
}

void *cl_hanging_main(void *arg)
{
    pcsig_client_t *c = arg;
    log_set_thread_role("hanging_get");
    conn_t *conn = NULL;
    buf_t in, req;
    buf_init(&in, CWIRE_MAX_HEAD + CWIRE_MAX_BODY);
    buf_init(&req, 1024);
    uint64_t epoch = 0;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->state == CL_SIGNING_IN)
            pthread_cond_wait(&c->hang_cond, &c->mu);
        if (cl_closing(c))
            break;
        if (c->epoch != epoch) {
            /* A new session: nothing of the old connection is ours any more. */
            conn_close(conn);
            conn = NULL;
            buf_reset(&in);
            epoch = c->epoch;
        }
        if (c->ev_bytes > c->max_event_bytes) {
            /* Backpressure: the caller has not taken what we have. No new
             * /wait until it does, so further messages stay queued on the
             * server, whose own caps (and 503s to the senders) bound them. */
            log_debug("client: %zu bytes of events not taken (cap %zu): /wait paused",
                      c->ev_bytes, c->max_event_bytes);
            c->hang_throttled = true;
            while (!cl_closing(c) && c->epoch == epoch && c->ev_bytes > c->max_event_bytes)
                pthread_cond_wait(&c->hang_cond, &c->mu);
            c->hang_throttled = false;
            continue;
        }
        uint64_t own = c->own_id;
        pthread_mutex_unlock(&c->mu);

        buf_reset(&req);
        struct cio io = {.c = c, .wake_fd = c->hang_wake, .tls = c->tls_hang, .policy = IO_CANCEL_ON_CLOSE,
                        .epoch = epoch,
                        .deadline = clock_now_ms() + (uint64_t)c->wait_timeout_ms};
        struct cio_reply rep;
        bool keep = false, unreachable = false;
        int rc = cwire_wait(&req, own, c->keep_alive, c->host_hdr);
        if (rc == 0)
            rc = cio_add_token(c, &req);
        if (rc == 0)
            rc = do_wait(&io, &conn, &req, &in, &rep, &keep, &unreachable);

        struct cwire_wait_result w = {.kind = CWIRE_WAIT_BAD};
        struct pcsig_event *ev = NULL;
        char *reason = NULL;
        if (rc == 0) {
            cwire_classify_wait(&rep.resp, rep.body, rep.body_len, own, &w);
            if (w.kind == CWIRE_WAIT_MESSAGE)
                ev = cl_message_event(&w, rep.body, rep.body_len);
            else if (w.kind == CWIRE_WAIT_JOINED)
                ev = cl_peer_event(PCSIG_EV_PEER_JOINED, &w.entry);
            else if (w.kind == CWIRE_WAIT_LEFT)
                ev = cl_peer_event(PCSIG_EV_PEER_LEFT, &w.entry);
            else if (w.kind == CWIRE_WAIT_BYE && (ev = cl_ev_new(PCSIG_EV_PEER_HANGUP)))
                ev->peer_id = w.from;
        } else if (rc != -ECANCELED && rc != -ETIMEDOUT) {
            reason = cio_reason(&io, "hanging GET", unreachable, rc);
        }
        if (rc == 0 && keep)
            buf_consume(&in, rep.total);
        else {
            conn_close(conn);
            conn = NULL;
            buf_reset(&in);
        }

        pthread_mutex_lock(&c->mu);
        bool current = !cl_closing(c) && c->epoch == epoch;
        if (!current) {
            pcsig_event_free(ev);
        } else if (rc == 0) {
            if (rep.resp.status == 200 && w.kind != CWIRE_WAIT_ID_GONE)
                c->id_gone_streak = 0; /* the new session works */
            switch (w.kind) {
            case CWIRE_WAIT_MESSAGE:
            case CWIRE_WAIT_JOINED:
            case CWIRE_WAIT_LEFT:
            case CWIRE_WAIT_BYE:
                cl_emit_locked(c, ev);
                break;
            case CWIRE_WAIT_EMPTY:
                break;
            case CWIRE_WAIT_REPOLL:
                /* Our own re-polls close the old connection first, so a 409
                 * we read means someone else polls with our id: poll again,
                 * but do not let the two of us spin. */
                hang_pause_locked(c, epoch, c->reconnect_min_ms);
                break;
            case CWIRE_WAIT_SHUTDOWN:
                cl_session_lost_locked(c, epoch, LOSS_SERVER, w.why);
                break;
            case CWIRE_WAIT_ID_GONE:
                cl_session_lost_locked(c, epoch, LOSS_ID_GONE, w.why);
                break;
            case CWIRE_WAIT_BAD:
            default:
                log_warn("client: %s (status %d); polling again shortly", w.why,
                         rep.resp.status);
                hang_pause_locked(c, epoch, c->reconnect_min_ms);
                break;
            }
        } else if (rc == -ECANCELED) {
            /* disconnect or a new session: the loop head sorts it out */
        } else if (unreachable || cio_server_gone(rc) || rc == -EKEYREJECTED) {
            /* A TLS refusal too: the sign-in that follows finds out for good. */
            cl_session_lost_locked(c, epoch, LOSS_SERVER, reason ? reason : "server gone");
        } else if (rc == -ETIMEDOUT) {
            log_debug("client: no answer to /wait within %d ms; polling again",
                      c->wait_timeout_ms);
        } else {
            /* Malformed answers, out of memory: not worth a new session. */
            log_warn("client: %s; polling again shortly", reason ? reason : "hanging GET failed");
            hang_pause_locked(c, epoch, c->reconnect_min_ms);
        }
        free(reason);
    }
    pthread_mutex_unlock(&c->mu);
    conn_close(conn);
    pthread_mutex_lock(&c->mu);
    c->hang_closed = true; /* the control thread signs out only after this */
    pthread_cond_broadcast(&c->ctl_cond);
    pthread_mutex_unlock(&c->mu);
    buf_free(&in);
    buf_free(&req);
    return NULL;
}

