/*
 * cluster: the real parts of a pcsig cluster for tests and benchmarks
 * (issue 17 item 4): Debian's redis-server on a free loopback port, N
 * pcsig-server instances sharing it (--cluster redis://...), and Debian's
 * haproxy in round robin in front of them, all under one temporary
 * directory.
 *
 *  - Every process is spawned with posix_spawn and watched through a pidfd;
 *    hc_stop (and each *_stop) kills and reaps it, whatever state the
 *    test left it in, and removes the directory.
 *  - Readiness is awaited by condition, never by a fixed delay: Redis
 *    answers PING, an instance printed its ready line and its /health
 *    says 200, haproxy answers /health through itself once per instance
 *    in a row.
 *  - Free ports: bind port 0, read the port, close; the process that then
 *    fails to bind it (a collision with another test) is started again on
 *    a new port (up to HC_PORT_TRIES times).
 *  - Redis and haproxy outlive the instances when a test wants it: starting
 *    them is most of a cluster's start (about 0.1 s of CPU, against a few
 *    ms an instance), so a file of tests starts them once (hc_base_start)
 *    and each test only its instances (hc_instances_start: Redis emptied
 *    with FLUSHALL, haproxy pointed at the new ports through its admin
 *    socket). pcsig-cluster-launch --base does the same for a test
 *    program's launchers.
 *
 * No cmocka here: every function returns 0 or -1 with a reason in c->why,
 * so the same code serves the cmocka tests, the launcher
 * (pcsig-cluster-launch, a stand-in for PCSIG_SERVER) and the benchmark.
 */
#ifndef PCSIG_TEST_CLUSTER_H
#define PCSIG_TEST_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HC_MAX_INSTANCES 8
#define HC_MAX_EXTRA 48
#define HC_PORT_TRIES 5
#define HC_READY_MS 15000

typedef struct hc_proc {
    pid_t pid;      /* 0: not running */
    int pidfd;
    int exit_code;  /* after reaping: status, 128+signal, -1 */
} hc_proc_t;

typedef struct hc_instance {
    hc_proc_t p;
    int out_fd;     /* its stdout (the ready line) */
    uint16_t port;  /* 0 until ready */
    uint16_t want_port; /* the --port it is given (0: any; hc_start starts with 0, then keeps the port for restarts) */
    char name[32];  /* --instance-name */
    const char *const *extra; /* its own options after the common ones, NULL-ended (NULL: none) */
} hc_instance_t;

typedef struct hc_cluster {
    char dir[128];            /* the temporary directory (removed by hc_stop) */
    const char *server;       /* the pcsig-server binary */
    const char *extra[HC_MAX_EXTRA + 1]; /* options every instance gets, NULL-ended */
    int err_fd;               /* the instances' and haproxy's stderr (-1: a file in dir) */
    hc_proc_t redis;
    uint16_t redis_port;
    size_t n;
    hc_instance_t inst[HC_MAX_INSTANCES];
    hc_proc_t lb;
    uint16_t lb_port;
    unsigned lb_maxconn;      /* haproxy's maxconn (0: 4096) */
    bool no_redis;            /* baseline: no Redis, instances without --cluster */
    bool shared;              /* Redis and haproxy are another process's (a base):
                                 reached by port, left running by hc_stop */
    char lb_sock[144];        /* haproxy's admin socket (dir/haproxy.sock) */
    char why[512];            /* the last failure */
} hc_cluster_t;

/* The server binary: $PCSIG_CLUSTER_SERVER, else $PCSIG_SERVER, else
 * build/pcsig-server. */
const char *hc_server_path(void);

/* True when the server's --help offers --cluster, and redis-server and
 * haproxy are on PATH; otherwise false and why says what is missing. */
bool hc_available(const char *server, char *why, size_t cap);

/* Initialise c (no process yet): the binary, the extra instance options
 * (NULL-terminated, kept by pointer), n instances. */
void hc_init(hc_cluster_t *c, const char *server, const char *const *extra, size_t n);

/* Replace the extra instance options (as hc_init takes them): for the
 * next instances started. */
void hc_set_extra(hc_cluster_t *c, const char *const *extra);

/* The temporary directory alone (hc_start makes it when dir is ""). */
int hc_make_dir(hc_cluster_t *c);
/* Remove dir and everything under it; 0, or -1 with errno. */
int hc_remove_dir(const char *dir);

/* The whole cluster: directory, Redis, every instance, haproxy. */
int hc_start(hc_cluster_t *c);
/* Everything stopped (SIGTERM, SIGKILL after a while) and reaped, the
 * directory removed. Safe to call twice and after a failed start. */
void hc_stop(hc_cluster_t *c);

/* Redis and haproxy alone (haproxy's servers pointing nowhere yet); then
 * hc_instances_start and hc_instances_stop for each test, hc_stop at the
 * end. */
int hc_base_start(hc_cluster_t *c);
/* The instances on a running Redis and haproxy (ours, or a base's when
 * c->shared): Redis started again if it is ours and gone, emptied
 * (FLUSHALL), every instance started with c->extra, haproxy's servers set
 * to their ports and up. */
int hc_instances_start(hc_cluster_t *c);
/* Every instance stopped (SIGTERM, SIGKILL after a while) and reaped. */
void hc_instances_stop(hc_cluster_t *c);

/* A base another process started (pcsig-cluster-launch --base): its
 * directory holds "base" (redis port, haproxy port, instances) and "lock".
 * 0 with c->shared set and *lock_fd holding the lock (close it to let the
 * next one in); -1 when there is none, it is busy (another launcher of
 * this test holds it) or made for another number of instances. */
int hc_base_attach(hc_cluster_t *c, const char *dir, int *lock_fd);
/* Write dir/base for hc_base_attach. */
int hc_base_publish(hc_cluster_t *c);

/* Redis alone: start on c->redis_port (a new one when 0), await PING. */
int hc_redis_start(hc_cluster_t *c);
/* "SHUTDOWN SAVE" (the data survive in dir/dump.rdb for the next start),
 * then reap. */
int hc_redis_stop(hc_cluster_t *c);
/* One command (inline syntax) to Redis; the raw RESP answer in out. */
int hc_redis_cmd(hc_cluster_t *c, const char *cmd, char *out, size_t cap);

/* Instance i: start (on want_port, else any free port) and await its ready
 * line and /health 200. */
int hc_instance_start(hc_cluster_t *c, size_t i);
/* Send sig and reap (SIGKILL: kill -9, no goodbye). */
int hc_instance_signal(hc_cluster_t *c, size_t i, int sig);

/* True when instance i is not running (never started, or exited: reaped
 * now, its status in inst[i].p.exit_code). Never blocks. */
bool hc_instance_gone(hc_cluster_t *c, size_t i);

/* haproxy: write dir/haproxy.cfg naming the running instances, start it,
 * await /health 200 through it n times in a row. */
int hc_lb_start(hc_cluster_t *c);

/* One HTTP/1.0 GET of path on 127.0.0.1:port: the status (0 when no
 * answer), the body in body (NUL-terminated, may be NULL). */
int hc_http_get(uint16_t port, const char *path, char *body, size_t cap, int timeout_ms);

/* Write the haproxy configuration for ports[0..n) listening on lb_port,
 * with an admin socket at admin_sock (NULL: none). */
int hc_write_haproxy_cfg(const char *path, uint16_t lb_port, const uint16_t *ports, size_t n,
                         unsigned maxconn, const char *admin_sock);

#endif
