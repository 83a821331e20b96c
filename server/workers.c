/*
 * workers: the work queue (one mutex and condition variable) and the
 * worker threads that run the sessions queued on it: TLS, keep-alive
 * connections, parked waits woken by others, timeouts.
 */
#include "server_threads.h"

#include <pthread.h>

#include "log.h"
#include "session.h"

void server_schedule(struct server *srv, struct session *s)
{
    pthread_mutex_lock(&srv->wq_lock);
    s->wq_next = NULL;
    if (srv->wq_tail)
        srv->wq_tail->wq_next = s;
    else
        srv->wq_head = s;
    srv->wq_tail = s;
    atomic_fetch_add_explicit(&srv->wq_depth, 1, memory_order_relaxed);
    pthread_cond_signal(&srv->wq_cond);
    pthread_mutex_unlock(&srv->wq_lock);
}

void *worker_main(void *arg)
{
    struct server *srv = arg;
    log_set_thread_role("worker");
    for (;;) {
        pthread_mutex_lock(&srv->wq_lock);
        while (!srv->wq_head && !srv->wq_stop)
            pthread_cond_wait(&srv->wq_cond, &srv->wq_lock);
        struct session *s = srv->wq_head;
        if (!s) { /* stopping and nothing left */
            pthread_mutex_unlock(&srv->wq_lock);
            return NULL;
        }
        srv->wq_head = s->wq_next;
        if (!srv->wq_head)
            srv->wq_tail = NULL;
        atomic_fetch_sub_explicit(&srv->wq_depth, 1, memory_order_relaxed);
        pthread_mutex_unlock(&srv->wq_lock);
        session_run_here(s);
    }
}
