/*
 * server_threads: what the files of the server's threads share, private to
 * them (acceptor.c, poller.c, workers.c, reaper.c, and server.c for the
 * lifecycle). Lock order (outer first): registry -> work queue;
 * sessions -> work queue. No other lock is taken while one is held.
 */
#ifndef PCSIG_SERVER_THREADS_H
#define PCSIG_SERVER_THREADS_H

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "server.h"

/* Thread bodies, started by server_start (arg: the struct server). */
void *acceptor_main(void *arg);
void *poller_main(void *arg);
void *worker_main(void *arg);
void *reaper_main(void *arg);

/* Free the closed sessions no worker still holds (the poller, between two
 * epoll batches; server_stop, once every other thread has ended). */
void server_free_graveyard(struct server *srv);

static inline void eventfd_poke(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static inline void eventfd_drain(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

#endif
