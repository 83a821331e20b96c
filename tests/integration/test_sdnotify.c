/*
 * systemd readiness (Type=notify) of the real server: with $NOTIFY_SOCKET
 * pointing at a datagram socket of ours, the server says READY=1 once it
 * listens, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a SIGHUP
 * reload, and STOPPING=1 when SIGTERM starts the drain. A service manager
 * that has gone away costs nothing: the server logs and carries on.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct notify_sock {
    char dir[64];
    char path[128];
    int fd;
};

static void notify_open(struct notify_sock *n)
{
    snprintf(n->dir, sizeof n->dir, "/tmp/pcsig-notify-XXXXXX");
    assert_non_null(mkdtemp(n->dir));
    snprintf(n->path, sizeof n->path, "%s/notify", n->dir);
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(n->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, n->path, strlen(n->path) + 1);
    assert_int_equal(bind(n->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    /* The harness spawns the server with our environment. */
    assert_int_equal(setenv("NOTIFY_SOCKET", n->path, 1), 0);
}

static void notify_close(struct notify_sock *n)
{
    unsetenv("NOTIFY_SOCKET");
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
    unlink(n->path);
    rmdir(n->dir);
}

/* The next datagram, which must begin with want. */
static void notify_expect(struct notify_sock *n, const char *want)
{
    struct pollfd p = {.fd = n->fd, .events = POLLIN};
    if (poll(&p, 1, H_TIMEOUT_MS) != 1)
        fail_msg("no notification within %d ms (want \"%s\")", H_TIMEOUT_MS, want);
    char got[512];
    ssize_t r = recv(n->fd, got, sizeof got - 1, 0);
    assert_true(r > 0);
    got[r] = '\0';
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("got notification \"%s\", want \"%s\"", got, want);
}

static void notify_expect_nothing(struct notify_sock *n, int ms)
{
    struct pollfd p = {.fd = n->fd, .events = POLLIN};
    int rc = poll(&p, 1, ms);
    if (rc != 0) {
        char got[512] = "";
        ssize_t r = recv(n->fd, got, sizeof got - 1, MSG_DONTWAIT);
        if (r > 0)
            got[r] = '\0';
        fail_msg("unexpected notification \"%s\"", got);
    }
}

static void test_notify_lifecycle(void **state)
{
    (void)state;
    struct notify_sock n;
    notify_open(&n);
    h_server_t s;
    h_server_start(&s, (char *)NULL);
    notify_expect(&n, "READY=1");
    notify_expect_nothing(&n, H_SILENCE_MS);

    /* Serving meanwhile: a sign-in works between the notifications. */
    uint64_t id = h_sign_in(&s, "alice");
    assert_true(id > 0);

    /* SIGHUP: a reload with or without TLS (plain: nothing to re-read). */
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    notify_expect(&n, "RELOADING=1\nMONOTONIC_USEC=");
    notify_expect(&n, "READY=1");
    assert_true(h_sign_in(&s, "bob") > id); /* still serving, same members */

    assert_int_equal(h_server_stop(&s), 0);
    notify_expect(&n, "STOPPING=1");
    notify_close(&n);
    h_pass();
}

static void test_notify_socket_gone(void **state)
{
    (void)state;
    struct notify_sock n;
    notify_open(&n);
    close(n.fd); /* the "service manager" went away: sends get ECONNREFUSED */
    n.fd = -1;
    h_server_t s;
    h_server_start(&s, (char *)NULL);
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    assert_true(h_sign_in(&s, "carol") > 0);
    assert_int_equal(h_server_stop(&s), 0);
    notify_close(&n);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_notify_lifecycle),
        H_TEST(test_notify_socket_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
