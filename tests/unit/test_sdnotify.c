/*
 * Unit tests of sdnotify: the test plays the service manager. It binds its
 * own AF_UNIX datagram socket (a path in a fresh temporary directory, or an
 * abstract name), points $NOTIFY_SOCKET at it, calls the API and reads the
 * datagrams back. Failures (no such socket, nobody listening, unsupported or
 * over-long addresses) must come back as errors and be logged, escaped,
 * never abort.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "strlit.h"
#include "sdnotify.h"

#define RECV_TIMEOUT_MS 2000

struct manager {
    char dir[64];       /* temporary directory, "" for an abstract socket */
    char name[128];     /* the $NOTIFY_SOCKET value */
    int fd;
};

static void manager_bind(struct manager *m, const struct sockaddr_un *sa, socklen_t len)
{
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(m->fd >= 0);
    if (bind(m->fd, (const struct sockaddr *)sa, len) != 0)
        fail_msg("bind %s: errno %d", m->name, errno);
    assert_int_equal(setenv("NOTIFY_SOCKET", m->name, 1), 0);
}

/* A socket at <tmpdir>/notify, as systemd's /run/systemd/notify. */
static void manager_open_path(struct manager *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "/tmp/pcsig-sdnotify-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    snprintf(m->name, sizeof m->name, "%s/notify", m->dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, m->name, strlen(m->name) + 1);
    manager_bind(m, &sa, (socklen_t)sizeof sa);
}

/* A socket in the abstract namespace, named "@..." in $NOTIFY_SOCKET. */
static void manager_open_abstract(struct manager *m)
{
    memset(m, 0, sizeof *m);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(m->name, sizeof m->name, "@pcsig-sdnotify-test-%ld-%ld", (long)getpid(),
             (long)ts.tv_nsec);
    size_t n = strlen(m->name);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path + 1, m->name + 1, n - 1); /* sun_path[0] stays NUL */
    manager_bind(m, &sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
}

static void manager_close(struct manager *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    if (m->dir[0]) {
        unlink(m->name);
        rmdir(m->dir);
    }
    unsetenv("NOTIFY_SOCKET");
}

/* The next datagram into out (NUL-terminated); fails the test on timeout. */
static size_t manager_recv(struct manager *m, char *out, size_t cap)
{
    struct pollfd p = {.fd = m->fd, .events = POLLIN};
    int rc = poll(&p, 1, RECV_TIMEOUT_MS);
    if (rc != 1)
        fail_msg("no datagram within %d ms", RECV_TIMEOUT_MS);
    ssize_t n = recv(m->fd, out, cap - 1, MSG_TRUNC);
    assert_true(n >= 0);
    assert_true((size_t)n < cap - 1); /* not truncated */
    out[n] = '\0';
    return (size_t)n;
}

static void manager_expect(struct manager *m, const char *want)
{
    char got[512];
    size_t n = manager_recv(m, got, sizeof got);
    if (n != strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("got datagram \"%s\", want \"%s\"", got, want);
}

static void manager_expect_nothing(struct manager *m)
{
    char tmp[64];
    assert_int_equal(recv(m->fd, tmp, sizeof tmp, MSG_DONTWAIT), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static uint64_t now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void test_unset_sends_nothing(void **state)
{
    (void)state;
    struct manager m;
    manager_open_path(&m);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sdnotify_send("READY=1"), 0);
    assert_int_equal(sdnotify_reloading(), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
    assert_int_equal(sdnotify_send("READY=1"), 0);
    manager_expect_nothing(&m);
    manager_close(&m);
}

static void test_path_socket(void **state)
{
    (void)state;
    struct manager m;
    manager_open_path(&m);
    assert_int_equal(sdnotify_send("READY=1"), 0);
    manager_expect(&m, "READY=1");
    manager_expect_nothing(&m);
    manager_close(&m);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    struct manager m;
    manager_open_abstract(&m);
    assert_int_equal(sdnotify_send("READY=1"), 0);
    manager_expect(&m, "READY=1");
    assert_int_equal(sdnotify_send("STOPPING=1"), 0);
    manager_expect(&m, "STOPPING=1");
    manager_close(&m);
}

static void test_reloading_carries_monotonic_usec(void **state)
{
    (void)state;
    struct manager m;
    manager_open_path(&m);
    uint64_t before = now_usec();
    assert_int_equal(sdnotify_reloading(), 0);
    uint64_t after = now_usec();
    char got[512];
    manager_recv(&m, got, sizeof got);
    static const char prefix[] = "RELOADING=1\nMONOTONIC_USEC=";
    if (strncmp(got, prefix, sizeof prefix - 1) != 0)
        fail_msg("got \"%s\"", got);
    const char *num = got + sizeof prefix - 1;
    assert_true(num[0] >= '1' && num[0] <= '9');
    char *end = NULL;
    errno = 0;
    unsigned long long usec = strtoull(num, &end, 10);
    assert_int_equal(errno, 0);
    assert_true(*end == '\0'); /* nothing after the number, not even '\n' */
    assert_true(usec >= before && usec <= after);
    manager_close(&m);
}

/* What the server sends over its life, in order: start, SIGHUP, SIGTERM. */
static void test_lifecycle_order(void **state)
{
    (void)state;
    struct manager m;
    manager_open_path(&m);
    assert_int_equal(sdnotify_send("READY=1"), 0);
    assert_int_equal(sdnotify_reloading(), 0);
    assert_int_equal(sdnotify_send("READY=1"), 0);
    assert_int_equal(sdnotify_send("STOPPING=1"), 0);
    char got[512];
    manager_expect(&m, "READY=1");
    manager_recv(&m, got, sizeof got);
    assert_true(strncmp(got, STRLIT("RELOADING=1\n")) == 0);
    manager_expect(&m, "READY=1");
    manager_expect(&m, "STOPPING=1");
    manager_expect_nothing(&m);
    manager_close(&m);
}

/* Run sdnotify_send("READY=1") with fd 2 on a pipe; returns its result and
 * what was logged (NUL-terminated) in out. */
static int send_capturing_log(char *out, size_t cap)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(p[1], 2) == 2);
    int rc = sdnotify_send("READY=1");
    assert_true(dup2(saved, 2) == 2);
    close(saved);
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(p[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    return rc;
}

static void expect_failure(const char *value, int want_err, const char *want_in_log)
{
    char log[4096];
    assert_int_equal(setenv("NOTIFY_SOCKET", value, 1), 0);
    int rc = send_capturing_log(log, sizeof log);
    if (rc != want_err)
        fail_msg("NOTIFY_SOCKET=%s: got %d, want %d", value, rc, want_err);
    if (!strstr(log, "WARN") || !strstr(log, "sd_notify READY=1") || !strstr(log, want_in_log))
        fail_msg("NOTIFY_SOCKET=%s: logged \"%s\", want a warning with \"%s\"", value, log,
                 want_in_log);
    /* One record, one line: hostile bytes in the name are escaped. */
    char *nl = strchr(log, '\n');
    assert_non_null(nl);
    assert_true(nl[1] == '\0');
}

static void test_failures_are_errors_not_fatal(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    struct manager m;
    manager_open_path(&m);
    char path[192];

    /* Nothing bound there. */
    snprintf(path, sizeof path, "%s/absent", m.dir);
    expect_failure(path, -ENOENT, "/absent");

    /* A socket file whose owner went away. */
    snprintf(path, sizeof path, "%s/notify", m.dir);
    close(m.fd);
    m.fd = -1;
    expect_failure(path, -ECONNREFUSED, "/notify");

    /* Neither an absolute path nor "@name". */
    expect_failure("relative/notify", -EAFNOSUPPORT, "relative/notify");
    expect_failure("vsock:2:1234", -EAFNOSUPPORT, "vsock:2:1234");

    /* Longer than sun_path (108 bytes with its NUL). */
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = '\0';
    expect_failure(longname, -ENAMETOOLONG, "/aaaa");
    longname[108] = '\0'; /* 108 bytes + NUL: still one too many */
    expect_failure(longname, -ENAMETOOLONG, "/aaaa");
    longname[107] = '\0'; /* 107 bytes + NUL fit: nobody there */
    expect_failure(longname, -ENOENT, "/aaaa");
    /* Abstract: no NUL, the '@' takes sun_path[0]: '@' + 107 bytes fit. */
    longname[0] = '@';
    memset(longname + 1, 'a', 108);
    longname[109] = '\0';
    expect_failure(longname, -ENAMETOOLONG, "@aaaa");
    longname[108] = '\0';
    expect_failure(longname, -ECONNREFUSED, "@aaaa");

    /* Control bytes in the value reach the log escaped. */
    expect_failure("/no\nsuch\x1b[31m", -ENOENT, "/no\\x0asuch\\x1b[31m");
    manager_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unset_sends_nothing),
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_reloading_carries_monotonic_usec),
        cmocka_unit_test(test_lifecycle_order),
        cmocka_unit_test(test_failures_are_errors_not_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
