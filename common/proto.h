/*
 * proto: the small text codecs of the peerconnection protocol.
 *
 * Strict numbers and ids, query-string parameters, member names and the
 * "name,id,connected\n" entry lines of peer lists. Pure functions over byte
 * ranges: no I/O, no allocation except into a caller's buf_t; thread-safe.
 */
#ifndef PCSIG_PROTO_H
#define PCSIG_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PROTO_MAX_NAME 512 /* bytes kept of a member name, as the original */

/*
 * Strict unsigned decimal: digits only (no sign, space or prefix), at least
 * one digit, no overflow. Returns 0, -EINVAL (bad syntax) or -ERANGE.
 */
int proto_parse_u64(const char *s, size_t n, uint64_t *out);

/* A member id: proto_parse_u64 and > 0 and <= PROTO_MAX_ID, else -EINVAL/-ERANGE. */
#define PROTO_MAX_ID ((uint64_t)INT32_MAX) /* the stock client reads ids with atoi */
int proto_parse_id(const char *s, size_t n, uint64_t *out);

/*
 * Find parameter key in a query string q[0..n) ("a=1&b=2"). The key must be a
 * whole parameter name ("xpeer_id=1" is not "peer_id"). No decoding is done.
 * Returns 1 and the value slice when found once, 0 when absent, -EEXIST when
 * the key appears more than once.
 */
int proto_query_get(const char *q, size_t n, const char *key,
                    const char **val, size_t *val_len);

/*
 * Write the member name for raw query bytes in[0..n) into out (at least
 * PROTO_MAX_NAME bytes): truncated to PROTO_MAX_NAME, ',' and control bytes
 * (< 0x20, 0x7f) replaced by '_'. Returns the name length (0 when n == 0;
 * the caller then names the member "peer_<id>").
 */
size_t proto_name_sanitize(const char *in, size_t n, char *out);

/* Append "name,id,connected\n" to b. Returns 0 or the buf error. */
int proto_entry_append(buf_t *b, const char *name, size_t name_len,
                       uint64_t id, bool connected);

typedef struct proto_entry {
    const char *name; /* points into the parsed bytes */
    size_t name_len;
    uint64_t id;
    bool connected;
} proto_entry_t;

/*
 * Parse one entry line from s[0..n). Returns the bytes consumed including the
 * '\n' (> 0), 0 when no complete line is present, -EINVAL when the line is
 * not "name,id,0|1" with a non-empty name and a valid id.
 */
long proto_entry_parse(const char *s, size_t n, proto_entry_t *e);

/* Equal bytes, in time that depends only on n (for secrets). */
bool proto_ct_equal(const void *a, const void *b, size_t n);

/*
 * Is given[0..given_len) exactly the NUL-terminated secret? In time that
 * depends only on given_len: the secret's length is not measured first (no
 * strlen, no early exit on a length mismatch), so neither its bytes nor its
 * length leak through timing. Reads the secret up to its NUL and never past
 * it. A given with a NUL byte never matches; the empty secret matches only
 * an empty given.
 */
bool proto_ct_equal_secret(const char *secret, const void *given, size_t given_len);

/* Hex codec for tokens: proto_hex_decode needs exactly 2*n hex digits (either
 * case) and returns 0 or -EINVAL; proto_hex_encode writes 2*n chars + NUL. */
int proto_hex_decode(const char *s, size_t slen, uint8_t *out, size_t n);
void proto_hex_encode(const uint8_t *in, size_t n, char *out);

#endif
