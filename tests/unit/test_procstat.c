/*
 * Unit tests of procstat: the /proc/self/statm parser on good and bad
 * text, and procstat_read on this very process (memory grows when we touch
 * memory; an fd we open is counted).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The module itself: its static functions are what these tests check. */
#include "procstat.c"

static void test_parse_statm(void **state)
{
    (void)state;
    uint64_t virt = 1, res = 1;
    assert_int_equal(procstat_parse_statm("45000 1200 300 10 0 900 0\n", 4096, &virt, &res), 0);
    assert_true(virt == 45000ull * 4096);
    assert_true(res == 1200ull * 4096);
    /* Two numbers and nothing else is enough. */
    assert_int_equal(procstat_parse_statm("7 3", 100, &virt, &res), 0);
    assert_true(virt == 700 && res == 300);

    static const char *const bad[] = {
        "", "\n", "45000", "45000 ", "x 1", "1 x", "-1 2", "1  2", "1\t2", "1,2 3",
        "99999999999999999999 1", /* above 2^64 - 1 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        virt = res = 77;
        if (procstat_parse_statm(bad[i], 4096, &virt, &res) != -EINVAL)
            fail_msg("accepted bad statm text '%s'", bad[i]);
        assert_true(virt == 77 && res == 77); /* untouched on failure */
    }
    /* Pages times page size must not wrap. */
    assert_int_equal(procstat_parse_statm("18446744073709551615 1", 4096, &virt, &res), -EINVAL);
}

static void test_read_self(void **state)
{
    (void)state;
    struct procstat before, after;
    assert_true(procstat_read(&before));
    assert_true(before.resident_bytes > 0);
    assert_true(before.virtual_bytes >= before.resident_bytes);
    assert_true(before.open_fds > 0);

    /* 64 MiB touched: resident memory must grow by most of it. */
    size_t n = 64u << 20;
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 1, n);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(procstat_read(&after));
    assert_true(after.resident_bytes >= before.resident_bytes + n / 2);
    assert_true(after.open_fds == before.open_fds + 1);
    assert_true(after.cpu_us >= before.cpu_us);
    close(fd);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_statm),
        cmocka_unit_test(test_read_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
