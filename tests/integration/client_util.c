/* Helpers of the client tests: see client_util.h. */
#include "client_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "net.h"
#include "strlit.h"

extern char **environ;

pcsig_client_t *clients[T_MAX_CLIENTS];

int t_teardown(void **state)
{
    certs_cleanup(); /* a failed test leaves no key material behind */
    for (size_t i = 0; i < T_MAX_CLIENTS; i++) {
        pcsig_client_free(clients[i]);
        clients[i] = NULL;
    }
    return h_teardown(state); /* and the CLI processes */
}

static const char *ev_type_name(enum pcsig_event_type t)
{
    switch (t) {
    case PCSIG_EV_SIGNED_IN: return "SIGNED_IN";
    case PCSIG_EV_PEER_JOINED: return "PEER_JOINED";
    case PCSIG_EV_PEER_LEFT: return "PEER_LEFT";
    case PCSIG_EV_MESSAGE: return "MESSAGE";
    case PCSIG_EV_PEER_HANGUP: return "PEER_HANGUP";
    case PCSIG_EV_MESSAGE_SENT: return "MESSAGE_SENT";
    case PCSIG_EV_MESSAGE_FAILED: return "MESSAGE_FAILED";
    case PCSIG_EV_DISCONNECTED: return "DISCONNECTED";
    case PCSIG_EV_SERVER_UNREACHABLE: return "SERVER_UNREACHABLE";
    case PCSIG_EV_SESSION_LOST: return "SESSION_LOST";
    }
    return "?";
}

pcsig_client_t *client_on(uint16_t port, const char *name, bool keep_alive,
                          int wait_timeout_ms)
{
    struct pcsig_client_options o = {
        .server = "127.0.0.1",
        .port = port,
        .name = name,
        .keep_alive = keep_alive,
        .wait_timeout_ms = wait_timeout_ms,
        .reconnect_min_ms = 50,
        .reconnect_max_ms = 400,
        /* TLS mode: the same scenarios over TLS, verified against the test CA. */
        .tls = h_tls_mode(),
        .ca_file = h_tls_mode() ? h_tls_ca() : NULL,
    };
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    size_t i = 0;
    while (i < T_MAX_CLIENTS && clients[i])
        i++;
    assert_true(i < T_MAX_CLIENTS);
    clients[i] = c;
    assert_int_equal(pcsig_client_connect(c), 0);
    return c;
}

pcsig_client_t *client(const h_server_t *s, const char *name)
{
    return client_on(s->port, name, false, 0);
}

void client_free(pcsig_client_t *c)
{
    for (size_t i = 0; i < T_MAX_CLIENTS; i++)
        if (clients[i] == c)
            clients[i] = NULL;
    pcsig_client_free(c);
}

struct pcsig_event *expect_ev_(pcsig_client_t *c, enum pcsig_event_type t,
                               const char *file, int line)
{
    struct pcsig_event *ev = pcsig_client_next_event(c, T_EVENT_MS);
    if (!ev)
        fail_msg("%s:%d: no %s within %d ms", file, line, ev_type_name(t), T_EVENT_MS);
    if (ev->type != t) {
        char why[256];
        snprintf(why, sizeof why, "%s:%d: got %s (peer %" PRIu64 ", reason %s), wanted %s", file,
                 line, ev_type_name(ev->type), ev->peer_id, ev->reason ? ev->reason : "-",
                 ev_type_name(t));
        pcsig_event_free(ev);
        fail_msg("%s", why);
    }
    return ev;
}

struct pcsig_event *await_ev_(pcsig_client_t *c, enum pcsig_event_type t, unsigned skip,
                              const char *file, int line)
{
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        uint64_t now = h_now_ms();
        struct pcsig_event *ev =
            pcsig_client_next_event(c, now >= deadline ? 0 : (int)(deadline - now));
        if (!ev)
            fail_msg("%s:%d: no %s within %d ms", file, line, ev_type_name(t), T_EVENT_MS);
        if (ev->type == t)
            return ev;
        if (!(skip & (1u << ev->type))) {
            char why[256];
            snprintf(why, sizeof why, "%s:%d: unexpected %s (reason %s) while awaiting %s", file,
                     line, ev_type_name(ev->type), ev->reason ? ev->reason : "-",
                     ev_type_name(t));
            pcsig_event_free(ev);
            fail_msg("%s", why);
        }
        pcsig_event_free(ev);
    }
}

/* No event at all within ms. */
void expect_quiet(pcsig_client_t *c, int ms)
{
    struct pcsig_event *ev = pcsig_client_next_event(c, ms);
    if (ev) {
        char why[256];
        snprintf(why, sizeof why, "unexpected %s (peer %" PRIu64 ", reason %s)",
                 ev_type_name(ev->type), ev->peer_id, ev->reason ? ev->reason : "-");
        pcsig_event_free(ev);
        fail_msg("%s", why);
    }
}

uint64_t signed_in(pcsig_client_t *c, size_t npeers)
{
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_SIGNED_IN);
    assert_int_equal(ev->npeers, npeers);
    uint64_t id = ev->own_id;
    assert_true(id > 0);
    pcsig_event_free(ev);
    assert_int_equal(pcsig_client_id(c), id);
    return id;
}

void expect_peer(pcsig_client_t *c, enum pcsig_event_type t, uint64_t id, const char *name)
{
    struct pcsig_event *ev = expect_ev(c, t);
    assert_int_equal(ev->peer_id, id);
    assert_non_null(ev->name);
    assert_string_equal(ev->name, name);
    pcsig_event_free(ev);
}

int64_t send_ok(pcsig_client_t *c, uint64_t to, const char *ctype, const void *p, size_t n)
{
    int64_t t = pcsig_client_send(c, to, ctype, p, n);
    if (t <= 0)
        fail_msg("pcsig_client_send: %" PRId64, t);
    return t;
}

void expect_sent(pcsig_client_t *c, int64_t token, uint64_t to)
{
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_MESSAGE_SENT);
    assert_int_equal(ev->token, (uint64_t)token);
    assert_int_equal(ev->peer_id, to);
    pcsig_event_free(ev);
}

void expect_message(pcsig_client_t *c, uint64_t from, const char *ctype, const void *p,
                    size_t n)
{
    struct pcsig_event *ev = expect_ev(c, PCSIG_EV_MESSAGE);
    assert_int_equal(ev->peer_id, from);
    if (ctype) {
        assert_non_null(ev->content_type);
        assert_string_equal(ev->content_type, ctype);
    } else {
        assert_null(ev->content_type);
    }
    assert_int_equal(ev->len, n);
    if (n)
        assert_memory_equal(ev->data, p, n);
    pcsig_event_free(ev);
}

/* Send a string and check both ends: the sender's ack, the receiver's copy. */
void relay(pcsig_client_t *from, uint64_t from_id, pcsig_client_t *to, uint64_t to_id,
           const char *text)
{
    int64_t t = send_ok(from, to_id, NULL, text, strlen(text));
    expect_sent(from, t, to_id);
    expect_message(to, from_id, "text/plain", text, strlen(text));
}

void disconnect_clean(pcsig_client_t *c)
{
    assert_int_equal(pcsig_client_disconnect(c), 0);
    /* Peers that left just before may still be queued ahead of it. */
    struct pcsig_event *ev = await_ev(c, PCSIG_EV_DISCONNECTED,
                                      1u << PCSIG_EV_PEER_LEFT | 1u << PCSIG_EV_PEER_JOINED);
    pcsig_event_free(ev);
    assert_int_equal(pcsig_client_id(c), 0);
    assert_int_equal(pcsig_client_send(c, 1, NULL, STRLIT("x")), -ENOTCONN);
}

void fake_start(struct fake *f)
{
    int fds[NET_MAX_LISTENERS], n = 0;
    assert_int_equal(net_listen("127.0.0.1", 0, 16, fds, &n), 0);
    f->lfd = fds[0];
    f->port = (uint16_t)net_local_port(fds[0]);
}

int fake_accept(struct fake *f)
{
    struct pollfd p = {.fd = f->lfd, .events = POLLIN};
    if (poll(&p, 1, T_EVENT_MS) != 1)
        fail_msg("the client did not connect within %d ms", T_EVENT_MS);
    int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* Read one request (head + Content-Length body); return its bytes. */
static char *fake_read(int fd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        http_request_t req;
        http_error_t err;
        http_limits_t lim = {.max_head = 16384, .max_body = 1 << 20};
        long h = http_parse_request(b, n, &lim, &req, &err);
        if (h < 0)
            fail_msg("the client sent a malformed request: %s", err.reason);
        if (h > 0 && n >= (size_t)h + req.content_length) {
            assert_int_equal(n, (size_t)h + req.content_length); /* nothing after it */
            b[n] = '\0';
            *len = n;
            return b;
        }
        uint64_t now = h_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) != 1)
            fail_msg("no complete request within %d ms (%zu bytes)", T_EVENT_MS, n);
        ssize_t r = read(fd, b + n, cap - 1 - n);
        if (r <= 0)
            fail_msg("the client closed before a complete request (%zu bytes)", n);
        n += (size_t)r;
    }
}

void fake_expect(int fd, const char *want)
{
    size_t n;
    char *got = fake_read(fd, &n);
    if (n != strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("request bytes differ:\n got: %s\nwant: %s", got, want);
    free(got);
}

/* An answer laid out exactly as the original's DataSocket::Send (B 4.1). */
void fake_answer_ka(int fd, const char *status, const char *ctype, long pragma,
                    const char *body, bool keep)
{
    buf_t b;
    buf_init(&b, 1 << 20);
    buf_printf(&b, "HTTP/1.1 %s\r\nServer: PeerConnectionTestServer/0.1\r\n"
                   "Cache-Control: no-cache\r\nConnection: %s\r\n", status,
               keep ? "keep-alive" : "close");
    if (ctype)
        buf_printf(&b, "Content-Type: %s\r\n", ctype);
    buf_printf(&b, "Content-Length: %zu\r\n", strlen(body));
    if (pragma >= 0)
        buf_printf(&b, "Pragma: %ld\r\n", pragma);
    buf_append_str(&b, H_CORS_BLOCK + 2);
    buf_append_str(&b, "\r\n");
    buf_append_str(&b, body);
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    buf_free(&b);
}

void fake_answer(int fd, const char *status, const char *ctype, long pragma,
                 const char *body)
{
    fake_answer_ka(fd, status, ctype, pragma, body, false);
}

/* The original never closes after answering: the client must (B 7.4). */
void fake_expect_client_close(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, T_EVENT_MS) != 1)
        fail_msg("the client did not close the connection");
    char c;
    assert_int_equal(read(fd, &c, 1), 0);
    close(fd);
}

void *disconnect_thread(void *arg)
{
    pcsig_client_disconnect(arg);
    return NULL;
}

const char *client_path(void)
{
    const char *p = getenv("PCSIG_CLIENT");
    return p && *p ? p : "build/pcsig-client";
}

/* Our environment changed by env (NULL-terminated, or NULL): "NAME=value"
 * sets, a bare "NAME" removes. Free with free(). */
static char **env_with(const char *const *env)
{
    size_t n = 0, extra = 0;
    while (environ[n])
        n++;
    while (env && env[extra])
        extra++;
    char **out = calloc(n + extra + 1, sizeof *out);
    assert_non_null(out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool drop = false;
        for (size_t j = 0; j < extra; j++) {
            size_t l = strcspn(env[j], "=");
            if (strncmp(environ[i], env[j], l) == 0 && environ[i][l] == '=')
                drop = true;
        }
        if (!drop)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < extra; j++)
        if (strchr(env[j], '='))
            out[k++] = (char *)env[j];
    out[k] = NULL;
    return out;
}

/* Spawn the CLI with args (NULL-terminated) and pipes on stdin and stdout;
 * stderr is ours unless capture_err (then a pipe: p->err_fd); the
 * environment is ours changed by env (see env_with; NULL: unchanged). */
h_proc_t *cli_spawn_env(const char *const *args, bool capture_err,
                        const char *const *env)
{
    char *argv[32];
    size_t n = 0;
    argv[n++] = (char *)client_path();
    for (; *args && n < 28; args++)
        argv[n++] = (char *)*args;
    if (h_tls_mode()) {
        argv[n++] = "--tls";
        argv[n++] = "--ca";
        argv[n++] = (char *)h_tls_ca();
    }
    argv[n] = NULL;
    char **envp = env_with(env);
    h_proc_t *p = h_proc_spawn(argv, envp, capture_err);
    free(envp);
    return p;
}

h_proc_t *cli_spawn_(const char *const *args, bool capture_err)
{
    return cli_spawn_env(args, capture_err, NULL);
}

h_proc_t *cli_spawn(const char *const *args)
{
    return cli_spawn_(args, false);
}

/* The next stdout line (without '\n'), malloc'd. */
char *cli_line(h_proc_t *p)
{
    char *line = h_proc_line_by(p, h_now_ms() + T_EVENT_MS);
    if (!line)
        fail_msg("no output line from the CLI within %d ms (have \"%.*s\")", T_EVENT_MS,
                 (int)p->len, p->buf);
    return line;
}

void cli_expect_(h_proc_t *p, const char *want, int line)
{
    char *got = cli_line(p);
    if (strcmp(got, want) != 0)
        fail_msg("line %d: CLI printed\n  %s\nwanted\n  %s", line, got, want);
    free(got);
}

/* Close stdin (EOF = quit) and await the exit; returns the exit status. */
int cli_finish(h_proc_t *p, bool close_stdin)
{
    if (close_stdin && p->in_fd >= 0) {
        close(p->in_fd);
        p->in_fd = -1;
    }
    return h_proc_exit(p, T_EVENT_MS);
}

void cli_expect_after_(h_proc_t *p, const char *skip, const char *want, int line)
{
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        char *got = cli_line(p);
        if (skip && strncmp(got, skip, strlen(skip)) == 0) {
            free(got);
            if (h_now_ms() > deadline) /* skipped lines forever: want never came */
                fail_msg("line %d: no \"%s\" within %d ms", line, want, T_EVENT_MS);
            continue;
        }
        if (strcmp(got, want) != 0)
            fail_msg("line %d: CLI printed\n  %s\nwanted\n  %s", line, got, want);
        free(got);
        return;
    }
}

struct certs *certs_made; /* removed by the teardown */

const char *cert_in(struct certs *k, int slot, const char *dir, const char *name)
{
    snprintf(k->path[slot], sizeof k->path[slot], "%s/%s", dir, name);
    return k->path[slot];
}

void certs_make(struct certs *k)
{
    snprintf(k->a, sizeof k->a, "/tmp/pcsig-client-ca-XXXXXX");
    snprintf(k->b, sizeof k->b, "/tmp/pcsig-client-ca-XXXXXX");
    assert_non_null(mkdtemp(k->a));
    assert_non_null(mkdtemp(k->b));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "certs/gen-certs.sh --force %s >/dev/null && "
                              "certs/gen-certs.sh --force %s >/dev/null", k->a, k->b);
    certs_made = k;
    if (system(cmd) != 0)
        fail_msg("certs/gen-certs.sh failed (run the tests from the repository root)");
}

void certs_cleanup(void)
{
    if (!certs_made)
        return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", certs_made->a, certs_made->b);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s %s\n", certs_made->a, certs_made->b);
    certs_made = NULL;
}

/* All of a CLI's stderr until it closes (the CLI exited). */
char *cli_all_stderr(h_proc_t *p)
{
    buf_t b;
    buf_init(&b, 1 << 24);
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    for (;;) {
        struct pollfd pf = {.fd = p->err_fd, .events = POLLIN};
        if (poll(&pf, 1, h_ms_left(deadline)) != 1)
            fail_msg("stderr not closed within %d ms", T_EVENT_MS);
        char tmp[4096];
        ssize_t r = read(p->err_fd, tmp, sizeof tmp);
        if (r <= 0)
            break;
        assert_int_equal(buf_append(&b, tmp, (size_t)r), 0);
    }
    assert_int_equal(buf_append(&b, "", 1), 0);
    return b.data;
}

/* Spawn the CLI with stdin, stdout and stderr on a new pseudo-terminal;
 * p->out_fd is the master (in_fd and err_fd are copies of it). */
h_proc_t *cli_spawn_pty(const char *const *args)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(m >= 0);
    assert_int_equal(grantpt(m), 0);
    assert_int_equal(unlockpt(m), 0);
    char slave[128];
    assert_int_equal(ptsname_r(m, slave, sizeof slave), 0);
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)client_path();
    for (; *args && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, slave, O_RDWR | O_NOCTTY, 0);
    posix_spawn_file_actions_adddup2(&fa, 0, 1);
    posix_spawn_file_actions_adddup2(&fa, 0, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fail_msg("cannot run %s (error %d); set PCSIG_CLIENT", argv[0], rc);
    h_proc_t *p =
        h_proc_adopt(pid, fcntl(m, F_DUPFD_CLOEXEC, 3), m, fcntl(m, F_DUPFD_CLOEXEC, 3));
    assert_true(p->in_fd >= 0 && p->err_fd >= 0);
    return p;
}

size_t pty_await_(h_proc_t *p, size_t from, const char *needle)
{
    uint64_t deadline = h_now_ms() + T_EVENT_MS;
    size_t nl = strlen(needle);
    for (;;) {
        if (p->len >= from + nl) {
            const char *at = memmem(p->buf + from, p->len - from, needle, nl);
            if (at)
                return (size_t)(at - p->buf);
        }
        uint64_t now = h_now_ms();
        struct pollfd pf = {.fd = p->out_fd, .events = POLLIN};
        if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) != 1 ||
            p->len == sizeof p->buf)
            fail_msg("the terminal never showed \"%s\"; it shows:\n%.*s", needle, (int)p->len,
                     p->buf);
        ssize_t r = read(p->out_fd, p->buf + p->len, sizeof p->buf - p->len);
        if (r <= 0)
            fail_msg("the terminal closed before \"%s\"; it shows:\n%.*s", needle, (int)p->len,
                     p->buf);
        p->len += (size_t)r;
    }
}
