/*
 * cli_ice: the one parser of --ice-server URLs, for the option's check
 * (cli_media.c) and for the conductor that hands them to webrtcbin.
 * Pure; thread-safe.
 */
#ifndef PCSIG_CLI_ICE_H
#define PCSIG_CLI_ICE_H

#include <stdbool.h>

struct cli_ice_url {
    const char *scheme; /* "stun", "turn" or "turns" (static) */
    const char *rest;   /* into the URL: after "scheme:" and an optional "//" */
    bool turn;          /* turn or turns: a relay, with credentials in rest */
};

/* stun:HOST[:PORT], turn:USER:PASS@HOST[:PORT], turns:... ("scheme://"
 * too). NULL with *out filled, or a one-line reason (static text). */
const char *cli_ice_parse(const char *url, struct cli_ice_url *out);

#endif
