/* clock: monotonic time for every timeout in pcsig. Thread-safe. */
#ifndef PCSIG_CLOCK_H
#define PCSIG_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC (arbitrary origin, never jumps). */
uint64_t clock_now_ms(void);
/* Microseconds on the same clock (clock_now_us() / 1000 == clock_now_ms()),
 * for durations finer than a millisecond: latencies, access-log timings. */
uint64_t clock_now_us(void);
/* Seconds since the Unix epoch on the wall clock: only for reporting when
 * something happened (never for measuring how long it took). */
uint64_t clock_wall_s(void);
/* Absolute CLOCK_MONOTONIC timespec ms from now, for pthread_cond_timedwait
 * on a condition variable created with clock_cond_init. */
struct timespec clock_deadline_in(uint64_t ms);

#include <pthread.h>
/* Initialise a condition variable that waits on CLOCK_MONOTONIC. 0 or -errno. */
int clock_cond_init(pthread_cond_t *cond);

#endif
