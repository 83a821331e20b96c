/*
 * cli_json: the CLI's JSON, on jansson (parsing, escaping, writing), plus
 * base64 on OpenSSL's codec. Only the CLI links it: libpcsig-client never
 * needs JSON.
 *
 * Output: compact objects, members in the order they were set (jansson
 * keeps insertion order), strings escaped by jansson (", \, control bytes;
 * other UTF-8 as it is). Bytes that are not valid UTF-8 (a peer's name, a
 * reason) are shown as U+FFFD each; a message body that is not UTF-8 is
 * sent as base64 instead (data_b64). Input: one object per line, parsed by
 * jansson (duplicate member names refused, \u0000 allowed in strings).
 * Thread-safe: no state.
 */
#ifndef PCSIG_CLI_JSON_H
#define PCSIG_CLI_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/*
 * Parse p[0..n) as one JSON object with flat members (strings, numbers,
 * true, false, null). Returns a new reference (json_decref it), or NULL
 * with *err set to a one-line reason in errbuf or static text: "not a JSON
 * object", "nested objects and arrays are not supported", jansson's own.
 */
json_t *cli_json_parse_object(const char *p, size_t n, char *errbuf, size_t errlen,
                              const char **err);

/* A member that is a string: its bytes (NUL-terminated, may hold NULs:
 * *len, when len is not NULL), or NULL when absent or not a string. */
const char *cli_json_get_string(const json_t *o, const char *key, size_t *len);

/* A member that is a positive integer: 0 and *out, -ENOENT when absent,
 * -EINVAL when not such a number. */
int cli_json_get_id(const json_t *o, const char *key, uint64_t *out);

/*
 * A JSON string of p[0..n) (new reference, or NULL when out of memory):
 * invalid UTF-8 becomes U+FFFD. terminal: also DEL and the C1 controls
 * (U+0080..U+009F), which jansson writes as they are and a terminal may
 * act on; for text shown to a person, never for data.
 */
json_t *cli_json_text(const void *p, size_t n, bool terminal);

/* Append v's compact JSON text to b; v is consumed (json_decref'd), NULL
 * counts as out of memory. 0, -ENOMEM, or a buf error. */
int cli_json_dump(buf_t *b, json_t *v);

/* Append p[0..n) as a quoted JSON string (cli_json_text): 0 or an error. */
int cli_json_append_string(buf_t *b, const void *p, size_t n, bool terminal);

/* Append standard padded base64 (RFC 4648). 0 or a buf error. */
int cli_b64_encode(buf_t *b, const void *p, size_t n);
/* Append the bytes of strict base64 p[0..n) (padded, no whitespace, zero
 * pad bits): 0, -EINVAL, or a buf error. */
int cli_b64_decode(buf_t *b, const char *p, size_t n);

#endif
