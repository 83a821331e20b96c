/*
 * Configuration of the real binary: a --config file and PCSIG_* variables
 * take effect, a flag beats the file, the PCSIG_* variables of the test
 * environment itself (PCSIG_SERVER, PCSIG_TEST_TLS ...) are ignored, and a
 * bad file stops the server with exit status 2 and one line naming
 * file:line. config_load's every rule is tested in tests/unit/test_config.c;
 * this only checks that main wires it up.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char conf_path[32];

/* A config file under /tmp holding text; the teardown removes it. */
static const char *write_conf(const char *text)
{
    snprintf(conf_path, sizeof conf_path, "/tmp/pcsig-conf-XXXXXX");
    int fd = mkstemp(conf_path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
    return conf_path;
}

static int teardown(void **state)
{
    if (conf_path[0])
        unlink(conf_path);
    conf_path[0] = '\0';
    unsetenv("PCSIG_SECURE_IDS");
    return h_teardown(state);
}
#define T(f) cmocka_unit_test_setup_teardown(f, h_setup, teardown)

/* allow-quit from the file (GET /quit is 403 without it); the file's port
 * loses to the harness's --port 0. */
static void test_config_file(void **state)
{
    (void)state;
    const char *path = write_conf("# test\nport = 1\nallow-quit = yes\n");
    h_server_t s;
    h_server_start(&s, "--config", path, (char *)NULL);
    assert_int_not_equal(s.port, 1);
    h_resp_t *r = h_request_str(&s, "GET /quit HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "OK");
    h_resp_free(r);
    assert_int_equal(h_server_await_exit(&s, H_STOP_TIMEOUT_MS), 0);
    h_pass();
}

/* An option from the environment: PCSIG_SECURE_IDS=yes hands out tokens. */
static void test_environment(void **state)
{
    (void)state;
    assert_int_equal(setenv("PCSIG_SECURE_IDS", "yes", 1), 0);
    h_server_t s;
    h_server_start(&s, (char *)NULL);
    h_resp_t *r = h_request_str(&s, "GET /sign_in?alice HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "Added");
    assert_non_null(h_hdr(r, "X-Pcsig-Token"));
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_bad_file(void **state)
{
    (void)state;
    const char *path = write_conf("port = 8888\nprot = 8888\n");
    const char *args[] = {"--config", path, NULL};
    char err[512], want[128];
    assert_int_equal(h_run_server_cmd(args, err, sizeof err, H_TIMEOUT_MS), 2);
    snprintf(want, sizeof want, "pcsig-server: %s:2: unknown key 'prot'\n", path);
    assert_string_equal(err, want);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_config_file),
        T(test_environment),
        T(test_bad_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
