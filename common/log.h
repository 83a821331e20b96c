/*
 * log: a tiny thread-safe logger to stderr.
 *
 * One write(2) per record, so lines from threads never interleave. Each
 * record carries the time, the level and the calling thread's role.
 * Untrusted bytes go through log_escape before they reach a format string.
 * The level is the one piece of global state here; set it before starting
 * threads.
 */
#ifndef PCSIG_LOG_H
#define PCSIG_LOG_H

#include <stddef.h>

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
/* Name of the calling thread's role ("main", "worker", ...), static string. */
void log_set_thread_role(const char *role);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
/* Log at error level with strerror_r(errnum) appended. */
void log_errno(enum log_level level, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Append a printable form of untrusted bytes to b: printable ASCII is kept,
 * '\\' and '"' are backslash-escaped, anything else becomes \xNN. At most
 * max_in input bytes are shown, then "...". Returns 0 or the buf error.
 */
int log_escape(buf_t *b, const char *p, size_t n, size_t max_in);

#endif
