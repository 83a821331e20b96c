/*
 * log: a tiny thread-safe logger to stderr or a sink (see log.h).
 *
 * A record is built whole in a bounded buf_t and handed to one write(2) (or
 * one call of the sink), so records from different threads never
 * interleave. Its text form is
 *   2026-11-25T08:00:00.123Z LEVEL [role] [event key=value ...] message\n
 * and its JSON form one object on one line with the same parts as keys.
 * The time is UTC (gmtime_r, never localtime: no time-zone lookups or shared
 * static state). A record longer than LOG_RECORD_MAX is cut inside its
 * message, which then ends in "..." (and JSON gains "truncated":true), so a
 * cut JSON record still parses. The level, the format and the sink are the
 * globals; the role is per thread.
 *
 * The sink: a record goes to it under a read lock, so sinks run on several
 * threads at once, and log_set_sink takes the write lock, so once it
 * returns the old sink is idle for good and its arg may be freed. The
 * function pointer is also kept in an atomic read before any lock: with no
 * sink (the server, the tests) a record costs no lock at all. A per-thread
 * flag marks "inside the sink": a record logged from there goes to stderr,
 * never to the sink again, so a careless sink cannot recurse, and never
 * takes the read lock twice on one thread (which a waiting writer could
 * deadlock).
 */
#include "log.h"
#include "json_text.h"
#include "strlit.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_RECORD_MAX 8192      /* bytes of one record, newline included */
#define LOG_FIELD_MAX 256        /* input bytes of a string field shown, then "..." */
#define LOG_TRUNCATED "..."      /* marks a message or a field that was cut */
#define LOG_STRERROR_MAX 128
#define LOG_EVENT_PLAIN "log"    /* JSON "event" of log_msg and log_errno */
#define LOG_JSON_ERROR ",\"error\":\""
#define LOG_JSON_CUT ",\"truncated\":true"
#define LOG_JSON_END "}\n"
#define LOG_DROPPED "log: a record could not be formatted\n"
/* Still one JSON object: no time, since formatting failed somewhere. */
#define LOG_DROPPED_JSON \
    "{\"level\":\"error\",\"event\":\"log_dropped\",\"msg\":\"a record could not be formatted\"}\n"

static atomic_int log_level_cur = LOG_INFO;
static atomic_int log_format_cur = LOG_FORMAT_TEXT;
static _Thread_local const char *log_role;

static pthread_rwlock_t log_sink_lock = PTHREAD_RWLOCK_INITIALIZER;
static _Atomic(log_sink_fn) log_sink_cur; /* written under the write lock */
static void *log_sink_arg;                /* under log_sink_lock */
static _Thread_local bool log_in_sink;    /* this thread is running the sink */

static const char *const log_level_names[] = {
    [LOG_ERROR] = "ERROR",
    [LOG_WARN] = "WARN",
    [LOG_INFO] = "INFO",
    [LOG_DEBUG] = "DEBUG",
};

/* The names --log-level takes, and JSON's "level". */
static const char *const log_level_lower[] = {
    [LOG_ERROR] = "error",
    [LOG_WARN] = "warn",
    [LOG_INFO] = "info",
    [LOG_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
    atomic_store(&log_level_cur, (int)level);
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof log_level_lower / sizeof log_level_lower[0]; i++) {
        if (strcmp(s, log_level_lower[i]) == 0) {
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

int log_set_sink(log_sink_fn fn, void *arg)
{
    if (log_in_sink)
        return -EDEADLK; /* the write lock would wait for our own read lock */
    pthread_rwlock_wrlock(&log_sink_lock);
    atomic_store(&log_sink_cur, fn);
    log_sink_arg = fn ? arg : NULL;
    pthread_rwlock_unlock(&log_sink_lock);
    return 0;
}

/* One whole record to the sink, or to stderr when there is none. */
static void log_emit(const char *p, size_t n)
{
    if (log_in_sink || atomic_load(&log_sink_cur) == NULL) {
        log_write_all(p, n);
        return;
    }
    pthread_rwlock_rdlock(&log_sink_lock);
    log_sink_fn fn = atomic_load(&log_sink_cur); /* it may have been cleared meanwhile */
    if (fn) {
        log_in_sink = true;
        fn(log_sink_arg, p, n);
        log_in_sink = false;
    } else {
        log_write_all(p, n);
    }
    pthread_rwlock_unlock(&log_sink_lock);
}

/*
 * Fill the rest of b with as much of the message as fits, after
 * buf_vprintf found the whole of it too long.
 */
__attribute__((format(printf, 2, 0)))
static void log_fill_cut(buf_t *b, const char *fmt, va_list ap)
{
    size_t room = buf_room(b);
    if (room < 2 || buf_reserve(b, room) < 0)
        return;
    /* vsnprintf keeps room - 1 bytes and its NUL in the room reserved. */
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    if (n > 0)
        b->len += (size_t)n < room - 1 ? (size_t)n : room - 1;
}


/* ---- fields --------------------------------------------------------------- */

/* Write the key of a field: ,"key": in JSON, key= in text. */
static int log_key(buf_t *b, bool json, const char *key)
{
    return json ? buf_printf(b, ",\"%s\":", key) : buf_printf(b, " %s=", key);
}

static int log_field_u64(buf_t *b, bool json, const char *key, uint64_t v)
{
    if (v == 0)
        return 0;
    int rc = log_key(b, json, key);
    return rc == 0 ? buf_append_u64(b, v) : rc;
}

/*
 * A string field, at most LOG_FIELD_MAX input bytes then "...". Both forms
 * escape it, trusted or not: a field is one token of its line either way.
 * In text, quoted says whether the value is put in quotes (a path may hold
 * spaces; an address may not).
 */
static int log_field_str(buf_t *b, bool json, const char *key, const char *s, size_t n,
                         bool quoted)
{
    if (s == NULL)
        return 0;
    size_t shown = n < LOG_FIELD_MAX ? n : LOG_FIELD_MAX, used;
    int rc = log_key(b, json, key);
    if (rc == 0 && (json || quoted))
        rc = buf_append(b, STRLIT("\""));
    if (rc == 0 && json) {
        rc = json_append_escaped(b, s, shown, SIZE_MAX, &used);
        if (rc == 0 && n > shown)
            rc = buf_append_str(b, LOG_TRUNCATED);
    } else if (rc == 0) {
        rc = log_escape(b, s, n, LOG_FIELD_MAX);
    }
    if (rc == 0 && (json || quoted))
        rc = buf_append(b, STRLIT("\""));
    return rc;
}

/* The fields of f that are set, in the order log.h lists them. */
static int log_fields_append(buf_t *b, bool json, const struct log_fields *f)
{
    if (f == NULL)
        return 0;
    int rc = log_field_u64(b, json, "peer_id", f->peer_id);
    if (rc == 0)
        rc = log_field_u64(b, json, "to_id", f->to_id);
    if (rc == 0 && f->remote)
        rc = log_field_str(b, json, "remote", f->remote, strlen(f->remote), false);
    if (rc == 0 && f->method)
        rc = log_field_str(b, json, "method", f->method, strlen(f->method), false);
    if (rc == 0)
        rc = log_field_str(b, json, "path", f->path, f->path_len, true);
    if (rc == 0 && f->status != 0) {
        rc = log_key(b, json, "status");
        if (rc == 0)
            rc = buf_printf(b, "%d", f->status);
    }
    if (rc == 0)
        rc = log_field_u64(b, json, "bytes", f->bytes);
    if (rc == 0)
        rc = log_field_u64(b, json, "duration_us", f->duration_us);
    return rc;
}

/* ---- records -------------------------------------------------------------- */

/*
 * Everything before the message: "<time> LEVEL [role] event fields" in text;
 * {"time":..,"level":..,"role":..,"event":.., fields ,"msg":" in JSON.
 */
static int log_head(buf_t *rec, bool json, enum log_level level, const char *event,
                    const struct log_fields *f)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (gmtime_r(&ts.tv_sec, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    bool known = (unsigned)level < sizeof log_level_names / sizeof log_level_names[0];
    const char *role = log_role ? log_role : "-";
    int rc = buf_printf(rec, "%s%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ%s", json ? "{\"time\":\"" : "",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                        tm.tm_sec, ts.tv_nsec / 1000000L, json ? "\"" : "");
    if (json) {
        if (rc == 0)
            rc = buf_printf(rec, ",\"level\":\"%s\",\"role\":",
                            known ? log_level_lower[level] : "?");
        if (rc == 0)
            rc = json_append_string(rec, role);
        if (rc == 0)
            rc = buf_append_str(rec, ",\"event\":");
        if (rc == 0)
            rc = json_append_string(rec, event ? event : LOG_EVENT_PLAIN);
    } else {
        if (rc == 0)
            rc = buf_printf(rec, " %s [%s]", known ? log_level_names[level] : "?", role);
        if (rc == 0 && event)
            rc = buf_printf(rec, " %s", event);
    }
    if (rc == 0)
        rc = log_fields_append(rec, json, f);
    if (rc == 0 && json)
        rc = buf_append_str(rec, ",\"msg\":\"");
    return rc;
}

/* Append the message: escaped in JSON, as it is in text; see log_json_append. */
static int log_put_msg(buf_t *rec, bool json, const buf_t *msg, size_t room, size_t *used)
{
    if (json)
        return json_append_escaped(rec, msg->data, msg->len, room, used);
    *used = msg->len < room ? msg->len : room;
    return buf_append(rec, msg->data, *used);
}

/*
 * Bytes of what follows the message: in JSON the closing quote, the error
 * key, the truncated key and "}\n"; in text ": error" and '\n'. A cut record
 * also holds the "..." that ends its message.
 */
static size_t log_tail_len(bool json, const char *etext, bool cut)
{
    size_t n = cut ? sizeof LOG_TRUNCATED - 1 : 0;
    if (json) {
        n += 1 + sizeof LOG_JSON_END - 1;
        if (etext)
            n += sizeof LOG_JSON_ERROR - 1 + json_escaped_len(etext, strlen(etext)) + 1;
        if (cut)
            n += sizeof LOG_JSON_CUT - 1;
    } else {
        n += 1;
        if (etext)
            n += 2 + strlen(etext);
    }
    return n;
}

static int log_tail(buf_t *rec, bool json, const char *etext, bool cut)
{
    int rc = cut ? buf_append_str(rec, LOG_TRUNCATED) : 0;
    if (json) {
        if (rc == 0)
            rc = buf_append(rec, STRLIT("\""));
        if (rc == 0 && etext) {
            rc = buf_append_str(rec, LOG_JSON_ERROR);
            size_t used;
            if (rc == 0)
                rc = json_append_escaped(rec, etext, strlen(etext), SIZE_MAX, &used);
            if (rc == 0)
                rc = buf_append(rec, STRLIT("\""));
        }
        if (rc == 0 && cut)
            rc = buf_append_str(rec, LOG_JSON_CUT);
        if (rc == 0)
            rc = buf_append_str(rec, LOG_JSON_END);
    } else {
        if (rc == 0 && etext)
            rc = buf_printf(rec, ": %s", etext);
        if (rc == 0)
            rc = buf_append(rec, STRLIT("\n"));
    }
    return rc;
}

/*
 * One record: head, message, tail, in one buffer of at most LOG_RECORD_MAX
 * bytes and one write (or sink call). A message too long for what is left is cut where an
 * escape starts and marked, and the tail is always whole: a cut JSON record
 * is still one valid object.
 */
__attribute__((format(printf, 5, 0)))
static void log_vrecord(enum log_level level, const char *event, const struct log_fields *f,
                        int errnum, const char *fmt, va_list ap)
{
    if ((int)level > atomic_load(&log_level_cur))
        return;
    int saved_errno = errno;
    bool json = atomic_load(&log_format_cur) == LOG_FORMAT_JSON;

    buf_t msg, rec;
    buf_init(&msg, LOG_RECORD_MAX); /* more could never be shown */
    buf_init(&rec, LOG_RECORD_MAX);
    bool cut = false;
    va_list cp;
    va_copy(cp, ap);
    int rc = buf_vprintf(&msg, fmt, cp);
    va_end(cp);
    if (rc == -E2BIG) {
        log_fill_cut(&msg, fmt, ap);
        cut = true;
        rc = 0;
    }

    char tmp[LOG_STRERROR_MAX];
    /* common/ passes negative errno values around; accept either sign. */
    const char *etext = errnum ? log_strerror(errnum < 0 ? -errnum : errnum, tmp, sizeof tmp)
                               : NULL;
    if (rc == 0)
        rc = log_head(&rec, json, level, event, f);
    if (rc == 0 && !json && msg.len)
        rc = buf_append(&rec, STRLIT(" "));
    size_t mark = rec.len, used = 0, tail = log_tail_len(json, etext, false);
    if (rc == 0) {
        size_t room = LOG_RECORD_MAX > mark + tail ? LOG_RECORD_MAX - mark - tail : 0;
        rc = log_put_msg(&rec, json, &msg, room, &used);
    }
    if (rc == 0 && (cut || used < msg.len)) {
        /* Again with room for the marks of a cut record. */
        cut = true;
        rec.len = mark;
        tail = log_tail_len(json, etext, true);
        size_t room = LOG_RECORD_MAX > mark + tail ? LOG_RECORD_MAX - mark - tail : 0;
        rc = log_put_msg(&rec, json, &msg, room, &used);
    }
    if (rc == 0)
        rc = log_tail(&rec, json, etext, cut);
    if (rc == 0)
        log_emit(rec.data, rec.len);
    else if (json)
        log_emit(LOG_DROPPED_JSON, sizeof LOG_DROPPED_JSON - 1);
    else
        log_emit(LOG_DROPPED, sizeof LOG_DROPPED - 1);
    buf_free(&rec);
    buf_free(&msg);
    errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vrecord(level, NULL, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_errno(enum log_level level, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vrecord(level, NULL, NULL, errnum, fmt, ap);
    va_end(ap);
}

void log_event(enum log_level level, const char *event, const struct log_fields *f,
               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vrecord(level, event, f, 0, fmt, ap);
    va_end(ap);
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
