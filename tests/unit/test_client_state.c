/*
 * client_state: the client's one state enum (client_internal.h) and what
 * each state allows: sending only while SIGNED_IN, our id while a session
 * is on (also while a disconnect flushes it), the moves a session's end
 * makes, and which states count as closing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "client_internal.h"

static void test_states(void **state)
{
    (void)state;
    struct pcsig_client_options o = {.server = "127.0.0.1", .port = 1};
    pcsig_client_t *c = pcsig_client_new(&o);
    assert_non_null(c);
    assert_int_equal(c->state, CL_STOPPED);
    c->own_id = 7;

    static const struct {
        enum cl_state s;
        bool closing, signed_in, may_send;
        enum cl_state after_session_off;
    } want[] = {
        {CL_STOPPED, false, false, false, CL_STOPPED},
        {CL_SIGNING_IN, false, false, false, CL_SIGNING_IN},
        {CL_SIGNED_IN, false, true, true, CL_SIGNING_IN},
        {CL_FLUSHING, true, true, false, CL_CLOSING},
        {CL_CLOSING, true, false, false, CL_CLOSING},
        {CL_DEAD, true, false, false, CL_DEAD},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        c->state = want[i].s;
        assert_int_equal(cl_closing(c), want[i].closing);
        assert_int_equal(cl_signed_in(c), want[i].signed_in);
        assert_int_equal(pcsig_client_id(c), want[i].signed_in ? 7 : 0);
        int64_t tok = pcsig_client_send(c, 2, NULL, "x", 1);
        if (want[i].may_send)
            assert_true(tok > 0);
        else
            assert_int_equal(tok, -ENOTCONN);
        cl_session_off(c);
        assert_int_equal(c->state, want[i].after_session_off);
    }
    /* A loss ends the session once: the second report of the same epoch
     * is ignored, and queued messages fail with it. */
    c->state = CL_SIGNED_IN;
    uint64_t epoch = c->epoch;
    pthread_mutex_lock(&c->mu);
    cl_session_lost_locked(c, epoch, LOSS_SERVER, "gone");
    assert_int_equal(c->state, CL_SIGNING_IN);
    assert_int_equal(c->own_id, 0);
    assert_null(c->q_head);
    uint64_t after = c->epoch;
    cl_session_lost_locked(c, epoch, LOSS_ID_GONE, "again");
    assert_int_equal(c->epoch, after);
    assert_int_equal(c->loss, LOSS_SERVER);
    pthread_mutex_unlock(&c->mu);
    /* The message queued above failed: MESSAGE_SENT never, MESSAGE_FAILED once. */
    struct pcsig_event *ev = pcsig_client_next_event(c, 0);
    assert_non_null(ev);
    assert_int_equal(ev->type, PCSIG_EV_MESSAGE_FAILED);
    pcsig_event_free(ev);
    assert_null(pcsig_client_next_event(c, 0));

    c->state = CL_STOPPED; /* nothing runs: free only frees */
    pcsig_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
