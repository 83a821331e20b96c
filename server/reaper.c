/*
 * reaper: member and wait timeouts (the registry's deadline heap), read
 * and idle deadlines of connections, the drain at SIGTERM, and output held
 * by clients that stopped reading.
 */
#include "server_threads.h"

#include <pthread.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "session.h"

#define REAPER_PERIOD_MS 250
#define REAPER_DRAIN_PERIOD_MS 50

static void sweep_sessions(struct server *srv, uint64_t now)
{
    bool draining = atomic_load(&srv->draining);
    pthread_mutex_lock(&srv->sessions_lock);
    for (struct session *s = srv->sessions; s; s = s->next) {
        uint64_t d = atomic_load(&s->deadline_ms);
        if ((draining || (d && now >= d)) && session_claim(s, SESSION_WAKE_TIMEOUT, false))
            server_schedule(srv, s);
    }
    pthread_mutex_unlock(&srv->sessions_lock);
}

struct stalled {
    struct session *s;
    uint64_t progress_ms;
};

static int by_progress(const void *a, const void *b)
{
    uint64_t x = ((const struct stalled *)a)->progress_ms;
    uint64_t y = ((const struct stalled *)b)->progress_ms;
    return x < y ? -1 : x > y;
}

/*
 * Bound the answer bytes held for clients that do not read them. Over
 * --max-total-output-bytes, the connections whose clients took nothing for
 * the longest are closed until the rest fits; after a big answer was
 * refused for want of room (out_pressure), until one more answer of
 * --max-output-bytes would fit. Only connections waiting to write are
 * candidates: one being served now, or parked, holds no stalled output.
 * Runs on the reaper; takes the sessions lock (then the work queue's).
 */
static void evict_stalled(struct server *srv)
{
    size_t cap = srv->cfg.max_total_output_bytes;
    bool pressure = atomic_exchange(&srv->out_pressure, false);
    size_t goal = pressure ? cap - srv->cfg.max_output_bytes : cap;
    size_t held = atomic_load(&srv->out_held);
    if (held <= goal)
        return;
    size_t excess = held - goal;
    pthread_mutex_lock(&srv->sessions_lock);
    /* Oldest progress first. Without memory for the sort, nothing this
     * tick: the reaper comes back within 250 ms. */
    struct stalled *v = calloc(srv->nsessions ? srv->nsessions : 1, sizeof *v);
    size_t n = 0;
    for (struct session *s = srv->sessions; s && v; s = s->next) {
        uint64_t p = atomic_load(&s->out_progress_ms);
        if (p && atomic_load(&s->out_counted) != 0)
            v[n++] = (struct stalled){.s = s, .progress_ms = p};
    }
    if (v)
        qsort(v, n, sizeof *v, by_progress);
    else if (pressure)
        atomic_store(&srv->out_pressure, true); /* still owed next tick */
    for (size_t i = 0; i < n && excess; i++) {
        size_t c = atomic_load(&v[i].s->out_counted);
        if (!session_claim(v[i].s, SESSION_WAKE_EVICT, false))
            continue; /* being served right now: not stalled */
        server_schedule(srv, v[i].s);
        excess = c >= excess ? 0 : excess - c;
    }
    pthread_mutex_unlock(&srv->sessions_lock);
    free(v);
}

void server_output_pressure(struct server *srv, bool make_room)
{
    if (make_room)
        atomic_store(&srv->out_pressure, true);
    pthread_mutex_lock(&srv->reaper_lock);
    pthread_cond_signal(&srv->reaper_cond);
    pthread_mutex_unlock(&srv->reaper_lock);
}

void *reaper_main(void *arg)
{
    struct server *srv = arg;
    log_set_thread_role("reaper");
    pthread_mutex_lock(&srv->reaper_lock);
    while (!srv->reaper_stop) {
        uint64_t period = atomic_load(&srv->draining) ? REAPER_DRAIN_PERIOD_MS : REAPER_PERIOD_MS;
        struct timespec until = clock_deadline_in(period);
        pthread_cond_timedwait(&srv->reaper_cond, &srv->reaper_lock, &until);
        if (srv->reaper_stop)
            break;
        pthread_mutex_unlock(&srv->reaper_lock);
        uint64_t now = clock_now_ms();
        reg_tick(srv->reg, now);
        sweep_sessions(srv, now);
        evict_stalled(srv);
        rl_sweep(srv->rl, now);
        pthread_mutex_lock(&srv->reaper_lock);
    }
    pthread_mutex_unlock(&srv->reaper_lock);
    return NULL;
}
