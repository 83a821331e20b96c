/*
 * harness: spawning and stopping the real server, raw client connections,
 * response reading, and the protocol's steps. See harness.h.
 */
#include "harness.h"
#include "strlit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "net.h"
#include "tls.h"

extern char **environ;

const char H_CORS_BLOCK[] =
    "\r\nAccess-Control-Allow-Origin: *\r\n"
    "Access-Control-Allow-Credentials: true\r\n"
    "Access-Control-Allow-Methods: POST, GET, OPTIONS\r\n"
    "Access-Control-Allow-Headers: Content-Type, Content-Length, Connection, Cache-Control\r\n"
    "Access-Control-Expose-Headers: Content-Length\r\n";

#define H_MAX_SERVERS 8
#define H_MAX_BUFFER (64u << 20)

struct h_conn {
    int fd;
    conn_t *tls; /* TLS mode: all I/O goes through it */
    uint16_t port;
    char *buf;
    size_t len, cap;
    bool eof;
    struct h_conn *prev, *next; /* every open connection, for the teardown */
};

/* The servers started by the running test: the harness's own copies (the
 * test's h_server_t is on its stack, gone by the time the teardown runs). */
static h_server_t servers[H_MAX_SERVERS];
static size_t nservers;
static bool passed;
static h_conn_t *open_conns;
static const char *where_file = "?";
static int where_line;
static unsigned log_counter;

/* TLS mode: one development CA and server certificate per test process. */
static tls_client_t *tls_client;
static char tls_dir[64];
static char tls_cert_path[192], tls_key_path[192];

bool h_tls_mode(void)
{
    const char *e = getenv("PCSIG_TEST_TLS");
    return e && e[0] && strcmp(e, "0") != 0;
}

static char tls_ca_path[192];
static void tls_prepare(void);

/* Ready before any server is started: a test may point a client at a fake
 * or closed port in TLS mode first. */
const char *h_tls_ca(void)
{
    tls_prepare();
    return tls_ca_path;
}

static void tls_cleanup(void)
{
    tls_client_free(tls_client);
    tls_client = NULL;
    if (tls_dir[0]) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "harness: could not remove %s\n", tls_dir);
    }
}

uint64_t h_now_ms(void)
{
    return clock_now_ms();
}

int h_ms_left(uint64_t deadline)
{
    uint64_t now = h_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

static size_t count_occurrences(const char *text, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *q = text; (q = strstr(q, needle)) != NULL; q += len)
        n++;
    return n;
}

bool h_await_log(const char *path, size_t offset, const char *needle, size_t times, int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (in < 0)
        fail_msg("inotify_init1: errno %d", errno);
    if (inotify_add_watch(in, path, IN_MODIFY) < 0)
        fail_msg("inotify_add_watch %s: errno %d", path, errno);
    static char text[1 << 20];
    bool found = false;
    for (;;) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = pread(fd, text, sizeof text - 1, (off_t)offset);
            close(fd);
            if (n > 0) {
                text[n] = '\0';
                found = count_occurrences(text, needle) >= times;
            }
        }
        if (found || h_ms_left(deadline) == 0)
            break;
        struct pollfd pf = {.fd = in, .events = POLLIN};
        if (poll(&pf, 1, h_ms_left(deadline)) > 0) {
            char ev[4096];
            while (read(in, ev, sizeof ev) > 0)
                ;
        }
    }
    close(in);
    return found;
}

void h_at(const char *file, int line)
{
    where_file = file;
    where_line = line;
}

/* fail_msg with the test's location in front. */
#define H_FAIL(fmt, ...) \
    fail_msg("%s:%d: " fmt, where_file, where_line, __VA_ARGS__)


/* ---- child processes ---------------------------------------------------- */

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* Await the exit of pid through pidfd within timeout_ms: 1 and *status when
 * it exited (reaped), 0 on timeout. */
static int await_exit(pid_t pid, int pidfd, int timeout_ms, int *status)
{
    uint64_t deadline = clock_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int r = poll(&p, 1, h_ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        int st = 0;
        pid_t w;
        while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
            ;
        *status = w == pid ? decode_status(st) : -1;
        return 1;
    }
}

static void kill_and_reap(pid_t pid, int pidfd)
{
    int st;
    kill(pid, SIGKILL);
    if (!await_exit(pid, pidfd, 5000, &st))
        fprintf(stderr, "harness: pid %d did not die after SIGKILL\n", (int)pid);
}

static const char *server_path(void)
{
    const char *p = getenv("PCSIG_SERVER");
    return p && *p ? p : "build/pcsig-server";
}

static void print_log_tail(const h_server_t *s)
{
    if (!s->log_path[0])
        return;
    fprintf(stderr, "---- server log: %s (tail)\n", s->log_path);
    int fd = open(s->log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "(cannot open it: errno %d)\n", errno);
        return;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > 4096 ? end - 4096 : 0;
    char tail[4097];
    ssize_t n = pread(fd, tail, 4096, from);
    close(fd);
    if (n > 0) {
        tail[n] = '\0';
        fprintf(stderr, "%s%s", tail, tail[n - 1] == '\n' ? "" : "\n");
    }
    fprintf(stderr, "---- end of server log\n");
}

/* Spawn path with argv; stdout to a new pipe (*out_fd, read end), stderr to
 * err_fd (-1: inherited). Returns the pid or -1 (errno kept). */
static pid_t spawn(char *const argv[], int *out_fd, int err_fd)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    if (err_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    /* The child starts with default SIGPIPE handling whatever ours is. */
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &def);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        errno = rc;
        return -1;
    }
    *out_fd = pfd[0];
    return pid;
}

#define H_MAX_ARGS 64

/* s exited with code and was reaped: close its fds, update our copy. */
static void server_reaped(h_server_t *s, int code)
{
    s->running = false;
    s->exit_code = code;
    if (s->pidfd >= 0)
        close(s->pidfd);
    if (s->out_fd >= 0)
        close(s->out_fd);
    s->pidfd = s->out_fd = -1;
    if (s->slot < nservers && servers[s->slot].pid == s->pid)
        servers[s->slot] = *s;
}

/* The certificates: PCSIG_TEST_CERTS names a directory certs/gen-certs.sh
 * wrote (make test writes one for all its runs: a run of its own is about a
 * quarter second of openssl's CPU, times every TLS run), only read here;
 * else they are generated into a directory of our own, removed at exit. */
static void tls_prepare(void)
{
    if (tls_client)
        return;
    const char *shared = getenv("PCSIG_TEST_CERTS");
    char certs[128];
    if (shared && *shared) {
        if (strlen(shared) >= sizeof certs)
            H_FAIL("PCSIG_TEST_CERTS: longer than %zu bytes", sizeof certs - 1);
        snprintf(certs, sizeof certs, "%s", shared);
    } else {
        snprintf(tls_dir, sizeof tls_dir, "/tmp/pcsig-harness-tls-XXXXXX");
        if (!mkdtemp(tls_dir))
            H_FAIL("mkdtemp: errno %d", errno);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "certs/gen-certs.sh --force '%s' >/dev/null", tls_dir);
        if (system(cmd) != 0)
            H_FAIL("certs/gen-certs.sh failed (run the tests from the repository root)%s", "");
        snprintf(certs, sizeof certs, "%s", tls_dir);
    }
    snprintf(tls_cert_path, sizeof tls_cert_path, "%s/server.pem", certs);
    snprintf(tls_key_path, sizeof tls_key_path, "%s/server.key", certs);
    char ca[160], why[256] = "";
    snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    snprintf(tls_ca_path, sizeof tls_ca_path, "%s", ca);
    struct tls_client_options o = {.ca_file = ca};
    if (tls_client_new(&o, &tls_client, why, sizeof why) < 0)
        H_FAIL("tls_client_new: %s", why);
    atexit(tls_cleanup);
}

int h_start_timeout_ms(void)
{
    /* A "server" may be a launcher of several (tests/cluster): it says how
     * long its start-up may take. */
    const char *v = getenv("PCSIG_TEST_START_MS");
    long ms = v && *v ? strtol(v, NULL, 10) : 0;
    return ms > 0 && ms < 600000 ? (int)ms : H_START_TIMEOUT_MS;
}

void h_server_start_(h_server_t *s, ...)
{
    memset(s, 0, sizeof *s);
    s->pidfd = s->out_fd = -1;
    if (nservers == H_MAX_SERVERS)
        H_FAIL("more than %d servers in one test", H_MAX_SERVERS);

    char *argv[H_MAX_ARGS + 8];
    size_t argc = 0;
    argv[argc++] = (char *)server_path();
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--port";
    argv[argc++] = "0";
    if (h_tls_mode()) {
        tls_prepare();
        argv[argc++] = "--tls-cert";
        argv[argc++] = tls_cert_path;
        argv[argc++] = "--tls-key";
        argv[argc++] = tls_key_path;
    }
    snprintf(s->host, sizeof s->host, "127.0.0.1");
    va_list ap;
    va_start(ap, s);
    const char *a;
    bool bind_next = false;
    while ((a = va_arg(ap, const char *)) != NULL) {
        if (argc >= H_MAX_ARGS) {
            va_end(ap);
            H_FAIL("more than %d server arguments", H_MAX_ARGS);
        }
        argv[argc++] = (char *)a;
        /* The server takes the last --bind: so do our connections. */
        if (bind_next)
            snprintf(s->host, sizeof s->host, "%s", a);
        else if (strncmp(a, STRLIT("--bind=")) == 0)
            snprintf(s->host, sizeof s->host, "%s", a + 7);
        bind_next = strcmp(a, "--bind") == 0;
    }
    va_end(ap);
    argv[argc] = NULL;

    int log_fd = -1;
    if (!getenv("PCSIG_TEST_VERBOSE")) {
        snprintf(s->log_path, sizeof s->log_path, "/tmp/pcsig-%s-%d-%u.log",
                 program_invocation_short_name, (int)getpid(), log_counter++);
        log_fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (log_fd < 0)
            H_FAIL("cannot create %s: errno %d", s->log_path, errno);
    }
    pid_t pid = spawn(argv, &s->out_fd, log_fd);
    int spawn_errno = errno;
    if (log_fd >= 0)
        close(log_fd);
    if (pid < 0)
        H_FAIL("cannot spawn %s (errno %d); set PCSIG_SERVER", argv[0], spawn_errno);
    s->pid = pid;
    s->running = true;
    s->exit_code = -1;
    s->pidfd = pidfd_open_(pid);
    s->slot = nservers;
    servers[nservers++] = *s;
    if (s->pidfd < 0)
        H_FAIL("pidfd_open: errno %d", errno);

    /* The one ready line: "pcsig-server listening on [TLS ]port N\n". */
    char line[256];
    size_t len = 0;
    int start_ms = h_start_timeout_ms();
    uint64_t deadline = clock_now_ms() + (uint64_t)start_ms;
    while (!memchr(line, '\n', len)) {
        struct pollfd p = {.fd = s->out_fd, .events = POLLIN};
        int r = poll(&p, 1, h_ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            H_FAIL("server printed no ready line within %d ms (log %s)", start_ms, s->log_path);
        ssize_t n = read(s->out_fd, line + len, sizeof line - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int st;
            if (await_exit(s->pid, s->pidfd, 5000, &st))
                server_reaped(s, st);
            H_FAIL("server exited (status %d) before its ready line (log %s)", s->exit_code,
                   s->log_path);
        }
        len += (size_t)n;
        if (len == sizeof line - 1 && !memchr(line, '\n', len))
            H_FAIL("ready line too long (log %s)", s->log_path);
    }
    line[len] = '\0';
    /* "... on TLS port N" when the port speaks TLS (TLS mode). */
    static const char prefix[] = "pcsig-server listening on port ";
    static const char tls_prefix[] = "pcsig-server listening on TLS port ";
    char *nl = strchr(line, '\n');
    *nl = '\0';
    const char *digits = NULL;
    s->ready_tls = false;
    if (strncmp(line, prefix, sizeof prefix - 1) == 0) {
        digits = line + sizeof prefix - 1;
    } else if (strncmp(line, tls_prefix, sizeof tls_prefix - 1) == 0) {
        digits = line + sizeof tls_prefix - 1;
        s->ready_tls = true;
    }
    if (!digits || nl + 1 != line + len)
        H_FAIL("unexpected ready output \"%s\"", line);
    unsigned long port = 0;
    size_t nd = 0;
    for (; digits[nd] >= '0' && digits[nd] <= '9' && nd < 6; nd++)
        port = port * 10 + (unsigned long)(digits[nd] - '0');
    if (nd == 0 || digits[nd] != '\0' || port == 0 || port > 65535)
        H_FAIL("bad port in ready line \"%s\"", line);
    s->port = (uint16_t)port;
    servers[s->slot] = *s;
}

int h_server_await_exit_(h_server_t *s, int timeout_ms)
{
    if (!s->running)
        return s->exit_code;
    int st;
    if (!await_exit(s->pid, s->pidfd, timeout_ms, &st))
        return -2;
    server_reaped(s, st);
    return st;
}

int h_server_stop_(h_server_t *s)
{
    if (!s->running)
        return s->exit_code;
    kill(s->pid, SIGTERM);
    int st;
    if (await_exit(s->pid, s->pidfd, H_STOP_TIMEOUT_MS, &st)) {
        server_reaped(s, st);
        return st;
    }
    fprintf(stderr, "%s:%d: server pid %d did not exit within %d ms of SIGTERM; SIGKILL\n",
            where_file, where_line, (int)s->pid, H_STOP_TIMEOUT_MS);
    kill_and_reap(s->pid, s->pidfd);
    server_reaped(s, -1);
    return -1;
}

int h_run_server_cmd(const char *const *args, char *err, size_t cap, int timeout_ms)
{
    char *argv[H_MAX_ARGS + 8];
    size_t argc = 0;
    argv[argc++] = (char *)server_path();
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--port";
    argv[argc++] = "0";
    for (; *args && argc < H_MAX_ARGS; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;

    int epipe[2];
    if (pipe2(epipe, O_CLOEXEC) < 0)
        return -1;
    int out_fd = -1;
    pid_t pid = spawn(argv, &out_fd, epipe[1]);
    close(epipe[1]);
    if (pid < 0) {
        close(epipe[0]);
        return -1;
    }
    int pidfd = pidfd_open_(pid);
    size_t len = 0;
    char sink[512];
    uint64_t deadline = clock_now_ms() + (uint64_t)timeout_ms;
    bool err_open = true, out_open = true;
    /* Read both pipes until EOF (or the deadline), then await the exit. */
    while ((err_open || out_open) && h_ms_left(deadline) > 0) {
        struct pollfd p[2] = {{.fd = err_open ? epipe[0] : -1, .events = POLLIN},
                              {.fd = out_open ? out_fd : -1, .events = POLLIN}};
        int r = poll(p, 2, h_ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (p[0].revents) {
            char tmp[512];
            ssize_t n = read(epipe[0], tmp, sizeof tmp);
            if (n <= 0) {
                err_open = false;
            } else {
                for (ssize_t i = 0; i < n && len + 1 < cap; i++)
                    err[len++] = tmp[i];
            }
        }
        if (p[1].revents && read(out_fd, sink, sizeof sink) <= 0)
            out_open = false;
    }
    if (cap)
        err[len < cap ? len : cap - 1] = '\0';
    close(epipe[0]);
    close(out_fd);
    int st = -1;
    if (pidfd < 0 || !await_exit(pid, pidfd, h_ms_left(deadline), &st)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        st = -1;
    }
    if (pidfd >= 0)
        close(pidfd);
    return st;
}

/* ---- setup / teardown ---------------------------------------------------- */

/* PCSIG_TEST_SKIP=GLOB: cmocka skips the tests whose names match it. For
 * tests/cluster/run.sh, which runs whole test files through a cluster: a
 * test of one process's own life (GET /quit's log) is skipped there.
 * PCSIG_TEST_ONLY=GLOB: only the tests whose names match it run (run.sh
 * runs test_queue as two runs, its timeout tests apart; or to time or debug
 * one case of a file by hand). */
__attribute__((constructor)) static void h_skip_filter(void)
{
    const char *p = getenv("PCSIG_TEST_SKIP");
    if (p && *p)
        cmocka_set_skip_filter(p);
    p = getenv("PCSIG_TEST_ONLY");
    if (p && *p)
        cmocka_set_test_filter(p);
}

int h_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    nservers = 0;
    passed = false;
    where_file = "?";
    where_line = 0;
    return 0;
}

void h_pass_(void)
{
    for (size_t i = 0; i < nservers; i++)
        if (servers[i].running)
            H_FAIL("the test left server pid %d running", (int)servers[i].pid);
    passed = true;
}

/* ---- child processes (the CLI) -------------------------------------------- */

#define H_MAX_PROCS 8
static h_proc_t *procs[H_MAX_PROCS];

static void proc_free(h_proc_t *p)
{
    for (size_t i = 0; i < H_MAX_PROCS; i++)
        if (procs[i] == p)
            procs[i] = NULL;
    if (p->in_fd >= 0)
        close(p->in_fd);
    close(p->out_fd);
    if (p->err_fd >= 0)
        close(p->err_fd);
    close(p->pidfd);
    free(p);
}

/* Allocates p (owned by the registry until h_proc_exit or h_teardown). */
h_proc_t *h_proc_adopt(pid_t pid, int in_fd, int out_fd, int err_fd)
{
    h_proc_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->pid = pid;
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    p->in_fd = in_fd;
    p->out_fd = out_fd;
    p->err_fd = err_fd;
    snprintf(p->name, sizeof p->name, "the CLI");
    size_t i = 0;
    while (i < H_MAX_PROCS && procs[i])
        i++;
    assert_true(i < H_MAX_PROCS);
    procs[i] = p;
    assert_true(p->pidfd >= 0);
    return p;
}

h_proc_t *h_proc_spawn(char *const *argv, char *const *envp, bool capture_err)
{
    int in[2], out[2], err[2] = {-1, -1};
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    if (capture_err)
        assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (capture_err)
        posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(in[0]);
    close(out[1]);
    if (capture_err)
        close(err[1]);
    if (rc != 0)
        fail_msg("cannot run %s (error %d); set PCSIG_CLIENT", argv[0], rc);
    return h_proc_adopt(pid, in[1], out[0], err[0]);
}

void h_proc_send(h_proc_t *p, const char *line)
{
    size_t n = strlen(line);
    assert_int_equal(write(p->in_fd, line, n), (ssize_t)n);
    assert_int_equal(write(p->in_fd, "\n", 1), 1);
}

char *h_proc_line_by(h_proc_t *p, uint64_t deadline)
{
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl) {
            size_t l = (size_t)(nl - p->buf);
            char *line = malloc(l + 1);
            assert_non_null(line);
            memcpy(line, p->buf, l);
            line[l] = '\0';
            memmove(p->buf, nl + 1, p->len - l - 1);
            p->len -= l + 1;
            return line;
        }
        if (p->len == sizeof p->buf)
            fail_msg("%s: an output line longer than %zu bytes", p->name, sizeof p->buf);
        struct pollfd pf = {.fd = p->out_fd, .events = POLLIN};
        int left = h_ms_left(deadline);
        if (left == 0 || poll(&pf, 1, left) != 1)
            return NULL;
        ssize_t r = read(p->out_fd, p->buf + p->len, sizeof p->buf - p->len);
        if (r <= 0)
            fail_msg("%s closed its stdout (have \"%.*s\")", p->name, (int)p->len, p->buf);
        p->len += (size_t)r;
    }
}

int h_proc_exit(h_proc_t *p, int ms)
{
    struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
    if (poll(&pf, 1, ms) != 1)
        fail_msg("%s did not exit within %d ms", p->name, ms);
    int st;
    assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
    proc_free(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int h_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < H_MAX_PROCS; i++) {
        h_proc_t *p = procs[i];
        if (!p)
            continue;
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        proc_free(p);
    }
    while (open_conns)
        h_close(open_conns);
    for (size_t i = 0; i < nservers; i++) {
        h_server_t *s = &servers[i];
        if (!passed) {
            fprintf(stderr, "test failed near %s:%d; server pid %d on port %u%s\n", where_file,
                    where_line, (int)s->pid, (unsigned)s->port,
                    s->running ? " still running: killed" : "");
            print_log_tail(s);
        }
        if (s->running) {
            kill_and_reap(s->pid, s->pidfd);
            server_reaped(s, -1);
        }
        if (passed && s->log_path[0])
            unlink(s->log_path);
    }
    nservers = 0;
    return 0;
}

/* ---- responses ----------------------------------------------------------- */

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        H_FAIL("out of memory (%zu bytes)", n + 1);
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

const char *h_hdr(const h_resp_t *r, const char *name)
{
    for (size_t i = 0; i < r->nhdr; i++)
        if (strcasecmp(r->hname[i], name) == 0)
            return r->hval[i];
    return NULL;
}

size_t h_hdr_count(const h_resp_t *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nhdr; i++)
        n += strcasecmp(r->hname[i], name) == 0;
    return n;
}

long long h_hdr_num(const h_resp_t *r, const char *name)
{
    const char *v = h_hdr(r, name);
    if (!v || !*v)
        return -1;
    long long n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > 100000000000LL)
            return -1;
        n = n * 10 + (*v - '0');
    }
    return n;
}

bool h_head_has(const h_resp_t *r, const char *lit)
{
    return strstr(r->head, lit) != NULL;
}

size_t h_head_count(const h_resp_t *r, const char *lit)
{
    size_t n = 0, l = strlen(lit);
    for (const char *p = r->head; l && (p = strstr(p, lit)) != NULL; p += l)
        n++;
    return n;
}

void h_resp_free(h_resp_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nhdr; i++) {
        free(r->hname[i]);
        free(r->hval[i]);
    }
    free(r->reason);
    free(r->head);
    free(r->body);
    free(r);
}

bool h_parse_entry(const char *body, size_t len, uint64_t *id, int *connected)
{
    /* name,id,c\n with a non-empty name, digits, 0 or 1, one line. */
    if (len < 6 || body[len - 1] != '\n' || memchr(body, '\n', len - 1))
        return false;
    const char *c2 = NULL, *c1 = NULL;
    for (size_t i = len - 1; i-- > 0;) {
        if (body[i] == ',') {
            if (!c2)
                c2 = body + i;
            else {
                c1 = body + i;
                break;
            }
        }
    }
    if (!c1 || c1 == body || c2 - c1 < 2 || (body + len - 1) - c2 != 2)
        return false;
    uint64_t v = 0;
    for (const char *p = c1 + 1; p < c2; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (c2[1] != '0' && c2[1] != '1')
        return false;
    *id = v;
    *connected = c2[1] - '0';
    return true;
}

/* ---- connections --------------------------------------------------------- */

/* TLS mode: wrap and handshake. NULL (fd closed) on failure, why says why. */
static conn_t *tls_wrap_fd(int fd, char *why, size_t why_len)
{
    conn_t *t = tls_client_wrap(tls_client, fd, "localhost");
    if (!t) {
        close(fd);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    if (conn_handshake_timed(t, H_TIMEOUT_MS) < 0) {
        snprintf(why, why_len, "%s", conn_error(t));
        conn_close(t);
        return NULL;
    }
    return t;
}

/* Connect to host:port (and when use_tls, handshake): the connection, or
 * NULL with why. */
static h_conn_t *open_conn_host(const char *host, uint16_t port, bool use_tls, char *why,
                                size_t why_len)
{
    int fd = net_connect(host, port, H_TIMEOUT_MS);
    if (fd < 0) {
        snprintf(why, why_len, "cannot connect to %s port %u: errno %d", host, (unsigned)port,
                 -fd);
        return NULL;
    }
    conn_t *t = NULL;
    char tls_why[256];
    if (use_tls && !(t = tls_wrap_fd(fd, tls_why, sizeof tls_why))) {
        snprintf(why, why_len, "TLS handshake with %s port %u failed: %s", host, (unsigned)port,
                 tls_why);
        return NULL;
    }
    h_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        if (t)
            conn_close(t);
        else
            close(fd);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    c->fd = fd;
    c->tls = t;
    c->port = port;
    c->next = open_conns;
    if (open_conns)
        open_conns->prev = c;
    open_conns = c;
    return c;
}

/* Connect (and in TLS mode handshake). */
static h_conn_t *open_conn(const h_server_t *s, char *why, size_t why_len)
{
    /* A server description filled in by hand (no host) means 127.0.0.1. */
    const char *host = s->host[0] ? s->host : "127.0.0.1";
    return open_conn_host(host, s->port, tls_client != NULL, why, why_len);
}

h_conn_t *h_connect_plain_(uint16_t port)
{
    char why[512];
    h_conn_t *c = open_conn_host("127.0.0.1", port, false, why, sizeof why);
    if (!c)
        H_FAIL("%s", why);
    return c;
}

h_conn_t *h_try_connect(const h_server_t *s)
{
    char why[512];
    return open_conn(s, why, sizeof why);
}

h_conn_t *h_connect_(const h_server_t *s)
{
    char why[512];
    h_conn_t *c = open_conn(s, why, sizeof why);
    if (!c)
        H_FAIL("%s", why);
    return c;
}

void h_close(h_conn_t *c)
{
    if (!c)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        open_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->tls)
        conn_close(c->tls); /* closes fd */
    else
        close(c->fd);
    free(c->buf);
    free(c);
}

int h_fd(const h_conn_t *c)
{
    return c->fd;
}

size_t h_pending(const h_conn_t *c)
{
    return c->len;
}

void h_send_(h_conn_t *c, const void *p, size_t n)
{
    const char *b = p;
    uint64_t deadline = clock_now_ms() + H_TIMEOUT_MS;
    if (c->tls) {
        int rc = conn_write_all_timed(c->tls, p, n, H_TIMEOUT_MS);
        if (rc < 0)
            H_FAIL("TLS send to port %u failed: %d %s", (unsigned)c->port, rc, conn_error(c->tls));
        return;
    }
    while (n) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
            int r = poll(&pf, 1, h_ms_left(deadline));
            if (r == 0)
                H_FAIL("send: %zu bytes not taken by the server within %d ms", n, H_TIMEOUT_MS);
            continue;
        }
        H_FAIL("send to port %u failed: errno %d (%zu bytes left)", (unsigned)c->port, errno, n);
    }
}

void h_sendf_(h_conn_t *c, const char *fmt, ...)
{
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        H_FAIL("h_sendf: request longer than %zu bytes", sizeof tmp - 1);
    h_send_(c, tmp, (size_t)n);
}

ssize_t h_pump(h_conn_t *c)
{
    if (c->eof)
        return 0;
    if (c->cap - c->len < 16384) {
        size_t ncap = c->cap ? c->cap * 2 : 65536;
        if (ncap > H_MAX_BUFFER)
            H_FAIL("more than %u bytes buffered on one connection", H_MAX_BUFFER);
        char *nb = realloc(c->buf, ncap);
        if (!nb)
            H_FAIL("out of memory%s", "");
        c->buf = nb;
        c->cap = ncap;
    }
    if (c->tls) {
        /* Drain what OpenSSL has buffered too: poll() cannot see it. */
        ssize_t total = 0;
        for (;;) {
            if (c->cap - c->len < 16384) {
                size_t ncap = c->cap * 2;
                char *nb = ncap <= H_MAX_BUFFER ? realloc(c->buf, ncap) : NULL;
                if (!nb)
                    H_FAIL("more than %zu bytes buffered on one connection", c->cap);
                c->buf = nb;
                c->cap = ncap;
            }
            ssize_t n = conn_read(c->tls, c->buf + c->len, c->cap - c->len);
            if (n > 0) {
                c->len += (size_t)n;
                total += n;
                continue;
            }
            if (n == -EAGAIN)
                return total ? total : -1;
            c->eof = true; /* close_notify, EOF or reset */
            return total ? total : 0;
        }
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n > 0) {
            c->len += (size_t)n;
            return n;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        c->eof = true; /* reset: the server closed it */
        return 0;
    }
}

/* Printable excerpt of buffered bytes for failure messages. */
static const char *excerpt(const char *p, size_t n)
{
    static char out[600];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < sizeof out; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (ch == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
            out[o++] = '\n';
        } else if (ch < 0x20 || ch >= 0x7f) {
            out[o++] = '.';
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return out;
}

h_resp_t *h_take_(h_conn_t *c)
{
    if (c->len == 0)
        return NULL;
    static http_response_t pr; /* large: not on the stack */
    http_error_t err = {0};
    const http_limits_t lim = {.max_head = 1u << 20, .max_body = UINT64_MAX};
    long head = http_parse_response(c->buf, c->len, &lim, &pr, &err);
    if (head < 0)
        H_FAIL("malformed response (%s):\n%s", err.reason ? err.reason : "?",
               excerpt(c->buf, c->len));
    if (head == 0)
        return NULL;
    if (!pr.has_content_length)
        H_FAIL("response without Content-Length:\n%s", excerpt(c->buf, (size_t)head));
    if (c->len - (size_t)head < pr.content_length)
        return NULL;
    size_t body_len = (size_t)pr.content_length;
    h_resp_t *r = calloc(1, sizeof *r);
    if (!r)
        H_FAIL("out of memory%s", "");
    r->status = pr.status;
    r->reason = dup_bytes(pr.reason.ptr ? pr.reason.ptr : "", pr.reason.len);
    r->head = dup_bytes(c->buf, (size_t)head);
    r->head_len = (size_t)head;
    r->body = dup_bytes(c->buf + head, body_len);
    r->body_len = body_len;
    r->nhdr = pr.num_headers;
    for (size_t i = 0; i < pr.num_headers; i++) {
        r->hname[i] = dup_bytes(pr.headers[i].name.ptr, pr.headers[i].name.len);
        r->hval[i] = dup_bytes(pr.headers[i].value.ptr ? pr.headers[i].value.ptr : "",
                               pr.headers[i].value.len);
    }
    size_t used = (size_t)head + body_len;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    return r;
}

h_resp_t *h_read_(h_conn_t *c, int timeout_ms)
{
    uint64_t deadline = clock_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        h_resp_t *r = h_take_(c);
        if (r)
            return r;
        if (c->eof)
            H_FAIL("connection closed by the server before a complete response "
                   "(%zu bytes buffered):\n%s", c->len, excerpt(c->buf, c->len));
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, h_ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            H_FAIL("no complete response within %d ms (%zu bytes buffered):\n%s", timeout_ms,
                   c->len, excerpt(c->buf, c->len));
        h_pump(c);
    }
}

void h_expect_silence_(h_conn_t *c, int ms)
{
    if (c->len)
        H_FAIL("expected silence but %zu bytes are already buffered:\n%s", c->len,
               excerpt(c->buf, c->len));
    if (c->eof)
        H_FAIL("expected silence but the connection is closed%s", "");
    uint64_t deadline = clock_now_ms() + (uint64_t)ms;
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, h_ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            return;
        ssize_t got = h_pump(c);
        if (got == 0)
            H_FAIL("expected silence for %d ms but the server closed the connection", ms);
        if (got > 0)
            H_FAIL("expected silence for %d ms but received:\n%s", ms,
                   excerpt(c->buf, c->len));
    }
}

void h_expect_eof_(h_conn_t *c, int timeout_ms)
{
    if (c->len)
        H_FAIL("expected the connection to close but %zu bytes are buffered:\n%s", c->len,
               excerpt(c->buf, c->len));
    uint64_t deadline = clock_now_ms() + (uint64_t)timeout_ms;
    while (!c->eof) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, h_ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            H_FAIL("the server did not close the connection within %d ms", timeout_ms);
        if (h_pump(c) > 0)
            H_FAIL("expected the connection to close but received:\n%s",
                   excerpt(c->buf, c->len));
    }
}

/* ---- protocol steps ------------------------------------------------------ */

h_resp_t *h_request_(const h_server_t *s, const void *p, size_t n)
{
    h_conn_t *c = h_connect_(s);
    h_send_(c, p, n);
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    h_close(c);
    return r;
}

uint64_t h_sign_in_(const h_server_t *s, const char *name)
{
    h_conn_t *c = h_connect_(s);
    if (name)
        h_sendf_(c, "GET /sign_in?%s HTTP/1.0\r\n\r\n", name);
    else
        h_sendf_(c, "GET /sign_in HTTP/1.0\r\n\r\n");
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    h_close(c);
    if (r->status != 200 || strcmp(r->reason, "Added") != 0)
        H_FAIL("sign-in of \"%s\": expected 200 Added, got %d %s:\n%s", name ? name : "",
               r->status, r->reason, excerpt(r->body, r->body_len));
    long long id = h_hdr_num(r, "Pragma");
    if (id <= 0)
        H_FAIL("sign-in answer without a valid Pragma:\n%s", r->head);
    h_resp_free(r);
    return (uint64_t)id;
}

h_resp_t *h_wait_once_(const h_server_t *s, uint64_t id)
{
    h_conn_t *c = h_connect_(s);
    h_sendf_(c, "GET /wait?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", id);
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    h_close(c);
    return r;
}

h_resp_t *h_post_message_(const h_server_t *s, uint64_t from, uint64_t to, const void *body,
                          size_t len, const char *ctype)
{
    h_conn_t *c = h_connect_(s);
    if (ctype)
        h_sendf_(c,
                 "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.0\r\n"
                 "Content-Length: %zu\r\nContent-Type: %s\r\n\r\n",
                 from, to, len, ctype);
    else
        h_sendf_(c,
                 "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.0\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 from, to, len);
    if (len)
        h_send_(c, body, len);
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    h_close(c);
    return r;
}

void h_send_ok_(const h_server_t *s, uint64_t from, uint64_t to, const void *body, size_t len,
                const char *ctype)
{
    h_resp_t *r = h_post_message_(s, from, to, body, len, ctype);
    if (r->status != 200 || strcmp(r->reason, "OK") != 0 || r->body_len != 0 ||
        h_hdr(r, "Pragma") || !h_hdr(r, "Content-Type") ||
        strcmp(h_hdr(r, "Content-Type"), "text/plain") != 0)
        H_FAIL("message %" PRIu64 " -> %" PRIu64 ": expected the ack 200 OK, text/plain, "
               "empty, no Pragma; got:\n%s%s", from, to, r->head,
               excerpt(r->body, r->body_len));
    h_resp_free(r);
}

h_resp_t *h_sign_out_(const h_server_t *s, uint64_t id)
{
    h_conn_t *c = h_connect_(s);
    h_sendf_(c, "GET /sign_out?peer_id=%" PRIu64 " HTTP/1.0\r\n\r\n", id);
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    h_close(c);
    return r;
}

void h_drain_joins_(const h_server_t *s, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            h_resp_t *r = h_wait_once_(s, ids[i]);
            uint64_t id;
            int conn;
            if (r->status != 200 || h_hdr_num(r, "Pragma") != (long long)ids[i] ||
                !h_parse_entry(r->body, r->body_len, &id, &conn) || id != ids[j] || conn != 1)
                H_FAIL("member %" PRIu64 ": expected the join of %" PRIu64
                       " (Pragma %" PRIu64 "), got %d %s:\n%s%s",
                       ids[i], ids[j], ids[i], r->status, r->reason, r->head,
                       excerpt(r->body, r->body_len));
            h_resp_free(r);
        }
    }
}

/* ---- the server's figures ------------------------------------------------ */

/* The value of the sample whose name (labels included, as the server
 * writes them) starts a line of the exposition body; false when absent. */
static bool find_sample(const char *body, size_t len, const char *name, double *v)
{
    size_t nl = strlen(name);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl + 1 && memcmp(p, name, nl) == 0 && p[nl] == ' ') {
            char num[64];
            size_t n = (size_t)(eol - p) - nl - 1;
            if (n >= sizeof num)
                return false;
            memcpy(num, p + nl + 1, n);
            num[n] = '\0';
            char *stop;
            *v = strtod(num, &stop);
            return stop != num && *stop == '\0';
        }
        p = eol + 1;
    }
    return false;
}

static int scrape_one(const h_server_t *s, const char *name, double *v, int *status);

/* PCSIG_TEST_CLUSTER (tests/cluster/run.sh): s is haproxy in front of the
 * instances pcsig-cluster-launch (pid s->pid) lists in its ports file; a
 * sample is the sum of theirs (parked waits, members: the cluster's). */
static int scrape_sample(const h_server_t *s, const char *name, double *v, int *status)
{
    const char *e = getenv("PCSIG_TEST_CLUSTER");
    if (!e || !*e || strcmp(e, "0") == 0)
        return scrape_one(s, name, v, status);
    char path[128], line[128];
    snprintf(path, sizeof path, "/tmp/pcsig-cluster-launch-%d.ports", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        H_FAIL("PCSIG_TEST_CLUSTER: no %s (is PCSIG_SERVER pcsig-cluster-launch?)", path);
    double sum = 0;
    int ok = 1;
    unsigned port;
    while (ok && fgets(line, sizeof line, f))
        if (sscanf(line, "%u", &port) == 1) {
            h_server_t one = {.port = (uint16_t)port, .host = "127.0.0.1"};
            double x = 0;
            ok = scrape_one(&one, name, &x, status);
            sum += x;
        }
    fclose(f);
    *v = sum;
    return ok;
}

/* One GET /metrics on a new connection: 1 and *v, 0 when the answer was
 * not 200 (*status says which), fails the test when the sample is missing. */
static int scrape_one(const h_server_t *s, const char *name, double *v, int *status)
{
    h_conn_t *c = h_connect_(s);
    h_send_(c, STRLIT("GET /metrics HTTP/1.0\r\n\r\n"));
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    h_close(c);
    *status = r->status;
    if (r->status != 200) {
        h_resp_free(r);
        return 0;
    }
    bool found = find_sample(r->body, r->body_len, name, v);
    h_resp_free(r);
    if (!found)
        H_FAIL("GET /metrics has no sample \"%s\"", name);
    return 1;
}

double h_metric_(const h_server_t *s, const char *name)
{
    double v = 0;
    int status = 0;
    return scrape_sample(s, name, &v, &status) ? v : -1;
}

/* A pause between two looks at a condition the server reaches on its own
 * schedule (not a synchronisation by itself: the caller looks again). */
static void backoff(int *ms)
{
    poll(NULL, 0, *ms);
    if (*ms < 20)
        *ms *= 2;
}

int h_await_metric_(const h_server_t *s, const char *name, double want, int timeout_ms)
{
    uint64_t deadline = clock_now_ms() + (uint64_t)timeout_ms;
    int pause = 1;
    for (int n = 1;; n++) {
        double v = -1;
        int status = 0;
        bool ok = scrape_sample(s, name, &v, &status) && v == want;
        if (ok)
            return n;
        if (clock_now_ms() >= deadline) {
            if (status != 200)
                H_FAIL("%s: GET /metrics still answered %d after %d ms (%d scrapes)", name,
                       status, timeout_ms, n);
            H_FAIL("%s is %g, not %g, after %d ms (%d scrapes)", name, v, want, timeout_ms, n);
        }
        backoff(&pause);
    }
}

/* "%08X:%04X" of an IPv4 address and port as /proc/net/tcp prints them. */
static void proc_tcp_addr(const struct sockaddr_in *a, char *out, size_t cap)
{
    uint32_t raw;
    memcpy(&raw, &a->sin_addr.s_addr, sizeof raw);
    snprintf(out, cap, "%08X:%04X", (unsigned)raw, (unsigned)ntohs(a->sin_port));
}

/* The receive queue of the server's end of c, from /proc/net/tcp: bytes
 * its kernel holds that the server has not read; -1 when the socket is not
 * listed (closed). */
static long server_rx_queue(const char *local, const char *remote)
{
    FILE *f = fopen("/proc/net/tcp", "re");
    if (!f)
        H_FAIL("cannot open /proc/net/tcp: errno %d", errno);
    char line[512];
    long rx = -1;
    while (fgets(line, sizeof line, f)) {
        char l[64], r[64];
        unsigned st;
        unsigned long tx, rq;
        if (sscanf(line, " %*[0-9]: %63s %63s %x %lx:%lx", l, r, &st, &tx, &rq) == 5 &&
            strcmp(l, local) == 0 && strcmp(r, remote) == 0) {
            rx = (long)rq;
            break;
        }
    }
    fclose(f);
    return rx;
}

void h_await_read_by_server_(h_conn_t *c, int timeout_ms)
{
    struct sockaddr_in me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    if (getsockname(c->fd, (struct sockaddr *)&me, &ml) < 0 ||
        getpeername(c->fd, (struct sockaddr *)&peer, &pl) < 0 || me.sin_family != AF_INET)
        H_FAIL("h_await_read_by_server: not a connected IPv4 socket (errno %d)", errno);
    char local[32], remote[32];
    proc_tcp_addr(&peer, local, sizeof local); /* the server's end: its address first */
    proc_tcp_addr(&me, remote, sizeof remote);
    uint64_t deadline = clock_now_ms() + (uint64_t)timeout_ms;
    int pause = 1;
    for (;;) {
        /* Our unacknowledged bytes first: once 0, all of them reached the
         * server's socket; then its receive queue must be empty too. */
        int unacked = -1;
        if (ioctl(c->fd, SIOCOUTQ, &unacked) < 0)
            H_FAIL("ioctl SIOCOUTQ: errno %d", errno);
        long rx = unacked == 0 ? server_rx_queue(local, remote) : -2;
        if (rx == 0)
            return;
        if (rx == -1)
            H_FAIL("the server's end of the connection (%s) is gone", local);
        if (clock_now_ms() >= deadline)
            H_FAIL("the server did not read what was sent within %d ms (%d bytes unacknowledged, "
                   "%ld unread)", timeout_ms, unacked, rx);
        backoff(&pause);
    }
}
