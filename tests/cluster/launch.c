/*
 * pcsig-cluster-launch: a stand-in for pcsig-server that is a whole cluster
 * (Redis, PCSIG_CLUSTER_INSTANCES instances, default 3, and haproxy in
 * front), so that the integration tests run through haproxy unchanged:
 *
 *   PCSIG_SERVER=build/tests/cluster/pcsig-cluster-launch \
 *   PCSIG_CLUSTER_SERVER=build/pcsig-server PCSIG_TEST_CLUSTER=1 \
 *       build/tests/integration/test_session
 *
 * Its options are handed to every instance (after their own --bind,
 * --port 0, --cluster and --instance-name). It prints the one ready line the
 * harness reads, naming haproxy's port, and writes the instances' ports to
 * /tmp/pcsig-cluster-launch-PID.ports (one a line) so that the harness can
 * add their /metrics samples up (PCSIG_TEST_CLUSTER). SIGTERM or SIGINT
 * stops everything; the exit status is 0 when every instance exited 0.
 * When an instance ends by itself (GET /quit, a fatal error, or a start
 * refused with status 2), everything stops and its status is ours.
 * The instances' and haproxy's stderr is ours.
 *
 * pcsig-cluster-launch --base PROGRAM ARGS... starts Redis and haproxy
 * alone, runs PROGRAM with PCSIG_CLUSTER_BASE naming their directory, and
 * stops them when it exits (its status is ours). The launchers PROGRAM
 * starts then use them, one at a time (a lock), and start only their
 * instances: a test file's launchers share one Redis (emptied for each)
 * and one haproxy instead of starting their own (most of a cluster's
 * start-up CPU). A launcher that finds the base busy starts a whole
 * cluster of its own, as without one.
 */
#include "cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static char ports_path[128];

static void remove_ports(void)
{
    if (ports_path[0])
        unlink(ports_path);
}

/* A child that outlives us by a moment: when we die, however (the harness
 * SIGKILLs a server a failed test left running), it removes the directory
 * (when dir; not a base's) and the ports file. The instances, Redis and
 * haproxy die with us by themselves (PR_SET_PDEATHSIG, cluster.c). */
static void start_sweeper(const char *dir, int lock_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return; /* the parent; a failed fork only loses the sweeping */
    if (lock_fd >= 0)
        close(lock_fd); /* the base's lock is ours, not the sweeper's */
    /* Not holding our stdout and stderr (the harness's pipes) open. */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 1);
        dup2(null, 2);
    }
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    if (getppid() == parent) {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, SIGUSR1);
        int sig;
        sigwait(&one, &sig);
    }
    if (dir && !getenv("PCSIG_TEST_KEEP") && hc_remove_dir(dir) != 0)
        _exit(1);
    if (ports_path[0])
        unlink(ports_path);
    _exit(0);
}

/* --base: Redis and haproxy for the launchers of prog (argv), which runs
 * as our child (its CPU is counted in ours); its exit status. SIGTERM and
 * SIGINT are passed on to it. */
static int run_base(hc_cluster_t *c, char **argv, const sigset_t *stop)
{
    if (hc_make_dir(c) < 0) {
        fprintf(stderr, "pcsig-cluster-launch --base: %s\n", c->why);
        return 1;
    }
    start_sweeper(c->dir, -1);
    if (hc_base_start(c) < 0 || hc_base_publish(c) < 0) {
        fprintf(stderr, "pcsig-cluster-launch --base: %s\n", c->why);
        hc_stop(c);
        return 1;
    }
    setenv("PCSIG_CLUSTER_BASE", c->dir, 1);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigprocmask(SIG_UNBLOCK, stop, NULL);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, "pcsig-cluster-launch --base: cannot run %s\n", argv[0]);
        _exit(127);
    }
    int code = 1;
    if (pid < 0) {
        fprintf(stderr, "pcsig-cluster-launch --base: fork failed\n");
    } else {
        for (;;) {
            int sig = 0, st = 0;
            sigwait(stop, &sig);
            if (sig != SIGCHLD) {
                kill(pid, sig);
                continue;
            }
            /* Redis or haproxy ending is the test's to notice. */
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid) {
                code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            if (w < 0 && errno != EINTR)
                break;
        }
    }
    hc_stop(c);
    return code;
}

int main(int argc, char **argv)
{
    /* Block the stop signals first: they are taken by sigwait below, and
     * one arriving during the start still stops everything cleanly. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGCHLD);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    size_t n = 3;
    const char *e = getenv("PCSIG_CLUSTER_INSTANCES");
    if (e && *e)
        n = (size_t)strtoul(e, NULL, 10);
    if (n < 1 || n > HC_MAX_INSTANCES) {
        fprintf(stderr, "pcsig-cluster-launch: PCSIG_CLUSTER_INSTANCES must be 1..%d\n",
                HC_MAX_INSTANCES);
        return 2;
    }
    static hc_cluster_t c;
    if (argc > 2 && strcmp(argv[1], "--base") == 0) {
        hc_init(&c, hc_server_path(), NULL, n);
        return run_base(&c, argv + 2, &stop);
    }
    if (argc - 1 > HC_MAX_EXTRA) {
        fprintf(stderr, "pcsig-cluster-launch: more than %d options\n", HC_MAX_EXTRA);
        return 2;
    }
    /* "--port 0" (the harness's "any port") is dropped: each instance gets
     * the port haproxy was configured with. Any other --port is passed on
     * (a bad one must be refused as by one server). */
    static const char *extra[HC_MAX_EXTRA + 1];
    size_t ne = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port=0") == 0)
            continue;
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc && strcmp(argv[i + 1], "0") == 0) {
            i++;
            continue;
        }
        extra[ne++] = argv[i];
    }
    extra[ne] = NULL;
    hc_init(&c, hc_server_path(), extra, n);
    c.err_fd = 2;
    /* PCSIG_CLUSTER_REDIS=0: the baseline of the benchmark, instances
     * without --cluster (only sensible with one). */
    const char *nr = getenv("PCSIG_CLUSTER_REDIS");
    c.no_redis = nr && strcmp(nr, "0") == 0;
    const char *mc = getenv("PCSIG_CLUSTER_LB_MAXCONN");
    if (mc && *mc)
        c.lb_maxconn = (unsigned)strtoul(mc, NULL, 10);
    /* The directory and the sweeper first: a launcher killed while it
     * starts the cluster leaves nothing behind either. */
    snprintf(ports_path, sizeof ports_path, "/tmp/pcsig-cluster-launch-%d.ports", (int)getpid());
    const char *base = getenv("PCSIG_CLUSTER_BASE");
    int lock_fd = -1; /* held until we exit */
    if (base && *base && hc_base_attach(&c, base, &lock_fd) == 0) {
        start_sweeper(NULL, lock_fd);
    } else {
        if (hc_make_dir(&c) < 0) {
            fprintf(stderr, "pcsig-cluster-launch: %s\n", c.why);
            return 1;
        }
        start_sweeper(c.dir, -1);
    }
    if ((c.shared ? hc_instances_start(&c) : hc_start(&c)) < 0) {
        int code = 1;
        for (size_t i = 0; i < c.n; i++)
            if (c.inst[i].p.pid == 0 && c.inst[i].p.exit_code > 0)
                code = c.inst[i].p.exit_code; /* e.g. 2: options refused */
        /* An instance that refused its options said why itself (one line,
         * as the tests of bad options expect). */
        if (code == 1)
            fprintf(stderr, "pcsig-cluster-launch: %s\n", c.why);
        hc_stop(&c);
        return code;
    }
    FILE *f = fopen(ports_path, "w");
    if (f) {
        for (size_t i = 0; i < c.n; i++)
            fprintf(f, "%u %d\n", (unsigned)c.inst[i].port, (int)c.inst[i].p.pid);
        if (!c.shared) { /* a base's are not ours to list */
            fprintf(f, "redis %u %d\n", (unsigned)c.redis_port, (int)c.redis.pid);
            fprintf(f, "haproxy %u %d\n", (unsigned)c.lb_port, (int)c.lb.pid);
        }
        fclose(f);
    }
    atexit(remove_ports);
    fprintf(stderr, "pcsig-cluster-launch: %zu instances behind haproxy port %u, redis port %u, "
            "dir %s\n", c.n, (unsigned)c.lb_port, (unsigned)c.redis_port, c.dir);
    printf("pcsig-server listening on port %u\n", (unsigned)c.lb_port);
    fflush(stdout);

    int sig = 0, code = 0;
    size_t ended = c.n;
    while (ended == c.n) {
        sigwait(&stop, &sig);
        if (sig != SIGCHLD)
            break;
        for (size_t i = 0; i < c.n && ended == c.n; i++)
            if (hc_instance_gone(&c, i))
                ended = i;
    }
    if (ended < c.n) {
        code = c.inst[ended].p.exit_code;
        fprintf(stderr, "pcsig-cluster-launch: instance %s ended (status %d): stopping\n",
                c.inst[ended].name, code);
    }
    for (size_t i = 0; i < c.n; i++) {
        if (c.inst[i].p.pid > 0)
            kill(c.inst[i].p.pid, SIGTERM);
    }
    for (size_t i = 0; i < c.n; i++) {
        if (c.inst[i].p.pid > 0 && hc_instance_signal(&c, i, SIGTERM) != 0 && code == 0)
            code = 1;
    }
    hc_stop(&c);
    return code;
}
