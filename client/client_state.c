/*
 * client_state: the session state the threads share under c->mu: the event
 * queue (an eventfd readable exactly while it is non-empty), the outgoing
 * queue, and the end of a session (the first thread to notice wins).
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

/* ---- small helpers --------------------------------------------------------- */

/* A heap copy of s[0..n) plus a NUL; NULL when out of memory. Caller frees. */
char *cl_dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *cl_dup_s(const char *s)
{
    return cl_dup_n(s, strlen(s));
}

void cl_wake(int fd)
{
    uint64_t one = 1;
    /* Only fails when the counter would overflow: it is readable then anyway. */
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

void cl_drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

int cl_remaining_ms(uint64_t deadline)
{
    uint64_t now = clock_now_ms();
    if (now >= deadline)
        return 0;
    uint64_t left = deadline - now;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}


/* ---- events ------------------------------------------------------------------ */

/* A zeroed event of type t, or NULL. Caller owns it (pcsig_event_free). */
struct pcsig_event *cl_ev_new(enum pcsig_event_type t)
{
    struct ev_item *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->ev.type = t;
    return &it->ev;
}

void pcsig_event_free(struct pcsig_event *ev)
{
    if (!ev)
        return;
    free(ev->name);
    cwire_peers_free(ev->peers, ev->npeers);
    free(ev->content_type);
    free(ev->data);
    free(ev->reason);
    free(ev); /* ev is the first member of its ev_item */
}

/* What an event counts against max_event_bytes: its variable parts plus a
 * fixed overhead, so that many empty events count too. */
static size_t ev_bytes_of(const struct pcsig_event *ev)
{
    size_t n = sizeof(struct ev_item) + CLIENT_EVENT_OVERHEAD + ev->len;
    if (ev->name)
        n += strlen(ev->name);
    if (ev->content_type)
        n += strlen(ev->content_type);
    if (ev->reason)
        n += strlen(ev->reason);
    for (size_t i = 0; i < ev->npeers; i++)
        n += sizeof ev->peers[i] + strlen(ev->peers[i].name) + 1;
    return n;
}

/* Queue ev (ownership passes to the queue). Caller holds mu. NULL-safe: an
 * event that could not be allocated is lost, and logged. */
void cl_emit_locked(pcsig_client_t *c, struct pcsig_event *ev)
{
    if (!ev) {
        log_error("client: out of memory; an event was dropped");
        return;
    }
    struct ev_item *it = (struct ev_item *)ev;
    it->next = NULL;
    it->bytes = ev_bytes_of(ev);
    c->ev_bytes += it->bytes;
    if (c->ev_tail) {
        c->ev_tail->next = it;
    } else {
        c->ev_head = it;
        cl_wake(c->ev_fd); /* readable while the queue is non-empty */
    }
    c->ev_tail = it;
    pthread_cond_broadcast(&c->ev_cond);
}

/* An event with a reason copied from text (may be NULL). */
struct pcsig_event *cl_ev_reason(enum pcsig_event_type t, const char *text)
{
    struct pcsig_event *ev = cl_ev_new(t);
    if (ev && text && !(ev->reason = cl_dup_n(text, strlen(text)))) {
        pcsig_event_free(ev);
        return NULL;
    }
    return ev;
}

void cl_emit_failed_locked(pcsig_client_t *c, const struct out_msg *m, int status,
                               const char *reason)
{
    struct pcsig_event *ev = cl_ev_reason(PCSIG_EV_MESSAGE_FAILED, reason);
    if (ev) {
        ev->token = m->token;
        ev->peer_id = m->to;
        ev->status = status;
    }
    cl_emit_locked(c, ev);
}

void cl_out_msg_free(struct out_msg *m)
{
    if (m) {
        buf_free(&m->req);
        free(m);
    }
}

/* Fail every queued message with reason. Caller holds mu. */
void cl_fail_queue_locked(pcsig_client_t *c, const char *reason)
{
    while (c->q_head) {
        struct out_msg *m = c->q_head;
        c->q_head = m->next;
        cl_emit_failed_locked(c, m, 0, reason);
        cl_out_msg_free(m);
    }
    c->q_tail = NULL;
}

/*
 * The session of epoch ended (kind, reason). The first thread to notice
 * wins; later reports about the same session are ignored. Caller holds mu.
 */
void cl_session_lost_locked(pcsig_client_t *c, uint64_t epoch, enum loss_kind kind,
                                const char *reason)
{
    if (!cl_signed_in(c) || c->epoch != epoch)
        return;
    log_debug("client: session %llu of id %llu ended: %s", (unsigned long long)epoch,
             (unsigned long long)c->own_id, reason);
    cl_session_off(c);
    c->own_id = 0;
    c->epoch++;
    c->loss = kind;
    free(c->loss_reason);
    c->loss_reason = cl_dup_s(reason);
    if (kind == LOSS_ID_GONE) {
        c->id_gone_streak++;
        /* The sign-in that follows is silent otherwise: the caller must learn
         * that the old id (and every peer id it knew) is void. */
        cl_emit_locked(c, cl_ev_reason(PCSIG_EV_SESSION_LOST, reason));
    }
    cl_fail_queue_locked(c, "the session ended before the message was sent");
    pthread_cond_broadcast(&c->ctl_cond);
    pthread_cond_broadcast(&c->hang_cond);
    cl_wake(c->hang_wake);
}

/* A MESSAGE event from a classified answer; NULL when out of memory. */
struct pcsig_event *cl_message_event(const struct cwire_wait_result *w, const char *body,
                                         size_t len)
{
    struct pcsig_event *ev = cl_ev_new(PCSIG_EV_MESSAGE);
    if (!ev)
        return NULL;
    ev->peer_id = w->from;
    ev->len = len;
    /* A NUL after the bytes: text bodies can be used as C strings. */
    ev->data = (unsigned char *)cl_dup_n(body, len);
    if (w->ctype.ptr)
        ev->content_type = cl_dup_n(w->ctype.ptr, w->ctype.len);
    if (!ev->data || (w->ctype.ptr && !ev->content_type)) {
        pcsig_event_free(ev);
        return NULL;
    }
    return ev;
}


struct pcsig_event *cl_peer_event(enum pcsig_event_type t, const proto_entry_t *e)
{
    struct pcsig_event *ev = cl_ev_new(t);
    if (!ev)
        return NULL;
    ev->peer_id = e->id;
    if (!(ev->name = cl_dup_n(e->name, e->name_len))) {
        pcsig_event_free(ev);
        return NULL;
    }
    return ev;
}
