/*
 * cli_term: the CLI's input and its terminal.
 *
 * On a terminal (stdin and stdout, without --json) lines are edited with
 * libedit: history (Up/Down, Ctrl-R to search it), cursor keys, the usual
 * emacs keys. Its callback interface lets the event loop stay in poll():
 * each readable stdin hands libedit what was typed, and a complete line
 * comes back through on_edited_line. Output that arrives meanwhile (events,
 * log records) erases the prompt line, prints, and has libedit draw the
 * prompt and the partial input again, so nothing lands inside the line
 * being typed.
 *
 * Anywhere else (pipes, files: scripts and the tests) a plain line reader:
 * no prompt, no escapes, no terminal modes.
 *
 * On a terminal, the library's log records go to a log sink that queues
 * them for the event loop: each is printed on stderr like an event.
 */
#include "cli.h"

#include <errno.h>
#include <editline/readline.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"

#define CLI_HISTORY_MAX 1000 /* lines kept for Up and Ctrl-R */

/* libedit's line callback takes no argument: the one CLI of the process. */
static struct cli *edit_cli;
/* Inside on_edited_line: libedit draws the prompt itself when it returns. */
static bool in_line_handler;

static void on_edited_line(char *line)
{
    struct cli *cli = edit_cli;
    if (!line) { /* ^D on an empty line */
        cli->term_eof = true;
        return;
    }
    size_t n = strlen(line);
    if (n)
        add_history(line);
    in_line_handler = true;
    cli_on_line(cli, line, n);
    in_line_handler = false;
    free(line);
}

static void logs_capture(struct cli *cli);
static bool read_lines(struct cli *cli);

void cli_term_start(struct cli *cli)
{
    if (!cli->tty)
        return;
    if (tcgetattr(STDIN_FILENO, &cli->saved_tio) == 0) {
        cli->tty_saved = true;
        /* libedit binds the terminal's reprint character (^R) to redraw
         * the line, over any binding of ours: without one, ^R is free to
         * search the history (restored at exit). */
        struct termios t = cli->saved_tio;
        t.c_cc[VREPRINT] = _POSIX_VDISABLE;
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &t);
    }
    edit_cli = cli;
    rl_readline_name = "pcsig-client"; /* for $if in ~/.editrc */
    rl_catch_signals = 0; /* ours come through the signalfd */
    using_history();
    stifle_history(CLI_HISTORY_MAX);
    rl_callback_handler_install("> ", on_edited_line);
    /* Ctrl-R searches the history, as in readline (bound after
     * ~/.editrc was read: this one binding is ours). */
    (void)rl_parse_and_bind("bind ^R em-inc-search-prev");
    cli->editing = true;
    logs_capture(cli);
}

void cli_term_erase(struct cli *cli)
{
    (void)cli;
    fputs("\r\033[K", stdout);
}

void cli_term_redraw(struct cli *cli)
{
    if (!cli->editing || in_line_handler)
        return;
    fflush(stdout);
    rl_forced_update_display();
}

void cli_term_stop(struct cli *cli)
{
    if (cli->editing) {
        rl_callback_handler_remove();
        cli->editing = false;
    }
    if (cli->tty_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &cli->saved_tio);
    cli->tty_saved = false;
}

bool cli_read_stdin(struct cli *cli, short revents)
{
    if (!cli->editing)
        return read_lines(cli);
    if (!(revents & POLLIN))
        return false; /* the terminal hung up */
    rl_callback_read_char();
    return !cli->term_eof;
}

/* Not a terminal: lines as they come (a pipe, a file). False at EOF. */
static bool read_lines(struct cli *cli)
{
    char tmp[CLI_READ_CHUNK];
    ssize_t r = read(STDIN_FILENO, tmp, sizeof tmp);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN;
    if (r == 0) {
        if (cli->line.len && !cli->discarding && !cli->in_done)
            cli_on_line(cli, cli->line.data, cli->line.len); /* a last line without '\n' */
        buf_reset(&cli->line);
        return false;
    }
    size_t at = 0;
    while (at < (size_t)r && !cli->quit && !cli->in_done) {
        const char *nl = memchr(tmp + at, '\n', (size_t)r - at);
        size_t piece = nl ? (size_t)(nl - (tmp + at)) : (size_t)r - at;
        if (!cli->discarding && buf_append(&cli->line, tmp + at, piece) < 0) {
            cli->discarding = true;
            buf_free(&cli->line);
            cli_error(cli, "bad command", "line too long");
        }
        at += piece;
        if (!nl)
            break;
        at++; /* the '\n' */
        if (!cli->discarding)
            cli_on_line(cli, cli->line.data ? cli->line.data : "", cli->line.len);
        cli->discarding = false;
        buf_reset(&cli->line);
    }
    return true;
}

/* ---- log records on a terminal ------------------------------------------------------------ */

/*
 * The library logs from its own threads, which on a terminal would land in
 * the middle of the prompt line. So there our log sink (log_set_sink) takes
 * each record instead, and the event loop prints it on stderr between
 * erasing and redrawing the prompt, exactly as events are. The sink runs on
 * a library thread, maybe with the client's lock held: it only appends the
 * record to a queue of fixed size (allocated up front, so never a malloc)
 * under a lock that the loop holds just to swap buffers, and pokes an
 * eventfd. When the queue is full (a flood the loop cannot keep up with)
 * the record is dropped and counted, and the loop says how many went.
 */
#define CLI_LOG_QUEUE ((size_t)64 << 10)

static void logs_sink(void *arg, const char *rec, size_t n)
{
    struct cli_logs *lq = arg;
    pthread_mutex_lock(&lq->lock);
    if (buf_append(&lq->queue, rec, n) < 0)
        lq->dropped++;
    pthread_mutex_unlock(&lq->lock);
    uint64_t one = 1;
    if (write(lq->efd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is saturated, so the loop is woken anyway. */
    }
}

/* On a terminal: records to the sink. Elsewhere stderr is left alone. */
static void logs_capture(struct cli *cli)
{
    struct cli_logs *lq = &cli->logs;
    if (!isatty(STDERR_FILENO))
        return;
    buf_init(&lq->queue, CLI_LOG_QUEUE);
    buf_init(&lq->spare, CLI_LOG_QUEUE);
    int err = 0, rc;
    lq->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lq->efd < 0)
        err = errno;
    else if ((rc = buf_reserve(&lq->queue, CLI_LOG_QUEUE)) < 0 ||
             (rc = buf_reserve(&lq->spare, CLI_LOG_QUEUE)) < 0)
        err = -rc;
    else
        err = pthread_mutex_init(&lq->lock, NULL);
    if (err) {
        /* Then the records go to stderr as they are: garbled, but not lost. */
        char tmp[128];
        fprintf(stderr, "pcsig-client: cannot queue log records: %s\n",
                log_strerror(err, tmp, sizeof tmp));
        if (lq->efd >= 0)
            close(lq->efd);
        lq->efd = -1;
        buf_free(&lq->queue);
        buf_free(&lq->spare);
        return;
    }
    lq->dropped = 0;
    (void)log_set_sink(logs_sink, lq);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Print the queued records (whole ones: the sink gets nothing else) and the
 * count of those dropped, on a line the prompt is erased from and then
 * redrawn below. */
void cli_logs_drain(struct cli *cli)
{
    struct cli_logs *lq = &cli->logs;
    uint64_t cnt;
    if (read(lq->efd, &cnt, sizeof cnt) < 0) {
        /* EAGAIN: nothing new since the last drain; look anyway. */
    }
    pthread_mutex_lock(&lq->lock);
    buf_t full = lq->queue; /* swap: the sink fills the empty spare meanwhile */
    lq->queue = lq->spare;
    lq->spare = full;
    uint64_t dropped = lq->dropped;
    lq->dropped = 0;
    pthread_mutex_unlock(&lq->lock);
    if (lq->spare.len == 0 && dropped == 0)
        return;
    cli_term_erase(cli);
    fflush(stdout);
    write_all(STDERR_FILENO, lq->spare.data, lq->spare.len);
    buf_reset(&lq->spare);
    if (dropped) {
        char note[96];
        int k = snprintf(note, sizeof note,
                         "pcsig-client: %llu log record(s) dropped (too many at once)\n",
                         (unsigned long long)dropped);
        if (k > 0)
            write_all(STDERR_FILENO, note, (size_t)k < sizeof note ? (size_t)k : sizeof note - 1);
    }
    if (!cli->quit) {
        cli_term_erase(cli); /* stderr and stdout may be different terminals */
        cli_term_redraw(cli);
    }
}

/* Back to stderr (the library's threads are still running: what they log
 * from now on goes straight to the terminal), then print what is queued.
 * log_set_sink returns once no sink call is running, so nothing is added
 * to the queue after it and it can be freed. */
void cli_logs_release(struct cli *cli)
{
    struct cli_logs *lq = &cli->logs;
    if (lq->efd < 0)
        return;
    (void)log_set_sink(NULL, NULL);
    cli_logs_drain(cli);
    close(lq->efd);
    lq->efd = -1;
    pthread_mutex_destroy(&lq->lock);
    buf_free(&lq->queue);
    buf_free(&lq->spare);
}
