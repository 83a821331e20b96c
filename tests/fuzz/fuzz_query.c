/*
 * fuzz_query: libFuzzer target for the query-string and number codecs of
 * proto.h: proto_query_get, proto_parse_u64, proto_parse_id and
 * proto_name_sanitize.
 *
 * Input: "key\nquery" looks up key (and the fixed keys the server uses)
 * in query; an input without '\n' is all query. Every lookup is compared
 * with a reference written independently of common/proto.c (whole keys,
 * empty parameters skipped, a repeated key is -EEXIST), and the value it
 * returns, the whole query and the whole input are fed to the number
 * parsers (compared with a reference; a parsed number printed back gives
 * the input without its leading zeros) and to the name sanitizer (length,
 * byte mapping, no ',' or control byte left, idempotent, never more than
 * PROTO_MAX_NAME bytes written). Values and the query also go through
 * the token codec the router applies to "token=" (hex decode/encode round
 * trip against a reference; proto_ct_equal agrees with memcmp).
 * Violations abort().
 */
#include <errno.h>

#include "buf.h"
#include "fuzz_common.h"
#include "proto.h"

static void check_numbers(const char *s, size_t n)
{
    uint64_t ref = 0, v = 0, id = 0;
    int want = fuzz_ref_u64(s, n, &ref);
    int rc = proto_parse_u64(s, n, &v);

    if (want == -1) {
        FUZZ_CHECK(rc == -EINVAL);
    } else if (want == -2) {
        FUZZ_CHECK(rc == -ERANGE);
    } else {
        buf_t b;
        size_t z = 0;
        uint64_t back = 0;

        FUZZ_CHECK(rc == 0 && v == ref);
        /* printing it back gives the digits without leading zeros */
        while (z + 1 < n && s[z] == '0')
            z++;
        buf_init(&b, 64);
        FUZZ_CHECK(buf_append_u64(&b, v) == 0);
        FUZZ_CHECK(b.len == n - z && memcmp(b.data, s + z, b.len) == 0);
        FUZZ_CHECK(proto_parse_u64(b.data, b.len, &back) == 0 && back == v);
        buf_free(&b);
    }

    rc = proto_parse_id(s, n, &id);
    if (want < 0)
        FUZZ_CHECK(rc == (want == -1 ? -EINVAL : -ERANGE));
    else if (ref == 0)
        FUZZ_CHECK(rc == -EINVAL);
    else if (ref > PROTO_MAX_ID)
        FUZZ_CHECK(rc == -ERANGE);
    else
        FUZZ_CHECK(rc == 0 && id == ref && id >= 1 && id <= (uint64_t)INT32_MAX);
}

static bool is_name_byte_replaced(unsigned char c)
{
    return c == ',' || c < 0x20 || c == 0x7f;
}

static void check_sanitize(const char *in, size_t n)
{
    /* exactly the documented minimum, so a write past it is an ASan error */
    char *out = malloc(PROTO_MAX_NAME), *again = malloc(PROTO_MAX_NAME);
    size_t len, len2;

    FUZZ_CHECK(out != NULL && again != NULL);
    len = proto_name_sanitize(in, n, out);
    FUZZ_CHECK(len == (n < PROTO_MAX_NAME ? n : PROTO_MAX_NAME));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        FUZZ_CHECK(out[i] == (is_name_byte_replaced(c) ? '_' : in[i]));
        FUZZ_CHECK(!is_name_byte_replaced((unsigned char)out[i]));
    }
    len2 = proto_name_sanitize(out, len, again);
    FUZZ_CHECK(len2 == len && memcmp(again, out, len) == 0);
    free(again);
    free(out);
}

static int ref_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)fuzz_lower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * The token codec the router applies to "token=" (proto_hex_decode,
 * proto_hex_encode) and the compare it uses (proto_ct_equal): decoding
 * needs exactly 2*n hex digits; encoding gives them back in lower case.
 */
static void check_token(const char *s, size_t n)
{
    size_t want = n / 2 > 0 ? n / 2 : 1, sizes[2] = { want, 16 };

    for (size_t k = 0; k < 2; k++) {
        size_t m = sizes[k];
        uint8_t *out = malloc(m), *back = malloc(m);
        char *hex = malloc(2 * m + 1);
        bool valid = n == 2 * m;

        FUZZ_CHECK(out != NULL && back != NULL && hex != NULL);
        for (size_t i = 0; valid && i < n; i++)
            valid = ref_hex(s[i]) >= 0;
        int rc = proto_hex_decode(s, n, out, m);
        FUZZ_CHECK(rc == (valid ? 0 : -EINVAL));
        if (valid) {
            for (size_t i = 0; i < m; i++)
                FUZZ_CHECK(out[i] == (uint8_t)(ref_hex(s[2 * i]) << 4 | ref_hex(s[2 * i + 1])));
            proto_hex_encode(out, m, hex);
            FUZZ_CHECK(hex[2 * m] == '\0');
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(hex[i] == (char)fuzz_lower((unsigned char)s[i]));
            FUZZ_CHECK(proto_hex_decode(hex, 2 * m, back, m) == 0);
            FUZZ_CHECK(memcmp(back, out, m) == 0);
        }
        free(hex);
        free(back);
        free(out);
    }
    /* the two halves of the input compared in constant time */
    FUZZ_CHECK(proto_ct_equal(s, s + n / 2, n / 2) == (memcmp(s, s + n / 2, n / 2) == 0));
}

/*
 * Reference lookup: the number of parameters named key; for the first one,
 * the offset and length of its value (empty, at the parameter's end, when
 * it has no '=').
 */
static int ref_query_count(const char *q, size_t n, const char *key, size_t *voff,
                           size_t *vlen)
{
    size_t klen = strlen(key), start = 0;
    int count = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && q[i] != '&')
            continue;
        if (i > start) { /* the parameter q[start..i) */
            size_t eq = start;
            while (eq < i && q[eq] != '=')
                eq++;
            if (eq - start == klen && memcmp(q + start, key, klen) == 0 && ++count == 1) {
                *voff = eq < i ? eq + 1 : i;
                *vlen = eq < i ? i - eq - 1 : 0;
            }
        }
        start = i + 1;
    }
    return count;
}

static void check_lookup(const char *q, size_t n, const char *key)
{
    const char *val = NULL;
    size_t val_len = 0, voff = 0, vlen = 0;
    int count = ref_query_count(q, n, key, &voff, &vlen);
    int rc = proto_query_get(q, n, key, &val, &val_len);

    if (count == 0) {
        FUZZ_CHECK(rc == 0);
    } else if (count > 1) {
        FUZZ_CHECK(rc == -EEXIST);
    } else {
        FUZZ_CHECK(rc == 1);
        FUZZ_CHECK(val != NULL && fuzz_within(val, val_len, q, n));
        FUZZ_CHECK((uintptr_t)val - (uintptr_t)q == voff && val_len == vlen);
        FUZZ_CHECK(memchr(val, '&', val_len) == NULL);
        check_numbers(val, val_len);
        check_sanitize(val, val_len);
        check_token(val, val_len);
    }
    /* a pure function: the same answer again */
    const char *val2 = NULL;
    size_t val2_len = 0;
    FUZZ_CHECK(proto_query_get(q, n, key, &val2, &val2_len) == rc);
    if (rc == 1)
        FUZZ_CHECK(val2 == val && val2_len == val_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = { "peer_id", "to", "token", "" };
    const char *nl = memchr(data, '\n', size);
    size_t qoff = nl != NULL ? (size_t)(nl - (const char *)data) + 1 : 0;
    char *key = NULL, *q = fuzz_dup(data + qoff, size - qoff);
    size_t n = size - qoff;

    if (nl != NULL) { /* the key as a C string; an embedded NUL ends it early */
        key = malloc(qoff);
        FUZZ_CHECK(key != NULL);
        memcpy(key, data, qoff - 1);
        key[qoff - 1] = '\0';
        check_lookup(q, n, key);
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        check_lookup(q, n, keys[i]);

    check_numbers(q, n);
    check_sanitize(q, n);
    check_token(q, n);
    if (nl != NULL) {
        char *all = fuzz_dup(data, size);
        check_numbers(all, size);
        check_sanitize(all, size);
        free(all);
    }
    free(key);
    free(q);
    return 0;
}
