/*
 * cluster_keys: the pure parts of the Redis cluster backend (cluster.c):
 * the --cluster URL and the encoding of one queued item as a Redis string.
 * No I/O, no allocation beyond the caller's buf; unit-tested in
 * tests/unit/test_cluster_keys.c.
 */
#ifndef PCSIG_CLUSTER_KEYS_H
#define PCSIG_CLUSTER_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CKEY_HOST_MAX 255 /* bytes of a host name (DNS limit) */
#define CKEY_DB_MAX 1000000

struct ckey_url {
    char host[CKEY_HOST_MAX + 1]; /* NUL-terminated; brackets of [v6] removed */
    uint16_t port;                /* 1..65535; 6379 when the URL names none */
    int db;                       /* SELECT index; 0 when none */
};

/* Parse "redis://HOST[:PORT][/DB]" (HOST a name, an IPv4 address or [IPv6]).
 * 0, or -EINVAL with *why set to a static reason. */
int ckey_parse_url(const char *url, struct ckey_url *out, const char **why);

/*
 * One queued item as stored in a member's Redis list:
 *   "<M|N> <pragma> <accepted_us> <ctype_len|-> <body_len>\n" ctype body
 * M: a message (pragma: the sender), N: a join/leave notification (pragma:
 * its subject; the Lua scripts of cluster.c write these). '-' is "no
 * Content-Type". The lengths make the header self-delimiting whatever bytes
 * the body holds.
 */
struct ckey_item {
    bool is_message;
    uint64_t pragma;
    uint64_t accepted_us;
    bool has_ctype;
    const char *ctype; /* slices into the decoded string */
    size_t ctype_len;
    const char *body;
    size_t body_len;
};

/* Append the encoding of it to out. 0 or the buf error (out unchanged). */
int ckey_item_encode(buf_t *out, const struct ckey_item *it);
/* Decode p[0..n) into *it (slices into p). 0 or -EINVAL. */
int ckey_item_decode(const char *p, size_t n, struct ckey_item *it);

#endif
