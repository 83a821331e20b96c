/*
 * metrics: counters bumped on the request path, and the text exposition of
 * a snapshot of them (see metrics.h). The exposition follows the Prometheus
 * text format 0.0.4: per family "# HELP name text", "# TYPE name type",
 * then "name{label="value",...} value" lines, families never interleaved.
 */
#include "metrics.h"

#include <string.h>

static const int status_codes[MET_STATUS_COUNT - 1] = {MET_STATUS_CODES};
_Static_assert(sizeof status_codes / sizeof status_codes[0] == MET_STATUS_COUNT - 1,
               "MET_STATUS_COUNT is the status codes plus other");

static const uint64_t latency_bounds_us[MET_LATENCY_BUCKETS] = {MET_LATENCY_BOUNDS_US};
_Static_assert(sizeof latency_bounds_us / sizeof latency_bounds_us[0] == MET_LATENCY_BUCKETS,
               "MET_LATENCY_BUCKETS counts the bounds");
/* The same bounds as the "le" label writes them (seconds, shortest form). */
static const char *const latency_le[MET_LATENCY_BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",     "10",
};

static const char *const path_labels[MET_PATH_COUNT] = {
    [MET_PATH_SIGN_IN] = "sign_in", [MET_PATH_SIGN_OUT] = "sign_out",
    [MET_PATH_WAIT] = "wait",       [MET_PATH_MESSAGE] = "message",
    [MET_PATH_OPTIONS] = "options", [MET_PATH_HEALTH] = "health",
    [MET_PATH_METRICS] = "metrics", [MET_PATH_OTHER] = "other",
};

static const char *const refusal_labels[MET_REFUSED_COUNT] = {
    [MET_REFUSED_MAX_CONNECTIONS] = "max_connections",
    [MET_REFUSED_PER_IP] = "per_ip",
    [MET_REFUSED_RATE_LIMIT] = "rate_limit",
};

/* ---- counting ------------------------------------------------------------ */

static void bump(atomic_uint_least64_t *c, uint64_t by)
{
    atomic_fetch_add_explicit(c, by, memory_order_relaxed);
}

static uint64_t load(atomic_uint_least64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

void metrics_init(struct metrics *m)
{
    for (size_t p = 0; p < MET_PATH_COUNT; p++)
        for (size_t i = 0; i < MET_STATUS_COUNT; i++)
            atomic_init(&m->requests[p][i], 0);
    atomic_init(&m->relayed, 0);
    atomic_init(&m->relayed_bytes, 0);
    atomic_init(&m->connections, 0);
    for (size_t i = 0; i < MET_REFUSED_COUNT; i++)
        atomic_init(&m->refused[i], 0);
    for (size_t i = 0; i <= MET_LATENCY_BUCKETS; i++)
        atomic_init(&m->latency[i], 0);
    atomic_init(&m->latency_sum_us, 0);
    atomic_init(&m->output_closed, 0);
}

/* Index of status in the status label set (MET_STATUS_COUNT - 1: other). */
static size_t metrics_status_index(int status)
{
    for (size_t i = 0; i < MET_STATUS_COUNT - 1; i++)
        if (status_codes[i] == status)
            return i;
    return MET_STATUS_COUNT - 1;
}

static bool path_is(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(p, lit, l) == 0;
}

enum metrics_path metrics_path_of(bool is_options, const char *path, size_t path_len)
{
    static const struct {
        const char *path;
        enum metrics_path label;
    } known[] = {
        {"/sign_in", MET_PATH_SIGN_IN}, {"/sign_out", MET_PATH_SIGN_OUT},
        {"/wait", MET_PATH_WAIT},       {"/message", MET_PATH_MESSAGE},
        {"/health", MET_PATH_HEALTH},   {"/metrics", MET_PATH_METRICS},
    };
    if (is_options)
        return MET_PATH_OPTIONS;
    if (!path)
        return MET_PATH_OTHER;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (path_is(path, path_len, known[i].path))
            return known[i].label;
    return MET_PATH_OTHER;
}

void metrics_count_request(struct metrics *m, enum metrics_path path, int status)
{
    if ((unsigned)path >= MET_PATH_COUNT)
        path = MET_PATH_OTHER;
    bump(&m->requests[path][metrics_status_index(status)], 1);
}

void metrics_observe_relay(struct metrics *m, uint64_t latency_us, uint64_t body_bytes)
{
    size_t b = 0;
    while (b < MET_LATENCY_BUCKETS && latency_us > latency_bounds_us[b])
        b++;
    bump(&m->latency[b], 1);
    bump(&m->latency_sum_us, latency_us);
    bump(&m->relayed, 1);
    bump(&m->relayed_bytes, body_bytes);
}

void metrics_count_connection(struct metrics *m)
{
    bump(&m->connections, 1);
}

void metrics_count_refused(struct metrics *m, enum metrics_refusal why)
{
    if ((unsigned)why < MET_REFUSED_COUNT)
        bump(&m->refused[why], 1);
}

void metrics_count_output_closed(struct metrics *m)
{
    bump(&m->output_closed, 1);
}

void metrics_read(struct metrics *m, struct metrics_snapshot *out)
{
    for (size_t p = 0; p < MET_PATH_COUNT; p++)
        for (size_t i = 0; i < MET_STATUS_COUNT; i++)
            out->requests[p][i] = load(&m->requests[p][i]);
    out->messages_relayed = load(&m->relayed);
    out->relayed_bytes = load(&m->relayed_bytes);
    out->connections = load(&m->connections);
    for (size_t i = 0; i < MET_REFUSED_COUNT; i++)
        out->refused[i] = load(&m->refused[i]);
    for (size_t i = 0; i <= MET_LATENCY_BUCKETS; i++)
        out->latency[i] = load(&m->latency[i]);
    out->latency_sum_us = load(&m->latency_sum_us);
    out->output_closed = load(&m->output_closed);
}

/* ---- exposition ---------------------------------------------------------- */

/* Append a label value in the exposition's escaping (backslash, double
 * quote and newline are backslash-escaped). 0 or the buf error. */
static int metrics_escape_label(buf_t *out, const char *v, size_t n)
{
    size_t mark = out->len, run = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *esc = v[i] == '\\' ? "\\\\" : v[i] == '"' ? "\\\"" : v[i] == '\n' ? "\\n" : NULL;
        if (!esc)
            continue;
        rc = buf_append(out, v + run, i - run);
        if (rc == 0)
            rc = buf_append(out, esc, 2);
        run = i + 1;
    }
    if (rc == 0)
        rc = buf_append(out, v + run, n - run);
    if (rc < 0)
        out->len = mark;
    return rc;
}

/* "# HELP" and "# TYPE" of one family. help is ours: no escaping needed. */
static int family(buf_t *b, const char *name, const char *type, const char *help)
{
    return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int sample(buf_t *b, const char *name, uint64_t v)
{
    return buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* One sample with one label whose value is one of our fixed words. */
static int sample1(buf_t *b, const char *name, const char *label, const char *value, uint64_t v)
{
    return buf_printf(b, "%s{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long)v);
}

/* A gauge or counter with a single unlabelled sample. */
static int scalar(buf_t *b, const char *name, const char *type, const char *help, uint64_t v)
{
    int rc = family(b, name, type, help);
    return rc == 0 ? sample(b, name, v) : rc;
}

/* The standard process collector's names, so existing dashboards work. */
static int format_process(buf_t *b, const struct metrics_snapshot *s)
{
    int rc = scalar(b, "process_resident_memory_bytes", "gauge",
                    "Resident memory size in bytes.", s->process_resident_bytes);
    if (rc == 0)
        rc = scalar(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                    s->process_virtual_bytes);
    if (rc == 0)
        rc = family(b, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.");
    if (rc == 0)
        rc = buf_printf(b, "process_cpu_seconds_total %llu.%06llu\n",
                        (unsigned long long)(s->process_cpu_us / 1000000),
                        (unsigned long long)(s->process_cpu_us % 1000000));
    if (rc == 0)
        rc = scalar(b, "process_open_fds", "gauge", "Number of open file descriptors.",
                    s->process_open_fds);
    if (rc == 0 && s->process_max_fds)
        rc = scalar(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                    s->process_max_fds);
    return rc;
}

static int format_info(buf_t *b, const struct metrics_snapshot *s)
{
    const char *version = s->version ? s->version : "";
    int rc = family(b, "pcsig_build_info", "gauge", "Always 1; the version label names the build.");
    if (rc == 0)
        rc = buf_append_str(b, "pcsig_build_info{version=\"");
    if (rc == 0)
        rc = metrics_escape_label(b, version, strlen(version));
    if (rc == 0)
        rc = buf_append_str(b, "\"} 1\n");
    if (rc == 0)
        rc = scalar(b, "process_start_time_seconds", "gauge",
                    "Start time of the process since the Unix epoch in seconds.",
                    s->start_time_unix_s);
    if (rc == 0 && s->has_process)
        rc = format_process(b, s);
    if (rc == 0)
        rc = family(b, "pcsig_uptime_seconds", "gauge", "Seconds since the server started.");
    if (rc == 0)
        rc = buf_printf(b, "pcsig_uptime_seconds %llu.%03llu\n",
                        (unsigned long long)(s->uptime_ms / 1000),
                        (unsigned long long)(s->uptime_ms % 1000));
    if (rc == 0)
        rc = scalar(b, "pcsig_draining", "gauge",
                    "1 while the server drains for a stop (SIGTERM), else 0.", s->draining);
    return rc;
}

static int format_gauges(buf_t *b, const struct metrics_snapshot *s)
{
    int rc = scalar(b, "pcsig_members", "gauge", "Signed-in members.", s->members);
    if (rc == 0)
        rc = scalar(b, "pcsig_parked_waits", "gauge", "Hanging /wait requests parked now.",
                    s->parked_waits);
    if (rc == 0)
        rc = scalar(b, "pcsig_open_connections", "gauge",
                    "Open client connections, every listener.", s->open_connections);
    if (rc == 0)
        rc = scalar(b, "pcsig_queued_messages", "gauge",
                    "Messages queued for members with no parked /wait.", s->queued_messages);
    if (rc == 0)
        rc = scalar(b, "pcsig_queued_bytes", "gauge", "Body bytes of the queued messages.",
                    s->queued_bytes);
    if (rc == 0)
        rc = scalar(b, "pcsig_notifications_logged", "gauge",
                    "Join/leave events kept for members yet to hear them.",
                    s->notifications_logged);
    if (rc == 0)
        rc = scalar(b, "pcsig_worker_queue_depth", "gauge",
                    "Connections ready to run, waiting for a worker thread.",
                    s->worker_queue_depth);
    if (rc == 0)
        rc = scalar(b, "pcsig_output_held_bytes", "gauge",
                    "Answer bytes held in memory until their clients read them.",
                    s->output_held_bytes);
    return rc;
}

static int format_requests(buf_t *b, const struct metrics_snapshot *s)
{
    static const char name[] = "pcsig_requests_total";
    int rc = family(b, name, "counter", "Requests answered, by path and status.");
    for (size_t p = 0; p < MET_PATH_COUNT && rc == 0; p++) {
        for (size_t i = 0; i < MET_STATUS_COUNT && rc == 0; i++) {
            if (s->requests[p][i] == 0)
                continue;
            if (i < MET_STATUS_COUNT - 1)
                rc = buf_printf(b, "%s{path=\"%s\",status=\"%d\"} %llu\n", name, path_labels[p],
                                status_codes[i], (unsigned long long)s->requests[p][i]);
            else
                rc = buf_printf(b, "%s{path=\"%s\",status=\"other\"} %llu\n", name,
                                path_labels[p], (unsigned long long)s->requests[p][i]);
        }
    }
    return rc;
}

static int format_counters(buf_t *b, const struct metrics_snapshot *s)
{
    int rc = scalar(b, "pcsig_messages_accepted_total", "counter",
                    "Messages accepted for relay (the sender got 200).", s->messages_accepted);
    if (rc == 0)
        rc = scalar(b, "pcsig_messages_relayed_total", "counter",
                    "Messages written to their target's /wait.", s->messages_relayed);
    if (rc == 0)
        rc = scalar(b, "pcsig_relayed_bytes_total", "counter",
                    "Body bytes of the messages relayed.", s->relayed_bytes);
    if (rc == 0)
        rc = scalar(b, "pcsig_messages_refused_total", "counter",
                    "Messages refused with 503 because the target's queue was full.",
                    s->messages_refused);
    if (rc == 0)
        rc = scalar(b, "pcsig_messages_dropped_total", "counter",
                    "Accepted messages dropped because their target left first.",
                    s->messages_dropped);
    if (rc == 0)
        rc = scalar(b, "pcsig_member_timeouts_total", "counter",
                    "Members removed after --member-timeout without a /wait.",
                    s->member_timeouts);
    if (rc == 0)
        rc = scalar(b, "pcsig_wait_timeouts_total", "counter",
                    "Parked /wait requests answered empty after --wait-timeout.",
                    s->wait_timeouts);
    if (rc == 0)
        rc = scalar(b, "pcsig_connections_total", "counter",
                    "Connections accepted and served, every listener.", s->connections);
    if (rc == 0)
        rc = scalar(b, "pcsig_output_closed_total", "counter",
                    "Connections closed for leaving answers unread while "
                    "--max-total-output-bytes was exceeded (the slowest first).",
                    s->output_closed);
    if (rc == 0)
        rc = family(b, "pcsig_connections_refused_total", "counter",
                    "Connections or requests turned away by a limit, by reason.");
    for (size_t i = 0; i < MET_REFUSED_COUNT && rc == 0; i++)
        rc = sample1(b, "pcsig_connections_refused_total", "reason", refusal_labels[i],
                     s->refused[i]);
    if (rc == 0)
        rc = family(b, "pcsig_tls_handshakes_total", "counter",
                    "TLS handshakes by result (0 without TLS).");
    if (rc == 0)
        rc = sample1(b, "pcsig_tls_handshakes_total", "result", "full", s->tls_full);
    if (rc == 0)
        rc = sample1(b, "pcsig_tls_handshakes_total", "result", "resumed", s->tls_resumed);
    if (rc == 0)
        rc = sample1(b, "pcsig_tls_handshakes_total", "result", "failed", s->tls_failed);
    return rc;
}

static int format_latency(buf_t *b, const struct metrics_snapshot *s)
{
    static const char name[] = "pcsig_relay_latency_seconds";
    int rc = family(b, name, "histogram",
                    "Seconds from a message's acceptance to its write to the target's /wait.");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < MET_LATENCY_BUCKETS && rc == 0; i++) {
        cumulative += s->latency[i];
        rc = buf_printf(b, "%s_bucket{le=\"%s\"} %llu\n", name, latency_le[i],
                        (unsigned long long)cumulative);
    }
    /* +Inf and _count are the same total, so a scrape is never inconsistent
     * with itself even though the buckets were read one by one. */
    cumulative += s->latency[MET_LATENCY_BUCKETS];
    if (rc == 0)
        rc = buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    if (rc == 0)
        rc = buf_printf(b, "%s_sum %llu.%06llu\n", name,
                        (unsigned long long)(s->latency_sum_us / 1000000),
                        (unsigned long long)(s->latency_sum_us % 1000000));
    if (rc == 0)
        rc = buf_printf(b, "%s_count %llu\n", name, (unsigned long long)cumulative);
    return rc;
}

int metrics_format(buf_t *out, const struct metrics_snapshot *s)
{
    size_t mark = out->len;
    int rc = format_info(out, s);
    if (rc == 0)
        rc = format_gauges(out, s);
    if (rc == 0)
        rc = format_requests(out, s);
    if (rc == 0)
        rc = format_counters(out, s);
    if (rc == 0)
        rc = format_latency(out, s);
    if (rc < 0)
        out->len = mark;
    return rc;
}
