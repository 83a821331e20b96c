/*
 * server: the process-wide state of pcsig-server, in one named place, and
 * the threads that run it:
 *
 *   acceptor   accepts, enforces --max-connections; serves a plain
 *              connection's first request itself, hands TLS and what
 *              must wait to the poller
 *   poller     epoll: turns "readable/writable/hung up" into work items
 *   workers    read, parse, route and write; never block on a socket
 *   reaper     member and wait timeouts, request/idle deadlines
 *   main       flags, then sigwait() for SIGINT/SIGTERM, then the drain
 *
 * Sessions (one per connection) move between these owners; see session.h.
 *
 * This is the public side, for main.c: the lifecycle of one server.
 * struct server is defined in server_threads.h, private to the files that
 * run it (tools/check-layers.sh keeps it so); every other module gets what
 * it needs passed to it (a config, the registry, a struct access_log, a
 * metrics snapshot callback), never the whole server.
 */
#ifndef PCSIG_SERVER_H
#define PCSIG_SERVER_H

#include <stdbool.h>

struct server;
struct server_config;

/* A server not yet started. NULL when out of memory. Owned by the caller:
 * server_free it (after server_stop when it was started). */
struct server *server_new(void);
/* Create listeners and every thread. 0, or -errno with everything undone. */
int server_start(struct server *srv, const struct server_config *cfg);
/* SIGHUP: re-read the TLS certificate and key (the old ones stay on failure). */
void server_reload(struct server *srv);
/* The cause given to server_request_quit (server_threads.h), e.g.
 * "GET /quit from 127.0.0.1:5000", or NULL when none was. */
const char *server_quit_reason(struct server *srv);
/* Graceful stop: stop accepting, answer parked waits, flush, join all threads,
 * close every socket and free everything but srv itself. */
void server_stop(struct server *srv);
/* The acceptor gave up (--accept-give-up): main exits with an error so that
 * a supervisor restarts it. */
bool server_failed(struct server *srv);
/* Free srv (stopped, or never started). NULL: nothing. */
void server_free(struct server *srv);

#endif
