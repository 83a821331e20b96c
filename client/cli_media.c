/*
 * cli_media: see cli_media.h. With PCSIG_HAVE_MEDIA it forwards to the
 * conductor; without, it is a few stubs that say media was not built.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli_ice.h"
#include "cli_media.h"
#include "strlit.h"

#define NOT_BUILT "media support was not built into this pcsig-client (it needs GStreamer's " \
                  "webrtc and sdp libraries: apt-get install libgstreamer-plugins-bad1.0-dev, " \
                  "then rebuild)"

const char *cli_media_check_ice(const char *url)
{
    struct cli_ice_url u;
    return cli_ice_parse(url, &u);
}

#ifdef PCSIG_HAVE_MEDIA

#include "conductor.h"

struct cli_media {
    struct conductor *c;
};

bool cli_media_built(void)
{
    return true;
}

const char *cli_media_version(void)
{
    static char v[96];
    if (!v[0]) {
        const char *g = conductor_version();
        size_t n = strlen(g);
        const size_t pre = STRLIT_LEN("media: ");
        memcpy(v, STRLIT("media: "));
        if (n > sizeof v - pre - 1)
            n = sizeof v - pre - 1;
        memcpy(v + pre, g, n);
        v[pre + n] = '\0';
    }
    return v;
}

struct cli_media *cli_media_start(const struct cli_media_config *cfg, pcsig_client_t *client,
                                  const char **err)
{
    struct conductor_options o = {0};
    if (strcmp(cfg->media, "none") == 0) {
        o.media = CONDUCTOR_MEDIA_NONE;
    } else if (strcmp(cfg->media, "test") == 0) {
        o.media = CONDUCTOR_MEDIA_TEST;
    } else if (strcmp(cfg->media, "devices") == 0) {
        o.media = CONDUCTOR_MEDIA_DEVICES;
    } else {
        *err = "--media takes none, test or devices";
        return NULL;
    }
    o.auto_answer = !cfg->no_auto_answer;
    o.show = cfg->show;
    o.stats_ms = cfg->stats_ms;
    for (size_t i = 0; i < cfg->nice && i < CONDUCTOR_MAX_ICE_SERVERS; i++)
        o.ice_servers[o.n_ice_servers++] = cfg->ice[i];
    struct cli_media *m = calloc(1, sizeof *m);
    if (!m) {
        *err = "out of memory";
        return NULL;
    }
    m->c = conductor_new(client, &o, err);
    if (!m->c) {
        free(m);
        return NULL;
    }
    return m;
}

int cli_media_fd(struct cli_media *m)
{
    return m ? conductor_event_fd(m->c) : -1;
}

void cli_media_drain(struct cli_media *m, void (*show)(void *arg, const char *line), void *arg)
{
    char *e;
    while (m && (e = conductor_next_event(m->c)) != NULL) {
        show(arg, e);
        free(e);
    }
}

bool cli_media_on_event(struct cli_media *m, const struct pcsig_event *ev)
{
    if (!m)
        return false;
    switch (ev->type) {
    case PCSIG_EV_MESSAGE:
        return conductor_on_message(m->c, ev->peer_id, ev->data, ev->len);
    case PCSIG_EV_PEER_HANGUP:
        conductor_on_hangup(m->c, ev->peer_id);
        return false;
    case PCSIG_EV_PEER_LEFT:
        conductor_on_peer_left(m->c, ev->peer_id);
        return false;
    case PCSIG_EV_MESSAGE_SENT:
        return conductor_own_token(m->c, ev->token); /* candidates: a dozen a call */
    case PCSIG_EV_MESSAGE_FAILED:
        (void)conductor_own_token(m->c, ev->token); /* shown: it ends the call */
        conductor_on_send_failed(m->c, ev->peer_id, ev->reason);
        return false;
    case PCSIG_EV_SESSION_LOST:
    case PCSIG_EV_SERVER_UNREACHABLE:
    case PCSIG_EV_DISCONNECTED:
        /* Peer ids of this session mean nothing any more. */
        conductor_on_session_end(m->c);
        return false;
    default:
        return false;
    }
}

int cli_media_call(struct cli_media *m, uint64_t to, const char **why)
{
    if (!m) {
        *why = "start with --media none|test|devices for a real call";
        return -ENOTSUP;
    }
    int rc = conductor_call(m->c, to);
    if (rc == -EBUSY)
        *why = "already in a call (one call at a time: hangup first)";
    return rc;
}

int cli_media_answer(struct cli_media *m, bool accept, const char **why)
{
    if (!m) {
        *why = "no media: start with --media";
        return -ENOTSUP;
    }
    int rc = accept ? conductor_answer(m->c) : conductor_reject(m->c);
    if (rc < 0)
        *why = "no incoming call";
    return rc;
}

int cli_media_hangup(struct cli_media *m, const char **why)
{
    if (!m) {
        *why = "no media: start with --media";
        return -ENOTSUP;
    }
    int rc = conductor_hangup(m->c);
    if (rc < 0)
        *why = "not in a call";
    return rc;
}

bool cli_media_bye(struct cli_media *m, uint64_t to)
{
    return m && conductor_hangup_peer(m->c, to) == 0;
}

int cli_media_dc_send(struct cli_media *m, const void *text, size_t n, const char **why)
{
    if (!m) {
        *why = "no media: start with --media";
        return -ENOTSUP;
    }
    int rc = conductor_dc_send(m->c, text, n);
    if (rc == -ENOTCONN)
        *why = "no data channel open (not in a connected call)";
    else if (rc < 0)
        *why = "the data channel carries text without NUL bytes";
    return rc;
}

void cli_media_stop(struct cli_media *m, void (*show)(void *arg, const char *line), void *arg)
{
    if (!m)
        return;
    conductor_stop(m->c);
    cli_media_drain(m, show, arg);
    conductor_free(m->c);
    free(m);
}

#else /* !PCSIG_HAVE_MEDIA */

bool cli_media_built(void)
{
    return false;
}

const char *cli_media_version(void)
{
    return "media: not built (no GStreamer)";
}

struct cli_media *cli_media_start(const struct cli_media_config *cfg, pcsig_client_t *client,
                                  const char **err)
{
    (void)cfg;
    (void)client;
    *err = NOT_BUILT;
    return NULL;
}

int cli_media_fd(struct cli_media *m)
{
    (void)m;
    return -1;
}

void cli_media_drain(struct cli_media *m, void (*show)(void *arg, const char *line), void *arg)
{
    (void)m;
    (void)show;
    (void)arg;
}

bool cli_media_on_event(struct cli_media *m, const struct pcsig_event *ev)
{
    (void)m;
    (void)ev;
    return false;
}

static int not_built(const char **why)
{
    *why = NOT_BUILT;
    return -ENOTSUP;
}

int cli_media_call(struct cli_media *m, uint64_t to, const char **why)
{
    (void)m;
    (void)to;
    return not_built(why);
}

int cli_media_answer(struct cli_media *m, bool accept, const char **why)
{
    (void)m;
    (void)accept;
    return not_built(why);
}

int cli_media_hangup(struct cli_media *m, const char **why)
{
    (void)m;
    return not_built(why);
}

bool cli_media_bye(struct cli_media *m, uint64_t to)
{
    (void)m;
    (void)to;
    return false;
}

int cli_media_dc_send(struct cli_media *m, const void *text, size_t n, const char **why)
{
    (void)m;
    (void)text;
    (void)n;
    return not_built(why);
}

void cli_media_stop(struct cli_media *m, void (*show)(void *arg, const char *line), void *arg)
{
    (void)m;
    (void)show;
    (void)arg;
}

#endif
