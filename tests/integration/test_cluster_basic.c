/*
 * --cluster with real parts: Debian's redis-server on a free loopback port
 * and two pcsig-server instances, A and B, sharing it. Checks that they act
 * as one server whichever instance a request reaches: sign in on A, wait on
 * B, a message sent through A reaches B's wait; joins and leaves heard
 * across instances; sign-out across; 500 for an unknown target; 409 for a
 * wait displaced by one on the other instance; an instance killed with
 * SIGKILL loses nothing queued and its member times out once its
 * --cluster-lease lapses, cluster-wide;
 * Redis gone: /health 503 "degraded" and 503 answers, then back to normal.
 * (The three-instance haproxy suite lives in tests/cluster/.)
 *
 * One Redis serves every test (starting it is most of a test's CPU): each
 * test's setup empties it (FLUSHALL), starting it again first when a test
 * left it dead or stopped.
 *
 * Without redis-server installed (make deps installs it) the whole file is
 * skipped with a line saying so (exit 0). PCSIG_REDIS_SERVER names another
 * binary ("none": behave as if not installed).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REDIS_START_TRIES 5

static const char *redis_bin;
static pid_t redis_pid = -1;
static uint16_t redis_port;
static char redis_url[64];
static char redis_dir[64]; /* its working directory (append-only file), "" when none */

static const char *find_redis(void)
{
    static const char *const paths[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server",
                                        "/usr/sbin/redis-server"};
    const char *env = getenv("PCSIG_REDIS_SERVER"); /* a path; "none": as if not installed */
    if (env)
        return access(env, X_OK) == 0 ? env : NULL;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

/* A loopback port free right now (bind to 0, read, close): redis cannot be
 * told to pick one itself, so a collision is possible and retried. */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static bool port_answers(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Spawn redis-server on port; true once it accepts connections, false when
 * it exited (the port was taken) or did not come up. */
static bool redis_spawn(uint16_t port)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        /* Every write on disk before Redis answers it: a SIGKILL of Redis
         * loses nothing it acknowledged (the durability docs/cluster.md
         * asks of a production Redis). */
        execl(redis_bin, redis_bin, "--port", portstr, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "yes", "--appendfsync", "always", "--dir", redis_dir,
              "--protected-mode", "yes", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    /* Connectable, or exited: polled, since redis has no ready signal we
     * can wait on (its log line would need a pipe per test for little gain). */
    for (uint64_t until = h_now_ms() + H_START_TIMEOUT_MS; h_now_ms() < until;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return false;
        if (port_answers(port)) {
            redis_pid = pid;
            redis_port = port;
            return true;
        }
        pause_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return false;
}

/* On a new port (in redis_dir, made by the group setup). */
static void redis_start(void)
{
    for (int i = 0; i < REDIS_START_TRIES; i++)
        if (redis_spawn(free_port())) {
            snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%u", (unsigned)redis_port);
            return;
        }
    fail_msg("redis-server did not start in %d tries", REDIS_START_TRIES);
}

static void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
    }
    redis_pid = -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_kill();
    if (redis_dir[0])
        nftw(redis_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    redis_dir[0] = '\0';
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(redis_dir, sizeof redis_dir, "/tmp/pcsig-redis-XXXXXX");
    if (!mkdtemp(redis_dir)) {
        redis_dir[0] = '\0';
        fprintf(stderr, "mkdtemp: errno %d\n", errno);
        return -1;
    }
    return 0;
}

/* One command to our redis-server in RESP (a test reaching under the
 * servers); the first line of the reply, e.g. ":1" or "+OK". */
static void redis_cmd(const char *const *argv, size_t n, char *reply, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(redis_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[1024];
    size_t len = (size_t)snprintf(req, sizeof req, "*%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(req + len, sizeof req - len, "$%zu\r\n%s\r\n", strlen(argv[i]),
                                argv[i]);
    assert_true(len < sizeof req);
    assert_int_equal(write(fd, req, len), (ssize_t)len);
    size_t got = 0;
    while (got + 1 < cap && (got < 2 || memcmp(reply + got - 2, "\r\n", 2) != 0)) {
        ssize_t r = read(fd, reply + got, 1);
        assert_true(r == 1);
        got++;
    }
    reply[got] = '\0';
    close(fd);
}

/* Each test on an empty Redis: the one of the test before, unless that
 * one left it dead (started again) or stopped (SIGCONT). */
static int setup(void **state)
{
    int rc = h_setup(state);
    if (redis_pid > 0) {
        kill(redis_pid, SIGCONT);
        if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid)
            redis_pid = -1;
    }
    if (redis_pid <= 0)
        redis_start();
    char reply[64];
    redis_cmd((const char *const[]){"FLUSHALL"}, 1, reply, sizeof reply);
    assert_string_equal(reply, "+OK\r\n");
    return rc;
}

/* A and B on the same Redis, both connected. */
static void start_pair(h_server_t *a, h_server_t *b, const char *member_timeout)
{
    h_server_start(a, "--cluster", redis_url, "--instance-name", "A", "--member-timeout",
                   member_timeout, NULL);
    h_server_start(b, "--cluster", redis_url, "--instance-name", "B", "--member-timeout",
                   member_timeout, NULL);
    h_await_metric(a, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
    h_await_metric(b, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
}

static h_resp_t *sign_in_raw(const h_server_t *s, const char *name)
{
    char req[128];
    snprintf(req, sizeof req, "GET /sign_in?%s HTTP/1.0\r\n\r\n", name);
    h_resp_t *r = h_request_str(s, req);
    H_ASSERT_STATUS(r, 200, "Added");
    return r;
}

/* A /wait parked on s for id, on its own connection. */
static h_conn_t *park(const h_server_t *s, uint64_t id, size_t parked_now)
{
    h_conn_t *c = h_connect(s);
    h_sendf(c, "GET /wait?peer_id=%llu HTTP/1.0\r\n\r\n", (unsigned long long)id);
    h_wait_parked(s, parked_now, H_TIMEOUT_MS);
    return c;
}

static void expect_item(h_conn_t *c, uint64_t pragma, const char *body)
{
    h_resp_t *r = h_read(c);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, pragma);
    H_ASSERT_BODY(r, body);
    h_resp_free(r);
}

/* Sign in on A, wait on B, the message sent through A reaches B's wait;
 * the sign-in list and the join are the cluster's. */
static void test_cross_instance(void **state)
{
    (void)state;
    h_server_t a, b;
    start_pair(&a, &b, "30");
    h_resp_t *r = sign_in_raw(&a, "alice");
    uint64_t alice = (uint64_t)h_hdr_num(r, "Pragma");
    h_resp_free(r);
    r = sign_in_raw(&b, "bob");
    uint64_t bob = (uint64_t)h_hdr_num(r, "Pragma");
    assert_true(bob > alice);
    char want[128];
    snprintf(want, sizeof want, "bob,%llu,1\nalice,%llu,1\n", (unsigned long long)bob,
             (unsigned long long)alice);
    H_ASSERT_BODY(r, want);
    h_resp_free(r);

    /* alice hears bob's join on B, then waits there for his message. */
    h_resp_t *w = h_wait_once(&b, alice);
    H_ASSERT_STATUS(w, 200, "OK");
    snprintf(want, sizeof want, "bob,%llu,1\n", (unsigned long long)bob);
    H_ASSERT_BODY(w, want);
    H_ASSERT_PRAGMA(w, alice);
    h_resp_free(w);
    h_conn_t *c = park(&b, alice, 1);
    h_send_ok(&a, bob, alice, "hello via A", 11, "text/plain");
    expect_item(c, bob, "hello via A");
    h_close(c);

    /* Queued while nobody waits, fetched on the other instance, in order. */
    h_send_ok(&b, bob, alice, "one", 3, NULL);
    h_send_ok(&a, bob, alice, "two", 3, NULL);
    w = h_wait_once(&a, alice);
    H_ASSERT_BODY(w, "one");
    H_ASSERT_NO_HDR(w, "Content-Type");
    h_resp_free(w);
    w = h_wait_once(&b, alice);
    H_ASSERT_BODY(w, "two");
    h_resp_free(w);

    /* A batched wait takes everything queued, in order, in one answer. */
    h_send_ok(&a, bob, alice, "b1", 2, NULL);
    h_send_ok(&b, bob, alice, "b2", 2, "text/x");
    h_send_ok(&a, bob, alice, "b3", 2, NULL);
    char req[128];
    snprintf(req, sizeof req, "GET /wait?peer_id=%llu HTTP/1.0\r\nX-Pcsig-Batch: 1\r\n\r\n",
             (unsigned long long)alice);
    w = h_request_str(&b, req);
    H_ASSERT_STATUS(w, 200, "OK");
    H_ASSERT_HDR(w, "X-Pcsig-Batch-Count", "3");
    snprintf(want, sizeof want, "%llu 0 2\nb1%llu 6 2\ntext/xb2%llu 0 2\nb3",
             (unsigned long long)bob, (unsigned long long)bob, (unsigned long long)bob);
    H_ASSERT_BODY(w, want);
    h_resp_free(w);

    /* Unknown target (never signed in anywhere): 500 on either instance. */
    r = h_post_message(&a, bob, 999999, "x", 1, NULL);
    assert_int_equal(r->status, 500);
    h_resp_free(r);
    r = h_post_message(&b, 999999, alice, "x", 1, NULL);
    assert_int_equal(r->status, 500);
    h_resp_free(r);

    h_server_stop(&a);
    h_server_stop(&b);
    h_pass();
}

/* Sign-out on one instance: the other's parked wait hears the leave, and
 * the member's own parked wait (elsewhere) gets its own leave line. */
static void test_sign_out_across(void **state)
{
    (void)state;
    h_server_t a, b;
    start_pair(&a, &b, "30");
    uint64_t carol = h_sign_in(&a, "carol");
    uint64_t dave = h_sign_in(&b, "dave");
    h_resp_free(h_wait_once(&a, carol)); /* dave's join */
    h_conn_t *wc = park(&a, carol, 1);
    h_conn_t *wd = park(&a, dave, 2);
    h_resp_t *r = h_sign_out(&b, dave);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    char want[64];
    snprintf(want, sizeof want, "dave,%llu,0\n", (unsigned long long)dave);
    expect_item(wc, carol, want); /* a notification: Pragma is one's own id */
    expect_item(wd, dave, want);
    /* Gone everywhere: a message to dave is a 500 on B too. */
    r = h_post_message(&b, carol, dave, "x", 1, NULL);
    assert_int_equal(r->status, 500);
    h_resp_free(r);
    h_close(wc);
    h_close(wd);
    h_server_stop(&a);
    h_server_stop(&b);
    h_pass();
}

/* A second /wait on the other instance displaces the first: 409 there, and
 * the message goes to the new one. */
static void test_displaced_across(void **state)
{
    (void)state;
    h_server_t a, b;
    start_pair(&a, &b, "30");
    uint64_t erin = h_sign_in(&a, "erin");
    uint64_t finn = h_sign_in(&a, "finn");
    h_resp_free(h_wait_once(&b, erin)); /* finn's join */
    h_conn_t *first = park(&a, erin, 1);
    h_conn_t *second = park(&b, erin, 1);
    h_resp_t *r = h_read(first);
    assert_int_equal(r->status, 409);
    h_resp_free(r);
    h_send_ok(&a, finn, erin, "to the newer", 12, NULL);
    expect_item(second, finn, "to the newer");
    h_close(first);
    h_close(second);

    /* The newer /wait is answered at once from the queue (its lease is
     * gone by the time the older one fetches again): still a 409. The item
     * is put in the queue under the servers, so nobody is woken by it. */
    h_conn_t *older = park(&a, erin, 1);
    char key[64], item[64], reply[64];
    snprintf(key, sizeof key, "pcsig:q:%llu", (unsigned long long)erin);
    snprintf(item, sizeof item, "M %llu 0 - 6\nsilent", (unsigned long long)finn);
    redis_cmd((const char *const[]){"RPUSH", key, item}, 3, reply, sizeof reply);
    assert_string_equal(reply, ":1\r\n");
    snprintf(key, sizeof key, "pcsig:m:%llu", (unsigned long long)erin);
    redis_cmd((const char *const[]){"HINCRBY", key, "qn", "1"}, 4, reply, sizeof reply);
    redis_cmd((const char *const[]){"HINCRBY", key, "qb", "6"}, 4, reply, sizeof reply);
    h_resp_t *n = h_wait_once(&b, erin);
    H_ASSERT_BODY(n, "silent");
    h_resp_free(n);
    r = h_read(older);
    assert_int_equal(r->status, 409);
    h_resp_free(r);
    h_close(older);
    h_server_stop(&a);
    h_server_stop(&b);
    h_pass();
}

/* kill -9 of B: messages accepted for a member parked there stay queued
 * and reach its next wait on A. (Not about timeouts: members get one
 * they cannot outlast however slow the machine.) */
static void test_instance_killed(void **state)
{
    (void)state;
    h_server_t a, b;
    start_pair(&a, &b, "3600");
    uint64_t gus = h_sign_in(&a, "gus");
    uint64_t hal = h_sign_in(&a, "hal");
    h_resp_free(h_wait_once(&a, gus)); /* hal's join */
    h_conn_t *wg = park(&b, gus, 1);
    kill(b.pid, SIGKILL);
    assert_int_equal(h_server_await_exit(&b, H_TIMEOUT_MS), 128 + SIGKILL);
    h_close(wg);
    /* Accepted while gus's wait is on the dead instance. */
    h_send_ok(&a, hal, gus, "kept 1", 6, NULL);
    h_send_ok(&a, hal, gus, "kept 2", 6, NULL);
    h_resp_t *r = h_wait_once(&a, gus);
    H_ASSERT_BODY(r, "kept 1");
    h_resp_free(r);
    r = h_wait_once(&a, gus);
    H_ASSERT_BODY(r, "kept 2");
    h_resp_free(r);
    h_server_stop(&a);
    h_pass();
}

/* kill -9 of B: a member parked there that never comes back times out
 * once B's lease (--cluster-lease) has lapsed, and the members parked on
 * A hear that leave. Only that can time her out: everything that starts
 * a member's clock happens on B, whose --member-timeout nobody outlasts;
 * A, with 1 s, only parks waits (no clock) and buries B (its clock). */
static void test_instance_killed_times_out(void **state)
{
    (void)state;
    h_server_t a, b;
    h_server_start(&a, "--cluster", redis_url, "--instance-name", "A", "--member-timeout", "1",
                   NULL);
    h_server_start(&b, "--cluster", redis_url, "--instance-name", "B", "--member-timeout",
                   "3600", "--cluster-lease", "1", NULL);
    h_await_metric(&a, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
    h_await_metric(&b, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
    uint64_t gus = h_sign_in(&b, "gus");
    uint64_t hal = h_sign_in(&b, "hal");
    uint64_t ivy = h_sign_in(&b, "ivy");
    /* Every join drained on B (an answer on A would start a 1 s clock). */
    h_resp_free(h_wait_once(&b, gus));
    h_resp_free(h_wait_once(&b, gus));
    h_resp_free(h_wait_once(&b, hal));
    /* hal and gus parked on A first, ivy on B last, just before the kill:
     * even a B stalled past its lease (taken for dead early) only makes
     * ivy's leave come sooner, to waits already parked. */
    h_conn_t *wh = park(&a, hal, 1);
    h_conn_t *wg = park(&a, gus, 2);
    h_conn_t *wi = park(&b, ivy, 1);
    kill(b.pid, SIGKILL);
    assert_int_equal(h_server_await_exit(&b, H_TIMEOUT_MS), 128 + SIGKILL);
    h_close(wi);
    char want[64];
    snprintf(want, sizeof want, "ivy,%llu,0\n", (unsigned long long)ivy);
    expect_item(wh, hal, want);
    expect_item(wg, gus, want);
    h_close(wh);
    h_close(wg);
    /* Gone from Redis (asked there: hal and gus, answered on A, are on
     * their 1 s clocks now). */
    char key[64], reply[64];
    snprintf(key, sizeof key, "pcsig:m:%llu", (unsigned long long)ivy);
    redis_cmd((const char *const[]){"EXISTS", key}, 2, reply, sizeof reply);
    assert_string_equal(reply, ":0\r\n");
    h_server_stop(&a);
    h_pass();
}

/* Redis killed (SIGKILL) and restarted: degraded /health and 503s
 * meanwhile, never a hang or a lost answer; then members, queued messages
 * and parked waits carry on (Redis with its append-only file). */
static void test_redis_down(void **state)
{
    (void)state;
    h_server_t a, b;
    start_pair(&a, &b, "30");
    uint64_t jo = h_sign_in(&a, "jo");
    uint64_t max = h_sign_in(&b, "max");
    h_resp_free(h_wait_once(&a, jo)); /* max's join */
    h_send_ok(&a, jo, max, "queued before", 13, NULL);
    h_conn_t *wj = park(&b, jo, 1);
    uint16_t port = redis_port;
    redis_kill();
    /* The next exchange fails; /health reports it. */
    h_resp_t *r = h_post_message(&a, jo, jo + 1, "x", 1, NULL);
    assert_int_equal(r->status, 503);
    h_resp_free(r);
    h_await_metric(&a, "pcsig_cluster_up", 0, H_TIMEOUT_MS);
    r = h_request_str(&a, "GET /health HTTP/1.0\r\n\r\n");
    assert_int_equal(r->status, 503);
    assert_non_null(strstr(r->body, "\"status\":\"degraded\""));
    h_resp_free(r);
    r = h_request_str(&b, "GET /sign_in?x HTTP/1.0\r\n\r\n");
    assert_int_equal(r->status, 503);
    h_resp_free(r);
    /* Back on the same port (a fresh, empty Redis): both resume. */
    if (!redis_spawn(port)) {
        h_server_stop(&a);
        h_server_stop(&b);
        fprintf(stderr, "SKIP rest: port %u was taken meanwhile\n", (unsigned)port);
        h_pass();
        return;
    }
    h_await_metric(&a, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
    h_await_metric(&b, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
    r = h_request_str(&a, "GET /health HTTP/1.0\r\n\r\n");
    assert_int_equal(r->status, 200);
    h_resp_free(r);
    /* Nothing accepted was lost; jo's wait, parked through it all, works. */
    r = h_wait_once(&a, max);
    H_ASSERT_BODY(r, "queued before");
    h_resp_free(r);
    h_send_ok(&a, max, jo, "after", 5, NULL);
    expect_item(wj, max, "after");
    h_close(wj);
    /* Ids go on from where they were. */
    uint64_t kim = h_sign_in(&b, "kim");
    assert_true(kim > max);
    h_server_stop(&a);
    h_server_stop(&b);
    h_pass();
}

/* An instance taken for dead (its alive key expired: Redis away, or the
 * instance stalled, for longer than its TTL) while alive: another
 * instance's housekeeper cleared its leases. Once it notices, its parked
 * waits take their leases back, so messages still wake them. */
static void test_stale_instance(void **state)
{
    (void)state;
    h_server_t a, b;
    start_pair(&a, &b, "30");
    uint64_t ola = h_sign_in(&a, "ola");
    uint64_t pia = h_sign_in(&a, "pia");
    h_resp_free(h_wait_once(&a, ola)); /* pia's join */
    h_conn_t *w = park(&b, ola, 1);
    /* What A's housekeeper does to a dead B, then B's alive key gone. */
    char key[64], ids[24], reply[64];
    snprintf(key, sizeof key, "pcsig:m:%llu", (unsigned long long)ola);
    snprintf(ids, sizeof ids, "%llu", (unsigned long long)ola);
    redis_cmd((const char *const[]){"HDEL", key, "lease"}, 3, reply, sizeof reply);
    assert_string_equal(reply, ":1\r\n");
    redis_cmd((const char *const[]){"SREM", "pcsig:parked:B", ids}, 3, reply, sizeof reply);
    redis_cmd((const char *const[]){"DEL", "pcsig:alive:B"}, 2, reply, sizeof reply);
    /* B's next heartbeat (every 500 ms) finds its key gone: the lease
     * comes back. Polled: Redis has no way to tell us. */
    for (uint64_t until = h_now_ms() + H_TIMEOUT_MS;;) {
        redis_cmd((const char *const[]){"HEXISTS", key, "lease"}, 3, reply, sizeof reply);
        if (strcmp(reply, ":1\r\n") == 0)
            break;
        if (h_now_ms() > until)
            fail_msg("B never took its lease back");
        pause_ms(20);
    }
    h_send_ok(&a, pia, ola, "still reached", 13, NULL);
    expect_item(w, pia, "still reached");
    h_close(w);
    h_server_stop(&a);
    h_server_stop(&b);
    h_pass();
}

/* --secure-ids across instances: the token handed out by A is checked by B
 * (403 without it); --auth-token is each instance's own, the same on both. */
static void test_secure_ids_across(void **state)
{
    (void)state;
    h_server_t a, b;
    h_server_start(&a, "--cluster", redis_url, "--instance-name", "A", "--secure-ids",
                   "--auth-token", "sesame", NULL);
    h_server_start(&b, "--cluster", redis_url, "--instance-name", "B", "--secure-ids",
                   "--auth-token", "sesame", NULL);
    h_await_metric(&a, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
    h_resp_t *r = h_request_str(&b, "GET /sign_in?nat HTTP/1.0\r\n\r\n");
    assert_int_equal(r->status, 401);
    h_resp_free(r);
    r = h_request_str(&a, "GET /sign_in?nat HTTP/1.0\r\nAuthorization: Bearer sesame\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "Added");
    uint64_t nat = (uint64_t)h_hdr_num(r, "Pragma");
    const char *tok = h_hdr(r, "X-Pcsig-Token");
    assert_non_null(tok);
    assert_int_equal(strlen(tok), 32);
    char token[40];
    snprintf(token, sizeof token, "%s", tok);
    h_resp_free(r);
    char req[256];
    snprintf(req, sizeof req, "GET /sign_out?peer_id=%llu HTTP/1.0\r\n\r\n",
             (unsigned long long)nat);
    r = h_request_str(&b, req);
    assert_int_equal(r->status, 403);
    h_resp_free(r);
    snprintf(req, sizeof req, "GET /sign_out?peer_id=%llu HTTP/1.0\r\nX-Pcsig-Token: %c%s\r\n\r\n",
             (unsigned long long)nat, token[0] == 'a' ? 'b' : 'a', token + 1);
    r = h_request_str(&b, req);
    assert_int_equal(r->status, 403);
    h_resp_free(r);
    snprintf(req, sizeof req, "GET /sign_out?peer_id=%llu HTTP/1.0\r\nX-Pcsig-Token: %s\r\n\r\n",
             (unsigned long long)nat, token);
    r = h_request_str(&b, req);
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    h_server_stop(&a);
    h_server_stop(&b);
    h_pass();
}

/* --cluster: a request is never served on the accepting thread, where a
 * Redis round trip would hold up every connection behind it. With Redis
 * stopped (SIGSTOP: calls hang until --cluster-timeout, here longer than
 * any test), a sign-in hangs in a worker, and a /health on a new
 * connection (no Redis call) is accepted, read and answered meanwhile:
 * before the sign-in is. (TLS connections never were served there: the
 * plain mode is what this checks.) */
static void test_accept_not_blocked_by_redis(void **state)
{
    (void)state;
    if (h_tls_mode()) {
        h_pass();
        return;
    }
    h_server_t a;
    h_server_start(&a, "--cluster", redis_url, "--instance-name", "A", "--cluster-timeout",
                   "3600", NULL);
    h_await_metric(&a, "pcsig_cluster_up", 1, H_TIMEOUT_MS);
    assert_int_equal(kill(redis_pid, SIGSTOP), 0);
    h_conn_t *slow = h_connect(&a);
    h_sendf(slow, "GET /sign_in?x HTTP/1.0\r\n\r\n");
    h_await_read_by_server(slow, H_TIMEOUT_MS);
    /* In two parts: the first must be read (the connection accepted: no
     * thread that accepts is stuck), the rest then comes through the
     * poller (which must not be stuck either). */
    h_conn_t *quick = h_connect(&a);
    h_sendf(quick, "GET /health HTTP/1.0\r\n");
    h_await_read_by_server(quick, H_TIMEOUT_MS);
    h_sendf(quick, "\r\n");
    h_resp_t *r = h_read(quick);
    assert_true(r->status == 200 || r->status == 503);
    h_close(quick);
    h_resp_free(r);
    /* The sign-in is still waiting on Redis: nothing came back on it. */
    struct pollfd p = {.fd = h_fd(slow), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    /* Redis back: the same call completes (it never timed out). */
    assert_int_equal(kill(redis_pid, SIGCONT), 0);
    r = h_read(slow);
    H_ASSERT_STATUS(r, 200, "Added");
    h_resp_free(r);
    h_close(slow);
    h_server_stop(&a);
    h_pass();
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, h_teardown)

int main(void)
{
    redis_bin = find_redis();
    if (!redis_bin) {
        printf("SKIP: test_cluster_basic: redis-server is not installed (make deps installs "
               "it; or: sudo apt-get install redis-server)\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        T(test_cross_instance),
        T(test_sign_out_across),
        T(test_displaced_across),
        T(test_instance_killed),
        T(test_instance_killed_times_out),
        T(test_redis_down),
        T(test_stale_instance),
        T(test_secure_ids_across),
        T(test_accept_not_blocked_by_redis),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
