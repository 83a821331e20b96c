/*
 * bench_hs: the --handshakes mode of pcsig-bench. --hs-parallel threads
 * each open their share of N connections one after another, blocking-style
 * (the conn_*_timed helpers wait with poll() on conn_want()): a TLS
 * handshake, then GET /sign_in?h (HTTP/1.1) and GET /sign_out?peer_id=<id>
 * (Connection: close) on the same connection, so the server is left with
 * no members and every connection costs it the same. The round trip also
 * matters for resumption: TLS 1.3 session tickets arrive after the
 * handshake and are taken in by the reads of the answers.
 *
 * Phase "full" gives every connection a fresh tls_client_t (no session to
 * offer); phase "resumed" shares one, which offers a pooled ticket, so
 * all but the first connection(s) resume. Nothing is shared between the
 * threads but the phase's client (thread-safe) and the atomic counters.
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "proto.h"

#define HS_OP_MS 10000    /* limit for each step of one connection */
#define HS_LOG_MAX 5      /* failures reported in detail, per phase */
#define HS_MAX_FAILS 100  /* a phase stops after this many failed connections */

struct hs_phase_ctx {
    struct bench *b;
    bool reuse;
    tls_client_t *shared;        /* reuse: the one client */
    atomic_uint_fast64_t next;   /* connections handed out */
    atomic_uint_fast64_t done, failed, resumed;
    atomic_uint logged;
    uint64_t deadline_ns;
};

struct hs_thread {
    struct hs_phase_ctx *ctx;
    pthread_t th;
    bool started;
    struct bench_hist hs, total;
};

static void hs_fail(struct hs_phase_ctx *x, uint64_t i, const char *what, int err, conn_t *c)
{
    atomic_fetch_add(&x->failed, 1);
    if (atomic_fetch_add(&x->logged, 1) >= HS_LOG_MAX)
        return;
    const char *why = c ? conn_error(c) : "";
    if (why[0])
        log_warn("handshake connection %" PRIu64 ": %s: %s", i, what, why);
    else
        log_errno(LOG_WARN, err, "handshake connection %" PRIu64 ": %s", i, what);
}

/* Connection i: handshake, sign in, sign out. */
static void hs_one(struct hs_thread *t, uint64_t i)
{
    struct hs_phase_ctx *x = t->ctx;
    struct bench *b = x->b;
    tls_client_t *cl = x->shared;
    conn_t *c = NULL;
    buf_t in;
    char req[384], why[256] = "";
    int status = 0, rc;
    uint64_t id = 0, pragma = 0;

    buf_init(&in, BENCH_RESP_MAX_HEAD + 65536);
    if (!x->reuse) {
        if (bench_tls_client(b, &cl) < 0) {
            atomic_store(&b->stop, true);
            buf_free(&in);
            return;
        }
    }
    uint64_t t0 = bench_now_ns();
    int fd = bench_connect(b);
    if (fd < 0) {
        hs_fail(x, i, "cannot connect", fd, NULL);
        goto out;
    }
    if ((rc = bench_connected_timed(fd, HS_OP_MS)) < 0) {
        close(fd);
        hs_fail(x, i, "cannot connect", rc, NULL);
        goto out;
    }
    c = tls_client_wrap(cl, fd, b->o.tls_name);
    if (!c) {
        close(fd);
        hs_fail(x, i, "cannot wrap", -ENOMEM, NULL);
        goto out;
    }
    if ((rc = conn_handshake_timed(c, HS_OP_MS)) < 0) {
        hs_fail(x, i, "handshake failed", rc, c);
        goto out;
    }
    uint64_t t_hs = bench_now_ns();
    bool resumed = c->resumed;

    int n = snprintf(req, sizeof req, "GET /sign_in?h HTTP/1.1\r\nHost: %s\r\n\r\n", b->host_hdr);
    if ((rc = conn_write_all_timed(c, req, (size_t)n, HS_OP_MS)) < 0 ||
        (rc = bench_answer_timed(c, &in, HS_OP_MS, &status, &id)) < 0) {
        hs_fail(x, i, "sign-in failed", rc, c);
        goto out;
    }
    if (status != 200 || id == 0) {
        snprintf(why, sizeof why, "sign-in answered %d%s", status, id ? "" : " without an id");
        hs_fail(x, i, why, 0, NULL);
        goto out;
    }
    buf_reset(&in);
    n = snprintf(req, sizeof req,
                 "GET /sign_out?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: %s\r\n"
                 "Connection: close\r\n\r\n",
                 id, b->host_hdr);
    if ((rc = conn_write_all_timed(c, req, (size_t)n, HS_OP_MS)) < 0 ||
        (rc = bench_answer_timed(c, &in, HS_OP_MS, &status, &pragma)) < 0) {
        hs_fail(x, i, "sign-out failed", rc, c);
        goto out;
    }
    if (status != 200) {
        snprintf(why, sizeof why, "sign-out answered %d", status);
        hs_fail(x, i, why, 0, NULL);
        goto out;
    }
    conn_close(c);
    c = NULL;
    uint64_t t1 = bench_now_ns();
    hist_add(&t->hs, (t_hs - t0) / 1000u);
    hist_add(&t->total, (t1 - t0) / 1000u);
    atomic_fetch_add(&x->done, 1);
    if (resumed)
        atomic_fetch_add(&x->resumed, 1);
out:
    conn_close(c);
    if (!x->reuse)
        tls_client_free(cl);
    buf_free(&in);
}

static void *hs_main(void *arg)
{
    struct hs_thread *t = arg;
    struct hs_phase_ctx *x = t->ctx;
    struct bench *b = x->b;
    log_set_thread_role("handshakes");
    for (;;) {
        if (atomic_load(&b->stop) || atomic_load(&x->failed) >= HS_MAX_FAILS)
            break;
        if (bench_now_ns() >= x->deadline_ns) {
            if (atomic_fetch_add(&x->logged, 1) < HS_LOG_MAX)
                log_warn("handshakes: --timeout reached");
            atomic_store(&b->stop, true);
            break;
        }
        uint64_t i = atomic_fetch_add(&x->next, 1);
        if (i >= b->o.handshakes)
            break;
        hs_one(t, i);
    }
    return NULL;
}

int bench_hs_phase(struct bench *b, bool reuse, struct bench_hs_phase *out)
{
    struct hs_phase_ctx x = {.b = b, .reuse = reuse};
    int rc = 0;
    unsigned nth = b->o.hs_parallel;

    memset(out, 0, sizeof *out);
    if (reuse && (rc = bench_tls_client(b, &x.shared)) < 0)
        return rc;
    atomic_init(&x.next, 0);
    atomic_init(&x.done, 0);
    atomic_init(&x.failed, 0);
    atomic_init(&x.resumed, 0);
    atomic_init(&x.logged, 0);
    struct hs_thread *ts = calloc(nth, sizeof *ts);
    if (!ts) {
        tls_client_free(x.shared);
        return -ENOMEM;
    }
    uint64_t t0 = bench_now_ns();
    x.deadline_ns = t0 + (uint64_t)(b->o.timeout_s * 1e9);
    for (unsigned i = 0; i < nth; i++) {
        ts[i].ctx = &x;
        int e = pthread_create(&ts[i].th, NULL, hs_main, &ts[i]);
        if (e != 0) {
            rc = -e;
            atomic_store(&b->stop, true);
            break;
        }
        ts[i].started = true;
    }
    for (unsigned i = 0; i < nth; i++) {
        if (!ts[i].started)
            continue;
        pthread_join(ts[i].th, NULL);
        hist_merge(&out->hs, &ts[i].hs);
        hist_merge(&out->total, &ts[i].total);
    }
    out->wall_s = (double)(bench_now_ns() - t0) / 1e9;
    out->done = atomic_load(&x.done);
    out->failed = atomic_load(&x.failed);
    out->resumed = atomic_load(&x.resumed);
    free(ts);
    tls_client_free(x.shared);
    if (rc == 0 && atomic_load(&b->stop))
        rc = -ETIMEDOUT;
    return rc;
}
