/*
 * client_json: a strict parser for flat JSON command objects, and JSON /
 * base64 output helpers (see client_json.h). Recursive descent over one
 * level: an object of scalars is all the CLI protocol has, so anything
 * nested is refused rather than half-understood.
 */
#include "client_json.h"
#include "strlit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p[0..n), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, min = 0x80, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, min = 0x800, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool cjson_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(s + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

static int put_utf8(buf_t *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_append(b, u, n);
}

/* ---- parser ------------------------------------------------------------------ */

struct parser {
    const unsigned char *p;
    size_t n, i;
    const char *err;
};

static void skip_ws(struct parser *ps)
{
    while (ps->i < ps->n && (ps->p[ps->i] == ' ' || ps->p[ps->i] == '\t' ||
                             ps->p[ps->i] == '\n' || ps->p[ps->i] == '\r'))
        ps->i++;
}

static int fail(struct parser *ps, const char *why)
{
    ps->err = why;
    return -EINVAL;
}

static int hex4(struct parser *ps, uint32_t *out)
{
    if (ps->n - ps->i < 4)
        return fail(ps, "truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = ps->p[ps->i++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return fail(ps, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

/* A string at ps->i (the opening quote), decoded into a heap copy + NUL. */
static int parse_string(struct parser *ps, char **out, size_t *out_len)
{
    buf_t b;
    buf_init(&b, ps->n + 1); /* decoding never grows the text */
    ps->i++;                 /* the opening quote */
    int rc = 0;
    for (;;) {
        if (ps->i >= ps->n) {
            rc = fail(ps, "unterminated string");
            break;
        }
        unsigned char c = ps->p[ps->i];
        if (c == '"') {
            ps->i++;
            break;
        }
        if (c < 0x20) {
            rc = fail(ps, "control character in string");
            break;
        }
        if (c != '\\') {
            size_t l = utf8_seq(ps->p + ps->i, ps->n - ps->i);
            if (l == 0) {
                rc = fail(ps, "invalid UTF-8 in string");
                break;
            }
            rc = buf_append(&b, ps->p + ps->i, l);
            ps->i += l;
            if (rc < 0)
                break;
            continue;
        }
        ps->i++;
        if (ps->i >= ps->n) {
            rc = fail(ps, "unterminated escape");
            break;
        }
        unsigned char e = ps->p[ps->i++];
        char lit;
        switch (e) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            uint32_t cp;
            if ((rc = hex4(ps, &cp)) < 0)
                goto out;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                rc = fail(ps, "lone low surrogate in \\u escape");
                goto out;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (ps->n - ps->i < 2 || ps->p[ps->i] != '\\' || ps->p[ps->i + 1] != 'u') {
                    rc = fail(ps, "high surrogate without a low one");
                    goto out;
                }
                ps->i += 2;
                if ((rc = hex4(ps, &lo)) < 0)
                    goto out;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    rc = fail(ps, "high surrogate without a low one");
                    goto out;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if ((rc = put_utf8(&b, cp)) < 0)
                goto out;
            continue;
        }
        default:
            rc = fail(ps, "unknown escape in string");
            goto out;
        }
        if ((rc = buf_append(&b, &lit, 1)) < 0)
            break;
    }
out:
    if (rc == 0)
        rc = buf_append(&b, "", 1);
    if (rc < 0) {
        buf_free(&b);
        return rc == -E2BIG ? fail(ps, "string too long") : rc;
    }
    *out = b.data;
    *out_len = b.len - 1;
    return 0;
}

/* A number at ps->i, by the RFC 8259 grammar; the literal is kept. */
static int parse_number(struct parser *ps, char **out, size_t *out_len)
{
    size_t start = ps->i;
    const unsigned char *p = ps->p;
    size_t n = ps->n, i = ps->i;
    if (i < n && p[i] == '-')
        i++;
    if (i < n && p[i] == '0') {
        i++;
    } else if (i < n && p[i] >= '1' && p[i] <= '9') {
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    } else {
        return fail(ps, "bad number");
    }
    if (i < n && p[i] == '.') {
        i++;
        if (!(i < n && p[i] >= '0' && p[i] <= '9'))
            return fail(ps, "bad number");
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (!(i < n && p[i] >= '0' && p[i] <= '9'))
            return fail(ps, "bad number");
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    ps->i = i;
    char *s = malloc(i - start + 1);
    if (!s)
        return -ENOMEM;
    memcpy(s, p + start, i - start);
    s[i - start] = '\0';
    *out = s;
    *out_len = i - start;
    return 0;
}

static bool take_lit(struct parser *ps, const char *lit)
{
    size_t l = strlen(lit);
    if (ps->n - ps->i < l || memcmp(ps->p + ps->i, lit, l) != 0)
        return false;
    ps->i += l;
    return true;
}

static int parse_value(struct parser *ps, struct cjson_member *m)
{
    if (ps->i >= ps->n)
        return fail(ps, "missing value");
    unsigned char c = ps->p[ps->i];
    if (c == '"') {
        m->type = CJSON_STRING;
        return parse_string(ps, &m->str, &m->str_len);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        m->type = CJSON_NUMBER;
        return parse_number(ps, &m->str, &m->str_len);
    }
    if (c == '{' || c == '[')
        return fail(ps, "nested objects and arrays are not supported");
    if (take_lit(ps, "true"))
        m->type = CJSON_TRUE;
    else if (take_lit(ps, "false"))
        m->type = CJSON_FALSE;
    else if (take_lit(ps, "null"))
        m->type = CJSON_NULL;
    else
        return fail(ps, "bad value");
    return 0;
}

void cjson_object_free(struct cjson_object *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->members[i].key);
        free(o->members[i].str);
    }
    free(o->members);
    o->members = NULL;
    o->n = 0;
}

int cjson_parse_object(const char *p, size_t n, struct cjson_object *out, const char **err)
{
    struct parser ps = {.p = (const unsigned char *)p, .n = n, .err = "bad JSON"};
    out->members = NULL;
    out->n = 0;
    int rc = 0;
    skip_ws(&ps);
    if (ps.i >= ps.n || ps.p[ps.i] != '{') {
        rc = fail(&ps, "not a JSON object");
        goto done;
    }
    ps.i++;
    skip_ws(&ps);
    if (ps.i < ps.n && ps.p[ps.i] == '}') {
        ps.i++;
    } else {
        for (;;) {
            skip_ws(&ps);
            if (ps.i >= ps.n || ps.p[ps.i] != '"') {
                rc = fail(&ps, "expected a member name");
                goto done;
            }
            if (out->n == CJSON_MAX_MEMBERS) {
                rc = fail(&ps, "too many members");
                goto done;
            }
            if (!out->members) {
                out->members = calloc(CJSON_MAX_MEMBERS, sizeof *out->members);
                if (!out->members) {
                    rc = -ENOMEM;
                    goto done;
                }
            }
            struct cjson_member *m = &out->members[out->n];
            if ((rc = parse_string(&ps, &m->key, &m->key_len)) < 0)
                goto done;
            out->n++; /* from here on the member is freed with the object */
            for (size_t k = 0; k + 1 < out->n; k++) {
                if (out->members[k].key_len == m->key_len &&
                    memcmp(out->members[k].key, m->key, m->key_len) == 0) {
                    rc = fail(&ps, "duplicate member name");
                    goto done;
                }
            }
            skip_ws(&ps);
            if (ps.i >= ps.n || ps.p[ps.i] != ':') {
                rc = fail(&ps, "expected ':'");
                goto done;
            }
            ps.i++;
            skip_ws(&ps);
            if ((rc = parse_value(&ps, m)) < 0)
                goto done;
            skip_ws(&ps);
            if (ps.i < ps.n && ps.p[ps.i] == ',') {
                ps.i++;
                continue;
            }
            if (ps.i < ps.n && ps.p[ps.i] == '}') {
                ps.i++;
                break;
            }
            rc = fail(&ps, "expected ',' or '}'");
            goto done;
        }
    }
    skip_ws(&ps);
    if (ps.i != ps.n)
        rc = fail(&ps, "trailing bytes after the object");
done:
    if (rc < 0) {
        cjson_object_free(out);
        if (err)
            *err = rc == -ENOMEM ? "out of memory" : ps.err;
    }
    return rc;
}

const struct cjson_member *cjson_get(const struct cjson_object *o, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < o->n; i++) {
        if (o->members[i].key_len == kl && memcmp(o->members[i].key, key, kl) == 0)
            return &o->members[i];
    }
    return NULL;
}

const char *cjson_get_string(const struct cjson_object *o, const char *key, size_t *len)
{
    const struct cjson_member *m = cjson_get(o, key);
    if (!m || m->type != CJSON_STRING)
        return NULL;
    if (len)
        *len = m->str_len;
    return m->str;
}

int cjson_get_u64(const struct cjson_object *o, const char *key, uint64_t *out)
{
    const struct cjson_member *m = cjson_get(o, key);
    if (!m)
        return -ENOENT;
    if (m->type != CJSON_NUMBER)
        return -EINVAL;
    /* Digits only: "2", not "-2", "2.0" or "2e0". */
    return proto_parse_u64(m->str, m->str_len, out);
}

/* ---- output ------------------------------------------------------------------- */

int cjson_append_string(buf_t *b, const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = p;
    int rc = buf_append(b, STRLIT("\""));
    size_t i = 0;
    while (rc == 0 && i < n) {
        unsigned char c = s[i];
        size_t run = i;
        /* Copy the longest stretch that needs no escaping in one go. */
        while (run < n && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\')
            run++;
        if (run > i) {
            rc = buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) {
            rc = buf_append_str(b, esc);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, u, sizeof u);
            i++;
        } else {
            size_t l = utf8_seq(s + i, n - i);
            if (l == 0) {
                rc = buf_append_str(b, "\\ufffd");
                i++;
            } else if (l == 2 && c == 0xC2 && s[i + 1] < 0xA0) {
                /* C1 controls (U+0080..U+009F): a terminal may act on them. */
                char u[6] = {'\\', 'u', '0', '0', hex[s[i + 1] >> 4], hex[s[i + 1] & 15]};
                rc = buf_append(b, u, sizeof u);
                i += 2;
            } else {
                rc = buf_append(b, s + i, l);
                i += l;
            }
        }
    }
    if (rc == 0)
        rc = buf_append(b, STRLIT("\""));
    return rc;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int cjson_b64_encode(buf_t *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    if (n / 3 >= SIZE_MAX / 4)
        return -E2BIG;
    int rc = buf_reserve(b, (n + 2) / 3 * 4);
    for (size_t i = 0; rc == 0 && i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t left = n - i;
        if (left > 1)
            v |= (uint32_t)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        char q[4] = {b64_alphabet[(v >> 18) & 63], b64_alphabet[(v >> 12) & 63],
                     left > 1 ? b64_alphabet[(v >> 6) & 63] : '=',
                     left > 2 ? b64_alphabet[v & 63] : '='};
        rc = buf_append(b, q, 4);
    }
    return rc;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int cjson_b64_decode(buf_t *b, const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    if (n % 4 != 0)
        return -EINVAL;
    size_t old = b->len;
    int rc = buf_reserve(b, n / 4 * 3);
    for (size_t i = 0; rc == 0 && i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        size_t pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            v[k] = pad ? -1 : b64_value(s[i + k]); /* nothing after a '=' */
            if (v[k] < 0) {
                rc = -EINVAL;
                break;
            }
        }
        if (rc < 0)
            break;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        /* Canonical form: the bits a '=' stands for must be zero. */
        if ((pad == 1 && (w & 0xFF)) || (pad == 2 && (w & 0xFFFF))) {
            rc = -EINVAL;
            break;
        }
        unsigned char out[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8),
                                (unsigned char)w};
        rc = buf_append(b, out, 3 - pad);
    }
    if (rc < 0)
        b->len = old; /* all or nothing */
    return rc;
}
