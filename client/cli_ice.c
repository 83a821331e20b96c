/*
 * cli_ice: --ice-server URLs (cli_ice.h).
 */
#include "cli_ice.h"

#include <string.h>

const char *cli_ice_parse(const char *url, struct cli_ice_url *out)
{
    static const char *const schemes[] = {"stun", "turn", "turns"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t l = strlen(schemes[i]);
        if (strncmp(url, schemes[i], l) != 0 || url[l] != ':')
            continue;
        const char *rest = url + l + 1;
        if (rest[0] == '/' && rest[1] == '/')
            rest += 2;
        if (*rest == '\0')
            return "no host after the scheme";
        if (i > 0 && !strchr(rest, '@'))
            return "a TURN URL needs credentials: turn:USER:PASS@HOST:PORT";
        *out = (struct cli_ice_url){.scheme = schemes[i], .rest = rest, .turn = i > 0};
        return NULL;
    }
    return "not a stun:, turn: or turns: URL";
}
