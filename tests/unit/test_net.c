/*
 * Unit tests of net's pure parts: net_parse_host_port, the ADDR:PORT form
 * of --metrics-bind (IPv4, bracketed IPv6, names; strict ports; bare IPv6
 * and other malformed values refused with nothing allocated).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

static void expect_ok(const char *in, const char *host, uint16_t port)
{
    char *h = NULL;
    uint16_t p = 1;
    if (net_parse_host_port(in, &h, &p) != 0)
        fail_msg("\"%s\" refused", in);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
    free(h);
}

static void expect_bad(const char *in)
{
    char *h = NULL;
    uint16_t p = 7;
    if (net_parse_host_port(in, &h, &p) != -EINVAL)
        fail_msg("\"%s\" accepted", in);
    assert_null(h);
    assert_int_equal(p, 7);
}

static void test_accepted_forms(void **state)
{
    (void)state;
    expect_ok("127.0.0.1:9100", "127.0.0.1", 9100);
    expect_ok("[::1]:9100", "::1", 9100);
    expect_ok("localhost:9100", "localhost", 9100);
    expect_ok("0.0.0.0:0", "0.0.0.0", 0);
    expect_ok("[fe80::1%lo]:65535", "fe80::1%lo", 65535);
    expect_ok("[::]:1", "::", 1);
    expect_ok("metrics.example:80", "metrics.example", 80);
}

static void test_refused_forms(void **state)
{
    (void)state;
    const char *bad[] = {
        "",              /* nothing */
        "9100",          /* no host */
        ":9100",         /* empty host */
        "127.0.0.1",     /* no port */
        "127.0.0.1:",    /* empty port */
        "127.0.0.1:65536", /* out of range */
        "127.0.0.1:-1",  /* signed */
        "127.0.0.1:+80", /* signed */
        "127.0.0.1: 80", /* space */
        "127.0.0.1:80 ", /* trailing space */
        "127.0.0.1:0x50", /* hex */
        "127.0.0.1:99999999999999999999", /* overflow */
        "::1:9100",      /* bare IPv6: which colon is the port's? */
        "::1",
        "[::1]",         /* no port */
        "[::1]9100",     /* no colon after the bracket */
        "[::1:9100",     /* unclosed */
        "[]:9100",       /* empty host */
        "a]:9100",       /* stray bracket */
        "[a[b]:9100",
        "host:80:90",    /* two ports */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_bad(bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_forms),
        cmocka_unit_test(test_refused_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
