/*
 * cluster: several pcsig-server instances behind a load balancer act as
 * one server over one Redis (--cluster). No sticky sessions: any request
 * may land on any instance.
 *
 * DESIGN
 * Redis holds the truth; an instance holds only connections and, for the
 * /waits parked on it, a local shadow member in its registry (reg_adopt)
 * to park them on. Keys (prefix "pcsig:"):
 *   next_id          INCR: ids unique across the cluster, never reused
 *   members          ZSET id by id: ids grow with time, so this is join order
 *   m:<id>           HASH name, tok (hex, --secure-ids), qn/qb (queued
 *                    messages and bytes, for the caps), gen (lease counter),
 *                    lease "<instance> <gen>" while a /wait is parked
 *   q:<id>           LIST of items (cluster_keys.h encoding): messages and
 *                    join/leave notifications, in delivery order
 *   dl               ZSET id by deadline (ms, Redis TIME): members with no
 *                    parked wait; the member timeout
 *   parked:<inst>    SET of ids whose lease <inst> holds
 *   insts, alive:<inst>  instances, and a key each refreshes (PX) while alive
 *   ch:<inst>        pub/sub channel: "id id ..." to wake (poke) waits there
 * Every change is one Lua script (EVALSHA), so it is atomic with respect to
 * every other instance: a sign-in takes an id, answers the member list and
 * appends the join to every other member's queue in one step, so every
 * member hears every join and leave once, in the one order Redis ran the
 * scripts in; a send checks sender, target and the caps and queues in one
 * step (200 only once queued: nothing accepted is only in an instance's
 * memory); a wait takes the lease and pops the queue head in one step.
 * Waking: a script that queues for a member with a lease publishes its id
 * on the holder's channel; the holder's subscriber thread pokes the local
 * shadow (reg_poke), whose parked wait re-runs the wait script (a fetch).
 * A poke that comes before the wait is parked is remembered (reg_wait
 * returns REG_WAIT_POLL), so no wake-up is lost between fetch and park. An
 * item leaves Redis only in the script that hands it to a wait that will
 * write it at once; a failed write puts it back at the head (requeue).
 * Leases: a new /wait takes a new gen; a wait whose lease changed (a /wait
 * for the same member on another instance) learns it at its next fetch
 * (the new holder pokes the old one) and answers 409. Timeouts: any
 * instance's housekeeper removes members whose deadline in dl passed (the
 * script re-checks, so each is removed once), and clears the leases of
 * instances whose alive key expired (kill -9): their members' clocks start
 * and their waits reconnecting elsewhere carry on with the queue intact.
 * Joins and leaves are copied into each member's queue (O(members) per
 * join inside Redis): simple and totally ordered; the single-node
 * registry's shared log with cursors would be the next step at scale.
 * Faults: every Redis call has a timeout; a failed call frees its
 * connection, marks the cluster down (/health 503 "degraded", metric
 * pcsig_cluster_up 0) and the request gets 503; new connections are tried
 * with exponential backoff (100 ms to 5 s) by requests and by the
 * housekeeper (every 500 ms; an instance whose alive key, refreshed
 * then, lapses for --cluster-lease is dead). --cluster-timeout bounds
 * each Redis command. After the subscriber reconnects every local
 * wait fetches again (pokes sent meanwhile were lost).
 * Threads: workers use a pool of connections (one per call, under
 * pool_lock only to take or return one); the subscriber and the
 * housekeeper have their own. No lock is held across a Redis call.
 */
#include "cluster.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "cluster_keys.h"
#include "log.h"
#include "proto.h"

#define CONNECT_TIMEOUT_MS 500
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SUB_BACKOFF_MAX_MS 1000
#define HOUSEKEEP_EVERY_MS 500
#define REAP_BATCH 200       /* members one housekeeping pass may time out */
#define POOL_MAX 64          /* idle connections kept */
#define WAIT_FETCH_MAX 64    /* fetches of one wait before it parks regardless */
#define CLUSTER_BATCH_MAX_ITEMS 10000 /* records of one batched answer (as session.c) */

/* ---- the scripts --------------------------------------------------------- */

static const char lua_prelude[] =
    "local P = 'pcsig:'\n"
    "local function now_ms() local t = redis.call('TIME')\n"
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end\n"
    "local function lease_inst(l) return string.match(l, '^(.*) %d+$') end\n"
    "local function poke(by, inst, id) local l = by[inst]\n"
    "  if not l then l = {}; by[inst] = l end; l[#l + 1] = id end\n"
    "local function flush(by) for inst, ids in pairs(by) do\n"
    "  redis.call('PUBLISH', P .. 'ch:' .. inst, table.concat(ids, ' ')) end end\n"
    "local function note(subject, line)\n"
    "  return 'N ' .. subject .. ' 0 10 ' .. #line .. '\\ntext/plain' .. line end\n"
    /* Queue line for every member but subject; collect pokes. Returns the
     * others' sign-in lines when want_lines. */
    "local function broadcast(subject, line, by, want_lines)\n"
    "  local item = note(subject, line); local lines = {}\n"
    "  for _, mid in ipairs(redis.call('ZRANGE', P .. 'members', 0, -1)) do\n"
    "    if mid ~= subject then\n"
    "      local f = redis.call('HMGET', P .. 'm:' .. mid, 'name', 'lease')\n"
    "      if want_lines and f[1] then lines[#lines + 1] = f[1] .. ',' .. mid .. ',1\\n' end\n"
    "      redis.call('RPUSH', P .. 'q:' .. mid, item)\n"
    "      if f[2] then poke(by, lease_inst(f[2]), mid) end\n"
    "    end\n"
    "  end\n"
    "  return lines end\n"
    "local function remove(id, by)\n"
    "  local k = P .. 'm:' .. id\n"
    "  local f = redis.call('HMGET', k, 'name', 'lease')\n"
    "  if f[2] then local inst = lease_inst(f[2]); poke(by, inst, id)\n"
    "    redis.call('SREM', P .. 'parked:' .. inst, id) end\n"
    "  redis.call('DEL', k, P .. 'q:' .. id)\n"
    "  redis.call('ZREM', P .. 'members', id)\n"
    "  redis.call('ZREM', P .. 'dl', id)\n"
    "  broadcast(id, (f[1] or '') .. ',' .. id .. ',0\\n', by, false) end\n"
    "local function unqueue(k, item) if string.sub(item, 1, 1) == 'M' then\n"
    "  local bl = string.match(item, '^M %d+ %d+ [%d%-]+ (%d+)\\n')\n"
    "  redis.call('HINCRBY', k, 'qn', -1); redis.call('HINCRBY', k, 'qb', 0 - tonumber(bl)) end end\n";

enum script {
    S_SIGN_IN,
    S_SEND,
    S_WAIT,
    S_RELEASE,
    S_REQUEUE,
    S_SIGN_OUT,
    S_TOUCH,
    S_HOUSEKEEP,
    S_COUNT
};

/* ARGV of each is documented in its first line. */
static const char *const lua_body[S_COUNT] = {
    /* name, max_members, timeout_ms, token_hex -> {id, list} or {-1} */
    [S_SIGN_IN] =
        "if redis.call('ZCARD', P .. 'members') >= tonumber(ARGV[2]) then return {-1} end\n"
        "local n = redis.call('INCR', P .. 'next_id')\n"
        "if n > 2147483647 then return {-1} end\n"
        "local id = tostring(n)\n"
        "local name = ARGV[1]; if name == '' then name = 'peer_' .. id end\n"
        "local by = {}\n"
        "local lines = broadcast(id, name .. ',' .. id .. ',1\\n', by, true)\n"
        "redis.call('HSET', P .. 'm:' .. id, 'name', name, 'tok', ARGV[4], 'qn', 0, 'qb', 0, 'gen', 0)\n"
        "redis.call('ZADD', P .. 'members', n, id)\n"
        "redis.call('ZADD', P .. 'dl', now_ms() + tonumber(ARGV[3]), id)\n"
        "flush(by)\n"
        "return {n, name .. ',' .. id .. ',1\\n' .. table.concat(lines)}\n",
    /* from, to, item, body_len, max_msgs, max_bytes, timeout_ms -> 0, -1 sender, -2 target, -3 full */
    [S_SEND] =
        "local fk, tk = P .. 'm:' .. ARGV[1], P .. 'm:' .. ARGV[2]\n"
        "local f = redis.call('HMGET', fk, 'name', 'lease')\n"
        "if not f[1] then return -1 end\n"
        "local t = redis.call('HMGET', tk, 'qn', 'qb', 'lease')\n"
        "if not t[1] then return -2 end\n"
        "if not f[2] then redis.call('ZADD', P .. 'dl', now_ms() + tonumber(ARGV[7]), ARGV[1]) end\n"
        "if tonumber(t[1]) >= tonumber(ARGV[5]) or tonumber(t[2]) + tonumber(ARGV[4]) > tonumber(ARGV[6]) then return -3 end\n"
        "redis.call('RPUSH', P .. 'q:' .. ARGV[2], ARGV[3])\n"
        "redis.call('HINCRBY', tk, 'qn', 1); redis.call('HINCRBY', tk, 'qb', ARGV[4])\n"
        "if t[3] then redis.call('PUBLISH', P .. 'ch:' .. lease_inst(t[3]), ARGV[2]) end\n"
        "return 0\n",
    /* id, inst, gen (0: new wait), timeout_ms, max_items, budget -> {-1} gone,
     * {-2} displaced, {0, gen, name} parked, {1, gen, name, item, ...} */
    [S_WAIT] =
        "local id = ARGV[1]; local k = P .. 'm:' .. id\n"
        "local f = redis.call('HMGET', k, 'name', 'lease', 'gen')\n"
        "if not f[1] then return {-1} end\n"
        "local gen = ARGV[3]\n"
        "if gen == '0' then\n"
        "  gen = tostring(redis.call('HINCRBY', k, 'gen', 1))\n"
        "  if f[2] then local old = lease_inst(f[2])\n"
        "    redis.call('SREM', P .. 'parked:' .. old, id)\n"
        "    redis.call('PUBLISH', P .. 'ch:' .. old, id) end\n"
        /* A newer /wait took a gen since (its lease may be gone already,
         * answered at once): this one is displaced. */
        "elseif f[3] ~= gen or (f[2] and f[2] ~= ARGV[2] .. ' ' .. gen) then return {-2} end\n"
        "local q = P .. 'q:' .. id\n"
        "local item = redis.call('LPOP', q)\n"
        "if item then unqueue(k, item)\n"
        /* Batched waits: more items while they fit (cost: an upper bound
         * of what the answer's record of each takes). */
        "  local out = {1, gen, f[1], item}\n"
        "  local used, max, budget = #item + 64, tonumber(ARGV[5]), tonumber(ARGV[6])\n"
        "  while #out - 3 < max do\n"
        "    local nx = redis.call('LINDEX', q, 0)\n"
        "    if not nx or used + #nx + 64 > budget then break end\n"
        "    redis.call('LPOP', q); unqueue(k, nx); used = used + #nx + 64; out[#out + 1] = nx\n"
        "  end\n"
        "  redis.call('HDEL', k, 'lease'); redis.call('SREM', P .. 'parked:' .. ARGV[2], id)\n"
        "  redis.call('ZADD', P .. 'dl', now_ms() + tonumber(ARGV[4]), id)\n"
        "  return out end\n"
        "redis.call('HSET', k, 'lease', ARGV[2] .. ' ' .. gen)\n"
        "redis.call('SADD', P .. 'parked:' .. ARGV[2], id)\n"
        "redis.call('ZREM', P .. 'dl', id)\n"
        "return {0, gen, f[1]}\n",
    /* id, inst, gen, timeout_ms */
    [S_RELEASE] =
        "local k = P .. 'm:' .. ARGV[1]\n"
        "if redis.call('HGET', k, 'lease') ~= ARGV[2] .. ' ' .. ARGV[3] then return 0 end\n"
        "redis.call('HDEL', k, 'lease'); redis.call('SREM', P .. 'parked:' .. ARGV[2], ARGV[1])\n"
        "redis.call('ZADD', P .. 'dl', now_ms() + tonumber(ARGV[4]), ARGV[1])\n"
        "return 1\n",
    /* id, items oldest first... -> 1 requeued, 0 member gone */
    [S_REQUEUE] =
        "local k = P .. 'm:' .. ARGV[1]\n"
        "local l = redis.call('HGET', k, 'lease')\n"
        "if redis.call('EXISTS', k) == 0 then return 0 end\n"
        "for i = #ARGV, 2, -1 do local it = ARGV[i]\n"
        "  redis.call('LPUSH', P .. 'q:' .. ARGV[1], it)\n"
        "  if string.sub(it, 1, 1) == 'M' then\n"
        "    local bl = string.match(it, '^M %d+ %d+ [%d%-]+ (%d+)\\n')\n"
        "    redis.call('HINCRBY', k, 'qn', 1); redis.call('HINCRBY', k, 'qb', tonumber(bl)) end end\n"
        "if l then redis.call('PUBLISH', P .. 'ch:' .. lease_inst(l), ARGV[1]) end\n"
        "return 1\n",
    /* id -> 0, -1 unknown */
    [S_SIGN_OUT] =
        "if redis.call('EXISTS', P .. 'm:' .. ARGV[1]) == 0 then return -1 end\n"
        "local by = {}; remove(ARGV[1], by); flush(by); return 0\n",
    /* id, timeout_ms -> 0, -1 unknown */
    [S_TOUCH] =
        "local f = redis.call('HMGET', P .. 'm:' .. ARGV[1], 'name', 'lease')\n"
        "if not f[1] then return -1 end\n"
        "if not f[2] then redis.call('ZADD', P .. 'dl', now_ms() + tonumber(ARGV[2]), ARGV[1]) end\n"
        "return 0\n",
    /* inst, alive_ttl_ms, timeout_ms, batch, fresh (1: our earlier life is dead)
     * -> {members removed, 1 if our alive key was still there} */
    [S_HOUSEKEEP] =
        "local now = now_ms()\n"
        "local function bury(inst)\n"
        "  for _, id in ipairs(redis.call('SMEMBERS', P .. 'parked:' .. inst)) do\n"
        "    local k = P .. 'm:' .. id; local l = redis.call('HGET', k, 'lease')\n"
        "    if l and lease_inst(l) == inst then redis.call('HDEL', k, 'lease')\n"
        "      redis.call('ZADD', P .. 'dl', now + tonumber(ARGV[3]), id) end end\n"
        "  redis.call('DEL', P .. 'parked:' .. inst) end\n"
        "if ARGV[5] == '1' then bury(ARGV[1]) end\n"
        "local was = redis.call('EXISTS', P .. 'alive:' .. ARGV[1])\n"
        "redis.call('SET', P .. 'alive:' .. ARGV[1], '1', 'PX', ARGV[2])\n"
        "redis.call('SADD', P .. 'insts', ARGV[1])\n"
        "for _, inst in ipairs(redis.call('SMEMBERS', P .. 'insts')) do\n"
        "  if redis.call('EXISTS', P .. 'alive:' .. inst) == 0 then bury(inst)\n"
        "    redis.call('SREM', P .. 'insts', inst) end end\n"
        "local by = {}\n"
        "local due = redis.call('ZRANGEBYSCORE', P .. 'dl', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))\n"
        "for _, id in ipairs(due) do\n"
        "  if redis.call('EXISTS', P .. 'm:' .. id) == 1 then remove(id, by)\n"
        "  else redis.call('ZREM', P .. 'dl', id) end end\n"
        "flush(by)\n"
        "return {#due, was}\n",
};

/* ---- state ----------------------------------------------------------------- */

struct cluster {
    const struct server_config *cfg;
    registry_t *reg;
    struct ckey_url url;
    char *password; /* NULL: no AUTH */
    char *inst;     /* instance name */
    char *channel;  /* "pcsig:ch:<inst>" */
    char *script[S_COUNT];    /* prelude + body */
    char sha[S_COUNT][41];    /* of each script; "" until loaded (guarded by pool_lock) */

    pthread_mutex_t pool_lock;
    redisContext *pool[POOL_MAX]; /* idle connections; guarded by pool_lock */
    size_t npool;                 /* pool_lock */
    uint64_t next_try_ms;   /* no new connection before (while down); pool_lock */
    uint64_t backoff_ms;    /* pool_lock */
    atomic_int state;       /* CL_UNKNOWN (start), CL_DOWN, CL_UP */
    atomic_uint_least64_t reconnects; /* down -> up transitions */
    atomic_uint_least64_t errors;     /* failed Redis calls */
    atomic_uint_least64_t timeouts;   /* members timed out by our housekeeper */

    /* The subscriber and housekeeper threads: started by cluster_start and
     * joined by cluster_stop, both on the lifecycle thread (no lock). */
    pthread_t sub, hk;
    bool sub_started, hk_started;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond; /* CLOCK_MONOTONIC */
    bool stop;                /* stop_lock */
    redisContext *sub_ctx;    /* the subscriber's, for shutdown(); stop_lock */
};

/* ---- connections --------------------------------------------------------- */

enum { CL_UNKNOWN, CL_DOWN, CL_UP };

static void mark_down(struct cluster *c, const char *what, const char *why)
{
    atomic_fetch_add(&c->errors, 1);
    if (atomic_exchange(&c->state, CL_DOWN) != CL_DOWN) /* logged once per outage */
        log_event(LOG_WARN, "cluster_down", NULL, "cluster: Redis at %s:%u %s: %s; answering 503 "
                  "until it is back", c->url.host, (unsigned)c->url.port, what, why);
}

static void mark_up(struct cluster *c)
{
    int was = atomic_exchange(&c->state, CL_UP);
    if (was != CL_UP) {
        if (was == CL_DOWN)
            atomic_fetch_add(&c->reconnects, 1);
        log_event(LOG_INFO, "cluster_up", NULL, "cluster: connected to Redis at %s:%u as "
                  "instance '%s'", c->url.host, (unsigned)c->url.port, c->inst);
        /* Waits kept parked through the outage fetch what came meanwhile. */
        reg_poke_all(c->reg);
    }
}

static struct timeval tv_ms(uint64_t ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* A reply that is an error, or none: the connection is not to be trusted. */
static bool reply_failed(redisContext *ctx, redisReply *r)
{
    return !r || ctx->err || r->type == REDIS_REPLY_ERROR;
}

/* A new connection, authenticated and on the right database. NULL on
 * failure (logged through mark_down). Owned by the caller (redisFree). */
static redisContext *conn_open(struct cluster *c)
{
    redisContext *ctx = redisConnectWithTimeout(c->url.host, c->url.port, tv_ms(CONNECT_TIMEOUT_MS));
    if (!ctx || ctx->err) {
        mark_down(c, "unreachable", ctx ? ctx->errstr : "out of memory");
        if (ctx)
            redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv_ms(c->cfg->cluster_timeout_ms)); /* --cluster-timeout */
    redisEnableKeepAlive(ctx);
    if (c->password) {
        const char *argv[] = {"AUTH", c->password};
        size_t lens[] = {4, strlen(c->password)};
        redisReply *r = redisCommandArgv(ctx, 2, argv, lens);
        if (reply_failed(ctx, r)) {
            mark_down(c, "refused AUTH", r && r->type == REDIS_REPLY_ERROR ? r->str : ctx->errstr);
            goto fail_reply;
        }
        freeReplyObject(r);
    }
    if (c->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->url.db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        redisReply *r = redisCommandArgv(ctx, 2, argv, lens);
        if (reply_failed(ctx, r)) {
            mark_down(c, "refused SELECT", r && r->type == REDIS_REPLY_ERROR ? r->str : ctx->errstr);
            goto fail_reply;
        }
        freeReplyObject(r);
    }
    return ctx;
fail_reply:
    redisFree(ctx);
    return NULL;
}

/* A connection from the pool or a new one; NULL while Redis is down and the
 * backoff has not passed, or when connecting fails. */
static redisContext *conn_get(struct cluster *c)
{
    pthread_mutex_lock(&c->pool_lock);
    if (c->npool) {
        redisContext *ctx = c->pool[--c->npool];
        pthread_mutex_unlock(&c->pool_lock);
        return ctx;
    }
    uint64_t now = clock_now_ms();
    bool up = atomic_load(&c->state) == CL_UP;
    if (!up && now < c->next_try_ms) {
        pthread_mutex_unlock(&c->pool_lock);
        return NULL;
    }
    if (!up) /* one try per backoff period, whoever makes it */
        c->next_try_ms = now + c->backoff_ms;
    pthread_mutex_unlock(&c->pool_lock);
    redisContext *ctx = conn_open(c);
    pthread_mutex_lock(&c->pool_lock);
    if (ctx) {
        c->backoff_ms = BACKOFF_MIN_MS;
        c->next_try_ms = 0;
    } else {
        c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    }
    pthread_mutex_unlock(&c->pool_lock);
    return ctx;
}

/* Return a connection; a broken one is freed along with every idle one
 * (after a Redis restart they are all dead). */
static void conn_put(struct cluster *c, redisContext *ctx, bool broken)
{
    redisContext *drop[POOL_MAX + 1];
    size_t ndrop = 0;
    pthread_mutex_lock(&c->pool_lock);
    if (broken) {
        drop[ndrop++] = ctx;
        while (c->npool)
            drop[ndrop++] = c->pool[--c->npool];
        c->sha[0][0] = '\0'; /* scripts may be gone too: load again */
        for (int i = 0; i < S_COUNT; i++)
            c->sha[i][0] = '\0';
    } else if (c->npool < POOL_MAX) {
        c->pool[c->npool++] = ctx;
    } else {
        drop[ndrop++] = ctx;
    }
    pthread_mutex_unlock(&c->pool_lock);
    for (size_t i = 0; i < ndrop; i++)
        redisFree(drop[i]);
}

static redisReply *run_args(struct cluster *c, redisContext *ctx, enum script s, int nargs,
                            const char *const *args, const size_t *lens, bool *broken,
                            const char **argv, size_t *argl);

/*
 * Run script s with args (NUL-terminated strings unless lens given) on ctx:
 * EVALSHA, and EVAL when Redis does not know it (first use, or a restart).
 * Returns the reply (caller frees) or NULL with *broken telling whether the
 * connection is unusable. A script error (a bug) is logged.
 */
static redisReply *run_on(struct cluster *c, redisContext *ctx, enum script s, int nargs,
                          const char *const *args, const size_t *lens, bool *broken)
{
    const char *argv_small[3 + 16];
    size_t argl_small[3 + 16];
    const char **argv = argv_small;
    size_t *argl = argl_small;
    if (nargs > 16) { /* a requeued batch */
        argv = malloc((3 + (size_t)nargs) * sizeof *argv);
        argl = malloc((3 + (size_t)nargs) * sizeof *argl);
        if (!argv || !argl) {
            if (argv != argv_small)
                free(argv);
            if (argl != argl_small)
                free(argl);
            *broken = false;
            return NULL;
        }
    }
    redisReply *r = run_args(c, ctx, s, nargs, args, lens, broken, argv, argl);
    if (argv != argv_small) {
        free(argv);
        free(argl);
    }
    return r;
}

/* run_on's work, with argument arrays of 3 + nargs. */
static redisReply *run_args(struct cluster *c, redisContext *ctx, enum script s, int nargs,
                            const char *const *args, const size_t *lens, bool *broken,
                            const char **argv, size_t *argl)
{
    char sha[41];
    pthread_mutex_lock(&c->pool_lock);
    memcpy(sha, c->sha[s], sizeof sha);
    pthread_mutex_unlock(&c->pool_lock);
    for (int attempt = 0; attempt < 2; attempt++) {
        bool by_sha = attempt == 0 && sha[0];
        if (attempt == 0 && !by_sha)
            attempt = 1;
        argv[0] = by_sha ? "EVALSHA" : "EVAL";
        argl[0] = strlen(argv[0]);
        argv[1] = by_sha ? sha : c->script[s];
        argl[1] = strlen(argv[1]);
        argv[2] = "0";
        argl[2] = 1;
        for (int i = 0; i < nargs; i++) {
            argv[3 + i] = args[i];
            argl[3 + i] = lens ? lens[i] : strlen(args[i]);
        }
        redisReply *r = redisCommandArgv(ctx, 3 + nargs, argv, argl);
        if (!r || ctx->err) {
            mark_down(c, "failed", ctx->errstr[0] ? ctx->errstr : "no reply");
            freeReplyObject(r);
            *broken = true;
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR && by_sha && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR &&
            (strncmp(r->str, "LOADING", 7) == 0 || strncmp(r->str, "BUSY", 4) == 0 ||
             strncmp(r->str, "MASTERDOWN", 10) == 0)) {
            /* Up but not serving yet (loading its data after a restart): down. */
            mark_down(c, "is not ready", r->str);
            freeReplyObject(r);
            *broken = false;
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            /* OOM, or a bug of ours: the call failed. */
            log_event(LOG_ERROR, "cluster_error", NULL, "cluster: Redis refused a script: %s", r->str);
            atomic_fetch_add(&c->errors, 1);
            freeReplyObject(r);
            *broken = false;
            return NULL;
        }
        mark_up(c);
        if (!by_sha && !sha[0]) {
            /* EVAL cached it: later calls go by its SHA1. */
            redisReply *h = redisCommand(ctx, "SCRIPT LOAD %s", c->script[s]);
            if (h && h->type == REDIS_REPLY_STRING && h->len == 40) {
                pthread_mutex_lock(&c->pool_lock);
                memcpy(c->sha[s], h->str, 41);
                pthread_mutex_unlock(&c->pool_lock);
            }
            freeReplyObject(h);
        }
        return r;
    }
    *broken = false;
    return NULL;
}

/* run_on with a pooled connection. NULL: -EIO for the caller. */
static redisReply *run(struct cluster *c, enum script s, int nargs, const char *const *args,
                       const size_t *lens)
{
    redisContext *ctx = conn_get(c);
    if (!ctx)
        return NULL;
    bool broken = false;
    redisReply *r = run_on(c, ctx, s, nargs, args, lens, &broken);
    conn_put(c, ctx, broken);
    return r;
}

static long long reply_int(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1000;
}

/* ---- threads --------------------------------------------------------------- */

/* Sleep up to ms unless stopping; true when stopping. */
static bool nap(struct cluster *c, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->stop_lock);
    while (!c->stop && pthread_cond_timedwait(&c->stop_cond, &c->stop_lock, &ts) != ETIMEDOUT)
        ;
    bool stop = c->stop;
    pthread_mutex_unlock(&c->stop_lock);
    return stop;
}

static void poke_ids(struct cluster *c, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != ' ')
            j++;
        uint64_t id;
        if (proto_parse_id(p + i, j - i, &id) == 0)
            reg_poke(c->reg, id);
        i = j + 1;
    }
}

/* The subscriber: wake-ups for the waits parked here. */
static void *sub_main(void *arg)
{
    struct cluster *c = arg;
    log_set_thread_role("cluster-sub");
    uint64_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        redisContext *ctx = conn_open(c);
        if (ctx) {
            redisSetTimeout(ctx, (struct timeval){0, 0}); /* block: keep-alive finds a dead peer */
            pthread_mutex_lock(&c->stop_lock);
            bool stop = c->stop;
            if (!stop)
                c->sub_ctx = ctx;
            pthread_mutex_unlock(&c->stop_lock);
            if (stop) {
                redisFree(ctx);
                break;
            }
            const char *argv[] = {"SUBSCRIBE", c->channel};
            size_t lens[] = {9, strlen(c->channel)};
            redisReply *r = redisCommandArgv(ctx, 2, argv, lens);
            bool ok = !reply_failed(ctx, r);
            freeReplyObject(r);
            if (ok) {
                backoff = BACKOFF_MIN_MS;
                /* Pokes published while we were not listening are lost:
                 * before a reconnection, and before the first subscription
                 * too (the listener is open before this thread subscribes,
                 * so a wait may already be parked here). Every parked wait
                 * fetches again; with none parked this costs nothing. */
                reg_poke_all(c->reg);
            }
            while (ok) {
                void *v = NULL;
                if (redisGetReply(ctx, &v) != REDIS_OK || !v)
                    break;
                redisReply *m = v;
                if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                    m->element[2]->type == REDIS_REPLY_STRING)
                    poke_ids(c, m->element[2]->str, m->element[2]->len);
                freeReplyObject(m);
            }
            pthread_mutex_lock(&c->stop_lock);
            c->sub_ctx = NULL;
            bool stopping = c->stop;
            pthread_mutex_unlock(&c->stop_lock);
            if (!stopping)
                mark_down(c, "lost the subscription", ctx->errstr[0] ? ctx->errstr : "closed");
            redisFree(ctx);
            if (stopping)
                break;
        }
        if (nap(c, backoff))
            break;
        /* Capped lower than the pool's: while unsubscribed, waits parked
         * here hear of new items only at their next fetch. */
        backoff = backoff * 2 > SUB_BACKOFF_MAX_MS ? SUB_BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* The housekeeper: heartbeat, dead instances, member timeouts. */
static void *hk_main(void *arg)
{
    struct cluster *c = arg;
    log_set_thread_role("cluster-hk");
    bool fresh = true;
    char ttl[24], timeout[24], batch[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->cfg->cluster_lease_ms); /* --cluster-lease */
    snprintf(timeout, sizeof timeout, "%llu", (unsigned long long)c->cfg->member_timeout_ms);
    snprintf(batch, sizeof batch, "%u", (unsigned)REAP_BATCH);
    do {
        const char *args[] = {c->inst, ttl, timeout, batch, fresh ? "1" : "0"};
        redisReply *r = run(c, S_HOUSEKEEP, 5, args, NULL);
        if (r) {
            long long n = 0, was = 1;
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
                n = reply_int(r->element[0]);
                was = reply_int(r->element[1]);
            }
            /* Our alive key had expired (Redis was away, or we stalled, for
             * longer than its TTL): another instance may have taken our
             * leases as dead. Every wait parked here fetches again, which
             * takes its lease back (or learns it was displaced). */
            if (fresh && was == 1)
                log_event(LOG_WARN, "cluster_name", NULL, "cluster: instance name '%s' was "
                          "alive in Redis at start: another instance with this name (names "
                          "must be unique), or this one restarted within %llu ms", c->inst,
                          (unsigned long long)c->cfg->cluster_lease_ms);
            if (!fresh && was == 0) {
                log_event(LOG_WARN, "cluster_stale", NULL, "cluster: this instance was taken "
                          "for dead; its parked waits take their leases back");
                reg_poke_all(c->reg);
            }
            fresh = false;
            if (n > 0) {
                atomic_fetch_add(&c->timeouts, (uint64_t)n);
                log_event(LOG_DEBUG, "cluster_timeouts", NULL, "cluster: %lld member(s) timed out", n);
            }
            freeReplyObject(r);
            if (n >= REAP_BATCH)
                continue; /* more are due */
        }
    } while (!nap(c, HOUSEKEEP_EVERY_MS));
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* The first line of path (without its newline), malloc'd; NULL on error. */
static char *read_first_line(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n <= 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n == 0) {
        free(line);
        return NULL;
    }
    return line;
}

int cluster_create(const struct server_config *cfg, registry_t *reg, const char *name,
                   struct cluster **out)
{
    *out = NULL;
    struct cluster *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->cfg = cfg;
    c->reg = reg;
    const char *why = "";
    if (ckey_parse_url(cfg->cluster, &c->url, &why) < 0) {
        log_error("--cluster: %s", why);
        free(c);
        return -EINVAL;
    }
    pthread_mutex_init(&c->pool_lock, NULL);
    pthread_mutex_init(&c->stop_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->stop_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&c->state, CL_UNKNOWN);
    atomic_init(&c->reconnects, 0);
    atomic_init(&c->errors, 0);
    atomic_init(&c->timeouts, 0);
    c->backoff_ms = BACKOFF_MIN_MS;
    int err = -ENOMEM;
    if (cfg->cluster_password_file) {
        c->password = read_first_line(cfg->cluster_password_file);
        if (!c->password) {
            log_error("--cluster-password-file %s: cannot read a password from its first line",
                      cfg->cluster_password_file);
            err = -EINVAL;
            goto fail;
        }
    } else if (cfg->cluster_password && !(c->password = dup_str(cfg->cluster_password))) {
        goto fail;
    }
    c->inst = dup_str(cfg->instance_name ? cfg->instance_name : name);
    if (!c->inst)
        goto fail;
    size_t chlen = strlen(c->inst) + 16;
    if (!(c->channel = malloc(chlen)))
        goto fail;
    snprintf(c->channel, chlen, "pcsig:ch:%s", c->inst);
    for (int i = 0; i < S_COUNT; i++) {
        size_t n = sizeof lua_prelude + strlen(lua_body[i]);
        if (!(c->script[i] = malloc(n)))
            goto fail;
        memcpy(c->script[i], lua_prelude, sizeof lua_prelude - 1);
        memcpy(c->script[i] + sizeof lua_prelude - 1, lua_body[i], strlen(lua_body[i]) + 1);
    }
    int e;
    if ((e = pthread_create(&c->sub, NULL, sub_main, c)) != 0) {
        err = -e;
        goto fail;
    }
    c->sub_started = true;
    if ((e = pthread_create(&c->hk, NULL, hk_main, c)) != 0) {
        err = -e;
        goto fail;
    }
    c->hk_started = true;
    log_info("cluster: instance '%s' on Redis %s:%u db %d", c->inst, c->url.host,
             (unsigned)c->url.port, c->url.db);
    *out = c;
    return 0;
fail:
    cluster_destroy(c);
    return err;
}

void cluster_destroy(struct cluster *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->stop_lock);
    c->stop = true;
    if (c->sub_ctx)
        shutdown(c->sub_ctx->fd, SHUT_RDWR); /* ends its blocking read */
    pthread_cond_broadcast(&c->stop_cond);
    pthread_mutex_unlock(&c->stop_lock);
    if (c->sub_started)
        pthread_join(c->sub, NULL);
    if (c->hk_started)
        pthread_join(c->hk, NULL);
    while (c->npool)
        redisFree(c->pool[--c->npool]);
    for (int i = 0; i < S_COUNT; i++)
        free(c->script[i]);
    if (c->password) {
        explicit_bzero(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->inst);
    free(c->channel);
    pthread_cond_destroy(&c->stop_cond);
    pthread_mutex_destroy(&c->stop_lock);
    pthread_mutex_destroy(&c->pool_lock);
    free(c);
}

bool cluster_is_up(struct cluster *c)
{
    return atomic_load(&c->state) == CL_UP;
}

int cluster_metrics_append(struct cluster *c, buf_t *out)
{
    return buf_printf(out,
                      "# HELP pcsig_cluster_up 1 while the last exchange with the cluster's Redis succeeded\n"
                      "# TYPE pcsig_cluster_up gauge\npcsig_cluster_up %d\n"
                      "# HELP pcsig_cluster_reconnects_total Times Redis was reached again after an outage\n"
                      "# TYPE pcsig_cluster_reconnects_total counter\npcsig_cluster_reconnects_total %llu\n"
                      "# HELP pcsig_cluster_errors_total Redis calls that failed\n"
                      "# TYPE pcsig_cluster_errors_total counter\npcsig_cluster_errors_total %llu\n"
                      "# HELP pcsig_cluster_timeouts_total Members this instance timed out cluster-wide\n"
                      "# TYPE pcsig_cluster_timeouts_total counter\npcsig_cluster_timeouts_total %llu\n",
                      atomic_load(&c->state) == CL_UP ? 1 : 0,
                      (unsigned long long)atomic_load(&c->reconnects),
                      (unsigned long long)atomic_load(&c->errors),
                      (unsigned long long)atomic_load(&c->timeouts));
}

/* ---- the protocol's operations ------------------------------------------- */

static void u64_str(char out[24], uint64_t v)
{
    snprintf(out, 24, "%llu", (unsigned long long)v);
}

int cluster_sign_in(struct cluster *c, const char *raw_name, size_t name_len, buf_t *list,
                    uint64_t *id, uint8_t token[REG_TOKEN_BYTES])
{
    char name[PROTO_MAX_NAME + 32];
    size_t n = proto_name_sanitize(raw_name, name_len, name);
    char hex[2 * REG_TOKEN_BYTES + 1] = "";
    if (c->cfg->secure_ids) {
        if (getrandom(token, REG_TOKEN_BYTES, 0) != REG_TOKEN_BYTES)
            return -EIO;
        proto_hex_encode(token, REG_TOKEN_BYTES, hex);
    }
    char maxm[24], timeout[24];
    u64_str(maxm, c->cfg->max_members);
    u64_str(timeout, c->cfg->member_timeout_ms);
    const char *args[] = {name, maxm, timeout, hex};
    size_t lens[] = {n, strlen(maxm), strlen(timeout), strlen(hex)};
    redisReply *r = run(c, S_SIGN_IN, 4, args, lens);
    explicit_bzero(hex, sizeof hex);
    if (!r)
        return -EIO;
    int rc = -EIO;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        if (r->element[0]->integer < 0) {
            rc = -EUSERS;
        } else if (r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING) {
            *id = (uint64_t)r->element[0]->integer;
            rc = buf_append(list, r->element[1]->str, r->element[1]->len);
            if (rc < 0)
                cluster_sign_out(c, *id); /* it must not stay without knowing its id */
        }
    }
    freeReplyObject(r);
    return rc;
}

int cluster_check_token(struct cluster *c, uint64_t id, const uint8_t *token, size_t len)
{
    redisContext *ctx = conn_get(c);
    if (!ctx)
        return -EIO;
    redisReply *r = redisCommand(ctx, "HGET pcsig:m:%llu tok", (unsigned long long)id);
    bool broken = !r || ctx->err;
    if (broken) {
        mark_down(c, "failed", ctx->errstr[0] ? ctx->errstr : "no reply");
        freeReplyObject(r);
        conn_put(c, ctx, true);
        return -EIO;
    }
    conn_put(c, ctx, false);
    int rc;
    uint8_t want[REG_TOKEN_BYTES];
    if (r->type != REDIS_REPLY_STRING)
        rc = -ENOENT;
    else if (proto_hex_decode(r->str, r->len, want, sizeof want) < 0)
        rc = -EACCES;
    else {
        /* Constant time in the token's bytes. */
        unsigned char diff = len == sizeof want ? 0 : 1;
        for (size_t i = 0; i < sizeof want; i++)
            diff |= (unsigned char)(want[i] ^ (i < len ? token[i] : 0));
        rc = diff == 0 ? 0 : -EACCES;
    }
    explicit_bzero(want, sizeof want);
    if (r->type == REDIS_REPLY_STRING)
        explicit_bzero(r->str, r->len);
    freeReplyObject(r);
    return rc;
}

int cluster_sign_out(struct cluster *c, uint64_t id)
{
    char ids[24];
    u64_str(ids, id);
    const char *args[] = {ids};
    redisReply *r = run(c, S_SIGN_OUT, 1, args, NULL);
    if (!r)
        return -EIO;
    long long v = reply_int(r);
    freeReplyObject(r);
    return v == 0 ? 0 : -ENOENT;
}

int cluster_touch(struct cluster *c, uint64_t id)
{
    char ids[24], timeout[24];
    u64_str(ids, id);
    u64_str(timeout, c->cfg->member_timeout_ms);
    const char *args[] = {ids, timeout};
    redisReply *r = run(c, S_TOUCH, 2, args, NULL);
    if (!r)
        return -EIO;
    long long v = reply_int(r);
    freeReplyObject(r);
    return v == 0 ? 0 : -ENOENT;
}

int cluster_send(struct cluster *c, uint64_t from, uint64_t to, const char *ctype,
                 size_t ctype_len, bool has_ctype, const void *body, size_t body_len)
{
    buf_t item;
    buf_init(&item, SIZE_MAX);
    struct ckey_item it = {.is_message = true, .pragma = from, .accepted_us = clock_now_us(),
                           .has_ctype = has_ctype, .ctype = ctype, .ctype_len = ctype_len,
                           .body = body, .body_len = body_len};
    if (ckey_item_encode(&item, &it) < 0) {
        buf_free(&item);
        return -ENOMEM;
    }
    char f[24], t[24], bl[24], maxn[24], maxb[24], timeout[24];
    u64_str(f, from);
    u64_str(t, to);
    u64_str(bl, body_len);
    u64_str(maxn, c->cfg->queue_max_msgs);
    u64_str(maxb, c->cfg->queue_max_bytes);
    u64_str(timeout, c->cfg->member_timeout_ms);
    const char *args[] = {f, t, item.data, bl, maxn, maxb, timeout};
    size_t lens[] = {strlen(f), strlen(t), item.len, strlen(bl), strlen(maxn), strlen(maxb),
                     strlen(timeout)};
    redisReply *r = run(c, S_SEND, 7, args, lens);
    buf_free(&item);
    if (!r)
        return -EIO;
    long long v = reply_int(r);
    freeReplyObject(r);
    switch (v) {
    case 0:
        return 0;
    case -1:
        return -ENOENT;
    case -2:
        return -ESRCH;
    case -3:
        return -ENOSPC;
    default:
        return -EIO;
    }
}

/* The item of a wait script's answer as a registry item; NULL when out of
 * memory or not decodable (logged: a bug or a foreign writer). */
static reg_item_t *item_of(const redisReply *s, uint64_t recipient)
{
    struct ckey_item it;
    if (s->type != REDIS_REPLY_STRING || ckey_item_decode(s->str, s->len, &it) < 0) {
        log_event(LOG_ERROR, "cluster_error", NULL, "cluster: undecodable item dropped");
        return NULL;
    }
    /* A notification is answered with the recipient's own id (protocol.md
     * Part A); the stored pragma is its subject. */
    return reg_item_make(it.is_message, it.is_message ? it.pragma : recipient, it.accepted_us,
                         it.ctype, it.ctype_len, it.has_ctype, it.body, it.body_len);
}

int cluster_wait(struct cluster *c, uint64_t id, uint64_t *gen, bool batch,
                 struct reg_waiter *w, reg_item_t **item)
{
    char ids[24], timeout[24], maxn[24], budget[24];
    u64_str(ids, id);
    u64_str(timeout, c->cfg->member_timeout_ms);
    u64_str(maxn, batch ? CLUSTER_BATCH_MAX_ITEMS : 1);
    u64_str(budget, c->cfg->max_body);
    /* The shadow exists before the fetch, so a poke between the fetch and
     * the park is remembered (see DESIGN). */
    if (reg_adopt(c->reg, id, NULL, 0, clock_now_ms()) < 0)
        return -ENOMEM;
    for (int round = 0;; round++) {
        if (round > 2 * WAIT_FETCH_MAX)
            return -EIO; /* never spin: something keeps undoing our shadow */
        char g[24];
        u64_str(g, *gen);
        const char *args[] = {ids, c->inst, g, timeout, maxn, budget};
        redisReply *r = run(c, S_WAIT, 6, args, NULL);
        if (!r && *gen != 0) {
            /* A parked wait woken to fetch while Redis is away stays parked
             * (its lease is in Redis as it was); mark_up wakes it again. */
            int rc = reg_wait(c->reg, id, w, clock_now_ms(), item);
            return rc == REG_WAIT_POLL ? -EIO : rc;
        }
        if (!r)
            return -EIO;
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
            r->element[0]->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(r);
            return -EIO;
        }
        long long code = r->element[0]->integer;
        if (code == -1) {
            freeReplyObject(r);
            reg_item_t *own = reg_drop(c->reg, id, clock_now_ms());
            if (*gen == 0) {
                reg_item_free_chain(own);
                return -ENOENT;
            }
            *item = own;
            return CLUSTER_WAIT_GONE;
        }
        if (code == -2) {
            freeReplyObject(r);
            return CLUSTER_WAIT_DISPLACED;
        }
        if (r->elements < 3 || r->element[1]->type != REDIS_REPLY_STRING ||
            r->element[2]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            return -EIO;
        }
        uint64_t newgen = 0;
        proto_parse_u64(r->element[1]->str, r->element[1]->len, &newgen);
        *gen = newgen;
        reg_adopt(c->reg, id, r->element[2]->str, r->element[2]->len, clock_now_ms());
        if (code == 1 && r->elements >= 4) {
            /* Chained oldest first, built from the newest. */
            reg_item_t *chain = NULL;
            for (size_t i = r->elements; i-- > 3;) {
                reg_item_t *it = item_of(r->element[i], id);
                if (it)
                    chain = reg_chain_append(it, chain);
            }
            freeReplyObject(r);
            if (!chain)
                continue; /* undecodable (dropped): fetch the next */
            *item = chain;
            return REG_WAIT_ITEM;
        }
        freeReplyObject(r);
        int rc = reg_wait(c->reg, id, w, clock_now_ms(), item);
        if (rc == REG_WAIT_POLL && round < WAIT_FETCH_MAX)
            continue;
        if (rc == REG_WAIT_POLL) /* pokes keep coming: park anyway, the next one wakes it */
            rc = reg_wait(c->reg, id, w, clock_now_ms(), item);
        if (rc == -ENOENT) {
            /* The shadow went (our own GONE handling raced us): again. */
            if (reg_adopt(c->reg, id, NULL, 0, clock_now_ms()) < 0)
                return -ENOMEM;
            continue;
        }
        if (rc == -ESHUTDOWN)
            cluster_release(c, id, *gen);
        return rc;
    }
}

void cluster_release(struct cluster *c, uint64_t id, uint64_t gen)
{
    if (gen == 0)
        return;
    char ids[24], g[24], timeout[24];
    u64_str(ids, id);
    u64_str(g, gen);
    u64_str(timeout, c->cfg->member_timeout_ms);
    const char *args[] = {ids, c->inst, g, timeout};
    redisReply *r = run(c, S_RELEASE, 4, args, NULL);
    /* Unreachable: the lease stays until our alive key expires, and then
     * any instance starts the member's clock. */
    freeReplyObject(r);
}

void cluster_requeue(struct cluster *c, uint64_t id, reg_item_t *chain)
{
    size_t n = 0;
    for (reg_item_t *it = chain; it; it = reg_item_next(it))
        n++;
    const char **args = calloc(n + 1, sizeof *args);
    size_t *lens = calloc(n + 1, sizeof *lens);
    buf_t *enc = calloc(n ? n : 1, sizeof *enc);
    char ids[24];
    u64_str(ids, id);
    size_t k = 0;
    if (args && lens && enc) {
        args[0] = ids;
        lens[0] = strlen(ids);
        for (reg_item_t *it = chain; it; it = reg_item_next(it)) {
            struct ckey_item e = {.is_message = reg_item_is_message(it),
                                  .pragma = reg_item_pragma(it),
                                  .accepted_us = reg_item_accepted_us(it)};
            e.has_ctype = reg_item_content_type(it, &e.ctype, &e.ctype_len);
            e.body = reg_item_body(it, &e.body_len);
            buf_init(&enc[k], SIZE_MAX);
            if (ckey_item_encode(&enc[k], &e) < 0) {
                buf_free(&enc[k]);
                break;
            }
            args[1 + k] = enc[k].data;
            lens[1 + k] = enc[k].len;
            k++;
        }
    }
    redisReply *r = k == n && n ? run(c, S_REQUEUE, (int)(1 + n), args, lens) : NULL;
    if (!r && n)
        log_event(LOG_ERROR, "cluster_lost", &(struct log_fields){.peer_id = id},
                  "cluster: %zu undelivered item(s) could not be put back in Redis", n);
    freeReplyObject(r);
    for (size_t i = 0; i < k; i++)
        buf_free(&enc[i]);
    free(enc);
    free(lens);
    free(args);
    reg_item_free_chain(chain);
}
