/*
 * JSON string text: the escaping the server's JSON log lines and its
 * /config.json share. Bytes are shown one by one, never decoded: a byte
 * >= 0x80 becomes \u00XX of the byte (so "\xc3\xa9" reads "\u00c3\u00a9"),
 * which keeps the output ASCII and valid UTF-8 whatever the input was.
 */
#ifndef PCSIG_JSON_TEXT_H
#define PCSIG_JSON_TEXT_H

#include "buf.h"

#include <stddef.h>

/* Bytes p[0..n) take once escaped (quotes not included). */
size_t json_escaped_len(const char *p, size_t n);

/* Append p[0..n) as the inside of a JSON string, in at most room bytes and
 * never splitting an escape; *used gets the input bytes written. 0 or the
 * buf error. */
int json_append_escaped(buf_t *b, const char *p, size_t n, size_t room, size_t *used);

/* Append "s" as a whole JSON string, quotes included. 0 or the buf error. */
int json_append_string(buf_t *b, const char *s);

#endif
