/*
 * fuzz_common: what the libFuzzer targets of tests/fuzz/ share.
 *
 * A target checks invariants, not just survival: FUZZ_CHECK names the
 * violated condition on stderr and abort()s, which libFuzzer reports as a
 * crash and saves the input for. Inputs are re-parsed from exact-size heap
 * copies so that ASan catches a read one byte past any length the code
 * under test was given. Header-only and static: every target is one
 * translation unit linked with common/.
 */
#ifndef PCSIG_FUZZ_COMMON_H
#define PCSIG_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The libFuzzer entry point; declared for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static inline void fuzz_fail(const char *what, const char *file,
                                                       int line)
{
    fprintf(stderr, "invariant violated at %s:%d: %s\n", file, line, what);
    abort();
}

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(#cond, __FILE__, __LINE__);                                                  \
    } while (0)

/* An exact-size heap copy of p[0..n) (NULL only when n is 0 and malloc says so). */
static inline char *fuzz_dup(const void *p, size_t n)
{
    char *c = malloc(n);
    if (c == NULL && n != 0)
        abort();
    if (n != 0)
        memcpy(c, p, n);
    return c;
}

/*
 * True when [p, p + n) lies inside [base, base + len). Compared as integers:
 * relational operators on pointers into different objects are undefined.
 */
static inline bool fuzz_within(const char *p, size_t n, const char *base, size_t len)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
    if (p == NULL)
        return n == 0;
    return a >= b && a - b <= len && n <= len - (a - b);
}

/* FNV-1a, to derive limits, ids and prefix lengths deterministically from an input. */
static inline uint64_t fuzz_hash(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325u ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

/*
 * Reference strict decimal (digits only, 1+ of them, no overflow), written
 * independently of the code under test: 0, -1 (syntax) or -2 (overflow).
 */
static inline int fuzz_ref_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    bool overflow = false;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (__builtin_mul_overflow(v, 10u, &v) ||
            __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
            overflow = true;
    }
    if (overflow)
        return -2;
    *out = v;
    return 0;
}

static inline unsigned char fuzz_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ASCII case-insensitive equality of p[0..n) with the NUL-terminated lit. */
static inline bool fuzz_caseeq(const char *p, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (fuzz_lower((unsigned char)p[i]) != fuzz_lower((unsigned char)lit[i]))
            return false;
    }
    return true;
}

#endif
