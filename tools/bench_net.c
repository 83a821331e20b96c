/*
 * bench_net: the small helpers every pcsig-bench thread uses: non-blocking
 * connects spread over loopback source addresses, wrapped as plain or TLS
 * conn_t, short-write-safe writes, reads into a bounded buffer (both count
 * TLS handshakes, full, resumed or failed), the message body codec, the latency
 * histogram and a per-thread random generator. All are thread-safe (they
 * touch only their arguments, plus one atomic round-robin counter).
 */
#include "bench.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "proto.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- sockets ------------------------------------------------------------ */

/*
 * Bind to 127.0.0.k before connecting, with IP_BIND_ADDRESS_NO_PORT so the
 * kernel picks the port at connect() time per 4-tuple: each source address
 * gets its own ephemeral range, which is what lets tens of thousands of
 * connections (and their TIME_WAITs) coexist. Sources are 127.0.0.0/8 only.
 */
static int bind_source(struct bench *b, int fd, unsigned *k)
{
    struct sockaddr_in src;
    int one = 1;

    *k = atomic_fetch_add(&b->src_rr, 1) % b->o.src_addrs;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_port = 0;
    src.sin_addr.s_addr = htonl(0x7f000001u + *k); /* 127.0.0.(1+k), k < 254 */
    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
        return -errno;
    return 0;
}

int bench_connect(struct bench *b)
{
    int last = -EADDRNOTAVAIL;
    unsigned tries = b->spread_src ? b->o.src_addrs : 1;

    /* EADDRNOTAVAIL: this source ran out of ports; the next one may not have. */
    for (unsigned t = 0; t < tries; t++) {
        int fd = socket(b->srv.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (b->spread_src) {
            unsigned k;
            int rc = bind_source(b, fd, &k);
            if (rc < 0) {
                close(fd);
                last = rc;
                continue;
            }
        }
        if (connect(fd, (struct sockaddr *)&b->srv, b->srv_len) == 0 || errno == EINPROGRESS)
            return fd;
        last = -errno;
        close(fd);
        if (last != -EADDRNOTAVAIL && last != -EADDRINUSE)
            break;
    }
    return last;
}

int bench_tls_client(const struct bench *b, tls_client_t **out)
{
    char why[256] = "";
    struct tls_client_options to = {.ca_file = b->o.ca_file};
    int rc = tls_client_new(&to, out, why, sizeof why);
    if (rc < 0)
        log_error("TLS client context: %s", why[0] ? why : "out of memory");
    return rc;
}

int bench_open(struct bench *b, tls_client_t *tls, struct bench_conn *bc)
{
    int fd = bench_connect(b);
    if (fd < 0)
        return fd;
    conn_t *c = tls ? tls_client_wrap(tls, fd, b->o.tls_name) : conn_plain_new(fd);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    bc->c = c;
    bc->counted = false;
    return 0;
}

void bench_close(struct bench_conn *bc)
{
    conn_close(bc->c);
    bc->c = NULL;
    bc->counted = false;
}

/* Count a TLS handshake once, when it completed or when it failed (r is
 * the result of the read or write that may have driven it). */
static void note_handshake(struct bench *b, struct bench_conn *bc, long r)
{
    conn_t *c = bc->c;
    if (bc->counted || !c->secure)
        return;
    if (c->established) {
        bc->counted = true;
        atomic_fetch_add(c->resumed ? &b->tls_resumed : &b->tls_full, 1);
        return;
    }
    if (r == -EAGAIN)
        return;
    bc->counted = true;
    atomic_fetch_add(&b->tls_failed, 1);
    if (atomic_fetch_add(&b->tls_logged, 1) < 5) {
        const char *e = conn_error(c);
        if (e[0])
            log_warn("TLS handshake failed: %s", e);
        else
            log_errno(LOG_WARN, r < 0 ? (int)r : 0, "TLS handshake failed (%s)",
                      r == 0 ? "EOF" : "connection error");
    }
}

int bench_write(struct bench *b, struct bench_conn *bc, const char *p, size_t len, size_t *off)
{
    while (*off < len) {
        ssize_t n = conn_write(bc->c, p + *off, len - *off);
        note_handshake(b, bc, n);
        if (n > 0) {
            *off += (size_t)n;
            continue;
        }
        if (n == -EAGAIN)
            return 0;
        return n < 0 ? (int)n : -EPIPE;
    }
    return 1;
}

int bench_so_error(int fd)
{
    int err = 0;
    socklen_t sl = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
        return errno;
    return err;
}

long bench_read(struct bench *b, struct bench_conn *bc, buf_t *in, size_t chunk)
{
    size_t room = buf_room(in);
    if (room == 0)
        return -E2BIG;
    if (chunk > room)
        chunk = room;
    if (in->cap - in->len < chunk / 2 || in->cap == in->len) {
        int rc = buf_reserve(in, chunk);
        if (rc < 0)
            return rc;
    }
    size_t want = in->cap - in->len;
    if (want > room)
        want = room;
    ssize_t n = conn_read(bc->c, in->data + in->len, want);
    note_handshake(b, bc, n);
    if (n > 0)
        in->len += (size_t)n;
    return (long)n;
}

/* ---- message bodies ----------------------------------------------------- */

/*
 * Layout: "P" sender(4 hex) number(8) from_id(8) to(8) seq(8) t_ns(16) "|",
 * 54 bytes, then padding whose every byte depends on the message number
 * and its offset, so a truncated, shifted or mixed-up body never checks.
 */
static char pad_byte(uint64_t num, size_t i)
{
    return (char)('a' + (num * 7u + i) % 26u);
}

void bench_body_encode(char *dst, size_t size, const struct bench_msg *m)
{
    char hdr[BENCH_BODY_HDR + 1];
    snprintf(hdr, sizeof hdr, "P%04x%08llx%08llx%08x%08x%016llx|", m->sender & 0xffffu,
             (unsigned long long)(m->num & 0xffffffffu),
             (unsigned long long)(m->from_id & 0xffffffffu), (unsigned)m->to, (unsigned)m->seq,
             (unsigned long long)m->t_ns);
    memcpy(dst, hdr, BENCH_BODY_HDR);
    for (size_t i = BENCH_BODY_HDR; i < size; i++)
        dst[i] = pad_byte(m->num, i);
}

static int hex_field(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -EINVAL;
        v = (v << 4) | d;
    }
    *out = v;
    return 0;
}

int bench_body_decode(const char *p, size_t n, size_t size, struct bench_msg *m)
{
    uint64_t s, num, from, to, seq, t;
    if (n != size || n < BENCH_BODY_HDR || p[0] != 'P' || p[BENCH_BODY_HDR - 1] != '|')
        return -EINVAL;
    if (hex_field(p + 1, 4, &s) || hex_field(p + 5, 8, &num) || hex_field(p + 13, 8, &from) ||
        hex_field(p + 21, 8, &to) || hex_field(p + 29, 8, &seq) || hex_field(p + 37, 16, &t))
        return -EINVAL;
    for (size_t i = BENCH_BODY_HDR; i < n; i++) {
        if (p[i] != pad_byte(num, i))
            return -EINVAL;
    }
    m->sender = (unsigned)s;
    m->num = num;
    m->from_id = from;
    m->to = (uint32_t)to;
    m->seq = (uint32_t)seq;
    m->t_ns = t;
    return 0;
}

/* ---- batched /wait answers ---------------------------------------------- */

/* One decimal number at p[*off..n) ended by delim: 0 with *off past delim,
 * or -EPROTO (no digit, another byte than delim, the end, or above 2^64-1). */
static int batch_num(const char *p, size_t n, size_t *off, char delim, uint64_t *out)
{
    size_t start = *off, i = start;
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    if (i == start || i == n || p[i] != delim || proto_parse_u64(p + start, i - start, out) < 0)
        return -EPROTO;
    *off = i + 1;
    return 0;
}

int bench_batch_next(const char *p, size_t n, size_t *off, struct bench_record *rec,
                     const char **why)
{
    size_t at = *off;
    uint64_t pragma, ctlen, blen;
    if (at >= n)
        return 0;
    if (batch_num(p, n, &at, ' ', &pragma) < 0) {
        *why = "record line: <pragma> is not a decimal number followed by one space";
        return -EPROTO;
    }
    if (batch_num(p, n, &at, ' ', &ctlen) < 0) {
        *why = "record line: <ctype_len> is not a decimal number followed by one space";
        return -EPROTO;
    }
    if (batch_num(p, n, &at, '\n', &blen) < 0) {
        *why = "record line: <body_len> is not a decimal number followed by LF";
        return -EPROTO;
    }
    if (pragma == 0) {
        *why = "record line: <pragma> is 0 (no member has id 0)";
        return -EPROTO;
    }
    if (ctlen > n - at) {
        *why = "record: <ctype_len> runs past the end of the batch";
        return -EPROTO;
    }
    if (blen > n - at - ctlen) {
        *why = "record: <body_len> runs past the end of the batch";
        return -EPROTO;
    }
    rec->pragma = pragma;
    rec->ctype = p + at;
    rec->ctype_len = (size_t)ctlen;
    rec->body = p + at + ctlen;
    rec->body_len = (size_t)blen;
    *off = at + (size_t)ctlen + (size_t)blen;
    return 1;
}

/* ---- latency histogram -------------------------------------------------- */

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6u;           /* mantissa in [64, 128) */
    unsigned idx = shift * HIST_SUB + (unsigned)(v >> shift);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static double hist_value(unsigned idx)
{
    if (idx < HIST_LINEAR)
        return idx;
    unsigned shift = idx / HIST_SUB - 1u;
    uint64_t mant = idx - shift * HIST_SUB;
    double lo = (double)(mant << shift);
    double hi = (double)((mant + 1) << shift);
    return (lo + hi) / 2.0;
}

void hist_add(struct bench_hist *h, uint64_t us)
{
    h->count[hist_index(us)]++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
}

void hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->count[i] += src->count[i];
    dst->n += src->n;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
}

double hist_quantile(const struct bench_hist *h, double q)
{
    if (h->n == 0)
        return 0.0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if ((double)rank < q * (double)h->n)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return v > (double)h->max_us ? (double)h->max_us : v;
        }
    }
    return (double)h->max_us;
}

/* ---- blocking-style round trips (--handshakes, --churn) ---------------- */

int bench_connected_timed(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n > 0)
            break;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
    int err = bench_so_error(fd);
    return err ? -err : 0;
}

int bench_answer_timed(conn_t *c, buf_t *in, int timeout_ms, int *status, uint64_t *pragma)
{
    /* The body may be a whole peer list: allow what the buffer may hold. */
    const http_limits_t lim = {.max_head = BENCH_RESP_MAX_HEAD, .max_body = in->max};
    for (;;) {
        http_response_t r;
        http_error_t err;
        long head = in->len ? http_parse_response(in->data, in->len, &lim, &r, &err)
                            : HTTP_NEED_MORE;
        if (head > 0) {
            if (!r.has_content_length)
                return -EPROTO;
            if (in->len >= (size_t)head + r.content_length) {
                *status = r.status;
                *pragma = 0;
                const http_header_t *h = http_find_header(r.headers, r.num_headers, "Pragma");
                if (h && proto_parse_u64(h->value.ptr, h->value.len, pragma) < 0)
                    *pragma = 0;
                return 0;
            }
        } else if (head != HTTP_NEED_MORE) {
            return -EPROTO;
        }
        if (buf_room(in) == 0)
            return -E2BIG;
        int rc = buf_reserve(in, 4096);
        if (rc < 0)
            return rc;
        ssize_t n = conn_read_timed(c, in->data + in->len, in->cap - in->len, timeout_ms);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0)
            return (int)n;
        in->len += (size_t)n;
    }
}
