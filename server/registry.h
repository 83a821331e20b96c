/*
 * registry: the members of the signaling channel, their FIFO queues, and the
 * hanging GETs parked on them. One mutex guards it all; see the DESIGN
 * comment in registry.c. Every function here is thread-safe.
 */
#ifndef PCSIG_REGISTRY_H
#define PCSIG_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct registry registry_t;
typedef struct reg_item reg_item_t; /* one queued delivery */

typedef struct reg_config {
    uint64_t member_timeout_ms; /* no parked wait for longer: removed */
    uint64_t wait_timeout_ms;   /* parked wait with nothing for longer: answered empty */
    size_t max_members;         /* sign-ins past this: -EUSERS */
    size_t queue_max_msgs;      /* messages queued per member */
    size_t queue_max_bytes;     /* message body bytes queued per member */
    uint64_t note_lag;          /* 0: REG_NOTE_LAG (tests set a small one) */
    bool secure_ids;            /* give each member a random secret token */
    /* --cluster: the members are kept in Redis (cluster.c) and this
     * registry holds only local shadows (reg_adopt) to park waits on; joins
     * and leaves are announced by the cluster, never here. */
    bool no_notes;
} reg_config_t;

#define REG_TOKEN_BYTES 16

/*
 * The bound on the join/leave notification log (registry.c, DESIGN): a
 * member more than this many events behind no longer hears of members who
 * joined and left entirely while it was not reading (it still hears every
 * join of a member present and every leave of a member it was told of).
 * The log holds about twice this many events, plus those some member still
 * needs; each costs its entry line (up to PROTO_MAX_NAME + 32 bytes) and
 * some 100 bytes.
 */
#define REG_NOTE_LAG 8192

/* Why a parked waiter is woken. */
enum reg_wake {
    REG_WAKE_ITEM,      /* item: a message or notification, answer 200 */
    REG_WAKE_IDLE,      /* nothing for wait_timeout: empty notification */
    REG_WAKE_DISPLACED, /* a newer /wait for the same member: 409 */
    REG_WAKE_GONE,      /* member signed out / timed out: item = own entry ",0" */
    REG_WAKE_SHUTDOWN,  /* the server is stopping: shutdown notice */
    REG_WAKE_POLL,      /* --cluster: something may be queued in Redis, fetch again */
};

/*
 * A hanging GET as the registry sees it. The server embeds this in its
 * connection object; the registry stores the pointer while the wait is
 * parked and never frees it. The callbacks run with the registry mutex
 * held, so they must only flip state and enqueue, never block or call back
 * into the registry.
 */
struct reg_waiter {
    /* The wait is now parked: from here on anyone may claim it. */
    void (*on_park)(struct reg_waiter *w);
    /* Take the parked wait back; false if another party already did. */
    bool (*claim)(struct reg_waiter *w);
    /* Hand the claimed wait its answer; takes ownership of item (may be NULL). */
    void (*wake)(struct reg_waiter *w, enum reg_wake why, reg_item_t *item);
    uint64_t member_id; /* set by the registry when parked */
};

/* Returns NULL when out of memory. Destroy with reg_destroy. */
registry_t *reg_create(const reg_config_t *cfg);
/* Frees members and queues; never touches parked waiters. NULL-safe. */
void reg_destroy(registry_t *r);

/*
 * Add a member named by the raw query bytes (sanitised here), notify every
 * other member, and append the sign-in body (own entry first, then the others
 * in join order) to list. Returns 0 and *id, -EUSERS (member cap),
 * -ESHUTDOWN, -ENOMEM or -E2BIG (list over its buffer's max).
 */
int reg_sign_in(registry_t *r, const char *raw_name, size_t name_len, uint64_t now,
                buf_t *list, uint64_t *id);

/* The secret token of member id (secure_ids): 0, -ENOENT. */
int reg_member_token(registry_t *r, uint64_t id, uint8_t out[REG_TOKEN_BYTES]);
/* Does token (any length) match member id's, compared in constant time?
 * 0, -ENOENT (no such member), -EACCES (wrong or missing token). */
int reg_check_token(registry_t *r, uint64_t id, const uint8_t *token, size_t len);

/* Remove a member at once and notify the others: 0 or -ENOENT. */
int reg_sign_out(registry_t *r, uint64_t id, uint64_t now);

/* Any request from a member refreshes its timeout: 0 or -ENOENT. */
int reg_touch(registry_t *r, uint64_t id, uint64_t now);

/*
 * Queue (or hand to the parked wait) a message from -> to. The body and
 * content type are copied. Returns 0, -ENOENT (unknown sender), -ESRCH
 * (unknown target), -ENOSPC (target's queue full), -ENOMEM.
 */
int reg_send(registry_t *r, uint64_t from, uint64_t to, const char *ctype,
             size_t ctype_len, bool has_ctype, const void *body, size_t body_len,
             uint64_t now);

#define REG_WAIT_PARKED 0
#define REG_WAIT_ITEM 1
#define REG_WAIT_POLL 2 /* reg_poke came since the last reg_wait: fetch again */
/*
 * A /wait for member id. Returns REG_WAIT_ITEM with the oldest queued item
 * in *item (the caller now owns it), REG_WAIT_PARKED after calling
 * w->on_park (an earlier parked wait is woken DISPLACED), -ENOENT, or
 * -ESHUTDOWN.
 */
int reg_wait(registry_t *r, uint64_t id, struct reg_waiter *w, uint64_t now,
             reg_item_t **item);

/*
 * The owner of w claimed it for a reason of its own (client went away):
 * forget it if it is still parked and restart the member's timeout clock.
 */
void reg_unpark(registry_t *r, struct reg_waiter *w, uint64_t now);

/*
 * Batched waits: pop further queued items of member id, oldest first, while
 * their cost (body + content type + REG_RECORD_OVERHEAD each) fits in
 * budget, at most max_items. Returns them chained (reg_item_next), or NULL.
 */
#define REG_RECORD_OVERHEAD 64
reg_item_t *reg_take(registry_t *r, uint64_t id, size_t budget, size_t max_items, uint64_t now);

/* Delivery of item (a chain, oldest first) to member_id failed: hand the
 * first to the member's newer parked /wait if there is one and put the rest
 * back at the head of the queue, in order (or free them when the member is
 * gone). Takes ownership of the chain. */
void reg_requeue(registry_t *r, uint64_t member_id, reg_item_t *item, uint64_t now);

/*
 * Time out members and idle parked waits as of now. Returns the number of
 * members removed.
 */
size_t reg_tick(registry_t *r, uint64_t now);

/* Wake every parked wait with REG_WAKE_SHUTDOWN; later waits and sign-ins
 * get -ESHUTDOWN. */
void reg_shutdown(registry_t *r);

typedef struct reg_stats {
    size_t members;
    size_t parked;
    uint64_t messages_accepted;
    uint64_t messages_refused; /* queue full */
    uint64_t messages_dropped; /* queued for a member that left */
    uint64_t timeouts;         /* members removed for silence */
    uint64_t wait_timeouts;    /* parked waits answered empty (wait_timeout_ms) */
    size_t queued_msgs;        /* messages queued, over all members */
    size_t queued_bytes;       /* their body bytes */
    size_t notes_logged;       /* join/leave events kept for members yet to see them */
    uint64_t notes_dropped;    /* events dropped unheard: joins and leaves nobody needed */
    uint64_t tick_examined;    /* members reg_tick looked at: only those whose deadline came */
} reg_stats_t;
/* A consistent copy of the counters and gauges, taken under the lock (which
 * is held only to copy them: no formatting, no allocation). */
void reg_get_stats(registry_t *r, reg_stats_t *out);

/* ---- --cluster (cluster.c): local shadows of members kept in Redis ---- */

/* Make sure member id exists here (no notification, no member cap); name
 * (when not NULL) becomes its name. 0 or -ENOMEM. */
int reg_adopt(registry_t *r, uint64_t id, const char *name, size_t name_len, uint64_t now);
/* Wake member id's parked wait with REG_WAKE_POLL, or make its next
 * reg_wait return REG_WAIT_POLL. Unknown ids are ignored. */
void reg_poke(registry_t *r, uint64_t id);
/* reg_poke every member (after wake-ups may have been lost). */
void reg_poke_all(registry_t *r);
/* Remove member id here (its parked wait, if any, gets REG_WAKE_GONE) and
 * return its own leave line ("name,id,0") as an item the caller owns, or
 * NULL (unknown, or out of memory). */
reg_item_t *reg_drop(registry_t *r, uint64_t id, uint64_t now);
/* A new item the caller owns (NULL when out of memory); data is copied. */
reg_item_t *reg_item_make(bool is_message, uint64_t pragma, uint64_t accepted_us,
                          const char *ctype, size_t ctype_len, bool has_ctype,
                          const void *body, size_t body_len);

/* Item accessors (an item is immutable once queued). */
uint64_t reg_item_pragma(const reg_item_t *it); /* sender id, or recipient id for notifications */
bool reg_item_content_type(const reg_item_t *it, const char **p, size_t *n);
const char *reg_item_body(const reg_item_t *it, size_t *n);
reg_item_t *reg_item_next(const reg_item_t *it); /* the chain of reg_take */
bool reg_item_is_message(const reg_item_t *it); /* false: a join/leave notification */
/* A message's acceptance time on clock_now_us() (0 for notifications). */
uint64_t reg_item_accepted_us(const reg_item_t *it);
void reg_item_free_chain(reg_item_t *it);     /* NULL-safe */
/* Chain b behind the single item a; returns a. */
reg_item_t *reg_chain_append(reg_item_t *a, reg_item_t *b);
/* What one item costs in a batch (see reg_take). */
size_t reg_item_cost(const reg_item_t *it);

#endif
