/*
 * Cluster (issue 17 items 2-4): three pcsig-server instances sharing one
 * real redis-server, with haproxy in round robin in front, act as one
 * server:
 *  - cross-instance: sign in on A, wait on B, send from C; the sign-in list
 *    in join order; a displaced /wait across instances gets 409; sign-out
 *    and unknown targets; ids never reused;
 *  - --secure-ids and --auth-token across instances;
 *  - kill -9 of an instance: nothing accepted is lost, waits reconnect
 *    through haproxy and carry on, a member that never comes back times
 *    out once;
 *  - Redis stopped and started again: /health 503 "degraded", 503 answers
 *    (no losses) while it is down, everything resumes after;
 *  - churn: 100 peers joining, messaging and leaving through haproxy; every
 *    join/leave arrives once, in one order, every message exactly once and
 *    in order per sender.
 * Skipped (exit 77, with the reason) when the server has no --cluster or
 * redis-server/haproxy are missing.
 */
#include "cluster.h"
#include "harness.h"
#include "strlit.h"

#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* Redis and haproxy for every test (started once: most of a cluster's
 * start-up CPU); each test starts its own three instances (Redis emptied
 * first) and the teardown stops them. The instances' logs stay in the
 * directory unless PCSIG_TEST_VERBOSE. */
static hc_cluster_t C;

static int cl_group_setup(void **state)
{
    (void)state;
    hc_init(&C, hc_server_path(), NULL, 3);
    if (getenv("PCSIG_TEST_VERBOSE"))
        C.err_fd = 2;
    if (hc_base_start(&C) < 0) {
        fprintf(stderr, "cluster: Redis and haproxy: %s\n", C.why);
        hc_stop(&C);
        return -1;
    }
    return 0;
}

static int cl_group_teardown(void **state)
{
    (void)state;
    if (C.dir[0] && getenv("PCSIG_TEST_VERBOSE"))
        fprintf(stderr, "cluster dir %s\n", C.dir);
    hc_stop(&C);
    return 0;
}

static int cl_teardown(void **state)
{
    hc_instances_stop(&C);
    return h_teardown(state);
}

#define CL_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, cl_teardown)

/* The test's instances, with extra options (NULL-terminated), and
 * instance 2 with victim's after them (NULL: none). */
static void cl_start_victim(const char *const *extra, const char *const *victim)
{
    hc_set_extra(&C, extra);
    C.inst[2].extra = victim;
    int rc = hc_instances_start(&C);
    C.inst[2].extra = NULL; /* the next test's is its own */
    if (rc < 0)
        fail_msg("cluster start: %s", C.why);
}

static void cl_start(const char *const *extra)
{
    cl_start_victim(extra, NULL);
}

/* Instance i (or haproxy when i == SIZE_MAX) as a harness server. */
static h_server_t at(size_t i)
{
    h_server_t s;
    memset(&s, 0, sizeof s);
    s.pidfd = s.out_fd = -1;
    snprintf(s.host, sizeof s.host, "127.0.0.1");
    s.port = i == SIZE_MAX ? C.lb_port : C.inst[i].port;
    return s;
}
#define LB SIZE_MAX

/* A sign-in answer: 200 Added; returns the id, the body in *body. */
static uint64_t sign_in_list(const h_server_t *s, const char *name, char *body, size_t cap)
{
    char req[128];
    snprintf(req, sizeof req, "GET /sign_in?%s HTTP/1.0\r\n\r\n", name);
    h_resp_t *r = h_request_str(s, req);
    if (r->status != 200)
        fail_msg("sign-in of %s on port %u: %d %s %s", name, (unsigned)s->port, r->status,
                 r->reason, r->body);
    long long id = h_hdr_num(r, "Pragma");
    assert_true(id > 0);
    snprintf(body, cap, "%s", r->body);
    h_resp_free(r);
    return (uint64_t)id;
}

/* The next /wait answer of id through s must be body from `from`. */
static void expect_wait(const h_server_t *s, uint64_t id, uint64_t from, const char *body)
{
    h_resp_t *r = h_wait_once(s, id);
    if (r->status != 200 || h_hdr_num(r, "Pragma") != (long long)from ||
        strcmp(r->body, body) != 0)
        fail_msg("wait of %" PRIu64 " on port %u: expected \"%s\" from %" PRIu64
                 ", got %d %s Pragma %s \"%s\"",
                 id, (unsigned)s->port, body, from, r->status, r->reason,
                 h_hdr(r, "Pragma") ? h_hdr(r, "Pragma") : "-", r->body);
    h_resp_free(r);
}

static void entry(char *out, size_t cap, const char *name, uint64_t id, int on)
{
    snprintf(out, cap, "%s,%" PRIu64 ",%d\n", name, id, on);
}

/* Open a /wait of id on s (HTTP/1.0) and leave it parked. */
static h_conn_t *park(const h_server_t *s, uint64_t id)
{
    h_conn_t *c = h_connect(s);
    h_sendf(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", id);
    return c;
}

/* ---- sign in on A, wait on B, send from C --------------------------------- */

static void test_cross_instance(void **state)
{
    (void)state;
    cl_start(NULL);
    h_server_t A = at(0), B = at(1), Cc = at(2);
    char body[1024], want[1024], e1[64], e2[64], e3[64];

    uint64_t alice = sign_in_list(&A, "alice", body, sizeof body);
    entry(e1, sizeof e1, "alice", alice, 1);
    assert_string_equal(body, e1);
    uint64_t bob = sign_in_list(&B, "bob", body, sizeof body);
    entry(e2, sizeof e2, "bob", bob, 1);
    snprintf(want, sizeof want, "%s%s", e2, e1);
    assert_string_equal(body, want); /* own entry first, then join order */
    uint64_t carol = sign_in_list(&Cc, "carol", body, sizeof body);
    entry(e3, sizeof e3, "carol", carol, 1);
    snprintf(want, sizeof want, "%s%s%s", e3, e1, e2);
    assert_string_equal(body, want);
    assert_true(alice < bob && bob < carol); /* one counter for the cluster */

    /* Joins heard wherever the wait lands, in join order. */
    expect_wait(&B, alice, alice, e2);
    expect_wait(&Cc, alice, alice, e3);
    expect_wait(&A, bob, bob, e3);

    /* Messages accepted by any instance, delivered in order wherever the
     * target waits. */
    const h_server_t *via[3] = {&A, &B, &Cc};
    for (int k = 0; k < 12; k++) {
        char m[32];
        snprintf(m, sizeof m, "m%d", k);
        h_send_ok(via[k % 3], alice, bob, m, strlen(m), "text/plain");
    }
    for (int k = 0; k < 12; k++) {
        char m[32];
        snprintf(m, sizeof m, "m%d", k);
        expect_wait(via[(k + 1) % 3], bob, alice, m);
    }

    /* An empty body (its queued byte count goes down by 0). */
    h_send_ok(&A, alice, bob, "", 0, "text/plain");
    expect_wait(&B, bob, alice, "");
    h_send_ok(&B, alice, bob, "after-empty", strlen("after-empty"), "text/plain");
    expect_wait(&Cc, bob, alice, "after-empty");

    /* A parked wait delivered to from another instance. */
    h_conn_t *w = park(&B, bob);
    h_wait_parked(&B, 1, H_TIMEOUT_MS);
    h_send_ok(&Cc, carol, bob, "to-parked", strlen("to-parked"), "text/plain");
    h_resp_t *r = h_read(w);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, carol);
    H_ASSERT_BODY(r, "to-parked");
    h_resp_free(r);
    h_close(w);

    /* A second /wait on another instance displaces the first: 409. */
    h_conn_t *first = park(&A, bob);
    h_wait_parked(&A, 1, H_TIMEOUT_MS);
    h_conn_t *second = park(&B, bob);
    r = h_read(first);
    if (r->status != 409)
        fail_msg("displaced wait on A: expected 409, got %d %s \"%s\"", r->status, r->reason,
                 r->body);
    h_resp_free(r);
    h_close(first);
    h_wait_parked(&B, 1, H_TIMEOUT_MS);
    h_send_ok(&Cc, alice, bob, "after-409", strlen("after-409"), "text/plain");
    r = h_read(second);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, alice);
    H_ASSERT_BODY(r, "after-409");
    h_resp_free(r);
    h_close(second);

    /* An unknown target: 500 from every instance. */
    for (int i = 0; i < 3; i++) {
        r = h_post_message(via[i], alice, carol + 1000, "x", strlen("x"), "text/plain");
        if (r->status != 500)
            fail_msg("message to an unknown id on instance %d: %d %s", i, r->status, r->reason);
        h_resp_free(r);
    }

    /* Sign-out on A, heard on B and C. */
    r = h_sign_out(&A, carol);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    entry(e3, sizeof e3, "carol", carol, 0);
    expect_wait(&B, alice, alice, e3);
    expect_wait(&Cc, bob, bob, e3);
    r = h_post_message(&B, alice, carol, "x", strlen("x"), "text/plain");
    assert_int_equal(r->status, 500);
    h_resp_free(r);

    /* Ids never reused: the next is beyond carol's, on any instance. */
    uint64_t dave = sign_in_list(&B, "dave", body, sizeof body);
    assert_true(dave > carol);
    h_pass();
}

/* ---- --secure-ids and --auth-token across instances ----------------------- */

static h_resp_t *get_with(const h_server_t *s, const char *path, const char *hdr)
{
    h_conn_t *c = h_connect(s);
    h_sendf(c, "GET %s HTTP/1.0\r\n%s\r\n", path, hdr);
    h_resp_t *r = h_read(c);
    h_close(c);
    return r;
}

static void test_secure_ids_and_auth_across(void **state)
{
    (void)state;
    const char *const extra[] = {"--secure-ids", "--auth-token", "s3cret", NULL};
    cl_start(extra);
    h_server_t A = at(0), B = at(1), Cc = at(2);
    const char *auth = "Authorization: Bearer s3cret\r\n";

    h_resp_t *r = get_with(&B, "/sign_in?alice", "");
    assert_int_equal(r->status, 401);
    h_resp_free(r);
    r = get_with(&A, "/sign_in?alice", auth);
    H_ASSERT_STATUS(r, 200, "Added");
    uint64_t alice = (uint64_t)h_hdr_num(r, "Pragma");
    char ta[256], tb[256];
    assert_non_null(h_hdr(r, "X-Pcsig-Token"));
    snprintf(ta, sizeof ta, "%s", h_hdr(r, "X-Pcsig-Token"));
    h_resp_free(r);
    r = get_with(&Cc, "/sign_in?bob", auth);
    H_ASSERT_STATUS(r, 200, "Added");
    uint64_t bob = (uint64_t)h_hdr_num(r, "Pragma");
    assert_non_null(h_hdr(r, "X-Pcsig-Token"));
    snprintf(tb, sizeof tb, "%s", h_hdr(r, "X-Pcsig-Token"));
    h_resp_free(r);

    char path[512], hdr[320];
    /* Without the token, or with bob's, alice's wait is refused anywhere. */
    snprintf(path, sizeof path, "/wait?peer_id=%" PRIu64, alice);
    r = get_with(&B, path, "");
    assert_int_equal(r->status, 403);
    h_resp_free(r);
    snprintf(hdr, sizeof hdr, "X-Pcsig-Token: %s\r\n", tb);
    r = get_with(&Cc, path, hdr);
    assert_int_equal(r->status, 403);
    h_resp_free(r);
    /* With it, on an instance other than the one that issued it. */
    snprintf(hdr, sizeof hdr, "X-Pcsig-Token: %s\r\n", ta);
    r = get_with(&B, path, hdr);
    H_ASSERT_STATUS(r, 200, "OK");
    char e[64];
    entry(e, sizeof e, "bob", bob, 1);
    H_ASSERT_BODY(r, e);
    h_resp_free(r);

    /* A message needs the sender's token, wherever it lands. */
    h_conn_t *c = h_connect(&A);
    h_sendf(c, "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.0\r\n"
            "Content-Length: 2\r\n\r\nhi", bob, alice);
    r = h_read(c);
    assert_int_equal(r->status, 403);
    h_resp_free(r);
    h_close(c);
    c = h_connect(&A);
    h_sendf(c, "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 "&token=%s HTTP/1.0\r\n"
            "Content-Length: 2\r\n\r\nhi", bob, alice, tb);
    r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    h_close(c);
    snprintf(path, sizeof path, "/wait?peer_id=%" PRIu64 "&token=%s", alice, ta);
    r = get_with(&Cc, path, "");
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, bob);
    H_ASSERT_BODY(r, "hi");
    h_resp_free(r);

    /* Sign-out with the token from yet another instance. */
    snprintf(path, sizeof path, "/sign_out?peer_id=%" PRIu64, bob);
    r = get_with(&B, path, "");
    assert_int_equal(r->status, 403);
    h_resp_free(r);
    snprintf(hdr, sizeof hdr, "X-Pcsig-Token: %s\r\n", tb);
    r = get_with(&B, path, hdr);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    h_pass();
}

/* ---- peers: parked waits over many connections ---------------------------- */

typedef struct peer {
    uint64_t id;
    char name[24];
    h_conn_t *w;        /* the parked /wait (keep-alive), NULL when none */
    unsigned on_conn;   /* answers on w so far */
    bool alive;
    /* join/leave notifications: expected (in order) and how many arrived */
    char **expect;
    size_t nexpect, capexpect, got;
    /* messages: from sender index k, how many arrived (each in order) */
    unsigned *msgs_in;
    size_t nmsgs_in_expected, nmsgs_in;
    bool end_seen;      /* the final sentinel */
} peer_t;

static void expect_note(peer_t *p, const char *line)
{
    if (p->nexpect == p->capexpect) {
        p->capexpect = p->capexpect ? 2 * p->capexpect : 64;
        p->expect = realloc(p->expect, p->capexpect * sizeof *p->expect);
        assert_non_null(p->expect);
    }
    p->expect[p->nexpect++] = strdup(line);
}

static void peer_free(peer_t *p)
{
    for (size_t i = 0; i < p->nexpect; i++)
        free(p->expect[i]);
    free(p->expect);
    free(p->msgs_in);
    if (p->w)
        h_close(p->w);
    memset(p, 0, sizeof *p);
}

/* Park p's /wait (HTTP/1.1 keep-alive) on s, on a new connection unless it
 * has one. */
static void peer_park(peer_t *p, const h_server_t *s)
{
    if (!p->w) {
        p->w = h_connect(s);
        p->on_conn = 0;
    }
    h_sendf(p->w, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: pcsig\r\n\r\n", p->id);
}

/* One answer to p's wait: check it against what p expects. */
static void peer_answer(peer_t *ps, size_t np, peer_t *p, h_resp_t *r)
{
    if (r->status != 200)
        fail_msg("%s's wait: %d %s \"%s\"", p->name, r->status, r->reason, r->body);
    long long from = h_hdr_num(r, "Pragma");
    if (from == (long long)p->id) {
        if (r->body_len == 0)
            return; /* an idle wait's empty answer */
        if (p->got >= p->nexpect)
            fail_msg("%s: an unexpected (duplicate?) notification \"%s\" after all %zu "
                     "expected", p->name, r->body, p->nexpect);
        if (strcmp(r->body, p->expect[p->got]) != 0)
            fail_msg("%s: notification %zu is \"%s\", expected \"%s\"", p->name, p->got,
                     r->body, p->expect[p->got]);
        p->got++;
        return;
    }
    if (strcmp(r->body, "END") == 0) {
        if (p->nmsgs_in != p->nmsgs_in_expected || p->got != p->nexpect)
            fail_msg("%s: END before all: %zu/%zu messages, %zu/%zu notifications", p->name,
                     p->nmsgs_in, p->nmsgs_in_expected, p->got, p->nexpect);
        p->end_seen = true;
        return;
    }
    unsigned k, seq;
    if (sscanf(r->body, "m %u %u", &k, &seq) != 2 || k >= np || ps[k].id != (uint64_t)from)
        fail_msg("%s: unexpected message \"%s\" Pragma %lld", p->name, r->body, from);
    if (p->end_seen)
        fail_msg("%s: message \"%s\" after END", p->name, r->body);
    if (seq != p->msgs_in[k])
        fail_msg("%s: message %u from %s is number %u (duplicate or out of order)", p->name,
                 p->msgs_in[k], ps[k].name, seq);
    p->msgs_in[k]++;
    p->nmsgs_in++;
}

/* Read what arrived for the parked waits (up to ms): answers are checked and
 * the waits parked again (every 6th answer on a new connection through s:
 * waits move between instances). */
static void pump(peer_t *ps, size_t np, const h_server_t *s, int ms)
{
    struct pollfd *pf = calloc(np, sizeof *pf);
    assert_non_null(pf);
    for (size_t i = 0; i < np; i++)
        pf[i] = (struct pollfd){.fd = ps[i].w ? h_fd(ps[i].w) : -1, .events = POLLIN};
    int r = poll(pf, (nfds_t)np, ms);
    for (size_t i = 0; r > 0 && i < np; i++) {
        if (!pf[i].revents || !ps[i].w)
            continue;
        peer_t *p = &ps[i];
        ssize_t n = h_pump(p->w);
        h_resp_t *resp;
        bool answered = false;
        while ((resp = h_take(p->w)) != NULL) {
            peer_answer(ps, np, p, resp);
            bool closing = h_hdr(resp, "Connection") &&
                           strcasecmp(h_hdr(resp, "Connection"), "close") == 0;
            h_resp_free(resp);
            answered = true;
            p->on_conn++;
            if (closing)
                n = 0;
        }
        if (n == 0 || (answered && p->on_conn % 6 == 0)) {
            if (n == 0 && !answered)
                fail_msg("%s's wait connection closed without an answer", p->name);
            h_close(p->w);
            p->w = NULL;
        }
        if (answered && p->alive)
            peer_park(p, s);
    }
    free(pf);
}

static bool peer_complete(const peer_t *p)
{
    return p->got == p->nexpect && p->nmsgs_in == p->nmsgs_in_expected;
}

/* Pump until every alive peer (or only peers[only] when only < np) has
 * everything expected; fails after ms. */
static void pump_until_complete(peer_t *ps, size_t np, size_t only, const h_server_t *s,
                                int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    for (;;) {
        bool done = true;
        for (size_t i = 0; i < np && done; i++)
            if ((only == np || only == i) && ps[i].alive && !peer_complete(&ps[i]))
                done = false;
        if (done)
            return;
        if (h_ms_left(deadline) == 0) {
            for (size_t i = 0; i < np; i++)
                if ((only == np || only == i) && ps[i].alive && !peer_complete(&ps[i]))
                    fail_msg("%s: after %d ms %zu/%zu notifications (next \"%s\"), %zu/%zu "
                             "messages", ps[i].name, ms, ps[i].got, ps[i].nexpect,
                             ps[i].got < ps[i].nexpect ? ps[i].expect[ps[i].got] : "-",
                             ps[i].nmsgs_in, ps[i].nmsgs_in_expected);
        }
        pump(ps, np, s, 50);
    }
}

/* ---- churn ------------------------------------------------------------------ */

#define CHURN_PEERS 100
#define CHURN_WAVE 20
#define CHURN_LEAVE 15
#define CHURN_MSGS 100 /* per wave */

static void test_churn(void **state)
{
    (void)state;
    cl_start(NULL);
    h_server_t L = at(LB);
    static peer_t ps[CHURN_PEERS];
    size_t np = 0;
    /* msgs_out[k][t]: messages k sent to t */
    static unsigned msgs_out[CHURN_PEERS][CHURN_PEERS];
    memset(msgs_out, 0, sizeof msgs_out);
    unsigned seed = 17;

    while (np < CHURN_PEERS) {
        /* A wave of joins, each heard by every member already there. */
        for (size_t j = 0; j < CHURN_WAVE && np < CHURN_PEERS; j++, np++) {
            peer_t *p = &ps[np];
            memset(p, 0, sizeof *p);
            snprintf(p->name, sizeof p->name, "p%zu", np);
            char body[1 << 14];
            p->id = sign_in_list(&L, p->name, body, sizeof body);
            p->alive = true;
            p->msgs_in = calloc(CHURN_PEERS, sizeof *p->msgs_in);
            char e[64];
            entry(e, sizeof e, p->name, p->id, 1);
            for (size_t k = 0; k < np; k++)
                if (ps[k].alive)
                    expect_note(&ps[k], e);
            peer_park(p, &L);
            pump(ps, np + 1, &L, 0);
        }
        /* Messages between random members, through haproxy. */
        size_t alive[CHURN_PEERS], na = 0;
        for (size_t k = 0; k < np; k++)
            if (ps[k].alive)
                alive[na++] = k;
        for (int m = 0; m < CHURN_MSGS; m++) {
            size_t from = alive[rand_r(&seed) % na], to = alive[rand_r(&seed) % na];
            if (from == to)
                continue;
            char body[48];
            snprintf(body, sizeof body, "m %zu %u", from, msgs_out[from][to]);
            h_send_ok(&L, ps[from].id, ps[to].id, body, strlen(body), "text/plain");
            msgs_out[from][to]++;
            ps[to].nmsgs_in_expected++;
            pump(ps, np, &L, 0);
        }
        /* Leaves: a member leaves once it has everything meant for it. */
        if (np == CHURN_PEERS)
            break;
        for (int l = 0; l < CHURN_LEAVE; l++) {
            na = 0;
            for (size_t k = 0; k < np; k++)
                if (ps[k].alive)
                    alive[na++] = k;
            size_t k = alive[rand_r(&seed) % na];
            pump_until_complete(ps, np, k, &L, 20000);
            ps[k].alive = false;
            /* Its wait ends with its own sign-out: closed first. */
            h_close(ps[k].w);
            ps[k].w = NULL;
            h_resp_t *r = h_sign_out(&L, ps[k].id);
            H_ASSERT_STATUS(r, 200, "OK");
            h_resp_free(r);
            char e[64];
            entry(e, sizeof e, ps[k].name, ps[k].id, 0);
            for (size_t o = 0; o < np; o++)
                if (ps[o].alive)
                    expect_note(&ps[o], e);
        }
    }
    pump_until_complete(ps, np, np, &L, 30000);
    /* Nothing more is on its way: a last message to each, which must be the
     * next thing it gets (a duplicate would come before it). */
    size_t sender = np;
    for (size_t k = 0; k < np && sender == np; k++)
        if (ps[k].alive)
            sender = k;
    for (size_t k = 0; k < np; k++)
        if (ps[k].alive && k != sender)
            h_send_ok(&L, ps[sender].id, ps[k].id, "END", strlen("END"), "text/plain");
    uint64_t deadline = h_now_ms() + 20000;
    for (;;) {
        size_t missing = 0;
        for (size_t k = 0; k < np; k++)
            if (ps[k].alive && k != sender && !ps[k].end_seen)
                missing++;
        if (missing == 0)
            break;
        if (h_ms_left(deadline) == 0)
            fail_msg("%zu members never got END", missing);
        pump(ps, np, &L, 50);
    }
    size_t total = 0;
    for (size_t k = 0; k < np; k++)
        total += ps[k].got + ps[k].nmsgs_in;
    print_message("churn: %zu peers, %zu notifications and messages checked\n", np, total);
    for (size_t k = 0; k < np; k++)
        peer_free(&ps[k]);
    h_pass();
}

/* ---- kill -9 of one instance ------------------------------------------------ */

static void test_kill9(void **state)
{
    (void)state;
    /* dave's leave comes the victim's --cluster-lease after the kill (its
     * heartbeat's key lapses), then --member-timeout. The survivors' 2 s
     * (not 3) is four heartbeats, room for a loaded machine's late one;
     * the victim's 1 s only needs to hold until the kill (a live instance
     * taken for dead would take its leases back at its next heartbeat
     * anyway). */
    const char *const extra[] = {"--member-timeout", "4", "--cluster-lease", "2", NULL};
    const char *const victim[] = {"--cluster-lease", "1", NULL};
    cl_start_victim(extra, victim);
    h_server_t A = at(0), B = at(1), V = at(2), L = at(LB);
    char body[1024], e[64];

    /* alice, bob, carol and dave, all signed in on the victim V. */
    const char *names[] = {"alice", "bob", "carol", "dave"};
    uint64_t id[4];
    for (int i = 0; i < 4; i++)
        id[i] = sign_in_list(&V, names[i], body, sizeof body);
    /* Their join notifications, taken on the other instances. */
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) {
            entry(e, sizeof e, names[j], id[j], 1);
            expect_wait(i % 2 ? &A : &B, id[i], id[i], e);
        }

    /* carol and dave park on V; messages accepted by V for alice and bob
     * (not waiting: queued), and by A for carol (delivered to V's wait). */
    h_conn_t *wc = park(&V, id[2]);
    h_conn_t *wd = park(&V, id[3]);
    h_wait_parked(&V, 2, H_TIMEOUT_MS);
    for (int k = 0; k < 5; k++) {
        char m[16];
        snprintf(m, sizeof m, "v%d", k);
        h_send_ok(&V, id[1], id[0], m, strlen(m), "text/plain");
        h_send_ok(&V, id[0], id[1], m, strlen(m), "text/plain");
    }
    h_send_ok(&A, id[0], id[2], "c0", strlen("c0"), "text/plain");
    h_resp_t *r = h_read(wc);
    H_ASSERT_BODY(r, "c0");
    h_resp_free(r);
    h_close(wc);
    /* carol is not waiting now: these wait for her in the queue. */
    for (int k = 1; k <= 3; k++) {
        char m[16];
        snprintf(m, sizeof m, "c%d", k);
        h_send_ok(&B, id[0], id[2], m, strlen(m), "text/plain");
    }

    /* kill -9: dave's wait dies with it. */
    int code = hc_instance_signal(&C, 2, SIGKILL);
    assert_int_equal(code, 128 + SIGKILL);
    h_expect_eof(wd, H_TIMEOUT_MS);
    h_close(wd);

    /* carol comes back through haproxy: her queue is intact. */
    for (int k = 1; k <= 3; k++) {
        char m[16];
        snprintf(m, sizeof m, "c%d", k);
        expect_wait(&L, id[2], id[0], m);
    }
    /* Everything V accepted for alice and bob arrives, in order. */
    for (int k = 0; k < 5; k++) {
        char m[16];
        snprintf(m, sizeof m, "v%d", k);
        expect_wait(&L, id[0], id[1], m);
        expect_wait(&L, id[1], id[0], m);
    }

    /* dave never comes back: alice, bob and carol (waiting through
     * haproxy) hear his leave once. */
    static peer_t ps[3];
    memset(ps, 0, sizeof ps);
    entry(e, sizeof e, "dave", id[3], 0);
    for (int i = 0; i < 3; i++) {
        ps[i].id = id[i];
        snprintf(ps[i].name, sizeof ps[i].name, "%s", names[i]);
        ps[i].alive = true;
        ps[i].msgs_in = calloc(3, sizeof *ps[i].msgs_in);
        expect_note(&ps[i], e);
        peer_park(&ps[i], &L);
    }
    pump_until_complete(ps, 3, 3, &L, 30000);
    /* ... and only once: the next notification is eve's join. */
    uint64_t eve = sign_in_list(&L, "eve", body, sizeof body);
    assert_null(strstr(body, "dave"));
    entry(e, sizeof e, "eve", eve, 1);
    for (int i = 0; i < 3; i++)
        expect_note(&ps[i], e);
    pump_until_complete(ps, 3, 3, &L, 20000);
    /* dave's id is gone everywhere. */
    r = h_post_message(&A, id[0], id[3], "x", strlen("x"), "text/plain");
    assert_int_equal(r->status, 500);
    h_resp_free(r);
    for (int i = 0; i < 3; i++)
        peer_free(&ps[i]);
    h_pass();
}

/* ---- Redis stopped and started again ---------------------------------------- */

static void await_health(size_t i, int status, const char *needle, int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    char body[4096];
    int st = 0, pause = 1;
    for (;;) {
        st = hc_http_get(C.inst[i].port, "/health", body, sizeof body, 2000);
        if (st == status && (!needle || strstr(body, needle)))
            return;
        if (h_ms_left(deadline) == 0)
            fail_msg("instance %zu: /health %d \"%s\", expected %d with \"%s\"", i, st, body,
                     status, needle ? needle : "");
        poll(NULL, 0, pause);
        if (pause < 50)
            pause *= 2;
    }
}

static void test_redis_restart(void **state)
{
    (void)state;
    cl_start(NULL);
    h_server_t L = at(LB);
    char body[1024], e[64];
    uint64_t alice = sign_in_list(&L, "alice", body, sizeof body);
    uint64_t bob = sign_in_list(&L, "bob", body, sizeof body);
    entry(e, sizeof e, "bob", bob, 1);
    expect_wait(&L, alice, alice, e);
    for (int k = 0; k < 3; k++) {
        char m[16];
        snprintf(m, sizeof m, "before%d", k);
        h_send_ok(&L, alice, bob, m, strlen(m), "text/plain");
    }

    /* Redis goes away (its data saved for its return). */
    hc_redis_stop(&C);
    for (size_t i = 0; i < 3; i++)
        await_health(i, 503, "\"status\":\"degraded\"", 15000);
    /* New requests get 503, on every instance: refused, not lost. */
    for (size_t i = 0; i < 3; i++) {
        h_server_t s = at(i);
        h_resp_t *r = h_post_message(&s, alice, bob, "during", strlen("during"), "text/plain");
        if (r->status != 503)
            fail_msg("message while Redis is down, instance %zu: %d %s", i, r->status,
                     r->reason);
        h_resp_free(r);
        r = h_request_str(&s, "GET /sign_in?carol HTTP/1.0\r\n\r\n");
        if (r->status != 503)
            fail_msg("sign-in while Redis is down, instance %zu: %d %s", i, r->status,
                     r->reason);
        h_resp_free(r);
    }

    /* Back: every instance reconnects by itself. */
    if (hc_redis_start(&C) < 0)
        fail_msg("redis restart: %s", C.why);
    for (size_t i = 0; i < 3; i++)
        await_health(i, 200, NULL, 20000);
    for (int k = 0; k < 3; k++) {
        char m[16];
        snprintf(m, sizeof m, "before%d", k);
        expect_wait(&L, bob, alice, m);
    }
    h_send_ok(&L, alice, bob, "after", strlen("after"), "text/plain");
    expect_wait(&L, bob, alice, "after");
    uint64_t carol = sign_in_list(&L, "carol", body, sizeof body);
    assert_true(carol > bob);
    h_pass();
}

int main(void)
{
    /* These tests address the instances themselves: the harness's sums
     * over pcsig-cluster-launch's instances (tests/cluster/run.sh) are not
     * for them. */
    unsetenv("PCSIG_TEST_CLUSTER");
    char why[512];
    if (!hc_available(hc_server_path(), why, sizeof why)) {
        printf("SKIP test_cluster: %s\n", why);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        CL_TEST(test_cross_instance),
        CL_TEST(test_secure_ids_and_auth_across),
        CL_TEST(test_kill9),
        CL_TEST(test_redis_restart),
        CL_TEST(test_churn),
    };
    return cmocka_run_group_tests(tests, cl_group_setup, cl_group_teardown);
}
