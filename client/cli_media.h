/*
 * cli_media: the glue between pcsig-client's event loop (main.c) and the
 * conductor (conductor.h). It is the only part of the CLI that knows
 * whether media support was built (PCSIG_HAVE_MEDIA); without it every
 * entry point says so and main.c stays the signaling-only client.
 */
#ifndef PCSIG_CLI_MEDIA_H
#define PCSIG_CLI_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pcsig_client.h"

#define CLI_MEDIA_MAX_ICE 8

/* What the command line asked for (filled by main.c's option parsing). */
struct cli_media_config {
    const char *media;       /* --media: none, test, devices; NULL: no conductor */
    bool no_auto_answer;     /* --no-auto-answer */
    bool show;               /* --show */
    int stats_ms;            /* --stats-ms (default 1000) */
    const char *ice[CLI_MEDIA_MAX_ICE]; /* --ice-server URL, repeatable */
    size_t nice;
};

struct cli_media;

/* True when this binary has the conductor. */
bool cli_media_built(void);
/* One line for --version ("media: GStreamer 1.22.0" or "media: not built"). */
const char *cli_media_version(void);

/* Check one --ice-server value: NULL when fine, else why not (static). */
const char *cli_media_check_ice(const char *url);

/* Start the conductor for cfg (cfg->media set). NULL with *err (static
 * text) when media support was not built or GStreamer lacks a plugin. */
struct cli_media *cli_media_start(const struct cli_media_config *cfg, pcsig_client_t *client,
                                  const char **err);

/* Readable while conductor events are queued; -1 for m == NULL. */
int cli_media_fd(struct cli_media *m);
/* Hand every queued event (one JSON object each) to show(arg, line). */
void cli_media_drain(struct cli_media *m, void (*show)(void *arg, const char *line), void *arg);

/* A library event, before main.c prints it: the conductor learns of
 * messages, hang-ups, departures, failed sends and lost sessions. True when
 * the event was the conductor's own signaling (an offer, answer or
 * candidate received, or one of ours reported sent): main.c does not print
 * it then. */
bool cli_media_on_event(struct cli_media *m, const struct pcsig_event *ev);

/* Commands: 0, or a negative errno with *why set (static text). */
int cli_media_call(struct cli_media *m, uint64_t to, const char **why);
int cli_media_answer(struct cli_media *m, bool accept, const char **why);
int cli_media_hangup(struct cli_media *m, const char **why);
/* "bye ID": true when ID is the peer of the call, which then ends (the
 * conductor sends the BYE); false otherwise (the caller sends it). */
bool cli_media_bye(struct cli_media *m, uint64_t to);
int cli_media_dc_send(struct cli_media *m, const void *text, size_t n, const char **why);

/* End any call (BYE goes out through the still signed-in client), stop,
 * hand the last events to show (as cli_media_drain), free. NULL-safe. */
void cli_media_stop(struct cli_media *m, void (*show)(void *arg, const char *line), void *arg);

#endif
