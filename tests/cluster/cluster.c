/*
 * cluster: Redis, N pcsig-server instances and haproxy for the cluster
 * tests and the benchmark. See cluster.h.
 */
#include "cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define HC_STOP_MS 10000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int ms_left(uint64_t deadline)
{
    uint64_t n = now_ms();
    return n >= deadline ? 0 : (int)(deadline - n);
}

/* A pause between two looks at a condition another process reaches on its
 * own schedule (the caller looks again; not a synchronisation by itself). */
static void backoff(int *ms)
{
    poll(NULL, 0, *ms);
    if (*ms < 50)
        *ms *= 2;
}

static int fail(hc_cluster_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(hc_cluster_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    return -1;
}

const char *hc_server_path(void)
{
    const char *p = getenv("PCSIG_CLUSTER_SERVER");
    if (p && *p)
        return p;
    p = getenv("PCSIG_SERVER");
    return p && *p ? p : "build/pcsig-server";
}

/* ---- processes ------------------------------------------------------------ */

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* In the child: fd onto target (or path opened with flags when fd < 0). */
static void child_fd(int fd, const char *path, int flags, int target)
{
    if (fd < 0)
        fd = open(path, flags);
    if (fd >= 0 && fd != target)
        dup2(fd, target);
}

/* Spawn argv (PATH searched); stdin /dev/null, stdout to *out_fd (a new
 * pipe) when out_fd, else to err_fd like stderr (-1: /dev/null for both).
 * fork+exec rather than posix_spawn for PR_SET_PDEATHSIG: the process is
 * killed when we die, so a test killed by its time limit (or a launcher
 * killed with SIGKILL by the harness) leaves no Redis, instance or haproxy
 * behind. 0 or -errno. */
static int proc_spawn(hc_proc_t *p, char *const argv[], int *out_fd, int err_fd)
{
    int pfd[2] = {-1, -1};
    if (out_fd && pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    int ep[2]; /* exec failure report: closed (CLOEXEC) on success */
    if (pipe2(ep, O_CLOEXEC) < 0) {
        int e = errno;
        if (out_fd) {
            close(pfd[0]);
            close(pfd[1]);
        }
        return -e;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        child_fd(-1, "/dev/null", O_RDONLY, 0);
        child_fd(out_fd ? pfd[1] : err_fd, "/dev/null", O_WRONLY, 1);
        child_fd(err_fd, "/dev/null", O_WRONLY, 2);
        execvp(argv[0], argv);
        int e = errno;
        ssize_t w = write(ep[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    int e = errno;
    close(ep[1]);
    if (out_fd)
        close(pfd[1]);
    if (pid < 0) {
        close(ep[0]);
        if (out_fd)
            close(pfd[0]);
        return -e;
    }
    int child_errno = 0;
    ssize_t r;
    while ((r = read(ep[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR)
        ;
    close(ep[0]);
    if (r > 0) {
        waitpid(pid, NULL, 0);
        if (out_fd)
            close(pfd[0]);
        return -child_errno;
    }
    p->pid = pid;
    p->exit_code = -1;
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (out_fd)
        *out_fd = pfd[0];
    return 0;
}

/* Reap p if it exited within ms: true when it is gone (or never ran). */
static bool proc_await(hc_proc_t *p, int ms)
{
    if (p->pid <= 0)
        return true;
    uint64_t deadline = now_ms() + (uint64_t)ms;
    for (;;) {
        if (p->pidfd >= 0) {
            struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
            int r = poll(&pf, 1, ms_left(deadline));
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0)
                return false;
        }
        int st = 0;
        pid_t w = waitpid(p->pid, &st, p->pidfd >= 0 ? 0 : WNOHANG);
        if (w < 0 && errno == EINTR)
            continue;
        if (w == 0) { /* no pidfd: look again */
            if (ms_left(deadline) == 0)
                return false;
            poll(NULL, 0, 10);
            continue;
        }
        p->exit_code = w == p->pid ? decode_status(st) : -1;
        if (p->pidfd >= 0)
            close(p->pidfd);
        p->pidfd = -1;
        p->pid = 0;
        return true;
    }
}

static bool proc_running(hc_proc_t *p)
{
    return p->pid > 0 && !proc_await(p, 0);
}

/* sig, then await the exit; SIGKILL after HC_STOP_MS. The exit code. */
static int proc_stop(hc_proc_t *p, int sig)
{
    if (p->pid <= 0)
        return p->exit_code;
    kill(p->pid, sig);
    if (!proc_await(p, HC_STOP_MS)) {
        kill(p->pid, SIGKILL);
        proc_await(p, HC_STOP_MS);
    }
    return p->exit_code;
}

/* ---- ports and sockets -------------------------------------------------- */

/* A port nobody listens on right now (bind port 0, read it, close). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A free port none of c's parts has chosen yet: the instances' ports are
 * chosen before any of them listens (haproxy starts first), and the kernel
 * may hand one of them out again for Redis or haproxy (seen: Redis took
 * instance i2's port, which then could not listen). 0 when none is found. */
static uint16_t free_port_apart(const hc_cluster_t *c)
{
    for (int tries = 0; tries < 20; tries++) {
        uint16_t p = free_port();
        bool taken = p == 0 || p == c->redis_port || p == c->lb_port;
        for (size_t i = 0; i < c->n && !taken; i++)
            taken = p == c->inst[i].want_port || p == c->inst[i].port;
        if (!taken)
            return p;
    }
    return 0;
}

/* A connected socket to 127.0.0.1:port, or -1. */
static int connect_to(uint16_t port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (errno != EINPROGRESS) {
            close(fd);
            return -1;
        }
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof err;
        if (poll(&pf, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* Send all of req, read until EOF (or cap) within the deadline: bytes read,
 * or -1. */
static ssize_t exchange(int fd, const char *req, size_t n, char *out, size_t cap,
                        uint64_t deadline)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, ms_left(deadline)) <= 0)
                return -1;
            continue;
        }
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    size_t len = 0;
    while (len + 1 < cap) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t got = recv(fd, out + len, cap - 1 - len, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    out[len] = '\0';
    return (ssize_t)len;
}

int hc_http_get(uint16_t port, const char *path, char *body, size_t cap, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int fd = connect_to(port, timeout_ms);
    if (fd < 0)
        return 0;
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    static char resp[1 << 16];
    ssize_t got = exchange(fd, req, (size_t)n, resp, sizeof resp, deadline);
    close(fd);
    int status = 0;
    if (got < 12 || sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    if (body && cap) {
        const char *b = strstr(resp, "\r\n\r\n");
        snprintf(body, cap, "%s", b ? b + 4 : "");
    }
    return status;
}

int hc_redis_cmd(hc_cluster_t *c, const char *cmd, char *out, size_t cap)
{
    int fd = connect_to(c->redis_port, 2000);
    if (fd < 0)
        return fail(c, "cannot connect to redis port %u", (unsigned)c->redis_port);
    char req[512];
    int n = snprintf(req, sizeof req, "%s\r\nQUIT\r\n", cmd);
    ssize_t got = exchange(fd, req, (size_t)n, out, cap, now_ms() + 5000);
    close(fd);
    if (got < 0)
        return fail(c, "redis: no answer to \"%s\"", cmd);
    return 0;
}

/* ---- Redis ---------------------------------------------------------------- */

/* Debian puts haproxy in /usr/sbin, which an unprivileged PATH may lack. */
static char *tool_path(const char *name, const char *fallback)
{
    return (char *)(access(fallback, X_OK) == 0 ? fallback : name);
}

void hc_set_extra(hc_cluster_t *c, const char *const *extra)
{
    size_t k = 0;
    for (; extra && extra[k] && k < HC_MAX_EXTRA; k++)
        c->extra[k] = extra[k];
    c->extra[k] = NULL;
}

void hc_init(hc_cluster_t *c, const char *server, const char *const *extra, size_t n)
{
    memset(c, 0, sizeof *c);
    c->server = server;
    c->err_fd = -1;
    c->redis.pidfd = c->lb.pidfd = -1;
    hc_set_extra(c, extra);
    c->n = n > HC_MAX_INSTANCES ? HC_MAX_INSTANCES : n;
    for (size_t i = 0; i < HC_MAX_INSTANCES; i++) {
        c->inst[i].p.pidfd = -1;
        c->inst[i].out_fd = -1;
    }
}

/* The file (in dir) a process logs to when err_fd is -1: a new fd. */
static int log_fd_for(hc_cluster_t *c, const char *name)
{
    if (c->err_fd >= 0)
        return dup(c->err_fd);
    char path[256];
    snprintf(path, sizeof path, "%s/%s.log", c->dir, name);
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int hc_redis_start(hc_cluster_t *c)
{
    bool fixed = c->redis_port != 0; /* a restart keeps its port */
    for (int attempt = 0; attempt < HC_PORT_TRIES; attempt++) {
        if (!fixed)
            c->redis_port = free_port_apart(c);
        char port[8], logf[200];
        snprintf(port, sizeof port, "%u", (unsigned)c->redis_port);
        snprintf(logf, sizeof logf, "%s/redis.log", c->dir);
        char *argv[] = {tool_path("redis-server", "/usr/bin/redis-server"), "--port", port, "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--dir", c->dir,
                        "--logfile", logf, "--daemonize", "no", NULL};
        int rc = proc_spawn(&c->redis, argv, NULL, -1);
        if (rc < 0) {
            char why[128];
            return fail(c, "cannot run redis-server: %s", log_strerror(-rc, why, sizeof why));
        }
        uint64_t deadline = now_ms() + HC_READY_MS;
        int pause = 1;
        while (ms_left(deadline) > 0 && proc_running(&c->redis)) {
            char out[64];
            int fd = connect_to(c->redis_port, 500);
            if (fd >= 0) {
                ssize_t got = exchange(fd, "PING\r\nQUIT\r\n", 12, out, sizeof out,
                                       now_ms() + 2000);
                close(fd);
                if (got > 0 && strncmp(out, "+PONG", 5) == 0)
                    return 0;
            }
            backoff(&pause);
        }
        if (proc_running(&c->redis)) {
            proc_stop(&c->redis, SIGKILL);
            return fail(c, "redis-server did not answer PING within %d ms (log %s)",
                        HC_READY_MS, logf);
        }
        if (fixed)
            return fail(c, "redis-server exited (%d) on port %u (log %s)", c->redis.exit_code,
                        (unsigned)c->redis_port, logf);
        /* Most likely the port was taken meanwhile: another one. */
    }
    return fail(c, "redis-server did not start in %d tries (log %s/redis.log)", HC_PORT_TRIES,
                c->dir);
}

int hc_redis_stop(hc_cluster_t *c)
{
    if (c->redis.pid <= 0)
        return 0;
    char out[256];
    hc_redis_cmd(c, "SHUTDOWN SAVE", out, sizeof out);
    if (!proc_await(&c->redis, HC_STOP_MS))
        proc_stop(&c->redis, SIGKILL);
    return 0;
}

/* ---- instances ------------------------------------------------------------ */

/* Spawn instance i (hc_instance_ready awaits it). */
static int instance_spawn(hc_cluster_t *c, size_t i)
{
    hc_instance_t *in = &c->inst[i];
    if (!in->name[0])
        snprintf(in->name, sizeof in->name, "i%zu", i);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u", (unsigned)c->redis_port);
    char *argv[HC_MAX_EXTRA + 16];
    size_t k = 0;
    argv[k++] = (char *)c->server;
    argv[k++] = "--bind";
    argv[k++] = "127.0.0.1";
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)in->want_port);
    argv[k++] = "--port";
    argv[k++] = port;
    if (!c->no_redis) {
        argv[k++] = "--cluster";
        argv[k++] = url;
        argv[k++] = "--instance-name";
        argv[k++] = in->name;
    }
    for (size_t e = 0; c->extra[e]; e++)
        argv[k++] = (char *)c->extra[e];
    for (size_t e = 0; in->extra && in->extra[e] && k < HC_MAX_EXTRA + 15; e++)
        argv[k++] = (char *)in->extra[e];
    argv[k] = NULL;
    int lfd = log_fd_for(c, in->name);
    int rc = proc_spawn(&in->p, argv, &in->out_fd, lfd);
    if (lfd >= 0)
        close(lfd);
    if (rc < 0) {
        char why[128];
        return fail(c, "cannot run %s: %s", c->server, log_strerror(-rc, why, sizeof why));
    }
    in->port = 0;
    return 0;
}

/* Await instance i's ready line and its /health 200. */
static int instance_ready(hc_cluster_t *c, size_t i)
{
    hc_instance_t *in = &c->inst[i];

    /* Its ready line: "pcsig-server listening on port N". */
    char line[256];
    size_t len = 0;
    uint64_t deadline = now_ms() + HC_READY_MS;
    while (!memchr(line, '\n', len)) {
        struct pollfd pf = {.fd = in->out_fd, .events = POLLIN};
        int r = poll(&pf, 1, ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return fail(c, "instance %s printed no ready line within %d ms", in->name,
                        HC_READY_MS);
        ssize_t n = read(in->out_fd, line + len, sizeof line - 1 - len);
        if (n <= 0) {
            proc_await(&in->p, 5000);
            return fail(c, "instance %s exited (%d) before its ready line", in->name,
                        in->p.exit_code);
        }
        len += (size_t)n;
        if (len == sizeof line - 1)
            return fail(c, "instance %s: ready line too long", in->name);
    }
    line[len] = '\0';
    unsigned port = 0;
    if (sscanf(line, "pcsig-server listening on port %u", &port) != 1 || port == 0 ||
        port > 65535)
        return fail(c, "instance %s: unexpected ready line \"%s\"", in->name, line);
    in->port = (uint16_t)port;

    /* Ready to serve: /health 200 (it has reached Redis). */
    int pause = 1, st = 0;
    while (ms_left(deadline) > 0) {
        st = hc_http_get(in->port, "/health", NULL, 0, 2000);
        if (st == 200)
            return 0;
        backoff(&pause);
    }
    return fail(c, "instance %s: /health said %d, not 200, for %d ms", in->name, st,
                HC_READY_MS);
}

int hc_instance_signal(hc_cluster_t *c, size_t i, int sig)
{
    hc_instance_t *in = &c->inst[i];
    int code = proc_stop(&in->p, sig);
    if (in->out_fd >= 0)
        close(in->out_fd);
    in->out_fd = -1;
    return code;
}

bool hc_instance_gone(hc_cluster_t *c, size_t i)
{
    return !proc_running(&c->inst[i].p);
}

int hc_instance_start(hc_cluster_t *c, size_t i)
{
    return instance_spawn(c, i) < 0 ? -1 : instance_ready(c, i);
}

/* ---- haproxy ------------------------------------------------------------- */

int hc_write_haproxy_cfg(const char *path, uint16_t lb_port, const uint16_t *ports, size_t n,
                         unsigned maxconn, const char *admin_sock)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    /* The configuration README.md ("Running several instances") shows,
     * and an admin socket for hc_instances_start. */
    fprintf(f,
            "global\n"
            "    maxconn %u\n"
            "    nbthread 1\n",
            maxconn ? maxconn : 4096);
    if (admin_sock)
        fprintf(f, "    stats socket %s level admin\n", admin_sock);
    fprintf(f,
            "\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 2s\n"
            "    timeout client 120s\n"
            "    timeout server 120s\n"
            "    retries 3\n"
            "    option redispatch 1\n"
            "\n"
            "frontend pcsig\n"
            "    bind 127.0.0.1:%u\n"
            "    default_backend pcsig_instances\n"
            "\n"
            "backend pcsig_instances\n"
            "    balance roundrobin\n"
            "    default-server check inter 1s downinter 100ms fall 2 rise 1\n",
            (unsigned)lb_port);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "    server i%zu 127.0.0.1:%u\n", i, (unsigned)ports[i]);
    return fclose(f) == 0 ? 0 : -1;
}

/* Write the configuration naming ports[0..n) on a new free port and spawn
 * haproxy (not awaited). */
static int lb_spawn(hc_cluster_t *c, const uint16_t *ports, size_t n)
{
    char cfg[200];
    snprintf(cfg, sizeof cfg, "%s/haproxy.cfg", c->dir);
    c->lb_port = free_port_apart(c);
    snprintf(c->lb_sock, sizeof c->lb_sock, "%s/haproxy.sock", c->dir);
    if (hc_write_haproxy_cfg(cfg, c->lb_port, ports, n, c->lb_maxconn, c->lb_sock) < 0)
        return fail(c, "cannot write %s", cfg);
    char *argv[] = {tool_path("haproxy", "/usr/sbin/haproxy"), "-f", cfg, "-db", NULL};
    /* Its own file even when the instances share err_fd: its warnings
     * (servers up and down) are no instance's output. */
    char path[256];
    snprintf(path, sizeof path, "%s/haproxy.log", c->dir);
    int lfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int rc = proc_spawn(&c->lb, argv, NULL, lfd);
    if (lfd >= 0)
        close(lfd);
    if (rc < 0) {
        char why[128];
        return fail(c, "cannot run haproxy: %s", log_strerror(-rc, why, sizeof why));
    }
    return 0;
}

/* Ready: /health through it answered 200 n times in a row (round robin:
 * once by every instance). 1 ready, 0 haproxy exited (most likely its
 * port was taken meanwhile), -1 failed. */
static int lb_ready(hc_cluster_t *c, size_t n)
{
    uint64_t deadline = now_ms() + HC_READY_MS;
    int pause = 1;
    size_t ok = 0;
    while (ms_left(deadline) > 0 && proc_running(&c->lb) && ok < n) {
        if (hc_http_get(c->lb_port, "/health", NULL, 0, 2000) == 200) {
            ok++;
        } else {
            ok = 0;
            backoff(&pause);
        }
    }
    if (ok >= n)
        return 1;
    if (!proc_running(&c->lb))
        return 0;
    proc_stop(&c->lb, SIGKILL);
    return fail(c, "haproxy on port %u: no /health 200 from every instance within %d ms",
                (unsigned)c->lb_port, HC_READY_MS);
}

/* The running instances' ports. */
static size_t running_ports(hc_cluster_t *c, uint16_t *ports)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->inst[i].p.pid > 0)
            ports[n++] = c->inst[i].port;
    return n;
}

/* haproxy for ports[0..n), started again on a new frontend port while
 * ready() says it exited (0: its port was most likely taken meanwhile). */
static int lb_start_with(hc_cluster_t *c, const uint16_t *ports, size_t n,
                         int (*ready)(hc_cluster_t *c, size_t n))
{
    for (int attempt = 0; attempt < HC_PORT_TRIES; attempt++) {
        if (lb_spawn(c, ports, n) < 0)
            return -1;
        int r = ready(c, n);
        if (r != 0)
            return r > 0 ? 0 : -1;
    }
    return fail(c, "haproxy did not start in %d tries (%s/haproxy.cfg)", HC_PORT_TRIES, c->dir);
}

int hc_lb_start(hc_cluster_t *c)
{
    uint16_t ports[HC_MAX_INSTANCES];
    size_t n = running_ports(c, ports);
    return lb_start_with(c, ports, n, lb_ready);
}

/* One line of commands (';' between them) to haproxy's admin socket; its
 * answer in out (NUL-terminated). 0, or -1 when it does not answer. */
static int lb_cmd(hc_cluster_t *c, const char *cmd, char *out, size_t cap)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (snprintf(a.sun_path, sizeof a.sun_path, "%s", c->lb_sock) >= (int)sizeof a.sun_path)
        return fail(c, "haproxy admin socket path too long: %s", c->lb_sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return fail(c, "cannot reach haproxy's admin socket %s", c->lb_sock);
    }
    char req[1024];
    int n = snprintf(req, sizeof req, "%s\n", cmd);
    ssize_t got = exchange(fd, req, (size_t)n, out, cap, now_ms() + 5000);
    close(fd);
    return got < 0 ? fail(c, "haproxy: no answer to \"%s\"", cmd) : 0;
}

/* True when haproxy's "show servers state" has every one of the n servers
 * on its instance's port and running (srv_op_state 2). */
static bool lb_all_up(hc_cluster_t *c)
{
    char out[1 << 14];
    if (lb_cmd(c, "show servers state pcsig_instances", out, sizeof out) < 0)
        return false;
    size_t up = 0;
    for (char *line = out, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* be_id be_name srv_id srv_name srv_addr srv_op_state ... srv_port
         * (the 19th field) */
        char f[20][64];
        size_t nf = 0;
        for (char *t = line; nf < 20 && *t;) {
            size_t k = strcspn(t, " ");
            snprintf(f[nf++], sizeof f[0], "%.*s", (int)k, t);
            t += k + (t[k] == ' ');
        }
        size_t i;
        if (nf < 19 || line[0] == '#' || sscanf(f[3], "i%zu", &i) != 1 || i >= c->n)
            continue;
        if (strcmp(f[5], "2") == 0 && strtoul(f[18], NULL, 10) == c->inst[i].port)
            up++;
    }
    return up == c->n;
}

/* Point haproxy's servers at the instances' new ports and mark them up at
 * once (each answered its /health already: the health checks carry on
 * from there), then await "show servers state" saying so. */
static int lb_point(hc_cluster_t *c)
{
    char cmd[1024], out[2048];
    size_t len = 0;
    for (size_t i = 0; i < c->n && len < sizeof cmd; i++)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len,
                                "%sset server pcsig_instances/i%zu addr 127.0.0.1 port %u;"
                                "set server pcsig_instances/i%zu health up",
                                i ? ";" : "", i, (unsigned)c->inst[i].port, i);
    if (len >= sizeof cmd)
        return fail(c, "haproxy: too many servers for one command line");
    if (lb_cmd(c, cmd, out, sizeof out) < 0)
        return -1;
    uint64_t deadline = now_ms() + HC_READY_MS;
    int pause = 1;
    while (!lb_all_up(c)) {
        if (ms_left(deadline) == 0)
            return fail(c, "haproxy: servers not up on the instances' ports within %d ms "
                        "(its answer: %s)", HC_READY_MS, out);
        backoff(&pause);
    }
    return 0;
}

/* Await haproxy answering on its admin socket (it listens on its frontend
 * port before it serves anything): 1 ready, 0 it exited (its port was
 * most likely taken meanwhile), -1 failed. */
static int lb_base_ready(hc_cluster_t *c, size_t n)
{
    (void)n; /* its servers point nowhere yet */
    uint64_t deadline = now_ms() + HC_READY_MS;
    int pause = 1;
    char out[256];
    while (proc_running(&c->lb)) {
        if (lb_cmd(c, "show info", out, sizeof out) == 0 && strstr(out, "Name:"))
            return 1;
        if (ms_left(deadline) == 0) {
            proc_stop(&c->lb, SIGKILL);
            return fail(c, "haproxy's admin socket did not answer within %d ms", HC_READY_MS);
        }
        backoff(&pause);
    }
    return 0;
}

int hc_base_start(hc_cluster_t *c)
{
    if (!c->dir[0] && hc_make_dir(c) < 0)
        return -1;
    if (!c->no_redis && hc_redis_start(c) < 0)
        return -1;
    /* Port 1 (nothing listens there) until the instances are known. */
    uint16_t nowhere[HC_MAX_INSTANCES];
    for (size_t i = 0; i < c->n; i++)
        nowhere[i] = 1;
    return lb_start_with(c, nowhere, c->n, lb_base_ready);
}

/* Await every instance's subscription to its wake-up channel
 * ("pcsig:ch:NAME", PUBSUB NUMSUB 1 each): its /health says 200 once it
 * reached Redis, but its subscriber connects on a thread of its own, and a
 * wake-up published before it listens is lost (a test parking a wait
 * there at once could then wait for nothing; seen once in test_queue's
 * test_second_wait_displaces_first, its 409 never came). */
static int await_subscribed(hc_cluster_t *c)
{
    char cmd[512], out[1024];
    size_t len = (size_t)snprintf(cmd, sizeof cmd, "PUBSUB NUMSUB");
    for (size_t i = 0; i < c->n && len < sizeof cmd; i++)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " pcsig:ch:%s", c->inst[i].name);
    if (len >= sizeof cmd)
        return fail(c, "PUBSUB NUMSUB: too many instances for one command");
    uint64_t deadline = now_ms() + HC_READY_MS;
    int pause = 1;
    for (;;) {
        /* *2n, then "$len name :count" for each: every count at least 1. */
        size_t subscribed = 0;
        if (hc_redis_cmd(c, cmd, out, sizeof out) == 0)
            for (const char *p = strstr(out, "\r\n:"); p; p = strstr(p + 3, "\r\n:"))
                subscribed += p[3] != '0';
        if (subscribed == c->n)
            return 0;
        if (ms_left(deadline) == 0)
            return fail(c, "instances not all subscribed to their channels within %d ms "
                        "(Redis: %.200s)", HC_READY_MS, out);
        backoff(&pause);
    }
}

/* Start every instance: the first alone (options it refuses are said
 * once, as by one server: the tests of bad options count the lines), then
 * the others side by side. Each listens on a port of its own choosing
 * (--port 0) unless it was started before: a port chosen here could be
 * taken by any process binding port 0 before the instance listens (seen
 * in CI: 'cannot listen ...: Address already in use'). */
static int instances_up(hc_cluster_t *c)
{
    if (c->n > 0 && hc_instance_start(c, 0) < 0)
        return -1;
    for (size_t i = 1; i < c->n; i++)
        if (instance_spawn(c, i) < 0)
            return -1;
    for (size_t i = 1; i < c->n; i++)
        if (instance_ready(c, i) < 0)
            return -1;
    if (!c->no_redis && await_subscribed(c) < 0)
        return -1;
    /* A restarted instance comes back on the port haproxy knows. */
    for (size_t i = 0; i < c->n; i++)
        c->inst[i].want_port = c->inst[i].port;
    return 0;
}

int hc_instances_start(hc_cluster_t *c)
{
    if (!c->no_redis) {
        /* A test that stopped our Redis and failed before starting it
         * again: back on its port (with what it saved). */
        if (!c->shared && !proc_running(&c->redis) && hc_redis_start(c) < 0)
            return -1;
        char out[64];
        if (hc_redis_cmd(c, "FLUSHALL", out, sizeof out) < 0)
            return -1;
        if (strncmp(out, "+OK", 3) != 0)
            return fail(c, "redis: FLUSHALL answered \"%.20s\"", out);
    }
    for (size_t i = 0; i < c->n; i++)
        c->inst[i].want_port = 0;
    if (instances_up(c) < 0)
        return -1;
    return lb_point(c);
}

void hc_instances_stop(hc_cluster_t *c)
{
    /* All signalled before any is awaited. */
    for (size_t i = 0; i < c->n; i++)
        if (c->inst[i].p.pid > 0)
            kill(c->inst[i].p.pid, SIGTERM);
    for (size_t i = 0; i < c->n; i++)
        hc_instance_signal(c, i, SIGTERM);
}

int hc_base_publish(hc_cluster_t *c)
{
    char path[200];
    snprintf(path, sizeof path, "%s/base", c->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return fail(c, "cannot write %s", path);
    fprintf(f, "%u %d %u %d %zu %d\n", (unsigned)c->redis_port, (int)c->redis.pid,
            (unsigned)c->lb_port, (int)c->lb.pid, c->n, (int)c->no_redis);
    return fclose(f) == 0 ? 0 : fail(c, "cannot write %s", path);
}

int hc_base_attach(hc_cluster_t *c, const char *dir, int *lock_fd)
{
    char path[200];
    snprintf(path, sizeof path, "%s/base", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(c, "no base in %s", dir);
    unsigned rport, lport;
    int rpid, lpid, no_redis;
    size_t n;
    int got = fscanf(f, "%u %d %u %d %zu %d", &rport, &rpid, &lport, &lpid, &n, &no_redis);
    fclose(f);
    if (got != 6 || n != c->n || (no_redis != 0) != c->no_redis)
        return fail(c, "base %s is for another cluster", dir);
    /* One launcher at a time: a test with two servers at once gets a
     * cluster of its own for the second. Not inherited by the instances. */
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (fd >= 0)
            close(fd);
        return fail(c, "base %s is in use", dir);
    }
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(c->lb_sock, sizeof c->lb_sock, "%s/haproxy.sock", dir);
    c->redis_port = (uint16_t)rport;
    c->lb_port = (uint16_t)lport;
    c->shared = true;
    *lock_fd = fd;
    return 0;
}

/* ---- the whole ------------------------------------------------------------ */

int hc_make_dir(hc_cluster_t *c)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/pcsig-cluster-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(c->dir)) {
        int e = errno;
        c->dir[0] = '\0';
        char why[128];
        return fail(c, "mkdtemp: %s", log_strerror(e, why, sizeof why));
    }
    return 0;
}

int hc_start(hc_cluster_t *c)
{
    if (!c->dir[0] && hc_make_dir(c) < 0)
        return -1;
    /* The instances listen on ports of their own choosing (--port 0) and
     * haproxy starts once they are ready, on the ports they report. A port
     * chosen here for an instance could be taken by any process binding
     * port 0 before the instance listens (seen in CI: 'cannot listen ...:
     * Address already in use', the cluster run failed); haproxy's and
     * Redis's own ports are tried again when that happens to them. */
    for (size_t i = 0; i < c->n; i++)
        c->inst[i].want_port = 0;
    if (!c->no_redis && hc_redis_start(c) < 0)
        return -1;
    if (instances_up(c) < 0)
        return -1;
    return hc_lb_start(c);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

/* In this process (not "rm -rf" through a shell: two processes more for
 * every cluster a test starts). */
int hc_remove_dir(const char *dir)
{
    return nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) == 0 || errno == ENOENT ? 0 : -1;
}

static void remove_dir(const char *dir)
{
    if (hc_remove_dir(dir) != 0)
        fprintf(stderr, "cluster: could not remove %s\n", dir);
}

void hc_stop(hc_cluster_t *c)
{
    if (c->shared) { /* Redis, haproxy and the directory are the base's */
        hc_instances_stop(c);
        c->dir[0] = '\0';
        return;
    }
    proc_stop(&c->lb, SIGTERM);
    /* The instances first (they may write to Redis on the way out). */
    hc_instances_stop(c);
    if (c->redis.pid > 0)
        proc_stop(&c->redis, SIGTERM);
    if (c->dir[0] && !getenv("PCSIG_TEST_KEEP"))
        remove_dir(c->dir);
    c->dir[0] = '\0';
}

bool hc_available(const char *server, char *why, size_t cap)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "'%s' --help 2>&1 | grep -q -- '--cluster'", server);
    if (system(cmd) != 0) {
        snprintf(why, cap, "%s --help has no --cluster (the cluster branch is not merged)",
                 server);
        return false;
    }
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        snprintf(why, cap, "redis-server is not installed (make deps)");
        return false;
    }
    if (system("command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy") != 0) {
        snprintf(why, cap, "haproxy is not installed (make deps)");
        return false;
    }
    return true;
}
