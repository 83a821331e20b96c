/*
 * Unit tests of config_load: defaults; the command line, the environment and
 * the config file each alone; their precedence for the same key; the file's
 * syntax; the exact one-line text of every error, with file:line; PCSIG_*
 * variables that name no option (the test environment's own) ignored; the
 * size limits; --help; and dist/pcsig-server.conf against the option list.
 *
 * No test touches the process environment: each passes its own envp. Config
 * files are mkstemp files under /tmp, removed by the teardown even when an
 * assertion fails.
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
#include <sys/stat.h>
#include <unistd.h>

/* The module itself: its static functions are what these tests check. */
#include "config.c"
#include "strlit.h"

/* ---- helpers -------------------------------------------------------------- */

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ENV(...) ((char *const[]){__VA_ARGS__, NULL})

#define MAX_TMP 8
static char tmp_paths[MAX_TMP][32];
static int ntmp;

static int remove_tmp_files(void **state)
{
    (void)state;
    for (int i = 0; i < ntmp; i++)
        unlink(tmp_paths[i]);
    ntmp = 0;
    return 0;
}

/* A new file under /tmp holding p[0..n); removed by the teardown. */
static const char *tmp_file_n(const void *p, size_t n)
{
    assert_true(ntmp < MAX_TMP);
    char *path = tmp_paths[ntmp];
    snprintf(path, sizeof tmp_paths[0], "/tmp/pcsig-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    ntmp++;
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        assert_true(w > 0);
        c += w;
        n -= (size_t)w;
    }
    assert_int_equal(close(fd), 0);
    return path;
}

static const char *tmp_file(const char *text)
{
    return tmp_file_n(text, strlen(text));
}

/* What config_load wrote to its error stream in the last load(). */
static char *err_text;

/*
 * config_load with argv "pcsig-server" + args (NULL-terminated; NULL for
 * none) and envp env (NULL: an empty environment).
 */
static int load(struct server_config *cfg, const char *const *args, char *const *env)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "pcsig-server";
    for (; args && *args; args++) {
        assert_true(argc < 63);
        argv[argc++] = (char *)*args; /* getopt_long reorders argv, never the strings */
    }
    argv[argc] = NULL;
    free(err_text);
    err_text = NULL;
    size_t len;
    FILE *err = open_memstream(&err_text, &len);
    assert_non_null(err);
    int rc = config_load(cfg, argc, argv, env, err);
    assert_int_equal(fclose(err), 0);
    return rc;
}

/* load() that must succeed, with nothing written to the error stream. */
static void load_ok_at(int line, struct server_config *cfg, const char *const *args,
                       char *const *env)
{
    int rc = load(cfg, args, env);
    if (rc != CONFIG_OK || err_text[0] != '\0')
        fail_msg("line %d: config_load returned %d, error text \"%s\"", line, rc, err_text);
}
#define load_ok(cfg, args, env) load_ok_at(__LINE__, (cfg), (args), (env))

/*
 * load() that must fail with exactly the one line printf(fmt, ...) + "\n",
 * leaving nothing owned.
 */
static void expect_error_at(int line, const char *const *args, char *const *env,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void expect_error_at(int line, const char *const *args, char *const *env,
                            const char *fmt, ...)
{
    char *want = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&want, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    struct server_config cfg;
    int rc = load(&cfg, args, env);
    bool same = strncmp(err_text, want, (size_t)n) == 0 && strcmp(err_text + n, "\n") == 0;
    if (rc != CONFIG_ERROR || !same) {
        fail_msg("line %d: config_load returned %d with error text\n  \"%s\"\nwant\n  \"%s\\n\"",
                 line, rc, err_text, want);
    }
    free(want);
    assert_null(cfg.owned);
    assert_null(cfg.tls_cert);
}
#define expect_error(args, env, ...) expect_error_at(__LINE__, (args), (env), __VA_ARGS__)

static void assert_str_or_null(const char *got, const char *want)
{
    if (!want) {
        assert_null(got);
    } else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

/* Every field of a and b equal (strings by content). */
static void assert_same_config(const struct server_config *a, const struct server_config *b)
{
    assert_str_or_null(a->bind, b->bind);
    assert_int_equal(a->port, b->port);
    assert_str_or_null(a->port_file, b->port_file);
    assert_int_equal(a->workers, b->workers);
    assert_int_equal(a->max_connections, b->max_connections);
    assert_int_equal(a->max_members, b->max_members);
    assert_int_equal(a->member_timeout_ms, b->member_timeout_ms);
    assert_int_equal(a->wait_timeout_ms, b->wait_timeout_ms);
    assert_int_equal(a->read_timeout_ms, b->read_timeout_ms);
    assert_int_equal(a->idle_timeout_ms, b->idle_timeout_ms);
    assert_int_equal(a->shutdown_grace_ms, b->shutdown_grace_ms);
    assert_int_equal(a->accept_give_up_ms, b->accept_give_up_ms);
    assert_int_equal(a->max_head, b->max_head);
    assert_int_equal(a->max_body, b->max_body);
    assert_int_equal(a->queue_max_msgs, b->queue_max_msgs);
    assert_int_equal(a->queue_max_bytes, b->queue_max_bytes);
    assert_int_equal(a->allow_quit, b->allow_quit);
    assert_int_equal(a->log_level, b->log_level);
    assert_int_equal(a->log_format, b->log_format);
    assert_int_equal(a->access_log_every, b->access_log_every);
    assert_str_or_null(a->metrics_bind, b->metrics_bind);
    assert_str_or_null(a->tls_cert, b->tls_cert);
    assert_str_or_null(a->tls_key, b->tls_key);
    assert_str_or_null(a->tls_client_ca, b->tls_client_ca);
    assert_int_equal(a->tls_port, b->tls_port);
    assert_int_equal(a->secure_ids, b->secure_ids);
    assert_str_or_null(a->auth_token, b->auth_token);
    assert_str_or_null(a->auth_token_file, b->auth_token_file);
    assert_int_equal(a->max_conns_per_ip, b->max_conns_per_ip);
    assert_int_equal(a->rate_limit, b->rate_limit);
}

/* ---- each source alone ------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    struct server_config cfg, def;
    config_defaults(&def);
    def.workers = config_default_workers(&def);
    assert_int_equal(def.port, 8888);
    assert_int_equal(def.tls_port, -1);
    assert_null(def.owned);
    load_ok(&cfg, NULL, NULL);
    assert_same_config(&cfg, &def);
    assert_null(cfg.owned);
    config_free(&cfg);
    /* An environment with nothing of ours in it changes nothing either. */
    load_ok(&cfg, NULL, ENV("HOME=/root", "PATH=/usr/bin", "PORT=1"));
    assert_same_config(&cfg, &def);
    config_free(&cfg);
}

static void test_flags_alone(void **state)
{
    (void)state;
    const char *const *args = ARGS(
        "--port", "1234", "--bind", "127.0.0.1", "--workers", "3", "--member-timeout", "0.5",
        "--wait-timeout=2", "--allow-quit", "--secure-ids", "--log-level", "debug",
        "--log-format", "json", "--metrics-bind", "127.0.0.1:9100", "--tls-cert", "c.pem",
        "--tls-key", "k.pem", "--tls-port", "0", "--auth-token", "s3cret", "--rate-limit", "5",
        "--access-log", "10", "--max-body-bytes", "0", "--queue-max-bytes", "17179869184");
    struct server_config cfg;
    load_ok(&cfg, args, NULL);
    assert_int_equal(cfg.port, 1234);
    assert_string_equal(cfg.bind, "127.0.0.1");
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.member_timeout_ms, 500);
    assert_int_equal(cfg.wait_timeout_ms, 2000);
    assert_true(cfg.allow_quit);
    assert_true(cfg.secure_ids);
    assert_int_equal(cfg.log_level, LOG_DEBUG);
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_string_equal(cfg.metrics_bind, "127.0.0.1:9100");
    assert_string_equal(cfg.tls_cert, "c.pem");
    assert_string_equal(cfg.tls_key, "k.pem");
    assert_int_equal(cfg.tls_port, 0);
    assert_string_equal(cfg.auth_token, "s3cret");
    assert_int_equal(cfg.rate_limit, 5);
    assert_int_equal(cfg.access_log_every, 10);
    assert_int_equal(cfg.max_body, 0);
    assert_int_equal(cfg.queue_max_bytes, 17179869184ull);
    /* Copies owned by cfg, not pointers into argv. */
    assert_ptr_not_equal(cfg.bind, args[3]);
    assert_non_null(cfg.owned);
    config_free(&cfg);
    assert_null(cfg.owned);
    assert_null(cfg.bind);
    assert_null(cfg.tls_cert);
    config_free(&cfg); /* twice is harmless */
    config_free(NULL);
}

static void test_env_alone(void **state)
{
    (void)state;
    char *const *env = ENV("PCSIG_PORT=1234", "PCSIG_TLS_CERT=/etc/pcsig/server.pem",
                           "PCSIG_TLS_KEY=/etc/pcsig/server.key", "PCSIG_AUTH_TOKEN=tok",
                           "PCSIG_ALLOW_QUIT=yes", "PCSIG_LOG_FORMAT=json",
                           "PCSIG_METRICS_BIND=127.0.0.1:9100", "PCSIG_MAX_CONNS_PER_IP=7",
                           "PCSIG_READ_TIMEOUT=2.5", "PCSIG_PORT_FILE=/tmp/port",
                           "PCSIG_MAX_HEADER_BYTES=8192");
    struct server_config cfg;
    load_ok(&cfg, NULL, env);
    assert_int_equal(cfg.port, 1234);
    assert_string_equal(cfg.tls_cert, "/etc/pcsig/server.pem");
    assert_string_equal(cfg.tls_key, "/etc/pcsig/server.key");
    assert_string_equal(cfg.auth_token, "tok");
    assert_true(cfg.allow_quit);
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_string_equal(cfg.metrics_bind, "127.0.0.1:9100");
    assert_int_equal(cfg.max_conns_per_ip, 7);
    assert_int_equal(cfg.read_timeout_ms, 2500);
    assert_string_equal(cfg.port_file, "/tmp/port");
    assert_int_equal(cfg.max_head, 8192);
    assert_ptr_not_equal(cfg.auth_token, env[3] + strlen("PCSIG_AUTH_TOKEN="));
    config_free(&cfg);
}

static void test_file_alone(void **state)
{
    (void)state;
    const char *path = tmp_file("port = 8889\n"
                                "tls-cert = /etc/pcsig/server.pem\n"
                                "tls-key = /etc/pcsig/server.key\n"
                                "log-format = json\n"
                                "metrics-bind = 127.0.0.1:9100\n"
                                "idle-timeout = 90\n"
                                "secure-ids = true\n"
                                "queue-max-msgs = 50\n");
    struct server_config cfg;
    load_ok(&cfg, ARGS("--config", path), NULL);
    assert_int_equal(cfg.port, 8889);
    assert_string_equal(cfg.tls_cert, "/etc/pcsig/server.pem");
    assert_string_equal(cfg.tls_key, "/etc/pcsig/server.key");
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_string_equal(cfg.metrics_bind, "127.0.0.1:9100");
    assert_int_equal(cfg.idle_timeout_ms, 90000);
    assert_true(cfg.secure_ids);
    assert_int_equal(cfg.queue_max_msgs, 50);
    config_free(&cfg);

    /* The same file named by PCSIG_CONFIG. */
    char *env_line = NULL;
    assert_true(asprintf(&env_line, "PCSIG_CONFIG=%s", path) > 0);
    load_ok(&cfg, NULL, ENV(env_line));
    assert_int_equal(cfg.port, 8889);
    assert_string_equal(cfg.tls_cert, "/etc/pcsig/server.pem");
    config_free(&cfg);
    free(env_line);
}

/* ---- precedence -------------------------------------------------------------- */

/* flag > environment > file > default, for every combination of sources. */
static void test_precedence(void **state)
{
    (void)state;
    const char *path = tmp_file("port = 1001\nallow-quit = true\ntls-cert = file.pem\n"
                                "tls-key = file.key\nworkers = 7\n");
    char *conf = NULL;
    assert_true(asprintf(&conf, "PCSIG_CONFIG=%s", path) > 0);
    struct server_config def;
    config_defaults(&def);
    def.workers = config_default_workers(&def);
    for (int mask = 0; mask < 8; mask++) {
        bool file = mask & 1, env = mask & 2, flag = mask & 4;
        char *envp[4] = {NULL};
        int ne = 0;
        if (file)
            envp[ne++] = conf;
        if (env)
            envp[ne++] = "PCSIG_PORT=1002", envp[ne++] = "PCSIG_TLS_CERT=env.pem";
        struct server_config cfg;
        if (flag)
            load_ok(&cfg, ARGS("--port", "1003", "--tls-cert", "flag.pem", "--tls-key", "k"),
                    envp);
        else if (file || !env)
            load_ok(&cfg, NULL, envp);
        else /* a certificate from the environment alone wants its key too */
            load_ok(&cfg, ARGS("--tls-key", "k"), envp);
        int want_port = flag ? 1003 : env ? 1002 : file ? 1001 : 8888;
        const char *want_cert = flag ? "flag.pem" : env ? "env.pem" : file ? "file.pem" : NULL;
        if (cfg.port != want_port)
            fail_msg("file %d env %d flag %d: port %u, want %d", file, env, flag,
                     (unsigned)cfg.port, want_port);
        assert_str_or_null(cfg.tls_cert, want_cert);
        /* Keys only the file sets still come from the file. */
        assert_int_equal(cfg.workers, file ? 7 : def.workers);
        assert_int_equal(cfg.allow_quit, file);
        config_free(&cfg);
    }
    /* A boolean the file turns on, the environment turns off again. */
    struct server_config cfg;
    load_ok(&cfg, NULL, ENV(conf, "PCSIG_ALLOW_QUIT=false"));
    assert_false(cfg.allow_quit);
    config_free(&cfg);
    /* ... and the flag on once more. */
    load_ok(&cfg, ARGS("--allow-quit"), ENV(conf, "PCSIG_ALLOW_QUIT=false"));
    assert_true(cfg.allow_quit);
    config_free(&cfg);
    /* Cross-option checks see the merged result: certificate from the file,
     * key from the environment. */
    const char *cert_only = tmp_file("tls-cert = c.pem\n");
    load_ok(&cfg, ARGS("--config", cert_only), ENV("PCSIG_TLS_KEY=k.pem"));
    assert_string_equal(cfg.tls_cert, "c.pem");
    assert_string_equal(cfg.tls_key, "k.pem");
    config_free(&cfg);
    free(conf);
}

/* --config beats PCSIG_CONFIG; only one file is read. */
static void test_config_path_precedence(void **state)
{
    (void)state;
    const char *a = tmp_file("port = 1111\n");
    const char *b = tmp_file("port = 2222\nworkers = 9\n");
    char *env_b = NULL;
    assert_true(asprintf(&env_b, "PCSIG_CONFIG=%s", b) > 0);
    struct server_config cfg, def;
    config_defaults(&def);
    def.workers = config_default_workers(&def);
    load_ok(&cfg, ARGS("--config", a), ENV(env_b));
    assert_int_equal(cfg.port, 1111);
    assert_int_equal(cfg.workers, def.workers);
    config_free(&cfg);
    /* The last --config wins, as any repeated flag. */
    load_ok(&cfg, ARGS("--config", a, "--config", b), NULL);
    assert_int_equal(cfg.port, 2222);
    config_free(&cfg);
    free(env_b);
}

/* ---- the file's syntax --------------------------------------------------------- */

static void test_file_syntax(void **state)
{
    (void)state;
    const char *path = tmp_file("# a comment\n"
                                "   # an indented comment: port = 1\n"
                                "\t# a tab-indented one\n"
                                "\n"
                                "   \t  \n"
                                "port=1234\n"
                                "  bind   =   127.0.0.1   \n"
                                "auth-token = \"  spaced token  \"\n"
                                "auth-token-file = /etc/pcsig/tokens#1\n"
                                "tls-cert = \"/path with # and = signs\"\n"
                                "tls-key = k.pem\r\n"
                                "tls-client-ca\t=\tca.pem\n"
                                "allow-quit = Yes\n"
                                "secure-ids = 0\n"
                                "log-level = warn\n"
                                "workers = 2\n"
                                "workers = 5\n"
                                "metrics-bind = [::1]:9100"); /* no final newline */
    struct server_config cfg;
    load_ok(&cfg, ARGS("--config", path), NULL);
    assert_int_equal(cfg.port, 1234);
    assert_string_equal(cfg.bind, "127.0.0.1");
    assert_string_equal(cfg.auth_token, "  spaced token  ");
    assert_string_equal(cfg.auth_token_file, "/etc/pcsig/tokens#1");
    assert_string_equal(cfg.tls_cert, "/path with # and = signs");
    assert_string_equal(cfg.tls_key, "k.pem");
    assert_string_equal(cfg.tls_client_ca, "ca.pem");
    assert_true(cfg.allow_quit);
    assert_false(cfg.secure_ids);
    assert_int_equal(cfg.log_level, LOG_WARN);
    assert_int_equal(cfg.workers, 5); /* the last line of a key wins */
    assert_string_equal(cfg.metrics_bind, "[::1]:9100");
    config_free(&cfg);

    /* An empty file, and one of comments only, set nothing. */
    struct server_config def;
    config_defaults(&def);
    def.workers = config_default_workers(&def);
    load_ok(&cfg, ARGS("--config", tmp_file("")), NULL);
    assert_same_config(&cfg, &def);
    load_ok(&cfg, ARGS("--config", tmp_file("# nothing = here\n\n#port = 1\n")), NULL);
    assert_same_config(&cfg, &def);
}

static void test_file_booleans(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool want;
    } cases[] = {
        {"true", true}, {"false", false}, {"yes", true}, {"no", false}, {"1", true},
        {"0", false},   {"TRUE", true},   {"No", false}, {"\"yes\"", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = NULL;
        assert_true(asprintf(&text, "allow-quit = %s\nsecure-ids = %s\n", cases[i].text,
                             cases[i].text) > 0);
        remove_tmp_files(NULL);
        struct server_config cfg;
        load_ok(&cfg, ARGS("--config", tmp_file(text)), NULL);
        if (cfg.allow_quit != cases[i].want || cfg.secure_ids != cases[i].want)
            fail_msg("'%s' read as %d/%d", cases[i].text, cfg.allow_quit, cfg.secure_ids);
        config_free(&cfg);
        free(text);
    }
    const char *path = tmp_file("allow-quit = on\n");
    expect_error(ARGS("--config", path), NULL, "pcsig-server: %s:1: bad value 'on' for 'allow-quit'",
                 path);
    path = tmp_file("\nsecure-ids = 2\n");
    expect_error(ARGS("--config", path), NULL, "pcsig-server: %s:2: bad value '2' for 'secure-ids'",
                 path);
}

/* ---- every error, word for word ------------------------------------------------- */

static void test_file_errors(void **state)
{
    (void)state;
    const char *p = tmp_file("# pcsig\n\nport = abc\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:3: bad value 'abc' for 'port'", p);
    remove_tmp_files(NULL);

    p = tmp_file("#1\n#2\n#3\n#4\n#5\n#6\n#7\n#8\n#9\n#10\n#11\nprot = 8888\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:12: unknown key 'prot'", p);
    p = tmp_file("config = /etc/other.conf\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: unknown key 'config'", p);
    p = tmp_file("help = true\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: unknown key 'help'", p);
    p = tmp_file("version = 1\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: unknown key 'version'", p);
    p = tmp_file("--port = 1\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: unknown key '--port'", p);
    remove_tmp_files(NULL);

    p = tmp_file("port\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: expected 'key = value'", p);
    p = tmp_file("  = 5\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: expected 'key = value'", p);
    p = tmp_file("port =\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: empty value for 'port'", p);
    p = tmp_file("auth-token = \"\"\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: empty value for 'auth-token'",
                 p);
    remove_tmp_files(NULL);

    p = tmp_file("tls-cert = \"abc\n");
    expect_error(ARGS("--config", p), NULL,
                 "pcsig-server: %s:1: the value of 'tls-cert' has no closing '\"'", p);
    /* '#' starts a comment only at the start of a line. */
    p = tmp_file("tls-cert = \"abc\" # the certificate\n");
    expect_error(ARGS("--config", p), NULL,
                 "pcsig-server: %s:1: the value of 'tls-cert' has no closing '\"'", p);
    p = tmp_file("port = 8888 # the port\n");
    expect_error(ARGS("--config", p), NULL,
                 "pcsig-server: %s:1: bad value '8888 # the port' for 'port'", p);
    p = tmp_file_n("port = 1\nbind = a\0b\n", 19);
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:2: NUL byte in the line", p);
    remove_tmp_files(NULL);

    p = tmp_file("member-timeout = 0\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: bad value '0' for 'member-timeout'",
                 p);
    p = tmp_file("log-level = loud\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: bad value 'loud' for 'log-level'",
                 p);
    p = tmp_file("port = 65536\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: bad value '65536' for 'port'", p);
    /* A bad file is an error even where a flag would override the key:
     * every source given is checked. */
    p = tmp_file("port = -1\n");
    expect_error(ARGS("--config", p, "--port", "1"), NULL,
                 "pcsig-server: %s:1: bad value '-1' for 'port'", p);
}

/* Turn the mkstemp template tmpl into a path that names nothing (the file is
 * made, to own a fresh name, then removed). */
static void make_missing(char *tmpl)
{
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    close(fd);
    unlink(tmpl);
}

static void test_file_unreadable(void **state)
{
    (void)state;
    char missing[] = "/tmp/pcsig-config-missing-XXXXXX";
    make_missing(missing);
    expect_error(ARGS("--config", missing), NULL,
                 "pcsig-server: --config %s: No such file or directory", missing);
    char *env = NULL;
    assert_true(asprintf(&env, "PCSIG_CONFIG=%s", missing) > 0);
    expect_error(NULL, ENV(env), "pcsig-server: PCSIG_CONFIG %s: No such file or directory",
                 missing);
    free(env);
    expect_error(ARGS("--config", "/tmp"), NULL, "pcsig-server: --config /tmp: Is a directory");
}

/* Lines up to CONFIG_MAX_LINE bytes pass; one byte more is an error. */
static void test_line_limit(void **state)
{
    (void)state;
    size_t n = CONFIG_MAX_LINE + 64;
    char *text = malloc(n);
    assert_non_null(text);
    /* "auth-token = xxx...x": exactly CONFIG_MAX_LINE bytes, then a newline. */
    size_t len = (size_t)snprintf(text, n, "auth-token = ");
    memset(text + len, 'x', CONFIG_MAX_LINE - len);
    text[CONFIG_MAX_LINE] = '\n';
    struct server_config cfg;
    load_ok(&cfg, ARGS("--config", tmp_file_n(text, CONFIG_MAX_LINE + 1)), NULL);
    assert_int_equal(strlen(cfg.auth_token), CONFIG_MAX_LINE - len);
    config_free(&cfg);
    /* Line 2: one byte longer (a comment: the limit holds for every line). */
    len = (size_t)snprintf(text, n, "port = 1\n#");
    memset(text + len, 'y', CONFIG_MAX_LINE + 10 - len); /* line 2 starts at byte 9 */
    text[CONFIG_MAX_LINE + 10] = '\n';
    const char *p = tmp_file_n(text, CONFIG_MAX_LINE + 11);
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:2: line longer than %d bytes", p,
                 CONFIG_MAX_LINE);
    free(text);
}

/* Files up to CONFIG_MAX_FILE_BYTES pass; one byte more is an error. */
static void test_file_limit(void **state)
{
    (void)state;
    size_t n = CONFIG_MAX_FILE_BYTES + 1;
    char *text = malloc(n);
    assert_non_null(text);
    /* Comment lines of 64 bytes, "port = 1234" at the very end. */
    memset(text, ' ', n);
    for (size_t i = 0; i + 64 <= n; i += 64)
        text[i] = '#', text[i + 63] = '\n';
    static const char last[] = "\nport = 1234";
    memcpy(text + CONFIG_MAX_FILE_BYTES - (sizeof last - 1), last, sizeof last - 1);
    struct server_config cfg;
    load_ok(&cfg, ARGS("--config", tmp_file_n(text, CONFIG_MAX_FILE_BYTES)), NULL);
    assert_int_equal(cfg.port, 1234);
    config_free(&cfg);
    text[CONFIG_MAX_FILE_BYTES] = '4';
    const char *p = tmp_file_n(text, CONFIG_MAX_FILE_BYTES + 1);
    expect_error(ARGS("--config", p), NULL, "pcsig-server: --config %s: larger than %d bytes", p,
                 CONFIG_MAX_FILE_BYTES);
    free(text);
}

static void test_env_errors(void **state)
{
    (void)state;
    expect_error(NULL, ENV("PCSIG_PORT=abc"), "pcsig-server: bad value 'abc' in PCSIG_PORT");
    /* Values from the environment are taken as they are: no trimming. */
    expect_error(NULL, ENV("PCSIG_PORT= 8888"), "pcsig-server: bad value ' 8888' in PCSIG_PORT");
    expect_error(NULL, ENV("PCSIG_ALLOW_QUIT=maybe"),
                 "pcsig-server: bad value 'maybe' in PCSIG_ALLOW_QUIT");
    expect_error(NULL, ENV("PCSIG_WAIT_TIMEOUT=1.2345"),
                 "pcsig-server: bad value '1.2345' in PCSIG_WAIT_TIMEOUT");
    /* Empty is an error, not "unset": PCSIG_AUTH_TOKEN=$UNSET must not turn
     * authentication off. */
    expect_error(NULL, ENV("PCSIG_AUTH_TOKEN="), "pcsig-server: empty value in PCSIG_AUTH_TOKEN");
    expect_error(NULL, ENV("PCSIG_TLS_CERT="), "pcsig-server: empty value in PCSIG_TLS_CERT");
    expect_error(NULL, ENV("PCSIG_CONFIG="), "pcsig-server: empty value in PCSIG_CONFIG");
    /* The merged result is checked as a whole. */
    expect_error(NULL, ENV("PCSIG_TLS_PORT=8443"),
                 "pcsig-server: --tls-port and --tls-client-ca need --tls-cert and --tls-key");
}

static void test_flag_errors(void **state)
{
    (void)state;
    expect_error(ARGS("--port", "x"), NULL, "pcsig-server: bad value 'x' for --port (see --help)");
    expect_error(ARGS("--port=70000"), NULL,
                 "pcsig-server: bad value '70000' for --port (see --help)");
    expect_error(ARGS("--workers", "0"), NULL,
                 "pcsig-server: bad value '0' for --workers (see --help)");
    expect_error(ARGS("--auth-token="), NULL,
                 "pcsig-server: bad value '' for --auth-token (see --help)");
    expect_error(ARGS("--bogus"), NULL, "pcsig-server: unknown option --bogus (see --help)");
    expect_error(ARGS("--max-connections"), NULL,
                 "pcsig-server: option --max-connections needs a value (see --help)");
    expect_error(ARGS("--config"), NULL, "pcsig-server: option --config needs a value (see --help)");
    expect_error(ARGS("--allow-quit=maybe"), NULL,
                 "pcsig-server: bad value 'maybe' for --allow-quit (see --help)");
    expect_error(ARGS("--secure-ids="), NULL,
                 "pcsig-server: bad value '' for --secure-ids (see --help)");
    expect_error(ARGS("--no-allow-quit=1"), NULL,
                 "pcsig-server: option --no-allow-quit takes no value (see --help)");
    expect_error(ARGS("--no-port"), NULL, "pcsig-server: unknown option --no-port (see --help)");
    expect_error(ARGS("--help=1"), NULL, "pcsig-server: option --help takes no value (see --help)");
    expect_error(ARGS("stray"), NULL, "pcsig-server: unexpected argument 'stray' (see --help)");
    expect_error(ARGS("--tls-cert", "c.pem"), NULL,
                 "pcsig-server: --tls-cert and --tls-key go together (see --help)");
    expect_error(ARGS("--tls-client-ca", "ca.pem"), NULL,
                 "pcsig-server: --tls-port and --tls-client-ca need --tls-cert and --tls-key");
    /* A misspelt flag is reported before any file is read. */
    expect_error(ARGS("--config", "/nonexistent/pcsig.conf", "--bogus"), NULL,
                 "pcsig-server: unknown option --bogus (see --help)");
}

/* The test environment's own PCSIG_* variables, and anything else that names
 * no option, are never looked at, whatever their value. */
static void test_unknown_env_ignored(void **state)
{
    (void)state;
    struct server_config cfg, def;
    config_defaults(&def);
    def.workers = config_default_workers(&def);
    load_ok(&cfg, NULL,
            ENV("PCSIG_SERVER=/work/build/pcsig-server", "PCSIG_BENCH=", "PCSIG_TEST_TLS=1",
                "PCSIG_CLIENT=/work/build/pcsig-client", "PCSIG_TEST_VERBOSE=yes please",
                "PCSIG_TEST_TIMEOUT=300", "PCSIG_HELP=1", "PCSIG_VERSION=", "PCSIG_port=abc",
                "PCSIG_PORTS=1", "PCSIG_=1", "PCSIG_PORT_FILE_X=1", "PCSIGPORT=1", "PCSIG_TLS=x",
                "PCSIG_ALLOW-QUIT=x", "PCSIG_PORT", "PORT=abc"));
    assert_same_config(&cfg, &def);
    config_free(&cfg);
    /* A longer name is not its prefix's: PCSIG_PORT_FILE sets port-file only. */
    load_ok(&cfg, NULL, ENV("PCSIG_PORT_FILE=/tmp/pf", "PCSIG_BENCH=junk"));
    assert_int_equal(cfg.port, def.port);
    assert_string_equal(cfg.port_file, "/tmp/pf");
    config_free(&cfg);
    /* The first of two equal names counts, as with getenv. */
    load_ok(&cfg, NULL, ENV("PCSIG_PORT=1", "PCSIG_PORT=2"));
    assert_int_equal(cfg.port, 1);
    config_free(&cfg);
}

/* ---- booleans: a flag overrides either way ----------------------------------- */

/* The boolean field of cfg named by name ("allow-quit" or "secure-ids"). */
static bool bool_field(const struct server_config *cfg, const char *name)
{
    return strcmp(name, "allow-quit") == 0 ? cfg->allow_quit : cfg->secure_ids;
}

/*
 * For each boolean, each lower source (file, environment) saying true or
 * false, and each flag form: the flag decides. Without the --no- and =BOOL
 * forms, a file or PCSIG_ variable that turned an option on left no flag to
 * turn it off.
 */
static void test_bool_flags_override(void **state)
{
    (void)state;
    static const char *const names[] = {"allow-quit", "secure-ids"};
    static const struct {
        const char *pre, *post; /* around the option's name */
        bool want;
    } flags[] = {
        {"--", "", true},          {"--no-", "", false},     {"--", "=true", true},
        {"--", "=false", false},   {"--", "=yes", true},     {"--", "=NO", false},
        {"--", "=1", true},        {"--", "=0", false},
    };
    for (size_t n = 0; n < 2; n++) {
        const char *name = names[n];
        char var[64];
        snprintf(var, sizeof var, "PCSIG_%s", strcmp(name, "allow-quit") == 0 ? "ALLOW_QUIT"
                                                                                 : "SECURE_IDS");
        for (int lower = 0; lower < 2; lower++) { /* 0: true, 1: false below the flag */
            const char *lv = lower == 0 ? "true" : "false";
            char *text = NULL, *env_line = NULL, *conf = NULL;
            assert_true(asprintf(&text, "%s = %s\n", name, lv) > 0);
            assert_true(asprintf(&env_line, "%s=%s", var, lv) > 0);
            remove_tmp_files(NULL);
            assert_true(asprintf(&conf, "PCSIG_CONFIG=%s", tmp_file(text)) > 0);
            for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
                char flag[64];
                snprintf(flag, sizeof flag, "%s%s%s", flags[f].pre, name, flags[f].post);
                for (int src = 0; src < 2; src++) { /* the file, then the environment */
                    struct server_config cfg;
                    load_ok(&cfg, ARGS(flag), src == 0 ? ENV(conf) : ENV(env_line));
                    if (bool_field(&cfg, name) != flags[f].want)
                        fail_msg("%s = %s in the %s, then %s: %d, want %d", name, lv,
                                 src == 0 ? "file" : "environment", flag,
                                 bool_field(&cfg, name), flags[f].want);
                    config_free(&cfg);
                }
            }
            free(text);
            free(env_line);
            free(conf);
        }
    }
    /* The two cases of the issue, spelt out: file true + --no-x is off;
     * environment false + --x is on; and the last flag wins. */
    const char *path = tmp_file("allow-quit = true\nsecure-ids = yes\n");
    struct server_config cfg;
    load_ok(&cfg, ARGS("--config", path, "--no-allow-quit", "--no-secure-ids"), NULL);
    assert_false(cfg.allow_quit);
    assert_false(cfg.secure_ids);
    config_free(&cfg);
    load_ok(&cfg, ARGS("--allow-quit", "--secure-ids"),
            ENV("PCSIG_ALLOW_QUIT=false", "PCSIG_SECURE_IDS=0"));
    assert_true(cfg.allow_quit);
    assert_true(cfg.secure_ids);
    config_free(&cfg);
    load_ok(&cfg, ARGS("--allow-quit", "--no-allow-quit", "--no-secure-ids", "--secure-ids"),
            NULL);
    assert_false(cfg.allow_quit);
    assert_true(cfg.secure_ids);
    config_free(&cfg);
}

/* ---- untrusted bytes in errors ------------------------------------------------ */

/* Every byte of s printable ASCII, and s one line ending in '\n'. */
static void assert_one_printable_line(const char *s)
{
    size_t n = strlen(s);
    assert_true(n > 1);
    assert_int_equal(s[n - 1], '\n');
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            fail_msg("byte 0x%02x at %zu of \"%s\"", (unsigned char)s[i], i, s);
    }
}

/*
 * A value, a key or a path echoed in an error is escaped (log_escape: \xNN
 * for control and high-bit bytes, '\\' and '"' doubled with a backslash), so
 * a config file cannot write terminal escapes or extra lines to stderr.
 */
static void test_errors_escape_values(void **state)
{
    (void)state;
    const char *p = tmp_file("port = \x1b[2J\x1b[31mred\r\x7f\xc3\xa9\n");
    expect_error(ARGS("--config", p), NULL,
                 "pcsig-server: %s:1: bad value "
                 "'\\x1b[2J\\x1b[31mred\\x0d\\x7f\\xc3\\xa9' for 'port'",
                 p);
    assert_one_printable_line(err_text);
    p = tmp_file("po\x1brt = 1\n");
    expect_error(ARGS("--config", p), NULL, "pcsig-server: %s:1: unknown key 'po\\x1brt'", p);
    p = tmp_file("tls\x07-cert = \"abc\n");
    expect_error(ARGS("--config", p), NULL,
                 "pcsig-server: %s:1: the value of 'tls\\x07-cert' has no closing '\"'", p);
    p = tmp_file("log-level = \"a\\\"b\"\n");
    expect_error(ARGS("--config", p), NULL,
                 "pcsig-server: %s:1: bad value 'a\\\\\\\"b' for 'log-level'", p);
    /* The environment and the command line alike. */
    expect_error(NULL, ENV("PCSIG_PORT=1\n2"), "pcsig-server: bad value '1\\x0a2' in PCSIG_PORT");
    expect_error(ARGS("--workers", "\x1b]0;owned\x07"), NULL,
                 "pcsig-server: bad value '\\x1b]0;owned\\x07' for --workers (see --help)");
    expect_error(ARGS("--bo\ngus"), NULL, "pcsig-server: unknown option --bo\\x0agus (see --help)");
    assert_one_printable_line(err_text);
    expect_error(ARGS("str\x1b" "ay"), NULL,
                 "pcsig-server: unexpected argument 'str\\x1bay' (see --help)");
    /* A long value is cut: the line stays short. */
    char long_val[2048];
    memset(long_val, 'x', sizeof long_val - 1);
    long_val[sizeof long_val - 1] = '\0';
    struct server_config cfg;
    assert_int_equal(load(&cfg, ARGS("--log-level", long_val), NULL), CONFIG_ERROR);
    assert_one_printable_line(err_text);
    assert_true(strlen(err_text) < 400);
    assert_non_null(strstr(err_text, "xxx...' for --log-level"));
}

/* ---- config_preflight: addresses and files --------------------------------------- */

/* config_preflight's error text for a config loaded from args (malloc'd; "" when it passed). */
static char *preflight(const char *const *args, int *rc)
{
    struct server_config cfg;
    load_ok(&cfg, args, NULL);
    char *text = NULL;
    size_t len;
    FILE *err = open_memstream(&text, &len);
    assert_non_null(err);
    *rc = config_preflight(&cfg, err);
    assert_int_equal(fclose(err), 0);
    config_free(&cfg);
    return text;
}

static void expect_preflight_ok_at(int line, const char *const *args)
{
    int rc;
    char *text = preflight(args, &rc);
    if (rc != CONFIG_OK || text[0] != '\0')
        fail_msg("line %d: config_preflight returned %d, error text \"%s\"", line, rc, text);
    free(text);
}
#define expect_preflight_ok(args) expect_preflight_ok_at(__LINE__, (args))

/* config_preflight fails with exactly the one line want + "\n". */
static void expect_preflight_error_at(int line, const char *const *args, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void expect_preflight_error_at(int line, const char *const *args, const char *fmt, ...)
{
    char *want = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&want, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    int rc;
    char *text = preflight(args, &rc);
    if (rc != CONFIG_ERROR || strncmp(text, want, (size_t)n) != 0 || strcmp(text + n, "\n") != 0)
        fail_msg("line %d: config_preflight returned %d with error text\n  \"%s\"\nwant\n"
                 "  \"%s\\n\"", line, rc, text, want);
    free(text);
    free(want);
}
#define expect_preflight_error(args, ...) \
    expect_preflight_error_at(__LINE__, (args), __VA_ARGS__)

static void test_preflight_addresses(void **state)
{
    (void)state;
    expect_preflight_ok(NULL);
    expect_preflight_ok(ARGS("--bind", "127.0.0.1"));
    expect_preflight_ok(ARGS("--bind", "*"));
    expect_preflight_ok(ARGS("--bind", "0.0.0.0"));
    expect_preflight_ok(ARGS("--bind", "localhost"));
    expect_preflight_ok(ARGS("--metrics-bind", "127.0.0.1:9100"));
    expect_preflight_ok(ARGS("--metrics-bind", "*:0"));
    /* Written as a number, so never looked up: a typo, said at once. */
    expect_preflight_error(ARGS("--bind", "300.1.1.1"),
                           "pcsig-server: bad value '300.1.1.1' for --bind: "
                           "not an IPv4 or IPv6 address");
    expect_preflight_error(ARGS("--bind", "::1::2"),
                           "pcsig-server: bad value '::1::2' for --bind: "
                           "not an IPv4 or IPv6 address");
    expect_preflight_error(ARGS("--metrics-bind", "127.0.0.256:9100"),
                           "pcsig-server: bad value '127.0.0.256:9100' for --metrics-bind: "
                           "not an IPv4 or IPv6 address");
    /* An address of another host (TEST-NET-1, RFC 5737) cannot be bound. */
    expect_preflight_error(ARGS("--bind", "192.0.2.1"),
                           "pcsig-server: bad value '192.0.2.1' for --bind: "
                           "not an address of this host");
    /* A name that does not resolve (.invalid never does, RFC 6761): the
     * resolver's reason, which depends on the host's DNS set-up. */
    int rc;
    char *text = preflight(ARGS("--bind", "no-such-host.invalid"), &rc);
    assert_int_equal(rc, CONFIG_ERROR);
    static const char want[] = "pcsig-server: bad value 'no-such-host.invalid' for --bind: ";
    if (strncmp(text, want, sizeof want - 1) != 0)
        fail_msg("error text \"%s\"", text);
    assert_one_printable_line(text);
    free(text);
    /* Escaped like every echoed value. */
    expect_preflight_error(ARGS("--bind", "::\x1b"),
                           "pcsig-server: bad value '::\\x1b' for --bind: "
                           "not an IPv4 or IPv6 address");
}

static void test_preflight_files(void **state)
{
    (void)state;
    char missing[] = "/tmp/pcsig-config-missing-XXXXXX";
    make_missing(missing);
    const char *f = tmp_file("x\n");
    expect_preflight_ok(ARGS("--tls-cert", f, "--tls-key", f, "--tls-client-ca", f,
                             "--auth-token-file", f));
    expect_preflight_error(ARGS("--tls-cert", missing, "--tls-key", f),
                           "pcsig-server: --tls-cert %s: No such file or directory", missing);
    expect_preflight_error(ARGS("--tls-cert", f, "--tls-key", missing),
                           "pcsig-server: --tls-key %s: No such file or directory", missing);
    expect_preflight_error(ARGS("--tls-cert", f, "--tls-key", f, "--tls-client-ca", missing),
                           "pcsig-server: --tls-client-ca %s: No such file or directory",
                           missing);
    expect_preflight_error(ARGS("--auth-token-file", missing),
                           "pcsig-server: --auth-token-file %s: No such file or directory",
                           missing);
    expect_preflight_error(ARGS("--auth-token-file", "/tmp"),
                           "pcsig-server: --auth-token-file /tmp: Is a directory");
    expect_preflight_error(ARGS("--tls-cert", "/tmp/\x1b[1m", "--tls-key", f),
                           "pcsig-server: --tls-cert /tmp/\\x1b[1m: No such file or directory");
    /* Unreadable: root reads any file, so only an unprivileged run can see it. */
    if (geteuid() != 0) {
        const char *secret = tmp_file("token\n");
        assert_int_equal(chmod(secret, 0), 0);
        expect_preflight_error(ARGS("--auth-token-file", secret),
                               "pcsig-server: --auth-token-file %s: Permission denied", secret);
    } else {
        fprintf(stderr, "note: running as root; the unreadable-file case is not tried\n");
    }
}

/* ---- --help, --version and the example file ------------------------------------ */

/* Run config_load with args while fd 1 goes to a file; its text (malloc'd). */
static char *captured_stdout(const char *const *args, int *rc)
{
    fflush(stdout);
    int saved = dup(1);
    assert_true(saved >= 0);
    const char *path = tmp_file("");
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    assert_true(dup2(fileno(f), 1) >= 0);
    struct server_config cfg;
    *rc = load(&cfg, args, NULL);
    fflush(stdout);
    assert_true(dup2(saved, 1) >= 0);
    close(saved);
    /* f shares its file offset with what fd 1 wrote, but it has no buffered
     * data of its own: seek to learn the size. */
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    return text;
}

static void test_help_and_version(void **state)
{
    (void)state;
    int rc;
    /* Neither reads the config file, so a broken one does not hide them. */
    char *help = captured_stdout(ARGS("--config", "/nonexistent/pcsig.conf", "--help"), &rc);
    assert_int_equal(rc, CONFIG_EXIT_OK);
    assert_string_equal(err_text, "");
    assert_non_null(strstr(help, "usage: pcsig-server [options]\n"));
    assert_non_null(strstr(help, "\n  --port N               TCP port, 0 = any free port (default 8888)\n"));
    assert_non_null(strstr(help, "\n  --metrics-bind ADDR:PORT  serve /health and /metrics only there"));
    assert_non_null(strstr(help, "\n  --auth-token-file FILE the same with any token of FILE"));
    assert_non_null(strstr(help, "\n  --allow-quit           let GET /quit stop the server"));
    assert_non_null(strstr(help, "\n                         (default: open-file limit minus 64)\n"));
    assert_non_null(strstr(help, "\n  --config FILE          "));
    assert_non_null(strstr(help, "\n  --help                 this text\n"));
    free(help);
    char *version = captured_stdout(ARGS("--version"), &rc);
    assert_int_equal(rc, CONFIG_EXIT_OK);
    assert_true(strncmp(version, STRLIT("pcsig-server ")) == 0);
    free(version);
}

/*
 * Every option of --help states its default ("(default ...)" somewhere in its
 * text, "none"/"off" where nothing is the default), but --help and
 * --version, which are actions; and every boolean (a row without a value)
 * is followed by its --no- row.
 */
static void test_help_defaults(void **state)
{
    (void)state;
    int rc;
    char *help = captured_stdout(ARGS("--help"), &rc);
    assert_int_equal(rc, CONFIG_EXIT_OK);
    size_t rows = 0, with_default = 0, negations = 0;
    const char *prev_bool = NULL; /* the boolean whose --no- row comes next */
    size_t prev_bool_len = 0;
    for (const char *row = strstr(help, "\n  --"); row; rows++) {
        const char *name = row + 5;
        const char *next = strstr(name, "\n  --");
        size_t row_len = next ? (size_t)(next - row) : strlen(row);
        size_t n = strcspn(name, " \n");
        bool has_arg = name[n] == ' ' && name[n + 1] >= 'A' && name[n + 1] <= 'Z';
        bool is_no = n > STRLIT_LEN("no-") && memcmp(name, STRLIT("no-")) == 0;
        if (prev_bool && !(is_no && n - 3 == prev_bool_len &&
                           memcmp(name + 3, prev_bool, prev_bool_len) == 0))
            fail_msg("--%.*s is not followed by --no-%.*s", (int)prev_bool_len, prev_bool,
                     (int)prev_bool_len, prev_bool);
        bool action = (n == STRLIT_LEN("help") && !memcmp(name, STRLIT("help"))) ||
                      (n == STRLIT_LEN("version") && !memcmp(name, STRLIT("version")));
        char *text = strndup(row, row_len);
        assert_non_null(text);
        if (is_no) {
            negations++;
            if (!strstr(text, "off"))
                fail_msg("--%.*s does not say it turns the option off", (int)n, name);
        } else if (!action) {
            if (strstr(text, "(default"))
                with_default++;
            else
                fail_msg("--help gives no default for --%.*s:%s", (int)n, name, text);
        }
        free(text);
        prev_bool = !has_arg && !is_no && !action ? name : NULL;
        prev_bool_len = n;
        row = next;
    }
    assert_null(prev_bool);
    assert_int_equal(negations, 3); /* allow-quit, secure-ids, web */
    assert_true(with_default >= 31);
    assert_int_equal(rows, with_default + negations + 2);
    free(help);
}

/* Read a whole (small) file; NULL when it cannot be opened. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(fwrite(chunk, 1, n, out), n);
    fclose(f);
    fclose(out);
    return text;
}

/*
 * dist/pcsig-server.conf holds a commented-out "#key = value" line for every
 * option in --help but config, help and version; uncommented, the file loads,
 * and the options with a fixed default show exactly that default.
 */
static void test_dist_example(void **state)
{
    (void)state;
    /* Relative to the top of the tree, where make and run-tests.sh run us. */
    char *dist = slurp("dist/pcsig-server.conf");
    if (!dist) {
        fprintf(stderr, "dist/pcsig-server.conf not found (not run from the top of the tree)\n");
        skip();
    }
    int rc;
    char *help = captured_stdout(ARGS("--help"), &rc);
    size_t checked = 0;
    for (const char *l = strstr(help, "\n  --"); l; l = strstr(l + 1, "\n  --")) {
        const char *name = l + 5;
        size_t n = strcspn(name, " \n");
        if (n > STRLIT_LEN("no-") && memcmp(name, STRLIT("no-")) == 0)
            continue; /* --no-NAME turns a boolean off: a flag, no file key */
        char *want = NULL;
        assert_true(asprintf(&want, "\n#%.*s = ", (int)n, name) > 0);
        bool cli_only = (n == STRLIT_LEN("config") && !memcmp(name, STRLIT("config"))) ||
                        (n == STRLIT_LEN("help") && !memcmp(name, STRLIT("help"))) ||
                        (n == STRLIT_LEN("version") && !memcmp(name, STRLIT("version")));
        if (!cli_only && !strstr(dist, want))
            fail_msg("dist/pcsig-server.conf has no line \"#%.*s = ...\"", (int)n, name);
        if (cli_only && strstr(dist, want))
            fail_msg("dist/pcsig-server.conf lists \"%.*s\", which is no file key", (int)n, name);
        checked += !cli_only;
        free(want);
    }
    assert_true(checked >= 28);
    /* Uncomment every "#key = value" line (a '#' followed by a lower-case
     * letter); prose comments are "# ..." and section titles "## ...". */
    for (char *p = dist; (p = strchr(p, '#')) != NULL; p++) {
        if ((p == dist || p[-1] == '\n') && p[1] >= 'a' && p[1] <= 'z')
            *p = ' ';
    }
    struct server_config cfg, def;
    config_defaults(&def);
    def.workers = config_default_workers(&def);
    load_ok(&cfg, ARGS("--config", tmp_file(dist)), NULL);
    assert_int_equal(cfg.port, def.port);
    assert_int_equal(cfg.max_members, def.max_members);
    assert_int_equal(cfg.member_timeout_ms, def.member_timeout_ms);
    assert_int_equal(cfg.wait_timeout_ms, def.wait_timeout_ms);
    assert_int_equal(cfg.read_timeout_ms, def.read_timeout_ms);
    assert_int_equal(cfg.idle_timeout_ms, def.idle_timeout_ms);
    assert_int_equal(cfg.shutdown_grace_ms, def.shutdown_grace_ms);
    assert_int_equal(cfg.max_head, def.max_head);
    assert_int_equal(cfg.max_body, def.max_body);
    assert_int_equal(cfg.queue_max_msgs, def.queue_max_msgs);
    assert_int_equal(cfg.queue_max_bytes, def.queue_max_bytes);
    assert_int_equal(cfg.allow_quit, def.allow_quit);
    assert_int_equal(cfg.secure_ids, def.secure_ids);
    assert_int_equal(cfg.log_level, def.log_level);
    assert_int_equal(cfg.log_format, def.log_format);
    assert_int_equal(cfg.access_log_every, def.access_log_every);
    config_free(&cfg);
    free(help);
    free(dist);
}

/* The page's options: --no-web, and --ice-server's list (repeated in one
 * source: appended; a later source: replaced) with its checks. */
static void test_web_and_ice(void **state)
{
    (void)state;
    struct server_config cfg;
    load_ok(&cfg, NULL, NULL);
    assert_true(cfg.web);
    assert_null(cfg.ice_servers);
    config_free(&cfg);
    load_ok(&cfg, ARGS("--no-web", "--web-root", "/srv/w"), NULL);
    assert_false(cfg.web);
    assert_string_equal(cfg.web_root, "/srv/w");
    config_free(&cfg);
    load_ok(&cfg, ARGS("--ice-server", "stun:a:3478", "--ice-server=stun:b,stuns:c"), NULL);
    assert_string_equal(cfg.ice_servers, "stun:a:3478,stun:b,stuns:c");
    config_free(&cfg);
    const char *file = tmp_file("ice-server = stun:f1\nice-server = turn:f2\n"
                                "ice-username = u\nice-credential = p\n");
    load_ok(&cfg, ARGS("--config", file), NULL);
    assert_string_equal(cfg.ice_servers, "stun:f1,turn:f2");
    config_free(&cfg);
    load_ok(&cfg, ARGS("--config", file), ENV("PCSIG_ICE_SERVER=stun:e"));
    assert_string_equal(cfg.ice_servers, "stun:e");
    config_free(&cfg);
    load_ok(&cfg, ARGS("--config", file, "--ice-server", "stun:x", "--ice-server", "stun:y"),
            ENV("PCSIG_ICE_SERVER=stun:e"));
    assert_string_equal(cfg.ice_servers, "stun:x,stun:y");
    config_free(&cfg);
    load_ok(&cfg, ARGS("--ice-server", "turns:t", "--ice-secret", "s"), NULL);
    assert_string_equal(cfg.ice_secret, "s");
    config_free(&cfg);
    expect_error(ARGS("--ice-server", "http://x"), NULL,
                 "pcsig-server: bad value 'http://x' for --ice-server: not a stun:, stuns:, "
                 "turn: or turns: URL");
    expect_error(ARGS("--ice-server", "stun:a,stun:b\"c"), NULL,
                 "pcsig-server: bad value 'stun:b\\\"c' for --ice-server: a space, quote, "
                 "backslash or control byte in the URL");
    expect_error(ARGS("--ice-server", "stun:"), NULL,
                 "pcsig-server: bad value 'stun:' for --ice-server: not a stun:, stuns:, "
                 "turn: or turns: URL");
    expect_error(ARGS("--ice-server", ""), NULL,
                 "pcsig-server: bad value '' for --ice-server (see --help)");
    expect_error(ARGS("--ice-credential", "p"), NULL,
                 "pcsig-server: --ice-username and --ice-credential go together");
}

/* --cluster and its companions: the URL is checked at load, the others need it. */
static void test_cluster_options(void **state)
{
    (void)state;
    struct server_config cfg;
    load_ok(&cfg, ARGS("--cluster", "redis://127.0.0.1:6379/2", "--instance-name", "a",
                       "--cluster-password", "pw"), NULL);
    assert_string_equal(cfg.cluster, "redis://127.0.0.1:6379/2");
    assert_string_equal(cfg.instance_name, "a");
    assert_string_equal(cfg.cluster_password, "pw");
    /* Workers block on Redis round trips: more of them unless told. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int cores = ncpu > 0 && ncpu < 64 ? (int)ncpu : 2;
    assert_int_equal(cfg.workers, cores * 4 > 8 ? cores * 4 : 8);
    config_free(&cfg);
    load_ok(&cfg, ARGS("--cluster", "redis://h", "--workers", "3"), NULL);
    assert_int_equal(cfg.workers, 3);
    config_free(&cfg);
    load_ok(&cfg, ARGS("--port", "1"), NULL);
    assert_int_equal(cfg.workers, cores);
    config_free(&cfg);
    load_ok(&cfg, ARGS("--port", "1"), ENV("PCSIG_CLUSTER=redis://[::1]"));
    assert_string_equal(cfg.cluster, "redis://[::1]");
    config_free(&cfg);
    expect_error(ARGS("--cluster", "redis://h:0"), NULL,
                 "pcsig-server: --cluster 'redis://h:0': port is not a number from 1 to 65535 "
                 "(redis://HOST:PORT[/DB])");
    expect_error(ARGS("--instance-name", "a"), NULL,
                 "pcsig-server: --cluster-password, --cluster-password-file and "
                 "--instance-name need --cluster");
    /* The Redis command timeout and the instance lease: 2 s and 3 s unless
     * told; a lease must span at least two 0.5 s heartbeats. */
    load_ok(&cfg, ARGS("--cluster", "redis://h"), NULL);
    assert_int_equal(cfg.cluster_timeout_ms, 2000);
    assert_int_equal(cfg.cluster_lease_ms, 3000);
    config_free(&cfg);
    load_ok(&cfg, ARGS("--cluster", "redis://h", "--cluster-timeout", "0.25", "--cluster-lease",
                       "1"), NULL);
    assert_int_equal(cfg.cluster_timeout_ms, 250);
    assert_int_equal(cfg.cluster_lease_ms, 1000);
    config_free(&cfg);
    expect_error(ARGS("--cluster", "redis://h", "--cluster-lease", "0.9"), NULL,
                 "pcsig-server: --cluster-lease must be at least 1 (seconds)");
    expect_error(ARGS("--cluster", "redis://h", "--cluster-timeout", "0"), NULL,
                 "pcsig-server: bad value '0' for --cluster-timeout (see --help)");
}

#define T(f) cmocka_unit_test_teardown(f, remove_tmp_files)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_flags_alone),
        T(test_env_alone),
        T(test_file_alone),
        T(test_precedence),
        T(test_config_path_precedence),
        T(test_file_syntax),
        T(test_file_booleans),
        T(test_file_errors),
        T(test_file_unreadable),
        T(test_line_limit),
        T(test_file_limit),
        T(test_env_errors),
        T(test_flag_errors),
        T(test_unknown_env_ignored),
        T(test_bool_flags_override),
        T(test_errors_escape_values),
        T(test_preflight_addresses),
        T(test_preflight_files),
        T(test_help_and_version),
        T(test_help_defaults),
        T(test_dist_example),
        T(test_web_and_ice),
        T(test_cluster_options),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(err_text);
    return failed;
}
