/*
 * conductor: the native client's WebRTC peer (GStreamer webrtcbin), the
 * counterpart of the original peerconnection_client's conductor.
 *
 * Built into pcsig-client only when GStreamer's webrtc and sdp libraries are
 * there (PCSIG_HAVE_MEDIA); the signaling library never links it, and this
 * header has no GLib or GStreamer type in it.
 *
 * Threads: the conductor runs a GLib main loop on its own thread, which owns
 * every call's pipeline. The functions below are called from the CLI's
 * thread; each hands its work to that loop and returns at once. Signaling
 * messages go out through pcsig_client_send (thread-safe, the client
 * library's own queue). What the conductor has to say (call state, ICE and
 * connection state, data channel, media stats, errors) is queued as one
 * JSON object per event: conductor_event_fd() turns readable, and
 * conductor_next_event() hands them over in order.
 *
 * Wire format (exactly the original conductor's): {"type":"offer"|"answer",
 * "sdp":"..."}, {"candidate":"...","sdpMid":"...","sdpMLineIndex":N}, and
 * the 3-byte "BYE". One call at a time.
 */
#ifndef PCSIG_CONDUCTOR_H
#define PCSIG_CONDUCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pcsig_client.h"

enum conductor_media {
    CONDUCTOR_MEDIA_NONE = 1, /* a data channel only */
    CONDUCTOR_MEDIA_TEST,     /* videotestsrc + audiotestsrc, VP8 + Opus */
    CONDUCTOR_MEDIA_DEVICES,  /* autovideosrc + autoaudiosrc */
};

#define CONDUCTOR_MAX_ICE_SERVERS 8

struct conductor_options {
    enum conductor_media media;
    bool auto_answer;       /* answer incoming offers at once (the original's way) */
    bool show;              /* received video in a window (needs a display) */
    int stats_ms;           /* media_stats every stats_ms during a call; 0: never */
    const char *ice_servers[CONDUCTOR_MAX_ICE_SERVERS]; /* stun:/turn:/turns: URLs */
    size_t n_ice_servers;
};

struct conductor;

/* The GStreamer version the conductor runs on ("GStreamer 1.22.0"); static. */
const char *conductor_version(void);

/*
 * Start the loop thread. client is borrowed (it must outlive the conductor).
 * Returns NULL with *err set to a static one-line reason when GStreamer or
 * one of the elements a call needs is missing, or memory ran out.
 */
struct conductor *conductor_new(pcsig_client_t *client, const struct conductor_options *o,
                                const char **err);

/* Readable (poll POLLIN) while events are queued. */
int conductor_event_fd(struct conductor *c);
/* The next event, one JSON object, NUL-terminated and malloc'd (the caller
 * frees it); NULL when none is queued. */
char *conductor_next_event(struct conductor *c);

/* Place a call: 0, -EBUSY while in a call (or one is ringing). */
int conductor_call(struct conductor *c, uint64_t peer);
/* With auto_answer off: accept or refuse the ringing offer. 0 or -ENOENT. */
int conductor_answer(struct conductor *c);
int conductor_reject(struct conductor *c);
/* End the call: BYE to the peer. 0, or -ENOENT when there is none. */
int conductor_hangup(struct conductor *c);
/* The same when the call is with peer: 0, or -ENOENT. */
int conductor_hangup_peer(struct conductor *c, uint64_t peer);
/* Text over the call's data channel: 0, or -ENOTCONN when none is open. */
int conductor_dc_send(struct conductor *c, const void *text, size_t n);

/*
 * A message from a peer. True when it was the conductor's (an offer, answer
 * or candidate object: it is acted on, or reported and ignored when
 * malformed); false for anything else (chat: the caller shows it).
 */
bool conductor_on_message(struct conductor *c, uint64_t from, const void *data, size_t len);
/* True (once) when token is one of the conductor's own signaling messages
 * (offer, answer, candidate, BYE): the caller need not show its SENT or
 * FAILED event. */
bool conductor_own_token(struct conductor *c, uint64_t token);
/* The peer sent BYE / left the server / our session ended: the call ends. */
void conductor_on_hangup(struct conductor *c, uint64_t from);
void conductor_on_peer_left(struct conductor *c, uint64_t peer);
void conductor_on_session_end(struct conductor *c);
/* A message to peer failed (gone, or its queue full): a call with it ends. */
void conductor_on_send_failed(struct conductor *c, uint64_t peer, const char *reason);

/* End any call (BYE to its peer) and stop the loop thread; events stay
 * queued for conductor_next_event. Idempotent. */
void conductor_stop(struct conductor *c);
/* conductor_stop, then free. NULL-safe. */
void conductor_free(struct conductor *c);

#endif
