/*
 * sdnotify: the sd_notify(3) datagrams to $NOTIFY_SOCKET (see sdnotify.h).
 * A fresh socket per message: states change a handful of times in a
 * server's life, and no descriptor is held open (or inherited) in between.
 */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define SDNOTIFY_MAX_MSG 256 /* our messages are a few assignments */
#define SDNOTIFY_MAX_SHOWN 128 /* bytes of $NOTIFY_SOCKET quoted in a log record */

/* Log a failure about socket name (untrusted bytes: escaped). */
static int sdnotify_fail(int err, const char *what, const char *name, const char *state)
{
    buf_t b;
    buf_init(&b, 4 * SDNOTIFY_MAX_SHOWN + 8);
    (void)log_escape(&b, name, strlen(name), SDNOTIFY_MAX_SHOWN);
    size_t n = strcspn(state, "\n"); /* the first assignment names the message */
    log_errno(LOG_WARN, -err, "sd_notify %.*s to NOTIFY_SOCKET=\"%.*s\": %s", (int)n, state,
              (int)b.len, b.data ? b.data : "", what);
    buf_free(&b);
    return err;
}

/* Fill sa and *len from $NOTIFY_SOCKET's value: "/path" or "@abstract".
 * Returns 0 or a negative errno. */
static int sdnotify_address(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = strlen(name);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (name[0] != '/' && name[0] != '@')
        return -EAFNOSUPPORT; /* "vsock:..." and the like: not ours to speak */
    /* A path keeps its NUL inside sun_path; an abstract name has none and its
     * leading '@' becomes the NUL that marks the abstract namespace. */
    if (n + (name[0] == '/') > sizeof sa->sun_path)
        return -ENAMETOOLONG;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@') {
        sa->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int sdnotify_send(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !name[0])
        return 0; /* not started by a service manager that listens */
    struct sockaddr_un sa;
    socklen_t salen = 0;
    int err = sdnotify_address(name, &sa, &salen);
    if (err < 0)
        return sdnotify_fail(err, "unsupported address", name, state);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sdnotify_fail(-errno, "socket", name, state);
    size_t len = strlen(state);
    ssize_t sent;
    do
        sent = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
    while (sent < 0 && errno == EINTR);
    err = sent < 0 ? -errno : 0;
    close(fd);
    /* A datagram goes whole or not at all: no short write to resume. */
    if (err < 0)
        return sdnotify_fail(err, "sendto", name, state);
    return 0;
}

int sdnotify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    buf_t b;
    buf_init(&b, SDNOTIFY_MAX_MSG);
    int err = buf_printf(&b, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)usec);
    if (err < 0)
        log_errno(LOG_WARN, -err, "sd_notify RELOADING=1: cannot build the message");
    else
        err = sdnotify_send(b.data); /* buf_printf leaves a NUL after len */
    buf_free(&b);
    return err;
}
