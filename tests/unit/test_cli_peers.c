/*
 * cli_peers: the CLI's peer list stays sorted by id whatever the order of
 * joins, a sign-in list and later joins (its capacity is explicit, not
 * implied by powers of two), renames keep one entry, and at most max are
 * kept.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cli.h"

static void assert_sorted(const struct cli_peers *ps)
{
    assert_true(ps->n <= ps->cap);
    for (size_t i = 1; i < ps->n; i++)
        assert_true(ps->v[i - 1].id < ps->v[i].id);
}

static void test_list_then_joins(void **state)
{
    (void)state;
    struct cli_peers ps = {.max = 1000};
    /* A sign-in list of 3 (any order, one id twice: the later name wins),
     * then joins beyond any power of two the list's size implied. */
    struct pcsig_peer list[] = {{9, "c", true}, {3, "a", true}, {5, "b", true}, {3, "a2", true}};
    cli_peers_set_all(&ps, list, 4);
    assert_int_equal(ps.n, 3);
    assert_sorted(&ps);
    assert_string_equal(cli_peers_name(&ps, 3, 0), "a2");
    for (uint64_t id = 100; id > 10; id -= 7) {
        char name[16];
        snprintf(name, sizeof name, "p%llu", (unsigned long long)id);
        cli_peers_add(&ps, id, name);
        assert_sorted(&ps);
    }
    assert_int_equal(ps.n, 3 + 13);
    assert_string_equal(cli_peers_name(&ps, 16, 0), "p16");
    cli_peers_add(&ps, 16, "renamed");
    assert_int_equal(ps.n, 16);
    assert_string_equal(cli_peers_name(&ps, 16, 0), "renamed");
    cli_peers_remove(&ps, 9);
    cli_peers_remove(&ps, 12345); /* not there: nothing */
    assert_int_equal(ps.n, 15);
    assert_sorted(&ps);
    assert_string_equal(cli_peers_name(&ps, 9, 0), "?");
    assert_string_equal(cli_peers_name(&ps, 7, 7), "me");
    cli_peers_clear(&ps);
    assert_int_equal(ps.n, 0);
    assert_int_equal(ps.cap, 0);
    cli_peers_add(&ps, 1, "x"); /* usable again after a clear */
    assert_int_equal(ps.n, 1);
    cli_peers_clear(&ps);
}

static void test_max(void **state)
{
    (void)state;
    struct cli_peers ps = {.max = 4};
    struct pcsig_peer list[] = {{1, "a", true}, {2, "b", true}, {3, "c", true},
                                {4, "d", true}, {5, "e", true}, {6, "f", true}};
    cli_peers_set_all(&ps, list, 6);
    assert_int_equal(ps.n, 4);
    cli_peers_add(&ps, 7, "g"); /* full: not kept */
    assert_int_equal(ps.n, 4);
    cli_peers_add(&ps, 2, "b2"); /* a rename still is */
    assert_string_equal(cli_peers_name(&ps, 2, 0), "b2");
    cli_peers_remove(&ps, 1);
    cli_peers_add(&ps, 7, "g");
    assert_int_equal(ps.n, 4);
    assert_sorted(&ps);
    cli_peers_clear(&ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_then_joins),
        cmocka_unit_test(test_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
