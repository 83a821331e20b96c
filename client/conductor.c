/*
 * conductor: one WebRTC call at a time on GStreamer's webrtcbin (see
 * conductor.h for the threads and the wire format).
 *
 * Every call's state lives on the loop thread only. webrtcbin calls back on
 * its own threads (promises, ICE candidates, state changes, data channel);
 * those callbacks copy what they got into a job and invoke it on the loop,
 * tagged with the call's sequence number, so a job that arrives after its
 * call ended is dropped instead of touching a freed call. The few facts the
 * CLI's thread must know at once (is there a call, with whom; is the data
 * channel open) are kept under the conductor's lock as well.
 *
 * Media counters (frames and RTP bytes each way) are bumped by pad probes
 * on the streaming threads with atomics and read by the stats timer.
 */
#ifdef PCSIG_HAVE_MEDIA
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>

#include "buf.h"
#include "strlit.h"
#include "cli_ice.h"
#include "cli_json.h"
#include "conductor.h"

#define EV_MAX ((size_t)1 << 20) /* one event line */
#define MAX_MLINES 16            /* candidates for more m-lines than this: refused */
#define MAX_PENDING_CANDIDATES 256

enum call_state { CS_CALLING = 1, CS_RINGING, CS_ANSWERING, CS_CONNECTED };

struct cand {
    unsigned mline;
    char *text;
};

/* One call; loop thread only. */
struct call {
    uint64_t seq;
    uint64_t peer;
    bool caller;
    enum call_state state;
    GstElement *pipe;
    GstElement *webrtc;
    GstWebRTCDataChannel *dc;
    GSource *bus_watch;
    GSource *stats_timer;
    char *offer_sdp;         /* ringing: the offer, until answered */
    struct cand *pending;    /* remote candidates before the remote description */
    size_t npending;
    bool remote_set;
    char **mids;             /* of the local description, by m-line */
    size_t nmids;
    size_t remote_mlines;
    gint64 t0_us;            /* offer sent (caller) or received (callee) */
    bool first_frame;
    double rtt_ms;           /* < 0: not known yet */
};

struct ev_node {
    struct ev_node *next;
    char *text;
};

struct conductor {
    pcsig_client_t *client;
    struct conductor_options o;
    GMainContext *ctx;
    GMainLoop *loop;
    GThread *thread;
    int efd;
    pthread_mutex_t lk;     /* guards the event list, busy_peer, dc_open */
    struct ev_node *head, **tail;
    uint64_t busy_peer;     /* the peer of the call (placed, ringing or up); 0: idle */
    bool dc_open;
    struct call *call;      /* loop thread only */
    uint64_t seq;           /* loop thread only */
    /* streaming threads (atomics); reset when a call starts */
    uint64_t v_sent, a_sent, v_recv, a_recv, rtp_sent, rtp_recv;
    uint64_t first_seq;     /* the call whose first received frame is awaited */
    /* Tokens of our signaling messages not yet reported sent (under lk):
     * their MESSAGE_SENT is ours, not the user's. 0: a free slot. */
    uint64_t tokens[256];
};

/* ---- events -------------------------------------------------------------------- */

/* Takes b's bytes (b is left empty); on failure the event is dropped and b
 * freed. */
static void ev_push(struct conductor *c, buf_t *b)
{
    struct ev_node *n = buf_append(b, "", 1) < 0 ? NULL : malloc(sizeof *n);
    if (!n) {
        buf_free(b);
        return;
    }
    n->next = NULL;
    n->text = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    pthread_mutex_lock(&c->lk);
    *c->tail = n;
    c->tail = &n->next;
    pthread_mutex_unlock(&c->lk);
    uint64_t one = 1;
    if (write(c->efd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is saturated; the reader is woken anyway. */
    }
}

static void ev_begin(buf_t *b, const char *name)
{
    buf_init(b, EV_MAX);
    (void)buf_printf(b, "{\"event\":\"%s\"", name);
}

/* A string member; one over the event's cap becomes null plus a note, never
 * a string cut off inside (the line must stay valid JSON). */
static void ev_str(buf_t *b, const char *key, const char *val)
{
    size_t mark = b->len;
    if (buf_printf(b, ",\"%s\":", key) < 0 || cli_json_append_string(b, val, strlen(val), false) < 0) {
        b->len = mark;
        (void)buf_printf(b, ",\"%s\":null,\"%s_error\":\"too long to show\"", key, key);
    }
}

static void ev_u64(buf_t *b, const char *key, uint64_t v)
{
    (void)buf_printf(b, ",\"%s\":%llu", key, (unsigned long long)v);
}

static void ev_end(struct conductor *c, buf_t *b)
{
    (void)buf_append_str(b, "}");
    ev_push(c, b);
}

/* {"event":"media_error","reason":"..."}: something refused or failed. */
static void ev_error(struct conductor *c, uint64_t peer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ev_error(struct conductor *c, uint64_t peer, const char *fmt, ...)
{
    char *r = NULL;
    va_list ap;
    va_start(ap, fmt);
    r = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    buf_t b;
    ev_begin(&b, "media_error");
    if (peer)
        ev_u64(&b, "peer", peer);
    ev_str(&b, "reason", r);
    ev_end(c, &b);
    g_free(r);
}

static void ev_call_state(struct conductor *c, struct call *k, const char *state,
                          const char *reason)
{
    buf_t b;
    ev_begin(&b, "call");
    ev_str(&b, "state", state);
    ev_u64(&b, "peer", k->peer);
    if (k->t0_us && strcmp(state, "connected") == 0)
        ev_u64(&b, "setup_ms", (uint64_t)((g_get_monotonic_time() - k->t0_us) / 1000));
    if (reason)
        ev_str(&b, "reason", reason);
    ev_end(c, &b);
}

/* ---- the loop thread: jobs -------------------------------------------------------- */

enum job_kind {
    J_CALL = 1, J_OFFER, J_ANSWER_SDP, J_CANDIDATE, J_ACCEPT, J_REJECT, J_HANGUP,
    J_REMOTE_GONE, J_DC_SEND, J_STOP,
    /* from webrtcbin's threads */
    J_OFFER_CREATED, J_ANSWER_CREATED, J_REMOTE_SET, J_LOCAL_CANDIDATE, J_CONN_STATE,
    J_ICE_STATE, J_DC_NEW, J_DC_OPEN, J_DC_CLOSE, J_DC_MESSAGE, J_FIRST_FRAME, J_STATS,
};

struct job {
    struct conductor *c;
    enum job_kind kind;
    uint64_t seq;       /* jobs from a call's threads: the call they belong to */
    uint64_t peer;
    uint64_t n;
    char *text;
    char *reason;
    GstPromise *promise;
    GObject *obj;
};

static void job_free(gpointer p)
{
    struct job *j = p;
    g_free(j->text);
    g_free(j->reason);
    if (j->promise)
        gst_promise_unref(j->promise);
    if (j->obj)
        g_object_unref(j->obj);
    g_free(j);
}

static gboolean job_run(gpointer p);

static void post(struct conductor *c, struct job *j)
{
    j->c = c;
    g_main_context_invoke_full(c->ctx, G_PRIORITY_DEFAULT, job_run, j, job_free);
}

static struct job *job_new(enum job_kind kind, uint64_t seq)
{
    struct job *j = g_new0(struct job, 1);
    j->kind = kind;
    j->seq = seq;
    return j;
}

/* The context a webrtcbin callback gets: enough to post a job for its call. */
struct cb_ctx {
    struct conductor *c;
    uint64_t seq;
};

static void cb_ctx_free(gpointer p, GClosure *unused)
{
    (void)unused;
    g_free(p);
}

static struct cb_ctx *cb_ctx_new(struct conductor *c, uint64_t seq)
{
    struct cb_ctx *x = g_new0(struct cb_ctx, 1);
    x->c = c;
    x->seq = seq;
    return x;
}

/* ---- sending signaling messages ------------------------------------------------------ */

/*
 * Send a message of the conductor's own and remember its token, so that its
 * "sent" report is not shown as a chat message's (when the table is full it
 * simply is). The lock is held across the send: the CLI thread may take the
 * report off the event queue before pcsig_client_send returns here, and
 * conductor_own_token must not look before the token is in the table. Lock
 * order: c->lk, then the client library's own (which never calls back).
 */
static int64_t send_own(struct conductor *c, uint64_t to, const void *data, size_t len)
{
    pthread_mutex_lock(&c->lk);
    int64_t t = pcsig_client_send(c->client, to, "text/plain", data, len);
    for (size_t i = 0; t > 0 && i < G_N_ELEMENTS(c->tokens); i++) {
        if (c->tokens[i] == 0) {
            c->tokens[i] = (uint64_t)t;
            break;
        }
    }
    pthread_mutex_unlock(&c->lk);
    return t;
}

static void send_json(struct conductor *c, uint64_t to, buf_t *b)
{
    int64_t t = send_own(c, to, b->data, b->len);
    if (t < 0)
        ev_error(c, to, "cannot send to the peer (%s)",
                 t == -ENOTCONN ? "not signed in" : "out of memory");
}

static void send_sdp(struct conductor *c, uint64_t to, const char *type, const char *sdp)
{
    buf_t b;
    buf_init(&b, (size_t)64 << 20);
    (void)buf_append_str(&b, "{\"type\":");
    (void)cli_json_append_string(&b, type, strlen(type), false);
    (void)buf_append_str(&b, ",\"sdp\":");
    (void)cli_json_append_string(&b, sdp, strlen(sdp), false);
    (void)buf_append_str(&b, "}");
    send_json(c, to, &b);
    buf_free(&b);
}

static void send_bye(struct conductor *c, uint64_t to)
{
    int64_t t = send_own(c, to, STRLIT("BYE"));
    if (t < 0)
        ev_error(c, to, "cannot send BYE (not signed in)");
}

/* ---- ending a call ------------------------------------------------------------------- */

static void call_free(struct call *k)
{
    if (k->bus_watch) {
        g_source_destroy(k->bus_watch);
        g_source_unref(k->bus_watch);
    }
    if (k->stats_timer) {
        g_source_destroy(k->stats_timer);
        g_source_unref(k->stats_timer);
    }
    if (k->pipe) {
        /* Joins the streaming threads: no probe or pad-added runs after it. */
        gst_element_set_state(k->pipe, GST_STATE_NULL);
        gst_object_unref(k->pipe);
    }
    if (k->dc)
        g_object_unref(k->dc);
    g_free(k->offer_sdp);
    for (size_t i = 0; i < k->npending; i++)
        g_free(k->pending[i].text);
    g_free(k->pending);
    for (size_t i = 0; i < k->nmids; i++)
        g_free(k->mids[i]);
    g_free(k->mids);
    g_free(k);
}

/* End the call: BYE to the peer when we are the one ending it, then idle. */
static void call_end(struct conductor *c, const char *reason, bool bye)
{
    struct call *k = c->call;
    if (!k)
        return;
    if (bye)
        send_bye(c, k->peer);
    c->call = NULL;
    uint64_t peer = k->peer;
    call_free(k);
    pthread_mutex_lock(&c->lk);
    c->busy_peer = 0;
    c->dc_open = false;
    pthread_mutex_unlock(&c->lk);
    buf_t b;
    ev_begin(&b, "call");
    ev_str(&b, "state", "ended");
    ev_u64(&b, "peer", peer);
    ev_str(&b, "reason", reason);
    ev_end(c, &b);
}

/* A job for a call that is not (or no longer) the current one. */
static struct call *job_call(struct conductor *c, const struct job *j)
{
    return c->call && c->call->seq == j->seq ? c->call : NULL;
}

/* ---- media counting (streaming threads) ---------------------------------------------- */

enum counter { CT_V_SENT, CT_A_SENT, CT_V_RECV, CT_A_RECV, CT_RTP_SENT, CT_RTP_RECV };

struct probe_ctx {
    struct conductor *c;
    uint64_t seq;
    enum counter ct;
};

static uint64_t *counter_of(struct conductor *c, enum counter ct)
{
    switch (ct) {
    case CT_V_SENT: return &c->v_sent;
    case CT_A_SENT: return &c->a_sent;
    case CT_V_RECV: return &c->v_recv;
    case CT_A_RECV: return &c->a_recv;
    case CT_RTP_SENT: return &c->rtp_sent;
    case CT_RTP_RECV: return &c->rtp_recv;
    }
    return &c->rtp_recv;
}

static GstPadProbeReturn count_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    (void)pad;
    struct probe_ctx *p = data;
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    if (!buf)
        return GST_PAD_PROBE_OK;
    uint64_t add = (p->ct == CT_RTP_SENT || p->ct == CT_RTP_RECV) ? gst_buffer_get_size(buf) : 1;
    __atomic_add_fetch(counter_of(p->c, p->ct), add, __ATOMIC_RELAXED);
    if (p->ct == CT_V_RECV || p->ct == CT_A_RECV) {
        uint64_t want = p->seq;
        /* The first decoded frame of this call: say when it came. */
        if (__atomic_compare_exchange_n(&p->c->first_seq, &want, 0, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            struct job *j = job_new(J_FIRST_FRAME, p->seq);
            j->text = g_strdup(p->ct == CT_V_RECV ? "video" : "audio");
            post(p->c, j);
        }
    }
    return GST_PAD_PROBE_OK;
}

static void add_counter(struct conductor *c, uint64_t seq, GstPad *pad, enum counter ct)
{
    struct probe_ctx *p = g_new0(struct probe_ctx, 1);
    p->c = c;
    p->seq = seq;
    p->ct = ct;
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_probe, p, g_free);
}

static void count_element_src(struct conductor *c, uint64_t seq, GstElement *bin,
                              const char *name, enum counter ct)
{
    GstElement *e = gst_bin_get_by_name(GST_BIN(bin), name);
    if (!e)
        return;
    GstPad *pad = gst_element_get_static_pad(e, "src");
    if (pad) {
        add_counter(c, seq, pad, ct);
        gst_object_unref(pad);
    }
    gst_object_unref(e);
}

/* ---- received media (streaming threads) ---------------------------------------------- */

static void on_decoded_pad(GstElement *dec, GstPad *pad, gpointer data)
{
    struct cb_ctx *x = data;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (!caps)
        caps = gst_pad_query_caps(pad, NULL);
    const char *kind = gst_structure_get_name(gst_caps_get_structure(caps, 0));
    bool video = g_str_has_prefix(kind, "video/");
    bool audio = g_str_has_prefix(kind, "audio/");
    gst_caps_unref(caps);
    if (!video && !audio)
        return;
    const char *desc = "queue ! fakesink sync=false async=false";
    if (video && x->c->o.show)
        desc = "queue ! videoconvert ! autovideosink sync=false";
    GError *err = NULL;
    GstElement *sink = gst_parse_bin_from_description(desc, TRUE, &err);
    if (!sink) {
        g_clear_error(&err);
        return;
    }
    GstElement *pipe = GST_ELEMENT(gst_element_get_parent(dec));
    if (!pipe) {
        gst_object_unref(sink);
        return;
    }
    gst_bin_add(GST_BIN(pipe), sink);
    gst_object_unref(pipe);
    GstPad *sinkpad = gst_element_get_static_pad(sink, "sink");
    add_counter(x->c, x->seq, sinkpad, video ? CT_V_RECV : CT_A_RECV);
    gst_element_sync_state_with_parent(sink);
    (void)gst_pad_link(pad, sinkpad);
    gst_object_unref(sinkpad);
}

static void on_webrtc_pad(GstElement *webrtc, GstPad *pad, gpointer data)
{
    struct cb_ctx *x = data;
    if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC)
        return;
    add_counter(x->c, x->seq, pad, CT_RTP_RECV);
    GstElement *dec = gst_element_factory_make("decodebin", NULL);
    if (!dec)
        return;
    g_signal_connect_data(dec, "pad-added", G_CALLBACK(on_decoded_pad),
                          cb_ctx_new(x->c, x->seq), cb_ctx_free, 0);
    GstElement *pipe = GST_ELEMENT(gst_element_get_parent(webrtc));
    if (!pipe) {
        gst_object_unref(dec);
        return;
    }
    gst_bin_add(GST_BIN(pipe), dec);
    gst_object_unref(pipe);
    gst_element_sync_state_with_parent(dec);
    GstPad *sinkpad = gst_element_get_static_pad(dec, "sink");
    (void)gst_pad_link(pad, sinkpad);
    gst_object_unref(sinkpad);
}

/* ---- webrtcbin callbacks (its threads) -------------------------------------------------- */

static void on_ice_candidate(GstElement *webrtc, guint mline, gchar *cand, gpointer data)
{
    (void)webrtc;
    struct cb_ctx *x = data;
    struct job *j = job_new(J_LOCAL_CANDIDATE, x->seq);
    j->n = mline;
    j->text = g_strdup(cand);
    post(x->c, j);
}

static void on_state_notify(GObject *obj, GParamSpec *ps, gpointer data)
{
    struct cb_ctx *x = data;
    bool conn = strcmp(ps->name, "connection-state") == 0;
    gint v = 0;
    g_object_get(obj, ps->name, &v, NULL);
    struct job *j = job_new(conn ? J_CONN_STATE : J_ICE_STATE, x->seq);
    j->n = (uint64_t)v;
    post(x->c, j);
}

static void on_dc_open(GObject *dc, gpointer data)
{
    struct cb_ctx *x = data;
    struct job *j = job_new(J_DC_OPEN, x->seq);
    (void)dc;
    post(x->c, j);
}

static void on_dc_close(GObject *dc, gpointer data)
{
    struct cb_ctx *x = data;
    (void)dc;
    post(x->c, job_new(J_DC_CLOSE, x->seq));
}

static void on_dc_string(GObject *dc, gchar *str, gpointer data)
{
    struct cb_ctx *x = data;
    (void)dc;
    struct job *j = job_new(J_DC_MESSAGE, x->seq);
    j->text = g_strdup(str ? str : "");
    post(x->c, j);
}

static void on_dc_data(GObject *dc, GBytes *bytes, gpointer data)
{
    struct cb_ctx *x = data;
    (void)dc;
    gsize n = 0;
    const char *p = bytes ? g_bytes_get_data(bytes, &n) : NULL;
    struct job *j = job_new(J_DC_MESSAGE, x->seq);
    j->text = g_strndup(p ? p : "", n);
    j->n = 1; /* binary */
    post(x->c, j);
}

static void dc_connect(struct conductor *c, uint64_t seq, GObject *dc)
{
    g_signal_connect_data(dc, "on-open", G_CALLBACK(on_dc_open), cb_ctx_new(c, seq),
                          cb_ctx_free, 0);
    g_signal_connect_data(dc, "on-close", G_CALLBACK(on_dc_close), cb_ctx_new(c, seq),
                          cb_ctx_free, 0);
    g_signal_connect_data(dc, "on-message-string", G_CALLBACK(on_dc_string),
                          cb_ctx_new(c, seq), cb_ctx_free, 0);
    g_signal_connect_data(dc, "on-message-data", G_CALLBACK(on_dc_data), cb_ctx_new(c, seq),
                          cb_ctx_free, 0);
}

static void on_data_channel(GstElement *webrtc, GObject *dc, gpointer data)
{
    (void)webrtc;
    struct cb_ctx *x = data;
    dc_connect(x->c, x->seq, dc);
    struct job *j = job_new(J_DC_NEW, x->seq);
    j->obj = g_object_ref(dc);
    post(x->c, j);
}

/* A promise's reply goes to the loop as a job of the given kind. */
struct promise_ctx {
    struct conductor *c;
    uint64_t seq;
    enum job_kind kind;
};

static void on_promise(GstPromise *p, gpointer data)
{
    struct promise_ctx *pc = data;
    struct job *j = job_new(pc->kind, pc->seq);
    j->promise = gst_promise_ref(p);
    post(pc->c, j);
}

static GstPromise *promise_to(struct conductor *c, uint64_t seq, enum job_kind kind)
{
    struct promise_ctx *pc = g_new0(struct promise_ctx, 1);
    pc->c = c;
    pc->seq = seq;
    pc->kind = kind;
    return gst_promise_new_with_change_func(on_promise, pc, g_free);
}

/* Emit one of webrtcbin's promise signals (create-offer, get-stats...); the
 * reply comes back as a job of the given kind. The signal takes its own
 * reference to the promise: ours is dropped here. */
static void webrtc_ask(struct conductor *c, struct call *k, const char *signal, gpointer arg,
                       enum job_kind kind)
{
    GstPromise *p = promise_to(c, k->seq, kind);
    g_signal_emit_by_name(k->webrtc, signal, arg, p);
    gst_promise_unref(p);
}

/* True with *out the promise's reply (NULL for a bare success), or false
 * with *why (g_free it). */
static bool promise_reply(GstPromise *p, const GstStructure **out, char **why)
{
    *why = NULL;
    *out = NULL;
    if (gst_promise_wait(p) != GST_PROMISE_RESULT_REPLIED) {
        *why = g_strdup("webrtcbin did not answer");
        return false;
    }
    const GstStructure *r = gst_promise_get_reply(p);
    if (r && gst_structure_has_field(r, "error")) {
        GError *e = NULL;
        gst_structure_get(r, "error", G_TYPE_ERROR, &e, NULL);
        char *all = gst_structure_to_string(r);
        *why = g_strdup(e && e->message ? e->message : all);
        g_free(all);
        g_clear_error(&e);
        return false;
    }
    *out = r;
    return true;
}

/* ---- building a call ----------------------------------------------------------------- */

/* An element of webrtcbin's SCTP transport (the data channel's). */
static bool is_sctp_element(GstObject *o)
{
    if (!GST_IS_ELEMENT(o))
        return false;
    GstElementFactory *f = gst_element_get_factory(GST_ELEMENT(o));
    const char *n = f ? gst_plugin_feature_get_name(GST_PLUGIN_FEATURE(f)) : NULL;
    return n && (strcmp(n, "sctpenc") == 0 || strcmp(n, "sctpdec") == 0);
}

static gboolean on_bus(GstBus *bus, GstMessage *m, gpointer data)
{
    (void)bus;
    struct conductor *c = data;
    if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR && c->call) {
        /* A browser that hangs up sends BYE through the server and closes its
         * peer connection at once: the DTLS close reaches us first, and the
         * SCTP encoder of the data channel fails to write. That is the peer
         * ending the call (no BYE back), not a fault of ours. */
        if (c->call->state == CS_CONNECTED && is_sctp_element(GST_MESSAGE_SRC(m))) {
            call_end(c, "the peer closed the connection", false);
            return G_SOURCE_CONTINUE;
        }
        GError *e = NULL;
        gst_message_parse_error(m, &e, NULL);
        char *r = g_strdup_printf("media pipeline error: %s (%s)", e ? e->message : "?",
                                  GST_OBJECT_NAME(GST_MESSAGE_SRC(m)));
        g_clear_error(&e);
        call_end(c, r, true);
        g_free(r);
    }
    return G_SOURCE_CONTINUE;
}

/* Host candidates on every address of this machine, loopback included:
 * libnice leaves loopback out when it picks the addresses itself, and two
 * clients on one machine with no network then never connect. */
static void add_local_addresses(GstElement *webrtc)
{
    GObject *ice = NULL;
    g_object_get(webrtc, "ice-agent", &ice, NULL);
    if (!ice)
        return;
    if (!g_signal_lookup("add-local-ip-address", G_OBJECT_TYPE(ice))) {
        g_object_unref(ice);
        return;
    }
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) == 0) {
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
            if (!i->ifa_addr || !(i->ifa_flags & IFF_UP))
                continue;
            char txt[INET6_ADDRSTRLEN];
            int fam = i->ifa_addr->sa_family;
            if (fam == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, txt,
                          sizeof txt);
            } else if (fam == AF_INET6) {
                const struct in6_addr *a = &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
                if (IN6_IS_ADDR_LINKLOCAL(a))
                    continue; /* needs a scope; not worth a candidate */
                inet_ntop(AF_INET6, a, txt, sizeof txt);
            } else {
                continue;
            }
            gboolean ok = FALSE;
            g_signal_emit_by_name(ice, "add-local-ip-address", txt, &ok);
        }
        freeifaddrs(ifa);
    }
    g_object_unref(ice);
}

static const char *media_desc(enum conductor_media m)
{
    static const char test[] =
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1"
        " ! videoconvert ! queue ! vp8enc name=venc deadline=1 target-bitrate=300000"
        " keyframe-max-dist=30 ! rtpvp8pay name=vpay ! application/x-rtp,media=video,"
        "encoding-name=VP8,payload=96 ! webrtc. "
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 ! audioconvert ! audioresample"
        " ! queue ! opusenc name=aenc ! rtpopuspay name=apay ! application/x-rtp,media=audio,"
        "encoding-name=OPUS,payload=111 ! webrtc.";
    static const char devices[] =
        "autovideosrc ! videoconvert ! videoscale ! video/x-raw,width=640,height=480"
        " ! videorate ! video/x-raw,framerate=30/1 ! queue ! vp8enc name=venc deadline=1"
        " target-bitrate=800000 keyframe-max-dist=60 ! rtpvp8pay name=vpay ! application/x-rtp,"
        "media=video,encoding-name=VP8,payload=96 ! webrtc. "
        "autoaudiosrc ! audioconvert ! audioresample ! queue ! opusenc name=aenc"
        " ! rtpopuspay name=apay ! application/x-rtp,media=audio,encoding-name=OPUS,"
        "payload=111 ! webrtc.";
    switch (m) {
    case CONDUCTOR_MEDIA_TEST: return test;
    case CONDUCTOR_MEDIA_DEVICES: return devices;
    case CONDUCTOR_MEDIA_NONE: break;
    }
    return "";
}

/* An --ice-server URL as webrtcbin wants it ("stun://host:port"), or NULL
 * (the CLI checked it already). */
static char *ice_url(const char *url, bool *turn)
{
    struct cli_ice_url u;
    if (cli_ice_parse(url, &u) != NULL)
        return NULL;
    *turn = u.turn;
    return g_strdup_printf("%s://%s", u.scheme, u.rest);
}

/* A new call's pipeline, PLAYING. Returns false with *why on failure. */
static bool call_build(struct conductor *c, struct call *k, char **why)
{
    /* Always a pipeline: with webrtcbin alone, gst_parse_launch would
     * return just the element. */
    char *desc = g_strdup_printf("webrtcbin name=webrtc bundle-policy=max-bundle %s",
                                 media_desc(c->o.media));
    GError *err = NULL;
    k->pipe = gst_parse_launch_full(desc, NULL, GST_PARSE_FLAG_PLACE_IN_BIN, &err);
    g_free(desc);
    if (k->pipe && !err) {
        GstElement *bin = k->pipe;
        k->pipe = gst_pipeline_new(NULL);
        gst_bin_add(GST_BIN(k->pipe), bin);
    }
    if (!k->pipe || err) {
        *why = g_strdup_printf("cannot build the media pipeline: %s",
                               err ? err->message : "?");
        g_clear_error(&err);
        return false;
    }
    k->webrtc = gst_bin_get_by_name(GST_BIN(k->pipe), "webrtc");
    if (!k->webrtc) {
        *why = g_strdup("no webrtcbin in the media pipeline");
        return false;
    }
    gst_object_unref(k->webrtc); /* the pipeline holds it */
    for (size_t i = 0; i < c->o.n_ice_servers; i++) {
        bool turn = false;
        char *u = ice_url(c->o.ice_servers[i], &turn);
        if (!u)
            continue; /* checked by the CLI */
        if (turn) {
            gboolean ok = FALSE;
            g_signal_emit_by_name(k->webrtc, "add-turn-server", u, &ok);
        } else {
            g_object_set(k->webrtc, "stun-server", u, NULL);
        }
        g_free(u);
    }
    add_local_addresses(k->webrtc);
    g_signal_connect_data(k->webrtc, "on-ice-candidate", G_CALLBACK(on_ice_candidate),
                          cb_ctx_new(c, k->seq), cb_ctx_free, 0);
    g_signal_connect_data(k->webrtc, "notify::connection-state", G_CALLBACK(on_state_notify),
                          cb_ctx_new(c, k->seq), cb_ctx_free, 0);
    g_signal_connect_data(k->webrtc, "notify::ice-connection-state",
                          G_CALLBACK(on_state_notify), cb_ctx_new(c, k->seq), cb_ctx_free, 0);
    g_signal_connect_data(k->webrtc, "pad-added", G_CALLBACK(on_webrtc_pad),
                          cb_ctx_new(c, k->seq), cb_ctx_free, 0);
    g_signal_connect_data(k->webrtc, "on-data-channel", G_CALLBACK(on_data_channel),
                          cb_ctx_new(c, k->seq), cb_ctx_free, 0);
    count_element_src(c, k->seq, k->pipe, "venc", CT_V_SENT);
    count_element_src(c, k->seq, k->pipe, "aenc", CT_A_SENT);
    count_element_src(c, k->seq, k->pipe, "vpay", CT_RTP_SENT);
    count_element_src(c, k->seq, k->pipe, "apay", CT_RTP_SENT);

    GstBus *bus = gst_element_get_bus(k->pipe);
    k->bus_watch = gst_bus_create_watch(bus);
    gst_object_unref(bus);
    g_source_set_callback(k->bus_watch, (GSourceFunc)(void (*)(void))on_bus, c, NULL);
    g_source_attach(k->bus_watch, c->ctx);

    if (gst_element_set_state(k->pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        *why = g_strdup("the media pipeline does not start (a missing device or plugin?)");
        return false;
    }
    return true;
}

static gboolean stats_tick(gpointer data);

static struct call *call_new(struct conductor *c, uint64_t peer, bool caller)
{
    struct call *k = g_new0(struct call, 1);
    k->seq = ++c->seq;
    k->peer = peer;
    k->caller = caller;
    k->rtt_ms = -1;
    for (enum counter ct = CT_V_SENT; ct <= CT_RTP_RECV; ct++)
        __atomic_store_n(counter_of(c, ct), 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->first_seq, k->seq, __ATOMIC_RELEASE);
    c->call = k;
    if (c->o.stats_ms > 0) {
        k->stats_timer = g_timeout_source_new((guint)c->o.stats_ms);
        g_source_set_callback(k->stats_timer, stats_tick, c, NULL);
        g_source_attach(k->stats_timer, c->ctx);
    }
    return k;
}

/* The mids of our local description, by m-line (for sdpMid). */
static void remember_mids(struct call *k, const GstSDPMessage *sdp)
{
    for (size_t i = 0; i < k->nmids; i++)
        g_free(k->mids[i]);
    g_free(k->mids);
    k->nmids = gst_sdp_message_medias_len(sdp);
    k->mids = g_new0(char *, k->nmids ? k->nmids : 1);
    for (size_t i = 0; i < k->nmids; i++) {
        const char *mid = gst_sdp_media_get_attribute_val(gst_sdp_message_get_media(sdp, (guint)i),
                                                          "mid");
        k->mids[i] = g_strdup(mid ? mid : "");
    }
}

static void set_local_and_send(struct conductor *c, struct call *k, GstWebRTCSessionDescription *d,
                               const char *type)
{
    g_signal_emit_by_name(k->webrtc, "set-local-description", d, NULL);
    remember_mids(k, d->sdp);
    char *text = gst_sdp_message_as_text(d->sdp);
    send_sdp(c, k->peer, type, text);
    g_free(text);
}

static void add_remote_candidate(struct call *k, unsigned mline, const char *cand)
{
    g_signal_emit_by_name(k->webrtc, "add-ice-candidate", mline, cand);
}

static void start_answer(struct conductor *c, struct call *k)
{
    char *why = NULL;
    if (!call_build(c, k, &why)) {
        call_end(c, why, true);
        g_free(why);
        return;
    }
    GstSDPMessage *sdp = NULL;
    gst_sdp_message_new_from_text(k->offer_sdp, &sdp);
    k->remote_mlines = gst_sdp_message_medias_len(sdp);
    GstWebRTCSessionDescription *d = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_OFFER, sdp);
    k->state = CS_ANSWERING;
    ev_call_state(c, k, "answering", NULL);
    webrtc_ask(c, k, "set-remote-description", d, J_REMOTE_SET);
    gst_webrtc_session_description_free(d);
}

/* ---- the jobs ------------------------------------------------------------------------- */

static const char *conn_state_name(guint v)
{
    GEnumClass *cls = g_type_class_ref(GST_TYPE_WEBRTC_PEER_CONNECTION_STATE);
    GEnumValue *e = g_enum_get_value(cls, (gint)v);
    const char *n = e ? e->value_nick : "?";
    g_type_class_unref(cls);
    return n;
}

static const char *ice_state_name(guint v)
{
    GEnumClass *cls = g_type_class_ref(GST_TYPE_WEBRTC_ICE_CONNECTION_STATE);
    GEnumValue *e = g_enum_get_value(cls, (gint)v);
    const char *n = e ? e->value_nick : "?";
    g_type_class_unref(cls);
    return n;
}

static void emit_stats(struct conductor *c, struct call *k)
{
    buf_t b;
    ev_begin(&b, "media_stats");
    ev_u64(&b, "peer", k->peer);
    ev_u64(&b, "video_frames_sent", __atomic_load_n(&c->v_sent, __ATOMIC_RELAXED));
    ev_u64(&b, "video_frames_received", __atomic_load_n(&c->v_recv, __ATOMIC_RELAXED));
    ev_u64(&b, "audio_frames_sent", __atomic_load_n(&c->a_sent, __ATOMIC_RELAXED));
    ev_u64(&b, "audio_frames_received", __atomic_load_n(&c->a_recv, __ATOMIC_RELAXED));
    ev_u64(&b, "rtp_bytes_sent", __atomic_load_n(&c->rtp_sent, __ATOMIC_RELAXED));
    ev_u64(&b, "rtp_bytes_received", __atomic_load_n(&c->rtp_recv, __ATOMIC_RELAXED));
    if (k->rtt_ms >= 0)
        (void)buf_printf(&b, ",\"rtt_ms\":%.1f", k->rtt_ms);
    else
        (void)buf_append_str(&b, ",\"rtt_ms\":null");
    ev_end(c, &b);
}

static gboolean stats_tick(gpointer data)
{
    struct conductor *c = data;
    struct call *k = c->call;
    if (!k)
        return G_SOURCE_REMOVE;
    if (k->state == CS_CONNECTED) {
        emit_stats(c, k);
        webrtc_ask(c, k, "get-stats", NULL, J_STATS);
    }
    return G_SOURCE_CONTINUE;
}

/* remote-inbound-rtp reports carry the round-trip time the peer's RTCP gave. */
static gboolean find_rtt(GQuark field, const GValue *v, gpointer data)
{
    (void)field;
    double *rtt = data;
    if (!GST_VALUE_HOLDS_STRUCTURE(v))
        return TRUE;
    const GstStructure *s = gst_value_get_structure(v);
    GstWebRTCStatsType t;
    double r;
    if (gst_structure_get(s, "type", GST_TYPE_WEBRTC_STATS_TYPE, &t, NULL) &&
        t == GST_WEBRTC_STATS_REMOTE_INBOUND_RTP &&
        gst_structure_get_double(s, "round-trip-time", &r) && r > 0)
        *rtt = r * 1000.0;
    return TRUE;
}

static void job_dc_send(struct conductor *c, struct job *j)
{
    struct call *k = c->call;
    if (!k || !k->dc) {
        ev_error(c, 0, "no data channel open");
        return;
    }
    GError *e = NULL;
    if (!gst_webrtc_data_channel_send_string_full(k->dc, j->text, &e)) {
        ev_error(c, k->peer, "data channel send failed: %s", e ? e->message : "?");
        g_clear_error(&e);
        return;
    }
    buf_t b;
    ev_begin(&b, "dc_sent");
    ev_u64(&b, "to", k->peer);
    ev_u64(&b, "bytes", strlen(j->text));
    ev_end(c, &b);
}

static void job_remote_set(struct conductor *c, struct call *k, struct job *j)
{
    char *why = NULL;
    const GstStructure *r = NULL;
    if (!promise_reply(j->promise, &r, &why)) {
        char *m = g_strdup_printf("the peer's %s was refused: %s", k->caller ? "answer" : "offer",
                                  why);
        ev_error(c, k->peer, "%s", m);
        call_end(c, m, true);
        g_free(m);
        g_free(why);
        return;
    }
    k->remote_set = true;
    for (size_t i = 0; i < k->npending; i++) {
        add_remote_candidate(k, k->pending[i].mline, k->pending[i].text);
        g_free(k->pending[i].text);
    }
    k->npending = 0;
    if (!k->caller)
        webrtc_ask(c, k, "create-answer", NULL, J_ANSWER_CREATED);
}

static void job_sdp_created(struct conductor *c, struct call *k, struct job *j)
{
    bool offer = j->kind == J_OFFER_CREATED;
    char *why = NULL;
    const GstStructure *r = NULL;
    GstWebRTCSessionDescription *d = NULL;
    if (promise_reply(j->promise, &r, &why) && r)
        gst_structure_get(r, offer ? "offer" : "answer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &d,
                          NULL);
    if (!d) {
        char *m = g_strdup_printf("cannot create the %s: %s", offer ? "offer" : "answer",
                                  why ? why : "no description");
        call_end(c, m, true);
        g_free(m);
        g_free(why);
        return;
    }
    if (offer)
        k->t0_us = g_get_monotonic_time();
    set_local_and_send(c, k, d, offer ? "offer" : "answer");
    gst_webrtc_session_description_free(d);
}

static void job_place_call(struct conductor *c, struct job *j)
{
    if (c->call) { /* cannot happen: busy_peer is claimed first */
        ev_error(c, j->peer, "already in a call");
        return;
    }
    struct call *k = call_new(c, j->peer, true);
    k->state = CS_CALLING;
    ev_call_state(c, k, "calling", NULL);
    char *why = NULL;
    if (!call_build(c, k, &why)) {
        call_end(c, why, false);
        g_free(why);
        return;
    }
    GstWebRTCDataChannel *dc = NULL;
    g_signal_emit_by_name(k->webrtc, "create-data-channel", "chat", NULL, &dc);
    if (dc) {
        dc_connect(c, k->seq, G_OBJECT(dc));
        k->dc = dc;
    }
    webrtc_ask(c, k, "create-offer", NULL, J_OFFER_CREATED);
}

static void job_offer(struct conductor *c, struct job *j)
{
    struct call *k0 = c->call;
    if (k0 && k0->peer == j->peer && k0->caller && !k0->remote_set) {
        /* Both called each other at once (glare). The one with the lower
         * id gives its own offer up and answers; the other ignores this
         * offer and awaits that answer. Both decide alike, no message. */
        uint64_t me = pcsig_client_id(c->client);
        buf_t b;
        ev_begin(&b, "call_glare");
        ev_u64(&b, "peer", j->peer);
        ev_str(&b, "resolution", me != 0 && me < j->peer ? "answering theirs" : "keeping ours");
        ev_end(c, &b);
        if (me == 0 || me > j->peer)
            return;
        c->call = NULL;
        call_free(k0); /* busy_peer stays: the call goes on, the other way */
    } else if (k0) {
        ev_error(c, j->peer, "a new offer during the call (renegotiation) is not supported; "
                             "ignored");
        return;
    }
    struct call *k = call_new(c, j->peer, false);
    k->offer_sdp = j->text;
    j->text = NULL;
    k->t0_us = g_get_monotonic_time();
    k->state = CS_RINGING;
    ev_call_state(c, k, "incoming", NULL);
    if (c->o.auto_answer)
        start_answer(c, k);
}

static void job_candidate(struct conductor *c, struct job *j)
{
    struct call *k = c->call;
    if (!k || k->peer != j->peer)
        return;
    if (!k->remote_set) {
        if (k->npending >= MAX_PENDING_CANDIDATES) {
            ev_error(c, k->peer, "too many candidates before the offer/answer; dropped");
            return;
        }
        k->pending = g_renew(struct cand, k->pending, k->npending + 1);
        k->pending[k->npending].mline = (unsigned)j->n;
        k->pending[k->npending].text = j->text;
        j->text = NULL;
        k->npending++;
        return;
    }
    if (k->remote_mlines && j->n >= k->remote_mlines) {
        ev_error(c, k->peer, "candidate for m-line %llu, the session has %zu; ignored",
                 (unsigned long long)j->n, k->remote_mlines);
        return;
    }
    add_remote_candidate(k, (unsigned)j->n, j->text);
}

static void job_answer_sdp(struct conductor *c, struct job *j)
{
    struct call *k = c->call;
    if (!k || k->peer != j->peer || !k->caller || k->remote_set) {
        ev_error(c, j->peer, "unexpected answer; ignored");
        return;
    }
    GstSDPMessage *sdp = NULL;
    gst_sdp_message_new_from_text(j->text, &sdp);
    k->remote_mlines = gst_sdp_message_medias_len(sdp);
    GstWebRTCSessionDescription *d = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
    webrtc_ask(c, k, "set-remote-description", d, J_REMOTE_SET);
    gst_webrtc_session_description_free(d);
}

static void job_from_call(struct conductor *c, struct job *j)
{
    struct call *k = job_call(c, j);
    if (!k)
        return; /* for a call that is over */
    switch (j->kind) {
    case J_OFFER_CREATED:
    case J_ANSWER_CREATED:
        job_sdp_created(c, k, j);
        break;
    case J_REMOTE_SET:
        job_remote_set(c, k, j);
        break;
    case J_LOCAL_CANDIDATE: {
        buf_t b;
        buf_init(&b, 65536);
        const char *mid = j->n < k->nmids ? k->mids[j->n] : "";
        (void)buf_append_str(&b, "{\"candidate\":");
        (void)cli_json_append_string(&b, j->text, strlen(j->text), false);
        (void)buf_append_str(&b, ",\"sdpMid\":");
        (void)cli_json_append_string(&b, mid, strlen(mid), false);
        (void)buf_printf(&b, ",\"sdpMLineIndex\":%llu}", (unsigned long long)j->n);
        send_json(c, k->peer, &b);
        buf_free(&b);
        break;
    }
    case J_CONN_STATE: {
        buf_t b;
        ev_begin(&b, "connection_state");
        ev_u64(&b, "peer", k->peer);
        ev_str(&b, "state", conn_state_name((guint)j->n));
        ev_end(c, &b);
        if (j->n == GST_WEBRTC_PEER_CONNECTION_STATE_CONNECTED && k->state != CS_CONNECTED) {
            k->state = CS_CONNECTED;
            ev_call_state(c, k, "connected", NULL);
        } else if (j->n == GST_WEBRTC_PEER_CONNECTION_STATE_FAILED) {
            call_end(c, "connection failed", true);
        }
        break;
    }
    case J_ICE_STATE: {
        buf_t b;
        ev_begin(&b, "ice_state");
        ev_u64(&b, "peer", k->peer);
        ev_str(&b, "state", ice_state_name((guint)j->n));
        ev_end(c, &b);
        if (j->n == GST_WEBRTC_ICE_CONNECTION_STATE_FAILED)
            call_end(c, "ICE failed", true);
        break;
    }
    case J_DC_NEW:
        if (!k->dc)
            k->dc = GST_WEBRTC_DATA_CHANNEL(g_object_ref(j->obj));
        break;
    case J_DC_OPEN: {
        pthread_mutex_lock(&c->lk);
        c->dc_open = true;
        pthread_mutex_unlock(&c->lk);
        gchar *label = NULL;
        if (k->dc)
            g_object_get(k->dc, "label", &label, NULL);
        buf_t b;
        ev_begin(&b, "dc_open");
        ev_u64(&b, "peer", k->peer);
        ev_str(&b, "label", label ? label : "");
        ev_end(c, &b);
        g_free(label);
        break;
    }
    case J_DC_CLOSE: {
        pthread_mutex_lock(&c->lk);
        c->dc_open = false;
        pthread_mutex_unlock(&c->lk);
        buf_t b;
        ev_begin(&b, "dc_close");
        ev_u64(&b, "peer", k->peer);
        ev_end(c, &b);
        break;
    }
    case J_DC_MESSAGE: {
        buf_t b;
        ev_begin(&b, "dc_message");
        ev_u64(&b, "from", k->peer);
        ev_str(&b, "data", j->text);
        if (j->n)
            (void)buf_append_str(&b, ",\"binary\":true");
        ev_end(c, &b);
        break;
    }
    case J_FIRST_FRAME: {
        buf_t b;
        ev_begin(&b, "first_frame");
        ev_u64(&b, "peer", k->peer);
        ev_str(&b, "kind", j->text);
        if (k->t0_us)
            ev_u64(&b, "ms", (uint64_t)((g_get_monotonic_time() - k->t0_us) / 1000));
        ev_end(c, &b);
        break;
    }
    case J_STATS: {
        char *why = NULL;
        const GstStructure *r = NULL;
        bool ok = promise_reply(j->promise, &r, &why);
        g_free(why);
        double rtt = -1;
        if (ok && r)
            gst_structure_foreach(r, find_rtt, &rtt);
        if (rtt > 0)
            k->rtt_ms = rtt;
        break;
    }
    default:
        break;
    }
}

static gboolean job_run(gpointer p)
{
    struct job *j = p;
    struct conductor *c = j->c;
    switch (j->kind) {
    case J_CALL:
        job_place_call(c, j);
        break;
    case J_OFFER:
        job_offer(c, j);
        break;
    case J_ANSWER_SDP:
        job_answer_sdp(c, j);
        break;
    case J_CANDIDATE:
        job_candidate(c, j);
        break;
    case J_ACCEPT:
        if (c->call && c->call->state == CS_RINGING)
            start_answer(c, c->call);
        break;
    case J_REJECT:
        if (c->call && c->call->state == CS_RINGING)
            call_end(c, "rejected", true);
        break;
    case J_HANGUP:
        call_end(c, "hung up", true);
        break;
    case J_REMOTE_GONE:
        if (c->call && (j->peer == 0 || c->call->peer == j->peer))
            call_end(c, j->reason, false);
        break;
    case J_DC_SEND:
        job_dc_send(c, j);
        break;
    case J_STOP:
        call_end(c, "quit", true);
        g_main_loop_quit(c->loop);
        break;
    default:
        job_from_call(c, j);
        break;
    }
    return G_SOURCE_REMOVE;
}

static gpointer loop_main(gpointer data)
{
    struct conductor *c = data;
    g_main_context_push_thread_default(c->ctx);
    g_main_loop_run(c->loop);
    g_main_context_pop_thread_default(c->ctx);
    return NULL;
}

/* ---- the API (the CLI's thread) ---------------------------------------------------------- */

const char *conductor_version(void)
{
    static char v[64];
    if (!v[0]) {
        guint a, b, m, n;
        gst_version(&a, &b, &m, &n);
        g_snprintf(v, sizeof v, "GStreamer %u.%u.%u", a, b, m);
    }
    return v;
}

struct conductor *conductor_new(pcsig_client_t *client, const struct conductor_options *o,
                                const char **err)
{
    GError *ge = NULL;
    if (!gst_init_check(NULL, NULL, &ge)) {
        g_clear_error(&ge);
        *err = "GStreamer does not initialise";
        return NULL;
    }
    static const char *const need[] = {"webrtcbin", "decodebin", "fakesink", "queue",
                                       "dtlssrtpenc", "sctpenc", "nicesrc"};
    static const char *const need_test[] = {"videotestsrc", "audiotestsrc", "vp8enc",
                                            "rtpvp8pay", "opusenc", "rtpopuspay", "videoconvert",
                                            "audioconvert", "audioresample", "vp8dec", "opusdec"};
    for (size_t i = 0; i < G_N_ELEMENTS(need); i++) {
        GstElementFactory *f = gst_element_factory_find(need[i]);
        if (!f) {
            *err = "a GStreamer plugin a call needs is missing (webrtcbin, dtls, sctp, srtp: "
                   "gstreamer1.0-plugins-bad; nice: gstreamer1.0-nice)";
            return NULL;
        }
        gst_object_unref(f);
    }
    if (o->media != CONDUCTOR_MEDIA_NONE) {
        for (size_t i = 0; i < G_N_ELEMENTS(need_test); i++) {
            GstElementFactory *f = gst_element_factory_find(need_test[i]);
            if (!f) {
                *err = "a GStreamer codec or source plugin is missing (VP8: "
                       "gstreamer1.0-plugins-good; Opus, test sources: gstreamer1.0-plugins-base)";
                return NULL;
            }
            gst_object_unref(f);
        }
    }
    struct conductor *c = calloc(1, sizeof *c);
    if (!c) {
        *err = "out of memory";
        return NULL;
    }
    c->client = client;
    c->o = *o;
    c->tail = &c->head;
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0 || pthread_mutex_init(&c->lk, NULL) != 0) {
        if (c->efd >= 0)
            close(c->efd);
        free(c);
        *err = "cannot create the conductor's event queue";
        return NULL;
    }
    c->ctx = g_main_context_new();
    c->loop = g_main_loop_new(c->ctx, FALSE);
    c->thread = g_thread_new("conductor", loop_main, c);
    return c;
}

int conductor_event_fd(struct conductor *c)
{
    return c->efd;
}

char *conductor_next_event(struct conductor *c)
{
    uint64_t cnt;
    pthread_mutex_lock(&c->lk);
    struct ev_node *n = c->head;
    if (n) {
        c->head = n->next;
        if (!c->head)
            c->tail = &c->head;
    } else if (read(c->efd, &cnt, sizeof cnt) < 0) {
        /* EAGAIN: already drained. Reading under the lock: no event is lost. */
    }
    pthread_mutex_unlock(&c->lk);
    if (!n)
        return NULL;
    char *t = n->text;
    free(n);
    return t;
}

static void post_simple(struct conductor *c, enum job_kind kind, uint64_t peer,
                        const char *text, size_t n, const char *reason)
{
    struct job *j = job_new(kind, 0);
    j->peer = peer;
    if (text)
        j->text = g_strndup(text, n);
    if (reason)
        j->reason = g_strdup(reason);
    post(c, j);
}

int conductor_call(struct conductor *c, uint64_t peer)
{
    pthread_mutex_lock(&c->lk);
    uint64_t busy = c->busy_peer;
    if (!busy)
        c->busy_peer = peer;
    pthread_mutex_unlock(&c->lk);
    if (busy)
        return -EBUSY;
    post_simple(c, J_CALL, peer, NULL, 0, NULL);
    return 0;
}

static bool in_call(struct conductor *c)
{
    pthread_mutex_lock(&c->lk);
    bool b = c->busy_peer != 0;
    pthread_mutex_unlock(&c->lk);
    return b;
}

int conductor_answer(struct conductor *c)
{
    if (!in_call(c))
        return -ENOENT;
    post_simple(c, J_ACCEPT, 0, NULL, 0, NULL);
    return 0;
}

int conductor_reject(struct conductor *c)
{
    if (!in_call(c))
        return -ENOENT;
    post_simple(c, J_REJECT, 0, NULL, 0, NULL);
    return 0;
}

int conductor_hangup(struct conductor *c)
{
    if (!in_call(c))
        return -ENOENT;
    post_simple(c, J_HANGUP, 0, NULL, 0, NULL);
    return 0;
}

int conductor_hangup_peer(struct conductor *c, uint64_t peer)
{
    pthread_mutex_lock(&c->lk);
    bool ours = peer != 0 && c->busy_peer == peer;
    pthread_mutex_unlock(&c->lk);
    if (!ours)
        return -ENOENT;
    post_simple(c, J_HANGUP, 0, NULL, 0, NULL);
    return 0;
}

int conductor_dc_send(struct conductor *c, const void *text, size_t n)
{
    pthread_mutex_lock(&c->lk);
    bool open = c->dc_open;
    pthread_mutex_unlock(&c->lk);
    if (!open)
        return -ENOTCONN;
    if (memchr(text, '\0', n))
        return -EINVAL;
    post_simple(c, J_DC_SEND, 0, text, n, NULL);
    return 0;
}

/* An offer must at least parse as SDP with one m-line in it. */
static const char *check_sdp(const char *text, size_t *mlines)
{
    GstSDPMessage *sdp = NULL;
    if (gst_sdp_message_new_from_text(text, &sdp) != GST_SDP_OK || !sdp)
        return "not SDP";
    *mlines = gst_sdp_message_medias_len(sdp);
    const char *why = NULL;
    if (*mlines == 0)
        why = "no m= line";
    else if (gst_sdp_message_get_version(sdp) == NULL)
        why = "no v= line";
    gst_sdp_message_free(sdp);
    return why;
}

bool conductor_on_message(struct conductor *c, uint64_t from, const void *data, size_t len)
{
    char ebuf[JSON_ERROR_TEXT_LENGTH + 32];
    const char *perr = NULL;
    if (len == 0 || ((const char *)data)[0] != '{')
        return false;
    json_t *o = cli_json_parse_object(data, len, ebuf, sizeof ebuf, &perr);
    if (!o)
        return false; /* not one of ours (chat, or JSON we do not speak) */
    const char *type = cli_json_get_string(o, "type", NULL);
    const json_t *cand_m = json_object_get(o, "candidate");
    bool ours = type != NULL || cand_m != NULL;
    if (!ours) {
        json_decref(o);
        return false;
    }
    pthread_mutex_lock(&c->lk);
    uint64_t busy = c->busy_peer;
    pthread_mutex_unlock(&c->lk);
    if (type) {
        size_t sdplen = 0;
        const char *sdp = cli_json_get_string(o, "sdp", &sdplen);
        size_t mlines = 0;
        const char *bad = NULL;
        bool offer = strcmp(type, "offer") == 0, answer = strcmp(type, "answer") == 0;
        if (!offer && !answer)
            bad = "\"type\" is neither offer nor answer";
        else if (!sdp)
            bad = "no \"sdp\" string";
        else if (memchr(sdp, '\0', sdplen))
            bad = "a NUL in the SDP";
        else
            bad = check_sdp(sdp, &mlines);
        if (bad) {
            ev_error(c, from, "malformed %s from peer %llu (ignored): %s",
                     offer ? "offer" : answer ? "answer" : "message", (unsigned long long)from,
                     bad);
        } else if (offer) {
            pthread_mutex_lock(&c->lk);
            busy = c->busy_peer;
            if (!busy)
                c->busy_peer = from;
            pthread_mutex_unlock(&c->lk);
            if (busy && busy != from) {
                /* One call at a time: the other caller is told at once. */
                send_bye(c, from);
                buf_t b;
                ev_begin(&b, "call_refused");
                ev_u64(&b, "peer", from);
                ev_str(&b, "reason", "busy: in a call with another peer");
                ev_end(c, &b);
            } else {
                post_simple(c, J_OFFER, from, sdp, sdplen, NULL);
            }
        } else if (busy != from) {
            ev_error(c, from, "answer from peer %llu, not in a call with it; ignored",
                     (unsigned long long)from);
        } else {
            post_simple(c, J_ANSWER_SDP, from, sdp, sdplen, NULL);
        }
    } else {
        const char *cand = json_is_string(cand_m) ? json_string_value(cand_m) : NULL;
        uint64_t idx = 0;
        const json_t *idx_m = json_object_get(o, "sdpMLineIndex");
        int irc = json_is_integer(idx_m) && json_integer_value(idx_m) >= 0 ? 0 : -EINVAL;
        if (irc == 0)
            idx = (uint64_t)json_integer_value(idx_m);
        const char *bad = NULL;
        if (!cand || memchr(cand, '\0', json_string_length(cand_m)))
            bad = "\"candidate\" is not a string";
        else if (irc != 0 || idx >= MAX_MLINES)
            bad = "no valid \"sdpMLineIndex\"";
        else if (cand[0] != '\0' && strncmp(cand, STRLIT("candidate:")) != 0)
            bad = "not an ICE candidate line";
        if (bad)
            ev_error(c, from, "malformed candidate from peer %llu (ignored): %s",
                     (unsigned long long)from, bad);
        else if (busy != from)
            ev_error(c, from, "candidate from peer %llu, not in a call with it; ignored",
                     (unsigned long long)from);
        else if (cand[0] != '\0') { /* "": end of candidates, nothing to do */
            struct job *j = job_new(J_CANDIDATE, 0);
            j->peer = from;
            j->n = idx;
            j->text = g_strdup(cand);
            post(c, j);
        }
    }
    json_decref(o);
    return true;
}

bool conductor_own_token(struct conductor *c, uint64_t token)
{
    bool ours = false;
    pthread_mutex_lock(&c->lk);
    for (size_t i = 0; token && i < G_N_ELEMENTS(c->tokens); i++) {
        if (c->tokens[i] == token) {
            c->tokens[i] = 0;
            ours = true;
            break;
        }
    }
    pthread_mutex_unlock(&c->lk);
    return ours;
}

void conductor_on_hangup(struct conductor *c, uint64_t from)
{
    post_simple(c, J_REMOTE_GONE, from, NULL, 0, "the peer hung up (BYE)");
}

void conductor_on_peer_left(struct conductor *c, uint64_t peer)
{
    post_simple(c, J_REMOTE_GONE, peer, NULL, 0, "the peer left the server");
}

void conductor_on_send_failed(struct conductor *c, uint64_t peer, const char *reason)
{
    char *r = g_strdup_printf("a message to the peer failed: %s", reason ? reason : "no answer");
    post_simple(c, J_REMOTE_GONE, peer, NULL, 0, r);
    g_free(r);
}

void conductor_on_session_end(struct conductor *c)
{
    post_simple(c, J_REMOTE_GONE, 0, NULL, 0, "our signaling session ended");
}

void conductor_stop(struct conductor *c)
{
    if (!c->thread)
        return;
    post_simple(c, J_STOP, 0, NULL, 0, NULL);
    g_thread_join(c->thread);
    c->thread = NULL;
}

void conductor_free(struct conductor *c)
{
    if (!c)
        return;
    conductor_stop(c);
    /* Jobs still queued (from webrtcbin threads, all joined by now) are
     * freed with the context. */
    g_main_loop_unref(c->loop);
    g_main_context_unref(c->ctx);
    struct ev_node *n = c->head;
    while (n) {
        struct ev_node *next = n->next;
        free(n->text);
        free(n);
        n = next;
    }
    pthread_mutex_destroy(&c->lk);
    close(c->efd);
    free(c);
}

#else
/* Built without GStreamer: cli_media.c says so, nothing here. */
typedef int conductor_not_built;
#endif
