/*
 * ratelimit: a hash table of client addresses under one mutex. Entries exist
 * only while an address has open connections or a bucket still refilling,
 * so the table is bounded by the connection cap plus recent senders, and
 * the reaper sweeps the rest.
 */
#include "ratelimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RL_BUCKETS 4096 /* power of two */

struct rl_entry {
    struct rl_entry *next;
    rl_key_t key;
    size_t conns;
    double tokens;
    uint64_t refilled_ms;
};

struct ratelimit {
    pthread_mutex_t lock; /* guards buckets and every entry */
    size_t max_conns;
    double rate, burst;
    struct rl_entry *buckets[RL_BUCKETS];
};

void rl_key_from(rl_key_t *k, const struct sockaddr *sa)
{
    memset(k, 0, sizeof *k);
    if (sa->sa_family == AF_INET) {
        k->addr[10] = k->addr[11] = 0xff;
        memcpy(k->addr + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(k->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

ratelimit_t *rl_create(size_t max_conns, double rate_per_s)
{
    ratelimit_t *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    pthread_mutex_init(&rl->lock, NULL);
    rl->max_conns = max_conns;
    rl->rate = rate_per_s;
    rl->burst = 2 * rate_per_s < 1 ? 1 : 2 * rate_per_s;
    return rl;
}

void rl_destroy(ratelimit_t *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        struct rl_entry *e = rl->buckets[i];
        while (e) {
            struct rl_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static size_t slot_of(const rl_key_t *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof k->addr; i++)
        h = (h ^ k->addr[i]) * 1099511628211ull;
    return (size_t)h & (RL_BUCKETS - 1);
}

/* The entry for k, created (full bucket) when create is set. */
static struct rl_entry *lookup_locked(ratelimit_t *rl, const rl_key_t *k, bool create,
                                      uint64_t now)
{
    size_t slot = slot_of(k);
    for (struct rl_entry *e = rl->buckets[slot]; e; e = e->next)
        if (memcmp(e->key.addr, k->addr, sizeof k->addr) == 0)
            return e;
    if (!create)
        return NULL;
    struct rl_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->key = *k;
    e->tokens = rl->burst;
    e->refilled_ms = now;
    e->next = rl->buckets[slot];
    rl->buckets[slot] = e;
    return e;
}

bool rl_conn_open(ratelimit_t *rl, const rl_key_t *k)
{
    if (!rl->max_conns)
        return true;
    pthread_mutex_lock(&rl->lock);
    struct rl_entry *e = lookup_locked(rl, k, true, 0);
    bool ok = !e || e->conns < rl->max_conns;
    if (e && ok)
        e->conns++;
    pthread_mutex_unlock(&rl->lock);
    return ok;
}

void rl_conn_close(ratelimit_t *rl, const rl_key_t *k)
{
    if (!rl->max_conns)
        return;
    pthread_mutex_lock(&rl->lock);
    struct rl_entry *e = lookup_locked(rl, k, false, 0);
    if (e && e->conns)
        e->conns--;
    pthread_mutex_unlock(&rl->lock);
}

static void refill(const ratelimit_t *rl, struct rl_entry *e, uint64_t now)
{
    if (now > e->refilled_ms) {
        e->tokens += rl->rate * (double)(now - e->refilled_ms) / 1000.0;
        if (e->tokens > rl->burst)
            e->tokens = rl->burst;
        e->refilled_ms = now;
    }
}

bool rl_request(ratelimit_t *rl, const rl_key_t *k, uint64_t now)
{
    if (rl->rate <= 0)
        return true;
    pthread_mutex_lock(&rl->lock);
    struct rl_entry *e = lookup_locked(rl, k, true, now);
    bool ok = true;
    if (e) {
        refill(rl, e, now);
        if (e->tokens >= 1.0)
            e->tokens -= 1.0;
        else
            ok = false;
    }
    pthread_mutex_unlock(&rl->lock);
    return ok;
}

void rl_sweep(ratelimit_t *rl, uint64_t now)
{
    pthread_mutex_lock(&rl->lock);
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        struct rl_entry **pp = &rl->buckets[i];
        while (*pp) {
            struct rl_entry *e = *pp;
            refill(rl, e, now);
            if (e->conns == 0 && e->tokens >= rl->burst) {
                *pp = e->next;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_mutex_unlock(&rl->lock);
}
