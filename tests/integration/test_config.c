/*
 * Configuration of the real binary: a --config file and PCSIG_* variables
 * take effect, a flag beats the file, the PCSIG_* variables of the test
 * environment itself (PCSIG_SERVER, PCSIG_TEST_TLS ...) are ignored, and a
 * bad file stops the server with exit status 2 and one line naming
 * file:line. The --no- forms turn a boolean of the file or the environment
 * off. A bad value that only the host can judge (a --bind address that does
 * not resolve, a file that is not there) is still one line and exit 2; a
 * port in use is one error line and exit 1. config_load's every rule is
 * tested in tests/unit/test_config.c; this only checks that main wires it
 * up.
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

/* --no-allow-quit beats the file's allow-quit = yes: GET /quit is 403. */
static void test_no_flag_beats_file(void **state)
{
    (void)state;
    const char *path = write_conf("allow-quit = yes\n");
    h_server_t s;
    h_server_start(&s, "--config", path, "--no-allow-quit", (char *)NULL);
    h_resp_t *r = h_request_str(&s, "GET /quit HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 403, "Forbidden");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* --secure-ids beats PCSIG_SECURE_IDS=false, and --secure-ids=false beats
 * PCSIG_SECURE_IDS=true. */
static void test_flag_beats_env_both_ways(void **state)
{
    (void)state;
    assert_int_equal(setenv("PCSIG_SECURE_IDS", "false", 1), 0);
    h_server_t s;
    h_server_start(&s, "--secure-ids", (char *)NULL);
    h_resp_t *r = h_request_str(&s, "GET /sign_in?alice HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "Added");
    assert_non_null(h_hdr(r, "X-Pcsig-Token"));
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);

    assert_int_equal(setenv("PCSIG_SECURE_IDS", "true", 1), 0);
    h_server_start(&s, "--secure-ids=false", (char *)NULL);
    r = h_request_str(&s, "GET /sign_in?alice HTTP/1.0\r\n\r\n");
    H_ASSERT_STATUS(r, 200, "Added");
    assert_null(h_hdr(r, "X-Pcsig-Token"));
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

/* How many lines err holds (a last line without '\n' counts). */
static size_t count_lines(const char *err)
{
    size_t n = 0;
    for (const char *p = err; *p; p++)
        n += *p == '\n' || p[1] == '\0';
    return n;
}

/*
 * Run the server with args: it must exit with status want_status and write
 * exactly the one line want_prefix... (prefix match: the rest is the OS's
 * wording) on stderr.
 */
static void expect_one_line_at(int line, const char *const *args, int want_status,
                               const char *want_prefix)
{
    char err[4096];
    int st = h_run_server_cmd(args, err, sizeof err, H_TIMEOUT_MS);
    if (st != want_status || count_lines(err) != 1 || err[strlen(err) - 1] != '\n' ||
        strncmp(err, want_prefix, strlen(want_prefix)) != 0)
        fail_msg("line %d: exit %d (want %d), stderr \"%s\", want one line starting \"%s\"",
                 line, st, want_status, err, want_prefix);
}
#define expect_one_line(args, status, prefix) \
    expect_one_line_at(__LINE__, (args), (status), (prefix))

/* A --bind that is no address: one line naming it, exit 2, not a start-up
 * failure with a second line and a wrong reason. */
static void test_bad_bind(void **state)
{
    (void)state;
    const char *const numeric[] = {"--bind", "300.1.1.1", NULL};
    expect_one_line(numeric, 2,
                    "pcsig-server: bad value '300.1.1.1' for --bind: "
                    "not an IPv4 or IPv6 address\n");
    const char *const name[] = {"--bind", "no-such-host.invalid", NULL};
    expect_one_line(name, 2, "pcsig-server: bad value 'no-such-host.invalid' for --bind: ");
    const char *const foreign[] = {"--bind", "192.0.2.1", NULL};
    expect_one_line(foreign, 2,
                    "pcsig-server: bad value '192.0.2.1' for --bind: "
                    "not an address of this host\n");
    const char *const metrics[] = {"--metrics-bind", "300.1.1.1:9100", NULL};
    expect_one_line(metrics, 2, "pcsig-server: bad value '300.1.1.1:9100' for --metrics-bind: ");
    h_pass();
}

/* Files named by options must be there before start-up: one line naming
 * the option and the file, exit 2. */
static void test_missing_files(void **state)
{
    (void)state;
    const char *present = write_conf("token\n");
    char missing[] = "/tmp/pcsig-missing-XXXXXX";
    int fd = mkstemp(missing);
    assert_true(fd >= 0);
    close(fd);
    unlink(missing);
    char want[256];
    struct {
        const char *opt;
        const char *args[8];
    } cases[] = {
        {"--tls-cert", {"--tls-cert", missing, "--tls-key", present, NULL}},
        {"--tls-key", {"--tls-cert", present, "--tls-key", missing, NULL}},
        {"--tls-client-ca",
         {"--tls-cert", present, "--tls-key", present, "--tls-client-ca", missing, NULL}},
        {"--auth-token-file", {"--auth-token-file", missing, NULL}},
        {"--config", {"--config", missing, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(want, sizeof want, "pcsig-server: %s %s: No such file or directory\n",
                 cases[i].opt, missing);
        expect_one_line(cases[i].args, 2, want);
    }
    const char *const dir[] = {"--auth-token-file", "/tmp", NULL};
    expect_one_line(dir, 2, "pcsig-server: --auth-token-file /tmp: Is a directory\n");
    h_pass();
}

/* A bad value in the config file is echoed escaped: no raw control bytes on
 * the terminal. */
static void test_bad_value_escaped(void **state)
{
    (void)state;
    const char *path = write_conf("port = 1\x1b[31m\n");
    const char *const args[] = {"--config", path, NULL};
    char want[256];
    snprintf(want, sizeof want, "pcsig-server: %s:1: bad value '1\\x1b[31m' for 'port'\n", path);
    expect_one_line(args, 2, want);
    h_pass();
}

/*
 * A port in use is no bad value (exit 1), but still one error line, naming
 * the address, the port and the reason; with --log-level warn (no info
 * records) it is the only line.
 */
static void test_port_in_use(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, (char *)NULL);
    char port[8], want[128];
    snprintf(port, sizeof port, "%u", (unsigned)s.port);
    snprintf(want, sizeof want, "cannot listen on 127.0.0.1 port %s: Address already in use\n",
             port);
    const char *const args[] = {"--port", port, "--log-level", "warn", NULL};
    char err[4096];
    int st = h_run_server_cmd(args, err, sizeof err, H_TIMEOUT_MS);
    size_t n = strlen(err), wn = strlen(want);
    if (st != 1 || count_lines(err) != 1 || n < wn || strcmp(err + n - wn, want) != 0 ||
        !strstr(err, "ERROR"))
        fail_msg("exit %d (want 1), stderr \"%s\", want one ERROR line ending \"%s\"", st, err,
                 want);
    /* At the default level the info records stay, but the error is one line. */
    const char *const plain[] = {"--port", port, NULL};
    st = h_run_server_cmd(plain, err, sizeof err, H_TIMEOUT_MS);
    size_t errors = 0;
    for (const char *p = strstr(err, "ERROR"); p; p = strstr(p + 1, "ERROR"))
        errors++;
    if (st != 1 || errors != 1 || !strstr(err, want) || strstr(err, "could not start"))
        fail_msg("exit %d (want 1), stderr \"%s\": want one ERROR line \"...%s\"", st, err,
                 want);
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
        T(test_no_flag_beats_file),
        T(test_flag_beats_env_both_ways),
        T(test_bad_bind),
        T(test_missing_files),
        T(test_bad_value_escaped),
        T(test_port_in_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
