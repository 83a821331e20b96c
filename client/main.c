/*
 * pcsig-client: a headless peerconnection client on libpcsig-client.
 *
 * Two faces over one event loop (poll on stdin, the library's event fd and
 * a signalfd):
 *   - interactive: text commands (peers, send, call, bye, quit, connect),
 *     events printed as they arrive; on a terminal with a "> " prompt that
 *     an event never garbles: the terminal is put in non-canonical mode
 *     (we echo and keep the typed line ourselves, with backspace and ^U),
 *     so an event erases the line, prints itself and redraws the prompt
 *     and the partial input; elsewhere plain lines, no prompt, no escapes;
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
 * On a terminal, the library's log records go to a log sink that queues
 * them for the event loop: each is printed on stderr like an event, erasing
 * and redrawing the prompt.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "buf.h"
#include "strlit.h"
#include "cli_media.h"
#include "client_json.h"
#include "client_wire.h"
#include "log.h"
#include "pcsig_client.h"
#include "proto.h"
#include "version.h"

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
    size_t max_peers;  /* peers kept (as the library's max_peers) */
    const char *server;
    uint16_t port;
    uint64_t own_id;
    struct cli_peer *peers; /* sorted by id */
    size_t npeers;
    buf_t line;        /* stdin bytes not yet ending in '\n' */
    bool discarding;   /* an over-long line: drop until its '\n' */
    bool tty_raw;      /* saved_tio is to be restored */
    struct termios saved_tio;
    int esc_state;     /* tty: 0, 1 after ESC, 2 inside "ESC [" */
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

/* ---- output ------------------------------------------------------------------- */

/* The text of an errno value, whichever strerror_r the C library has. */
static const char *err_text(int err, char *tmp, size_t n)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(err, tmp, n);
#else
    if (strerror_r(err, tmp, n) != 0)
        snprintf(tmp, n, "error %d", err);
    return tmp;
#endif
}

/* Write b as one line (adding '\n') and flush; a closed stdout ends us. */
static void out_line(struct cli *cli, buf_t *b)
{
    if (cli->tty && !cli->json)
        fputs("\r\033[K", stdout); /* erase the prompt and partial input */
    if (b->len)
        fwrite(b->data, 1, b->len, stdout);
    fputc('\n', stdout);
    if (cli->tty && !cli->json && !cli->quit) {
        /* Redraw the prompt and what was typed but not yet entered. */
        fputs("> ", stdout);
        if (cli->line.len)
            fwrite(cli->line.data, 1, cli->line.len, stdout);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (!cli->quit_why)
            cli->quit_why = "standard output closed";
        cli->quit = true;
        cli->exit_code = CLI_EXIT_FATAL;
    }
}

static void say(struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct cli *cli, const char *fmt, ...)
{
    buf_t b;
    buf_init(&b, 1 << 16);
    va_list ap;
    va_start(ap, fmt);
    (void)buf_vprintf(&b, fmt, ap);
    va_end(ap);
    out_line(cli, &b);
    buf_free(&b);
}

/* Untrusted text for a terminal: quoted and escaped as a JSON string. */
static void add_quoted(buf_t *b, const void *p, size_t n)
{
    (void)cjson_append_string(b, p, n);
}

static void add_str(buf_t *b, const char *s)
{
    (void)buf_append_str(b, s);
}

static void add_u64(buf_t *b, uint64_t v)
{
    (void)buf_append_u64(b, v);
}

/* {"event":"<name>" ... the caller appends members and closes with '}'. */
static void json_begin(buf_t *b, const char *event)
{
    add_str(b, "{\"event\":\"");
    add_str(b, event);
    add_str(b, "\"");
}

static void json_key(buf_t *b, const char *key)
{
    add_str(b, ",\"");
    add_str(b, key);
    add_str(b, "\":");
}

static void json_error(struct cli *cli, const char *what, const char *detail)
{
    buf_t b;
    buf_init(&b, 1 << 16);
    if (cli->json) {
        json_begin(&b, "error");
        json_key(&b, "reason");
        buf_t r;
        buf_init(&r, 4096);
        add_str(&r, what);
        if (detail) {
            add_str(&r, ": ");
            add_str(&r, detail);
        }
        add_quoted(&b, r.data, r.len);
        buf_free(&r);
        add_str(&b, "}");
    } else {
        add_str(&b, "error: ");
        add_str(&b, what);
        if (detail) {
            add_str(&b, ": ");
            add_str(&b, detail);
        }
    }
    out_line(cli, &b);
    buf_free(&b);
}

/* ---- peers --------------------------------------------------------------------- */

static void peers_clear(struct cli *cli)
{
    for (size_t i = 0; i < cli->npeers; i++)
        free(cli->peers[i].name);
    free(cli->peers);
    cli->peers = NULL;
    cli->npeers = 0;
}

/* The index of id in the sorted list, or where it would go (*found false). */
static size_t peers_find(const struct cli *cli, uint64_t id, bool *found)
{
    size_t lo = 0, hi = cli->npeers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cli->peers[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < cli->npeers && cli->peers[lo].id == id;
    return lo;
}

static void peers_remove(struct cli *cli, uint64_t id)
{
    bool found;
    size_t i = peers_find(cli, id, &found);
    if (!found)
        return;
    free(cli->peers[i].name);
    memmove(&cli->peers[i], &cli->peers[i + 1], (cli->npeers - i - 1) * sizeof cli->peers[0]);
    cli->npeers--;
}

/* Add (or rename) a peer, keeping the list sorted by id (binary search:
 * a sign-in list of 100,000 peers is O(n log n), not O(n^2)); beyond
 * max_peers new ids are not kept (the library has warned). */
static void peers_add(struct cli *cli, uint64_t id, const char *name)
{
    char *copy = strdup(name ? name : "");
    if (!copy)
        return;
    bool found;
    size_t at = peers_find(cli, id, &found);
    if (found) {
        free(cli->peers[at].name);
        cli->peers[at].name = copy;
        return;
    }
    if (cli->npeers >= cli->max_peers) {
        free(copy);
        return;
    }
    struct cli_peer *v = cli->peers;
    if ((cli->npeers & (cli->npeers - 1)) == 0) { /* 0, 1, 2, 4, ...: grow by doubling */
        v = realloc(cli->peers, (cli->npeers ? cli->npeers * 2 : 1) * sizeof *v);
        if (!v) {
            free(copy);
            return;
        }
        cli->peers = v;
    }
    memmove(&v[at + 1], &v[at], (cli->npeers - at) * sizeof *v);
    v[at] = (struct cli_peer){.id = id, .name = copy};
    cli->npeers++;
}

static int peer_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct cli_peer *)a)->id, y = ((const struct cli_peer *)b)->id;
    return x < y ? -1 : x > y;
}

/* The list of a sign-in, at once: copied, sorted once, a repeated id kept
 * once (in any order, n entries cost O(n log n), never n inserts). */
static void peers_set_all(struct cli *cli, const struct pcsig_peer *p, size_t n)
{
    peers_clear(cli);
    if (n > cli->max_peers)
        n = cli->max_peers;
    if (n == 0)
        return;
    size_t cap = 1;
    while (cap < n)
        cap *= 2; /* peers_add grows at powers of two */
    struct cli_peer *v = calloc(cap, sizeof *v);
    if (!v)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char *copy = strdup(p[i].name ? p[i].name : "");
        if (copy)
            v[k++] = (struct cli_peer){.id = p[i].id, .name = copy};
    }
    qsort(v, k, sizeof *v, peer_cmp);
    size_t out = 0;
    for (size_t i = 0; i < k; i++) {
        if (out && v[out - 1].id == v[i].id) {
            free(v[out - 1].name); /* the later entry wins, as with peers_add */
            v[out - 1] = v[i];
        } else {
            v[out++] = v[i];
        }
    }
    cli->peers = v;
    cli->npeers = out;
    if (out == 0) {
        free(v);
        cli->peers = NULL;
    }
}

static const char *peer_name(const struct cli *cli, uint64_t id)
{
    bool found;
    size_t i = peers_find(cli, id, &found);
    if (found)
        return cli->peers[i].name;
    return id == cli->own_id && id ? "me" : "?";
}

/*
 * The peer that s[0..n) names: an id (digits), or the name of exactly one
 * peer as the list shows it (e.g. "y%20z"). 0 and *id, or -1 after saying
 * why: no such name, or a name several peers share (their ids listed).
 */
static int resolve_peer(struct cli *cli, const char *s, size_t n, uint64_t *id)
{
    if (n > 0 && strspn(s, "0123456789") >= n) {
        if (proto_parse_id(s, n, id) == 0)
            return 0;
        json_error(cli, "expected a peer id or name", "not a valid peer id");
        return -1;
    }
    buf_t why;
    buf_init(&why, 1 << 16);
    size_t hits = 0;
    for (size_t i = 0; i < cli->npeers; i++) {
        if (strlen(cli->peers[i].name) != n || memcmp(cli->peers[i].name, s, n) != 0)
            continue;
        if (hits++ == 0)
            *id = cli->peers[i].id;
        (void)buf_printf(&why, hits == 1 ? "%llu" : ", %llu",
                         (unsigned long long)cli->peers[i].id);
    }
    if (hits == 1) {
        buf_free(&why);
        return 0;
    }
    buf_t q;
    buf_init(&q, 4096);
    add_quoted(&q, s, n < 600 ? n : 600);
    (void)buf_append(&q, "", 1);
    buf_t msg;
    buf_init(&msg, 1 << 16);
    if (n == 0)
        (void)buf_printf(&msg, "expected a peer id or name");
    else if (hits == 0)
        (void)buf_printf(&msg, "no peer named %s (see peers)", q.data ? q.data : "");
    else
        (void)buf_printf(&msg, "%s names %zu peers: %.*s; use the id", q.data ? q.data : "",
                         hits, (int)why.len, why.data);
    (void)buf_append(&msg, "", 1);
    json_error(cli, msg.data ? msg.data : "no such peer", NULL);
    buf_free(&msg);
    buf_free(&q);
    buf_free(&why);
    return -1;
}

static void json_peers(buf_t *b, const struct cli *cli)
{
    add_str(b, "[");
    for (size_t i = 0; i < cli->npeers; i++) {
        add_str(b, i ? ",{\"id\":" : "{\"id\":");
        add_u64(b, cli->peers[i].id);
        add_str(b, ",\"name\":");
        add_quoted(b, cli->peers[i].name, strlen(cli->peers[i].name));
        add_str(b, ",\"connected\":true}");
    }
    add_str(b, "]");
}

static void show_peers(struct cli *cli)
{
    buf_t b;
    buf_init(&b, 1 << 24);
    if (cli->json) {
        json_begin(&b, "peers");
        json_key(&b, "peers");
        json_peers(&b, cli);
        add_str(&b, "}");
    } else if (cli->npeers == 0) {
        add_str(&b, "no peers");
    } else {
        for (size_t i = 0; i < cli->npeers; i++) {
            if (i)
                add_str(&b, "\n");
            add_str(&b, "  ");
            add_u64(&b, cli->peers[i].id);
            add_str(&b, " ");
            add_quoted(&b, cli->peers[i].name, strlen(cli->peers[i].name));
        }
    }
    out_line(cli, &b);
    buf_free(&b);
}

/* ---- sending --------------------------------------------------------------------- */

static void report_queued(struct cli *cli, int64_t token, uint64_t to)
{
    if (token > 0) {
        if (cli->json) {
            buf_t b;
            buf_init(&b, 256);
            json_begin(&b, "queued");
            json_key(&b, "token");
            add_u64(&b, (uint64_t)token);
            json_key(&b, "to");
            add_u64(&b, to);
            add_str(&b, "}");
            out_line(cli, &b);
            buf_free(&b);
        }
        return;
    }
    const char *why = token == -ENOTCONN ? "not signed in"
                      : token == -EINVAL ? "invalid peer id or content type"
                                         : "out of memory";
    if (token == -ENOTCONN && cli->gave_up)
        cli->unsent++;
    json_error(cli, "cannot send", why);
}

static void send_bytes(struct cli *cli, uint64_t to, const char *ctype, const void *p, size_t n)
{
    report_queued(cli, pcsig_client_send(cli->client, to, ctype, p, n), to);
}

/* BYE to a peer; with --media, to the peer of the call it ends the call
 * (the conductor sends the BYE). */
static void send_bye(struct cli *cli, uint64_t to)
{
    if (cli_media_bye(cli->media, to))
        return;
    send_bytes(cli, to, NULL, STRLIT("BYE"));
}

/* An offer as the stock conductor sends one: {"sdp": "...", "type": "offer"}
 * with a minimal data-channel SDP (fresh session id, ICE credentials and a
 * fingerprint-shaped value each time). */
static void send_offer(struct cli *cli, uint64_t to)
{
    if (cli->media || cli->mcfg.media) { /* issue 16: a real call */
        const char *why = NULL;
        if (cli_media_call(cli->media, to, &why) < 0)
            json_error(cli, "cannot call", why);
        return;
    }
    if (!cli->json) /* --json keeps its event sequence; people are told */
        say(cli, "note: a signaling-only offer (no media: %s)",
            cli_media_built() ? "start with --media none|test|devices for a real call"
                              : "media support was not built into this pcsig-client");
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[72];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (unsigned char)(i * 37 + 11); /* still a well-formed SDP */
    }
    uint64_t sess = 0;
    for (int i = 0; i < 7; i++)
        sess = sess << 8 | rnd[i];
    char ufrag[5], pwd[25];
    for (int i = 0; i < 4; i++)
        ufrag[i] = alnum[rnd[8 + i] % (sizeof alnum - 1)];
    ufrag[4] = '\0';
    for (int i = 0; i < 24; i++)
        pwd[i] = alnum[rnd[12 + i] % (sizeof alnum - 1)];
    pwd[24] = '\0';
    buf_t sdp;
    buf_init(&sdp, 4096);
    (void)buf_printf(&sdp,
                     "v=0\r\no=- %llu 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                     "a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n"
                     "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
                     "c=IN IP4 0.0.0.0\r\na=ice-ufrag:%s\r\na=ice-pwd:%s\r\n"
                     "a=ice-options:trickle\r\na=fingerprint:sha-256 ",
                     (unsigned long long)sess, ufrag, pwd);
    for (int i = 0; i < 32; i++)
        (void)buf_printf(&sdp, i ? ":%02X" : "%02X", rnd[36 + i % 36]);
    (void)buf_append_str(&sdp, "\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n"
                               "a=max-message-size:262144\r\n");
    buf_t msg;
    buf_init(&msg, 16384);
    add_str(&msg, "{\"sdp\": ");
    add_quoted(&msg, sdp.data, sdp.len);
    add_str(&msg, ", \"type\": \"offer\"}");
    send_bytes(cli, to, "text/plain", msg.data, msg.len);
    buf_free(&sdp);
    buf_free(&msg);
}

static void do_connect(struct cli *cli)
{
    if (cli->connected) {
        json_error(cli, "already connected", NULL);
        return;
    }
    int rc = pcsig_client_connect(cli->client);
    if (rc < 0) {
        char tmp[128];
        json_error(cli, "cannot connect", err_text(-rc, tmp, sizeof tmp));
        return;
    }
    cli->connected = true;
    if (!cli->json)
        say(cli, "connecting to %s:%u ...", cli->server, (unsigned)cli->port);
}

/* ---- --exec ------------------------------------------------------------------------ */

/* Run the --exec command for one message: body on stdin (a memfd, so the
 * event loop never blocks on the child), PCSIG_FROM and PCSIG_CONTENT_TYPE
 * in the environment. Returns the child's pid (reaped on SIGCHLD, see
 * exec_reap), or 0 after reporting why it could not start. */
static pid_t run_exec(struct cli *cli, const struct exec_job *ev)
{
    int fd = memfd_create("pcsig-message", MFD_CLOEXEC);
    if (fd < 0) {
        json_error(cli, "--exec: memfd_create failed", NULL);
        return 0;
    }
    size_t off = 0;
    while (off < ev->len) {
        ssize_t w = write(fd, ev->data + off, ev->len - off);
        if (w <= 0) {
            close(fd);
            json_error(cli, "--exec: cannot store the message", NULL);
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
        json_error(cli, "--exec: out of memory", NULL);
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
        json_error(cli, "--exec: cannot run /bin/sh", err_text(rc, tmp, sizeof tmp));
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
static void exec_reap(struct cli *cli)
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
static void exec_message(struct cli *cli, struct pcsig_event *ev)
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
        json_error(cli, "--exec: out of memory; message dropped", NULL);
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

/* ---- events ------------------------------------------------------------------------ */

static void on_line(struct cli *cli, const char *line, size_t n);

/* Run what was piped before the first sign-in, in order: on SIGNED_IN; or,
 * when the sign-in failed and input ended, without a session, so that each
 * command reports its error. Then quit if a quit or EOF came after them. */
static void replay_held(struct cli *cli)
{
    cli->hold = false;
    buf_t h = cli->held;
    buf_init(&cli->held, CLI_MAX_LINE);
    size_t at = 0;
    while (at < h.len && !cli->quit) {
        const char *nl = memchr(h.data + at, '\n', h.len - at);
        size_t l = (size_t)(nl - (h.data + at));
        on_line(cli, h.data + at, l);
        at += l + 1;
    }
    buf_free(&h);
    if (cli->held_quit)
        cli->quit = true;
}

/* Input ended (EOF or quit) before the first sign-in, with commands held. */
static void give_up_held(struct cli *cli)
{
    cli->gave_up = true;
    replay_held(cli);
    cli->quit = true;
    if (cli->unsent && cli->exit_code == 0)
        cli->exit_code = CLI_EXIT_FATAL;
}

/* A quit command or EOF (why says which): quit now, or once the held
 * commands are done. */
static void input_over(struct cli *cli, const char *why)
{
    if (!cli->quit_why)
        cli->quit_why = why;
    cli->in_done = true;
    if (!cli->hold || cli->held.len == 0) {
        cli->quit = true;
        return;
    }
    cli->held_quit = true;
    if (cli->unreachable)
        give_up_held(cli); /* no sign-in to wait for: the server is not there */
}

static void autocall_check(struct cli *cli)
{
    if (!cli->autocall || cli->autocall_done || cli->npeers == 0)
        return;
    cli->autocall_done = true;
    uint64_t to = cli->peers[0].id; /* the list is id-ordered */
    if (!cli->json)
        say(cli, "autocall: calling %llu", (unsigned long long)to);
    send_offer(cli, to);
}

/* An event that ends the session for a reason: our id and the peer list
 * go, and the line is {"event":name,"reason":...} or the text
 * label: "reason"tail. A cause (what made us quit) is added to the reason
 * in parentheses: "signed out (end of input)". */
static void session_ended(struct cli *cli, buf_t *b, const char *name, const char *label,
                          const char *tail, const char *reason, const char *cause)
{
    buf_t r;
    buf_init(&r, 1 << 16);
    add_str(&r, reason ? reason : "");
    if (cause)
        (void)buf_printf(&r, " (%s)", cause);
    cli->own_id = 0;
    peers_clear(cli);
    if (cli->json) {
        json_begin(b, name);
        json_key(b, "reason");
        add_quoted(b, r.data ? r.data : "", r.len);
        add_str(b, "}");
    } else {
        (void)buf_printf(b, "%s: ", label);
        add_quoted(b, r.data ? r.data : "", r.len);
        add_str(b, tail);
    }
    buf_free(&r);
}

static void on_event(struct cli *cli, struct pcsig_event *ev)
{
    if (cli_media_on_event(cli->media, ev))
        return; /* issue 16: the conductor's signaling, reported by it */
    buf_t b;
    buf_init(&b, SIZE_MAX);
    bool j = cli->json;
    switch (ev->type) {
    case PCSIG_EV_SIGNED_IN:
        cli->unreachable = false;
        cli->own_id = ev->own_id;
        cli->autocall_done = false;
        peers_set_all(cli, ev->peers, ev->npeers);
        if (j) {
            json_begin(&b, "signed_in");
            json_key(&b, "id");
            add_u64(&b, ev->own_id);
            json_key(&b, "peers");
            add_str(&b, "[");
            for (size_t i = 0; i < ev->npeers; i++) {
                add_str(&b, i ? ",{\"id\":" : "{\"id\":");
                add_u64(&b, ev->peers[i].id);
                add_str(&b, ",\"name\":");
                add_quoted(&b, ev->peers[i].name, strlen(ev->peers[i].name));
                add_str(&b, ev->peers[i].connected ? ",\"connected\":true}"
                                                   : ",\"connected\":false}");
            }
            add_str(&b, "]}");
        } else {
            (void)buf_printf(&b, "signed in to %s:%u as %llu; %zu peer(s)", cli->server,
                             (unsigned)cli->port, (unsigned long long)ev->own_id, ev->npeers);
            for (size_t i = 0; i < ev->npeers; i++) {
                (void)buf_printf(&b, "\n  %llu ", (unsigned long long)ev->peers[i].id);
                add_quoted(&b, ev->peers[i].name, strlen(ev->peers[i].name));
            }
        }
        break;
    case PCSIG_EV_PEER_JOINED:
    case PCSIG_EV_PEER_LEFT: {
        bool joined = ev->type == PCSIG_EV_PEER_JOINED;
        const char *name = ev->name ? ev->name : "";
        if (joined)
            peers_add(cli, ev->peer_id, name);
        else
            peers_remove(cli, ev->peer_id);
        if (j) {
            json_begin(&b, joined ? "peer_joined" : "peer_left");
            json_key(&b, "id");
            add_u64(&b, ev->peer_id);
            json_key(&b, "name");
            add_quoted(&b, name, strlen(name));
            add_str(&b, "}");
        } else {
            (void)buf_printf(&b, "peer %llu ", (unsigned long long)ev->peer_id);
            add_quoted(&b, name, strlen(name));
            add_str(&b, joined ? " joined" : " left");
        }
        break;
    }
    case PCSIG_EV_MESSAGE:
        if (j) {
            json_begin(&b, "message");
            json_key(&b, "from");
            add_u64(&b, ev->peer_id);
            json_key(&b, "content_type");
            if (ev->content_type)
                add_quoted(&b, ev->content_type, strlen(ev->content_type));
            else
                add_str(&b, "null");
            /* JSON strings carry text: anything else goes as base64. */
            if (cjson_utf8_valid(ev->data, ev->len)) {
                json_key(&b, "data");
                add_quoted(&b, ev->data, ev->len);
            } else {
                json_key(&b, "data_b64");
                add_str(&b, "\"");
                (void)cjson_b64_encode(&b, ev->data, ev->len);
                add_str(&b, "\"");
            }
            add_str(&b, "}");
        } else {
            (void)buf_printf(&b, "message from %llu (", (unsigned long long)ev->peer_id);
            const char *pn = peer_name(cli, ev->peer_id);
            add_quoted(&b, pn, strlen(pn));
            add_str(&b, ") [");
            if (ev->content_type)
                add_quoted(&b, ev->content_type, strlen(ev->content_type));
            else
                add_str(&b, "no type");
            (void)buf_printf(&b, ", %zu bytes]: ", ev->len);
            add_quoted(&b, ev->data, ev->len);
        }
        if (cli->exec_cmd)
            exec_message(cli, ev);
        break;
    case PCSIG_EV_PEER_HANGUP:
        if (j) {
            json_begin(&b, "hangup");
            json_key(&b, "from");
            add_u64(&b, ev->peer_id);
            add_str(&b, "}");
        } else {
            (void)buf_printf(&b, "peer %llu hung up (BYE)", (unsigned long long)ev->peer_id);
        }
        break;
    case PCSIG_EV_MESSAGE_SENT:
        if (j) {
            json_begin(&b, "sent");
            json_key(&b, "token");
            add_u64(&b, ev->token);
            json_key(&b, "to");
            add_u64(&b, ev->peer_id);
            add_str(&b, "}");
        } else {
            (void)buf_printf(&b, "sent #%llu to %llu", (unsigned long long)ev->token,
                             (unsigned long long)ev->peer_id);
        }
        break;
    case PCSIG_EV_MESSAGE_FAILED: {
        const char *r = ev->reason ? ev->reason : "";
        if (j) {
            json_begin(&b, "send_failed");
            json_key(&b, "token");
            add_u64(&b, ev->token);
            json_key(&b, "to");
            add_u64(&b, ev->peer_id);
            json_key(&b, "status");
            add_u64(&b, (uint64_t)(ev->status > 0 ? ev->status : 0));
            json_key(&b, "reason");
            add_quoted(&b, r, strlen(r));
            add_str(&b, "}");
        } else {
            (void)buf_printf(&b, "message #%llu to %llu failed: ", (unsigned long long)ev->token,
                             (unsigned long long)ev->peer_id);
            add_quoted(&b, r, strlen(r));
        }
        break;
    }
    case PCSIG_EV_SERVER_UNREACHABLE: {
        const char *r = ev->reason ? ev->reason : "";
        cli->unreachable = true;
        cli->own_id = 0;
        peers_clear(cli);
        if (j) {
            json_begin(&b, "server_unreachable");
            json_key(&b, "reason");
            add_quoted(&b, r, strlen(r));
            json_key(&b, "retry_in_ms");
            add_u64(&b, (uint64_t)(ev->retry_in_ms > 0 ? ev->retry_in_ms : 0));
            add_str(&b, "}");
        } else {
            add_str(&b, "server unreachable: ");
            add_quoted(&b, r, strlen(r));
            (void)buf_printf(&b, "; retrying in %d ms", ev->retry_in_ms);
        }
        break;
    }
    case PCSIG_EV_SESSION_LOST:
        session_ended(cli, &b, "session_lost", "session lost", "; signing in again", ev->reason,
                      NULL);
        break;
    case PCSIG_EV_DISCONNECTED: {
        /* Ours when we quit (the cause says why); else the library's own. */
        session_ended(cli, &b, "disconnected", "disconnected", "", ev->reason,
                      cli->quit ? cli->quit_why : NULL);
        /* Not asked for by us: the library gave up (a fatal answer). */
        if (!cli->quit) {
            cli->quit = true;
            cli->exit_code = CLI_EXIT_FATAL;
        }
        break;
    }
    }
    out_line(cli, &b);
    buf_free(&b);
    if (ev->type == PCSIG_EV_SIGNED_IN || ev->type == PCSIG_EV_PEER_JOINED)
        autocall_check(cli);
    if (ev->type == PCSIG_EV_SIGNED_IN && cli->hold)
        replay_held(cli);
    else if (ev->type == PCSIG_EV_SERVER_UNREACHABLE && cli->hold && cli->held_quit)
        give_up_held(cli);
    else if (ev->type == PCSIG_EV_DISCONNECTED && cli->hold && cli->held.len)
        give_up_held(cli); /* a fatal refusal: say what will not be done */
}

static void drain_events(struct cli *cli)
{
    struct pcsig_event *ev;
    while ((ev = pcsig_client_next_event(cli->client, 0)) != NULL) {
        on_event(cli, ev);
        pcsig_event_free(ev);
    }
}

/* ---- commands ------------------------------------------------------------------------ */

/* ---- issue 16: media commands (the conductor is in cli_media.c) ---------------------- */

static void media_result(struct cli *cli, int rc, const char *what, const char *why)
{
    if (rc < 0)
        json_error(cli, what, why);
}

/* hangup, answer, reject, and send with "via":"dc". True when it was one. */
static bool media_json_command(struct cli *cli, const char *cmd, const struct cjson_object *o)
{
    const char *why = NULL;
    const char *via = cjson_get_string(o, "via", NULL);
    if (strcmp(cmd, "hangup") == 0) {
        int rc = cli_media_hangup(cli->media, &why);
        media_result(cli, rc, "cannot hang up", why);
    } else if (strcmp(cmd, "answer") == 0 || strcmp(cmd, "reject") == 0) {
        int rc = cli_media_answer(cli->media, cmd[0] == 'a', &why);
        media_result(cli, rc, cmd[0] == 'a' ? "cannot answer" : "cannot reject", why);
    } else if (strcmp(cmd, "send") == 0 && via && strcmp(via, "dc") == 0) {
        size_t dlen = 0;
        const char *data = cjson_get_string(o, "data", &dlen);
        if (!data) {
            json_error(cli, "bad command", "send via dc needs \"data\" (text)");
        } else {
            int rc = cli_media_dc_send(cli->media, data, dlen, &why);
            media_result(cli, rc, "cannot send", why);
        }
    } else {
        return false;
    }
    return true;
}

/* Text: hangup | answer | reject | send dc TEXT. True when it was one. */
static bool media_text_command(struct cli *cli, const char *w, size_t wl, const char *rest,
                               size_t rl)
{
    const char *why = NULL;
#define MIS(x) (wl == strlen(x) && memcmp(w, (x), wl) == 0)
    if (MIS("hangup")) {
        int rc = cli_media_hangup(cli->media, &why);
        media_result(cli, rc, "cannot hang up", why);
    } else if (MIS("answer") || MIS("reject")) {
        int rc = cli_media_answer(cli->media, w[0] == 'a', &why);
        media_result(cli, rc, w[0] == 'a' ? "cannot answer" : "cannot reject", why);
    } else if (MIS("send") && cli->media && rl >= STRLIT_LEN("dc") && memcmp(rest, STRLIT("dc")) == 0 &&
               (rl == 2 || rest[2] == ' ')) {
        /* Only with --media: without it "dc" is a peer's name like any other. */
        const char *text = rl > 3 ? rest + 3 : "";
        int rc = cli_media_dc_send(cli->media, text, rl > 3 ? rl - 3 : 0, &why);
        media_result(cli, rc, "cannot send", why);
    } else {
        return false;
    }
#undef MIS
    return true;
}

/* A conductor event (one JSON object): as it is with --json, else labelled. */
static void media_show(void *arg, const char *line)
{
    struct cli *cli = arg;
    if (cli->json)
        say(cli, "%s", line);
    else
        say(cli, "media: %s", line);
}

static void json_command(struct cli *cli, const char *line, size_t n)
{
    struct cjson_object o;
    const char *err = NULL;
    int rc = cjson_parse_object(line, n, &o, &err);
    if (rc < 0) {
        json_error(cli, "bad command", err ? err : "out of memory");
        return;
    }
    const char *cmd = cjson_get_string(&o, "cmd", NULL);
    uint64_t to = 0;
    int to_rc = cjson_get_u64(&o, "to", &to);
    bool to_ok = to_rc == 0 && to > 0 && to <= PROTO_MAX_ID;
    size_t to_name_len = 0;
    const char *to_name = cjson_get_string(&o, "to", &to_name_len);
    if (!cmd) {
        json_error(cli, "bad command", "no \"cmd\" string");
    } else if (strcmp(cmd, "quit") == 0) {
        input_over(cli, "quit command");
    } else if (strcmp(cmd, "peers") == 0) {
        show_peers(cli);
    } else if (strcmp(cmd, "connect") == 0) {
        if (!cli->connected)
            do_connect(cli);
    } else if (media_json_command(cli, cmd, &o)) {
        /* issue 16: hangup, answer, reject, send via the data channel */
    } else if (strcmp(cmd, "send") == 0 || strcmp(cmd, "call") == 0 ||
               strcmp(cmd, "bye") == 0) {
        if (to_name) {
            /* "to" as a string: a peer's name (as listed), resolved here. */
            to_ok = resolve_peer(cli, to_name, to_name_len, &to) == 0;
        } else if (!to_ok) {
            json_error(cli, "bad command",
                       "\"to\" must be a peer id (a positive integer) or a peer's name");
        }
        if (!to_ok) {
            /* said why */
        } else if (cmd[0] == 'c') {
            send_offer(cli, to);
        } else if (cmd[0] == 'b') {
            send_bye(cli, to);
        } else {
            size_t dlen = 0, blen = 0;
            const char *data = cjson_get_string(&o, "data", &dlen);
            const char *b64 = cjson_get_string(&o, "data_b64", &blen);
            const struct cjson_member *ctm = cjson_get(&o, "content_type");
            const char *ctype = cjson_get_string(&o, "content_type", NULL);
            if ((data != NULL) == (b64 != NULL)) {
                json_error(cli, "bad command", "send needs one of \"data\" and \"data_b64\"");
            } else if (ctm && ctm->type != CJSON_STRING && ctm->type != CJSON_NULL) {
                json_error(cli, "bad command", "\"content_type\" must be a string");
            } else if (b64) {
                buf_t bin;
                buf_init(&bin, blen);
                if (cjson_b64_decode(&bin, b64, blen) < 0)
                    json_error(cli, "bad command", "\"data_b64\" is not valid base64");
                else
                    send_bytes(cli, to, ctype, bin.data, bin.len);
                buf_free(&bin);
            } else {
                send_bytes(cli, to, ctype, data, dlen);
            }
        }
    } else {
        json_error(cli, "bad command", "unknown \"cmd\"");
    }
    cjson_object_free(&o);
}

static void text_help(struct cli *cli)
{
    say(cli, "commands: connect | peers | send PEER TEXT | call PEER | bye PEER | quit "
             "(PEER: an id, or a name from peers)\n"
             "with --media: call PEER | answer | reject | hangup | send dc TEXT");
}

static void text_command(struct cli *cli, const char *line, size_t n)
{
    /* Words are split on single spaces; TEXT is the rest of the line. */
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
        n--;
    while (n && line[0] == ' ') {
        line++;
        n--;
    }
    if (n == 0)
        return;
    const char *sp = memchr(line, ' ', n);
    size_t wl = sp ? (size_t)(sp - line) : n;
    const char *rest = sp ? sp + 1 : line + n;
    size_t rl = sp ? n - wl - 1 : 0;
#define IS(w) (wl == strlen(w) && memcmp(line, (w), wl) == 0)
    if (media_text_command(cli, line, wl, rest, rl)) {
        /* issue 16 */
    } else if (IS("quit") || IS("exit")) {
        input_over(cli, "quit command");
    } else if (IS("help")) {
        text_help(cli);
    } else if (IS("connect")) {
        do_connect(cli);
    } else if (IS("peers")) {
        show_peers(cli);
    } else if (IS("send") || IS("call") || IS("bye")) {
        const char *sp2 = memchr(rest, ' ', rl);
        size_t il = sp2 ? (size_t)(sp2 - rest) : rl;
        uint64_t to;
        if (il == 0) {
            json_error(cli, line[0] == 's' ? "usage: send PEER TEXT" : line[0] == 'c'
                                                                     ? "usage: call PEER"
                                                                     : "usage: bye PEER",
                       "PEER is an id or a name from peers");
        } else if (line[0] == 's' && !sp2) {
            /* "send 2" sent an empty message once: almost surely a slip. */
            json_error(cli, "usage: send PEER TEXT", "no text to send");
        } else if (resolve_peer(cli, rest, il, &to) < 0) {
            /* said why */
        } else if (line[0] == 'c') {
            send_offer(cli, to);
        } else if (line[0] == 'b') {
            send_bye(cli, to);
        } else {
            send_bytes(cli, to, NULL, sp2 + 1, rl - il - 1);
        }
    } else {
        json_error(cli, "unknown command (try help)", NULL);
    }
#undef IS
}

/* Before the first sign-in: does this --json line wait for it? Commands
 * that need a session do; quit, malformed lines and the rest run at once. */
static bool needs_session(const char *line, size_t n)
{
    struct cjson_object o;
    const char *err = NULL;
    if (cjson_parse_object(line, n, &o, &err) < 0)
        return false;
    const char *cmd = cjson_get_string(&o, "cmd", NULL);
    bool wait = cmd && (strcmp(cmd, "send") == 0 || strcmp(cmd, "call") == 0 ||
                        strcmp(cmd, "hangup") == 0 ||
                        strcmp(cmd, "bye") == 0 || strcmp(cmd, "peers") == 0);
    cjson_object_free(&o);
    return wait;
}

static void on_line(struct cli *cli, const char *line, size_t n)
{
    if (cli->json) {
        /* Blank lines are harmless separators. */
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k == n)
            return;
        if (cli->hold && needs_session(line, n)) {
            if (buf_append(&cli->held, line, n) < 0 || buf_append(&cli->held, STRLIT("\n")) < 0)
                json_error(cli, "bad command", "too much input before the sign-in");
            return;
        }
        json_command(cli, line, n);
    } else {
        text_command(cli, line, n);
    }
}

/* ---- the terminal ------------------------------------------------------------------------ */

/* Non-canonical input without echo: we see every key, so the partial line
 * is ours to redraw. Signals (^C, ^Z) stay with the terminal driver. */
static void tty_enter(struct cli *cli)
{
    struct termios t;
    if (tcgetattr(STDIN_FILENO, &cli->saved_tio) != 0)
        return;
    t = cli->saved_tio;
    t.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
        cli->tty_raw = true;
}

static void tty_leave(struct cli *cli)
{
    if (cli->tty_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &cli->saved_tio);
    cli->tty_raw = false;
}

static void tty_redraw(struct cli *cli)
{
    fputs("\r\033[K> ", stdout);
    if (cli->line.len)
        fwrite(cli->line.data, 1, cli->line.len, stdout);
    fflush(stdout);
}


/* Keys typed on the terminal: editing, echo, and lines on Enter.
 * Returns false for ^D on an empty line (EOF). */
static bool tty_keys(struct cli *cli, const unsigned char *k, size_t n)
{
    for (size_t i = 0; i < n && !cli->quit; i++) {
        unsigned char ch = k[i];
        if (cli->esc_state == 1) { /* after ESC: a CSI sequence or one key */
            cli->esc_state = ch == '[' ? 2 : 0;
            continue;
        }
        if (cli->esc_state == 2) { /* arrows and such: ignored to the final byte */
            if (ch >= 0x40 && ch <= 0x7e)
                cli->esc_state = 0;
            continue;
        }
        if (ch == '\r' || ch == '\n') {
            fputs("\r\n", stdout);
            buf_t l = cli->line;
            buf_init(&cli->line, CLI_MAX_LINE); /* events print no stale input */
            on_line(cli, l.data ? l.data : "", l.len);
            buf_free(&l);
            if (!cli->quit)
                tty_redraw(cli);
        } else if (ch == 0x7f || ch == '\b') {
            /* Drop one character: the last byte and its UTF-8 lead bytes. */
            while (cli->line.len && (cli->line.data[cli->line.len - 1] & 0xC0) == 0x80)
                cli->line.len--;
            if (cli->line.len)
                cli->line.len--;
            tty_redraw(cli);
        } else if (ch == 0x15) { /* ^U */
            buf_reset(&cli->line);
            tty_redraw(cli);
        } else if (ch == 0x04) { /* ^D */
            if (cli->line.len == 0)
                return false;
        } else if (ch == 0x1b) {
            cli->esc_state = 1;
        } else if (ch >= 0x20 || ch == '\t') {
            if (buf_append(&cli->line, &ch, 1) == 0) {
                fputc(ch, stdout);
                fflush(stdout);
            }
        }
    }
    return true;
}

/* Read what stdin has; handle complete lines. Returns false at EOF. */
static bool read_stdin(struct cli *cli)
{
    char tmp[CLI_READ_CHUNK];
    ssize_t r = read(STDIN_FILENO, tmp, sizeof tmp);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN;
    if (cli->tty_raw && r > 0)
        return tty_keys(cli, (const unsigned char *)tmp, (size_t)r);
    if (r == 0) {
        if (cli->line.len && !cli->discarding && !cli->in_done)
            on_line(cli, cli->line.data, cli->line.len); /* a last line without '\n' */
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
            json_error(cli, "bad command", "line too long");
        }
        at += piece;
        if (!nl)
            break;
        at++; /* the '\n' */
        if (!cli->discarding)
            on_line(cli, cli->line.data ? cli->line.data : "", cli->line.len);
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
                err_text(err, tmp, sizeof tmp));
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
static void logs_drain(struct cli *cli)
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
    fputs("\r\033[K", stdout);
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
    if (!cli->quit)
        tty_redraw(cli);
}

/* Back to stderr (the library's threads are still running: what they log
 * from now on goes straight to the terminal), then print what is queued.
 * log_set_sink returns once no sink call is running, so nothing is added
 * to the queue after it and it can be freed. */
static void logs_release(struct cli *cli)
{
    struct cli_logs *lq = &cli->logs;
    if (lq->efd < 0)
        return;
    (void)log_set_sink(NULL, NULL);
    logs_drain(cli);
    close(lq->efd);
    lq->efd = -1;
    pthread_mutex_destroy(&lq->lock);
    buf_free(&lq->queue);
    buf_free(&lq->spare);
}

/* ---- main -------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pcsig-client [options]\n"
            "A headless peerconnection signaling client (wire-compatible with WebRTC's\n"
            "peerconnection_client and server).\n\n"
            "  --server HOST    server to use (default $WEBRTC_SERVER or localhost)\n"
            "  --port N         server port, 1..65535 (default 8888)\n"
            "  --name NAME      name to sign in with (default $USERNAME@hostname);\n"
            "                   sent percent-encoded, so \"a b\" is listed as \"a%%20b\"\n"
            "  --autoconnect    connect at start (else type \"connect\")\n"
            "  --autocall       call the first peer (lowest id) once signed in\n"
            "  --keep-alive     reuse the hanging-GET connection (HTTP/1.1; pcsig servers)\n"
            "  --json           JSON lines: commands on stdin, events on stdout\n"
            "                   (connects at start)\n"
            "  --exec CMD       run CMD with /bin/sh for every message: the body on its\n"
            "                   stdin, the sender in $PCSIG_FROM, the type in\n"
            "                   $PCSIG_CONTENT_TYPE; one child at a time per peer, the\n"
            "                   other messages wait (at most 256, then dropped with a\n"
            "                   warning)\n"
            "  --exec-max N     at most N --exec children at once in all (default 4)\n"
            "  --auth-token TOKEN  sign in to a server run with --auth-token (sent as\n"
            "                   Authorization: Bearer on the sign-in only; never logged)\n"
            "  --auth-token-file FILE  the same, read from the first line of FILE\n"
            "                   (default: $PCSIG_AUTH_TOKEN when set)\n"
            "  --allow-insecure-token  send the token even over plain TCP to an address\n"
            "                   that is not loopback (else refused: use --tls)\n"
            "  --max-peers N    peers kept of the sign-in list (default 100000; the rest\n"
            "                   are skipped with a warning)\n"
            "  --tls            speak TLS; the server's certificate is verified (SNI and\n"
            "                   hostname/IP check) against --ca or the system's store\n"
            "  --ca FILE        trusted CA certificates (PEM) for --tls\n"
            "  --cert FILE      client certificate for mutual TLS (with --key)\n"
            "  --key FILE       private key of --cert\n"
            "  --insecure       with --tls: do NOT verify the server (testing only)\n"
            "  --log-level L    error, warn, info or debug on stderr (default warn)\n"
            "  --media M        real calls (GStreamer webrtcbin): none (data channel\n"
            "                   only), test (test pattern and tone, VP8/Opus) or devices\n"
            "                   (camera, microphone); without it, call sends a\n"
            "                   signaling-only offer\n"
            "  --no-auto-answer offer incoming calls (answer / reject) instead of\n"
            "                   answering at once\n"
            "  --ice-server URL stun:HOST:PORT or turn:USER:PASS@HOST:PORT (repeatable)\n"
            "  --show           show received video in a window\n"
            "  --stats-ms N     media_stats event every N ms in a call (0: none; 1000)\n"
            "  --version        print the version\n"
            "  --help           this text\n\n"
            "interactive commands: connect, peers, send PEER TEXT, call PEER, bye PEER,\n"
            "  quit (PEER: an id, or the name of one peer as peers lists it);\n"
            "  with --media also answer, reject, hangup, send dc TEXT\n"
            "--json commands, one object per line (\"to\": an id, or a name string):\n"
            "  {\"cmd\":\"send\",\"to\":2,\"data\":\"hi\",\"content_type\":\"text/plain\"}\n"
            "  (or \"data_b64\" for binary), {\"cmd\":\"peers\"}, {\"cmd\":\"call\",\"to\":2},\n"
            "  {\"cmd\":\"bye\",\"to\":2}, {\"cmd\":\"quit\"}; EOF also quits. With --media:\n"
            "  {\"cmd\":\"hangup\"}, {\"cmd\":\"answer\"}, {\"cmd\":\"reject\"},\n"
            "  {\"cmd\":\"send\",\"via\":\"dc\",\"data\":\"hi\"}. send, call, bye\n"
            "  and peers given before the sign-in wait for it; if the server is\n"
            "  unreachable when input ends, they are reported as errors (exit 1).\n");
}

enum { OPT_SERVER = 256, OPT_PORT, OPT_NAME, OPT_AUTOCONNECT, OPT_AUTOCALL, OPT_KEEPALIVE,
       OPT_JSON, OPT_EXEC, OPT_LOG_LEVEL, OPT_HELP, OPT_TLS, OPT_CA, OPT_CERT, OPT_KEY,
       OPT_INSECURE, OPT_VERSION, OPT_EXEC_MAX, OPT_AUTH_TOKEN, OPT_AUTH_TOKEN_FILE,
       OPT_ALLOW_INSECURE_TOKEN, OPT_MAX_PEERS, OPT_MEDIA, OPT_NO_AUTO_ANSWER,
       OPT_ICE_SERVER, OPT_SHOW, OPT_STATS_MS };

/*
 * The first line of path (without its line end) as the auth token (heap;
 * the caller wipes and frees it), or NULL after saying why on stderr.
 */
static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        char tmp[128];
        fprintf(stderr, "pcsig-client: cannot read --auth-token-file %s: %s\n", path,
                err_text(errno, tmp, sizeof tmp));
        return NULL;
    }
    char *t = calloc(1, CLI_TOKEN_FILE_MAX + 1);
    size_t n = t ? fread(t, 1, CLI_TOKEN_FILE_MAX, f) : 0;
    fclose(f);
    if (!t) {
        fprintf(stderr, "pcsig-client: out of memory\n");
        return NULL;
    }
    size_t line = 0;
    while (line < n && t[line] != '\r' && t[line] != '\n')
        line++;
    /* Only the token stays: the file's other lines are wiped at once, and
     * the callers wipe strlen(token) bytes, which a NUL would cut short. */
    explicit_bzero(t + line, CLI_TOKEN_FILE_MAX + 1 - line);
    const char *why = line == 0 ? "no token on its first line"
                      : memchr(t, '\0', line) ? "a NUL byte in the token"
                                              : NULL;
    if (why) {
        fprintf(stderr, "pcsig-client: --auth-token-file %s: %s\n", path, why);
        explicit_bzero(t, line);
        free(t);
        return NULL;
    }
    return t;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"port", required_argument, NULL, OPT_PORT},
        {"name", required_argument, NULL, OPT_NAME},
        {"autoconnect", no_argument, NULL, OPT_AUTOCONNECT},
        {"autocall", no_argument, NULL, OPT_AUTOCALL},
        {"keep-alive", no_argument, NULL, OPT_KEEPALIVE},
        {"json", no_argument, NULL, OPT_JSON},
        {"exec", required_argument, NULL, OPT_EXEC},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {"tls", no_argument, NULL, OPT_TLS},
        {"ca", required_argument, NULL, OPT_CA},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"version", no_argument, NULL, OPT_VERSION},
        {"exec-max", required_argument, NULL, OPT_EXEC_MAX},
        {"auth-token", required_argument, NULL, OPT_AUTH_TOKEN},
        {"auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE},
        {"allow-insecure-token", no_argument, NULL, OPT_ALLOW_INSECURE_TOKEN},
        {"max-peers", required_argument, NULL, OPT_MAX_PEERS},
        {"media", required_argument, NULL, OPT_MEDIA},
        {"no-auto-answer", no_argument, NULL, OPT_NO_AUTO_ANSWER},
        {"ice-server", required_argument, NULL, OPT_ICE_SERVER},
        {"show", no_argument, NULL, OPT_SHOW},
        {"stats-ms", required_argument, NULL, OPT_STATS_MS},
        {NULL, 0, NULL, 0},
    };
    struct cli cli = {0};
    cli.mcfg.stats_ms = 1000;
    struct pcsig_client_options o = {0};
    const char *env_server = getenv("WEBRTC_SERVER");
    o.server = env_server && *env_server ? env_server : "localhost";
    o.port = 8888;
    bool autoconnect = false;
    enum log_level level = LOG_WARN;
    const char *token_file = NULL;
    cli.exec_max = CLI_EXEC_DEFAULT_MAX;
    uint64_t max_peers = 100000;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER: o.server = optarg; break;
        case OPT_PORT: {
            uint64_t v;
            if (proto_parse_u64(optarg, strlen(optarg), &v) < 0 || v < 1 || v > 65535) {
                fprintf(stderr, "Error: %s is not a valid port.\n", optarg);
                return CLI_EXIT_USAGE;
            }
            o.port = (uint16_t)v;
            break;
        }
        case OPT_NAME: o.name = optarg; break;
        case OPT_AUTOCONNECT: autoconnect = true; break;
        case OPT_AUTOCALL: cli.autocall = true; break;
        case OPT_KEEPALIVE: o.keep_alive = true; break;
        case OPT_JSON: cli.json = true; break;
        case OPT_EXEC: cli.exec_cmd = optarg; break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg, &level) < 0) {
                fprintf(stderr, "pcsig-client: bad value '%s' for --log-level (see --help)\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_HELP: usage(stdout); return 0;
        case OPT_VERSION:
            printf("pcsig-client %s\n%s\n", PCSIG_VERSION, cli_media_version());
            return 0;
        case OPT_MEDIA: cli.mcfg.media = optarg; break;
        case OPT_NO_AUTO_ANSWER: cli.mcfg.no_auto_answer = true; break;
        case OPT_SHOW: cli.mcfg.show = true; break;
        case OPT_ICE_SERVER: {
            const char *why = cli_media_check_ice(optarg);
            if (why || cli.mcfg.nice == CLI_MEDIA_MAX_ICE) {
                fprintf(stderr, "pcsig-client: bad --ice-server '%s': %s\n", optarg,
                        why ? why : "too many");
                return CLI_EXIT_USAGE;
            }
            cli.mcfg.ice[cli.mcfg.nice++] = optarg;
            break;
        }
        case OPT_STATS_MS: {
            uint64_t v;
            if (proto_parse_u64(optarg, strlen(optarg), &v) < 0 || v > 3600000) {
                fprintf(stderr, "pcsig-client: bad value '%s' for --stats-ms\n", optarg);
                return CLI_EXIT_USAGE;
            }
            cli.mcfg.stats_ms = (int)v;
            break;
        }
        case OPT_TLS: o.tls = true; break;
        case OPT_CA: o.ca_file = optarg; break;
        case OPT_CERT: o.cert_file = optarg; break;
        case OPT_KEY: o.key_file = optarg; break;
        case OPT_INSECURE: o.insecure = true; break;
        case OPT_AUTH_TOKEN: o.auth_token = optarg; break;
        case OPT_AUTH_TOKEN_FILE: token_file = optarg; break;
        case OPT_ALLOW_INSECURE_TOKEN: o.allow_insecure_token = true; break;
        case OPT_EXEC_MAX:
        case OPT_MAX_PEERS: {
            uint64_t v;
            uint64_t hi = c == OPT_EXEC_MAX ? 1024 : 100000000;
            if (proto_parse_u64(optarg, strlen(optarg), &v) < 0 || v < 1 || v > hi) {
                fprintf(stderr, "pcsig-client: bad value '%s' for --%s (1..%llu)\n", optarg,
                        c == OPT_EXEC_MAX ? "exec-max" : "max-peers", (unsigned long long)hi);
                return CLI_EXIT_USAGE;
            }
            if (c == OPT_EXEC_MAX)
                cli.exec_max = (unsigned)v;
            else
                max_peers = v;
            break;
        }
        default:
            if (optopt)
                fprintf(stderr, "pcsig-client: option %s needs a value (see --help)\n",
                        argv[optind - 1]);
            else
                fprintf(stderr, "pcsig-client: unknown option %s (see --help)\n",
                        argv[optind - 1]);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pcsig-client: unexpected argument '%s' (see --help)\n", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (!o.tls && (o.ca_file || o.cert_file || o.key_file || o.insecure)) {
        fprintf(stderr, "pcsig-client: --ca, --cert, --key and --insecure need --tls\n");
        return CLI_EXIT_USAGE;
    }
    if ((o.cert_file == NULL) != (o.key_file == NULL)) {
        fprintf(stderr, "pcsig-client: --cert and --key go together\n");
        return CLI_EXIT_USAGE;
    }
    if (o.auth_token && token_file) {
        fprintf(stderr, "pcsig-client: --auth-token and --auth-token-file: give one\n");
        return CLI_EXIT_USAGE;
    }
    /* The token from a file or the environment keeps it out of ps. */
    char *file_token = NULL;
    if (token_file && !(o.auth_token = file_token = read_token_file(token_file)))
        return CLI_EXIT_USAGE;
    const char *env_token = getenv("PCSIG_AUTH_TOKEN");
    if (!o.auth_token && env_token && *env_token)
        o.auth_token = env_token;
    if (o.auth_token && !cwire_token_ok(o.auth_token)) {
        /* Not echoed: it may be a real token with a stray byte. */
        fprintf(stderr, "pcsig-client: the auth token must be 1 to %d bytes of visible ASCII "
                        "(no spaces or control characters)\n", CWIRE_MAX_TOKEN);
        if (file_token) {
            explicit_bzero(file_token, strlen(file_token));
            free(file_token);
        }
        return CLI_EXIT_USAGE;
    }
    o.max_peers = (size_t)max_peers;
    cli.max_peers = (size_t)max_peers;
    if (cli.exec_cmd && !(cli.children = calloc(cli.exec_max, sizeof *cli.children))) {
        fprintf(stderr, "pcsig-client: out of memory\n");
        return CLI_EXIT_FATAL;
    }
    /* The library logs the warning itself at warn level; say it here only
     * when --log-level error would hide that record. */
    if (o.insecure && level < LOG_WARN)
        fprintf(stderr, "pcsig-client: WARNING: --insecure: the server's certificate is NOT "
                        "verified; anyone on the path can read and change this session\n");
    log_set_level(level);
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
    if (file_token) {
        explicit_bzero(file_token, strlen(file_token)); /* the library has its copy */
        free(file_token);
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
        tty_enter(&cli);
        logs_capture(&cli);
        say(&cli, "pcsig-client: type help for the commands");
    }
    if (cli.json || autoconnect)
        do_connect(&cli);

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
            logs_drain(&cli);
        if (p[1].revents)
            drain_events(&cli);
        if (p[4].revents)
            cli_media_drain(cli.media, media_show, &cli);
        if (p[2].revents) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGCHLD) {
                    exec_reap(&cli);
                } else {
                    if (!cli.quit_why)
                        cli.quit_why = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
                    cli.quit = true;
                }
            }
        }
        if (!cli.quit && !cli.in_done && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
            !read_stdin(&cli))
            input_over(&cli, "end of input"); /* quit, once what is held is done */
    }
    int code = cli.exit_code;
    /* Sign out; what the library reports while doing so (sent, failed,
     * disconnected) is still printed, with no prompt redrawn any more. */
    cli.quit = true;
    logs_release(&cli);
    /* A call ends first: its BYE goes out before the sign-out. */
    cli_media_stop(cli.media, media_show, &cli);
    cli.media = NULL;
    pcsig_client_disconnect(cli.client);
    drain_events(&cli);
    if (cli.tty)
        fputs("\r\033[K", stdout); /* no prompt left behind */
    fflush(stdout);
    tty_leave(&cli);
    pcsig_client_free(cli.client);
    peers_clear(&cli);
    if (cli.njobs)
        fprintf(stderr, "pcsig-client: --exec: %zu waiting message(s) not run (exiting)\n",
                cli.njobs);
    while (cli.jobs_head) {
        struct exec_job *j = cli.jobs_head;
        cli.jobs_head = j->next;
        exec_job_free(j);
    }
    free(cli.children);
    buf_free(&cli.line);
    buf_free(&cli.held);
    close(sigfd);
    return code;
}
