/*
 * bench_churn: --churn R of pcsig-bench. While the messages are relayed,
 * one thread signs transient members in and out, R cycles a second (cycle
 * k is due at start + k / R; a late cycle starts at once, with no burst to
 * catch up). A cycle is one connection, plain or TLS through the thread's
 * own client: GET /sign_in?churn<k> and GET /sign_out?peer_id=<id>
 * (HTTP/1.1, the second with Connection: close). Each successful sign-in
 * is timed twice: from its request and from the connect (see struct bench).
 *
 * Churn members are never sent messages, so the relay's exactly-once and
 * order checks are untouched by them; what churn adds is membership traffic
 * the server must broadcast while it relays, and a check of its own: every
 * steady peer must see each churn member join once and leave once. The
 * receiver loops count notifications about names starting with
 * BENCH_CHURN_PREFIX apart (b->churn_joins, b->churn_leaves); main waits
 * in the drain until both reach peers x cycles, and the run fails when they
 * differ from it or a cycle failed.
 *
 * Ownership: struct bench_churn is allocated by bench_churn_start and freed
 * by bench_churn_join; nothing in it is shared but the atomics of struct
 * bench.
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define CHURN_OP_MS 10000 /* limit for each step of one cycle */
#define CHURN_LOG_MAX 5   /* failures reported in detail */
#define CHURN_MAX_FAILS 100 /* the thread gives up after this many */

struct bench_churn {
    struct bench *b;
    pthread_t th;
    tls_client_t *tls; /* --tls: this thread's client context */
    unsigned logged;
};

static void churn_fail(struct bench_churn *ch, uint64_t k, const char *what, int err,
                       const conn_t *c)
{
    atomic_fetch_add(&ch->b->churn_failed, 1);
    if (ch->logged++ >= CHURN_LOG_MAX)
        return;
    const char *why = c ? conn_error(c) : "";
    if (why[0])
        log_warn("churn cycle %" PRIu64 ": %s: %s", k, what, why);
    else if (err)
        log_errno(LOG_WARN, err, "churn cycle %" PRIu64 ": %s", k, what);
    else
        log_warn("churn cycle %" PRIu64 ": %s", k, what);
}

/* One request on c and its answer: 0 with *status and *pragma, or -errno. */
static int churn_round_trip(conn_t *c, buf_t *req, buf_t *in, int *status, uint64_t *pragma)
{
    int rc = conn_write_all_timed(c, req->data, req->len, CHURN_OP_MS);
    if (rc < 0)
        return rc;
    buf_reset(in);
    return bench_answer_timed(c, in, CHURN_OP_MS, status, pragma);
}

/* Cycle k: connect, sign in, sign out. */
static void churn_cycle(struct bench_churn *ch, uint64_t k, buf_t *req, buf_t *in)
{
    struct bench *b = ch->b;
    struct bench_conn bc = {0};
    int status = 0, rc;
    uint64_t id = 0, pragma = 0;
    uint64_t t_connect = bench_now_ns();

    if ((rc = bench_open(b, ch->tls, &bc)) < 0) {
        churn_fail(ch, k, "cannot connect", rc, NULL);
        return;
    }
    if ((rc = bench_connected_timed(bench_fd(&bc), CHURN_OP_MS)) < 0 ||
        (rc = conn_handshake_timed(bc.c, CHURN_OP_MS)) < 0) {
        churn_fail(ch, k, "cannot connect", rc, bc.c);
        goto out;
    }
    if (bc.c->secure)
        atomic_fetch_add(bc.c->resumed ? &b->tls_resumed : &b->tls_full, 1);

    uint64_t t_signin = bench_now_ns();
    buf_reset(req);
    if (buf_printf(req, "GET /sign_in?%s%" PRIu64 " HTTP/1.1\r\nHost: %s\r\n\r\n",
                   BENCH_CHURN_PREFIX, k, b->host_hdr) < 0 ||
        (rc = churn_round_trip(bc.c, req, in, &status, &id)) < 0) {
        churn_fail(ch, k, "sign-in failed", rc, bc.c);
        goto out;
    }
    if (status != 200 || id == 0) {
        char why[64];
        snprintf(why, sizeof why, "sign-in answered %d%s", status, id ? "" : " without an id");
        churn_fail(ch, k, why, 0, NULL);
        goto out;
    }
    atomic_fetch_add(&b->churn_signins, 1);
    uint64_t t_answer = bench_now_ns();
    hist_add(&b->churn_signin_us, (t_answer - t_signin) / 1000);
    hist_add(&b->churn_connect_us, (t_answer - t_connect) / 1000);

    buf_reset(req);
    if (buf_printf(req,
                   "GET /sign_out?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: %s\r\n"
                   "Connection: close\r\n\r\n",
                   id, b->host_hdr) < 0 ||
        (rc = churn_round_trip(bc.c, req, in, &status, &pragma)) < 0) {
        churn_fail(ch, k, "sign-out failed", rc, bc.c);
        goto out;
    }
    if (status != 200) {
        char why[64];
        snprintf(why, sizeof why, "sign-out answered %d", status);
        churn_fail(ch, k, why, 0, NULL);
        goto out;
    }
    atomic_fetch_add(&b->churn_signouts, 1);
out:
    bench_close(&bc);
}

static void *churn_main(void *arg)
{
    struct bench_churn *ch = arg;
    struct bench *b = ch->b;
    buf_t req, in;
    log_set_thread_role("churn");
    buf_init(&req, 1024);
    /* A sign-in answer lists every member: room for the whole list. */
    buf_init(&in, BENCH_RESP_MAX_HEAD + (size_t)b->o.peers * 64 + 65536);
    double interval_ns = 1e9 / b->o.churn_rate;
    uint64_t start = bench_now_ns();
    for (uint64_t k = 1;; k++) {
        uint64_t due = start + (uint64_t)((double)(k - 1) * interval_ns);
        for (;;) {
            if (atomic_load(&b->churn_stop) || atomic_load(&b->stop))
                goto done;
            uint64_t now = bench_now_ns();
            if (now >= due)
                break;
            uint64_t wait = due - now;
            if (wait > 10000000u) /* look at the stop flags every 10 ms */
                wait = 10000000u;
            struct timespec ts = {0, (long)wait};
            nanosleep(&ts, NULL);
        }
        churn_cycle(ch, k, &req, &in);
        if (atomic_load(&b->churn_failed) >= CHURN_MAX_FAILS) {
            log_error("churn: %d cycles failed; no more churn", CHURN_MAX_FAILS);
            break;
        }
    }
done:
    buf_free(&req);
    buf_free(&in);
    return NULL;
}

int bench_churn_start(struct bench *b, struct bench_churn **out)
{
    *out = NULL;
    struct bench_churn *ch = calloc(1, sizeof *ch);
    if (!ch)
        return -ENOMEM;
    ch->b = b;
    int rc;
    if (b->o.tls && (rc = bench_tls_client(b, &ch->tls)) < 0) {
        free(ch);
        return rc;
    }
    if ((rc = pthread_create(&ch->th, NULL, churn_main, ch)) != 0) {
        tls_client_free(ch->tls);
        free(ch);
        return -rc;
    }
    *out = ch;
    return 0;
}

void bench_churn_join(struct bench_churn *ch)
{
    if (!ch)
        return;
    atomic_store(&ch->b->churn_stop, true);
    pthread_join(ch->th, NULL);
    tls_client_free(ch->tls);
    free(ch);
}

bool bench_is_churn_name(const char *name, size_t len)
{
    size_t n = sizeof BENCH_CHURN_PREFIX - 1;
    return len > n && memcmp(name, BENCH_CHURN_PREFIX, n) == 0;
}
