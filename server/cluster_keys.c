/*
 * cluster_keys: see cluster_keys.h. Strict parsers: every byte is checked,
 * numbers with overflow checks, nothing is skipped silently.
 */
#include "cluster_keys.h"

#include <errno.h>
#include <string.h>

#include "strlit.h"

/* Decimal digits p[0..n) into *v, at most max. 0 or -EINVAL. */
static int parse_dec(const char *p, size_t n, uint64_t max, uint64_t *v)
{
    if (n == 0 || n > 20)
        return -EINVAL;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(p[i] - '0');
        if (x > (max - d) / 10)
            return -EINVAL;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

int ckey_parse_url(const char *url, struct ckey_url *out, const char **why)
{
    static const char scheme[] = "redis://";
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        *why = "must start with redis://";
        return -EINVAL;
    }
    const char *p = url + sizeof scheme - 1;
    const char *host, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end) {
            *why = "unclosed [ of an IPv6 address";
            return -EINVAL;
        }
        p = host_end + 1;
    } else {
        host = p;
        while (*p && *p != ':' && *p != '/')
            p++;
        host_end = p;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen > CKEY_HOST_MAX) {
        *why = hlen ? "host name too long" : "no host";
        return -EINVAL;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= ' ' || c >= 0x7f || c == '@' || c == '[' || c == ']') {
            *why = "bad byte in the host (a password goes in --cluster-password)";
            return -EINVAL;
        }
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (*p == ':') {
        const char *q = ++p;
        while (*p && *p != '/')
            p++;
        uint64_t port;
        if (parse_dec(q, (size_t)(p - q), 65535, &port) < 0 || port == 0) {
            *why = "port is not a number from 1 to 65535";
            return -EINVAL;
        }
        out->port = (uint16_t)port;
    }
    if (*p == '/') {
        const char *q = ++p;
        size_t n = strlen(q);
        uint64_t db = 0;
        if (n > 0 && parse_dec(q, n, CKEY_DB_MAX, &db) < 0) {
            *why = "database is not a number";
            return -EINVAL;
        }
        out->db = (int)db;
        p += n;
    }
    if (*p) {
        *why = "unexpected bytes after the host";
        return -EINVAL;
    }
    return 0;
}

int ckey_item_encode(buf_t *out, const struct ckey_item *it)
{
    size_t mark = out->len;
    int rc;
    if (it->has_ctype)
        rc = buf_printf(out, "%c %llu %llu %zu %zu\n", it->is_message ? 'M' : 'N',
                        (unsigned long long)it->pragma, (unsigned long long)it->accepted_us,
                        it->ctype_len, it->body_len);
    else
        rc = buf_printf(out, "%c %llu %llu - %zu\n", it->is_message ? 'M' : 'N',
                        (unsigned long long)it->pragma, (unsigned long long)it->accepted_us,
                        it->body_len);
    if (rc == 0 && it->has_ctype && it->ctype_len)
        rc = buf_append(out, it->ctype, it->ctype_len);
    if (rc == 0 && it->body_len)
        rc = buf_append(out, it->body, it->body_len);
    if (rc < 0)
        out->len = mark;
    return rc;
}

/* The next space- (or, last, newline-) terminated field of p[*i..n). */
static int field(const char *p, size_t n, size_t *i, char end, const char **f, size_t *flen)
{
    const char *start = p + *i;
    const char *e = memchr(start, end, n - *i);
    if (!e)
        return -EINVAL;
    *f = start;
    *flen = (size_t)(e - start);
    *i = (size_t)(e - p) + 1;
    return 0;
}

int ckey_item_decode(const char *p, size_t n, struct ckey_item *it)
{
    memset(it, 0, sizeof *it);
    if (n < 2 || (p[0] != 'M' && p[0] != 'N') || p[1] != ' ')
        return -EINVAL;
    it->is_message = p[0] == 'M';
    size_t i = 2;
    const char *f;
    size_t flen;
    uint64_t ctlen = 0, blen;
    if (field(p, n, &i, ' ', &f, &flen) < 0 || parse_dec(f, flen, UINT64_MAX, &it->pragma) < 0)
        return -EINVAL;
    if (field(p, n, &i, ' ', &f, &flen) < 0 ||
        parse_dec(f, flen, UINT64_MAX, &it->accepted_us) < 0)
        return -EINVAL;
    if (field(p, n, &i, ' ', &f, &flen) < 0)
        return -EINVAL;
    if (flen == 1 && f[0] == '-') {
        it->has_ctype = false;
    } else if (parse_dec(f, flen, n, &ctlen) < 0) {
        return -EINVAL;
    } else {
        it->has_ctype = true;
    }
    if (field(p, n, &i, '\n', &f, &flen) < 0 || parse_dec(f, flen, n, &blen) < 0)
        return -EINVAL;
    if (ctlen > n - i || blen != n - i - ctlen)
        return -EINVAL;
    it->ctype = p + i;
    it->ctype_len = (size_t)ctlen;
    it->body = p + i + ctlen;
    it->body_len = (size_t)blen;
    return 0;
}
