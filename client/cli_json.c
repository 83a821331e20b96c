/*
 * cli_json: jansson for the CLI's JSON, OpenSSL for base64 (cli_json.h).
 */
#include "cli_json.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

json_t *cli_json_parse_object(const char *p, size_t n, char *errbuf, size_t errlen,
                              const char **err)
{
    size_t k = 0;
    while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n'))
        k++;
    if (k == n || p[k] != '{') {
        *err = "not a JSON object";
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o) {
        snprintf(errbuf, errlen, "%s (at byte %d)", je.text, je.position);
        *err = errbuf;
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        *err = "not a JSON object";
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (json_is_object(v) || json_is_array(v)) {
            json_decref(o);
            *err = "nested objects and arrays are not supported";
            return NULL;
        }
    }
    return o;
}

const char *cli_json_get_string(const json_t *o, const char *key, size_t *len)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

int cli_json_get_id(const json_t *o, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v)
        return -ENOENT;
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return -EINVAL;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* The C library's UTF-8 decoder (mbrtowc under C.UTF-8), made once. */
static locale_t utf8_loc;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
    utf8_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/* Does p[0..n) hold DEL or a C1 control (0xC2 0x80..0x9F)? */
static bool has_terminal_controls(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0x7f || (p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f))
            return true;
    }
    return false;
}

/* p[0..n) with each invalid UTF-8 byte (and, for a terminal, DEL and C1)
 * as U+FFFD, into out. 0, -ENOMEM (or a buf error). */
static int replace_invalid(buf_t *out, const unsigned char *p, size_t n, bool terminal)
{
    static const char fffd[] = "\xef\xbf\xbd";
    pthread_once(&utf8_once, utf8_init);
    if (utf8_loc == (locale_t)0)
        return -ENOMEM;
    locale_t old = uselocale(utf8_loc);
    mbstate_t st;
    memset(&st, 0, sizeof st);
    int rc = 0;
    size_t i = 0;
    while (i < n && rc == 0) {
        wchar_t wc;
        size_t r = mbrtowc(&wc, (const char *)p + i, n - i, &st);
        if (r == 0)
            r = 1; /* a NUL is a character like any other here */
        if (r == (size_t)-1 || r == (size_t)-2) {
            memset(&st, 0, sizeof st); /* an invalid byte: U+FFFD, go on after it */
            rc = buf_append(out, fffd, sizeof fffd - 1);
            i++;
        } else if ((wc >= 0xd800 && wc <= 0xdfff) ||
                   (terminal && (wc == 0x7f || (wc >= 0x80 && wc <= 0x9f)))) {
            rc = buf_append(out, fffd, sizeof fffd - 1); /* one for the character */
            i += r;
        } else {
            rc = buf_append(out, p + i, r);
            i += r;
        }
    }
    uselocale(old);
    return rc;
}

json_t *cli_json_text(const void *p, size_t n, bool terminal)
{
    if (n == 0)
        return json_string("");
    if (!terminal || !has_terminal_controls(p, n)) {
        json_t *s = json_stringn(p, n); /* NULL: not valid UTF-8 (or no memory) */
        if (s)
            return s;
    }
    buf_t b;
    buf_init(&b, n > SIZE_MAX / 3 ? SIZE_MAX : n * 3);
    json_t *s = NULL;
    if (replace_invalid(&b, p, n, terminal) == 0)
        s = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b);
    return s;
}

static int dump_to_buf(const char *p, size_t n, void *arg)
{
    return buf_append(arg, p, n) < 0 ? -1 : 0;
}

int cli_json_dump(buf_t *b, json_t *v)
{
    if (!v)
        return -ENOMEM;
    size_t mark = b->len;
    int rc = json_dump_callback(v, dump_to_buf, b, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (rc != 0) {
        b->len = mark; /* never half a value */
        return -ENOMEM;
    }
    return 0;
}

int cli_json_append_string(buf_t *b, const void *p, size_t n, bool terminal)
{
    return cli_json_dump(b, cli_json_text(p, n, terminal));
}

/* OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock take an int length: big
 * inputs go in slices of whole groups. */
#define B64_SLICE ((size_t)3 << 20)

int cli_b64_encode(buf_t *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n > 0) {
        size_t k = n < B64_SLICE ? n : B64_SLICE;
        size_t out = (k + 2) / 3 * 4;
        int rc = buf_reserve(b, out + 1); /* EVP_EncodeBlock adds a NUL */
        if (rc < 0)
            return rc;
        int w = EVP_EncodeBlock((unsigned char *)b->data + b->len, s, (int)k);
        b->len += (size_t)w;
        s += k;
        n -= k;
    }
    return 0;
}

int cli_b64_decode(buf_t *b, const char *p, size_t n)
{
    if (n % 4 != 0)
        return -EINVAL;
    size_t mark = b->len;
    for (size_t at = 0; at < n;) {
        size_t k = n - at < B64_SLICE / 3 * 4 ? n - at : B64_SLICE / 3 * 4;
        const char *s = p + at;
        size_t pad = 0;
        if (at + k == n) {
            while (pad < 2 && k - pad > 0 && s[k - 1 - pad] == '=')
                pad++;
        }
        int rc = buf_reserve(b, k / 4 * 3 + 1);
        if (rc < 0) {
            b->len = mark;
            return rc;
        }
        unsigned char *d = (unsigned char *)b->data + b->len;
        int r = EVP_DecodeBlock(d, (const unsigned char *)s, (int)k);
        if (r < 0 || (size_t)r != k / 4 * 3) {
            b->len = mark;
            return -EINVAL;
        }
        b->len += (size_t)r - pad; /* the pad's zero bytes are not data */
        at += k;
    }
    /* EVP_DecodeBlock skips surrounding whitespace and leaves the pad bits
     * unchecked: strict base64 is what encodes back to itself. */
    buf_t chk;
    buf_init(&chk, n + 1);
    int rc = b->len > mark ? cli_b64_encode(&chk, b->data + mark, b->len - mark) : 0;
    bool same = rc == 0 && chk.len == n && (n == 0 || memcmp(chk.data, p, n) == 0);
    buf_free(&chk);
    if (!same) {
        b->len = mark;
        return rc < 0 ? rc : -EINVAL;
    }
    return 0;
}
