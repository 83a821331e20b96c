/*
 * Unit tests of common/clock.c: the millisecond and microsecond readings
 * are CLOCK_MONOTONIC (bracketed by direct clock_gettime calls), never go
 * back, agree with each other and advance with real time; the wall clock
 * is the epoch time; deadlines are normalised monotonic timespecs; and a
 * condition variable from clock_cond_init really times out on the
 * monotonic clock (a CLOCK_REALTIME one would see a monotonic deadline as
 * decades past and return at once).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "clock.h"

#define SLACK_MS 5000 /* scheduling may delay a wake-up, never advance it */

static uint64_t mono_us(void)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void test_monotonic_source(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        uint64_t before = mono_us();
        uint64_t ms = clock_now_ms(), us = clock_now_us();
        uint64_t after = mono_us();
        assert_true(before / 1000 <= ms && ms <= after / 1000);
        assert_true(before <= us && us <= after);
        /* the same clock: us read after ms is never behind it */
        assert_true(us / 1000 >= ms);
    }
}

static void test_never_decreases(void **state)
{
    (void)state;
    uint64_t ms = clock_now_ms(), us = clock_now_us();
    for (int i = 0; i < 200000; i++) {
        uint64_t m = clock_now_ms(), u = clock_now_us();
        assert_true(m >= ms);
        assert_true(u >= us);
        ms = m;
        us = u;
    }
}

static void test_advances(void **state)
{
    (void)state;
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
    uint64_t ms = clock_now_ms(), us = clock_now_us();

    /* Not a synchronisation: the thing measured is time passing. */
    assert_int_equal(clock_nanosleep(CLOCK_MONOTONIC, 0, &pause, NULL), 0);
    uint64_t dms = clock_now_ms() - ms, dus = clock_now_us() - us;
    assert_true(dms >= 49 && dms <= 50 + SLACK_MS); /* 49: ms readings are floored */
    assert_true(dus >= 50000 && dus <= (50 + SLACK_MS) * 1000u);
}

static void test_wall(void **state)
{
    (void)state;
    time_t before = time(NULL);
    uint64_t wall = clock_wall_s();
    time_t after = time(NULL);

    assert_true(before > 1600000000); /* 2020: a sane epoch reading */
    assert_true((uint64_t)before <= wall && wall <= (uint64_t)after);
}

static void test_deadline_in(void **state)
{
    (void)state;
    static const uint64_t ms[] = {0, 1, 999, 1000, 1001, 1500, 1999, 2000, 86400000};

    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        /* try several starting points, so that some carry into tv_sec */
        for (int k = 0; k < 50; k++) {
            uint64_t before = mono_us();
            struct timespec d = clock_deadline_in(ms[i] + (uint64_t)k * 37);
            uint64_t after = mono_us();
            uint64_t at = (uint64_t)d.tv_sec * 1000000u + (uint64_t)d.tv_nsec / 1000u;
            uint64_t add = (ms[i] + (uint64_t)k * 37) * 1000u;

            assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
            assert_true(before + add <= at && at <= after + add);
        }
    }
}

static void test_cond_waits_on_monotonic(void **state)
{
    (void)state;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    int rc;

    assert_int_equal(clock_cond_init(&cv), 0);
    pthread_mutex_lock(&mu);
    uint64_t t0 = clock_now_ms();
    struct timespec d = clock_deadline_in(100);
    do /* a spurious wake-up is allowed; the deadline stays */
        rc = pthread_cond_timedwait(&cv, &mu, &d);
    while (rc == 0);
    uint64_t took = clock_now_ms() - t0;
    pthread_mutex_unlock(&mu);
    assert_int_equal(rc, ETIMEDOUT);
    if (took < 99 || took > 100 + SLACK_MS)
        fail_msg("a 100 ms timed wait took %llu ms", (unsigned long long)took);
    pthread_cond_destroy(&cv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic_source),
        cmocka_unit_test(test_never_decreases),
        cmocka_unit_test(test_advances),
        cmocka_unit_test(test_wall),
        cmocka_unit_test(test_deadline_in),
        cmocka_unit_test(test_cond_waits_on_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
