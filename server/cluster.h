/*
 * cluster: several pcsig-server instances sharing one Redis act as one
 * server (--cluster redis://HOST:PORT[/DB]). Members, their queues, ids,
 * timeouts and leases live in Redis; each instance parks the /waits it
 * holds on local shadows in its registry. See the DESIGN comment in
 * cluster.c. Every function is thread-safe; the ones that talk to Redis
 * block for at most one round trip (bounded by a timeout) and return -EIO
 * at once while Redis is unreachable (the caller answers 503).
 */
#ifndef PCSIG_CLUSTER_H
#define PCSIG_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "registry.h"

struct cluster;

/* cluster_wait's outcomes beside REG_WAIT_PARKED / REG_WAIT_ITEM. */
#define CLUSTER_WAIT_GONE 3      /* the member left while waiting: *item is its leave line */
#define CLUSTER_WAIT_DISPLACED 4 /* a newer /wait (any instance) took over: 409 */

/* Set up the backend for cfg->cluster (cfg must outlive it), with reg for
 * the local shadows; name is the instance name when cfg->instance_name is
 * NULL. Redis need not be reachable yet (the instance starts degraded and
 * reconnects). 0, -EINVAL (bad URL or password file, logged), -ENOMEM. */
int cluster_create(const struct server_config *cfg, registry_t *reg, const char *name,
                   struct cluster **out);
/* Stop the threads, close every connection. NULL-safe. */
void cluster_destroy(struct cluster *c);

/* Was the last exchange with Redis a success? */
bool cluster_is_up(struct cluster *c);
/* The metric lines of the cluster (pcsig_cluster_*). 0 or a buf error. */
int cluster_metrics_append(struct cluster *c, buf_t *out);

/* As reg_sign_in, in Redis; also fills token (secure ids). 0, -EUSERS,
 * -E2BIG, -ENOMEM, -EIO. */
int cluster_sign_in(struct cluster *c, const char *raw_name, size_t name_len, buf_t *list,
                    uint64_t *id, uint8_t token[REG_TOKEN_BYTES]);
/* As reg_check_token: 0, -ENOENT, -EACCES, -EIO. */
int cluster_check_token(struct cluster *c, uint64_t id, const uint8_t *token, size_t len);
/* As reg_sign_out / reg_touch: 0, -ENOENT, -EIO. */
int cluster_sign_out(struct cluster *c, uint64_t id);
int cluster_touch(struct cluster *c, uint64_t id);
/* As reg_send: 0, -ENOENT, -ESRCH, -ENOSPC, -ENOMEM, -EIO. */
int cluster_send(struct cluster *c, uint64_t from, uint64_t to, const char *ctype,
                 size_t ctype_len, bool has_ctype, const void *body, size_t body_len);
/*
 * A /wait for member id: *gen 0 for a new /wait (set to its lease), its
 * lease for a fetch again after REG_WAKE_POLL; batch: it asked for batched
 * answers (then *item may be a chain of the items that fit in
 * --max-body-bytes). Returns REG_WAIT_ITEM (*item
 * is the caller's; the wait is over), REG_WAIT_PARKED (w parked locally),
 * CLUSTER_WAIT_GONE (*item: own leave line, may be NULL),
 * CLUSTER_WAIT_DISPLACED, -ENOENT, -ESHUTDOWN, -EIO, -ENOMEM.
 */
int cluster_wait(struct cluster *c, uint64_t id, uint64_t *gen, bool batch,
                 struct reg_waiter *w, reg_item_t **item);
/* The wait with lease gen ended without an item (idle, hang-up, shutdown):
 * the member's timeout clock starts, unless a newer wait holds it. */
void cluster_release(struct cluster *c, uint64_t id, uint64_t gen);
/* Delivery of chain (oldest first) failed: back to the head of the queue in
 * Redis, in order (dropped if the member is gone). Takes ownership. */
void cluster_requeue(struct cluster *c, uint64_t id, reg_item_t *chain);

#endif
