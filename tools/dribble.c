/*
 * pcsig-dribble: what a request head sent one byte per read costs the
 * parser, and the server (BENCHMARKS.md, "A head sent a byte at a time").
 *
 *   pcsig-dribble [--bytes N]
 *       The parser alone: a head of N bytes (default 16383, just under the
 *       server's default --max-header-bytes) handed to it after each of N
 *       one-byte "reads", once with the plain call (the buffer from its
 *       first byte each time) and once with the resumable one. Prints the
 *       CPU seconds of each and the bytes the resumable one examined.
 *
 *   pcsig-dribble --port P --pid PID [--host H] [--bytes N] [--gap-us U]
 *                 [--heads K]
 *       A running server: K heads (default 3) of N bytes, each sent one
 *       byte per write with TCP_NODELAY and a U microsecond pause after
 *       each write (default 50) so that most writes reach the server as a
 *       read of their own; the answer is read, and the server's CPU time
 *       (utime + stime of /proc/PID/stat) over the whole run is printed,
 *       per head.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "http.h"
#include "strlit.h"
#include "net.h"

/* A GET /sign_in head of exactly n bytes (n >= 64), padded by one header. */
static char *make_head(size_t n)
{
    static const char start[] = "GET /sign_in?dribble HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    static const char end[] = "\r\n\r\n";
    char *h = malloc(n);

    if (h == NULL)
        return NULL;
    memcpy(h, start, sizeof start - 1);
    memset(h + sizeof start - 1, 'p', n - (sizeof start - 1) - (sizeof end - 1));
    memcpy(h + n - (sizeof end - 1), end, sizeof end - 1);
    return h;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parser_only(size_t n)
{
    const http_limits_t lim = {.max_head = 16384, .max_body = 1 << 20};
    char *head = make_head(n);
    http_parse_state_t st = HTTP_PARSE_STATE_INIT;
    http_request_t req;
    http_error_t err;
    long plain = 0, resumed = 0;

    if (head == NULL)
        return 1;
    double t0 = cpu_now();
    for (size_t k = 1; k <= n; k++)
        plain = http_parse_request(head, k, &lim, &req, &err);
    double t1 = cpu_now();
    for (size_t k = 1; k <= n; k++)
        resumed = http_parse_request_resume(head, k, &lim, &st, &req, &err);
    double t2 = cpu_now();
    free(head);
    if (plain != (long)n || resumed != (long)n) {
        fprintf(stderr, "pcsig-dribble: the head did not parse (%ld, %ld)\n", plain, resumed);
        return 1;
    }
    printf("head_bytes=%zu reads=%zu plain_cpu_s=%.4f resume_cpu_s=%.6f resume_examined=%" PRIu64
           "\n",
           n, n, t1 - t0, t2 - t1, st.examined);
    return 0;
}

/* utime + stime of pid in seconds, or -1. */
static double proc_cpu(long pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t got = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[got] = '\0';
    /* Fields after the command name, which is in parentheses and may hold spaces. */
    char *p = strrchr(line, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                            &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int one_head(const char *host, uint16_t port, const char *head, size_t n, long gap_us)
{
    int fd = net_connect(host, port, 5000);
    if (fd < 0) {
        fprintf(stderr, "pcsig-dribble: connect: %d\n", fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const struct timespec gap = {.tv_sec = 0, .tv_nsec = gap_us * 1000};
    for (size_t i = 0; i < n; i++) {
        if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1) {
            fprintf(stderr, "pcsig-dribble: send at byte %zu: errno %d\n", i, errno);
            close(fd);
            return -1;
        }
        if (gap_us > 0)
            nanosleep(&gap, NULL);
    }
    char ans[256];
    ssize_t r = recv(fd, ans, sizeof ans - 1, 0);
    close(fd);
    if (r < 12 || memcmp(ans, STRLIT("HTTP/1.")) != 0) {
        fprintf(stderr, "pcsig-dribble: no answer (%zd)\n", r);
        return -1;
    }
    ans[r] = '\0';
    if (memcmp(ans + 8, STRLIT(" 200 ")) != 0) {
        fprintf(stderr, "pcsig-dribble: %.12s\n", ans);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 16383;
    long port = 0, pid = 0, gap_us = 50, heads = 3;
    const char *host = "127.0.0.1";

    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long x = v != NULL ? strtol(v, &end, 10) : 0;
        bool num_ok = v != NULL && end != v && *end == '\0' && x >= 0;
        if (strcmp(a, "--host") == 0 && v != NULL) {
            host = v;
        } else if (!num_ok) {
            fprintf(stderr, "usage: pcsig-dribble [--bytes N] [--port P --pid PID "
                            "[--host H] [--gap-us U] [--heads K]]\n");
            return 2;
        } else if (strcmp(a, "--bytes") == 0 && x >= 64) {
            n = (size_t)x;
        } else if (strcmp(a, "--port") == 0 && x > 0 && x < 65536) {
            port = x;
        } else if (strcmp(a, "--pid") == 0) {
            pid = x;
        } else if (strcmp(a, "--gap-us") == 0 && x < 1000000) {
            gap_us = x;
        } else if (strcmp(a, "--heads") == 0 && x > 0) {
            heads = x;
        } else {
            fprintf(stderr, "pcsig-dribble: bad %s\n", a);
            return 2;
        }
    }
    if (port == 0)
        return parser_only(n);

    char *head = make_head(n);
    if (head == NULL || pid <= 0)
        return 2;
    double c0 = proc_cpu(pid);
    for (long k = 0; k < heads; k++) {
        if (one_head(host, (uint16_t)port, head, n, gap_us) < 0)
            return 1;
    }
    double c1 = proc_cpu(pid);
    free(head);
    if (c0 < 0 || c1 < 0) {
        fprintf(stderr, "pcsig-dribble: cannot read /proc/%ld/stat\n", pid);
        return 1;
    }
    printf("head_bytes=%zu heads=%ld gap_us=%ld server_cpu_s=%.3f per_head_s=%.3f\n", n, heads,
           gap_us, c1 - c0, (c1 - c0) / (double)heads);
    return 0;
}
