/*
 * pcsig-client: a headless peerconnection client on libpcsig-client.
 *
 * Two faces over one event loop (poll on stdin, the library's event fd, a
 * signalfd, the log queue and the media conductor):
 *   - interactive: text commands (peers, send, call, bye, quit, connect),
 *     events printed as they arrive; on a terminal with line editing and a
 *     "> " prompt that an event never garbles (cli_term.c); elsewhere plain
 *     lines, no prompt, no escapes;
 *   - --json: one command object per input line, one event object per
 *     output line (flushed), for scripts and tests.
 * EOF on stdin, "quit", SIGINT or SIGTERM disconnect cleanly (sign-out).
 *
 * --json before the first sign-in: commands that need a session (send,
 * call, bye, peers) are held and run once signed in, so
 * "echo '{...send...}' | pcsig-client --json" works; everything else is
 * acted on at once. A quit or EOF then ends us as soon as what is held is
 * done: at once when nothing is held; after the sign-in when it succeeds;
 * and when the server is (or turns out) unreachable, the held commands are
 * run without a session (each reports an error event) and we exit 1, so a
 * script never waits on a dead server.
 *
 * This file: the loop, and what each event changes (the peer list, our id,
 * --exec, autocall, held commands); how events look is cli_render.c's.
 */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "log.h"

static void autocall_check(struct cli *cli)
{
    if (!cli->autocall || cli->autocall_done || cli->peers.n == 0)
        return;
    cli->autocall_done = true;
    uint64_t to = cli->peers.v[0].id; /* the list is id-ordered */
    if (!cli->json)
        cli_say(cli, "autocall: calling %llu", (unsigned long long)to);
    cli_send_offer(cli, to);
}

/* What ev changes in the CLI (after it is rendered: the text of
 * DISCONNECTED says whether we were quitting). */
static void apply_event(struct cli *cli, struct pcsig_event *ev)
{
    switch (ev->type) {
    case PCSIG_EV_SIGNED_IN:
        cli->unreachable = false;
        cli->own_id = ev->own_id;
        cli->autocall_done = false;
        cli_peers_set_all(&cli->peers, ev->peers, ev->npeers);
        break;
    case PCSIG_EV_PEER_JOINED:
        cli_peers_add(&cli->peers, ev->peer_id, ev->name ? ev->name : "");
        break;
    case PCSIG_EV_PEER_LEFT:
        cli_peers_remove(&cli->peers, ev->peer_id);
        break;
    case PCSIG_EV_MESSAGE:
        if (cli->exec_cmd)
            cli_exec_message(cli, ev); /* takes the body */
        break;
    case PCSIG_EV_SERVER_UNREACHABLE:
    case PCSIG_EV_SESSION_LOST:
        /* Our id and the peer ids are void. */
        if (ev->type == PCSIG_EV_SERVER_UNREACHABLE)
            cli->unreachable = true;
        cli->own_id = 0;
        cli_peers_clear(&cli->peers);
        break;
    case PCSIG_EV_DISCONNECTED:
        cli->own_id = 0;
        cli_peers_clear(&cli->peers);
        /* Not asked for by us: the library gave up (a fatal answer). */
        if (!cli->quit) {
            cli->quit = true;
            cli->exit_code = CLI_EXIT_FATAL;
        }
        break;
    default:
        break;
    }
}

static void on_event(struct cli *cli, struct pcsig_event *ev)
{
    if (cli_media_on_event(cli->media, ev))
        return; /* issue 16: the conductor's signaling, reported by it */
    buf_t b;
    buf_init(&b, SIZE_MAX);
    cli_render_event(cli, ev, &b);
    apply_event(cli, ev);
    cli_out_line(cli, &b);
    buf_free(&b);
    if (ev->type == PCSIG_EV_SIGNED_IN || ev->type == PCSIG_EV_PEER_JOINED)
        autocall_check(cli);
    if (ev->type == PCSIG_EV_SIGNED_IN && cli->hold)
        cli_replay_held(cli);
    else if (ev->type == PCSIG_EV_SERVER_UNREACHABLE && cli->hold && cli->held_quit)
        cli_give_up_held(cli);
    else if (ev->type == PCSIG_EV_DISCONNECTED && cli->hold && cli->held.len)
        cli_give_up_held(cli); /* a fatal refusal: say what will not be done */
}

static void drain_events(struct cli *cli)
{
    struct pcsig_event *ev;
    while ((ev = pcsig_client_next_event(cli->client, 0)) != NULL) {
        on_event(cli, ev);
        pcsig_event_free(ev);
    }
}

/* A conductor event (one JSON object): as it is with --json, else labelled. */
static void media_show(void *arg, const char *line)
{
    struct cli *cli = arg;
    if (cli->json)
        cli_say(cli, "%s", line);
    else
        cli_say(cli, "media: %s", line);
}


int main(int argc, char **argv)
{
    struct cli cli = {0};
    struct pcsig_client_options o = {0};
    struct cli_start st = {0};
    int rc = cli_parse_options(argc, argv, &cli, &o, &st);
    if (rc >= 0)
        return rc;
    cli.server = o.server;
    cli.port = o.port;
    cli.exit_code = 0;
    cli.tty = !cli.json && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    buf_init(&cli.line, CLI_MAX_LINE);
    buf_init(&cli.held, CLI_MAX_LINE);
    cli.logs.efd = -1;
    cli.hold = cli.json;

    /* Signals arrive through a signalfd in the event loop; blocked before the
     * library starts its threads so that they inherit the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        perror("pcsig-client: signalfd");
        return CLI_EXIT_FATAL;
    }

    cli.client = pcsig_client_new(&o);
    if (st.file_token) {
        explicit_bzero(st.file_token, strlen(st.file_token)); /* the library has its copy */
        free(st.file_token);
    }
    if (!cli.client) {
        fprintf(stderr, "pcsig-client: out of memory\n");
        close(sigfd);
        return CLI_EXIT_FATAL;
    }
    if (pcsig_client_setup_error(cli.client)) {
        fprintf(stderr, "pcsig-client: TLS: %s\n", pcsig_client_setup_error(cli.client));
        pcsig_client_free(cli.client);
        close(sigfd);
        return CLI_EXIT_USAGE;
    }
    if (cli.mcfg.media) { /* issue 16 */
        const char *why = NULL;
        cli.media = cli_media_start(&cli.mcfg, cli.client, &why);
        if (!cli.media) {
            fprintf(stderr, "pcsig-client: --media: %s\n", why);
            pcsig_client_free(cli.client);
            close(sigfd);
            return CLI_EXIT_USAGE;
        }
    }
    if (cli.tty) {
        cli_term_start(&cli);
        cli_say(&cli, "pcsig-client: type help for the commands");
    }
    if (cli.json || st.autoconnect)
        cli_do_connect(&cli);

    while (!cli.quit) {
        struct pollfd p[5] = {
            {.fd = cli.in_done ? -1 : STDIN_FILENO, .events = POLLIN},
            {.fd = pcsig_client_event_fd(cli.client), .events = POLLIN},
            {.fd = sigfd, .events = POLLIN},
            {.fd = cli.logs.efd, .events = POLLIN},
            {.fd = cli_media_fd(cli.media), .events = POLLIN},
        };
        if (poll(p, 5, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("pcsig-client: poll");
            cli.exit_code = CLI_EXIT_FATAL;
            break;
        }
        if (p[3].revents)
            cli_logs_drain(&cli);
        if (p[1].revents)
            drain_events(&cli);
        if (p[4].revents)
            cli_media_drain(cli.media, media_show, &cli);
        if (p[2].revents) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGCHLD) {
                    cli_exec_reap(&cli);
                } else {
                    if (!cli.quit_why)
                        cli.quit_why = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
                    cli.quit = true;
                }
            }
        }
        if (!cli.quit && !cli.in_done && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
            !cli_read_stdin(&cli, p[0].revents))
            cli_input_over(&cli, "end of input"); /* quit, once what is held is done */
    }
    int code = cli.exit_code;
    /* Sign out; what the library reports while doing so (sent, failed,
     * disconnected) is still printed, with no prompt redrawn any more. */
    cli.quit = true;
    cli_logs_release(&cli);
    /* A call ends first: its BYE goes out before the sign-out. */
    cli_media_stop(cli.media, media_show, &cli);
    cli.media = NULL;
    pcsig_client_disconnect(cli.client);
    drain_events(&cli);
    if (cli.tty)
        fputs("\r\033[K", stdout); /* no prompt left behind */
    fflush(stdout);
    cli_term_stop(&cli);
    pcsig_client_free(cli.client);
    cli_peers_clear(&cli.peers);
    cli_exec_free(&cli);
    buf_free(&cli.line);
    buf_free(&cli.held);
    close(sigfd);
    return code;
}
