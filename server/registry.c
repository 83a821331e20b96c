/*
 * registry: members, their queues, and parked hanging GETs.
 *
 * DESIGN
 * One mutex (reg->lock) guards every member, queue and parked pointer, so
 * a join, a message and a timeout each see and change one consistent state.
 * Critical sections only link and unlink: bodies are copied before the lock
 * is taken and responses are written by the worker that owns the socket
 * after it is released.
 *
 * A parked /wait is a struct reg_waiter stored in its member, not a blocked
 * thread: parking costs a pointer, so thousands of hanging GETs cost sockets
 * and memory, not threads. Whoever has something for a member (a sender, a
 * joining or leaving member, the reaper, shutdown) unhooks the waiter and
 * claims it; the claim is an atomic hand-over inside the connection, because
 * the connection's poller may claim it at the same time when the client
 * hangs up. The winner of the claim hands the answer over with w->wake(),
 * which queues the connection for a worker; the loser leaves it alone.
 * Lock order: registry lock, then the work queue's lock (taken inside
 * w->wake). Nothing else is ever taken under the registry lock.
 * No I/O under it either: log records are collected while it is held and
 * written once it is released (unlock_and_log), and secure-id tokens are
 * drawn before it is taken. Nor O(N) work per tick: members sit in a heap
 * ordered by the time reg_tick must next look at them (deadline_of), so a
 * tick examines only those whose deadline came.
 *
 * Items: a message queued for one member, or a join/leave notification.
 * Notifications are not copied into every member's queue: a broadcast
 * appends one event to the registry's notification log (a ring of
 * sequence-numbered events) and each member keeps a cursor (a seq) into
 * it. Only members with a parked wait get an item at once; the others
 * catch up when they next poll. A queued message remembers the log's end when it was
 * queued (after_seq), so a member sees notifications and messages in the
 * order they happened. Memory for N members that stop polling while N
 * others come and go is O(N) events, not the O(N^2) items a queue per
 * member would hold (10,000 members signing out at once held 1.6 GB).
 * The log is trimmed to the slowest member's cursor by reg_tick.
 *
 * The log is bounded even when a member never polls (it can stay signed in
 * by sending itself messages) while others come and go: otherwise its
 * cursor pins every later event, one per sign-in and one per sign-out
 * (100,000 cycles grew the server by 121 MiB). A member more than
 * REG_NOTE_LAG events behind is resynced rather than replayed: of a member
 * that joined and left entirely while it was not reading, it hears nothing;
 * it still hears the join of every member present and not yet announced
 * to it, and the leave of every member it was told of, in order. So when
 * the log reaches its limit (log_compact_locked), each pair of join and
 * leave older than the lag that no member needs (no cursor lies between
 * them: nobody was told of the join and not yet of the leave) is dropped.
 * The lag is counted in events, not time: a member that keeps within it
 * (a parked /wait is always at the end) hears every join and leave once,
 * in order. What stays is the recent window plus what some member still
 * needs: at most one join per present member, and one leave per departed
 * member that some member was told of and has not yet heard leave (for a
 * member that stopped polling, the members present when it stopped).
 * Cursors and a message's after_seq stay seqs; the log keeps each event's
 * seq, so a dropped pair only leaves a gap.
 *
 * Items leave the queue only into a worker's hands; if its write fails,
 * reg_requeue puts the item back at the head, so FIFO order and "nothing
 * accepted is dropped silently" hold. A requeue skips the queue caps (what
 * was accepted stays accepted), so a queue can stand over its caps: then
 * every send to it is refused until it drains under them. Messages still
 * queued for a member that leaves are dropped and counted (the sender's
 * 200 meant "accepted", never "delivered").
 *
 * Time is passed in by the caller (monotonic ms), which keeps the timeout
 * rules testable with an injected clock.
 */
#include "registry.h"
#include "strlit.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"
#include "proto.h"

struct reg_blob {
    atomic_uint refs;
    bool has_ctype;
    size_t ctype_len;
    size_t body_len;
    char data[]; /* content type, then body */
};

struct reg_item {
    reg_item_t *next;
    uint64_t pragma;
    bool is_message; /* counts against the queue limits */
    uint64_t accepted_us; /* messages: when reg_send took it (relay latency) */
    /* In a member's queue: log events with a smaller seq come first (0: none). */
    uint64_t after_seq;
    struct reg_blob *blob;
};

/* One join or leave in the notification log. */
struct note {
    uint64_t seq;     /* its place in the history; the log may have gaps */
    uint64_t subject; /* the member it is about: never delivered to itself */
    uint64_t since;   /* the subject's join seq (a join: its own seq) */
    bool join;
    struct reg_blob *blob; /* NULL only while a compaction drops it */
};

/* A record to log once the lock is released (see unlock_and_log): the
 * registry's critical sections never write to stderr. */
enum pend_kind {
    PEND_SIGN_OUT,
    PEND_TIMEOUT,
    PEND_DROPPED,       /* n: messages dropped */
    PEND_NOTIFY_JOIN,   /* out of memory: a join notification not sent */
    PEND_NOTIFY_LEAVE,  /* out of memory: a leave notification not sent */
    PEND_NOTIFY_DELAY,  /* out of memory: a notification delayed */
};

struct pend_log {
    enum pend_kind kind;
    uint64_t peer_id;
    size_t n;
};

/* Bounded: reg_tick flushes before it can overflow; beyond it (out of
 * memory storms) records are counted and reported as lost. */
#define REG_PEND_MAX 32
/* The most records one removal can add (timeout, dropped, a notify failure). */
#define REG_PEND_PER_REMOVAL 4

struct member {
    uint64_t id;
    struct member *hnext;      /* hash chain */
    struct member *prev, *next; /* join order */
    struct reg_waiter *parked;  /* NULL when no /wait is parked */
    uint64_t parked_at;
    uint64_t last_seen;
    /* Its heap key: never later than deadline_of(m) (seen_unparked_locked
     * may leave it earlier; reg_tick corrects it), and its place in the
     * registry's deadline heap (HEAP_NONE once unlinked). */
    uint64_t deadline;
    size_t hidx;
    struct member *pprev, *pnext; /* the registry's parked members */
    reg_item_t *qhead, *qtail;
    size_t q_msgs, q_bytes; /* messages only */
    uint64_t cursor;        /* the next notification log seq for this member */
    uint64_t join_seq;      /* log_next when it joined: its join's seq */
    uint8_t token[REG_TOKEN_BYTES]; /* secure_ids only */
    bool poked;             /* --cluster: reg_poke came while not parked */
    size_t name_len;
    char name[];
};

struct registry {
    pthread_mutex_t lock;
    reg_config_t cfg;
    struct member **buckets; /* guarded by lock */
    size_t nbuckets;         /* power of two */
    struct member *first, *last;
    size_t count;
    size_t parked;
    uint64_t next_id;
    bool shutting_down;
    /* Every member's sign-in line in join order, while roster_ok: a
     * sign-in copies it (one memcpy under the lock) instead of formatting
     * every line anew. A leave clears roster_ok; the next sign-in rebuilds
     * it. Its size is that of the members' names again. */
    buf_t roster;
    bool roster_ok;
    uint64_t accepted, refused, dropped, timeouts, wait_timeouts;
    uint64_t dropped_notes; /* events of join/leave pairs nobody needed, dropped */
    size_t q_msgs, q_bytes; /* sums of every member's q_msgs, q_bytes (gauges) */
    struct member *parked_first; /* members with a parked wait */
    /* Every member, as a binary min-heap on (deadline, id): a reaper tick
     * looks only at the members whose deadline has come, not at all of
     * them. Ties go by id, i.e. join order, as the old walk did. */
    struct member **heap;
    size_t heap_len, heap_cap;
    uint64_t tick_examined; /* members reg_tick has looked at (stats) */
    /* Notification log: log_len events in seq order, the i-th at
     * log[(log_head + i) & (log_cap - 1)]; log_cap is a power of two (or 0).
     * Seqs grow by one per event but a compaction leaves gaps. */
    struct note *log;
    size_t log_cap, log_head, log_len;
    size_t log_limit; /* compact when log_len reaches it */
    uint64_t log_next; /* the seq of the next event */
    struct pend_log pend[REG_PEND_MAX]; /* to log after unlocking */
    size_t npend;
    uint64_t pend_lost;
};

/* ---- logging after the lock ---------------------------------------------- */

static void pend_locked(registry_t *r, enum pend_kind kind, uint64_t peer_id, size_t n)
{
    if (r->npend < REG_PEND_MAX)
        r->pend[r->npend++] = (struct pend_log){.kind = kind, .peer_id = peer_id, .n = n};
    else
        r->pend_lost++;
}

/* Release the lock, then write the records collected under it: stderr (or a
 * slow sink) never stalls every other thread waiting for the registry. */
static void unlock_and_log(registry_t *r)
{
    struct pend_log pend[REG_PEND_MAX];
    size_t n = r->npend;
    uint64_t lost = r->pend_lost;
    memcpy(pend, r->pend, n * sizeof pend[0]);
    r->npend = 0;
    r->pend_lost = 0;
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < n; i++) {
        const struct log_fields f = {.peer_id = pend[i].peer_id};
        switch (pend[i].kind) {
        case PEND_SIGN_OUT:
            log_event(LOG_DEBUG, "sign_out", &f, "signed out");
            break;
        case PEND_TIMEOUT:
            log_event(LOG_INFO, "member_timeout", &f, "timed out");
            break;
        case PEND_DROPPED:
            log_event(LOG_INFO, "messages_dropped", &f,
                      "left with %zu undelivered message(s); dropped", pend[i].n);
            break;
        case PEND_NOTIFY_JOIN:
        case PEND_NOTIFY_LEAVE:
            log_event(LOG_ERROR, "notify_failed", &f, "out of memory: %s notification not sent",
                      pend[i].kind == PEND_NOTIFY_JOIN ? "join" : "leave");
            break;
        case PEND_NOTIFY_DELAY:
            log_event(LOG_ERROR, "notify_failed", &f,
                      "out of memory: a notification is delayed");
            break;
        }
    }
    if (lost)
        log_event(LOG_WARN, "log_lost", NULL, "%llu registry log record(s) lost",
                  (unsigned long long)lost);
}

/* ---- blobs and items ---------------------------------------------------- */

static struct reg_blob *blob_new(const char *ctype, size_t ctype_len, bool has_ctype,
                                 const void *body, size_t body_len)
{
    if (!has_ctype)
        ctype_len = 0;
    if (body_len > SIZE_MAX - sizeof(struct reg_blob) - ctype_len)
        return NULL;
    struct reg_blob *b = malloc(sizeof *b + ctype_len + body_len);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->has_ctype = has_ctype;
    b->ctype_len = ctype_len;
    b->body_len = body_len;
    if (ctype_len)
        memcpy(b->data, ctype, ctype_len);
    if (body_len)
        memcpy(b->data + ctype_len, body, body_len);
    return b;
}

static void blob_unref(struct reg_blob *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
}

static reg_item_t *item_new(struct reg_blob *b, uint64_t pragma, bool is_message)
{
    reg_item_t *it = malloc(sizeof *it);
    if (!it)
        return NULL;
    atomic_fetch_add(&b->refs, 1);
    it->next = NULL;
    it->pragma = pragma;
    it->is_message = is_message;
    it->accepted_us = 0;
    it->after_seq = 0;
    it->blob = b;
    return it;
}

/* NULL-safe; one item (reg_item_free_chain frees a chain). */
static void reg_item_free(reg_item_t *it)
{
    if (!it)
        return;
    blob_unref(it->blob);
    free(it);
}

uint64_t reg_item_pragma(const reg_item_t *it) { return it->pragma; }

reg_item_t *reg_item_next(const reg_item_t *it) { return it->next; }

bool reg_item_is_message(const reg_item_t *it) { return it->is_message; }

uint64_t reg_item_accepted_us(const reg_item_t *it) { return it->accepted_us; }

void reg_item_free_chain(reg_item_t *it)
{
    while (it) {
        reg_item_t *next = it->next;
        reg_item_free(it);
        it = next;
    }
}

reg_item_t *reg_chain_append(reg_item_t *a, reg_item_t *b)
{
    a->next = b;
    return a;
}

size_t reg_item_cost(const reg_item_t *it)
{
    return it->blob->body_len + it->blob->ctype_len + REG_RECORD_OVERHEAD;
}

bool reg_item_content_type(const reg_item_t *it, const char **p, size_t *n)
{
    *p = it->blob->data;
    *n = it->blob->ctype_len;
    return it->blob->has_ctype;
}

const char *reg_item_body(const reg_item_t *it, size_t *n)
{
    *n = it->blob->body_len;
    return it->blob->data + it->blob->ctype_len;
}

/* ---- members ------------------------------------------------------------ */

/* ---- the deadline heap --------------------------------------------------- */

#define HEAP_NONE SIZE_MAX

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The first time at which reg_tick acts on m: a parked wait is answered
 * empty when now - parked_at >= wait_timeout_ms (and now > parked_at); an
 * unparked member times out when now - last_seen > member_timeout_ms. */
static uint64_t deadline_of(const registry_t *r, const struct member *m)
{
    if (m->parked)
        return add_sat(m->parked_at, r->cfg.wait_timeout_ms ? r->cfg.wait_timeout_ms : 1);
    return add_sat(m->last_seen, add_sat(r->cfg.member_timeout_ms, 1));
}

static bool heap_less(const struct member *a, const struct member *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->id < b->id);
}

static void heap_set(registry_t *r, size_t i, struct member *m)
{
    r->heap[i] = m;
    m->hidx = i;
}

static void heap_up(registry_t *r, size_t i)
{
    struct member *m = r->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(m, r->heap[parent]))
            break;
        heap_set(r, i, r->heap[parent]);
        i = parent;
    }
    heap_set(r, i, m);
}

static void heap_down(registry_t *r, size_t i)
{
    struct member *m = r->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= r->heap_len)
            break;
        if (c + 1 < r->heap_len && heap_less(r->heap[c + 1], r->heap[c]))
            c++;
        if (!heap_less(r->heap[c], m))
            break;
        heap_set(r, i, r->heap[c]);
        i = c;
    }
    heap_set(r, i, m);
}

/* Room for one more member; the push itself cannot fail then. */
static int heap_reserve_locked(registry_t *r)
{
    if (r->heap_len < r->heap_cap)
        return 0;
    size_t cap = r->heap_cap ? 2 * r->heap_cap : 64;
    struct member **h = realloc(r->heap, cap * sizeof *h);
    if (!h)
        return -ENOMEM;
    r->heap = h;
    r->heap_cap = cap;
    return 0;
}

static void heap_push_locked(registry_t *r, struct member *m)
{
    m->deadline = deadline_of(r, m);
    heap_set(r, r->heap_len++, m);
    heap_up(r, m->hidx);
}

static void heap_remove_locked(registry_t *r, struct member *m)
{
    size_t i = m->hidx;
    m->hidx = HEAP_NONE;
    struct member *last = r->heap[--r->heap_len];
    if (last == m)
        return;
    heap_set(r, i, last);
    heap_up(r, i);
    heap_down(r, last->hidx);
}

/* m's last_seen, parked or parked_at changed: move it to its new place. */
static void refresh_locked(registry_t *r, struct member *m)
{
    if (m->hidx == HEAP_NONE)
        return; /* leaving */
    m->deadline = deadline_of(r, m);
    heap_up(r, m->hidx);
    heap_down(r, m->hidx);
}

static void seen_locked(registry_t *r, struct member *m, uint64_t now)
{
    m->last_seen = now;
    refresh_locked(r, m);
}

/* As seen_locked, for a member whose wait was just unhooked, in bulk (a
 * broadcast answers every parked wait under one lock hold): a deadline that
 * only moved later keeps its place, with a key earlier than its deadline,
 * which reg_tick corrects when it reaches it; so each member costs O(1)
 * here, not a walk down the heap. A key is never later than its deadline. */
static void seen_unparked_locked(registry_t *r, struct member *m, uint64_t now)
{
    m->last_seen = now;
    if (m->hidx != HEAP_NONE && deadline_of(r, m) < m->deadline)
        refresh_locked(r, m);
}

static size_t bucket_of(const registry_t *r, uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 17) & (r->nbuckets - 1);
}

static struct member *find_locked(registry_t *r, uint64_t id)
{
    for (struct member *m = r->buckets[bucket_of(r, id)]; m; m = m->hnext)
        if (m->id == id)
            return m;
    return NULL;
}

static int grow_locked(registry_t *r)
{
    size_t n = r->nbuckets * 2;
    struct member **nb = calloc(n, sizeof *nb);
    if (!nb)
        return -ENOMEM;
    struct member **old = r->buckets;
    size_t oldn = r->nbuckets;
    r->buckets = nb;
    r->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        struct member *m = old[i];
        while (m) {
            struct member *next = m->hnext;
            size_t b = bucket_of(r, m->id);
            m->hnext = nb[b];
            nb[b] = m;
            m = next;
        }
    }
    free(old);
    return 0;
}

/* Make m (id set, room reserved in the table and the heap) a member: found
 * by id, last in join order, on the deadline heap. */
static void link_member_locked(registry_t *r, struct member *m)
{
    size_t b = bucket_of(r, m->id);
    m->hnext = r->buckets[b];
    r->buckets[b] = m;
    m->prev = r->last;
    if (r->last)
        r->last->next = m;
    else
        r->first = m;
    r->last = m;
    r->count++;
    heap_push_locked(r, m);
}

static void unlink_locked(registry_t *r, struct member *m)
{
    struct member **pp = &r->buckets[bucket_of(r, m->id)];
    while (*pp != m)
        pp = &(*pp)->hnext;
    *pp = m->hnext;
    if (m->prev)
        m->prev->next = m->next;
    else
        r->first = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        r->last = m->prev;
    r->count--;
    r->roster_ok = false;
    heap_remove_locked(r, m);
}

/* Every change of a member's queued message count goes through here, so
 * the registry-wide sums (read by a scrape) never drift from the members'. */
static void queue_account_locked(registry_t *r, struct member *m, const reg_item_t *it, bool in)
{
    if (!it->is_message)
        return;
    size_t len = it->blob->body_len;
    if (in) {
        m->q_msgs++;
        m->q_bytes += len;
        r->q_msgs++;
        r->q_bytes += len;
    } else {
        m->q_msgs--;
        m->q_bytes -= len;
        r->q_msgs--;
        r->q_bytes -= len;
    }
}

/* Would one more message of body_len bytes go past m's caps? A requeue
 * (reg_requeue) may leave a queue over its caps, since what was accepted is
 * kept; so the test never computes cap - queued, which would wrap. */
static bool queue_full_locked(const registry_t *r, const struct member *m, size_t body_len)
{
    return m->q_msgs >= r->cfg.queue_max_msgs || m->q_bytes >= r->cfg.queue_max_bytes ||
           body_len > r->cfg.queue_max_bytes - m->q_bytes;
}

static void queue_push_locked(registry_t *r, struct member *m, reg_item_t *it)
{
    it->next = NULL;
    if (m->qtail)
        m->qtail->next = it;
    else
        m->qhead = it;
    m->qtail = it;
    queue_account_locked(r, m, it, true);
}

static reg_item_t *queue_pop_locked(registry_t *r, struct member *m)
{
    reg_item_t *it = m->qhead;
    if (!it)
        return NULL;
    m->qhead = it->next;
    if (!m->qhead)
        m->qtail = NULL;
    it->next = NULL;
    queue_account_locked(r, m, it, false);
    return it;
}

static void park_locked(registry_t *r, struct member *m, struct reg_waiter *w, uint64_t now)
{
    m->parked = w;
    m->parked_at = now;
    m->pprev = NULL;
    m->pnext = r->parked_first;
    if (r->parked_first)
        r->parked_first->pprev = m;
    r->parked_first = m;
    r->parked++;
    refresh_locked(r, m);
}

/* Unhook m's parked waiter (if any) from m and the parked list. */
static struct reg_waiter *unpark_locked(registry_t *r, struct member *m)
{
    struct reg_waiter *w = m->parked;
    if (!w)
        return NULL;
    m->parked = NULL;
    if (m->pprev)
        m->pprev->pnext = m->pnext;
    else
        r->parked_first = m->pnext;
    if (m->pnext)
        m->pnext->pprev = m->pprev;
    m->pprev = m->pnext = NULL;
    r->parked--;
    /* Both callers restart the member's clock next (seen_locked). */
    return w;
}

/* Unhook m's parked waiter and, if the claim succeeds, return it. */
static struct reg_waiter *take_parked_locked(registry_t *r, struct member *m, uint64_t now)
{
    struct reg_waiter *w = unpark_locked(r, m);
    if (!w)
        return NULL;
    seen_unparked_locked(r, m, now); /* the member's timeout clock restarts */
    return w->claim(w) ? w : NULL;
}

/* ---- the notification log ------------------------------------------------ */

static struct note *note_at(const registry_t *r, size_t i)
{
    return &r->log[(r->log_head + i) & (r->log_cap - 1)];
}

/* Index of the first event with a seq >= seq (log_len if none). */
static size_t log_find_locked(const registry_t *r, uint64_t seq)
{
    if (r->log_len == 0 || seq <= note_at(r, 0)->seq)
        return 0;
    /* Without a gap before it, the event is where its seq says. */
    uint64_t d = seq - note_at(r, 0)->seq;
    if (d < r->log_len && note_at(r, (size_t)d)->seq == seq)
        return (size_t)d;
    size_t lo = 0, hi = r->log_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (note_at(r, mid)->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint64_t note_lag(const registry_t *r)
{
    return r->cfg.note_lag ? r->cfg.note_lag : REG_NOTE_LAG;
}

static void log_drop_front_locked(registry_t *r)
{
    blob_unref(note_at(r, 0)->blob);
    r->log_head = (r->log_head + 1) & (r->log_cap - 1);
    r->log_len--;
}

/* Drop the events every member has passed (all of them when nobody is left). */
static void log_trim_locked(registry_t *r)
{
    uint64_t min = r->log_next;
    for (struct member *m = r->first; m; m = m->next)
        if (m->cursor < min)
            min = m->cursor;
    while (r->log_len > 0 && note_at(r, 0)->seq < min)
        log_drop_front_locked(r);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/*
 * The bound on the log (see DESIGN): trim what everyone has passed, then
 * drop each join/leave pair that nobody needs: a member that left, whose
 * join is more than note_lag events old, and no member's cursor lies
 * between its join and its leave (no one has been told of the join and not
 * yet of the leave). Members before the join are then at least note_lag
 * events behind, and they hear neither. The next compaction is due after
 * note_lag more events, or as many as the log kept if that is more, so
 * the log stays under 2 * note_lag plus the events some member needs, and
 * the cost of a compaction (its events, and its members' cursors sorted) is
 * spread over at least note_lag appends.
 */
static void log_compact_locked(registry_t *r)
{
    log_trim_locked(r);
    uint64_t lag = note_lag(r);
    uint64_t horizon = r->log_next > lag ? r->log_next - lag : 0;
    uint64_t *cursors = NULL;
    size_t nc = 0;
    if (r->log_len > 0 && note_at(r, 0)->seq < horizon)
        cursors = malloc((r->count ? r->count : 1) * sizeof *cursors);
    if (cursors) {
        for (struct member *m = r->first; m; m = m->next)
            cursors[nc++] = m->cursor;
        qsort(cursors, nc, sizeof *cursors, cmp_u64);
        size_t dropped = 0;
        for (size_t i = 0; i < r->log_len; i++) {
            struct note *leave = note_at(r, i);
            if (leave->join || !leave->blob || leave->since >= horizon)
                continue;
            size_t j = log_find_locked(r, leave->since);
            struct note *join = j < i ? note_at(r, j) : NULL;
            /* No join of its own in the log: trimmed (everyone still here
             * was told of it), or it joined alone and none was logged. */
            if (!join || join->seq != leave->since || join->subject != leave->subject ||
                !join->blob)
                continue;
            /* The first cursor past the join: told of it, not of the leave? */
            size_t lo = 0, hi = nc;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (cursors[mid] <= join->seq)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < nc && cursors[lo] <= leave->seq)
                continue;
            blob_unref(join->blob);
            blob_unref(leave->blob);
            join->blob = leave->blob = NULL;
            dropped += 2;
        }
        free(cursors);
        if (dropped) {
            size_t k = 0;
            for (size_t i = 0; i < r->log_len; i++) {
                struct note n = *note_at(r, i);
                if (n.blob)
                    *note_at(r, k++) = n;
            }
            r->log_len = k;
            r->dropped_notes += dropped;
        }
    }
    r->log_limit = r->log_len + (r->log_len > lag ? r->log_len : lag);
}

/* Append a join/leave of subject (joined at since); takes a reference to b.
 * 0 or -ENOMEM. */
static int log_append_locked(registry_t *r, uint64_t subject, uint64_t since, bool join,
                             struct reg_blob *b)
{
    if (r->log_len >= r->log_limit)
        log_compact_locked(r);
    if (r->log_len == r->log_cap) {
        size_t cap = r->log_cap ? r->log_cap * 2 : 64;
        struct note *nl = malloc(cap * sizeof *nl);
        if (!nl)
            return -ENOMEM;
        for (size_t i = 0; i < r->log_len; i++)
            nl[i] = *note_at(r, i);
        free(r->log);
        r->log = nl;
        r->log_cap = cap;
        r->log_head = 0;
    }
    atomic_fetch_add(&b->refs, 1);
    *note_at(r, r->log_len) = (struct note){
        .seq = r->log_next, .subject = subject, .since = since, .join = join, .blob = b};
    r->log_len++;
    r->log_next++;
    return 0;
}

/* m's next notification (its own are skipped), or NULL; m's cursor moves up
 * to it (over gaps and its own). */
static const struct note *next_note_locked(registry_t *r, struct member *m)
{
    for (size_t i = log_find_locked(r, m->cursor); i < r->log_len; i++) {
        const struct note *n = note_at(r, i);
        if (n->subject != m->id) {
            m->cursor = n->seq;
            return n;
        }
        m->cursor = n->seq + 1;
    }
    m->cursor = r->log_next;
    return NULL;
}

static bool has_pending_locked(registry_t *r, struct member *m)
{
    return m->qhead || next_note_locked(r, m);
}

/* True when m's next delivery is its queue's head rather than a notification. */
static bool head_first_locked(registry_t *r, struct member *m, const struct note **note)
{
    *note = next_note_locked(r, m);
    return m->qhead && (!*note || m->qhead->after_seq <= (*note)->seq);
}

/* Cost (reg_item_cost) of m's next delivery; false when there is none. */
static bool next_cost_locked(registry_t *r, struct member *m, size_t *cost)
{
    const struct note *n;
    if (head_first_locked(r, m, &n)) {
        *cost = reg_item_cost(m->qhead);
        return true;
    }
    if (!n)
        return false;
    *cost = n->blob->body_len + n->blob->ctype_len + REG_RECORD_OVERHEAD;
    return true;
}

/* m's next delivery, in order, owned by the caller; NULL when there is none
 * (or when a notification's item could not be allocated: it stays due). */
static reg_item_t *pop_next_locked(registry_t *r, struct member *m)
{
    const struct note *n;
    if (head_first_locked(r, m, &n))
        return queue_pop_locked(r, m);
    if (!n)
        return NULL;
    reg_item_t *it = item_new(n->blob, m->id, false);
    if (!it) {
        pend_locked(r, PEND_NOTIFY_DELAY, m->id, 0);
        return NULL;
    }
    m->cursor = n->seq + 1;
    return it;
}

/* Hand a message to m's parked wait (nothing else is due then), or queue it
 * behind the notifications logged so far. Takes ownership of it. */
static void deliver_locked(registry_t *r, struct member *m, reg_item_t *it, uint64_t now)
{
    struct reg_waiter *w = take_parked_locked(r, m, now);
    if (w) {
        w->wake(w, REG_WAKE_ITEM, it);
        return;
    }
    it->after_seq = r->log_next;
    queue_push_locked(r, m, it);
}

/* Tell every member but the subject about a join or a leave: one log event,
 * an item now only for the members with a parked wait. */
static void broadcast_locked(registry_t *r, const struct member *subject, bool connected,
                             uint64_t now)
{
    if (r->cfg.no_notes || r->count <= (connected ? 1u : 0u))
        return;
    buf_t entry;
    buf_init(&entry, PROTO_MAX_NAME + 32);
    struct reg_blob *b = NULL;
    if (proto_entry_append(&entry, subject->name, subject->name_len, subject->id, connected) == 0)
        b = blob_new(STRLIT("text/plain"), true, entry.data, entry.len);
    buf_free(&entry);
    if (!b || log_append_locked(r, subject->id, subject->join_seq, connected, b) < 0) {
        blob_unref(b);
        pend_locked(r, connected ? PEND_NOTIFY_JOIN : PEND_NOTIFY_LEAVE, subject->id, 0);
        return;
    }
    blob_unref(b);
    struct member *m = r->parked_first;
    while (m) {
        struct member *next = m->pnext; /* m leaves the parked list below */
        /* A lost claim (the client hung up) leaves the event due. */
        struct reg_waiter *w = m != subject ? take_parked_locked(r, m, now) : NULL;
        if (w) {
            reg_item_t *it = pop_next_locked(r, m);
            w->wake(w, it ? REG_WAKE_ITEM : REG_WAKE_IDLE, it);
        }
        m = next;
    }
}

/* Drop m from the channel: answer its parked wait, drop its queue, tell the others. */
static void remove_locked(registry_t *r, struct member *m, uint64_t now)
{
    unlink_locked(r, m);
    struct reg_waiter *w = take_parked_locked(r, m, now);
    if (w) {
        reg_item_t *own = NULL;
        buf_t entry;
        buf_init(&entry, PROTO_MAX_NAME + 32);
        if (proto_entry_append(&entry, m->name, m->name_len, m->id, false) == 0) {
            struct reg_blob *b = blob_new(STRLIT("text/plain"), true, entry.data, entry.len);
            if (b) {
                own = item_new(b, m->id, false);
                blob_unref(b);
            }
        }
        buf_free(&entry);
        w->wake(w, REG_WAKE_GONE, own);
    }
    size_t dropped = 0;
    reg_item_t *it;
    while ((it = queue_pop_locked(r, m))) {
        dropped += it->is_message;
        reg_item_free(it);
    }
    if (dropped) {
        r->dropped += dropped;
        pend_locked(r, PEND_DROPPED, m->id, dropped);
    }
    broadcast_locked(r, m, false, now);
    free(m);
}

/* ---- public API --------------------------------------------------------- */

registry_t *reg_create(const reg_config_t *cfg)
{
    registry_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cfg = *cfg;
    r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets || pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r->buckets);
        free(r);
        return NULL;
    }
    r->next_id = 1;
    r->log_limit = 2 * note_lag(r);
    /* Bounded by the member cap: one line per member. */
    buf_init(&r->roster, SIZE_MAX);
    return r;
}

void reg_destroy(registry_t *r)
{
    if (!r)
        return;
    struct member *m = r->first;
    while (m) {
        struct member *next = m->next;
        reg_item_t *it;
        while ((it = queue_pop_locked(r, m)))
            reg_item_free(it);
        free(m);
        m = next;
    }
    while (r->log_len > 0)
        log_drop_front_locked(r);
    free(r->log);
    free(r->buckets);
    free(r->heap);
    buf_free(&r->roster);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Append every member's sign-in line, in join order, to list: a copy of the
 * roster (rebuilt first if someone left), or, when the roster cannot be
 * built (out of memory), the lines formatted one by one. 0 or the buf error
 * (list as it was then). */
static int append_members_locked(registry_t *r, buf_t *list)
{
    int rc = 0;
    if (!r->roster_ok) {
        buf_reset(&r->roster);
        for (struct member *o = r->first; o && rc == 0; o = o->next)
            rc = proto_entry_append(&r->roster, o->name, o->name_len, o->id, true);
        r->roster_ok = rc == 0;
        if (rc < 0)
            buf_free(&r->roster);
    }
    if (r->roster_ok)
        return r->roster.len ? buf_append(list, r->roster.data, r->roster.len) : 0;
    size_t mark = list->len;
    rc = 0;
    for (struct member *o = r->first; o && rc == 0; o = o->next)
        rc = proto_entry_append(list, o->name, o->name_len, o->id, true);
    if (rc < 0)
        list->len = mark;
    return rc;
}

int reg_sign_in(registry_t *r, const char *raw_name, size_t name_len, uint64_t now,
                buf_t *list, uint64_t *id)
{
    char name[PROTO_MAX_NAME + 32];
    size_t n = proto_name_sanitize(raw_name, name_len, name);
    struct member *m = malloc(sizeof *m + PROTO_MAX_NAME + 32);
    if (!m)
        return -ENOMEM;
    memset(m, 0, sizeof *m);
    /* Drawn before locking: getrandom may block or be slow, and the token of
     * a sign-in that is then refused is simply thrown away. */
    if (r->cfg.secure_ids &&
        getrandom(m->token, sizeof m->token, 0) != (ssize_t)sizeof m->token) {
        free(m);
        return -EIO; /* never hand out a guessable token */
    }
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    if (r->shutting_down) {
        rc = -ESHUTDOWN;
        goto out;
    }
    if (r->count >= r->cfg.max_members || r->next_id > PROTO_MAX_ID) {
        rc = -EUSERS;
        goto out;
    }
    if (r->count + 1 > r->nbuckets && (rc = grow_locked(r)) < 0)
        goto out;
    if ((rc = heap_reserve_locked(r)) < 0)
        goto out;
    m->id = r->next_id;
    if (n == 0) {
        /* The original names anonymous members after their id. */
        buf_t tmp;
        buf_init(&tmp, sizeof name);
        if (buf_printf(&tmp, "peer_%llu", (unsigned long long)m->id) == 0) {
            memcpy(name, tmp.data, tmp.len);
            n = tmp.len;
        }
        buf_free(&tmp);
    }
    memcpy(m->name, name, n);
    m->name_len = n;
    m->last_seen = now;
    size_t mark = list->len;
    rc = proto_entry_append(list, m->name, m->name_len, m->id, true);
    if (rc == 0)
        rc = append_members_locked(r, list);
    if (rc < 0) {
        list->len = mark;
        goto out;
    }
    r->next_id++;
    link_member_locked(r, m);
    /* The newcomer's line ends the roster (or the roster is rebuilt later). */
    if (r->roster_ok && proto_entry_append(&r->roster, m->name, m->name_len, m->id, true) < 0)
        r->roster_ok = false;
    *id = m->id;
    m->join_seq = m->cursor = r->log_next; /* not behind while its join is logged */
    /* Everyone hears of the join before the newcomer gets its 200 Added;
     * the newcomer's list already holds everyone, so its cursor starts at
     * the log's end. */
    broadcast_locked(r, m, true, now);
    m->cursor = r->log_next;
    m = NULL;
out:
    unlock_and_log(r);
    free(m);
    return rc;
}

int reg_member_token(registry_t *r, uint64_t id, uint8_t out[REG_TOKEN_BYTES])
{
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    if (m)
        memcpy(out, m->token, REG_TOKEN_BYTES);
    unlock_and_log(r);
    return m ? 0 : -ENOENT;
}

int reg_check_token(registry_t *r, uint64_t id, const uint8_t *token, size_t len)
{
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    int rc = !m ? -ENOENT
                : (len == REG_TOKEN_BYTES && proto_ct_equal(m->token, token, len)) ? 0 : -EACCES;
    unlock_and_log(r);
    return rc;
}

int reg_sign_out(registry_t *r, uint64_t id, uint64_t now)
{
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    if (m) {
        /* Before the removal: its own records (dropped messages) follow this one. */
        pend_locked(r, PEND_SIGN_OUT, id, 0);
        remove_locked(r, m, now);
    }
    unlock_and_log(r);
    return m ? 0 : -ENOENT;
}

int reg_touch(registry_t *r, uint64_t id, uint64_t now)
{
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    if (m)
        seen_locked(r, m, now);
    unlock_and_log(r);
    return m ? 0 : -ENOENT;
}

int reg_send(registry_t *r, uint64_t from, uint64_t to, const char *ctype,
             size_t ctype_len, bool has_ctype, const void *body, size_t body_len,
             uint64_t now)
{
    struct reg_blob *b = blob_new(ctype, ctype_len, has_ctype, body, body_len);
    reg_item_t *it = b ? item_new(b, from, true) : NULL;
    blob_unref(b);
    if (!it)
        return -ENOMEM;
    /* Only for the relay-latency histogram, never for a rule: the rules keep
     * the caller's clock (now), so tests can inject time. */
    it->accepted_us = clock_now_us();
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    struct member *sender = find_locked(r, from);
    struct member *target = sender ? find_locked(r, to) : NULL;
    if (!sender) {
        rc = -ENOENT;
    } else if (!target) {
        rc = -ESRCH;
    } else {
        seen_locked(r, sender, now);
        if (!target->parked && queue_full_locked(r, target, body_len)) {
            r->refused++;
            rc = -ENOSPC;
        } else {
            r->accepted++;
            deliver_locked(r, target, it, now);
            it = NULL;
        }
    }
    unlock_and_log(r);
    reg_item_free(it);
    return rc;
}

int reg_wait(registry_t *r, uint64_t id, struct reg_waiter *w, uint64_t now,
             reg_item_t **item)
{
    int rc;
    pthread_mutex_lock(&r->lock);
    struct member *m = r->shutting_down ? NULL : find_locked(r, id);
    if (r->shutting_down) {
        rc = -ESHUTDOWN;
    } else if (!m) {
        rc = -ENOENT;
    } else if (has_pending_locked(r, m) && (*item = pop_next_locked(r, m)) != NULL) {
        seen_locked(r, m, now);
        rc = REG_WAIT_ITEM;
    } else if (m->poked) {
        m->poked = false;
        rc = REG_WAIT_POLL;
    } else {
        struct reg_waiter *old = take_parked_locked(r, m, now);
        if (old)
            old->wake(old, REG_WAKE_DISPLACED, NULL);
        w->member_id = id;
        park_locked(r, m, w, now);
        w->on_park(w);
        rc = REG_WAIT_PARKED;
    }
    unlock_and_log(r);
    return rc;
}

void reg_unpark(registry_t *r, struct reg_waiter *w, uint64_t now)
{
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, w->member_id);
    if (m && m->parked == w) {
        unpark_locked(r, m);
        seen_locked(r, m, now);
    }
    unlock_and_log(r);
}

/* ---- --cluster shadows --------------------------------------------------- */

int reg_adopt(registry_t *r, uint64_t id, const char *name, size_t name_len, uint64_t now)
{
    if (name_len > PROTO_MAX_NAME + 31)
        name_len = PROTO_MAX_NAME + 31;
    struct member *fresh = malloc(sizeof *fresh + PROTO_MAX_NAME + 32);
    if (!fresh)
        return -ENOMEM;
    memset(fresh, 0, sizeof *fresh);
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    if (!m) {
        if ((r->count + 1 > r->nbuckets && (rc = grow_locked(r)) < 0) ||
            (rc = heap_reserve_locked(r)) < 0)
            goto out;
        m = fresh;
        fresh = NULL;
        m->id = id;
        m->last_seen = now;
        link_member_locked(r, m);
        r->roster_ok = false;
        m->join_seq = m->cursor = r->log_next;
    } else {
        seen_locked(r, m, now);
    }
    if (name) {
        memcpy(m->name, name, name_len);
        m->name_len = name_len;
    }
out:
    unlock_and_log(r);
    free(fresh);
    return rc;
}

void reg_poke(registry_t *r, uint64_t id)
{
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    if (m) {
        struct reg_waiter *w = m->parked ? take_parked_locked(r, m, clock_now_ms()) : NULL;
        if (w)
            w->wake(w, REG_WAKE_POLL, NULL);
        else
            m->poked = true;
    }
    unlock_and_log(r);
}

void reg_poke_all(registry_t *r)
{
    pthread_mutex_lock(&r->lock);
    for (struct member *m = r->first; m; m = m->next)
        m->poked = true;
    struct member *m = r->parked_first;
    while (m) {
        struct member *next = m->pnext;
        struct reg_waiter *w = take_parked_locked(r, m, clock_now_ms());
        if (w) {
            m->poked = false;
            w->wake(w, REG_WAKE_POLL, NULL);
        }
        m = next;
    }
    unlock_and_log(r);
}

reg_item_t *reg_drop(registry_t *r, uint64_t id, uint64_t now)
{
    reg_item_t *own = NULL;
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    if (m) {
        buf_t entry;
        buf_init(&entry, PROTO_MAX_NAME + 32);
        if (m->name_len && proto_entry_append(&entry, m->name, m->name_len, m->id, false) == 0) {
            struct reg_blob *b = blob_new(STRLIT("text/plain"), true, entry.data, entry.len);
            if (b) {
                own = item_new(b, m->id, false);
                blob_unref(b);
            }
        }
        buf_free(&entry);
        remove_locked(r, m, now);
    }
    unlock_and_log(r);
    return own;
}

reg_item_t *reg_item_make(bool is_message, uint64_t pragma, uint64_t accepted_us,
                          const char *ctype, size_t ctype_len, bool has_ctype,
                          const void *body, size_t body_len)
{
    struct reg_blob *b = blob_new(ctype, ctype_len, has_ctype, body, body_len);
    reg_item_t *it = b ? item_new(b, pragma, is_message) : NULL;
    blob_unref(b);
    if (it)
        it->accepted_us = accepted_us;
    return it;
}

reg_item_t *reg_take(registry_t *r, uint64_t id, size_t budget, size_t max_items, uint64_t now)
{
    reg_item_t *head = NULL, **tail = &head;
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, id);
    if (m) {
        seen_locked(r, m, now);
        size_t cost;
        while (max_items > 0 && next_cost_locked(r, m, &cost) && cost <= budget) {
            reg_item_t *it = pop_next_locked(r, m);
            if (!it)
                break;
            budget -= cost;
            max_items--;
            *tail = it;
            tail = &it->next;
        }
    }
    unlock_and_log(r);
    return head;
}

/* Put a chain back at the head of m's queue, keeping its order. */
static void queue_push_front_locked(registry_t *r, struct member *m, reg_item_t *chain)
{
    reg_item_t *last = chain;
    for (reg_item_t *it = chain; it; it = it->next) {
        last = it;
        it->after_seq = 0; /* delivered once already: ahead of every event */
        queue_account_locked(r, m, it, true);
    }
    last->next = m->qhead;
    m->qhead = chain;
    if (!m->qtail)
        m->qtail = last;
}

void reg_requeue(registry_t *r, uint64_t member_id, reg_item_t *item, uint64_t now)
{
    pthread_mutex_lock(&r->lock);
    struct member *m = find_locked(r, member_id);
    struct reg_waiter *w = m ? take_parked_locked(r, m, now) : NULL;
    if (w) {
        /* A newer /wait is parked (so the queue is empty): it gets the first
         * item now rather than when something else arrives. */
        reg_item_t *rest = item->next;
        item->next = NULL;
        if (rest)
            queue_push_front_locked(r, m, rest);
        w->wake(w, REG_WAKE_ITEM, item);
        item = NULL;
    } else if (m) {
        queue_push_front_locked(r, m, item);
        item = NULL;
    } else {
        for (reg_item_t *it = item; it; it = it->next)
            r->dropped += it->is_message;
    }
    unlock_and_log(r);
    reg_item_free_chain(item);
}

size_t reg_tick(registry_t *r, uint64_t now)
{
    size_t removed = 0;
    pthread_mutex_lock(&r->lock);
    /* Only the members whose key has come: each leaves the top of the heap
     * (removed, or its key moved past now), so this ends. */
    while (r->heap_len > 0 && r->heap[0]->deadline <= now) {
        struct member *m = r->heap[0];
        r->tick_examined++;
        uint64_t due = deadline_of(r, m);
        if (due > now) {
            /* A key left early by seen_unparked_locked: put it right. */
            m->deadline = due;
            heap_down(r, 0);
            continue;
        }
        if (m->parked) {
            struct reg_waiter *w = take_parked_locked(r, m, now);
            if (w) {
                r->wait_timeouts++;
                w->wake(w, REG_WAKE_IDLE, NULL);
            }
        } else if (r->cfg.no_notes) {
            /* --cluster: only a local shadow goes (no wait here for long);
             * the member's own timeout is the cluster's (cluster.c). */
            remove_locked(r, m, now);
        } else {
            pend_locked(r, PEND_TIMEOUT, m->id, 0);
            r->timeouts++;
            removed++;
            remove_locked(r, m, now);
        }
        if (r->npend + REG_PEND_PER_REMOVAL > REG_PEND_MAX) {
            /* Write what is due before the next removal could overflow it. */
            unlock_and_log(r);
            pthread_mutex_lock(&r->lock);
        }
    }
    if (r->log_len > 0)
        log_trim_locked(r);
    unlock_and_log(r);
    return removed;
}

void reg_shutdown(registry_t *r)
{
    pthread_mutex_lock(&r->lock);
    r->shutting_down = true;
    for (struct member *m = r->first; m; m = m->next) {
        struct reg_waiter *w = take_parked_locked(r, m, m->last_seen > m->parked_at ? m->last_seen : m->parked_at);
        if (w)
            w->wake(w, REG_WAKE_SHUTDOWN, NULL);
    }
    unlock_and_log(r);
}

void reg_get_stats(registry_t *r, reg_stats_t *out)
{
    pthread_mutex_lock(&r->lock);
    out->members = r->count;
    out->parked = r->parked;
    out->notes_logged = r->log_len;
    out->notes_dropped = r->dropped_notes;
    out->messages_accepted = r->accepted;
    out->messages_refused = r->refused;
    out->messages_dropped = r->dropped;
    out->timeouts = r->timeouts;
    out->wait_timeouts = r->wait_timeouts;
    out->tick_examined = r->tick_examined;
    out->queued_msgs = r->q_msgs;
    out->queued_bytes = r->q_bytes;
    unlock_and_log(r);
}
