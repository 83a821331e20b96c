/*
 * router: maps one complete request to its handler and writes the answer
 * into the session's output buffer. The one place where registry errors
 * become HTTP statuses.
 */
#ifndef PCSIG_ROUTER_H
#define PCSIG_ROUTER_H

#include <stdint.h>

#include "http.h"

struct session;

enum route_outcome {
    ROUTE_RESPONDED, /* the answer is in s->out */
    ROUTE_WAIT,      /* a valid /wait for *wait_member: the caller parks it */
};

/* Called by the session's RUNNING owner; body has req->content_length bytes. */
enum route_outcome router_dispatch(struct session *s, const http_request_t *req,
                                   const char *body, uint64_t *wait_member);

/* Answers shared with the session (parked /wait outcomes). 0 or buf error. */
int router_answer_sorry(struct session *s, bool keep_alive);

#endif
