/*
 * cli_exec: --exec CMD. Each message runs CMD with /bin/sh, the body on its
 * stdin (a memfd, so the event loop never blocks on the child), the sender
 * in $PCSIG_FROM and the type in $PCSIG_CONTENT_TYPE. At most one child per
 * peer and exec_max in all; the other messages wait in order in a bounded
 * queue, then are dropped with a warning.
 */
#include "cli.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "strlit.h"

extern char **environ;

/* Run the --exec command for one message: body on stdin (a memfd, so the
 * event loop never blocks on the child), PCSIG_FROM and PCSIG_CONTENT_TYPE
 * in the environment. Returns the child's pid (reaped on SIGCHLD, see
 * exec_reap), or 0 after reporting why it could not start. */
static pid_t run_exec(struct cli *cli, const struct exec_job *ev)
{
    int fd = memfd_create("pcsig-message", MFD_CLOEXEC);
    if (fd < 0) {
        cli_error(cli, "--exec: memfd_create failed", NULL);
        return 0;
    }
    size_t off = 0;
    while (off < ev->len) {
        ssize_t w = write(fd, ev->data + off, ev->len - off);
        if (w <= 0) {
            close(fd);
            cli_error(cli, "--exec: cannot store the message", NULL);
            return 0;
        }
        off += (size_t)w;
    }
    (void)lseek(fd, 0, SEEK_SET);

    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 3, sizeof *envp);
    char from[64], *ctype = NULL;
    snprintf(from, sizeof from, "PCSIG_FROM=%llu", (unsigned long long)ev->from);
    if (ev->ctype) {
        buf_t b;
        buf_init(&b, strlen(ev->ctype) + 32);
        if (buf_printf(&b, "PCSIG_CONTENT_TYPE=%s", ev->ctype) == 0 &&
            buf_append(&b, "", 1) == 0)
            ctype = b.data;
        else
            buf_free(&b);
    }
    if (!envp) {
        close(fd);
        free(ctype);
        cli_error(cli, "--exec: out of memory", NULL);
        return 0;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        if (strncmp(environ[i], STRLIT("PCSIG_FROM=")) != 0 &&
            strncmp(environ[i], STRLIT("PCSIG_CONTENT_TYPE=")) != 0)
            envp[k++] = environ[i];
    }
    envp[k++] = from;
    if (ctype)
        envp[k++] = ctype;
    envp[k] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, STDIN_FILENO);
    posix_spawnattr_init(&at);
    /* Our blocked signals (signalfd) and ignored SIGPIPE are not the child's. */
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {"sh", "-c", (char *)cli->exec_cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(fd);
    free(envp);
    free(ctype);
    if (rc != 0) {
        char tmp[128];
        cli_error(cli, "--exec: cannot run /bin/sh", log_strerror(rc, tmp, sizeof tmp));
        return 0;
    }
    return pid;
}

static void exec_job_free(struct exec_job *j)
{
    if (j) {
        free(j->ctype);
        free(j->data);
        free(j);
    }
}

static bool exec_peer_busy(const struct cli *cli, uint64_t from)
{
    for (unsigned i = 0; i < cli->exec_max; i++)
        if (cli->children[i].pid && cli->children[i].from == from)
            return true;
    return false;
}

/*
 * Start what may start: the oldest waiting message of each peer that has
 * no child running, while fewer than exec_max run. A peer's messages thus
 * run one after another, in order, and many peers share exec_max children.
 */
static void exec_pump(struct cli *cli)
{
    struct exec_job **link = &cli->jobs_head, *prev = NULL;
    while (*link && cli->nchildren < cli->exec_max) {
        struct exec_job *j = *link;
        if (exec_peer_busy(cli, j->from)) {
            prev = j;
            link = &j->next;
            continue;
        }
        *link = j->next;
        if (cli->jobs_tail == j)
            cli->jobs_tail = prev;
        cli->njobs--;
        cli->jobs_bytes -= j->len;
        pid_t pid = run_exec(cli, j);
        if (pid > 0) {
            for (unsigned i = 0; i < cli->exec_max; i++) {
                if (!cli->children[i].pid) {
                    cli->children[i] = (struct exec_child){.pid = pid, .from = j->from};
                    cli->nchildren++;
                    break;
                }
            }
        }
        exec_job_free(j);
    }
}

/* SIGCHLD: reap our children, then start what waited for them. */
void cli_exec_reap(struct cli *cli)
{
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
        for (unsigned i = 0; i < cli->exec_max; i++) {
            if (cli->children[i].pid == pid) {
                cli->children[i].pid = 0;
                cli->nchildren--;
                break;
            }
        }
    }
    exec_pump(cli);
}

/* A message for --exec: queued (its body taken from ev), then started as
 * soon as exec_pump may; dropped with a warning when the queue is full. */
void cli_exec_message(struct cli *cli, struct pcsig_event *ev)
{
    if (cli->njobs >= CLI_EXEC_QUEUE_MAX || ev->len > CLI_EXEC_QUEUE_BYTES - cli->jobs_bytes) {
        cli->jobs_dropped++;
        log_warn("--exec: %zu messages (%zu bytes) already wait for a child; the message from "
                 "%llu is dropped (%llu so far)", cli->njobs, cli->jobs_bytes,
                 (unsigned long long)ev->peer_id, (unsigned long long)cli->jobs_dropped);
        return;
    }
    struct exec_job *j = calloc(1, sizeof *j);
    if (!j || (ev->content_type && !(j->ctype = strdup(ev->content_type)))) {
        free(j);
        cli_error(cli, "--exec: out of memory; message dropped", NULL);
        return;
    }
    j->from = ev->peer_id;
    j->data = ev->data;
    j->len = ev->len;
    ev->data = NULL; /* ours now */
    ev->len = 0;
    if (cli->jobs_tail)
        cli->jobs_tail->next = j;
    else
        cli->jobs_head = j;
    cli->jobs_tail = j;
    cli->njobs++;
    cli->jobs_bytes += j->len;
    exec_pump(cli);
}

void cli_exec_free(struct cli *cli)
{
    if (cli->njobs)
        fprintf(stderr, "pcsig-client: --exec: %zu waiting message(s) not run (exiting)\n",
                cli->njobs);
    while (cli->jobs_head) {
        struct exec_job *j = cli->jobs_head;
        cli->jobs_head = j->next;
        exec_job_free(j);
    }
    cli->jobs_tail = NULL;
    cli->njobs = 0;
    free(cli->children);
    cli->children = NULL;
}
