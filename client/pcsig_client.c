/*
 * pcsig_client: the public API of the client library (pcsig_client.h):
 * creating, starting, feeding, stopping and freeing a client. The threads
 * and the shared state are in the other client_*.c files (client_internal.h).
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

/* Tests only (the unit test #includes this file): while non-zero,
 * pcsig_client_new fails its TLS set-up with no reason text, as if the
 * library's allocations had failed too. Set before pcsig_client_new, in the
 * thread that calls it. */
static int cwire_test_tls_setup_fault;


/* "USERNAME@hostname" as the stock client names itself (heap, or NULL). */
static char *default_name(void)
{
    const char *user = getenv("USERNAME");
    if (!user || !*user)
        user = "user";
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    buf_t b;
    buf_init(&b, 1024);
    if (buf_printf(&b, "%s@%s", user, host) < 0 || buf_append(&b, "", 1) < 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}

static void client_destroy(pcsig_client_t *c)
{
    if (c->sync_ready) {
        pthread_mutex_destroy(&c->life_mu);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->ctl_cond);
        pthread_cond_destroy(&c->hang_cond);
        pthread_cond_destroy(&c->ev_cond);
    }
    while (c->ev_head) {
        struct ev_item *it = c->ev_head;
        c->ev_head = it->next;
        c->ev_bytes -= it->bytes;
        pcsig_event_free(&it->ev);
    }
    while (c->q_head) {
        struct out_msg *m = c->q_head;
        c->q_head = m->next;
        cl_out_msg_free(m);
    }
    if (c->ev_fd >= 0)
        close(c->ev_fd);
    if (c->ctl_wake >= 0)
        close(c->ctl_wake);
    if (c->hang_wake >= 0)
        close(c->hang_wake);
    tls_client_free(c->tls);
    tls_client_free(c->tls_hang);
    if (c->auth_token) {
        explicit_bzero(c->auth_token, strlen(c->auth_token));
        free(c->auth_token);
    }
    free(c->loss_reason);
    free(c->server);
    free(c->name);
    free(c->host_hdr);
    free(c);
}

pcsig_client_t *pcsig_client_new(const struct pcsig_client_options *opts)
{
    struct pcsig_client_options o = {0};
    if (opts)
        o = *opts;
    pcsig_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ev_fd = c->ctl_wake = c->hang_wake = -1;
    const char *server = o.server && *o.server ? o.server : CLIENT_DEFAULT_SERVER;
    c->server = cl_dup_n(server, strlen(server));
    c->port = o.port ? o.port : CLIENT_DEFAULT_PORT;
    c->name = o.name && *o.name ? cl_dup_n(o.name, strlen(o.name)) : default_name();
    c->keep_alive = o.keep_alive;
    c->use_tls = o.tls;
    if (o.tls) {
        struct tls_client_options to = {.ca_file = o.ca_file, .cert_file = o.cert_file,
                                        .key_file = o.key_file, .insecure = o.insecure};
        /* A library user gets the same loud warning as the CLI's user. */
        if (o.insecure)
            log_warn("TLS insecure mode: the server's certificate is NOT verified; anyone on "
                     "the path can read and change this session");
        char why[sizeof c->setup_error - 8] = "";
        if (cwire_test_tls_setup_fault || tls_client_new(&to, &c->tls, why, sizeof why) < 0 ||
            tls_client_new(&to, &c->tls_hang, why, sizeof why) < 0) {
            tls_client_free(c->tls);
            tls_client_free(c->tls_hang);
            c->tls = c->tls_hang = NULL;
            c->setup_failed = true;
            snprintf(c->setup_error, sizeof c->setup_error, "%s",
                     why[0] ? why : "TLS set-up failed");
        }
    }
    if (o.auth_token) {
        if (!cwire_token_ok(o.auth_token)) {
            /* (after a TLS failure too: the token must not be kept) */
            c->setup_failed = true;
            if (!c->setup_error[0])
                snprintf(c->setup_error, sizeof c->setup_error,
                     "the auth token must be 1 to %d bytes of visible ASCII (no spaces or "
                     "control characters)", CWIRE_MAX_TOKEN);
        } else if (!(c->auth_token = cl_dup_s(o.auth_token))) {
            goto fail;
        }
    }
    c->allow_insecure_token = o.allow_insecure_token;
    c->max_event_bytes = o.max_event_bytes ? o.max_event_bytes : CLIENT_DEFAULT_MAX_EVENT_BYTES;
    c->max_peers = o.max_peers ? o.max_peers : CLIENT_DEFAULT_MAX_PEERS;
    c->wait_timeout_ms = o.wait_timeout_ms > 0 ? o.wait_timeout_ms : CLIENT_DEFAULT_WAIT_MS;
    c->request_timeout_ms = o.request_timeout_ms > 0 ? o.request_timeout_ms
                                                     : CLIENT_DEFAULT_REQUEST_MS;
    c->reconnect_min_ms = o.reconnect_min_ms > 0 ? o.reconnect_min_ms
                                                 : CLIENT_DEFAULT_RECONNECT_MIN_MS;
    c->reconnect_max_ms = o.reconnect_max_ms > 0 ? o.reconnect_max_ms
                                                 : CLIENT_DEFAULT_RECONNECT_MAX_MS;
    if (c->reconnect_max_ms < c->reconnect_min_ms)
        c->reconnect_max_ms = c->reconnect_min_ms;
    c->next_token = 1;
    if (!c->server || !c->name)
        goto fail;
    buf_t h;
    buf_init(&h, strlen(c->server) + 16);
    if (cwire_host_header(&h, c->server, c->port) < 0 || buf_append(&h, "", 1) < 0) {
        buf_free(&h);
        goto fail;
    }
    c->host_hdr = h.data;
    c->ev_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->ctl_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->hang_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->ev_fd < 0 || c->ctl_wake < 0 || c->hang_wake < 0)
        goto fail;
    if (pthread_mutex_init(&c->life_mu, NULL) != 0)
        goto fail;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        pthread_mutex_destroy(&c->life_mu);
        goto fail;
    }
    if (clock_cond_init(&c->ctl_cond) < 0)
        goto fail_mu;
    if (clock_cond_init(&c->hang_cond) < 0)
        goto fail_ctl;
    if (clock_cond_init(&c->ev_cond) < 0)
        goto fail_hang;
    c->sync_ready = true;
    return c;
fail_hang:
    pthread_cond_destroy(&c->hang_cond);
fail_ctl:
    pthread_cond_destroy(&c->ctl_cond);
fail_mu:
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->life_mu);
fail:
    client_destroy(c);
    return NULL;
}

const char *pcsig_client_setup_error(pcsig_client_t *c)
{
    return c->setup_failed ? c->setup_error : NULL;
}

int pcsig_client_connect(pcsig_client_t *c)
{
    if (c->setup_failed)
        return -EINVAL;
    pthread_mutex_lock(&c->life_mu);
    pthread_mutex_lock(&c->mu);
    if (c->state == CL_DEAD) {
        /* A fatal error stopped the threads by themselves: reap them. */
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->hang_thread, NULL);
        pthread_join(c->ctl_thread, NULL);
        pthread_mutex_lock(&c->mu);
        c->state = CL_STOPPED;
    }
    if (c->state != CL_STOPPED) {
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_unlock(&c->life_mu);
        return -EALREADY;
    }
    /* A fresh start: stale wake-ups of an earlier run are dropped. */
    cl_drain(c->ctl_wake);
    cl_drain(c->hang_wake);
    c->hang_closed = false;
    c->close_note = NULL;
    c->own_id = 0;
    c->loss = LOSS_NONE;
    c->id_gone_streak = 0;
    c->state = CL_SIGNING_IN;
    pthread_mutex_unlock(&c->mu);

    int rc = pthread_create(&c->ctl_thread, NULL, cl_control_main, c);
    if (rc == 0) {
        rc = pthread_create(&c->hang_thread, NULL, cl_hanging_main, c);
        if (rc != 0) {
            pthread_mutex_lock(&c->mu);
            c->state = CL_CLOSING;
            c->hang_closed = true; /* there is no hanging_get thread to wait for */
            c->close_deadline = clock_now_ms();
            pthread_cond_broadcast(&c->ctl_cond);
            pthread_mutex_unlock(&c->mu);
            cl_wake(c->ctl_wake);
            pthread_join(c->ctl_thread, NULL);
        }
    }
    if (rc != 0) {
        pthread_mutex_lock(&c->mu);
        c->state = CL_STOPPED;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&c->life_mu);
    return -rc;
}

int64_t pcsig_client_send(pcsig_client_t *c, uint64_t to, const char *content_type,
                          const void *data, size_t len)
{
    if (to == 0 || to > PROTO_MAX_ID || (content_type && !cwire_ctype_ok(content_type)) ||
        (len > 0 && data == NULL))
        return -EINVAL;
    pthread_mutex_lock(&c->mu);
    bool in = c->state == CL_SIGNED_IN;
    uint64_t own = c->own_id, epoch = c->epoch;
    pthread_mutex_unlock(&c->mu);
    if (!in)
        return -ENOTCONN;

    /* Build the bytes here, outside the lock: the body is copied once. */
    size_t ctlen = content_type ? strlen(content_type) : 0;
    if (len > SIZE_MAX - ctlen - 256)
        return -ENOMEM;
    struct out_msg *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    buf_init(&m->req, len + ctlen + 256);
    int rc = buf_reserve(&m->req, len + ctlen + 160);
    if (rc == 0)
        rc = cwire_message(&m->req, own, to, content_type, data, len);
    if (rc == 0)
        rc = cio_add_token(c, &m->req);
    if (rc < 0) {
        cl_out_msg_free(m);
        return rc == -EINVAL ? -EINVAL : -ENOMEM;
    }
    m->from = own;
    m->to = to;

    pthread_mutex_lock(&c->mu);
    if (c->state != CL_SIGNED_IN || c->epoch != epoch) {
        pthread_mutex_unlock(&c->mu);
        cl_out_msg_free(m);
        return -ENOTCONN;
    }
    m->token = c->next_token++;
    if (c->q_tail)
        c->q_tail->next = m;
    else
        c->q_head = m;
    c->q_tail = m;
    int64_t token = (int64_t)m->token;
    pthread_cond_signal(&c->ctl_cond);
    pthread_mutex_unlock(&c->mu);
    return token;
}

uint64_t pcsig_client_id(pcsig_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t id = cl_signed_in(c) ? c->own_id : 0;
    pthread_mutex_unlock(&c->mu);
    return id;
}

int pcsig_client_disconnect(pcsig_client_t *c)
{
    pthread_mutex_lock(&c->life_mu);
    pthread_mutex_lock(&c->mu);
    if (c->state == CL_STOPPED) {
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_unlock(&c->life_mu);
        return 0;
    }
    if (!cl_closing(c)) {
        c->state = c->state == CL_SIGNED_IN ? CL_FLUSHING : CL_CLOSING;
        c->close_deadline = clock_now_ms() + CLIENT_CLOSE_FLUSH_MS;
    }
    pthread_cond_broadcast(&c->ctl_cond);
    pthread_cond_broadcast(&c->hang_cond);
    pthread_mutex_unlock(&c->mu);
    cl_wake(c->ctl_wake);
    cl_wake(c->hang_wake);

    pthread_join(c->hang_thread, NULL);
    pthread_join(c->ctl_thread, NULL);

    pthread_mutex_lock(&c->mu);
    bool dead = c->state == CL_DEAD;
    c->state = CL_STOPPED;
    c->own_id = 0;
    cl_fail_queue_locked(c, "disconnected before the message was sent");
    if (!dead)
        cl_emit_locked(c, cl_ev_reason(PCSIG_EV_DISCONNECTED,
                                 c->close_note ? c->close_note : "disconnected"));
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&c->life_mu);
    return 0;
}

int pcsig_client_event_fd(pcsig_client_t *c)
{
    return c->ev_fd;
}

struct pcsig_event *pcsig_client_next_event(pcsig_client_t *c, int timeout_ms)
{
    struct timespec ts;
    if (timeout_ms > 0)
        ts = clock_deadline_in((uint64_t)timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (!c->ev_head && timeout_ms != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&c->ev_cond, &c->mu);
        } else if (pthread_cond_timedwait(&c->ev_cond, &c->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    struct ev_item *it = c->ev_head;
    if (it) {
        c->ev_bytes -= it->bytes;
        /* Below the cap again: a throttled hanging_get may poll. */
        if (c->hang_throttled && c->ev_bytes <= c->max_event_bytes)
            pthread_cond_broadcast(&c->hang_cond);
        c->ev_head = it->next;
        if (!c->ev_head) {
            c->ev_tail = NULL;
            cl_drain(c->ev_fd);
        }
        it->next = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return it ? &it->ev : NULL;
}

void pcsig_client_free(pcsig_client_t *c)
{
    if (!c)
        return;
    pcsig_client_disconnect(c);
    client_destroy(c);
}
