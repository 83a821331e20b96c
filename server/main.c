/*
 * pcsig-server: configuration, signals and lifecycle. The main thread
 * becomes the signal thread: every signal of interest is blocked before any
 * thread starts, and main waits for them with sigwaitinfo().
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "sdnotify.h"
#include "server.h"

extern char **environ;

/*
 * server_start logs its own one-line reason for every failure that the
 * configuration or the host causes (a port in use, a certificate that does
 * not load, a port file that cannot be written), so a second line here would
 * only repeat it. What it leaves unlogged is running out of resources
 * (memory, threads, epoll watches): name that, so no failure is silent.
 */
static void report_start_failure(int err)
{
    if (err != -ENOMEM && err != -EAGAIN && err != -ENOSPC)
        return;
    char tmp[128];
    fprintf(stderr, "pcsig-server: could not start: %s\n", log_strerror(-err, tmp, sizeof tmp));
}

int main(int argc, char **argv)
{
    struct server_config cfg; /* its strings outlive the server's copy of it */
    int rc = config_load(&cfg, argc, argv, environ, stderr);
    if (rc == CONFIG_EXIT_OK)
        return 0;
    if (rc != CONFIG_OK)
        return 2;
    /* An address that does not resolve or a file that is not there is a bad
     * value (one line, exit 2), not a start-up failure. */
    if (config_preflight(&cfg, stderr) != CONFIG_OK) {
        config_free(&cfg);
        return 2;
    }
    log_set_level(cfg.log_level);
    log_set_format(cfg.log_format);
    log_set_thread_role("main");

    /* SIGPIPE never kills us: sends use MSG_NOSIGNAL and this catches the rest. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct server *srv = server_new(); /* the server's state: one named place */
    int err = srv ? server_start(srv, &cfg) : -ENOMEM;
    if (err < 0) {
        report_start_failure(err);
        server_free(srv);
        config_free(&cfg);
        return 1;
    }
    sdnotify_send("READY=1"); /* Type=notify: start-up is over */
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0)
            continue;
        if (sig == SIGHUP) {
            sdnotify_reloading();
            server_reload(srv);
            sdnotify_send("READY=1");
            continue;
        }
        /* Our own SIGTERM (GET /quit, an acceptor that gave up) says why;
         * one from elsewhere is named as the signal it is. */
        const char *why = si.si_code == SI_USER && si.si_pid == getpid()
                              ? server_quit_reason(srv) : NULL;
        log_info("%s: draining", why ? why : sig == SIGINT ? "SIGINT" : "SIGTERM");
        sdnotify_send("STOPPING=1");
        break;
    }
    server_stop(srv);
    log_info("stopped");
    bool failed = server_failed(srv); /* the acceptor gave up: let a supervisor restart us */
    server_free(srv);
    config_free(&cfg);
    return failed ? 1 : 0;
}
