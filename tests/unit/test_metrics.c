/*
 * Unit tests of metrics: the exposition of a known snapshot byte for byte;
 * every family's # HELP and # TYPE lines; label escaping; the latency
 * histogram (bucket edges inclusive, cumulative, +Inf, _sum and _count);
 * the path and status labels; counting from several threads; and a buffer
 * too small for the output (an error, nothing half-written).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The module itself: its static functions are what these tests check. */
#include "metrics.c"
#include "strlit.h"

/* The text of b as a NUL-terminated copy (the caller frees). */
static char *text_of(const buf_t *b)
{
    char *t = malloc(b->len + 1);
    assert_non_null(t);
    if (b->len)
        memcpy(t, b->data, b->len);
    t[b->len] = '\0';
    return t;
}

static char *format(const struct metrics_snapshot *s)
{
    buf_t b;
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_format(&b, s), 0);
    char *t = text_of(&b);
    buf_free(&b);
    return t;
}

static size_t path_index(enum metrics_path p)
{
    return (size_t)p;
}

/* A snapshot in which every field has its own recognisable value. */
static void known_snapshot(struct metrics_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->version = "1.2.3";
    s->start_time_unix_s = 1700000000;
    s->uptime_ms = 3600042;
    s->draining = false;
    s->members = 12;
    s->parked_waits = 7;
    s->open_connections = 40;
    s->queued_messages = 3;
    s->queued_bytes = 1234;
    s->notifications_logged = 56;
    s->worker_queue_depth = 2;
    s->output_held_bytes = 5242880;
    s->output_closed = 13;
    s->requests[path_index(MET_PATH_SIGN_IN)][metrics_status_index(200)] = 5;
    s->requests[path_index(MET_PATH_WAIT)][metrics_status_index(200)] = 9;
    s->requests[path_index(MET_PATH_WAIT)][metrics_status_index(409)] = 1;
    s->requests[path_index(MET_PATH_OTHER)][metrics_status_index(400)] = 2;
    s->requests[path_index(MET_PATH_OTHER)][metrics_status_index(599)] = 4;
    s->messages_accepted = 21;
    s->messages_relayed = 20;
    s->relayed_bytes = 4096;
    s->messages_refused = 1;
    s->messages_dropped = 0;
    s->member_timeouts = 3;
    s->wait_timeouts = 8;
    s->connections = 77;
    s->refused[MET_REFUSED_MAX_CONNECTIONS] = 6;
    s->refused[MET_REFUSED_PER_IP] = 0;
    s->refused[MET_REFUSED_RATE_LIMIT] = 11;
    s->tls_full = 4;
    s->tls_resumed = 16;
    s->tls_failed = 2;
    s->latency[0] = 1;  /* <= 100 us */
    s->latency[3] = 2;  /* <= 1 ms */
    s->latency[15] = 1; /* <= 10 s */
    s->latency[16] = 1; /* above 10 s */
    s->latency_sum_us = 12001500;
}

static const char known_text[] =
    "# HELP pcsig_build_info Always 1; the version label names the build.\n"
    "# TYPE pcsig_build_info gauge\n"
    "pcsig_build_info{version=\"1.2.3\"} 1\n"
    "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n"
    "# TYPE process_start_time_seconds gauge\n"
    "process_start_time_seconds 1700000000\n"
    "# HELP pcsig_uptime_seconds Seconds since the server started.\n"
    "# TYPE pcsig_uptime_seconds gauge\n"
    "pcsig_uptime_seconds 3600.042\n"
    "# HELP pcsig_draining 1 while the server drains for a stop (SIGTERM), else 0.\n"
    "# TYPE pcsig_draining gauge\n"
    "pcsig_draining 0\n"
    "# HELP pcsig_members Signed-in members.\n"
    "# TYPE pcsig_members gauge\n"
    "pcsig_members 12\n"
    "# HELP pcsig_parked_waits Hanging /wait requests parked now.\n"
    "# TYPE pcsig_parked_waits gauge\n"
    "pcsig_parked_waits 7\n"
    "# HELP pcsig_open_connections Open client connections, every listener.\n"
    "# TYPE pcsig_open_connections gauge\n"
    "pcsig_open_connections 40\n"
    "# HELP pcsig_queued_messages Messages queued for members with no parked /wait.\n"
    "# TYPE pcsig_queued_messages gauge\n"
    "pcsig_queued_messages 3\n"
    "# HELP pcsig_queued_bytes Body bytes of the queued messages.\n"
    "# TYPE pcsig_queued_bytes gauge\n"
    "pcsig_queued_bytes 1234\n"
    "# HELP pcsig_notifications_logged Join/leave events kept for members yet to hear them.\n"
    "# TYPE pcsig_notifications_logged gauge\n"
    "pcsig_notifications_logged 56\n"
    "# HELP pcsig_worker_queue_depth Connections ready to run, waiting for a worker thread.\n"
    "# TYPE pcsig_worker_queue_depth gauge\n"
    "pcsig_worker_queue_depth 2\n"
    "# HELP pcsig_output_held_bytes Answer bytes held in memory until their clients read them.\n"
    "# TYPE pcsig_output_held_bytes gauge\n"
    "pcsig_output_held_bytes 5242880\n"
    "# HELP pcsig_requests_total Requests answered, by path and status.\n"
    "# TYPE pcsig_requests_total counter\n"
    "pcsig_requests_total{path=\"sign_in\",status=\"200\"} 5\n"
    "pcsig_requests_total{path=\"wait\",status=\"200\"} 9\n"
    "pcsig_requests_total{path=\"wait\",status=\"409\"} 1\n"
    "pcsig_requests_total{path=\"other\",status=\"400\"} 2\n"
    "pcsig_requests_total{path=\"other\",status=\"other\"} 4\n"
    "# HELP pcsig_messages_accepted_total Messages accepted for relay (the sender got 200).\n"
    "# TYPE pcsig_messages_accepted_total counter\n"
    "pcsig_messages_accepted_total 21\n"
    "# HELP pcsig_messages_relayed_total Messages written to their target's /wait.\n"
    "# TYPE pcsig_messages_relayed_total counter\n"
    "pcsig_messages_relayed_total 20\n"
    "# HELP pcsig_relayed_bytes_total Body bytes of the messages relayed.\n"
    "# TYPE pcsig_relayed_bytes_total counter\n"
    "pcsig_relayed_bytes_total 4096\n"
    "# HELP pcsig_messages_refused_total Messages refused with 503 because the target's queue was full.\n"
    "# TYPE pcsig_messages_refused_total counter\n"
    "pcsig_messages_refused_total 1\n"
    "# HELP pcsig_messages_dropped_total Accepted messages dropped because their target left first.\n"
    "# TYPE pcsig_messages_dropped_total counter\n"
    "pcsig_messages_dropped_total 0\n"
    "# HELP pcsig_member_timeouts_total Members removed after --member-timeout without a /wait.\n"
    "# TYPE pcsig_member_timeouts_total counter\n"
    "pcsig_member_timeouts_total 3\n"
    "# HELP pcsig_wait_timeouts_total Parked /wait requests answered empty after --wait-timeout.\n"
    "# TYPE pcsig_wait_timeouts_total counter\n"
    "pcsig_wait_timeouts_total 8\n"
    "# HELP pcsig_connections_total Connections accepted and served, every listener.\n"
    "# TYPE pcsig_connections_total counter\n"
    "pcsig_connections_total 77\n"
    "# HELP pcsig_output_closed_total Connections closed for leaving answers unread while "
    "--max-total-output-bytes was exceeded (the slowest first).\n"
    "# TYPE pcsig_output_closed_total counter\n"
    "pcsig_output_closed_total 13\n"
    "# HELP pcsig_connections_refused_total Connections or requests turned away by a limit, by reason.\n"
    "# TYPE pcsig_connections_refused_total counter\n"
    "pcsig_connections_refused_total{reason=\"max_connections\"} 6\n"
    "pcsig_connections_refused_total{reason=\"per_ip\"} 0\n"
    "pcsig_connections_refused_total{reason=\"rate_limit\"} 11\n"
    "# HELP pcsig_tls_handshakes_total TLS handshakes by result (0 without TLS).\n"
    "# TYPE pcsig_tls_handshakes_total counter\n"
    "pcsig_tls_handshakes_total{result=\"full\"} 4\n"
    "pcsig_tls_handshakes_total{result=\"resumed\"} 16\n"
    "pcsig_tls_handshakes_total{result=\"failed\"} 2\n"
    "# HELP pcsig_relay_latency_seconds Seconds from a message's acceptance to its write to the target's /wait.\n"
    "# TYPE pcsig_relay_latency_seconds histogram\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.0001\"} 1\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.00025\"} 1\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.0005\"} 1\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.001\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.0025\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.005\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.01\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.025\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.05\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.1\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.25\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"0.5\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"1\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"2.5\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"5\"} 3\n"
    "pcsig_relay_latency_seconds_bucket{le=\"10\"} 4\n"
    "pcsig_relay_latency_seconds_bucket{le=\"+Inf\"} 5\n"
    "pcsig_relay_latency_seconds_sum 12.001500\n"
    "pcsig_relay_latency_seconds_count 5\n";

static void test_known_snapshot_exact(void **state)
{
    (void)state;
    struct metrics_snapshot s;
    known_snapshot(&s);
    char *t = format(&s);
    if (strcmp(t, known_text) != 0) {
        /* Point at the first difference: the whole text is long. */
        size_t i = 0;
        while (t[i] && t[i] == known_text[i])
            i++;
        fail_msg("exposition differs at byte %zu:\n got: %.80s\nwant: %.80s", i, t + i,
                 known_text + i);
    }
    free(t);
}

/* Every sample's family has exactly one # HELP and one # TYPE, in that
 * order, before its first sample; families are not interleaved. */
static void test_help_and_type_for_every_family(void **state)
{
    (void)state;
    struct metrics_snapshot s;
    known_snapshot(&s);
    char *t = format(&s);
    char family[128] = "", typed[128] = "";
    size_t families = 0;
    char *save = NULL;
    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128], type[32];
        if (strncmp(line, STRLIT("# HELP ")) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s", name), 1);
            assert_string_not_equal(name, family); /* one HELP per family */
            snprintf(family, sizeof family, "%s", name);
            typed[0] = '\0';
            families++;
            continue;
        }
        if (strncmp(line, STRLIT("# TYPE ")) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s %31s", name, type), 2);
            assert_string_equal(name, family); /* TYPE right after its HELP */
            assert_true(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0 ||
                        strcmp(type, "histogram") == 0);
            assert_string_equal(typed, "");
            snprintf(typed, sizeof typed, "%s", type);
            continue;
        }
        assert_true(line[0] != '#');
        /* A sample belongs to the family just declared. */
        size_t flen = strlen(family);
        assert_true(flen > 0 && typed[0]);
        assert_memory_equal(line, family, flen);
        const char *rest = line + flen;
        if (strcmp(typed, "histogram") == 0 &&
            (strncmp(rest, STRLIT("_bucket{")) == 0 || strncmp(rest, STRLIT("_sum ")) == 0 ||
             strncmp(rest, STRLIT("_count ")) == 0))
            continue;
        assert_true(rest[0] == ' ' || rest[0] == '{');
    }
    assert_int_equal(families, 25);
    free(t);
}

static void test_label_escaping(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 256);
    static const char raw[] = "a\\b\"c\nd";
    assert_int_equal(metrics_escape_label(&b, raw, sizeof raw - 1), 0);
    char *t = text_of(&b);
    assert_string_equal(t, "a\\\\b\\\"c\\nd");
    free(t);

    /* Nothing to escape, and the empty value. */
    buf_reset(&b);
    assert_int_equal(metrics_escape_label(&b, STRLIT("0.1.0")), 0);
    assert_int_equal(metrics_escape_label(&b, "", 0), 0);
    t = text_of(&b);
    assert_string_equal(t, "0.1.0");
    free(t);

    /* Too little room: an error and nothing half-escaped left behind. */
    buf_t small;
    buf_init(&small, 4);
    assert_int_equal(buf_append(&small, STRLIT("x")), 0);
    assert_int_equal(metrics_escape_label(&small, raw, sizeof raw - 1), -E2BIG);
    assert_int_equal(small.len, 1);
    buf_free(&small);

    /* The version label of a real exposition goes through it. */
    struct metrics_snapshot s;
    known_snapshot(&s);
    s.version = "9\"\\\n";
    t = format(&s);
    assert_non_null(strstr(t, "\npcsig_build_info{version=\"9\\\"\\\\\\n\"} 1\n"));
    free(t);
    buf_free(&b);
}

/* The value of the sample line that starts with prefix, or -1. */
static long long value_of(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, prefix, n) == 0 && l[n] == ' ')
            return strtoll(l + n + 1, NULL, 10);
    }
    return -1;
}

static void test_histogram_from_observations(void **state)
{
    (void)state;
    struct metrics m;
    metrics_init(&m);
    metrics_observe_relay(&m, 0, 1);        /* le 0.0001 */
    metrics_observe_relay(&m, 100, 2);      /* the edge is inclusive: le 0.0001 */
    metrics_observe_relay(&m, 101, 3);      /* le 0.00025 */
    metrics_observe_relay(&m, 2500000, 4);  /* le 2.5 exactly */
    metrics_observe_relay(&m, 10000000, 5); /* le 10 exactly */
    metrics_observe_relay(&m, 10000001, 6); /* only +Inf */
    struct metrics_snapshot s;
    memset(&s, 0, sizeof s);
    metrics_read(&m, &s);
    assert_int_equal(s.messages_relayed, 6);
    assert_int_equal(s.relayed_bytes, 21);
    char *t = format(&s);
    static const struct {
        const char *le;
        long long want;
    } buckets[] = {
        {"0.0001", 2}, {"0.00025", 3}, {"0.0005", 3}, {"0.001", 3}, {"0.0025", 3},
        {"0.005", 3},  {"0.01", 3},    {"0.025", 3},  {"0.05", 3},  {"0.1", 3},
        {"0.25", 3},   {"0.5", 3},     {"1", 3},      {"2.5", 4},   {"5", 4},
        {"10", 5},     {"+Inf", 6},
    };
    long long prev = 0;
    for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; i++) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "pcsig_relay_latency_seconds_bucket{le=\"%s\"}",
                 buckets[i].le);
        long long v = value_of(t, prefix);
        assert_int_equal(v, buckets[i].want);
        assert_true(v >= prev); /* cumulative */
        prev = v;
    }
    assert_int_equal(value_of(t, "pcsig_relay_latency_seconds_count"), 6);
    /* 0 + 100 + 101 + 2500000 + 10000000 + 10000001 us */
    assert_non_null(strstr(t, "\npcsig_relay_latency_seconds_sum 22.500202\n"));
    /* +Inf comes last among the buckets, then _sum, then _count. */
    const char *inf = strstr(t, "_bucket{le=\"+Inf\"}");
    const char *sum = strstr(t, "pcsig_relay_latency_seconds_sum");
    const char *count = strstr(t, "pcsig_relay_latency_seconds_count");
    assert_true(inf && sum && count && inf < sum && sum < count);
    assert_null(strstr(inf, "_bucket{le=\"0"));
    free(t);
}

static void test_labels_of_paths_and_statuses(void **state)
{
    (void)state;
    assert_int_equal(metrics_path_of(false, STRLIT("/sign_in")), MET_PATH_SIGN_IN);
    assert_int_equal(metrics_path_of(false, STRLIT("/sign_out")), MET_PATH_SIGN_OUT);
    assert_int_equal(metrics_path_of(false, STRLIT("/wait")), MET_PATH_WAIT);
    assert_int_equal(metrics_path_of(false, STRLIT("/message")), MET_PATH_MESSAGE);
    assert_int_equal(metrics_path_of(false, STRLIT("/health")), MET_PATH_HEALTH);
    assert_int_equal(metrics_path_of(false, STRLIT("/metrics")), MET_PATH_METRICS);
    assert_int_equal(metrics_path_of(true, STRLIT("/sign_in")), MET_PATH_OPTIONS);
    assert_int_equal(metrics_path_of(false, STRLIT("/sign_in2")), MET_PATH_OTHER);
    assert_int_equal(metrics_path_of(false, STRLIT("/sign_i")), MET_PATH_OTHER);
    assert_int_equal(metrics_path_of(false, STRLIT("/WAIT")), MET_PATH_OTHER);
    assert_int_equal(metrics_path_of(false, STRLIT("/wait\0x")), MET_PATH_OTHER);
    assert_int_equal(metrics_path_of(false, NULL, 0), MET_PATH_OTHER);
    assert_int_equal(metrics_path_of(false, "", 0), MET_PATH_OTHER);

    static const int known[] = {200, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 501, 503};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        assert_int_equal(metrics_status_index(known[i]), i);
    assert_int_equal(metrics_status_index(0), MET_STATUS_COUNT - 1);
    assert_int_equal(metrics_status_index(418), MET_STATUS_COUNT - 1);
    assert_int_equal(metrics_status_index(-1), MET_STATUS_COUNT - 1);

    /* Counted, read, formatted: only the pairs seen appear. */
    struct metrics m;
    metrics_init(&m);
    metrics_count_request(&m, MET_PATH_HEALTH, 200);
    metrics_count_request(&m, MET_PATH_HEALTH, 503);
    metrics_count_request(&m, MET_PATH_HEALTH, 503);
    metrics_count_request(&m, MET_PATH_OPTIONS, 418);
    metrics_count_request(&m, (enum metrics_path)99, 200); /* out of range: other */
    metrics_count_refused(&m, MET_REFUSED_PER_IP);
    metrics_count_connection(&m);
    struct metrics_snapshot s;
    memset(&s, 0, sizeof s);
    metrics_read(&m, &s);
    char *t = format(&s);
    assert_int_equal(value_of(t, "pcsig_requests_total{path=\"health\",status=\"200\"}"), 1);
    assert_int_equal(value_of(t, "pcsig_requests_total{path=\"health\",status=\"503\"}"), 2);
    assert_int_equal(value_of(t, "pcsig_requests_total{path=\"options\",status=\"other\"}"), 1);
    assert_int_equal(value_of(t, "pcsig_requests_total{path=\"other\",status=\"200\"}"), 1);
    assert_int_equal(value_of(t, "pcsig_requests_total{path=\"wait\",status=\"200\"}"), -1);
    assert_int_equal(value_of(t, "pcsig_connections_refused_total{reason=\"per_ip\"}"), 1);
    assert_int_equal(value_of(t, "pcsig_connections_refused_total{reason=\"rate_limit\"}"), 0);
    assert_int_equal(value_of(t, "pcsig_connections_total"), 1);
    /* No version given: an empty label, still well-formed. */
    assert_non_null(strstr(t, "pcsig_build_info{version=\"\"} 1\n"));
    free(t);
}

#define THREADS 4
#define PER_THREAD 20000

static void *hammer(void *arg)
{
    struct metrics *m = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_count_request(m, MET_PATH_WAIT, 200);
        metrics_observe_relay(m, (uint64_t)i, 1);
    }
    return NULL;
}

/* Relaxed atomics still lose no increment. */
static void test_concurrent_counting(void **state)
{
    (void)state;
    struct metrics m;
    metrics_init(&m);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    struct metrics_snapshot s;
    memset(&s, 0, sizeof s);
    metrics_read(&m, &s);
    assert_int_equal(s.requests[MET_PATH_WAIT][metrics_status_index(200)], THREADS * PER_THREAD);
    assert_int_equal(s.messages_relayed, THREADS * PER_THREAD);
    uint64_t total = 0;
    for (size_t i = 0; i <= MET_LATENCY_BUCKETS; i++)
        total += s.latency[i];
    assert_int_equal(total, THREADS * PER_THREAD);
    assert_int_equal(s.latency_sum_us, (uint64_t)THREADS * PER_THREAD * (PER_THREAD - 1) / 2);
}

/* Too small a buffer: an error, and the buffer as it was. */
static void test_buffer_too_small(void **state)
{
    (void)state;
    struct metrics_snapshot s;
    known_snapshot(&s);
    size_t full = strlen(known_text);
    size_t sizes[] = {0, 1, 100, full / 2, full - 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        buf_t b;
        buf_init(&b, sizes[i] + 3);
        assert_int_equal(buf_append(&b, STRLIT("abc")), 0);
        assert_int_equal(metrics_format(&b, &s), -E2BIG);
        assert_int_equal(b.len, 3);
        buf_free(&b);
    }
    buf_t b;
    buf_init(&b, full);
    assert_int_equal(metrics_format(&b, &s), 0);
    assert_int_equal(b.len, full);
    buf_free(&b);
}

/* The process_* family: present only with has_process, in the standard
 * collector's names and units; process_max_fds only when known. */
static void test_process_family(void **state)
{
    (void)state;
    struct metrics_snapshot s;
    known_snapshot(&s);
    char *without = format(&s);
    assert_null(strstr(without, "process_resident_memory_bytes"));
    free(without);

    s.has_process = true;
    s.process_resident_bytes = 52428800;
    s.process_virtual_bytes = 184258560;
    s.process_cpu_us = 12000345;
    s.process_open_fds = 10042;
    s.process_max_fds = 20000;
    char *t = format(&s);
    static const char *const want[] = {
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 52428800\n",
        "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes 184258560\n",
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.000345\n",
        "# TYPE process_open_fds gauge\nprocess_open_fds 10042\n",
        "# TYPE process_max_fds gauge\nprocess_max_fds 20000\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(t, want[i]))
            fail_msg("missing:\n%s\nin:\n%s", want[i], t);
    free(t);

    s.process_max_fds = 0; /* unlimited or unknown: no sample rather than 0 */
    t = format(&s);
    assert_null(strstr(t, "process_max_fds"));
    assert_non_null(strstr(t, "process_open_fds 10042\n"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_snapshot_exact),
        cmocka_unit_test(test_help_and_type_for_every_family),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_histogram_from_observations),
        cmocka_unit_test(test_labels_of_paths_and_statuses),
        cmocka_unit_test(test_concurrent_counting),
        cmocka_unit_test(test_buffer_too_small),
        cmocka_unit_test(test_process_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
