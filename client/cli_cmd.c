/*
 * cli_cmd: what the user (or a script) asks. Text lines for people
 * ("send PEER TEXT", ...), one JSON object per line with --json; before
 * the first sign-in, --json commands that need a session are held and run
 * once signed in (or, when the server is unreachable as input ends, run
 * without one so that each reports its error).
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "proto.h"
#include "strlit.h"

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
        cli_error(cli, "expected a peer id or name", "not a valid peer id");
        return -1;
    }
    buf_t why;
    buf_init(&why, 1 << 16);
    size_t hits = 0;
    const struct cli_peers *ps = &cli->peers;
    for (size_t i = 0; i < ps->n; i++) {
        if (strlen(ps->v[i].name) != n || memcmp(ps->v[i].name, s, n) != 0)
            continue;
        if (hits++ == 0)
            *id = ps->v[i].id;
        (void)buf_printf(&why, hits == 1 ? "%llu" : ", %llu",
                         (unsigned long long)ps->v[i].id);
    }
    if (hits == 1) {
        buf_free(&why);
        return 0;
    }
    buf_t q;
    buf_init(&q, 4096);
    cli_add_quoted(&q, s, n < 600 ? n : 600);
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
    cli_error(cli, msg.data ? msg.data : "no such peer", NULL);
    buf_free(&msg);
    buf_free(&q);
    buf_free(&why);
    return -1;
}

static void report_queued(struct cli *cli, int64_t token, uint64_t to)
{
    if (token > 0) {
        if (cli->json) {
            json_t *o = cli_ev_object("queued");
            if (o) {
                json_object_set_new(o, "token", json_integer(token));
                json_object_set_new(o, "to", json_integer((json_int_t)to));
            }
            cli_out_json(cli, o);
        }
        return;
    }
    const char *why = token == -ENOTCONN ? "not signed in"
                      : token == -EINVAL ? "invalid peer id or content type"
                                         : "out of memory";
    if (token == -ENOTCONN && cli->gave_up)
        cli->unsent++;
    cli_error(cli, "cannot send", why);
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
void cli_send_offer(struct cli *cli, uint64_t to)
{
    if (cli->media || cli->mcfg.media) { /* issue 16: a real call */
        const char *why = NULL;
        if (cli_media_call(cli->media, to, &why) < 0)
            cli_error(cli, "cannot call", why);
        return;
    }
    if (!cli->json) /* --json keeps its event sequence; people are told */
        cli_say(cli, "note: a signaling-only offer (no media: %s)",
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
    (void)buf_append_str(&msg, "{\"sdp\": ");
    (void)cli_json_append_string(&msg, sdp.data, sdp.len, false);
    (void)buf_append_str(&msg, ", \"type\": \"offer\"}");
    send_bytes(cli, to, "text/plain", msg.data, msg.len);
    buf_free(&sdp);
    buf_free(&msg);
}

void cli_do_connect(struct cli *cli)
{
    if (cli->connected) {
        cli_error(cli, "already connected", NULL);
        return;
    }
    int rc = pcsig_client_connect(cli->client);
    if (rc < 0) {
        char tmp[128];
        cli_error(cli, "cannot connect", log_strerror(-rc, tmp, sizeof tmp));
        return;
    }
    cli->connected = true;
    if (!cli->json)
        cli_say(cli, "connecting to %s:%u ...", cli->server, (unsigned)cli->port);
}

/* Run what was piped before the first sign-in, in order: on SIGNED_IN; or,
 * when the sign-in failed and input ended, without a session, so that each
 * command reports its error. Then quit if a quit or EOF came after them. */
void cli_replay_held(struct cli *cli)
{
    cli->hold = false;
    buf_t h = cli->held;
    buf_init(&cli->held, CLI_MAX_LINE);
    size_t at = 0;
    while (at < h.len && !cli->quit) {
        const char *nl = memchr(h.data + at, '\n', h.len - at);
        size_t l = (size_t)(nl - (h.data + at));
        cli_on_line(cli, h.data + at, l);
        at += l + 1;
    }
    buf_free(&h);
    if (cli->held_quit)
        cli->quit = true;
}

/* Input ended (EOF or quit) before the first sign-in, with commands held. */
void cli_give_up_held(struct cli *cli)
{
    cli->gave_up = true;
    cli_replay_held(cli);
    cli->quit = true;
    if (cli->unsent && cli->exit_code == 0)
        cli->exit_code = CLI_EXIT_FATAL;
}

/* A quit command or EOF (why says which): quit now, or once the held
 * commands are done. */
void cli_input_over(struct cli *cli, const char *why)
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
        cli_give_up_held(cli); /* no sign-in to wait for: the server is not there */
}


/* ---- issue 16: media commands (the conductor is in cli_media.c) ---------------------- */

static void media_result(struct cli *cli, int rc, const char *what, const char *why)
{
    if (rc < 0)
        cli_error(cli, what, why);
}

/* hangup, answer, reject, and send with "via":"dc". True when it was one. */
static bool media_json_command(struct cli *cli, const char *cmd, const json_t *o)
{
    const char *why = NULL;
    const char *via = cli_json_get_string(o, "via", NULL);
    if (strcmp(cmd, "hangup") == 0) {
        int rc = cli_media_hangup(cli->media, &why);
        media_result(cli, rc, "cannot hang up", why);
    } else if (strcmp(cmd, "answer") == 0 || strcmp(cmd, "reject") == 0) {
        int rc = cli_media_answer(cli->media, cmd[0] == 'a', &why);
        media_result(cli, rc, cmd[0] == 'a' ? "cannot answer" : "cannot reject", why);
    } else if (strcmp(cmd, "send") == 0 && via && strcmp(via, "dc") == 0) {
        size_t dlen = 0;
        const char *data = cli_json_get_string(o, "data", &dlen);
        if (!data) {
            cli_error(cli, "bad command", "send via dc needs \"data\" (text)");
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

static void json_command(struct cli *cli, const char *line, size_t n)
{
    char ebuf[JSON_ERROR_TEXT_LENGTH + 32];
    const char *err = NULL;
    json_t *o = cli_json_parse_object(line, n, ebuf, sizeof ebuf, &err);
    if (!o) {
        cli_error(cli, "bad command", err ? err : "out of memory");
        return;
    }
    const char *cmd = cli_json_get_string(o, "cmd", NULL);
    uint64_t to = 0;
    int to_rc = cli_json_get_id(o, "to", &to);
    bool to_ok = to_rc == 0 && to > 0 && to <= PROTO_MAX_ID;
    size_t to_name_len = 0;
    const char *to_name = cli_json_get_string(o, "to", &to_name_len);
    if (!cmd) {
        cli_error(cli, "bad command", "no \"cmd\" string");
    } else if (strcmp(cmd, "quit") == 0) {
        cli_input_over(cli, "quit command");
    } else if (strcmp(cmd, "peers") == 0) {
        cli_show_peers(cli);
    } else if (strcmp(cmd, "connect") == 0) {
        if (!cli->connected)
            cli_do_connect(cli);
    } else if (media_json_command(cli, cmd, o)) {
        /* issue 16: hangup, answer, reject, send via the data channel */
    } else if (strcmp(cmd, "send") == 0 || strcmp(cmd, "call") == 0 ||
               strcmp(cmd, "bye") == 0) {
        if (to_name) {
            /* "to" as a string: a peer's name (as listed), resolved here. */
            to_ok = resolve_peer(cli, to_name, to_name_len, &to) == 0;
        } else if (!to_ok) {
            cli_error(cli, "bad command",
                       "\"to\" must be a peer id (a positive integer) or a peer's name");
        }
        if (!to_ok) {
            /* said why */
        } else if (cmd[0] == 'c') {
            cli_send_offer(cli, to);
        } else if (cmd[0] == 'b') {
            send_bye(cli, to);
        } else {
            size_t dlen = 0, blen = 0;
            const char *data = cli_json_get_string(o, "data", &dlen);
            const char *b64 = cli_json_get_string(o, "data_b64", &blen);
            const json_t *ctm = json_object_get(o, "content_type");
            const char *ctype = cli_json_get_string(o, "content_type", NULL);
            if ((data != NULL) == (b64 != NULL)) {
                cli_error(cli, "bad command", "send needs one of \"data\" and \"data_b64\"");
            } else if (ctm && !json_is_string(ctm) && !json_is_null(ctm)) {
                cli_error(cli, "bad command", "\"content_type\" must be a string");
            } else if (b64) {
                buf_t bin;
                buf_init(&bin, blen);
                if (cli_b64_decode(&bin, b64, blen) < 0)
                    cli_error(cli, "bad command", "\"data_b64\" is not valid base64");
                else
                    send_bytes(cli, to, ctype, bin.data, bin.len);
                buf_free(&bin);
            } else {
                send_bytes(cli, to, ctype, data, dlen);
            }
        }
    } else {
        cli_error(cli, "bad command", "unknown \"cmd\"");
    }
    json_decref(o);
}

static void text_help(struct cli *cli)
{
    cli_say(cli, "commands: connect | peers | send PEER TEXT | call PEER | bye PEER | quit "
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
        cli_input_over(cli, "quit command");
    } else if (IS("help")) {
        text_help(cli);
    } else if (IS("connect")) {
        cli_do_connect(cli);
    } else if (IS("peers")) {
        cli_show_peers(cli);
    } else if (IS("send") || IS("call") || IS("bye")) {
        const char *sp2 = memchr(rest, ' ', rl);
        size_t il = sp2 ? (size_t)(sp2 - rest) : rl;
        uint64_t to;
        if (il == 0) {
            cli_error(cli, line[0] == 's' ? "usage: send PEER TEXT" : line[0] == 'c'
                                                                     ? "usage: call PEER"
                                                                     : "usage: bye PEER",
                       "PEER is an id or a name from peers");
        } else if (line[0] == 's' && !sp2) {
            /* "send 2" sent an empty message once: almost surely a slip. */
            cli_error(cli, "usage: send PEER TEXT", "no text to send");
        } else if (resolve_peer(cli, rest, il, &to) < 0) {
            /* said why */
        } else if (line[0] == 'c') {
            cli_send_offer(cli, to);
        } else if (line[0] == 'b') {
            send_bye(cli, to);
        } else {
            send_bytes(cli, to, NULL, sp2 + 1, rl - il - 1);
        }
    } else {
        cli_error(cli, "unknown command (try help)", NULL);
    }
#undef IS
}

/* Before the first sign-in: does this --json line wait for it? Commands
 * that need a session do; quit, malformed lines and the rest run at once. */
static bool needs_session(const char *line, size_t n)
{
    char ebuf[JSON_ERROR_TEXT_LENGTH + 32];
    const char *err = NULL;
    json_t *o = cli_json_parse_object(line, n, ebuf, sizeof ebuf, &err);
    if (!o)
        return false;
    const char *cmd = cli_json_get_string(o, "cmd", NULL);
    bool wait = cmd && (strcmp(cmd, "send") == 0 || strcmp(cmd, "call") == 0 ||
                        strcmp(cmd, "hangup") == 0 ||
                        strcmp(cmd, "bye") == 0 || strcmp(cmd, "peers") == 0);
    json_decref(o);
    return wait;
}

void cli_on_line(struct cli *cli, const char *line, size_t n)
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
                cli_error(cli, "bad command", "too much input before the sign-in");
            return;
        }
        json_command(cli, line, n);
    } else {
        text_command(cli, line, n);
    }
}
