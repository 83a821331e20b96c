/*
 * buf: one bounded, growable byte buffer (see buf.h for the contract).
 *
 * Capacity grows by doubling from BUF_MIN_CAP and is clamped so that it never
 * exceeds max + 1: the one extra byte lets vsnprintf write its terminating
 * NUL when the text fills the buffer to exactly max. len never exceeds max.
 */
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF_MIN_CAP 64

void buf_init(buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_free(buf_t *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_reset(buf_t *b)
{
    b->len = 0;
}

size_t buf_room(const buf_t *b)
{
    return b->max > b->len ? b->max - b->len : 0;
}

/* Make cap >= need, where need <= max + 1 (saturating). 0 or -ENOMEM. */
static int buf_grow(buf_t *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t limit = b->max == SIZE_MAX ? SIZE_MAX : b->max + 1;
    size_t cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < need) {
        if (cap > limit / 2) {
            cap = limit;
            break;
        }
        cap *= 2;
    }
    if (cap > limit)
        cap = limit;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > buf_room(b))
        return -E2BIG;
    return buf_grow(b, b->len + extra);
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_read_fd(buf_t *b, int fd)
{
    for (;;) {
        char chunk[16384];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : 0;
        int rc = buf_append(b, chunk, (size_t)n);
        if (rc < 0)
            return rc;
    }
}

int buf_append_str(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_append_u64(buf_t *b, uint64_t v)
{
    char digits[20]; /* UINT64_MAX has 20 decimal digits */
    size_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return buf_append(b, digits + i, sizeof digits - i);
}

int buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list measure;
    va_copy(measure, ap);
    int n = vsnprintf(NULL, 0, fmt, measure);
    va_end(measure);
    if (n < 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    size_t want = (size_t)n;
    if (want > buf_room(b))
        return -E2BIG;
    /* len + want <= max, so the NUL's byte stays within max + 1. */
    int rc = buf_grow(b, b->len + want + 1);
    if (rc < 0)
        return rc;
    int m = vsnprintf(b->data + b->len, want + 1, fmt, ap);
    if (m != n)
        return -EINVAL; /* the arguments changed under us (e.g. %s of a racing string) */
    b->len += want;
    return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
