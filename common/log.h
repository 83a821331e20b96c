/*
 * log: a tiny thread-safe logger to stderr.
 *
 * One write(2) (or one sink call) per record, so lines from threads never
 * interleave. Each record carries the time, the level and the calling
 * thread's role, and is written as one line of text or as one JSON object
 * per line (log_set_format). Untrusted bytes go through log_escape before they reach
 * a format string, or travel as the path of struct log_fields. The level and
 * the format are global (atomics: set them before starting threads so every
 * record sees the same), and so is the sink, under a lock.
 *
 * JSON records are pure ASCII: every string is escaped byte by byte, and a
 * byte >= 0x80 is shown as \u00XX of that byte (never decoded as UTF-8), so
 * a line is valid JSON whatever bytes the message held. A record longer than
 * its limit (8 KiB) is cut inside its message, which then ends in "...";
 * in JSON the object stays whole and gains "truncated":true.
 *
 * A sink (log_set_sink) can take the records instead of stderr, e.g. to
 * print them between redraws of a prompt; it may be set and cleared at any
 * time, threads running.
 */
#ifndef PCSIG_LOG_H
#define PCSIG_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
/* LOG_FORMAT_TEXT: one human line per record; LOG_FORMAT_JSON: one object. */
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

void log_set_level(enum log_level level);
/* Parse "error|warn|info|debug": 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
void log_set_format(enum log_format format);
/* Parse "text|json": 0 or -EINVAL. */
int log_format_parse(const char *s, enum log_format *out);
/* Name of the calling thread's role ("main", "worker", ...), static string;
 * records of a thread that set none show "-". */
void log_set_thread_role(const char *role);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
/* The text of errnum, whichever strerror_r the C library has: tmp, or a
 * static string. Thread-safe. */
const char *log_strerror(int errnum, char *tmp, size_t tmp_len);
/* Log with the text of errnum (either sign) appended: ": text" in text form,
 * an "error" key after "msg" in JSON. */
void log_errno(enum log_level level, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Structured context of a record. Fields left 0 / NULL are not written.
 * remote is trusted text (an address we formatted); path is untrusted bytes
 * (path_len of them) and is escaped by the logger.
 */
struct log_fields {
    uint64_t peer_id;    /* the member the record is about */
    uint64_t to_id;      /* the target member of a message */
    const char *remote;  /* the client's address, "ip:port" or "[ip6]:port" */
    const char *method;  /* access log: "GET", "POST", ... (trusted, static) */
    const char *path;    /* access log: the request path, untrusted */
    size_t path_len;
    int status;          /* access log: the answer's status */
    uint64_t bytes;      /* access log: bytes of the answer */
    uint64_t duration_us; /* access log: request start to answer queued */
};

/*
 * A record with an event name (a short fixed word: "sign_in", "timeout",
 * "access", ...), optional fields (f may be NULL) and a message. Text form:
 *   <time> LEVEL [role] event key=value ... message
 * with the keys below (path quoted; every value escaped as log_escape does).
 * JSON form (--log-format json): one object per line with the keys time,
 * level, role, event, the fields present, and msg. log_msg and log_errno
 * records are the same with the event "log" in JSON and none in text.
 * String fields show at most 256 input bytes, then "...". Thread-safe.
 */
void log_event(enum log_level level, const char *event, const struct log_fields *f,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Where records go instead of stderr. fn gets each complete record exactly
 * once, in place of its write(2): rec[0..len) is the formatted record (text
 * or JSON, escaped as above, ending in '\n'; not NUL-terminated), valid
 * only during the call. The contract, since records come from any thread:
 *   - fn runs on the logging thread, possibly on several threads at once,
 *     so it must be thread-safe; callers may hold their own locks, so fn
 *     must not block for long (queue the bytes, wake someone, return) and
 *     must take no lock that is held while logging;
 *   - fn must not log (log_msg, log_event, ...): a record logged from
 *     inside fn is not handed to a sink again but written to stderr, so it
 *     can never recurse; nor may fn call log_set_sink (-EDEADLK).
 */
typedef void (*log_sink_fn)(void *arg, const char *rec, size_t len);
/*
 * Send every record to fn(arg, ...) from now on; fn NULL restores stderr.
 * When it returns, no call of the previous sink is running or will start,
 * so the previous arg may be freed. Returns 0, or -EDEADLK if called from
 * inside a sink. Thread-safe.
 */
int log_set_sink(log_sink_fn fn, void *arg);

/*
 * Append a printable form of untrusted bytes to b: printable ASCII is kept,
 * '\\' and '"' are backslash-escaped, anything else becomes \xNN. At most
 * max_in input bytes are shown, then "...". Returns 0 or the buf error.
 */
int log_escape(buf_t *b, const char *p, size_t n, size_t max_in);

#endif
