/*
 * ratelimit: per-client-address limits, so that one address cannot take all
 * connections or all request capacity: open connections per address
 * (--max-conns-per-ip) and a token bucket of requests per second per address
 * (--rate-limit, burst twice the rate). Thread-safe (one mutex).
 */
#ifndef PCSIG_RATELIMIT_H
#define PCSIG_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct ratelimit ratelimit_t;

/* An address as a fixed key (IPv4 as v4-mapped IPv6). */
typedef struct rl_key {
    uint8_t addr[16];
} rl_key_t;

void rl_key_from(rl_key_t *k, const struct sockaddr *sa);

/* max_conns 0: no connection limit; rate 0: no request rate limit.
 * NULL when out of memory. */
ratelimit_t *rl_create(size_t max_conns, double rate_per_s);
void rl_destroy(ratelimit_t *rl); /* NULL-safe */

/* A new connection from k: true (counted; call rl_conn_close later) or
 * false (over the limit, not counted). Out of memory counts as allowed. */
bool rl_conn_open(ratelimit_t *rl, const rl_key_t *k);
void rl_conn_close(ratelimit_t *rl, const rl_key_t *k);

/* One request from k at now (ms): true when within the rate. */
bool rl_request(ratelimit_t *rl, const rl_key_t *k, uint64_t now);

/* Forget addresses with no connection and a full bucket (reaper). */
void rl_sweep(ratelimit_t *rl, uint64_t now);

#endif
