/*
 * buf: one bounded, growable byte buffer.
 *
 * Every request and response is built in a buf_t; its maximum is fixed when
 * it is initialised, so no input can make it grow past a named limit.
 * Errors follow the common/ convention: 0 or a negative errno value.
 * Not thread-safe: a buffer belongs to one owner at a time.
 */
#ifndef PCSIG_BUF_H
#define PCSIG_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;  /* owned; NULL until the first append */
    size_t len;  /* bytes in use */
    size_t cap;  /* bytes allocated */
    size_t max;  /* hard limit on len */
} buf_t;

/* Make b empty with the given maximum length. Allocates nothing. */
void buf_init(buf_t *b, size_t max);
/* Release the storage; b stays initialised (empty, same max). NULL-safe. */
void buf_free(buf_t *b);
/* Drop the contents but keep the storage. */
void buf_reset(buf_t *b);
/* Ensure room for extra more bytes: 0, -E2BIG past max, -ENOMEM. */
int buf_reserve(buf_t *b, size_t extra);
/* Append n bytes: 0, -E2BIG (nothing appended), -ENOMEM. */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
/* Append the decimal form of v. */
int buf_append_u64(buf_t *b, uint64_t v);
/* Append formatted text (no NUL is counted in len): 0, -E2BIG, -ENOMEM, -EINVAL. */
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Append all that fd yields until EOF (a read interrupted by a signal is
 * retried): 0, -errno of read, -E2BIG (past max: the chunk that did not fit
 * is not appended), -ENOMEM. fd stays open. */
int buf_read_fd(buf_t *b, int fd);
/* Remove the first n bytes (n > len removes everything). */
void buf_consume(buf_t *b, size_t n);
/* Bytes that can still be appended before max. */
size_t buf_room(const buf_t *b);

#endif
