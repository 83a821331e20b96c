/*
 * Unit tests of the registry: sign-in lists, join/leave broadcasts, park and
 * wake, FIFO order, queue bounds, displacement, requeue, and timeouts driven
 * by an injected clock. Waiters are fakes that record what they were handed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The module itself: its static functions are what these tests check. */
#include "registry.c"
#include "log.h"
#include "strlit.h"

struct fake_waiter {
    struct reg_waiter w;
    bool parked;
    bool claimable; /* false: someone else (the poller) got there first */
    int wakes;
    enum reg_wake why;
    reg_item_t *item;
};

static void fake_on_park(struct reg_waiter *w)
{
    ((struct fake_waiter *)w)->parked = true;
}

static bool fake_claim(struct reg_waiter *w)
{
    struct fake_waiter *f = (struct fake_waiter *)w;
    if (!f->parked || !f->claimable)
        return false;
    f->parked = false;
    return true;
}

static void fake_wake(struct reg_waiter *w, enum reg_wake why, reg_item_t *item)
{
    struct fake_waiter *f = (struct fake_waiter *)w;
    f->wakes++;
    f->why = why;
    reg_item_free(f->item);
    f->item = item;
}

static void fake_init(struct fake_waiter *f)
{
    memset(f, 0, sizeof *f);
    f->w.on_park = fake_on_park;
    f->w.claim = fake_claim;
    f->w.wake = fake_wake;
    f->claimable = true;
}

static const reg_config_t cfg = {
    .member_timeout_ms = 30000,
    .wait_timeout_ms = 30000,
    .max_members = 100,
    .queue_max_msgs = 3,
    .queue_max_bytes = 100,
};

static uint64_t sign_in(registry_t *r, const char *name, uint64_t now, char *list_out, size_t cap)
{
    buf_t list;
    buf_init(&list, 1 << 20);
    uint64_t id = 0;
    assert_int_equal(reg_sign_in(r, name, strlen(name), now, &list, &id), 0);
    if (list_out) {
        assert_true(list.len < cap);
        memcpy(list_out, list.data, list.len);
        list_out[list.len] = '\0';
    }
    buf_free(&list);
    return id;
}

static void assert_body(const reg_item_t *it, const char *want)
{
    size_t n;
    const char *b = reg_item_body(it, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(b, want, n);
}

/* Pop the next queued item for id (REG_WAIT_ITEM expected). */
static reg_item_t *pop(registry_t *r, uint64_t id, uint64_t now)
{
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, id, &f.w, now, &it), REG_WAIT_ITEM);
    assert_non_null(it);
    return it;
}

static void test_sign_in_lists(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    char list[4096];
    assert_int_equal(sign_in(r, "alice", 0, list, sizeof list), 1);
    assert_string_equal(list, "alice,1,1\n");
    assert_int_equal(sign_in(r, "bob", 0, list, sizeof list), 2);
    assert_string_equal(list, "bob,2,1\nalice,1,1\n");
    assert_int_equal(sign_in(r, "", 0, list, sizeof list), 3);
    assert_string_equal(list, "peer_3,3,1\nalice,1,1\nbob,2,1\n");
    assert_int_equal(sign_in(r, "a,b\nc", 0, list, sizeof list), 4);
    assert_true(strncmp(list, STRLIT("a_b_c,4,1\n")) == 0);
    /* Alice heard of bob, peer_3 and the fourth, in that order. */
    reg_item_t *it = pop(r, 1, 0);
    assert_int_equal(reg_item_pragma(it), 1);
    assert_body(it, "bob,2,1\n");
    const char *ct;
    size_t ctn;
    assert_true(reg_item_content_type(it, &ct, &ctn));
    assert_int_equal(ctn, 10);
    assert_memory_equal(ct, "text/plain", 10);
    reg_item_free(it);
    it = pop(r, 1, 0);
    assert_body(it, "peer_3,3,1\n");
    reg_item_free(it);
    reg_destroy(r);
}

/* The sign-in list comes from a kept roster: it must follow leaves (the
 * roster is rebuilt) and a sign-in refused for its list's size (-E2BIG:
 * nobody added, the roster unchanged). */
static void test_sign_in_list_after_leaves(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    char list[4096];
    assert_int_equal(sign_in(r, "a", 0, NULL, 0), 1);
    assert_int_equal(sign_in(r, "b", 0, NULL, 0), 2);
    assert_int_equal(sign_in(r, "c", 0, NULL, 0), 3);
    assert_int_equal(reg_sign_out(r, 2, 0), 0);
    assert_int_equal(sign_in(r, "d", 0, list, sizeof list), 4);
    assert_string_equal(list, "d,4,1\na,1,1\nc,3,1\n");
    assert_int_equal(reg_sign_out(r, 1, 0), 0);
    assert_int_equal(reg_sign_out(r, 4, 0), 0);
    buf_t small;
    buf_init(&small, 8); /* "e,5,1\n" fits, "c,3,1\n" after it does not */
    uint64_t id = 0;
    assert_int_equal(reg_sign_in(r, STRLIT("e"), 0, &small, &id), -E2BIG);
    assert_int_equal(small.len, 0);
    buf_free(&small);
    assert_int_equal(sign_in(r, "f", 0, list, sizeof list), 5);
    assert_string_equal(list, "f,5,1\nc,3,1\n");
    assert_int_equal(sign_in(r, "g", 0, list, sizeof list), 6);
    assert_string_equal(list, "g,6,1\nc,3,1\nf,5,1\n");
    reg_destroy(r);
}

static void test_ids_never_reused(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    assert_int_equal(sign_in(r, "x", 0, NULL, 0), 1);
    assert_int_equal(reg_sign_out(r, 1, 0), 0);
    assert_int_equal(reg_sign_out(r, 1, 0), -ENOENT);
    assert_int_equal(sign_in(r, "y", 0, NULL, 0), 2);
    reg_destroy(r);
}

static void test_fifo_and_park(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    reg_item_free(pop(r, a, 0)); /* b's join */
    assert_int_equal(reg_send(r, b, a, STRLIT("text/plain"), true, STRLIT("m0"), 1), 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("m1"), 1), 0);
    reg_item_t *it = pop(r, a, 2);
    assert_int_equal(reg_item_pragma(it), b);
    assert_body(it, "m0");
    reg_item_free(it);
    it = pop(r, a, 2);
    assert_body(it, "m1");
    const char *ct;
    size_t ctn;
    assert_false(reg_item_content_type(it, &ct, &ctn));
    reg_item_free(it);

    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *none = NULL;
    assert_int_equal(reg_wait(r, a, &f.w, 3, &none), REG_WAIT_PARKED);
    assert_true(f.parked);
    assert_int_equal(f.wakes, 0);
    assert_int_equal(reg_send(r, b, a, STRLIT("t"), true, STRLIT("m2"), 4), 0);
    assert_int_equal(f.wakes, 1);
    assert_int_equal(f.why, REG_WAKE_ITEM);
    assert_body(f.item, "m2");
    reg_item_free(f.item);
    reg_destroy(r);
}

static void test_queue_bounds(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("x"), 0), 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("x"), 0), -ENOSPC);
    /* Draining one message (and the join notice) makes room again. */
    reg_item_free(pop(r, a, 0));
    reg_item_free(pop(r, a, 0));
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("x"), 0), 0);
    /* The byte bound: 100 bytes per member. */
    char big[101];
    memset(big, 'z', sizeof big);
    assert_int_equal(reg_send(r, a, b, NULL, 0, false, big, 101, 0), -ENOSPC);
    assert_int_equal(reg_send(r, a, b, NULL, 0, false, big, 100, 0), 0);
    assert_int_equal(reg_send(r, a, b, NULL, 0, false, big, 1, 0), -ENOSPC);
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.messages_refused, 3);
    reg_destroy(r);
}

static void test_unknown_members(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    assert_int_equal(reg_send(r, 99, a, NULL, 0, false, STRLIT("x"), 0), -ENOENT);
    assert_int_equal(reg_send(r, a, 99, NULL, 0, false, STRLIT("x"), 0), -ESRCH);
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, 99, &f.w, 0, &it), -ENOENT);
    assert_int_equal(reg_touch(r, 99, 0), -ENOENT);
    reg_destroy(r);
}

static void test_displaced_wait(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    struct fake_waiter f1, f2;
    fake_init(&f1);
    fake_init(&f2);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &f1.w, 0, &it), REG_WAIT_PARKED);
    assert_int_equal(reg_wait(r, a, &f2.w, 0, &it), REG_WAIT_PARKED);
    assert_int_equal(f1.wakes, 1);
    assert_int_equal(f1.why, REG_WAKE_DISPLACED);
    assert_true(f2.parked);
    reg_destroy(r);
}

static void test_lost_claim_queues(void **state)
{
    (void)state;
    /* The poller claimed the parked wait first: the message must be queued. */
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    reg_item_free(pop(r, a, 0));
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &f.w, 0, &it), REG_WAIT_PARKED);
    f.claimable = false;
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("kept"), 0), 0);
    assert_int_equal(f.wakes, 0);
    reg_unpark(r, &f.w, 0);
    it = pop(r, a, 0);
    assert_body(it, "kept");
    reg_item_free(it);
    reg_destroy(r);
}

static void test_requeue_keeps_order(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    reg_item_free(pop(r, a, 0));
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("first"), 0), 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("second"), 0), 0);
    reg_item_t *it = pop(r, a, 0);
    reg_requeue(r, a, it, 0); /* its write failed */
    it = pop(r, a, 0);
    assert_body(it, "first");
    reg_item_free(it);
    it = pop(r, a, 0);
    assert_body(it, "second");
    reg_item_free(it);
    /* Requeue for a member that left frees the item (ASan checks). */
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("x"), 0), 0);
    it = pop(r, a, 0);
    assert_int_equal(reg_sign_out(r, a, 0), 0);
    reg_requeue(r, a, it, 0);
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.messages_dropped, 1);
    reg_destroy(r);
}

static void test_sign_out_notifies_and_answers_parked(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "bob", 0, NULL, 0);
    reg_item_free(pop(r, a, 0));
    struct fake_waiter fa, fb;
    fake_init(&fa);
    fake_init(&fb);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &fa.w, 0, &it), REG_WAIT_PARKED);
    assert_int_equal(reg_wait(r, b, &fb.w, 0, &it), REG_WAIT_PARKED);
    assert_int_equal(reg_sign_out(r, b, 0), 0);
    /* bob's own parked wait is answered with its own entry, ",0". */
    assert_int_equal(fb.wakes, 1);
    assert_int_equal(fb.why, REG_WAKE_GONE);
    assert_body(fb.item, "bob,2,0\n");
    assert_int_equal(reg_item_pragma(fb.item), b);
    reg_item_free(fb.item);
    /* a hears bob leave at once. */
    assert_int_equal(fa.wakes, 1);
    assert_int_equal(fa.why, REG_WAKE_ITEM);
    assert_body(fa.item, "bob,2,0\n");
    assert_int_equal(reg_item_pragma(fa.item), a);
    reg_item_free(fa.item);
    reg_destroy(r);
}

static void test_member_timeout(void **state)
{
    (void)state;
    reg_config_t c = cfg;
    c.member_timeout_ms = 1000;
    c.wait_timeout_ms = 5000;
    registry_t *r = reg_create(&c);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    reg_item_free(pop(r, a, 100));
    struct fake_waiter fa;
    fake_init(&fa);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &fa.w, 100, &it), REG_WAIT_PARKED);
    assert_int_equal(reg_tick(r, 1000), 0); /* exactly the limit: not yet */
    assert_int_equal(reg_touch(r, b, 500), 0);
    assert_int_equal(reg_tick(r, 1400), 0); /* b refreshed at 500 */
    assert_int_equal(reg_tick(r, 1501), 1); /* b gone; a is parked, so kept */
    assert_int_equal(fa.wakes, 1);
    assert_body(fa.item, "b,2,0\n");
    reg_item_free(fa.item);
    fa.item = NULL;
    /* a's clock restarted when its wait was answered at 1501. */
    assert_int_equal(reg_tick(r, 2400), 0);
    assert_int_equal(reg_tick(r, 2502), 1);
    assert_int_equal(reg_wait(r, a, &fa.w, 2600, &it), -ENOENT);
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.timeouts, 2);
    reg_destroy(r);
}

static void test_wait_timeout_and_shutdown(void **state)
{
    (void)state;
    reg_config_t c = cfg;
    c.wait_timeout_ms = 1000;
    registry_t *r = reg_create(&c);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    reg_item_free(pop(r, a, 0));
    struct fake_waiter fa, fb;
    fake_init(&fa);
    fake_init(&fb);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &fa.w, 0, &it), REG_WAIT_PARKED);
    assert_int_equal(reg_wait(r, b, &fb.w, 500, &it), REG_WAIT_PARKED);
    reg_tick(r, 999);
    assert_int_equal(fa.wakes, 0);
    reg_tick(r, 1000);
    assert_int_equal(fa.wakes, 1);
    assert_int_equal(fa.why, REG_WAKE_IDLE);
    assert_null(fa.item);
    assert_int_equal(fb.wakes, 0);
    reg_shutdown(r);
    assert_int_equal(fb.wakes, 1);
    assert_int_equal(fb.why, REG_WAKE_SHUTDOWN);
    assert_int_equal(reg_wait(r, a, &fa.w, 1100, &it), -ESHUTDOWN);
    buf_t list;
    buf_init(&list, 4096);
    uint64_t id;
    assert_int_equal(reg_sign_in(r, STRLIT("late"), 1100, &list, &id), -ESHUTDOWN);
    buf_free(&list);
    reg_destroy(r);
}

static void test_member_cap(void **state)
{
    (void)state;
    reg_config_t c = cfg;
    c.max_members = 2;
    registry_t *r = reg_create(&c);
    sign_in(r, "a", 0, NULL, 0);
    sign_in(r, "b", 0, NULL, 0);
    buf_t list;
    buf_init(&list, 4096);
    uint64_t id;
    assert_int_equal(reg_sign_in(r, STRLIT("c"), 0, &list, &id), -EUSERS);
    assert_int_equal(list.len, 0);
    buf_free(&list);
    reg_destroy(r);
}

static void test_many_members(void **state)
{
    (void)state;
    /* Grows the hash table and broadcasts to many: every join reaches all. */
    reg_config_t c = cfg;
    c.max_members = 1000;
    registry_t *r = reg_create(&c);
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char name[16];
        int n = snprintf(name, sizeof name, "m%d", i);
        buf_t list;
        buf_init(&list, 1 << 20);
        uint64_t id;
        assert_int_equal(reg_sign_in(r, name, (size_t)n, 0, &list, &id), 0);
        assert_int_equal(id, (uint64_t)i + 1);
        buf_free(&list);
    }
    size_t total = 0;
    for (uint64_t id = 1; id <= N; id++) {
        struct fake_waiter f;
        fake_init(&f);
        reg_item_t *it;
        for (;;) {
            it = NULL;
            int rc = reg_wait(r, id, &f.w, 0, &it);
            if (rc != REG_WAIT_ITEM)
                break;
            total++;
            reg_item_free(it);
        }
        reg_unpark(r, &f.w, 0);
    }
    assert_int_equal(total, (size_t)N * (N - 1) / 2);
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.members, N);
    assert_int_equal(st.parked, 0);
    reg_destroy(r);
}

static void test_sign_out_restarts_clock_at_now(void **state)
{
    (void)state;
    /* Regression: a sign-out used to stamp the others' clocks with time 0,
     * so the members it woke timed out at the next tick. */
    reg_config_t c = cfg;
    c.member_timeout_ms = 1000;
    registry_t *r = reg_create(&c);
    uint64_t a = sign_in(r, "a", 5000, NULL, 0);
    uint64_t b = sign_in(r, "b", 5000, NULL, 0);
    reg_item_free(pop(r, a, 5000));
    struct fake_waiter fa;
    fake_init(&fa);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &fa.w, 5000, &it), REG_WAIT_PARKED);
    assert_int_equal(reg_sign_out(r, b, 5100), 0);
    assert_int_equal(fa.wakes, 1);
    reg_item_free(fa.item);
    fa.item = NULL;
    assert_int_equal(reg_tick(r, 5500), 0);
    assert_int_equal(reg_touch(r, a, 5600), 0);
    reg_destroy(r);
}

static void test_tick_older_than_park(void **state)
{
    (void)state;
    /* Regression: a clock reading taken before a wait parked made the
     * unsigned age wrap and answered the fresh wait as idle. */
    reg_config_t c = cfg;
    c.wait_timeout_ms = 1000;
    registry_t *r = reg_create(&c);
    uint64_t a = sign_in(r, "a", 2000, NULL, 0);
    struct fake_waiter fa;
    fake_init(&fa);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &fa.w, 2000, &it), REG_WAIT_PARKED);
    reg_tick(r, 1999);
    assert_int_equal(fa.wakes, 0);
    reg_destroy(r);
}

static void test_requeue_to_newer_parked_wait(void **state)
{
    (void)state;
    /* Regression: an item whose delivery failed went back to the queue even
     * though the member had already parked a new /wait, and sat there. */
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    reg_item_free(pop(r, a, 0));
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("cut"), 0), 0);
    reg_item_t *it = pop(r, a, 1); /* on its way over the old connection */
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *none = NULL;
    assert_int_equal(reg_wait(r, a, &f.w, 2, &none), REG_WAIT_PARKED);
    reg_requeue(r, a, it, 3); /* the old connection died */
    assert_int_equal(f.wakes, 1);
    assert_int_equal(f.why, REG_WAKE_ITEM);
    assert_body(f.item, "cut");
    reg_item_free(f.item);
    reg_destroy(r);
}

static void test_take_and_requeue_chain(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("m1"), 0), 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("m2"), 0), 0);
    /* Budget for two items (join notice + m1), not three. */
    size_t two = 2 * REG_RECORD_OVERHEAD + 8 + 10 + 2 + 5;
    reg_item_t *chain = reg_take(r, a, two, 100, 1);
    assert_non_null(chain);
    assert_body(chain, "b,2,1\n");
    assert_non_null(reg_item_next(chain));
    assert_body(reg_item_next(chain), "m1");
    assert_null(reg_item_next(reg_item_next(chain)));
    /* Its delivery failed: back in front of m2, in order. */
    reg_requeue(r, a, chain, 2);
    reg_item_t *it = pop(r, a, 3);
    assert_body(it, "b,2,1\n");
    reg_item_free(it);
    chain = reg_take(r, a, 1 << 20, 1, 3); /* at most one item */
    assert_body(chain, "m1");
    assert_null(reg_item_next(chain));
    reg_item_free_chain(chain);
    chain = reg_take(r, a, 1 << 20, 100, 3);
    assert_body(chain, "m2");
    reg_item_free_chain(chain);
    assert_null(reg_take(r, a, 1 << 20, 100, 3));
    assert_null(reg_take(r, 99, 1 << 20, 100, 3));
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.messages_dropped, 0);
    reg_destroy(r);
}

/* The gauges a scrape reads: queued messages and bytes over all members
 * (notifications not counted), through queueing, popping, batching,
 * requeueing and a member leaving; wait timeouts; message stamps. */
static void test_stats_gauges(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 0); /* a's queue holds b's join: no message */
    assert_int_equal(st.queued_bytes, 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("hello"), 1), 0);
    assert_int_equal(reg_send(r, a, b, NULL, 0, false, STRLIT("hi"), 1), 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("abc"), 1), 0);
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 3);
    assert_int_equal(st.queued_bytes, 10);
    assert_int_equal(st.messages_accepted, 3);

    reg_item_t *join = pop(r, a, 2);
    assert_false(reg_item_is_message(join));
    assert_int_equal(reg_item_accepted_us(join), 0);
    reg_item_free(join);
    reg_item_t *hello = pop(r, a, 2);
    assert_true(reg_item_is_message(hello));
    assert_true(reg_item_accepted_us(hello) > 0);
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 2);
    assert_int_equal(st.queued_bytes, 5);
    /* A failed delivery comes back and counts again. */
    reg_requeue(r, a, hello, 3);
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 3);
    assert_int_equal(st.queued_bytes, 10);
    /* A batch takes both of a's messages at once. */
    reg_item_t *chain = reg_take(r, a, 1 << 20, 10, 4);
    assert_non_null(chain);
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 1);
    assert_int_equal(st.queued_bytes, 2);
    reg_requeue(r, a, chain, 5);
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 3);
    assert_int_equal(st.queued_bytes, 10);
    /* b leaves: its queued message is dropped and no longer counted. */
    assert_int_equal(reg_sign_out(r, b, 6), 0);
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 2);
    assert_int_equal(st.queued_bytes, 8);
    assert_int_equal(st.messages_dropped, 1);
    reg_item_free(pop(r, a, 7));
    reg_item_free(pop(r, a, 7));
    reg_item_free(pop(r, a, 7)); /* b's leave */
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_msgs, 0);
    assert_int_equal(st.queued_bytes, 0);

    /* An idle parked wait answered empty counts as a wait timeout. */
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *none = NULL;
    assert_int_equal(reg_wait(r, a, &f.w, 10, &none), REG_WAIT_PARKED);
    reg_get_stats(r, &st);
    assert_int_equal(st.parked, 1);
    reg_tick(r, 10 + cfg.wait_timeout_ms - 1);
    reg_get_stats(r, &st);
    assert_int_equal(st.wait_timeouts, 0);
    reg_tick(r, 10 + cfg.wait_timeout_ms);
    assert_int_equal(f.why, REG_WAKE_IDLE);
    reg_get_stats(r, &st);
    assert_int_equal(st.wait_timeouts, 1);
    assert_int_equal(st.parked, 0);
    reg_destroy(r);
}

/* Nothing more is due for id: a /wait parks (and is taken back). */
static void assert_nothing_due(registry_t *r, uint64_t id, uint64_t now)
{
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, id, &f.w, now, &it), REG_WAIT_PARKED);
    assert_null(it);
    reg_unpark(r, &f.w, now);
}

/* Pop the next item and check its pragma and body. */
static void expect_next(registry_t *r, uint64_t id, uint64_t pragma, const char *body)
{
    reg_item_t *it = pop(r, id, 0);
    assert_true(reg_item_pragma(it) == pragma);
    assert_body(it, body);
    reg_item_free(it);
}

/* Notifications come from the shared log, messages from the member's queue:
 * a member that did not poll meanwhile sees both in the order they happened,
 * one by one and in a batch, and never its own join or leave. */
static void test_notes_and_messages_interleave(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t x = sign_in(r, "x", 0, NULL, 0);          /* a: join x */
    assert_int_equal(reg_send(r, x, a, NULL, 0, false, STRLIT("m1"), 0), 0); /* a: m1 */
    uint64_t y = sign_in(r, "y", 0, NULL, 0);          /* a: join y */
    assert_int_equal(reg_send(r, y, a, NULL, 0, false, STRLIT("m2"), 0), 0); /* a: m2 */
    assert_int_equal(reg_sign_out(r, y, 0), 0);        /* a: leave y */
    assert_int_equal(reg_send(r, x, a, NULL, 0, false, STRLIT("m3"), 0), 0); /* a: m3 */
    expect_next(r, a, a, "x,2,1\n");
    expect_next(r, a, x, "m1");
    expect_next(r, a, a, "y,3,1\n");
    expect_next(r, a, y, "m2");
    expect_next(r, a, a, "y,3,0\n");
    expect_next(r, a, x, "m3");
    assert_nothing_due(r, a, 0);
    /* x saw y come and go, never itself. */
    expect_next(r, x, x, "y,3,1\n");
    expect_next(r, x, x, "y,3,0\n");
    assert_nothing_due(r, x, 0);

    /* The same through reg_take, and a failed batch requeued in order. */
    uint64_t z = sign_in(r, "z", 0, NULL, 0);          /* a, x: join z */
    assert_int_equal(reg_send(r, z, a, NULL, 0, false, STRLIT("m4"), 0), 0);
    assert_int_equal(reg_sign_out(r, z, 0), 0);        /* a, x: leave z */
    reg_item_t *chain = reg_take(r, a, 1 << 20, 100, 0);
    const char *want[] = {"z,4,1\n", "m4", "z,4,0\n"};
    size_t k = 0;
    for (reg_item_t *it = chain; it; it = reg_item_next(it), k++) {
        assert_true(k < 3);
        assert_body(it, want[k]);
    }
    assert_int_equal(k, 3);
    reg_requeue(r, a, chain, 0);
    /* Something logged after the failed batch still comes after it. */
    uint64_t v = sign_in(r, "v", 0, NULL, 0);
    expect_next(r, a, a, "z,4,1\n");
    expect_next(r, a, z, "m4");
    expect_next(r, a, a, "z,4,0\n");
    expect_next(r, a, a, "v,5,1\n");
    assert_nothing_due(r, a, 0);
    (void)v;
    reg_destroy(r);
}

/* N members that stop polling while they all leave: one log event per join
 * and leave, not an item per member per event (O(N^2)); the one member
 * still listening at the end gets every event in order, and the log is
 * trimmed once everyone has seen it. */
static void test_mass_sign_out_memory(void **state)
{
    (void)state;
    enum { N = 300 };
    reg_config_t big = cfg;
    big.max_members = N + 10;
    registry_t *r = reg_create(&big);
    uint64_t listener = sign_in(r, "listener", 0, NULL, 0);
    uint64_t ids[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "p%d", i);
        ids[i] = sign_in(r, name, 0, NULL, 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(reg_sign_out(r, ids[i], 0), 0);
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.members, 1);
    assert_true(st.notes_logged <= 2 * N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "p%d,%llu,1\n", i, (unsigned long long)ids[i]);
        expect_next(r, listener, listener, name);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "p%d,%llu,0\n", i, (unsigned long long)ids[i]);
        expect_next(r, listener, listener, name);
    }
    assert_nothing_due(r, listener, 0);
    reg_tick(r, 1); /* trims what everyone has seen */
    reg_get_stats(r, &st);
    assert_int_equal(st.notes_logged, 0);
    reg_destroy(r);
}

/* The byte cap survives a queue over it: a failed delivery is requeued even
 * past the cap (it was accepted, and dropping it would lose it silently), and
 * from then on sends are refused until the queue drains under the cap. The
 * check once subtracted in size_t (cap - queued), which wrapped past the cap
 * and let any size through. The message cap holds the same way. */
static void test_requeue_over_cap(void **state)
{
    (void)state;
    reg_config_t small = cfg;
    small.queue_max_bytes = 10;
    small.queue_max_msgs = 100;
    registry_t *r = reg_create(&small);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    expect_next(r, a, a, "b,2,1\n");
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("12345678"), 0), 0);
    reg_item_t *first = pop(r, a, 0); /* in a worker's hands */
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("123456789"), 0), 0);
    reg_requeue(r, a, first, 0); /* its write failed: 17 bytes queued, cap 10 */
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.queued_bytes, 17);
    static char huge[100000];
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, huge, sizeof huge, 0), -ENOSPC);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("x"), 0), -ENOSPC);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, "", 0, 0), -ENOSPC);
    /* Nothing accepted was lost, in order. */
    expect_next(r, a, b, "12345678");
    /* 9 bytes queued: one more byte fits, two do not. */
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("yz"), 0), -ENOSPC);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("y"), 0), 0);
    expect_next(r, a, b, "123456789");
    expect_next(r, a, b, "y");
    assert_nothing_due(r, a, 0);
    reg_destroy(r);

    /* The message cap: two queued, a third requeued over it. */
    small.queue_max_bytes = 100;
    small.queue_max_msgs = 2;
    r = reg_create(&small);
    a = sign_in(r, "a", 0, NULL, 0);
    b = sign_in(r, "b", 0, NULL, 0);
    expect_next(r, a, a, "b,2,1\n");
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("1"), 0), 0);
    first = pop(r, a, 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("2"), 0), 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("3"), 0), 0);
    reg_requeue(r, a, first, 0);
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("4"), 0), -ENOSPC);
    expect_next(r, a, b, "1");
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("4"), 0), -ENOSPC);
    expect_next(r, a, b, "2");
    assert_int_equal(reg_send(r, b, a, NULL, 0, false, STRLIT("4"), 0), 0);
    reg_destroy(r);
}

/* The next item for id if there is one (NULL when a /wait would park). */
static reg_item_t *try_pop(registry_t *r, uint64_t id)
{
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *it = NULL;
    int rc = reg_wait(r, id, &f.w, 0, &it);
    if (rc == REG_WAIT_PARKED) {
        reg_unpark(r, &f.w, 0);
        return NULL;
    }
    assert_int_equal(rc, REG_WAIT_ITEM);
    return it;
}

static bool body_is(const reg_item_t *it, const char *want)
{
    size_t n;
    const char *b = reg_item_body(it, &n);
    return n == strlen(want) && memcmp(b, want, n) == 0;
}

/*
 * A member that never polls (kept alive by messages to itself, which the
 * router echoes after a reg_touch) while others come and go by the
 * thousand: the log stays within twice the lag bound, a member that keeps
 * up still hears every join and leave in order, and the stalled member,
 * when it finally waits, hears the leave of the member it knew, the message
 * sent to it where it belongs, the joins of the members present now, and of
 * the members that came and went meanwhile at most the last few, each as a
 * whole join-then-leave pair. Unbounded, the log held one event per sign-in
 * and per sign-out.
 */
static void test_stalled_member_log_bounded(void **state)
{
    (void)state;
    enum { LAG = 8, CYCLES = 3000 };
    reg_config_t c = cfg;
    c.note_lag = LAG;
    registry_t *r = reg_create(&c);
    uint64_t k = sign_in(r, "keeper", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    uint64_t s = sign_in(r, "stalled", 0, NULL, 0);
    char line[64];
    expect_next(r, k, k, "b,2,1\n");
    expect_next(r, k, k, "stalled,3,1\n");
    expect_next(r, b, b, "stalled,3,1\n");
    assert_int_equal(reg_sign_out(r, b, 0), 0);
    expect_next(r, k, k, "b,2,0\n");
    assert_int_equal(reg_send(r, k, s, NULL, 0, false, STRLIT("m1"), 0), 0);
    uint64_t cid = 0, did = 0, eid = 0;
    reg_stats_t st;
    size_t most = 0;
    for (int i = 0; i < CYCLES; i++) {
        if (i == 50 || i == 100 || i == 1200) {
            const char *name = i == 50 ? "c" : i == 100 ? "d" : "e";
            uint64_t id = sign_in(r, name, 0, NULL, 0);
            snprintf(line, sizeof line, "%s,%llu,1\n", name, (unsigned long long)id);
            expect_next(r, k, k, line);
            *(i == 50 ? &cid : i == 100 ? &did : &eid) = id;
        }
        if (i == 150) {
            assert_int_equal(reg_sign_out(r, did, 0), 0);
            snprintf(line, sizeof line, "d,%llu,0\n", (unsigned long long)did);
            expect_next(r, k, k, line);
        }
        uint64_t x = sign_in(r, "x", 0, NULL, 0);
        assert_int_equal(reg_sign_out(r, x, 0), 0);
        snprintf(line, sizeof line, "x,%llu,1\n", (unsigned long long)x);
        expect_next(r, k, k, line);
        snprintf(line, sizeof line, "x,%llu,0\n", (unsigned long long)x);
        expect_next(r, k, k, line);
        if (i % 100 == 0) /* the stalled member stays: a message to itself */
            assert_int_equal(reg_touch(r, s, 0), 0);
        reg_get_stats(r, &st);
        if (st.notes_logged > most)
            most = st.notes_logged;
    }
    assert_nothing_due(r, k, 0);
    /* The lag twice, and what the stalled member needs: b's leave, the
     * joins of c, e and of the x signed in at the time. */
    assert_true(most <= 2 * LAG + 4);
    assert_true(st.notes_dropped >= 2 * (CYCLES - 2 * LAG));

    /* The stalled member's catch-up. */
    const char *want[4];
    char w0[32], w2[32], w3[32];
    snprintf(w0, sizeof w0, "b,%llu,0\n", (unsigned long long)b);
    snprintf(w2, sizeof w2, "c,%llu,1\n", (unsigned long long)cid);
    snprintf(w3, sizeof w3, "e,%llu,1\n", (unsigned long long)eid);
    want[0] = w0, want[1] = "m1", want[2] = w2, want[3] = w3;
    for (int i = 0; i < 4; i++) {
        reg_item_t *it = try_pop(r, s);
        assert_non_null(it);
        if (!body_is(it, want[i]))
            fail_msg("item %d: want %s", i, want[i]);
        reg_item_free(it);
    }
    /* Then at most the last few that came and went, each as a whole pair. */
    uint64_t open_id = 0, last = 0;
    size_t tail = 0;
    reg_item_t *it;
    while ((it = try_pop(r, s))) {
        size_t n;
        const char *body = reg_item_body(it, &n);
        unsigned long long id;
        int conn;
        assert_int_equal(sscanf(body, "x,%llu,%d", &id, &conn), 2);
        if (conn) {
            assert_int_equal(open_id, 0);
            assert_true(id > last);
            open_id = last = id;
        } else {
            assert_true(id == open_id);
            open_id = 0;
        }
        tail++;
        reg_item_free(it);
    }
    assert_int_equal(open_id, 0);
    assert_true(tail <= 2 * LAG);
    /* c and e never polled either; once everyone has caught up, the log
     * empties. */
    while ((it = try_pop(r, cid)))
        reg_item_free(it);
    while ((it = try_pop(r, eid)))
        reg_item_free(it);
    reg_tick(r, 1);
    reg_get_stats(r, &st);
    assert_int_equal(st.notes_logged, 0);
    reg_destroy(r);
}

/*
 * The drop needs nobody to be between a join and its leave: a member told
 * of a join (it was signed in before, or heard it) still hears the leave
 * however far behind it is, and a member that joins alone leaves cleanly.
 */
static void test_lagging_member_hears_known_leaves(void **state)
{
    (void)state;
    enum { LAG = 4 };
    reg_config_t c = cfg;
    c.note_lag = LAG;
    registry_t *r = reg_create(&c);
    uint64_t a = sign_in(r, "a", 0, NULL, 0); /* alone: no join logged */
    uint64_t s1 = sign_in(r, "s1", 0, NULL, 0);
    uint64_t p = sign_in(r, "p", 0, NULL, 0);
    /* s2 is told of p, then stalls; s1 stalls before it. */
    uint64_t s2 = sign_in(r, "s2", 0, NULL, 0);
    for (int i = 0; i < 200; i++) {
        uint64_t x = sign_in(r, "x", 0, NULL, 0);
        assert_int_equal(reg_sign_out(r, x, 0), 0);
    }
    assert_int_equal(reg_sign_out(r, p, 0), 0);
    assert_int_equal(reg_sign_out(r, a, 0), 0);
    for (int i = 0; i < 200; i++) {
        uint64_t x = sign_in(r, "x", 0, NULL, 0);
        assert_int_equal(reg_sign_out(r, x, 0), 0);
    }
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_true(st.notes_logged <= 2 * LAG + 8);
    char line[32];
    /* s1 heard p and s2 join when they did, then their leaves. */
    snprintf(line, sizeof line, "p,%llu,1\n", (unsigned long long)p);
    expect_next(r, s1, s1, line);
    snprintf(line, sizeof line, "s2,%llu,1\n", (unsigned long long)s2);
    expect_next(r, s1, s1, line);
    snprintf(line, sizeof line, "p,%llu,0\n", (unsigned long long)p);
    expect_next(r, s1, s1, line);
    snprintf(line, sizeof line, "a,%llu,0\n", (unsigned long long)a);
    expect_next(r, s1, s1, line);
    snprintf(line, sizeof line, "p,%llu,0\n", (unsigned long long)p);
    expect_next(r, s2, s2, line);
    snprintf(line, sizeof line, "a,%llu,0\n", (unsigned long long)a);
    expect_next(r, s2, s2, line);
    reg_destroy(r);
}

/* A parked wait whose claim is lost (the client hung up) leaves the
 * notification due: the member's next /wait gets it. */
static void test_lost_claim_keeps_note(void **state)
{
    (void)state;
    registry_t *r = reg_create(&cfg);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &f.w, 0, &it), REG_WAIT_PARKED);
    f.claimable = false;
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    assert_int_equal(f.wakes, 0);
    reg_unpark(r, &f.w, 0);
    expect_next(r, a, a, "b,2,1\n");
    assert_nothing_due(r, a, 0);
    (void)b;
    reg_destroy(r);
}

/* A sink that takes the registry lock (through reg_get_stats): had a record
 * been written under the lock, this would deadlock. Counts the records. */
static registry_t *sink_reg;
static int sink_records;

static void locking_sink(void *arg, const char *rec, size_t len)
{
    (void)arg;
    (void)rec;
    (void)len;
    reg_stats_t st;
    reg_get_stats(sink_reg, &st);
    sink_records++;
}

static void test_logs_after_unlocking(void **state)
{
    (void)state;
    reg_config_t c = cfg;
    c.member_timeout_ms = 1000;
    registry_t *r = reg_create(&c);
    sink_reg = r;
    sink_records = 0;
    log_set_level(LOG_DEBUG);
    assert_int_equal(log_set_sink(locking_sink, NULL), 0);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    uint64_t b = sign_in(r, "b", 0, NULL, 0);
    uint64_t d = sign_in(r, "d", 0, NULL, 0);
    assert_int_equal(reg_send(r, a, b, "text/plain", 10, true, "x", 1, 0), 0);
    assert_int_equal(reg_sign_out(r, b, 10), 0); /* sign_out + messages_dropped */
    assert_int_equal(sink_records, 2);
    assert_int_equal(reg_touch(r, a, 500), 0);
    assert_int_equal(reg_tick(r, 1001), 1); /* d: member_timeout */
    assert_int_equal(sink_records, 3);
    (void)d;
    assert_int_equal(log_set_sink(NULL, NULL), 0);
    log_set_level(LOG_INFO);
    reg_destroy(r);
}

/* A reaper tick looks only at the members whose deadline has come: with
 * 2,000 members of which 5 went silent, a tick examines those 5 (and the
 * parked waits their leaves answered do not count: they were not due). */
static void test_tick_visits_only_expired(void **state)
{
    (void)state;
    reg_config_t c = cfg;
    c.max_members = 3000;
    c.member_timeout_ms = 1000;
    c.wait_timeout_ms = 5000;
    registry_t *r = reg_create(&c);
    enum { N = 2000, SILENT = 5 };
    static uint64_t ids[N];
    for (size_t i = 0; i < N; i++)
        ids[i] = sign_in(r, "m", 0, NULL, 0);
    /* Everyone but the SILENT last ones speaks at 600. */
    for (size_t i = 0; i < N - SILENT; i++)
        assert_int_equal(reg_touch(r, ids[i], 600), 0);
    reg_stats_t st;
    assert_int_equal(reg_tick(r, 1000), 0); /* nobody is due yet */
    reg_get_stats(r, &st);
    assert_int_equal(st.tick_examined, 0);
    assert_int_equal(reg_tick(r, 1001), SILENT);
    reg_get_stats(r, &st);
    assert_int_equal(st.tick_examined, SILENT);
    assert_int_equal(st.members, N - SILENT);
    assert_int_equal(reg_tick(r, 1600), 0); /* exactly the limit: not yet */
    reg_get_stats(r, &st);
    assert_int_equal(st.tick_examined, SILENT);
    assert_int_equal(reg_tick(r, 1601), N - SILENT);
    reg_get_stats(r, &st);
    assert_int_equal(st.tick_examined, N);
    assert_int_equal(st.members, 0);
    assert_int_equal(st.timeouts, N);
    reg_destroy(r);
}

/* A broadcast restarts the clock of each member whose wait it answers
 * without moving it in the heap (its key stays early): the member still
 * times out exactly member_timeout_ms after that answer, not at its old key. */
static void test_woken_member_times_out_on_time(void **state)
{
    (void)state;
    reg_config_t c = cfg;
    c.member_timeout_ms = 1000;
    c.wait_timeout_ms = 500;
    registry_t *r = reg_create(&c);
    uint64_t a = sign_in(r, "a", 0, NULL, 0);
    struct fake_waiter fa;
    fake_init(&fa);
    reg_item_t *it = NULL;
    assert_int_equal(reg_wait(r, a, &fa.w, 0, &it), REG_WAIT_PARKED); /* key 500 */
    uint64_t b = sign_in(r, "b", 100, NULL, 0); /* answers a's wait at 100 */
    assert_int_equal(fa.wakes, 1);
    reg_item_free(fa.item);
    fa.item = NULL;
    assert_int_equal(reg_touch(r, b, 1000), 0);
    reg_stats_t st;
    assert_int_equal(reg_tick(r, 600), 0); /* a's key came, its deadline not */
    reg_get_stats(r, &st);
    assert_int_equal(st.wait_timeouts, 0);
    assert_int_equal(reg_tick(r, 1100), 0); /* exactly the limit: not yet */
    assert_int_equal(reg_tick(r, 1101), 1); /* a, 1000 ms after its answer */
    reg_get_stats(r, &st);
    assert_int_equal(st.members, 1);
    assert_int_equal(reg_tick(r, 2001), 1); /* b */
    reg_destroy(r);
}

/* --cluster shadows: adopted with a given id and no notification; a poke
 * before parking makes the next reg_wait return REG_WAIT_POLL (once), a poke
 * while parked wakes it with REG_WAKE_POLL; reg_drop hands back the own
 * leave line and answers a parked wait GONE; no shadow is timed out with a
 * log record or counted as a member timeout. */
static void test_cluster_shadows(void **state)
{
    (void)state;
    reg_config_t c = cfg;
    c.no_notes = true;
    c.member_timeout_ms = 1000;
    registry_t *r = reg_create(&c);
    assert_int_equal(reg_adopt(r, 42, NULL, 0, 0), 0);
    assert_int_equal(reg_adopt(r, 7, STRLIT("bob"), 0), 0);
    assert_int_equal(reg_adopt(r, 42, STRLIT("alice"), 0), 0); /* names it, keeps it */
    struct fake_waiter f;
    fake_init(&f);
    reg_item_t *it = NULL;
    /* No join or leave was announced to anyone. */
    reg_poke(r, 42);
    assert_int_equal(reg_wait(r, 42, &f.w, 0, &it), REG_WAIT_POLL);
    assert_false(f.parked);
    assert_int_equal(reg_wait(r, 42, &f.w, 0, &it), REG_WAIT_PARKED);
    assert_true(f.parked);
    reg_poke(r, 999); /* unknown: ignored */
    reg_poke(r, 42);
    assert_int_equal(f.wakes, 1);
    assert_int_equal(f.why, REG_WAKE_POLL);
    assert_null(f.item);
    /* Parked again, then the member is gone in the cluster. */
    assert_int_equal(reg_wait(r, 42, &f.w, 0, &it), REG_WAIT_PARKED);
    reg_poke_all(r);
    assert_int_equal(f.wakes, 2);
    assert_int_equal(f.why, REG_WAKE_POLL);
    assert_int_equal(reg_wait(r, 42, &f.w, 0, &it), REG_WAIT_PARKED);
    reg_item_t *own = reg_drop(r, 42, 0);
    assert_non_null(own);
    assert_body(own, "alice,42,0\n");
    reg_item_free_chain(own);
    assert_int_equal(f.wakes, 3);
    assert_int_equal(f.why, REG_WAKE_GONE);
    assert_null(reg_drop(r, 42, 0));
    /* bob's shadow, never parked, goes after the timeout: not a member timeout. */
    assert_int_equal(reg_tick(r, 5000), 0);
    reg_stats_t st;
    reg_get_stats(r, &st);
    assert_int_equal(st.members, 0);
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(reg_wait(r, 7, &f.w, 5000, &it), -ENOENT);
    reg_item_free(f.item);
    f.item = NULL;
    /* reg_item_make: a message as the cluster decodes it. */
    it = reg_item_make(true, 9, 1234, STRLIT("text/plain"), true, "hi", 2);
    assert_non_null(it);
    assert_true(reg_item_is_message(it));
    assert_int_equal(reg_item_pragma(it), 9);
    assert_int_equal(reg_item_accepted_us(it), 1234);
    assert_body(it, "hi");
    reg_item_free_chain(it);
    reg_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notes_and_messages_interleave),
        cmocka_unit_test(test_mass_sign_out_memory),
        cmocka_unit_test(test_lost_claim_keeps_note),
        cmocka_unit_test(test_requeue_over_cap),
        cmocka_unit_test(test_stalled_member_log_bounded),
        cmocka_unit_test(test_lagging_member_hears_known_leaves),
        cmocka_unit_test(test_sign_in_lists),
        cmocka_unit_test(test_sign_in_list_after_leaves),
        cmocka_unit_test(test_ids_never_reused),
        cmocka_unit_test(test_fifo_and_park),
        cmocka_unit_test(test_queue_bounds),
        cmocka_unit_test(test_unknown_members),
        cmocka_unit_test(test_displaced_wait),
        cmocka_unit_test(test_lost_claim_queues),
        cmocka_unit_test(test_requeue_keeps_order),
        cmocka_unit_test(test_sign_out_notifies_and_answers_parked),
        cmocka_unit_test(test_member_timeout),
        cmocka_unit_test(test_wait_timeout_and_shutdown),
        cmocka_unit_test(test_member_cap),
        cmocka_unit_test(test_many_members),
        cmocka_unit_test(test_sign_out_restarts_clock_at_now),
        cmocka_unit_test(test_tick_older_than_park),
        cmocka_unit_test(test_requeue_to_newer_parked_wait),
        cmocka_unit_test(test_take_and_requeue_chain),
        cmocka_unit_test(test_stats_gauges),
        cmocka_unit_test(test_logs_after_unlocking),
        cmocka_unit_test(test_tick_visits_only_expired),
        cmocka_unit_test(test_woken_member_times_out_on_time),
        cmocka_unit_test(test_cluster_shadows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
