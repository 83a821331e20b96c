/*
 * poller: one epoll set for every connection that must wait; a ready one
 * is claimed and queued for a worker (or, for a plain connection whose
 * first request only now arrived, served here). Closed sessions wait in
 * the graveyard until no event of a batch can still point to them.
 */
#include "server_threads.h"

#include <pthread.h>
#include <sys/epoll.h>

#include "log.h"
#include "session.h"

#define POLLER_BATCH 256
#define GRAVE_POKE_AT 64 /* closed sessions that wake the poller to free them */

void server_bury(struct server *srv, struct session *s)
{
    /* The poller frees the dead at its next pass anyway (at least once a
     * second): wake it only when enough have piled up, not for each one. */
    pthread_mutex_lock(&srv->grave_lock);
    s->grave_next = srv->grave;
    srv->grave = s;
    bool poke = ++srv->grave_count == GRAVE_POKE_AT;
    pthread_mutex_unlock(&srv->grave_lock);
    if (poke)
        eventfd_poke(srv->poller_wake_fd);
}

void server_free_graveyard(struct server *srv)
{
    pthread_mutex_lock(&srv->grave_lock);
    struct session *s = srv->grave;
    srv->grave = NULL;
    srv->grave_count = 0;
    pthread_mutex_unlock(&srv->grave_lock);
    struct session *later = NULL;
    while (s) {
        struct session *next = s->grave_next;
        if (session_pinned(s)) {
            /* A worker is still re-checking it: free it on a later pass
             * (the poller passes here at least once a second). */
            s->grave_next = later;
            later = s;
        } else {
            session_free(s);
        }
        s = next;
    }
    if (later) {
        pthread_mutex_lock(&srv->grave_lock);
        struct session *tail = later;
        while (tail->grave_next)
            tail = tail->grave_next;
        tail->grave_next = srv->grave;
        srv->grave = later;
        pthread_mutex_unlock(&srv->grave_lock);
    }
}

void *poller_main(void *arg)
{
    struct server *srv = arg;
    log_set_thread_role("poller");
    struct epoll_event evs[POLLER_BATCH];
    while (!atomic_load(&srv->poller_stop)) {
        int n = epoll_wait(srv->epfd, evs, POLLER_BATCH, 1000);
        if (n < 0 && errno != EINTR) {
            log_errno(LOG_ERROR, errno, "epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct session *s = evs[i].data.ptr;
            if (!s) {
                eventfd_drain(srv->poller_wake_fd);
                continue;
            }
            if (!session_claim(s, SESSION_WAKE_IO, true))
                continue;
            if (session_first_plain_request(s))
                session_run_here(s); /* see session_first_plain_request */
            else
                server_schedule(srv, s);
        }
        /* Only now, with no event of this batch left in hand, free the dead. */
        server_free_graveyard(srv);
    }
    return NULL;
}
