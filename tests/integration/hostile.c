/* Helpers of the hostile-client tests: see hostile.h. */
#include "hostile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "net.h"
#include "strlit.h"
#include "tls.h"

/* The server process has not exited (its pidfd is not readable). */
static bool server_alive(const h_server_t *s)
{
    if (!s->running || s->pidfd < 0)
        return false;
    struct pollfd p = {.fd = s->pidfd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

void assert_alive_at(const char *file, int line, const h_server_t *s)
{
    if (!server_alive(s))
        fail_msg("%s:%d: the server (pid %d) is gone", file, line, (int)s->pid);
}

/* Printable excerpt of bytes for failure messages. */
const char *show(const char *p, size_t n)
{
    static char out[400];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < sizeof out; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (ch == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (ch < 0x20 || ch >= 0x7f) {
            snprintf(out + o, sizeof out - o, "\\x%02x", ch);
            o += 4;
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return out;
}

void note(const char *fmt, ...)
{
    if (!getenv("PCSIG_TEST_VERBOSE"))
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "note: %s\n", line);
}

/* A response read without failing the test: NULL on timeout or EOF. */
h_resp_t *try_read(h_conn_t *c, int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    for (;;) {
        h_resp_t *r = h_take(c);
        if (r)
            return r;
        struct pollfd p = {.fd = h_fd(c), .events = POLLIN};
        int n = poll(&p, 1, h_ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        if (h_pump(c) == 0)
            return h_take(c); /* closed: the last response, if complete */
    }
}

void *allocs[MAX_ALLOCS];

size_t nallocs;

void *tmalloc(size_t n)
{
    if (nallocs == MAX_ALLOCS)
        fail_msg("more than %d test buffers", MAX_ALLOCS);
    void *p = malloc(n);
    if (!p)
        fail_msg("out of memory (%zu bytes)", n);
    allocs[nallocs++] = p;
    return p;
}

void tfree(void *p)
{
    for (size_t i = 0; i < nallocs; i++) {
        if (allocs[i] == p) {
            allocs[i] = allocs[--nallocs];
            break;
        }
    }
    free(p);
}

/* Fixed-seed PRNG (xorshift64*): the garbage is the same on every run. */
uint64_t prng_state;

uint64_t prng(void)
{
    prng_state ^= prng_state >> 12;
    prng_state ^= prng_state << 25;
    prng_state ^= prng_state >> 27;
    return prng_state * 0x2545F4914F6CDD1Dull;
}

hc_t *hc_list[HC_MAX];

size_t hc_count;

tls_client_t *insecure_tls;

pid_t children[8];

size_t nchildren;

tls_client_t *my_tls(void)
{
    if (!insecure_tls) {
        struct tls_client_options o = {.insecure = true};
        char why[256] = "";
        if (tls_client_new(&o, &insecure_tls, why, sizeof why) < 0)
            fail_msg("tls_client_new: %s", why);
    }
    return insecure_tls;
}

static hc_t *hc_try_open(const h_server_t *s, int how)
{
    int fd = net_connect("127.0.0.1", s->port, H_TIMEOUT_MS);
    if (fd < 0)
        return NULL;
    conn_t *c;
    if (how == HC_AUTO && h_tls_mode()) {
        c = insecure_tls ? tls_client_wrap(insecure_tls, fd, "localhost") : NULL;
        if (!c) {
            close(fd);
            return NULL;
        }
        if (conn_handshake_timed(c, H_TIMEOUT_MS) < 0) {
            conn_close(c);
            return NULL;
        }
    } else {
        c = conn_plain_new(fd);
        if (!c) {
            close(fd);
            return NULL;
        }
    }
    hc_t *h = calloc(1, sizeof *h);
    if (!h) {
        conn_close(c);
        return NULL;
    }
    h->c = c;
    h->fd = fd;
    return h;
}

static void hc_track(hc_t *h)
{
    if (hc_count == HC_MAX)
        fail_msg("more than %d hostile connections", HC_MAX);
    hc_list[hc_count++] = h;
}

hc_t *hc_open_at(const char *file, int line, const h_server_t *s, int how)
{
    if (how == HC_AUTO && h_tls_mode())
        my_tls();
    hc_t *h = hc_try_open(s, how);
    if (!h)
        fail_msg("%s:%d: cannot connect to port %u", file, line, (unsigned)s->port);
    hc_track(h);
    return h;
}

void hc_close(hc_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < hc_count; i++) {
        if (hc_list[i] == h) {
            hc_list[i] = hc_list[--hc_count];
            break;
        }
    }
    conn_close(h->c);
    free(h->buf);
    free(h);
}

/* Write p[*pos..n) without blocking for more than quiet_ms at a time:
 * 1 all written, 0 the peer took nothing for quiet_ms, or -errno. */
static int hc_push(hc_t *h, const void *p, size_t n, size_t *pos, int quiet_ms)
{
    const char *b = p;
    while (*pos < n) {
        ssize_t w = conn_write(h->c, b + *pos, n - *pos);
        if (w > 0) {
            *pos += (size_t)w;
            continue;
        }
        if (w != -EAGAIN)
            return w == 0 ? -EIO : (int)w;
        struct pollfd pf = {.fd = h->fd, .events = conn_want(h->c)};
        int r = poll(&pf, 1, quiet_ms);
        if (r == 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
    return 1;
}

/* Write everything within timeout_ms: 0 or -errno (-ETIMEDOUT). */
int hc_write_all(hc_t *h, const void *p, size_t n, int timeout_ms)
{
    return conn_write_all_timed(h->c, p, n, timeout_ms);
}

/* Read what is there: >0 bytes, 0 EOF (or error), -1 nothing yet. */
static ssize_t hc_pump(hc_t *h)
{
    if (h->eof)
        return 0;
    ssize_t total = 0;
    for (;;) {
        if (h->cap - h->len < 16384) {
            size_t ncap = h->cap ? h->cap * 2 : 65536;
            char *nb = ncap <= (256u * MB) ? realloc(h->buf, ncap) : NULL;
            if (!nb) {
                h->eof = true;
                return total ? total : 0;
            }
            h->buf = nb;
            h->cap = ncap;
        }
        ssize_t n = conn_read(h->c, h->buf + h->len, h->cap - h->len);
        if (n > 0) {
            h->len += (size_t)n;
            total += n;
            continue;
        }
        if (n == -EAGAIN)
            return total ? total : -1;
        h->eof = true;
        return total ? total : 0;
    }
}

void rresp_free(rresp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* One complete response from the front of buf[0..*len): 1 (consumed), 0 not
 * yet, -1 malformed. */
int take_resp(char *buf, size_t *len, rresp_t *r)
{
    static http_response_t pr;
    http_error_t err = {0};
    const http_limits_t lim = {.max_head = 1u << 20, .max_body = UINT64_MAX};
    if (*len == 0)
        return 0;
    long head = http_parse_response(buf, *len, &lim, &pr, &err);
    if (head < 0)
        return -1;
    if (head == 0)
        return 0;
    if (!pr.has_content_length)
        return -1;
    if (*len - (size_t)head < pr.content_length)
        return 0;
    memset(r, 0, sizeof *r);
    r->status = pr.status;
    snprintf(r->reason, sizeof r->reason, "%.*s", (int)pr.reason.len,
             pr.reason.ptr ? pr.reason.ptr : "");
    r->close = pr.connection_close;
    r->pragma = -1;
    const http_header_t *p = http_find_header(pr.headers, pr.num_headers, "Pragma");
    if (p) {
        long long v = p->value.len ? 0 : -1;
        for (size_t i = 0; i < p->value.len && v >= 0 && v < (1ll << 40); i++)
            v = (p->value.ptr[i] >= '0' && p->value.ptr[i] <= '9')
                    ? v * 10 + (p->value.ptr[i] - '0')
                    : -1;
        r->pragma = v;
    }
    r->body_len = (size_t)pr.content_length;
    r->body = malloc(r->body_len + 1);
    if (!r->body)
        return -1;
    memcpy(r->body, buf + head, r->body_len);
    r->body[r->body_len] = '\0';
    size_t used = (size_t)head + r->body_len;
    memmove(buf, buf + used, *len - used);
    *len -= used;
    return 1;
}

/* The next response within ms: 1, 0 closed first, -1 malformed, -2 timeout. */
int hc_read_resp(hc_t *h, rresp_t *r, int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    for (;;) {
        int t = take_resp(h->buf, &h->len, r);
        if (t != 0)
            return t;
        if (h->eof)
            return 0;
        struct pollfd pf = {.fd = h->fd, .events = POLLIN};
        int n = poll(&pf, 1, h_ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -2;
        hc_pump(h);
    }
}

/* Read until EOF within ms: true when EOF came (the bytes stay in h->buf). */
bool hc_read_to_eof(hc_t *h, int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    while (!h->eof) {
        struct pollfd pf = {.fd = h->fd, .events = POLLIN};
        int n = poll(&pf, 1, h_ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        hc_pump(h);
    }
    return true;
}

const char *const pair_names[2] = {"alice", "bob"};

pair_t the_pair;

static void pair_park(pair_t *p, int i)
{
    h_sendf(p->w[i], "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n", p->id[i]);
}

static void append(char *dst, size_t *len, const char *src, size_t n)
{
    if (*len + n + 1 > NOTES_CAP)
        fail_msg("pair log overflow (%zu bytes)", *len + n);
    memcpy(dst + *len, src, n);
    *len += n;
    dst[*len] = '\0';
}

void pair_body(const pair_t *p, int from, unsigned n, char *out, size_t cap)
{
    (void)p;
    snprintf(out, cap, "pair message %u from %s", n, pair_names[from]);
}

static void pair_handle(pair_t *p, int i, h_resp_t *r)
{
    if (r->status != 200 || strcmp(r->reason, "OK") != 0)
        fail_msg("%s's /wait answered %d %s: %s", pair_names[i], r->status, r->reason,
                 show(r->body, r->body_len));
    long long pragma = h_hdr_num(r, "Pragma");
    if (pragma == (long long)p->id[i]) {
        if (r->body_len == 0) {
            /* an idle parked /wait answered empty: re-poll */
        } else if (strcmp(r->body, "Server shutting down") == 0) {
            p->shut[i] = true;
            if (!h_hdr(r, "Connection") || strcmp(h_hdr(r, "Connection"), "close") != 0)
                fail_msg("%s: the shutdown notice without Connection: close", pair_names[i]);
            h_resp_free(r);
            return;
        } else {
            if (r->body[r->body_len - 1] != '\n' || memchr(r->body, '\n', r->body_len - 1))
                fail_msg("%s: a notification that is not one line: %s", pair_names[i],
                         show(r->body, r->body_len));
            append(p->notes[i], &p->notes_len[i], r->body, r->body_len);
            p->last_note_ms[i] = h_now_ms();
        }
    } else if (pragma == (long long)p->id[1 - i]) {
        char want[64];
        pair_body(p, 1 - i, p->got[i], want, sizeof want);
        if (r->body_len != strlen(want) || memcmp(r->body, want, r->body_len) != 0)
            fail_msg("%s expected \"%s\" from %s, got \"%s\" (lost, duplicated or reordered)",
                     pair_names[i], want, pair_names[1 - i], show(r->body, r->body_len));
        if (!h_hdr(r, "Content-Type") || strcmp(h_hdr(r, "Content-Type"), "text/plain") != 0)
            fail_msg("%s: message without its Content-Type", pair_names[i]);
        p->got[i]++;
    } else if (pragma > 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "from %lld: ", pragma);
        append(p->extra[i], &p->extra_len[i], line, (size_t)n);
        append(p->extra[i], &p->extra_len[i], r->body, r->body_len > 200 ? 200 : r->body_len);
        append(p->extra[i], &p->extra_len[i], STRLIT("\n"));
    } else {
        fail_msg("%s's /wait answered without a Pragma:\n%s", pair_names[i], r->head);
    }
    h_resp_free(r);
    pair_park(p, i);
}

static void pair_pump(pair_t *p, int i)
{
    ssize_t got = h_pump(p->w[i]);
    h_resp_t *r;
    while (!p->shut[i] && (r = h_take(p->w[i])) != NULL)
        pair_handle(p, i, r);
    if (got == 0 && !p->shut[i])
        fail_msg("the server closed %s's parked /wait connection", pair_names[i]);
}

int pair_poll(pair_t *p, int ms, h_conn_t *const *ex, size_t nex)
{
    uint64_t deadline = h_now_ms() + (uint64_t)(ms > 0 ? ms : 0);
    struct pollfd pf[2 + PAIR_MAX_EXTRA];
    assert_true(nex <= PAIR_MAX_EXTRA);
    for (;;) {
        size_t n = 0;
        for (int i = 0; i < 2; i++)
            pf[n++] = (struct pollfd){.fd = p->shut[i] ? -1 : h_fd(p->w[i]), .events = POLLIN};
        for (size_t k = 0; k < nex; k++)
            pf[n++] = (struct pollfd){.fd = ex[k] ? h_fd(ex[k]) : -1, .events = POLLIN};
        int r = poll(pf, (nfds_t)n, h_ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        bool pair_event = false;
        for (int i = 0; i < 2; i++) {
            if (pf[i].revents) {
                pair_pump(p, i);
                pair_event = true;
            }
        }
        for (size_t k = 0; k < nex; k++)
            if (pf[2 + k].revents && h_pump(ex[k]) != -1)
                return (int)k;
        if (pair_event)
            return -2;
    }
}

/* Serve the pair for ms. */
void pair_service(pair_t *p, int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    while (h_ms_left(deadline) > 0)
        pair_poll(p, h_ms_left(deadline), NULL, 0);
}

void pair_until_at(const char *file, int line, pair_t *p, int ms, pair_pred pred, const void *arg,
                   const char *what)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    while (!pred(p, arg)) {
        if (h_ms_left(deadline) == 0)
            fail_msg("%s:%d: not within %d ms: %s (alice got %u/%u, bob %u/%u; notes alice "
                     "\"%s\")",
                     file, line, ms, what, p->got[0], p->sent[1], p->got[1], p->sent[0],
                     show(p->notes[0], p->notes_len[0]));
        pair_poll(p, h_ms_left(deadline), NULL, 0);
    }
}

bool all_delivered(const pair_t *p, const void *arg)
{
    (void)arg;
    return p->got[0] == p->sent[1] && p->got[1] == p->sent[0];
}

bool both_noted(const pair_t *p, const void *arg)
{
    return strstr(p->notes[0], arg) && strstr(p->notes[1], arg);
}

bool alice_noted(const pair_t *p, const void *arg)
{
    return strstr(p->notes[0], arg) != NULL;
}

bool alice_extra(const pair_t *p, const void *arg)
{
    return strstr(p->extra[0], arg) != NULL;
}

/* Member i sends its next message to the other (fails unless acknowledged). */
static void pair_post(pair_t *p, int i)
{
    char body[64];
    pair_body(p, i, p->sent[i], body, sizeof body);
    if (p->ctl[i]) {
        h_sendf(p->ctl[i],
                "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
                "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                p->id[i], p->id[1 - i], strlen(body), body);
        h_resp_t *r = h_read(p->ctl[i]);
        if (r->status != 200 || r->body_len != 0)
            fail_msg("%s's message: %d %s %s", pair_names[i], r->status, r->reason,
                     show(r->body, r->body_len));
        h_resp_free(r);
    } else {
        h_send_ok(p->srv, p->id[i], p->id[1 - i], body, strlen(body), "text/plain");
    }
    p->sent[i]++;
}

void pair_exchange_(pair_t *p)
{
    pair_post(p, 0);
    pair_post(p, 1);
    pair_until(p, H_TIMEOUT_MS, all_delivered, NULL, "the pair's messages are delivered");
}

/*
 * alice and bob sign in (first, so as ids 1 and 2) and park their /waits;
 * alice's first answer is bob's join. persistent: posts go over two
 * keep-alive connections opened now (for tests where new connections may
 * be refused), warmed up with one request so that the read timeout for a
 * new connection's first request does not apply to them.
 */
void pair_start(pair_t *p, const h_server_t *srv, bool persistent)
{
    memset(p, 0, sizeof *p);
    p->srv = srv;
    for (int i = 0; i < 2; i++)
        p->id[i] = h_sign_in(srv, pair_names[i]);
    for (int i = 0; i < 2; i++) {
        p->w[i] = h_connect(srv);
        pair_park(p, i);
    }
    if (persistent) {
        for (int i = 0; i < 2; i++) {
            p->ctl[i] = h_connect(srv);
            h_send_str(p->ctl[i], "OPTIONS /warm-up HTTP/1.1\r\nHost: t\r\n\r\n");
            h_resp_t *r = h_read(p->ctl[i]);
            H_ASSERT_STATUS(r, 200, "OK");
            h_resp_free(r);
        }
    }
    char join[64];
    snprintf(join, sizeof join, "bob,%" PRIu64 ",1\n", p->id[1]);
    pair_until(p, H_TIMEOUT_MS, alice_noted, join, "alice hears bob's join");
}

void pair_expect_notes_at(const char *file, int line, const pair_t *p, int i, const char *want)
{
    if (strcmp(p->notes[i], want) != 0)
        fail_msg("%s:%d: %s's notifications:\n%s\nexpected:\n%s", file, line, pair_names[i],
                 p->notes[i], want);
}

void pair_expect_extra_at(const char *file, int line, const pair_t *p, const char *a, const char *b)
{
    if (strcmp(p->extra[0], a) != 0 || strcmp(p->extra[1], b) != 0)
        fail_msg("%s:%d: messages from others: alice \"%s\", bob \"%s\"; expected \"%s\", \"%s\"",
                 file, line, p->extra[0], p->extra[1], a, b);
}

/* After h_server_stop: each parked /wait got the shutdown notice, then EOF. */
void pair_expect_shutdown(pair_t *p)
{
    for (int i = 0; i < 2; i++) {
        if (!p->shut[i]) {
            h_resp_t *r = h_read(p->w[i]);
            H_ASSERT_STATUS(r, 200, "OK");
            H_ASSERT_PRAGMA(r, p->id[i]);
            H_ASSERT_HDR(r, "Connection", "close");
            H_ASSERT_BODY(r, "Server shutting down");
            h_resp_free(r);
            p->shut[i] = true;
        }
        h_expect_eof(p->w[i], H_TIMEOUT_MS);
    }
}

void pair_stop_(pair_t *p, h_server_t *srv)
{
    pair_exchange_(p);
    assert_int_equal(h_server_stop_(srv), 0);
    pair_expect_shutdown(p);
}

void expect_refusal_at(const char *file, int line, const h_server_t *srv, const void *req, size_t len,
                       int status)
{
    h_at(file, line);
    h_conn_t *c = h_connect_(srv);
    h_send_(c, req, len);
    h_resp_t *r = h_read_(c, H_TIMEOUT_MS);
    if (r->status != status)
        fail_msg("%s:%d: request \"%s\": expected %d, got %d %s: %s", file, line,
                 show(req, len > 120 ? 120 : len), status, r->status, r->reason,
                 show(r->body, r->body_len));
    H_ASSERT_HDR(r, "Connection", "close");
    H_ASSERT_HDR(r, "Content-Type", "text/plain");
    H_ASSERT_NO_HDR(r, "Pragma");
    if (r->body_len < 2 || r->body[r->body_len - 1] != '\n' ||
        memchr(r->body, '\n', r->body_len - 1))
        fail_msg("%s:%d: the reason is not one line: %s", file, line,
                 show(r->body, r->body_len));
    h_resp_free(r);
    h_expect_eof_(c, H_TIMEOUT_MS);
    h_close(c);
    assert_alive_at(file, line, srv);
}

/* Push copies of req (len bytes) into h until the peer takes nothing for a
 * second; returns the bytes pushed. Fails when the connection breaks or when
 * far more than any socket buffers could hold was taken. */
size_t push_until_full(hc_t *h, const char *req, size_t len, const char *what)
{
    size_t total = 0, pos = 0;
    for (;;) {
        size_t before = pos;
        int rc = hc_push(h, req, len, &pos, 1000);
        total += pos - before;
        if (rc < 0)
            fail_msg("%s: the connection broke (errno %d) after %zu bytes", what, -rc, total);
        if (rc == 0)
            return total;
        pos = 0;
        if (total > 1024u * MB)
            fail_msg("%s: the server took %zu bytes from a client that reads nothing", what,
                     total);
    }
}

/* Raw TCP connections (no TLS), non-blocking. */
void open_raw(const h_server_t *srv, int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fds[i] = net_connect("127.0.0.1", srv->port, H_TIMEOUT_MS);
        if (fds[i] < 0)
            fail_msg("connection %zu of %zu: errno %d", i, n, -fds[i]);
        if (net_set_nonblocking(fds[i], 1) < 0)
            fail_msg("net_set_nonblocking: errno %d", errno);
    }
}

/* Read what fd has: false when nothing is there yet. */
static bool raw_pump(int fd, rawbuf_t *rb)
{
    bool any = false;
    while (!rb->eof) {
        char tmp[4096];
        ssize_t n = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n > 0) {
            size_t take = (size_t)n < sizeof rb->b - rb->len ? (size_t)n : sizeof rb->b - rb->len;
            memcpy(rb->b + rb->len, tmp, take);
            rb->len += take;
            any = true;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        rb->eof = true; /* EOF or reset */
        any = true;
    }
    return any;
}

/*
 * Await, on fds[i] with want[i] set, the whole answer and EOF (deadline ms);
 * then the first response of each must have status st (0: either no bytes
 * at all or st_alt). Returns how many ended.
 */
size_t await_raw_eof(const int *fds, rawbuf_t *rb, const bool *want, size_t n, size_t stop_at,
                     int ms)
{
    static struct pollfd pf[FLOOD];
    static size_t idx[FLOOD];
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    size_t ended = 0;
    for (size_t i = 0; i < n; i++)
        ended += want[i] && rb[i].eof;
    while (ended < stop_at && h_ms_left(deadline) > 0) {
        size_t np = 0;
        for (size_t i = 0; i < n; i++) {
            if (want[i] && !rb[i].eof) {
                pf[np] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                idx[np++] = i;
            }
        }
        int r = poll(pf, (nfds_t)np, h_ms_left(deadline));
        if (r <= 0)
            continue;
        for (size_t k = 0; k < np; k++) {
            if (pf[k].revents) {
                raw_pump(fds[idx[k]], &rb[idx[k]]);
                ended += rb[idx[k]].eof;
            }
        }
    }
    return ended;
}

/* The single response in rb: its status, or 0 when there are no bytes, -1 when malformed. */
int raw_status(rawbuf_t *rb, bool *close_hdr)
{
    if (rb->len == 0)
        return 0;
    size_t len = rb->len;
    rresp_t r;
    if (take_resp(rb->b, &len, &r) != 1)
        return -1;
    int st = r.status;
    *close_hdr = r.close;
    rresp_free(&r);
    return len == 0 ? st : -1;
}

/* The child's part: never returns, never touches cmocka. */
static void child_main(const h_server_t *srv, int kind, const char *name, uint64_t to, int out)
{
    hc_t *h = hc_try_open(srv, HC_AUTO);
    if (!h)
        _exit(3);
    char req[512];
    int n = snprintf(req, sizeof req, "GET /sign_in?%s HTTP/1.1\r\nHost: t\r\n\r\n", name);
    rresp_t r;
    if (hc_write_all(h, req, (size_t)n, H_TIMEOUT_MS) < 0 || hc_read_resp(h, &r, H_TIMEOUT_MS) != 1 ||
        r.status != 200 || r.pragma <= 0)
        _exit(4);
    uint64_t id = (uint64_t)r.pragma;
    rresp_free(&r);
    if (kind == CHILD_MID_REQUEST) {
        char body[128];
        snprintf(body, sizeof body, "complete from %s", name);
        n = snprintf(req, sizeof req,
                     "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                     id, to, strlen(body), body);
        if (hc_write_all(h, req, (size_t)n, H_TIMEOUT_MS) < 0 ||
            hc_read_resp(h, &r, H_TIMEOUT_MS) != 1 || r.status != 200)
            _exit(5);
        rresp_free(&r);
        n = snprintf(req, sizeof req,
                     "POST /message?peer_id=%" PRIu64 "&to=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\nonly half of it",
                     id, to);
    } else {
        n = snprintf(req, sizeof req, "GET /wait?peer_id=%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n",
                     id);
    }
    if (hc_write_all(h, req, (size_t)n, H_TIMEOUT_MS) < 0)
        _exit(6);
    if (write(out, &id, sizeof id) != (ssize_t)sizeof id)
        _exit(7);
    for (;;)
        pause(); /* until SIGKILL */
}

/* Fork a child that signs in as name and then does its hostile part; returns
 * its pid once it is there, with its member id. */
pid_t spawn_child(const h_server_t *srv, int kind, const char *name, uint64_t to,
                  uint64_t *id)
{
    if (h_tls_mode())
        my_tls();
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        fail_msg("pipe2: errno %d", errno);
    if (nchildren == sizeof children / sizeof children[0])
        fail_msg("too many children");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: errno %d", errno);
    if (pid == 0) {
        close(pfd[0]);
        child_main(srv, kind, name, to, pfd[1]);
        _exit(9);
    }
    children[nchildren++] = pid;
    close(pfd[1]);
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    int r;
    while ((r = poll(&pf, 1, H_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    ssize_t n = r > 0 ? read(pfd[0], id, sizeof *id) : -1;
    close(pfd[0]);
    if (n != (ssize_t)sizeof *id) {
        int st = 0;
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        nchildren--;
        fail_msg("child \"%s\" did not get there (exit status %d)", name,
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    return pid;
}

void kill_child(pid_t pid)
{
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    for (size_t i = 0; i < nchildren; i++) {
        if (children[i] == pid) {
            children[i] = children[--nchildren];
            break;
        }
    }
}

int hostile_teardown(void **state)
{
    while (nallocs)
        tfree(allocs[nallocs - 1]);
    while (nchildren)
        kill_child(children[nchildren - 1]);
    while (hc_count)
        hc_close(hc_list[hc_count - 1]);
    return h_teardown(state);
}
