/* The media tests' helpers: see media_util.h. */
#include "media_util.h"
#include "strlit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static struct proc cli_procs[T_MAX_PROCS];

int media_teardown(void **state)
{
    memset(cli_procs, 0, sizeof cli_procs);
    return h_teardown(state); /* kills and frees the processes */
}

static const char *client_path(void)
{
    const char *p = getenv("PCSIG_CLIENT");
    return p && *p ? p : "build/pcsig-client";
}

bool media_built(void)
{
    static int built = -1;
    if (built < 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' --version", client_path());
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        char out[512];
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = '\0';
        pclose(f);
        built = strstr(out, "media: GStreamer") != NULL;
    }
    return built;
}

bool tsan_build(void)
{
    const char *san = getenv("PCSIG_SANITIZE");
    return san && strstr(san, "thread");
}

struct proc *cli_spawn_json(const h_server_t *s, const char *name, const char *const *args)
{
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)s->port);
    const char *argv[32];
    size_t n = 0;
    argv[n++] = client_path();
    argv[n++] = "--json";
    argv[n++] = "--server";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--name";
    argv[n++] = name;
    for (; args && *args && n < 26; args++)
        argv[n++] = *args;
    if (h_tls_mode()) {
        argv[n++] = "--tls";
        argv[n++] = "--ca";
        argv[n++] = h_tls_ca();
    }
    argv[n] = NULL;
    /* Under ASan (make check): GLib's load-time allocations are suppressed
     * (tests/lsan-media.supp), which needs stacks unwound in full. */
    char **envp = environ, *extra[3] = {NULL, NULL, NULL};
    const char *san = getenv("PCSIG_SANITIZE");
    if (san && strstr(san, "address")) {
        size_t ne = 0;
        while (environ[ne])
            ne++;
        envp = calloc(ne + 3, sizeof *envp);
        assert_non_null(envp);
        size_t k = 0;
        for (size_t i = 0; i < ne; i++)
            if (strncmp(environ[i], STRLIT("LSAN_OPTIONS=")) != 0 &&
                strncmp(environ[i], STRLIT("ASAN_OPTIONS=")) != 0)
                envp[k++] = environ[i];
        char supp[4096];
        assert_non_null(realpath("tests/lsan-media.supp", supp));
        assert_true(asprintf(&extra[0], "LSAN_OPTIONS=suppressions=%s:print_suppressions=0", supp) > 0);
        assert_true(asprintf(&extra[1], "ASAN_OPTIONS=fast_unwind_on_malloc=0") > 0);
        envp[k++] = extra[0];
        envp[k++] = extra[1];
        envp[k] = NULL;
    }
    size_t i = 0;
    while (i < T_MAX_PROCS && cli_procs[i].h)
        i++;
    assert_true(i < T_MAX_PROCS);
    struct proc *p = &cli_procs[i];
    p->nsent = 0;
    p->h = h_proc_spawn((char *const *)argv, envp, false);
    snprintf(p->h->name, sizeof p->h->name, "%s", name);
    if (envp != environ)
        free(envp);
    free(extra[0]);
    free(extra[1]);
    return p;
}

void cli_send(struct proc *p, const char *line)
{
    h_proc_send(p->h, line);
}

char *cli_line_by(struct proc *p, uint64_t deadline)
{
    char *line = h_proc_line_by(p->h, deadline);
    static const char sent[] = "{\"event\":\"sent\",";
    if (line && strncmp(line, sent, sizeof sent - 1) == 0)
        p->nsent++;
    return line;
}

char *cli_await_(struct proc *p, ...)
{
    uint64_t deadline = h_now_ms() + T_CALL_MS;
    char *last = NULL;
    for (;;) {
        char *line = cli_line_by(p, deadline);
        if (!line) {
            va_list ap;
            va_start(ap, p);
            const char *first = va_arg(ap, const char *);
            va_end(ap);
            fail_msg("%s: no line with \"%s\" within %d ms (last: %s)", p->h->name, first,
                     T_CALL_MS, last ? last : "none");
        }
        bool all = true;
        va_list ap;
        va_start(ap, p);
        for (const char *n; (n = va_arg(ap, const char *)) != NULL;)
            if (!strstr(line, n))
                all = false;
        va_end(ap);
        if (all) {
            free(last);
            return line;
        }
        free(last);
        last = line;
    }
}

long long json_num(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(line, pat);
    if (!at)
        return -1;
    return strtoll(at + strlen(pat), NULL, 10);
}

void await_frames(struct proc *p, long long min)
{
    uint64_t deadline = h_now_ms() + T_CALL_MS;
    for (;;) {
        char *line = cli_line_by(p, deadline);
        if (!line)
            fail_msg("%s: no media_stats with >= %lld video and audio frames received within %d ms",
                     p->h->name, min, T_CALL_MS);
        bool ok = strstr(line, "\"event\":\"media_stats\"") &&
                  json_num(line, "video_frames_received") >= min &&
                  json_num(line, "audio_frames_received") >= min &&
                  json_num(line, "video_frames_sent") >= min &&
                  json_num(line, "rtp_bytes_received") > 0;
        free(line);
        if (ok)
            return;
    }
}

void cli_quit(struct proc *p)
{
    close(p->h->in_fd);
    p->h->in_fd = -1;
    cli_wait_for(p, "{\"event\":\"disconnected\"");
    assert_int_equal(h_proc_exit(p->h, T_CALL_MS), 0);
    p->h = NULL;
}

void start_call(const h_server_t *s, struct proc **a, struct proc **b, const char *media_a,
                const char *media_b)
{
    const char *aa[] = {"--media", media_a, "--stats-ms", "300", NULL};
    *a = cli_spawn_json(s, "alice", aa);
    cli_wait_for(*a, "{\"event\":\"signed_in\",\"id\":1,");
    const char *ba[] = {"--media", media_b, "--stats-ms", "300", "--autocall", NULL};
    *b = cli_spawn_json(s, "bob", ba);
    cli_wait_for(*b, "{\"event\":\"call\",\"state\":\"calling\",\"peer\":1}");
    cli_wait_for(*a, "{\"event\":\"call\",\"state\":\"incoming\",\"peer\":2}");
    cli_wait_for(*a, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":2,");
    cli_wait_for(*b, "{\"event\":\"call\",\"state\":\"connected\",\"peer\":1,");
    cli_wait_for(*a, "{\"event\":\"dc_open\",\"peer\":2,\"label\":\"chat\"}");
    cli_wait_for(*b, "{\"event\":\"dc_open\",\"peer\":1,\"label\":\"chat\"}");
}
