/*
 * proto: the small text codecs of the peerconnection protocol (see proto.h).
 *
 * Everything here works on {pointer, length} ranges of untrusted bytes and
 * is strict: anything not exactly in the documented form is rejected rather
 * than guessed at, so the server and the client agree on every byte.
 */
#include "proto.h"
#include "strlit.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

int proto_parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0)
        return -EINVAL;
    /* Syntax first, so "999...9x" is a syntax error and not a range error. */
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int proto_parse_id(const char *s, size_t n, uint64_t *out)
{
    uint64_t v;
    int rc = proto_parse_u64(s, n, &v);
    if (rc < 0)
        return rc;
    if (v == 0)
        return -EINVAL;
    if (v > PROTO_MAX_ID)
        return -ERANGE;
    *out = v;
    return 0;
}

int proto_query_get(const char *q, size_t n, const char *key,
                    const char **val, size_t *val_len)
{
    size_t key_len = strlen(key);
    int found = 0;
    size_t pos = 0;
    *val = NULL;
    *val_len = 0;
    while (pos < n) {
        const char *param = q + pos;
        const char *amp = memchr(param, '&', n - pos);
        size_t param_len = amp ? (size_t)(amp - param) : n - pos;
        pos += param_len + 1; /* past the '&' (or past the end) */
        if (param_len == 0)
            continue; /* "a=1&&b=2": an empty parameter names nothing */
        const char *eq = memchr(param, '=', param_len);
        size_t name_len = eq ? (size_t)(eq - param) : param_len;
        if (name_len != key_len || memcmp(param, key, key_len) != 0)
            continue;
        if (found) {
            *val = NULL;
            *val_len = 0;
            return -EEXIST;
        }
        found = 1;
        if (eq) {
            *val = eq + 1;
            *val_len = param_len - name_len - 1;
        } else {
            *val = param + param_len; /* "key" alone: an empty value */
            *val_len = 0;
        }
    }
    return found;
}

size_t proto_name_sanitize(const char *in, size_t n, char *out)
{
    if (n > PROTO_MAX_NAME)
        n = PROTO_MAX_NAME;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        /* ',' would split the entry line; control bytes would break it or a terminal. */
        out[i] = (c == ',' || c < 0x20 || c == 0x7f) ? '_' : (char)c;
    }
    return n;
}

int proto_entry_append(buf_t *b, const char *name, size_t name_len,
                       uint64_t id, bool connected)
{
    size_t old_len = b->len;
    int rc = buf_append(b, name, name_len);
    if (rc == 0)
        rc = buf_append(b, STRLIT(","));
    if (rc == 0)
        rc = buf_append_u64(b, id);
    if (rc == 0)
        rc = buf_append_str(b, connected ? ",1\n" : ",0\n");
    if (rc < 0)
        b->len = old_len; /* all or nothing: never leave half a line */
    return rc;
}

long proto_entry_parse(const char *s, size_t n, proto_entry_t *e)
{
    const char *nl = n ? memchr(s, '\n', n) : NULL;
    if (nl == NULL)
        return 0;
    size_t line_len = (size_t)(nl - s);
    if (line_len >= (size_t)LONG_MAX)
        return -EINVAL;

    const char *c1 = memchr(s, ',', line_len);
    if (c1 == NULL || c1 == s)
        return -EINVAL; /* no fields, or an empty name */
    const char *id = c1 + 1;
    const char *c2 = memchr(id, ',', (size_t)(nl - id));
    if (c2 == NULL)
        return -EINVAL;
    uint64_t v;
    if (proto_parse_id(id, (size_t)(c2 - id), &v) < 0)
        return -EINVAL;
    const char *flag = c2 + 1;
    if (nl - flag != 1 || (flag[0] != '0' && flag[0] != '1'))
        return -EINVAL;

    e->name = s;
    e->name_len = (size_t)(c1 - s);
    e->id = v;
    e->connected = flag[0] == '1';
    return (long)(line_len + 1);
}

bool proto_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a;
    const volatile unsigned char *y = b;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}

/* 1 when c is 0, else 0, by arithmetic rather than a branch. */
static unsigned ct_is_zero(unsigned char c)
{
    return ((unsigned)c - 1u) >> 8 & 1u;
}

bool proto_ct_equal_secret(const char *secret, const void *given, size_t given_len)
{
    const volatile unsigned char *s = (const volatile unsigned char *)secret;
    const volatile unsigned char *g = given;
    unsigned diff = 0;
    size_t j = 0; /* the secret's byte facing given[i]; it stops on the NUL */
    for (size_t i = 0; i < given_len; i++) {
        unsigned char c = s[j];
        unsigned ended = ct_is_zero(c); /* given is longer than the secret */
        diff |= (unsigned)(c ^ g[i]) | ended;
        j += ended ^ 1u;
    }
    diff |= s[j]; /* non-zero: the secret is longer than given */
    return diff == 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int proto_hex_decode(const char *s, size_t slen, uint8_t *out, size_t n)
{
    if (slen != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void proto_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}
