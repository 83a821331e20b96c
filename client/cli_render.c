/*
 * cli_render: what pcsig-client prints. Every event has a text form (for
 * people: untrusted names and bodies quoted and escaped, so a peer cannot
 * send terminal escapes) and a JSON form (--json: one compact object per
 * line, {"event":NAME,...}); the table `forms` maps each event type to
 * both. Rendering reads the CLI's state and changes nothing: main.c applies
 * what an event changes after it is rendered.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_out_line(struct cli *cli, buf_t *b)
{
    bool prompt = cli->tty && !cli->json;
    if (prompt)
        cli_term_erase(cli); /* the prompt and the partial input */
    if (b->len)
        fwrite(b->data, 1, b->len, stdout);
    fputc('\n', stdout);
    if (prompt && !cli->quit)
        cli_term_redraw(cli); /* the prompt and what was typed, not yet entered */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (!cli->quit_why)
            cli->quit_why = "standard output closed";
        cli->quit = true;
        cli->exit_code = CLI_EXIT_FATAL;
    }
}

void cli_say(struct cli *cli, const char *fmt, ...)
{
    buf_t b;
    buf_init(&b, 1 << 16);
    va_list ap;
    va_start(ap, fmt);
    (void)buf_vprintf(&b, fmt, ap);
    va_end(ap);
    cli_out_line(cli, &b);
    buf_free(&b);
}

void cli_add_quoted(buf_t *b, const void *p, size_t n)
{
    (void)cli_json_append_string(b, p, n, true);
}

static void add_str(buf_t *b, const char *s)
{
    (void)buf_append_str(b, s);
}

json_t *cli_ev_object(const char *name)
{
    json_t *o = json_object();
    if (o && json_object_set_new(o, "event", json_string(name)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void cli_out_json(struct cli *cli, json_t *ev)
{
    buf_t b;
    buf_init(&b, SIZE_MAX);
    if (cli_json_dump(&b, ev) < 0)
        add_str(&b, "{\"event\":\"error\",\"reason\":\"out of memory\"}");
    cli_out_line(cli, &b);
    buf_free(&b);
}

/* Members of an event object; a NULL value (out of memory) leaves it out. */
static void set(json_t *o, const char *key, json_t *v)
{
    if (o)
        (void)json_object_set_new(o, key, v);
}

static json_t *jtext(const char *s)
{
    return cli_json_text(s ? s : "", s ? strlen(s) : 0, false);
}

static json_t *jid(uint64_t v)
{
    return json_integer((json_int_t)v);
}

void cli_error(struct cli *cli, const char *what, const char *detail)
{
    buf_t r;
    buf_init(&r, 1 << 16);
    add_str(&r, what);
    if (detail) {
        add_str(&r, ": ");
        add_str(&r, detail);
    }
    if (cli->json) {
        json_t *o = cli_ev_object("error");
        set(o, "reason", cli_json_text(r.data ? r.data : "", r.len, false));
        cli_out_json(cli, o);
    } else {
        buf_t b;
        buf_init(&b, 1 << 16);
        add_str(&b, "error: ");
        (void)buf_append(&b, r.data ? r.data : "", r.len);
        cli_out_line(cli, &b);
        buf_free(&b);
    }
    buf_free(&r);
}

/* [{"id":..,"name":..,"connected":..}, ...] */
static json_t *json_peer_array(const struct pcsig_peer *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *e = json_object();
        set(e, "id", jid(p[i].id));
        set(e, "name", jtext(p[i].name));
        set(e, "connected", json_boolean(p[i].connected));
        if (!e || json_array_append_new(a, e) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

void cli_show_peers(struct cli *cli)
{
    const struct cli_peers *ps = &cli->peers;
    if (cli->json) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < ps->n; i++) {
            json_t *e = json_object();
            set(e, "id", jid(ps->v[i].id));
            set(e, "name", jtext(ps->v[i].name));
            set(e, "connected", json_true());
            (void)json_array_append_new(a, e);
        }
        json_t *o = cli_ev_object("peers");
        set(o, "peers", a);
        cli_out_json(cli, o);
        return;
    }
    buf_t b;
    buf_init(&b, 1 << 24);
    if (ps->n == 0)
        add_str(&b, "no peers");
    for (size_t i = 0; i < ps->n; i++) {
        (void)buf_printf(&b, "%s  %llu ", i ? "\n" : "", (unsigned long long)ps->v[i].id);
        cli_add_quoted(&b, ps->v[i].name, strlen(ps->v[i].name));
    }
    cli_out_line(cli, &b);
    buf_free(&b);
}

/* ---- the events: each type's text and JSON forms ------------------------------------------ */

/* A reason, and why we quit in parentheses when it was us: "signed out
 * (end of input)". Heap, NUL-terminated; NULL when out of memory. */
static char *reason_with_cause(const char *reason, const char *cause)
{
    buf_t r;
    buf_init(&r, 1 << 16);
    add_str(&r, reason ? reason : "");
    if (cause)
        (void)buf_printf(&r, " (%s)", cause);
    if (buf_append(&r, "", 1) < 0) {
        buf_free(&r);
        return NULL;
    }
    return r.data;
}

/* What ended us, for DISCONNECTED: ours when we quit, else the library's own. */
static const char *quit_cause(const struct cli *cli, const struct pcsig_event *ev)
{
    return ev->type == PCSIG_EV_DISCONNECTED && cli->quit ? cli->quit_why : NULL;
}

static void text_signed_in(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    (void)buf_printf(b, "signed in to %s:%u as %llu; %zu peer(s)", cli->server,
                     (unsigned)cli->port, (unsigned long long)ev->own_id, ev->npeers);
    for (size_t i = 0; i < ev->npeers; i++) {
        (void)buf_printf(b, "\n  %llu ", (unsigned long long)ev->peers[i].id);
        cli_add_quoted(b, ev->peers[i].name, strlen(ev->peers[i].name));
    }
}

static void json_signed_in(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    (void)cli;
    set(o, "id", jid(ev->own_id));
    set(o, "peers", json_peer_array(ev->peers, ev->npeers));
}

static void text_peer(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    (void)cli;
    const char *name = ev->name ? ev->name : "";
    (void)buf_printf(b, "peer %llu ", (unsigned long long)ev->peer_id);
    cli_add_quoted(b, name, strlen(name));
    add_str(b, ev->type == PCSIG_EV_PEER_JOINED ? " joined" : " left");
}

static void json_peer(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    (void)cli;
    set(o, "id", jid(ev->peer_id));
    set(o, "name", jtext(ev->name));
}

static void text_message(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    (void)buf_printf(b, "message from %llu (", (unsigned long long)ev->peer_id);
    const char *pn = cli_peers_name(&cli->peers, ev->peer_id, cli->own_id);
    cli_add_quoted(b, pn, strlen(pn));
    add_str(b, ") [");
    if (ev->content_type)
        cli_add_quoted(b, ev->content_type, strlen(ev->content_type));
    else
        add_str(b, "no type");
    (void)buf_printf(b, ", %zu bytes]: ", ev->len);
    cli_add_quoted(b, ev->data, ev->len);
}

static void json_message(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    (void)cli;
    set(o, "from", jid(ev->peer_id));
    set(o, "content_type", ev->content_type ? jtext(ev->content_type) : json_null());
    /* JSON strings carry text: anything else goes as base64. */
    json_t *s = ev->len ? json_stringn((const char *)ev->data, ev->len) : json_string("");
    if (s) {
        set(o, "data", s);
    } else {
        buf_t b64;
        buf_init(&b64, SIZE_MAX);
        if (cli_b64_encode(&b64, ev->data, ev->len) == 0)
            set(o, "data_b64", json_stringn(b64.data ? b64.data : "", b64.len));
        buf_free(&b64);
    }
}

static void text_hangup(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    (void)cli;
    (void)buf_printf(b, "peer %llu hung up (BYE)", (unsigned long long)ev->peer_id);
}

static void json_from(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    (void)cli;
    set(o, "from", jid(ev->peer_id));
}

static void text_sent(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    (void)cli;
    (void)buf_printf(b, "sent #%llu to %llu", (unsigned long long)ev->token,
                     (unsigned long long)ev->peer_id);
}

static void json_sent(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    (void)cli;
    set(o, "token", jid(ev->token));
    set(o, "to", jid(ev->peer_id));
}

static void text_failed(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    (void)cli;
    const char *r = ev->reason ? ev->reason : "";
    (void)buf_printf(b, "message #%llu to %llu failed: ", (unsigned long long)ev->token,
                     (unsigned long long)ev->peer_id);
    cli_add_quoted(b, r, strlen(r));
}

static void json_failed(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    (void)cli;
    set(o, "token", jid(ev->token));
    set(o, "to", jid(ev->peer_id));
    set(o, "status", jid((uint64_t)(ev->status > 0 ? ev->status : 0)));
    set(o, "reason", jtext(ev->reason));
}

static void text_unreachable(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    (void)cli;
    const char *r = ev->reason ? ev->reason : "";
    add_str(b, "server unreachable: ");
    cli_add_quoted(b, r, strlen(r));
    (void)buf_printf(b, "; retrying in %d ms", ev->retry_in_ms);
}

static void json_unreachable(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    (void)cli;
    set(o, "reason", jtext(ev->reason));
    set(o, "retry_in_ms", jid((uint64_t)(ev->retry_in_ms > 0 ? ev->retry_in_ms : 0)));
}

/* SESSION_LOST and DISCONNECTED: "label: "reason (cause)"tail". */
static void text_ended(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    bool lost = ev->type == PCSIG_EV_SESSION_LOST;
    char *r = reason_with_cause(ev->reason, quit_cause(cli, ev));
    add_str(b, lost ? "session lost: " : "disconnected: ");
    cli_add_quoted(b, r ? r : "", r ? strlen(r) : 0);
    add_str(b, lost ? "; signing in again" : "");
    free(r);
}

static void json_ended(const struct cli *cli, const struct pcsig_event *ev, json_t *o)
{
    char *r = reason_with_cause(ev->reason, quit_cause(cli, ev));
    set(o, "reason", jtext(r));
    free(r);
}

struct ev_form {
    const char *name; /* the JSON form's "event" */
    void (*text)(const struct cli *cli, const struct pcsig_event *ev, buf_t *b);
    void (*json)(const struct cli *cli, const struct pcsig_event *ev, json_t *o);
};

static const struct ev_form forms[] = {
    [PCSIG_EV_SIGNED_IN] = {"signed_in", text_signed_in, json_signed_in},
    [PCSIG_EV_PEER_JOINED] = {"peer_joined", text_peer, json_peer},
    [PCSIG_EV_PEER_LEFT] = {"peer_left", text_peer, json_peer},
    [PCSIG_EV_MESSAGE] = {"message", text_message, json_message},
    [PCSIG_EV_PEER_HANGUP] = {"hangup", text_hangup, json_from},
    [PCSIG_EV_MESSAGE_SENT] = {"sent", text_sent, json_sent},
    [PCSIG_EV_MESSAGE_FAILED] = {"send_failed", text_failed, json_failed},
    [PCSIG_EV_DISCONNECTED] = {"disconnected", text_ended, json_ended},
    [PCSIG_EV_SERVER_UNREACHABLE] = {"server_unreachable", text_unreachable, json_unreachable},
    [PCSIG_EV_SESSION_LOST] = {"session_lost", text_ended, json_ended},
};

void cli_render_event(const struct cli *cli, const struct pcsig_event *ev, buf_t *b)
{
    size_t t = (size_t)ev->type;
    if (t >= sizeof forms / sizeof forms[0] || !forms[t].name) {
        /* A type appended to the library after this CLI: shown, not lost. */
        if (cli->json)
            (void)buf_printf(b, "{\"event\":\"unknown\",\"type\":%zu}", t);
        else
            (void)buf_printf(b, "event %zu (unknown to this pcsig-client)", t);
        return;
    }
    if (!cli->json) {
        forms[t].text(cli, ev, b);
        return;
    }
    json_t *o = cli_ev_object(forms[t].name);
    if (o)
        forms[t].json(cli, ev, o);
    if (cli_json_dump(b, o) < 0)
        add_str(b, "{\"event\":\"error\",\"reason\":\"out of memory\"}");
}
