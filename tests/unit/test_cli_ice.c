/*
 * cli_ice: the one --ice-server URL parser (the option's check and the
 * conductor's hand-over to webrtcbin both use it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cli_ice.h"

static void test_ice_good(void **state)
{
    (void)state;
    static const struct {
        const char *url, *scheme, *rest;
        bool turn;
    } ok[] = {
        {"stun:stun.example.org:3478", "stun", "stun.example.org:3478", false},
        {"stun://127.0.0.1:3478", "stun", "127.0.0.1:3478", false},
        {"stun:h", "stun", "h", false},
        {"turn:u:p@relay:3478", "turn", "u:p@relay:3478", true},
        {"turn://u:p@relay", "turn", "u:p@relay", true},
        {"turns:u:p@relay:5349", "turns", "u:p@relay:5349", true},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct cli_ice_url u;
        const char *why = cli_ice_parse(ok[i].url, &u);
        if (why)
            fail_msg("%s refused: %s", ok[i].url, why);
        assert_string_equal(u.scheme, ok[i].scheme);
        assert_string_equal(u.rest, ok[i].rest);
        assert_int_equal(u.turn, ok[i].turn);
    }
}

static void test_ice_bad(void **state)
{
    (void)state;
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"", "not a stun:, turn: or turns: URL"},
        {"http://x", "not a stun:, turn: or turns: URL"},
        {"stunx:h", "not a stun:, turn: or turns: URL"},
        {"stun", "not a stun:, turn: or turns: URL"},
        {"STUN:h", "not a stun:, turn: or turns: URL"},
        {"stun:", "no host after the scheme"},
        {"stun://", "no host after the scheme"},
        {"turns:", "no host after the scheme"},
        {"turn:relay:3478", "a TURN URL needs credentials: turn:USER:PASS@HOST:PORT"},
        {"turns://relay", "a TURN URL needs credentials: turn:USER:PASS@HOST:PORT"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cli_ice_url u;
        const char *why = cli_ice_parse(bad[i].url, &u);
        if (!why)
            fail_msg("\"%s\" accepted", bad[i].url);
        assert_string_equal(why, bad[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ice_good),
        cmocka_unit_test(test_ice_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
