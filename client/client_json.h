/*
 * client_json: the little JSON the CLI's --json mode needs, and no more.
 *
 * Input: one flat object per line ({"cmd":"send","to":2,"data":"..."}),
 * parsed strictly (RFC 8259 syntax, valid UTF-8, no duplicate keys, no
 * trailing bytes); values are strings, numbers, true, false or null, and a
 * nested object or array is rejected. Output: JSON string escaping and
 * base64 for bodies that are not UTF-8. Pure functions; thread-safe.
 */
#ifndef PCSIG_CLIENT_JSON_H
#define PCSIG_CLIENT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CJSON_MAX_MEMBERS 64 /* more members than this in a command: an error */

enum cjson_type {
    CJSON_STRING = 1,
    CJSON_NUMBER,
    CJSON_TRUE,
    CJSON_FALSE,
    CJSON_NULL,
};

struct cjson_member {
    char *key;           /* decoded, NUL-terminated (may hold NULs: see key_len) */
    size_t key_len;
    enum cjson_type type;
    char *str;           /* STRING: decoded bytes; NUMBER: the literal; + a NUL */
    size_t str_len;
};

struct cjson_object {
    struct cjson_member *members;
    size_t n;
};

/*
 * Parse p[0..n) as one flat object (whitespace around it is allowed).
 * Returns 0 with *out filled (the caller frees it with cjson_object_free),
 * -EINVAL with *err set to a static one-line reason, or -ENOMEM.
 */
int cjson_parse_object(const char *p, size_t n, struct cjson_object *out, const char **err);
/* Free what cjson_parse_object filled in; the struct itself stays. NULL-safe. */
void cjson_object_free(struct cjson_object *o);

/* The member named key, or NULL. */
const struct cjson_member *cjson_get(const struct cjson_object *o, const char *key);
/* A string member's value (NUL-terminated, *len set when len != NULL), or
 * NULL when absent or not a string. */
const char *cjson_get_string(const struct cjson_object *o, const char *key, size_t *len);
/* An integer member (digits only: no sign, fraction or exponent) as a u64:
 * 0, -ENOENT when absent, -EINVAL when not such a number, -ERANGE. */
int cjson_get_u64(const struct cjson_object *o, const char *key, uint64_t *out);

/* True when p[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool cjson_utf8_valid(const void *p, size_t n);
/*
 * Append p[0..n) as a quoted JSON string: '"', '\\', control bytes, DEL and
 * the C1 controls U+0080..U+009F escaped (the output is also safe to show
 * on a terminal), other valid UTF-8 kept, each byte of an invalid sequence
 * written as \ufffd. Returns 0 or a buf error.
 */
int cjson_append_string(buf_t *b, const void *p, size_t n);
/* Append standard base64 (RFC 4648, padded). 0 or a buf error. */
int cjson_b64_encode(buf_t *b, const void *p, size_t n);
/* Append the bytes of strict base64 p[0..n) (padded, no whitespace, zero
 * pad bits): 0, -EINVAL, or a buf error. */
int cjson_b64_decode(buf_t *b, const char *p, size_t n);

#endif
