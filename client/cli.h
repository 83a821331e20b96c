/*
 * cli: what the parts of pcsig-client (the CLI on libpcsig-client) share.
 *
 *   main.c        the event loop: stdin, the library's events, signals, the
 *                 log queue and the media conductor; what each event changes
 *   cli_opts.c    the command line (options, usage, the token file)
 *   cli_term.c    the terminal: line editing (libedit) on a terminal, the
 *                 plain line reader otherwise, library log records on a
 *                 terminal
 *   cli_cmd.c     commands: --json objects and text lines, held until the
 *                 first sign-in, sending
 *   cli_render.c  output: each event's text and JSON forms (one table),
 *                 errors, the peer list
 *   cli_peers.c   the peer list (sorted by id)
 *   cli_exec.c    --exec: a child per message, queued per peer
 *   cli_json.c    JSON (jansson) and base64 (OpenSSL)
 *   cli_ice.c     --ice-server URLs (the option and the conductor)
 *   cli_media.c   the media conductor's glue (issue 16)
 * Everything runs on the main thread except the log sink (cli_term.c).
 */
#ifndef PCSIG_CLI_H
#define PCSIG_CLI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <termios.h>

#include "buf.h"
#include "cli_json.h"
#include "cli_media.h"
#include "pcsig_client.h"

extern char **environ;

#define CLI_MAX_LINE ((size_t)64 << 20) /* one command line (base64 bodies) */
#define CLI_READ_CHUNK 65536
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_FATAL 1
#define CLI_EXEC_DEFAULT_MAX 4             /* --exec children at once (all peers) */
#define CLI_EXEC_QUEUE_MAX 256             /* messages waiting for a child */
#define CLI_EXEC_QUEUE_BYTES ((size_t)64 << 20) /* their bytes */
#define CLI_TOKEN_FILE_MAX 8192            /* --auth-token-file: bytes read */

struct cli_peer {
    uint64_t id;
    char *name;
};

/* The peers we know, sorted by id; at most max are kept. */
struct cli_peers {
    struct cli_peer *v; /* cap slots, n used */
    size_t n, cap;
    size_t max;         /* as the library's max_peers */
};

/* A message waiting for its --exec child (see exec_pump). */
struct exec_job {
    struct exec_job *next;
    uint64_t from;
    char *ctype;          /* or NULL */
    unsigned char *data;  /* len bytes (taken from the event) */
    size_t len;
};

/* A running --exec child and the peer whose message it handles. */
struct exec_child {
    pid_t pid;
    uint64_t from;
};

/* Log records on their way from the library's threads to the event loop
 * (see logs_sink). */
struct cli_logs {
    int efd;              /* eventfd: records queued; -1 when stderr is not ours to guard */
    pthread_mutex_t lock; /* guards queue and dropped */
    buf_t queue;          /* whole records, filled by the sink */
    buf_t spare;          /* the other buffer: drained by the loop */
    uint64_t dropped;     /* records that did not fit in queue */
};

struct cli {
    pcsig_client_t *client;
    bool json;
    bool tty;          /* prompts and line redraws */
    bool autocall;
    bool autocall_done;
    bool connected;    /* pcsig_client_connect was called */
    bool quit;
    int exit_code;
    const char *exec_cmd;
    /* --exec: at most one child per peer and exec_max in all; the other
     * messages wait in order in a bounded queue, then are dropped. */
    unsigned exec_max;
    struct exec_child *children; /* exec_max slots, pid 0 = free */
    unsigned nchildren;
    struct exec_job *jobs_head, *jobs_tail;
    size_t njobs, jobs_bytes;
    uint64_t jobs_dropped;
    const char *server;
    uint16_t port;
    uint64_t own_id;
    struct cli_peers peers;
    buf_t line;        /* stdin bytes not yet ending in '\n' */
    bool discarding;   /* an over-long line: drop until its '\n' */
    bool tty_saved;    /* saved_tio is to be restored */
    struct termios saved_tio;
    bool editing;      /* libedit reads the terminal (cli_term.c) */
    bool term_eof;     /* ^D on an empty line */
    bool hold;         /* --json before the first sign-in: keep input lines */
    buf_t held;        /* those lines, each ending in '\n' */
    bool held_quit;    /* quit or EOF after them: run (or fail) them, then quit */
    bool in_done;      /* read no more input (EOF, or a quit is pending) */
    bool unreachable;  /* SERVER_UNREACHABLE since the last SIGNED_IN */
    bool gave_up;      /* held commands were run without a session */
    unsigned unsent;   /* sends refused for want of a session, since gave_up */
    struct cli_logs logs; /* terminal: the library's log records, queued */
    const char *quit_why; /* what ended us (static text), added to "disconnected" */
    /* issue 16: the media conductor (NULL without --media); see cli_media.h */
    struct cli_media_config mcfg;
    struct cli_media *media;
};

/* ---- cli_render.c ------------------------------------------------------------------ */

/* Write b as one line (adding '\n') and flush, keeping the prompt intact;
 * a closed stdout ends us. */
void cli_out_line(struct cli *cli, buf_t *b);
void cli_say(struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* {"event":name} to add members to (json_object_set_new), or NULL. */
json_t *cli_ev_object(const char *name);
/* Print an event object as one line; ev is consumed. */
void cli_out_json(struct cli *cli, json_t *ev);
/* "error: what: detail", or {"event":"error","reason":"what: detail"}. */
void cli_error(struct cli *cli, const char *what, const char *detail);
/* Untrusted text for a terminal: quoted and escaped as a JSON string. */
void cli_add_quoted(buf_t *b, const void *p, size_t n);
/* The peers command's answer. */
void cli_show_peers(struct cli *cli);
/* ev as the line the user sees (text or JSON by cli->json) into b; reads
 * cli (peer names, why we quit) and changes nothing. */
void cli_render_event(const struct cli *cli, const struct pcsig_event *ev, buf_t *b);

/* ---- cli_peers.c -------------------------------------------------------------------- */

void cli_peers_clear(struct cli_peers *ps);
/* Add (or rename) a peer; beyond max, new ids are not kept. */
void cli_peers_add(struct cli_peers *ps, uint64_t id, const char *name);
void cli_peers_remove(struct cli_peers *ps, uint64_t id);
/* The list of a sign-in, at once (a repeated id kept once, the later). */
void cli_peers_set_all(struct cli_peers *ps, const struct pcsig_peer *p, size_t n);
/* The name of id as listed, "me" for own_id, else "?". */
const char *cli_peers_name(const struct cli_peers *ps, uint64_t id, uint64_t own_id);

/* ---- cli_cmd.c ---------------------------------------------------------------------- */

/* One input line (without its '\n'): a --json object or a text command. */
void cli_on_line(struct cli *cli, const char *line, size_t n);
/* A quit command or EOF (why says which): quit now, or once held commands ran. */
void cli_input_over(struct cli *cli, const char *why);
/* Run what was held before the first sign-in; give_up: without a session. */
void cli_replay_held(struct cli *cli);
void cli_give_up_held(struct cli *cli);
void cli_do_connect(struct cli *cli);
/* An offer (a real call with --media) to peer to. */
void cli_send_offer(struct cli *cli, uint64_t to);

/* ---- cli_exec.c --------------------------------------------------------------------- */

/* A message for --exec: queued (its body taken from ev), then run. */
void cli_exec_message(struct cli *cli, struct pcsig_event *ev);
/* SIGCHLD: reap our children, start what waited. */
void cli_exec_reap(struct cli *cli);
/* At exit: drop (and count) what still waits. */
void cli_exec_free(struct cli *cli);

/* ---- cli_term.c --------------------------------------------------------------------- */

/* On a terminal: line editing (libedit) with history, and the log queue. */
void cli_term_start(struct cli *cli);
/* Erase the prompt line before output / draw it again after. */
void cli_term_erase(struct cli *cli);
void cli_term_redraw(struct cli *cli);
/* Restore the terminal. Safe to call twice. */
void cli_term_stop(struct cli *cli);
/* Read what stdin has (poll's revents) and handle complete lines. False
 * at EOF. */
bool cli_read_stdin(struct cli *cli, short revents);
/* The log queue's eventfd (-1: none) and its drain; release at exit. */
void cli_logs_drain(struct cli *cli);
void cli_logs_release(struct cli *cli);

/* ---- cli_opts.c --------------------------------------------------------------------- */

/* What the command line asks beyond the library's options. */
struct cli_start {
    bool autoconnect;
    char *file_token; /* from --auth-token-file: wiped and freed by the caller */
};
/* Parse argv into cli, o and st: -1 to go on, else the exit status. */
int cli_parse_options(int argc, char **argv, struct cli *cli, struct pcsig_client_options *o,
                      struct cli_start *st);

#endif
