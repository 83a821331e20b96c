/*
 * libpcsig-client: a headless peerconnection signaling client.
 *
 * pcsig_client_connect() signs in and returns at once. Two threads of the
 * client do the network work:
 *   - the control thread owns the control connection and sends, in order and
 *     one at a time, the requests of its outgoing queue: sign-in, messages
 *     (POST /message?peer_id=&to=), sign-out;
 *   - the hanging_get thread owns the /wait loop and re-polls after every
 *     answer.
 * They share state under one mutex; the caller's thread never blocks on the
 * network. Events reach the caller through a queue: pcsig_client_next_event()
 * (optionally after poll() on pcsig_client_event_fd()).
 *
 * Wire compatibility: in compat mode (the default) the requests are exactly
 * the stock peerconnection_client's bytes (HTTP/1.0, one connection per
 * request); keep_alive lets the hanging_get connection be reused with pcsig's
 * own server.
 *
 * Where it is more robust than the stock client: a non-200 answer to a
 * message fails that message only (MESSAGE_FAILED); when the server goes
 * away (refused, reset, "Server shutting down") the session ends, queued
 * messages fail, and sign-in is retried with jittered exponential backoff
 * (SERVER_UNREACHABLE before each wait), then SIGNED_IN comes again with
 * the new id and list (peer ids of the old session mean nothing any more);
 * a 500 on /wait (the server forgot our id) is reported as SESSION_LOST and
 * signs in again at once; pcsig's
 * empty idle answers and 409s are followed by a new /wait; a /wait with no
 * answer for wait_timeout_ms is half-closed and re-issued (nothing the
 * server already wrote is lost).
 *
 * Ownership: the client owns everything it allocates; an event returned by
 * pcsig_client_next_event belongs to the caller until pcsig_event_free.
 * All functions are thread-safe unless stated.
 */
#ifndef PCSIG_CLIENT_H
#define PCSIG_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pcsig_client pcsig_client_t;

enum pcsig_event_type {
    PCSIG_EV_SIGNED_IN = 1,    /* own_id, peers[0..npeers) (others, join order);
                                  again after each re-sign-in (new id, new list) */
    PCSIG_EV_PEER_JOINED,      /* peer_id, name */
    PCSIG_EV_PEER_LEFT,        /* peer_id, name */
    PCSIG_EV_MESSAGE,          /* peer_id (sender), content_type, data, len;
                                  a message to ourselves comes back as one too */
    PCSIG_EV_PEER_HANGUP,      /* peer_id sent the 3-byte "BYE" */
    PCSIG_EV_MESSAGE_SENT,     /* token, peer_id */
    PCSIG_EV_MESSAGE_FAILED,   /* token, peer_id, status (0: no answer), reason */
    PCSIG_EV_DISCONNECTED,     /* reason; after pcsig_client_disconnect ("signed
                                  out", "disconnected while not signed in", or
                                  "disconnected; the server did not confirm the
                                  sign-out") or a fatal
                                  error (a 4xx answer to sign-in other than 408/429;
                                  with TLS, a server certificate that fails
                                  verification, or the server refusing ours:
                                  "sign-in: TLS: the server refused the connection:
                                  tlsv13 alert certificate required"; an auth token
                                  refused (401), or one that would have gone in
                                  clear: see auth_token) */
    PCSIG_EV_SERVER_UNREACHABLE, /* reason, retry_in_ms: reconnecting with backoff */
    PCSIG_EV_SESSION_LOST,     /* reason: the server, still there, forgot our id (a 500
                                  on /wait, or our own id listed as gone); queued
                                  messages failed, our id and the peer ids are void; a
                                  new sign-in follows at once (SIGNED_IN, or
                                  SERVER_UNREACHABLE while it keeps happening). Added
                                  after the first release: event types are only ever
                                  appended; callers ignore the ones they do not know. */
};

struct pcsig_peer {
    uint64_t id;
    char *name;
    bool connected;
};

struct pcsig_event {
    enum pcsig_event_type type;
    uint64_t own_id;
    uint64_t peer_id;
    char *name;         /* NUL-terminated, or NULL */
    struct pcsig_peer *peers;
    size_t npeers;
    char *content_type; /* NUL-terminated, or NULL when the sender sent none */
    unsigned char *data;  /* len bytes, then a NUL not counted in len */
    size_t len;
    uint64_t token;     /* the value pcsig_client_send returned */
    int status;         /* HTTP status of a failed message, 0 if none */
    char *reason;       /* human-readable, NUL-terminated, or NULL */
    int retry_in_ms;
    /* SIGNED_IN: entries of the server's list beyond max_peers, not kept
     * (0 normally; a warning is logged when it is not). Appended after the
     * first release. */
    size_t peers_omitted;
};

struct pcsig_client_options {
    const char *server;   /* host name or address; default "localhost" */
    uint16_t port;        /* default 8888 */
    const char *name;     /* default $USERNAME@hostname ("user", "host" if unset).
                           * Sent URL-safe: bytes other than A-Z a-z 0-9 - . _ ~ @
                           * become %XX. The server keeps raw query bytes, so
                           * others see "a b" as "a%20b". At most 512 encoded
                           * bytes (the server's limit), cut between characters. */
    bool keep_alive;      /* HTTP/1.1 keep-alive on the hanging_get (pcsig servers) */
    int wait_timeout_ms;  /* client-side limit on one /wait; default 45000 */
    int request_timeout_ms; /* limit on one control request; default 10000 */
    int reconnect_min_ms; /* first backoff when the server is gone; default 500 */
    int reconnect_max_ms; /* backoff cap; default 10000 */
    /* TLS: server certificate verified against ca_file (NULL: the system's
     * trust store) and the server name (SNI + hostname/IP check); cert_file
     * and key_file for mutual TLS; insecure skips verification (the caller
     * should say so loudly). Sessions are resumed across reconnects. */
    bool tls;
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    bool insecure;
    /* Fields below were appended after the first release; zero means the
     * default, so callers that do not know them keep the old behaviour. */
    /* Sign-in to a server run with --auth-token: sent as "Authorization:
     * Bearer <auth_token>" on the sign-in requests only (the only requests
     * such a server checks), never logged. Printable ASCII, no spaces.
     * Over plain TCP (tls false) it is sent only to a loopback address
     * unless allow_insecure_token: anything else ends the session with a
     * fatal DISCONNECTED that says why (the token would cross the network
     * in clear). Copied by pcsig_client_new. */
    const char *auth_token;
    bool allow_insecure_token;
    /* Backpressure: while the events not yet taken by
     * pcsig_client_next_event hold more than this many bytes (bodies and
     * names), no new /wait is issued, so messages stay queued on the server
     * (which answers its senders 503 once its own queue is full); polling
     * resumes as the caller drains. Default 16 MiB. A caller that stops
     * reading for longer than the server's member timeout (30 s by
     * default) may be dropped by it: SESSION_LOST, then a new sign-in. */
    size_t max_event_bytes;
    /* At most this many peers of a sign-in answer are kept (the list is
     * parsed as it arrives, so a huge one costs no more memory than this);
     * the rest are counted in SIGNED_IN's peers_omitted and logged.
     * Default 100000 (the server's default member cap). */
    size_t max_peers;
};

/* Returns NULL when out of memory. Nothing happens on the network yet. */
pcsig_client_t *pcsig_client_new(const struct pcsig_client_options *opts);

/* Why pcsig_client_new's set-up failed (one line: a TLS context that could
 * not be made, an auth token that cannot go into a header), or NULL. After
 * such a failure connect returns -EINVAL and nothing is ever sent: with
 * tls set, the client never falls back to plain TCP. */
const char *pcsig_client_setup_error(pcsig_client_t *c);

/* Start both threads and queue the sign-in. 0, -EALREADY, or -errno.
 * Also after pcsig_client_disconnect or a fatal DISCONNECTED (a new id). */
int pcsig_client_connect(pcsig_client_t *c);

/*
 * Queue a message to peer `to` (sent in order, one at a time). Bodies are
 * binary-safe and copied. content_type NULL or "": "text/plain". Returns a
 * token (> 0) reported again in MESSAGE_SENT/MESSAGE_FAILED, -ENOTCONN
 * while not signed in, -EINVAL for to == 0 or a content type with control
 * characters (it would break the header), or -ENOMEM. The 3-byte body
 * "BYE" is the protocol's hang-up (the peer gets PEER_HANGUP).
 */
int64_t pcsig_client_send(pcsig_client_t *c, uint64_t to, const char *content_type,
                          const void *data, size_t len);

/* Own id, 0 when not signed in. */
uint64_t pcsig_client_id(pcsig_client_t *c);

/* Stop: a pending sign-in or /wait is abandoned at once; messages already
 * queued are still sent, in order, for up to 2 s (then fail), then the
 * sign-out (if signed in, up to 2 s); both threads are joined and a
 * DISCONNECTED event is queued last. A thread inside a connect may add up
 * to 3 s per address tried, and one inside a DNS lookup the resolver's own
 * timeout (none with a numeric server address). Safe to call twice.
 * Returns 0. */
int pcsig_client_disconnect(pcsig_client_t *c);

/* Readable (poll POLLIN) while events are queued. */
int pcsig_client_event_fd(pcsig_client_t *c);

/* The next event, waiting up to timeout_ms (-1: forever); NULL on timeout. */
struct pcsig_event *pcsig_client_next_event(pcsig_client_t *c, int timeout_ms);
void pcsig_event_free(struct pcsig_event *ev);

/* Disconnects if needed and frees everything. NULL-safe. */
void pcsig_client_free(pcsig_client_t *c);

#endif
