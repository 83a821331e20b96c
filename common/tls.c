/*
 * tls: OpenSSL behind the conn vtable.
 *
 * Every OpenSSL call is preceded by ERR_clear_error(), because the error
 * queue is per thread and a stale entry from an earlier call would be
 * blamed on this one; results are decoded in exactly one place
 * (decode_result). Sockets stay non-blocking: WANT_READ/WANT_WRITE become
 * -EAGAIN with conn.want set, so the server's poller and the client's poll
 * loops work unchanged.
 */
#include "tls.h"
#include "strlit.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net.h"

struct tls_server {
    pthread_mutex_t lock; /* guards ctx and opts */
    SSL_CTX *ctx;
    char *cert_file, *key_file, *client_ca_file;
    char *plain_http_answer; /* see tls_server_options; NULL: close unanswered */
    size_t plain_http_answer_len;
    /* Handshake results, for metrics: bumped by whichever thread runs the
     * connection, read by a scrape; relaxed, as no other data hangs on them. */
    atomic_ulong full, resumed, failed;
};

/*
 * Tickets kept per client context. A TLS 1.3 ticket resumes once (the
 * server treats a second use as a replay and falls back to a full
 * handshake), and connections opened close together would otherwise all
 * offer the same newest one: each connection takes a ticket of its own from
 * this stack, and every handshake refills it (the server sends two).
 */
#define TLS_CLIENT_TICKETS 8

struct tls_client {
    pthread_mutex_t lock; /* guards tickets and ntickets */
    SSL_CTX *ctx;
    SSL_SESSION *tickets[TLS_CLIENT_TICKETS]; /* oldest first; references we own */
    size_t ntickets;
};

struct tls_conn {
    conn_t base;
    SSL *ssl;
    tls_server_t *server; /* for counting; may be NULL */
    tls_client_t *client; /* for session capture; may be NULL */
    bool checked_first_byte;
    bool failure_counted; /* a connection's failed handshake counts once */
};

static void set_err(char *err, size_t len, const char *what)
{
    if (!err || !len)
        return;
    unsigned long e = ERR_peek_last_error();
    char detail[160] = "";
    if (e)
        ERR_error_string_n(e, detail, sizeof detail);
    snprintf(err, len, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

/* The one place where an OpenSSL result becomes a conn result. */
static ssize_t decode_result(struct tls_conn *tc, int ret)
{
    int e = SSL_get_error(tc->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        tc->base.want = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        tc->base.want = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify: a clean end */
    case SSL_ERROR_SYSCALL: {
        int saved = errno;
        if (ERR_peek_error() == 0) {
            snprintf(tc->base.error, sizeof tc->base.error, "connection closed during TLS%s",
                     tc->base.established ? "" : " handshake");
            return saved ? -saved : -ECONNRESET;
        }
    }
        /* fall through */
    default: {
        long vr = SSL_get_verify_result(tc->ssl);
        if (vr != X509_V_OK) {
            snprintf(tc->base.error, sizeof tc->base.error, "certificate verify failed: %s",
                     X509_verify_cert_error_string(vr));
        } else {
            set_err(tc->base.error, sizeof tc->base.error, "TLS error");
        }
        return -EPROTO;
    }
    }
}

/* A client that speaks plain HTTP to the TLS port gets the server's
 * readable answer (tls_server_options.plain_http_answer). */
static ssize_t refuse_plain_http(struct tls_conn *tc)
{
    unsigned char first;
    ssize_t r = recv(tc->base.fd, &first, 1, MSG_PEEK);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        tc->base.want = POLLIN;
        return -EAGAIN;
    }
    if (r <= 0)
        return r == 0 ? 0 : -errno;
    tc->checked_first_byte = true;
    if (first == 0x16) /* a TLS handshake record */
        return 1;
    if (tc->server->plain_http_answer) {
        ssize_t w = send(tc->base.fd, tc->server->plain_http_answer,
                         tc->server->plain_http_answer_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    snprintf(tc->base.error, sizeof tc->base.error, "plain HTTP on the TLS port");
    return -EPROTO;
}

static void count_failed(struct tls_conn *tc)
{
    if (!tc->server || tc->failure_counted)
        return;
    tc->failure_counted = true;
    atomic_fetch_add_explicit(&tc->server->failed, 1, memory_order_relaxed);
}

static ssize_t handshake(struct tls_conn *tc)
{
    if (tc->server && !tc->checked_first_byte) {
        ssize_t r = refuse_plain_http(tc);
        /* Only plain HTTP counts as failed here: an EOF or reset before the
         * first byte is a connection that never tried (port scans, probes). */
        if (r == -EPROTO)
            count_failed(tc);
        if (r <= 0)
            return r == 0 ? -ECONNRESET : r;
    }
    ERR_clear_error();
    int ret = SSL_do_handshake(tc->ssl);
    if (ret != 1) {
        ssize_t r = decode_result(tc, ret);
        if (r != -EAGAIN)
            count_failed(tc);
        return r;
    }
    tc->base.established = true;
    tc->base.resumed = SSL_session_reused(tc->ssl) == 1;
    if (tc->server) {
        if (tc->base.resumed)
            atomic_fetch_add_explicit(&tc->server->resumed, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&tc->server->full, 1, memory_order_relaxed);
    }
    return 1;
}

static ssize_t tls_read(conn_t *c, void *p, size_t n)
{
    struct tls_conn *tc = (struct tls_conn *)c;
    if (!c->established) {
        ssize_t h = handshake(tc);
        if (h <= 0)
            return h;
    }
    size_t got = 0;
    ERR_clear_error();
    int ret = SSL_read_ex(tc->ssl, p, n, &got);
    if (ret == 1)
        return (ssize_t)got;
    return decode_result(tc, ret);
}

static ssize_t tls_write(conn_t *c, const void *p, size_t n)
{
    struct tls_conn *tc = (struct tls_conn *)c;
    if (!c->established) {
        ssize_t h = handshake(tc);
        if (h <= 0)
            return h == 0 ? -ECONNRESET : h;
    }
    if (n == 0)
        return 0;
    size_t put = 0;
    ERR_clear_error();
    int ret = SSL_write_ex(tc->ssl, p, n, &put);
    if (ret == 1)
        return (ssize_t)put;
    ssize_t r = decode_result(tc, ret);
    return r == 0 ? -ECONNRESET : r;
}

static void tls_destroy(conn_t *c)
{
    struct tls_conn *tc = (struct tls_conn *)c;
    if (c->established) {
        ERR_clear_error();
        (void)SSL_shutdown(tc->ssl); /* best effort close_notify; never waits */
    }
    SSL_free(tc->ssl);
    close(c->fd);
    free(tc);
}

static const struct conn_ops tls_ops = {
    .read = tls_read,
    .write = tls_write,
    .destroy = tls_destroy,
};

static struct tls_conn *wrap(SSL_CTX *ctx, int fd)
{
    struct tls_conn *tc = calloc(1, sizeof *tc);
    if (!tc)
        return NULL;
    ERR_clear_error();
    tc->ssl = SSL_new(ctx);
    if (!tc->ssl || SSL_set_fd(tc->ssl, fd) != 1 || net_set_nonblocking(fd, 1) < 0) {
        SSL_free(tc->ssl);
        free(tc);
        return NULL;
    }
    /* Our output buffer moves (memmove after partial writes) and may be retried
     * with more bytes: tell OpenSSL both are fine. */
    SSL_set_mode(tc->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    tc->base.ops = &tls_ops;
    tc->base.fd = fd;
    tc->base.want = POLLIN;
    tc->base.secure = true;
    return tc;
}

/* ---- server ------------------------------------------------------------- */

static SSL_CTX *server_ctx(const tls_server_t *t, char *err, size_t err_len)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        set_err(err, err_len, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS") != 1) {
        set_err(err, err_len, "cipher list");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        set_err(err, err_len, "cannot load certificate");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        set_err(err, err_len, "cannot load private key");
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, err_len, "private key does not match the certificate");
        goto fail;
    }
    if (t->client_ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, t->client_ca_file, NULL) != 1) {
            set_err(err, err_len, "cannot load client CA");
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    /* Resumption: a server-side cache for TLS 1.2 ids, tickets for 1.3 (default). */
    static const unsigned char sid_ctx[] = "pcsig";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20000);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == STRLIT_LEN("http/1.1") && memcmp(in + i + 1, STRLIT("http/1.1")) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK; /* no ALPN or none we speak: carry on without */
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int tls_server_new(const struct tls_server_options *o, tls_server_t **out, char *err, size_t err_len)
{
    tls_server_t *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    atomic_init(&t->full, 0);
    atomic_init(&t->resumed, 0);
    atomic_init(&t->failed, 0);
    t->cert_file = dup_or_null(o->cert_file);
    t->key_file = dup_or_null(o->key_file);
    t->client_ca_file = dup_or_null(o->client_ca_file);
    if (o->plain_http_answer &&
        (t->plain_http_answer = malloc(o->plain_http_answer_len ? o->plain_http_answer_len : 1)))
        memcpy(t->plain_http_answer, o->plain_http_answer, o->plain_http_answer_len);
    t->plain_http_answer_len = o->plain_http_answer_len;
    if (!t->cert_file || !t->key_file || (o->client_ca_file && !t->client_ca_file) ||
        (o->plain_http_answer && !t->plain_http_answer)) {
        tls_server_free(t);
        return -ENOMEM;
    }
    t->ctx = server_ctx(t, err, err_len);
    if (!t->ctx) {
        tls_server_free(t);
        return -EINVAL;
    }
    SSL_CTX_set_alpn_select_cb(t->ctx, alpn_select, NULL);
    *out = t;
    return 0;
}

/*
 * Session tickets issued before a reload stay valid after it: the fresh
 * context takes over the old one's ticket keys (they encrypt tickets; they
 * are not the certificate's key). Not with mutual TLS: a resumed session
 * skips client-certificate verification, and the reload may have changed
 * the client CA, so there every client does one full handshake under the
 * new files. Best effort: if the keys cannot be copied, tickets simply stop
 * resuming, as before.
 */
static void keep_ticket_keys(const tls_server_t *t, SSL_CTX *old, SSL_CTX *fresh)
{
    if (t->client_ca_file)
        return;
    unsigned char keys[80]; /* name 16 + HMAC 32 + AES 32, as OpenSSL 1.1+ wants */
    ERR_clear_error();
    if (SSL_CTX_get_tlsext_ticket_keys(old, keys, sizeof keys) == 1)
        (void)SSL_CTX_set_tlsext_ticket_keys(fresh, keys, sizeof keys);
    OPENSSL_cleanse(keys, sizeof keys);
    ERR_clear_error();
}

int tls_server_reload(tls_server_t *t, char *err, size_t err_len)
{
    SSL_CTX *fresh = server_ctx(t, err, err_len);
    if (!fresh)
        return -EINVAL;
    SSL_CTX_set_alpn_select_cb(fresh, alpn_select, NULL);
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    keep_ticket_keys(t, old, fresh);
    t->ctx = fresh;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* connections hold their own references */
    return 0;
}

int tls_server_cert_validity(tls_server_t *t, char *why, size_t why_len)
{
    pthread_mutex_lock(&t->lock);
    X509 *cert = SSL_CTX_get0_certificate(t->ctx);
    int rc = 0;
    if (cert) {
        /* X509_cmp_current_time: <0 before now, >0 after now, 0 on error. */
        if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
            rc = -EKEYEXPIRED;
            snprintf(why, why_len, "the server certificate %s has expired", t->cert_file);
        } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
            rc = -EKEYEXPIRED;
            snprintf(why, why_len, "the server certificate %s is not valid yet", t->cert_file);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void tls_server_free(tls_server_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert_file);
    free(t->key_file);
    free(t->client_ca_file);
    free(t->plain_http_answer);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

conn_t *tls_server_wrap(tls_server_t *t, int fd)
{
    pthread_mutex_lock(&t->lock);
    struct tls_conn *tc = wrap(t->ctx, fd);
    pthread_mutex_unlock(&t->lock);
    if (!tc)
        return NULL;
    SSL_set_accept_state(tc->ssl);
    tc->server = t;
    return &tc->base;
}

void tls_server_stats(tls_server_t *t, struct tls_server_stats *out)
{
    out->full = atomic_load_explicit(&t->full, memory_order_relaxed);
    out->resumed = atomic_load_explicit(&t->resumed, memory_order_relaxed);
    out->failed = atomic_load_explicit(&t->failed, memory_order_relaxed);
}

/* ---- client ------------------------------------------------------------- */

static int client_ex_index = -1;
static pthread_once_t client_ex_once = PTHREAD_ONCE_INIT;

static void client_ex_init(void)
{
    client_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Keep a new session ticket for a later connection (the oldest goes when full). */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tls_client_t *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), client_ex_index);
    if (!t)
        return 0;
    SSL_SESSION *dropped = NULL;
    pthread_mutex_lock(&t->lock);
    if (t->ntickets == TLS_CLIENT_TICKETS) {
        dropped = t->tickets[0];
        memmove(t->tickets, t->tickets + 1, (TLS_CLIENT_TICKETS - 1) * sizeof t->tickets[0]);
        t->ntickets--;
    }
    t->tickets[t->ntickets++] = sess;
    pthread_mutex_unlock(&t->lock);
    SSL_SESSION_free(dropped);
    return 1; /* we keep the reference */
}

/* The newest ticket for a new connection (a reference the caller frees), or
 * NULL. A TLS 1.3 ticket leaves the stack (single use); an older protocol's
 * session may be resumed again and stays. */
static SSL_SESSION *take_ticket(tls_client_t *t)
{
    SSL_SESSION *sess = NULL;
    pthread_mutex_lock(&t->lock);
    if (t->ntickets > 0) {
        sess = t->tickets[t->ntickets - 1];
        if (SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION)
            t->ntickets--;
        else
            SSL_SESSION_up_ref(sess);
    }
    pthread_mutex_unlock(&t->lock);
    return sess;
}

int tls_client_new(const struct tls_client_options *o, tls_client_t **out, char *err, size_t err_len)
{
    pthread_once(&client_ex_once, client_ex_init);
    tls_client_t *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx) {
        set_err(err, err_len, "SSL_CTX_new");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    if (o->insecure) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    } else {
        int ok = o->ca_file ? SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL)
                            : SSL_CTX_set_default_verify_paths(t->ctx);
        if (ok != 1) {
            set_err(err, err_len, o->ca_file ? "cannot load CA file" : "cannot load the system trust store");
            goto fail;
        }
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
            set_err(err, err_len, "cannot load client certificate");
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file ? o->key_file : o->cert_file,
                                        SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(t->ctx) != 1) {
            set_err(err, err_len, "cannot load client key");
            goto fail;
        }
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(t->ctx, alpn, sizeof alpn - 1);
    SSL_CTX_set_ex_data(t->ctx, client_ex_index, t);
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ctx, new_session_cb);
    *out = t;
    return 0;
fail:
    tls_client_free(t);
    return -EINVAL;
}

void tls_client_free(tls_client_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ntickets; i++)
        SSL_SESSION_free(t->tickets[i]);
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Name the server for SNI and for verification: 1, or 0 when OpenSSL would
 * not take host (then verification could not check it: fail closed). */
static int set_peer_name(SSL *ssl, const char *host)
{
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    ERR_clear_error();
    if (is_ip) /* No SNI for addresses (RFC 6066); verify the IP SAN instead. */
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    return SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
}

conn_t *tls_client_wrap(tls_client_t *t, int fd, const char *host)
{
    struct tls_conn *tc = wrap(t->ctx, fd);
    if (!tc) {
        errno = ENOMEM;
        return NULL;
    }
    tc->client = t;
    SSL_set_connect_state(tc->ssl);
    if (!set_peer_name(tc->ssl, host)) {
        /* fd stays the caller's: free what wrap() made, nothing else. */
        SSL_free(tc->ssl);
        free(tc);
        errno = EINVAL;
        return NULL;
    }
    SSL_SESSION *ticket = take_ticket(t);
    if (ticket) {
        ERR_clear_error();
        /* It takes a reference of its own. If it refuses the ticket, the
         * handshake is simply a full one. */
        if (SSL_set_session(tc->ssl, ticket) != 1)
            ERR_clear_error();
        SSL_SESSION_free(ticket);
    }
    return &tc->base;
}
