/*
 * log: a tiny thread-safe logger to stderr (see log.h).
 *
 * A record is built whole in a bounded buf_t and handed to one write(2), so
 * records from different threads never interleave. Its form is
 *   2026-11-25T08:00:00.123Z LEVEL [role] message\n
 * with the time in UTC (gmtime_r, never localtime: no time-zone lookups or
 * shared static state). A record longer than LOG_RECORD_MAX is cut and ends
 * in "...". The level is the only global; the role is per thread.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_RECORD_MAX 8192      /* bytes of one record, newline included */
#define LOG_TRUNCATED "..."      /* marks a record that was cut */
#define LOG_TAIL_LEN (sizeof LOG_TRUNCATED - 1 + 1) /* "..." and '\n' */
#define LOG_STRERROR_MAX 128
#define LOG_DROPPED "log: a record could not be formatted\n"

static atomic_int log_level_cur = LOG_INFO;
static atomic_int log_format_cur = LOG_FORMAT_TEXT;
static _Thread_local const char *log_role;

static const char *const log_level_names[] = {
    [LOG_ERROR] = "ERROR",
    [LOG_WARN] = "WARN",
    [LOG_INFO] = "INFO",
    [LOG_DEBUG] = "DEBUG",
};

void log_set_level(enum log_level level)
{
    atomic_store(&log_level_cur, (int)level);
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const char *const names[] = {
        [LOG_ERROR] = "error",
        [LOG_WARN] = "warn",
        [LOG_INFO] = "info",
        [LOG_DEBUG] = "debug",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void log_set_format(enum log_format format)
{
    atomic_store(&log_format_cur, (int)format);
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -EINVAL;
    return 0;
}

void log_set_thread_role(const char *role)
{
    log_role = role;
}

const char *log_strerror(int errnum, char *tmp, size_t tmp_len)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(errnum, tmp, tmp_len); /* GNU: may return a static string */
#else
    if (strerror_r(errnum, tmp, tmp_len) != 0)
        snprintf(tmp, tmp_len, "error %d", errnum);
    return tmp;
#endif
}

/* Write all of p[0..n) to stderr, retrying short writes and EINTR. */
static void log_write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere else to report it */
        p += w;
        n -= (size_t)w;
    }
}

/*
 * Fill the rest of rec with as much of the message as fits, after
 * buf_vprintf found the whole of it too long.
 */
__attribute__((format(printf, 2, 0)))
static void log_fill_cut(buf_t *rec, const char *fmt, va_list ap)
{
    size_t room = buf_room(rec);
    if (room < 2 || buf_reserve(rec, room) < 0)
        return;
    /* vsnprintf keeps room - 1 bytes and its NUL in the room reserved. */
    int n = vsnprintf(rec->data + rec->len, room, fmt, ap);
    if (n > 0)
        rec->len += (size_t)n < room - 1 ? (size_t)n : room - 1;
}

__attribute__((format(printf, 3, 0)))
static void log_vrecord(enum log_level level, int errnum, const char *fmt, va_list ap)
{
    if ((int)level > atomic_load(&log_level_cur))
        return;
    int saved_errno = errno;

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (gmtime_r(&ts.tv_sec, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    const char *lname = (unsigned)level < sizeof log_level_names / sizeof log_level_names[0]
                            ? log_level_names[level]
                            : "?";

    buf_t rec;
    /* The tail ("..." and '\n') is held back from the body's budget. */
    buf_init(&rec, LOG_RECORD_MAX - LOG_TAIL_LEN);
    bool cut = false;
    int rc = buf_printf(&rec, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                        tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, lname,
                        log_role ? log_role : "-");
    if (rc == 0) {
        va_list cp;
        va_copy(cp, ap);
        rc = buf_vprintf(&rec, fmt, cp);
        va_end(cp);
        if (rc == -E2BIG) {
            log_fill_cut(&rec, fmt, ap);
            cut = true;
            rc = 0;
        }
    }
    if (rc == 0 && !cut && errnum != 0) {
        char tmp[LOG_STRERROR_MAX];
        /* common/ passes negative errno values around; accept either sign. */
        int e = errnum < 0 ? -errnum : errnum;
        rc = buf_append_str(&rec, ": ");
        if (rc == 0)
            rc = buf_append_str(&rec, log_strerror(e, tmp, sizeof tmp));
        if (rc == -E2BIG) {
            cut = true;
            rc = 0;
        }
    }
    if (rc == 0) {
        rec.max += LOG_TAIL_LEN; /* release the held-back tail */
        if (cut)
            rc = buf_append_str(&rec, LOG_TRUNCATED);
        if (rc == 0)
            rc = buf_append(&rec, "\n", 1);
    }
    if (rc == 0)
        log_write_all(rec.data, rec.len);
    else
        log_write_all(LOG_DROPPED, sizeof LOG_DROPPED - 1);
    buf_free(&rec);
    errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vrecord(level, 0, fmt, ap);
    va_end(ap);
}

void log_errno(enum log_level level, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vrecord(level, errnum, fmt, ap);
    va_end(ap);
}

/* Interim form (text only; the JSON writer replaces it): fields as key=value. */
void log_event(enum log_level level, const char *event, const struct log_fields *f,
               const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level_cur))
        return;
    buf_t line;
    buf_init(&line, LOG_RECORD_MAX);
    int rc = buf_append_str(&line, event);
    if (rc == 0 && f && f->peer_id)
        rc = buf_printf(&line, " peer=%llu", (unsigned long long)f->peer_id);
    if (rc == 0 && f && f->to_id)
        rc = buf_printf(&line, " to=%llu", (unsigned long long)f->to_id);
    if (rc == 0 && f && f->remote)
        rc = buf_printf(&line, " remote=%s", f->remote);
    if (rc == 0 && f && f->method)
        rc = buf_printf(&line, " method=%s", f->method);
    if (rc == 0 && f && f->path) {
        rc = buf_append_str(&line, " path=\"");
        if (rc == 0)
            rc = log_escape(&line, f->path, f->path_len, 256);
        if (rc == 0)
            rc = buf_append_str(&line, "\"");
    }
    if (rc == 0 && f && f->status)
        rc = buf_printf(&line, " status=%d bytes=%llu us=%llu", f->status,
                        (unsigned long long)f->bytes, (unsigned long long)f->duration_us);
    if (rc == 0)
        rc = buf_append_str(&line, " ");
    if (rc == 0) {
        va_list ap;
        va_start(ap, fmt);
        rc = buf_vprintf(&line, fmt, ap);
        va_end(ap);
    }
    if (rc == 0 || rc == -E2BIG)
        log_msg(level, "%.*s", (int)line.len, line.data ? line.data : "");
    else
        log_write_all(LOG_DROPPED, sizeof LOG_DROPPED - 1);
    buf_free(&line);
}

int log_escape(buf_t *b, const char *p, size_t n, size_t max_in)
{
    static const char hex[] = "0123456789abcdef";
    size_t old_len = b->len;
    size_t shown = n < max_in ? n : max_in;
    size_t run = 0; /* start of the current run of bytes kept as they are */
    int rc = 0;
    for (size_t i = 0; i < shown && rc == 0; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            continue;
        if (i > run)
            rc = buf_append(b, p + run, i - run);
        run = i + 1;
        if (rc == 0 && (c == '\\' || c == '"')) {
            char esc[2] = {'\\', (char)c};
            rc = buf_append(b, esc, sizeof esc);
        } else if (rc == 0) {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 0xf]};
            rc = buf_append(b, esc, sizeof esc);
        }
    }
    if (rc == 0 && shown > run)
        rc = buf_append(b, p + run, shown - run);
    if (rc == 0 && n > max_in)
        rc = buf_append_str(b, "...");
    if (rc < 0)
        b->len = old_len; /* nothing half-escaped is left behind */
    return rc;
}
